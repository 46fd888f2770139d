//! Transport benchmarks: two outpost nodes syncing over QUIC on 127.0.0.1, each figure next
//! to the same sync done in memory in the same run.
//!
//! - `live_latency`: node A writes one order (`Durability::Fast`); the time until node B's
//!   store notifies it (a subscription to the document).
//! - `catch_up`: B starts empty and catches up with 10,000 orders (ten partitions of
//!   1,000, each order its own change) that A holds; the time from B's start until its
//!   heads equal A's. A is started once and serves every iteration; each iteration's B is
//!   a new device (fresh directory and identity).
//!
//! Each runs four ways:
//!
//! - `quic`: two [`Node`]s over QUIC on loopback;
//! - `engine_subscribed`: two sans-IO [`Engine`]s moved by an in-memory driver loop, each
//!   store subscribed to every change as a node's engine loop is ([`NodeLike`]): the same
//!   work as `quic` but for the network, the tasks and the certificates;
//! - `engine_bare`: the same engines without the node's subscriptions, the driver calling
//!   `handle_local_change` itself (the driver loop of `core/tests/engine_basic.rs`). A store
//!   with a subscriber computes the changed paths of every change, which `quic` pays and
//!   this does not;
//! - `automerge_sync`: raw Automerge sync between two in-memory documents.
//!
//! Figures are measured twice: criterion's runs (means), and runs of our own that
//! interleave the four ways, so that load from elsewhere on the machine hits all of them
//! alike, for percentiles and ratios: `LATENCY_SAMPLES` latency samples on documents that
//! stay small (`live_latency_small`) and on one document growing to a busy day's worth of
//! orders (`live_latency`, with p50 per quarter of the run, since the cost of a change
//! grows with its document), and `CATCH_UP_ROUNDS` catch-ups. A summary line per figure
//! with its ratios to the references is printed at the end.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::Automerge;
use criterion::{Criterion, SamplingMode};
use outpost_benches::{automerge_put_json, order, order_location};
use outpost_core::Event;
use outpost_core::{
    ChangeHash, DocumentId, Durability, Engine, EngineConfig, Origin, PeerId, PeerInfo, Policy,
    Store, StoreOptions, Subscription, SubscriptionFilter, Timestamp,
};
use outpost_transport::{FleetCa, Node, NodeConfig};
use support::{info, node_config};
use tokio::runtime::{Handle, Runtime};

/// The bound on every await.
const STEP: Duration = Duration::from_secs(30);
/// Samples of each way in the interleaved latency run, after `LATENCY_WARMUP` unrecorded ones.
const LATENCY_SAMPLES: usize = 1000;
const LATENCY_WARMUP: usize = 50;
/// Orders that B catches up with in `catch_up`.
const CATCH_UP_ORDERS: u64 = 10_000;
/// Catch-ups of each way in the interleaved catch-up run.
const CATCH_UP_ROUNDS: usize = 5;

/// The ways, in the order they run and are reported.
const QUIC: &str = "quic";
const ENGINE_SUBSCRIBED: &str = "engine_subscribed";
const ENGINE_BARE: &str = "engine_bare";
const AUTOMERGE: &str = "automerge_sync";

// ---------------------------------------------------------------------------------------
// Shared pieces

fn store_options(me: &PeerInfo) -> StoreOptions {
    StoreOptions {
        identity: Some(me.clone()),
        policy: Policy::default(),
        ..StoreOptions::default()
    }
}

/// Heads as sorted hex, the form of `ChangeEvent::heads`.
fn hex(heads: &[ChangeHash]) -> Vec<String> {
    sorted(heads.iter().map(|h| h.to_string()).collect())
}

