//! The `ledger_transfers` table: the domain ledger's transfers, persisted.
//!
//! [`commit`] writes a transaction's entries inside the caller's database transaction; the database assigns
//! transfer ids and its unique key on `pending_id` refuses a second resolution of a hold. [`verify`] checks the
//! same invariants as the domain's checker, inside the database, plus the agreement of every card with its
//! account.

use chrono::{DateTime, Utc};
use ghostcard_domain::ledger::{
    AccountId, Committed, CurrencyTotals, Entry, LedgerError, LedgerReport, Transfer, TransferId, TransferKind,
};
use ghostcard_domain::money::{Currency, Money};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::together::Value;
use crate::{Conn, Found, Pending, Reads, Result, StoreError, Target, Tx, Writes, to_micros};

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

/// Ids for `count` new transfers, reserved inside this transaction (so a batch can name its holds before writing
/// them). SQLite: the transaction holds the write lock, so the next ids are free; PostgreSQL: from the sequence.
pub async fn reserve_ids(tx: &mut Conn, count: usize) -> Result<Vec<TransferId>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = if tx.backend_name() == "PostgreSQL" {
        sqlx::query_scalar(
            "SELECT CAST(nextval(pg_get_serial_sequence('ledger_transfers', 'id')) AS BIGINT) FROM generate_series(1, $1)",
        )
        .bind(count as i64)
        .fetch_all(&mut *tx)
        .await?
    } else {
        let last: i64 = sqlx::query_scalar(LAST_ID).fetch_one(&mut *tx).await?;
        (last + 1..=last + count as i64).collect()
    };
    Ok(ids.into_iter().map(|id| TransferId(id as u64)).collect())
}

/// SQLite: the last transfer id given out (an `AUTOINCREMENT` id is never given out twice).
const LAST_ID: &str = "SELECT CAST(MAX(COALESCE((SELECT MAX(id) FROM ledger_transfers), 0), \
                       COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'ledger_transfers'), 0)) AS BIGINT)";

/// [`reserve_ids`] in two steps, so that SQLite needs no round trip of its own: this adds the read of the last id to
/// `reads` (nothing on PostgreSQL), and [`reserve_ids_after`] reserves from it.
pub fn add_last_id(reads: &mut Reads) -> Pending {
    let statements = if reads.is_postgres() { Vec::new() } else { vec![(LAST_ID.to_owned(), Vec::new())] };
    reads.push(statements)
}

/// [`reserve_ids`], from the last id that [`add_last_id`] read in this transaction; nothing may have written a
/// transfer in this transaction since. PostgreSQL: from the sequence, as [`reserve_ids`].
pub async fn reserve_ids_after(tx: &mut Conn, found: &Found, last: &Pending, count: usize) -> Result<Vec<TransferId>> {
    if count == 0 || tx.is_postgres() {
        return reserve_ids(tx, count).await;
    }
    let row = found.rows(last).next().ok_or_else(|| StoreError::Corrupt("no last transfer id read".to_owned()))?;
    let last: i64 = row.try_get(0)?;
    Ok((last + 1..=last + count as i64).map(|id| TransferId(id as u64)).collect())
}

/// Adds new transfers with ids from [`reserve_ids`] to `writes`: the entries that open a transfer (`Post` and
/// `Hold`, as [`ghostcard_domain::ledger::entries`] makes them); an entry that resolves a hold needs [`commit`].
pub fn add_new(writes: &mut Writes, entries: &[(TransferId, &Entry)], at: DateTime<Utc>) -> Result<()> {
    const COLUMNS: usize = 8;
    for chunk in entries.chunks(crate::rows_per_statement(COLUMNS)) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for (id, entry) in chunk {
            let (debit, credit, amount, kind, code) = match entry {
                Entry::Post { debit, credit, amount, code } => (debit, credit, amount, "posted", code),
                Entry::Hold { debit, credit, amount, code } => (debit, credit, amount, "pending", code),
                Entry::PostHold { .. } | Entry::VoidHold { .. } => {
                    return Err(StoreError::Corrupt(format!("transfer {} resolves a hold: commit it", id.0)));
                }
            };
            if !amount.is_positive() || debit == credit {
                return Err(StoreError::Corrupt(format!("transfer {} is not a valid transfer", id.0)));
            }
            values.extend([
                Value::from(id.0 as i64),
                debit.to_string().into(),
                credit.to_string().into(),
                amount.minor().into(),
                amount.currency().code().into(),
                kind.into(),
                (*code).into(),
                to_micros(at).into(),
            ]);
        }
        let (rows, values) = crate::insert_rows(writes, values, COLUMNS);
        let sql = format!(
            "INSERT INTO ledger_transfers (id, debit, credit, amount, currency, kind, code, created_at) {rows}"
        );
        writes.push(sql, values, chunk.len());
    }
    Ok(())
}

