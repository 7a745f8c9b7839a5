//! Descriptor exhaustion: a real `ghostcard serve` process limited to 256 open files (`ulimit -n 256`) meets 300 idle
//! HTTP connections and 300 idle ISO 8583 connections. The health check is still answered within 10 s, the card
//! network's connection still answers echo tests, and the log stays small (repeated failures are rate-limited).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use ghostcard_iso8583::framing::{Frame, frame, next_frame};
use ghostcard_iso8583::{Message, decode, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port()
}

async fn wait_until_listening(address: SocketAddr) {
    for _ in 0..600 {
        if TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up");
}

async fn echo(stream: &mut TcpStream, stan: u32) -> Option<Message> {
    let mut message = Message::new("0800");
    message.set(7, "1126120000").set(11, format!("{stan:06}")).set(70, "301");
    stream.write_all(&frame(&encode(&message).expect("encodes")).expect("small")).await.ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Frame::Message { body, .. } = next_frame(&buffer, 65_535) {
            return decode(body).ok();
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await.ok()?.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_descriptors_still_answers_health_checks_and_the_network() {
    let directory = ghostcard_harness::scratch::Directory::new("descriptors").expect("temp dir");
    let (http, network) = (free_port(), free_port());
    let log = directory.path().join("serve.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" serve > \"$1\" 2>&1")
        .arg(env!("CARGO_BIN_EXE_ghostcard"))
        .arg(&log)
        .env("GHOSTCARD_DATABASE_URL", directory.sqlite_url("ghostcard.db"))
        .env("GHOSTCARD_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("GHOSTCARD_ISO8583_ADDR", format!("127.0.0.1:{network}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let server = KillOnDrop(child);
    let (http, network) = (SocketAddr::from(([127, 0, 0, 1], http)), SocketAddr::from(([127, 0, 0, 1], network)));
    tokio::time::timeout(Duration::from_secs(120), flood(http, network)).await.expect("the scenario finished in time");
    drop(server);
    let written = std::fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(written < 64 * 1024, "the log stayed small: {written} bytes\n{}", &text[..text.len().min(4000)]);
    assert!(text.contains("connection limits lowered"), "the lowered limits are said: {text}");
}

/// Kills the server when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn flood(http: SocketAddr, network: SocketAddr) {
    wait_until_listening(http).await;
    wait_until_listening(network).await;
    let mut card_network = TcpStream::connect(network).await.expect("connects");
    assert_eq!(
        echo(&mut card_network, 1).await.and_then(|answer| answer.get(39).map(str::to_owned)).as_deref(),
        Some("00")
    );

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(http).await.expect("connects"));
    }
    for _ in 0..300 {
        idle.push(TcpStream::connect(network).await.expect("connects"));
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let ready = client.get(format!("http://{http}/readyz")).send().await.expect("/readyz answered within 10 s");
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let answer = echo(&mut card_network, 2).await.expect("the network connection still answers");
    assert_eq!(answer.get(39), Some("00"));
    let mut late = TcpStream::connect(network).await.expect("connects");
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(idle);
    // A new network connection after the flood is served again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fresh = TcpStream::connect(network).await.expect("connects");
    let answer = echo(&mut fresh, 3).await.expect("a new network connection is served");
    assert_eq!(answer.get(39), Some("00"));
    drop(late.shutdown().await);
}
