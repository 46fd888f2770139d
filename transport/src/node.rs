//! A running outpost peer: a store, a sync engine and QUIC links to other peers.
//!
//! # Tasks
//!
//! - **Engine loop**: one task owns the [`Engine`] and the [`Session`]s. It waits for
//!   session events (frames, closes), new connections, local changes of the store,
//!   commands from the [`Node`] handle and the engine's next timeout. After every input
//!   it drains `poll_transmit` into the sessions' bounded per-stream queues (never
//!   waiting on a slow peer) and `poll_event` into the [`NodeEvent`] broadcast. No lock
//!   is held across an await.
//! - **Accept loop**: completes incoming handshakes (the TLS verifiers of
//!   [`tls`] enforce fleet, site and deny list) and hands connections to the
//!   engine loop.
//! - **Dialers**: one per static peer address. Each dials, hands the connection to the
//!   engine loop, waits for it to close, and redials with [`Backoff`]. A dialer does not
//!   dial while the peer behind its address is connected (by either direction), while
//!   the link to that peer is cut ([`Node::cut_link`]) or while the address is paused
//!   ([`Node::pause_dialing`]).
//!
//! # One connection per pair of peers
//!
//! When two peers dial each other at the same time, both end up with two connections.
//! Each side keeps the connection **dialed by the smaller peer** (ordered by peer id, then
//! site) and closes the other with [`CloseCode::Duplicate`]; both sides apply the same rule,
//! so they keep the same one. Because the other side may have already restarted its sync
//! session on the kept connection, the engine session with that peer is restarted too
//! (`handle_disconnect` + `handle_connect`); the engine resumes from persisted sync state.
//! A new connection from a peer whose existing connection is dialed by the same side
//! replaces it (the peer redialed, so the old one is dead). When the peer closes *our*
//! current connection as a duplicate, the one it kept is about to arrive: the link counts
//! as up for a short grace period (2 s), so apps see no disconnect/connect flap.
//!
//! The engine learns who a peer is only from its verified certificate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::engine::SyncStatus;
use outpost_core::{
    DocumentId, Engine, EngineConfig, EngineEvent, Origin, PeerId, PeerInfo, Policy, Store,
    StoreOptions, Subscription, SubscriptionFilter, Timestamp,
};
use rand::SeedableRng;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::frame::CloseCode;
use crate::identity::{DeviceCert, SERVER_NAME};
use crate::session::{Session, SessionConfig, SessionEvent};
use crate::tls::{self, DenyEntry, DenyList, PeerFilter, SiteRule, TransportTuning};

/// The UDP port a node listens on by default.
pub const DEFAULT_PORT: u16 = 7733;

/// How a node is set up. Build one with [`NodeConfig::new`] and adjust the fields.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the store keeps its data (a sled directory, created if missing).
    pub data_dir: PathBuf,
    /// The device certificate, its key and the fleet CA.
    pub cert: DeviceCert,
    /// The UDP address to listen on (default `0.0.0.0:7733`; `127.0.0.1:0` picks a free
    /// port, see [`Node::local_addr`]).
    pub listen: SocketAddr,
    /// Peers to dial and keep dialing (with backoff) whenever the link is down.
    pub static_peers: Vec<SocketAddr>,
    /// Revoked devices, refused in every handshake.
    pub deny: DenyList,
    /// Which sites are admitted; `None` derives it from the certificate
    /// ([`SiteRule::for_identity`]: the cloud role admits every site).
    pub site_rule: Option<SiteRule>,
    /// Who may read and write what, enforced on what peers send us and on what we offer.
    pub policy: Policy,
    /// The policy the store enforces on local writes; `None` uses [`NodeConfig::policy`].
    pub store_policy: Option<Policy>,
    /// Announce and discover peers on the LAN by mDNS (needs the `discovery` cargo
    /// feature; off by default).
    pub discovery: bool,
    /// QUIC keep-alive, idle timeout and stream limits.
    pub tuning: TransportTuning,
    /// Frame size and send queue limits.
    pub session: SessionConfig,
    /// Backoff between dials of a static peer (default 100 ms doubling to 10 s).
    pub reconnect: Backoff,
    /// How long [`Node::shutdown`] waits for peers to acknowledge queued messages.
    pub shutdown_grace: Duration,
}

