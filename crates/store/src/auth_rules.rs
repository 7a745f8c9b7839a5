//! The issuer's authorization rules: `auth_rules` (each rule's current version and mode), `auth_rule_versions`
//! (every version, kept), `auth_rule_sets` (the rules in force after each change, under a version that decisions
//! name) and `backtests`. A version's scope and body are stored as JSON documents of the domain's types.

use chrono::{DateTime, Utc};
use ghostcard_domain::auth_rules::{Body, Mode, Rule, Scope};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Page, Result, StoreError, Tx, from_micros, to_micros};

/// One version of a rule, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVersion {
    pub rule_id: String,
    pub version: i64,
    pub name: String,
    pub mode: Mode,
    pub scope: Scope,
    pub body: Body,
    /// Who made it (`api_key:…`, `operator:…`).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl RuleVersion {
    /// The version as the engine evaluates it.
    pub fn rule(&self) -> Rule {
        Rule {
            id: self.rule_id.clone(),
            version: self.version,
            mode: self.mode,
            scope: self.scope.clone(),
            body: self.body.clone(),
        }
    }
}

/// A rule: its current version, with when it was first created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    pub current: RuleVersion,
    pub created_at: DateTime<Utc>,
}

/// A rule of a rule set: which version ran, in which mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetEntry {
    pub rule_id: String,
    pub version: i64,
    pub mode: Mode,
}

/// Makes changes of rules take turns, so that rule sets get consecutive versions (PostgreSQL; SQLite's single
/// writer already does).
pub async fn lock_changes(tx: &mut Tx) -> Result<()> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock(7311003)").execute(&mut **tx).await?;
    }
    Ok(())
}

