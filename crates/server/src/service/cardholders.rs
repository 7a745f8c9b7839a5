//! Cardholders: sign-up, purchase power, and linking a funding card through the payment gateway.

use chrono::{DateTime, Datelike, Utc};
use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::country::Country;
use ghostcard_domain::money::Money;
use ghostcard_domain::purchase_power::{CardholderPosition, PurchasePower, purchase_power as compute_purchase_power};
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::funding_sources::FundingSource;
use ghostcard_store::{Tx, cards, plans};
use serde::Deserialize;
use utoipa::ToSchema;

use super::ServiceError;
use crate::App;
use crate::gateway::GatewayError;
use crate::ids::{has_prefix, new_id};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCardholder {
    pub email: String,
    pub name: String,
    /// For the web app's sign-in; at least 10 characters. Stored as an Argon2id hash.
    pub password: Option<String>,
    /// ISO 3166 alpha-2.
    pub country: String,
}

/// A new cardholder from a sign-up (API or web app), validated, its password hashed with Argon2id (within the
/// process's password workers, [`crate::clients::Guards`]); not yet stored.
pub async fn new_cardholder(
    app: &App,
    body: &CreateCardholder,
    now: DateTime<Utc>,
) -> Result<Cardholder, ServiceError> {
    let email = body.email.trim().to_lowercase();
    let valid_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !email.contains(char::is_whitespace);
    if !valid_email {
        return Err(
            ServiceError::invalid("invalid_email", "give an email address such as ada@example.com").with_param("email")
        );
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ServiceError::invalid("invalid_name", "a name is 1 to 200 characters").with_param("name"));
    }
    let country = Country::parse(&body.country).map_err(|_| {
        ServiceError::invalid("invalid_country", "use an ISO 3166 alpha-2 code such as US").with_param("country")
    })?;
    let password_hash = match &body.password {
        Some(password) if password.chars().count() < 10 || password.len() > 1024 => {
            return Err(
                ServiceError::invalid("weak_password", "a password is 10 to 1024 characters").with_param("password")
            );
        }
        Some(password) => Some(app.guards.hash_password(password).await?),
        None => None,
    };
    let cardholder = Cardholder {
        id: new_id("ch", now, &mut rand::rng()),
        email,
        name: name.to_owned(),
        country: country.as_str().to_owned(),
        password_hash,
        status: "active".to_owned(),
        restricted_reason: None,
        created_at: now,
    };
    Ok(cardholder)
}

/// Links a funding card through the gateway (sandbox: a raw test number), validated; not yet stored.
pub async fn link_funding_source(
    app: &App,
    cardholder_id: &str,
    body: &AddFundingSource,
    now: DateTime<Utc>,
) -> Result<FundingSource, ServiceError> {
    if !app.sandbox() || body.token.is_some() {
        return Err(ServiceError::invalid(
            "live_gateway_not_configured",
            "linking by gateway token needs a live payment gateway, which this deployment does not have",
        )
        .with_param("token"));
    }
    let number = body
        .number
        .as_deref()
        .ok_or_else(|| ServiceError::invalid("missing_field", "give the card number").with_param("number"))?;
    let number = CardNumber::parse(number).map_err(|error| {
        ServiceError::invalid("invalid_card_number", format!("the card number is not valid: {error}"))
            .with_param("number")
    })?;
    let exp_month = body
        .exp_month
        .ok_or_else(|| ServiceError::invalid("missing_field", "give exp_month").with_param("exp_month"))?;
    let exp_year =
        body.exp_year.ok_or_else(|| ServiceError::invalid("missing_field", "give exp_year").with_param("exp_year"))?;
    if !(1..=12).contains(&exp_month) {
        return Err(ServiceError::invalid("invalid_expiry", "exp_month is 1 to 12").with_param("exp_month"));
    }
    let this_month = i64::from(now.year()) * 12 + i64::from(now.month());
    if exp_year * 12 + exp_month < this_month || exp_year > i64::from(now.year()) + 50 {
        return Err(ServiceError::invalid("invalid_expiry", "the card has expired or the year is not real")
            .with_param("exp_year"));
    }
    let valid_cvc = |cvc: &str| (3..=4).contains(&cvc.len()) && cvc.bytes().all(|byte| byte.is_ascii_digit());
    if body.cvc.as_deref().is_some_and(|cvc| !valid_cvc(cvc)) {
        return Err(ServiceError::invalid("invalid_cvc", "a CVC is 3 or 4 digits").with_param("cvc"));
    }
    let linked = match app.gateway.link(&number).await {
        Ok(linked) => linked,
        Err(GatewayError::Declined) => {
            return Err(ServiceError::refused("funding_declined", "the funding card was declined; try another card"));
        }
        Err(error) => return Err(ServiceError::internal(error)),
    };
    let source = FundingSource {
        id: new_id("fs", now, &mut rand::rng()),
        cardholder_id: cardholder_id.to_owned(),
        brand: linked.brand,
        last4: linked.last4,
        exp_month,
        exp_year,
        gateway_token: linked.token,
        status: "active".to_owned(),
        created_at: now,
    };
    Ok(source)
}

/// The cardholder `id`, or a 404.
pub async fn load(tx: &mut Tx, id: &str) -> Result<Cardholder, ServiceError> {
    if !has_prefix(id, "ch") {
        return Err(ServiceError::not_found("cardholder", id));
    }
    cardholders::get(tx, id).await?.ok_or_else(|| ServiceError::not_found("cardholder", id))
}

/// The cardholder's purchase power now, from what the store holds.
pub async fn purchase_power_of(
    app: &App,
    tx: &mut Tx,
    cardholder: &Cardholder,
    now: DateTime<Utc>,
) -> Result<PurchasePower, ServiceError> {
    let currency = app.currency;
    let cards_not_in_plan = cards::amount_not_in_plan(tx, &cardholder.id, currency.code()).await?;
    let active_plans = plans::active_for_cardholder(tx, &cardholder.id).await?;
    let today = app.today(now);
    let position = CardholderPosition {
        signed_up_at: cardholder.created_at,
        plans_repaid_without_late_fee: plans::repaid_without_late_fee(tx, &cardholder.id).await?,
        cards_not_in_plan: Money::new(cards_not_in_plan, currency),
        plan_balances: Money::new(active_plans.iter().map(|record| record.plan.balance()).sum(), currency),
        overdue: active_plans.iter().any(|record| record.plan.has_arrears(today)),
        restricted: cardholder.status == "restricted",
    };
    compute_purchase_power(&app.purchase_power, &position, now).map_err(ServiceError::internal)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFundingSource {
    /// Sandbox mode: the card number (see docs/reference/rest.md for the special test numbers).
    pub number: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub cvc: Option<String>,
    /// Live mode: the payment gateway's token for the card.
    pub token: Option<String>,
}
