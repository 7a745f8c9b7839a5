//! The `cards` table and each card's recorded transitions.
//!
//! A card row carries a `version` that every update increments and checks, so two writers that read the same
//! card cannot both apply a change: the second gets [`StoreError::Stale`] and nothing is written.

use chrono::{DateTime, Utc};
use ghostcard_domain::card::{Card, CardStatus, MerchantBinding, Transition};
use ghostcard_domain::card_number::Expiry;
use ghostcard_domain::controls::{CardControls, SpendingControls};
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::PlanKind;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::together::Value;
use crate::{Conn, Page, Result, StoreError, Tx, Writes, for_update, from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub id: String,
    pub cardholder_id: String,
    pub funding_source_id: String,
    /// HMAC-SHA256 of the card number under the lookup key.
    pub number_hash: Vec<u8>,
    /// AES-256-GCM ciphertext (nonce ‖ ciphertext ‖ tag) under data key `data_key_version`.
    pub number_ciphertext: Vec<u8>,
    pub data_key_version: i64,
    pub cvk_version: i64,
    pub bin: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub currency: Currency,
    pub amount: i64,
    pub held: i64,
    pub captured: i64,
    pub status: CardStatus,
    pub frozen_from: Option<CardStatus>,
    pub merchant_acquirer_id: Option<String>,
    pub merchant_id: Option<String>,
    pub merchant_name: Option<String>,
    pub plan_kind: PlanKind,
    pub plan_id: Option<String>,
    /// The funding gateway's hold placed at creation.
    pub funding_hold_id: Option<String>,
    pub valid_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Incremented by every update; an update names the version it read.
    pub version: i64,
    /// Paused by its cardholder or the integrator: purchases and verifications decline `card_paused`.
    pub paused: bool,
    pub spending_controls: SpendingControls,
}

impl CardRecord {
    /// Its pause and spending controls, as the decision reads them.
    pub fn controls(&self) -> CardControls {
        CardControls::new(self.paused, self.spending_controls.clone())
    }

    /// The domain card this row describes; an expiry the domain refuses is [`StoreError::Corrupt`].
    pub fn to_card(&self) -> Result<Card> {
        let expiry = expiry_of(&self.id, self.exp_year, self.exp_month)?;
        let money = |minor: i64| Money::new(minor, self.currency);
        let merchant = match (&self.merchant_acquirer_id, &self.merchant_id) {
            (Some(acquirer_id), Some(merchant_id)) => {
                Some(MerchantBinding { acquirer_id: acquirer_id.clone(), merchant_id: merchant_id.clone() })
            }
            _ => None,
        };
        Ok(Card::restore(
            self.status,
            self.frozen_from,
            money(self.amount),
            money(self.held),
            money(self.captured),
            expiry,
            self.valid_until,
            merchant,
        ))
    }

    /// Copies the domain card's state and amounts into the row (to be written by [`update`]).
    fn set_card(&mut self, card: &Card) {
        self.status = card.status();
        self.frozen_from = card.frozen_from();
        self.amount = card.amount().minor();
        self.held = card.held().minor();
        self.captured = card.captured().minor();
        self.merchant_acquirer_id = card.merchant().map(|merchant| merchant.acquirer_id.clone());
        self.merchant_id = card.merchant().map(|merchant| merchant.merchant_id.clone());
    }
}

/// A stored expiry, checked.
fn expiry_of(id: &str, year: i64, month: i64) -> Result<Expiry> {
    let corrupt = || StoreError::Corrupt(format!("card {id} expiry"));
    Expiry::new(u16::try_from(year).map_err(|_| corrupt())?, u8::try_from(month).map_err(|_| corrupt())?)
        .map_err(|_| corrupt())
}

