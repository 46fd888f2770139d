//! Whole-store backups: a consistent copy of a running store, and its restore into an empty
//! data directory.
//!
//! # Format (version 1)
//!
//! ```text
//! "OUTPOST-BACKUP\n" (15 bytes)  version (1 byte, = 1)
//! frame*                         each: length (u32 big-endian) + postcard(Record)
//! ```
//!
//! The frames are, per store: `Store` (its namespace and identity), then `Document` (a
//! document's `Automerge::save` bytes), `Signature` (a stored signature of a change that the
//! saved document holds), `Certificate` and `Meta` records (feed positions, marks of unsigned
//! local writes, erasure tombstones), then `EndStore` with its counts. A backup of one device
//! holds one store; a cloud backup one per site. The last frame is `End` with the SHA-256 of
//! every byte before it: a backup cut short or altered is refused, never half restored.
//!
//! # Sealed (version 2): the backup of an encrypted store
//!
//! ```text
//! "OUTPOST-BACKUP\n"  version (= 2)
//! u32 BE length + the store's wrapped data key (as its header holds it)
//! u32 BE length + a check sealed under the data key
//! frame*               each: length (u32 BE) + nonce || AES-256-GCM(postcard(Record))
//! ```
//!
//! Every frame is sealed under the store's data key (the one its files are sealed with),
//! with the frame's index as associated data, so frames cannot be reordered or dropped
//! unseen (the trailing checksum covers the sealed bytes too). The data key travels wrapped
//! by the platform key, like in the store: a backup restores only given that key
//! ([`restore_with_key`]), into a store that gets a data key of its own.
//!
//! Left out on purpose: the per-peer sync states and sync progress. A restored store holds
//! less than its peers believe it does; without sync states, every peer's next session starts
//! from nothing on our side and sends what the backup lacks. Also left out: quarantined copies
//! and the roles of peers seen (learnt again on connect).
//!
//! # Consistency
//!
//! Each document is saved under its lock, with the signatures of the changes it holds, so a
//! document and its signatures always agree; documents are saved one after the other while
//! writes go on (a backup is not a snapshot of the whole store at one instant, which no peer
//! needs: each document syncs on its own). Certificates are read after every document, so each
//! signature's certificate is in. A feed position newer than its document in the backup
//! starts that consumer over (at least once, never a gap).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use automerge::Automerge;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{lock, signatures, Slot, Store, StoreOptions};
use crate::storage::sealed::DataKey;
use crate::storage::{KeyError, KeyWrap, SharedKeyWrap};
use crate::{DocumentId, PeerInfo};

/// The first bytes of every backup.
pub const BACKUP_MAGIC: &[u8; 15] = b"OUTPOST-BACKUP\n";
/// The format version this code writes (for a store that is not encrypted) and reads.
pub const BACKUP_VERSION: u8 = 1;
/// The format of the backup of an encrypted store: every frame sealed (see the module).
pub const BACKUP_VERSION_SEALED: u8 = 2;
/// The largest wrapped key or check record of a sealed backup's header.
const MAX_HEADER_RECORD: u32 = 64 * 1024;
/// The largest frame read (one document's saved bytes): larger is a damaged backup.
const MAX_FRAME_BYTES: u32 = 1 << 30;

