//! A deterministic in-memory network of sync engines: `Net::seeded(seed)`.
//!
//! Every peer is a real [`Engine`] over a real sled [`Store`] in its own temporary directory,
//! so that a peer can be restarted from disk. Time is virtual: [`Net::run_until_quiet`]
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
//! - `drop_rate`: probability, per message sent, that the link breaks instead of delivering
//!   it. Both engines get `handle_disconnect`, everything in flight is discarded, and the
//!   link comes back after a random reconnect delay (if it is still wanted and the
//!   partition allows it).
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
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use outpost_core::engine::wire::{WireMessage, FRAGMENT_BYTES};
use outpost_core::engine::DEFAULT_WINDOW_BYTES;
use outpost_core::{
    ChangeHash, DocumentId, Durability, Engine, EngineConfig, Event, PeerId, PeerInfo, Policy,
    Role, Store, StoreOptions, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

/// Environment variable: replay one seed.
pub(crate) const SEED_ENV: &str = "OUTPOST_SIM_SEED";
/// Environment variable: how many seeds a property test runs.
pub(crate) const SEEDS_ENV: &str = "OUTPOST_SIM_SEEDS";
/// Environment variable: print every network event to stderr.
pub(crate) const TRACE_ENV: &str = "OUTPOST_SIM_TRACE";

/// Virtual time at which a simulation starts (ms since the epoch; any value works).
const START_MS: u64 = 1_700_000_000_000;
/// `run_until_quiet` gives up (and fails) after this much virtual time without quiet.
const QUIET_LIMIT_MS: u64 = 30 * 60 * 1000;
/// ... or after this many events.
const QUIET_LIMIT_STEPS: u64 = 2_000_000;

/// How the network misbehaves; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultModel {
    /// What a QUIC link can do: break (and reconnect), and reorder across streams.
    Quic,
    /// Datagram-like loss, duplication and reordering of document messages on a live link.
    Lossy,
}

/// Bytes and messages sent over one direction of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkStats {
    /// Every byte sent.
    pub(crate) bytes: u64,
    /// Every message sent.
    pub(crate) messages: u64,
    /// `Sync` and `SyncPart` messages sent (per-document traffic).
    pub(crate) sync_messages: u64,
    /// Bytes of those.
    pub(crate) sync_bytes: u64,
    /// `Hello` messages sent.
    pub(crate) hellos: u64,
    /// The most document bytes ever sent and not yet acknowledged.
    pub(crate) max_unacked: u64,
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
pub(crate) struct PeerOptions {
    /// The policy its store enforces on local writes (default: the network's policy).
    /// `Policy::allow_all()` simulates a tampered device that writes what it may not.
    pub(crate) store_policy: Option<Policy>,
    /// The policy its engine enforces (default: the network's policy).
    pub(crate) engine_policy: Option<Policy>,
    /// The role its changes claim in their actor ids (default: its certified role). Another
    /// role simulates a tampered device forging authorship.
    pub(crate) claimed_role: Option<String>,
    /// Its flow-control window (default: the engine's).
    pub(crate) window_bytes: Option<u64>,
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
    /// `None` while the peer is stopped.
    engine: Option<Engine>,
}

