//! Use cases that more than one adapter runs (the REST API, the web app, the jobs), with typed inputs and typed
//! errors and nothing of HTTP. A use case that changes something runs inside the caller's transaction, or, where it
//! must call the payment gateway between reads and writes (card creation), completes the caller's
//! [`IdempotencyClaim`] in its own; either way the change and the record that guards its retry land together.
//!
//! - [`cardholders`]: sign-up, purchase power, linking a funding card.
//! - [`issuing`]: creating a card (every refusal in order, the funding hold) and revealing its details.
//! - [`cards`]: cardholder, operator and job changes of a card (cancel, refund of the unused amount, unfreeze,
//!   close, expiry).
//! - [`auth_rules`]: the issuer's authorization rules (versions, report, backtests); [`decision_endpoints`]: its
//!   decision endpoint.
//! - [`plans`]: early plan payments.
//! - [`lifecycle`]: what follows a decision (capture, force post, reversal, merchant refund), in the caller's
//!   transaction; [`clearing`]: a clearing record matched to its authorization and posted through it.
//!
//! Authorizations are decided by [`crate::authorize`] (one engine for every entry point); the network listener, the
//! sandbox and the group commit are its adapters. The jobs ([`crate::jobs`], [`crate::runner`]) run on the use
//! cases here and on [`crate::plans`].

pub mod auth_rules;
pub mod cardholders;
pub mod cards;
pub mod clearing;
pub mod decision_endpoints;
pub mod issuing;
pub mod lifecycle;
pub mod plans;

use std::borrow::Cow;

use chrono::Duration;
use ghostcard_store::{StoreError, Tx, idempotency};

/// Who acts, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `api_key:key_…`, `cardholder:ch_…`, `operator:op_…`.
    pub name: String,
    /// The client's address, when known.
    pub origin: Option<String>,
}

/// A retry guard claimed before the work: the API's idempotency key, or the web app's one-time form token. The
/// use case completes it in the transaction of its change.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub scope: String,
    pub key: String,
}

/// How long an idempotency record (and the answer it replays) is kept (docs/reference/rest.md).
pub const IDEMPOTENCY_RETENTION: Duration = Duration::hours(24);

/// Completes `claim` (if any) with the answer `status` and `body`, then commits `tx`: the change and the record of
/// its answer land together.
pub async fn commit_with(
    mut tx: Tx,
    claim: Option<&IdempotencyClaim>,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    if let Some(claim) = claim {
        idempotency::complete(&mut tx, &claim.scope, &claim.key, status, body).await?;
    }
    ghostcard_store::commit(tx).await
}

/// Why a use case did not do what it was asked; nothing was written. The kinds are the API's error families
/// (docs/reference/rest.md), which the web app shows as sentences.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong (the API's 400).
    #[error("{message}")]
    Invalid { code: &'static str, message: String, param: Option<Cow<'static, str>> },
    /// No such resource, or not the caller's (404).
    #[error("no such {what}")]
    NotFound { what: &'static str, id: String, param: Option<Cow<'static, str>> },
    /// Understood, but refused by a rule or by the funding card (422).
    #[error("{message}")]
    Refused { code: &'static str, message: String, param: Option<Cow<'static, str>> },
    /// The resource's state does not allow it (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String, param: Option<Cow<'static, str>> },
    /// Too much work of this kind at once (the password workers); try again in a second.
    #[error(transparent)]
    Busy(#[from] crate::clients::Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Failed on our side: the text is for the log, never for the client.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid { code, message: message.into(), param: None }
    }

    pub fn not_found(what: &'static str, id: &str) -> ServiceError {
        ServiceError::NotFound { what, id: id.to_owned(), param: None }
    }

    pub fn refused(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Refused { code, message: message.into(), param: None }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Conflict { code, message: message.into(), param: None }
    }

    pub fn internal(error: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal(error.to_string())
    }

    /// The same error, naming the request field at fault.
    pub fn with_param(mut self, field: impl Into<Cow<'static, str>>) -> ServiceError {
        match &mut self {
            ServiceError::Invalid { param, .. }
            | ServiceError::NotFound { param, .. }
            | ServiceError::Refused { param, .. }
            | ServiceError::Conflict { param, .. } => *param = Some(field.into()),
            ServiceError::Busy(_) | ServiceError::Store(_) | ServiceError::Internal(_) => {}
        }
        self
    }
}

impl From<crate::vault::VaultError> for ServiceError {
    fn from(error: crate::vault::VaultError) -> Self {
        ServiceError::internal(error)
    }
}
