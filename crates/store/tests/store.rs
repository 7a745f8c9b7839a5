//! The store on both databases: migrations, conditional updates, the ledger's once-only resolution, idempotency.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ghostcard_domain::authorization::AuthorizationStatus;
use ghostcard_domain::card::CardStatus;
use ghostcard_domain::controls::SpendingControls;
use ghostcard_domain::country::Country;
use ghostcard_domain::decision::AuthorizationKind;
use ghostcard_domain::decision::Mcc;
use ghostcard_domain::engine::NetworkKey;
use ghostcard_domain::ledger::{Entry, LedgerError, entries};
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::PlanKind;
use ghostcard_harness::scratch;
use ghostcard_store::authorizations::AuthorizationRecord;
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::group_commit::GroupCommit;
use ghostcard_store::idempotency::{self, Claim};
use ghostcard_store::ledger::{self, CommitError};
use ghostcard_store::{Dialect, Store, StoreError, StoreOptions};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single().expect("valid")
}

/// The same empty store on SQLite, then on PostgreSQL; the SQLite file's directory goes when the iteration ends.
async fn stores(test: &str) -> Stores {
    let directory = scratch::Directory::new(&format!("store-{test}")).expect("temp dir");
    let sqlite_url = directory.sqlite_url("test.db");
    let postgres_url = scratch::postgres_database(&format!("ghostcard_store_{test}")).await.expect("PostgreSQL");
    let mut stores = Vec::new();
    for url in [sqlite_url, postgres_url] {
        let store = Store::connect(&url, &StoreOptions::default()).await.expect("connects");
        assert_eq!(store.migrate(now()).await.expect("migrates"), (1..=13).collect::<Vec<i64>>());
        assert!(store.migrate(now()).await.expect("migrates again").is_empty(), "migrations apply once");
        stores.push(store);
    }
    Stores { stores: stores.into_iter(), _directory: directory }
}

struct Stores {
    stores: std::vec::IntoIter<Store>,
    _directory: scratch::Directory,
}

impl Iterator for Stores {
    type Item = Store;

    fn next(&mut self) -> Option<Store> {
        self.stores.next()
    }
}

#[tokio::test]
async fn a_cardholder_email_is_unique() {
    for store in stores("email").await {
        let cardholder = cardholder("ch_1");
        let mut tx = store.begin().await.expect("begins");
        cardholders::insert(&mut tx, &cardholder).await.expect("inserts");
        tx.commit().await.expect("commits");
        let mut tx = store.begin().await.expect("begins");
        let again = Cardholder { id: "ch_2".to_owned(), ..cardholder.clone() };
        assert!(matches!(cardholders::insert(&mut tx, &again).await, Err(StoreError::Conflict)));
        drop(tx);
        let mut tx = store.read().await.expect("begins");
        assert_eq!(cardholders::get(&mut tx, "ch_1").await.expect("reads"), Some(cardholder));
    }
}

#[tokio::test]
async fn a_hold_resolves_once_and_the_ledger_verifies() {
    for store in stores("ledger").await {
        let usd = |minor| Money::new(minor, Currency::USD);
        let mut tx = store.begin().await.expect("begins");
        ledger::commit(&mut tx, &entries::issue_card("card_1", usd(10_000)), now()).await.expect("issues");
        let hold =
            ledger::commit(&mut tx, &[entries::hold("card_1", usd(6_000))], now()).await.expect("holds")[0].transfer;
        let capture = ledger::commit(&mut tx, &entries::capture("card_1", Some((hold, usd(6_000))), usd(4_000)), now())
            .await
            .expect("captures");
        let rehold = capture[0].reheld.expect("re-held");
        tx.commit().await.expect("commits");

        let mut tx = store.begin().await.expect("begins");
        let twice = ledger::commit(&mut tx, &[entries::void(hold, "reversal")], now()).await;
        assert!(matches!(twice, Err(CommitError::Ledger(LedgerError::AlreadyResolved(id))) if id == hold), "{twice:?}");
        drop(tx);
        let mut tx = store.begin().await.expect("begins");
        let too_much =
            ledger::commit(&mut tx, &[Entry::PostHold { pending: rehold, amount: usd(2_001), code: "capture" }], now())
                .await;
        assert!(matches!(too_much, Err(CommitError::Ledger(LedgerError::ExceedsPending(_)))));
        drop(tx);

        let mut tx = store.read().await.expect("begins");
        let report = ledger::verify(&mut tx).await.expect("verifies");
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!(report.currencies["USD"].postings_sum, 0);
        assert_eq!(report.currencies["USD"].open_holds, 2_000);
        assert_eq!(ledger::transfers(&mut tx).await.expect("reads").len(), 6);
    }
}

