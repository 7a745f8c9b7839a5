//! `ghostcard example-decider`: an example decision endpoint to try the issuer's real-time decisions with.

use std::time::Duration;

use anyhow::{Context, Result};
use ghostcard_harness::example_decider::{self, Policy};

#[derive(Debug, clap::Args)]
pub struct Arguments {
    /// Where to listen; register http://ADDRESS/decide with POST /v1/decision-endpoints.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "HOST:PORT")]
    listen: String,
    /// The endpoint's signing secret (whsec_…), shown once when it was registered; requests not signed with it
    /// are refused (401).
    #[arg(long, env = "GHOSTCARD_DECIDER_SECRET", value_name = "WHSEC")]
    secret: String,
    /// Decline amounts above this, in minor units (10000 = 100.00 USD).
    #[arg(long, value_name = "AMOUNT")]
    decline_above: Option<i64>,
    /// Decline this merchant category (repeat for several).
    #[arg(long = "decline-mcc", value_name = "MCC")]
    decline_mccs: Vec<String>,
    /// Wait this many milliseconds before answering (try a timeout: more than the endpoint's timeout_ms).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    delay_ms: u64,
    /// Print one JSON object per decision.
    #[arg(long)]
    json: bool,
}

pub const EXAMPLES: &str = "Try it in minutes against a sandbox server (ghostcard serve):
  curl -s -X POST localhost:8080/v1/decision-endpoints -H \"Authorization: Bearer $KEY\" \\
       -H 'Content-Type: application/json' -d '{\"url\": \"http://127.0.0.1:8787/decide\"}'
  ghostcard example-decider --secret whsec_... --decline-above 10000 --decline-mcc 5732
Then authorize (ghostcard simulate purchase, or POST /v1/simulate/authorize): purchases ghostcard would approve
are sent here; the authorization's decided_by says who decided.";

pub fn run(arguments: &Arguments) -> Result<()> {
    let key = example_decider::key_of(&arguments.secret)
        .context("--secret is the endpoint's signing secret, whsec_ followed by base64")?;
    let policy = Policy {
        decline_above: arguments.decline_above,
        decline_mccs: arguments.decline_mccs.clone(),
        delay: Duration::from_millis(arguments.delay_ms),
        json: arguments.json,
        quiet: false,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&arguments.listen)
            .await
            .with_context(|| format!("could not listen on {}; choose another with --listen", arguments.listen))?;
        eprintln!("deciding at http://{}/decide (Ctrl-C stops)", listener.local_addr()?);
        example_decider::serve(listener, key, policy).await.context("the decider stopped")
    })
}
