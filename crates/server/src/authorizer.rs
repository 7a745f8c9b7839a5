//! The batching authorizer: network authorizations are decided and committed together (group commit).
//!
//! Connection tasks submit jobs to a bounded queue (a full queue is backpressure). One authorizer per process takes up
//! to `authorization_batch_max` jobs, or what arrives within `authorization_batch_wait_us` of the first, and for the
//! whole batch: loads every card, duplicate key, earlier reversal and cardholder standing with a few multi-row queries,
//! sent together after the cards ([`Reads`]); decides each job **in order** against the batch's in-memory state (two
//! requests for one card see each other, so the result is the one-at-a-time result); writes holds, authorizations, card
//! changes, transitions and events with multi-row statements, sent together ([`Writes`]); commits; and only once the
//! commit is durable answers (on SQLite the commit does not wait for the disk: a thread of its own flushes the log
//! and then answers, while the next batch is decided). On PostgreSQL the batch's card rows are locked in id order
//! and every card update is version-checked; if another process got in between, the batch is rolled back and its
//! jobs are processed one at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ghostcard_domain::card::{Card, CardEvent, CardStatus, Transition};
use ghostcard_domain::decision::{AuthorizationKind, CardholderStanding, Decision, DecisionInput, decide};
use ghostcard_domain::fraud::FraudAction;
use ghostcard_domain::ledger::{AccountId, AccountKind};
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::{Conn, HeldWriter, Reads, StoreError, Tx, Writes, cardholders, ledger, plans, reversals};
use tokio::sync::{mpsc, oneshot};

use crate::App;
use crate::authorize::{
    AuthorizeError, CardLookup, CvvInput, Descriptors, Settlement, apply_approval, authorize, check_cvv, new_record,
    reversed_before_arrival,
};

/// One network authorization to decide.
#[derive(Debug, Clone)]
pub struct Job {
    /// `Number` or `Unknown` (the network always names cards by number).
    pub lookup: CardLookup,
    pub number_hash: Vec<u8>,
    pub request: ghostcard_domain::decision::AuthorizationRequest,
    pub cvv: CvvInput,
    pub descriptors: Descriptors,
}

/// What became of a job.
#[derive(Debug, Clone)]
pub enum Outcome {
    Decided(AuthorizationRecord, Decision),
    /// Its network key was recorded before (possibly earlier in the same batch): here is that record.
    Duplicate(AuthorizationRecord),
}

type Reply = oneshot::Sender<Result<Outcome, String>>;

/// The handle connection tasks submit jobs through.
#[derive(Debug, Clone)]
pub struct Authorizer {
    queue: mpsc::Sender<(Job, Reply)>,
}

impl Authorizer {
    /// Starts the authorizer for `app` on a thread of its own, which ends when every handle is dropped.
    ///
    /// A thread and runtime of its own, because a batch awaits the database a dozen times and, on the server's
    /// runtime, each of those wake-ups queued behind the tasks of the requests in flight: the previous batch's
    /// answers wake a thousand of them just as the next batch begins (its `BEGIN` alone waited 9 to 18 ms,
    /// BENCHMARKS.md).
    pub fn spawn(app: Arc<App>) -> std::io::Result<Authorizer> {
        let (queue, jobs) = mpsc::channel(app.config.authorization_queue_capacity.max(1));
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        let durable = if app.store.defers_sync() { Some(spawn_log_sync(app.clone())?) } else { None };
        let loops: Vec<_> =
            (0..batches_in_flight(&app)).map(|_| run(app.clone(), jobs.clone(), durable.clone())).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("authorizer".to_owned()).spawn(move || {
            runtime.block_on(async {
                let loops: Vec<_> = loops.into_iter().map(tokio::spawn).collect();
                for running in loops {
                    let _ = running.await;
                }
            });
        })?;
        Ok(Authorizer { queue })
    }

    /// Submits a job and waits for its durable outcome. An error is a reason to answer `96`.
    pub async fn submit(&self, job: Job) -> Result<Outcome, String> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.map_err(|_| "the authorizer stopped".to_owned())?;
        answer.await.map_err(|_| "the authorizer dropped the request".to_owned())?
    }
}

