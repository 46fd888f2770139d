//! The HTTP API for head office and integrations, and the fleet dashboard.
//!
//! Served on the cloud's HTTP address next to `/health` and `/metrics` (see `cloud/API.md`,
//! and `GET /api/v1/openapi.json` for the OpenAPI 3 document, which describes exactly what
//! is served here).
//!
//! # How a request reaches a site's documents
//!
//! Each site's [`Store`] is owned by its runner task. A request takes a [`Lease`] on the
//! site: under the registry lock it loads the site if needed (as a connecting device does)
//! and counts itself as a session, so the site cannot retire while the request uses it; the
//! runner hands out its own store handle, so a write is a local change of that store, which
//! the runner offers to the site's devices at once (and to the others when they connect),
//! exactly like an app's write on a device.
//!
//! # Who writes
//!
//! A write is checked against the fleet policy with the role [`HEAD_OFFICE_ROLE`] (context
//! and per-path rules, as a device of that role would be), then made by the site's store:
//! the change is signed by the cloud's key (the only key the cloud holds, which every
//! device verifies), and its message names the token (`api/<token name>/...`), so who wrote
//! it stays in the history. Concurrent writes merge like any device's.
//!
//! # Limits on hostile input
//!
//! Every limit is a constant here, documented in `cloud/API.md` and attacked by a test:
//! [`MAX_BODY_BYTES`], [`MAX_POINTER_BYTES`], [`MAX_URL_BYTES`], [`MAX_WORKERS`] concurrent
//! requests, [`MAX_EXPORTS`] concurrent exports, [`tokens::MAX_TOKEN_BYTES`]; the limits on
//! time and connections that every HTTP client gets are in [`super::http`].
//!
//! # Threads
//!
//! A request's handling reads storage and may wait for a site to load: it runs on one of
//! the runtime's blocking threads (at most [`MAX_WORKERS`] at once), never on the tasks that
//! serve the sockets. An export's lines are made on a blocking thread too and handed to the
//! response body through a channel of one chunk, so a client that reads slowly slows the
//! export, and one that stops reading ends it (the send timeout of [`super::http`]).

mod export;
mod metrics;
pub(crate) mod tokens;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};

use outpost_core::{ContextName, DocumentId, Durability, Pointer, Role, SiteId, Store};
use serde_json::{json, Value};

use self::metrics::ApiMetrics;
use self::tokens::TokenEntry;
use super::http::{BodyError, HttpCounters};
use super::{Shared, SiteEntry};

/// The role whose rights the policy gives API writes.
pub(crate) const HEAD_OFFICE_ROLE: &str = "head-office";

/// The largest request body (a `PUT` of a JSON value): 1 MiB.
pub(crate) const MAX_BODY_BYTES: u64 = 1 << 20;

/// The longest JSON Pointer (`?pointer=`), and the longest item name of `/stock/{item}`.
pub(crate) const MAX_POINTER_BYTES: usize = 1024;

/// The longest request target (path and query).
pub(crate) const MAX_URL_BYTES: usize = 4096;

/// Requests handled at once (a blocking thread each); more are answered 503 at once.
pub(crate) const MAX_WORKERS: usize = 16;

/// Exports streamed at once; more are answered 429.
pub(crate) const MAX_EXPORTS: usize = 2;

/// A device whose last health report is at most this old counts as up: devices report
/// every 15 minutes at least (`outpost_transport::NodeConfig::health_heartbeat`), and a
/// minute after anything changed.
const REPORTING_WINDOW_MS: u64 = 20 * 60 * 1000;

/// How long a request waits for a site to load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenAPI 3 document of this API.
const OPENAPI: &str = include_str!("api/openapi.json");

/// The fleet dashboard (one page, no external resources).
const DASHBOARD: &str = include_str!("api/dashboard.html");

/// A refusal: an HTTP status and a JSON body `{"error": code, "message": what to do}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal", message)
    }

    fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable", message)
    }

    fn body(&self) -> Value {
        json!({"error": self.code, "message": self.message})
    }
}

/// What a request is answered with.
enum Reply {
    Json(u16, Value),
    Static(&'static str, &'static str),
    Stream(Box<export::ExportReader>),
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// The API: shared with each request's thread.
#[derive(Clone)]
pub(crate) struct Api {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    workers: Arc<AtomicUsize>,
    exports: Arc<AtomicUsize>,
    metrics: Arc<ApiMetrics>,
    http: Arc<HttpCounters>,
}

/// A request being handled: its head, and its body until a handler reads it.
pub(crate) struct ApiRequest {
    parts: Parts,
    body: Option<Body>,
}

/// A site's store, held by a request; the site cannot retire meanwhile.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    site: SiteId,
    store: Store,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.session_closed(&self.site);
    }
}

