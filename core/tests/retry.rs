//! The outcome of a failed write is defined: a durable write whose flush fails (a full disk)
//! may or may not survive, so a write that must not count twice is retried with
//! `Store::transact_once` and the same write id, which applies it exactly once whatever
//! happened to the failed attempt, also across a restart.
//!
//! The store lives on a size-limited tmpfs the test mounts, which needs root (CI runs as
//! root; elsewhere the test says it cannot run, and fails under `CI`).
#![allow(clippy::unwrap_used)]

use outpost_core::{Durability, PeerInfo, Store, StoreOptions, WriteOutcome};
use outpost_testkit::Tmpfs;
use serde_json::json;

fn open(path: &std::path::Path) -> outpost_core::Result<Store> {
    Store::open_with(
        path,
        StoreOptions {
            identity: Some(PeerInfo::parse("s1", "pos-1", "pos").unwrap()),
            ..Default::default()
        },
    )
}

fn sale(store: &Store, i: usize) -> outpost_core::Result<WriteOutcome<()>> {
    let stock = "stock".parse().unwrap();
    store.transact_once(&stock, &format!("sale-{i}"), Durability::Durable, |tx| {
        tx.increment("/burger/sold", 1)?;
        tx.put(
            &format!("/sales/s{i}"),
            json!({"sku": "burger", "pad": "x".repeat(2000)}),
        )
    })
}

#[test]
fn a_failed_durable_write_retried_with_its_id_counts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&tmp.path().join("disk"), 16) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = fs.path().join("pos");
    let store = open(&data).unwrap();
    for i in 0..20 {
        assert_eq!(sale(&store, i).unwrap(), WriteOutcome::Applied(()));
        // A retry of a write that succeeded but whose answer was lost does nothing.
        assert_eq!(sale(&store, i).unwrap(), WriteOutcome::AlreadyApplied);
    }
    let ballast = fs.fill();
    // Sales go on while the disk is full; every one that fails is retried later.
    let mut failed = Vec::new();
    for i in 20..60 {
        if let Err(e) = sale(&store, i) {
            if failed.is_empty() {
                eprintln!("first failed write (sale {i}): {e}");
            }
            failed.push(i);
        }
    }
    assert!(
        !failed.is_empty(),
        "a {ballast} B ballast filled the disk, yet no durable write failed"
    );
    // Retrying in the same process while the disk is still full fails again, or finds the
    // write applied: never applies it twice.
    let mut outcomes = std::collections::BTreeMap::new();
    for &i in &failed {
        let o = match sale(&store, i) {
            Ok(o) => format!("{o:?}"),
            Err(_) => "failed again".to_string(),
        };
        *outcomes.entry(o).or_insert(0) += 1;
    }
    println!("failed writes: retried on the full disk: {outcomes:?}");
    drop(store);
    fs.free();

    // Restart once space is back, then retry every failed sale with its id.
    let store = open(&data).unwrap();
    let (mut found, mut applied) = (0, 0);
    for &i in &failed {
        match sale(&store, i).unwrap() {
            WriteOutcome::AlreadyApplied => found += 1,
            WriteOutcome::Applied(()) => applied += 1,
        }
    }
    // Every sale once more: all are there already.
    for i in 0..60 {
        assert_eq!(sale(&store, i).unwrap(), WriteOutcome::AlreadyApplied);
    }
    let stock = "stock".parse().unwrap();
    let sold = store.get(&stock, "/burger/sold").unwrap();
    println!(
        "failed writes: {} of 40 durable sales failed on a full disk; after the restart {found} \
         of them were found applied and {applied} were applied by the retry; sold = {sold:?}",
        failed.len()
    );
    assert_eq!(sold, Some(json!(60)), "each of the 60 sales counted once");
    drop(store);
    let store = open(&data).unwrap();
    assert_eq!(store.get(&stock, "/burger/sold").unwrap(), Some(json!(60)));
}
