//! The `data_keys` table: data-encryption and lookup keys, wrapped by key-encryption keys. This crate stores the
//! wrapped bytes only; wrapping and unwrapping belong to the server's vault.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, StoreError, Tx, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// `card_number` (encryption) or `lookup` (keyed hash).
    pub purpose: String,
    pub version: i64,
    /// Fingerprint of the KEK that wrapped it.
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

/// Adds a wrapped key; [`StoreError::Conflict`] if this version is already wrapped by this KEK.
pub async fn insert(tx: &mut Tx, key: &WrappedKey, at: DateTime<Utc>) -> Result<()> {
    sqlx::query("INSERT INTO data_keys (purpose, version, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&key.purpose)
        .bind(key.version)
        .bind(&key.kek_id)
        .bind(&key.wrapped)
        .bind(to_micros(at))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(())
}

/// Every key wrapped by the KEK `kek_id`.
pub async fn wrapped_by(tx: &mut Tx, kek_id: &str) -> Result<Vec<WrappedKey>> {
    let rows = sqlx::query(
        "SELECT purpose, version, kek_id, wrapped FROM data_keys WHERE kek_id = $1 ORDER BY purpose, version",
    )
    .bind(kek_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(WrappedKey {
                purpose: row.try_get("purpose")?,
                version: row.try_get("version")?,
                kek_id: row.try_get("kek_id")?,
                wrapped: row.try_get("wrapped")?,
            })
        })
        .collect()
}

/// How many wrapped keys exist at all (zero on a new database).
pub async fn count(tx: &mut Tx) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM data_keys").fetch_one(&mut **tx).await?)
}

/// The KEK fingerprints in use.
pub async fn kek_ids(tx: &mut Tx) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT kek_id FROM data_keys ORDER BY kek_id").fetch_all(&mut **tx).await?)
}
