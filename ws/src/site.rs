//! The protocol for one site's store without a listener of its own: a [`WsServer`] serves
//! one (a device's), and a server that routes many sites by path (the cloud,
//! `outpost-cloud serve --ws-listen`) serves one per site.
//!
//! [`WsServer`]: crate::WsServer

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use axum::routing::get;
use axum::Router;
use outpost_core::{SiteId, Store};
use tokio::sync::{broadcast, watch};

use crate::server::{list_documents, refresh_names, upgrade, Shared};
use crate::{WsConfig, WsError, WsStats};

/// automerge-repo's protocol over one site's store, as an axum [`Router`] to mount: the
/// upgrade at any path, `GET /v1/documents`. Document ids are those of `site` (the same as
/// on the site's devices), tokens those of `config.tokens` (checked against `site`), and
/// writes are vouched for by the store's identity (a device, or the cloud) under its role.
/// Dropping it closes its connections.
pub struct WsSite {
    pub(crate) router: Router,
    pub(crate) stats: Arc<WsStats>,
    pub(crate) stop: watch::Sender<bool>,
}

impl std::fmt::Debug for WsSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSite").finish_non_exhaustive()
    }
}

impl WsSite {
    /// Serves `store` as `site` (`config.listen` is not used). Needs a tokio runtime.
    pub fn start(store: Store, site: SiteId, config: WsConfig) -> Result<WsSite, WsError> {
        let me = store.identity().cloned().ok_or_else(|| {
            WsError::InvalidRequest(
                "serving web clients needs a store with an identity (a certificate)".to_string(),
            )
        })?;
        let (stop, shutdown) = watch::channel(false);
        let stats = Arc::new(WsStats::default());
        let shared = Arc::new(Shared {
            store,
            server_id: format!("outpost-{site}-{}", me.peer),
            site,
            device_role: me.role.clone(),
            tokens: config.tokens,
            limits: config.limits,
            poll: config.revocation_poll,
            stats: stats.clone(),
            names: RwLock::new(HashMap::new()),
            ephemeral: broadcast::channel(256).0,
            next_conn: AtomicU64::new(1),
            shutdown: shutdown.clone(),
            per_token: std::sync::Mutex::new(HashMap::new()),
        });
        refresh_names(&shared);
        let reload = shared.clone();
        let mut reload_stop = shutdown;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(reload.poll);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = reload.tokens.reload_revoked() {
                            tracing::warn!(error = %e, "could not reload the web token revocation list");
                        }
                    }
                    _ = reload_stop.changed() => return,
                }
            }
        });
        let router = Router::new()
            .route("/v1/documents", get(list_documents))
            .merge(crate::web::routes())
            .fallback(upgrade)
            .with_state(shared);
        Ok(WsSite {
            router,
            stats,
            stop,
        })
    }

    /// The routes to mount (or to call as a service with a request whose path is the part
    /// after the site's prefix).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Its counters.
    pub fn stats(&self) -> &WsStats {
        &self.stats
    }
}

impl Drop for WsSite {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
