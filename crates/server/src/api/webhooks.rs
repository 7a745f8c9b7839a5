//! `POST /v1/webhook-endpoints`: where events are delivered. The signing secret is returned once, at creation.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::webhooks::{self, Endpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Caller, Claimed, List, PageQuery, finish};
use crate::App;
use crate::ids::new_id;

/// Every event type ghostcard emits.
pub const EVENT_TYPES: &[&str] = &[
    "card.created",
    "card.used",
    "card.expired",
    "card.canceled",
    "card.paused",
    "card.resumed",
    "card.updated",
    "authorization.approved",
    "authorization.declined",
    "authorization.reversed",
    "clearing.posted",
    "refund.posted",
    "plan.created",
    "plan.adjusted",
    "plan.completed",
    "plan.charged_off",
    "installment.paid",
    "installment.failed",
    "installment.late_fee",
    "fraud.flagged",
    "auth_rule.created",
    "auth_rule.updated",
    "decision_endpoint.created",
    "decision_endpoint.disabled",
    "decision_endpoint.circuit_opened",
    "decision_endpoint.circuit_closed",
];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// Event types to deliver; `["*"]` or omitted: all.
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `enabled`, or `failing` once a delivery exhausted its retries.
    pub status: String,
    /// Only in the response to the creation: `whsec_` + base64 of 32 random bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&Endpoint> for EndpointView {
    fn from(endpoint: &Endpoint) -> Self {
        EndpointView {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            events: endpoint.events.clone(),
            status: endpoint.status.clone(),
            secret: None,
            created_at: endpoint.created_at,
        }
    }
}

/// A URL an API caller chose for ghostcard to send requests to, trimmed, checked against the deployment's mode
/// (and what its name resolves to now): a 400 naming `url` otherwise.
pub async fn caller_url(app: &App, url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    if url.len() > 2048 {
        return Err(ApiError::invalid("invalid_url", "a URL is at most 2048 characters").with_param("url"));
    }
    crate::outbound::check_url_now(url, app.config.mode)
        .await
        .map_err(|error| ApiError::invalid("invalid_url", error.to_string()).with_param("url"))?;
    Ok(url.to_owned())
}

#[utoipa::path(post, path = "/v1/webhook-endpoints", operation_id = "create_webhook_endpoint", tag = "webhooks",
    request_body = CreateEndpoint,
    responses((status = 201, body = EndpointView), (status = 400, body = super::error::ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let url = caller_url(&app, &body.url).await?;
    let events = body.events.unwrap_or_else(|| vec!["*".to_owned()]);
    if events.is_empty() {
        return Err(
            ApiError::invalid("invalid_events", "events lists at least one event type, or \"*\"").with_param("events")
        );
    }
    if let Some(unknown) = events.iter().find(|kind| *kind != "*" && !EVENT_TYPES.contains(&kind.as_str())) {
        return Err(ApiError::invalid(
            "invalid_events",
            format!("unknown event type {unknown:?}; known types: {}", EVENT_TYPES.join(", ")),
        )
        .with_param("events"));
    }
    let now = app.clock.now();
    let id = new_id("we", now, &mut rand::rng());
    let (secret, key) = crate::webhooks::new_secret(&mut rand::rng());
    let (secret_version, secret_ciphertext) =
        app.vault.encrypt_secret(&crate::webhooks::secret_context(&id), key.expose(), &mut rand::rng());
    // The endpoint gets the events made from now on: its cursor starts below every id made at or after now.
    let cursor = format!("evt_{}", &new_id("evt", now, &mut rand::rng())[4..14]);
    let endpoint = Endpoint {
        id,
        url,
        events,
        cursor,
        secret_version,
        secret_ciphertext,
        status: "enabled".to_owned(),
        created_at: now,
    };
    let mut tx = app.store.begin().await?;
    webhooks::insert(&mut tx, &endpoint).await?;
    audit::append(
        &mut tx,
        &AuditEntry {
            at: now,
            actor: caller.actor.clone(),
            action: "webhook_endpoint.create".to_owned(),
            resource: Some(endpoint.id.clone()),
            outcome: "success".to_owned(),
            origin: caller.origin.clone(),
            detail: None,
        },
    )
    .await?;
    let view = EndpointView { secret: Some(secret.expose().clone()), ..EndpointView::from(&endpoint) };
    // The secret is never stored in an idempotency record: a replay answers without it.
    let response = finish(tx, claim.as_deref(), StatusCode::CREATED, &EndpointView::from(&endpoint)).await?;
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, axum::body::Body::from(serde_json::to_vec(&view).map_err(ApiError::internal)?)))
}

#[utoipa::path(get, path = "/v1/webhook-endpoints", operation_id = "list_webhook_endpoints", tag = "webhooks",
    params(PageQuery), responses((status = 200, body = List<EndpointView>)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<EndpointView>>, ApiError> {
    let limit = query.limit()?;
    let mut tx = app.store.read().await?;
    let page = webhooks::list(&mut tx, limit, query.starting_after.as_deref()).await?;
    Ok(Json(List { data: page.rows.iter().map(EndpointView::from).collect(), has_more: page.has_more }))
}

#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", operation_id = "get_webhook_endpoint", tag = "webhooks",
    responses((status = 200, body = EndpointView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let mut tx = app.store.read().await?;
    let endpoint = webhooks::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint", &id))?;
    Ok(Json(EndpointView::from(&endpoint)))
}

#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", operation_id = "delete_webhook_endpoint", tag = "webhooks",
    responses((status = 200, body = EndpointView), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<EndpointView>, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let endpoint = webhooks::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint", &id))?;
    webhooks::delete(&mut tx, &id, now).await?;
    audit::append(
        &mut tx,
        &AuditEntry {
            at: now,
            actor: caller.actor.clone(),
            action: "webhook_endpoint.delete".to_owned(),
            resource: Some(id.clone()),
            outcome: "success".to_owned(),
            origin: caller.origin.clone(),
            detail: None,
        },
    )
    .await?;
    ghostcard_store::commit(tx).await?;
    Ok(Json(EndpointView { status: "deleted".to_owned(), ..EndpointView::from(&endpoint) }))
}
