//! Who a request comes from, and how much work it may cause before it has proved anything.
//!
//! - **Origin**: the peer's address. `X-Forwarded-For` is believed only from a configured trusted proxy (otherwise
//!   anyone could write any address into the audit log); the origin is computed once per request and handed on in
//!   [`ORIGIN_HEADER`], which a client cannot set.
//! - **Password work**: Argon2id costs ~19 MiB and tens of milliseconds a try, so at most [`PASSWORD_WORKERS`] run at
//!   once, and sign-ins and sign-ups are rate-limited per origin and per account ([`Buckets`]; 429 with
//!   `Retry-After`). The per-account limit applies to every email, registered or not, so its answers say nothing
//!   about which emails have accounts; it slows a guesser down instead of locking the owner out.
//! - **Failed authentications** are counted per origin and written to the audit log as one entry per origin and
//!   minute ([`FailedAuthentications`]), not as one durable write per attempt.
//!
//! Buckets and counts live in each process's memory: with several nodes, each node applies its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use ghostcard_store::audit::AuditEntry;
use tokio::sync::Semaphore;

use crate::App;

/// The request header that carries the origin computed by [`resolve_origin`]; whatever a client sends in it is
/// replaced.
pub const ORIGIN_HEADER: &str = "x-ghostcard-origin";
/// Argon2id runs at once, at most (each holds ~19 MiB).
pub const PASSWORD_WORKERS: usize = 2;
/// How long a request waits for a password worker before it is told to come back (429).
const PASSWORD_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Failed authentications of one origin are written as one audit entry per this window.
pub const FAILED_AUTHENTICATION_WINDOW: Duration = Duration::seconds(60);
/// Origins counted at once, at most; beyond, failures are counted under `other`.
const MAX_COUNTED_ORIGINS: usize = 10_000;
/// Keys a bucket set holds at most before it forgets the ones that are full again.
const MAX_BUCKETS: usize = 100_000;

/// An address range, as `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Network { address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let (network, address, bits) = match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                (u128::from(network.to_bits()), u128::from(address.to_bits()), 32)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => (network.to_bits(), address.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || network >> shift == address >> shift
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the last address in `X-Forwarded-For`
/// that is not one of the trusted proxies.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Network]) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.unwrap_or_default().rsplit(',') {
        let Ok(address) = hop.trim().parse::<IpAddr>() else { break };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    client
}

/// Middleware: computes the request's origin and hands it on in [`ORIGIN_HEADER`].
pub async fn resolve_origin(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let headers = request.headers_mut();
    headers.remove(ORIGIN_HEADER);
    if let Some(peer) = peer {
        let forwarded = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok());
        let client = client_address(peer, forwarded, &app.trusted_proxies);
        if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
            headers.insert(ORIGIN_HEADER, value);
        }
    }
    next.run(request).await
}

