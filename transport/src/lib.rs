//! outpost-transport: QUIC links with mutual TLS between the peers of a fleet, driving
//! the sans-IO sync engine of `outpost-core`.
//!
//! Two devices of a site syncing over QUIC on localhost:
//!
//! ```
//! use std::time::Duration;
//!
//! use outpost_core::{Durability, PeerInfo};
//! use outpost_transport::{FleetCa, Node, NodeConfig};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // One CA per fleet; one certificate per device, naming its site, id and role.
//! let ca = FleetCa::generate("acme")?;
//! let pos_cert = ca.issue(&PeerInfo::parse("lyon", "pos-1", "pos")?)?;
//! let kiosk_cert = ca.issue(&PeerInfo::parse("lyon", "kiosk-1", "kiosk")?)?;
//!
//! let mut config = NodeConfig::new(dir.path().join("pos"), pos_cert);
//! config.listen = "127.0.0.1:0".parse()?;
//! let pos = Node::start(config).await?;
//!
//! let mut config = NodeConfig::new(dir.path().join("kiosk"), kiosk_cert);
//! config.listen = "127.0.0.1:0".parse()?;
//! config.static_peers = vec![pos.local_addr()];
//! let kiosk = Node::start(config).await?;
//!
//! // The kiosk takes an order; the POS sees it.
//! let orders = "orders/2026-11-24".parse()?;
//! kiosk.store().put(&orders, "/o-1/status", "new".into(), Durability::Durable)?;
//! tokio::time::timeout(Duration::from_secs(10), async {
//!     while pos.store().get(&orders, "/o-1/status").ok().flatten().is_none() {
//!         tokio::time::sleep(Duration::from_millis(20)).await;
//!     }
//! })
//! .await?;
//! assert_eq!(pos.store().get(&orders, "/o-1/status")?, Some("new".into()));
//!
//! kiosk.shutdown().await?;
//! pos.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What is here
//!
//! - Identities: the fleet CA and device certificates ([`FleetCa`], [`DeviceCert`]; rcgen),
//!   the identity SAN URI `outpost://<site>/<peer>?role=<role>`.
//! - Mutual TLS: rustls and quinn configurations that admit only devices of the fleet, of
//!   the right site ([`SiteRule`]), and not revoked ([`DenyList`]); [`endpoint`].
//! - Frames and close codes: length-prefixed frames ([`write_frame`], [`read_frame`]) and
//!   [`CloseCodeExt`] to send `outpost_core::CloseCode`s on QUIC connections.
//! - [`Session`]: one connection with a peer: its control stream and per-document streams.
//! - [`Runner`]: the one async loop around `outpost_core::Links`, used by every device
//!   [`Node`] and by every site of the cloud peer, with [`Hooks`] for what differs.
//! - [`Node`]: a device: store, runner, accepting and dialing, events for apps.
//! - mDNS TXT records ([`txt_record`], ...); the announcer/browser needs the `discovery`
//!   feature.

mod discovery;
mod error;
mod frame;
mod health;
mod identity;
mod node;
mod renew;
mod runner;
mod session;
mod signing;
mod tls;

pub use discovery::{
    instance_name, parse_txt_record, should_dial, txt_record, SERVICE_TYPE, TXT_VERSION,
};
pub use error::{Error, Result};
pub use frame::{
    decode as decode_frame, encode as encode_frame, read_frame, write_frame, CloseCodeExt,
    DEFAULT_MAX_FRAME_SIZE, HEADER_LEN,
};
pub use health::{DeviceHealth, HEALTH_DOC, MAX_LAST_ERRORS, MAX_RECENT_AUDIT};
pub use identity::{
    identity_uri, parse_identity_uri, peer_info_from_cert, public_key_id, DeviceCert, FleetCa,
    DEVICE_CERT_VALIDITY_DAYS, SERVER_NAME,
};
pub use node::{Node, NodeConfig, DEFAULT_PORT, DEFAULT_REPLICATED_TIMEOUT};
pub use renew::{
    is_renewal, not_after_ms, probe_certificate, request_renewal, serve_renewal, verify_renewed,
    Renewer, MAX_RENEW_WINDOW_DAYS, RENEW_ALPN,
};
pub use runner::{
    runner_channel, Hooks, Runner, RunnerConfig, RunnerHandle, RunnerInbox, DEFAULT_EXPIRY_GRACE,
};
pub use session::{Session, SessionConfig, SessionEvent, SessionId};
pub use signing::{DeviceSigner, FleetVerifier};
pub use tls::{
    client_config, client_config_for, endpoint, peer_certificate, peer_info_of,
    rustls_client_config, rustls_server_config, server_config, transport_config, DenyEntry,
    DenyList, PeerFilter, Refusal, SiteRule, TransportTuning, ALPN,
};
