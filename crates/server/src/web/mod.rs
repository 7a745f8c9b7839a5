//! The web app, served by `ghostcard serve` itself under `/app`: server-rendered pages (askama templates, one
//! small stylesheet; JavaScript only for copy buttons and the live countdown), for cardholders: sign-up and
//! sign-in, the dashboard (purchase power and why, funding cards, cards), a new card with its schedule shown
//! before it is created, the card page (masked; reveal audited; cancel; refund unused; activity with decline
//! reasons in plain words), and the plan page (installment timeline, pay early). Every action goes through the
//! same functions as the REST API.
//!
//! **Sessions**: signing in creates a random 32-byte token, sent as the `gc_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` in live mode); the database keeps only its keyed hash. A session ends after 15
//! minutes without a request, or at sign-out. **CSRF**: every form carries a token — the session's, or for the
//! sign-up and sign-in forms a random one that must match the `gc_csrf` cookie — and a POST without the right one
//! changes nothing; forms that change something also carry a one-time token ([`once`]), so a form sent twice does its
//! work once. **Passwords**: Argon2id, checked by a bounded number of workers; sign-ins are rate-limited per origin
//! and per email (after ten attempts, one every 30 seconds: a guesser is slowed, the owner never locked out), and no
//! answer says whether an email has an account ([`crate::clients`]). Sign-ins and failures are audited.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::{Plan, PlanKind};
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::cards::CardRecord;
use ghostcard_store::plans::{self, PlanRecord};
use ghostcard_store::web_sessions::{self, SessionKind, WebSession};
use ghostcard_store::{StoreError, authorizations, cards, funding_sources};
use serde::Deserialize;

mod once;
mod ops;

use crate::App;
use crate::service::cardholders::{
    AddFundingSource, CreateCardholder, link_funding_source, new_cardholder, purchase_power_of,
};
use crate::service::cards::CardError;
use crate::service::issuing::{self, CreateCard};
use crate::service::plans::{Payment, PaymentError};
use crate::service::{Actor, ServiceError};
use once::Once;

const SESSION_COOKIE: &str = "gc_session";
const CSRF_COOKIE: &str = "gc_csrf";
/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::minutes(15);

pub fn router() -> axum::Router<Arc<App>> {
    ops::router()
        .route("/app", get(home))
        .route("/app/", get(home))
        .route("/app/static/style.css", get(stylesheet))
        .route("/app/sign-up", get(sign_up_page).post(sign_up))
        .route("/app/sign-in", get(sign_in_page).post(sign_in))
        .route("/app/sign-out", post(sign_out))
        .route("/app/dashboard", get(dashboard))
        .route("/app/funding-sources", post(add_funding_source))
        .merge(card_pages::router())
        .merge(plan_pages::router())
}

/// A page failure shown to a person: a short message, never internals.
#[derive(Debug)]
struct PageError(StatusCode, String);

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "web page failed");
        PageError(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side; try again.".to_owned())
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        tracing::error!(%error, "template failed");
        PageError(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side; try again.".to_owned())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ghostcard</title>\
             <link rel=\"stylesheet\" href=\"/app/static/style.css\"></head><body><main><h1>Sorry</h1>\
             <p class=\"error\" role=\"alert\">{}</p><p><a href=\"/app\">Back to the app</a></p></main></body></html>",
            askama::filters::escape(&self.1, askama::filters::Html)
                .map(|escaped| escaped.to_string())
                .unwrap_or_default()
        );
        (self.0, page_headers(), Html(body)).into_response()
    }
}

/// A 400 page for a request refused before any page handled it (e.g. control characters in a form).
pub fn bad_request(message: &str) -> Response {
    PageError(StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

type PageResult = Result<Response, PageError>;

/// Pages are personal: never cached. They load nothing from elsewhere, cannot be framed (clickjacking), and
/// forms post only here.
fn page_headers() -> [(axum::http::header::HeaderName, HeaderValue); 5] {
    use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
    [
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; \
                 form-action 'self'; base-uri 'none'; object-src 'none'",
            ),
        ),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (REFERRER_POLICY, HeaderValue::from_static("same-origin")),
    ]
}

