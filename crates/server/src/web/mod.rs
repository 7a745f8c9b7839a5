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
        .route("/app/static/card.js", get(card_script))
        .route("/app/cards/new", get(new_card))
        .route("/app/cards/preview", post(preview_card))
        .route("/app/cards", post(create_card))
        .route("/app/cards/{id}", get(show_card))
        .route("/app/cards/{id}/reveal", post(reveal_card))
        .route("/app/cards/{id}/{action}", post(card_action))
        .route("/app/plans/{id}", get(show_plan))
        .route("/app/plans/{id}/pay", post(pay_plan))
}

/// A page failure shown to a person: a short message, never internals.
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

// ---- One-time cards ----------------------------------------------------------------------------------------

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

#[derive(Template)]
#[template(path = "new_card.html")]
struct NewCardPage {
    csrf: String,
    error: Option<String>,
    available: String,
    currency: String,
    amount: String,
    plan: String,
    plans: Vec<(String, String)>,
    sources: Vec<(String, String)>,
}

async fn new_card_page(app: &App, signed_in: &SignedIn, error: Option<String>, amount: &str, plan: &str) -> PageResult {
    let now = app.clock.now();
    let mut tx = app.store.read().await?;
    let power = purchase_power_of(app, &mut tx, &signed_in.cardholder, now).await.map_err(page_error)?;
    let sources = funding_sources::for_cardholder(&mut tx, &signed_in.cardholder.id).await?;
    drop(tx);
    let mut response = render(&NewCardPage {
        csrf: signed_in.session.csrf.clone(),
        error: error.clone(),
        available: power.available.to_string(),
        currency: app.currency.code().to_owned(),
        amount: amount.to_owned(),
        plan: plan.to_owned(),
        plans: PlanKind::ALL.iter().map(|kind| (kind.as_str().to_owned(), plan_name(*kind, &app.plan_terms))).collect(),
        sources: sources
            .iter()
            .filter(|source| source.status == "active")
            .map(|source| (source.id.clone(), format!("{} ending {}", source.brand, source.last4)))
            .collect(),
    })?;
    if error.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

async fn new_card(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    new_card_page(&app, &signed_in, None, "", "pay_in_4").await
}

#[derive(Deserialize)]
struct CardForm {
    csrf: String,
    /// Only on the final form (the preview's "Create the card").
    once: Option<String>,
    amount: String,
    plan: String,
    funding_source_id: String,
}

#[derive(Template)]
#[template(path = "card_preview.html")]
struct PreviewPage {
    csrf: String,
    once: String,
    amount: String,
    amount_minor: i64,
    plan: String,
    plan_name: String,
    funding_source_id: String,
    schedule: Vec<(String, String)>,
}

/// Step 1: the schedule the card would have, before anything is created.
async fn preview_card(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CardForm>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let amount = match Money::parse(form.amount.trim(), app.currency) {
        Ok(amount) if amount.is_positive() => amount,
        _ => {
            let error = format!("Enter the amount in {} with a dot for cents, e.g. 40.00.", app.currency.code());
            return new_card_page(&app, &signed_in, Some(error), &form.amount, &form.plan).await;
        }
    };
    let Some(kind) = PlanKind::parse(&form.plan) else {
        return new_card_page(&app, &signed_in, Some("Choose how you pay.".to_owned()), &form.amount, &form.plan).await;
    };
    let schedule = Plan::new(kind, amount, app.today(now), &app.plan_terms)
        .map(|plan| {
            plan.installments
                .iter()
                .map(|installment| {
                    (installment.due_date.format("%-d %b %Y").to_string(), plan.money(installment.amount()).to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    render(&PreviewPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        amount: amount.to_string(),
        amount_minor: amount.minor(),
        plan: kind.as_str().to_owned(),
        plan_name: plan_name(kind, &app.plan_terms),
        funding_source_id: form.funding_source_id,
        schedule,
    })
}

/// Step 2: the card, through the same path as `POST /v1/cards`.
async fn create_card(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CardForm>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let created = |id: &str| redirect(&format!("/app/cards/{id}?created=1"));
    let token = form.once.as_deref().unwrap_or_default();
    let claim = match once::begin(&app, &signed_in.cardholder.id, "/app/cards", token).await? {
        Once::Done(body) => {
            return Ok(once::stored_id(&body).map_or_else(|| redirect("/app/dashboard"), |id| created(&id)));
        }
        Once::Go(claim) => claim,
    };
    let body = CreateCard {
        cardholder_id: signed_in.cardholder.id.clone(),
        amount: form.amount.trim().parse().unwrap_or(0),
        currency: app.currency.code().to_owned(),
        funding_source_id: form.funding_source_id.clone(),
        plan: form.plan.clone(),
    };
    let shown = Money::new(body.amount, app.currency).format_amount();
    match issuing::create(&app, &body, &web_actor(&signed_in.cardholder, &headers), Some(&claim)).await {
        Ok((card, _)) => {
            app.wake_jobs.notify_one();
            Ok(created(&card.id))
        }
        Err(error) => {
            once::release(&app, &claim).await?;
            new_card_page(&app, &signed_in, Some(page_error(error).1), &shown, &form.plan).await
        }
    }
}

/// The signed-in cardholder's card `id`, or a 404 page (someone else's card does not exist for them).
async fn own_card(app: &App, signed_in: &SignedIn, id: &str) -> Result<CardRecord, PageError> {
    let mut tx = app.store.read().await?;
    let card = cards::get(&mut tx, id).await?;
    card.filter(|card| card.cardholder_id == signed_in.cardholder.id)
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "There is no such card.".to_owned()))
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardPage {
    csrf: String,
    once: String,
    id: String,
    masked: String,
    notice: Option<String>,
    error: Option<String>,
    revealed: Option<(String, String, String)>,
    can_reveal: bool,
    status: String,
    amount: String,
    held: String,
    captured: String,
    remaining: String,
    plan_name: String,
    plan_id: Option<String>,
    merchant: Option<String>,
    active: bool,
    refundable: bool,
    valid_until: String,
    valid_until_iso: String,
    time_left: String,
    seconds_left: i64,
    activity: Vec<ActivityRow>,
}

/// One line of a card's activity: an authorization, a capture or a refund.
struct ActivityRow {
    when: String,
    merchant: String,
    amount: String,
    result: String,
    /// `declined` for a declined authorization (styled).
    class: &'static str,
}

async fn card_page(
    app: &App,
    signed_in: &SignedIn,
    card: &CardRecord,
    notice: Option<String>,
    error: Option<String>,
    revealed: Option<(String, String, String)>,
) -> PageResult {
    let now = app.clock.now();
    let currency = card.currency;
    let money = |minor: i64| Money::new(minor, currency).to_string();
    let view = crate::views::CardView::of(card, now);
    let activity = card_activity(app, card, currency).await?;
    let left = (card.valid_until - now).num_seconds().max(0);
    let active = view.status == "active";
    render(&CardPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        id: card.id.clone(),
        masked: format!("{} •••• {}", card.bin, card.last4),
        notice,
        error,
        can_reveal: matches!(view.status.as_str(), "active" | "used"),
        revealed,
        status: view.status.clone(),
        amount: money(card.amount),
        held: money(card.held),
        captured: money(card.captured),
        remaining: money(view.remaining_amount),
        plan_name: plan_name(card.plan_kind, &app.plan_terms),
        plan_id: card.plan_id.clone(),
        merchant: card.merchant_name.clone().or_else(|| card.merchant_id.clone()),
        active,
        refundable: matches!(view.status.as_str(), "used") && view.remaining_amount > 0,
        valid_until: card.valid_until.format("%-d %b %Y %H:%M UTC").to_string(),
        valid_until_iso: card.valid_until.to_rfc3339(),
        time_left: format!("{} h {:02} min", left / 3600, (left % 3600) / 60),
        seconds_left: left,
        activity,
    })
}

/// The card's authorizations and its captures and refunds from clearing, newest first.
async fn card_activity(app: &App, card: &CardRecord, currency: Currency) -> Result<Vec<ActivityRow>, PageError> {
    let money = |minor: i64| Money::new(minor, currency).to_string();
    let mut tx = app.store.read().await?;
    let authorizations = authorizations::list(&mut tx, Some(&card.id), None, 100, None).await?;
    let clearings = ghostcard_store::clearings::for_card(&mut tx, &card.id).await?;
    drop(tx);
    let mut activity: Vec<(DateTime<Utc>, ActivityRow)> = authorizations
        .rows
        .iter()
        .map(|record| {
            let shown = crate::views::AuthorizationView::from(record);
            let result = match &shown.decline_message {
                Some(message) => format!("Declined: {message}"),
                None => shown.status.replace('_', " "),
            };
            (
                record.created_at,
                ActivityRow {
                    when: record.created_at.format("%-d %b %H:%M").to_string(),
                    merchant: record.merchant_name.clone().unwrap_or_else(|| record.merchant_id.clone()),
                    amount: money(record.amount),
                    result,
                    class: if shown.decline_message.is_some() { "declined" } else { "" },
                },
            )
        })
        .collect();
    for clearing in &clearings {
        let what = match clearing.kind.as_str() {
            "refund" => "Refunded by the merchant",
            "force_post" => "Purchase posted",
            _ => "Purchase captured",
        };
        activity.push((
            clearing.created_at,
            ActivityRow {
                when: clearing.created_at.format("%-d %b %H:%M").to_string(),
                merchant: card.merchant_name.clone().unwrap_or_default(),
                amount: money(clearing.amount),
                result: what.to_owned(),
                class: "",
            },
        ));
    }
    activity.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(activity.into_iter().map(|(_, row)| row).collect())
}

#[derive(Deserialize)]
struct CardQuery {
    created: Option<String>,
    /// After a post: `cancel`, `refund-unused`, or `reveal` (a reveal form sent again shows nothing).
    done: Option<String>,
}

async fn show_card(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<CardQuery>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    let card = own_card(&app, &signed_in, &id).await?;
    let notice = match (query.created, query.done.as_deref()) {
        (Some(_), _) => Some("Your card is ready. Show its details when you pay."),
        (_, Some("cancel")) => Some("The card is canceled."),
        (_, Some("refund-unused")) => Some("The unused amount is refunded."),
        (_, Some("reveal")) => Some("The details were already shown for that form. Show them again if you need them."),
        _ => None,
    };
    card_page(&app, &signed_in, &card, notice.map(str::to_owned), None, None).await
}

/// Shows the card's number, expiry and security code — audited, like `POST /v1/cards/{id}/reveal`.
async fn reveal_card(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(form): Form<OnceForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let card = own_card(&app, &signed_in, &id).await?;
    let path = format!("/app/cards/{}/reveal", card.id);
    let claim = match once::begin(&app, &signed_in.cardholder.id, &path, &form.once).await? {
        Once::Done(..) => return Ok(redirect(&format!("/app/cards/{}?done=reveal", card.id))),
        Once::Go(claim) => claim,
    };
    let actor = web_actor(&signed_in.cardholder, &headers);
    let revealed = match issuing::reveal(&app, &card, &actor, Some(&claim)).await {
        Ok(revealed) => revealed,
        Err(error) => {
            once::release(&app, &claim).await?;
            return Err(page_error(error));
        }
    };
    let spaced: String = revealed
        .number
        .as_bytes()
        .chunks(4)
        .map(|group| String::from_utf8_lossy(group).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let details = (spaced, format!("{:02}/{}", revealed.exp_month, revealed.exp_year % 100), revealed.cvv.clone());
    card_page(&app, &signed_in, &card, None, None, Some(details)).await
}

/// Cancel and refund-unused, as the cardholder: the same use cases as the API's.
async fn card_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    Form(form): Form<OnceForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let card = own_card(&app, &signed_in, &id).await?;
    if !matches!(action.as_str(), "cancel" | "refund-unused") {
        return Err(PageError(StatusCode::NOT_FOUND, "There is no such page.".to_owned()));
    }
    let done = redirect(&format!("/app/cards/{}?done={action}", card.id));
    let claim =
        match once::begin(&app, &signed_in.cardholder.id, &format!("/app/cards/{}/{action}", card.id), &form.once)
            .await?
        {
            Once::Done(..) => return Ok(done),
            Once::Go(claim) => claim,
        };
    let actor = web_actor(&signed_in.cardholder, &headers);
    let changed = async {
        let mut tx = app.store.begin().await?;
        let record = if action == "cancel" {
            crate::service::cards::cancel(&mut tx, &card.id, &actor, now).await?
        } else {
            crate::service::cards::refund_unused(&mut tx, &card.id, &actor, now).await?
        };
        crate::service::commit_with(tx, Some(&claim), 303, &record.id).await?;
        Ok::<_, CardError>(())
    };
    match changed.await {
        Ok(()) => {
            app.wake_jobs.notify_one();
            Ok(done)
        }
        Err(error) => {
            once::release(&app, &claim).await?;
            let message = match error {
                CardError::Store(_) | CardError::Ledger(_) | CardError::Inconsistent(_) => {
                    tracing::error!(%error, card = %card.id, "a card change from the web app failed");
                    SOMETHING_WENT_WRONG.to_owned()
                }
                refused => refused.to_string(),
            };
            let card = own_card(&app, &signed_in, &id).await?;
            card_page(&app, &signed_in, &card, None, Some(message), None).await
        }
    }
}

async fn card_script() -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        include_str!("../../static/card.js"),
    )
        .into_response()
}

// ---- Payment plans -----------------------------------------------------------------------------------------

struct InstallmentRow {
    seq: u32,
    due: String,
    amount: String,
    paid: String,
    status: String,
    status_class: &'static str,
    width: i64,
}

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    csrf: String,
    once: String,
    id: String,
    card_id: String,
    notice: Option<String>,
    error: Option<String>,
    plan_name: String,
    status: String,
    principal: String,
    fees: String,
    has_fees: bool,
    balance: String,
    payoff: String,
    active: bool,
    installments: Vec<InstallmentRow>,
}

