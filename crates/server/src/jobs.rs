//! Work that falls due with time, run in bounded sweeps: unused cards expire at the end of their window (and
//! release every hold), and authorization holds never captured are released after 7 days (31 for lodging, car
//! rental and cruise lines). Each item is handled in its own transaction and each sweep can run again: what is
//! done is no longer due.
//!
//! The server runs the sweeps on a timer; in sandbox mode `POST /v1/simulate/clock/advance` runs them at once for
//! the new time. Collections, late fees and the 14-day adjustment come with the job runner of a later change.

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::card::{CardEvent, CardStatus, CloseReason};
use ghostcard_domain::ledger::entries;
use ghostcard_store::authorizations;
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::{funding_sources, ledger};
use serde::Serialize;

use crate::App;
use crate::lifecycle::{self, LifecycleError};

/// Items handled per query; a sweep repeats until nothing more is due.
const SWEEP_BATCH: u32 = 500;

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobReport {
    pub cards_expired: u64,
    pub holds_expired: u64,
}

/// Runs everything due at `now`.
pub async fn run_due(app: &App, now: DateTime<Utc>) -> Result<JobReport, LifecycleError> {
    // Holds first, oldest first: a card whose only hold expires may then close.
    let holds_expired = expire_holds(app, now).await?;
    let report = JobReport { holds_expired, cards_expired: expire_cards(app, now).await? };
    if report != JobReport::default() {
        tracing::info!(cards_expired = report.cards_expired, holds_expired = report.holds_expired, "jobs ran");
    }
    Ok(report)
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
    authorization.status = "expired".to_owned();
    authorizations::update_progress(&mut tx, &authorization).await?;
    let mut release_funding = None;
    if let Some(card_id) = &authorization.card_id
        && let Some(mut record) = cards::get_for_update(&mut tx, card_id).await?
    {
        let mut card = record.to_card()?;
        if card.status() == CardStatus::Used && card.held().is_zero() && card.captured().is_zero() {
            let transition = card
                .apply(CardEvent::Close(CloseReason::HoldExpiredWithoutCapture), now)
                .map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
            let released = card.refund_unused().map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
            record.set_card(&card);
            cards::update(&mut tx, &mut record).await?;
            cards::record_transition(&mut tx, card_id, &transition).await?;
            ledger::commit(&mut tx, &entries::release_unused(card_id, released), now).await?;
            release_funding = Some(record);
        }
    }
    ghostcard_store::commit(tx).await?;
    if let Some(record) = release_funding {
        release_funding_hold(app, &record).await;
    }
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
    for authorization_id in authorizations::holding_for_card(&mut tx, card_id).await? {
        if let Some(mut authorization) = lifecycle::reverse(&mut tx, &authorization_id, None, now).await? {
            authorization.status = "expired".to_owned();
            authorizations::update_progress(&mut tx, &authorization).await?;
        }
    }
    let Some(mut record) = cards::get_for_update(&mut tx, card_id).await? else { return Ok(()) };
    let mut card = record.to_card()?;
    if card.status() != CardStatus::Active {
        return Ok(());
    }
    let transition =
        card.apply(CardEvent::WindowPassed, now).map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
    let released = card.refund_unused().map_err(|error| LifecycleError::Inconsistent(error.to_string()))?;
    record.set_card(&card);
    cards::update(&mut tx, &mut record).await?;
    cards::record_transition(&mut tx, card_id, &transition).await?;
    ledger::commit(&mut tx, &entries::release_unused(card_id, released), now).await?;
    ghostcard_store::commit(tx).await?;
    release_funding_hold(app, &record).await;
    Ok(())
}

/// Gives back the funding hold of a card that will take no money. A failure is logged: the gateway's hold lapses
/// on its own.
pub async fn release_funding_hold(app: &App, record: &CardRecord) {
    let Some(hold) = &record.funding_hold_id else { return };
    let source = async {
        let mut tx = app.store.read().await?;
        funding_sources::get(&mut tx, &record.funding_source_id).await
    };
    match source.await {
        Ok(Some(source)) => {
            if let Err(error) = app.gateway.release(&source.gateway_token, hold).await {
                tracing::warn!(%error, card = %record.id, "could not release the funding hold");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, card = %record.id, "could not read the funding source"),
    }
}

/// Runs the sweeps every `interval` until the process ends.
pub fn spawn_timer(app: std::sync::Arc<App>, interval: std::time::Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(error) = run_due(&app, app.clock.now()).await {
                tracing::error!(%error, "jobs failed; they run again at the next tick");
            }
        }
    });
}
