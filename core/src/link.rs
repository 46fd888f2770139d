//! The life of links around the sync engine, sans IO.
//!
//! [`Links`] owns the [`Engine`] and decides everything about connections that does not need
//! a socket: which of two connections with one peer is kept, when a peer counts as connected
//! or gone, when to dial a target again (with [`Backoff`]), what a cut link refuses, which
//! bytes go to which connection. Its driver (the transport's runner, or the simulation of
//! `outpost-testkit`) feeds it inputs and carries out its outputs:
//!
//! | input | when |
//! |---|---|
//! | [`Links::handle_connected`] | a connection completed its handshake (with who dialed it) |
//! | [`Links::handle_frame`] | a frame arrived on a connection |
//! | [`Links::handle_closed`] | a connection closed (with the peer's close code, if any) |
//! | [`Links::handle_dial_failed`] | a dial of a target failed or timed out |
//! | [`Links::handle_local_change`] | the app changed a document |
//! | [`Links::cut`], [`Links::restore`], [`Links::disconnect`], [`Links::close_where`] | the app or an operator acts on links |
//! | [`Links::add_target`], [`Links::pause_target`], [`Links::resume_target`] | dial targets |
//! | [`Links::handle_timeout`] | the time [`Links::poll_timeout`] asked for has come |
//!
//! Outputs are drained with [`Links::poll_output`] ([`Output::Send`], [`Output::Close`],
//! [`Output::Dial`]) and [`Links::poll_event`] (one [`Event`] type for links and sync).
//! Time is always a parameter; randomness (dial jitter) comes from a seeded rng.
//!
//! # One connection per pair of peers
//!
//! When two peers dial each other at the same time, both end up with two connections. Each
//! side keeps the connection **dialed by the smaller peer** (ordered by peer id, then site)
//! and closes the other with [`CloseCode::Duplicate`]; both sides apply the same rule, so they
//! keep the same one. A new connection dialed by the same side as the existing one replaces
//! it (the peer redialed, so the old one is dead): a cloud, which never dials, therefore
//! always keeps a device's newest connection. Each side runs one engine session per kept
//! connection, from its first frame to its last: a side that had the kept connection first
//! keeps its session, a side that replaces its connection with the kept one restarts its
//! session there (from the persisted sync state) before it reads a frame of it. When the peer closes *our* current
//! connection as a duplicate, the one it kept is about to arrive: the peer stays connected
//! for a grace period ([`LinkConfig::replacement_grace_ms`]), so apps see no flap.

mod backoff;
mod close;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use self::backoff::Backoff;
pub use self::close::CloseCode;
use crate::engine::wire::Protocol;
use crate::engine::{HeldWait, SyncStatus};
use crate::{AuditEntry, AuditKind};
use crate::{DocumentId, Engine, EngineError, Event, PeerId, PeerInfo, SiteId, Timestamp};

/// Identifies one connection for its whole life. The driver chooses it; it must not be reused
/// while the links layer may still name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Something the driver knows how to dial, e.g. `10.0.0.20:7733` or `pos-1.local:7733`.
/// The links layer only schedules dials; resolving and connecting are the driver's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(String);

