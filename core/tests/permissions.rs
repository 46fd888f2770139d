//! A data directory is its owner's only: 0700, its files 0600 (every order of a site is in
//! them), set on create and fixed on open, with either engine.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{doc, tempdir};
use outpost_core::{Durability, StorageEngine, Store, StoreOptions};
use serde_json::json;

/// Every entry under `dir` whose mode is not 0700 (directories) or 0600 (files).
fn too_open(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir)
        .expect("read the directory")
        .flatten()
    {
        let meta = entry.metadata().expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            out.push(format!("{} {mode:o}", entry.path().display()));
        }
        if meta.is_dir() {
            too_open(&entry.path(), out);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn data_directories_are_readable_by_their_owner_only() {
    for engine in [StorageEngine::Sled, StorageEngine::Redb] {
        let parent = tempdir();
        let dir = parent.path().join("data");
        let options = || StoreOptions {
            engine,
            ..StoreOptions::default()
        };
        {
            let store = Store::open_with(&dir, options()).expect("open");
            store
                .put(
                    &doc("orders"),
                    "/o1",
                    json!({"total": 950}),
                    Durability::Durable,
                )
                .expect("write");
        }
        assert_eq!(mode(&dir), 0o700, "{engine}: created 0700");
        // An older version's directory: world-readable, its files too.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut widened = 0;
        for entry in std::fs::read_dir(&dir).expect("read").flatten() {
            if entry.metadata().expect("metadata").is_file() && entry.file_name() != "outpost-store"
            {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
                widened += 1;
            }
        }
        assert!(widened > 0, "{engine}: the engine wrote files");
        let store = Store::open_with(&dir, options()).expect("reopen");
        let mut bad = Vec::new();
        too_open(&dir, &mut bad);
        assert!(bad.is_empty(), "{engine}: left open to others: {bad:?}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            store.get(&doc("orders"), "/o1").expect("read"),
            Some(json!({"total": 950}))
        );
        println!("{engine}: directory 0700, {widened} widened files narrowed to 0600 on open");
    }
}
