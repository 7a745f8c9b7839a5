//! The issuer's authorization rules: create, change and disable them (every version kept, each change a new rule
//! set, audited, an event), the shadow report (what a rule did or would have done, from the decisions it ran on)
//! and backtests (a version replayed over the stored decisions of a window, as a job).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::auth_rules::{self, Backtest, Body, Condition, Facts, Mode, RuleDraft, Scope, Velocity};
use ghostcard_domain::country::Country;
use ghostcard_domain::decision::Mcc;
use ghostcard_domain::engine::Past;
use ghostcard_domain::ids::floor;
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::auth_rules::{self as stored, RuleVersion, StoredRule};
use ghostcard_store::authorizations::{self, Replayed};
use ghostcard_store::{StoreError, Tx};
use serde::{Deserialize, Serialize};

use super::{Actor, ServiceError};
use crate::App;
use crate::ids::{has_prefix, new_id};
use crate::queue::{self, RunnerError};
use crate::views::{BacktestView, RuleView};

/// A new rule, as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    pub name: String,
    /// `shadow` or `active`.
    #[schema(value_type = String)]
    pub mode: Mode,
    /// `{"program": true}`, `{"cardholder_ids": [...]}` or `{"card_ids": [...]}`.
    #[schema(value_type = Object)]
    pub scope: Option<Scope>,
    /// `[{attribute, operation, value}]`, all of which must hold for the rule to decline.
    #[schema(value_type = Option<Vec<Object>>)]
    pub conditions: Option<Vec<Condition>>,
    /// `{window_seconds, max_count or max_amount, per: "card" or "cardholder"}`.
    #[schema(value_type = Option<Object>)]
    pub velocity: Option<Velocity>,
}

/// A change of a rule: any of its fields.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleChange {
    pub name: Option<String>,
    /// `shadow`, `active` or `disabled`.
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    #[schema(value_type = Option<Object>)]
    pub scope: Option<Scope>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub conditions: Option<Vec<Condition>>,
    #[schema(value_type = Option<Object>)]
    pub velocity: Option<Velocity>,
}

fn invalid_rule(error: auth_rules::RuleError) -> ServiceError {
    ServiceError::invalid("invalid_request", error.message).with_param(error.param)
}

fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ServiceError::invalid("invalid_request", "a rule's name is 1 to 100 characters").with_param("name"));
    }
    Ok(name.to_owned())
}

/// Creates a rule (version 1) in `tx`; the rule set changes with it.
pub async fn create(tx: &mut Tx, rule: NewRule, actor: &Actor, now: DateTime<Utc>) -> Result<RuleView, ServiceError> {
    let name = check_name(&rule.name)?;
    if rule.mode == Mode::Disabled {
        return Err(ServiceError::invalid("invalid_request", "a new rule is shadow or active").with_param("mode"));
    }
    let draft = RuleDraft { scope: rule.scope, conditions: rule.conditions, velocity: rule.velocity };
    let (scope, body) = draft.check().map_err(invalid_rule)?;
    let version = RuleVersion {
        rule_id: new_id("rule", now, &mut rand::rng()),
        version: 1,
        name,
        mode: rule.mode,
        scope,
        body,
        created_by: actor.name.clone(),
        created_at: now,
    };
    stored::lock_changes(tx).await?;
    stored::insert(tx, &version).await?;
    let stored = StoredRule { current: version, created_at: now };
    record(tx, &stored, "auth_rule.created", actor, now).await
}

