//! The `reversals` table: every 0400/0420 received, with what it matched (or not) and how it was answered.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use ghostcard_domain::engine::NetworkKey;

use crate::together::Value;
use crate::{Found, Pending, Reads, Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalRecord {
    pub id: String,
    pub mti: String,
    /// This reversal's own network key (field 32 + 11 + 7).
    pub acquirer_id: String,
    pub stan: String,
    pub transmission_time: String,
    /// The original's key from field 90, when sent.
    pub original_acquirer_id: Option<String>,
    pub original_stan: Option<String>,
    pub original_transmission_time: Option<String>,
    pub rrn: Option<String>,
    pub number_hash: Vec<u8>,
    pub amount: i64,
    /// Field 95's actual amount after a partial reversal.
    pub replacement_amount: Option<i64>,
    /// The matched authorization; `None` for an unknown original.
    pub authorization_id: Option<String>,
    pub response_code: String,
    pub created_at: DateTime<Utc>,
}

/// Records a reversal; [`StoreError::Conflict`] when its network key was seen before.
pub async fn insert(tx: &mut Tx, reversal: &ReversalRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO reversals (id, mti, acquirer_id, stan, transmission_time, original_acquirer_id, original_stan, \
         original_transmission_time, rrn, number_hash, amount, replacement_amount, authorization_id, response_code, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&reversal.id)
    .bind(&reversal.mti)
    .bind(&reversal.acquirer_id)
    .bind(&reversal.stan)
    .bind(&reversal.transmission_time)
    .bind(&reversal.original_acquirer_id)
    .bind(&reversal.original_stan)
    .bind(&reversal.original_transmission_time)
    .bind(&reversal.rrn)
    .bind(&reversal.number_hash)
    .bind(reversal.amount)
    .bind(reversal.replacement_amount)
    .bind(&reversal.authorization_id)
    .bind(&reversal.response_code)
    .bind(to_micros(reversal.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// The reversal with this network key, if one was recorded.
pub async fn find_by_network_key(tx: &mut Tx, key: &NetworkKey) -> Result<Option<ReversalRecord>> {
    let row = sqlx::query("SELECT * FROM reversals WHERE acquirer_id = $1 AND stan = $2 AND transmission_time = $3")
        .bind(&key.acquirer_id)
        .bind(&key.stan)
        .bind(&key.transmission_time)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Which of these originals' keys an unmatched reversal already named (the reversal came first), added to `reads`.
pub fn add_reversed_before_arrival_many(reads: &mut Reads, keys: &[NetworkKey]) -> Pending {
    let mut statements = Vec::new();
    for chunk in keys.chunks(crate::rows_per_statement(3)) {
        // A join with the keys, not a row-value IN: SQLite would scan the whole table for the latter.
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for key in chunk {
            values.extend([Value::from(&key.acquirer_id), (&key.stan).into(), (&key.transmission_time).into()]);
        }
        let (rows, values) = crate::joined_rows(reads, values, 3);
        let sql = format!(
            "WITH wanted (acquirer_id, stan, transmission_time) AS ({rows}) \
             SELECT r.original_acquirer_id, r.original_stan, r.original_transmission_time FROM wanted \
             JOIN reversals r ON r.original_acquirer_id = wanted.acquirer_id AND r.original_stan = wanted.stan \
             AND r.original_transmission_time = wanted.transmission_time WHERE r.authorization_id IS NULL"
        );
        statements.push((sql, values));
    }
    reads.push(statements)
}

/// What [`add_reversed_before_arrival_many`] found.
pub fn reversed_before_arrival_in(found: &Found, pending: &Pending) -> Result<Vec<NetworkKey>> {
    found
        .rows(pending)
        .map(|row| {
            Ok(NetworkKey { acquirer_id: row.try_get(0)?, stan: row.try_get(1)?, transmission_time: row.try_get(2)? })
        })
        .collect()
}

fn from_row(row: &AnyRow) -> Result<ReversalRecord> {
    Ok(ReversalRecord {
        id: row.try_get("id")?,
        mti: row.try_get("mti")?,
        acquirer_id: row.try_get("acquirer_id")?,
        stan: row.try_get("stan")?,
        transmission_time: row.try_get("transmission_time")?,
        original_acquirer_id: row.try_get("original_acquirer_id")?,
        original_stan: row.try_get("original_stan")?,
        original_transmission_time: row.try_get("original_transmission_time")?,
        rrn: row.try_get("rrn")?,
        number_hash: row.try_get("number_hash")?,
        amount: row.try_get("amount")?,
        replacement_amount: row.try_get("replacement_amount")?,
        authorization_id: row.try_get("authorization_id")?,
        response_code: row.try_get("response_code")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
