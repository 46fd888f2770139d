//! The WebSocket server: the upgrade (token check), `GET /v1/documents`, and one task per
//! client connection driving automerge-repo's protocol against the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use axum::Json;
use outpost_core::{
    DocumentId, PeerId, Role, SiteId, Store, SubscriptionFilter, WebReceived, WebSyncState,
    WebWriter,
};
use tokio::sync::{broadcast, watch};

use crate::message::{self, Incoming, PROTOCOL_VERSION};
use crate::{repo_document_id, TokenBook, TokenClaims, WsError, WsSite};

/// Contexts whose documents a web client reads and writes only when the partition is its own
/// name (`carts/<guest id>`).
const OWN_CONTEXTS: &[&str] = &["carts"];

/// How long a client has to send `join` after the upgrade.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client may make this device spend (a web client is as untrusted as a kiosk).
#[derive(Clone, Debug)]
pub struct WsLimits {
    /// Bytes of one WebSocket message (a larger one closes the connection before it is
    /// buffered whole). Default 1 MiB, the QUIC side's frame limit.
    pub max_message_bytes: usize,
    /// Documents one connection may follow. Default 64.
    pub max_documents_per_session: usize,
    /// Bytes of messages one connection may send per minute (a token bucket). Default 16 MiB.
    pub max_bytes_per_minute: u64,
    /// Connections one token may hold open at once (a further upgrade gets 429), so that the
    /// per-connection budgets above bound what one token can make the device spend: at the
    /// defaults, 8 connections, 128 MiB a minute. Default 8.
    pub max_connections_per_token: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_message_bytes: 1 << 20,
            max_documents_per_session: 64,
            max_bytes_per_minute: 16 << 20,
            max_connections_per_token: 8,
        }
    }
}

/// How a [`WsServer`] runs.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Where to listen (`outpost serve --ws-listen`).
    pub listen: SocketAddr,
    /// The device's token key and revocation list.
    pub tokens: TokenBook,
    /// Per-connection limits.
    pub limits: WsLimits,
    /// How often the revocation list is read again and connections of revoked or expired
    /// tokens are cut. Default 500 ms.
    pub revocation_poll: Duration,
    /// TLS (`wss`) with the device's certificate ([`WsConfig::with_tls`]); `None` serves
    /// plain `ws`, for guest roles on a guest network only (`outpost serve --ws-plain`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl WsConfig {
    /// A config with the default limits.
    pub fn new(listen: SocketAddr, tokens: TokenBook) -> Self {
        WsConfig {
            listen,
            tokens,
            limits: WsLimits::default(),
            revocation_poll: Duration::from_millis(500),
            tls: None,
        }
    }

    /// Serves `wss`: TLS with `chain` (the device's certificate first, then the fleet CA's)
    /// and the device's private key. Screens that trust the fleet CA reach the device by the
    /// name in its certificate (`outpost`).
    pub fn with_tls(
        mut self,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<WsConfig, WsError> {
        self.tls = Some(crate::tls::server_config(chain, key)?);
        Ok(self)
    }
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct WsStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections accepted since the start.
    pub accepted: AtomicU64,
    /// Upgrades refused (bad, expired or revoked token, role not vouched for).
    pub refused_tokens: AtomicU64,
    /// Client messages with changes that were refused (nothing stored).
    pub refused_writes: AtomicU64,
    /// Changes stored from clients.
    pub changes_accepted: AtomicU64,
    /// Requests refused by a limit (documents per session, bytes per minute).
    pub limit_refusals: AtomicU64,
    /// Connections cut because their token was revoked or expired.
    pub cut: AtomicU64,
}

pub(crate) struct Ephemeral {
    from: u64,
    sender: String,
    doc: DocumentId,
    repo_id: String,
    session: String,
    count: u64,
    data: Vec<u8>,
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) site: SiteId,
    pub(crate) device_role: Role,
    pub(crate) server_id: String,
    pub(crate) tokens: TokenBook,
    pub(crate) limits: WsLimits,
    pub(crate) poll: Duration,
    pub(crate) stats: Arc<WsStats>,
    /// automerge-repo id -> document name, for the documents of the store (refreshed on a
    /// miss) and the clients' own documents.
    pub(crate) names: RwLock<HashMap<String, DocumentId>>,
    pub(crate) ephemeral: broadcast::Sender<Arc<Ephemeral>>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Open connections per token id (`WsLimits::max_connections_per_token`).
    pub(crate) per_token: std::sync::Mutex<HashMap<String, usize>>,
}

