//! The authorization decision: a pure function of (request, card, cardholder standing, rules, now).
//!
//! [`decide`] walks docs/reference/behaviour.md's table in order and the first failing row wins. It changes nothing;
//! the caller applies an approval with [`Card::hold`] (or `force_hold` for an advice) and, when [`Decision::first_use`]
//! is set, the [`crate::card::CardEvent::FirstUse`] transition. Everything the decision needs arrives as input, so the
//! same input always gives the same decision.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::card::{Card, CardStatus, MerchantBinding};
use crate::card_number::Expiry;
use crate::controls::CardControls;
use crate::country::Country;
use crate::fraud::FraudRules;
use crate::money::Money;

/// Which network message asks: 0100 (hold), 0200 (hold and capture) or 0120 (advice of a stand-in approval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageClass {
    Authorization,
    Financial,
    Advice,
}

/// The transaction type: the first two digits of the processing code (field 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    /// `00`
    Purchase,
    /// `20`: a credit to the card.
    Refund,
    /// `01`
    Cash,
    /// Anything else (balance inquiries, transfers...).
    Other,
}

impl TransactionType {
    pub fn from_processing_code(code: &str) -> TransactionType {
        match code.get(..2) {
            Some("00") => TransactionType::Purchase,
            Some("20") => TransactionType::Refund,
            Some("01") => TransactionType::Cash,
            _ => TransactionType::Other,
        }
    }
}

/// A merchant category code, 0000–9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mcc(pub u16);

impl Mcc {
    pub fn parse(text: &str) -> Option<Mcc> {
        (text.len() == 4 && text.bytes().all(|byte| byte.is_ascii_digit())).then(|| Mcc(text.parse().unwrap_or(0)))
    }
}

impl fmt::Display for Mcc {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:04}", self.0)
    }
}

/// An authorization request, already parsed from its message (row 1's format checks are the parser's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub class: MessageClass,
    pub transaction_type: TransactionType,
    /// Field 4, in minor units of `currency_numeric`; zero is an account verification.
    pub amount_minor: i64,
    /// Field 49 (ISO 4217 numeric).
    pub currency_numeric: u16,
    /// Field 14.
    pub expiry: Option<Expiry>,
    pub mcc: Mcc,
    pub merchant: MerchantBinding,
    /// From field 43 (alpha-2), else field 19 (numeric); `None` skips the country check.
    pub country: Option<Country>,
}

/// The CVV2 the request carried, checked by the caller against the card (the CVK is not the decision's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CvvCheck {
    Absent,
    Match,
    Mismatch,
}

/// Field 48 subelement 87 of the response: what we did with the CVV2 that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CvvResult {
    /// `M`
    Match,
    /// `N`
    NoMatch,
    /// `P`: not checked (refunds, incremental authorizations, advices).
    NotProcessed,
}

impl CvvResult {
    pub fn code(self) -> &'static str {
        match self {
            CvvResult::Match => "M",
            CvvResult::NoMatch => "N",
            CvvResult::NotProcessed => "P",
        }
    }
}

/// The cardholder's standing, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CardholderStanding {
    /// An operator or a rule restricted the account (also after a charge-off).
    pub restricted: bool,
    /// Some installment is overdue.
    pub overdue: bool,
    /// When the cardholder signed up (the authorization rules' `cardholder_tenure_days`).
    pub joined: Option<DateTime<Utc>>,
}

/// An inclusive range of merchant category codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MccRange {
    pub first: u16,
    pub last: u16,
}

impl MccRange {
    pub const fn single(code: u16) -> MccRange {
        MccRange { first: code, last: code }
    }

    pub fn contains(self, mcc: Mcc) -> bool {
        (self.first..=self.last).contains(&mcc.0)
    }
}

/// The deployment's authorization rules (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRules {
    /// Approvals up to this amount (in the card's minor units) neither consume the card nor bind a merchant.
    pub micro_authorization_max_minor: i64,
    pub blocked_categories: Vec<MccRange>,
    /// Merchant countries that may use our cards; an empty list allows every country.
    pub allowed_countries: Vec<Country>,
    pub fraud: FraudRules,
}

/// Merchant categories blocked by default (Klarna-like exclusions).
pub const DEFAULT_BLOCKED_CATEGORIES: &[MccRange] = &[
    MccRange::single(7995),
    MccRange { first: 7800, last: 7802 },
    MccRange::single(6051),
    MccRange { first: 6010, last: 6012 },
    MccRange::single(4829),
    MccRange::single(6211),
    MccRange::single(6540),
    MccRange::single(9211),
    MccRange { first: 9222, last: 9223 },
    MccRange::single(9311),
    MccRange::single(9399),
    MccRange::single(4900),
    MccRange::single(4121),
    MccRange::single(7273),
];

