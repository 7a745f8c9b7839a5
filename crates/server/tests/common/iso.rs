//! An ISO 8583 client for tests: framed messages over real TCP, and the cards and purchases they carry.

use std::time::Duration;

use ghostcard_iso8583::framing::{Frame, frame, next_frame};
use ghostcard_iso8583::{Message, decode, encode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TestApp;

/// A network client: sends framed messages, reads framed answers.
pub struct Network {
    pub stream: TcpStream,
    pub buffer: Vec<u8>,
}

impl Network {
    pub async fn connect(app: &TestApp) -> Network {
        Network { stream: TcpStream::connect(app.network).await.expect("connects"), buffer: Vec::new() }
    }

    pub async fn send(&mut self, message: &Message) {
        let bytes = frame(&encode(message).expect("encodes")).expect("small");
        self.stream.write_all(&bytes).await.expect("sends");
    }

    pub async fn receive(&mut self) -> Message {
        loop {
            if let Frame::Message { body, consumed } = next_frame(&self.buffer, 65_535) {
                let message = decode(body).expect("a valid response");
                self.buffer.drain(..consumed);
                return message;
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("answer in time")
                .expect("reads");
            assert!(read > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// The next answer, or `None` when the server closed the connection first.
    pub async fn receive_or_close(&mut self) -> Option<Message> {
        loop {
            if let Frame::Message { body, consumed } = next_frame(&self.buffer, 65_535) {
                let message = decode(body).expect("a valid response");
                self.buffer.drain(..consumed);
                return Some(message);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
            }
        }
    }

    pub async fn exchange(&mut self, message: &Message) -> Message {
        self.send(message).await;
        self.receive().await
    }

    /// True when the server closed the connection (reading gives end of file).
    pub async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// A revealed card: number, expiry YYMM, CVV2, and its id.
#[derive(Clone)]
pub struct Card {
    pub id: String,
    pub number: String,
    pub yymm: String,
    pub cvv: String,
}

pub async fn new_card(app: &TestApp, email: &str, amount: i64, plan: &str) -> (String, Card) {
    let (cardholder, source) = app.cardholder_with_funding(email, "4242424242424242").await;
    let (_, card) = app.card(&cardholder, &source, amount, plan).await;
    let id = card["id"].as_str().expect("id");
    (cardholder, reveal(app, id).await)
}

/// The card `id`'s details, revealed through the API.
pub async fn reveal(app: &TestApp, id: &str) -> Card {
    let (_, revealed) = app.post(&format!("/v1/cards/{id}/reveal"), json!({})).await;
    let yymm = format!(
        "{:02}{:02}",
        revealed["exp_year"].as_i64().expect("year") % 100,
        revealed["exp_month"].as_i64().expect("month")
    );
    Card {
        id: id.to_owned(),
        number: revealed["number"].as_str().expect("number").to_owned(),
        yymm,
        cvv: revealed["cvv"].as_str().expect("cvv").to_owned(),
    }
}

/// A 0100 purchase of `amount` from merchant `merchant` with STAN `stan`.
pub fn purchase(card: &Card, amount: i64, stan: u32, merchant: &str) -> Message {
    let mut message = Message::new("0100");
    message
        .set(2, card.number.clone())
        .set(3, "000000")
        .set(4, format!("{amount:012}"))
        .set(7, "1126120000")
        .set(11, format!("{stan:06}"))
        .set(14, card.yymm.clone())
        .set(18, "5732")
        .set(32, "123456")
        .set(37, format!("RRN{stan:09}"))
        .set(41, "TERM0001")
        .set(42, format!("{merchant:<15}"))
        .set(43, format!("{:<25}{:<13}US", "CORNER BOOKS", "SPRINGFIELD"))
        .set(48, format!("9203{}", card.cvv))
        .set(49, "840");
    message
}