impl NodeConfig {
    /// A configuration with defaults: listen on `0.0.0.0:7733`, no static peers, the
    /// restaurant [`Policy::default`], no discovery.
    pub fn new(data_dir: impl Into<PathBuf>, cert: DeviceCert) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            cert,
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            static_peers: Vec::new(),
            deny: DenyList::new(),
            site_rule: None,
            policy: Policy::default(),
            store_policy: None,
            discovery: false,
            tuning: TransportTuning::default(),
            session: SessionConfig::default(),
            reconnect: Backoff::default(),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

/// What happens on the links of a node, for apps ([`Node::events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A link to a peer came up.
    PeerConnected(PeerInfo),
    /// The link to a peer went down.
    PeerDisconnected(PeerInfo),
    /// Changes from a peer were applied to a document.
    RemoteChange {
        /// The peer they came from.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// JSON Pointers of the values that changed.
        paths: Vec<String>,
    },
    /// A peer sent changes its role may not make; nothing was applied.
    ChangeRefused {
        /// The sender.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// Why.
        reason: String,
    },
    /// A peer refused our changes to a document.
    RefusedByPeer {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// The peer's reason.
        reason: String,
    },
    /// A document is in sync with a peer.
    InSync {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
    },
    /// A peer sent something the engine could not use (the link stays up).
    ProtocolError {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        message: String,
    },
}

impl NodeEvent {
    fn from_engine(event: EngineEvent) -> Option<NodeEvent> {
        Some(match event {
            // Apps get `RemoteChange` with paths from the store's notifications instead.
            EngineEvent::RemoteChange { .. } => return None,
            EngineEvent::ChangeRefused { peer, doc, reason } => {
                NodeEvent::ChangeRefused { peer, doc, reason }
            }
            EngineEvent::RefusedByPeer { peer, doc, reason } => {
                NodeEvent::RefusedByPeer { peer, doc, reason }
            }
            EngineEvent::InSync { peer, doc } => NodeEvent::InSync { peer, doc },
            EngineEvent::ProtocolError { peer, message } => {
                NodeEvent::ProtocolError { peer, message }
            }
        })
    }
}

/// Shared view of links, watched by the dialers.
#[derive(Clone, Debug, Default)]
struct LinkView {
    connected: BTreeMap<PeerId, PeerInfo>,
    cut: BTreeSet<PeerId>,
    paused: BTreeSet<SocketAddr>,
    /// Bumped when dialing should be retried right away (a link restored, an address resumed).
    kick: u64,
}

enum Command {
    Register {
        conn: quinn::Connection,
        info: PeerInfo,
    },
    Status(oneshot::Sender<SyncStatus>),
    Disconnect {
        peer: PeerId,
        code: CloseCode,
        reply: oneshot::Sender<bool>,
    },
    DisconnectMatching {
        entry: DenyEntry,
        code: CloseCode,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A running outpost peer. See the [module documentation](self).
#[derive(Debug)]
pub struct Node {
    info: PeerInfo,
    store: Store,
    local_addr: SocketAddr,
    endpoint: quinn::Endpoint,
    filter: PeerFilter,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    links: watch::Sender<LinkView>,
    dialers: Arc<Dialers>,
    accept_task: Option<JoinHandle<()>>,
    engine_task: Option<JoinHandle<()>>,
    #[cfg(feature = "discovery")]
    discovery: Option<crate::discovery::Discovery>,
}

/// The dialer tasks, by address.
#[derive(Debug)]
struct Dialers {
    tasks: Mutex<HashMap<SocketAddr, JoinHandle<()>>>,
    stopped: std::sync::atomic::AtomicBool,
    ctx: DialCtx,
}

#[derive(Clone, Debug)]
struct DialCtx {
    endpoint: quinn::Endpoint,
    links: watch::Receiver<LinkView>,
    commands: mpsc::Sender<Command>,
    local: PeerInfo,
    backoff: Backoff,
    handshake_timeout: Duration,
}

impl Dialers {
    fn add(&self, addr: SocketAddr) -> bool {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) || tasks.contains_key(&addr) {
            return false;
        }
        let span = tracing::info_span!("dialer", %addr);
        tasks.insert(
            addr,
            tokio::spawn(dial_loop(addr, self.ctx.clone()).instrument(span)),
        );
        true
    }

    /// Aborts every dialer and refuses new ones.
    fn abort_all(&self) -> Vec<JoinHandle<()>> {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, t)| t)
            .collect();
        for task in &tasks {
            task.abort();
        }
        tasks
    }

    /// Aborts every dialer and waits until they are gone (they hold endpoint handles).
    async fn stop_all(&self) {
        for task in self.abort_all() {
            let _ = task.await;
        }
    }
}