fn render(template: &impl Template) -> PageResult {
    Ok((page_headers(), Html(template.render()?)).into_response())
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/app")));
    response
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn set_cookie(response: &mut Response, app: &App, name: &str, value: &str, max_age: Option<i64>, path: &str) {
    let secure = if app.sandbox() { "" } else { "; Secure" };
    let age = max_age.map(|seconds| format!("; Max-Age={seconds}")).unwrap_or_default();
    let header = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}{age}");
    if let Ok(value) = HeaderValue::from_str(&header) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Who signs in where: cardholders in the app, operators in the console. Each has its own session table,
/// cookie, path and audit names.
#[derive(Debug, Clone, Copy)]
struct Realm {
    kind: SessionKind,
    session_cookie: &'static str,
    path: &'static str,
    home: &'static str,
    audit: &'static str,
    actor: &'static str,
}

const CARDHOLDERS: Realm = Realm {
    kind: SessionKind::Cardholder,
    session_cookie: SESSION_COOKIE,
    path: "/app",
    home: "/app/dashboard",
    audit: "web",
    actor: "cardholder",
};

impl Realm {
    fn actor(&self, id: &str) -> String {
        format!("{}:{id}", self.actor)
    }
}

/// A request's live session in `realm` (the request keeps it alive): its token hash and record.
async fn live_session(
    app: &App,
    headers: &HeaderMap,
    realm: Realm,
    now: DateTime<Utc>,
) -> Result<Option<(Vec<u8>, WebSession)>, PageError> {
    let Some(token) = cookie(headers, realm.session_cookie) else { return Ok(None) };
    let token_hash = app.vault.keyed_hash(token.as_bytes());
    let mut tx = app.store.begin().await?;
    let Some(session) = web_sessions::get(&mut tx, realm.kind, &token_hash).await? else { return Ok(None) };
    if now - session.last_seen_at > IDLE_TIMEOUT {
        web_sessions::delete(&mut tx, realm.kind, &token_hash).await?;
        ghostcard_store::commit(tx).await?;
        return Ok(None);
    }
    web_sessions::touch(&mut tx, realm.kind, &token_hash, now).await?;
    ghostcard_store::commit(tx).await?;
    Ok(Some((token_hash, session)))
}

/// The signed-in cardholder of a request, if its session is live.
struct SignedIn {
    token_hash: Vec<u8>,
    session: WebSession,
    cardholder: Cardholder,
}

async fn signed_in(app: &App, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Option<SignedIn>, PageError> {
    let Some((token_hash, session)) = live_session(app, headers, CARDHOLDERS, now).await? else { return Ok(None) };
    let mut tx = app.store.read().await?;
    let cardholder = cardholders::get(&mut tx, &session.subject_id).await?;
    Ok(cardholder.map(|cardholder| SignedIn { token_hash, session, cardholder }))
}

/// Starts a session for `subject_id` in `tx`: the answer carries its cookie and goes to the realm's home page.
async fn start_session(
    app: &App,
    tx: &mut ghostcard_store::Tx,
    realm: Realm,
    subject_id: &str,
    now: DateTime<Utc>,
) -> Result<Response, PageError> {
    let token = random_token();
    let session =
        WebSession { subject_id: subject_id.to_owned(), csrf: random_token(), created_at: now, last_seen_at: now };
    web_sessions::insert(tx, realm.kind, &app.vault.keyed_hash(token.as_bytes()), &session).await?;
    let mut response = redirect(realm.home);
    set_cookie(&mut response, app, realm.session_cookie, &token, None, realm.path);
    set_cookie(&mut response, app, CSRF_COOKIE, "", Some(0), realm.path);
    Ok(response)
}

/// What became of a sign-in attempt.
enum SignIn {
    /// Signed in: the response that starts the session.
    Session(Response),
    /// Refused, with the message for the form (the same for unknown emails and wrong passwords).
    Refused(String),
    /// Too many attempts from this origin or for this email: try again after this long.
    Throttled(Duration),
}

/// A sign-in attempt in `realm`. Rate-limited per origin and per email, whether or not the email has an account
/// ([`crate::clients`]): a guesser is slowed down to one attempt every 30 seconds for an email after ten, but the
/// owner is never locked out, and the answers say nothing about which emails have accounts. Unknown emails get the
/// same answer after the same work as wrong passwords; every attempt with an account is audited.
async fn attempt_sign_in(
    app: &App,
    headers: &HeaderMap,
    realm: Realm,
    email: &str,
    password: &str,
) -> Result<SignIn, PageError> {
    const WRONG: &str = "The email or the password is not right.";
    let now = app.clock.now();
    let origin = crate::clients::origin(headers).unwrap_or_default();
    let account_key = format!("{}:{}", realm.audit, email.trim().to_lowercase());
    let guards = &app.guards;
    if let Err(wait) = guards.password_attempts_per_origin.take(&origin, now) {
        app.metrics.count_refusal("sign_in_rate_per_origin");
        return Ok(SignIn::Throttled(wait));
    }
    if let Err(wait) = guards.sign_ins_per_account.take(&account_key, now) {
        app.metrics.count_refusal("sign_in_rate_per_account");
        return Ok(SignIn::Throttled(wait));
    }
    // The password is checked first, off the runtime's threads and outside the write transaction: Argon2id takes
    // tens of milliseconds of CPU, and SQLite's one write connection, which network authorizations use too, must not
    // wait for it.
    let mut tx = app.store.read().await?;
    let account = web_sessions::account_by_email(&mut tx, realm.kind, email).await?;
    drop(tx);
    let hash = account.as_ref().and_then(|(_, hash)| hash.clone());
    let Ok(matches) = guards.password_matches(hash.clone(), password).await else {
        guards.sign_ins_per_account.give_back(&account_key);
        return Ok(SignIn::Throttled(Duration::seconds(1)));
    };
    let Some((id, _)) = account else {
        return Ok(SignIn::Refused(WRONG.to_owned()));
    };
    let mut tx = app.store.begin().await?;
    // A password changed in between: the attempt checked the old one, so it fails.
    let unchanged = web_sessions::account_by_email(&mut tx, realm.kind, email)
        .await?
        .is_some_and(|(current_id, current_hash)| current_id == id && current_hash == hash);
    let action = format!("{}.sign_in", realm.audit);
    let actor = realm.actor(&id);
    if !(matches && unchanged) {
        web_sessions::record_sign_in(&mut tx, realm.kind, &id, false).await?;
        audit::append(&mut tx, &audit_entry(&actor, &action, "failure", headers, now)).await?;
        ghostcard_store::commit(tx).await?;
        return Ok(SignIn::Refused(WRONG.to_owned()));
    }
    web_sessions::record_sign_in(&mut tx, realm.kind, &id, true).await?;
    let response = start_session(app, &mut tx, realm, &id, now).await?;
    audit::append(&mut tx, &audit_entry(&actor, &action, "success", headers, now)).await?;
    ghostcard_store::commit(tx).await?;
    guards.sign_ins_per_account.give_back(&account_key);
    Ok(SignIn::Session(response))
}

/// The answer to a request over a rate limit: 429 with `Retry-After`, and the page saying when to try again.
fn throttled(wait: Duration) -> Response {
    let seconds = crate::clients::retry_after_seconds(wait);
    let message = format!("Too many attempts. Wait {seconds} seconds, then try again.");
    let mut response = PageError(StatusCode::TOO_MANY_REQUESTS, message).into_response();
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Ends the session (a form with its CSRF token) and goes to `then`.
async fn end_session(
    app: &App,
    headers: &HeaderMap,
    realm: Realm,
    (token_hash, session): (&[u8], &WebSession),
    csrf: &str,
    then: &str,
) -> PageResult {
    if !same(&session.csrf, csrf) {
        return Err(forged());
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    web_sessions::delete(&mut tx, realm.kind, token_hash).await?;
    let action = format!("{}.sign_out", realm.audit);
    audit::append(&mut tx, &audit_entry(&realm.actor(&session.subject_id), &action, "success", headers, now)).await?;
    ghostcard_store::commit(tx).await?;
    let mut response = redirect(then);
    set_cookie(&mut response, app, realm.session_cookie, "", Some(0), realm.path);
    Ok(response)
}

/// A page that needs a signed-in cardholder: the sign-in page otherwise.
macro_rules! require_session {
    ($app:expr, $headers:expr, $now:expr) => {
        match signed_in(&$app, &$headers, $now).await? {
            Some(signed_in) => signed_in,
            None => return Ok(redirect("/app/sign-in?expired=1")),
        }
    };
}

/// A form post that needs a signed-in cardholder and the session's CSRF token: refused (403) without the token.
macro_rules! require_form {
    ($app:expr, $headers:expr, $now:expr, $csrf:expr) => {{
        let signed_in = require_session!($app, $headers, $now);
        if !same(&signed_in.session.csrf, $csrf) {
            return Err(forged());
        }
        signed_in
    }};
}

fn audit_entry(actor: &str, action: &str, outcome: &str, headers: &HeaderMap, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        resource: None,
        outcome: outcome.to_owned(),
        origin: crate::clients::origin(headers),
        detail: None,
    }
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let now = app.clock.now();
    Ok(redirect(if signed_in(&app, &headers, now).await?.is_some() { "/app/dashboard" } else { "/app/sign-in" }))
}

async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

/// The anonymous forms' CSRF token: the browser's `gc_csrf` cookie, or a new one to set.
fn anonymous_csrf(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if token.len() >= 32 => (token, false),
        _ => (random_token(), true),
    }
}

fn anonymous_form_ok(headers: &HeaderMap, submitted: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|expected| expected.len() >= 32 && same(&expected, submitted))
}

fn forged() -> PageError {
    PageError(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this site; reload the page and try again.".to_owned(),
    )
}

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpPage {
    csrf: String,
    error: Option<String>,
    name: String,
    email: String,
    country: String,
}

async fn sign_up_page(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let (csrf, new) = anonymous_csrf(&headers);
    let mut response = render(&SignUpPage {
        csrf: csrf.clone(),
        error: None,
        name: String::new(),
        email: String::new(),
        country: app.country.as_str().to_owned(),
    })?;
    if new {
        set_cookie(&mut response, &app, CSRF_COOKIE, &csrf, None, "/app");
    }
    Ok(response)
}

#[derive(Deserialize)]
struct SignUpForm {
    csrf: String,
    name: String,
    email: String,
    country: String,
    password: String,
}

async fn sign_up(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<SignUpForm>) -> PageResult {
    if !anonymous_form_ok(&headers, &form.csrf) {
        return Err(forged());
    }
    let now = app.clock.now();
    let again = |error: String| {
        render(&SignUpPage {
            csrf: form.csrf.clone(),
            error: Some(error),
            name: form.name.clone(),
            email: form.email.clone(),
            country: form.country.clone(),
        })
        .map(|mut response| {
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        })
    };
    let origin = crate::clients::origin(&headers).unwrap_or_default();
    for (limit, reason) in [
        (&app.guards.sign_ups_per_origin, "sign_up_rate_per_origin"),
        (&app.guards.password_attempts_per_origin, "sign_in_rate_per_origin"),
    ] {
        if let Err(wait) = limit.take(&origin, now) {
            app.metrics.count_refusal(reason);
            return Ok(throttled(wait));
        }
    }
    let body = CreateCardholder {
        email: form.email.clone(),
        name: form.name.clone(),
        password: Some(form.password.clone()),
        country: form.country.trim().to_uppercase(),
    };
    let cardholder = match new_cardholder(&app, &body, now).await {
        Ok(cardholder) => cardholder,
        Err(ServiceError::Busy(_)) => return Ok(throttled(Duration::seconds(1))),
        Err(error) => return again(page_error(error).1),
    };
    let mut tx = app.store.begin().await?;
    match cardholders::insert(&mut tx, &cardholder).await {
        // Said so that it does not tell whether the email has an account.
        Err(StoreError::Conflict) => {
            return again("We could not create an account with these details. If you have one, sign in.".to_owned());
        }
        other => other?,
    }
    let response = start_session(&app, &mut tx, CARDHOLDERS, &cardholder.id, now).await?;
    audit::append(&mut tx, &audit_entry(&CARDHOLDERS.actor(&cardholder.id), "web.sign_up", "success", &headers, now))
        .await?;
    ghostcard_store::commit(tx).await?;
    Ok(response)
}

/// The sign-in page of either realm.
#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    /// The operator console's page (else the cardholder app's).
    console: bool,
    action: String,
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
    email: String,
}

