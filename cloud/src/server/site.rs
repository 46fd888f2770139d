//! One site in the cloud: its store namespace, its engine and its devices' sessions.
//!
//! The task owns the [`Engine`] and the [`Session`]s of the site, like the device node's
//! engine loop does: it waits for new connections, session events (frames, closes) and
//! the engine's next timeout, and after every input drains `poll_transmit` into the
//! sessions' bounded queues and `poll_event` into the log and the metrics. No lock is held
//! across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_core::{
    engine::EngineMetrics, DocumentId, Engine, EngineConfig, EngineEvent, PeerId, PeerInfo, SiteId,
    Store, StoreOptions, Timestamp,
};
use outpost_transport::{CloseCode, Session, SessionEvent};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::Shared;

/// Commands to a site task.
pub(crate) enum SiteCmd {
    /// A device of the site connected (its identity is from its verified certificate).
    Attach {
        conn: quinn::Connection,
        info: PeerInfo,
    },
    /// Persist, close every session gracefully, flush, and stop.
    Shutdown(oneshot::Sender<()>),
}

/// Starts the task of `site`; returns its command channel.
pub(crate) fn spawn(shared: Arc<Shared>, site: SiteId) -> mpsc::UnboundedSender<SiteCmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("site", %site);
    tokio::spawn(run(shared, site, rx).instrument(span));
    tx
}

/// How long a site must be without traffic before its changed documents are compacted.
const QUIET: Duration = Duration::from_secs(1);

/// A document is compacted once this many changes arrived since its last compaction (and
/// once per load, if it changed since): a trickle of live orders is not worth a rewrite
/// each, a catch-up of a day is.
const COMPACT_AFTER_CHANGES: usize = 64;

/// How often an idle site looks at what it may evict.
fn housekeeping_period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

async fn run(shared: Arc<Shared>, site: SiteId, mut cmds: mpsc::UnboundedReceiver<SiteCmd>) {
    let namespace = format!("site/{site}/");
    let store = match Store::on_db(
        shared.db.clone(),
        &namespace,
        StoreOptions {
            identity: Some(shared.local.clone()),
            policy: shared.config.policy.clone(),
            ..StoreOptions::default()
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the site's storage; refusing its devices");
            // Close what was sent to us; the registry entry is retired so the next
            // connection tries again.
            refuse_all(&shared, &site, &mut cmds);
            return;
        }
    };
    let engine = Engine::new(
        store,
        EngineConfig::new(shared.local.clone(), shared.config.policy.clone()),
    );
    let (inbox, inbox_rx) = mpsc::channel(1024);
    let mut task = SiteTask {
        shared,
        site,
        engine,
        sessions: HashMap::new(),
        inbox,
        last_metrics: EngineMetrics::default(),
        last_active: Instant::now(),
        backlog_stale: true,
        compact_pending: BTreeMap::new(),
        documents_loaded: 0,
        checked_at_load: false,
    };
    task.shared
        .metrics
        .set_site(&task.site, |s| s.loaded = true);
    tracing::debug!("site loaded");
    task.run(cmds, inbox_rx).await;
}

fn refuse_all(shared: &Shared, site: &SiteId, cmds: &mut mpsc::UnboundedReceiver<SiteCmd>) {
    loop {
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                SiteCmd::Attach { conn, .. } => {
                    CloseCode::Shutdown.close(&conn);
                    shared.session_closed(site);
                }
                SiteCmd::Shutdown(reply) => {
                    let _ = reply.send(());
                }
            }
        }
        if shared.try_retire(site) {
            // A command may have slipped in before retiring.
            while let Ok(cmd) = cmds.try_recv() {
                match cmd {
                    SiteCmd::Attach { conn, .. } => CloseCode::Shutdown.close(&conn),
                    SiteCmd::Shutdown(reply) => {
                        let _ = reply.send(());
                    }
                }
            }
            return;
        }
        std::thread::yield_now();
    }
}

