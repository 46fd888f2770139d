//! Issue 28, item 1, as a new user hits it, with the real binaries: a fleet CA, the cloud
//! (`outpost-cloud`) with its API, site paris with a POS linked to the cloud, and a kiosk and
//! a kitchen linked only to the POS (`outpost serve`, QUIC on 127.0.0.1), signatures
//! required (the default). Head office publishes a price with the README's command
//! (`PUT /api/v1/fleet/documents/prices?pointer=/burger`): it must reach the kiosk and the
//! kitchen through the POS. Before, the POS's status showed `prices 2 changes unsynced` for
//! them forever, `refused: false`, nothing in any log, and the kiosk answered "unknown
//! document prices". A second kiosk runs an old policy that does not let a POS relay: it
//! keeps not taking the price, and the POS's status and log say why.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_testbins::*;
use serde_json::{json, Value as Json};

const SYNC: Duration = Duration::from_secs(40);

fn get(dir: &Path, doc: &str, path: &str) -> Option<Json> {
    let out = on(dir, &["get", doc, path]);
    out.ok().then(|| out.json())
}

/// The POS's `status --json` entry of `doc` for `peer`, if it lists one.
fn doc_status(pos: &Path, peer: &str, doc: &str) -> Option<Json> {
    let status = on(pos, &["status", "--json"]).json();
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer"] == json!(peer))?["docs"]
        .as_array()?
        .iter()
        .find(|d| d["doc"] == json!(doc))
        .cloned()
}

#[test]
fn head_office_prices_reach_a_kiosk_and_a_kitchen_linked_only_to_the_pos() {
    let test_started = Instant::now();
    let phase = |what: &str| println!("{:>6} ms  {what}", test_started.elapsed().as_millis());
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let data = root.join("cloud-data");
    let (_cloud, quic, http) = start_cloud_with(&cloud_cert, &data, &[]);
    let hq = api_token(&data, &["--name", "head-office", "--sites", "*", "--write"]);

    let pos_d = root.join("paris-pos1");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let (pos, pos_addr) = serve("paris/pos-1", &pos_d, &pos_cert, 0, &[quic]);
    let mut devices = Vec::new();
    let mut dirs = Vec::new();
    for (name, role) in [("kiosk-1", "kiosk"), ("kitchen-1", "kitchen")] {
        let dir = root.join(format!("paris-{name}"));
        let cert = issue(&ca, root, "paris", name, role);
        devices.push(serve(&format!("paris/{name}"), &dir, &cert, 0, &[pos_addr]).0);
        dirs.push(dir);
    }
    // A kiosk still on a policy file from before relays carried fleet documents (no POS
    // among the relays): it tells the POS it takes no `prices` from it.
    let old_policy = root.join("old-policy.toml");
    std::fs::write(
        &old_policy,
        r#"relay_roles = ["cloud", "kiosk", "kitchen"]
[default_rule]
read = ["pos"]
write = ["pos"]
[contexts.menu]
read = ["pos", "kiosk", "menu-board", "kitchen"]
write = ["pos"]
[contexts.prices]
read = ["pos", "kiosk", "menu-board", "kitchen"]
write = ["head-office"]
scope = "fleet"
"#,
    )
    .expect("write the old policy");
    let old_d = root.join("paris-kiosk-2");
    let old_cert = issue(&ca, root, "paris", "kiosk-2", "kiosk");
    let mut old = serve_command(&old_d, &old_cert, "127.0.0.1:0", &[&pos_addr.to_string()]);
    old.env("OUTPOST_POLICY", &old_policy);
    let (_old, _) = serving("paris/kiosk-2", old);

    phase("started the cloud and four devices");
    eventually("the POS links to the cloud and its devices", SYNC, || {
        let status = on(&pos_d, &["status", "--json"]).json();
        let connected = |peer: &str| {
            status["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["peer"] == json!(peer) && p["connected"] == json!(true))
            })
        };
        ["cloud-1", "kiosk-1", "kitchen-1", "kiosk-2"]
            .iter()
            .all(|p| connected(p))
            .then_some(())
    });
    phase("the POS is linked to all");
    // The menu, a site document the POS writes, reaches them as before.
    on(
        &pos_d,
        &["put", "menu", "/items/burger", r#"{"name": "Burger"}"#],
    )
    .expect_ok();

    // The README's command.
    let started = Instant::now();
    let put = http_request(
        http,
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger",
        &[
            ("Authorization", &format!("Bearer {hq}")),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"price": 990, "currency": "EUR"}"#),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    for (name, dir) in [
        ("the POS", &pos_d),
        ("the kiosk behind the POS", &dirs[0]),
        ("the kitchen behind the POS", &dirs[1]),
    ] {
        eventually(&format!("{name} reads the price"), SYNC, || {
            (get(dir, "prices", "/burger/price") == Some(json!(990))).then_some(())
        });
        println!(
            "{name} read head office's price {} ms after the PUT",
            started.elapsed().as_millis()
        );
    }
    for dir in &dirs {
        assert_eq!(
            get(dir, "menu", "/items/burger/name"),
            Some(json!("Burger"))
        );
    }
    // A change of price is pushed the same way.
    let started = Instant::now();
    let put = http_request(
        http,
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger/price",
        &[
            ("Authorization", &format!("Bearer {hq}")),
            ("Content-Type", "application/json"),
        ],
        Some(b"1050"),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    for dir in &dirs {
        eventually("the new price behind the POS", SYNC, || {
            (get(dir, "prices", "/burger/price") == Some(json!(1050))).then_some(())
        });
    }
    println!(
        "the new price reached the kiosk and the kitchen in {} ms",
        started.elapsed().as_millis()
    );
    phase("prices read behind the POS");
    // The POS owes them nothing, and has nothing to explain.
    for peer in ["kiosk-1", "kitchen-1"] {
        eventually(&format!("the POS sees {peer} in sync"), SYNC, || {
            let d = doc_status(&pos_d, peer, "prices")?;
            (d["unsynced_changes"] == json!(0)).then_some(d)
        });
        let d = doc_status(&pos_d, peer, "prices").expect("listed");
        assert_eq!(d["reason"], Json::Null, "{d}");
        assert_eq!(d["refused"], json!(false), "{d}");
    }

    phase("the POS owes its devices nothing");
    // The kiosk on the old policy keeps not taking the price: the status says why, and so
    // does the POS's log (WARN).
    assert_eq!(get(&old_d, "prices", "/burger/price"), None);
    let stuck = eventually("the POS explains kiosk-2's backlog", SYNC, || {
        doc_status(&pos_d, "kiosk-2", "prices").filter(|d| d["reason"].is_string())
    });
    println!("POS status of kiosk-2, prices: {stuck}");
    let reason = stuck["reason"].as_str().expect("a reason");
    assert!(reason.contains("read-only"), "{reason}");
    assert!(reason.contains("role pos"), "{reason}");
    assert!(stuck["unsynced_changes"].as_u64() > Some(0), "{stuck}");
    let text = on(&pos_d, &["status"]).expect_ok().to_string();
    assert!(
        text.contains("kiosk-2 takes no changes of prices from this device"),
        "{text}"
    );
    let warn = pos.wait_line("a peer takes none of our changes", SYNC);
    println!("POS log: {warn}");
    phase("done");
    assert!(warn.contains("WARN") && warn.contains("kiosk-2"), "{warn}");
}
