//! The `authorizations` table: one row per authorization request decided (approved or declined), updated by the
//! reversals and captures that follow it.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use ghostcard_domain::authorization::{Authorization, AuthorizationStatus};
use ghostcard_domain::decision::AuthorizationKind;
use ghostcard_domain::engine::{NetworkKey, Past};

use crate::together::Value;
use crate::{Found, Page, Pending, Reads, Result, StoreError, Target, Tx, Writes, for_update, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRecord {
    pub id: String,
    /// `None` when the card number was not found.
    pub card_id: Option<String>,
    pub cardholder_id: Option<String>,
    pub kind: AuthorizationKind,
    pub amount: i64,
    pub currency: String,
    pub status: AuthorizationStatus,
    pub response_code: String,
    pub decline_reason: Option<String>,
    pub rule: String,
    pub cvv_result: Option<String>,
    /// A check an advice was posted past.
    pub flag: Option<String>,
    pub acquirer_id: String,
    pub merchant_id: String,
    pub merchant_name: Option<String>,
    pub merchant_city: Option<String>,
    pub merchant_country: Option<String>,
    pub mcc: String,
    pub stan: Option<String>,
    pub rrn: Option<String>,
    pub auth_code: Option<String>,
    pub transmission_time: Option<String>,
    /// The open ledger hold of this authorization, if any.
    pub hold_transfer_id: Option<i64>,
    /// What is still held.
    pub held: i64,
    /// What clearing has captured.
    pub captured: i64,
    /// Keyed hash of the card number as the network sent it (to tell a conflicting duplicate apart).
    pub number_hash: Option<Vec<u8>>,
    /// Answered with the stand-in code because the decision missed the deadline.
    pub stand_in: bool,
    pub created_at: DateTime<Utc>,
    /// What the decision read, as JSON ([`ghostcard_domain::engine::DecisionRecord`]); `None` before it was kept.
    pub decision: Option<String>,
}

impl AuthorizationRecord {
    /// Its state after the decision, to change through the domain's state machine.
    pub fn state(&self) -> Authorization {
        Authorization::restore(self.status, self.held, self.captured)
    }

    /// Copies a changed state into the row (to be written by [`update_progress`]).
    pub fn set_state(&mut self, state: &Authorization) {
        (self.status, self.held, self.captured) = (state.status(), state.held(), state.captured());
    }
}

/// Inserts authorizations with multi-row statements; [`crate::StoreError::Conflict`] if any network key was taken.
pub async fn insert_many(tx: &mut Tx, authorizations: &[AuthorizationRecord]) -> Result<()> {
    let mut writes = Writes::new(tx);
    add_many(&mut writes, authorizations);
    writes.run(tx).await
}

/// [`insert_many`], added to `writes`.
pub fn add_many(writes: &mut Writes, authorizations: &[AuthorizationRecord]) {
    const COLUMNS: usize = 29;
    for chunk in authorizations.chunks(crate::rows_per_statement(COLUMNS)) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for authorization in chunk {
            values.extend([
                Value::from(&authorization.id),
                (&authorization.card_id).into(),
                (&authorization.cardholder_id).into(),
                authorization.kind.as_str().into(),
                authorization.amount.into(),
                (&authorization.currency).into(),
                authorization.status.as_str().into(),
                (&authorization.response_code).into(),
                (&authorization.decline_reason).into(),
                (&authorization.rule).into(),
                (&authorization.cvv_result).into(),
                (&authorization.flag).into(),
                (&authorization.acquirer_id).into(),
                (&authorization.merchant_id).into(),
                (&authorization.merchant_name).into(),
                (&authorization.merchant_city).into(),
                (&authorization.merchant_country).into(),
                (&authorization.mcc).into(),
                (&authorization.stan).into(),
                (&authorization.rrn).into(),
                (&authorization.auth_code).into(),
                (&authorization.transmission_time).into(),
                authorization.hold_transfer_id.into(),
                authorization.held.into(),
                authorization.captured.into(),
                (&authorization.number_hash).into(),
                i64::from(authorization.stand_in).into(),
                to_micros(authorization.created_at).into(),
                (&authorization.decision).into(),
            ]);
        }
        let (rows, values) = crate::insert_rows(writes, values, COLUMNS);
        let sql = format!(
            "INSERT INTO authorizations (id, card_id, cardholder_id, kind, amount, currency, status, response_code, \
             decline_reason, rule, cvv_result, flag, acquirer_id, merchant_id, merchant_name, merchant_city, \
             merchant_country, mcc, stan, rrn, auth_code, transmission_time, hold_transfer_id, held, captured, number_hash, \
             stand_in, created_at, decision) {rows}"
        );
        writes.push(sql, values, chunk.len());
    }
}

