//! `ghostcard simulate …`: an acquirer simulator. It sends real ISO 8583 messages to a running server's network
//! listener and prints the decoded answer (card number and CVV2 masked).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use ghostcard_iso8583::framing::{Frame, frame, next_frame};
use ghostcard_iso8583::subfields::{OriginalData, build_replacement_amount, build_tags};
use ghostcard_iso8583::{Message, decode, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The server's ISO 8583 listener.
    #[arg(long, default_value = "127.0.0.1:8583", value_name = "HOST:PORT")]
    server: SocketAddr,
    /// Print the answer's fields as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct Purchase {
    /// The card number (from POST /v1/cards/ID/reveal).
    #[arg(long)]
    card: String,
    /// The printed expiry, YYMM.
    #[arg(long)]
    expiry: Option<String>,
    /// The CVV2; omitted, no CVV2 is sent.
    #[arg(long)]
    cvv: Option<String>,
    /// Amount in minor units (1500 = 15.00 USD); 0 is an account verification.
    #[arg(long)]
    amount: u64,
    /// ISO 4217 numeric currency.
    #[arg(long, default_value = "840")]
    currency: String,
    /// Merchant (card acceptor) id, field 42.
    #[arg(long, default_value = "SIMULATED-SHOP")]
    merchant: String,
    #[arg(long, default_value = "5732")]
    mcc: String,
    /// Merchant country, ISO 3166 alpha-2 (field 43).
    #[arg(long, default_value = "US")]
    country: String,
    /// Acquiring institution id, field 32.
    #[arg(long, default_value = "123456")]
    acquirer: String,
    /// Processing code: 000000 purchase, 200000 refund, 010000 cash.
    #[arg(long, default_value = "000000")]
    processing_code: String,
    /// System trace audit number; default: from the clock.
    #[arg(long)]
    stan: Option<u32>,
    /// Send as a 0200 financial request (authorize and capture at once).
    #[arg(long)]
    financial: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SimulateCommand {
    /// Send a 0100 authorization (or with --financial a 0200) and print the 0110 answer
    #[command(
        after_long_help = "Example:\n  ghostcard simulate authorize --card 4242421234567890 --expiry 2911 --cvv 123 --amount 1500"
    )]
    Authorize {
        #[command(flatten)]
        purchase: Purchase,
        #[command(flatten)]
        target: Target,
    },
    /// Send a 0120 advice (a stand-in approval the network already gave) and print the 0130 acknowledgment
    Advice {
        #[command(flatten)]
        purchase: Purchase,
        #[command(flatten)]
        target: Target,
    },
    /// Send a 0400 reversal of an earlier authorization and print the 0410 answer
    #[command(after_long_help = "Example (full reversal of the authorization sent with STAN 123 at 1126120000):\n  \
ghostcard simulate reverse --card 4242421234567890 --amount 1500 --original-stan 123 --original-time 1126120000")]
    Reverse {
        #[arg(long)]
        card: String,
        /// The original amount, minor units.
        #[arg(long)]
        amount: u64,
        /// The original's STAN (field 11).
        #[arg(long)]
        original_stan: u32,
        /// The original's transmission time, MMDDhhmmss (field 7).
        #[arg(long)]
        original_time: String,
        /// The amount that stands after a partial reversal (field 95); omitted, the reversal is full.
        #[arg(long)]
        replacement: Option<u64>,
        #[arg(long, default_value = "123456")]
        acquirer: String,
        #[arg(long, default_value = "840")]
        currency: String,
        /// Send a 0420 reversal advice instead of a 0400.
        #[arg(long)]
        advice: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send a 0800 echo and print the 0810 answer
    Echo {
        #[command(flatten)]
        target: Target,
    },
}

fn transmission_time() -> String {
    Utc::now().format("%m%d%H%M%S").to_string()
}

fn stan(given: Option<u32>) -> String {
    format!("{:06}", given.unwrap_or_else(|| Utc::now().timestamp_subsec_micros() % 1_000_000))
}

