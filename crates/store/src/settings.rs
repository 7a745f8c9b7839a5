//! The `settings` table: small named values the deployment keeps in its database (e.g. the sandbox clock offset).

use crate::{Result, Tx};

pub async fn get(tx: &mut Tx, name: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&mut **tx).await?)
}

pub async fn set(tx: &mut Tx, name: &str, value: &str) -> Result<()> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2")
        .bind(name)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
