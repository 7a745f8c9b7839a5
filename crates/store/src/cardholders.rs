//! The `cardholders` table.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Found, Pending, Reads, Result, StoreError, Target, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cardholder {
    pub id: String,
    pub email: String,
    pub name: String,
    /// ISO 3166 alpha-2.
    pub country: String,
    /// Argon2id PHC string, for the web app's sign-in.
    pub password_hash: Option<String>,
    /// `active` or `restricted`.
    pub status: String,
    pub restricted_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Inserts a cardholder; [`StoreError::Conflict`] when the email is taken.
pub async fn insert(tx: &mut Tx, cardholder: &Cardholder) -> Result<()> {
    insert_many(tx, std::slice::from_ref(cardholder)).await
}

/// Inserts many cardholders with multi-row statements (provisioning, benchmarks).
pub async fn insert_many(tx: &mut Tx, cardholders: &[Cardholder]) -> Result<()> {
    const COLUMNS: usize = 8;
    for chunk in cardholders.chunks(crate::rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO cardholders (id, email, name, country, password_hash, status, restricted_reason, created_at) VALUES {}",
            crate::placeholders(tx, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for cardholder in chunk {
            query = query
                .bind(&cardholder.id)
                .bind(&cardholder.email)
                .bind(&cardholder.name)
                .bind(&cardholder.country)
                .bind(&cardholder.password_hash)
                .bind(&cardholder.status)
                .bind(&cardholder.restricted_reason)
                .bind(to_micros(cardholder.created_at));
        }
        query.execute(&mut **tx).await.map_err(StoreError::from_insert)?;
    }
    Ok(())
}

/// A cardholder's status and sign-up time, as the authorization path reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// The status and sign-up time of each of these cardholders.
pub async fn statuses(tx: &mut Tx, ids: &[String]) -> Result<std::collections::HashMap<String, Standing>> {
    let mut reads = Reads::new(tx);
    let pending = add_statuses(&mut reads, ids);
    statuses_in(&reads.run(tx).await?, &pending)
}

/// [`statuses`], added to `reads`.
pub fn add_statuses(reads: &mut Reads, ids: &[String]) -> Pending {
    let postgres = reads.is_postgres();
    reads.push_in_lists(&[], ids, |member| {
        let columns = "id, status, created_at";
        crate::packed(postgres, columns, format!("SELECT {columns} FROM cardholders WHERE id{member}"))
    })
}

/// What [`add_statuses`] found.
pub fn statuses_in(found: &Found, pending: &Pending) -> Result<std::collections::HashMap<String, Standing>> {
    let rows: Vec<(String, String, i64)> = match found.packed(pending) {
        Some(rows) => rows?,
        None => found
            .rows(pending)
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<_>>()?,
    };
    rows.into_iter()
        .map(|(id, status, created_at)| Ok((id, Standing { status, created_at: from_micros(created_at)? })))
        .collect()
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Cardholder>> {
    let row = sqlx::query("SELECT * FROM cardholders WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

fn from_row(row: &AnyRow) -> Result<Cardholder> {
    Ok(Cardholder {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        country: row.try_get("country")?,
        password_hash: row.try_get("password_hash")?,
        status: row.try_get("status")?,
        restricted_reason: row.try_get("restricted_reason")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

/// Sets the cardholder's standing (`active`, or `restricted` with a reason); returns whether the cardholder exists.
pub async fn set_status(tx: &mut Tx, id: &str, status: &str, reason: Option<&str>) -> Result<bool> {
    let result = sqlx::query("UPDATE cardholders SET status = $1, restricted_reason = $2 WHERE id = $3")
        .bind(status)
        .bind(reason)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Cardholders in `status`, newest first (e.g. the restricted ones an operator reviews).
pub async fn in_status(tx: &mut Tx, status: &str, limit: u32) -> Result<Vec<Cardholder>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM cardholders WHERE status = $1 ORDER BY id DESC LIMIT $2")
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    get_all(tx, ids).await
}

/// Cardholders whose email or id contains `text` (the operator's search), newest first.
pub async fn search(tx: &mut Tx, text: &str, limit: u32) -> Result<Vec<Cardholder>> {
    let pattern = format!("%{}%", text.trim().to_lowercase().replace(['%', '_'], ""));
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM cardholders WHERE email LIKE $1 OR id LIKE $1 ORDER BY id DESC LIMIT $2")
            .bind(pattern)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?;
    get_all(tx, ids).await
}

async fn get_all(tx: &mut Tx, ids: Vec<String>) -> Result<Vec<Cardholder>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.extend(get(tx, &id).await?);
    }
    Ok(found)
}
