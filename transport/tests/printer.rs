//! A kitchen printer that restarts mid-service neither misses nor double-acts on tickets: a
//! kiosk writes orders while a printer process (a kitchen `Node` over real QUIC reading the
//! durable feed `kitchen-1/printer`) is killed with SIGKILL at random points and restarted.
//! Afterwards every order was printed at least once, and keyed by order id each was acted on
//! once. Printed figure: kills, and how many tickets came again after a kill (at least once).

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_core::{Durability, Feed, FeedDocs, FeedFilter, Pointer};
use outpost_transport::{DeviceCert, FleetCa};
use rand::{Rng, SeedableRng};
use support::*;

const DIR_ENV: &str = "OUTPOST_PRINTER_DIR";
const PEER_ENV: &str = "OUTPOST_PRINTER_PEER";
const ORDERS: usize = 150;

fn printed_log(dir: &Path) -> PathBuf {
    dir.join("printed.log")
}

/// The child: a kitchen node that prints (appends to `printed.log`) every order the feed
/// gives it, then acknowledges the batch. Runs until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of a_printer_killed_mid_service_prints_every_order_once, which runs it"]
async fn printer_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let peer: std::net::SocketAddr = std::env::var(PEER_ENV)
        .expect("the parent names the kiosk")
        .parse()
        .expect("an address");
    let cert = DeviceCert::load(&dir.join("cert")).expect("the kitchen's certificate");
    let node = start(test_config(&dir.join("data"), &cert, vec![peer])).await;
    let filter = FeedFilter {
        docs: Some(FeedDocs::Context("orders".parse().expect("valid"))),
        prefix: Some(Pointer::parse("/orders").expect("valid")),
    };
    let mut feed = Feed::open(node.store(), "kitchen-1/printer", filter).expect("feed");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(printed_log(&dir))
        .expect("the printer's paper");
    loop {
        let batch = feed.next().await.expect("the next batch");
        for item in &batch.items {
            // Printing: the act the feed must neither skip nor (by key) repeat.
            writeln!(log, "{item}").expect("print");
        }
        log.sync_data().expect("printed");
        feed.ack(&batch).expect("ack");
    }
}

fn spawn_printer(dir: &Path, kiosk: std::net::SocketAddr) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", "printer_child", "--nocapture", "--ignored"])
        .env(DIR_ENV, dir)
        .env(PEER_ENV, kiosk.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs as a child")
}

fn printed(dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(printed_log(dir))
        .unwrap_or_default()
        .lines()
    {
        // A line cut by the kill is not a ticket.
        if let Some(id) = line.strip_prefix("/orders/") {
            if id.len() == 4 {
                *counts.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_killed_mid_service_prints_every_order_once() {
    init_tracing();
    let seed: u64 = rand::random();
    println!("printer seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    issue(&ca, "lyon", "kitchen-1", "kitchen")
        .save(&tmp.path().join("printer").join("cert"))
        .expect("save the kitchen's certificate");
    let kiosk = start(test_config(&tmp.path().join("kiosk"), &kiosk_cert, vec![])).await;
    let printer_dir = tmp.path().join("printer");

    let orders_doc = doc("orders/2026-12-01");
    let mut child = spawn_printer(&printer_dir, kiosk.local_addr());
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(50..400));
    for i in 0..ORDERS {
        kiosk
            .store()
            .put(
                &orders_doc,
                &format!("/orders/{i:04}"),
                serde_json::json!({"sku": "burger", "qty": 1 + i % 3}),
                Durability::Fast,
            )
            .expect("the kiosk takes an order");
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..8))).await;
        if Instant::now() >= next_kill {
            child.kill().expect("SIGKILL the printer");
            child.wait().expect("reap it");
            kills += 1;
            child = spawn_printer(&printer_dir, kiosk.local_addr());
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(50..400));
        }
    }
    // The last printer runs until every order is printed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while printed(&printer_dir).len() < ORDERS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("stop the printer");
    child.wait().expect("reap it");
    let counts = printed(&printer_dir);
    let again: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "printer: {ORDERS} orders, printer killed {kills} times: {} distinct tickets printed, \
         {again} printed again after a kill (at least once; keyed by order id, acted on once)",
        counts.len()
    );
    let missing: Vec<String> = (0..ORDERS)
        .map(|i| format!("{i:04}"))
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: never printed: {missing:?}"
    );
    assert_eq!(
        counts.len(),
        ORDERS,
        "seed {seed}: nothing printed that was not ordered"
    );
    assert!(
        kills >= 1,
        "seed {seed}: the printer was killed at least once"
    );
    kiosk.shutdown().await.expect("kiosk stops");
}
