//! Clearing records from the network, over the API.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Claimed, finish};
use crate::App;
use crate::service::clearing::{ClearingRecordInput, MAX_RECORDS_PER_REQUEST, post_record};
use crate::service::lifecycle::ClearingResult;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearingBatch {
    pub records: Vec<ClearingRecordInput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClearingResults {
    pub results: Vec<ClearingResult>,
}

#[utoipa::path(post, path = "/v1/network/clearings", operation_id = "post_clearings", tag = "network", request_body = ClearingBatch,
    responses((status = 200, body = ClearingResults), (status = 400, body = super::error::ErrorBody)))]
pub async fn clearings(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<ClearingBatch>,
) -> Result<Response, ApiError> {
    if body.records.is_empty() || body.records.len() > MAX_RECORDS_PER_REQUEST {
        return Err(ApiError::invalid("invalid_records", format!("send 1 to {MAX_RECORDS_PER_REQUEST} records"))
            .with_param("records"));
    }
    let mut results = Vec::with_capacity(body.records.len());
    for record in &body.records {
        results.push(post_record(&app, record).await.map_err(ApiError::internal)?);
    }
    // Each record committed on its own; the idempotency record follows (a replay of a re-sent batch would
    // report "duplicate" for every record anyway).
    let tx = app.store.begin().await?;
    finish(tx, claim.as_deref(), StatusCode::OK, &ClearingResults { results }).await
}