/// The authorizations recorded under any of these network keys (acquirer, STAN, transmission time).
pub async fn find_by_network_keys(tx: &mut Tx, keys: &[NetworkKey]) -> Result<Vec<AuthorizationRecord>> {
    let mut reads = Reads::new(tx);
    let pending = add_find_by_network_keys(&mut reads, keys);
    find_by_network_keys_in(&reads.run(tx).await?, &pending)
}

/// [`find_by_network_keys`], added to `reads`.
pub fn add_find_by_network_keys(reads: &mut Reads, keys: &[NetworkKey]) -> Pending {
    let mut statements = Vec::new();
    for chunk in keys.chunks(crate::rows_per_statement(3)) {
        // A join with the keys, not a row-value IN: SQLite would scan the whole table for the latter.
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for key in chunk {
            values.extend([Value::from(&key.acquirer_id), (&key.stan).into(), (&key.transmission_time).into()]);
        }
        let (rows, values) = crate::joined_rows(reads, values, 3);
        let sql = format!(
            "WITH wanted (acquirer_id, stan, transmission_time) AS ({rows}) SELECT a.* FROM wanted \
             JOIN authorizations a ON a.acquirer_id = wanted.acquirer_id AND a.stan = wanted.stan \
             AND a.transmission_time = wanted.transmission_time"
        );
        statements.push((sql, values));
    }
    reads.push(statements)
}

/// What [`add_find_by_network_keys`] found.
pub fn find_by_network_keys_in(found: &Found, pending: &Pending) -> Result<Vec<AuthorizationRecord>> {
    found.rows(pending).map(from_row).collect()
}

/// Each of these cardholders' authorizations since `since`, as the velocity rules count them (the rules
/// themselves are the domain's: [`ghostcard_domain::engine::Past`]).
pub fn add_history(reads: &mut Reads, cardholder_ids: &[String], since: DateTime<Utc>) -> Pending {
    let postgres = reads.is_postgres();
    let after = if postgres { "$1" } else { "?" };
    reads.push_in_lists(&[Value::from(to_micros(since))], cardholder_ids, |member| {
        let columns = "cardholder_id, kind, response_code, decline_reason, amount, created_at";
        let query =
            format!("SELECT {columns} FROM authorizations WHERE created_at > {after} AND cardholder_id{member}");
        crate::packed(postgres, columns, query)
    })
}

/// Each of these cards' declined authorizations since `since`.
pub fn add_card_declines(reads: &mut Reads, card_ids: &[String], since: DateTime<Utc>) -> Pending {
    let postgres = reads.is_postgres();
    let after = if postgres { "$1" } else { "?" };
    reads.push_in_lists(&[Value::from(to_micros(since))], card_ids, |member| {
        let columns = "card_id, kind, response_code, decline_reason, amount, created_at";
        let query = format!(
            "SELECT {columns} FROM authorizations WHERE decline_reason IS NOT NULL AND created_at > {after} \
             AND card_id{member}"
        );
        crate::packed(postgres, columns, query)
    })
}

/// Each of these cards' authorizations since `since` (what an authorization rule counting a card's approvals
/// reads).
pub fn add_card_history(reads: &mut Reads, card_ids: &[String], since: DateTime<Utc>) -> Pending {
    let postgres = reads.is_postgres();
    let after = if postgres { "$1" } else { "?" };
    reads.push_in_lists(&[Value::from(to_micros(since))], card_ids, |member| {
        let columns = "card_id, kind, response_code, decline_reason, amount, created_at";
        let query = format!("SELECT {columns} FROM authorizations WHERE created_at > {after} AND card_id{member}");
        crate::packed(postgres, columns, query)
    })
}

