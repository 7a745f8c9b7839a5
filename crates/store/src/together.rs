//! Statements collected and then run together: on SQLite as one multi-statement query, which is one round trip to
//! the driver's connection thread instead of one each (`cargo bench -p ghostcard-store --bench round_trips` measures
//! one). PostgreSQL's protocol takes one statement with parameters at a time, so
//! there they run one after another.

use futures_util::TryStreamExt;
use sqlx::Either;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conn, Result, StoreError, Target};

/// A value for a statement of [`Writes`], owned, so statements can be collected before they run.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(Some(value))
    }
}

impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Value {
        Value::Int(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(Some(value.to_owned()))
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Value {
        Value::Text(Some(value.clone()))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(Some(value))
    }
}

impl From<&Option<String>> for Value {
    fn from(value: &Option<String>) -> Value {
        Value::Text(value.clone())
    }
}

impl From<&Option<Vec<u8>>> for Value {
    fn from(value: &Option<Vec<u8>>) -> Value {
        Value::Bytes(value.clone())
    }
}

/// Statements that write, collected and then run together by [`Writes::run`].
///
/// Every statement writes an exact number of rows: an insert all of its rows or fails, a version-checked update
/// each of its rows unless a row changed since it was read. `run` checks the total, so a stale row is
/// [`StoreError::Stale`]; a unique violation is [`StoreError::Conflict`]. Either way the transaction must be rolled
/// back: statements before the failing one have run.
pub struct Writes {
    postgres: bool,
    statements: Vec<(String, Vec<Value>)>,
    rows: u64,
}

impl Target for Writes {
    fn is_postgres(&self) -> bool {
        self.postgres
    }
}

impl Writes {
    /// Writes for this transaction's database.
    pub fn new(tx: &Conn) -> Writes {
        Writes { postgres: tx.is_postgres(), statements: Vec::new(), rows: 0 }
    }

    /// Adds a statement that writes exactly `rows` rows.
    pub(crate) fn push(&mut self, sql: String, values: Vec<Value>, rows: usize) {
        self.statements.push((sql, values));
        self.rows += rows as u64;
    }

    /// Runs the statements in the order they were added.
    pub async fn run(self, tx: &mut Conn) -> Result<()> {
        let written = if self.postgres {
            let mut written = 0;
            for (sql, values) in &self.statements {
                written += bind(sqlx::query(sql), values)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_insert)?
                    .rows_affected();
            }
            written
        } else if self.statements.is_empty() {
            0
        } else {
            let sql = self.statements.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(";\n");
            let mut query = sqlx::query(&sql);
            for (_, values) in &self.statements {
                query = bind(query, values);
            }
            query.execute(&mut *tx).await.map_err(StoreError::from_insert)?.rows_affected()
        };
        if written == self.rows { Ok(()) } else { Err(StoreError::Stale) }
    }
}

/// Queries collected and then run together by [`Reads::run`]; each adder returns the [`Pending`] that finds its rows
/// in the [`Found`].
pub struct Reads {
    postgres: bool,
    statements: Vec<(String, Vec<Value>)>,
}

/// Where a read added to [`Reads`] finds its rows: its statements, by position.
#[derive(Debug)]
pub struct Pending(std::ops::Range<usize>);

/// The rows of each statement of a [`Reads`], in order.
pub struct Found {
    postgres: bool,
    rows: Vec<Vec<AnyRow>>,
}

impl Target for Reads {
    fn is_postgres(&self) -> bool {
        self.postgres
    }
}

impl Reads {
    /// Reads for this transaction's database.
    pub fn new(tx: &Conn) -> Reads {
        Reads { postgres: tx.is_postgres(), statements: Vec::new() }
    }

    /// Adds the statements of one read.
    pub(crate) fn push(&mut self, statements: impl IntoIterator<Item = (String, Vec<Value>)>) -> Pending {
        let start = self.statements.len();
        self.statements.extend(statements);
        Pending(start..self.statements.len())
    }

