//! The operator console under `/ops`, for the issuer's staff: separate operator accounts (`ghostcard operator
//! create`) and sessions, with two roles — `viewer` reads everything, `admin` also acts (unfreeze or close a card,
//! lift a cardholder's restriction, retry a dead job), each action audited. Pages: overview (ledger verification
//! with balances by account, what needs attention, search), the authorization feed with filters and a chart of
//! outcomes by hour, fraud flags to review, jobs and webhook deliveries, the audit log, and the issuer's
//! authorization rules with the decision endpoint's health ([`rules`]). Card numbers appear only masked. Sessions, CSRF and lockout work as in the cardholder app.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};

use ghostcard_domain::money::{Currency, Money};
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::operators::{self, Operator};
use ghostcard_store::web_sessions::{SessionKind, WebSession};
use ghostcard_store::{authorizations, cardholders, cards, jobs, ledger};
use serde::Deserialize;

use super::{
    CsrfForm, PageError, PageResult, Realm, SignInForm, SignInQuery, audit_entry, end_session, forged, live_session,
    redirect, render, same, show_sign_in, submit_sign_in,
};
use crate::App;
use crate::service::cards::{CardError, OperatorChange};
use crate::service::{self, Actor};

const SESSION_COOKIE: &str = "gc_ops_session";

pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/ops", get(overview))
        .route("/ops/sign-in", get(sign_in_page).post(sign_in))
        .route("/ops/sign-out", post(sign_out))
        .route("/ops/search", get(search))
        .route("/ops/authorizations", get(authorizations_page))
        .route("/ops/flags", get(flags))
        .route("/ops/cards/{id}/{action}", post(card_action))
        .route("/ops/cardholders/{id}/lift", post(lift))
        .route("/ops/jobs", get(jobs_page))
        .route("/ops/jobs/{id}/retry", post(retry_job))
        .route("/ops/audit", get(audit_page))
        .route("/ops/rules", get(rules::rules_page))
        .route("/ops/rules/{id}", get(rules::rule_page))
        .route("/ops/rules/{id}/backtests", post(rules::start_backtest))
        .route("/ops/rules/{id}/promote", post(rules::promote))
}

struct SignedIn {
    token_hash: Vec<u8>,
    session: WebSession,
    operator: Operator,
}

impl SignedIn {
    fn admin(&self) -> bool {
        self.operator.role == "admin"
    }

    fn actor(&self) -> String {
        format!("operator:{}", self.operator.id)
    }
}

const OPERATORS: Realm = Realm {
    kind: SessionKind::Operator,
    session_cookie: SESSION_COOKIE,
    path: "/ops",
    home: "/ops",
    audit: "ops",
    actor: "operator",
};