/// The origin [`resolve_origin`] computed for a request.
pub fn origin(headers: &HeaderMap) -> Option<String> {
    headers.get(ORIGIN_HEADER).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

/// Token buckets by key: each key may act `capacity` times at once, and once more every `refill_every`.
#[derive(Debug)]
pub struct Buckets {
    capacity: u32,
    refill_every: Duration,
    /// Keys held at most: past it, the buckets that are full again are forgotten, and if that is not enough, new
    /// keys share one bucket ([`OVERFLOW_KEY`]) until room is made. An attacker with many addresses slows down
    /// together instead of growing the map.
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The bucket new keys share while a [`Buckets`] holds its most keys.
const OVERFLOW_KEY: &str = "\u{0}overflow";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When the tokens were last counted; whole refill periods since then are added on the next count.
    counted: DateTime<Utc>,
}

impl Buckets {
    pub fn new(capacity: u32, refill_every: Duration) -> Buckets {
        Buckets::with_max_keys(capacity, refill_every, MAX_BUCKETS)
    }

    fn with_max_keys(capacity: u32, refill_every: Duration, max_keys: usize) -> Buckets {
        Buckets { capacity, refill_every, max_keys, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn take(&self, key: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = key;
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < self.capacity);
            if buckets.len() >= self.max_keys {
                key = OVERFLOW_KEY;
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.capacity, counted: now });
        *bucket = self.refilled(*bucket, now);
        if bucket.tokens == 0 {
            return Err((bucket.counted + self.refill_every - now).max(Duration::seconds(1)));
        }
        bucket.tokens -= 1;
        Ok(())
    }

    /// Gives back a token taken for something that turned out well (a sign-in that succeeded).
    pub fn give_back(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1).min(self.capacity);
        }
    }

    fn refilled(&self, bucket: Bucket, now: DateTime<Utc>) -> Bucket {
        let periods = (now - bucket.counted).num_milliseconds().max(0) / self.refill_every.num_milliseconds().max(1);
        if periods == 0 {
            return bucket;
        }
        let tokens = u64::from(bucket.tokens).saturating_add(u64::try_from(periods).unwrap_or(u64::MAX));
        let tokens = u32::try_from(tokens.min(u64::from(self.capacity))).unwrap_or(self.capacity);
        let counted = if tokens == self.capacity {
            now
        } else {
            bucket.counted + self.refill_every * i32::try_from(periods).unwrap_or(i32::MAX)
        };
        Bucket { tokens, counted }
    }
}

/// The limits of unauthenticated work, one set per process.
#[derive(Debug)]
pub struct Guards {
    /// Password checks and new passwords from one origin (sign-in and sign-up together).
    pub password_attempts_per_origin: Buckets,
    /// Sign-in attempts for one email (registered or not).
    pub sign_ins_per_account: Buckets,
    /// Sign-ups from one origin.
    pub sign_ups_per_origin: Buckets,
    /// Argon2id runs at once.
    password_workers: Semaphore,
    pub failed_authentications: FailedAuthentications,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            password_attempts_per_origin: Buckets::new(30, Duration::seconds(2)),
            sign_ins_per_account: Buckets::new(10, Duration::seconds(30)),
            sign_ups_per_origin: Buckets::new(5, Duration::seconds(60)),
            password_workers: Semaphore::new(PASSWORD_WORKERS),
            failed_authentications: FailedAuthentications::default(),
        }
    }
}

/// No password worker became free in time: come back shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are running; try again in a moment")]
pub struct Busy;

impl Guards {
    /// Hashes a new password with Argon2id on a blocking-work thread, within the worker limit.
    pub async fn hash_password(&self, password: &str) -> Result<String, Busy> {
        let _worker = self.password_worker().await?;
        let password = password.to_owned();
        let hashed = tokio::task::spawn_blocking(move || crate::credentials::hash_password(&password)).await;
        hashed.ok().flatten().ok_or(Busy)
    }

    /// Checks a password against its hash (with no hash, does the same work and fails), within the worker limit.
    pub async fn password_matches(&self, hash: Option<String>, password: &str) -> Result<bool, Busy> {
        let _worker = self.password_worker().await?;
        let password = password.to_owned();
        let checked =
            tokio::task::spawn_blocking(move || crate::credentials::verify_password(hash.as_deref(), &password)).await;
        Ok(checked.unwrap_or(false))
    }

    async fn password_worker(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Busy> {
        match tokio::time::timeout(PASSWORD_WAIT, self.password_workers.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy),
        }
    }
}

/// Failed authentications counted per origin, to be written as one audit entry per origin and window.
#[derive(Debug)]
pub struct FailedAuthentications {
    counts: Mutex<HashMap<String, Failures>>,
    /// Origins counted at once, at most; beyond, failures are counted under `other`.
    max_origins: usize,
}

impl Default for FailedAuthentications {
    fn default() -> Self {
        FailedAuthentications { counts: Mutex::new(HashMap::new()), max_origins: MAX_COUNTED_ORIGINS }
    }
}