/// Batches decided at once (PostgreSQL; SQLite has one writer at a time). Batches that share a cardholder take
/// turns (`cards::lock_cardholders_of`), so more than one pays only when few cardholders have several cards in use
/// at once (measured in BENCHMARKS.md).
fn batches_in_flight(app: &App) -> usize {
    match app.store.dialect() {
        ghostcard_store::Dialect::Postgres => app.config.authorization_batches_in_flight.max(1),
        ghostcard_store::Dialect::Sqlite => 1,
    }
}

/// Answers waiting for the write-ahead log to reach the disk.
type Answers = Vec<(Reply, Result<Outcome, String>)>;

/// SQLite: the thread that makes batches durable and then answers them (`Store::begin_deferred`). The batch
/// thread hands over a committed batch's answers and goes on to the next batch while the disk writes; one flush
/// covers every batch committed before it began. Ends when the batch loops end.
fn spawn_log_sync(app: Arc<App>) -> std::io::Result<std::sync::mpsc::Sender<Answers>> {
    let (sender, receiver) = std::sync::mpsc::channel::<Answers>();
    std::thread::Builder::new().name("log-sync".to_owned()).spawn(move || {
        while let Ok(first) = receiver.recv() {
            let mut waiting = vec![first];
            waiting.extend(receiver.try_iter());
            answer_when_durable(&app, waiting.into_iter().flatten());
        }
    })?;
    Ok(sender)
}

/// Flushes the log, then answers; if the flush failed, the decisions may not survive a crash, so every answer is
/// an error (`96`). The flush's duration goes to the metrics: the answers waited for all of it.
fn answer_when_durable(app: &App, answers: impl Iterator<Item = (Reply, Result<Outcome, String>)>) {
    let flushing = std::time::Instant::now();
    let synced = app.store.sync_log();
    app.metrics.observe_log_flush(flushing.elapsed());
    if let Err(error) = &synced {
        tracing::error!(%error, "flushing the SQLite write-ahead log failed; answering 96");
    }
    for (reply, outcome) in answers {
        let outcome = match &synced {
            Ok(()) => outcome,
            Err(error) => Err(format!("flushing the write-ahead log: {error}")),
        };
        let _ = reply.send(outcome);
    }
}

