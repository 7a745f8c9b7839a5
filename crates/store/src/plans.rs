//! The `plans` table: each card's payment plan, the domain [`Plan`] stored as a JSON document beside the columns
//! that queries need. Updates are guarded by a version, like cards.

use chrono::{DateTime, Utc};
use ghostcard_domain::plan::Plan;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Found, Pending, Reads, Result, StoreError, Tx, for_update, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub id: String,
    pub card_id: String,
    pub cardholder_id: String,
    pub plan: Plan,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the job runner next has work on this plan (see the server's plan jobs); `None`: nothing scheduled.
    pub next_run_at: Option<DateTime<Utc>>,
    pub version: i64,
}

pub async fn insert(tx: &mut Tx, record: &PlanRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO plans (id, card_id, cardholder_id, kind, status, currency, balance, document, created_at, updated_at, \
         version, next_run_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&record.id)
    .bind(&record.card_id)
    .bind(&record.cardholder_id)
    .bind(record.plan.kind.as_str())
    .bind(record.plan.status.as_str())
    .bind(record.plan.currency.code())
    .bind(record.plan.balance())
    .bind(document(&record.plan)?)
    .bind(to_micros(record.created_at))
    .bind(to_micros(record.updated_at))
    .bind(record.version)
    .bind(record.next_run_at.map(to_micros))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// The plan `id`, locked for writing on PostgreSQL.
pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<PlanRecord>> {
    let sql = format!("SELECT * FROM plans WHERE id = $1{}", for_update(tx));
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Writes the plan if nobody changed it since it was read; bumps the version.
pub async fn update(tx: &mut Tx, record: &mut PlanRecord, at: DateTime<Utc>) -> Result<()> {
    let result = sqlx::query(
        "UPDATE plans SET status = $1, balance = $2, document = $3, updated_at = $4, next_run_at = $7, \
         version = version + 1 WHERE id = $5 AND version = $6",
    )
    .bind(record.plan.status.as_str())
    .bind(record.plan.balance())
    .bind(document(&record.plan)?)
    .bind(to_micros(at))
    .bind(&record.id)
    .bind(record.version)
    .bind(record.next_run_at.map(to_micros))
    .execute(&mut **tx)
    .await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Stale);
    }
    record.version += 1;
    record.updated_at = at;
    Ok(())
}

/// The cardholder's active plans (for purchase power).
pub async fn active_for_cardholder(tx: &mut Tx, cardholder_id: &str) -> Result<Vec<PlanRecord>> {
    let rows = sqlx::query("SELECT * FROM plans WHERE cardholder_id = $1 AND status = 'active' ORDER BY id")
        .bind(cardholder_id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The active plans of these cardholders.
pub async fn active_for_cardholders(tx: &mut Tx, cardholder_ids: &[String]) -> Result<Vec<PlanRecord>> {
    let mut reads = Reads::new(tx);
    let pending = add_active_for_cardholders(&mut reads, cardholder_ids);
    active_for_cardholders_in(&reads.run(tx).await?, &pending)
}

/// [`active_for_cardholders`], added to `reads`.
pub fn add_active_for_cardholders(reads: &mut Reads, cardholder_ids: &[String]) -> Pending {
    reads.push_in_lists(&[], cardholder_ids, |member| {
        format!("SELECT * FROM plans WHERE status = 'active' AND cardholder_id{member}")
    })
}

/// What [`add_active_for_cardholders`] found.
pub fn active_for_cardholders_in(found: &Found, pending: &Pending) -> Result<Vec<PlanRecord>> {
    found.rows(pending).map(from_row).collect()
}

/// Ids of plans with work due at `now`, the earliest first.
pub async fn due(tx: &mut Tx, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM plans WHERE next_run_at <= $1 ORDER BY next_run_at, id LIMIT $2")
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?)
}

/// When the earliest plan work after `after` falls due.
pub async fn next_due(tx: &mut Tx, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let next: Option<i64> = sqlx::query_scalar("SELECT MIN(next_run_at) FROM plans WHERE next_run_at > $1")
        .bind(to_micros(after))
        .fetch_one(&mut **tx)
        .await?;
    next.map(from_micros).transpose()
}

/// The plan of a card.
pub async fn for_card(tx: &mut Tx, card_id: &str) -> Result<Option<PlanRecord>> {
    let row = sqlx::query("SELECT * FROM plans WHERE card_id = $1").bind(card_id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// How many of the cardholder's plans were completed without a late fee.
pub async fn repaid_without_late_fee(tx: &mut Tx, cardholder_id: &str) -> Result<u32> {
    let documents: Vec<String> =
        sqlx::query_scalar("SELECT document FROM plans WHERE cardholder_id = $1 AND status = 'completed'")
            .bind(cardholder_id)
            .fetch_all(&mut **tx)
            .await?;
    let mut count = 0;
    for text in documents {
        let plan: Plan =
            serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("plan document: {error}")))?;
        if plan.fees == 0 && plan.kind.is_pay_later() {
            count += 1;
        }
    }
    Ok(count)
}

fn document(plan: &Plan) -> Result<String> {
    serde_json::to_string(plan).map_err(|error| StoreError::Corrupt(format!("plan document: {error}")))
}

fn from_row(row: &AnyRow) -> Result<PlanRecord> {
    let text: String = row.try_get("document")?;
    Ok(PlanRecord {
        id: row.try_get("id")?,
        card_id: row.try_get("card_id")?,
        cardholder_id: row.try_get("cardholder_id")?,
        plan: serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("plan document: {error}")))?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        next_run_at: row.try_get::<Option<i64>, _>("next_run_at")?.map(from_micros).transpose()?,
        version: row.try_get("version")?,
    })
}
