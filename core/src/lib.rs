//! outpost-core: the documents of a site as Automerge documents persisted in sled, change
//! notifications, and a sans-IO sync engine with an access policy.
//!
//! Two POS tablets syncing in memory (the transport crate does the same over QUIC):
//!
//! ```
//! use outpost_core::{Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions, Timestamp};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let open = |peer: &str| -> Result<Engine, outpost_core::Error> {
//!     let me = PeerInfo::parse("paris-11", peer, "pos")?;
//!     let dir = tempfile::tempdir().expect("temp dir").keep();
//!     let store = Store::open_with(dir, StoreOptions { identity: Some(me.clone()), ..Default::default() })?;
//!     Ok(Engine::new(store, EngineConfig::new(me, Policy::default())))
//! };
//! let (mut a, mut b) = (open("pos-1")?, open("pos-2")?);
//! let menu = "menu".parse()?;
//! a.store().put(&menu, "/items/burger/price", 950.into(), Durability::Durable)?;
//!
//! let now = Timestamp(0);
//! a.handle_connect(b.local().clone(), now);
//! b.handle_connect(a.local().clone(), now);
//! // The driver moves bytes until both engines are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(t) = a.poll_transmit() { b.handle_message(&a.local().peer, &t.bytes, now)?; moved = true; }
//!     while let Some(t) = b.poll_transmit() { a.handle_message(&b.local().peer, &t.bytes, now)?; moved = true; }
//!     if !moved { break; }
//! }
//! assert_eq!(b.store().get(&menu, "/items/burger/price")?, Some(950.into()));
//! # Ok(()) }
//! ```

mod acknowledged;
mod actor;
mod chunk;
mod document_id;
pub mod engine;
mod error;
mod event;
mod genesis;
mod ids;
mod link;
mod name;
mod pointer;
mod policy;
pub mod revocation;
pub mod signing;
pub mod storage;
mod store;
mod time;
mod value;
pub mod vouch;

pub use acknowledged::Acknowledged;
pub use actor::{parse_actor, ActorClaim};
pub use automerge::ChangeHash;
pub use document_id::{ContextName, DocumentId};
pub use engine::{Engine, EngineConfig, EngineError, Transmit};
pub use error::{Error, Result};
pub use event::Event;
pub use ids::{PeerId, PeerInfo, Role, SiteId};
pub use link::{Backoff, CloseCode, ConnId, LinkConfig, Links, Output, Target};
pub use pointer::Pointer;
pub use policy::{ContextRule, FeedItems, PathRule, Policy, DEVICE_TOKEN};
pub use store::{
    restore, restore_stores, restore_stores_with_key, restore_with_key, BackupError, BackupSummary,
    BackupWriter, BACKUP_MAGIC, BACKUP_VERSION, BACKUP_VERSION_SEALED, ERASURES_DOC,
};
pub use store::{AuditEntry, AuditKind, AuditLimits, AuditQuery, AuditTrail};
pub use store::{
    Author, ChangeEvent, ConflictValue, Durability, Feed, FeedBatch, FeedDocs, FeedFilter, Origin,
    Store, StoreOptions, Subscription, SubscriptionFilter, Ticket, TicketPrefix, Tx, WriteOutcome,
};
pub use store::{Mirror, MirrorBatch, MirrorTree, MirroredChange, MirroredEntry, SharedMirror};
pub use store::{WebReceived, WebSyncState, WebWriter};
pub use time::Timestamp;

// Storage engines (see `storage`). `Engine` is the sync engine's name, so the storage
// engine is `StorageEngine` at the root and `storage::Engine` in its module.
pub use storage::{migrate, Database, Engine as StorageEngine, MigrationReport};
