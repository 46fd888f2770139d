//! A full disk under the cloud peer: it acknowledges nothing it could not write, the device
//! keeps its backlog, and once space is back nothing is lost.
//!
//! The cloud's data directory is a size-limited tmpfs the test mounts itself, which needs
//! root (CI runs as root; elsewhere the test says it cannot run, and fails under `CI`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use outpost_cloud::server::{Cloud, CloudConfig};
use outpost_core::{DocumentId, Durability, PeerId, PeerInfo};
use outpost_testkit::Tmpfs;
use outpost_transport::{FleetCa, Node, NodeConfig};
use serde_json::json;

const STEP: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn start_cloud(data: &Path, certs: &Path, listen: SocketAddr) -> Cloud {
    let mut config = CloudConfig::new(
        data.to_path_buf(),
        listen,
        localhost(),
        certs.join("ca.pem"),
        certs.join("cloud.pem"),
        certs.join("cloud.key"),
    );
    config.cache_bytes = 4 * 1024 * 1024;
    within("cloud start", Cloud::start(config))
        .await
        .expect("the cloud starts")
}

fn storage_errors(cloud: &Cloud) -> u64 {
    cloud
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("outpost_storage_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn unsynced_with(node: &Node, peer: &PeerId) -> usize {
    node.status()
        .await
        .expect("status")
        .peer(peer)
        .map(|p| p.they_lack())
        .unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_cloud_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("cloud-disk"), 48) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let ca = FleetCa::generate("acme").expect("ca");
    let cloud_cert = ca
        .issue(&PeerInfo::parse("acme", "cloud-1", "cloud").expect("id"))
        .expect("cloud cert");
    std::fs::write(certs.join("ca.pem"), ca.cert_pem()).expect("write");
    std::fs::write(certs.join("cloud.pem"), cloud_cert.cert_pem()).expect("write");
    std::fs::write(certs.join("cloud.key"), cloud_cert.key_pem()).expect("write");
    let data = fs.path().join("data");
    let cloud = start_cloud(&data, &certs, localhost()).await;
    let cloud_addr = cloud.quic_addr();
    let cloud_id: PeerId = "cloud-1".parse().expect("id");

    let device = |name: &str, role: &str| {
        let cert = ca
            .issue(&PeerInfo::parse("lyon", name, role).expect("id"))
            .expect("cert");
        let mut config = NodeConfig::new(tmp.path().join(name), cert);
        // Counts documents: no health reports.
        config.health_period = None;
        config.listen = localhost();
        config.static_peers = vec![cloud_addr];
        config
    };
    let pos = within("pos start", Node::start(device("pos-1", "pos")))
        .await
        .expect("pos starts");
    within("connected", pos.wait_connected(&cloud_id)).await;
    let orders: DocumentId = "orders/2026-12-01".parse().expect("doc");
    let write = |from: usize, to: usize| {
        for i in from..to {
            pos.store()
                .put(
                    &orders,
                    &format!("/o-{i:04}"),
                    json!({"status": "paid", "items": [{"sku": "burger", "qty": 2}], "note": "x".repeat(200)}),
                    Durability::Durable,
                )
                .expect("the device writes locally whatever the cloud's disk");
        }
    };
    write(0, 20);
    within("first orders in the cloud", async {
        while unsynced_with(&pos, &cloud_id).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Fill the cloud's disk, leaving almost nothing.
    let filler = fs.path().join("filler");
    let free = fs.free_bytes();
    let _ = std::fs::write(&filler, vec![0u8; free.saturating_sub(64 * 1024) as usize]);
    println!(
        "disk full: {} KiB left under the cloud",
        fs.free_bytes() / 1024
    );
    write(20, 400);
    // The cloud cannot store them: it says so, and the device keeps its backlog.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let errors = storage_errors(&cloud);
    let backlog = unsynced_with(&pos, &cloud_id).await;
    println!("disk full: cloud storage errors {errors}, device backlog {backlog} changes");
    assert!(
        backlog > 0,
        "the device must keep what the cloud could not store"
    );

    // Space comes back. Whatever sled made of the failed writes, a restart of the cloud
    // (what an operator does after a full disk) must find everything it acknowledged, and
    // the device's backlog drains.
    std::fs::remove_file(&filler).expect("free the space");
    // sled keeps its first I/O error: the shutdown reports it rather than claim a clean
    // flush, and the restart recovers from sled's log.
    if let Err(e) = within("cloud shutdown", cloud.shutdown()).await {
        println!("disk full: the cloud's shutdown reported: {e:#}");
    }
    let cloud = start_cloud(&data, &certs, cloud_addr).await;
    within("backlog drains once space is back", async {
        while unsynced_with(&pos, &cloud_id).await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // A new kitchen that only ever talks to the cloud gets every order: nothing was lost.
    let kitchen = within("kitchen start", Node::start(device("kitchen-1", "kitchen")))
        .await
        .expect("kitchen starts");
    within("every order reaches the kitchen through the cloud", async {
        loop {
            let n = kitchen
                .store()
                .get(&orders, "")
                .ok()
                .flatten()
                // The orders written above (the day also holds its genesis's `/orders`).
                .and_then(|v| {
                    v.as_object()
                        .map(|o| o.keys().filter(|k| k.starts_with("o-")).count())
                })
                .unwrap_or(0);
            if n == 400 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    println!("disk full: all 400 orders at the cloud after space came back ({errors} storage errors while full)");
    for node in [kitchen, pos] {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
    within("cloud shutdown", cloud.shutdown())
        .await
        .expect("shutdown");
}
