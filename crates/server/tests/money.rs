//! Money over time, driven by the sandbox clock over HTTP on both databases: collections, retries, rollover, late
//! fees, the 14-day adjustment, pay-now charges and their true-up, refunds to the funding card, early payments,
//! and webhooks verified by an independent implementation (`standardwebhooks` from PyPI).

mod common;

#[path = "../../../tests/support/python.rs"]
mod python;

use std::sync::{Arc, Mutex};

use common::{BACKENDS, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

impl TestApp {
    async fn advance(&self, seconds: i64) -> Value {
        let (status, body) = self.post("/v1/simulate/clock/advance", json!({"seconds": seconds})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn clear(&self, authorization: &str, amount: i64) -> Value {
        let (status, body) =
            self.post("/v1/simulate/clear", json!({"authorization_id": authorization, "amount": amount})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn plan(&self, id: &str) -> Value {
        let (status, plan) = self.get(&format!("/v1/plans/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{plan}");
        plan
    }

    /// A used card captured for `amount`: (card id, plan id).
    async fn purchase(
        &self,
        cardholder: &str,
        source: &str,
        amount: i64,
        captured: i64,
        plan: &str,
    ) -> (String, String) {
        let (status, card) = self.card(cardholder, source, amount, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        let card_id = card["id"].as_str().expect("id").to_owned();
        let authorization = self.authorize(&card_id, amount, "SHOP1").await;
        assert_eq!(authorization["response_code"], "00", "{authorization}");
        let cleared = self.clear(authorization["id"].as_str().expect("id"), captured).await;
        assert_eq!(cleared["result"], "posted", "{cleared}");
        (card_id, cleared["plan_id"].as_str().expect("plan").to_owned())
    }

    async fn jobs(&self, kind: &str) -> Vec<Value> {
        let (status, list) = self.get(&format!("/v1/jobs?kind={kind}&limit=100")).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["data"].as_array().cloned().unwrap_or_default()
    }

    async fn event_types(&self) -> Vec<String> {
        let (status, list) = self.get("/v1/events?limit=100").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let mut types: Vec<String> = list["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|event| event["type"].as_str().expect("type").to_owned())
            .collect();
        types.reverse();
        types
    }
}

fn installments(plan: &Value) -> Vec<(String, i64, i64, String)> {
    plan["installments"]
        .as_array()
        .expect("installments")
        .iter()
        .map(|installment| {
            (
                installment["due_date"].as_str().expect("date").to_owned(),
                installment["amount"].as_i64().expect("amount"),
                installment["paid_amount"].as_i64().expect("paid"),
                installment["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn date_after(start: &str, days: i64) -> String {
    let date = chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").expect("date");
    (date + chrono::Duration::days(days)).to_string()
}

#[tokio::test]
async fn pay_in_4_is_collected_on_days_0_14_28_42_with_exact_amounts() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "pay_in_4").await;
        let (cardholder, source) = app.cardholder_with_funding("ada@example.com", "4242424242424242").await;
        let (_, plan_id) = app.purchase(&cardholder, &source, 4_003, 4_003, "pay_in_4").await;
        let plan = app.plan(&plan_id).await;
        let day0 = installments(&plan)[0].0.clone();
        let due: Vec<String> = installments(&plan).iter().map(|i| i.0.clone()).collect();
        assert_eq!(due, vec![day0.clone(), date_after(&day0, 14), date_after(&day0, 28), date_after(&day0, 42)]);

        // The first installment is due at capture: collected at once (the next job run), with the remainder cents.
        app.advance(1).await;
        let plan = app.plan(&plan_id).await;
        assert_eq!(installments(&plan)[0].1..=installments(&plan)[0].2, 1_003..=1_003);
        assert_eq!(
            installments(&plan).iter().map(|i| i.3.as_str()).collect::<Vec<_>>(),
            ["paid", "scheduled", "scheduled", "scheduled"]
        );
        for (day, paid) in [(14, 2), (28, 3), (42, 4)] {
            app.advance(14 * DAY).await;
            let plan = app.plan(&plan_id).await;
            let statuses: Vec<(i64, String)> = installments(&plan).iter().map(|i| (i.2, i.3.clone())).collect();
            assert_eq!(statuses.iter().filter(|(_, status)| status == "paid").count(), paid, "day {day}: {plan}");
            assert_eq!(statuses.iter().map(|(amount, _)| amount).sum::<i64>(), 1_003 + 1_000 * (paid as i64 - 1));
        }
        let plan = app.plan(&plan_id).await;
        assert_eq!((plan["status"].as_str(), plan["balance"].as_i64()), (Some("completed"), Some(0)));
        // Each collection was charged once, through its own job.
        let collections = app.jobs("installment_collection").await;
        assert_eq!(collections.len(), 4, "{collections:?}");
        assert!(collections.iter().all(|job| job["status"] == "done" && job["attempts"] == 1));
        let types = app.event_types().await;
        assert_eq!(types.iter().filter(|kind| *kind == "installment.paid").count(), 4, "{types:?}");
        assert_eq!(types.iter().filter(|kind| *kind == "plan.completed").count(), 1, "{types:?}");
        for expected in ["card.created", "authorization.approved", "card.used", "plan.created", "clearing.posted"] {
            assert!(types.contains(&expected.to_owned()), "{expected} missing from {types:?}");
        }
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn a_failing_funding_card_is_retried_rolled_over_charged_late_fees_to_the_cap_then_paid_from_another_card() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "failing_card").await;
        // Holds succeed on this sandbox card; every charge fails.
        let (cardholder, source) = app.cardholder_with_funding("bo@example.com", "4000000000009995").await;
        let (_, plan_id) = app.purchase(&cardholder, &source, 4_000, 4_000, "pay_in_4").await;

        app.advance(1).await;
        let plan = app.plan(&plan_id).await;
        assert_eq!(installments(&plan)[0].3, "failed", "{plan}");
        // Retried once after 2 days; that fails too and the amount rolls into the next installment.
        app.advance(2 * DAY).await;
        let plan = app.plan(&plan_id).await;
        assert_eq!(installments(&plan)[0].3, "rolled_over", "{plan}");
        assert_eq!(installments(&plan)[1].1, 2_000, "{plan}");
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!(power["available"], 0, "overdue: no purchase power: {power}");

        // 10 days after the first due date: a 7.00 late fee; the cap (25% of 40.00 = 10.00) cuts the next to 3.00.
        app.advance(8 * DAY).await;
        assert_eq!(app.plan(&plan_id).await["fees"], 700);
        app.advance(30 * DAY).await;
        let plan = app.plan(&plan_id).await;
        assert_eq!(plan["fees"], 1_000, "fees stop at the cap: {plan}");
        assert_eq!(plan["balance"], 5_000, "{plan}");

        // Paying the overdue amount from another card restores purchase power.
        let (status, good) = app
            .post(
                &format!("/v1/cardholders/{cardholder}/funding-sources"),
                json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{good}");
        let (status, declined) = app.post(&format!("/v1/plans/{plan_id}/payments"), json!({"amount": 5_000})).await;
        assert_eq!(
            (status, declined["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("funding_declined"))
        );
        let (status, paid) = app
            .post(&format!("/v1/plans/{plan_id}/payments"), json!({"amount": 5_000, "funding_source_id": good["id"]}))
            .await;
        assert_eq!(status, StatusCode::OK, "{paid}");
        assert_eq!((paid["status"].as_str(), paid["balance"].as_i64()), (Some("completed"), Some(0)));
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert!(power["available"].as_i64().expect("available") > 0, "{power}");
        let types = app.event_types().await;
        for expected in ["installment.failed", "installment.late_fee", "installment.paid", "plan.completed"] {
            assert!(types.contains(&expected.to_owned()), "{expected} missing from {types:?}");
        }
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn pay_now_is_charged_once_and_trued_up_by_captures_and_refunds() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "pay_now").await;
        let (cardholder, source) = app.cardholder_with_funding("cy@example.com", "4242424242424242").await;
        let (status, card) = app.card(&cardholder, &source, 3_000, "pay_now").await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        let card_id = card["id"].as_str().expect("id");
        let authorization = app.authorize(card_id, 2_500, "SHOP1").await;
        // Within 24 hours of creation the approved amount is charged, once.
        app.advance(60).await;
        app.advance(60).await;
        let charges = app.jobs("funding_charge").await;
        assert_eq!(charges.len(), 1, "{charges:?}");
        assert_eq!(
            (charges[0]["status"].as_str(), charges[0]["payload"]["amount"].as_i64()),
            (Some("done"), Some(2_500))
        );
        // A capture below the approval leaves the rest held; when that hold expires (7 days) the difference goes
        // back to the funding card.
        app.clear(authorization["id"].as_str().expect("id"), 2_000).await;
        app.advance(60).await;
        assert!(app.jobs("funding_refund").await.is_empty(), "the rest is still held");
        app.advance(7 * DAY).await;
        let refunds = app.jobs("funding_refund").await;
        assert_eq!(refunds.len(), 1, "{refunds:?}");
        assert_eq!(
            (refunds[0]["status"].as_str(), refunds[0]["payload"]["amount"].as_i64()),
            (Some("done"), Some(500))
        );
        // A merchant refund on the closed card: refunded to the funding card too.
        let (status, refund) = app.post("/v1/simulate/refund", json!({"card_id": card_id, "amount": 700})).await;
        assert_eq!(status, StatusCode::OK, "{refund}");
        app.advance(60).await;
        let refunds = app.jobs("funding_refund").await;
        assert_eq!(refunds.iter().map(|job| job["payload"]["amount"].as_i64().unwrap_or(0)).sum::<i64>(), 1_200);
        assert_eq!(app.jobs("funding_charge").await.len(), 1, "still charged once");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn a_capture_below_the_card_amount_is_adjusted_after_14_days() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "adjustment").await;
        let (cardholder, source) = app.cardholder_with_funding("di@example.com", "4242424242424242").await;
        let (card_id, plan_id) = app.purchase(&cardholder, &source, 4_000, 3_000, "pay_in_4").await;
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!((card["status"].as_str(), card["held"].as_i64()), (Some("used"), Some(1_000)), "{card}");
        assert_eq!(app.plan(&plan_id).await["principal"], 3_000);
        // The rest of the hold expires after 7 days; the card keeps its amount until the adjustment.
        app.advance(13 * DAY).await;
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!(
            (card["status"].as_str(), card["amount"].as_i64(), card["held"].as_i64()),
            (Some("used"), Some(4_000), Some(0))
        );
        app.advance(DAY + 60).await;
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!(
            (
                card["status"].as_str(),
                card["amount"].as_i64(),
                card["held"].as_i64(),
                card["remaining_amount"].as_i64()
            ),
            (Some("closed"), Some(3_000), Some(0), Some(0)),
            "{card}"
        );
        assert_eq!(app.plan(&plan_id).await["principal"], 3_000);
        assert!(app.event_types().await.contains(&"plan.adjusted".to_owned()));
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn a_merchant_refund_on_a_paid_plan_goes_back_to_the_funding_card() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "refund_paid").await;
        let (cardholder, source) = app.cardholder_with_funding("ed@example.com", "4242424242424242").await;
        let (card_id, plan_id) = app.purchase(&cardholder, &source, 2_000, 2_000, "pay_in_30").await;
        app.advance(30 * DAY + 60).await;
        assert_eq!(app.plan(&plan_id).await["status"], "completed");
        let (status, refund) = app.post("/v1/simulate/refund", json!({"card_id": card_id, "amount": 2_000})).await;
        assert_eq!(status, StatusCode::OK, "{refund}");
        app.advance(60).await;
        let refunds = app.jobs("funding_refund").await;
        assert_eq!(refunds.len(), 1, "{refunds:?}");
        assert_eq!(
            (refunds[0]["status"].as_str(), refunds[0]["payload"]["amount"].as_i64()),
            (Some("done"), Some(2_000))
        );
        assert!(app.event_types().await.contains(&"refund.posted".to_owned()));
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn financing_follows_its_schedule_and_pays_off_early_with_accrued_interest_only() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "financing").await;
        let (cardholder, source) = app.cardholder_with_funding("fi@example.com", "4242424242424242").await;
        let (_, plan_id) = app.purchase(&cardholder, &source, 3_000, 3_000, "financing_3").await;
        let plan = app.plan(&plan_id).await;
        let schedule = installments(&plan);
        assert_eq!(schedule.len(), 3);
        // 19.99% APR: payment = P·r / (1 − (1 + r)^−3), r = 0.1999/12, rounded half-up: 1033.55 → 1034 … the
        // principal parts sum to the principal exactly.
        let principal: i64 =
            plan["installments"].as_array().expect("list").iter().map(|i| i["principal"].as_i64().unwrap_or(0)).sum();
        assert_eq!(principal, 3_000);
        assert!(schedule.iter().all(|i| i.1 > 1_000), "{plan}");
        // First payment a month after capture.
        app.advance(31 * DAY + 60).await;
        let plan = app.plan(&plan_id).await;
        assert_eq!(installments(&plan)[0].3, "paid", "{plan}");
        let balance_before = plan["balance"].as_i64().expect("balance");
        let (status, paid) = app.post(&format!("/v1/plans/{plan_id}/payments"), json!({"payoff": true})).await;
        assert_eq!(status, StatusCode::OK, "{paid}");
        assert_eq!((paid["status"].as_str(), paid["balance"].as_i64()), (Some("completed"), Some(0)));
        let paid_total: i64 = installments(&paid).iter().map(|i| i.2).sum();
        let first = installments(&plan)[0].2;
        assert!(paid_total - first < balance_before, "interest not yet accrued is forgiven: {paid}");
        let (status, again) = app.post(&format!("/v1/plans/{plan_id}/payments"), json!({"amount": 100})).await;
        assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("plan_not_active")));
        app.assert_ledger_verifies().await;
    }
}

/// A webhook receiver: records every request; answers 500 to the first `failures`, then 200.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    failures: Arc<Mutex<usize>>,
}

async fn receive(
    axum::extract::State(receiver): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let recorded: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), Value::String(headers.get(*name)?.to_str().ok()?.to_owned()))))
        .collect();
    receiver.requests.lock().expect("lock").push((body, Value::Object(recorded)));
    let mut failures = receiver.failures.lock().expect("lock");
    if *failures > 0 {
        *failures -= 1;
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::OK
    }
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_delivered_once_each_by_id() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "webhooks").await;
        let receiver = Receiver { failures: Arc::new(Mutex::new(3)), ..Receiver::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
        let router = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });

        let (status, bad) = app.post("/v1/webhook-endpoints", json!({"url": "ftp://nowhere", "events": ["*"]})).await;
        assert_eq!((status, bad["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_url")));
        let (status, bad) = app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["card.exploded"]})).await;
        assert_eq!((status, bad["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_events")));
        let (status, endpoint) = app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["*"]})).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}");
        let secret = endpoint["secret"].as_str().expect("secret").to_owned();
        assert!(secret.starts_with("whsec_"));
        let (_, listed) = app.get("/v1/webhook-endpoints").await;
        assert!(listed["data"][0].get("secret").is_none(), "the secret is shown once: {listed}");

        let (cardholder, source) = app.cardholder_with_funding("gi@example.com", "4242424242424242").await;
        app.purchase(&cardholder, &source, 2_000, 2_000, "pay_in_4").await;
        // Deliveries fail three times (the receiver is "down"), then succeed: attempts at 0 s, 5 s, 5 min, 30 min.
        app.advance(1).await;
        app.advance(2 * 3_600).await;
        let (_, events) = app.get("/v1/events?limit=100").await;
        let event_ids: std::collections::BTreeSet<String> =
            events["data"].as_array().expect("list").iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect();
        let requests = receiver.requests.lock().expect("lock").clone();
        let deliveries: Vec<Value> =
            requests.iter().map(|(body, headers)| json!({"body": body, "headers": headers})).collect();
        let verified =
            python::run("standardwebhooks_verify.py", &json!({"secret": secret, "deliveries": deliveries}).to_string());
        let verified: Vec<&str> = verified.lines().collect();
        assert!(verified.iter().all(|line| !line.starts_with("INVALID")), "{verified:?}");
        // Every event arrived; the ones that failed came again with the same id; each was accepted once.
        let delivered: std::collections::BTreeSet<String> = verified.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(delivered, event_ids);
        assert_eq!(requests.len(), event_ids.len() + 3);
        let (_, endpoints) = app.get("/v1/webhook-endpoints").await;
        assert_eq!(endpoints["data"][0]["status"], "enabled");
        let webhooks = app.jobs("webhook").await;
        assert!(webhooks.iter().all(|job| job["status"] == "done"), "{webhooks:?}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_recovers_exhausts_the_schedule_and_marks_the_endpoint_failing() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "webhooks_failing").await;
        let receiver = Receiver { failures: Arc::new(Mutex::new(usize::MAX)), ..Receiver::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
        let router = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let (status, endpoint) =
            app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["cardholder.none", "card.created"]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "unknown types are refused: {endpoint}");
        let (status, _) = app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["card.created"]})).await;
        assert_eq!(status, StatusCode::CREATED);
        let (cardholder, source) = app.cardholder_with_funding("hu@example.com", "4242424242424242").await;
        let (status, _) = app.card(&cardholder, &source, 2_000, "pay_in_4").await;
        assert_eq!(status, StatusCode::CREATED);
        // 0 s, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 27.6 hours for all eight attempts.
        app.advance(2 * DAY).await;
        assert_eq!(receiver.requests.lock().expect("lock").len(), 8, "only card.created, eight attempts");
        let (_, endpoints) = app.get("/v1/webhook-endpoints").await;
        assert_eq!(endpoints["data"][0]["status"], "failing");
        let (_, dead) = app.get("/v1/jobs?status=dead").await;
        let job = dead["data"][0].clone();
        assert_eq!((job["kind"].as_str(), job["attempts"].as_i64()), (Some("webhook"), Some(8)), "{dead}");
        // An operator retries the dead delivery once the receiver is back.
        *receiver.failures.lock().expect("lock") = 0;
        let (status, retried) =
            app.post(&format!("/v1/jobs/{}/retry", job["id"].as_str().expect("id")), json!({})).await;
        assert_eq!((status, retried["status"].as_str()), (StatusCode::OK, Some("pending")));
        app.advance(1).await;
        let (_, endpoints) = app.get("/v1/webhook-endpoints").await;
        assert_eq!(endpoints["data"][0]["status"], "enabled");
        assert_eq!(receiver.requests.lock().expect("lock").len(), 9);

        // A deleted endpoint gets nothing more; its pending deliveries end.
        let endpoint_id = endpoints["data"][0]["id"].as_str().expect("id").to_owned();
        *receiver.failures.lock().expect("lock") = 1;
        let (status, _) = app.card(&cardholder, &source, 1_500, "pay_in_4").await;
        assert_eq!(status, StatusCode::CREATED);
        app.advance(4).await;
        assert_eq!(receiver.requests.lock().expect("lock").len(), 10, "the first attempt failed; a retry is pending");
        let (status, deleted) =
            app.request(reqwest::Method::DELETE, &format!("/v1/webhook-endpoints/{endpoint_id}"), None, None).await;
        assert_eq!((status, deleted["status"].as_str()), (StatusCode::OK, Some("deleted")));
        let (status, _) = app.get(&format!("/v1/webhook-endpoints/{endpoint_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        app.advance(60).await;
        assert_eq!(receiver.requests.lock().expect("lock").len(), 10, "nothing delivered after the deletion");
        let (_, pending) = app.get("/v1/jobs?status=pending&kind=webhook").await;
        assert_eq!(pending["data"].as_array().map(Vec::len), Some(0), "{pending}");
    }
}