impl Target {
    /// A target named by `address`.
    pub fn new(address: impl Into<String>) -> Target {
        Target(address.into())
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Timing rules of the links layer.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Delay between dials of a target (default 100 ms doubling to 10 s, with jitter).
    pub reconnect: Backoff,
    /// How long a peer that closed our connection as a duplicate stays connected while its
    /// other connection arrives (default 2 s).
    pub replacement_grace_ms: u64,
    /// A dialed link that stayed up this long resets the target's backoff when it drops, so
    /// it is redialed promptly (default 5 s).
    pub stable_after_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            reconnect: Backoff::default(),
            replacement_grace_ms: 2_000,
            stable_after_ms: 5_000,
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` on `conn`: on the stream of `doc`, or the control stream for `None`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The document (stream) the message belongs to.
        doc: Option<DocumentId>,
        /// One engine message.
        bytes: Vec<u8>,
    },
    /// Close `conn` with `code`. The links layer already forgot it: do not report its
    /// closing back (a report is ignored).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        code: CloseCode,
    },
    /// Dial `target`, then report [`Links::handle_connected`] with it, or
    /// [`Links::handle_dial_failed`].
    Dial {
        /// What to dial.
        target: Target,
    },
}

#[derive(Clone, Debug)]
struct Conn {
    info: PeerInfo,
    target: Option<Target>,
    opened: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetState {
    /// Dial at (or after) this time, when allowed.
    Waiting(Timestamp),
    Dialing,
    Connected(ConnId),
    /// The target is this peer itself: never dialed again.
    Disabled,
}

#[derive(Clone, Debug)]
struct TargetEntry {
    state: TargetState,
    backoff: Backoff,
    /// The peer behind the target, once a dial reached it.
    peer: Option<PeerId>,
}

/// The links of one peer and its engine. See the [module documentation](self).
pub struct Links {
    engine: Engine,
    config: LinkConfig,
    rng: StdRng,
    conns: BTreeMap<ConnId, Conn>,
    /// The connection each connected peer uses.
    current: BTreeMap<PeerId, ConnId>,
    /// Peers that closed our connection as a duplicate: connected until the deadline.
    replacing: BTreeMap<PeerId, (PeerInfo, Timestamp)>,
    cut: BTreeSet<PeerId>,
    targets: BTreeMap<Target, TargetEntry>,
    /// Targets not to dial (an address may be paused before it is added).
    paused: BTreeSet<Target>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    stopped: bool,
    /// Peers not connected now that were seen this session: since when, and why.
    offline: BTreeMap<PeerId, (Timestamp, String)>,
    /// Peers refused or closed as revoked.
    revoked: BTreeSet<PeerId>,
    /// Peers that refused this device as revoked (told once each, see `handle_closed`).
    refused_us: BTreeSet<PeerId>,
}

/// Orders peers for the duplicate-connection rule.
fn peer_key(p: &PeerInfo) -> (&PeerId, &SiteId) {
    (&p.peer, &p.site)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Links {
    /// The links of `engine`; `seed` seeds the dial jitter (pass a random one in production,
    /// a fixed one in simulations).
    pub fn new(engine: Engine, config: LinkConfig, seed: u64) -> Links {
        Links {
            engine,
            config,
            rng: StdRng::seed_from_u64(seed),
            conns: BTreeMap::new(),
            current: BTreeMap::new(),
            replacing: BTreeMap::new(),
            cut: BTreeSet::new(),
            targets: BTreeMap::new(),
            paused: BTreeSet::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            stopped: false,
            offline: BTreeMap::new(),
            revoked: BTreeSet::new(),
            refused_us: BTreeSet::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Who this peer is.
    pub fn local(&self) -> &PeerInfo {
        self.engine.local()
    }

    /// The sync status of every known peer and document, with why and since when each peer
    /// that is not connected is offline, and which are revoked.
    pub fn status(&self) -> SyncStatus {
        self.with_links(self.engine.status())
    }

    /// [`Links::status`] with every document held here, its size on disk and its retention
    /// at `now` (see [`Engine::status_at`]).
    pub fn status_at(&self, now: Timestamp) -> SyncStatus {
        self.with_links(self.engine.status_at(now))
    }

    fn with_links(&self, mut status: SyncStatus) -> SyncStatus {
        for p in &mut status.peers {
            p.revoked = self.revoked.contains(&p.peer);
            if !p.connected {
                if let Some((since, why)) = self.offline.get(&p.peer) {
                    p.offline_since = Some(*since);
                    p.offline_reason = Some(why.clone());
                }
            }
        }
        status
    }

    /// The driver refused a connection before the links layer saw it (its admission rules:
    /// a revoked certificate, another site). Recorded for status; a revoked peer leaves the
    /// backlog.
    pub fn handle_refused(&mut self, peer: &PeerInfo, code: CloseCode, now: Timestamp) {
        if code == CloseCode::Revoked {
            self.revoked.insert(peer.peer.clone());
        }
        self.note_offline(&peer.peer, now, format!("refused: {code}"));
        self.audit(
            AuditEntry::new(now, AuditKind::LinkRefused)
                .peer(peer)
                .detail(format!("refused: {code}")),
        );
    }

    /// Records `entry` in the store's audit trail; a failure is reported as
    /// [`Event::StorageFailed`] and never stops a link.
    fn audit(&mut self, entry: AuditEntry) {
        if let Err(e) = self.engine.store().audit().record(entry) {
            self.events.push_back(Event::StorageFailed {
                peer: None,
                doc: None,
                error: format!("cannot write the audit trail: {e}"),
            });
        }
    }

    fn audit_closed(
        &mut self,
        info: &PeerInfo,
        dialed_by_us: bool,
        detail: String,
        now: Timestamp,
    ) {
        let mut entry = AuditEntry::new(now, AuditKind::LinkClosed)
            .peer(info)
            .detail(detail);
        entry.dialed_by_us = Some(dialed_by_us);
        self.audit(entry);
    }

    /// Marks `peer` revoked (a deny-list entry): it leaves the backlog in status.
    pub fn mark_revoked(&mut self, peer: &PeerId) {
        self.revoked.insert(peer.clone());
    }

    fn note_offline(&mut self, peer: &PeerId, now: Timestamp, why: String) {
        if self.is_connected(peer) {
            return;
        }
        match self.offline.get_mut(peer) {
            // Keep the first time; the latest reason.
            Some(entry) => entry.1 = why,
            None => {
                self.offline.insert(peer.clone(), (now, why));
            }
        }
    }

    /// The peers connected now (including one whose replacement connection is on its way).
    pub fn connected(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .current
            .values()
            .filter_map(|c| self.conns.get(c))
            .map(|c| c.info.clone())
            .collect();
        out.extend(self.replacing.values().map(|(info, _)| info.clone()));
        out.sort_by(|a, b| peer_key(a).cmp(&peer_key(b)));
        out
    }

    /// Whether `peer` counts as connected.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.current.contains_key(peer) || self.replacing.contains_key(peer)
    }

    /// Whether the link with `peer` is cut.
    pub fn is_cut(&self, peer: &PeerId) -> bool {
        self.cut.contains(peer)
    }

    /// The connection `peer` uses now.
    pub fn connection_of(&self, peer: &PeerId) -> Option<ConnId> {
        self.current.get(peer).copied()
    }

    // ---- inputs ----

    /// Adds a target to dial now and redial whenever its link is down; returns whether it
    /// was new.
    pub fn add_target(&mut self, target: Target, now: Timestamp) -> bool {
        if self.stopped || self.targets.contains_key(&target) {
            return false;
        }
        let mut backoff = self.config.reconnect.clone();
        backoff.reset();
        self.targets.insert(
            target,
            TargetEntry {
                state: TargetState::Waiting(now),
                backoff,
                peer: None,
            },
        );
        true
    }

    /// Stops dialing `target` (an existing connection stays up).
    pub fn pause_target(&mut self, target: &Target) {
        self.paused.insert(target.clone());
    }

    /// Resumes dialing a paused target, right away.
    pub fn resume_target(&mut self, target: &Target, now: Timestamp) {
        self.paused.remove(target);
        if let Some(t) = self.targets.get_mut(target) {
            t.backoff.reset();
            if let TargetState::Waiting(_) = t.state {
                t.state = TargetState::Waiting(now);
            }
        }
    }

    /// Stops dialing `target` for good and closes its connection, if it has one (the app
    /// removed a peer); returns whether it was a target.
    pub fn remove_target(&mut self, target: &Target, now: Timestamp) -> bool {
        self.paused.remove(target);
        match self.targets.remove(target) {
            None => false,
            Some(t) => {
                if let TargetState::Connected(conn) = t.state {
                    self.close(conn, CloseCode::Disconnected, now);
                }
                true
            }
        }
    }

    /// Dials every target whose link is down now, forgetting their backoff (the app came
    /// back to the foreground, the network changed).
    pub fn redial_now(&mut self, now: Timestamp) {
        for t in self.targets.values_mut() {
            if let TargetState::Waiting(_) = t.state {
                t.backoff.reset();
                t.state = TargetState::Waiting(now);
            }
        }
    }

    /// A dial of `target` failed (no answer, refused handshake, timeout).
    pub fn handle_dial_failed(&mut self, target: &Target, now: Timestamp) {
        if let Some(peer) = self.targets.get(target).and_then(|t| t.peer.clone()) {
            let keep = self
                .offline
                .get(&peer)
                .is_some_and(|(_, why)| why.starts_with("refused") || why.contains("revoked"));
            if !keep {
                self.note_offline(&peer, now, format!("not reachable at {target}"));
            }
        }
        self.schedule_redial(target, now, None);
    }

    /// A connection completed its handshake. `info` must come from the verified certificate;
    /// `dialed` names the target if this side dialed it, `None` if it was accepted.
    pub fn handle_connected(
        &mut self,
        conn: ConnId,
        info: PeerInfo,
        dialed: Option<Target>,
        now: Timestamp,
    ) {
        self.handle_connected_speaking(conn, info, Protocol::CURRENT, dialed, now)
    }

    /// A connection that speaks `protocol` (negotiated by the transport) completed its
    /// handshake; see [`Links::handle_connected`].
    pub fn handle_connected_speaking(
        &mut self,
        conn: ConnId,
        info: PeerInfo,
        protocol: Protocol,
        dialed: Option<Target>,
        now: Timestamp,
    ) {
        if self.stopped {
            self.outputs.push_back(Output::Close {
                conn,
                code: CloseCode::Shutdown,
            });
            return;
        }
        let dialed_by_us = dialed.is_some();
        if let Some(t) = dialed.as_ref().and_then(|t| self.targets.get_mut(t)) {
            t.peer = Some(info.peer.clone());
            t.state = TargetState::Dialing;
        }
        let local = self.engine.local().clone();
        if info.peer == local.peer {
            tracing::warn!(peer = %info, "refusing a connection to a peer with our own id");
            if let Some(t) = dialed.as_ref().and_then(|t| self.targets.get_mut(t)) {
                tracing::warn!(target = %dialed.as_ref().map(Target::as_str).unwrap_or(""), "this target is this peer itself; not dialing it again");
                t.state = TargetState::Disabled;
            }
            self.refuse(conn, info, CloseCode::BadIdentity, now);
            return;
        }
        if self.engine.is_revoked(&info.site, &info.peer) {
            tracing::warn!(peer = %info, "refusing connection: the device is revoked");
            self.revoked.insert(info.peer.clone());
            self.refuse_dialed(conn, info, CloseCode::Revoked, dialed, now);
            return;
        }
        if self.cut.contains(&info.peer) {
            tracing::info!(peer = %info, "refusing connection: link is cut");
            self.refuse_dialed(conn, info, CloseCode::LinkCut, dialed, now);
            return;
        }
        let preferred = |dialed_by_us: bool| {
            let we_are_smaller = peer_key(&local) < peer_key(&info);
            dialed_by_us == we_are_smaller
        };
        if let Some(existing_id) = self.current.get(&info.peer).copied() {
            let Some(existing) = self.conns.get(&existing_id).cloned() else {
                self.current.remove(&info.peer);
                return self.handle_connected_speaking(conn, info, protocol, dialed, now);
            };
            if existing.info.site != info.site {
                // The engine keys peers by id alone: two sites' `pos-1` cannot share it.
                tracing::warn!(
                    peer = %info,
                    connected = %existing.info,
                    "refusing connection: a peer with the same id from another site is connected; \
                     give devices fleet-unique ids or run one engine per site"
                );
                self.refuse_dialed(conn, info, CloseCode::PeerIdInUse, dialed, now);
                return;
            }
            let keep_existing = preferred(existing.target.is_some())
                && !preferred(dialed_by_us)
                && existing.info == info;
            if keep_existing {
                // Our session has run on the kept connection since it opened, and so has the
                // peer's: it either had this connection first too, or it replaces its own
                // and starts its session on ours, before any of our frames on it reach it.
                // Restarting ours here instead split one connection into two sessions on
                // our side only: the peer's answers to our first session (a refusal, the
                // changes its signatures had come ahead of) reached our second, which knew
                // nothing of them, and the link stopped taking our changes for the session.
                tracing::debug!(peer = %info, "closing duplicate connection, keeping the existing one");
                self.outputs.push_back(Output::Close {
                    conn,
                    code: CloseCode::Duplicate,
                });
                if let Some(t) = dialed {
                    self.schedule_redial(&t, now, None);
                }
                return;
            }
            tracing::debug!(peer = %info, "replacing the existing connection");
            // The session restarts on the new connection, from the persisted sync state; the
            // peer's starts there too (it is new to the peer as well, or the peer replaces
            // its own with it).
            self.engine.handle_disconnect(&info.peer, now);
            self.engine
                .handle_connect_speaking(info.clone(), protocol, now);
            self.conns.remove(&existing_id);
            self.outputs.push_back(Output::Close {
                conn: existing_id,
                code: CloseCode::Duplicate,
            });
            if let Some(t) = existing.target {
                self.schedule_redial(&t, now, Some(existing.opened));
            }
            self.insert_conn(conn, info, dialed, now);
            return;
        }
        let replacing = self.replacing.remove(&info.peer).is_some();
        if !replacing {
            tracing::info!(peer = %info, dialed_by_us, "peer connected");
        }
        self.offline.remove(&info.peer);
        self.insert_conn(conn, info.clone(), dialed, now);
        self.engine
            .handle_connect_speaking(info.clone(), protocol, now);
        if !replacing {
            let mut entry = AuditEntry::new(now, AuditKind::LinkOpened).peer(&info);
            entry.dialed_by_us = Some(dialed_by_us);
            self.audit(entry);
            self.events.push_back(Event::PeerConnected(info));
        }
    }

    /// A frame arrived on `conn`. Frames of connections that were replaced or closed are
    /// dropped. A message the engine cannot use is reported (and logged); the link stays up.
    pub fn handle_frame(
        &mut self,
        conn: ConnId,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let Some(c) = self.conns.get(&conn) else {
            tracing::trace!(%conn, "dropping a frame of a closed connection");
            return Ok(());
        };
        let peer = c.info.peer.clone();
        if self.current.get(&peer) != Some(&conn) {
            tracing::trace!(%peer, "dropping a frame of a replaced connection");
            return Ok(());
        }
        let result = self.engine.handle_message(&peer, bytes, now);
        if let Err(error) = &result {
            tracing::warn!(%peer, %error, "message not applied");
        }
        self.apply_revocations(now);
        result
    }

    /// Takes a revocation signed by the fleet CA (see [`Engine::learn_revocation`]) and
    /// closes the links of the device it names.
    pub fn learn_revocation(
        &mut self,
        record: crate::revocation::SignedRevocation,
        now: Timestamp,
    ) -> Result<bool, crate::engine::RevocationRefused> {
        let result = self.engine.learn_revocation(record, now);
        self.apply_revocations(now);
        result
    }

    /// Closes the links of devices revoked since the last call, and leaves them out of the
    /// backlog.
    fn apply_revocations(&mut self, now: Timestamp) {
        for r in self.engine.take_new_revocations() {
            if r.is_whole_device() {
                self.revoked.insert(r.peer.clone());
            }
            let n = self.close_where(|p| r.names(&p.site, &p.peer), CloseCode::Revoked, now);
            if n > 0 {
                tracing::warn!(device = %r, connections = n, "closed the links of a revoked device");
            }
        }
    }

    /// `conn` closed: by the peer (with its close code, if it sent one) or lost.
    pub fn handle_closed(&mut self, conn: ConnId, peer_code: Option<CloseCode>, now: Timestamp) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(t) = &c.target {
            self.schedule_redial(t, now, Some(c.opened));
        }
        if self.current.get(&c.info.peer) != Some(&conn) {
            return;
        }
        self.current.remove(&c.info.peer);
        self.engine.handle_disconnect(&c.info.peer, now);
        if peer_code == Some(CloseCode::Duplicate) {
            tracing::debug!(peer = %c.info, "peer keeps its other connection with us");
            let deadline = now.plus_millis(self.config.replacement_grace_ms);
            self.replacing
                .insert(c.info.peer.clone(), (c.info, deadline));
            return;
        }
        if peer_code == Some(CloseCode::Revoked) {
            // Said once per peer, as an error: the redials that follow are refused the same
            // way until the device gets a new certificate.
            if self.refused_us.insert(c.info.peer.clone()) {
                tracing::error!(
                    peer = %c.info,
                    "the peer refused this device as revoked: the fleet revoked its \
                     certificate (outpost cert revoke); it cannot sync until it gets a new one"
                );
            }
        } else {
            tracing::info!(peer = %c.info, code = ?peer_code, "peer disconnected");
        }
        let why = match peer_code {
            Some(code) => format!("closed by the peer: {code}"),
            None => "connection lost".to_string(),
        };
        self.audit_closed(&c.info, c.target.is_some(), why.clone(), now);
        self.note_offline(&c.info.peer, now, why);
        self.events.push_back(Event::PeerDisconnected(c.info));
    }

    /// The app changed `doc`: offer it to every connected peer that may read it.
    pub fn handle_local_change(&mut self, doc: &DocumentId, now: Timestamp) {
        self.engine.handle_local_change(doc, now);
    }

    /// The store moved `doc` aside as corrupt: it is fetched again from connected peers.
    pub fn handle_document_reset(&mut self, doc: &DocumentId, now: Timestamp) {
        self.engine.handle_document_reset(doc, now);
    }

    /// Drops documents past this device's retention that a cloud peer holds (see
    /// [`Engine::drop_expired`]).
    pub fn drop_expired(&mut self, now: Timestamp) -> Vec<DocumentId> {
        self.engine.drop_expired(now)
    }

    /// Erases `doc` fleet-wide from a cloud peer (see [`Engine::erase`]).
    pub fn erase(&mut self, doc: &DocumentId, now: Timestamp) -> crate::Result<bool> {
        self.engine.erase(doc, now)
    }

    /// Closes the connection with `peer` now with `code`; returns whether there was one.
    /// Dial targets of that peer redial with backoff.
    pub fn disconnect(&mut self, peer: &PeerId, code: CloseCode, now: Timestamp) -> bool {
        let gone = self.replacing.remove(peer);
        match self.current.get(peer).copied() {
            Some(conn) => {
                self.close(conn, code, now);
                true
            }
            None => {
                if let Some((info, _)) = gone {
                    self.audit_closed(&info, false, format!("closed here: {code}"), now);
                    self.events.push_back(Event::PeerDisconnected(info));
                    return true;
                }
                false
            }
        }
    }

    /// Closes every connection whose peer matches `pred` (a revocation); returns how many.
    pub fn close_where(
        &mut self,
        pred: impl Fn(&PeerInfo) -> bool,
        code: CloseCode,
        now: Timestamp,
    ) -> usize {
        let matching: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| pred(&c.info))
            .map(|(id, _)| *id)
            .collect();
        for conn in &matching {
            self.close(*conn, code, now);
        }
        matching.len()
    }

    /// Cuts the link with `peer` until [`Links::restore`]: closes its connection, stops
    /// dialing it and refuses its connections with [`CloseCode::LinkCut`].
    pub fn cut(&mut self, peer: &PeerId, now: Timestamp) {
        self.cut.insert(peer.clone());
        self.disconnect(peer, CloseCode::LinkCut, now);
    }

    /// Restores a link cut with [`Links::cut`]; every waiting target is dialed right away.
    pub fn restore(&mut self, peer: &PeerId, now: Timestamp) {
        self.cut.remove(peer);
        for t in self.targets.values_mut() {
            if let TargetState::Waiting(_) = t.state {
                t.backoff.reset();
                t.state = TargetState::Waiting(now);
            }
        }
    }

    /// Time passed: engine retries, replacement grace periods, redials.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.engine.handle_timeout(now);
        let expired: Vec<PeerId> = self
            .replacing
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in expired {
            if let Some((info, _)) = self.replacing.remove(&peer) {
                tracing::info!(peer = %info, "peer disconnected (its other connection never came)");
                self.audit_closed(
                    &info,
                    false,
                    "connection lost (its other connection never came)".to_string(),
                    now,
                );
                self.note_offline(&info.peer, now, "connection lost".to_string());
                self.events.push_back(Event::PeerDisconnected(info));
            }
        }
        let due: Vec<Target> = self
            .targets
            .iter()
            .filter(|(target, t)| self.dial_at(target, t).is_some_and(|at| at <= now))
            .map(|(target, _)| target.clone())
            .collect();
        for target in due {
            if let Some(t) = self.targets.get_mut(&target) {
                t.state = TargetState::Dialing;
            }
            self.outputs.push_back(Output::Dial { target });
        }
    }

    /// Stops: no more dials or connections; every engine session is ended (its sync state
    /// persisted). Returns the connections to close, which the driver may first let send
    /// what they queued.
    pub fn shutdown(&mut self, now: Timestamp) -> Vec<ConnId> {
        self.stopped = true;
        let peers: Vec<(PeerId, ConnId)> =
            self.current.iter().map(|(p, c)| (p.clone(), *c)).collect();
        for (peer, conn) in peers {
            self.engine.handle_disconnect(&peer, now);
            if let Some(c) = self.conns.get(&conn).cloned() {
                let detail = format!("closed here: {}", CloseCode::Shutdown);
                self.audit_closed(&c.info, c.target.is_some(), detail, now);
            }
        }
        self.current.clear();
        self.replacing.clear();
        self.targets.clear();
        std::mem::take(&mut self.conns).into_keys().collect()
    }

    // ---- outputs ----

    /// When [`Links::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self.engine.poll_timeout();
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        for (_, at) in self.replacing.values() {
            consider(*at);
        }
        for (target, t) in &self.targets {
            if let Some(at) = self.dial_at(target, t) {
                consider(at);
            }
        }
        next
    }

