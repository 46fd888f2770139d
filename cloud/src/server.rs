//! The cloud peer: many sites behind one QUIC endpoint.
//!
//! # How sites are kept apart
//!
//! One sled database holds every site; each site's documents, sync states and bookkeeping
//! live in the namespace `site/<site>/` (`Store::on_db`). Each site has its own [`Engine`]
//! in its own task. A connection is routed by the site in the device's **verified
//! certificate** (never by anything the device sends), so a device only ever reaches its
//! own site's engine, and the engine only offers that site's documents.
//!
//! # Memory
//!
//! A site is loaded (store handle and engine) when one of its devices connects. Its
//! documents load on first use and are dropped after [`CloudConfig::idle`] without use
//! (`Store::evict_idle`); a site with no device connected for that long is unloaded
//! entirely. Sync states are persisted, so unloading costs nothing but a reload.
//!
//! # Relay
//!
//! The engine of a site offers changes received from one device to the site's other
//! connected devices at once, and stores them for devices that connect later, so devices
//! that cannot reach each other on the site's network still converge through the cloud.
//!
//! [`Engine`]: outpost_core::Engine

mod admin;
mod api;
mod config;
mod control;
mod fleet;
mod http;
mod metrics;
mod overview;
mod pg;
mod site;
mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use outpost_binsupport::Signals;
use outpost_core::revocation::SignedRevocation;
use outpost_core::CloseCode;
use outpost_core::{PeerInfo, Role, SiteId};
use outpost_transport::{
    endpoint, peer_info_of, CloseCodeExt, DenyList, DeviceCert, PeerFilter, RunnerHandle, SiteRule,
};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use self::config::{
    Args, CloudCommand, CloudConfig, SiteLimits, TokenCommand, WebTokenCommand,
    CLOUD_DOCUMENT_STREAMS,
};
pub use self::fleet::{Fleet, FleetError};
use self::http::Http;
pub use self::http::HttpLimits;
use self::metrics::Metrics;
pub use self::overview::SiteOverview;

/// The head-office identity of the API's writes: `<cloud peer>-api` of the cloud's site
/// (the fleet), role `head-office`, with a certificate of the fleet CA issued now (a new key
/// and actor each start: actors never repeat).
fn head_office_author(
    ca: &outpost_transport::FleetCa,
    local: &PeerInfo,
) -> Result<outpost_core::Author> {
    let info = PeerInfo {
        site: local.site.clone(),
        peer: format!("{}-api", local.peer)
            .parse()
            .context("the cloud's peer id makes no valid head-office peer id")?,
        role: api::HEAD_OFFICE_ROLE
            .parse()
            .expect("the head-office role name is valid"),
    };
    let cert = ca
        .issue(&info)
        .context("cannot issue the head-office certificate of the API's writes")?;
    let signer = outpost_transport::DeviceSigner::new(&cert)
        .context("the head-office certificate's key cannot sign changes")?;
    Ok(outpost_core::Author::new(info, Arc::new(signer)))
}

/// The head-office identity of the API's writes from a certificate and key issued offline
/// by the fleet CA (`--head-office-cert`, `--head-office-key`): the CA's key then need not be
/// on the cloud. The certificate must be of role `head-office` and chain to the fleet CA,
/// else the cloud does not start (every device would refuse its writes).
fn head_office_from_files(
    (cert, key): &(std::path::PathBuf, std::path::PathBuf),
    ca_pem: &str,
    verifier: &outpost_transport::FleetVerifier,
) -> Result<outpost_core::Author> {
    let read = |path: &std::path::PathBuf, what: &str| {
        std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the head-office {what} {}: give the files that `outpost cert issue \
                 --role head-office --out DIR` wrote (DIR/cert.pem, DIR/key.pem)",
                path.display()
            )
        })
    };
    let device = outpost_transport::DeviceCert::from_pem(
        &read(cert, "certificate")?,
        &read(key, "key")?,
        ca_pem,
    )
    .context(
        "the head-office certificate does not fit its key or the fleet CA (--head-office-cert, \
         --head-office-key, --ca)",
    )?;
    let info = device.info().clone();
    if info.role.as_str() != api::HEAD_OFFICE_ROLE {
        bail!(
            "--head-office-cert is a certificate of {info}, role {}: issue one of role {} with \
             `outpost cert issue --role {}`",
            info.role,
            api::HEAD_OFFICE_ROLE,
            api::HEAD_OFFICE_ROLE
        );
    }
    use outpost_core::signing::Verifier as _;
    verifier
        .verify_certificate(device.cert_der().as_ref())
        .map_err(|e| anyhow!("the head-office certificate of {info} is not valid: {e}"))?;
    let signer = outpost_transport::DeviceSigner::new(&device)
        .context("the head-office certificate's key cannot sign changes")?;
    Ok(outpost_core::Author::new(info, Arc::new(signer)))
}

