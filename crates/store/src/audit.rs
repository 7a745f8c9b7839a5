//! The append-only `audit_log`: who did what to which resource, when, from where, and how it ended.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Page, Result, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// `api_key:key_…`, `cli`, `cardholder:ch_…`, `operator:…`, or `anonymous`.
    pub actor: String,
    /// `card.reveal`, `api_key.create`, `authentication.failed`, …
    pub action: String,
    pub resource: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Where the request came from (remote address), when known.
    pub origin: Option<String>,
    /// Free text for people; never card data.
    pub detail: Option<String>,
}

pub async fn append(tx: &mut Tx, entry: &AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, resource, outcome, origin, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(to_micros(entry.at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.resource)
    .bind(&entry.outcome)
    .bind(&entry.origin)
    .bind(&entry.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The newest entries first, optionally only one action.
pub async fn list(tx: &mut Tx, action: Option<&str>, limit: u32) -> Result<Page<AuditEntry>> {
    let rows = sqlx::query("SELECT * FROM audit_log WHERE ($1 IS NULL OR action = $1) ORDER BY id DESC LIMIT $2")
        .bind(action)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut **tx)
        .await?;
    let entries = rows
        .iter()
        .map(|row| {
            Ok(AuditEntry {
                at: from_micros(row.try_get("at")?)?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                resource: row.try_get("resource")?,
                outcome: row.try_get("outcome")?,
                origin: row.try_get("origin")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Page::from_rows(entries, limit))
}
