//! Crash safety under load: a real `ghostcard serve` process is killed with SIGKILL several times while clients
//! keep sending authorizations, then restarted. Afterwards the ledger verifies, every approval a client received
//! is in the database exactly once, no hold exists without its approval, and reversals sent after the restarts
//! still find their originals.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ghostcard_harness::bench::provision;
use ghostcard_iso8583::framing::{Frame, frame, next_frame};
use ghostcard_iso8583::subfields::OriginalData;
use ghostcard_iso8583::{Message, decode, encode};
use ghostcard_server::App;
use ghostcard_server::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const CVK: &str = "0123456789ABCDEFFEDCBA9876543210";
const CARDS: usize = 12_000;
/// Per connection and round, at most.
const BURSTS: usize = 15;
const BURST: usize = 50;
const KILLS: usize = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port()
}

struct Server {
    child: Child,
    network: SocketAddr,
}

fn start(database_url: &str, http: u16, network: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_ghostcard"))
        .arg("serve")
        .env("GHOSTCARD_DATABASE_URL", database_url)
        .env("GHOSTCARD_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GHOSTCARD_ISO8583_ADDR", format!("127.0.0.1:{network}"))
        .env("GHOSTCARD_KEK", KEK)
        .env("GHOSTCARD_CVK", CVK)
        .env("GHOSTCARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    Server { child, network: SocketAddr::from(([127, 0, 0, 1], network)) }
}

async fn wait_until_listening(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn purchase(number: &str, yymm: &str, cvv: &str, acquirer: &str, stan: u32) -> Message {
    let mut message = Message::new("0100");
    message
        .set(2, number)
        .set(3, "000000")
        .set(4, "000000001000")
        .set(7, "1126120000")
        .set(11, format!("{stan:06}"))
        .set(14, yymm)
        .set(18, "5732")
        .set(32, acquirer)
        .set(37, format!("{acquirer:0>6}{stan:06}"))
        .set(42, "CRASH-SHOP     ")
        .set(48, format!("9203{cvv}"))
        .set(49, "840");
    message
}

/// Sends `messages` pipelined on one connection and collects the answers it gets before the connection dies.
async fn send_all(address: SocketAddr, messages: Vec<Message>) -> Vec<Message> {
    let Ok(mut stream) = TcpStream::connect(address).await else { return Vec::new() };
    let mut bytes = Vec::new();
    for message in &messages {
        bytes.extend(frame(&encode(message).expect("encodes")).expect("small"));
    }
    if stream.write_all(&bytes).await.is_err() {
        return Vec::new();
    }
    let mut answers = Vec::new();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while answers.len() < messages.len() {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => buffer.extend_from_slice(&chunk[..read]),
            _ => break,
        }
        while let Frame::Message { body, consumed } = next_frame(&buffer, 65_535) {
            answers.push(decode(body).expect("a valid answer"));
            buffer.drain(..consumed);
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_survive_sigkill_exactly_once() {
    let directory = ghostcard_harness::scratch::Directory::new("crash").expect("temp dir");
    let database_url = directory.sqlite_url("crash.db");
    let config = Config {
        database_url: database_url.clone(),
        kek: Some(KEK.to_owned()),
        cvk: Some(CVK.to_owned()),
        ..Config::default()
    };

    // Cards, provisioned before the server runs; their numbers come back for the clients.
    let app = App::start(config.clone()).await.expect("starts");
    let cards = provision(&app, CARDS, |_| {}).await.expect("provisions");
    app.store.close().await;
    drop(app);

    let mut approvals: HashMap<(String, String), String> = HashMap::new();
    let mut sent: HashMap<(String, String), Message> = HashMap::new();
    let mut next_card = 0;
    let mut stan = 0u32;
    for round in 0..=KILLS {
        let (http, network) = (free_port(), free_port());
        let mut server = start(&database_url, http, network);
        wait_until_listening(server.network).await;
        // Four connections keep sending bursts until the server dies under them (or the round's cards run out).
        let mut bursts = Vec::new();
        for connection in 0..4 {
            let acquirer = format!("{}", 200_000 + round * 10 + connection);
            let mut rounds = Vec::new();
            for _ in 0..BURSTS {
                let mut messages = Vec::new();
                for _ in 0..BURST {
                    let card = &cards[next_card];
                    next_card += 1;
                    stan += 1;
                    let message = card_purchase(card, &acquirer, stan);
                    sent.insert((acquirer.clone(), format!("{stan:06}")), message.clone());
                    messages.push(message);
                }
                rounds.push(messages);
            }
            let address = server.network;
            bursts.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for messages in rounds {
                    let expected = messages.len();
                    let received = send_all(address, messages).await;
                    let complete = received.len() == expected;
                    answers.extend(received);
                    if !complete {
                        break;
                    }
                }
                answers
            }));
        }
        if round < KILLS {
            tokio::time::sleep(Duration::from_millis(300 + 150 * round as u64)).await;
            server.child.kill().expect("SIGKILL");
            let _ = server.child.wait();
        }
        for burst in bursts {
            for answer in burst.await.expect("burst") {
                if answer.get(39) == Some("00") {
                    let key =
                        (answer.get(32).unwrap_or_default().to_owned(), answer.get(11).unwrap_or_default().to_owned());
                    approvals.insert(key, answer.get(38).unwrap_or_default().to_owned());
                }
            }
        }
        if round == KILLS {
            // Reversals of approvals received before the crashes still find their originals.
            let reversals: Vec<Message> = approvals
                .keys()
                .take(20)
                .enumerate()
                .map(|(index, key)| {
                    let original = &sent[key];
                    let mut reversal = Message::new("0400");
                    for number in [2, 3, 4, 32, 37, 42, 49] {
                        reversal.set(number, original.get(number).unwrap_or_default());
                    }
                    reversal.set(7, "1126130000").set(11, format!("{:06}", 900_000 + index));
                    reversal.set(90, OriginalData::build("0100", &key.1, "1126120000", &key.0));
                    reversal
                })
                .collect();
            let expected = reversals.len();
            let answers = send_all(server.network, reversals).await;
            assert_eq!(answers.len(), expected);
            assert!(answers.iter().all(|answer| answer.get(39) == Some("00")), "{answers:?}");
            server.child.kill().expect("stops");
            let _ = server.child.wait();
        }
    }
    assert!(!approvals.is_empty(), "some approvals were received");
    // The kills must have cut load short, or this test shows nothing.
    assert!(approvals.len() < sent.len(), "every request was answered: the server was never killed under load");

    let app = App::start(config).await.expect("starts after the crashes");
    let mut tx = app.store.read().await.expect("reads");
    let report = ghostcard_store::ledger::verify(&mut tx).await.expect("verifies");
    assert!(report.ok, "{:?}", report.problems);
    for ((acquirer, stan), auth_code) in &approvals {
        let key = ghostcard_domain::engine::NetworkKey {
            acquirer_id: acquirer.clone(),
            stan: stan.clone(),
            transmission_time: "1126120000".to_owned(),
        };
        let found = ghostcard_store::authorizations::find_by_network_key(&mut tx, &key)
            .await
            .expect("reads")
            .unwrap_or_else(|| panic!("approval {acquirer}/{stan} that a client received is not in the database"));
        assert_eq!((found.response_code.as_str(), found.auth_code.as_deref()), ("00", Some(auth_code.as_str())));
    }
    // No hold without its approval: every open ledger hold belongs to an approved authorization and the amounts
    // agree; reversed authorizations hold nothing.
    let held: i64 = report.currencies.get("USD").map_or(0, |totals| totals.open_holds);
    let mut authorized_held = 0;
    let mut page = ghostcard_store::cards::list(&mut tx, None, None, 100, None).await.expect("lists");
    loop {
        for card in &page.rows {
            authorized_held += card.held;
        }
        if !page.has_more {
            break;
        }
        let last = page.rows.last().map(|card| card.id.clone());
        page = ghostcard_store::cards::list(&mut tx, None, None, 100, last.as_deref()).await.expect("lists");
    }
    assert_eq!(held, authorized_held, "the ledger holds exactly what the cards say is held");
}

fn card_purchase(card: &ghostcard_harness::bench::ProvisionedCard, acquirer: &str, stan: u32) -> Message {
    purchase(card.number(), card.yymm(), card.cvv(), acquirer, stan)
}
