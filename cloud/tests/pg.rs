//! The cloud on PostgreSQL: several `outpost-cloud --store postgres://...` instances (real
//! binaries) on one throwaway PostgreSQL cluster, devices (real nodes over QUIC on
//! 127.0.0.1) of one site split across them.
//!
//! - writes on both sides converge (LISTEN/NOTIFY between instances), and a third
//!   instance started later, with an empty cache, serves the site;
//! - an ack means the transaction committed: with PostgreSQL stopped, the device keeps
//!   counting its change unsynced, and it drains once the database is back;
//! - SIGKILL of one instance while a device catches up through it: the device fails over
//!   to the other instance (it knows the cloud by a list of addresses) and nothing it was
//!   told is acknowledged is lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_core::{DocumentId, Durability, PeerId, PeerInfo};
use outpost_testbins::{start_cloud_with, PgCluster, Proc};
use outpost_transport::{FleetCa, Node, NodeConfig};
use serde_json::json;

const STEP: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

struct Fleet {
    tmp: tempfile::TempDir,
    ca: FleetCa,
    certs: PathBuf,
    url: String,
}

impl Fleet {
    fn new(pg: &PgCluster) -> Fleet {
        let tmp = tempfile::tempdir().expect("tempdir");
        let certs = tmp.path().join("cloud-cert");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let ca = FleetCa::generate("acme").expect("ca");
        let cloud = ca
            .issue(&PeerInfo::parse("acme", "cloud-1", "cloud").expect("id"))
            .expect("cloud cert");
        std::fs::write(certs.join("ca.pem"), ca.cert_pem()).expect("write");
        std::fs::write(certs.join("cert.pem"), cloud.cert_pem()).expect("write");
        std::fs::write(certs.join("key.pem"), cloud.key_pem()).expect("write");
        let url = pg.create_database("outpost");
        Fleet {
            tmp,
            ca,
            certs,
            url,
        }
    }

    /// Starts an instance with a data (cache) directory of its own.
    fn instance(&self, name: &str) -> (Proc, SocketAddr) {
        let data = self.tmp.path().join(name);
        let (proc, quic, _) = start_cloud_with(
            &self.certs,
            &data,
            &["--store", &self.url, "--idle-secs", "60"],
        );
        (proc, quic)
    }

