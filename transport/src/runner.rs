//! The one async runner around the sans-IO [`Links`]: every device [`Node`](crate::Node) and
//! every site of the cloud peer is this loop, with [`Hooks`] for what differs.
//!
//! One task owns the [`Links`] (and through it the engine) and the [`Session`]s. It waits for
//! commands (new connections from the accept loop or from dials, app requests), session
//! events (frames, closes), local changes of the store, the links layer's next timeout and,
//! if the hooks ask for it, a housekeeping tick. After every input it carries out what the
//! links layer wants ([`Output`]: send into the sessions' bounded per-stream queues, never
//! waiting on a slow peer; close; dial in a task of its own) and hands every [`Event`] to
//! the hooks. No lock is held across an await, and nothing decides here that the links layer
//! can decide: duplicate connections, grace periods, backoff and cut links are all in core,
//! where the simulation reaches them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use outpost_core::engine::{HeldWait, RevocationRefused, SyncStatus};
use outpost_core::revocation::SignedRevocation;
use outpost_core::{
    ChangeHash, CloseCode, ConnId, DocumentId, Event, Links, Origin, Output, PeerId, PeerInfo,
    Store, Subscription, SubscriptionFilter, Target, Timestamp,
};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::frame::CloseCodeExt;
use crate::identity::SERVER_NAME;
use crate::session::{Session, SessionConfig, SessionEvent};
use crate::tls::{self, DenyEntry, PeerFilter};

/// What differs between the peers a runner drives (a device node, a cloud site).
pub trait Hooks: Send + 'static {
    /// Every event of the links layer and the engine, in order.
    fn on_event(&mut self, event: &Event);

    /// After every input, once the outputs were carried out (metrics).
    fn after_input(&mut self, _links: &Links) {}

    /// A connection handed to the runner has closed (exactly once per connection, including
    /// refused ones).
    fn on_connection_closed(&mut self) {}

    /// How often [`Hooks::housekeeping`] runs; `None` (the default) never.
    fn housekeeping_period(&self) -> Option<Duration> {
        None
    }

    /// Periodic work (compaction, eviction). Returning `true` stops the runner (e.g. an idle
    /// cloud site retiring); it is only honoured while no connection is open.
    fn housekeeping(&mut self, _links: &mut Links, _open_connections: usize) -> bool {
        false
    }

    /// The runner stopped: sessions are closed, the store is about to be flushed.
    fn on_shutdown(&mut self, _links: &Links) {}
}

/// Limits and timings of a runner.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Frame size and send queue limits of every session.
    pub session: SessionConfig,
    /// How long shutdown waits for peers to acknowledge queued messages.
    pub shutdown_grace: Duration,
    /// How long a dial may take, handshake included.
    pub dial_timeout: Duration,
    /// Admission (sites, deny list) checked for every connection, dialed or accepted.
    pub filter: PeerFilter,
    /// A connection is closed ([`CloseCode::CertificateExpired`]) this long after the
    /// peer's certificate expired: the clock skew tolerated between devices.
    pub expiry_grace: Duration,
}

/// The default of [`RunnerConfig::expiry_grace`]: 5 minutes of clock skew.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::from_secs(300);

