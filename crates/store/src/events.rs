//! The `events` table: everything that happened, written in the transaction of the change (an outbox). Webhook
//! deliveries are made from it, and `GET /v1/events` lists it.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Page, Result, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    /// `card.created`, `authorization.approved`, …
    pub kind: String,
    /// The JSON object the event is about, as the API shows it.
    pub data: String,
    pub created_at: DateTime<Utc>,
}

/// Writes events with multi-row statements.
pub async fn insert_many(tx: &mut Tx, events: &[Event]) -> Result<()> {
    const COLUMNS: usize = 4;
    for chunk in events.chunks(crate::rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO events (id, type, data, created_at, dispatched) SELECT v.*, 0 FROM (VALUES {}) AS v",
            crate::placeholders(tx, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query.bind(&event.id).bind(&event.kind).bind(&event.data).bind(to_micros(event.created_at));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Event>> {
    let row = sqlx::query("SELECT * FROM events WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Events newest first, optionally of one type.
pub async fn list(tx: &mut Tx, kind: Option<&str>, limit: u32, starting_after: Option<&str>) -> Result<Page<Event>> {
    let rows = sqlx::query(
        "SELECT * FROM events WHERE ($1 IS NULL OR type = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(kind)
    .bind(starting_after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Page::from_rows(rows.iter().map(from_row).collect::<Result<Vec<Event>>>()?, limit))
}

/// Up to `limit` events not yet dispatched to webhook endpoints, oldest first; on PostgreSQL locked, skipping
/// those another process is dispatching.
pub async fn undispatched(tx: &mut Tx, limit: u32) -> Result<Vec<Event>> {
    let skip_locked = if tx.backend_name() == "PostgreSQL" { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!("SELECT * FROM events WHERE dispatched = 0 ORDER BY id LIMIT $1{skip_locked}");
    let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

pub async fn mark_dispatched(tx: &mut Tx, ids: &[String]) -> Result<()> {
    for chunk in ids.chunks(crate::rows_per_statement(1)) {
        let sql =
            format!("UPDATE events SET dispatched = 1 WHERE id IN ({})", crate::list_placeholders(tx, 1, chunk.len()));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        data: row.try_get("data")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