async fn signed_in(app: &App, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Option<SignedIn>, PageError> {
    let Some((token_hash, session)) = live_session(app, headers, OPERATORS, now).await? else { return Ok(None) };
    let mut tx = app.store.read().await?;
    let operator = operators::get(&mut tx, &session.subject_id).await?;
    Ok(operator.map(|operator| SignedIn { token_hash, session, operator }))
}

macro_rules! require_operator {
    ($app:expr, $headers:expr, $now:expr) => {
        match signed_in(&$app, &$headers, $now).await? {
            Some(signed_in) => signed_in,
            None => return Ok(redirect("/ops/sign-in?expired=1")),
        }
    };
}

mod rules;

/// An admin's action with the session's CSRF token, or the reason it is refused.
fn may_act(signed_in: &SignedIn, csrf: &str) -> Result<(), PageError> {
    if !same(&signed_in.session.csrf, csrf) {
        return Err(forged());
    }
    if !signed_in.admin() {
        return Err(PageError(StatusCode::FORBIDDEN, "Only admins can do this; ask one.".to_owned()));
    }
    Ok(())
}

async fn sign_in_page(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<SignInQuery>) -> PageResult {
    show_sign_in(&app, &headers, OPERATORS, query).await
}

async fn sign_in(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<SignInForm>) -> PageResult {
    submit_sign_in(&app, &headers, OPERATORS, form).await
}

async fn sign_out(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let session = (signed_in.token_hash.as_slice(), &signed_in.session);
    end_session(&app, &headers, OPERATORS, session, &form.csrf, "/ops/sign-in?signed_out=1").await
}

fn money(minor: i64, currency: &str) -> String {
    Currency::from_code(currency)
        .map(|currency| Money::new(minor, currency).to_string())
        .unwrap_or_else(|_| format!("{minor} {currency}"))
}

#[derive(Template)]
#[template(path = "ops_overview.html")]
struct OverviewPage {
    csrf: String,
    operator: String,
    role: String,
    frozen: usize,
    restricted: usize,
    dead: usize,
    ledger_ok: bool,
    problems: Vec<String>,
    balances: Vec<(String, String, String)>,
}

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let mut tx = app.store.read().await?;
    let report = ledger::verify(&mut tx).await?;
    let balances = ledger::balances_by_kind(&mut tx).await?;
    let frozen = cards::in_status(&mut tx, "frozen", 1000).await?.len();
    let restricted = cardholders::in_status(&mut tx, "restricted", 1000).await?.len();
    let dead = jobs::list(&mut tx, Some("dead"), None, 100, None).await?.rows.len();
    drop(tx);
    render(&OverviewPage {
        csrf: signed_in.session.csrf.clone(),
        operator: signed_in.operator.name.clone(),
        role: signed_in.operator.role.clone(),
        frozen,
        restricted,
        dead,
        ledger_ok: report.ok,
        problems: report.problems,
        balances: balances
            .into_iter()
            .map(|(kind, currency, balance)| (kind.replace('_', " "), currency.clone(), money(balance, &currency)))
            .collect(),
    })
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

#[derive(Template)]
#[template(path = "ops_search.html")]
struct SearchPage {
    csrf: String,
    admin: bool,
    q: String,
    cardholders: Vec<String>,
    /// Id, what the card is, and the pause action it offers (`pause` or `resume`), if any.
    cards: Vec<(String, String, Option<&'static str>)>,
}

async fn search(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<SearchQuery>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let mut tx = app.store.read().await?;
    let holders = cardholders::search(&mut tx, &query.q, 50).await?;
    let found = cards::search(&mut tx, &query.q, 50).await?;
    drop(tx);
    render(&SearchPage {
        csrf: signed_in.session.csrf.clone(),
        admin: signed_in.admin(),
        q: query.q.clone(),
        cardholders: holders
            .iter()
            .map(|holder| format!("{} — {} <{}>, {}", holder.id, holder.name, holder.email, holder.status))
            .collect(),
        cards: found
            .iter()
            .map(|card| {
                let view = crate::views::CardView::of(card, now);
                let text = format!(
                    "{} — {} •••• {}, {}, {} of {}",
                    card.id,
                    card.bin,
                    card.last4,
                    view.status,
                    money(card.captured, card.currency.code()),
                    money(card.amount, card.currency.code())
                );
                let pause = match view.status.as_str() {
                    "active" | "used" => Some("pause"),
                    "paused" => Some("resume"),
                    _ => None,
                };
                (card.id.clone(), text, pause)
            })
            .collect(),
    })
}

/// One outcome's part of one hour's column in the chart.
struct Segment {
    x: i64,
    y: i64,
    height: i64,
    color: &'static str,
    title: String,
}

/// Chart colors: approvals green, each decline reason its own (in the legend's order).
const APPROVED_COLOR: &str = "#2e8b57";
const DECLINE_COLORS: [&str; 8] =
    ["#c0392b", "#d35400", "#8e44ad", "#2c3e50", "#b7950b", "#7f8c8d", "#a93226", "#1f618d"];

#[derive(Template)]
#[template(path = "ops_authorizations.html")]
struct AuthorizationsPage {
    csrf: String,
    response_code: String,
    reason: String,
    mcc: String,
    chart_width: i64,
    first_label: String,
    segments: Vec<Segment>,
    /// (outcome, count over the 24 hours, its color).
    outcomes: Vec<(String, i64, &'static str)>,
    rows: Vec<(String, String, String, String, String, String, String)>,
}

#[derive(Deserialize)]
struct FeedQuery {
    response_code: Option<String>,
    reason: Option<String>,
    mcc: Option<String>,
}

/// The last 24 hours' authorizations as a chart: a column an hour, each stacked by outcome (approved first, then
/// each decline reason), scaled to the busiest hour.
struct HourlyChart {
    /// The first column's hour, in hours since the epoch.
    first_hour: i64,
    segments: Vec<Segment>,
    /// The legend: outcome, count, color.
    outcomes: Vec<(String, i64, &'static str)>,
}

impl HourlyChart {
    /// From counts by (hour since the epoch, outcome).
    fn of(hourly: &[(i64, String, i64)], now: DateTime<Utc>) -> HourlyChart {
        let first_hour = (now - Duration::hours(23)).timestamp() / 3600;
        let mut totals: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        let mut columns: Vec<std::collections::BTreeMap<String, i64>> = vec![Default::default(); 24];
        for (hour, outcome, count) in hourly {
            if let Some(column) = usize::try_from(hour - first_hour).ok().and_then(|index| columns.get_mut(index)) {
                *column.entry(outcome.clone()).or_default() += count;
                *totals.entry(outcome.clone()).or_default() += count;
            }
        }
        let mut order: Vec<String> = totals.keys().filter(|outcome| *outcome != "approved").cloned().collect();
        order.insert(0, "approved".to_owned());
        let color = |outcome: &str| match order.iter().position(|known| known == outcome) {
            Some(0) | None => APPROVED_COLOR,
            Some(index) => DECLINE_COLORS[(index - 1) % DECLINE_COLORS.len()],
        };
        let busiest = columns.iter().map(|column| column.values().sum::<i64>()).max().unwrap_or(0).max(1);
        let mut segments = Vec::new();
        for (index, column) in columns.iter().enumerate() {
            let hour = DateTime::from_timestamp((first_hour + index as i64) * 3600, 0).unwrap_or(now);
            let mut top = 118;
            for outcome in order.iter().filter(|outcome| column.contains_key(*outcome)) {
                let count = column[outcome];
                let height = (count * 110 / busiest).max(1);
                top -= height;
                segments.push(Segment {
                    x: index as i64 * 14 + 2,
                    y: top,
                    height,
                    color: color(outcome),
                    title: format!("{}: {count} {}", hour.format("%H:00"), outcome.replace('_', " ")),
                });
            }
        }
        let outcomes = order
            .iter()
            .map(|outcome| (outcome.clone(), totals.get(outcome).copied().unwrap_or(0), color(outcome)))
            .collect();
        HourlyChart { first_hour, segments, outcomes }
    }
}

async fn authorizations_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let filter =
        |value: &Option<String>| value.as_deref().map(str::trim).filter(|value| !value.is_empty()).map(str::to_owned);
    let (code, reason, mcc) = (filter(&query.response_code), filter(&query.reason), filter(&query.mcc));
    let mut tx = app.store.read().await?;
    let feed = authorizations::feed(&mut tx, code.as_deref(), reason.as_deref(), mcc.as_deref(), 100).await?;
    let hourly = authorizations::hourly_outcomes(&mut tx, now - Duration::hours(24)).await?;
    drop(tx);
    let chart = HourlyChart::of(&hourly, now);
    render(&AuthorizationsPage {
        csrf: signed_in.session.csrf.clone(),
        response_code: code.unwrap_or_default(),
        reason: reason.unwrap_or_default(),
        mcc: mcc.unwrap_or_default(),
        chart_width: 24 * 14 + 4,
        first_label: DateTime::from_timestamp(chart.first_hour * 3600, 0)
            .unwrap_or(now)
            .format("%-d %b %H:00")
            .to_string(),
        segments: chart.segments,
        outcomes: chart.outcomes,
        rows: feed
            .iter()
            .map(|record| {
                (
                    record.created_at.format("%-d %b %H:%M:%S").to_string(),
                    record.card_id.clone().unwrap_or_else(|| "unknown card".to_owned()),
                    record.merchant_name.clone().unwrap_or_else(|| record.merchant_id.clone()),
                    record.mcc.clone(),
                    money(record.amount, &record.currency),
                    record.response_code.clone(),
                    record
                        .decline_reason
                        .clone()
                        .map_or_else(|| record.rule.clone(), |reason| format!("{reason} ({})", record.rule)),
                )
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "ops_flags.html")]
struct FlagsPage {
    csrf: String,
    admin: bool,
    notice: Option<String>,
    error: Option<String>,
    cards: Vec<(String, String, String, String)>,
    cardholders: Vec<(String, String, String)>,
}

async fn flags_page(app: &App, signed_in: &SignedIn, notice: Option<String>, error: Option<String>) -> PageResult {
    let mut tx = app.store.read().await?;
    let frozen = cards::in_status(&mut tx, "frozen", 200).await?;
    let mut rows = Vec::with_capacity(frozen.len());
    for card in &frozen {
        let why = cards::transitions(&mut tx, &card.id)
            .await?
            .into_iter()
            .rev()
            .find(|(to, _, _)| to == "frozen")
            .map(|(_, reason, at)| format!("{reason}, {}", at.format("%-d %b %H:%M")))
            .unwrap_or_default();
        rows.push((card.id.clone(), format!("{} •••• {}", card.bin, card.last4), card.cardholder_id.clone(), why));
    }
    let restricted = cardholders::in_status(&mut tx, "restricted", 200).await?;
    drop(tx);
    render(&FlagsPage {
        csrf: signed_in.session.csrf.clone(),
        admin: signed_in.admin(),
        notice,
        error,
        cards: rows,
        cardholders: restricted
            .iter()
            .map(|holder| {
                (
                    holder.id.clone(),
                    format!("{} <{}>", holder.name, holder.email),
                    holder.restricted_reason.clone().unwrap_or_default(),
                )
            })
            .collect(),
    })
}

async fn flags(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    flags_page(&app, &signed_in, None, None).await
}

/// Unfreeze or close a frozen card (admins), audited in the same transaction.
async fn card_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    may_act(&signed_in, &form.csrf)?;
    let actor = Actor { name: signed_in.actor(), origin: crate::clients::origin(&headers) };
    let mut tx = app.store.begin().await?;
    let changed = match action.as_str() {
        "unfreeze" => service::cards::operator_change(&mut tx, &id, OperatorChange::Unfreeze, &actor, now).await,
        "close" => service::cards::operator_change(&mut tx, &id, OperatorChange::Close, &actor, now).await,
        "pause" => service::cards::set_paused(&mut tx, &id, true, &actor, now).await,
        "resume" => service::cards::set_paused(&mut tx, &id, false, &actor, now).await,
        _ => return Err(PageError(StatusCode::NOT_FOUND, "There is no such action.".to_owned())),
    };
    let record = match changed {
        Ok(record) => record,
        Err(CardError::NotFound(_)) => {
            return Err(PageError(StatusCode::NOT_FOUND, "There is no such card.".to_owned()));
        }
        Err(CardError::NotAllowed(reason)) => {
            drop(tx);
            return flags_page(&app, &signed_in, None, Some(format!("Not possible: {reason}."))).await;
        }
        Err(refused @ CardError::NotPausable(_)) => {
            drop(tx);
            return flags_page(&app, &signed_in, None, Some(format!("Not possible: {refused}."))).await;
        }
        Err(error) => return Err(PageError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())),
    };
    ghostcard_store::commit(tx).await?;
    let done = match action.as_str() {
        "close" => "closed",
        "pause" => "paused",
        "resume" => "resumed",
        _ => "unfrozen",
    };
    flags_page(&app, &signed_in, Some(format!("Card {} •••• {} {done}.", record.bin, record.last4)), None).await
}

/// Lift a cardholder's restriction (admins), audited.
async fn lift(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    may_act(&signed_in, &form.csrf)?;
    let mut tx = app.store.begin().await?;
    if !cardholders::set_status(&mut tx, &id, "active", None).await? {
        return Err(PageError(StatusCode::NOT_FOUND, "There is no such cardholder.".to_owned()));
    }
    audit::append(
        &mut tx,
        &AuditEntry {
            resource: Some(id.clone()),
            ..audit_entry(&signed_in.actor(), "ops.cardholder.lift_restriction", "success", &headers, now)
        },
    )
    .await?;
    ghostcard_store::commit(tx).await?;
    flags_page(&app, &signed_in, Some("The restriction is lifted.".to_owned()), None).await
}

#[derive(Template)]
#[template(path = "ops_jobs.html")]
struct JobsPage {
    csrf: String,
    admin: bool,
    notice: Option<String>,
    jobs: Vec<(String, String, String, i64, String, String)>,
}

#[derive(Deserialize)]
struct JobsQuery {
    status: Option<String>,
    kind: Option<String>,
}

async fn jobs_list(
    app: &App,
    signed_in: &SignedIn,
    status: Option<&str>,
    kind: Option<&str>,
    notice: Option<String>,
) -> PageResult {
    let mut tx = app.store.read().await?;
    let page = jobs::list(&mut tx, status, kind, 100, None).await?;
    drop(tx);
    render(&JobsPage {
        csrf: signed_in.session.csrf.clone(),
        admin: signed_in.admin(),
        notice,
        jobs: page
            .rows
            .iter()
            .map(|job| {
                (
                    job.id.clone(),
                    job.kind.clone(),
                    job.status.clone(),
                    job.attempts,
                    job.run_at.format("%-d %b %H:%M:%S").to_string(),
                    job.last_error.clone().unwrap_or_default(),
                )
            })
            .collect(),
    })
}

async fn jobs_page(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<JobsQuery>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let status = query.status.as_deref().filter(|status| ["pending", "done", "dead"].contains(status));
    jobs_list(&app, &signed_in, status, query.kind.as_deref().filter(|kind| !kind.is_empty()), None).await
}

async fn retry_job(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    may_act(&signed_in, &form.csrf)?;
    let mut tx = app.store.begin().await?;
    let revived = jobs::revive(&mut tx, &id, now).await?;
    if revived {
        audit::append(
            &mut tx,
            &AuditEntry {
                resource: Some(id.clone()),
                ..audit_entry(&signed_in.actor(), "ops.job.retry", "success", &headers, now)
            },
        )
        .await?;
    }
    ghostcard_store::commit(tx).await?;
    app.wake_jobs.notify_one();
    let notice = if revived { "The job is pending again." } else { "Only a dead job can be retried." };
    jobs_list(&app, &signed_in, Some("dead"), None, Some(notice.to_owned())).await
}

#[derive(Template)]
#[template(path = "ops_audit.html")]
struct AuditPage {
    csrf: String,
    action: String,
    rows: Vec<(String, String, String, String, String, String)>,
}

#[derive(Deserialize)]
struct AuditQuery {
    action: Option<String>,
}

async fn audit_page(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<AuditQuery>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_operator!(app, headers, now);
    let action = query.action.as_deref().map(str::trim).filter(|action| !action.is_empty());
    let mut tx = app.store.read().await?;
    let page = audit::list(&mut tx, action, 200).await?;
    drop(tx);
    render(&AuditPage {
        csrf: signed_in.session.csrf.clone(),
        action: action.unwrap_or_default().to_owned(),
        rows: page
            .rows
            .iter()
            .map(|entry| {
                (
                    entry.at.format("%-d %b %H:%M:%S").to_string(),
                    entry.actor.clone(),
                    entry.action.clone(),
                    entry.resource.clone().unwrap_or_default(),
                    entry.outcome.clone(),
                    entry.origin.clone().unwrap_or_default(),
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_hourly_chart_stacks_approvals_first_and_scales_to_the_busiest_hour() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 30, 0).unwrap();
        let this_hour = now.timestamp() / 3600;
        let hourly = [
            (this_hour, "approved".to_owned(), 30),
            (this_hour, "insufficient_funds".to_owned(), 10),
            (this_hour - 1, "approved".to_owned(), 4),
            (this_hour - 30, "approved".to_owned(), 99),
        ];
        let chart = HourlyChart::of(&hourly, now);
        assert_eq!(chart.first_hour, this_hour - 23);
        let legend: Vec<_> = chart.outcomes.iter().map(|(outcome, count, _)| (outcome.as_str(), *count)).collect();
        assert_eq!(legend, [("approved", 34), ("insufficient_funds", 10)], "older than 24 hours is left out");
        let last: Vec<_> = chart.segments.iter().filter(|segment| segment.x == 23 * 14 + 2).collect();
        assert_eq!(last.len(), 2);
        assert_eq!((last[0].height, last[0].color), (82, APPROVED_COLOR), "30 of the busiest hour's 40");
        assert_eq!(last[0].y + last[0].height, 118, "approvals sit at the bottom");
        assert_eq!(last[1].y + last[1].height, last[0].y, "the decline is stacked on top");
        assert_eq!(last[1].height, 27);
    }
}
