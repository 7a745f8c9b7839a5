//! One-time cards: create (with every refusal of docs/reference/behaviour.md, in order), read, list, reveal, cancel and
//! refund the unused amount.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Datelike, Duration, Utc};
use ghostcard_domain::card::CardStatus;
use ghostcard_domain::card_number::{CardNumber, Expiry};
use ghostcard_domain::issuance::{CreationRefusal, check_card_creation};
use ghostcard_domain::ledger::entries;
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::{Plan, PlanKind};
use ghostcard_store::audit::AuditEntry;
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::{Tx, audit, cardholders, funding_sources, ledger};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cardholders::{load as load_cardholder, purchase_power_of};
use super::{ApiError, ApiJson, Caller, Claimed, List, PageQuery, finish};
use crate::gateway::GatewayError;
use crate::ids::{has_prefix, new_id};
use crate::views::CardView;
use crate::{App, service};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCard {
    pub cardholder_id: String,
    /// Minor units (10001 = 100.01 USD).
    pub amount: i64,
    /// ISO 4217; the deployment's currency.
    pub currency: String,
    pub funding_source_id: String,
    /// `pay_now`, `pay_in_4`, `pay_in_30`, `financing_3`, `financing_6`, `financing_12`, `financing_24`.
    pub plan: String,
}

