//! The sans-IO sync engine.
//!
//! The engine keeps the documents of a [`Store`] in sync with many peers. It performs no IO of
//! its own besides the store: its driver (the QUIC transport, or the in-memory simulation in
//! tests) feeds it events with `handle_*` and drains what to do with `poll_*`, passing `now`.
//!
//! Per (peer, document) it keeps an Automerge `sync::State`; the part that survives restarts
//! (the heads both sides are known to share) is persisted in the store after every exchange,
//! so a reconnect, or a restart of either side, resumes with only what is missing. See
//! `core/docs/design.md` for the protocol, the flow control and the trust rules.

mod held;
mod persist;
pub mod reconcile;
mod relayed;
mod revocations;
mod signatures;
mod status;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::sync;
use automerge::ChangeHash;

pub use self::held::{HeldWait, MAX_HELD_WAITS};
use self::persist::{Progress, SyncStateStore};
pub use self::revocations::{RevocationRefused, MAX_BAD_REVOCATIONS_PER_SESSION};
pub use self::signatures::{MAX_CERTIFICATES_PER_MESSAGE, MAX_PENDING_SIGNATURES};
pub use self::status::{
    DocStatus, DocumentStatus, EngineMetrics, PeerStatus, Retention, SyncStatus,
};
use self::wire::{DocDigest, Protocol, WireError, WireMessage, FRAGMENT_BYTES};
use crate::signing::{KeyId, SharedVerifier, SignatureRule};
use crate::store::Received;
use crate::{parse_actor, DocumentId, Event, PeerId, PeerInfo, Policy, Store, Timestamp};

/// Bytes of sync payload that may be unacknowledged per peer.
pub const DEFAULT_WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// The largest fragmented message reassembled.
pub const DEFAULT_MAX_REASSEMBLY_BYTES: usize = wire::MAX_SYNC_BYTES;
/// The most bytes the compressed parts of one received message may inflate to.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;
/// After this long without progress, an exchange is assumed lost and restarted.
pub const DEFAULT_RETRY_MS: u64 = 2_000;

/// A link whose unacknowledged bytes see no acknowledgement for `STALL_FACTOR * retry_ms`,
/// or a reassembly that gets no part for as long, is stalled (on a slow link one 256 KiB
/// fragment takes seconds, so these wait longer than one exchange's retry).
const STALL_FACTOR: u64 = 4;

/// Configuration of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Who this engine is.
    pub local: PeerInfo,
    /// Who may read and write what.
    pub policy: Policy,
    /// Unacknowledged sync payload bytes allowed in flight per peer.
    pub window_bytes: u64,
    /// Restart an exchange after this many milliseconds without progress.
    pub retry_ms: u64,
    /// The largest fragmented message reassembled (default 64 MiB). Per peer, at most this
    /// plus `window_bytes` of fragments are buffered.
    pub max_reassembly_bytes: usize,
    /// The most bytes the compressed parts of one received message may inflate to before it
    /// is applied (default 64 MiB); a message over it is refused unread.
    pub max_inflated_bytes: usize,
    /// Flush received changes to disk before answering the peer (default true), so that the
    /// heads we tell a peer, and so its "synced" status, are never ahead of our disk.
    pub durable_acks: bool,
    /// Documents this store may hold before peers' changes creating new ones are refused
    /// (default 100,000).
    pub max_documents: usize,
    /// Documents one peer's changes may create here in one session (default 1,000).
    pub max_new_documents_per_session: usize,
    /// Documents the changes of one device may create here, across sessions and restarts
    /// (default 10,000, a tenth of `max_documents`): counted per author device (the device
    /// its changes' actors claim, proven by signatures; the sender for actors that are not
    /// devices), persisted in the store's `meta`, so that one device's junk never fills the
    /// store for the others. Changes of the cloud and of head office are not counted.
    pub max_new_documents_per_device: usize,
    /// Bytes of changes one peer may send us per hour (default 256 MiB), counted as they
    /// arrive in a token bucket that starts full and refills evenly, across sessions; the
    /// cloud (trusted with every context) is not limited. Changes over it are refused like a
    /// policy refusal, for the rest of the session on that document.
    pub max_peer_bytes_per_hour: u64,
    /// Checks the certificates and signatures that travel with changes. `None`: no change
    /// is checked for a signature and received signatures are dropped (engines of tools and
    /// of tests that predate signing); every device of a signing fleet has one.
    pub verifier: Option<SharedVerifier>,
    /// Whether unsigned changes are still accepted (see [`SignatureRule`]).
    pub signatures: SignatureRule,
}

/// The default of [`EngineConfig::max_new_documents_per_device`].
pub const DEFAULT_MAX_NEW_DOCUMENTS_PER_DEVICE: usize = 10_000;

/// The default of [`EngineConfig::max_peer_bytes_per_hour`]: 256 MiB, about a thousand busy
/// days of one device's orders.
pub const DEFAULT_MAX_PEER_BYTES_PER_HOUR: u64 = 256 * 1024 * 1024;

impl EngineConfig {
    /// A configuration with default limits.
    pub fn new(local: PeerInfo, policy: Policy) -> Self {
        EngineConfig {
            local,
            policy,
            window_bytes: DEFAULT_WINDOW_BYTES,
            retry_ms: DEFAULT_RETRY_MS,
            max_reassembly_bytes: DEFAULT_MAX_REASSEMBLY_BYTES,
            max_inflated_bytes: DEFAULT_MAX_INFLATED_BYTES,
            durable_acks: true,
            max_documents: 100_000,
            max_new_documents_per_session: 1_000,
            max_new_documents_per_device: DEFAULT_MAX_NEW_DOCUMENTS_PER_DEVICE,
            max_peer_bytes_per_hour: DEFAULT_MAX_PEER_BYTES_PER_HOUR,
            verifier: None,
            signatures: SignatureRule::default(),
        }
    }
}

/// What a peer may still send us under [`EngineConfig::max_peer_bytes_per_hour`].
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Negative: in debt.
    bytes: i64,
    at: Timestamp,
}

/// Bytes to send to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The receiver.
    pub to: PeerId,
    /// The document the message belongs to (its stream), `None` for control messages.
    pub doc: Option<DocumentId>,
    /// The encoded [`WireMessage`].
    pub bytes: Vec<u8>,
}

