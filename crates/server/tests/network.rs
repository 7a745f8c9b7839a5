//! The ISO 8583 listener over real TCP, on SQLite and PostgreSQL: the lifecycle matrix of docs/reference/behaviour.md
//! and docs/reference/iso8583.md — approvals, declines with their codes, repeats, conflicting duplicates, reversals
//! (full, partial, repeated, before their original), advices, financial requests, network management, verification,
//! refunds on closed cards, the deadline's stand-in — and bad input.

mod common;
#[path = "../../../tests/support/python.rs"]
mod python;

use std::collections::HashMap;
use std::time::Duration;

use common::iso::{Card, Network, new_card, purchase};
use common::{BACKENDS, TestApp};
use ghostcard_iso8583::framing::frame;
use ghostcard_iso8583::subfields::{OriginalData, build_replacement_amount};
use ghostcard_iso8583::{Message, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn reversal(original: &Message, stan: u32, replacement: Option<i64>) -> Message {
    let mut message = Message::new("0400");
    for number in [2, 3, 4, 32, 37, 42, 49] {
        if let Some(value) = original.get(number) {
            message.set(number, value);
        }
    }
    message.set(7, "1126121000").set(11, format!("{stan:06}"));
    message.set(
        90,
        OriginalData::build(
            original.mti(),
            original.get(11).unwrap_or_default(),
            original.get(7).unwrap_or_default(),
            original.get(32).unwrap_or_default(),
        ),
    );
    if let Some(amount) = replacement {
        message.set(95, build_replacement_amount(amount));
    }
    message
}

async fn card_view(app: &TestApp, card: &Card) -> Value {
    app.get(&format!("/v1/cards/{}", card.id)).await.1
}

#[tokio::test]
async fn the_authorization_lifecycle_over_tcp() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "network_lifecycle").await;
        let (_, card) = new_card(&app, "net@example.com", 5_000, "pay_in_4").await;
        let mut network = Network::connect(&app).await;

        // Echo.
        let mut echo = Message::new("0800");
        echo.set(7, "1126120000").set(11, "000001").set(70, "301");
        let answer = network.exchange(&echo).await;
        assert_eq!((answer.mti(), answer.get(39), answer.get(70)), ("0810", Some("00"), Some("301")));

        // Zero-amount verification: 85, nothing consumed.
        let verification = network.exchange(&purchase(&card, 0, 10, "SHOP1")).await;
        assert_eq!(
            (verification.mti(), verification.get(39), verification.get(48)),
            ("0110", Some("85"), Some("8701M"))
        );
        assert_eq!(card_view(&app, &card).await["status"], "active");

        // Approval, then its repeat (0101) answered from storage with the same code, one hold.
        let original = purchase(&card, 3_000, 11, "SHOP1");
        let approved = network.exchange(&original).await;
        assert_eq!((approved.get(39), approved.get(48)), (Some("00"), Some("8701M")));
        assert!(!approved.has(2) || approved.get(2) == original.get(2));
        let code = approved.get(38).expect("an authorization code").to_owned();
        assert_eq!(code.len(), 6);
        // On SQLite the batch committed without waiting for the disk; it was answered after the log was flushed.
        assert_eq!(app.app.store.log_syncs() > 0, app.app.store.defers_sync(), "answered after a flush of the log");
        // The flush's duration is in the metrics (PostgreSQL has none: its commit waits for its own log).
        let metrics =
            app.client.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
        let flushes = metrics
            .lines()
            .find_map(|line| line.strip_prefix("ghostcard_sqlite_log_flush_seconds_count "))
            .and_then(|count| count.parse::<u64>().ok());
        assert_eq!(flushes.is_some_and(|count| count >= 1), app.app.store.defers_sync(), "{metrics}");
        let mut repeat = original.clone();
        repeat.set_mti("0101");
        let repeated = network.exchange(&repeat).await;
        assert_eq!((repeated.mti(), repeated.get(39), repeated.get(38)), ("0110", Some("00"), Some(code.as_str())));
        assert_eq!(network.exchange(&original).await.get(38), Some(code.as_str()), "the same key again is a duplicate");
        let view = card_view(&app, &card).await;
        assert_eq!((view["held"].as_i64(), view["status"].as_str()), (Some(3_000), Some("used")));

        // The same key with another amount: 94.
        let mut conflicting = original.clone();
        conflicting.set(4, format!("{:012}", 3_001));
        assert_eq!(network.exchange(&conflicting).await.get(39), Some("94"));

        // Another merchant: 05. Wrong CVV2 on... the card is used, so CVV2 is not checked for the bound merchant.
        assert_eq!(network.exchange(&purchase(&card, 100, 12, "SHOP2")).await.get(39), Some("05"));
        let mut incremental = purchase(&card, 1_000, 13, "SHOP1");
        incremental.set(48, "9203000");
        let incremental = network.exchange(&incremental).await;
        assert_eq!((incremental.get(39), incremental.get(48)), (Some("00"), Some("8701P")));

        // A partial reversal to 2,000 of the 3,000, repeated: released once.
        let partial = network.exchange(&reversal(&original, 20, Some(2_000))).await;
        assert_eq!((partial.mti(), partial.get(39)), ("0410", Some("00")));
        assert_eq!(
            card_view(&app, &card).await["held"],
            3_000,
            "1,000 of 3,000 released, 1,000 incremental still held"
        );
        // Three full reversals of the incremental: the first releases, the others change nothing.
        for stan in [21, 22, 23] {
            let answer = network.exchange(&reversal(&incremental_request(&card), stan, None)).await;
            assert_eq!(answer.get(39), Some("00"));
        }
        assert_eq!(card_view(&app, &card).await["held"], 2_000);
        let repeat_reversal = network.exchange(&reversal(&original, 20, Some(2_000))).await;
        assert_eq!(repeat_reversal.get(39), Some("00"));
        assert_eq!(card_view(&app, &card).await["held"], 2_000, "a repeated reversal releases nothing");

        // A reversal whose original never came: 25; when the original arrives after it: 12.
        let (_, second) = new_card(&app, "net2@example.com", 2_000, "pay_now").await;
        let late = purchase(&second, 1_500, 30, "SHOP9");
        assert_eq!(network.exchange(&reversal(&late, 31, None)).await.get(39), Some("25"));
        let mut advice_of_unknown = reversal(&late, 32, None);
        advice_of_unknown.set_mti("0420");
        let answer = network.exchange(&advice_of_unknown).await;
        assert_eq!((answer.mti(), answer.get(39)), ("0430", Some("00")));
        assert_eq!(network.exchange(&late).await.get(39), Some("12"));
        assert_eq!(card_view(&app, &second).await["status"], "active");

        // An advice past the card's amount is posted and flagged; answered 0130 00.
        let mut advice = purchase(&second, 9_999, 40, "SHOP9");
        advice.set_mti("0120");
        advice.set(39, "00");
        let answer = network.exchange(&advice).await;
        assert_eq!((answer.mti(), answer.get(39)), ("0130", Some("00")));
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={}", second.id)).await;
        let posted = list["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|item| item["kind"] == "advice")
            .expect("advice recorded")
            .clone();
        assert_eq!((posted["flag"].as_str(), posted["held"].as_i64()), (Some("exceeds_card_amount"), Some(9_999)));

        app.assert_ledger_verifies().await;
    }
}