/// Meta records that a backup keeps: feed positions, marks of unsigned writes, tombstones.
const KEPT_META: [&str; 3] = ["feed/", super::UNSIGNED_KEY, super::ERASED_KEY];

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing the backup failed.
    #[error(
        "cannot read or write the backup: {0}; check the path, its permissions and the free space"
    )]
    Io(#[from] std::io::Error),
    /// The bytes are not an outpost backup.
    #[error("this is not an outpost backup (it does not start with {:?}); give the file written by `outpost backup` or `outpost-cloud backup`", String::from_utf8_lossy(BACKUP_MAGIC).trim_end())]
    NotABackup,
    /// The backup was written by a newer format.
    #[error("backup format version {0} is not known here (this outpost reads version {BACKUP_VERSION}); restore it with the outpost version that wrote it or a newer one")]
    UnsupportedVersion(u8),
    /// The backup is cut short or altered.
    #[error("the backup is damaged ({0}): it was cut short or altered; nothing usable was restored, restore another copy")]
    Damaged(String),
    /// The directory to restore into holds files.
    #[error("refusing to restore into {0}: the directory is not empty; restore into a new or empty directory (move the old data directory aside first)")]
    NotEmpty(PathBuf),
    /// The backup holds a number of stores the restore cannot take.
    #[error("the backup holds {0} stores, a device data directory takes exactly one; a backup of a cloud peer's sites is restored with `outpost-cloud restore`")]
    StoreCount(usize),
    /// A device restore was given a backup of a cloud peer's site.
    #[error("the backup holds the cloud peer's store {0:?}, not a device's; restore it with `outpost-cloud restore`")]
    CloudBackup(String),
    /// The backup is encrypted and no key was given.
    #[error("this backup is encrypted: restore it with the key of the store it was taken from (`outpost restore --data-key-file PATH` or OUTPOST_DATA_KEY; the key parameter of the bindings); nothing was restored")]
    KeyRequired,
    /// The key given does not open the backup, or the platform key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A plain backup writer was given an encrypted store.
    #[error("the store {0:?} is encrypted and this backup is not: take it with `Store::backup` or `BackupWriter::for_store`, which seal it under the store's key")]
    WouldLeak(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// What a backup holds (or a restore wrote), per store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    /// The store's namespace in its database (`""` for a device; `site/<site>/` in the cloud).
    pub namespace: String,
    /// The device the store belongs to, if it has an identity.
    pub identity: Option<PeerInfo>,
    /// Documents saved.
    pub documents: u64,
    /// Bytes of the documents' saved form.
    pub document_bytes: u64,
    /// Signatures of changes.
    pub signatures: u64,
    /// Certificate records (certificates, and which device each belongs to).
    pub certificates: u64,
    /// Feed positions, unsigned-write marks and erasure tombstones.
    pub meta: u64,
    /// Documents left out because they are corrupt on disk (quarantined, fetched again from
    /// peers after a restore as before).
    pub corrupt: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum Record {
    Store {
        namespace: String,
        /// `site`, `peer`, `role`.
        identity: Option<(String, String, String)>,
    },
    Document {
        id: String,
        bytes: Vec<u8>,
    },
    Signature {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Certificate {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Meta {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    EndStore {
        documents: u64,
    },
    End {
        sha256: [u8; 32],
    },
}

/// A writer that hashes what goes through it (and seals its frames, for an encrypted store).
struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
    sealed: Option<std::sync::Arc<DataKey>>,
    /// Frames written: a sealed frame's associated data.
    frames: u64,
}

/// The associated data of a sealed backup's frame.
fn frame_aad(index: u64) -> [u8; 28] {
    let mut aad = [0u8; 28];
    aad[..20].copy_from_slice(b"outpost backup frame");
    aad[20..].copy_from_slice(&index.to_be_bytes());
    aad
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)?;
        Ok(())
    }

    fn frame(&mut self, record: &Record) -> Result<(), BackupError> {
        let mut body = postcard::to_stdvec(record)
            .map_err(|e| BackupError::Damaged(format!("a record does not encode: {e}")))?;
        if let Some(key) = &self.sealed {
            body = key
                .seal(&frame_aad(self.frames), &body)
                .map_err(|e| BackupError::Store(e.into()))?;
        }
        self.frames += 1;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME_BYTES)
            .ok_or_else(|| {
                BackupError::Damaged(format!("a record of {} bytes is too large", body.len()))
            })?;
        self.put(&len.to_be_bytes())?;
        self.put(&body)
    }
}

/// Writes a backup of one or more stores (a device: one; the cloud: one per site).
pub struct BackupWriter<W: Write> {
    out: Hashing<W>,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a plain backup on `out` (writes the header); it refuses an encrypted store
    /// ([`BackupError::WouldLeak`]): see [`BackupWriter::for_store`].
    pub fn new(out: W) -> Result<Self, BackupError> {
        BackupWriter::start(out, None)
    }

    /// Starts a backup on `out` that is sealed under the data key of `store`'s database if
    /// it is encrypted (then it takes every store of that database, a cloud's sites), plain
    /// otherwise.
    pub fn for_store(out: W, store: &Store) -> Result<Self, BackupError> {
        BackupWriter::for_database(out, &store.inner.db)
    }

    /// [`BackupWriter::for_store`] for the stores of `db` (a cloud's sites).
    pub fn for_database(out: W, db: &crate::Database) -> Result<Self, BackupError> {
        BackupWriter::start(out, db.data_key().cloned())
    }

    fn start(out: W, sealed: Option<std::sync::Arc<DataKey>>) -> Result<Self, BackupError> {
        let mut out = Hashing {
            inner: out,
            hash: sha2::Sha256::new(),
            sealed: None,
            frames: 0,
        };
        out.put(BACKUP_MAGIC)?;
        match &sealed {
            None => out.put(&[BACKUP_VERSION])?,
            Some(key) => {
                out.put(&[BACKUP_VERSION_SEALED])?;
                let check = key.check()?;
                for record in [key.wrapped(), &check[..]] {
                    let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
                    out.put(&len.to_be_bytes())?;
                    out.put(record)?;
                }
            }
        }
        out.sealed = sealed;
        Ok(BackupWriter { out })
    }

    /// Adds every document of `store`, with what must survive a restore, while the store
    /// goes on serving (see the module's notes on consistency).
    pub fn add(&mut self, store: &Store) -> Result<BackupSummary, BackupError> {
        let inner = &store.inner;
        if inner.db.is_encrypted() && self.out.sealed.is_none() {
            return Err(BackupError::WouldLeak(inner.namespace.clone()));
        }
        let identity = inner
            .identity
            .as_ref()
            .map(|i| (i.site.to_string(), i.peer.to_string(), i.role.to_string()));
        let mut summary = BackupSummary {
            namespace: inner.namespace.clone(),
            identity: inner.identity.clone(),
            ..BackupSummary::default()
        };
        self.out.frame(&Record::Store {
            namespace: inner.namespace.clone(),
            identity,
        })?;
        for doc in store.documents()? {
            let was_loaded = lock(&inner.docs).contains_key(&doc);
            let slot = match store.slot(&doc) {
                Ok(s) => s,
                Err(crate::Error::CorruptDocument { .. }) => {
                    tracing::warn!(%doc, "left out of the backup: corrupt on disk");
                    summary.corrupt.push(doc.to_string());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (bytes, sigs) = {
                let s = lock(&slot);
                if !s.exists() {
                    continue;
                }
                let bytes = s.doc.save();
                let mut sigs = Vec::new();
                for kv in inner.sigs.scan_prefix(signatures::doc_prefix(&doc)) {
                    let (k, v) = kv?;
                    let held = signatures::decode_value(&v)
                        .is_some_and(|sig| s.doc.get_change_meta_by_hash(&sig.hash).is_some());
                    if held {
                        sigs.push((k.to_vec(), v.to_vec()));
                    }
                }
                (bytes, sigs)
            };
            drop(slot);
            if !was_loaded {
                // A backup does not fill the memory with every document it reads.
                let mut docs = lock(&inner.docs);
                if docs
                    .get(&doc)
                    .is_some_and(|s| std::sync::Arc::strong_count(s) == 1)
                {
                    docs.remove(&doc);
                }
            }
            summary.documents += 1;
            summary.document_bytes += bytes.len() as u64;
            self.out.frame(&Record::Document {
                id: doc.to_string(),
                bytes,
            })?;
            for (key, value) in sigs {
                summary.signatures += 1;
                self.out.frame(&Record::Signature { key, value })?;
            }
        }
        for kv in inner.certs.iter() {
            let (k, v) = kv?;
            summary.certificates += 1;
            self.out.frame(&Record::Certificate {
                key: k.to_vec(),
                value: v.to_vec(),
            })?;
        }
        for prefix in KEPT_META {
            for kv in inner.meta.scan_prefix(prefix) {
                let (k, v) = kv?;
                summary.meta += 1;
                self.out.frame(&Record::Meta {
                    key: k.to_vec(),
                    value: v.to_vec(),
                })?;
            }
        }
        self.out.frame(&Record::EndStore {
            documents: summary.documents,
        })?;
        store.audit_quietly(
            super::AuditEntry::new(crate::Timestamp::now(), super::AuditKind::BackupTaken).detail(
                format!(
                    "{} documents ({} bytes), {} signatures",
                    summary.documents, summary.document_bytes, summary.signatures
                ),
            ),
        );
        Ok(summary)
    }

    /// Ends the backup (writes the checksum) and flushes it; returns the writer.
    pub fn finish(self) -> Result<W, BackupError> {
        let mut out = self.out;
        let sha256: [u8; 32] = out.hash.clone().finalize().into();
        out.frame(&Record::End { sha256 })?;
        out.inner.flush()?;
        Ok(out.inner)
    }
}

impl Store {
    /// Writes a backup of this store to `out` while it goes on serving: every document's
    /// saved bytes, the signatures of their changes, the certificates of signers, feed
    /// positions and erasure tombstones; not the per-peer sync states (see
    /// `core/docs/design.md`, "Backup and restore"). Restore it with [`restore`].
    ///
    /// The backup of an encrypted store is sealed under its data key, wrapped as in the store
    /// by its platform key: it restores only given that key ([`restore_with_key`]).
    pub fn backup(&self, out: impl Write) -> Result<BackupSummary, BackupError> {
        let mut w = BackupWriter::for_store(out, self)?;
        let summary = w.add(self)?;
        w.finish()?;
        Ok(summary)
    }

    /// Writes one document of a backup, which must not exist here yet.
    fn restore_document(&self, doc: &DocumentId, bytes: &[u8]) -> Result<(), BackupError> {
        let loaded = Automerge::load(bytes)
            .map_err(|e| BackupError::Damaged(format!("document {doc} does not load: {e}")))?;
        let mut s = Slot::load(
            doc.clone(),
            self.inner.chunks.clone(),
            self.inner.actor.clone(),
        )?;
        if s.exists() {
            return Err(BackupError::Damaged(format!(
                "document {doc} appears twice"
            )));
        }
        s.doc = loaded.with_actor(self.inner.actor.clone());
        s.append(bytes)?;
        Ok(())
    }
}

/// Reads frames and checks the trailing checksum.
struct Reader<R> {
    inner: R,
    hash: sha2::Sha256,
    sealed: Option<DataKey>,
    frames: u64,
}

impl<R: Read> Reader<R> {
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                BackupError::Damaged(format!("it ends inside {what}"))
            } else {
                BackupError::Io(e)
            }
        })
    }

    /// The next record, and the hash of every byte before it.
    fn next(&mut self) -> Result<(Record, [u8; 32]), BackupError> {
        let before: [u8; 32] = self.hash.clone().finalize().into();
        let mut len = [0u8; 4];
        self.exact(&mut len, "a frame header")?;
        let n = u32::from_be_bytes(len);
        if n > MAX_FRAME_BYTES {
            return Err(BackupError::Damaged(format!("a frame claims {n} bytes")));
        }
        // Read as it comes rather than allocated up front: a damaged length must not cost a
        // gigabyte of memory.
        let mut body = Vec::new();
        (&mut self.inner)
            .take(u64::from(n))
            .read_to_end(&mut body)?;
        if body.len() != n as usize {
            return Err(BackupError::Damaged("it ends inside a frame".into()));
        }
        self.hash.update(len);
        self.hash.update(&body);
        if let Some(key) = &self.sealed {
            body = key.open(&frame_aad(self.frames), &body).ok_or_else(|| {
                BackupError::Damaged(format!("frame {} does not decrypt", self.frames))
            })?;
        }
        self.frames += 1;
        let record = postcard::from_bytes(&body)
            .map_err(|e| BackupError::Damaged(format!("a frame does not decode: {e}")))?;
        Ok((record, before))
    }
}

