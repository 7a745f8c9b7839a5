//! The REST API of docs/reference/rest.md: routing, authentication, idempotency, JSON bodies, pagination and errors.
//! Handlers live in one module per resource; they call the domain and the store and never contain SQL.

pub mod auth_rules;
pub mod authorizations;
pub mod cardholders;
pub mod cards;
pub mod decision_endpoints;
pub mod error;
pub mod events;
pub mod input;
pub mod jobs;
pub mod ledger;
pub mod network;
pub mod ops;
pub mod plans;
pub mod simulate;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Duration;
use ghostcard_store::idempotency::{self, Claim};
use ghostcard_store::{Tx, api_keys};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::App;

/// Who is calling: set by [`authenticate`] for every `/v1` request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `api_key:key_…`: recorded in the audit log.
    pub actor: String,
    /// Idempotency keys are scoped to this.
    pub scope: String,
    /// The remote address, when known.
    pub origin: Option<String>,
}

impl Caller {
    /// The caller as the use cases record it.
    pub fn actor(&self) -> crate::service::Actor {
        crate::service::Actor { name: self.actor.clone(), origin: self.origin.clone() }
    }
}

/// The idempotency key this request claimed, if it sent one (an extension of the request). A handler that changes
/// something completes it in its own transaction with [`finish`], or its use case does.
pub use crate::service::{IDEMPOTENCY_RETENTION, IdempotencyClaim};

/// Marks a response whose idempotency record the handler already wrote.
const STORED_HEADER: &str = "x-ghostcard-idempotency-stored";

#[derive(OpenApi)]
#[openapi(
    info(title = "ghostcard", description = "Single-use virtual cards with pay-later plans: the REST API."),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new())]);
    }
}

/// The API's routes: `/v1` (authenticated, idempotent), the health and metrics endpoints and `/openapi.json`.
/// [`crate::router`] puts them together with the web app's.
pub fn routes(app: Arc<App>) -> axum::Router<Arc<App>> {
    let v1 = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(cardholders::create))
        .routes(routes!(cardholders::get))
        .routes(routes!(cardholders::purchase_power))
        .routes(routes!(cardholders::add_funding_source))
        .routes(routes!(cards::create, cards::list))
        .routes(routes!(cards::get))
        .routes(routes!(cards::reveal))
        .routes(routes!(cards::cancel))
        .routes(routes!(cards::refund_unused))
        .routes(routes!(cards::pause))
        .routes(routes!(cards::resume))
        .routes(routes!(cards::spending_controls))
        .routes(routes!(authorizations::list))
        .routes(routes!(auth_rules::create, auth_rules::list))
        .routes(routes!(auth_rules::get, auth_rules::update, auth_rules::disable))
        .routes(routes!(auth_rules::versions))
        .routes(routes!(auth_rules::report))
        .routes(routes!(auth_rules::create_backtest))
        .routes(routes!(auth_rules::get_backtest))
        .routes(routes!(decision_endpoints::create, decision_endpoints::list))
        .routes(routes!(decision_endpoints::disable))
        .routes(routes!(ledger::verify))
        .routes(routes!(simulate::authorize))
        .routes(routes!(plans::get))
        .routes(routes!(plans::pay))
        .routes(routes!(events::list))
        .routes(routes!(events::get))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::retry))
        .routes(routes!(network::clearings))
        .routes(routes!(simulate::reverse))
        .routes(routes!(simulate::clear))
        .routes(routes!(simulate::refund))
        .routes(routes!(simulate::advance_clock))
        .layer(middleware::from_fn_with_state(app.clone(), idempotent))
        .layer(middleware::from_fn_with_state(app.clone(), authenticate));
    let (v1, openapi) = v1.split_for_parts();
    let openapi = Arc::new(openapi);
    axum::Router::new()
        .merge(v1)
        .route("/healthz", axum::routing::get(ops::healthz))
        .route("/readyz", axum::routing::get(ops::readyz))
        .route("/metrics", axum::routing::get(ops::metrics))
        .route("/openapi.json", axum::routing::get(move || async move { Json(openapi.as_ref().clone()) }))
}

/// The answer to a path nothing serves.
pub async fn route_not_found() -> Response {
    ApiError::invalid("route_not_found", "no such endpoint; see /openapi.json").into_response()
}

/// Records request counts and latencies for `/metrics`.
pub(crate) async fn measure(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics.observe_request(method.as_str(), &route, response.status().as_u16(), started.elapsed());
    response
}

