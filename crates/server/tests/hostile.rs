//! ghostcard as an attacker tries it: card data sent in the wrong places, control characters, hostile connections
//! and unauthenticated floods. Each test reproduces a finding of the hardening review (issue 19) and asserts that
//! the answer is a clear error and that nothing is kept or broken, on SQLite and PostgreSQL where storage is
//! involved.

mod common;

use common::{BACKENDS, TestApp};
use ghostcard_store::scratch::tables_containing;
use reqwest::StatusCode;
use serde_json::{Value, json};

const NUMBER: &str = "4111111111111111";

/// Sends `body` as raw JSON text to `path` with an idempotency key, and returns status and body text.
async fn post_raw(app: &TestApp, path: &str, body: &str, key: &str) -> (StatusCode, String) {
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent");
    (response.status(), response.text().await.expect("body"))
}

#[tokio::test]
async fn card_data_sent_in_the_wrong_shape_is_neither_echoed_nor_kept() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "hostile_echo").await;
        let (cardholder, source) = app.cardholder_with_funding("eve@example.com", "4242424242424242").await;
        let sources = format!("/v1/cardholders/{cardholder}/funding-sources");
        let cases: Vec<(String, String)> = vec![
            (
                sources.clone(),
                format!("{{\"number\": {NUMBER}, \"exp_month\": 12, \"exp_year\": 2031, \"cvc\": \"123\"}}"),
            ),
            (sources.clone(), format!("{{\"number\": {NUMBER}.0, \"exp_month\": 12, \"exp_year\": 2031}}")),
            (sources.clone(), format!("{{\"number\": [\"{NUMBER}\"], \"exp_month\": 12, \"exp_year\": 2031}}")),
            (
                sources.clone(),
                format!("{{\"number\": \"4242424242424242\", \"exp_month\": \"{NUMBER}\", \"exp_year\": 2031}}"),
            ),
            (
                sources.clone(),
                format!(
                    "{{\"number\": \"4242424242424242\", \"exp_month\": 12, \"exp_year\": 2031, \"cvc\": 98765{NUMBER}}}"
                ),
            ),
            (sources.clone(), format!("{{\"{NUMBER}\": \"x\"}}")),
            (
                sources.clone(),
                "{\"number\": \"4111 1111 1111 1111\", \"exp_month\": 12, \"exp_year\": 2031}".to_owned(),
            ),
            (
                "/v1/network/clearings".to_owned(),
                format!(
                    "{{\"records\": [{{\"id\": \"r1\", \"type\": \"force_post\", \"number\": {NUMBER}, \"amount\": 100, \"currency\": \"USD\"}}]}}"
                ),
            ),
            (
                "/v1/network/clearings".to_owned(),
                format!(
                    "{{\"records\": [{{\"id\": \"r1\", \"type\": \"refund\", \"amount\": \"{NUMBER}\", \"currency\": \"USD\"}}]}}"
                ),
            ),
            (
                "/v1/cards".to_owned(),
                format!(
                    "{{\"cardholder_id\": \"{cardholder}\", \"amount\": 1000, \"currency\": \"USD\", \"funding_source_id\": \"{source}\", \"plan\": \"{NUMBER}\"}}"
                ),
            ),
            (
                "/v1/cards".to_owned(),
                format!(
                    "{{\"cardholder_id\": {NUMBER}, \"amount\": 1000, \"currency\": \"USD\", \"funding_source_id\": \"{source}\", \"plan\": \"pay_now\"}}"
                ),
            ),
            (
                "/v1/webhook-endpoints".to_owned(),
                format!("{{\"url\": \"https://example.com/\", \"events\": [\"{NUMBER}\"]}}"),
            ),
            (format!("/v1/cards/{NUMBER}/cancel"), "{}".to_owned()),
            (format!("/v1/cards/card_{NUMBER}/cancel"), "{}".to_owned()),
        ];
        for (index, (path, body)) in cases.iter().enumerate() {
            let key = format!("hostile-{index}");
            let (status, first) = post_raw(&app, path, body, &key).await;
            assert!(status.is_client_error(), "{path} {body} → {status} {first}");
            assert!(!first.contains(NUMBER) && !first.contains("4111 1111"), "{path} {body} echoed: {first}");
            let error: Value = serde_json::from_str(&first).expect("a JSON error");
            assert!(error["error"]["message"].as_str().is_some_and(|message| !message.is_empty()), "{first}");
            // The replay is the stored answer: the same, and just as clean.
            let (replayed_status, replayed) = post_raw(&app, path, body, &key).await;
            assert_eq!((replayed_status, &replayed), (status, &first), "{path} {body}");
        }
        assert_eq!(tables_containing(&app.app.store, NUMBER).await.expect("scans"), Vec::<String>::new());
        assert_eq!(tables_containing(&app.app.store, "4111 1111").await.expect("scans"), Vec::<String>::new());
        // The message still says what was wrong, without the value.
        let (_, answer) = post_raw(&app, &sources, &cases[0].1, "another").await;
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(answer["error"]["param"], "number");
        assert_eq!(answer["error"]["message"], "invalid type: integer, expected a string");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn idempotency_records_are_purged_after_a_day() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "hostile_purge").await;
        let (status, _) = post_raw(&app, "/v1/cardholders", "{\"email\": \"x\"}", "old-key").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(tables_containing(&app.app.store, "old-key").await.expect("scans"), vec!["idempotency_keys"]);
        let (status, _) = app.post("/v1/simulate/clock/advance", json!({"seconds": 23 * 3600})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(tables_containing(&app.app.store, "old-key").await.expect("scans"), vec!["idempotency_keys"]);
        let (status, report) = app.post("/v1/simulate/clock/advance", json!({"seconds": 3600})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(tables_containing(&app.app.store, "old-key").await.expect("scans"), Vec::<String>::new());
    }
}

