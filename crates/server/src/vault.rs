//! Card-data keys and what is done with them: card numbers encrypted with AES-256-GCM under data keys, looked up
//! by HMAC-SHA256 under a lookup key, both kinds of key wrapped by the key-encryption key (KEK); the CVK that
//! computes CVV2s. Nothing here stores a CVV, and no key or number leaves this module except through the
//! [`Secret`]-wrapped types.
//!
//! A data key version can be wrapped by several KEKs at once (one row each), so a KEK rotation re-wraps every
//! data key under the new KEK while servers still running with the old one keep working.

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use chrono::{DateTime, Utc};
use ghostcard_domain::card_number::CardNumber;
use ghostcard_domain::cvv::Cvk;
use ghostcard_domain::secret::Secret;
use ghostcard_store::data_keys::{self, WrappedKey};
use ghostcard_store::{Store, StoreError};
use hmac::{Hmac, Mac};
use rand::{Rng, RngExt};
use sha2::{Digest, Sha256};

const PURPOSE_CARD_NUMBER: &str = "card_number";
const PURPOSE_LOOKUP: &str = "lookup";
/// Card verification keys, versioned: each card records the version it was issued under.
const PURPOSE_CVK: &str = "cvk";
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the KEK must be 64 hexadecimal digits (32 bytes)")]
    InvalidKek,
    #[error("the CVK must be 32 hexadecimal digits (two DES keys)")]
    InvalidCvk,
    #[error(
        "this database's keys are wrapped by another KEK (fingerprints {known}); start with the KEK it was created \
         with, or re-wrap with `ghostcard keys rotate --new-kek`"
    )]
    WrongKek { known: String },
    #[error("a stored key or ciphertext failed authentication (wrong key or tampered data)")]
    Decryption,
    #[error("data key version {0} is unknown to this server; restart it to load new keys")]
    UnknownVersion(i64),
    #[error(
        "the configured CVK is not one of this database's CVKs (versions {versions}); configure the CVK it was \
         started with first (later versions are added with `ghostcard keys rotate --cvk` and kept in the database)"
    )]
    UnknownCvk { versions: String },
    #[error("that CVK is already version {0} of this database; give a new one")]
    CvkInUse(i64),
    #[error("{name} is a weak key: {reason}; use random keys (e.g. `openssl rand -hex {bytes}`)")]
    WeakKey { name: &'static str, reason: &'static str, bytes: usize },
    #[error("cannot use the key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption key. Its fingerprint (first 8 bytes of its SHA-256, hex) names it in the database.
#[derive(Clone)]
pub struct Kek {
    key: Secret<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Kek({})", self.id)
    }
}

