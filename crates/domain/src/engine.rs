//! The authorization engine: decides a batch of requests **in order** against a snapshot of everything they read
//! and returns everything the batch changes as data — card states, transitions, ledger entries, events, the
//! authorizations themselves with their decision records — for the store to write in one transaction.
//!
//! There is one engine. The group-commit batch, the sandbox endpoint, the 0200 and the fallback after a conflict
//! all call [`decide_batch`]; a batch of one is the one-at-a-time path. Each request sees the ones before it in
//! the batch exactly as it would see them stored, so deciding a stream as one batch, as batches of any size or one
//! at a time gives the same answers, state, ledger and events (the property test below checks it).
//!
//! The snapshot holds the cards the requests name; a fraud rule that freezes every open card of a cardholder needs
//! the cardholder's other cards too. Those are loaded only when needed: [`decide_batch`] then answers
//! [`EngineError::Incomplete`] with the cardholders to load, and the caller loads them and decides again.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth_rules::{Approval, Approvals, Facts, Per, RuleSet};
use crate::authorization::AuthorizationStatus;
use crate::card::{Card, CardEvent, CardStatus, MerchantBinding, Transition};
use crate::controls::{CardControls, SpendingControls};
use crate::decision::{
    AuthorizationKind, AuthorizationRequest, AuthorizationRules, CardholderStanding, CvvCheck, Decision, DecisionInput,
    DeclineReason, InvalidRequest, MessageClass, Outcome, TransactionType, decide,
};
use crate::fraud::FraudAction;
use crate::ledger::{Entry, entries};
use crate::money::Money;

/// What names a request on the network: acquirer (field 32), STAN (field 11) and transmission time (field 7). A
/// second request with the same key is a duplicate and gets its original's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkKey {
    pub acquirer_id: String,
    pub stan: String,
    pub transmission_time: String,
}

/// Descriptive fields that are recorded but do not change the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptors {
    pub merchant_name: Option<String>,
    pub merchant_city: Option<String>,
    pub stan: Option<String>,
    pub rrn: Option<String>,
    pub transmission_time: Option<String>,
}

/// One request of a batch, with what the caller already knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The id its authorization gets if it is decided (chosen by the caller, so that deciding is deterministic).
    pub id: String,
    /// Field 38 if it is approved.
    pub auth_code: String,
    pub request: AuthorizationRequest,
    pub descriptors: Descriptors,
    /// The snapshot card its number resolved to; `None`: no card has that number.
    pub card_id: Option<String>,
    /// The CVV2 check against that card (the CVK is the caller's business).
    pub cvv: CvvCheck,
    /// Where the issuer's decision endpoint stands for it.
    pub endpoint: EndpointStep,
}

/// The issuer's decision endpoint, as a submission meets it. The endpoint is asked outside any batch: a would-be
/// approval comes back as [`Answer::Ask`] with nothing applied, and is submitted again with the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EndpointStep {
    /// No endpoint is configured.
    #[default]
    None,
    /// Ask it before approving.
    Ask,
    /// It was asked; this is what came of it.
    Answered(Verdict),
}

/// What came of asking the decision endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    /// Declined, with the endpoint's own reason if it gave one.
    Decline(Option<String>),
    /// No usable answer: ghostcard's own verdict stands.
    Fallback(Fallback),
}

/// Why the decision endpoint's answer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// No answer within the timeout.
    Timeout,
    /// No connection, or a status other than 200.
    Error,
    /// A 200 whose body was not `{"approve": true}` or `{"approve": false, …}`.
    BadAnswer,
    /// The circuit is open after repeated failures: the endpoint was not asked.
    CircuitOpen,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Timeout => "timeout",
            Fallback::Error => "error",
            Fallback::BadAnswer => "bad_answer",
            Fallback::CircuitOpen => "circuit_open",
        }
    }
}

/// Who decided an authorization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The endpoint was not asked (none configured, ghostcard declined, refunds, advices, verifications).
    #[default]
    Ghostcard,
    /// The endpoint's answer decided.
    Endpoint,
    /// The endpoint was asked and gave no usable answer: ghostcard's verdict stood.
    Fallback,
}

impl Submission {
    /// The network key, when the request came with a STAN and a transmission time.
    pub fn network_key(&self) -> Option<NetworkKey> {
        NetworkKey::of(&self.request, &self.descriptors)
    }
}

impl NetworkKey {
    /// The key of a request: its acquirer, STAN and transmission time, when it came with the last two.
    pub fn of(request: &AuthorizationRequest, descriptors: &Descriptors) -> Option<NetworkKey> {
        Some(NetworkKey {
            acquirer_id: request.merchant.acquirer_id.clone(),
            stan: descriptors.stan.clone()?,
            transmission_time: descriptors.transmission_time.clone()?,
        })
    }
}

/// A card as the batch reads and changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardEntry {
    pub cardholder_id: String,
    pub card: Card,
    /// Its pause and spending controls.
    pub controls: CardControls,
    /// The merchant's name from the first use (set with the binding).
    pub merchant_name: Option<String>,
    /// When the card was created (the authorization rules' `card_age_seconds`).
    pub created_at: DateTime<Utc>,
}

/// An earlier authorization, as the velocity rules count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Past {
    pub kind: AuthorizationKind,
    /// Field 39 as stored (a stand-in answer replaces the decision's `00`).
    pub response_code: Cow<'static, str>,
    pub decline_reason: Option<Cow<'static, str>>,
    /// Field 4 (what a velocity limit of amount adds up).
    pub amount: i64,
    pub at: DateTime<Utc>,
}

impl Past {
    /// An approval that spends: verifications (`85`) and refunds move no money, and an approval answered with the
    /// stand-in code was taken back.
    pub fn spends(&self) -> bool {
        self.response_code == "00"
            && matches!(
                self.kind,
                AuthorizationKind::Purchase | AuthorizationKind::Incremental | AuthorizationKind::Advice
            )
    }

    /// A decline that counts toward the fraud rules' limits (not one the card's own controls chose).
    pub fn is_decline(&self) -> bool {
        self.decline_reason.as_deref().is_some_and(DeclineReason::counts_toward_fraud)
    }