/// Restores the stores of a backup through `open`, which gives the (empty) store for each
/// namespace and identity of the backup; returns what each received. Refuses a damaged
/// backup once it sees the damage: the caller removes what was written (see [`restore`]).
pub fn restore_stores<R: Read>(
    input: R,
    open: impl FnMut(&str, Option<&PeerInfo>) -> Result<Store, BackupError>,
) -> Result<Vec<BackupSummary>, BackupError> {
    restore_stores_with_key(input, None, open)
}

/// [`restore_stores`] of a backup that may be sealed: `key` is the platform key that wraps
/// its data key (a sealed backup without it: [`BackupError::KeyRequired`]; with another:
/// [`KeyError::WrongKey`]), checked before any store is opened.
pub fn restore_stores_with_key<R: Read>(
    input: R,
    key: Option<&dyn KeyWrap>,
    mut open: impl FnMut(&str, Option<&PeerInfo>) -> Result<Store, BackupError>,
) -> Result<Vec<BackupSummary>, BackupError> {
    let mut r = Reader {
        inner: input,
        hash: sha2::Sha256::new(),
        sealed: None,
        frames: 0,
    };
    let mut magic = [0u8; 15];
    r.inner.read_exact(&mut magic).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BackupError::NotABackup
        } else {
            BackupError::Io(e)
        }
    })?;
    if &magic != BACKUP_MAGIC {
        return Err(BackupError::NotABackup);
    }
    let mut version = [0u8; 1];
    r.exact(&mut version, "the header")?;
    if version[0] != BACKUP_VERSION && version[0] != BACKUP_VERSION_SEALED {
        return Err(BackupError::UnsupportedVersion(version[0]));
    }
    r.hash.update(magic);
    r.hash.update(version);
    if version[0] == BACKUP_VERSION_SEALED {
        let mut records = Vec::new();
        for what in ["the wrapped key", "the key check"] {
            let mut len = [0u8; 4];
            r.exact(&mut len, what)?;
            let n = u32::from_be_bytes(len);
            if n > MAX_HEADER_RECORD {
                return Err(BackupError::Damaged(format!("{what} claims {n} bytes")));
            }
            let mut record = vec![0u8; n as usize];
            r.exact(&mut record, what)?;
            r.hash.update(len);
            r.hash.update(&record);
            records.push(record);
        }
        let Some(key) = key else {
            return Err(BackupError::KeyRequired);
        };
        r.sealed = Some(DataKey::unwrap(
            key,
            &records[0],
            &records[1],
            "the backup",
        )?);
    }
    let mut out: Vec<BackupSummary> = Vec::new();
    let mut current: Option<(Store, BackupSummary)> = None;
    loop {
        let (record, before) = r.next()?;
        match record {
            Record::Store {
                namespace,
                identity,
            } => {
                if current.is_some() {
                    return Err(BackupError::Damaged("a store is not closed".into()));
                }
                let identity = match identity {
                    Some((site, peer, role)) => {
                        Some(PeerInfo::parse(&site, &peer, &role).map_err(|e| {
                            BackupError::Damaged(format!("a store's identity is invalid: {e}"))
                        })?)
                    }
                    None => None,
                };
                let store = open(&namespace, identity.as_ref())?;
                let summary = BackupSummary {
                    namespace,
                    identity,
                    ..BackupSummary::default()
                };
                current = Some((store, summary));
            }
            Record::End { sha256 } => {
                if current.is_some() {
                    return Err(BackupError::Damaged("the last store is not closed".into()));
                }
                if sha256 != before {
                    return Err(BackupError::Damaged("the checksum does not match".into()));
                }
                return Ok(out);
            }
            other => {
                let Some((store, summary)) = current.as_mut() else {
                    return Err(BackupError::Damaged("a record outside any store".into()));
                };
                let inner = &store.inner;
                match other {
                    Record::Document { id, bytes } => {
                        let doc: DocumentId = id.parse().map_err(|e| {
                            BackupError::Damaged(format!("a document name is invalid: {e}"))
                        })?;
                        store.restore_document(&doc, &bytes)?;
                        summary.documents += 1;
                        summary.document_bytes += bytes.len() as u64;
                    }
                    Record::Signature { key, value } => {
                        inner.sigs.insert(key, value)?;
                        summary.signatures += 1;
                    }
                    Record::Certificate { key, value } => {
                        inner.certs.insert(key, value)?;
                        summary.certificates += 1;
                    }
                    Record::Meta { key, value } => {
                        if !KEPT_META.iter().any(|p| key.starts_with(p.as_bytes())) {
                            return Err(BackupError::Damaged(format!(
                                "an unexpected record {:?}",
                                String::from_utf8_lossy(&key)
                            )));
                        }
                        inner.meta.insert(key, value)?;
                        summary.meta += 1;
                    }
                    Record::EndStore { documents } => {
                        if documents != summary.documents {
                            return Err(BackupError::Damaged(format!(
                                "a store announces {documents} documents and holds {}",
                                summary.documents
                            )));
                        }
                        let (store, summary) = current.take().expect("matched Some above");
                        store.flush()?;
                        out.push(summary);
                    }
                    Record::Store { .. } | Record::End { .. } => {
                        unreachable!("matched by the outer arms")
                    }
                }
            }
        }
    }
}

