//! Encryption at rest: every value an engine stores, sealed with AES-256-GCM under the
//! store's data key (see `core/docs/design.md`, "Encryption at rest").
//!
//! [`SealedBackend`] wraps any engine. A value is stored as `nonce (12 bytes) || ciphertext
//! || tag (16 bytes)`, with a random nonce per value (ring's `SystemRandom`; random 96-bit
//! nonces keep the odds of a repeat under 2^-32 for 2^32 values under one data key, far beyond
//! what a device writes) and the associated data `len(keyspace) u32 BE || keyspace || key`, so a value
//! copied under another key or keyspace does not open. Keys and keyspace names stay plain:
//! the store needs them ordered for its range scans (a keyed hash of each key would lose the
//! order), so a thief learns document names, their number and sizes, and the shape of the
//! store, never a value.
//!
//! The data key (random, 256 bits) never reaches the disk in the clear: it is stored in the
//! keyspace [`HEADER`] (never sealed) wrapped by a [`KeyWrap`], the platform's key (a key
//! file, an environment variable, Android Keystore, iOS Keychain). Rewrapping it under a
//! new platform key ([`rewrap_data_key`]) rewrites one record, never the data. Opening with a
//! wrong key, or without one, fails before anything is written.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::{Backend, Engine, Entry, Op, StorageError};

/// The keyspace that holds the wrapped data key (plain: it must be read before any key is
/// known). Its name cannot be a store's keyspace (those end in `meta`, `chunks`, ...).
pub(crate) const HEADER: &str = "__outpost_sealed";
/// The data key, wrapped by the platform key: `format (1 byte, = 1) || wrapped bytes`.
const WRAPPED_KEY: &[u8] = b"data-key";
/// A known text sealed under the data key: tells a wrong key from a wrapper that returned
/// other bytes (a platform key that unwraps without authenticating).
const CHECK: &[u8] = b"check";
const CHECK_TEXT: &[u8] = b"outpost data key check v1";
const HEADER_FORMAT: u8 = 1;
/// Bytes a sealed value adds to the plain one.
pub(crate) const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// Why a store's keys did not open it. Nothing was written to the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The store is encrypted and no key was given.
    #[error("the store in {path} is encrypted and no key was given: pass its key (`--data-key-file PATH` or OUTPOST_DATA_KEY for the CLI, `data_key` in the NodeConfig of the bindings); nothing was changed")]
    KeyRequired {
        /// The data directory.
        path: String,
    },
    /// The key given does not open the store's data key.
    #[error("the key given does not open the store in {path} (wrong key, or a key rotated since): pass the key the store was created or last rotated with; the store was not changed")]
    WrongKey {
        /// The data directory.
        path: String,
    },
    /// A key was given for a store that holds plain data.
    #[error("the store in {path} holds data that is not encrypted, and a key was given: encrypt it by taking a backup and restoring it into a new directory with the key (`outpost backup`, then `outpost restore --data-key-file`), or open it without a key")]
    NotEncrypted {
        /// The data directory.
        path: String,
    },
    /// A key was malformed (length, encoding).
    #[error("invalid data key: {reason}; give 32 random bytes (a file of 32 bytes, or 64 hex digits, or base64), e.g. `head -c 32 /dev/urandom > data.key`")]
    Invalid {
        /// Why.
        reason: String,
    },
    /// The platform key failed to wrap or unwrap (a callback of the bindings, a KMS).
    #[error("the platform key failed: {reason}; check that the key store (Keystore, Keychain, KMS) is available and holds the key")]
    Platform {
        /// What the platform said.
        reason: String,
    },
    /// The header of an encrypted store (or backup) is damaged.
    #[error("the encryption header of {path} is damaged ({reason}): restore a backup")]
    Damaged {
        /// The data directory or backup.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The platform's key, which wraps (encrypts) the store's data key. [`WrappingKey`] is one
/// held in memory (a key file, an environment variable); the bindings implement this with
/// Android Keystore or the iOS Keychain, so the platform key never leaves them.
pub trait KeyWrap: Send + Sync + std::fmt::Debug {
    /// Encrypts `data_key` (32 bytes) so that only [`KeyWrap::unwrap`] of this key returns it.
    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Returns the data key wrapped by [`KeyWrap::wrap`]; an error if this key did not wrap it.
    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// A shared [`KeyWrap`].
pub type SharedKeyWrap = Arc<dyn KeyWrap>;

/// A 256-bit platform key held in memory: wraps the data key with AES-256-GCM.
#[derive(Clone)]
pub struct WrappingKey([u8; 32]);

impl std::fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself (logs, panics).
        f.write_str("WrappingKey(..)")
    }
}