impl AuthorizationRules {
    /// The defaults of docs/reference/behaviour.md for a deployment in `country` whose currency has `minor_per_major`
    /// minor units (the micro-authorization limit is one major unit).
    pub fn defaults(country: Country, minor_per_major: i64) -> AuthorizationRules {
        AuthorizationRules {
            micro_authorization_max_minor: minor_per_major,
            blocked_categories: DEFAULT_BLOCKED_CATEGORIES.to_vec(),
            allowed_countries: vec![country],
            fraud: FraudRules::default(),
        }
    }
}

/// Why a request was declined. The order of the variants is the order of the checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    InvalidRequest(InvalidRequest),
    CardNotFound,
    ExpiryMismatch,
    CvvMismatch,
    CardFrozen,
    CardPaused,
    CardClosed,
    CardExpired,
    CardAlreadyUsed,
    CurrencyNotSupported,
    TransactionNotPermitted,
    MerchantCategoryBlocked,
    CountryBlocked,
    SpendingControls,
    ExceedsCardAmount,
    AccountRestricted,
    SuspectedFraud,
    /// An active authorization rule of the issuer's (after row 15).
    AuthRule,
    /// The issuer's decision endpoint said no.
    DeclinedByEndpoint,
}

/// What kind of malformed request it was, which picks the ISO 8583 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidRequest {
    /// A field is missing or malformed: `30`.
    Format,
    /// The amount cannot be processed: `13`.
    Amount,
    /// Anything else: `12`.
    Other,
}

impl DeclineReason {
    /// The stable machine code (`card_already_used`).
    pub fn code(&self) -> &'static str {
        match self {
            DeclineReason::InvalidRequest(_) => "invalid_request",
            DeclineReason::CardNotFound => "card_not_found",
            DeclineReason::ExpiryMismatch => "expiry_mismatch",
            DeclineReason::CvvMismatch => "cvv_mismatch",
            DeclineReason::CardFrozen => "card_frozen",
            DeclineReason::CardPaused => "card_paused",
            DeclineReason::CardClosed => "card_closed",
            DeclineReason::CardExpired => "card_expired",
            DeclineReason::CardAlreadyUsed => "card_already_used",
            DeclineReason::CurrencyNotSupported => "currency_not_supported",
            DeclineReason::TransactionNotPermitted => "transaction_not_permitted",
            DeclineReason::MerchantCategoryBlocked => "merchant_category_blocked",
            DeclineReason::CountryBlocked => "country_blocked",
            DeclineReason::SpendingControls => "spending_controls",
            DeclineReason::ExceedsCardAmount => "exceeds_card_amount",
            DeclineReason::AccountRestricted => "account_restricted",
            DeclineReason::SuspectedFraud => "suspected_fraud",
            DeclineReason::AuthRule => "auth_rule",
            DeclineReason::DeclinedByEndpoint => "declined_by_endpoint",
        }
    }

    /// The ISO 8583 field 39 code.
    pub fn response_code(&self) -> &'static str {
        match self {
            DeclineReason::InvalidRequest(InvalidRequest::Format) => "30",
            DeclineReason::InvalidRequest(InvalidRequest::Amount) => "13",
            DeclineReason::InvalidRequest(InvalidRequest::Other) => "12",
            DeclineReason::CardNotFound => "14",
            DeclineReason::ExpiryMismatch | DeclineReason::CardExpired => "54",
            DeclineReason::CvvMismatch => "N7",
            DeclineReason::CardFrozen
            | DeclineReason::CardPaused
            | DeclineReason::CardClosed
            | DeclineReason::AccountRestricted => "62",
            DeclineReason::CardAlreadyUsed | DeclineReason::AuthRule | DeclineReason::DeclinedByEndpoint => "05",
            DeclineReason::CurrencyNotSupported
            | DeclineReason::TransactionNotPermitted
            | DeclineReason::MerchantCategoryBlocked
            | DeclineReason::CountryBlocked
            | DeclineReason::SpendingControls => "57",
            DeclineReason::ExceedsCardAmount => "51",
            DeclineReason::SuspectedFraud => "59",
        }
    }

    /// What the cardholder reads, in plain words.
    pub fn message(&self) -> &'static str {
        match self {
            DeclineReason::InvalidRequest(_) => "The merchant's payment request was incomplete or malformed.",
            DeclineReason::CardNotFound => "The card number was not recognized.",
            DeclineReason::ExpiryMismatch => "The expiry date entered does not match the card.",
            DeclineReason::CvvMismatch => "The security code (CVV) was missing or did not match.",
            DeclineReason::CardFrozen => "The card is frozen for your protection.",
            DeclineReason::CardPaused => "The card is paused. Resume it to use it again.",
            DeclineReason::CardClosed => "The card is closed or was canceled.",
            DeclineReason::CardExpired => "The card's 24-hour window has passed.",
            DeclineReason::CardAlreadyUsed => "This one-time card was already used at another merchant.",
            DeclineReason::CurrencyNotSupported => "The purchase was in a currency this card does not support.",
            DeclineReason::TransactionNotPermitted => "This kind of transaction (such as cash) is not allowed.",
            DeclineReason::MerchantCategoryBlocked => "Purchases at this kind of merchant are not allowed.",
            DeclineReason::CountryBlocked => "Purchases from merchants in this country are not allowed.",
            DeclineReason::SpendingControls => "The card's spending controls do not allow this merchant.",
            DeclineReason::ExceedsCardAmount => "The purchase is more than the amount left on the card.",
            DeclineReason::AccountRestricted => "Your account is restricted, for example by an overdue payment.",
            DeclineReason::SuspectedFraud => "The purchase looked unusual, so we stopped it to protect you.",
            DeclineReason::AuthRule => "The card program's rules do not allow this purchase.",
            DeclineReason::DeclinedByEndpoint => "The card program declined this purchase.",
        }
    }
}

