//! Use cases that more than one adapter runs (the REST API, the web app, the jobs), with typed inputs and typed
//! errors and nothing of HTTP. Each runs inside the caller's transaction, so the adapter commits it together with
//! what is its own (an idempotency record, a form's one-time token).
//!
//! The layer is being built: card cancellation, the refund of a card's unused amount and early plan payments live
//! here; the other use cases are still written in the API's handlers (ARCHITECTURE.md).

pub mod cards;
pub mod plans;

/// Who acts, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `api_key:key_…`, `cardholder:ch_…`, `operator:op_…`.
    pub name: String,
    /// The client's address, when known.
    pub origin: Option<String>,
}
