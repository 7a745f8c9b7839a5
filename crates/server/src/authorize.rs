//! The authorization operation: one request, decided by the domain and made durable with everything it
//! changes (card state, hold, ledger transfer, authorization record, fraud freezes) in one transaction.
//!
//! Both the sandbox endpoint and, later, the ISO 8583 listener call [`authorize`]; the rules are the domain's.

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::card::{Card, CardEvent, CardStatus, Transition};
use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::decision::{
    AuthorizationKind, AuthorizationRequest, CardholderStanding, CvvCheck, Decision, DecisionInput, DeclineReason,
    InvalidRequest, Outcome, decide,
};
use ghostcard_domain::fraud::FraudAction;
use ghostcard_domain::ledger::entries;
use ghostcard_domain::money::Money;
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::ledger::CommitError;
use ghostcard_store::{StoreError, Tx, cardholders, ledger, plans, reversals};
use rand::RngExt;

use crate::ids::new_id;
use crate::{App, lifecycle};

/// How the card is named.
#[derive(Debug, Clone)]
pub enum CardLookup {
    /// By id (the sandbox).
    Id(String),
    /// By number (the network), found through its keyed hash.
    Number(CardNumber),
    /// Digits that are not a card number (wrong length or check digit): no card, recorded by this keyed hash.
    Unknown(Vec<u8>),
}

/// The CVV2 part of a request.
#[derive(Debug, Clone)]
pub enum CvvInput {
    /// The sandbox: "as if the network sent the correct CVV2".
    AssumeCorrect,
    Received(String),
    Absent,
}

/// Descriptive fields that are recorded but do not change the decision.
#[derive(Debug, Clone, Default)]
pub struct Descriptors {
    pub merchant_name: Option<String>,
    pub merchant_city: Option<String>,
    pub stan: Option<String>,
    pub rrn: Option<String>,
    pub transmission_time: Option<String>,
}

/// What an approval does besides holding: a 0200 financial request captures at once (a purchase) or moves the
/// refund at once (a credit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Settlement {
    #[default]
    HoldOnly,
    Immediate,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// Another request with the same network key (field 32 + 11 + 7) was recorded first.
    #[error("a request with this network key was already recorded")]
    Duplicate,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error("ledger: {0}")]
    Ledger(#[from] CommitError),
    #[error("stored card is inconsistent: {0}")]
    Card(String),
}

/// Decides `request` for the card and commits the result.
pub async fn authorize(
    app: &App,
    lookup: CardLookup,
    request: AuthorizationRequest,
    cvv: CvvInput,
    descriptors: Descriptors,
    settlement: Settlement,
) -> Result<(AuthorizationRecord, Decision), AuthorizeError> {
    let now = app.clock.now();
    let number_hash = match &lookup {
        CardLookup::Number(number) => Some(app.vault.number_hash(number)),
        CardLookup::Unknown(hash) => Some(hash.clone()),
        CardLookup::Id(_) => None,
    };
    let mut tx = app.store.begin().await?;
    let (record, number) = match &lookup {
        CardLookup::Id(id) => {
            cards::lock_cardholder_of_card(&mut tx, id).await?;
            (cards::get_for_update(&mut tx, id).await?, None)
        }
        CardLookup::Number(number) => {
            let hash = number_hash.as_deref().unwrap_or_default();
            cards::lock_cardholders_of(&mut tx, &[hash.to_vec()]).await?;
            (cards::find_by_number_hash(&mut tx, hash).await?, Some(number))
        }
        CardLookup::Unknown(_) => (None, None),
    };
    let card = record.as_ref().map(CardRecord::to_card).transpose()?;
    let cvv_check = match (&record, &card) {
        (Some(record), Some(card)) => check_cvv(app, record, card, number, &cvv)?,
        _ => CvvCheck::Absent,
    };
    let (standing, approvals) = match &record {
        Some(record) => {
            let cardholder = cardholders::get(&mut tx, &record.cardholder_id).await?;
            let today = app.today(now);
            let overdue = plans::active_for_cardholder(&mut tx, &record.cardholder_id)
                .await?
                .iter()
                .any(|plan| plan.plan.has_arrears(today));
            let standing = CardholderStanding {
                restricted: cardholder.as_ref().is_some_and(|cardholder| cardholder.status == "restricted"),
                overdue,
            };
            let window = longest(app.rules.fraud.authorization.iter().map(|limit| limit.window_seconds));
            (standing, authorizations::approval_times(&mut tx, &record.cardholder_id, now - window).await?)
        }
        None => (CardholderStanding::default(), Vec::new()),
    };
    let reversed_before = match (&descriptors.stan, &descriptors.transmission_time) {
        (Some(stan), Some(transmission)) => {
            reversals::reversed_before_arrival(&mut tx, &request.merchant.acquirer_id, stan, transmission).await?
        }
        _ => false,
    };
    let decision = if reversed_before {
        reversed_before_arrival()
    } else {
        decide(&DecisionInput {
            request: &request,
            card: card.as_ref(),
            cvv: cvv_check,
            standing,
            cardholder_approvals: &approvals,
            rules: &app.rules,
            now,
        })
    };

    let mut authorization = new_record(&decision, &request, &descriptors, record.as_ref(), number_hash, now);

    if let (Some(mut record), Some(mut card)) = (record, card) {
        if decision.is_approved() {
            let (hold, transition) = apply_approval(&mut card, &mut record, &decision, &request, &descriptors, now)?;
            if let Some(hold) = hold {
                let committed = ledger::commit(&mut tx, &[entries::hold(&record.id, hold)], now).await?;
                authorization.hold_transfer_id = Some(committed[0].transfer.0 as i64);
                authorization.held = hold.minor();
            }
            if let Some(transition) = &transition {
                cards::record_transition(&mut tx, &record.id, transition).await?;
            }
            cards::update(&mut tx, &mut record).await?;
            if transition.is_some_and(|transition| transition.to == CardStatus::Used) {
                ghostcard_store::events::insert_many(&mut tx, &[crate::events::thin("card.used", &record.id, now)])
                    .await?;
            }
        }
        if let Some(reason) = decision.decline_reason() {
            // Counted before this decline is inserted: the rules count it as "this one".
            freeze_after_decline(app, &mut tx, &record, reason.code() == "cvv_mismatch", now).await?;
        }
        insert(&mut tx, &authorization).await?;
        if settlement == Settlement::Immediate && decision.is_approved() {
            let amount = ghostcard_domain::money::Money::new(request.amount_minor, record.currency()?);
            let record_id = format!("financial:{}", authorization.id);
            if decision.kind == AuthorizationKind::Refund {
                lifecycle::merchant_refund(app, &mut tx, &record.id, amount, &record_id, now).await?;
            } else if amount.is_positive() {
                lifecycle::capture(app, &mut tx, &authorization.id, amount, &record_id, now).await?;
            }
        }
    } else {
        insert(&mut tx, &authorization).await?;
    }
    ghostcard_store::events::insert_many(&mut tx, &[crate::events::authorization(&authorization, now)]).await?;
    ghostcard_store::commit(tx).await?;
    app.metrics.observe_authorization(decision.response_code);
    tracing::info!(
        authorization = %authorization.id,
        card = authorization.card_id.as_deref().unwrap_or("unknown"),
        response_code = decision.response_code,
        rule = %decision.rule,
        "authorization decided"
    );
    Ok((authorization, decision))
}