impl DeclineReason {
    /// Declines that the card's own controls or the issuer chose (a pause, spending controls, an authorization rule,
    /// the decision endpoint) do not count toward the fraud rules' decline limits.
    pub fn counts_toward_fraud(code: &str) -> bool {
        ![
            DeclineReason::CardPaused,
            DeclineReason::SpendingControls,
            DeclineReason::AuthRule,
            DeclineReason::DeclinedByEndpoint,
        ]
        .iter()
        .any(|reason| reason.code() == code)
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

/// What an authorization is, as the API lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationKind {
    Purchase,
    Verification,
    Incremental,
    Refund,
    Advice,
}

impl AuthorizationKind {
    /// The kinds the issuer's authorization rules run on (never refunds or advices).
    pub fn meets_issuer_rules(self) -> bool {
        matches!(self, AuthorizationKind::Purchase | AuthorizationKind::Incremental | AuthorizationKind::Verification)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationKind::Purchase => "purchase",
            AuthorizationKind::Verification => "verification",
            AuthorizationKind::Incremental => "incremental",
            AuthorizationKind::Refund => "refund",
            AuthorizationKind::Advice => "advice",
        }
    }

    pub fn parse(text: &str) -> Option<AuthorizationKind> {
        [
            AuthorizationKind::Purchase,
            AuthorizationKind::Verification,
            AuthorizationKind::Incremental,
            AuthorizationKind::Refund,
            AuthorizationKind::Advice,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approved; `hold` is what to hold on the card (zero for verifications and refunds).
    Approved {
        hold: Money,
    },
    Declined(DeclineReason),
}

/// Everything that is stored about a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub kind: AuthorizationKind,
    pub outcome: Outcome,
    /// Field 39: `00`, `85` or the decline's code.
    pub response_code: &'static str,
    /// The name of the check or fraud rule that decided (`all_checks_passed` on approval).
    pub rule: String,
    /// Field 48 subelement 87, when the request carried a CVV2.
    pub cvv_result: Option<CvvResult>,
    /// The approval consumes the card and binds it to the request's merchant.
    pub first_use: bool,
    /// An advice posted although this check would have declined it: flagged for review.
    pub flag: Option<DeclineReason>,
}

impl Decision {
    pub fn is_approved(&self) -> bool {
        matches!(self.outcome, Outcome::Approved { .. })
    }

    pub fn decline_reason(&self) -> Option<&DeclineReason> {
        match &self.outcome {
            Outcome::Declined(reason) => Some(reason),
            Outcome::Approved { .. } => None,
        }
    }
}

/// Everything a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    pub request: &'a AuthorizationRequest,
    /// The card the number resolved to, if any (row 2).
    pub card: Option<&'a Card>,
    pub cvv: CvvCheck,
    /// The card's pause and spending controls.
    pub controls: &'a CardControls,
    pub standing: CardholderStanding,
    /// Times of the cardholder's earlier approvals, for the authorization fraud rules (row 15).
    pub cardholder_approvals: &'a [DateTime<Utc>],
    pub rules: &'a AuthorizationRules,
    pub now: DateTime<Utc>,
}

