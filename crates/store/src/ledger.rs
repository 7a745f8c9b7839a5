//! The `ledger_transfers` table: the domain ledger's transfers, persisted.
//!
//! [`commit`] writes a transaction's entries inside the caller's database transaction; the database assigns
//! transfer ids and its unique key on `pending_id` refuses a second resolution of a hold. [`verify`] loads every
//! transfer and runs the domain's invariant checker over them.

use chrono::{DateTime, Utc};
use ghostcard_domain::ledger::{
    AccountId, Committed, Entry, LedgerError, LedgerReport, Transfer, TransferId, TransferKind,
    verify as verify_transfers,
};
use ghostcard_domain::money::{Currency, Money};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError, Tx, to_micros};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CommitError {
    fn from(error: sqlx::Error) -> Self {
        CommitError::Store(StoreError::Database(error))
    }
}

/// Writes `entries` as transfers. Fails (and the caller must roll back) if a hold is unknown, already resolved
/// or smaller than its posting.
pub async fn commit(
    tx: &mut Tx,
    entries: &[Entry],
    at: DateTime<Utc>,
) -> std::result::Result<Vec<Committed>, CommitError> {
    let mut committed = Vec::with_capacity(entries.len());
    for entry in entries {
        committed.push(match entry {
            Entry::Post { debit, credit, amount, code } => {
                let id = insert(tx, debit, credit, *amount, "posted", None, code, at).await?;
                Committed { transfer: id, reheld: None }
            }
            Entry::Hold { debit, credit, amount, code } => {
                let id = insert(tx, debit, credit, *amount, "pending", None, code, at).await?;
                Committed { transfer: id, reheld: None }
            }
            Entry::PostHold { pending, amount, code } => {
                let held = load_pending(tx, *pending).await?;
                if amount.currency() != held.amount.currency() {
                    return Err(LedgerError::CurrencyMismatch.into());
                }
                if !amount.is_positive() {
                    return Err(LedgerError::NonPositiveAmount.into());
                }
                if amount.minor() > held.amount.minor() {
                    return Err(LedgerError::ExceedsPending(*pending).into());
                }
                let id =
                    insert(tx, &held.debit, &held.credit, *amount, "post_pending", Some(*pending), code, at).await?;
                let rest = held.amount.minor() - amount.minor();
                let reheld = if rest > 0 {
                    let rest = Money::new(rest, held.amount.currency());
                    Some(insert(tx, &held.debit, &held.credit, rest, "pending", None, "rehold", at).await?)
                } else {
                    None
                };
                Committed { transfer: id, reheld }
            }
            Entry::VoidHold { pending, code } => {
                let held = load_pending(tx, *pending).await?;
                let id = insert(tx, &held.debit, &held.credit, held.amount, "void_pending", Some(*pending), code, at)
                    .await?;
                Committed { transfer: id, reheld: None }
            }
        });
    }
    Ok(committed)
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut Tx,
    debit: &AccountId,
    credit: &AccountId,
    amount: Money,
    kind: &str,
    pending: Option<TransferId>,
    code: &str,
    at: DateTime<Utc>,
) -> std::result::Result<TransferId, CommitError> {
    if !amount.is_positive() {
        return Err(LedgerError::NonPositiveAmount.into());
    }
    if debit == credit {
        return Err(LedgerError::SameAccount.into());
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO ledger_transfers (debit, credit, amount, currency, kind, pending_id, code, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(debit.to_string())
    .bind(credit.to_string())
    .bind(amount.minor())
    .bind(amount.currency().code())
    .bind(kind)
    .bind(pending.map(|id| id.0 as i64))
    .bind(code)
    .bind(to_micros(at))
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| match StoreError::from_insert(error) {
        // The unique key on pending_id: this hold was resolved by someone else first.
        StoreError::Conflict => CommitError::Ledger(LedgerError::AlreadyResolved(pending.unwrap_or(TransferId(0)))),
        other => CommitError::Store(other),
    })?;
    Ok(TransferId(id as u64))
}

/// The pending transfer `id`, if it exists and is still open.
async fn load_pending(tx: &mut Tx, id: TransferId) -> std::result::Result<Transfer, CommitError> {
    let row = sqlx::query(
        "SELECT t.*, (SELECT COUNT(*) FROM ledger_transfers r WHERE r.pending_id = t.id) AS resolutions \
         FROM ledger_transfers t WHERE t.id = $1 AND t.kind = 'pending'",
    )
    .bind(id.0 as i64)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Err(LedgerError::UnknownPending(id).into()) };
    let resolutions: i64 = row.try_get("resolutions")?;
    if resolutions > 0 {
        return Err(LedgerError::AlreadyResolved(id).into());
    }
    Ok(from_row(&row)?)
}

/// Every transfer, in id order.
pub async fn transfers(tx: &mut Tx) -> Result<Vec<Transfer>> {
    let rows = sqlx::query("SELECT * FROM ledger_transfers ORDER BY id").fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

/// Re-derives every balance from the stored transfers and checks every invariant.
pub async fn verify(tx: &mut Tx) -> Result<LedgerReport> {
    Ok(verify_transfers(&transfers(tx).await?))
}

fn from_row(row: &AnyRow) -> Result<Transfer> {
    let id: i64 = row.try_get("id")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("ledger transfer {id}: {what}"));
    let account = |column: &str| -> Result<AccountId> {
        let text: String = row.try_get(column)?;
        AccountId::parse(&text).ok_or_else(|| corrupt(column))
    };
    let currency: String = row.try_get("currency")?;
    let currency = Currency::from_code(&currency).map_err(|_| corrupt("currency"))?;
    let pending: Option<i64> = row.try_get("pending_id")?;
    let kind: String = row.try_get("kind")?;
    let kind = match (kind.as_str(), pending) {
        ("posted", None) => TransferKind::Posted,
        ("pending", None) => TransferKind::Pending,
        ("post_pending", Some(pending)) => TransferKind::PostPending { pending: TransferId(pending as u64) },
        ("void_pending", Some(pending)) => TransferKind::VoidPending { pending: TransferId(pending as u64) },
        _ => return Err(corrupt("kind")),
    };
    Ok(Transfer {
        id: TransferId(id as u64),
        debit: account("debit")?,
        credit: account("credit")?,
        amount: Money::new(row.try_get("amount")?, currency),
        kind,
        code: row.try_get("code")?,
    })
}