/// State shared by the accept loop, the site tasks and the HTTP thread.
pub(crate) struct Shared {
    db: outpost_core::Database,
    /// With `--store postgres://...`: the database every instance shares (`db` is then
    /// this instance's cache).
    pg: Option<Arc<pg::PgSites>>,
    /// `<site>\0<doc>` -> the sorted heads at which the document was last compacted.
    compacted: outpost_core::storage::Keyspace,
    /// Record id -> a revocation signed by the fleet CA (fleet-wide: every site's engine
    /// gets each one, and relays it to its devices).
    revocations: outpost_core::storage::Keyspace,
    local: PeerInfo,
    config: CloudConfig,
    /// Signs what the cloud writes, with its certificate's key.
    signer: outpost_core::signing::SharedSigner,
    /// Checks the signatures of changes against the fleet CA.
    verifier: outpost_core::signing::SharedVerifier,
    /// Admission of the endpoint (every site, the deny list).
    filter: PeerFilter,
    /// Renews device certificates (when the cloud holds the fleet CA's key).
    renewer: Option<outpost_transport::Renewer>,
    /// The identity the API's writes are authored as (issue 27): role `head-office`, with a
    /// certificate the cloud issues itself at start when it holds the fleet CA's key.
    /// `None` (no CA key): they are authored by the cloud, as before.
    pub(crate) head_office: Option<outpost_core::Author>,
    metrics: Metrics,
    /// Documents in memory over all sites (each site adds what it changed).
    documents_loaded: AtomicI64,
    sites: Mutex<HashMap<SiteId, SiteEntry>>,
    stopping: AtomicBool,
    /// The fleet-wide documents, one copy for every site (see `fleet.rs`).
    pub(crate) fleet: Fleet,
}

/// A loaded site: its task, and how many sessions were handed to it and not yet closed.
/// The count is changed only under the registry lock, so a task retires only when no
/// connection is on its way to it.
struct SiteEntry {
    runner: RunnerHandle,
    sessions: usize,
}

impl Shared {
    fn sites(&self) -> MutexGuard<'_, HashMap<SiteId, SiteEntry>> {
        self.sites.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands an authenticated connection to its site's task, loading the site if needed.
    fn route(self: &Arc<Self>, conn: quinn::Connection, info: PeerInfo) {
        let mut sites = self.sites();
        if self.stopping.load(Ordering::SeqCst) {
            CloseCode::Shutdown.close(&conn);
            return;
        }
        let site = info.site.clone();
        let mut conn = conn;
        // A task that died (a bug) is replaced; its sessions were closed with it.
        for _ in 0..2 {
            let entry = sites.entry(site.clone()).or_insert_with(|| SiteEntry {
                runner: site::spawn(self.clone(), site.clone()),
                sessions: 0,
            });
            match entry.runner.attach(conn, info.clone()) {
                Ok(()) => {
                    entry.sessions += 1;
                    return;
                }
                Err(back) => {
                    tracing::error!(%site, "site task is gone; restarting it");
                    sites.remove(&site);
                    conn = back;
                }
            }
        }
        CloseCode::Shutdown.close(&conn);
    }

