//! The `api_keys` table. Keys are stored as a hash; the key itself is shown once, when created.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// SHA-256 of the key.
    pub key_hash: Vec<u8>,
    /// The first characters of the key, to recognize it in a list.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert(tx: &mut Tx, key: &ApiKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, prefix, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.key_hash)
    .bind(&key.prefix)
    .bind(to_micros(key.created_at))
    .bind(key.revoked_at.map(to_micros))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// The key with this hash, if it exists and is not revoked.
pub async fn find_active(tx: &mut Tx, key_hash: &[u8]) -> Result<Option<ApiKey>> {
    let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(key_hash)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Revokes a key by id or name; returns whether one was revoked.
pub async fn revoke(tx: &mut Tx, id_or_name: &str, at: DateTime<Utc>) -> Result<bool> {
    let result = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL")
        .bind(to_micros(at))
        .bind(id_or_name)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub async fn list(tx: &mut Tx) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at").fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        prefix: row.try_get("prefix")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(from_micros).transpose()?,
    })
}
