//! Documents persisted in sled.
//!
//! Layout (see `core/docs/design.md`): one sled tree per document, named
//! `<namespace>doc/<document id>`, whose keys are big-endian `u64` sequence numbers and whose
//! values are Automerge chunks: at most one compacted snapshot (the lowest key) followed by
//! incremental changes appended per commit. Loading concatenates the chunks in key order and
//! hands them to `Automerge::load`. Compaction writes a new snapshot and removes the older
//! chunks in one atomic sled batch, so a crash leaves either the old or the new layout.

mod audit;
mod author;
mod backup;
mod feed;
mod flush;
mod mirror;
mod paths;
mod receive;
mod screen;
pub(crate) use screen::MayQueue;
mod signatures;
mod slot;
mod snapshot;
mod subscription;
mod ticket;
mod transaction;
mod web;
pub use self::web::{WebReceived, WebSyncState, WebWriter};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use serde_json::Value as Json;

pub(crate) use self::audit::refusal_rule;
pub use self::audit::{AuditEntry, AuditKind, AuditLimits, AuditQuery, AuditTrail};
pub use self::author::Author;
pub use self::backup::{
    restore, restore_stores, restore_stores_with_key, restore_with_key, BackupError, BackupSummary,
    BackupWriter, BACKUP_MAGIC, BACKUP_VERSION, BACKUP_VERSION_SEALED,
};
pub use self::feed::{Feed, FeedBatch, FeedDocs, FeedFilter};
use self::flush::FlushGroup;
pub use self::mirror::{
    Mirror, MirrorBatch, MirrorTree, MirroredChange, MirroredEntry, SharedMirror,
};
pub(crate) use self::signatures::{NewChange, SignatureRecord, StoredSignature};
use self::slot::Slot;
use self::subscription::Subscribers;
pub use self::subscription::{ChangeEvent, Origin, Subscription, SubscriptionFilter};
use self::ticket::Tickets;
pub(crate) use self::ticket::MARKER_FILE;
pub use self::ticket::{Ticket, TicketPrefix};
pub use self::transaction::Tx;
use crate::actor::actor_for;
use crate::signing::{signed_bytes, SharedSigner};
use crate::storage::{Batch, Database, DatabaseOptions, Engine, Keyspace};
use crate::value;
use crate::{DocumentId, Error, PeerId, PeerInfo, Pointer, Policy, Result};

/// Changes larger than this (a catch-up, a big import) report the document's top-level keys
/// as their changed paths instead of every path they touch: listing 12,000 paths of a day of
/// orders costs more than applying them, and no app wants them one by one.
pub(crate) const BULK_PATHS_BYTES: usize = 64 * 1024;

/// When a write returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Return only after the change is flushed to disk: survives a crash or power loss.
    #[default]
    Durable,
    /// Return once the change is in the store; flushed in the background within
    /// `StoreOptions::flush_every_ms`. Much faster; the last moments may be lost on a crash.
    Fast,
    /// Durable here, then return once another device of the site or the cloud holds the
    /// change on its disk too, or after a timeout with "stored on this device only" (see
    /// `outpost_transport::Node::transact` and [`crate::Acknowledged`]). Only a node can
    /// wait for peers: a [`Store`] refuses it with [`Error::ReplicatedNeedsNode`] before
    /// writing anything.
    Replicated,
}

/// What [`Store::transact_once`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome<T> {
    /// The write was applied now; the closure's result.
    Applied(T),
    /// A change with this write id was already in the document: nothing was done.
    AlreadyApplied,
}

/// Options for [`Store::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The device this store belongs to. Its site, id and role are bound into the Automerge
    /// actor id of every local change. `None` for tools that act as an anonymous local device.
    pub identity: Option<PeerInfo>,
    /// Local writes to a context the identity's role may not write fail with
    /// [`Error::NotPermitted`]. Ignored without an identity.
    pub policy: Policy,
    /// Compact a document into a snapshot once it has at least this many chunks and the
    /// chunks after its snapshot hold as many bytes as the snapshot, or once it has 16 times
    /// this many chunks: compaction saves the whole document, so it waits until as many
    /// bytes were written as it will rewrite.
    pub compaction_threshold: usize,
    /// Background flush interval for [`Durability::Fast`] writes.
    pub flush_every_ms: u64,
    /// Page cache size in bytes.
    pub cache_capacity: u64,
    /// The storage engine of a NEW data directory; an existing one is opened with the
    /// engine whose files it holds (see [`Engine::detect`]). Ignored by [`Store::on_db`].
    pub engine: Engine,
    /// The random tail of this session's actor id. `None` (the default, and the only safe
    /// choice outside simulations) draws a fresh one every time the store opens: Automerge
    /// requires each (actor, sequence number) to be unique, and a store restored from an old
    /// backup, or reopened after a crash that lost changes a peer already received, would
    /// otherwise write new changes under sequence numbers it already used, forking the
    /// document. Simulations pass a seeded tail to replay exactly.
    pub actor_tail: Option<[u8; 8]>,
    /// Signs every local commit with the device's certificate key (see
    /// `outpost_core::signing`). `None`: local changes travel unsigned, which peers accept
    /// only under `SignatureRule::Transitional` and while they know no certificate of this
    /// device.
    pub signer: Option<SharedSigner>,
    /// This device's ticket prefix (`K1`), unique within the site: [`Tx::next_ticket`]
    /// issues `K1-001`, `K1-002`, ... `None`: the store issues no tickets.
    pub ticket_prefix: Option<TicketPrefix>,
    /// Tell a store whose files were copied back (restored from a backup) by the identity
    /// of a marker file in its directory, and move its tickets to a new generation (default
    /// true). Off models a restore that keeps file identities (a disk image, a filesystem
    /// snapshot), which only a sync with a peer can catch up.
    pub detect_restore: bool,
    /// The durable truth behind a store kept as a cache (see [`Mirror`]): what the store
    /// writes is committed there on every flush, and the store tells peers no heads while
    /// a commit fails. `None` (the default): sled is the truth.
    pub mirror: Option<SharedMirror>,
    /// The store that holds the documents of fleet-scope contexts (see
    /// [`crate::ContextRule::scope`]) for this one: every read, write and sync of such a
    /// document goes to it, so many stores (a cloud's sites) share one copy. `None` (the
    /// default, and devices): every document lives here. Sync states and bookkeeping stay in
    /// this store (they are per peer). Change notifications of fleet documents go to the fleet
    /// store's subscribers.
    pub fleet: Option<Store>,
    /// The platform key that wraps the data key of an encrypted store (see
    /// `core/docs/design.md`, "Encryption at rest"): a new store given one is encrypted, an
    /// encrypted store opens only with it. Ignored by [`Store::on_db`] (the database is
    /// opened with its key already).
    pub data_key: Option<crate::storage::SharedKeyWrap>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            identity: None,
            policy: Policy::allow_all(),
            compaction_threshold: 256,
            flush_every_ms: 100,
            cache_capacity: 64 * 1024 * 1024,
            engine: Engine::for_new_directories(),
            actor_tail: None,
            signer: None,
            ticket_prefix: None,
            detect_restore: true,
            mirror: None,
            fleet: None,
            data_key: None,
        }
    }
}

