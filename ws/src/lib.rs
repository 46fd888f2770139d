//! outpost-ws: automerge-repo's WebSocket protocol on a site device, so browsers, phones and
//! services (automerge-repo in JS, samod, ...) sync the site's documents under scoped tokens.
//!
//! A device serves it beside QUIC (`outpost serve --ws-listen ADDR`). Each outpost document
//! name maps to a stable automerge-repo document id ([`repo_document_id`]), listed by
//! `GET /v1/documents` on the same port. A client presents a token that this device issued
//! ([`TokenBook::issue`], `outpost token issue --role kds --name kitchen-screen-1 --ttl 12h`)
//! at the upgrade; it reads what its role may read, and what it writes is checked like a
//! device's changes (context and path rules, limits), then signed by this device and sent on
//! to the site's peers (see `core/docs/design.md`, "Web clients"). [`WsConfig::with_tls`]
//! serves `wss` with the device's certificate (what `outpost serve` does unless
//! `--ws-plain`); the kitchen display page is served at `/kds/`.
//!
//! ```no_run
//! # async fn serve(store: outpost_core::Store) -> Result<(), outpost_ws::WsError> {
//! use outpost_ws::{TokenBook, WsConfig, WsServer};
//! let tokens = TokenBook::open("./pos1/web-tokens")?;
//! let server = WsServer::start(store, WsConfig::new("0.0.0.0:7735".parse().expect("addr"), tokens)).await?;
//! println!("{}://{}/?token=...", server.scheme(), server.local_addr());
//! # Ok(()) }
//! ```

mod docid;
mod error;
mod message;
mod server;
mod site;
pub mod tls;
mod token;
mod web;

pub use docid::{repo_document_id, repo_url};
pub use error::WsError;
pub use message::PROTOCOL_VERSION;
pub use server::{WsConfig, WsLimits, WsServer, WsStats};
pub use site::WsSite;
pub use token::{TokenBook, TokenClaims};
