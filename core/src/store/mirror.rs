//! A durable mirror of a store: where a store that is only a working copy (a cache) commits
//! what it writes, and from which it learns what others wrote.
//!
//! The cloud on PostgreSQL keeps each site's [`Store`] in a local sled cache and makes the
//! database the shared, durable truth. What the store writes (changes, signatures of
//! changes, certificates of signers) is queued as a [`MirrorBatch`]; [`Store::flush`]
//! commits the queue through [`Mirror::commit`] after flushing sled, so the engine's rule
//! "answer a peer's changes only once they are durable" now means "once the mirror
//! committed them". A store whose queue does not commit tells no peer its heads (see
//! [`Store::confirm_mirror`]): a device keeps counting such changes unsynced.
//!
//! What other writers committed comes back through [`Store::apply_mirrored`], which writes
//! it to the cache without queueing it again, and announces it like an import, so a runner
//! offers it to its connected peers at once.
//!
//! The engine's sync bookkeeping (the sync state per (peer, document) and its progress) is
//! mirrored too, so a device that reconnects to another writer (another cloud instance)
//! resumes where it left off. It changes with every exchange and a stale value is still
//! correct (older shared heads only mean a longer exchange), so it is *lazy*: kept once per
//! key, it rides along with the next commit of changes, or with [`Store::flush`] and
//! [`Store::commit_mirror`]; it never makes a commit of its own on the hot path.

use std::sync::Arc;

use automerge::ChangeHash;

use super::PROGRESS_PREFIX;
use super::{lock, Origin, Store};
use crate::{DocumentId, Error, Result};

/// One change, content-addressed by its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredChange {
    /// The document.
    pub doc: DocumentId,
    /// The change's hash.
    pub hash: ChangeHash,
    /// The change's raw bytes (`Change::raw_bytes`).
    pub bytes: Vec<u8>,
}

/// Which bookkeeping tree a [`MirroredEntry`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MirrorTree {
    /// Signatures of changes (keyed by document, actor and sequence number).
    Signatures,
    /// Certificates of signers, the peers known to sign, revocations.
    Certificates,
    /// The engine's sync state per (peer, document) (lazy: see the module docs).
    SyncStates,
    /// The engine's progress per (peer, document): last sync, unsynced since (lazy).
    Progress,
}

impl MirrorTree {
    /// A stable number for the tree (what a database column keeps).
    pub fn code(self) -> i16 {
        match self {
            MirrorTree::Signatures => 1,
            MirrorTree::Certificates => 2,
            MirrorTree::SyncStates => 3,
            MirrorTree::Progress => 4,
        }
    }

    /// The tree of [`MirrorTree::code`], if it is one.
    pub fn from_code(code: i16) -> Option<MirrorTree> {
        match code {
            1 => Some(MirrorTree::Signatures),
            2 => Some(MirrorTree::Certificates),
            3 => Some(MirrorTree::SyncStates),
            4 => Some(MirrorTree::Progress),
            _ => None,
        }
    }
}

/// One key and value of a bookkeeping tree; a later write of a key replaces the earlier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredEntry {
    /// The tree.
    pub tree: MirrorTree,
    /// The key, as the store keeps it.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// What a store wrote since its mirror last committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorBatch {
    /// New changes, in the order they were written (causal order).
    pub changes: Vec<MirroredChange>,
    /// New or replaced bookkeeping entries, in the order they were written.
    pub entries: Vec<MirroredEntry>,
}

impl MirrorBatch {
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.entries.is_empty()
    }

    /// Puts `earlier` (a batch whose commit failed) before what this batch holds.
    fn prepend(&mut self, mut earlier: MirrorBatch) {
        earlier.changes.append(&mut self.changes);
        earlier.entries.append(&mut self.entries);
        *self = earlier;
    }
}

/// The durable truth behind a store used as a cache.
pub trait Mirror: Send + Sync + std::panic::RefUnwindSafe + std::fmt::Debug + 'static {
    /// Commits `batch` durably, or fails. Committing what was already committed (by this
    /// store or another writer) must be a no-op. Called from the thread that flushes the
    /// store; it may block.
    fn commit(&self, batch: &MirrorBatch) -> std::result::Result<(), String>;
}

