//! The `idempotency_keys` table. A POST with an `Idempotency-Key` first claims the key ([`claim`]); the change it
//! guards completes the record in the same transaction ([`complete`]), so a replay can never disagree with what
//! was written. The record holds a keyed hash of the request body, never the body.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use crate::{Result, StoreError, Tx, to_micros};

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its earlier claim was abandoned): go ahead.
    Claimed,
    /// The same request already completed: send this response again.
    Replay { status: u16, body: String },
    /// The key was used with a different body.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

/// Claims `key` for a request whose body hashes to `request_hash`. Records older than `retention` are forgotten;
/// an in-flight claim older than `abandon_after` (its process died) may be taken over.
pub async fn claim(
    tx: &mut Tx,
    scope: &str,
    key: &str,
    request_hash: &[u8],
    now: DateTime<Utc>,
    retention: Duration,
    abandon_after: Duration,
) -> Result<Claim> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at <= $3")
        .bind(scope)
        .bind(key)
        .bind(to_micros(now - retention))
        .execute(&mut **tx)
        .await?;
    // Insert first: of concurrent claims exactly one inserts (PostgreSQL makes the others wait for it, then see
    // its row); the others read what is there.
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at) VALUES ($1, $2, $3, 'in_flight', $4) \
         ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Claimed);
    }
    let row = sqlx::query("SELECT * FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .fetch_one(&mut **tx)
        .await?;
    let stored_hash: Vec<u8> = row.try_get("request_hash")?;
    if stored_hash != request_hash {
        return Ok(Claim::Mismatch);
    }
    let state: String = row.try_get("state")?;
    if state == "done" {
        let status: i64 = row.try_get("response_status")?;
        let body: Option<String> = row.try_get("response_body")?;
        return Ok(Claim::Replay {
            status: u16::try_from(status).map_err(|_| StoreError::Corrupt("idempotency status".to_owned()))?,
            body: body.unwrap_or_default(),
        });
    }
    let created_at: i64 = row.try_get("created_at")?;
    if created_at <= to_micros(now - abandon_after) {
        sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE scope = $2 AND key = $3")
            .bind(to_micros(now))
            .bind(scope)
            .bind(key)
            .execute(&mut **tx)
            .await?;
        return Ok(Claim::Claimed);
    }
    Ok(Claim::InFlight)
}

/// Records the response of a claimed key.
pub async fn complete(tx: &mut Tx, scope: &str, key: &str, status: u16, body: &str) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $1, response_body = $2 WHERE scope = $3 AND key = $4",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(scope)
    .bind(key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets a claim whose request failed in a way that may succeed when retried (a server error).
pub async fn release(tx: &mut Tx, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'")
        .bind(scope)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes the records created at or before `before` (docs/reference/rest.md keeps them 24 hours), at most `limit` of
/// them; returns how many went. A stored response is not kept a moment longer than a replay may need it.
pub async fn purge(tx: &mut Tx, before: DateTime<Utc>, limit: u32) -> Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (scope, key) IN \
         (SELECT scope, key FROM idempotency_keys WHERE created_at <= $1 ORDER BY created_at LIMIT $2)",
    )
    .bind(to_micros(before))
    .bind(i64::from(limit))
    .execute(&mut **tx)
    .await?;
    Ok(deleted.rows_affected())
}
