//! What this node decides with besides its configuration: the issuer's newest rule set, compiled once and shared
//! by every batch ([`Decisioning::rules`]), and the enabled decision endpoint with its circuit
//! ([`crate::decision_endpoint`]). A change is in effect on the node that made it before its call returns (the
//! change refreshes the node after it commits) and on every other node within a second ([`watch`] looks for a newer
//! rule set and another endpoint every 250 ms). A batch takes the rule set once, so a decision never sees half of
//! a change.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ghostcard_domain::auth_rules::RuleSet;
use ghostcard_store::{StoreError, auth_rules, decision_endpoints};

use crate::App;
use crate::decision_endpoint::{Circuit, Endpoint, secret_context};

/// How often a node looks for a newer rule set and another decision endpoint.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub struct Decisioning {
    rules: RwLock<Arc<RuleSet>>,
    endpoint: RwLock<Option<Arc<Endpoint>>>,
    pub circuit: Circuit,
}

impl Decisioning {
    /// The rule set in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |rules| rules.clone())
    }

    /// The enabled decision endpoint, if any.
    pub fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.endpoint.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |endpoint| endpoint.clone())
    }
}

/// Reads the newest rule set and the enabled endpoint if they are not the ones the node holds.
pub async fn refresh(app: &App) -> Result<(), StoreError> {
    let decisioning = &app.decisioning;
    let held = decisioning.rules().version;
    let mut tx = app.store.read().await?;
    if auth_rules::latest_set_version(&mut tx).await? != held {
        let (version, rules) = auth_rules::current(&mut tx).await?;
        let fresh = Arc::new(RuleSet::new(version, rules));
        let mut current = decisioning.rules.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two refreshes may race: the newer set wins.
        if fresh.version > current.version {
            *current = fresh;
        }
    }
    let enabled = decision_endpoints::enabled(&mut tx).await?;
    drop(tx);
    let held = decisioning.endpoint().map(|endpoint| endpoint.id.clone());
    if enabled.as_ref().map(|endpoint| &endpoint.id) == held.as_ref() {
        return Ok(());
    }
    let fresh = match enabled {
        Some(stored) => {
            let key = app
                .vault
                .decrypt_secret(&secret_context(&stored.id), stored.secret_version, &stored.secret_ciphertext)
                .map_err(|error| StoreError::Corrupt(format!("decision endpoint {}: {error}", stored.id)))?;
            let timeout = Duration::from_millis(u64::try_from(stored.timeout_ms).unwrap_or(1_000));
            // Checked here, as the node loads it: the rules may be stricter now than at registration (a restart in
            // live mode).
            let url = crate::outbound::check_url(&stored.url, app.config.mode).ok();
            if url.is_none() {
                tracing::error!(endpoint = %stored.id, "the decision endpoint's URL is not allowed in this mode; every request falls back");
            }
            Some(Arc::new(Endpoint { id: stored.id, url, timeout, key }))
        }
        None => None,
    };
    *decisioning.endpoint.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
    decisioning.circuit.reset();
    Ok(())
}

/// Keeps the node's rules and endpoint current until the application is dropped.
pub async fn watch(app: Weak<App>) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(app) = app.upgrade() else { return };
        if let Err(error) = refresh(&app).await {
            tracing::warn!(%error, "could not read the authorization rules or the decision endpoint; the ones held stay in force");
        }
    }
}
