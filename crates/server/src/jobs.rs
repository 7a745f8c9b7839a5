//! Work that falls due with time, run in bounded sweeps over the database's own state, in this order at each
//! instant: authorization holds never captured are released after 7 days (31 for lodging, car rental and cruise
//! lines); unused cards expire at the end of their window (and release every hold); 14 days after a card's first
//! capture its open holds are released and its unused amount given back (the plan keeps the captured total);
//! plans get their late fees, charge-offs and collection jobs ([`crate::plans`]); pay-now cards are charged (or
//! refunded) the difference between what they spent and what their funding card paid; new events become webhook
//! deliveries; and then the job queue runs ([`crate::runner`]). Each item is handled in its own transaction and
//! each sweep can run again: what is done is no longer due.
//!
//! The server runs all of it on a timer (and the queue more often); in sandbox mode `POST
//! /v1/simulate/clock/advance` steps through every instant at which something fell due, in order ([`run_until`]).

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::card::{CardEvent, CardStatus, CloseReason};
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::cards;
use ghostcard_store::{Tx, events, jobs, plans, webhooks};
use serde::Serialize;

use crate::queue::{self, FundingMovement, RunnerError};
use crate::runner;
use crate::service::lifecycle::{self, LifecycleError};
use crate::{App, service};

/// Items handled per query; a sweep repeats until nothing more is due.
const SWEEP_BATCH: u32 = 500;
/// Days after a card's first capture when its unused amount is given back.
const ADJUSTMENT_DAYS: i64 = 14;
/// Most steps one clock advance takes (each a distinct instant something fell due).
const MAX_STEPS: usize = 10_000;

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobReport {
    pub cards_expired: u64,
    pub holds_expired: u64,
    pub cards_adjusted: u64,
    pub plans_swept: u64,
    pub funding_true_ups: u64,
    pub events_dispatched: u64,
    pub jobs_run: u64,
    pub idempotency_records_purged: u64,
}

impl std::ops::AddAssign for JobReport {
    fn add_assign(&mut self, other: JobReport) {
        self.cards_expired += other.cards_expired;
        self.holds_expired += other.holds_expired;
        self.cards_adjusted += other.cards_adjusted;
        self.plans_swept += other.plans_swept;
        self.funding_true_ups += other.funding_true_ups;
        self.events_dispatched += other.events_dispatched;
        self.jobs_run += other.jobs_run;
        self.idempotency_records_purged += other.idempotency_records_purged;
    }
}

impl From<RunnerError> for LifecycleError {
    fn from(error: RunnerError) -> Self {
        match error {
            RunnerError::Store(error) => LifecycleError::Store(error),
            RunnerError::Ledger(error) => LifecycleError::Ledger(error),
            RunnerError::Failed(reason) => LifecycleError::Inconsistent(reason),
        }
    }
}

/// Runs everything due at `now`.
pub async fn run_due(app: &App, now: DateTime<Utc>) -> Result<JobReport, LifecycleError> {
    crate::clients::write_failed_authentications(app, false).await?;
    let mut report = sweep(app, now).await?;
    report.events_dispatched = dispatch_events(app, now).await?;
    report.jobs_run = runner::run_queue(app, now).await?;
    // Jobs may have written events (installment.paid, …): deliver them in this run too.
    let dispatched = dispatch_events(app, now).await?;
    if dispatched > 0 {
        report.events_dispatched += dispatched;
        report.jobs_run += runner::run_queue(app, now).await?;
    }
    if report != JobReport::default() {
        tracing::info!(?report, "jobs ran");
    }
    Ok(report)
}

/// The sweeps alone (what falls due in the database's own state, writing jobs), without running the job queue.
pub async fn sweep(app: &App, now: DateTime<Utc>) -> Result<JobReport, LifecycleError> {
    // Holds first, oldest first: a card whose only hold expires may then close.
    let holds_expired = expire_holds(app, now).await?;
    Ok(JobReport {
        holds_expired,
        cards_expired: expire_cards(app, now).await?,
        cards_adjusted: adjust_cards(app, now).await?,
        plans_swept: sweep_plans(app, now).await?,
        funding_true_ups: true_up_pay_now(app, now).await?,
        idempotency_records_purged: purge_idempotency_records(app, now).await?,
        ..JobReport::default()
    })
}