async fn run(
    app: Arc<App>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<(Job, Reply)>>>,
    durable: Option<std::sync::mpsc::Sender<Answers>>,
) {
    let max = app.config.authorization_batch_max.max(1);
    let wait = Duration::from_micros(app.config.authorization_batch_wait_us);
    let mut writer = Writer::default();
    loop {
        let batch = {
            let mut queue = jobs.lock().await;
            writer.hand_back_unless_busy(queue.is_empty());
            gather(&mut queue, max, wait).await
        };
        let Some(batch) = batch else { return };
        let (work, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let decided = decide_batch(&app, &work, &mut writer).await;
        app.metrics.observe_batch_duration(started.elapsed());
        // A batch committed with `begin_deferred` is durable only after the next flush of the log.
        let deferred = decided.is_ok();
        let outcomes = match decided {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(BatchError::Retry(reason)) => {
                tracing::info!(%reason, jobs = work.len(), "batch conflicted with another writer; deciding its jobs one at a time");
                // Each job begins a transaction of its own, on the write connection.
                writer.hand_back();
                one_at_a_time(&app, work).await
            }
            Err(BatchError::Failed(error)) => {
                tracing::error!(%error, jobs = work.len(), "authorization batch failed");
                writer.hand_back();
                vec![Err(error); work.len()]
            }
        };
        let answers: Answers = replies.into_iter().zip(outcomes).collect();
        match &durable {
            Some(durable) if deferred => {
                if let Err(std::sync::mpsc::SendError(answers)) = durable.send(answers) {
                    answer_when_durable(&app, answers.into_iter());
                }
            }
            _ => {
                for (reply, outcome) in answers {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

/// SQLite: the write connection, held across batches while they come one after another ([`Store::hold_writer`]):
/// handing it back after every batch cost a round trip to the driver's thread that the next batch waited for.
/// It goes back when no job is waiting, and at least every [`WRITER_TURN`], so that other writers (the API, the
/// jobs) wait at most that long and a batch.
///
/// [`Store::hold_writer`]: ghostcard_store::Store::hold_writer
#[derive(Default)]
struct Writer {
    held: Option<Held>,
}

struct Held {
    connection: HeldWriter,
    since: std::time::Instant,
    /// A transaction may be open on it (between its `BEGIN` and the end of its `COMMIT` or `ROLLBACK`).
    open: bool,
}

/// How long the authorizer keeps the SQLite write connection from other writers at most.
const WRITER_TURN: Duration = Duration::from_millis(50);

impl Writer {
    /// The held connection, taken first if need be; `None` on PostgreSQL.
    async fn connection(&mut self, app: &App) -> Result<Option<&mut Held>, StoreError> {
        if self.held.is_none() {
            self.held = app.store.hold_writer().await?.map(|connection| Held {
                connection,
                since: std::time::Instant::now(),
                open: false,
            });
        }
        Ok(self.held.as_mut())
    }

    /// Hands the connection back if no job is waiting or its turn is over.
    fn hand_back_unless_busy(&mut self, idle: bool) {
        if idle || self.held.as_ref().is_some_and(|held| held.since.elapsed() >= WRITER_TURN) {
            self.hand_back();
        }
    }

    fn hand_back(&mut self) {
        if let Some(mut held) = self.held.take()
            && held.open
        {
            // Back in the pool with a transaction open, the next writer's `BEGIN` would fail; closed, the
            // connection's transaction is rolled back (the pool opens a new one).
            held.connection.close_on_drop();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.hand_back();
    }
}

/// The next batch: the first job to come, then up to `max` in all of those waiting or arriving within `wait` of it.
/// `None` when every sender is gone.
async fn gather<T>(jobs: &mut mpsc::Receiver<T>, max: usize, wait: Duration) -> Option<Vec<T>> {
    let first = jobs.recv().await?;
    let mut batch = vec![first];
    let gathering = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            // No wait configured: the batch is what was waiting. (A timeout already due would still wait for the
            // timer's next tick, up to a millisecond: tokio rounds deadlines up to whole milliseconds.)
            Err(mpsc::error::TryRecvError::Empty) if wait.is_zero() => break,
            Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(gathering, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                _ => break,
            },
        }
    }
    Some(batch)
}

#[derive(Debug)]
enum BatchError {
    /// Another writer changed a row the batch relied on: roll back and go one at a time.
    Retry(String),
    Failed(String),
}

impl From<StoreError> for BatchError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict | StoreError::Stale => BatchError::Retry(error.to_string()),
            other => BatchError::Failed(other.to_string()),
        }
    }
}

impl From<AuthorizeError> for BatchError {
    fn from(error: AuthorizeError) -> Self {
        match error {
            AuthorizeError::Store(error) => BatchError::from(error),
            other => BatchError::Failed(other.to_string()),
        }
    }
}

/// The fallback: each job in its own transaction, through the one-at-a-time path.
async fn one_at_a_time(app: &App, jobs: Vec<Job>) -> Vec<Result<Outcome, String>> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(decide_alone(app, job, Settlement::HoldOnly).await);
    }
    outcomes
}

/// Decides one job in its own transaction (the path of 0200s and of batches that conflicted). A repeat that lost
/// the race to its original comes back as [`Outcome::Duplicate`] with the original's record.
pub async fn decide_alone(app: &App, job: Job, settlement: Settlement) -> Result<Outcome, String> {
    let key = network_key(&job);
    match authorize(app, job.lookup, job.request, job.cvv, job.descriptors, settlement).await {
        Ok((record, decision)) => Ok(Outcome::Decided(record, decision)),
        Err(AuthorizeError::Duplicate) => {
            let (acquirer, stan, transmission) = key.ok_or("duplicate without a network key")?;
            let mut tx = app.store.read().await.map_err(|error| error.to_string())?;
            match authorizations::find_by_network_key(&mut tx, &acquirer, &stan, &transmission).await {
                Ok(Some(original)) => Ok(Outcome::Duplicate(original)),
                Ok(None) => Err("duplicate without an original".to_owned()),
                Err(error) => Err(error.to_string()),
            }
        }
        Err(error) => Err(error.to_string()),
    }
}

type Key = (String, String, String);

