//! What is unsynced, since when, and with whom.

use std::collections::BTreeMap;

use super::Engine;
use crate::{DocumentId, PeerId, PeerInfo, Role, Timestamp};

/// Counters of an engine since it started; the cloud peer exports them as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineMetrics {
    /// Bytes received from peers.
    pub bytes_in: u64,
    /// Bytes sent to peers.
    pub bytes_out: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Changes received and applied.
    pub changes_applied: u64,
    /// Changes received and refused by the access policy.
    pub changes_refused: u64,
    /// Messages that could not be decoded or applied.
    pub sync_errors: u64,
    /// Writes of sync bookkeeping or received changes that the store refused.
    pub storage_errors: u64,
    /// Change signatures verified (one per actor per received message).
    pub signatures_verified: u64,
    /// Revocations signed by the fleet CA learnt (from the app or from peers).
    pub revocations_learned: u64,
}

/// Sync status of every peer this engine knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStatus {
    /// Per peer.
    pub peers: Vec<PeerStatus>,
    /// Per document held here: its size on disk and its retention. Filled by
    /// `Engine::status_at` (retention depends on the day); empty from `Engine::status`.
    pub documents: Vec<DocumentStatus>,
}

/// One document held here.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DocumentStatus {
    /// The document.
    pub doc: DocumentId,
    /// Bytes of its stored chunks (`Store::document_bytes`).
    pub bytes: u64,
    /// Whether this device keeps it.
    pub retention: Retention,
}

/// Whether a device keeps a document under its role's retention (`ContextRule::retain_days`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Within the retention (or not dated, or no retention for this role): kept.
    Kept,
    /// Past the retention, and a cloud peer holds all of it: dropped by the next
    /// housekeeping (`Engine::drop_expired`).
    DropDue,
    /// Past the retention, but no cloud peer is known to hold all of it yet: kept (and
    /// uploaded on connect) until one does. Never the only copy.
    WaitingForCloud,
}

impl SyncStatus {
    /// Total number of changes that some known peer still lacks. Revoked peers do not
    /// count: they will never get them, and a backlog that cannot drain says nothing.
    pub fn unsynced_changes(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| !p.revoked)
            .flat_map(|p| &p.docs)
            .map(|d| d.they_lack)
            .sum()
    }

    /// The status of one peer.
    pub fn peer(&self, peer: &PeerId) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| &p.peer == peer)
    }
}

/// Sync status with one peer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// The peer.
    pub peer: PeerId,
    /// Its role, if known.
    pub role: Option<Role>,
    /// Whether a link is up now.
    pub connected: bool,
    /// While not connected: since when (this session), if it was seen.
    pub offline_since: Option<Timestamp>,
    /// While not connected: why, e.g. "closed by the peer: revoked (0x03)", "connection
    /// lost", "refused: revoked (0x03)", "not reachable".
    pub offline_reason: Option<String>,
    /// Whether the peer is revoked here: refused, and left out of the backlog.
    pub revoked: bool,
    /// Per document.
    pub docs: Vec<DocStatus>,
}

impl PeerStatus {
    /// Changes this peer lacks, over all documents.
    pub fn they_lack(&self) -> usize {
        self.docs.iter().map(|d| d.they_lack).sum()
    }
}

/// Sync status of one document with one peer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DocStatus {
    /// The document.
    pub doc: DocumentId,
    /// When both sides last had the same heads.
    pub last_sync: Option<Timestamp>,
    /// How many of our changes the peer is not known to have.
    pub they_lack: usize,
    /// Whether the peer is known to have changes we lack.
    pub we_lack: bool,
    /// Since when the peer has lacked some of our changes.
    pub unsynced_since: Option<Timestamp>,
    /// Whether changes were refused on this link (by either side) this session.
    pub refused: bool,
    /// Why changes do not flow, when something says: a refusal this session (by either
    /// side, with its reason), or the peer declaring itself read-only for the document
    /// while it lacks our changes (it takes none from this device).
    pub reason: Option<String>,
}