/// The decision for one request. Advices are approved whatever the checks say, with the failing check as a flag.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let request = input.request;
    let Some(card) = input.card else {
        let reason = DeclineReason::CardNotFound;
        return Decision {
            kind: kind_of(request, false),
            response_code: reason.response_code(),
            rule: reason.code().to_owned(),
            outcome: Outcome::Declined(reason),
            cvv_result: (input.cvv != CvvCheck::Absent).then_some(CvvResult::NotProcessed),
            first_use: false,
            flag: None,
        };
    };
    let bound_merchant = card.merchant().is_some_and(|merchant| *merchant == request.merchant);
    let checked = check_rows(input, card, bound_merchant);
    let kind = kind_of(request, bound_merchant);
    let consumes = card.status() == CardStatus::Active
        && !card.is_bound()
        && request.transaction_type == TransactionType::Purchase
        && request.amount_minor > input.rules.micro_authorization_max_minor;
    // A refund holds nothing, also when it arrives as an advice.
    let hold = match kind {
        AuthorizationKind::Refund | AuthorizationKind::Verification => Money::zero(card.currency()),
        _ if request.transaction_type == TransactionType::Refund => Money::zero(card.currency()),
        _ => Money::new(request.amount_minor, card.currency()),
    };
    match (checked.result, request.class) {
        (Err((reason, rule)), MessageClass::Advice) => Decision {
            kind,
            outcome: Outcome::Approved { hold },
            response_code: "00",
            rule,
            cvv_result: checked.cvv_result,
            first_use: consumes,
            flag: Some(reason),
        },
        (Err((reason, rule)), _) => Decision {
            kind,
            response_code: reason.response_code(),
            outcome: Outcome::Declined(reason),
            rule,
            cvv_result: checked.cvv_result,
            first_use: false,
            flag: None,
        },
        (Ok(()), _) => Decision {
            kind,
            outcome: Outcome::Approved { hold },
            response_code: if kind == AuthorizationKind::Verification { "85" } else { "00" },
            rule: "all_checks_passed".to_owned(),
            cvv_result: checked.cvv_result,
            first_use: consumes,
            flag: None,
        },
    }
}

struct Checked {
    result: Result<(), (DeclineReason, String)>,
    cvv_result: Option<CvvResult>,
}

/// Rows 1 and 3–15 of the table (row 2, the card lookup, is the caller's), first failure wins.
fn check_rows(input: &DecisionInput<'_>, card: &Card, bound_merchant: bool) -> Checked {
    let request = input.request;
    // Refunds, advices and the bound merchant's incremental authorizations skip the CVV2 check.
    let cvv_checked = request.transaction_type != TransactionType::Refund
        && request.class != MessageClass::Advice
        && !card.is_bound();
    let cvv_result = match (input.cvv, cvv_checked) {
        (CvvCheck::Absent, _) => None,
        (_, false) => Some(CvvResult::NotProcessed),
        (CvvCheck::Match, true) => Some(CvvResult::Match),
        (CvvCheck::Mismatch, true) => Some(CvvResult::NoMatch),
    };
    let result = match request_and_card_rows(input, card, bound_merchant, cvv_checked) {
        Ok(RowsPassed::Refund) => Ok(()),
        Ok(RowsPassed::Card) => purchase_rows(input, card),
        Err(reason) => {
            let rule = reason.code().to_owned();
            Err((reason, rule))
        }
    };
    Checked { result, cvv_result }
}

/// Which rows a request passed so far.
enum RowsPassed {
    /// Refunds face rows 1 and 2 only: accepted on any card state.
    Refund,
    /// Rows 1 and 3–8.
    Card,
}

/// Rows 1 and 3–8: the request's own fields, then the card's expiry, CVV2, state (and pause) and single use.
fn request_and_card_rows(
    input: &DecisionInput<'_>,
    card: &Card,
    bound_merchant: bool,
    cvv_checked: bool,
) -> Result<RowsPassed, DeclineReason> {
    let request = input.request;
    // Row 1: what the parser cannot know on its own.
    if request.amount_minor < 0 {
        return Err(DeclineReason::InvalidRequest(InvalidRequest::Amount));
    }
    if request.transaction_type == TransactionType::Refund {
        if request.amount_minor == 0 {
            return Err(DeclineReason::InvalidRequest(InvalidRequest::Amount));
        }
        return Ok(RowsPassed::Refund);
    }
    if request.expiry.is_none() && request.class != MessageClass::Advice {
        return Err(DeclineReason::InvalidRequest(InvalidRequest::Format));
    }
    // Row 3.
    if request.expiry.is_some_and(|expiry| expiry != card.expiry()) {
        return Err(DeclineReason::ExpiryMismatch);
    }
    // Row 4.
    if cvv_checked && input.cvv != CvvCheck::Match {
        return Err(DeclineReason::CvvMismatch);
    }
    // Rows 5–8, a pause right after row 5 (only an active or used card can be paused).
    match card.status() {
        CardStatus::Frozen => return Err(DeclineReason::CardFrozen),
        CardStatus::Active | CardStatus::Used if input.controls.paused => return Err(DeclineReason::CardPaused),
        CardStatus::Canceled | CardStatus::Closed => return Err(DeclineReason::CardClosed),
        CardStatus::Expired => return Err(DeclineReason::CardExpired),
        CardStatus::Active if !card.window_open(input.now) => return Err(DeclineReason::CardExpired),
        CardStatus::Active | CardStatus::Used => {}
    }
    if card.is_bound() && !bound_merchant {
        return Err(DeclineReason::CardAlreadyUsed);
    }
    Ok(RowsPassed::Card)
}

