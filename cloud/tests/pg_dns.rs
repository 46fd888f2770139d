//! A device that knows the cloud by one DNS name with several addresses fails over between
//! `outpost-cloud` instances on one PostgreSQL: real binaries, real QUIC, a real cluster.
//!
//! The test makes a network namespace of its own (root, iproute2) whose hosts file gives
//! `cloud.outpost.test` two addresses, ::1 and 127.0.0.1. One instance listens on each, on
//! the same port, with the same certificate; the device (`outpost serve`) is given the name
//! only. PostgreSQL runs outside the namespace on a unix socket (a file: reachable from
//! inside), and the test drives the device through its control socket (a file too).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_testbins::{
    cloud_addresses, cloud_command, issue, make_ca, on, serve_command, serving, Netns, PgCluster,
    Proc,
};
use serde_json::Value as Json;

const NAME: &str = "cloud.outpost.test";
const PORT: u16 = 7733;
const DOC: &str = "orders/2026-12-01";
const STEP: Duration = Duration::from_secs(60);

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after [`STEP`].
#[track_caller]
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let deadline = start + STEP;
    loop {
        if let Some(v) = f() {
            println!("{what}: {:.1?}", start.elapsed());
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {STEP:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `device` is connected to `instance` now: its last "device connected" or "device
/// disconnected" line there says so. (A dial that races two addresses may connect to both
/// for a moment; the loser is closed.)
fn connected(instance: &Proc, device: &str) -> bool {
    instance
        .output()
        .iter()
        .rev()
        .find(|l| l.contains(device) && l.contains("device ") && l.contains("connected"))
        .is_some_and(|l| l.contains("device connected"))
}

/// The device's view of the cloud peer, from `outpost status --json` (control socket).
fn cloud_link(device: &Path) -> Option<Json> {
    let status = on(device, &["status", "--json"]).json();
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer"] == "cloud-1")
        .cloned()
}

/// Whether the device is connected to the cloud with nothing unacknowledged.
fn drained(device: &Path) -> bool {
    cloud_link(device)
        .is_some_and(|p| p["connected"] == Json::Bool(true) && p["unsynced_changes"] == 0)
}

fn write_orders(device: &Path, from: usize, to: usize) {
    for i in from..to {
        on(
            device,
            &[
                "put",
                DOC,
                &format!("/pos-{i:04}"),
                &format!(r#"{{"status": "paid", "total": {i}}}"#),
            ],
        )
        .expect_ok();
    }
}

fn order_count(device: &Path) -> usize {
    let out = on(device, &["get", DOC]);
    if !out.ok() {
        return 0;
    }
    serde_json::from_str::<Json>(&out.stdout)
        .ok()
        // Orders are `/pos-<n>` (the day also holds its genesis's `/orders`).
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().filter(|k| k.starts_with("pos-")).count())
        })
        .unwrap_or(0)
}

#[test]
fn a_device_that_knows_the_cloud_by_a_name_with_two_addresses_fails_over() {
    // Dropped last: after every process that runs in it.
    let ns = Netns::create(
        &format!("outpost-dns-{}", std::process::id()),
        &[
            "127.0.0.1 localhost",
            &format!("127.0.0.1 {NAME}"),
            &format!("::1 {NAME}"),
        ],
    );
    let resolved = Command::new("ip")
        .args(["netns", "exec", ns.name(), "getent", "ahosts", NAME])
        .output()
        .expect("run getent in the namespace");
    let resolved = String::from_utf8_lossy(&resolved.stdout).into_owned();
    assert!(
        resolved.contains("::1") && resolved.contains("127.0.0.1"),
        "{NAME} resolves to both addresses in the namespace:\n{resolved}"
    );

    let pg = PgCluster::start();
    let url = pg.create_database("outpost");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let kiosk_cert = issue(&ca, root, "paris", "kiosk-1", "kiosk");
    let kitchen_cert = issue(&ca, root, "paris", "kitchen-1", "kitchen");

    // Two instances on the same port, one per address of the name.
    let instance = |name: &str, listen: &str, http: &str| {
        let cmd = cloud_command(
            &cloud_cert,
            &root.join(name),
            listen,
            http,
            &["--store", &url, "--idle-secs", "60"],
        );
        let proc = Proc::spawn(name, ns.wrap(&cmd));
        let (quic, _) = cloud_addresses(&proc);
        assert_eq!(quic.port(), PORT, "{name} listens on the shared port");
        proc
    };
    let mut v4 = instance("cloud-v4", &format!("127.0.0.1:{PORT}"), "127.0.0.1:0");
    let mut v6 = instance("cloud-v6", &format!("[::1]:{PORT}"), "[::1]:0");

    // The POS knows the cloud by its name only; it listens on both families ([::] is
    // dual-stack on Linux) so that it can dial either address.
    let pos_d = root.join("pos");
    let peer = format!("{NAME}:{PORT}");
    let (_pos, _) = serving(
        "pos",
        ns.wrap(&serve_command(&pos_d, &pos_cert, "[::]:0", &[&peer])),
    );
    let first_is_v6 = until("the POS is connected to one of the instances", || {
        match (connected(&v6, "pos-1"), connected(&v4, "pos-1")) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    });
    let (first, other, other_addr, kiosk_listen) = if first_is_v6 {
        (&mut v6, &mut v4, format!("127.0.0.1:{PORT}"), "127.0.0.1:0")
    } else {
        (&mut v4, &mut v6, format!("[::1]:{PORT}"), "[::1]:0")
    };
    println!(
        "{NAME} resolves to {}; the POS is on {}",
        resolved
            .lines()
            .filter(|l| l.contains("STREAM"))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", "),
        if first_is_v6 { "::1" } else { "127.0.0.1" }
    );

    write_orders(&pos_d, 0, 20);
    until("the first instance acknowledges 20 orders", || {
        drained(&pos_d).then_some(())
    });

    // A kiosk connected to the other instance only reads them: first instance, PostgreSQL,
    // NOTIFY, other instance.
    let kiosk_d = root.join("kiosk");
    let (_kiosk, _) = serving(
        "kiosk",
        ns.wrap(&serve_command(
            &kiosk_d,
            &kiosk_cert,
            kiosk_listen,
            &[&other_addr],
        )),
    );
    until(
        "the kiosk on the other instance reads the 20 orders",
        || (order_count(&kiosk_d) == 20).then_some(()),
    );
    assert!(
        connected(first, "pos-1") && !connected(other, "pos-1"),
        "the POS is still on the first instance only"
    );

    // Kill the instance the POS is connected to, and keep selling.
    let killed = Instant::now();
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    write_orders(&pos_d, 20, 40);
    let written = killed.elapsed();
    until("the POS reconnects to the other instance", || {
        connected(other, "pos-1").then_some(())
    });
    let reconnected = killed.elapsed();
    until("the POS's backlog drains to the other instance", || {
        drained(&pos_d).then_some(())
    });
    let drained_after = killed.elapsed();
    println!(
        "failover: 20 orders written offline in {written:.1?}; reconnected to the other \
         instance {reconnected:.1?} after the SIGKILL, backlog drained after {drained_after:.1?}"
    );

    until("the kiosk reads all 40 orders", || {
        (order_count(&kiosk_d) == 40).then_some(())
    });
    assert_eq!(order_count(&pos_d), 40);

    // The killed instance comes back with an empty cache: every acknowledged order is in
    // PostgreSQL, and a new device on it reads them all.
    let (_again, addr, listen) = if first_is_v6 {
        (
            instance("cloud-v6-again", &format!("[::1]:{PORT}"), "[::1]:0"),
            format!("[::1]:{PORT}"),
            "[::1]:0",
        )
    } else {
        (
            instance(
                "cloud-v4-again",
                &format!("127.0.0.1:{PORT}"),
                "127.0.0.1:0",
            ),
            format!("127.0.0.1:{PORT}"),
            "127.0.0.1:0",
        )
    };
    let kitchen_d = root.join("kitchen");
    let (_kitchen, _) = serving(
        "kitchen",
        ns.wrap(&serve_command(&kitchen_d, &kitchen_cert, listen, &[&addr])),
    );
    until(
        "a device on the restarted instance reads all 40 orders from PostgreSQL",
        || (order_count(&kitchen_d) == 40).then_some(()),
    );
}
