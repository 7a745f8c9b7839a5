//! ghostcard as an attacker tries it: card data sent in the wrong places, control characters, hostile connections
//! and unauthenticated floods. Each test reproduces a finding of the hardening review (issue 19) and asserts that
//! the answer is a clear error and that nothing is kept or broken, on SQLite and PostgreSQL where storage is
//! involved.

mod common;

use common::{BACKENDS, TestApp};
use ghostcard_harness::scratch::tables_containing;
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

#[tokio::test]
async fn live_mode_refuses_weak_keys_and_the_sandbox_key_files_keys() {
    use ghostcard_server::App;
    use ghostcard_server::config::{Config, Mode};
    let directory = ghostcard_harness::scratch::Directory::new("hostile-weak-keys").expect("directory");
    let database_url = directory.sqlite_url("program.db");
    // A sandbox start writes this database's key file.
    let sandbox = App::start(Config { database_url: database_url.clone(), ..Config::default() }).await.expect("starts");
    drop(sandbox);
    let file = ghostcard_server::vault::read_sandbox_keys(&directory.path().join("program.db.keys")).expect("key file");
    let live = Config {
        database_url,
        mode: Mode::Live,
        kek: Some(common::TEST_KEK.to_owned()),
        cvk: Some(common::TEST_CVK.to_owned()),
        ..Config::default()
    };
    let cases = [
        (Some("00".repeat(32)), None, "GHOSTCARD_KEK", "every byte"),
        (Some("a5".repeat(32)), None, "GHOSTCARD_KEK", "every byte"),
        (None, Some("0123456789ABCDEF0123456789ABCDEF".to_owned()), "GHOSTCARD_CVK", "single DES"),
        (None, Some("0123456789ABCDEF0022446688AACCEE".to_owned()), "GHOSTCARD_CVK", "single DES"),
        (None, Some("00".repeat(16)), "GHOSTCARD_CVK", "every byte"),
        (Some(file.kek.to_hex().expose().clone()), None, "GHOSTCARD_KEK", "sandbox"),
        (None, Some(file.cvk.to_hex().expose().clone()), "GHOSTCARD_CVK", "sandbox"),
    ];
    for (kek, cvk, variable, reason) in cases {
        let config = Config { kek: kek.or(live.kek.clone()), cvk: cvk.or(live.cvk.clone()), ..live.clone() };
        let error = App::start(config).await.expect_err("a weak key is refused").to_string();
        assert!(error.contains(variable) && error.contains(reason), "{variable} {reason}: {error}");
        assert!(error.contains("openssl rand"), "says what to do: {error}");
    }
    // Good keys on a database of their own start.
    let fresh = Config { database_url: directory.sqlite_url("live.db"), ..live };
    assert!(App::start(fresh).await.is_ok());
}

