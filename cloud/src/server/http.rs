//! The cloud's HTTP side: `/health`, `/metrics`, `POST /revocations`, the API
//! (`/api/v1/...`, see [`super::api`]) and the dashboard, served by hyper (through axum's
//! router) on the cloud's tokio runtime.
//!
//! # Why every client is bounded
//!
//! One client must not be able to stop the others (a tiny_http server on one thread was
//! frozen by a `POST /revocations` whose body never came). So, with the figures of
//! [`HttpLimits`] (documented in `cloud/API.md`, each attacked by `cloud/tests/http_limits.rs`):
//!
//! - each connection is served by its own task; blocking work (storage, a site's load) runs
//!   on the runtime's blocking threads, never on the tasks that read and write sockets;
//! - a request's head must arrive within [`HttpLimits::header_timeout`] (hyper closes the
//!   connection otherwise; an idle keep-alive connection is closed after the same time);
//! - a body must arrive within [`HttpLimits::body_timeout`] and be at most a route's size
//!   (1 MiB for the API, 4 KiB for a revocation); a declared `Content-Length` above it is
//!   refused before reading anything;
//! - a handler answers within [`HttpLimits::request_timeout`] (tower-http's `TimeoutLayer`:
//!   408 with no body beyond it);
//! - a write to a client that does not read (an export, any response) fails once it has
//!   made no progress for [`HttpLimits::send_timeout`], and the connection is dropped, which
//!   ends the export and frees its slot;
//! - one client address holds at most [`HttpLimits::max_connections_per_client`] connections
//!   and all clients [`HttpLimits::max_connections`]; a connection beyond either is answered
//!   503 at once and closed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;
use tower_http::timeout::TimeoutLayer;

use super::Shared;

/// How long and how much one client may hold of the HTTP server. The defaults are those of
/// `cloud/API.md`; tests shorten the timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must arrive within this; an idle
    /// keep-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// A request's body must arrive within this, counted from when its head arrived.
    pub body_timeout: Duration,
    /// A handler must produce the response's head within this (408 beyond); an export's
    /// streamed body is bounded by [`HttpLimits::send_timeout`] instead.
    pub request_timeout: Duration,
    /// A write to a client that makes no progress for this long (the client does not read)
    /// ends the connection.
    pub send_timeout: Duration,
    /// Connections open at once, all clients.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_client: 8,
        }
    }
}

/// The largest body of `POST /revocations`.
const MAX_REVOCATION_BODY: usize = 4096;

const TEXT: &str = "text/plain; charset=utf-8";

/// Counters of the HTTP server, appended to `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    open: AtomicU64,
    refused_per_client: AtomicU64,
    refused_total: AtomicU64,
    header_timeouts: AtomicU64,
    send_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
}