    /// Erases `doc` in `site` through the site's runner, loading the site if needed (see
    /// [`Cloud::erase`]).
    async fn erase(
        self: &Arc<Self>,
        site: &SiteId,
        doc: &outpost_core::DocumentId,
    ) -> Result<bool> {
        let runner = {
            let mut sites = self.sites();
            if self.stopping.load(Ordering::SeqCst) {
                bail!("the cloud is stopping; erase {doc} once it runs again");
            }
            sites
                .entry(site.clone())
                .or_insert_with(|| SiteEntry {
                    runner: site::spawn(self.clone(), site.clone()),
                    sessions: 0,
                })
                .runner
                .clone()
        };
        let held = runner
            .erase(doc.clone())
            .await
            .with_context(|| format!("the task of site {site} stopped"))??;
        if let Some(pg) = &self.pg {
            // The erasure list is committed (the runner flushed it); now the rows go.
            let rows = pg::blocking(|| pg.erase(site.as_str(), doc))
                .map_err(|e| anyhow::anyhow!("{doc} is erased on this instance, but not yet in PostgreSQL: {e}; run the erase again"))?;
            tracing::info!(%site, %doc, rows, "erased from PostgreSQL");
            return Ok(held || rows > 0);
        }
        Ok(held)
    }

    /// Takes a revocation signed by the fleet CA (from the operator over HTTP, or learnt by
    /// a site from a device): verified, stored, refused in every later handshake and handed
    /// to every loaded site, whose engine closes the device's links and relays it to the
    /// site's devices. Sites loaded later take every stored one. Returns whether it was new.
    pub(crate) fn learn_revocation(&self, record: SignedRevocation) -> Result<bool> {
        self.learn(record, true)
    }

    /// [`Shared::learn_revocation`]; `publish`: also commit it to PostgreSQL for the other
    /// instances (false for one that came from there).
    fn learn(&self, record: SignedRevocation, publish: bool) -> Result<bool> {
        let id = record.id();
        if self.revocations.contains_key(id)? {
            return Ok(false);
        }
        let revocation = record.revocation()?;
        self.verifier
            .verify_authority(
                &SignedRevocation::signed_bytes(&record.body),
                &record.signature,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "the revocation of {revocation} is not signed by this fleet's CA: {e}"
                )
            })?;
        if self.revocations.len()? >= outpost_core::revocation::MAX_REVOCATIONS {
            bail!(
                "the cloud keeps {} revocations already",
                outpost_core::revocation::MAX_REVOCATIONS
            );
        }
        if let (Some(pg), true) = (&self.pg, publish) {
            // Every instance refuses the device, or the operator hears it failed.
            pg::blocking(|| pg.publish_revocation(id.as_ref(), &record.to_bytes()))
                .map_err(|e| anyhow::anyhow!("cannot commit the revocation to PostgreSQL: {e}"))?;
        }
        self.revocations.insert(id, record.to_bytes())?;
        self.db.sync()?;
        self.filter.add_revocation(revocation.clone());
        tracing::warn!(device = %revocation, reason = %revocation.reason, "device revoked fleet-wide");
        for entry in self.sites().values() {
            let _ = entry.runner.offer_revocation(record.clone());
        }
        Ok(true)
    }

    /// Every revocation the cloud keeps.
    pub(crate) fn stored_revocations(&self) -> Vec<SignedRevocation> {
        self.revocations
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(_, v)| SignedRevocation::from_bytes(&v).ok())
            .collect()
    }

    /// A session of `site` ended.
    fn session_closed(&self, site: &SiteId) {
        if let Some(e) = self.sites().get_mut(site) {
            e.sessions = e.sessions.saturating_sub(1);
        }
    }

    /// Removes an idle site from the registry if no session is on its way to it.
    fn try_retire(&self, site: &SiteId) -> bool {
        let mut sites = self.sites();
        match sites.get(site) {
            Some(e) if e.sessions == 0 => {
                sites.remove(site);
                true
            }
            Some(_) => false,
            // Not registered (never happens): nothing can reach the task, so it may go.
            None => true,
        }
    }
}