/// The paths the API serves (the rest is `/health`, `/revocations`).
pub(crate) fn claims(path: &str) -> bool {
    path == "/" || path == "/dashboard" || path == "/metrics" || path.starts_with("/api/")
}

fn decode(s: &str, plus_is_space: bool) -> ApiResult<String> {
    let s = if plus_is_space {
        std::borrow::Cow::Owned(s.replace('+', " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ApiError::bad_request("the URL is not valid UTF-8 once percent-decoded"))
}

/// A parsed request target.
struct Target {
    segments: Vec<String>,
    query: Vec<(String, String)>,
}

impl Target {
    fn parse(url: &str) -> ApiResult<Target> {
        if url.len() > MAX_URL_BYTES {
            return Err(ApiError::new(
                414,
                "uri_too_long",
                format!("the request target is at most {MAX_URL_BYTES} bytes"),
            ));
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| decode(s, false))
            .collect::<ApiResult<Vec<_>>>()?;
        let query = query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                Ok((decode(k, true)?, decode(v, true)?))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Target { segments, query })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Api {
    pub(crate) fn new(
        shared: Arc<Shared>,
        runtime: tokio::runtime::Handle,
        http: Arc<HttpCounters>,
    ) -> Api {
        Api {
            shared,
            runtime,
            workers: Arc::new(AtomicUsize::new(0)),
            exports: Arc::new(AtomicUsize::new(0)),
            metrics: Arc::new(ApiMetrics::default()),
            http,
        }
    }

    /// The API's counters, in the Prometheus text format (appended to `/metrics`).
    pub(crate) fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// Serves `request` on a blocking thread, at most [`MAX_WORKERS`] at once.
    pub(crate) async fn serve(&self, request: Request) -> Response {
        let Some(slot) = export::Slot::take(self.workers.clone(), MAX_WORKERS) else {
            self.metrics.count("busy", 503);
            let e = ApiError::unavailable(format!(
                "the cloud serves {MAX_WORKERS} API requests at once; retry in a moment"
            ));
            return respond(Reply::Json(e.status, e.body()));
        };
        let (parts, body) = request.into_parts();
        let api = self.clone();
        let handled = tokio::task::spawn_blocking(move || {
            let reply = api.handle(ApiRequest {
                parts,
                body: Some(body),
            });
            drop(slot);
            reply
        })
        .await;
        match handled {
            Ok(reply) => respond(reply),
            Err(e) => {
                tracing::error!(error = %e, "an API request's handling stopped");
                let e = ApiError::internal("the request's handling stopped; see the cloud's log");
                respond(Reply::Json(e.status, e.body()))
            }
        }
    }

    fn handle(&self, mut request: ApiRequest) -> Reply {
        let (endpoint, reply) = match self.route(&mut request) {
            Ok((endpoint, reply)) => (endpoint, reply),
            Err((endpoint, e)) => {
                if e.status >= 500 {
                    tracing::warn!(status = e.status, message = %e.message, "API request failed");
                } else {
                    tracing::debug!(status = e.status, message = %e.message, "API request refused");
                }
                (endpoint, Reply::Json(e.status, e.body()))
            }
        };
        let status = match &reply {
            Reply::Json(s, _) => *s,
            Reply::Static(..) | Reply::Stream(_) => 200,
        };
        self.metrics.count(endpoint, status);
        reply
    }

    /// Routes a request; the error carries the endpoint name for the metrics.
    fn route(
        &self,
        request: &mut ApiRequest,
    ) -> std::result::Result<(&'static str, Reply), (&'static str, ApiError)> {
        let url = request
            .parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let target = Target::parse(url).map_err(|e| ("other", e))?;
        let method = request.parts.method.clone();
        let seg: Vec<&str> = target.segments.iter().map(String::as_str).collect();
        let endpoint: &'static str = match seg.as_slice() {
            [] | ["dashboard"] => "dashboard",
            ["api", "v1", "openapi.json"] => "openapi",
            ["api", "v1", "sites"] => "sites",
            ["api", "v1", "sites", _] => "site",
            ["api", "v1", "sites", _, "documents", _, ..] => "document",
            ["api", "v1", "fleet", "documents", _, ..] => "fleet_document",
            ["api", "v1", "export", _] => "export",
            ["api", "v1", "stock", _] => "stock",
            _ => "other",
        };
        let allowed: &[Method] = match endpoint {
            "document" | "fleet_document" => &[Method::GET, Method::PUT, Method::DELETE],
            _ => &[Method::GET],
        };
        let fail = |e: ApiError| (endpoint, e);
        if endpoint == "other" {
            return Err(fail(ApiError::not_found(
                "no such endpoint; the API is described at /api/v1/openapi.json",
            )));
        }
        if !allowed.contains(&method) {
            return Err(fail(ApiError::new(
                405,
                "method_not_allowed",
                format!(
                    "{method} is not served here; use {}",
                    allowed
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )));
        }
        match endpoint {
            "dashboard" => {
                return Ok((
                    endpoint,
                    Reply::Static("text/html; charset=utf-8", DASHBOARD),
                ))
            }
            "openapi" => return Ok((endpoint, Reply::Static("application/json", OPENAPI))),
            _ => {}
        }
        let token = self.authenticate(&request.parts.headers).map_err(fail)?;
        let reply = match seg.as_slice() {
            ["api", "v1", "sites"] => self.sites(&token),
            ["api", "v1", "sites", site] => self.site(&token, site),
            ["api", "v1", "sites", site, "documents", doc @ ..] => {
                let doc = doc.join("/");
                let pointer = target.param("pointer").unwrap_or("");
                match method {
                    Method::GET => self.read(&token, site, &doc, pointer),
                    Method::PUT => self.write(&token, request, site, &doc, pointer, false),
                    _ => self.write(&token, request, site, &doc, pointer, true),
                }
            }
            ["api", "v1", "fleet", "documents", doc @ ..] => {
                let doc = doc.join("/");
                let pointer = target.param("pointer").unwrap_or("");
                match method {
                    Method::GET => self.fleet_read(&doc, pointer),
                    Method::PUT => self.fleet_write(&token, request, &doc, pointer, false),
                    _ => self.fleet_write(&token, request, &doc, pointer, true),
                }
            }
            ["api", "v1", "export", context] => self.export(&token, request, context, &target),
            ["api", "v1", "stock", item] => self.stock(&token, item),
            _ => unreachable!("every endpoint named above is routed"),
        };
        reply.map(|r| (endpoint, r)).map_err(fail)
    }

    fn authenticate(&self, headers: &HeaderMap) -> ApiResult<TokenEntry> {
        let unauthorized = |m: &str| ApiError::new(401, "unauthorized", m);
        let value = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""))
            .ok_or_else(|| {
                unauthorized(
                    "send `Authorization: Bearer <token>`; issue a token with \
                     `outpost-cloud token issue --name NAME --sites '*'`",
                )
            })?;
        if value.len() > tokens::MAX_TOKEN_BYTES {
            return Err(unauthorized(
                "the Authorization header is too long for a token",
            ));
        }
        let token = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        match tokens::find(&self.shared.config.data, token) {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(unauthorized(
                "this token is unknown or revoked; issue a new one with `outpost-cloud token issue`",
            )),
            Err(e) => Err(ApiError::internal(format!("{e:#}"))),
        }
    }

    /// The sites the cloud holds, sorted: on PostgreSQL every site in the database, also
    /// those whose devices use another instance (each is loaded from the database when a
    /// request needs it), so that every instance behind a load balancer answers alike.
    fn known_sites(&self) -> ApiResult<Vec<SiteId>> {
        let mut sites = super::admin::sites(&self.shared.db);
        sites.extend(self.shared.sites().keys().cloned());
        if let Some(pg) = &self.shared.pg {
            let shared = pg.sites().map_err(|e| {
                ApiError::unavailable(format!(
                    "cannot list the sites in PostgreSQL: {e}; retry once the database answers"
                ))
            })?;
            sites.extend(shared.iter().filter_map(|s| s.parse::<SiteId>().ok()));
        }
        sites.sort();
        sites.dedup();
        Ok(sites)
    }

    /// A site the token may reach and the cloud holds.
    fn granted_site(&self, token: &TokenEntry, site: &str) -> ApiResult<SiteId> {
        let site: SiteId = site
            .parse()
            .map_err(|e| ApiError::not_found(format!("no site {site:?}: {e}")))?;
        if !token.grants(&site) {
            return Err(ApiError::forbidden(format!(
                "the token {} may not reach site {site}; issue one with --sites {site} (or '*')",
                token.name
            )));
        }
        if !self.known_sites()?.contains(&site) {
            return Err(ApiError::not_found(format!(
                "the cloud holds no site {site}: a site appears once one of its devices has synced; \
                 GET /api/v1/sites lists them"
            )));
        }
        Ok(site)
    }

    /// Takes a lease on `site` (loading it if needed).
    pub(crate) fn lease(&self, site: &SiteId) -> ApiResult<Lease> {
        let shared = &self.shared;
        // API requests run on threads of their own: a site that is not loaded (never, or
        // retired once its devices left) is spawned on the cloud's runtime, which must be
        // entered here (without it, spawning panicked and the request got an empty 500).
        let _runtime = self.runtime.enter();
        let runner = {
            let mut sites = shared.sites();
            if shared.stopping.load(Ordering::SeqCst) {
                return Err(ApiError::unavailable(
                    "the cloud is stopping; retry once it runs again",
                ));
            }
            let entry = sites.entry(site.clone()).or_insert_with(|| SiteEntry {
                runner: super::site::spawn(shared.clone(), site.clone()),
                sessions: 0,
            });
            entry.sessions += 1;
            entry.runner.clone()
        };
        let store = self
            .runtime
            .block_on(async { tokio::time::timeout(LOAD_TIMEOUT, runner.store()).await });
        match store {
            Ok(Ok(store)) => Ok(Lease {
                shared: shared.clone(),
                site: site.clone(),
                store,
            }),
            other => {
                shared.session_closed(site);
                tracing::warn!(%site, result = ?other.map(|r| r.map(|_| ())), "a site did not load for an API request");
                Err(ApiError::unavailable(format!(
                    "site {site} did not load; retry in a moment (see the cloud's log)"
                )))
            }
        }
    }

    /// What the API tells of one site.
    ///
    /// Devices are counted from the site's own `health` document as well as from what the
    /// cloud sees: a kiosk that talks only to the POS never connects to the cloud, but its
    /// reports reach it through the POS. A device revoked by the fleet CA is listed with its
    /// reason and counted apart.
    fn site_summary(&self, site: &SiteId) -> ApiResult<Value> {
        let stats = self.shared.metrics.site_stats(site);
        let lease = self.lease(site)?;
        let me = &self.shared.local.peer;
        let certified: Vec<String> = lease
            .store
            .certified_peers()
            .map_err(|e| ApiError::internal(format!("cannot read the devices of {site}: {e}")))?
            .into_iter()
            .filter(|p| p != me)
            .map(|p| p.to_string())
            .collect();
        let health = read_health(&lease.store);
        drop(lease);
        let now = outpost_core::Timestamp::now().as_millis();
        let online = stats.connected > 0;
        let reported = |field: &'static str| {
            health
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(move |d| d.get(field).and_then(Value::as_u64))
        };
        let last_seen = if online {
            Some(now)
        } else {
            reported("updated_ms").max()
        };
        let revoked: std::collections::BTreeMap<String, String> = self
            .shared
            .stored_revocations()
            .iter()
            .filter_map(|r| r.revocation().ok())
            .filter(|r| &r.site == site)
            .map(|r| (r.peer.to_string(), r.reason))
            .collect();
        let mut ids: std::collections::BTreeSet<String> = certified.into_iter().collect();
        ids.extend(
            health
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys().cloned()),
        );
        // A revoked device is listed as such even if it never reported.
        ids.extend(revoked.keys().cloned());
        let list: Vec<Value> = ids
            .iter()
            .map(|id| {
                let last = health
                    .get(id)
                    .and_then(|h| h.get("updated_ms"))
                    .and_then(Value::as_u64);
                let reason = revoked.get(id);
                let reporting = reason.is_none()
                    && last.is_some_and(|t| now.saturating_sub(t) <= REPORTING_WINDOW_MS);
                json!({
                    "device": id,
                    "last_report_ms": last,
                    "reporting": reporting,
                    "revoked": reason.is_some(),
                    "revoked_reason": reason,
                })
            })
            .collect();
        let count = |f: &dyn Fn(&Value) -> bool| list.iter().filter(|d| f(d)).count() as u64;
        let revoked_devices = count(&|d| d["revoked"] == json!(true));
        let devices = list.len() as u64 - revoked_devices;
        // A device connected to the cloud is up even with its health reports turned off.
        let reporting = count(&|d| d["reporting"] == json!(true)).max(stats.connected);
        Ok(json!({
            "site": site.as_str(),
            "online": online,
            "connected_devices": stats.connected,
            "devices": devices,
            "reporting_devices": reporting.min(devices.max(stats.connected)),
            "revoked_devices": revoked_devices,
            "device_list": list,
            "backlog": stats.backlog,
            "stored_bytes": stats.stored_bytes,
            "last_seen_ms": last_seen,
            "cert_not_after_ms": reported("cert_not_after_ms").min(),
            "health": health,
        }))
    }

    fn sites(&self, token: &TokenEntry) -> ApiResult<Reply> {
        let mut out = Vec::new();
        for site in self.known_sites()? {
            if token.grants(&site) {
                out.push(self.site_summary(&site)?);
            }
        }
        Ok(Reply::Json(
            200,
            json!({"now_ms": outpost_core::Timestamp::now().as_millis(), "sites": out}),
        ))
    }

    fn site(&self, token: &TokenEntry, site: &str) -> ApiResult<Reply> {
        let site = self.granted_site(token, site)?;
        let mut summary = self.site_summary(&site)?;
        let lease = self.lease(&site)?;
        let docs: Vec<String> = lease
            .store
            .documents()
            .map_err(|e| ApiError::internal(format!("cannot list the documents of {site}: {e}")))?
            .iter()
            .map(ToString::to_string)
            .collect();
        summary["documents"] = json!(docs);
        Ok(Reply::Json(200, summary))
    }

    fn read(&self, token: &TokenEntry, site: &str, doc: &str, pointer: &str) -> ApiResult<Reply> {
        let site = self.granted_site(token, site)?;
        let doc = parse_doc(doc)?;
        check_pointer(pointer)?;
        let lease = self.lease(&site)?;
        let value = read_at(&lease.store, &site, &doc, pointer)?;
        Ok(Reply::Json(
            200,
            json!({"site": site.as_str(), "doc": doc.to_string(), "pointer": pointer, "value": value}),
        ))
    }

    fn write(
        &self,
        token: &TokenEntry,
        request: &mut ApiRequest,
        site: &str,
        doc: &str,
        pointer: &str,
        delete: bool,
    ) -> ApiResult<Reply> {
        let site = self.granted_site(token, site)?;
        if !token.write {
            return Err(ApiError::forbidden(format!(
                "the token {} is read-only; issue one with --write to change documents",
                token.name
            )));
        }
        let (doc, path) = write_target(doc, pointer, "/items/burger/price")?;
        if self.shared.fleet.is_fleet(&doc) {
            // A site's view of a fleet document is the one copy every site reads: written
            // only as a fleet write, by a token for every site.
            let written = self.fleet_change(token, request, &doc, pointer, delete)?;
            return Ok(Reply::Json(
                200,
                json!({"site": site.as_str(), "doc": doc.to_string(), "pointer": pointer, "deleted": delete, "value": written}),
            ));
        }
        let value = if delete {
            None
        } else {
            Some(self.read_json_body(request)?)
        };
        let lease = self.lease(&site)?;
        let store = &lease.store;
        let exists = store
            .has_document(&doc)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let present = exists
            && store
                .get(&doc, pointer)
                .map_err(|e| core_error(&site, &doc, e))?
                .is_some();
        if delete && !present {
            return Err(ApiError::not_found(format!(
                "nothing at {pointer} in {doc} of site {site}"
            )));
        }
        self.check_policy(&doc, &path, value.as_ref(), present)?;
        let write_id = format!(
            "api/{}/{}-{:016x}",
            token.name,
            outpost_core::Timestamp::now().as_millis(),
            rand::random::<u64>()
        );
        let change = |tx: &mut outpost_core::Tx<'_>| match value {
            Some(v) => tx.put(pointer, v),
            None => tx.delete(pointer),
        };
        // Authored as head office when the cloud has that identity: devices then check the
        // change as a head-office device's (issue 27), not as the cloud's.
        let outcome = match &self.shared.head_office {
            Some(author) => store.transact_as(author, &doc, &write_id, Durability::Durable, change),
            None => store.transact_once(&doc, &write_id, Durability::Durable, change),
        };
        outcome.map_err(|e| core_error(&site, &doc, e))?;
        tracing::info!(%site, %doc, pointer, token = %token.name, delete, "document written through the API");
        // The value as stored now (a concurrent write may already have changed it), so a
        // client sees what it wrote without reading it back.
        let written = if delete {
            Value::Null
        } else {
            store
                .get(&doc, pointer)
                .map_err(|e| core_error(&site, &doc, e))?
                .unwrap_or(Value::Null)
        };
        Ok(Reply::Json(
            200,
            json!({"site": site.as_str(), "doc": doc.to_string(), "pointer": pointer, "deleted": delete, "value": written}),
        ))
    }

    /// Reads a fleet document (one copy for every site): any valid token may.
    fn fleet_read(&self, doc: &str, pointer: &str) -> ApiResult<Reply> {
        let doc = parse_doc(doc)?;
        check_pointer(pointer)?;
        let value = self
            .shared
            .fleet
            .get(&doc, pointer)
            .map_err(fleet_error)?
            .ok_or_else(|| {
                ApiError::not_found(format!("nothing at {pointer:?} in fleet document {doc}"))
            })?;
        Ok(Reply::Json(
            200,
            json!({"doc": doc.to_string(), "pointer": pointer, "value": value}),
        ))
    }

    /// Writes a fleet document as head office: it reaches every site. Only a token that may
    /// write to every site (`--sites '*' --write`) may.
    fn fleet_write(
        &self,
        token: &TokenEntry,
        request: &mut ApiRequest,
        doc: &str,
        pointer: &str,
        delete: bool,
    ) -> ApiResult<Reply> {
        Self::fleet_token(token)?;
        // The fleet's own checks read the pointer again; here it is only refused early.
        let (doc, _) = write_target(doc, pointer, "/burger")?;
        let written = self.fleet_change(token, request, &doc, pointer, delete)?;
        Ok(Reply::Json(
            200,
            json!({"doc": doc.to_string(), "pointer": pointer, "deleted": delete, "value": written}),
        ))
    }

    /// Refuses a token that may not write fleet documents (which every site reads).
    fn fleet_token(token: &TokenEntry) -> ApiResult<()> {
        if !token.write || !token.grants_every_site() {
            return Err(ApiError::forbidden(format!(
                "a fleet document reaches every site: the token {} must be issued with --sites '*' --write",
                token.name
            )));
        }
        Ok(())
    }

    /// Writes (or deletes at) `pointer` of the fleet document `doc` as head office; returns
    /// the value now stored there (`null` after a delete).
    fn fleet_change(
        &self,
        token: &TokenEntry,
        request: &mut ApiRequest,
        doc: &DocumentId,
        pointer: &str,
        delete: bool,
    ) -> ApiResult<Value> {
        Self::fleet_token(token)?;
        let doc = doc.clone();
        let role: Role = HEAD_OFFICE_ROLE
            .parse()
            .expect("the head-office role name is valid");
        let fleet = &self.shared.fleet;
        if delete {
            if fleet.get(&doc, pointer).map_err(fleet_error)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "nothing at {pointer} in fleet document {doc}"
                )));
            }
            fleet.delete(&doc, pointer, &role)
        } else {
            let value = self.read_json_body(request)?;
            fleet.put(&doc, pointer, &value, &role)
        }
        .map_err(fleet_error)?;
        tracing::info!(%doc, pointer, token = %token.name, delete, "fleet document written through the API");
        if delete {
            return Ok(Value::Null);
        }
        Ok(fleet
            .get(&doc, pointer)
            .map_err(fleet_error)?
            .unwrap_or(Value::Null))
    }

    /// Refuses what the policy would refuse from a device of the head-office role: at `path`,
    /// and at every path below it that `value` (the value put, if any) writes.
    fn check_policy(
        &self,
        doc: &DocumentId,
        path: &Pointer,
        value: Option<&Value>,
        replaces: bool,
    ) -> ApiResult<()> {
        let role: Role = HEAD_OFFICE_ROLE
            .parse()
            .expect("the head-office role name is valid");
        let policy = &self.shared.config.policy;
        let ctx = doc.context();
        if !policy.may_write(&role, ctx) {
            return Err(ApiError::forbidden(format!(
                "the fleet policy does not let role {role} write context {ctx}; add \"{role}\" to \
                 the writers of [policy.contexts.{ctx}] in the cloud's config and the devices' policy"
            )));
        }
        let refused = if !policy.may_write_path(&role, ctx, path, replaces) {
            Some(path.clone())
        } else {
            value.and_then(|v| super::fleet::refused_nested_path(policy, &role, doc, path, v))
        };
        if let Some(path) = refused {
            return Err(ApiError::forbidden(format!(
                "the fleet policy does not let role {role} write {} in {doc}: {}",
                if path.is_root() {
                    "/".to_string()
                } else {
                    path.to_string()
                },
                policy.path_refusal(&role, ctx, &path)
            )));
        }
        Ok(())
    }

    fn export(
        &self,
        token: &TokenEntry,
        request: &ApiRequest,
        context: &str,
        target: &Target,
    ) -> ApiResult<Reply> {
        let context: ContextName = context
            .parse()
            .map_err(|e| ApiError::bad_request(format!("{context:?} is not a context: {e}")))?;
        let per_item = match target.param("lines") {
            None | Some("document") => false,
            Some("item") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "lines={other:?}: give lines=document (one line per site) or lines=item \
                     (one line per item, e.g. per order)"
                )))
            }
        };
        let items = match target.param("items") {
            None | Some("") => None,
            Some(p) => Some(export::ItemPattern::parse(p).map_err(ApiError::bad_request)?),
        };
        if request.parts.version < Version::HTTP_11 {
            return Err(ApiError::bad_request(
                "an export is streamed with chunked transfer encoding: use HTTP/1.1 (curl does)",
            ));
        }
        let sites: Vec<SiteId> = self
            .known_sites()?
            .into_iter()
            .filter(|s| token.grants(s))
            .collect();
        let doc = self.export_document(&sites, &context, target.param("partition"))?;
        let items = items.unwrap_or_else(|| {
            export::ItemPattern::from_policy(&self.shared.config.policy, &context)
        });
        let slot = export::Slot::take(self.exports.clone(), MAX_EXPORTS).ok_or_else(|| {
            ApiError::new(
                429,
                "too_many_exports",
                format!("the cloud streams {MAX_EXPORTS} exports at once; retry when one is done"),
            )
        })?;
        Ok(Reply::Stream(Box::new(export::ExportReader::new(
            self.clone(),
            sites,
            doc,
            per_item.then_some(items),
            slot,
        ))))
    }

    /// The document an export reads, or why the request is wrong: checked against the
    /// documents of the context the sites hold (and the policy), before the status line,
    /// so that a typo is a 400 or 404 and never a 200 with an empty body.
    fn export_document(
        &self,
        sites: &[SiteId],
        context: &ContextName,
        partition: Option<&str>,
    ) -> ApiResult<DocumentId> {
        let mut held: Vec<DocumentId> = Vec::new();
        for site in sites {
            let lease = self.lease(site)?;
            let docs = lease.store.documents().map_err(|e| {
                ApiError::internal(format!("cannot list the documents of {site}: {e}"))
            })?;
            held.extend(docs.into_iter().filter(|d| d.context() == context));
        }
        held.sort();
        held.dedup();
        let policy = &self.shared.config.policy;
        let rule = policy.contexts.get(context);
        let named = rule.is_some();
        let partitioned = held.iter().any(|d| d.partition().is_some())
            || rule.is_some_and(|r| !r.retain_days.is_empty());
        let whole = held.iter().any(|d| d.partition().is_none());
        let newest = held.iter().rev().find_map(|d| d.partition());
        let example = newest
            .map(str::to_string)
            .unwrap_or_else(|| export::day_of(outpost_core::Timestamp::now().as_millis()));
        if held.is_empty() && !named {
            return Err(ApiError::not_found(format!(
                "no site the token reaches holds a document of context {context}, and the \
                 policy does not name it: check the context's name (e.g. orders)"
            )));
        }
        match partition {
            None | Some("") => {
                if partitioned && !whole {
                    return Err(ApiError::bad_request(format!(
                        "{context} is partitioned: give ?partition=, e.g. ?partition={example}"
                    )));
                }
                Ok(DocumentId::new(context.clone()))
            }
            Some(p) => {
                if !partitioned && whole {
                    return Err(ApiError::bad_request(format!(
                        "{context} is not partitioned (the sites hold one document {context}): \
                         leave out ?partition="
                    )));
                }
                let doc = DocumentId::partitioned(context.clone(), p).map_err(|e| {
                    ApiError::bad_request(format!("{p:?} is not a partition of {context}: {e}"))
                })?;
                let dated = held
                    .iter()
                    .filter_map(|d| d.partition())
                    .all(export::starts_with_day)
                    && partitioned;
                if dated && !export::starts_with_day(p) {
                    return Err(ApiError::bad_request(format!(
                        "partition={p:?} is not a day: {context} is partitioned by day, give \
                         YYYY-MM-DD, e.g. ?partition={example}"
                    )));
                }
                Ok(doc)
            }
        }
    }

    /// Reads the request's body (once), bounded in size and time, as one JSON value.
    fn read_json_body(&self, request: &mut ApiRequest) -> ApiResult<Value> {
        let body = request.body.take().unwrap_or_default();
        let timeout = self.shared.config.http_limits.body_timeout;
        // A blocking thread of the API: waiting here blocks no socket's task.
        let read = self.runtime.block_on(super::http::read_body(
            &request.parts.headers,
            body,
            MAX_BODY_BYTES as usize,
            timeout,
        ));
        let body = match read {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return Err(ApiError::new(
                413,
                "body_too_large",
                format!("a request body is at most {MAX_BODY_BYTES} bytes; write large documents in parts (one pointer each)"),
            )),
            Err(BodyError::TimedOut(t)) => {
                self.http.body_timed_out();
                return Err(ApiError::new(
                    408,
                    "request_timeout",
                    format!("the body did not arrive within {} s; send it at once", t.as_secs()),
                ));
            }
            Err(BodyError::Failed(e)) => {
                return Err(ApiError::bad_request(format!("cannot read the body: {e}")))
            }
        };
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be one JSON value, e.g. 1250 or {{\"price\": 1250}}: {e}"
            ))
        })
    }

    fn stock(&self, token: &TokenEntry, item: &str) -> ApiResult<Reply> {
        if item.len() > MAX_POINTER_BYTES {
            return Err(ApiError::bad_request(format!(
                "an item name is at most {MAX_POINTER_BYTES} bytes"
            )));
        }
        let stock = DocumentId::new("stock".parse().expect("`stock` is a valid context"));
        let pointer = format!("/{}", item.replace('~', "~0").replace('/', "~1"));
        let mut sites = Vec::new();
        // Integers add up as integers (stock is counted with `incr`); a fractional quantity
        // anywhere makes the total a float.
        let (mut int_total, mut float_total, mut fractional) = (0i64, 0.0f64, false);
        let mut holders = 0usize;
        for site in self.known_sites()? {
            if !token.grants(&site) {
                continue;
            }
            let online = self.shared.metrics.site_stats(&site).connected > 0;
            let lease = self.lease(&site)?;
            let quantity = match lease.store.has_document(&stock) {
                Ok(true) => lease
                    .store
                    .get(&stock, &pointer)
                    .map_err(|e| core_error(&site, &stock, e))?,
                Ok(false) => None,
                Err(e) => return Err(ApiError::internal(e.to_string())),
            };
            if let Some(q) = &quantity {
                holders += 1;
                match q.as_i64() {
                    Some(n) => int_total = int_total.saturating_add(n),
                    None => fractional |= q.is_number(),
                }
                float_total += q.as_f64().unwrap_or(0.0);
            }
            sites.push(json!({"site": site.as_str(), "online": online, "quantity": quantity}));
        }
        if holders == 0 {
            return Err(ApiError::not_found(format!(
                "no site the token reaches has {item:?} in its stock document (an unknown item, \
                 not zero stock); item names are the keys of `stock`, e.g. burger"
            )));
        }
        let total = if fractional {
            json!(float_total)
        } else {
            json!(int_total)
        };
        Ok(Reply::Json(
            200,
            json!({"item": item, "total": total, "sites": sites}),
        ))
    }
}

