//! Helpers shared by the integration tests of outpost-core.
#![allow(dead_code)]

use outpost_core::{DocumentId, PeerInfo, Store, StoreOptions};
use tempfile::TempDir;

/// A document id from a literal.
pub(crate) fn doc(name: &str) -> DocumentId {
    name.parse().expect("test document names are valid")
}

/// A fresh temporary directory, removed when dropped.
pub(crate) fn tempdir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory can be created")
}

/// Opens a store with default options in `dir`.
pub(crate) fn open(dir: &TempDir) -> Store {
    Store::open(dir.path()).expect("a store opens in a fresh temporary directory")
}

/// Options for a store that writes as the POS device `peer` of site `site`.
pub(crate) fn pos(peer: &str) -> StoreOptions {
    StoreOptions {
        identity: Some(PeerInfo::parse("site", peer, "pos").expect("literal identity is valid")),
        ..StoreOptions::default()
    }
}

/// Opens a store with `options` in `dir`.
pub(crate) fn open_with(dir: &TempDir, options: StoreOptions) -> Store {
    Store::open_with(dir.path(), options).expect("a store opens in a temporary directory")
}