#[utoipa::path(post, path = "/v1/cards", operation_id = "create_card", tag = "cards", request_body = CreateCard,
    responses((status = 201, body = CardView), (status = 400, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateCard>,
) -> Result<Response, ApiError> {
    Ok(create_card(&app, &body, &caller, claim.as_deref()).await?.1)
}

/// Creates a one-time card (API and web app): the refusals of docs/reference/behaviour.md in order, the funding hold,
/// then the card, its ledger transfer, its audit entry and its `card.created` event in one transaction (with the
/// idempotency record, if claimed). Returns the card and the 201 response.
pub async fn create_card(
    app: &App,
    body: &CreateCard,
    caller: &Caller,
    claim: Option<&super::IdempotencyClaim>,
) -> Result<(CardRecord, Response), ApiError> {
    let (amount, plan) = amount_and_plan(app, body)?;
    let now = app.clock.now();

    // Checks before the funding hold, so a refused card holds nothing.
    let (cardholder, source) = {
        let mut tx = app.store.read().await?;
        let cardholder =
            load_cardholder(&mut tx, &body.cardholder_id).await.map_err(|error| error.with_param("cardholder_id"))?;
        let source = match has_prefix(&body.funding_source_id, "fs") {
            true => funding_sources::get(&mut tx, &body.funding_source_id).await?,
            false => None,
        }
        .filter(|source| source.cardholder_id == cardholder.id && source.status == "active")
        .ok_or_else(|| {
            ApiError::not_found("funding source of this cardholder", &body.funding_source_id)
                .with_param("funding_source_id")
        })?;
        refusal(app, &mut tx, &cardholder, amount, now).await?;
        (cardholder, source)
    };

    // The funding hold: the whole amount for pay-now, the first installment for a plan.
    let hold_amount = match plan {
        PlanKind::PayNow => amount,
        kind => {
            let schedule = Plan::new(kind, amount, app.today(now), &app.plan_terms).map_err(ApiError::internal)?;
            schedule.money(schedule.installments.first().map_or(amount.minor(), |first| first.amount()))
        }
    };
    let card_id = new_id("card", now, &mut rand::rng());
    let funding_hold = match app.gateway.hold(&source.gateway_token, hold_amount, &card_id).await {
        Ok(hold) => hold,
        Err(GatewayError::Declined) => {
            return Err(ApiError::refused("funding_declined", "the funding card declined the hold; link another card"));
        }
        Err(error) => return Err(ApiError::internal(error)),
    };

    let written = async {
        let mut tx = app.store.begin().await?;
        // Checked again inside the write: a concurrent request may have used the purchase power meanwhile.
        let cardholder = cardholders::get(&mut tx, &cardholder.id)
            .await?
            .ok_or_else(|| ApiError::not_found("cardholder", &cardholder.id))?;
        refusal(app, &mut tx, &cardholder, amount, now).await?;
        let (record, _number) =
            issue(app, &mut tx, &card_id, &cardholder.id, &source.id, amount, plan, &funding_hold, now).await?;
        ledger::commit(&mut tx, &entries::issue_card(&record.id, amount), now).await.map_err(ApiError::internal)?;
        audit::append(&mut tx, &service::cards::audit_entry(&caller.actor(), "card.create", &record.id, now)).await?;
        crate::events::card(&mut tx, "card.created", &record, now).await?;
        let response = finish(tx, claim, StatusCode::CREATED, &CardView::of(&record, now)).await?;
        Ok((record, response))
    };
    let result: Result<(CardRecord, Response), ApiError> = written.await;
    if result.is_err() {
        // Nothing was written: give the funding hold back.
        if let Err(error) = app.gateway.release(&source.gateway_token, &funding_hold).await {
            tracing::warn!(%error, card = %card_id, "could not release the funding hold of a card that was not created");
        }
    }
    result
}

/// The amount and plan a card is asked for, checked.
fn amount_and_plan(app: &App, body: &CreateCard) -> Result<(Money, PlanKind), ApiError> {
    let currency = Currency::from_code(&body.currency).map_err(|_| {
        ApiError::invalid("invalid_currency", "use an ISO 4217 code such as USD").with_param("currency")
    })?;
    if currency != app.currency {
        return Err(ApiError::invalid(
            "currency_not_supported",
            format!("cards are issued in {}", app.currency.code()),
        )
        .with_param("currency"));
    }
    if body.amount <= 0 {
        return Err(
            ApiError::invalid("invalid_amount", "amount is a positive integer of minor units").with_param("amount")
        );
    }
    let plan = PlanKind::parse(&body.plan).ok_or_else(|| {
        ApiError::invalid(
            "invalid_plan",
            "plan is one of pay_now, pay_in_4, pay_in_30, financing_3, financing_6, financing_12, financing_24",
        )
        .with_param("plan")
    })?;
    Ok((Money::new(body.amount, currency), plan))
}

/// The card-creation refusals of docs/reference/behaviour.md before the funding hold, as API errors.
async fn refusal(
    app: &App,
    tx: &mut Tx,
    cardholder: &ghostcard_store::cardholders::Cardholder,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let power = purchase_power_of(app, tx, cardholder, now).await?;
    let longest_window = app.rules.fraud.card_creation.iter().map(|limit| limit.window_seconds).max().unwrap_or(0);
    let created = cards::creation_times(tx, &cardholder.id, now - Duration::seconds(longest_window)).await?;
    check_card_creation(amount, app.minimum_card_amount, &power, &created, &app.rules.fraud, now).map_err(|refusal| {
        match refusal {
            CreationRefusal::AmountTooSmall { minimum } => {
                ApiError::refused("amount_too_small", format!("the smallest card is {minimum}")).with_param("amount")
            }
            CreationRefusal::AccountRestricted => {
                ApiError::refused("account_restricted", "the account is restricted; pay what is overdue first")
            }
            CreationRefusal::SuspectedFraud { rule } => {
                tracing::warn!(cardholder = %cardholder.id, %rule, "card creation refused by a fraud rule");
                ApiError::refused("suspected_fraud", "too many cards were created recently; try again later")
            }
            CreationRefusal::PurchasePowerExceeded { available } => ApiError::refused(
                "purchase_power_exceeded",
                format!("the amount is more than the {available} available"),
            )
            .with_param("amount"),
        }
    })
}

/// Draws a new card number (never reused: a collision draws again), encrypts it and inserts the card.
#[allow(clippy::too_many_arguments)]
async fn issue(
    app: &App,
    tx: &mut Tx,
    card_id: &str,
    cardholder_id: &str,
    funding_source_id: &str,
    amount: Money,
    plan: PlanKind,
    funding_hold: &str,
    now: DateTime<Utc>,
) -> Result<(CardRecord, CardNumber), ApiError> {
    let issued = Expiry::new(u16::try_from(now.year()).map_err(ApiError::internal)?, now.month() as u8)
        .map_err(ApiError::internal)?;
    let expiry = issued.plus_months(app.config.printed_expiry_months).map_err(ApiError::internal)?;
    for _ in 0..8 {
        let number = CardNumber::generate(&app.bin, app.config.card_number_length, &mut rand::rng())
            .map_err(ApiError::internal)?;
        let number_hash = app.vault.number_hash(&number);
        if cards::find_by_number_hash(tx, &number_hash).await?.is_some() {
            continue;
        }
        let (data_key_version, number_ciphertext) = app.vault.encrypt_number(card_id, &number, &mut rand::rng());
        let record = CardRecord {
            id: card_id.to_owned(),
            cardholder_id: cardholder_id.to_owned(),
            funding_source_id: funding_source_id.to_owned(),
            number_hash,
            number_ciphertext,
            data_key_version,
            cvk_version: app.vault.current_cvk_version(),
            bin: number.bin(app.bin.as_str().len()).to_owned(),
            last4: number.last4().to_owned(),
            exp_month: i64::from(expiry.month()),
            exp_year: i64::from(expiry.year()),
            currency: amount.currency().code().to_owned(),
            amount: amount.minor(),
            held: 0,
            captured: 0,
            status: CardStatus::Active.as_str().to_owned(),
            frozen_from: None,
            merchant_acquirer_id: None,
            merchant_id: None,
            merchant_name: None,
            plan_kind: plan.as_str().to_owned(),
            plan_id: None,
            funding_hold_id: Some(funding_hold.to_owned()),
            valid_until: now + Duration::hours(app.config.card_validity_hours),
            created_at: now,
            version: 0,
        };
        cards::insert(tx, &record).await?;
        return Ok((record, number));
    }
    Err(ApiError::internal("could not draw an unused card number in 8 tries; the BIN may be nearly exhausted"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CardsQuery {
    pub cardholder_id: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/cards", operation_id = "list_cards", tag = "cards", params(CardsQuery),
    responses((status = 200, body = List<CardView>), (status = 400, body = super::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(query): Query<CardsQuery>,
) -> Result<Json<List<CardView>>, ApiError> {
    let limit = PageQuery { limit: query.limit, starting_after: None }.limit()?;
    if let Some(status) = &query.status
        && CardStatus::parse(status).is_none()
    {
        return Err(ApiError::invalid(
            "invalid_status",
            "status is one of active, used, expired, canceled, frozen, closed",
        )
        .with_param("status"));
    }
    let now = app.clock.now();
    let mut tx = app.store.read().await?;
    let page = cards::list(
        &mut tx,
        query.cardholder_id.as_deref(),
        query.status.as_deref(),
        limit,
        query.starting_after.as_deref(),
    )
    .await?;
    Ok(Json(List { data: page.rows.iter().map(|card| CardView::of(card, now)).collect(), has_more: page.has_more }))
}

#[utoipa::path(get, path = "/v1/cards/{id}", operation_id = "get_card", tag = "cards",
    responses((status = 200, body = CardView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<CardView>, ApiError> {
    let mut tx = app.store.read().await?;
    let card = load(&mut tx, &id, false).await?;
    Ok(Json(CardView::of(&card, app.clock.now())))
}

/// The card `id` (locked for writing when `for_update`), or a 404.
pub async fn load(tx: &mut Tx, id: &str, for_update: bool) -> Result<CardRecord, ApiError> {
    if !has_prefix(id, "card") {
        return Err(ApiError::not_found("card", id));
    }
    let card = if for_update { cards::get_for_update(tx, id).await? } else { cards::get(tx, id).await? };
    card.ok_or_else(|| ApiError::not_found("card", id))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevealedCard {
    pub number: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvv: String,
}

#[utoipa::path(post, path = "/v1/cards/{id}/reveal", operation_id = "reveal_card", tag = "cards",
    responses((status = 200, body = RevealedCard), (status = 404, body = super::error::ErrorBody)))]
pub async fn reveal(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let card = {
        let mut tx = app.store.read().await?;
        load(&mut tx, &id, false).await?
    };
    let revealed = reveal_details(&app, &card, &caller, None).await?;
    // Never stored for idempotency (the middleware skips /reveal), never cached.
    let mut response = axum::response::IntoResponse::into_response((StatusCode::OK, Json(revealed)));
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The card's number, expiry and CVV2 (computed), after writing the audit entry: no audit entry, no card data.
/// The card's details, audited. `once`: the web app's one-time form token, completed in the audit entry's transaction
/// (with no card data); the API's reveal passes none (it is never stored).
pub async fn reveal_details(
    app: &App,
    card: &CardRecord,
    caller: &Caller,
    once: Option<&super::IdempotencyClaim>,
) -> Result<RevealedCard, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let number = app.vault.decrypt_number(&card.id, card.data_key_version, &card.number_ciphertext)?;
    let expiry = card.to_card()?.expiry();
    let cvv = app.vault.cvk(card.cvk_version)?.cvv2(&number, expiry);
    // The reveal is audited in the same transaction: no audit entry, no card data.
    audit::append(
        &mut tx,
        &AuditEntry {
            at: now,
            actor: caller.actor.clone(),
            action: "card.reveal".to_owned(),
            resource: Some(card.id.clone()),
            outcome: "success".to_owned(),
            origin: caller.origin.clone(),
            detail: None,
        },
    )
    .await?;
    if let Some(claim) = once {
        ghostcard_store::idempotency::complete(&mut tx, &claim.scope, &claim.key, 303, "revealed").await?;
    }
    ghostcard_store::commit(tx).await?;
    Ok(RevealedCard {
        number: number.expose().to_owned(),
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvv: cvv.expose().clone(),
    })
}

#[utoipa::path(post, path = "/v1/cards/{id}/cancel", operation_id = "cancel_card", tag = "cards",
    responses((status = 200, body = CardView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = service::cards::cancel(&mut tx, &id, &caller.actor(), now).await?;
    let response = finish(tx, claim.as_deref(), StatusCode::OK, &CardView::of(&record, now)).await?;
    app.wake_jobs.notify_one();
    Ok(response)
}

#[utoipa::path(post, path = "/v1/cards/{id}/refund-unused", operation_id = "refund_unused_amount", tag = "cards",
    responses((status = 200, body = CardView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn refund_unused(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = service::cards::refund_unused(&mut tx, &id, &caller.actor(), now).await?;
    let response = finish(tx, claim.as_deref(), StatusCode::OK, &CardView::of(&record, now)).await?;
    app.wake_jobs.notify_one();
    Ok(response)
}

impl From<service::cards::CardError> for ApiError {
    fn from(error: service::cards::CardError) -> ApiError {
        use service::cards::CardError;
        match error {
            CardError::NotFound(id) => ApiError::not_found("card", &id),
            CardError::NotCancelable => ApiError::conflict("card_not_cancelable", error.to_string()),
            CardError::NotRefundable(_) => ApiError::conflict("card_not_refundable", error.to_string()),
            CardError::Store(error) => error.into(),
            CardError::Ledger(_) | CardError::Inconsistent(_) => ApiError::internal(error),
        }
    }
}
