//! The console's rules pages: the issuer's authorization rules with their versions (each against the one before),
//! what each did over the last day (the shadow report), backtests run and to run, promotion of a shadow rule to
//! active (admins; audited like every change of a rule), and the decision endpoint's health on this node.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use ghostcard_store::{auth_rules, decision_endpoints};
use serde::Deserialize;

use super::{SignedIn, may_act, signed_in};
use crate::App;
use crate::service::auth_rules::{NewBacktest, RuleChange};
use crate::service::{self, Actor, ServiceError};
use crate::views::RuleView;
use crate::web::{PageError, PageResult, redirect, render};

#[derive(Template)]
#[template(path = "ops_rules.html")]
struct RulesPage {
    csrf: String,
    /// Id, name, mode, version, what it checks, last changed.
    rules: Vec<(String, String, String, i64, String, String)>,
    endpoint: Option<EndpointHealth>,
}

/// The decision endpoint as this node sees it.
struct EndpointHealth {
    url: String,
    timeout_ms: i64,
    circuit_open: bool,
    /// Outcome, count.
    outcomes: Vec<(String, u64)>,
    asked: u64,
    fallbacks: u64,
    mean_ms: String,
    max_ms: String,
}

/// What a rule checks, in one line.
fn summary(rule: &RuleView) -> String {
    match (&rule.conditions, &rule.velocity) {
        (Some(conditions), _) => conditions
            .iter()
            .map(|condition| {
                let value = serde_json::to_string(&condition.value).unwrap_or_default();
                let operation = serde_json::to_value(condition.operation).ok();
                let attribute = serde_json::to_value(condition.attribute).ok();
                let text = |value: Option<serde_json::Value>| {
                    value.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                };
                format!("{} {} {value}", text(attribute), text(operation).replace('_', " "))
            })
            .collect::<Vec<_>>()
            .join(" and "),
        (None, Some(velocity)) => {
            let limit = match (velocity.max_count, velocity.max_amount) {
                (Some(count), _) => format!("{count} approvals"),
                (None, Some(amount)) => format!("{amount} (minor units) approved"),
                (None, None) => String::new(),
            };
            let per = serde_json::to_value(velocity.per)
                .ok()
                .and_then(|per| per.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("at most {limit} per {per} in {} s", velocity.window_seconds)
        }
        (None, None) => String::new(),
    }
}

pub(super) async fn rules_page(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let mut tx = app.store.read().await?;
    let page = auth_rules::list(&mut tx, 100, None).await?;
    let enabled = decision_endpoints::enabled(&mut tx).await?;
    drop(tx);
    let rules = page
        .rows
        .iter()
        .map(|rule| {
            let view = RuleView::of(&rule.current, rule.created_at);
            let summary = summary(&view);
            (
                view.id,
                view.name,
                view.mode,
                view.version,
                summary,
                view.updated_at.format("%-d %b %Y %H:%M").to_string(),
            )
        })
        .collect();
    let endpoint = enabled.map(|endpoint| endpoint_health(&app, endpoint.url, endpoint.timeout_ms));
    render(&RulesPage { csrf: signed_in.session.csrf.clone(), rules, endpoint })
}

fn endpoint_health(app: &App, url: String, timeout_ms: i64) -> EndpointHealth {
    let outcomes = app.metrics.decision_endpoint_outcomes();
    let asked: u64 = outcomes.values().sum();
    let fallbacks =
        outcomes.iter().filter(|(outcome, _)| !["approve", "decline"].contains(outcome)).map(|(_, count)| count).sum();
    let (count, mean, max) = app.metrics.decision_endpoint_latency();
    let ms = |duration: std::time::Duration| format!("{:.1}", duration.as_secs_f64() * 1e3);
    EndpointHealth {
        url,
        timeout_ms,
        circuit_open: app.decisioning.circuit.is_open(),
        outcomes: outcomes.into_iter().map(|(outcome, count)| (outcome.replace('_', " "), count)).collect(),
        asked,
        fallbacks,
        mean_ms: if count == 0 { "–".to_owned() } else { ms(mean) },
        max_ms: if count == 0 { "–".to_owned() } else { ms(max) },
    }
}

#[derive(Template)]
#[template(path = "ops_rule.html")]
struct RulePage {
    csrf: String,
    admin: bool,
    notice: Option<String>,
    error: Option<String>,
    id: String,
    name: String,
    mode: String,
    version: i64,
    summary: String,
    /// Version, mode, when and by whom, and what changed from the version before.
    versions: Vec<(i64, String, String, Vec<Change>)>,
    report: (u64, u64, u64, Vec<String>),
    /// Id, version, window, status, results.
    backtests: Vec<(String, i64, String, String, String)>,
    start: String,
    end: String,
}

pub(super) async fn rule_page(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    show_rule(&app, &signed_in, &id, None, None).await
}

async fn show_rule(
    app: &App,
    signed_in: &SignedIn,
    id: &str,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let now = app.clock.now();
    let mut tx = app.store.read().await?;
    let current = service::auth_rules::get(&mut tx, id).await.map_err(page_error)?;
    let versions = service::auth_rules::versions(&mut tx, id).await.map_err(page_error)?;
    let backtests = auth_rules::backtests_of(&mut tx, id, 20).await?;
    drop(tx);
    let report = service::auth_rules::report(app, id, now - Duration::hours(24), now).await.map_err(page_error)?;
    let rows = versions
        .iter()
        .enumerate()
        .map(|(index, version)| {
            let changes = versions.get(index + 1).map_or_else(
                || vec![("created".to_owned(), String::new(), String::new())],
                |before| changes(before, version),
            );
            let when = format!("{} by {}", version.updated_at.format("%-d %b %Y %H:%M"), version.updated_by);
            (version.version, version.mode.clone(), when, changes)
        })
        .collect();
    let time = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M").to_string();
    render(&RulePage {
        csrf: signed_in.session.csrf.clone(),
        admin: signed_in.admin(),
        notice,
        error,
        summary: summary(&current),
        id: current.id,
        name: current.name,
        mode: current.mode,
        version: current.version,
        versions: rows,
        report: (report.evaluated, report.would_decline, report.declined, report.sample),
        backtests: backtests
            .iter()
            .map(|backtest| {
                let results =
                    backtest.results.as_deref().and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
                let results = results.map_or_else(String::new, |results| {
                    format!(
                        "{} evaluated, {} approvals it would have declined",
                        results["evaluated"], results["approved_to_declined"]
                    )
                });
                let window =
                    format!("{} – {} UTC", backtest.start.format("%-d %b %H:%M"), backtest.end.format("%-d %b %H:%M"));
                (backtest.id.clone(), backtest.version, window, backtest.status.clone(), results)
            })
            .collect(),
        start: time(now - Duration::days(7)),
        // Shown to the minute: a minute later, so that what happened this minute is in the window.
        end: time(now + Duration::minutes(1)),
    })
}

/// A value shown as compact JSON.
fn text(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Null) | Err(_) => "–".to_owned(),
        Ok(value) => value.to_string(),
    }
}

