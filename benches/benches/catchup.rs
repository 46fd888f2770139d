//! Catch-up benchmark: a peer that lacks a day of 10,000 orders catches up through two sync
//! engines in memory, next to raw Automerge sync between two in-memory documents with the
//! same content, measured in the same run.
//!
//! - `catchup/engine`: POS `pos-a` holds `orders/2026-11-24`, 10,000 orders of five fields,
//!   each field written as its own change (50,000 changes) through a `Store`. A fresh,
//!   empty POS connects and the two `Engine`s exchange messages (delivered in memory, as in
//!   `core/tests/engine_basic.rs`) until both are quiet: Hello, sync, fragments, acks,
//!   the policy check, persistence of what arrives in the new peer's sled store.
//! - `catchup/automerge`: the same document (exported from the store, so the same changes)
//!   synced into an empty `Automerge` with `automerge::sync` until neither side has a
//!   message, each message encoded and decoded as on a wire; no storage.
//!
//! - `catchup/engine_signed`: the same with signed changes (issue 12): the source's store
//!   signed each of its 50,000 commits with an ECDSA P-256 key of a fleet CA made by
//!   `outpost_transport::FleetCa`, and the receiver verifies what arrives
//!   (`FleetVerifier`, `SignatureRule::Required`) and stores the signatures it accepts.
//!
//! - `catchup/quic_<orders>` (issue 30): a fresh device catches up through two `Node`s over
//!   QUIC + mTLS on loopback, from `Node::start` (new directory and identity, the source as
//!   its one static peer) until its heads equal the source's; the source is a `Node` over a
//!   store holding one document of `<orders>` orders, one signed change per order. Measured
//!   at 10,000 and 50,000 orders (`CATCHUP_SIZES=10000` for the first only), each next to raw
//!   Automerge sync of the same document in the same run, interleaved (`QUIC_ROUNDS` each).
//!   `CATCHUP_PHASES=1` prints when the fresh device had started, was connected, held the
//!   first change and was done, per catch-up. `CATCHUP_QUIC_ONCE=<orders>` builds (or
//!   reuses, in `CATCHUP_SOURCE_DIR`) the source and runs one catch-up, nothing else: the run
//!   to profile under `valgrind --tool=callgrind`. `CATCHUP_ONLY_QUIC=1` runs the QUIC
//!   figures only.
//!
//! The source is built once, outside the measurement; each iteration starts from an empty
//! receiver (made in the untimed setup) and ends when it has the source's heads. The ratio
//! engine/raw is printed at the end (goal: at most 1.5x).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::Automerge;
use criterion::{BatchSize, Criterion};
use std::sync::Arc;

use outpost_core::signing::SignatureRule;
use outpost_core::{
    DocumentId, Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions, Timestamp,
};
use outpost_core::{Event, SubscriptionFilter};
use outpost_transport::{DeviceSigner, FleetCa, FleetVerifier, Node};

/// Orders the receiver lacks.
const ORDERS: u64 = 10_000;

fn doc() -> DocumentId {
    "orders/2026-11-24"
        .parse()
        .expect("a literal document id is valid")
}

fn info(peer: &str) -> PeerInfo {
    PeerInfo::parse("s1", peer, "pos").expect("literal identities are valid")
}

/// Opens an engine; with a CA, it signs its commits and requires signed changes.
fn open_engine(dir: &Path, me: PeerInfo, ca: Option<&FleetCa>) -> Engine {
    let cert = ca.map(|ca| ca.issue(&me).expect("the CA issues a certificate"));
    let store = Store::open_with(
        dir,
        StoreOptions {
            identity: Some(me.clone()),
            policy: Policy::default(),
            signer: cert.as_ref().map(|c| {
                Arc::new(DeviceSigner::new(c).expect("a fresh key signs"))
                    as outpost_core::signing::SharedSigner
            }),
            ..StoreOptions::default()
        },
    )
    .expect("a store opens in a fresh directory");
    let mut config = EngineConfig::new(me, Policy::default());
    if let Some(c) = &cert {
        config.verifier = Some(Arc::new(FleetVerifier::for_device(c)));
        config.signatures = SignatureRule::Required;
    }
    Engine::new(store, config)
}

