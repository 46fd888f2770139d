//! What an acknowledgement costs, per storage engine, through a `Node` with a peer over QUIC
//! on loopback, into a document of 10,000 orders (`orders/2026-12-07`, one order per key
//! under `/orders`):
//!
//! - **durable**: `Node::transact(.., Durability::Durable)`, on this device's disk;
//! - **replicated**: `Durability::Replicated`, on this device's disk and acknowledged by the
//!   peer (a kiosk), which flushed it to its disk before answering;
//! - the reference, measured in the same run and interleaved with both: **fsync**, this
//!   disk's own `write` of 100 bytes to a file plus `sync_data`.
//!
//! And group commit: 8 threads writing durably into one document against one thread
//! (throughput ratio).
//!
//! `cargo bench -p outpost-benches --bench replicated`; the summary at the end prints p50 and
//! p99 of each and their ratios to the fsync floor. `REPLICATED_SAMPLES` sets how many writes
//! of each kind are timed (default 200).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use outpost_core::{
    Acknowledged, DocumentId, Durability, PeerInfo, Policy, StorageEngine, Store, StoreOptions,
};
use outpost_transport::{FleetCa, Node, NodeConfig};
use serde_json::json;
use tokio::runtime::Runtime;

const ORDERS: u64 = 10_000;
const DAY: &str = "orders/2026-12-07";
const STEP: Duration = Duration::from_secs(120);
const WRITERS: usize = 8;

fn order(n: u64) -> serde_json::Value {
    json!({
        "id": format!("pos-1-{n:08}"),
        "table": n % 24,
        "lines": [{"sku": "burger", "qty": 1 + n % 3}, {"sku": "fries", "qty": 1}],
        "status": "new",
        "total_cents": 1250 + (n % 7) * 100,
    })
}

fn key(n: u64) -> String {
    format!("/orders/o-{n:08}")
}

fn day() -> DocumentId {
    DAY.parse().expect("a valid document id")
}

