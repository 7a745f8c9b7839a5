//! The `ghostcard` command: the one binary that runs the issuer processor and its tools.
//!
//! This module only parses the command line and reports errors; each command lives in its own module.

mod admin;
mod bench;
mod clearing;
mod decider;
mod demo;
mod serve;
mod simulate;

/// mimalloc instead of the C library's allocator: the authorization path allocates and frees from several threads
/// at once, and glibc's malloc took a large share of the server's CPU under load (docs/performance-log, session 4).
///
/// Built without its request for transparent huge pages (`no_thp`, Cargo.toml): where the kernel gives huge pages
/// to memory that asks (`madvise`, a common default), the authorizer's first touch of fresh memory had the kernel
/// zero a whole 2 MiB page inside the slowest batches' write stages, and the answers behind them waited
/// (docs/performance-log, session 11).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ghostcard_server::config::Config;

/// ghostcard — an open-source issuer processor for single-use virtual cards with pay-later plans.
///
/// A cardholder asks for a card for an exact amount, gets a number, expiry and CVV at once, uses it for one
/// purchase within 24 hours, and pays now from a linked card or in installments.
#[derive(Debug, Parser)]
#[command(name = "ghostcard", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the REST API on the embedded SQLite database by default
    ///
    /// Starts with zero setup: the database file is created, migrations are applied, and in sandbox mode card
    /// keys are generated into a key file beside the database. On the first start in sandbox mode an API key is
    /// created and printed with a curl example. Stop with Ctrl-C or SIGTERM: requests in flight finish first.
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(serve::Arguments),
    /// Apply the database migrations and exit (serve also does this at start)
    Migrate(ConfigArguments),
    /// Create, list and revoke API keys
    #[command(subcommand)]
    ApiKey(admin::ApiKeyCommand),
    /// Rotate card-data keys
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// See the job queue (gateway calls, webhook deliveries) and retry dead jobs
    #[command(subcommand)]
    Jobs(admin::JobsCommand),
    /// Create operator accounts for the console (/ops)
    #[command(subcommand)]
    Operator(admin::OperatorCommand),
    /// Measure authorization throughput and latency through the real ISO 8583 listener (use a release build)
    ///
    /// Provisions --cards cards straight into a fresh database (SQLite by default, or --database-url), starts
    /// `ghostcard serve` on it as its own process, drives its network listener with pipelined 0100s on
    /// --connections connections for --warmup seconds (not counted) and then --duration seconds (measured), then
    /// verifies the ledger. Prints a summary (with the server's peak memory, its batches over 10 ms and, on SQLite,
    /// how long its flushes of the write-ahead log took: every answer waits for one) and, as its last line, one JSON
    /// object.
    #[command(
        after_long_help = "Examples:\n  cargo run --release -- bench\n  cargo run --release -- bench --cards 200000 --rate 10000\n  \
cargo run --release -- bench --database-url postgres://postgres@127.0.0.1:5432/ghostcard_bench --pgbench"
    )]
    Bench(bench::Arguments),
    /// Import clearing records from the network
    #[command(subcommand)]
    Clearing(clearing::ClearingCommand),
    /// Act as an acquirer: send ISO 8583 messages to a running server and print its answers
    #[command(subcommand)]
    Simulate(simulate::SimulateCommand),
    /// Tell one card's story end to end through a real server and its HTTP API
    ///
    /// Starts a ghostcard server in this process on a temporary SQLite database and a free local port, then
    /// drives it as an app would: a cardholder and her funding card, purchase power, a one-time card, a purchase,
    /// a declined second purchase at another merchant, a capture below the authorization that starts a pay-in-4
    /// plan, a merchant refund, the rest of the hold released, the unused amount refunded, and a ledger check. The database is deleted afterwards
    /// unless --keep is given.
    #[command(after_long_help = "Examples:\n  ghostcard demo\n  ghostcard demo --json | jq '.steps[].title'")]
    Demo(demo::Arguments),
    /// Run an example decision endpoint: it checks each request's signature and approves or declines by a
    /// simple policy
    ///
    /// With a decision endpoint registered (POST /v1/decision-endpoints), every purchase ghostcard would approve
    /// is sent to it, signed like a webhook, and its answer decides; without an answer in time ghostcard's own
    /// verdict stands. This one declines amounts above --decline-above and the categories of --decline-mcc, and
    /// prints each decision.
    #[command(after_long_help = decider::EXAMPLES)]
    ExampleDecider(decider::Arguments),
}

const SERVE_EXAMPLES: &str =
    "Configuration comes from --config FILE (TOML, see ghostcard.example.toml), then GHOSTCARD_* \
environment variables, then these flags.

Examples:
  ghostcard serve
  ghostcard serve --http-addr 0.0.0.0:8080 --database-url postgres://ghostcard@db/ghostcard
  GHOSTCARD_MODE=live GHOSTCARD_KEK=... GHOSTCARD_CVK=... ghostcard serve --config /etc/ghostcard.toml";

/// Where the configuration comes from, shared by the commands that open the database.
#[derive(Debug, Clone, Args)]
pub struct ConfigArguments {
    /// A TOML configuration file (see ghostcard.example.toml).
    #[arg(long, env = "GHOSTCARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database: sqlite://PATH (default sqlite://ghostcard.db) or postgres://USER@HOST/DB.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl ConfigArguments {
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(url) = &self.database_url {
            config.database_url = url.clone();
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(arguments) => demo::run(&arguments),
        Command::Bench(arguments) => bench::run(&arguments),
        Command::Serve(arguments) => serve::run(arguments),
        Command::Migrate(arguments) => admin::migrate(&arguments),
        Command::ApiKey(command) => admin::api_key(command),
        Command::Keys(command) => admin::keys(command),
        Command::Jobs(command) => admin::jobs(command),
        Command::Operator(command) => admin::operator(command),
        Command::Clearing(command) => clearing::run(command),
        Command::Simulate(command) => simulate::run(command),
        Command::ExampleDecider(arguments) => decider::run(&arguments),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
