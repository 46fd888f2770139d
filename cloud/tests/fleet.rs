//! Fleet-wide documents over real QUIC: a cloud peer in this process, devices of two sites
//! as `outpost serve` processes. Head office writes a price once; the devices of both sites
//! read it, also a site that connects only later; a site's device cannot change it (refused
//! locally, and refused by the cloud from a device that lies about its policy); and the
//! cloud keeps one copy, not one per site.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_cloud::server::{Cloud, CloudConfig, FleetError};
use outpost_core::{DocumentId, Role, Store, StoreOptions};
use outpost_testbins::*;
use serde_json::json;

const SYNC: Duration = Duration::from_secs(40);

fn get(dir: &Path, doc: &str, path: &str) -> Option<serde_json::Value> {
    let out = on(dir, &["get", doc, path]);
    out.ok().then(|| out.json())
}

/// `outpost [--policy FILE] serve` of a device dialing the cloud.
fn device(
    name: &str,
    dir: &Path,
    cert: &Path,
    cloud: std::net::SocketAddr,
    policy: Option<&Path>,
) -> Proc {
    let mut cmd = Command::new(outpost_bin());
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    cmd.arg("--data")
        .arg(dir)
        .arg("--cert-dir")
        .arg(cert)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--peer",
            &cloud.to_string(),
        ])
        .env_remove("OUTPOST_DATA")
        .env("RUST_LOG", "info");
    let proc = Proc::spawn(name, cmd);
    proc.wait_line("out: serving ", Duration::from_secs(30));
    proc
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn config(root: &Path, cert: &Path) -> CloudConfig {
    CloudConfig::new(
        root.join("cloud-data"),
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
        cert.join("ca.pem"),
        cert.join("cert.pem"),
        cert.join("key.pem"),
    )
}

/// The documents each namespace of the cloud's database holds, read after it stopped.
fn namespaces(data: &PathBuf) -> Vec<(String, Vec<DocumentId>)> {
    let db = eventually(
        "the cloud's database to be released",
        Duration::from_secs(10),
        || outpost_core::Database::open(data, &Default::default()).ok(),
    );
    ["fleet/", "site/paris/", "site/lyon/"]
        .iter()
        .map(|ns| {
            let store = Store::on_db(db.clone(), ns, StoreOptions::default()).expect("store opens");
            (ns.to_string(), store.documents().expect("documents list"))
        })
        .collect()
}

