//! Helpers shared by the transport integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use outpost_core::PeerInfo;
use outpost_transport::tls::{self, TransportTuning};
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