/// One connection's place in its token's count, given back when dropped (the connection
/// ended, or the upgrade never completed).
struct TokenSlot {
    shared: Arc<Shared>,
    token: String,
}

impl TokenSlot {
    fn take(shared: &Arc<Shared>, token: &str) -> Option<TokenSlot> {
        let mut open = shared.per_token.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(token.to_string()).or_insert(0);
        if *n >= shared.limits.max_connections_per_token {
            return None;
        }
        *n += 1;
        Some(TokenSlot {
            shared: shared.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for TokenSlot {
    fn drop(&mut self) {
        let mut open = self
            .shared
            .per_token
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.token);
            }
        }
    }
}

/// automerge-repo's WebSocket protocol served beside QUIC (`outpost serve --ws-listen`).
pub struct WsServer {
    addr: SocketAddr,
    tls: bool,
    stats: Arc<WsStats>,
    site: WsSite,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl WsServer {
    /// Binds and starts serving `store` (a device's store, with its identity).
    pub async fn start(store: Store, config: WsConfig) -> Result<WsServer, WsError> {
        let me = store.identity().cloned().ok_or_else(|| {
            WsError::InvalidRequest(
                "serving web clients needs a store with a device identity (a certificate)"
                    .to_string(),
            )
        })?;
        let config_listen = config.listen;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| WsError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WsError::Bind {
            addr: config.listen,
            source,
        })?;
        let mut config = config;
        let tls_config = config.tls.take();
        let site = WsSite::start(store, me.site.clone(), config)?;
        let (router, stats, shutdown) = (
            site.router.clone(),
            site.stats.clone(),
            site.stop.subscribe(),
        );
        let tls = tls_config.is_some();
        let task = crate::tls::serve(listener, router, tls_config, shutdown).map_err(|source| {
            WsError::Bind {
                addr: config_listen,
                source,
            }
        })?;
        tracing::info!(%addr, tls, "serving automerge-repo clients over WebSocket");
        Ok(WsServer {
            addr,
            tls,
            stats,
            site,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `wss` when it serves TLS, else `ws`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "wss"
        } else {
            "ws"
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &WsStats {
        &self.stats
    }

    /// Closes every connection and stops listening.
    pub async fn shutdown(self) {
        let _ = self.site.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn now_secs() -> u64 {
    outpost_core::Timestamp::now().as_millis() / 1000
}

pub(crate) fn refresh_names(shared: &Shared) {
    let docs = match shared.store.documents() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not list documents for web clients");
            return;
        }
    };
    let mut names = shared.names.write().unwrap_or_else(|e| e.into_inner());
    for doc in docs {
        names.insert(repo_document_id(&shared.site, &doc), doc);
    }
}

fn resolve(shared: &Shared, repo_id: &str) -> Option<DocumentId> {
    let known = |s: &Shared| {
        s.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(repo_id)
            .cloned()
    };
    known(shared).or_else(|| {
        refresh_names(shared);
        known(shared)
    })
}

/// Whether a client of `claims` may see `doc` at all.
fn may_read(shared: &Shared, claims: &TokenClaims, role: &Role, doc: &DocumentId) -> bool {
    if OWN_CONTEXTS.contains(&doc.context().as_str()) && doc.partition() != Some(&claims.name) {
        return false;
    }
    shared.store.policy_may_read(role, doc)
}

/// The token of a request: `?token=` (browsers cannot set headers on a WebSocket) or
/// `Authorization: Bearer`.
fn token_of(query: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    query.get("token").cloned().or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
    })
}

fn authorize(
    shared: &Shared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(TokenClaims, Role), Response> {
    let refuse = |status: StatusCode, why: String| {
        shared.stats.refused_tokens.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%why, "refused a web client");
        Err((status, why).into_response())
    };
    let Some(token) = token_of(query, headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no token: pass ?token=... from `outpost token issue`".to_string(),
        );
    };
    let claims = match shared.tokens.check(&token, &shared.site, now_secs()) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let role: Role = match claims.role.parse() {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    if !shared.store.policy().may_vouch(&shared.device_role, &role) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "a device of role {} may not accept web clients of role {role} (the policy's `vouch`)",
                shared.device_role
            ),
        );
    }
    Ok((claims, role))
}

#[derive(serde::Serialize)]
struct Listed {
    name: String,
    #[serde(rename = "documentId")]
    document_id: String,
    url: String,
    exists: bool,
}

