//! A batch of authorizations, read and written for the engine ([`ghostcard_domain::engine`]).
//!
//! [`load`] reads everything the engine needs into a [`Snapshot`] with a few multi-row queries sent together (one
//! round trip on SQLite after the cards); [`load_cards_of`] adds every card of cardholders a fraud rule freezes;
//! [`write()`] writes the engine's [`Effects`] with multi-row statements sent together. On PostgreSQL the batch's
//! cardholders are locked first (advisory locks, in one global order), then its cards (in id order), and every card
//! update is version-checked: another writer in between is [`StoreError::Stale`] or [`StoreError::Conflict`], and
//! the caller rolls back and decides the batch's requests one at a time.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use ghostcard_domain::engine::{Answer, CardEntry, Decided, Effects, NetworkKey, Past, Snapshot, Submission};
use ghostcard_domain::ids::new_id;
use ghostcard_domain::ledger::TransferId;
use ghostcard_domain::money::Currency;

use crate::authorizations::{self, AuthorizationRecord};
use crate::cards::{self, BatchCard, CardRecord, CardUpdate};
use crate::events::{self, Event};
use crate::{Conn, Found, Pending, Reads, Result, StoreError, Writes, cardholders, ledger, plans, reversals};

/// A batch's snapshot, with what the store needs to write it back.
pub struct Loaded {
    pub snapshot: Snapshot,
    /// The snapshot's cards' row versions and CVK versions, by id.
    pub versions: HashMap<String, Versions>,
    /// Card ids by number hash.
    pub by_hash: HashMap<Vec<u8>, String>,
    /// The authorizations recorded under the batch's network keys.
    pub recorded: HashMap<NetworkKey, AuthorizationRecord>,
    found: Found,
    last_transfer: Pending,
}

/// A loaded card's versions.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    /// Of its row, checked when the batch writes it.
    pub row: i64,
    /// Of the CVK its CVV2 is computed with.
    pub cvk: i64,
}

impl Loaded {
    /// The card with this number hash, if the snapshot has it: its id, its state and versions.
    pub fn card_by_hash(&self, hash: &[u8]) -> Option<(&str, &CardEntry, Versions)> {
        let id = self.by_hash.get(hash)?;
        Some((id, self.snapshot.cards.get(id)?, *self.versions.get(id)?))
    }

    fn add(&mut self, card: BatchCard) {
        let versions = Versions { row: card.version, cvk: card.cvk_version };
        let entry = CardEntry {
            cardholder_id: card.cardholder_id,
            card: card.card,
            controls: card.controls,
            merchant_name: card.merchant_name,
            created_at: card.created_at,
        };
        self.versions.insert(card.id.clone(), versions);
        self.by_hash.insert(card.number_hash, card.id.clone());
        self.snapshot.cards.insert(card.id, entry);
    }
}

/// How far back a batch reads the history of its cardholders, and of its cards (`None`: no rule counts a card's
/// authorizations).
#[derive(Debug, Clone, Copy)]
pub struct Since {
    pub cardholders: DateTime<Utc>,
    pub cards: Option<DateTime<Utc>>,
}

