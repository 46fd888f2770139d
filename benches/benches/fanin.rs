//! Cloud fan-in: `OUTPOST_FANIN_SITES` sites (default 8), each with one POS [`Node`]
//! connected over QUIC (mutual TLS, loopback) to one in-process cloud peer
//! ([`Cloud`]). Every POS writes `OUTPOST_FANIN_ORDERS` orders (default 200, one change
//! each, `Durability::Fast`) as fast as it can; a fan-in is the time from the first write
//! until the cloud's `outpost_changes_applied_total` counter has grown by every order.
//!
//! Reference in the same run (`local`): the same orders written into as many local stores,
//! one thread each, with no network: the write cost alone.
//!
//! Each criterion sample is one fan-in (fresh sites and devices every time). A summary line
//! with the medians, their ratio and the peak RSS of the process (VmHWM) is printed at the
//! end.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use outpost_benches::{order, order_location};
use outpost_cloud::server::{Cloud, CloudConfig};
use outpost_core::{Durability, PeerId, PeerInfo, Store, StoreOptions};
use outpost_transport::{FleetCa, Node, NodeConfig};
use tokio::runtime::Runtime;

/// The bound on every await.
const STEP: Duration = Duration::from_secs(60);
const CLOUD_PEER: &str = "cloud-1";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// The cloud's `outpost_changes_applied_total`.
fn changes_applied(cloud: &Cloud) -> u64 {
    cloud
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("outpost_changes_applied_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident set size of this process in KiB (VmHWM, Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Writes orders `0..orders` into `store`, each its own change.
fn write_orders(store: &Store, orders: u64) {
    for n in 0..orders {
        let (doc, path) = order_location(n);
        store
            .put(&doc, &path, order(n), Durability::Fast)
            .expect("write an order");
    }
}

/// The cloud peer, its certificates written to `dir`.
async fn start_cloud(dir: &Path, ca: &FleetCa) -> Cloud {
    let info = PeerInfo::parse("fleet", CLOUD_PEER, "cloud").expect("valid cloud identity");
    let cert = ca.issue(&info).expect("issue the cloud certificate");
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("cloud.pem"),
        dir.join("cloud.key"),
    );
    std::fs::write(&ca_path, ca.cert_pem()).expect("write the CA");
    std::fs::write(&cert_path, cert.cert_pem()).expect("write the cloud certificate");
    std::fs::write(&key_path, cert.key_pem()).expect("write the cloud key");
    let config = CloudConfig::new(
        dir.join("data"),
        localhost(),
        localhost(),
        ca_path,
        cert_path,
        key_path,
    );
    within("cloud start", Cloud::start(config))
        .await
        .expect("the cloud starts on loopback")
}

/// One fan-in: `sites` fresh POS nodes (sites named after `round`) connect to the cloud,
/// then each writes `orders` orders; returns the time until the cloud applied them all.
async fn fan_in(cloud: &Cloud, ca: &FleetCa, round: u64, sites: u64, orders: u64) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cloud_peer: PeerId = CLOUD_PEER.parse().expect("valid peer id");
    let mut nodes = Vec::new();
    for i in 0..sites {
        let info = PeerInfo::parse(&format!("site-{round:04}-{i:03}"), "pos-1", "pos")
            .expect("valid device identity");
        let cert = ca.issue(&info).expect("issue a device certificate");
        let mut config = NodeConfig::new(dir.path().join(format!("pos-{i}")), cert);
        config.listen = localhost();
        config.static_peers = vec![cloud.quic_addr()];
        // Measured writes only: no health reports in between.
        config.health_period = None;
        nodes.push(
            within("node start", Node::start(config))
                .await
                .expect("node starts"),
        );
    }
    for node in &nodes {
        within(
            "device connected to the cloud",
            node.wait_connected(&cloud_peer),
        )
        .await;
    }
    let target = changes_applied(cloud) + sites * orders;
    let started = Instant::now();
    let writers: Vec<_> = nodes
        .iter()
        .map(|node| {
            let store = node.store().clone();
            tokio::task::spawn_blocking(move || write_orders(&store, orders))
        })
        .collect();
    within("the cloud applies every order", async {
        while changes_applied(cloud) < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let elapsed = started.elapsed();
    for w in writers {
        w.await.expect("writer finished");
    }
    for node in nodes {
        within("node shutdown", node.shutdown())
            .await
            .expect("node shuts down");
    }
    elapsed
}

/// The reference: the same orders into `sites` local stores, one thread each.
fn local(sites: u64, orders: u64) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stores: Vec<Store> = (0..sites)
        .map(|i| {
            let me = PeerInfo::parse(&format!("site-{i:03}"), "pos-1", "pos")
                .expect("valid device identity");
            Store::open_with(
                dir.path().join(format!("pos-{i}")),
                StoreOptions {
                    identity: Some(me),
                    ..StoreOptions::default()
                },
            )
            .expect("open a local store")
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for store in &stores {
            s.spawn(move || write_orders(store, orders));
        }
    });
    started.elapsed()
}

fn median(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut v = samples.lock().expect("samples").clone();
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let sites = env_or("OUTPOST_FANIN_SITES", 8).max(1);
    let orders = env_or("OUTPOST_FANIN_ORDERS", 200).max(1);
    let rt = Runtime::new().expect("tokio runtime");
    let cloud_dir = tempfile::tempdir().expect("temporary directory");
    let ca = FleetCa::generate("fanin").expect("generate a fleet CA");
    let cloud = rt.block_on(start_cloud(cloud_dir.path(), &ca));

    let cloud_times = Mutex::new(Vec::new());
    let local_times = Mutex::new(Vec::new());
    let mut round = 0u64;
    let mut group = c.benchmark_group(format!("fanin_{sites}x{orders}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("cloud", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let t = rt.block_on(fan_in(&cloud, &ca, round, sites, orders));
                cloud_times.lock().expect("samples").push(t);
                total += t;
            }
            total
        })
    });
    group.bench_function("local", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = local(sites, orders);
                local_times.lock().expect("samples").push(t);
                total += t;
            }
            total
        })
    });
    group.finish();
    rt.block_on(cloud.shutdown()).expect("the cloud shuts down");

    let all = (sites * orders) as f64;
    let through_cloud = all / median(&cloud_times).as_secs_f64();
    let written_locally = all / median(&local_times).as_secs_f64();
    println!(
        "fanin: {sites} sites x {orders} orders: {through_cloud:.0} orders/s through the cloud, \
         {written_locally:.0} orders/s written locally (ratio {:.2}), peak RSS {:.0} MiB",
        written_locally / through_cloud,
        peak_rss_kib() as f64 / 1024.0
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