fn network_key(job: &Job) -> Option<Key> {
    Some((
        job.request.merchant.acquirer_id.clone(),
        job.descriptors.stan.clone()?,
        job.descriptors.transmission_time.clone()?,
    ))
}

/// A card of the batch, as the batch has changed it so far.
struct BatchCard {
    record: CardRecord,
    card: Card,
    changed: bool,
}

/// Where a decided job's hold goes: its authorization's index in the batch, the card, the amount.
struct PendingHold {
    authorization: usize,
    card_id: String,
    amount: ghostcard_domain::money::Money,
}

async fn decide_batch(app: &App, jobs: &[Job], writer: &mut Writer) -> Result<Vec<Outcome>, BatchError> {
    let outcomes = match writer.connection(app).await? {
        Some(held) => decide_on_held(app, held, jobs).await?,
        None => decide_and_commit(app, app.store.begin_deferred().await?, jobs).await?,
    };
    for outcome in &outcomes {
        if let Outcome::Decided(record, decision) = outcome {
            app.metrics.observe_authorization(decision.response_code);
            tracing::debug!(authorization = %record.id, response_code = decision.response_code, rule = %decision.rule, "authorization decided");
        }
    }
    Ok(outcomes)
}

/// PostgreSQL: the batch in a transaction of its own.
async fn decide_and_commit(app: &App, mut tx: Tx, jobs: &[Job]) -> Result<Vec<Outcome>, BatchError> {
    let now = app.clock.now();
    let outcomes = decide_in(app, &mut tx, jobs, now, None).await?;
    let committing = std::time::Instant::now();
    ghostcard_store::commit(tx).await?;
    committed(app, jobs, committing);
    Ok(outcomes)
}

/// SQLite, on the held write connection: the transaction's `BEGIN` goes to the database with the batch's first
/// read (one round trip less), and its `COMMIT` or `ROLLBACK` is sent by hand.
async fn decide_on_held(app: &App, held: &mut Held, jobs: &[Job]) -> Result<Vec<Outcome>, BatchError> {
    let now = app.clock.now();
    let begin = app.store.deferred_begin();
    held.open = true;
    let outcomes = match decide_in(app, &mut held.connection, jobs, now, Some(&begin)).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // If even the rollback fails, the connection is closed when it is handed back.
            if ghostcard_store::rollback_on(&mut held.connection).await.is_ok() {
                held.open = false;
            }
            return Err(error);
        }
    };
    let committing = std::time::Instant::now();
    ghostcard_store::commit_on(&mut held.connection).await?;
    held.open = false;
    committed(app, jobs, committing);
    Ok(outcomes)
}

fn committed(app: &App, jobs: &[Job], committing: std::time::Instant) {
    app.store.wrote_much();
    app.metrics.observe_batch(jobs.len(), committing.elapsed());
}

