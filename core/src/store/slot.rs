//! One loaded document and its chunks.
//!
//! Every document of a store lives in one sled tree (`<namespace>chunks`), as a key range:
//! `0x01 <document id> 0x00 <sequence, u64 big-endian>` -> an Automerge chunk, plus one marker
//! `0x00 <document id>` per document that holds data. A document id never contains a zero
//! byte, so ranges never overlap; the marker and a document's first chunk are written in one
//! batch, so listing documents reads markers only and creating, opening or listing costs
//! nothing that grows with the number of documents (one sled tree per document did: sled
//! rewrites its list of trees on every creation).

use std::time::Instant;

use automerge::{ActorId, Automerge, ReadDoc};

use crate::storage::{Batch, Keyspace};
use crate::{DocumentId, Error, Result};

/// Marker keys (`0x00 <doc>`) sort before chunk keys (`0x01 <doc> 0x00 <seq>`).
pub(super) const MARKER: u8 = 0x00;
pub(super) const CHUNK: u8 = 0x01;

/// The marker key of `doc`.
pub(super) fn marker_key(doc: &DocumentId) -> Vec<u8> {
    let mut k = vec![MARKER];
    k.extend_from_slice(doc.to_string().as_bytes());
    k
}

/// A marker's value: the document's heads, 32 bytes each (empty: not recorded, e.g. a
/// document migrated from the earlier layout).
pub(super) fn encode_heads(heads: &[automerge::ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

/// The heads recorded in a marker's value, if any.
pub(super) fn decode_heads(v: &[u8]) -> Option<Vec<automerge::ChangeHash>> {
    if v.is_empty() || v.len() % 32 != 0 {
        return None;
    }
    v.chunks(32)
        .map(|c| c.try_into().ok().map(automerge::ChangeHash))
        .collect()
}

/// The prefix of every chunk key of `doc`.
pub(super) fn chunk_prefix(doc: &DocumentId) -> Vec<u8> {
    let mut k = vec![CHUNK];
    k.extend_from_slice(doc.to_string().as_bytes());
    k.push(0);
    k
}

/// A document in memory with its persisted chunks.
pub(super) struct Slot {
    pub(super) doc: Automerge,
    id: DocumentId,
    tree: Keyspace,
    prefix: Vec<u8>,
    next_seq: u64,
    chunks: usize,
    /// Bytes of the lowest chunk (the snapshot, after a compaction) and of the others.
    snapshot_bytes: usize,
    tail_bytes: usize,
    pub(super) last_used: Instant,
    /// Write ids of the document's changes (see `Store::transact_once`), read from the
    /// changes' messages when first needed.
    write_ids: Option<std::collections::HashSet<String>>,
}

/// The message of a change made by `Store::transact_once` starts with this.
pub(super) const WRITE_ID_PREFIX: &str = "outpost-write:";

/// However small its chunks, a document is compacted once it has this many times
/// `compaction_threshold` chunks, which bounds the work of loading it.
const CHUNK_CAP_FACTOR: usize = 16;

impl Slot {
    /// Loads the document from its key range of `tree` (no chunks: a document that does not
    /// exist yet).
    pub(super) fn load(id: DocumentId, tree: Keyspace, actor: ActorId) -> Result<Slot> {
        let prefix = chunk_prefix(&id);
        let mut bytes = Vec::new();
        let mut chunks = 0;
        let mut next_seq = 0;
        let (mut snapshot_bytes, mut tail_bytes) = (0, 0);
        for kv in tree.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let seq: [u8; 8] =
                k[prefix.len()..]
                    .try_into()
                    .map_err(|_| Error::CorruptDocument {
                        doc: id.clone(),
                        reason: format!(
                            "a chunk key has {} sequence bytes instead of 8",
                            k.len() - prefix.len()
                        ),
                    })?;
            next_seq = u64::from_be_bytes(seq) + 1;
            if chunks == 0 {
                snapshot_bytes = v.len();
            } else {
                tail_bytes += v.len();
            }
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
            prefix,
            next_seq,
            chunks,
            snapshot_bytes,
            tail_bytes,
            last_used: Instant::now(),
            write_ids: None,
        })
    }

    /// Whether a change of this document carries write id `id`. The first call reads the
    /// messages of every change of the document (once per load).
    pub(super) fn has_write(&mut self, id: &str) -> bool {
        let doc = &self.doc;
        self.write_ids
            .get_or_insert_with(|| {
                doc.get_changes(&[])
                    .iter()
                    .filter_map(|c| c.message()?.strip_prefix(WRITE_ID_PREFIX))
                    .map(str::to_owned)
                    .collect()
            })
            .contains(id)
    }

    /// Records that a change with write id `id` was committed.
    pub(super) fn note_write(&mut self, id: &str) {
        if let Some(ids) = &mut self.write_ids {
            ids.insert(id.to_owned());
        }
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

    /// Whether the document should be compacted: it has at least `threshold` chunks and the
    /// chunks after the snapshot hold as many bytes as the snapshot (or it has
    /// `CHUNK_CAP_FACTOR` times `threshold` chunks).
    ///
    /// A compaction saves the whole document (250 ms for 50,000 orders on the bench machine);
    /// compacting every `threshold` chunks cost every write time proportional to the document.
    /// Waiting until the tail is as large as the snapshot pays for each compaction with as
    /// many bytes written, so its cost per write stays flat as the document grows.
    pub(super) fn compaction_due(&self, threshold: usize) -> bool {
        self.chunks >= threshold
            && (self.tail_bytes >= self.snapshot_bytes
                || self.chunks >= threshold.saturating_mul(CHUNK_CAP_FACTOR))
    }

    fn key(&self, seq: u64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// Appends one chunk, and the document's heads after it in its marker, atomically: a
    /// peer's Hello compares heads of every document, read from markers without loading any.
    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let key = self.key(self.next_seq);
        let mut batch = Batch::default();
        batch.insert(
            &self.tree,
            marker_key(&self.id),
            encode_heads(&self.doc.get_heads()),
        );
        batch.insert(&self.tree, key, bytes);
        self.tree.apply_batch(batch)?;
        self.next_seq += 1;
        if self.chunks == 0 {
            self.snapshot_bytes = bytes.len();
        } else {
            self.tail_bytes += bytes.len();
        }
        self.chunks += 1;
        self.touch();
        Ok(())
    }

    /// The document as stored (its chunks, one after the other: what `load` reads), to serve
    /// a snapshot catch-up; compacted first if the changes after the snapshot hold more than
    /// an eighth of its bytes, so that what a peer receives stays close to the compacted
    /// document (and later catch-ups find it compacted). `None` if the stored heads are not
    /// the document's (then the caller lets Automerge save it).
    pub(super) fn stored_for_catch_up(&mut self) -> Result<Option<Vec<u8>>> {
        if self.chunks == 0 {
            return Ok(None);
        }
        if self.chunks > 1 && self.tail_bytes > self.snapshot_bytes / 8 {
            self.compact()?;
        }
        self.read_chunks()
    }

    fn read_chunks(&self) -> Result<Option<Vec<u8>>> {
        let heads = self.tree.get(marker_key(&self.id))?;
        let mut ours = self.doc.get_heads();
        ours.sort();
        if heads.as_deref().and_then(decode_heads) != Some(ours) {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(self.snapshot_bytes + self.tail_bytes);
        for kv in self.tree.scan_prefix(&self.prefix) {
            let (_, v) = kv?;
            bytes.extend_from_slice(&v);
        }
        Ok(Some(bytes))
    }

    /// Replaces all chunks with one snapshot, atomically.
    pub(super) fn compact(&mut self) -> Result<()> {
        let snapshot = self.doc.save();
        let snapshot_len = snapshot.len();
        let mut batch = Batch::default();
        for k in self.tree.scan_prefix(&self.prefix).keys() {
            batch.remove(&self.tree, k?);
        }
        batch.insert(&self.tree, self.key(self.next_seq), snapshot);
        self.tree.apply_batch(batch)?;
        tracing::debug!(doc = %self.id, chunks = self.chunks, "compacted document");
        self.next_seq += 1;
        self.chunks = 1;
        self.snapshot_bytes = snapshot_len;
        self.tail_bytes = 0;
        Ok(())
    }
}