#[tokio::test]
async fn verify_finds_a_card_that_disagrees_with_its_ledger_account() {
    for store in stores("card_mismatch").await {
        let usd = |minor| Money::new(minor, Currency::USD);
        let mut card = card("card_1", "ch_1", 1);
        let mut tx = store.begin().await.expect("begins");
        insert_cardholder_with_cards(&mut tx, "ch_1", std::slice::from_ref(&card)).await;
        ledger::post_many(&mut tx, &entries::issue_card("card_1", usd(10_000)), now()).await.expect("posts");
        ledger::commit(&mut tx, &[entries::hold("card_1", usd(2_500))], now()).await.expect("holds");
        card.held = 2_500;
        // Its controls are written by the update and read back by both lookups.
        card.paused = true;
        card.spending_controls = SpendingControls {
            blocked_categories: vec![Mcc(7995), Mcc(742)],
            allowed_countries: vec![Country::parse("US").expect("US")],
            ..SpendingControls::default()
        };
        cards::update(&mut tx, &mut card).await.expect("updates");
        ghostcard_store::commit(tx).await.expect("commits");
        let mut tx = store.read().await.expect("reads");
        assert_eq!(cards::get(&mut tx, "card_1").await.expect("reads").expect("found"), card);
        let report = ledger::verify(&mut tx).await.expect("verifies");
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!(report.currencies["USD"].open_holds, 2_500);
        // The batch lookup by number hash returns the row as written (SQLite packs the rows; PostgreSQL does not).
        let found = cards::find_by_number_hashes(&mut tx, &[vec![9; 32], vec![1; 32]], None).await.expect("finds");
        let expected = cards::BatchCard {
            id: card.id.clone(),
            cardholder_id: card.cardholder_id.clone(),
            number_hash: card.number_hash.clone(),
            cvk_version: card.cvk_version,
            version: card.version,
            merchant_name: card.merchant_name.clone(),
            card: card.to_card().expect("a valid card"),
            controls: card.controls(),
            created_at: card.created_at,
        };
        assert_eq!(found, vec![expected]);
        drop(tx);

        // The card says more is held than the ledger does.
        let mut tx = store.begin().await.expect("begins");
        card.held = 3_000;
        cards::update(&mut tx, &mut card).await.expect("updates");
        ghostcard_store::commit(tx).await.expect("commits");
        let mut tx = store.read().await.expect("reads");
        let report = ledger::verify(&mut tx).await.expect("verifies");
        assert!(!report.ok);
        assert_eq!(report.problems, vec!["card card_1 has 7000 remaining but 7500 in the ledger".to_owned()]);
    }
}

/// A cardholder, its funding source, and these cards of it.
fn cardholder(id: &str) -> Cardholder {
    Cardholder {
        id: id.to_owned(),
        email: format!("{id}@example.com"),
        name: "Ada".to_owned(),
        country: "US".to_owned(),
        password_hash: None,
        status: "active".to_owned(),
        restricted_reason: None,
        created_at: now(),
    }
}

async fn insert_cardholder_with_cards(tx: &mut ghostcard_store::Tx, id: &str, cards: &[CardRecord]) {
    let source = ghostcard_store::funding_sources::FundingSource {
        id: format!("fs_{id}"),
        cardholder_id: id.to_owned(),
        brand: "visa".to_owned(),
        last4: "4242".to_owned(),
        exp_month: 12,
        exp_year: 2030,
        gateway_token: "token".to_owned(),
        status: "active".to_owned(),
        created_at: now(),
    };
    cardholders::insert_many(tx, &[cardholder(id)]).await.expect("inserts");
    ghostcard_store::funding_sources::insert_many(tx, &[source]).await.expect("inserts");
    cards::insert_many(tx, cards).await.expect("inserts");
}

