//! Authorization rules that an operator changes at run time: data, with versions (docs/reference/behaviour.md,
//! "Rules the issuer controls").
//!
//! A rule is either a list of [`Condition`]s, all of which must hold for it to decline, or a [`Velocity`] limit, and
//! it applies to a [`Scope`] (the program, some cardholders, some cards). Rules in force form a [`RuleSet`] with a
//! version of its own; the engine evaluates the set after row 15 of the decision table for purchases, incremental
//! authorizations and verifications (never refunds or advices). An `active` rule that matches declines with reason
//! `auth_rule`; a `shadow` rule that matches only records `would_decline`. Each decision stores the set's version and
//! one result letter per rule ([`Evaluation::results`]), which is all a report or a view needs to name every rule
//! and version that ran.
//!
//! [`RuleDraft::check`] validates what a client sent, naming the field at fault the way the API reports it
//! (`conditions[1].value`).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::country::Country;
use crate::decision::Mcc;
use crate::money::Currency;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Records `would_decline`; never changes an answer.
    Shadow,
    /// Declines (`auth_rule`, ISO `05`).
    Active,
    /// Not evaluated.
    Disabled,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Active => "active",
            Mode::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        [Mode::Shadow, Mode::Active, Mode::Disabled].into_iter().find(|mode| mode.as_str() == text)
    }
}

/// What a condition reads about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// The merchant category code, a four-digit string.
    Mcc,
    /// The merchant's country (alpha-2); unknown when the request carries none.
    Country,
    /// The amount in minor units.
    Amount,
    MerchantId,
    AcquirerId,
    /// ISO 4217 alpha code.
    Currency,
    /// Seconds since the card was created.
    CardAgeSeconds,
    /// Whole days since the cardholder signed up.
    CardholderTenureDays,
    /// 0–23, in the deployment's time zone.
    HourOfDay,
}

impl Attribute {
    fn is_numeric(self) -> bool {
        matches!(
            self,
            Attribute::Amount | Attribute::CardAgeSeconds | Attribute::CardholderTenureDays | Attribute::HourOfDay
        )
    }

    fn name(self) -> &'static str {
        match self {
            Attribute::Mcc => "mcc",
            Attribute::Country => "country",
            Attribute::Amount => "amount",
            Attribute::MerchantId => "merchant_id",
            Attribute::AcquirerId => "acquirer_id",
            Attribute::Currency => "currency",
            Attribute::CardAgeSeconds => "card_age_seconds",
            Attribute::CardholderTenureDays => "cardholder_tenure_days",
            Attribute::HourOfDay => "hour_of_day",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    IsOneOf,
    IsNotOneOf,
    IsGreaterThan,
    IsLessThan,
}

/// A condition's value: a number for `is_greater_than` / `is_less_than`, a list for `is_one_of` / `is_not_one_of`
/// (numbers for numeric attributes, strings for the others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(i64),
    Numbers(Vec<i64>),
    Texts(Vec<String>),
}

/// "`attribute` `operation` `value`", e.g. `mcc is_one_of ["7995"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub attribute: Attribute,
    pub operation: Operation,
    pub value: Value,
}

/// Whose approvals a velocity limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Card,
    Cardholder,
}

/// "At most `max_count` approvals, or `max_amount` approved, within `window_seconds`, per card or cardholder": a
/// purchase that would go past it is declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Velocity {
    pub window_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<i64>,
    pub per: Per,
}

/// Which requests a rule applies to. As JSON: `{"program": true}`, `{"cardholder_ids": [...]}` or
/// `{"card_ids": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardholder_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_ids: Option<Vec<String>>,
}

impl Scope {
    pub fn program() -> Scope {
        Scope { program: Some(true), ..Scope::default() }
    }

    /// True when a request on this card of this cardholder is in scope.
    pub fn covers(&self, card_id: &str, cardholder_id: &str) -> bool {
        match (&self.cardholder_ids, &self.card_ids) {
            (Some(holders), _) => holders.iter().any(|id| id == cardholder_id),
            (None, Some(cards)) => cards.iter().any(|id| id == card_id),
            (None, None) => self.program == Some(true),
        }
    }
}

