//! outpost-testkit: a deterministic in-memory network of outpost peers, `Net::seeded(seed)`,
//! for the tests of every crate and for the benches.
//!
//! Every peer is a real [`Links`] layer (the sans-IO life of links: dials with backoff,
//! duplicate connections, grace periods, cut links) owning a real [`Engine`] over a real
//! [`Store`] (on the default storage engine, or `OUTPOST_TEST_ENGINE`'s) in its own
//! temporary directory, so that a peer can be restarted from disk.
//! The network carries out what the links layers ask (`Output::Dial`, `Send`, `Close`)
//! the way the QUIC transport's runner does: [`Net::connect`] gives both peers a dial target
//! naming the other, so every link starts with two crossing dials and one connection is kept.
//! A dial to a peer that is stopped or across a partition hangs (like a dial that times out)
//! until the peer is back or the partition heals; then it fails and the links layer redials
//! after its backoff. Time is virtual: [`Net::run_until_quiet`]
//! jumps from one event (a message arriving, an engine timer, a link coming back) to the
//! next, and all randomness (delays, faults) comes from one `StdRng` seeded by the test, so
//! a failing seed replays exactly.
//!
//! # Fault model, and why
//!
//! The engine is written for the transport it runs on: one QUIC connection per peer pair, a
//! control stream, and one ordered, reliable stream per document. On such a link a message
//! is never lost, duplicated or reordered *within* a stream while the link is up; what does
//! happen is that the whole connection breaks (every message in flight in both directions
//! is lost, both sides see a disconnect, and the transport reconnects later), and that
//! messages of *different* streams overtake each other. [`FaultModel::Quic`] (the default)
//! models exactly that:
//!
//! - `drop_rate`: probability, per message sent, that the connection breaks instead of
//!   delivering it. Both links layers get `handle_closed`, everything in flight is
//!   discarded, and the links layers redial after their backoff (if the link is still
//!   wanted and the partition allows it).
//! - `reorder`: messages of different documents (streams) of one link may overtake each other
//!   (each message gets its own random delay; within a stream delivery stays FIFO). Off, a
//!   link is one FIFO queue.
//! - `dup_rate` is ignored: QUIC never delivers a stream's bytes twice.
//!
//! That is also what `outpost-transport` does: a full send queue closes the connection
//! (`CloseCode::SlowPeer`) rather than dropping a message.
//!
//! [`FaultModel::Lossy`] goes beyond a QUIC link, to test the engine's own recovery
//! (`handle_timeout` restarting stalled exchanges): with `drop_rate`, *document* messages
//! (`Sync`, `SyncPart`, `Refused`) are lost while the link stays up; with `dup_rate` they may
//! be delivered twice, and with `reorder_within_streams` overtake each other in their stream.
//! The control stream (`Hello`, `Ack`, `Error`) stays reliable: a `Hello` is sent once per
//! session by design. Flow control is not asserted there, since a lost message is never
//! acknowledged and the engine reopens its window by timeout.
//!
//! Automerge's sync protocol assumes ordered, reliable delivery, and the simulation showed
//! what that means here. Safety holds: nothing wrong is applied or persisted, and every new
//! session converges (`lossy_streams_heal_on_reconnect`). Liveness within a session does not:
//! a peer that already answered, and whose answer was lost, does not answer the same state
//! again (`have_responded`, `last_sent_heads`), so the other side's retries go unanswered
//! until the session ends. Two engine fixes came out of this model (a restarted exchange
//! sends a sync reset; a change the peer asks for twice is sent again): without them, a lost
//! or duplicated message could start an immediate, endless exchange of empty messages (a
//! request for a change the other side counted as sent), a message storm.
//!
//! Partitions, explicit disconnects and restarts from disk apply in both models.
pub mod rogue;
mod signing;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use outpost_core::signing::SignatureRule;
use outpost_core::storage::{Database, DatabaseOptions};
pub use signing::{TestCa, TestSigner, TestVerifier};
use std::time::{Duration, Instant};

use outpost_core::engine::wire::{WireMessage, FRAGMENT_BYTES};
use outpost_core::engine::DEFAULT_WINDOW_BYTES;
use outpost_core::{
    Backoff, ChangeHash, CloseCode, ConnId, DocumentId, Durability, Engine, EngineConfig, Event,
    LinkConfig, Links, Output, PeerId, PeerInfo, Policy, Role, Store, StoreOptions, Target,
    Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

/// Environment variable: replay one seed.
pub const SEED_ENV: &str = "OUTPOST_SIM_SEED";
/// Environment variable: how many seeds a property test runs.
pub const SEEDS_ENV: &str = "OUTPOST_SIM_SEEDS";
/// Environment variable: print every network event to stderr.
pub const TRACE_ENV: &str = "OUTPOST_SIM_TRACE";

/// Virtual time at which a simulation starts (ms since the epoch; any value works).
const START_MS: u64 = 1_700_000_000_000;
/// `run_until_quiet` gives up (and fails) after this much virtual time without quiet.
const QUIET_LIMIT_MS: u64 = 30 * 60 * 1000;
/// ... or after this many events.
const QUIET_LIMIT_STEPS: u64 = 2_000_000;

/// How the network misbehaves; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultModel {
    /// What a QUIC link can do: break (and reconnect), and reorder across streams.
    Quic,
    /// Datagram-like loss, duplication and reordering of document messages on a live link.
    Lossy,
}

/// Bytes and messages sent over one direction of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Every byte sent.
    pub bytes: u64,
    /// Every message sent.
    pub messages: u64,
    /// `Sync` and `SyncPart` messages sent (per-document traffic).
    pub sync_messages: u64,
    /// Bytes of those.
    pub sync_bytes: u64,
    /// Handshake messages sent: `Hello` and its pages, or `Reconcile` range digests.
    pub hellos: u64,
    /// The most document bytes ever sent and not yet acknowledged.
    pub max_unacked: u64,
}

impl LinkStats {
    fn add(&mut self, other: &LinkStats) {
        self.bytes += other.bytes;
        self.messages += other.messages;
        self.sync_messages += other.sync_messages;
        self.sync_bytes += other.sync_bytes;
        self.hellos += other.hellos;
        self.max_unacked = self.max_unacked.max(other.max_unacked);
    }
}

/// How a peer deviates from an ordinary device of the network; see [`Net::add_peer_with`].
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    /// The policy its store enforces on local writes (default: the network's policy).
    /// `Policy::allow_all()` simulates a tampered device that writes what it may not.
    pub store_policy: Option<Policy>,
    /// The policy its engine enforces (default: the network's policy).
    pub engine_policy: Option<Policy>,
    /// The role its changes claim in their actor ids (default: its certified role). Another
    /// role simulates a tampered device forging authorship.
    pub claimed_role: Option<String>,
    /// Its flow-control window (default: the engine's).
    pub window_bytes: Option<u64>,
    /// The device its changes claim in their actor ids (default: itself). Another device
    /// simulates a tampered relay forging another device's authorship; it still signs with
    /// its own key (see [`Net::signing`]).
    pub claimed_peer: Option<String>,
    /// A peer of a version from before signed changes: with [`Net::signing`], it neither
    /// signs nor checks signatures.
    pub unsigned: bool,
    /// Its ticket prefix (`StoreOptions::ticket_prefix`), e.g. `K1`.
    pub ticket_prefix: Option<String>,
    /// Whether its store tells a copied data directory (`StoreOptions::detect_restore`,
    /// default true); false models a restore that keeps file identities (a disk image).
    pub undetected_restore: bool,
}

