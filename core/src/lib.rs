//! outpost-core: the documents of a site as Automerge documents persisted in sled, change
//! notifications, and a sans-IO sync engine with an access policy.
//!
//! ```
//! use outpost_core::{Durability, Store};
//! # fn main() -> Result<(), outpost_core::Error> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let store = Store::open(dir.path())?;
//! let menu = "menu".parse()?;
//! store.put(&menu, "/items/burger/price", 950.into(), Durability::Durable)?;
//! store.increment(&"stock".parse()?, "/burger", 20, Durability::Fast)?;
//! assert_eq!(store.get(&menu, "/items/burger/price")?, Some(950.into()));
//! # Ok(()) }
//! ```

mod actor;
mod chunk;
mod document_id;
pub mod engine;
mod error;
mod ids;
mod name;
mod pointer;
mod policy;
mod store;
mod time;
mod value;

pub use actor::{parse_actor, ActorClaim};
pub use automerge::ChangeHash;
pub use document_id::{ContextName, DocumentId};
pub use engine::{Engine, EngineConfig, EngineError, EngineEvent, Transmit};
pub use error::{Error, Result};
pub use ids::{PeerId, PeerInfo, Role, SiteId};
pub use pointer::Pointer;
pub use policy::{ContextRule, Policy};
pub use store::{
    ChangeEvent, ConflictValue, Durability, Origin, Store, StoreOptions, Subscription,
    SubscriptionFilter, Tx,
};
pub use time::Timestamp;
