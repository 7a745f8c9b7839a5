//! API keys: created here (shown once), stored as a SHA-256 hash, checked by the API's authentication.

use chrono::{DateTime, Utc};
use ghostcard_store::api_keys::{self, ApiKey};
use ghostcard_store::audit::{self, AuditEntry};
use ghostcard_store::{Store, StoreError};
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::ids::new_id;

/// The stored form of a presented key.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates an API key named `name` on behalf of `actor` (audited); returns (id, key). The key exists only in the
/// return value.
pub async fn create_api_key(
    store: &Store,
    name: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(String, String), StoreError> {
    let random: [u8; 24] = rand::rng().random();
    let key = format!("gc_sk_{}", random.iter().map(|byte| format!("{byte:02x}")).collect::<String>());
    let id = new_id("key", now, &mut rand::rng());
    let mut tx = store.begin().await?;
    api_keys::insert(
        &mut tx,
        &ApiKey {
            id: id.clone(),
            name: name.to_owned(),
            key_hash: hash_api_key(&key),
            prefix: key[..10].to_owned(),
            created_at: now,
            revoked_at: None,
        },
    )
    .await?;
    audit::append(&mut tx, &created(actor, "api_key.create", &id, format!("name {name:?}"), now)).await?;
    ghostcard_store::commit(tx).await?;
    Ok((id, key))
}

/// Creates an operator account for the console (audited as `actor`) with a generated password, returned once:
/// (operator id, password). `role` is `viewer` or `admin`. [`StoreError::Conflict`] if the email is taken.
pub async fn create_operator(
    store: &Store,
    email: &str,
    name: &str,
    role: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(String, String), StoreError> {
    let random: [u8; 18] = rand::rng().random();
    let password = random.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
    let password_hash =
        hash_password(&password).ok_or_else(|| StoreError::Corrupt("the password could not be hashed".to_owned()))?;
    let id = new_id("op", now, &mut rand::rng());
    let mut tx = store.begin().await?;
    ghostcard_store::operators::insert(
        &mut tx,
        &ghostcard_store::operators::Operator {
            id: id.clone(),
            email: email.trim().to_lowercase(),
            name: name.trim().to_owned(),
            role: role.to_owned(),
            password_hash,
            created_at: now,
        },
    )
    .await?;
    audit::append(&mut tx, &created(actor, "operator.create", &id, format!("role {role}"), now)).await?;
    ghostcard_store::commit(tx).await?;
    Ok((id, password))
}

/// The audit entry of a credential `actor` created.
fn created(actor: &str, action: &str, id: &str, detail: String, now: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: actor.to_owned(),
        action: action.to_owned(),
        resource: Some(id.to_owned()),
        outcome: "success".to_owned(),
        origin: None,
        detail: Some(detail),
    }
}

/// The Argon2id hash (PHC string) of `password` under a random salt. Blocking work: ~19 MiB and tens of
/// milliseconds; requests go through [`crate::clients::Guards::hash_password`], which bounds how many run.
pub fn hash_password(password: &str) -> Option<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::rng().random::<[u8; 16]>()).ok()?;
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).ok().map(|hash| hash.to_string())
}

/// Checks a password against its Argon2id hash; with no hash, does comparable work and fails (so an unknown account
/// takes as long as a wrong password). Blocking work, like [`hash_password`].
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("no account has this password").unwrap_or_default());
    let parsed = PasswordHash::new(hash.unwrap_or(dummy));
    let verified =
        parsed.is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok());
    verified && hash.is_some()
}
