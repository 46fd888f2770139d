//! The cost of encryption at rest (issue 32): the same work on a plain store and on an
//! encrypted one (`StoreOptions::data_key`), in the same run, interleaved.
//!
//! - `at_rest/durable_{plain,sealed}`: a durable write of a small order (`Store::put`,
//!   `Durability::Durable`) into the day's document.
//! - `at_rest/fast_{plain,sealed}`: the same, `Durability::Fast`.
//! - `at_rest/catchup_{plain,sealed}`: a fresh POS catches up a day of `ORDERS` orders (five
//!   changes each) from a POS through two sync engines in memory (as `catchup.rs`), both
//!   stores plain or both encrypted: every chunk read on one side and written on the other.
//!
//! Engine: the default (redb), or `OUTPOST_TEST_ENGINE`. After criterion's own figures the
//! bench takes `ROUNDS` interleaved rounds of each pair and prints the medians and the ratios
//! sealed/plain (goal: at most 1.15x).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use outpost_core::storage::{SharedKeyWrap, WrappingKey};
use outpost_core::{
    DocumentId, Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions, Timestamp,
};
use serde_json::json;

/// Orders the fresh POS lacks in the catch-up.
const ORDERS: u64 = 2_000;
/// Interleaved rounds per pair.
const ROUNDS: usize = 9;
/// Writes per round of the write figures.
const WRITES: u64 = 200;

fn day() -> DocumentId {
    "orders/2026-12-07"
        .parse()
        .expect("a literal document id is valid")
}

fn info(peer: &str) -> PeerInfo {
    PeerInfo::parse("s1", peer, "pos").expect("literal identities are valid")
}

fn key() -> SharedKeyWrap {
    Arc::new(WrappingKey::generate().expect("a random key"))
}

fn open(dir: &Path, peer: &str, key: Option<&SharedKeyWrap>) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            identity: Some(info(peer)),
            policy: Policy::default(),
            data_key: key.cloned(),
            ..StoreOptions::default()
        },
    )
    .expect("a store opens in a fresh directory")
}

/// A store with a day already holding 100 orders (a write lands in a real document).
struct Writer {
    _dir: tempfile::TempDir,
    store: Store,
    next: u64,
}

impl Writer {
    fn new(key: Option<&SharedKeyWrap>) -> Writer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path(), "pos-a", key);
        let mut w = Writer {
            _dir: dir,
            store,
            next: 0,
        };
        for _ in 0..100 {
            w.write(Durability::Fast);
        }
        w.store.flush().expect("flush");
        w
    }

    fn write(&mut self, durability: Durability) {
        let n = self.next;
        self.next += 1;
        self.store
            .put(
                &day(),
                &format!("/A-{n:06}"),
                json!({"sku": "burger", "qty": 1 + n % 3, "table": n % 24, "note": "no onions"}),
                durability,
            )
            .expect("a POS writes an order");
    }
}

/// The catch-up source: an engine over a store holding the day's orders.
struct Source {
    _dir: tempfile::TempDir,
    engine: Engine,
    key: Option<SharedKeyWrap>,
}

fn engine(store: Store, peer: &str) -> Engine {
    Engine::new(store, EngineConfig::new(info(peer), Policy::default()))
}

fn source(key: Option<SharedKeyWrap>) -> Source {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), "pos-a", key.as_ref());
    let d = day();
    for n in 0..ORDERS {
        let o = format!("/o{n:05}");
        for (field, value) in [
            ("sku", json!(["burger", "fries", "soda"][n as usize % 3])),
            ("qty", json!(1 + n % 3)),
            ("table", json!(n % 24)),
            ("status", json!("new")),
            ("total_cents", json!(1250 + (n % 7) * 100)),
        ] {
            store
                .put(&d, &format!("{o}/{field}"), value, Durability::Fast)
                .expect("a POS writes an order");
        }
    }
    store.flush().expect("flush");
    Source {
        _dir: dir,
        engine: engine(store, "pos-a"),
        key,
    }
}

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