/// The devices' health reports of a site (`health` document, `/devices`), `{}` if none.
fn read_health(store: &Store) -> Value {
    let doc = DocumentId::new("health".parse().expect("`health` is a valid context"));
    match store.has_document(&doc) {
        Ok(true) => store
            .get(&doc, "/devices")
            .ok()
            .flatten()
            .unwrap_or_else(|| json!({})),
        _ => json!({}),
    }
}

/// The HTTP answer to a refused fleet read or write.
fn fleet_error(e: super::FleetError) -> ApiError {
    use super::FleetError as F;
    match e {
        F::NotFleet { .. } => ApiError::not_found(e.to_string()),
        F::NotPermitted { .. } => ApiError::forbidden(e.to_string()),
        F::BadPointer { .. } => ApiError::bad_request(e.to_string()),
        F::Store { ref source, .. } => core_status(source)(e.to_string()),
        F::Storage(_) => ApiError::internal(e.to_string()),
    }
}

fn parse_doc(doc: &str) -> ApiResult<DocumentId> {
    doc.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "{doc:?} is not a document id ({e}); e.g. `menu` or `orders/2026-12-01`"
        ))
    })
}

/// The document and path a write or delete goes to: a path inside the document, never the
/// whole of it (`example` is a path shown in the refusal).
fn write_target(doc: &str, pointer: &str, example: &str) -> ApiResult<(DocumentId, Pointer)> {
    let doc = parse_doc(doc)?;
    let path = check_pointer(pointer)?;
    if path.tokens().is_empty() {
        return Err(ApiError::bad_request(format!(
            "give ?pointer= a path inside the document, e.g. ?pointer={example}"
        )));
    }
    Ok((doc, path))
}

