//! The batching authorizer: network authorizations are decided and committed together (group commit).
//!
//! Connection tasks submit jobs to a bounded queue (a full queue is backpressure). One authorizer per process takes up
//! to `authorization_batch_max` jobs, or what arrives within `authorization_batch_wait_us` of the first, decides them
//! as one batch through the one engine ([`crate::authorize::decide_in`]: a snapshot loaded with a few multi-row
//! queries, every job decided in order against it, everything written with multi-row statements), commits, and only
//! once the commit is durable answers (on SQLite the commit does not wait for the disk: a thread of its own flushes
//! the log and then answers, while the next batch is decided). If another process changed a row the batch relied on
//! (PostgreSQL), the batch is rolled back and its jobs are decided one at a time, through the same engine.

use std::sync::Arc;
use std::time::Duration;

use ghostcard_store::StoreError;
use ghostcard_store::group_commit::GroupCommit;
use tokio::sync::{mpsc, oneshot};

use crate::App;
use crate::authorize::{AuthorizeError, Job, Outcome, Settlement, decide_alone, decide_in, observe};

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
    /// answers wake a thousand of them just as the next batch begins (docs/performance-log, session 4).
    pub fn spawn(app: Arc<App>) -> std::io::Result<Authorizer> {
        let (queue, jobs) = mpsc::channel(app.config.authorization_queue_capacity.max(1));
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        let mut loops = Vec::new();
        for _ in 0..batches_in_flight(&app) {
            let metrics = app.clone();
            let group = GroupCommit::new(app.store.clone(), move |flush| metrics.metrics.observe_log_flush(flush))?;
            loops.push(run(app.clone(), jobs.clone(), group));
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("authorizer".to_owned()).spawn(move || {
            runtime.block_on(async {
                // A batch loop that panicked broke an invariant (an assertion, an overflow): stop, do not carry on
                // with one loop fewer.
                let loops: Vec<_> = loops
                    .into_iter()
                    .map(|batch_loop| {
                        tokio::spawn(async move {
                            if let Err(error) = tokio::spawn(batch_loop).await
                                && error.is_panic()
                            {
                                crate::invariant::broken("an authorization batch loop panicked");
                            }
                        })
                    })
                    .collect();
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
/// at once (docs/performance-log, sessions 6 and 7).
fn batches_in_flight(app: &App) -> usize {
    match app.store.dialect() {
        ghostcard_store::Dialect::Postgres => app.config.authorization_batches_in_flight.max(1),
        ghostcard_store::Dialect::Sqlite => 1,
    }
}

async fn run(app: Arc<App>, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<(Job, Reply)>>>, mut group: GroupCommit) {
    let max = app.config.authorization_batch_max.max(1);
    let wait = Duration::from_micros(app.config.authorization_batch_wait_us);
    loop {
        let batch = {
            let mut queue = jobs.lock().await;
            group.between_batches(queue.is_empty());
            gather(&mut queue, max, wait).await
        };
        let Some(batch) = batch else { return };
        let (work, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let decided = decide_batch(&app, &work, &mut group).await;
        app.metrics.observe_batch_duration(started.elapsed());
        let outcomes = match decided {
            Ok(outcomes) => {
                // Durable only once the group commit says so.
                group.when_durable(move |durable| match durable {
                    Ok(()) => answer(replies, outcomes.into_iter().map(Ok)),
                    Err(error) => answer(replies, std::iter::repeat_n(Err(error), outcomes.len())),
                });
                continue;
            }
            Err(BatchError::Retry(reason)) => {
                tracing::info!(%reason, jobs = work.len(), "batch conflicted with another writer; deciding its jobs one at a time");
                // Each job begins a transaction of its own, on the write connection.
                group.hand_back();
                one_at_a_time(&app, work).await
            }
            Err(BatchError::Failed(error)) => {
                tracing::error!(%error, jobs = work.len(), "authorization batch failed");
                group.hand_back();
                vec![Err(error); work.len()]
            }
        };
        answer(replies, outcomes.into_iter());
    }
}

fn answer(replies: Vec<Reply>, outcomes: impl Iterator<Item = Result<Outcome, String>>) {
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
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

/// The fallback: each job in its own transaction, through the same engine.
async fn one_at_a_time(app: &App, jobs: Vec<Job>) -> Vec<Result<Outcome, String>> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(decide_alone(app, job, Settlement::HoldOnly).await.map_err(|error| error.to_string()));
    }
    outcomes
}

/// Decides and commits the batch in one transaction of the group commit.
async fn decide_batch(app: &App, jobs: &[Job], group: &mut GroupCommit) -> Result<Vec<Outcome>, BatchError> {
    let now = app.clock.now();
    let mut batch = group.begin().await?;
    let (connection, begin) = batch.connection();
    let outcomes = match decide_in(app, connection, jobs, now, begin.as_deref()).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            batch.rollback().await;
            return Err(error.into());
        }
    };
    let committing = std::time::Instant::now();
    batch.commit().await?;
    app.metrics.observe_batch(jobs.len(), committing.elapsed());
    observe(app, &outcomes);
    Ok(outcomes)
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