/// Moves documents of the earlier layout (one sled tree `<namespace>doc/<id>` per document)
/// into the key ranges of `chunks`, each in one batch, and drops the old trees: a store
/// written by an earlier version opens with nothing lost.
fn migrate_tree_per_document(
    db: &Database,
    namespace: &str,
    chunks: &Keyspace,
    durable: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let prefix = format!("{namespace}doc/");
    for name in db.keyspaces()? {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(doc) = rest.parse::<DocumentId>() else {
            continue;
        };
        let old = db.keyspace(&name);
        if !old.is_empty()? {
            let mut batch = Batch::default();
            batch.insert(chunks, slot::marker_key(&doc), []);
            let cp = slot::chunk_prefix(&doc);
            for kv in old.iter() {
                let (k, v) = kv?;
                let mut key = cp.clone();
                key.extend_from_slice(&k);
                batch.insert(chunks, key, v);
            }
            chunks.apply_batch(batch)?;
            durable()?;
        }
        db.drop_keyspace(&name)?;
        tracing::info!(%doc, "moved a document to the key-range layout");
    }
    Ok(())
}

/// Meta key prefix of the engine's progress records (`progress/<peer>/<doc>`: last sync time,
/// "unsynced since"). Defined here, below the engine, so that the store never imports the
/// engine (the mirror leaves these records out).
pub(crate) const PROGRESS_PREFIX: &str = "progress/";

/// Meta key prefix of documents with local changes written without a signer.
pub(crate) const UNSIGNED_KEY: &str = "unsigned/";

/// Meta key prefix of the quarantined documents.
const QUARANTINE_KEY: &str = "quarantine/";

/// Meta key prefix of erased documents' tombstones (`erased/<doc>` -> erasure time, ms).
pub(crate) const ERASED_KEY: &str = "erased/";

/// The document through which the cloud tells devices which documents are erased
/// fleet-wide: a map from document id to `{"at": <ms>}` (see `core/docs/design.md`,
/// "Erasure").
pub const ERASURES_DOC: &str = "erasures";