    fn device(&self, name: &str, role: &str, clouds: &[SocketAddr]) -> NodeConfig {
        let cert = self
            .ca
            .issue(&PeerInfo::parse("paris", name, role).expect("id"))
            .expect("cert");
        let mut config = NodeConfig::new(self.tmp.path().join(name), cert);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.static_peers = clouds.to_vec();
        config
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

fn cloud_id() -> PeerId {
    "cloud-1".parse().expect("id")
}

fn orders() -> DocumentId {
    "orders/2026-12-01".parse().expect("doc")
}

async fn unsynced(node: &Node) -> usize {
    node.status()
        .await
        .expect("status")
        .peer(&cloud_id())
        .map(|p| p.they_lack())
        .unwrap_or(usize::MAX)
}

async fn drained(node: &Node, what: &str) {
    within(what, async {
        while unsynced(node).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn order_count(node: &Node) -> usize {
    node.store()
        .get(&orders(), "")
        .ok()
        .flatten()
        .and_then(|v| v.as_object().map(|o| o.len()))
        .unwrap_or(0)
}

async fn has_orders(node: &Node, n: usize, what: &str) {
    within(what, async {
        while order_count(node) < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(order_count(node), n, "{what}");
}

fn write(node: &Node, from: usize, to: usize, tag: &str) {
    for i in from..to {
        node.store()
            .put(
                &orders(),
                &format!("/{tag}-{i:04}"),
                json!({"status": "paid", "total": i}),
                Durability::Fast,
            )
            .expect("a device writes locally whatever the cloud does");
    }
    node.store()
        .flush()
        .expect("the device's disk takes the orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_converge_and_a_third_serves_the_site_from_the_database() {
    let pg = PgCluster::start();
    let fleet = Fleet::new(&pg);
    let (_a, a) = fleet.instance("cloud-a");
    let (_b, b) = fleet.instance("cloud-b");
    let pos = within("pos", Node::start(fleet.device("pos-1", "pos", &[a])))
        .await
        .expect("pos starts");
    let kiosk = within("kiosk", Node::start(fleet.device("kiosk-1", "kiosk", &[b])))
        .await
        .expect("kiosk starts");
    within("pos on a", pos.wait_connected(&cloud_id())).await;
    within("kiosk on b", kiosk.wait_connected(&cloud_id())).await;

    write(&pos, 0, 20, "pos");
    write(&kiosk, 0, 20, "kiosk");
    drained(&pos, "instance a acknowledged the POS's orders").await;
    drained(&kiosk, "instance b acknowledged the kiosk's orders").await;
    has_orders(
        &pos,
        40,
        "the POS gets the kiosk's orders through b, PostgreSQL, a",
    )
    .await;
    has_orders(
        &kiosk,
        40,
        "the kiosk gets the POS's orders through a, PostgreSQL, b",
    )
    .await;
    let rows: usize = pg
        .psql_on(
            "outpost",
            "SELECT count(*) FROM changes WHERE site = 'paris'",
        )
        .parse()
        .expect("count");
    assert!(
        rows >= 40,
        "every order is a change row in PostgreSQL ({rows})"
    );

    // A third instance, started later with an empty cache, serves the site to a new device.
    let (_c, c) = fleet.instance("cloud-c");
    let kitchen = within(
        "kitchen",
        Node::start(fleet.device("kitchen-1", "kitchen", &[c])),
    )
    .await
    .expect("kitchen starts");
    has_orders(
        &kitchen,
        40,
        "a new device on a new instance gets every order",
    )
    .await;
    // And writes there reach the devices on the other two.
    write(&kitchen, 0, 5, "kitchen");
    drained(&kitchen, "instance c acknowledged the kitchen's orders").await;
    has_orders(&pos, 45, "the POS on a gets the kitchen's orders from c").await;
    has_orders(
        &kiosk,
        45,
        "the kiosk on b gets the kitchen's orders from c",
    )
    .await;
    assert!(fleet.dir().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_means_the_database_committed() {
    let mut pg = PgCluster::start();
    let fleet = Fleet::new(&pg);
    let (_a, a) = fleet.instance("cloud-a");
    let pos = within("pos", Node::start(fleet.device("pos-1", "pos", &[a])))
        .await
        .expect("pos starts");
    within("pos on a", pos.wait_connected(&cloud_id())).await;
    write(&pos, 0, 5, "pos");
    drained(&pos, "acknowledged while the database is up").await;

    pg.stop();
    write(&pos, 5, 8, "pos");
    // Several retries of the exchange (2 s each) with the database down: never acknowledged.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let backlog = unsynced(&pos).await;
    println!("database down: the device still counts {backlog} changes unsynced");
    assert!(
        backlog >= 3,
        "nothing may be acknowledged before it is committed ({backlog})"
    );

    pg.start_server();
    drained(&pos, "the backlog drains once the database is back").await;
    let rows: usize = pg
        .psql_on(
            "outpost",
            "SELECT count(*) FROM changes WHERE site = 'paris'",
        )
        .parse()
        .expect("count");
    assert!(rows >= 8, "the acknowledged changes are rows ({rows})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_mid_catch_up_loses_nothing_acknowledged() {
    let pg = PgCluster::start();
    let fleet = Fleet::new(&pg);
    let (a, a_addr) = fleet.instance("cloud-a");
    let (_b, b_addr) = fleet.instance("cloud-b");
    // The kiosk stays on b; the POS knows the cloud by both addresses, a first.
    let kiosk = within(
        "kiosk",
        Node::start(fleet.device("kiosk-1", "kiosk", &[b_addr])),
    )
    .await
    .expect("kiosk starts");
    within("kiosk on b", kiosk.wait_connected(&cloud_id())).await;
    // The POS worked offline: a day's catch-up waits.
    let mut offline = fleet.device("pos-1", "pos", &[a_addr]);
    offline.static_peers.clear();
    let pos = within("pos offline", Node::start(offline))
        .await
        .expect("pos");
    write(&pos, 0, 400, "pos");
    pos.shutdown().await.expect("pos stops");

    let pos = within(
        "pos",
        Node::start(fleet.device("pos-1", "pos", &[a_addr, b_addr])),
    )
    .await
    .expect("pos restarts");
    // Kill a as soon as the catch-up runs through it.
    within("pos connected", pos.wait_connected(&cloud_id())).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = unsynced(&pos).await;
    a.signal("KILL");
    println!("instance a killed with {before} of 400 changes unacknowledged");
    drained(&pos, "the POS fails over to b and its backlog drains").await;
    has_orders(&kiosk, 400, "every order reaches the kiosk on b").await;
    let (_c, c_addr) = fleet.instance("cloud-c");
    let kitchen = within(
        "kitchen",
        Node::start(fleet.device("kitchen-1", "kitchen", &[c_addr])),
    )
    .await
    .expect("kitchen");
    has_orders(
        &kitchen,
        400,
        "a fresh instance has every acknowledged order",
    )
    .await;
}
