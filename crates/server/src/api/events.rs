//! `GET /v1/events`: everything that happened, newest first — the same objects webhooks deliver, for an
//! integrator catching up on what it missed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use ghostcard_store::events;
use serde::Deserialize;

use super::{ApiError, List, PageQuery};
use crate::App;
use crate::events::EventView;
use crate::ids::has_prefix;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// Only events of this type (e.g. `authorization.approved`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "events", params(EventsQuery),
    responses((status = 200, body = List<EventView>), (status = 400, body = super::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<List<EventView>>, ApiError> {
    let limit = PageQuery { limit: query.limit, starting_after: None }.limit()?;
    let mut tx = app.store.read().await?;
    let page = events::list(&mut tx, query.kind.as_deref(), limit, query.starting_after.as_deref()).await?;
    let now = app.clock.now();
    let mut data = Vec::with_capacity(page.rows.len());
    for event in &page.rows {
        data.push(EventView::render(&mut tx, event, now).await?);
    }
    Ok(Json(List { data, has_more: page.has_more }))
}

#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "get_event", tag = "events",
    responses((status = 200, body = EventView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<EventView>, ApiError> {
    if !has_prefix(&id, "evt") {
        return Err(ApiError::not_found("event", &id));
    }
    let mut tx = app.store.read().await?;
    let event = events::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("event", &id))?;
    Ok(Json(EventView::render(&mut tx, &event, app.clock.now()).await?))
}
