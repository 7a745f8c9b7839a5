//! Authorizations, decided by the one engine ([`ghostcard_domain::engine`]) and made durable with everything they
//! change (card states, holds, authorization records, fraud freezes, events) in one transaction.
//!
//! [`decide_in`] decides requests as a batch in the caller's transaction: the store loads the snapshot, the engine
//! decides, the store writes. The group-commit authorizer ([`crate::authorizer`]) calls it with up to a batch of
//! network requests; [`decide_alone`] calls it with one, in a transaction of its own, for the sandbox endpoint,
//! 0200s and the requests of a batch that conflicted with another writer.

use chrono::{DateTime, Duration, Utc};
use ghostcard_domain::auth_rules::Per;
use ghostcard_domain::authorization::AuthorizationStatus;
use ghostcard_domain::card::Card;
use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::decision::{AuthorizationKind, AuthorizationRequest, CvvCheck};
pub use ghostcard_domain::engine::Descriptors;
use ghostcard_domain::engine::{self, Context, EndpointStep, EngineError, NetworkKey, Submission};
use ghostcard_domain::money::Money;
pub use ghostcard_store::batch::Stored as Outcome;
use ghostcard_store::batch::{self, Loaded};
use ghostcard_store::{Conn, StoreError, authorizations};
use rand::RngExt;

use crate::App;
use crate::ids::new_id;
use crate::service::lifecycle;

/// One authorization request to decide.
#[derive(Debug, Clone)]
pub struct Job {
    /// The card number as the network sent it, to check its CVV2; `None` when the sandbox names the card or the
    /// digits are not a card number.
    pub number: Option<CardNumber>,
    /// The keyed hash the card is found by (of the digits, when they are not a card number: no card has it).
    pub number_hash: Vec<u8>,
    pub request: AuthorizationRequest,
    pub cvv: CvvInput,
    pub descriptors: Descriptors,
    /// The authorization's id and approval code, kept when the job is decided again after the decision endpoint
    /// answered.
    pub assigned: Option<(String, String)>,
    /// Where the decision endpoint stands for it ([`crate::decision_endpoint`]).
    pub endpoint: EndpointStep,
    /// When the decision endpoint's answer is due at the latest (the network's deadline less a margin).
    pub deadline: Option<std::time::Instant>,
}

impl Job {
    /// A job for a request, not yet decided.
    pub fn new(
        number: Option<CardNumber>,
        number_hash: Vec<u8>,
        request: AuthorizationRequest,
        cvv: CvvInput,
        descriptors: Descriptors,
    ) -> Job {
        Job {
            number,
            number_hash,
            request,
            cvv,
            descriptors,
            assigned: None,
            endpoint: EndpointStep::None,
            deadline: None,
        }
    }
}

impl Job {
    fn network_key(&self) -> Option<NetworkKey> {
        NetworkKey::of(&self.request, &self.descriptors)
    }
}

/// The CVV2 part of a request.
#[derive(Debug, Clone)]
pub enum CvvInput {
    /// The sandbox: "as if the network sent the correct CVV2".
    AssumeCorrect,
    Received(String),
    Absent,
}

/// What an approval does besides holding: a 0200 financial request captures at once (a purchase) or moves the
/// refund at once (a credit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Settlement {
    #[default]
    HoldOnly,
    Immediate,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Lifecycle(#[from] crate::service::lifecycle::LifecycleError),
    #[error("stored card is inconsistent: {0}")]
    Card(String),
}

/// Decides `jobs` in order and writes the result in the transaction on `tx`, returning one outcome per job; `begin`:
/// SQLite statements that begin the transaction, sent with the first read (the group commit's held connection).
/// On an error the transaction must be rolled back.
pub async fn decide_in(
    app: &App,
    tx: &mut Conn,
    jobs: &[Job],
    now: DateTime<Utc>,
    begin: Option<&str>,
) -> Result<Vec<Outcome>, AuthorizeError> {
    let loading = std::time::Instant::now();
    let hashes: Vec<Vec<u8>> = jobs.iter().map(|job| job.number_hash.clone()).collect();
    let keys: Vec<NetworkKey> = jobs.iter().filter_map(Job::network_key).collect();
    // One rule set for the whole batch, taken once.
    let auth_rules = app.decisioning.rules();
    let since = batch::Since {
        cardholders: now
            - Duration::seconds(
                app.rules.fraud.history_window_seconds().max(auth_rules.longest_window(Per::Cardholder).unwrap_or(0)),
            ),
        cards: auth_rules.longest_window(Per::Card).map(|window| now - Duration::seconds(window)),
    };
    let mut loaded = batch::load(tx, &hashes, &keys, since, app.today(now), begin).await?;
    let submissions = jobs.iter().map(|job| submission(app, &loaded, job, now)).collect::<Result<Vec<_>, _>>()?;
    let (loaded_in, deciding) = (loading.elapsed(), std::time::Instant::now());
    let hour_of_day = i64::from(chrono::Timelike::hour(&now.with_timezone(&app.time_zone)));
    let context =
        Context { rules: &app.rules, rules_version: &app.rules_version, auth_rules: &auth_rules, hour_of_day, now };
    let effects = loop {
        match engine::decide_batch(&loaded.snapshot, &submissions, &context) {
            Ok(effects) => break effects,
            Err(EngineError::Incomplete(holders)) => {
                if holders.iter().all(|holder| loaded.snapshot.complete.contains(holder)) {
                    crate::invariant::broken(format_args!(
                        "the cards of {holders:?} were loaded and are still missing"
                    ));
                }
                batch::load_cards_of(tx, &mut loaded, &holders).await?;
            }
            Err(EngineError::Broken(what)) => crate::invariant::broken(what),
        }
    };
    let (decided_in, writing) = (deciding.elapsed(), std::time::Instant::now());
    for (card, transition) in &effects.transitions {
        if transition.to == ghostcard_domain::card::CardStatus::Frozen {
            tracing::warn!(%card, rule = %transition.reason, "card frozen by a fraud rule");
        }
    }
    let number_hashes: Vec<Option<Vec<u8>>> = hashes.into_iter().map(Some).collect();
    let outcomes = batch::write(tx, loaded, submissions, number_hashes, effects, now).await?;
    app.metrics.observe_batch_stages(loaded_in, decided_in, writing.elapsed());
    Ok(outcomes)
}

