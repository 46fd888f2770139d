//! Costs that grow with the document (issue 13): writes into one document that already holds
//! 1,000, 10,000 or 50,000 orders, through a [`Node`] and through a bare [`Store`], and live
//! propagation into a 10,000-order document over QUIC.
//!
//! Every order is a map of six fields at `/orders/o<n>` of one document (`orders/day`), one
//! change per order: a busy day of a site that does not partition by hour.
//!
//! - `write_growth/<size>`: `Durability::Fast` writes into a document of `size` orders,
//!   three ways: `node` (a [`Node`] with no peers, which subscribes to its own store for
//!   changed paths), `store_paths` (a bare store with one subscriber that wants paths, which
//!   is what a node adds to a write) and `store` (a bare store, the reference).
//! - `durable_growth/10000`: `Durability::Durable` writes into the 10,000-order document,
//!   through a node and a bare store, against sled `insert` + `flush` of the same bytes.
//! - `durable_concurrent` (summary only): 8 threads writing durable orders at once against
//!   one thread, into one document and into a document each (durable writers share flushes).
//! - `live_spaced`: A writes 200 orders 10 ms apart (100 orders/s) into a 10,000-order
//!   document that B already holds; per order, the time until B's store has it (p50, p99).
//! - `live_burst`: A writes 1,000 orders back to back into that document; the time until B
//!   has them all, against a bare store writing the same 1,000 orders into a copy of the
//!   same document.
//!
//! Criterion measures the writes; the figures in the summary printed at the end come from
//! runs of our own that interleave the ways in blocks, so that load from elsewhere on the
//! machine hits them alike. `GROWTH_SIZES=1000,10000` limits the sizes (50,000 takes a minute
//! to prepare).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use outpost_benches::{order, order_bytes, raw_sled};
use outpost_core::{
    DocumentId, Durability, PeerInfo, Policy, Store, StoreOptions, Subscription, SubscriptionFilter,
};
use outpost_transport::{FleetCa, Node, NodeConfig};
use support::{info, node_config};
use tokio::runtime::Runtime;

/// The bound on every await.
const STEP: Duration = Duration::from_secs(120);
/// Writes per way and size in the interleaved runs, in blocks of `BLOCK`.
const WRITES: usize = 400;
const BLOCK: usize = 50;
/// Durable writes per way in the interleaved run.
const DURABLE_WRITES: usize = 200;
/// The live figures.
const LIVE_BASE: u64 = 10_000;
const SPACED: usize = 200;
const SPACING: Duration = Duration::from_millis(10);
const BURST: usize = 1_000;

fn store_options(me: &PeerInfo) -> StoreOptions {
    StoreOptions {
        identity: Some(me.clone()),
        policy: Policy::default(),
        ..StoreOptions::default()
    }
}

fn day() -> DocumentId {
    "orders/day".parse().expect("a valid document id")
}

fn path(n: u64) -> String {
    format!("/orders/o{n}")
}

