//! One site in the cloud: its store namespace, and the transport's one [`Runner`] with the
//! cloud's hooks.
//!
//! The runner (the same loop as a device's `Node`) owns the site's links layer, engine and
//! sessions. The hooks add what a cloud site needs: metrics, compaction of documents once the
//! site is quiet, eviction of idle documents, and retiring the whole site when no device has
//! been connected for a while.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_core::{
    engine::EngineMetrics, CloseCode, DocumentId, Engine, EngineConfig, Event, LinkConfig, Links,
    SiteId, Store, StoreOptions,
};
use outpost_transport::{
    runner_channel, Hooks, PeerFilter, Runner, RunnerConfig, RunnerHandle, RunnerInbox, SiteRule,
};
use tracing::Instrument;

use super::Shared;

/// Starts the task of `site`; returns the handle of its runner. Connections may be
/// attached at once: they wait until the site's storage is open.
pub(crate) fn spawn(shared: Arc<Shared>, site: SiteId) -> RunnerHandle {
    let (handle, inbox) = runner_channel();
    let span = tracing::info_span!("site", %site);
    tokio::spawn(run(shared, site, inbox).instrument(span));
    handle
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

async fn run(shared: Arc<Shared>, site: SiteId, mut inbox: RunnerInbox) {
    let namespace = super::admin::namespace(&site);
    let store = match Store::on_db(
        shared.db.clone(),
        &namespace,
        StoreOptions {
            identity: Some(shared.local.clone()),
            policy: shared.config.policy.clone(),
            signer: Some(shared.signer.clone()),
            mirror: shared.pg.as_ref().map(|pg| pg.mirror(site.as_str())),
            fleet: Some(shared.fleet.store().clone()),
            ..StoreOptions::default()
        },
    )
    .map_err(|e| e.to_string())
    .and_then(|store| match &shared.pg {
        // On PostgreSQL: the site's copy here is brought up to date before any device.
        Some(pg) => {
            super::pg::blocking(|| pg.load(site.as_str(), &store)).map(|reg| (store, Some(reg)))
        }
        None => Ok((store, None)),
    }) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the site's storage; refusing its devices");
            // Close what was sent to us; the registry entry is retired so the next
            // connection tries again.
            loop {
                for _ in 0..inbox.refuse_pending(CloseCode::Shutdown) {
                    shared.session_closed(&site);
                }
                if shared.try_retire(&site) {
                    inbox.refuse_pending(CloseCode::Shutdown);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let mut engine_config = EngineConfig::new(shared.local.clone(), shared.config.policy.clone());
    shared.config.limits.apply(&mut engine_config);
    // The cloud relays between devices of a site: it verifies and keeps signatures, so
    // that devices that never met the author can check its changes.
    engine_config.verifier = Some(shared.verifier.clone());
    engine_config.signatures = shared.config.signatures;
    let (store, pg_registration) = store;
    let engine = Engine::new(store.clone(), engine_config);
    // The cloud never dials: the links layer only serves the devices' connections.
    let mut links = Links::new(engine, LinkConfig::default(), 0);
    // Revocations are fleet-wide: every site takes each one the cloud keeps.
    for record in shared.stored_revocations() {
        if let Err(e) = links.learn_revocation(record, outpost_core::Timestamp::now()) {
            tracing::error!(error = %e, "a stored revocation was not taken");
        }
    }
    let config = RunnerConfig {
        session: shared.config.session.clone(),
        shutdown_grace: shared.config.shutdown_grace,
        dial_timeout: Duration::from_secs(10),
        // Routing already admitted only this site's devices; the endpoint's verifier
        // enforces the deny list in the handshake.
        filter: PeerFilter::new(SiteRule::SameSite(site.clone()), shared.filter.deny_list()),
        expiry_grace: shared.config.expiry_grace,
    };
    let hooks = SiteHooks {
        shared,
        site,
        store: store.clone(),
        last_metrics: EngineMetrics::default(),
        last_active: Instant::now(),
        backlog_stale: true,
        compact_pending: BTreeMap::new(),
        documents_loaded: 0,
        checked_at_load: false,
        connected: 0,
        bytes_at: None,
        pg: pg_registration,
    };
    hooks
        .shared
        .metrics
        .set_site(&hooks.site, |s| s.loaded = true);
    tracing::debug!("site loaded");
    Runner::new(links, store, hooks, config, None, inbox)
        .run()
        .await;
}

struct SiteHooks {
    shared: Arc<Shared>,
    site: SiteId,
    store: Store,
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
    connected: usize,
    /// When the site's stored bytes were last measured (they are read from every chunk's
    /// length, so at most every `BYTES_EVERY`).
    bytes_at: Option<Instant>,
    /// On PostgreSQL: keeps the site's copy current with other instances while it runs.
    pg: Option<super::pg::Registration>,
}

/// How often a busy site measures its stored bytes for `/metrics`.
const BYTES_EVERY: Duration = Duration::from_secs(10);

impl Hooks for SiteHooks {
    fn on_event(&mut self, event: &Event) {
        self.last_active = Instant::now();
        self.backlog_stale = true;
        self.seen();
        match event {
            Event::PeerConnected(peer) => {
                tracing::info!(%peer, "device connected");
                self.set_connected(self.connected + 1);
                if !self.checked_at_load {
                    // The engine has just loaded every document for its digests.
                    self.checked_at_load = true;
                    if let Ok(docs) = self.store.documents() {
                        for doc in docs {
                            self.compact_pending.insert(doc, COMPACT_AFTER_CHANGES);
                        }
                    }
                }
            }
            Event::PeerDisconnected(peer) => {
                tracing::info!(%peer, "device disconnected");
                self.set_connected(self.connected.saturating_sub(1));
            }
            Event::ConnectionRefused { peer, code } => {
                tracing::warn!(%peer, %code, "connection refused")
            }
            Event::RemoteChange { peer, doc, changes } => {
                tracing::debug!(%peer, %doc, changes, "changes applied");
                *self.compact_pending.entry(doc.clone()).or_default() += changes;
            }
            Event::ChangeRefused { peer, doc, reason } => {
                tracing::warn!(%peer, %doc, %reason, "changes refused")
            }
            Event::RefusedByPeer { peer, doc, reason } => {
                tracing::warn!(%peer, %doc, %reason, "device refused our changes")
            }
            Event::InSync { peer, doc } => tracing::debug!(%peer, %doc, "in sync"),
            Event::ProtocolError { peer, message } => {
                tracing::warn!(%peer, %message, "protocol error")
            }
            Event::StorageFailed { .. } => {}
            Event::Revoked { record, .. } => {
                if let Err(e) = self.shared.learn_revocation(record.clone()) {
                    tracing::error!(error = %e, "a revocation learnt by a site was not kept fleet-wide");
                }
            }
            _ => {}
        }
    }

    fn after_input(&mut self, links: &Links) {
        let now = links.engine().metrics().clone();
        self.shared
            .metrics
            .add_engine_delta(&self.site, &mut self.last_metrics, &now);
    }

    fn on_connection_closed(&mut self) {
        self.shared.session_closed(&self.site);
    }

    fn housekeeping_period(&self) -> Option<Duration> {
        Some(housekeeping_period(self.shared.config.idle))
    }

    fn housekeeping(&mut self, links: &mut Links, open: usize) -> bool {
        self.tick(links, open)
    }

    fn on_shutdown(&mut self, links: &Links) {
        self.set_connected(0);
        self.refresh_backlog(links);
        self.set_documents_loaded(0);
        self.shared
            .metrics
            .set_site(&self.site, |s| s.loaded = false);
    }
}

impl SiteHooks {
    /// Devices connected now, from the links layer's connect and disconnect events.
    fn set_connected(&mut self, n: usize) {
        self.connected = n;
        self.shared
            .metrics
            .set_site(&self.site, |s| s.connected = n as u64);
    }

    /// A device of the site was heard from now.
    fn seen(&self) {
        let now = outpost_core::Timestamp::now().as_millis();
        self.shared
            .metrics
            .set_site(&self.site, |s| s.last_seen_ms = now);
    }

    /// Evicts idle documents, refreshes the backlog; returns true when the site retired.
    fn tick(&mut self, links: &Links, open: usize) -> bool {
        if self.connected > 0 {
            // A connected device is seen, whether or not it sends anything.
            self.seen();
        }
        let idle = self.shared.config.idle;
        // The backlog is computed once after activity; computing it reloads documents,
        // which must not happen on every tick of an idle site.
        if self.backlog_stale && self.last_active.elapsed() >= Duration::from_millis(200) {
            self.refresh_backlog(links);
        }
        let store = self.store.clone();
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
        if open == 0 && self.last_active.elapsed() >= idle && self.shared.try_retire(&self.site) {
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
                if let Some(pg) = &self.pg {
                    if let Err(e) = super::pg::blocking(|| pg.compact(store, doc)) {
                        tracing::warn!(%doc, error = %e, "compaction in PostgreSQL failed (retried at the next one)");
                    }
                }
                if let Err(e) = self.shared.compacted.insert(key.as_bytes(), mark) {
                    tracing::warn!(%doc, error = %e, "cannot record the compaction");
                }
                tracing::debug!(%doc, "compacted");
            }
            Err(e) => tracing::warn!(%doc, error = %e, "compaction failed"),
        }
    }

    fn refresh_backlog(&mut self, links: &Links) {
        let status = links.status();
        let backlog = status.unsynced_changes() as u64;
        let devices = status.peers.iter().filter(|p| !p.revoked).count() as u64;
        self.backlog_stale = false;
        self.shared.metrics.set_site(&self.site, |s| {
            s.backlog = backlog;
            s.devices = devices;
        });
        if self.bytes_at.is_none_or(|t| t.elapsed() >= BYTES_EVERY) {
            self.bytes_at = Some(Instant::now());
            match self.store.documents_bytes() {
                Ok(bytes) => self
                    .shared
                    .metrics
                    .set_site(&self.site, |s| s.stored_bytes = bytes),
                Err(e) => tracing::warn!(error = %e, "cannot measure the site's stored bytes"),
            }
        }
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
