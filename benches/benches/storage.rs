//! Storage benchmarks: outpost writes next to raw sled doing the same work.
//!
//! - `durable_write`: `Store::put` of a small order with `Durability::Durable`, against sled
//!   `insert` of the same order serialized to JSON followed by `flush`.
//! - `fast_write`: the same with `Durability::Fast`, against sled `insert` without flush, and
//!   against raw Automerge doing the document part alone (transaction and encoded change,
//!   no storage), which shows how much of a write is Automerge itself.
//!
//! - `fast_write/outpost_put_signed`: the fast write with signed changes (issue 12): the
//!   store signs each commit with an ECDSA P-256 device key and stores the signature.
//!
//! Throughput is in writes (elements) per second. After the run, the ratios of each figure to
//! its reference are printed from criterion's estimates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput};
use outpost_benches::{automerge_put_order, order, order_bytes, order_location, raw_sled};
use outpost_core::{Durability, Store, StoreOptions};

/// (group, outpost figure, reference figure)
const PAIRS: [(&str, &str, &str); 4] = [
    ("durable_write", "outpost_put", "sled_insert_flush"),
    ("fast_write", "outpost_put", "sled_insert"),
    ("fast_write", "outpost_put", "automerge_put"),
    ("fast_write", "outpost_put_signed", "outpost_put"),
];

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

fn write_pair(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    durability: Durability,
    reference: &str,
) {
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = StoreOptions::default();

    let store = Store::open_with(dir.path().join("outpost"), options.clone()).expect("open store");
    let mut n = 0u64;
    group.bench_function("outpost_put", |b| {
        b.iter(|| {
            let (doc, path) = order_location(n);
            store
                .put(&doc, &path, order(n), durability)
                .expect("put an order");
            n += 1;
        })
    });
    drop(store);

    let db = raw_sled(&dir.path().join("sled"), &options);
    let tree = db.open_tree("orders").expect("open tree");
    let mut n = 0u64;
    group.bench_function(reference, |b| {
        b.iter(|| {
            tree.insert(n.to_be_bytes(), order_bytes(n))
                .expect("sled insert");
            if durability == Durability::Durable {
                db.flush().expect("sled flush");
            }
            n += 1;
        })
    });
}

fn durable_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_write");
    write_pair(&mut group, Durability::Durable, "sled_insert_flush");
    group.finish();
}

fn fast_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("fast_write");
    write_pair(&mut group, Durability::Fast, "sled_insert");
    let mut docs = Vec::new();
    let mut n = 0u64;
    group.bench_function("automerge_put", |b| {
        b.iter(|| {
            std::hint::black_box(automerge_put_order(&mut docs, n));
            n += 1;
        })
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = outpost_transport::FleetCa::generate("bench").expect("a fleet CA");
    let me = outpost_core::PeerInfo::parse("s1", "pos-1", "pos").expect("a valid identity");
    let cert = ca.issue(&me).expect("a device certificate");
    let signer = outpost_transport::DeviceSigner::new(&cert).expect("a device signer");
    let options = StoreOptions {
        identity: Some(me),
        signer: Some(std::sync::Arc::new(signer)),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).expect("open store");
    let mut n = 0u64;
    group.bench_function("outpost_put_signed", |b| {
        b.iter(|| {
            let (doc, path) = order_location(n);
            store
                .put(&doc, &path, order(n), Durability::Fast)
                .expect("put an order");
            n += 1;
        })
    });
    group.finish();
}

/// Runs every benchmark of this file (what `criterion_group!` would generate).
fn storage() {
    let mut c = config().configure_from_args();
    durable_write(&mut c);
    fast_write(&mut c);
}

/// Where criterion wrote its estimates: `$CRITERION_HOME`, or `criterion/` in the target
/// directory that holds this benchmark binary (`target/release/deps/storage-*`).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Time of one iteration in nanoseconds from criterion's `estimates.json`: the slope
/// estimate that criterion reports as "time", or the mean when there is no slope.
fn time_ns(home: &Path, group: &str, name: &str) -> Option<f64> {
    let path = home
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let estimate = |e: &str| json.get(e)?.get("point_estimate")?.as_f64();
    estimate("slope").or_else(|| estimate("mean"))
}

fn print_ratios() {
    let Some(home) = criterion_home() else {
        return;
    };
    println!("\nratios to the reference measured in the same run (time per write):");
    for (group, ours, reference) in PAIRS {
        if let (Some(a), Some(b)) = (
            time_ns(&home, group, ours),
            time_ns(&home, group, reference),
        ) {
            println!(
                "  {group}: {ours} {:.1} us ({:.0}/s) vs {reference} {:.1} us ({:.0}/s): {:.2}x",
                a / 1e3,
                1e9 / a,
                b / 1e3,
                1e9 / b,
                a / b
            );
        }
    }
}

fn main() {
    storage();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs this binary in test mode, where nothing was measured.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        print_ratios();
    }
}
