//! The `web_sessions` table: signed-in cardholders of the web app, by a keyed hash of their session token.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub cardholder_id: String,
    /// The token each of the session's forms carries (CSRF protection).
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut Tx, token_hash: &[u8], session: &WebSession) -> Result<()> {
    sqlx::query(
        "INSERT INTO web_sessions (token_hash, cardholder_id, csrf, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(&session.cardholder_id)
    .bind(&session.csrf)
    .bind(to_micros(session.created_at))
    .bind(to_micros(session.last_seen_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(tx: &mut Tx, token_hash: &[u8]) -> Result<Option<WebSession>> {
    let row = sqlx::query("SELECT * FROM web_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| {
        Ok(WebSession {
            cardholder_id: row.try_get("cardholder_id")?,
            csrf: row.try_get("csrf")?,
            created_at: from_micros(row.try_get("created_at")?)?,
            last_seen_at: from_micros(row.try_get("last_seen_at")?)?,
        })
    })
    .transpose()
}

pub async fn touch(tx: &mut Tx, token_hash: &[u8], at: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE token_hash = $2")
        .bind(to_micros(at))
        .bind(token_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn delete(tx: &mut Tx, token_hash: &[u8]) -> Result<()> {
    sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1").bind(token_hash).execute(&mut **tx).await?;
    Ok(())
}