#[derive(Deserialize)]
struct SignInQuery {
    expired: Option<String>,
    signed_out: Option<String>,
}

#[derive(Deserialize)]
struct SignInForm {
    csrf: String,
    email: String,
    password: String,
}

impl Realm {
    fn sign_in_page(&self, csrf: String, notice: Option<String>, error: Option<String>, email: String) -> SignInPage {
        SignInPage {
            console: self.kind == SessionKind::Operator,
            action: format!("{}/sign-in", self.path),
            csrf,
            notice,
            error,
            email,
        }
    }
}

/// The sign-in form, with a CSRF token cookie for it when the browser has none.
async fn show_sign_in(app: &App, headers: &HeaderMap, realm: Realm, query: SignInQuery) -> PageResult {
    let (csrf, new) = anonymous_csrf(headers);
    let notice = if query.signed_out.is_some() {
        Some("You are signed out.".to_owned())
    } else if query.expired.is_some() {
        Some("Please sign in (sessions end after 15 minutes without activity).".to_owned())
    } else {
        None
    };
    let mut response = render(&realm.sign_in_page(csrf.clone(), notice, None, String::new()))?;
    if new {
        set_cookie(&mut response, app, CSRF_COOKIE, &csrf, None, realm.path);
    }
    Ok(response)
}