#[tokio::test]
async fn two_servers_on_one_postgresql_never_run_a_job_twice_and_a_dead_runners_jobs_are_taken_over() {
    let app = TestApp::spawn(common::Backend::Postgres, "two_runners").await;
    let other = ghostcard_server::App::start(app.app.config.clone()).await.expect("second server starts");
    let mut plans = Vec::new();
    for index in 0..12 {
        let (cardholder, source) =
            app.cardholder_with_funding(&format!("p{index}@example.com"), "4242424242424242").await;
        plans.push(app.purchase(&cardholder, &source, 2_000, 2_000, "pay_in_4").await.1);
    }
    // The sweep writes one collection job per plan (first installments are due at capture).
    let now = app.app.clock.now();
    let swept = ghostcard_server::jobs::sweep(&app.app, now).await.expect("sweeps");
    assert_eq!(swept.plans_swept, 12, "{swept:?}");
    // Both servers' runners drain the queue at once.
    let (first, second) = tokio::join!(
        ghostcard_server::runner::run_queue(&app.app, now),
        ghostcard_server::runner::run_queue(&other, now)
    );
    let ran = first.expect("runs") + second.expect("runs");
    let collections = app.jobs("installment_collection").await;
    assert_eq!(collections.len(), 12);
    assert!(collections.iter().all(|job| job["status"] == "done" && job["attempts"] == 1), "{collections:?}");
    assert!(ran >= 12, "every collection ran once between the two ({ran} jobs in all)");
    for plan in &plans {
        assert_eq!(installments(&app.plan(plan).await)[0].3, "paid");
    }

    // A runner that claims jobs and dies: its leases run out and another runner takes the jobs over, once.
    let (cardholder, source) = app.cardholder_with_funding("late@example.com", "4242424242424242").await;
    let (_, plan) = app.purchase(&cardholder, &source, 2_000, 2_000, "pay_in_4").await;
    let now = app.app.clock.now();
    ghostcard_server::jobs::sweep(&app.app, now).await.expect("sweeps");
    let collection = app.jobs("installment_collection").await.into_iter().find(|job| job["payload"]["plan_id"] == plan);
    let collection = collection.expect("a collection job");
    // Simulate the crash: claim the job for a runner that never finishes it.
    let mut tx = app.app.store.begin().await.expect("begins");
    let claimed = ghostcard_store::jobs::claim(&mut tx, "runner_dead", now, now + chrono::Duration::minutes(5), 100)
        .await
        .expect("claims");
    ghostcard_store::commit(tx).await.expect("commits");
    assert!(claimed.iter().any(|job| job.id == collection["id"].as_str().expect("id")));
    assert_eq!(ghostcard_server::runner::run_queue(&other, now).await.expect("runs"), 0, "leased: not taken");
    let later = now + chrono::Duration::minutes(6);
    ghostcard_server::runner::run_queue(&other, later).await.expect("runs");
    let (_, job) = app.get("/v1/jobs?kind=installment_collection&limit=100").await;
    let job =
        job["data"].as_array().expect("list").iter().find(|job| job["id"] == collection["id"]).cloned().expect("job");
    assert_eq!((job["status"].as_str(), job["attempts"].as_i64()), (Some("done"), Some(2)), "{job}");
    assert_eq!(installments(&app.plan(&plan).await)[0].3, "paid");
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn a_plan_unpaid_for_120_days_is_charged_off_and_the_account_restricted() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "charge_off").await;
        let (cardholder, source) = app.cardholder_with_funding("jo@example.com", "4000000000009995").await;
        let (_, plan_id) = app.purchase(&cardholder, &source, 2_000, 2_000, "pay_in_30").await;
        // Due on day 30, failed, retried on day 32, overdue; charged off 120 days after the due date.
        app.advance(149 * DAY).await;
        assert_eq!(app.plan(&plan_id).await["status"], "active");
        app.advance(2 * DAY).await;
        let plan = app.plan(&plan_id).await;
        assert_eq!(plan["status"], "charged_off", "{plan}");
        assert_eq!(installments(&plan)[0].3, "canceled");
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!((power["available"].as_i64(), power["restricted_reason"].is_null()), (Some(0), false), "{power}");
        assert!(app.event_types().await.contains(&"plan.charged_off".to_owned()));
        app.assert_ledger_verifies().await;
    }
}