fn purchase_message(mti: &str, purchase: &Purchase) -> Result<Message> {
    let mut message = Message::new(mti);
    message
        .set(2, purchase.card.clone())
        .set(3, purchase.processing_code.clone())
        .set(4, format!("{:012}", purchase.amount))
        .set(7, transmission_time())
        .set(11, stan(purchase.stan))
        .set(18, purchase.mcc.clone())
        .set(32, purchase.acquirer.clone())
        .set(37, format!("{:0>12}", Utc::now().timestamp_millis() % 1_000_000_000_000))
        .set(41, "SIMTERM1")
        .set(42, format!("{:<15.15}", purchase.merchant))
        .set(43, format!("{:<25}{:<13}{:2.2}", "GHOSTCARD SIMULATOR", "LOCALHOST", purchase.country))
        .set(49, purchase.currency.clone());
    if let Some(expiry) = &purchase.expiry {
        message.set(14, expiry.clone());
    }
    if let Some(cvv) = &purchase.cvv {
        message.set(48, build_tags(&[("92", cvv)]).context("--cvv is 3 digits")?);
    }
    if mti == "0120" {
        message.set(39, "00");
    }
    Ok(message)
}

pub fn run(command: SimulateCommand) -> Result<()> {
    let (message, target) = match command {
        SimulateCommand::Authorize { purchase, target } => {
            (purchase_message(if purchase.financial { "0200" } else { "0100" }, &purchase)?, target)
        }
        SimulateCommand::Advice { purchase, target } => (purchase_message("0120", &purchase)?, target),
        SimulateCommand::Reverse {
            card,
            amount,
            original_stan,
            original_time,
            replacement,
            acquirer,
            currency,
            advice,
            target,
        } => {
            let mut message = Message::new(if advice { "0420" } else { "0400" });
            message
                .set(2, card)
                .set(3, "000000")
                .set(4, format!("{amount:012}"))
                .set(7, transmission_time())
                .set(11, stan(None))
                .set(32, acquirer.clone())
                .set(37, format!("{:0>12}", Utc::now().timestamp_millis() % 1_000_000_000_000))
                .set(49, currency)
                .set(90, OriginalData::build("0100", &format!("{original_stan:06}"), &original_time, &acquirer));
            if let Some(replacement) = replacement {
                message.set(95, build_replacement_amount(i64::try_from(replacement)?));
            }
            (message, target)
        }
        SimulateCommand::Echo { target } => {
            let mut message = Message::new("0800");
            message.set(7, transmission_time()).set(11, stan(None)).set(70, "301");
            (message, target)
        }
    };
    if let Err(error) = message.check_formats() {
        bail!("the message would be malformed: {error}; check the options");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(exchange(target.server, &message))?;
    if target.json {
        let mut fields = serde_json::Map::new();
        fields.insert("mti".to_owned(), answer.mti().into());
        for number in answer.numbers() {
            let value = if number == 2 {
                mask(answer.get(2).unwrap_or_default())
            } else {
                answer.get(number).unwrap_or_default().to_owned()
            };
            fields.insert(number.to_string(), value.into());
        }
        println!("{}", serde_json::Value::Object(fields));
    } else {
        println!("sent     {}", message.masked());
        println!("received {}", answer.masked());
        println!("response code {}", answer.get(39).unwrap_or("(none)"));
    }
    Ok(())
}

fn mask(number: &str) -> String {
    if number.len() > 10 {
        format!("{}{}{}", &number[..6], "*".repeat(number.len() - 10), &number[number.len() - 4..])
    } else {
        "*".repeat(number.len())
    }
}

async fn exchange(server: SocketAddr, message: &Message) -> Result<Message> {
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .with_context(|| format!("cannot connect to {server}; is `ghostcard serve` running? (see --server)"))?;
    let bytes = frame(&encode(message)?).context("message too long")?;
    stream.write_all(&bytes).await?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Frame::Message { body, .. } = next_frame(&buffer, 65_535) {
            return decode(body).map_err(|failure| anyhow::anyhow!("the answer is not valid ISO 8583: {failure}"));
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .context("no answer within 10 s")??;
        if read == 0 {
            bail!("the server closed the connection without answering");
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}
