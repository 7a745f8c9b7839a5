//! `cargo bench -p ghostcard-server`: authorization throughput and latency through the real ISO 8583 listener on
//! a fresh SQLite database (a smaller run than `ghostcard bench`, which has every option). Prints figures; asserts
//! nothing about time.

use std::sync::Arc;
use std::time::Duration;

use ghostcard_harness::bench::{BenchOptions, drive, provision};
use ghostcard_server::App;
use ghostcard_server::config::Config;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let directory = ghostcard_harness::scratch::Directory::new("cargo-bench").expect("temp dir");
        let config = Config {
            database_url: directory.sqlite_url("bench.db"),
            kek: Some("ab".repeat(32)),
            cvk: Some("0123456789ABCDEFFEDCBA9876543210".to_owned()),
            ..Config::default()
        };
        let app = App::start(config).await.expect("starts");
        let options = BenchOptions {
            cards: 200_000,
            connections: 32,
            pipeline: 64,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            rate: None,
        };
        let cards = provision(&app, options.cards, |_| {}).await.expect("provisions");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let address = listener.local_addr().expect("address");
        tokio::spawn(ghostcard_server::network::run(app.clone(), listener, std::future::pending()));
        let report = drive(address, Arc::new(cards), &options).await.expect("the load generator runs");
        let mut tx = app.store.read().await.expect("reads");
        let ledger = ghostcard_store::ledger::verify(&mut tx).await.expect("verifies");
        println!(
            "authorization/sqlite/closed-loop: {:.0} approved/s, latency µs p50 {} p99 {} p99.9 {} max {}, errors {}, ledger {}",
            report.approved_per_s,
            report.latency_us_p50,
            report.latency_us_p99,
            report.latency_us_p999,
            report.latency_us_max,
            report.errors,
            if ledger.ok { "verified" } else { "NOT verified" }
        );
        if report.ran_out_of_cards {
            println!("  (the cards ran out before the end: the run stopped early)");
        }
    });
}