/// What a rule checks: conditions, or a velocity limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Conditions(Vec<Condition>),
    Velocity(Velocity),
}

/// One version of a rule, as stored and as evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub version: i64,
    pub mode: Mode,
    pub scope: Scope,
    pub body: Body,
}

/// A rule as a client sends it, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleDraft {
    pub scope: Option<Scope>,
    pub conditions: Option<Vec<Condition>>,
    pub velocity: Option<Velocity>,
}

/// What is wrong with a draft: the field (`conditions[0].value`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct RuleError {
    pub param: String,
    pub message: String,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError { param: param.into(), message: message.into() }
}

/// Ids in a scope, and texts in a condition, are at most this long.
const MAX_TEXT: usize = 64;
/// A rule has at most this many conditions, a list at most this many values, a scope at most this many ids.
const MAX_ITEMS: usize = 1000;
/// The longest velocity window: 90 days.
pub const MAX_WINDOW_SECONDS: i64 = 90 * 86_400;

impl RuleDraft {
    /// The scope and body of a valid draft.
    pub fn check(self) -> Result<(Scope, Body), RuleError> {
        let scope = self.scope.ok_or_else(|| {
            invalid(
                "scope",
                "a rule needs a scope: {\"program\": true}, {\"cardholder_ids\": [...]} or {\"card_ids\": [...]}",
            )
        })?;
        check_scope(&scope)?;
        let body = match (self.conditions, self.velocity) {
            (Some(_), Some(_)) => return Err(invalid("velocity", "send either conditions or velocity, not both")),
            (None, None) => return Err(invalid("conditions", "a rule needs conditions or a velocity limit")),
            (Some(conditions), None) => {
                check_conditions(&conditions)?;
                Body::Conditions(conditions)
            }
            (None, Some(velocity)) => {
                check_velocity(&velocity)?;
                Body::Velocity(velocity)
            }
        };
        Ok((scope, body))
    }
}

fn check_scope(scope: &Scope) -> Result<(), RuleError> {
    let named = [scope.program.is_some(), scope.cardholder_ids.is_some(), scope.card_ids.is_some()];
    if named.iter().filter(|&&named| named).count() != 1 {
        return Err(invalid(
            "scope",
            "a scope is exactly one of {\"program\": true}, {\"cardholder_ids\": [...]} or {\"card_ids\": [...]}",
        ));
    }
    if scope.program == Some(false) {
        return Err(invalid(
            "scope.program",
            "program scope is {\"program\": true}; to narrow a rule, name cardholder_ids or card_ids",
        ));
    }
    for (field, ids, prefix) in
        [("cardholder_ids", &scope.cardholder_ids, "ch_"), ("card_ids", &scope.card_ids, "card_")]
    {
        let Some(ids) = ids else { continue };
        if ids.is_empty() || ids.len() > MAX_ITEMS {
            return Err(invalid(format!("scope.{field}"), format!("name between 1 and {MAX_ITEMS} ids")));
        }
        if let Some(index) = ids.iter().position(|id| !id.starts_with(prefix) || id.len() > MAX_TEXT) {
            return Err(invalid(format!("scope.{field}[{index}]"), format!("an id starts with {prefix}")));
        }
    }
    Ok(())
}

fn check_conditions(conditions: &[Condition]) -> Result<(), RuleError> {
    if conditions.is_empty() || conditions.len() > MAX_ITEMS {
        return Err(invalid("conditions", "a rule needs at least one condition"));
    }
    for (index, condition) in conditions.iter().enumerate() {
        condition.check().map_err(|(field, message)| invalid(format!("conditions[{index}].{field}"), message))?;
    }
    Ok(())
}