/// The CVV2 check of a request for a card: recomputed with the card's CVK from the number (decrypted when the
/// request named the card by id).
pub(crate) fn check_cvv(
    app: &App,
    record: &CardRecord,
    card: &Card,
    number: Option<&CardNumber>,
    cvv: &CvvInput,
) -> Result<CvvCheck, AuthorizeError> {
    let received = match cvv {
        CvvInput::Absent => return Ok(CvvCheck::Absent),
        CvvInput::AssumeCorrect => return Ok(CvvCheck::Match),
        CvvInput::Received(received) => received,
    };
    let decrypted;
    let number = match number {
        Some(number) => number,
        None => {
            decrypted = app
                .vault
                .decrypt_number(&record.id, record.data_key_version, &record.number_ciphertext)
                .map_err(|error| AuthorizeError::Card(error.to_string()))?;
            &decrypted
        }
    };
    let cvk = app.vault.cvk(record.cvk_version).map_err(|error| AuthorizeError::Card(error.to_string()))?;
    Ok(if cvk.verify_cvv2(number, card.expiry(), received) { CvvCheck::Match } else { CvvCheck::Mismatch })
}

/// The decision for an original whose reversal came first: the purchase was called off before we saw it.
pub(crate) fn reversed_before_arrival() -> Decision {
    let reason = DeclineReason::InvalidRequest(InvalidRequest::Other);
    Decision {
        kind: AuthorizationKind::Purchase,
        response_code: reason.response_code(),
        outcome: Outcome::Declined(reason),
        rule: "reversed_before_arrival".to_owned(),
        cvv_result: None,
        first_use: false,
        flag: None,
    }
}

