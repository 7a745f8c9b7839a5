//! The job runner: executes the durable jobs of the `jobs` table — the work that reaches outside the database.
//!
//! | kind | what it does | after a failure |
//! |---|---|---|
//! | `webhook` | delivers one event to one endpoint ([`crate::webhooks`]) | 5 s … 10 h, eight attempts, then dead and the endpoint `failing` |
//! | `installment_collection` | charges a due installment to the funding card and records the outcome in the plan | a decline is an outcome (the plan retries after 2 days, then rolls over); an unreachable gateway is retried |
//! | `plan_payment` | an early payment the cardholder asked for | as above |
//! | `funding_charge`, `funding_refund` | pay now: charges or refunds the difference between what the card spent and what its funding card paid; refunds of merchant refunds above a plan's balance | retried with backoff, then dead |
//! | `funding_release` | releases the hold placed on the funding card at creation | retried with backoff, then dead |
//! | `backtest` | replays an authorization rule version over the stored decisions of a window ([`crate::service::auth_rules`]) | retried with backoff, then dead |
//!
//! Every gateway call names the job's dedupe key as its reference, and the gateway answers a repeated reference
//! with its first answer; the outcome is recorded in one transaction with the job's completion, under the job's
//! lease. A runner that dies between the call and the commit leaves the job leased; when the lease runs out
//! another runner repeats the call, gets the same answer and records it once. Nothing is charged twice.

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::ledger::entries;
use ghostcard_domain::money::Money;
use ghostcard_domain::plan::{CollectionFailure, InstallmentStatus, PlanStatus};
use ghostcard_store::jobs::{self, Job};
use ghostcard_store::plans::{self, PlanRecord};
use ghostcard_store::{StoreError, Tx, cards, funding_sources, ledger, webhooks};
use serde::Deserialize;

use crate::App;
use crate::gateway::GatewayError;
use crate::ids::new_id;
use crate::queue::{
    BACKTEST, Collection, FUNDING_CHARGE, FUNDING_REFUND, FUNDING_RELEASE, FundingMovement, INSTALLMENT_COLLECTION,
    PLAN_PAYMENT, Payment, Release, RunnerError, WEBHOOK, enqueue,
};

/// Jobs claimed at a time.
const CLAIM_BATCH: u32 = 20;
/// How long a claim is held before another runner may take the job over.
const LEASE: Duration = Duration::minutes(5);
/// Attempts of a funding job before it is dead.
const FUNDING_ATTEMPTS: i64 = 6;

/// What running a job came to.
enum Outcome {
    /// Try again at this time.
    RetryAt(DateTime<Utc>, String),
    /// No attempts left.
    Dead(String),
}

/// Runs every job due at `now`, in due order, until none is left. Returns how many ran.
pub async fn run_queue(app: &App, now: DateTime<Utc>) -> Result<u64, RunnerError> {
    let mut ran = 0;
    loop {
        // Look before taking the write lock: most ticks find nothing to do.
        let mut tx = app.store.read().await?;
        let due = jobs::any_due(&mut tx, now).await?;
        drop(tx);
        if !due {
            return Ok(ran);
        }
        let mut tx = app.store.begin().await?;
        let claimed = jobs::claim(&mut tx, &app.runner_id, now, now + LEASE, CLAIM_BATCH).await?;
        ghostcard_store::commit(tx).await?;
        if claimed.is_empty() {
            return Ok(ran);
        }
        // Money jobs run one after another, in due order; webhook deliveries (independent of each other and of
        // the books) run together, so a receiver that hangs until the timeout holds up nothing else.
        let (deliveries, others): (Vec<Job>, Vec<Job>) = claimed.into_iter().partition(|job| job.kind == WEBHOOK);
        for job in &others {
            run(app, job, now).await?;
        }
        for result in futures_util::future::join_all(deliveries.iter().map(|job| run(app, job, now))).await {
            result?;
        }
        ran += (others.len() + deliveries.len()) as u64;
    }
}