/// `GET /v1/documents[?name=orders/2026-12-07]`: the automerge-repo ids of the documents the
/// token's role may read (with `name`: that one, also before it exists here).
pub(crate) async fn list_documents(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (claims, role) = match authorize(&shared, &query, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let listed = |doc: DocumentId, exists: bool| {
        let id = repo_document_id(&shared.site, &doc);
        Listed {
            name: doc.to_string(),
            url: format!("automerge:{id}"),
            document_id: id,
            exists,
        }
    };
    if let Some(name) = query.get("name") {
        let doc: DocumentId = match name.parse() {
            Ok(d) => d,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
        if !may_read(&shared, &claims, &role, &doc) {
            return (
                StatusCode::FORBIDDEN,
                format!("role {role} may not read {doc}"),
            )
                .into_response();
        }
        let exists = shared.store.has_document(&doc).unwrap_or(false);
        shared
            .names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repo_document_id(&shared.site, &doc), doc.clone());
        return Json(listed(doc, exists)).into_response();
    }
    let docs = match shared.store.documents() {
        Ok(d) => d,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let out: Vec<Listed> = docs
        .into_iter()
        .filter(|d| may_read(&shared, &claims, &role, d))
        .map(|d| listed(d, true))
        .collect();
    Json(serde_json::json!({ "site": shared.site.to_string(), "documents": out })).into_response()
}

pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::NOT_FOUND,
            "automerge-repo clients connect here by WebSocket; GET /v1/documents lists ids",
        )
            .into_response();
    };
    let (claims, role) = match authorize(&shared, &query, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(slot) = TokenSlot::take(&shared, &claims.id) else {
        shared.stats.limit_refusals.fetch_add(1, Ordering::Relaxed);
        let why = format!(
            "token {} already has {} connections open (WsLimits::max_connections_per_token); \
             close one first",
            claims.id, shared.limits.max_connections_per_token
        );
        tracing::info!(client = %claims.name, %why, "refused a web client");
        return (StatusCode::TOO_MANY_REQUESTS, why).into_response();
    };
    let max = shared.limits.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
            shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
            shared.stats.open.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("web", client = %claims.name, role = %role);
            let mut conn = Conn::new(shared.clone(), id, claims, role);
            tracing::Instrument::instrument(conn.run(socket), span).await;
            shared.stats.open.fetch_sub(1, Ordering::Relaxed);
        })
}

/// Runs blocking store work (reads from disk, fsyncs) without stalling the runtime's other
/// tasks, where the runtime allows it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

struct Follow {
    repo_id: String,
    state: WebSyncState,
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    claims: TokenClaims,
    role: Role,
    writer: WebWriter,
    client: String,
    following: HashMap<DocumentId, Follow>,
    /// Bytes left in this minute's budget, and when it refills.
    budget: u64,
    refill_at: tokio::time::Instant,
}

enum Flow {
    Continue,
    Close,
}

impl Conn {
    fn new(shared: Arc<Shared>, id: u64, claims: TokenClaims, role: Role) -> Conn {
        let peer: PeerId = format!("web-{}", claims.name)
            .parse()
            .or_else(|_| format!("web-{id}").parse())
            .expect("web-<number> is a valid peer id");
        let budget = shared.limits.max_bytes_per_minute;
        // A client's own documents resolve before they exist here (a guest's first cart).
        for ctx in OWN_CONTEXTS {
            if let Ok(doc) = format!("{ctx}/{}", claims.name).parse::<DocumentId>() {
                shared
                    .names
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(repo_document_id(&shared.site, &doc), doc);
            }
        }
        Conn {
            writer: WebWriter {
                peer,
                role: role.clone(),
                name: claims.name.clone(),
                site: shared.site.clone(),
            },
            shared,
            id,
            claims,
            role,
            client: String::new(),
            following: HashMap::new(),
            budget,
            refill_at: tokio::time::Instant::now() + Duration::from_secs(60),
        }
    }

    async fn send(&self, socket: &mut WebSocket, frame: Vec<u8>) -> bool {
        socket.send(Message::Binary(frame.into())).await.is_ok()
    }

    async fn close_with(&self, socket: &mut WebSocket, why: &str) {
        let target = (!self.client.is_empty()).then_some(self.client.as_str());
        let _ = self
            .send(socket, message::error(&self.shared.server_id, target, why))
            .await;
        let _ = socket.send(Message::Close(None)).await;
    }