/// A field that changed from one version to the next: (field, was, now).
type Change = (String, String, String);

/// What changed between two versions.
fn changes(before: &RuleView, after: &RuleView) -> Vec<Change> {
    let fields: [(&str, String, String); 5] = [
        ("name", before.name.clone(), after.name.clone()),
        ("mode", before.mode.clone(), after.mode.clone()),
        ("scope", text(&before.scope), text(&after.scope)),
        ("conditions", text(&before.conditions), text(&after.conditions)),
        ("velocity", text(&before.velocity), text(&after.velocity)),
    ];
    fields
        .into_iter()
        .filter(|(_, was, now)| was != now)
        .map(|(field, was, now)| (field.to_owned(), was, now))
        .collect()
}

fn page_error(error: ServiceError) -> PageError {
    crate::web::page_error(error)
}

#[derive(Deserialize)]
pub(super) struct BacktestForm {
    csrf: String,
    start: String,
    end: String,
}

/// A time from the form's `datetime-local` field, read as UTC.
fn form_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").ok().map(|time| time.and_utc())
}

pub(super) async fn start_backtest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BacktestForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    may_act(&signed_in, &form.csrf)?;
    let (Some(start), Some(end)) = (form_time(&form.start), form_time(&form.end)) else {
        return show_rule(&app, &signed_in, &id, None, Some("Give the window's start and end.".to_owned())).await;
    };
    let mut tx = app.store.begin().await?;
    match service::auth_rules::start_backtest(&mut tx, &id, NewBacktest { start, end, version: None }, now).await {
        Ok(_) => {
            ghostcard_store::commit(tx).await?;
            app.wake_jobs.notify_one();
            show_rule(
                &app,
                &signed_in,
                &id,
                Some("The backtest is running; reload to see its results.".to_owned()),
                None,
            )
            .await
        }
        Err(error) => {
            drop(tx);
            show_rule(&app, &signed_in, &id, None, Some(error.to_string())).await
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    csrf: String,
}

/// An admin makes a shadow rule active (a new version, audited as the operator's).
pub(super) async fn promote(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    may_act(&signed_in, &form.csrf)?;
    let actor = Actor { name: signed_in.actor(), origin: crate::clients::origin(&headers) };
    let mut tx = app.store.begin().await?;
    let change = RuleChange { mode: Some(ghostcard_domain::auth_rules::Mode::Active), ..RuleChange::default() };
    let current = service::auth_rules::get(&mut tx, &id).await.map_err(page_error)?;
    if current.mode != "shadow" {
        drop(tx);
        return show_rule(&app, &signed_in, &id, None, Some("Only a shadow rule can be promoted.".to_owned())).await;
    }
    service::auth_rules::update(&mut tx, &id, change, &actor, now).await.map_err(page_error)?;
    ghostcard_store::commit(tx).await?;
    crate::decisioning::refresh(&app).await?;
    show_rule(
        &app,
        &signed_in,
        &id,
        Some("The rule is active: it declines what it matches from now on.".to_owned()),
        None,
    )
    .await
}
