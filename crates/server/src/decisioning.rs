//! The issuer's authorization rules as this node holds them: the newest rule set, compiled once and shared by every
//! batch ([`Decisioning::rules`]). A change is in effect on the node that made it before its call returns (the
//! change refreshes the node after it commits) and on every other node within a second ([`watch`] looks for a newer
//! set every 250 ms). A batch takes the set once, so a decision never sees half of a change.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ghostcard_domain::auth_rules::RuleSet;
use ghostcard_store::{Store, StoreError, auth_rules};

use crate::App;

/// How often a node looks for a newer rule set.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub struct Decisioning {
    current: RwLock<Arc<RuleSet>>,
}

impl Decisioning {
    /// The rule set in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.current.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |current| current.clone())
    }

    /// Reads the newest rule set if it is newer than the one held.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let held = self.rules().version;
        let mut tx = store.read().await?;
        if auth_rules::latest_set_version(&mut tx).await? == held {
            return Ok(());
        }
        let (version, rules) = auth_rules::current(&mut tx).await?;
        drop(tx);
        let fresh = Arc::new(RuleSet::new(version, rules));
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two refreshes may race: the newer set wins.
        if fresh.version > current.version {
            *current = fresh;
        }
        Ok(())
    }
}

/// Keeps the node's rules current until the application is dropped.
pub async fn watch(app: Weak<App>) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(app) = app.upgrade() else { return };
        if let Err(error) = app.decisioning.refresh(&app.store).await {
            tracing::warn!(%error, "could not read the authorization rules; the ones held stay in force");
        }
    }
}