/// A running cloud peer.
pub struct Cloud {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    quic_addr: SocketAddr,
    accept_task: JoinHandle<()>,
    http: Http,
    /// The control socket (`outpost-cloud erase` on a running cloud); removed when dropped.
    control: Option<control::Control>,
    /// Hands changes of fleet documents to every loaded site.
    fleet_task: JoinHandle<()>,
    /// On PostgreSQL: keeps the fleet documents current with the other instances.
    _fleet_registration: Option<pg::Registration>,
    /// Web clients (`--ws-listen`).
    web: Option<web::Web>,
}

impl Cloud {
    /// Opens the database, binds QUIC and HTTP, and starts accepting devices of every site.
    ///
    /// Must be called within a multi-threaded tokio runtime.
    pub async fn start(config: CloudConfig) -> Result<Cloud> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read_to_string(p).with_context(|| {
                format!(
                    "cannot read the {what} {}; issue the cloud certificate with \
                     `outpost cert issue --ca CA_DIR --site FLEET --device cloud-1 --role cloud --out DIR`",
                    p.display()
                )
            })
        };
        let cert = DeviceCert::from_pem(
            &read(&config.cert, "certificate")?,
            &read(&config.key, "private key")?,
            &read(&config.ca, "fleet CA certificate")?,
        )
        .context("the cloud certificate, key and CA do not form a usable identity")?;
        let local = cert.info().clone();
        // wss for web clients: the cloud's certificate, then the fleet CA's (a client that
        // trusts the CA builds the path from it).
        let web_tls = match (config.ws_listen, config.ws_plain) {
            (Some(_), false) => Some(
                outpost_ws::tls::server_config(
                    vec![cert.cert_der().clone(), cert.ca_der().clone()],
                    cert.private_key(),
                )
                .context("the cloud certificate cannot serve wss (--ws-listen)")?,
            ),
            _ => None,
        };
        let signer = outpost_transport::DeviceSigner::new(&cert)
            .context("the cloud certificate's key cannot sign changes")?;
        let verifier = outpost_transport::FleetVerifier::for_device(&cert);
        if local.role != Role::cloud() {
            bail!(
                "the certificate {} is for {local}, not a cloud peer; issue one with --role cloud",
                config.cert.display()
            );
        }
        let deny = DenyList::parse(&config.deny).context("invalid deny list")?;
        // The sled database: the whole truth, or on PostgreSQL this instance's working copy.
        // The data directory keeps the rest either way (API tokens, the control socket).
        let mut db_path = config.data.clone();
        let pg = match &config.store {
            None => None,
            Some(url) => {
                // The working copy is a cache: what it held may be ahead of the database
                // (writes whose commit failed), so each start begins from the database.
                let cache = config.data.join("pg-cache");
                if cache.exists() {
                    std::fs::remove_dir_all(&cache).with_context(|| {
                        format!("cannot empty the cache directory {}", cache.display())
                    })?;
                }
                db_path = cache;
                let url = url.clone();
                let sites = tokio::task::spawn_blocking(move || pg::PgSites::open(&url))
                    .await
                    .context("opening PostgreSQL stopped")?
                    .context("cannot use the PostgreSQL store (--store)")?;
                Some(sites)
            }
        };
        let db = open_db(&db_path, config.cache_bytes, config.data_key.clone())?;
        let filter = PeerFilter::new(SiteRule::AnySite, deny);
        let endpoint = endpoint(&cert, &filter, &config.tuning, config.listen)?;
        let quic_addr = endpoint
            .local_addr()
            .with_context(|| format!("cannot read the address bound for {}", config.listen))?;
        // A marker that says whose directory this is, so that `outpost` refuses it even
        // before any site wrote (engines create keyspaces only on their first write).
        db.keyspace("cloud/meta")
            .insert(b"kind", b"outpost-cloud")
            .and_then(|_| db.sync())
            .with_context(|| format!("cannot write to the data directory {}", db_path.display()))?;
        let compacted = db.keyspace("cloud/compacted");
        let renewer = match &config.ca_key {
            None => None,
            Some(key) => {
                let ca = outpost_transport::FleetCa::from_pem(
                    &read(&config.ca, "fleet CA certificate")?,
                    &std::fs::read_to_string(key).with_context(|| {
                        format!(
                            "cannot read the fleet CA key {} (--ca-key): give the ca.key that \
                             `outpost cert ca` wrote, or leave --ca-key out to renew nothing",
                            key.display()
                        )
                    })?,
                )
                .context(
                    "the fleet CA key does not match the fleet CA certificate (--ca, --ca-key)",
                )?;
                let head_office = head_office_author(&ca, &local)?;
                // The filter: a revoked key is never renewed; the ledger: a key is renewed
                // at most once per window, also across restarts.
                Some((
                    outpost_transport::Renewer::new(ca, config.renew_days)
                        .with_filter(filter.clone())
                        .with_ledger(config.data.join("renewals.json")),
                    head_office,
                ))
            }
        };
        let (renewer, head_office) = match renewer {
            Some((r, h)) => (Some(r), Some(h)),
            None => (None, None),
        };
        // A certificate issued offline wins over the one the cloud would issue itself.
        let head_office = match &config.head_office {
            Some(files) => Some(head_office_from_files(
                files,
                &read(&config.ca, "fleet CA certificate")?,
                &verifier,
            )?),
            None => head_office,
        };
        let revocations = db.keyspace("cloud/revocations");
        let signer: outpost_core::signing::SharedSigner = Arc::new(signer);
        let fleet = Fleet::open(
            &db,
            &local,
            &config.policy,
            signer.clone(),
            head_office.clone(),
            pg.as_ref().map(|pg| pg.mirror(pg::FLEET_KEY)),
        )
        .context("cannot open the fleet documents in the data directory")?;
        let shared = Arc::new(Shared {
            db,
            pg,
            compacted,
            revocations,
            local: local.clone(),
            config,
            signer,
            verifier: Arc::new(verifier),
            filter,
            renewer,
            head_office,
            metrics: Metrics::default(),
            documents_loaded: AtomicI64::new(0),
            sites: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            fleet,
        });
        for record in shared.stored_revocations() {
            if let Ok(r) = record.revocation() {
                shared.filter.add_revocation(r);
            }
        }
        // On PostgreSQL: the fleet documents and the revocations other instances committed,
        // before any device is accepted; notifications keep them current from then on.
        let fleet_registration = match &shared.pg {
            None => None,
            Some(pg) => {
                let weak = Arc::downgrade(&shared);
                pg.on_revocation(move |bytes| {
                    let Some(shared) = weak.upgrade() else { return };
                    match SignedRevocation::from_bytes(bytes) {
                        Ok(record) => {
                            if let Err(e) = shared.learn(record, false) {
                                tracing::error!(error = %e, "a revocation from PostgreSQL was not taken");
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "an unreadable revocation in PostgreSQL is ignored")
                        }
                    }
                });
                let (pg, store) = (pg.clone(), shared.fleet.store().clone());
                let registration =
                    tokio::task::spawn_blocking(move || pg.load(pg::FLEET_KEY, &store))
                        .await
                        .context("loading the fleet documents stopped")?
                        .map_err(|e| anyhow::anyhow!(e))
                        .context("cannot load the fleet documents from PostgreSQL")?;
                Some(registration)
            }
        };
        let http = Http::start(shared.config.http, shared.clone())?;
        let span = tracing::info_span!("cloud", peer = %local.peer);
        let accept_task =
            tokio::spawn(accept_loop(endpoint.clone(), shared.clone()).instrument(span));
        let control = control::serve(shared.clone());
        let fleet_task = tokio::spawn(fleet::fan_out(shared.clone()));
        let web = match shared.config.ws_listen {
            Some(addr) => Some(web::Web::start(addr, shared.clone(), web_tls).await?),
            None => None,
        };
        tracing::info!(%quic_addr, http = %http.addr(), identity = %local, "outpost-cloud started");
        Ok(Cloud {
            shared,
            endpoint,
            quic_addr,
            accept_task,
            http,
            control,
            fleet_task,
            web,
            _fleet_registration: fleet_registration,
        })
    }

    /// The UDP address devices connect to.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The HTTP address of `/health` and `/metrics`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The address web clients connect to (`--ws-listen`), if served.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(web::Web::addr)
    }

    /// The fleet-wide documents (read and written as head office; see [`Fleet`]).
    pub fn fleet(&self) -> &Fleet {
        &self.shared.fleet
    }

    /// Every site with its last seen, devices, backlog and certificate expiry (see
    /// [`SiteOverview`]).
    pub fn site_overview(&self) -> Vec<SiteOverview> {
        self.shared.site_overview()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// Erases `doc` fleet-wide in `site` while the cloud runs (what `outpost-cloud erase`
    /// does, through the control socket of the running cloud): deleted here with a
    /// tombstone, refused if a device sends it back, and put on the site's erasure list,
    /// which its connected devices receive at once and the others when they next connect.
    /// Loads the site if it is not. Returns whether the cloud held the document.
    pub async fn erase(&self, site: &SiteId, doc: &outpost_core::DocumentId) -> Result<bool> {
        self.shared.erase(site, doc).await
    }

    /// Stops accepting, lets every site send what is queued (within the grace period),
    /// persists sync states, closes every connection, flushes storage.
    pub async fn shutdown(self) -> Result<()> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.accept_task.abort();
        self.fleet_task.abort();
        drop(self.control);
        if let Some(web) = self.web {
            web.stop().await;
        }
        // Refuse new handshakes at once; existing connections stay until their site stops.
        self.endpoint.set_server_config(None);
        let runners: Vec<RunnerHandle> = self
            .shared
            .sites()
            .values()
            .map(|e| e.runner.clone())
            .collect();
        let waits: Vec<_> = runners
            .into_iter()
            .map(|r| tokio::spawn(async move { r.shutdown().await }))
            .collect();
        for w in waits {
            let _ = w.await;
        }
        self.endpoint.close(
            CloseCode::Shutdown.varint(),
            CloseCode::Shutdown.reason().as_bytes(),
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.http.stop();
        let db = self.shared.db.clone();
        tokio::task::spawn_blocking(move || db.sync())
            .await
            .context("flushing storage at shutdown stopped")?
            .context("flushing storage at shutdown failed")?;
        tracing::info!("outpost-cloud stopped");
        Ok(())
    }
}

