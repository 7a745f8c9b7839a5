//! `/v1/auth-rules`: the issuer's authorization rules, their versions, the shadow report and backtests. A change is
//! in effect on this node before the call returns, and on every node within a second ([`crate::decisioning`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::{ApiError, ApiJson, Caller, Claimed, List, PageQuery, finish};
use crate::App;
use crate::service::auth_rules::{self, NewBacktest, NewRule, Report, RuleChange};
use crate::views::{BacktestView, RuleView};

/// Commits a rule change and puts the new rule set in force on this node before answering.
async fn commit_change(
    app: &App,
    tx: ghostcard_store::Tx,
    claim: Claimed,
    status: StatusCode,
    view: &RuleView,
) -> Result<Response, ApiError> {
    let response = finish(tx, claim.as_deref(), status, view).await?;
    crate::decisioning::refresh(app).await?;
    Ok(response)
}

#[utoipa::path(post, path = "/v1/auth-rules", operation_id = "create_auth_rule", tag = "auth rules", request_body = NewRule,
    responses((status = 201, body = RuleView), (status = 400, body = super::error::ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewRule>,
) -> Result<Response, ApiError> {
    let mut tx = app.store.begin().await?;
    let view = auth_rules::create(&mut tx, body, &caller.actor(), app.clock.now()).await?;
    commit_change(&app, tx, claim, StatusCode::CREATED, &view).await
}

#[utoipa::path(get, path = "/v1/auth-rules", operation_id = "list_auth_rules", tag = "auth rules", params(PageQuery),
    responses((status = 200, body = List<RuleView>), (status = 400, body = super::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(page): Query<PageQuery>,
) -> Result<Json<List<RuleView>>, ApiError> {
    let limit = page.limit()?;
    let mut tx = app.store.read().await?;
    let found = ghostcard_store::auth_rules::list(&mut tx, limit, page.starting_after.as_deref()).await?;
    let data = found.rows.iter().map(|rule| RuleView::of(&rule.current, rule.created_at)).collect();
    Ok(Json(List { data, has_more: found.has_more }))
}

#[utoipa::path(get, path = "/v1/auth-rules/{id}", operation_id = "get_auth_rule", tag = "auth rules",
    responses((status = 200, body = RuleView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<RuleView>, ApiError> {
    let mut tx = app.store.read().await?;
    Ok(Json(auth_rules::get(&mut tx, &id).await?))
}

#[utoipa::path(post, path = "/v1/auth-rules/{id}", operation_id = "update_auth_rule", tag = "auth rules", request_body = RuleChange,
    responses((status = 200, body = RuleView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<RuleChange>,
) -> Result<Response, ApiError> {
    let mut tx = app.store.begin().await?;
    let view = auth_rules::update(&mut tx, &id, body, &caller.actor(), app.clock.now()).await?;
    commit_change(&app, tx, claim, StatusCode::OK, &view).await
}

#[utoipa::path(delete, path = "/v1/auth-rules/{id}", operation_id = "disable_auth_rule", tag = "auth rules",
    responses((status = 200, body = RuleView), (status = 404, body = super::error::ErrorBody)))]
pub async fn disable(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let mut tx = app.store.begin().await?;
    let view = auth_rules::disable(&mut tx, &id, &caller.actor(), app.clock.now()).await?;
    commit_change(&app, tx, claim, StatusCode::OK, &view).await
}

#[utoipa::path(get, path = "/v1/auth-rules/{id}/versions", operation_id = "list_auth_rule_versions", tag = "auth rules",
    responses((status = 200, body = List<RuleView>), (status = 404, body = super::error::ErrorBody)))]
pub async fn versions(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<List<RuleView>>, ApiError> {
    let mut tx = app.store.read().await?;
    Ok(Json(List { data: auth_rules::versions(&mut tx, &id).await?, has_more: false }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    /// RFC 3339; default: 24 hours before `end`.
    pub start: Option<String>,
    /// RFC 3339; default: now.
    pub end: Option<String>,
}

fn time(text: Option<&str>, param: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|text| {
        DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc)).map_err(|_| {
            ApiError::invalid("invalid_request", format!("{param} is an RFC 3339 time such as 2026-12-01T00:00:00Z"))
                .with_param(param)
        })
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/auth-rules/{id}/report", operation_id = "auth_rule_report", tag = "auth rules", params(WindowQuery),
    responses((status = 200, body = Report), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn report(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(window): Query<WindowQuery>,
) -> Result<Json<Report>, ApiError> {
    let end = time(window.end.as_deref(), "end")?.unwrap_or_else(|| app.clock.now());
    let start = time(window.start.as_deref(), "start")?.unwrap_or(end - Duration::hours(24));
    if start >= end {
        return Err(ApiError::invalid("invalid_request", "start is before end").with_param("start"));
    }
    Ok(Json(auth_rules::report(&app, &id, start, end).await?))
}

#[utoipa::path(post, path = "/v1/auth-rules/{id}/backtests", operation_id = "create_backtest", tag = "auth rules", request_body = NewBacktest,
    responses((status = 201, body = BacktestView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn create_backtest(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    ApiJson(body): ApiJson<NewBacktest>,
) -> Result<Response, ApiError> {
    let mut tx = app.store.begin().await?;
    let view = auth_rules::start_backtest(&mut tx, &id, body, app.clock.now()).await?;
    let response = finish(tx, claim.as_deref(), StatusCode::CREATED, &view).await?;
    app.wake_jobs.notify_one();
    Ok(response)
}

#[utoipa::path(get, path = "/v1/auth-rules/{id}/backtests/{backtest_id}", operation_id = "get_backtest", tag = "auth rules",
    responses((status = 200, body = BacktestView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_backtest(
    State(app): State<Arc<App>>,
    Path((id, backtest_id)): Path<(String, String)>,
) -> Result<Json<BacktestView>, ApiError> {
    let mut tx = app.store.read().await?;
    Ok(Json(auth_rules::get_backtest(&mut tx, &id, &backtest_id).await?))
}
