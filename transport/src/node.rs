//! A running outpost peer: a store, and QUIC links to other peers driven by the one
//! [runner](crate::runner) around the sans-IO `Links` of `outpost-core`.
//!
//! # Tasks
//!
//! - **Runner**: owns the links layer (and through it the engine) and the sessions; see
//!   [`crate::runner`]. Its device hooks publish every [`Event`] to apps
//!   ([`Node::events`]) and keep the set of connected peers ([`Node::connected_peers`]).
//! - **Accept loop**: completes incoming handshakes (the TLS verifiers of [`tls`] enforce
//!   fleet, site and deny list) and hands connections to the runner.
//! - **Dials**: the links layer decides when to dial each static peer (with backoff, never
//!   while the peer is connected by either direction, while its link is cut or while the
//!   address is paused); the runner resolves and dials in a short task per attempt.
//!
//! Which of two connections with one peer is kept, and the grace period when the peer
//! closes ours as a duplicate, are rules of `outpost_core::Links` (see its docs), the same
//! for devices and cloud sites. The engine learns who a peer is only from its verified
//! certificate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::engine::SyncStatus;
use outpost_core::signing::{SharedSigner, SignatureRule};
use outpost_core::{
    Acknowledged, Backoff, CloseCode, DocumentId, Durability, Engine, EngineConfig, Event,
    LinkConfig, Links, PeerId, PeerInfo, Policy, Role, Store, StoreOptions, Target, Tx,
};
use rand::Rng;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::frame::CloseCodeExt;
use crate::identity::DeviceCert;
use crate::runner::{runner_channel, Hooks, Runner, RunnerConfig, RunnerHandle};
use crate::session::SessionConfig;
use crate::signing::{DeviceSigner, FleetVerifier};
use crate::tls::{self, DenyEntry, DenyList, PeerFilter, SiteRule, TransportTuning};

/// The UDP port a node listens on by default.
pub const DEFAULT_PORT: u16 = 7733;

/// The default of [`NodeConfig::replicated_timeout`]: on a site's network a peer's
/// acknowledgement takes milliseconds; 3 s covers a peer busy with a catch-up without
/// holding a cashier for long when the site is cut off.
pub const DEFAULT_REPLICATED_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// Peers to dial by name (`host:port`, e.g. `cloud.example.com:7733`), resolved again
    /// on every dial, so a peer whose address changes is still found.
    pub peer_names: Vec<String>,
    /// Revoked devices, refused in every handshake.
    pub deny: DenyList,
    /// Which sites are admitted; `None` derives it from the certificate
    /// ([`SiteRule::for_identity`]). A node with a cloud certificate serves exactly one site
    /// and must name it here (`SiteRule::SameSite`): serving many sites is `outpost-cloud`'s
    /// job, with one engine and one store namespace per site.
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
    /// Documents unused for this long are dropped from memory (they load again from disk on
    /// the next use), checked every quarter of it (default 5 minutes; `None`: never).
    pub evict_idle: Option<Duration>,
    /// Sign local changes with the certificate's key and verify the signatures of received
    /// changes against the fleet CA (default true). Off: the node behaves like a version
    /// from before signed changes.
    pub sign_changes: bool,
    /// Whether unsigned changes are still accepted (default
    /// [`SignatureRule::Transitional`]; see `core/docs/design.md`, "Signed changes").
    pub signatures: SignatureRule,
    /// This device's ticket prefix (`K1`), unique within the site, for ticket numbers
    /// issued with orders (`Tx::next_ticket`); `None`: no tickets.
    pub ticket_prefix: Option<outpost_core::TicketPrefix>,
    /// Ask a static peer that renews certificates (the cloud, with the fleet CA's key) for a
    /// new certificate once less than this remains of the current one (default 10 days;
    /// `None`: never). See `crate::renew`.
    pub renew_before: Option<Duration>,
    /// Where a renewed certificate is saved (`cert.pem`, `key.pem`, `ca.pem`, as
    /// `DeviceCert::save` writes them); `None`: kept in memory only.
    pub cert_dir: Option<PathBuf>,
    /// A connection is closed this long after its peer's certificate expired: the clock skew
    /// tolerated between devices (default 5 minutes).
    pub expiry_grace: Duration,
    /// How often the node checks its health and publishes what changed into the site
    /// document `health` (see [`crate::DeviceHealth`]); it also publishes at start and soon
    /// after an error. Default 60 s; `None`: never (the device reports no health).
    pub health_period: Option<Duration>,
    /// The longest a published health goes without refreshing `updated_ms` when nothing else
    /// changed (default 15 minutes: about 96 small writes a day on an idle device).
    pub health_heartbeat: Duration,
    /// How long a [`Durability::Replicated`] write waits for a peer to hold it before it
    /// returns [`Acknowledged::ThisDevice`] ("stored on this device only"); default
    /// [`DEFAULT_REPLICATED_TIMEOUT`].
    pub replicated_timeout: Duration,
    /// The platform key of an encrypted store (`StoreOptions::data_key`): a new data
    /// directory given one is encrypted at rest; an encrypted one opens only with it.
    pub data_key: Option<outpost_core::storage::SharedKeyWrap>,
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
            peer_names: Vec::new(),
            deny: DenyList::new(),
            site_rule: None,
            policy: Policy::default(),
            store_policy: None,
            discovery: false,
            tuning: TransportTuning::default(),
            session: SessionConfig::default(),
            reconnect: Backoff::default(),
            shutdown_grace: Duration::from_secs(1),
            evict_idle: Some(Duration::from_secs(300)),
            sign_changes: true,
            signatures: SignatureRule::default(),
            ticket_prefix: None,
            renew_before: Some(Duration::from_secs(10 * 24 * 3600)),
            cert_dir: None,
            expiry_grace: crate::runner::DEFAULT_EXPIRY_GRACE,
            health_period: Some(Duration::from_secs(60)),
            health_heartbeat: Duration::from_secs(15 * 60),
            replicated_timeout: DEFAULT_REPLICATED_TIMEOUT,
            data_key: None,
        }
    }
}

