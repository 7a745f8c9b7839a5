//! The `operators` table: the issuer's staff who use the console.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    pub email: String,
    pub name: String,
    /// `viewer` or `admin`.
    pub role: String,
    /// Argon2id.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// Inserts the operator; [`StoreError::Conflict`] if the email is taken.
pub async fn insert(tx: &mut Tx, operator: &Operator) -> Result<()> {
    sqlx::query(
        "INSERT INTO operators (id, email, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&operator.id)
    .bind(&operator.email)
    .bind(&operator.name)
    .bind(&operator.role)
    .bind(&operator.password_hash)
    .bind(to_micros(operator.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Operator>> {
    let row = sqlx::query("SELECT * FROM operators WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

fn from_row(row: &AnyRow) -> Result<Operator> {
    Ok(Operator {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}
