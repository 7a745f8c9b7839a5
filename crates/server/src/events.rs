//! Events: a record of every state change that integrators care about, written in the transaction of the change
//! (the outbox), listed by `GET /v1/events` and delivered to webhook endpoints by the job runner.
//!
//! An event is `{id, type, created_at, data}`; `data` is the object the event is about, as the API shows it (a
//! card, an authorization, a plan, a clearing result). Installment events carry the plan with the `installment`
//! sequence number and amount beside it.

use chrono::{DateTime, Utc};
use ghostcard_store::cards::CardRecord;
use ghostcard_store::events::{self, Event};
use ghostcard_store::plans::PlanRecord;
use ghostcard_store::{StoreError, Tx};
use serde::Serialize;

use crate::api::authorizations::AuthorizationView;
use crate::api::cards::CardView;
use crate::api::plans::PlanView;
use crate::ids::new_id;

/// An event for `data`, ready to write.
pub fn new(kind: &str, data: &impl Serialize, now: DateTime<Utc>) -> Event {
    Event {
        id: new_id("evt", now, &mut rand::rng()),
        kind: kind.to_owned(),
        // Serializing our own view types cannot fail; an empty object would still be a valid event.
        data: serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned()),
        created_at: now,
    }
}

/// Writes one event in the transaction.
pub async fn emit(tx: &mut Tx, kind: &str, data: &impl Serialize, now: DateTime<Utc>) -> Result<(), StoreError> {
    events::insert_many(tx, &[new(kind, data, now)]).await
}

pub async fn card(tx: &mut Tx, kind: &str, card: &CardRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    emit(tx, kind, &CardView::of(card, now), now).await
}

pub fn authorization(record: &ghostcard_store::authorizations::AuthorizationRecord, now: DateTime<Utc>) -> Event {
    let kind = match record.status.as_str() {
        "declined" => "authorization.declined",
        "reversed" | "partially_reversed" | "expired" => "authorization.reversed",
        _ => "authorization.approved",
    };
    new(kind, &AuthorizationView::from(record), now)
}

pub async fn plan(tx: &mut Tx, kind: &str, plan: &PlanRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    emit(tx, kind, &PlanView::from(plan), now).await
}

/// What an installment event carries: the plan, and which installment and how much.
#[derive(Debug, Serialize)]
struct InstallmentEvent<'a> {
    #[serde(flatten)]
    plan: &'a PlanView,
    installment: u32,
    amount: i64,
}

pub async fn installment(
    tx: &mut Tx,
    kind: &str,
    plan: &PlanRecord,
    seq: u32,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    emit(tx, kind, &InstallmentEvent { plan: &PlanView::from(plan), installment: seq, amount }, now).await
}

/// The wire form of an event (API and webhook body).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        EventView {
            id: event.id.clone(),
            kind: event.kind.clone(),
            created_at: event.created_at,
            data: serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null),
        }
    }
}
