//! Purchase power: how much a cardholder may put on new cards, and why.
//!
//! `limit = min(max, base + per_month × whole months since sign-up + per_repaid_plan × plans repaid with no late
//! fee)`; `outstanding` = amounts of active or used cards not yet in a plan + unpaid plan balances;
//! `available = max(0, limit − outstanding)`, and 0 while an installment is overdue or the account is restricted.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money, MoneyError};

/// The deployment's purchase-power parameters (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchasePowerPolicy {
    pub base: Money,
    pub per_month: Money,
    pub per_repaid_plan: Money,
    pub max: Money,
}

impl PurchasePowerPolicy {
    /// docs/reference/behaviour.md's defaults: base 50.00, 25.00 a month, 50.00 a repaid plan, at most 2,000.00.
    pub fn defaults(currency: Currency) -> Result<PurchasePowerPolicy, MoneyError> {
        Ok(PurchasePowerPolicy {
            base: Money::major(50, currency)?,
            per_month: Money::major(25, currency)?,
            per_repaid_plan: Money::major(50, currency)?,
            max: Money::major(2_000, currency)?,
        })
    }
}

/// What the store knows about a cardholder's money, as purchase power needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardholderPosition {
    pub signed_up_at: DateTime<Utc>,
    /// Plans completed without any late fee.
    pub plans_repaid_without_late_fee: u32,
    /// Amounts of the cardholder's active or used cards that are not yet in a plan.
    pub cards_not_in_plan: Money,
    /// Unpaid balance of every plan.
    pub plan_balances: Money,
    pub overdue: bool,
    pub restricted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictedReason {
    OverdueInstallment,
    AccountRestricted,
}

/// The parts of the limit, so the app can say why it is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    pub base: Money,
    /// `per_month × whole months since sign-up`.
    pub tenure: Money,
    /// `per_repaid_plan × plans repaid without a late fee`.
    pub repaid_plans: Money,
    /// The ceiling.
    pub max: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PurchasePower {
    pub available: Money,
    pub limit: Money,
    pub outstanding: Money,
    pub breakdown: Breakdown,
    pub restricted_reason: Option<RestrictedReason>,
}

/// Purchase power at `now`.
pub fn purchase_power(
    policy: &PurchasePowerPolicy,
    position: &CardholderPosition,
    now: DateTime<Utc>,
) -> Result<PurchasePower, MoneyError> {
    let months = i64::from(whole_months(position.signed_up_at, now));
    let tenure = policy.per_month.checked_mul(months)?;
    let repaid_plans = policy.per_repaid_plan.checked_mul(i64::from(position.plans_repaid_without_late_fee))?;
    let limit = policy.base.checked_add(tenure)?.checked_add(repaid_plans)?.min(policy.max)?;
    let outstanding = position.cards_not_in_plan.checked_add(position.plan_balances)?;
    let restricted_reason = if position.restricted {
        Some(RestrictedReason::AccountRestricted)
    } else if position.overdue {
        Some(RestrictedReason::OverdueInstallment)
    } else {
        None
    };
    let zero = Money::zero(limit.currency());
    let available = match restricted_reason {
        Some(_) => zero,
        None => limit.checked_sub(outstanding)?.max(zero)?,
    };
    Ok(PurchasePower {
        available,
        limit,
        outstanding,
        breakdown: Breakdown { base: policy.base, tenure, repaid_plans, max: policy.max },
        restricted_reason,
    })
}

/// Whole calendar months from `start` to `end`: a month counts once its same day and time has been reached
/// (clamped to the month's last day), and never negative.
pub fn whole_months(start: DateTime<Utc>, end: DateTime<Utc>) -> u32 {
    use chrono::Datelike;
    if end <= start {
        return 0;
    }
    let guess = (end.year() - start.year()) * 12 + end.month() as i32 - start.month() as i32;
    let mut months = u32::try_from(guess.max(0)).unwrap_or(0);
    while months > 0 && start.checked_add_months(Months::new(months)).is_none_or(|reached| reached > end) {
        months -= 1;
    }
    months
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(year: i32, month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, 9, 0, 0).single().expect("valid")
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    fn position(signed_up_at: DateTime<Utc>) -> CardholderPosition {
        CardholderPosition {
            signed_up_at,
            plans_repaid_without_late_fee: 0,
            cards_not_in_plan: usd(0),
            plan_balances: usd(0),
            overdue: false,
            restricted: false,
        }
    }

    #[test]
    fn counts_whole_calendar_months() {
        assert_eq!(whole_months(at(2026, 1, 31), at(2026, 2, 27)), 0);
        assert_eq!(whole_months(at(2026, 1, 31), at(2026, 2, 28)), 1, "clamped to February's end");
        assert_eq!(whole_months(at(2026, 1, 15), at(2026, 3, 14)), 1);
        assert_eq!(whole_months(at(2026, 1, 15), at(2027, 1, 15)), 12);
        assert_eq!(whole_months(at(2026, 5, 1), at(2026, 4, 1)), 0);
    }

    #[test]
    fn a_new_cardholder_starts_at_the_base() {
        let policy = PurchasePowerPolicy::defaults(Currency::USD).expect("fits");
        let power = purchase_power(&policy, &position(at(2026, 11, 1)), at(2026, 11, 26)).expect("fits");
        assert_eq!((power.limit, power.available, power.outstanding), (usd(5_000), usd(5_000), usd(0)));
        assert_eq!(power.breakdown.tenure, usd(0));
        assert_eq!(power.restricted_reason, None);
    }

    #[test]
    fn tenure_and_repaid_plans_raise_the_limit_up_to_the_max() {
        let policy = PurchasePowerPolicy::defaults(Currency::USD).expect("fits");
        let mut position = position(at(2026, 1, 1));
        position.plans_repaid_without_late_fee = 2;
        position.cards_not_in_plan = usd(3_000);
        position.plan_balances = usd(7_500);
        let power = purchase_power(&policy, &position, at(2026, 11, 26)).expect("fits");
        // 50 + 10 × 25 + 2 × 50 = 400.00
        assert_eq!(power.breakdown.tenure, usd(25_000));
        assert_eq!(power.breakdown.repaid_plans, usd(10_000));
        assert_eq!((power.limit, power.outstanding, power.available), (usd(40_000), usd(10_500), usd(29_500)));

        position.signed_up_at = at(2010, 1, 1);
        let capped = purchase_power(&policy, &position, at(2026, 11, 26)).expect("fits");
        assert_eq!(capped.limit, usd(200_000));
    }

    #[test]
    fn available_is_never_negative_and_zero_while_restricted() {
        let policy = PurchasePowerPolicy::defaults(Currency::USD).expect("fits");
        let mut position = position(at(2026, 11, 1));
        position.plan_balances = usd(9_000);
        assert_eq!(purchase_power(&policy, &position, at(2026, 11, 26)).expect("fits").available, usd(0));
        position.plan_balances = usd(0);
        position.overdue = true;
        let power = purchase_power(&policy, &position, at(2026, 11, 26)).expect("fits");
        assert_eq!((power.available, power.restricted_reason), (usd(0), Some(RestrictedReason::OverdueInstallment)));
        position.restricted = true;
        let power = purchase_power(&policy, &position, at(2026, 11, 26)).expect("fits");
        assert_eq!(power.restricted_reason, Some(RestrictedReason::AccountRestricted));
    }
}
