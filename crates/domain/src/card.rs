//! The card lifecycle: a state machine with the single-use rules, and the amounts a card carries.
//!
//! States: `active` → `used` (first approval above the single-use threshold) → `closed`; `active` → `expired`
//! (validity window passed unused); `active` → `canceled` (cardholder, only while unused); `active`/`used` →
//! `frozen` → back (operator). Every change goes through [`Card::apply`], which returns the [`Transition`] to
//! record or a typed error; there is no other way to set the status.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::card_number::Expiry;
use crate::money::{Money, MoneyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Used,
    Expired,
    Canceled,
    Frozen,
    Closed,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Used => "used",
            CardStatus::Expired => "expired",
            CardStatus::Canceled => "canceled",
            CardStatus::Frozen => "frozen",
            CardStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<CardStatus> {
        [
            CardStatus::Active,
            CardStatus::Used,
            CardStatus::Expired,
            CardStatus::Canceled,
            CardStatus::Frozen,
            CardStatus::Closed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl fmt::Display for CardStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The merchant a used card is bound to: field 32 (acquirer) + field 42 (card acceptor id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MerchantBinding {
    pub acquirer_id: String,
    pub merchant_id: String,
}

/// What happens to a card. Each event is legal from some states only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    /// The first approval above the single-use threshold: the card is consumed and bound to the merchant.
    FirstUse(MerchantBinding),
    /// The only approval was fully reversed while the window is open: the purchase did not happen.
    FirstUseReversed,
    /// The validity window passed while the card was unused.
    WindowPassed,
    /// The cardholder deleted the unused card.
    Cancel,
    /// A fraud rule or an operator locked the card; `rule` names which.
    Freeze { rule: String },
    /// An operator lifted the lock.
    Unfreeze,
    /// Nothing is left open: a plan was created, the unused amount refunded or adjusted, the hold expired with no
    /// capture, or an operator closed the card.
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Settled,
    UnusedRefunded,
    Adjusted,
    HoldExpiredWithoutCapture,
    Operator,
}

/// A recorded change of state: what the store writes to the card's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: CardStatus,
    pub to: CardStatus,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("a {from} card cannot {event}")]
    IllegalTransition { from: CardStatus, event: &'static str },
    #[error("the amount exceeds what is left on the card")]
    ExceedsRemaining,
    #[error("the amount exceeds the open holds")]
    ExceedsHeld,
    #[error("amounts must be positive and in the card's currency")]
    InvalidAmount,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A single-use card's state and amounts. `remaining = amount − held − captured` is never negative except after
/// a forced posting (an advice or a capture above its hold), which is flagged where it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    status: CardStatus,
    /// The state a frozen card returns to when unfrozen.
    frozen_from: Option<CardStatus>,
    /// What the card was created for (reduced to `held + captured` by a refund of the unused amount).
    amount: Money,
    /// Open authorization holds.
    held: Money,
    /// Posted purchases net of refunds.
    captured: Money,
    /// The printed expiry month.
    expiry: Expiry,
    /// End of the validity window (creation + 24 h by default).
    valid_until: DateTime<Utc>,
    /// Set by the first use; the only merchant whose authorizations are accepted afterwards.
    merchant: Option<MerchantBinding>,
}

impl Card {
    /// A new, active card for `amount`, usable until `valid_until`.
    pub fn issue(amount: Money, expiry: Expiry, valid_until: DateTime<Utc>) -> Card {
        let zero = Money::zero(amount.currency());
        Card {
            status: CardStatus::Active,
            frozen_from: None,
            amount,
            held: zero,
            captured: zero,
            expiry,
            valid_until,
            merchant: None,
        }
    }

    /// Rebuilds a card from stored fields. The store is trusted to hand back what it was given.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        status: CardStatus,
        frozen_from: Option<CardStatus>,
        amount: Money,
        held: Money,
        captured: Money,
        expiry: Expiry,
        valid_until: DateTime<Utc>,
        merchant: Option<MerchantBinding>,
    ) -> Card {
        Card { status, frozen_from, amount, held, captured, expiry, valid_until, merchant }
    }

    pub fn status(&self) -> CardStatus {
        self.status
    }

    pub fn frozen_from(&self) -> Option<CardStatus> {
        self.frozen_from
    }

    pub fn amount(&self) -> Money {
        self.amount
    }

    pub fn held(&self) -> Money {
        self.held
    }

    pub fn captured(&self) -> Money {
        self.captured
    }

    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    pub fn valid_until(&self) -> DateTime<Utc> {
        self.valid_until
    }

    pub fn merchant(&self) -> Option<&MerchantBinding> {
        self.merchant.as_ref()
    }

    pub fn currency(&self) -> crate::money::Currency {
        self.amount.currency()
    }

    /// `amount − held − captured`, what an authorization may still take.
    pub fn remaining(&self) -> Money {
        Money::new(self.amount.minor() - self.held.minor() - self.captured.minor(), self.amount.currency())
    }

    pub fn window_open(&self, now: DateTime<Utc>) -> bool {
        now < self.valid_until
    }

    /// The status as shown at `now`: an active card whose window has passed is expired, even before the expiry job
    /// has recorded it.
    pub fn status_at(&self, now: DateTime<Utc>) -> CardStatus {
        match self.status {
            CardStatus::Active if !self.window_open(now) => CardStatus::Expired,
            status => status,
        }
    }

    /// Only a card that can still spend can be paused or resumed: active inside its window, or used.
    pub fn pausable(&self, now: DateTime<Utc>) -> bool {
        matches!(self.status_at(now), CardStatus::Active | CardStatus::Used)
    }

    /// True once the card has been consumed by a purchase (it stays true while frozen or after closing).
    pub fn is_bound(&self) -> bool {
        self.merchant.is_some()
    }

    /// Applies an event, returning the transition to record.
    pub fn apply(&mut self, event: CardEvent, now: DateTime<Utc>) -> Result<Transition, CardError> {
        use CardStatus::*;
        let from = self.status;
        let illegal = |event: &'static str| Err(CardError::IllegalTransition { from, event });
        let (to, reason) = match (&event, from) {
            (CardEvent::FirstUse(_), Active) => (Used, "first_use".to_owned()),
            (CardEvent::FirstUse(_), _) => return illegal("be used for a first purchase"),
            (CardEvent::FirstUseReversed, Used)
                if self.window_open(now) && self.held.is_zero() && self.captured.is_zero() =>
            {
                (Active, "first_use_reversed".to_owned())
            }
            (CardEvent::FirstUseReversed, _) => return illegal("return to active"),
            (CardEvent::WindowPassed, Active) if !self.window_open(now) => {
                (Expired, "validity_window_passed".to_owned())
            }
            (CardEvent::WindowPassed, _) => return illegal("expire"),
            // Only while unused: inside the window, with no hold open (not even a micro-authorization's).
            (CardEvent::Cancel, Active) if self.window_open(now) && self.held.is_zero() => {
                (Canceled, "canceled_by_cardholder".to_owned())
            }
            (CardEvent::Cancel, _) => return illegal("be canceled"),
            (CardEvent::Freeze { rule }, Active | Used) => (Frozen, rule.clone()),
            (CardEvent::Freeze { .. }, _) => return illegal("be frozen"),
            (CardEvent::Unfreeze, Frozen) => (self.frozen_from.unwrap_or(Active), "unfrozen".to_owned()),
            (CardEvent::Unfreeze, _) => return illegal("be unfrozen"),
            (CardEvent::Close(CloseReason::Operator), Active | Used | Frozen) => {
                (Closed, "closed_by_operator".to_owned())
            }
            (CardEvent::Close(reason), Used) => (Closed, close_reason_name(*reason).to_owned()),
            (CardEvent::Close(_), _) => return illegal("be closed"),
        };
        match event {
            CardEvent::FirstUse(merchant) => self.merchant = Some(merchant),
            CardEvent::FirstUseReversed => self.merchant = None,
            CardEvent::Freeze { .. } => self.frozen_from = Some(from),
            CardEvent::Unfreeze => self.frozen_from = None,
            _ => {}
        }
        self.status = to;
        Ok(Transition { from, to, reason, at: now })
    }

    /// Places a hold within the remaining amount.
    pub fn hold(&mut self, amount: Money) -> Result<(), CardError> {
        self.check_positive(amount)?;
        if amount.minor() > self.remaining().minor() {
            return Err(CardError::ExceedsRemaining);
        }
        self.held = self.held.checked_add(amount)?;
        Ok(())
    }

    /// Places a hold the network has already approved (an advice): it may go past the remaining amount.
    pub fn force_hold(&mut self, amount: Money) -> Result<(), CardError> {
        self.check_positive(amount)?;
        self.held = self.held.checked_add(amount)?;
        Ok(())
    }

    /// Releases part or all of the open holds (a reversal, an expired hold, a stand-in void).
    pub fn release(&mut self, amount: Money) -> Result<(), CardError> {
        self.check_positive(amount)?;
        if amount.minor() > self.held.minor() {
            return Err(CardError::ExceedsHeld);
        }
        self.held = self.held.checked_sub(amount)?;
        Ok(())
    }

    /// Posts a purchase of `amount` against `from_hold` of the open holds (`from_hold` ≤ `amount`; a force post
    /// has no hold).
    pub fn capture(&mut self, amount: Money, from_hold: Money) -> Result<(), CardError> {
        self.check_positive(amount)?;
        if from_hold.is_negative() || from_hold.minor() > amount.minor() || from_hold.currency() != self.currency() {
            return Err(CardError::InvalidAmount);
        }
        if from_hold.minor() > self.held.minor() {
            return Err(CardError::ExceedsHeld);
        }
        self.held = self.held.checked_sub(from_hold)?;
        self.captured = self.captured.checked_add(amount)?;
        Ok(())
    }

    /// A merchant refund: reduces the captured amount (not below zero; any excess is the plan's business).
    pub fn refund(&mut self, amount: Money) -> Result<Money, CardError> {
        self.check_positive(amount)?;
        let applied = amount.min(self.captured)?;
        self.captured = self.captured.checked_sub(applied)?;
        Ok(applied)
    }

    /// The cardholder refunds the unused amount: `amount` becomes `held + captured`, so nothing remains. Returns
    /// what was released.
    pub fn refund_unused(&mut self) -> Result<Money, CardError> {
        let released = self.remaining().max(Money::zero(self.currency()))?;
        self.amount = self.held.checked_add(self.captured)?;
        Ok(released)
    }

    fn check_positive(&self, amount: Money) -> Result<(), CardError> {
        if amount.is_positive() && amount.currency() == self.currency() {
            Ok(())
        } else {
            Err(CardError::InvalidAmount)
        }
    }
}

fn close_reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Settled => "settled",
        CloseReason::UnusedRefunded => "unused_refunded",
        CloseReason::Adjusted => "adjusted",
        CloseReason::HoldExpiredWithoutCapture => "hold_expired_without_capture",
        CloseReason::Operator => "closed_by_operator",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::money::Currency;
    use chrono::{Duration, TimeZone};

    pub(crate) fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single().expect("valid instant")
    }

    pub(crate) fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    pub(crate) fn card(amount: i64) -> Card {
        Card::issue(usd(amount), Expiry::new(2029, 11).expect("valid"), now() + Duration::hours(24))
    }

    pub(crate) fn merchant(id: &str) -> MerchantBinding {
        MerchantBinding { acquirer_id: "123456".to_owned(), merchant_id: id.to_owned() }
    }

    #[test]
    fn first_use_binds_the_merchant_and_cannot_happen_twice() {
        let mut card = card(10_000);
        let transition = card.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        assert_eq!((transition.from, transition.to), (CardStatus::Active, CardStatus::Used));
        assert_eq!(card.merchant(), Some(&merchant("SHOP1")));
        assert_eq!(
            card.apply(CardEvent::FirstUse(merchant("SHOP2")), now()),
            Err(CardError::IllegalTransition { from: CardStatus::Used, event: "be used for a first purchase" })
        );
        assert_eq!(card.merchant(), Some(&merchant("SHOP1")));
    }

    #[test]
    fn a_fully_reversed_first_use_returns_to_active_only_inside_the_window() {
        let mut card = card(10_000);
        card.hold(usd(5_000)).expect("within amount");
        card.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        assert!(card.apply(CardEvent::FirstUseReversed, now()).is_err(), "hold still open");
        card.release(usd(5_000)).expect("held");
        let mut late = card.clone();
        card.apply(CardEvent::FirstUseReversed, now()).expect("legal");
        assert_eq!((card.status(), card.merchant()), (CardStatus::Active, None));
        assert!(late.apply(CardEvent::FirstUseReversed, now() + Duration::hours(24)).is_err());
    }

    #[test]
    fn a_card_is_pausable_while_it_can_spend_and_shown_expired_at_the_end_of_its_window() {
        let unused = card(10_000);
        let end = unused.valid_until();
        assert!(unused.pausable(end - chrono::Duration::microseconds(1)));
        assert_eq!((unused.status_at(end), unused.pausable(end)), (CardStatus::Expired, false), "the bound itself");
        let mut used = card(10_000);
        used.hold(usd(4_000)).expect("fits");
        used.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        assert!(used.pausable(end + chrono::Duration::days(3)), "a used card outlives the window");
        used.apply(CardEvent::Freeze { rule: "x".to_owned() }, now()).expect("legal");
        assert!(!used.pausable(now()));
    }

    #[test]
    fn only_an_unused_card_can_be_canceled_or_expire() {
        let mut unused = card(10_000);
        assert!(unused.apply(CardEvent::WindowPassed, now()).is_err(), "window still open");
        assert!(unused.clone().apply(CardEvent::Cancel, now() + Duration::hours(24)).is_err(), "window passed");
        let mut micro = unused.clone();
        micro.hold(usd(100)).expect("fits");
        assert!(micro.apply(CardEvent::Cancel, now()).is_err(), "a hold is open");
        unused.clone().apply(CardEvent::Cancel, now()).expect("unused card cancels");
        unused.apply(CardEvent::WindowPassed, now() + Duration::hours(24)).expect("expires at 24 h");
        assert_eq!(unused.status(), CardStatus::Expired);

        let mut used = card(10_000);
        used.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        assert!(used.clone().apply(CardEvent::Cancel, now()).is_err());
        assert!(used.apply(CardEvent::WindowPassed, now() + Duration::hours(25)).is_err());
    }

    #[test]
    fn freezing_remembers_where_to_return() {
        let mut used = card(10_000);
        used.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        let transition = used.apply(CardEvent::Freeze { rule: "card_declines_1h".to_owned() }, now()).expect("legal");
        assert_eq!(transition.reason, "card_declines_1h");
        assert!(used.apply(CardEvent::Freeze { rule: "again".to_owned() }, now()).is_err());
        used.apply(CardEvent::Unfreeze, now()).expect("legal");
        assert_eq!(used.status(), CardStatus::Used);

        let mut expired = card(10_000);
        expired.apply(CardEvent::WindowPassed, now() + Duration::hours(24)).expect("legal");
        assert!(expired.apply(CardEvent::Freeze { rule: "x".to_owned() }, now()).is_err());
        assert!(expired.apply(CardEvent::Unfreeze, now()).is_err());
    }

    #[test]
    fn closing_needs_a_used_card_unless_an_operator_closes() {
        let mut active = card(10_000);
        assert!(active.clone().apply(CardEvent::Close(CloseReason::Settled), now()).is_err());
        active.apply(CardEvent::Close(CloseReason::Operator), now()).expect("operator may close");
        let mut closed = active;
        assert!(closed.apply(CardEvent::Close(CloseReason::Operator), now()).is_err());
    }

    #[test]
    fn amounts_keep_remaining_exact() {
        let mut card = card(10_000);
        card.hold(usd(6_000)).expect("fits");
        assert_eq!(card.hold(usd(4_001)), Err(CardError::ExceedsRemaining));
        card.capture(usd(5_000), usd(5_000)).expect("from hold");
        assert_eq!((card.held(), card.captured(), card.remaining()), (usd(1_000), usd(5_000), usd(4_000)));
        assert_eq!(card.refund_unused(), Ok(usd(4_000)));
        assert_eq!((card.amount(), card.remaining()), (usd(6_000), usd(0)));
        assert_eq!(card.refund(usd(7_000)), Ok(usd(5_000)), "refund beyond captured stops at zero");
        assert_eq!(card.hold(usd(0)), Err(CardError::InvalidAmount));
        assert_eq!(card.release(usd(1_001)), Err(CardError::ExceedsHeld));
    }
}