/// A fresh POS (same encryption as the source) made outside the measurement.
fn fresh(key: Option<&SharedKeyWrap>) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), "pos-b", key);
    (dir, engine(store, "pos-b"))
}

fn catch_up(source: &mut Source, (dir, mut b): (tempfile::TempDir, Engine)) -> tempfile::TempDir {
    let now = Timestamp(1_000);
    let a = &mut source.engine;
    let (ia, ib) = (a.local().clone(), b.local().clone());
    a.handle_connect(ib.clone(), now);
    b.handle_connect(ia.clone(), now);
    while deliver(a, &mut b, now) | deliver(&mut b, a, now) {}
    b.store().flush().expect("flush");
    assert_eq!(
        b.store().heads(&day()).expect("heads"),
        a.store().heads(&day()).expect("heads"),
        "the fresh POS caught up"
    );
    a.handle_disconnect(&ib.peer, now);
    b.handle_disconnect(&ia.peer, now);
    drop(b);
    dir
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let testing = std::env::args().any(|a| a == "--test");
    let k = key();
    let mut plain_w = Writer::new(None);
    let mut sealed_w = Writer::new(Some(&k));
    let started = Instant::now();
    let mut plain_src = source(None);
    let mut sealed_src = source(Some(key()));
    println!(
        "at_rest: two sources of {ORDERS} orders ({} changes each) built in {:.1} s on {}",
        ORDERS * 5,
        started.elapsed().as_secs_f64(),
        plain_w.store.engine()
    );

    let mut group = c.benchmark_group("at_rest");
    for (name, w) in [("plain", &mut plain_w), ("sealed", &mut sealed_w)] {
        group.bench_function(format!("durable_{name}"), |b| {
            b.iter(|| w.write(Durability::Durable))
        });
        group.bench_function(format!("fast_{name}"), |b| {
            b.iter(|| w.write(Durability::Fast))
        });
    }
    for (name, s) in [("plain", &mut plain_src), ("sealed", &mut sealed_src)] {
        let key = s.key.clone();
        group.bench_function(format!("catchup_{name}"), |b| {
            b.iter_batched(
                || fresh(key.as_ref()),
                |f| catch_up(s, f),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    c.final_summary();
    if testing {
        return;
    }

    // Interleaved: each round measures plain then sealed (then the other order), so both see
    // the same load on a shared machine.
    let rounds = std::env::var("AT_REST_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ROUNDS);
    let mut figures: Vec<(&str, Vec<Duration>, Vec<Duration>)> = vec![
        ("durable write (per write)", vec![], vec![]),
        ("fast write (per write)", vec![], vec![]),
        ("catch-up of the day", vec![], vec![]),
    ];
    for round in 0..rounds {
        for sealed in [round % 2 == 1, round % 2 == 0] {
            let w = if sealed { &mut sealed_w } else { &mut plain_w };
            let mut t = [Duration::ZERO; 2];
            for (i, d) in [Durability::Durable, Durability::Fast]
                .into_iter()
                .enumerate()
            {
                let start = Instant::now();
                for _ in 0..WRITES {
                    w.write(d);
                }
                w.store.flush().expect("flush");
                t[i] = start.elapsed() / WRITES as u32;
            }
            let s = if sealed {
                &mut sealed_src
            } else {
                &mut plain_src
            };
            let f = fresh(s.key.clone().as_ref());
            let start = Instant::now();
            let dir = catch_up(s, f);
            let catchup = start.elapsed();
            drop(dir);
            for (fig, v) in figures.iter_mut().zip([t[0], t[1], catchup]) {
                if sealed {
                    fig.2.push(v);
                } else {
                    fig.1.push(v);
                }
            }
        }
    }
    for (name, plain, sealed) in figures {
        let (p, s) = (median(plain), median(sealed));
        println!(
            "at_rest, summary: {name}: encrypted {:.3} ms, plain {:.3} ms (same run, {rounds} interleaved rounds, medians): {:.2}x (goal <= 1.15x)",
            s.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3,
            s.as_secs_f64() / p.as_secs_f64()
        );
    }
}
