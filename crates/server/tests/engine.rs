//! The one authorization engine on real databases: a stream decided as one batch (the group commit's path) stores
//! exactly what deciding it one request at a time stores — answers, card states, transitions, ledger and events.
//! The domain's property test checks the engine itself on random streams; this checks the store's snapshot and
//! writes around it, on SQLite and PostgreSQL.

mod common;

use std::collections::HashMap;

use common::{BACKENDS, Backend, TestApp};
use ghostcard_domain::card::MerchantBinding;
use ghostcard_domain::card_number::{CardNumber, Expiry};
use ghostcard_domain::country::Country;
use ghostcard_domain::decision::{AuthorizationRequest, Mcc, MessageClass, TransactionType};
use ghostcard_server::authorize::{CvvInput, Descriptors, Job, Outcome, Settlement, decide_alone, decide_in};
use serde_json::json;

/// A revealed card of the test.
struct Card {
    id: String,
    number: String,
    expiry: Expiry,
    cvv: String,
}

/// Cardholder A has cards 0, 1 and 2, cardholder B card 3.
async fn cards(app: &TestApp, name: &str) -> Vec<Card> {
    let mut cards = Vec::new();
    for (holder, amounts) in [("a", [2_500, 1_500, 1_000].as_slice()), ("b", [3_000].as_slice())] {
        let (cardholder, source) =
            app.cardholder_with_funding(&format!("{holder}-{name}@example.com"), "4242424242424242").await;
        for amount in amounts {
            let (status, card) = app.card(&cardholder, &source, *amount, "pay_now").await;
            let id = card["id"].as_str().unwrap_or_else(|| panic!("{status}: {card}")).to_owned();
            let (_, revealed) = app.post(&format!("/v1/cards/{id}/reveal"), json!({})).await;
            let expiry = Expiry::new(
                u16::try_from(revealed["exp_year"].as_i64().expect("year")).expect("year"),
                u8::try_from(revealed["exp_month"].as_i64().expect("month")).expect("month"),
            )
            .expect("expiry");
            cards.push(Card {
                id,
                number: revealed["number"].as_str().expect("number").to_owned(),
                expiry,
                cvv: revealed["cvv"].as_str().expect("cvv").to_owned(),
            });
        }
    }
    cards
}

/// (card index or `None` for a number that is no card, amount, merchant, CVV2 right, advice, STAN)
type Step = (Option<usize>, i64, &'static str, bool, bool, u32);

/// Every path of the engine: first use, a second merchant, a duplicate, CVV2 failures up to the rule that freezes
/// every card of the cardholder (card 2 is in no request), declines on the frozen cards, an advice posted past the
/// freeze, an unknown number, the other cardholder untouched.
const STREAM: [Step; 12] = [
    (Some(0), 2_000, "SHOP1", true, false, 1),
    (Some(0), 500, "SHOP2", true, false, 2),
    (Some(0), 2_000, "SHOP1", true, false, 1),
    (Some(3), 1_000, "SHOP3", true, false, 3),
    (Some(1), 100, "SHOP4", false, false, 4),
    (Some(1), 100, "SHOP4", false, false, 5),
    (Some(3), 500, "SHOP3", true, false, 6),
    (Some(1), 100, "SHOP4", false, false, 7),
    (Some(0), 100, "SHOP1", true, false, 8),
    (Some(1), 9_000, "SHOP5", true, true, 9),
    (None, 1_000, "SHOP1", true, false, 10),
    (Some(3), 3_000, "SHOP3", true, false, 11),
];

fn jobs(app: &TestApp, cards: &[Card]) -> Vec<Job> {
    STREAM
        .iter()
        .map(|&(card, amount, merchant, cvv_right, advice, stan)| {
            let (number, number_hash, expiry, cvv) = match card {
                Some(index) => {
                    let card = &cards[index];
                    let number = CardNumber::parse(&card.number).expect("a card number");
                    let cvv = if cvv_right { card.cvv.clone() } else { "000".to_owned() };
                    (Some(number.clone()), app.app.vault.number_hash(&number), card.expiry, cvv)
                }
                None => (
                    None,
                    app.app.vault.keyed_hash(b"4000000000000000"),
                    Expiry::new(2030, 1).expect("valid"),
                    "123".to_owned(),
                ),
            };
            Job::new(
                number,
                number_hash,
                AuthorizationRequest {
                    class: if advice { MessageClass::Advice } else { MessageClass::Authorization },
                    transaction_type: TransactionType::Purchase,
                    amount_minor: amount,
                    currency_numeric: 840,
                    expiry: Some(expiry),
                    mcc: Mcc(5732),
                    merchant: MerchantBinding { acquirer_id: "123456".to_owned(), merchant_id: merchant.to_owned() },
                    country: Some(Country::parse("US").expect("US")),
                },
                CvvInput::Received(cvv),
                Descriptors {
                    merchant_name: Some(format!("{merchant} STORE")),
                    stan: Some(format!("{stan:06}")),
                    rrn: Some(format!("RRN{stan:09}")),
                    transmission_time: Some("1207120000".to_owned()),
                    ..Descriptors::default()
                },
            )
        })
        .collect()
}

/// What a run stored, with ids replaced by positions (the two runs' ids differ).
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    answers: Vec<String>,
    cards: Vec<String>,
    transitions: Vec<String>,
    events: Vec<String>,
    transfers: u64,
}

