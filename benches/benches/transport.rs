//! Transport benchmarks: two outpost nodes syncing over QUIC on 127.0.0.1, each figure next
//! to the same sync done in memory in the same run.
//!
//! - `live_latency`: node A writes one order (`Durability::Fast`); the time until node B's
//!   store notifies it (a subscription to the document). References: the same change
//!   through two sans-IO `Engine`s moved by an in-memory driver loop (stores, no network),
//!   and a raw Automerge sync between two in-memory documents. Besides criterion's mean,
//!   p50 / p99 over 1,000 samples of each (interleaved, so that load from elsewhere hits
//!   all three alike) are printed.
//! - `catch_up`: B starts empty and catches up with 10,000 orders (ten partitions of
//!   1,000, each order its own change) that A holds; the time from B's start until its
//!   heads equal A's. References: the same through two `Engine`s in memory, and raw
//!   Automerge sync of the same ten documents. A is started once and serves every
//!   iteration; each iteration's B is a new device (fresh directory and certificate).
//!
//! A summary with the ratio of each figure to its reference is printed at the end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::Automerge;
use criterion::{Criterion, SamplingMode};
use outpost_benches::{automerge_put_json, order, order_location};
use outpost_core::{
    ChangeHash, DocumentId, Durability, Engine, EngineConfig, PeerId, PeerInfo, Policy, Store,
    StoreOptions, Subscription, SubscriptionFilter, Timestamp,
};
use outpost_transport::{FleetCa, Node, NodeConfig, NodeEvent};
use tokio::runtime::{Handle, Runtime};

/// The site of every device of the benchmark.
const SITE: &str = "lyon";
/// The bound on every await.
const STEP: Duration = Duration::from_secs(30);
/// Samples of the percentile runs of `live_latency`, after `LATENCY_WARMUP` unrecorded ones.
const LATENCY_SAMPLES: usize = 1000;
const LATENCY_WARMUP: usize = 50;
/// Orders that B catches up with in `catch_up`.
const CATCH_UP_ORDERS: u64 = 10_000;

// ---------------------------------------------------------------------------------------
// Shared pieces

fn info(peer: &str) -> PeerInfo {
    PeerInfo::parse(SITE, peer, "pos").expect("benchmark peer names are valid")
}

fn doc_id(s: &str) -> DocumentId {
    s.parse().expect("benchmark document ids are valid")
}

fn store_options(me: &PeerInfo) -> StoreOptions {
    StoreOptions {
        identity: Some(me.clone()),
        policy: Policy::default(),
        ..StoreOptions::default()
    }
}

fn hex(heads: &[ChangeHash]) -> Vec<String> {
    let mut h: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    h.sort();
    h
}

fn sorted(mut heads: Vec<String>) -> Vec<String> {
    heads.sort();
    heads
}

