//! The built-in thresholds as configuration: the decision's merchant categories and countries and fraud velocity
//! limits (TOML table `[rules]`), and the payment plans' terms (`[plan_terms]`). The defaults are those of
//! docs/reference/behaviour.md; a value the domain cannot use stops the start with a message naming the key.

use ghostcard_domain::country::Country;
use ghostcard_domain::decision::{AuthorizationRules, DEFAULT_BLOCKED_CATEGORIES, MccRange};
use ghostcard_domain::fraud::{FraudRules, VelocityLimit};
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::PlanTerms;
use serde::Deserialize;

/// `[rules]`: what the authorization decision checks besides the card itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Merchant categories declined `merchant_category_blocked`: codes (`"7995"`) or ranges (`"7800-7802"`).
    pub blocked_categories: Vec<String>,
    /// Merchant countries the cards may be used in (alpha-2); unset: the deployment's `country`; empty: all.
    pub allowed_countries: Option<Vec<String>>,
    /// Approvals up to this amount (minor units) neither use nor bind a card; unset: one major unit.
    pub micro_authorization_max: Option<i64>,
    /// A cardholder's cards created within a window, at most (then `suspected_fraud`).
    pub card_creation: Vec<Velocity>,
    /// A cardholder's spending approvals within a window, at most (then `suspected_fraud`, row 15).
    pub authorization: Vec<Velocity>,
    /// CVV2 failures on a cardholder's cards within a window that freeze all of them.
    pub cvv_failures: Vec<Velocity>,
    /// Declines of one card within a window that freeze it.
    pub card_declines: Vec<Velocity>,
}

/// A velocity limit: at most `max` within `window_seconds`; its `name` appears in the decisions it makes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Velocity {
    pub name: String,
    pub window_seconds: i64,
    pub max: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        let velocities = |limits: Vec<VelocityLimit>| {
            limits
                .into_iter()
                .map(|limit| Velocity { name: limit.name, window_seconds: limit.window_seconds, max: limit.max })
                .collect()
        };
        let fraud = FraudRules::default();
        RulesConfig {
            blocked_categories: DEFAULT_BLOCKED_CATEGORIES
                .iter()
                .map(|range| match range.first == range.last {
                    true => format!("{:04}", range.first),
                    false => format!("{:04}-{:04}", range.first, range.last),
                })
                .collect(),
            allowed_countries: None,
            micro_authorization_max: None,
            card_creation: velocities(fraud.card_creation),
            authorization: velocities(fraud.authorization),
            cvv_failures: velocities(fraud.cvv_failures),
            card_declines: velocities(fraud.card_declines),
        }
    }
}