fn check_velocity(velocity: &Velocity) -> Result<(), RuleError> {
    if !(1..=MAX_WINDOW_SECONDS).contains(&velocity.window_seconds) {
        return Err(invalid(
            "velocity.window_seconds",
            format!("a window is between 1 and {MAX_WINDOW_SECONDS} seconds (90 days)"),
        ));
    }
    match (velocity.max_count, velocity.max_amount) {
        (None, None) => Err(invalid("velocity.max_count", "a velocity limit needs max_count or max_amount")),
        (Some(_), Some(_)) => Err(invalid("velocity.max_amount", "send either max_count or max_amount, not both")),
        (Some(count), None) if count < 0 => Err(invalid("velocity.max_count", "max_count is 0 or more")),
        (None, Some(amount)) if amount < 0 => {
            Err(invalid("velocity.max_amount", "max_amount is 0 or more (minor units)"))
        }
        _ => Ok(()),
    }
}

impl Condition {
    /// Checks the value against the attribute and the operation: `Err((field, message))`.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let attribute = self.attribute.name();
        let list = matches!(self.operation, Operation::IsOneOf | Operation::IsNotOneOf);
        match (&self.value, list, self.attribute.is_numeric()) {
            (Value::Number(_), false, true) => Ok(()),
            (_, false, true) => Err(("value", format!("{attribute} compares with a number, e.g. 10000"))),
            (_, false, false) => Err((
                "operation",
                format!(
                    "{attribute} is text: use is_one_of or is_not_one_of (is_greater_than and is_less_than compare numbers)"
                ),
            )),
            (Value::Numbers(values), true, true) => check_numbers(self.attribute, values),
            (Value::Texts(values), true, false) => check_texts(self.attribute, values),
            (Value::Numbers(values), true, false) if values.is_empty() => {
                Err(("value", "the list is empty".to_owned()))
            }
            (_, true, true) => Err(("value", format!("{attribute} takes a list of numbers, e.g. [1, 2]"))),
            (_, true, false) => {
                Err(("value", format!("{attribute} takes a list of strings, e.g. [\"{}\"]", example(self.attribute))))
            }
        }
    }
}

fn example(attribute: Attribute) -> &'static str {
    match attribute {
        Attribute::Mcc => "7995",
        Attribute::Country => "US",
        Attribute::Currency => "USD",
        _ => "M12345",
    }
}

fn check_numbers(attribute: Attribute, values: &[i64]) -> Result<(), (&'static str, String)> {
    if values.is_empty() || values.len() > MAX_ITEMS {
        return Err(("value", format!("the list has between 1 and {MAX_ITEMS} values")));
    }
    if attribute == Attribute::HourOfDay && values.iter().any(|hour| !(0..24).contains(hour)) {
        return Err(("value", "hours are 0 to 23".to_owned()));
    }
    Ok(())
}

fn check_texts(attribute: Attribute, values: &[String]) -> Result<(), (&'static str, String)> {
    if values.is_empty() || values.len() > MAX_ITEMS {
        return Err(("value", format!("the list has between 1 and {MAX_ITEMS} values")));
    }
    let valid = |text: &String| match attribute {
        Attribute::Mcc => Mcc::parse(text).is_some(),
        Attribute::Country => Country::parse(text).is_ok(),
        Attribute::Currency => Currency::from_code(text).is_ok(),
        _ => !text.is_empty() && text.len() <= MAX_TEXT,
    };
    match values.iter().position(|text| !valid(text)) {
        None => Ok(()),
        Some(_) => Err((
            "value",
            match attribute {
                Attribute::Mcc => "merchant categories are four-digit strings such as \"5411\"".to_owned(),
                Attribute::Country => "countries are ISO 3166-1 alpha-2 codes such as \"US\"".to_owned(),
                Attribute::Currency => "currencies are ISO 4217 codes such as \"USD\"".to_owned(),
                _ => format!("values are 1 to {MAX_TEXT} characters"),
            },
        )),
    }
}