/// The incremental authorization of the lifecycle test, to reverse it by its key.
fn incremental_request(card: &Card) -> Message {
    let mut message = purchase(card, 1_000, 13, "SHOP1");
    message.set(48, "9203000");
    message
}

#[tokio::test]
async fn each_decline_reason_has_its_code() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "network_declines").await;
        let mut network = Network::connect(&app).await;
        type Change = fn(&mut Message, &Card);
        let cases: [(&str, Change, &str); 12] = [
            (
                "unknown card",
                |message, _| {
                    message.set(2, "4242420000000000");
                },
                "14",
            ),
            (
                "not a card number",
                |message, _| {
                    message.set(2, "4242420000000001");
                },
                "14",
            ),
            (
                "expiry",
                |message, _| {
                    message.set(14, "2001");
                },
                "54",
            ),
            (
                "wrong cvv2",
                |message, card| {
                    message.set(48, format!("9203{:03}", (card.cvv.parse::<u16>().unwrap_or(0) + 1) % 1000));
                },
                "N7",
            ),
            (
                "no cvv2",
                |message, _| {
                    message.remove(48);
                },
                "N7",
            ),
            (
                "currency",
                |message, _| {
                    message.set(49, "978");
                },
                "57",
            ),
            (
                "cash",
                |message, _| {
                    message.set(3, "010000");
                },
                "57",
            ),
            (
                "gambling",
                |message, _| {
                    message.set(18, "7995");
                },
                "57",
            ),
            (
                "country",
                |message, _| {
                    message.set(43, format!("{:<25}{:<13}FR", "BOULANGERIE", "PARIS"));
                },
                "57",
            ),
            (
                "country by number",
                |message, _| {
                    message.set(43, format!("{:<40}", "NO COUNTRY HERE")).set(19, "826");
                },
                "57",
            ),
            (
                "too much",
                |message, _| {
                    message.set(4, format!("{:012}", 5_001));
                },
                "51",
            ),
            (
                "missing merchant",
                |message, _| {
                    message.remove(42);
                },
                "30",
            ),
        ];
        for (index, (name, change, code)) in cases.iter().enumerate() {
            let (_, card) = new_card(&app, &format!("dec{index}@example.com"), 5_000, "pay_now").await;
            let mut message = purchase(&card, 1_000, 100 + index as u32, "SHOP1");
            change(&mut message, &card);
            let answer = network.exchange(&message).await;
            assert_eq!(answer.get(39), Some(*code), "{name}: {message:?}");
            assert_eq!(answer.get(11), message.get(11));
            assert!(!answer.has(38), "{name}: no authorization code on a decline");
        }
        let mut letters =
            purchase(&new_card(&app, "letters@example.com", 5_000, "pay_now").await.1, 1_000, 120, "SHOP1");
        letters.set(4, "00000000100A");
        assert_eq!(network.exchange(&letters).await.get(39), Some("30"));

        // Five declines in an hour on one card freeze it after the fifth is answered: then 62.
        let (_, card) = new_card(&app, "frozen@example.com", 5_000, "pay_now").await;
        for stan in 130..135 {
            let mut message = purchase(&card, 1_000, stan, "SHOP1");
            message.set(18, "7995");
            assert_eq!(network.exchange(&message).await.get(39), Some("57"));
        }
        assert_eq!(network.exchange(&purchase(&card, 1_000, 135, "SHOP1")).await.get(39), Some("62"));
        assert_eq!(card_view(&app, &card).await["status"], "frozen");

        // Three CVV2 failures on one cardholder's cards freeze all of them.
        let (_, first) = new_card(&app, "cvv@example.com", 5_000, "pay_now").await;
        let wrong = if first.cvv == "999" { "9203998" } else { "9203999" };
        for stan in 140..143 {
            let mut message = purchase(&first, 1_000, stan, "SHOP1");
            message.set(48, wrong);
            assert_eq!(network.exchange(&message).await.get(39), Some("N7"));
        }
        assert_eq!(card_view(&app, &first).await["status"], "frozen");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn financial_requests_refunds_and_pipelining() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "network_financial").await;
        let (_, card) = new_card(&app, "fin@example.com", 4_000, "pay_in_4").await;
        let mut network = Network::connect(&app).await;

        // 0200: approved and captured at once; the plan exists.
        let mut financial = purchase(&card, 4_000, 50, "SHOP1");
        financial.set_mti("0200");
        let answer = network.exchange(&financial).await;
        assert_eq!((answer.mti(), answer.get(39)), ("0210", Some("00")));
        let view = card_view(&app, &card).await;
        assert_eq!(
            (view["captured"].as_i64(), view["held"].as_i64(), view["status"].as_str()),
            (Some(4_000), Some(0), Some("closed"))
        );
        let (_, plan) = app.get(&format!("/v1/plans/{}", view["plan_id"].as_str().expect("plan"))).await;
        assert_eq!(plan["principal"], 4_000);

        // A refund (0100 with processing code 20) on the closed card is approved and moves nothing; a financial
        // refund (0200) moves the money at once.
        let mut refund = purchase(&card, 1_000, 51, "SHOP1");
        refund.set(3, "200000");
        refund.remove(14);
        refund.remove(48);
        assert_eq!(network.exchange(&refund).await.get(39), Some("00"));
        let mut financial_refund = refund.clone();
        financial_refund.set_mti("0200");
        financial_refund.set(11, "000052");
        assert_eq!(network.exchange(&financial_refund).await.get(39), Some("00"));
        let (_, plan) = app.get(&format!("/v1/plans/{}", view["plan_id"].as_str().expect("plan"))).await;
        let owed: i64 = plan["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|i| i["amount"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(owed, 3_000, "only the financial refund moved money");

        // Pipelining: many requests before any answer; answers matched by STAN.
        let (_, other) = new_card(&app, "pipe@example.com", 1_500, "pay_now").await;
        let mut stans = Vec::new();
        for stan in 60..90u32 {
            let mut message = purchase(&other, 0, stan, "SHOP1");
            message.set(7, format!("11261{stan:05}"));
            network.send(&message).await;
            stans.push(format!("{stan:06}"));
        }
        let mut answers = HashMap::new();
        for _ in &stans {
            let answer = network.receive().await;
            answers.insert(answer.get(11).expect("stan").to_owned(), answer.get(39).expect("code").to_owned());
        }
        assert!(stans.iter().all(|stan| answers.get(stan).map(String::as_str) == Some("85")), "{answers:?}");
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn api_writes_are_served_while_the_network_keeps_the_authorizer_busy() {
    for backend in BACKENDS {
        // Batches of 4 and 64 verifications in flight: jobs are always waiting when a batch ends, so on SQLite the
        // authorizer keeps the write connection from one batch to the next for as long as the load lasts.
        let app = TestApp::spawn_with(backend, "network_busy", |config| config.authorization_batch_max = 4).await;
        let (_, card) = new_card(&app, "busy@example.com", 1_000, "pay_now").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = tokio::spawn({
            let (stop, address, card) = (stop.clone(), app.network, card.clone());
            async move {
                let stream = TcpStream::connect(address).await.expect("connects");
                let mut network = Network { stream, buffer: Vec::new() };
                let (mut stan, mut in_flight, mut answered) = (0u32, 0, 0);
                while in_flight > 0 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    while in_flight < 64 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        stan += 1;
                        let mut message = purchase(&card, 0, stan % 1_000_000, "SHOP1");
                        message.set(7, format!("{:010}", 1_126_000_000 + stan / 1_000_000));
                        network.send(&message).await;
                        in_flight += 1;
                    }
                    assert_eq!(network.receive().await.get(39), Some("85"), "a verification is approved");
                    in_flight -= 1;
                    answered += 1;
                }
                answered
            }
        });
        // Wait until the load runs.
        let (_, views) = loop {
            let found = app.get(&format!("/v1/authorizations?card_id={}&limit=1", card.id)).await;
            if found.1["data"].as_array().is_some_and(|data| !data.is_empty()) {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(views["data"][0]["response_code"], "85");
        // Writers other than the authorizer get their turn: each of these waits for the write connection.
        for number in 0..5 {
            let (status, _) = app
                .post(
                    "/v1/cardholders",
                    json!({"email": format!("w{number}@example.com"), "name": "W", "country": "US"}),
                )
                .await;
            assert_eq!(status, 201, "an API write is served under network load");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(load.await.expect("the load ran") > 0);
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn a_decision_past_the_deadline_is_answered_stand_in_and_leaves_no_hold() {
    // The batch gathers requests for 300 ms before it decides: its decision cannot be durable by the 100 ms deadline.
    let app = TestApp::spawn_with(common::Backend::Sqlite, "network_deadline", |config| {
        config.authorization_deadline_ms = 100;
        config.authorization_batch_wait_us = 300_000;
    })
    .await;
    let (_, card) = new_card(&app, "late@example.com", 2_000, "pay_now").await;
    let mut network = Network::connect(&app).await;
    let message = purchase(&card, 1_500, 70, "SHOP1");
    let answer = network.exchange(&message).await;
    assert_eq!((answer.get(39), answer.has(38)), (Some("91"), false));
    // The late decision is voided and recorded; its duplicate gets the stored stand-in answer.
    let mut voided = false;
    for _ in 0..250 {
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={}", card.id)).await;
        if list["data"][0]["status"] == "reversed" {
            voided = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(voided, "the hold committed after the deadline was voided");
    let view = card_view(&app, &card).await;
    assert_eq!((view["held"].as_i64(), view["status"].as_str()), (Some(0), Some("active")), "{view}");
    assert_eq!(network.exchange(&message).await.get(39), Some("91"));
    let (_, list) = app.get(&format!("/v1/authorizations?card_id={}", card.id)).await;
    assert_eq!(list["data"][0]["response_code"], "91");
    assert_eq!(list["data"][0]["status"], "reversed");
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn bad_bytes_close_only_their_connection() {
    let app = TestApp::spawn(common::Backend::Sqlite, "network_bad_input").await;
    let (_, card) = new_card(&app, "bad@example.com", 2_000, "pay_now").await;
    let mut healthy = Network::connect(&app).await;

    // Garbage that is not a message: closed.
    let mut garbage = Network::connect(&app).await;
    garbage.stream.write_all(&frame(b"\xff\xfe garbage").expect("small")).await.expect("sends");
    assert!(garbage.closed().await);
    // A length over the limit: closed.
    let mut oversized = Network::connect(&app).await;
    oversized.stream.write_all(&[0x20, 0x00]).await.expect("sends");
    assert!(oversized.closed().await);
    // Readable MTI and STAN but a broken body: answered 30 on the same connection, which stays open.
    let mut broken = Network::connect(&app).await;
    let mut bytes = encode(&purchase(&card, 100, 80, "SHOP1")).expect("encodes");
    bytes.truncate(bytes.len() - 3);
    broken.stream.write_all(&frame(&bytes).expect("small")).await.expect("sends");
    let answer = broken.receive().await;
    assert_eq!((answer.mti(), answer.get(11), answer.get(39)), ("0110", Some("000080"), Some("30")));
    let mut unknown_mti = Message::new("0600");
    unknown_mti.set(11, "000081").set(7, "1126120000");
    assert_eq!(broken.exchange(&unknown_mti).await.get(39), Some("30"));
    // Keep-alives are ignored.
    broken.stream.write_all(&[0, 0, 0, 0]).await.expect("sends");
    assert_eq!(broken.exchange(&purchase(&card, 0, 82, "SHOP1")).await.get(39), Some("85"));
    // Thousands of keep-alives and requests in one write, the last request cut in two across writes: each
    // request is answered once.
    let mut bytes = Vec::new();
    for stan in 90..94u32 {
        bytes.extend_from_slice(&[0, 0].repeat(1_000));
        bytes.extend_from_slice(&frame(&encode(&purchase(&card, 0, stan, "SHOP1")).expect("encodes")).expect("small"));
    }
    let cut = bytes.len() - 10;
    broken.stream.write_all(&bytes[..cut]).await.expect("sends");
    tokio::time::sleep(Duration::from_millis(50)).await;
    broken.stream.write_all(&bytes[cut..]).await.expect("sends");
    let mut answered = Vec::new();
    for _ in 90..94u32 {
        let answer = broken.receive().await;
        answered.push((answer.get(11).expect("stan").to_owned(), answer.get(39).expect("code").to_owned()));
    }
    answered.sort();
    let expected: Vec<_> = (90..94u32).map(|stan| (format!("{stan:06}"), "85".to_owned())).collect();
    assert_eq!(answered, expected);

    // Everyone else is served throughout.
    assert_eq!(healthy.exchange(&purchase(&card, 0, 83, "SHOP1")).await.get(39), Some("85"));
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn pyiso8583_as_the_client() {
    let app = TestApp::spawn(common::Backend::Sqlite, "network_pyiso8583").await;
    let (_, card) = new_card(&app, "py@example.com", 2_000, "pay_now").await;
    let (python, script) = (python::python(), python::script("pyiso8583_client.py"));
    let request = json!({
        "t": "0100", "2": card.number, "3": "000000", "4": "000000001500", "7": "1126120000", "11": "000091",
        "14": card.yymm, "18": "5732", "32": "123456", "37": "RRN000000091", "42": "SHOP1          ",
        "43": format!("{:<25}{:<13}US", "CORNER BOOKS", "SPRINGFIELD"), "48": format!("9203{}", card.cvv), "49": "840"
    });
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .arg(app.network.to_string())
        .arg(request.to_string())
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot start {python} ({error}); run scripts/test, which installs pyiso8583"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(answer["t"], "0110");
    assert_eq!(answer["39"], "00");
    assert_eq!(answer["11"], "000091");
    assert_eq!(answer["48"], "8701M");
    assert_eq!(answer["38"].as_str().map(str::len), Some(6));
    assert_eq!(card_view(&app, &card).await["held"], 1_500);
}

#[tokio::test]
async fn clearing_records_post_once_and_report_each_result() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "network_clearing").await;
        let (_, card) = new_card(&app, "clr@example.com", 5_000, "pay_in_4").await;
        let mut network = Network::connect(&app).await;
        let approved = network.exchange(&purchase(&card, 3_000, 200, "SHOP1")).await;
        let auth_code = approved.get(38).expect("code").to_owned();
        let (_, list) = app.get(&format!("/v1/authorizations?card_id={}", card.id)).await;
        let authorization_id = list["data"][0]["id"].as_str().expect("id").to_owned();

        let records = json!({"records": [
            {"id": "r1", "type": "capture", "network_transaction_id": authorization_id, "amount": 1_000, "currency": "USD"},
            {"id": "r2", "type": "capture", "rrn": "RRN000000200", "auth_code": auth_code, "acquirer_id": "123456", "merchant_id": "SHOP1", "amount": 2_500, "currency": "USD"},
            {"id": "r3", "type": "force_post", "number": card.number, "amount": 400, "currency": "USD", "mcc": "5732"},
            {"id": "r4", "type": "refund", "number": card.number, "amount": 900, "currency": "USD"},
            {"id": "r5", "type": "capture", "rrn": "NOSUCHRRN000", "auth_code": "ZZZZZZ", "amount": 100, "currency": "USD"},
            {"id": "r6", "type": "capture", "network_transaction_id": authorization_id, "amount": 100, "currency": "XXX"},
            {"id": "r1", "type": "capture", "network_transaction_id": authorization_id, "amount": 1_000, "currency": "USD"}
        ]});
        let (status, body) = app.post("/v1/network/clearings", records.clone()).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let results: Vec<(String, String, Vec<String>)> = body["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|result| {
                let flags = result["flags"]
                    .as_array()
                    .map(|flags| flags.iter().filter_map(|flag| flag.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                (
                    result["id"].as_str().unwrap_or("").to_owned(),
                    result["result"].as_str().unwrap_or("").to_owned(),
                    flags,
                )
            })
            .collect();
        let expected = [
            ("r1", "posted", vec![]),
            ("r2", "posted", vec!["above_hold".to_owned()]),
            ("r3", "posted", vec!["force_post".to_owned()]),
            ("r4", "posted", vec![]),
            ("r5", "unmatched", vec![]),
            ("r6", "rejected", vec!["invalid_currency".to_owned()]),
            ("r1", "duplicate", vec![]),
        ];
        for ((id, result, flags), (expected_id, expected_result, expected_flags)) in results.iter().zip(expected) {
            assert_eq!((id.as_str(), result.as_str(), flags), (expected_id, expected_result, &expected_flags));
        }
        // 1,000 + 2,500 (500 above the 2,000 left on the hold) + 400 forced − 900 refunded.
        let view = card_view(&app, &card).await;
        assert_eq!((view["captured"].as_i64(), view["held"].as_i64()), (Some(3_000), Some(0)));
        let (_, plan) = app.get(&format!("/v1/plans/{}", view["plan_id"].as_str().expect("plan"))).await;
        let owed: i64 = plan["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|i| i["amount"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(owed, 3_000);

        // The whole batch again: nothing posts twice.
        let (_, again) = app.post("/v1/network/clearings", records).await;
        assert!(
            again["results"].as_array().expect("results").iter().take(4).all(|result| result["result"] == "duplicate"),
            "{again}"
        );
        assert_eq!(card_view(&app, &card).await["captured"], 3_000);
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn connection_limits_and_a_client_that_never_reads_leave_everyone_else_served() {
    let app = TestApp::spawn_with(common::Backend::Sqlite, "network_limits", |config| {
        config.iso8583_max_connections = 20;
        config.iso8583_max_in_flight_per_connection = 8;
        config.iso8583_idle_timeout_seconds = 1;
        config.authorization_batch_max = 3;
    })
    .await;
    // A silent connection is closed after the idle timeout.
    let mut silent = Network::connect(&app).await;
    let started = std::time::Instant::now();
    assert!(silent.closed().await, "an idle connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the idle timeout");
    let (_, card) = new_card(&app, "limits@example.com", 2_000, "pay_now").await;

    // A client that sends and sends and never reads its answers.
    let mut greedy = TcpStream::connect(app.network).await.expect("connects");
    let flood = tokio::spawn(async move {
        // Echoes with every field a response repeats, so the answers pile up fast.
        let mut echo = Message::new("0800");
        echo.set(2, "4242424242424242424")
            .set(3, "000000")
            .set(4, "000000000000")
            .set(7, "1126120000")
            .set(32, "12345678901")
            .set(37, "RRN000000001")
            .set(41, "TERM0001")
            .set(42, "SHOP00000000001")
            .set(70, "301")
            .set(90, "0".repeat(42));
        for stan in 0..200_000u32 {
            echo.set(11, format!("{:06}", stan % 1_000_000));
            let bytes = frame(&encode(&echo).expect("encodes")).expect("small");
            if tokio::time::timeout(Duration::from_millis(500), greedy.write_all(&bytes)).await.is_err() {
                // The server stopped reading from it: that is the point.
                return stan;
            }
        }
        200_000
    });

    // The connection limit: twenty are served, more are closed at once.
    let mut open = Vec::new();
    for _ in 0..25 {
        open.push(TcpStream::connect(app.network).await.expect("connects"));
    }
    let mut refused = 0;
    for stream in &mut open {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            refused += 1;
        }
    }
    assert!(refused >= 5, "connections over the limit are closed ({refused} of 25 were)");
    drop(open);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Everyone else is still answered promptly, in batches of at most three.
    let mut healthy = Network::connect(&app).await;
    let before = app.app.metrics.batch_totals();
    for stan in 300..310 {
        let mut message = purchase(&card, 0, stan, "SHOP1");
        message.set(7, format!("11261{stan:05}"));
        healthy.send(&message).await;
    }
    for _ in 300..310 {
        assert_eq!(healthy.receive().await.get(39), Some("85"));
    }
    let after = app.app.metrics.batch_totals();
    assert_eq!(after.authorizations - before.authorizations, 10);
    assert!(after.batches - before.batches >= 4, "ten requests need at least four batches of three");
    let stopped_after = flood.await.expect("flood task");
    assert!(stopped_after < 200_000, "a client that never reads is not read from without bound");
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn two_servers_batching_on_one_postgresql_never_approve_a_card_twice() {
    let first = TestApp::spawn(common::Backend::Postgres, "network_two_servers").await;
    let second_app = ghostcard_server::App::start(first.app.config.clone()).await.expect("second server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let second_address = listener.local_addr().expect("address");
    tokio::spawn(ghostcard_server::network::run(second_app, listener, std::future::pending()));

    let mut cards = Vec::new();
    for index in 0..3 {
        cards.push(new_card(&first, &format!("two{index}@example.com"), 1_000, "pay_now").await.1);
    }
    let mut a = Network::connect(&first).await;
    let mut b = Network { stream: TcpStream::connect(second_address).await.expect("connects"), buffer: Vec::new() };
    // Every card is asked for its whole amount by two merchants at once, one through each server.
    for (index, card) in cards.iter().enumerate() {
        a.send(&purchase(card, 1_000, 500 + index as u32, "SHOP-A")).await;
        b.send(&purchase(card, 1_000, 600 + index as u32, "SHOP-B")).await;
    }
    let mut approvals = 0;
    for _ in &cards {
        for answer in [a.receive().await, b.receive().await] {
            if answer.get(39) == Some("00") {
                approvals += 1;
            }
        }
    }
    assert_eq!(approvals, cards.len(), "each card approved exactly once across both servers");
    for card in &cards {
        assert_eq!(card_view(&first, card).await["held"], 1_000);
    }
    first.assert_ledger_verifies().await;
}
