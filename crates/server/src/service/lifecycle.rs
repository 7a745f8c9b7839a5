//! What happens to an authorization after its decision: clearing captures it (creating the card's plan with the
//! first capture, in the same transaction), reversals release it, merchant refunds flow back into the plan or to
//! the funding card. Each function works inside the caller's transaction, so the sandbox endpoints and, later,
//! the network listener and the clearing import share them.

use chrono::{DateTime, Utc};
use ghostcard_domain::authorization::{AuthorizationError, AuthorizationStatus};
use ghostcard_domain::card::{Card, CardEvent, CardStatus, CloseReason, Transition};
use ghostcard_domain::ledger::{TransferId, entries};
use ghostcard_domain::money::Money;
use ghostcard_domain::plan::{Plan, PlanKind};
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::clearings::{self, ClearingRecord};
use ghostcard_store::ledger::{self, CommitError};
use ghostcard_store::plans::{self, PlanRecord};
use ghostcard_store::{StoreError, Tx};

use crate::App;
use crate::ids::new_id;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ledger: {0}")]
    Ledger(#[from] CommitError),
    #[error("{0}")]
    Inconsistent(String),
    #[error("authorization {0} was declined; there is nothing to reverse or capture")]
    Declined(String),
    #[error(transparent)]
    Card(#[from] crate::service::cards::CardError),
}

fn inconsistent(error: impl std::fmt::Display) -> LifecycleError {
    LifecycleError::Inconsistent(error.to_string())
}

/// The authorization's state machine refused a change.
fn refused(authorization_id: &str, error: AuthorizationError) -> LifecycleError {
    match error {
        AuthorizationError::Declined => LifecycleError::Declined(authorization_id.to_owned()),
        AuthorizationError::NotPositive => inconsistent(error),
    }
}

/// The result of one clearing record, as docs/reference/rest.md reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ClearingResult {
    /// The record's own id.
    pub id: String,
    /// `posted`, `duplicate`, `unmatched` or `rejected`.
    pub result: String,
    pub clearing_id: Option<String>,
    /// Review flags: `above_hold`, `force_post`.
    pub flags: Vec<String>,
    /// The card's plan after posting, if it has one.
    pub plan_id: Option<String>,
}

/// A record seen before: its earlier result, unchanged.
async fn duplicate(tx: &mut Tx, record_id: &str) -> Result<Option<ClearingResult>, LifecycleError> {
    Ok(clearings::find_by_record_id(tx, record_id).await?.map(|earlier| ClearingResult {
        id: record_id.to_owned(),
        result: "duplicate".to_owned(),
        clearing_id: Some(earlier.id),
        flags: earlier.flags.split(',').filter(|flag| !flag.is_empty()).map(str::to_owned).collect(),
        plan_id: None,
    }))
}

/// Posts a capture of `amount` against the authorization. The card's plan is created by its first capture.
pub async fn capture(
    app: &App,
    tx: &mut Tx,
    authorization_id: &str,
    amount: Money,
    record_id: &str,
    now: DateTime<Utc>,
) -> Result<ClearingResult, LifecycleError> {
    if let Some(earlier) = duplicate(tx, record_id).await? {
        return Ok(earlier);
    }
    let mut clearing = new_clearing("capture", record_id, None, amount, "unmatched", now);
    let Some(mut authorization) = authorizations::get(tx, authorization_id).await? else {
        clearings::insert(tx, &clearing).await?;
        return Ok(result(&clearing, None));
    };
    clearing.authorization_id = Some(authorization.id.clone());
    clearing.card_id = authorization.card_id.clone();
    let card_id = authorization.card_id.clone();
    let (Some(card_id), false) = (card_id, authorization.status == AuthorizationStatus::Declined) else {
        clearing.result = "rejected".to_owned();
        clearings::insert(tx, &clearing).await?;
        return Ok(result(&clearing, None));
    };
    let mut record = match card_to_post_to(tx, &card_id, &clearing, amount).await? {
        Ok(record) => record,
        Err(rejected) => return Ok(rejected),
    };
    let hold = authorization
        .hold_transfer_id
        .filter(|_| authorization.held > 0)
        .map(|id| (TransferId(id as u64), Money::new(authorization.held, amount.currency())));
    let flag = (amount.minor() > authorization.held).then_some("above_hold");
    let mut state = authorization.state();
    let from_hold = state.capture(amount.minor()).map_err(|error| refused(&authorization.id, error))?;
    let (posted, reheld) = post_purchase(app, tx, &mut record, hold, amount, clearing, flag, now).await?;
    if from_hold > 0 {
        authorization.hold_transfer_id = reheld.map(|id| id.0 as i64);
    }
    authorization.set_state(&state);
    authorizations::update_progress(tx, &authorization).await?;
    Ok(posted)
}