/// Counts and logs decided authorizations once they are durable.
pub fn observe(app: &App, outcomes: &[Outcome]) {
    for outcome in outcomes {
        if let Outcome::Decided(record) = outcome {
            app.metrics.observe_authorization(&record.response_code);
            tracing::debug!(authorization = %record.id, response_code = %record.response_code, rule = %record.rule, "authorization decided");
        }
    }
}

/// Decides one job in a transaction of its own (the sandbox, 0200s, and batches that conflicted); a 0200's approval
/// is settled in the same transaction. A repeat that lost the race to its original comes back as
/// [`Outcome::Duplicate`] with the original's record.
pub async fn decide_alone(app: &App, job: Job, settlement: Settlement) -> Result<Outcome, AuthorizeError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let outcome = match decide_in(app, &mut tx, std::slice::from_ref(&job), now, None).await {
        Ok(mut outcomes) => outcomes.pop().ok_or_else(|| AuthorizeError::Card("no outcome for the job".to_owned()))?,
        // Another request with the same network key was written after the snapshot was read.
        Err(AuthorizeError::Store(StoreError::Conflict)) if job.network_key().is_some() => {
            drop(tx);
            return original(app, &job).await;
        }
        Err(error) => return Err(error),
    };
    if let (Outcome::Decided(record), Settlement::Immediate) = (&outcome, settlement)
        && record.status == AuthorizationStatus::Approved
    {
        settle(app, &mut tx, record, now).await?;
    }
    ghostcard_store::commit(tx).await?;
    observe(app, std::slice::from_ref(&outcome));
    Ok(outcome)
}

/// The stored original of a job whose network key another request took.
async fn original(app: &App, job: &Job) -> Result<Outcome, AuthorizeError> {
    let key = job.network_key().ok_or_else(|| AuthorizeError::Card("a duplicate without a network key".to_owned()))?;
    let mut tx = app.store.read().await?;
    match authorizations::find_by_network_key(&mut tx, &key).await? {
        Some(original) => Ok(Outcome::Duplicate(original)),
        None => Err(AuthorizeError::Card("a duplicate without an original".to_owned())),
    }
}

/// A 0200's approval: the purchase is captured at once, a refund moved at once.
async fn settle(
    app: &App,
    tx: &mut ghostcard_store::Tx,
    record: &authorizations::AuthorizationRecord,
    now: DateTime<Utc>,
) -> Result<(), AuthorizeError> {
    let Some(card_id) = &record.card_id else { return Ok(()) };
    let currency = ghostcard_domain::money::Currency::from_code(&record.currency)
        .map_err(|_| AuthorizeError::Card(format!("authorization {} currency", record.id)))?;
    let amount = Money::new(record.amount, currency);
    let record_id = format!("financial:{}", record.id);
    if record.kind == AuthorizationKind::Refund {
        lifecycle::merchant_refund(app, tx, card_id, amount, &record_id, now).await?;
    } else if amount.is_positive() {
        lifecycle::capture(app, tx, &record.id, amount, &record_id, now).await?;
    }
    Ok(())
}

/// What the engine needs to know about a job: its id and authorization code if approved, the card its number
/// resolved to, and its CVV2 check.
fn submission(app: &App, loaded: &Loaded, job: &Job, now: DateTime<Utc>) -> Result<Submission, AuthorizeError> {
    let card = loaded.card_by_hash(&job.number_hash);
    let (id, auth_code) = match &job.assigned {
        Some((id, code)) => (id.clone(), code.clone()),
        None => (new_id("auth", now, &mut rand::rng()), authorization_code()),
    };
    Ok(Submission {
        id,
        auth_code,
        endpoint: job.endpoint.clone(),
        request: job.request.clone(),
        descriptors: job.descriptors.clone(),
        card_id: card.map(|(id, _, _)| id.to_owned()),
        cvv: match card {
            Some((_, entry, versions)) => check_cvv(app, &entry.card, versions.cvk, job)?,
            None => CvvCheck::Absent,
        },
    })
}

/// The CVV2 check of a request for a card: recomputed from the number with the card's CVK.
fn check_cvv(app: &App, card: &Card, cvk_version: i64, job: &Job) -> Result<CvvCheck, AuthorizeError> {
    let received = match &job.cvv {
        CvvInput::Absent => return Ok(CvvCheck::Absent),
        CvvInput::AssumeCorrect => return Ok(CvvCheck::Match),
        CvvInput::Received(received) => received,
    };
    // A CVV2 arrives only with the number the network sent: checked without it, it would be a guess.
    let number =
        job.number.as_ref().ok_or_else(|| AuthorizeError::Card("a CVV2 without its card number".to_owned()))?;
    let cvk = app.vault.cvk(cvk_version).map_err(|error| AuthorizeError::Card(error.to_string()))?;
    Ok(if cvk.verify_cvv2(number, card.expiry(), received) { CvvCheck::Match } else { CvvCheck::Mismatch })
}

/// Six upper-case alphanumerics (field 38).
fn authorization_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..6).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}
