//! Payment plans as the cardholder sees them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::NaiveDate;
use ghostcard_store::plans::PlanRecord;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiError;
use crate::App;
use crate::ids::has_prefix;

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
    let record = ghostcard_store::plans::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("plan", &id))?;
    Ok(Json(PlanView::from(&record)))
}