/// Restores a device's backup into the directory `dir`, which must be empty or absent: the
/// restored store then opens there like any other. It takes a fresh actor when it opens (as
/// every store does), so it never reuses the sequence numbers of changes written after the
/// backup, and it holds no sync state, so its peers send it everything it lacks. A damaged
/// backup leaves `dir` as it was (empty).
pub fn restore(dir: &Path, input: impl Read) -> Result<BackupSummary, BackupError> {
    restore_with_key(dir, input, None)
}

/// [`restore`] with a platform key: it opens a sealed backup (one taken of an encrypted
/// store), and the restored store is encrypted under a new data key wrapped by it (a plain
/// backup restored with a key becomes an encrypted store: how a plain store is encrypted).
/// A sealed backup without a key is refused ([`BackupError::KeyRequired`]) and leaves `dir`
/// as it was.
pub fn restore_with_key(
    dir: &Path,
    input: impl Read,
    key: Option<SharedKeyWrap>,
) -> Result<BackupSummary, BackupError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)?;
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty(dir.to_path_buf()));
        }
    }
    let created = !dir.exists();
    let result = (|| {
        let mut opened: Option<Store> = None;
        let mut count = 0;
        let summaries = restore_stores_with_key(input, key.as_deref(), |namespace, _| {
            count += 1;
            if count > 1 {
                return Err(BackupError::StoreCount(count));
            }
            if !namespace.is_empty() {
                return Err(BackupError::CloudBackup(namespace.to_string()));
            }
            let options = StoreOptions {
                data_key: key.clone(),
                ..StoreOptions::default()
            };
            let store = Store::open_with(dir, options)?;
            opened = Some(store.clone());
            Ok(store)
        })?;
        drop(opened);
        match <[BackupSummary; 1]>::try_from(summaries) {
            Ok([s]) => Ok(s),
            Err(v) => Err(BackupError::StoreCount(v.len())),
        }
    })();
    if result.is_err() {
        // Leave nothing half restored; sled may still hold its lock a moment, which does
        // not stop removing its files.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        if created {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}