struct SiteTask {
    shared: Arc<Shared>,
    site: SiteId,
    engine: Engine,
    sessions: HashMap<PeerId, Session>,
    inbox: mpsc::Sender<SessionEvent>,
    last_metrics: EngineMetrics,
    last_active: Instant,
    /// Something happened since the backlog was last computed.
    backlog_stale: bool,
    /// Changes received per document since it was last compacted; a document is compacted
    /// once the site is quiet and enough changes have accumulated.
    compact_pending: BTreeMap<DocumentId, usize>,
    /// Whether the documents were checked for compaction since the site was loaded.
    checked_at_load: bool,
    /// This site's share of `Shared::documents_loaded`.
    documents_loaded: i64,
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl SiteTask {
    async fn run(
        &mut self,
        mut cmds: mpsc::UnboundedReceiver<SiteCmd>,
        mut inbox: mpsc::Receiver<SessionEvent>,
    ) {
        let mut housekeeping = tokio::time::interval(housekeeping_period(self.shared.config.idle));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut timer_just_fired = false;
        loop {
            let sleep = self.engine.poll_timeout().map(|at| {
                let ms = at.millis_since(Timestamp::now());
                // Guards against an engine that keeps asking for a timeout in the past.
                Duration::from_millis(ms.max(if timer_just_fired { 20 } else { 0 }))
            });
            timer_just_fired = false;
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(SiteCmd::Attach { conn, info }) => self.attach(conn, info),
                    Some(SiteCmd::Shutdown(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                Some(event) = inbox.recv() => self.on_session_event(event),
                _ = sleep_for(sleep) => {
                    timer_just_fired = true;
                    self.engine.handle_timeout(Timestamp::now());
                }
                _ = housekeeping.tick() => {
                    if self.housekeeping() {
                        return;
                    }
                }
            }
            self.drain();
        }
    }

    fn attach(&mut self, conn: quinn::Connection, info: PeerInfo) {
        let now = Timestamp::now();
        self.last_active = Instant::now();
        self.backlog_stale = true;
        if info.peer == self.shared.local.peer {
            tracing::warn!(peer = %info, "refusing a device with the cloud's own peer id");
            CloseCode::BadIdentity.close(&conn);
        }
        if let Some(old) = self.sessions.remove(&info.peer) {
            // The device reconnected (its old connection is dead or dying): the new one wins.
            tracing::debug!(peer = %info, "replacing the existing connection");
            old.close(CloseCode::Duplicate);
            self.engine.handle_disconnect(&info.peer, now);
        } else {
            tracing::info!(peer = %info, remote = %conn.remote_address(), "device connected");
        }
        // Started even for a refused connection: its `Closed` event settles the count.
        let session = Session::start(
            conn,
            info.clone(),
            self.shared.config.session.clone(),
            self.inbox.clone(),
        );
        if info.peer == self.shared.local.peer {
            return;
        }
        self.sessions.insert(info.peer.clone(), session);
        self.engine.handle_connect(info, now);
        self.update_connected();
        if !self.checked_at_load {
            // `handle_connect` has just loaded every document for its digests.
            self.checked_at_load = true;
            if let Ok(docs) = self.engine.store().documents() {
                for doc in docs {
                    self.compact_pending.insert(doc, COMPACT_AFTER_CHANGES);
                }
            }
        }
    }

    fn update_connected(&self) {
        let n = self.sessions.len() as u64;
        self.shared
            .metrics
            .set_site(&self.site, |s| s.connected = n);
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        let now = Timestamp::now();
        self.last_active = Instant::now();
        self.backlog_stale = true;
        match event {
            SessionEvent::Message {
                session,
                peer,
                doc,
                bytes,
            } => {
                outpost_transport::drive::deliver(
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
                self.shared.session_closed(&self.site);
                if self.sessions.get(&peer).map(Session::id) != Some(session) {
                    return;
                }
                if let Some(s) = self.sessions.remove(&peer) {
                    tracing::info!(peer = %s.peer(), %error, "device disconnected");
                    self.engine.handle_disconnect(&peer, now);
                    self.update_connected();
                }
            }
        }
    }

    /// Sends what the engine wants sent and logs its events.
    fn drain(&mut self) {
        outpost_transport::drive::send_transmits(&mut self.engine, &mut self.sessions);
        while let Some(event) = self.engine.poll_event() {
            match event {
                EngineEvent::RemoteChange { peer, doc, changes } => {
                    tracing::debug!(%peer, %doc, changes, "changes applied");
                    *self.compact_pending.entry(doc).or_default() += changes;
                }
                EngineEvent::ChangeRefused { peer, doc, reason } => {
                    tracing::warn!(%peer, %doc, %reason, "changes refused")
                }
                EngineEvent::RefusedByPeer { peer, doc, reason } => {
                    tracing::warn!(%peer, %doc, %reason, "device refused our changes")
                }
                EngineEvent::InSync { peer, doc } => tracing::debug!(%peer, %doc, "in sync"),
                EngineEvent::ProtocolError { peer, message } => {
                    tracing::warn!(%peer, %message, "protocol error")
                }
            }
        }
        let now = self.engine.metrics().clone();
        self.shared
            .metrics
            .add_engine_delta(&self.site, &mut self.last_metrics, &now);
    }

    /// Evicts idle documents, refreshes the backlog; returns true when the site retired.
    fn housekeeping(&mut self) -> bool {
        let idle = self.shared.config.idle;
        // The backlog is computed once after activity; computing it reloads documents,
        // which must not happen on every tick of an idle site.
        if self.backlog_stale && self.last_active.elapsed() >= Duration::from_millis(200) {
            self.refresh_backlog();
        }
        let store = self.engine.store().clone();
        if !self.compact_pending.is_empty() && self.last_active.elapsed() >= QUIET {
            let due: Vec<DocumentId> = self
                .compact_pending
                .iter()
                .filter(|(_, n)| **n >= COMPACT_AFTER_CHANGES)
                .map(|(d, _)| d.clone())
                .collect();
            for doc in due {
                self.compact_pending.remove(&doc);
                self.compact(&store, &doc);
            }
        }
        // Under memory pressure, what was not used in the last second goes too.
        let pressure = self.shared.documents_loaded.load(Ordering::Relaxed)
            > self.shared.config.max_documents as i64;
        let max_idle = if pressure {
            idle.min(Duration::from_secs(1))
        } else {
            idle
        };
        let evicted = store.evict_idle(max_idle);
        if evicted > 0 {
            tracing::debug!(evicted, pressure, "idle documents unloaded");
        }
        self.set_documents_loaded(store.loaded_documents() as i64);
        if self.sessions.is_empty()
            && self.last_active.elapsed() >= idle
            && self.shared.try_retire(&self.site)
        {
            if let Err(e) = store.flush() {
                tracing::error!(error = %e, "flushing the site's storage failed");
            }
            self.set_documents_loaded(0);
            self.shared
                .metrics
                .set_site(&self.site, |s| s.loaded = false);
            tracing::debug!("site unloaded");
            return true;
        }
        false
    }

    /// Rewrites a document as one compressed snapshot, unless it already is one at its
    /// current heads.
    ///
    /// Changes arrive as incremental chunks (a day of orders is ~20 times larger that way
    /// than compressed), and sled keeps the pages it has read in memory: a cloud that
    /// loads thousands of sites must keep what it reads small. The heads of the last
    /// compaction are kept in the `cloud/compacted` tree, so a document is compacted once
    /// per burst of changes, not on every load.
    fn compact(&self, store: &Store, doc: &DocumentId) {
        let heads = match store.heads(doc) {
            Ok(h) if !h.is_empty() => h,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%doc, error = %e, "cannot read the document to compact it");
                return;
            }
        };
        let mut mark: Vec<u8> = heads.iter().flat_map(|h| h.0).collect();
        mark.sort_unstable();
        let key = format!("{}\0{doc}", self.site);
        if self
            .shared
            .compacted
            .get(key.as_bytes())
            .ok()
            .flatten()
            .as_deref()
            == Some(&mark[..])
        {
            return;
        }
        match store.compact(doc) {
            Ok(()) => {
                if let Err(e) = self.shared.compacted.insert(key.as_bytes(), mark) {
                    tracing::warn!(%doc, error = %e, "cannot record the compaction");
                }
                tracing::debug!(%doc, "compacted");
            }
            Err(e) => tracing::warn!(%doc, error = %e, "compaction failed"),
        }
    }

    fn refresh_backlog(&mut self) {
        let backlog = self.engine.status().unsynced_changes() as u64;
        self.backlog_stale = false;
        self.shared
            .metrics
            .set_site(&self.site, |s| s.backlog = backlog);
    }

    async fn shutdown(&mut self) {
        let now = Timestamp::now();
        self.drain();
        let sessions: Vec<Session> = self.sessions.drain().map(|(_, s)| s).collect();
        for s in &sessions {
            self.engine.handle_disconnect(&s.peer().peer, now);
        }
        self.update_connected();
        let grace = self.shared.config.shutdown_grace;
        let finishing: Vec<_> = sessions
            .into_iter()
            .map(|s| tokio::spawn(s.finish(CloseCode::Shutdown, grace)))
            .collect();
        for f in finishing {
            let _ = f.await;
        }
        self.refresh_backlog();
        if let Err(e) = self.engine.store().flush() {
            tracing::error!(error = %e, "flushing the site's storage at shutdown failed");
        }
        self.set_documents_loaded(0);
        self.shared
            .metrics
            .set_site(&self.site, |s| s.loaded = false);
    }

    /// Records how many of this site's documents are in memory.
    fn set_documents_loaded(&mut self, n: i64) {
        self.shared
            .documents_loaded
            .fetch_add(n - self.documents_loaded, Ordering::Relaxed);
        self.documents_loaded = n;
        self.shared
            .metrics
            .set_site(&self.site, |s| s.documents_loaded = n as u64);
    }
}