async fn own_plan(app: &App, signed_in: &SignedIn, id: &str) -> Result<PlanRecord, PageError> {
    let mut tx = app.store.read().await?;
    let plan = plans::get(&mut tx, id).await?;
    plan.filter(|plan| plan.cardholder_id == signed_in.cardholder.id)
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "There is no such plan.".to_owned()))
}

fn plan_page(
    app: &App,
    signed_in: &SignedIn,
    record: &PlanRecord,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let plan = &record.plan;
    let today = app.today(app.clock.now());
    let largest = plan.installments.iter().map(|installment| installment.amount()).max().unwrap_or(1).max(1);
    render(&PlanPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        id: record.id.clone(),
        card_id: record.card_id.clone(),
        notice,
        error,
        plan_name: plan_name(plan.kind, &app.plan_terms),
        status: plan.status.as_str().replace('_', " "),
        principal: plan.money(plan.principal).to_string(),
        fees: plan.money(plan.fees).to_string(),
        has_fees: plan.fees > 0,
        balance: plan.money(plan.balance()).to_string(),
        payoff: plan.money(plan.payoff_amount(today)).to_string(),
        active: plan.status == ghostcard_domain::plan::PlanStatus::Active,
        installments: plan
            .installments
            .iter()
            .map(|installment| {
                use ghostcard_domain::plan::InstallmentStatus as Status;
                InstallmentRow {
                    seq: installment.seq,
                    due: installment.due_date.format("%-d %b %Y").to_string(),
                    amount: plan.money(installment.amount()).to_string(),
                    paid: if installment.paid > 0 && installment.status != Status::Paid {
                        plan.money(installment.paid).to_string()
                    } else {
                        String::new()
                    },
                    status: installment.status.as_str().replace('_', " "),
                    status_class: match installment.status {
                        Status::Paid => "paid",
                        Status::Failed | Status::Overdue => "late",
                        _ => "",
                    },
                    width: installment.amount() * 100 / largest,
                }
            })
            .collect(),
    })
}