/// A card's state as stored, to restore the domain card from.
struct Stored<'a> {
    currency: &'a str,
    status: &'a str,
    frozen_from: Option<&'a str>,
    /// Amount, held, captured.
    amounts: (i64, i64, i64),
    /// Year, month.
    expiry: (i64, i64),
    valid_until: DateTime<Utc>,
    /// Acquirer, merchant.
    merchant: (Option<&'a str>, Option<&'a str>),
}

/// The domain card of the stored card `id`; a value the domain refuses is [`StoreError::Corrupt`].
fn restore(id: &str, stored: &Stored<'_>) -> Result<Card> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("card {id} {what}"));
    let currency = Currency::from_code(stored.currency).map_err(|_| corrupt("currency"))?;
    let status = CardStatus::parse(stored.status).ok_or_else(|| corrupt("status"))?;
    let frozen_from = match stored.frozen_from {
        Some(text) => Some(CardStatus::parse(text).ok_or_else(|| corrupt("frozen_from"))?),
        None => None,
    };
    let (year, month) = stored.expiry;
    let expiry = expiry_of(id, year, month)?;
    let merchant = match stored.merchant {
        (Some(acquirer_id), Some(merchant_id)) => {
            Some(MerchantBinding { acquirer_id: acquirer_id.to_owned(), merchant_id: merchant_id.to_owned() })
        }
        _ => None,
    };
    let (amount, held, captured) = stored.amounts;
    Ok(Card::restore(
        status,
        frozen_from,
        Money::new(amount, currency),
        Money::new(held, currency),
        Money::new(captured, currency),
        expiry,
        stored.valid_until,
        merchant,
    ))
}

/// A card as an authorization batch reads it: what the batch needs, the state already a domain [`Card`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCard {
    pub id: String,
    pub cardholder_id: String,
    pub number_hash: Vec<u8>,
    pub cvk_version: i64,
    /// The row's version, which [`add_updates`] checks.
    pub version: i64,
    pub merchant_name: Option<String>,
    pub card: Card,
    pub controls: CardControls,
    pub created_at: DateTime<Utc>,
}

/// A batch's change of a card, written by [`add_updates`].
#[derive(Debug, Clone, Copy)]
pub struct CardUpdate<'a> {
    pub id: &'a str,
    /// The version the batch read.
    pub version: i64,
    pub card: &'a Card,
    pub merchant_name: Option<&'a str>,
}

/// The columns of a [`BatchCard`], in the order [`batch_card`] and [`PackedBatchCard`] read them.
const BATCH_COLUMNS: &str = "id, cardholder_id, number_hash, cvk_version, version, merchant_name, currency, amount, \
                             held, captured, status, frozen_from, exp_year, exp_month, valid_until, \
                             merchant_acquirer_id, merchant_id, paused, spending_controls, created_at";

fn batch_card(row: &AnyRow) -> Result<BatchCard> {
    let id: String = row.try_get("id")?;
    let currency: String = row.try_get("currency")?;
    let status: String = row.try_get("status")?;
    let frozen_from: Option<String> = row.try_get("frozen_from")?;
    let (acquirer, merchant): (Option<String>, Option<String>) =
        (row.try_get("merchant_acquirer_id")?, row.try_get("merchant_id")?);
    let card = restore(
        &id,
        &Stored {
            currency: &currency,
            status: &status,
            frozen_from: frozen_from.as_deref(),
            amounts: (row.try_get("amount")?, row.try_get("held")?, row.try_get("captured")?),
            expiry: (row.try_get("exp_year")?, row.try_get("exp_month")?),
            valid_until: from_micros(row.try_get("valid_until")?)?,
            merchant: (acquirer.as_deref(), merchant.as_deref()),
        },
    )?;
    Ok(BatchCard {
        cardholder_id: row.try_get("cardholder_id")?,
        number_hash: row.try_get("number_hash")?,
        cvk_version: row.try_get("cvk_version")?,
        version: row.try_get("version")?,
        merchant_name: row.try_get("merchant_name")?,
        controls: CardControls::new(
            row.try_get::<i64, _>("paused")? != 0,
            controls_of(&id, row.try_get::<Option<String>, _>("spending_controls")?.as_deref())?,
        ),
        created_at: from_micros(row.try_get("created_at")?)?,
        card,
        id,
    })
}

