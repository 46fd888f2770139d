//! Bounded devices with the real binaries over QUIC on loopback (issue 15): the cloud erases a
//! partition fleet-wide and devices follow, stored bytes per site in `/metrics`, and
//! `outpost-cloud backup` / `restore`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_testbins::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn cloud_cmd(data: &Path, cert: &Path) -> Command {
    let mut cmd = Command::new(cloud_bin());
    cmd.args(["--data", p(data)])
        .args(["--ca", p(&cert.join("ca.pem"))])
        .args(["--cert", p(&cert.join("cert.pem"))])
        .args(["--key", p(&cert.join("key.pem"))])
        .env_remove("OUTPOST_DATA")
        .env("RUST_LOG", "info");
    cmd
}

fn start_cloud(data: &Path, cert: &Path, port: u16) -> (Proc, SocketAddr, SocketAddr) {
    let mut cmd = cloud_cmd(data, cert);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", "127.0.0.1:0"]);
    let cloud = Proc::spawn("cloud", cmd);
    let (quic, http) = cloud_addresses(&cloud);
    (cloud, quic, http)
}

fn admin(data: &Path, cert: &Path, args: &[&str]) -> Outcome {
    let mut cmd = cloud_cmd(data, cert);
    cmd.args(args);
    run_with(cmd, COMMAND_TIMEOUT)
}

const ERASED: &str = "orders/2026-11-03";
const KEPT: &str = "orders/2026-11-04";
const ERASED_LIVE: &str = "orders/2026-11-05";

fn has(dir: &Path, doc: &str, path: &str) -> bool {
    on(dir, &["get", doc, path]).ok()
}