/// A node on 127.0.0.1 with an ephemeral port, as the transport tests build them.
fn node_config(
    dir: &Path,
    ca: &FleetCa,
    peer: &str,
    static_peers: Vec<std::net::SocketAddr>,
) -> NodeConfig {
    let cert = ca.issue(&info(peer)).expect("issue a device certificate");
    let mut config = NodeConfig::new(dir, cert);
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.static_peers = static_peers;
    config
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

async fn start(config: NodeConfig) -> Node {
    within("node start", Node::start(config))
        .await
        .expect("a node starts on loopback")
}

/// Waits for the change event of `doc` whose heads are `want`.
async fn wait_heads(sub: &mut Subscription, want: &[String]) {
    within("the change reaches the other side", async {
        loop {
            match sub.recv().await {
                Some(event) => {
                    if sorted(event.heads) == want {
                        return;
                    }
                }
                None => panic!("the store of the receiving node is gone"),
            }
        }
    })
    .await
}

/// Moves messages between two engines until both are quiet: the driver loop of
/// `core/tests/engine_basic.rs`. `after_b` runs after every message `b` handles.
fn drive(a: &mut Engine, b: &mut Engine, now: Timestamp, mut after_b: impl FnMut()) {
    let (a_id, b_id) = (a.local().peer.clone(), b.local().peer.clone());
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            if t.to == b_id {
                b.handle_message(&a_id, &t.bytes, now)
                    .expect("in-memory engines exchange valid messages");
                after_b();
                moved = true;
            }
        }
        while let Some(t) = b.poll_transmit() {
            if t.to == a_id {
                a.handle_message(&b_id, &t.bytes, now)
                    .expect("in-memory engines exchange valid messages");
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// Raw Automerge sync between two documents until both are quiet, every message encoded
/// and decoded as on a wire. `after_b` runs after every message `b` receives.
fn raw_sync(
    a: &mut Automerge,
    sa: &mut sync::State,
    b: &mut Automerge,
    sb: &mut sync::State,
    mut after_b: impl FnMut(&Automerge),
) {
    let wire =
        |m: sync::Message| sync::Message::decode(&m.encode()).expect("a sync message decodes");
    loop {
        let mut moved = false;
        if let Some(m) = a.generate_sync_message(sa) {
            b.receive_sync_message(sb, wire(m))
                .expect("raw documents exchange valid messages");
            after_b(b);
            moved = true;
        }
        if let Some(m) = b.generate_sync_message(sb) {
            a.receive_sync_message(sa, wire(m))
                .expect("raw documents exchange valid messages");
            moved = true;
        }
        if !moved {
            return;
        }
    }
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

/// Durations recorded inside `iter_custom`, per figure, for the summary.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>>);

impl Recorded {
    fn add(&self, name: &'static str, d: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default()
            .push(d);
    }

    fn get(&self, name: &str) -> Vec<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn stats(samples: &[Duration]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort();
    let at = |q: f64| s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1];
    Some(Stats {
        mean: s.iter().sum::<Duration>() / s.len() as u32,
        p50: at(0.50),
        p99: at(0.99),
        max: s[s.len() - 1],
        n: s.len(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------
// Live latency

/// One way of getting a change written on A visible on B.
trait Live {
    /// Writes `order(n)` at `path` of `doc` on A; returns the time until B has it.
    fn once(&mut self, doc: &DocumentId, path: &str, n: u64) -> Duration;
}

/// Two nodes over QUIC on loopback.
struct QuicLive {
    rt: Handle,
    a: Node,
    b: Node,
    subs: HashMap<DocumentId, Subscription>,
}

impl QuicLive {
    fn start(rt: &Runtime, ca: &FleetCa, dir: &Path) -> QuicLive {
        let (a, b) = rt.block_on(async {
            let b = start(node_config(&dir.join("live-b"), ca, "pos-2", vec![])).await;
            let a = start(node_config(
                &dir.join("live-a"),
                ca,
                "pos-1",
                vec![b.local_addr()],
            ))
            .await;
            within("A connected", a.wait_connected(&info("pos-2").peer)).await;
            within("B connected", b.wait_connected(&info("pos-1").peer)).await;
            (a, b)
        });
        QuicLive {
            rt: rt.handle().clone(),
            a,
            b,
            subs: HashMap::new(),
        }
    }

    fn shutdown(self) {
        self.rt.block_on(async {
            within("shutdown", self.a.shutdown())
                .await
                .expect("A stops");
            within("shutdown", self.b.shutdown())
                .await
                .expect("B stops");
        });
    }
}

impl Live for QuicLive {
    fn once(&mut self, doc: &DocumentId, path: &str, n: u64) -> Duration {
        let b = &self.b;
        let sub = self
            .subs
            .entry(doc.clone())
            .or_insert_with(|| b.store().subscribe(SubscriptionFilter::doc(doc.clone())));
        let started = Instant::now();
        let store = self.a.store();
        store
            .put(doc, path, order(n), Durability::Fast)
            .expect("A writes an order");
        let want = hex(&store.heads(doc).expect("A's heads"));
        self.rt.block_on(wait_heads(sub, &want));
        started.elapsed()
    }
}

/// Two engines over an in-memory driver loop.
struct EngineLive {
    _dir: tempfile::TempDir,
    a: Engine,
    b: Engine,
    subs: HashMap<DocumentId, Subscription>,
}

impl EngineLive {
    fn start() -> EngineLive {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let open = |peer: &str| {
            let me = info(peer);
            let store = Store::open_with(dir.path().join(peer), store_options(&me))
                .expect("open an engine's store");
            Engine::new(store, EngineConfig::new(me, Policy::default()))
        };
        let (mut a, mut b) = (open("pos-1"), open("pos-2"));
        let now = Timestamp::now();
        a.handle_connect(b.local().clone(), now);
        b.handle_connect(a.local().clone(), now);
        drive(&mut a, &mut b, now, || {});
        EngineLive {
            _dir: dir,
            a,
            b,
            subs: HashMap::new(),
        }
    }
}

impl Live for EngineLive {
    fn once(&mut self, doc: &DocumentId, path: &str, n: u64) -> Duration {
        let b_store = self.b.store().clone();
        let sub = self
            .subs
            .entry(doc.clone())
            .or_insert_with(|| b_store.subscribe(SubscriptionFilter::doc(doc.clone())));
        let started = Instant::now();
        self.a
            .store()
            .put(doc, path, order(n), Durability::Fast)
            .expect("A writes an order");
        let now = Timestamp::now();
        self.a.handle_local_change(doc, now);
        let want = hex(&self.a.store().heads(doc).expect("A's heads"));
        let mut seen = None;
        drive(&mut self.a, &mut self.b, now, || {
            while let Some(event) = sub.try_recv() {
                if seen.is_none() && sorted(event.heads) == want {
                    seen = Some(started.elapsed());
                }
            }
        });
        seen.expect("the change reaches the second engine")
    }
}

/// Raw Automerge documents synced in memory.
#[derive(Default)]
struct RawLive {
    docs: HashMap<DocumentId, (Automerge, sync::State, Automerge, sync::State)>,
}

impl RawLive {
    fn start() -> RawLive {
        RawLive::default()
    }
}

impl Live for RawLive {
    fn once(&mut self, doc: &DocumentId, path: &str, n: u64) -> Duration {
        let started = Instant::now();
        let (a, sa, b, sb) = self.docs.entry(doc.clone()).or_default();
        let key = path.trim_start_matches('/');
        automerge_put_json(a, key, &order(n));
        let want = a.get_heads();
        let mut seen = None;
        raw_sync(a, sa, b, sb, |b| {
            if seen.is_none() && b.get_heads() == want {
                seen = Some(started.elapsed());
            }
        });
        seen.expect("the change reaches the second document")
    }
}

/// p50 / p99 of each way, from `LATENCY_SAMPLES` interleaved samples on a fresh document.
fn latency_percentiles(ways: &mut [(&'static str, &mut dyn Live)]) -> Vec<(&'static str, Stats)> {
    let doc = doc_id("orders/latency");
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    for i in 0..LATENCY_WARMUP + LATENCY_SAMPLES {
        for (k, (_, way)) in ways.iter_mut().enumerate() {
            let d = way.once(&doc, &format!("/o{i}"), i as u64);
            if i >= LATENCY_WARMUP {
                samples[k].push(d);
            }
        }
    }
    ways.iter()
        .zip(samples)
        .filter_map(|((name, _), s)| stats(&s).map(|st| (*name, st)))
        .collect()
}

fn live_latency(c: &mut Criterion, rt: &Runtime, ca: &FleetCa, dir: &Path, recorded: &Recorded) {
    let mut quic = QuicLive::start(rt, ca, dir);
    let mut engine = EngineLive::start();
    let mut raw = RawLive::start();

    let percentiles = latency_percentiles(&mut [
        ("quic", &mut quic),
        ("engine_in_memory", &mut engine),
        ("automerge_sync", &mut raw),
    ]);
    println!("\nlive_latency over {LATENCY_SAMPLES} interleaved samples (after {LATENCY_WARMUP} unrecorded):");
    for (name, s) in &percentiles {
        println!(
            "  {name:<18} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  mean {:>7.3} ms",
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.mean)
        );
    }
    *PERCENTILES.lock().unwrap_or_else(|p| p.into_inner()) = percentiles
        .into_iter()
        .map(|(name, s)| (name, (s.p50, s.p99, s.max, s.n)))
        .collect();

    let mut group = c.benchmark_group("live_latency");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let ways: [(&'static str, &mut dyn Live); 3] = [
        ("quic", &mut quic),
        ("engine_in_memory", &mut engine),
        ("automerge_sync", &mut raw),
    ];
    for (name, way) in ways {
        // Orders go to day-like partitions of 1,000 (`order_location`), so documents stay
        // small however many iterations criterion runs.
        let mut n = 0u64;
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (doc, path) = order_location(n);
                    let d = way.once(&doc, &path, n);
                    recorded.add(name, d);
                    total += d;
                    n += 1;
                }
                total
            })
        });
    }
    group.finish();
    quic.shutdown();
}

/// (name, (p50, p99, max, samples)) of the percentile run, for the summary.
type PercentileRow = (&'static str, (Duration, Duration, Duration, usize));
static PERCENTILES: Mutex<Vec<PercentileRow>> = Mutex::new(Vec::new());

// ---------------------------------------------------------------------------------------
// Catch-up

/// A store of `CATCH_UP_ORDERS` orders, each its own change, written once by pos-1.
struct Source {
    dir: PathBuf,
    /// A's heads per document, sorted hex.
    heads: BTreeMap<DocumentId, Vec<String>>,
    /// The same documents as raw Automerge.
    raw: Vec<Automerge>,
}

fn build_source(root: &Path) -> Source {
    let dir = root.join("source");
    let started = Instant::now();
    let store =
        Store::open_with(&dir, store_options(&info("pos-1"))).expect("open the source store");
    for n in 0..CATCH_UP_ORDERS {
        let (doc, path) = order_location(n);
        store
            .put(&doc, &path, order(n), Durability::Fast)
            .expect("write an order");
    }
    store.flush().expect("flush the source store");
    let mut heads = BTreeMap::new();
    let mut raw = Vec::new();
    for doc in store.documents().expect("list documents") {
        heads.insert(doc.clone(), hex(&store.heads(&doc).expect("heads")));
        raw.push(Automerge::load(&store.export(&doc).expect("export")).expect("load a document"));
    }
    drop(store);
    println!(
        "\ncatch_up: source of {CATCH_UP_ORDERS} orders in {} documents written in {:.1} s",
        heads.len(),
        started.elapsed().as_secs_f64()
    );
    Source { dir, heads, raw }
}

/// When each phase of a QUIC catch-up ended, from B's start.
#[derive(Default)]
struct Phases {
    started: Vec<Duration>,
    connected: Vec<Duration>,
    first_change: Vec<Duration>,
    done: Vec<Duration>,
}

static PHASES: Mutex<Phases> = Mutex::new(Phases {
    started: Vec::new(),
    connected: Vec::new(),
    first_change: Vec::new(),
    done: Vec::new(),
});

/// B starts empty with a new identity, dials A and catches up; returns the time from B's
/// start until its heads equal A's.
async fn quic_catch_up(a: &Node, ca: &FleetCa, source: &Source, root: &Path, i: u64) -> Duration {
    let peer = format!("pos-b{i}");
    let dir = root.join(format!("quic-{peer}"));
    let config = node_config(&dir, ca, &peer, vec![]);
    let mut missing = source.heads.clone();

    let t0 = Instant::now();
    let b = start(config).await;
    let started = t0.elapsed();
    let mut changes = b.store().subscribe(SubscriptionFilter::all());
    let mut events = b.events();
    let connected = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PeerConnected(_)) => return Some(t0.elapsed()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    b.add_static_peer(a.local_addr());
    let mut first_change = None;
    within("B catches up", async {
        while !missing.is_empty() {
            let event = changes.recv().await.expect("B's store is open");
            first_change.get_or_insert_with(|| t0.elapsed());
            if missing.get(&event.doc) == Some(&sorted(event.heads)) {
                missing.remove(&event.doc);
            }
        }
    })
    .await;
    let done = t0.elapsed();

    let connected = within("connected event", connected).await.ok().flatten();
    within("B stops", b.shutdown()).await.expect("B stops");
    let b_id: PeerId = peer.parse().expect("valid peer id");
    within("A notices B left", a.wait_disconnected(&b_id)).await;
    let _ = std::fs::remove_dir_all(&dir);

    let mut phases = PHASES.lock().unwrap_or_else(|p| p.into_inner());
    phases.started.push(started);
    if let Some(c) = connected {
        phases.connected.push(c);
    }
    phases.first_change.push(first_change.unwrap_or(done));
    phases.done.push(done);
    done
}

/// The same catch-up through two engines in memory.
fn engine_catch_up(a: &mut Engine, source: &Source, root: &Path, i: u64) -> Duration {
    let me = info(&format!("pos-e{i}"));
    let dir = root.join(format!("engine-{}", me.peer));

    let t0 = Instant::now();
    let store = Store::open_with(&dir, store_options(&me)).expect("open B's store");
    let mut b = Engine::new(store, EngineConfig::new(me.clone(), Policy::default()));
    let now = Timestamp::now();
    a.handle_connect(me.clone(), now);
    b.handle_connect(a.local().clone(), now);
    drive(a, &mut b, now, || {});
    for (doc, heads) in &source.heads {
        assert_eq!(
            &hex(&b.store().heads(doc).expect("B's heads")),
            heads,
            "B caught up with {doc}"
        );
    }
    let done = t0.elapsed();

    a.handle_disconnect(&me.peer, now);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
    done
}

/// The same catch-up by raw Automerge sync of each document into an empty one.
fn raw_catch_up(sources: &mut [Automerge]) -> Duration {
    let t0 = Instant::now();
    for a in sources.iter_mut() {
        let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
        let mut b = Automerge::new();
        raw_sync(a, &mut sa, &mut b, &mut sb, |_| {});
        assert_eq!(b.get_heads(), a.get_heads(), "raw catch-up converged");
    }
    t0.elapsed()
}

fn catch_up(c: &mut Criterion, rt: &Runtime, ca: &FleetCa, root: &Path, recorded: &Recorded) {
    let mut source = build_source(root);

    let mut group = c.benchmark_group("catch_up");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // QUIC: A serves a copy of the source.
    let a_dir = root.join("quic-a");
    copy_dir(&source.dir, &a_dir);
    let a = rt.block_on(start(node_config(&a_dir, ca, "pos-1", vec![])));
    let mut i = 0u64;
    group.bench_function("quic", |bencher| {
        bencher.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = rt.block_on(quic_catch_up(&a, ca, &source, root, i));
                recorded.add("catch_up_quic", d);
                total += d;
                i += 1;
            }
            total
        })
    });
    rt.block_on(async { within("shutdown", a.shutdown()).await.expect("A stops") });

    // In-memory engines: A is an engine over another copy of the source.
    let e_dir = root.join("engine-a");
    copy_dir(&source.dir, &e_dir);
    let me = info("pos-1");
    let store = Store::open_with(&e_dir, store_options(&me)).expect("open A's store");
    let mut a = Engine::new(store, EngineConfig::new(me, Policy::default()));
    group.bench_function("engine_in_memory", |bencher| {
        bencher.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = engine_catch_up(&mut a, &source, root, i);
                recorded.add("catch_up_engine", d);
                total += d;
                i += 1;
            }
            total
        })
    });
    drop(a);

    group.bench_function("automerge_sync", |bencher| {
        bencher.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = raw_catch_up(&mut source.raw);
                recorded.add("catch_up_automerge", d);
                total += d;
            }
            total
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Summary

fn summary(recorded: &Recorded) {
    println!("\nsummary (ratios to references measured in the same run):");
    let rows = PERCENTILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let find = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    if let (Some(q), Some(e), Some(r)) = (
        find("quic"),
        find("engine_in_memory"),
        find("automerge_sync"),
    ) {
        let (qp50, qp99, qmax, n) = q;
        println!(
            "  live_latency quic p50 {:.3} ms (goal < 1 ms: {}), {:.1}x engine_in_memory ({:.3} ms), {:.1}x automerge_sync ({:.3} ms)",
            ms(qp50),
            if qp50 < Duration::from_millis(1) { "met" } else { "MISSED" },
            qp50.as_secs_f64() / e.0.as_secs_f64(),
            ms(e.0),
            qp50.as_secs_f64() / r.0.as_secs_f64(),
            ms(r.0),
        );
        println!(
            "  live_latency quic p99 {:.3} ms (goal < 5 ms: {}), {:.1}x engine_in_memory ({:.3} ms), {:.1}x automerge_sync ({:.3} ms); max {:.3} ms over {n}",
            ms(qp99),
            if qp99 < Duration::from_millis(5) { "met" } else { "MISSED" },
            qp99.as_secs_f64() / e.1.as_secs_f64(),
            ms(e.1),
            qp99.as_secs_f64() / r.1.as_secs_f64(),
            ms(r.1),
            ms(qmax),
        );
    }
    if let (Some(q), Some(e), Some(r)) = (
        stats(&recorded.get("quic")),
        stats(&recorded.get("engine_in_memory")),
        stats(&recorded.get("automerge_sync")),
    ) {
        println!(
            "  live_latency quic mean {:.3} ms over {} criterion iterations, {:.1}x engine_in_memory ({:.3} ms), {:.1}x automerge_sync ({:.3} ms)",
            ms(q.mean),
            q.n,
            q.mean.as_secs_f64() / e.mean.as_secs_f64(),
            ms(e.mean),
            q.mean.as_secs_f64() / r.mean.as_secs_f64(),
            ms(r.mean),
        );
    }
    if let (Some(q), Some(e), Some(r)) = (
        stats(&recorded.get("catch_up_quic")),
        stats(&recorded.get("catch_up_engine")),
        stats(&recorded.get("catch_up_automerge")),
    ) {
        let ratio = q.p50.as_secs_f64() / e.p50.as_secs_f64();
        println!(
            "  catch_up of {CATCH_UP_ORDERS} orders quic median {:.1} ms over {}, {:.2}x engine_in_memory ({:.1} ms; goal <= 1.5x: {}), {:.2}x automerge_sync ({:.1} ms)",
            ms(q.p50),
            q.n,
            ratio,
            ms(e.p50),
            if ratio <= 1.5 { "met" } else { "MISSED" },
            q.p50.as_secs_f64() / r.p50.as_secs_f64(),
            ms(r.p50),
        );
        let phases = PHASES.lock().unwrap_or_else(|p| p.into_inner());
        let median = |v: &[Duration]| stats(v).map_or(f64::NAN, |s| ms(s.p50));
        println!(
            "  catch_up quic phases (median from B's start): node started {:.1} ms, connected {:.1} ms, first change applied {:.1} ms, caught up {:.1} ms",
            median(&phases.started),
            median(&phases.connected),
            median(&phases.first_change),
            median(&phases.done),
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ca = FleetCa::generate("bench").expect("a fleet CA");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let recorded = Recorded::default();

    live_latency(&mut c, &rt, &ca, dir.path(), &recorded);
    catch_up(&mut c, &rt, &ca, dir.path(), &recorded);
    c.final_summary();
    summary(&recorded);
}
