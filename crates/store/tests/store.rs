//! The store on both databases: migrations, conditional updates, the ledger's once-only resolution, idempotency.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ghostcard_domain::ledger::{Entry, LedgerError, entries};
use ghostcard_domain::money::{Currency, Money};
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::idempotency::{self, Claim};
use ghostcard_store::ledger::{self, CommitError};
use ghostcard_store::{Store, StoreError, StoreOptions, scratch};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single().expect("valid")
}

async fn stores(test: &str) -> Vec<Store> {
    let directory = std::env::temp_dir().join(format!("ghostcard-store-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let sqlite_url = format!("sqlite://{}", directory.join("test.db").display());
    let _ = std::fs::remove_file(directory.join("test.db"));
    let postgres_url = scratch::postgres_database(&format!("ghostcard_store_{test}")).await.expect("PostgreSQL");
    let mut stores = Vec::new();
    for url in [sqlite_url, postgres_url] {
        let store = Store::connect(&url, &StoreOptions::default()).await.expect("connects");
        assert_eq!(store.migrate(now()).await.expect("migrates"), vec![1, 2, 3]);
        assert!(store.migrate(now()).await.expect("migrates again").is_empty(), "migrations apply once");
        stores.push(store);
    }
    stores
}

#[tokio::test]
async fn a_cardholder_email_is_unique() {
    for store in stores("email").await {
        let cardholder = Cardholder {
            id: "ch_1".to_owned(),
            email: "ada@example.com".to_owned(),
            name: "Ada".to_owned(),
            country: "US".to_owned(),
            password_hash: None,
            status: "active".to_owned(),
            restricted_reason: None,
            created_at: now(),
        };
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