/// A receiver that hangs on its first request (longer than the delivery timeout), then answers at once.
async fn hang_once(
    axum::extract::State(hung): axum::extract::State<Arc<Mutex<bool>>>,
    _body: String,
) -> axum::http::StatusCode {
    let first = !std::mem::replace(&mut *hung.lock().expect("lock"), true);
    if first {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    axum::http::StatusCode::OK
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_and_gets_the_event_again_with_the_same_id() {
    let app =
        TestApp::spawn_with(common::Backend::Sqlite, "webhooks_hang", |config| config.webhook_timeout_seconds = 1)
            .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
    let router =
        axum::Router::new().route("/hooks", axum::routing::post(hang_once)).with_state(Arc::new(Mutex::new(false)));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (status, _) = app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["card.created"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (cardholder, source) = app.cardholder_with_funding("ha@example.com", "4242424242424242").await;
    let (status, _) = app.card(&cardholder, &source, 2_000, "pay_in_4").await;
    assert_eq!(status, StatusCode::CREATED);
    let started = std::time::Instant::now();
    app.advance(4).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the timeout (1 s) ended the attempt, not the receiver"
    );
    let deliveries = app.jobs("webhook").await;
    assert_eq!((deliveries[0]["status"].as_str(), deliveries[0]["attempts"].as_i64()), (Some("pending"), Some(1)));
    assert!(deliveries[0]["last_error"].as_str().is_some_and(|error| error.contains("timed out")), "{deliveries:?}");
    app.advance(10).await;
    let deliveries = app.jobs("webhook").await;
    assert_eq!((deliveries[0]["status"].as_str(), deliveries[0]["attempts"].as_i64()), (Some("done"), Some(2)));
}

#[tokio::test]
async fn due_dates_are_calendar_dates_of_the_deployments_time_zone() {
    // UTC+14: the local date is a day ahead of UTC for most of the UTC day.
    let app = TestApp::spawn_with(common::Backend::Sqlite, "time_zone", |config| {
        config.time_zone = "Pacific/Kiritimati".to_owned();
    })
    .await;
    let bad = ghostcard_server::config::Config { time_zone: "Mars/Olympus_Mons".to_owned(), ..app.app.config.clone() };
    let error = ghostcard_server::App::start(bad).await.expect_err("an unknown time zone");
    assert!(error.to_string().contains("IANA"), "{error}");

    let (cardholder, source) = app.cardholder_with_funding("tz@example.com", "4242424242424242").await;
    let (_, plan_id) = app.purchase(&cardholder, &source, 4_000, 4_000, "pay_in_4").await;
    let local_today = app.app.clock.now().with_timezone(&chrono_tz::Pacific::Kiritimati).date_naive();
    let plan = app.plan(&plan_id).await;
    assert_eq!(installments(&plan)[0].0, local_today.to_string(), "{plan}");
    app.advance(1).await;
    // The second installment is collected from the start of its local due date: not a minute before.
    let due = chrono::NaiveDate::parse_from_str(&installments(&plan)[1].0, "%Y-%m-%d").expect("date");
    let starts = app.app.start_of(due);
    assert_eq!(starts.with_timezone(&chrono_tz::Pacific::Kiritimati).time(), chrono::NaiveTime::MIN);
    let until = (starts - app.app.clock.now()).num_seconds();
    app.advance(until - 60).await;
    assert_eq!(installments(&app.plan(&plan_id).await)[1].3, "scheduled");
    app.advance(120).await;
    assert_eq!(installments(&app.plan(&plan_id).await)[1].3, "paid");
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn a_charge_that_times_out_is_retried_with_the_same_reference_and_collected_once() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "gateway_timeout").await;
        // The sandbox card whose first charge times out (no answer, nothing charged).
        let (cardholder, source) = app.cardholder_with_funding("to@example.com", "4000000000000119").await;
        let (_, plan_id) = app.purchase(&cardholder, &source, 4_000, 4_000, "pay_in_4").await;
        app.advance(1).await;
        let collections = app.jobs("installment_collection").await;
        assert_eq!(collections.len(), 1);
        assert_eq!(
            (collections[0]["status"].as_str(), collections[0]["attempts"].as_i64()),
            (Some("pending"), Some(1))
        );
        assert!(
            collections[0]["last_error"].as_str().is_some_and(|error| error.contains("unavailable")),
            "{collections:?}"
        );
        assert_eq!(installments(&app.plan(&plan_id).await)[0].3, "scheduled", "a timeout is not a decline");
        // Retried after a minute: collected, once.
        app.advance(120).await;
        let collections = app.jobs("installment_collection").await;
        assert_eq!((collections[0]["status"].as_str(), collections[0]["attempts"].as_i64()), (Some("done"), Some(2)));
        let plan = app.plan(&plan_id).await;
        assert_eq!((installments(&plan)[0].2, installments(&plan)[0].3.as_str()), (1_000, "paid"));
        assert_eq!(plan["balance"], 3_000);
        app.assert_ledger_verifies().await;
    }
}
