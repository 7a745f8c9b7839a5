//! Prometheus metrics, rendered as text at `/metrics`: HTTP request counts and latency histograms by route,
//! authorizations by response code, the authorizer's batches (stage totals, durations), and (SQLite) the flushes of the
//! write-ahead log that network answers wait for. A handful of maps behind a mutex: cheap next to a database round trip.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS_SECONDS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS_SECONDS.len()],
    count: u64,
    sum_micros: u128,
    max: Duration,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS_SECONDS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_micros += elapsed.as_micros();
        self.max = self.max.max(elapsed);
    }

    /// The `_bucket`, `_sum` and `_count` lines of metric `name`; `labels`: the series' other labels, each followed
    /// by a comma (`route="/v1/cards",`), or empty.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS_SECONDS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {bucket}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let labels = labels.trim_end_matches(',');
        let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{labels} {}", self.sum_micros as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{labels} {}", self.count);
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route → latency histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// response code → count.
    authorizations: Mutex<BTreeMap<String, u64>>,
    /// Group-commit batches: how many, how many authorizations, and time spent per stage.
    batches: Mutex<BatchTotals>,
    /// Group-commit batches by duration, from their first read to their commit.
    batch_durations: Mutex<Histogram>,
    /// SQLite: flushes of the write-ahead log after batches (`Store::sync_log`), by duration.
    log_flushes: Mutex<Histogram>,
    /// What a bound turned away (connections over a limit, rate-limited requests), by reason.
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// The decision endpoint: requests by outcome (`approve`, `decline`, or the fallback), and their latency.
    endpoint_outcomes: Mutex<BTreeMap<&'static str, u64>>,
    endpoint_latency: Mutex<Histogram>,
}

/// Totals of the authorizer's batches, to see where a batch's time goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchTotals {
    pub batches: u64,
    pub authorizations: u64,
    pub load: Duration,
    pub decide: Duration,
    pub write: Duration,
    pub commit: Duration,
}

impl Metrics {
    /// Counts one refusal by a bound: `http_connection_limit`, `iso8583_connection_limit`, …
    pub fn count_refusal(&self, reason: &'static str) {
        if let Ok(mut refusals) = self.refusals.lock() {
            *refusals.entry(reason).or_default() += 1;
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            latency.entry(route.to_owned()).or_default().observe(elapsed);
        }
    }

    /// A batch decided and committed (or failed): the next batch waited for all of it.
    pub fn observe_batch_duration(&self, elapsed: Duration) {
        if let Ok(mut durations) = self.batch_durations.lock() {
            durations.observe(elapsed);
        }
    }

    /// A flush of SQLite's write-ahead log: every network answer of the batches before it waited for it.
    pub fn observe_log_flush(&self, elapsed: Duration) {
        if let Ok(mut flushes) = self.log_flushes.lock() {
            flushes.observe(elapsed);
        }
    }

    /// One ask of the decision endpoint: its outcome, and how long it took when the endpoint was asked.
    pub fn observe_decision_endpoint(&self, outcome: &'static str, elapsed: Option<Duration>) {
        if let Ok(mut outcomes) = self.endpoint_outcomes.lock() {
            *outcomes.entry(outcome).or_default() += 1;
        }
        if let (Some(elapsed), Ok(mut latency)) = (elapsed, self.endpoint_latency.lock()) {
            latency.observe(elapsed);
        }
    }

    /// How many times the decision endpoint was asked, how long it took on average and at most.
    pub fn decision_endpoint_latency(&self) -> (u64, Duration, Duration) {
        self.endpoint_latency.lock().map_or((0, Duration::ZERO, Duration::ZERO), |latency| {
            let mean = if latency.count == 0 {
                Duration::ZERO
            } else {
                Duration::from_micros(u64::try_from(latency.sum_micros / u128::from(latency.count)).unwrap_or(u64::MAX))
            };
            (latency.count, mean, latency.max)
        })
    }