/// Runs one claimed job and records its outcome.
pub async fn run(app: &App, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let result = match job.kind.as_str() {
        WEBHOOK => webhook(app, job, now).await,
        INSTALLMENT_COLLECTION => collection(app, job, now).await,
        PLAN_PAYMENT => payment(app, job, now).await.map(|_| ()),
        FUNDING_CHARGE | FUNDING_REFUND => funding_movement(app, job, now).await,
        FUNDING_RELEASE => release(app, job, now).await,
        BACKTEST => backtest(app, job, now).await,
        other => Err(RunnerError::Failed(format!("unknown job kind {other}"))),
    };
    if let Err(error) = result {
        // The job's own transaction rolled back; record the failure in a new one.
        let outcome = match &error {
            RunnerError::Failed(reason) if job.kind == WEBHOOK => match crate::webhooks::retry_at(job.attempts, now) {
                Some(at) => Outcome::RetryAt(at, reason.clone()),
                None => Outcome::Dead(reason.clone()),
            },
            _ if job.attempts >= FUNDING_ATTEMPTS => Outcome::Dead(error.to_string()),
            _ => Outcome::RetryAt(
                now + Duration::minutes(4_i64.pow(job.attempts.clamp(1, 5) as u32 - 1)),
                error.to_string(),
            ),
        };
        let mut tx = app.store.begin().await?;
        let recorded = match &outcome {
            Outcome::RetryAt(at, reason) => {
                tracing::warn!(job = %job.id, kind = %job.kind, attempts = job.attempts, error = %reason, "job failed; it will be retried");
                jobs::finish(&mut tx, &job.id, &app.runner_id, "pending", Some(*at), Some(reason), now).await
            }
            Outcome::Dead(reason) => {
                tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, error = %reason, "job failed for the last time; it is dead until an operator retries it");
                jobs::finish(&mut tx, &job.id, &app.runner_id, "dead", None, Some(reason), now).await
            }
        };
        match recorded {
            // The lease ran out and another runner owns the job now: its outcome is that runner's to record.
            Err(StoreError::Stale) => return Ok(()),
            other => other?,
        }
        if let (Outcome::Dead(_), WEBHOOK) = (&outcome, job.kind.as_str()) {
            let delivery: crate::webhooks::Delivery = payload(job)?;
            webhooks::set_status(&mut tx, &delivery.endpoint_id, "failing").await?;
        }
        ghostcard_store::commit(tx).await?;
    }
    Ok(())
}

fn payload<T: for<'de> Deserialize<'de>>(job: &Job) -> Result<T, RunnerError> {
    serde_json::from_str(&job.payload).map_err(|error| RunnerError::Failed(format!("job payload: {error}")))
}

/// Marks the job done in `tx` and commits.
async fn done(app: &App, mut tx: Tx, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    jobs::finish(&mut tx, &job.id, &app.runner_id, "done", None, None, now).await?;
    ghostcard_store::commit(tx).await?;
    Ok(())
}

async fn webhook(app: &App, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let delivery: crate::webhooks::Delivery = payload(job)?;
    crate::webhooks::deliver(app, &delivery).await.map_err(RunnerError::Failed)?;
    let mut tx = app.store.begin().await?;
    webhooks::set_status(&mut tx, &delivery.endpoint_id, "enabled").await?;
    done(app, tx, job, now).await
}

/// The funding source token of a card.
async fn funding_token(app: &App, card_id: &str) -> Result<(String, String), RunnerError> {
    let mut tx = app.store.read().await?;
    let card = cards::get(&mut tx, card_id).await?.ok_or_else(|| RunnerError::Failed(format!("no card {card_id}")))?;
    let source = funding_sources::get(&mut tx, &card.funding_source_id)
        .await?
        .ok_or_else(|| RunnerError::Failed("the card's funding source is missing".to_owned()))?;
    Ok((source.gateway_token, card.currency.code().to_owned()))
}

fn gateway_failure(error: GatewayError) -> RunnerError {
    RunnerError::Failed(format!("funding gateway: {error}"))
}

async fn funding_movement(app: &App, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let movement: FundingMovement = payload(job)?;
    let (token, currency) = funding_token(app, &movement.card_id).await?;
    let currency = ghostcard_domain::money::Currency::from_code(&currency)
        .map_err(|error| RunnerError::Failed(error.to_string()))?;
    let amount = Money::new(movement.amount, currency);
    let charge = job.kind == FUNDING_CHARGE;
    if charge {
        app.gateway.charge(&token, amount, &job.dedupe_key).await.map_err(gateway_failure)?;
    } else {
        app.gateway.refund(&token, amount, &job.dedupe_key).await.map_err(gateway_failure)?;
    }
    let mut tx = app.store.begin().await?;
    let steps = match (charge, movement.pay_now) {
        (true, _) => entries::collect(&movement.card_id, amount),
        (false, true) => entries::refund_prepaid(&movement.card_id, amount),
        (false, false) => entries::refund_to_funding(amount),
    };
    ledger::commit(&mut tx, &steps, now).await?;
    done(app, tx, job, now).await
}