impl RulesConfig {
    /// The decision's rules for a deployment in `country` with `currency`; an unusable value is an error naming
    /// its key.
    pub fn authorization_rules(&self, country: Country, currency: Currency) -> Result<AuthorizationRules, String> {
        let blocked_categories = self
            .blocked_categories
            .iter()
            .map(|text| {
                category_range(text).ok_or_else(|| {
                    format!(
                        "rules.blocked_categories: {text:?} is not a category (\"7995\") or a range (\"7800-7802\")"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_countries = match &self.allowed_countries {
            None => vec![country],
            Some(codes) => codes
                .iter()
                .map(|code| {
                    Country::parse(code)
                        .map_err(|_| format!("rules.allowed_countries: {code:?} is not an alpha-2 code"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let micro_authorization_max_minor = self.micro_authorization_max.unwrap_or(currency.minor_per_major());
        if micro_authorization_max_minor < 0 {
            return Err("rules.micro_authorization_max: give an amount of 0 or more minor units".to_owned());
        }
        let fraud = FraudRules {
            card_creation: limits("card_creation", &self.card_creation)?,
            authorization: limits("authorization", &self.authorization)?,
            cvv_failures: limits("cvv_failures", &self.cvv_failures)?,
            card_declines: limits("card_declines", &self.card_declines)?,
        };
        Ok(AuthorizationRules { micro_authorization_max_minor, blocked_categories, allowed_countries, fraud })
    }
}

/// `"7995"` or `"7800-7802"`.
fn category_range(text: &str) -> Option<MccRange> {
    let code = |part: &str| (part.len() == 4).then(|| part.parse::<u16>().ok()).flatten();
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (code(first)?, code(last)?),
        None => (code(text)?, code(text)?),
    };
    (first <= last).then_some(MccRange { first, last })
}

fn limits(key: &str, velocities: &[Velocity]) -> Result<Vec<VelocityLimit>, String> {
    let mut names = std::collections::HashSet::new();
    velocities
        .iter()
        .map(|velocity| {
            if velocity.name.trim().is_empty() || !names.insert(velocity.name.as_str()) {
                return Err(format!("rules.{key}: each limit needs a name of its own"));
            }
            if velocity.window_seconds <= 0 || velocity.max == 0 {
                return Err(format!("rules.{key} {:?}: window_seconds and max must be at least 1", velocity.name));
            }
            Ok(VelocityLimit::new(&velocity.name, velocity.window_seconds, velocity.max))
        })
        .collect()
}

/// `[plan_terms]`: financing, late fees, retries and charge-off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanTermsConfig {
    /// Financing plans' APR in basis points (1999 = 19.99%).
    pub financing_apr_basis_points: u32,
    /// The late fee in minor units; unset: 7 major units (7.00 USD).
    pub late_fee: Option<i64>,
    /// All of a plan's late fees together never exceed this percentage of its principal.
    pub late_fee_cap_percent: u32,
    pub late_fee_after_days: u64,
    /// A failed collection is tried again after this many days.
    pub retry_after_days: u64,
    pub charge_off_after_days: u64,
}

impl Default for PlanTermsConfig {
    fn default() -> Self {
        let terms = PlanTerms::defaults(Currency::USD);
        PlanTermsConfig {
            financing_apr_basis_points: terms.financing_apr_basis_points,
            late_fee: None,
            late_fee_cap_percent: terms.late_fee_cap_percent,
            late_fee_after_days: terms.late_fee_after_days,
            retry_after_days: terms.retry_after_days,
            charge_off_after_days: terms.charge_off_after_days,
        }
    }
}

impl PlanTermsConfig {
    /// The plan terms in `currency`; an unusable value is an error naming its key.
    pub fn plan_terms(&self, currency: Currency) -> Result<PlanTerms, String> {
        let defaults = PlanTerms::defaults(currency);
        if self.financing_apr_basis_points > 10_000 {
            return Err("plan_terms.financing_apr_basis_points: at most 10000 (100%)".to_owned());
        }
        let late_fee = self.late_fee.map_or(defaults.late_fee, |minor| Money::new(minor, currency));
        if late_fee.minor() < 0 {
            return Err("plan_terms.late_fee: give 0 or more minor units".to_owned());
        }
        if self.late_fee_cap_percent > 100 {
            return Err("plan_terms.late_fee_cap_percent: at most 100".to_owned());
        }
        for (key, days) in [
            ("late_fee_after_days", self.late_fee_after_days),
            ("retry_after_days", self.retry_after_days),
            ("charge_off_after_days", self.charge_off_after_days),
        ] {
            if days == 0 || days > 3_650 {
                return Err(format!("plan_terms.{key}: 1 to 3650 days"));
            }
        }
        Ok(PlanTerms {
            financing_apr_basis_points: self.financing_apr_basis_points,
            late_fee,
            late_fee_cap_percent: self.late_fee_cap_percent,
            late_fee_after_days: self.late_fee_after_days,
            retry_after_days: self.retry_after_days,
            charge_off_after_days: self.charge_off_after_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Country {
        Country::parse("US").expect("US")
    }

    #[test]
    fn the_defaults_are_the_domains() {
        let rules = RulesConfig::default().authorization_rules(us(), Currency::USD).expect("valid");
        assert_eq!(rules, AuthorizationRules::defaults(us(), 100));
        let terms = PlanTermsConfig::default().plan_terms(Currency::USD).expect("valid");
        assert_eq!(terms, PlanTerms::defaults(Currency::USD));
    }

    #[test]
    fn rules_come_from_the_table_and_unusable_values_name_their_key() {
        let config: RulesConfig = toml::from_str(
            "blocked_categories = [\"5411\", \"7800-7802\"]\nallowed_countries = []\n\
             card_declines = [{ name = \"declines_10m\", window_seconds = 600, max = 3 }]",
        )
        .expect("valid");
        let rules = config.authorization_rules(us(), Currency::USD).expect("valid");
        assert_eq!(rules.blocked_categories, vec![MccRange::single(5411), MccRange { first: 7800, last: 7802 }]);
        assert!(rules.allowed_countries.is_empty(), "every country");
        assert_eq!(rules.fraud.card_declines, vec![VelocityLimit::new("declines_10m", 600, 3)]);
        assert_eq!(rules.fraud.authorization, FraudRules::default().authorization, "unset: the default");

        for (text, key) in [
            ("blocked_categories = [\"54\"]", "rules.blocked_categories"),
            ("blocked_categories = [\"7802-7800\"]", "rules.blocked_categories"),
            ("allowed_countries = [\"XX\"]", "rules.allowed_countries"),
            ("card_creation = [{ name = \"x\", window_seconds = 0, max = 3 }]", "rules.card_creation"),
            ("authorization = [{ name = \"a\", window_seconds = 60, max = 0 }]", "rules.authorization"),
            (
                "cvv_failures = [{ name = \"a\", window_seconds = 60, max = 1 }, { name = \"a\", window_seconds = 9, max = 1 }]",
                "rules.cvv_failures",
            ),
            ("micro_authorization_max = -1", "rules.micro_authorization_max"),
        ] {
            let config: RulesConfig = toml::from_str(text).expect("parses");
            let error = config.authorization_rules(us(), Currency::USD).expect_err(text);
            assert!(error.starts_with(key), "{text}: {error}");
        }
        assert!(toml::from_str::<RulesConfig>("blocked_category = []").is_err(), "typos are errors");
    }

    #[test]
    fn plan_terms_come_from_the_table() {
        let config: PlanTermsConfig =
            toml::from_str("financing_apr_basis_points = 1500\nlate_fee = 500").expect("valid");
        let terms = config.plan_terms(Currency::USD).expect("valid");
        assert_eq!((terms.financing_apr_basis_points, terms.late_fee.minor()), (1500, 500));
        let config: PlanTermsConfig = toml::from_str("retry_after_days = 0").expect("parses");
        assert!(config.plan_terms(Currency::USD).expect_err("zero days").starts_with("plan_terms.retry_after_days"));
    }
}
