//! `ghostcard demo`: one card's story told through the real server — started in this process on a temporary
//! SQLite database and a free local port — and its HTTP API, exactly as an app would drive it.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, ensure};
use ghostcard_server::App;
use ghostcard_server::config::Config;
use ghostcard_server::credentials::create_api_key;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Arguments {
    /// Print the story as one JSON document (amounts in minor units) instead of text.
    #[arg(long)]
    json: bool,
    /// Keep the temporary database (and print where it is) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// One chapter of the story: a title, what a person reads, and the API's own answers for scripts.
#[derive(Debug, Serialize)]
struct Step {
    title: String,
    lines: Vec<String>,
    facts: Value,
}

pub fn run(arguments: &Arguments) -> Result<()> {
    let directory =
        std::env::temp_dir().join(format!("ghostcard-demo-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&directory).with_context(|| format!("cannot create {}", directory.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let story = runtime.block_on(tell(&directory));
    if arguments.keep {
        eprintln!("The demo database is kept in {}", directory.display());
    } else {
        let _ = std::fs::remove_dir_all(&directory);
    }
    let steps = story?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "steps": steps }))?);
        return Ok(());
    }
    for (number, step) in steps.iter().enumerate() {
        println!("{}. {}", number + 1, step.title);
        for line in &step.lines {
            println!("   {line}");
        }
        println!();
    }
    Ok(())
}

/// A small client for the demo's server.
struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let value: Value = response.json().await.with_context(|| format!("{method} {path}: not JSON"))?;
        ensure!(status.is_success(), "{method} {path} answered {status}: {value}");
        Ok(value)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