/// A mirror shared by a store's clones.
pub type SharedMirror = Arc<dyn Mirror>;

/// Lazy entries, the newest value per key.
type LazyEntries = std::collections::BTreeMap<(MirrorTree, Vec<u8>), Vec<u8>>;

/// The queue of a store with a mirror.
#[derive(Default)]
pub(super) struct MirrorQueue {
    pending: std::sync::Mutex<MirrorBatch>,
    /// Sync bookkeeping not committed yet: committed with the next batch, never alone on
    /// the hot path (see the module docs).
    lazy: std::sync::Mutex<LazyEntries>,
    /// Held while a batch commits: commits of one store happen one at a time, in order.
    committing: std::sync::Mutex<()>,
}

impl MirrorQueue {
    pub(super) fn push_change(&self, doc: &DocumentId, change: &automerge::Change) {
        lock(&self.pending).changes.push(MirroredChange {
            doc: doc.clone(),
            hash: change.hash(),
            bytes: change.raw_bytes().to_vec(),
        });
    }

    pub(super) fn push_entry(&self, tree: MirrorTree, key: &[u8], value: &[u8]) {
        lock(&self.pending).entries.push(MirroredEntry {
            tree,
            key: key.to_vec(),
            value: value.to_vec(),
        });
    }

    pub(super) fn push_lazy(&self, tree: MirrorTree, key: &[u8], value: &[u8]) {
        lock(&self.lazy).insert((tree, key.to_vec()), value.to_vec());
    }

    /// Whether `key` of `tree` has a value here that the mirror lacks (newer than any the
    /// mirror can hand back).
    fn lazy_holds(&self, tree: MirrorTree, key: &[u8]) -> bool {
        lock(&self.lazy).contains_key(&(tree, key.to_vec()))
    }

    /// Commits everything queued, lazy entries included; on failure the batch stays queued
    /// (before anything written meanwhile) for the next attempt.
    fn commit(&self, mirror: &dyn Mirror) -> Result<()> {
        let _one = lock(&self.committing);
        let mut batch = std::mem::take(&mut *lock(&self.pending));
        let lazy = std::mem::take(&mut *lock(&self.lazy));
        if batch.is_empty() && lazy.is_empty() {
            return Ok(());
        }
        let queued = batch.entries.len();
        batch
            .entries
            .extend(lazy.iter().map(|((tree, key), value)| MirroredEntry {
                tree: *tree,
                key: key.clone(),
                value: value.clone(),
            }));
        match mirror.commit(&batch) {
            Ok(()) => Ok(()),
            Err(reason) => {
                let changes = batch.changes.len();
                batch.entries.truncate(queued);
                lock(&self.pending).prepend(batch);
                // A key written again meanwhile keeps its newer value.
                let mut now = lock(&self.lazy);
                for (k, v) in lazy {
                    now.entry(k).or_insert(v);
                }
                Err(Error::Mirror { changes, reason })
            }
        }
    }

    /// Whether nothing but lazy entries (if any) waits.
    fn is_empty(&self) -> bool {
        lock(&self.pending).is_empty()
    }

    fn has_lazy(&self) -> bool {
        !lock(&self.lazy).is_empty()
    }
}

impl Store {
    /// Commits to the mirror what this store wrote and did not commit yet (nothing to do
    /// without a mirror). Every read that tells a peer this store's heads calls it first, so
    /// a peer never hears "I have it" of a change the mirror lacks.
    pub fn confirm_mirror(&self) -> Result<()> {
        match &self.inner.mirror {
            Some((mirror, queue)) if !queue.is_empty() => queue.commit(&**mirror),
            _ => Ok(()),
        }
    }

    /// Commits to the mirror everything it lacks, the lazy sync bookkeeping included (see
    /// the module docs); [`Store::flush`] does it too. The cloud on PostgreSQL calls it
    /// every few seconds for the sites it holds.
    pub fn commit_mirror(&self) -> Result<()> {
        match &self.inner.mirror {
            Some((mirror, queue)) if !queue.is_empty() || queue.has_lazy() => {
                queue.commit(&**mirror)
            }
            _ => Ok(()),
        }
    }

