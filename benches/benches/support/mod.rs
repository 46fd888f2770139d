//! Pieces the benches that run real `Node`s share.

use std::path::Path;

use outpost_core::PeerInfo;
use outpost_transport::{FleetCa, NodeConfig};

/// The site of every device of these benchmarks.
const SITE: &str = "lyon";

/// A POS of the benchmark's site.
pub(crate) fn info(peer: &str) -> PeerInfo {
    PeerInfo::parse(SITE, peer, "pos").expect("benchmark peer names are valid")
}

/// A node on 127.0.0.1 with an ephemeral port, as the transport tests build them.
pub(crate) fn node_config(
    dir: &Path,
    ca: &FleetCa,
    peer: &str,
    static_peers: Vec<std::net::SocketAddr>,
) -> NodeConfig {
    let cert = ca.issue(&info(peer)).expect("issue a device certificate");
    let mut config = NodeConfig::new(dir, cert);
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.static_peers = static_peers;
    // Measured writes only: no health reports in between.
    config.health_period = None;
    config
}