async fn stored(app: &TestApp, cards: &[Card], outcomes: &[Outcome]) -> Stored {
    let mut names: HashMap<String, String> = HashMap::new();
    for (index, card) in cards.iter().enumerate() {
        names.insert(card.id.clone(), format!("card {index}"));
    }
    let mut answers = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        let (kind, record) = match outcome {
            Outcome::Decided(record) => ("decided", record),
            Outcome::Duplicate(record) => ("duplicate", record),
            Outcome::Ask(asked) => ("ask", &asked.authorization),
        };
        names.entry(record.id.clone()).or_insert_with(|| format!("authorization {index}"));
        answers.push(format!(
            "{kind} {} {} {} {:?} {:?} held {} {} card {:?} code {}",
            names[&record.id],
            record.kind.as_str(),
            record.response_code,
            record.decline_reason,
            record.flag,
            record.held,
            record.rule,
            record.card_id.as_ref().map(|id| &names[id]),
            record.auth_code.is_some(),
        ));
        assert!(record.decision.is_some(), "every decision keeps its record");
    }
    let mut card_states = Vec::new();
    let mut transitions = Vec::new();
    let mut tx = app.app.store.read().await.expect("reads");
    for card in cards {
        let row = ghostcard_store::cards::get(&mut tx, &card.id).await.expect("reads").expect("a card");
        card_states.push(format!(
            "{} {} held {} captured {} merchant {:?} {:?}",
            names[&card.id], row.status, row.held, row.captured, row.merchant_id, row.merchant_name
        ));
        for (to, reason, _) in ghostcard_store::cards::transitions(&mut tx, &card.id).await.expect("reads") {
            transitions.push(format!("{} {to} {reason}", names[&card.id]));
        }
    }
    let page = ghostcard_store::events::list(&mut tx, None, 100, None).await.expect("events");
    let mut events: Vec<String> = page
        .rows
        .iter()
        .filter(|event| {
            event.kind.starts_with("authorization.") || event.kind == "card.used" || event.kind == "fraud.flagged"
        })
        .map(|event| format!("{} {}", event.kind, event.subject.as_ref().map_or("?", |subject| &names[subject])))
        .collect();
    events.sort();
    transitions.sort();
    drop(tx);
    Stored { answers, cards: card_states, transitions, events, transfers: app.assert_ledger_verifies().await }
}

#[tokio::test]
async fn one_batch_stores_what_one_request_at_a_time_stores() {
    for backend in BACKENDS {
        let name = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let batched = TestApp::spawn(backend, &format!("engine_batch_{name}")).await;
        let batched_cards = cards(&batched, "batch").await;
        let jobs_batched = jobs(&batched, &batched_cards);
        let now = batched.app.clock.now();
        let mut tx = batched.app.store.begin().await.expect("begins");
        let outcomes = decide_in(&batched.app, &mut tx, &jobs_batched, now, None).await.expect("decides");
        ghostcard_store::commit(tx).await.expect("commits");
        let in_one_batch = stored(&batched, &batched_cards, &outcomes).await;

        let alone = TestApp::spawn(backend, &format!("engine_alone_{name}")).await;
        let alone_cards = cards(&alone, "alone").await;
        let mut outcomes = Vec::new();
        for job in jobs(&alone, &alone_cards) {
            outcomes.push(decide_alone(&alone.app, job, Settlement::HoldOnly).await.expect("decides"));
        }
        let one_at_a_time = stored(&alone, &alone_cards, &outcomes).await;

        assert_eq!(in_one_batch, one_at_a_time, "{name}");
        // The stream does reach every path it is meant to.
        let answers = in_one_batch.answers.join("\n");
        for expected in
            ["duplicate authorization 0", "cvv_mismatch", "card_frozen", "Some(\"card_frozen\")", "card_not_found"]
        {
            assert!(answers.contains(expected), "{expected} in\n{answers}");
        }
        assert!(in_one_batch.transitions.contains(&"card 2 frozen cvv_failures_24h".to_owned()), "{in_one_batch:?}");
        assert!(in_one_batch.cards[3].starts_with("card 3 used"), "{in_one_batch:?}");
    }
}