/// A running outpost peer. See the [module documentation](self).
#[derive(Debug)]
pub struct Node {
    info: PeerInfo,
    store: Store,
    local_addr: SocketAddr,
    endpoint: quinn::Endpoint,
    filter: PeerFilter,
    runner: RunnerHandle,
    events: broadcast::Sender<Event>,
    connected: watch::Receiver<BTreeMap<PeerId, PeerInfo>>,
    targets: Mutex<BTreeSet<Target>>,
    /// Set by [`Node::pause`]: incoming connections are refused.
    paused: Arc<AtomicBool>,
    accept_task: Option<JoinHandle<()>>,
    runner_task: Option<JoinHandle<()>>,
    renew_task: Option<JoinHandle<()>>,
    health_task: Option<JoinHandle<()>>,
    cert: Arc<std::sync::Mutex<DeviceCert>>,
    replicated_timeout: Duration,
    #[cfg(feature = "discovery")]
    discovery: Option<crate::discovery::Discovery>,
}

/// What a device adds to the runner: events for apps, and the connected peers.
struct DeviceHooks {
    events: broadcast::Sender<Event>,
    connected: watch::Sender<BTreeMap<PeerId, PeerInfo>>,
    store: Store,
    evict_idle: Option<Duration>,
    /// The last errors, for the published health.
    errors: Arc<crate::health::ErrorLog>,
}

impl Hooks for DeviceHooks {
    fn on_event(&mut self, event: &Event) {
        // The links layer reports every change of its connected set (a replaced connection
        // or a grace period is not one), so the set follows the events.
        match event {
            Event::PeerConnected(p) => {
                self.connected.send_modify(|c| {
                    c.insert(p.peer.clone(), p.clone());
                });
            }
            Event::PeerDisconnected(p) => {
                self.connected.send_modify(|c| {
                    c.remove(&p.peer);
                });
            }
            _ => {}
        }
        self.errors.on_event(event);
        let _ = self.events.send(event.clone());
    }