/// An active card of 100.00 whose number hash is 32 bytes of `hash_byte`.
fn card(id: &str, cardholder_id: &str, hash_byte: u8) -> CardRecord {
    CardRecord {
        id: id.to_owned(),
        cardholder_id: cardholder_id.to_owned(),
        funding_source_id: format!("fs_{cardholder_id}"),
        number_hash: vec![hash_byte; 32],
        number_ciphertext: vec![2; 40],
        data_key_version: 1,
        cvk_version: 1,
        bin: "424242".to_owned(),
        last4: "4242".to_owned(),
        exp_month: 11,
        exp_year: 2029,
        currency: Currency::USD,
        amount: 10_000,
        held: 0,
        captured: 0,
        status: CardStatus::Active,
        frozen_from: None,
        merchant_acquirer_id: None,
        merchant_id: None,
        merchant_name: None,
        plan_kind: PlanKind::PayNow,
        plan_id: None,
        funding_hold_id: None,
        valid_until: now() + Duration::hours(24),
        created_at: now(),
        version: 0,
        paused: false,
        spending_controls: Default::default(),
    }
}

#[tokio::test]
async fn deciders_of_one_cardholder_take_turns() {
    for store in stores("cardholder_locks").await {
        let mut tx = store.begin().await.expect("begins");
        insert_cardholder_with_cards(&mut tx, "ch_1", &[card("card_1", "ch_1", 1), card("card_2", "ch_1", 2)]).await;
        insert_cardholder_with_cards(&mut tx, "ch_2", &[card("card_3", "ch_2", 3)]).await;
        ghostcard_store::commit(tx).await.expect("commits");

        // One decider holds Ada's cardholder lock through the first of her cards.
        let mut first = store.begin().await.expect("begins");
        cards::lock_cardholders_of(&mut first, &[vec![1; 32]]).await.expect("locks");
        let second = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.expect("begins");
                cards::lock_cardholders_of(&mut tx, &[vec![2; 32]]).await.expect("locks");
                tx
            })
        };
        if store.dialect() == Dialect::Postgres {
            // Another decider, through her other card, waits; one for another cardholder does not.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!second.is_finished(), "a second decider of the same cardholder must wait its turn");
            let mut other = store.begin().await.expect("begins");
            cards::lock_cardholders_of(&mut other, &[vec![3; 32], vec![9; 32]]).await.expect("locks at once");
            cards::lock_cardholders_of(&mut other, &[vec![3; 32]]).await.expect("locks again (re-entrant)");
            drop(other);
        }
        // SQLite's one writer makes the second wait at BEGIN IMMEDIATE instead; either way it goes on once the
        // first ends.
        ghostcard_store::commit(first).await.expect("commits");
        let second = tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("the second decider goes on once the first commits")
            .expect("joins");
        drop(second);
    }
}

#[tokio::test]
async fn idempotency_claims_replay_and_refuse() {
    for store in stores("idempotency").await {
        let claim = |hash: &'static [u8], at: DateTime<Utc>| {
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.expect("begins");
                let claim =
                    idempotency::claim(&mut tx, "key_1", "k", hash, at, Duration::hours(24), Duration::minutes(1))
                        .await
                        .expect("claims");
                tx.commit().await.expect("commits");
                claim
            }
        };
        assert_eq!(claim(b"body-a", now()).await, Claim::Claimed);
        assert_eq!(claim(b"body-a", now()).await, Claim::InFlight);
        assert_eq!(claim(b"body-b", now()).await, Claim::Mismatch);
        let mut tx = store.begin().await.expect("begins");
        idempotency::complete(&mut tx, "key_1", "k", 201, "{}").await.expect("completes");
        tx.commit().await.expect("commits");
        assert_eq!(claim(b"body-a", now()).await, Claim::Replay { status: 201, body: "{}".to_owned() });
        assert_eq!(claim(b"body-a", now() + Duration::hours(25)).await, Claim::Claimed, "forgotten after 24 h");
    }
}

