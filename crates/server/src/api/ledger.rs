//! Ledger verification: every balance re-derived from the stored transfers, every invariant checked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiError;
use crate::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyView {
    /// Sum of all posted postings (debits positive): always 0.
    pub postings_sum: i64,
    /// Sum of all open pending postings: always 0.
    pub pending_sum: i64,
    pub transfers: u64,
    /// Amount held by open authorization holds.
    pub open_holds: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    pub ok: bool,
    pub currencies: BTreeMap<String, CurrencyView>,
    pub problems: Vec<String>,
}

#[utoipa::path(get, path = "/v1/ledger/verify", operation_id = "verify_ledger", tag = "ledger", responses((status = 200, body = VerifyView)))]
pub async fn verify(State(app): State<Arc<App>>) -> Result<Json<VerifyView>, ApiError> {
    let mut tx = app.store.read().await?;
    let report = ghostcard_store::ledger::verify(&mut tx).await?;
    Ok(Json(VerifyView {
        ok: report.ok,
        currencies: report
            .currencies
            .into_iter()
            .map(|(currency, totals)| {
                (
                    currency,
                    CurrencyView {
                        postings_sum: totals.postings_sum,
                        pending_sum: totals.pending_sum,
                        transfers: totals.transfers,
                        open_holds: totals.open_holds,
                    },
                )
            })
            .collect(),
        problems: report.problems,
    }))
}
