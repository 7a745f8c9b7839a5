//! Group commit as one type: the writer that commits batches one after another and answers them once durable.
//!
//! On SQLite a [`GroupCommit`] holds the one write connection across batches while they come one after another
//! (handing it back after every batch cost a round trip to the driver's thread that the next batch waited for),
//! begins each batch's transaction with the batch's first read (one round trip less), commits without waiting for
//! the disk, and flushes the write-ahead log on a thread of its own while the next batch is decided: a batch's
//! answers wait for the flush ([`GroupCommit::when_durable`]), and one flush covers every batch committed before it
//! began. It hands the connection back to the other writers (the API, the jobs) when no batch is waiting and at
//! least every [`WRITER_TURN`]. On PostgreSQL each batch is a transaction of its own from the pool, durable when
//! its commit returns.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Conn, HeldWriter, Result, Store, Tx};

/// How long a group commit keeps the SQLite write connection from other writers at most.
pub const WRITER_TURN: Duration = Duration::from_millis(50);

/// Called once what was committed is durable, with the error if making it durable failed.
type Answer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// The group-commit writer of one batch loop (see the module's documentation).
pub struct GroupCommit {
    store: Store,
    held: Option<Held>,
    /// SQLite with deferred flushes: the thread that flushes the log and then answers.
    flusher: Option<mpsc::Sender<Answer>>,
}

struct Held {
    connection: HeldWriter,
    since: Instant,
    /// A transaction may be open on it (between its `BEGIN` and the end of its `COMMIT` or `ROLLBACK`).
    open: bool,
}

impl GroupCommit {
    /// A group commit on `store`; `on_flush` is told how long each flush of the log took (the answers waited for
    /// all of it). Starts the flushing thread where commits defer their flush; it ends with the group commit.
    pub fn new(store: Store, on_flush: impl Fn(Duration) + Send + 'static) -> std::io::Result<GroupCommit> {
        let flusher = if store.defers_sync() { Some(spawn_flusher(store.clone(), on_flush)?) } else { None };
        Ok(GroupCommit { store, held: None, flusher })
    }

    /// Between batches: hands the write connection back to the other writers when no batch is waiting (`idle`) or
    /// its turn is over.
    pub fn between_batches(&mut self, idle: bool) {
        if idle || self.held.as_ref().is_some_and(|held| held.since.elapsed() >= WRITER_TURN) {
            self.hand_back();
        }
    }

    /// Hands the write connection back to the other writers (before deciding anything in transactions of one's own).
    pub fn hand_back(&mut self) {
        if let Some(mut held) = self.held.take()
            && held.open
        {
            // Back in the pool with a transaction open, the next writer's `BEGIN` would fail; closed, the
            // connection's transaction is rolled back (the pool opens a new one).
            held.connection.close_on_drop();
        }
    }

    /// Begins a batch's transaction. End it with [`Batch::commit`] or [`Batch::rollback`].
    pub async fn begin(&mut self) -> Result<Batch<'_>> {
        if self.held.is_none()
            && let Some(connection) = self.store.hold_writer().await?
        {
            self.held = Some(Held { connection, since: Instant::now(), open: false });
        }
        Ok(match &mut self.held {
            Some(held) => {
                held.open = true;
                Batch { store: &self.store, inner: Inner::Held { held, begin: Some(self.store.deferred_begin()) } }
            }
            None => Batch { store: &self.store, inner: Inner::Own(self.store.begin_deferred().await?) },
        })
    }

    /// Calls `answer` once every batch committed so far is durable: after the next flush of the log where commits
    /// defer it (with the error if the flush failed: the batches may not survive a crash), at once elsewhere.
    pub fn when_durable(&self, answer: impl FnOnce(std::result::Result<(), String>) + Send + 'static) {
        match &self.flusher {
            Some(flusher) => {
                if let Err(mpsc::SendError(answer)) = flusher.send(Box::new(answer)) {
                    answer(flush(&self.store));
                }
            }
            None => answer(Ok(())),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.hand_back();
    }
}

/// The transaction of one batch.
pub struct Batch<'a> {
    store: &'a Store,
    inner: Inner<'a>,
}

enum Inner<'a> {
    /// SQLite: on the held write connection; `begin` until the first read takes it.
    Held {
        held: &'a mut Held,
        begin: Option<String>,
    },
    Own(Tx),
}

impl Batch<'_> {
    /// The connection to run the batch's statements on, and (SQLite, once) the statements that begin the
    /// transaction, to send with the first read ([`crate::batch::load`] takes them).
    pub fn connection(&mut self) -> (&mut Conn, Option<String>) {
        match &mut self.inner {
            Inner::Held { held, begin } => (&mut held.connection, begin.take()),
            Inner::Own(tx) => (&mut **tx, None),
        }
    }

    /// Commits. On SQLite the batch is durable only once [`GroupCommit::when_durable`] says so.
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            Inner::Held { held, .. } => {
                crate::commit_on(&mut held.connection).await?;
                held.open = false;
            }
            Inner::Own(tx) => crate::commit(tx).await?,
        }
        self.store.wrote_much();
        Ok(())
    }

    /// Rolls back. If even that fails on the held connection, it is closed when handed back.
    pub async fn rollback(self) {
        match self.inner {
            Inner::Held { held, .. } => {
                if crate::rollback_on(&mut held.connection).await.is_ok() {
                    held.open = false;
                }
            }
            Inner::Own(tx) => drop(tx),
        }
    }
}

/// The thread that flushes the log and then answers: it takes every answer waiting, flushes once, answers them all.
fn spawn_flusher(store: Store, on_flush: impl Fn(Duration) + Send + 'static) -> std::io::Result<mpsc::Sender<Answer>> {
    let (sender, receiver) = mpsc::channel::<Answer>();
    std::thread::Builder::new().name("log-sync".to_owned()).spawn(move || {
        while let Ok(first) = receiver.recv() {
            let mut waiting = vec![first];
            waiting.extend(receiver.try_iter());
            let flushing = Instant::now();
            let flushed = flush(&store);
            on_flush(flushing.elapsed());
            for answer in waiting {
                answer(flushed.clone());
            }
        }
    })?;
    Ok(sender)
}

fn flush(store: &Store) -> std::result::Result<(), String> {
    store.sync_log().map_err(|error| {
        tracing::error!(%error, "flushing the SQLite write-ahead log failed; the batches waiting for it fail");
        format!("flushing the write-ahead log: {error}")
    })
}
