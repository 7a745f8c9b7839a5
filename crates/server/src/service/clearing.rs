//! Clearing records from the network (the API's `POST /v1/network/clearings` and `ghostcard clearing import`):
//! each record is matched, posted in its own transaction, and reported. A record id seen before is never posted
//! again, so a file can be imported twice.

use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::money::{Currency, Money};
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::{Tx, cards, clearings};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::App;
use crate::ids::has_prefix;
use crate::service::lifecycle::{self, ClearingResult};

/// The most records one request may carry.
pub const MAX_RECORDS_PER_REQUEST: usize = 1000;

/// One clearing record, as docs/reference/rest.md names its fields.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearingRecordInput {
    /// The network's unique id of this record.
    pub id: String,
    /// `capture`, `refund` or `force_post`.
    #[serde(rename = "type")]
    pub kind: String,
    /// ghostcard's authorization id, when the network carries it.
    pub network_transaction_id: Option<String>,
    pub rrn: Option<String>,
    pub auth_code: Option<String>,
    pub acquirer_id: Option<String>,
    pub merchant_id: Option<String>,
    /// Only for a force post, or a refund without an authorization.
    pub number: Option<String>,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub mcc: Option<String>,
}

fn rejected(id: &str, reason: &str) -> ClearingResult {
    ClearingResult {
        id: id.to_owned(),
        result: "rejected".to_owned(),
        clearing_id: None,
        flags: vec![reason.to_owned()],
        plan_id: None,
    }
}

fn unmatched(id: &str) -> ClearingResult {
    ClearingResult {
        id: id.to_owned(),
        result: "unmatched".to_owned(),
        clearing_id: None,
        flags: vec![],
        plan_id: None,
    }
}

/// Posts one record in its own transaction and says what became of it. Only a database failure is an error.
pub async fn post_record(app: &App, record: &ClearingRecordInput) -> Result<ClearingResult, lifecycle::LifecycleError> {
    if record.id.trim().is_empty() || record.id.len() > 100 {
        return Ok(rejected(&record.id, "invalid_id"));
    }
    let Ok(currency) = Currency::from_code(&record.currency) else {
        return Ok(rejected(&record.id, "invalid_currency"));
    };
    if record.amount <= 0 || record.amount > 999_999_999_999 {
        return Ok(rejected(&record.id, "invalid_amount"));
    }
    let amount = Money::new(record.amount, currency);
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    if let Some(earlier) = clearings::find_by_record_id(&mut tx, &record.id).await? {
        return Ok(ClearingResult {
            id: record.id.clone(),
            result: "duplicate".to_owned(),
            clearing_id: Some(earlier.id),
            flags: earlier.flags.split(',').filter(|flag| !flag.is_empty()).map(str::to_owned).collect(),
            plan_id: None,
        });
    }
    let authorization = match_authorization(&mut tx, record).await?;
    let card_by_number = match &record.number {
        Some(number) => match CardNumber::parse(number) {
            Ok(number) => {
                cards::find_by_number_hash(&mut tx, &app.vault.number_hash(&number)).await?.map(|card| card.id)
            }
            Err(_) => return Ok(rejected(&record.id, "invalid_number")),
        },
        None => None,
    };
    let result = match (record.kind.as_str(), authorization, card_by_number) {
        ("capture", Some(authorization), _) => {
            lifecycle::capture(app, &mut tx, &authorization.id, amount, &record.id, now).await?
        }
        // A capture with no authorization is a force post.
        ("capture" | "force_post", None, Some(card_id)) => {
            lifecycle::force_post(app, &mut tx, &card_id, amount, &record.id, now).await?
        }
        ("force_post", Some(authorization), _) => match authorization.card_id {
            Some(card_id) => lifecycle::force_post(app, &mut tx, &card_id, amount, &record.id, now).await?,
            None => unmatched(&record.id),
        },
        ("refund", Some(AuthorizationRecord { card_id: Some(card_id), .. }), _) | ("refund", _, Some(card_id)) => {
            lifecycle::merchant_refund(app, &mut tx, &card_id, amount, &record.id, now).await?
        }
        ("capture" | "force_post" | "refund", _, _) => unmatched(&record.id),
        _ => return Ok(rejected(&record.id, "invalid_type")),
    };
    ghostcard_store::commit(tx).await?;
    Ok(result)
}

async fn match_authorization(
    tx: &mut Tx,
    record: &ClearingRecordInput,
) -> Result<Option<AuthorizationRecord>, ghostcard_store::StoreError> {
    if let Some(id) = record.network_transaction_id.as_deref().filter(|id| has_prefix(id, "auth")) {
        return authorizations::get(tx, id).await;
    }
    match (&record.rrn, &record.auth_code) {
        (Some(rrn), Some(auth_code)) => {
            let merchant = record.merchant_id.as_deref().map(str::trim_end);
            authorizations::find_for_clearing(tx, rrn, auth_code, record.acquirer_id.as_deref(), merchant).await
        }
        _ => Ok(None),
    }
}