async fn release(app: &App, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let release: Release = payload(job)?;
    let mut tx = app.store.read().await?;
    let source = funding_sources::get(&mut tx, &release.funding_source_id).await?;
    drop(tx);
    if let Some(source) = source {
        app.gateway.release(&source.gateway_token, &release.hold_id).await.map_err(gateway_failure)?;
    }
    done(app, app.store.begin().await?, job, now).await
}

/// Replays a backtest's window (reading only), then records its results with the job's completion.
async fn backtest(app: &App, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let completed = crate::service::auth_rules::replay(app, &payload(job)?).await?;
    let mut tx = app.store.begin().await?;
    if let Some(completed) = completed {
        crate::service::auth_rules::complete(&mut tx, &completed, now).await?;
    }
    done(app, tx, job, now).await
}

/// Charges a due installment and records the outcome: paid, or the plan's failure rule (retry after 2 days, then
/// roll over, or the last one overdue).
async fn collection(app: &App, job: &Job, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let collection: Collection = payload(job)?;
    let mut tx = app.store.read().await?;
    let record = plans::get(&mut tx, &collection.plan_id).await?;
    drop(tx);
    let Some(record) = record else { return done(app, app.store.begin().await?, job, now).await };
    let still_due = record.plan.status == PlanStatus::Active
        && record.plan.installments.iter().any(|installment| {
            installment.seq == collection.seq
                && matches!(installment.status, InstallmentStatus::Scheduled | InstallmentStatus::Failed)
        });
    if !still_due {
        // Paid early, refunded or rolled over since the job was written: nothing to collect.
        return done(app, app.store.begin().await?, job, now).await;
    }
    let (token, _) = funding_token(app, &record.card_id).await?;
    let amount = record.plan.money(collection.amount);
    let answer = app.gateway.charge(&token, amount, &job.dedupe_key).await;
    let mut tx = app.store.begin().await?;
    let mut record = plans::get(&mut tx, &collection.plan_id)
        .await?
        .ok_or_else(|| RunnerError::Failed("plan vanished".to_owned()))?;
    let today = app.today(now);
    match answer {
        Ok(_) => receive(app, &mut tx, &mut record, collection.amount, Some(collection.seq), now).await?,
        Err(GatewayError::Declined) => {
            let failure = record
                .plan
                .collection_failed(collection.seq, today, &app.plan_terms)
                .map_err(|error| RunnerError::Failed(error.to_string()))?;
            tracing::info!(plan = %record.id, seq = collection.seq, ?failure, "installment collection declined");
            crate::plans::save(app, &mut tx, &mut record, now).await?;
            crate::events::installment(&mut tx, "installment.failed", &record, collection.seq, collection.amount, now)
                .await?;
            if let CollectionFailure::RolledOver { into } = failure {
                tracing::info!(plan = %record.id, from = collection.seq, into, "installment rolled over");
            }
        }
        Err(error) => return Err(gateway_failure(error)),
    }
    done(app, tx, job, now).await
}