    fn on_shutdown(&mut self, _links: &Links) {
        self.connected.send_replace(BTreeMap::new());
    }

    fn housekeeping_period(&self) -> Option<Duration> {
        self.evict_idle
            .map(|idle| (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(60)))
    }

    fn housekeeping(&mut self, links: &mut Links, _open: usize) -> bool {
        let dropped = links.drop_expired(outpost_core::Timestamp::now());
        if !dropped.is_empty() {
            tracing::info!(count = dropped.len(), "documents dropped by retention");
        }
        if let Some(idle) = self.evict_idle {
            let evicted = self.store.evict_idle(idle);
            if evicted > 0 {
                tracing::debug!(evicted, "idle documents unloaded");
            }
        }
        // A device never retires.
        false
    }
}

impl Node {
    /// Opens the store, binds the QUIC endpoint and starts accepting and dialing.
    ///
    /// Must be called within a multi-threaded tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let info = config.cert.info().clone();
        let site_rule = config
            .site_rule
            .clone()
            .unwrap_or_else(|| SiteRule::for_identity(&info));
        if info.role == Role::cloud() && site_rule == SiteRule::AnySite {
            return Err(Error::MultiSiteNode { identity: info });
        }
        let signer: Option<SharedSigner> = if config.sign_changes {
            Some(Arc::new(DeviceSigner::new(&config.cert)?))
        } else {
            None
        };
        let store = Store::open_with(
            &config.data_dir,
            StoreOptions {
                identity: Some(info.clone()),
                signer,
                policy: config
                    .store_policy
                    .clone()
                    .unwrap_or_else(|| config.policy.clone()),
                ticket_prefix: config.ticket_prefix.clone(),
                data_key: config.data_key.clone(),
                ..StoreOptions::default()
            },
        )?;
        let filter = PeerFilter::new(site_rule, config.deny.clone());
        let endpoint = tls::endpoint(&config.cert, &filter, &config.tuning, config.listen)?;
        let local_addr = endpoint.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let handshake_timeout = config.tuning.idle_timeout + Duration::from_secs(1);

        let (events, _) = broadcast::channel(1024);
        let (connected_tx, connected) = watch::channel(BTreeMap::new());
        let mut engine_config = EngineConfig::new(info.clone(), config.policy.clone());
        if config.sign_changes {
            engine_config.verifier = Some(Arc::new(FleetVerifier::for_device(&config.cert)));
            engine_config.signatures = config.signatures;
        }
        let engine = Engine::new(store.clone(), engine_config);
        let links = Links::new(
            engine,
            LinkConfig {
                reconnect: config.reconnect.clone(),
                ..LinkConfig::default()
            },
            rand::rng().random(),
        );
        let (runner, inbox) = runner_channel();
        let errors = Arc::new(crate::health::ErrorLog::default());
        let node_span = tracing::info_span!("node", site = %info.site, peer = %info.peer);
        let runner_task = tokio::spawn(
            Runner::new(
                links,
                store.clone(),
                DeviceHooks {
                    events: events.clone(),
                    connected: connected_tx,
                    store: store.clone(),
                    evict_idle: config.evict_idle,
                    errors: errors.clone(),
                },
                RunnerConfig {
                    session: config.session.clone(),
                    shutdown_grace: config.shutdown_grace,
                    dial_timeout: handshake_timeout,
                    filter: filter.clone(),
                    expiry_grace: config.expiry_grace,
                },
                Some(endpoint.clone()),
                inbox,
            )
            .run()
            .instrument(node_span.clone()),
        );
        let paused = Arc::new(AtomicBool::new(false));
        let accept_task = tokio::spawn(
            accept_loop(
                endpoint.clone(),
                runner.clone(),
                handshake_timeout,
                paused.clone(),
            )
            .instrument(node_span.clone()),
        );
        let mut targets = BTreeSet::new();
        let names = config
            .static_peers
            .iter()
            .map(ToString::to_string)
            .chain(config.peer_names.iter().cloned());
        for name in names {
            let target = Target::new(name);
            if targets.insert(target.clone()) {
                runner.add_target(target)?;
            }
        }