/// Rows 9–15: currency, transaction type, merchant category and country (then the card's spending controls),
/// amount, the account, the fraud rules.
/// A failure comes with the rule that refused (a fraud rule names itself).
fn purchase_rows(input: &DecisionInput<'_>, card: &Card) -> Result<(), (DeclineReason, String)> {
    let request = input.request;
    let fail = |reason: DeclineReason| {
        let rule = reason.code().to_owned();
        Err((reason, rule))
    };
    // Row 9.
    if request.currency_numeric != card.currency().numeric() {
        return fail(DeclineReason::CurrencyNotSupported);
    }
    // Row 10.
    if request.transaction_type != TransactionType::Purchase {
        return fail(DeclineReason::TransactionNotPermitted);
    }
    // Row 11.
    if input.rules.blocked_categories.iter().any(|range| range.contains(request.mcc)) {
        return fail(DeclineReason::MerchantCategoryBlocked);
    }
    // Row 12.
    if let Some(country) = request.country
        && !input.rules.allowed_countries.is_empty()
        && !input.rules.allowed_countries.contains(&country)
    {
        return fail(DeclineReason::CountryBlocked);
    }
    // The card's spending controls, right after rows 11 and 12.
    if input.controls.excludes(request.mcc, request.country) {
        return fail(DeclineReason::SpendingControls);
    }
    // Row 13.
    if request.amount_minor > card.remaining().minor() {
        return fail(DeclineReason::ExceedsCardAmount);
    }
    // Row 14.
    if input.standing.restricted || input.standing.overdue {
        return fail(DeclineReason::AccountRestricted);
    }
    // Row 15.
    if let Some(rule) = input.rules.fraud.authorization_refusal(input.cardholder_approvals, input.now) {
        return Err((DeclineReason::SuspectedFraud, rule.to_owned()));
    }
    Ok(())
}