/// Money the funding card paid towards the plan: paid to installment `seq` (a collection) or to the open
/// installments in order (an early payment). Books the interest it covers and the collection; what exceeds the
/// plan's balance (the plan shrank since the charge was asked for) is owed back to the funding card.
pub async fn receive(
    app: &App,
    tx: &mut Tx,
    record: &mut PlanRecord,
    amount: i64,
    seq: Option<u32>,
    now: DateTime<Utc>,
) -> Result<(), RunnerError> {
    let interest_before = record.plan.interest_owed();
    let status_before = record.plan.status;
    let paid_before: Vec<(u32, InstallmentStatus)> =
        record.plan.installments.iter().map(|installment| (installment.seq, installment.status)).collect();
    let owed_on_seq = seq.and_then(|seq| record.plan.installments.iter().find(|i| i.seq == seq)).map(|i| i.owed());
    let applied = match owed_on_seq {
        Some(owed) if owed == amount => record
            .plan
            .collection_succeeded(seq.unwrap_or_default())
            .map_err(|error| RunnerError::Failed(error.to_string()))?,
        _ => {
            let applying = amount.min(record.plan.balance());
            if applying > 0 {
                record.plan.pay(applying).map_err(|error| RunnerError::Failed(error.to_string()))?;
            }
            applying
        }
    };
    let interest = interest_before - record.plan.interest_owed();
    let mut steps = entries::interest(&record.card_id, record.plan.money(interest));
    steps.extend(entries::collect(&record.card_id, record.plan.money(applied)));
    let excess = amount - applied;
    if excess > 0 {
        steps.extend(entries::collect_excess(record.plan.money(excess)));
    }
    ledger::commit(tx, &steps, now).await?;
    if excess > 0 {
        let movement = FundingMovement {
            card_id: record.card_id.clone(),
            amount: excess,
            currency: record.plan.currency.code().to_owned(),
            pay_now: false,
        };
        enqueue(
            tx,
            FUNDING_REFUND,
            &format!("excess:{}:{}", record.id, new_id("x", now, &mut rand::rng())),
            &movement,
            now,
            now,
        )
        .await?;
    }
    crate::plans::save(app, tx, record, now).await?;
    for installment in &record.plan.installments {
        let was_paid =
            paid_before.iter().any(|(s, status)| *s == installment.seq && *status == InstallmentStatus::Paid);
        if installment.status == InstallmentStatus::Paid && !was_paid {
            crate::events::installment(tx, "installment.paid", record, installment.seq, installment.paid, now).await?;
        }
    }
    if record.plan.status == PlanStatus::Completed && status_before != PlanStatus::Completed {
        crate::events::plan(tx, "plan.completed", record, now).await?;
    }
    Ok(())
}

/// An early payment: charges the funding card, then pays the plan. Returns the plan, or `None` when the funding
/// card declined.
pub async fn payment(app: &App, job: &Job, now: DateTime<Utc>) -> Result<Option<PlanRecord>, RunnerError> {
    let payment: Payment = payload(job)?;
    let mut tx = app.store.read().await?;
    let record =
        plans::get(&mut tx, &payment.plan_id).await?.ok_or_else(|| RunnerError::Failed("no such plan".to_owned()))?;
    drop(tx);
    let token = match &payment.funding_source_id {
        Some(source_id) => {
            let mut tx = app.store.read().await?;
            funding_sources::get(&mut tx, source_id)
                .await?
                .ok_or_else(|| RunnerError::Failed("the payment's funding source is missing".to_owned()))?
                .gateway_token
        }
        None => funding_token(app, &record.card_id).await?.0,
    };
    match app.gateway.charge(&token, record.plan.money(payment.amount), &job.dedupe_key).await {
        Ok(_) => {}
        Err(GatewayError::Declined) => {
            done(app, app.store.begin().await?, job, now).await?;
            return Ok(None);
        }
        Err(error) => return Err(gateway_failure(error)),
    }
    let mut tx = app.store.begin().await?;
    let mut record =
        plans::get(&mut tx, &payment.plan_id).await?.ok_or_else(|| RunnerError::Failed("plan vanished".to_owned()))?;
    if payment.payoff && record.plan.status == PlanStatus::Active {
        // Financing: the payoff amount forgives interest not yet accrued; pay_off settles the schedule at it.
        // What the payoff pays beyond principal and fees is interest.
        let principal_and_fees = record.plan.balance() - record.plan.interest_owed();
        let charged = record.plan.pay_off(app.today(now)).map_err(|error| RunnerError::Failed(error.to_string()))?;
        let interest = (charged - principal_and_fees).max(0);
        let mut steps = entries::interest(&record.card_id, record.plan.money(interest));
        steps.extend(entries::collect(&record.card_id, record.plan.money(charged)));
        let excess = payment.amount - charged;
        if excess > 0 {
            steps.extend(entries::collect_excess(record.plan.money(excess)));
        }
        ledger::commit(&mut tx, &steps, now).await?;
        crate::plans::save(app, &mut tx, &mut record, now).await?;
        crate::events::plan(&mut tx, "plan.completed", &record, now).await?;
    } else {
        receive(app, &mut tx, &mut record, payment.amount, None, now).await?;
    }
    jobs::finish(&mut tx, &job.id, &app.runner_id, "done", None, None, now).await?;
    ghostcard_store::commit(tx).await?;
    Ok(Some(record))
}