    pub fn is_cvv_failure(&self) -> bool {
        self.decline_reason.as_deref() == Some(DeclineReason::CvvMismatch.code())
    }
}

/// Everything a batch reads, loaded before it is decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// By card id: the cards the requests name, and every card of the cardholders in `complete`.
    pub cards: HashMap<String, CardEntry>,
    /// Cardholders whose every card is in `cards`.
    pub complete: HashSet<String>,
    /// By cardholder id; a cardholder missing here has the default (good) standing.
    pub standings: HashMap<String, CardholderStanding>,
    /// By cardholder id: their authorizations within the longest velocity window
    /// ([`crate::fraud::FraudRules::history_window_seconds`]).
    pub history: HashMap<String, Vec<Past>>,
    /// By card id: the authorizations of the requests' cards within that window that were declined (the rule that
    /// counts a card's declines reads nothing else of a card).
    pub card_declines: HashMap<String, Vec<Past>>,
    /// By card id: every authorization of the requests' cards within the longest per-card velocity limit of the
    /// authorization rules (empty when no rule counts per card).
    pub card_history: HashMap<String, Vec<Past>>,
    /// Network keys already recorded.
    pub recorded: HashSet<NetworkKey>,
    /// Network keys whose reversal arrived before them.
    pub reversed: HashSet<NetworkKey>,
}

/// What the engine needs besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub rules: &'a AuthorizationRules,
    /// Names the rules and configuration the decisions were made with (recorded with each decision).
    pub rules_version: &'a str,
    /// The issuer's authorization rules in force.
    pub auth_rules: &'a RuleSet,
    /// The hour of `now` in the deployment's time zone (0–23), which the authorization rules may read.
    pub hour_of_day: i64,
    pub now: DateTime<Utc>,
}

/// What became of one submission.
#[derive(Debug, Clone, PartialEq, Eq)]
// Nearly every answer is a decision: boxing it would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Decided(Decided),
    /// A repeat of an authorization recorded before the batch: the store has its answer.
    DuplicateOfRecorded(NetworkKey),
    /// A repeat of an earlier submission of this batch (its index).
    DuplicateInBatch(usize),
    /// ghostcard would approve it and the decision endpoint decides: nothing of it is applied; ask the endpoint and
    /// submit it again with the answer.
    Ask(Decided),
}

/// A decided authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub decision: Decision,
    pub card_id: Option<String>,
    pub cardholder_id: Option<String>,
    /// What it holds on the card (zero for declines, verifications and refunds).
    pub held: i64,
    /// Its hold: an index into [`Effects::entries`].
    pub hold_entry: Option<usize>,
    pub auth_code: Option<String>,
    pub record: DecisionRecord,
}

impl Decided {
    /// The status the authorization starts in.
    pub fn status(&self) -> AuthorizationStatus {
        if self.decision.is_approved() { AuthorizationStatus::Approved } else { AuthorizationStatus::Declined }
    }
}

/// The controls of a request that names no card.
static NO_CONTROLS: CardControls = CardControls { paused: false, spending: None };

/// What a decision read, stored with it so that it can be replayed: the request's own fields are stored beside it
/// in the authorization. Stored as JSON with every authorization, so fields at their usual value are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The rules and configuration in force.
    pub rules: String,
    /// Left out when it is an authorization (0100), the most common.
    #[serde(skip_serializing_if = "is_authorization", default = "authorization")]
    pub class: MessageClass,
    /// Field 3's transaction type; left out when it is a purchase, the most common.
    #[serde(skip_serializing_if = "is_purchase", default = "purchase")]
    pub transaction: TransactionType,
    /// The requested expiry matched the card's (`None`: no card, or no expiry sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_matched: Option<bool>,
    pub cvv: CvvCheck,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardInputs>,
    #[serde(skip_serializing_if = "is_false", default)]
    pub restricted: bool,
    #[serde(skip_serializing_if = "is_false", default)]
    pub overdue: bool,
    /// The cardholder's earlier spending approvals the velocity rules counted: how long before the decision each
    /// was, in milliseconds.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub approvals_ms_ago: Vec<i64>,
    /// Its reversal arrived first.
    #[serde(skip_serializing_if = "is_false", default)]
    pub reversed_first: bool,
    /// The version of the authorization rule set that was evaluated (absent: none was).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule_set: Option<i64>,
    /// One letter per rule of that set, in its order: `p` pass, `d` decline, `w` would decline (a shadow rule),
    /// `-` not in its scope.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub rule_results: String,
    /// Left out when ghostcard decided alone.
    #[serde(skip_serializing_if = "is_ghostcard", default)]
    pub decided_by: DecidedBy,
    /// Why the endpoint's answer was not used (with `decided_by` `fallback`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fallback: Option<Fallback>,
    /// The reason the endpoint gave for its decline.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub endpoint_reason: Option<String>,
}

fn is_ghostcard(decided_by: &DecidedBy) -> bool {
    *decided_by == DecidedBy::Ghostcard
}

/// The card as the decision saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInputs {
    pub status: CardStatus,
    pub amount: i64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub held: i64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub captured: i64,
    /// Its validity window was still open.
    pub window_open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant: Option<MerchantBinding>,
    #[serde(skip_serializing_if = "is_false", default)]
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub spending_controls: Option<SpendingControls>,
}

fn is_authorization(class: &MessageClass) -> bool {
    *class == MessageClass::Authorization
}

fn authorization() -> MessageClass {
    MessageClass::Authorization
}

fn is_purchase(transaction: &TransactionType) -> bool {
    *transaction == TransactionType::Purchase
}

fn purchase() -> TransactionType {
    TransactionType::Purchase
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// An event to write, about `subject` (an authorization or a card id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    pub kind: &'static str,
    pub subject: String,
}