fn kind_of(request: &AuthorizationRequest, bound_merchant: bool) -> AuthorizationKind {
    match (request.class, request.transaction_type) {
        (MessageClass::Advice, _) => AuthorizationKind::Advice,
        (_, TransactionType::Refund) => AuthorizationKind::Refund,
        _ if request.amount_minor == 0 => AuthorizationKind::Verification,
        _ if bound_merchant => AuthorizationKind::Incremental,
        _ => AuthorizationKind::Purchase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardEvent;
    use crate::card::tests::{card, merchant, now, usd};
    use crate::controls::SpendingControls;
    use chrono::Duration;
    use proptest::prelude::*;

    fn rules() -> AuthorizationRules {
        AuthorizationRules::defaults(Country::parse("US").expect("US"), 100)
    }

    fn purchase(amount_minor: i64) -> AuthorizationRequest {
        AuthorizationRequest {
            class: MessageClass::Authorization,
            transaction_type: TransactionType::Purchase,
            amount_minor,
            currency_numeric: 840,
            expiry: Some(Expiry::new(2029, 11).expect("valid")),
            mcc: Mcc(5732),
            merchant: merchant("SHOP1"),
            country: Some(Country::parse("US").expect("US")),
        }
    }

    struct Case {
        request: AuthorizationRequest,
        card: Option<Card>,
        cvv: CvvCheck,
        controls: CardControls,
        standing: CardholderStanding,
        approvals: Vec<DateTime<Utc>>,
        now: DateTime<Utc>,
    }

    impl Case {
        fn new(request: AuthorizationRequest) -> Case {
            Case {
                request,
                card: Some(card(10_000)),
                cvv: CvvCheck::Match,
                controls: CardControls::default(),
                standing: CardholderStanding::default(),
                approvals: vec![],
                now: now(),
            }
        }

        fn decide(&self) -> Decision {
            let rules = rules();
            decide(&DecisionInput {
                request: &self.request,
                card: self.card.as_ref(),
                cvv: self.cvv,
                controls: &self.controls,
                standing: self.standing,
                cardholder_approvals: &self.approvals,
                rules: &rules,
                now: self.now,
            })
        }
    }

    fn used_card() -> Card {
        let mut used = card(10_000);
        used.hold(usd(4_000)).expect("fits");
        used.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        used
    }

    fn assert_declined(decision: Decision, reason: DeclineReason, code: &str) {
        assert_eq!(decision.decline_reason(), Some(&reason), "{decision:?}");
        assert_eq!(decision.response_code, code);
        assert!(!decision.first_use);
    }

    #[test]
    fn approves_a_first_purchase_and_consumes_the_card() {
        let decision = Case::new(purchase(4_000)).decide();
        assert_eq!(decision.outcome, Outcome::Approved { hold: usd(4_000) });
        assert_eq!(decision.response_code, "00");
        assert_eq!(decision.kind, AuthorizationKind::Purchase);
        assert_eq!(decision.cvv_result, Some(CvvResult::Match));
        assert!(decision.first_use);
        assert_eq!(decision.rule, "all_checks_passed");
    }

    #[test]
    fn each_row_declines_with_its_reason_and_code() {
        let mut case = Case::new(purchase(4_000));
        case.request.expiry = None;
        assert_declined(case.decide(), DeclineReason::InvalidRequest(InvalidRequest::Format), "30");

        let mut case = Case::new(purchase(-1));
        case.request.amount_minor = -1;
        assert_declined(case.decide(), DeclineReason::InvalidRequest(InvalidRequest::Amount), "13");

        let mut case = Case::new(purchase(4_000));
        case.card = None;
        assert_declined(case.decide(), DeclineReason::CardNotFound, "14");

        let mut case = Case::new(purchase(4_000));
        case.request.expiry = Some(Expiry::new(2029, 12).expect("valid"));
        assert_declined(case.decide(), DeclineReason::ExpiryMismatch, "54");

        let mut case = Case::new(purchase(4_000));
        case.cvv = CvvCheck::Mismatch;
        let decision = case.decide();
        assert_eq!(decision.cvv_result, Some(CvvResult::NoMatch));
        assert_declined(decision, DeclineReason::CvvMismatch, "N7");

        let mut case = Case::new(purchase(4_000));
        case.cvv = CvvCheck::Absent;
        let decision = case.decide();
        assert_eq!(decision.cvv_result, None, "no CVV2 sent, none reported");
        assert_declined(decision, DeclineReason::CvvMismatch, "N7");

        let mut case = Case::new(purchase(4_000));
        let mut frozen = card(10_000);
        frozen.apply(CardEvent::Freeze { rule: "operator".to_owned() }, now()).expect("legal");
        case.card = Some(frozen);
        assert_declined(case.decide(), DeclineReason::CardFrozen, "62");

        for event in [CardEvent::Cancel, CardEvent::Close(crate::card::CloseReason::Operator)] {
            let mut case = Case::new(purchase(4_000));
            let mut closed = card(10_000);
            closed.apply(event, now()).expect("legal");
            case.card = Some(closed);
            assert_declined(case.decide(), DeclineReason::CardClosed, "62");
        }

        let mut case = Case::new(purchase(4_000));
        case.now = now() + Duration::hours(24);
        assert_declined(case.decide(), DeclineReason::CardExpired, "54");

        let mut case = Case::new(purchase(4_000));
        case.request.merchant = merchant("SHOP2");
        case.card = Some(used_card());
        assert_declined(case.decide(), DeclineReason::CardAlreadyUsed, "05");

        let mut case = Case::new(purchase(4_000));
        case.request.currency_numeric = 978;
        assert_declined(case.decide(), DeclineReason::CurrencyNotSupported, "57");

        let mut case = Case::new(purchase(4_000));
        case.request.transaction_type = TransactionType::from_processing_code("010000");
        assert_declined(case.decide(), DeclineReason::TransactionNotPermitted, "57");

        for blocked in [7995, 7801, 6011, 4829, 9223, 4900, 4121, 7273] {
            let mut case = Case::new(purchase(4_000));
            case.request.mcc = Mcc(blocked);
            assert_declined(case.decide(), DeclineReason::MerchantCategoryBlocked, "57");
        }

        let mut case = Case::new(purchase(4_000));
        case.request.country = Some(Country::parse("FR").expect("FR"));
        assert_declined(case.decide(), DeclineReason::CountryBlocked, "57");

        let mut case = Case::new(purchase(10_001));
        case.request.amount_minor = 10_001;
        assert_declined(case.decide(), DeclineReason::ExceedsCardAmount, "51");

        let mut case = Case::new(purchase(4_000));
        case.standing.overdue = true;
        assert_declined(case.decide(), DeclineReason::AccountRestricted, "62");

        let mut case = Case::new(purchase(4_000));
        case.approvals = vec![now() - Duration::minutes(5); 20];
        let decision = case.decide();
        assert_eq!(decision.rule, "cardholder_approvals_1h");
        assert_declined(decision, DeclineReason::SuspectedFraud, "59");
    }

    #[test]
    fn the_first_failing_row_wins() {
        // Expired window, blocked category and too large an amount: row 7 comes first.
        let mut case = Case::new(purchase(20_000));
        case.now = now() + Duration::hours(25);
        case.request.mcc = Mcc(7995);
        assert_declined(case.decide(), DeclineReason::CardExpired, "54");
        // A wrong CVV2 on a frozen card: row 4 comes before row 5.
        let mut case = Case::new(purchase(4_000));
        case.cvv = CvvCheck::Mismatch;
        let mut frozen = card(10_000);
        frozen.apply(CardEvent::Freeze { rule: "x".to_owned() }, now()).expect("legal");
        case.card = Some(frozen);
        assert_declined(case.decide(), DeclineReason::CvvMismatch, "N7");
    }

    #[test]
    fn a_country_is_skipped_when_the_request_has_none() {
        let mut case = Case::new(purchase(4_000));
        case.request.country = None;
        assert!(case.decide().is_approved());
    }

    #[test]
    fn zero_amount_is_an_account_verification_that_does_not_consume() {
        let decision = Case::new(purchase(0)).decide();
        assert_eq!((decision.response_code, decision.kind), ("85", AuthorizationKind::Verification));
        assert_eq!(decision.outcome, Outcome::Approved { hold: usd(0) });
        assert!(!decision.first_use);
        let mut without_cvv = Case::new(purchase(0));
        without_cvv.cvv = CvvCheck::Absent;
        assert_declined(without_cvv.decide(), DeclineReason::CvvMismatch, "N7");
    }

    #[test]
    fn micro_approvals_neither_consume_nor_bind() {
        let decision = Case::new(purchase(100)).decide();
        assert!(decision.is_approved());
        assert!(!decision.first_use, "1.00 is still a micro authorization");
        assert!(Case::new(purchase(101)).decide().first_use);
    }

    #[test]
    fn the_bound_merchant_may_authorize_incrementally_without_cvv() {
        let mut case = Case::new(purchase(6_000));
        case.card = Some(used_card());
        case.cvv = CvvCheck::Mismatch;
        let decision = case.decide();
        assert_eq!(decision.kind, AuthorizationKind::Incremental);
        assert_eq!(decision.cvv_result, Some(CvvResult::NotProcessed));
        assert_eq!(decision.outcome, Outcome::Approved { hold: usd(6_000) });
        assert!(!decision.first_use);
        // Within the remaining amount only.
        case.request.amount_minor = 6_001;
        assert_declined(case.decide(), DeclineReason::ExceedsCardAmount, "51");
        // The window does not limit a used card's incremental authorizations.
        case.request.amount_minor = 1_000;
        case.now = now() + Duration::hours(30);
        assert!(case.decide().is_approved());
    }

    #[test]
    fn a_paused_card_declines_purchases_and_verifications_right_after_the_frozen_check() {
        for amount in [4_000, 0] {
            let mut case = Case::new(purchase(amount));
            case.controls.paused = true;
            assert_declined(case.decide(), DeclineReason::CardPaused, "62");
        }
        // Row 4 (CVV2) comes first; a paused card that was then frozen is frozen (row 5).
        let mut case = Case::new(purchase(4_000));
        case.controls.paused = true;
        case.cvv = CvvCheck::Mismatch;
        assert_declined(case.decide(), DeclineReason::CvvMismatch, "N7");
        let mut frozen = card(10_000);
        frozen.apply(CardEvent::Freeze { rule: "x".to_owned() }, now()).expect("legal");
        case.cvv = CvvCheck::Match;
        case.card = Some(frozen);
        assert_declined(case.decide(), DeclineReason::CardFrozen, "62");
        // Refunds and advices are processed on a paused card.
        let mut refund = purchase(2_500);
        refund.transaction_type = TransactionType::Refund;
        let mut case = Case::new(refund);
        case.controls.paused = true;
        assert_eq!(case.decide().response_code, "00");
        let mut advice = purchase(4_000);
        advice.class = MessageClass::Advice;
        let mut case = Case::new(advice);
        case.controls.paused = true;
        let decision = case.decide();
        assert_eq!((decision.response_code, decision.flag), ("00", Some(DeclineReason::CardPaused)));
    }

    #[test]
    fn spending_controls_decline_right_after_the_programs_category_and_country_checks() {
        let mut case = Case::new(purchase(4_000));
        case.controls =
            CardControls::new(false, SpendingControls { blocked_categories: vec![Mcc(5732)], ..Default::default() });
        assert_declined(case.decide(), DeclineReason::SpendingControls, "57");
        case.request.mcc = Mcc(7995);
        assert_declined(case.decide(), DeclineReason::MerchantCategoryBlocked, "57");
        let mut case = Case::new(purchase(4_000));
        let canada = vec![Country::parse("CA").expect("CA")];
        case.controls = CardControls::new(false, SpendingControls { allowed_countries: canada, ..Default::default() });
        assert_declined(case.decide(), DeclineReason::SpendingControls, "57");
        case.request.country = None;
        assert!(case.decide().is_approved(), "no merchant country: the country controls are skipped");
        // Before the amount (row 13).
        let mut case = Case::new(purchase(50_000));
        case.controls =
            CardControls::new(false, SpendingControls { allowed_categories: vec![Mcc(5411)], ..Default::default() });
        assert_declined(case.decide(), DeclineReason::SpendingControls, "57");
    }

    #[test]
    fn declines_the_cards_own_controls_chose_do_not_count_toward_fraud() {
        assert!(!DeclineReason::counts_toward_fraud("card_paused"));
        assert!(!DeclineReason::counts_toward_fraud("spending_controls"));
        assert!(DeclineReason::counts_toward_fraud("cvv_mismatch"));
    }

    #[test]
    fn refunds_are_accepted_on_any_card_state() {
        let mut refund = purchase(2_500);
        refund.transaction_type = TransactionType::from_processing_code("200000");
        refund.expiry = None;
        refund.mcc = Mcc(7995);
        let mut closed = used_card();
        closed.apply(CardEvent::Close(crate::card::CloseReason::Settled), now()).expect("legal");
        let mut case = Case::new(refund);
        case.card = Some(closed);
        case.cvv = CvvCheck::Mismatch;
        case.standing.restricted = true;
        let decision = case.decide();
        assert_eq!((decision.kind, decision.response_code), (AuthorizationKind::Refund, "00"));
        assert_eq!(decision.outcome, Outcome::Approved { hold: usd(0) });
        assert_eq!(decision.cvv_result, Some(CvvResult::NotProcessed));
        case.card = None;
        assert_declined(case.decide(), DeclineReason::CardNotFound, "14");
    }

    #[test]
    fn advices_are_posted_past_every_check_and_flagged() {
        let mut advice = purchase(50_000);
        advice.class = MessageClass::Advice;
        let mut case = Case::new(advice);
        let mut expired = card(10_000);
        expired.apply(CardEvent::WindowPassed, now() + Duration::hours(24)).expect("legal");
        case.card = Some(expired);
        case.now = now() + Duration::hours(30);
        let decision = case.decide();
        assert_eq!((decision.kind, decision.response_code), (AuthorizationKind::Advice, "00"));
        assert_eq!(decision.outcome, Outcome::Approved { hold: usd(50_000) });
        assert_eq!(decision.flag, Some(DeclineReason::CardExpired));
        assert!(!decision.first_use, "only an active card can be consumed");

        let mut refund = purchase(50_000);
        refund.class = MessageClass::Advice;
        refund.transaction_type = TransactionType::Refund;
        let decision = Case::new(refund).decide();
        assert_eq!(decision.outcome, Outcome::Approved { hold: usd(0) }, "a refund advice holds nothing");

        let mut within = purchase(5_000);
        within.class = MessageClass::Advice;
        let decision = Case::new(within).decide();
        assert_eq!((decision.flag, decision.first_use), (None, true));
    }

    proptest! {
        #[test]
        fn the_decision_is_deterministic(
            amount in 0i64..20_000, mcc in 0u16..10_000, hours in 0i64..48,
            cvv in prop_oneof![Just(CvvCheck::Absent), Just(CvvCheck::Match), Just(CvvCheck::Mismatch)],
            used in any::<bool>(), restricted in any::<bool>(), same_merchant in any::<bool>(),
        ) {
            let mut case = Case::new(purchase(amount));
            case.request.mcc = Mcc(mcc);
            case.now = now() + Duration::hours(hours);
            case.cvv = cvv;
            case.standing.restricted = restricted;
            if used { case.card = Some(used_card()); }
            if !same_merchant { case.request.merchant = merchant("OTHER"); }
            let first = case.decide();
            prop_assert_eq!(&first, &case.decide());
            // Whatever the input, an approval never holds more than what is left on the card.
            if let Outcome::Approved { hold } = first.outcome {
                prop_assert!(hold.minor() <= case.card.as_ref().map_or(0, |card| card.remaining().minor()));
            }
        }
    }
}