/// Why `peer` takes none of `local`'s changes of `doc` (its sync messages say read-only).
pub(super) fn read_only_reason(local: &PeerInfo, peer: &PeerInfo, doc: &DocumentId) -> String {
    format!(
        "{} takes no changes of {doc} from this device (it says read-only): its policy lets \
         role {} neither write context {} nor relay it, or it runs a version of outpost that \
         takes changes of a context only from its writers",
        peer.peer,
        local.role,
        doc.context()
    )
}

pub(super) fn documents(engine: &Engine, now: Timestamp) -> Vec<DocumentStatus> {
    let store = &engine.store;
    let role = &engine.config.local.role;
    let docs = match store.documents() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "the status cannot list documents");
            return Vec::new();
        }
    };
    docs.into_iter()
        .map(|doc| {
            let retention = if engine.config.policy.retains(role, &doc, now) {
                Retention::Kept
            } else if engine.held_by_cloud(&doc) {
                Retention::DropDue
            } else {
                Retention::WaitingForCloud
            };
            DocumentStatus {
                bytes: store.document_bytes(&doc).unwrap_or(0),
                doc,
                retention,
            }
        })
        .collect()
}

pub(super) fn build(engine: &Engine) -> SyncStatus {
    let store = &engine.store;
    let mut by_peer: BTreeMap<PeerId, Vec<DocumentId>> = BTreeMap::new();
    for (peer, doc) in engine.progress.keys() {
        by_peer.entry(peer.clone()).or_default().push(doc.clone());
    }
    for (id, p) in &engine.peers {
        let docs = by_peer.entry(id.clone()).or_default();
        docs.extend(p.docs.keys().cloned());
    }
    for id in engine.known_roles.keys() {
        by_peer.entry(id.clone()).or_default();
    }
    let mut peers = Vec::new();
    for (peer, mut docs) in by_peer {
        docs.sort();
        docs.dedup();
        // Documents a peer only named are not ours to report (nor to create by reading).
        docs.retain(|d| engine.known.contains(d));
        let live = engine.peers.get(&peer);
        let role = live
            .map(|p| p.info.role.clone())
            .or_else(|| engine.known_roles.get(&peer).cloned());
        if let Some(role) = &role {
            docs.retain(|d| engine.config.policy.may_read(role, d.context()));
        }
        let mut out = Vec::new();
        for doc in docs {
            let ds = live.and_then(|p| p.docs.get(&doc));
            let their_heads = match ds.and_then(|d| d.state.as_ref()) {
                Some(s) => s
                    .their_heads
                    .clone()
                    .unwrap_or_else(|| s.shared_heads.clone()),
                None => super::SyncStateStore::load_sync_state(store, &peer, &doc)
                    .ok()
                    .flatten()
                    .map(|s| s.shared_heads)
                    .unwrap_or_default(),
            };
            let known: Vec<_> = their_heads
                .iter()
                .filter(|h| store.has_all(&doc, &[**h]).unwrap_or(false))
                .cloned()
                .collect();
            let we_lack = known.len() < their_heads.len();
            let they_lack = store.count_changes_since(&doc, &known).unwrap_or(0);
            let progress = engine
                .progress
                .get(&(peer.clone(), doc.clone()))
                .copied()
                .unwrap_or_default();
            let reason = match ds {
                Some(d) if d.refusal.is_some() => d.refusal.clone(),
                Some(d)
                    if they_lack > 0
                        && d.state.as_ref().is_some_and(|s| s.peer_read_only)
                        && live.is_some() =>
                {
                    live.map(|p| read_only_reason(&engine.config.local, &p.info, &doc))
                }
                _ => None,
            };
            out.push(DocStatus {
                reason,
                doc,
                last_sync: progress.last_sync,
                they_lack,
                we_lack,
                unsynced_since: if they_lack > 0 {
                    progress.unsynced_since
                } else {
                    None
                },
                refused: ds.is_some_and(|d| d.refused_by_peer || d.refused_by_us),
            });
        }
        peers.push(PeerStatus {
            peer,
            role,
            connected: live.is_some(),
            offline_since: None,
            offline_reason: None,
            revoked: false,
            docs: out,
        });
    }
    SyncStatus {
        peers,
        documents: Vec::new(),
    }
}