/// What [`add_history`], [`add_card_declines`] or [`add_card_history`] found: (cardholder or card, authorization).
pub fn history_in(found: &Found, pending: &Pending) -> Result<Vec<(String, Past)>> {
    type Row = (String, String, String, Option<String>, i64, i64);
    let rows: Vec<Row> = match found.packed::<Row>(pending) {
        Some(rows) => rows?,
        None => found
            .rows(pending)
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                    row.try_get(5)?,
                ))
            })
            .collect::<Result<_>>()?,
    };
    rows.into_iter()
        .map(|(owner, kind, code, reason, amount, at)| {
            Ok((owner, crate::batch::past(&kind, code, reason, amount, from_micros(at)?)?))
        })
        .collect()
}

/// A stored decision, with what a report or a backtest replays it from: the request's fields, the decision record
/// and when its card and cardholder were created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub id: String,
    pub card_id: Option<String>,
    pub cardholder_id: Option<String>,
    pub kind: AuthorizationKind,
    pub amount: i64,
    pub currency: String,
    pub response_code: String,
    pub decline_reason: Option<String>,
    pub acquirer_id: String,
    pub merchant_id: String,
    pub merchant_country: Option<String>,
    pub mcc: String,
    pub created_at: DateTime<Utc>,
    pub decision: Option<String>,
    pub card_created_at: Option<DateTime<Utc>>,
    pub cardholder_created_at: Option<DateTime<Utc>>,
}

/// Up to `limit` authorizations with ids above `after` and below `before`, in id (creation) order: a window of time
/// read page by page ([`ghostcard_domain::ids::floor`] makes its bounds).
pub async fn replay_page(tx: &mut Tx, after: &str, before: &str, limit: u32) -> Result<Vec<Replayed>> {
    let query = "SELECT a.id, a.card_id, a.cardholder_id, a.kind, a.amount, a.currency, a.response_code, \
                 a.decline_reason, a.acquirer_id, a.merchant_id, a.merchant_country, a.mcc, a.created_at, a.decision, \
                 c.created_at AS card_created_at, h.created_at AS cardholder_created_at FROM authorizations a \
                 LEFT JOIN cards c ON c.id = a.card_id LEFT JOIN cardholders h ON h.id = a.cardholder_id \
                 WHERE a.id > $1 AND a.id < $2 ORDER BY a.id LIMIT $3";
    if tx.backend_name() == "PostgreSQL" {
        let rows = sqlx::query(query).bind(after).bind(before).bind(i64::from(limit)).fetch_all(&mut **tx).await?;
        return rows.iter().map(replayed).collect();
    }
    // SQLite: the page as one JSON value, one hand-over from sqlx's thread instead of one a row.
    let packed = format!(
        "SELECT json_group_array(json_array(id, card_id, cardholder_id, kind, amount, currency, response_code, \
         decline_reason, acquirer_id, merchant_id, merchant_country, mcc, created_at, decision, card_created_at, \
         cardholder_created_at)) FROM ({query})"
    );
    let text: String =
        sqlx::query_scalar(&packed).bind(after).bind(before).bind(i64::from(limit)).fetch_one(&mut **tx).await?;
    let rows: Vec<PackedReplayed> =
        serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("packed decisions: {error}")))?;
    rows.into_iter().map(PackedReplayed::into_replayed).collect()
}

/// A [`Replayed`] as SQLite packs it.
#[derive(serde::Deserialize)]
struct PackedReplayed(
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

impl PackedReplayed {
    fn into_replayed(self) -> Result<Replayed> {
        let PackedReplayed(
            id,
            card_id,
            cardholder_id,
            kind,
            amount,
            currency,
            response_code,
            decline_reason,
            acquirer_id,
            merchant_id,
            merchant_country,
            mcc,
            created_at,
            decision,
            card_created_at,
            cardholder_created_at,
        ) = self;
        Ok(Replayed {
            id,
            card_id,
            cardholder_id,
            kind: AuthorizationKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("authorization kind {kind:?}")))?,
            amount,
            currency,
            response_code,
            decline_reason,
            acquirer_id,
            merchant_id,
            merchant_country,
            mcc,
            created_at: from_micros(created_at)?,
            decision,
            card_created_at: card_created_at.map(from_micros).transpose()?,
            cardholder_created_at: cardholder_created_at.map(from_micros).transpose()?,
        })
    }
}