    /// Adds a read of rows matching a list of ids: a statement per chunk of `ids`, its text `sql(member)` where
    /// `member` completes a column's test of membership in the chunk, numbered after the `leading` parameters:
    /// ` IN (?, …)` on SQLite (padded), ` = ANY($n::text[])` on PostgreSQL (one array in its text form, `array_literal`).
    pub(crate) fn push_in_lists(&mut self, leading: &[Value], ids: &[String], sql: impl Fn(&str) -> String) -> Pending {
        let mut statements = Vec::new();
        for chunk in ids.chunks(crate::rows_per_statement(1)) {
            let mut values = leading.to_vec();
            let ids: Vec<Value> = chunk.iter().map(Value::from).collect();
            let member = if self.postgres {
                values.push(Value::Text(Some(crate::array_literal(ids.iter()))));
                format!(" = ANY(${}::text[])", leading.len() + 1)
            } else {
                let padded = crate::padded_rows(self, chunk.len(), 1);
                values.extend(ids);
                values.resize(leading.len() + padded, Value::Text(None));
                format!(" IN ({})", crate::list_placeholders(self, leading.len() + 1, padded))
            };
            statements.push((sql(&member), values));
        }
        self.push(statements)
    }

    /// Runs the statements in the order they were added.
    pub async fn run(self, tx: &mut Conn) -> Result<Found> {
        let mut found = Vec::with_capacity(self.statements.len());
        if self.postgres {
            for (sql, values) in &self.statements {
                found.push(bind(sqlx::query(sql), values).fetch_all(&mut *tx).await?);
            }
        } else if !self.statements.is_empty() {
            let sql = self.statements.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(";\n");
            let mut query = sqlx::query(&sql);
            for (_, values) in &self.statements {
                query = bind(query, values);
            }
            // Each statement's rows, then its result. sqlx 0.8 deprecates several statements in one prepared query
            // (launchbadge/sqlx#3108; its `raw_sql` takes no parameters) but supports it on SQLite, where this and
            // `Writes` rely on it; the store's tests fail if an upgrade drops it.
            #[allow(deprecated)]
            let mut results = query.fetch_many(&mut *tx);
            let mut rows = Vec::new();
            while let Some(step) = results.try_next().await? {
                match step {
                    Either::Right(row) => rows.push(row),
                    Either::Left(_) => found.push(std::mem::take(&mut rows)),
                }
            }
        }
        if found.len() != self.statements.len() {
            return Err(StoreError::Corrupt(format!(
                "{} statements gave {} results",
                self.statements.len(),
                found.len()
            )));
        }
        Ok(Found { postgres: self.postgres, rows: found })
    }
}

impl Found {
    /// The rows of a read (none for a [`Pending`] of other reads).
    pub(crate) fn rows(&self, pending: &Pending) -> impl Iterator<Item = &AnyRow> {
        self.rows.get(pending.0.clone()).unwrap_or_default().iter().flatten()
    }

    /// The rows of a read whose statements [`crate::packed`] packed on SQLite, each decoded from its JSON array;
    /// `None` on PostgreSQL, where the rows are as they came ([`Found::rows`]).
    pub(crate) fn packed<T: serde::de::DeserializeOwned>(&self, pending: &Pending) -> Option<Result<Vec<T>>> {
        if self.postgres {
            return None;
        }
        let mut all = Vec::new();
        for row in self.rows(pending) {
            let text: String = match row.try_get(0) {
                Ok(text) => text,
                Err(error) => return Some(Err(error.into())),
            };
            match serde_json::from_str::<Vec<T>>(&text) {
                Ok(rows) => all.extend(rows),
                Err(error) => return Some(Err(StoreError::Corrupt(format!("packed rows: {error}")))),
            }
        }
        Some(Ok(all))
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind<'q>(mut query: Query<'q>, values: &'q [Value]) -> Query<'q> {
    for value in values {
        query = match value {
            Value::Int(value) => query.bind(*value),
            Value::Text(value) => query.bind(value.as_deref()),
            Value::Bytes(value) => query.bind(value.as_deref()),
        };
    }
    query
}
