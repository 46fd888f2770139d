//! outpost-ffi: the UniFFI surface of outpost for Kotlin, Swift and Python apps.
//!
//! A thin layer over [`outpost_transport::Node`] and [`outpost_core::Store`]: conversions
//! and handles, no logic of its own. Values cross as JSON text, paths are JSON Pointers,
//! every error is an [`OutpostError`], and no panic crosses the boundary. The node owns
//! a small async runtime, so foreign callers need none; listeners are called on threads
//! of their own. `bindings/generate.sh` generates the Kotlin, Swift and Python bindings.
//!
//! The same API from Rust, as the generated bindings expose it: a POS and a kiosk on
//! loopback, the POS's menu reaching the kiosk.
//!
//! ```
//! use outpost_ffi::{FleetCa, NodeConfig, Outpost};
//! # fn main() -> Result<(), outpost_ffi::OutpostError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let ca = FleetCa::generate("demo".into())?;
//! let config = |peer: &str, role: &str, peers: Vec<String>| -> Result<NodeConfig, outpost_ffi::OutpostError> {
//!     Ok(NodeConfig {
//!         data_dir: dir.path().join(peer).display().to_string(),
//!         certificate: ca.issue("paris-11".into(), peer.into(), role.into())?,
//!         role: Some(role.into()),
//!         listen: "127.0.0.1:0".into(),
//!         peers,
//!         discovery: false,
//!         policy_json: None,
//!         durable_writes: true,
//!         ticket_prefix: None,
//!         signatures: None,
//!         replicated_timeout_ms: 3000,
//!         ws_listen: None,
//!         ws_plain: false,
//!         data_key: None,
//!     })
//! };
//! let pos = Outpost::open_blocking(config("pos-1", "pos", vec![])?)?;
//! let kiosk = Outpost::open_blocking(config("kiosk-1", "kiosk", vec![pos.local_address().unwrap_or_default()])?)?;
//!
//! pos.put_blocking("menu".into(), "/items/burger".into(), r#"{"name": "Burger", "price": 950}"#.into())?;
//! let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
//! while kiosk.get_int_blocking("menu".into(), "/items/burger/price".into()).ok().flatten() != Some(950) {
//!     assert!(std::time::Instant::now() < deadline, "the menu never reached the kiosk");
//!     std::thread::sleep(std::time::Duration::from_millis(10));
//! }
//! assert!(kiosk.status_blocking()?.online);
//! kiosk.shutdown_blocking()?;
//! pos.shutdown_blocking()?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod events;
mod feed;
mod fleet;
mod listener;
mod live;
mod logging;
mod outpost;
mod pairing;
mod query;
mod types;

pub use config::{DeviceCertificate, NodeConfig};
pub use error::{OutpostError, Result};
pub use events::{EventStream, NodeEvent};
pub use feed::{ConsumerFeed, FeedBatch, FeedListener};
pub use fleet::{
    certificate_identity, load_device_certificate, migrate_storage, save_device_certificate,
    FleetCa,
};
pub use listener::{NodeListener, Subscription};
pub use live::{QueryResult, QueryWatch, Snapshot, StatusWatch, ValueWatch};
pub use logging::{enable_logging, set_log_sink, LogLevel, LogSink};
pub use outpost::Outpost;
pub use pairing::ScreenPairing;
pub use query::{Filter, Query, QueryDiff, QueryFilter, QueryItem};
pub use types::{
    ChangeEvent, ChangeOrigin, Conflict, DocumentSyncStatus, PeerIdentity, PeerSyncStatus,
    RefusedChange, SyncStatus, TxOp, WriteAck,
};

uniffi::setup_scaffolding!("outpost");