/// Why a message from a peer could not be handled. The link stays usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The peer is not connected (call `handle_connect` first).
    #[error("message from {0}, which is not connected; call handle_connect first")]
    UnknownPeer(PeerId),
    /// The bytes were not a valid wire message.
    #[error("bad message from {peer}: {source}")]
    Wire {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        #[source]
        source: WireError,
    },
    /// The Automerge sync message inside could not be decoded.
    #[error("bad sync message from {peer} for document {doc}: {reason}")]
    BadSync {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// What was wrong.
        reason: String,
    },
    /// A `Signatures` message was malformed, named an untrusted certificate, or exceeded a
    /// limit. Nothing of it is kept; changes it was meant for are refused if they need it.
    #[error("bad signatures from {peer} for document {doc}: {reason}")]
    BadSignatures {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// What was wrong.
        reason: String,
    },
    /// A `Revocations` message was too large, or a record in it was malformed or not signed
    /// by the fleet CA. The records before that one were taken; the rest of the message was
    /// dropped.
    #[error("bad revocation from {peer}: {reason}")]
    BadRevocation {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

#[derive(Default)]
struct DocSync {
    state: Option<sync::State>,
    /// The peer refused our changes this session: offer nothing more.
    refused_by_peer: bool,
    /// We refused the peer's changes this session.
    refused_by_us: bool,
    /// Why changes were refused on this link this session (by either side), for the status.
    refusal: Option<String>,
    /// The peer declared itself read-only for this document while it lacked our changes,
    /// and that was logged (once per session).
    read_only_warned: bool,
    /// When the last message of this exchange was sent or received.
    last_activity: Timestamp,
    /// We sent a message and still expect an answer (see [`Engine::awaits_reply`]): only
    /// then is an exchange that goes silent restarted by [`Engine::handle_timeout`].
    awaiting: bool,
    /// What the peer's last message asked for (see `handle_sync`).
    needed: Vec<ChangeHash>,
    /// Reassembly of a fragmented sync message: parts by index.
    parts: Vec<Option<Vec<u8>>>,
    parts_bytes: usize,
    /// Certificates sent on this document's stream this session. Per stream, not per peer:
    /// streams of different documents overtake each other, so a certificate sent with one
    /// document may arrive after the signatures of another that rely on it (found by the
    /// lossy relay test over QUIC).
    sent_certs: BTreeSet<KeyId>,
    /// The signatures of our own earlier actors went with a message this session (see
    /// `Engine::queue_signatures`).
    backfilled: bool,
    /// Why the peer's last `Signatures` message for this document failed: its changes that
    /// follow are refused.
    bad_signatures: Option<String>,
}

struct Peer {
    info: PeerInfo,
    /// Ordered (as every collection of the engine), so that the order of its output does not
    /// depend on the process's hash seed and simulations replay exactly.
    docs: BTreeMap<DocumentId, DocSync>,
    control: VecDeque<(Option<DocumentId>, Vec<u8>)>,
    bulk: VecDeque<(DocumentId, Vec<u8>)>,
    in_flight: u64,
    last_ack: Timestamp,
    pending_ack: u64,
    /// Pages of the peer's Hello received so far.
    hello_pending: Vec<DocDigest>,
    /// The documents both sides may read, as they were when the link came up
    /// ([`Protocol::V2`]), kept while a reconciliation goes on.
    snapshot: Option<reconcile::Snapshot>,
    /// Names the peer listed in `Reconcile` items this session.
    named: usize,
    /// Documents this peer's changes created here this session.
    created: usize,
    /// Signatures received for changes not received (or not applied) yet, per document.
    pending_sigs: BTreeMap<DocumentId, signatures::Pending>,
    /// The peer answered a `Signatures` message as malformed: an engine from before signed
    /// changes. It gets none for the rest of the session.
    legacy: bool,
    /// The peer speaks [`Protocol::V3`]: it gets and relays revocations.
    revocations: bool,
    /// Revocations of this peer that failed verification this session.
    bad_revocations: u32,
    /// Documents in `docs` that this store did not hold when their entry was made (see
    /// [`MAX_UNHELD_STATES_PER_PEER`]).
    unheld: BTreeSet<DocumentId>,
    /// Documents in `docs` with a timer running (awaiting an answer, or reassembling), so
    /// that `poll_timeout` and `handle_timeout` visit those, not every document ever synced.
    active: BTreeSet<DocumentId>,
}

impl Peer {
    /// The entry of `doc`, made if missing; `held`: this store holds the document. A peer
    /// can name any document (empty sync messages, refusals, signatures, fragments), so
    /// entries of documents not held here are bounded: past the limit, none is made and the
    /// caller answers without keeping state.
    fn entry(&mut self, doc: &DocumentId, held: bool) -> Option<&mut DocSync> {
        if !held && !self.docs.contains_key(doc) {
            if self.unheld.len() >= MAX_UNHELD_STATES_PER_PEER {
                return None;
            }
            self.unheld.insert(doc.clone());
        }
        Some(self.docs.entry(doc.clone()).or_default())
    }

    /// Re-files `doc` in `active` after its timer state changed.
    fn refresh_active(&mut self, doc: &DocumentId) {
        match self.docs.get(doc) {
            Some(ds) if ds.awaiting || !ds.parts.is_empty() => {
                self.active.insert(doc.clone());
            }
            _ => {
                self.active.remove(doc);
            }
        }
    }

    /// Forgets the entry of `doc`.
    fn remove(&mut self, doc: &DocumentId) {
        self.docs.remove(doc);
        self.unheld.remove(doc);
        self.active.remove(doc);
    }
}

/// The most per-document entries one peer's session may have for documents this store does
/// not hold (a peer that offers a document we lack, or names one to make us spend memory):
/// past it, such documents are answered without keeping state, and the peer, which holds
/// them, drives the exchange. Entries of documents held here are bounded by the store's
/// documents (`EngineConfig::max_documents`).
pub const MAX_UNHELD_STATES_PER_PEER: usize = 1_024;

/// The most fragmented messages one peer may have in reassembly at once.
pub const MAX_REASSEMBLIES_PER_PEER: usize = 64;

/// The most documents a peer's Hello may list (pages included): 1,000,000 entries of at most
/// 128-byte names is about 150 MB over 300 pages, and what it costs us is bounded by this.
pub const MAX_HELLO_DOCUMENTS: usize = 1_000_000;

/// The sync engine. See the [module documentation](self).
pub struct Engine {
    store: Store,
    config: EngineConfig,
    peers: BTreeMap<PeerId, Peer>,
    /// Roles of peers seen, for status of disconnected peers.
    known_roles: BTreeMap<PeerId, crate::Role>,
    progress: BTreeMap<(PeerId, DocumentId), Progress>,
    events: VecDeque<Event>,
    metrics: EngineMetrics,
    rr: usize,
    /// The documents the store holds. Documents are created only when changes arrive for
    /// them (from the app, or from a peer that may write them), never because a peer named
    /// them: a Hello listing 10,000 names creates nothing.
    known: std::collections::BTreeSet<DocumentId>,
    /// Byte quotas of peers, kept across their sessions.
    quotas: BTreeMap<PeerId, Bucket>,
    /// Certificates verified this run, by key id: the identity each certifies and its DER.
    certs: BTreeMap<KeyId, (PeerInfo, Vec<u8>)>,
    /// Devices whose certificate this store knows: their changes must be signed.
    certified: BTreeSet<PeerId>,
    /// Revocations signed by the fleet CA.
    revocations: revocations::Revocations,
    /// Documents each device's changes created here, across sessions (persisted).
    created_by: BTreeMap<PeerId, u64>,
    /// Writes waiting for a peer to hold them (`Durability::Replicated`).
    held: held::HeldWaits,
}

/// The erasure list's document id.
fn erasure_list() -> DocumentId {
    crate::ERASURES_DOC
        .parse()
        .expect("the erasure list's name is a valid document id")
}

/// Whether `doc` is the erasure list.
fn is_erasure_list(doc: &DocumentId) -> bool {
    doc.partition().is_none() && doc.context().as_str() == crate::ERASURES_DOC
}

/// The first 8 bytes of the SHA-256 of the sorted heads: equal heads give equal digests, and
/// unequal heads collide with probability 2^-64 (an XOR of the hashes collided whenever two
/// heads swapped roles, e.g. {a, b} and {a ^ c, b ^ c}).
fn digest(heads: &[ChangeHash]) -> u64 {
    use sha2::Digest;
    let mut sorted = heads.to_vec();
    sorted.sort();
    let mut h = sha2::Sha256::new();
    for head in &sorted {
        h.update(head.0);
    }
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out[..8]);
    u64::from_le_bytes(b)
}

/// Splits a Hello's documents into pages of at most `HELLO_PAGE_BYTES` encoded.
fn hello_pages(docs: Vec<DocDigest>) -> Vec<Vec<u8>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut size = 0;
    let n = docs.len();
    for (i, d) in docs.into_iter().enumerate() {
        // A document id, its length and a varint digest: an upper bound per entry.
        let entry = d.doc.context().as_str().len() + d.doc.partition().map_or(0, str::len) + 24;
        if size + entry > wire::HELLO_PAGE_BYTES - 64 && !page.is_empty() {
            pages.push(
                WireMessage::HelloPart {
                    docs: std::mem::take(&mut page),
                }
                .encode(),
            );
            size = 0;
        }
        size += entry;
        page.push(d);
        if i + 1 == n {
            break;
        }
    }
    pages.push(WireMessage::Hello { docs: page }.encode());
    pages
}

impl Engine {
    /// An engine over `store`. Loads what it knows of peers from earlier sessions.
    pub fn new(store: Store, config: EngineConfig) -> Engine {
        let mut engine = Engine {
            store,
            config,
            peers: BTreeMap::new(),
            known_roles: BTreeMap::new(),
            progress: BTreeMap::new(),
            events: VecDeque::new(),
            metrics: EngineMetrics::default(),
            rr: 0,
            known: Default::default(),
            quotas: BTreeMap::new(),
            certs: BTreeMap::new(),
            certified: BTreeSet::new(),
            revocations: Default::default(),
            created_by: BTreeMap::new(),
            held: Default::default(),
        };
        match persist::load_created(&engine.store) {
            Ok(c) => engine.created_by = c,
            Err(e) => engine.storage_failed(None, None, &e),
        }
        engine.load_revocations();
        match engine.store.certified_peers() {
            Ok(c) => engine.certified = c,
            Err(e) => engine.storage_failed(None, None, &e),
        }
        match engine.store.documents() {
            Ok(d) => engine.known = d.into_iter().collect(),
            Err(e) => engine.storage_failed(None, None, &e),
        }
        match SyncStateStore::load_progress(&engine.store) {
            Ok(p) => engine.progress = p.into_iter().collect(),
            Err(e) => engine.storage_failed(None, None, &e),
        }
        match engine.store.load_roles() {
            Ok(r) => engine.known_roles = r,
            Err(e) => engine.storage_failed(None, None, &e),
        }
        // Erasures received before a crash that stopped them being carried out.
        engine.apply_erasures();
        engine
    }

    /// A write (or a read the engine cannot do without) failed: logged, counted and
    /// reported, never swallowed.
    fn storage_failed(
        &mut self,
        peer: Option<&PeerId>,
        doc: Option<&DocumentId>,
        e: &crate::Error,
    ) {
        self.metrics.storage_errors += 1;
        tracing::error!(peer = ?peer.map(ToString::to_string), doc = ?doc.map(ToString::to_string), error = %e, "sync bookkeeping could not be stored");
        self.events.push_back(Event::StorageFailed {
            peer: peer.cloned(),
            doc: doc.cloned(),
            error: e.to_string(),
        });
    }

    /// `doc` is held here from now on (created by a local write or a peer's changes); its
    /// entries stop counting as documents not held. Returns whether it is new.
    fn hold(&mut self, doc: &DocumentId) -> bool {
        let new = self.known.insert(doc.clone());
        if new {
            for p in self.peers.values_mut() {
                p.unheld.remove(doc);
            }
        }
        new
    }

    /// A message about `doc` from `from` that is dropped unread: counted, reported, and
    /// returned as the error of `handle_message`.
    fn dropped(&mut self, from: &PeerId, doc: DocumentId, reason: String) -> EngineError {
        self.metrics.sync_errors += 1;
        self.events.push_back(Event::ProtocolError {
            peer: from.clone(),
            message: format!("{doc}: {reason}; dropped"),
        });
        EngineError::BadSync {
            peer: from.clone(),
            doc,
            reason,
        }
    }

    /// Per-document entries of connected peers' sessions, over all peers (bounded per peer
    /// by the documents held here plus [`MAX_UNHELD_STATES_PER_PEER`]).
    pub fn document_states(&self) -> usize {
        self.peers.values().map(|p| p.docs.len()).sum()
    }

    /// The store the engine syncs.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who this engine is.
    pub fn local(&self) -> &PeerInfo {
        &self.config.local
    }

    /// The access policy.
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    /// Counters since the engine started.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Bytes of fragments held for reassembly, over all peers (bounded per peer by
    /// `max_reassembly_bytes + window_bytes`).
    pub fn buffered_fragment_bytes(&self) -> usize {
        self.peers
            .values()
            .flat_map(|p| p.docs.values())
            .map(|d| d.parts_bytes)
            .sum()
    }