/// The source: a POS engine over a store holding the day's orders, and the same document as
/// a plain `Automerge` for the reference.
struct Source {
    _dir: tempfile::TempDir,
    engine: Engine,
    raw: Automerge,
}

fn build_source(ca: Option<&FleetCa>) -> Source {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = open_engine(dir.path(), info("pos-a"), ca);
    let d = doc();
    let store = engine.store();
    for n in 0..ORDERS {
        let o = format!("/o{n:05}");
        // One change per field, as a POS that fills an order in step by step.
        let fields = [
            (
                "sku",
                serde_json::json!(["burger", "fries", "soda"][n as usize % 3]),
            ),
            ("qty", serde_json::json!(1 + n % 3)),
            ("table", serde_json::json!(n % 24)),
            ("status", serde_json::json!("new")),
            ("total_cents", serde_json::json!(1250 + (n % 7) * 100)),
        ];
        for (field, value) in fields {
            store
                .put(&d, &format!("{o}/{field}"), value, Durability::Fast)
                .expect("a POS writes an order");
        }
    }
    store.flush().expect("the store flushes");
    let raw = Automerge::load(&store.export(&d).expect("the document exports"))
        .expect("an exported document loads");
    println!(
        "catchup: {} source of {ORDERS} orders ({} changes, {} KiB saved) built in {:.1} s",
        if ca.is_some() { "signed" } else { "unsigned" },
        raw.get_changes_meta(&[]).len(),
        raw.save().len() / 1024,
        started.elapsed().as_secs_f64()
    );
    Source {
        _dir: dir,
        engine,
        raw,
    }
}

/// Delivers every message `from` has to `to`; whether there was any.
fn deliver(from: &mut Engine, to: &mut Engine, now: Timestamp) -> bool {
    let me = from.local().peer.clone();
    let mut moved = false;
    while let Some(t) = from.poll_transmit() {
        moved = true;
        to.handle_message(&me, &t.bytes, now)
            .expect("engines understand each other");
    }
    moved
}

/// Delivers messages between the two engines until neither has any left.
fn drive(a: &mut Engine, b: &mut Engine, now: Timestamp) {
    while deliver(a, b, now) | deliver(b, a, now) {}
}

/// One engine catch-up of a fresh peer; returns it (to be dropped outside the measurement).
fn engine_catch_up(
    source: &mut Engine,
    (dir, mut fresh): (tempfile::TempDir, Engine),
) -> (tempfile::TempDir, Engine) {
    let now = Timestamp(1_000);
    let (a, b) = (source.local().clone(), fresh.local().clone());
    source.handle_connect(b.clone(), now);
    fresh.handle_connect(a.clone(), now);
    drive(source, &mut fresh, now);
    let d = doc();
    assert_eq!(
        fresh.store().heads(&d).expect("heads"),
        source.store().heads(&d).expect("heads"),
        "the fresh peer caught up"
    );
    source.handle_disconnect(&b.peer, now);
    fresh.handle_disconnect(&a.peer, now);
    (dir, fresh)
}