struct Packet {
    from: PeerId,
    to: PeerId,
    epoch: u64,
    doc: Option<DocumentId>,
    bytes: Vec<u8>,
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
pub(crate) fn doc(name: &str) -> DocumentId {
    name.parse().expect("simulation document names are valid")
}

/// A peer id from a literal.
pub(crate) fn pid(name: &str) -> PeerId {
    name.parse().expect("simulation peer names are valid")
}

/// The replay hint printed with every failure.
pub(crate) fn replay_hint(seed: u64) -> String {
    format!("simulation seed {seed}; replay with {SEED_ENV}={seed} cargo test -p outpost-core --test simulation")
}

/// A simulated network of engines. See the [module documentation](self).
pub(crate) struct Net {
    seed: u64,
    rng: StdRng,
    now: u64,
    policy: Policy,
    peers: BTreeMap<PeerId, SimPeer>,
    /// Links the test asked for; partitions, breaks and restarts take them down for a while.
    wanted: BTreeSet<Link>,
    /// Links that are up, with their session number.
    up: BTreeMap<Link, u64>,
    epoch: u64,
    groups: Option<Vec<BTreeSet<PeerId>>>,
    /// Messages in flight by (delivery time, sequence number).
    queue: BTreeMap<(u64, u64), Packet>,
    /// Delivery time of the last message queued on each stream (FIFO per stream).
    tails: HashMap<(PeerId, PeerId, Option<DocumentId>), u64>,
    seq: u64,
    /// Links to bring back up, by (time, sequence number).
    reconnects: BTreeMap<(u64, u64), Link>,
    model: FaultModel,
    drop_rate: f64,
    dup_rate: f64,
    reorder: bool,
    reorder_within: bool,
    delay: (u64, u64),
    reconnect_ms: (u64, u64),
    stats: BTreeMap<(PeerId, PeerId), LinkStats>,
    /// Document bytes sent and not yet acknowledged, per direction.
    unacked: HashMap<(PeerId, PeerId), u64>,
    /// Errors returned by `handle_message`.
    errors: Vec<String>,
    /// (peer, document) pairs excluded from convergence checks (a tampered device's copy).
    exempt: BTreeSet<(PeerId, DocumentId)>,
    trace: bool,
    /// Links broken by faults, for reports.
    pub(crate) breaks: u64,
}

impl Net {
    /// An empty network whose delays and faults all derive from `seed`. No faults, 1 ms
    /// delay, the default policy.
    pub(crate) fn seeded(seed: u64) -> Net {
        Net {
            seed,
            rng: StdRng::seed_from_u64(seed),
            now: START_MS,
            policy: Policy::default(),
            peers: BTreeMap::new(),
            wanted: BTreeSet::new(),
            up: BTreeMap::new(),
            epoch: 0,
            groups: None,
            queue: BTreeMap::new(),
            tails: HashMap::new(),
            seq: 0,
            reconnects: BTreeMap::new(),
            model: FaultModel::Quic,
            drop_rate: 0.0,
            dup_rate: 0.0,
            reorder: false,
            reorder_within: false,
            delay: (1, 1),
            reconnect_ms: (50, 500),
            stats: BTreeMap::new(),
            unacked: HashMap::new(),
            errors: Vec::new(),
            exempt: BTreeSet::new(),
            trace: std::env::var_os(TRACE_ENV).is_some(),
            breaks: 0,
        }
    }

    /// The seed.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The policy of peers added from now on.
    pub(crate) fn policy(&mut self, policy: Policy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// The fault model (default [`FaultModel::Quic`]).
    pub(crate) fn model(&mut self, model: FaultModel) -> &mut Self {
        self.model = model;
        self
    }

    /// Per message: the probability that the link breaks (Quic) or the message is lost (Lossy).
    pub(crate) fn drop_rate(&mut self, p: f64) -> &mut Self {
        self.drop_rate = p;
        self
    }

    /// Per document message: the probability that it is delivered twice (Lossy only).
    pub(crate) fn dup_rate(&mut self, p: f64) -> &mut Self {
        self.dup_rate = p;
        self
    }

    /// Whether messages of different streams (documents) of a link may overtake each other.
    pub(crate) fn reorder(&mut self, on: bool) -> &mut Self {
        self.reorder = on;
        self
    }

    /// Whether document messages may overtake each other within their stream (Lossy only).
    pub(crate) fn reorder_within_streams(&mut self, on: bool) -> &mut Self {
        self.reorder_within = on;
        self
    }

    /// One-way delay of each message, uniform in `min..=max` milliseconds.
    pub(crate) fn delay(&mut self, min: u64, max: u64) -> &mut Self {
        self.delay = (min, max.max(min));
        self
    }

    /// How long a broken link takes to come back, uniform in `min..=max` milliseconds.
    pub(crate) fn reconnect_delay(&mut self, min: u64, max: u64) -> &mut Self {
        self.reconnect_ms = (min, max.max(min));
        self
    }

    /// No more faults: no drops, no duplicates, and back to the QUIC model (delays and
    /// reordering across streams stay).
    pub(crate) fn calm(&mut self) -> &mut Self {
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
    pub(crate) fn add_peer(&mut self, site: &str, peer: &str, role: &str) -> PeerId {
        self.add_peer_with(site, peer, role, PeerOptions::default())
    }

    /// Adds a peer that deviates from an ordinary device as `options` say.
    pub(crate) fn add_peer_with(
        &mut self,
        site: &str,
        peer: &str,
        role: &str,
        options: PeerOptions,
    ) -> PeerId {
        let info = PeerInfo::parse(site, peer, role).expect("simulation identities are valid");
        let claimed = PeerInfo::parse(site, peer, options.claimed_role.as_deref().unwrap_or(role))
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
            engine: None,
        };
        let tail: [u8; 8] = self.rng.random();
        p.engine = Some(open_engine(&p, Some(tail)));
        self.peers.insert(id.clone(), p);
        id
    }

    /// All peers.
    pub(crate) fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.keys().cloned().collect()
    }