fn sizes() -> Vec<u64> {
    std::env::var("GROWTH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 10_000, 50_000])
}

/// A store directory holding `orders` orders written by `me`, one change each, flushed.
fn prepare(dir: &Path, me: &PeerInfo, orders: u64) {
    let store = Store::open_with(dir, store_options(me)).expect("open a store to prepare");
    let doc = day();
    for n in 0..orders {
        store
            .put(&doc, &path(n), order(n), Durability::Fast)
            .expect("write an order");
    }
    store.flush().expect("flush the prepared store");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

fn start(rt: &Runtime, config: NodeConfig) -> Node {
    rt.block_on(within("node start", Node::start(config)))
        .expect("a node starts on loopback")
}

fn stop(rt: &Runtime, node: Node) {
    rt.block_on(within("node shutdown", node.shutdown()))
        .expect("a node stops");
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One way of writing: a store, and what must stay alive next to it.
struct Way {
    name: &'static str,
    store: Store,
    next: u64,
    _node: Option<Node>,
    _sub: Option<Subscription>,
}

impl Way {
    fn write(&mut self, durability: Durability) {
        let n = self.next;
        self.store
            .put(&day(), &path(n), order(n), durability)
            .expect("write an order");
        self.next += 1;
    }
}

/// The three ways of `write_growth`, each on its own copy of `prepared`.
fn ways(rt: &Runtime, ca: &FleetCa, prepared: &Path, root: &Path, size: u64) -> Vec<Way> {
    let me = info("pos-1");
    let dir = |name: &str| {
        let d = root.join(format!("{name}-{size}"));
        copy_dir(prepared, &d);
        d
    };
    let node = start(rt, node_config(&dir("node"), ca, "pos-1", vec![]));
    let paths_store =
        Store::open_with(dir("store_paths"), store_options(&me)).expect("open a store");
    let sub = paths_store.subscribe(SubscriptionFilter::all());
    vec![
        Way {
            name: "node",
            store: node.store().clone(),
            next: size,
            _node: Some(node),
            _sub: None,
        },
        Way {
            name: "store_paths",
            store: paths_store,
            next: size,
            _node: None,
            _sub: Some(sub),
        },
        Way {
            name: "store",
            store: Store::open_with(dir("store"), store_options(&me)).expect("open a store"),
            next: size,
            _node: None,
            _sub: None,
        },
    ]
}

fn shutdown(rt: &Runtime, ways: Vec<Way>) {
    for mut way in ways {
        if let Some(node) = way._node.take() {
            drop(way.store);
            stop(rt, node);
        }
    }
}

/// Interleaved blocks of writes; the time per write of each way.
fn interleaved(ways: &mut [Way], writes: usize, durability: Durability) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::new(); ways.len()];
    for _ in 0..writes / BLOCK {
        for (k, way) in ways.iter_mut().enumerate() {
            for _ in 0..BLOCK {
                let t = Instant::now();
                way.write(durability);
                samples[k].push(t.elapsed());
            }
        }
    }
    samples
}

fn write_growth(
    c: &mut Criterion,
    rt: &Runtime,
    ca: &FleetCa,
    root: &Path,
    prepared: &HashMap<u64, PathBuf>,
    summary: &mut Vec<String>,
) {
    for size in sizes() {
        let mut ways = ways(rt, ca, &prepared[&size], root, size);
        let mut group = c.benchmark_group("write_growth");
        group.throughput(Throughput::Elements(1));
        for way in ways.iter_mut() {
            group.bench_function(BenchmarkId::new(way.name, size), |b| {
                b.iter(|| way.write(Durability::Fast))
            });
        }
        group.finish();
        let samples = interleaved(&mut ways, WRITES, Durability::Fast);
        let mean = |s: &Vec<Duration>| s.iter().sum::<Duration>() / s.len().max(1) as u32;
        let reference = mean(&samples[2]);
        let mut line = format!("write_growth {size:>6} orders:");
        for (way, s) in ways.iter().zip(&samples) {
            let m = mean(s);
            line += &format!(
                "  {} {:.0}/s ({:.2}x)",
                way.name,
                1.0 / m.as_secs_f64(),
                m.as_secs_f64() / reference.as_secs_f64()
            );
        }
        summary.push(line);
        shutdown(rt, ways);
    }
}

fn durable_growth(
    c: &mut Criterion,
    rt: &Runtime,
    ca: &FleetCa,
    root: &Path,
    prepared: &Path,
    summary: &mut Vec<String>,
) {
    let mut ways = ways(rt, ca, prepared, &root.join("durable"), LIVE_BASE);
    ways.retain(|w| w.name != "store_paths");
    let db = raw_sled(&root.join("sled"), &StoreOptions::default());
    let tree = db.open_tree("orders").expect("open a tree");
    let mut n = 0u64;
    let mut floor = || {
        tree.insert(n.to_be_bytes(), order_bytes(n))
            .expect("sled insert");
        db.flush().expect("sled flush");
        n += 1;
    };
    let mut group = c.benchmark_group("durable_growth");
    group.throughput(Throughput::Elements(1));
    for way in ways.iter_mut() {
        group.bench_function(BenchmarkId::new(way.name, LIVE_BASE), |b| {
            b.iter(|| way.write(Durability::Durable))
        });
    }
    group.bench_function("sled_insert_flush", |b| b.iter(&mut floor));
    group.finish();

    let mut samples = vec![Vec::new(); ways.len() + 1];
    for _ in 0..DURABLE_WRITES / BLOCK {
        for (k, way) in ways.iter_mut().enumerate() {
            for _ in 0..BLOCK {
                let t = Instant::now();
                way.write(Durability::Durable);
                samples[k].push(t.elapsed());
            }
        }
        for _ in 0..BLOCK {
            let t = Instant::now();
            floor();
            samples[ways.len()].push(t.elapsed());
        }
    }
    let floor_p50 = quantile(&samples[ways.len()], 0.5);
    let mut line = format!("durable_growth {LIVE_BASE} orders, p50:");
    for (way, s) in ways.iter().zip(&samples) {
        let p50 = quantile(s, 0.5);
        line += &format!(
            "  {} {:.0} us ({:.2}x floor)",
            way.name,
            us(p50),
            p50.as_secs_f64() / floor_p50.as_secs_f64()
        );
    }
    line += &format!("  sled_insert_flush {:.0} us", us(floor_p50));
    summary.push(line);
    shutdown(rt, ways);
}

/// Durable writes per concurrent writer in `durable_concurrent`, and the writers.
const CONCURRENT_WRITES: u64 = 40;
const WRITERS: u64 = 8;

/// Throughput of `writers` threads each writing `CONCURRENT_WRITES` durable orders into `store`,
/// all into `day()` (`one_doc`) or each into its own document.
fn durable_throughput(store: &Store, writers: u64, one_doc: bool, first: u64) -> f64 {
    let t = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let doc: DocumentId = if one_doc {
                    day()
                } else {
                    format!("orders/w{w}").parse().expect("a valid document id")
                };
                for i in 0..CONCURRENT_WRITES {
                    let n = first + w * CONCURRENT_WRITES + i;
                    store
                        .put(&doc, &path(n), order(n), Durability::Durable)
                        .expect("write an order");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a writer thread");
    }
    (writers * CONCURRENT_WRITES) as f64 / t.elapsed().as_secs_f64()
}

/// Concurrent durable writers, which share flushes, against one writer: into one 10,000-order
/// document, and into one document each.
fn durable_concurrent(root: &Path, prepared: &Path, summary: &mut Vec<String>) {
    let dir = root.join("concurrent");
    copy_dir(prepared, &dir);
    let store = Store::open_with(&dir, store_options(&info("pos-1"))).expect("open a store");
    let mut first = 1_000_000;
    let mut figures = Vec::new();
    // Interleaved, twice.
    for _ in 0..2 {
        for (writers, one_doc) in [(1, true), (WRITERS, true), (1, false), (WRITERS, false)] {
            figures.push((
                (writers, one_doc),
                durable_throughput(&store, writers, one_doc, first),
            ));
            first += writers * CONCURRENT_WRITES;
        }
    }
    let best = |w: u64, one: bool| {
        figures
            .iter()
            .filter(|((fw, fo), _)| *fw == w && *fo == one)
            .map(|(_, x)| *x)
            .fold(0.0, f64::max)
    };
    for (one_doc, what) in [
        (true, "one 10,000-order document"),
        (false, "a document each"),
    ] {
        let (one, many) = (best(1, one_doc), best(WRITERS, one_doc));
        summary.push(format!(
            "durable_concurrent into {what}: 1 writer {one:.0}/s, {WRITERS} writers {many:.0}/s ({:.2}x)",
            many / one
        ));
    }
}

/// Writes `count` orders on `a` from `first`, `spacing` apart (open loop: a late order does not
/// delay the next), and returns per order the time until `b_sub` reported it, and the time
/// from the first write until the last was visible.
fn propagate(
    a: &Store,
    b_sub: &mut Subscription,
    first: u64,
    count: usize,
    spacing: Duration,
) -> (Vec<Duration>, Duration) {
    let doc = day();
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    let writer = {
        let a = a.clone();
        let doc = doc.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            for i in 0..count {
                let due = start + spacing * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let n = first + i as u64;
                let t = Instant::now();
                a.put(&doc, &path(n), order(n), Durability::Fast)
                    .expect("A writes an order");
                let heads = a.heads(&doc).expect("A's heads");
                let head = heads.first().map(|h| h.to_string()).unwrap_or_default();
                if tx.send((head, t)).is_err() {
                    return;
                }
            }
        })
    };
    // Only A writes, so its heads are a chain: B having order i's head has every order
    // before it.
    let mut seen: Vec<(String, Instant)> = Vec::new();
    let mut written: Vec<(String, Instant)> = Vec::new();
    loop {
        written.extend(rx.try_iter());
        if written.len() == count && seen.iter().any(|(h, _)| *h == written[count - 1].0) {
            break;
        }
        let event = b_sub.blocking_recv().expect("B's store is alive");
        let now = Instant::now();
        for h in event.heads {
            seen.push((h, now));
        }
        written.extend(rx.try_iter());
    }
    writer.join().expect("the writer thread");
    let at: HashMap<&str, usize> = written
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (h.as_str(), i))
        .collect();
    let mut visible = vec![None; count];
    let mut upto = 0usize;
    for (h, t) in &seen {
        if let Some(&i) = at.get(h.as_str()) {
            while upto <= i {
                visible[upto] = Some(*t);
                upto += 1;
            }
        }
    }
    let latencies = written
        .iter()
        .zip(&visible)
        .map(|((_, w), v)| v.map_or(Duration::ZERO, |v| v.saturating_duration_since(*w)))
        .collect();
    let all = visible[count - 1]
        .map(|v| v.saturating_duration_since(written[0].1))
        .unwrap_or_default();
    (latencies, all)
}

