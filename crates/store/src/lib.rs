//! ghostcard's storage: one interface over SQLite (embedded, the default) and PostgreSQL (production).
//!
//! This crate owns every SQL statement and nothing else: it knows tables, not rules. The server opens a
//! [`Store`], begins a transaction, calls the table modules' functions with it, and commits — so a state change,
//! its ledger transfers, its idempotency record and its audit entry land together or not at all.
//!
//! Both databases run the same SQL through sqlx's `Any` driver; where they differ (DDL types, row locks,
//! `BEGIN IMMEDIATE`) the [`Dialect`] says how. Timestamps are stored as microseconds since the Unix epoch and
//! amounts as integer minor units, both `BIGINT`.

pub mod api_keys;
pub mod audit;
pub mod auth_rules;
pub mod authorizations;
pub mod batch;
pub mod cardholders;
pub mod cards;
pub mod clearings;
pub mod data_keys;
pub mod decision_endpoints;
pub mod events;
pub mod funding_sources;
pub mod group_commit;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
mod migrations;
pub mod operators;
pub mod plans;
pub mod reversals;
pub mod settings;
mod together;
pub mod web_sessions;
pub mod webhooks;

use together::Value;
pub use together::{Found, Pending, Reads, Writes};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor};

pub use migrations::MIGRATIONS;

/// A transaction on either database.
pub type Tx = sqlx::Transaction<'static, Any>;

/// A connection, inside a transaction: what the batch functions take, so that a transaction begun by hand on the
/// connection a [`group_commit::GroupCommit`] holds across batches serves as well as a [`Tx`] (which dereferences to
/// one).
pub type Conn = sqlx::AnyConnection;

