//! `ghostcard bench`: provision cards in a fresh database, start `ghostcard serve` on it as its own process,
//! drive its ISO 8583 listener, verify the ledger, and print throughput, latency, the server's batch stages and
//! batches over 10 ms, its flushes of SQLite's write-ahead log (how long answers waited for the disk) and its peak
//! memory (the last line is one JSON object for scripts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ghostcard_harness::bench::{BenchOptions, LoadReport, ProvisionedCard, drive, now_text, provision};
use ghostcard_server::App;
use ghostcard_server::config::Config;
use ghostcard_store::{Store, StoreOptions};
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
    /// How long to send and measure, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before the measurement, not counted in the figures: the server's caches and compiled
    /// statements warm up in them (errors in them still count; the ledger check covers them).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Open loop: offer this many requests per second in total, evenly spaced, whatever the answers (latency at a
    /// given load). Each latency counts from when its request was due, so a late send counts against it.
    #[arg(long)]
    rate: Option<u64>,
    /// An empty database to use (default: a new SQLite file in a temporary directory, deleted afterwards).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// PostgreSQL only: first measure the server with `pgbench -c 8 -j 2 -T 30` (TPC-B, scale 10, its tables
    /// dropped afterwards) over the same kind of connection, and report ghostcard's throughput as a multiple of it.
    #[arg(long, requires = "database_url")]
    pgbench: bool,
    /// Run with this many active and as many shadow authorization rules, none of which matches the benchmark's
    /// purchases (a quarter each: merchant categories, amount and country, approvals per card, amount per
    /// cardholder): what evaluating them costs.
    #[arg(long, default_value_t = 0, value_name = "N")]
    rules: usize,
    /// Register a decision endpoint that answers "approve" after this many milliseconds (the example decider, in
    /// this process): every approval waits for it.
    #[arg(long, value_name = "MS")]
    decision_endpoint_ms: Option<u64>,
    /// Store this many past decisions (on the provisioned cards, over the day that ended two days ago) before the
    /// run: what a backtest reads.
    #[arg(long, default_value_t = 0, value_name = "N")]
    stored_authorizations: usize,
    /// As the measured run begins, start a backtest of a rule over the last four days through the HTTP API, and
    /// report how long it took (with --stored-authorizations, and --rate to see what it costs live latency).
    #[arg(long)]
    backtest: bool,
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
    let keys = Keys { kek: random(32), cvk: random(16) };
    let database = if database_url.starts_with("postgres") { "postgres" } else { "sqlite" };
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    eprintln!(
        "ghostcard bench: {database}, {cores} cores, {} cards, {} connections × {} in flight, {} s after {} s of warm-up{}",
        arguments.cards,
        arguments.connections,
        arguments.pipeline,
        arguments.duration,
        arguments.warmup,
        arguments.rate.map(|rate| format!(", open loop at {rate}/s")).unwrap_or_default()
    );
    let pgbench = if arguments.pgbench {
        if database == "sqlite" {
            bail!("--pgbench compares with PostgreSQL's own benchmark: give a postgres:// --database-url");
        }
        eprintln!("measuring the server with pgbench -c 8 -j 2 -T 30 (TPC-B, scale 10)…");
        Some(run_pgbench(database_url)?)
    } else {
        None
    };
    let decider = match arguments.decision_endpoint_ms {
        Some(delay) => Some(start_decider(delay).await?),
        None => None,
    };
    let (cards, backtest) = provision_cards(database_url, &keys, arguments, decider.as_ref()).await?;
    let (report, batches, server_rss, backtest) =
        serve_and_drive(arguments, database_url, &keys, cards, backtest).await?;
    eprintln!("verifying the ledger…");
    let store = Store::connect(database_url, &StoreOptions::default()).await?;
    let mut tx = store.read().await?;
    let ledger = ghostcard_store::ledger::verify(&mut tx).await?;
    drop(tx);
    store.close().await;
    let results = Results { database, cores, report, batches, pgbench, server_rss, backtest, ledger_ok: ledger.ok };
    results.print();
    println!("{}", results.json(arguments));
    if !ledger.ok {
        bail!("the ledger does not verify after the benchmark: {:?}", ledger.problems);
    }
    Ok(())
}

