//! The objects as the API shows them (and events and webhooks carry them): cards, authorizations, plans. They sit
//! below every adapter — the API, the web app, the events — so that none of them imports another for its views.

use chrono::{DateTime, NaiveDate, Utc};
use ghostcard_domain::auth_rules::RuleResult;
use ghostcard_domain::card::CardStatus;
use ghostcard_domain::controls::SpendingControls;
use ghostcard_domain::country::Country;
use ghostcard_domain::decision::{DeclineReason, Mcc};
use ghostcard_store::auth_rules::SetEntry;
use ghostcard_store::authorizations::AuthorizationRecord;
use ghostcard_store::cards::CardRecord;
use ghostcard_store::plans::PlanRecord;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantView {
    pub acquirer_id: String,
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    pub id: String,
    pub cardholder_id: String,
    /// `active`, `used`, `paused`, `expired`, `canceled`, `frozen`, `closed`.
    pub status: String,
    pub amount: i64,
    pub held: i64,
    pub captured: i64,
    pub remaining_amount: i64,
    pub currency: String,
    pub bin: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub valid_until: DateTime<Utc>,
    pub plan: String,
    pub plan_id: Option<String>,
    pub funding_source_id: String,
    pub merchant: Option<MerchantView>,
    pub spending_controls: SpendingControlsView,
    pub created_at: DateTime<Utc>,
}

/// Where a card may be used; empty lists: no limit of that kind.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpendingControlsView {
    /// Four-digit merchant category codes.
    pub allowed_categories: Vec<String>,
    pub blocked_categories: Vec<String>,
    /// ISO 3166 alpha-2.
    pub allowed_countries: Vec<String>,
    pub blocked_countries: Vec<String>,
}

impl From<&SpendingControls> for SpendingControlsView {
    fn from(controls: &SpendingControls) -> Self {
        let codes = |mccs: &[Mcc]| mccs.iter().map(ToString::to_string).collect();
        let countries = |countries: &[Country]| countries.iter().map(|country| country.as_str().to_owned()).collect();
        SpendingControlsView {
            allowed_categories: codes(&controls.allowed_categories),
            blocked_categories: codes(&controls.blocked_categories),
            allowed_countries: countries(&controls.allowed_countries),
            blocked_countries: countries(&controls.blocked_countries),
        }
    }
}

