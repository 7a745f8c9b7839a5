//! The issuer's decision endpoint: every purchase ghostcard would approve is sent to it, signed like a webhook, with
//! ghostcard's own verdict, and its answer decides (docs/reference/behaviour.md, "The decision endpoint").
//!
//! Group commit never waits for it. A job is decided once with [`EndpointStep::Ask`]: a would-be approval comes
//! back from the batch as [`Outcome::Ask`] with nothing applied or written, and the batch goes on without it. The
//! request's own task then asks the endpoint ([`ask`]) and submits the job again with the answer, to be decided in
//! a later batch against the state of then: if ghostcard would still approve, the answer decides (or, without a
//! usable answer, ghostcard's verdict stands: `fallback`). Other cards' decisions flow meanwhile, and a slow
//! endpoint holds only the requests that wait for it.
//!
//! A timeout, a failed connection, a status other than 200 or an unreadable answer is a fallback. After
//! [`FAILURES_TO_OPEN`] in a row the circuit opens: for [`OPEN_FOR`] the endpoint is not asked (fallback
//! `circuit_open`); then the next request tries it again: a success closes the circuit, a failure opens it
//! again.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use ghostcard_domain::card_number::redact_digit_runs;
use ghostcard_domain::engine::{EndpointStep, Fallback, Verdict};
use ghostcard_domain::secret::Secret;
use ghostcard_store::batch::Asked;
use serde::{Deserialize, Serialize};

use crate::App;
use crate::authorize::{Job, Outcome};
use crate::ids::new_id;
use crate::views::{AuthorizationView, CardView};

/// Consecutive failures that open the circuit.
pub const FAILURES_TO_OPEN: u32 = 5;
/// How long an open circuit keeps requests from the endpoint.
pub const OPEN_FOR: Duration = Duration::from_secs(30);
/// The margin an answer needs before the network's deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// The longest answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The enabled endpoint, as a node holds it.
#[derive(Debug)]
pub struct Endpoint {
    pub id: String,
    /// Checked against the deployment's mode when the endpoint was loaded (`None`: not allowed, every request
    /// falls back).
    pub url: Option<reqwest::Url>,
    pub timeout: Duration,
    pub key: Secret<Vec<u8>>,
}

/// The associated data an endpoint's secret is encrypted with.
pub fn secret_context(endpoint_id: &str) -> String {
    format!("decision_endpoint:{endpoint_id}")
}

/// Repeated failures keep requests from the endpoint for a while.
#[derive(Debug, Default)]
pub struct Circuit {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Circuit {
    /// True while requests are kept from the endpoint.
    pub fn is_open(&self) -> bool {
        let open_until = self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open_until.is_some_and(|until| Instant::now() < until)
    }

    /// Records a success: true when it closed an open circuit.
    fn succeeded(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take().is_some()
    }

