//! Bounds that protect the process from its clients: how many connections each listener may hold, derived from the
//! descriptors the process may open, and logging that a flood of failures cannot turn into a flood of lines.
//!
//! Every connection costs a file descriptor. When they run out, nothing can be accepted, not even the health check,
//! and the database cannot open a file. So the listeners' limits are set at start well under the process's limit
//! (`RLIMIT_NOFILE`), after a reserve for the database connections and the process's own files.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Descriptors kept for everything but client connections: stdio, the runtime's own, key and log files.
const RESERVED_DESCRIPTORS: u64 = 32;
/// Each database connection may hold up to three (SQLite: the database, its log and its shared-memory index).
const DESCRIPTORS_PER_DATABASE_CONNECTION: u64 = 3;

/// How many connections each listener may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub http: usize,
    pub iso8583: usize,
    /// The process's limit on open files, when it could be read.
    pub open_files: Option<u64>,
}

impl ConnectionLimits {
    /// The configured limits, lowered when the descriptors left after the reserve cannot carry them: the two
    /// listeners get half each.
    pub fn derive(config: &Config, open_files: Option<u64>) -> ConnectionLimits {
        let (mut http, mut iso8583) = (config.http_max_connections, config.iso8583_max_connections);
        if let Some(open_files) = open_files {
            // The writer and the readers, and a second process's worth for a CLI command run beside the server.
            let database = (u64::from(config.database_max_connections) + 1) * DESCRIPTORS_PER_DATABASE_CONNECTION;
            let share = open_files.saturating_sub(RESERVED_DESCRIPTORS + database) / 2;
            let share = usize::try_from(share).unwrap_or(usize::MAX).max(1);
            (http, iso8583) = (http.min(share), iso8583.min(share));
        }
        ConnectionLimits { http: http.max(1), iso8583: iso8583.max(1), open_files }
    }
}

/// The soft limit on open files of this process (Linux: `/proc/self/limits`); `None` where it cannot be read.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

/// Lets one line through per `interval` for a repeated event, and says how many were held back in between: a
/// failure that repeats a million times a second must not write a million lines.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> LogLimiter {
        LogLimiter { interval, state: Mutex::new((None, 0)) }
    }

    /// `Some(suppressed)` when a line may be written now (`suppressed` occurrences were held back since the last
    /// one), `None` when this occurrence is only counted.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|last| now.duration_since(last) < self.interval) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

/// The wait after a failed `accept`: descriptors or memory ran out, and trying again at once only spins. Doubles
/// from 10 ms to 1 s while failures repeat; one success resets it.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
    log: LogLimiter,
    listener: &'static str,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new(listener: &'static str) -> AcceptBackoff {
        AcceptBackoff { next: Self::FIRST, log: LogLimiter::new(Duration::from_secs(10)), listener }
    }

    /// Logs (at most every 10 s) and waits.
    pub async fn failed(&mut self, error: &std::io::Error) {
        if let Some(suppressed) = self.log.allow() {
            tracing::error!(listener = self.listener, %error, suppressed, "accepting a connection failed; backing off");
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MAX);
    }

    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }

    #[cfg(test)]
    fn next_wait(&self) -> Duration {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_share_what_the_descriptor_limit_leaves() {
        let config = Config::default();
        let roomy = ConnectionLimits::derive(&config, Some(1_048_576));
        assert_eq!((roomy.http, roomy.iso8583), (config.http_max_connections, config.iso8583_max_connections));
        let tight = ConnectionLimits::derive(&config, Some(256));
        // 256 − 32 reserved − 17 × 3 for the database = 173, half each.
        assert_eq!((tight.http, tight.iso8583), (86, 86));
        assert!(tight.http + tight.iso8583 < 256);
        let unknown = ConnectionLimits::derive(&config, None);
        assert_eq!(unknown.http, config.http_max_connections);
        let starved = ConnectionLimits::derive(&config, Some(10));
        assert_eq!((starved.http, starved.iso8583), (1, 1));
    }

    #[test]
    fn this_process_has_a_descriptor_limit() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|limit| limit > 0));
        }
    }

    #[test]
    fn repeated_lines_are_held_back_and_counted() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.allow_at(start), Some(0));
        for second in 1..10 {
            assert_eq!(limiter.allow_at(start + Duration::from_secs(second)), None);
        }
        assert_eq!(limiter.allow_at(start + Duration::from_secs(10)), Some(9));
        assert_eq!(limiter.allow_at(start + Duration::from_secs(25)), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn accept_failures_back_off_up_to_a_second() {
        let mut backoff = AcceptBackoff::new("test");
        let error = std::io::Error::other("too many open files");
        let mut waits = Vec::new();
        for _ in 0..9 {
            waits.push(backoff.next_wait().as_millis());
            backoff.failed(&error).await;
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.next_wait(), Duration::from_millis(10));
    }
}