pub async fn insert(tx: &mut Tx, card: &CardRecord) -> Result<()> {
    insert_many(tx, std::slice::from_ref(card)).await
}

/// Inserts many cards with multi-row statements (provisioning, benchmarks).
pub async fn insert_many(tx: &mut Tx, cards: &[CardRecord]) -> Result<()> {
    const COLUMNS: usize = 28;
    for chunk in cards.chunks(crate::rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO cards (id, cardholder_id, funding_source_id, number_hash, number_ciphertext, data_key_version, \
             cvk_version, bin, last4, exp_month, exp_year, currency, amount, held, captured, status, frozen_from, \
             merchant_acquirer_id, merchant_id, merchant_name, plan_kind, plan_id, funding_hold_id, valid_until, \
             created_at, version, paused, spending_controls) VALUES {}",
            crate::placeholders(tx, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for card in chunk {
            query = query
                .bind(&card.id)
                .bind(&card.cardholder_id)
                .bind(&card.funding_source_id)
                .bind(&card.number_hash)
                .bind(&card.number_ciphertext)
                .bind(card.data_key_version)
                .bind(card.cvk_version)
                .bind(&card.bin)
                .bind(&card.last4)
                .bind(card.exp_month)
                .bind(card.exp_year)
                .bind(card.currency.code())
                .bind(card.amount)
                .bind(card.held)
                .bind(card.captured)
                .bind(card.status.as_str())
                .bind(card.frozen_from.map(CardStatus::as_str))
                .bind(&card.merchant_acquirer_id)
                .bind(&card.merchant_id)
                .bind(&card.merchant_name)
                .bind(card.plan_kind.as_str())
                .bind(&card.plan_id)
                .bind(&card.funding_hold_id)
                .bind(to_micros(card.valid_until))
                .bind(to_micros(card.created_at))
                .bind(card.version)
                .bind(i64::from(card.paused))
                .bind(controls_json(&card.spending_controls)?);
        }
        query.execute(&mut **tx).await.map_err(StoreError::from_insert)?;
    }
    Ok(())
}

/// Spending controls as stored: JSON, or NULL for none.
fn controls_json(controls: &SpendingControls) -> Result<Option<String>> {
    if controls.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(controls).map(Some).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// Stored spending controls, read back.
fn controls_of(id: &str, json: Option<&str>) -> Result<SpendingControls> {
    match json {
        None => Ok(SpendingControls::default()),
        Some(json) => serde_json::from_str(json)
            .map_err(|error| StoreError::Corrupt(format!("card {id} spending controls: {error}"))),
    }
}

/// How many cards exist (a fresh database has none).
pub async fn count(tx: &mut Tx) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM cards").fetch_one(&mut **tx).await?)
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<CardRecord>> {
    let row = sqlx::query("SELECT * FROM cards WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The cards with these ids (those that exist), in one statement.
pub async fn many(tx: &mut Conn, ids: &[String]) -> Result<Vec<CardRecord>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(crate::rows_per_statement(1)) {
        let sql = format!("SELECT * FROM cards WHERE id IN ({})", crate::list_placeholders(tx, 1, chunk.len()));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *tx).await? {
            found.push(from_row(&row)?);
        }
    }
    Ok(found)
}

/// The card, locked against other writers until the transaction ends (PostgreSQL row lock; SQLite's write
/// transaction already excludes other writers).
pub async fn get_for_update(tx: &mut Conn, id: &str) -> Result<Option<CardRecord>> {
    let sql = format!("SELECT * FROM cards WHERE id = $1{}", for_update(tx));
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The card whose number has this keyed hash.
pub async fn find_by_number_hash(tx: &mut Tx, number_hash: &[u8]) -> Result<Option<CardRecord>> {
    let sql = format!("SELECT * FROM cards WHERE number_hash = $1{}", for_update(tx));
    let row = sqlx::query(&sql).bind(number_hash).fetch_optional(&mut **tx).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// The cards with these keyed hashes, locked for writing on PostgreSQL (in id order, so that two batches never
/// wait for each other in a circle). SQLite: `begin`, if given, is sent first in the same round trip (the
/// statements [`crate::group_commit::Batch::connection`] hands out).
pub async fn find_by_number_hashes(tx: &mut Conn, hashes: &[Vec<u8>], begin: Option<&str>) -> Result<Vec<BatchCard>> {
    if tx.backend_name() != "PostgreSQL" {
        return find_by_number_hashes_packed(tx, hashes, begin).await;
    }
    // Locked in id order, so that two batches never wait for each other in a circle; the hashes as one array
    // (`rows_as_arrays`).
    let sql = format!("SELECT {BATCH_COLUMNS} FROM cards WHERE number_hash = ANY($1::bytea[]) ORDER BY id FOR UPDATE");
    let rows = sqlx::query(&sql).bind(bytea_array(hashes)).fetch_all(&mut *tx).await?;
    rows.iter().map(batch_card).collect()
}

/// The text form of a PostgreSQL `bytea[]` of these values, to bind as one parameter.
fn bytea_array(values: &[Vec<u8>]) -> String {
    let cells: Vec<crate::Value> = values.iter().map(|value| crate::Value::Bytes(Some(value.clone()))).collect();
    crate::array_literal(cells.iter())
}

/// Makes deciders of one cardholder's authorizations take turns (PostgreSQL; SQLite's one writer already does):
/// a transaction-scoped advisory lock per cardholder of these cards (by number hash), taken in one global order.
/// A decision reads the cardholder's approvals, CVV2 failures and standing, which no card row lock covers; call
/// this before locking the cards themselves, so that two batches never wait for each other in a circle.
pub async fn lock_cardholders_of(tx: &mut Conn, hashes: &[Vec<u8>]) -> Result<()> {
    if tx.backend_name() != "PostgreSQL" || hashes.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT COUNT(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT hashtextextended(cardholder_id, {CARDHOLDER_LOCKS}) \
         AS k FROM cards WHERE number_hash = ANY($1::bytea[]) ORDER BY k) AS keys"
    );
    sqlx::query_scalar::<_, i64>(&sql).bind(bytea_array(hashes)).fetch_one(&mut *tx).await?;
    Ok(())
}

/// The seed that puts cardholder locks in their own part of the advisory lock space.
const CARDHOLDER_LOCKS: i64 = 7_311_002;

/// [`find_by_number_hashes`] on SQLite: the rows come back packed into one JSON value. sqlx's SQLite driver hands
/// each row from its worker thread to the caller separately, which costs more than SQLite's own lookup; one row
/// of JSON makes it a single hand-over (docs/performance-log, session 2).
async fn find_by_number_hashes_packed(
    tx: &mut Conn,
    hashes: &[Vec<u8>],
    mut begin: Option<&str>,
) -> Result<Vec<BatchCard>> {
    let mut found = Vec::with_capacity(hashes.len());
    let mut chunks: Vec<&[Vec<u8>]> = hashes.chunks(crate::rows_per_statement(1)).collect();
    if chunks.is_empty() && begin.is_some() {
        // A statement all the same, to carry `begin`.
        chunks.push(&[]);
    }
    for chunk in chunks {
        let (list, nulls) = crate::in_list(tx, chunk.len().max(1));
        let nulls = nulls + usize::from(chunk.is_empty());
        let sql = format!(
            "{}SELECT json_group_array(json_array({})) FROM cards WHERE number_hash IN ({list})",
            begin.take().map(|begin| format!("{begin}; ")).unwrap_or_default(),
            BATCH_COLUMNS.replace("number_hash", "hex(number_hash)"),
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for hash in chunk {
            query = query.bind(hash);
        }
        for _ in 0..nulls {
            query = query.bind(None::<Vec<u8>>);
        }
        // Not `fetch_one`: with `begin` first, sqlx's SQLite driver stops at the first statement's result.
        let packed = query.fetch_all(&mut *tx).await?.pop().ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
        let rows: Vec<PackedBatchCard> =
            serde_json::from_str(&packed).map_err(|error| StoreError::Corrupt(format!("packed card rows: {error}")))?;
        for row in rows {
            found.push(row.into_batch_card()?);
        }
    }
    Ok(found)
}

/// A card as [`find_by_number_hashes_packed`] packs it: [`BATCH_COLUMNS`] in order, the hash in hex.
#[derive(serde::Deserialize)]
struct PackedBatchCard(
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    i64,
);

impl PackedBatchCard {
    fn into_batch_card(self) -> Result<BatchCard> {
        let PackedBatchCard(
            id,
            cardholder_id,
            number_hash,
            cvk_version,
            version,
            merchant_name,
            currency,
            amount,
            held,
            captured,
            status,
            frozen_from,
            exp_year,
            exp_month,
            valid_until,
            acquirer,
            merchant,
            paused,
            spending_controls,
            created_at,
        ) = self;
        let card = restore(
            &id,
            &Stored {
                currency: &currency,
                status: &status,
                frozen_from: frozen_from.as_deref(),
                amounts: (amount, held, captured),
                expiry: (exp_year, exp_month),
                valid_until: from_micros(valid_until)?,
                merchant: (acquirer.as_deref(), merchant.as_deref()),
            },
        )?;
        Ok(BatchCard {
            cardholder_id,
            number_hash: from_hex(&number_hash)?,
            cvk_version,
            version,
            merchant_name,
            card,
            controls: CardControls::new(paused != 0, controls_of(&id, spending_controls.as_deref())?),
            created_at: from_micros(created_at)?,
            id,
        })
    }
}

/// Bytes from SQLite's `hex()` (upper-case, two digits a byte).
fn from_hex(text: &str) -> Result<Vec<u8>> {
    let digit = |byte: u8| (byte as char).to_digit(16).map(|value| value as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| StoreError::Corrupt("packed card row: bad hex".to_owned()))
}

/// Cards in `status`, newest first (e.g. the frozen ones an operator reviews).
pub async fn in_status(tx: &mut Tx, status: &str, limit: u32) -> Result<Vec<CardRecord>> {
    let rows = sqlx::query("SELECT * FROM cards WHERE status = $1 ORDER BY id DESC LIMIT $2")
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Cards whose id or last four digits are `text` (the operator's search), newest first.
pub async fn search(tx: &mut Tx, text: &str, limit: u32) -> Result<Vec<CardRecord>> {
    let rows = sqlx::query("SELECT * FROM cards WHERE id = $1 OR last4 = $1 ORDER BY id DESC LIMIT $2")
        .bind(text.trim())
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Pay now: what has been charged to the card's funding card so far.
pub async fn funding_charged(tx: &mut Tx, card_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT funding_charged FROM cards WHERE id = $1").bind(card_id).fetch_one(&mut **tx).await?)
}

/// Pay now: records that `delta` more (negative: refunded) was charged to the card's funding card.
pub async fn add_funding_charged(tx: &mut Tx, card_id: &str, delta: i64) -> Result<()> {
    sqlx::query("UPDATE cards SET funding_charged = funding_charged + $1 WHERE id = $2")
        .bind(delta)
        .bind(card_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Pay-now cards that have been used whose funding charge differs from what they spent (held + captured):
/// (card, currency, spent, charged).
pub async fn pay_now_untrued(tx: &mut Tx, limit: u32) -> Result<Vec<(String, String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, currency, held + captured, funding_charged FROM cards WHERE plan_kind = 'pay_now' \
         AND funding_charged <> held + captured AND (status <> 'active' OR funding_charged <> 0) ORDER BY id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?)
}

/// [`pay_now_untrued`] for these cards only, read again inside the write.
pub async fn pay_now_untrued_among(tx: &mut Tx, ids: &[String]) -> Result<Vec<(String, String, i64, i64)>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(crate::rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, currency, held + captured, funding_charged FROM cards WHERE id IN ({}) \
             AND funding_charged <> held + captured{}",
            crate::list_placeholders(tx, 1, chunk.len()),
            for_update(tx)
        );
        let mut query = sqlx::query_as(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        found.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(found)
}

/// Used cards with a plan whose first capture is at least 14 days old (`captured_before`): due their unused-amount
/// adjustment. Closed cards are done.
pub async fn due_adjustment(tx: &mut Tx, captured_before: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.id FROM cards c JOIN plans p ON p.card_id = c.id WHERE c.status = 'used' \
         AND p.created_at <= $1 ORDER BY p.created_at LIMIT $2",
    )
    .bind(to_micros(captured_before))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?)
}

/// The earliest first capture after `after` of a card still due its adjustment.
pub async fn next_adjustment_capture(tx: &mut Tx, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(p.created_at) FROM cards c JOIN plans p ON p.card_id = c.id WHERE c.status = 'used' \
         AND p.created_at > $1",
    )
    .bind(to_micros(after))
    .fetch_one(&mut **tx)
    .await?;
    next.map(from_micros).transpose()
}

/// When the earliest active card's window ends after `after`.
pub async fn next_window_end(tx: &mut Tx, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let next: Option<i64> =
        sqlx::query_scalar("SELECT MIN(valid_until) FROM cards WHERE status = 'active' AND valid_until > $1")
            .bind(to_micros(after))
            .fetch_one(&mut **tx)
            .await?;
    next.map(from_micros).transpose()
}

/// Many cards' changes, added to `writes`: running them is [`StoreError::Stale`] if any card changed since the
/// batch read it; each card's stored version is then one more than it read.
pub fn add_updates(writes: &mut Writes, cards: &[CardUpdate<'_>]) {
    const COLUMNS: usize = 10;
    for chunk in cards.chunks(crate::rows_per_statement(COLUMNS)) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for update in chunk {
            let card = update.card;
            let merchant = card.merchant();
            values.extend([
                Value::from(update.id),
                update.version.into(),
                card.amount().minor().into(),
                card.held().minor().into(),
                card.captured().minor().into(),
                card.status().as_str().into(),
                Value::Text(card.frozen_from().map(|status| status.as_str().to_owned())),
                Value::Text(merchant.map(|merchant| merchant.acquirer_id.clone())),
                Value::Text(merchant.map(|merchant| merchant.merchant_id.clone())),
                Value::Text(update.merchant_name.map(str::to_owned)),
            ]);
        }
        let (rows, values) = crate::joined_rows(writes, values, COLUMNS);
        let sql = format!(
            "WITH changed (id, version, amount, held, captured, status, frozen_from, merchant_acquirer_id, merchant_id, \
             merchant_name) AS ({rows}) \
             UPDATE cards SET amount = changed.amount, held = changed.held, captured = changed.captured, \
             status = changed.status, frozen_from = changed.frozen_from, \
             merchant_acquirer_id = changed.merchant_acquirer_id, merchant_id = changed.merchant_id, \
             merchant_name = changed.merchant_name, version = cards.version + 1 \
             FROM changed WHERE cards.id = changed.id AND cards.version = changed.version"
        );
        writes.push(sql, values, chunk.len());
    }
}

/// [`record_transition`] for many cards in one statement, added to `writes`.
pub fn add_transitions(writes: &mut Writes, transitions: &[(String, Transition)]) {
    const COLUMNS: usize = 5;
    for chunk in transitions.chunks(crate::rows_per_statement(COLUMNS)) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for (card_id, transition) in chunk {
            values.extend([
                Value::from(card_id),
                transition.from.as_str().into(),
                transition.to.as_str().into(),
                (&transition.reason).into(),
                to_micros(transition.at).into(),
            ]);
        }
        let (rows, values) = crate::insert_rows(writes, values, COLUMNS);
        let sql = format!("INSERT INTO card_transitions (card_id, from_status, to_status, reason, at) {rows}");
        writes.push(sql, values, chunk.len());
    }
}

/// Writes a changed domain card into its row and records the transition that changed its status, if one did: the
/// way a card changes outside an authorization batch (which writes many at once with [`add_updates`]).
pub async fn save(tx: &mut Conn, record: &mut CardRecord, card: &Card, transition: Option<&Transition>) -> Result<()> {
    record.set_card(card);
    update(tx, record).await?;
    if let Some(transition) = transition {
        record_transition(tx, &record.id, transition).await?;
    }
    Ok(())
}

/// Writes the card's mutable fields if nobody changed it since `card.version` was read; bumps the version.
pub async fn update(tx: &mut Conn, card: &mut CardRecord) -> Result<()> {
    let result = sqlx::query(
        "UPDATE cards SET amount = $1, held = $2, captured = $3, status = $4, frozen_from = $5, \
         merchant_acquirer_id = $6, merchant_id = $7, merchant_name = $8, plan_id = $9, funding_hold_id = $10, \
         paused = $11, spending_controls = $12, version = version + 1 WHERE id = $13 AND version = $14",
    )
    .bind(card.amount)
    .bind(card.held)
    .bind(card.captured)
    .bind(card.status.as_str())
    .bind(card.frozen_from.map(CardStatus::as_str))
    .bind(&card.merchant_acquirer_id)
    .bind(&card.merchant_id)
    .bind(&card.merchant_name)
    .bind(&card.plan_id)
    .bind(&card.funding_hold_id)
    .bind(i64::from(card.paused))
    .bind(controls_json(&card.spending_controls)?)
    .bind(&card.id)
    .bind(card.version)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Stale);
    }
    card.version += 1;
    Ok(())
}

/// Cards newest first, filtered by cardholder and status, after `starting_after` (a card id).
/// A page of cards, newest first; `status` as the API shows it (`paused` for an active or used card that is paused).
pub async fn list(
    tx: &mut Tx,
    cardholder_id: Option<&str>,
    status: Option<&str>,
    limit: u32,
    starting_after: Option<&str>,
) -> Result<Page<CardRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM cards WHERE ($1 IS NULL OR cardholder_id = $1) \
         AND ($2 IS NULL OR CASE WHEN paused = 1 AND status IN ('active', 'used') THEN 'paused' ELSE status END = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
    )
    .bind(cardholder_id)
    .bind(status)
    .bind(starting_after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut **tx)
    .await?;
    let cards = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_rows(cards, limit))
}

