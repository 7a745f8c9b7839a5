//! An example decision endpoint (`ghostcard example-decider`): checks each request's Standard Webhooks signature,
//! declines by a simple policy (amounts above a limit, some merchant categories), approves the rest, and prints
//! each decision. A starting point for an issuer's own, and the endpoint `ghostcard bench` measures with.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// What the example declines.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Decline amounts above this (minor units).
    pub decline_above: Option<i64>,
    /// Decline these merchant categories.
    pub decline_mccs: Vec<String>,
    /// Wait this long before answering (to try timeouts, or to stand in for real work).
    pub delay: Duration,
    /// Print one JSON object per decision instead of a sentence.
    pub json: bool,
    /// Print nothing (the benchmark).
    pub quiet: bool,
}

struct Decider {
    key: Vec<u8>,
    policy: Policy,
}

/// The signing key of a `whsec_…` secret.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(ghostcard_server::webhooks::SECRET_PREFIX)?).ok()
}

/// Serves decisions on `listener` (at any path) until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, key: Vec<u8>, policy: Policy) -> std::io::Result<()> {
    let decider = Arc::new(Decider { key, policy });
    let router = axum::Router::new().fallback(axum::routing::post(decide)).with_state(decider);
    axum::serve(listener, router).await
}

async fn decide(State(decider): State<Arc<Decider>>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    if let Err(problem) = verify(&decider.key, &headers, &body) {
        if !decider.policy.quiet {
            eprintln!("refused a request: {problem}");
        }
        return (StatusCode::UNAUTHORIZED, json!({"error": problem}).to_string());
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, json!({"error": "the body is not JSON"}).to_string());
    };
    let authorization = &request["data"]["authorization"];
    let amount = authorization["amount"].as_i64().unwrap_or(0);
    let mcc = authorization["merchant"]["mcc"].as_str().unwrap_or_default();
    let policy = &decider.policy;
    let decline_reason = if policy.decline_above.is_some_and(|limit| amount > limit) {
        Some("amount_above_limit")
    } else if policy.decline_mccs.iter().any(|blocked| blocked == mcc) {
        Some("merchant_category")
    } else {
        None
    };
    if !policy.delay.is_zero() {
        tokio::time::sleep(policy.delay).await;
    }
    let answer = match decline_reason {
        None => json!({"approve": true}),
        Some(reason) => json!({"approve": false, "decline_reason": reason}),
    };
    if !policy.quiet {
        print_decision(policy, authorization, decline_reason);
    }
    (StatusCode::OK, answer.to_string())
}

fn print_decision(policy: &Policy, authorization: &Value, decline_reason: Option<&str>) {
    let id = authorization["id"].as_str().unwrap_or("?");
    if policy.json {
        println!(
            "{}",
            json!({"authorization": id, "approve": decline_reason.is_none(), "decline_reason": decline_reason})
        );
        return;
    }
    let amount = authorization["amount"].as_i64().unwrap_or(0);
    let currency = authorization["currency"].as_str().unwrap_or("");
    let merchant = authorization["merchant"]["id"].as_str().unwrap_or("?");
    let mcc = authorization["merchant"]["mcc"].as_str().unwrap_or("?");
    let verdict = match decline_reason {
        None => "approve".to_owned(),
        Some(reason) => format!("decline ({reason})"),
    };
    println!("{verdict:<28} {id}  {}.{:02} {currency} at {merchant} ({mcc})", amount / 100, amount % 100);
}

/// Checks the Standard Webhooks headers: a signature under the key, made within five minutes.
fn verify(key: &[u8], headers: &HeaderMap, body: &str) -> Result<(), String> {
    let header =
        |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).ok_or(format!("no {name} header"));
    let id = header("webhook-id")?;
    let timestamp: i64 =
        header("webhook-timestamp")?.parse().map_err(|_| "a malformed webhook-timestamp".to_owned())?;
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
        return Err("the webhook-timestamp is more than five minutes off".to_owned());
    }
    let expected = ghostcard_server::webhooks::signature(key, id, timestamp, body);
    // Several signatures may be sent, separated by spaces.
    if header("webhook-signature")?.split(' ').any(|sent| sent == expected) {
        Ok(())
    } else {
        Err("the signature does not match the secret".to_owned())
    }
}
