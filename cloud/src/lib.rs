//! outpost-cloud: the reference cloud peer, the `outpost-cloud` server.
//!
//! (The device command line `outpost` is the crate `outpost-cli`, in `cli/`.)
//!
//! - [`server`]: the reference cloud peer. One QUIC endpoint serves every site of a fleet;
//!   each site's documents live in their own namespace of one sled database
//!   (`site/<site>/`), each connection is routed by the site in the peer's verified
//!   certificate, and a site is loaded when one of its devices connects and unloaded when
//!   it has been idle for a while. HTTP `/health` and Prometheus `/metrics`.
//!
//! The binary is thin: `outpost-cloud` calls [`server::main`]. A cloud peer can also run inside another program:
//!
//! ```no_run
//! use outpost_cloud::server::{Cloud, CloudConfig};
//! # fn main() -> anyhow::Result<()> {
//! let config = CloudConfig::new(
//!     "/var/lib/outpost-cloud".into(),
//!     "0.0.0.0:4433".parse()?,
//!     "127.0.0.1:9090".parse()?,
//!     "/etc/outpost/ca.pem".into(),
//!     "/etc/outpost/cert.pem".into(),
//!     "/etc/outpost/key.pem".into(),
//! );
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let cloud = Cloud::start(config).await?;
//!     println!("serving QUIC on {}", cloud.quic_addr());
//!     cloud.shutdown().await
//! })?;
//! # Ok(()) }
//! ```

pub mod server;