impl Node {
    /// Opens the store, binds the QUIC endpoint and starts accepting and dialing.
    ///
    /// Must be called within a multi-threaded tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let info = config.cert.info().clone();
        let store = Store::open_with(
            &config.data_dir,
            StoreOptions {
                identity: Some(info.clone()),
                policy: config
                    .store_policy
                    .clone()
                    .unwrap_or_else(|| config.policy.clone()),
                ..StoreOptions::default()
            },
        )?;
        let filter = PeerFilter::new(
            config
                .site_rule
                .clone()
                .unwrap_or_else(|| SiteRule::for_identity(&info)),
            config.deny.clone(),
        );
        let endpoint = tls::endpoint(&config.cert, &filter, &config.tuning, config.listen)?;
        let local_addr = endpoint.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let handshake_timeout = config.tuning.idle_timeout + Duration::from_secs(1);

        let (commands, command_rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(1024);
        let (links, links_rx) = watch::channel(LinkView::default());
        let (inbox, inbox_rx) = mpsc::channel(1024);
        let subscription = store.subscribe(SubscriptionFilter::all());
        let engine = Engine::new(
            store.clone(),
            EngineConfig::new(info.clone(), config.policy.clone()),
        );

        let node_span = tracing::info_span!("node", site = %info.site, peer = %info.peer);
        let engine_loop = EngineLoop {
            engine,
            local: info.clone(),
            filter: filter.clone(),
            sessions: HashMap::new(),
            session_config: config.session.clone(),
            inbox,
            links: links.clone(),
            events: events.clone(),
            shutdown_grace: config.shutdown_grace,
            replacing: HashMap::new(),
        };
        let engine_task = tokio::spawn(
            engine_loop
                .run(inbox_rx, command_rx, subscription)
                .instrument(node_span.clone()),
        );
        let accept_task = tokio::spawn(
            accept_loop(endpoint.clone(), commands.clone(), handshake_timeout)
                .instrument(node_span.clone()),
        );
        let dialers = Arc::new(Dialers {
            tasks: Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            ctx: DialCtx {
                endpoint: endpoint.clone(),
                links: links_rx,
                commands: commands.clone(),
                local: info.clone(),
                backoff: config.reconnect.clone(),
                handshake_timeout,
            },
        });
        {
            let _enter = node_span.enter();
            for addr in &config.static_peers {
                dialers.add(*addr);
            }
        }

        #[cfg(feature = "discovery")]
        let discovery = if config.discovery {
            let found = dialers.clone();
            let on_found = Arc::new(move |addr| {
                found.add(addr);
            });
            match crate::discovery::Discovery::start(&info, local_addr, on_found) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "LAN discovery could not start; static peers still work");
                    None
                }
            }
        } else {
            None
        };
        #[cfg(not(feature = "discovery"))]
        if config.discovery {
            tracing::warn!(
                "discovery was requested but outpost-transport was built without the `discovery` feature; only static peers are dialed"
            );
        }

        tracing::info!(parent: &node_span, %local_addr, "node started");
        Ok(Node {
            info,
            store,
            local_addr,
            endpoint,
            filter,
            commands,
            events,
            links,
            dialers,
            accept_task: Some(accept_task),
            engine_task: Some(engine_task),
            #[cfg(feature = "discovery")]
            discovery,
        })
    }

    /// This node's identity, from its certificate.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }

    /// The address the QUIC endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The store, for local reads and writes. Writes are offered to peers automatically.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A receiver of link and sync events. Events sent before subscribing are not
    /// replayed; a receiver that falls more than 1024 events behind skips the oldest.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The peers connected now.
    pub fn connected_peers(&self) -> Vec<PeerInfo> {
        self.links.borrow().connected.values().cloned().collect()
    }

    /// Waits until `peer` is connected (wrap it in a timeout).
    pub async fn wait_connected(&self, peer: &PeerId) {
        let mut rx = self.links.subscribe();
        let _ = rx.wait_for(|v| v.connected.contains_key(peer)).await;
    }

    /// Waits until `peer` is not connected (wrap it in a timeout).
    pub async fn wait_disconnected(&self, peer: &PeerId) {
        let mut rx = self.links.subscribe();
        let _ = rx.wait_for(|v| !v.connected.contains_key(peer)).await;
    }

    /// The sync status of every known peer and document.
    pub async fn status(&self) -> Result<SyncStatus> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Status(tx))
            .await
            .map_err(|_| Error::NodeStopped)?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    /// Closes the connection with `peer` now; returns whether there was one. Static
    /// peers are redialed with backoff (use [`Node::cut_link`] to keep the link down).
    pub async fn disconnect_peer(&self, peer: &PeerId) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Disconnect {
            peer: peer.clone(),
            code: CloseCode::Disconnected,
            reply,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| Error::NodeStopped)?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    /// Cuts the link with `peer` until [`Node::restore_link`]: closes the connection, stops
    /// dialing it and refuses its connections with [`CloseCode::LinkCut`].
    pub async fn cut_link(&self, peer: &PeerId) -> Result<()> {
        self.links.send_modify(|v| {
            v.cut.insert(peer.clone());
        });
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Disconnect {
            peer: peer.clone(),
            code: CloseCode::LinkCut,
            reply,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| Error::NodeStopped)?;
        rx.await.map_err(|_| Error::NodeStopped)?;
        Ok(())
    }

    /// Restores a link cut with [`Node::cut_link`]; dialers retry right away.
    pub fn restore_link(&self, peer: &PeerId) {
        self.links.send_modify(|v| {
            v.cut.remove(peer);
            v.kick += 1;
        });
    }

    /// Stops dialing a static peer address (an existing connection stays up).
    pub fn pause_dialing(&self, addr: SocketAddr) {
        self.links.send_modify(|v| {
            v.paused.insert(addr);
        });
    }

    /// Resumes dialing an address paused with [`Node::pause_dialing`], right away.
    pub fn resume_dialing(&self, addr: SocketAddr) {
        self.links.send_modify(|v| {
            v.paused.remove(&addr);
            v.kick += 1;
        });
    }

    /// Adds a peer address to dial (and redial) from now on; returns whether it was new.
    pub fn add_static_peer(&self, addr: SocketAddr) -> bool {
        self.dialers.add(addr)
    }

    /// The admission rules of this node's handshakes.
    pub fn filter(&self) -> &PeerFilter {
        &self.filter
    }

    /// Revokes a device at runtime: it is refused in future handshakes and a current
    /// connection is closed with [`CloseCode::Revoked`].
    pub async fn revoke(&self, entry: DenyEntry) -> Result<()> {
        self.filter.revoke(entry.clone());
        let cmd = Command::DisconnectMatching {
            entry,
            code: CloseCode::Revoked,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| Error::NodeStopped)
    }

    /// Stops the node: stops dialing and accepting, sends what is queued (waiting at most
    /// [`NodeConfig::shutdown_grace`]), closes every connection with
    /// [`CloseCode::Shutdown`], flushes the store and releases it and the UDP port.
    pub async fn shutdown(mut self) -> Result<()> {
        self.dialers.stop_all().await;
        if let Some(task) = self.accept_task.take() {
            task.abort();
            let _ = task.await;
        }
        #[cfg(feature = "discovery")]
        if let Some(d) = self.discovery.take() {
            d.stop();
        }
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.engine_task.take() {
            let _ = task.await;
        }
        self.endpoint.close(
            CloseCode::Shutdown.varint(),
            CloseCode::Shutdown.reason().as_bytes(),
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.store.flush()?;
        tracing::info!(site = %self.info.site, peer = %self.info.peer, "node stopped");
        Ok(())
    }
}