impl HttpCounters {
    pub(crate) fn body_timed_out(&self) {
        self.body_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP outpost_http_connections HTTP connections open now.\n\
             # TYPE outpost_http_connections gauge\n\
             outpost_http_connections {}\n\
             # HELP outpost_http_connections_refused_total HTTP connections answered 503 at once: too many from one address (client) or in all (total).\n\
             # TYPE outpost_http_connections_refused_total counter\n\
             outpost_http_connections_refused_total{{limit=\"client\"}} {}\n\
             outpost_http_connections_refused_total{{limit=\"total\"}} {}\n\
             # HELP outpost_http_timeouts_total HTTP connections or requests ended by a timeout: a request head (header), a body (body), a write the client did not read (send).\n\
             # TYPE outpost_http_timeouts_total counter\n\
             outpost_http_timeouts_total{{kind=\"header\"}} {}\n\
             outpost_http_timeouts_total{{kind=\"body\"}} {}\n\
             outpost_http_timeouts_total{{kind=\"send\"}} {}\n",
            load(&self.open),
            load(&self.refused_per_client),
            load(&self.refused_total),
            load(&self.header_timeouts),
            load(&self.body_timeouts),
            load(&self.send_timeouts),
        )
    }
}

/// The running HTTP server.
pub(crate) struct Http {
    task: JoinHandle<()>,
    addr: SocketAddr,
}

/// What the handlers share.
#[derive(Clone)]
struct Served {
    shared: Arc<Shared>,
    api: super::api::Api,
    counters: Arc<HttpCounters>,
}

impl Http {
    /// Binds `addr` and serves requests on the current tokio runtime.
    pub(crate) fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<Http> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot serve HTTP on {addr}; pick a free port for --http"))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener
            .local_addr()
            .context("cannot read the address bound for HTTP")?;
        let limits = shared.config.http_limits.clone();
        let counters = Arc::new(HttpCounters::default());
        let api = super::api::Api::new(
            shared.clone(),
            tokio::runtime::Handle::current(),
            counters.clone(),
        );
        let served = Served {
            shared,
            api,
            counters,
        };
        let router = router(served.clone(), &limits);
        let task = tokio::spawn(accept(listener, router, served.counters, limits));
        Ok(Http { task, addr })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: closes the listener and every connection.
    pub(crate) fn stop(self) {
        // The accept task owns the listener and the connections' tasks (a JoinSet, which
        // aborts them when dropped).
        self.task.abort();
    }
}

fn router(served: Served, limits: &HttpLimits) -> Router {
    Router::new()
        .route("/health", get(health).fallback(plain_fallback))
        // `/metrics` answers whatever the method, as before; it must answer while the API
        // is saturated, so it takes no API slot.
        .route("/metrics", any(metrics))
        .route("/revocations", post(revocations).fallback(plain_fallback))
        .fallback(dispatch)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(served)
}

/// Accepts connections until the task is aborted.
async fn accept(
    listener: TcpListener,
    router: Router,
    counters: Arc<HttpCounters>,
    limits: HttpLimits,
) {
    let clients = Arc::new(Mutex::new(Clients::default()));
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow with the server's age.
        while connections.try_join_next().is_some() {}
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, mostly: wait instead of spinning.
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admitted = Clients::admit(&clients, remote.ip(), &limits);
        let counters = counters.clone();
        match admitted {
            Err(limit) => {
                let counter = match limit {
                    Refusal::Client => &counters.refused_per_client,
                    Refusal::Total => &counters.refused_total,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, ?limit, "HTTP connection refused");
                let limits = limits.clone();
                connections.spawn(refuse(stream, limit, limits));
            }
            Ok(guard) => {
                let router = router.clone();
                let limits = limits.clone();
                connections.spawn(async move {
                    counters.open.fetch_add(1, Ordering::Relaxed);
                    serve_connection(stream, router, &counters, &limits).await;
                    counters.open.fetch_sub(1, Ordering::Relaxed);
                    drop(guard);
                });
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    counters: &HttpCounters,
    limits: &HttpLimits,
) {
    let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let served = builder.serve_connection(io, TowerToHyperService::new(router));
    if let Err(e) = served.await {
        let send_timeout = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut);
        if send_timeout {
            counters.send_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("HTTP client stopped reading; connection dropped");
        } else if e.is_timeout() {
            counters.header_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("HTTP request head did not arrive in time; connection closed");
        } else {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    }
}

/// Which connection limit refused a connection.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Client,
    Total,
}

/// Answers 503 on a connection beyond a limit, without reading its request.
async fn refuse(mut stream: TcpStream, limit: Refusal, limits: HttpLimits) {
    let text = match limit {
        Refusal::Client => format!(
            "too many connections from your address: at most {} at once; close idle ones or retry in a moment\n",
            limits.max_connections_per_client
        ),
        Refusal::Total => format!(
            "the cloud serves {} HTTP connections at once; retry in a moment\n",
            limits.max_connections
        ),
    };
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: {TEXT}\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{text}",
        text.len()
    );
    let _ = tokio::time::timeout(limits.send_timeout, async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct Clients {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

impl Clients {
    fn admit(
        clients: &Arc<Mutex<Clients>>,
        ip: IpAddr,
        limits: &HttpLimits,
    ) -> std::result::Result<ClientGuard, Refusal> {
        let mut c = clients.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= limits.max_connections {
            return Err(Refusal::Total);
        }
        let n = c.per_ip.entry(ip).or_default();
        if *n >= limits.max_connections_per_client {
            return Err(Refusal::Client);
        }
        *n += 1;
        c.total += 1;
        Ok(ClientGuard {
            clients: clients.clone(),
            ip,
        })
    }
}

/// One admitted connection; frees its place when dropped.
struct ClientGuard {
    clients: Arc<Mutex<Clients>>,
    ip: IpAddr,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let mut c = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A socket whose writes fail with `TimedOut` once one has waited `timeout` without the
/// client taking a byte: hyper has no write timeout, and a client that stops reading would
/// otherwise hold its connection (and an export's slot) forever.
struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write (or flush) could not proceed; cleared when one does.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> SendTimeout<S> {
    fn new(inner: S, timeout: Duration) -> SendTimeout<S> {
        SendTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner write returned `poll`: arms, checks or clears the timer.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {timeout:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than the route takes (declared or sent).
    TooLarge,
    /// Not all of it arrived within the body timeout.
    TimedOut(Duration),
    /// The connection failed mid-body.
    Failed(String),
}

/// Reads a whole body of at most `max` bytes, which must arrive by `deadline` (a declared
/// `Content-Length` above `max` is refused before reading a byte).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> std::result::Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyError::TimedOut(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Failed(e.to_string())),
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT))],
        body.into(),
    )
        .into_response()
}

/// Any other path or method outside the API: as before, 404 for a GET, 405 otherwise.
async fn plain_fallback(method: Method) -> Response {
    if method == Method::GET {
        text(
            StatusCode::NOT_FOUND,
            "not found; try /health or /metrics\n",
        )
    } else {
        text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET (and POST /revocations) is supported\n",
        )
    }
}

async fn dispatch(State(served): State<Served>, request: Request) -> Response {
    if super::api::claims(request.uri().path()) {
        served.api.serve(request).await
    } else {
        plain_fallback(request.method().clone()).await
    }
}

async fn health(State(served): State<Served>) -> Response {
    let shared = served.shared.clone();
    match tokio::task::spawn_blocking(move || check_health(&shared)).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok\n"),
        Ok(Err(e)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", outpost_binsupport::one_line(e.as_ref())),
        ),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: the health check stopped: {e}\n"),
        ),
    }
}