/// SQLite: the write connection, held ([`Store::hold_writer`]).
pub(crate) type HeldWriter = sqlx::pool::PoolConnection<Any>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl,
    #[error("the record already exists")]
    Conflict,
    #[error("the record was changed by someone else")]
    Stale,
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("the database schema is newer ({found}) than this ghostcard knows ({known}); upgrade ghostcard")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the database file {path}: {source}")]
    File { path: String, source: std::io::Error },
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`].
    fn from_insert(error: sqlx::Error) -> StoreError {
        match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(error),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database a store talks to, and the SQL that differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// Row locks for read-then-write sequences. SQLite has none: its write transactions begin `IMMEDIATE`, which
    /// takes the single write lock up front, so nothing else can write in between.
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// SQLite `synchronous`: `FULL` (the default) makes an acknowledged write survive power loss.
    pub sqlite_synchronous: String,
    /// How long a SQLite writer waits for the write lock before failing.
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            sqlite_synchronous: "FULL".to_owned(),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection pool to the ghostcard database.
#[derive(Debug, Clone)]
pub struct Store {
    /// Every connection on PostgreSQL; the readers on SQLite.
    pool: AnyPool,
    /// SQLite: the one connection write transactions use.
    writer: Option<AnyPool>,
    /// SQLite: wakes the background checkpointer, if one runs ([`Store::checkpoint_in_background`]).
    checkpoints: Arc<tokio::sync::Notify>,
    /// SQLite: what [`Store::begin`] and [`Store::begin_deferred`] set `synchronous` to.
    synchronous: Synchronous,
    dialect: Dialect,
}

/// SQLite: the durability of commits, and the write-ahead log that [`Store::sync_log`] flushes.
#[derive(Debug, Clone)]
struct Synchronous {
    /// `synchronous` for ordinary write transactions (the configured level).
    level: String,
    /// The write-ahead log's path, when transactions may defer their flush to [`Store::sync_log`]: only when the
    /// configured level is `FULL`, whose promise the explicit flush keeps.
    deferrable: Option<Arc<std::path::PathBuf>>,
    /// Flushes done by [`Store::sync_log`].
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

/// SQLite: the write connection copies the write-ahead log into the database itself (in the committing
/// transaction) only once the log holds this many pages (40 MiB), not after every ~1,000 pages (4 MiB), SQLite's
/// default, which a batch of authorizations passes by itself. Until then a background checkpointer
/// ([`Store::checkpoint_in_background`]) copies what was committed, so the writer's own checkpoint finds little left
/// to copy. The log restarts from its beginning only after the writer's checkpoint: the writer begins its next
/// transaction before the background copy is done.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// SQLite: the page cache of the write connection, in KiB (`cache_size`). It holds what every batch touches (the
/// indexes' inner pages, their last leaves, the hot spots of the network-key indexes: a few MiB); rows read once come
/// from the operating system's cache. It was faster than 64 MiB, the readers' size, in throughput and in p50 at
/// 10,000/s (BENCHMARKS.md; docs/performance-log, session 8). One cost of a larger cache, measured: at the end of
/// every write transaction on a database under 1 GiB, SQLite scans the whole cache's hash table for pages past the
/// database's end (`pcache1TruncateUnsafe`, 5.1% of the server's time at 10,000/s, 1.0% with 8 MiB).
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// SQLite: the page cache of each reader connection, in KiB.
const READER_CACHE_KIB: u32 = 64 * 1024;

/// SQLite: the background checkpointer's least time between two copies of the log. Copying after every batch, as
/// until session 6, the disk took 27,000 write requests a second at 10,000 authorizations a second; about 10,400
/// with this gap (and [`EVERY_BATCH_FROM_PAGES`]).
const CHECKPOINT_GAP: Duration = Duration::from_millis(10);

/// SQLite: from this length of the log the background checkpointer copies after every batch, so that the writer,
/// whose checkpoint at [`WRITER_AUTOCHECKPOINT_PAGES`] restarts the log, finds little left to copy and flush.
const EVERY_BATCH_FROM_PAGES: i64 = 8_000;

/// Makes an SQLite database file readable by its owner only (0600), creating it so when it is new: it holds card
/// numbers (encrypted), hashes and the audit log. SQLite gives the log and its index the database file's permissions.
fn private_database_file(path: &std::path::Path) -> Result<()> {
    let error = |source: std::io::Error| StoreError::File { path: path.display().to_string(), source };
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(error)?;
                tracing::info!(path = %path.display(), "the database file was readable by others; made it private (0600)");
            }
            Ok(_) => {}
            Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(error)?;
            }
            Err(other) => return Err(error(other)),
        }
    }
    Ok(())
}

/// The dialect of a database URL, and the URL to connect with (SQLite files are created when missing).
fn dialect_of(url: &str) -> Result<(Dialect, String)> {
    if url.starts_with("sqlite:") {
        let url = match url.contains("mode=") {
            true => url.to_owned(),
            false => format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' }),
        };
        Ok((Dialect::Sqlite, url))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok((Dialect::Postgres, url.to_owned()))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// A pool's options, with the session settings every new connection gets. SQLite: the write connection
/// checkpoints at its own limit and has a smaller cache than the readers.
fn pool_options(dialect: Dialect, writer: bool, options: &StoreOptions) -> AnyPoolOptions {
    let (autocheckpoint, cache_kib) =
        if writer { (Some(WRITER_AUTOCHECKPOINT_PAGES), WRITER_CACHE_KIB) } else { (None, READER_CACHE_KIB) };
    let synchronous = options.sqlite_synchronous.clone();
    let busy_timeout_ms = options.sqlite_busy_timeout.as_millis();
    AnyPoolOptions::new()
        // A broken connection shows itself on use; a ping before every acquire costs a round trip each time.
        .test_before_acquire(false)
        .after_connect(move |connection, _| {
            let synchronous = synchronous.clone();
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    connection.execute("PRAGMA journal_mode = WAL").await?;
                    connection.execute(format!("PRAGMA synchronous = {synchronous}").as_str()).await?;
                    connection.execute("PRAGMA foreign_keys = ON").await?;
                    connection.execute(format!("PRAGMA busy_timeout = {busy_timeout_ms}").as_str()).await?;
                    connection.execute(format!("PRAGMA cache_size = -{cache_kib}").as_str()).await?;
                    connection.execute("PRAGMA temp_store = MEMORY").await?;
                    if let Some(pages) = autocheckpoint {
                        connection.execute(format!("PRAGMA wal_autocheckpoint = {pages}").as_str()).await?;
                    }
                } else {
                    // The planner's default prices a random page read at 4 sequential ones (spinning disks). On SSD
                    // with the hot tables cached, that made it hash-join a batch's few hundred network keys against
                    // a whole table scan instead of probing the unique index (docs/performance-log, session 3). 1.1
                    // is the usual figure for SSDs.
                    connection.execute("SET random_page_cost = 1.1").await?;
                }
                Ok(())
            })
        })
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, created if missing, or `postgres://…`). Does not migrate.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = dialect_of(url)?;
        if dialect == Dialect::Sqlite {
            let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?.get_filename().to_owned();
            private_database_file(&file)?;
        }
        // Statement logging would print SQL text at INFO; parameters are never logged, but keep it quiet.
        let connect_options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let busy_timeout = options.sqlite_busy_timeout;
        let pool_options = |writer: bool| pool_options(dialect, writer, options);
        let (pool, writer) = match dialect {
            Dialect::Postgres => (
                pool_options(false).max_connections(options.max_connections).connect_with(connect_options).await?,
                None,
            ),
            // SQLite has one writer at a time, so write transactions share one connection: its page cache stays
            // warm from one transaction to the next (a connection that finds the database changed by another drops
            // its whole cache when its next transaction begins), and writers queue for it in order instead of
            // polling in SQLite's busy handler, which sleeps up to 25 ms between tries. Waiting is bounded by the
            // busy timeout, as before.
            Dialect::Sqlite => {
                let writer = pool_options(true)
                    .max_connections(1)
                    .acquire_timeout(busy_timeout)
                    .connect_with(connect_options.clone())
                    .await?;
                let readers = pool_options(false)
                    .max_connections(options.max_connections.min(8))
                    .connect_with(connect_options)
                    .await?;
                (readers, Some(writer))
            }
        };
        let deferrable = match dialect {
            Dialect::Sqlite if options.sqlite_synchronous.eq_ignore_ascii_case("FULL") => {
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?.get_filename().to_owned();
                let mut log = file.into_os_string();
                log.push("-wal");
                Some(Arc::new(std::path::PathBuf::from(log)))
            }
            _ => None,
        };
        let synchronous =
            Synchronous { level: options.sqlite_synchronous.clone(), deferrable, syncs: Arc::new(Default::default()) };
        Ok(Store { pool, writer, checkpoints: Arc::new(tokio::sync::Notify::new()), synchronous, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// SQLite: copies the write-ahead log into the database from a reader connection, until the store is closed;
    /// for a long-running process (`serve`). The writer's commits then seldom stop to do it (docs/performance-log,
    /// session 4). Does nothing on PostgreSQL.
    ///
    /// It copies when [`Store::wrote_much`] says so, but at most once every [`CHECKPOINT_GAP`], and at least every
    /// 100 ms. Each copy ends with a flush of the database file, and a page changed by several batches in the gap is
    /// copied once. Only once the log nears the writer's own limit does it copy after every batch: the writer then
    /// finds about one batch left to copy when it restarts the log (docs/performance-log, session 7).
    pub fn checkpoint_in_background(&self) {
        if self.dialect != Dialect::Sqlite {
            return;
        }
        let (readers, wake) = (self.pool.clone(), self.checkpoints.clone());
        tokio::spawn(async move {
            let mut log_pages = 0;
            while !readers.is_closed() {
                if log_pages < EVERY_BATCH_FROM_PAGES {
                    tokio::time::sleep(CHECKPOINT_GAP).await;
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), wake.notified()).await;
                let copied = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&readers);
                match copied.await {
                    Ok((_, pages, _)) => log_pages = pages,
                    Err(error) => {
                        tracing::warn!(%error, "checkpointing the SQLite write-ahead log failed; the writer will do it");
                    }
                }
            }
        });
    }

    /// A large transaction committed: the background checkpointer, if one runs, copies it into the database soon
    /// ([`Store::checkpoint_in_background`]).
    pub fn wrote_much(&self) {
        self.checkpoints.notify_one();
    }

    /// Applies every migration not yet applied, in order. Safe to run from several processes at once.
    pub async fn migrate(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        migrations::run(self, now).await
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), and its commit
    /// is durable when it returns (the configured `synchronous`).
    pub async fn begin(&self) -> Result<Tx> {
        self.begin_at(&self.synchronous.level).await
    }

    /// A write transaction whose commit may return before it is durable: on SQLite with `synchronous = FULL`
    /// configured, its commit writes the write-ahead log without waiting for the disk (`NORMAL`), and it is durable
    /// once a [`Store::sync_log`] that began after the commit returned has returned. Meanwhile other transactions
    /// may begin and see it; a crash loses it and everything committed after it together, never a part (the log is
    /// replayed up to its first incomplete frame). For group commit: the authorizer answers a batch only after the
    /// flush, and decides the next batch during it. Anywhere else it is [`Store::begin`].
    pub(crate) async fn begin_deferred(&self) -> Result<Tx> {
        match self.synchronous.deferrable {
            Some(_) => self.begin_at("NORMAL").await,
            None => self.begin().await,
        }
    }

    /// SQLite: the write connection, taken from the other writers until it is dropped, so that transactions can
    /// run on it one after another ([`Store::deferred_begin`]) without handing it back between them. Each hand-back
    /// costs a round trip to the driver's thread (sqlx checks a connection it takes back with a query), and the
    /// next transaction waits for it. Whoever holds it must drop it before anything else begins a write transaction,
    /// and soon: every other writer waits; and must not drop it with a transaction open. `None` on PostgreSQL,
    /// which has a connection per transaction.
    pub(crate) async fn hold_writer(&self) -> Result<Option<HeldWriter>> {
        match &self.writer {
            Some(writer) => Ok(Some(writer.acquire().await?)),
            None => Ok(None),
        }
    }

    /// SQLite: the statements that begin a [`Store::begin_deferred`] transaction, for a caller that sends them
    /// itself, together with its first reads (one round trip instead of two: [`cards::find_by_number_hashes`]
    /// takes them), and ends the transaction with [`commit_on`] or [`rollback_on`].
    pub(crate) fn deferred_begin(&self) -> String {
        let level = if self.synchronous.deferrable.is_some() { "NORMAL" } else { &self.synchronous.level };
        format!("PRAGMA synchronous = {level}; BEGIN IMMEDIATE")
    }

    async fn begin_at(&self, level: &str) -> Result<Tx> {
        Ok(match self.dialect {
            // `synchronous` cannot change inside a transaction; set in the same call as `BEGIN`, every transaction
            // has its own level whatever the one before it on this connection had.
            Dialect::Sqlite => {
                let begin = format!("PRAGMA synchronous = {level}; BEGIN IMMEDIATE");
                self.writer.as_ref().unwrap_or(&self.pool).begin_with(begin).await?
            }
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// Makes every transaction of [`Store::begin_deferred`] committed so far durable: flushes SQLite's write-ahead
    /// log to the disk (`fdatasync`). Blocks; nothing to do on PostgreSQL or where transactions never defer.
    pub(crate) fn sync_log(&self) -> std::io::Result<()> {
        let Some(log) = &self.synchronous.deferrable else { return Ok(()) };
        // Opened for writing (nothing is written): some systems flush only files open for writing.
        match std::fs::OpenOptions::new().write(true).open(log.as_path()) {
            Ok(file) => file.sync_data()?,
            // No log: everything is in the database file, which a checkpoint flushed before removing the log.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        self.synchronous.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// How many times [`Store::sync_log`] flushed the log.
    pub fn log_syncs(&self) -> u64 {
        self.synchronous.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether transactions of [`Store::begin_deferred`] need a [`Store::sync_log`] before they are durable.
    pub fn defers_sync(&self) -> bool {
        self.synchronous.deferrable.is_some()
    }

    /// A transaction for reading a consistent view.
    pub async fn read(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Refreshes the planner's statistics of the tables a bulk load filled (cards, cardholders, funding sources,
    /// the ledger). Tables the load left empty are left alone: statistics saying "empty" would outlive the table's
    /// growth until autovacuum's next analyze, and PostgreSQL would plan whole-table scans of a table it believes
    /// has no rows (in the bench: every batch's velocity query scanned all authorizations so far), where a table
    /// never analyzed is estimated from its actual size.
    pub async fn analyze_bulk_loaded(&self) -> Result<()> {
        for table in ["cardholders", "funding_sources", "cards", "ledger_transfers"] {
            sqlx::query(&format!("ANALYZE {table}")).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// `SELECT 1`: is the database reachable?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }
}

/// Commits a transaction.
pub async fn commit(tx: Tx) -> Result<()> {
    Ok(tx.commit().await?)
}

/// Commits the transaction that [`Store::deferred_begin`] began on this connection.
pub(crate) async fn commit_on(connection: &mut Conn) -> Result<()> {
    sqlx::query("COMMIT").execute(&mut *connection).await?;
    Ok(())
}

/// Rolls back the transaction that [`Store::deferred_begin`] began on this connection, if it began.
pub(crate) async fn rollback_on(connection: &mut Conn) -> Result<()> {
    match sqlx::query("ROLLBACK").execute(&mut *connection).await {
        Ok(_) => Ok(()),
        // Its `BEGIN` failed: nothing to roll back.
        Err(sqlx::Error::Database(error)) if error.message().contains("no transaction is active") => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Microseconds since the Unix epoch, the stored form of an instant.
pub fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub fn from_micros(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros}")))
}

/// Where a statement goes, as far as its text differs: PostgreSQL numbers parameters and takes rows unpadded.
trait Target {
    fn is_postgres(&self) -> bool;
}

impl Target for Tx {
    fn is_postgres(&self) -> bool {
        (**self).is_postgres()
    }
}

impl Target for Conn {
    fn is_postgres(&self) -> bool {
        self.backend_name() == "PostgreSQL"
    }
}

/// `($1, $2, $3), ($4, $5, $6)` for `rows` rows of `columns` parameters (PostgreSQL), or the same with `?`
/// (SQLite: its driver resolves numbered parameters by name, which costs quadratic time in a long statement).
/// Built in one buffer: a batch's statements have tens of thousands of parameters.
fn placeholders(tx: &impl Target, rows: usize, columns: usize) -> String {
    placeholder_text(tx.is_postgres(), rows, columns)
}

fn placeholder_text(numbered: bool, rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(rows * columns * if numbered { 8 } else { 3 } + rows * 4);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            if numbered {
                let _ = write!(out, "${}", row * columns + column + 1);
            } else {
                out.push('?');
            }
        }
        out.push(')');
    }
    out
}

/// `$1, $2, …` (PostgreSQL) or `?, ?, …` (SQLite) for an `IN` list of `count` parameters starting at `first`.
fn list_placeholders(tx: &impl Target, first: usize, count: usize) -> String {
    list_placeholder_text(tx.is_postgres(), first, count)
}

fn list_placeholder_text(numbered: bool, first: usize, count: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(count * if numbered { 8 } else { 3 });
    for number in first..first + count {
        if number > first {
            out.push_str(", ");
        }
        if numbered {
            let _ = write!(out, "${number}");
        } else {
            out.push('?');
        }
    }
    out
}

/// SQLite compiles a statement the first time the connection sees its text and keeps it in a statement cache. A
/// batch's multi-row statements would have a new text at every batch size, and compiling a large insert took as
/// long as running it (docs/performance-log, session 4). So on SQLite the batch path's statements carry their rows padded
/// up to a power of two (within the parameter limit) with rows of NULLs, which join, match and insert nothing; the
/// texts repeat and stay compiled. PostgreSQL takes the rows as arrays instead ([`rows_as_arrays`]).
fn padded_rows(tx: &impl Target, rows: usize, columns: usize) -> usize {
    if tx.is_postgres() || rows == 0 {
        rows
    } else {
        rows.next_power_of_two().min(rows_per_statement(columns)).max(rows)
    }
}

/// The rows of a multi-row `INSERT`, `values` row-major with `columns` to a row: the text to follow the column list,
/// and what to bind. SQLite: the rows and their padding selected from a `VALUES` list without the NULL rows.
/// PostgreSQL: [`rows_as_arrays`].
fn insert_rows(tx: &impl Target, values: Vec<Value>, columns: usize) -> (String, Vec<Value>) {
    if tx.is_postgres() {
        return rows_as_arrays(values, columns, 1);
    }
    let (rows, values) = padded_values(tx, values, columns);
    (format!("SELECT * FROM (VALUES {rows}) WHERE column1 IS NOT NULL"), values)
}

/// The rows of a table expression that is joined (lookups, updates): `WITH wanted (…) AS ({rows})`. SQLite: a
/// `VALUES` list, padded. PostgreSQL: [`rows_as_arrays`].
fn joined_rows(tx: &impl Target, values: Vec<Value>, columns: usize) -> (String, Vec<Value>) {
    if tx.is_postgres() {
        return rows_as_arrays(values, columns, 1);
    }
    let (rows, values) = padded_values(tx, values, columns);
    (format!("VALUES {rows}"), values)
}

/// SQLite's placeholders for `values` padded with rows of NULLs ([`padded_rows`]), and the values with the padding.
fn padded_values(tx: &impl Target, mut values: Vec<Value>, columns: usize) -> (String, Vec<Value>) {
    let rows = values.len() / columns.max(1);
    let padded = padded_rows(tx, rows, columns);
    values.resize((padded * columns).max(values.len()), Value::Int(None));
    (placeholders(tx, padded, columns), values)
}

/// PostgreSQL: rows as one array a column, `SELECT * FROM unnest($1::bigint[], $2::text[], …)` from parameter
/// `first`, each array bound as its text form. The statement's text is the same at every row count, so PostgreSQL
/// parses and plans it once per connection; a `VALUES` list has a new text at every batch size, and parsing and
/// planning a large one took longer than running it (docs/performance-log, session 6). Each column's type is its
/// values' kind.
fn rows_as_arrays(values: Vec<Value>, columns: usize, first: usize) -> (String, Vec<Value>) {
    use std::fmt::Write;
    let columns = columns.max(1);
    let mut sql = String::from("SELECT * FROM unnest(");
    let mut arrays = Vec::with_capacity(columns);
    for column in 0..columns {
        let cells = values.iter().skip(column).step_by(columns);
        let kind = match values.get(column) {
            Some(Value::Int(_)) | None => "bigint",
            Some(Value::Text(_)) => "text",
            Some(Value::Bytes(_)) => "bytea",
        };
        let _ = write!(sql, "{}${}::{kind}[]", if column > 0 { ", " } else { "" }, first + column);
        arrays.push(Value::Text(Some(array_literal(cells))));
    }
    sql.push(')');
    (sql, arrays)
}

/// A PostgreSQL array's text form: `{1,NULL}`, `{"a \"b\"",NULL}`, `{"\\x00ff"}`. Every non-NULL element is quoted,
/// so no text needs more than its backslashes and double quotes escaped.
fn array_literal<'v>(cells: impl Iterator<Item = &'v Value>) -> String {
    use std::fmt::Write;
    let mut out = String::from("{");
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            out.push(',');
        }
        match cell {
            Value::Int(Some(number)) => {
                let _ = write!(out, "{number}");
            }
            Value::Text(Some(text)) => {
                out.push('"');
                for character in text.chars() {
                    if matches!(character, '"' | '\\') {
                        out.push('\\');
                    }
                    out.push(character);
                }
                out.push('"');
            }
            Value::Bytes(Some(bytes)) => {
                out.push_str("\"\\\\x");
                for byte in bytes {
                    let _ = write!(out, "{byte:02x}");
                }
                out.push('"');
            }
            Value::Int(None) | Value::Text(None) | Value::Bytes(None) => out.push_str("NULL"),
        }
    }
    out.push('}');
    out
}

/// SQLite: `query`'s rows as one row, a JSON array of arrays of `columns` ([`Found::packed`] decodes it). sqlx's
/// SQLite driver hands each row over from its worker thread separately, which costs more than finding it; a batch's
/// reads by cardholder return thousands. PostgreSQL: `query` as it is.
fn packed(postgres: bool, columns: &str, query: String) -> String {
    if postgres { query } else { format!("SELECT json_group_array(json_array({columns})) FROM ({query})") }
}

/// The placeholders of an `IN` list of `count` values from parameter 1, padded on SQLite; with the number of NULL
/// parameters to bind after the values.
fn in_list(tx: &impl Target, count: usize) -> (String, usize) {
    let padded = padded_rows(tx, count, 1);
    (list_placeholders(tx, 1, padded), padded - count)
}

/// Rows per multi-row statement: within both databases' parameter limits (SQLite 32,766; PostgreSQL 65,535).
fn rows_per_statement(columns: usize) -> usize {
    (30_000 / columns).max(1)
}

/// A page of a list: rows newest first, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched.
    fn from_rows(mut rows: Vec<T>, limit: u32) -> Page<T> {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Page { rows, has_more }
    }
}

/// ` FOR UPDATE` on PostgreSQL, nothing on SQLite (see [`Dialect`]).
fn for_update(tx: &Conn) -> &'static str {
    let dialect = if tx.is_postgres() { Dialect::Postgres } else { Dialect::Sqlite };
    dialect.for_update()
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_parameters_across_rows() {
        // The text each database is given, built without a connection: PostgreSQL numbers, SQLite `?`.
        assert_eq!(super::placeholder_text(true, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::placeholder_text(false, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(super::list_placeholder_text(true, 4, 3), "$4, $5, $6");
        assert_eq!(super::list_placeholder_text(false, 1, 2), "?, ?");
    }
}