/// A posted sign-in form: a session, or the form again with why not (401).
async fn submit_sign_in(app: &App, headers: &HeaderMap, realm: Realm, form: SignInForm) -> PageResult {
    if !anonymous_form_ok(headers, &form.csrf) {
        return Err(forged());
    }
    match attempt_sign_in(app, headers, realm, &form.email, &form.password).await? {
        SignIn::Session(response) => Ok(response),
        SignIn::Throttled(wait) => Ok(throttled(wait)),
        SignIn::Refused(error) => {
            let mut response = render(&realm.sign_in_page(form.csrf, None, Some(error), form.email))?;
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(response)
        }
    }
}

async fn sign_in_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> PageResult {
    show_sign_in(&app, &headers, CARDHOLDERS, query).await
}

async fn sign_in(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<SignInForm>) -> PageResult {
    submit_sign_in(&app, &headers, CARDHOLDERS, form).await
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A form that changes something: the session's CSRF token and the page's one-time token ([`once`]).
#[derive(Deserialize)]
struct OnceForm {
    csrf: String,
    #[serde(default)]
    once: String,
}

async fn sign_out(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    let session = (signed_in.token_hash.as_slice(), &signed_in.session);
    end_session(&app, &headers, CARDHOLDERS, session, &form.csrf, "/app/sign-in?signed_out=1").await
}

struct CardRow {
    id: String,
    masked: String,
    amount: String,
    status: String,
    plan: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    csrf: String,
    /// The one-time token of the page's forms ([`once`]).
    once: String,
    name: String,
    notice: Option<String>,
    error: Option<String>,
    available: String,
    limit: String,
    outstanding: String,
    explanation: String,
    restricted: Option<String>,
    funding: Vec<String>,
    cards: Vec<CardRow>,
}

#[derive(Deserialize)]
struct DashboardQuery {
    linked: Option<String>,
}

async fn dashboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<DashboardQuery>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    let notice = query.linked.map(|_| "Your funding card is linked.".to_owned());
    dashboard_page(&app, &signed_in, notice, None, now).await
}

