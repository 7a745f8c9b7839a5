//! `/v1/decision-endpoints`: where the issuer decides would-be approvals in real time ([`crate::decision_endpoint`]).
//! One is enabled at a time: creating one disables the one before. The signing secret is returned once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::decision_endpoints::{self, DecisionEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Caller, Claimed, List, finish};
use crate::App;
use crate::decision_endpoint::secret_context;
use crate::ids::{has_prefix, new_id};

/// The endpoint's timeout unless one is given, and its bounds (milliseconds).
const DEFAULT_TIMEOUT_MS: i64 = 1_000;
const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<i64> = 100..=1_500;

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

fn audit_entry(caller: &Caller, action: &str, id: &str, now: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: caller.actor.clone(),
        action: action.to_owned(),
        resource: Some(id.to_owned()),
        outcome: "success".to_owned(),
        origin: caller.origin.clone(),
        detail: None,
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
    let url = body.url.trim();
    if url.len() > 2048 {
        return Err(ApiError::invalid("invalid_url", "a URL is at most 2048 characters").with_param("url"));
    }
    crate::outbound::check_url_now(url, app.config.mode)
        .await
        .map_err(|error| ApiError::invalid("invalid_url", error.to_string()).with_param("url"))?;
    let timeout_ms = body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !TIMEOUT_RANGE_MS.contains(&timeout_ms) {
        return Err(ApiError::invalid("invalid_timeout", "timeout_ms is between 100 and 1500 (milliseconds)")
            .with_param("timeout_ms"));
    }
    let now = app.clock.now();
    let id = new_id("de", now, &mut rand::rng());
    let (secret, key) = crate::webhooks::new_secret(&mut rand::rng());
    let (secret_version, secret_ciphertext) =
        app.vault.encrypt_secret(&secret_context(&id), key.expose(), &mut rand::rng());
    let endpoint = DecisionEndpoint {
        id,
        url: url.to_owned(),
        timeout_ms,
        secret_version,
        secret_ciphertext,
        status: "enabled".to_owned(),
        created_at: now,
        disabled_at: None,
    };
    let mut tx = app.store.begin().await?;
    if let Some(before) = decision_endpoints::replace(&mut tx, &endpoint).await? {
        audit::append(&mut tx, &audit_entry(&caller, "decision_endpoint.disable", &before, now)).await?;
        crate::events::emit(&mut tx, "decision_endpoint.disabled", &serde_json::json!({"id": before}), now).await?;
    }
    audit::append(&mut tx, &audit_entry(&caller, "decision_endpoint.create", &endpoint.id, now)).await?;
    let shown = DecisionEndpointView::from(&endpoint);
    crate::events::emit(&mut tx, "decision_endpoint.created", &shown, now).await?;
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
    let all = decision_endpoints::all(&mut tx).await?;
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
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let found = if has_prefix(&id, "de") { decision_endpoints::get(&mut tx, &id).await? } else { None };
    let mut endpoint = found.ok_or_else(|| ApiError::not_found("decision endpoint", &id))?;
    if decision_endpoints::disable(&mut tx, &id, now).await? {
        audit::append(&mut tx, &audit_entry(&caller, "decision_endpoint.disable", &id, now)).await?;
        crate::events::emit(&mut tx, "decision_endpoint.disabled", &serde_json::json!({"id": id}), now).await?;
        (endpoint.status, endpoint.disabled_at) = ("disabled".to_owned(), Some(now));
    }
    let response = finish(tx, claim.as_deref(), StatusCode::OK, &DecisionEndpointView::from(&endpoint)).await?;
    crate::decisioning::refresh(&app).await?;
    Ok(response)
}