#[test]
fn an_erased_partition_leaves_every_device_and_is_refused_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos1_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let pos2_cert = issue(&ca, root, "paris", "pos-2", "pos");
    let (data, d1, d2) = (root.join("cloud"), root.join("pos-1"), root.join("pos-2"));
    let wait = Duration::from_secs(60);
    let port = free_udp_port();

    let (mut cloud, quic, http) = start_cloud(&data, &cloud_cert, port);
    let (mut pos1, _) = serve("pos-1", &d1, &pos1_cert, 0, &[quic]);
    let (mut pos2, _) = serve("pos-2", &d2, &pos2_cert, 0, &[quic]);
    for i in 0..10 {
        for doc in [ERASED, KEPT, ERASED_LIVE] {
            on(
                &d1,
                &["put", doc, &format!("/K-{i}"), r#"{"customer": "Ada"}"#],
            )
            .expect_ok();
        }
    }
    eventually("pos-2 has both days through the cloud", wait, || {
        (has(&d2, ERASED, "/K-9") && has(&d2, KEPT, "/K-9")).then_some(())
    });
    let bytes = eventually("the cloud reports the site's stored bytes", wait, || {
        let (_, body) = http_get(http, "/metrics");
        metric(&body, "outpost_site_stored_bytes{site=\"paris\"}").filter(|b| *b > 0)
    });
    println!("metrics: outpost_site_stored_bytes{{site=\"paris\"}} {bytes}");

    // A running cloud's data directory cannot be opened by a second process.
    admin(&data, &cloud_cert, &["backup", "--out", p(&root.join("x"))]).expect_err("in use");

    // pos-2 is away; the cloud is stopped, erases the day, and starts again.
    pos2.terminate();
    cloud.terminate();
    let out = admin(&data, &cloud_cert, &["erase", ERASED]);
    println!("erase: {}", out.expect_ok().trim());
    let (mut cloud, _, http) = start_cloud(&data, &cloud_cert, port);
    eventually("pos-1 deletes the erased day", wait, || {
        (!has(&d1, ERASED, "")).then_some(())
    });
    on(&d1, &["put", ERASED, "/K-99", "{}"]).expect_err("was erased");
    assert!(has(&d1, KEPT, "/K-9"), "the other day stays");

    // pos-2 wrote to the day while away; the cloud refuses it, pos-2 then deletes it.
    on(&d2, &["put", ERASED, "/K-50", r#"{"customer": "Ada"}"#]).expect_ok();
    let (mut pos2, _) = serve("pos-2", &d2, &pos2_cert, 0, &[quic]);
    eventually("pos-2 deletes the erased day", wait, || {
        (!has(&d2, ERASED, "")).then_some(())
    });
    assert!(has(&d2, KEPT, "/K-9"));
    let (_, body) = http_get(http, "/metrics");
    println!(
        "metrics: outpost_site_changes_refused_total{{site=\"paris\"}} {:?}",
        metric(&body, "outpost_site_changes_refused_total{site=\"paris\"}")
    );

    // The running cloud erases another day through its control socket (no certificate
    // needed); both connected devices delete it at once.
    let mut cmd = Command::new(cloud_bin());
    cmd.args(["--data", p(&data), "erase", ERASED_LIVE, "--site", "paris"])
        .env_remove("OUTPOST_DATA");
    let out = run_with(cmd, COMMAND_TIMEOUT);
    println!("erase on the running cloud: {}", out.expect_ok().trim());
    assert!(out.stdout.contains("now if connected"), "{}", out.stdout);
    for d in [&d1, &d2] {
        eventually("the connected devices delete the day", wait, || {
            (!has(d, ERASED_LIVE, "")).then_some(())
        });
    }
    pos1.terminate();
    pos2.terminate();
    cloud.terminate();

    // The cloud's backup holds what it keeps: the kept day and the erasure list.
    let backup = root.join("cloud.backup");
    let out = admin(&data, &cloud_cert, &["backup", "--out", p(&backup)]);
    println!("cloud backup: {}", out.expect_ok().trim());
    assert!(
        out.stdout.contains("1 sites, 2 documents"),
        "{}",
        out.stdout
    );
    admin(&data, &cloud_cert, &["restore", "--from", p(&backup)]).expect_err("not empty");
    let restored = root.join("cloud-restored");
    let out = admin(&restored, &cloud_cert, &["restore", "--from", p(&backup)]);
    println!("cloud restore: {}", out.expect_ok().trim());
    assert!(
        out.stdout.contains("1 sites, 2 documents"),
        "{}",
        out.stdout
    );
    // A device's backup is not a cloud's.
    let dev = root.join("pos-1.backup");
    on(&d1, &["backup", "--out", p(&dev)]).expect_ok();
    admin(
        &root.join("cloud-3"),
        &cloud_cert,
        &["restore", "--from", p(&dev)],
    )
    .expect_err("not a cloud site");
    on(&root.join("pos-3"), &["restore", "--from", p(&backup)]).expect_err("outpost-cloud restore");
}

/// `Cloud::erase` on a running cloud: a connected device deletes the day at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cloud_erases_and_connected_devices_follow() {
    use outpost_cloud::server::{Cloud, CloudConfig};
    use outpost_core::{DocumentId, Durability, PeerId, PeerInfo, SiteId};
    use outpost_transport::{FleetCa, Node, NodeConfig};

    let step = Duration::from_secs(60);
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
    let config = CloudConfig::new(
        tmp.path().join("cloud"),
        localhost,
        localhost,
        certs.join("ca.pem"),
        certs.join("cloud.pem"),
        certs.join("cloud.key"),
    );
    let cloud = tokio::time::timeout(step, Cloud::start(config))
        .await
        .expect("in time")
        .expect("the cloud starts");
    let cert = ca
        .issue(&PeerInfo::parse("lyon", "pos-1", "pos").expect("id"))
        .expect("cert");
    let mut node_config = NodeConfig::new(tmp.path().join("pos-1"), cert);
    // Counts documents: no health reports.
    node_config.health_period = None;
    node_config.listen = localhost;
    node_config.static_peers = vec![cloud.quic_addr()];
    let pos = tokio::time::timeout(step, Node::start(node_config))
        .await
        .expect("in time")
        .expect("the pos starts");
    let cloud_id: PeerId = "cloud-1".parse().expect("id");
    tokio::time::timeout(step, pos.wait_connected(&cloud_id))
        .await
        .expect("connected in time");
    let day: DocumentId = ERASED.parse().expect("doc");
    for i in 0..5 {
        pos.store()
            .put(
                &day,
                &format!("/K-{i}"),
                serde_json::json!({"customer": "Ada"}),
                Durability::Durable,
            )
            .expect("write");
    }
    let site: SiteId = "lyon".parse().expect("site");
    // Until the cloud holds the day, erasing it there would only tombstone it.
    let held = tokio::time::timeout(step, async {
        loop {
            let synced = pos
                .status()
                .await
                .expect("status")
                .peer(&cloud_id)
                .is_some_and(|p| p.they_lack() == 0 && !p.docs.is_empty());
            if synced {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cloud.erase(&site, &day).await.expect("erase")
    })
    .await
    .expect("the cloud holds the day in time");
    assert!(held, "the cloud held the day");
    tokio::time::timeout(step, async {
        while !pos.store().is_erased(&day) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the connected pos deletes the day in time");
    assert!(!pos.store().has_document(&day).expect("read"));
    println!("running cloud: {day} erased on the connected pos");
    pos.shutdown().await.expect("pos stops");
    cloud.shutdown().await.expect("cloud stops");
}
