//! `cargo bench -p ghostcard-store --bench round_trips`: what a write transaction with one small read costs on
//! SQLite, as every writer runs it (`Store::begin_deferred`: the write connection taken from the pool, `BEGIN`,
//! the read, `COMMIT`, the connection handed back, which sqlx checks with a query of its own) against how the
//! authorizer runs its batches while they come one after another (the write connection held across transactions,
//! `BEGIN` sent with the read, `COMMIT`). Each step is a round trip to sqlx's connection thread. Prints figures;
//! asserts nothing about time.

use std::time::Instant;

use ghostcard_store::{Store, StoreOptions, cards, commit, commit_on, scratch};

const TRANSACTIONS: u32 = 3_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let directory = scratch::Directory::new("round-trips").expect("temp dir");
        let store =
            Store::connect(&directory.sqlite_url("round-trips.db"), &StoreOptions::default()).await.expect("opens");
        let epoch = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("an instant");
        store.migrate(epoch).await.expect("migrates");
        let hashes = [vec![7u8; 32]];
        for round in 1..=5 {
            let start = Instant::now();
            for _ in 0..TRANSACTIONS {
                let mut tx = store.begin_deferred().await.expect("begins");
                cards::find_by_number_hashes(&mut tx, &hashes, None).await.expect("reads");
                commit(tx).await.expect("commits");
            }
            let pooled = start.elapsed() / TRANSACTIONS;
            let start = Instant::now();
            let mut writer = store.hold_writer().await.expect("takes the writer").expect("SQLite has one");
            let begin = store.deferred_begin();
            for _ in 0..TRANSACTIONS {
                cards::find_by_number_hashes(&mut writer, &hashes, Some(&begin)).await.expect("begins and reads");
                commit_on(&mut writer).await.expect("commits");
            }
            drop(writer);
            let held = start.elapsed() / TRANSACTIONS;
            println!(
                "round_trips/sqlite round {round}: {} µs a transaction from the pool, {} µs as the authorizer runs it",
                pooled.as_micros(),
                held.as_micros()
            );
        }
    });
}