/// Everything a batch changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// One per submission, in order.
    pub answers: Vec<Answer>,
    /// The final state of every card the batch changed, by id.
    pub cards: HashMap<String, CardEntry>,
    /// Card transitions, in the order they happened.
    pub transitions: Vec<(String, Transition)>,
    /// Ledger entries (the holds), in order.
    pub entries: Vec<Entry>,
    /// Events, in the order they happened.
    pub events: Vec<EventNote>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A fraud rule freezes every card of these cardholders: load all their cards into the snapshot (and mark them
    /// complete), then decide again.
    #[error("the cards of {0:?} are needed")]
    Incomplete(Vec<String>),
    /// The snapshot contradicts itself (a submission names a card it does not hold, a card refuses a hold its
    /// decision allowed): nothing of the batch may be written.
    #[error("broken invariant: {0}")]
    Broken(String),
}

/// The decision for an original whose reversal came first: the purchase was called off before we saw it.
pub fn reversed_before_arrival() -> Decision {
    let reason = DeclineReason::InvalidRequest(InvalidRequest::Other);
    Decision {
        kind: AuthorizationKind::Purchase,
        response_code: reason.response_code(),
        outcome: Outcome::Declined(reason),
        rule: "reversed_before_arrival".to_owned(),
        cvv_result: None,
        first_use: false,
        flag: None,
    }
}

/// An approval that an active authorization rule (`rule`, its id) declines.
fn declined_by_rule(decision: Decision, rule: String) -> Decision {
    let reason = DeclineReason::AuthRule;
    Decision {
        response_code: reason.response_code(),
        outcome: Outcome::Declined(reason),
        rule,
        first_use: false,
        flag: None,
        ..decision
    }
}

impl CardInputs {
    fn of(entry: &CardEntry, now: DateTime<Utc>) -> CardInputs {
        CardInputs {
            status: entry.card.status(),
            amount: entry.card.amount().minor(),
            held: entry.card.held().minor(),
            captured: entry.card.captured().minor(),
            window_open: entry.card.window_open(now),
            merchant: entry.card.merchant().cloned(),
            paused: entry.controls.paused,
            spending_controls: entry.controls.spending.as_deref().cloned(),
        }
    }
}

/// An approval after the decision endpoint was asked: its answer decides, or ghostcard's verdict stands.
fn with_verdict(decision: Decision, mut record: DecisionRecord, verdict: &Verdict) -> (Decision, DecisionRecord) {
    match verdict {
        Verdict::Approve => {
            record.decided_by = DecidedBy::Endpoint;
            (decision, record)
        }
        Verdict::Decline(reason) => {
            record.decided_by = DecidedBy::Endpoint;
            record.endpoint_reason.clone_from(reason);
            let reason = DeclineReason::DeclinedByEndpoint;
            let decision = Decision {
                response_code: reason.response_code(),
                outcome: Outcome::Declined(reason),
                rule: "decision_endpoint".to_owned(),
                first_use: false,
                flag: None,
                ..decision
            };
            (decision, record)
        }
        Verdict::Fallback(fallback) => {
            record.decided_by = DecidedBy::Fallback;
            record.fallback = Some(*fallback);
            (decision, record)
        }
    }
}

/// Decides `submissions` in order against `snapshot`.
pub fn decide_batch(
    snapshot: &Snapshot,
    submissions: &[Submission],
    context: &Context<'_>,
) -> Result<Effects, EngineError> {
    let mut batch = Batch {
        snapshot,
        context,
        effects: Effects::default(),
        added: HashMap::new(),
        added_by_card: HashMap::new(),
        keys: HashMap::new(),
    };
    for (index, submission) in submissions.iter().enumerate() {
        let answer = batch.submit(index, submission)?;
        batch.effects.answers.push(answer);
    }
    Ok(batch.effects)
}

/// A batch being decided: the snapshot, and what the batch has changed so far on top of it.
struct Batch<'a> {
    snapshot: &'a Snapshot,
    context: &'a Context<'a>,
    effects: Effects,
    /// Authorizations decided in this batch, by cardholder and by card (the history the snapshot does not have yet;
    /// by card only the declines, unless authorization rules may count a card's approvals).
    added: HashMap<String, Vec<Past>>,
    added_by_card: HashMap<String, Vec<Past>>,
    /// Network keys decided in this batch.
    keys: HashMap<NetworkKey, usize>,
}

