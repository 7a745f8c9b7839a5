//! Fresh, empty databases for tests: a temporary SQLite file, or a new database on a PostgreSQL server.

use std::path::{Path, PathBuf};

use sqlx::Connection;

use ghostcard_store::{Dialect, Result, Store};

/// A new, empty directory under the system's temporary one, named `ghostcard-{name}-{process id}`, removed with
/// everything in it when dropped. Keep it until the databases in it are closed: SQLite creates its log beside
/// the database when it needs one.
#[derive(Debug)]
pub struct Directory(PathBuf);

impl Directory {
    pub fn new(name: &str) -> std::io::Result<Directory> {
        let path = std::env::temp_dir().join(format!("ghostcard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Directory(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The URL of an SQLite database named `file` in this directory.
    pub fn sqlite_url(&self, file: &str) -> String {
        format!("sqlite://{}", self.0.join(file).display())
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PostgreSQL server tests use: `GHOSTCARD_TEST_POSTGRES_URL`, or the local default that `scripts/test`
/// starts.
pub fn postgres_server_url() -> String {
    std::env::var("GHOSTCARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The tables of `store` in which some row holds `needle` anywhere in its text (every column, blobs read as
/// text): tests use it to show that a card number sent in the wrong place is kept nowhere.
pub async fn tables_containing(store: &Store, needle: &str) -> Result<Vec<String>> {
    let mut tx = store.read().await?;
    let pattern = format!("%{needle}%");
    let mut found = Vec::new();
    let tables: Vec<String> = match store.dialect() {
        Dialect::Sqlite => {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .fetch_all(&mut *tx)
                .await?
        }
        Dialect::Postgres => {
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(&mut *tx)
                .await?
        }
    };
    for table in tables {
        let matches = match store.dialect() {
            Dialect::Sqlite => {
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(&mut *tx)
                        .await?;
                let test = columns
                    .iter()
                    .map(|column| format!("CAST(\"{column}\" AS TEXT) LIKE $1"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                format!("SELECT count(*) FROM \"{table}\" WHERE {test}")
            }
            Dialect::Postgres => {
                format!("SELECT count(*) FROM \"{table}\" AS t WHERE t::text LIKE $1")
            }
        };
        let count: i64 = sqlx::query_scalar(&matches).bind(&pattern).fetch_one(&mut *tx).await?;
        if count > 0 {
            found.push(table);
        }
    }
    Ok(found)
}

/// Creates a new database named `name` on the test PostgreSQL server and returns its URL.
pub async fn postgres_database(name: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let server = postgres_server_url();
    let mut connection = sqlx::AnyConnection::connect(&server).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut connection).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut connection).await?;
    connection.close().await?;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}
