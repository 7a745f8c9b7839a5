//! Paying a plan early: one installment, an amount, or the whole plan.

use chrono::{DateTime, Utc};
use ghostcard_domain::plan::{InstallmentStatus, Plan, PlanStatus};
use ghostcard_store::jobs;
use ghostcard_store::plans::{self, PlanRecord};
use ghostcard_store::{StoreError, Tx};

use crate::ids::has_prefix;
use crate::{App, queue, runner};

/// What to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// This many minor units, at most what the plan still owes.
    Amount(i64),
    /// What this installment owes.
    Installment(u32),
    /// The whole plan (financing: remaining principal plus interest accrued since the last due date).
    Payoff,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no plan {0}")]
    NotFound(String),
    #[error("the plan is {}; there is nothing to pay", .0.as_str())]
    NotActive(PlanStatus),
    #[error("installment {0} has nothing owed")]
    NothingOwed(u32),
    #[error("amount is a positive integer of minor units")]
    InvalidAmount,
    #[error("amount is more than the {0} the plan still owes")]
    ExceedsBalance(i64),
    #[error("funding_source_id names no active funding card of this plan's cardholder")]
    InvalidFundingSource,
    #[error("the funding card declined the payment; nothing was paid")]
    Declined,
    /// The gateway did not answer: the payment is queued, and the job runner retries it.
    #[error("the funding gateway did not answer; the payment is queued and will be retried")]
    Pending,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pays `payment` on the plan `plan_id` from its card's funding card, or from `funding_source_id`, a funding card of
/// the same cardholder. The payment is a job written first, then run at once: if the gateway does not answer, the
/// job runner finishes it.
pub async fn pay(
    app: &App,
    plan_id: &str,
    payment: Payment,
    funding_source_id: Option<String>,
    now: DateTime<Utc>,
) -> Result<PlanRecord, PaymentError> {
    if !has_prefix(plan_id, "plan") {
        return Err(PaymentError::NotFound(plan_id.to_owned()));
    }
    let mut tx = app.store.begin().await?;
    let record = plans::get(&mut tx, plan_id).await?.ok_or_else(|| PaymentError::NotFound(plan_id.to_owned()))?;
    if record.plan.status != PlanStatus::Active {
        return Err(PaymentError::NotActive(record.plan.status));
    }
    let amount = amount_of(&record.plan, payment, app.today(now))?;
    if let Some(source_id) = &funding_source_id {
        check_funding_source(&mut tx, &record, source_id).await?;
    }
    let job =
        queue::Payment { plan_id: plan_id.to_owned(), amount, payoff: payment == Payment::Payoff, funding_source_id };
    let key = format!("payment:{plan_id}:{}", crate::ids::new_id("pay", now, &mut rand::rng()));
    let job_id = queue::enqueue(&mut tx, queue::PLAN_PAYMENT, &key, &job, now, now)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a new payment's job already existed".to_owned()))?;
    let job = jobs::lease(&mut tx, &job_id, &app.runner_id, now + chrono::Duration::minutes(5), now).await?;
    ghostcard_store::commit(tx).await?;
    match runner::payment(app, &job, now).await {
        Ok(Some(record)) => {
            app.wake_jobs.notify_one();
            Ok(record)
        }
        Ok(None) => Err(PaymentError::Declined),
        Err(error) => {
            tracing::warn!(%error, plan = %plan_id, "plan payment did not complete; the job runner retries it");
            Err(PaymentError::Pending)
        }
    }
}

/// The amount a payment asks for, checked against what the plan owes on `today`.
fn amount_of(plan: &Plan, payment: Payment, today: chrono::NaiveDate) -> Result<i64, PaymentError> {
    match payment {
        Payment::Payoff => Ok(plan.payoff_amount(today)),
        Payment::Installment(seq) => plan
            .installments
            .iter()
            .find(|installment| {
                installment.seq == seq && installment.owed() > 0 && installment.status != InstallmentStatus::RolledOver
            })
            .map(|installment| installment.owed())
            .ok_or(PaymentError::NothingOwed(seq)),
        Payment::Amount(amount) if amount <= 0 => Err(PaymentError::InvalidAmount),
        Payment::Amount(amount) if amount > plan.balance() => Err(PaymentError::ExceedsBalance(plan.balance())),
        Payment::Amount(amount) => Ok(amount),
    }
}

async fn check_funding_source(tx: &mut Tx, record: &PlanRecord, source_id: &str) -> Result<(), PaymentError> {
    let source = ghostcard_store::funding_sources::get(tx, source_id).await?;
    match source {
        Some(source) if source.cardholder_id == record.cardholder_id && source.status == "active" => Ok(()),
        _ => Err(PaymentError::InvalidFundingSource),
    }
}