impl Kek {
    pub fn from_hex(text: &str) -> Result<Kek, VaultError> {
        let bytes = decode_hex(text).ok_or(VaultError::InvalidKek)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| VaultError::InvalidKek)?;
        Ok(Kek::from_bytes(key))
    }

    pub fn generate(rng: &mut impl Rng) -> Kek {
        Kek::from_bytes(rng.random())
    }

    fn from_bytes(key: [u8; 32]) -> Kek {
        let id = Sha256::digest(key)[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        Kek { key: Secret::new(key), id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn to_hex(&self) -> Secret<String> {
        Secret::new(self.key.expose().iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// Why this key must not protect live cards, if it must not: every byte the same (all zeros, say).
    pub fn weakness(&self) -> Option<&'static str> {
        let key = self.key.expose();
        key.iter().all(|byte| *byte == key[0]).then_some("every byte of it is the same")
    }

    fn wrap(&self, key: &[u8], label: &str, rng: &mut impl Rng) -> Vec<u8> {
        seal(self.key.expose(), key, label.as_bytes(), rng)
    }

    fn unwrap(&self, wrapped: &[u8], label: &str) -> Result<Secret<Vec<u8>>, VaultError> {
        Ok(Secret::new(open(self.key.expose(), wrapped, label.as_bytes())?))
    }

    /// A wrapped data or lookup key: 32 bytes.
    fn unwrap_key(&self, wrapped: &[u8], label: &str) -> Result<Secret<[u8; 32]>, VaultError> {
        let plain = self.unwrap(wrapped, label)?;
        let key: [u8; 32] = plain.expose().as_slice().try_into().map_err(|_| VaultError::Decryption)?;
        Ok(Secret::new(key))
    }

    /// A wrapped CVK: 16 bytes.
    fn unwrap_cvk(&self, wrapped: &[u8], label: &str) -> Result<Cvk, VaultError> {
        let plain = self.unwrap(wrapped, label)?;
        let key: [u8; 16] = plain.expose().as_slice().try_into().map_err(|_| VaultError::Decryption)?;
        Ok(Cvk::from_bytes(key))
    }
}

/// Unwrapped keys of one server process.
pub struct Vault {
    /// Card-number encryption keys by version; new cards use the highest.
    encryption_keys: BTreeMap<i64, Secret<[u8; 32]>>,
    /// The key of the card-number HMAC. It never rotates (a new one would change every lookup hash).
    lookup_key: Secret<[u8; 32]>,
    /// CVKs by version; new cards use the highest.
    cvks: BTreeMap<i64, Cvk>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Vault(encryption key versions {:?})", self.encryption_keys.keys().collect::<Vec<_>>())
    }
}

impl Vault {
    /// Loads the keys wrapped by `kek`, creating the first ones on a new database. The configured `cvk` becomes
    /// CVK version 1 of a database that has none; from then on the CVKs live in the database (wrapped by the KEK),
    /// and `cvk` must be one of them: a check that this server was given the keys of this database.
    pub async fn open(
        store: &Store,
        kek: &Kek,
        cvk: Cvk,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Result<Vault, VaultError> {
        let mut tx = store.begin().await?;
        if data_keys::count(&mut tx).await? == 0 {
            for purpose in [PURPOSE_CARD_NUMBER, PURPOSE_LOOKUP] {
                let key: [u8; 32] = rng.random();
                insert_wrapped(&mut tx, kek, purpose, 1, &key, now, rng).await?;
            }
        }
        let mut wrapped = data_keys::wrapped_by(&mut tx, kek.id()).await?;
        if wrapped.is_empty() {
            let known = data_keys::kek_ids(&mut tx).await?.join(", ");
            return Err(VaultError::WrongKek { known });
        }
        if !wrapped.iter().any(|key| key.purpose == PURPOSE_CVK) {
            insert_wrapped(&mut tx, kek, PURPOSE_CVK, 1, cvk.expose(), now, rng).await?;
            wrapped = data_keys::wrapped_by(&mut tx, kek.id()).await?;
        }
        ghostcard_store::commit(tx).await?;
        let mut encryption_keys = BTreeMap::new();
        let mut lookup_key = None;
        let mut cvks = BTreeMap::new();
        for key in wrapped {
            let label = label(&key.purpose, key.version);
            match key.purpose.as_str() {
                PURPOSE_CARD_NUMBER => {
                    encryption_keys.insert(key.version, kek.unwrap_key(&key.wrapped, &label)?);
                }
                PURPOSE_LOOKUP => lookup_key = Some(kek.unwrap_key(&key.wrapped, &label)?),
                PURPOSE_CVK => {
                    cvks.insert(key.version, kek.unwrap_cvk(&key.wrapped, &label)?);
                }
                _ => {}
            }
        }
        let lookup_key = lookup_key.ok_or_else(|| VaultError::WrongKek { known: kek.id.clone() })?;
        if !cvks.values().any(|known| *known == cvk) {
            let versions = cvks.keys().map(i64::to_string).collect::<Vec<_>>().join(", ");
            return Err(VaultError::UnknownCvk { versions });
        }
        Ok(Vault { encryption_keys, lookup_key, cvks })
    }

    /// The CVK versions this server holds.
    pub fn cvk_versions(&self) -> Vec<i64> {
        self.cvks.keys().copied().collect()
    }

    /// The version new card numbers are encrypted under.
    pub fn current_version(&self) -> i64 {
        self.encryption_keys.keys().next_back().copied().unwrap_or(1)
    }

    /// Encrypts a card number for the card `card_id` (bound as associated data, so a ciphertext cannot be moved to
    /// another card). Returns (key version, nonce ‖ ciphertext ‖ tag).
    pub fn encrypt_number(&self, card_id: &str, number: &CardNumber, rng: &mut impl Rng) -> (i64, Vec<u8>) {
        let version = self.current_version();
        let key = &self.encryption_keys[&version];
        (version, seal(key.expose(), number.expose().as_bytes(), card_id.as_bytes(), rng))
    }

    pub fn decrypt_number(&self, card_id: &str, version: i64, ciphertext: &[u8]) -> Result<CardNumber, VaultError> {
        let key = self.encryption_keys.get(&version).ok_or(VaultError::UnknownVersion(version))?;
        let plain = Secret::new(open(key.expose(), ciphertext, card_id.as_bytes())?);
        let digits = std::str::from_utf8(plain.expose()).map_err(|_| VaultError::Decryption)?;
        CardNumber::parse(digits).map_err(|_| VaultError::Decryption)
    }

    /// Encrypts another secret (e.g. a webhook signing secret) under the current data key, bound to `context`.
    pub fn encrypt_secret(&self, context: &str, secret: &[u8], rng: &mut impl Rng) -> (i64, Vec<u8>) {
        let version = self.current_version();
        let key = &self.encryption_keys[&version];
        (version, seal(key.expose(), secret, context.as_bytes(), rng))
    }

    pub fn decrypt_secret(
        &self,
        context: &str,
        version: i64,
        ciphertext: &[u8],
    ) -> Result<Secret<Vec<u8>>, VaultError> {
        let key = self.encryption_keys.get(&version).ok_or(VaultError::UnknownVersion(version))?;
        Ok(Secret::new(open(key.expose(), ciphertext, context.as_bytes())?))
    }

    /// The keyed hash a card is looked up by.
    pub fn number_hash(&self, number: &CardNumber) -> Vec<u8> {
        self.keyed_hash(number.expose().as_bytes())
    }

    /// HMAC-SHA256 under the lookup key (also used for idempotency request hashes).
    pub fn keyed_hash(&self, data: &[u8]) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.lookup_key.expose()).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    pub fn current_cvk_version(&self) -> i64 {
        self.cvks.keys().next_back().copied().unwrap_or(1)
    }

    pub fn cvk(&self, version: i64) -> Result<&Cvk, VaultError> {
        self.cvks.get(&version).ok_or(VaultError::UnknownVersion(version))
    }
}

/// Adds a new card-number key version wrapped by `kek` (new cards use it; old cards keep theirs).
pub async fn add_encryption_key(
    store: &Store,
    kek: &Kek,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Result<i64, VaultError> {
    let mut tx = store.begin().await?;
    let wrapped = data_keys::wrapped_by(&mut tx, kek.id()).await?;
    if wrapped.is_empty() {
        return Err(VaultError::WrongKek { known: data_keys::kek_ids(&mut tx).await?.join(", ") });
    }
    let version =
        wrapped.iter().filter(|key| key.purpose == PURPOSE_CARD_NUMBER).map(|key| key.version).max().unwrap_or(0) + 1;
    let key: [u8; 32] = rng.random();
    insert_wrapped(&mut tx, kek, PURPOSE_CARD_NUMBER, version, &key, now, rng).await?;
    ghostcard_store::commit(tx).await?;
    Ok(version)
}

/// A CVK from 32 hex digits.
pub fn cvk_from_hex(hex: &str) -> Result<Cvk, VaultError> {
    Cvk::from_hex(hex).map_err(|_| VaultError::InvalidCvk)
}

/// Adds a new CVK version wrapped by `kek`: `cvk`, or a random one. New cards are issued under it (after a restart
/// of each server); older versions stay and keep verifying the cards issued under them. A weak key is refused.
pub async fn add_cvk(
    store: &Store,
    kek: &Kek,
    cvk: Option<Cvk>,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Result<i64, VaultError> {
    let cvk = cvk.unwrap_or_else(|| Cvk::from_bytes(rng.random()));
    if let Some(reason) = cvk.weakness() {
        return Err(VaultError::WeakKey { name: "the new CVK", reason, bytes: 16 });
    }
    let mut tx = store.begin().await?;
    let wrapped = data_keys::wrapped_by(&mut tx, kek.id()).await?;
    if wrapped.is_empty() {
        return Err(VaultError::WrongKek { known: data_keys::kek_ids(&mut tx).await?.join(", ") });
    }
    let versions: Vec<i64> = wrapped.iter().filter(|key| key.purpose == PURPOSE_CVK).map(|key| key.version).collect();
    if versions.is_empty() {
        return Err(VaultError::UnknownCvk { versions: "none yet: start a server once first".to_owned() });
    }
    for key in wrapped.iter().filter(|key| key.purpose == PURPOSE_CVK) {
        if kek.unwrap_cvk(&key.wrapped, &label(PURPOSE_CVK, key.version))? == cvk {
            return Err(VaultError::CvkInUse(key.version));
        }
    }
    let version = versions.iter().max().copied().unwrap_or(0) + 1;
    insert_wrapped(&mut tx, kek, PURPOSE_CVK, version, cvk.expose(), now, rng).await?;
    ghostcard_store::commit(tx).await?;
    Ok(version)
}

async fn insert_wrapped(
    tx: &mut ghostcard_store::Tx,
    kek: &Kek,
    purpose: &str,
    version: i64,
    key: &[u8],
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Result<(), VaultError> {
    let wrapped = kek.wrap(key, &label(purpose, version), rng);
    data_keys::insert(tx, &WrappedKey { purpose: purpose.to_owned(), version, kek_id: kek.id.clone(), wrapped }, now)
        .await?;
    Ok(())
}

/// Wraps every key that `old` wraps under `new` as well. Servers with either KEK keep working; restart them with
/// the new one.
pub async fn rewrap(
    store: &Store,
    old: &Kek,
    new: &Kek,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Result<usize, VaultError> {
    let mut tx = store.begin().await?;
    let wrapped = data_keys::wrapped_by(&mut tx, old.id()).await?;
    if wrapped.is_empty() {
        return Err(VaultError::WrongKek { known: data_keys::kek_ids(&mut tx).await?.join(", ") });
    }
    let existing = data_keys::wrapped_by(&mut tx, new.id()).await?;
    let mut count = 0;
    for key in wrapped {
        if existing.iter().any(|other| other.purpose == key.purpose && other.version == key.version) {
            continue;
        }
        let label = label(&key.purpose, key.version);
        let plain = old.unwrap(&key.wrapped, &label)?;
        let rewrapped = new.wrap(plain.expose(), &label, rng);
        data_keys::insert(&mut tx, &WrappedKey { wrapped: rewrapped, kek_id: new.id.clone(), ..key }, now).await?;
        count += 1;
    }
    ghostcard_store::commit(tx).await?;
    Ok(count)
}

/// The keys a sandbox deployment generated for itself, kept in a file beside the database.
#[derive(Debug)]
pub struct SandboxKeys {
    pub kek: Kek,
    pub cvk: Cvk,
}

/// Reads an existing key file.
pub fn read_sandbox_keys(path: &Path) -> Result<SandboxKeys, VaultError> {
    let error = |message: String| VaultError::KeyFile { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|read_error| error(read_error.to_string()))?;
    let value = |name: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().trim_matches('"').to_owned())
            .ok_or_else(|| error(format!("it has no {name}")))
    };
    let kek = Kek::from_hex(&value("kek")?)?;
    let cvk = Cvk::from_hex(&value("cvk")?).map_err(|_| VaultError::InvalidCvk)?;
    Ok(SandboxKeys { kek, cvk })
}

/// Reads the key file, or creates it (mode 0600) with new keys when it does not exist.
pub fn sandbox_keys(path: &Path, rng: &mut impl Rng) -> Result<SandboxKeys, VaultError> {
    let error = |message: String| VaultError::KeyFile { path: path.display().to_string(), message };
    match std::fs::metadata(path) {
        Ok(_) => read_sandbox_keys(path),
        Err(read_error) if read_error.kind() == std::io::ErrorKind::NotFound => {
            let kek = Kek::generate(rng);
            let cvk = Cvk::from_bytes(rng.random());
            let text = format!(
                "# ghostcard sandbox keys, generated on first run. Keep this file with the database: without it the\n\
                 # card numbers in the database cannot be read. Never use these keys for live cards.\n\
                 kek = \"{}\"\ncvk = \"{}\"\n",
                kek.to_hex().expose(),
                cvk.to_hex().expose()
            );
            write_private(path, &text).map_err(|io| error(io.to_string()))?;
            Ok(SandboxKeys { kek, cvk })
        }
        Err(read_error) => Err(error(read_error.to_string())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

fn label(purpose: &str, version: i64) -> String {
    format!("ghostcard:{purpose}:{version}")
}

fn seal(key: &[u8; 32], plain: &[u8], associated: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let nonce: [u8; NONCE_BYTES] = rng.random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: associated })
        .expect("AES-GCM encryption of a short message cannot fail");
    let mut out = nonce.to_vec();
    out.extend(sealed);
    out
}

fn open(key: &[u8; 32], sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_BYTES {
        return Err(VaultError::Decryption);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: associated })
        .map_err(|_| VaultError::Decryption)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| text.get(index..index + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn sealing_binds_the_associated_data() {
        let mut rng = StdRng::seed_from_u64(3);
        let key: [u8; 32] = rng.random();
        let sealed = seal(&key, b"4111111111111111", b"card_a", &mut rng);
        assert!(!sealed.windows(16).any(|window| window == b"4111111111111111"));
        assert_eq!(open(&key, &sealed, b"card_a").expect("opens"), b"4111111111111111");
        assert!(matches!(open(&key, &sealed, b"card_b"), Err(VaultError::Decryption)));
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(matches!(open(&key, &tampered, b"card_a"), Err(VaultError::Decryption)));
    }

    #[test]
    fn keys_print_only_their_fingerprint() {
        let kek = Kek::from_hex(&"ab".repeat(32)).expect("valid");
        assert_eq!(format!("{kek:?}"), format!("Kek({})", kek.id()));
        assert!(Kek::from_hex("abc").is_err());
        assert!(Kek::from_hex(&"zz".repeat(32)).is_err());
    }
}