/// Requires `Authorization: Bearer <api key>` on `/v1`. Failures are audited as a count per origin and minute
/// ([`crate::clients::FailedAuthentications`]): a flood of bad keys costs no durable write per request.
async fn authenticate(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let origin = crate::clients::origin(request.headers());
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty());
    let found = match presented {
        Some(key) => {
            let hash = crate::credentials::hash_api_key(key);
            match app.store.read().await {
                Ok(mut tx) => api_keys::find_active(&mut tx, &hash).await,
                Err(error) => Err(error),
            }
        }
        None => Ok(None),
    };
    match found {
        Ok(Some(key)) => {
            let actor = format!("api_key:{}", key.id);
            request.extensions_mut().insert(Caller { scope: actor.clone(), actor, origin });
            next.run(request).await
        }
        Ok(None) => {
            let detail = if presented.is_some() { "unknown or revoked API key" } else { "no API key" };
            let due = app.guards.failed_authentications.record(origin.as_deref(), detail, app.clock.now());
            if let Err(error) = crate::clients::write_entries(&app, &due).await {
                return ApiError::internal(error).into_response();
            }
            ApiError::unauthorized("send a valid API key as `Authorization: Bearer <key>`; create one with `ghostcard api-key create --name NAME`")
                .into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The answer to a request whose Idempotency-Key was not claimed: the stored answer, or why it cannot run.
fn answer_without_running(claim: Claim) -> Response {
    match claim {
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Claim::Mismatch => ApiError::idempotency(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )
        .into_response(),
        Claim::InFlight => ApiError::idempotency(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still running; retry when it has finished",
        )
        .into_response(),
        Claim::Claimed => ApiError::internal("a claimed key has no stored answer").into_response(),
    }
}

/// Idempotency of docs/reference/rest.md for every POST that sends `Idempotency-Key` (reveal excepted: it is never
/// stored).
async fn idempotent(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let key = request.headers().get("idempotency-key").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let (Some(key), true) = (key, request.method() == Method::POST && !request.uri().path().ends_with("/reveal"))
    else {
        return next.run(request).await;
    };
    if key.is_empty() || key.len() > 255 {
        return ApiError::invalid("invalid_idempotency_key", "an Idempotency-Key is 1 to 255 characters")
            .into_response();
    }
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return ApiError::unauthorized("authentication required").into_response();
    };
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, app.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => return body_too_large(app.config.max_body_bytes).into_response(),
    };
    let mut hashed = Vec::with_capacity(bytes.len() + 64);
    hashed.extend_from_slice(parts.uri.path().as_bytes());
    hashed.push(0);
    hashed.extend_from_slice(&bytes);
    let request_hash = app.vault.keyed_hash(&hashed);
    let claim = async {
        let mut tx = app.store.begin().await?;
        let claim = idempotency::claim(
            &mut tx,
            &caller.scope,
            &key,
            &request_hash,
            app.clock.now(),
            IDEMPOTENCY_RETENTION,
            Duration::minutes(5),
        )
        .await?;
        ghostcard_store::commit(tx).await?;
        Ok::<_, ghostcard_store::StoreError>(claim)
    };
    match claim.await {
        Ok(Claim::Claimed) => {}
        Ok(other) => return answer_without_running(other),
        Err(error) => return ApiError::from(error).into_response(),
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(IdempotencyClaim { scope: caller.scope.clone(), key: key.clone() });
    let mut response = next.run(request).await;
    if response.headers_mut().remove(STORED_HEADER).is_some() {
        return response;
    }
    record_answer(&app, &IdempotencyClaim { scope: caller.scope, key }, response).await
}

/// For a handler that changed nothing (an error or a read): records its answer under the claim, or forgets the claim
/// after a server error so that a retry can succeed. As the last line of defence, an error body that quotes a digit
/// run that could be a card number is redacted, so it is neither kept nor sent.
async fn record_answer(app: &App, claim: &IdempotencyClaim, response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let redacted = match ghostcard_domain::card_number::redact_digit_runs(&String::from_utf8_lossy(&body)) {
        std::borrow::Cow::Owned(redacted) if status.is_client_error() => Some(redacted),
        _ => None,
    };
    if redacted.is_some() {
        tracing::warn!(status = status.as_u16(), "an error body quoted a digit run; redacted before it was stored");
    }
    let body = redacted.map_or(body, Bytes::from);
    let settle = async {
        let mut tx = app.store.begin().await?;
        if status.is_server_error() {
            idempotency::release(&mut tx, &claim.scope, &claim.key).await?;
        } else {
            let text = String::from_utf8_lossy(&body);
            idempotency::complete(&mut tx, &claim.scope, &claim.key, status.as_u16(), &text).await?;
        }
        ghostcard_store::commit(tx).await
    };
    if let Err(error) = settle.await {
        return ApiError::from(error).into_response();
    }
    Response::from_parts(parts, Body::from(body))
}

/// Completes the request's idempotency record (if any) inside `tx`, commits, and builds the response: the record
/// and the change it guards land together.
pub async fn finish<T: serde::Serialize>(
    tx: Tx,
    claim: Option<&IdempotencyClaim>,
    status: StatusCode,
    value: &T,
) -> Result<Response, ApiError> {
    let body = serde_json::to_string(value).map_err(ApiError::internal)?;
    crate::service::commit_with(tx, claim, status.as_u16(), &body).await?;
    Ok(json_answer(status, body, claim.is_some()))
}

/// A JSON answer; `stored`: its idempotency record is already written (the middleware leaves it be).
pub fn json_answer(status: StatusCode, body: String, stored: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if stored {
        headers.insert(STORED_HEADER, HeaderValue::from_static("1"));
    }
    response
}

/// The optional claim extension, as handlers receive it.
pub type Claimed = Option<Extension<IdempotencyClaim>>;

pub(crate) fn body_too_large(limit: usize) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "invalid_request_error",
        code: "body_too_large".to_owned(),
        message: format!("the request body is larger than {limit} bytes"),
        param: None,
        retry_after_seconds: None,
    }
}

