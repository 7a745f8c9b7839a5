//! Events: a record of every state change that integrators care about, written in the transaction of the change
//! (the outbox), listed by `GET /v1/events` and delivered to webhook endpoints by the job runner.
//!
//! An event is `{id, type, created_at, data}`; `data` is the object the event is about, as the API shows it (a
//! card, an authorization, a plan, a clearing result). Installment events carry the plan with the `installment`
//! sequence number and amount beside it.
//!
//! Events of the authorization path (`authorization.approved`, `authorization.declined`, `card.used`,
//! `fraud.flagged`, which the group-commit batch writes by the thousand) are **thin**: they record the object's id,
//! and `data` is the object as it is when the event is read or delivered — the type says what happened. Writing a
//! full copy of every authorization cost the batch much of its throughput (docs/performance-log).

use chrono::{DateTime, Utc};
use ghostcard_domain::authorization::AuthorizationStatus;
use ghostcard_store::cards::CardRecord;
use ghostcard_store::events::{self, Event};
use ghostcard_store::plans::PlanRecord;
use ghostcard_store::{StoreError, Tx};
use serde::Serialize;

use crate::ids::new_id;
use crate::views::CardView;
use crate::views::PlanView;

/// An event for `data`, ready to write.
pub fn new(kind: &str, data: &impl Serialize, now: DateTime<Utc>) -> Event {
    Event {
        id: new_id("evt", now, &mut rand::rng()),
        kind: kind.to_owned(),
        subject: None,
        // Serializing our own view types cannot fail; an empty object would still be a valid event.
        data: Some(serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned())),
        created_at: now,
    }
}

/// A thin event about the object `subject` (an authorization or card id).
pub fn thin(kind: &str, subject: &str, now: DateTime<Utc>) -> Event {
    Event {
        id: new_id("evt", now, &mut rand::rng()),
        kind: kind.to_owned(),
        subject: Some(subject.to_owned()),
        data: None,
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

/// The thin event of an authorization's decision.
pub fn authorization(record: &ghostcard_store::authorizations::AuthorizationRecord, now: DateTime<Utc>) -> Event {
    let kind = if record.status == AuthorizationStatus::Declined {
        "authorization.declined"
    } else {
        "authorization.approved"
    };
    thin(kind, &record.id, now)
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

impl EventView {
    /// The event as the API and webhooks show it: a thin event's object is read now.
    pub async fn render(tx: &mut Tx, event: &Event, now: DateTime<Utc>) -> Result<EventView, StoreError> {
        let data = match (&event.data, &event.subject) {
            (Some(data), _) => serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
            (None, Some(subject)) if event.kind.starts_with("authorization.") => {
                match ghostcard_store::authorizations::get(tx, subject).await? {
                    Some(record) => serde_json::to_value(crate::views::authorization(tx, &record).await?)
                        .unwrap_or(serde_json::Value::Null),
                    None => serde_json::Value::Null,
                }
            }
            (None, Some(subject)) => ghostcard_store::cards::get(tx, subject)
                .await?
                .and_then(|record| serde_json::to_value(CardView::of(&record, now)).ok())
                .unwrap_or(serde_json::Value::Null),
            (None, None) => serde_json::Value::Null,
        };
        Ok(EventView { id: event.id.clone(), kind: event.kind.clone(), created_at: event.created_at, data })
    }
}