#[tokio::test]
async fn sqlite_writers_take_turns_while_readers_go_on() {
    let directory = scratch::Directory::new("store-writer").expect("temp dir");
    let url = directory.sqlite_url("test.db");
    let options =
        StoreOptions { sqlite_busy_timeout: std::time::Duration::from_millis(300), ..StoreOptions::default() };
    let store = Store::connect(&url, &options).await.expect("connects");
    store.migrate(now()).await.expect("migrates");

    let mut first = store.begin().await.expect("begins");
    cardholders::insert(&mut first, &cardholder("ch_1")).await.expect("inserts");
    // A reader is not held up by the writer, and sees only what is committed.
    let mut reader = store.read().await.expect("a reader begins while a writer works");
    assert!(cardholders::get(&mut reader, "ch_1").await.expect("reads").is_none());
    drop(reader);
    // A second writer waits for the first: past the busy timeout it fails with an error instead of hanging.
    let waited = std::time::Instant::now();
    assert!(store.begin().await.is_err(), "a writer cannot begin while another holds the write connection");
    let waited = waited.elapsed();
    assert!(waited >= std::time::Duration::from_millis(250), "it waited its turn first");
    assert!(waited < std::time::Duration::from_secs(5), "and no longer than the busy timeout: waited {waited:?}");
    // Within the timeout, it goes on as soon as the first commits.
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.expect("begins once the first writer is done");
            let first_committed = cardholders::get(&mut tx, "ch_1").await.expect("reads").is_some();
            cardholders::insert(&mut tx, &cardholder("ch_2")).await.expect("inserts");
            ghostcard_store::commit(tx).await.expect("commits");
            first_committed
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the second writer waits for the first");
    ghostcard_store::commit(first).await.expect("commits");
    assert!(second.await.expect("the second writer ran"), "the second writer began after the first committed");
    let mut reader = store.read().await.expect("reads");
    assert!(cardholders::get(&mut reader, "ch_2").await.expect("reads").is_some());
    drop(reader);
    store.close().await;
}

