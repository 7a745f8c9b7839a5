//! Cardholders, their purchase power and their funding sources.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ghostcard_domain::purchase_power::PurchasePower;
use ghostcard_store::StoreError;
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::funding_sources;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Caller, Claimed, finish};
use crate::App;
use crate::service::cardholders::{
    AddFundingSource, CreateCardholder, link_funding_source, load, new_cardholder, purchase_power_of,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct CardholderView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub country: String,
    /// `active` or `restricted`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Cardholder> for CardholderView {
    fn from(cardholder: &Cardholder) -> Self {
        CardholderView {
            id: cardholder.id.clone(),
            email: cardholder.email.clone(),
            name: cardholder.name.clone(),
            country: cardholder.country.clone(),
            status: cardholder.status.clone(),
            created_at: cardholder.created_at,
        }
    }
}

#[utoipa::path(post, path = "/v1/cardholders", operation_id = "create_cardholder", tag = "cardholders", request_body = CreateCardholder,
    responses((status = 201, body = CardholderView), (status = 400, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<CreateCardholder>,
) -> Result<Response, ApiError> {
    let cardholder = new_cardholder(&app, &body, app.clock.now()).await?;
    let mut tx = app.store.begin().await?;
    match cardholders::insert(&mut tx, &cardholder).await {
        Err(StoreError::Conflict) => {
            return Err(
                ApiError::conflict("email_taken", "a cardholder with this email already exists").with_param("email")
            );
        }
        other => other?,
    }
    finish(tx, claim.as_deref(), StatusCode::CREATED, &CardholderView::from(&cardholder)).await
}

#[utoipa::path(get, path = "/v1/cardholders/{id}", operation_id = "get_cardholder", tag = "cardholders",
    responses((status = 200, body = CardholderView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<CardholderView>, ApiError> {
    let mut tx = app.store.read().await?;
    let cardholder = load(&mut tx, &id).await?;
    Ok(Json(CardholderView::from(&cardholder)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurchasePowerView {
    pub available: i64,
    pub limit: i64,
    pub outstanding: i64,
    pub currency: String,
    pub breakdown: BreakdownView,
    /// `overdue_installment` or `account_restricted` while available is held at 0.
    pub restricted_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BreakdownView {
    pub base: i64,
    /// `per_month × whole months since sign-up`.
    pub tenure: i64,
    /// `per_repaid_plan × plans repaid with no late fee`.
    pub repaid_plans: i64,
    pub max: i64,
}

impl From<&PurchasePower> for PurchasePowerView {
    fn from(power: &PurchasePower) -> Self {
        PurchasePowerView {
            available: power.available.minor(),
            limit: power.limit.minor(),
            outstanding: power.outstanding.minor(),
            currency: power.limit.currency().code().to_owned(),
            breakdown: BreakdownView {
                base: power.breakdown.base.minor(),
                tenure: power.breakdown.tenure.minor(),
                repaid_plans: power.breakdown.repaid_plans.minor(),
                max: power.breakdown.max.minor(),
            },
            restricted_reason: power.restricted_reason.map(|reason| {
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
        }
    }
}

#[utoipa::path(get, path = "/v1/cardholders/{id}/purchase-power", operation_id = "get_purchase_power", tag = "cardholders",
    responses((status = 200, body = PurchasePowerView), (status = 404, body = super::error::ErrorBody)))]
pub async fn purchase_power(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<PurchasePowerView>, ApiError> {
    let mut tx = app.store.read().await?;
    let cardholder = load(&mut tx, &id).await?;
    let power = purchase_power_of(&app, &mut tx, &cardholder, app.clock.now()).await?;
    Ok(Json(PurchasePowerView::from(&power)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FundingSourceView {
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub status: String,
}

#[utoipa::path(post, path = "/v1/cardholders/{id}/funding-sources", operation_id = "create_funding_source", tag = "cardholders", request_body = AddFundingSource,
    responses((status = 201, body = FundingSourceView), (status = 400, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn add_funding_source(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    Extension(_caller): Extension<Caller>,
    ApiJson(body): ApiJson<AddFundingSource>,
) -> Result<Response, ApiError> {
    let now = app.clock.now();
    {
        let mut tx = app.store.read().await?;
        load(&mut tx, &id).await?;
    }
    let source = link_funding_source(&app, &id, &body, now).await?;
    let mut tx = app.store.begin().await?;
    funding_sources::insert(&mut tx, &source).await?;
    let view = FundingSourceView {
        id: source.id.clone(),
        brand: source.brand.clone(),
        last4: source.last4.clone(),
        exp_month: source.exp_month,
        exp_year: source.exp_year,
        status: source.status.clone(),
    };
    finish(tx, claim.as_deref(), StatusCode::CREATED, &view).await
}
