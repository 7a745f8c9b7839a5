//! The funding gateway: the payment service that holds, charges and refunds the cardholder's linked card.
//!
//! [`FundingGateway`] is the seam where a real payment service plugs in. The built-in [`SandboxGateway`] is
//! deterministic and keyed by its special test numbers (docs/reference/rest.md): `4000000000000002` is declined when
//! linked, `4000000000009995` accepts holds but fails every charge, `4000000000000341` links but fails its first
//! hold, and (ours) `4000000000000119` times out on its first charge (no answer, nothing charged: a retry goes
//! through); any other Luhn-valid number works.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::money::Money;

pub type GatewayFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("the funding card was declined")]
    Declined,
    #[error("the funding gateway is unavailable; try again")]
    Unavailable,
}

/// What linking a card produced: a token to use from now on, and what may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedCard {
    pub token: String,
    pub brand: String,
    pub last4: String,
}

pub trait FundingGateway: Send + Sync {
    /// Sandbox mode: link a raw test card number. (Live gateways link from their own token instead.)
    fn link(&self, number: &CardNumber) -> GatewayFuture<'_, LinkedCard>;
    /// Places a hold of `amount` on the funding card; returns the hold's reference. `reference` makes retries
    /// safe: the same reference never holds twice.
    fn hold<'a>(&'a self, token: &'a str, amount: Money, reference: &'a str) -> GatewayFuture<'a, String>;
    /// Releases a hold.
    fn release<'a>(&'a self, token: &'a str, hold: &'a str) -> GatewayFuture<'a, ()>;
    /// Charges `amount` to the funding card; returns the charge's reference. The same `reference` never charges
    /// twice: a retry (after a timeout, a crash) gets the first answer.
    fn charge<'a>(&'a self, token: &'a str, amount: Money, reference: &'a str) -> GatewayFuture<'a, String>;
    /// Refunds `amount` to the funding card, at most once per `reference`.
    fn refund<'a>(&'a self, token: &'a str, amount: Money, reference: &'a str) -> GatewayFuture<'a, String>;
}

/// The deterministic sandbox gateway.
#[derive(Debug, Default)]
pub struct SandboxGateway {
    /// Tokens whose first hold has been attempted (for `4000000000000341`).
    first_hold_attempted: Mutex<HashSet<String>>,
    /// Tokens whose first charge has timed out (for `4000000000000119`).
    first_charge_timed_out: Mutex<HashSet<String>>,
    /// Every charge and refund by reference, with its answer: a repeated reference gets the same answer.
    movements: Mutex<HashMap<String, Movement>>,
}

/// A charge or refund the sandbox answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub kind: &'static str,
    pub token: String,
    pub amount: Money,
    pub result: Result<String, GatewayError>,
}

impl SandboxGateway {
    /// The charges and refunds answered so far, by reference (for tests and the sandbox's own checks).
    pub fn movements(&self) -> HashMap<String, Movement> {
        self.movements.lock().map(|movements| movements.clone()).unwrap_or_default()
    }

    fn move_money(
        &self,
        kind: &'static str,
        token: &str,
        amount: Money,
        reference: &str,
    ) -> Result<String, GatewayError> {
        // A timeout is no answer: nothing is recorded, and the retry of the same reference goes through.
        if kind == "charge"
            && token.starts_with("sandbox_first_charge_times_out_")
            && self.first_charge_timed_out.lock().map(|mut seen| seen.insert(token.to_owned())).unwrap_or(false)
        {
            return Err(GatewayError::Unavailable);
        }
        let Ok(mut movements) = self.movements.lock() else { return Err(GatewayError::Unavailable) };
        let movement = movements.entry(format!("{kind}:{reference}")).or_insert_with(|| Movement {
            kind,
            token: token.to_owned(),
            amount,
            // Refunds always go through; charges fail on the card whose charges all fail.
            result: if kind == "charge" && token.starts_with("sandbox_charges_fail_") {
                Err(GatewayError::Declined)
            } else {
                Ok(format!("{kind}_{reference}"))
            },
        });
        movement.result.clone()
    }
}

const DECLINED_AT_LINK: &str = "4000000000000002";
const CHARGES_FAIL: &str = "4000000000009995";
const FIRST_HOLD_FAILS: &str = "4000000000000341";
const FIRST_CHARGE_TIMES_OUT: &str = "4000000000000119";

impl FundingGateway for SandboxGateway {
    fn link(&self, number: &CardNumber) -> GatewayFuture<'_, LinkedCard> {
        let digits = number.expose();
        let result = if digits == DECLINED_AT_LINK {
            Err(GatewayError::Declined)
        } else {
            let behaviour = match digits {
                CHARGES_FAIL => "charges_fail",
                FIRST_HOLD_FAILS => "first_hold_fails",
                FIRST_CHARGE_TIMES_OUT => "first_charge_times_out",
                _ => "ok",
            };
            // The token names the behaviour and the last four digits; it never contains the number.
            let token = format!("sandbox_{behaviour}_{}_{}", number.last4(), number.bin(6));
            Ok(LinkedCard { token, brand: brand(digits).to_owned(), last4: number.last4().to_owned() })
        };
        Box::pin(async move { result })
    }

    fn hold<'a>(&'a self, token: &'a str, _amount: Money, reference: &'a str) -> GatewayFuture<'a, String> {
        let result = if token.starts_with("sandbox_first_hold_fails_")
            && self.first_hold_attempted.lock().map(|mut attempted| attempted.insert(token.to_owned())).unwrap_or(false)
        {
            Err(GatewayError::Declined)
        } else {
            Ok(format!("hold_{reference}"))
        };
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, _token: &'a str, _hold: &'a str) -> GatewayFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn charge<'a>(&'a self, token: &'a str, amount: Money, reference: &'a str) -> GatewayFuture<'a, String> {
        let result = self.move_money("charge", token, amount, reference);
        Box::pin(async move { result })
    }

    fn refund<'a>(&'a self, token: &'a str, amount: Money, reference: &'a str) -> GatewayFuture<'a, String> {
        let result = self.move_money("refund", token, amount, reference);
        Box::pin(async move { result })
    }
}

/// The card brand from the leading digits.
pub fn brand(digits: &str) -> &'static str {
    match digits.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') => "mastercard",
        Some(b'3') if digits.starts_with("34") || digits.starts_with("37") => "amex",
        Some(b'6') => "discover",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghostcard_domain::money::Currency;

    #[tokio::test]
    async fn a_repeated_reference_gets_the_first_answer_and_moves_money_once() {
        let gateway = SandboxGateway::default();
        let amount = Money::new(1_000, Currency::USD);
        let first = gateway.charge("sandbox_ok_4242_424242", amount, "collect:plan_1:1:1").await;
        let again = gateway.charge("sandbox_ok_4242_424242", amount, "collect:plan_1:1:1").await;
        assert_eq!(first, again);
        assert_eq!(gateway.movements().len(), 1);
        let declined = gateway.charge("sandbox_charges_fail_9995_400000", amount, "collect:plan_2:1:1").await;
        assert_eq!(declined, Err(GatewayError::Declined));
        assert_eq!(gateway.charge("sandbox_charges_fail_9995_400000", amount, "collect:plan_2:1:1").await, declined);
        // Refunds go through on every card, once per reference.
        assert!(gateway.refund("sandbox_charges_fail_9995_400000", amount, "refund:r1").await.is_ok());
        assert_eq!(gateway.movements().len(), 3);
    }
}
