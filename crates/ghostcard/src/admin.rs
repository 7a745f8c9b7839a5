//! Administration commands: `migrate`, `api-key create|list|revoke`, `keys rotate`, `jobs list|retry`,
//! `operator create`.

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::Subcommand;
use ghostcard_server::config::Config;
use ghostcard_server::credentials::create_api_key;
use ghostcard_server::vault::{self, Kek};
use ghostcard_store::api_keys;
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::{Store, StoreOptions};
use serde_json::json;

use crate::ConfigArguments;

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; it is printed once, alone on the last line
    ///
    /// Only a hash of the key is stored: keep the printed key, it cannot be shown again.
    #[command(after_long_help = "Example:\n  KEY=$(ghostcard api-key create --name shop-backend | tail -n 1)")]
    Create {
        /// A name to recognize the key by (its owner or purpose).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArguments,
    },
    /// List API keys (names, prefixes and dates; never the keys)
    List {
        #[command(flatten)]
        config: ConfigArguments,
    },
    /// Revoke an API key by id or name; requests with it are refused from then on
    Revoke {
        /// The key's id (key_…) or name.
        key: String,
        #[command(flatten)]
        config: ConfigArguments,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new card-number encryption key or CVK version, or re-wrap every key under a new KEK
    ///
    /// Without options: new cards are encrypted under a new data key from now on; existing cards keep theirs.
    ///
    /// With --cvk: a new card verification key version (random, or --new-cvk). New cards get their CVV2 from it;
    /// every card keeps the version it was issued under, so older versions go on verifying their cards.
    ///
    /// With --new-kek: every key (data keys and CVKs) is wrapped under the new key-encryption key as well. Servers
    /// still running with the old KEK keep working; restart each with the new KEK (GHOSTCARD_KEK), one at a time.
    ///
    /// Running servers pick new keys up when restarted: restart every server after a rotation.
    #[command(after_long_help = "Examples:\n  ghostcard keys rotate\n  ghostcard keys rotate --cvk\n  \
        ghostcard keys rotate --new-kek \"$(openssl rand -hex 32)\"")]
    Rotate {
        /// The new key-encryption key, 64 hex digits (e.g. from `openssl rand -hex 32`).
        #[arg(long, value_name = "HEX", conflicts_with = "cvk")]
        new_kek: Option<String>,
        /// Add a card verification key (CVK) version instead of a card-number key.
        #[arg(long)]
        cvk: bool,
        /// The new CVK, 32 hex digits (two DES keys, from your key ceremony); random when left out.
        #[arg(long, value_name = "HEX", requires = "cvk")]
        new_cvk: Option<String>,
        #[command(flatten)]
        config: ConfigArguments,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs (gateway calls, webhook deliveries), newest first; `--status dead` shows what failed for good
    #[command(
        after_long_help = "Examples:\n  ghostcard jobs list --status dead\n  ghostcard jobs list --kind webhook --json"
    )]
    List {
        /// Only jobs in this state: pending, done or dead.
        #[arg(long, value_parser = ["pending", "done", "dead"])]
        status: Option<String>,
        /// Only jobs of this kind: webhook, installment_collection, plan_payment, funding_charge, funding_refund,
        /// funding_release.
        #[arg(long)]
        kind: Option<String>,
        /// How many to show (1 to 100).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        #[command(flatten)]
        config: ConfigArguments,
    },
    /// Retry a dead job now (attempts start again from zero); a running server picks it up within a second
    Retry {
        /// The job's id (job_…), from `ghostcard jobs list --status dead`.
        id: String,
        #[command(flatten)]
        config: ConfigArguments,
    },
}