/// p50 and p99 (nearest rank).
fn quantiles(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let at = |q: f64| s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1];
    (at(0.50), at(0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The disk's own cost of a small durable write.
struct Floor {
    file: std::fs::File,
}

impl Floor {
    fn open(dir: &Path) -> Floor {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("fsync-floor"))
            .expect("a file in the bench directory");
        Floor { file }
    }

    fn once(&mut self) -> Duration {
        let started = Instant::now();
        self.file.write_all(&[7u8; 100]).expect("write 100 bytes");
        self.file.sync_data().expect("sync_data");
        started.elapsed()
    }
}

/// A POS node holding 10,000 orders and a kiosk node linked to it, in sync.
struct Site {
    pos: Node,
    kiosk: Node,
    next: u64,
    /// Replicated writes not acknowledged within the timeout.
    missed: u64,
}

fn config(
    dir: &Path,
    cert: &outpost_transport::DeviceCert,
    peers: Vec<std::net::SocketAddr>,
) -> NodeConfig {
    let mut c = NodeConfig::new(dir, cert.clone());
    c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.static_peers = peers;
    c.health_period = None;
    c.replicated_timeout = Duration::from_secs(30);
    c
}

impl Site {
    fn start(rt: &Runtime, ca: &FleetCa, root: &Path, engine: StorageEngine) -> Site {
        let pos_info = PeerInfo::parse("lyon", "pos-1", "pos").expect("identity");
        let pos_cert = ca.issue(&pos_info).expect("certificate");
        let kiosk_cert = ca
            .issue(&PeerInfo::parse("lyon", "kiosk-1", "kiosk").expect("identity"))
            .expect("certificate");
        let pos_dir = root.join(format!("pos-{engine:?}"));
        let kiosk_dir = root.join(format!("kiosk-{engine:?}"));
        // The day's 10,000 orders, written before the node starts; the node then opens the
        // directory with the engine it holds (and so does the kiosk's, made the same way).
        for (dir, info) in [(&pos_dir, &pos_info)] {
            let store = Store::open_with(
                dir,
                StoreOptions {
                    identity: Some(info.clone()),
                    policy: Policy::default(),
                    engine,
                    ..StoreOptions::default()
                },
            )
            .expect("a store opens");
            for n in 0..ORDERS {
                store
                    .put(&day(), &key(n), order(n), Durability::Fast)
                    .expect("prefill");
            }
            store.flush().expect("flush");
        }
        drop(
            Store::open_with(
                &kiosk_dir,
                StoreOptions {
                    engine,
                    ..StoreOptions::default()
                },
            )
            .expect("the kiosk's store opens"),
        );
        rt.block_on(async {
            let pos = tokio::time::timeout(STEP, Node::start(config(&pos_dir, &pos_cert, vec![])))
                .await
                .expect("in time")
                .expect("the POS starts");
            let kiosk = tokio::time::timeout(
                STEP,
                Node::start(config(&kiosk_dir, &kiosk_cert, vec![pos.local_addr()])),
            )
            .await
            .expect("in time")
            .expect("the kiosk starts");
            // The kiosk catches up with the day before anything is timed.
            let want = {
                let mut h = pos.store().heads(&day()).expect("heads");
                h.sort();
                h
            };
            tokio::time::timeout(STEP, async {
                loop {
                    let mut h = kiosk.store().heads(&day()).unwrap_or_default();
                    h.sort();
                    if h == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("the kiosk catches up with 10,000 orders");
            Site {
                pos,
                kiosk,
                next: ORDERS,
                missed: 0,
            }
        })
    }

    fn write(&mut self, rt: &Runtime, durability: Durability) -> Duration {
        let n = self.next;
        self.next += 1;
        let doc = day();
        let k = key(n);
        let started = Instant::now();
        let (_, ack) = rt
            .block_on(
                self.pos
                    .transact(&doc, durability, |tx| tx.put(&k, order(n))),
            )
            .expect("the write is stored");
        let took = started.elapsed();
        if durability == Durability::Replicated && !matches!(&ack, Acknowledged::Site { .. }) {
            // The kiosk still works through a backlog (a loaded machine): counted, reported.
            self.missed += 1;
        }
        took
    }

    /// Writes/s of `threads` threads writing durably into the day's document at once.
    fn throughput(&mut self, threads: usize, per_thread: u64) -> f64 {
        let base = self.next;
        self.next += threads as u64 * per_thread;
        let store = self.pos.store().clone();
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads as u64 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        let n = base + t * per_thread + i;
                        store
                            .put(&day(), &key(n), order(n), Durability::Durable)
                            .expect("a durable write");
                    }
                });
            }
        });
        (threads as u64 * per_thread) as f64 / started.elapsed().as_secs_f64()
    }

    /// Waits until the kiosk holds everything the POS wrote, so that no backlog of one
    /// measurement weighs on the next.
    fn settle(&self, rt: &Runtime) {
        rt.block_on(async {
            let mut want = self.pos.store().heads(&day()).expect("heads");
            want.sort();
            let _ = tokio::time::timeout(STEP, async {
                loop {
                    let mut h = self.kiosk.store().heads(&day()).unwrap_or_default();
                    h.sort();
                    if h == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        })
    }

    fn shutdown(self, rt: &Runtime) {
        rt.block_on(async {
            let _ = self.kiosk.shutdown().await;
            let _ = self.pos.shutdown().await;
        });
    }
}

struct Figures {
    engine: StorageEngine,
    fsync: Vec<Duration>,
    durable: Vec<Duration>,
    replicated: Vec<Duration>,
    one_writer: f64,
    many_writers: f64,
    missed: u64,
}

fn run(
    c: &mut Criterion,
    rt: &Runtime,
    ca: &FleetCa,
    root: &Path,
    engine: StorageEngine,
) -> Figures {
    let samples: usize = std::env::var("REPLICATED_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut site = Site::start(rt, ca, root, engine);
    let mut floor = Floor::open(root);
    let mut f = Figures {
        engine,
        fsync: Vec::new(),
        durable: Vec::new(),
        replicated: Vec::new(),
        one_writer: 0.0,
        many_writers: 0.0,
        missed: 0,
    };
    // Interleaved, so that the load of the machine weighs on the three alike.
    for _ in 0..samples {
        f.fsync.push(floor.once());
        f.durable.push(site.write(rt, Durability::Durable));
        f.replicated.push(site.write(rt, Durability::Replicated));
    }
    let mut group = c.benchmark_group(format!("acknowledged_{engine:?}").to_lowercase());
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("fsync_100_bytes", |b| b.iter(|| floor.once()));
    group.bench_function("durable_via_node", |b| {
        b.iter(|| site.write(rt, Durability::Durable))
    });
    site.settle(rt);
    group.bench_function("replicated_via_node", |b| {
        b.iter(|| site.write(rt, Durability::Replicated))
    });
    group.finish();
    f.missed = site.missed;
    site.settle(rt);
    let per_thread = (samples as u64 / 2).max(20);
    f.one_writer = site.throughput(1, per_thread * WRITERS as u64 / 2);
    f.many_writers = site.throughput(WRITERS, per_thread);
    site.shutdown(rt);
    f
}

fn summary(all: &[Figures]) {
    println!("\n== acknowledgements through a Node with a peer, into a 10,000-order document ==");
    for f in all {
        let (fp50, fp99) = quantiles(&f.fsync);
        println!(
            "{:?}: fsync floor (100 B + sync_data) p50 {:.2} ms, p99 {:.2} ms ({} samples each, interleaved)",
            f.engine,
            ms(fp50),
            ms(fp99),
            f.fsync.len()
        );
        for (name, s) in [("durable", &f.durable), ("replicated", &f.replicated)] {
            let (p50, p99) = quantiles(s);
            println!(
                "  {name:<10} p50 {:.2} ms ({:.2}x fsync p50), p99 {:.2} ms ({:.2}x fsync p99)",
                ms(p50),
                p50.as_secs_f64() / fp50.as_secs_f64(),
                ms(p99),
                p99.as_secs_f64() / fp99.as_secs_f64()
            );
        }
        println!(
            "  replicated writes not acknowledged within the timeout: {}",
            f.missed
        );
        let ratio = f.many_writers / f.one_writer;
        println!(
            "  group commit: 1 writer {:.0} writes/s, {WRITERS} writers {:.0} writes/s: {ratio:.2}x (goal >= 4x: {})",
            f.one_writer,
            f.many_writers,
            if ratio >= 4.0 { "met" } else { "NOT met" }
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ca = FleetCa::generate("bench").expect("a fleet CA");
    let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("a temporary directory");
    let mut all = Vec::new();
    for engine in [StorageEngine::Sled, StorageEngine::Redb] {
        all.push(run(&mut c, &rt, &ca, dir.path(), engine));
    }
    c.final_summary();
    summary(&all);
}
