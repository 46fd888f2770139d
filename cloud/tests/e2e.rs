//! End to end over QUIC on 127.0.0.1 with the real binaries: a cloud peer, two devices of
//! one site that cannot reach each other, and a device of another site. Writes cross over
//! through the cloud, the other site sees nothing, `/metrics` reflects the traffic, and a
//! SIGTERM and restart of the cloud loses nothing and resumes where it left off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_testbins::*;
use serde_json::json;

const SYNC: Duration = Duration::from_secs(40);

struct CloudFiles {
    cert: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

/// Starts the cloud with some settings from a config file, some from the environment and
/// the addresses as flags; returns it with its QUIC and HTTP addresses.
fn start_cloud(files: &CloudFiles, quic: &str, http: &str) -> (Proc, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(cloud_bin());
    cmd.args(["--config", files.config.to_str().expect("utf-8")])
        .args(["--listen", quic, "--http", http])
        .env("OUTPOST_DATA", &files.data)
        .env("OUTPOST_KEY", files.cert.join("key.pem"))
        .env("RUST_LOG", "info");
    let cloud = Proc::spawn("cloud", cmd);
    let (quic, http) = cloud_addresses(&cloud);
    (cloud, quic, http)
}

fn get(dir: &Path, doc: &str, path: &str) -> Option<serde_json::Value> {
    let out = on(dir, &["get", doc, path]);
    out.ok().then(|| out.json())
}

fn metrics(http: SocketAddr) -> String {
    let (status, body) = http_get(http, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn sites_sync_through_the_cloud_apart_and_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let kiosk_cert = issue(&ca, root, "paris", "kiosk-1", "kiosk");
    let pos2_cert = issue(&ca, root, "paris", "pos-2", "pos");
    let lyon_cert = issue(&ca, root, "lyon", "pos-1", "pos");
    let files = CloudFiles {
        config: root.join("cloud.toml"),
        data: root.join("cloud-data"),
        cert: cloud_cert.clone(),
    };
    std::fs::write(
        &files.config,
        format!(
            "ca = {:?}\ncert = {:?}\nidle_secs = 30\n",
            cloud_cert.join("ca.pem"),
            cloud_cert.join("cert.pem")
        ),
    )
    .expect("config");

    let (mut cloud, quic, http) = start_cloud(&files, "127.0.0.1:0", "127.0.0.1:0");
    assert_eq!(http_get(http, "/health"), (200, "ok\n".to_string()));
    assert_eq!(http_get(http, "/nope").0, 404);

    // Devices dial only the cloud: the two devices of paris cannot reach each other.
    let (pos_d, kiosk_d, lyon_d) = (root.join("pos"), root.join("kiosk"), root.join("lyon"));
    let (pos, _) = serve("paris/pos-1", &pos_d, &pos_cert, 0, &[quic]);
    let (kiosk, _) = serve("paris/kiosk-1", &kiosk_d, &kiosk_cert, 0, &[quic]);
    let (lyon, _) = serve("lyon/pos-1", &lyon_d, &lyon_cert, 0, &[quic]);
    eventually("3 devices connected", SYNC, || {
        (metric(&metrics(http), "outpost_connected_peers") == Some(3)).then_some(())
    });

    on(
        &pos_d,
        &[
            "put",
            "menu",
            "/items/burger",
            r#"{"price": 950, "available": true}"#,
        ],
    )
    .expect_ok();
    on(&pos_d, &["incr", "stock", "/burger", "20"]).expect_ok();
    on(
        &kiosk_d,
        &[
            "put",
            "orders/2026-11-27",
            "/k1-0001",
            r#"{"items": ["burger"], "total": 950}"#,
        ],
    )
    .expect_ok();
    on(&kiosk_d, &["incr", "stock", "/burger", "-1"]).expect_ok();
    on(
        &lyon_d,
        &["put", "menu", "/items/quiche", r#"{"price": 700}"#],
    )
    .expect_ok();

    // Writes cross over through the cloud.
    eventually("the kiosk sees the menu", SYNC, || {
        (get(&kiosk_d, "menu", "/items/burger/price") == Some(json!(950))).then_some(())
    });
    eventually("the POS sees the kiosk's order", SYNC, || {
        (get(&pos_d, "orders/2026-11-27", "/k1-0001/total") == Some(json!(950))).then_some(())
    });
    eventually("both stock counts merged", SYNC, || {
        (get(&pos_d, "stock", "/burger") == Some(json!(19))
            && get(&kiosk_d, "stock", "/burger") == Some(json!(19)))
        .then_some(())
    });
    // The other site sees nothing of paris, and paris nothing of lyon.
    assert_eq!(
        on(&lyon_d, &["get", "menu"]).json(),
        json!({"items": {"quiche": {"price": 700}}})
    );
    on(&lyon_d, &["get", "orders/2026-11-27"]).expect_err("unknown document");
    on(&lyon_d, &["get", "stock"]).expect_err("unknown document");
    assert_eq!(get(&pos_d, "menu", "/items/quiche"), None);
    let lyon_status = on(&lyon_d, &["status", "--json"]).json();
    let lyon_docs: Vec<_> = lyon_status["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["doc"].clone())
        .collect();
    assert_eq!(lyon_docs, vec![json!("menu")]);

    // A kiosk may not write the menu: refused locally, and never relayed.
    on(&kiosk_d, &["put", "menu", "/items/burger/price", "1"]).expect_err("may not write");

    // /metrics reflects the traffic.
    let text = eventually("metrics settle", SYNC, || {
        let t = metrics(http);
        (metric(&t, "outpost_site_backlog_changes{site=\"paris\"}") == Some(0)
            // Five writes, and the genesis of the day (its `/orders`, made with the order).
            && metric(&t, "outpost_changes_applied_total") == Some(6))
        .then_some(t)
    });
    assert_eq!(metric(&text, "outpost_connected_peers"), Some(3));
    assert_eq!(
        metric(&text, "outpost_site_connected_peers{site=\"paris\"}"),
        Some(2)
    );
    assert_eq!(
        metric(&text, "outpost_site_connected_peers{site=\"lyon\"}"),
        Some(1)
    );
    assert_eq!(
        metric(&text, "outpost_site_changes_applied_total{site=\"paris\"}"),
        Some(5)
    );
    assert_eq!(
        metric(&text, "outpost_site_changes_applied_total{site=\"lyon\"}"),
        Some(1)
    );
    assert_eq!(metric(&text, "outpost_changes_refused_total"), Some(0));
    assert_eq!(metric(&text, "outpost_sync_errors_total"), Some(0));
    assert_eq!(metric(&text, "outpost_sites_loaded"), Some(2));
    // Three at least (a device may have redialed once under load).
    assert!(metric(&text, "outpost_connections_accepted_total").unwrap_or(0) >= 3);
    assert!(metric(&text, "outpost_bytes_in_total").unwrap_or(0) > 0);
    assert!(metric(&text, "outpost_bytes_out_total").unwrap_or(0) > 0);
    assert!(text.contains("# TYPE outpost_bytes_in_total counter"));

    // SIGTERM: the cloud stops cleanly with exit 0.
    cloud.terminate();
    assert!(
        cloud
            .output()
            .iter()
            .any(|l| l.contains("outpost-cloud stopped")),
        "{:?}",
        cloud.output()
    );
    // While it is down, the POS keeps working and the kiosk does not get the change.
    on(&pos_d, &["put", "menu", "/items/burger/price", "990"]).expect_ok();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        get(&kiosk_d, "menu", "/items/burger/price"),
        Some(json!(950))
    );

    // Restart on the same addresses: devices reconnect and only the new change travels.
    let (cloud, quic2, http2) = start_cloud(&files, &quic.to_string(), &http.to_string());
    assert_eq!((quic2, http2), (quic, http));
    eventually(
        "the kiosk gets the change made while the cloud was down",
        SYNC,
        || (get(&kiosk_d, "menu", "/items/burger/price") == Some(json!(990))).then_some(()),
    );
    let text = eventually("3 devices reconnected", SYNC, || {
        let t = metrics(http);
        (metric(&t, "outpost_connected_peers") == Some(3)
            && metric(&t, "outpost_site_backlog_changes{site=\"paris\"}") == Some(0))
        .then_some(t)
    });
    // Resumed where it left off: the cloud applied the one new change, not the history.
    assert_eq!(
        metric(&text, "outpost_changes_applied_total"),
        Some(1),
        "{text}"
    );

    // Nothing was lost: a new device of paris gets everything from the cloud alone.
    let pos2_d = root.join("pos2");
    let (_pos2, _) = serve("paris/pos-2", &pos2_d, &pos2_cert, 0, &[quic]);
    eventually("a new device receives the site's documents", SYNC, || {
        (get(&pos2_d, "menu", "/items/burger/price") == Some(json!(990))
            && get(&pos2_d, "orders/2026-11-27", "/k1-0001/total") == Some(json!(950))
            && get(&pos2_d, "stock", "/burger") == Some(json!(19)))
        .then_some(())
    });
    assert_eq!(get(&pos2_d, "menu", "/items/quiche"), None);

    drop((pos, kiosk, lyon, cloud));
}

#[test]
fn refused_devices_get_nothing_and_are_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let revoked = issue(&ca, root, "paris", "pos-9", "pos");
    // A device of another fleet.
    let rogue_root = root.join("rogue");
    std::fs::create_dir(&rogue_root).expect("mkdir");
    let rogue_ca = make_ca(&rogue_root);
    let rogue = issue(&rogue_ca, &rogue_root, "paris", "pos-8", "pos");
    let files = CloudFiles {
        config: root.join("cloud.toml"),
        data: root.join("cloud-data"),
        cert: cloud_cert.clone(),
    };
    std::fs::write(
        &files.config,
        format!(
            "ca = {:?}\ncert = {:?}\ndeny = [\"paris/pos-9\"]\n",
            cloud_cert.join("ca.pem"),
            cloud_cert.join("cert.pem")
        ),
    )
    .expect("config");
    let (mut cloud, quic, http) = start_cloud(&files, "127.0.0.1:0", "127.0.0.1:0");
    let mut devices = Vec::new();
    for (name, cert) in [("rogue", &rogue), ("revoked", &revoked)] {
        let d = root.join(format!("{name}-data"));
        on(
            &d,
            &[
                "--cert-dir",
                cert.to_str().expect("utf-8"),
                "put",
                "menu",
                "/x",
                "1",
            ],
        )
        .expect_ok();
        devices.push(serve(name, &d, cert, 0, &[quic]).0);
    }
    eventually("both handshakes refused", SYNC, || {
        let t = metrics(http);
        (metric(&t, "outpost_handshake_failures_total").unwrap_or(0) >= 2).then_some(())
    });
    let t = metrics(http);
    assert_eq!(metric(&t, "outpost_connected_peers"), Some(0));
    assert_eq!(metric(&t, "outpost_connections_accepted_total"), Some(0));
    assert_eq!(metric(&t, "outpost_bytes_in_total"), Some(0));
    assert_eq!(metric(&t, "outpost_sites_loaded"), Some(0));
    cloud.terminate();
}

#[test]
fn idle_sites_are_unloaded_and_reload_on_demand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let kiosk_cert = issue(&ca, root, "paris", "kiosk-1", "kiosk");
    let files = CloudFiles {
        config: root.join("cloud.toml"),
        data: root.join("cloud-data"),
        cert: cloud_cert.clone(),
    };
    std::fs::write(
        &files.config,
        format!(
            "ca = {:?}\ncert = {:?}\nidle_secs = 1\n",
            cloud_cert.join("ca.pem"),
            cloud_cert.join("cert.pem")
        ),
    )
    .expect("config");
    let (mut cloud, quic, http) = start_cloud(&files, "127.0.0.1:0", "127.0.0.1:0");
    let pos_d = root.join("pos");
    let (mut pos, _) = serve("paris/pos-1", &pos_d, &pos_cert, 0, &[quic]);
    on(&pos_d, &["put", "menu", "/items/burger/price", "950"]).expect_ok();
    // Connected but idle: the documents leave memory, the site stays.
    eventually(
        "documents unloaded while the device is connected",
        SYNC,
        || {
            let t = metrics(http);
            (metric(&t, "outpost_site_changes_applied_total{site=\"paris\"}") == Some(1)
                && metric(&t, "outpost_documents_loaded") == Some(0)
                && metric(&t, "outpost_sites_loaded") == Some(1))
            .then_some(())
        },
    );
    pos.terminate();
    eventually("the site unloaded once its device left", SYNC, || {
        let t = metrics(http);
        (metric(&t, "outpost_sites_loaded") == Some(0)
            && metric(&t, "outpost_connected_peers") == Some(0))
        .then_some(())
    });
    // Another device of the site loads it again and gets its documents.
    let kiosk_d = root.join("kiosk");
    let (_kiosk, _) = serve("paris/kiosk-1", &kiosk_d, &kiosk_cert, 0, &[quic]);
    eventually(
        "the kiosk gets the menu from the reloaded site",
        SYNC,
        || (get(&kiosk_d, "menu", "/items/burger/price") == Some(json!(950))).then_some(()),
    );
    cloud.terminate();
}