/// Writes a new rule (its first version).
pub async fn insert(tx: &mut Tx, version: &RuleVersion) -> Result<()> {
    sqlx::query(
        "INSERT INTO auth_rules (id, name, version, mode, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&version.rule_id)
    .bind(&version.name)
    .bind(version.version)
    .bind(version.mode.as_str())
    .bind(to_micros(version.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    insert_version(tx, version).await
}

/// Writes a rule's next version and makes it current.
pub async fn update(tx: &mut Tx, version: &RuleVersion) -> Result<()> {
    sqlx::query("UPDATE auth_rules SET name = $1, version = $2, mode = $3, updated_at = $4 WHERE id = $5")
        .bind(&version.name)
        .bind(version.version)
        .bind(version.mode.as_str())
        .bind(to_micros(version.created_at))
        .bind(&version.rule_id)
        .execute(&mut **tx)
        .await?;
    insert_version(tx, version).await
}

async fn insert_version(tx: &mut Tx, version: &RuleVersion) -> Result<()> {
    let json = |what: &str, value: serde_json::Result<String>| {
        value.map_err(|error| StoreError::Corrupt(format!("rule {} {what}: {error}", version.rule_id)))
    };
    sqlx::query(
        "INSERT INTO auth_rule_versions (rule_id, version, name, mode, scope, body, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&version.rule_id)
    .bind(version.version)
    .bind(&version.name)
    .bind(version.mode.as_str())
    .bind(json("scope", serde_json::to_string(&version.scope))?)
    .bind(json("body", serde_json::to_string(&version.body))?)
    .bind(&version.created_by)
    .bind(to_micros(version.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

const CURRENT: &str = "SELECT v.*, r.created_at AS first_created_at FROM auth_rules r \
                       JOIN auth_rule_versions v ON v.rule_id = r.id AND v.version = r.version";

/// The rule with its current version (changes take turns through [`lock_changes`]).
pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<StoredRule>> {
    let sql = format!("{CURRENT} WHERE r.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| stored_rule(&row)).transpose()
}

/// Rules newest first.
pub async fn list(tx: &mut Tx, limit: u32, starting_after: Option<&str>) -> Result<Page<StoredRule>> {
    let sql = format!("{CURRENT} WHERE ($1 IS NULL OR r.id < $1) ORDER BY r.id DESC LIMIT $2");
    let rows = sqlx::query(&sql).bind(starting_after).bind(i64::from(limit) + 1).fetch_all(&mut **tx).await?;
    Ok(Page::from_rows(rows.iter().map(stored_rule).collect::<Result<Vec<_>>>()?, limit))
}

/// Every version of a rule, newest first.
pub async fn versions(tx: &mut Tx, id: &str) -> Result<Vec<RuleVersion>> {
    let rows = sqlx::query("SELECT * FROM auth_rule_versions WHERE rule_id = $1 ORDER BY version DESC")
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(rule_version).collect()
}

/// One version of a rule.
pub async fn version(tx: &mut Tx, id: &str, version: i64) -> Result<Option<RuleVersion>> {
    let row = sqlx::query("SELECT * FROM auth_rule_versions WHERE rule_id = $1 AND version = $2")
        .bind(id)
        .bind(version)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| rule_version(&row)).transpose()
}

/// Writes the rule set that the rules now in force make, under the next version, and returns it.
pub async fn write_set(tx: &mut Tx, now: DateTime<Utc>) -> Result<i64> {
    let rows = sqlx::query("SELECT id, version, mode FROM auth_rules WHERE mode <> 'disabled' ORDER BY id")
        .fetch_all(&mut **tx)
        .await?;
    let entries = rows
        .iter()
        .map(|row| {
            let mode: String = row.try_get("mode")?;
            Ok(SetEntry {
                rule_id: row.try_get("id")?,
                version: row.try_get("version")?,
                mode: Mode::parse(&mode).ok_or_else(|| StoreError::Corrupt(format!("rule mode {mode:?}")))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let version = latest_set_version(tx).await? + 1;
    let rules = serde_json::to_string(&entries).map_err(|error| StoreError::Corrupt(format!("rule set: {error}")))?;
    sqlx::query("INSERT INTO auth_rule_sets (version, rules, created_at) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(rules)
        .bind(to_micros(now))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(version)
}

/// The version of the newest rule set (0 before the first rule).
pub async fn latest_set_version(tx: &mut Tx) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM auth_rule_sets")
        .fetch_one(&mut **tx)
        .await?
        .unwrap_or(0))
}

/// The rules of a set, in order (`None`: no such set).
pub async fn set(tx: &mut Tx, version: i64) -> Result<Option<Vec<SetEntry>>> {
    let rules: Option<String> = sqlx::query_scalar("SELECT rules FROM auth_rule_sets WHERE version = $1")
        .bind(version)
        .fetch_optional(&mut **tx)
        .await?;
    rules
        .map(|rules| {
            serde_json::from_str(&rules).map_err(|error| StoreError::Corrupt(format!("rule set {version}: {error}")))
        })
        .transpose()
}

/// Every set that names this rule, with where in the set it is: (set version, index, rule version, mode).
pub async fn sets_naming(tx: &mut Tx, rule_id: &str) -> Result<Vec<(i64, usize, SetEntry)>> {
    let pattern = format!("%\"{rule_id}\"%");
    let rows = sqlx::query("SELECT version, rules FROM auth_rule_sets WHERE rules LIKE $1 ORDER BY version")
        .bind(pattern)
        .fetch_all(&mut **tx)
        .await?;
    let mut found = Vec::new();
    for row in rows {
        let version: i64 = row.try_get("version")?;
        let rules: String = row.try_get("rules")?;
        let entries: Vec<SetEntry> = serde_json::from_str(&rules)
            .map_err(|error| StoreError::Corrupt(format!("rule set {version}: {error}")))?;
        if let Some((index, entry)) = entries.into_iter().enumerate().find(|(_, entry)| entry.rule_id == rule_id) {
            found.push((version, index, entry));
        }
    }
    Ok(found)
}

/// The newest rule set, its rules as the engine evaluates them.
pub async fn current(tx: &mut Tx) -> Result<(i64, Vec<Rule>)> {
    let version = latest_set_version(tx).await?;
    let Some(entries) = set(tx, version).await? else { return Ok((0, Vec::new())) };
    let mut rules = Vec::with_capacity(entries.len());
    for entry in entries {
        let found = self::version(tx, &entry.rule_id, entry.version)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("rule set {version} names a missing version")))?;
        rules.push(found.rule());
    }
    Ok((version, rules))
}

fn stored_rule(row: &AnyRow) -> Result<StoredRule> {
    Ok(StoredRule { current: rule_version(row)?, created_at: from_micros(row.try_get("first_created_at")?)? })
}

fn rule_version(row: &AnyRow) -> Result<RuleVersion> {
    let rule_id: String = row.try_get("rule_id")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("rule {rule_id} {what}"));
    let mode: String = row.try_get("mode")?;
    let scope: String = row.try_get("scope")?;
    let body: String = row.try_get("body")?;
    Ok(RuleVersion {
        version: row.try_get("version")?,
        name: row.try_get("name")?,
        mode: Mode::parse(&mode).ok_or_else(|| corrupt("mode"))?,
        scope: serde_json::from_str(&scope).map_err(|_| corrupt("scope"))?,
        body: serde_json::from_str(&body).map_err(|_| corrupt("body"))?,
        created_by: row.try_get("created_by")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        rule_id,
    })
}

/// A backtest: a rule version replayed over the decisions of `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backtest {
    pub id: String,
    pub rule_id: String,
    pub version: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `pending`, then `complete`.
    pub status: String,
    /// The results as JSON, once complete.
    pub results: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub async fn insert_backtest(tx: &mut Tx, backtest: &Backtest) -> Result<()> {
    sqlx::query(
        "INSERT INTO backtests (id, rule_id, version, start_at, end_at, status, results, created_at, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&backtest.id)
    .bind(&backtest.rule_id)
    .bind(backtest.version)
    .bind(to_micros(backtest.start))
    .bind(to_micros(backtest.end))
    .bind(&backtest.status)
    .bind(&backtest.results)
    .bind(to_micros(backtest.created_at))
    .bind(backtest.completed_at.map(to_micros))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn get_backtest(tx: &mut Tx, id: &str) -> Result<Option<Backtest>> {
    let row = sqlx::query("SELECT * FROM backtests WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| backtest(&row)).transpose()
}

/// A rule's backtests, newest first.
pub async fn backtests_of(tx: &mut Tx, rule_id: &str, limit: u32) -> Result<Vec<Backtest>> {
    let rows = sqlx::query("SELECT * FROM backtests WHERE rule_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(rule_id)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(backtest).collect()
}

/// Completes a pending backtest with its results (false if it was not pending).
pub async fn complete_backtest(tx: &mut Tx, id: &str, results: &str, now: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE backtests SET status = 'complete', results = $1, completed_at = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(results)
    .bind(to_micros(now))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn backtest(row: &AnyRow) -> Result<Backtest> {
    Ok(Backtest {
        id: row.try_get("id")?,
        rule_id: row.try_get("rule_id")?,
        version: row.try_get("version")?,
        start: from_micros(row.try_get("start_at")?)?,
        end: from_micros(row.try_get("end_at")?)?,
        status: row.try_get("status")?,
        results: row.try_get("results")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        completed_at: row.try_get::<Option<i64>, _>("completed_at")?.map(from_micros).transpose()?,
    })
}