/// Decides and writes the batch in the transaction on `tx`; `begin`: the statements that begin it, to send with the
/// first read (SQLite, [`decide_on_held`]).
async fn decide_in(
    app: &App,
    tx: &mut Conn,
    jobs: &[Job],
    now: DateTime<Utc>,
    begin: Option<&str>,
) -> Result<Vec<Outcome>, BatchError> {
    let fraud = &app.rules.fraud;
    let loading = std::time::Instant::now();
    let window = |limits: &[ghostcard_domain::fraud::VelocityLimit]| {
        chrono::Duration::seconds(limits.iter().map(|limit| limit.window_seconds).max().unwrap_or(0))
    };

    // Everything the batch needs, in a handful of queries.
    let mut hashes: Vec<Vec<u8>> = jobs
        .iter()
        .filter(|job| matches!(job.lookup, CardLookup::Number(_)))
        .map(|job| job.number_hash.clone())
        .collect();
    hashes.sort();
    hashes.dedup();
    let mut cards: HashMap<Vec<u8>, BatchCard> = HashMap::new();
    cards::lock_cardholders_of(tx, &hashes).await?;
    for record in cards::find_by_number_hashes(tx, &hashes, begin).await? {
        let card = record.to_card()?;
        cards.insert(record.number_hash.clone(), BatchCard { record, card, changed: false });
    }
    // The rest in one round trip on SQLite (`Reads`).
    let keys: Vec<Key> = jobs.iter().filter_map(network_key).collect();
    let mut holders: Vec<String> = cards.values().map(|entry| entry.record.cardholder_id.clone()).collect();
    holders.sort();
    holders.dedup();
    let mut reads = Reads::new(tx);
    let originals = authorizations::add_find_by_network_keys(&mut reads, &keys);
    let reversed_first = reversals::add_reversed_before_arrival_many(&mut reads, &keys);
    let standings = cardholders::add_statuses(&mut reads, &holders);
    let active_plans = plans::add_active_for_cardholders(&mut reads, &holders);
    let approval_times =
        authorizations::add_approval_times_for(&mut reads, &holders, now - window(&fraud.authorization));
    // The holds' ids are reserved from it once decided: nothing below writes a transfer before the holds.
    let last_transfer = ledger::add_last_id(&mut reads);
    let found = reads.run(tx).await?;
    let mut recorded: HashMap<Key, AuthorizationRecord> = HashMap::new();
    for original in authorizations::find_by_network_keys_in(&found, &originals)? {
        if let (Some(stan), Some(transmission)) = (original.stan.clone(), original.transmission_time.clone()) {
            recorded.insert((original.acquirer_id.clone(), stan, transmission), original);
        }
    }
    let reversed: HashSet<Key> = reversals::reversed_before_arrival_in(&found, &reversed_first)?.into_iter().collect();
    let statuses = cardholders::statuses_in(&found, &standings)?;
    let today = app.today(now);
    let overdue: HashSet<String> = plans::active_for_cardholders_in(&found, &active_plans)?
        .into_iter()
        .filter(|plan| plan.plan.has_arrears(today))
        .map(|plan| plan.cardholder_id)
        .collect();
    let mut approvals: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for (holder, at) in authorizations::approval_times_in(&found, &approval_times)? {
        approvals.entry(holder).or_default().push(at);
    }

    let loaded = loading.elapsed();

    // Decide in order, each decision seeing the ones before it.
    let deciding = std::time::Instant::now();
    let mut records: Vec<AuthorizationRecord> = Vec::with_capacity(jobs.len());
    let mut decisions: Vec<Option<Decision>> = Vec::with_capacity(jobs.len());
    let mut in_batch: HashMap<Key, usize> = HashMap::new();
    let mut holds: Vec<PendingHold> = Vec::new();
    let mut transitions: Vec<(String, Transition)> = Vec::new();
    let mut batch_declines: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    let mut batch_cvv_failures: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    let mut outcomes: Vec<Result<usize, AuthorizationRecord>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let key = network_key(job);
        if let Some(key) = &key {
            if let Some(original) = recorded.get(key) {
                outcomes.push(Err(original.clone()));
                continue;
            }
            if let Some(&index) = in_batch.get(key) {
                outcomes.push(Err(records[index].clone()));
                continue;
            }
        }
        let number = match &job.lookup {
            CardLookup::Number(number) => Some(number),
            _ => None,
        };
        let entry = number.and_then(|_| cards.get_mut(&job.number_hash));
        let decision = match &entry {
            _ if key.as_ref().is_some_and(|key| reversed.contains(key)) => reversed_before_arrival(),
            Some(entry) => {
                let holder = &entry.record.cardholder_id;
                let cvv = check_cvv(app, &entry.record, &entry.card, number, &job.cvv)?;
                decide(&DecisionInput {
                    request: &job.request,
                    card: Some(&entry.card),
                    cvv,
                    standing: CardholderStanding {
                        restricted: statuses.get(holder).is_some_and(|status| status == "restricted"),
                        overdue: overdue.contains(holder),
                    },
                    cardholder_approvals: approvals.get(holder).map_or(&[], Vec::as_slice),
                    rules: &app.rules,
                    now,
                })
            }
            None => decide(&DecisionInput {
                request: &job.request,
                card: None,
                cvv: ghostcard_domain::decision::CvvCheck::Absent,
                standing: CardholderStanding::default(),
                cardholder_approvals: &[],
                rules: &app.rules,
                now,
            }),
        };
        let index = records.len();
        let mut record = new_record(
            &decision,
            &job.request,
            &job.descriptors,
            entry.as_ref().map(|entry| &entry.record),
            Some(job.number_hash.clone()),
            now,
        );
        let mut actions = Vec::new();
        if let Some(entry) = entry {
            if decision.is_approved() {
                let (hold, transition) =
                    apply_approval(&mut entry.card, &mut entry.record, &decision, &job.request, &job.descriptors, now)?;
                entry.changed = true;
                if let Some(amount) = hold {
                    record.held = amount.minor();
                    holds.push(PendingHold { authorization: index, card_id: entry.record.id.clone(), amount });
                }
                transitions.extend(transition.map(|transition| (entry.record.id.clone(), transition)));
                if decision.response_code == "00"
                    && matches!(
                        decision.kind,
                        AuthorizationKind::Purchase | AuthorizationKind::Incremental | AuthorizationKind::Advice
                    )
                {
                    approvals.entry(entry.record.cardholder_id.clone()).or_default().push(now);
                }
            } else if decision.decline_reason().is_some() && decision.rule != "reversed_before_arrival" {
                let cvv_failed = record.decline_reason.as_deref() == Some("cvv_mismatch");
                let card_id = entry.record.id.clone();
                let holder = entry.record.cardholder_id.clone();
                // Earlier declines count: those stored and those earlier in this batch.
                let mut declines =
                    authorizations::decline_times(tx, &card_id, now - window(&fraud.card_declines)).await?;
                declines.extend(batch_declines.get(&card_id).cloned().unwrap_or_default());
                let mut failures =
                    authorizations::cvv_failure_times(tx, &holder, now - window(&fraud.cvv_failures)).await?;
                failures.extend(batch_cvv_failures.get(&holder).cloned().unwrap_or_default());
                actions = fraud.after_decline(cvv_failed, &failures, &declines, now);
                batch_declines.entry(card_id).or_default().push(now);
                if cvv_failed {
                    batch_cvv_failures.entry(holder.clone()).or_default().push(now);
                }
            }
        }
        for action in actions {
            let (holder, card_id) =
                (record.cardholder_id.clone().unwrap_or_default(), record.card_id.clone().unwrap_or_default());
            match action {
                FraudAction::FreezeCard { rule } => {
                    if let Some(entry) = cards.get_mut(&job.number_hash)
                        && let Some(transition) = freeze(&mut entry.card, &mut entry.record, &rule, now)?
                    {
                        entry.changed = true;
                        transitions.push((card_id, transition));
                    }
                }
                FraudAction::FreezeCardholderCards { rule } => {
                    freeze_cardholder(tx, &mut cards, &mut transitions, &holder, &rule, now).await?;
                }
            }
        }
        if let Some(key) = key {
            in_batch.insert(key, index);
        }
        records.push(record);
        decisions.push(Some(decision));
        outcomes.push(Ok(index));
    }

    let decided = deciding.elapsed();

    // Write it all.
    let writing = std::time::Instant::now();
    let ids = ledger::reserve_ids_after(tx, &found, &last_transfer, holds.len()).await?;
    let mut hold_rows = Vec::with_capacity(holds.len());
    for (hold, id) in holds.iter().zip(ids) {
        records[hold.authorization].hold_transfer_id = Some(id.0 as i64);
        hold_rows.push((
            id,
            AccountId::card(AccountKind::CardAvailable, &hold.card_id),
            AccountId::card(AccountKind::AuthorizationHolds, &hold.card_id),
            hold.amount,
        ));
    }
    // One round trip on SQLite (`Writes`).
    let mut writes = Writes::new(tx);
    ledger::add_holds(&mut writes, &hold_rows, now)?;
    authorizations::add_many(&mut writes, &records);
    let changed: Vec<CardRecord> =
        cards.into_values().filter(|entry| entry.changed).map(|entry| entry.record).collect();
    cards::add_updates(&mut writes, &changed);
    cards::add_transitions(&mut writes, &transitions);
    // The batch's events: one per authorization, and the cards it used or froze.
    let mut batch_events: Vec<ghostcard_store::events::Event> =
        records.iter().map(|record| crate::events::authorization(record, now)).collect();
    for (card_id, transition) in &transitions {
        let kind = match transition.to {
            CardStatus::Used => "card.used",
            CardStatus::Frozen => "fraud.flagged",
            _ => continue,
        };
        batch_events.push(crate::events::thin(kind, card_id, now));
    }
    ghostcard_store::events::add_many(&mut writes, &batch_events);
    writes.run(tx).await?;
    app.metrics.observe_batch_stages(loaded, decided, writing.elapsed());
    // Each decided job owns its record: moved out, not copied (a thousand records of twenty strings each).
    let mut records: Vec<Option<AuthorizationRecord>> = records.into_iter().map(Some).collect();
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(index) => Ok(Outcome::Decided(
                records[index].take().ok_or_else(|| BatchError::Failed("a record decided twice".to_owned()))?,
                decisions[index].take().unwrap_or_else(reversed_before_arrival),
            )),
            Err(original) => Ok(Outcome::Duplicate(original)),
        })
        .collect()
}