/// Loads the snapshot for requests naming cards by these number hashes and carrying these network keys: the cards,
/// their cardholders' standing (`today` decides what is overdue) and authorizations since `since`, the keys
/// already recorded and those whose reversal came first. SQLite: `begin`, if given, goes with the first statement
/// (the statements [`crate::group_commit::Batch::connection`] hands out).
pub async fn load(
    tx: &mut Conn,
    hashes: &[Vec<u8>],
    keys: &[NetworkKey],
    since: Since,
    today: NaiveDate,
    begin: Option<&str>,
) -> Result<Loaded> {
    let mut hashes = hashes.to_vec();
    hashes.sort();
    hashes.dedup();
    cards::lock_cardholders_of(tx, &hashes).await?;
    let found_cards = cards::find_by_number_hashes(tx, &hashes, begin).await?;
    let mut holders: Vec<String> = found_cards.iter().map(|record| record.cardholder_id.clone()).collect();
    holders.sort();
    holders.dedup();
    // The rest in one round trip on SQLite.
    let mut reads = Reads::new(tx);
    let originals = authorizations::add_find_by_network_keys(&mut reads, keys);
    let reversed_first = reversals::add_reversed_before_arrival_many(&mut reads, keys);
    let standings = cardholders::add_statuses(&mut reads, &holders);
    let active_plans = plans::add_active_for_cardholders(&mut reads, &holders);
    let history = authorizations::add_history(&mut reads, &holders, since.cardholders);
    let card_ids: Vec<String> = found_cards.iter().map(|record| record.id.clone()).collect();
    let card_declines = authorizations::add_card_declines(&mut reads, &card_ids, since.cardholders);
    let card_history = since.cards.map(|since| authorizations::add_card_history(&mut reads, &card_ids, since));
    // The holds' ids are reserved from it when written: nothing writes a transfer in the batch before them.
    let last_transfer = ledger::add_last_id(&mut reads);
    let found = reads.run(tx).await?;

    let mut snapshot = Snapshot::default();
    let mut recorded = HashMap::new();
    for original in authorizations::find_by_network_keys_in(&found, &originals)? {
        if let Some(key) = original.network_key() {
            snapshot.recorded.insert(key.clone());
            recorded.insert(key, original);
        }
    }
    snapshot.reversed = reversals::reversed_before_arrival_in(&found, &reversed_first)?.into_iter().collect();
    for (holder, found) in cardholders::statuses_in(&found, &standings)? {
        let standing = snapshot.standings.entry(holder).or_default();
        standing.restricted = found.status == "restricted";
        standing.joined = Some(found.created_at);
    }
    for plan in plans::active_for_cardholders_in(&found, &active_plans)? {
        if plan.plan.has_arrears(today) {
            snapshot.standings.entry(plan.cardholder_id).or_default().overdue = true;
        }
    }
    for (holder, past) in authorizations::history_in(&found, &history)? {
        snapshot.history.entry(holder).or_default().push(past);
    }
    for (card, past) in authorizations::history_in(&found, &card_declines)? {
        snapshot.card_declines.entry(card).or_default().push(past);
    }
    if let Some(card_history) = &card_history {
        for (card, past) in authorizations::history_in(&found, card_history)? {
            snapshot.card_history.entry(card).or_default().push(past);
        }
    }
    let mut loaded =
        Loaded { snapshot, versions: HashMap::new(), by_hash: HashMap::new(), recorded, found, last_transfer };
    for card in found_cards {
        loaded.add(card);
    }
    Ok(loaded)
}

/// Adds every card of these cardholders to the snapshot (locked on PostgreSQL) and marks them complete.
pub async fn load_cards_of(tx: &mut Conn, loaded: &mut Loaded, holders: &[String]) -> Result<()> {
    for holder in holders {
        for card in cards::of_cardholder_for_update(tx, holder).await? {
            // A card already in the snapshot stays as it was read.
            if !loaded.versions.contains_key(&card.id) {
                loaded.add(card);
            }
        }
        loaded.snapshot.complete.insert(holder.clone());
    }
    Ok(())
}

/// What became of a request, as stored.
#[derive(Debug, Clone)]
pub enum Stored {
    Decided(AuthorizationRecord),
    /// A repeat: its original's record (recorded before, or earlier in the batch).
    Duplicate(AuthorizationRecord),
    /// ghostcard would approve it and the decision endpoint decides: the record it would have (not written), and
    /// its card as it is.
    Ask(Box<Asked>),
}

/// A would-be approval to send to the decision endpoint.
#[derive(Debug, Clone)]
pub struct Asked {
    pub authorization: AuthorizationRecord,
    pub card: Option<CardRecord>,
}