/// A set of documents persisted on disk. Cheap to clone; thread-safe.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    namespace: String,
    meta: Keyspace,
    sync: Keyspace,
    /// Every document's chunks, as key ranges (see `slot`).
    chunks: Keyspace,
    /// Signatures of changes (see `signatures.rs`).
    sigs: Keyspace,
    /// Certificates of signers, and the peers known to sign.
    certs: Keyspace,
    signer: Option<SharedSigner>,
    /// Documents this session wrote unsigned (no signer) and has marked so in `meta`.
    unsigned_marked: Mutex<std::collections::HashSet<DocumentId>>,
    actor: ActorId,
    identity: Option<PeerInfo>,
    policy: Policy,
    compaction_threshold: usize,
    docs: Mutex<HashMap<DocumentId, Arc<Mutex<Slot>>>>,
    subscribers: Subscribers,
    flushes: FlushGroup,
    /// Documents moved aside as corrupt and not yet received again from a peer: local
    /// reads and writes fail until then (a write into an empty copy would fork it).
    quarantined: Mutex<std::collections::HashSet<DocumentId>>,
    /// This device's ticket numbers, if it has a prefix.
    tickets: Option<Tickets>,
    /// Documents erased here (tombstones): refused from peers, never written again.
    erased: Mutex<std::collections::HashSet<DocumentId>>,
    /// The durable truth behind this store, and what waits to be committed there.
    mirror: Option<(SharedMirror, mirror::MirrorQueue)>,
    /// Where fleet documents live (see [`StoreOptions::fleet`]).
    fleet: Option<Store>,
    /// The audit trail of sync (see `audit.rs`).
    audit: AuditTrail,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("namespace", &self.inner.namespace)
            .field("identity", &self.inner.identity)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a document lock leaves Automerge state that is still
    // consistent (transactions roll back on drop), so poisoning is safe to ignore.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) a store in the directory `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) a store in the directory `path`, with the engine whose files it
    /// holds (or `options.engine` for a new directory).
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let db = Database::open(
            path.as_ref(),
            &DatabaseOptions {
                key: options.data_key.clone(),
                engine: options.engine,
                cache_capacity: options.cache_capacity,
                flush_every_ms: options.flush_every_ms,
            },
        )?;
        let restored = if options.detect_restore {
            let sync = || db.sync();
            ticket::files_restored(path.as_ref(), &db.keyspace("meta"), &sync)?
        } else {
            false
        };
        Store::on_db_inner(db, "", options, restored)
    }

    /// A store over a namespace of an already open database, so that one process can keep
    /// many sites apart in one database (the cloud peer does this). A sled handle converts
    /// (without the `fdatasync` of durable flushes: open a [`Database`] instead).
    pub fn on_db(db: impl Into<Database>, namespace: &str, options: StoreOptions) -> Result<Store> {
        Store::on_db_inner(db.into(), namespace, options, false)
    }

    fn on_db_inner(
        db: Database,
        namespace: &str,
        options: StoreOptions,
        restored: bool,
    ) -> Result<Store> {
        let durable = || db.sync();
        let meta = db.keyspace(format!("{namespace}meta"));
        let sync = db.keyspace(format!("{namespace}sync"));
        let chunks = db.keyspace(format!("{namespace}chunks"));
        let sigs = db.keyspace(format!("{namespace}sigs"));
        let certs = db.keyspace(format!("{namespace}certs"));
        let audit = AuditTrail::open(db.keyspace(format!("{namespace}audit")))?;
        migrate_tree_per_document(&db, namespace, &chunks, &durable)?;
        // A new actor every session (see `StoreOptions::actor_tail`): 2^-64 odds of a
        // collision per pair of sessions of one device.
        let tail: [u8; 8] = options.actor_tail.unwrap_or_else(rand::random);
        let mut quarantined = std::collections::HashSet::new();
        for kv in meta.scan_prefix(QUARANTINE_KEY) {
            let (k, _) = kv?;
            if let Some(doc) = std::str::from_utf8(&k[QUARANTINE_KEY.len()..])
                .ok()
                .and_then(|d| d.parse::<DocumentId>().ok())
            {
                quarantined.insert(doc);
            }
        }
        let mut erased = std::collections::HashSet::new();
        for kv in meta.scan_prefix(ERASED_KEY) {
            let (k, _) = kv?;
            if let Some(doc) = std::str::from_utf8(&k[ERASED_KEY.len()..])
                .ok()
                .and_then(|d| d.parse::<DocumentId>().ok())
            {
                erased.insert(doc);
            }
        }
        let anonymous =
            PeerInfo::parse("local", "local", "local").expect("literal identity is valid");
        let actor = actor_for(options.identity.as_ref().unwrap_or(&anonymous), tail);
        let tickets = match options.ticket_prefix {
            Some(prefix) => Some(Tickets::open(&meta, prefix, restored, &durable)?),
            None => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                db,
                namespace: namespace.to_string(),
                meta,
                sync,
                chunks,
                sigs,
                certs,
                signer: options.signer,
                unsigned_marked: Mutex::new(std::collections::HashSet::new()),
                actor,
                identity: options.identity,
                policy: options.policy,
                compaction_threshold: options.compaction_threshold.max(1),
                docs: Mutex::new(HashMap::new()),
                subscribers: Subscribers::default(),
                flushes: FlushGroup::default(),
                quarantined: Mutex::new(quarantined),
                tickets,
                erased: Mutex::new(erased),
                mirror: options.mirror.map(|m| (m, mirror::MirrorQueue::default())),
                fleet: options.fleet,
                audit,
            }),
        };
        // Our own certificate is known like any other signer's: peers that relay our
        // changes back, and the status, find it here.
        if let (Some(signer), Some(me)) = (&store.inner.signer, &store.inner.identity) {
            let der = signer.certificate();
            store.put_certificate(&signer.key_id(), der, &me.peer)?;
        }
        Ok(store)
    }

    /// The audit trail of this store's sync (links, refusals, revocations, renewals,
    /// erasures, backups, acknowledgements): bounded, persisted, queryable.
    pub fn audit(&self) -> &AuditTrail {
        &self.inner.audit
    }

    /// Records `entry` in the audit trail; a failure is logged, never the caller's (the
    /// trail must not stop sync).
    pub(crate) fn audit_quietly(&self, entry: AuditEntry) {
        if let Err(e) = self.inner.audit.record(entry) {
            tracing::warn!(error = %e, "cannot write the audit trail");
        }
    }

    /// The identity this store writes as, if any.
    pub fn identity(&self) -> Option<&PeerInfo> {
        self.inner.identity.as_ref()
    }

    /// This device's ticket prefix, if it issues tickets.
    pub fn ticket_prefix(&self) -> Option<&TicketPrefix> {
        self.inner.tickets.as_ref().map(Tickets::prefix)
    }

    /// The last ticket this store issued or learnt from a peer (`None` before the first).
    pub fn last_ticket(&self) -> Option<Ticket> {
        self.inner.tickets.as_ref().and_then(Tickets::last)
    }

    /// The Automerge actor id of local changes.
    pub fn actor(&self) -> &ActorId {
        &self.inner.actor
    }

    /// The fleet store that holds `doc`, if this store delegates fleet documents and `doc`
    /// is of a fleet-scope context.
    fn fleet_of(&self, doc: &DocumentId) -> Option<&Store> {
        let fleet = self.inner.fleet.as_ref()?;
        self.inner.policy.is_fleet(doc.context()).then_some(fleet)
    }

    /// The documents that hold data, sorted. Reads one marker per document. A store that
    /// delegates fleet documents lists those of its fleet store too.
    pub fn documents(&self) -> Result<Vec<DocumentId>> {
        let mut out = Vec::new();
        if let Some(fleet) = &self.inner.fleet {
            out.extend(
                fleet
                    .documents()?
                    .into_iter()
                    .filter(|d| self.inner.policy.is_fleet(d.context())),
            );
        }
        for kv in self.inner.chunks.scan_prefix([slot::MARKER]) {
            let (k, _) = kv?;
            if let Some(id) = std::str::from_utf8(&k[1..])
                .ok()
                .and_then(|d| d.parse::<DocumentId>().ok())
            {
                // A fleet document here (written before its context became fleet scope)
                // is shadowed by the fleet's.
                if self.fleet_of(&id).is_none() {
                    out.push(id);
                }
            }
        }
        if self.inner.fleet.is_some() {
            out.sort();
        }
        Ok(out)
    }

    /// The heads of a document as last stored, without loading it (the engine's Hello reads
    /// them for every document); `None` if the document holds no data here. A document
    /// loaded in memory answers from memory.
    pub fn stored_heads(&self, doc: &DocumentId) -> Result<Option<Vec<ChangeHash>>> {
        // The engine tells peers these heads (its Hello): none while the mirror lags.
        self.confirm_mirror()?;
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.stored_heads(doc);
        }
        // Not under the map's lock: a slot's holder may take the map's lock (`forget`).
        let cached = lock(&self.inner.docs).get(doc).cloned();
        if let Some(s) = cached {
            let s = lock(&s);
            return Ok(s.exists().then(|| s.doc.get_heads()));
        }
        match self.inner.chunks.get(slot::marker_key(doc))? {
            None => Ok(None),
            Some(v) => match slot::decode_heads(&v) {
                Some(h) => Ok(Some(h)),
                None => self.heads(doc).map(Some),
            },
        }
    }

    /// Whether a document holds data here, without loading it.
    pub fn has_document(&self, doc: &DocumentId) -> Result<bool> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.has_document(doc);
        }
        self.inner.chunks.contains_key(slot::marker_key(doc))
    }

    /// Whether the document holds data.
    pub fn contains(&self, doc: &DocumentId) -> Result<bool> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.contains(doc);
        }
        Ok(lock(&*self.slot(doc)?).exists())
    }

    fn slot(&self, doc: &DocumentId) -> Result<Arc<Mutex<Slot>>> {
        if lock(&self.inner.quarantined).contains(doc) {
            return Err(Error::CorruptDocument {
                doc: doc.clone(),
                reason: "moved aside as corrupt; waiting for a peer to send it again".into(),
            });
        }
        self.slot_for_sync(doc)
    }

    /// The document's slot, also while it is quarantined (received changes bring it back).
    fn slot_for_sync(&self, doc: &DocumentId) -> Result<Arc<Mutex<Slot>>> {
        if let Some(s) = lock(&self.inner.docs).get(doc) {
            return Ok(s.clone());
        }
        let tree = self.inner.chunks.clone();
        let slot = match Slot::load(doc.clone(), tree, self.inner.actor.clone()) {
            Ok(slot) => Arc::new(Mutex::new(slot)),
            Err(e @ Error::CorruptDocument { .. }) => {
                self.quarantine(doc)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        Ok(lock(&self.inner.docs)
            .entry(doc.clone())
            .or_insert(slot)
            .clone())
    }

    fn check_write(&self, doc: &DocumentId) -> Result<()> {
        if self.is_erased(doc) {
            return Err(Error::Erased { doc: doc.clone() });
        }
        if let Some(me) = &self.inner.identity {
            if !self.inner.policy.may_write(&me.role, doc.context()) {
                return Err(Error::NotPermitted {
                    role: me.role.clone(),
                    doc: doc.clone(),
                });
            }
        }
        Ok(())
    }

    /// Runs `f` on a document, creating it if needed; all its operations commit atomically
    /// as one change, or none do if `f` fails.
    ///
    /// A write that returns an error may still have been applied: the change is in sled when
    /// a durable write's flush fails (a full disk), and it may or may not be there after a
    /// restart. Retrying a write that must not count twice (an increment, a payment) is what
    /// [`Store::transact_once`] is for.
    pub fn transact<T>(
        &self,
        doc: &DocumentId,
        durability: Durability,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        match self.transact_inner(doc, durability, None, f)? {
            WriteOutcome::Applied(v) => Ok(v),
            WriteOutcome::AlreadyApplied => unreachable!("only writes with an id are skipped"),
        }
    }

    /// Like [`Store::transact`], but at most once per `write_id` in this document: if a change
    /// with this id is already in the document, `f` is not run and the result is
    /// [`WriteOutcome::AlreadyApplied`] (for a durable write, once the document is flushed).
    ///
    /// The id travels inside the change (its message), so it is atomic with it: whether an
    /// earlier attempt failed before, during or after its flush, and whether the process
    /// restarted since, retrying with the same id applies the write exactly once. Choose ids
    /// that name the intent (`sale/K1-042/burger`), not the attempt. The first write with an
    /// id after a document loads reads the messages of its changes once.
    pub fn transact_once<T>(
        &self,
        doc: &DocumentId,
        write_id: &str,
        durability: Durability,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<WriteOutcome<T>> {
        self.transact_inner(doc, durability, Some(write_id), f)
    }

    /// Like [`Store::transact_once`], authored as `author` instead of this store's identity:
    /// the change carries the author's actor, is checked against the per-path rules of the
    /// author's role (and device), and is signed with the author's key, whose certificate is
    /// stored so that it travels with the change. Receivers judge it as the author's.
    pub fn transact_as<T>(
        &self,
        author: &Author,
        doc: &DocumentId,
        write_id: &str,
        durability: Durability,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<WriteOutcome<T>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.transact_as(author, doc, write_id, durability, f);
        }
        let signer = author.signer();
        self.put_certificate(&signer.key_id(), signer.certificate(), &author.info().peer)?;
        self.transact_by(doc, durability, Some(write_id), Some(author), f)
    }

    fn transact_inner<T>(
        &self,
        doc: &DocumentId,
        durability: Durability,
        write_id: Option<&str>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<WriteOutcome<T>> {
        self.transact_by(doc, durability, write_id, None, f)
    }

    fn transact_by<T>(
        &self,
        doc: &DocumentId,
        durability: Durability,
        write_id: Option<&str>,
        author: Option<&Author>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<WriteOutcome<T>> {
        if durability == Durability::Replicated {
            // A store has no peers to wait for; the node writes Durable, then waits.
            return Err(Error::ReplicatedNeedsNode { doc: doc.clone() });
        }
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.transact_by(doc, durability, write_id, author, f);
        }
        self.check_write(doc)?;
        if let Some(a) = author {
            // As the author's role, as a receiver will judge it.
            if !self.inner.policy.may_write(&a.info().role, doc.context()) {
                return Err(Error::NotPermitted {
                    role: a.info().role.clone(),
                    doc: doc.clone(),
                });
            }
        }
        let slot = self.slot(doc)?;
        let mut s = lock(&slot);
        // In memory only until the write commits: a write that fails creates no document.
        let genesis = if s.exists() {
            Vec::new()
        } else {
            self.apply_genesis(doc, &mut s)?
        };
        if let Some(id) = write_id {
            if s.has_write(id) {
                drop(s);
                if durability == Durability::Durable {
                    self.sync_to_disk()?;
                }
                return Ok(WriteOutcome::AlreadyApplied);
            }
        }
        let record_paths = self.inner.subscribers.wants_paths(doc);
        let message = write_id.map(|id| format!("{}{id}", slot::WRITE_ID_PREFIX));
        if let Some(a) = author {
            // Only for this transaction: the document's actor is the store's again below,
            // whatever `f` returns.
            s.doc.set_actor(a.actor().clone());
        }
        let (out, hash, paths) = {
            let guard = author
                .map(Author::info)
                .or(self.inner.identity.as_ref())
                .map(|me| (&self.inner.policy, me));
            let mut tx = Tx::new(
                s.doc.transaction(),
                doc,
                record_paths,
                guard,
                self.inner.tickets.as_ref(),
            );
            let result = f(&mut tx);
            let committed = result.map(|v| {
                let (hash, paths) = tx.commit(message);
                (v, hash, paths)
            });
            if author.is_some() {
                s.doc.set_actor(self.inner.actor.clone());
            }
            if committed.is_err() && !genesis.is_empty() {
                self.forget(doc);
            }
            committed?
        };
        // An empty transaction commits no change: nothing to persist or announce, unless it
        // created the document (`/orders {}` on a new day is a no-op over the genesis's
        // `/orders`, and the day must still exist and reach peers).
        let change = hash.and_then(|h| s.doc.get_change_by_hash(&h));
        if change.is_none() && genesis.is_empty() {
            return Ok(WriteOutcome::Applied(out));
        }
        for g in &genesis {
            self.persist(&mut s, g.raw_bytes())
                .inspect_err(|_| self.forget(doc))?;
            self.mirror_change(doc, g);
        }
        if let Some(change) = &change {
            // Signed before it is stored: a change of another identity must never travel
            // unsigned (receivers would refuse it, and every later one of that actor with
            // it).
            let record = match author {
                Some(a) => {
                    Some(Self::signature_as(doc, change, a).inspect_err(|_| self.forget(doc))?)
                }
                None => None,
            };
            self.persist(&mut s, change.raw_bytes())
                .and_then(|()| match record {
                    Some(r) => self.put_signatures(doc, &[r]),
                    None => self.sign_local(doc, change),
                })
                .inspect_err(|_| self.forget(doc))?;
            self.mirror_change(doc, change);
            if let Some(id) = write_id {
                s.note_write(id);
            }
        }
        let heads = s.doc.get_heads();
        if durability == Durability::Fast {
            self.inner
                .subscribers
                .notify(doc, &heads, paths, Origin::Local);
            return Ok(WriteOutcome::Applied(out));
        }
        // Durable: flush without holding the document, so that writers arriving meanwhile
        // (to this document or others) add their changes to sled's log and share the next
        // flush. Subscribers hear of the change once it is on disk: a node offers it to
        // peers only then.
        drop(s);
        self.sync_to_disk().inspect_err(|_| self.forget(doc))?;
        self.inner
            .subscribers
            .notify(doc, &heads, paths, Origin::Local);
        Ok(WriteOutcome::Applied(out))
    }

    /// Starts a document this device creates with its genesis changes (`crate::genesis`),
    /// one per container the policy declares for its context, in memory: the caller
    /// persists them (unsigned: receivers compute them themselves) with the write that
    /// follows.
    fn apply_genesis(&self, doc: &DocumentId, s: &mut Slot) -> Result<Vec<automerge::Change>> {
        let genesis = crate::genesis::changes(&self.inner.policy, doc);
        if !genesis.is_empty() {
            s.doc
                .apply_changes(genesis.iter().cloned())
                .map_err(|e| Error::automerge(doc, e))?;
        }
        Ok(genesis)
    }

    /// Signs a local commit (when the store has a signer) and stores the signature beside
    /// it, in the same sled log as its chunk.
    fn sign_local(&self, doc: &DocumentId, change: &automerge::Change) -> Result<()> {
        let Some(signer) = &self.inner.signer else {
            // A device's change written without its key (an offline tool): marked, so that
            // the device signs it the next time it sends the document with its key
            // (`sign_own_history`).
            if self.inner.identity.is_some()
                && lock(&self.inner.unsigned_marked).insert(doc.clone())
            {
                self.meta_set(&format!("{UNSIGNED_KEY}{doc}"), Some(b"1"))?;
            }
            return Ok(());
        };
        let hash = change.hash();
        let signature = match signer.sign(&signed_bytes(doc, &hash)) {
            Ok(s) => s,
            Err(e) => {
                // The change is stored: it travels unsigned, which peers refuse once they
                // know this device signs. Failing the write would not make the key work.
                tracing::error!(%doc, error = %e, "a local change could not be signed");
                return Ok(());
            }
        };
        let record = StoredSignature {
            hash,
            key: signer.key_id(),
            signature,
        };
        self.put_signatures(doc, &[(change.actor_id().clone(), change.seq(), record)])
    }

    /// The signature of a change written as `author` (see [`Store::transact_as`]).
    fn signature_as(
        doc: &DocumentId,
        change: &automerge::Change,
        author: &Author,
    ) -> Result<SignatureRecord> {
        let hash = change.hash();
        let signer = author.signer();
        let signature =
            signer
                .sign(&signed_bytes(doc, &hash))
                .map_err(|source| Error::SigningAs {
                    doc: doc.clone(),
                    author: author.info().clone(),
                    source,
                })?;
        let record = StoredSignature {
            hash,
            key: signer.key_id(),
            signature,
        };
        Ok((change.actor_id().clone(), change.seq(), record))
    }

    /// Vouches for imported changes with this device's key: the newest change of each actor
    /// that is not another outpost device's (only that device can sign those; receivers
    /// accept a non-outpost actor's changes signed by a relay role).
    fn sign_imported(&self, doc: &DocumentId, changes: &[automerge::Change]) -> Result<()> {
        if self.inner.signer.is_none() {
            return Ok(());
        }
        let mut newest: HashMap<&ActorId, &automerge::Change> = HashMap::new();
        for c in changes {
            let foreign =
                crate::parse_actor(c.actor_id()).is_some() && c.actor_id() != self.actor();
            // A genesis needs no voucher: receivers compute it themselves.
            if foreign || crate::genesis::is_actor(c.actor_id()) {
                continue;
            }
            let e = newest.entry(c.actor_id()).or_insert(c);
            if c.seq() > e.seq() {
                *e = c;
            }
        }
        for c in newest.into_values() {
            self.sign_local(doc, c)?;
        }
        Ok(())
    }

    /// Appends `bytes` to the document's chunks, compacting past the threshold. Not flushed:
    /// durable writes then call [`FlushGroup::flush`].
    fn persist(&self, s: &mut Slot, bytes: &[u8]) -> Result<()> {
        s.append(bytes)?;
        if s.compaction_due(self.inner.compaction_threshold) {
            s.compact()?;
        }
        Ok(())
    }

    /// Moves a document that does not load aside (`<namespace>quarantine/<doc>@<ms>`, kept
    /// for inspection) and forgets what peers were told of it, so that the next sync fetches
    /// it again from the peers that hold it instead of failing on every read.
    fn quarantine(&self, doc: &DocumentId) -> Result<()> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let aside = self
            .inner
            .db
            .keyspace(format!("{}quarantine/{doc}@{ms}", self.inner.namespace));
        let mut batch = Batch::default();
        for kv in self.inner.chunks.scan_prefix(slot::chunk_prefix(doc)) {
            let (k, v) = kv?;
            batch.insert(&aside, k, v);
        }
        aside.apply_batch(batch)?;
        self.sync_to_disk()?;
        self.inner.meta.insert(
            format!("{QUARANTINE_KEY}{doc}").as_bytes(),
            ms.to_be_bytes(),
        )?;
        lock(&self.inner.quarantined).insert(doc.clone());
        tracing::error!(%doc, quarantine = %format!("quarantine/{doc}@{ms}"), "document is corrupt on disk: moved aside, to be fetched again from peers");
        self.delete_document(doc)?;
        self.inner
            .subscribers
            .notify(doc, &[], Vec::new(), Origin::Quarantine);
        Ok(())
    }

    /// Deletes a document here: its data and its sync state with every peer, in one atomic
    /// step per tree; returns whether it held data. Peers that hold the document and may
    /// write it send it back on their next sync: deleting is local (retention and erasure
    /// across a fleet build on it).
    ///
    /// In a store that delegates fleet documents, deleting a fleet document only forgets
    /// this store's sync states of it: the fleet's one copy stays (the other sites read it).
    pub fn delete_document(&self, doc: &DocumentId) -> Result<bool> {
        let fleet = self.fleet_of(doc).is_some();
        let existed = !fleet && self.has_document(doc)?;
        self.forget(doc);
        let mut batch = Batch::default();
        let chunks = &self.inner.chunks;
        batch.remove(chunks, slot::marker_key(doc));
        for k in chunks.scan_prefix(slot::chunk_prefix(doc)).keys() {
            batch.remove(chunks, k?);
        }
        self.inner.chunks.apply_batch(batch)?;
        self.delete_signatures(doc)?;
        let suffix = format!("\0{doc}");
        let mut batch = Batch::default();
        for kv in self.inner.sync.iter() {
            let (k, _) = kv?;
            if k.ends_with(suffix.as_bytes()) {
                batch.remove(&self.inner.sync, k);
            }
        }
        self.inner.sync.apply_batch(batch)?;
        self.sync_to_disk()?;
        Ok(existed)
    }

    /// Raises this device's ticket counter to what a received document records of it.
    fn learn_tickets(&self, doc: &Automerge) -> Result<()> {
        if let Some(t) = &self.inner.tickets {
            t.learn(doc)?;
        }
        Ok(())
    }

    /// Whether `doc` was erased here (see [`Store::erase`]).
    pub fn is_erased(&self, doc: &DocumentId) -> bool {
        lock(&self.inner.erased).contains(doc)
    }

    /// The documents erased here, sorted.
    pub fn erased(&self) -> Vec<DocumentId> {
        let mut out: Vec<DocumentId> = lock(&self.inner.erased).iter().cloned().collect();
        out.sort();
        out
    }

    /// Erases a document here for good: deletes it like [`Store::delete_document`] and keeps
    /// a tombstone, so that it is never written again here (local writes fail with
    /// [`Error::Erased`]) and the engine refuses it from peers. `now_ms` is recorded in the
    /// tombstone. Erasing a whole fleet goes through the engine (`Engine::erase`, on the
    /// cloud), which also tells devices. Returns whether the document held data.
    pub fn erase(&self, doc: &DocumentId, now_ms: u64) -> Result<bool> {
        // The tombstone first: a crash in between leaves a tombstone whose document the
        // next erasure pass deletes, never a deleted document that could come back.
        self.inner.meta.insert(
            format!("{ERASED_KEY}{doc}").as_bytes(),
            now_ms.to_be_bytes(),
        )?;
        lock(&self.inner.erased).insert(doc.clone());
        let existed = self.delete_document(doc)?;
        // Consumers' positions in it mean nothing any more,
        let mut batch = Batch::default();
        // and what was synced of it with whom neither.
        let suffix = format!("/{doc}");
        for prefix in [&b"feed/"[..], PROGRESS_PREFIX.as_bytes()] {
            for kv in self.inner.meta.scan_prefix(prefix) {
                let (k, _) = kv?;
                if k.ends_with(suffix.as_bytes()) {
                    batch.remove(&self.inner.meta, k);
                }
            }
        }
        self.inner.meta.apply_batch(batch)?;
        self.audit_quietly(
            AuditEntry::new(crate::Timestamp(now_ms), AuditKind::Erased)
                .doc(doc)
                .detail(if existed {
                    "deleted its data"
                } else {
                    "held no data"
                }),
        );
        self.sync_to_disk()?;
        Ok(existed)
    }

    /// Drops the cached copy of a document so the next access reloads it from disk.
    fn forget(&self, doc: &DocumentId) {
        lock(&self.inner.docs).remove(doc);
    }

    /// Tells subscribers about `changes` (new to the document, which holds them now): with
    /// the paths they wrote, or the document's top-level keys for `bulk` ones.
    fn notify_received(
        &self,
        s: &Slot,
        doc: &DocumentId,
        changes: &[automerge::Change],
        bulk: bool,
        origin: Origin,
    ) {
        let subscribers = &self.inner.subscribers;
        if !subscribers.interested(doc) {
            return;
        }
        let paths: Vec<Pointer> = if !subscribers.wants_paths(doc) {
            Vec::new()
        } else if bulk {
            s.doc
                .keys(automerge::ROOT)
                .map(|k| Pointer::root().child(k))
                .collect()
        } else {
            paths::changed_paths(&s.doc, changes)
        };
        subscribers.notify(doc, &s.doc.get_heads(), paths, origin);
    }

    /// Reads the value at `path` as JSON; `None` if nothing is there.
    pub fn get(&self, doc: &DocumentId, path: &str) -> Result<Option<Json>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.get(doc, path);
        }
        let path = Pointer::parse(path)?;
        let slot = self.slot(doc)?;
        let s = lock(&slot);
        if !s.exists() {
            return Err(Error::UnknownDocument { doc: doc.clone() });
        }
        Ok(
            value::resolve(&s.doc, doc, &path)?
                .map(|(v, id)| value::value_to_json(&s.doc, &v, &id)),
        )
    }

    /// Reads the value at `path` into a `T`; `None` if nothing is there.
    pub fn get_serde<T: serde::de::DeserializeOwned>(
        &self,
        doc: &DocumentId,
        path: &str,
    ) -> Result<Option<T>> {
        match self.get(doc, path)? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|source| Error::Serde {
                    doc: doc.clone(),
                    path: path.to_string(),
                    source,
                }),
        }
    }

    /// Writes `value` at `path`, creating missing parent objects.
    pub fn put(
        &self,
        doc: &DocumentId,
        path: &str,
        value: Json,
        durability: Durability,
    ) -> Result<()> {
        self.transact(doc, durability, |tx| tx.put(path, value))
    }

    /// Writes a serializable value at `path`.
    pub fn put_serde<T: serde::Serialize>(
        &self,
        doc: &DocumentId,
        path: &str,
        value: &T,
        durability: Durability,
    ) -> Result<()> {
        let v = serde_json::to_value(value).map_err(|source| Error::Serde {
            doc: doc.clone(),
            path: path.to_string(),
            source,
        })?;
        self.put(doc, path, v, durability)
    }

    /// Deletes the value at `path` (a map key or a list element).
    pub fn delete(&self, doc: &DocumentId, path: &str, durability: Durability) -> Result<()> {
        self.transact(doc, durability, |tx| tx.delete(path))
    }

    /// Inserts `value` into the list at `path` before `index` (`index == len` appends).
    pub fn insert(
        &self,
        doc: &DocumentId,
        path: &str,
        index: usize,
        value: Json,
        durability: Durability,
    ) -> Result<()> {
        self.transact(doc, durability, |tx| tx.insert(path, index, value))
    }

    /// Adds `delta` to the counter at `path`, creating it at `delta` if absent.
    pub fn increment(
        &self,
        doc: &DocumentId,
        path: &str,
        delta: i64,
        durability: Durability,
    ) -> Result<()> {
        self.transact(doc, durability, |tx| tx.increment(path, delta))
    }

    /// All concurrent values at `path` (Automerge conflicts), the winner first, with who wrote each.
    pub fn conflicts(&self, doc: &DocumentId, path: &str) -> Result<Vec<ConflictValue>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.conflicts(doc, path);
        }
        let path = Pointer::parse(path)?;
        let slot = self.slot(doc)?;
        let s = lock(&slot);
        if !s.exists() {
            return Err(Error::UnknownDocument { doc: doc.clone() });
        }
        let Some((parent, last)) = path.split_last() else {
            return Ok(Vec::new());
        };
        let Some((pv, obj)) = value::resolve(&s.doc, doc, &parent)? else {
            return Ok(Vec::new());
        };
        if let automerge::Value::Scalar(_) = pv {
            return Err(Error::WrongType {
                doc: doc.clone(),
                path: parent.to_string(),
                expected: "an object or a list",
                found: value::kind_of(&pv),
            });
        }
        let prop = value::prop_for(&s.doc, &obj, last, doc, &parent)?;
        let all = s
            .doc
            .get_all(&obj, prop)
            .map_err(|e| Error::automerge(doc, e))?;
        let winner = s
            .doc
            .get(&obj, value::prop_for(&s.doc, &obj, last, doc, &parent)?)
            .ok()
            .flatten()
            .map(|(_, id)| id);
        let mut out: Vec<ConflictValue> = all
            .iter()
            .map(|(v, id)| {
                let actor = match id {
                    automerge::ObjId::Id(_, a, _) => Some(a.clone()),
                    automerge::ObjId::Root => None,
                };
                let claim = actor.as_ref().and_then(crate::actor::parse_actor);
                ConflictValue {
                    value: value::value_to_json(&s.doc, v, id),
                    actor: actor.map(|a| a.to_hex_string()).unwrap_or_default(),
                    author: claim.as_ref().map(|c| c.peer.clone()),
                    author_role: claim.map(|c| c.role),
                    winner: Some(id) == winner.as_ref(),
                }
            })
            .collect();
        out.sort_by_key(|c| !c.winner);
        Ok(out)
    }

    /// The current heads of a document (empty if it does not exist).
    pub fn heads(&self, doc: &DocumentId) -> Result<Vec<ChangeHash>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.heads(doc);
        }
        Ok(lock(&*self.slot(doc)?).doc.get_heads())
    }

    /// How many changes the document's history holds.
    pub fn history_len(&self, doc: &DocumentId) -> Result<usize> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.history_len(doc);
        }
        Ok(lock(&*self.slot(doc)?).doc.get_changes(&[]).len())
    }

    /// Raw bytes of every change since `heads` (all changes for empty `heads`).
    pub fn changes_since(&self, doc: &DocumentId, heads: &[ChangeHash]) -> Result<Vec<Vec<u8>>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.changes_since(doc, heads);
        }
        let slot = self.slot(doc)?;
        let s = lock(&slot);
        Ok(s.doc
            .get_changes(heads)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect())
    }

    /// How many changes of the document are not covered by `heads`.
    pub fn count_changes_since(&self, doc: &DocumentId, heads: &[ChangeHash]) -> Result<usize> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.count_changes_since(doc, heads);
        }
        let slot = self.slot(doc)?;
        let s = lock(&slot);
        Ok(s.doc.get_changes_meta(heads).len())
    }

    /// Whether the document contains every change in `hashes`.
    pub fn has_all(&self, doc: &DocumentId, hashes: &[ChangeHash]) -> Result<bool> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.has_all(doc, hashes);
        }
        let slot = self.slot(doc)?;
        let s = lock(&slot);
        Ok(hashes
            .iter()
            .all(|h| s.doc.get_change_meta_by_hash(h).is_some()))
    }

    /// The whole document as standard Automerge bytes (`Automerge::save`).
    pub fn export(&self, doc: &DocumentId) -> Result<Vec<u8>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.export(doc);
        }
        let slot = self.slot(doc)?;
        let s = lock(&slot);
        if !s.exists() {
            return Err(Error::UnknownDocument { doc: doc.clone() });
        }
        Ok(s.doc.save())
    }

    /// Merges Automerge bytes (a saved document or changes) into a document, durably.
    pub fn import(&self, doc: &DocumentId, bytes: &[u8]) -> Result<usize> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.import(doc, bytes);
        }
        self.check_write(doc)?;
        let other = Automerge::load(bytes).map_err(|e| Error::InvalidImport {
            doc: doc.clone(),
            reason: e.to_string(),
        })?;
        let slot = self.slot(doc)?;
        let mut s = lock(&slot);
        let before = s.doc.get_heads();
        let bulk = bytes.len() > BULK_PATHS_BYTES;
        let mut other = other;
        s.doc.merge(&mut other).map_err(|e| Error::InvalidImport {
            doc: doc.clone(),
            reason: e.to_string(),
        })?;
        let changes = if s.doc.get_heads() == before {
            Vec::new()
        } else {
            s.doc.get_changes(&before)
        };
        if !changes.is_empty() {
            self.persist(&mut s, &concat(&changes))
                .and_then(|()| self.sign_imported(doc, &changes))
                .inspect(|()| changes.iter().for_each(|c| self.mirror_change(doc, c)))
                .and_then(|()| self.learn_tickets(&s.doc))
                .and_then(|()| self.sync_to_disk())
                .inspect_err(|_| self.forget(doc))?;
            self.notify_received(&s, doc, &changes, bulk, Origin::Import);
        }
        Ok(changes.len())
    }

    /// The whole document as JSON (an object), for reads of everything.
    pub fn get_all(&self, doc: &DocumentId) -> Result<Json> {
        Ok(self.get(doc, "")?.unwrap_or(Json::Null))
    }

    /// Subscribes to changes, local and remote alike.
    pub fn subscribe(&self, filter: SubscriptionFilter) -> Subscription {
        self.inner.subscribers.add(filter)
    }

    /// Compacts a document into one snapshot now.
    pub fn compact(&self, doc: &DocumentId) -> Result<()> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.compact(doc);
        }
        let slot = self.slot(doc)?;
        let mut s = lock(&slot);
        // A document deleted (or erased) meanwhile stays without chunks.
        if !s.exists() {
            return Ok(());
        }
        s.compact()
    }

    /// Number of stored chunks of a document (snapshot plus incremental changes).
    pub fn chunk_count(&self, doc: &DocumentId) -> Result<usize> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.chunk_count(doc);
        }
        Ok(lock(&*self.slot(doc)?).chunk_count())
    }

    /// Bytes of a document's stored chunks (its snapshot and the changes after it), read from
    /// its key range without loading it: what the document weighs in the store, before sled's
    /// own overhead. 0 for a document that holds no data here.
    pub fn document_bytes(&self, doc: &DocumentId) -> Result<u64> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.document_bytes(doc);
        }
        let mut n = 0u64;
        for kv in self.inner.chunks.scan_prefix(slot::chunk_prefix(doc)) {
            let (_, v) = kv?;
            n += v.len() as u64;
        }
        Ok(n)
    }

    /// Bytes of every document's stored chunks in this store (see
    /// [`Store::document_bytes`]); for a store in a namespace of a shared database (a cloud
    /// site), its own documents only.
    pub fn documents_bytes(&self) -> Result<u64> {
        let mut n = 0u64;
        for kv in self.inner.chunks.scan_prefix([slot::CHUNK]) {
            let (_, v) = kv?;
            n += v.len() as u64;
        }
        Ok(n)
    }

    /// The size of the whole sled database on disk (its log file and blobs, every namespace):
    /// what the data directory costs. sled gives space back lazily (see `core/docs/design.md`,
    /// "What sled gives back").
    pub fn size_on_disk(&self) -> Result<u64> {
        self.inner.db.size_on_disk()
    }

    /// Flushes everything to disk, then commits to the mirror (if any) what it lacks, the
    /// lazy sync bookkeeping included.
    pub fn flush(&self) -> Result<()> {
        self.sync_to_disk()?;
        if let Some(fleet) = &self.inner.fleet {
            // Fleet documents received through this store are queued in the fleet's.
            fleet.commit_mirror()?;
        }
        self.commit_mirror()
    }

    /// Makes everything written so far durable: one sled flush and `fdatasync` of its files,
    /// shared by the writers that ask meanwhile (see `flush.rs`).
    pub(crate) fn sync_to_disk(&self) -> Result<()> {
        let inner = &self.inner;
        inner.flushes.flush(|| inner.db.sync())
    }

    /// The storage engine of this store's database.
    pub fn engine(&self) -> Engine {
        self.inner.db.engine()
    }

    /// Drops from memory the documents not used for `max_idle`; they reload on next use.
    pub fn evict_idle(&self, max_idle: Duration) -> usize {
        let now = Instant::now();
        let mut docs = lock(&self.inner.docs);
        let before = docs.len();
        docs.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || now.duration_since(lock(slot).last_used) < max_idle
        });
        before - docs.len()
    }

    /// Number of documents currently loaded in memory.
    pub fn loaded_documents(&self) -> usize {
        lock(&self.inner.docs).len()
    }

    // ---- sync support, used by the engine ----

    /// Generates the next Automerge sync message for a peer.
    /// Also returns the signatures that must travel with the message: per actor whose
    /// changes it carries, that of its newest change there (see `crate::signing`).
    pub(crate) fn generate_sync(
        &self,
        doc: &DocumentId,
        state: &mut sync::State,
    ) -> Result<(Option<sync::Message>, Vec<StoredSignature>)> {
        // No heads leave a store whose writes its mirror lacks.
        self.confirm_mirror()?;
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.generate_sync(doc, state);
        }
        // Nor a store whose last flush failed: our heads tell the peer "I have it on disk"
        // (a full disk under redb's group commit fails at the flush, after the document
        // took the changes). Retry the flush; its error stops the message.
        if self.inner.flushes.failed() {
            self.sync_to_disk()?;
        }
        let slot = self.slot_for_sync(doc)?;
        let mut s = lock(&slot);
        s.touch();
        let msg = if snapshot::wants_whole_document(&s.doc, state) {
            // A peer that holds nothing of it: the document as stored, not saved anew.
            match s.stored_for_catch_up()? {
                Some(stored) => Some(snapshot::whole_document_message(&s.doc, state, stored)),
                None => s.doc.generate_sync_message(state),
            }
        } else {
            s.doc.generate_sync_message(state)
        };
        // The document stays locked while its signatures are read: a commit landing in
        // between would store the signature of a newer change than the message holds, and
        // the newest signature of an actor would not be the one the receiver needs (found
        // by the restart test over QUIC, with a POS writing while it served a catch-up).
        let Some(m) = msg.as_ref().filter(|m| !m.changes.is_empty()) else {
            return Ok((msg, Vec::new()));
        };
        if self.inner.sigs.is_empty()? {
            return Ok((msg, Vec::new()));
        }
        // Read from the chunk headers: a catch-up's whole document costs one lookup per
        // actor, not one per change.
        let mut newest: HashMap<ActorId, u64> = HashMap::new();
        let mut whole = false;
        for chunk in m.changes.iter() {
            let Ok(headers) = crate::chunk::change_headers(chunk) else {
                continue;
            };
            for h in headers {
                match h {
                    Some((actor, seq)) => {
                        let e = newest.entry(actor).or_default();
                        *e = (*e).max(seq);
                    }
                    None => whole = true,
                }
            }
        }
        let mut out: Vec<StoredSignature> = if whole {
            self.latest_signatures(doc)?
                .into_iter()
                .map(|(_, s)| s)
                .collect()
        } else {
            Vec::new()
        };
        let mut tips: Vec<(ActorId, u64)> = newest.into_iter().collect();
        tips.sort();
        for (actor, seq) in tips {
            if let Some(sig) = self.signature_at_or_after(doc, &actor, seq)? {
                if !out.iter().any(|o| o.hash == sig.hash) {
                    out.push(sig);
                }
            }
        }
        drop(s);
        Ok((msg, out))
    }

    /// Applies a received sync message, persists the new changes and notifies subscribers.
    /// Returns how many changes were added.
    ///
    /// `verify` sees the changes new to the document before anything is stored (with the
    /// paths each writes if `written`, the policy whose per-path write rules the context
    /// has: the paths are reported for its patterns, see `paths::written_paths_into_empty`); if it
    /// refuses, the document is reloaded from disk (the changes were only in memory) and the
    /// refusal returned. What it accepts, it returns as signatures to store beside them.
    /// Before that, the changes are checked before Automerge sees them (`store/screen.rs`);
    /// `may_queue` says whose changes with missing dependencies may wait in its queue.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn receive_sync(
        &self,
        doc: &DocumentId,
        state: &mut sync::State,
        msg: sync::Message,
        from: &PeerId,
        written: Option<&crate::Policy>,
        verify: &VerifyNew<'_>,
        may_queue: &MayQueue<'_>,
    ) -> Result<Received> {
        let origin = Origin::Remote(from.clone());
        self.receive_sync_as(doc, state, msg, from, origin, written, verify, may_queue)
    }

    /// [`Store::receive_sync`], telling subscribers `origin`: a web client's changes are
    /// announced as [`Origin::Import`], so the runner sends them on to the site's peers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn receive_sync_as(
        &self,
        doc: &DocumentId,
        state: &mut sync::State,
        msg: sync::Message,
        from: &PeerId,
        origin: Origin,
        written: Option<&crate::Policy>,
        verify: &VerifyNew<'_>,
        may_queue: &MayQueue<'_>,
    ) -> Result<Received> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet
                .receive_sync_as(doc, state, msg, from, origin, written, verify, may_queue);
        }
        let slot = self.slot_for_sync(doc)?;
        let mut s = lock(&slot);
        s.touch();
        let before = s.doc.get_heads();
        let bulk = msg.changes.iter().map(<[u8]>::len).sum::<usize>() > BULK_PATHS_BYTES;
        let mut snapshot = None;
        let mut vouched = HashMap::new();
        if let Some(reason) = receive::receive_sync_message(
            &mut s.doc,
            state,
            msg,
            may_queue,
            &mut snapshot,
            &mut vouched,
        )
        .map_err(|e| Error::automerge(doc, e))?
        {
            // Refused before Automerge saw it: the document is as it was.
            return Ok(Received::Refused(reason));
        }
        if s.doc.get_heads() == before {
            return Ok(Received::Applied(0));
        }
        let bulk = bulk || snapshot.is_some();
        // The changes after `before` are found through the change graph's per-actor index,
        // at a cost proportional to what was added, not to the document.
        let mut new: Vec<NewChange> = s
            .doc
            .get_changes_meta(&before)
            .into_iter()
            .map(|m| NewChange {
                hash: m.hash,
                actor: m.actor.into_owned(),
                seq: m.seq,
                written: None,
                vouched_by: vouched.get(&m.hash).copied(),
                deps: m.deps,
            })
            .collect();
        if let Some(policy) = written {
            // Per-path write rules: what each new change writes, decoded once here (a cost
            // proportional to the changes, not to the document).
            // The changes are rebuilt from the document in one pass over its operations:
            // one `get_change_by_hash` per change walked them once per change, which made
            // the path checks of a catch-up of N changes cost N passes (issue 30).
            let changes = s.doc.get_changes(&before);
            let mut written = if before.is_empty() {
                // Nothing held before: objects placed from the changes themselves and each
                // author's writes reported once per class of path (`paths.rs`).
                paths::written_paths_into_empty(&s.doc, &changes, policy, doc.context())
            } else {
                let mut objects = HashMap::new();
                changes
                    .iter()
                    .map(|c| {
                        let w = paths::written_paths(&s.doc, c, &mut objects, &before);
                        (c.hash(), w)
                    })
                    .collect()
            };
            for c in &mut new {
                c.written = Some(match written.remove(&c.hash) {
                    Some(w) => w,
                    None => Err(format!("change {} is not in the document", c.hash)),
                });
            }
        }
        let added = new.len();
        let records = match verify(&new) {
            Ok(r) => r,
            Err(reason) => {
                // Nothing was stored: the copy on disk is the document without them.
                let tree = self.inner.chunks.clone();
                match Slot::load(doc.clone(), tree, self.inner.actor.clone()) {
                    Ok(fresh) => *s = fresh,
                    Err(e) => {
                        drop(s);
                        self.forget(doc);
                        return Err(e);
                    }
                }
                return Ok(Received::Refused(reason));
            }
        };
        // A document that was empty is saved whole: `save` is several times cheaper than
        // rebuilding the same history as separate changes (a catch-up). A bulk change
        // reports top-level keys, so it needs no changes either.
        let (bytes, changes) = if let Some(snapshot) = snapshot {
            // A snapshot received into an empty document: stored as received (the document
            // is exactly these bytes, loaded), neither saved again nor split into changes.
            // Its subscribers hear of its top-level keys, as of a bulk change.
            (snapshot, Vec::new())
        } else if before.is_empty() {
            let changes = if bulk {
                Vec::new()
            } else {
                s.doc.get_changes(&before)
            };
            (s.doc.save(), changes)
        } else {
            let changes = s.doc.get_changes(&before);
            (concat(&changes), changes)
        };
        self.persist(&mut s, &bytes)
            .and_then(|()| self.put_signatures(doc, &records))
            .inspect_err(|_| self.forget(doc))?;
        if self.inner.mirror.is_some() {
            if changes.is_empty() {
                for c in s.doc.get_changes(&before) {
                    self.mirror_change(doc, &c);
                }
            } else {
                changes.iter().for_each(|c| self.mirror_change(doc, c));
            }
        }
        self.learn_tickets(&s.doc)?;
        if lock(&self.inner.quarantined).remove(doc) {
            self.inner
                .meta
                .remove(format!("{QUARANTINE_KEY}{doc}").as_bytes())?;
            tracing::info!(%doc, "a corrupt document was received again from {from}");
        }
        self.notify_received(&s, doc, &changes, bulk, origin);
        Ok(Received::Applied(added))
    }

    /// Loads the persisted sync state of (peer, doc).
    pub(crate) fn load_sync_state(
        &self,
        peer: &PeerId,
        doc: &DocumentId,
    ) -> Result<Option<sync::State>> {
        let key = format!("{peer}\0{doc}");
        match self.inner.sync.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(sync::State::decode(&v).ok()),
        }
    }

    /// Persists the part of a sync state that survives restarts.
    pub(crate) fn save_sync_state(
        &self,
        peer: &PeerId,
        doc: &DocumentId,
        state: &sync::State,
    ) -> Result<()> {
        let key = format!("{peer}\0{doc}");
        let encoded = state.encode();
        self.inner.sync.set(key.as_bytes(), Some(&encoded[..]))?;
        // Shared with the other writers of a mirror: a device that reconnects to another
        // cloud instance resumes from this state.
        self.mirror_lazy(MirrorTree::SyncStates, key.as_bytes(), &encoded);
        Ok(())
    }

    /// Every (peer, doc) with a persisted sync state.
    pub(crate) fn sync_peers(&self) -> Result<Vec<(PeerId, DocumentId)>> {
        let mut out = Vec::new();
        for kv in self.inner.sync.iter() {
            let (k, _) = kv?;
            let Ok(k) = std::str::from_utf8(&k) else {
                continue;
            };
            let Some((p, d)) = k.split_once('\0') else {
                continue;
            };
            if let (Ok(p), Ok(d)) = (p.parse(), d.parse()) {
                out.push((p, d));
            }
        }
        Ok(out)
    }

    /// A small persisted key-value record (engine bookkeeping such as "unsynced since").
    pub(crate) fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.meta.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Stores or removes a small persisted record.
    pub(crate) fn meta_set(&self, key: &str, value: Option<&[u8]>) -> Result<()> {
        self.inner.meta.set(key.as_bytes(), value)
    }
}

/// The check [`Store::receive_sync`] runs on the changes new to a document: the signatures to
/// store, or why the message is refused.
pub(crate) type VerifyNew<'a> =
    dyn Fn(&[NewChange]) -> std::result::Result<Vec<SignatureRecord>, String> + 'a;

/// What [`Store::receive_sync`] did with a message.
pub(crate) enum Received {
    /// This many changes were new and are stored.
    Applied(usize),
    /// The signature check refused the new changes, for this reason; nothing was stored.
    Refused(String),
}

/// The changes as one chunk: their raw bytes one after the other (what `save_after` gives).
fn concat(changes: &[automerge::Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(changes.iter().map(|c| c.raw_bytes().len()).sum());
    for c in changes {
        out.extend_from_slice(c.raw_bytes());
    }
    out
}

/// One of the concurrent values at a path.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ConflictValue {
    /// The value.
    pub value: Json,
    /// The Automerge actor id that wrote it, in hex.
    pub actor: String,
    /// The device that wrote it, if it was written through outpost.
    pub author: Option<PeerId>,
    /// The role of that device.
    pub author_role: Option<crate::Role>,
    /// Whether this value is the one reads return (Automerge's deterministic winner).
    pub winner: bool,
}
