//! The authorizations list: one entry per authorization, updated by its reversals and captures.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use ghostcard_store::authorizations;
use serde::Deserialize;

use super::{ApiError, List, PageQuery};
use crate::App;
use crate::views::AuthorizationView;

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
    Ok(Json(List { data: crate::views::authorizations(&mut tx, &page.rows).await?, has_more: page.has_more }))
}