/// Writes what the engine decided for `submissions` (with the number hash each came with), returning one
/// [`Stored`] per submission. The transaction must still be rolled back on an error.
pub async fn write(
    tx: &mut Conn,
    loaded: Loaded,
    submissions: Vec<Submission>,
    number_hashes: Vec<Option<Vec<u8>>>,
    effects: Effects,
    now: DateTime<Utc>,
) -> Result<Vec<Stored>> {
    let invariant = |what: &str| StoreError::Corrupt(format!("authorization batch: {what}"));
    let requests = submissions.len();
    assert!(
        effects.answers.len() == requests && number_hashes.len() == requests,
        "one answer and one number hash per request"
    );
    let Loaded { versions, recorded, found, last_transfer, .. } = loaded;
    let ids = ledger::reserve_ids_after(tx, &found, &last_transfer, effects.entries.len()).await?;
    // Each decided request's fields move into its record.
    let mut records = Vec::with_capacity(requests);
    // Would-be approvals the decision endpoint decides: not written; the caller asks it and submits them again.
    let mut asks = Vec::new();
    for ((submission, answer), hash) in submissions.into_iter().zip(&effects.answers).zip(number_hashes) {
        match answer {
            Answer::Decided(decided) => {
                let hold = decided.hold_entry.map(|index| ids[index]);
                records.push(AuthorizationRecord::decided(submission, decided, hash, hold, now));
            }
            Answer::Ask(decided) => asks.push(AuthorizationRecord::decided(submission, decided, hash, None, now)),
            Answer::DuplicateInBatch(_) | Answer::DuplicateOfRecorded(_) => {}
        }
    }
    let mut changed = Vec::with_capacity(effects.cards.len());
    for (id, entry) in &effects.cards {
        let versions = versions.get(id).ok_or_else(|| invariant("a changed card was not loaded"))?;
        changed.push(CardUpdate {
            id,
            version: versions.row,
            card: &entry.card,
            merchant_name: entry.merchant_name.as_deref(),
        });
    }
    let batch_events = thin_events(&effects.events, now);
    let entries: Vec<(TransferId, &ghostcard_domain::ledger::Entry)> =
        ids.iter().copied().zip(&effects.entries).collect();

    // One round trip on SQLite.
    let mut writes = Writes::new(tx);
    ledger::add_new(&mut writes, &entries, now)?;
    authorizations::add_many(&mut writes, &records);
    cards::add_updates(&mut writes, &changed);
    cards::add_transitions(&mut writes, &effects.transitions);
    events::add_many(&mut writes, &batch_events);
    writes.run(tx).await?;
    // The cards of the requests the decision endpoint decides, which it is sent (one statement for them all).
    let asked_cards: Vec<String> = asks.iter().filter_map(|ask| ask.card_id.clone()).collect();
    let cards_by_id: HashMap<String, CardRecord> = if asked_cards.is_empty() {
        HashMap::new()
    } else {
        cards::many(tx, &asked_cards).await?.into_iter().map(|card| (card.id.clone(), card)).collect()
    };

    stored_answers(&effects.answers, records, asks, &cards_by_id, &recorded)
}

/// One [`Stored`] per answer: each decided request owns its record (moved out, not copied), a repeat gets its
/// original's, an ask its record and card.
fn stored_answers(
    answers: &[Answer],
    records: Vec<AuthorizationRecord>,
    asks: Vec<AuthorizationRecord>,
    cards_by_id: &HashMap<String, CardRecord>,
    recorded: &HashMap<NetworkKey, AuthorizationRecord>,
) -> Result<Vec<Stored>> {
    let invariant = |what: &str| StoreError::Corrupt(format!("authorization batch: {what}"));
    let mut records = records.into_iter();
    let mut asks = asks.into_iter();
    let mut stored: Vec<Stored> = Vec::with_capacity(answers.len());
    for answer in answers {
        let next = match answer {
            Answer::Decided(_) => {
                Stored::Decided(records.next().ok_or_else(|| invariant("a decision without its record"))?)
            }
            Answer::Ask(_) => {
                let authorization = asks.next().ok_or_else(|| invariant("an ask without its record"))?;
                let card = authorization.card_id.as_ref().and_then(|id| cards_by_id.get(id).cloned());
                Stored::Ask(Box::new(Asked { authorization, card }))
            }
            Answer::DuplicateInBatch(earlier) => match stored.get(*earlier) {
                Some(Stored::Decided(record) | Stored::Duplicate(record)) => Stored::Duplicate(record.clone()),
                Some(Stored::Ask(_)) | None => return Err(invariant("a repeat before its original")),
            },
            Answer::DuplicateOfRecorded(key) => {
                Stored::Duplicate(recorded.get(key).cloned().ok_or_else(|| invariant("a repeat of nothing"))?)
            }
        };
        stored.push(next);
    }
    Ok(stored)
}