impl WrappingKey {
    /// The key of 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappingKey, KeyError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Invalid {
            reason: format!("{} bytes, a key is 32", bytes.len()),
        })?;
        Ok(WrappingKey(key))
    }

    /// A new random key.
    pub fn generate() -> Result<WrappingKey, KeyError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| KeyError::Platform {
                reason: "the system's random source failed".into(),
            })?;
        Ok(WrappingKey(key))
    }

    /// The key written as text: 64 hex digits or base64 (standard or URL alphabet, padded or
    /// not), surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<WrappingKey, KeyError> {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut key = [0u8; 32];
            for (i, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| {
                    KeyError::Invalid {
                        reason: e.to_string(),
                    }
                })?;
            }
            return Ok(WrappingKey(key));
        }
        WrappingKey::from_bytes(&base64_decode(t)?)
    }

    /// The key in a file: 32 raw bytes, or text as [`WrappingKey::parse`] reads it.
    pub fn from_file(path: &Path) -> Result<WrappingKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| KeyError::Invalid {
            reason: format!("cannot read the key file {}: {e}", path.display()),
        })?;
        if bytes.len() == 32 {
            return WrappingKey::from_bytes(&bytes);
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Invalid {
            reason: format!(
                "the key file {} holds {} bytes that are not text",
                path.display(),
                bytes.len()
            ),
        })?;
        WrappingKey::parse(text)
    }

    /// The key as 64 hex digits (to write a key file or `OUTPOST_DATA_KEY`).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte key fits AES-256-GCM"),
        )
    }
}

/// The associated data of a wrapped data key.
const WRAP_AAD: &[u8] = b"outpost wrapped data key v1";

impl KeyWrap for WrappingKey {
    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal_with(&self.aead(), WRAP_AAD, data_key)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, KeyError> {
        open_with(&self.aead(), WRAP_AAD, wrapped).ok_or(KeyError::WrongKey {
            path: String::new(),
        })
    }
}

fn base64_decode(t: &str) -> Result<Vec<u8>, KeyError> {
    let bad = || KeyError::Invalid {
        reason: "neither 64 hex digits nor base64".into(),
    };
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in t.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(bad()),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// `nonce || seal(plain)`, with a fresh random nonce.
fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Platform {
            reason: "the system's random source failed".into(),
        })?;
    let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let mut body = out.split_off(NONCE_LEN);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| KeyError::Platform {
        reason: "AES-GCM refused to seal".into(),
    })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The plain bytes of `nonce || sealed`, if `key` sealed them with `aad`.
fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .ok()?
        .len();
    body.truncate(plain_len);
    Some(body)
}

/// The data key of an encrypted store (or backup) and the platform key that wraps it.
pub(crate) struct DataKey {
    key: LessSafeKey,
    /// The header record as stored (`format || wrapped`): a backup carries it.
    wrapped: Vec<u8>,
    rng: SystemRandom,
}

impl DataKey {
    /// A new random data key wrapped by `wrap`.
    fn generate(wrap: &dyn KeyWrap) -> Result<DataKey, KeyError> {
        let mut raw = [0u8; 32];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| KeyError::Platform {
                reason: "the system's random source failed".into(),
            })?;
        let mut wrapped = vec![HEADER_FORMAT];
        wrapped.extend(wrap.wrap(&raw)?);
        Ok(DataKey {
            key: aead_key(&raw)?,
            wrapped,
            rng: SystemRandom::new(),
        })
    }

    /// The data key of a header record (`wrapped`) and its check, unwrapped by `wrap`.
    /// `path` names the store or backup in errors.
    pub(crate) fn unwrap(
        wrap: &dyn KeyWrap,
        wrapped: &[u8],
        check: &[u8],
        path: &str,
    ) -> Result<DataKey, KeyError> {
        let damaged = |reason: &str| KeyError::Damaged {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        match wrapped.first() {
            Some(&HEADER_FORMAT) => {}
            Some(other) => return Err(damaged(&format!("unknown key format {other}"))),
            None => return Err(damaged("empty key record")),
        }
        let raw = match wrap.unwrap(&wrapped[1..]) {
            Ok(raw) => raw,
            Err(KeyError::WrongKey { .. }) => {
                return Err(KeyError::WrongKey {
                    path: path.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        // A wrapper that returns bytes for a key it did not wrap is caught by the check.
        let key = aead_key(&raw).map_err(|_| KeyError::WrongKey {
            path: path.to_string(),
        })?;
        if open_with(&key, CHECK, check).as_deref() != Some(CHECK_TEXT) {
            return Err(KeyError::WrongKey {
                path: path.to_string(),
            });
        }
        Ok(DataKey {
            key,
            wrapped: wrapped.to_vec(),
            rng: SystemRandom::new(),
        })
    }

    /// The check record of this key.
    pub(crate) fn check(&self) -> Result<Vec<u8>, KeyError> {
        seal_with(&self.key, CHECK, CHECK_TEXT)
    }

    /// The header record (format and wrapped key).
    pub(crate) fn wrapped(&self) -> &[u8] {
        &self.wrapped
    }

    /// `nonce || seal(plain)` with associated data `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StorageError::Io(std::io::Error::other("the random source failed")))?;
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut tag_input = out.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut tag_input,
            )
            .map_err(|_| StorageError::Io(std::io::Error::other("AES-GCM refused to seal")))?;
        out.extend_from_slice(&tag_input);
        Ok(out)
    }

    /// The plain bytes of a sealed value, `None` if it was not sealed by this key with `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.key, aad, sealed)
    }
}

fn aead_key(raw: &[u8]) -> Result<LessSafeKey, KeyError> {
    let unbound = UnboundKey::new(&AES_256_GCM, raw).map_err(|_| KeyError::Invalid {
        reason: format!("a data key of {} bytes", raw.len()),
    })?;
    Ok(LessSafeKey::new(unbound))
}

/// The associated data of a value: its keyspace and key, length-prefixed so that no two
/// (keyspace, key) pairs share it.
fn value_aad(ks: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + ks.len() + key.len());
    aad.extend_from_slice(&(ks.len() as u32).to_be_bytes());
    aad.extend_from_slice(ks.as_bytes());
    aad.extend_from_slice(key);
    aad
}

