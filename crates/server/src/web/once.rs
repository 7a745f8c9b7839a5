//! One-time form tokens: every page with a form that changes something carries a random token (`once`), and the post
//! claims it as an idempotency key of the cardholder's (the API's records, [`ghostcard_store::idempotency`]). The same
//! form sent twice — a double click, a refresh, the back button — makes one card, one payment, one reveal log entry:
//! the second post finds the first's record and is sent where the first went.
//!
//! The change and its record commit together where they can (card creation, cancel, refund of the unused amount); a
//! plan payment completes its record once the payment is done or queued. A failed post gives its token back, so the
//! form can be corrected and sent again.

use std::time::Duration;

use ghostcard_store::idempotency::{self, Claim};

use super::PageError;
use crate::App;
use crate::service::IdempotencyClaim;

/// How long a second post waits for the first to finish before it is told to reload.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);
const IN_FLIGHT_POLL: Duration = Duration::from_millis(100);

/// What a post may do.
pub(super) enum Once {
    /// Nothing was done with this token yet: do it, and complete the claim.
    Go(IdempotencyClaim),
    /// It was done: the stored answer of the first post (where it led, or the API's answer).
    Done(String),
}

/// Claims `token` for a post to `path` by `subject` (the cardholder).
pub(super) async fn begin(app: &App, subject: &str, path: &str, token: &str) -> Result<Once, PageError> {
    if token.len() < 32
        || token.len() > 64
        || !token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        return Err(expired());
    }
    let claim = IdempotencyClaim { scope: format!("web:{subject}"), key: format!("form:{path}:{token}") };
    let request_hash = app.vault.keyed_hash(claim.key.as_bytes());
    let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
    loop {
        let mut tx = app.store.begin().await?;
        let now = app.clock.now();
        let claimed = idempotency::claim(
            &mut tx,
            &claim.scope,
            &claim.key,
            &request_hash,
            now,
            crate::service::IDEMPOTENCY_RETENTION,
            chrono::Duration::minutes(5),
        )
        .await?;
        ghostcard_store::commit(tx).await?;
        match claimed {
            Claim::Claimed => return Ok(Once::Go(claim)),
            Claim::Replay { body, .. } => return Ok(Once::Done(body)),
            Claim::InFlight if tokio::time::Instant::now() < deadline => tokio::time::sleep(IN_FLIGHT_POLL).await,
            Claim::InFlight | Claim::Mismatch => return Err(expired()),
        }
    }
}

/// Records what the post did (`body`: where it leads, or the API's answer), in its own transaction.
pub(super) async fn complete(app: &App, claim: &IdempotencyClaim, body: &str) -> Result<(), PageError> {
    let mut tx = app.store.begin().await?;
    idempotency::complete(&mut tx, &claim.scope, &claim.key, 303, body).await?;
    ghostcard_store::commit(tx).await?;
    Ok(())
}

/// Gives the token back after a post that changed nothing (a refusal), so the corrected form can be sent.
pub(super) async fn release(app: &App, claim: &IdempotencyClaim) -> Result<(), PageError> {
    let mut tx = app.store.begin().await?;
    idempotency::release(&mut tx, &claim.scope, &claim.key).await?;
    ghostcard_store::commit(tx).await?;
    Ok(())
}

/// The `id` of the API object a completed post stored (`{"id": …}`).
pub(super) fn stored_id(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?.get("id")?.as_str().map(str::to_owned)
}

fn expired() -> PageError {
    PageError(
        axum::http::StatusCode::CONFLICT,
        "This form was already sent, or is too old. Go back, reload the page and try again.".to_owned(),
    )
}