    /// A peer's role.
    pub(crate) fn role(&self, peer: &PeerId) -> Role {
        self.sim(peer).info.role.clone()
    }

    fn sim(&self, peer: &PeerId) -> &SimPeer {
        self.peers
            .get(peer)
            .unwrap_or_else(|| panic!("no peer {peer} in the simulation"))
    }

    /// A running peer's engine.
    pub(crate) fn engine(&self, peer: &PeerId) -> &Engine {
        self.sim(peer)
            .engine
            .as_ref()
            .unwrap_or_else(|| panic!("peer {peer} is stopped"))
    }

    fn engine_mut(&mut self, peer: &PeerId) -> &mut Engine {
        self.peers
            .get_mut(peer)
            .and_then(|p| p.engine.as_mut())
            .unwrap_or_else(|| panic!("peer {peer} is stopped or unknown"))
    }

    /// Drains a running peer's engine events.
    pub(crate) fn events(&mut self, peer: &PeerId) -> Vec<Event> {
        let e = self.engine_mut(peer);
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    /// A running peer's store.
    pub(crate) fn store(&self, peer: &PeerId) -> &Store {
        self.engine(peer).store()
    }

    /// Whether the peer is running.
    pub(crate) fn is_running(&self, peer: &PeerId) -> bool {
        self.sim(peer).engine.is_some()
    }

    /// Stops a peer: its links go down and its engine and store are dropped (sled flushes on
    /// drop, like a clean shutdown).
    pub(crate) fn stop(&mut self, peer: &PeerId) {
        if !self.is_running(peer) {
            return;
        }
        let links: Vec<Link> = self
            .up
            .keys()
            .filter(|(a, b)| a == peer || b == peer)
            .cloned()
            .collect();
        for l in links {
            self.take_down(&l, Some(peer));
        }
        self.log(|| format!("stop {peer}"));
        // Engine owns the only Store handle, which owns the only sled::Db handle.
        self.peers.get_mut(peer).expect("peer checked above").engine = None;
    }

    /// Starts a stopped peer from its directory and brings its wanted links back up.
    pub(crate) fn start(&mut self, peer: &PeerId) {
        if self.is_running(peer) {
            return;
        }
        self.log(|| format!("start {peer}"));
        let p = self.peers.get_mut(peer).expect("peer checked above");
        p.engine = Some(open_engine(p, None));
        self.bring_up_all();
    }

    /// Stops and starts a peer: a restart from disk.
    pub(crate) fn restart(&mut self, peer: &PeerId) {
        self.stop(peer);
        self.start(peer);
    }

    // ---- links ----

    /// Wants a link between `a` and `b` and brings it up if the partition allows.
    pub(crate) fn connect(&mut self, a: &PeerId, b: &PeerId) {
        assert_ne!(a, b, "a peer does not connect to itself");
        self.wanted.insert(link(a, b));
        self.bring_up_all();
    }

    /// Takes the link between `a` and `b` down for good (until `connect`).
    pub(crate) fn disconnect(&mut self, a: &PeerId, b: &PeerId) {
        let l = link(a, b);
        self.wanted.remove(&l);
        if self.up.contains_key(&l) {
            self.take_down(&l, None);
        }
    }

    /// Whether the link between `a` and `b` is up.
    pub(crate) fn is_up(&self, a: &PeerId, b: &PeerId) -> bool {
        self.up.contains_key(&link(a, b))
    }

    /// Splits the network: only peers of the same group can talk. Peers named in no group
    /// form one more group together.
    pub(crate) fn partition(&mut self, groups: &[&[PeerId]]) {
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
        let cut: Vec<Link> = self
            .up
            .keys()
            .filter(|(a, b)| !self.allowed(a, b))
            .cloned()
            .collect();
        for l in cut {
            self.take_down(&l, None);
        }
    }

    /// Ends every session: each up link goes down and comes straight back up.
    pub(crate) fn reconnect_all(&mut self) {
        let links: Vec<Link> = self.up.keys().cloned().collect();
        for l in links {
            self.take_down(&l, None);
            self.bring_up(&l);
        }
    }

    /// Ends the partition and brings every wanted link of running peers back up now.
    pub(crate) fn heal(&mut self) {
        self.log(|| "heal".to_string());
        self.groups = None;
        self.reconnects.clear();
        self.bring_up_all();
    }

    fn allowed(&self, a: &PeerId, b: &PeerId) -> bool {
        match &self.groups {
            None => true,
            Some(gs) => gs.iter().any(|g| g.contains(a) && g.contains(b)),
        }
    }

    fn bring_up_all(&mut self) {
        let wanted: Vec<Link> = self.wanted.iter().cloned().collect();
        for l in wanted {
            self.bring_up(&l);
        }
    }

    fn bring_up(&mut self, l: &Link) {
        let (a, b) = l;
        if self.up.contains_key(l)
            || !self.wanted.contains(l)
            || !self.allowed(a, b)
            || !self.is_running(a)
            || !self.is_running(b)
        {
            return;
        }
        self.epoch += 1;
        self.up.insert(l.clone(), self.epoch);
        self.unacked.remove(&(a.clone(), b.clone()));
        self.unacked.remove(&(b.clone(), a.clone()));
        let now = Timestamp(self.now);
        let (ai, bi) = (self.sim(a).info.clone(), self.sim(b).info.clone());
        self.log(|| format!("link up {a} <-> {b}"));
        self.engine_mut(a).handle_connect(bi, now);
        self.engine_mut(b).handle_connect(ai, now);
    }

    /// Takes a link down; both running ends (but `gone`, which is stopping) see a disconnect.
    fn take_down(&mut self, l: &Link, gone: Option<&PeerId>) {
        if self.up.remove(l).is_none() {
            return;
        }
        self.log(|| format!("link down {} <-> {}", l.0, l.1));
        let now = Timestamp(self.now);
        let (a, b) = l;
        for (me, other) in [(a, b), (b, a)] {
            if Some(me) != gone && self.is_running(me) {
                self.engine_mut(me).handle_disconnect(other, now);
            }
            self.unacked.remove(&(me.clone(), other.clone()));
        }
    }

    /// A fault broke a link: it comes back after a reconnect delay.
    fn break_link(&mut self, l: &Link) {
        self.breaks += 1;
        self.take_down(l, None);
        let after = self
            .rng
            .random_range(self.reconnect_ms.0..=self.reconnect_ms.1);
        self.seq += 1;
        self.reconnects
            .insert((self.now + after, self.seq), l.clone());
    }

    // ---- writes ----

    /// Runs `f` on a peer's store, then tells its engine that `doc` changed.
    pub(crate) fn write<T>(
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
        self.engine_mut(peer).handle_local_change(doc, now);
        out
    }

    /// Writes `value` at `path` of `doc` on `peer`.
    pub(crate) fn put(&mut self, peer: &PeerId, doc: &DocumentId, path: &str, value: Json) {
        self.write(peer, doc, |s, d| s.put(d, path, value, Durability::Fast));
    }

    /// Adds `delta` to the counter at `path` of `doc` on `peer`.
    pub(crate) fn increment(&mut self, peer: &PeerId, doc: &DocumentId, path: &str, delta: i64) {
        self.write(peer, doc, |s, d| {
            s.increment(d, path, delta, Durability::Fast)
        });
    }

    /// Reads `path` of `doc` on `peer` (`None` if the document or the value is absent).
    pub(crate) fn get(&self, peer: &PeerId, doc: &DocumentId, path: &str) -> Option<Json> {
        self.store(peer).get(doc, path).ok().flatten()
    }

    /// Heads of `doc` on `peer`, sorted.
    pub(crate) fn heads(&self, peer: &PeerId, doc: &DocumentId) -> Vec<ChangeHash> {
        let mut h = self
            .store(peer)
            .heads(doc)
            .expect("heads of a document can be read");
        h.sort();
        h
    }

    /// Excludes `peer`'s copy of `doc` from convergence checks (a tampered device keeps its
    /// refused change, so its copy never matches).
    pub(crate) fn exempt(&mut self, peer: &PeerId, doc: &DocumentId) {
        self.exempt.insert((peer.clone(), doc.clone()));
    }

    // ---- time ----

    /// Virtual now.
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp(self.now)
    }