/// What a rule reads about one request (besides the approvals a velocity limit counts).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub mcc: Mcc,
    pub country: Option<Country>,
    pub amount: i64,
    pub merchant_id: &'a str,
    pub acquirer_id: &'a str,
    pub currency: &'a str,
    pub card_age_seconds: i64,
    pub cardholder_tenure_days: i64,
    pub hour_of_day: i64,
    pub card_id: &'a str,
    pub cardholder_id: &'a str,
}

/// An earlier approval, as a velocity limit counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    pub at: DateTime<Utc>,
    pub amount: i64,
}

impl Condition {
    /// True when the condition holds. A condition on a country the request does not carry does not hold.
    fn holds(&self, facts: &Facts<'_>) -> bool {
        let number = match self.attribute {
            Attribute::Amount => facts.amount,
            Attribute::CardAgeSeconds => facts.card_age_seconds,
            Attribute::CardholderTenureDays => facts.cardholder_tenure_days,
            Attribute::HourOfDay => facts.hour_of_day,
            _ => return self.holds_for_text(facts),
        };
        match (&self.value, self.operation) {
            (Value::Number(limit), Operation::IsGreaterThan) => number > *limit,
            (Value::Number(limit), Operation::IsLessThan) => number < *limit,
            (Value::Numbers(values), Operation::IsOneOf) => values.contains(&number),
            (Value::Numbers(values), Operation::IsNotOneOf) => !values.contains(&number),
            _ => false,
        }
    }

    fn holds_for_text(&self, facts: &Facts<'_>) -> bool {
        let Value::Texts(values) = &self.value else { return false };
        let found = match self.attribute {
            Attribute::Mcc => values.iter().any(|value| Mcc::parse(value) == Some(facts.mcc)),
            Attribute::Country => match facts.country {
                Some(country) => values.iter().any(|value| value == country.as_str()),
                None => return false,
            },
            Attribute::MerchantId => values.iter().any(|value| value == facts.merchant_id),
            Attribute::AcquirerId => values.iter().any(|value| value == facts.acquirer_id),
            Attribute::Currency => values.iter().any(|value| value == facts.currency),
            _ => return false,
        };
        match self.operation {
            Operation::IsOneOf => found,
            Operation::IsNotOneOf => !found,
            _ => false,
        }
    }
}

impl Velocity {
    /// True when approving `amount` now would go past the limit, given the approvals it counts.
    fn exceeded(&self, amount: i64, approvals: &[Approval], now: DateTime<Utc>) -> bool {
        let start = now - Duration::seconds(self.window_seconds);
        let inside = approvals.iter().filter(|approval| approval.at > start && approval.at <= now);
        match (self.max_count, self.max_amount) {
            (Some(max), _) => i64::try_from(inside.count()).unwrap_or(i64::MAX) >= max,
            (None, Some(max)) => inside.map(|approval| approval.amount).fold(amount, i64::saturating_add) > max,
            (None, None) => false,
        }
    }
}

/// The result of one rule for one request, as a letter in [`Evaluation::results`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleResult {
    /// Out of the rule's scope: not evaluated, not shown.
    NotInScope,
    Pass,
    Decline,
    WouldDecline,
}

impl RuleResult {
    pub fn letter(self) -> char {
        match self {
            RuleResult::NotInScope => '-',
            RuleResult::Pass => 'p',
            RuleResult::Decline => 'd',
            RuleResult::WouldDecline => 'w',
        }
    }

    pub fn from_letter(letter: char) -> Option<RuleResult> {
        match letter {
            '-' => Some(RuleResult::NotInScope),
            'p' => Some(RuleResult::Pass),
            'd' => Some(RuleResult::Decline),
            'w' => Some(RuleResult::WouldDecline),
            _ => None,
        }
    }

    /// The API's name (`pass`, `decline`, `would_decline`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleResult::NotInScope => "not_in_scope",
            RuleResult::Pass => "pass",
            RuleResult::Decline => "decline",
            RuleResult::WouldDecline => "would_decline",
        }
    }
}