enum Command {
    Connected {
        conn: quinn::Connection,
        info: PeerInfo,
        dialed: Option<Target>,
    },
    DialFailed(Target),
    /// A dial of the target was refused: the peer holds this device's certificate revoked.
    DialRevoked(Target),
    AddTarget(Target),
    RemoveTarget(Target),
    RedialNow,
    PauseTarget(Target),
    ResumeTarget(Target),
    Status(oneshot::Sender<SyncStatus>),
    Store(oneshot::Sender<Store>),
    Disconnect {
        peer: PeerId,
        code: CloseCode,
        reply: oneshot::Sender<bool>,
    },
    Cut {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Restore(PeerId),
    Revoke(DenyEntry),
    Erase {
        doc: DocumentId,
        reply: oneshot::Sender<outpost_core::Result<bool>>,
    },
    LearnRevocation(
        SignedRevocation,
        oneshot::Sender<std::result::Result<bool, RevocationRefused>>,
    ),
    /// The peer certificate of a connection expired (plus the grace).
    Expired(ConnId),
    /// A document changed outside this runner's store subscription.
    Changed(DocumentId),
    /// Dial with this client configuration from now on (a renewed certificate).
    SetClientConfig(Box<quinn::ClientConfig>),
    /// Answer with the first connected peer that holds `doc` up to `heads` on its disk.
    AwaitHeld {
        doc: DocumentId,
        heads: Vec<ChangeHash>,
        reply: oneshot::Sender<PeerId>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// Sends inputs to a running runner. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RunnerHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// The receiving end of a [`RunnerHandle`], consumed by [`Runner::new`].
#[derive(Debug)]
pub struct RunnerInbox {
    commands: mpsc::UnboundedReceiver<Command>,
    weak: mpsc::WeakUnboundedSender<Command>,
}

/// A new handle and the inbox of the runner it will drive. Connections may be handed to the
/// handle before the runner exists (e.g. while a cloud site opens its store).
pub fn runner_channel() -> (RunnerHandle, RunnerInbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let weak = tx.downgrade();
    (
        RunnerHandle { commands: tx },
        RunnerInbox { commands: rx, weak },
    )
}

impl RunnerInbox {
    /// Closes every connection waiting in the inbox with `code` and answers pending
    /// shutdowns; returns how many connections were closed. For an owner that cannot start
    /// its runner (its store failed to open).
    pub fn refuse_pending(&mut self, code: CloseCode) -> usize {
        let mut closed = 0;
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Connected { conn, .. } => {
                    code.close(&conn);
                    closed += 1;
                }
                Command::Shutdown(reply) => {
                    let _ = reply.send(());
                }
                _ => {}
            }
        }
        closed
    }
}

impl RunnerHandle {
    fn send(&self, cmd: Command) -> Result<()> {
        self.commands.send(cmd).map_err(|_| Error::NodeStopped)
    }

    /// Hands an authenticated connection to the runner (`info` from its verified
    /// certificate). If the runner is gone, the connection comes back.
    pub fn attach(
        &self,
        conn: quinn::Connection,
        info: PeerInfo,
    ) -> std::result::Result<(), quinn::Connection> {
        self.commands
            .send(Command::Connected {
                conn,
                info,
                dialed: None,
            })
            .map_err(|e| match e.0 {
                Command::Connected { conn, .. } => conn,
                _ => unreachable!("the command sent is the one returned"),
            })
    }

    /// Dials `target` now and redials it whenever its link is down.
    pub(crate) fn add_target(&self, target: Target) -> Result<()> {
        self.send(Command::AddTarget(target))
    }

    pub(crate) fn remove_target(&self, target: Target) -> Result<()> {
        self.send(Command::RemoveTarget(target))
    }

    pub(crate) fn redial_now(&self) -> Result<()> {
        self.send(Command::RedialNow)
    }

    pub(crate) fn pause_target(&self, target: Target) -> Result<()> {
        self.send(Command::PauseTarget(target))
    }

    pub(crate) fn resume_target(&self, target: Target) -> Result<()> {
        self.send(Command::ResumeTarget(target))
    }

