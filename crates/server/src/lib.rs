//! The ghostcard server: configuration, the card-data vault, the funding gateway, the clock, the REST API and
//! the operations behind it. It turns the domain's rules into a persistent service; the rules themselves stay in
//! `ghostcard-domain` and every SQL statement in `ghostcard-store`.

pub mod api;
pub mod authorize;
pub mod authorizer;
pub mod clients;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod decision_endpoint;
pub mod decisioning;
pub mod events;
#[doc(hidden)]
pub mod gateway;
pub mod http;
pub mod ids;
pub mod invariant;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod network;
pub mod outbound;
pub mod plans;
pub mod queue;
pub mod router;
pub mod runner;
pub mod service;
pub mod vault;
pub mod views;
pub mod web;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use ghostcard_domain::card_number::Bin;
use ghostcard_domain::country::Country;
use ghostcard_domain::cvv::Cvk;
use ghostcard_domain::decision::AuthorizationRules;
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::PlanTerms;
use ghostcard_domain::purchase_power::PurchasePowerPolicy;
use ghostcard_store::audit::AuditEntry;
use ghostcard_store::{Store, StoreError, StoreOptions, settings};

use crate::clock::Clock;
use crate::config::{Config, Mode};
use crate::gateway::{FundingGateway, SandboxGateway};
use crate::metrics::Metrics;
use crate::vault::{Kek, Vault, VaultError};

/// The settings row that keeps the sandbox clock's offset across restarts.
pub const CLOCK_OFFSET_SETTING: &str = "sandbox_clock_offset_micros";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("live mode needs {0}; set it in the configuration file or the environment")]
    MissingKey(&'static str),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// Everything a request handler needs, shared by all of them.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub vault: Vault,
    pub clock: Clock,
    pub gateway: Arc<dyn FundingGateway>,
    pub currency: Currency,
    pub country: Country,
    pub bin: Bin,
    pub minimum_card_amount: Money,
    pub rules: AuthorizationRules,
    /// Names `rules` in every decision record: `config-` and a digest of the rules in force.
    pub rules_version: String,
    /// The issuer's authorization rules (run-time data, unlike `rules`).
    pub decisioning: decisioning::Decisioning,
    pub purchase_power: PurchasePowerPolicy,
    pub plan_terms: PlanTerms,
    /// The deployment's time zone: calendar dates (installment due dates) are its dates.
    pub time_zone: chrono_tz::Tz,
    pub metrics: Metrics,
    /// How many connections each listener holds at most (the configured limits, fitted to the descriptor limit).
    pub limits: limits::ConnectionLimits,
    /// Proxies whose `X-Forwarded-For` is believed ([`clients`]).
    pub trusted_proxies: Vec<clients::Network>,
    /// The bounds of unauthenticated work: password checks, sign-in and sign-up rates, failed authentications.
    pub guards: clients::Guards,
    /// This process's name on job leases.
    pub runner_id: String,
    /// Wakes the job runner (after a commit that enqueued work).
    pub wake_jobs: tokio::sync::Notify,
    pub webhook_client: reqwest::Client,
    /// For the decision endpoint: its own connections, kept alive between requests.
    pub decision_client: reqwest::Client,
}

impl std::fmt::Debug for App {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("App").field("mode", &self.config.mode).field("database", &self.store.dialect()).finish()
    }
}

/// `config-` and the first 8 hex digits of the SHA-256 of the rules' full description: the same rules always
/// get the same version, and any change of them a new one.
fn rules_version(rules: &AuthorizationRules) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{rules:?}").as_bytes());
    let hex: String = digest.iter().take(4).map(|byte| format!("{byte:02x}")).collect();
    format!("config-{hex}")
}

/// The configured proxies whose `X-Forwarded-For` is believed.
fn trusted_proxies(config: &Config) -> Result<Vec<clients::Network>, StartError> {
    config
        .trusted_proxies
        .iter()
        .map(|text| {
            clients::Network::parse(text).ok_or_else(|| {
                StartError::Config(format!("trusted_proxies: {text:?} is not an address or a range such as 10.0.0.0/8"))
            })
        })
        .collect()
}

/// An HTTP client for URLs that API callers chose (`what`: whose), with a timeout of `timeout_ms`.
fn outgoing(config: &Config, what: &str, timeout_ms: u64) -> Result<reqwest::Client, StartError> {
    outbound::client(config.mode, std::time::Duration::from_millis(timeout_ms))
        .map_err(|error| StartError::Config(format!("{what} client: {error}")))
}

