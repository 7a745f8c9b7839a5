//! Sandbox endpoints (sandbox mode only): drive a card through the same paths the network would.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::card::MerchantBinding;
use ghostcard_domain::country::Country;
use ghostcard_domain::decision::{AuthorizationRequest, Mcc, MessageClass, TransactionType};
use ghostcard_domain::money::Money;
use ghostcard_store::settings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Claimed, finish};
use crate::App;
use crate::authorize::{CvvInput, Descriptors, Job, Outcome, Settlement, decide_alone};
use crate::ids::{has_prefix, new_id};
use crate::service::lifecycle::{self, ClearingResult, LifecycleError};
use crate::views::AuthorizationView;

/// The acquirer id used when a simulated authorization names none.
const SANDBOX_ACQUIRER_ID: &str = "999999";

fn sandbox_only(app: &App) -> Result<(), ApiError> {
    if app.sandbox() {
        Ok(())
    } else {
        Err(ApiError::forbidden("sandbox_only", "simulation endpoints exist only in sandbox mode"))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateAuthorization {
    pub card_id: String,
    /// Minor units of the card's currency; 0 is an account verification.
    pub amount: i64,
    /// Four digits, e.g. "5732".
    pub mcc: String,
    pub merchant_id: String,
    pub merchant_name: Option<String>,
    pub merchant_city: Option<String>,
    /// ISO 3166 alpha-2; omitted skips the country check.
    pub country: Option<String>,
    pub acquirer_id: Option<String>,
    /// ISO 4217; defaults to the card's.
    pub currency: Option<String>,
}

#[utoipa::path(post, path = "/v1/simulate/authorize", operation_id = "simulate_authorization", tag = "sandbox", request_body = SimulateAuthorization,
    responses((status = 200, body = AuthorizationView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn authorize(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<SimulateAuthorization>,
) -> Result<Response, ApiError> {
    sandbox_only(&app)?;
    if body.amount < 0 || body.amount > 999_999_999_999 {
        return Err(ApiError::invalid("invalid_amount", "amount is 0 to 999999999999 minor units").with_param("amount"));
    }
    let mcc = Mcc::parse(&body.mcc)
        .ok_or_else(|| ApiError::invalid("invalid_mcc", "mcc is 4 digits, e.g. \"5732\"").with_param("mcc"))?;
    let merchant_id = body.merchant_id.trim();
    if merchant_id.is_empty() || merchant_id.len() > 15 {
        return Err(
            ApiError::invalid("invalid_merchant_id", "merchant_id is 1 to 15 characters").with_param("merchant_id")
        );
    }
    let acquirer_id = body.acquirer_id.clone().unwrap_or_else(|| SANDBOX_ACQUIRER_ID.to_owned());
    if acquirer_id.is_empty() || acquirer_id.len() > 11 || !acquirer_id.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ApiError::invalid("invalid_acquirer_id", "acquirer_id is 1 to 11 digits").with_param("acquirer_id"));
    }
    let country = body
        .country
        .as_deref()
        .map(|code| {
            Country::parse(code).map_err(|_| {
                ApiError::invalid("invalid_country", "use an ISO 3166 alpha-2 code such as US").with_param("country")
            })
        })
        .transpose()?;
    let card = {
        let mut tx = app.store.read().await?;
        super::cards::load(&mut tx, &body.card_id, false).await.map_err(|error| error.with_param("card_id"))?
    };
    let stored = card.to_card()?;
    let currency = match &body.currency {
        Some(code) => ghostcard_domain::money::Currency::from_code(code).map_err(|_| {
            ApiError::invalid("invalid_currency", "use an ISO 4217 code such as USD").with_param("currency")
        })?,
        None => stored.currency(),
    };
    let request = AuthorizationRequest {
        class: MessageClass::Authorization,
        transaction_type: TransactionType::Purchase,
        amount_minor: body.amount,
        currency_numeric: currency.numeric(),
        expiry: Some(stored.expiry()),
        mcc,
        merchant: MerchantBinding { acquirer_id, merchant_id: merchant_id.to_owned() },
        country,
    };
    let descriptors = Descriptors {
        merchant_name: body.merchant_name.clone(),
        merchant_city: body.merchant_city.clone(),
        ..Descriptors::default()
    };
    let job = Job::new(None, card.number_hash.clone(), request, CvvInput::AssumeCorrect, descriptors);
    let decide = |job| async { decide_alone(&app, job, Settlement::HoldOnly).await.map_err(|error| error.to_string()) };
    let record = match crate::decision_endpoint::decide_asking(&app, job, decide).await.map_err(ApiError::internal)? {
        Outcome::Decided(record) | Outcome::Duplicate(record) => record,
        Outcome::Ask(_) => return Err(ApiError::internal("the decision endpoint was asked twice")),
    };
    // The authorization is already durable; the idempotency record follows in its own transaction.
    let mut tx = app.store.begin().await?;
    let view = crate::views::authorization(&mut tx, &record).await?;
    finish(tx, claim.as_deref(), StatusCode::OK, &view).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// How far to move the sandbox clock forward, 1 second to 10 years.
    pub seconds: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    pub now: DateTime<Utc>,
    /// What fell due by the new time and was done before answering.
    pub jobs: crate::jobs::JobReport,
}

#[utoipa::path(post, path = "/v1/simulate/clock/advance", operation_id = "advance_sandbox_clock", tag = "sandbox", request_body = AdvanceClock,
    responses((status = 200, body = ClockView), (status = 400, body = super::error::ErrorBody)))]