    /// The sync status of every known peer and document.
    pub async fn status(&self) -> Result<SyncStatus> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx))?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    /// The store this runner syncs, once the runner runs (a cloud site opens it first).
    /// Local writes through it reach the runner's peers like any app write.
    pub async fn store(&self) -> Result<Store> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Store(tx))?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    pub(crate) async fn disconnect(&self, peer: PeerId, code: CloseCode) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Disconnect { peer, code, reply })?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    pub(crate) async fn cut(&self, peer: PeerId) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Cut { peer, reply })?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    pub(crate) fn restore(&self, peer: PeerId) -> Result<()> {
        self.send(Command::Restore(peer))
    }

    pub(crate) fn revoke(&self, entry: DenyEntry) -> Result<()> {
        self.send(Command::Revoke(entry))
    }

    /// Erases `doc` fleet-wide through this runner's engine (a cloud site's; see
    /// `Engine::erase`): deleted with a tombstone here, and on the erasure list that the
    /// connected devices receive at once. Returns whether the document was held.
    pub async fn erase(&self, doc: DocumentId) -> Result<outpost_core::Result<bool>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Erase { doc, reply })?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    /// Hands a revocation signed by the fleet CA to the engine: verified, stored, applied
    /// and relayed to every peer. Returns whether it was new.
    pub async fn learn_revocation(
        &self,
        record: SignedRevocation,
    ) -> Result<std::result::Result<bool, RevocationRefused>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::LearnRevocation(record, reply))?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    /// Tells the runner that `doc` changed without its store telling it (a cloud's fleet
    /// document, written through another site or by head office): its engine offers the
    /// change to every connected peer that may read it, as for a local write.
    pub fn changed(&self, doc: DocumentId) -> Result<()> {
        self.send(Command::Changed(doc))
    }

    /// Dials with `config` from now on (e.g. after the certificate was renewed).
    pub(crate) fn set_client_config(&self, config: quinn::ClientConfig) -> Result<()> {
        self.send(Command::SetClientConfig(Box::new(config)))
    }

    /// Waits until a connected peer (another device of the site, or the cloud) holds `doc`
    /// up to `heads` on its disk, and returns it; wrap it in a timeout (dropping the future
    /// cancels the wait). See `outpost_core::engine::Engine::await_held` for what "holds"
    /// means.
    pub async fn await_held(&self, doc: DocumentId, heads: Vec<ChangeHash>) -> Result<PeerId> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AwaitHeld { doc, heads, reply })?;
        rx.await.map_err(|_| Error::NodeStopped)
    }

    /// Like [`RunnerHandle::learn_revocation`], without waiting for the answer (for callers
    /// outside the runtime: the cloud hands a revocation to each of its sites).
    pub fn offer_revocation(&self, record: SignedRevocation) -> Result<()> {
        let (reply, _) = oneshot::channel();
        self.send(Command::LearnRevocation(record, reply))
    }

    /// Stops the runner: sends what is queued (within the grace period), closes every
    /// connection, persists sync states and flushes the store. Returns when it is done.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The loop. See the [module documentation](self).
pub struct Runner<H: Hooks> {
    links: Links,
    hooks: H,
    store: Store,
    config: RunnerConfig,
    endpoint: Option<quinn::Endpoint>,
    sessions: HashMap<ConnId, Session>,
    inbox: mpsc::Sender<SessionEvent>,
    inbox_rx: mpsc::Receiver<SessionEvent>,
    commands: RunnerInbox,
    subscription: Subscription,
    /// Callers waiting for a peer to hold their write (`Durability::Replicated`).
    held: HashMap<HeldWait, oneshot::Sender<PeerId>>,
    /// Targets that refused our certificate as revoked (logged once each).
    refused_as_revoked: std::collections::HashSet<Target>,
}

/// Marks the peers of this runner's site that the deny list names as revoked, so that status
/// and the backlog leave them out.
fn mark_denied(links: &mut Links, filter: &PeerFilter) {
    let site = match filter.site_rule() {
        crate::tls::SiteRule::SameSite(site) => Some(site),
        crate::tls::SiteRule::AnySite => None,
    };
    for entry in filter.deny_list().entries() {
        match entry {
            DenyEntry::Peer(p) => links.mark_revoked(p),
            DenyEntry::SitePeer(s, p) if Some(s) == site.as_ref() => links.mark_revoked(p),
            DenyEntry::SitePeer(..) => {}
        }
    }
}

/// Frames that may wait for the runner, over all connections of a node or cloud site.
pub(crate) const INBOX_FRAMES: usize = 64;

fn conn_id(conn: &quinn::Connection) -> ConnId {
    ConnId(conn.stable_id() as u64)
}