async fn dashboard_page(
    app: &App,
    signed_in: &SignedIn,
    notice: Option<String>,
    error: Option<String>,
    now: DateTime<Utc>,
) -> PageResult {
    let cardholder = &signed_in.cardholder;
    let mut tx = app.store.read().await?;
    let power = purchase_power_of(app, &mut tx, cardholder, now).await.map_err(page_error)?;
    let sources = funding_sources::for_cardholder(&mut tx, &cardholder.id).await?;
    let page = cards::list(&mut tx, Some(&cardholder.id), None, 100, None).await?;
    drop(tx);
    let breakdown = &power.breakdown;
    let explanation = format!(
        "{} to start, {} for the months you have been with us, {} for plans repaid on time; at most {}.",
        breakdown.base, breakdown.tenure, breakdown.repaid_plans, breakdown.max
    );
    let restricted = power.restricted_reason.map(|reason| match reason {
        ghostcard_domain::purchase_power::RestrictedReason::OverdueInstallment => {
            "An installment is overdue: pay it to spend again.".to_owned()
        }
        ghostcard_domain::purchase_power::RestrictedReason::AccountRestricted => {
            "Your account is restricted; contact support.".to_owned()
        }
    });
    render(&DashboardPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        name: cardholder.name.clone(),
        notice,
        error,
        available: power.available.to_string(),
        limit: power.limit.to_string(),
        outstanding: power.outstanding.to_string(),
        explanation,
        restricted,
        funding: sources
            .iter()
            .map(|source| {
                format!(
                    "{} ending {} (expires {:02}/{})",
                    source.brand, source.last4, source.exp_month, source.exp_year
                )
            })
            .collect(),
        cards: page
            .rows
            .iter()
            .map(|card| CardRow {
                id: card.id.clone(),
                masked: format!("{} •••• {}", card.bin, card.last4),
                amount: Money::new(card.amount, card.currency).to_string(),
                status: crate::views::CardView::of(card, now).status,
                plan: card.plan_kind.as_str().replace('_', " "),
            })
            .collect(),
    })
}

