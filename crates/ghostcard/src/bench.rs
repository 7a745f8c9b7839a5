//! `ghostcard bench`: provision cards in a fresh database, drive the real ISO 8583 listener, verify the ledger,
//! and print throughput and latency (the last line is one JSON object for scripts).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ghostcard_server::App;
use ghostcard_server::bench::{BenchOptions, drive, now_text, provision, resident_mib};
use ghostcard_server::config::Config;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Arguments {
    /// Cards to provision; a single-use card is approved once, so the run needs one per approval.
    #[arg(long, default_value_t = 1_000_000)]
    cards: usize,
    /// Network connections driving the listener.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 64)]
    pipeline: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Open loop: offer this many requests per second in total, whatever the answers (latency at a given load).
    #[arg(long)]
    rate: Option<u64>,
    /// An empty database to use (default: a new SQLite file in a temporary directory, deleted afterwards).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

pub fn run(arguments: &Arguments) -> Result<()> {
    if arguments.cards == 0 || arguments.connections == 0 || arguments.pipeline == 0 || arguments.duration == 0 {
        bail!("--cards, --connections, --pipeline and --duration must be at least 1");
    }
    let directory = std::env::temp_dir().join(format!("ghostcard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let database_url =
        arguments.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", directory.join("bench.db").display()));
    let result = tokio::runtime::Runtime::new()?.block_on(bench(arguments, &database_url));
    let _ = std::fs::remove_dir_all(&directory);
    result
}

async fn bench(arguments: &Arguments, database_url: &str) -> Result<()> {
    let random = |bytes: usize| -> String { (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect() };
    let config = Config {
        database_url: database_url.to_owned(),
        kek: Some(random(32)),
        cvk: Some(random(16)),
        log: "warn".to_owned(),
        ..Config::default()
    };
    let database = if database_url.starts_with("postgres") { "postgres" } else { "sqlite" };
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    eprintln!(
        "ghostcard bench: {database}, {cores} cores, {} cards, {} connections × {} in flight, {} s{}",
        arguments.cards,
        arguments.connections,
        arguments.pipeline,
        arguments.duration,
        arguments.rate.map(|rate| format!(", open loop at {rate}/s")).unwrap_or_default()
    );
    let app = App::start(config).await.context("cannot start the server for the benchmark")?;

    let started = Instant::now();
    let total = arguments.cards;
    let cards = provision(&app, total, |done| {
        eprint!("\rprovisioning cards: {done}/{total} ({:.0}%)", done as f64 * 100.0 / total as f64);
    })
    .await?;
    eprintln!("\rprovisioned {total} cards in {:.1} s{}", started.elapsed().as_secs_f64(), " ".repeat(20));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(ghostcard_server::network::run(app.clone(), listener, async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }));
    let peak_rss = Arc::new(AtomicU64::new(resident_mib().unwrap_or(0)));
    let sampler = {
        let peak_rss = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                peak_rss.fetch_max(resident_mib().unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let options = BenchOptions {
        cards: total,
        connections: arguments.connections,
        pipeline: arguments.pipeline,
        duration: Duration::from_secs(arguments.duration),
        rate: arguments.rate,
    };
    eprintln!("driving the ISO 8583 listener on {address} for {} s…", arguments.duration);
    let report = drive(address, Arc::new(cards), &options).await;
    sampler.abort();
    let _ = stop.send(true);
    let _ = server.await;

    eprintln!("verifying the ledger…");
    let mut tx = app.store.read().await?;
    let ledger = ghostcard_store::ledger::verify(&mut tx).await?;
    drop(tx);
    app.store.close().await;

    let rss = peak_rss.load(Ordering::Relaxed);
    let batches = app.metrics.batch_totals();
    let per_batch = |time: Duration| time.as_secs_f64() * 1e3 / batches.batches.max(1) as f64;
    println!("ghostcard bench — {} ({database}, {cores} cores)", now_text());
    println!(
        "  sent {} authorizations in {:.1} s; approved {}; declined {:?}; errors {}",
        report.sent, report.seconds, report.approved, report.declined, report.errors
    );
    println!("  approved per second: {:.0}", report.approved_per_s);
    println!(
        "  latency µs: p50 {}  p99 {}  p99.9 {}  max {}",
        report.latency_us_p50, report.latency_us_p99, report.latency_us_p999, report.latency_us_max
    );
    println!(
        "  group commit: {} batches, {:.0} authorizations each; per batch ms: load {:.1}, decide {:.1}, write {:.1}, commit {:.1}",
        batches.batches,
        batches.authorizations as f64 / batches.batches.max(1) as f64,
        per_batch(batches.load),
        per_batch(batches.decide),
        per_batch(batches.write),
        per_batch(batches.commit)
    );
    println!("  peak resident memory (server and load generator in one process): {rss} MiB");
    println!("  ledger: {}", if ledger.ok { "verified".to_owned() } else { format!("PROBLEMS {:?}", ledger.problems) });
    println!(
        "{}",
        json!({
            "approved_per_s": report.approved_per_s.round(),
            "latency_us_p50": report.latency_us_p50,
            "latency_us_p99": report.latency_us_p99,
            "latency_us_p999": report.latency_us_p999,
            "latency_us_max": report.latency_us_max,
            "errors": report.errors,
            "sent": report.sent,
            "approved": report.approved,
            "declined": report.declined,
            "seconds": report.seconds,
            "database": database,
            "cores": cores,
            "cards": total,
            "connections": arguments.connections,
            "pipeline": arguments.pipeline,
            "rate": arguments.rate,
            "peak_rss_mib": rss,
            "batches": batches.batches,
            "batch_ms": {
                "load": per_batch(batches.load),
                "decide": per_batch(batches.decide),
                "write": per_batch(batches.write),
                "commit": per_batch(batches.commit),
            },
            "ledger_ok": ledger.ok,
        })
    );
    if !ledger.ok {
        bail!("the ledger does not verify after the benchmark");
    }
    Ok(())
}