struct SimPeer {
    /// Who the peer is, as its certificate says.
    info: PeerInfo,
    /// Who its store writes as.
    claimed: PeerInfo,
    dir: tempfile::TempDir,
    store_policy: Policy,
    engine_policy: Policy,
    window_bytes: Option<u64>,
    unsigned: bool,
    ticket_prefix: Option<outpost_core::TicketPrefix>,
    undetected_restore: bool,
    /// `None` while the peer is stopped.
    links: Option<Links>,
    /// The store's notifications, as the transport's runner watches them (only what the
    /// simulation does not tell the links layer itself: quarantined documents).
    changes: Option<outpost_core::Subscription>,
}

struct Packet {
    from: PeerId,
    to: PeerId,
    /// The receiver's end of the connection.
    to_conn: ConnId,
    bytes: Vec<u8>,
}

/// One end of a simulated connection.
#[derive(Clone, Debug)]
struct SimConn {
    me: PeerId,
    other: PeerId,
    /// The other end.
    peer_conn: ConnId,
}

type Link = (PeerId, PeerId);

fn link(a: &PeerId, b: &PeerId) -> Link {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

/// A document id from a literal.
pub fn doc(name: &str) -> DocumentId {
    name.parse().expect("simulation document names are valid")
}

/// A peer id from a literal.
pub fn pid(name: &str) -> PeerId {
    name.parse().expect("simulation peer names are valid")
}

/// The replay hint printed with every failure.
pub fn replay_hint(seed: u64) -> String {
    format!("simulation seed {seed}; replay with {SEED_ENV}={seed} and the failing test")
}

/// A simulated network of engines. See the [module documentation](self).
pub struct Net {
    seed: u64,
    rng: StdRng,
    now: u64,
    policy: Policy,
    peers: BTreeMap<PeerId, SimPeer>,
    /// Links the test asked for; partitions, breaks and restarts take them down for a while.
    wanted: BTreeSet<Link>,
    /// Who dials whom: (dialer, target).
    dialers: BTreeSet<(PeerId, PeerId)>,
    /// Open connections, by the id of each end.
    conns: BTreeMap<ConnId, SimConn>,
    next_conn: u64,
    /// Dials that hang: (dialer, target peer), until the target runs and is reachable.
    hanging: BTreeSet<(PeerId, PeerId)>,
    /// Dials made, for reports.
    pub dials: u64,
    groups: Option<Vec<BTreeSet<PeerId>>>,
    /// Messages in flight by (delivery time, sequence number).
    queue: BTreeMap<(u64, u64), Packet>,
    /// Delivery time of the last message queued on each stream (FIFO per stream).
    tails: HashMap<(PeerId, PeerId, Option<DocumentId>), u64>,
    seq: u64,
    model: FaultModel,
    drop_rate: f64,
    dup_rate: f64,
    reorder: bool,
    reorder_within: bool,
    /// Bits per second of each direction of a link; `None` for infinitely fast.
    bandwidth: Option<u64>,
    /// When each direction of a link has sent everything queued on it (virtual ms).
    busy_until: HashMap<(PeerId, PeerId), u64>,
    delay: (u64, u64),
    reconnect: Backoff,
    stats: BTreeMap<(PeerId, PeerId), LinkStats>,
    /// Document bytes sent and not yet acknowledged, per direction.
    unacked: HashMap<(PeerId, PeerId), u64>,
    /// Errors returned by `handle_message`.
    errors: Vec<String>,
    /// (peer, document) pairs excluded from convergence checks (a tampered device's copy).
    exempt: BTreeSet<(PeerId, DocumentId)>,
    trace: bool,
    /// Links broken by faults, for reports.
    pub breaks: u64,
    /// The fleet CA and the rule of peers that sign (see [`Net::signing`]).
    signing: Option<(Arc<TestCa>, SignatureRule)>,
    /// The peer whose received frames are recorded (see [`Net::tap`]).
    tapped: Option<PeerId>,
    /// Frames delivered to the tapped peer: (sender, bytes).
    tap_log: Vec<(PeerId, Vec<u8>)>,
}

impl Net {
    /// An empty network whose delays and faults all derive from `seed`. No faults, 1 ms
    /// delay, the default policy.
    pub fn seeded(seed: u64) -> Net {
        Net {
            seed,
            rng: StdRng::seed_from_u64(seed),
            now: START_MS,
            policy: Policy::default(),
            peers: BTreeMap::new(),
            wanted: BTreeSet::new(),
            dialers: BTreeSet::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            hanging: BTreeSet::new(),
            dials: 0,
            groups: None,
            queue: BTreeMap::new(),
            tails: HashMap::new(),
            seq: 0,
            model: FaultModel::Quic,
            drop_rate: 0.0,
            dup_rate: 0.0,
            reorder: false,
            reorder_within: false,
            bandwidth: None,
            busy_until: HashMap::new(),
            delay: (1, 1),
            reconnect: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
            stats: BTreeMap::new(),
            unacked: HashMap::new(),
            errors: Vec::new(),
            exempt: BTreeSet::new(),
            trace: std::env::var_os(TRACE_ENV).is_some(),
            breaks: 0,
            signing: None,
            tapped: None,
            tap_log: Vec::new(),
        }
    }

    /// Peers added from now on sign their changes with keys of a fleet CA derived from the
    /// seed, and check the changes they receive under `rule`.
    pub fn signing(&mut self, rule: SignatureRule) -> &mut Self {
        let ca = self
            .signing
            .as_ref()
            .map_or_else(|| Arc::new(TestCa::new(self.seed)), |(ca, _)| ca.clone());
        self.signing = Some((ca, rule));
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The policy of peers added from now on.
    pub fn policy(&mut self, policy: Policy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// The fault model (default [`FaultModel::Quic`]).
    pub fn model(&mut self, model: FaultModel) -> &mut Self {
        self.model = model;
        self
    }

    /// Per message: the probability that the link breaks (Quic) or the message is lost (Lossy).
    pub fn drop_rate(&mut self, p: f64) -> &mut Self {
        self.drop_rate = p;
        self
    }

    /// Per document message: the probability that it is delivered twice (Lossy only).
    pub fn dup_rate(&mut self, p: f64) -> &mut Self {
        self.dup_rate = p;
        self
    }

    /// Whether messages of different streams (documents) of a link may overtake each other.
    pub fn reorder(&mut self, on: bool) -> &mut Self {
        self.reorder = on;
        self
    }

    /// Whether document messages may overtake each other within their stream (Lossy only).
    pub fn reorder_within_streams(&mut self, on: bool) -> &mut Self {
        self.reorder_within = on;
        self
    }

    /// A slow link: each direction sends `bits_per_second`, one message after the other,
    /// before the one-way delay (e.g. a 1 Mbit/s WAN with `delay(100, 100)` for 200 ms RTT).
    pub fn bandwidth(&mut self, bits_per_second: u64) -> &mut Self {
        self.bandwidth = Some(bits_per_second.max(1));
        self
    }

    /// One-way delay of each message, uniform in `min..=max` milliseconds.
    pub fn delay(&mut self, min: u64, max: u64) -> &mut Self {
        self.delay = (min, max.max(min));
        self
    }

    /// The redial backoff of peers added from now on: from `min` doubling to `max`
    /// milliseconds, with jitter (default 50 to 500 ms).
    pub fn reconnect_delay(&mut self, min: u64, max: u64) -> &mut Self {
        self.reconnect = Backoff::new(Duration::from_millis(min), Duration::from_millis(max));
        self
    }

    /// No more faults: no drops, no duplicates, and back to the QUIC model (delays and
    /// reordering across streams stay).
    pub fn calm(&mut self) -> &mut Self {
        self.drop_rate = 0.0;
        self.dup_rate = 0.0;
        self.reorder_within = false;
        self.model = FaultModel::Quic;
        self
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{} {}] {}", self.seed, Timestamp(self.now), what());
        }
    }

    // ---- peers ----

    /// Adds a peer with the network's policy.
    pub fn add_peer(&mut self, site: &str, peer: &str, role: &str) -> PeerId {
        self.add_peer_with(site, peer, role, PeerOptions::default())
    }

    /// Adds a peer that deviates from an ordinary device as `options` say.
    pub fn add_peer_with(
        &mut self,
        site: &str,
        peer: &str,
        role: &str,
        options: PeerOptions,
    ) -> PeerId {
        let info = PeerInfo::parse(site, peer, role).expect("simulation identities are valid");
        let claimed = PeerInfo::parse(
            site,
            options.claimed_peer.as_deref().unwrap_or(peer),
            options.claimed_role.as_deref().unwrap_or(role),
        )
        .expect("simulation identities are valid");
        let id = info.peer.clone();
        assert!(!self.peers.contains_key(&id), "peer {id} added twice");
        let mut p = SimPeer {
            info,
            claimed,
            dir: tempfile::tempdir().expect("a temporary directory can be created"),
            store_policy: options.store_policy.unwrap_or_else(|| self.policy.clone()),
            engine_policy: options.engine_policy.unwrap_or_else(|| self.policy.clone()),
            window_bytes: options.window_bytes,
            unsigned: options.unsigned,
            ticket_prefix: options
                .ticket_prefix
                .map(|t| t.parse().expect("simulation ticket prefixes are valid")),
            undetected_restore: options.undetected_restore,
            links: None,
            changes: None,
        };
        let tail: [u8; 8] = self.rng.random();
        let seed = self.rng.random();
        p.links = Some(open_links(
            &p,
            tail,
            &self.reconnect,
            seed,
            self.signing.as_ref(),
        ));
        p.changes = p.links.as_ref().map(subscribe);
        self.peers.insert(id.clone(), p);
        id
    }

    /// All peers.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.keys().cloned().collect()
    }

    /// A peer's role.
    pub fn role(&self, peer: &PeerId) -> Role {
        self.sim(peer).info.role.clone()
    }

    fn sim(&self, peer: &PeerId) -> &SimPeer {
        self.peers
            .get(peer)
            .unwrap_or_else(|| panic!("no peer {peer} in the simulation"))
    }

    /// A running peer's links layer.
    pub fn links(&self, peer: &PeerId) -> &Links {
        self.sim(peer)
            .links
            .as_ref()
            .unwrap_or_else(|| panic!("peer {peer} is stopped"))
    }

    fn links_mut(&mut self, peer: &PeerId) -> &mut Links {
        self.peers
            .get_mut(peer)
            .and_then(|p| p.links.as_mut())
            .unwrap_or_else(|| panic!("peer {peer} is stopped or unknown"))
    }

    /// A running peer's engine.
    pub fn engine(&self, peer: &PeerId) -> &Engine {
        self.links(peer).engine()
    }

    /// Drains a running peer's events (links and engine).
    pub fn events(&mut self, peer: &PeerId) -> Vec<Event> {
        let l = self.links_mut(peer);
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    /// The reasons of the `ChangeRefused` events a peer emitted since events were last
    /// drained (other events are drained too).
    pub fn refusals(&mut self, peer: &PeerId) -> Vec<String> {
        self.events(peer)
            .into_iter()
            .filter_map(|e| match e {
                Event::ChangeRefused { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// A running peer's store.
    pub fn store(&self, peer: &PeerId) -> &Store {
        self.engine(peer).store()
    }

    /// The peer's data directory (its database), e.g. to measure it on disk.
    pub fn data_dir(&self, peer: &PeerId) -> &std::path::Path {
        self.sim(peer).dir.path()
    }

    /// Whether the peer is running.
    pub fn is_running(&self, peer: &PeerId) -> bool {
        self.sim(peer).links.is_some()
    }

    /// Stops a peer: its connections go down and its links layer, engine and store are
    /// dropped (the engine syncs on drop, like a clean shutdown).
    pub fn stop(&mut self, peer: &PeerId) {
        if !self.is_running(peer) {
            return;
        }
        let mine: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| &c.me == peer)
            .map(|(id, _)| *id)
            .collect();
        for c in mine {
            self.break_conn(c, Some(peer));
        }
        self.hanging.retain(|(from, _)| from != peer);
        self.log(|| format!("stop {peer}"));
        let p = self.peers.get_mut(peer).expect("peer checked above");
        p.changes = None;
        p.links = None;
    }

    /// Whether a peer signs and checks signatures from its next start (see
    /// [`PeerOptions::unsigned`]): `restart` it to upgrade (or downgrade) it.
    pub fn set_unsigned(&mut self, peer: &PeerId, unsigned: bool) {
        self.peers
            .get_mut(peer)
            .unwrap_or_else(|| panic!("no peer {peer} in the simulation"))
            .unsigned = unsigned;
    }

    /// Starts a stopped peer from its directory; it dials its wanted links again.
    pub fn start(&mut self, peer: &PeerId) {
        if self.is_running(peer) {
            return;
        }
        self.log(|| format!("start {peer}"));
        let seed = self.rng.random();
        let tail: [u8; 8] = self.rng.random();
        let reconnect = self.reconnect.clone();
        let signing = self.signing.clone();
        let p = self.peers.get_mut(peer).expect("peer checked above");
        p.links = Some(open_links(p, tail, &reconnect, seed, signing.as_ref()));
        p.changes = p.links.as_ref().map(subscribe);
        let now = Timestamp(self.now);
        let others: Vec<PeerId> = self
            .dialers
            .iter()
            .filter(|(a, b)| a == peer && self.wanted.contains(&link(a, b)))
            .map(|(_, b)| b.clone())
            .collect();
        for other in others {
            self.links_mut(peer)
                .add_target(Target::new(other.as_str()), now);
        }
        self.release_hanging();
    }

    /// Copies a stopped peer's data directory, like a backup (Android Auto Backup, a disk
    /// image) would.
    pub fn backup(&self, peer: &PeerId) -> tempfile::TempDir {
        assert!(!self.is_running(peer), "stop {peer} before backing it up");
        let copy = tempfile::tempdir().expect("a temporary directory can be created");
        copy_dir(self.sim(peer).dir.path(), copy.path());
        copy
    }

    /// Replaces a stopped peer's data directory with a backup (the peer then starts from it).
    pub fn restore_backup(&mut self, peer: &PeerId, backup: &tempfile::TempDir) {
        assert!(!self.is_running(peer), "stop {peer} before restoring it");
        let dir = self.sim(peer).dir.path().to_path_buf();
        std::fs::remove_dir_all(&dir).expect("the peer's directory can be removed");
        std::fs::create_dir_all(&dir).expect("the peer's directory can be created");
        copy_dir(backup.path(), &dir);
        self.log(|| format!("restore {peer} from a backup"));
    }

    /// A whole-store backup of a peer, taken while it runs (`Store::backup`).
    pub fn backup_store(&self, peer: &PeerId) -> (Vec<u8>, outpost_core::BackupSummary) {
        let mut out = Vec::new();
        let summary = self
            .store(peer)
            .backup(&mut out)
            .unwrap_or_else(|e| panic!("backup of {peer} failed: {e}"));
        (out, summary)
    }

    /// Wipes a stopped peer's data directory and restores a whole-store backup into it
    /// (`outpost_core::restore`); start the peer to open it.
    pub fn restore_store(&mut self, peer: &PeerId, backup: &[u8]) -> outpost_core::BackupSummary {
        assert!(!self.is_running(peer), "stop {peer} before restoring it");
        let dir = self.sim(peer).dir.path().to_path_buf();
        std::fs::remove_dir_all(&dir).expect("the peer's directory can be removed");
        let summary = outpost_core::restore(&dir, backup)
            .unwrap_or_else(|e| panic!("restore of {peer} failed: {e}"));
        self.log(|| format!("restore {peer} from a whole-store backup"));
        summary
    }

    /// Erases `doc` fleet-wide from a cloud peer (`Links::erase`); returns whether the cloud
    /// held it.
    pub fn erase(&mut self, peer: &PeerId, doc: &DocumentId) -> bool {
        let now = Timestamp(self.now);
        let held = self
            .links_mut(peer)
            .erase(doc, now)
            .unwrap_or_else(|e| panic!("erasing {doc} on {peer} failed: {e}"));
        self.pump_all();
        held
    }

    /// Flips a byte in every stored chunk of `doc` on a stopped peer: the document no longer
    /// loads.
    pub fn corrupt(&mut self, peer: &PeerId, doc: &DocumentId) {
        assert!(
            !self.is_running(peer),
            "stop {peer} before corrupting its disk"
        );
        let db = open_db(self.sim(peer).dir.path());
        // The store's layout: the chunks of every document in one keyspace, keyed
        // 0x01 <document id> 0x00 <sequence>.
        let tree = db.keyspace("chunks");
        let mut prefix = vec![1u8];
        prefix.extend_from_slice(doc.to_string().as_bytes());
        prefix.push(0);
        let chunks: Vec<(Vec<u8>, Vec<u8>)> = tree
            .scan_prefix(&prefix)
            .map(|kv| kv.expect("the store reads"))
            .collect();
        assert!(!chunks.is_empty(), "{peer} holds no {doc} to corrupt");
        for (k, mut v) in chunks {
            let i = v.len() / 2;
            v[i] ^= 0x5a;
            tree.set(k, Some(&v)).expect("the store writes");
        }
        db.sync().expect("the store syncs");
        self.log(|| format!("corrupt {doc} on {peer}"));
    }

    /// Stops and starts a peer: a restart from disk.
    pub fn restart(&mut self, peer: &PeerId) {
        self.stop(peer);
        self.start(peer);
    }

    // ---- links ----

    /// Wants a link between `a` and `b`: `a` dials `b` (and redials whenever the link is
    /// down), the partition permitting.
    pub fn connect(&mut self, a: &PeerId, b: &PeerId) {
        self.connect_dialing(a, b, &[a]);
    }

    /// Wants a link between `a` and `b` that both dial: their dials cross, and the links
    /// layers keep one connection.
    pub fn connect_both(&mut self, a: &PeerId, b: &PeerId) {
        self.connect_dialing(a, b, &[a, b]);
    }

    fn connect_dialing(&mut self, a: &PeerId, b: &PeerId, dialers: &[&PeerId]) {
        assert_ne!(a, b, "a peer does not connect to itself");
        let now = Timestamp(self.now);
        self.wanted.insert(link(a, b));
        for (me, other) in [(a, b), (b, a)] {
            if !dialers.contains(&me) {
                continue;
            }
            self.dialers.insert((me.clone(), other.clone()));
            if self.is_running(me) {
                let t = Target::new(other.as_str());
                let l = self.links_mut(me);
                l.resume_target(&t, now);
                l.add_target(t, now);
            }
        }
    }

    /// Takes the link between `a` and `b` down for good (until `connect`): both stop
    /// dialing, and `a` closes the connection.
    pub fn disconnect(&mut self, a: &PeerId, b: &PeerId) {
        let now = Timestamp(self.now);
        self.wanted.remove(&link(a, b));
        for (me, other) in [(a, b), (b, a)] {
            if self.is_running(me) {
                self.links_mut(me)
                    .pause_target(&Target::new(other.as_str()));
            }
            self.hanging.remove(&(me.clone(), other.clone()));
        }
        if self.is_running(a) {
            self.links_mut(a)
                .disconnect(b, CloseCode::Disconnected, now);
        }
    }

    /// Cuts the link on `a`'s side (an operator's `cut_link`): `a` closes it and refuses it.
    pub fn cut(&mut self, a: &PeerId, b: &PeerId) {
        let now = Timestamp(self.now);
        self.links_mut(a).cut(b, now);
    }

    /// Restores a link cut with [`Net::cut`].
    pub fn restore(&mut self, a: &PeerId, b: &PeerId) {
        let now = Timestamp(self.now);
        self.links_mut(a).restore(b, now);
    }

    /// Whether `a` and `b` are connected (both ends agree on one open connection).
    pub fn is_up(&self, a: &PeerId, b: &PeerId) -> bool {
        if !self.is_running(a) || !self.is_running(b) {
            return false;
        }
        match (
            self.links(a).connection_of(b),
            self.links(b).connection_of(a),
        ) {
            (Some(ca), Some(cb)) => self
                .conns
                .get(&ca)
                .is_some_and(|c| c.peer_conn == cb && &c.other == b),
            _ => false,
        }
    }

    /// Open simulated connections between `a` and `b`, counting each once.
    pub fn connections_between(&self, a: &PeerId, b: &PeerId) -> usize {
        self.conns
            .values()
            .filter(|c| &c.me == a && &c.other == b)
            .count()
    }

    /// Splits the network: only peers of the same group can talk. Peers named in no group
    /// form one more group together.
    pub fn partition(&mut self, groups: &[&[PeerId]]) {
        let mut gs: Vec<BTreeSet<PeerId>> =
            groups.iter().map(|g| g.iter().cloned().collect()).collect();
        let named: BTreeSet<PeerId> = gs.iter().flatten().cloned().collect();
        let rest: BTreeSet<PeerId> = self
            .peers
            .keys()
            .filter(|p| !named.contains(*p))
            .cloned()
            .collect();
        if !rest.is_empty() {
            gs.push(rest);
        }
        self.log(|| format!("partition {gs:?}"));
        self.groups = Some(gs);
        let cut: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !self.allowed(&c.me, &c.other))
            .map(|(id, _)| *id)
            .collect();
        for c in cut {
            self.break_conn(c, None);
        }
    }

    /// Ends every session: every connection breaks; the links layers redial.
    pub fn reconnect_all(&mut self) {
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in all {
            self.break_conn(c, None);
        }
    }

    /// Ends the partition; hanging dials fail now and are redialed after their backoff.
    pub fn heal(&mut self) {
        self.log(|| "heal".to_string());
        self.groups = None;
        self.release_hanging();
    }

    fn allowed(&self, a: &PeerId, b: &PeerId) -> bool {
        match &self.groups {
            None => true,
            Some(gs) => gs.iter().any(|g| g.contains(a) && g.contains(b)),
        }
    }

    /// Dials that hung on a stopped peer or a partition fail now if they could succeed.
    fn release_hanging(&mut self) {
        let now = Timestamp(self.now);
        let ready: Vec<(PeerId, PeerId)> = self
            .hanging
            .iter()
            .filter(|(from, to)| {
                self.is_running(from) && self.is_running(to) && self.allowed(from, to)
            })
            .cloned()
            .collect();
        for (from, to) in ready {
            self.hanging.remove(&(from.clone(), to.clone()));
            self.links_mut(&from)
                .handle_dial_failed(&Target::new(to.as_str()), now);
        }
    }

    /// Carries out a dial of `target` by `from`.
    fn dial(&mut self, from: &PeerId, target: Target) {
        self.dials += 1;
        let to: PeerId = target
            .as_str()
            .parse()
            .expect("simulation targets are peer ids");
        if !self.is_running(&to) || !self.allowed(from, &to) {
            self.log(|| format!("dial {from} -> {to} hangs"));
            self.hanging.insert((from.clone(), to));
            return;
        }
        self.log(|| format!("dial {from} -> {to}"));
        let (ca, cb) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
        self.next_conn += 2;
        self.conns.insert(
            ca,
            SimConn {
                me: from.clone(),
                other: to.clone(),
                peer_conn: cb,
            },
        );
        self.conns.insert(
            cb,
            SimConn {
                me: to.clone(),
                other: from.clone(),
                peer_conn: ca,
            },
        );
        // A new session for the engines on either side: flow-control accounting restarts.
        self.unacked.remove(&(from.clone(), to.clone()));
        self.unacked.remove(&(to.clone(), from.clone()));
        let now = Timestamp(self.now);
        let (fi, ti) = (self.sim(from).info.clone(), self.sim(&to).info.clone());
        self.links_mut(from)
            .handle_connected(ca, ti, Some(target), now);
        self.links_mut(&to).handle_connected(cb, fi, None, now);
    }

    /// `closer` closed its end `conn` with `code`: the other end learns it.
    fn close_conn(&mut self, conn: ConnId, code: CloseCode) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.conns.remove(&c.peer_conn);
        self.log(|| format!("close {} -> {} ({code})", c.me, c.other));
        let now = Timestamp(self.now);
        if self.is_running(&c.other) {
            self.links_mut(&c.other)
                .handle_closed(c.peer_conn, Some(code), now);
        }
    }

    /// A connection breaks (a fault, a partition, a stopped peer): both running ends (but
    /// `gone`, which is stopping) see it closed without a code.
    fn break_conn(&mut self, conn: ConnId, gone: Option<&PeerId>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.conns.remove(&c.peer_conn);
        self.log(|| format!("connection breaks {} <-> {}", c.me, c.other));
        let now = Timestamp(self.now);
        for (peer, end) in [(&c.me, conn), (&c.other, c.peer_conn)] {
            if Some(peer) != gone && self.is_running(peer) {
                self.links_mut(peer).handle_closed(end, None, now);
            }
        }
        self.unacked.remove(&(c.me.clone(), c.other.clone()));
        self.unacked.remove(&(c.other.clone(), c.me.clone()));
    }

    // ---- writes ----

    /// Runs `f` on a peer's store, then tells its engine that `doc` changed.
    pub fn write<T>(
        &mut self,
        peer: &PeerId,
        doc: &DocumentId,
        f: impl FnOnce(&Store, &DocumentId) -> outpost_core::Result<T>,
    ) -> T {
        let now = Timestamp(self.now);
        let seed = self.seed;
        let out = f(self.store(peer), doc).unwrap_or_else(|e| {
            panic!(
                "write by {peer} to {doc} failed: {e}; {}",
                replay_hint(seed)
            )
        });
        self.links_mut(peer).handle_local_change(doc, now);
        out
    }

    /// Writes `value` at `path` of `doc` on `peer`.
    pub fn put(&mut self, peer: &PeerId, doc: &DocumentId, path: &str, value: Json) {
        self.write(peer, doc, |s, d| s.put(d, path, value, Durability::Fast));
    }

    /// Adds `delta` to the counter at `path` of `doc` on `peer`.
    pub fn increment(&mut self, peer: &PeerId, doc: &DocumentId, path: &str, delta: i64) {
        self.write(peer, doc, |s, d| {
            s.increment(d, path, delta, Durability::Fast)
        });
    }

    /// Reads `path` of `doc` on `peer` (`None` if the document or the value is absent).
    pub fn get(&self, peer: &PeerId, doc: &DocumentId, path: &str) -> Option<Json> {
        self.store(peer).get(doc, path).ok().flatten()
    }

    /// Heads of `doc` on `peer`, sorted.
    pub fn heads(&self, peer: &PeerId, doc: &DocumentId) -> Vec<ChangeHash> {
        let mut h = self
            .store(peer)
            .heads(doc)
            .expect("heads of a document can be read");
        h.sort();
        h
    }

    /// The operator revokes `device` at `peer` (a CA-signed record from the simulation's
    /// fleet CA, see [`Net::signing`]); the peer relays it on.
    pub fn revoke_at(&mut self, peer: &PeerId, device: &PeerId, reason: &str) {
        let (ca, _) = self
            .signing
            .clone()
            .expect("revocations need a signing fleet: call Net::signing first");
        let info = self.sim(device).info.clone();
        let record = ca.revoke(&info, reason);
        let now = Timestamp(self.now);
        self.links_mut(peer)
            .learn_revocation(record, now)
            .unwrap_or_else(|e| panic!("{peer} refused a revocation of its fleet CA: {e}"));
    }

    /// Queues raw bytes from `from` to `to` on their open connection, as if `from`'s links
    /// layer had sent them: a tampered device's frames (they need not decode). Returns
    /// false if the two have no connection now.
    pub fn inject(&mut self, from: &PeerId, to: &PeerId, bytes: Vec<u8>) -> bool {
        let Some(c) = self
            .conns
            .values()
            .find(|c| &c.me == from && &c.other == to)
            .cloned()
        else {
            return false;
        };
        let mut at = self.now + self.rng.random_range(self.delay.0..=self.delay.1);
        let tail = self
            .tails
            .entry((from.clone(), to.clone(), None))
            .or_default();
        at = at.max(*tail);
        *tail = at;
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Packet {
                from: from.clone(),
                to: to.clone(),
                to_conn: c.peer_conn,
                bytes,
            },
        );
        true
    }

    /// Sends `change` of `doc` from `from` to `to` as a tampered device would: signed with
    /// `from`'s own key (the signing network's CA issues it), its `Signatures` frame first,
    /// then a `Sync` frame that carries it. Panics if the two have no connection now.
    pub fn inject_signed(
        &mut self,
        from: &PeerId,
        to: &PeerId,
        doc: &DocumentId,
        change: &automerge::Change,
    ) {
        use outpost_core::signing::Signer as _;
        let hash = change.hash();
        let signer = self
            .ca()
            .expect("a signing network (Net::signing)")
            .issue(&self.info(from));
        let signature = outpost_core::engine::wire::ChangeSignature {
            change: hash.0,
            key: outpost_core::signing::KeyId::of(signer.certificate()).0,
            signature: signer
                .sign(&outpost_core::signing::signed_bytes(doc, &hash))
                .expect("the test key signs"),
        };
        let frames = [
            rogue::sigs_frame(doc, vec![signature], vec![signer.certificate().to_vec()]),
            rogue::sync_frame(doc, vec![change.raw_bytes().to_vec()], vec![hash]),
        ];
        for f in frames {
            assert!(self.inject(from, to, f), "{from} is not linked to {to}");
        }
    }

    /// Records every frame delivered to `peer` from now on (a tampered device reading what
    /// honest devices send it); see [`Net::take_tapped`].
    pub fn tap(&mut self, peer: &PeerId) {
        self.tapped = Some(peer.clone());
    }

    /// The frames recorded by [`Net::tap`] since the last call: (sender, bytes).
    pub fn take_tapped(&mut self) -> Vec<(PeerId, Vec<u8>)> {
        std::mem::take(&mut self.tap_log)
    }

    /// The fleet CA of a signing network (see [`Net::signing`]).
    pub fn ca(&self) -> Option<Arc<TestCa>> {
        self.signing.as_ref().map(|(ca, _)| ca.clone())
    }

    /// Who a peer is, as its certificate says.
    pub fn info(&self, peer: &PeerId) -> PeerInfo {
        self.sim(peer).info.clone()
    }

    /// Like [`Net::write`], but a refused write is returned rather than failing the test.
    pub fn try_write<T>(
        &mut self,
        peer: &PeerId,
        doc: &DocumentId,
        f: impl FnOnce(&Store, &DocumentId) -> outpost_core::Result<T>,
    ) -> outpost_core::Result<T> {
        let now = Timestamp(self.now);
        let out = f(self.store(peer), doc)?;
        self.links_mut(peer).handle_local_change(doc, now);
        Ok(out)
    }

    /// Excludes `peer`'s copy of `doc` from convergence checks (a tampered device keeps its
    /// refused change, so its copy never matches).
    pub fn exempt(&mut self, peer: &PeerId, doc: &DocumentId) {
        self.exempt.insert((peer.clone(), doc.clone()));
    }

    // ---- time ----

    /// Virtual now.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.now)
    }

    /// Asks `peer` to drop the documents its retention excludes (a device's housekeeping).
    pub fn drop_expired(&mut self, peer: &PeerId) -> Vec<DocumentId> {
        let now = Timestamp(self.now);
        let dropped = self.links_mut(peer).drop_expired(now);
        self.pump_all();
        dropped
    }

    /// Carries out what every running links layer asks, until none asks anything.
    fn pump_all(&mut self) {
        loop {
            let mut any = false;
            let ids: Vec<PeerId> = self.peers.keys().cloned().collect();
            let now = Timestamp(self.now);
            for p in self.peers.values_mut() {
                let (Some(links), Some(changes)) = (p.links.as_mut(), p.changes.as_mut()) else {
                    continue;
                };
                while let Some(c) = changes.try_recv() {
                    if c.origin == outpost_core::Origin::Quarantine {
                        links.handle_document_reset(&c.doc, now);
                    }
                }
            }
            for id in ids {
                while let Some(o) = self
                    .peers
                    .get_mut(&id)
                    .and_then(|p| p.links.as_mut())
                    .and_then(Links::poll_output)
                {
                    any = true;
                    match o {
                        Output::Send { conn, doc, bytes } => self.send(&id, conn, doc, bytes),
                        Output::Close { conn, code } => self.close_conn(conn, code),
                        Output::Dial { target } => self.dial(&id, target),
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    fn send(&mut self, from: &PeerId, conn: ConnId, doc: Option<DocumentId>, bytes: Vec<u8>) {
        let Some(c) = self.conns.get(&conn).cloned() else {
            panic!(
                "{from} sent on connection {conn}, which is closed (the links layer kept a \
                 closed connection); {}",
                replay_hint(self.seed)
            );
        };
        let to = c.other.clone();
        let msg = WireMessage::decode(&bytes).expect("engines send valid wire messages");
        // Document messages under flow control (signatures travel with their changes).
        let is_sync = matches!(
            msg,
            WireMessage::Sync { .. }
                | WireMessage::SyncPart { .. }
                | WireMessage::Signatures { .. }
        );
        let key = (from.clone(), to.clone());
        {
            let st = self.stats.entry(key.clone()).or_default();
            st.bytes += bytes.len() as u64;
            st.messages += 1;
            if is_sync {
                st.sync_messages += 1;
                st.sync_bytes += bytes.len() as u64;
            }
            if matches!(
                msg,
                WireMessage::Hello { .. }
                    | WireMessage::HelloPart { .. }
                    | WireMessage::Reconcile { .. }
            ) {
                st.hellos += 1;
            }
        }
        if is_sync {
            let u = self.unacked.entry(key.clone()).or_default();
            let before = *u;
            *u += bytes.len() as u64;
            let after = *u;
            let st = self.stats.entry(key.clone()).or_default();
            st.max_unacked = st.max_unacked.max(after);
            if self.model == FaultModel::Quic {
                let window = self.sim(from).window_bytes.unwrap_or(DEFAULT_WINDOW_BYTES);
                // The engine may send while less than the window is unacknowledged, so at
                // most the window plus one message is ever in flight.
                assert!(
                    before < window || before == 0,
                    "flow control: {from} sent {} bytes to {to} with {before} bytes unacknowledged \
                     (window {window}); {}",
                    bytes.len(),
                    replay_hint(self.seed)
                );
            }
        }
        self.log(|| format!("send {from} -> {to} {}", describe(&msg, bytes.len())));
        let doc_lane = matches!(
            msg,
            WireMessage::Sync { .. }
                | WireMessage::SyncPart { .. }
                | WireMessage::Refused { .. }
                | WireMessage::Signatures { .. }
        );
        let copies = match self.model {
            FaultModel::Quic => {
                if self.drop_rate > 0.0 && self.rng.random_bool(self.drop_rate) {
                    self.breaks += 1;
                    self.break_conn(conn, None);
                    return;
                }
                1
            }
            FaultModel::Lossy if doc_lane => {
                if self.drop_rate > 0.0 && self.rng.random_bool(self.drop_rate) {
                    self.log(|| "  (lost)".to_string());
                    return;
                }
                if self.dup_rate > 0.0 && self.rng.random_bool(self.dup_rate) {
                    2
                } else {
                    1
                }
            }
            FaultModel::Lossy => 1,
        };
        for _ in 0..copies {
            let mut sent = self.now;
            if let Some(bps) = self.bandwidth {
                let busy = self
                    .busy_until
                    .entry((from.clone(), to.clone()))
                    .or_default();
                let start = (*busy).max(self.now);
                *busy = start + (bytes.len() as u64 * 8 * 1000).div_ceil(bps);
                sent = *busy;
            }
            let mut at = sent + self.rng.random_range(self.delay.0..=self.delay.1);
            // FIFO per stream (per link when not reordering); Lossy document messages may
            // overtake each other within their stream too.
            let stream = if self.reorder { doc.clone() } else { None };
            let fifo = !(self.model == FaultModel::Lossy && doc_lane && self.reorder_within);
            let tail = self
                .tails
                .entry((from.clone(), to.clone(), stream))
                .or_default();
            if fifo {
                at = at.max(*tail);
                *tail = at;
            }
            self.seq += 1;
            self.queue.insert(
                (at, self.seq),
                Packet {
                    from: from.clone(),
                    to: to.clone(),
                    to_conn: c.peer_conn,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn deliver(&mut self, p: Packet) {
        if !self.conns.contains_key(&p.to_conn) {
            // Sent on a connection that has ended: lost with it.
            return;
        }
        // Frames a rogue device injected (see [`Net::inject`]) need not decode.
        let msg = WireMessage::decode(&p.bytes).ok();
        if let Some(WireMessage::Ack { bytes }) = msg {
            let u = self
                .unacked
                .entry((p.to.clone(), p.from.clone()))
                .or_default();
            *u = u.saturating_sub(bytes);
        }
        if self.tapped.as_ref() == Some(&p.to) {
            self.tap_log.push((p.from.clone(), p.bytes.clone()));
        }
        self.log(|| {
            let what = msg.as_ref().map_or_else(
                || format!("undecodable frame of {} B", p.bytes.len()),
                |m| describe(m, p.bytes.len()),
            );
            format!("recv {} -> {} {what}", p.from, p.to)
        });
        let now = Timestamp(self.now);
        if let Err(e) = self.links_mut(&p.to).handle_frame(p.to_conn, &p.bytes, now) {
            self.log(|| format!("  error: {e}"));
            self.errors.push(format!("{} from {}: {e}", p.to, p.from));
        }
    }

    /// Delivers messages, fires engine timers and reconnects links, advancing virtual time,
    /// until nothing is in flight and no timer is pending. Fails if that takes more than
    /// 30 virtual minutes (a livelock).
    pub fn run_until_quiet(&mut self) {
        self.run(None);
    }

    /// Like [`Net::run_until_quiet`] but stops at `now + ms` (virtual time moves there).
    pub fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        self.run(Some(until));
        self.now = self.now.max(until);
    }

    fn run(&mut self, until: Option<u64>) {
        let start = self.now;
        let mut steps = 0u64;
        loop {
            self.pump_all();
            let next_msg = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .peers
                .values()
                .filter_map(|p| p.links.as_ref()?.poll_timeout())
                .map(|t| t.as_millis())
                .min();
            let Some(next) = [next_msg, next_timer].into_iter().flatten().min() else {
                return;
            };
            if until.is_some_and(|u| next > u) {
                return;
            }
            steps += 1;
            if next > start + QUIET_LIMIT_MS || steps > QUIET_LIMIT_STEPS {
                panic!(
                    "the network did not go quiet within {} virtual minutes / {QUIET_LIMIT_STEPS} \
                     events (a livelock?): {} messages in flight, next timer at {:?}; {}",
                    QUIET_LIMIT_MS / 60_000,
                    self.queue.len(),
                    next_timer.map(Timestamp),
                    replay_hint(self.seed)
                );
            }
            self.now = self.now.max(next);
            if next_msg == Some(next) {
                let (_, p) = self.queue.pop_first().expect("queue checked non-empty");
                self.deliver(p);
            } else {
                let now = Timestamp(self.now);
                for p in self.peers.values_mut() {
                    if let Some(l) = p.links.as_mut() {
                        if l.poll_timeout().is_some_and(|t| t <= now) {
                            l.handle_timeout(now);
                        }
                    }
                }
            }
        }
    }

    // ---- observations ----

    /// Statistics of every direction of every link since the last reset.
    pub fn total_stats(&self) -> LinkStats {
        let mut t = LinkStats::default();
        for s in self.stats.values() {
            t.add(s);
        }
        t
    }

    /// Statistics of messages `from` sent to `to`.
    pub fn link_stats(&self, from: &PeerId, to: &PeerId) -> LinkStats {
        self.stats
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// Forgets the statistics.
    pub fn reset_stats(&mut self) {
        self.stats.clear();
    }

    /// Errors the engines returned from `handle_message`.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Every document any running peer holds.
    pub fn documents(&self) -> BTreeSet<DocumentId> {
        self.peers
            .values()
            .filter_map(|p| p.links.as_ref())
            .flat_map(|l| {
                l.engine()
                    .store()
                    .documents()
                    .expect("documents can be listed")
            })
            .collect()
    }

    /// Whether `peer`'s role may read `doc` under the network's policy.
    pub fn policy_may_read(&self, peer: &PeerId, doc: &DocumentId) -> bool {
        self.policy
            .may_read(&self.sim(peer).info.role, doc.context())
    }

    /// The running peers that may read `doc` under their engine's policy, minus exemptions.
    pub fn readers(&self, doc: &DocumentId) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(id, p)| {
                p.links.is_some()
                    && self.policy.may_read(&p.info.role, doc.context())
                    && !self.exempt.contains(&((*id).clone(), doc.clone()))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Asserts that every peer that may read a document has the same heads and the same
    /// JSON value of it. All peers must be running.
    pub fn assert_converged(&self) {
        let mut report = String::new();
        for (id, p) in &self.peers {
            if p.links.is_none() {
                let _ = writeln!(report, "peer {id} is stopped");
            }
        }
        for d in self.documents() {
            let readers = self.readers(&d);
            let Some(first) = readers.first() else {
                continue;
            };
            let want_heads = self.heads(first, &d);
            let want_value = self.store(first).get_all(&d).ok();
            for r in &readers[1..] {
                let heads = self.heads(r, &d);
                let value = self.store(r).get_all(&d).ok();
                if heads != want_heads {
                    let _ = writeln!(
                        report,
                        "{d}: {r} has {} heads {:?}, {first} has {:?}",
                        heads.len(),
                        short(&heads),
                        short(&want_heads)
                    );
                } else if value != want_value {
                    let _ = writeln!(
                        report,
                        "{d}: {r} and {first} have the same heads but different values"
                    );
                }
            }
        }
        assert!(
            report.is_empty(),
            "not converged:\n{report}{}",
            replay_hint(self.seed)
        );
    }

    /// A random number generator derived from the network's seed, for the test's workload.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// Opens a peer's database through the storage trait, with the engine its directory holds
/// (a new one: the default engine, or `OUTPOST_TEST_ENGINE`). Engines release the lock of a
/// dropped database a moment later (see `Database::open`), so a restart on a loaded machine
/// may find it still held for longer than `Database::open` waits.
fn open_db(path: &std::path::Path) -> Database {
    let options = DatabaseOptions {
        flush_every_ms: 100,
        ..DatabaseOptions::default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Database::open(path, &options) {
            Err(outpost_core::Error::InUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => break other.expect("a simulated peer's database opens"),
        }
    }
}

fn subscribe(links: &Links) -> outpost_core::Subscription {
    links
        .engine()
        .store()
        .subscribe(outpost_core::SubscriptionFilter::all().without_paths())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("a data directory can be read") {
        let entry = entry.expect("a directory entry can be read");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("a directory can be created");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a file can be copied");
        }
    }
}

fn short(heads: &[ChangeHash]) -> Vec<String> {
    heads
        .iter()
        .map(|h| h.to_string()[..8].to_string())
        .collect()
}

fn describe(msg: &WireMessage, len: usize) -> String {
    match msg {
        WireMessage::Hello { docs } => format!("Hello({} docs, {len} B)", docs.len()),
        WireMessage::HelloPart { docs } => format!("HelloPart({} docs, {len} B)", docs.len()),
        WireMessage::Sync { doc, data } => {
            let Ok(m) = automerge::sync::Message::decode(data) else {
                return format!("Sync({doc}, {len} B, undecodable)");
            };
            let authors: Vec<String> = m
                .changes
                .iter()
                .map(|c| match automerge::Change::try_from(c) {
                    Ok(c) => {
                        let a = c.actor_id().to_bytes().to_vec();
                        String::from_utf8_lossy(&a[..a.len().saturating_sub(9)]).into_owned()
                    }
                    Err(_) => format!("chunk of {} B", c.len()),
                })
                .collect();
            format!(
                "Sync({doc}, {len} B, {} heads, {} needs, changes by {authors:?})",
                m.heads.len(),
                m.need.len()
            )
        }
        WireMessage::SyncPart {
            doc, index, total, ..
        } => format!("SyncPart({doc}, {index}/{total}, {len} B)"),
        WireMessage::Ack { bytes } => format!("Ack({bytes})"),
        WireMessage::Refused { doc, reason } => format!("Refused({doc}: {reason})"),
        WireMessage::Error { code, message } => format!("Error({code}: {message})"),
        WireMessage::Revocations { records } => format!("Revocations({}, {len} B)", records.len()),
        WireMessage::Reconcile { ranges } => format!("Reconcile({} ranges, {len} B)", ranges.len()),
        WireMessage::Signatures {
            doc,
            signatures,
            certificates,
        } => format!(
            "Signatures({doc}, {} signatures, {} certificates, {len} B)",
            signatures.len(),
            certificates.len()
        ),
    }
}

/// Opens a peer's store, engine and links layer. Every open takes a new actor tail, as a
/// store does, drawn from the seed, so that every change hash, and so the whole run, replays
/// exactly.
fn open_links(
    p: &SimPeer,
    tail: [u8; 8],
    reconnect: &Backoff,
    seed: u64,
    signing: Option<&(Arc<TestCa>, SignatureRule)>,
) -> Links {
    let signing = signing.filter(|_| !p.unsigned);
    let options = StoreOptions {
        identity: Some(p.claimed.clone()),
        policy: p.store_policy.clone(),
        actor_tail: Some(tail),
        // A device signs with the key of the identity its certificate names, whatever
        // its actor claims.
        signer: signing.map(|(ca, _)| ca.issue(&p.info) as outpost_core::signing::SharedSigner),
        ticket_prefix: p.ticket_prefix.clone(),
        detect_restore: !p.undetected_restore,
        ..StoreOptions::default()
    };
    // A peer with tickets opens by path, as devices do: the store then tells a restored copy
    // of its directory by its files.
    let store = if p.ticket_prefix.is_some() {
        Store::open_with(p.dir.path(), options)
    } else {
        Store::on_db(open_db(p.dir.path()), "", options)
    }
    .expect("a simulated peer's store opens");
    let mut config = EngineConfig::new(p.info.clone(), p.engine_policy.clone());
    if let Some((ca, rule)) = signing {
        config.verifier = Some(ca.verifier());
        config.signatures = *rule;
    }
    if let Some(w) = p.window_bytes {
        config.window_bytes = w;
    }
    let links = LinkConfig {
        reconnect: reconnect.clone(),
        ..LinkConfig::default()
    };
    Links::new(Engine::new(store, config), links, seed)
}

/// Largest encoded message the engine sends: a full fragment plus framing.
pub const MAX_FRAGMENT_MESSAGE: u64 = FRAGMENT_BYTES as u64 + 1024;

/// A size-limited tmpfs the test mounts itself (for disk-full tests), unmounted on drop.
/// Mounting needs root: CI runs as root; elsewhere [`Tmpfs::mount`] returns `None`.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `at` (created if missing); `None` if that is not allowed.
    pub fn mount(at: &std::path::Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Bytes free on it, as `df` reports them.
    pub fn free_bytes(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the free bytes")
    }

    /// Fills what is free with a ballast file (`<mount>/ballast`); returns its size.
    pub fn fill(&self) -> u64 {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.0.join("ballast")).expect("ballast file");
        let block = vec![0x5a_u8; 64 * 1024];
        let mut written = 0;
        while f.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        let _ = f.sync_all();
        written
    }

    /// Removes the ballast file.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.0.join("ballast"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