#[tokio::test]
async fn control_characters_are_a_clear_400_on_both_databases() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "hostile_nul").await;
        let (cardholder, _) = app.cardholder_with_funding("nul@example.com", "4242424242424242").await;
        let bodies = [
            ("/v1/cardholders", json!({"email": "a\u{0}@example.com", "name": "A", "country": "US"})),
            ("/v1/cardholders", json!({"email": "b@example.com", "name": "B\u{0}", "country": "US"})),
            ("/v1/cardholders", json!({"email": "c@example.com", "name": "C\u{1b}[31m", "country": "US"})),
            ("/v1/cardholders", json!({"email": "d@example.com", "name": "D\u{85}", "country": "US"})),
            ("/v1/cardholders", json!({"email": "e@example.com", "name": "E", "country": "U\u{0}"})),
            (
                "/v1/cardholders",
                json!({"email": "f@example.com", "name": "F", "password": "0123456789\u{0}", "country": "US"}),
            ),
            (
                "/v1/network/clearings",
                json!({"records": [{"id": "r\u{0}1", "type": "capture", "amount": 100, "currency": "USD"}]}),
            ),
            ("/v1/webhook-endpoints", json!({"url": "https://example.com/\u{0}", "events": ["*"]})),
        ];
        for (path, body) in bodies {
            let (status, answer) = app.post(path, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body} → {answer}");
            assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
        }
        assert_eq!(
            app.post(
                "/v1/network/clearings",
                json!({"records": [{"id": "r\u{0}1", "type": "capture", "amount": 1, "currency": "USD"}]})
            )
            .await
            .1["error"]["param"],
            "records[0].id"
        );
        for path in [
            "/v1/cards?cardholder_id=%00",
            "/v1/cards?status=active%00",
            "/v1/events?type=%00",
            "/v1/authorizations?card_id=a%00b",
            "/v1/cards/card_%00",
            "/v1/cardholders/%01x",
            "/v1/jobs?status=%1b",
        ] {
            let (status, answer) = app.get(path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} → {answer}");
            assert_eq!(answer["error"]["code"], "invalid_request", "{path} → {answer}");
        }
        // Without authentication: the web app's forms.
        for (path, form) in [
            ("/app/sign-in", "email=a%00%40example.com&password=x&csrf=x"),
            ("/app/sign-up", "email=a%40example.com&name=A%00&password=0123456789&csrf=x"),
            ("/ops/sign-in", "email=%00&password=%00&csrf=x"),
        ] {
            let response = app
                .client
                .post(format!("{}{path}", app.base))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} {form}");
            assert!(response.text().await.expect("page").contains("control characters"));
        }
        let (status, _) = app.get(&format!("/v1/cardholders/{cardholder}")).await;
        assert_eq!(status, StatusCode::OK, "the server still serves");
        let (_, list) = app.get("/v1/cards").await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    }
}
