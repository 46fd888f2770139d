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

use std::sync::Arc;

use automerge::ChangeHash;

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
}

impl MirrorTree {
    /// A stable number for the tree (what a database column keeps).
    pub fn code(self) -> i16 {
        match self {
            MirrorTree::Signatures => 1,
            MirrorTree::Certificates => 2,
        }
    }

    /// The tree of [`MirrorTree::code`], if it is one.
    pub fn from_code(code: i16) -> Option<MirrorTree> {
        match code {
            1 => Some(MirrorTree::Signatures),
            2 => Some(MirrorTree::Certificates),
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

/// The queue of a store with a mirror.
#[derive(Default)]
pub(super) struct MirrorQueue {
    pending: std::sync::Mutex<MirrorBatch>,
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

    /// Commits everything queued; on failure the batch stays queued (before anything
    /// written meanwhile) for the next attempt.
    fn commit(&self, mirror: &dyn Mirror) -> Result<()> {
        let _one = lock(&self.committing);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return Ok(());
        }
        match mirror.commit(&batch) {
            Ok(()) => Ok(()),
            Err(reason) => {
                let changes = batch.changes.len();
                lock(&self.pending).prepend(batch);
                Err(Error::Mirror { changes, reason })
            }
        }
    }

    fn is_empty(&self) -> bool {
        lock(&self.pending).is_empty()
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
        self.inner.db.flush()?;
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
