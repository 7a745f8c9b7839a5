//! The one HTTP application: the API's routes and the web app's, put together above both adapters, behind the checks
//! every request passes first (control characters, body size and time), the client's origin and the metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::api::ApiError;
use crate::api::input::{control_characters, has_control_characters};

/// The whole HTTP application.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .merge(crate::api::routes(app.clone()))
        .merge(crate::web::router())
        .fallback(crate::api::route_not_found)
        .layer(middleware::from_fn_with_state(app.clone(), check_request))
        .layer(middleware::from_fn_with_state(app.clone(), crate::clients::resolve_origin))
        .layer(middleware::from_fn_with_state(app.clone(), crate::api::measure))
        .with_state(app)
}

/// Percent-decodes `text` (and, in forms, `+` as a space), as the extractors will: what they would hand a handler
/// is what is checked. Invalid escapes stay as they are.
fn percent_decoded(text: &[u8], plus_is_space: bool) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        let hex = |at: usize| text.get(at).and_then(|byte| (*byte as char).to_digit(16));
        match (text[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                index += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a request before anything else sees it: no control characters in its path, query or form body (JSON bodies
/// are checked where they are parsed, [`crate::api::parse_json`], which can name the field), and a body no larger than
/// `max_body_bytes` that arrives within `http_body_timeout_seconds` (a client that sends it slowly holds a connection
/// and a task). The body is read here, once, so every extractor after it reads from memory. Pages get a page, the
/// API its JSON error.
pub async fn check_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let uri = request.uri();
    let in_path = has_control_characters(&percent_decoded(uri.path().as_bytes(), false));
    let in_query = uri.query().is_some_and(|query| has_control_characters(&percent_decoded(query.as_bytes(), true)));
    let pages = is_page(uri.path());
    if in_path || in_query {
        return refusal(pages);
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let (parts, body) = request.into_parts();
    let limit = app.config.max_body_bytes;
    let timeout = Duration::from_secs(app.config.http_body_timeout_seconds.max(1));
    let bytes = match tokio::time::timeout(timeout, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return crate::api::body_too_large(limit).into_response(),
        Err(_) => {
            app.metrics.count_refusal("http_body_timeout");
            let error = ApiError {
                status: axum::http::StatusCode::REQUEST_TIMEOUT,
                ..ApiError::invalid(
                    "body_timeout",
                    format!("the request body did not arrive within {} s", timeout.as_secs()),
                )
            };
            return error.into_response();
        }
    };
    if form && has_control_characters(&percent_decoded(&bytes, true)) {
        return refusal(pages);
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn is_page(path: &str) -> bool {
    ["/app", "/ops"]
        .iter()
        .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

fn refusal(page: bool) -> Response {
    if page {
        crate::web::bad_request("The form or address contains control characters; type it again without them.")
    } else {
        control_characters(None).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_before_the_check() {
        assert!(has_control_characters(&percent_decoded(b"email=a%00b", true)));
        assert!(has_control_characters(&percent_decoded(b"q=%0a", false)));
        assert!(has_control_characters(&percent_decoded(b"q=%C2%85", false)));
        assert!(!has_control_characters(&percent_decoded(b"name=Ada+Lovelace&x=%41%2", true)));
        assert_eq!(percent_decoded(b"a+b%2Bc%zz", true), "a b+c%zz");
    }

    #[test]
    fn pages_are_the_app_and_the_console() {
        assert!(is_page("/app") && is_page("/app/cards/x") && is_page("/ops/feed"));
        assert!(!is_page("/v1/cards") && !is_page("/application") && !is_page("/opsx"));
    }
}