/// Writes posted transfers (no holds) with multi-row statements; for provisioning, where no id is needed back.
pub async fn post_many(tx: &mut Tx, entries: &[Entry], at: DateTime<Utc>) -> std::result::Result<(), CommitError> {
    const COLUMNS: usize = 7;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let Entry::Post { debit, credit, amount, code } = entry else {
            return Err(LedgerError::NonPositiveAmount.into());
        };
        if !amount.is_positive() {
            return Err(LedgerError::NonPositiveAmount.into());
        }
        if debit == credit {
            return Err(LedgerError::SameAccount.into());
        }
        rows.push((debit.to_string(), credit.to_string(), *amount, *code));
    }
    for chunk in rows.chunks(crate::rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO ledger_transfers (debit, credit, amount, currency, kind, code, created_at) VALUES {}",
            crate::placeholders(tx, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for (debit, credit, amount, code) in chunk {
            query = query
                .bind(debit)
                .bind(credit)
                .bind(amount.minor())
                .bind(amount.currency().code())
                .bind("posted")
                .bind(*code)
                .bind(to_micros(at));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Every transfer, in id order (for small ledgers and tests; [`verify`] does not load them).
pub async fn transfers(tx: &mut Tx) -> Result<Vec<Transfer>> {
    let rows = sqlx::query("SELECT * FROM ledger_transfers ORDER BY id").fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

/// Balances by kind of account (per-card accounts summed over all cards) and currency: (kind, currency, posted
/// balance as debits − credits, open holds included as their own kind's balance).
pub async fn balances_by_kind(tx: &mut Tx) -> Result<Vec<(String, String, i64)>> {
    let postgres = tx.backend_name() == "PostgreSQL";
    let kind = |column: &str| {
        if postgres {
            format!("split_part({column}, ':', 1)")
        } else {
            format!(
                "CASE WHEN instr({column}, ':') > 0 THEN substr({column}, 1, instr({column}, ':') - 1) ELSE {column} END"
            )
        }
    };
    let live = "t.kind IN ('posted', 'post_pending') \
        OR (t.kind = 'pending' AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id))";
    let sql = format!(
        "SELECT kind, currency, CAST(SUM(signed) AS BIGINT) FROM ( \
           SELECT {} AS kind, t.currency AS currency, t.amount AS signed FROM ledger_transfers t WHERE {live} \
           UNION ALL \
           SELECT {} AS kind, t.currency AS currency, -t.amount AS signed FROM ledger_transfers t WHERE {live} \
         ) AS postings GROUP BY kind, currency ORDER BY kind, currency",
        kind("t.debit"),
        kind("t.credit")
    );
    Ok(sqlx::query_as(&sql).fetch_all(&mut **tx).await?)
}

/// At most this many examples of each kind of problem are reported.
const PROBLEM_EXAMPLES: i64 = 20;

/// Re-derives the balances from the stored transfers inside the database and checks every invariant: positive
/// amounts, two distinct accounts, each resolution naming an earlier hold of the same accounts and currency and
/// no larger than it, each hold resolved at most once, postings summing to zero per currency, and every card's
/// available-amount account equal to the card's `amount − held − captured`. Nothing is loaded whole into memory,
/// so it scales to millions of transfers.
pub async fn verify(tx: &mut Tx) -> Result<LedgerReport> {
    let mut report = LedgerReport::default();
    if tx.backend_name() == "PostgreSQL" {
        // With statistics that lag a bulk load, the planner may pick a nested loop for the card check below and
        // take hours; hash joins are right for every size here.
        sqlx::query("SET LOCAL enable_nestloop = off").execute(&mut **tx).await?;
    }
    add_totals(tx, &mut report).await?;
    add_transfer_problems(tx, &mut report).await?;
    add_card_problems(tx, &mut report).await?;
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// The postings' totals per currency. A transfer debits one account (+amount) and credits another (−amount); holds
/// count while open. In the transfer model every row debits one account and credits another by the same amount, so
/// these sums are zero by construction; they are reported because the API promises them. The checks of
/// [`add_transfer_problems`] and [`add_card_problems`] are the ones that can find something.
async fn add_totals(tx: &mut Tx, report: &mut LedgerReport) -> Result<()> {
    let totals: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT t.currency, COUNT(*), \
           CAST(COALESCE(SUM(CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN t.kind IN ('posted', 'post_pending') THEN -t.amount END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN t.kind = 'pending' AND r.id IS NULL THEN t.amount END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN t.kind = 'pending' AND r.id IS NULL THEN -t.amount END), 0) AS BIGINT) \
         FROM ledger_transfers t LEFT JOIN ledger_transfers r ON r.pending_id = t.id \
         GROUP BY t.currency ORDER BY t.currency",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (currency, transfers, debits, credits, pending_debits, pending_credits) in totals {
        let totals = CurrencyTotals {
            postings_sum: debits + credits,
            pending_sum: pending_debits + pending_credits,
            transfers: u64::try_from(transfers).unwrap_or(0),
            open_holds: pending_debits,
        };
        if totals.postings_sum != 0 || totals.pending_sum != 0 {
            report
                .problems
                .push(format!("{currency} postings sum to {} (pending {})", totals.postings_sum, totals.pending_sum));
        }
        report.currencies.insert(currency, totals);
    }
    Ok(())
}

/// Transfers that break a rule of the model: positive amounts, two distinct accounts, each resolution naming an
/// earlier hold of the same accounts and currency and no larger than it, each hold resolved at most once.
async fn add_transfer_problems(tx: &mut Tx, report: &mut LedgerReport) -> Result<()> {
    let checks: [(&str, &str); 5] = [
        ("has a non-positive amount", "SELECT id FROM ledger_transfers WHERE amount <= 0"),
        ("debits and credits the same account", "SELECT id FROM ledger_transfers WHERE debit = credit"),
        (
            "does not match the hold it resolves",
            "SELECT r.id FROM ledger_transfers r LEFT JOIN ledger_transfers p ON p.id = r.pending_id \
             WHERE r.kind IN ('post_pending', 'void_pending') AND (p.id IS NULL OR p.kind <> 'pending' \
             OR p.debit <> r.debit OR p.credit <> r.credit OR p.currency <> r.currency OR r.amount > p.amount \
             OR (r.kind = 'void_pending' AND r.amount <> p.amount) OR p.id >= r.id)",
        ),
        (
            "resolves a hold resolved before",
            "SELECT MAX(id) FROM ledger_transfers WHERE pending_id IS NOT NULL GROUP BY pending_id HAVING COUNT(*) > 1",
        ),
        (
            "has a kind and a hold reference that do not fit",
            "SELECT id FROM ledger_transfers WHERE (kind IN ('posted', 'pending') AND pending_id IS NOT NULL) \
             OR (kind IN ('post_pending', 'void_pending') AND pending_id IS NULL) \
             OR kind NOT IN ('posted', 'pending', 'post_pending', 'void_pending')",
        ),
    ];
    for (problem, query) in checks {
        let ids: Vec<i64> =
            sqlx::query_scalar(&format!("{query} LIMIT {PROBLEM_EXAMPLES}")).fetch_all(&mut **tx).await?;
        report.problems.extend(ids.into_iter().map(|id| format!("transfer {id} {problem}")));
    }
    Ok(())
}

/// Cards whose available-amount account differs from what the card says remains (`amount − held − captured`).
async fn add_card_problems(tx: &mut Tx, report: &mut LedgerReport) -> Result<()> {
    let mismatched: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "WITH postings AS ( \
           SELECT t.debit AS account, t.amount AS signed FROM ledger_transfers t \
             WHERE t.kind IN ('posted', 'post_pending') \
                OR (t.kind = 'pending' AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id)) \
           UNION ALL \
           SELECT t.credit, -t.amount FROM ledger_transfers t \
             WHERE t.kind IN ('posted', 'post_pending') \
                OR (t.kind = 'pending' AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id)) \
         ), balances AS ( \
           SELECT account, CAST(SUM(signed) AS BIGINT) AS balance FROM postings \
             WHERE account LIKE 'card_available:%' GROUP BY account \
         ) \
         SELECT c.id, c.amount - c.held - c.captured, CAST(COALESCE(-b.balance, 0) AS BIGINT) \
         FROM cards c LEFT JOIN balances b ON b.account = 'card_available:' || c.id \
         WHERE c.amount - c.held - c.captured <> COALESCE(-b.balance, 0) LIMIT {PROBLEM_EXAMPLES}"
    ))
    .fetch_all(&mut **tx)
    .await?;
    report.problems.extend(
        mismatched.into_iter().map(|(card, remaining, ledger)| {
            format!("card {card} has {remaining} remaining but {ledger} in the ledger")
        }),
    );
    Ok(())
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