impl<H: Hooks> Runner<H> {
    /// A runner over `links` (whose engine syncs `store`). `endpoint` is used to dial
    /// targets; without one, the runner only serves connections handed to it.
    pub fn new(
        links: Links,
        store: Store,
        hooks: H,
        config: RunnerConfig,
        endpoint: Option<quinn::Endpoint>,
        commands: RunnerInbox,
    ) -> Runner<H> {
        // Bounded in frames (each at most `SessionConfig::max_frame_size`): what waits for the
        // engine is at most INBOX_FRAMES frames per runner.
        let (inbox, inbox_rx) = mpsc::channel(INBOX_FRAMES);
        let mut links = links;
        mark_denied(&mut links, &config.filter);
        for (_, r) in links.engine().revocations() {
            config.filter.add_revocation(r.clone());
        }
        // Local writes only: paths are for apps, and asking for them costs every write time.
        let subscription = store.subscribe(SubscriptionFilter::all().without_paths());
        Runner {
            links,
            hooks,
            store,
            config,
            endpoint,
            sessions: HashMap::new(),
            inbox,
            inbox_rx,
            commands,
            subscription,
            held: HashMap::new(),
            refused_as_revoked: std::collections::HashSet::new(),
        }
    }

    /// Runs until shut down (or until the hooks retire it), then flushes the store.
    pub async fn run(mut self) {
        let mut store_open = true;
        // Guards against a timeout that keeps lying in the past.
        let mut timer_just_fired = false;
        let period = self.hooks.housekeeping_period();
        let mut housekeeping = period.map(|p| {
            let mut i = tokio::time::interval(p);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let sleep = self.links.poll_timeout().map(|at| {
                let ms = at.millis_since(Timestamp::now());
                Duration::from_millis(ms.max(if timer_just_fired { 20 } else { 0 }))
            });
            timer_just_fired = false;
            tokio::select! {
                command = self.commands.commands.recv() => match command {
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
                Some(event) = self.inbox_rx.recv() => self.on_session_event(event),
                change = self.subscription.recv(), if store_open => match change {
                    Some(change) => {
                        match change.origin {
                            Origin::Local | Origin::Import => {
                                self.links.handle_local_change(&change.doc, Timestamp::now())
                            }
                            Origin::Quarantine => {
                                self.links.handle_document_reset(&change.doc, Timestamp::now())
                            }
                            _ => {}
                        }
                    }
                    None => store_open = false,
                },
                _ = sleep_for(sleep) => {
                    timer_just_fired = true;
                    self.links.handle_timeout(Timestamp::now());
                }
                _ = tick(housekeeping.as_mut()) => {
                    let open = self.sessions.len();
                    if self.hooks.housekeeping(&mut self.links, open) && self.sessions.is_empty() {
                        self.finish_store();
                        return;
                    }
                }
            }
            self.drain();
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Timestamp::now();
        match command {
            Command::Connected { conn, info, dialed } => {
                let id = conn_id(&conn);
                let protocol = tls::protocol_of(&conn);
                let session = Session::start(
                    conn,
                    info.clone(),
                    self.config.session.clone(),
                    self.inbox.clone(),
                );
                self.sessions.insert(id, session);
                self.close_at_expiry(id);
                if let Err(refusal) = self.config.filter.check(&info) {
                    tracing::warn!(peer = %info, %refusal, "refusing connection");
                    if let Some(s) = self.sessions.get(&id) {
                        s.close(CloseCode::Revoked);
                    }
                    if let Some(t) = dialed {
                        self.links.handle_dial_failed(&t, now);
                    }
                    self.links.handle_refused(&info, CloseCode::Revoked, now);
                    self.hooks.on_event(&Event::ConnectionRefused {
                        peer: info,
                        code: CloseCode::Revoked,
                    });
                    return;
                }
                self.links
                    .handle_connected_speaking(id, info, protocol, dialed, now);
            }
            Command::DialFailed(target) => self.links.handle_dial_failed(&target, now),
            Command::DialRevoked(target) => {
                if self.refused_as_revoked.insert(target.clone()) {
                    tracing::error!(
                        %target,
                        "the peer refused this device's certificate as revoked: the fleet \
                         revoked this device (outpost cert revoke); it cannot sync until it gets \
                         a new certificate"
                    );
                }
                self.links.handle_dial_failed(&target, now)
            }
            Command::AddTarget(target) => {
                self.links.add_target(target, now);
            }
            Command::RemoveTarget(target) => {
                self.links.remove_target(&target, now);
            }
            Command::RedialNow => self.links.redial_now(now),
            Command::PauseTarget(target) => self.links.pause_target(&target),
            Command::ResumeTarget(target) => self.links.resume_target(&target, now),
            Command::Status(reply) => {
                let _ = reply.send(self.links.status_at(Timestamp::now()));
            }
            Command::Store(reply) => {
                let _ = reply.send(self.store.clone());
            }
            Command::Disconnect { peer, code, reply } => {
                let _ = reply.send(self.links.disconnect(&peer, code, now));
            }
            Command::Cut { peer, reply } => {
                self.links.cut(&peer, now);
                let _ = reply.send(());
            }
            Command::Restore(peer) => self.links.restore(&peer, now),
            Command::Revoke(entry) => {
                mark_denied(&mut self.links, &self.config.filter);
                let n = self
                    .links
                    .close_where(|p| entry.matches(p), CloseCode::Revoked, now);
                if n > 0 {
                    tracing::warn!(%entry, connections = n, "closed connections of a revoked peer");
                }
            }
            Command::Erase { doc, reply } => {
                let _ = reply.send(self.links.erase(&doc, now));
            }
            Command::SetClientConfig(config) => {
                if let Some(endpoint) = &mut self.endpoint {
                    endpoint.set_default_client_config(*config);
                }
            }
            Command::Expired(id) => {
                if let Some(session) = self.sessions.get(&id) {
                    tracing::warn!(peer = %session.peer(), "the peer's certificate expired: closing its connection");
                    session.close(CloseCode::CertificateExpired);
                }
            }
            Command::Changed(doc) => self.links.handle_local_change(&doc, now),
            Command::AwaitHeld { doc, heads, reply } => {
                // Waits whose caller timed out (dropped its receiver) go first: what waits
                // is bounded by the callers waiting now.
                let links = &mut self.links;
                self.held.retain(|id, r| {
                    let keep = !r.is_closed();
                    if !keep {
                        links.cancel_held(*id);
                    }
                    keep
                });
                let id = self.links.await_held(doc, heads);
                self.held.insert(id, reply);
            }
            Command::LearnRevocation(record, reply) => {
                let _ = reply.send(self.links.learn_revocation(record, now));
            }
            Command::Shutdown(_) => {}
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        let now = Timestamp::now();
        match event {
            SessionEvent::Message { session, bytes, .. } => {
                let _ = self.links.handle_frame(ConnId(session as u64), &bytes, now);
            }
            SessionEvent::Closed { session, error, .. } => {
                let id = ConnId(session as u64);
                if self.sessions.remove(&id).is_some() {
                    self.hooks.on_connection_closed();
                }
                tracing::debug!(conn = %id, %error, "connection closed");
                self.links
                    .handle_closed(id, CloseCode::of_connection_error(&error), now);
            }
        }
    }

    /// Carries out what the links layer wants and hands its events to the hooks.
    fn drain(&mut self) {
        while let Some(output) = self.links.poll_output() {
            match output {
                Output::Send { conn, doc, bytes } => {
                    let Some(session) = self.sessions.get_mut(&conn) else {
                        continue;
                    };
                    match session.send(doc.as_ref(), bytes) {
                        Ok(()) => {}
                        Err(e @ Error::SendQueueFull { .. }) => {
                            tracing::warn!(error = %e, "closing connection to a slow peer");
                            session.close(CloseCode::SlowPeer);
                        }
                        Err(e @ Error::FrameTooLarge { .. }) => {
                            tracing::error!(error = %e, "message not sent")
                        }
                        Err(e) => tracing::debug!(error = %e, "message not sent"),
                    }
                }
                Output::Close { conn, code } => {
                    if let Some(session) = self.sessions.get(&conn) {
                        session.close(code);
                    }
                }
                Output::Dial { target } => self.dial(target),
            }
        }
        while let Some((id, peer)) = self.links.poll_held() {
            if let Some(reply) = self.held.remove(&id) {
                let _ = reply.send(peer);
            }
        }
        while let Some(event) = self.links.poll_event() {
            if let Event::Revoked { revocation, .. } = &event {
                // Refused in every later handshake (this runner's endpoint shares the filter).
                self.config.filter.add_revocation(revocation.clone());
            }
            self.hooks.on_event(&event);
        }
        self.hooks.after_input(&self.links);
    }

    /// Schedules the close of connection `id` when its peer's certificate expires.
    fn close_at_expiry(&self, id: ConnId) {
        let Some(der) = self.sessions.get(&id).and_then(Session::peer_certificate) else {
            return;
        };
        let Some(not_after) = crate::renew::not_after_ms(&der) else {
            return;
        };
        let at = Timestamp(not_after)
            .plus_millis(u64::try_from(self.config.expiry_grace.as_millis()).unwrap_or(u64::MAX));
        let wait = Duration::from_millis(at.millis_since(Timestamp::now()));
        let commands = self.commands.weak.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(c) = commands.upgrade() {
                let _ = c.send(Command::Expired(id));
            }
        });
    }

    /// Resolves and dials `target` in a task of its own; the outcome comes back as a command.
    fn dial(&self, target: Target) {
        let Some(endpoint) = self.endpoint.clone() else {
            tracing::warn!(%target, "this runner has no endpoint to dial with");
            return;
        };
        let commands = self.commands.weak.clone();
        let timeout = self.config.dial_timeout;
        let span = tracing::debug_span!("dial", %target);
        tokio::spawn(
            async move {
                let outcome = tokio::time::timeout(timeout, dial(&endpoint, &target)).await;
                let cmd = match outcome {
                    Ok(Ok((conn, info))) => {
                        tracing::debug!(peer = %info, "dialed");
                        Command::Connected {
                            conn,
                            info,
                            dialed: Some(target),
                        }
                    }
                    Ok(Err(e @ Error::DialRevoked { .. })) => {
                        // Said once per target, as an error (the runner keeps count): every
                        // redial is refused the same way until the device is re-issued.
                        tracing::debug!(error = %e, "dial refused");
                        Command::DialRevoked(target)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "dial failed");
                        Command::DialFailed(target)
                    }
                    Err(_) => {
                        tracing::debug!("dial timed out");
                        Command::DialFailed(target)
                    }
                };
                if let Some(commands) = commands.upgrade() {
                    if let Err(mpsc::error::SendError(Command::Connected { conn, .. })) =
                        commands.send(cmd)
                    {
                        CloseCode::Shutdown.close(&conn);
                    }
                }
            }
            .instrument(span),
        );
    }

    async fn shutdown(&mut self) {
        let now = Timestamp::now();
        self.drain();
        let conns = self.links.shutdown(now);
        // Connections the links layer was already closing go now; the others first send
        // what they queued.
        let mut finishing = Vec::new();
        for conn in conns {
            if let Some(s) = self.sessions.remove(&conn) {
                finishing.push(tokio::spawn(
                    s.finish(CloseCode::Shutdown, self.config.shutdown_grace),
                ));
            }
        }
        self.sessions.clear();
        for f in finishing {
            let _ = f.await;
        }
        while let Some(event) = self.links.poll_event() {
            self.hooks.on_event(&event);
        }
        self.hooks.on_shutdown(&self.links);
        self.finish_store();
    }

    fn finish_store(&self) {
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "flushing the store failed");
        }
    }
}

