//! The `events` table: everything that happened, written in the transaction of the change (an outbox). Webhook
//! deliveries are made from it, and `GET /v1/events` lists it.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::together::Value;
use crate::{Page, Result, Tx, Writes, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    /// `card.created`, `authorization.approved`, …
    pub kind: String,
    /// The id of the object a thin event is about (an authorization, a card); see `data`.
    pub subject: Option<String>,
    /// The JSON object the event is about, as the API showed it then; `None` for a thin event, whose object is
    /// read when the event is.
    pub data: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Writes events with multi-row statements.
pub async fn insert_many(tx: &mut Tx, events: &[Event]) -> Result<()> {
    let mut writes = Writes::new(tx);
    add_many(&mut writes, events);
    writes.run(tx).await
}

/// [`insert_many`], added to `writes`.
pub fn add_many(writes: &mut Writes, events: &[Event]) {
    const COLUMNS: usize = 5;
    for chunk in events.chunks(crate::rows_per_statement(COLUMNS)) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for event in chunk {
            values.extend([
                Value::from(&event.id),
                (&event.kind).into(),
                (&event.subject).into(),
                (&event.data).into(),
                to_micros(event.created_at).into(),
            ]);
        }
        let (rows, values) = crate::insert_rows(writes, values, COLUMNS);
        let sql = format!("INSERT INTO events (id, type, subject, data, created_at) {rows}");
        writes.push(sql, values, chunk.len());
    }
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

/// Up to `limit` events after the event id `cursor` made at or before `until`, oldest first.
pub async fn after(tx: &mut Tx, cursor: &str, until: DateTime<Utc>, limit: u32) -> Result<Vec<Event>> {
    let rows = sqlx::query("SELECT * FROM events WHERE id > $1 AND created_at <= $2 ORDER BY id LIMIT $3")
        .bind(cursor)
        .bind(to_micros(until))
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// When the first event after the event id `cursor` was made.
pub async fn first_after(tx: &mut Tx, cursor: &str) -> Result<Option<DateTime<Utc>>> {
    let next: Option<i64> = sqlx::query_scalar("SELECT MIN(created_at) FROM events WHERE id > $1")
        .bind(cursor)
        .fetch_one(&mut **tx)
        .await?;
    next.map(from_micros).transpose()
}

fn from_row(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        subject: row.try_get("subject")?,
        data: row.try_get("data")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