impl Batch<'_> {
    fn submit(&mut self, index: usize, submission: &Submission) -> Result<Answer, EngineError> {
        let mut reversed_first = false;
        if let Some(key) = submission.network_key() {
            if self.snapshot.recorded.contains(&key) {
                return Ok(Answer::DuplicateOfRecorded(key));
            }
            if let Some(&earlier) = self.keys.get(&key) {
                return Ok(Answer::DuplicateInBatch(earlier));
            }
            reversed_first = self.snapshot.reversed.contains(&key);
            self.keys.insert(key, index);
        }
        let entry = match &submission.card_id {
            Some(card_id) => Some(self.card(card_id)?),
            None => None,
        };
        let (mut decision, mut record) = self.decide(submission, entry.as_ref(), reversed_first);
        let asks_endpoint = decision.is_approved()
            && !reversed_first
            && submission.request.class != MessageClass::Advice
            && matches!(decision.kind, AuthorizationKind::Purchase | AuthorizationKind::Incremental);
        let ask = match (&submission.endpoint, asks_endpoint) {
            (EndpointStep::Ask, true) => true,
            (EndpointStep::Answered(verdict), true) => {
                (decision, record) = with_verdict(decision, record, verdict);
                false
            }
            _ => false,
        };
        let mut decided = Decided {
            card_id: submission.card_id.clone(),
            cardholder_id: entry.as_ref().map(|entry| entry.cardholder_id.clone()),
            held: 0,
            hold_entry: None,
            auth_code: decision.is_approved().then(|| submission.auth_code.clone()),
            decision,
            record,
        };
        if ask {
            // Not decided yet: a repeat of it in this batch is decided on its own.
            if let Some(key) = submission.network_key() {
                self.keys.remove(&key);
            }
            return Ok(Answer::Ask(decided));
        }
        self.note(decided.status_event(), &submission.id);
        if let (Some(card_id), Some(entry)) = (&submission.card_id, entry) {
            self.apply(submission, card_id, entry, &mut decided, reversed_first)?;
        }
        Ok(Answer::Decided(decided))
    }

    /// The card as the batch has left it so far.
    fn card(&self, card_id: &str) -> Result<CardEntry, EngineError> {
        self.effects
            .cards
            .get(card_id)
            .or_else(|| self.snapshot.cards.get(card_id))
            .cloned()
            .ok_or_else(|| EngineError::Broken(format!("card {card_id} is not in the snapshot")))
    }

    /// The cardholder's authorizations: the snapshot's, then this batch's.
    fn history<'s>(&'s self, holder: &str) -> impl Iterator<Item = &'s Past> + 's {
        let stored = self.snapshot.history.get(holder).into_iter().flatten();
        stored.chain(self.added.get(holder).into_iter().flatten())
    }

    fn decide(
        &self,
        submission: &Submission,
        entry: Option<&CardEntry>,
        reversed_first: bool,
    ) -> (Decision, DecisionRecord) {
        let context = self.context;
        let holder = entry.map(|entry| entry.cardholder_id.as_str());
        let standing = holder.and_then(|holder| self.snapshot.standings.get(holder)).copied().unwrap_or_default();
        let since = context.now - chrono::Duration::seconds(context.rules.fraud.authorization_window_seconds());
        let approvals: Vec<DateTime<Utc>> = holder
            .map(|holder| {
                self.history(holder).filter(|past| past.spends() && past.at > since).map(|past| past.at).collect()
            })
            .unwrap_or_default();
        let mut decision = if reversed_first {
            reversed_before_arrival()
        } else {
            decide(&DecisionInput {
                request: &submission.request,
                card: entry.map(|entry| &entry.card),
                cvv: if entry.is_some() { submission.cvv } else { CvvCheck::Absent },
                controls: entry.map_or(&NO_CONTROLS, |entry| &entry.controls),
                standing,
                cardholder_approvals: &approvals,
                rules: context.rules,
                now: context.now,
            })
        };
        let mut record = DecisionRecord {
            rules: context.rules_version.to_owned(),
            class: submission.request.class,
            transaction: submission.request.transaction_type,
            expiry_matched: entry.zip(submission.request.expiry).map(|(entry, expiry)| expiry == entry.card.expiry()),
            cvv: submission.cvv,
            card: entry.map(|entry| CardInputs::of(entry, context.now)),
            restricted: standing.restricted,
            overdue: standing.overdue,
            approvals_ms_ago: approvals.iter().map(|at| (context.now - *at).num_milliseconds()).collect(),
            reversed_first,
            rule_set: None,
            rule_results: String::new(),
            decided_by: DecidedBy::Ghostcard,
            fallback: None,
            endpoint_reason: None,
        };
        if let Some(entry) = entry
            && self.rules_apply(&decision, submission, reversed_first)
            && let Some(card_id) = &submission.card_id
        {
            let evaluation = self.evaluate_rules(submission, card_id, entry, standing.joined);
            record.rule_set = Some(context.auth_rules.version);
            record.rule_results = evaluation.results;
            if let Some(rule) = evaluation.declined_by {
                decision = declined_by_rule(decision, rule);
            }
        }
        (decision, record)
    }

    /// The issuer's rules run on what ghostcard would approve, except refunds and advices (which they never
    /// decline) and an original whose reversal came first.
    fn rules_apply(&self, decision: &Decision, submission: &Submission, reversed_first: bool) -> bool {
        !self.context.auth_rules.is_empty()
            && !reversed_first
            && decision.is_approved()
            && submission.request.class != MessageClass::Advice
            && decision.kind.meets_issuer_rules()
    }

    /// The authorization rules' results for a request on a card.
    fn evaluate_rules(
        &self,
        submission: &Submission,
        card_id: &str,
        entry: &CardEntry,
        joined: Option<DateTime<Utc>>,
    ) -> crate::auth_rules::Evaluation {
        let context = self.context;
        let request = &submission.request;
        let currency = crate::money::Currency::from_numeric(request.currency_numeric).map(|currency| currency.code());
        let facts = Facts {
            mcc: request.mcc,
            country: request.country,
            amount: request.amount_minor,
            merchant_id: &request.merchant.merchant_id,
            acquirer_id: &request.merchant.acquirer_id,
            currency: currency.unwrap_or(""),
            card_age_seconds: (context.now - entry.created_at).num_seconds(),
            cardholder_tenure_days: joined.map_or(0, |joined| (context.now - joined).num_days()),
            hour_of_day: context.hour_of_day,
            card_id,
            cardholder_id: &entry.cardholder_id,
        };
        let approvals = |pasts: &mut dyn Iterator<Item = &Past>| -> Vec<Approval> {
            pasts.filter(|past| past.spends()).map(|past| Approval { at: past.at, amount: past.amount }).collect()
        };
        let card = match context.auth_rules.longest_window(Per::Card) {
            Some(_) => {
                let stored = self.snapshot.card_history.get(card_id).into_iter().flatten();
                approvals(&mut stored.chain(self.added_by_card.get(card_id).into_iter().flatten()))
            }
            None => Vec::new(),
        };
        let cardholder = match context.auth_rules.longest_window(Per::Cardholder) {
            Some(_) => approvals(&mut self.history(&entry.cardholder_id)),
            None => Vec::new(),
        };
        context.auth_rules.evaluate(&facts, Approvals { card: &card, cardholder: &cardholder }, context.now)
    }

    /// Applies a decision to its card: an approval's hold and first use; a decline's fraud rules. Then the decision
    /// joins the history the requests after it read.
    fn apply(
        &mut self,
        submission: &Submission,
        card_id: &str,
        entry: CardEntry,
        decided: &mut Decided,
        reversed_first: bool,
    ) -> Result<(), EngineError> {
        let holder = entry.cardholder_id.clone();
        if let Outcome::Approved { hold } = decided.decision.outcome {
            self.approve(submission, card_id, entry, decided, hold)?;
        }
        let actions = match decided.decision.decline_reason() {
            // A purchase called off before it arrived is not an attempt on the card, nor is a decline the card's
            // controls or the issuer's rules chose.
            Some(reason) if !reversed_first && DeclineReason::counts_toward_fraud(reason.code()) => {
                self.fraud_after_decline(&holder, card_id, reason)
            }
            _ => Vec::new(),
        };
        let past = Past {
            kind: decided.decision.kind,
            response_code: Cow::Borrowed(decided.decision.response_code),
            decline_reason: decided.decision.decline_reason().map(|reason| Cow::Borrowed(reason.code())),
            amount: submission.request.amount_minor,
            at: self.context.now,
        };
        if past.is_decline() || !self.context.auth_rules.is_empty() {
            self.added_by_card.entry(card_id.to_owned()).or_default().push(past.clone());
        }
        self.added.entry(holder.clone()).or_default().push(past);
        for action in actions {
            match action {
                FraudAction::FreezeCard { rule } => self.freeze(card_id, &rule)?,
                FraudAction::FreezeCardholderCards { rule } => self.freeze_cardholder(&holder, &rule)?,
            }
        }
        Ok(())
    }

    /// An approval: the hold (forced past the remaining amount for a flagged advice) and, for a first use, the
    /// binding to the merchant.
    fn approve(
        &mut self,
        submission: &Submission,
        card_id: &str,
        mut entry: CardEntry,
        decided: &mut Decided,
        hold: Money,
    ) -> Result<(), EngineError> {
        let broken = |error: crate::card::CardError| EngineError::Broken(format!("card {card_id}: {error}"));
        if hold.is_positive() {
            if decided.decision.flag.is_some() { entry.card.force_hold(hold) } else { entry.card.hold(hold) }
                .map_err(broken)?;
            decided.held = hold.minor();
            decided.hold_entry = Some(self.effects.entries.len());
            self.effects.entries.push(entries::hold(card_id, hold));
        }
        if decided.decision.first_use {
            let merchant = CardEvent::FirstUse(submission.request.merchant.clone());
            let transition = entry.card.apply(merchant, self.context.now).map_err(broken)?;
            entry.merchant_name = submission.descriptors.merchant_name.clone();
            self.effects.transitions.push((card_id.to_owned(), transition));
            self.note("card.used", card_id);
        }
        self.effects.cards.insert(card_id.to_owned(), entry);
        Ok(())
    }

    /// What the fraud rules do after this decline, counted with the declines and CVV2 failures before it.
    fn fraud_after_decline(&self, holder: &str, card_id: &str, reason: &DeclineReason) -> Vec<FraudAction> {
        let cvv_failed = *reason == DeclineReason::CvvMismatch;
        let failures: Vec<_> = self.history(holder).filter(|past| past.is_cvv_failure()).map(|past| past.at).collect();
        let stored = self.snapshot.card_declines.get(card_id).into_iter().flatten();
        let declines: Vec<_> = stored
            .chain(self.added_by_card.get(card_id).into_iter().flatten())
            .filter(|past| past.is_decline())
            .map(|past| past.at)
            .collect();
        self.context.rules.fraud.after_decline(cvv_failed, &failures, &declines, self.context.now)
    }

    /// Freezes every open card of the cardholder; their cards must all be in the snapshot.
    fn freeze_cardholder(&mut self, holder: &str, rule: &str) -> Result<(), EngineError> {
        if !self.snapshot.complete.contains(holder) {
            return Err(EngineError::Incomplete(vec![holder.to_owned()]));
        }
        let mut open: Vec<&String> =
            self.snapshot.cards.iter().filter(|(_, entry)| entry.cardholder_id == holder).map(|(id, _)| id).collect();
        open.sort();
        for id in open {
            self.freeze(id, rule)?;
        }
        Ok(())
    }

    /// Freezes the card if it is open (active or used).
    fn freeze(&mut self, card_id: &str, rule: &str) -> Result<(), EngineError> {
        let mut entry = self.card(card_id)?;
        if !matches!(entry.card.status(), CardStatus::Active | CardStatus::Used) {
            return Ok(());
        }
        let transition = entry
            .card
            .apply(CardEvent::Freeze { rule: rule.to_owned() }, self.context.now)
            .map_err(|error| EngineError::Broken(format!("card {card_id}: {error}")))?;
        self.effects.transitions.push((card_id.to_owned(), transition));
        self.effects.cards.insert(card_id.to_owned(), entry);
        self.note("fraud.flagged", card_id);
        Ok(())
    }

    fn note(&mut self, kind: &'static str, subject: &str) {
        self.effects.events.push(EventNote { kind, subject: subject.to_owned() });
    }
}