/// How long the attempt on one address of a name has before the next address is tried
/// alongside it (RFC 8305's "connection attempt delay").
const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(250);

/// Resolves `target` (a name is resolved again on every dial: addresses change) and
/// connects to an address that answers, preferring them in the resolver's order.
///
/// Attempts are staggered, not sequential: an address that does not answer (an instance
/// that died) holds its handshake until QUIC's idle timeout, and the dial's own timeout is
/// barely longer, so in sequence the addresses after a dead one got what little was left,
/// and none after two dead ones. Here each next address starts [`NEXT_ADDRESS_DELAY`] after
/// the previous one (at once if every attempt so far failed); the first handshake to
/// complete wins and the others are dropped, which closes them.
async fn dial(
    endpoint: &quinn::Endpoint,
    target: &Target,
) -> Result<(quinn::Connection, PeerInfo)> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
        .await
        .map_err(|e| Error::Dial {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    connect_first(endpoint, target, addrs).await
}

/// Connects to one of `addrs` (the addresses of `target`), staggered as [`dial`] says.
async fn connect_first(
    endpoint: &quinn::Endpoint,
    target: &Target,
    addrs: Vec<SocketAddr>,
) -> Result<(quinn::Connection, PeerInfo)> {
    let mut addrs = addrs.into_iter();
    let mut attempts = tokio::task::JoinSet::new();
    let mut last = None;
    loop {
        if attempts.is_empty() {
            // Nothing in flight: the next address now, or the dial failed.
            let Some(addr) = addrs.next() else { break };
            attempts.spawn(connect(endpoint.clone(), addr));
        }
        let more = !addrs.as_slice().is_empty();
        tokio::select! {
            Some(done) = attempts.join_next() => match done {
                Ok(Ok(conn)) => {
                    // Dropping the set aborts the attempts still running.
                    drop(attempts);
                    return match tls::peer_info_of(&conn) {
                        Ok(info) => Ok((conn, info)),
                        Err(e) => {
                            tracing::warn!(error = %e, "peer has no usable identity");
                            CloseCode::BadIdentity.close(&conn);
                            Err(e)
                        }
                    };
                }
                Ok(Err(Attempt::Failed(e))) => last = Some(e),
                Ok(Err(Attempt::Revoked)) => {
                    return Err(Error::DialRevoked { target: target.to_string() });
                }
                Err(e) => last = Some(format!("the connection attempt failed: {e}")),
            },
            _ = tokio::time::sleep(NEXT_ADDRESS_DELAY), if more => {
                if let Some(addr) = addrs.next() {
                    attempts.spawn(connect(endpoint.clone(), addr));
                }
            }
        }
    }
    Err(Error::Dial {
        target: target.to_string(),
        reason: last.unwrap_or_else(|| "the name resolved to no address".into()),
    })
}

/// One QUIC handshake with `addr`.
async fn connect(
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
) -> std::result::Result<quinn::Connection, Attempt> {
    let connecting = endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|e| Attempt::Failed(format!("{addr}: {e}")))?;
    connecting.await.map_err(|e| {
        if crate::frame::refused_as_revoked(&e) {
            Attempt::Revoked
        } else {
            Attempt::Failed(format!("{addr}: {e}"))
        }
    })
}