/// Idempotency records (with the responses they replay) are kept 24 hours, then deleted, a bounded batch at a time.
async fn purge_idempotency_records(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let mut purged = 0;
    loop {
        let mut tx = app.store.begin().await?;
        let deleted =
            ghostcard_store::idempotency::purge(&mut tx, now - crate::service::IDEMPOTENCY_RETENTION, SWEEP_BATCH)
                .await?;
        ghostcard_store::commit(tx).await?;
        purged += deleted;
        if deleted < u64::from(SWEEP_BATCH) {
            return Ok(purged);
        }
    }
}

/// Runs everything that falls due from `from` to `to`, in order: at each instant something falls due (a card's
/// window, a hold's expiry, an adjustment, a plan's work, a job), then at `to`.
pub async fn run_until(app: &App, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<JobReport, LifecycleError> {
    // What was already due (events not yet delivered, jobs waiting) runs first, at `from`.
    let mut report = run_due(app, from).await?;
    let mut at = from;
    for _ in 0..MAX_STEPS {
        let step = next_due_after(app, at).await?.filter(|next| *next < to).unwrap_or(to);
        report += run_due(app, step).await?;
        if step >= to {
            return Ok(report);
        }
        at = step;
    }
    report += run_due(app, to).await?;
    Ok(report)
}

/// The earliest instant after `at` when something falls due.
async fn next_due_after(app: &App, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, LifecycleError> {
    let mut tx = app.store.read().await?;
    let long_mccs: Vec<String> = app.config.hold_expiry_long_mccs.iter().map(|mcc| format!("{mcc:04}")).collect();
    let short = Duration::days(app.config.hold_expiry_days);
    let long = Duration::days(app.config.hold_expiry_long_days);
    let adjustment = Duration::days(ADJUSTMENT_DAYS);
    let candidates = [
        cards::next_window_end(&mut tx, at).await?,
        authorizations::oldest_open_hold(&mut tx, &long_mccs, false, at - short).await?.map(|made| made + short),
        authorizations::oldest_open_hold(&mut tx, &long_mccs, true, at - long).await?.map(|made| made + long),
        cards::next_adjustment_capture(&mut tx, at - adjustment).await?.map(|captured| captured + adjustment),
        plans::next_due(&mut tx, at).await?,
        jobs::next_due(&mut tx, at).await?,
    ];
    let mut dispatches = Vec::new();
    for endpoint in webhooks::all(&mut tx).await? {
        dispatches.push(events::first_after(&mut tx, &endpoint.cursor).await?.map(|made| made + DISPATCH_LAG));
    }
    Ok(candidates.into_iter().chain(dispatches).flatten().filter(|due| *due > at).min())
}

/// How long a hold of this merchant category lives.
fn hold_lifetime(app: &App, mcc: &str) -> Duration {
    let long = mcc.parse::<u16>().is_ok_and(|mcc| app.config.hold_expiry_long_mccs.contains(&mcc));
    Duration::days(if long { app.config.hold_expiry_long_days } else { app.config.hold_expiry_days })
}

async fn expire_holds(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let shortest = Duration::days(app.config.hold_expiry_days.min(app.config.hold_expiry_long_days));
    let mut expired = 0;
    let mut skipped = std::collections::HashSet::new();
    loop {
        let mut tx = app.store.read().await?;
        let candidates =
            authorizations::open_holds_before(&mut tx, now - shortest, SWEEP_BATCH + skipped.len() as u32).await?;
        drop(tx);
        let due: Vec<String> = candidates
            .iter()
            .filter(|(id, mcc, created_at)| !skipped.contains(id) && *created_at + hold_lifetime(app, mcc) <= now)
            .map(|(id, _, _)| id.clone())
            .collect();
        skipped.extend(candidates.iter().filter(|(id, _, _)| !due.contains(id)).map(|(id, _, _)| id.clone()));
        if due.is_empty() {
            return Ok(expired);
        }
        for id in due {
            expire_hold(app, &id, now).await?;
            expired += 1;
        }
    }
}

/// Releases one authorization's hold; a used card left with nothing held and nothing captured closes.
async fn expire_hold(app: &App, authorization_id: &str, now: DateTime<Utc>) -> Result<(), LifecycleError> {
    let mut tx = app.store.begin().await?;
    let Some(mut authorization) = lifecycle::reverse(&mut tx, authorization_id, None, now).await? else {
        return Ok(());
    };
    expired(&mut authorization)?;
    authorizations::update_progress(&mut tx, &authorization).await?;
    if let Some(card_id) = &authorization.card_id
        && let Some(mut record) = cards::get_for_update(&mut tx, card_id).await?
    {
        let mut card = record.to_card()?;
        if card.status() == CardStatus::Used && card.held().is_zero() && card.captured().is_zero() {
            let transition = card.apply(CardEvent::Close(CloseReason::HoldExpiredWithoutCapture), now);
            let transition = transition.map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
            service::cards::release_unused(&mut tx, &mut record, card, Some(transition), None, now).await?;
        }
    }
    ghostcard_store::commit(tx).await?;
    Ok(())
}

async fn expire_cards(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let mut expired = 0;
    loop {
        let mut tx = app.store.read().await?;
        let due = cards::window_passed(&mut tx, now, SWEEP_BATCH).await?;
        drop(tx);
        if due.is_empty() {
            return Ok(expired);
        }
        for card_id in due {
            expire_card(app, &card_id, now).await?;
            expired += 1;
        }
    }
}

/// An unused card whose window passed expires: every hold it still has (micro-authorizations) is released, then
/// its whole amount.
async fn expire_card(app: &App, card_id: &str, now: DateTime<Utc>) -> Result<(), LifecycleError> {
    let mut tx = app.store.begin().await?;
    release_holds(&mut tx, card_id, true, now).await?;
    let Some(mut record) = cards::get_for_update(&mut tx, card_id).await? else { return Ok(()) };
    let mut card = record.to_card()?;
    if card.status() != CardStatus::Active {
        return Ok(());
    }
    let transition =
        card.apply(CardEvent::WindowPassed, now).map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
    service::cards::release_unused(&mut tx, &mut record, card, Some(transition), None, now).await?;
    ghostcard_store::commit(tx).await?;
    Ok(())
}

/// Releases every hold the card still has; with `expire`, each authorization is marked expired.
async fn release_holds(tx: &mut Tx, card_id: &str, expire: bool, now: DateTime<Utc>) -> Result<(), LifecycleError> {
    for authorization_id in authorizations::holding_for_card(tx, card_id).await? {
        if let (Some(mut authorization), true) = (lifecycle::reverse(tx, &authorization_id, None, now).await?, expire) {
            expired(&mut authorization)?;
            authorizations::update_progress(tx, &authorization).await?;
        }
    }
    Ok(())
}

/// Marks an authorization whose hold was just released as expired.
fn expired(authorization: &mut AuthorizationRecord) -> Result<(), LifecycleError> {
    let mut state = authorization.state();
    state.expire().map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
    authorization.set_state(&state);
    Ok(())
}

/// 14 days after a card's first capture: its open holds are released, its amount shrinks to what it captured,
/// and it closes; the plan keeps the captured total.
async fn adjust_cards(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let mut adjusted = 0;
    loop {
        let mut tx = app.store.read().await?;
        let due = cards::due_adjustment(&mut tx, now - Duration::days(ADJUSTMENT_DAYS), SWEEP_BATCH).await?;
        drop(tx);
        if due.is_empty() {
            return Ok(adjusted);
        }
        for card_id in due {
            adjust_card(app, &card_id, now).await?;
            adjusted += 1;
        }
    }
}

async fn adjust_card(app: &App, card_id: &str, now: DateTime<Utc>) -> Result<(), LifecycleError> {
    let mut tx = app.store.begin().await?;
    release_holds(&mut tx, card_id, false, now).await?;
    let Some(mut record) = cards::get_for_update(&mut tx, card_id).await? else { return Ok(()) };
    let mut card = record.to_card()?;
    if card.status() != CardStatus::Used {
        return Ok(());
    }
    let transition = card
        .apply(CardEvent::Close(CloseReason::UnusedRefunded), now)
        .map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
    service::cards::release_unused(&mut tx, &mut record, card, Some(transition), None, now).await?;
    if let Some(plan_id) = &record.plan_id
        && let Some(plan) = plans::get(&mut tx, plan_id).await?
    {
        crate::events::plan(&mut tx, "plan.adjusted", &plan, now).await?;
    }
    ghostcard_store::commit(tx).await?;
    Ok(())
}

async fn sweep_plans(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let mut swept = 0;
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut tx = app.store.read().await?;
        let due = plans::due(&mut tx, now, SWEEP_BATCH).await?;
        drop(tx);
        // A plan the sweep leaves due (its work is today's and pending) is not swept twice in one run.
        let fresh: Vec<String> = due.into_iter().filter(|id| seen.insert(id.clone())).collect();
        if fresh.is_empty() {
            return Ok(swept);
        }
        for plan_id in fresh {
            crate::plans::sweep(app, &plan_id, now).await?;
            swept += 1;
        }
    }
}

/// Pay now: each used card's funding card pays what the card spent (held + captured) — charged once the card is
/// used, and trued up by a charge or a refund whenever that changes. What is asked for is recorded at once, so a
/// movement is never asked for twice; the job moves the money.
async fn true_up_pay_now(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let mut trued = 0;
    loop {
        // Found with a read (a scan of pay-now cards must not hold the write lock), then written under it.
        let mut tx = app.store.read().await?;
        let candidates = cards::pay_now_untrued(&mut tx, SWEEP_BATCH).await?;
        drop(tx);
        if candidates.is_empty() {
            return Ok(trued);
        }
        let mut tx = app.store.begin().await?;
        let ids: Vec<String> = candidates.into_iter().map(|(card_id, ..)| card_id).collect();
        let due = cards::pay_now_untrued_among(&mut tx, &ids).await?;
        for (card_id, currency, spent, charged) in due {
            let delta = spent - charged;
            let movement = FundingMovement { card_id: card_id.clone(), amount: delta.abs(), currency, pay_now: true };
            let kind = if delta > 0 { queue::FUNDING_CHARGE } else { queue::FUNDING_REFUND };
            // Each movement is its own job (and gateway reference): the same difference can recur (a reversal, then
            // a new approval). What was asked for is recorded in the same transaction, so it is asked for once.
            let key = format!("pay_now:{card_id}:{}", crate::ids::new_id("move", now, &mut rand::rng()));
            queue::enqueue(&mut tx, kind, &key, &movement, now, now).await?;
            cards::add_funding_charged(&mut tx, &card_id, delta).await?;
            trued += 1;
        }
        ghostcard_store::commit(tx).await?;
    }
}

/// How old an event must be before it is dispatched: transactions commit in a different order than their
/// events' ids were made (several writers), and an endpoint's cursor must not pass an event still to commit.
/// Longer than any transaction that writes events (the authorization deadline is 2 s).
pub const DISPATCH_LAG: Duration = Duration::seconds(3);

/// Turns new events into one delivery job per endpoint that wants them, moving each endpoint's cursor.
async fn dispatch_events(app: &App, now: DateTime<Utc>) -> Result<u64, LifecycleError> {
    let mut tx = app.store.read().await?;
    let endpoints = webhooks::all(&mut tx).await?;
    drop(tx);
    let mut dispatched = 0;
    for endpoint in endpoints {
        loop {
            let mut tx = app.store.begin().await?;
            // Another process is dispatching this endpoint.
            let Some(endpoint) = webhooks::lock(&mut tx, &endpoint.id).await? else { break };
            let pending = events::after(&mut tx, &endpoint.cursor, now - DISPATCH_LAG, SWEEP_BATCH).await?;
            let Some(last) = pending.last() else { break };
            for event in pending.iter().filter(|event| endpoint.wants(&event.kind)) {
                let delivery =
                    crate::webhooks::Delivery { event_id: event.id.clone(), endpoint_id: endpoint.id.clone() };
                queue::enqueue(
                    &mut tx,
                    queue::WEBHOOK,
                    &format!("webhook:{}:{}", event.id, endpoint.id),
                    &delivery,
                    now,
                    now,
                )
                .await?;
                dispatched += 1;
            }
            webhooks::set_cursor(&mut tx, &endpoint.id, &last.id).await?;
            ghostcard_store::commit(tx).await?;
        }
    }
    Ok(dispatched)
}

/// Runs the job queue every second (and at once when woken), and everything else every `interval`, until the
/// process ends.
pub fn spawn_timer(app: std::sync::Arc<App>, interval: std::time::Duration) {
    tokio::spawn(async move {
        let mut last_sweep = std::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = app.wake_jobs.notified() => {}
            }
            let now = app.clock.now();
            let result = if last_sweep.elapsed() >= interval {
                last_sweep = std::time::Instant::now();
                run_due(&app, now).await.map(|_| ())
            } else {
                match dispatch_events(&app, now).await {
                    Ok(_) => runner::run_queue(&app, now).await.map(|_| ()).map_err(LifecycleError::from),
                    Err(error) => Err(error),
                }
            };
            if let Err(error) = result {
                tracing::error!(%error, "jobs failed; they run again at the next tick");
            }
        }
    });
}
