//! `/v1/decision-endpoints`: where the issuer decides would-be approvals in real time ([`crate::decision_endpoint`]).
//! One is enabled at a time: creating one disables the one before. The signing secret is returned once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ghostcard_store::decision_endpoints::DecisionEndpoint;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Caller, Claimed, List, finish};
use crate::App;
use crate::service::decision_endpoints;

/// The endpoint's timeout unless one is given (milliseconds).
const DEFAULT_TIMEOUT_MS: i64 = 1_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDecisionEndpoint {
    /// Where decision requests are POSTed: `https://` to a public address (sandbox mode also allows `http://` and
    /// loopback).
    pub url: String,
    /// How long an answer may take, 100–1500 ms (default 1000).
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionEndpointView {
    pub id: String,
    pub url: String,
    pub timeout_ms: i64,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Only in the response to the creation: `whsec_` + base64 of 32 random bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<&DecisionEndpoint> for DecisionEndpointView {
    fn from(endpoint: &DecisionEndpoint) -> Self {
        DecisionEndpointView {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            timeout_ms: endpoint.timeout_ms,
            status: endpoint.status.clone(),
            secret: None,
            created_at: endpoint.created_at,
            disabled_at: endpoint.disabled_at,
        }
    }
}

#[utoipa::path(post, path = "/v1/decision-endpoints", operation_id = "create_decision_endpoint", tag = "decision endpoints",
    request_body = CreateDecisionEndpoint,
    responses((status = 201, body = DecisionEndpointView), (status = 400, body = super::error::ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateDecisionEndpoint>,
) -> Result<Response, ApiError> {
    let url = super::webhooks::caller_url(&app, &body.url).await?;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let timeout_ms = body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    let (endpoint, secret) = decision_endpoints::create(&app, &mut tx, &url, timeout_ms, &caller.actor(), now).await?;
    let shown = DecisionEndpointView::from(&endpoint);
    let view = DecisionEndpointView { secret: Some(secret.expose().clone()), ..DecisionEndpointView::from(&endpoint) };
    // The secret is never stored in an idempotency record: a replay answers without it.
    let response = finish(tx, claim.as_deref(), StatusCode::CREATED, &shown).await?;
    crate::decisioning::refresh(&app).await?;
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, axum::body::Body::from(serde_json::to_vec(&view).map_err(ApiError::internal)?)))
}

#[utoipa::path(get, path = "/v1/decision-endpoints", operation_id = "list_decision_endpoints", tag = "decision endpoints",
    responses((status = 200, body = List<DecisionEndpointView>)))]
pub async fn list(State(app): State<Arc<App>>) -> Result<Json<List<DecisionEndpointView>>, ApiError> {
    let mut tx = app.store.read().await?;
    let all = ghostcard_store::decision_endpoints::all(&mut tx).await?;
    Ok(Json(List { data: all.iter().map(DecisionEndpointView::from).collect(), has_more: false }))
}

#[utoipa::path(delete, path = "/v1/decision-endpoints/{id}", operation_id = "disable_decision_endpoint", tag = "decision endpoints",
    responses((status = 200, body = DecisionEndpointView), (status = 404, body = super::error::ErrorBody)))]
pub async fn disable(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let mut tx = app.store.begin().await?;
    let endpoint = decision_endpoints::disable(&mut tx, &id, &caller.actor(), app.clock.now()).await?;
    let response = finish(tx, claim.as_deref(), StatusCode::OK, &DecisionEndpointView::from(&endpoint)).await?;
    crate::decisioning::refresh(&app).await?;
    Ok(response)
}