    /// The next thing to do. Closes and dials first, then the engine's messages, mapped to
    /// the connection of their peer (messages for a peer without one are dropped: the next
    /// session resumes from the persisted state).
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        while let Some(t) = self.engine.poll_transmit() {
            match self.current.get(&t.to) {
                Some(conn) => {
                    return Some(Output::Send {
                        conn: *conn,
                        doc: t.doc,
                        bytes: t.bytes,
                    })
                }
                None => tracing::debug!(peer = %t.to, "no connection for a queued message"),
            }
        }
        None
    }

    /// The next event: link events first, then the engine's.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().or_else(|| self.engine.poll_event())
    }

    /// Waits until a connected peer holds `doc` up to `heads` on its disk (a
    /// `Durability::Replicated` write); see [`Engine::await_held`].
    pub fn await_held(&mut self, doc: DocumentId, heads: Vec<crate::ChangeHash>) -> HeldWait {
        self.engine.await_held(doc, heads)
    }

    /// Forgets a wait its caller gave up on; see [`Engine::cancel_held`].
    pub fn cancel_held(&mut self, id: HeldWait) -> bool {
        self.engine.cancel_held(id)
    }

    /// The next answered wait and the peer that holds its heads; see [`Engine::poll_held`].
    pub fn poll_held(&mut self) -> Option<(HeldWait, PeerId)> {
        self.engine.poll_held()
    }

    // ---- internals ----

    fn insert_conn(
        &mut self,
        conn: ConnId,
        info: PeerInfo,
        dialed: Option<Target>,
        now: Timestamp,
    ) {
        if let Some(t) = dialed.as_ref().and_then(|t| self.targets.get_mut(t)) {
            t.state = TargetState::Connected(conn);
        }
        self.current.insert(info.peer.clone(), conn);
        self.conns.insert(
            conn,
            Conn {
                info,
                target: dialed,
                opened: now,
            },
        );
    }

    /// Closes a known connection by our own decision.
    fn close(&mut self, conn: ConnId, code: CloseCode, now: Timestamp) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.outputs.push_back(Output::Close { conn, code });
        if let Some(t) = &c.target {
            self.schedule_redial(t, now, Some(c.opened));
        }
        if self.current.get(&c.info.peer) == Some(&conn) {
            self.current.remove(&c.info.peer);
            self.engine.handle_disconnect(&c.info.peer, now);
            tracing::info!(peer = %c.info, %code, "closing connection");
            if code == CloseCode::Revoked {
                self.revoked.insert(c.info.peer.clone());
            }
            self.audit_closed(
                &c.info,
                c.target.is_some(),
                format!("closed here: {code}"),
                now,
            );
            self.note_offline(&c.info.peer, now, format!("closed here: {code}"));
            self.events.push_back(Event::PeerDisconnected(c.info));
        }
    }

    fn refuse(&mut self, conn: ConnId, info: PeerInfo, code: CloseCode, now: Timestamp) {
        self.note_offline(&info.peer, now, format!("refused: {code}"));
        self.audit(
            AuditEntry::new(now, AuditKind::LinkRefused)
                .peer(&info)
                .detail(format!("refused: {code}")),
        );
        self.outputs.push_back(Output::Close { conn, code });
        self.events
            .push_back(Event::ConnectionRefused { peer: info, code });
    }

    fn refuse_dialed(
        &mut self,
        conn: ConnId,
        info: PeerInfo,
        code: CloseCode,
        dialed: Option<Target>,
        now: Timestamp,
    ) {
        self.refuse(conn, info, code, now);
        if let Some(t) = dialed {
            self.schedule_redial(&t, now, None);
        }
    }

    /// A target's connection or dial ended: wait a backoff delay (reset first if the link
    /// had been up for a while) before dialing it again.
    fn schedule_redial(&mut self, target: &Target, now: Timestamp, opened: Option<Timestamp>) {
        let stable = self.config.stable_after_ms;
        let Some(t) = self.targets.get_mut(target) else {
            return;
        };
        if t.state == TargetState::Disabled {
            return;
        }
        if opened.is_some_and(|o| now.millis_since(o) >= stable) {
            t.backoff.reset();
        }
        let delay = millis(t.backoff.next_delay(&mut self.rng));
        t.state = TargetState::Waiting(now.plus_millis(delay));
    }

    /// When `t` may be dialed, if it may: waiting, not paused, and its peer (if known) is
    /// neither connected nor cut.
    fn dial_at(&self, target: &Target, t: &TargetEntry) -> Option<Timestamp> {
        let TargetState::Waiting(at) = t.state else {
            return None;
        };
        if self.paused.contains(target) || self.stopped {
            return None;
        }
        if let Some(p) = &t.peer {
            if self.is_connected(p) || self.cut.contains(p) {
                return None;
            }
        }
        Some(at)
    }
}