    /// The documents this engine keeps per-document state for with `peer` (sync state,
    /// fragments, refusals): what a peer can make us hold, for the hostile-peer tests.
    pub fn peer_documents(&self, peer: &PeerId) -> Vec<DocumentId> {
        self.peers
            .get(peer)
            .map(|p| p.docs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a peer is connected.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// The documents `peer` may receive from us: those its role may read.
    fn offered(&mut self, peer: &PeerInfo, now: Timestamp) -> Vec<DocumentId> {
        let docs = match self.store.documents() {
            Ok(d) => d,
            Err(e) => {
                self.storage_failed(Some(&peer.peer), None, &e);
                Vec::new()
            }
        };
        // The store is the truth: writes that reached it without `handle_local_change`
        // (before the engine started, or by a tool) are known from here on, and deleted
        // documents are not.
        self.known = docs.iter().cloned().collect();
        docs.into_iter()
            .filter(|d| {
                self.config.policy.may_read(&peer.role, d.context())
                    && self.config.policy.retains(&peer.role, d, now)
            })
            .collect()
    }

    /// The heads of `doc` on disk, from its marker; none if it has none or cannot be read.
    fn heads_or_empty(&self, doc: &DocumentId) -> Vec<ChangeHash> {
        self.store
            .stored_heads(doc)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Whether `doc` is compared in the link's summaries: both sides may read it (a role that
    /// may write a context may read it) and both keep it under their retention.
    fn compared(&self, peer: &PeerInfo, doc: &DocumentId, now: Timestamp) -> bool {
        let policy = &self.config.policy;
        let local = &self.config.local.role;
        policy.may_read(&peer.role, doc.context())
            && policy.may_read(local, doc.context())
            && policy.retains(&peer.role, doc, now)
            && policy.retains(local, doc, now)
            && !self.store.is_erased(doc)
    }

    /// The documents we and `peer` may both read, with their heads on disk.
    fn snapshot(&mut self, peer: &PeerInfo, now: Timestamp) -> reconcile::Snapshot {
        let docs: Vec<DocumentId> = self
            .offered(peer, now)
            .into_iter()
            .filter(|d| self.compared(peer, d, now))
            .collect();
        reconcile::Snapshot::new(docs.into_iter().map(|doc| {
            let heads = self.heads_or_empty(&doc);
            let d = digest(&heads);
            (doc, heads, d)
        }))
    }

    /// A link to `peer` came up. Its identity must come from something the driver verified
    /// (the transport takes it from the peer's certificate).
    pub fn handle_connect(&mut self, peer: PeerInfo, now: Timestamp) {
        self.handle_connect_speaking(peer, Protocol::CURRENT, now)
    }

    /// A link to `peer` that speaks `protocol` came up (see [`Engine::handle_connect`]).
    pub fn handle_connect_speaking(&mut self, peer: PeerInfo, protocol: Protocol, now: Timestamp) {
        let id = peer.peer.clone();
        let _span = tracing::debug_span!("peer", peer = %peer).entered();
        if self.known_roles.get(&id) != Some(&peer.role) {
            self.known_roles.insert(id.clone(), peer.role.clone());
            if let Err(e) = self.store.save_roles(&self.known_roles) {
                self.storage_failed(Some(&id), None, &e);
            }
        }
        let mut p = Peer {
            info: peer,
            docs: BTreeMap::new(),
            control: VecDeque::new(),
            bulk: VecDeque::new(),
            in_flight: 0,
            last_ack: now,
            pending_ack: 0,
            hello_pending: Vec::new(),
            snapshot: None,
            named: 0,
            created: 0,
            pending_sigs: BTreeMap::new(),
            // A peer of protocol 1 predates signed changes: it gets no `Signatures`.
            legacy: protocol == Protocol::V1,
            revocations: protocol >= Protocol::V3,
            bad_revocations: 0,
            unheld: BTreeSet::new(),
            active: BTreeSet::new(),
        };
        for m in self.revocation_messages(protocol) {
            p.control.push_back((None, m));
        }
        match protocol {
            Protocol::V1 => {
                let info = p.info.clone();
                let docs: Vec<DocDigest> = self
                    .offered(&info, now)
                    .into_iter()
                    .map(|doc| {
                        let heads = self.heads_or_empty(&doc);
                        DocDigest {
                            doc,
                            digest: digest(&heads),
                        }
                    })
                    .collect();
                for page in hello_pages(docs) {
                    p.control.push_back((None, page));
                }
            }
            Protocol::V2 | Protocol::V3 => {
                let snapshot = self.snapshot(&p.info, now);
                // One side starts, so that the two runs do not cross: the smaller id.
                if self.config.local.peer < p.info.peer {
                    let start = WireMessage::Reconcile {
                        ranges: vec![snapshot.start()],
                    };
                    p.control.push_back((None, start.encode()));
                }
                p.snapshot = Some(snapshot);
            }
        }
        let info = p.info.clone();
        self.peers.insert(id.clone(), p);
        // Documents past our own retention, kept until a cloud peer holds them, are left out
        // of the summaries (the peer would not send them back): upload them to a peer that
        // keeps them.
        let policy = &self.config.policy;
        let local = &self.config.local.role;
        let upload: Vec<DocumentId> = self
            .known
            .iter()
            .filter(|d| {
                !policy.retains(local, d, now)
                    && policy.retains(&info.role, d, now)
                    && policy.may_read(&info.role, d.context())
            })
            .cloned()
            .collect();
        for doc in upload {
            self.pump(&id, &doc, now);
        }
    }

    /// The link to `peer` went down. Its sync states stay persisted for the next session.
    pub fn handle_disconnect(&mut self, peer: &PeerId, _now: Timestamp) {
        if let Some(p) = self.peers.remove(peer) {
            for (doc, ds) in p.docs {
                if let Some(state) = ds.state {
                    if let Err(e) = SyncStateStore::save_sync_state(&self.store, peer, &doc, &state)
                    {
                        self.storage_failed(Some(peer), Some(&doc), &e);
                    }
                }
            }
        }
    }

    /// A document was changed locally: offer the change to every connected peer that may read it.
    /// An erasure list imported here (by another writer of the store's mirror: another cloud
    /// instance) is carried out first, as one received from a peer is.
    pub fn handle_local_change(&mut self, doc: &DocumentId, now: Timestamp) {
        if is_erasure_list(doc) {
            self.apply_erasures();
        }
        self.hold(doc);
        self.mark_unsynced(doc, None, now);
        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        for p in peers {
            self.pump(&p, doc, now);
        }
    }

    /// The store moved `doc` aside as corrupt (`Origin::Quarantine`): forget what this
    /// session believed peers and we share of it, and ask every connected peer for it again.
    pub fn handle_document_reset(&mut self, doc: &DocumentId, now: Timestamp) {
        self.known.remove(doc);
        for p in self.peers.values_mut() {
            p.remove(doc);
        }
        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        for p in peers {
            self.pump(&p, doc, now);
        }
    }

    /// Drops the documents that this device's retention excludes (see
    /// `ContextRule::retain_days`) and that a cloud peer is known to hold in full (synced, with
    /// none of our changes missing): never the only copy. Returns the documents dropped.
    pub fn drop_expired(&mut self, now: Timestamp) -> Vec<DocumentId> {
        let local = self.config.local.role.clone();
        let expired: Vec<DocumentId> = self
            .known
            .iter()
            .filter(|d| !self.config.policy.retains(&local, d, now))
            .cloned()
            .collect();
        let mut dropped = Vec::new();
        for doc in expired {
            if !self.held_by_cloud(&doc) {
                continue;
            }
            match self.store.delete_document(&doc) {
                Ok(_) => {
                    tracing::info!(%doc, "dropped by retention; the cloud holds it");
                    self.known.remove(&doc);
                    for p in self.peers.values_mut() {
                        p.remove(&doc);
                    }
                    self.progress.retain(|(_, d), _| d != &doc);
                    dropped.push(doc);
                }
                Err(e) => self.storage_failed(None, Some(&doc), &e),
            }
        }
        dropped
    }

    /// Erases `doc` fleet-wide (a cloud's command): adds it to the erasure list (the
    /// `erasures` document, which every role reads and only the cloud writes), deletes it
    /// here and keeps a tombstone, so that it is refused if a peer sends it back. Devices
    /// that receive the list do the same (`Engine::apply_erasures`). Returns whether the
    /// document held data here. Fails with `Error::NotPermitted` on a role that may not
    /// write the erasure list (every role but the cloud's).
    pub fn erase(&mut self, doc: &DocumentId, now: Timestamp) -> crate::Result<bool> {
        let list = erasure_list();
        if doc == &list {
            return Err(crate::Error::InvalidName {
                kind: "document to erase",
                name: doc.to_string(),
                reason: "the erasure list itself is never erased".into(),
                example: "orders/2026-11-24",
            });
        }
        let entry = serde_json::json!({ "at": now.as_millis() });
        let path = crate::Pointer::root().child(doc.to_string()).to_string();
        self.store
            .put(&list, &path, entry, crate::Durability::Durable)?;
        let existed = self.forget_erased(doc, now.as_millis())?;
        self.handle_local_change(&list, now);
        Ok(existed)
    }

    /// Carries out the erasure list as stored: every document on it that is not erased here
    /// yet is deleted and tombstoned. Returns the documents erased now.
    pub fn apply_erasures(&mut self) -> Vec<DocumentId> {
        let list = erasure_list();
        let entries = match self.store.has_document(&list) {
            Ok(false) => return Vec::new(),
            Ok(true) => match self.store.get_all(&list) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(_) => return Vec::new(),
                Err(e) => {
                    self.storage_failed(None, Some(&list), &e);
                    return Vec::new();
                }
            },
            Err(e) => {
                self.storage_failed(None, Some(&list), &e);
                return Vec::new();
            }
        };
        let mut erased = Vec::new();
        for (name, entry) in entries {
            let Ok(doc) = name.parse::<DocumentId>() else {
                tracing::warn!(name, "the erasure list names no valid document; ignored");
                continue;
            };
            if doc == list || self.store.is_erased(&doc) {
                continue;
            }
            let at = entry
                .get("at")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            match self.forget_erased(&doc, at) {
                Ok(_) => {
                    tracing::info!(%doc, "erased: on the cloud's erasure list");
                    erased.push(doc);
                }
                Err(e) => self.storage_failed(None, Some(&doc), &e),
            }
        }
        erased
    }

    /// Erases `doc` from the store (tombstone) and from what the engine knows of it.
    fn forget_erased(&mut self, doc: &DocumentId, at_ms: u64) -> crate::Result<bool> {
        let existed = self.store.erase(doc, at_ms)?;
        self.known.remove(doc);
        for p in self.peers.values_mut() {
            p.remove(doc);
        }
        self.progress.retain(|(_, d), _| d != doc);
        Ok(existed)
    }

    /// Whether a cloud peer is known to hold all of `doc` (synced, with none of our changes
    /// missing).
    fn held_by_cloud(&self, doc: &DocumentId) -> bool {
        self.known_roles
            .iter()
            .filter(|(_, r)| **r == crate::Role::cloud())
            .any(|(c, _)| {
                self.progress
                    .get(&(c.clone(), doc.clone()))
                    .is_some_and(|p| p.last_sync.is_some() && p.unsynced_since.is_none())
            })
    }

    /// Records that peers other than `except` may now lack changes of `doc`.
    fn mark_unsynced(&mut self, doc: &DocumentId, except: Option<&PeerId>, now: Timestamp) {
        let mut readers: Vec<PeerId> = self
            .known_roles
            .iter()
            .filter(|(p, role)| {
                Some(*p) != except && self.config.policy.may_read(role, doc.context())
            })
            .map(|(p, _)| p.clone())
            .collect();
        readers.dedup();
        for p in readers {
            let key = (p.clone(), doc.clone());
            let entry = self.progress.entry(key).or_default();
            if entry.unsynced_since.is_none() {
                entry.unsynced_since = Some(now);
                let e = *entry;
                if let Err(err) = self.store.save_progress(&p, doc, e) {
                    self.storage_failed(Some(&p), Some(doc), &err);
                }
            }
        }
    }

    /// Handles bytes received from `from`.
    pub fn handle_message(
        &mut self,
        from: &PeerId,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let Some(peer) = self.peers.get_mut(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        self.metrics.bytes_in += bytes.len() as u64;
        self.metrics.messages_in += 1;
        let msg = match WireMessage::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.sync_errors += 1;
                let code = match e {
                    WireError::UnsupportedVersion(_) => wire::ERROR_UNSUPPORTED_VERSION,
                    _ => wire::ERROR_MALFORMED,
                };
                peer.control.push_back((
                    None,
                    WireMessage::Error {
                        code,
                        message: e.to_string(),
                    }
                    .encode(),
                ));
                self.events.push_back(Event::ProtocolError {
                    peer: from.clone(),
                    message: e.to_string(),
                });
                return Err(EngineError::Wire {
                    peer: from.clone(),
                    source: e,
                });
            }
        };
        match msg {
            WireMessage::Hello { docs } => {
                let mut all = std::mem::take(&mut peer.hello_pending);
                all.extend(docs);
                self.handle_hello(from, all, now);
                Ok(())
            }
            WireMessage::Reconcile { ranges } => self.handle_reconcile(from, ranges, now),
            WireMessage::HelloPart { docs } => {
                if peer.hello_pending.len() + docs.len() > MAX_HELLO_DOCUMENTS {
                    peer.hello_pending = Vec::new();
                    self.metrics.sync_errors += 1;
                    return Err(EngineError::BadSync {
                        peer: from.clone(),
                        doc: DocumentId::new("hello".parse().expect("a valid context name")),
                        reason: format!(
                            "the peer lists over {MAX_HELLO_DOCUMENTS} documents; its Hello is dropped"
                        ),
                    });
                }
                peer.hello_pending.extend(docs);
                Ok(())
            }
            WireMessage::Sync { doc, data } => {
                peer.pending_ack += bytes.len() as u64;
                self.handle_sync(from, doc, data, now)
            }
            WireMessage::SyncPart {
                doc,
                index,
                total,
                data,
            } => {
                peer.pending_ack += bytes.len() as u64;
                self.handle_part(from, doc, index, total, data, now)
            }
            WireMessage::Ack { bytes } => {
                peer.in_flight = peer.in_flight.saturating_sub(bytes);
                peer.last_ack = now;
                Ok(())
            }
            WireMessage::Refused { doc, reason } => {
                // We only send changes of documents we hold to peers that may read them:
                // a refusal of anything else answers nothing, and makes no entry.
                let held = self.known.contains(&doc);
                let readable = self.config.policy.may_read(&peer.info.role, doc.context());
                let Some(ds) = peer.docs.get_mut(&doc).filter(|_| held && readable) else {
                    return Err(self.dropped(
                        from,
                        doc,
                        "a refusal of a document this peer was never sent".into(),
                    ));
                };
                tracing::warn!(peer = %from, %doc, %reason, "peer refused our changes");
                ds.refused_by_peer = true;
                ds.refusal = Some(format!("refused by the peer: {reason}"));
                // The heads we believed shared may be among what the peer refused (a peer
                // restored from a backup, told of changes it then refused): our next
                // messages' summary would then name changes it does not know, and it would
                // answer each with a reset, forever (found with a restored kiosk refusing a
                // relayed order at a key it had rewritten). Nothing is assumed shared now.
                if let Some(s) = ds.state.as_mut() {
                    s.shared_heads.clear();
                }
                // Re-evaluate the exchange now that we offer no changes (see `pump`), so
                // that we do not wait for an answer about changes the peer will not take.
                self.pump(from, &doc, now);
                let entry = crate::AuditEntry::new(now, crate::AuditKind::RefusedByPeer)
                    .peer_id(from)
                    .doc(&doc)
                    .detail(reason.clone());
                if let Err(e) = self.store.audit().record(entry) {
                    self.storage_failed(Some(from), Some(&doc), &e);
                }
                self.events.push_back(Event::RefusedByPeer {
                    peer: from.clone(),
                    doc,
                    reason,
                });
                Ok(())
            }
            WireMessage::Signatures {
                doc,
                signatures,
                certificates,
            } => {
                peer.pending_ack += bytes.len() as u64;
                self.handle_signatures(from, doc, signatures, certificates)
            }
            WireMessage::Revocations { records } => self.handle_revocations(from, records, now),
            WireMessage::Error { code, message } => {
                if code == wire::ERROR_MALFORMED && !peer.legacy {
                    // Most likely our `Signatures`, which an engine from before signed
                    // changes cannot decode: send it none for the rest of the session.
                    peer.legacy = true;
                }
                tracing::warn!(peer = %from, code, %message, "peer reported a protocol error");
                self.events.push_back(Event::ProtocolError {
                    peer: from.clone(),
                    message: format!("peer says: {message}"),
                });
                Ok(())
            }
        }
    }

    fn handle_hello(&mut self, from: &PeerId, docs: Vec<DocDigest>, now: Timestamp) {
        let Some(peer) = self.peers.get(from) else {
            return;
        };
        let info = peer.info.clone();
        let mut theirs: BTreeMap<DocumentId, u64> = BTreeMap::new();
        for d in docs {
            // Only documents we may read ourselves, and that the peer may write, are worth pulling.
            let local = &self.config.local.role;
            if self.config.policy.may_read(local, d.doc.context())
                && self.config.policy.retains(local, &d.doc, now)
            {
                theirs.insert(d.doc, d.digest);
            }
        }
        let mut to_sync: Vec<DocumentId> = Vec::new();
        for doc in self.offered(&info, now) {
            let heads = self.heads_or_empty(&doc);
            match theirs.remove(&doc) {
                Some(t) if t == digest(&heads) => {
                    if self.note_shared(from, &doc, heads, now) {
                        self.mark_synced(from, &doc, now);
                    }
                }
                _ => to_sync.push(doc),
            }
        }
        to_sync.extend(theirs.into_keys());
        for doc in to_sync {
            self.pump(from, &doc, now);
        }
    }

    /// Answers a peer's range digests ([`Protocol::V2`]): shared documents are noted as
    /// such, differing ones synced one by one, and finer ranges or items go back.
    fn handle_reconcile(
        &mut self,
        from: &PeerId,
        ranges: Vec<wire::NameRange>,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let Some(peer) = self.peers.get_mut(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        let info = peer.info.clone();
        let snapshot = match peer.snapshot.take() {
            Some(s) => s,
            None => self.snapshot(&info, now),
        };
        let outcome = snapshot.answer(ranges);
        let Some(peer) = self.peers.get_mut(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        peer.named += outcome.named;
        if peer.named > MAX_HELLO_DOCUMENTS {
            peer.snapshot = Some(snapshot);
            self.metrics.sync_errors += 1;
            return Err(EngineError::BadSync {
                peer: from.clone(),
                doc: DocumentId::new("hello".parse().expect("a valid context name")),
                reason: format!(
                    "the peer named over {MAX_HELLO_DOCUMENTS} documents in range items; \
                     the rest of its reconciliation is dropped"
                ),
            });
        }
        // Nothing more from us means nothing more is coming back: the snapshot (a name and
        // heads per document) is freed; a late message (another page) rebuilds it.
        let keep = !outcome.reply.is_empty();
        for page in reconcile::pages(outcome.reply) {
            peer.control
                .push_back((None, WireMessage::Reconcile { ranges: page }.encode()));
        }
        for i in outcome.equal {
            let e = snapshot.entry(i);
            let (doc, heads) = (e.doc.clone(), e.heads.clone());
            if self.note_shared(from, &doc, heads, now) {
                self.mark_synced(from, &doc, now);
            }
        }
        if let (true, Some(p)) = (keep, self.peers.get_mut(from)) {
            p.snapshot = Some(snapshot);
        }
        for doc in outcome.differ {
            if self.compared(&info, &doc, now) {
                self.pump(from, &doc, now);
            }
        }
        Ok(())
    }

    /// Both sides announced the same heads: they are shared, so the next session (and the
    /// status) starts from them without an exchange.
    /// Returns whether the shared heads are on disk.
    fn note_shared(
        &mut self,
        peer: &PeerId,
        doc: &DocumentId,
        heads: Vec<ChangeHash>,
        now: Timestamp,
    ) -> bool {
        let mut state = match self.take_state(peer, doc) {
            Ok(s) => s,
            Err(EngineError::Store(e)) => {
                self.storage_failed(Some(peer), Some(doc), &e);
                return false;
            }
            Err(_) => return false,
        };
        let mut persisted = true;
        if state.shared_heads != heads {
            state.shared_heads = heads.clone();
            if let Err(e) = SyncStateStore::save_sync_state(&self.store, peer, doc, &state) {
                self.storage_failed(Some(peer), Some(doc), &e);
                persisted = false;
            }
        }
        state.their_heads = Some(heads);
        let held = self.known.contains(doc);
        if let Some(ds) = self.peers.get_mut(peer).and_then(|p| p.entry(doc, held)) {
            ds.state = Some(state);
        }
        self.heads_learned(peer, doc);
        self.audit_ack(peer, doc, now);
        persisted
    }

    /// Records in the audit trail the heads `peer` last announced for `doc` (held here): it
    /// announces only heads it holds on its disk (see `engine/held.rs`), so this is when our
    /// changes reached it. Coalesced by the trail.
    fn audit_ack(&mut self, peer: &PeerId, doc: &DocumentId, now: Timestamp) {
        if !self.known.contains(doc) {
            return;
        }
        let Some(theirs) = self
            .peers
            .get(peer)
            .and_then(|p| p.docs.get(doc))
            .and_then(|d| d.state.as_ref())
            .and_then(|s| s.their_heads.as_ref())
            .filter(|h| !h.is_empty())
        else {
            return;
        };
        let result = self.store.audit().record_ack(now, peer, doc, theirs);
        if let Err(e) = result {
            self.storage_failed(Some(peer), Some(doc), &e);
        }
    }

    /// The devices that the changes of `msg` claim as their authors (from the chunk
    /// headers, without decoding operations), for the audit trail of a refusal.
    fn claimed_authors(msg: &sync::Message) -> Vec<String> {
        let mut out = BTreeSet::new();
        for chunk in msg.changes.iter() {
            for actor in crate::chunk::chunk_actors(chunk).unwrap_or_default() {
                match parse_actor(&actor) {
                    Some(claim) => out.insert(format!("{} ({})", claim.peer, claim.role)),
                    None => out.insert(actor.to_hex_string()),
                };
            }
        }
        out.into_iter().collect()
    }

    fn mark_synced(&mut self, peer: &PeerId, doc: &DocumentId, now: Timestamp) {
        let entry = self
            .progress
            .entry((peer.clone(), doc.clone()))
            .or_default();
        let before = *entry;
        let was_unsynced = entry.unsynced_since.is_some() || entry.last_sync.is_none();
        entry.last_sync = Some(now);
        entry.unsynced_since = None;
        let e = *entry;
        // Persist transitions, and refresh the stored sync time at most every second.
        if was_unsynced || e.last_sync.is_some_and(|t| t.as_millis() % 1000 < 5) {
            if let Err(err) = self.store.save_progress(peer, doc, e) {
                // Status keeps saying what the disk says.
                self.progress.insert((peer.clone(), doc.clone()), before);
                self.storage_failed(Some(peer), Some(doc), &err);
                return;
            }
        }
        if was_unsynced {
            self.events.push_back(Event::InSync {
                peer: peer.clone(),
                doc: doc.clone(),
            });
        }
    }

    fn handle_part(
        &mut self,
        from: &PeerId,
        doc: DocumentId,
        index: u32,
        total: u32,
        data: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let max = self.config.max_reassembly_bytes;
        let window = usize::try_from(self.config.window_bytes).unwrap_or(usize::MAX);
        let may_send = self
            .peers
            .get(from)
            .is_some_and(|p| self.may_send_changes(&p.info.role, &doc));
        let Some(peer) = self.peers.get_mut(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        let bad = |reason: String| EngineError::BadSync {
            peer: from.clone(),
            doc: doc.clone(),
            reason,
        };
        // Only a message with changes is ever large, so a peer that may not write the
        // context gets nothing buffered, whatever it sends.
        if !may_send {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "role {} may not write context {}: its fragments are dropped unread",
                peer.info.role,
                doc.context()
            )));
        }
        if total == 0
            || index >= total
            || (total as usize).saturating_mul(FRAGMENT_BYTES) > max + FRAGMENT_BYTES
        {
            self.metrics.sync_errors += 1;
            return Err(bad(format!("part {index} of {total} is out of range")));
        }
        // One message may be reassembled per peer, plus what the flow-control window lets
        // the next one send meanwhile.
        let buffered: usize = peer.docs.values().map(|d| d.parts_bytes).sum();
        if buffered + data.len() > max + window {
            for d in peer.docs.values_mut() {
                d.parts.clear();
                d.parts_bytes = 0;
            }
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "fragments of this peer exceed {} bytes buffered; all dropped",
                max + window
            )));
        }
        // A reassembly allocates a slot per part: few at a time per peer (a peer sends one
        // large message per document at a time, and few documents at once).
        let reassembling = peer.docs.values().filter(|d| !d.parts.is_empty()).count();
        let started = peer.docs.get(&doc).is_some_and(|d| !d.parts.is_empty());
        if !started && reassembling >= MAX_REASSEMBLIES_PER_PEER {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "over {MAX_REASSEMBLIES_PER_PEER} fragmented messages reassembled at once; \
                 this part is dropped"
            )));
        }
        let held = self.known.contains(&doc);
        let Some(ds) = peer.entry(&doc, held) else {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "over {MAX_UNHELD_STATES_PER_PEER} documents not held here are in exchange \
                 with this peer; this part is dropped"
            )));
        };
        if ds.parts.len() != total as usize {
            ds.parts = vec![None; total as usize];
            ds.parts_bytes = 0;
        }
        ds.parts_bytes += data.len();
        if ds.parts_bytes > max {
            ds.parts.clear();
            ds.parts_bytes = 0;
            self.metrics.sync_errors += 1;
            return Err(bad(format!("reassembled message exceeds {max} bytes")));
        }
        ds.parts[index as usize] = Some(data);
        ds.last_activity = now;
        if ds.parts.iter().all(Option::is_some) {
            let whole: Vec<u8> = std::mem::take(&mut ds.parts)
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            ds.parts_bytes = 0;
            peer.refresh_active(&doc);
            return self.handle_sync(from, doc, whole, now);
        }
        peer.refresh_active(&doc);
        Ok(())
    }

    /// Why the changes in `msg` from `from` must be refused, if they must.
    fn check_changes(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        msg: &sync::Message,
    ) -> Option<String> {
        if msg.changes.is_empty() {
            return None;
        }
        if self.is_relayed(from, doc) {
            // Relayed: judged by its authors and their signatures (engine/relayed.rs).
            if let Some(reason) = self.check_relayed(from, doc, msg) {
                return Some(reason);
            }
        }
        if !self.known.contains(doc) {
            if self.known.len() >= self.config.max_documents {
                return Some(format!(
                    "this store holds {} documents, its limit (max_documents); the new document \
                     {doc} is refused: delete old partitions or raise the limit",
                    self.known.len()
                ));
            }
            let quota = self.config.max_new_documents_per_device as u64;
            for device in self.creators(from, msg) {
                let n = self.created_by.get(&device).copied().unwrap_or(0);
                if n >= quota {
                    return Some(format!(
                        "{device}'s changes created {n} documents here, its limit \
                         (max_new_documents_per_device); the new document {doc} is refused: \
                         delete old partitions or raise the limit"
                    ));
                }
            }
            let created = self.peers.get(&from.peer).map_or(0, |p| p.created);
            if created >= self.config.max_new_documents_per_session {
                return Some(format!(
                    "{} created {created} documents this session, the limit \
                     (max_new_documents_per_session); the new document {doc} is refused",
                    from.peer
                ));
            }
        }
        // Before anything is decoded: what the compressed parts inflate to, counted without
        // keeping it. A bomb (a small chunk that inflates a thousandfold) is refused here.
        if let Err(reason) = crate::chunk::check_message_inflation(
            msg.changes.iter(),
            self.config.max_inflated_bytes,
        ) {
            return Some(reason);
        }
        for chunk in msg.changes.iter() {
            let actors = match crate::chunk::chunk_actors(chunk) {
                Ok(a) => a,
                Err(e) => return Some(format!("undecodable change: {e}")),
            };
            for actor in actors {
                if let Some(reason) = self.check_actor(from, doc, &actor) {
                    // That checked every actor of the message, but a whole-document chunk
                    // (which Automerge sends once over a third of the document is missing)
                    // also holds changes we have, and a forwarded change may have reached us
                    // another way: only the authors of changes new to us matter. Without
                    // this, a kiosk under a strict relay policy had its own orders refused
                    // whenever they travelled as a whole document (found by the
                    // simulation). Listing the changes costs a load, hence only here.
                    return match self.new_change_authors(doc, msg) {
                        Ok(authors) => authors.iter().find_map(|a| self.check_actor(from, doc, a)),
                        Err(_) => Some(reason),
                    };
                }
            }
        }
        None
    }

    /// The devices charged for a new document that `msg` from `from` would create: the
    /// device each actor of its changes claims (all are new: we hold nothing of the
    /// document), the sender for actors that are not devices; never the cloud or head
    /// office. Read from the chunk headers, without decoding operations.
    fn creators(&self, from: &PeerInfo, msg: &sync::Message) -> BTreeSet<PeerId> {
        let trusted = |r: &crate::Role| r == &crate::Role::cloud() || r.as_str() == "head-office";
        let mut out = BTreeSet::new();
        for chunk in msg.changes.iter() {
            let Ok(actors) = crate::chunk::chunk_actors(chunk) else {
                continue;
            };
            for actor in actors {
                match parse_actor(&actor) {
                    Some(c) if trusted(&c.role) => {}
                    Some(c) => {
                        out.insert(c.peer);
                    }
                    None if trusted(&from.role) => {}
                    None => {
                        out.insert(from.peer.clone());
                    }
                }
            }
        }
        out
    }

    /// Charges the devices that created `doc` (see [`Engine::creators`]), durably.
    fn charge_creators(&mut self, doc: &DocumentId, devices: BTreeSet<PeerId>) {
        if devices.is_empty() {
            return;
        }
        for d in devices {
            *self.created_by.entry(d).or_default() += 1;
        }
        if let Err(e) = persist::save_created(&self.store, &self.created_by) {
            self.storage_failed(None, Some(doc), &e);
        }
    }

    /// Why a change by `actor` to `doc`, received from `from`, must be refused, if it must.
    /// Takes the bytes of `msg`'s changes from `from`'s quota; the reason to refuse them if
    /// it is spent. A message is accepted while anything is left, and may leave the bucket in
    /// debt (paid back by the refill): a backlog sent in one message larger than the hourly
    /// quota must still get through, so a peer gets at most its quota plus one message
    /// (`max_reassembly_bytes`) per hour.
    fn charge_quota(
        &mut self,
        from: &PeerInfo,
        msg: &sync::Message,
        now: Timestamp,
    ) -> Option<String> {
        let cost: u64 = msg.changes.iter().map(|c| c.len() as u64).sum();
        if cost == 0 || from.role == crate::Role::cloud() {
            return None;
        }
        let cap = i64::try_from(self.config.max_peer_bytes_per_hour).unwrap_or(i64::MAX);
        let b = self.quotas.entry(from.peer.clone()).or_insert(Bucket {
            bytes: cap,
            at: now,
        });
        let elapsed = now.as_millis().saturating_sub(b.at.as_millis());
        let refill = i64::try_from(elapsed as u128 * cap as u128 / 3_600_000).unwrap_or(i64::MAX);
        if refill > 0 {
            // Only then: a peer sending every millisecond must not stop the refill by rounding.
            b.bytes = b.bytes.saturating_add(refill).min(cap);
            b.at = now;
        }
        if b.bytes <= 0 {
            return Some(format!(
                "{} is over its quota of {cap} bytes of changes per hour \
                 (max_peer_bytes_per_hour); {cost} bytes refused: it may retry later",
                from.peer
            ));
        }
        b.bytes = b
            .bytes
            .saturating_sub(i64::try_from(cost).unwrap_or(i64::MAX));
        None
    }

    fn check_actor(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        actor: &automerge::ActorId,
    ) -> Option<String> {
        let policy = &self.config.policy;
        if crate::genesis::is_actor(actor) {
            // Any device forwards a document's genesis; the store checks it is the one
            // every device computes (`check_genesis`).
            return None;
        }
        match parse_actor(actor) {
            Some(claim) if claim.peer == from.peer => {
                if claim.role != from.role {
                    return Some(format!(
                        "change claims role {} but {} is certified as {}",
                        claim.role, from.peer, from.role
                    ));
                }
            }
            Some(claim) => {
                // With signatures checked, a peer that is no relay may still forward another
                // device's signed change: the signature proves who wrote it, and the path
                // rules judge it by that device's role. A menu board that a kiosk wrote
                // `health` to directly must send the kiosk's change along with its own
                // (they depend on it), or none of its own reports arrived again (found by
                // the policy fuzzer). Unsigned, such a change is refused (`verify_new`).
                if !policy.may_relay(&from.role) && self.config.verifier.is_none() {
                    return Some(format!(
                        "role {} may not forward changes authored by {}",
                        from.role, claim.peer
                    ));
                }
                if !policy.may_write(&claim.role, doc.context()) {
                    return Some(format!(
                        "change authored by {} as role {}, which may not write context {}",
                        claim.peer,
                        claim.role,
                        doc.context()
                    ));
                }
            }
            None => {
                if !policy.may_relay(&from.role) {
                    return Some(format!(
                        "role {} may not forward changes of actor {}",
                        from.role,
                        actor.to_hex_string()
                    ));
                }
            }
        }
        None
    }

    /// Whether `c` is one of `doc`'s genesis changes (`crate::genesis`): the change this peer
    /// computes itself from the document's name and the container its actor names (whatever
    /// this peer's policy declares), replacing nothing in the copy it
    /// arrives at (a copy made before genesis changes existed may have its own `/orders`,
    /// and a second one would hide either its orders or the other devices'). It needs no
    /// signature and no path check.
    pub(crate) fn is_genesis(&self, doc: &DocumentId, c: &crate::store::NewChange) -> bool {
        crate::genesis::is_actor(&c.actor)
            // Paths are read only where this peer has path rules for the context (none:
            // nothing it guards can be replaced, e.g. a cloud whose policy declares no
            // containers).
            && match &c.written {
                Some(Ok(w)) => w.iter().all(|(_, replaces)| !replaces),
                Some(Err(_)) => false,
                None => true,
            }
            && crate::genesis::is_genesis(doc, &c.actor, c.hash)
    }

    /// Refuses a change of `doc`'s genesis actor that is not its genesis.
    fn check_genesis(
        &self,
        doc: &DocumentId,
        new: &[crate::store::NewChange],
    ) -> Result<(), String> {
        match new
            .iter()
            .find(|c| crate::genesis::is_actor(&c.actor) && !self.is_genesis(doc, c))
        {
            Some(c) => Err(format!(
                "change {} claims a genesis actor of {doc} but is not the genesis this peer \
                 computes for it, or would replace a container this copy made before genesis \
                 changes existed: refused as a forgery",
                c.hash
            )),
            None => Ok(()),
        }
    }

    /// Why changes new to `doc` break its context's per-path write rules, if one does: each
    /// change is judged by the role of its author: a device's, a web client's that a device
    /// vouched for (`clients`, see `crate::vouch`; whoever relays it). For another actor that
    /// is not an outpost device (an import, which only relays may forward), the author is the
    /// device that vouched for it with its signature (`Engine::voucher`), or, unsigned, the
    /// sender. So a POS may relay the kitchen's "ready" but not write it, and a kitchen
    /// screen's bump is judged as `kds` two hops from the kitchen that accepted it.
    fn check_paths(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        new: &[crate::store::NewChange],
        clients: &BTreeMap<automerge::ActorId, crate::vouch::VouchClaim>,
        pending: &signatures::Pending,
    ) -> Result<(), String> {
        let policy = &self.config.policy;
        // The genesis writes only the containers every device makes (`check_genesis`).
        for c in new.iter().filter(|c| !self.is_genesis(doc, c)) {
            let (device, role, author) = match (parse_actor(&c.actor), clients.get(&c.actor)) {
                (Some(claim), _) => (Some(claim.peer.clone()), claim.role, claim.peer.to_string()),
                // A client's name stands for `{device}` where it is a valid peer id.
                (None, Some(client)) => (
                    client.name.parse().ok(),
                    client.role.clone(),
                    client.to_string(),
                ),
                (None, None) => match self.voucher(&c.actor, new, pending) {
                    Some(signer) => (
                        Some(signer.peer.clone()),
                        signer.role.clone(),
                        signer.peer.to_string(),
                    ),
                    None => (
                        Some(from.peer.clone()),
                        from.role.clone(),
                        from.peer.to_string(),
                    ),
                },
            };
            let written = match &c.written {
                Some(Ok(w)) => w,
                Some(Err(e)) => return Err(format!("change by {author}: {e}")),
                None => return Err(format!("change by {author}: its paths were not decoded")),
            };
            for (path, replaces) in written {
                if !policy.may_write_path_as(&role, device.as_ref(), doc.context(), path, *replaces)
                {
                    return Err(format!(
                        "{author} (role {role}) may not {} {path} in {doc}: {}",
                        if *replaces { "replace" } else { "write" },
                        policy.path_refusal(&role, doc.context(), path)
                    ));
                }
            }
        }
        Ok(())
    }

    /// The authors of the changes in `msg` that `doc` does not have yet.
    fn new_change_authors(
        &self,
        doc: &DocumentId,
        msg: &sync::Message,
    ) -> Result<Vec<automerge::ActorId>, String> {
        let mut authors = Vec::new();
        // An entry of a message may hold several chunks back to back: taking each entry for
        // one chunk failed on those ("leftover data after parsing") once relayed changes of
        // every context a relay reads came this way (found by the simulation).
        let chunks = msg
            .changes
            .iter()
            .map(crate::chunk::split_chunks)
            .collect::<Result<Vec<_>, String>>()?;
        for (kind, chunk) in chunks.into_iter().flatten() {
            // Type 0 is a whole document, anything else one change.
            let changes: Vec<(ChangeHash, automerge::ActorId)> = if kind == 0 {
                let whole = automerge::Automerge::load(chunk).map_err(|e| e.to_string())?;
                whole
                    .get_changes_meta(&[])
                    .into_iter()
                    .map(|c| (c.hash, c.actor.into_owned()))
                    .collect()
            } else {
                let c = automerge::Change::try_from(chunk).map_err(|e| e.to_string())?;
                vec![(c.hash(), c.actor_id().clone())]
            };
            for (hash, actor) in changes {
                let known = self
                    .store
                    .has_all(doc, &[hash])
                    .map_err(|e| e.to_string())?;
                if !known && !authors.contains(&actor) {
                    authors.push(actor);
                }
            }
        }
        Ok(authors)
    }

    fn handle_sync(
        &mut self,
        from: &PeerId,
        doc: DocumentId,
        data: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let msg = match sync::Message::decode(&data) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.sync_errors += 1;
                return Err(EngineError::BadSync {
                    peer: from.clone(),
                    doc,
                    reason: e.to_string(),
                });
            }
        };
        let Some(peer) = self.peers.get(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        let info = peer.info.clone();
        if !self.config.policy.may_read(&info.role, doc.context()) {
            // Nothing of it is ever offered to this peer, nor taken from it (a role that
            // writes a context reads it): answering would only keep state for it.
            let reason = format!(
                "role {} may not read context {}: its sync messages are dropped unread",
                info.role,
                doc.context()
            );
            return Err(self.dropped(from, doc, reason));
        }
        if !self
            .config
            .policy
            .may_read(&self.config.local.role, doc.context())
        {
            // Nothing of a context this peer's own role may not read is ever stored here,
            // whoever sends it: an honest peer never offers it (a kiosk replayed a POS's
            // orders to a menu board, which stored them; found by the policy fuzzer).
            let reason = format!(
                "this peer's role {} may not read context {}: sync messages of it are \
                 dropped unread",
                self.config.local.role,
                doc.context()
            );
            return Err(self.dropped(from, doc, reason));
        }
        if msg.changes.is_empty()
            && msg.heads.is_empty()
            && !self.known.contains(&doc)
            && !self
                .peers
                .get(from)
                .is_some_and(|p| p.docs.contains_key(&doc))
        {
            // Neither side holds the document and we asked nothing about it (or forgot we
            // did, past `MAX_UNHELD_STATES_PER_PEER`): nothing to exchange, and no entry is
            // made. Answering made the peer answer back from its own new entry, and once
            // entries were evicted the two answered each other without end (a flood of
            // empty messages naming fresh documents started that between the POS and the
            // flooding kiosk's own engine; found by the policy fuzzer).
            return Ok(());
        }
        let refusal = match self.check_changes(&info, &doc, &msg) {
            Some(reason) => Some(reason),
            None if !msg.changes.is_empty() && self.store.is_erased(&doc) => Some(format!(
                "{doc} was erased (it is on the cloud's erasure list); it is not stored here \
                 and should be deleted by the sender"
            )),
            None if !msg.changes.is_empty()
                && !self.known.contains(&doc)
                && !self
                    .config
                    .policy
                    .retains(&self.config.local.role, &doc, now) =>
            {
                Some(format!(
                    "{doc} is older than what role {} keeps (the policy's retain_days); \
                     it is not stored here",
                    self.config.local.role
                ))
            }
            None => self.charge_quota(&info, &msg, now),
        };
        if let Some(reason) = refusal {
            let n = msg.changes.len() as u64;
            let authors = Self::claimed_authors(&msg);
            return self.refuse(from, &info, doc, (msg.heads, n, authors), reason, now);
        }
        if self.config.verifier.is_some() && !msg.changes.is_empty() {
            if let Some(bad) = self.take_bad_signatures(from, &doc) {
                let n = msg.changes.len() as u64;
                let reason = format!("the signatures sent with these changes were refused: {bad}");
                let authors = Self::claimed_authors(&msg);
                return self.refuse(from, &info, doc, (msg.heads, n, authors), reason, now);
            }
        }
        let erasures = is_erasure_list(&doc);
        let creators = (!msg.changes.is_empty() && !self.known.contains(&doc))
            .then(|| self.creators(&info, &msg));
        let created = doc.clone();
        self.apply_sync(from, info, doc, msg, now)?;
        if let Some(devices) = creators.filter(|_| self.known.contains(&created)) {
            self.charge_creators(&created, devices);
        }
        if erasures {
            self.apply_erasures();
        }
        Ok(())
    }

    /// Refuses the `n` changes of a message from `from` (whose heads were `heads`, whose
    /// changes claim `authors`): nothing of it is stored, the peer is told, the audit trail
    /// records it, and its changes to `doc` are taken no more this session.
    fn refuse(
        &mut self,
        from: &PeerId,
        info: &PeerInfo,
        doc: DocumentId,
        (heads, n, authors): (Vec<ChangeHash>, u64, Vec<String>),
        reason: String,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        self.metrics.changes_refused += n;
        tracing::warn!(peer = %info, %doc, %reason, "refused changes");
        let mut entry = crate::AuditEntry::new(now, crate::AuditKind::ChangesRefused)
            .peer(info)
            .doc(&doc)
            .detail(format!("{n} changes: {reason}"));
        entry.rule = Some(crate::store::refusal_rule(&reason).to_string());
        entry.authors = authors;
        if let Err(e) = self.store.audit().record(entry) {
            self.storage_failed(Some(from), Some(&doc), &e);
        }
        let Some(peer) = self.peers.get_mut(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        let held = self.known.contains(&doc);
        if let Some(ds) = peer.entry(&doc, held) {
            ds.refused_by_us = true;
            ds.refusal = Some(format!("its changes were refused here: {reason}"));
        }
        peer.control.push_back((
            Some(doc.clone()),
            WireMessage::Refused {
                doc: doc.clone(),
                reason: reason.clone(),
            }
            .encode(),
        ));
        // Take no more changes from this peer on this document for the session: our
        // state turns read-only, whose flag tells the peer's Automerge to stop offering
        // changes, while our own changes still flow to it. Without this, each side kept
        // waiting for the other and retried every `retry_ms` forever (found by the
        // simulation).
        let mut state = self.take_state(from, &doc)?;
        state.set_read_only(true);
        // The refused message still answers ours and tells the peer's heads: without
        // noting that, a refusal of the peer's first message left us waiting for an
        // answer that a read-only peer never sends (found by the simulation).
        state.their_heads = Some(heads);
        state.in_flight = false;
        self.put_state(from, &doc, state, now);
        self.events.push_back(Event::ChangeRefused {
            peer: from.clone(),
            doc,
            reason,
        });
        Ok(())
    }

    /// Applies a message whose changes passed the policy checks: their signatures are
    /// checked as the store applies them (`Engine::verify_new`).
    fn apply_sync(
        &mut self,
        from: &PeerId,
        info: PeerInfo,
        doc: DocumentId,
        msg: sync::Message,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let mut state = self.take_state(from, &doc)?;
        if msg.heads.is_empty()
            && msg.changes.is_empty()
            && state.in_flight
            && !state.sent_hashes.is_empty()
        {
            // "I have nothing", written before the changes we sent this session arrived:
            // both sides open every exchange on Hello, so first messages cross. Automerge
            // would answer it with the whole document again (a peer with empty heads gets
            // the whole document, whatever was sent), doubling every catch-up of a document
            // the peer lacks (found by the simulation). The answer to what we sent follows.
            self.put_state(from, &doc, state, now);
            return Ok(());
        }
        // A peer never asks for a change it has. Asked for once, a change we sent may just
        // have crossed the request; asked for again, it was lost. Forget that it was sent, so
        // that it goes again: else the peer keeps asking and we keep answering with nothing,
        // at once, forever (found by the simulation with lossy streams).
        if let Some(ds) = self.peers.get_mut(from).and_then(|p| p.docs.get_mut(&doc)) {
            for hash in msg.need.iter().filter(|h| ds.needed.contains(h)) {
                state.sent_hashes.remove(hash);
            }
            ds.needed.clone_from(&msg.need);
            // A peer that refused our changes takes none for the session, so it asks for
            // none (its state is read-only). One that asks did not refuse, or no longer
            // does: its refusal is over. Else we answered each of its requests at once with
            // no changes, and it asked again, without end (a kiosk sending a `Refused` it
            // never meant started that between the POS and its own engine; found by the
            // policy fuzzer).
            if ds.refused_by_peer && !msg.need.is_empty() {
                ds.refused_by_peer = false;
            }
        }
        let shared_before = state.shared_heads.clone();
        if !self.known.contains(&doc) && msg.changes.is_empty() {
            // Nothing to store: answer from an empty document, creating nothing.
            use automerge::sync::SyncDoc;
            let mut empty = automerge::Automerge::new();
            if let Err(e) = empty.receive_sync_message(&mut state, msg) {
                return Err(self.bad_sync(from, doc, state, e.to_string(), now));
            }
            self.put_state(from, &doc, state, now);
            self.pump(from, &doc, now);
            return Ok(());
        }
        let checking = self.config.verifier.is_some() && !msg.changes.is_empty();
        let pending = if checking {
            let pending = self
                .peers
                .get_mut(from)
                .and_then(|p| p.pending_sigs.remove(&doc))
                .unwrap_or_default();
            self.resolve_keys(&pending);
            pending
        } else {
            signatures::Pending::default()
        };
        // A refusal by signature leaves the state as the message found it.
        let state_before = checking.then(|| state.clone());
        let (heads, n) = (msg.heads.clone(), msg.changes.len() as u64);
        let verified = std::cell::Cell::new(0u64);
        let path_rules = self.config.policy.has_path_rules(doc.context());
        let relayed = self.is_relayed(&info, &doc);
        let result = self.store.receive_sync(
            &doc,
            &mut state,
            msg,
            from,
            path_rules.then_some(&self.config.policy),
            &|new| {
                self.check_genesis(&doc, new)?;
                if path_rules {
                    let clients = if checking {
                        Self::vouched_clients(new, &pending)?
                    } else {
                        Default::default()
                    };
                    self.check_paths(&info, &doc, new, &clients, &pending)?;
                }
                if checking {
                    let records = self.verify_new(&info, &doc, new, &pending, now)?;
                    if relayed {
                        Self::check_relayed_signatures(&info, &doc, new, &records)?;
                    }
                    verified.set(records.len() as u64);
                    Ok(records)
                } else {
                    Ok(Vec::new())
                }
            },
            &|actor, hash| {
                // Without signature checks, Automerge queues as it always did.
                !checking
                    || pending.get(hash).is_some_and(|(key, signature)| {
                        self.check_signature(&info, &doc, actor, hash, key, signature)
                            .is_ok()
                    })
            },
        );
        self.metrics.signatures_verified += verified.get();
        if checking {
            self.settle_pending(&info, &doc, pending);
        }
        let added = match result {
            Ok(Received::Applied(n)) => n,
            Ok(Received::Refused(reason)) => {
                let state = state_before.unwrap_or(state);
                self.put_state(from, &doc, state, now);
                // The message went to the store: its authors are named in the reason.
                return self.refuse(from, &info, doc, (heads, n, Vec::new()), reason, now);
            }
            Err(e @ crate::Error::Storage(_)) => {
                // Nothing claims the changes arrived: the state goes back as it was before
                // the message (the peer resends them once the exchange is retried).
                let mut state = self.take_state(from, &doc).unwrap_or_default();
                state.in_flight = false;
                self.put_state(from, &doc, state, now);
                self.storage_failed(Some(from), Some(&doc), &e);
                return Ok(());
            }
            Err(e) => return Err(self.bad_sync(from, doc, state, e.to_string(), now)),
        };
        // Our answer tells the peer our heads, i.e. "I have it": that must be true on disk,
        // or a device shows "0 unsynced" for changes a crash or a full disk lost here. One
        // flush per received message (a catch-up is a few large ones; sled coalesces flushes
        // that overlap).
        if added > 0 && self.hold(&doc) {
            if let Some(p) = self.peers.get_mut(from) {
                p.created += 1;
            }
        }
        if added > 0 && self.config.durable_acks {
            if let Err(e) = self.store.flush() {
                state.in_flight = false;
                self.put_state(from, &doc, state, now);
                self.storage_failed(Some(from), Some(&doc), &e);
                return Ok(());
            }
        }
        let mut persisted = true;
        if state.shared_heads != shared_before {
            if let Err(e) = SyncStateStore::save_sync_state(&self.store, from, &doc, &state) {
                self.storage_failed(Some(from), Some(&doc), &e);
                persisted = false;
            }
        }
        let in_sync = persisted
            && state.their_heads.as_ref().is_some_and(|h| {
                let mut ours = self.store.heads(&doc).unwrap_or_default();
                let mut theirs = h.clone();
                ours.sort();
                theirs.sort();
                ours == theirs
            });
        self.put_state(from, &doc, state, now);
        if added > 0 {
            self.metrics.changes_applied += added as u64;
            self.events.push_back(Event::RemoteChange {
                peer: from.clone(),
                doc: doc.clone(),
                changes: added,
            });
            self.mark_unsynced(&doc, Some(from), now);
            // Relay: offer what we just learned to every other connected peer.
            let others: Vec<PeerId> = self.peers.keys().filter(|p| *p != from).cloned().collect();
            for p in others {
                self.pump(&p, &doc, now);
            }
        }
        if in_sync {
            self.mark_synced(from, &doc, now);
        }
        self.warn_if_read_only(from, &doc);
        self.pump(from, &doc, now);
        Ok(())
    }

    /// Logs, once per session, that `peer` declared itself read-only for `doc` (it takes
    /// none of our changes) while it lacks some: the changes stay unsynced for as long, and
    /// without this nothing said why (a kiosk behind the POS never got head office's prices,
    /// and the POS's status showed only "2 changes unsynced").
    fn warn_if_read_only(&mut self, peer: &PeerId, doc: &DocumentId) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        let Some(ds) = p.docs.get(doc) else { return };
        let Some(state) = ds.state.as_ref() else {
            return;
        };
        if ds.read_only_warned || !state.peer_read_only || !self.known.contains(doc) {
            return;
        }
        let theirs = state.their_heads.clone().unwrap_or_default();
        let lacking = self
            .store
            .heads(doc)
            .unwrap_or_default()
            .iter()
            .any(|h| !theirs.contains(h));
        if !lacking {
            return;
        }
        let reason = status::read_only_reason(&self.config.local, &p.info, doc);
        tracing::warn!(peer = %p.info, %doc, %reason, "a peer takes none of our changes");
        if let Some(ds) = self.peers.get_mut(peer).and_then(|p| p.docs.get_mut(doc)) {
            ds.read_only_warned = true;
        }
    }

    /// A message that could not be applied: the state is kept, the error counted.
    fn bad_sync(
        &mut self,
        from: &PeerId,
        doc: DocumentId,
        state: sync::State,
        reason: String,
        now: Timestamp,
    ) -> EngineError {
        self.put_state(from, &doc, state, now);
        self.metrics.sync_errors += 1;
        EngineError::BadSync {
            peer: from.clone(),
            doc,
            reason,
        }
    }

    /// The live sync state of (peer, doc), loaded from the store on first use.
    fn take_state(&mut self, peer: &PeerId, doc: &DocumentId) -> Result<sync::State, EngineError> {
        let p = self
            .peers
            .get_mut(peer)
            .ok_or_else(|| EngineError::UnknownPeer(peer.clone()))?;
        if let Some(s) = p.docs.get_mut(doc).and_then(|d| d.state.take()) {
            return Ok(s);
        }
        let mut state =
            SyncStateStore::load_sync_state(&self.store, peer, doc)?.unwrap_or_default();
        let p = self
            .peers
            .get(peer)
            .ok_or_else(|| EngineError::UnknownPeer(peer.clone()))?;
        // A peer whose role may not write the context is told so, and sends no changes.
        if !self.may_send_changes(&p.info.role, doc) {
            state.set_read_only(true);
        }
        Ok(state)
    }

    /// Keeps the live sync state of (peer, doc). Of a document not held here, only while
    /// the peer has fewer than [`MAX_UNHELD_STATES_PER_PEER`] such entries: past it the state
    /// is dropped, the next message starts from the persisted one, and the peer, which holds
    /// the document, drives the exchange.
    fn put_state(&mut self, peer: &PeerId, doc: &DocumentId, state: sync::State, now: Timestamp) {
        let awaiting = self.awaits_reply(doc, &state);
        let held = self.known.contains(doc);
        if let Some(p) = self.peers.get_mut(peer) {
            if let Some(ds) = p.entry(doc, held) {
                ds.state = Some(state);
                ds.awaiting = awaiting;
                ds.last_activity = now;
            }
            p.refresh_active(doc);
        }
        // The state may carry heads the peer just announced.
        self.heads_learned(peer, doc);
        self.audit_ack(peer, doc, now);
    }

    /// Whether the peer owes us an answer on this exchange.
    ///
    /// Automerge's `in_flight` only means "a message was sent since the last one received";
    /// it stays set after the last message of every exchange, which the peer, in sync, rightly
    /// does not answer. Retrying on `in_flight` alone resent every document to every peer
    /// every `retry_ms`, forever (found by the simulation). An answer is owed only while
    /// one side still lacks something the other will send or accept: we lack some of their
    /// heads (and take their changes), or they lack some of ours (and take our changes).
    fn awaits_reply(&self, doc: &DocumentId, state: &sync::State) -> bool {
        if !state.in_flight {
            return false;
        }
        let Some(theirs) = &state.their_heads else {
            // Our first message of the session: the peer always answers it.
            return true;
        };
        if !self.known.contains(doc) {
            // We hold nothing of it (and must not create it by looking).
            return !state.read_only && !theirs.is_empty();
        }
        let known = self.store.has_all(doc, theirs).unwrap_or(false);
        let we_lack = !state.read_only && !known;
        // Only when we know all their heads can we tell they lack ours: a head of theirs
        // we do not know (a change we refused, say) may descend from ours. Counting that
        // as lacking kept a refusing reader retrying forever (found by the simulation).
        let they_lack = known
            && !state.is_peer_read_only()
            && self
                .store
                .heads(doc)
                .unwrap_or_default()
                .iter()
                .any(|h| !theirs.contains(h));
        we_lack || they_lack
    }

    /// Generates and queues the next sync message of (peer, doc), if there is one.
    fn pump(&mut self, peer: &PeerId, doc: &DocumentId, now: Timestamp) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        // A document past the peer's retention is not offered to it, but an exchange the
        // peer started (it uploads what only it holds) is answered.
        if !self.config.policy.may_read(&p.info.role, doc.context())
            || (!self.config.policy.retains(&p.info.role, doc, now) && !p.docs.contains_key(doc))
        {
            return;
        }
        let refused = p.docs.get(doc).is_some_and(|d| d.refused_by_peer);
        let Ok(mut state) = self.take_state(peer, doc) else {
            return;
        };
        if refused {
            // The peer refused our changes to this document: offer none for the rest of the
            // session, but keep answering it (heads, needs), so that its changes still reach
            // us and it does not wait for us forever. Going silent instead left the peer
            // retrying every `retry_ms` for the whole session.
            state.peer_read_only = true;
        }
        let msg = if self.known.contains(doc) {
            self.store.generate_sync(doc, &mut state)
        } else {
            // A document only the peer has: ask for it from an empty document, without
            // creating it here. It is created when a peer that may write it sends changes.
            use automerge::sync::SyncDoc;
            Ok((
                automerge::Automerge::new().generate_sync_message(&mut state),
                Vec::new(),
            ))
        };
        let (msg, sigs) = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%peer, %doc, error = %e, "cannot generate sync message");
                (None, Vec::new())
            }
        };
        self.put_state(peer, doc, state, now);
        let Some(msg) = msg else { return };
        // The signatures of the changes go first, on the same stream.
        if !msg.changes.is_empty() {
            self.queue_signatures(peer, doc, sigs);
        }
        let data = msg.encode();
        let p = self
            .peers
            .get_mut(peer)
            .expect("peer presence checked above");
        if data.len() <= FRAGMENT_BYTES {
            p.bulk.push_back((
                doc.clone(),
                WireMessage::Sync {
                    doc: doc.clone(),
                    data,
                }
                .encode(),
            ));
        } else {
            let total = data.len().div_ceil(FRAGMENT_BYTES) as u32;
            for (i, part) in data.chunks(FRAGMENT_BYTES).enumerate() {
                let m = WireMessage::SyncPart {
                    doc: doc.clone(),
                    index: i as u32,
                    total,
                    data: part.to_vec(),
                };
                p.bulk.push_back((doc.clone(), m.encode()));
            }
        }
    }

    /// Time passed: restarts exchanges that made no progress (a lost message) and reopens
    /// the flow-control window if acknowledgements were lost.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let retry = self.config.retry_ms;
        let mut stalled: Vec<(PeerId, DocumentId)> = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if p.in_flight > 0 && now.millis_since(p.last_ack) >= retry * STALL_FACTOR {
                p.in_flight = 0;
                p.last_ack = now;
            }
            // While our messages are still on the wire (unacknowledged, and acks have not
            // stopped), the peer's answer is not late: on a slow link one fragment takes
            // seconds. Restarting then resent everything in flight (2x the bytes of a
            // catch-up over a 1 Mbit/s WAN, found by the simulation's bandwidth model).
            let sending = p.in_flight > 0;
            // Only documents with a timer running: the others cannot be due.
            let mut idle = Vec::new();
            for doc in &p.active {
                let Some(ds) = p.docs.get_mut(doc) else {
                    idle.push(doc.clone());
                    continue;
                };
                if !ds.awaiting && ds.parts.is_empty() {
                    idle.push(doc.clone());
                    continue;
                }
                let due = if !ds.parts.is_empty() {
                    // A reassembly stalls only when parts stop arriving for a while.
                    now.millis_since(ds.last_activity) >= retry * STALL_FACTOR
                } else {
                    ds.awaiting && !sending && now.millis_since(ds.last_activity) >= retry
                };
                if due {
                    if let Some(s) = ds.state.as_mut() {
                        s.in_flight = false;
                        s.sent_hashes.clear();
                        s.have_responded = false;
                        // The lost message may be the peer's: it remembers the changes it
                        // sent (`sent_hashes`) and would answer our requests for them with
                        // empty messages, at once, forever. The reset flag of our next
                        // message makes it forget them (found by the simulation with lossy
                        // streams). Only if the peer said it understands the flag: else
                        // Automerge signals the reset with empty heads, which costs a
                        // whole-document transfer.
                        if s.their_capabilities.is_some() {
                            s.needs_reset = true;
                        }
                    }
                    ds.parts.clear();
                    // A lost message may have carried certificates: send them again.
                    ds.sent_certs.clear();
                    // `pump` below sets it again if the new message expects an answer.
                    ds.awaiting = false;
                    ds.last_activity = now;
                    idle.push(doc.clone());
                    stalled.push((id.clone(), doc.clone()));
                }
            }
            for doc in idle {
                p.active.remove(&doc);
            }
        }
        for (peer, doc) in stalled {
            self.pump(&peer, &doc, now);
        }
    }

    /// When [`Engine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let retry = self.config.retry_ms;
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        for p in self.peers.values() {
            if p.in_flight > 0 {
                consider(p.last_ack.plus_millis(retry * STALL_FACTOR));
            }
            for ds in p.active.iter().filter_map(|d| p.docs.get(d)) {
                if !ds.parts.is_empty() {
                    consider(ds.last_activity.plus_millis(retry * STALL_FACTOR));
                } else if ds.awaiting && p.in_flight == 0 {
                    consider(ds.last_activity.plus_millis(retry));
                }
            }
        }
        next
    }

    /// The next message to send, if any. Control messages go first; document messages
    /// wait while the peer's flow-control window is full. Peers are served round-robin.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let n = self.peers.len();
        if n == 0 {
            return None;
        }
        let window = self.config.window_bytes;
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let Some((id, p)) = self.peers.iter_mut().nth(idx) else {
                continue;
            };
            if p.pending_ack > 0 {
                let bytes = std::mem::take(&mut p.pending_ack);
                p.control
                    .push_back((None, WireMessage::Ack { bytes }.encode()));
            }
            let out = if let Some((doc, bytes)) = p.control.pop_front() {
                Some((doc, bytes))
            } else if !p.bulk.is_empty() && (p.in_flight == 0 || p.in_flight < window) {
                let (doc, bytes) = p.bulk.pop_front().expect("queue checked non-empty");
                p.in_flight += bytes.len() as u64;
                Some((Some(doc), bytes))
            } else {
                None
            };
            if let Some((doc, bytes)) = out {
                self.rr = idx + 1;
                self.metrics.bytes_out += bytes.len() as u64;
                self.metrics.messages_out += 1;
                return Some(Transmit {
                    to: id.clone(),
                    doc,
                    bytes,
                });
            }
        }
        None
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Sync status per known peer and document, for "N unsynced" badges and operators.
    pub fn status(&self) -> SyncStatus {
        status::build(self)
    }

    /// [`Engine::status`], with every document held here, its size on disk and whether it
    /// is kept at `now` under this device's retention or due to be dropped.
    pub fn status_at(&self, now: Timestamp) -> SyncStatus {
        let mut s = status::build(self);
        s.documents = status::documents(self, now);
        s
    }
}
