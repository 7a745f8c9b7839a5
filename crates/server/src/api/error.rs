//! Errors in the shape of docs/reference/rest.md: `{"error": {"type", "code", "message", "param"}}` with a stable
//! `code`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ghostcard_domain::card_number::redact_digit_runs;
use ghostcard_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The family: `invalid_request_error`, `authentication_error`, `refusal_error`, `state_error`,
    /// `idempotency_error`, `rate_limit_error`, `api_error`.
    pub kind: &'static str,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// For 429 and 503: when to try again, in seconds (the `Retry-After` header).
    pub retry_after_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    /// Stable machine code, e.g. `amount_too_small`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            code: code.to_owned(),
            message: message.into(),
            param: None,
            retry_after_seconds: None,
        }
    }

    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_owned());
        self
    }

    /// 400: the request itself is wrong.
    pub fn invalid(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message)
    }

    /// 404 for a resource kind and id. The id is named only when it has the shape of one of ours (a prefix, `_`,
    /// letters and digits): a path may carry anything, a card number included.
    pub fn not_found(resource: &str, id: &str) -> ApiError {
        let looks_like_an_id = id.len() <= 64
            && id.split_once('_').is_some_and(|(prefix, rest)| {
                !prefix.is_empty()
                    && prefix.bytes().all(|byte| byte.is_ascii_lowercase())
                    && rest.bytes().all(|byte| byte.is_ascii_alphanumeric())
            });
        let message = if looks_like_an_id { format!("no {resource} {id:?}") } else { format!("no such {resource}") };
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", message)
    }

    /// 422: understood, but refused by a rule.
    pub fn refused(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refusal_error", code, message)
    }

    /// 409: the resource is not in a state that allows this.
    pub fn conflict(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "state_error", code, message)
    }

    pub fn idempotency(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(status, "idempotency_error", code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", "unauthorized", message)
    }

    /// 429: too many requests of this kind from this caller; try again after `retry_after_seconds`.
    pub fn too_many(code: &str, message: impl Into<String>, retry_after_seconds: i64) -> ApiError {
        let error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", code, message);
        ApiError { retry_after_seconds: Some(retry_after_seconds.max(1)), ..error }
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "invalid_request_error", code, message)
    }

    /// 500, logged (at most once a second, with a count of the lines held back: a database outage fails every
    /// request); the message never carries internals.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        static LOG: crate::limits::LogLimiter = crate::limits::LogLimiter::new(std::time::Duration::from_secs(1));
        if let Some(suppressed) = LOG.allow() {
            tracing::error!(%error, suppressed, "request failed");
        }
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "something went wrong on our side; try again",
        )
    }

    /// The body of docs/reference/rest.md. Message and param pass [`redact_digit_runs`] on the way out: whatever a
    /// message quotes from a request, a card number in it is never shown or stored.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                code: self.code.clone(),
                message: redact_digit_runs(&self.message).into_owned(),
                param: self.param.as_deref().map(|param| redact_digit_runs(param).into_owned()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::clients::Busy> for ApiError {
    fn from(busy: crate::clients::Busy) -> Self {
        ApiError::too_many("busy", busy.to_string(), 1)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Stale => {
                ApiError::conflict("concurrent_update", "the resource changed while this request ran; retry it")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::vault::VaultError> for ApiError {
    fn from(error: crate::vault::VaultError) -> Self {
        ApiError::internal(error)
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(error: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError;
        let (error, param) = match error {
            ServiceError::Invalid { code, message, param } => (ApiError::invalid(code, message), param),
            ServiceError::NotFound { what, id, param } => (ApiError::not_found(what, &id), param),
            ServiceError::Refused { code, message, param } => (ApiError::refused(code, message), param),
            ServiceError::Conflict { code, message, param } => (ApiError::conflict(code, message), param),
            ServiceError::Busy(busy) => (busy.into(), None),
            ServiceError::Store(error) => (error.into(), None),
            ServiceError::Internal(error) => (ApiError::internal(error), None),
        };
        match param {
            Some(param) => error.with_param(&param),
            None => error,
        }
    }
}
