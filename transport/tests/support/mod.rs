//! Helpers shared by the transport integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use outpost_core::PeerInfo;
use outpost_transport::{self as tls, TransportTuning};
use outpost_transport::{DenyList, DeviceCert, FleetCa, PeerFilter, SiteRule};

/// The bound on every await of the tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `fut` for at most `STEP`, panicking with `what` on timeout.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// Installs a tracing subscriber that writes to the test output (once).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("outpost_transport=info,outpost_core=info")
            }),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

pub fn info(site: &str, peer: &str, role: &str) -> PeerInfo {
    PeerInfo::parse(site, peer, role).expect("valid test identity")
}

pub fn issue(ca: &FleetCa, site: &str, peer: &str, role: &str) -> DeviceCert {
    ca.issue(&info(site, peer, role))
        .expect("issue test certificate")
}

pub fn filter_for(cert: &DeviceCert) -> PeerFilter {
    PeerFilter::new(SiteRule::for_identity(cert.info()), DenyList::new())
}

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An endpoint on 127.0.0.1 with an ephemeral port.
pub fn endpoint(cert: &DeviceCert, filter: &PeerFilter) -> quinn::Endpoint {
    tls::endpoint(cert, filter, &TransportTuning::default(), localhost())
        .expect("bind test endpoint")
}

/// Dials `server` from `client` and accepts on `server` at the same time.
///
/// Returns the server-side and the client-side outcome. A client whose certificate the
/// server refuses may see its handshake complete before the refusal arrives; such a
/// connection is reported as refused once it closes.
pub async fn link(
    server: &quinn::Endpoint,
    client: &quinn::Endpoint,
) -> (
    Result<quinn::Connection, String>,
    Result<quinn::Connection, String>,
) {
    let addr = server.local_addr().expect("server addr");
    let accept = async {
        let incoming = server
            .accept()
            .await
            .ok_or_else(|| "endpoint closed".to_string())?;
        incoming.await.map_err(|e| e.to_string())
    };
    let dial = async {
        let connecting = client
            .connect(addr, tls::SERVER_NAME)
            .map_err(|e| e.to_string())?;
        connecting.await.map_err(|e| e.to_string())
    };
    let (s, c) = within("handshake", async { tokio::join!(accept, dial) }).await;
    let c = match (&s, c) {
        (Err(_), Ok(conn)) => {
            match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
                Ok(e) => Err(format!("closed after handshake: {e}")),
                Err(_) => Ok(conn),
            }
        }
        (_, c) => c,
    };
    (s, c)
}

// ---------------------------------------------------------------------------------------
// Nodes

use outpost_core::{Backoff, Event};
use outpost_core::{DocumentId, PeerId, Policy, Store};
use outpost_transport::{Node, NodeConfig};
use serde_json::Value as Json;
use tokio::sync::broadcast;

/// Test timing: quick reconnects, dead links noticed within 2 s.
pub fn test_config(
    dir: &std::path::Path,
    cert: &DeviceCert,
    static_peers: Vec<SocketAddr>,
) -> NodeConfig {
    let mut config = NodeConfig::new(dir, cert.clone());
    config.listen = localhost();
    config.static_peers = static_peers;
    config.reconnect = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    config.tuning.keep_alive = Duration::from_millis(300);
    config.tuning.idle_timeout = Duration::from_secs(2);
    // These tests count documents and changes; health publishing has tests of its own
    // (cloud/tests/health.rs).
    config.health_period = None;
    config
}

pub async fn start(config: NodeConfig) -> Node {
    within("node start", Node::start(config))
        .await
        .expect("node starts")
}

pub fn doc(s: &str) -> DocumentId {
    s.parse().expect("valid document id")
}

pub fn peer(s: &str) -> PeerId {
    s.parse().expect("valid peer id")
}

/// Waits until `store` holds `expected` at `path` of `doc`.
pub async fn wait_value(what: &str, store: &Store, doc: &DocumentId, path: &str, expected: &Json) {
    within(what, async {
        loop {
            if store.get(doc, path).ok().flatten().as_ref() == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits until the whole documents `doc` of all `stores` are equal (and exist).
pub async fn wait_converged(what: &str, stores: &[&Store], doc: &DocumentId) {
    let result = tokio::time::timeout(STEP * 2, async {
        loop {
            let all: Vec<Option<Json>> = stores.iter().map(|s| s.get_all(doc).ok()).collect();
            if all[0].is_some() && all.iter().all(|v| v == &all[0]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if result.is_err() {
        let all: Vec<String> = stores
            .iter()
            .map(|s| match s.get_all(doc) {
                Ok(v) => {
                    let t = v.to_string();
                    t.chars().take(300).collect()
                }
                Err(e) => e.to_string(),
            })
            .collect();
        panic!("{what}: {doc} did not converge: {all:#?}");
    }
}

/// Waits for the first event matching `pred`.
pub async fn wait_event(
    what: &str,
    rx: &mut broadcast::Receiver<Event>,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    panic!("{what}: node event channel closed")
                }
            }
        }
    })
    .await
}

pub async fn wait_connected(node: &Node, other: &str) {
    within(
        &format!("{} connected to {other}", node.info().peer),
        node.wait_connected(&peer(other)),
    )
    .await
}

/// The restaurant policy of the demo.
pub fn policy() -> Policy {
    Policy::default()
}