#[tokio::test]
async fn cvk_versions_new_cards_use_the_newest_and_old_cards_keep_verifying() {
    use common::iso::{Network, new_card, purchase};
    use ghostcard_domain::card_number::{CardNumber, Expiry};
    use ghostcard_domain::cvv::Cvk;
    use ghostcard_server::vault::{self, Kek};
    const NEW_CVK: &str = "89ABCDEF01234567FEDCBA9876543210";
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "hostile_cvk").await;
        let (_, old_card) = new_card(&app, "old@example.com", 2_000, "pay_now").await;
        let kek = Kek::from_hex(common::TEST_KEK).expect("valid");
        let now = app.app.clock.now();
        let rng = &mut rand::rng();
        let weak = Cvk::from_hex("0123456789ABCDEF0123456789ABCDEF").expect("valid");
        let error = vault::add_cvk(&app.app.store, &kek, Some(weak), now, rng).await.expect_err("weak");
        assert!(error.to_string().contains("single DES"), "{error}");
        let same = Cvk::from_hex(common::TEST_CVK).expect("valid");
        assert!(vault::add_cvk(&app.app.store, &kek, Some(same.clone()), now, rng).await.is_err(), "already version 1");
        let new = Cvk::from_hex(NEW_CVK).expect("valid");
        assert_eq!(vault::add_cvk(&app.app.store, &kek, Some(new.clone()), now, rng).await.expect("adds"), 2);

        let restarted = app.restarted().await;
        assert_eq!(restarted.app.vault.cvk_versions(), vec![1, 2]);
        let (_, new_card_) = new_card(&restarted, "new@example.com", 2_000, "pay_now").await;
        let mut tx = restarted.app.store.read().await.expect("reads");
        let record = ghostcard_store::cards::get(&mut tx, &new_card_.id).await.expect("reads").expect("exists");
        assert_eq!(record.cvk_version, 2);
        drop(tx);
        // The revealed CVV2 is the new key's, by the algorithm computed here.
        let number = CardNumber::parse(&new_card_.number).expect("valid");
        let expiry = Expiry::parse_yymm(&new_card_.yymm).expect("valid");
        assert!(new.verify_cvv2(&number, expiry, &new_card_.cvv));
        let old_key_cvv = same.cvv2(&number, expiry);

        let mut network = Network::connect(&restarted).await;
        let answer = network.exchange(&purchase(&old_card, 1_500, 1, "SHOP1")).await;
        assert_eq!(answer.get(39), Some("00"), "a version 1 card still verifies");
        if old_key_cvv.expose() != &new_card_.cvv {
            let mut wrong = new_card_.clone();
            wrong.cvv = old_key_cvv.expose().clone();
            let answer = network.exchange(&purchase(&wrong, 1_500, 2, "SHOP2")).await;
            assert_eq!(answer.get(39), Some("N7"), "version 1's CVV2 is wrong for a version 2 card");
        }
        let answer = network.exchange(&purchase(&new_card_, 1_500, 3, "SHOP2")).await;
        assert_eq!(answer.get(39), Some("00"), "a version 2 card verifies under version 2");
        restarted.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn webhook_urls_reach_only_where_the_mode_allows_at_registration_and_at_delivery() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(common::Backend::Sqlite, "hostile_ssrf").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/hooks",
        "http://192.168.1.1/",
        "http://0x0a.1/",
        "http://[::ffff:169.254.169.254]/",
        "http://user:secret@127.0.0.1/",
        "gopher://127.0.0.1/",
    ] {
        let (status, answer) = app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["*"]})).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_url")), "{url}");
        assert_eq!(answer["error"]["param"], "url");
    }
    // A receiver on loopback: sandbox mode allows it (tests and local trials need it).
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let url = format!("http://{}/hooks", receiver.local_addr().expect("address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = receiver.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    let (status, endpoint) = app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["*"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let (cardholder, source) = app.cardholder_with_funding("one@example.com", "4242424242424242").await;
    assert_eq!(app.card(&cardholder, &source, 1_000, "pay_now").await.0, StatusCode::CREATED);
    let later = app.app.clock.now() + chrono::Duration::seconds(10);
    ghostcard_server::jobs::run_due(&app.app, later).await.expect("runs");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the sandbox delivered to loopback");

    // The same database in live mode: loopback is refused at delivery too, before any connection.
    let live = ghostcard_server::App::start(ghostcard_server::config::Config {
        mode: ghostcard_server::config::Mode::Live,
        ..app.app.config.clone()
    })
    .await
    .expect("starts live");
    assert_eq!(app.card(&cardholder, &source, 1_000, "pay_now").await.0, StatusCode::CREATED);
    ghostcard_server::jobs::run_due(&live, chrono::Utc::now() + chrono::Duration::seconds(10)).await.expect("runs");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "live mode never connected");
    let mut tx = live.store.read().await.expect("reads");
    let jobs = ghostcard_store::jobs::list(&mut tx, None, Some("webhook"), 10, None).await.expect("lists");
    assert!(
        jobs.rows.iter().any(|job| job.last_error.as_deref().is_some_and(|error| error.contains("only to https"))),
        "the refusal is recorded: {:?}",
        jobs.rows.iter().map(|job| &job.last_error).collect::<Vec<_>>()
    );
    assert!(ghostcard_server::outbound::check_url(&url, ghostcard_server::config::Mode::Live).is_err());
}

