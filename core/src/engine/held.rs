//! Writes waiting for a peer to hold them on its disk (`Durability::Replicated`).
//!
//! What counts as "a peer holds it": the peer announced heads (in a sync message, or in the
//! reconciliation of a new session) that cover the write's heads. A peer announces its
//! heads only after the changes it received are on its disk: `Engine::apply_sync` flushes
//! the store (`EngineConfig::durable_acks`, on by default on every device and cloud) before
//! it generates the answer that carries the new heads, and a peer can only hold our change
//! by receiving it. So an announced head is an acknowledgement on disk, as durable as that
//! peer's own `Durability::Durable` writes.
//!
//! The driver registers a wait with [`Engine::await_held`], drains the answers with
//! [`Engine::poll_held`], and cancels waits it gave up on ([`Engine::cancel_held`]); the
//! timeout is the driver's (the engine reads no clock).

use std::collections::{BTreeMap, VecDeque};

use automerge::ChangeHash;

use super::Engine;
use crate::{DocumentId, PeerId};

/// The most waits kept at once: a driver that never cancels cannot grow the engine without
/// bound (the oldest wait is dropped, and its caller times out as it would have).
pub const MAX_HELD_WAITS: usize = 65_536;

/// Identifies one wait registered with [`Engine::await_held`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeldWait(pub u64);

/// The waits of an engine.
#[derive(Debug, Default)]
pub(super) struct HeldWaits {
    next: u64,
    /// By document: the waits and the heads each waits for.
    by_doc: BTreeMap<DocumentId, Vec<(HeldWait, Vec<ChangeHash>)>>,
    count: usize,
    /// Waits answered, with the first peer found to hold the heads.
    done: VecDeque<(HeldWait, PeerId)>,
}

impl HeldWaits {
    fn remove(&mut self, id: HeldWait) -> bool {
        let mut emptied = None;
        let mut found = false;
        for (doc, waits) in &mut self.by_doc {
            if let Some(i) = waits.iter().position(|(w, _)| *w == id) {
                waits.swap_remove(i);
                found = true;
                if waits.is_empty() {
                    emptied = Some(doc.clone());
                }
                break;
            }
        }
        if let Some(doc) = emptied {
            self.by_doc.remove(&doc);
        }
        if found {
            self.count -= 1;
        }
        found
    }

    fn oldest(&self) -> Option<HeldWait> {
        self.by_doc
            .values()
            .flat_map(|w| w.iter().map(|(id, _)| *id))
            .min()
    }
}

impl Engine {
    /// Waits until a connected peer holds every change of `doc` up to `heads` (a write's
    /// heads) on its disk. The answer comes from [`Engine::poll_held`], at once if a peer
    /// already holds them, else when a peer announces heads that cover them. The driver
    /// times the wait out and then calls [`Engine::cancel_held`].
    pub fn await_held(&mut self, doc: DocumentId, heads: Vec<ChangeHash>) -> HeldWait {
        let id = HeldWait(self.held.next);
        self.held.next += 1;
        let holder = self
            .peers
            .keys()
            .find(|p| self.peer_holds(p, &doc, &heads))
            .cloned();
        if let Some(peer) = holder {
            self.held.done.push_back((id, peer));
            return id;
        }
        if self.held.count >= MAX_HELD_WAITS {
            if let Some(oldest) = self.held.oldest() {
                self.held.remove(oldest);
            }
        }
        self.held.by_doc.entry(doc).or_default().push((id, heads));
        self.held.count += 1;
        id
    }

    /// Forgets a wait (its caller timed out); returns whether it was still waiting.
    pub fn cancel_held(&mut self, id: HeldWait) -> bool {
        self.held.remove(id)
    }

    /// The next answered wait and the peer that holds its heads.
    pub fn poll_held(&mut self) -> Option<(HeldWait, PeerId)> {
        self.held.done.pop_front()
    }

    /// How many waits are registered and unanswered.
    pub fn held_waits(&self) -> usize {
        self.held.count
    }

    /// We learnt `peer`'s heads of `doc`: answers the waits they cover.
    pub(super) fn heads_learned(&mut self, peer: &PeerId, doc: &DocumentId) {
        let Some(waits) = self.held.by_doc.get(doc) else {
            return;
        };
        let covered: Vec<HeldWait> = waits
            .iter()
            .filter(|(_, heads)| self.peer_holds(peer, doc, heads))
            .map(|(id, _)| *id)
            .collect();
        for id in covered {
            self.held.remove(id);
            self.held.done.push_back((id, peer.clone()));
        }
    }

    /// Whether the heads `peer` last announced for `doc` cover `wanted`.
    fn peer_holds(&self, peer: &PeerId, doc: &DocumentId, wanted: &[ChangeHash]) -> bool {
        let Some(theirs) = self
            .peers
            .get(peer)
            .and_then(|p| p.docs.get(doc))
            .and_then(|d| d.state.as_ref())
            .and_then(|s| s.their_heads.as_ref())
        else {
            return false;
        };
        if wanted.is_empty() {
            return true;
        }
        // A live exchange: the peer's answer names our new heads themselves.
        if wanted.iter().all(|h| theirs.contains(h)) {
            return true;
        }
        // Otherwise the wanted heads must be ancestors of theirs. Only the heads of theirs
        // that we hold can be judged (one we lack may descend from ours, but until it
        // arrives we cannot tell): `wanted` is covered by them exactly when adding it to
        // them covers no more changes. Both counts cost what the peer lacks, not the
        // document's history (the change graph's clock index).
        let known: Vec<ChangeHash> = theirs
            .iter()
            .filter(|h| {
                self.store
                    .has_all(doc, std::slice::from_ref(*h))
                    .unwrap_or(false)
            })
            .copied()
            .collect();
        if known.is_empty() || !self.store.has_all(doc, wanted).unwrap_or(false) {
            return false;
        }
        let mut with = known.clone();
        with.extend_from_slice(wanted);
        match (
            self.store.count_changes_since(doc, &known),
            self.store.count_changes_since(doc, &with),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}