impl Drop for Node {
    /// A node dropped without [`Node::shutdown`] stops dialing and accepting; its engine
    /// task then closes the connections and flushes the store in the background.
    fn drop(&mut self) {
        self.dialers.abort_all();
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
        #[cfg(feature = "discovery")]
        if let Some(d) = self.discovery.take() {
            d.stop();
        }
    }
}

struct EngineLoop {
    engine: Engine,
    local: PeerInfo,
    filter: PeerFilter,
    sessions: HashMap<PeerId, Session>,
    session_config: SessionConfig,
    inbox: mpsc::Sender<SessionEvent>,
    links: watch::Sender<LinkView>,
    events: broadcast::Sender<NodeEvent>,
    shutdown_grace: Duration,
    /// Peers whose connection the peer closed as a duplicate: the connection it kept is
    /// about to be registered here, so the link counts as up until the deadline.
    replacing: HashMap<PeerId, (PeerInfo, tokio::time::Instant)>,
}

/// How long a peer that closed our connection as a duplicate has to show up on the other one.
const REPLACEMENT_GRACE: Duration = Duration::from_secs(2);

/// Orders peers for the duplicate-connection rule.
fn peer_key(p: &PeerInfo) -> (&PeerId, &outpost_core::SiteId) {
    (&p.peer, &p.site)
}