fn check_pointer(pointer: &str) -> ApiResult<Pointer> {
    if pointer.len() > MAX_POINTER_BYTES {
        return Err(ApiError::bad_request(format!(
            "a pointer is at most {MAX_POINTER_BYTES} bytes"
        )));
    }
    Pointer::parse(pointer).map_err(|e| {
        ApiError::bad_request(format!(
            "?pointer={pointer:?} is not a JSON Pointer ({e}); e.g. ?pointer=/orders/o1"
        ))
    })
}

fn read_at(store: &Store, site: &SiteId, doc: &DocumentId, pointer: &str) -> ApiResult<Value> {
    if !store
        .has_document(doc)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        return Err(ApiError::not_found(format!(
            "site {site} holds no document {doc}; GET /api/v1/sites/{site} lists its documents"
        )));
    }
    store
        .get(doc, pointer)
        .map_err(|e| core_error(site, doc, e))?
        .ok_or_else(|| {
            ApiError::not_found(format!("nothing at {pointer:?} in {doc} of site {site}"))
        })
}

fn core_error(site: &SiteId, doc: &DocumentId, e: outpost_core::Error) -> ApiError {
    core_status(&e)(format!("{doc} of site {site}: {e}"))
}

/// How the API answers a store error: the caller's mistake (400), nothing there (404), the
/// policy's refusal (403), or the cloud's own failure (500).
fn core_status(e: &outpost_core::Error) -> fn(String) -> ApiError {
    use outpost_core::Error as E;
    match e {
        E::InvalidPath { .. }
        | E::NotFound { .. }
        | E::WrongType { .. }
        | E::IndexOutOfRange { .. }
        | E::InvalidValue { .. } => ApiError::bad_request,
        E::UnknownDocument { .. } | E::Erased { .. } => ApiError::not_found,
        E::NotPermitted { .. } | E::PathNotPermitted { .. } => ApiError::forbidden,
        _ => ApiError::internal,
    }
}

/// The HTTP response of a reply.
fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Json(status, body) => {
            let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
            bytes.push(b'\n');
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response()
        }
        Reply::Static(content_type, body) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response(),
        Reply::Stream(reader) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )],
            Body::new(export::ExportBody::start(*reader)),
        )
            .into_response(),
    }
}