/// A JSON body, parsed strictly: malformed JSON, unknown fields, missing fields and wrong types are 400s with
/// a stable code and the field at fault as `param`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<App>) -> Result<Self, Self::Rejection> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        let bytes: Bytes = to_bytes(request.into_body(), state.config.max_body_bytes)
            .await
            .map_err(|_| body_too_large(state.config.max_body_bytes))?;
        if !json && !bytes.is_empty() {
            return Err(ApiError::invalid(
                "invalid_content_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = if bytes.is_empty() { Bytes::from_static(b"{}") } else { bytes };
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T`, mapping serde's errors to API errors. The messages name the field at fault and what
/// was expected, never the value that was sent: a card number sent as a JSON number, say, must not come back in an
/// error (nor be kept with an idempotency record).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|error| ApiError::invalid("invalid_json", format!("the body is not valid JSON: {error}")))?;
    if let Some(path) = input::control_character_in(&value) {
        return Err(input::control_characters(Some(path).filter(|path| is_field_name(path))));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        let (code, param) = if let Some(field) = between_backticks(message, "unknown field `") {
            ("unknown_field", Some(field))
        } else if let Some(field) = between_backticks(message, "missing field `") {
            ("missing_field", Some(field))
        } else {
            ("invalid_field", (path != ".").then_some(path))
        };
        let param = param.filter(|param| is_field_name(param));
        ApiError { param, ..ApiError::invalid(code, without_values(message)) }
    })
}

/// serde's message with the request's own values left out: "invalid type: integer `4111…`, expected a string"
/// becomes "invalid type: integer, expected a string". Field names are kept when they look like field names.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((unexpected, expected)) = rest.rsplit_once(", expected ")
        {
            let kind = unexpected.split(['`', '"']).next().unwrap_or_default().trim_end();
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    for (prefix, what) in [("unknown variant `", "unknown value"), ("unknown field `", "unknown field")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The name is the caller's and may hold anything, "`, " included: what follows it is serde's own words,
            // found from the end.
            let split = ["`, expected ", "`, there are no "]
                .iter()
                .find_map(|separator| rest.rfind(separator).map(|at| (&rest[..at], &rest[at + 3..])));
            let (name, expected) = split.unwrap_or((rest, ""));
            let shown =
                if what == "unknown field" && is_field_name(name) { format!(" `{name}`") } else { String::new() };
            return format!("{what}{shown}{}{expected}", if expected.is_empty() { "" } else { ", " });
        }
    }
    ghostcard_domain::card_number::redact_digit_runs(message).into_owned()
}

/// A JSON path or field name as a request may name one: short, letters, digits, `_`, `.` and `[]` only.
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'[' | b']'))
        && ghostcard_domain::card_number::redact_digit_runs(name) == name
}

fn between_backticks(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_owned())
}

/// `?limit=` (1–100, default 20) and `?starting_after=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(20),
            Some(limit @ 1..=100) => Ok(limit as u32),
            Some(_) => Err(ApiError::invalid("invalid_limit", "limit is 1 to 100").with_param("limit")),
        }
    }
}

/// The list envelope of docs/reference/rest.md.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}