/// Makes the rule's next version from `change` (every version is kept).
pub async fn update(
    tx: &mut Tx,
    id: &str,
    change: RuleChange,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<RuleView, ServiceError> {
    let RuleChange { name, mode, scope, conditions, velocity } = change;
    if name.is_none() && mode.is_none() && scope.is_none() && conditions.is_none() && velocity.is_none() {
        return Err(ServiceError::invalid(
            "invalid_request",
            "send at least one of name, mode, scope, conditions, velocity",
        ));
    }
    stored::lock_changes(tx).await?;
    let rule = get_for_change(tx, id).await?;
    let current = &rule.current;
    let (old_conditions, old_velocity) = match &current.body {
        Body::Conditions(conditions) => (Some(conditions.clone()), None),
        Body::Velocity(velocity) => (None, Some(velocity.clone())),
    };
    // New conditions replace a velocity limit and the other way round.
    let (conditions, velocity) = match (conditions, velocity) {
        (None, None) => (old_conditions, old_velocity),
        sent => sent,
    };
    let draft = RuleDraft { scope: Some(scope.unwrap_or_else(|| current.scope.clone())), conditions, velocity };
    let (scope, body) = draft.check().map_err(invalid_rule)?;
    let version = RuleVersion {
        rule_id: current.rule_id.clone(),
        version: current.version + 1,
        name: name.as_deref().map(check_name).transpose()?.unwrap_or_else(|| current.name.clone()),
        mode: mode.unwrap_or(current.mode),
        scope,
        body,
        created_by: actor.name.clone(),
        created_at: now,
    };
    stored::update(tx, &version).await?;
    let stored = StoredRule { current: version, created_at: rule.created_at };
    record(tx, &stored, "auth_rule.updated", actor, now).await
}

/// Disables the rule (a new version in mode `disabled`); a disabled rule stays as it is.
pub async fn disable(tx: &mut Tx, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<RuleView, ServiceError> {
    stored::lock_changes(tx).await?;
    let rule = get_for_change(tx, id).await?;
    if rule.current.mode == Mode::Disabled {
        return Ok(RuleView::of(&rule.current, rule.created_at));
    }
    update(tx, id, RuleChange { mode: Some(Mode::Disabled), ..RuleChange::default() }, actor, now).await
}

async fn get_for_change(tx: &mut Tx, id: &str) -> Result<StoredRule, ServiceError> {
    if !has_prefix(id, "rule") {
        return Err(ServiceError::not_found("rule", id));
    }
    stored::get(tx, id).await?.ok_or_else(|| ServiceError::not_found("rule", id))
}

/// The audit entry, the event and the new rule set of a change.
async fn record(
    tx: &mut Tx,
    rule: &StoredRule,
    event: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<RuleView, ServiceError> {
    let view = RuleView::of(&rule.current, rule.created_at);
    let set = stored::write_set(tx, now).await?;
    audit::append(
        tx,
        &AuditEntry {
            at: now,
            actor: actor.name.clone(),
            action: event.to_owned(),
            resource: Some(rule.current.rule_id.clone()),
            outcome: "success".to_owned(),
            origin: actor.origin.clone(),
            detail: Some(format!("version {} ({}); rule set {set}", rule.current.version, rule.current.mode.as_str())),
        },
    )
    .await?;
    crate::events::emit(tx, event, &view, now).await?;
    Ok(view)
}

/// The rule with its current version.
pub async fn get(tx: &mut Tx, id: &str) -> Result<RuleView, ServiceError> {
    let rule = get_for_change(tx, id).await?;
    Ok(RuleView::of(&rule.current, rule.created_at))
}

/// Every version of the rule, newest first.
pub async fn versions(tx: &mut Tx, id: &str) -> Result<Vec<RuleView>, ServiceError> {
    let rule = get_for_change(tx, id).await?;
    Ok(stored::versions(tx, id).await?.iter().map(|version| RuleView::of(version, rule.created_at)).collect())
}

/// What a rule did over a window, from the decisions it ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Decisions the rule was evaluated on (in its scope).
    pub evaluated: u64,
    /// Shadow results that matched: what the rule would have declined.
    pub would_decline: u64,
    /// Active results that matched.
    pub declined: u64,
    /// Up to 20 authorizations it would have declined or declined.
    pub sample: Vec<String>,
}

/// Authorizations read at a time by a report or a backtest.
const PAGE: u32 = 2_000;
/// How many stored decisions a backtest replays a second at most: 1,000,000 in about 40 s, leaving the rest of the
/// machine to live authorizations.
const BACKTEST_PACE: u64 = 25_000;

/// The rule's report over `[start, end)`.
pub async fn report(app: &App, id: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Report, ServiceError> {
    let mut tx = app.store.read().await?;
    get_for_change(&mut tx, id).await?;
    // Where the rule sits in each rule set that held it.
    let places: HashMap<i64, usize> =
        stored::sets_naming(&mut tx, id).await?.into_iter().map(|(set, index, _)| (set, index)).collect();
    drop(tx);
    let mut report = Report::default();
    if places.is_empty() {
        return Ok(report);
    }
    let mut pages = Pages::new(start, end);
    while let Some(page) = pages.next(app).await? {
        for decision in &page {
            let Some(trace) = decision.decision.as_deref().and_then(|json| serde_json::from_str::<Trace>(json).ok())
            else {
                continue;
            };
            let letter = trace
                .rule_set
                .and_then(|set| places.get(&set))
                .and_then(|&index| trace.rule_results.chars().nth(index));
            match letter.and_then(auth_rules::RuleResult::from_letter) {
                Some(auth_rules::RuleResult::Pass) => report.evaluated += 1,
                Some(result @ (auth_rules::RuleResult::WouldDecline | auth_rules::RuleResult::Decline)) => {
                    report.evaluated += 1;
                    if result == auth_rules::RuleResult::Decline {
                        report.declined += 1;
                    } else {
                        report.would_decline += 1;
                    }
                    if report.sample.len() < auth_rules::BACKTEST_SAMPLE {
                        report.sample.push(decision.id.clone());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(report)
}

/// The part of a decision record a report reads.
#[derive(Deserialize)]
struct Trace {
    rule_set: Option<i64>,
    #[serde(default)]
    rule_results: String,
}

/// The stored authorizations of a window, page by page in creation order.
struct Pages {
    after: String,
    before: String,
    done: bool,
}

impl Pages {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Pages {
        Pages { after: floor("auth", start), before: floor("auth", end), done: false }
    }

    async fn next(&mut self, app: &App) -> Result<Option<Vec<Replayed>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut tx = app.store.read().await?;
        let page = authorizations::replay_page(&mut tx, &self.after, &self.before, PAGE).await?;
        drop(tx);
        self.done = page.len() < PAGE as usize;
        match page.last() {
            Some(last) => self.after = last.id.clone(),
            None => return Ok(None),
        }
        Ok(Some(page))
    }
}

/// A backtest to start: a window, and the version (default: current).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBacktest {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub version: Option<i64>,
}

/// A backtest job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BacktestJob {
    pub backtest_id: String,
}

/// Records a pending backtest and enqueues its job, in `tx`.
pub async fn start_backtest(
    tx: &mut Tx,
    rule_id: &str,
    request: NewBacktest,
    now: DateTime<Utc>,
) -> Result<BacktestView, ServiceError> {
    let rule = get_for_change(tx, rule_id).await?;
    if request.start >= request.end {
        return Err(ServiceError::invalid("invalid_request", "start is before end").with_param("start"));
    }
    let version = request.version.unwrap_or(rule.current.version);
    if stored::version(tx, rule_id, version).await?.is_none() {
        return Err(ServiceError::invalid(
            "invalid_request",
            format!("the rule has versions 1 to {}", rule.current.version),
        )
        .with_param("version"));
    }
    let backtest = stored::Backtest {
        id: new_id("bt", now, &mut rand::rng()),
        rule_id: rule_id.to_owned(),
        version,
        start: request.start,
        end: request.end,
        status: "pending".to_owned(),
        results: None,
        created_at: now,
        completed_at: None,
    };
    stored::insert_backtest(tx, &backtest).await?;
    let job = BacktestJob { backtest_id: backtest.id.clone() };
    queue::enqueue(tx, queue::BACKTEST, &backtest.id, &job, now, now).await?;
    Ok(BacktestView::of(&backtest))
}

/// A backtest of the rule.
pub async fn get_backtest(tx: &mut Tx, rule_id: &str, id: &str) -> Result<BacktestView, ServiceError> {
    let found = if has_prefix(id, "bt") { stored::get_backtest(tx, id).await? } else { None };
    match found {
        Some(backtest) if backtest.rule_id == rule_id => Ok(BacktestView::of(&backtest)),
        _ => Err(ServiceError::not_found("backtest", id)),
    }
}

/// What a backtest found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BacktestResults {
    /// Decisions in the window the rule would have been evaluated on (in its scope, past the decision table).
    pub evaluated: u64,
    /// Approvals it would have declined.
    pub approved_to_declined: u64,
    /// Up to 20 of them.
    pub sample: Vec<String>,
}

/// A backtest replayed, to record.
#[derive(Debug, Clone)]
pub struct Completed {
    pub backtest_id: String,
    pub results: BacktestResults,
}

/// Replays a pending backtest's window through its rule version (`None`: it is complete already). The replaying
/// runs on the blocking pool a page at a time, so the server's own tasks keep their threads.
pub async fn replay(app: &App, job: &BacktestJob) -> Result<Option<Completed>, RunnerError> {
    let mut tx = app.store.read().await?;
    let Some(backtest) = stored::get_backtest(&mut tx, &job.backtest_id).await? else {
        return Err(RunnerError::Failed(format!("no backtest {}", job.backtest_id)));
    };
    let version = stored::version(&mut tx, &backtest.rule_id, backtest.version)
        .await?
        .ok_or_else(|| RunnerError::Failed(format!("backtest {}: no rule version", backtest.id)))?;
    drop(tx);
    if backtest.status != "pending" {
        return Ok(None);
    }
    let mut replay = Backtest::new(version.rule(), backtest.start);
    let started = std::time::Instant::now();
    let mut pages = Pages::new(backtest.start - Duration::seconds(replay.history_seconds()), backtest.end);
    let time_zone = app.time_zone;
    let mut replayed_so_far: u64 = 0;
    while let Some(page) = pages.next(app).await? {
        replayed_so_far += page.len() as u64;
        // Paced: never ahead of BACKTEST_PACE decisions a second.
        let due = std::time::Duration::from_millis(replayed_so_far * 1_000 / BACKTEST_PACE);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
        replay = tokio::task::spawn_blocking(move || {
            for decision in &page {
                replay.replay(&replayed(decision, time_zone));
            }
            replay
        })
        .await
        .map_err(|error| RunnerError::Failed(format!("backtest {}: {error}", backtest.id)))?;
    }
    let results = BacktestResults {
        evaluated: replay.evaluated,
        approved_to_declined: replay.approved_to_declined,
        sample: replay.sample,
    };
    tracing::info!(backtest = %backtest.id, evaluated = results.evaluated, seconds = started.elapsed().as_secs_f64(), "backtest replayed");
    Ok(Some(Completed { backtest_id: backtest.id, results }))
}

/// Records a replayed backtest's results in `tx`.
pub async fn complete(tx: &mut Tx, completed: &Completed, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let json = serde_json::to_string(&completed.results).map_err(|error| RunnerError::Failed(error.to_string()))?;
    stored::complete_backtest(tx, &completed.backtest_id, &json, now).await?;
    Ok(())
}

/// A stored decision as the backtest reads it.
fn replayed(decision: &Replayed, time_zone: chrono_tz::Tz) -> auth_rules::Replayed<'_> {
    // What the network was told: an approval answered with the stand-in code was taken back.
    let approved = matches!(decision.response_code.as_str(), "00" | "85");
    let reached_rules = auth_rules::Replayed::reached_rules(decision.kind, decision.decline_reason.as_deref());
    let at = decision.created_at;
    let past = Past {
        kind: decision.kind,
        response_code: decision.response_code.clone().into(),
        decline_reason: None,
        amount: decision.amount,
        at,
    };
    auth_rules::Replayed {
        id: &decision.id,
        facts: Facts {
            mcc: Mcc::parse(&decision.mcc).unwrap_or(Mcc(0)),
            country: decision.merchant_country.as_deref().and_then(|country| Country::parse(country).ok()),
            amount: decision.amount,
            merchant_id: &decision.merchant_id,
            acquirer_id: &decision.acquirer_id,
            currency: &decision.currency,
            card_age_seconds: decision.card_created_at.map_or(0, |created| (at - created).num_seconds()),
            cardholder_tenure_days: decision.cardholder_created_at.map_or(0, |joined| (at - joined).num_days()),
            hour_of_day: i64::from(chrono::Timelike::hour(&at.with_timezone(&time_zone))),
            card_id: decision.card_id.as_deref().unwrap_or(""),
            cardholder_id: decision.cardholder_id.as_deref().unwrap_or(""),
        },
        at,
        approved,
        spends: past.spends(),
        reached_rules,
    }
}