/// Opens `count` TCP connections to `address` that send nothing.
async fn idle_connections(address: std::net::SocketAddr, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(tokio::net::TcpStream::connect(address).await.expect("connects"));
    }
    streams
}

/// True when the server closes `stream` within `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(limit, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn idle_and_slow_http_clients_cannot_lock_anyone_out() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(common::Backend::Sqlite, "hostile_http_idle", |config| {
        config.http_max_connections = 20;
        config.http_header_timeout_seconds = 1;
        config.http_body_timeout_seconds = 1;
    })
    .await;
    let address: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().expect("address");
    // Far more idle connections than the limit: a new request is still answered, at once.
    let mut idle = idle_connections(address, 60).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let ready = client.get(format!("{}/readyz", app.base)).send().await.expect("answered within 10 s");
    assert_eq!(ready.status(), StatusCode::OK);
    // Silent connections are closed after the header timeout (or sooner, to make room).
    assert!(closed_within(&mut idle[59], Duration::from_secs(5)).await, "a silent connection is closed");
    // A request head sent a byte at a time never completes: closed too.
    let mut slow = tokio::net::TcpStream::connect(address).await.expect("connects");
    slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n").await.expect("sends");
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await, "an unfinished head is closed");
    // A body that does not arrive in time is refused 408.
    let mut dripping = tokio::net::TcpStream::connect(address).await.expect("connects");
    dripping
        .write_all(b"POST /v1/cardholders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("sends");
    let mut answer = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut dripping, &mut answer))
            .await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.as_str().is_some_and(|text| text.contains("ghostcard_refused_total{reason=\"http_body_timeout\"} 1"))
    );
    drop(idle);
}