fn sorted(mut heads: Vec<String>) -> Vec<String> {
    heads.sort();
    heads
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

/// Waits for the change event whose heads are `want`.
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

/// An engine, and the store subscription that a [`Node`]'s engine loop keeps next to it
/// (`None` for a bare engine). The node learns of local writes from it (and calls
/// `handle_local_change`), and takes the changed paths of remote changes from it for its
/// `RemoteChange` events.
struct NodeLike {
    engine: Engine,
    changes: Option<Subscription>,
}

impl NodeLike {
    fn open(dir: &Path, me: PeerInfo, subscribed: bool) -> NodeLike {
        let store = Store::open_with(dir, store_options(&me)).expect("open an engine's store");
        NodeLike {
            changes: subscribed.then(|| store.subscribe(SubscriptionFilter::all())),
            engine: Engine::new(store, EngineConfig::new(me, Policy::default())),
        }
    }

    /// After a local write to `doc`: what the node's engine loop does with the store's
    /// notification, or for a bare engine what its driver does.
    fn wrote(&mut self, doc: &DocumentId, now: Timestamp) {
        match &mut self.changes {
            None => self.engine.handle_local_change(doc, now),
            Some(_) => self.on_store_changes(now),
        }
    }

    fn on_store_changes(&mut self, now: Timestamp) {
        let Some(changes) = &mut self.changes else {
            return;
        };
        while let Some(change) = changes.try_recv() {
            if change.origin == Origin::Local {
                self.engine.handle_local_change(&change.doc, now);
            }
        }
    }
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

#[derive(Clone, Copy)]
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
    // Nearest rank.
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

/// Statistics of the runs, per (figure, way), for the summary.
#[derive(Default)]
struct Results {
    /// Durations measured inside criterion's `iter_custom`.
    criterion: BTreeMap<(&'static str, &'static str), Vec<Duration>>,
    /// The interleaved runs.
    interleaved: BTreeMap<(&'static str, &'static str), Stats>,
    /// Interleaved latency p50 by size of the document (orders already in it).
    latency_by_size: Vec<(usize, Vec<(&'static str, Duration)>)>,
    /// QUIC catch-up phases, each from B's start.
    phases: Phases,
}

#[derive(Default)]
struct Phases {
    started: Vec<Duration>,
    connected: Vec<Duration>,
    first_change: Vec<Duration>,
    done: Vec<Duration>,
}

type Shared = Arc<Mutex<Results>>;

fn record(results: &Shared, figure: &'static str, way: &'static str, d: Duration) {
    results
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .criterion
        .entry((figure, way))
        .or_default()
        .push(d);
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
    a: NodeLike,
    b: NodeLike,
    subs: HashMap<DocumentId, Subscription>,
}

impl EngineLive {
    fn start(subscribed: bool) -> EngineLive {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut a = NodeLike::open(&dir.path().join("a"), info("pos-1"), subscribed);
        let mut b = NodeLike::open(&dir.path().join("b"), info("pos-2"), subscribed);
        let now = Timestamp::now();
        a.engine.handle_connect(b.engine.local().clone(), now);
        b.engine.handle_connect(a.engine.local().clone(), now);
        drive(&mut a.engine, &mut b.engine, now, || {});
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
        let b_store = self.b.engine.store().clone();
        let sub = self
            .subs
            .entry(doc.clone())
            .or_insert_with(|| b_store.subscribe(SubscriptionFilter::doc(doc.clone())));
        let a_store = self.a.engine.store().clone();
        let started = Instant::now();
        a_store
            .put(doc, path, order(n), Durability::Fast)
            .expect("A writes an order");
        let now = Timestamp::now();
        self.a.wrote(doc, now);
        let want = hex(&a_store.heads(doc).expect("A's heads"));
        let mut seen = None;
        drive(&mut self.a.engine, &mut self.b.engine, now, || {
            while let Some(event) = sub.try_recv() {
                if seen.is_none() && sorted(event.heads) == want {
                    seen = Some(started.elapsed());
                }
            }
        });
        self.b.on_store_changes(now);
        seen.expect("the change reaches the second engine")
    }
}

/// Raw Automerge documents synced in memory.
#[derive(Default)]
struct RawLive {
    docs: HashMap<DocumentId, (Automerge, sync::State, Automerge, sync::State)>,
}

impl Live for RawLive {
    fn once(&mut self, doc: &DocumentId, path: &str, n: u64) -> Duration {
        let (a, sa, b, sb) = self.docs.entry(doc.clone()).or_default();
        let started = Instant::now();
        automerge_put_json(a, path.trim_start_matches('/'), &order(n));
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

/// An interleaved latency run: every way writes the same orders, one after the other.
struct LatencyRun {
    /// The figure, in the summary.
    figure: &'static str,
    /// What the documents are like.
    about: &'static str,
    /// Unrecorded samples first.
    warmup: usize,
    /// Where sample `i` writes.
    location: fn(usize) -> (DocumentId, String),
}

/// One document that grows from `LATENCY_WARMUP` to `LATENCY_WARMUP + LATENCY_SAMPLES`
/// orders: a busy day's partition.
const ONE_DAY: LatencyRun = LatencyRun {
    figure: "live_latency",
    about: "one document growing from 50 to 1050 orders",
    warmup: LATENCY_WARMUP,
    location: |i| {
        let doc = "orders/latency".parse().expect("a valid document id");
        (doc, format!("/o{i}"))
    },
};

/// Documents that stay small: `SMALL_DOCS` of them written in turn, each ending with 11
/// orders. Shows the latency when the cost that grows with the document is negligible.
const SMALL: LatencyRun = LatencyRun {
    figure: "live_latency_small",
    about: "100 documents written in turn, growing from 1 to 11 orders each",
    // One write per document first: the first exchange of a document takes more trips.
    warmup: SMALL_DOCS,
    location: |i| {
        let doc = format!("orders/small-{}", i % SMALL_DOCS)
            .parse()
            .expect("a valid document id");
        (doc, format!("/o{}", i / SMALL_DOCS))
    },
};
const SMALL_DOCS: usize = 100;

fn latency_interleaved(
    run: &LatencyRun,
    ways: &mut [(&'static str, &mut dyn Live)],
    results: &Shared,
) {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    for i in 0..run.warmup + LATENCY_SAMPLES {
        let (doc, path) = (run.location)(i);
        for (k, (_, way)) in ways.iter_mut().enumerate() {
            let d = way.once(&doc, &path, i as u64);
            if i >= run.warmup {
                samples[k].push(d);
            }
        }
    }
    println!(
        "\n{}, interleaved: {LATENCY_SAMPLES} samples per way (after {} unrecorded), {}",
        run.figure, run.warmup, run.about
    );
    let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
    for ((name, _), s) in ways.iter().zip(&samples) {
        let Some(st) = stats(s) else { continue };
        println!(
            "  {name:<18} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms  mean {:>7.3} ms",
            ms(st.p50),
            ms(st.p99),
            ms(st.max),
            ms(st.mean)
        );
        r.interleaved.insert((run.figure, name), st);
    }
    if run.figure != ONE_DAY.figure {
        return;
    }
    // The latency depends on the size of the document: show it per quarter of the run.
    let quarter = LATENCY_SAMPLES / 4;
    println!("  p50 by document size:");
    for q in 0..4 {
        let from = q * quarter;
        let row: Vec<(&'static str, Duration)> = ways
            .iter()
            .zip(&samples)
            .filter_map(|((name, _), s)| stats(&s[from..from + quarter]).map(|st| (*name, st.p50)))
            .collect();
        let size = run.warmup + from;
        println!(
            "    {:>4}-{:<4} orders: {}",
            size,
            size + quarter,
            row.iter()
                .map(|(n, d)| format!("{n} {:.3} ms", ms(*d)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        r.latency_by_size.push((size, row));
    }
}

fn live_latency(c: &mut Criterion, rt: &Runtime, ca: &FleetCa, dir: &Path, results: &Shared) {
    let mut quic = QuicLive::start(rt, ca, dir);
    let mut subscribed = EngineLive::start(true);
    let mut bare = EngineLive::start(false);
    let mut raw = RawLive::default();

    for run in [&SMALL, &ONE_DAY] {
        latency_interleaved(
            run,
            &mut [
                (QUIC, &mut quic),
                (ENGINE_SUBSCRIBED, &mut subscribed),
                (ENGINE_BARE, &mut bare),
                (AUTOMERGE, &mut raw),
            ],
            results,
        );
    }

    let mut group = c.benchmark_group("live_latency");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let ways: [(&'static str, &mut dyn Live); 4] = [
        (QUIC, &mut quic),
        (ENGINE_SUBSCRIBED, &mut subscribed),
        (ENGINE_BARE, &mut bare),
        (AUTOMERGE, &mut raw),
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
                    record(results, "live_latency", name, d);
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

// ---------------------------------------------------------------------------------------
// Catch-up

/// A store of `CATCH_UP_ORDERS` orders, each its own change, written once by pos-1.
struct Source {
    dir: PathBuf,
    /// The heads of each document, sorted hex.
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

/// The sources of every way: A as a node, A as engines (with and without subscription),
/// raw documents.
struct CatchUp<'a> {
    rt: &'a Runtime,
    ca: &'a FleetCa,
    root: &'a Path,
    source: Source,
    node: Node,
    subscribed: NodeLike,
    bare: NodeLike,
    /// Gives each B a new identity.
    next: u64,
}

impl<'a> CatchUp<'a> {
    fn new(rt: &'a Runtime, ca: &'a FleetCa, root: &'a Path) -> CatchUp<'a> {
        let source = build_source(root);
        let copy = |name: &str| {
            let dir = root.join(name);
            copy_dir(&source.dir, &dir);
            dir
        };
        let node = rt.block_on(start(node_config(&copy("quic-a"), ca, "pos-1", vec![])));
        let subscribed = NodeLike::open(&copy("subscribed-a"), info("pos-1"), true);
        let bare = NodeLike::open(&copy("bare-a"), info("pos-1"), false);
        CatchUp {
            rt,
            ca,
            root,
            source,
            node,
            subscribed,
            bare,
            next: 0,
        }
    }

    fn run(&mut self, way: &str, results: &Shared) -> Duration {
        self.next += 1;
        let i = self.next;
        match way {
            QUIC => {
                let (d, phases) = self.rt.block_on(quic_catch_up(
                    &self.node,
                    self.ca,
                    &self.source,
                    self.root,
                    i,
                ));
                let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                let [started, connected, first_change, done] = phases;
                r.phases.started.extend(started);
                r.phases.connected.extend(connected);
                r.phases.first_change.extend(first_change);
                r.phases.done.extend(done);
                d
            }
            ENGINE_SUBSCRIBED => engine_catch_up(&mut self.subscribed, &self.source, self.root, i),
            ENGINE_BARE => engine_catch_up(&mut self.bare, &self.source, self.root, i),
            _ => raw_catch_up(&mut self.source.raw),
        }
    }

    fn shutdown(self) {
        self.rt.block_on(async {
            within("shutdown", self.node.shutdown())
                .await
                .expect("A stops")
        });
    }
}

/// B starts empty with a new identity, dials A and catches up; returns the time from B's
/// start until its heads equal A's, and when B had started, was connected, had applied its
/// first change and was done.
async fn quic_catch_up(
    a: &Node,
    ca: &FleetCa,
    source: &Source,
    root: &Path,
    i: u64,
) -> (Duration, [Option<Duration>; 4]) {
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
                Ok(Event::PeerConnected(_)) => return Some(t0.elapsed()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // Dial only now that the subscription is in place.
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
    let b_id: PeerId = peer.parse().expect("a valid peer id");
    within("A notices B left", a.wait_disconnected(&b_id)).await;
    let _ = std::fs::remove_dir_all(&dir);
    (done, [Some(started), connected, first_change, Some(done)])
}

/// The same catch-up through two engines in memory; B is subscribed like A is.
fn engine_catch_up(a: &mut NodeLike, source: &Source, root: &Path, i: u64) -> Duration {
    let me = info(&format!("pos-e{i}"));
    let dir = root.join(format!("engine-{}", me.peer));

    let t0 = Instant::now();
    let mut b = NodeLike::open(&dir, me.clone(), a.changes.is_some());
    let now = Timestamp::now();
    a.engine.handle_connect(me.clone(), now);
    b.engine.handle_connect(a.engine.local().clone(), now);
    drive(&mut a.engine, &mut b.engine, now, || {});
    for (doc, heads) in &source.heads {
        assert_eq!(
            &hex(&b.engine.store().heads(doc).expect("B's heads")),
            heads,
            "B caught up with {doc}"
        );
    }
    let done = t0.elapsed();

    a.engine.handle_disconnect(&me.peer, now);
    a.on_store_changes(now);
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

const WAYS: [&str; 4] = [QUIC, ENGINE_SUBSCRIBED, ENGINE_BARE, AUTOMERGE];

fn catch_up(c: &mut Criterion, rt: &Runtime, ca: &FleetCa, root: &Path, results: &Shared) {
    let mut catch_up = CatchUp::new(rt, ca, root);

    let mut group = c.benchmark_group("catch_up");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for way in WAYS {
        group.bench_function(way, |bencher| {
            bencher.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let d = catch_up.run(way, results);
                    record(results, "catch_up", way, d);
                    total += d;
                }
                total
            })
        });
    }
    group.finish();

    let mut samples: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for _ in 0..CATCH_UP_ROUNDS {
        for way in WAYS {
            samples
                .entry(way)
                .or_default()
                .push(catch_up.run(way, results));
        }
    }
    println!("\ncatch_up, interleaved: {CATCH_UP_ROUNDS} rounds");
    let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
    for way in WAYS {
        let Some(st) = samples.get(way).and_then(|s| stats(s)) else {
            continue;
        };
        println!(
            "  {way:<18} median {:>7.1} ms  max {:>7.1} ms",
            ms(st.p50),
            ms(st.max)
        );
        r.interleaved.insert(("catch_up", way), st);
    }
    drop(r);
    catch_up.shutdown();
}

// ---------------------------------------------------------------------------------------
// Summary

fn ratios(of: Duration, refs: &[(&str, Option<Duration>)]) -> String {
    refs.iter()
        .filter_map(|(name, d)| {
            d.map(|d| {
                format!(
                    "{:.2}x {name} ({:.3} ms)",
                    of.as_secs_f64() / d.as_secs_f64(),
                    ms(d)
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn summary(results: &Shared) {
    let r = results.lock().unwrap_or_else(|p| p.into_inner());
    let get = |figure: &str, way: &str| r.interleaved.get(&(figure, way)).copied();
    let refs =
        |figure: &str, pick: fn(&Stats) -> Duration| -> Vec<(&'static str, Option<Duration>)> {
            [ENGINE_SUBSCRIBED, ENGINE_BARE, AUTOMERGE]
                .into_iter()
                .map(|w| (w, get(figure, w).as_ref().map(pick)))
                .collect()
        };
    println!("\nsummary (ratios to references measured in the same run, interleaved):");
    for figure in [SMALL.figure, ONE_DAY.figure] {
        let Some(q) = get(figure, QUIC) else { continue };
        println!(
            "  {figure} quic p50 {:.3} ms (goal < 1 ms: {}): {}",
            ms(q.p50),
            verdict(q.p50 < Duration::from_millis(1)),
            ratios(q.p50, &refs(figure, |s| s.p50))
        );
        println!(
            "  {figure} quic p99 {:.3} ms (goal < 5 ms: {}): {}",
            ms(q.p99),
            verdict(q.p99 < Duration::from_millis(5)),
            ratios(q.p99, &refs(figure, |s| s.p99))
        );
    }
    let quarters = [r.latency_by_size.first(), r.latency_by_size.last()];
    for (size, row) in quarters.into_iter().flatten() {
        let Some((_, quic)) = row.iter().find(|(n, _)| *n == QUIC) else {
            continue;
        };
        let refs: Vec<(&str, Option<Duration>)> = row
            .iter()
            .filter(|(n, _)| *n != QUIC)
            .map(|(n, d)| (*n, Some(*d)))
            .collect();
        println!(
            "  live_latency quic p50 while the document holds {size}-{} orders {:.3} ms: {}",
            size + LATENCY_SAMPLES / 4,
            ms(*quic),
            ratios(*quic, &refs)
        );
    }
    let mean = |way: &str| {
        r.criterion
            .get(&("live_latency", way))
            .and_then(|s| stats(s))
            .map(|s| (s.mean, s.n))
    };
    if let Some((q, n)) = mean(QUIC) {
        let refs: Vec<(&str, Option<Duration>)> = [ENGINE_SUBSCRIBED, ENGINE_BARE, AUTOMERGE]
            .into_iter()
            .map(|w| (w, mean(w).map(|(d, _)| d)))
            .collect();
        println!(
            "  live_latency quic mean {:.3} ms over {n} criterion iterations: {}",
            ms(q),
            ratios(q, &refs)
        );
    }
    if let (Some(q), Some(e)) = (get("catch_up", QUIC), get("catch_up", ENGINE_BARE)) {
        let ratio = q.p50.as_secs_f64() / e.p50.as_secs_f64();
        println!(
            "  catch_up of {CATCH_UP_ORDERS} orders quic median {:.1} ms (goal <= 1.5x engine_bare: {}): {}",
            ms(q.p50),
            verdict(ratio <= 1.5),
            ratios(q.p50, &refs("catch_up", |s| s.p50))
        );
        let median = |v: &[Duration]| stats(v).map_or(f64::NAN, |s| ms(s.p50));
        let p = &r.phases;
        println!(
            "  catch_up quic phases (median from B's start): node started {:.1} ms, connected {:.1} ms, first change applied {:.1} ms, caught up {:.1} ms",
            median(&p.started),
            median(&p.connected),
            median(&p.first_change),
            median(&p.done),
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
    let results = Shared::default();

    live_latency(&mut c, &rt, &ca, dir.path(), &results);
    catch_up(&mut c, &rt, &ca, dir.path(), &results);
    c.final_summary();
    summary(&results);
}
