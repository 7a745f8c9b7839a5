//! Card controls over the REST API and real ISO 8583, on SQLite and PostgreSQL: a pause and spending controls
//! (docs/reference/behaviour.md, "Card controls").

mod common;

use common::iso::{Network, new_card, purchase};
use common::{BACKENDS, TestApp};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_paused_card_declines_purchases_until_it_is_resumed_and_everything_else_goes_on() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "controls_pause").await;
        let mut network = Network::connect(&app).await;
        let (_, card) = new_card(&app, "pause@example.com", 5_000, "pay_in_4").await;

        let (status, paused) = app.post(&format!("/v1/cards/{}/pause", card.id), json!({})).await;
        assert_eq!((status, paused["status"].as_str()), (StatusCode::OK, Some("paused")), "{paused}");
        let (status, again) = app.post(&format!("/v1/cards/{}/pause", card.id), json!({})).await;
        assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("paused")), "pausing twice: no change");
        let cardholder = paused["cardholder_id"].as_str().expect("cardholder");
        let (_, listed) = app.get(&format!("/v1/cards?cardholder_id={cardholder}&status=paused")).await;
        assert_eq!(listed["data"][0]["id"], card.id.as_str(), "{listed}");
        let (_, active) = app.get(&format!("/v1/cards?cardholder_id={cardholder}&status=active")).await;
        assert_eq!(active["data"], json!([]), "a paused card is not listed as active");

        // Purchases and verifications decline 62 `card_paused`; so many of them do not freeze the card.
        for stan in 1..=6 {
            let answer = network.exchange(&purchase(&card, 1_000, stan, "SHOP1")).await;
            assert_eq!(answer.get(39), Some("62"), "purchase {stan}");
        }
        assert_eq!(network.exchange(&purchase(&card, 0, 7, "SHOP1")).await.get(39), Some("62"), "a verification");
        let (_, authorizations) = app.get(&format!("/v1/authorizations?card_id={}", card.id)).await;
        let reasons: Vec<_> =
            authorizations["data"].as_array().expect("list").iter().map(|row| row["decline_reason"].clone()).collect();
        assert!(reasons.iter().all(|reason| reason == "card_paused"), "{reasons:?}");

        // A refund is processed on a paused card.
        let mut refund = purchase(&card, 500, 8, "SHOP1");
        refund.set(3, "200000");
        assert_eq!(network.exchange(&refund).await.get(39), Some("00"));

        let (status, resumed) = app.post(&format!("/v1/cards/{}/resume", card.id), json!({})).await;
        assert_eq!((status, resumed["status"].as_str()), (StatusCode::OK, Some("active")), "{resumed}");
        let (status, _) = app.post(&format!("/v1/cards/{}/resume", card.id), json!({})).await;
        assert_eq!(status, StatusCode::OK, "resuming a card that is not paused changes nothing");
        let approved = network.exchange(&purchase(&card, 4_000, 9, "SHOP1")).await;
        assert_eq!(approved.get(39), Some("00"), "seven declines while paused froze nothing");

        // A used card can be paused; an advice on it is still posted.
        let (_, used) = app.post(&format!("/v1/cards/{}/pause", card.id), json!({})).await;
        assert_eq!(used["status"], "paused");
        let mut advice = purchase(&card, 500, 10, "SHOP1");
        advice.set_mti("0120");
        assert_eq!(network.exchange(&advice).await.get(39), Some("00"));

        // Canceled (and frozen, closed, expired) cards cannot be paused.
        let (_, unused) = new_card(&app, "canceled@example.com", 5_000, "pay_now").await;
        app.post(&format!("/v1/cards/{}/cancel", unused.id), json!({})).await;
        let (status, refused) = app.post(&format!("/v1/cards/{}/pause", unused.id), json!({})).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("card_not_pausable")));
        let (status, refused) = app.post(&format!("/v1/cards/{}/resume", unused.id), json!({})).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("card_not_pausable")));
        let (status, _) = app.post("/v1/cards/card_nosuchcard/pause", json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn spending_controls_decline_57_and_are_set_at_creation_or_later() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "controls_spending").await;
        let mut network = Network::connect(&app).await;
        let (cardholder, source) = app.cardholder_with_funding("controls@example.com", "4242424242424242").await;
        let (status, created) = app
            .post(
                "/v1/cards",
                json!({"cardholder_id": cardholder, "amount": 5_000, "currency": "USD", "funding_source_id": source,
                       "plan": "pay_now", "spending_controls": {"allowed_categories": ["5411", "5732"]}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["spending_controls"]["allowed_categories"], json!(["5411", "5732"]));
        assert_eq!(created["spending_controls"]["blocked_countries"], json!([]));
        let card_id = created["id"].as_str().expect("id");
        let card = common::iso::reveal(&app, card_id).await;

        let mut elsewhere = purchase(&card, 1_000, 1, "SHOP1");
        elsewhere.set(18, "5999");
        let answer = network.exchange(&elsewhere).await;
        assert_eq!(answer.get(39), Some("57"));
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={card_id}")).await;
        assert_eq!(list["data"][0]["decline_reason"], "spending_controls");

        // Later: block the card's merchant country; a request without a merchant country skips it.
        let (status, changed) =
            app.post(&format!("/v1/cards/{card_id}/spending-controls"), json!({"blocked_countries": ["US"]})).await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(changed["spending_controls"]["allowed_categories"], json!([]), "replaced, not merged");
        assert_eq!(network.exchange(&purchase(&card, 1_000, 2, "SHOP1")).await.get(39), Some("57"));
        let mut no_country = purchase(&card, 1_000, 3, "SHOP1");
        no_country.set(43, format!("{:<40}", "NO COUNTRY HERE"));
        assert_eq!(network.exchange(&no_country).await.get(39), Some("00"));

        // Bad input: a clear 400 naming the field, and nothing changes.
        for (body, param) in [
            (json!({"blocked_categories": ["54"]}), "blocked_categories"),
            (json!({"allowed_countries": ["XX"]}), "allowed_countries"),
            (json!({"allowed_countries": "US"}), "allowed_countries"),
            (json!({"colors": ["red"]}), "colors"),
        ] {
            let (status, error) = app.post(&format!("/v1/cards/{card_id}/spending-controls"), body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {error}");
            assert_eq!(error["error"]["type"], "invalid_request_error");
            assert!(error["error"]["param"].as_str().is_some_and(|at| at.contains(param)), "{body} → {error}");
        }
        let (_, unchanged) = app.get(&format!("/v1/cards/{card_id}")).await;
        assert_eq!(unchanged["spending_controls"]["blocked_countries"], json!(["US"]));
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn the_built_in_rules_come_from_the_configuration() {
    for backend in BACKENDS {
        let app = TestApp::spawn_with(backend, "controls_configured", |config| {
            config.rules.blocked_categories = vec!["5732".to_owned()];
            config.rules.card_declines = vec![ghostcard_server::config::rules::Velocity {
                name: "two_declines".to_owned(),
                window_seconds: 600,
                max: 2,
            }];
        })
        .await;
        let mut network = Network::connect(&app).await;
        let (_, card) = new_card(&app, "configured@example.com", 5_000, "pay_now").await;
        let mut gambling = purchase(&card, 1_000, 1, "SHOP1");
        gambling.set(18, "7995");
        assert_eq!(network.exchange(&gambling).await.get(39), Some("00"), "7995 is no longer blocked");
        let (_, card) = new_card(&app, "configured2@example.com", 5_000, "pay_now").await;
        for stan in 2..=3 {
            assert_eq!(network.exchange(&purchase(&card, 1_000, stan, "SHOP1")).await.get(39), Some("57"));
        }
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={}", card.id)).await;
        assert_eq!(list["data"][0]["decline_reason"], "merchant_category_blocked");
        let (_, frozen) = app.get(&format!("/v1/cards/{}", card.id)).await;
        assert_eq!(frozen["status"], "frozen", "frozen by the configured limit of 2 declines");
        let (_, events) = app.get("/v1/events?type=fraud.flagged").await;
        assert_eq!(events["data"][0]["data"]["id"], card.id.as_str(), "{events}");
    }
}
