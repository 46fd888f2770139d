//! HTTP `/health`, `/metrics` and `POST /revocations`, served by tiny_http on its own thread;
//! `/metrics`, the API (`/api/v1/...`) and the dashboard are handed to [`super::api`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use tiny_http::{Header, Method, Response, Server};

use super::Shared;

/// The running HTTP server.
pub(crate) struct Http {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Http {
    /// Binds `addr` and serves requests on a thread.
    pub(crate) fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<Http> {
        let server = Server::http(addr).map_err(|e| {
            anyhow!("cannot serve HTTP on {addr}: {e}; pick a free port for --http")
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("the HTTP server is not on an IP address"))?;
        let server = Arc::new(server);
        let s = server.clone();
        let api = super::api::Api::new(shared.clone(), tokio::runtime::Handle::current());
        let thread = std::thread::Builder::new()
            .name("outpost-http".into())
            .spawn(move || {
                for request in s.incoming_requests() {
                    if super::api::claims(request.url().split('?').next().unwrap_or("")) {
                        api.dispatch(request);
                        continue;
                    }
                    respond(request, &shared);
                }
            })?;
        Ok(Http {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub(crate) fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

/// The largest body of `POST /revocations`.
const MAX_REVOCATION_BODY: u64 = 4096;

fn respond(mut request: tiny_http::Request, shared: &Shared) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let (status, content_type, body) = match (request.method(), path.as_str()) {
        (Method::Get, "/health") => match health(shared) {
            Ok(()) => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
            Err(e) => (
                503,
                "text/plain; charset=utf-8",
                format!("unhealthy: {}\n", outpost_binsupport::one_line(e.as_ref())),
            ),
        },
        (Method::Get, "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        (Method::Post, "/revocations") => {
            use std::io::Read;
            let mut body = Vec::new();
            let read = request
                .as_reader()
                .take(MAX_REVOCATION_BODY + 1)
                .read_to_end(&mut body);
            let text = "text/plain; charset=utf-8";
            match read {
                Err(e) => (400, text, format!("cannot read the body: {e}\n")),
                Ok(_) if body.len() as u64 > MAX_REVOCATION_BODY => (
                    413,
                    text,
                    format!("a revocation is at most {MAX_REVOCATION_BODY} bytes; send the file written by `outpost cert revoke --out`\n"),
                ),
                Ok(_) => match outpost_core::revocation::SignedRevocation::from_bytes(&body)
                    .map_err(anyhow::Error::from)
                    .and_then(|record| {
                        let device = record.revocation()?.to_string();
                        Ok((device, shared.learn_revocation(record)?))
                    }) {
                    Ok((device, true)) => (200, text, format!("revoked {device} fleet-wide\n")),
                    Ok((device, false)) => (200, text, format!("{device} was already revoked\n")),
                    Err(e) => (
                        400,
                        text,
                        format!("revocation refused: {}\n", outpost_binsupport::one_line(e.as_ref())),
                    ),
                },
            }
        }
        (Method::Get, _) => (
            404,
            "text/plain; charset=utf-8",
            "not found; try /health or /metrics\n".to_string(),
        ),
        _ => (
            405,
            "text/plain; charset=utf-8",
            "only GET (and POST /revocations) is supported\n".to_string(),
        ),
    };
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type));
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "HTTP response not sent");
    }
}

/// Healthy when a write reaches the disk and the server is not shutting down.
fn health(shared: &Shared) -> Result<()> {
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