/// One origin's failures in the current window: how many, when the window began, and what was presented last
/// ("no API key" / "unknown or revoked API key").
type Failures = (u64, DateTime<Utc>, &'static str);

impl FailedAuthentications {
    /// Counts one failure; returns the entries whose window has passed (at most one per origin), to be written.
    pub fn record(&self, origin: Option<&str>, detail: &'static str, now: DateTime<Utc>) -> Vec<AuditEntry> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let origin = origin.unwrap_or("unknown");
        let key = if counts.len() >= self.max_origins && !counts.contains_key(origin) { "other" } else { origin };
        let entry = counts.entry(key.to_owned()).or_insert((0, now, detail));
        entry.0 += 1;
        entry.2 = detail;
        Self::take_due(&mut counts, now, false)
    }

    /// The entries whose window has passed (every entry when `all`), taken out of the counts.
    pub fn due(&self, now: DateTime<Utc>, all: bool) -> Vec<AuditEntry> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        Self::take_due(&mut counts, now, all)
    }

    fn take_due(counts: &mut HashMap<String, Failures>, now: DateTime<Utc>, all: bool) -> Vec<AuditEntry> {
        let due: Vec<String> = counts
            .iter()
            .filter(|(_, (_, began, _))| all || now - *began >= FAILED_AUTHENTICATION_WINDOW)
            .map(|(origin, _)| origin.clone())
            .collect();
        due.into_iter()
            .filter_map(|origin| counts.remove(&origin).map(|count| (origin, count)))
            .map(|(origin, (failures, began, detail))| AuditEntry {
                at: began,
                actor: "anonymous".to_owned(),
                action: "authentication.failed".to_owned(),
                resource: None,
                outcome: "failure".to_owned(),
                origin: Some(origin),
                detail: Some(format!("{failures} failed (last: {detail}) from {}", began.format("%H:%M:%S UTC"))),
            })
            .collect()
    }
}

/// Writes the failed-authentication entries that are due (all of them when `all`, at shutdown) in one transaction.
pub async fn write_failed_authentications(app: &App, all: bool) -> Result<usize, ghostcard_store::StoreError> {
    let entries = app.guards.failed_authentications.due(app.clock.now(), all);
    write_entries(app, &entries).await
}

pub async fn write_entries(app: &App, entries: &[AuditEntry]) -> Result<usize, ghostcard_store::StoreError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut tx = app.store.begin().await?;
    for entry in entries {
        ghostcard_store::audit::append(&mut tx, entry).await?;
    }
    ghostcard_store::commit(tx).await?;
    Ok(entries.len())
}