impl CardView {
    /// The card as the API shows it at `now`: an active card whose window has passed is `expired` even before
    /// the expiry job has recorded it; an active or used card that is paused is `paused`.
    pub fn of(card: &CardRecord, now: DateTime<Utc>) -> CardView {
        let status = match card.to_card().map_or(card.status, |state| state.status_at(now)) {
            CardStatus::Active | CardStatus::Used if card.paused => "paused",
            status => status.as_str(),
        };
        CardView {
            id: card.id.clone(),
            cardholder_id: card.cardholder_id.clone(),
            status: status.to_owned(),
            amount: card.amount,
            held: card.held,
            captured: card.captured,
            remaining_amount: card.amount - card.held - card.captured,
            currency: card.currency.code().to_owned(),
            bin: card.bin.clone(),
            last4: card.last4.clone(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            valid_until: card.valid_until,
            plan: card.plan_kind.as_str().to_owned(),
            plan_id: card.plan_id.clone(),
            funding_source_id: card.funding_source_id.clone(),
            merchant: match (&card.merchant_acquirer_id, &card.merchant_id) {
                (Some(acquirer_id), Some(id)) => Some(MerchantView {
                    acquirer_id: acquirer_id.clone(),
                    id: id.clone(),
                    name: card.merchant_name.clone(),
                }),
                _ => None,
            },
            spending_controls: SpendingControlsView::from(&card.spending_controls),
            created_at: card.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationMerchant {
    pub acquirer_id: String,
    pub id: String,
    pub name: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub mcc: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationNetwork {
    pub stan: Option<String>,
    pub rrn: Option<String>,
    pub auth_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationView {
    pub id: String,
    pub card_id: Option<String>,
    /// `purchase`, `verification`, `incremental`, `refund`, `advice`.
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    /// `approved`, `declined`, `reversed`, `partially_reversed`, `captured`, `expired`.
    pub status: String,
    pub response_code: String,
    pub decline_reason: Option<String>,
    /// The decline reason in plain words.
    pub decline_message: Option<String>,
    /// The check or fraud rule that decided.
    pub rule: String,
    pub cvv_result: Option<String>,
    /// The check an advice was posted past (flagged for review).
    pub flag: Option<String>,
    pub held: i64,
    pub captured: i64,
    pub merchant: AuthorizationMerchant,
    pub network: AuthorizationNetwork,
    /// `ghostcard`, `endpoint` (the issuer's decision endpoint answered) or `fallback` (it was asked and did not
    /// answer in time or usably: ghostcard's verdict stood).
    pub decided_by: String,
    /// The issuer's authorization rules that ran, in order, with their version and result.
    pub rule_results: Vec<RuleResultView>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleResultView {
    pub rule_id: String,
    pub version: i64,
    /// `active` or `shadow`.
    pub mode: String,
    /// `pass`, `decline` or `would_decline` (a shadow rule that matched).
    pub result: String,
}

/// What a decision record says about the rules and the decision endpoint (the rest of it is not shown).
#[derive(Debug, Default, serde::Deserialize)]
struct Trace {
    rule_set: Option<i64>,
    #[serde(default)]
    rule_results: String,
    decided_by: Option<String>,
}

impl Trace {
    fn of(record: &AuthorizationRecord) -> Trace {
        record.decision.as_deref().and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default()
    }
}

/// The authorizations as the API shows them, each with the rules that ran on it (the rule sets they name are read
/// in `tx`).
pub async fn authorizations(
    tx: &mut ghostcard_store::Tx,
    records: &[AuthorizationRecord],
) -> Result<Vec<AuthorizationView>, ghostcard_store::StoreError> {
    let mut sets: std::collections::HashMap<i64, Vec<SetEntry>> = std::collections::HashMap::new();
    let mut views = Vec::with_capacity(records.len());
    for record in records {
        let trace = Trace::of(record);
        if let Some(version) = trace.rule_set
            && !sets.contains_key(&version)
        {
            let set = ghostcard_store::auth_rules::set(tx, version).await?.unwrap_or_default();
            sets.insert(version, set);
        }
        let set = trace.rule_set.and_then(|version| sets.get(&version)).map_or(&[][..], Vec::as_slice);
        views.push(AuthorizationView::of(record, &trace, set));
    }
    Ok(views)
}

/// One authorization as the API shows it.
pub async fn authorization(
    tx: &mut ghostcard_store::Tx,
    record: &AuthorizationRecord,
) -> Result<AuthorizationView, ghostcard_store::StoreError> {
    let mut views = authorizations(tx, std::slice::from_ref(record)).await?;
    views.pop().ok_or_else(|| ghostcard_store::StoreError::Corrupt("no view of an authorization".to_owned()))
}

/// A would-be approval as the decision endpoint is sent it: `status` `pending`, the rules that ran named from
/// `rules` (the set it was decided with, which the node holds).
pub fn pending_authorization(
    record: &AuthorizationRecord,
    rules: &ghostcard_domain::auth_rules::RuleSet,
) -> AuthorizationView {
    let trace = Trace::of(record);
    let set: Vec<SetEntry> = if trace.rule_set == Some(rules.version) {
        rules
            .rules
            .iter()
            .map(|rule| SetEntry { rule_id: rule.id.clone(), version: rule.version, mode: rule.mode })
            .collect()
    } else {
        Vec::new()
    };
    AuthorizationView { status: "pending".to_owned(), ..AuthorizationView::of(record, &trace, &set) }
}

impl AuthorizationView {
    fn of(record: &AuthorizationRecord, trace: &Trace, set: &[SetEntry]) -> Self {
        let rule_results = set
            .iter()
            .zip(trace.rule_results.chars())
            .filter_map(|(entry, letter)| {
                let result = RuleResult::from_letter(letter).filter(|result| *result != RuleResult::NotInScope)?;
                Some(RuleResultView {
                    rule_id: entry.rule_id.clone(),
                    version: entry.version,
                    mode: entry.mode.as_str().to_owned(),
                    result: result.as_str().to_owned(),
                })
            })
            .collect();
        AuthorizationView {
            id: record.id.clone(),
            card_id: record.card_id.clone(),
            kind: record.kind.as_str().to_owned(),
            amount: record.amount,
            currency: record.currency.clone(),
            status: record.status.as_str().to_owned(),
            response_code: record.response_code.clone(),
            decline_message: record.decline_reason.as_deref().and_then(decline_message).map(str::to_owned),
            decline_reason: record.decline_reason.clone(),
            rule: record.rule.clone(),
            cvv_result: record.cvv_result.clone(),
            flag: record.flag.clone(),
            held: record.held,
            captured: record.captured,
            merchant: AuthorizationMerchant {
                acquirer_id: record.acquirer_id.clone(),
                id: record.merchant_id.clone(),
                name: record.merchant_name.clone(),
                city: record.merchant_city.clone(),
                country: record.merchant_country.clone(),
                mcc: record.mcc.clone(),
            },
            network: AuthorizationNetwork {
                stan: record.stan.clone(),
                rrn: record.rrn.clone(),
                auth_code: record.auth_code.clone(),
            },
            decided_by: trace.decided_by.clone().unwrap_or_else(|| "ghostcard".to_owned()),
            rule_results,
            created_at: record.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstallmentView {
    pub seq: u32,
    pub due_date: NaiveDate,
    /// Principal + interest + fees, minor units.
    pub amount: i64,
    pub paid_amount: i64,
    /// `scheduled`, `paid`, `failed`, `overdue`, `rolled_over`, `canceled`.
    pub status: String,
    pub principal: i64,
    pub interest: i64,
    pub fee: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub id: String,
    pub card_id: String,
    pub kind: String,
    pub principal: i64,
    pub fees: i64,
    /// What is still owed.
    pub balance: i64,
    pub currency: String,
    /// `active`, `completed`, `canceled`, `charged_off`.
    pub status: String,
    pub installments: Vec<InstallmentView>,
}

impl From<&PlanRecord> for PlanView {
    fn from(record: &PlanRecord) -> Self {
        let plan = &record.plan;
        PlanView {
            id: record.id.clone(),
            card_id: record.card_id.clone(),
            kind: plan.kind.as_str().to_owned(),
            principal: plan.principal,
            fees: plan.fees,
            balance: plan.balance(),
            currency: plan.currency.code().to_owned(),
            status: plan.status.as_str().to_owned(),
            installments: plan
                .installments
                .iter()
                .map(|installment| InstallmentView {
                    seq: installment.seq,
                    due_date: installment.due_date,
                    amount: installment.amount(),
                    paid_amount: installment.paid,
                    status: installment.status.as_str().to_owned(),
                    principal: installment.principal,
                    interest: installment.interest,
                    fee: installment.fee,
                })
                .collect(),
        }
    }
}

/// The plain-words message of a stored decline code.
pub fn decline_message(code: &str) -> Option<&'static str> {
    let reason = serde_json::from_value::<DeclineReason>(serde_json::Value::String(code.to_owned())).ok();
    reason
        .or_else(|| {
            (code == "invalid_request")
                .then_some(DeclineReason::InvalidRequest(ghostcard_domain::decision::InvalidRequest::Format))
        })
        .map(|reason| reason.message())
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RevealedCard {
    pub number: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvv: String,
}

/// An authorization rule (one version of it) as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub version: i64,
    /// `shadow`, `active` or `disabled`.
    pub mode: String,
    #[schema(value_type = Object)]
    pub scope: ghostcard_domain::auth_rules::Scope,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub conditions: Option<Vec<ghostcard_domain::auth_rules::Condition>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub velocity: Option<ghostcard_domain::auth_rules::Velocity>,
    /// When the rule was first created.
    pub created_at: DateTime<Utc>,
    /// When this version was made, and by whom.
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl RuleView {
    pub fn of(version: &ghostcard_store::auth_rules::RuleVersion, created_at: DateTime<Utc>) -> RuleView {
        use ghostcard_domain::auth_rules::Body;
        let (conditions, velocity) = match &version.body {
            Body::Conditions(conditions) => (Some(conditions.clone()), None),
            Body::Velocity(velocity) => (None, Some(velocity.clone())),
        };
        RuleView {
            id: version.rule_id.clone(),
            name: version.name.clone(),
            version: version.version,
            mode: version.mode.as_str().to_owned(),
            scope: version.scope.clone(),
            conditions,
            velocity,
            created_at,
            updated_at: version.created_at,
            updated_by: version.created_by.clone(),
        }
    }
}

/// A backtest as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BacktestView {
    pub id: String,
    /// `pending`, then `complete`.
    pub status: String,
    pub rule_id: String,
    pub version: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `{evaluated, approved_to_declined, sample}` once complete.
    #[schema(value_type = Option<Object>)]
    pub results: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl BacktestView {
    pub fn of(backtest: &ghostcard_store::auth_rules::Backtest) -> BacktestView {
        BacktestView {
            id: backtest.id.clone(),
            status: backtest.status.clone(),
            rule_id: backtest.rule_id.clone(),
            version: backtest.version,
            start: backtest.start,
            end: backtest.end,
            results: backtest.results.as_deref().and_then(|json| serde_json::from_str(json).ok()),
            created_at: backtest.created_at,
            completed_at: backtest.completed_at,
        }
    }
}