/// When the cardholder's cards created after `since` were created (card-creation velocity).
pub async fn creation_times(tx: &mut Tx, cardholder_id: &str, since: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
    let times: Vec<i64> =
        sqlx::query_scalar("SELECT created_at FROM cards WHERE cardholder_id = $1 AND created_at > $2")
            .bind(cardholder_id)
            .bind(to_micros(since))
            .fetch_all(&mut **tx)
            .await?;
    times.into_iter().map(from_micros).collect()
}

/// The amounts of the cardholder's open cards (active, used, frozen) that are not yet in a plan.
pub async fn amount_not_in_plan(tx: &mut Tx, cardholder_id: &str, currency: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM cards WHERE cardholder_id = $1 AND currency = $2 \
         AND status IN ('active', 'used', 'frozen') AND plan_id IS NULL",
    )
    .bind(cardholder_id)
    .bind(currency)
    .fetch_one(&mut **tx)
    .await?)
}

/// Active cards whose validity window ended by `now`, oldest first, at most `limit`.
pub async fn window_passed(tx: &mut Tx, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM cards WHERE status = 'active' AND valid_until <= $1 ORDER BY valid_until LIMIT $2",
    )
    .bind(to_micros(now))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?)
}

/// Every card of the cardholder, as a batch reads it, locked against other writers on PostgreSQL (in id order).
pub async fn of_cardholder_for_update(tx: &mut Conn, cardholder_id: &str) -> Result<Vec<BatchCard>> {
    let sql = format!("SELECT {BATCH_COLUMNS} FROM cards WHERE cardholder_id = $1 ORDER BY id{}", for_update(tx));
    let rows = sqlx::query(&sql).bind(cardholder_id).fetch_all(&mut *tx).await?;
    rows.iter().map(batch_card).collect()
}

