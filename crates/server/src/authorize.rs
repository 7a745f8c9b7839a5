//! The authorization operation: one request, decided by the domain and made durable with everything it
//! changes (card state, hold, ledger transfer, authorization record, fraud freezes) in one transaction.
//!
//! Both the sandbox endpoint and, later, the ISO 8583 listener call [`authorize`]; the rules are the domain's.

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::card::{CardEvent, CardStatus};
use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::decision::{
    AuthorizationRequest, CardholderStanding, CvvCheck, Decision, DecisionInput, Outcome, decide,
};
use ghostcard_domain::fraud::FraudAction;
use ghostcard_domain::ledger::entries;
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::ledger::CommitError;
use ghostcard_store::{StoreError, Tx, cardholders, ledger, plans};
use rand::Rng;

use crate::App;
use crate::ids::new_id;

/// How the card is named.
#[derive(Debug, Clone)]
pub enum CardLookup {
    /// By id (the sandbox).
    Id(String),
    /// By number (the network), found through its keyed hash.
    Number(CardNumber),
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

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
) -> Result<(AuthorizationRecord, Decision), AuthorizeError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let (record, number) = match &lookup {
        CardLookup::Id(id) => (cards::get_for_update(&mut tx, id).await?, None),
        CardLookup::Number(number) => {
            (cards::find_by_number_hash(&mut tx, &app.vault.number_hash(number)).await?, Some(number))
        }
    };
    let card = record.as_ref().map(CardRecord::to_card).transpose()?;
    let cvv_check = match (&cvv, &record, &card) {
        (CvvInput::Absent, _, _) | (_, None, _) | (_, _, None) => CvvCheck::Absent,
        (CvvInput::AssumeCorrect, _, _) => CvvCheck::Match,
        (CvvInput::Received(received), Some(record), Some(card)) => {
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
            if cvk.verify_cvv2(number, card.expiry(), received) { CvvCheck::Match } else { CvvCheck::Mismatch }
        }
    };
    let (standing, approvals) = match &record {
        Some(record) => {
            let cardholder = cardholders::get(&mut tx, &record.cardholder_id).await?;
            let today = now.date_naive();
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
    let decision = decide(&DecisionInput {
        request: &request,
        card: card.as_ref(),
        cvv: cvv_check,
        standing,
        cardholder_approvals: &approvals,
        rules: &app.rules,
        now,
    });

    let mut authorization = AuthorizationRecord {
        id: new_id("auth", now, &mut rand::rng()),
        card_id: record.as_ref().map(|record| record.id.clone()),
        cardholder_id: record.as_ref().map(|record| record.cardholder_id.clone()),
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
        merchant_city: descriptors.merchant_city,
        merchant_country: request.country.map(|country| country.as_str().to_owned()),
        mcc: request.mcc.to_string(),
        stan: descriptors.stan,
        rrn: descriptors.rrn,
        auth_code: decision.is_approved().then(authorization_code),
        transmission_time: descriptors.transmission_time,
        hold_transfer_id: None,
        held: 0,
        captured: 0,
        created_at: now,
    };

    if let (Some(mut record), Some(mut card)) = (record, card) {
        if let Outcome::Approved { hold } = decision.outcome {
            if hold.is_positive() {
                let placed = if decision.flag.is_some() { card.force_hold(hold) } else { card.hold(hold) };
                placed.map_err(|error| AuthorizeError::Card(error.to_string()))?;
                let committed = ledger::commit(&mut tx, &[entries::hold(&record.id, hold)], now).await?;
                authorization.hold_transfer_id = Some(committed[0].transfer.0 as i64);
                authorization.held = hold.minor();
            }
            if decision.first_use {
                let transition = card
                    .apply(CardEvent::FirstUse(request.merchant.clone()), now)
                    .map_err(|error| AuthorizeError::Card(error.to_string()))?;
                record.merchant_name = descriptors.merchant_name.clone();
                cards::record_transition(&mut tx, &record.id, &transition).await?;
            }
            record.set_card(&card);
            cards::update(&mut tx, &mut record).await?;
        }
        authorizations::insert(&mut tx, &authorization).await?;
        if let Some(reason) = decision.decline_reason() {
            freeze_after_decline(app, &mut tx, &record, reason.code() == "cvv_mismatch", now).await?;
        }
    } else {
        authorizations::insert(&mut tx, &authorization).await?;
    }
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
    // The decline just inserted is in these lists; the rules count it as "this one", so leave it out.
    let mut cvv_failures = authorizations::cvv_failure_times(tx, &record.cardholder_id, now - cvv_window).await?;
    let mut declines = authorizations::decline_times(tx, &record.id, now - decline_window).await?;
    remove_one(&mut cvv_failures, now, cvv_failed);
    remove_one(&mut declines, now, true);
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
            tracing::warn!(card = %card_id, %rule, "card frozen by a fraud rule");
        }
    }
    Ok(())
}

fn remove_one(times: &mut Vec<DateTime<Utc>>, now: DateTime<Utc>, present: bool) {
    if present && let Some(position) = times.iter().position(|at| *at == now) {
        times.swap_remove(position);
    }
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
