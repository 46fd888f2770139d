//! Web clients through the cloud (`--ws-listen ADDR`): automerge-repo's WebSocket protocol
//! (`outpost-ws`) for every site, at `wss://ADDR/sites/<site>?token=...` (TLS with the cloud's
//! certificate; plain `ws` with `--ws-plain`) (and
//! `GET /sites/<site>/v1/documents`), so a web app syncs a site's documents when it cannot
//! reach the site's network.
//!
//! Tokens are issued per site by the cloud's operator (`outpost-cloud web-token issue --site
//! paris --role kds --name screen-1`), under a key of that site kept in
//! `<data>/web-tokens/<site>/` (so a token of one site is nothing at another). A site is
//! served only once a token was issued for it. Document ids are the site's (the same as on
//! its devices). The cloud accepts a client's changes under its own role (`cloud` in the
//! policy's `vouch`), writes them to the site's store through the site's runner (which
//! relays them to the site's devices at once, like the API's writes), and vouches for them
//! with a record naming the client (see `outpost_core::vouch`), which every device checks.
//!
//! A site served to web clients is held loaded (counted as a session of its runner) until
//! the cloud stops: its clients' connections live in the site's store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use outpost_core::SiteId;
use outpost_ws::{TokenBook, WsConfig, WsSite};
use tokio::sync::watch;
use tower_service::Service;

use super::{site, Shared, SiteEntry};

/// The directory of `site`'s web-token key and revocation list under the data directory.
pub(crate) fn token_dir(data: &std::path::Path, site: &SiteId) -> PathBuf {
    data.join("web-tokens").join(site.as_str())
}

struct Sites {
    shared: Arc<Shared>,
    served: tokio::sync::Mutex<HashMap<SiteId, Arc<WsSite>>>,
}

/// The running WebSocket listener of the cloud.
pub(crate) struct Web {
    addr: SocketAddr,
    sites: Arc<Sites>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Web {
    /// Binds `addr` and serves every site's web clients, over TLS with `tls` (`wss`) or, with
    /// `None`, plain `ws` (`--ws-plain`).
    pub(crate) async fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Web> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for web clients on {addr} (--ws-listen)"))?;
        let addr = listener.local_addr().context("the web clients' address")?;
        let sites = Arc::new(Sites {
            shared,
            served: tokio::sync::Mutex::new(HashMap::new()),
        });
        let router = Router::new()
            .route("/sites/{site}", any(dispatch_root))
            .route("/sites/{site}/{*rest}", any(dispatch))
            .with_state(sites.clone());
        let held = sites.clone();
        let (stop, stopped) = watch::channel(false);
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let served = outpost_ws::tls::serve(listener, router, tls, stopped)
            .context("the web clients' TLS listener")?;
        let task = tokio::spawn(async move {
            let _ = served.await;
            // Closes the clients' connections.
            held.served.lock().await.clear();
        });
        tracing::info!(%addr, scheme, "serving automerge-repo clients over WebSocket at /sites/<site>");
        Ok(Web {
            addr,
            sites,
            stop,
            task,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        // Upgraded connections outlive the listener's graceful shutdown: dropping the
        // sites' protocols closes them.
        self.sites.served.lock().await.clear();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

async fn dispatch_root(
    State(sites): State<Arc<Sites>>,
    Path(site): Path<String>,
    req: Request<Body>,
) -> Response {
    route(sites, site, String::new(), req).await
}

async fn dispatch(
    State(sites): State<Arc<Sites>>,
    Path((site, rest)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    route(sites, site, rest, req).await
}

/// Hands `req` to `site`'s protocol with the path after `/sites/<site>`.
async fn route(sites: Arc<Sites>, site: String, rest: String, mut req: Request<Body>) -> Response {
    let Ok(site) = site.parse::<SiteId>() else {
        return (StatusCode::NOT_FOUND, "no such site").into_response();
    };
    let served = match serve_site(&sites, &site).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!(
                    "no web tokens were issued for site {site}: issue one with \
                     `outpost-cloud web-token issue --site {site} --role kds --name NAME`"
                ),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(%site, error = %e, "cannot serve a site's web clients");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("site {site} cannot serve web clients now; retry in a moment"),
            )
                .into_response();
        }
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    match format!("/{rest}{query}").parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad path").into_response(),
    }
    let mut router = served.router();
    match router.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The protocol of `site`, started on first use: `None` if no token key was made for it
/// (nothing of an unknown site is created or loaded for an anonymous request).
async fn serve_site(sites: &Sites, site: &SiteId) -> Result<Option<Arc<WsSite>>> {
    let mut served = sites.served.lock().await;
    if let Some(s) = served.get(site) {
        return Ok(Some(s.clone()));
    }
    let shared = &sites.shared;
    let dir = token_dir(&shared.config.data, site);
    if !dir.join("token.key").exists() {
        return Ok(None);
    }
    let tokens = TokenBook::open(&dir)?;
    let runner = {
        let mut registry = shared.sites();
        if shared.stopping.load(Ordering::SeqCst) {
            anyhow::bail!("the cloud is stopping");
        }
        let entry = registry.entry(site.clone()).or_insert_with(|| SiteEntry {
            runner: site::spawn(shared.clone(), site.clone()),
            sessions: 0,
        });
        // Held until the cloud stops (see the module's documentation).
        entry.sessions += 1;
        entry.runner.clone()
    };
    let store = match tokio::time::timeout(std::time::Duration::from_secs(30), runner.store()).await
    {
        Ok(Ok(store)) => store,
        other => {
            shared.session_closed(site);
            anyhow::bail!(
                "site {site} did not load: {:?}",
                other.map(|r| r.map(|_| ()))
            );
        }
    };
    // `listen` is not used: the cloud's listener routes by path.
    let config = WsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tokens);
    let ws = Arc::new(WsSite::start(store, site.clone(), config)?);
    served.insert(site.clone(), ws.clone());
    tracing::info!(%site, "serving the site's web clients");
    Ok(Some(ws))
}
