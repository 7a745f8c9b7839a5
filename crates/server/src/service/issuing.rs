//! Issuing: a one-time card is created (every refusal of docs/reference/behaviour.md in order, the funding hold, a
//! fresh number encrypted at rest) and its details revealed (audited; the CVV2 computed, never stored).

use chrono::{DateTime, Datelike, Duration, Utc};
use ghostcard_domain::card::CardStatus;
use ghostcard_domain::card_number::{CardNumber, Expiry};
use ghostcard_domain::controls::SpendingControls;
use ghostcard_domain::issuance::{CreationRefusal, check_card_creation};
use ghostcard_domain::ledger::entries;
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::{Plan, PlanKind};
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::funding_sources::{self, FundingSource};
use ghostcard_store::{Tx, audit, ledger};
use serde::Deserialize;
use utoipa::ToSchema;

use super::cardholders::{load as load_cardholder, purchase_power_of};
use super::{Actor, IdempotencyClaim, ServiceError, commit_with};
use crate::App;
use crate::gateway::GatewayError;
use crate::ids::{has_prefix, new_id};
use crate::views::{CardView, RevealedCard};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCard {
    pub cardholder_id: String,
    /// Minor units (10001 = 100.01 USD).
    pub amount: i64,
    /// ISO 4217; the deployment's currency.
    pub currency: String,
    pub funding_source_id: String,
    /// `pay_now`, `pay_in_4`, `pay_in_30`, `financing_3`, `financing_6`, `financing_12`, `financing_24`.
    pub plan: String,
    /// Where the card may be used: `allowed_categories`, `blocked_categories` (four-digit MCCs), `allowed_countries`,
    /// `blocked_countries` (alpha-2); each optional.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub spending_controls: Option<SpendingControls>,
}

/// Creates a one-time card (API and web app): the refusals of docs/reference/behaviour.md in order, the funding hold,
/// then the card, its ledger transfer, its audit entry and its `card.created` event in one transaction, with the
/// `claim` completed by the answer (the card as the API shows it, 201). Returns the card and that answer.
pub async fn create(
    app: &App,
    request: &CreateCard,
    actor: &Actor,
    claim: Option<&IdempotencyClaim>,
) -> Result<(CardRecord, String), ServiceError> {
    let (amount, plan) = amount_and_plan(app, request)?;
    let now = app.clock.now();
    let (cardholder, source) = checked_before_hold(app, request, amount, now).await?;

    // The funding hold: the whole amount for pay-now, the first installment for a plan.
    let hold_amount = match plan {
        PlanKind::PayNow => amount,
        kind => {
            let schedule = Plan::new(kind, amount, app.today(now), &app.plan_terms).map_err(ServiceError::internal)?;
            schedule.money(schedule.installments.first().map_or(amount.minor(), |first| first.amount()))
        }
    };
    let card_id = new_id("card", now, &mut rand::rng());
    let funding_hold = match app.gateway.hold(&source.gateway_token, hold_amount, &card_id).await {
        Ok(hold) => hold,
        Err(GatewayError::Declined) => {
            return Err(ServiceError::refused(
                "funding_declined",
                "the funding card declined the hold; link another card",
            ));
        }
        Err(error) => return Err(ServiceError::internal(error)),
    };

    let written = async {
        let mut tx = app.store.begin().await?;
        // Checked again inside the write: a concurrent request may have used the purchase power meanwhile.
        let cardholder = cardholders::get(&mut tx, &cardholder.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("cardholder", &cardholder.id))?;
        refusal(app, &mut tx, &cardholder, amount, now).await?;
        let (record, _number) =
            issue(app, &mut tx, &card_id, &cardholder.id, &source.id, (amount, plan), request, &funding_hold, now)
                .await?;
        ledger::commit(&mut tx, &entries::issue_card(&record.id, amount), now).await.map_err(ServiceError::internal)?;
        audit::append(&mut tx, &super::cards::audit_entry(actor, "card.create", &record.id, now)).await?;
        crate::events::card(&mut tx, "card.created", &record, now).await?;
        let answer = serde_json::to_string(&CardView::of(&record, now)).map_err(ServiceError::internal)?;
        commit_with(tx, claim, 201, &answer).await?;
        Ok((record, answer))
    };
    let result: Result<(CardRecord, String), ServiceError> = written.await;
    if result.is_err() {
        // Nothing was written: give the funding hold back.
        if let Err(error) = app.gateway.release(&source.gateway_token, &funding_hold).await {
            tracing::warn!(%error, card = %card_id, "could not release the funding hold of a card that was not created");
        }
    }
    result
}

/// The cardholder and funding source of a card request, and the refusals that come before the funding hold (so a
/// refused card holds nothing).
async fn checked_before_hold(
    app: &App,
    request: &CreateCard,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<(Cardholder, FundingSource), ServiceError> {
    let mut tx = app.store.read().await?;
    let cardholder =
        load_cardholder(&mut tx, &request.cardholder_id).await.map_err(|error| error.with_param("cardholder_id"))?;
    let source = match has_prefix(&request.funding_source_id, "fs") {
        true => funding_sources::get(&mut tx, &request.funding_source_id).await?,
        false => None,
    }
    .filter(|source| source.cardholder_id == cardholder.id && source.status == "active")
    .ok_or_else(|| {
        ServiceError::not_found("funding source of this cardholder", &request.funding_source_id)
            .with_param("funding_source_id")
    })?;
    refusal(app, &mut tx, &cardholder, amount, now).await?;
    Ok((cardholder, source))
}

/// The amount and plan a card is asked for, checked.
fn amount_and_plan(app: &App, request: &CreateCard) -> Result<(Money, PlanKind), ServiceError> {
    let currency = Currency::from_code(&request.currency).map_err(|_| {
        ServiceError::invalid("invalid_currency", "use an ISO 4217 code such as USD").with_param("currency")
    })?;
    if currency != app.currency {
        return Err(ServiceError::invalid(
            "currency_not_supported",
            format!("cards are issued in {}", app.currency.code()),
        )
        .with_param("currency"));
    }
    if request.amount <= 0 {
        return Err(
            ServiceError::invalid("invalid_amount", "amount is a positive integer of minor units").with_param("amount")
        );
    }
    let plan = PlanKind::parse(&request.plan).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_plan",
            "plan is one of pay_now, pay_in_4, pay_in_30, financing_3, financing_6, financing_12, financing_24",
        )
        .with_param("plan")
    })?;
    Ok((Money::new(request.amount, currency), plan))
}