#[test]
fn head_office_publishes_a_price_once_and_every_site_reads_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let paris_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let paris_kiosk_cert = issue(&ca, root, "paris", "kiosk-1", "kiosk");
    let liar_cert = issue(&ca, root, "paris", "pos-9", "pos");
    let lyon_cert = issue(&ca, root, "lyon", "pos-1", "pos");
    let rt = runtime();
    let cloud = rt
        .block_on(Cloud::start(config(root, &cloud_cert)))
        .expect("cloud starts");
    let quic = cloud.quic_addr();

    // Paris is online; Lyon has no device running yet (its site is not even loaded).
    let paris_d = root.join("paris-pos");
    let kiosk_d = root.join("paris-kiosk");
    let mut paris = device("paris-pos", &paris_d, &paris_cert, quic, None);
    let mut kiosk = device("paris-kiosk", &kiosk_d, &paris_kiosk_cert, quic, None);

    let prices: DocumentId = "prices".parse().expect("valid");
    let head_office: Role = "head-office".parse().expect("valid");
    let pos: Role = "pos".parse().expect("valid");
    cloud
        .fleet()
        .put(&prices, "/burger", &json!({"price": 950}), &head_office)
        .expect("head office writes a price");
    // The policy applies to the HTTP API's writers like to devices.
    let refused = cloud
        .fleet()
        .put(&prices, "/burger/price", &json!(1), &pos)
        .expect_err("a pos may not write prices");
    assert!(
        matches!(refused, FleetError::NotPermitted { .. }),
        "{refused}"
    );
    let not_fleet = cloud
        .fleet()
        .put(
            &"menu".parse().expect("valid"),
            "/x",
            &json!(1),
            &head_office,
        )
        .expect_err("menu is a site document");
    assert!(
        matches!(not_fleet, FleetError::NotFleet { .. }),
        "{not_fleet}"
    );

    for (name, dir) in [("paris pos", &paris_d), ("paris kiosk", &kiosk_d)] {
        eventually(&format!("{name} reads the price"), SYNC, || {
            (get(dir, "prices", "/burger/price") == Some(json!(950))).then_some(())
        });
    }
    // A change reaches the connected devices at once (pushed, not polled by a reconnect).
    cloud
        .fleet()
        .put(&prices, "/burger/price", &json!(990), &head_office)
        .expect("head office changes the price");
    eventually("paris reads the new price", SYNC, || {
        (get(&paris_d, "prices", "/burger/price") == Some(json!(990))).then_some(())
    });

    // Lyon connects later and gets it too.
    let lyon_d = root.join("lyon-pos");
    let mut lyon = device("lyon-pos", &lyon_d, &lyon_cert, quic, None);
    eventually("lyon reads the price", SYNC, || {
        (get(&lyon_d, "prices", "/burger/price") == Some(json!(990))).then_some(())
    });

    // A site's own document overrides, the app decides: Lyon's own override of the burger.
    on(
        &lyon_d,
        &["put", "prices_override", "/burger/price", "1050"],
    )
    .expect_ok();

    // A device may not write a fleet context: refused locally...
    on(&paris_d, &["put", "prices", "/burger/price", "1"]).expect_err("may not write");
    // ...and a device that lies about the policy (it thinks everything is open) has its
    // change refused by the cloud: nothing stored, nothing relayed.
    let open = root.join("open-policy.toml");
    std::fs::write(
        &open,
        "open = true\nrelay_roles = []\n[contexts]\n[default_rule]\nread = []\nwrite = []\n",
    )
    .expect("write policy");
    let liar_d = root.join("paris-liar");
    let mut liar = device("paris-liar", &liar_d, &liar_cert, quic, Some(&open));
    eventually("the liar has the price", SYNC, || {
        (get(&liar_d, "prices", "/burger/price") == Some(json!(990))).then_some(())
    });
    on(&liar_d, &["put", "prices", "/burger/price", "1"]).expect_ok();
    // A POS may relay head office's signed changes to `prices` but not write its own: the
    // cloud refuses the liar's change (its author's role may not write the context, see
    // core/tests/fleet_relay.rs). Once a later head-office write reached the liar, its change
    // has had every chance to travel.
    cloud
        .fleet()
        .put(&prices, "/burger/name", &json!("Burger"), &head_office)
        .expect("head office names the burger");
    for dir in [&liar_d, &paris_d, &lyon_d] {
        eventually("the name reaches every device", SYNC, || {
            (get(dir, "prices", "/burger/name") == Some(json!("Burger"))).then_some(())
        });
    }
    assert_eq!(
        cloud.fleet().get(&prices, "/burger/price").expect("read"),
        Some(json!(990)),
        "the refused change is not stored"
    );
    for dir in [&paris_d, &kiosk_d, &lyon_d] {
        assert_eq!(get(dir, "prices", "/burger/price"), Some(json!(990)));
    }
    assert_eq!(
        get(&lyon_d, "prices_override", "/burger/price"),
        Some(json!(1050))
    );

    // One copy in the cloud: the fleet namespace holds `prices`, no site's does.
    assert!(cloud.fleet().document_bytes(&prices).expect("bytes") > 0);
    assert_eq!(
        cloud.fleet().documents().expect("list"),
        vec![prices.clone()]
    );
    for p in [&mut paris, &mut kiosk, &mut lyon, &mut liar] {
        p.terminate();
    }
    rt.block_on(cloud.shutdown()).expect("cloud stops");
    drop(rt);
    let held = namespaces(&root.join("cloud-data"));
    for (ns, docs) in &held {
        let has = docs.contains(&prices);
        assert_eq!(has, ns == "fleet/", "{ns} holds {docs:?}");
    }
    let lyon_docs = &held
        .iter()
        .find(|(ns, _)| ns == "site/lyon/")
        .expect("lyon")
        .1;
    assert!(
        lyon_docs.contains(&"prices_override".parse().expect("valid")),
        "the override is the site's: {lyon_docs:?}"
    );
}
