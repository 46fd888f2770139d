//! What the fan-in benches share (`fanin`, `cloud_pg`): sites of one POS each, connected
//! over QUIC (mutual TLS, loopback) to one or more in-process cloud peers, writing orders as
//! fast as they can; and the reference, the same orders written into local stores.
//!
//! Included with `#[path]` by each bench, so each uses what it needs of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use outpost_benches::{order, order_location};
use outpost_cloud::server::{Cloud, CloudConfig};
use outpost_core::{Durability, PeerId, PeerInfo, Store, StoreOptions};
use outpost_transport::{FleetCa, Node, NodeConfig};

/// The bound on every await.
pub(crate) const STEP: Duration = Duration::from_secs(120);
pub(crate) const CLOUD_PEER: &str = "cloud-1";

pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub(crate) fn cloud_peer() -> PeerId {
    CLOUD_PEER.parse().expect("the cloud's peer id is valid")
}

pub(crate) async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// The cloud's `outpost_changes_applied_total`.
pub(crate) fn changes_applied(cloud: &Cloud) -> u64 {
    cloud
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("outpost_changes_applied_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`; Linux); `pid` may be `self`.
pub(crate) fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Writes orders `0..orders` into `store`, each its own change.
pub(crate) fn write_orders(store: &Store, orders: u64) {
    for n in 0..orders {
        let (doc, path) = order_location(n);
        store
            .put(&doc, &path, order(n), Durability::Fast)
            .expect("write an order");
    }
}

/// Writes the cloud's CA, certificate and key into `dir` as `ca.pem`, `cert.pem` and
/// `key.pem` (the names `outpost_testbins::start_cloud_with` expects); returns their paths.
pub(crate) fn cloud_identity(dir: &Path, ca: &FleetCa) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("create the certificate directory");
    let info = PeerInfo::parse("fleet", CLOUD_PEER, "cloud").expect("valid cloud identity");
    let cert = ca.issue(&info).expect("issue the cloud certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.cert_pem()).expect("write the CA");
    std::fs::write(&paths.1, cert.cert_pem()).expect("write the cloud certificate");
    std::fs::write(&paths.2, cert.key_pem()).expect("write the cloud key");
    paths
}

/// An in-process cloud peer with its certificates and data in `dir`, on QUIC address
/// `listen` (port 0: any), on sled, or on PostgreSQL when `store` is a URL.
pub(crate) async fn start_cloud_on(
    dir: &Path,
    ca: &FleetCa,
    listen: SocketAddr,
    store: Option<&str>,
) -> Cloud {
    let (ca_path, cert_path, key_path) = cloud_identity(dir, ca);
    let mut config = CloudConfig::new(
        dir.join("data"),
        listen,
        localhost(),
        ca_path,
        cert_path,
        key_path,
    );
    config.store = store.map(str::to_string);
    within("cloud start", Cloud::start(config))
        .await
        .expect("the cloud starts on loopback")
}

/// [`start_cloud_on`] any port.
pub(crate) async fn start_cloud(dir: &Path, ca: &FleetCa, store: Option<&str>) -> Cloud {
    start_cloud_on(dir, ca, localhost(), store).await
}

/// A device of `site` named `pos-1`, knowing the cloud at `cloud`, its store in `dir`.
pub(crate) fn device(dir: &Path, ca: &FleetCa, site: &str, cloud: SocketAddr) -> NodeConfig {
    let info = PeerInfo::parse(site, "pos-1", "pos").expect("valid device identity");
    let cert = ca.issue(&info).expect("issue a device certificate");
    let mut config = NodeConfig::new(dir, cert);
    config.listen = localhost();
    config.static_peers = vec![cloud];
    // Measured writes only: no health reports in between.
    config.health_period = None;
    config
}

/// One POS per site, sites `<prefix>-000`, `<prefix>-001`, ...; site `i` knows only the
/// cloud `clouds[i % clouds.len()]`. Returns once every device is connected.
pub(crate) async fn start_sites(
    dir: &Path,
    ca: &FleetCa,
    prefix: &str,
    sites: u64,
    clouds: &[SocketAddr],
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..sites {
        let cloud = clouds[usize::try_from(i).expect("few sites") % clouds.len()];
        let config = device(
            &dir.join(format!("pos-{i}")),
            ca,
            &format!("{prefix}-{i:03}"),
            cloud,
        );
        nodes.push(
            within("node start", Node::start(config))
                .await
                .expect("node starts"),
        );
    }
    let cloud_peer = cloud_peer();
    for node in &nodes {
        within(
            "device connected to the cloud",
            node.wait_connected(&cloud_peer),
        )
        .await;
    }
    nodes
}

/// Changes of `node` the cloud has not acknowledged (on PostgreSQL: not committed).
pub(crate) async fn unacked(node: &Node) -> usize {
    node.status()
        .await
        .expect("a running node reports its status")
        .peer(&cloud_peer())
        .map(|p| p.they_lack())
        .unwrap_or(usize::MAX)
}

/// Waits until the cloud acknowledged every change of `node`.
pub(crate) async fn drained(node: &Node) {
    within("the cloud acknowledges every change", async {
        while unacked(node).await > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// How long one fan-in took.
pub(crate) struct FanIn {
    /// From the first write until the clouds applied every order (their
    /// `outpost_changes_applied_total` counters).
    pub(crate) applied: Duration,
    /// From the first write until every device was told the cloud has every order (on
    /// PostgreSQL: committed; on sled: flushed).
    pub(crate) acked: Duration,
}

/// One fan-in: `sites` fresh POS nodes (sites named after `round`), split between `clouds`
/// (site `i` on cloud `i % clouds.len()`), connect, then each writes `orders` orders.
pub(crate) async fn fan_in(
    clouds: &[&Cloud],
    ca: &FleetCa,
    round: u64,
    sites: u64,
    orders: u64,
) -> FanIn {
    let dir = tempfile::tempdir().expect("temporary directory");
    let addrs: Vec<SocketAddr> = clouds.iter().map(|c| c.quic_addr()).collect();
    let nodes = start_sites(dir.path(), ca, &format!("site-{round:04}"), sites, &addrs).await;
    let applied = || clouds.iter().map(|c| changes_applied(c)).sum::<u64>();
    let target = applied() + sites * orders;
    let started = Instant::now();
    let writers: Vec<_> = nodes
        .iter()
        .map(|node| {
            let store = node.store().clone();
            tokio::task::spawn_blocking(move || write_orders(&store, orders))
        })
        .collect();
    within("the cloud applies every order", async {
        while applied() < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let applied = started.elapsed();
    for w in writers {
        w.await.expect("writer finished");
    }
    // Once a device is drained it stays so (it writes nothing more): one after the other.
    for node in &nodes {
        drained(node).await;
    }
    let acked = started.elapsed();
    for node in nodes {
        within("node shutdown", node.shutdown())
            .await
            .expect("node shuts down");
    }
    FanIn { applied, acked }
}

/// The reference: the same orders into `sites` local stores, one thread each.
pub(crate) fn local(sites: u64, orders: u64) -> Duration {
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

pub(crate) fn median(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut v = samples.lock().expect("samples").clone();
    v.sort();
    v[v.len() / 2]
}
