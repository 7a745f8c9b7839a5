//! The `webhook_endpoints` table: where events are delivered, and each endpoint's signing secret (encrypted).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Page, Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// Event types delivered; `*` delivers all.
    pub events: Vec<String>,
    /// The id of the last event turned into deliveries (at creation: an id below every later event's).
    pub cursor: String,
    /// AES-256-GCM ciphertext of the signing secret under data key `secret_version`.
    pub secret_version: i64,
    pub secret_ciphertext: Vec<u8>,
    /// `enabled`, or `failing` once a delivery exhausted its retries (a later success enables it again).
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl Endpoint {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|wanted| wanted == "*" || wanted == kind)
    }
}

pub async fn insert(tx: &mut Tx, endpoint: &Endpoint) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, events, cursor, secret_version, secret_ciphertext, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&endpoint.id)
    .bind(&endpoint.url)
    .bind(endpoint.events.join(","))
    .bind(&endpoint.cursor)
    .bind(endpoint.secret_version)
    .bind(&endpoint.secret_ciphertext)
    .bind(&endpoint.status)
    .bind(to_micros(endpoint.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Endpoint>> {
    let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Every endpoint (deployments have a handful).
pub async fn all(tx: &mut Tx) -> Result<Vec<Endpoint>> {
    let rows = sqlx::query("SELECT * FROM webhook_endpoints ORDER BY id").fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

pub async fn list(tx: &mut Tx, limit: u32, starting_after: Option<&str>) -> Result<Page<Endpoint>> {
    let rows = sqlx::query("SELECT * FROM webhook_endpoints WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2")
        .bind(starting_after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut **tx)
        .await?;
    Ok(Page::from_rows(rows.iter().map(from_row).collect::<Result<Vec<Endpoint>>>()?, limit))
}

/// Deletes the endpoint; its deliveries still pending end (`done`, "endpoint deleted"). False if there was none.
pub async fn delete(tx: &mut Tx, id: &str, now: DateTime<Utc>) -> Result<bool> {
    sqlx::query(
        "UPDATE jobs SET status = 'done', last_error = 'endpoint deleted', leased_by = NULL, leased_until = NULL, \
         updated_at = $1 WHERE kind = 'webhook' AND status IN ('pending', 'dead') \
         AND substr(dedupe_key, length(dedupe_key) - length($2)) = ':' || $2",
    )
    .bind(to_micros(now))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut **tx).await?;
    Ok(deleted.rows_affected() == 1)
}

/// The endpoint, locked for dispatching (PostgreSQL: `None` while another process dispatches it).
pub async fn lock(tx: &mut Tx, id: &str) -> Result<Option<Endpoint>> {
    let skip_locked = if tx.backend_name() == "PostgreSQL" { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!("SELECT * FROM webhook_endpoints WHERE id = $1{skip_locked}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

pub async fn set_cursor(tx: &mut Tx, id: &str, cursor: &str) -> Result<()> {
    sqlx::query("UPDATE webhook_endpoints SET cursor = $1 WHERE id = $2")
        .bind(cursor)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn set_status(tx: &mut Tx, id: &str, status: &str) -> Result<()> {
    sqlx::query("UPDATE webhook_endpoints SET status = $1 WHERE id = $2")
        .bind(status)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<Endpoint> {
    let events: String = row.try_get("events")?;
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: events.split(',').filter(|kind| !kind.is_empty()).map(str::to_owned).collect(),
        cursor: row.try_get("cursor")?,
        secret_version: row.try_get("secret_version")?,
        secret_ciphertext: row.try_get("secret_ciphertext")?,
        status: row.try_get("status")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
