//! outpost-transport: QUIC links with mutual TLS between the peers of a fleet.
//!
//! - [`identity`]: the fleet CA and device certificates (rcgen).
//! - [`tls`]: mutual-TLS rustls and quinn configurations that admit only devices of
//!   the fleet, of the right site, and not revoked.
//! - [`frame`]: length-prefixed frames and the close codes of a link.
//! - [`session`]: one connection with a peer, its control and document streams.
//! - [`backoff`]: exponential backoff with jitter for reconnects.

pub mod backoff;
pub mod discovery;
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
