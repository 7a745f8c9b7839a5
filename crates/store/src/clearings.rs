//! The `clearings` table: clearing records as received and what became of them.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingRecord {
    pub id: String,
    /// The network's record id: a record id seen before is never posted again.
    pub record_id: String,
    /// `capture`, `refund`, `force_post`.
    pub kind: String,
    pub authorization_id: Option<String>,
    pub card_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    /// `posted`, `unmatched`, `rejected`.
    pub result: String,
    /// Comma-separated review flags (`above_hold`, `force_post`).
    pub flags: String,
    pub created_at: DateTime<Utc>,
}

/// Inserts the record; [`StoreError::Conflict`] when its record id was seen before.
pub async fn insert(tx: &mut Tx, clearing: &ClearingRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO clearings (id, record_id, kind, authorization_id, card_id, amount, currency, result, flags, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&clearing.id)
    .bind(&clearing.record_id)
    .bind(&clearing.kind)
    .bind(&clearing.authorization_id)
    .bind(&clearing.card_id)
    .bind(clearing.amount)
    .bind(&clearing.currency)
    .bind(&clearing.result)
    .bind(&clearing.flags)
    .bind(to_micros(clearing.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn find_by_record_id(tx: &mut Tx, record_id: &str) -> Result<Option<ClearingRecord>> {
    let row =
        sqlx::query("SELECT * FROM clearings WHERE record_id = $1").bind(record_id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The card's posted clearing records (captures, force posts, refunds), oldest first.
pub async fn for_card(tx: &mut Tx, card_id: &str) -> Result<Vec<ClearingRecord>> {
    let rows = sqlx::query("SELECT * FROM clearings WHERE card_id = $1 AND result = 'posted' ORDER BY created_at, id")
        .bind(card_id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<ClearingRecord> {
    Ok(ClearingRecord {
        id: row.try_get("id")?,
        record_id: row.try_get("record_id")?,
        kind: row.try_get("kind")?,
        authorization_id: row.try_get("authorization_id")?,
        card_id: row.try_get("card_id")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        result: row.try_get("result")?,
        flags: row.try_get("flags")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
