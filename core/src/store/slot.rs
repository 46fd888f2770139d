//! One loaded document and its sled tree.

use std::time::Instant;

use automerge::{ActorId, Automerge, ReadDoc};

use crate::{DocumentId, Error, Result};

/// A document in memory with its persisted chunks.
pub(super) struct Slot {
    pub(super) doc: Automerge,
    id: DocumentId,
    tree: sled::Tree,
    next_seq: u64,
    chunks: usize,
    pub(super) last_used: Instant,
}

impl Slot {
    /// Loads the document from its tree (an empty tree is a document that does not exist yet).
    pub(super) fn load(id: DocumentId, tree: sled::Tree, actor: ActorId) -> Result<Slot> {
        let mut bytes = Vec::new();
        let mut chunks = 0;
        let mut next_seq = 0;
        for kv in tree.iter() {
            let (k, v) = kv?;
            let seq: [u8; 8] = k.as_ref().try_into().map_err(|_| Error::CorruptDocument {
                doc: id.clone(),
                reason: format!("a chunk key has {} bytes instead of 8", k.len()),
            })?;
            next_seq = u64::from_be_bytes(seq) + 1;
            chunks += 1;
            bytes.extend_from_slice(&v);
        }
        let doc = if bytes.is_empty() {
            Automerge::new()
        } else {
            Automerge::load(&bytes).map_err(|e| Error::CorruptDocument {
                doc: id.clone(),
                reason: e.to_string(),
            })?
        };
        // After a snapshot, Automerge loads changes whose dependencies are missing by
        // silently leaving them out; the store only ever persists complete histories, so a
        // missing dependency means a lost chunk.
        let missing = doc.get_missing_deps(&[]);
        if !missing.is_empty() {
            return Err(Error::CorruptDocument {
                doc: id,
                reason: format!(
                    "stored changes depend on {} change(s) that are not stored, e.g. {}",
                    missing.len(),
                    missing[0]
                ),
            });
        }
        Ok(Slot {
            doc: doc.with_actor(actor),
            id,
            tree,
            next_seq,
            chunks,
            last_used: Instant::now(),
        })
    }

    /// Whether the document has any data.
    pub(super) fn exists(&self) -> bool {
        self.chunks > 0 || !self.doc.get_heads().is_empty()
    }

    pub(super) fn touch(&mut self) {
        self.last_used = Instant::now();
    }

    pub(super) fn chunk_count(&self) -> usize {
        self.chunks
    }

    /// Appends one chunk.
    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.tree.insert(self.next_seq.to_be_bytes(), bytes)?;
        self.next_seq += 1;
        self.chunks += 1;
        self.touch();
        Ok(())
    }

    /// Replaces all chunks with one snapshot, atomically.
    pub(super) fn compact(&mut self) -> Result<()> {
        let snapshot = self.doc.save();
        let mut batch = sled::Batch::default();
        for k in self.tree.iter().keys() {
            batch.remove(k?);
        }
        batch.insert(&self.next_seq.to_be_bytes(), snapshot);
        self.tree.apply_batch(batch)?;
        tracing::debug!(doc = %self.id, chunks = self.chunks, "compacted document");
        self.next_seq += 1;
        self.chunks = 1;
        Ok(())
    }
}