pub fn jobs(command: JobsCommand) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            JobsCommand::List { status, kind, limit, config } => {
                let store = open(&config.load()?).await?;
                let mut tx = store.read().await?;
                let page = ghostcard_store::jobs::list(&mut tx, status.as_deref(), kind.as_deref(), limit, None).await?;
                if config.json {
                    let rows: Vec<_> = page
                        .rows
                        .iter()
                        .map(|job| {
                            json!({ "id": job.id, "kind": job.kind, "status": job.status, "run_at": job.run_at,
                                "attempts": job.attempts, "last_error": job.last_error,
                                "payload": serde_json::from_str::<serde_json::Value>(&job.payload).unwrap_or_default() })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else if page.rows.is_empty() {
                    println!("No jobs{}.", status.map(|status| format!(" {status}")).unwrap_or_default());
                } else {
                    for job in &page.rows {
                        println!(
                            "{}  {:<22} {:<7} attempts {}  run at {}{}",
                            job.id,
                            job.kind,
                            job.status,
                            job.attempts,
                            job.run_at.format("%Y-%m-%d %H:%M:%S"),
                            job.last_error.as_deref().map(|error| format!("  last error: {error}")).unwrap_or_default()
                        );
                    }
                    if page.has_more {
                        println!("(more: raise --limit or narrow with --status / --kind)");
                    }
                }
            }
            JobsCommand::Retry { id, config } => {
                let store = open(&config.load()?).await?;
                let now = Utc::now();
                let mut tx = store.begin().await?;
                if !ghostcard_store::jobs::revive(&mut tx, &id, now).await? {
                    bail!("no dead job {id:?}; see `ghostcard jobs list --status dead`");
                }
                audit::append(&mut tx, &cli_audit("cli", "job.retry", Some(&id), now)).await?;
                ghostcard_store::commit(tx).await?;
                if config.json {
                    println!("{}", json!({ "retried": id }));
                } else {
                    println!("Job {id} is pending again; a running server retries it within a second.");
                }
            }
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Create an operator account for the console at /ops; its password is printed once, alone on the last line
    ///
    /// A viewer sees everything in the console (card numbers only masked); an admin can also unfreeze or close
    /// cards, lift restrictions and retry dead jobs. Every action is audited.
    #[command(
        after_long_help = "Example:\n  ghostcard operator create --email ops@example.com --name 'Grace' --role admin"
    )]
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// viewer or admin.
        #[arg(long, value_parser = ["viewer", "admin"], default_value = "viewer")]
        role: String,
        #[command(flatten)]
        config: ConfigArguments,
    },
}

pub fn operator(command: OperatorCommand) -> Result<()> {
    let OperatorCommand::Create { email, name, role, config } = command;
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        bail!("--email needs an email address such as ops@example.com");
    }
    if name.trim().is_empty() || name.len() > 200 {
        bail!("--name is 1 to 200 characters");
    }
    runtime()?.block_on(async {
        let store = open(&config.load()?).await?;
        let (id, password) =
            match ghostcard_server::credentials::create_operator(&store, &email, &name, &role, "cli", Utc::now()).await
            {
                Err(ghostcard_store::StoreError::Conflict) => bail!("an operator with the email {email} exists"),
                other => other?,
            };
        if config.json {
            println!("{}", json!({ "id": id, "email": email, "role": role, "password": password }));
        } else {
            println!("Created operator {id} ({email}, {role}). Sign in at /ops with this password, shown once:");
            println!("{password}");
        }
        Ok(())
    })
}

