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
//!   told is acknowledged is lost;
//! - fleet documents written through one instance (head office's API) reach the devices
//!   of every site on the others, and a revocation posted to one instance is refused by
//!   every instance, one started later included;
//! - the sync state per (device, document) is shared through the database: a device that
//!   fails over resumes where it left off, measured against one whose state the database
//!   lacks (what every failover cost before).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_core::{DocumentId, Durability, PeerId, PeerInfo};
use outpost_testbins::{http_get, http_post, metric, start_cloud_with, PgCluster, Proc};
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
        let (proc, quic, _) = self.instance_with_http(name);
        (proc, quic)
    }

    /// Starts an instance; returns it with its QUIC and HTTP addresses.
    fn instance_with_http(&self, name: &str) -> (Proc, SocketAddr, SocketAddr) {
        let data = self.tmp.path().join(name);
        start_cloud_with(
            &self.certs,
            &data,
            &["--store", &self.url, "--idle-secs", "60"],
        )
    }

    fn device(&self, name: &str, role: &str, clouds: &[SocketAddr]) -> NodeConfig {
        self.device_of("paris", name, role, clouds)
    }

    fn device_of(&self, site: &str, name: &str, role: &str, clouds: &[SocketAddr]) -> NodeConfig {
        let cert = self
            .ca
            .issue(&PeerInfo::parse(site, name, role).expect("id"))
            .expect("cert");
        let mut config = NodeConfig::new(self.tmp.path().join(site).join(name), cert);
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

/// Orders in `docs` on `node`.
fn orders_in(node: &Node, docs: &[DocumentId]) -> usize {
    docs.iter()
        .map(|doc| {
            node.store()
                .get(doc, "")
                .ok()
                .flatten()
                // Orders are `/<tag>-<n>` (the day also holds its genesis's `/orders`).
                .and_then(|v| {
                    v.as_object()
                        .map(|o| o.keys().filter(|k| k.contains('-')).count())
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until `node` holds `n` orders in `docs`, and no more.
async fn has_orders_in(node: &Node, docs: &[DocumentId], n: usize, what: &str) {
    within(what, async {
        while orders_in(node, docs) < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(orders_in(node, docs), n, "{what}");
}

async fn has_orders(node: &Node, n: usize, what: &str) {
    has_orders_in(node, &[orders()], n, what).await
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

/// The days of the offline catch-up: one document each.
const DAYS: usize = 8;

fn day(d: usize) -> DocumentId {
    format!("orders/2026-11-{:02}", 20 + d)
        .parse()
        .expect("doc")
}

fn days() -> Vec<DocumentId> {
    (0..DAYS).map(day).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_mid_catch_up_loses_nothing_acknowledged() {
    const PER_DAY: usize = 50;
    let total = DAYS * PER_DAY;
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
    // The POS worked offline for a week: a catch-up of one document per day waits, larger
    // than the 4 MiB a device sends before it hears acks (each order carries 32 KB of
    // random hex notes), so a acknowledges it in steps.
    let mut offline = fleet.device("pos-1", "pos", &[a_addr]);
    offline.static_peers.clear();
    let pos = within("pos offline", Node::start(offline))
        .await
        .expect("pos");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for d in 0..DAYS {
        for i in 0..PER_DAY {
            // Hex of a xorshift: 4 bits of entropy per character, 16 KB once compressed.
            let notes: String = (0..16 * 1024)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    format!("{:02x}", seed as u8)
                })
                .collect();
            pos.store()
                .put(
                    &day(d),
                    &format!("/pos-{i:04}"),
                    json!({"status": "paid", "total": i, "notes": notes}),
                    Durability::Fast,
                )
                .expect("a device writes offline");
        }
    }
    pos.store()
        .flush()
        .expect("the device's disk takes the week");
    pos.shutdown().await.expect("pos stops");

    let pos = within(
        "pos",
        Node::start(fleet.device("pos-1", "pos", &[a_addr, b_addr])),
    )
    .await
    .expect("pos restarts");
    // Kill a as soon as it acknowledged part of the catch-up, not all of it.
    within("pos connected", pos.wait_connected(&cloud_id())).await;
    let before = within("a acknowledges the first day", async {
        loop {
            let n = unsynced(&pos).await;
            if n < total {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    a.signal("KILL");
    println!(
        "instance a killed with {before} of {total} changes unacknowledged ({})",
        if before > 0 {
            "mid catch-up"
        } else {
            "the catch-up had just ended"
        }
    );
    drained(&pos, "the POS fails over to b and its backlog drains").await;
    has_orders_in(&kiosk, &days(), total, "every order reaches the kiosk on b").await;
    let (_c, c_addr) = fleet.instance("cloud-c");
    let kitchen = within(
        "kitchen",
        Node::start(fleet.device("kitchen-1", "kitchen", &[c_addr])),
    )
    .await
    .expect("kitchen");
    has_orders_in(
        &kitchen,
        &days(),
        total,
        "a fresh instance has every acknowledged order",
    )
    .await;
}

/// Bytes an instance exchanged with devices (received + sent), from its `/metrics`.
fn bytes_exchanged(http: SocketAddr) -> u64 {
    let (status, text) = http_get(http, "/metrics");
    assert_eq!(status, 200, "metrics: {text}");
    let m = |name: &str| metric(&text, name).unwrap_or(0);
    m("outpost_bytes_in_total") + m("outpost_bytes_out_total")
}

/// How many bytes `http`'s instance exchanges while `node` drains its backlog through it.
async fn failover_bytes(node: &Node, http: SocketAddr, what: &str) -> u64 {
    let before = bytes_exchanged(http);
    drained(node, what).await;
    // The site's counters reach `/metrics` after each input: wait until they settle.
    let mut last = bytes_exchanged(http);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = bytes_exchanged(http);
        if now == last {
            return now - before;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_fails_over_resumes_from_the_sync_state_in_the_database() {
    const ORDERS: usize = 1000;
    let pg = PgCluster::start();
    let fleet = Fleet::new(&pg);
    let (a, a_addr) = fleet.instance("cloud-a");
    let quiet = |mut c: NodeConfig| {
        c.health_period = None;
        c
    };
    // Both POS know only a for now (a device dials every address it knows: b would load the
    // site early and keep its own copy of every state).
    let pos1 = within(
        "pos-1",
        Node::start(quiet(fleet.device("pos-1", "pos", &[a_addr]))),
    )
    .await
    .expect("pos-1 starts");
    let pos2 = within(
        "pos-2",
        Node::start(quiet(fleet.device("pos-2", "pos", &[a_addr]))),
    )
    .await
    .expect("pos-2 starts");
    within("pos-1 on a", pos1.wait_connected(&cloud_id())).await;
    within("pos-2 on a", pos2.wait_connected(&cloud_id())).await;
    write(&pos1, 0, ORDERS, "day");
    drained(&pos1, "a acknowledged the day").await;
    has_orders(&pos2, ORDERS, "pos-2 holds the day too").await;
    drained(&pos2, "pos-2 is in sync with a").await;

    // a commits each device's sync state of the day's document, sharing the day's heads.
    let state_key = |device: &str| {
        let hex: String = format!("{device}\0{}", orders())
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("'\\x{hex}'::bytea")
    };
    let heads = pos1.store().heads(&orders()).expect("heads");
    for device in ["pos-1", "pos-2"] {
        let holds_heads: Vec<String> = heads
            .iter()
            .map(|h| format!("position('\\x{h}'::bytea in value) > 0"))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM entries WHERE site = 'paris' AND tree = 3 AND key = {} AND {}",
            state_key(device),
            holds_heads.join(" AND ")
        );
        outpost_testbins::eventually(
            &format!("{device}'s sync state at the day's heads in PostgreSQL"),
            Duration::from_secs(30),
            || (pg.psql_on("outpost", &sql).trim() == "1").then_some(()),
        );
    }
    a.signal("KILL");
    // What every failover was before states were shared: b cannot know pos-2's.
    pg.psql_on(
        "outpost",
        &format!(
            "DELETE FROM entries WHERE site = 'paris' AND key = {}",
            state_key("pos-2")
        ),
    );
    // b starts only now, so that it knows the site from the database alone: started earlier,
    // it could load the site from a's notifications and keep pos-2's state in its own cache,
    // and the "cold" failover below would not be cold (the test then measured noise).
    let (_b, b_addr, b_http) = fleet.instance_with_http("cloud-b");
    // One new order on b, which each POS lacks when it fails over.
    let kiosk = within(
        "kiosk",
        Node::start(quiet(fleet.device("kiosk-1", "kiosk", &[b_addr]))),
    )
    .await
    .expect("kiosk starts");
    within("kiosk on b", kiosk.wait_connected(&cloud_id())).await;
    write(&kiosk, 0, 1, "kiosk");
    drained(&kiosk, "b acknowledged the kiosk's order").await;

    pos1.add_static_peer(b_addr);
    let warm = failover_bytes(&pos1, b_http, "pos-1 fails over to b").await;
    has_orders(&pos1, ORDERS + 1, "pos-1 has the kiosk's order from b").await;
    pos1.shutdown().await.expect("pos-1 stops");

    pos2.add_static_peer(b_addr);
    let cold = failover_bytes(&pos2, b_http, "pos-2 fails over to b").await;
    has_orders(&pos2, ORDERS + 1, "pos-2 has the kiosk's order from b").await;
    let bloom = ORDERS as u64 * 10 / 8;
    println!(
        "failover to another instance, {ORDERS} orders in the document, one new order: \
         {warm} bytes with the sync state from the database, {cold} bytes without ({:.1}x; \
         a Bloom filter of the whole document is {bloom} bytes)",
        cold as f64 / warm.max(1) as f64
    );
    // Without a state b sends a Bloom filter of the whole document (10 bits per change);
    // with it, one of what came after the heads it shared with the device.
    assert!(
        warm + bloom / 2 < cold,
        "a device resumes from the shared state: {warm} bytes against {cold} without it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_documents_and_revocations_reach_every_instance() {
    let pg = PgCluster::start();
    let fleet = Fleet::new(&pg);
    let (_a, _, a_http) = fleet.instance_with_http("cloud-a");
    let (_b, b_addr) = fleet.instance("cloud-b");
    let lyon = within(
        "lyon pos",
        Node::start(fleet.device_of("lyon", "pos-1", "pos", &[b_addr])),
    )
    .await
    .expect("lyon pos starts");
    let kiosk = within(
        "paris kiosk",
        Node::start(fleet.device("kiosk-1", "kiosk", &[b_addr])),
    )
    .await
    .expect("kiosk starts");
    within("lyon on b", lyon.wait_connected(&cloud_id())).await;
    within("kiosk on b", kiosk.wait_connected(&cloud_id())).await;

    // Head office writes a fleet price through a's API (the token lives in a's data
    // directory, beside its cache).
    let token = outpost_testbins::api_token(
        &fleet.dir().join("cloud-a"),
        &["--name", "hq", "--sites", "*", "--write"],
    );
    let put = outpost_testbins::http_request(
        a_http,
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"price": 990}"#),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let prices: DocumentId = "prices".parse().expect("doc");
    within("the lyon POS on b gets the price written on a", async {
        while lyon.store().get(&prices, "/burger/price").ok().flatten() != Some(json!(990)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // A revocation posted to a cuts the kiosk off b, and a later instance refuses it too.
    let record = fleet
        .ca
        .revoke(
            &"paris".parse().expect("site"),
            &"kiosk-1".parse().expect("peer"),
            None,
            "stolen",
        )
        .expect("revocation");
    let (code, body) = http_post(a_http, "/revocations", &record.to_bytes());
    assert_eq!(code, 200, "{body}");
    within(
        "b closes the revoked kiosk's link",
        kiosk.wait_disconnected(&cloud_id()),
    )
    .await;
    let (_c, c_addr, c_http) = fleet.instance_with_http("cloud-c");
    kiosk.add_static_peer(c_addr);
    outpost_testbins::eventually(
        "c refuses the revoked kiosk's handshakes",
        Duration::from_secs(30),
        || {
            let (_, text) = http_get(c_http, "/metrics");
            (metric(&text, "outpost_handshake_failures_total").unwrap_or(0) > 0).then_some(())
        },
    );
    // No instance lets it in. (In TLS 1.3 the client's handshake completes before the
    // server judges its certificate: for a moment after each redial the kiosk holds a link
    // that the instance is closing, so its own view is waited for, and c's is asserted.)
    let (_, text) = http_get(c_http, "/metrics");
    assert_eq!(
        metric(&text, "outpost_connected_peers").unwrap_or(0),
        0,
        "c lets the revoked kiosk in"
    );
    outpost_testbins::eventually(
        "the revoked kiosk holds no link",
        Duration::from_secs(10),
        || kiosk.connected_peers().is_empty().then_some(()),
    );

    // An erasure run on a (its control socket) deletes the day from the database, and the
    // erasure list reaches the lyon POS through b.
    write(&lyon, 0, 3, "lyon");
    drained(&lyon, "b acknowledged lyon's orders").await;
    let rows = |site: &str| -> usize {
        pg.psql_on(
            "outpost",
            &format!(
                "SELECT (SELECT count(*) FROM changes WHERE site = '{site}' AND doc = '{doc}') \
                 + (SELECT count(*) FROM snapshots WHERE site = '{site}' AND doc = '{doc}')",
                doc = orders()
            ),
        )
        .trim()
        .parse()
        .expect("count")
    };
    assert!(rows("lyon") >= 3, "lyon's day is in the database");
    let mut erase = std::process::Command::new(outpost_testbins::cloud_bin());
    erase
        .arg("--data")
        .arg(fleet.dir().join("cloud-a"))
        .args(["erase", &orders().to_string(), "--site", "lyon"])
        .env_remove("OUTPOST_DATA");
    let out = outpost_testbins::run_with(erase, STEP);
    println!("erase through instance a: {}", out.expect_ok().trim());
    assert_eq!(rows("lyon"), 0, "the erased day is gone from the database");
    within("the lyon POS on b erases the day", async {
        while lyon.store().has_document(&orders()).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Behind a load balancer, the API must answer alike on every instance: the devices of
/// paris use instance a only, and b (which never saw them) lists the site, reads its
/// documents, exports its orders one line per order and counts its stock, loading the site
/// from the database on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_the_sites_devices_answers_the_api_from_the_database() {
    let pg = PgCluster::start();
    let fleet = Fleet::new(&pg);
    let (_a, a) = fleet.instance("cloud-a");
    let (_b, _, b_http) = fleet.instance_with_http("cloud-b");
    let pos = within("pos", Node::start(fleet.device("pos-1", "pos", &[a])))
        .await
        .expect("pos starts");
    within("pos on a", pos.wait_connected(&cloud_id())).await;
    for i in 0..5 {
        pos.store()
            .put(
                &orders(),
                &format!("/orders/K1-{i:03}"),
                json!({"items": ["burger"], "total": 950 + i}),
                Durability::Fast,
            )
            .expect("the POS writes locally");
    }
    let stock: DocumentId = "stock".parse().expect("doc");
    pos.store()
        .put(&stock, "/burger", json!(7), Durability::Fast)
        .expect("stock");
    pos.store().flush().expect("flush");
    drained(&pos, "instance a committed the POS's orders").await;

    let token = outpost_testbins::api_token(
        &fleet.dir().join("cloud-b"),
        &["--name", "erp", "--sites", "*"],
    );
    let get = |path: &str| {
        outpost_testbins::http_request(
            b_http,
            "GET",
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
    };
    let started = std::time::Instant::now();
    let sites = get("/api/v1/sites");
    assert_eq!(sites.status, 200, "{}", sites.text());
    let names: Vec<String> = sites.json()["sites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["site"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        ["paris"],
        "b lists the site a serves: {}",
        sites.text()
    );
    let read =
        get("/api/v1/sites/paris/documents/orders%2F2026-12-01?pointer=/orders/K1-004/total");
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["value"], json!(954));
    let export = get("/api/v1/export/orders?partition=2026-12-01&lines=item");
    assert_eq!(export.status, 200, "{}", export.text());
    let keys: Vec<String> = export
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        keys,
        ["K1-000", "K1-001", "K1-002", "K1-003", "K1-004"],
        "{}",
        export.text()
    );
    let stock = get("/api/v1/stock/burger");
    assert_eq!(stock.status, 200, "{}", stock.text());
    assert_eq!(stock.json()["total"], json!(7), "{}", stock.text());
    println!(
        "instance b answered sites, a read, an export of 5 orders and stock for a site served by a, in {:?}",
        started.elapsed()
    );
}