/// The batch's events: thin (the object is read when the event is).
fn thin_events(notes: &[ghostcard_domain::engine::EventNote], now: DateTime<Utc>) -> Vec<Event> {
    let mut rng = rand::rng();
    notes
        .iter()
        .map(|note| Event {
            id: new_id("evt", now, &mut rng),
            kind: note.kind.to_owned(),
            subject: Some(note.subject.clone()),
            data: None,
            created_at: now,
        })
        .collect()
}

impl AuthorizationRecord {
    /// The row of a decided request.
    pub fn decided(
        submission: Submission,
        decided: &Decided,
        number_hash: Option<Vec<u8>>,
        hold: Option<TransferId>,
        now: DateTime<Utc>,
    ) -> AuthorizationRecord {
        let Submission { id, request, descriptors, .. } = submission;
        let decision = &decided.decision;
        AuthorizationRecord {
            id,
            card_id: decided.card_id.clone(),
            cardholder_id: decided.cardholder_id.clone(),
            kind: decision.kind,
            amount: request.amount_minor,
            currency: Currency::from_numeric(request.currency_numeric)
                .map_or_else(|_| format!("{:03}", request.currency_numeric), |currency| currency.code().to_owned()),
            status: decided.status(),
            response_code: decision.response_code.to_owned(),
            decline_reason: decision.decline_reason().map(|reason| reason.code().to_owned()),
            rule: decision.rule.clone(),
            cvv_result: decision.cvv_result.map(|result| result.code().to_owned()),
            flag: decision.flag.as_ref().map(|reason| reason.code().to_owned()),
            merchant_country: request.country.map(|country| country.as_str().to_owned()),
            mcc: request.mcc.to_string(),
            acquirer_id: request.merchant.acquirer_id,
            merchant_id: request.merchant.merchant_id,
            merchant_name: descriptors.merchant_name,
            merchant_city: descriptors.merchant_city,
            stan: descriptors.stan,
            rrn: descriptors.rrn,
            auth_code: decided.auth_code.clone(),
            transmission_time: descriptors.transmission_time,
            hold_transfer_id: hold.map(|id| id.0 as i64),
            held: decided.held,
            captured: 0,
            number_hash,
            stand_in: false,
            created_at: now,
            // Serializing plain fields cannot fail; a missing record only loses the replay of this one.
            decision: serde_json::to_string(&decided.record).ok(),
        }
    }

    /// Its network key, when it came with one.
    pub fn network_key(&self) -> Option<NetworkKey> {
        Some(NetworkKey {
            acquirer_id: self.acquirer_id.clone(),
            stan: self.stan.clone()?,
            transmission_time: self.transmission_time.clone()?,
        })
    }
}

/// A history row of [`authorizations::history_in`], typed.
pub(crate) fn past(
    kind: &str,
    response_code: String,
    decline_reason: Option<String>,
    amount: i64,
    at: DateTime<Utc>,
) -> Result<Past> {
    let kind = ghostcard_domain::decision::AuthorizationKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(format!("authorization kind {kind:?}")))?;
    Ok(Past { kind, response_code: response_code.into(), decline_reason: decline_reason.map(Into::into), amount, at })
}