fn freeze(
    card: &mut Card,
    record: &mut CardRecord,
    rule: &str,
    now: DateTime<Utc>,
) -> Result<Option<Transition>, BatchError> {
    if !matches!(card.status(), CardStatus::Active | CardStatus::Used) {
        return Ok(None);
    }
    let transition = card
        .apply(CardEvent::Freeze { rule: rule.to_owned() }, now)
        .map_err(|error| BatchError::Failed(error.to_string()))?;
    record.set_card(card);
    tracing::warn!(card = %record.id, %rule, "card frozen by a fraud rule");
    Ok(Some(transition))
}

/// Freezes every open card of the cardholder: those in the batch in memory, the others in the database now.
async fn freeze_cardholder(
    tx: &mut Conn,
    cards: &mut HashMap<Vec<u8>, BatchCard>,
    transitions: &mut Vec<(String, Transition)>,
    holder: &str,
    rule: &str,
    now: DateTime<Utc>,
) -> Result<(), BatchError> {
    let in_batch: HashSet<String> = cards
        .values()
        .filter(|entry| entry.record.cardholder_id == holder)
        .map(|entry| entry.record.id.clone())
        .collect();
    for entry in cards.values_mut().filter(|entry| entry.record.cardholder_id == holder) {
        if let Some(transition) = freeze(&mut entry.card, &mut entry.record, rule, now)? {
            entry.changed = true;
            transitions.push((entry.record.id.clone(), transition));
        }
    }
    for card_id in cards::ids_in_states(tx, holder, &["active", "used"]).await? {
        if in_batch.contains(&card_id) {
            continue;
        }
        let Some(mut record) = cards::get_for_update(tx, &card_id).await? else { continue };
        let mut card = record.to_card()?;
        if let Some(transition) = freeze(&mut card, &mut record, rule, now)? {
            cards::update(tx, &mut record).await?;
            cards::record_transition(tx, &card_id, &transition).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn without_a_wait_a_batch_is_what_was_waiting() {
        // The clock is paused and moves only to a timer something waits for: it stays put if nothing waited. It is
        // set off a millisecond boundary, where a timeout due now would wait for the next one.
        tokio::time::advance(Duration::from_micros(300)).await;
        let (sender, mut jobs) = mpsc::channel(8);
        for job in 1..=3 {
            sender.send(job).await.expect("queued");
        }
        let start = tokio::time::Instant::now();
        assert_eq!(gather(&mut jobs, 2, Duration::ZERO).await, Some(vec![1, 2]));
        assert_eq!(gather(&mut jobs, 8, Duration::ZERO).await, Some(vec![3]));
        assert_eq!(tokio::time::Instant::now(), start, "no batch waited for more");

        // With a wait, a batch takes what arrives within it of its first job.
        sender.send(4).await.expect("queued");
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(500)).await;
            sender.send(5).await.expect("queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
            sender.send(6).await.expect("queued");
        });
        assert_eq!(gather(&mut jobs, 8, Duration::from_millis(2)).await, Some(vec![4, 5]));
        assert_eq!(gather(&mut jobs, 8, Duration::ZERO).await, Some(vec![6]));
        later.await.expect("sent");
        assert_eq!(gather(&mut jobs, 8, Duration::ZERO).await, None, "every sender is gone");
    }
}
