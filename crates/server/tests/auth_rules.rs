//! The issuer's authorization rules over the REST API and real ISO 8583, on SQLite and PostgreSQL: conditions and
//! velocity limits, scopes, shadow and active modes, versions, the report and backtests (docs/reference/behaviour.md,
//! "Rules the issuer controls").

mod common;

use std::time::{Duration, Instant};

use common::iso::{Card, Network, new_card, purchase};
use common::{BACKENDS, Backend, TestApp};
use ghostcard_iso8583::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A purchase of `amount` at merchant `merchant` of category `mcc`.
fn at(card: &Card, amount: i64, stan: u32, merchant: &str, mcc: &str) -> Message {
    let mut message = purchase(card, amount, stan, merchant);
    message.set(18, mcc);
    message
}

async fn create_rule(app: &TestApp, body: Value) -> Value {
    let (status, rule) = app.post("/v1/auth-rules", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body} → {rule}");
    rule
}

/// The newest authorization of the card.
async fn newest(app: &TestApp, card: &Card) -> Value {
    let (_, list) = app.get(&format!("/v1/authorizations?card_id={}", card.id)).await;
    list["data"][0].clone()
}

fn result_of<'a>(authorization: &'a Value, rule: &Value) -> Option<&'a Value> {
    authorization["rule_results"].as_array()?.iter().find(|result| result["rule_id"] == rule["id"])
}