fn open_db(
    path: &std::path::Path,
    cache_bytes: u64,
    key: Option<outpost_core::storage::SharedKeyWrap>,
) -> Result<outpost_core::Database> {
    // The engine whose files the directory holds (a new one: the default engine); sled's
    // incomplete snapshots are set aside first (see `outpost_core::storage`).
    let options = outpost_core::storage::DatabaseOptions {
        cache_capacity: cache_bytes,
        key,
        ..Default::default()
    };
    // The key is only read by the open; a panic inside leaves nothing shared behind.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        outpost_core::Database::open(path, &options)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!(
            "cannot open the data directory {}; check that it is writable and not used by another outpost-cloud",
            path.display()
        ))),
        Err(_) => bail!(
            "the data directory {} is corrupt; restore a backup or start from an empty directory (devices sync everything again)",
            path.display()
        ),
    }
}

/// Handshakes the cloud runs at once (admission control, issue 30). When every device of a
/// fleet reconnects at the same moment (after a deploy or an outage), running every
/// handshake at once shares the CPU among all of them, so each takes as long as the whole
/// storm and many time out and start over; a bounded number at a time completes each in
/// the time of one, and the others wait their turn (their Initial packets are held by
/// QUIC, and retransmitted by the device meanwhile).
pub const MAX_CONCURRENT_HANDSHAKES: usize = 64;

