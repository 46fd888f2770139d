//! Site health through sync, over real QUIC: a device (an in-process `Node`) that cannot
//! reach the cloud publishes its health locally; when the cloud comes up, that report (written
//! while offline) reaches it, and the cloud's overview and `/metrics` show the site.

use std::path::Path;
use std::time::Duration;

use outpost_cloud::server::{Cloud, CloudConfig};
use outpost_core::{DocumentId, Durability, Store, StoreOptions};
use outpost_testbins::*;
use outpost_transport::{DeviceCert, DeviceHealth, Node, NodeConfig, HEALTH_DOC};
use serde_json::json;

const SYNC: Duration = Duration::from_secs(40);

fn config(root: &Path, cert: &Path, listen: std::net::SocketAddr) -> CloudConfig {
    CloudConfig::new(
        root.join("cloud-data"),
        listen,
        "127.0.0.1:0".parse().expect("addr"),
        cert.join("ca.pem"),
        cert.join("cert.pem"),
        cert.join("key.pem"),
    )
}

fn metric(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_device_offline_reports_its_health_when_the_link_comes_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The cloud's address, not served yet: the device is offline.
    let cloud_addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let cert = DeviceCert::load(&pos_cert).expect("device certificate");
    let not_after = outpost_transport::not_after_ms(cert.cert_der()).expect("expiry");
    let mut node_config = NodeConfig::new(root.join("pos"), cert);
    node_config.listen = "127.0.0.1:0".parse().expect("addr");
    node_config.static_peers = vec![cloud_addr];
    let node = rt
        .block_on(Node::start(node_config))
        .expect("the device starts");
    let health: DocumentId = HEALTH_DOC.parse().expect("valid");
    // Published at start, locally, while no link is up.
    let offline: DeviceHealth = eventually("local health", SYNC, || {
        node.store()
            .get_serde(&health, "/devices/pos-1")
            .ok()
            .flatten()
    });
    assert_eq!(offline.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(offline.protocol, 3);
    assert_eq!(offline.cert_not_after_ms, not_after);
    assert!(offline.started_ms > 0 && offline.updated_ms >= offline.started_ms);
    assert!(offline.disk_bytes > 0);
    assert!(node.connected_peers().is_empty(), "offline");
    // Sales go on offline.
    node.store()
        .put(
            &"orders/2026-12-02".parse().expect("valid"),
            "/orders/A1",
            json!({"total": 950}),
            Durability::Durable,
        )
        .expect("an offline sale");
    std::thread::sleep(Duration::from_millis(300));

    // The cloud comes up; the device connects by itself (redial with backoff).
    let cloud = rt
        .block_on(Cloud::start(config(root, &cloud_cert, cloud_addr)))
        .expect("cloud starts");
    let came_up = outpost_core::Timestamp::now().as_millis();
    let site = eventually("the cloud sees the device's health", SYNC, || {
        cloud
            .site_overview()
            .into_iter()
            .find(|s| s.site.as_str() == "paris" && s.health.contains_key("pos-1"))
    });
    let reported = &site.health["pos-1"];
    // The report written while offline arrived (the next periodic one is 60 s away).
    assert_eq!(reported.started_ms, offline.started_ms);
    assert!(
        reported.updated_ms < came_up,
        "a report from before the link was up: {reported:?}"
    );
    assert_eq!(site.cert_not_after_ms, Some(not_after));
    assert!(site.online && site.connected == 1, "{site:?}");
    assert!(site.last_seen_ms >= Some(came_up), "{site:?}");
    let text = eventually("per-site gauges", SYNC, || {
        let text = cloud.metrics_text();
        (metric(&text, "outpost_site_devices{site=\"paris\"}") >= Some(1)).then_some(text)
    });
    let seen = metric(&text, "outpost_site_last_seen_seconds{site=\"paris\"}").expect("gauge");
    assert!(seen >= came_up / 1000, "{text}");
    rt.block_on(node.shutdown()).expect("device stops");
    rt.block_on(cloud.shutdown()).expect("cloud stops");
}

/// The audit trail reaches the cloud's API through health: a device's report carries the
/// newest lines of its trail, here the link it opened to the cloud.
#[test]
fn a_devices_recent_audit_reaches_the_cloud_through_health() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cloud_addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let cloud = rt
        .block_on(Cloud::start(config(root, &cloud_cert, cloud_addr)))
        .expect("cloud starts");
    let cert = DeviceCert::load(&pos_cert).expect("device certificate");
    let mut node_config = NodeConfig::new(root.join("pos"), cert);
    node_config.listen = "127.0.0.1:0".parse().expect("addr");
    node_config.static_peers = vec![cloud_addr];
    // Reports every 300 ms, so the one after the link came up follows at once.
    node_config.health_period = Some(Duration::from_millis(300));
    let node = rt
        .block_on(Node::start(node_config))
        .expect("the device starts");
    let lines = eventually(
        "the device's audit lines in the cloud's overview",
        SYNC,
        || {
            let site = cloud
                .site_overview()
                .into_iter()
                .find(|s| s.site.as_str() == "paris")?;
            let lines = site.health.get("pos-1")?.recent_audit.clone();
            lines
                .iter()
                .any(|l| l.contains("link_opened peer=cloud-1") && l.contains("dialed=us"))
                .then_some(lines)
        },
    );
    println!("recent_audit at the cloud: {lines:#?}");
    assert!(lines.len() <= outpost_transport::MAX_RECENT_AUDIT);
    assert!(
        lines.iter().all(|l| !l.contains("acknowledged")),
        "{lines:?}"
    );
    rt.block_on(node.shutdown()).expect("device stops");
    rt.block_on(cloud.shutdown()).expect("cloud stops");
}

/// What a day of health costs: an idle device refreshes `updated_ms` every 15 minutes (96
/// writes a day); a busy one also writes its backlog. Prints the figures; bounds them.
#[test]
fn a_day_of_health_stays_small() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(tmp.path(), StoreOptions::default()).expect("store");
    let doc: DocumentId = HEALTH_DOC.parse().expect("valid");
    let mut h = DeviceHealth {
        version: "0.1.0".into(),
        protocol: 3,
        started_ms: 1_796_126_400_000,
        updated_ms: 1_796_126_400_000,
        disk_bytes: 10 << 20,
        backlog: 0,
        last_errors: Vec::new(),
        cert_not_after_ms: 1_800_000_000_000,
        recent_audit: Vec::new(),
    };
    store
        .put_serde(&doc, "/devices/pos-1", &h, Durability::Fast)
        .expect("first report");
    let first = store.document_bytes(&doc).expect("bytes");
    for i in 0..96u64 {
        h.updated_ms += 15 * 60 * 1000;
        store
            .transact(&doc, Durability::Fast, |tx| {
                tx.put("/devices/pos-1/updated_ms", json!(h.updated_ms))?;
                if i % 8 == 0 {
                    h.backlog = i;
                    tx.put("/devices/pos-1/backlog", json!(i))?;
                }
                Ok(())
            })
            .expect("a heartbeat");
    }
    store.compact(&doc).expect("compact");
    let day = store.document_bytes(&doc).expect("bytes");
    let per_write = (day - first) / 96;
    println!("health: first report {first} bytes; after a day (96 heartbeats, 12 backlog changes), compacted: {day} bytes ({per_write} bytes per write)");
    assert!(per_write < 32, "{per_write} bytes per heartbeat");
    let back: DeviceHealth = store
        .get_serde(&doc, "/devices/pos-1")
        .expect("read")
        .expect("there");
    assert_eq!(back, h);
}