impl Decided {
    fn status_event(&self) -> &'static str {
        if self.decision.is_approved() { "authorization.approved" } else { "authorization.declined" }
    }
}

#[cfg(test)]
mod tests {
    //! Deciding a stream as one batch, as batches of every size and one at a time gives identical answers, card
    //! states, transitions, ledger entries and events. The "world" below stands in for the store: it builds each
    //! batch's snapshot from what earlier batches wrote, exactly as the store loads it.

    use std::collections::BTreeMap;

    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;
    use crate::card::tests::{card, merchant, now};
    use crate::card_number::Expiry;
    use crate::country::Country;
    use crate::decision::Mcc;
    use crate::fraud::{FraudRules, VelocityLimit};

    const CARDS: usize = 5;

    /// Tight limits, so that short streams reach them.
    fn rules() -> AuthorizationRules {
        let mut rules = AuthorizationRules::defaults(Country::parse("US").expect("US"), 100);
        rules.fraud = FraudRules {
            card_creation: Vec::new(),
            authorization: vec![VelocityLimit::new("approvals_10m", 600, 3)],
            cvv_failures: vec![VelocityLimit::new("cvv_failures_1h", 3600, 2)],
            card_declines: vec![VelocityLimit::new("card_declines_10m", 600, 3)],
        };
        rules
    }

    /// Issuer rules that short streams reach: an amount limit, a card's approvals counted in shadow, a cardholder's
    /// amount over ten minutes.
    fn auth_rules() -> RuleSet {
        use crate::auth_rules::{Attribute, Body, Condition, Mode, Operation, Rule, Scope, Value, Velocity};
        let rule = |id: &str, mode, body| Rule { id: id.to_owned(), version: 1, mode, scope: Scope::program(), body };
        let velocity =
            |max_count, max_amount, per| Body::Velocity(Velocity { window_seconds: 600, max_count, max_amount, per });
        RuleSet::new(
            3,
            vec![
                rule(
                    "rule_big",
                    Mode::Active,
                    Body::Conditions(vec![Condition {
                        attribute: Attribute::Amount,
                        operation: Operation::IsGreaterThan,
                        value: Value::Number(9_000),
                    }]),
                ),
                rule("rule_card", Mode::Shadow, velocity(Some(1), None, Per::Card)),
                rule("rule_holder", Mode::Active, velocity(None, Some(6_000), Per::Cardholder)),
            ],
        )
    }