/// Connections waiting for a handshake slot beyond which new ones are refused at once
/// (a QUIC `CONNECTION_REFUSED`: the device backs off and redials) rather than left to time
/// out after holding memory.
pub const MAX_WAITING_HANDSHAKES: usize = 8192;

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    // Generous: a busy cloud (thousands of devices reconnecting after an outage) must not
    // drop handshakes that are merely slow; QUIC's idle timeout still ends dead ones.
    let handshake_timeout =
        (shared.config.tuning.idle_timeout + Duration::from_secs(1)).max(Duration::from_secs(15));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while let Some(incoming) = endpoint.accept().await {
        if waiting.load(Ordering::Relaxed) >= MAX_WAITING_HANDSHAKES {
            shared
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        waiting.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let (slots, waiting) = (slots.clone(), waiting.clone());
        tokio::spawn(
            async move {
                let slot = slots.acquire_owned().await;
                waiting.fetch_sub(1, Ordering::Relaxed);
                let Ok(_slot) = slot else {
                    // The semaphore is never closed; nothing to admit into if it were.
                    return;
                };
                let remote = incoming.remote_address();
                let conn = match tokio::time::timeout(handshake_timeout, incoming).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%remote, error = %e, "incoming handshake failed");
                        return;
                    }
                    Err(_) => {
                        shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%remote, "incoming handshake timed out");
                        return;
                    }
                };
                if outpost_transport::is_renewal(&conn) {
                    outpost_transport::serve_renewal(conn, shared.renewer.as_ref()).await;
                    return;
                }
                let info = match peer_info_of(&conn) {
                    Ok(info) => info,
                    Err(e) => {
                        shared.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%remote, error = %e, "closing connection without usable identity");
                        CloseCode::BadIdentity.close(&conn);
                        return;
                    }
                };
                if info.role == Role::cloud() {
                    // One cloud peer serves whole sites; cloud peers do not sync with each other.
                    shared.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%remote, peer = %info, "refusing a cloud peer: cloud peers serve devices only");
                    CloseCode::BadIdentity.close(&conn);
                    return;
                }
                shared.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, peer = %info, "handshake complete");
                shared.route(conn, info);
            }
            .in_current_span(),
        );
    }
}