/// Why one handshake failed.
enum Attempt {
    /// The peer refused our certificate as revoked: no other address of the target will
    /// take it either.
    Revoked,
    Failed(String),
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{DenyList, SiteRule, TransportTuning};
    use crate::FleetCa;

    /// A live address behind two that never answer (UDP sockets that nobody reads: no
    /// handshake, no ICMP error) is reached within the timeout a node gives one dial.
    #[tokio::test]
    async fn a_dial_reaches_a_live_address_behind_two_dead_ones() {
        let ca = FleetCa::generate("acme").expect("ca");
        let cert = |peer: &str| {
            ca.issue(&PeerInfo::parse("paris", peer, "pos").expect("id"))
                .expect("cert")
        };
        let (server_cert, client_cert) = (cert("pos-1"), cert("pos-2"));
        let filter = |c: &crate::DeviceCert| {
            PeerFilter::new(SiteRule::for_identity(c.info()), DenyList::default())
        };
        let tuning = TransportTuning::default();
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = tls::endpoint(&server_cert, &filter(&server_cert), &tuning, local)
            .expect("server endpoint");
        let live = server.local_addr().expect("server address");
        let accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(incoming) = server.accept().await {
                if let Ok(conn) = incoming.await {
                    held.push(conn);
                }
            }
        });
        let dead: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| std::net::UdpSocket::bind(local).expect("bind a silent socket"))
            .collect();
        let mut addrs: Vec<SocketAddr> = dead
            .iter()
            .map(|s| s.local_addr().expect("address"))
            .collect();
        addrs.push(live);
        let client = tls::endpoint(&client_cert, &filter(&client_cert), &tuning, local)
            .expect("client endpoint");
        // What a node gives one dial (`NodeConfig`'s handshake timeout).
        let budget = tuning.idle_timeout + Duration::from_secs(1);
        let target = Target::new("cloud.example.test:7733");
        let (conn, info) = tokio::time::timeout(budget, connect_first(&client, &target, addrs))
            .await
            .expect("the live address is reached within one dial's timeout")
            .expect("the dial succeeds");
        assert_eq!(info.peer.to_string(), "pos-1");
        assert_eq!(conn.remote_address(), live);
        accepting.abort();
    }
}