#[tokio::test]
async fn one_network_peer_cannot_hold_every_slot_and_keep_alives_do_not_keep_a_connection() {
    use common::iso::Network;
    use ghostcard_iso8583::Message;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(common::Backend::Sqlite, "hostile_iso_peer", |config| {
        config.iso8583_max_connections = 50;
        config.iso8583_max_connections_per_peer = 4;
        config.iso8583_idle_timeout_seconds = 2;
        config.iso8583_echo_interval_seconds = 60;
    })
    .await;
    // A fifth connection from the same address is closed at once; the four keep working.
    let mut held = idle_connections(app.network, 5).await;
    assert!(closed_within(&mut held[4], Duration::from_secs(2)).await, "over the per-peer limit");
    // Keep-alive frames (length 0) do not count as traffic: the connection still times out.
    let keeper = tokio::spawn({
        let mut stream = held.remove(0);
        async move {
            for _ in 0..40 {
                if stream.write_all(&[0, 0]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            closed_within(&mut stream, Duration::from_millis(100)).await
        }
    });
    assert!(keeper.await.expect("ran"), "a connection sending only keep-alives is closed after the idle timeout");
    // Echo tests count once per interval: a connection that only echoes every 100 ms times out as well…
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut echoing = Network::connect(&app).await;
    let mut echo = Message::new("0800");
    echo.set(7, "1126120000").set(11, "000001").set(70, "301");
    let started = std::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(6) {
        echoing.send(&echo).await;
        let Ok(answer) = tokio::time::timeout(Duration::from_secs(1), echoing.receive_or_close()).await else { break };
        let Some(answer) = answer else { break };
        assert_eq!(answer.get(39), Some("00"));
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered > 5, "echoes are answered");
    assert!(started.elapsed() < Duration::from_secs(6), "…and is closed once the idle timeout passes");
}

async fn audit_entries(app: &TestApp, action: &str) -> Vec<ghostcard_store::audit::AuditEntry> {
    let mut tx = app.app.store.read().await.expect("reads");
    ghostcard_store::audit::list(&mut tx, Some(action), 100).await.expect("lists").rows
}

#[tokio::test]
async fn failed_authentications_are_counted_per_origin_not_written_one_by_one() {
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "hostile_unauthenticated").await;
        let long_path = format!("/v1/cards/{}", "x".repeat(8_000));
        for attempt in 0..200 {
            let mut request = app.client.get(format!("{}{long_path}", app.base));
            if attempt % 2 == 0 {
                request = request.bearer_auth("gc_sk_wrong");
            }
            assert_eq!(request.send().await.expect("answer").status(), StatusCode::UNAUTHORIZED);
        }
        assert!(audit_entries(&app, "authentication.failed").await.is_empty(), "no durable write per failure");
        ghostcard_server::clients::write_failed_authentications(&app.app, true).await.expect("writes");
        let entries = audit_entries(&app, "authentication.failed").await;
        assert_eq!(entries.len(), 1, "one entry for the origin and minute");
        assert_eq!((entries[0].origin.as_deref(), entries[0].resource.as_deref()), (Some("127.0.0.1"), None));
        assert!(
            entries[0].detail.as_deref().is_some_and(|detail| detail.starts_with("200 failed")),
            "{:?}",
            entries[0]
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    for (trusted, expected) in [(vec![], "127.0.0.1"), (vec!["127.0.0.0/8".to_owned()], "203.0.113.7")] {
        let app = TestApp::spawn_with(common::Backend::Sqlite, "hostile_forwarded", |config| {
            config.trusted_proxies = trusted;
        })
        .await;
        let (cardholder, source) = app.cardholder_with_funding("fwd@example.com", "4242424242424242").await;
        let (_, card) = app.card(&cardholder, &source, 1_000, "pay_now").await;
        let response = app
            .client
            .post(format!("{}/v1/cards/{}/reveal", app.base, card["id"].as_str().expect("id")))
            .bearer_auth(&app.key)
            .header("X-Forwarded-For", "203.0.113.7")
            .header("X-Ghostcard-Origin", "198.51.100.1")
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        let reveals = audit_entries(&app, "card.reveal").await;
        assert_eq!(reveals[0].origin.as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn password_work_is_rate_limited_per_origin_and_sign_up_reveals_no_account() {
    use common::web::{cookies, hidden};
    let app = TestApp::spawn(common::Backend::Sqlite, "hostile_passwords").await;
    app.post(
        "/v1/cardholders",
        json!({"email": "taken@example.com", "name": "T", "country": "US", "password": "a long enough password"}),
    )
    .await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let page = client.get(format!("{}/app/sign-up", app.base)).send().await.expect("page");
    let jar = cookies(&page, vec![]).join("; ");
    let csrf = hidden(&page.text().await.expect("html"), "csrf");
    let sign_up = |email: &'static str| {
        let request = client.post(format!("{}/app/sign-up", app.base)).header("cookie", jar.clone()).form(&[
            ("csrf", csrf.as_str()),
            ("name", "Eve"),
            ("email", email),
            ("country", "US"),
            ("password", "another long password"),
        ]);
        async move { request.send().await.expect("answer") }
    };
    let taken = sign_up("taken@example.com").await;
    let text = taken.text().await.expect("page");
    assert!(text.contains("could not create an account") && !text.contains("exists"), "{text}");
    // Many sign-ins at once from one address: the first thirty are answered, the rest wait their turn (429).
    let attempts = (0..40).map(|_| {
        let request = client.post(format!("{}/app/sign-in", app.base)).header("cookie", jar.clone()).form(&[
            ("csrf", csrf.as_str()),
            ("email", "taken@example.com"),
            ("password", "guess"),
        ]);
        async move { request.send().await.expect("answer") }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let limited: Vec<_> = answers.iter().filter(|answer| answer.status() == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(!limited.is_empty(), "some attempts were limited");
    assert!(limited.iter().all(|answer| answer.headers().contains_key("retry-after")));
    assert!(
        answers
            .iter()
            .all(|answer| [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&answer.status()))
    );
}

#[tokio::test]
async fn the_same_web_form_sent_twice_does_its_work_once() {
    use common::web::{cookies, hidden, sign_in};
    for backend in BACKENDS {
        let app = TestApp::spawn(backend, "hostile_forms").await;
        let (_, holder) = app
            .post("/v1/cardholders", json!({"email": "two@example.com", "name": "Two", "country": "US", "password": "a long enough password"}))
            .await;
        let holder_id = holder["id"].as_str().expect("id").to_owned();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let url = |path: &str| format!("{}{path}", app.base);
        let (signed_in, jar) = sign_in(&client, &app.base, "two@example.com", "a long enough password").await;
        let jar = cookies(&signed_in, jar).join("; ");
        let get = |path: String| {
            let request = client.get(url(&path)).header("cookie", jar.clone());
            async move { request.send().await.expect("page").text().await.expect("html") }
        };
        // Sends `form` to `path` twice at once (a double click), then once more (a refresh), and returns the answers.
        let thrice = |path: String, form: Vec<(&'static str, String)>| {
            let send = |path: String, form: Vec<(&'static str, String)>| {
                let request = client.post(url(&path)).header("cookie", jar.clone()).form(&form);
                async move { request.send().await.expect("answer") }
            };
            async move {
                let (first, second) = tokio::join!(send(path.clone(), form.clone()), send(path.clone(), form.clone()));
                let third = send(path, form).await;
                [first, second, third]
            }
        };
        let location = |answer: &reqwest::Response| {
            answer.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned()
        };

        let dashboard = get("/app/dashboard".to_owned()).await;
        let (csrf, once) = (hidden(&dashboard, "csrf"), hidden(&dashboard, "once"));
        let answers = thrice(
            "/app/funding-sources".to_owned(),
            vec![
                ("csrf", csrf.clone()),
                ("once", once),
                ("number", "4242424242424242".to_owned()),
                ("exp_month", "12".to_owned()),
                ("exp_year", "2031".to_owned()),
                ("cvc", "123".to_owned()),
            ],
        )
        .await;
        assert!(answers.iter().all(|answer| location(answer) == "/app/dashboard?linked=1"), "every answer leads on");
        let mut tx = app.app.store.read().await.expect("reads");
        let sources = ghostcard_store::funding_sources::for_cardholder(&mut tx, &holder_id).await.expect("reads");
        drop(tx);
        assert_eq!(sources.len(), 1, "one funding card");

        let preview = client
            .post(url("/app/cards/preview"))
            .header("cookie", jar.clone())
            .form(&[
                ("csrf", csrf.as_str()),
                ("amount", "20.00"),
                ("plan", "pay_in_4"),
                ("funding_source_id", sources[0].id.as_str()),
            ])
            .send()
            .await
            .expect("preview")
            .text()
            .await
            .expect("html");
        let once = hidden(&preview, "once");
        let answers = thrice(
            "/app/cards".to_owned(),
            vec![
                ("csrf", csrf.clone()),
                ("once", once),
                ("amount", "2000".to_owned()),
                ("plan", "pay_in_4".to_owned()),
                ("funding_source_id", sources[0].id.clone()),
            ],
        )
        .await;
        let card_location = location(&answers[0]);
        assert!(card_location.starts_with("/app/cards/card_"), "{card_location}");
        assert!(answers.iter().all(|answer| location(answer) == card_location), "the same card each time");
        let (_, cards) = app.get(&format!("/v1/cards?cardholder_id={holder_id}")).await;
        assert_eq!(cards["data"].as_array().map(Vec::len), Some(1), "one card");
        let card_id = cards["data"][0]["id"].as_str().expect("id").to_owned();

        let card_page = get(format!("/app/cards/{card_id}")).await;
        let answers = thrice(
            format!("/app/cards/{card_id}/reveal"),
            vec![("csrf", csrf.clone()), ("once", hidden(&card_page, "once"))],
        )
        .await;
        let shown = answers.iter().filter(|answer| answer.status() == StatusCode::OK).count();
        assert_eq!(shown, 1, "the details are shown once");
        assert_eq!(audit_entries(&app, "card.reveal").await.len(), 1, "one reveal log entry");
        assert!(
            answers
                .iter()
                .filter(|answer| answer.status() == StatusCode::SEE_OTHER)
                .all(|answer| location(answer).ends_with("?done=reveal"))
        );

        let authorization = app.authorize(&card_id, 2_000, "SHOP1").await;
        app.post("/v1/simulate/clear", json!({"authorization_id": authorization["id"], "amount": 2_000})).await;
        let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
        let plan_id = card["plan_id"].as_str().expect("a plan").to_owned();
        // The first installment is collected at capture, by the job runner.
        ghostcard_server::jobs::run_due(&app.app, app.app.clock.now()).await.expect("the collection runs");
        let plan_page = get(format!("/app/plans/{plan_id}")).await;
        let answers = thrice(
            format!("/app/plans/{plan_id}/pay"),
            vec![("csrf", csrf.clone()), ("once", hidden(&plan_page, "once")), ("what", "next".to_owned())],
        )
        .await;
        assert!(answers.iter().all(|answer| location(answer).ends_with("?paid=1")), "every answer leads to the plan");
        ghostcard_server::jobs::run_due(&app.app, app.app.clock.now()).await.expect("the payment job runs");
        let (_, plan) = app.get(&format!("/v1/plans/{plan_id}")).await;
        let paid: Vec<&str> = plan["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|i| i["status"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            paid,
            vec!["paid", "paid", "scheduled", "scheduled"],
            "the first at capture, one early payment: {plan}"
        );
        app.assert_ledger_verifies().await;
    }
}

#[tokio::test]
async fn sqlite_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(common::Backend::Sqlite, "hostile_files").await;
    app.post("/v1/cardholders", json!({"email": "f@example.com", "name": "F", "country": "US"})).await;
    let database = app.app.config.database_url.trim_start_matches("sqlite://").to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let mode = std::fs::metadata(format!("{database}{suffix}")).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{database}{suffix}");
    }
}

#[tokio::test]
async fn a_flood_of_malformed_network_messages_is_answered_but_not_logged_line_by_line() {
    use common::iso::Network;
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(common::Backend::Sqlite, "hostile_iso_garbage").await;
    let mut network = Network::connect(&app).await;
    // MTI and STAN readable, then bytes after the last field: each is answered 30.
    let mut echo = ghostcard_iso8583::Message::new("0800");
    echo.set(7, "1207120000").set(11, "000001").set(70, "301");
    let mut body = ghostcard_iso8583::encode(&echo).expect("encodes");
    body.extend_from_slice(b"TRAILING");
    let framed = ghostcard_iso8583::framing::frame(&body).expect("small");
    let mut bytes = Vec::new();
    for _ in 0..2_000 {
        bytes.extend_from_slice(&framed);
    }
    network.stream.write_all(&bytes).await.expect("sends");
    for _ in 0..2_000 {
        let answer = network.receive().await;
        assert_eq!(answer.get(39), Some("30"));
    }
    let log = String::from_utf8_lossy(&common::log_buffer().lock().expect("log").clone()).to_string();
    let lines = log.lines().filter(|line| line.contains("malformed network message")).count();
    assert!((1..=10).contains(&lines), "{lines} log lines for 2,000 malformed messages");
    assert!(log.contains("suppressed"), "the held-back lines are counted");
}