    fn holder_of(card: usize) -> String {
        format!("ch_{}", card % 2)
    }

    /// What happens next in a stream.
    #[derive(Debug, Clone)]
    enum Step {
        Submit(Request),
        /// Time passes (seconds).
        Tick(i64),
        /// A reversal arrives for this STAN; before its original, it makes the original a decline.
        Reverse(u8),
    }

    #[derive(Debug, Clone)]
    struct Request {
        /// `None`: a number that matches no card.
        card: Option<usize>,
        amount: i64,
        class: MessageClass,
        transaction: TransactionType,
        cvv: CvvCheck,
        expiry_matches: bool,
        merchant: u8,
        stan: Option<u8>,
    }

    fn step() -> impl Strategy<Value = Step> {
        let request = (
            prop::option::weighted(0.9, 0..CARDS),
            prop_oneof![Just(0i64), 1..=100i64, 101..4_000i64, 3_000..12_000i64],
            prop_oneof![
                6 => Just(MessageClass::Authorization),
                1 => Just(MessageClass::Advice),
                1 => Just(MessageClass::Financial)
            ],
            prop_oneof![6 => Just(TransactionType::Purchase), 1 => Just(TransactionType::Refund), 1 => Just(TransactionType::Cash)],
            prop_oneof![5 => Just(CvvCheck::Match), 2 => Just(CvvCheck::Mismatch), 1 => Just(CvvCheck::Absent)],
            prop::bool::weighted(0.9),
            0..3u8,
            prop::option::weighted(0.8, 0..12u8),
        )
            .prop_map(|(card, amount, class, transaction, cvv, expiry_matches, merchant, stan)| {
                Step::Submit(Request { card, amount, class, transaction, cvv, expiry_matches, merchant, stan })
            });
        prop_oneof![
            12 => request,
            2 => prop_oneof![Just(1i64), Just(299), Just(300), Just(599), Just(600), Just(3_600)].prop_map(Step::Tick),
            1 => (0..12u8).prop_map(Step::Reverse),
        ]
    }

    fn submission(index: usize, request: &Request, at: DateTime<Utc>) -> Submission {
        Submission {
            id: format!("auth_{index:03}"),
            auth_code: format!("C{index:05}"),
            request: AuthorizationRequest {
                class: request.class,
                transaction_type: request.transaction,
                amount_minor: request.amount,
                currency_numeric: 840,
                expiry: Some(Expiry::new(2029, if request.expiry_matches { 11 } else { 12 }).expect("valid")),
                mcc: Mcc(5732),
                merchant: merchant(&format!("SHOP{}", request.merchant)),
                country: Some(Country::parse("US").expect("US")),
            },
            descriptors: Descriptors {
                merchant_name: Some(format!("Shop {}", request.merchant)),
                stan: request.stan.map(|stan| format!("{stan:06}")),
                transmission_time: request.stan.map(|_| format!("{}", at.timestamp())),
                ..Descriptors::default()
            },
            card_id: request.card.map(|card| format!("card_{card}")),
            cvv: request.cvv,
            endpoint: EndpointStep::None,
        }
    }

