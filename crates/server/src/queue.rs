//! The kinds of durable job, their payloads, and [`enqueue`], which puts one in the `jobs` table inside the
//! caller's transaction (so a change and the work it needs commit together). [`crate::runner`] executes them.

use chrono::{DateTime, Utc};
use ghostcard_store::{StoreError, Tx, jobs, ledger};
use serde::{Deserialize, Serialize};

use crate::ids::new_id;

pub const WEBHOOK: &str = "webhook";
pub const INSTALLMENT_COLLECTION: &str = "installment_collection";
pub const PLAN_PAYMENT: &str = "plan_payment";
pub const FUNDING_CHARGE: &str = "funding_charge";
pub const FUNDING_REFUND: &str = "funding_refund";
pub const FUNDING_RELEASE: &str = "funding_release";
pub const BACKTEST: &str = "backtest";

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::CommitError),
    #[error("{0}")]
    Failed(String),
}

/// A charge or refund of one card's funding card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FundingMovement {
    pub card_id: String,
    /// Minor units, positive.
    pub amount: i64,
    pub currency: String,
    /// Pay now: the money moves between the funding card and the card's receivable (a charge for what the card
    /// spent, or a refund when that shrank). Otherwise a refund pays out the refund payable (money a plan no
    /// longer owed).
    #[serde(default)]
    pub pay_now: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Collection {
    pub plan_id: String,
    pub seq: u32,
    pub amount: i64,
    pub attempt: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub plan_id: String,
    pub amount: i64,
    /// Pay the whole plan off (financing: at the payoff amount of the day).
    pub payoff: bool,
    /// Charge this funding source of the cardholder instead of the card's.
    pub funding_source_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub card_id: String,
    pub funding_source_id: String,
    pub hold_id: String,
}

/// Enqueues a job in the caller's transaction; enqueueing a dedupe key again does nothing. Returns the job id
/// when it was new.
pub async fn enqueue(
    tx: &mut Tx,
    kind: &str,
    dedupe_key: &str,
    payload: &impl Serialize,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let id = new_id("job", now, &mut rand::rng());
    let payload = serde_json::to_string(payload).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    Ok(jobs::enqueue(tx, &id, kind, dedupe_key, &payload, run_at, now).await?.then_some(id))
}