async fn metrics(State(served): State<Served>) -> Response {
    let body =
        served.shared.metrics.render() + &served.api.metrics_text() + &served.counters.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn revocations(State(served): State<Served>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let timeout = served.shared.config.http_limits.body_timeout;
    let body = match read_body(&parts.headers, body, MAX_REVOCATION_BODY, timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a revocation is at most {MAX_REVOCATION_BODY} bytes; send the file written by `outpost cert revoke --out`\n"),
            )
        }
        Err(BodyError::TimedOut(t)) => {
            served.counters.body_timed_out();
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s; send it at once\n", t.as_secs()),
            );
        }
        Err(BodyError::Failed(e)) => {
            return text(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}\n"))
        }
    };
    let shared = served.shared.clone();
    // Verifying, storing (and on PostgreSQL publishing) a revocation blocks.
    let learnt = tokio::task::spawn_blocking(move || {
        outpost_core::revocation::SignedRevocation::from_bytes(&body)
            .map_err(anyhow::Error::from)
            .and_then(|record| {
                let device = record.revocation()?.to_string();
                Ok((device, shared.learn_revocation(record)?))
            })
    })
    .await
    .unwrap_or_else(|e| Err(anyhow!("the revocation's handling stopped: {e}")));
    match learnt {
        Ok((device, true)) => text(StatusCode::OK, format!("revoked {device} fleet-wide\n")),
        Ok((device, false)) => text(StatusCode::OK, format!("{device} was already revoked\n")),
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            format!(
                "revocation refused: {}\n",
                outpost_binsupport::one_line(e.as_ref())
            ),
        ),
    }
}

/// Healthy when a write reaches the disk and the server is not shutting down.
fn check_health(shared: &Shared) -> Result<()> {
    if shared.stopping.load(Ordering::SeqCst) {
        return Err(anyhow!("shutting down"));
    }
    let now = outpost_core::Timestamp::now().as_millis().to_be_bytes();
    shared
        .db
        .keyspace("cloud/health")
        .insert(b"last-check", now)
        .and_then(|_| shared.db.sync())
        .map_err(|e| anyhow!("storage is not writable: {e}"))
}