impl App {
    /// Connects to the database, applies migrations, loads the keys and makes the application ready to serve.
    pub async fn start(config: Config) -> Result<Arc<App>, StartError> {
        let currency =
            Currency::from_code(&config.currency).map_err(|error| StartError::Config(format!("currency: {error}")))?;
        let country =
            Country::parse(&config.country).map_err(|error| StartError::Config(format!("country: {error}")))?;
        let bin = Bin::parse(&config.bin).map_err(|error| StartError::Config(format!("bin: {error}")))?;
        let time_zone: chrono_tz::Tz = config.time_zone.parse().map_err(|_| {
            StartError::Config(format!(
                "time_zone: {:?} is not an IANA time zone name; use e.g. UTC, Europe/Berlin, America/New_York",
                config.time_zone
            ))
        })?;
        let (kek, cvk) = configured_keys(&config)?;
        let trusted_proxies = trusted_proxies(&config)?;
        let store = Store::connect(
            &config.database_url,
            &StoreOptions { max_connections: config.database_max_connections, ..StoreOptions::default() },
        )
        .await?;
        store.migrate(chrono::Utc::now()).await?;
        let mut tx = store.read().await?;
        let offset = match settings::get(&mut tx, CLOCK_OFFSET_SETTING).await? {
            Some(value) if config.mode == Mode::Sandbox => value.parse().unwrap_or(0),
            _ => 0,
        };
        drop(tx);
        let clock = Clock::with_offset(offset);
        let vault = Vault::open(&store, &kek, cvk, clock.now(), &mut rand::rng()).await?;
        let minimum_card_amount = Money::new(config.minimum_card_amount, currency);
        let rules = config.rules.authorization_rules(country, currency).map_err(StartError::Config)?;
        let plan_terms = config.plan_terms.plan_terms(currency).map_err(StartError::Config)?;
        let app = Arc::new(App {
            rules_version: rules_version(&rules),
            decisioning: decisioning::Decisioning::default(),
            rules,
            purchase_power: PurchasePowerPolicy::defaults(currency)
                .map_err(|error| StartError::Config(error.to_string()))?,
            plan_terms,
            time_zone,
            gateway: Arc::new(SandboxGateway::default()),
            metrics: Metrics::default(),
            limits: connection_limits(&config),
            trusted_proxies,
            guards: clients::Guards::default(),
            runner_id: crate::ids::new_id("runner", chrono::Utc::now(), &mut rand::rng()),
            wake_jobs: tokio::sync::Notify::new(),
            webhook_client: outgoing(&config, "webhook", config.webhook_timeout_seconds.max(1) * 1_000)?,
            decision_client: outgoing(&config, "decision endpoint", 1_500)?,
            config,
            store,
            vault,
            clock,
            currency,
            country,
            bin,
            minimum_card_amount,
        });
        decisioning::refresh(&app).await?;
        tokio::spawn(decisioning::watch(Arc::downgrade(&app)));
        Ok(app)
    }

    /// The deployment's calendar date at `now`.
    pub fn today(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
        now.with_timezone(&self.time_zone).date_naive()
    }

    /// When `date` begins in the deployment's time zone (a day that begins in a daylight-saving gap begins at the
    /// gap's end).
    pub fn start_of(&self, date: chrono::NaiveDate) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        (0..4)
            .find_map(|hours| {
                self.time_zone.from_local_datetime(&(midnight + chrono::Duration::hours(hours))).earliest()
            })
            .map_or_else(|| midnight.and_utc(), |start| start.with_timezone(&chrono::Utc))
    }

    /// Appends an audit entry in its own transaction.
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        ghostcard_store::audit::append(&mut tx, &entry).await?;
        ghostcard_store::commit(tx).await
    }

    pub fn sandbox(&self) -> bool {
        self.config.mode == Mode::Sandbox
    }
}

/// The KEK and CVK from the configuration; in sandbox mode, missing ones come from (or go to) the key file. Live
/// mode refuses weak keys.
pub fn configured_keys(config: &Config) -> Result<(Kek, Cvk), StartError> {
    let configured_kek = config.kek.as_deref().map(Kek::from_hex).transpose()?;
    let configured_cvk = config.cvk.as_deref().map(vault::cvk_from_hex).transpose()?;
    match (configured_kek, configured_cvk, config.mode) {
        (Some(kek), Some(cvk), Mode::Live) => {
            refuse_weak_keys(config, &kek, &cvk)?;
            Ok((kek, cvk))
        }
        (Some(kek), Some(cvk), Mode::Sandbox) => Ok((kek, cvk)),
        (None, _, Mode::Live) => Err(StartError::MissingKey("GHOSTCARD_KEK (64 hex digits)")),
        (_, None, Mode::Live) => Err(StartError::MissingKey("GHOSTCARD_CVK (32 hex digits)")),
        (kek, cvk, Mode::Sandbox) => {
            let file = vault::sandbox_keys(&config.key_file_path(), &mut rand::rng())?;
            Ok((kek.unwrap_or(file.kek), cvk.unwrap_or(file.cvk)))
        }
    }
}

/// Live cards are protected by keys nobody can guess: not a key with every byte the same, not a single-DES CVK, and
/// not a key from this database's sandbox key file (written in the clear, next to the database).
fn refuse_weak_keys(config: &Config, kek: &Kek, cvk: &Cvk) -> Result<(), StartError> {
    if let Some(reason) = kek.weakness() {
        return Err(VaultError::WeakKey { name: "GHOSTCARD_KEK", reason, bytes: 32 }.into());
    }
    if let Some(reason) = cvk.weakness() {
        return Err(VaultError::WeakKey { name: "GHOSTCARD_CVK", reason, bytes: 16 }.into());
    }
    let path = config.key_file_path();
    if let Ok(sandbox) = vault::read_sandbox_keys(&path) {
        let reason = "it is a sandbox key of this database's key file, kept in the clear";
        if sandbox.kek.id() == kek.id() {
            return Err(VaultError::WeakKey { name: "GHOSTCARD_KEK", reason, bytes: 32 }.into());
        }
        if sandbox.cvk == *cvk {
            return Err(VaultError::WeakKey { name: "GHOSTCARD_CVK", reason, bytes: 16 }.into());
        }
    }
    Ok(())
}

/// The listeners' connection limits for this process, said in the log when they had to be lowered.
fn connection_limits(config: &Config) -> limits::ConnectionLimits {
    let derived = limits::ConnectionLimits::derive(config, limits::open_files_limit());
    if derived.http < config.http_max_connections || derived.iso8583 < config.iso8583_max_connections {
        tracing::warn!(
            open_files = derived.open_files,
            http = derived.http,
            iso8583 = derived.iso8583,
            "connection limits lowered to fit the limit on open files; raise it (ulimit -n, LimitNOFILE=) for more"
        );
    }
    derived
}

/// Serves the HTTP API on `listener` until `shutdown` completes; requests in flight finish first ([`http::serve`]).
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve(app, listener, shutdown).await
}