impl EngineLoop {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<SessionEvent>,
        mut commands: mpsc::Receiver<Command>,
        mut subscription: Subscription,
    ) {
        let mut store_open = true;
        // Guards against an engine that keeps asking for a timeout in the past.
        let mut timer_just_fired = false;
        loop {
            let sleep = self.engine.poll_timeout().map(|at| {
                let ms = at.millis_since(Timestamp::now());
                let floor = if timer_just_fired { 20 } else { 0 };
                Duration::from_millis(ms.max(floor))
            });
            timer_just_fired = false;
            let replacement_deadline = self.replacing.values().map(|(_, at)| *at).min();
            tokio::select! {
                Some(event) = inbox.recv() => self.on_session_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        // Every handle is gone without a shutdown.
                        self.shutdown().await;
                        return;
                    }
                },
                change = subscription.recv(), if store_open => match change {
                    Some(change) => self.on_store_change(change),
                    None => store_open = false,
                },
                _ = sleep_for(sleep) => {
                    timer_just_fired = true;
                    self.engine.handle_timeout(Timestamp::now());
                }
                _ = sleep_until(replacement_deadline) => self.expire_replacements(),
            }
            self.drain();
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        let now = Timestamp::now();
        match event {
            SessionEvent::Message {
                session,
                peer,
                doc,
                bytes,
            } => {
                crate::drive::deliver(
                    &mut self.engine,
                    &self.sessions,
                    session,
                    &peer,
                    doc.as_ref(),
                    &bytes,
                    now,
                );
            }
            SessionEvent::Closed {
                session,
                peer,
                error,
            } => {
                if self.sessions.get(&peer).map(Session::id) != Some(session) {
                    return;
                }
                if let Some(s) = self.sessions.remove(&peer) {
                    let info = s.peer().clone();
                    self.engine.handle_disconnect(&peer, now);
                    if CloseCode::of_connection_error(&error) == Some(CloseCode::Duplicate) {
                        tracing::debug!(peer = %info, "peer keeps its other connection with us");
                        let deadline = tokio::time::Instant::now() + REPLACEMENT_GRACE;
                        self.replacing.insert(peer, (info, deadline));
                        return;
                    }
                    tracing::info!(peer = %info, %error, "peer disconnected");
                    self.peer_gone(info);
                }
            }
        }
    }

    fn peer_gone(&mut self, info: PeerInfo) {
        self.links.send_modify(|v| {
            v.connected.remove(&info.peer);
        });
        let _ = self.events.send(NodeEvent::PeerDisconnected(info));
    }

    /// Peers that closed a connection as a duplicate but never showed up on the other one.
    fn expire_replacements(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<PeerId> = self
            .replacing
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in expired {
            if let Some((info, _)) = self.replacing.remove(&peer) {
                tracing::info!(peer = %info, "peer disconnected (its other connection never came)");
                self.peer_gone(info);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Register { conn, info } => self.register(conn, info),
            Command::Status(reply) => {
                let _ = reply.send(self.engine.status());
            }
            Command::Disconnect { peer, code, reply } => {
                let found = self
                    .sessions
                    .get(&peer)
                    .inspect(|s| s.close(code))
                    .is_some();
                // The session's `Closed` event does the bookkeeping.
                let _ = reply.send(found);
            }
            Command::DisconnectMatching { entry, code } => {
                for s in self.sessions.values().filter(|s| entry.matches(s.peer())) {
                    tracing::warn!(peer = %s.peer(), %code, "closing connection");
                    s.close(code);
                }
            }
            Command::Shutdown(_) => {}
        }
    }

    fn register(&mut self, conn: quinn::Connection, info: PeerInfo) {
        let now = Timestamp::now();
        if info == self.local || info.peer == self.local.peer {
            tracing::warn!(remote = %conn.remote_address(), peer = %info, "refusing a connection to a peer with our own id");
            CloseCode::BadIdentity.close(&conn);
            return;
        }
        if self.links.borrow().cut.contains(&info.peer) {
            tracing::info!(peer = %info, "refusing connection: link is cut");
            CloseCode::LinkCut.close(&conn);
            return;
        }
        if let Err(refusal) = self.filter.check(&info) {
            tracing::warn!(peer = %info, %refusal, "refusing connection");
            CloseCode::Revoked.close(&conn);
            return;
        }
        let dialed_by_us = conn.side() == quinn::Side::Client;
        let preferred = |dialed_by_us: bool| {
            let we_are_smaller = peer_key(&self.local) < peer_key(&info);
            dialed_by_us == we_are_smaller
        };
        if let Some(existing) = self.sessions.get(&info.peer) {
            if existing.peer().site != info.site {
                // The engine keys peers by id alone: two sites' `pos-1` cannot share it.
                tracing::warn!(
                    peer = %info,
                    connected = %existing.peer(),
                    "refusing connection: a peer with the same id from another site is connected; \
                     give devices fleet-unique ids or run one node per site"
                );
                CloseCode::PeerIdInUse.close(&conn);
                return;
            }
            let existing_alive = existing.connection().close_reason().is_none();
            let keep_existing = existing_alive
                && preferred(existing.is_dialer())
                && !preferred(dialed_by_us)
                && existing.peer() == &info;
            // Either way the other side restarts its sync session on the kept connection.
            self.engine.handle_disconnect(&info.peer, now);
            if keep_existing {
                tracing::debug!(peer = %info, "closing duplicate connection, keeping the existing one");
                CloseCode::Duplicate.close(&conn);
                self.engine.handle_connect(info, now);
                return;
            }
            tracing::debug!(peer = %info, "replacing the existing connection");
            if let Some(old) = self.sessions.remove(&info.peer) {
                old.close(CloseCode::Duplicate);
            }
            let session = Session::start(
                conn,
                info.clone(),
                self.session_config.clone(),
                self.inbox.clone(),
            );
            self.sessions.insert(info.peer.clone(), session);
            self.engine.handle_connect(info.clone(), now);
            self.links.send_modify(|v| {
                v.connected.insert(info.peer.clone(), info);
            });
            return;
        }
        let replacing = self.replacing.remove(&info.peer).is_some();
        if !replacing {
            tracing::info!(peer = %info, remote = %conn.remote_address(), dialed_by_us, "peer connected");
        }
        let session = Session::start(
            conn,
            info.clone(),
            self.session_config.clone(),
            self.inbox.clone(),
        );
        self.sessions.insert(info.peer.clone(), session);
        self.engine.handle_connect(info.clone(), now);
        self.links.send_modify(|v| {
            v.connected.insert(info.peer.clone(), info.clone());
        });
        if !replacing {
            let _ = self.events.send(NodeEvent::PeerConnected(info));
        }
    }

    fn on_store_change(&mut self, change: outpost_core::ChangeEvent) {
        match change.origin {
            Origin::Local | Origin::Import => self
                .engine
                .handle_local_change(&change.doc, Timestamp::now()),
            Origin::Remote(peer) => {
                let _ = self.events.send(NodeEvent::RemoteChange {
                    peer,
                    doc: change.doc,
                    paths: change.paths,
                });
            }
        }
    }

    /// Sends what the engine wants sent and publishes its events.
    fn drain(&mut self) {
        crate::drive::send_transmits(&mut self.engine, &mut self.sessions);
        while let Some(event) = self.engine.poll_event() {
            if let Some(event) = NodeEvent::from_engine(event) {
                let _ = self.events.send(event);
            }
        }
    }

    async fn shutdown(&mut self) {
        let now = Timestamp::now();
        self.drain();
        let sessions: Vec<Session> = self.sessions.drain().map(|(_, s)| s).collect();
        for s in &sessions {
            self.engine.handle_disconnect(&s.peer().peer, now);
        }
        self.links.send_modify(|v| v.connected.clear());
        let grace = self.shutdown_grace;
        let finishing: Vec<_> = sessions
            .into_iter()
            .map(|s| tokio::spawn(s.finish(CloseCode::Shutdown, grace)))
            .collect();
        for f in finishing {
            let _ = f.await;
        }
        if let Err(e) = self.engine.store().flush() {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    commands: mpsc::Sender<Command>,
    handshake_timeout: Duration,
) {
    while let Some(incoming) = endpoint.accept().await {
        let commands = commands.clone();
        tokio::spawn(
            async move {
                let remote = incoming.remote_address();
                match tokio::time::timeout(handshake_timeout, incoming).await {
                    Ok(Ok(conn)) => match tls::peer_info_of(&conn) {
                        Ok(info) => {
                            let _ = commands.send(Command::Register { conn, info }).await;
                        }
                        Err(e) => {
                            tracing::warn!(%remote, error = %e, "closing connection without usable identity");
                            CloseCode::BadIdentity.close(&conn);
                        }
                    },
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "incoming handshake failed"),
                    Err(_) => tracing::info!(%remote, "incoming handshake timed out"),
                }
            }
            .in_current_span(),
        );
    }
}

async fn dial_loop(addr: SocketAddr, ctx: DialCtx) {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut backoff = ctx.backoff.clone();
    backoff.reset();
    let mut links = ctx.links.clone();
    let mut known: Option<PeerId> = None;
    loop {
        let allowed = links
            .wait_for(|v| {
                !v.paused.contains(&addr)
                    && known
                        .as_ref()
                        .is_none_or(|p| !v.connected.contains_key(p) && !v.cut.contains(p))
            })
            .await
            .is_ok();
        if !allowed {
            return;
        }
        let attempt = async {
            let connecting = ctx
                .endpoint
                .connect(addr, SERVER_NAME)
                .map_err(|e| e.to_string())?;
            connecting.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ctx.handshake_timeout, attempt).await {
            Ok(Ok(conn)) => match tls::peer_info_of(&conn) {
                Ok(info) if info.peer == ctx.local.peer => {
                    tracing::warn!(
                        "this static peer address is this node itself; not dialing it again"
                    );
                    CloseCode::BadIdentity.close(&conn);
                    return;
                }
                Ok(info) => {
                    tracing::debug!(peer = %info, "dialed");
                    known = Some(info.peer.clone());
                    let started = tokio::time::Instant::now();
                    if ctx
                        .commands
                        .send(Command::Register {
                            conn: conn.clone(),
                            info,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let error = conn.closed().await;
                    tracing::debug!(%error, "dialed connection closed");
                    // A link that was up for a while went down: redial promptly.
                    if started.elapsed() >= Duration::from_secs(5) {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "peer has no usable identity");
                    CloseCode::BadIdentity.close(&conn);
                }
            },
            Ok(Err(e)) => tracing::debug!(error = %e, "dial failed"),
            Err(_) => tracing::debug!("dial timed out"),
        }
        let delay = backoff.next_delay(&mut rng);
        let kick = links.borrow().kick;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            alive = async { links.wait_for(|v| v.kick != kick).await.is_ok() } => {
                if !alive {
                    return;
                }
                backoff.reset();
            }
        }
    }
}
