//! One-time cards: create (with every refusal of docs/reference/behaviour.md, in order), read, list, reveal, cancel and
//! refund the unused amount.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use ghostcard_domain::card::CardStatus;
use ghostcard_domain::controls::SpendingControls;
use ghostcard_store::Tx;
use ghostcard_store::cards::{self, CardRecord};
use serde::Deserialize;

use super::{ApiError, ApiJson, Caller, Claimed, List, PageQuery, finish};
use crate::ids::has_prefix;
use crate::service::issuing;
pub use crate::service::issuing::CreateCard;
use crate::views::{CardView, RevealedCard};
use crate::{App, service};

#[utoipa::path(post, path = "/v1/cards", operation_id = "create_card", tag = "cards", request_body = CreateCard,
    responses((status = 201, body = CardView), (status = 400, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateCard>,
) -> Result<Response, ApiError> {
    let (_, answer) = issuing::create(&app, &body, &caller.actor(), claim.as_deref()).await?;
    Ok(super::json_answer(StatusCode::CREATED, answer, claim.is_some()))
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
        && status != "paused"
    {
        return Err(ApiError::invalid(
            "invalid_status",
            "status is one of active, used, paused, expired, canceled, frozen, closed",
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
    let revealed = issuing::reveal(&app, &card, &caller.actor(), None).await?;
    // Never stored for idempotency (the middleware skips /reveal), never cached.
    let mut response = axum::response::IntoResponse::into_response((StatusCode::OK, Json(revealed)));
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
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

#[utoipa::path(post, path = "/v1/cards/{id}/pause", operation_id = "pause_card", tag = "cards",
    responses((status = 200, body = CardView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn pause(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    set_paused(&app, &id, true, claim, &caller).await
}

#[utoipa::path(post, path = "/v1/cards/{id}/resume", operation_id = "resume_card", tag = "cards",
    responses((status = 200, body = CardView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    set_paused(&app, &id, false, claim, &caller).await
}

async fn set_paused(app: &App, id: &str, paused: bool, claim: Claimed, caller: &Caller) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = service::cards::set_paused(&mut tx, id, paused, &caller.actor(), now).await?;
    finish(tx, claim.as_deref(), StatusCode::OK, &CardView::of(&record, now)).await
}

#[utoipa::path(post, path = "/v1/cards/{id}/spending-controls", operation_id = "set_spending_controls", tag = "cards",
    request_body(content = Object, description = "`allowed_categories`, `blocked_categories` (four-digit MCCs), `allowed_countries`, `blocked_countries` (alpha-2); each optional"),
    responses((status = 200, body = CardView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn spending_controls(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(controls): ApiJson<SpendingControls>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = service::cards::set_spending_controls(&mut tx, &id, controls, &caller.actor(), now).await?;
    finish(tx, claim.as_deref(), StatusCode::OK, &CardView::of(&record, now)).await
}

impl From<service::cards::CardError> for ApiError {
    fn from(error: service::cards::CardError) -> ApiError {
        use service::cards::CardError;
        match error {
            CardError::NotFound(id) => ApiError::not_found("card", &id),
            CardError::NotCancelable => ApiError::conflict("card_not_cancelable", error.to_string()),
            CardError::NotRefundable(_) => ApiError::conflict("card_not_refundable", error.to_string()),
            CardError::NotAllowed(_) => ApiError::conflict("card_state_conflict", error.to_string()),
            CardError::NotPausable(_) => ApiError::conflict("card_not_pausable", error.to_string()),
            CardError::Store(error) => error.into(),
            CardError::Ledger(_) | CardError::Inconsistent(_) => ApiError::internal(error),
        }
    }
}