async fn tell(directory: &std::path::Path) -> Result<Vec<Step>> {
    let database: PathBuf = directory.join("demo.db");
    let config = Config {
        database_url: format!("sqlite://{}", database.display()),
        http_addr: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    let app = App::start(config).await?;
    let (_, key) = create_api_key(&app.store, "demo", "demo", app.clock.now()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ghostcard_server::serve(app.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let client = Client { http: reqwest::Client::new(), base: base.clone(), key };
    let story = chapters(&client, &base).await;
    let _ = stop.send(());
    let _ = server.await;
    app.store.close().await;
    story
}

fn id(value: &Value) -> Result<String> {
    value["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no id in {value}"))
}

fn usd(minor: &Value) -> String {
    let minor = minor.as_i64().unwrap_or(0);
    format!("{}.{:02} USD", minor / 100, minor % 100)
}

fn schedule(plan: &Value) -> Vec<String> {
    plan["installments"]
        .as_array()
        .map(|installments| {
            installments
                .iter()
                .map(|installment| {
                    format!(
                        "  {}. due {}  {:>10}  {}",
                        installment["seq"],
                        installment["due_date"].as_str().unwrap_or(""),
                        usd(&installment["amount"]),
                        installment["status"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn chapters(client: &Client, base: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let card_id = opening(client, base, &mut steps).await?;
    let authorization_id = purchases(client, &card_id, &mut steps).await?;
    afterwards(client, &card_id, &authorization_id, &mut steps).await?;
    Ok(steps)
}

/// The server starts, Ada signs up, links a funding card and gets a card. Returns the card's id.
async fn opening(client: &Client, base: &str, steps: &mut Vec<Step>) -> Result<String> {
    steps.push(Step {
        title: "A ghostcard server starts on a temporary SQLite database".to_owned(),
        lines: vec![format!("It listens on {base}; everything below goes through its HTTP API with an API key.")],
        facts: json!({ "base": base }),
    });

    let cardholder =
        client.post("/v1/cardholders", json!({"email": "ada@example.com", "name": "Ada", "country": "US"})).await?;
    let cardholder_id = id(&cardholder)?;
    let source = client
        .post(
            &format!("/v1/cardholders/{cardholder_id}/funding-sources"),
            json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
        )
        .await?;
    let power = client.get(&format!("/v1/cardholders/{cardholder_id}/purchase-power")).await?;
    steps.push(Step {
        title: "Ada signs up and links her debit card".to_owned(),
        lines: vec![
            format!(
                "Funding card: {} ending {}.",
                source["brand"].as_str().unwrap_or(""),
                source["last4"].as_str().unwrap_or("")
            ),
            format!(
                "Purchase power: {} available of a {} limit (a new cardholder starts at the base).",
                usd(&power["available"]),
                usd(&power["limit"])
            ),
        ],
        facts: json!({ "cardholder": cardholder, "funding_source": source, "purchase_power": power }),
    });

    let card = client
        .post("/v1/cards", json!({"cardholder_id": cardholder_id, "amount": 4_500, "currency": "USD", "funding_source_id": id(&source)?, "plan": "pay_in_4"}))
        .await?;
    let card_id = id(&card)?;
    let revealed = client.post(&format!("/v1/cards/{card_id}/reveal"), json!({})).await?;
    ensure!(
        revealed["number"].as_str().is_some_and(|number| number.ends_with(card["last4"].as_str().unwrap_or("-"))),
        "the reveal matches the card"
    );
    steps.push(Step {
        title: "Ada asks for a one-time card for 45.00 USD, to pay in 4".to_owned(),
        lines: vec![
            format!(
                "Card {}******{}, expires {:02}/{}, usable until {}.",
                card["bin"].as_str().unwrap_or(""),
                card["last4"].as_str().unwrap_or(""),
                card["exp_month"].as_i64().unwrap_or(0),
                card["exp_year"].as_i64().unwrap_or(0) % 100,
                card["valid_until"].as_str().unwrap_or("")
            ),
            "She reveals the number and CVV2 (audited; the CVV2 is computed, never stored). The demo shows neither."
                .to_owned(),
        ],
        facts: json!({ "card": card }),
    });
    Ok(card_id)
}

/// Two merchants try the card: the first is approved, the second declined. Returns the approval's id.
async fn purchases(client: &Client, card_id: &str, steps: &mut Vec<Step>) -> Result<String> {
    let approved = client
        .post("/v1/simulate/authorize", json!({"card_id": card_id, "amount": 4_000, "mcc": "5942", "merchant_id": "BOOKSHOP-0001", "merchant_name": "Corner Books", "country": "US"}))
        .await?;
    ensure!(approved["response_code"] == "00", "the first purchase is approved: {approved}");
    steps.push(Step {
        title: "A bookshop asks for 40.00 USD".to_owned(),
        lines: vec![format!(
            "Approved ({}), authorization code {}; the card is now bound to the bookshop.",
            approved["response_code"].as_str().unwrap_or(""),
            approved["network"]["auth_code"].as_str().unwrap_or("")
        )],
        facts: json!({ "authorization": approved }),
    });

    let declined = client
        .post("/v1/simulate/authorize", json!({"card_id": card_id, "amount": 500, "mcc": "5814", "merchant_id": "CAFE-0042", "merchant_name": "Cafe", "country": "US"}))
        .await?;
    ensure!(declined["decline_reason"] == "card_already_used", "the second purchase is declined: {declined}");
    steps.push(Step {
        title: "A café tries to charge 5.00 USD on the same card".to_owned(),
        lines: vec![format!(
            "Declined: {} ({}). {}",
            declined["decline_reason"].as_str().unwrap_or(""),
            declined["response_code"].as_str().unwrap_or(""),
            declined["decline_message"].as_str().unwrap_or("")
        )],
        facts: json!({ "authorization": declined }),
    });
    id(&approved)
}

/// Capture, merchant refund, reversal, refund of the unused amount, and the ledger check.
async fn afterwards(client: &Client, card_id: &str, authorization_id: &str, steps: &mut Vec<Step>) -> Result<()> {
    let cleared =
        client.post("/v1/simulate/clear", json!({"authorization_id": authorization_id, "amount": 3_000})).await?;
    let plan_id = cleared["plan_id"].as_str().context("the capture created a plan")?.to_owned();
    let plan = client.get(&format!("/v1/plans/{plan_id}")).await?;
    let mut lines = vec!["The other 10.00 USD stays held; the pay-in-4 plan starts with the capture:".to_owned()];
    lines.extend(schedule(&plan));
    steps.push(Step {
        title: "The bookshop captures 30.00 USD".to_owned(),
        lines,
        facts: json!({ "clearing": cleared, "plan": plan }),
    });

    let refund = client.post("/v1/simulate/refund", json!({"card_id": card_id, "amount": 1_000})).await?;
    let plan = client.get(&format!("/v1/plans/{plan_id}")).await?;
    let mut lines = vec!["It pays anything overdue first, then lowers the installments to come evenly:".to_owned()];
    lines.extend(schedule(&plan));
    steps.push(Step {
        title: "The bookshop refunds 10.00 USD".to_owned(),
        lines,
        facts: json!({ "clearing": refund, "plan": plan }),
    });

    let released = client.post("/v1/simulate/reverse", json!({"authorization_id": authorization_id})).await?;
    steps.push(Step {
        title: "The bookshop releases the rest of its hold".to_owned(),
        lines: vec![format!(
            "The authorization is {}: {} captured, {} still held.",
            released["status"].as_str().unwrap_or(""),
            usd(&released["captured"]),
            usd(&released["held"])
        )],
        facts: json!({ "authorization": released }),
    });

    let card = client.post(&format!("/v1/cards/{card_id}/refund-unused"), json!({})).await?;
    steps.push(Step {
        title: "Ada refunds the unused amount".to_owned(),
        lines: vec![format!(
            "The card's amount is now {} ({} captured, {} held, {} remaining); it is {}.",
            usd(&card["amount"]),
            usd(&card["captured"]),
            usd(&card["held"]),
            usd(&card["remaining_amount"]),
            card["status"].as_str().unwrap_or("")
        )],
        facts: json!({ "card": card }),
    });

    let ledger = client.get("/v1/ledger/verify").await?;
    ensure!(ledger["ok"] == true, "the ledger verifies: {ledger}");
    steps.push(Step {
        title: "The ledger verifies".to_owned(),
        lines: vec![format!(
            "{} transfers; USD postings sum to {}; open holds {}.",
            ledger["currencies"]["USD"]["transfers"],
            ledger["currencies"]["USD"]["postings_sum"],
            usd(&ledger["currencies"]["USD"]["open_holds"])
        )],
        facts: json!({ "ledger": ledger }),
    });
    Ok(())
}