/// What a rule set made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// One letter per rule of the set, in its order ([`RuleResult::letter`]).
    pub results: String,
    /// The first active rule that declined (its id).
    pub declined_by: Option<String>,
}

/// The rules in force (active and shadow), in the order they were created, under one version: a change of any rule
/// makes a new set. Every decision names the set it was evaluated with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub version: i64,
    pub rules: Vec<Rule>,
}

/// The approvals that a set's velocity limits count, for one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Approvals<'a> {
    pub card: &'a [Approval],
    pub cardholder: &'a [Approval],
}

impl RuleSet {
    pub fn new(version: i64, rules: Vec<Rule>) -> RuleSet {
        let rules = rules.into_iter().filter(|rule| rule.mode != Mode::Disabled).collect();
        RuleSet { version, rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The longest window of the velocity limits per card or per cardholder (`None`: there are none).
    pub fn longest_window(&self, per: Per) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(|rule| match &rule.body {
                Body::Velocity(velocity) if velocity.per == per => Some(velocity.window_seconds),
                _ => None,
            })
            .max()
    }

    /// Evaluates every rule in scope; the first active rule that matches declines.
    pub fn evaluate(&self, facts: &Facts<'_>, approvals: Approvals<'_>, now: DateTime<Utc>) -> Evaluation {
        let mut results = String::with_capacity(self.rules.len());
        let mut declined_by = None;
        for rule in &self.rules {
            let result = rule.evaluate(facts, approvals, now);
            if result == RuleResult::Decline && declined_by.is_none() {
                declined_by = Some(rule.id.clone());
            }
            results.push(result.letter());
        }
        Evaluation { results, declined_by }
    }
}

impl Rule {
    /// This rule's result for a request.
    pub fn evaluate(&self, facts: &Facts<'_>, approvals: Approvals<'_>, now: DateTime<Utc>) -> RuleResult {
        if self.mode == Mode::Disabled || !self.scope.covers(facts.card_id, facts.cardholder_id) {
            return RuleResult::NotInScope;
        }
        let matched = match &self.body {
            Body::Conditions(conditions) => conditions.iter().all(|condition| condition.holds(facts)),
            Body::Velocity(velocity) => {
                let counted = match velocity.per {
                    Per::Card => approvals.card,
                    Per::Cardholder => approvals.cardholder,
                };
                velocity.exceeded(facts.amount, counted, now)
            }
        };
        match (matched, self.mode) {
            (false, _) => RuleResult::Pass,
            (true, Mode::Active) => RuleResult::Decline,
            (true, _) => RuleResult::WouldDecline,
        }
    }
}

/// A stored decision as a backtest replays it.
#[derive(Debug, Clone, Copy)]
pub struct Replayed<'a> {
    pub id: &'a str,
    pub facts: Facts<'a>,
    pub at: DateTime<Utc>,
    /// ghostcard approved it (whatever happened later).
    pub approved: bool,
    /// An approval that spends (what a velocity limit counts).
    pub spends: bool,
    /// It reached the rules: a purchase, incremental authorization or verification that passed the decision
    /// table (approved, or declined by a rule or the decision endpoint).
    pub reached_rules: bool,
}

impl Replayed<'_> {
    /// True when a stored decision reached the issuer's rules: a kind they run on, approved by the decision
    /// table (and then approved, or declined by a rule or the decision endpoint).
    pub fn reached_rules(kind: crate::decision::AuthorizationKind, decline_reason: Option<&str>) -> bool {
        use crate::decision::DeclineReason;
        kind.meets_issuer_rules()
            && decline_reason.is_none_or(|reason| {
                reason == DeclineReason::AuthRule.code() || reason == DeclineReason::DeclinedByEndpoint.code()
            })
    }
}

/// How many sample authorization ids a backtest keeps.
pub const BACKTEST_SAMPLE: usize = 20;

