//! Records and enums that cross the FFI, and their conversions from the Rust API.

use outpost_core::engine::{DocStatus, PeerStatus};
use outpost_core::{ConflictValue, Origin, PeerInfo};

/// Who a device is, as its certificate says.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PeerIdentity {
    /// The site (restaurant, shop), e.g. `paris-11`.
    pub site: String,
    /// The device id within the site, e.g. `kiosk-1`.
    pub peer: String,
    /// The role, e.g. `pos`, `kiosk`, `menu-board`, `kitchen`, `cloud`.
    pub role: String,
}

impl From<&PeerInfo> for PeerIdentity {
    fn from(p: &PeerInfo) -> Self {
        PeerIdentity {
            site: p.site.to_string(),
            peer: p.peer.to_string(),
            role: p.role.to_string(),
        }
    }
}

/// Where a change came from.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ChangeOrigin {
    /// Written by this app through this node.
    Local,
    /// Received from another device by sync.
    Remote {
        /// The device id of the peer it came from.
        peer: String,
    },
    /// Merged from Automerge bytes (a backup or an export).
    Import,
    /// Found corrupt on disk and moved aside; it comes back from peers by sync.
    Quarantine,
}

impl From<&Origin> for ChangeOrigin {
    fn from(o: &Origin) -> Self {
        match o {
            Origin::Local => ChangeOrigin::Local,
            Origin::Remote(peer) => ChangeOrigin::Remote {
                peer: peer.to_string(),
            },
            Origin::Import => ChangeOrigin::Import,
            Origin::Quarantine => ChangeOrigin::Quarantine,
        }
    }
}

/// What changed in a document.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChangeEvent {
    /// The document, e.g. `menu` or `orders/2026-11-24`.
    pub doc: String,
    /// JSON Pointers of the values that changed (within the subscription's path).
    pub paths: Vec<String>,
    /// Where the change came from.
    pub origin: ChangeOrigin,
    /// The document's heads after the change (hex change hashes).
    pub heads: Vec<String>,
}

impl From<&outpost_core::ChangeEvent> for ChangeEvent {
    fn from(e: &outpost_core::ChangeEvent) -> Self {
        ChangeEvent {
            doc: e.doc.to_string(),
            paths: e.paths.clone(),
            origin: (&e.origin).into(),
            heads: e.heads.clone(),
        }
    }
}

/// Changes to a document that were refused by the access policy; nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RefusedChange {
    /// The other device of the link.
    pub peer: String,
    /// The document.
    pub doc: String,
    /// Why, as the refusing side put it.
    pub reason: String,
    /// `false`: this node refused changes that `peer` may not make. `true`: `peer` refused
    /// changes of this node (this device's role may not write `doc` there).
    pub refused_by_peer: bool,
}

/// One of the concurrent values at a path: two devices wrote it without seeing each
/// other's write. Reads return the winner; the others stay visible here.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Conflict {
    /// The value, as JSON text.
    pub json: String,
    /// The device that wrote it, if it wrote through outpost.
    pub author: Option<String>,
    /// That device's role.
    pub author_role: Option<String>,
    /// The Automerge actor id that wrote it (hex).
    pub actor: String,
    /// Whether reads return this value (Automerge's deterministic winner).
    pub winner: bool,
}

impl From<&ConflictValue> for Conflict {
    fn from(c: &ConflictValue) -> Self {
        Conflict {
            json: c.value.to_string(),
            author: c.author.as_ref().map(|p| p.to_string()),
            author_role: c.author_role.as_ref().map(|r| r.to_string()),
            actor: c.actor.clone(),
            winner: c.winner,
        }
    }
}

/// One operation of a transaction (see `Outpost.transact`).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TxOp {
    /// Writes a JSON value at a path, creating missing parent objects.
    Put {
        /// JSON Pointer, e.g. `/items/burger/price`.
        path: String,
        /// The value as JSON text, e.g. `950` or `{"name":"Burger"}`.
        json: String,
    },
    /// Deletes the value at a path.
    Delete {
        /// JSON Pointer.
        path: String,
    },
    /// Inserts a JSON value into the list at `path` before `index`.
    Insert {
        /// JSON Pointer of the list (created if missing).
        path: String,
        /// Position; the list's length appends.
        index: u32,
        /// The value as JSON text.
        json: String,
    },
    /// Appends a JSON value to the list at `path` (created if missing).
    Push {
        /// JSON Pointer of the list.
        path: String,
        /// The value as JSON text.
        json: String,
    },
    /// Adds `delta` to the counter at `path` (created at `delta` if missing).
    Increment {
        /// JSON Pointer of the counter.
        path: String,
        /// The amount, negative to decrement.
        delta: i64,
    },
}

/// Sync status for an app's badge: offline, or N changes not yet on other devices.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// Whether a link to at least one peer is up now.
    pub online: bool,
    /// The peers connected now.
    pub connected_peers: Vec<PeerIdentity>,
    /// Changes of this node that some known peer is not known to have.
    pub unsynced_changes: u64,
    /// Details per known peer.
    pub peers: Vec<PeerSyncStatus>,
}

/// Sync status with one peer.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PeerSyncStatus {
    /// The peer's device id.
    pub peer: String,
    /// Its role, if known.
    pub role: Option<String>,
    /// Whether a link to it is up now.
    pub connected: bool,
    /// Changes it lacks, over all documents.
    pub unsynced_changes: u64,
    /// Per document.
    pub documents: Vec<DocumentSyncStatus>,
}