pub async fn advance_clock(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<AdvanceClock>,
) -> Result<Response, ApiError> {
    sandbox_only(&app)?;
    if !(1..=10 * 366 * 86_400).contains(&body.seconds) {
        return Err(ApiError::invalid("invalid_seconds", "seconds is 1 to 316224000 (ten years)").with_param("seconds"));
    }
    let from = app.clock.now();
    let mut tx = app.store.begin().await?;
    let offset = app.clock.advance(Duration::seconds(body.seconds));
    settings::set(&mut tx, crate::CLOCK_OFFSET_SETTING, &offset.to_string()).await?;
    ghostcard_store::commit(tx).await?;
    let now = app.clock.now();
    // Everything that fell due in between, at the instant it fell due, in order.
    let jobs = crate::jobs::run_until(&app, from, now).await.map_err(lifecycle_error)?;
    let tx = app.store.begin().await?;
    finish(tx, claim.as_deref(), StatusCode::OK, &ClockView { now, jobs }).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateReversal {
    pub authorization_id: String,
    /// How much of the hold to release, minor units; default all of it.
    pub amount: Option<i64>,
}

#[utoipa::path(post, path = "/v1/simulate/reverse", operation_id = "simulate_reversal", tag = "sandbox", request_body = SimulateReversal,
    responses((status = 200, body = AuthorizationView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn reverse(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<SimulateReversal>,
) -> Result<Response, ApiError> {
    sandbox_only(&app)?;
    if body.amount.is_some_and(|amount| amount <= 0) {
        return Err(
            ApiError::invalid("invalid_amount", "amount is a positive integer of minor units").with_param("amount")
        );
    }
    if !has_prefix(&body.authorization_id, "auth") {
        return Err(ApiError::not_found("authorization", &body.authorization_id).with_param("authorization_id"));
    }
    let mut tx = app.store.begin().await?;
    let record = lifecycle::reverse(&mut tx, &body.authorization_id, body.amount, app.clock.now())
        .await
        .map_err(lifecycle_error)?
        .ok_or_else(|| ApiError::not_found("authorization", &body.authorization_id).with_param("authorization_id"))?;
    let view = crate::views::authorization(&mut tx, &record).await?;
    finish(tx, claim.as_deref(), StatusCode::OK, &view).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateClearing {
    pub authorization_id: String,
    /// The captured amount, minor units (may be below or above the authorization).
    pub amount: i64,
}

#[utoipa::path(post, path = "/v1/simulate/clear", operation_id = "simulate_clearing", tag = "sandbox", request_body = SimulateClearing,
    responses((status = 200, body = ClearingResult), (status = 404, body = super::error::ErrorBody)))]
pub async fn clear(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<SimulateClearing>,
) -> Result<Response, ApiError> {
    sandbox_only(&app)?;
    let amount = positive(body.amount)?;
    if !has_prefix(&body.authorization_id, "auth") {
        return Err(ApiError::not_found("authorization", &body.authorization_id).with_param("authorization_id"));
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let authorization = ghostcard_store::authorizations::get(&mut tx, &body.authorization_id)
        .await?
        .ok_or_else(|| ApiError::not_found("authorization", &body.authorization_id).with_param("authorization_id"))?;
    let currency = ghostcard_domain::money::Currency::from_code(&authorization.currency).map_err(ApiError::internal)?;
    let record_id = new_id("sim", now, &mut rand::rng());
    let result = lifecycle::capture(&app, &mut tx, &authorization.id, Money::new(amount, currency), &record_id, now)
        .await
        .map_err(lifecycle_error)?;
    finish(tx, claim.as_deref(), StatusCode::OK, &result).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateRefund {
    pub card_id: String,
    /// The refunded amount, minor units.
    pub amount: i64,
}

#[utoipa::path(post, path = "/v1/simulate/refund", operation_id = "simulate_merchant_refund", tag = "sandbox", request_body = SimulateRefund,
    responses((status = 200, body = ClearingResult), (status = 404, body = super::error::ErrorBody)))]
pub async fn refund(
    State(app): State<Arc<App>>,
    claim: Claimed,
    ApiJson(body): ApiJson<SimulateRefund>,
) -> Result<Response, ApiError> {
    sandbox_only(&app)?;
    let amount = positive(body.amount)?;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let card = super::cards::load(&mut tx, &body.card_id, true).await.map_err(|error| error.with_param("card_id"))?;
    let currency = card.currency;
    let record_id = new_id("sim", now, &mut rand::rng());
    let result = lifecycle::merchant_refund(&app, &mut tx, &card.id, Money::new(amount, currency), &record_id, now)
        .await
        .map_err(lifecycle_error)?;
    finish(tx, claim.as_deref(), StatusCode::OK, &result).await
}

fn positive(amount: i64) -> Result<i64, ApiError> {
    if amount > 0 && amount <= 999_999_999_999 {
        Ok(amount)
    } else {
        Err(ApiError::invalid("invalid_amount", "amount is 1 to 999999999999 minor units").with_param("amount"))
    }
}

fn lifecycle_error(error: LifecycleError) -> ApiError {
    match error {
        LifecycleError::Declined(id) => ApiError::conflict(
            "authorization_not_reversible",
            format!("authorization {id} was declined; nothing is held"),
        ),
        LifecycleError::Store(error) => ApiError::from(error),
        other => ApiError::internal(other),
    }
}
