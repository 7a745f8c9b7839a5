//! A card's changes after it is issued: cancel an unused card, refund its unused amount (cardholders), unfreeze or
//! close it (operators), and `release_unused`, the one way a card ends (also for the lifecycle jobs).

use chrono::{DateTime, Utc};
use ghostcard_domain::card::{Card, CardEvent, CardStatus, CloseReason, Transition};
use ghostcard_domain::controls::SpendingControls;
use ghostcard_domain::ledger::entries;
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::ledger::CommitError;
use ghostcard_store::{StoreError, Tx, ledger};

use super::Actor;
use crate::ids::has_prefix;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("no card {0}")]
    NotFound(String),
    #[error("only an unused card inside its 24-hour window can be canceled")]
    NotCancelable,
    #[error("a {0} card has no unused amount")]
    NotRefundable(CardStatus),
    #[error("a {0} card cannot be paused or resumed")]
    NotPausable(CardStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ledger: {0}")]
    Ledger(#[from] CommitError),
    /// The card's state does not allow the change.
    #[error("{0}")]
    NotAllowed(String),
    /// The stored card refuses a change its own state allowed: a bug, nothing is written.
    #[error("stored card is inconsistent: {0}")]
    Inconsistent(String),
}

/// The card `id`, locked for the change.
pub async fn load_for_update(tx: &mut Tx, id: &str) -> Result<CardRecord, CardError> {
    if !has_prefix(id, "card") {
        return Err(CardError::NotFound(id.to_owned()));
    }
    cards::get_for_update(tx, id).await?.ok_or_else(|| CardError::NotFound(id.to_owned()))
}

/// Cancels an unused card inside its window: its amount and every hold are released.
pub async fn cancel(tx: &mut Tx, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<CardRecord, CardError> {
    let mut record = load_for_update(tx, id).await?;
    let mut card = record.to_card()?;
    let transition = card.apply(CardEvent::Cancel, now).map_err(|_| CardError::NotCancelable)?;
    release_unused(tx, &mut record, card, Some(transition), Some((actor, "card.cancel")), now).await?;
    Ok(record)
}

/// Refunds the card's unused amount: its amount becomes what is held and captured. An unused card ends as a
/// cancellation does (or expires, past its window); a used card with nothing held is closed.
pub async fn refund_unused(tx: &mut Tx, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<CardRecord, CardError> {
    let mut record = load_for_update(tx, id).await?;
    let mut card = record.to_card()?;
    let event = match card.status() {
        CardStatus::Active if !card.window_open(now) => Some(CardEvent::WindowPassed),
        // An unused card has nothing to keep: refunding its amount ends it, as canceling does.
        CardStatus::Active if card.held().is_zero() => Some(CardEvent::Cancel),
        CardStatus::Used if card.held().is_zero() => Some(CardEvent::Close(CloseReason::UnusedRefunded)),
        CardStatus::Active | CardStatus::Used | CardStatus::Frozen => None,
        status @ (CardStatus::Expired | CardStatus::Canceled | CardStatus::Closed) => {
            return Err(CardError::NotRefundable(status));
        }
    };
    let transition = event
        .map(|event| card.apply(event, now))
        .transpose()
        .map_err(|error| CardError::Inconsistent(error.to_string()))?;
    release_unused(tx, &mut record, card, transition, Some((actor, "card.refund_unused")), now).await?;
    Ok(record)
}

/// Pauses the card (`true`) or resumes it (`false`): a paused card declines purchases and verifications
/// `card_paused`; everything else (captures, reversals, refunds, advices, its 24-hour window) goes on. Pausing a
/// paused card or resuming one that is not paused changes nothing. Only an active or used card can be paused or
/// resumed (frozen, closed, canceled and expired cards: [`CardError::NotPausable`]).
pub async fn set_paused(
    tx: &mut Tx,
    id: &str,
    paused: bool,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<CardRecord, CardError> {
    let mut record = load_for_update(tx, id).await?;
    let card = record.to_card()?;
    if !card.pausable(now) {
        return Err(CardError::NotPausable(card.status_at(now)));
    }
    if record.paused == paused {
        return Ok(record);
    }
    record.paused = paused;
    cards::update(tx, &mut record).await?;
    let (action, event) = if paused { ("card.pause", "card.paused") } else { ("card.resume", "card.resumed") };
    audit::append(tx, &audit_entry(actor, action, &record.id, now)).await?;
    crate::events::card(tx, event, &record, now).await?;
    Ok(record)
}

/// Replaces the card's spending controls (empty lists: none), on a card in any state.
pub async fn set_spending_controls(
    tx: &mut Tx,
    id: &str,
    controls: SpendingControls,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<CardRecord, CardError> {
    let mut record = load_for_update(tx, id).await?;
    if record.spending_controls == controls {
        return Ok(record);
    }
    record.spending_controls = controls;
    cards::update(tx, &mut record).await?;
    audit::append(tx, &audit_entry(actor, "card.spending_controls", &record.id, now)).await?;
    crate::events::card(tx, "card.updated", &record, now).await?;
    Ok(record)
}

/// What an operator may do to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorChange {
    /// A frozen card returns to the state it was frozen in.
    Unfreeze,
    /// The card spends nothing more: what it did not spend goes back, and open holds stay until they resolve on
    /// their own.
    Close,
}

/// An operator's change of a card, audited as `ops.card.unfreeze` or `ops.card.close`.
pub async fn operator_change(
    tx: &mut Tx,
    id: &str,
    change: OperatorChange,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<CardRecord, CardError> {
    let mut record = load_for_update(tx, id).await?;
    let mut card = record.to_card()?;
    let (event, action) = match change {
        OperatorChange::Unfreeze => (CardEvent::Unfreeze, "ops.card.unfreeze"),
        OperatorChange::Close => (CardEvent::Close(CloseReason::Operator), "ops.card.close"),
    };
    let transition = card.apply(event, now).map_err(|error| CardError::NotAllowed(error.to_string()))?;
    match change {
        OperatorChange::Close => {
            release_unused(tx, &mut record, card, Some(transition), Some((actor, action)), now).await?
        }
        OperatorChange::Unfreeze => {
            cards::save(tx, &mut record, &card, Some(&transition)).await?;
            audit::append(tx, &audit_entry(actor, action, &record.id, now)).await?;
        }
    }
    Ok(record)
}

/// Writes the card (changed by `transition`, if any) with its unused amount released: the row, the transition, the
/// ledger entries, the audit entry of the `actor`'s action (the jobs act unaudited), the release of the funding
/// hold once the card can take no more money, and the event of its new state. Cardholders, operators and the
/// lifecycle jobs end cards through this one function.
pub async fn release_unused(
    tx: &mut Tx,
    record: &mut CardRecord,
    mut card: Card,
    transition: Option<Transition>,
    audited: Option<(&Actor, &str)>,
    now: DateTime<Utc>,
) -> Result<(), CardError> {
    let released = card.refund_unused().map_err(|error| CardError::Inconsistent(error.to_string()))?;
    cards::save(tx, record, &card, transition.as_ref()).await?;
    ledger::commit(tx, &entries::release_unused(&record.id, released), now).await?;
    if let Some((actor, action)) = audited {
        audit::append(tx, &audit_entry(actor, action, &record.id, now)).await?;
    }
    let status = card.status();
    if matches!(status, CardStatus::Canceled | CardStatus::Expired | CardStatus::Closed) {
        enqueue_release(tx, record, now).await?;
    }
    match status {
        CardStatus::Canceled => crate::events::card(tx, "card.canceled", record, now).await?,
        CardStatus::Expired => crate::events::card(tx, "card.expired", record, now).await?,
        _ => {}
    }
    Ok(())
}

/// Enqueues the release of the card's funding hold (placed at creation), in the caller's transaction: the card
/// will take no more money. Once per card.
async fn enqueue_release(
    tx: &mut Tx,
    record: &CardRecord,
    now: DateTime<Utc>,
) -> Result<(), ghostcard_store::StoreError> {
    let Some(hold) = &record.funding_hold_id else { return Ok(()) };
    let release = crate::queue::Release {
        card_id: record.id.clone(),
        funding_source_id: record.funding_source_id.clone(),
        hold_id: hold.clone(),
    };
    crate::queue::enqueue(tx, crate::queue::FUNDING_RELEASE, &format!("release:{}", record.id), &release, now, now)
        .await?;
    Ok(())
}

/// The audit entry of an action on a card.
pub fn audit_entry(actor: &Actor, action: &str, card_id: &str, now: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: actor.name.clone(),
        action: action.to_owned(),
        resource: Some(card_id.to_owned()),
        outcome: "success".to_owned(),
        origin: actor.origin.clone(),
        detail: None,
    }
}
