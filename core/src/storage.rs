//! Storage engines behind the store (see `core/docs/design.md`, "Storage layout").

pub(crate) mod sled;

pub use self::sled::quarantine_incomplete_snapshots;