/// Posts a purchase that has no authorization (a force post): it posts in full and is flagged for review.
pub async fn force_post(
    app: &App,
    tx: &mut Tx,
    card_id: &str,
    amount: Money,
    record_id: &str,
    now: DateTime<Utc>,
) -> Result<ClearingResult, LifecycleError> {
    let (mut record, clearing) = match to_card("force_post", tx, card_id, amount, record_id, now).await? {
        Posting::To(posting) => *posting,
        Posting::Answered(answer) => return Ok(answer),
    };
    Ok(post_purchase(app, tx, &mut record, None, amount, clearing, Some("force_post"), now).await?.0)
}

/// Posts a purchase of `amount` on the card, taking what it can from the pending `hold`: the card's amounts, the
/// ledger, the card's plan (created by its first purchase), and the clearing record with its review `flag`.
/// Returns the result and the hold that now carries the rest, if any.
#[allow(clippy::too_many_arguments)]
async fn post_purchase(
    app: &App,
    tx: &mut Tx,
    record: &mut CardRecord,
    hold: Option<(TransferId, Money)>,
    amount: Money,
    mut clearing: ClearingRecord,
    flag: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(ClearingResult, Option<TransferId>), LifecycleError> {
    let from_hold = hold.map_or(0, |(_, held)| held.minor().min(amount.minor()));
    let mut card = record.to_card()?;
    card.capture(amount, Money::new(from_hold, amount.currency())).map_err(inconsistent)?;
    let committed = ledger::commit(tx, &entries::capture(&record.id, hold, amount), now).await?;
    let reheld = if from_hold > 0 { committed[0].reheld } else { None };
    let plan_id = add_to_plan(app, tx, record, amount, now).await?;
    let settled = close_if_settled(&mut card, now)?;
    cards::save(tx, record, &card, settled.as_ref()).await?;
    clearing.result = "posted".to_owned();
    clearing.flags = flag.unwrap_or_default().to_owned();
    clearings::insert(tx, &clearing).await?;
    let posted = result(&clearing, Some(plan_id));
    crate::events::emit(tx, "clearing.posted", &posted, now).await?;
    Ok((posted, reheld))
}

/// Creates the card's plan on its first capture, or adds a later capture to it. Returns the plan id.
async fn add_to_plan(
    app: &App,
    tx: &mut Tx,
    card: &mut CardRecord,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<String, LifecycleError> {
    let today = app.today(now);
    match &card.plan_id {
        None => {
            let plan = Plan::new(card.plan_kind, amount, today, &app.plan_terms).map_err(inconsistent)?;
            let record = PlanRecord {
                id: new_id("plan", now, &mut rand::rng()),
                card_id: card.id.clone(),
                cardholder_id: card.cardholder_id.clone(),
                plan,
                created_at: now,
                updated_at: now,
                next_run_at: None,
                version: 0,
            };
            let mut record = record;
            crate::plans::schedule_new(app, &mut record, now);
            plans::insert(tx, &record).await?;
            crate::events::plan(tx, "plan.created", &record, now).await?;
            card.plan_id = Some(record.id.clone());
            Ok(record.id)
        }
        Some(plan_id) => {
            let mut record = plans::get(tx, plan_id).await?.ok_or_else(|| inconsistent("card names a missing plan"))?;
            record.plan.add_principal(amount.minor(), today).map_err(inconsistent)?;
            crate::plans::save(app, tx, &mut record, now).await?;
            crate::events::plan(tx, "plan.adjusted", &record, now).await?;
            Ok(record.id)
        }
    }
}

/// A used card (its capture has just given it a plan) with nothing held and nothing left to spend is done: it
/// closes.
fn close_if_settled(card: &mut Card, now: DateTime<Utc>) -> Result<Option<Transition>, LifecycleError> {
    if card.status() == CardStatus::Used && card.held().is_zero() && card.remaining().minor() <= 0 {
        return card.apply(CardEvent::Close(CloseReason::Settled), now).map(Some).map_err(inconsistent);
    }
    Ok(None)
}

/// Releases `amount` (default: all that is held) of an authorization. Releasing what is already released changes
/// nothing. A full reversal of a card's only use, inside its window, makes the card usable again.
pub async fn reverse(
    tx: &mut Tx,
    authorization_id: &str,
    amount: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Option<AuthorizationRecord>, LifecycleError> {
    let Some(mut authorization) = authorizations::get(tx, authorization_id).await? else { return Ok(None) };
    let mut state = authorization.state();
    let release = state.reverse(amount).map_err(|error| refused(&authorization.id, error))?;
    let (Some(card_id), true) = (authorization.card_id.clone(), release > 0) else { return Ok(Some(authorization)) };
    let mut record =
        cards::get_for_update(tx, &card_id).await?.ok_or_else(|| inconsistent("authorization without its card"))?;
    let mut card = record.to_card()?;
    let currency = card.currency();
    card.release(Money::new(release, currency)).map_err(inconsistent)?;
    let hold =
        TransferId(authorization.hold_transfer_id.ok_or_else(|| inconsistent("held amount without a hold"))? as u64);
    let mut steps = vec![entries::void(hold, "reversal")];
    if state.held() > 0 {
        steps.push(entries::hold(&card_id, Money::new(state.held(), currency)));
    }
    let committed = ledger::commit(tx, &steps, now).await?;
    authorization.hold_transfer_id = committed.get(1).map(|step| step.transfer.0 as i64);
    authorization.set_state(&state);
    authorizations::update_progress(tx, &authorization).await?;
    let transition = if card.status() == CardStatus::Used
        && card.held().is_zero()
        && card.captured().is_zero()
        && card.window_open(now)
    {
        Some(card.apply(CardEvent::FirstUseReversed, now).map_err(inconsistent)?)
    } else {
        None
    };
    cards::save(tx, &mut record, &card, transition.as_ref()).await?;
    let view = crate::views::authorization(tx, &authorization).await?;
    crate::events::emit(tx, "authorization.reversed", &view, now).await?;
    Ok(Some(authorization))
}

/// A merchant refund of `amount` on the card, on any card state: it pays what is overdue on the plan, lowers the
/// installments to come, and what exceeds the plan's balance is owed back to the funding card.
pub async fn merchant_refund(
    app: &App,
    tx: &mut Tx,
    card_id: &str,
    amount: Money,
    record_id: &str,
    now: DateTime<Utc>,
) -> Result<ClearingResult, LifecycleError> {
    let (mut record, clearing) = match to_card("refund", tx, card_id, amount, record_id, now).await? {
        Posting::To(posting) => *posting,
        Posting::Answered(answer) => return Ok(answer),
    };
    let mut card = record.to_card()?;
    let restored = card.refund(amount).map_err(inconsistent)?;
    let (to_plan, interest_paid, excess) = match &record.plan_id {
        // Pay now: the refund lowers what the card spent, and the pay-now true-up refunds the funding card.
        Some(_) if record.plan_kind == PlanKind::PayNow => (amount.minor(), 0, 0),
        Some(plan_id) => {
            let mut plan = plans::get(tx, plan_id).await?.ok_or_else(|| inconsistent("card names a missing plan"))?;
            let application = plan.plan.apply_refund(amount.minor(), app.today(now)).map_err(inconsistent)?;
            crate::plans::save(app, tx, &mut plan, now).await?;
            crate::events::plan(tx, "plan.adjusted", &plan, now).await?;
            (application.to_overdue + application.to_future, application.interest_paid, application.excess)
        }
        None => (0, 0, amount.minor()),
    };
    if excess > 0 {
        let movement = crate::queue::FundingMovement {
            card_id: card_id.to_owned(),
            amount: excess,
            currency: amount.currency().code().to_owned(),
            pay_now: false,
        };
        crate::queue::enqueue(tx, crate::queue::FUNDING_REFUND, &format!("refund:{record_id}"), &movement, now, now)
            .await?;
    }
    let currency = amount.currency();
    // Interest is booked to the receivable when it is paid, here by the refund.
    let mut steps = entries::interest(card_id, Money::new(interest_paid, currency));
    steps.extend(entries::merchant_refund(
        card_id,
        Money::new(to_plan, currency),
        Money::new(excess, currency),
        restored,
    ));
    // A card that can no longer spend does not get its limit back: what the refund restored is released again.
    if !matches!(card.status(), CardStatus::Active | CardStatus::Used) {
        steps.extend(entries::release_unused(card_id, card.refund_unused().map_err(inconsistent)?));
    }
    ledger::commit(tx, &steps, now).await?;
    cards::save(tx, &mut record, &card, None).await?;
    clearings::insert(tx, &clearing).await?;
    let posted = result(&clearing, record.plan_id.clone());
    crate::events::emit(tx, "refund.posted", &posted, now).await?;
    Ok(posted)
}

/// Where a clearing record of `kind` straight to a card (a force post, a refund) stands before it posts.
enum Posting {
    /// A repeat of an earlier record, or a record in another currency than the card's (stored as `rejected`).
    Answered(ClearingResult),
    /// The card, locked for the change, and the record to post.
    To(Box<(CardRecord, ClearingRecord)>),
}

async fn to_card(
    kind: &str,
    tx: &mut Tx,
    card_id: &str,
    amount: Money,
    record_id: &str,
    now: DateTime<Utc>,
) -> Result<Posting, LifecycleError> {
    if let Some(earlier) = duplicate(tx, record_id).await? {
        return Ok(Posting::Answered(earlier));
    }
    let clearing = new_clearing(kind, record_id, Some(card_id), amount, "posted", now);
    Ok(match card_to_post_to(tx, card_id, &clearing, amount).await? {
        Ok(record) => Posting::To(Box::new((record, clearing))),
        Err(rejected) => Posting::Answered(rejected),
    })
}

/// The card a clearing record posts to, locked for the change; a record in another currency than the card's is
/// stored as `rejected`, and its result is the answer (`Err`).
async fn card_to_post_to(
    tx: &mut Tx,
    card_id: &str,
    clearing: &ClearingRecord,
    amount: Money,
) -> Result<Result<CardRecord, ClearingResult>, LifecycleError> {
    let record =
        cards::get_for_update(tx, card_id).await?.ok_or_else(|| inconsistent("a clearing for a missing card"))?;
    if amount.currency() != record.currency {
        let rejected = ClearingRecord { result: "rejected".to_owned(), ..clearing.clone() };
        clearings::insert(tx, &rejected).await?;
        return Ok(Err(result(&rejected, None)));
    }
    Ok(Ok(record))
}

fn new_clearing(
    kind: &str,
    record_id: &str,
    card_id: Option<&str>,
    amount: Money,
    result: &str,
    now: DateTime<Utc>,
) -> ClearingRecord {
    ClearingRecord {
        id: new_id("clr", now, &mut rand::rng()),
        record_id: record_id.to_owned(),
        kind: kind.to_owned(),
        authorization_id: None,
        card_id: card_id.map(str::to_owned),
        amount: amount.minor(),
        currency: amount.currency().code().to_owned(),
        result: result.to_owned(),
        flags: String::new(),
        created_at: now,
    }
}

fn result(clearing: &ClearingRecord, plan_id: Option<String>) -> ClearingResult {
    ClearingResult {
        id: clearing.record_id.clone(),
        result: clearing.result.clone(),
        clearing_id: Some(clearing.id.clone()),
        flags: clearing.flags.split(',').filter(|flag| !flag.is_empty()).map(str::to_owned).collect(),
        plan_id,
    }
}