    /// What the store holds, and what each submission was answered.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct World {
        cards: BTreeMap<String, CardEntry>,
        standings: HashMap<String, CardholderStanding>,
        /// By cardholder: (card, authorization).
        history: BTreeMap<String, Vec<(String, Past)>>,
        /// Network key → the authorization recorded under it and its answer.
        recorded: BTreeMap<NetworkKey, (String, &'static str)>,
        reversed: HashSet<NetworkKey>,
        transitions: Vec<(String, Transition)>,
        entries: Vec<Entry>,
        events: Vec<EventNote>,
        /// Per submission: the authorization whose answer it got, and the response code.
        answers: Vec<(String, &'static str)>,
        records: Vec<DecisionRecord>,
    }

    impl World {
        fn new(restricted: bool, overdue: bool) -> World {
            let cards = (0..CARDS)
                .map(|index| {
                    // The last card is paused: its declines must not count toward the freeze in either order.
                    let controls = CardControls { paused: index == CARDS - 1, ..CardControls::default() };
                    let entry = CardEntry {
                        cardholder_id: holder_of(index),
                        card: card(2_000 * (index as i64 + 1)),
                        controls,
                        merchant_name: None,
                        created_at: now() - Duration::hours(1),
                    };
                    (format!("card_{index}"), entry)
                })
                .collect();
            let standings =
                HashMap::from([("ch_1".to_owned(), CardholderStanding { restricted, overdue, joined: None })]);
            World {
                cards,
                standings,
                history: BTreeMap::new(),
                recorded: BTreeMap::new(),
                reversed: HashSet::new(),
                transitions: Vec::new(),
                entries: Vec::new(),
                events: Vec::new(),
                answers: Vec::new(),
                records: Vec::new(),
            }
        }

        /// The snapshot the store would load for these submissions at `at`, with these cardholders complete.
        fn snapshot(&self, submissions: &[Submission], complete: &HashSet<String>, at: DateTime<Utc>) -> Snapshot {
            let mut snapshot = Snapshot { complete: complete.clone(), ..Snapshot::default() };
            let auth_rules = auth_rules();
            let window = auth_rules.longest_window(Per::Cardholder).unwrap_or(0);
            let since = at - Duration::seconds(rules().fraud.history_window_seconds().max(window));
            let card_since = at - Duration::seconds(auth_rules.longest_window(Per::Card).unwrap_or(0));
            for submission in submissions {
                if let Some(id) = &submission.card_id {
                    let entry = self.cards[id].clone();
                    let holder = entry.cardholder_id.clone();
                    snapshot.cards.insert(id.clone(), entry);
                    if let Some(standing) = self.standings.get(&holder) {
                        snapshot.standings.insert(holder.clone(), *standing);
                    }
                    let history: Vec<&(String, Past)> =
                        self.history.get(&holder).into_iter().flatten().filter(|(_, past)| past.at > since).collect();
                    let declines = history.iter().filter(|(card, past)| card == id && past.decline_reason.is_some());
                    snapshot.card_declines.insert(id.clone(), declines.map(|(_, past)| past.clone()).collect());
                    let on_card = history.iter().filter(|(card, past)| card == id && past.at > card_since);
                    snapshot.card_history.insert(id.clone(), on_card.map(|(_, past)| past.clone()).collect());
                    snapshot.history.insert(holder, history.into_iter().map(|(_, past)| past.clone()).collect());
                }
                if let Some(key) = submission.network_key() {
                    if self.recorded.contains_key(&key) {
                        snapshot.recorded.insert(key.clone());
                    }
                    if self.reversed.contains(&key) {
                        snapshot.reversed.insert(key);
                    }
                }
            }
            for (id, entry) in &self.cards {
                if complete.contains(&entry.cardholder_id) {
                    snapshot.cards.insert(id.clone(), entry.clone());
                }
            }
            snapshot
        }

        /// Decides a batch and writes what it changed, as the store does.
        fn run(&mut self, submissions: &[Submission], at: DateTime<Utc>) {
            let rules = rules();
            let auth_rules = auth_rules();
            let context =
                Context { rules: &rules, rules_version: "test", auth_rules: &auth_rules, hour_of_day: 12, now: at };
            let mut complete = HashSet::new();
            let effects = loop {
                match decide_batch(&self.snapshot(submissions, &complete, at), submissions, &context) {
                    Ok(effects) => break effects,
                    Err(EngineError::Incomplete(holders)) => complete.extend(holders),
                    Err(error) => panic!("{error}"),
                }
            };
            assert_eq!(effects.answers.len(), submissions.len(), "one answer per submission");
            let base = self.answers.len();
            for (submission, answer) in submissions.iter().zip(&effects.answers) {
                let answered = match answer {
                    Answer::Ask(_) => panic!("the streams have no decision endpoint"),
                    Answer::Decided(decided) => {
                        let answered = (submission.id.clone(), decided.decision.response_code);
                        if let Some(key) = submission.network_key() {
                            self.recorded.insert(key, answered.clone());
                        }
                        if let Some(holder) = &decided.cardholder_id {
                            let card = decided.card_id.clone().unwrap_or_default();
                            self.history.entry(holder.clone()).or_default().push((
                                card,
                                Past {
                                    kind: decided.decision.kind,
                                    response_code: decided.decision.response_code.into(),
                                    decline_reason: decided
                                        .decision
                                        .decline_reason()
                                        .map(|reason| reason.code().into()),
                                    amount: submission.request.amount_minor,
                                    at,
                                },
                            ));
                        }
                        if let Some(index) = decided.hold_entry {
                            let Entry::Hold { amount, .. } = &effects.entries[index] else { panic!("not a hold") };
                            assert_eq!(amount.minor(), decided.held);
                        }
                        self.records.push(decided.record.clone());
                        answered
                    }
                    Answer::DuplicateOfRecorded(key) => self.recorded[key].clone(),
                    Answer::DuplicateInBatch(earlier) => self.answers[base + *earlier].clone(),
                };
                self.answers.push(answered);
            }
            for (id, entry) in effects.cards {
                self.cards.insert(id, entry);
            }
            self.transitions.extend(effects.transitions);
            self.entries.extend(effects.entries);
            self.events.extend(effects.events);
        }
    }

    /// Runs the stream in batches of at most `size` (a tick or a reversal always ends a batch).
    fn run(steps: &[Step], size: usize, restricted: bool, overdue: bool) -> World {
        let mut world = World::new(restricted, overdue);
        let mut at = now();
        let mut pending: Vec<Submission> = Vec::new();
        let mut index = 0;
        let flush = |world: &mut World, pending: &mut Vec<Submission>, at| {
            for batch in pending.chunks(size) {
                world.run(batch, at);
            }
            pending.clear();
        };
        for step in steps {
            match step {
                Step::Submit(request) => {
                    pending.push(submission(index, request, at));
                    index += 1;
                }
                Step::Tick(seconds) => {
                    flush(&mut world, &mut pending, at);
                    at += Duration::seconds(*seconds);
                }
                Step::Reverse(stan) => {
                    flush(&mut world, &mut pending, at);
                    let key = NetworkKey {
                        acquirer_id: "123456".to_owned(),
                        stan: format!("{stan:06}"),
                        transmission_time: format!("{}", at.timestamp()),
                    };
                    if !world.recorded.contains_key(&key) {
                        world.reversed.insert(key);
                    }
                }
            }
        }
        flush(&mut world, &mut pending, at);
        world
    }

    #[test]
    fn a_decision_record_leaves_out_usual_values_and_reads_back_the_same() {
        let world = run(
            &[Step::Submit(Request {
                card: Some(0),
                amount: 500,
                class: MessageClass::Authorization,
                transaction: TransactionType::Purchase,
                cvv: CvvCheck::Match,
                expiry_matches: true,
                merchant: 0,
                stan: None,
            })],
            1,
            false,
            false,
        );
        let record = &world.records[0];
        let json = serde_json::to_value(record).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "rules": "test", "expiry_matched": true, "cvv": "match",
                "card": {"status": "active", "amount": 2000, "window_open": true},
                "rule_set": 3, "rule_results": "ppp"
            })
        );
        assert_eq!(&serde_json::from_value::<DecisionRecord>(json).expect("deserializes"), record);
    }

    #[test]
    fn an_active_rule_declines_05_names_itself_and_never_freezes_the_card() {
        let purchase = |stan: u8| {
            Step::Submit(Request {
                card: Some(3),
                amount: if stan == 0 { 5_000 } else { 1_500 },
                class: MessageClass::Authorization,
                transaction: TransactionType::Purchase,
                cvv: CvvCheck::Match,
                expiry_matches: true,
                merchant: 0,
                stan: Some(stan),
            })
        };
        // Card 3 holds 8,000: 5,000 is approved; then 1,500 more at the same merchant is past the shadow per-card
        // count (recorded only) and past the cardholder's 6,000 in ten minutes (declined), five times: more than
        // the three declines that freeze a card.
        let world = run(&(0..6).map(purchase).collect::<Vec<_>>(), 1, false, false);
        let codes: Vec<&str> = world.answers.iter().map(|(_, code)| *code).collect();
        assert_eq!(codes, ["00", "05", "05", "05", "05", "05"]);
        assert_eq!(world.records[0].rule_results, "ppp");
        assert_eq!(world.records[1].rule_results, "pwd");
        assert_eq!(world.records[1].rule_set, Some(3));
        assert_eq!(world.cards["card_3"].card.status(), CardStatus::Used, "rule declines do not freeze");
        let declined = world.history["ch_1"].iter().filter(|(_, past)| past.decline_reason.is_some());
        assert!(
            declined.clone().count() == 5
                && declined.clone().all(|(_, past)| past.decline_reason.as_deref() == Some("auth_rule"))
        );
    }

    #[test]
    fn the_decision_endpoint_is_asked_only_for_would_be_approvals_and_its_answer_decides() {
        let world = World::new(false, false);
        let at = now();
        let request = |amount, class| Request {
            card: Some(0),
            amount,
            class,
            transaction: TransactionType::Purchase,
            cvv: CvvCheck::Match,
            expiry_matches: true,
            merchant: 0,
            stan: Some(1),
        };
        let decide = |request: &Request, endpoint: EndpointStep| {
            let submission = Submission { endpoint, ..submission(0, request, at) };
            let snapshot = world.snapshot(std::slice::from_ref(&submission), &HashSet::new(), at);
            let (rules, auth_rules) = (rules(), RuleSet::default());
            let context =
                Context { rules: &rules, rules_version: "test", auth_rules: &auth_rules, hour_of_day: 12, now: at };
            decide_batch(&snapshot, &[submission], &context).expect("decides")
        };
        let purchase = request(500, MessageClass::Authorization);
        // Asking: nothing is applied, no event, no hold.
        let asked = decide(&purchase, EndpointStep::Ask);
        assert!(matches!(&asked.answers[0], Answer::Ask(decided) if decided.decision.is_approved()));
        assert!(asked.entries.is_empty() && asked.events.is_empty() && asked.cards.is_empty());
        // What ghostcard declines itself, and advices and verifications, are never sent.
        for never in [
            request(5_000, MessageClass::Authorization),
            request(0, MessageClass::Authorization),
            request(500, MessageClass::Advice),
        ] {
            let Answer::Decided(decided) = &decide(&never, EndpointStep::Ask).answers[0] else { panic!("asked") };
            assert_eq!(decided.record.decided_by, DecidedBy::Ghostcard);
        }
        let answered = |verdict| match decide(&purchase, EndpointStep::Answered(verdict)).answers.remove(0) {
            Answer::Decided(decided) => decided,
            other => panic!("{other:?}"),
        };
        let approved = answered(Verdict::Approve);
        assert_eq!((approved.decision.response_code, approved.record.decided_by), ("00", DecidedBy::Endpoint));
        let declined = answered(Verdict::Decline(Some("risk".to_owned())));
        assert_eq!(declined.decision.response_code, "05");
        assert_eq!(declined.decision.decline_reason(), Some(&DeclineReason::DeclinedByEndpoint));
        assert_eq!((declined.held, declined.record.endpoint_reason.as_deref()), (0, Some("risk")));
        let fallback = answered(Verdict::Fallback(Fallback::Timeout));
        assert_eq!((fallback.decision.response_code, fallback.record.decided_by), ("00", DecidedBy::Fallback));
        assert_eq!((fallback.held, fallback.record.fallback), (500, Some(Fallback::Timeout)));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

        #[test]
        fn a_batch_decides_as_one_at_a_time(
            steps in prop::collection::vec(step(), 1..40),
            restricted in prop::bool::weighted(0.1),
            overdue in prop::bool::weighted(0.1),
        ) {
            let alone = run(&steps, 1, restricted, overdue);
            let submissions = steps.iter().filter(|step| matches!(step, Step::Submit(_))).count();
            for size in 2..=submissions.max(2) {
                let batched = run(&steps, size, restricted, overdue);
                prop_assert_eq!(&batched, &alone, "batches of {}", size);
            }
        }
    }

    #[test]
    fn the_third_cvv_failure_freezes_every_open_card_of_the_cardholder_even_outside_the_batch() {
        let steps: Vec<Step> = (0..2)
            .map(|_| {
                Step::Submit(Request {
                    card: Some(0),
                    amount: 500,
                    class: MessageClass::Authorization,
                    transaction: TransactionType::Purchase,
                    cvv: CvvCheck::Mismatch,
                    expiry_matches: true,
                    merchant: 0,
                    stan: None,
                })
            })
            .collect();
        let world = run(&steps, 2, false, false);
        // Cards 0, 2 and 4 are ch_0's: the second failure reaches the limit of two.
        let frozen: Vec<&str> = world
            .events
            .iter()
            .filter(|event| event.kind == "fraud.flagged")
            .map(|event| event.subject.as_str())
            .collect();
        assert_eq!(frozen, ["card_0", "card_2", "card_4"]);
        for id in ["card_0", "card_2", "card_4"] {
            assert_eq!(world.cards[id].card.status(), CardStatus::Frozen);
        }
        assert_eq!(world.cards["card_1"].card.status(), CardStatus::Active);
        assert_eq!(world.records.len(), 2);
        assert_eq!(world.records[0].cvv, CvvCheck::Mismatch);
    }

    #[test]
    fn a_duplicate_gets_its_originals_answer_in_the_batch_and_after_it() {
        let request = Request {
            card: Some(1),
            amount: 1_500,
            class: MessageClass::Authorization,
            transaction: TransactionType::Purchase,
            cvv: CvvCheck::Match,
            expiry_matches: true,
            merchant: 1,
            stan: Some(7),
        };
        let steps = vec![Step::Submit(request.clone()), Step::Submit(request.clone()), Step::Submit(request)];
        let world = run(&steps, 2, false, false);
        assert_eq!(world.answers, vec![("auth_000".to_owned(), "00"); 3]);
        assert_eq!(world.entries.len(), 1, "one hold");
    }
}