/// The card-creation refusals of docs/reference/behaviour.md before the funding hold, as API errors.
async fn refusal(
    app: &App,
    tx: &mut Tx,
    cardholder: &ghostcard_store::cardholders::Cardholder,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let power = purchase_power_of(app, tx, cardholder, now).await?;
    let longest_window = app.rules.fraud.card_creation.iter().map(|limit| limit.window_seconds).max().unwrap_or(0);
    let created = cards::creation_times(tx, &cardholder.id, now - Duration::seconds(longest_window)).await?;
    check_card_creation(amount, app.minimum_card_amount, &power, &created, &app.rules.fraud, now).map_err(|refusal| {
        match refusal {
            CreationRefusal::AmountTooSmall { minimum } => {
                ServiceError::refused("amount_too_small", format!("the smallest card is {minimum}"))
                    .with_param("amount")
            }
            CreationRefusal::AccountRestricted => {
                ServiceError::refused("account_restricted", "the account is restricted; pay what is overdue first")
            }
            CreationRefusal::SuspectedFraud { rule } => {
                tracing::warn!(cardholder = %cardholder.id, %rule, "card creation refused by a fraud rule");
                ServiceError::refused("suspected_fraud", "too many cards were created recently; try again later")
            }
            CreationRefusal::PurchasePowerExceeded { available } => ServiceError::refused(
                "purchase_power_exceeded",
                format!("the amount is more than the {available} available"),
            )
            .with_param("amount"),
        }
    })
}

/// Draws a new card number (never reused: a collision draws again), encrypts it and inserts the card.
#[allow(clippy::too_many_arguments)]
async fn issue(
    app: &App,
    tx: &mut Tx,
    card_id: &str,
    cardholder_id: &str,
    funding_source_id: &str,
    (amount, plan): (Money, PlanKind),
    request: &CreateCard,
    funding_hold: &str,
    now: DateTime<Utc>,
) -> Result<(CardRecord, CardNumber), ServiceError> {
    let issued = Expiry::new(u16::try_from(now.year()).map_err(ServiceError::internal)?, now.month() as u8)
        .map_err(ServiceError::internal)?;
    let expiry = issued.plus_months(app.config.printed_expiry_months).map_err(ServiceError::internal)?;
    for _ in 0..8 {
        let number = CardNumber::generate(&app.bin, app.config.card_number_length, &mut rand::rng())
            .map_err(ServiceError::internal)?;
        let number_hash = app.vault.number_hash(&number);
        if cards::find_by_number_hash(tx, &number_hash).await?.is_some() {
            continue;
        }
        let (data_key_version, number_ciphertext) = app.vault.encrypt_number(card_id, &number, &mut rand::rng());
        let record = CardRecord {
            id: card_id.to_owned(),
            cardholder_id: cardholder_id.to_owned(),
            funding_source_id: funding_source_id.to_owned(),
            number_hash,
            number_ciphertext,
            data_key_version,
            cvk_version: app.vault.current_cvk_version(),
            bin: number.bin(app.bin.as_str().len()).to_owned(),
            last4: number.last4().to_owned(),
            exp_month: i64::from(expiry.month()),
            exp_year: i64::from(expiry.year()),
            currency: amount.currency(),
            amount: amount.minor(),
            held: 0,
            captured: 0,
            status: CardStatus::Active,
            frozen_from: None,
            merchant_acquirer_id: None,
            merchant_id: None,
            merchant_name: None,
            plan_kind: plan,
            plan_id: None,
            funding_hold_id: Some(funding_hold.to_owned()),
            valid_until: now + Duration::hours(app.config.card_validity_hours),
            created_at: now,
            version: 0,
            paused: false,
            spending_controls: request.spending_controls.clone().unwrap_or_default(),
        };
        cards::insert(tx, &record).await?;
        return Ok((record, number));
    }
    Err(ServiceError::internal("could not draw an unused card number in 8 tries; the BIN may be nearly exhausted"))
}

/// The card's number, expiry and CVV2 (computed), after writing the audit entry: no audit entry, no card data. The
/// `claim` (the web app's one-time form token) is completed in the audit entry's transaction with the answer
/// `revealed` and no card data; the API's reveal passes none.
pub async fn reveal(
    app: &App,
    card: &CardRecord,
    actor: &Actor,
    claim: Option<&IdempotencyClaim>,
) -> Result<RevealedCard, ServiceError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let number = app.vault.decrypt_number(&card.id, card.data_key_version, &card.number_ciphertext)?;
    let expiry = card.to_card()?.expiry();
    let cvv = app.vault.cvk(card.cvk_version)?.cvv2(&number, expiry);
    audit::append(&mut tx, &super::cards::audit_entry(actor, "card.reveal", &card.id, now)).await?;
    commit_with(tx, claim, 200, "revealed").await?;
    Ok(RevealedCard {
        number: number.expose().to_owned(),
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvv: cvv.expose().clone(),
    })
}
