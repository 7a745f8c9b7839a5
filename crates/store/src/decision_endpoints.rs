//! The `decision_endpoints` table: where the issuer decides would-be approvals in real time. At most one is enabled;
//! its signing secret is stored encrypted.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionEndpoint {
    pub id: String,
    pub url: String,
    pub timeout_ms: i64,
    /// AES-256-GCM ciphertext of the signing secret under data key `secret_version`.
    pub secret_version: i64,
    pub secret_ciphertext: Vec<u8>,
    /// `enabled` or `disabled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Disables the enabled endpoint, if any (returning its id), and writes `endpoint` enabled.
pub async fn replace(tx: &mut Tx, endpoint: &DecisionEndpoint) -> Result<Option<String>> {
    let before: Option<String> = sqlx::query_scalar("SELECT id FROM decision_endpoints WHERE status = 'enabled'")
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(id) = &before {
        disable(tx, id, endpoint.created_at).await?;
    }
    sqlx::query(
        "INSERT INTO decision_endpoints (id, url, timeout_ms, secret_version, secret_ciphertext, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'enabled', $6)",
    )
    .bind(&endpoint.id)
    .bind(&endpoint.url)
    .bind(endpoint.timeout_ms)
    .bind(endpoint.secret_version)
    .bind(&endpoint.secret_ciphertext)
    .bind(to_micros(endpoint.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(before)
}

/// Disables the endpoint (false if it was not enabled).
pub async fn disable(tx: &mut Tx, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE decision_endpoints SET status = 'disabled', disabled_at = $1 WHERE id = $2 AND status = 'enabled'",
    )
    .bind(to_micros(now))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The enabled endpoint, if any.
pub async fn enabled(tx: &mut Tx) -> Result<Option<DecisionEndpoint>> {
    let row =
        sqlx::query("SELECT * FROM decision_endpoints WHERE status = 'enabled'").fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<DecisionEndpoint>> {
    let row = sqlx::query("SELECT * FROM decision_endpoints WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Every endpoint, newest first (a deployment has a handful).
pub async fn all(tx: &mut Tx) -> Result<Vec<DecisionEndpoint>> {
    let rows = sqlx::query("SELECT * FROM decision_endpoints ORDER BY id DESC LIMIT 100").fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &AnyRow) -> Result<DecisionEndpoint> {
    Ok(DecisionEndpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        timeout_ms: row.try_get("timeout_ms")?,
        secret_version: row.try_get("secret_version")?,
        secret_ciphertext: row.try_get("secret_ciphertext")?,
        status: row.try_get("status")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(from_micros).transpose()?,
    })
}