    async fn run(&mut self, mut socket: WebSocket) {
        // The handshake.
        let first = match tokio::time::timeout(JOIN_TIMEOUT, socket.recv()).await {
            Ok(Some(Ok(Message::Binary(b)))) => message::decode(&b),
            Ok(Some(Ok(_))) => Err("the first message must be a binary CBOR `join`".to_string()),
            Ok(_) => return,
            Err(_) => Err(format!("no `join` within {JOIN_TIMEOUT:?}")),
        };
        match first {
            Ok(Incoming::Join { sender, versions }) => {
                if !versions.iter().any(|v| v == PROTOCOL_VERSION) {
                    self.client = sender;
                    let why = format!(
                        "unsupported protocol version(s) {versions:?}: this server speaks automerge-repo \
                         WebSocket protocol version {PROTOCOL_VERSION:?}"
                    );
                    tracing::info!(%why, "refused a join");
                    self.close_with(&mut socket, &why).await;
                    return;
                }
                self.client = sender;
                let peer = message::peer(&self.shared.server_id, &self.client);
                if !self.send(&mut socket, peer).await {
                    return;
                }
            }
            Ok(_) => {
                self.close_with(&mut socket, "expected `join` first").await;
                return;
            }
            Err(why) => {
                self.close_with(&mut socket, &why).await;
                return;
            }
        }
        tracing::info!(client_peer = %self.client, "web client joined");
        let mut changes = self
            .shared
            .store
            .subscribe(SubscriptionFilter::all().without_paths());
        let mut ephemeral = self.shared.ephemeral.subscribe();
        let mut tick = tokio::time::interval(self.shared.poll);
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let flow = tokio::select! {
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Binary(b))) => self.on_frame(&mut socket, &b).await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
                    Some(Ok(Message::Text(_))) => {
                        self.close_with(&mut socket, "messages are binary CBOR").await;
                        Flow::Close
                    }
                    Some(Err(e)) => {
                        // Also a message over the size limit: tungstenite refuses it from
                        // its header, before buffering it.
                        tracing::info!(error = %e, "web connection failed");
                        self.shared.stats.limit_refusals.fetch_add(
                            u64::from(e.to_string().contains("too long")), Ordering::Relaxed);
                        Flow::Close
                    }
                    Some(Ok(Message::Close(_))) | None => Flow::Close,
                },
                change = changes.recv() => match change {
                    Some(change) => self.push(&mut socket, &change.doc).await,
                    None => Flow::Close,
                },
                e = ephemeral.recv() => match e {
                    Ok(e) => self.relay(&mut socket, &e).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => Flow::Continue,
                    Err(broadcast::error::RecvError::Closed) => Flow::Close,
                },
                _ = tick.tick() => {
                    if self.shared.tokens.is_revoked(&self.claims.id) || now_secs() >= self.claims.expires {
                        self.shared.stats.cut.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(token = %self.claims.id, "cut a web client: its token was revoked or expired");
                        self.close_with(&mut socket, "token revoked or expired").await;
                        Flow::Close
                    } else {
                        Flow::Continue
                    }
                }
                _ = shutdown.changed() => {
                    let _ = socket.send(Message::Close(None)).await;
                    Flow::Close
                }
            };
            if let Flow::Close = flow {
                return;
            }
        }
    }

    fn charge(&mut self, bytes: usize) -> bool {
        let now = tokio::time::Instant::now();
        if now >= self.refill_at {
            self.budget = self.shared.limits.max_bytes_per_minute;
            self.refill_at = now + Duration::from_secs(60);
        }
        match self.budget.checked_sub(bytes as u64) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    async fn on_frame(&mut self, socket: &mut WebSocket, frame: &[u8]) -> Flow {
        if !self.charge(frame.len()) {
            self.shared
                .stats
                .limit_refusals
                .fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "more than {} bytes in a minute from one connection",
                self.shared.limits.max_bytes_per_minute
            );
            self.close_with(socket, &why).await;
            return Flow::Close;
        }
        match message::decode(frame) {
            Err(why) => {
                self.close_with(socket, &why).await;
                Flow::Close
            }
            Ok(Incoming::Join { .. }) => {
                self.close_with(socket, "`join` was already received").await;
                Flow::Close
            }
            Ok(Incoming::Leave) => Flow::Close,
            Ok(Incoming::Unavailable | Incoming::Ignored) => Flow::Continue,
            Ok(Incoming::Ephemeral {
                doc,
                session,
                count,
                data,
            }) => {
                if let Some(name) = resolve(&self.shared, &doc) {
                    if self.following.contains_key(&name) {
                        let _ = self.shared.ephemeral.send(Arc::new(Ephemeral {
                            from: self.id,
                            sender: self.client.clone(),
                            doc: name,
                            repo_id: doc,
                            session,
                            count,
                            data,
                        }));
                    }
                }
                Flow::Continue
            }
            Ok(Incoming::Sync { request, doc, data }) => {
                self.on_sync(socket, request, doc, data).await
            }
        }
    }

    async fn unavailable(&self, socket: &mut WebSocket, repo_id: &str) -> Flow {
        let frame = message::unavailable(&self.shared.server_id, &self.client, repo_id);
        if self.send(socket, frame).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    async fn on_sync(
        &mut self,
        socket: &mut WebSocket,
        _request: bool,
        repo_id: String,
        data: Vec<u8>,
    ) -> Flow {
        let Some(doc) = resolve(&self.shared, &repo_id) else {
            return self.unavailable(socket, &repo_id).await;
        };
        if !may_read(&self.shared, &self.claims, &self.role, &doc) {
            tracing::info!(%doc, "a web client asked for a document its role may not read");
            // Said in words too (automerge-repo clients show `error` messages), since a
            // write into such a document is refused as well: nothing of it is stored.
            let why = format!(
                "{doc}: a web client of role {} may not read or write it (nothing stored)",
                self.role
            );
            let frame = message::error(&self.shared.server_id, Some(&self.client), &why);
            if !self.send(socket, frame).await {
                return Flow::Close;
            }
            return self.unavailable(socket, &repo_id).await;
        }
        if !self.following.contains_key(&doc) {
            if self.following.len() >= self.shared.limits.max_documents_per_session {
                self.shared
                    .stats
                    .limit_refusals
                    .fetch_add(1, Ordering::Relaxed);
                let why = format!(
                    "{doc}: at most {} documents per connection",
                    self.shared.limits.max_documents_per_session
                );
                let frame = message::error(&self.shared.server_id, Some(&self.client), &why);
                if !self.send(socket, frame).await {
                    return Flow::Close;
                }
                return self.unavailable(socket, &repo_id).await;
            }
            self.following.insert(
                doc.clone(),
                Follow {
                    repo_id: repo_id.clone(),
                    state: WebSyncState::new(),
                },
            );
        }
        let store = &self.shared.store;
        let Some(follow) = self.following.get_mut(&doc) else {
            return Flow::Continue;
        };
        let outcome = blocking(|| store.web_receive(&doc, &mut follow.state, &data, &self.writer));
        match outcome {
            Ok(WebReceived::Applied(n)) => {
                self.shared
                    .stats
                    .changes_accepted
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(WebReceived::Refused(why)) => {
                self.shared
                    .stats
                    .refused_writes
                    .fetch_add(1, Ordering::Relaxed);
                // Start this document's exchange afresh: the refused changes were never
                // stored, and the client learns our heads again.
                follow.state = WebSyncState::new();
                let why = format!("write refused: {why}");
                let frame = message::error(&self.shared.server_id, Some(&self.client), &why);
                if !self.send(socket, frame).await {
                    return Flow::Close;
                }
            }
            Ok(WebReceived::Malformed(why)) => {
                self.close_with(socket, &format!("bad sync message for {doc}: {why}"))
                    .await;
                return Flow::Close;
            }
            Err(e) => {
                tracing::warn!(%doc, error = %e, "a web client's sync message failed");
                self.following.remove(&doc);
                return self.unavailable(socket, &repo_id).await;
            }
        }
        let exists = blocking(|| store.has_document(&doc)).unwrap_or(false);
        if !exists {
            self.following.remove(&doc);
            return self.unavailable(socket, &repo_id).await;
        }
        self.push(socket, &doc).await
    }

    /// Sends what the client lacks of `doc`, if it follows it.
    async fn push(&mut self, socket: &mut WebSocket, doc: &DocumentId) -> Flow {
        let store = self.shared.store.clone();
        let Some(follow) = self.following.get_mut(doc) else {
            return Flow::Continue;
        };
        let next = blocking(|| store.web_sync_message(doc, &mut follow.state));
        match next {
            Ok(Some(bytes)) => {
                let frame =
                    message::sync(&self.shared.server_id, &self.client, &follow.repo_id, bytes);
                if self.send(socket, frame).await {
                    Flow::Continue
                } else {
                    Flow::Close
                }
            }
            Ok(None) => Flow::Continue,
            Err(e) => {
                tracing::warn!(%doc, error = %e, "could not sync a document to a web client");
                Flow::Continue
            }
        }
    }

    async fn relay(&mut self, socket: &mut WebSocket, e: &Ephemeral) -> Flow {
        if e.from == self.id || !self.following.contains_key(&e.doc) {
            return Flow::Continue;
        }
        let frame = message::ephemeral(
            &e.sender,
            &self.client,
            &e.repo_id,
            &e.session,
            e.count,
            e.data.clone(),
        );
        if self.send(socket, frame).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}
