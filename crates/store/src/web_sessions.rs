//! The `web_sessions` and `operator_sessions` tables: signed-in cardholders of the web app and operators of the
//! console, by a keyed hash of their session token; and both kinds of account's sign-in lockout state.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, Tx, from_micros, to_micros};

/// Whose sessions: cardholders' (`/app`) or operators' (`/ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Cardholder,
    Operator,
}

impl SessionKind {
    fn table(self) -> &'static str {
        match self {
            SessionKind::Cardholder => "web_sessions",
            SessionKind::Operator => "operator_sessions",
        }
    }

    /// The table of the accounts that sign in.
    fn accounts(self) -> &'static str {
        match self {
            SessionKind::Cardholder => "cardholders",
            SessionKind::Operator => "operators",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            SessionKind::Cardholder => "cardholder_id",
            SessionKind::Operator => "operator_id",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The cardholder or operator signed in.
    pub subject_id: String,
    /// The token each of the session's forms carries (CSRF protection).
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut Tx, kind: SessionKind, token_hash: &[u8], session: &WebSession) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (token_hash, {}, csrf, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)",
        kind.table(),
        kind.subject()
    );
    sqlx::query(&sql)
        .bind(token_hash)
        .bind(&session.subject_id)
        .bind(&session.csrf)
        .bind(to_micros(session.created_at))
        .bind(to_micros(session.last_seen_at))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn get(tx: &mut Tx, kind: SessionKind, token_hash: &[u8]) -> Result<Option<WebSession>> {
    let sql = format!("SELECT * FROM {} WHERE token_hash = $1", kind.table());
    let row = sqlx::query(&sql).bind(token_hash).fetch_optional(&mut **tx).await?;
    row.map(|row| {
        Ok(WebSession {
            subject_id: row.try_get(kind.subject())?,
            csrf: row.try_get("csrf")?,
            created_at: from_micros(row.try_get("created_at")?)?,
            last_seen_at: from_micros(row.try_get("last_seen_at")?)?,
        })
    })
    .transpose()
}

pub async fn touch(tx: &mut Tx, kind: SessionKind, token_hash: &[u8], at: DateTime<Utc>) -> Result<()> {
    let sql = format!("UPDATE {} SET last_seen_at = $1 WHERE token_hash = $2", kind.table());
    sqlx::query(&sql).bind(to_micros(at)).bind(token_hash).execute(&mut **tx).await?;
    Ok(())
}

pub async fn delete(tx: &mut Tx, kind: SessionKind, token_hash: &[u8]) -> Result<()> {
    let sql = format!("DELETE FROM {} WHERE token_hash = $1", kind.table());
    sqlx::query(&sql).bind(token_hash).execute(&mut **tx).await?;
    Ok(())
}

/// The account with this email (compared lower-case): (id, Argon2id password hash, if it has one).
pub async fn account_by_email(tx: &mut Tx, kind: SessionKind, email: &str) -> Result<Option<(String, Option<String>)>> {
    let sql = format!("SELECT id, password_hash FROM {} WHERE email = $1", kind.accounts());
    Ok(sqlx::query_as(&sql).bind(email.trim().to_lowercase()).fetch_optional(&mut **tx).await?)
}

/// Records a sign-in's outcome: a success clears the count of failures in a row; a failure adds one. (Accounts are
/// not locked: the server slows guessing down by rate, which cannot be used to lock an owner out.)
pub async fn record_sign_in(tx: &mut Tx, kind: SessionKind, id: &str, succeeded: bool) -> Result<()> {
    let table = kind.accounts();
    let sql = if succeeded {
        format!("UPDATE {table} SET failed_sign_ins = 0 WHERE id = $1")
    } else {
        format!("UPDATE {table} SET failed_sign_ins = failed_sign_ins + 1 WHERE id = $1")
    };
    sqlx::query(&sql).bind(id).execute(&mut **tx).await?;
    Ok(())
}