/// The keys the benchmark's server runs with (random, for this run only).
struct Keys {
    kek: String,
    cvk: String,
}

/// Provisions `total` cards in this process, then lets it go: the server runs as its own process, so its memory is
/// its own.
async fn provision_cards(
    database_url: &str,
    keys: &Keys,
    arguments: &Arguments,
    decider: Option<&Decider>,
) -> Result<(Vec<ProvisionedCard>, Option<Backtest>)> {
    let total = arguments.cards;
    let config = Config {
        database_url: database_url.to_owned(),
        kek: Some(keys.kek.clone()),
        cvk: Some(keys.cvk.clone()),
        log: "warn".to_owned(),
        ..Config::default()
    };
    let app = App::start(config).await.context("cannot open the database for the benchmark")?;
    let started = Instant::now();
    let cards = provision(&app, total, |done| {
        eprint!("\rprovisioning cards: {done}/{total} ({:.0}%)", done as f64 * 100.0 / total as f64);
    })
    .await?;
    eprintln!("\rprovisioned {total} cards in {:.1} s{}", started.elapsed().as_secs_f64(), " ".repeat(20));
    add_rules(&app, arguments.rules).await?;
    if let Some(decider) = decider {
        register_decider(&app, decider).await?;
    }
    let stored = arguments.stored_authorizations;
    if stored > 0 {
        let started = Instant::now();
        ghostcard_harness::bench::store_history(&app, stored, total, |done| {
            eprint!("\rstoring past decisions: {done}/{stored} ({:.0}%)", done as f64 * 100.0 / stored as f64);
        })
        .await?;
        eprintln!("\rstored {stored} past decisions in {:.1} s{}", started.elapsed().as_secs_f64(), " ".repeat(20));
    }
    let backtest = if arguments.backtest { Some(prepare_backtest(&app).await?) } else { None };
    app.store.close().await;
    Ok((cards, backtest))
}

/// A backtest to start during the run: the API key to start it with and the rule.
struct Backtest {
    key: String,
    rule_id: String,
    /// Once run: seconds it took, and how many decisions it evaluated.
    ran: Option<(f64, u64)>,
}

async fn prepare_backtest(app: &App) -> Result<Backtest> {
    use ghostcard_server::service::auth_rules::{self, NewRule};
    let now = app.clock.now();
    let (_, key) = ghostcard_server::credentials::create_api_key(&app.store, "bench", "bench", now).await?;
    let rule: NewRule = serde_json::from_value(json!({"name": "bench backtest", "mode": "shadow",
        "scope": {"program": true}, "conditions": [{"attribute": "mcc", "operation": "is_one_of", "value": ["7995"]}]}))?;
    let actor = ghostcard_server::service::Actor { name: "bench".to_owned(), origin: None };
    let mut tx = app.store.begin().await?;
    let rule = auth_rules::create(&mut tx, rule, &actor, now).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    ghostcard_store::commit(tx).await?;
    Ok(Backtest { key, rule_id: rule.id, ran: None })
}