    /// Records a failure: true when it opened the circuit. A circuit that was open and let a request try (its time
    /// ran out) opens again at the first failure.
    fn failed(&self) -> bool {
        let mut open_until = self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let trying = open_until.is_some();
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < FAILURES_TO_OPEN && !trying {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        *open_until = Some(Instant::now() + OPEN_FOR);
        !trying
    }

    /// Forgets everything (a new endpoint).
    pub fn reset(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// Decides `job` with `decide`; with an endpoint enabled, a would-be approval is decided a second time with the
/// endpoint's answer (asked in between, outside any batch).
pub async fn decide_asking<F, Fut>(app: &App, mut job: Job, decide: F) -> Result<Outcome, String>
where
    F: Fn(Job) -> Fut,
    Fut: Future<Output = Result<Outcome, String>>,
{
    if app.decisioning.endpoint().is_none() {
        return decide(job).await;
    }
    job.endpoint = EndpointStep::Ask;
    match decide(job.clone()).await? {
        Outcome::Ask(asked) => {
            let verdict = ask(app, &asked, job.deadline).await;
            let pending = &asked.authorization;
            job.assigned = Some((pending.id.clone(), pending.auth_code.clone().unwrap_or_default()));
            job.endpoint = EndpointStep::Answered(verdict);
            decide(job).await
        }
        decided => Ok(decided),
    }
}

/// What the endpoint says of a would-be approval, by `deadline` (the network's, less the margin).
pub async fn ask(app: &App, asked: &Asked, deadline: Option<Instant>) -> Verdict {
    let Some(endpoint) = app.decisioning.endpoint() else { return Verdict::Fallback(Fallback::Error) };
    if app.decisioning.circuit.is_open() {
        app.metrics.observe_decision_endpoint("circuit_open", None);
        return Verdict::Fallback(Fallback::CircuitOpen);
    }
    let timeout = deadline
        .map_or(endpoint.timeout, |deadline| endpoint.timeout.min(deadline.saturating_duration_since(Instant::now())));
    let started = Instant::now();
    let verdict = if timeout.is_zero() {
        Verdict::Fallback(Fallback::Timeout)
    } else {
        send(app, &endpoint, request_body(app, asked), timeout).await
    };
    let outcome = match &verdict {
        Verdict::Approve => "approve",
        Verdict::Decline(_) => "decline",
        Verdict::Fallback(fallback) => fallback.as_str(),
    };
    app.metrics.observe_decision_endpoint(outcome, Some(started.elapsed()));
    let circuit = &app.decisioning.circuit;
    let changed = match verdict {
        Verdict::Fallback(_) => circuit.failed().then_some("decision_endpoint.circuit_opened"),
        _ => circuit.succeeded().then_some("decision_endpoint.circuit_closed"),
    };
    if let Some(kind) = changed {
        tracing::warn!(endpoint = %endpoint.id, event = kind, "the decision endpoint's circuit changed");
        record_circuit(app, kind, &endpoint.id).await;
    }
    verdict
}

/// `{"type": "authorization.request", "data": {"authorization", "card", "ghostcard_decision"}}`, from what the
/// batch handed over (no read of the database).
fn request_body(app: &App, asked: &Asked) -> String {
    #[derive(Serialize)]
    struct Request {
        #[serde(rename = "type")]
        kind: &'static str,
        data: Data,
    }
    #[derive(Serialize)]
    struct Data {
        authorization: AuthorizationView,
        card: Option<CardView>,
        ghostcard_decision: GhostcardDecision,
    }
    #[derive(Serialize)]
    struct GhostcardDecision {
        approve: bool,
    }
    let request = Request {
        kind: "authorization.request",
        data: Data {
            authorization: crate::views::pending_authorization(&asked.authorization, &app.decisioning.rules()),
            card: asked.card.as_ref().map(|card| CardView::of(card, app.clock.now())),
            ghostcard_decision: GhostcardDecision { approve: true },
        },
    };
    // Our own view types always serialize.
    serde_json::to_string(&request).unwrap_or_default()
}

/// The endpoint's answer.
#[derive(Deserialize)]
struct Answer {
    approve: bool,
    #[serde(default)]
    decline_reason: Option<String>,
}

async fn send(app: &App, endpoint: &Endpoint, body: String, timeout: Duration) -> Verdict {
    let Some(url) = endpoint.url.clone() else { return Verdict::Fallback(Fallback::Error) };
    let id = new_id("msg", Utc::now(), &mut rand::rng());
    // The real clock, not the sandbox's: receivers check the timestamp against their own.
    let timestamp = Utc::now().timestamp();
    let signature = crate::webhooks::signature(endpoint.key.expose(), &id, timestamp, &body);
    let sent = app
        .decision_client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) if response.status() == reqwest::StatusCode::OK => response,
        Ok(_) => return Verdict::Fallback(Fallback::Error),
        Err(error) if error.is_timeout() => return Verdict::Fallback(Fallback::Timeout),
        Err(_) => return Verdict::Fallback(Fallback::Error),
    };
    let bytes = match response.bytes().await {
        Ok(bytes) if bytes.len() <= MAX_ANSWER_BYTES => bytes,
        Ok(_) => return Verdict::Fallback(Fallback::BadAnswer),
        Err(error) if error.is_timeout() => return Verdict::Fallback(Fallback::Timeout),
        Err(_) => return Verdict::Fallback(Fallback::Error),
    };
    match serde_json::from_slice::<Answer>(&bytes) {
        Ok(Answer { approve: true, .. }) => Verdict::Approve,
        Ok(Answer { approve: false, decline_reason }) => Verdict::Decline(decline_reason.map(|reason| clean(&reason))),
        Err(_) => Verdict::Fallback(Fallback::BadAnswer),
    }
}

/// An endpoint's decline reason as it is kept: printable, short, no digit run that could be a card number.
fn clean(reason: &str) -> String {
    let printable: String = reason.chars().filter(|character| !character.is_control()).take(200).collect();
    redact_digit_runs(&printable).into_owned()
}

/// Writes the event of a circuit that opened or closed.
async fn record_circuit(app: &App, kind: &str, endpoint_id: &str) {
    let now = app.clock.now();
    let written = async {
        let mut tx = app.store.begin().await?;
        crate::events::emit(&mut tx, kind, &serde_json::json!({"id": endpoint_id}), now).await?;
        ghostcard_store::commit(tx).await
    };
    if let Err(error) = written.await {
        tracing::error!(%error, "could not record the decision endpoint's circuit event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circuit_opens_after_repeated_failures_and_a_success_closes_it() {
        let circuit = Circuit::default();
        for _ in 1..FAILURES_TO_OPEN {
            assert!(!circuit.failed());
        }
        assert!(!circuit.is_open());
        assert!(circuit.failed(), "the fifth failure in a row opens it");
        assert!(circuit.is_open());
        // Its time runs out: one request tries; one failure opens it again.
        *circuit.open_until.lock().expect("lock") = Some(Instant::now());
        assert!(!circuit.is_open(), "a request may try");
        assert!(!circuit.failed(), "opened again, not newly");
        assert!(circuit.is_open());
        assert!(circuit.succeeded(), "a success closes it");
        assert!(!circuit.is_open());
        assert!(!circuit.succeeded());
        for _ in 1..FAILURES_TO_OPEN {
            assert!(!circuit.failed(), "closed, it takes five failures again");
        }
    }

    #[test]
    fn a_decline_reason_is_kept_short_printable_and_without_card_numbers() {
        assert_eq!(clean("too risky\u{1b}[2J"), "too risky[2J");
        assert!(!clean("card 4242424242424242 blocked").contains("4242424242424242"));
        assert_eq!(clean(&"x".repeat(500)).len(), 200);
    }
}
