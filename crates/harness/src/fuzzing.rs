//! What the server's fuzz targets (`fuzz/`) run, kept here so that the test suite replays their corpora on the stable
//! toolchain (`crates/server/tests/fuzz_corpus.rs`). Each function takes arbitrary bytes, must never panic, and
//! asserts what ghostcard promises about such input.

use std::sync::Arc;

use crate::scratch;
use ghostcard_domain::card_number::{REDACTED_DIGIT_RUN, redact_digit_runs};
use ghostcard_iso8583::{decode, encode};
use serde::de::DeserializeOwned;

use ghostcard_server::App;
use ghostcard_server::api::parse_json;
use ghostcard_server::authorizer::Authorizer;
use ghostcard_server::config::Config;

/// The test keys (never live ones): the network corpus's CVV2s are computed under this CVK.
const CVK: &str = "0123456789ABCDEFFEDCBA9876543210";
const KEK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// Cards provisioned for the network target: BIN 424242, account digits 000000000, 000000001, …
const CARDS: usize = 16;

/// A request body for the card and funding-source endpoints (and the other JSON bodies): whatever it is, parsing
/// answers a value or an error whose message and field name quote no digit run that could be a card number.
pub fn json_bodies(bytes: &[u8]) {
    check_body::<ghostcard_server::service::issuing::CreateCard>(bytes);
    check_body::<ghostcard_server::service::cardholders::AddFundingSource>(bytes);
    check_body::<ghostcard_server::service::cardholders::CreateCardholder>(bytes);
    check_body::<ghostcard_server::api::network::ClearingBatch>(bytes);
    check_body::<ghostcard_server::api::webhooks::CreateEndpoint>(bytes);
    check_body::<ghostcard_server::api::plans::PlanPayment>(bytes);
    check_body::<ghostcard_domain::controls::SpendingControls>(bytes);
}

fn check_body<T: DeserializeOwned>(bytes: &[u8]) {
    if let Err(error) = parse_json::<T>(bytes) {
        assert!(!error.message.is_empty(), "an error says what is wrong");
        for text in std::iter::once(error.message.as_str()).chain(error.param.as_deref()) {
            assert_eq!(redact_digit_runs(text), text, "no run of {REDACTED_DIGIT_RUN} digits in {text:?}");
        }
    }
}

/// A server on a fresh SQLite database with a few cards, answering ISO 8583 messages as the listener does.
pub struct NetworkTarget {
    runtime: tokio::runtime::Runtime,
    app: Arc<App>,
    authorizer: Authorizer,
    _directory: scratch::Directory,
}

impl NetworkTarget {
    /// Starts the server (sandbox mode, test keys) and provisions the cards the seeds use.
    pub fn new(name: &str) -> NetworkTarget {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let directory = scratch::Directory::new(name).expect("a scratch directory");
        let config = Config {
            database_url: directory.sqlite_url("fuzz.db"),
            cvk: Some(CVK.to_owned()),
            kek: Some(KEK.to_owned()),
            authorization_deadline_ms: 10_000,
            ..Config::default()
        };
        let (app, authorizer) = runtime.block_on(async {
            let app = App::start(config).await.expect("the server starts");
            crate::bench::provision(&app, CARDS, |_| {}).await.expect("cards");
            let authorizer = Authorizer::spawn(app.clone()).expect("the authorizer starts");
            (app, authorizer)
        });
        NetworkTarget { runtime, app, authorizer, _directory: directory }
    }

    /// One message body: what decodes is handled, and its answer is a response to it that encodes.
    pub fn run(&self, bytes: &[u8]) {
        let Ok(request) = decode(bytes) else { return };
        let mti = request.mti().to_owned();
        let response = self.runtime.block_on(ghostcard_server::network::handle(&self.app, &self.authorizer, request));
        assert_eq!(response.mti().get(..2), mti.get(..2), "the answer is of the request's class");
        assert!(response.get(39).is_some(), "every answer has a response code");
        assert!(encode(&response).is_ok(), "every answer encodes");
    }

    /// The ledger still verifies after everything run so far.
    pub fn assert_ledger_verifies(&self) {
        let report = self.runtime.block_on(async {
            let mut tx = self.app.store.read().await.expect("reads");
            ghostcard_store::ledger::verify(&mut tx).await.expect("verifies")
        });
        assert!(report.ok, "{:?}", report.problems);
    }
}