fn live(rt: &Runtime, ca: &FleetCa, root: &Path, prepared: &Path, summary: &mut Vec<String>) {
    let a_dir = root.join("live-a");
    copy_dir(prepared, &a_dir);
    let b = start(rt, node_config(&root.join("live-b"), ca, "pos-2", vec![]));
    let mut b_sub = b
        .store()
        .subscribe(SubscriptionFilter::doc(day()).without_paths());
    let a = start(rt, node_config(&a_dir, ca, "pos-1", vec![b.local_addr()]));
    let doc = day();
    // B catches up with the day first.
    let want = a.store().heads(&doc).expect("A's heads");
    let t = Instant::now();
    while b.store().heads(&doc).expect("B's heads") != want {
        rt.block_on(within("B catches up", async {
            tokio::time::sleep(Duration::from_millis(2)).await
        }));
    }
    let catch_up = t.elapsed();
    // B has the heads as soon as it applied the day, but the exchange's last messages
    // (B's answer, A's bloom filter over what B may still lack) take a few hundred ms more
    // on this machine; the live figures are about the steady state after it.
    std::thread::sleep(Duration::from_secs(1));
    while b_sub.try_recv().is_some() {}

    let (spaced, _) = propagate(a.store(), &mut b_sub, LIVE_BASE, SPACED, SPACING);
    if std::env::var_os("GROWTH_WORST").is_some() {
        let mut worst: Vec<(usize, Duration)> = spaced.iter().copied().enumerate().collect();
        worst.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        println!(
            "live_spaced, worst orders (index, latency): {:?}",
            &worst[..5]
        );
    }
    let (burst, all) = propagate(
        a.store(),
        &mut b_sub,
        LIVE_BASE + SPACED as u64,
        BURST,
        Duration::ZERO,
    );

    // The reference: a bare store writing the same burst into a copy of the same document.
    let ref_dir = root.join("live-ref");
    copy_dir(prepared, &ref_dir);
    let reference = {
        let store = Store::open_with(&ref_dir, store_options(&info("pos-1"))).expect("open");
        let t = Instant::now();
        for i in 0..BURST as u64 {
            let n = LIVE_BASE + i;
            store
                .put(&doc, &path(n), order(n), Durability::Fast)
                .expect("write an order");
        }
        t.elapsed()
    };
    summary.push(format!(
        "live_spaced   {SPACED} orders at 100/s into {LIVE_BASE}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(quantile(&spaced, 0.5)),
        ms(quantile(&spaced, 0.99)),
        ms(quantile(&spaced, 1.0)),
    ));
    summary.push(format!(
        "live_burst    {BURST} orders back to back into {}: all on B after {:.0} ms (p50 {:.1} ms, p99 {:.1} ms per order); bare store writing them: {:.0} ms ({:.2}x)",
        LIVE_BASE + SPACED as u64,
        ms(all),
        ms(quantile(&burst, 0.5)),
        ms(quantile(&burst, 0.99)),
        ms(reference),
        all.as_secs_f64() / reference.as_secs_f64()
    ));
    summary.push(format!(
        "catch_up      B fetched the {LIVE_BASE}-order day in {:.0} ms (polled every 2 ms)",
        ms(catch_up)
    ));
    drop(b_sub);
    stop(rt, a);
    stop(rt, b);
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args();
    // `cargo test --benches` runs this binary in test mode: nothing to measure.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ca = FleetCa::generate("bench").expect("a fleet CA");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();

    let mut needed = sizes();
    needed.push(LIVE_BASE);
    needed.sort_unstable();
    needed.dedup();
    let mut prepared = HashMap::new();
    for size in needed {
        let d = root.join(format!("prepared-{size}"));
        let t = Instant::now();
        prepare(&d, &info("pos-1"), size);
        println!(
            "prepared {size} orders in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        prepared.insert(size, d);
    }

    let mut summary = Vec::new();
    write_growth(&mut c, &rt, &ca, root, &prepared, &mut summary);
    durable_growth(&mut c, &rt, &ca, root, &prepared[&LIVE_BASE], &mut summary);
    durable_concurrent(root, &prepared[&LIVE_BASE], &mut summary);
    live(&rt, &ca, root, &prepared[&LIVE_BASE], &mut summary);
    c.final_summary();
    println!("\nsummary (interleaved runs, each figure next to its reference):");
    for line in summary {
        println!("  {line}");
    }
}
