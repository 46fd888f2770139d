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
//! # Modules
//!
//! - [`identity`]: the fleet CA and device certificates (rcgen); the identity SAN URI
//!   `outpost://<site>/<peer>?role=<role>`.
//! - [`tls`]: mutual-TLS rustls and quinn configurations that admit only devices of
//!   the fleet, of the right site ([`SiteRule`]), and not revoked ([`DenyList`]).
//! - [`frame`]: length-prefixed frames and the close codes ([`CloseCode`]) of a link.
//! - [`session`]: one connection with a peer: its control stream and per-document streams.
//! - [`node`]: the [`Node`]: store, engine loop, accepting, dialing with [`Backoff`],
//!   events for apps.
//! - [`backoff`]: exponential backoff with jitter for reconnects.
//! - [`discovery`]: mDNS TXT records; the announcer/browser needs the `discovery` feature.

pub mod backoff;
pub mod discovery;
pub mod drive;
pub mod error;
pub mod frame;
pub mod identity;
pub mod node;
pub mod session;
pub mod tls;

pub use backoff::Backoff;
pub use error::{Error, Result};
pub use frame::CloseCode;
pub use identity::{peer_info_from_cert, DeviceCert, FleetCa};
pub use node::{Node, NodeConfig, NodeEvent};
pub use session::{Session, SessionConfig, SessionEvent, SessionId};
pub use tls::{DenyEntry, DenyList, PeerFilter, SiteRule, TransportTuning};