/// One raw Automerge catch-up into `empty`; returns it (dropped outside the measurement).
fn raw_catch_up(source: &mut Automerge, mut empty: Automerge) -> Automerge {
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    loop {
        let mut moved = false;
        if let Some(m) = source.generate_sync_message(&mut sa) {
            let m = sync::Message::decode(&m.encode()).expect("a sync message decodes");
            empty
                .receive_sync_message(&mut sb, m)
                .expect("the receiver applies the message");
            moved = true;
        }
        if let Some(m) = empty.generate_sync_message(&mut sb) {
            let m = sync::Message::decode(&m.encode()).expect("a sync message decodes");
            source
                .receive_sync_message(&mut sa, m)
                .expect("the source applies the message");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert_eq!(
        empty.get_heads(),
        source.get_heads(),
        "the raw copy caught up"
    );
    empty
}

fn catchup(c: &mut Criterion, source: &mut Source, signed: &mut Source, ca: &FleetCa) {
    let mut group = c.benchmark_group("catchup");
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut i = 0u32;
    group.bench_function("engine", |bench| {
        bench.iter_batched(
            || {
                // A new peer id each time: the source keeps the sync state of peers it met.
                i += 1;
                let dir = tempfile::tempdir_in(root.path()).expect("a temporary directory");
                let fresh = open_engine(dir.path(), info(&format!("pos-b{i}")), None);
                (dir, fresh)
            },
            |fresh| engine_catch_up(&mut source.engine, fresh),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("engine_signed", |bench| {
        bench.iter_batched(
            || {
                i += 1;
                let dir = tempfile::tempdir_in(root.path()).expect("a temporary directory");
                let fresh = open_engine(dir.path(), info(&format!("pos-b{i}")), Some(ca));
                (dir, fresh)
            },
            |fresh| {
                let done = engine_catch_up(&mut signed.engine, fresh);
                assert!(
                    done.1.metrics().signatures_verified > 0,
                    "the receiver verified signatures"
                );
                done
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("automerge", |bench| {
        bench.iter_batched(
            Automerge::new,
            |empty| raw_catch_up(&mut source.raw, empty),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Where criterion wrote its estimates (see `storage.rs`).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

fn time_ns(home: &Path, name: &str) -> Option<f64> {
    let path = home
        .join("catchup")
        .join(name)
        .join("new")
        .join("estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let estimate = |e: &str| json.get(e)?.get("point_estimate")?.as_f64();
    estimate("slope").or_else(|| estimate("mean"))
}

/// Catch-ups of each kind in the interleaved run.
const ROUNDS: usize = 10;

/// Engine and raw catch-ups taken in turns, so that both see the same machine load (a shared
/// machine skews two figures measured one after the other); returns the median of each.
fn interleaved(
    source: &mut Source,
    signed: &mut Source,
    ca: &FleetCa,
) -> (Duration, Duration, Duration) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let (mut engine, mut engine_signed, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let dir = tempfile::tempdir_in(root.path()).expect("a temporary directory");
        let fresh = open_engine(dir.path(), info(&format!("pos-r{i}")), None);
        let started = Instant::now();
        let done = engine_catch_up(&mut source.engine, (dir, fresh));
        engine.push(started.elapsed());
        drop(done);
        let dir = tempfile::tempdir_in(root.path()).expect("a temporary directory");
        let fresh = open_engine(dir.path(), info(&format!("pos-s{i}")), Some(ca));
        let started = Instant::now();
        let done = engine_catch_up(&mut signed.engine, (dir, fresh));
        engine_signed.push(started.elapsed());
        drop(done);
        let empty = Automerge::new();
        let started = Instant::now();
        let done = raw_catch_up(&mut source.raw, empty);
        raw.push(started.elapsed());
        drop(done);
    }
    engine.sort();
    engine_signed.sort();
    raw.sort();
    (
        engine[ROUNDS / 2],
        engine_signed[ROUNDS / 2],
        raw[ROUNDS / 2],
    )
}

/// With `CATCHUP_BREAKDOWN` set: what the steps that the engine adds to a raw catch-up cost
/// on this document, timed once each, to see where the difference goes.
fn breakdown(source: &mut Source) {
    let time = |what: &str, f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        println!("  {what}: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    };
    println!("catchup breakdown:");
    let raw = source.raw.clone();
    time("raw catch-up", &mut || {
        raw_catch_up(&mut source.raw, Automerge::new());
    });
    let saved = raw.save();
    time("Automerge::save (what the source sends)", &mut || {
        std::hint::black_box(raw.save());
    });
    time("load_incremental of it into an empty document", &mut || {
        let mut d = Automerge::new();
        d.load_incremental(&saved).expect("loads");
    });
    time(
        "get_changes_meta(&[]) (the store counts what was added)",
        &mut || {
            std::hint::black_box(raw.get_changes_meta(&[]).len());
        },
    );
    time(
        "save_after(&[]) (the store persists what was added)",
        &mut || {
            std::hint::black_box(raw.save_after(&[]));
        },
    );
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut i = 0;
    let mut fresh = || {
        i += 1;
        let dir = tempfile::tempdir_in(root.path()).expect("a temporary directory");
        let e = open_engine(dir.path(), info(&format!("pos-x{i}")), None);
        (dir, e)
    };
    let mut f = Some(fresh());
    time("engine catch-up", &mut || {
        let f = f.take().expect("timed once");
        engine_catch_up(&mut source.engine, f);
    });
    let (_dir, engine) = fresh();
    let store = engine.store();
    time("store import of the saved document", &mut || {
        store.import(&doc(), &saved).expect("imports");
    });
}

// ---------------------------------------------------------------------------------------
// A fresh device catching up through two `Node`s over QUIC (issue 30)

/// Catch-ups of each kind per size in the interleaved QUIC run.
const QUIC_ROUNDS: usize = 5;
/// The bound on every await of the QUIC runs.
const STEP: Duration = Duration::from_secs(120);

fn quic_doc() -> DocumentId {
    "orders/2026-12-07"
        .parse()
        .expect("a literal document id is valid")
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// The source of a QUIC catch-up: a `Node` over a store holding `orders` orders in one
/// document, each its own signed change, and the same document as a plain `Automerge`.
struct QuicSource {
    _dir: Option<tempfile::TempDir>,
    node: Node,
    raw: Automerge,
    heads: Vec<automerge::ChangeHash>,
}

/// Writes the source's orders into `dir` (unless a store is there already) and starts the
/// source node on it.
fn quic_source(rt: &tokio::runtime::Runtime, ca: &FleetCa, dir: &Path, orders: u64) -> QuicSource {
    let started = Instant::now();
    let d = quic_doc();
    let me = support::info("pos-1");
    let fresh = !dir.join("built").exists();
    if fresh {
        let cert = ca.issue(&me).expect("the CA issues a certificate");
        let store = Store::open_with(
            dir,
            StoreOptions {
                identity: Some(me.clone()),
                signer: Some(
                    Arc::new(DeviceSigner::new(&cert).expect("a fresh key signs"))
                        as outpost_core::signing::SharedSigner,
                ),
                ..StoreOptions::default()
            },
        )
        .expect("the source store opens");
        for n in 0..orders {
            store
                .put(
                    &d,
                    &format!("/orders/o{n:06}"),
                    outpost_benches::order(n),
                    Durability::Fast,
                )
                .expect("a POS writes an order");
        }
        store.flush().expect("the store flushes");
        drop(store);
        std::fs::write(dir.join("built"), b"").expect("mark the source built");
    }
    let node = rt.block_on(async {
        within(
            "the source starts",
            Node::start(support::node_config(dir, ca, "pos-1", vec![])),
        )
        .await
        .expect("the source node starts")
    });
    let raw = Automerge::load(&node.store().export(&d).expect("the document exports"))
        .expect("an exported document loads");
    let heads = node.store().heads(&d).expect("heads");
    println!(
        "catchup quic: source of {orders} orders ({} changes, {} KiB saved) {} in {:.1} s",
        raw.get_changes_meta(&[]).len(),
        raw.save().len() / 1024,
        if fresh { "built" } else { "reopened" },
        started.elapsed().as_secs_f64()
    );
    QuicSource {
        _dir: None,
        node,
        raw,
        heads,
    }
}

/// When the fresh device had started, was connected, held the first change and was done.
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    started: Duration,
    connected: Option<Duration>,
    first_change: Option<Duration>,
    done: Duration,
}

/// A fresh device (new directory and identity) starts, dials the source and catches up;
/// returns when each phase ended, from `Node::start`.
async fn quic_catch_up(source: &QuicSource, ca: &FleetCa, root: &Path, peer: &str) -> Phases {
    let dir = root.join(peer);
    let config = support::node_config(&dir, ca, peer, vec![]);
    let d = quic_doc();
    let want = source.heads.clone();
    let t0 = Instant::now();
    let b = within("the fresh device starts", Node::start(config))
        .await
        .expect("the fresh device starts");
    let started = t0.elapsed();
    let mut changes = b.store().subscribe(SubscriptionFilter::doc(d.clone()));
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
    b.add_static_peer(source.node.local_addr());
    let mut first_change = None;
    within("the fresh device catches up", async {
        loop {
            let Some(_event) = changes.recv().await else {
                panic!("the fresh device's store closed");
            };
            first_change.get_or_insert_with(|| t0.elapsed());
            let mut heads = b.store().heads(&d).expect("heads");
            heads.sort();
            if heads == want {
                return;
            }
        }
    })
    .await;
    let done = t0.elapsed();
    let connected = within("the connected event", connected)
        .await
        .ok()
        .flatten();
    within("the fresh device stops", b.shutdown())
        .await
        .expect("the fresh device stops");
    let id: outpost_core::PeerId = peer.parse().expect("a valid peer id");
    within("the source notices", source.node.wait_disconnected(&id)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Phases {
        started,
        connected,
        first_change,
        done,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The sizes of the QUIC runs (`CATCHUP_SIZES`, comma-separated; 10,000 and 50,000).
fn quic_sizes() -> Vec<u64> {
    std::env::var("CATCHUP_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 50_000])
}

/// The QUIC catch-up at each size: criterion's runs, then interleaved runs with raw sync;
/// returns (orders, QUIC median, raw median) per size.
fn quic(c: &mut Criterion, ca: &FleetCa, testing: bool) -> Vec<(u64, Duration, Duration)> {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let phases = std::env::var_os("CATCHUP_PHASES").is_some();
    let mut out = Vec::new();
    for orders in quic_sizes() {
        let source_dir = tempfile::tempdir().expect("a temporary directory");
        let mut source = quic_source(&rt, ca, source_dir.path(), orders);
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut i = 0u32;
        let mut group = c.benchmark_group("catchup");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.bench_function(format!("quic_{orders}"), |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    let p = rt.block_on(quic_catch_up(
                        &source,
                        ca,
                        root.path(),
                        &format!("pos-q{i}"),
                    ));
                    total += p.done;
                }
                total
            })
        });
        group.bench_function(format!("automerge_{orders}"), |bench| {
            bench.iter_batched(
                Automerge::new,
                |empty| raw_catch_up(&mut source.raw, empty),
                BatchSize::PerIteration,
            )
        });
        group.finish();
        if testing {
            rt.block_on(async { within("the source stops", source.node.shutdown()).await })
                .expect("the source stops");
            continue;
        }
        let (mut q, mut r) = (Vec::new(), Vec::new());
        for _ in 0..QUIC_ROUNDS {
            i += 1;
            let p = rt.block_on(quic_catch_up(
                &source,
                ca,
                root.path(),
                &format!("pos-q{i}"),
            ));
            if phases {
                println!(
                    "  quic {orders}: started {:.1} ms, connected {:.1} ms, first change {:.1} ms, \
                     done {:.1} ms",
                    ms(p.started),
                    p.connected.map_or(f64::NAN, ms),
                    p.first_change.map_or(f64::NAN, ms),
                    ms(p.done)
                );
            }
            q.push(p.done);
            let started = Instant::now();
            drop(raw_catch_up(&mut source.raw, Automerge::new()));
            r.push(started.elapsed());
        }
        let (q, r) = (median(q), median(r));
        println!(
            "catchup quic {orders} orders, interleaved medians of {QUIC_ROUNDS}: fresh device over \
             QUIC {:.0} ms vs raw automerge sync {:.0} ms: {:.2}x (goal <= 0.5x)",
            ms(q),
            ms(r),
            q.as_secs_f64() / r.as_secs_f64()
        );
        out.push((orders, q, r));
        rt.block_on(async { within("the source stops", source.node.shutdown()).await })
            .expect("the source stops");
        source._dir = Some(source_dir);
    }
    out
}

/// `CATCHUP_QUIC_ONCE=<orders>`: one catch-up of a source kept in `CATCHUP_SOURCE_DIR`
/// (built on the first run), for a profiler.
fn quic_once(orders: u64) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let kept = std::env::var_os("CATCHUP_SOURCE_DIR").map(PathBuf::from);
    let (keep, dir) = match kept {
        Some(d) => (None, d),
        None => {
            let t = tempfile::tempdir().expect("a temporary directory");
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    std::fs::create_dir_all(&dir).expect("the source directory");
    // The CA is kept with the source: the source's signatures chain to it.
    let ca_dir = dir.join("ca");
    let ca = match FleetCa::load(&ca_dir) {
        Ok(ca) => ca,
        Err(_) => {
            let ca = FleetCa::generate("bench").expect("a fleet CA");
            std::fs::create_dir_all(&ca_dir).expect("the CA directory");
            ca.save(&ca_dir).expect("save the CA");
            ca
        }
    };
    let store_dir = dir.join("source");
    std::fs::create_dir_all(&store_dir).expect("the source store directory");
    let source = quic_source(&rt, &ca, &store_dir, orders);
    let root = tempfile::tempdir().expect("a temporary directory");
    let p = rt.block_on(quic_catch_up(&source, &ca, root.path(), "pos-once"));
    println!(
        "quic once {orders}: started {:.1} ms, connected {:.1} ms, first change {:.1} ms, done \
         {:.1} ms",
        ms(p.started),
        p.connected.map_or(f64::NAN, ms),
        p.first_change.map_or(f64::NAN, ms),
        ms(p.done)
    );
    rt.block_on(async { within("the source stops", source.node.shutdown()).await })
        .expect("the source stops");
    drop(keep);
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let testing = std::env::args().any(|a| a == "--test" || a == "--list");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(orders) = std::env::var("CATCHUP_QUIC_ONCE")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        quic_once(orders);
        return;
    }
    if std::env::var_os("CATCHUP_ONLY_QUIC").is_some() {
        // The QUIC figures alone, without the in-memory engines' 50,000-change sources.
        let ca = FleetCa::generate("bench").expect("a fleet CA");
        let figures = quic(&mut c, &ca, testing);
        c.final_summary();
        for (orders, q, r) in figures {
            println!(
                "catchup, summary: a fresh device catching up {orders} orders over QUIC {:.0} ms \
                 = {:.2}x raw automerge sync ({:.0} ms, same run; goal <= 0.5x)",
                ms(q),
                q.as_secs_f64() / r.as_secs_f64(),
                ms(r)
            );
        }
        return;
    }
    let mut source = build_source(None);
    if std::env::var_os("CATCHUP_BREAKDOWN").is_some() {
        breakdown(&mut source);
        return;
    }
    let ca = FleetCa::generate("bench").expect("a fleet CA");
    let mut signed = build_source(Some(&ca));
    catchup(&mut c, &mut source, &mut signed, &ca);
    let quic_figures = quic(&mut c, &ca, testing);
    c.final_summary();
    if testing {
        return;
    }
    for (orders, q, r) in quic_figures {
        println!(
            "catchup, summary: a fresh device catching up {orders} orders over QUIC {:.0} ms =              {:.2}x raw automerge sync ({:.0} ms, same run; goal <= 0.5x)",
            ms(q),
            q.as_secs_f64() / r.as_secs_f64(),
            ms(r)
        );
    }
    let (e, s, r) = interleaved(&mut source, &mut signed, &ca);
    println!(
        "catchup, interleaved medians of {ROUNDS}: engine {:.0} ms vs raw automerge sync {:.0} ms: \
         {:.2}x (goal <= 1.5x)",
        e.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        e.as_secs_f64() / r.as_secs_f64()
    );
    println!(
        "catchup, interleaved medians of {ROUNDS}: signed engine {:.0} ms vs unsigned engine {:.0} ms: \
         {:.2}x (goal <= 1.3x)",
        s.as_secs_f64() * 1e3,
        e.as_secs_f64() * 1e3,
        s.as_secs_f64() / e.as_secs_f64()
    );
    if let Some(home) = criterion_home() {
        if let (Some(e), Some(s), Some(r)) = (
            time_ns(&home, "engine"),
            time_ns(&home, "engine_signed"),
            time_ns(&home, "automerge"),
        ) {
            println!(
                "catchup, criterion: engine {:.0} ms, signed engine {:.0} ms ({:.2}x), raw \
                 automerge sync {:.0} ms ({:.2}x)",
                e / 1e6,
                s / 1e6,
                s / e,
                r / 1e6,
                e / r
            );
        }
    }
}