#[tokio::test]
async fn sqlite_is_built_with_the_workspace_flags() {
    // `.cargo/config.toml` adds them to the bundled SQLite's build (LIBSQLITE3_FLAGS); without that file, a build
    // would silently fall back to libsqlite3-sys's defaults.
    let directory = scratch::Directory::new("store-flags").expect("temp dir");
    let store = Store::connect(&directory.sqlite_url("test.db"), &StoreOptions::default()).await.expect("connects");
    let mut tx = store.read().await.expect("reads");
    let options: Vec<String> =
        sqlx::query_scalar("PRAGMA compile_options").fetch_all(&mut *tx).await.expect("lists its options");
    assert!(options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"), "no memory statistics: {options:?}");
    assert!(
        !options.iter().any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
        "one page cache a connection: {options:?}"
    );
    drop(tx);
    store.close().await;
}

#[tokio::test]
async fn multi_row_statements_write_and_find_exactly_their_rows() {
    // On SQLite the batch path's statements are padded with rows of NULLs up to a power of two (so their texts
    // repeat); the padding must write and match nothing. Three rows pad to four.
    for store in stores("padding").await {
        let mut tx = store.begin().await.expect("begins");
        let events: Vec<_> = (1..=3)
            .map(|n| ghostcard_store::events::Event {
                id: format!("evt_{n}"),
                kind: "card.used".to_owned(),
                subject: Some(format!("card_{n}")),
                data: None,
                created_at: now(),
            })
            .collect();
        ghostcard_store::events::insert_many(&mut tx, &events).await.expect("inserts");
        for n in 1..=3 {
            cardholders::insert(&mut tx, &cardholder(&format!("ch_{n}"))).await.expect("inserts");
        }
        let page = ghostcard_store::events::list(&mut tx, None, 10, None).await.expect("lists");
        assert_eq!(page.rows.iter().map(|event| event.id.as_str()).collect::<Vec<_>>(), ["evt_3", "evt_2", "evt_1"]);
        let wanted: Vec<String> = ["ch_1", "ch_3", "ch_9"].map(str::to_owned).to_vec();
        let statuses = cardholders::statuses(&mut tx, &wanted).await.expect("reads");
        assert_eq!(statuses.len(), 2, "the two that exist, nothing for the padding: {statuses:?}");
        drop(tx);
    }
}

#[tokio::test]
async fn writes_run_in_order_and_report_a_stale_card_or_a_taken_key() {
    // A batch's writes go together (on SQLite as one multi-statement query). They must all land, in order; a card
    // changed since it was read must be reported as stale, and a taken key as a conflict, whichever statement it is.
    for store in stores("writes").await {
        let event = |n: u32| ghostcard_store::events::Event {
            id: format!("evt_{n}"),
            kind: "card.used".to_owned(),
            subject: Some("card_1".to_owned()),
            data: None,
            created_at: now(),
        };
        // A card a batch read at version 0 and used, with a hold of 1,000.
        let mut used_card = card("card_1", "ch_1", 1);
        used_card.status = CardStatus::Used;
        used_card.held = 1_000;
        let used_card = used_card.to_card().expect("a valid card");
        let used = |id: &'static str| cards::CardUpdate { id, version: 0, card: &used_card, merchant_name: None };
        let transition = |card: &str| {
            let transition = ghostcard_domain::card::Transition {
                from: ghostcard_domain::card::CardStatus::Active,
                to: ghostcard_domain::card::CardStatus::Used,
                reason: "test".to_owned(),
                at: now(),
            };
            (card.to_owned(), transition)
        };
        let mut tx = store.begin().await.expect("begins");
        insert_cardholder_with_cards(&mut tx, "ch_1", &[card("card_1", "ch_1", 1), card("card_2", "ch_1", 2)]).await;
        ghostcard_store::commit(tx).await.expect("commits");

        // All of them land.
        let mut tx = store.begin().await.expect("begins");
        let mut writes = ghostcard_store::Writes::new(&tx);
        cards::add_updates(&mut writes, &[used("card_1")]);
        cards::add_transitions(&mut writes, &[transition("card_1")]);
        ghostcard_store::events::add_many(&mut writes, &[event(1), event(2)]);
        writes.run(&mut tx).await.expect("writes");
        ghostcard_store::commit(tx).await.expect("commits");
        let mut tx = store.read().await.expect("begins");
        let stored = cards::get(&mut tx, "card_1").await.expect("reads").expect("the card");
        assert_eq!((stored.status.as_str(), stored.held, stored.version), ("used", 1_000, 1));
        let page = ghostcard_store::events::list(&mut tx, None, 10, None).await.expect("lists");
        assert_eq!(page.rows.len(), 2);
        drop(tx);

        // A card read at version 0 is stale now, though another statement comes after its update.
        let mut tx = store.begin().await.expect("begins");
        let mut writes = ghostcard_store::Writes::new(&tx);
        cards::add_updates(&mut writes, &[used("card_2"), used("card_1")]);
        ghostcard_store::events::add_many(&mut writes, &[event(3)]);
        assert!(matches!(writes.run(&mut tx).await, Err(StoreError::Stale)));
        drop(tx);

        // A taken key, in the last statement, is a conflict.
        let mut tx = store.begin().await.expect("begins");
        let mut writes = ghostcard_store::Writes::new(&tx);
        cards::add_updates(&mut writes, &[used("card_2")]);
        ghostcard_store::events::add_many(&mut writes, &[event(4), event(1)]);
        assert!(matches!(writes.run(&mut tx).await, Err(StoreError::Conflict)));
        drop(tx);

        // Nothing of the two that failed was kept.
        let mut tx = store.read().await.expect("begins");
        let untouched = cards::get(&mut tx, "card_2").await.expect("reads").expect("the card");
        assert_eq!((untouched.status.as_str(), untouched.version), ("active", 0));
        let page = ghostcard_store::events::list(&mut tx, None, 10, None).await.expect("lists");
        assert_eq!(page.rows.len(), 2);
    }
}

#[tokio::test]
async fn reads_run_together_and_each_finds_its_own_rows() {
    // On SQLite several queries go as one multi-statement query; each read must get its own statement's rows, an
    // empty result in between included.
    for store in stores("reads").await {
        let mut tx = store.begin().await.expect("begins");
        for n in 1..=3 {
            cardholders::insert(&mut tx, &cardholder(&format!("ch_{n}"))).await.expect("inserts");
        }
        ghostcard_store::commit(tx).await.expect("commits");
        let ids = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        let mut tx = store.read().await.expect("begins");
        let mut reads = ghostcard_store::Reads::new(&tx);
        let first = cardholders::add_statuses(&mut reads, &ids(&["ch_1", "ch_3", "ch_9"]));
        let keys = [NetworkKey {
            acquirer_id: "acq".to_owned(),
            stan: "000001".to_owned(),
            transmission_time: "1126120000".to_owned(),
        }];
        let none = ghostcard_store::authorizations::add_find_by_network_keys(&mut reads, &keys);
        let second = cardholders::add_statuses(&mut reads, &ids(&["ch_2"]));
        let found = reads.run(&mut tx).await.expect("reads");
        let mut first = cardholders::statuses_in(&found, &first).expect("decodes").into_keys().collect::<Vec<_>>();
        first.sort();
        assert_eq!(first, ["ch_1", "ch_3"]);
        assert!(ghostcard_store::authorizations::find_by_network_keys_in(&found, &none).expect("decodes").is_empty());
        let second = cardholders::statuses_in(&found, &second).expect("decodes");
        assert_eq!(second.keys().collect::<Vec<_>>(), ["ch_2"]);
    }
}

#[tokio::test]
async fn a_cardholder_s_recent_history_is_read_for_the_velocity_rules() {
    // The batch reads, for its cardholders at once, their authorizations since the longest window began.
    for store in stores("approval_times").await {
        let authorization = |id: &str, holder: &str, kind: &str, code: &str, minutes_ago: i64| AuthorizationRecord {
            id: id.to_owned(),
            card_id: Some(format!("card_{holder}")),
            cardholder_id: Some(holder.to_owned()),
            kind: AuthorizationKind::parse(kind).expect("kind"),
            amount: 1_000,
            currency: "USD".to_owned(),
            status: if code == "00" { AuthorizationStatus::Approved } else { AuthorizationStatus::Declined },
            response_code: code.to_owned(),
            decline_reason: None,
            rule: "test".to_owned(),
            cvv_result: None,
            flag: None,
            acquirer_id: "123456".to_owned(),
            merchant_id: "M1".to_owned(),
            merchant_name: None,
            merchant_city: None,
            merchant_country: None,
            mcc: "5732".to_owned(),
            stan: None,
            rrn: None,
            auth_code: None,
            transmission_time: None,
            hold_transfer_id: None,
            held: 0,
            captured: 0,
            number_hash: None,
            stand_in: false,
            created_at: now() - Duration::minutes(minutes_ago),
            decision: None,
        };
        let mut tx = store.begin().await.expect("begins");
        insert_cardholder_with_cards(&mut tx, "ch_1", &[card("card_ch_1", "ch_1", 1)]).await;
        insert_cardholder_with_cards(&mut tx, "ch_2", &[card("card_ch_2", "ch_2", 2)]).await;
        insert_cardholder_with_cards(&mut tx, "ch_3", &[card("card_ch_3", "ch_3", 3)]).await;
        let records = [
            authorization("auth_1", "ch_1", "purchase", "00", 10),
            authorization("auth_2", "ch_1", "purchase", "51", 5),
            authorization("auth_3", "ch_1", "verification", "00", 5),
            authorization("auth_4", "ch_1", "purchase", "00", 90),
            authorization("auth_5", "ch_2", "advice", "00", 1),
            authorization("auth_6", "ch_3", "purchase", "00", 1),
        ];
        ghostcard_store::authorizations::insert_many(&mut tx, &records).await.expect("inserts");
        ghostcard_store::commit(tx).await.expect("commits");
        let mut tx = store.read().await.expect("begins");
        let holders = ["ch_1", "ch_2", "ch_9"].map(str::to_owned);
        let mut reads = ghostcard_store::Reads::new(&tx);
        let history = ghostcard_store::authorizations::add_history(&mut reads, &holders, now() - Duration::hours(1));
        let found = reads.run(&mut tx).await.expect("reads");
        let history = ghostcard_store::authorizations::history_in(&found, &history).expect("decodes");
        let mut ids: Vec<(String, i64)> =
            history.iter().map(|(holder, past)| (holder.clone(), (now() - past.at).num_minutes())).collect();
        ids.sort();
        assert_eq!(
            ids,
            [("ch_1".to_owned(), 5), ("ch_1".to_owned(), 5), ("ch_1".to_owned(), 10), ("ch_2".to_owned(), 1)],
            "everything within the hour, of these cardholders only"
        );
        // The domain decides what counts as spending.
        let mut spending: Vec<(String, DateTime<Utc>)> =
            history.into_iter().filter(|(_, past)| past.spends()).map(|(holder, past)| (holder, past.at)).collect();
        spending.sort();
        assert_eq!(
            spending,
            [("ch_1".to_owned(), now() - Duration::minutes(10)), ("ch_2".to_owned(), now() - Duration::minutes(1))],
        );
    }
}

#[tokio::test]
async fn every_value_of_a_multi_row_statement_is_stored_as_written() {
    // PostgreSQL takes a batch's rows as one array a column, in the arrays' text form: quotes, backslashes, commas,
    // braces, the word NULL, empty and non-ASCII text, NULLs and any bytes must all arrive as they were.
    let awkward = ["say \"hi\", {all}", "C:\\dir\\", "NULL", "", "Zoë's café, 東京", " padded ", "\\\""];
    for store in stores("awkward_values").await {
        let mut tx = store.begin().await.expect("begins");
        insert_cardholder_with_cards(&mut tx, "ch_1", &[card("card_1", "ch_1", 1)]).await;
        let records: Vec<AuthorizationRecord> = awkward
            .iter()
            .enumerate()
            .map(|(n, text)| AuthorizationRecord {
                id: format!("auth_{n}"),
                card_id: Some("card_1".to_owned()),
                cardholder_id: Some("ch_1".to_owned()),
                kind: AuthorizationKind::Purchase,
                amount: -(n as i64) * 1_000_000_007,
                currency: "USD".to_owned(),
                status: AuthorizationStatus::Approved,
                response_code: "00".to_owned(),
                decline_reason: (n % 2 == 0).then(|| text.to_string()),
                rule: text.to_string(),
                cvv_result: None,
                flag: (n % 2 == 1).then(|| "NULL".to_owned()),
                acquirer_id: "123456".to_owned(),
                merchant_id: text.to_string(),
                merchant_name: Some(text.to_string()),
                merchant_city: None,
                merchant_country: Some("US".to_owned()),
                mcc: "5732".to_owned(),
                stan: Some(format!("{n:06}")),
                rrn: None,
                auth_code: None,
                transmission_time: Some("1126120000".to_owned()),
                hold_transfer_id: (n % 3 == 0).then_some(i64::MAX - n as i64),
                held: 0,
                captured: 0,
                number_hash: (n % 3 != 1).then(|| vec![0x00, 0xff, b'"', b'\\', b',', n as u8]),
                stand_in: n % 2 == 0,
                created_at: now(),
                decision: (n % 2 == 0).then(|| text.to_string()),
            })
            .collect();
        ghostcard_store::authorizations::insert_many(&mut tx, &records).await.expect("inserts");
        ghostcard_store::commit(tx).await.expect("commits");

        let mut tx = store.read().await.expect("begins");
        let keys: Vec<_> = records
            .iter()
            .map(|record| {
                let stan = record.stan.clone().expect("a STAN");
                NetworkKey { acquirer_id: "123456".to_owned(), stan, transmission_time: "1126120000".to_owned() }
            })
            .collect();
        let mut found = ghostcard_store::authorizations::find_by_network_keys(&mut tx, &keys).await.expect("finds");
        found.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(found, records);
    }
}

/// SQLite's `synchronous` in this transaction: 1 NORMAL, 2 FULL.
async fn level(tx: &mut ghostcard_store::Tx) -> i64 {
    sqlx::query_scalar::<_, i64>("PRAGMA synchronous").fetch_one(&mut **tx).await.expect("reads the level")
}

#[tokio::test]
async fn a_group_commit_answers_after_the_flush_and_leaves_other_transactions_durable() {
    // SQLite: a group commit's batch commits without waiting for the disk (`synchronous` NORMAL = 1) and is answered
    // after its flusher thread flushed the log; the next ordinary write transaction is FULL (2) again. PostgreSQL
    // commits durably either way and answers at once.
    for store in stores("deferred").await {
        let sqlite = store.dialect() == Dialect::Sqlite;
        assert_eq!(store.defers_sync(), sqlite);
        let flushes = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = flushes.clone();
        let mut group = GroupCommit::new(store.clone(), move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .expect("starts");
        let before = store.log_syncs();
        let mut batch = group.begin().await.expect("begins");
        let (connection, begin) = batch.connection();
        assert!(
            cards::find_by_number_hashes(connection, &[vec![1; 32]], begin.as_deref()).await.expect("reads").is_empty()
        );
        if sqlite {
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *connection).await.expect("reads");
            assert_eq!(level, 1);
        }
        let mut writes = ghostcard_store::Writes::new(connection);
        ghostcard_store::events::add_many(&mut writes, &[test_event("evt_1")]);
        writes.run(connection).await.expect("writes");
        batch.commit().await.expect("commits");
        let (answered, durable) = tokio::sync::oneshot::channel();
        group.when_durable(move |result| {
            let _ = answered.send(result);
        });
        assert_eq!(durable.await.expect("answered"), Ok(()));
        assert_eq!(store.log_syncs(), before + u64::from(sqlite), "one flush on SQLite");
        assert_eq!(flushes.load(std::sync::atomic::Ordering::SeqCst), u32::from(sqlite));
        group.hand_back();

        let mut tx = store.begin().await.expect("begins");
        if sqlite {
            assert_eq!(level(&mut tx).await, 2);
        }
        cardholders::insert(&mut tx, &cardholder("ch_2")).await.expect("inserts");
        ghostcard_store::commit(tx).await.expect("commits");
    }
}

fn test_event(id: &str) -> ghostcard_store::events::Event {
    ghostcard_store::events::Event {
        id: id.to_owned(),
        kind: "test.event".to_owned(),
        subject: None,
        data: None,
        created_at: now(),
    }
}

#[tokio::test]
async fn sqlite_keeps_temporary_data_in_memory() {
    // A multi-row insert's statement journal spilled to a temporary file at every batch (docs/performance-log, session 5).
    let mut stores = stores("temp_store").await;
    let store = stores.next().expect("SQLite");
    assert_eq!(store.dialect(), Dialect::Sqlite);
    let mut tx = store.begin().await.expect("begins");
    let writer: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *tx).await.expect("reads");
    drop(tx);
    let mut tx = store.read().await.expect("begins");
    let reader: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *tx).await.expect("reads");
    assert_eq!((writer, reader), (2, 2), "2 is MEMORY");
}

