//! Payment plans as the cardholder sees them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ghostcard_store::plans;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Claimed, finish};
use crate::ids::has_prefix;
use crate::service::plans::{Payment, PaymentError};
use crate::views::PlanView;
use crate::{App, service};

#[utoipa::path(get, path = "/v1/plans/{id}", operation_id = "get_plan", tag = "plans",
    responses((status = 200, body = PlanView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<PlanView>, ApiError> {
    if !has_prefix(&id, "plan") {
        return Err(ApiError::not_found("plan", &id));
    }
    let mut tx = app.store.read().await?;
    let record = plans::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("plan", &id))?;
    Ok(Json(PlanView::from(&record)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPayment {
    /// Minor units to pay now: paid to the open installments in order, past-due ones first.
    pub amount: Option<i64>,
    /// Pay the amount this installment owes. Like every payment, it goes to what is past due first, then to the
    /// installments in order.
    pub installment: Option<u32>,
    /// Pay the whole plan off (financing: remaining principal plus interest accrued since the last due date).
    #[serde(default)]
    pub payoff: bool,
    /// Charge this linked funding card of the cardholder instead of the card's own.
    pub funding_source_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/plans/{id}/payments", operation_id = "pay_plan", tag = "plans", request_body = PlanPayment,
    responses((status = 200, body = PlanView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn pay(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    claim: Claimed,
    ApiJson(body): ApiJson<PlanPayment>,
) -> Result<Response, ApiError> {
    let payment = match (body.amount, body.installment, body.payoff) {
        (None, None, true) => Payment::Payoff,
        (None, Some(seq), false) => Payment::Installment(seq),
        (Some(amount), None, false) => Payment::Amount(amount),
        _ => {
            return Err(ApiError::invalid(
                "invalid_payment",
                "give exactly one of amount, installment or payoff: true",
            )
            .with_param("amount"));
        }
    };
    let record = service::plans::pay(&app, &id, payment, body.funding_source_id, app.clock.now()).await?;
    finish(app.store.begin().await?, claim.as_deref(), StatusCode::OK, &PlanView::from(&record)).await
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> ApiError {
        let message = error.to_string();
        match error {
            PaymentError::NotFound(id) => ApiError::not_found("plan", &id),
            PaymentError::NotActive(_) => ApiError::conflict("plan_not_active", message),
            PaymentError::NothingOwed(_) => ApiError::invalid("invalid_installment", message).with_param("installment"),
            PaymentError::InvalidAmount => ApiError::invalid("invalid_amount", message).with_param("amount"),
            PaymentError::ExceedsBalance(_) => {
                ApiError::invalid("amount_exceeds_balance", message).with_param("amount")
            }
            PaymentError::InvalidFundingSource => {
                ApiError::invalid("invalid_funding_source", message).with_param("funding_source_id")
            }
            PaymentError::Declined => ApiError::refused("funding_declined", message),
            PaymentError::Pending => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "api_error",
                code: "payment_pending".to_owned(),
                message,
                param: None,
                retry_after_seconds: None,
            },
            PaymentError::Store(error) => error.into(),
        }
    }
}
