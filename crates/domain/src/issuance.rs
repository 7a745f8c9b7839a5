//! Whether a new card may be created, with the refusals of docs/reference/behaviour.md in their order:
//! `amount_too_small` → `account_restricted` → `suspected_fraud` (card-creation velocity) →
//! `purchase_power_exceeded`. The last refusal, `funding_declined`, comes from the funding gateway after these checks
//! pass.

use chrono::{DateTime, Utc};

use crate::fraud::FraudRules;
use crate::money::Money;
use crate::purchase_power::PurchasePower;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreationRefusal {
    AmountTooSmall { minimum: Money },
    AccountRestricted,
    SuspectedFraud { rule: String },
    PurchasePowerExceeded { available: Money },
}

impl CreationRefusal {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            CreationRefusal::AmountTooSmall { .. } => "amount_too_small",
            CreationRefusal::AccountRestricted => "account_restricted",
            CreationRefusal::SuspectedFraud { .. } => "suspected_fraud",
            CreationRefusal::PurchasePowerExceeded { .. } => "purchase_power_exceeded",
        }
    }
}

/// Checks a request for a card of `amount`. `earlier_creations` are the times the cardholder's earlier cards were
/// created (only created cards count toward velocity).
pub fn check_card_creation(
    amount: Money,
    minimum: Money,
    power: &PurchasePower,
    earlier_creations: &[DateTime<Utc>],
    fraud: &FraudRules,
    now: DateTime<Utc>,
) -> Result<(), CreationRefusal> {
    if amount.currency() != minimum.currency() || amount.minor() < minimum.minor() {
        return Err(CreationRefusal::AmountTooSmall { minimum });
    }
    if power.restricted_reason.is_some() {
        return Err(CreationRefusal::AccountRestricted);
    }
    if let Some(rule) = fraud.card_creation_refusal(earlier_creations, now) {
        return Err(CreationRefusal::SuspectedFraud { rule: rule.to_owned() });
    }
    if amount.minor() > power.available.minor() {
        return Err(CreationRefusal::PurchasePowerExceeded { available: power.available });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::tests::{now, usd};
    use crate::purchase_power::{CardholderPosition, PurchasePowerPolicy, purchase_power};
    use chrono::Duration;

    fn power(overdue: bool) -> PurchasePower {
        let policy = PurchasePowerPolicy::defaults(crate::money::Currency::USD).expect("fits");
        let position = CardholderPosition {
            signed_up_at: now() - Duration::days(1),
            plans_repaid_without_late_fee: 0,
            cards_not_in_plan: usd(0),
            plan_balances: usd(0),
            overdue,
            restricted: false,
        };
        purchase_power(&policy, &position, now()).expect("fits")
    }

    fn check(amount: i64, overdue: bool, earlier: &[DateTime<Utc>]) -> Result<(), CreationRefusal> {
        check_card_creation(usd(amount), usd(1_000), &power(overdue), earlier, &FraudRules::default(), now())
    }

    #[test]
    fn refusals_come_in_order() {
        let three_recent = [now() - Duration::minutes(3); 3];
        assert_eq!(check(999, true, &three_recent), Err(CreationRefusal::AmountTooSmall { minimum: usd(1_000) }));
        assert_eq!(check(1_000, true, &three_recent), Err(CreationRefusal::AccountRestricted));
        assert_eq!(
            check(9_999_999, false, &three_recent),
            Err(CreationRefusal::SuspectedFraud { rule: "card_creation_1h".to_owned() })
        );
        assert_eq!(check(5_001, false, &[]), Err(CreationRefusal::PurchasePowerExceeded { available: usd(5_000) }));
        assert_eq!(check(5_000, false, &three_recent[..2]), Ok(()), "the limits are inclusive");
        assert_eq!(check(1_000, false, &[]), Ok(()));
    }
}
