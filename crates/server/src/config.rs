//! Configuration: defaults, overridden by a TOML file, overridden by `GHOSTCARD_*` environment variables,
//! overridden by command-line flags (the binary applies those last).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Test money only: the sandbox funding gateway, sandbox endpoints, keys generated on first run.
    Sandbox,
    /// Real money: keys must be configured, sandbox endpoints are off.
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sandbox => "sandbox",
            Mode::Live => "live",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{variable} is not valid: {message}")]
    Environment { variable: &'static str, message: String },
}

/// Everything a server needs to start. Field names are the TOML keys; see `ghostcard.example.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://PATH` (created on first run) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// Where the REST API listens.
    pub http_addr: SocketAddr,
    /// HTTP connections open at most (lowered at start to fit the process's descriptor limit). At the limit, a new
    /// connection takes the place of the oldest one that has no request running.
    pub http_max_connections: usize,
    /// A connection that has not sent a complete request head this long after it opened (or after its last
    /// answer) is closed, in seconds.
    pub http_header_timeout_seconds: u64,
    /// A request body must arrive within this many seconds.
    pub http_body_timeout_seconds: u64,
    /// Where the ISO 8583 listener (the card network's connection) listens.
    pub iso8583_addr: SocketAddr,
    /// The largest ISO 8583 message accepted, in bytes.
    pub iso8583_max_message_bytes: usize,
    /// Open network connections at most; more are refused.
    pub iso8583_max_connections: usize,
    /// Open network connections from one address at most, so that one peer cannot hold every slot.
    pub iso8583_max_connections_per_peer: usize,
    /// A network connection without traffic this long is closed, in seconds. Keep-alive frames are not traffic,
    /// and network management messages (0800, echo tests) count at most once per
    /// `iso8583_echo_interval_seconds`.
    pub iso8583_idle_timeout_seconds: u64,
    pub iso8583_echo_interval_seconds: u64,
    /// Requests in flight on one network connection at most (backpressure for a client that does not read).
    pub iso8583_max_in_flight_per_connection: usize,
    /// Every authorization is answered within this many milliseconds; a decision not durable by then gets the
    /// stand-in response.
    pub authorization_deadline_ms: u64,
    /// Field 39 of a stand-in answer.
    pub stand_in_response_code: String,
    /// Network authorizations decided and committed together, at most.
    pub authorization_batch_max: usize,
    /// How long a batch waits for more requests after its first, in microseconds. 0 (the default): it takes what
    /// is waiting; under load the requests that arrive during a commit are the next batch, and a wait would only
    /// lengthen every cycle (measured: p50 at 10,000/s offered fell from 18 ms to 12.6 ms without it).
    pub authorization_batch_wait_us: u64,
    /// Batches decided at the same time on PostgreSQL (SQLite has one writer: always one). A batch's statements
    /// run one after another in one server process, so another batch in flight puts the second core to work (three
    /// was the best of two to four: docs/performance-log, session 7). Batches that share a cardholder take turns.
    pub authorization_batches_in_flight: usize,
    /// Authorizations waiting for a batch, at most (a full queue makes connections wait).
    pub authorization_queue_capacity: usize,
    /// An authorization hold never captured is released after this many days…
    pub hold_expiry_days: i64,
    /// …or this many for these merchant categories (lodging, car rental, cruise lines).
    pub hold_expiry_long_days: i64,
    pub hold_expiry_long_mccs: Vec<u16>,
    /// How often the server runs what fell due (card and hold expiry), in seconds.
    pub job_interval_seconds: u64,
    /// How long a webhook receiver has to answer a delivery.
    pub webhook_timeout_seconds: u64,
    pub mode: Mode,
    /// The BIN our card numbers start with (6–8 digits).
    pub bin: String,
    /// The card verification key pair, 32 hex digits. In sandbox mode generated once if missing.
    pub cvk: Option<String>,
    /// The key-encryption key, 64 hex digits. In sandbox mode generated once if missing.
    pub kek: Option<String>,
    /// Where sandbox mode keeps generated keys (default: beside the SQLite database, or `ghostcard.keys`).
    pub key_file: Option<PathBuf>,
    /// The deployment's currency (ISO 4217) and country (ISO 3166 alpha-2).
    pub currency: String,
    pub country: String,
    /// The deployment's time zone (IANA name, e.g. `Europe/Berlin`): installment due dates are its calendar
    /// dates, and work due on a date runs from its start there.
    pub time_zone: String,
    /// Card numbers' length in digits.
    pub card_number_length: usize,
    /// How long a new card can be used, in hours.
    pub card_validity_hours: i64,
    /// How far ahead the printed expiry is, in months.
    pub printed_expiry_months: u16,
    /// The smallest card, in minor units.
    pub minimum_card_amount: i64,
    /// The largest request body the API accepts, in bytes.
    pub max_body_bytes: usize,
    /// Database connections per process.
    pub database_max_connections: u32,
    /// Log filter, as `RUST_LOG` (`info`, `ghostcard=debug`, …).
    pub log: String,
    /// Proxies (addresses or ranges such as `10.0.0.0/8`) whose `X-Forwarded-For` is believed for a request's
    /// origin; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// The decision's merchant categories and countries and fraud limits (`[rules]`).
    pub rules: rules::RulesConfig,
    /// The payment plans' terms (`[plan_terms]`).
    pub plan_terms: rules::PlanTermsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://ghostcard.db".to_owned(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_max_connections: 1024,
            http_header_timeout_seconds: 5,
            http_body_timeout_seconds: 10,
            iso8583_addr: SocketAddr::from(([127, 0, 0, 1], 8583)),
            iso8583_max_message_bytes: 4096,
            iso8583_max_connections: 1024,
            iso8583_max_connections_per_peer: 64,
            iso8583_idle_timeout_seconds: 300,
            iso8583_echo_interval_seconds: 30,
            iso8583_max_in_flight_per_connection: 1024,
            authorization_deadline_ms: 2000,
            stand_in_response_code: "91".to_owned(),
            authorization_batch_max: 1024,
            authorization_batch_wait_us: 0,
            authorization_batches_in_flight: 3,
            authorization_queue_capacity: 8192,
            hold_expiry_days: 7,
            hold_expiry_long_days: 31,
            hold_expiry_long_mccs: vec![7011, 7512, 4411],
            job_interval_seconds: 30,
            webhook_timeout_seconds: 10,
            mode: Mode::Sandbox,
            bin: "424242".to_owned(),
            cvk: None,
            kek: None,
            key_file: None,
            currency: "USD".to_owned(),
            country: "US".to_owned(),
            time_zone: "UTC".to_owned(),
            card_number_length: 16,
            card_validity_hours: 24,
            printed_expiry_months: 36,
            minimum_card_amount: 1_000,
            max_body_bytes: 64 * 1024,
            database_max_connections: 16,
            log: "info".to_owned(),
            trusted_proxies: Vec::new(),
            rules: rules::RulesConfig::default(),
            plan_terms: rules::PlanTermsConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str(&text).map_err(|error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: error.message().to_owned(),
                })?
            }
            None => Config::default(),
        };
        config.apply_environment(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `GHOSTCARD_*` variables read through `lookup`.
    pub fn apply_environment(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(value) = lookup("GHOSTCARD_DATABASE_URL") {
            self.database_url = value;
        }
        if let Some(value) = lookup("GHOSTCARD_HTTP_ADDR") {
            self.http_addr = value.parse().map_err(|_| ConfigError::Environment {
                variable: "GHOSTCARD_HTTP_ADDR",
                message: "use HOST:PORT, e.g. 127.0.0.1:8080".to_owned(),
            })?;
        }
        if let Some(value) = lookup("GHOSTCARD_ISO8583_ADDR") {
            self.iso8583_addr = value.parse().map_err(|_| ConfigError::Environment {
                variable: "GHOSTCARD_ISO8583_ADDR",
                message: "use HOST:PORT, e.g. 127.0.0.1:8583".to_owned(),
            })?;
        }
        if let Some(value) = lookup("GHOSTCARD_MODE") {
            self.mode = match value.as_str() {
                "sandbox" => Mode::Sandbox,
                "live" => Mode::Live,
                _ => {
                    return Err(ConfigError::Environment {
                        variable: "GHOSTCARD_MODE",
                        message: "use sandbox or live".to_owned(),
                    });
                }
            };
        }
        if let Some(value) = lookup("GHOSTCARD_BIN") {
            self.bin = value;
        }
        if let Some(value) = lookup("GHOSTCARD_CVK") {
            self.cvk = Some(value);
        }
        if let Some(value) = lookup("GHOSTCARD_KEK") {
            self.kek = Some(value);
        }
        if let Some(value) = lookup("GHOSTCARD_KEY_FILE") {
            self.key_file = Some(PathBuf::from(value));
        }
        if let Some(value) = lookup("GHOSTCARD_LOG") {
            self.log = value;
        }
        if let Some(value) = lookup("GHOSTCARD_AUTHORIZATION_BATCHES_IN_FLIGHT") {
            self.authorization_batches_in_flight = value.parse().map_err(|_| ConfigError::Environment {
                variable: "GHOSTCARD_AUTHORIZATION_BATCHES_IN_FLIGHT",
                message: "use a whole number, e.g. 1".to_owned(),
            })?;
        }
        if let Some(value) = lookup("GHOSTCARD_TIME_ZONE") {
            self.time_zone = value;
        }
        Ok(())
    }

    /// Where sandbox keys are kept: the configured file, else beside a SQLite database, else `ghostcard.keys`.
    pub fn key_file_path(&self) -> PathBuf {
        if let Some(path) = &self.key_file {
            return path.clone();
        }
        match self.database_url.strip_prefix("sqlite://").or_else(|| self.database_url.strip_prefix("sqlite:")) {
            Some(path) => {
                let path = path.split('?').next().unwrap_or(path);
                PathBuf::from(format!("{path}.keys"))
            }
            None => PathBuf::from("ghostcard.keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_and_bad_values_say_what_to_use() {
        let mut config: Config = toml::from_str("mode = \"live\"\nbin = \"400000\"").expect("valid toml");
        assert_eq!((config.mode, config.bin.as_str()), (Mode::Live, "400000"));
        config.apply_environment(|name| (name == "GHOSTCARD_MODE").then(|| "sandbox".to_owned())).expect("valid");
        assert_eq!(config.mode, Mode::Sandbox);
        let error = config.apply_environment(|name| (name == "GHOSTCARD_HTTP_ADDR").then(|| "nonsense".to_owned()));
        assert!(error.expect_err("invalid").to_string().contains("HOST:PORT"));
        assert!(toml::from_str::<Config>("unknown_setting = 1").is_err(), "typos are errors, not ignored");
    }

    #[test]
    fn the_example_file_is_valid_and_shows_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../../ghostcard.example.toml")).expect("valid example");
        assert_eq!(format!("{example:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn the_key_file_sits_beside_a_sqlite_database() {
        let mut config =
            Config { database_url: "sqlite:///var/lib/ghostcard/main.db?mode=rwc".to_owned(), ..Config::default() };
        assert_eq!(config.key_file_path(), PathBuf::from("/var/lib/ghostcard/main.db.keys"));
        config.database_url = "postgres://localhost/ghostcard".to_owned();
        assert_eq!(config.key_file_path(), PathBuf::from("ghostcard.keys"));
    }
}
