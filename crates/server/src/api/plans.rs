//! Payment plans as the cardholder sees them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use ghostcard_store::plans::{self, PlanRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Claimed, finish};
use crate::ids::has_prefix;
use crate::service::plans::{Payment, PaymentError};
use crate::{App, service};

#[derive(Debug, Serialize, ToSchema)]
pub struct InstallmentView {
    pub seq: u32,
    pub due_date: NaiveDate,
    /// Principal + interest + fees, minor units.
    pub amount: i64,
    pub paid_amount: i64,
    /// `scheduled`, `paid`, `failed`, `overdue`, `rolled_over`, `canceled`.
    pub status: String,
    pub principal: i64,
    pub interest: i64,
    pub fee: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub id: String,
    pub card_id: String,
    pub kind: String,
    pub principal: i64,
    pub fees: i64,
    /// What is still owed.
    pub balance: i64,
    pub currency: String,
    /// `active`, `completed`, `canceled`, `charged_off`.
    pub status: String,
    pub installments: Vec<InstallmentView>,
}

impl From<&PlanRecord> for PlanView {
    fn from(record: &PlanRecord) -> Self {
        let plan = &record.plan;
        PlanView {
            id: record.id.clone(),
            card_id: record.card_id.clone(),
            kind: plan.kind.as_str().to_owned(),
            principal: plan.principal,
            fees: plan.fees,
            balance: plan.balance(),
            currency: plan.currency.code().to_owned(),
            status: plan.status.as_str().to_owned(),
            installments: plan
                .installments
                .iter()
                .map(|installment| InstallmentView {
                    seq: installment.seq,
                    due_date: installment.due_date,
                    amount: installment.amount(),
                    paid_amount: installment.paid,
                    status: installment.status.as_str().to_owned(),
                    principal: installment.principal,
                    interest: installment.interest,
                    fee: installment.fee,
                })
                .collect(),
        }
    }
}

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
