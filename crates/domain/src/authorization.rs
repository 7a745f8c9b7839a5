//! An authorization after its decision: a state machine over what it still holds and what clearing captured.
//!
//! States: `approved` (or `declined`, final) → `captured` (clearing took some or all of it), `reversed` (all of it
//! released before any capture) or `partially_reversed` (some released; or released after a capture); `expired`
//! (its hold ran out unclaimed). Amounts are in the authorization's currency, in minor units. Every change goes
//! through the methods below, which keep `held` and `captured` non-negative; a declined authorization changes no
//! more.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStatus {
    Approved,
    Declined,
    Reversed,
    PartiallyReversed,
    Captured,
    Expired,
}

impl AuthorizationStatus {
    pub const ALL: [AuthorizationStatus; 6] = [
        AuthorizationStatus::Approved,
        AuthorizationStatus::Declined,
        AuthorizationStatus::Reversed,
        AuthorizationStatus::PartiallyReversed,
        AuthorizationStatus::Captured,
        AuthorizationStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Approved => "approved",
            AuthorizationStatus::Declined => "declined",
            AuthorizationStatus::Reversed => "reversed",
            AuthorizationStatus::PartiallyReversed => "partially_reversed",
            AuthorizationStatus::Captured => "captured",
            AuthorizationStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<AuthorizationStatus> {
        AuthorizationStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for AuthorizationStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the authorization was declined; there is nothing to reverse or capture")]
    Declined,
    #[error("an amount must be positive")]
    NotPositive,
}

/// What an authorization holds and has captured, and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    status: AuthorizationStatus,
    held: i64,
    captured: i64,
}

impl Authorization {
    /// An authorization as stored. Panics on negative amounts: the store never writes them.
    pub fn restore(status: AuthorizationStatus, held: i64, captured: i64) -> Authorization {
        assert!(held >= 0 && captured >= 0, "an authorization holds {held} and captured {captured}");
        Authorization { status, held, captured }
    }

    pub fn status(&self) -> AuthorizationStatus {
        self.status
    }

    pub fn held(&self) -> i64 {
        self.held
    }

    pub fn captured(&self) -> i64 {
        self.captured
    }

    /// Releases `amount` (all that is held when `None`; never more than is held). Returns what was released:
    /// releasing what is already released releases nothing and changes nothing.
    pub fn reverse(&mut self, amount: Option<i64>) -> Result<i64, AuthorizationError> {
        self.check_not_declined()?;
        let release = amount.unwrap_or(self.held).clamp(0, self.held);
        if release == 0 {
            return Ok(0);
        }
        self.held -= release;
        self.status = if self.held == 0 && self.captured == 0 {
            AuthorizationStatus::Reversed
        } else {
            AuthorizationStatus::PartiallyReversed
        };
        Ok(release)
    }

    /// Clearing captures `amount`, taking from the hold what it can; more than was held is allowed (and flagged
    /// by the caller). Returns what came from the hold.
    pub fn capture(&mut self, amount: i64) -> Result<i64, AuthorizationError> {
        self.check_not_declined()?;
        if amount <= 0 {
            return Err(AuthorizationError::NotPositive);
        }
        let from_hold = amount.min(self.held);
        self.held -= from_hold;
        self.captured += amount;
        self.status = AuthorizationStatus::Captured;
        Ok(from_hold)
    }

    /// Its hold ran out: everything still held is released. Returns what was released.
    pub fn expire(&mut self) -> Result<i64, AuthorizationError> {
        let released = self.reverse(None)?;
        self.status = AuthorizationStatus::Expired;
        Ok(released)
    }

    /// It was answered with the stand-in code after all: everything still held is released, and an
    /// authorization left with nothing is `reversed`. Returns what was released.
    pub fn void_stand_in(&mut self) -> i64 {
        if self.status == AuthorizationStatus::Declined {
            return 0;
        }
        let released = self.held;
        self.held = 0;
        if self.captured == 0 {
            self.status = AuthorizationStatus::Reversed;
        }
        released
    }

    fn check_not_declined(&self) -> Result<(), AuthorizationError> {
        match self.status {
            AuthorizationStatus::Declined => Err(AuthorizationError::Declined),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuthorizationStatus::*;
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in AuthorizationStatus::ALL {
            assert_eq!(AuthorizationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(AuthorizationStatus::parse("pending"), None);
    }

    #[test]
    fn reversing_releases_at_most_what_is_held() {
        let mut authorization = Authorization::restore(Approved, 1_000, 0);
        assert_eq!(authorization.reverse(Some(400)), Ok(400));
        assert_eq!((authorization.status(), authorization.held()), (PartiallyReversed, 600));
        assert_eq!(authorization.reverse(Some(5_000)), Ok(600));
        assert_eq!((authorization.status(), authorization.held()), (Reversed, 0));
        assert_eq!(authorization.reverse(None), Ok(0), "a second full reversal releases nothing");
        assert_eq!(authorization.status(), Reversed);
    }

    #[test]
    fn a_capture_takes_from_the_hold_and_may_exceed_it() {
        let mut authorization = Authorization::restore(Approved, 1_000, 0);
        assert_eq!(authorization.capture(1_200), Ok(1_000));
        assert_eq!((authorization.status(), authorization.held(), authorization.captured()), (Captured, 0, 1_200));
        assert_eq!(authorization.capture(0), Err(AuthorizationError::NotPositive));
    }

    #[test]
    fn releasing_after_a_capture_is_a_partial_reversal() {
        let mut authorization = Authorization::restore(Approved, 1_000, 0);
        authorization.capture(300).expect("capture");
        assert_eq!(authorization.reverse(None), Ok(700));
        assert_eq!(authorization.status(), PartiallyReversed);
    }

    #[test]
    fn expiry_releases_the_rest_and_says_so() {
        let mut authorization = Authorization::restore(Approved, 1_000, 0);
        assert_eq!(authorization.expire(), Ok(1_000));
        assert_eq!((authorization.status(), authorization.held()), (Expired, 0));
    }

    #[test]
    fn a_declined_authorization_changes_no_more() {
        let mut declined = Authorization::restore(Declined, 0, 0);
        assert_eq!(declined.reverse(None), Err(AuthorizationError::Declined));
        assert_eq!(declined.capture(100), Err(AuthorizationError::Declined));
        assert_eq!(declined.expire(), Err(AuthorizationError::Declined));
        assert_eq!(declined.void_stand_in(), 0);
        assert_eq!(declined, Authorization::restore(Declined, 0, 0));
    }

    #[test]
    fn a_stand_in_void_releases_everything() {
        let mut authorization = Authorization::restore(Approved, 1_000, 0);
        assert_eq!(authorization.void_stand_in(), 1_000);
        assert_eq!((authorization.status(), authorization.held()), (Reversed, 0));
    }
}
