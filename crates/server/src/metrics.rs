//! Prometheus metrics, rendered as text at `/metrics`: HTTP request counts and latency histograms by route, and
//! authorizations by response code. A handful of maps behind a mutex: cheap next to a database round trip.

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
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let histogram = latency.entry(route.to_owned()).or_default();
            let seconds = elapsed.as_secs_f64();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS_SECONDS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum_micros += elapsed.as_micros();
        }
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
                for (bucket, bound) in histogram.buckets.iter().zip(BUCKETS_SECONDS) {
                    let _ = writeln!(
                        out,
                        "ghostcard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {bucket}"
                    );
                }
                let _ = writeln!(
                    out,
                    "ghostcard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "ghostcard_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    histogram.sum_micros as f64 / 1e6
                );
                let _ = writeln!(
                    out,
                    "ghostcard_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    histogram.count
                );
            }
        }
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
        out.push_str("# HELP ghostcard_authorizations_total Authorization decisions by response code.\n");
        out.push_str("# TYPE ghostcard_authorizations_total counter\n");
        if let Ok(authorizations) = self.authorizations.lock() {
            for (code, count) in authorizations.iter() {
                let _ = writeln!(out, "ghostcard_authorizations_total{{response_code=\"{code}\"}} {count}");
            }
        }
        out
    }
}