/// Sync status of one document with one peer.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct DocumentSyncStatus {
    /// The document.
    pub doc: String,
    /// When both sides last had the same state, in milliseconds since the Unix epoch.
    pub last_sync_ms: Option<u64>,
    /// How many of this node's changes the peer is not known to have.
    pub unsynced_changes: u64,
    /// Whether the peer is known to have changes this node lacks.
    pub behind: bool,
    /// Since when the peer has lacked some changes, in milliseconds since the Unix epoch.
    pub unsynced_since_ms: Option<u64>,
    /// Whether changes were refused on this link (by either side) since it came up.
    pub refused: bool,
}

impl SyncStatus {
    pub(crate) fn new(s: &outpost_core::engine::SyncStatus, connected: &[PeerInfo]) -> Self {
        SyncStatus {
            online: !connected.is_empty(),
            connected_peers: connected.iter().map(PeerIdentity::from).collect(),
            unsynced_changes: s.unsynced_changes() as u64,
            peers: s.peers.iter().map(PeerSyncStatus::from).collect(),
        }
    }

    /// The status of a node without network: no peers.
    pub(crate) fn offline() -> Self {
        SyncStatus {
            online: false,
            connected_peers: Vec::new(),
            unsynced_changes: 0,
            peers: Vec::new(),
        }
    }
}

impl From<&PeerStatus> for PeerSyncStatus {
    fn from(p: &PeerStatus) -> Self {
        PeerSyncStatus {
            peer: p.peer.to_string(),
            role: p.role.as_ref().map(|r| r.to_string()),
            connected: p.connected,
            unsynced_changes: p.they_lack() as u64,
            documents: p.docs.iter().map(DocumentSyncStatus::from).collect(),
        }
    }
}

impl From<&DocStatus> for DocumentSyncStatus {
    fn from(d: &DocStatus) -> Self {
        DocumentSyncStatus {
            doc: d.doc.to_string(),
            last_sync_ms: d.last_sync.map(|t| t.as_millis()),
            unsynced_changes: d.they_lack as u64,
            behind: d.we_lack,
            unsynced_since_ms: d.unsynced_since.map(|t| t.as_millis()),
            refused: d.refused,
        }
    }
}

/// How far a write is acknowledged (`putReplicated`, `transactReplicated`): what the app may
/// show ("saved on the site", "saved on this tablet only").
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum WriteAck {
    /// In the store; flushed to disk in the background (writes with `durableWrites` off).
    InStore,
    /// On this device's disk only: no other device of the site, nor the cloud, acknowledged
    /// it within `replicatedTimeoutMs`. Not an error: the write is kept and reaches the
    /// peers once one is reachable, but if this device dies first it is lost.
    ThisDevice,
    /// On this device's disk and on the disk of `peer` (another device of the site, or the
    /// cloud): it survives the loss of this device.
    Site {
        /// The device id of the first peer that held it.
        peer: String,
    },
}

impl From<&outpost_core::Acknowledged> for WriteAck {
    fn from(a: &outpost_core::Acknowledged) -> Self {
        match a {
            outpost_core::Acknowledged::InStore => WriteAck::InStore,
            outpost_core::Acknowledged::ThisDevice => WriteAck::ThisDevice,
            outpost_core::Acknowledged::Site { peer } => WriteAck::Site {
                peer: peer.to_string(),
            },
        }
    }
}

/// One entry of the audit trail of sync (see `auditBlocking`). Fields that do not apply to
/// its kind are empty.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct AuditEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened: `link_opened`, `link_closed`, `link_refused`, `changes_refused`,
    /// `refused_by_peer`, `revoked`, `certificate_renewed`, `erased`, `backup_taken`,
    /// `acknowledged`.
    pub kind: String,
    /// The peer's device id.
    pub peer: Option<String>,
    /// The peer's site.
    pub site: Option<String>,
    /// The peer's role.
    pub role: Option<String>,
    /// The document.
    pub doc: Option<String>,
    /// For links: whether this device dialed.
    pub dialed_by_us: Option<bool>,
    /// For refusals: the rule that refused (`write`, `relay`, `path`, `signature`, ...).
    pub rule: Option<String>,
    /// For refusals: the devices the refused changes claim as authors.
    pub authors: Vec<String>,
    /// For acknowledgements: the heads the peer holds on its disk (hex change hashes).
    pub heads: Vec<String>,
    /// For acknowledgements: how many were coalesced into this entry (one per minute).
    pub count: u32,
    /// What happened, in words (a close code, a reason).
    pub detail: String,
}

impl From<&outpost_core::AuditEntry> for AuditEntry {
    fn from(e: &outpost_core::AuditEntry) -> Self {
        AuditEntry {
            at_ms: e.at_ms,
            kind: e.kind.to_string(),
            peer: e.peer.clone(),
            site: e.site.clone(),
            role: e.role.clone(),
            doc: e.doc.clone(),
            dialed_by_us: e.dialed_by_us,
            rule: e.rule.clone(),
            authors: e.authors.clone(),
            heads: e.heads.clone(),
            count: e.count,
            detail: e.detail.clone(),
        }
    }
}