/// The `Retry-After` value (whole seconds, at least 1) of a wait.
pub fn retry_after_seconds(wait: Duration) -> i64 {
    (wait.num_milliseconds() + 999).div_euclid(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [Network::parse("10.0.0.0/8").expect("valid"), Network::parse("::1").expect("valid")];
        let peer = |text: &str| text.parse::<IpAddr>().expect("address");
        assert_eq!(client_address(peer("203.0.113.9"), Some("1.2.3.4"), &trusted), peer("203.0.113.9"));
        assert_eq!(client_address(peer("10.1.1.1"), Some("1.2.3.4, 10.2.2.2"), &trusted), peer("1.2.3.4"));
        assert_eq!(client_address(peer("10.1.1.1"), Some("6.6.6.6, 1.2.3.4"), &trusted), peer("1.2.3.4"));
        assert_eq!(client_address(peer("10.1.1.1"), Some("garbage"), &trusted), peer("10.1.1.1"));
        assert_eq!(client_address(peer("10.1.1.1"), None, &trusted), peer("10.1.1.1"));
        assert_eq!(client_address(peer("::1"), Some("2001:db8::5"), &trusted), peer("2001:db8::5"));
        assert_eq!(client_address(peer("127.0.0.1"), Some("1.2.3.4"), &[]), peer("127.0.0.1"));
        assert!(Network::parse("10.0.0.0/33").is_none() && Network::parse("nonsense").is_none());
        assert!(Network::parse("0.0.0.0/0").expect("valid").contains(peer("8.8.8.8")));
    }

    #[test]
    fn buckets_allow_a_burst_then_one_per_period() {
        let buckets = Buckets::new(3, Duration::seconds(30));
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        for _ in 0..3 {
            assert_eq!(buckets.take("a", start), Ok(()));
        }
        assert_eq!(buckets.take("a", start), Err(Duration::seconds(30)));
        assert_eq!(buckets.take("b", start), Ok(()), "keys are separate");
        assert_eq!(buckets.take("a", start + Duration::seconds(29)), Err(Duration::seconds(1)));
        assert_eq!(buckets.take("a", start + Duration::seconds(30)), Ok(()));
        assert!(buckets.take("a", start + Duration::seconds(31)).is_err());
        buckets.give_back("a");
        assert_eq!(buckets.take("a", start + Duration::seconds(31)), Ok(()));
        assert_eq!(buckets.take("a", start + Duration::seconds(3600)), Ok(()), "full again after a while");
        assert_eq!(retry_after_seconds(Duration::milliseconds(1_200)), 2);
    }

    #[test]
    fn at_their_most_keys_buckets_forget_full_ones_then_share_one() {
        let buckets = Buckets::with_max_keys(2, Duration::seconds(30), 2);
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        for key in ["a", "b"] {
            assert_eq!(buckets.take(key, start), Ok(()));
            assert_eq!(buckets.take(key, start), Ok(()));
        }
        // Both keys are empty: new keys share the overflow bucket, which empties too.
        assert_eq!(buckets.take("c", start), Ok(()));
        assert_eq!(buckets.take("d", start), Ok(()));
        assert!(buckets.take("e", start).is_err(), "the overflow bucket is empty");
        assert!(buckets.buckets.lock().expect("lock").len() <= 3, "the map stays bounded");
        // Once the keys are full again they are forgotten and new keys get buckets of their own.
        let later = start + Duration::seconds(300);
        assert_eq!(buckets.take("f", later), Ok(()));
        assert!(buckets.buckets.lock().expect("lock").contains_key("f"));
    }

    #[test]
    fn at_their_most_origins_failures_are_counted_under_other() {
        let failures = FailedAuthentications { max_origins: 2, ..FailedAuthentications::default() };
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        for origin in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"] {
            failures.record(Some(origin), "no API key", start);
        }
        let entries = failures.due(start, true);
        let mut origins: Vec<_> = entries.iter().filter_map(|entry| entry.origin.clone()).collect();
        origins.sort();
        assert_eq!(origins, vec!["1.1.1.1", "2.2.2.2", "other"]);
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_password_worker_busy_a_request_is_told_to_come_back() {
        let guards = Guards::default();
        let mut held = Vec::new();
        for _ in 0..PASSWORD_WORKERS {
            held.push(guards.password_worker().await.expect("a free worker"));
        }
        assert_eq!(guards.password_matches(None, "x").await, Err(Busy), "no worker within the wait");
        drop(held);
        assert_eq!(guards.password_matches(None, "x").await, Ok(false), "a free worker checks it");
    }

    #[test]
    fn failures_become_one_entry_per_origin_and_window() {
        let failures = FailedAuthentications::default();
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        for second in 0..59 {
            assert!(failures.record(Some("1.2.3.4"), "no API key", start + Duration::seconds(second)).is_empty());
        }
        failures.record(Some("5.6.7.8"), "unknown or revoked API key", start + Duration::seconds(30));
        let due = failures.record(Some("1.2.3.4"), "no API key", start + Duration::seconds(60));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].origin.as_deref(), due[0].resource.as_deref()), (Some("1.2.3.4"), None));
        assert!(due[0].detail.as_deref().is_some_and(|detail| detail.starts_with("60 failed")), "{:?}", due[0].detail);
        let rest = failures.due(start + Duration::seconds(61), true);
        assert_eq!(rest.len(), 1);
        assert!(failures.due(start + Duration::seconds(999), true).is_empty());
    }
}