    /// The decision endpoint's outcomes so far (the console shows them).
    pub fn decision_endpoint_outcomes(&self) -> BTreeMap<&'static str, u64> {
        self.endpoint_outcomes.lock().map(|outcomes| outcomes.clone()).unwrap_or_default()
    }

    pub fn observe_authorization(&self, response_code: &str) {
        if let Ok(mut authorizations) = self.authorizations.lock() {
            *authorizations.entry(response_code.to_owned()).or_default() += 1;
        }
    }

    pub fn observe_batch_stages(&self, load: Duration, decide: Duration, write: Duration) {
        if let Ok(mut totals) = self.batches.lock() {
            totals.load += load;
            totals.decide += decide;
            totals.write += write;
        }
    }

    pub fn observe_batch(&self, authorizations: usize, commit: Duration) {
        if let Ok(mut totals) = self.batches.lock() {
            totals.batches += 1;
            totals.authorizations += authorizations as u64;
            totals.commit += commit;
        }
    }

    pub fn batch_totals(&self) -> BatchTotals {
        self.batches.lock().map(|totals| *totals).unwrap_or_default()
    }

    /// The Prometheus text exposition format.
    /// The group commit's batches: counts, time per stage, and the histograms of their durations and of the log
    /// flushes their answers waited for.
    fn render_batches(&self, out: &mut String) {
        let totals = self.batch_totals();
        out.push_str(
            "# HELP ghostcard_authorization_batches_total Group-commit batches and the authorizations in them.\n",
        );
        out.push_str("# TYPE ghostcard_authorization_batches_total counter\n");
        let _ = writeln!(out, "ghostcard_authorization_batches_total {}", totals.batches);
        let _ = writeln!(out, "ghostcard_authorization_batched_total {}", totals.authorizations);
        out.push_str("# HELP ghostcard_authorization_batch_seconds_total Time batches spent per stage.\n");
        out.push_str("# TYPE ghostcard_authorization_batch_seconds_total counter\n");
        for (stage, time) in
            [("load", totals.load), ("decide", totals.decide), ("write", totals.write), ("commit", totals.commit)]
        {
            let _ = writeln!(
                out,
                "ghostcard_authorization_batch_seconds_total{{stage=\"{stage}\"}} {}",
                time.as_secs_f64()
            );
        }
        for (histogram, name, help) in [
            (
                &self.batch_durations,
                "ghostcard_authorization_batch_duration_seconds",
                "Group-commit batches by duration, from their first read to their commit",
            ),
            (
                &self.log_flushes,
                "ghostcard_sqlite_log_flush_seconds",
                "Flushes of the SQLite write-ahead log that network answers waited for",
            ),
        ] {
            if let Ok(histogram) = histogram.lock()
                && histogram.count > 0
            {
                let _ = writeln!(out, "# HELP {name} {help}.");
                let _ = writeln!(out, "# TYPE {name} histogram");
                histogram.render(out, name, "");
                let _ = writeln!(out, "# HELP {name}_max The longest of them, in seconds.");
                let _ = writeln!(out, "# TYPE {name}_max gauge");
                let _ = writeln!(out, "{name}_max {}", histogram.max.as_secs_f64());
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ghostcard_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE ghostcard_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "ghostcard_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP ghostcard_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE ghostcard_http_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for (route, histogram) in latency.iter() {
                histogram.render(&mut out, "ghostcard_http_request_duration_seconds", &format!("route=\"{route}\","));
            }
        }
        out.push_str("# HELP ghostcard_refused_total What a bound turned away, by reason.\n");
        out.push_str("# TYPE ghostcard_refused_total counter\n");
        if let Ok(refusals) = self.refusals.lock() {
            for (reason, count) in refusals.iter() {
                let _ = writeln!(out, "ghostcard_refused_total{{reason=\"{reason}\"}} {count}");
            }
        }
        self.render_batches(&mut out);
        out.push_str("# HELP ghostcard_authorizations_total Authorization decisions by response code.\n");
        out.push_str("# TYPE ghostcard_authorizations_total counter\n");
        if let Ok(authorizations) = self.authorizations.lock() {
            for (code, count) in authorizations.iter() {
                let _ = writeln!(out, "ghostcard_authorizations_total{{response_code=\"{code}\"}} {count}");
            }
        }
        self.render_decision_endpoint(&mut out);
        out
    }

    fn render_decision_endpoint(&self, out: &mut String) {
        let Ok(outcomes) = self.endpoint_outcomes.lock() else { return };
        if outcomes.is_empty() {
            return;
        }
        out.push_str("# HELP ghostcard_decision_endpoint_requests_total Would-be approvals sent to the decision endpoint, by outcome (approve, decline, timeout, error, bad_answer, circuit_open).\n");
        out.push_str("# TYPE ghostcard_decision_endpoint_requests_total counter\n");
        for (outcome, count) in outcomes.iter() {
            let _ = writeln!(out, "ghostcard_decision_endpoint_requests_total{{outcome=\"{outcome}\"}} {count}");
        }
        if let Ok(latency) = self.endpoint_latency.lock() {
            out.push_str("# HELP ghostcard_decision_endpoint_duration_seconds How long the decision endpoint took.\n");
            out.push_str("# TYPE ghostcard_decision_endpoint_duration_seconds histogram\n");
            latency.render(out, "ghostcard_decision_endpoint_duration_seconds", "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_flushes_render_as_a_cumulative_histogram_with_their_longest() {
        let metrics = Metrics::default();
        assert!(!metrics.render().contains("ghostcard_sqlite_log_flush"), "no series before the first flush");
        for micros in [300, 4_000, 30_000] {
            metrics.observe_log_flush(Duration::from_micros(micros));
        }
        let text = metrics.render();
        for line in [
            "ghostcard_sqlite_log_flush_seconds_bucket{le=\"0.0005\"} 1",
            "ghostcard_sqlite_log_flush_seconds_bucket{le=\"0.005\"} 2",
            "ghostcard_sqlite_log_flush_seconds_bucket{le=\"0.01\"} 2",
            "ghostcard_sqlite_log_flush_seconds_bucket{le=\"0.05\"} 3",
            "ghostcard_sqlite_log_flush_seconds_bucket{le=\"+Inf\"} 3",
            "ghostcard_sqlite_log_flush_seconds_sum 0.0343",
            "ghostcard_sqlite_log_flush_seconds_count 3",
            "ghostcard_sqlite_log_flush_seconds_max 0.03",
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn batch_durations_render_with_their_longest() {
        let metrics = Metrics::default();
        metrics.observe_batch_duration(Duration::from_millis(12));
        let text = metrics.render();
        for line in [
            "ghostcard_authorization_batch_duration_seconds_bucket{le=\"0.01\"} 0",
            "ghostcard_authorization_batch_duration_seconds_bucket{le=\"0.025\"} 1",
            "ghostcard_authorization_batch_duration_seconds_count 1",
            "ghostcard_authorization_batch_duration_seconds_max 0.012",
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("ghostcard_sqlite_log_flush"), "no flush series without a flush:\n{text}");
    }

    #[test]
    fn request_latency_keeps_its_route_label_on_every_line() {
        let metrics = Metrics::default();
        metrics.observe_request("GET", "/v1/cards", 200, Duration::from_millis(2));
        let text = metrics.render();
        for line in [
            "ghostcard_http_request_duration_seconds_bucket{route=\"/v1/cards\",le=\"0.001\"} 0",
            "ghostcard_http_request_duration_seconds_bucket{route=\"/v1/cards\",le=\"0.0025\"} 1",
            "ghostcard_http_request_duration_seconds_bucket{route=\"/v1/cards\",le=\"+Inf\"} 1",
            "ghostcard_http_request_duration_seconds_sum{route=\"/v1/cards\"} 0.002",
            "ghostcard_http_request_duration_seconds_count{route=\"/v1/cards\"} 1",
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "missing {line:?} in:\n{text}");
        }
    }
}