#[tokio::test]
async fn a_background_checkpointer_copies_the_log_into_the_database() {
    // The writer leaves the write-ahead log to the background checkpointer (up to 40 MiB): what commits reaches the
    // database file only when the checkpointer runs, told by `wrote_much` (or its 100 ms timer).
    let directory = scratch::Directory::new("store-checkpoint").expect("temp dir");
    let path = directory.path().join("test.db");
    let store =
        Store::connect(&format!("sqlite://{}", path.display()), &StoreOptions::default()).await.expect("connects");
    store.migrate(now()).await.expect("migrates");
    let size = || std::fs::metadata(&path).expect("the database file").len();
    let written = |from: usize| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.expect("begins");
            let many: Vec<_> = (from..from + 2_000).map(|n| cardholder(&format!("ch_{n}"))).collect();
            cardholders::insert_many(&mut tx, &many).await.expect("inserts");
            ghostcard_store::commit(tx).await.expect("commits");
        }
    };
    // Without the checkpointer, the rows stay in the log.
    let before = size();
    written(0).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(size(), before, "nothing copied the log into the database");
    // With it, they reach the database file.
    store.checkpoint_in_background();
    written(2_000).await;
    store.wrote_much();
    let grown = async {
        while size() == before {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), grown).await.expect("the checkpointer copied the log");
    store.close().await;
}

