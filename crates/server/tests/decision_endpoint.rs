//! The issuer's decision endpoint over real ISO 8583 on SQLite and PostgreSQL: approvals and declines it decides,
//! fallbacks (timeout, error, bad answer, an open circuit), what is never sent, requests signed as Standard Webhooks
//! (checked with the PyPI package `standardwebhooks`), and other cards' decisions flowing while it is slow.

mod common;

#[path = "../../../tests/support/python.rs"]
mod python;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::iso::{Network, new_card, purchase};
use common::{BACKENDS, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How the test decider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Approve,
    Decline,
    Slow,
    Garbage,
    Failing,
}

/// A decision endpoint: records every request (body and signature headers) and answers as told; requests from
/// merchant `SLOW` wait 700 ms whatever it is told.
#[derive(Clone)]
struct Decider {
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Decider {
    async fn start() -> (Decider, String) {
        let decider = Decider { behaviour: Arc::new(Mutex::new(Behaviour::Approve)), requests: Arc::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/decide", listener.local_addr().expect("address"));
        let router = axum::Router::new().route("/decide", axum::routing::post(decide)).with_state(decider.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (decider, url)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("lock") = behaviour;
    }

    fn count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    fn last(&self) -> Value {
        let requests = self.requests.lock().expect("lock");
        serde_json::from_str(&requests.last().expect("a request").0).expect("JSON")
    }
}

async fn decide(
    axum::extract::State(decider): axum::extract::State<Decider>,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    let recorded: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), Value::String(headers.get(*name)?.to_str().ok()?.to_owned()))))
        .collect();
    let slow = body.contains("\"SLOW");
    decider.requests.lock().expect("lock").push((body, Value::Object(recorded)));
    let behaviour = *decider.behaviour.lock().expect("lock");
    if slow || behaviour == Behaviour::Slow {
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let ok = axum::http::StatusCode::OK;
    match behaviour {
        Behaviour::Approve | Behaviour::Slow => (ok, json!({"approve": true}).to_string()),
        Behaviour::Decline => (ok, json!({"approve": false, "decline_reason": "velocity_exceeded"}).to_string()),
        Behaviour::Garbage => (ok, "yes please".to_owned()),
        Behaviour::Failing => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    }
}

async fn newest(app: &TestApp, card_id: &str) -> Value {
    let (_, list) = app.get(&format!("/v1/authorizations?card_id={card_id}")).await;
    list["data"][0].clone()
}

