//! Webhook delivery with the Standard Webhooks scheme (<https://www.standardwebhooks.com>): each delivery carries
//! `webhook-id` (the event id, the same on every retry, so receivers can drop repeats), `webhook-timestamp` (Unix
//! seconds of the attempt, from the real clock even in sandbox mode, so receivers' replay checks hold) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the endpoint's secret
//! (`whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes).
//!
//! A delivery is a job: it fails on anything but a 2xx answer within the timeout and is retried after 5 s, 5 min,
//! 30 min, 2 h, 5 h, 10 h and 10 h (eight attempts in all, the first at once); when the last fails, the job is
//! dead and the endpoint is marked `failing` (a later successful delivery marks it `enabled` again).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ghostcard_domain::secret::Secret;
use ghostcard_store::{events, webhooks};
use hmac::{Hmac, Mac};
use rand::{Rng, RngExt};
use sha2::Sha256;

use crate::App;
use crate::events::EventView;

/// The waits before the 2nd … 8th attempt.
pub const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: its wire form (shown once) and the key bytes.
pub fn new_secret(rng: &mut impl Rng) -> (Secret<String>, Secret<Vec<u8>>) {
    let key: [u8; 32] = rng.random();
    (Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(key))), Secret::new(key.to_vec()))
}

/// The `webhook-signature` value for a message.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The payload of a delivery job.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub event_id: String,
    pub endpoint_id: String,
}

/// One delivery attempt. `Ok` once the receiver answered 2xx; an error says why it did not.
pub async fn deliver(app: &App, delivery: &Delivery) -> Result<(), String> {
    let mut tx = app.store.read().await.map_err(|error| error.to_string())?;
    let event = events::get(&mut tx, &delivery.event_id).await.map_err(|error| error.to_string())?;
    let endpoint = webhooks::get(&mut tx, &delivery.endpoint_id).await.map_err(|error| error.to_string())?;
    let (Some(event), Some(endpoint)) = (event, endpoint) else {
        return Err("the event or the endpoint no longer exists".to_owned());
    };
    let view = EventView::render(&mut tx, &event, app.clock.now()).await.map_err(|error| error.to_string())?;
    drop(tx);
    let key = app
        .vault
        .decrypt_secret(&secret_context(&endpoint.id), endpoint.secret_version, &endpoint.secret_ciphertext)
        .map_err(|error| error.to_string())?;
    let body = serde_json::to_string(&view).map_err(|error| error.to_string())?;
    // Checked again at every delivery: the rules may be stricter now (a restart in live mode), and an address host
    // is not resolved, so the client's resolver would not see it.
    crate::outbound::check_url(&endpoint.url, app.config.mode).map_err(|error| error.to_string())?;
    let timestamp = Utc::now().timestamp();
    let answer = app
        .webhook_client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature(key.expose(), &event.id, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|error| format!("delivery failed: {}", without_url(&error)))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", answer.status().as_u16()))
    }
}

/// The associated data an endpoint's secret is encrypted with.
pub fn secret_context(endpoint_id: &str) -> String {
    format!("webhook_endpoint:{endpoint_id}")
}

/// When the next attempt after `attempts` failed ones is due, or `None` when they are exhausted.
pub fn retry_at(attempts: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    RETRY_DELAYS.get(index).map(|delay| now + chrono::Duration::from_std(*delay).unwrap_or_default())
}

/// A transport error without the URL (it may carry credentials in its query).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference tests.
    #[test]
    fn signature_matches_the_specification_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("base64");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        let now = Utc::now();
        assert_eq!(retry_at(1, now), Some(now + chrono::Duration::seconds(5)));
        assert_eq!(retry_at(7, now), Some(now + chrono::Duration::hours(10)));
        assert_eq!(retry_at(8, now), None);
    }
}
