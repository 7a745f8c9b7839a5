//! The issuer's decision endpoint: registering one (its secret made and stored encrypted, the one enabled before
//! disabled) and disabling it, audited, each an event. [`crate::decisioning`] puts the change in force.

use chrono::{DateTime, Utc};
use ghostcard_domain::secret::Secret;
use ghostcard_store::Tx;
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::decision_endpoints::{self, DecisionEndpoint};

use super::{Actor, ServiceError};
use crate::App;
use crate::decision_endpoint::secret_context;
use crate::ids::{has_prefix, new_id};

/// Timeouts an endpoint may have, in milliseconds.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<i64> = 100..=1_500;

/// Registers `url` (already checked for the deployment's mode) as the enabled endpoint in `tx`, disabling the one
/// before; returns it with its signing secret (`whsec_…`), which is not kept in the clear.
pub async fn create(
    app: &App,
    tx: &mut Tx,
    url: &str,
    timeout_ms: i64,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(DecisionEndpoint, Secret<String>), ServiceError> {
    if !TIMEOUT_RANGE_MS.contains(&timeout_ms) {
        return Err(ServiceError::invalid("invalid_timeout", "timeout_ms is between 100 and 1500 (milliseconds)")
            .with_param("timeout_ms"));
    }
    let id = new_id("de", now, &mut rand::rng());
    let (secret, key) = crate::webhooks::new_secret(&mut rand::rng());
    let (secret_version, secret_ciphertext) =
        app.vault.encrypt_secret(&secret_context(&id), key.expose(), &mut rand::rng());
    let endpoint = DecisionEndpoint {
        id,
        url: url.to_owned(),
        timeout_ms,
        secret_version,
        secret_ciphertext,
        status: "enabled".to_owned(),
        created_at: now,
        disabled_at: None,
    };
    if let Some(before) = decision_endpoints::replace(tx, &endpoint).await? {
        record(tx, "decision_endpoint.disabled", &before, actor, now).await?;
    }
    record(tx, "decision_endpoint.created", &endpoint.id, actor, now).await?;
    Ok((endpoint, secret))
}

/// Disables the endpoint `id` in `tx` (a disabled one stays as it is).
pub async fn disable(
    tx: &mut Tx,
    id: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<DecisionEndpoint, ServiceError> {
    let found = if has_prefix(id, "de") { decision_endpoints::get(tx, id).await? } else { None };
    let mut endpoint = found.ok_or_else(|| ServiceError::not_found("decision endpoint", id))?;
    if decision_endpoints::disable(tx, id, now).await? {
        record(tx, "decision_endpoint.disabled", id, actor, now).await?;
        (endpoint.status, endpoint.disabled_at) = ("disabled".to_owned(), Some(now));
    }
    Ok(endpoint)
}

/// The audit entry and the event of a change.
async fn record(tx: &mut Tx, kind: &str, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<(), ServiceError> {
    let entry = AuditEntry {
        at: now,
        actor: actor.name.clone(),
        action: kind.to_owned(),
        resource: Some(id.to_owned()),
        outcome: "success".to_owned(),
        origin: actor.origin.clone(),
        detail: None,
    };
    audit::append(tx, &entry).await?;
    crate::events::emit(tx, kind, &serde_json::json!({"id": id}), now).await?;
    Ok(())
}
