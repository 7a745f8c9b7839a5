//! The `jobs` table: durable work with side effects outside the database (funding-gateway calls, webhook
//! deliveries). A job is enqueued in the transaction of the change that needs it, under a `dedupe_key` that makes
//! enqueueing the same work twice a no-op. Runners claim due jobs with a lease (PostgreSQL: `FOR UPDATE SKIP
//! LOCKED`, so runners in several processes never claim one job at once; SQLite has one writer at a time), run
//! them, and record the outcome under their lease: done, pending again later, or `dead` for an operator.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Page, Result, StoreError, Tx, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub dedupe_key: String,
    /// JSON.
    pub payload: String,
    /// `pending`, `done`, `dead`.
    pub status: String,
    pub run_at: DateTime<Utc>,
    /// Claims so far (a claim whose runner died counts too).
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Enqueues `job` (status `pending`) unless a job with its dedupe key exists. Returns whether it was new.
pub async fn enqueue(
    tx: &mut Tx,
    id: &str,
    kind: &str,
    dedupe_key: &str,
    payload: &str,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO jobs (id, kind, dedupe_key, payload, status, run_at, attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, 0, $6, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(dedupe_key)
    .bind(payload)
    .bind(to_micros(run_at))
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Claims up to `limit` pending jobs due at `now` whose lease (if any) has run out, for `owner` until
/// `leased_until`; oldest due first. Each claim counts as an attempt.
pub async fn claim(
    tx: &mut Tx,
    owner: &str,
    now: DateTime<Utc>,
    leased_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Job>> {
    let skip_locked = if tx.backend_name() == "PostgreSQL" { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE jobs SET leased_by = $1, leased_until = $2, attempts = attempts + 1, updated_at = $3 WHERE id IN \
         (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= $3 AND (leased_until IS NULL OR leased_until <= $3) \
         ORDER BY run_at, id LIMIT $4{skip_locked}) RETURNING *"
    );
    let rows = sqlx::query(&sql)
        .bind(owner)
        .bind(to_micros(leased_until))
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    let mut jobs = rows.iter().map(from_row).collect::<Result<Vec<Job>>>()?;
    jobs.sort_by(|a, b| (a.run_at, &a.id).cmp(&(b.run_at, &b.id)));
    Ok(jobs)
}

/// Claims the pending job `id` for `owner` until `leased_until` (to run it at once, e.g. inside a request).
pub async fn lease(tx: &mut Tx, id: &str, owner: &str, leased_until: DateTime<Utc>, now: DateTime<Utc>) -> Result<Job> {
    let row = sqlx::query(
        "UPDATE jobs SET leased_by = $1, leased_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = $4 AND status = 'pending' RETURNING *",
    )
    .bind(owner)
    .bind(to_micros(leased_until))
    .bind(to_micros(now))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| from_row(&row)).transpose()?.ok_or(StoreError::Stale)
}

/// Records the outcome of a claimed job, if `owner` still holds its lease: `done`, `pending` again at `run_at`
/// (a retry), or `dead`. [`StoreError::Stale`] if the lease was lost (another runner took the job over).
pub async fn finish(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    status: &str,
    run_at: Option<DateTime<Utc>>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let result = sqlx::query(
        "UPDATE jobs SET status = $1, run_at = COALESCE($2, run_at), last_error = $3, leased_by = NULL, \
         leased_until = NULL, updated_at = $4 WHERE id = $5 AND leased_by = $6 AND status = 'pending'",
    )
    .bind(status)
    .bind(run_at.map(to_micros))
    .bind(error)
    .bind(to_micros(now))
    .bind(id)
    .bind(owner)
    .execute(&mut **tx)
    .await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Stale);
    }
    Ok(())
}

/// An operator's retry of a dead job: pending again at `now`, attempts from zero. False if it was not dead.
pub async fn revive(tx: &mut Tx, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let result = sqlx::query(
        "UPDATE jobs SET status = 'pending', run_at = $1, attempts = 0, leased_by = NULL, leased_until = NULL, \
         updated_at = $1 WHERE id = $2 AND status = 'dead'",
    )
    .bind(to_micros(now))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Job>> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Jobs newest first, optionally of one status and kind.
pub async fn list(
    tx: &mut Tx,
    status: Option<&str>,
    kind: Option<&str>,
    limit: u32,
    starting_after: Option<&str>,
) -> Result<Page<Job>> {
    let rows = sqlx::query(
        "SELECT * FROM jobs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR kind = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
    )
    .bind(status)
    .bind(kind)
    .bind(starting_after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Page::from_rows(rows.iter().map(from_row).collect::<Result<Vec<Job>>>()?, limit))
}

/// Whether a pending job is due at `now` (leased or not).
pub async fn any_due(tx: &mut Tx, now: DateTime<Utc>) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE status = 'pending' AND run_at <= $1 LIMIT 1")
        .bind(to_micros(now))
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// When the earliest pending job due after `after` falls due.
pub async fn next_due(tx: &mut Tx, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let next: Option<i64> = sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'pending' AND run_at > $1")
        .bind(to_micros(after))
        .fetch_one(&mut **tx)
        .await?;
    next.map(from_micros).transpose()
}

fn from_row(row: &AnyRow) -> Result<Job> {
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        dedupe_key: row.try_get("dedupe_key")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        run_at: from_micros(row.try_get("run_at")?)?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}