    /// Whether writes are waiting for the mirror.
    pub fn mirror_pending(&self) -> bool {
        self.inner
            .mirror
            .as_ref()
            .is_some_and(|(_, q)| !q.is_empty())
    }

    pub(super) fn mirror_change(&self, doc: &DocumentId, change: &automerge::Change) {
        if let Some((_, queue)) = &self.inner.mirror {
            queue.push_change(doc, change);
        }
    }

    pub(super) fn mirror_entry(&self, tree: MirrorTree, key: &[u8], value: &[u8]) {
        if let Some((_, queue)) = &self.inner.mirror {
            queue.push_entry(tree, key, value);
        }
    }

    /// Queues sync bookkeeping for the mirror, lazily (see the module docs).
    pub(crate) fn mirror_lazy(&self, tree: MirrorTree, key: &[u8], value: &[u8]) {
        if let Some((_, queue)) = &self.inner.mirror {
            queue.push_lazy(tree, key, value);
        }
    }

    /// Writes to this store what the mirror holds from other writers: bookkeeping entries
    /// first (signatures must be there before their changes are offered to peers), then
    /// changes, per document; nothing is queued for the mirror again. Changes the store
    /// already holds are skipped. Subscribers hear of new changes as an import (a runner
    /// offers them to its peers). Returns how many changes were new.
    pub fn apply_mirrored(&self, batch: &MirrorBatch) -> Result<usize> {
        for e in &batch.entries {
            let tree = match e.tree {
                MirrorTree::Signatures => &self.inner.sigs,
                MirrorTree::Certificates => &self.inner.certs,
                MirrorTree::SyncStates | MirrorTree::Progress => {
                    let newer_here = self
                        .inner
                        .mirror
                        .as_ref()
                        .is_some_and(|(_, q)| q.lazy_holds(e.tree, &e.key));
                    // Only the engine's progress records live in `meta` this way.
                    if newer_here
                        || (e.tree == MirrorTree::Progress
                            && !e.key.starts_with(PROGRESS_PREFIX.as_bytes()))
                    {
                        continue;
                    }
                    if e.tree == MirrorTree::SyncStates {
                        &self.inner.sync
                    } else {
                        &self.inner.meta
                    }
                }
            };
            tree.insert(&e.key[..], &e.value[..])?;
        }
        let mut by_doc: Vec<(&DocumentId, Vec<&[u8]>)> = Vec::new();
        for c in &batch.changes {
            match by_doc.iter_mut().find(|(d, _)| *d == &c.doc) {
                Some((_, v)) => v.push(&c.bytes),
                None => by_doc.push((&c.doc, vec![&c.bytes])),
            }
        }
        let mut added = 0;
        for (doc, chunks) in by_doc {
            added += self.apply_mirrored_doc(doc, &chunks)?;
        }
        self.sync_to_disk()?;
        Ok(added)
    }

    fn apply_mirrored_doc(&self, doc: &DocumentId, chunks: &[&[u8]]) -> Result<usize> {
        if self.is_erased(doc) {
            return Ok(0);
        }
        let slot = self.slot(doc)?;
        let mut s = lock(&slot);
        let before = s.doc.get_heads();
        for chunk in chunks {
            // A chunk is one change or a saved document (a compacted snapshot): both load
            // incrementally (a change whose dependencies come later waits for them).
            s.doc
                .load_incremental(chunk)
                .map_err(|e| Error::InvalidImport {
                    doc: doc.clone(),
                    reason: e.to_string(),
                })?;
        }
        if s.doc.get_heads() == before {
            return Ok(0);
        }
        let changes = s.doc.get_changes(&before);
        let bytes = super::concat(&changes);
        self.persist(&mut s, &bytes)
            .and_then(|()| self.learn_tickets(&s.doc))
            .inspect_err(|_| self.forget(doc))?;
        self.notify_received(&s, doc, &changes, false, Origin::Import);
        Ok(changes.len())
    }
}