fn replayed(row: &AnyRow) -> Result<Replayed> {
    let kind: String = row.try_get("kind")?;
    let optional_time = |column: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(column)?.map(from_micros).transpose()
    };
    Ok(Replayed {
        id: row.try_get("id")?,
        card_id: row.try_get("card_id")?,
        cardholder_id: row.try_get("cardholder_id")?,
        kind: AuthorizationKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("authorization kind {kind:?}")))?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        response_code: row.try_get("response_code")?,
        decline_reason: row.try_get("decline_reason")?,
        acquirer_id: row.try_get("acquirer_id")?,
        merchant_id: row.try_get("merchant_id")?,
        merchant_country: row.try_get("merchant_country")?,
        mcc: row.try_get("mcc")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        decision: row.try_get("decision")?,
        card_created_at: optional_time("card_created_at")?,
        cardholder_created_at: optional_time("cardholder_created_at")?,
    })
}

/// The newest authorizations of all cards, optionally only those with this response code, decline reason or
/// merchant category (the operator's feed).
pub async fn feed(
    tx: &mut Tx,
    response_code: Option<&str>,
    decline_reason: Option<&str>,
    mcc: Option<&str>,
    limit: u32,
) -> Result<Vec<AuthorizationRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM authorizations WHERE ($1 IS NULL OR response_code = $1) AND ($2 IS NULL OR decline_reason = $2) \
         AND ($3 IS NULL OR mcc = $3) ORDER BY id DESC LIMIT $4",
    )
    .bind(response_code)
    .bind(decline_reason)
    .bind(mcc)
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Authorizations since `since` counted by hour (hours since the Unix epoch) and outcome (`approved`, or the
/// decline reason).
pub async fn hourly_outcomes(tx: &mut Tx, since: DateTime<Utc>) -> Result<Vec<(i64, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT created_at / 3600000000 AS hour, COALESCE(decline_reason, 'approved') AS outcome, COUNT(*) \
         FROM authorizations WHERE created_at >= $1 GROUP BY created_at / 3600000000, COALESCE(decline_reason, 'approved') \
         ORDER BY 1, 2",
    )
    .bind(to_micros(since))
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<AuthorizationRecord>> {
    let sql = format!("SELECT * FROM authorizations WHERE id = $1{}", for_update(tx));
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Writes what reversals, captures and a missed deadline change: status, response, hold and captured amount.
pub async fn update_progress(tx: &mut Tx, authorization: &AuthorizationRecord) -> Result<()> {
    sqlx::query(
        "UPDATE authorizations SET status = $1, hold_transfer_id = $2, held = $3, captured = $4, response_code = $5, \
         stand_in = $6 WHERE id = $7",
    )
    .bind(authorization.status.as_str())
    .bind(authorization.hold_transfer_id)
    .bind(authorization.held)
    .bind(authorization.captured)
    .bind(&authorization.response_code)
    .bind(i64::from(authorization.stand_in))
    .bind(&authorization.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The authorization with this network key (field 32 + 11 + 7), if one was recorded.
pub async fn find_by_network_key(tx: &mut Tx, key: &NetworkKey) -> Result<Option<AuthorizationRecord>> {
    let sql = format!(
        "SELECT * FROM authorizations WHERE acquirer_id = $1 AND stan = $2 AND transmission_time = $3{}",
        for_update(tx)
    );
    let row = sqlx::query(&sql)
        .bind(&key.acquirer_id)
        .bind(&key.stan)
        .bind(&key.transmission_time)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The latest approved authorization with this retrieval reference number and card number hash (the reversal
/// fallback when field 90 is missing or matches nothing).
pub async fn find_by_rrn(tx: &mut Tx, rrn: &str, number_hash: &[u8]) -> Result<Option<AuthorizationRecord>> {
    let sql = format!(
        "SELECT * FROM authorizations WHERE rrn = $1 AND number_hash = $2 AND status <> 'declined' ORDER BY id DESC LIMIT 1{}",
        for_update(tx)
    );
    let row = sqlx::query(&sql).bind(rrn).bind(number_hash).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The approved authorization a clearing record without a network transaction id names: its RRN and
/// authorization code, and its acquirer and merchant when the record gives them.
pub async fn find_for_clearing(
    tx: &mut Tx,
    rrn: &str,
    auth_code: &str,
    acquirer_id: Option<&str>,
    merchant_id: Option<&str>,
) -> Result<Option<AuthorizationRecord>> {
    let sql = format!(
        "SELECT * FROM authorizations WHERE rrn = $1 AND auth_code = $2 AND ($3 IS NULL OR acquirer_id = $3) \
         AND ($4 IS NULL OR merchant_id = $4) AND status <> 'declined' ORDER BY id DESC LIMIT 1{}",
        for_update(tx)
    );
    let row = sqlx::query(&sql)
        .bind(rrn)
        .bind(auth_code)
        .bind(acquirer_id)
        .bind(merchant_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| from_row(&row)).transpose()
}

/// Authorizations newest first for a card or a cardholder (or all), after `starting_after`.
pub async fn list(
    tx: &mut Tx,
    card_id: Option<&str>,
    cardholder_id: Option<&str>,
    limit: u32,
    starting_after: Option<&str>,
) -> Result<Page<AuthorizationRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM authorizations WHERE ($1 IS NULL OR card_id = $1) AND ($2 IS NULL OR cardholder_id = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
    )
    .bind(card_id)
    .bind(cardholder_id)
    .bind(starting_after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut **tx)
    .await?;
    let authorizations = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_rows(authorizations, limit))
}

/// Authorizations still holding money that were created by `before`, oldest first, at most `limit`:
/// (id, merchant category, created at).
pub async fn open_holds_before(
    tx: &mut Tx,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(String, String, DateTime<Utc>)>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, mcc, created_at FROM authorizations WHERE held > 0 AND created_at <= $1 ORDER BY created_at LIMIT $2",
    )
    .bind(to_micros(before))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(|(id, mcc, at)| Ok((id, mcc, from_micros(at)?))).collect()
}

/// When the oldest open hold made after `after`, with (`long`) or without one of these merchant categories, was
/// made.
pub async fn oldest_open_hold(
    tx: &mut Tx,
    long_mccs: &[String],
    long: bool,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let list = if long_mccs.is_empty() { "''".to_owned() } else { crate::list_placeholders(tx, 1, long_mccs.len()) };
    let sql = format!(
        "SELECT MIN(created_at) FROM authorizations WHERE held > 0 AND mcc {}IN ({list}) AND created_at > {}",
        if long { "" } else { "NOT " },
        if tx.backend_name() == "PostgreSQL" { format!("${}", long_mccs.len() + 1) } else { "?".to_owned() }
    );
    let mut query = sqlx::query_scalar::<_, Option<i64>>(&sql);
    for mcc in long_mccs {
        query = query.bind(mcc);
    }
    query = query.bind(to_micros(after));
    query.fetch_one(&mut **tx).await?.map(from_micros).transpose()
}

/// The ids of the card's authorizations still holding money.
pub async fn holding_for_card(tx: &mut Tx, card_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM authorizations WHERE card_id = $1 AND held > 0 ORDER BY id")
        .bind(card_id)
        .fetch_all(&mut **tx)
        .await?)
}

fn from_row(row: &AnyRow) -> Result<AuthorizationRecord> {
    let id: String = row.try_get("id")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("authorization {id} {what}"));
    let kind = AuthorizationKind::parse(&row.try_get::<String, _>("kind")?).ok_or_else(|| corrupt("kind"))?;
    let status = AuthorizationStatus::parse(&row.try_get::<String, _>("status")?).ok_or_else(|| corrupt("status"))?;
    Ok(AuthorizationRecord {
        card_id: row.try_get("card_id")?,
        cardholder_id: row.try_get("cardholder_id")?,
        kind,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        status,
        response_code: row.try_get("response_code")?,
        decline_reason: row.try_get("decline_reason")?,
        rule: row.try_get("rule")?,
        cvv_result: row.try_get("cvv_result")?,
        flag: row.try_get("flag")?,
        acquirer_id: row.try_get("acquirer_id")?,
        merchant_id: row.try_get("merchant_id")?,
        merchant_name: row.try_get("merchant_name")?,
        merchant_city: row.try_get("merchant_city")?,
        merchant_country: row.try_get("merchant_country")?,
        mcc: row.try_get("mcc")?,
        stan: row.try_get("stan")?,
        rrn: row.try_get("rrn")?,
        auth_code: row.try_get("auth_code")?,
        transmission_time: row.try_get("transmission_time")?,
        hold_transfer_id: row.try_get("hold_transfer_id")?,
        held: row.try_get("held")?,
        captured: row.try_get("captured")?,
        number_hash: row.try_get("number_hash")?,
        stand_in: row.try_get::<i64, _>("stand_in")? != 0,
        created_at: from_micros(row.try_get("created_at")?)?,
        decision: row.try_get("decision")?,
        id,
    })
}