        #[cfg(feature = "discovery")]
        let discovery = if config.discovery {
            let found = runner.clone();
            let on_found = std::sync::Arc::new(move |addr: SocketAddr| {
                let _ = found.add_target(Target::new(addr.to_string()));
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

        let cert = Arc::new(std::sync::Mutex::new(config.cert.clone()));
        let renew_task = config.renew_before.map(|before| {
            tokio::spawn(
                renew_loop(
                    Renewal {
                        endpoint: endpoint.clone(),
                        filter: filter.clone(),
                        tuning: config.tuning.clone(),
                        peers: config.static_peers.clone(),
                        cert_dir: config.cert_dir.clone(),
                        before,
                        runner: runner.clone(),
                        store: store.clone(),
                    },
                    cert.clone(),
                )
                .instrument(node_span.clone()),
            )
        });
        let health_task = config.health_period.map(|period| {
            tokio::spawn(
                crate::health::Publisher {
                    store: store.clone(),
                    runner: runner.clone(),
                    errors,
                    cert: cert.clone(),
                    period,
                    heartbeat: config.health_heartbeat,
                    started_ms: outpost_core::Timestamp::now().as_millis(),
                }
                .run()
                .instrument(node_span.clone()),
            )
        });
        tracing::info!(parent: &node_span, %local_addr, "node started");
        Ok(Node {
            info,
            store,
            local_addr,
            endpoint,
            filter,
            runner,
            events,
            connected,
            targets: Mutex::new(targets),
            paused,
            accept_task: Some(accept_task),
            runner_task: Some(runner_task),
            renew_task,
            health_task,
            cert,
            replicated_timeout: config.replicated_timeout,
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
    /// A store alone cannot wait for peers: [`Durability::Replicated`] writes go through
    /// [`Node::transact`] or [`Node::put`].
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` on `doc` as one change (see [`Store::transact`]) and tells how far it is
    /// acknowledged: [`Acknowledged::InStore`] for [`Durability::Fast`],
    /// [`Acknowledged::ThisDevice`] for [`Durability::Durable`], and for
    /// [`Durability::Replicated`] [`Acknowledged::Site`] once another device of the site or
    /// the cloud holds it on its disk, or [`Acknowledged::ThisDevice`] ("stored on this device
    /// only", not an error) after [`NodeConfig::replicated_timeout`]. Errors are those of the
    /// local write: a Replicated write that returns is durable here.
    ///
    /// The local write blocks the calling task for its fsync, as [`Store`] writes do.
    pub async fn transact<T>(
        &self,
        doc: &DocumentId,
        durability: Durability,
        f: impl FnOnce(&mut Tx<'_>) -> outpost_core::Result<T>,
    ) -> Result<(T, Acknowledged)> {
        let local = match durability {
            Durability::Fast => Durability::Fast,
            Durability::Durable | Durability::Replicated => Durability::Durable,
        };
        let out = self.store.transact(doc, local, f)?;
        let ack = match durability {
            Durability::Fast => Acknowledged::InStore,
            Durability::Durable => Acknowledged::ThisDevice,
            Durability::Replicated => self.wait_replicated(doc, self.replicated_timeout).await?,
        };
        Ok((out, ack))
    }

    /// Writes `value` at `path` (see [`Store::put`]) with `durability`; see
    /// [`Node::transact`] for what the answer means.
    pub async fn put(
        &self,
        doc: &DocumentId,
        path: &str,
        value: serde_json::Value,
        durability: Durability,
    ) -> Result<Acknowledged> {
        Ok(self
            .transact(doc, durability, |tx| tx.put(path, value))
            .await?
            .1)
    }

    /// How long a [`Durability::Replicated`] write waits for a peer
    /// ([`NodeConfig::replicated_timeout`]).
    pub fn replicated_timeout(&self) -> Duration {
        self.replicated_timeout
    }

    /// Waits at most `timeout` until another device of the site or the cloud holds `doc` as
    /// it is now on this device (its current heads) on its disk: [`Acknowledged::Site`] with
    /// the first such peer, else [`Acknowledged::ThisDevice`]. For writes made through the
    /// store (e.g. [`Store::transact_once`] with [`Durability::Durable`]) that should be
    /// acknowledged by the site too. A node that stops meanwhile answers
    /// [`Acknowledged::ThisDevice`].
    ///
    /// The heads are read when this is called; the future borrows nothing of the node.
    pub fn wait_replicated(
        &self,
        doc: &DocumentId,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Acknowledged>> + Send + 'static {
        let heads = self.store.heads(doc);
        let runner = self.runner.clone();
        let doc = doc.clone();
        async move {
            let wait = runner.await_held(doc, heads?);
            Ok(match tokio::time::timeout(timeout, wait).await {
                Ok(Ok(peer)) => Acknowledged::Site { peer },
                // Stopped, or timed out (dropping the wait cancels it in the runner).
                Ok(Err(_)) | Err(_) => Acknowledged::ThisDevice,
            })
        }
    }

    /// A receiver of link and sync events. Events sent before subscribing are not
    /// replayed; a receiver that falls more than 1024 events behind skips the oldest.
    /// Changed paths of documents come from [`Store::subscribe`].
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The peers connected now.
    pub fn connected_peers(&self) -> Vec<PeerInfo> {
        self.connected.borrow().values().cloned().collect()
    }

    /// Waits until `peer` is connected (wrap it in a timeout).
    pub async fn wait_connected(&self, peer: &PeerId) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|v| v.contains_key(peer)).await;
    }

    /// Waits until `peer` is not connected (wrap it in a timeout).
    pub async fn wait_disconnected(&self, peer: &PeerId) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|v| !v.contains_key(peer)).await;
    }

    /// The sync status of every known peer and document.
    pub async fn status(&self) -> Result<SyncStatus> {
        self.runner.status().await
    }

    /// Closes the connection with `peer` now; returns whether there was one. Static
    /// peers are redialed with backoff (use [`Node::cut_link`] to keep the link down).
    pub async fn disconnect_peer(&self, peer: &PeerId) -> Result<bool> {
        self.runner
            .disconnect(peer.clone(), CloseCode::Disconnected)
            .await
    }

    /// Cuts the link with `peer` until [`Node::restore_link`]: closes the connection, stops
    /// dialing it and refuses its connections with [`CloseCode::LinkCut`].
    pub async fn cut_link(&self, peer: &PeerId) -> Result<()> {
        self.runner.cut(peer.clone()).await
    }

    /// Restores a link cut with [`Node::cut_link`]; static peers are dialed right away.
    pub fn restore_link(&self, peer: &PeerId) {
        let _ = self.runner.restore(peer.clone());
    }

    /// Stops dialing a static peer address (an existing connection stays up).
    pub fn pause_dialing(&self, addr: SocketAddr) {
        let _ = self.runner.pause_target(Target::new(addr.to_string()));
    }

    /// Resumes dialing an address paused with [`Node::pause_dialing`], right away.
    pub fn resume_dialing(&self, addr: SocketAddr) {
        let _ = self.runner.resume_target(Target::new(addr.to_string()));
    }

    /// Adds a peer address to dial (and redial) from now on; returns whether it was new.
    pub fn add_static_peer(&self, addr: SocketAddr) -> bool {
        self.add_peer(&addr.to_string())
    }

    /// Adds a peer to dial by name (`host:port`), resolved again on every dial; returns
    /// whether it was new.
    pub fn add_peer(&self, name: &str) -> bool {
        let target = Target::new(name);
        let new = self
            .targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.clone());
        new && self.runner.add_target(target).is_ok()
    }

    /// Stops dialing a peer added with [`Node::add_peer`] (or given at start) and closes its
    /// connection; returns whether it was a peer of this node.
    pub fn remove_peer(&self, name: &str) -> bool {
        let target = Target::new(name);
        let known = self
            .targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&target);
        known && self.runner.remove_target(target).is_ok()
    }

    /// Dials every peer whose link is down now, without waiting for its backoff (call it
    /// when the app comes back to the foreground or the network changes).
    pub fn reconnect_now(&self) {
        let _ = self.runner.redial_now();
    }

    /// Takes the node off the network while keeping it (an app going to the background):
    /// stops dialing every peer added by address or name, closes every link and refuses
    /// incoming connections until [`Node::resume`]. The store stays open: reads and writes go
    /// on and sync when resumed. Peers found by discovery are still dialed.
    ///
    /// Dialing and accepting stop at the call; the future closes the links and holds nothing
    /// of the node (a caller may await it without a borrow).
    pub fn pause(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        self.paused.store(true, Ordering::SeqCst);
        for target in self.targets_now() {
            let _ = self.runner.pause_target(target);
        }
        let peers = self.connected_peers();
        let runner = self.runner.clone();
        async move {
            for peer in peers {
                runner.disconnect(peer.peer, CloseCode::Shutdown).await?;
            }
            Ok(())
        }
    }

    /// Ends a [`Node::pause`]: accepts connections again and dials every peer right away.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        for target in self.targets_now() {
            let _ = self.runner.resume_target(target);
        }
        let _ = self.runner.redial_now();
    }

    /// Whether the node is paused ([`Node::pause`]).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    fn targets_now(&self) -> Vec<Target> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The admission rules of this node's handshakes.
    pub fn filter(&self) -> &PeerFilter {
        &self.filter
    }

    /// Revokes a device at runtime: it is refused in future handshakes and a current
    /// connection is closed with [`CloseCode::Revoked`].
    pub async fn revoke(&self, entry: DenyEntry) -> Result<()> {
        self.filter.revoke(entry.clone());
        self.runner.revoke(entry)
    }

    /// Takes a revocation signed by the fleet CA (`outpost cert revoke`, or `FleetCa::revoke`):
    /// verified against the fleet CA, stored, applied at once (the device's links close, its
    /// handshakes and its changes are refused) and relayed to every peer, which relay it on.
    /// Returns whether it was new.
    pub async fn learn_revocation(
        &self,
        record: outpost_core::revocation::SignedRevocation,
    ) -> Result<bool> {
        Ok(self.runner.learn_revocation(record).await??)
    }

    /// The certificate this node presents now (a renewed one once renewed).
    pub fn certificate(&self) -> DeviceCert {
        self.cert.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The revocations this node knows (learnt from the operator or from peers).
    pub fn revocations(&self) -> Result<Vec<outpost_core::revocation::Revocation>> {
        Ok(self
            .store
            .revocations()?
            .iter()
            .filter_map(|r| r.revocation().ok())
            .collect())
    }

    /// Stops the node: stops dialing and accepting, sends what is queued (waiting at most
    /// [`NodeConfig::shutdown_grace`]), closes every connection with
    /// [`CloseCode::Shutdown`], flushes the store and releases it and the UDP port.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(task) = self.renew_task.take() {
            task.abort();
        }
        if let Some(task) = self.health_task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Some(task) = self.accept_task.take() {
            task.abort();
            let _ = task.await;
        }
        #[cfg(feature = "discovery")]
        if let Some(d) = self.discovery.take() {
            d.stop();
        }
        self.runner.shutdown().await;
        if let Some(task) = self.runner_task.take() {
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
    /// A node dropped without [`Node::shutdown`] stops accepting; its runner then closes
    /// the connections and flushes the store in the background.
    fn drop(&mut self) {
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
        if let Some(task) = self.health_task.take() {
            task.abort();
        }
        // It holds the store (for the audit trail): a dropped node must release it.
        if let Some(task) = self.renew_task.take() {
            task.abort();
        }
        #[cfg(feature = "discovery")]
        if let Some(d) = self.discovery.take() {
            d.stop();
        }
        if self.runner_task.is_some() {
            let runner = self.runner.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { runner.shutdown().await });
            }
        }
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    runner: RunnerHandle,
    handshake_timeout: Duration,
    paused: Arc<AtomicBool>,
) {
    while let Some(incoming) = endpoint.accept().await {
        if paused.load(Ordering::SeqCst) {
            // Paused (the app is in the background): no handshake, the peer redials later.
            incoming.refuse();
            continue;
        }
        let runner = runner.clone();
        tokio::spawn(
            async move {
                let remote = incoming.remote_address();
                match tokio::time::timeout(handshake_timeout, incoming).await {
                    Ok(Ok(conn)) if crate::renew::is_renewal(&conn) => {
                        // A device renews with the cloud, not with another device.
                        crate::renew::serve_renewal(conn, None).await
                    }
                    Ok(Ok(conn)) => match tls::peer_info_of(&conn) {
                        Ok(info) => {
                            if let Err(conn) = runner.attach(conn, info) {
                                CloseCode::Shutdown.close(&conn);
                            }
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

/// What the renewal task needs.
struct Renewal {
    endpoint: quinn::Endpoint,
    filter: PeerFilter,
    tuning: TransportTuning,
    peers: Vec<SocketAddr>,
    cert_dir: Option<PathBuf>,
    before: Duration,
    runner: RunnerHandle,
    /// For the audit trail.
    store: Store,
}

/// Renews the certificate through a static cloud peer once less than `before` remains:
/// retried every minute until it works, then the new certificate (verified, and tried in one
/// handshake) is used for every later handshake (and saved, if the node knows its certificate
/// directory).
async fn renew_loop(r: Renewal, cert: Arc<std::sync::Mutex<DeviceCert>>) {
    loop {
        let current = cert.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(not_after) = crate::renew::not_after_ms(current.cert_der()) else {
            tracing::warn!("the certificate's validity cannot be read; it is not renewed");
            return;
        };
        let now = outpost_core::Timestamp::now().as_millis();
        let due = not_after.saturating_sub(u64::try_from(r.before.as_millis()).unwrap_or(u64::MAX));
        if now < due {
            tokio::time::sleep(Duration::from_millis((due - now).min(3_600_000))).await;
            continue;
        }
        let mut renewed = None;
        for addr in &r.peers {
            // Only a cloud peer answers (request_renewal checks its role), and the answer is
            // taken only once it worked in a handshake: until then the device keeps its
            // current certificate, so a bad answer cannot lock it out.
            let result = match crate::renew::request_renewal(
                &r.endpoint,
                &current,
                &r.filter,
                &r.tuning,
                *addr,
            )
            .await
            {
                Ok(c) => {
                    crate::renew::probe_certificate(&r.endpoint, &c, &r.filter, &r.tuning, *addr)
                        .await
                        .map(|()| c)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(c) => {
                    renewed = Some(c);
                    break;
                }
                Err(e) => tracing::info!(%addr, error = %e, "certificate not renewed by this peer"),
            }
        }
        let Some(new) = renewed else {
            tracing::warn!(
                "the certificate expires soon and no peer renewed it; retrying in a minute"
            );
            tokio::time::sleep(Duration::from_secs(60)).await;
            continue;
        };
        match (
            tls::server_config(&new, &r.filter, &r.tuning),
            tls::client_config(&new, &r.filter, &r.tuning),
        ) {
            (Ok(server), Ok(client)) => {
                r.endpoint.set_server_config(Some(server));
                if r.runner.set_client_config(client).is_err() {
                    return;
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "the renewed certificate is unusable; keeping the current one");
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
        }
        if let Some(dir) = &r.cert_dir {
            if let Err(e) = new.save(dir) {
                tracing::error!(dir = %dir.display(), error = %e, "the renewed certificate could not be saved; it is used until the node stops");
            }
        }
        let until = crate::renew::not_after_ms(new.cert_der()).unwrap_or(0);
        tracing::info!(valid_until_ms = until, "certificate renewed");
        let entry = outpost_core::AuditEntry::new(
            outpost_core::Timestamp::now(),
            outpost_core::AuditKind::CertificateRenewed,
        )
        .detail(format!("valid until {until} ms (was {not_after} ms)"));
        if let Err(e) = r.store.audit().record(entry) {
            tracing::warn!(error = %e, "cannot write the audit trail");
        }
        *cert.lock().unwrap_or_else(|p| p.into_inner()) = new;
    }
}
