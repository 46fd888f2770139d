//! Costs that must not grow with the number of documents in a store (issue 11): creating a
//! document, opening one, listing them, at 1,000 / 10,000 / 100,000 documents, next to what
//! the earlier layout (one sled tree per document) costs for the same count, in the same run.
//!
//! `cargo bench -p outpost-benches --bench documents` (`DOCUMENTS_MAX=10000` stops earlier).

use std::time::{Duration, Instant};

use outpost_core::{DocumentId, Durability, Store, StoreOptions};
use serde_json::json;

/// The earlier layout is measured up to this many documents (its creation cost grows with
/// the number of trees: 40,000 took 400 s to build on this machine).
const OLD_LAYOUT_MAX: usize = 10_000;

fn doc(i: usize) -> DocumentId {
    format!("orders/p-{i:06}")
        .parse()
        .expect("a valid document id")
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let max: usize = std::env::var("DOCUMENTS_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let marks: Vec<usize> = [1_000, 10_000, 100_000]
        .into_iter()
        .filter(|m| *m <= max)
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open_with(dir.path().join("store"), StoreOptions::default())
        .expect("the store opens");
    let old_dir = tempfile::tempdir().expect("a temporary directory");
    let old = sled::Config::new()
        .path(old_dir.path())
        .open()
        .expect("sled opens");
    let chunk = {
        // A small document's bytes, as the earlier layout stored them per tree.
        let probe = Store::open_with(dir.path().join("probe"), StoreOptions::default())
            .expect("the probe store opens");
        probe
            .put(&doc(0), "/o", json!({"sku": "burger"}), Durability::Fast)
            .expect("write");
        probe.export(&doc(0)).expect("export")
    };
    println!("documents in one store: cost per document of the last 1,000 created, open and list");
    let mut created = 0;
    for &mark in &marks {
        // Fill up to 1,000 short of the mark, unmeasured.
        while created < mark - 1_000 {
            store
                .put(&doc(created), "/o", json!(created), Durability::Fast)
                .expect("write");
            if mark <= OLD_LAYOUT_MAX {
                old.open_tree(format!("doc/{}", doc(created)))
                    .and_then(|t| t.insert(0u64.to_be_bytes(), chunk.as_slice()))
                    .expect("old layout write");
            }
            created += 1;
            if created % 5_000 == 0 {
                store.evict_idle(Duration::ZERO);
            }
        }
        let t0 = Instant::now();
        for i in created..mark {
            store
                .put(&doc(i), "/o", json!(i), Durability::Fast)
                .expect("write");
        }
        let ours = t0.elapsed();
        let t0 = Instant::now();
        if mark <= OLD_LAYOUT_MAX {
            for i in created..mark {
                old.open_tree(format!("doc/{}", doc(i)))
                    .and_then(|t| t.insert(0u64.to_be_bytes(), chunk.as_slice()))
                    .expect("old layout write");
            }
        }
        let theirs = t0.elapsed();
        created = mark;
        store.evict_idle(Duration::ZERO);
        let t0 = Instant::now();
        let listed = store.documents().expect("list").len();
        let list = t0.elapsed();
        let t0 = Instant::now();
        for i in (0..mark).step_by(mark / 100) {
            store.get(&doc(i), "/o").expect("read");
        }
        let open = t0.elapsed();
        store.evict_idle(Duration::ZERO);
        let reference = if mark <= OLD_LAYOUT_MAX {
            format!(
                "one tree per document, bare sled: {:.0} us, {:.1}x ours",
                per(theirs, 1_000),
                theirs.as_secs_f64() / ours.as_secs_f64()
            )
        } else {
            "one tree per document: not run, its cost per tree grows with the trees".to_string()
        };
        println!(
            "  {mark:>7} documents: create {:.0} us each ({reference}), \
             open and read {:.0} us each, list all {listed} in {:.1} ms ({:.2} us each)",
            per(ours, 1_000),
            per(open, 100),
            list.as_secs_f64() * 1e3,
            per(list, listed)
        );
    }
}