#[tokio::test]
async fn the_endpoint_decides_would_be_approvals_and_falls_back_to_ghostcard_without_a_usable_answer() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "endpoint_decides").await;
        let mut network = Network::connect(&app).await;
        let (decider, url) = Decider::start().await;
        let (status, endpoint) = app.post("/v1/decision-endpoints", json!({"url": url, "timeout_ms": 300})).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}");
        assert!(endpoint["id"].as_str().is_some_and(|id| id.starts_with("de_")), "{endpoint}");
        assert_eq!((endpoint["timeout_ms"].as_i64(), endpoint["status"].as_str()), (Some(300), Some("enabled")));
        let secret = endpoint["secret"].as_str().expect("the secret, once").to_owned();
        assert!(secret.starts_with("whsec_"));

        // Approved by the endpoint, which saw the pending authorization, the card and ghostcard's verdict.
        let (_, card) = new_card(&app, "endpoint@example.com", 5_000, "pay_in_4").await;
        assert_eq!(network.exchange(&purchase(&card, 1_000, 1, "SHOP1")).await.get(39), Some("00"));
        let approved = newest(&app, &card.id).await;
        assert_eq!(approved["decided_by"], "endpoint", "{approved}");
        let request = decider.last();
        assert_eq!(request["type"], "authorization.request");
        assert_eq!(request["data"]["authorization"]["id"], approved["id"], "the id it will have");
        assert_eq!(request["data"]["authorization"]["status"], "pending");
        assert_eq!(request["data"]["authorization"]["amount"], 1_000);
        assert_eq!(request["data"]["card"]["id"], card.id.as_str());
        assert_eq!(request["data"]["ghostcard_decision"], json!({"approve": true}));
        assert!(!request.to_string().contains(&card.number), "no card number is sent");

        // Declined by the endpoint: 05, `declined_by_endpoint`.
        decider.set(Behaviour::Decline);
        assert_eq!(network.exchange(&purchase(&card, 500, 2, "SHOP1")).await.get(39), Some("05"));
        let declined = newest(&app, &card.id).await;
        assert_eq!(
            (declined["decline_reason"].as_str(), declined["decided_by"].as_str()),
            (Some("declined_by_endpoint"), Some("endpoint"))
        );

        // No usable answer: ghostcard's verdict stands, `fallback`.
        for (behaviour, stan) in [(Behaviour::Slow, 3_u32), (Behaviour::Garbage, 4), (Behaviour::Failing, 5)] {
            decider.set(behaviour);
            let started = Instant::now();
            let amount = 100 + i64::from(stan);
            assert_eq!(
                network.exchange(&purchase(&card, amount, stan, "SHOP1")).await.get(39),
                Some("00"),
                "{behaviour:?}"
            );
            assert!(started.elapsed() < Duration::from_millis(650), "{behaviour:?}: answered after the 300 ms timeout");
            assert_eq!(newest(&app, &card.id).await["decided_by"], "fallback", "{behaviour:?}");
        }

        // Never sent: what ghostcard declines itself, verifications, refunds, advices.
        decider.set(Behaviour::Approve);
        let asked = decider.count();
        assert_eq!(network.exchange(&purchase(&card, 100, 6, "ELSEWHERE")).await.get(39), Some("05"));
        let elsewhere = newest(&app, &card.id).await;
        assert_eq!(
            (elsewhere["decline_reason"].as_str(), elsewhere["decided_by"].as_str()),
            (Some("card_already_used"), Some("ghostcard"))
        );
        assert_eq!(network.exchange(&purchase(&card, 0, 7, "SHOP1")).await.get(39), Some("85"));
        let mut refund = purchase(&card, 100, 8, "SHOP1");
        refund.set(3, "200000");
        assert_eq!(network.exchange(&refund).await.get(39), Some("00"));
        let mut advice = purchase(&card, 100, 9, "SHOP1");
        advice.set_mti("0120");
        assert_eq!(network.exchange(&advice).await.get(39), Some("00"));
        assert_eq!(decider.count(), asked, "none of them was sent");

        // Every request is signed under the endpoint's secret, each with its own id, at the real time.
        let requests = decider.requests.lock().expect("lock").clone();
        let ids: std::collections::BTreeSet<&str> =
            requests.iter().filter_map(|(_, headers)| headers["webhook-id"].as_str()).collect();
        assert_eq!(ids.len(), requests.len());
        let now = chrono::Utc::now().timestamp();
        for (_, headers) in &requests {
            let timestamp: i64 = headers["webhook-timestamp"].as_str().and_then(|t| t.parse().ok()).expect("timestamp");
            assert!((now - timestamp).abs() < 60, "{headers}");
        }
        let deliveries: Vec<Value> =
            requests.iter().map(|(body, headers)| json!({"body": body, "headers": headers})).collect();
        let verified =
            python::run("standardwebhooks_verify.py", &json!({"secret": secret, "deliveries": deliveries}).to_string());
        assert!(verified.lines().all(|line| line == "authorization.request"), "{verified}");

        let (_, metrics) = app.get("/metrics").await;
        let metrics = metrics.as_str().unwrap_or_default();
        assert!(metrics.contains("ghostcard_decision_endpoint_requests_total{outcome=\"approve\"}"), "{metrics}");
        assert!(metrics.contains("ghostcard_decision_endpoint_requests_total{outcome=\"timeout\"} 1"), "{metrics}");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn a_slow_endpoint_holds_only_its_own_request_and_repeated_failures_open_the_circuit() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "endpoint_circuit").await;
        let (decider, url) = Decider::start().await;
        let (status, _) = app.post("/v1/decision-endpoints", json!({"url": url, "timeout_ms": 1_500})).await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, slow_card) = new_card(&app, "slow@example.com", 5_000, "pay_now").await;
        let (_, fast_card) = new_card(&app, "fast@example.com", 5_000, "pay_now").await;
        let mut slow_network = Network::connect(&app).await;
        let mut fast_network = Network::connect(&app).await;
        let slow = tokio::spawn(async move {
            let started = Instant::now();
            let answer = slow_network.exchange(&purchase(&slow_card, 1_000, 1, "SLOW")).await;
            (answer.get(39).map(str::to_owned), started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        for stan in 2..=4 {
            assert_eq!(fast_network.exchange(&purchase(&fast_card, 100, stan, "FAST")).await.get(39), Some("00"));
        }
        let fast = started.elapsed();
        let (code, slow) = slow.await.expect("answered");
        assert_eq!(code.as_deref(), Some("00"));
        assert!(slow >= Duration::from_millis(700), "the slow one waited for its endpoint: {slow:?}");
        assert!(fast < Duration::from_millis(600), "three other decisions went on meanwhile: {fast:?}");

        // Five failures in a row open the circuit: the endpoint is not asked, every answer is ghostcard's.
        decider.set(Behaviour::Failing);
        let mut network = Network::connect(&app).await;
        let (_, card) = new_card(&app, "circuit@example.com", 5_000, "pay_now").await;
        for stan in 10..15 {
            assert_eq!(network.exchange(&purchase(&card, 100, stan, "SHOP1")).await.get(39), Some("00"));
        }
        let asked = decider.count();
        decider.set(Behaviour::Decline);
        assert_eq!(network.exchange(&purchase(&card, 100, 15, "SHOP1")).await.get(39), Some("00"));
        assert_eq!(decider.count(), asked, "the open circuit kept the request from the endpoint");
        assert_eq!(newest(&app, &card.id).await["decided_by"], "fallback");
        let (_, events) = app.get("/v1/events?type=decision_endpoint.circuit_opened").await;
        assert_eq!(events["data"].as_array().map(Vec::len), Some(1), "{events}");
    }
}

#[tokio::test]
async fn one_endpoint_is_enabled_at_a_time_and_bad_ones_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite, "endpoint_admin").await;
    let mut network = Network::connect(&app).await;
    let (decider, url) = Decider::start().await;
    for (body, param) in [
        (json!({"url": "ftp://example.com/decide"}), "url"),
        (json!({"url": url, "timeout_ms": 50}), "timeout_ms"),
        (json!({"url": url, "timeout_ms": 1_501}), "timeout_ms"),
        (json!({"url": url, "colour": "red"}), "colour"),
    ] {
        let (status, error) = app.post("/v1/decision-endpoints", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {error}");
        assert_eq!(error["error"]["param"].as_str(), Some(param), "{error}");
    }
    let (status, shortest) = app.post("/v1/decision-endpoints", json!({"url": url, "timeout_ms": 100})).await;
    assert_eq!((status, shortest["timeout_ms"].as_i64()), (StatusCode::CREATED, Some(100)), "100 ms is a timeout");
    let (_, first) = app.post("/v1/decision-endpoints", json!({"url": url})).await;
    assert_eq!(first["timeout_ms"], 1_000, "the default timeout");
    let (_, second) = app.post("/v1/decision-endpoints", json!({"url": url, "timeout_ms": 500})).await;
    let (_, listed) = app.get("/v1/decision-endpoints").await;
    let statuses: Vec<(Value, Value)> = listed["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|endpoint| (endpoint["id"].clone(), endpoint["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (second["id"].clone(), json!("enabled")),
            (first["id"].clone(), json!("disabled")),
            (shortest["id"].clone(), json!("disabled"))
        ]
    );
    assert!(listed["data"][0].get("secret").is_none(), "the secret is shown once");

    let (status, disabled) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/decision-endpoints/{}", second["id"].as_str().expect("id")),
            None,
            None,
        )
        .await;
    assert_eq!((status, disabled["status"].as_str()), (StatusCode::OK, Some("disabled")));
    let (_, card) = new_card(&app, "none@example.com", 5_000, "pay_now").await;
    assert_eq!(network.exchange(&purchase(&card, 1_000, 1, "SHOP1")).await.get(39), Some("00"));
    assert_eq!(newest(&app, &card.id).await["decided_by"], "ghostcard");
    assert_eq!(decider.count(), 0);
    let (status, _) = app.request(reqwest::Method::DELETE, "/v1/decision-endpoints/de_nosuch", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
