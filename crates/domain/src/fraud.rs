//! Fraud and velocity rules, as data: each rule has a name (recorded in every decision it affects), a time window
//! and a threshold. The store supplies the timestamps of recent events; these functions only count.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// "At most `max` events within `window_seconds`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VelocityLimit {
    pub name: String,
    pub window_seconds: i64,
    pub max: u32,
}

impl VelocityLimit {
    pub fn new(name: &str, window_seconds: i64, max: u32) -> VelocityLimit {
        VelocityLimit { name: name.to_owned(), window_seconds, max }
    }

    /// Events strictly inside the window that ends at `now` (an event exactly one window ago has left it).
    pub fn count(&self, events: &[DateTime<Utc>], now: DateTime<Utc>) -> usize {
        let start = now - Duration::seconds(self.window_seconds);
        events.iter().filter(|&&at| at > start && at <= now).count()
    }

    /// True when `events` already hold `max` events in the window, so one more would exceed the limit.
    pub fn is_full(&self, events: &[DateTime<Utc>], now: DateTime<Utc>) -> bool {
        self.count(events, now) >= self.max as usize
    }
}

/// Every fraud rule of a deployment, evaluated in the order written here and, within a list, in list order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudRules {
    /// Card creation is refused (`suspected_fraud`) when the cardholder's cards created in the window are already
    /// at the limit; the account is flagged for review.
    pub card_creation: Vec<VelocityLimit>,
    /// An authorization is declined (`suspected_fraud`, row 15) when the cardholder's approvals in the window are
    /// already at the limit.
    pub authorization: Vec<VelocityLimit>,
    /// All the cardholder's open cards are frozen when CVV2 failures on their cards reach the limit.
    pub cvv_failures: Vec<VelocityLimit>,
    /// A card is frozen when its declined authorizations reach the limit (after the last one is answered).
    pub card_declines: Vec<VelocityLimit>,
}

impl Default for FraudRules {
    fn default() -> Self {
        FraudRules {
            card_creation: vec![
                VelocityLimit::new("card_creation_1h", 3600, 3),
                VelocityLimit::new("card_creation_24h", 86_400, 10),
            ],
            authorization: vec![VelocityLimit::new("cardholder_approvals_1h", 3600, 20)],
            cvv_failures: vec![VelocityLimit::new("cvv_failures_24h", 86_400, 3)],
            card_declines: vec![VelocityLimit::new("card_declines_1h", 3600, 5)],
        }
    }
}

/// What a fraud rule makes happen after a declined authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FraudAction {
    /// Freeze every open card of the cardholder.
    FreezeCardholderCards { rule: String },
    /// Freeze the card of the declined authorization.
    FreezeCard { rule: String },
}

impl FraudRules {
    /// The card-creation rule that refuses a new card, given the creation times of the cardholder's earlier cards.
    pub fn card_creation_refusal(&self, created: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<&str> {
        first_full(&self.card_creation, created, now)
    }

    /// The authorization rule that declines, given the times of the cardholder's earlier approvals.
    pub fn authorization_refusal(&self, approvals: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<&str> {
        first_full(&self.authorization, approvals, now)
    }

    /// The longest window of the authorization rules: the approvals a decision counts.
    pub fn authorization_window_seconds(&self) -> i64 {
        longest(&self.authorization)
    }

    /// The longest window of every rule an authorization reads (approvals, CVV2 failures, declines): how far back
    /// a cardholder's history must be loaded.
    pub fn history_window_seconds(&self) -> i64 {
        longest(&self.authorization).max(longest(&self.cvv_failures)).max(longest(&self.card_declines))
    }

    /// The actions a decline triggers. `earlier_cvv_failures` and `earlier_card_declines` are the times of the
    /// events before this one; this decline counts as one more (a CVV failure when `cvv_failed`). Duplicates and
    /// `94` answers must not be passed in as declines.
    pub fn after_decline(
        &self,
        cvv_failed: bool,
        earlier_cvv_failures: &[DateTime<Utc>],
        earlier_card_declines: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Vec<FraudAction> {
        let reached =
            |limit: &VelocityLimit, earlier: &[DateTime<Utc>]| limit.count(earlier, now) + 1 >= limit.max as usize;
        let mut actions = Vec::new();
        if cvv_failed && let Some(limit) = self.cvv_failures.iter().find(|limit| reached(limit, earlier_cvv_failures)) {
            actions.push(FraudAction::FreezeCardholderCards { rule: limit.name.clone() });
        }
        if let Some(limit) = self.card_declines.iter().find(|limit| reached(limit, earlier_card_declines)) {
            actions.push(FraudAction::FreezeCard { rule: limit.name.clone() });
        }
        actions
    }
}

fn longest(limits: &[VelocityLimit]) -> i64 {
    limits.iter().map(|limit| limit.window_seconds).max().unwrap_or(0)
}

fn first_full<'a>(limits: &'a [VelocityLimit], events: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<&'a str> {
    limits.iter().find(|limit| limit.is_full(events, now)).map(|limit| limit.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::tests::now;

    fn minutes_ago(minutes: &[i64]) -> Vec<DateTime<Utc>> {
        minutes.iter().map(|minutes| now() - Duration::minutes(*minutes)).collect()
    }

    #[test]
    fn a_fourth_card_within_an_hour_is_refused_by_the_hourly_rule() {
        let rules = FraudRules::default();
        assert_eq!(rules.card_creation_refusal(&minutes_ago(&[50, 30]), now()), None);
        assert_eq!(rules.card_creation_refusal(&minutes_ago(&[59, 30, 1]), now()), Some("card_creation_1h"));
        // The first card is exactly one hour old: it no longer counts.
        assert_eq!(rules.card_creation_refusal(&minutes_ago(&[60, 30, 1]), now()), None);
    }

    #[test]
    fn an_eleventh_card_within_a_day_is_refused_by_the_daily_rule() {
        let rules = FraudRules::default();
        let ten_spread = minutes_ago(&[1400, 1300, 1200, 1000, 900, 700, 500, 300, 200, 100]);
        assert_eq!(rules.card_creation_refusal(&ten_spread, now()), Some("card_creation_24h"));
        assert_eq!(rules.card_creation_refusal(&ten_spread[1..], now()), None);
    }

    #[test]
    fn the_third_cvv_failure_freezes_all_cards_and_the_fifth_decline_the_card() {
        let rules = FraudRules::default();
        assert_eq!(rules.after_decline(true, &minutes_ago(&[10]), &[], now()), vec![]);
        assert_eq!(
            rules.after_decline(true, &minutes_ago(&[10, 600]), &[], now()),
            vec![FraudAction::FreezeCardholderCards { rule: "cvv_failures_24h".to_owned() }]
        );
        assert_eq!(rules.after_decline(false, &minutes_ago(&[10, 600]), &[], now()), vec![], "not a CVV failure");
        assert_eq!(rules.after_decline(false, &[], &minutes_ago(&[1, 2, 3]), now()), vec![]);
        assert_eq!(
            rules.after_decline(false, &[], &minutes_ago(&[1, 2, 3, 59]), now()),
            vec![FraudAction::FreezeCard { rule: "card_declines_1h".to_owned() }]
        );
        assert_eq!(rules.after_decline(false, &[], &minutes_ago(&[1, 2, 3, 60]), now()), vec![]);
    }
}