/// An engine whose values are sealed under a data key.
pub(crate) struct SealedBackend {
    inner: Arc<dyn Backend>,
    key: Arc<DataKey>,
}

impl SealedBackend {
    /// Wraps the engine `inner` of the data directory `path` (named in errors) with the
    /// data key its header holds, unwrapped by `wrap`; a store with no data yet gets a new
    /// data key. Writes nothing unless the store is new.
    pub(crate) fn open(
        inner: Arc<dyn Backend>,
        wrap: &dyn KeyWrap,
        path: &str,
    ) -> crate::Result<SealedBackend> {
        let key = match inner.get(HEADER, WRAPPED_KEY)? {
            Some(wrapped) => {
                let check = inner.get(HEADER, CHECK)?.unwrap_or_default();
                DataKey::unwrap(wrap, &wrapped, &check, path)?
            }
            None => {
                // Keyspaces an earlier plain open created but never wrote (sled makes a tree
                // on first read) hold nothing to leak.
                let mut plain_data = false;
                for ks in inner.keyspaces()? {
                    if ks != HEADER
                        && !inner
                            .range(&ks, Bound::Unbounded, Bound::Unbounded, 1)?
                            .is_empty()
                    {
                        plain_data = true;
                        break;
                    }
                }
                if plain_data {
                    return Err(KeyError::NotEncrypted {
                        path: path.to_string(),
                    }
                    .into());
                }
                let key = DataKey::generate(wrap)?;
                let check = key.check()?;
                let header: Arc<str> = Arc::from(HEADER);
                inner.apply(vec![
                    (
                        header.clone(),
                        WRAPPED_KEY.to_vec(),
                        Some(key.wrapped.clone()),
                    ),
                    (header, CHECK.to_vec(), Some(check)),
                ])?;
                // The key must be on disk before any value sealed with it.
                inner.sync()?;
                key
            }
        };
        Ok(SealedBackend {
            inner,
            key: Arc::new(key),
        })
    }

    pub(crate) fn data_key(&self) -> &Arc<DataKey> {
        &self.key
    }

    fn open_value(&self, ks: &str, key: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        self.key
            .open(&value_aad(ks, key), &sealed)
            .ok_or_else(|| StorageError::Tampered {
                keyspace: ks.to_string(),
                key: String::from_utf8_lossy(key).into_owned(),
            })
    }

    fn open_entries(&self, ks: &str, entries: Vec<Entry>) -> Result<Vec<Entry>, StorageError> {
        entries
            .into_iter()
            .map(|(k, v)| {
                let v = self.open_value(ks, &k, v)?;
                Ok((k, v))
            })
            .collect()
    }
}

/// Whether a store's header says it is encrypted (without opening it with a key).
pub(crate) fn is_sealed(inner: &dyn Backend) -> Result<bool, StorageError> {
    Ok(inner.get(HEADER, WRAPPED_KEY)?.is_some())
}

impl Backend for SealedBackend {
    fn engine(&self) -> Engine {
        self.inner.engine()
    }

    fn get(&self, ks: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.inner.get(ks, key)? {
            Some(v) => Ok(Some(self.open_value(ks, key, v)?)),
            None => Ok(None),
        }
    }

    fn put(
        &self,
        ks: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let sealed = match value {
            Some(v) => Some(self.key.seal(&value_aad(ks, key), v)?),
            None => None,
        };
        match self.inner.put(ks, key, sealed.as_deref())? {
            Some(old) => Ok(Some(self.open_value(ks, key, old)?)),
            None => Ok(None),
        }
    }