async fn open(config: &Config) -> Result<Store> {
    let store = Store::connect(&config.database_url, &StoreOptions::default())
        .await
        .with_context(|| "cannot open the database; check --database-url or GHOSTCARD_DATABASE_URL")?;
    store.migrate(Utc::now()).await?;
    Ok(store)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn migrate(arguments: &ConfigArguments) -> Result<()> {
    let config = arguments.load()?;
    runtime()?.block_on(async {
        let store = Store::connect(&config.database_url, &StoreOptions::default()).await?;
        let applied = store.migrate(Utc::now()).await?;
        if arguments.json {
            println!("{}", json!({ "applied": applied }));
        } else if applied.is_empty() {
            println!("The database is up to date.");
        } else {
            println!("Applied migrations {applied:?}.");
        }
        Ok(())
    })
}

pub fn api_key(command: ApiKeyCommand) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            ApiKeyCommand::Create { name, config } => {
                let name = name.trim();
                if name.is_empty() || name.len() > 100 {
                    bail!("--name is 1 to 100 characters");
                }
                let store = open(&config.load()?).await?;
                let (id, key) = create_api_key(&store, name, "cli", Utc::now()).await?;
                if config.json {
                    println!("{}", json!({ "id": id, "name": name, "key": key }));
                } else {
                    println!("Created API key {id} named {name:?}. It is shown once; store it now.");
                    println!("Use it as: Authorization: Bearer <key>");
                    println!("{key}");
                }
            }
            ApiKeyCommand::List { config } => {
                let store = open(&config.load()?).await?;
                let mut tx = store.read().await?;
                let keys = api_keys::list(&mut tx).await?;
                if config.json {
                    let rows: Vec<_> = keys
                        .iter()
                        .map(|key| json!({ "id": key.id, "name": key.name, "prefix": key.prefix, "created_at": key.created_at, "revoked_at": key.revoked_at }))
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else if keys.is_empty() {
                    println!("No API keys. Create one with: ghostcard api-key create --name NAME");
                } else {
                    for key in keys {
                        let state = key.revoked_at.map_or("active".to_owned(), |at| format!("revoked {}", at.format("%Y-%m-%d %H:%M")));
                        println!("{}  {:<24} {}…  created {}  {state}", key.id, key.name, key.prefix, key.created_at.format("%Y-%m-%d %H:%M"));
                    }
                }
            }
            ApiKeyCommand::Revoke { key, config } => {
                let store = open(&config.load()?).await?;
                let now = Utc::now();
                let mut tx = store.begin().await?;
                if !api_keys::revoke(&mut tx, &key, now).await? {
                    bail!("no active API key with id or name {key:?}; see `ghostcard api-key list`");
                }
                audit::append(&mut tx, &cli_audit("cli", "api_key.revoke", Some(&key), now)).await?;
                ghostcard_store::commit(tx).await?;
                if config.json {
                    println!("{}", json!({ "revoked": key }));
                } else {
                    println!("Revoked API key {key}.");
                }
            }
        }
        Ok(())
    })
}

pub fn keys(command: KeysCommand) -> Result<()> {
    let KeysCommand::Rotate { new_kek, cvk, new_cvk, config } = command;
    let loaded = config.load()?;
    runtime()?.block_on(async {
        let store = open(&loaded).await?;
        let (current, configured_cvk) = ghostcard_server::configured_keys(&loaded)?;
        let now = Utc::now();
        // Opening the vault checks that the keys are this database's (and gives a new database its first keys).
        vault::Vault::open(&store, &current, configured_cvk, now, &mut rand::rng()).await?;
        let (action, detail, message) = match new_kek {
            Some(hex) => {
                let new = Kek::from_hex(&hex)?;
                if let Some(reason) = new.weakness() {
                    bail!("the new KEK is a weak key: {reason}; use a random one (e.g. `openssl rand -hex 32`)");
                }
                let count = vault::rewrap(&store, &current, &new, now, &mut rand::rng()).await?;
                let message = format!(
                    "Re-wrapped {count} data keys under the new KEK {}. Restart each server with GHOSTCARD_KEK set to the new key.",
                    new.id()
                );
                ("keys.rewrap", format!("from {} to {}", current.id(), new.id()), message)
            }
            None if cvk => {
                let new = new_cvk.as_deref().map(vault::cvk_from_hex).transpose()?;
                let version = vault::add_cvk(&store, &current, new, now, &mut rand::rng()).await?;
                let message = format!(
                    "Added CVK version {version}. Restart every server: new cards are then issued under it, and \
                     cards of older versions keep verifying."
                );
                ("keys.rotate_cvk", format!("CVK version {version}"), message)
            }
            None => {
                let version = vault::add_encryption_key(&store, &current, now, &mut rand::rng()).await?;
                let message = format!("Added card-number key version {version}. Servers use it for new cards after a restart.");
                ("keys.rotate", format!("card-number key version {version}"), message)
            }
        };
        let mut tx = store.begin().await?;
        audit::append(&mut tx, &AuditEntry { detail: Some(detail.clone()), ..cli_audit("cli", action, None, now) }).await?;
        ghostcard_store::commit(tx).await?;
        if config.json {
            println!("{}", json!({ "action": action, "detail": detail }));
        } else {
            println!("{message}");
        }
        Ok(())
    })
}

fn cli_audit(actor: &str, action: &str, resource: Option<&str>, at: chrono::DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        resource: resource.map(str::to_owned),
        outcome: "success".to_owned(),
        origin: Some("command line".to_owned()),
        detail: None,
    }
}
