//! What the FFI tests share.

use outpost_ffi::{FleetCa, NodeConfig};

/// A device `peer` of site paris-11 with `role`, its data under `dir/peer`, listening on a free
/// loopback port, with no peers yet.
pub(crate) fn config(dir: &std::path::Path, ca: &FleetCa, peer: &str, role: &str) -> NodeConfig {
    NodeConfig {
        data_dir: dir.join(peer).display().to_string(),
        certificate: ca
            .issue("paris-11".into(), peer.into(), role.into())
            .expect("issue"),
        role: None,
        listen: "127.0.0.1:0".into(),
        peers: vec![],
        discovery: false,
        policy_json: None,
        durable_writes: false,
        ticket_prefix: None,
        signatures: None,
        replicated_timeout_ms: 3000,
        ws_listen: None,
        ws_plain: false,
        data_key: None,
    }
}
