//! The `funding_sources` table: the cardholder's linked debit or credit card, as a gateway token. The raw number
//! of a funding card is never stored.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingSource {
    pub id: String,
    pub cardholder_id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    /// The funding gateway's reference for the card (a token, never the number).
    pub gateway_token: String,
    /// `active` or `removed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut Tx, source: &FundingSource) -> Result<()> {
    insert_many(tx, std::slice::from_ref(source)).await
}

/// Inserts many funding sources with multi-row statements (provisioning, benchmarks).
pub async fn insert_many(tx: &mut Tx, sources: &[FundingSource]) -> Result<()> {
    const COLUMNS: usize = 9;
    for chunk in sources.chunks(crate::rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO funding_sources (id, cardholder_id, brand, last4, exp_month, exp_year, gateway_token, status, \
             created_at) VALUES {}",
            crate::placeholders(tx, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for source in chunk {
            query = query
                .bind(&source.id)
                .bind(&source.cardholder_id)
                .bind(&source.brand)
                .bind(&source.last4)
                .bind(source.exp_month)
                .bind(source.exp_year)
                .bind(&source.gateway_token)
                .bind(&source.status)
                .bind(to_micros(source.created_at));
        }
        query.execute(&mut **tx).await.map_err(StoreError::from_insert)?;
    }
    Ok(())
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<FundingSource>> {
    let row = sqlx::query("SELECT * FROM funding_sources WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The cardholder's funding sources, oldest first.
pub async fn for_cardholder(tx: &mut Tx, cardholder_id: &str) -> Result<Vec<FundingSource>> {
    let rows = sqlx::query("SELECT * FROM funding_sources WHERE cardholder_id = $1 ORDER BY id")
        .bind(cardholder_id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &AnyRow) -> Result<FundingSource> {
    Ok(FundingSource {
        id: row.try_get("id")?,
        cardholder_id: row.try_get("cardholder_id")?,
        brand: row.try_get("brand")?,
        last4: row.try_get("last4")?,
        exp_month: row.try_get("exp_month")?,
        exp_year: row.try_get("exp_year")?,
        gateway_token: row.try_get("gateway_token")?,
        status: row.try_get("status")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