/// Starts the backtest through the API after `after`, and waits for it to complete: (seconds, evaluated).
async fn run_backtest(http: SocketAddr, backtest: &Backtest, after: Duration) -> Result<(f64, u64)> {
    tokio::time::sleep(after).await;
    let client = reqwest::Client::new();
    let base = format!("http://{http}/v1/auth-rules/{}/backtests", backtest.rule_id);
    let end = chrono::Utc::now() + chrono::Duration::hours(1);
    let start = end - chrono::Duration::days(4);
    let started = Instant::now();
    let created: serde_json::Value = client
        .post(&base)
        .bearer_auth(&backtest.key)
        .json(&json!({"start": start.to_rfc3339(), "end": end.to_rfc3339()}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().context("the backtest was not created")?.to_owned();
    loop {
        let found: serde_json::Value =
            client.get(format!("{base}/{id}")).bearer_auth(&backtest.key).send().await?.json().await?;
        if found["status"] == "complete" {
            return Ok((started.elapsed().as_secs_f64(), found["results"]["evaluated"].as_u64().unwrap_or(0)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `count` active and `count` shadow rules that match none of the benchmark's purchases.
async fn add_rules(app: &App, count: usize) -> Result<()> {
    use ghostcard_server::service::auth_rules::{self, NewRule};
    if count == 0 {
        return Ok(());
    }
    let actor = ghostcard_server::service::Actor { name: "bench".to_owned(), origin: None };
    let mut tx = app.store.begin().await?;
    for index in 0..count {
        for mode in ["active", "shadow"] {
            let body = match index % 4 {
                0 => json!({"conditions": [{"attribute": "mcc", "operation": "is_one_of",
                            "value": ["7995", "5993", "5921", format!("{:04}", 1000 + index)]}]}),
                1 => {
                    json!({"conditions": [{"attribute": "amount", "operation": "is_greater_than", "value": 1_000_000_000},
                            {"attribute": "country", "operation": "is_not_one_of", "value": ["US", "CA"]}]})
                }
                2 => json!({"velocity": {"window_seconds": 3_600, "max_count": 1_000, "per": "card"}}),
                _ => {
                    json!({"velocity": {"window_seconds": 86_400, "max_amount": 1_000_000_000_000_i64, "per": "cardholder"}})
                }
            };
            let mut rule = json!({"name": format!("bench {mode} {index}"), "mode": mode, "scope": {"program": true}});
            if let (Some(rule), Some(body)) = (rule.as_object_mut(), body.as_object()) {
                rule.extend(body.clone());
            }
            let rule: NewRule = serde_json::from_value(rule)?;
            auth_rules::create(&mut tx, rule, &actor, app.clock.now())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
    }
    ghostcard_store::commit(tx).await?;
    eprintln!("added {count} active and {count} shadow authorization rules");
    Ok(())
}

/// The example decision endpoint, answering in this process once it is registered (and knows its secret).
struct Decider {
    url: String,
    listener: std::sync::Mutex<Option<tokio::net::TcpListener>>,
    delay: Duration,
}

async fn start_decider(delay_ms: u64) -> Result<Decider> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/decide", listener.local_addr()?);
    Ok(Decider { url, listener: std::sync::Mutex::new(Some(listener)), delay: Duration::from_millis(delay_ms) })
}

/// Registers the decider as the decision endpoint (as `POST /v1/decision-endpoints` does), with its secret.
async fn register_decider(app: &App, decider: &Decider) -> Result<()> {
    let actor = ghostcard_server::service::Actor { name: "bench".to_owned(), origin: None };
    let mut tx = app.store.begin().await?;
    let (_, secret) = ghostcard_server::service::decision_endpoints::create(
        app,
        &mut tx,
        &decider.url,
        1_000,
        &actor,
        app.clock.now(),
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    ghostcard_store::commit(tx).await?;
    use ghostcard_harness::example_decider::{self, Policy};
    let key = example_decider::key_of(secret.expose()).context("the endpoint's secret")?;
    let listener =
        decider.listener.lock().ok().and_then(|mut listener| listener.take()).context("the decider runs once")?;
    let policy = Policy { delay: decider.delay, quiet: true, ..Policy::default() };
    tokio::spawn(example_decider::serve(listener, key, policy));
    eprintln!("decision endpoint at {} (answers after {:?})", decider.url, decider.delay);
    Ok(())
}

/// Starts `ghostcard serve` on the database, drives it, and stops it (SIGTERM: requests in flight finish; then the
/// process's peak memory is what it reached under load).
async fn serve_and_drive(
    arguments: &Arguments,
    database_url: &str,
    keys: &Keys,
    cards: Vec<ProvisionedCard>,
    backtest: Option<Backtest>,
) -> Result<Driven> {
    let (http, network) = (free_address()?, free_address()?);
    let mut server = Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("GHOSTCARD_DATABASE_URL", database_url)
        .env("GHOSTCARD_HTTP_ADDR", http.to_string())
        .env("GHOSTCARD_ISO8583_ADDR", network.to_string())
        .env("GHOSTCARD_KEK", &keys.kek)
        .env("GHOSTCARD_CVK", &keys.cvk)
        .env("GHOSTCARD_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the server process")?;
    let outcome = drive_server(arguments, server.id(), http, network, cards, backtest).await;
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
    outcome
}

/// What one run measured.
struct Results {
    database: &'static str,
    cores: usize,
    report: LoadReport,
    /// The server's batch counters over the measured run.
    batches: HashMap<String, f64>,
    pgbench: Option<f64>,
    server_rss: Option<u64>,
    backtest: Option<Backtest>,
    ledger_ok: bool,
}

/// What driving the server gave: the load's report, the server's batch counters, its peak memory, the backtest.
type Driven = (LoadReport, HashMap<String, f64>, Option<u64>, Option<Backtest>);

impl Results {
    fn batch(&self, name: &str) -> Option<f64> {
        self.batches.get(name).copied()
    }

    /// Milliseconds a batch spent in `stage`, on average.
    fn per_batch(&self, stage: &str) -> f64 {
        self.batch(stage).unwrap_or(0.0) * 1e3 / self.batch("batches").unwrap_or(1.0).max(1.0)
    }

    /// Batches over 10 ms (the next batch waited for each).
    fn batches_over_10ms(&self) -> f64 {
        let timed = self.batch("timed_batches").unwrap_or(0.0);
        timed - self.batch("batches_within_10ms").unwrap_or(timed)
    }

    /// SQLite's flushes of its write-ahead log (the answers of their batches waited for them): count, mean ms,
    /// count over 10 ms, longest ms. Warm-up included.
    fn log_flush(&self) -> Option<(f64, f64, f64, f64)> {
        let count = self.batch("log_flushes")?;
        let seconds = self.batch("log_flush_seconds").unwrap_or(0.0);
        let within_10ms = self.batch("log_flushes_within_10ms").unwrap_or(count);
        let max_seconds = self.batch("log_flush_max_seconds").unwrap_or(0.0);
        Some((count, seconds * 1e3 / count.max(1.0), count - within_10ms, max_seconds * 1e3))
    }

    fn pgbench_ratio(&self) -> Option<f64> {
        self.pgbench.map(|tps| self.report.approved_per_s / tps)
    }

    /// For people.
    fn print(&self) {
        let (report, database, cores) = (&self.report, self.database, self.cores);
        println!("ghostcard bench — {} ({database}, {cores} cores)", now_text());
        println!(
            "  sent {} authorizations in {:.1} s; approved {}; declined {:?}; errors {}",
            report.sent, report.seconds, report.approved, report.declined, report.errors
        );
        println!("  approved per second: {:.0}", report.approved_per_s);
        if report.ran_out_of_cards {
            println!("  the cards ran out before the end: the run stopped early; give more --cards for a full run");
        }
        println!(
            "  latency µs: p50 {}  p99 {}  p99.9 {}  max {}",
            report.latency_us_p50, report.latency_us_p99, report.latency_us_p999, report.latency_us_max
        );
        println!(
            "  group commit: {} batches, {:.0} authorizations each; per batch ms: load {:.1}, decide {:.1}, write {:.1}, commit {:.1}",
            self.batch("batches").unwrap_or(0.0),
            self.batch("authorizations").unwrap_or(0.0) / self.batch("batches").unwrap_or(1.0).max(1.0),
            self.per_batch("load"),
            self.per_batch("decide"),
            self.per_batch("write"),
            self.per_batch("commit")
        );
        println!("  batches over 10 ms: {:.0}", self.batches_over_10ms());
        if let Some((count, mean_ms, over_10ms, max_ms)) = self.log_flush() {
            println!(
                "  write-ahead log flushes: {count:.0}, mean {mean_ms:.2} ms, {over_10ms:.0} over 10 ms, longest {max_ms:.1} ms (warm-up included)"
            );
        }
        if let (Some(tps), Some(ratio)) = (self.pgbench, self.pgbench_ratio()) {
            println!(
                "  pgbench -c 8 -j 2 -T 30 (TPC-B) on the same server: {tps:.0} TPS; ghostcard = {ratio:.2}× pgbench"
            );
        }
        println!(
            "  server process peak resident memory: {} MiB",
            self.server_rss.map_or_else(|| "unknown".to_owned(), |rss| rss.to_string())
        );
        if let Some((seconds, evaluated)) = self.backtest.as_ref().and_then(|backtest| backtest.ran) {
            println!("  backtest during the run: {evaluated} decisions evaluated in {seconds:.1} s");
        }
        println!("  ledger: {}", if self.ledger_ok { "verified" } else { "PROBLEMS (see below)" });
    }

    /// For scripts: one JSON object.
    fn json(&self, arguments: &Arguments) -> serde_json::Value {
        let report = &self.report;
        let round3 = |ms: f64| (ms * 1e3).round() / 1e3;
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
            "database": self.database,
            "cores": self.cores,
            "cards": arguments.cards,
            "connections": arguments.connections,
            "pipeline": arguments.pipeline,
            "rate": arguments.rate,
            "warmup_s": arguments.warmup,
            "rules": arguments.rules,
            "stored_authorizations": arguments.stored_authorizations,
            "backtest": self.backtest.as_ref().and_then(|backtest| backtest.ran).map(|(seconds, evaluated)| json!({
                "seconds": (seconds * 10.0).round() / 10.0,
                "evaluated": evaluated,
            })),
            "decision_endpoint_ms": arguments.decision_endpoint_ms,
            "ran_out_of_cards": report.ran_out_of_cards,
            "server_peak_rss_mib": self.server_rss,
            "batches": self.batch("batches"),
            "batch_ms": {
                "load": self.per_batch("load"),
                "decide": self.per_batch("decide"),
                "write": self.per_batch("write"),
                "commit": self.per_batch("commit"),
            },
            "batches_over_10ms": self.batches_over_10ms(),
            "log_flush": self.log_flush().map(|(count, mean_ms, over_10ms, max_ms)| json!({
                "count": count,
                "mean_ms": round3(mean_ms),
                "over_10ms": over_10ms,
                "max_ms": round3(max_ms),
            })),
            "ledger_ok": self.ledger_ok,
            "pgbench_tps": self.pgbench.map(f64::round),
            "pgbench_ratio": self.pgbench_ratio().map(|ratio| (ratio * 100.0).round() / 100.0),
        })
    }
}

/// Runs PostgreSQL's TPC-B benchmark on the bench database and returns its TPS: `pgbench -i -s 10`, then
/// `pgbench -c 8 -j 2 -T 30`, then drops its tables. ghostcard's PostgreSQL driver speaks without TLS, so pgbench
/// does too unless the URL names an `sslmode` (TLS costs both ends CPU on a machine the two share). A password
/// goes to pgbench in its environment, not on its command line, where other users of the machine could read it.
fn run_pgbench(database_url: &str) -> Result<f64> {
    let (database_url, password) = crate::serve::without_password(database_url);
    let url = if database_url.contains("sslmode=") {
        database_url.to_owned()
    } else {
        format!("{database_url}{}sslmode=disable", if database_url.contains('?') { '&' } else { '?' })
    };
    let pgbench = |arguments: &[&str]| -> Result<String> {
        let mut command = Command::new("pgbench");
        if let Some(password) = &password {
            command.env("PGPASSWORD", password);
        }
        let output = command.args(arguments).arg(&url).output().context(
            "cannot run pgbench: install PostgreSQL's client tools (Debian: postgresql-client) or leave out --pgbench",
        )?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("pgbench {} failed: {}", arguments.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(text)
    };
    pgbench(&["-i", "-s", "10", "-q"])?;
    let result = pgbench(&["-c", "8", "-j", "2", "-T", "30"]);
    pgbench(&["-i", "-I", "d"])?;
    let text = result?;
    text.lines()
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse::<f64>().ok())
        .context("pgbench printed no \"tps = \" line")
}

/// Drives the server process: waits for its listener, sends the load, reads its metrics and peak memory.
async fn drive_server(
    arguments: &Arguments,
    pid: u32,
    http: SocketAddr,
    network: SocketAddr,
    cards: Vec<ProvisionedCard>,
    mut backtest: Option<Backtest>,
) -> Result<Driven> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(network).await.is_err() {
        if Instant::now() > deadline {
            bail!("the server process did not start listening on {network}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = BenchOptions {
        cards: cards.len(),
        connections: arguments.connections,
        pipeline: arguments.pipeline,
        duration: Duration::from_secs(arguments.duration),
        warmup: Duration::from_secs(arguments.warmup),
        rate: arguments.rate,
    };
    eprintln!(
        "driving the server's ISO 8583 listener on {network} for {} s of warm-up and {} s measured…",
        arguments.warmup, arguments.duration
    );
    // The server's counters as the measured run begins, so that what is reported covers that run only.
    let at_start = tokio::spawn({
        let warmup = options.warmup;
        async move {
            tokio::time::sleep(warmup).await;
            server_metrics(http).await
        }
    });
    let load = drive(network, Arc::new(cards), &options);
    let report = match &backtest {
        Some(started) => {
            let (report, ran) = tokio::join!(load, run_backtest(http, started, options.warmup));
            let ran = ran.context("the backtest")?;
            backtest = backtest.map(|backtest| Backtest { ran: Some(ran), ..backtest });
            report
        }
        None => load.await,
    }
    .context("cannot run the load generator")?;
    let at_start = at_start.await.context("reading the server's metrics")??;
    let mut batches = server_metrics(http).await?;
    for (key, value) in batches.iter_mut() {
        // A longest-ever figure cannot be split; it stays the whole run's, warm-up included.
        if !key.ends_with("max_seconds") {
            *value -= at_start.get(key).copied().unwrap_or(0.0);
        }
    }
    Ok((report, batches, peak_resident_mib(pid), backtest))
}

/// The server's batch and log-flush counters from its `/metrics`, by short name.
async fn server_metrics(http: SocketAddr) -> Result<HashMap<String, f64>> {
    let metrics = reqwest::get(format!("http://{http}/metrics")).await?.text().await?;
    let mut counters = HashMap::new();
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let key = match name {
            "ghostcard_authorization_batches_total" => "batches",
            "ghostcard_authorization_batched_total" => "authorizations",
            "ghostcard_authorization_batch_duration_seconds_count" => "timed_batches",
            "ghostcard_authorization_batch_duration_seconds_bucket{le=\"0.01\"}" => "batches_within_10ms",
            "ghostcard_sqlite_log_flush_seconds_count" => "log_flushes",
            "ghostcard_sqlite_log_flush_seconds_sum" => "log_flush_seconds",
            "ghostcard_sqlite_log_flush_seconds_bucket{le=\"0.01\"}" => "log_flushes_within_10ms",
            "ghostcard_sqlite_log_flush_seconds_max" => "log_flush_max_seconds",
            _ => match name.strip_prefix("ghostcard_authorization_batch_seconds_total{stage=\"") {
                Some(stage) => stage.trim_end_matches("\"}"),
                None => continue,
            },
        };
        counters.insert(key.to_owned(), value);
    }
    Ok(counters)
}

/// The peak resident memory of process `pid`, in MiB (Linux's VmHWM).
fn peak_resident_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn free_address() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