const SOMETHING_WENT_WRONG: &str = "Something went wrong on our side; try again.";

/// A use case's refusal as a page: its status, and its sentence (what failed on our side is logged, not shown).
fn page_error(error: ServiceError) -> PageError {
    let status = match &error {
        ServiceError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
        ServiceError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Conflict { .. } => StatusCode::CONFLICT,
        ServiceError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Store(_) | ServiceError::Internal(_) => {
            tracing::error!(%error, "a web request failed");
            return PageError(StatusCode::INTERNAL_SERVER_ERROR, SOMETHING_WENT_WRONG.to_owned());
        }
    };
    PageError(status, error.to_string())
}

#[derive(Deserialize)]
struct FundingForm {
    csrf: String,
    #[serde(default)]
    once: String,
    number: String,
    exp_month: String,
    exp_year: String,
    cvc: String,
}

async fn add_funding_source(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<FundingForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    const LINKED: &str = "/app/dashboard?linked=1";
    let claim = match once::begin(&app, &signed_in.cardholder.id, "/app/funding-sources", &form.once).await? {
        Once::Done(..) => return Ok(redirect(LINKED)),
        Once::Go(claim) => claim,
    };
    let body = AddFundingSource {
        number: Some(form.number.chars().filter(|c| !c.is_whitespace()).collect()),
        exp_month: form.exp_month.trim().parse().ok(),
        exp_year: form.exp_year.trim().parse().ok(),
        cvc: Some(form.cvc.trim().to_owned()),
        token: None,
    };
    let source = match link_funding_source(&app, &signed_in.cardholder.id, &body, now).await {
        Ok(source) => source,
        Err(error) => {
            once::release(&app, &claim).await?;
            let mut response = dashboard_page(&app, &signed_in, None, Some(page_error(error).1), now).await?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    let mut tx = app.store.begin().await?;
    funding_sources::insert(&mut tx, &source).await?;
    ghostcard_store::idempotency::complete(&mut tx, &claim.scope, &claim.key, 303, LINKED).await?;
    ghostcard_store::commit(tx).await?;
    Ok(redirect(LINKED))
}

/// A plan as a person reads it.
fn plan_name(kind: PlanKind, terms: &ghostcard_domain::plan::PlanTerms) -> String {
    match kind {
        PlanKind::PayNow => "Pay now from your funding card".to_owned(),
        PlanKind::PayIn4 => "Pay in 4: a quarter now, then every 2 weeks, no interest".to_owned(),
        PlanKind::PayIn30 => "Pay in 30 days, no interest".to_owned(),
        PlanKind::Financing(months) => format!(
            "{months} monthly payments at {}.{:02}% APR",
            terms.financing_apr_basis_points / 100,
            terms.financing_apr_basis_points % 100
        ),
    }
}

/// Who acts in a cardholder's own request through the web app.
fn web_actor(cardholder: &Cardholder, headers: &HeaderMap) -> Actor {
    Actor { name: format!("cardholder:{}", cardholder.id), origin: crate::clients::origin(headers) }
}

mod card_pages;
mod plan_pages;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_its_sentence_and_an_internal_failure_shows_none_of_its_internals() {
        let refused = page_error(ServiceError::refused("funding_declined", "the funding card declined the hold"));
        assert_eq!(
            (refused.0, refused.1.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "the funding card declined the hold")
        );
        let invalid = page_error(ServiceError::invalid("invalid_amount", "amount is positive").with_param("amount"));
        assert_eq!(invalid.0, StatusCode::BAD_REQUEST);
        assert_eq!(page_error(ServiceError::not_found("card", "card_1")).0, StatusCode::NOT_FOUND);
        assert_eq!(page_error(ServiceError::conflict("card_not_cancelable", "used")).0, StatusCode::CONFLICT);
        let internal = page_error(ServiceError::internal("connection to 10.0.0.7 refused; key=abc"));
        assert_eq!((internal.0, internal.1.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, SOMETHING_WENT_WRONG));
    }

    #[test]
    fn plans_are_named_as_a_person_reads_them() {
        let terms = ghostcard_domain::plan::PlanTerms {
            financing_apr_basis_points: 1_505,
            ..ghostcard_domain::plan::PlanTerms::defaults(Currency::USD)
        };
        assert_eq!(plan_name(PlanKind::PayIn30, &terms), "Pay in 30 days, no interest");
        assert_eq!(plan_name(PlanKind::Financing(12), &terms), "12 monthly payments at 15.05% APR");
    }

    #[test]
    fn tokens_compare_whole_and_equal_only() {
        assert!(same("a1b2", "a1b2"));
        assert!(!same("a1b2", "a1b3") && !same("a1b2", "a1b") && !same("", "a"));
        let (first, second) = (random_token(), random_token());
        assert_ne!(first, second);
        assert!(first.len() >= 32 && first.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_".contains(&byte)));
    }

    #[test]
    fn every_page_forbids_framing_caching_and_foreign_scripts() {
        let response = render(&SignUpPage {
            csrf: "token".to_owned(),
            error: None,
            email: String::new(),
            name: String::new(),
            country: "US".to_owned(),
        })
        .expect("renders");
        let headers = response.headers();
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
        let policy = headers["content-security-policy"].to_str().expect("text");
        assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    }
}
