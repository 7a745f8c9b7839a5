//! The job queue for operators: what is pending, done or dead, and a retry for dead jobs.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::jobs::{self, Job};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Caller, Claimed, List, PageQuery, finish};
use crate::App;
use crate::ids::has_prefix;

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    /// `webhook`, `installment_collection`, `plan_payment`, `funding_charge`, `funding_refund`, `funding_release`.
    pub kind: String,
    /// `pending`, `done`, `dead`.
    pub status: String,
    pub run_at: DateTime<Utc>,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        JobView {
            id: job.id.clone(),
            kind: job.kind.clone(),
            status: job.status.clone(),
            run_at: job.run_at,
            attempts: job.attempts,
            last_error: job.last_error.clone(),
            payload: serde_json::from_str(&job.payload).unwrap_or(serde_json::Value::Null),
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct JobsQuery {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, body = List<JobView>), (status = 400, body = super::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(query): Query<JobsQuery>,
) -> Result<Json<List<JobView>>, ApiError> {
    let limit = PageQuery { limit: query.limit, starting_after: None }.limit()?;
    if let Some(status) = &query.status
        && !["pending", "done", "dead"].contains(&status.as_str())
    {
        return Err(ApiError::invalid("invalid_status", "status is pending, done or dead").with_param("status"));
    }
    let mut tx = app.store.read().await?;
    let page =
        jobs::list(&mut tx, query.status.as_deref(), query.kind.as_deref(), limit, query.starting_after.as_deref())
            .await?;
    Ok(Json(List { data: page.rows.iter().map(JobView::from).collect(), has_more: page.has_more }))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", operation_id = "retry_job", tag = "jobs",
    responses((status = 200, body = JobView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn retry(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !has_prefix(&id, "job") {
        return Err(ApiError::not_found("job", &id));
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    if jobs::get(&mut tx, &id).await?.is_none() {
        return Err(ApiError::not_found("job", &id));
    }
    if !jobs::revive(&mut tx, &id, now).await? {
        return Err(ApiError::conflict("job_not_dead", "only a dead job can be retried"));
    }
    audit::append(
        &mut tx,
        &AuditEntry {
            at: now,
            actor: caller.actor.clone(),
            action: "job.retry".to_owned(),
            resource: Some(id.clone()),
            outcome: "success".to_owned(),
            origin: caller.origin.clone(),
            detail: None,
        },
    )
    .await?;
    let job = jobs::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("job", &id))?;
    let response = finish(tx, claim.as_deref(), StatusCode::OK, &JobView::from(&job)).await?;
    app.wake_jobs.notify_one();
    Ok(response)
}
