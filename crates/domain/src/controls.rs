//! What a card's owner controls about it: a pause, and spending controls (merchant categories and countries). They
//! are checked by the decision (docs/reference/behaviour.md): a paused card declines `card_paused` right after the
//! frozen check, a purchase the spending controls exclude declines `spending_controls` right after the program's own
//! category and country checks.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::country::Country;
use crate::decision::Mcc;

/// A card's controls; the default is none (not paused, no spending controls). Spending controls are boxed and absent
/// when empty (most cards), so a card's entry in a batch stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardControls {
    pub paused: bool,
    pub spending: Option<Box<SpendingControls>>,
}

impl CardControls {
    pub fn new(paused: bool, spending: SpendingControls) -> CardControls {
        CardControls { paused, spending: (!spending.is_empty()).then(|| Box::new(spending)) }
    }

    /// True when the spending controls exclude a purchase at a merchant of category `mcc` in `country`.
    pub fn excludes(&self, mcc: Mcc, country: Option<Country>) -> bool {
        self.spending.as_deref().is_some_and(|spending| spending.excludes(mcc, country))
    }
}

/// Which merchants a card may be used at. An empty allow list allows every value; a value on a block list is
/// excluded whatever the allow list says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendingControls {
    #[serde(default, with = "mcc_codes")]
    pub allowed_categories: Vec<Mcc>,
    #[serde(default, with = "mcc_codes")]
    pub blocked_categories: Vec<Mcc>,
    #[serde(default)]
    pub allowed_countries: Vec<Country>,
    #[serde(default)]
    pub blocked_countries: Vec<Country>,
}

impl SpendingControls {
    pub fn is_empty(&self) -> bool {
        self.allowed_categories.is_empty()
            && self.blocked_categories.is_empty()
            && self.allowed_countries.is_empty()
            && self.blocked_countries.is_empty()
    }

    /// True when a purchase at a merchant of category `mcc` in `country` is excluded. With no merchant country
    /// known, the country controls are skipped (as the program's country check is).
    pub fn excludes(&self, mcc: Mcc, country: Option<Country>) -> bool {
        let category_excluded = self.blocked_categories.contains(&mcc)
            || (!self.allowed_categories.is_empty() && !self.allowed_categories.contains(&mcc));
        let country_excluded = country.is_some_and(|country| {
            self.blocked_countries.contains(&country)
                || (!self.allowed_countries.is_empty() && !self.allowed_countries.contains(&country))
        });
        category_excluded || country_excluded
    }
}

/// Merchant categories as the API writes them: four-digit strings (`"5411"`).
mod mcc_codes {
    use super::*;

    pub fn serialize<S: Serializer>(codes: &[Mcc], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(codes.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Mcc>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| {
                Mcc::parse(text)
                    .ok_or_else(|| serde::de::Error::custom("a merchant category is four digits, such as \"5411\""))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(code: &str) -> Country {
        Country::parse(code).expect("a country")
    }

    #[test]
    fn no_controls_exclude_nothing() {
        assert!(!SpendingControls::default().excludes(Mcc(7995), Some(country("KP"))));
    }

    #[test]
    fn a_block_wins_over_an_allow_and_an_allow_list_excludes_the_rest() {
        let controls = SpendingControls {
            allowed_categories: vec![Mcc(5411), Mcc(5812)],
            blocked_categories: vec![Mcc(5812)],
            allowed_countries: vec![],
            blocked_countries: vec![country("FR")],
        };
        assert!(!controls.excludes(Mcc(5411), Some(country("US"))));
        assert!(controls.excludes(Mcc(5812), Some(country("US"))), "blocked although allowed");
        assert!(controls.excludes(Mcc(5999), Some(country("US"))), "not on the allow list");
        assert!(controls.excludes(Mcc(5411), Some(country("FR"))));
    }

    #[test]
    fn country_controls_are_skipped_without_a_merchant_country() {
        let controls = SpendingControls { allowed_countries: vec![country("US")], ..SpendingControls::default() };
        assert!(!controls.excludes(Mcc(5411), None));
        assert!(controls.excludes(Mcc(5411), Some(country("CA"))));
    }

    #[test]
    fn categories_are_written_as_four_digit_strings() {
        let controls = SpendingControls { blocked_categories: vec![Mcc(742)], ..SpendingControls::default() };
        let json = serde_json::to_string(&controls).expect("serializes");
        assert_eq!(
            json,
            r#"{"allowed_categories":[],"blocked_categories":["0742"],"allowed_countries":[],"blocked_countries":[]}"#
        );
        assert_eq!(serde_json::from_str::<SpendingControls>(&json).expect("reads"), controls);
        assert!(serde_json::from_str::<SpendingControls>(r#"{"blocked_categories":["54"]}"#).is_err());
        assert!(serde_json::from_str::<SpendingControls>(r#"{"blocked_countries":["XX"]}"#).is_err());
        assert!(serde_json::from_str::<SpendingControls>(r#"{"colors":[]}"#).is_err());
    }
}