/// A batch of the group commit that wrote the event `id`, not yet ended.
async fn batch_writing<'a>(group: &'a mut GroupCommit, id: &str) -> ghostcard_store::group_commit::Batch<'a> {
    let mut batch = group.begin().await.expect("begins");
    let (connection, begin) = batch.connection();
    cards::find_by_number_hashes(connection, &[], begin.as_deref()).await.expect("begins with its read");
    let mut writes = ghostcard_store::Writes::new(connection);
    ghostcard_store::events::add_many(&mut writes, &[test_event(id)]);
    writes.run(connection).await.expect("writes");
    batch
}

#[tokio::test]
async fn a_group_commit_holds_the_write_connection_across_batches_and_hands_it_back() {
    // SQLite: the group commit holds the write connection across batches and begins each batch's transaction with
    // its first read, then commits or rolls back by hand.
    let directory = scratch::Directory::new("store-held").expect("temp dir");
    let options =
        StoreOptions { sqlite_busy_timeout: std::time::Duration::from_millis(300), ..StoreOptions::default() };
    let store = Store::connect(&directory.sqlite_url("test.db"), &options).await.expect("connects");
    store.migrate(now()).await.expect("migrates");
    let stored = |id: &'static str| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("reads");
            ghostcard_store::events::get(&mut tx, id).await.expect("reads").is_some()
        }
    };
    let mut group = GroupCommit::new(store.clone(), |_| {}).expect("starts");
    // Committed: the write stays, and the connection stays held.
    batch_writing(&mut group, "evt_1").await.commit().await.expect("commits");
    assert!(stored("evt_1").await);
    assert!(store.begin().await.is_err(), "no other writer begins while it is held");
    // Rolled back: it is gone.
    batch_writing(&mut group, "evt_2").await.rollback().await;
    assert!(!stored("evt_2").await);
    // Not held when no batch waits: it serves the other writers.
    group.between_batches(true);
    let tx = store.begin().await.expect("begins once it is handed back");
    ghostcard_store::commit(tx).await.expect("commits");
    // Handed back with a transaction open, it is closed instead, and the transaction with it.
    let open = batch_writing(&mut group, "evt_3").await;
    drop(open);
    group.hand_back();
    let tx = store.begin().await.expect("a new write connection begins");
    ghostcard_store::commit(tx).await.expect("commits");
    assert!(!stored("evt_3").await);
    drop(group);
    store.close().await;
}