    /// Moves every transmit of running engines onto the network.
    fn pump_all(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().cloned().collect();
        for id in ids {
            while let Some(t) = self
                .peers
                .get_mut(&id)
                .and_then(|p| p.engine.as_mut())
                .and_then(Engine::poll_transmit)
            {
                self.send(&id, t.to, t.doc, t.bytes);
            }
        }
    }

    fn send(&mut self, from: &PeerId, to: PeerId, doc: Option<DocumentId>, bytes: Vec<u8>) {
        let l = link(from, &to);
        let Some(&epoch) = self.up.get(&l) else {
            panic!(
                "{from} sent to {to} without a link (the engine kept a disconnected peer); {}",
                replay_hint(self.seed)
            );
        };
        let msg = WireMessage::decode(&bytes).expect("engines send valid wire messages");
        let is_sync = matches!(msg, WireMessage::Sync { .. } | WireMessage::SyncPart { .. });
        let key = (from.clone(), to.clone());
        {
            let st = self.stats.entry(key.clone()).or_default();
            st.bytes += bytes.len() as u64;
            st.messages += 1;
            if is_sync {
                st.sync_messages += 1;
                st.sync_bytes += bytes.len() as u64;
            }
            if matches!(msg, WireMessage::Hello { .. }) {
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
            WireMessage::Sync { .. } | WireMessage::SyncPart { .. } | WireMessage::Refused { .. }
        );
        let copies = match self.model {
            FaultModel::Quic => {
                if self.drop_rate > 0.0 && self.rng.random_bool(self.drop_rate) {
                    self.log(|| format!("link breaks {from} <-> {to}"));
                    self.break_link(&l);
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
            let mut at = self.now + self.rng.random_range(self.delay.0..=self.delay.1);
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
                    epoch,
                    doc: doc.clone(),
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn deliver(&mut self, p: Packet) {
        let l = link(&p.from, &p.to);
        if self.up.get(&l) != Some(&p.epoch) {
            // Sent on a session that has ended: lost with the connection.
            return;
        }
        let msg = WireMessage::decode(&p.bytes).expect("engines send valid wire messages");
        if let WireMessage::Ack { bytes } = msg {
            let u = self
                .unacked
                .entry((p.to.clone(), p.from.clone()))
                .or_default();
            *u = u.saturating_sub(bytes);
        }
        self.log(|| {
            format!(
                "recv {} -> {} {}",
                p.from,
                p.to,
                describe(&msg, p.bytes.len())
            )
        });
        let now = Timestamp(self.now);
        if let Err(e) = self
            .engine_mut(&p.to)
            .handle_message(&p.from, &p.bytes, now)
        {
            self.log(|| format!("  error: {e}"));
            self.errors.push(format!("{} from {}: {e}", p.to, p.from));
        }
    }

    /// Delivers messages, fires engine timers and reconnects links, advancing virtual time,
    /// until nothing is in flight and no timer is pending. Fails if that takes more than
    /// 30 virtual minutes (a livelock).
    pub(crate) fn run_until_quiet(&mut self) {
        self.run(None);
    }

    /// Like [`Net::run_until_quiet`] but stops at `now + ms` (virtual time moves there).
    pub(crate) fn advance(&mut self, ms: u64) {
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
            let next_reconnect = self.reconnects.keys().next().map(|k| k.0);
            let next_timer = self
                .peers
                .values()
                .filter_map(|p| p.engine.as_ref()?.poll_timeout())
                .map(|t| t.as_millis())
                .min();
            let Some(next) = [next_msg, next_reconnect, next_timer]
                .into_iter()
                .flatten()
                .min()
            else {
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
            } else if next_reconnect == Some(next) {
                let (_, l) = self
                    .reconnects
                    .pop_first()
                    .expect("reconnects checked non-empty");
                self.bring_up(&l);
            } else {
                let now = Timestamp(self.now);
                for p in self.peers.values_mut() {
                    if let Some(e) = p.engine.as_mut() {
                        if e.poll_timeout().is_some_and(|t| t <= now) {
                            e.handle_timeout(now);
                        }
                    }
                }
            }
        }
    }

    // ---- observations ----

    /// Statistics of every direction of every link since the last reset.
    pub(crate) fn total_stats(&self) -> LinkStats {
        let mut t = LinkStats::default();
        for s in self.stats.values() {
            t.add(s);
        }
        t
    }

    /// Statistics of messages `from` sent to `to`.
    pub(crate) fn link_stats(&self, from: &PeerId, to: &PeerId) -> LinkStats {
        self.stats
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// Forgets the statistics.
    pub(crate) fn reset_stats(&mut self) {
        self.stats.clear();
    }

    /// Errors the engines returned from `handle_message`.
    pub(crate) fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Every document any running peer holds.
    pub(crate) fn documents(&self) -> BTreeSet<DocumentId> {
        self.peers
            .values()
            .filter_map(|p| p.engine.as_ref())
            .flat_map(|e| e.store().documents().expect("documents can be listed"))
            .collect()
    }

    /// Whether `peer`'s role may read `doc` under the network's policy.
    pub(crate) fn policy_may_read(&self, peer: &PeerId, doc: &DocumentId) -> bool {
        self.policy
            .may_read(&self.sim(peer).info.role, doc.context())
    }

    /// The running peers that may read `doc` under their engine's policy, minus exemptions.
    pub(crate) fn readers(&self, doc: &DocumentId) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(id, p)| {
                p.engine.is_some()
                    && self.policy.may_read(&p.info.role, doc.context())
                    && !self.exempt.contains(&((*id).clone(), doc.clone()))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Asserts that every peer that may read a document has the same heads and the same
    /// JSON value of it. All peers must be running.
    pub(crate) fn assert_converged(&self) {
        let mut report = String::new();
        for (id, p) in &self.peers {
            if p.engine.is_none() {
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
    pub(crate) fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
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
    }
}

/// Opens a peer's store and engine. On the first open, the store's actor-id tail (which a
/// store draws at random and keeps in its `meta` tree under `actor/<role>/<peer>`) is written
/// from the seed first, so that every change hash, and so the whole run, replays exactly.
/// (This relies on that layout: if it changes, runs stay correct but stop replaying bit for
/// bit.)
fn open_engine(p: &SimPeer, first_tail: Option<[u8; 8]>) -> Engine {
    let config = sled::Config::new()
        .path(p.dir.path())
        .flush_every_ms(Some(100));
    // sled releases the lock of a dropped database from a background thread (see
    // `Store::open_with`), so a restart may find it still held for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let db = loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => break other.expect("a simulated peer's database opens"),
        }
    };
    if let Some(tail) = first_tail {
        let key = format!("actor/{}/{}", p.claimed.role, p.claimed.peer);
        db.open_tree("meta")
            .and_then(|meta| meta.insert(key.as_bytes(), &tail))
            .expect("sled accepts a record");
    }
    let store = Store::on_db(
        db,
        "",
        StoreOptions {
            identity: Some(p.claimed.clone()),
            policy: p.store_policy.clone(),
            ..StoreOptions::default()
        },
    )
    .expect("a simulated peer's store opens");
    let mut config = EngineConfig::new(p.info.clone(), p.engine_policy.clone());
    if let Some(w) = p.window_bytes {
        config.window_bytes = w;
    }
    Engine::new(store, config)
}

/// Largest encoded message the engine sends: a full fragment plus framing.
pub(crate) const MAX_FRAGMENT_MESSAGE: u64 = FRAGMENT_BYTES as u64 + 1024;