/// Runs `outpost-cloud` with the process arguments; the exit code to return from `main`.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs `outpost-cloud` with `args` (the first one is the program name).
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    outpost_binsupport::install_panic_hook("outpost-cloud");
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    outpost_binsupport::init_logging("info,automerge=off", outpost_binsupport::LogTarget::Stdout);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => outpost_binsupport::report("outpost-cloud", e.as_ref()),
    }
}

fn run(mut args: Args) -> Result<()> {
    if let Some(command) = args.command.take() {
        return admin::run(config::AdminConfig::from_args(&args)?, command);
    }
    let config = CloudConfig::from_args(args)?;
    // A failed start must not leave behind a data directory it created.
    let data = config.data.clone();
    let created = !data.exists();
    let result = serve(config);
    if result.is_err() && created && data.is_dir() {
        if let Err(e) = std::fs::remove_dir_all(&data) {
            tracing::warn!(dir = %data.display(), error = %e, "cannot remove the data directory created by the failed start");
        }
    }
    result
}

fn serve(config: CloudConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("outpost-cloud")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut signals = Signals::install().context("cannot handle SIGTERM and SIGINT")?;
        let cloud = Cloud::start(config).await?;
        signals
            .recv()
            .await
            .context("cannot wait for SIGTERM or SIGINT")?;
        tracing::info!("shutdown requested");
        cloud.shutdown().await
    })
}
