//! `cargo bench -p ghostcard-store --bench round_trips`: what a write transaction costs on SQLite when nothing is
//! in it but one small query, taken from the pool as every writer does (`Store::begin_deferred`) against begun on
//! a write connection held across transactions (`Store::hold_writer`, as the authorizer does while batches come
//! one after another). Each step is a round trip to sqlx's connection thread; a connection handed back to the pool
//! costs one more (sqlx checks it), and the next transaction waits for it. Prints figures; asserts nothing about
//! time.

use std::time::Instant;

use ghostcard_store::{Store, StoreOptions, cards, commit, scratch};

const TRANSACTIONS: u32 = 3_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let directory = scratch::Directory::new("round-trips").expect("temp dir");
        let store = Store::connect(&directory.sqlite_url("round-trips.db"), &StoreOptions::default()).await.expect("opens");
        let epoch = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("an instant");
        store.migrate(epoch).await.expect("migrates");
        for round in 1..=5 {
            let start = Instant::now();
            for _ in 0..TRANSACTIONS {
                let mut tx = store.begin_deferred().await.expect("begins");
                cards::ids_in_states(&mut tx, "ch_none", &["active"]).await.expect("reads");
                commit(tx).await.expect("commits");
            }
            let pooled = start.elapsed() / TRANSACTIONS;
            let start = Instant::now();
            let mut writer = store.hold_writer().await.expect("takes the writer").expect("SQLite has one");
            for _ in 0..TRANSACTIONS {
                let mut tx = store.begin_deferred_on(&mut writer).await.expect("begins");
                cards::ids_in_states(&mut tx, "ch_none", &["active"]).await.expect("reads");
                commit(tx).await.expect("commits");
            }
            drop(writer);
            let held = start.elapsed() / TRANSACTIONS;
            println!(
                "round_trips/sqlite round {round}: {} µs a transaction from the pool, {} µs on the held write connection",
                pooled.as_micros(),
                held.as_micros()
            );
        }
    });
}