async fn show_plan(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<PlanQuery>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    let plan = own_plan(&app, &signed_in, &id).await?;
    let notice = query.paid.map(|_| "Thank you: your payment went through.".to_owned());
    plan_page(&app, &signed_in, &plan, notice, None)
}

#[derive(Deserialize)]
struct PlanQuery {
    paid: Option<String>,
}

#[derive(Deserialize)]
struct PayForm {
    csrf: String,
    #[serde(default)]
    once: String,
    /// `next` (the next open installment) or `all`.
    what: String,
}

/// Pays early through the same path as `POST /v1/plans/{id}/payments`.
async fn pay_plan(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(form): Form<PayForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let plan = own_plan(&app, &signed_in, &id).await?;
    let paid = redirect(&format!("/app/plans/{}?paid=1", plan.id));
    let claim =
        match once::begin(&app, &signed_in.cardholder.id, &format!("/app/plans/{}/pay", plan.id), &form.once).await? {
            Once::Done(..) => return Ok(paid),
            Once::Go(claim) => claim,
        };
    let next = plan
        .plan
        .installments
        .iter()
        .find(|installment| {
            installment.owed() > 0 && installment.status != ghostcard_domain::plan::InstallmentStatus::RolledOver
        })
        .map(|installment| installment.seq);
    let payment = match (form.what.as_str(), next) {
        ("all", _) => Payment::Payoff,
        (_, Some(seq)) => Payment::Installment(seq),
        _ => {
            once::release(&app, &claim).await?;
            return plan_page(&app, &signed_in, &plan, None, Some("Nothing is owed on this plan.".to_owned()));
        }
    };
    match crate::service::plans::pay(&app, &id, payment, None, now).await {
        Ok(_) => {
            once::complete(&app, &claim, "paid").await?;
            Ok(paid)
        }
        Err(error) => {
            // A payment the gateway has not answered yet is queued: sending the form again must not pay twice.
            if matches!(error, PaymentError::Pending) {
                once::complete(&app, &claim, "queued").await?;
            } else {
                once::release(&app, &claim).await?;
            }
            let message = match error {
                PaymentError::Store(error) => {
                    tracing::error!(%error, plan = %id, "a plan payment from the web app failed");
                    SOMETHING_WENT_WRONG.to_owned()
                }
                refused => refused.to_string(),
            };
            let plan = own_plan(&app, &signed_in, &id).await?;
            plan_page(&app, &signed_in, &plan, None, Some(message))
        }
    }
}