#[tokio::test]
async fn active_rules_decline_05_shadow_rules_only_record_and_every_version_is_kept() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "rules_modes").await;
        let mut network = Network::connect(&app).await;
        let big_electronics = create_rule(
            &app,
            json!({"name": "Big electronics", "mode": "active", "scope": {"program": true}, "conditions": [
                {"attribute": "mcc", "operation": "is_one_of", "value": ["5999"]},
                {"attribute": "amount", "operation": "is_greater_than", "value": 2_000}]}),
        )
        .await;
        assert!(big_electronics["id"].as_str().is_some_and(|id| id.starts_with("rule_")), "{big_electronics}");
        assert_eq!((big_electronics["version"].as_i64(), big_electronics["mode"].as_str()), (Some(1), Some("active")));
        let watch_shop2 = create_rule(
            &app,
            json!({"name": "Watch SHOP2", "mode": "shadow", "scope": {"program": true}, "conditions": [
                {"attribute": "merchant_id", "operation": "is_one_of", "value": ["SHOP2"]}]}),
        )
        .await;

        // In effect at once: 05 `auth_rule`, the rule named; then an approval the shadow rule would have declined.
        let (_, card) = new_card(&app, "rules@example.com", 5_000, "pay_in_4").await;
        assert_eq!(network.exchange(&at(&card, 3_000, 1, "SHOP1", "5999")).await.get(39), Some("05"));
        let declined = newest(&app, &card).await;
        assert_eq!(declined["decline_reason"], "auth_rule", "{declined}");
        assert_eq!(declined["rule"], big_electronics["id"]);
        assert_eq!(declined["decided_by"], "ghostcard");
        let result = result_of(&declined, &big_electronics).expect("the active rule ran");
        assert_eq!(
            result,
            &json!({"rule_id": big_electronics["id"], "version": 1, "mode": "active", "result": "decline"})
        );
        assert_eq!(result_of(&declined, &watch_shop2).expect("the shadow rule ran")["result"], "pass");
        assert_eq!(network.exchange(&at(&card, 1_000, 2, "SHOP2", "5411")).await.get(39), Some("00"));
        let approved = newest(&app, &card).await;
        assert_eq!(result_of(&approved, &watch_shop2).expect("ran")["result"], "would_decline", "{approved}");
        assert_eq!(result_of(&approved, &big_electronics).expect("ran")["result"], "pass");

        // The reports count what each did.
        let (status, report) =
            app.get(&format!("/v1/auth-rules/{}/report", watch_shop2["id"].as_str().expect("id"))).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report, json!({"evaluated": 2, "would_decline": 1, "declined": 0, "sample": [approved["id"]]}));
        let (_, report) =
            app.get(&format!("/v1/auth-rules/{}/report", big_electronics["id"].as_str().expect("id"))).await;
        assert_eq!((report["evaluated"].as_u64(), report["declined"].as_u64()), (Some(2), Some(1)), "{report}");

        // Declines by a rule never freeze a card; an advice is never declined by one.
        let (_, other) = new_card(&app, "many@example.com", 5_000, "pay_now").await;
        for stan in 10..16 {
            assert_eq!(network.exchange(&at(&other, 3_000, stan, "SHOP1", "5999")).await.get(39), Some("05"));
        }
        let mut advice = at(&other, 3_000, 16, "SHOP1", "5999");
        advice.set_mti("0120");
        assert_eq!(network.exchange(&advice).await.get(39), Some("00"));
        let (_, other_card) = app.get(&format!("/v1/cards/{}", other.id)).await;
        assert_eq!(other_card["status"], "used", "six rule declines froze nothing: {other_card}");

        // A change makes a new version, in force at once; every version is kept; DELETE disables.
        let rule_path = format!("/v1/auth-rules/{}", big_electronics["id"].as_str().expect("id"));
        let (status, shadowed) = app.post(&rule_path, json!({"mode": "shadow"})).await;
        assert_eq!(
            (status, shadowed["version"].as_i64(), shadowed["mode"].as_str()),
            (StatusCode::OK, Some(2), Some("shadow"))
        );
        assert_eq!(shadowed["conditions"], big_electronics["conditions"], "the rest is kept");
        let (_, third) = new_card(&app, "third@example.com", 5_000, "pay_now").await;
        assert_eq!(network.exchange(&at(&third, 3_000, 20, "SHOP1", "5999")).await.get(39), Some("00"));
        let shadowed_result = newest(&app, &third).await;
        assert_eq!(
            result_of(&shadowed_result, &big_electronics),
            Some(&json!({"rule_id": big_electronics["id"], "version": 2, "mode": "shadow", "result": "would_decline"}))
        );
        let (status, disabled) = app.request(reqwest::Method::DELETE, &rule_path, None, None).await;
        assert_eq!(
            (status, disabled["mode"].as_str(), disabled["version"].as_i64()),
            (StatusCode::OK, Some("disabled"), Some(3))
        );
        let (_, versions) = app.get(&format!("{rule_path}/versions")).await;
        let listed: Vec<_> = versions["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| (v["version"].clone(), v["mode"].clone()))
            .collect();
        assert_eq!(listed, [(json!(3), json!("disabled")), (json!(2), json!("shadow")), (json!(1), json!("active"))]);
        let (_, current) = app.get(&rule_path).await;
        assert_eq!(current["version"], 3);
        let (_, fourth) = new_card(&app, "fourth@example.com", 5_000, "pay_now").await;
        assert_eq!(network.exchange(&at(&fourth, 3_000, 30, "SHOP1", "5999")).await.get(39), Some("00"));
        assert_eq!(result_of(&newest(&app, &fourth).await, &big_electronics), None, "a disabled rule does not run");
        let (_, listed) = app.get("/v1/auth-rules").await;
        assert_eq!(listed["data"].as_array().map(Vec::len), Some(2));
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn velocity_limits_count_approvals_per_card_or_cardholder_within_their_scope() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "rules_velocity").await;
        let mut network = Network::connect(&app).await;
        let (cardholder, source) = app.cardholder_with_funding("velocity@example.com", "4242424242424242").await;
        let one_a_day = create_rule(
            &app,
            json!({"name": "One a day", "mode": "active", "scope": {"cardholder_ids": [cardholder]},
                   "velocity": {"window_seconds": 86_400, "max_count": 1, "per": "cardholder"}}),
        )
        .await;
        let spend = create_rule(
            &app,
            json!({"name": "Spend per card", "mode": "shadow", "scope": {"program": true},
                   "velocity": {"window_seconds": 3_600, "max_amount": 1_500, "per": "card"}}),
        )
        .await;
        let mut cards = Vec::new();
        for _ in 0..2 {
            let (status, card) = app.card(&cardholder, &source, 2_000, "pay_now").await;
            assert_eq!(status, StatusCode::CREATED, "{card}");
            cards.push(common::iso::reveal(&app, card["id"].as_str().expect("id")).await);
        }
        assert_eq!(network.exchange(&purchase(&cards[0], 1_000, 1, "SHOP1")).await.get(39), Some("00"));
        // The same merchant again on the same card: 2,000 in the hour is past the shadow 1,500.
        assert_eq!(network.exchange(&purchase(&cards[0], 1_000, 2, "SHOP1")).await.get(39), Some("05"));
        let second = newest(&app, &cards[0]).await;
        assert_eq!(result_of(&second, &one_a_day).expect("ran")["result"], "decline", "{second}");
        assert_eq!(result_of(&second, &spend).expect("ran")["result"], "would_decline");
        assert_eq!(
            network.exchange(&purchase(&cards[1], 1_000, 3, "SHOP1")).await.get(39),
            Some("05"),
            "the cardholder's second"
        );

        // Someone else is outside the first rule's scope.
        let (_, elsewhere) = new_card(&app, "someone@example.com", 3_000, "pay_now").await;
        assert_eq!(network.exchange(&purchase(&elsewhere, 1_000, 4, "SHOP1")).await.get(39), Some("00"));
        assert_eq!(network.exchange(&purchase(&elsewhere, 1_000, 5, "SHOP1")).await.get(39), Some("00"));
        assert_eq!(result_of(&newest(&app, &elsewhere).await, &one_a_day), None, "not in scope, not shown");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn a_backtest_replays_a_window_and_counts_the_approvals_a_version_would_have_declined() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "rules_backtest").await;
        // The job runner, as `ghostcard serve` runs it.
        ghostcard_server::jobs::spawn_timer(app.app.clone(), Duration::from_secs(60));
        let mut network = Network::connect(&app).await;
        let start = chrono::Utc::now() - chrono::Duration::minutes(1);
        let mut big = Vec::new();
        for (index, amount) in [500, 2_500, 4_000, 1_000, 3_000].into_iter().enumerate() {
            let (_, card) = new_card(&app, &format!("bt{index}@example.com"), 5_000, "pay_now").await;
            let stan = index as u32 + 1;
            assert_eq!(network.exchange(&purchase(&card, amount, stan, "SHOP1")).await.get(39), Some("00"));
            if amount > 2_000 {
                big.push(newest(&app, &card).await["id"].clone());
            }
        }
        let rule = create_rule(
            &app,
            json!({"name": "Over 20", "mode": "shadow", "scope": {"program": true},
                   "conditions": [{"attribute": "amount", "operation": "is_greater_than", "value": 2_000}]}),
        )
        .await;
        let rule_id = rule["id"].as_str().expect("id");
        // The window's end may be in the future: only what exists is replayed.
        let end = chrono::Utc::now() + chrono::Duration::hours(1);
        let (status, backtest) = app
            .post(
                &format!("/v1/auth-rules/{rule_id}/backtests"),
                json!({"start": start.to_rfc3339(), "end": end.to_rfc3339()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backtest}");
        assert!(backtest["id"].as_str().is_some_and(|id| id.starts_with("bt_")), "{backtest}");
        assert_eq!((backtest["rule_id"].as_str(), backtest["version"].as_i64()), (Some(rule_id), Some(1)));
        let path = format!("/v1/auth-rules/{rule_id}/backtests/{}", backtest["id"].as_str().expect("id"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let complete = loop {
            let (_, found) = app.get(&path).await;
            if found["status"] == "complete" {
                break found;
            }
            assert!(Instant::now() < deadline, "the backtest did not complete: {found}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(complete["results"]["evaluated"], 5, "{complete}");
        assert_eq!(complete["results"]["approved_to_declined"], 3);
        let mut sample: Vec<Value> = complete["results"]["sample"].as_array().expect("sample").clone();
        sample.sort_by_key(|id| id.as_str().unwrap_or_default().to_owned());
        assert_eq!(sample, big);

        // Bad requests: a window backwards, a version that does not exist, an unknown backtest.
        let (status, error) = app
            .post(
                &format!("/v1/auth-rules/{rule_id}/backtests"),
                json!({"start": end.to_rfc3339(), "end": start.to_rfc3339()}),
            )
            .await;
        assert_eq!((status, error["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("start")));
        let (status, error) = app
            .post(
                &format!("/v1/auth-rules/{rule_id}/backtests"),
                json!({"start": start.to_rfc3339(), "end": end.to_rfc3339(), "version": 9}),
            )
            .await;
        assert_eq!((status, error["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("version")));
        let (status, _) = app.get(&format!("/v1/auth-rules/{rule_id}/backtests/bt_00000000000000000000000000")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_bad_rule_is_a_400_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn(Backend::Sqlite, "rules_bad").await;
    let program = json!({"program": true});
    let condition = |attribute: &str, operation: &str, value: Value| {
        json!({"name": "r", "mode": "active", "scope": {"program": true},
               "conditions": [{"attribute": attribute, "operation": operation, "value": value}]})
    };
    for (body, param) in [
        (condition("colour", "is_one_of", json!(["red"])), "conditions[0].attribute"),
        (condition("amount", "is_greater_than", json!("100")), "conditions[0].value"),
        (condition("mcc", "is_one_of", json!([5411])), "conditions[0].value"),
        (condition("mcc", "is_greater_than", json!(5000)), "conditions[0].operation"),
        (condition("country", "is_one_of", json!(["XX"])), "conditions[0].value"),
        (condition("amount", "is_about", json!(1)), "conditions[0].operation"),
        (json!({"name": "r", "mode": "active", "scope": {}, "conditions": []}), "scope"),
        (json!({"name": "r", "mode": "active", "scope": {"card_ids": []}, "conditions": []}), "scope.card_ids"),
        (
            json!({"name": "r", "mode": "active", "scope": program, "velocity": {"window_seconds": 60, "per": "card"}}),
            "velocity.max_count",
        ),
        (json!({"name": "r", "mode": "active", "scope": program}), "conditions"),
        (json!({"name": "r", "mode": "disabled", "scope": program, "conditions": []}), "mode"),
        (json!({"name": "r", "mode": "sometimes", "scope": program, "conditions": []}), "mode"),
        (json!({"mode": "active", "scope": program, "conditions": []}), "name"),
    ] {
        let (status, error) = app.post("/v1/auth-rules", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert_eq!(error["error"]["param"].as_str(), Some(param), "{body} → {error}");
    }
    let (_, listed) = app.get("/v1/auth-rules").await;
    assert_eq!(listed["data"], json!([]), "nothing was created");
    let (status, _) = app.get("/v1/auth-rules/rule_00000000000000000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.post("/v1/auth-rules/rule_00000000000000000000000000", json!({"mode": "active"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = app.get("/v1/auth-rules/rule_00000000000000000000000000/report?start=yesterday").await;
    assert_eq!((status, error["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("start")));
}

#[tokio::test]
async fn a_change_on_one_node_is_in_effect_on_another_within_a_second() {
    let first = TestApp::spawn(Backend::Postgres, "rules_nodes").await;
    let second = first.restarted().await;
    let mut network = Network::connect(&second).await;
    let (_, card) = new_card(&first, "nodes@example.com", 5_000, "pay_now").await;
    create_rule(
        &first,
        json!({"name": "No 5999", "mode": "active", "scope": {"program": true},
               "conditions": [{"attribute": "mcc", "operation": "is_one_of", "value": ["5999"]}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(network.exchange(&at(&card, 1_000, 1, "SHOP1", "5999")).await.get(39), Some("05"));
}
