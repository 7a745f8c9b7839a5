//! The REST API through real HTTP, against a server on port 0, on SQLite and on PostgreSQL. Every scenario ends
//! with a ledger verification.

mod common;

use std::sync::Arc;

use common::{BACKENDS, Backend, TEST_CVK, TEST_KEK, TestApp, log_buffer};
use ghostcard_domain::card_number::{CardNumber, Expiry};
use ghostcard_domain::cvv::Cvk;
use ghostcard_server::App;
use ghostcard_server::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_card_story_from_creation_to_refund_of_the_unused_amount() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "story").await;
        let (cardholder, source) = app.cardholder_with_funding("ada@example.com", "4242424242424242").await;
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!(
            (power["available"].as_i64(), power["limit"].as_i64(), power["currency"].as_str()),
            (Some(5_000), Some(5_000), Some("USD"))
        );
        assert_eq!(power["breakdown"]["base"], 5_000);

        let (status, card) = app.card(&cardholder, &source, 4_000, "pay_in_4").await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        assert_eq!(
            (card["status"].as_str(), card["remaining_amount"].as_i64(), card["plan_id"].clone()),
            (Some("active"), Some(4_000), Value::Null)
        );
        let card_id = card["id"].as_str().expect("id").to_owned();
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!((power["available"].as_i64(), power["outstanding"].as_i64()), (Some(1_000), Some(4_000)));

        // The reveal shows a number that matches the masked card and a CVV2 that verifies.
        let (status, revealed) = app.post(&format!("/v1/cards/{card_id}/reveal"), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        let number = CardNumber::parse(revealed["number"].as_str().expect("number")).expect("Luhn-valid");
        assert!(number.expose().starts_with("424242") && number.last4() == card["last4"].as_str().expect("last4"));
        let expiry = Expiry::new(
            revealed["exp_year"].as_u64().expect("year") as u16,
            revealed["exp_month"].as_u64().expect("month") as u8,
        )
        .expect("valid");
        let cvv = revealed["cvv"].as_str().expect("cvv");
        assert!(Cvk::from_hex(TEST_CVK).expect("key").verify_cvv2(&number, expiry, cvv));

        // First purchase approved; the card is used and bound; another merchant is declined.
        let approved = app.authorize(&card_id, 3_000, "SHOP1").await;
        assert_eq!(
            (approved["status"].as_str(), approved["response_code"].as_str(), approved["kind"].as_str()),
            (Some("approved"), Some("00"), Some("purchase"))
        );
        assert_eq!(approved["network"]["auth_code"].as_str().map(str::len), Some(6));
        let declined = app.authorize(&card_id, 500, "SHOP2").await;
        assert_eq!(
            (declined["response_code"].as_str(), declined["decline_reason"].as_str()),
            (Some("05"), Some("card_already_used"))
        );
        assert!(declined["decline_message"].as_str().is_some_and(|message| message.contains("already used")));
        let incremental = app.authorize(&card_id, 1_000, "SHOP1").await;
        assert_eq!(
            (incremental["response_code"].as_str(), incremental["kind"].as_str()),
            (Some("00"), Some("incremental"))
        );
        let too_much = app.authorize(&card_id, 1, "SHOP1").await;
        assert_eq!(too_much["decline_reason"], "exceeds_card_amount");

        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!(
            (card["status"].as_str(), card["held"].as_i64(), card["remaining_amount"].as_i64()),
            (Some("used"), Some(4_000), Some(0))
        );
        assert_eq!(card["merchant"]["id"], "SHOP1");
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={card_id}")).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(4));
        assert_eq!(list["has_more"], false);
        let (_, page) = app.get(&format!("/v1/authorizations?card_id={card_id}&limit=3")).await;
        assert_eq!((page["data"].as_array().map(Vec::len), page["has_more"].as_bool()), (Some(3), Some(true)));
        let last = page["data"][2]["id"].as_str().expect("id");
        let (_, rest) = app.get(&format!("/v1/authorizations?card_id={card_id}&limit=3&starting_after={last}")).await;
        assert_eq!((rest["data"].as_array().map(Vec::len), rest["has_more"].as_bool()), (Some(1), Some(false)));

        // A used card cannot be canceled.
        let (status, error) = app.post(&format!("/v1/cards/{card_id}/cancel"), json!({})).await;
        assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("card_not_cancelable")));
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn an_unused_card_can_be_canceled_or_refunded_and_releases_everything() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "cancel").await;
        let (cardholder, source) = app.cardholder_with_funding("bea@example.com", "4242424242424242").await;
        let (_, first) = app.card(&cardholder, &source, 1_500, "pay_now").await;
        let (status, canceled) =
            app.post(&format!("/v1/cards/{}/cancel", first["id"].as_str().expect("id")), json!({})).await;
        assert_eq!(
            (status, canceled["status"].as_str(), canceled["remaining_amount"].as_i64()),
            (StatusCode::OK, Some("canceled"), Some(0))
        );
        let (_, second) = app.card(&cardholder, &source, 2_000, "pay_in_30").await;
        let second_id = second["id"].as_str().expect("id");
        app.authorize(second_id, 1_200, "SHOP1").await;
        let (status, refunded) = app.post(&format!("/v1/cards/{second_id}/refund-unused"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{refunded}");
        assert_eq!(
            (refunded["amount"].as_i64(), refunded["held"].as_i64(), refunded["remaining_amount"].as_i64()),
            (Some(1_200), Some(1_200), Some(0))
        );
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!(power["available"], 5_000 - 1_200, "canceled and refunded amounts are available again");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn card_creation_refusals_come_with_their_codes_in_order() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "refusals").await;
        let (cardholder, source) = app.cardholder_with_funding("cy@example.com", "4242424242424242").await;
        let refusal =
            |response: (StatusCode, Value)| (response.0, response.1["error"]["code"].as_str().unwrap_or("").to_owned());
        assert_eq!(
            refusal(app.card(&cardholder, &source, 999, "pay_now").await),
            (StatusCode::UNPROCESSABLE_ENTITY, "amount_too_small".to_owned())
        );
        assert_eq!(
            refusal(app.card(&cardholder, &source, 5_001, "pay_now").await),
            (StatusCode::UNPROCESSABLE_ENTITY, "purchase_power_exceeded".to_owned())
        );
        for _ in 0..3 {
            assert_eq!(app.card(&cardholder, &source, 1_000, "pay_now").await.0, StatusCode::CREATED);
        }
        // A fourth card within the hour, even within purchase power.
        assert_eq!(
            refusal(app.card(&cardholder, &source, 1_000, "pay_now").await),
            (StatusCode::UNPROCESSABLE_ENTITY, "suspected_fraud".to_owned())
        );

        let (other, failing_source) = app.cardholder_with_funding("dee@example.com", "4000000000000341").await;
        assert_eq!(
            refusal(app.card(&other, &failing_source, 1_000, "pay_in_4").await),
            (StatusCode::UNPROCESSABLE_ENTITY, "funding_declined".to_owned())
        );
        assert_eq!(
            app.card(&other, &failing_source, 1_000, "pay_in_4").await.0,
            StatusCode::CREATED,
            "only the first hold fails"
        );

        let (status, declined_link) = app
            .post(
                &format!("/v1/cardholders/{other}/funding-sources"),
                json!({"number": "4000000000000002", "exp_month": 1, "exp_year": 2032}),
            )
            .await;
        assert_eq!(
            (status, declined_link["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("funding_declined"))
        );

        let mut tx = app.app.store.begin().await.expect("begins");
        ghostcard_store::cardholders::set_status(&mut tx, &other, "restricted", Some("operator review"))
            .await
            .expect("updates");
        ghostcard_store::commit(tx).await.expect("commits");
        assert_eq!(
            refusal(app.card(&other, &failing_source, 999, "pay_now").await).1,
            "amount_too_small",
            "the minimum comes first"
        );
        assert_eq!(
            refusal(app.card(&other, &failing_source, 1_000, "pay_now").await),
            (StatusCode::UNPROCESSABLE_ENTITY, "account_restricted".to_owned())
        );
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn idempotency_replays_refuses_a_different_body_and_lets_one_of_fifty_through() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "idempotency").await;
        let (cardholder, source) = app.cardholder_with_funding("eve@example.com", "4242424242424242").await;
        let body = json!({"cardholder_id": cardholder, "amount": 1_000, "currency": "USD", "funding_source_id": source, "plan": "pay_now"});
        let first = app.request(reqwest::Method::POST, "/v1/cards", Some(body.clone()), Some("card-1")).await;
        let again = app.request(reqwest::Method::POST, "/v1/cards", Some(body.clone()), Some("card-1")).await;
        assert_eq!(first.0, StatusCode::CREATED);
        assert_eq!(first, again, "the first response is replayed");
        let mut changed = body.clone();
        changed["amount"] = json!(1_001);
        let (status, error) = app.request(reqwest::Method::POST, "/v1/cards", Some(changed), Some("card-1")).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
        );

        // A refusal is replayed too, and changes nothing.
        let small = json!({"cardholder_id": cardholder, "amount": 5, "currency": "USD", "funding_source_id": source, "plan": "pay_now"});
        let refused = app.request(reqwest::Method::POST, "/v1/cards", Some(small.clone()), Some("small")).await;
        assert_eq!(refused, app.request(reqwest::Method::POST, "/v1/cards", Some(small), Some("small")).await);

        // Fifty concurrent requests with one key: exactly one card.
        let (second_holder, second_source) = app.cardholder_with_funding("fay@example.com", "4242424242424242").await;
        let body = json!({"cardholder_id": second_holder, "amount": 1_000, "currency": "USD", "funding_source_id": second_source, "plan": "pay_in_4"});
        let app = Arc::new(app);
        let mut requests = Vec::new();
        for _ in 0..50 {
            let (app, body) = (app.clone(), body.clone());
            requests.push(tokio::spawn(async move {
                app.request(reqwest::Method::POST, "/v1/cards", Some(body), Some("race")).await
            }));
        }
        let mut statuses = Vec::new();
        for request in requests {
            statuses.push(request.await.expect("task").0);
        }
        assert!(
            statuses.iter().all(|status| *status == StatusCode::CREATED || *status == StatusCode::CONFLICT),
            "{statuses:?}"
        );
        let (_, cards) = app.get(&format!("/v1/cards?cardholder_id={second_holder}")).await;
        assert_eq!(cards["data"].as_array().map(Vec::len), Some(1), "{statuses:?}");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn two_concurrent_authorizations_on_one_card_approve_once() {
    for backend in BACKENDS {
        let app = Arc::new(TestApp::spawn(backend, "race").await);
        let (cardholder, source) = app.cardholder_with_funding("gus@example.com", "4242424242424242").await;
        let (_, card) = app.card(&cardholder, &source, 4_000, "pay_now").await;
        let card_id = card["id"].as_str().expect("id").to_owned();
        let mut racers = Vec::new();
        for merchant in ["SHOP-A", "SHOP-B"] {
            let (app, card_id) = (app.clone(), card_id.clone());
            racers.push(tokio::spawn(async move { app.authorize(&card_id, 4_000, merchant).await }));
        }
        let mut codes = Vec::new();
        for racer in racers {
            codes.push(racer.await.expect("task")["response_code"].as_str().unwrap_or("").to_owned());
        }
        codes.sort();
        assert_eq!(codes[0], "00", "{codes:?}");
        assert_ne!(codes[1], "00", "{codes:?}");
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!((card["held"].as_i64(), card["remaining_amount"].as_i64()), (Some(4_000), Some(0)));
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "bad_input").await;
        let (cardholder, source) = app.cardholder_with_funding("hal@example.com", "4242424242424242").await;
        let transfers_before = app.assert_ledger_verifies().await;
        let raw = |body: &'static str| {
            let request = app
                .client
                .post(format!("{}/v1/cards", app.base))
                .bearer_auth(&app.key)
                .header("Content-Type", "application/json")
                .body(body);
            async move {
                let response = request.send().await.expect("sent");
                (response.status(), response.json::<Value>().await.expect("JSON error"))
            }
        };
        let code = |response: &(StatusCode, Value)| response.1["error"]["code"].as_str().unwrap_or("").to_owned();
        let malformed = raw("{\"amount\": ").await;
        assert_eq!((malformed.0, code(&malformed)), (StatusCode::BAD_REQUEST, "invalid_json".to_owned()));
        let huge = raw("{\"cardholder_id\": \"x\", \"amount\": 100000000000000000000000, \"currency\": \"USD\", \"funding_source_id\": \"x\", \"plan\": \"pay_now\"}").await;
        assert_eq!(
            (huge.0, code(&huge), huge.1["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, "invalid_field".to_owned(), Some("amount"))
        );

        let valid = json!({"cardholder_id": cardholder, "amount": 1_000, "currency": "USD", "funding_source_id": source, "plan": "pay_now"});
        let with = |field: &str, value: Value| {
            let mut body = valid.clone();
            body[field] = value;
            body
        };
        let mut unknown = valid.clone();
        unknown["colour"] = json!("red");
        let mut missing = valid.clone();
        missing.as_object_mut().expect("object").remove("plan");
        let cases = [
            (unknown, StatusCode::BAD_REQUEST, "unknown_field", Some("colour")),
            (missing, StatusCode::BAD_REQUEST, "missing_field", Some("plan")),
            (with("amount", json!("10.00")), StatusCode::BAD_REQUEST, "invalid_field", Some("amount")),
            (with("amount", json!(10.5)), StatusCode::BAD_REQUEST, "invalid_field", Some("amount")),
            (with("amount", json!(-100)), StatusCode::BAD_REQUEST, "invalid_amount", Some("amount")),
            (with("amount", json!(0)), StatusCode::BAD_REQUEST, "invalid_amount", Some("amount")),
            (with("currency", json!("XXX")), StatusCode::BAD_REQUEST, "invalid_currency", Some("currency")),
            (with("currency", json!("EUR")), StatusCode::BAD_REQUEST, "currency_not_supported", Some("currency")),
            (with("plan", json!("pay_in_5")), StatusCode::BAD_REQUEST, "invalid_plan", Some("plan")),
            (
                with("cardholder_id", json!("ch_unknown")),
                StatusCode::NOT_FOUND,
                "resource_missing",
                Some("cardholder_id"),
            ),
            (
                with("funding_source_id", json!("fs_01m8bx8392z0e5ra3k4t3p7ss5")),
                StatusCode::NOT_FOUND,
                "resource_missing",
                Some("funding_source_id"),
            ),
        ];
        for (body, status, expected, param) in cases {
            let response = app.post("/v1/cards", body.clone()).await;
            assert_eq!((response.0, code(&response)), (status, expected.to_owned()), "{body} → {}", response.1);
            assert_eq!(response.1["error"]["param"].as_str(), param, "{}", response.1);
            assert!(response.1["error"]["message"].as_str().is_some_and(|message| !message.is_empty()));
        }
        // Someone else's funding source.
        let (_, other_source) = app.cardholder_with_funding("ida@example.com", "4242424242424242").await;
        let response = app.post("/v1/cards", with("funding_source_id", json!(other_source))).await;
        assert_eq!((response.0, code(&response)), (StatusCode::NOT_FOUND, "resource_missing".to_owned()));

        let oversized = app
            .client
            .post(format!("{}/v1/cards", app.base))
            .bearer_auth(&app.key)
            .header("Content-Type", "application/json")
            .body(format!("{{\"plan\": \"{}\"}}", "x".repeat(100_000)))
            .send()
            .await
            .expect("sent");
        assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
        for key in [None, Some("gc_sk_wrong")] {
            let mut request = app.client.get(format!("{}/v1/cards", app.base));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.expect("sent");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        let (status, body) = app.get("/v1/cards/card_nonexistent").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("resource_missing")));
        let (status, body) = app.get("/v1/cards?limit=101").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_limit")));
        let (status, body) =
            app.post("/v1/cardholders", json!({"email": "not-an-email", "name": "X", "country": "US"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_email")));
        let (status, body) =
            app.post("/v1/cardholders", json!({"email": "hal@example.com", "name": "Hal", "country": "US"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("email_taken")));

        // Nothing above wrote a card or a ledger transfer.
        let (_, cards) = app.get(&format!("/v1/cards?cardholder_id={cardholder}")).await;
        assert_eq!(cards["data"].as_array().map(Vec::len), Some(0));
        assert_eq!(app.assert_ledger_verifies().await, transfers_before);
    }
}

#[tokio::test]
async fn every_documented_operation_is_a_real_route() {
    let app = TestApp::spawn(Backend::Sqlite, "openapi").await;
    let document: Value =
        app.client.get(format!("{}/openapi.json", app.base)).send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for expected in [
        "/v1/cards",
        "/v1/cards/{id}/reveal",
        "/v1/simulate/authorize",
        "/v1/ledger/verify",
        "/v1/cardholders/{id}/purchase-power",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let concrete = path.replace("{id}", "ch_unknown");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = (method == reqwest::Method::POST).then(|| json!({}));
            let (status, response) = app.request(method.clone(), &concrete, body, None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(response["error"]["code"], "route_not_found", "{method} {path} is documented but not routed");
        }
    }
    let (status, response) = app.get("/v1/nothing-here").await;
    assert_eq!((status, response["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("route_not_found")));
}

#[tokio::test]
async fn no_card_number_or_cvv_reaches_the_log_and_the_reveal_is_audited() {
    let app = TestApp::spawn(Backend::Sqlite, "logging").await;
    let (cardholder, source) = app.cardholder_with_funding("jo@example.com", "4242424242424242").await;
    let (_, card) = app.card(&cardholder, &source, 2_000, "pay_in_4").await;
    let card_id = card["id"].as_str().expect("id");
    let (_, revealed) = app.post(&format!("/v1/cards/{card_id}/reveal"), json!({})).await;
    app.authorize(card_id, 1_500, "SHOP1").await;
    app.post("/v1/cards", json!({"cardholder_id": cardholder, "amount": "4242424242424242"})).await;
    let number = revealed["number"].as_str().expect("number").to_owned();
    let cvv = revealed["cvv"].as_str().expect("cvv").to_owned();
    let log = String::from_utf8_lossy(&log_buffer().lock().expect("log").clone()).to_string();
    assert!(log.contains("authorization decided"), "the scenario was logged at all");
    assert!(!log.contains(&number), "a full card number reached the log");
    assert!(!log.contains("4242424242424242"), "a funding card number reached the log");
    // The CVV as a value of its own: `elapsed=132.6ms`, which sqlx logs for a slow statement, is no CVV.
    let leaked = |pattern: &str| {
        log.match_indices(pattern)
            .any(|(at, _)| !log[at + pattern.len()..].starts_with(|next: char| next.is_ascii_digit() || next == '.'))
    };
    for pattern in [format!("={cvv}"), format!("\"{cvv}\""), format!(": {cvv}"), format!("cvv {cvv}")] {
        assert!(!leaked(&pattern), "the CVV reached the log as {pattern:?}");
    }
    let mut tx = app.app.store.read().await.expect("reads");
    let reveals = ghostcard_store::audit::list(&mut tx, Some("card.reveal"), 10).await.expect("audit");
    assert_eq!(reveals.rows.len(), 1);
    assert_eq!(reveals.rows[0].resource.as_deref(), Some(card_id));
    assert!(reveals.rows[0].actor.starts_with("api_key:"));
}

#[tokio::test]
async fn clearing_creates_the_plan_and_refunds_and_reversals_flow_back() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "clearing").await;
        let (cardholder, source) = app.cardholder_with_funding("kim@example.com", "4242424242424242").await;
        let (_, card) = app.card(&cardholder, &source, 4_000, "pay_in_4").await;
        let card_id = card["id"].as_str().expect("id").to_owned();
        let authorization = app.authorize(&card_id, 4_000, "SHOP1").await;
        let authorization_id = authorization["id"].as_str().expect("id").to_owned();

        // A capture below the authorization: the plan exists when the call returns; the rest stays held.
        let (status, cleared) =
            app.post("/v1/simulate/clear", json!({"authorization_id": authorization_id, "amount": 3_001})).await;
        assert_eq!((status, cleared["result"].as_str()), (StatusCode::OK, Some("posted")), "{cleared}");
        let plan_id = cleared["plan_id"].as_str().expect("plan").to_owned();
        let (_, plan) = app.get(&format!("/v1/plans/{plan_id}")).await;
        let amounts: Vec<i64> = plan["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|i| i["amount"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(amounts, vec![751, 750, 750, 750]);
        assert_eq!(
            (plan["kind"].as_str(), plan["principal"].as_i64(), plan["status"].as_str()),
            (Some("pay_in_4"), Some(3_001), Some("active"))
        );
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!(
            (card["held"].as_i64(), card["captured"].as_i64(), card["plan_id"].as_str()),
            (Some(999), Some(3_001), Some(plan_id.as_str()))
        );
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!(power["outstanding"], 3_001, "the card now counts through its plan");

        // A merchant refund lowers the installments evenly.
        let (status, refunded) = app.post("/v1/simulate/refund", json!({"card_id": card_id, "amount": 1_000})).await;
        assert_eq!((status, refunded["result"].as_str()), (StatusCode::OK, Some("posted")), "{refunded}");
        let (_, plan) = app.get(&format!("/v1/plans/{plan_id}")).await;
        let amounts: Vec<i64> = plan["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|i| i["amount"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(amounts, vec![501, 500, 500, 500]);

        // Reversing the rest of the hold, twice: the second changes nothing.
        let (status, reversed) = app.post("/v1/simulate/reverse", json!({"authorization_id": authorization_id})).await;
        assert_eq!(
            (status, reversed["status"].as_str(), reversed["held"].as_i64()),
            (StatusCode::OK, Some("partially_reversed"), Some(0))
        );
        let (_, again) = app.post("/v1/simulate/reverse", json!({"authorization_id": authorization_id})).await;
        assert_eq!(again["held"], 0);
        let (status, refunded_unused) = app.post(&format!("/v1/cards/{card_id}/refund-unused"), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (refunded_unused["status"].as_str(), refunded_unused["amount"].as_i64()),
            (Some("closed"), Some(2_001))
        );

        // A merchant refund on the closed card still flows back.
        let (status, late_refund) = app.post("/v1/simulate/refund", json!({"card_id": card_id, "amount": 500})).await;
        assert_eq!((status, late_refund["result"].as_str()), (StatusCode::OK, Some("posted")));
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!(card["remaining_amount"], 0, "a closed card does not get spending room back");

        // A full reversal of the only approval inside the window makes the card usable again, anywhere.
        let (_, second) = app.card(&cardholder, &source, 1_500, "pay_now").await;
        let second_id = second["id"].as_str().expect("id");
        let first_use = app.authorize(second_id, 1_500, "SHOP1").await;
        let (_, reversed) = app.post("/v1/simulate/reverse", json!({"authorization_id": first_use["id"]})).await;
        assert_eq!(reversed["status"], "reversed");
        let (_, second) = app.get(&format!("/v1/cards/{second_id}")).await;
        assert_eq!((second["status"].as_str(), second["merchant"].clone()), (Some("active"), Value::Null));
        assert_eq!(app.authorize(second_id, 1_500, "SHOP2").await["response_code"], "00");

        // A declined authorization has nothing to reverse.
        let declined = app.authorize(second_id, 1, "SHOP3").await;
        let (status, error) = app.post("/v1/simulate/reverse", json!({"authorization_id": declined["id"]})).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("authorization_not_reversible"))
        );
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn two_servers_on_one_postgresql_never_both_approve_a_card() {
    let first = TestApp::spawn(Backend::Postgres, "two_servers").await;
    // A second server process's worth of state: its own App and pool on the same database.
    let config = Config { database_url: first.app.config.database_url.clone(), ..first.app.config.clone() };
    let second_app = App::start(config).await.expect("second server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let second_base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(ghostcard_server::serve(second_app, listener, std::future::pending()));
    let (cardholder, source) = first.cardholder_with_funding("lou@example.com", "4242424242424242").await;
    for round in 0..5 {
        let (status, card) = first.card(&cardholder, &source, 1_000, "pay_now").await;
        if status != StatusCode::CREATED {
            // The card-creation velocity rule allows 3 an hour.
            assert_eq!(card["error"]["code"], "suspected_fraud", "{card}");
            break;
        }
        let card_id = card["id"].as_str().expect("id").to_owned();
        let body =
            |merchant: &str| json!({"card_id": card_id, "amount": 1_000, "mcc": "5732", "merchant_id": merchant});
        let client = reqwest::Client::new();
        let requests = [(first.base.clone(), "SHOP-A"), (second_base.clone(), "SHOP-B")].map(|(base, merchant)| {
            client.post(format!("{base}/v1/simulate/authorize")).bearer_auth(&first.key).json(&body(merchant)).send()
        });
        let [a, b] = requests;
        let (a, b) = tokio::join!(a, b);
        let mut codes = Vec::new();
        for response in [a, b] {
            let value: Value = response.expect("sent").json().await.expect("JSON");
            codes.push(value["response_code"].as_str().unwrap_or("").to_owned());
        }
        assert_eq!(codes.iter().filter(|code| *code == "00").count(), 1, "round {round}: {codes:?}");
    }
    first.assert_ledger_verifies().await;
}

#[tokio::test]
async fn metrics_count_requests_and_authorizations() {
    let app = TestApp::spawn(Backend::Sqlite, "metrics").await;
    let (cardholder, source) = app.cardholder_with_funding("max@example.com", "4242424242424242").await;
    let (_, card) = app.card(&cardholder, &source, 1_000, "pay_now").await;
    app.authorize(card["id"].as_str().expect("id"), 1_000, "SHOP1").await;
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(
        text.contains("ghostcard_http_requests_total{method=\"POST\",route=\"/v1/cards\",status=\"201\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ghostcard_http_request_duration_seconds_count{route=\"/v1/simulate/authorize\"} 1"),
        "{text}"
    );
    assert!(text.contains("ghostcard_authorizations_total{response_code=\"00\"} 1"), "{text}");
    for (path, expected) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let response = app.client.get(format!("{}{path}", app.base)).send().await.expect("sent");
        assert_eq!((response.status(), response.text().await.expect("text")), (StatusCode::OK, expected.to_owned()));
    }
}

#[tokio::test]
async fn rotated_keys_keep_old_cards_readable_and_new_cards_use_the_new_key() {
    use ghostcard_server::vault::{self, Kek};
    let app = TestApp::spawn(Backend::Sqlite, "rotation").await;
    let (cardholder, source) = app.cardholder_with_funding("ned@example.com", "4242424242424242").await;
    let (_, old_card) = app.card(&cardholder, &source, 1_000, "pay_now").await;
    let (_, before) = app.post(&format!("/v1/cards/{}/reveal", old_card["id"].as_str().expect("id")), json!({})).await;

    let old_kek = Kek::from_hex(TEST_KEK).expect("valid");
    let new_kek_hex = "ff".repeat(32);
    let new_kek = Kek::from_hex(&new_kek_hex).expect("valid");
    let now = app.app.clock.now();
    assert_eq!(vault::add_encryption_key(&app.app.store, &old_kek, now, &mut rand::rng()).await.expect("rotates"), 2);
    // Two card-number keys, the lookup key and the CVK.
    assert_eq!(vault::rewrap(&app.app.store, &old_kek, &new_kek, now, &mut rand::rng()).await.expect("re-wraps"), 4);

    // A server restarted with only the new KEK.
    let config = Config { kek: Some(new_kek_hex), ..app.app.config.clone() };
    let restarted = App::start(config).await.expect("starts with the new KEK");
    assert_eq!(restarted.vault.current_version(), 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(ghostcard_server::serve(restarted.clone(), listener, std::future::pending()));
    let client = reqwest::Client::new();
    let after: Value = client
        .post(format!("{base}/v1/cards/{}/reveal", old_card["id"].as_str().expect("id")))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(before, after, "the old card reads the same under the new KEK");
    let mut tx = restarted.store.read().await.expect("reads");
    let page = ghostcard_store::cards::list(&mut tx, Some(&cardholder), None, 10, None).await.expect("lists");
    assert_eq!(page.rows[0].data_key_version, 1);

    // A KEK the database never saw is refused with a message that says what to do.
    let wrong = Config { kek: Some("11".repeat(32)), ..app.app.config.clone() };
    let error = App::start(wrong).await.expect_err("wrong KEK");
    assert!(error.to_string().contains("wrapped by another KEK"), "{error}");
}

#[tokio::test]
async fn live_mode_needs_its_keys_and_has_no_sandbox() {
    let sandbox = TestApp::spawn(Backend::Sqlite, "live").await;
    let live = Config { mode: ghostcard_server::config::Mode::Live, kek: None, ..sandbox.app.config.clone() };
    let error = App::start(live.clone()).await.expect_err("no KEK");
    assert!(error.to_string().contains("GHOSTCARD_KEK"), "{error}");
    let error =
        App::start(Config { kek: Some(TEST_KEK.to_owned()), cvk: None, ..live.clone() }).await.expect_err("no CVK");
    assert!(error.to_string().contains("GHOSTCARD_CVK"), "{error}");
    let app = App::start(Config { kek: Some(TEST_KEK.to_owned()), ..live }).await.expect("starts with both keys");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(ghostcard_server::serve(app, listener, std::future::pending()));
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/simulate/clock/advance"))
        .bearer_auth(&sandbox.key)
        .json(&json!({"seconds": 60}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "sandbox_only");
}

#[tokio::test]
async fn the_sandbox_clock_runs_card_and_hold_expiry() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "expiry").await;
        let (cardholder, source) = app.cardholder_with_funding("exp@example.com", "4242424242424242").await;
        let (_, unused) = app.card(&cardholder, &source, 1_500, "pay_now").await;
        let unused_id = unused["id"].as_str().expect("id");
        // A micro-authorization holds 0.50 without using the card.
        assert_eq!(app.authorize(unused_id, 50, "SHOP0").await["response_code"], "00");
        let (_, used) = app.card(&cardholder, &source, 1_500, "pay_now").await;
        let used_id = used["id"].as_str().expect("id");
        let purchase = app.authorize(used_id, 1_500, "SHOP1").await;
        let (_, hotel) = app.card(&cardholder, &source, 1_500, "pay_now").await;
        let hotel_id = hotel["id"].as_str().expect("id");
        let (_, booking) = app
            .post(
                "/v1/simulate/authorize",
                json!({"card_id": hotel_id, "amount": 1_500, "mcc": "7011", "merchant_id": "HOTEL1", "country": "US"}),
            )
            .await;
        assert_eq!(booking["response_code"], "00");

        // 24 hours: the unused card expires and releases its hold and amount.
        let (status, clock) = app.post("/v1/simulate/clock/advance", json!({"seconds": 86_400})).await;
        assert_eq!(status, StatusCode::OK, "{clock}");
        assert_eq!(clock["jobs"]["cards_expired"], 1);
        let (_, unused) = app.get(&format!("/v1/cards/{unused_id}")).await;
        assert_eq!(
            (unused["status"].as_str(), unused["held"].as_i64(), unused["remaining_amount"].as_i64()),
            (Some("expired"), Some(0), Some(0))
        );

        // 7 days: the uncaptured purchase hold is released and the card closes; the hotel hold stays (31 days).
        let (_, clock) = app.post("/v1/simulate/clock/advance", json!({"seconds": 6 * 86_400})).await;
        assert_eq!(clock["jobs"]["holds_expired"], 1);
        let (_, used) = app.get(&format!("/v1/cards/{used_id}")).await;
        assert_eq!(
            (used["status"].as_str(), used["held"].as_i64(), used["remaining_amount"].as_i64()),
            (Some("closed"), Some(0), Some(0))
        );
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={used_id}")).await;
        assert_eq!(list["data"][0]["id"], purchase["id"]);
        assert_eq!(list["data"][0]["status"], "expired");
        let (_, hotel) = app.get(&format!("/v1/cards/{hotel_id}")).await;
        assert_eq!(hotel["held"], 1_500);

        let (_, clock) = app.post("/v1/simulate/clock/advance", json!({"seconds": 24 * 86_400})).await;
        assert_eq!(clock["jobs"]["holds_expired"], 1);
        let (_, hotel) = app.get(&format!("/v1/cards/{hotel_id}")).await;
        assert_eq!((hotel["status"].as_str(), hotel["held"].as_i64()), (Some("closed"), Some(0)));
        let (_, power) = app.get(&format!("/v1/cardholders/{cardholder}/purchase-power")).await;
        assert_eq!(power["outstanding"], 0, "nothing is held for expired and closed cards");
        // Nothing is due twice.
        let (_, clock) = app.post("/v1/simulate/clock/advance", json!({"seconds": 60})).await;
        assert_eq!(
            (clock["jobs"]["cards_expired"].as_u64(), clock["jobs"]["holds_expired"].as_u64()),
            (Some(0), Some(0))
        );
        app.assert_ledger_verifies().await;
    }
}
