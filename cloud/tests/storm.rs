//! A reconnect storm (issue 30): idle devices of many sites, in sync with the cloud, all
//! reconnect at once to a freshly restarted cloud (in-process, sled or redb as the default
//! engine, QUIC + mTLS on loopback). Bounds the time until every link is up and every
//! device is confirmed in sync again, and prints it with the process's memory.
//! `STORM_SITES` (default 25, so that CI's debug build stays well under a minute; 100 for
//! the figure in `benches/README.md`) sets the number of sites, two devices each.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_cloud::server::{Cloud, CloudConfig};
use outpost_core::{DocumentId, Durability, PeerId, PeerInfo, Timestamp};
use outpost_transport::{FleetCa, Node, NodeConfig};

const STEP: Duration = Duration::from_secs(60);

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn cloud_config(root: &std::path::Path, listen: SocketAddr) -> CloudConfig {
    let certs = root.join("certs");
    CloudConfig::new(
        root.join("cloud"),
        listen,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        certs.join("ca.pem"),
        certs.join("cloud.pem"),
        certs.join("cloud.key"),
    )
}

/// Whether `node` has a link to the cloud and the cloud is known to hold all it holds,
/// with a sync of every document after `since`.
async fn in_sync(node: &Node, cloud: &PeerId, since: Timestamp) -> bool {
    let Ok(status) = node.status().await else {
        return false;
    };
    status.peer(cloud).is_some_and(|p| {
        p.connected
            && !p.docs.is_empty()
            && p.docs
                .iter()
                .all(|d| d.they_lack == 0 && !d.we_lack && d.last_sync.is_some_and(|t| t >= since))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_devices_of_every_site_reconnect_to_a_restarted_cloud_at_once() {
    let sites: usize = std::env::var("STORM_SITES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25);
    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let cloud_cert = ca
        .issue(&PeerInfo::parse("acme", "cloud-1", "cloud").expect("id"))
        .expect("cloud cert");
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::write(certs.join("ca.pem"), ca.cert_pem()).expect("write");
    std::fs::write(certs.join("cloud.pem"), cloud_cert.cert_pem()).expect("write");
    std::fs::write(certs.join("cloud.key"), cloud_cert.key_pem()).expect("write");
    let cloud = tokio::time::timeout(STEP, Cloud::start(cloud_config(tmp.path(), localhost)))
        .await
        .expect("in time")
        .expect("the cloud starts");
    let addr = cloud.quic_addr();
    let cloud_id: PeerId = "cloud-1".parse().expect("id");
    let day: DocumentId = "orders/2026-12-07".parse().expect("doc");

    let started = Instant::now();
    let mut nodes = Vec::new();
    for s in 0..sites {
        for d in ["pos-1", "kiosk-1"] {
            let role = d.split('-').next().expect("a role prefix");
            let cert = ca
                .issue(&PeerInfo::parse(&format!("site{s}"), d, role).expect("id"))
                .expect("cert");
            let mut config = NodeConfig::new(tmp.path().join(format!("site{s}-{d}")), cert);
            config.health_period = None;
            config.listen = localhost;
            config.static_peers = vec![addr];
            config.discovery = false;
            let node = tokio::time::timeout(STEP, Node::start(config))
                .await
                .expect("in time")
                .expect("a device starts");
            if d == "pos-1" {
                node.store()
                    .put(
                        &day,
                        "/orders/o1",
                        serde_json::json!({"total_cents": 1250}),
                        Durability::Durable,
                    )
                    .expect("an order");
            }
            nodes.push(node);
        }
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        for n in &nodes {
            while !in_sync(n, &cloud_id, Timestamp(0)).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await
    .expect("every device syncs with the cloud first");
    println!(
        "storm: {} devices of {sites} sites started and in sync in {:.1} s",
        nodes.len(),
        started.elapsed().as_secs_f64()
    );

    // The restart: every link drops; the devices redial on their backoff.
    cloud.shutdown().await.expect("the cloud stops");
    let idle_rss = rss_kib("VmRSS:");
    let restarted = Instant::now();
    let since = Timestamp::now();
    let cloud = tokio::time::timeout(STEP, Cloud::start(cloud_config(tmp.path(), addr)))
        .await
        .expect("in time")
        .expect("the cloud restarts on its address");
    let start_ms = restarted.elapsed().as_secs_f64() * 1e3;
    let mut last = Duration::ZERO;
    tokio::time::timeout(Duration::from_secs(30), async {
        for n in &nodes {
            while !in_sync(n, &cloud_id, since).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            last = restarted.elapsed();
        }
    })
    .await
    .expect("every device is back in sync within 30 s");
    let peak = rss_kib("VmHWM:");
    println!(
        "storm: {} devices of {sites} sites reconnected and confirmed in sync {:.2} s after the \
         restart began (the cloud started in {start_ms:.0} ms); process RSS before {} MiB, peak \
         {} MiB (devices and cloud in one process)",
        nodes.len(),
        last.as_secs_f64(),
        idle_rss / 1024,
        peak / 1024
    );
    for n in nodes {
        n.shutdown().await.expect("a device stops");
    }
    // What the storm left is not this test's bound: a slow stop is printed, not failed.
    if let Err(e) = cloud.shutdown().await {
        println!("storm: the cloud's stop reported {e:#}");
    }
}
