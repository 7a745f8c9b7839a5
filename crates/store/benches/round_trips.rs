//! `cargo bench -p ghostcard-store --bench round_trips`: what a write transaction with one small read costs on
//! SQLite, as every writer runs it (the write connection taken from the pool, `BEGIN`,
//! the read, `COMMIT`, the connection handed back, which sqlx checks with a query of its own) against how the
//! authorizer runs its batches while they come one after another (the write connection held across transactions,
//! `BEGIN` sent with the read, `COMMIT`). Each step is a round trip to sqlx's connection thread. Prints figures;
//! asserts nothing about time.

use std::time::Instant;

use ghostcard_harness::scratch;
use ghostcard_store::group_commit::GroupCommit;
use ghostcard_store::{Store, StoreOptions, cards};

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
            let mut group = GroupCommit::new(store.clone(), |_| {}).expect("starts");
            for _ in 0..TRANSACTIONS {
                let mut batch = group.begin().await.expect("begins");
                let (connection, begin) = batch.connection();
                cards::find_by_number_hashes(connection, &hashes, begin.as_deref()).await.expect("reads");
                batch.commit().await.expect("commits");
                group.hand_back();
            }
            let pooled = start.elapsed() / TRANSACTIONS;
            let start = Instant::now();
            let mut group = GroupCommit::new(store.clone(), |_| {}).expect("starts");
            for _ in 0..TRANSACTIONS {
                let mut batch = group.begin().await.expect("begins");
                let (connection, begin) = batch.connection();
                cards::find_by_number_hashes(connection, &hashes, begin.as_deref()).await.expect("begins and reads");
                batch.commit().await.expect("commits");
            }
            drop(group);
            let held = start.elapsed() / TRANSACTIONS;
            println!(
                "round_trips/sqlite round {round}: {} µs a transaction from the pool, {} µs as the authorizer runs it",
                pooled.as_micros(),
                held.as_micros()
            );
        }
    });
}