/// The card's recorded transitions, oldest first: (to status, reason, when).
pub async fn transitions(tx: &mut Tx, card_id: &str) -> Result<Vec<(String, String, DateTime<Utc>)>> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT to_status, reason, at FROM card_transitions WHERE card_id = $1 ORDER BY at, id")
            .bind(card_id)
            .fetch_all(&mut **tx)
            .await?;
    rows.into_iter().map(|(to, reason, at)| Ok((to, reason, from_micros(at)?))).collect()
}

async fn record_transition(tx: &mut Conn, card_id: &str, transition: &Transition) -> Result<()> {
    sqlx::query(
        "INSERT INTO card_transitions (card_id, from_status, to_status, reason, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(card_id)
    .bind(transition.from.as_str())
    .bind(transition.to.as_str())
    .bind(&transition.reason)
    .bind(to_micros(transition.at))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<CardRecord> {
    let id: String = row.try_get("id")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("card {id} {what}"));
    let currency = Currency::from_code(&row.try_get::<String, _>("currency")?).map_err(|_| corrupt("currency"))?;
    let status = CardStatus::parse(&row.try_get::<String, _>("status")?).ok_or_else(|| corrupt("status"))?;
    let frozen_from = match row.try_get::<Option<String>, _>("frozen_from")? {
        Some(text) => Some(CardStatus::parse(&text).ok_or_else(|| corrupt("frozen_from"))?),
        None => None,
    };
    let plan_kind = PlanKind::parse(&row.try_get::<String, _>("plan_kind")?).ok_or_else(|| corrupt("plan_kind"))?;
    Ok(CardRecord {
        cardholder_id: row.try_get("cardholder_id")?,
        funding_source_id: row.try_get("funding_source_id")?,
        number_hash: row.try_get("number_hash")?,
        number_ciphertext: row.try_get("number_ciphertext")?,
        data_key_version: row.try_get("data_key_version")?,
        cvk_version: row.try_get("cvk_version")?,
        bin: row.try_get("bin")?,
        last4: row.try_get("last4")?,
        exp_month: row.try_get("exp_month")?,
        exp_year: row.try_get("exp_year")?,
        currency,
        amount: row.try_get("amount")?,
        held: row.try_get("held")?,
        captured: row.try_get("captured")?,
        status,
        frozen_from,
        merchant_acquirer_id: row.try_get("merchant_acquirer_id")?,
        merchant_id: row.try_get("merchant_id")?,
        merchant_name: row.try_get("merchant_name")?,
        plan_kind,
        plan_id: row.try_get("plan_id")?,
        funding_hold_id: row.try_get("funding_hold_id")?,
        valid_until: from_micros(row.try_get("valid_until")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        version: row.try_get("version")?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        spending_controls: controls_of(&id, row.try_get::<Option<String>, _>("spending_controls")?.as_deref())?,
        id,
    })
}