    fn range(
        &self,
        ks: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let page = self.inner.range(ks, from, to, limit)?;
        self.open_entries(ks, page)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let sealed = ops
            .into_iter()
            .map(|(ks, k, v)| {
                let v = match v {
                    Some(v) => Some(self.key.seal(&value_aad(&ks, &k), &v)?),
                    None => None,
                };
                Ok((ks, k, v))
            })
            .collect::<Result<Vec<Op>, StorageError>>()?;
        self.inner.apply(sealed)
    }

    fn last_in(&self, ks: &str, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StorageError> {
        match self.inner.last_in(ks, from, to)? {
            Some((k, v)) => {
                let v = self.open_value(ks, &k, v)?;
                Ok(Some((k, v)))
            }
            None => Ok(None),
        }
    }

    fn len(&self, ks: &str) -> Result<usize, StorageError> {
        self.inner.len(ks)
    }

    fn keyspaces(&self) -> Result<Vec<String>, StorageError> {
        // The header is not a keyspace of the store's.
        Ok(self
            .inner
            .keyspaces()?
            .into_iter()
            .filter(|k| k != HEADER)
            .collect())
    }

    fn drop_keyspace(&self, ks: &str) -> Result<(), StorageError> {
        self.inner.drop_keyspace(ks)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.inner.size_on_disk()
    }
}

/// Rewraps the data key of the encrypted store in `dir` under the platform key `new`, after
/// unwrapping it with `old`: one record is rewritten (atomically, then synced), no data. The
/// store must not be open. A wrong `old` key changes nothing.
pub fn rewrap_data_key(dir: &Path, old: &dyn KeyWrap, new: &dyn KeyWrap) -> crate::Result<()> {
    let db = super::Database::open_unsealed(dir, &super::DatabaseOptions::default())?;
    let path = dir.display().to_string();
    let backend = db.backend.clone();
    let Some(wrapped) = backend.get(HEADER, WRAPPED_KEY)? else {
        return Err(KeyError::NotEncrypted { path }.into());
    };
    let check = backend.get(HEADER, CHECK)?.unwrap_or_default();
    // Refuses a wrong old key (by the check) before anything is written.
    DataKey::unwrap(old, &wrapped, &check, &path)?;
    let raw = old.unwrap(&wrapped[1..])?;
    let mut rewrapped = vec![HEADER_FORMAT];
    rewrapped.extend(new.wrap(&raw)?);
    // The new wrapping must give back the same data key before it replaces the old one.
    DataKey::unwrap(new, &rewrapped, &check, &path)?;
    backend.apply(vec![(
        Arc::from(HEADER),
        WRAPPED_KEY.to_vec(),
        Some(rewrapped),
    )])?;
    backend.sync()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_base64_and_raw_files() {
        let key = WrappingKey::generate().expect("a key");
        let hex = key.to_hex();
        assert_eq!(WrappingKey::parse(&hex).expect("hex").0, key.0);
        // base64 of 32 bytes, written by hand from the hex.
        let b64 = {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for chunk in key.0.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            s + "="
        };
        assert_eq!(WrappingKey::parse(&b64).expect("base64").0, key.0);
        assert!(matches!(
            WrappingKey::parse("abc"),
            Err(KeyError::Invalid { .. })
        ));
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("k"), key.0).expect("write");
        assert_eq!(
            WrappingKey::from_file(&dir.path().join("k"))
                .expect("raw")
                .0,
            key.0
        );
        assert_eq!(format!("{key:?}"), "WrappingKey(..)");
    }

    #[test]
    fn a_value_does_not_open_under_another_key_or_keyspace() {
        let wrap = WrappingKey::generate().expect("a key");
        let key = DataKey::generate(&wrap).expect("a data key");
        let sealed = key
            .seal(&value_aad("chunks", b"a"), b"secret")
            .expect("seal");
        assert_eq!(sealed.len(), 6 + SEAL_OVERHEAD);
        assert_eq!(
            key.open(&value_aad("chunks", b"a"), &sealed).as_deref(),
            Some(&b"secret"[..])
        );
        assert!(key.open(&value_aad("chunks", b"b"), &sealed).is_none());
        assert!(key.open(&value_aad("chunk", b"sa"), &sealed).is_none());
        let other = WrappingKey::generate().expect("a key");
        let check = key.check().expect("check");
        assert!(matches!(
            DataKey::unwrap(&other, key.wrapped(), &check, "x"),
            Err(KeyError::WrongKey { .. })
        ));
        assert!(DataKey::unwrap(&wrap, key.wrapped(), &check, "x").is_ok());
    }
}
