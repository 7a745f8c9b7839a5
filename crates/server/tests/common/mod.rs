//! What the server's integration tests share: a real server (HTTP and ISO 8583) on free ports, on SQLite or a
//! fresh PostgreSQL database, and a log capture.
#![allow(dead_code)]

pub mod iso;
pub mod web;

use std::sync::{Arc, Mutex, OnceLock};

use ghostcard_harness::scratch;
use ghostcard_server::App;
use ghostcard_server::config::Config;
use ghostcard_server::credentials::create_api_key;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const TEST_CVK: &str = "0123456789ABCDEFFEDCBA9876543210";
pub const TEST_KEK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// Everything logged by any test of this binary, at TRACE level, to check that no card data reaches a log.
pub fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = buffer.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || LogWriter(writer.clone()))
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            buffer
        })
        .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestApp {
    pub base: String,
    /// Where the ISO 8583 listener listens.
    pub network: std::net::SocketAddr,
    pub key: String,
    pub client: reqwest::Client,
    pub app: Arc<App>,
    _shutdown: tokio::sync::watch::Sender<bool>,
    /// SQLite: the database's directory, removed with the test app.
    _directory: Option<scratch::Directory>,
}

impl TestApp {
    pub async fn spawn(backend: Backend, name: &str) -> TestApp {
        TestApp::spawn_with(backend, name, |_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub async fn spawn_with(backend: Backend, name: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
        log_buffer();
        let (database_url, directory) = match backend {
            Backend::Sqlite => {
                let directory = scratch::Directory::new(&format!("api-{name}")).expect("temp dir");
                (directory.sqlite_url("ghostcard.db"), Some(directory))
            }
            Backend::Postgres => {
                let url =
                    scratch::postgres_database(&format!("ghostcard_api_{name}")).await.expect("PostgreSQL is running");
                (url, None)
            }
        };
        let mut config = Config {
            database_url,
            http_addr: "127.0.0.1:0".parse().expect("address"),
            cvk: Some(TEST_CVK.to_owned()),
            kek: Some(TEST_KEK.to_owned()),
            ..Config::default()
        };
        adjust(&mut config);
        let app = App::start(config).await.expect("server starts");
        let (_, key) = create_api_key(&app.store, "test", "test", app.clock.now()).await.expect("key");
        TestApp::serve(app, key, directory).await
    }

    /// A second server on this one's database (its configuration as it is now), as after a restart; the API key
    /// stays valid.
    pub async fn restarted(&self) -> TestApp {
        TestApp::serve(App::start(self.app.config.clone()).await.expect("restarts"), self.key.clone(), None).await
    }

    async fn serve(app: Arc<App>, key: String, directory: Option<scratch::Directory>) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let network_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let network = network_listener.local_addr().expect("address");
        let (shutdown, stopped) = tokio::sync::watch::channel(false);
        let mut http_stopped = stopped.clone();
        tokio::spawn(ghostcard_server::serve(app.clone(), listener, async move {
            let _ = http_stopped.wait_for(|stopped| *stopped).await;
        }));
        let mut network_stopped = stopped;
        tokio::spawn(ghostcard_server::network::run(app.clone(), network_listener, async move {
            let _ = network_stopped.wait_for(|stopped| *stopped).await;
        }));
        TestApp { base, network, key, client: reqwest::Client::new(), app, _shutdown: shutdown, _directory: directory }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body), None).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None, None).await
    }

    /// A cardholder with a funding card (`number`), returning (cardholder id, funding source id).
    pub async fn cardholder_with_funding(&self, email: &str, number: &str) -> (String, String) {
        let (status, cardholder) =
            self.post("/v1/cardholders", json!({"email": email, "name": "Ada", "country": "US"})).await;
        assert_eq!(status, StatusCode::CREATED, "{cardholder}");
        let id = cardholder["id"].as_str().expect("id").to_owned();
        let (status, source) = self
            .post(
                &format!("/v1/cardholders/{id}/funding-sources"),
                json!({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{source}");
        (id, source["id"].as_str().expect("id").to_owned())
    }

    pub async fn card(&self, cardholder: &str, source: &str, amount: i64, plan: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/cards",
            json!({"cardholder_id": cardholder, "amount": amount, "currency": "USD", "funding_source_id": source, "plan": plan}),
        )
        .await
    }

    pub async fn authorize(&self, card: &str, amount: i64, merchant: &str) -> Value {
        let (status, authorization) = self
            .post(
                "/v1/simulate/authorize",
                json!({"card_id": card, "amount": amount, "mcc": "5732", "merchant_id": merchant, "merchant_name": "Shop", "country": "US"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{authorization}");
        authorization
    }

    /// Asserts the ledger verifies and returns its number of transfers.
    pub async fn assert_ledger_verifies(&self) -> u64 {
        let (status, report) = self.get("/v1/ledger/verify").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["problems"].as_array().is_some_and(Vec::is_empty), "{report}");
        report["currencies"].as_object().map_or(0, |currencies| {
            currencies
                .values()
                .map(|totals| {
                    assert_eq!(totals["postings_sum"], 0, "{report}");
                    totals["transfers"].as_u64().unwrap_or(0)
                })
                .sum()
        })
    }
}