/// A rule version replayed over stored decisions in time order: which approvals it would have declined. An
/// approval it declines no longer counts toward its own velocity limit afterwards, as it would not have.
#[derive(Debug, Clone)]
pub struct Backtest {
    rule: Rule,
    start: DateTime<Utc>,
    approvals: std::collections::HashMap<String, Vec<Approval>>,
    pub evaluated: u64,
    pub approved_to_declined: u64,
    pub sample: Vec<String>,
}

impl Backtest {
    /// A backtest of `rule` (as if it were active) over decisions from `start`; decisions before `start` (from
    /// [`Backtest::history_seconds`] before it) only fill the velocity history.
    pub fn new(rule: Rule, start: DateTime<Utc>) -> Backtest {
        let rule = Rule { mode: Mode::Active, ..rule };
        Backtest {
            rule,
            start,
            approvals: Default::default(),
            evaluated: 0,
            approved_to_declined: 0,
            sample: Vec::new(),
        }
    }

    /// How long before the window the decisions a velocity limit counts begin (0 for conditions).
    pub fn history_seconds(&self) -> i64 {
        match &self.rule.body {
            Body::Velocity(velocity) => velocity.window_seconds,
            Body::Conditions(_) => 0,
        }
    }

    /// Replays the next decision (in time order).
    pub fn replay(&mut self, decision: &Replayed<'_>) {
        let counted_by = match &self.rule.body {
            Body::Velocity(velocity) => Some(match velocity.per {
                Per::Card => decision.facts.card_id,
                Per::Cardholder => decision.facts.cardholder_id,
            }),
            Body::Conditions(_) => None,
        };
        if decision.at >= self.start && decision.reached_rules {
            let history = counted_by.and_then(|key| self.approvals.get(key)).map_or(&[][..], Vec::as_slice);
            let approvals = Approvals { card: history, cardholder: history };
            let result = self.rule.evaluate(&decision.facts, approvals, decision.at);
            if result != RuleResult::NotInScope {
                self.evaluated += 1;
            }
            if result == RuleResult::Decline && decision.approved {
                self.approved_to_declined += 1;
                if self.sample.len() < BACKTEST_SAMPLE {
                    self.sample.push(decision.id.to_owned());
                }
                return;
            }
        }
        if let Some(key) = counted_by
            && decision.spends
        {
            let approval = Approval { at: decision.at, amount: decision.facts.amount };
            self.approvals.entry(key.to_owned()).or_default().push(approval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(body: serde_json::Value) -> Result<(Scope, Body), RuleError> {
        #[derive(Deserialize)]
        struct Sent {
            scope: Option<Scope>,
            conditions: Option<Vec<Condition>>,
            velocity: Option<Velocity>,
        }
        let sent: Sent = serde_json::from_value(body).expect("shape");
        RuleDraft { scope: sent.scope, conditions: sent.conditions, velocity: sent.velocity }.check()
    }

    fn rule(mode: Mode, body: serde_json::Value) -> Rule {
        let (scope, body) = draft(body).expect("valid");
        Rule { id: "rule_1".into(), version: 1, mode, scope, body }
    }

    fn facts() -> Facts<'static> {
        Facts {
            mcc: Mcc(5732),
            country: Country::parse("US").ok(),
            amount: 5_000,
            merchant_id: "M1",
            acquirer_id: "A1",
            currency: "USD",
            card_age_seconds: 600,
            cardholder_tenure_days: 3,
            hour_of_day: 23,
            card_id: "card_1",
            cardholder_id: "ch_1",
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    #[test]
    fn bad_drafts_name_the_field_at_fault() {
        let param = |body| draft(body).expect_err("invalid").param;
        let program = json!({"program": true});
        assert_eq!(param(json!({"conditions": []})), "scope");
        assert_eq!(param(json!({"scope": {}, "conditions": []})), "scope");
        assert_eq!(param(json!({"scope": {"card_ids": []}, "conditions": []})), "scope.card_ids");
        assert_eq!(param(json!({"scope": {"program": false}, "conditions": []})), "scope.program");
        assert_eq!(param(json!({"scope": program})), "conditions");
        assert_eq!(param(json!({"scope": program, "conditions": []})), "conditions");
        let wrong_type = json!({"scope": program, "conditions": [{"attribute": "amount", "operation": "is_greater_than", "value": ["1"]}]});
        assert_eq!(param(wrong_type), "conditions[0].value");
        let text_compared = json!({"scope": program, "conditions": [
            {"attribute": "amount", "operation": "is_less_than", "value": 5},
            {"attribute": "mcc", "operation": "is_greater_than", "value": 5000}]});
        assert_eq!(param(text_compared), "conditions[1].operation");
        let bad_mcc =
            json!({"scope": program, "conditions": [{"attribute": "mcc", "operation": "is_one_of", "value": ["59"]}]});
        assert_eq!(param(bad_mcc), "conditions[0].value");
        let no_limit = json!({"scope": program, "velocity": {"window_seconds": 60, "per": "card"}});
        assert_eq!(param(no_limit), "velocity.max_count");
        let window = |seconds| json!({"scope": {"program": true}, "velocity": {"window_seconds": seconds, "max_count": 1, "per": "card"}});
        assert_eq!(param(window(0)), "velocity.window_seconds");
        assert_eq!(param(window(MAX_WINDOW_SECONDS + 1)), "velocity.window_seconds");
        assert!(draft(window(1)).is_ok() && draft(window(MAX_WINDOW_SECONDS)).is_ok(), "1 s and 90 days are windows");
    }

    #[test]
    fn conditions_all_hold_to_decline_and_an_unknown_country_never_holds() {
        let blocked = rule(
            Mode::Active,
            json!({"scope": {"program": true}, "conditions": [
                {"attribute": "mcc", "operation": "is_one_of", "value": ["5732", "5411"]},
                {"attribute": "amount", "operation": "is_greater_than", "value": 4_999}]}),
        );
        assert_eq!(blocked.evaluate(&facts(), Approvals::default(), now()), RuleResult::Decline);
        let small = Facts { amount: 4_999, ..facts() };
        assert_eq!(blocked.evaluate(&small, Approvals::default(), now()), RuleResult::Pass);
        let foreign = rule(
            Mode::Shadow,
            json!({"scope": {"program": true}, "conditions": [
                {"attribute": "country", "operation": "is_not_one_of", "value": ["US"]}]}),
        );
        let abroad = Facts { country: Country::parse("DE").ok(), ..facts() };
        assert_eq!(foreign.evaluate(&abroad, Approvals::default(), now()), RuleResult::WouldDecline);
        assert_eq!(foreign.evaluate(&facts(), Approvals::default(), now()), RuleResult::Pass);
        let unknown = Facts { country: None, ..facts() };
        assert_eq!(foreign.evaluate(&unknown, Approvals::default(), now()), RuleResult::Pass);
        let night = rule(
            Mode::Active,
            json!({"scope": {"program": true}, "conditions": [
                {"attribute": "hour_of_day", "operation": "is_one_of", "value": [22, 23, 0]},
                {"attribute": "cardholder_tenure_days", "operation": "is_less_than", "value": 7}]}),
        );
        assert_eq!(night.evaluate(&facts(), Approvals::default(), now()), RuleResult::Decline);
    }

    #[test]
    fn scopes_limit_a_rule_to_some_cards_or_cardholders() {
        let body = |scope| json!({"scope": scope, "conditions": [{"attribute": "currency", "operation": "is_one_of", "value": ["USD"]}]});
        let holders = rule(Mode::Active, body(json!({"cardholder_ids": ["ch_2"]})));
        assert_eq!(holders.evaluate(&facts(), Approvals::default(), now()), RuleResult::NotInScope);
        let cards = rule(Mode::Active, body(json!({"card_ids": ["card_1"]})));
        assert_eq!(cards.evaluate(&facts(), Approvals::default(), now()), RuleResult::Decline);
    }

    #[test]
    fn velocity_limits_count_approvals_inside_their_window() {
        let at = |seconds_ago| Approval { at: now() - Duration::seconds(seconds_ago), amount: 2_000 };
        let approvals = [at(3_600), at(100), at(10)];
        let two = rule(
            Mode::Active,
            json!({"scope": {"program": true}, "velocity": {"window_seconds": 3_600, "max_count": 2, "per": "card"}}),
        );
        let on_card = Approvals { card: &approvals, cardholder: &[] };
        assert_eq!(two.evaluate(&facts(), on_card, now()), RuleResult::Decline, "two inside the hour");
        let three = rule(
            Mode::Active,
            json!({"scope": {"program": true}, "velocity": {"window_seconds": 3_600, "max_count": 3, "per": "card"}}),
        );
        assert_eq!(three.evaluate(&facts(), on_card, now()), RuleResult::Pass, "the one an hour ago has left");
        let amount = rule(
            Mode::Active,
            json!({"scope": {"program": true}, "velocity": {"window_seconds": 3_600, "max_amount": 9_000, "per": "cardholder"}}),
        );
        let on_holder = Approvals { card: &[], cardholder: &approvals };
        assert_eq!(amount.evaluate(&facts(), on_holder, now()), RuleResult::Pass, "2,000 + 2,000 + 5,000 = 9,000");
        let more = Facts { amount: 5_001, ..facts() };
        assert_eq!(amount.evaluate(&more, on_holder, now()), RuleResult::Decline);
        assert_eq!(amount.evaluate(&more, on_card, now()), RuleResult::Pass, "counts the cardholder's only");
    }

    #[test]
    fn a_backtest_counts_the_approvals_a_rule_would_have_declined() {
        let limit = rule(
            Mode::Shadow,
            json!({"scope": {"program": true}, "velocity": {"window_seconds": 3_600, "max_count": 1, "per": "cardholder"}}),
        );
        let mut backtest = Backtest::new(limit, now());
        assert_eq!(backtest.history_seconds(), 3_600);
        let decision = |id, seconds: i64, approved| Replayed {
            id,
            facts: facts(),
            at: now() + Duration::seconds(seconds),
            approved,
            spends: approved,
            reached_rules: true,
        };
        // Before the window: history only. Then a decline (not an approval: evaluated, not counted), an approval
        // past the limit (declined, and so not counted afterwards), another, and one after the hour.
        for replayed in [
            decision("auth_0", -10, true),
            decision("auth_1", 10, false),
            decision("auth_2", 20, true),
            decision("auth_3", 30, true),
            decision("auth_4", 3_600, true),
        ] {
            backtest.replay(&replayed);
        }
        assert_eq!(backtest.evaluated, 4);
        assert_eq!(backtest.approved_to_declined, 2);
        assert_eq!(backtest.sample, ["auth_2", "auth_3"]);
    }

    #[test]
    fn a_set_records_a_letter_per_rule_and_the_first_active_decline() {
        let block = |mode, id: &str| Rule {
            id: id.into(),
            ..rule(
                mode,
                json!({"scope": {"program": true}, "conditions": [{"attribute": "merchant_id", "operation": "is_one_of", "value": ["M1"]}]}),
            )
        };
        let elsewhere = Rule {
            id: "rule_c".into(),
            ..rule(
                Mode::Active,
                json!({"scope": {"card_ids": ["card_9"]}, "conditions": [{"attribute": "acquirer_id", "operation": "is_one_of", "value": ["A1"]}]}),
            )
        };
        let set = RuleSet::new(
            7,
            vec![
                block(Mode::Shadow, "rule_a"),
                block(Mode::Disabled, "rule_off"),
                elsewhere,
                block(Mode::Active, "rule_b"),
                block(Mode::Active, "rule_d"),
            ],
        );
        let evaluation = set.evaluate(&facts(), Approvals::default(), now());
        assert_eq!(evaluation.results, "w-dd");
        assert_eq!(evaluation.declined_by.as_deref(), Some("rule_b"));
        assert_eq!(set.longest_window(Per::Card), None);
    }
}
