//! The authorizations list: one entry per authorization, updated by its reversals and captures.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use ghostcard_domain::decision::DeclineReason;
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, List, PageQuery};
use crate::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationMerchant {
    pub acquirer_id: String,
    pub id: String,
    pub name: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub mcc: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationNetwork {
    pub stan: Option<String>,
    pub rrn: Option<String>,
    pub auth_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationView {
    pub id: String,
    pub card_id: Option<String>,
    /// `purchase`, `verification`, `incremental`, `refund`, `advice`.
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    /// `approved`, `declined`, `reversed`, `partially_reversed`, `captured`, `expired`.
    pub status: String,
    pub response_code: String,
    pub decline_reason: Option<String>,
    /// The decline reason in plain words.
    pub decline_message: Option<String>,
    /// The check or fraud rule that decided.
    pub rule: String,
    pub cvv_result: Option<String>,
    /// The check an advice was posted past (flagged for review).
    pub flag: Option<String>,
    pub held: i64,
    pub captured: i64,
    pub merchant: AuthorizationMerchant,
    pub network: AuthorizationNetwork,
    pub created_at: DateTime<Utc>,
}

impl From<&AuthorizationRecord> for AuthorizationView {
    fn from(record: &AuthorizationRecord) -> Self {
        AuthorizationView {
            id: record.id.clone(),
            card_id: record.card_id.clone(),
            kind: record.kind.clone(),
            amount: record.amount,
            currency: record.currency.clone(),
            status: record.status.clone(),
            response_code: record.response_code.clone(),
            decline_message: record.decline_reason.as_deref().and_then(decline_message).map(str::to_owned),
            decline_reason: record.decline_reason.clone(),
            rule: record.rule.clone(),
            cvv_result: record.cvv_result.clone(),
            flag: record.flag.clone(),
            held: record.held,
            captured: record.captured,
            merchant: AuthorizationMerchant {
                acquirer_id: record.acquirer_id.clone(),
                id: record.merchant_id.clone(),
                name: record.merchant_name.clone(),
                city: record.merchant_city.clone(),
                country: record.merchant_country.clone(),
                mcc: record.mcc.clone(),
            },
            network: AuthorizationNetwork {
                stan: record.stan.clone(),
                rrn: record.rrn.clone(),
                auth_code: record.auth_code.clone(),
            },
            created_at: record.created_at,
        }
    }
}

/// The plain-words message of a stored decline code.
fn decline_message(code: &str) -> Option<&'static str> {
    let reason = serde_json::from_value::<DeclineReason>(serde_json::Value::String(code.to_owned())).ok();
    reason
        .or_else(|| {
            (code == "invalid_request")
                .then_some(DeclineReason::InvalidRequest(ghostcard_domain::decision::InvalidRequest::Format))
        })
        .map(|reason| reason.message())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuthorizationsQuery {
    pub card_id: Option<String>,
    pub cardholder_id: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/authorizations", operation_id = "list_authorizations", tag = "authorizations", params(AuthorizationsQuery),
    responses((status = 200, body = List<AuthorizationView>), (status = 400, body = super::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(query): Query<AuthorizationsQuery>,
) -> Result<Json<List<AuthorizationView>>, ApiError> {
    let limit = PageQuery { limit: query.limit, starting_after: None }.limit()?;
    if query.card_id.is_none() && query.cardholder_id.is_none() {
        return Err(ApiError::invalid("missing_filter", "give card_id or cardholder_id").with_param("card_id"));
    }
    let mut tx = app.store.read().await?;
    let page = authorizations::list(
        &mut tx,
        query.card_id.as_deref(),
        query.cardholder_id.as_deref(),
        limit,
        query.starting_after.as_deref(),
    )
    .await?;
    Ok(Json(List { data: page.rows.iter().map(AuthorizationView::from).collect(), has_more: page.has_more }))
}