/// The authorization row for a decision (its hold is filled in when written).
pub(crate) fn new_record(
    decision: &Decision,
    request: &AuthorizationRequest,
    descriptors: &Descriptors,
    card: Option<&CardRecord>,
    number_hash: Option<Vec<u8>>,
    now: DateTime<Utc>,
) -> AuthorizationRecord {
    AuthorizationRecord {
        id: new_id("auth", now, &mut rand::rng()),
        card_id: card.map(|record| record.id.clone()),
        cardholder_id: card.map(|record| record.cardholder_id.clone()),
        kind: decision.kind.as_str().to_owned(),
        amount: request.amount_minor,
        currency: ghostcard_domain::money::Currency::from_numeric(request.currency_numeric)
            .map_or_else(|_| format!("{:03}", request.currency_numeric), |currency| currency.code().to_owned()),
        status: if decision.is_approved() { "approved" } else { "declined" }.to_owned(),
        response_code: decision.response_code.to_owned(),
        decline_reason: decision.decline_reason().map(|reason| reason.code().to_owned()),
        rule: decision.rule.clone(),
        cvv_result: decision.cvv_result.map(|result| result.code().to_owned()),
        flag: decision.flag.as_ref().map(|reason| reason.code().to_owned()),
        acquirer_id: request.merchant.acquirer_id.clone(),
        merchant_id: request.merchant.merchant_id.clone(),
        merchant_name: descriptors.merchant_name.clone(),
        merchant_city: descriptors.merchant_city.clone(),
        merchant_country: request.country.map(|country| country.as_str().to_owned()),
        mcc: request.mcc.to_string(),
        stan: descriptors.stan.clone(),
        rrn: descriptors.rrn.clone(),
        auth_code: decision.is_approved().then(authorization_code),
        transmission_time: descriptors.transmission_time.clone(),
        hold_transfer_id: None,
        held: 0,
        captured: 0,
        number_hash,
        stand_in: false,
        created_at: now,
    }
}

/// Applies an approval to the card in memory: the hold (forced for an advice past a check) and, for a first use,
/// the binding to the merchant. Returns the amount to hold in the ledger and the transition to record.
pub(crate) fn apply_approval(
    card: &mut Card,
    record: &mut CardRecord,
    decision: &Decision,
    request: &AuthorizationRequest,
    descriptors: &Descriptors,
    now: DateTime<Utc>,
) -> Result<(Option<Money>, Option<Transition>), AuthorizeError> {
    let Outcome::Approved { hold } = decision.outcome else { return Ok((None, None)) };
    let held = if hold.is_positive() {
        let placed = if decision.flag.is_some() { card.force_hold(hold) } else { card.hold(hold) };
        placed.map_err(|error| AuthorizeError::Card(error.to_string()))?;
        Some(hold)
    } else {
        None
    };
    let transition = if decision.first_use {
        record.merchant_name = descriptors.merchant_name.clone();
        Some(
            card.apply(CardEvent::FirstUse(request.merchant.clone()), now)
                .map_err(|error| AuthorizeError::Card(error.to_string()))?,
        )
    } else {
        None
    };
    record.set_card(card);
    Ok((held, transition))
}

/// Inserts the authorization; its network key already taken means a duplicate raced it.
async fn insert(tx: &mut Tx, authorization: &AuthorizationRecord) -> Result<(), AuthorizeError> {
    match authorizations::insert(tx, authorization).await {
        Err(StoreError::Conflict) => Err(AuthorizeError::Duplicate),
        other => Ok(other?),
    }
}

/// Applies the fraud rules that act after a decline: freeze the card, or every open card of the cardholder.
async fn freeze_after_decline(
    app: &App,
    tx: &mut Tx,
    record: &CardRecord,
    cvv_failed: bool,
    now: DateTime<Utc>,
) -> Result<(), AuthorizeError> {
    let fraud = &app.rules.fraud;
    let cvv_window = longest(fraud.cvv_failures.iter().map(|limit| limit.window_seconds));
    let decline_window = longest(fraud.card_declines.iter().map(|limit| limit.window_seconds));
    let cvv_failures = authorizations::cvv_failure_times(tx, &record.cardholder_id, now - cvv_window).await?;
    let declines = authorizations::decline_times(tx, &record.id, now - decline_window).await?;
    for action in fraud.after_decline(cvv_failed, &cvv_failures, &declines, now) {
        let (card_ids, rule) = match action {
            FraudAction::FreezeCard { rule } => (vec![record.id.clone()], rule),
            FraudAction::FreezeCardholderCards { rule } => {
                (cards::ids_in_states(tx, &record.cardholder_id, &["active", "used"]).await?, rule)
            }
        };
        for card_id in card_ids {
            let Some(mut other) = cards::get_for_update(tx, &card_id).await? else { continue };
            let mut card = other.to_card()?;
            if !matches!(card.status(), CardStatus::Active | CardStatus::Used) {
                continue;
            }
            let transition = card
                .apply(CardEvent::Freeze { rule: rule.clone() }, now)
                .map_err(|error| AuthorizeError::Card(error.to_string()))?;
            other.set_card(&card);
            cards::update(tx, &mut other).await?;
            cards::record_transition(tx, &card_id, &transition).await?;
            ghostcard_store::events::insert_many(tx, &[crate::events::thin("fraud.flagged", &card_id, now)]).await?;
            tracing::warn!(card = %card_id, %rule, "card frozen by a fraud rule");
        }
    }
    Ok(())
}

fn longest(windows: impl Iterator<Item = i64>) -> Duration {
    Duration::seconds(windows.max().unwrap_or(0))
}

/// Six upper-case alphanumerics (field 38).
fn authorization_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..6).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}
