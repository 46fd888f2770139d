//! A site of three devices and a cloud peer syncing over real QUIC on 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use outpost_core::Event;
use outpost_core::{Durability, Policy};
use outpost_transport::{FleetCa, Node};
use serde_json::json;
use support::*;

struct Site {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    ca: FleetCa,
}

impl Site {
    fn new() -> Site {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        Site {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            ca: FleetCa::generate("acme").expect("ca"),
        }
    }

    fn config(
        &self,
        site: &str,
        name: &str,
        role: &str,
        peers: Vec<SocketAddr>,
    ) -> outpost_transport::NodeConfig {
        let cert = issue(&self.ca, site, name, role);
        test_config(&self.dir.join(name), &cert, peers)
    }

    async fn cloud(&self) -> Node {
        start(self.cloud_config()).await
    }

    /// A cloud node serves one site: this one.
    fn cloud_config(&self) -> outpost_transport::NodeConfig {
        let mut config = self.config("acme", "cloud-1", "cloud", vec![]);
        config.site_rule = Some(outpost_transport::SiteRule::SameSite(
            "lyon".parse().expect("valid site"),
        ));
        config
    }

    async fn device(&self, name: &str, role: &str, peers: Vec<SocketAddr>) -> Node {
        start(self.config("lyon", name, role, peers)).await
    }
}

async fn absent(store: &outpost_core::Store, doc: &outpost_core::DocumentId, path: &str) -> bool {
    !matches!(store.get(doc, path), Ok(Some(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_device_reaches_all_others() {
    let site = Site::new();
    let cloud = site.cloud().await;
    let pos = site.device("pos-1", "pos", vec![cloud.local_addr()]).await;
    let kiosk = site
        .device(
            "kiosk-1",
            "kiosk",
            vec![cloud.local_addr(), pos.local_addr()],
        )
        .await;
    let kitchen = site
        .device(
            "kitchen-1",
            "kitchen",
            vec![cloud.local_addr(), pos.local_addr(), kiosk.local_addr()],
        )
        .await;

    // An order from the kiosk reaches the POS, the kitchen and the cloud.
    let orders = doc("orders/2026-11-24");
    kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("write order");
    for node in [&pos, &kitchen, &cloud] {
        wait_value(
            &format!("order at {}", node.info().peer),
            node.store(),
            &orders,
            "/o-1/status",
            &json!("new"),
        )
        .await;
    }

    // A menu change from the POS reaches every reader.
    let menu = doc("menu");
    pos.store()
        .put(
            &menu,
            "/items/burger/price",
            json!(950),
            Durability::Durable,
        )
        .expect("write menu");
    for node in [&kiosk, &kitchen, &cloud] {
        wait_value(
            &format!("menu at {}", node.info().peer),
            node.store(),
            &menu,
            "/items/burger/price",
            &json!(950),
        )
        .await;
    }

    // The kitchen moves the order on; everyone who reads orders sees it.
    kitchen
        .store()
        .put(&orders, "/o-1/status", json!("cooking"), Durability::Fast)
        .expect("kitchen update");
    for node in [&pos, &kiosk, &cloud] {
        wait_value(
            "status update",
            node.store(),
            &orders,
            "/o-1/status",
            &json!("cooking"),
        )
        .await;
    }

    // Stock counters from two devices add up everywhere.
    let stock = doc("stock");
    pos.store()
        .increment(&stock, "/burger", 20, Durability::Fast)
        .expect("stock");
    wait_value(
        "stock at kiosk",
        kiosk.store(),
        &stock,
        "/burger",
        &json!(20),
    )
    .await;
    kiosk
        .store()
        .increment(&stock, "/burger", -1, Durability::Fast)
        .expect("kiosk sale");
    pos.store()
        .increment(&stock, "/burger", -1, Durability::Fast)
        .expect("pos sale");
    for node in [&pos, &kiosk, &kitchen, &cloud] {
        wait_value("stock total", node.store(), &stock, "/burger", &json!(18)).await;
    }

    // The kitchen may not read the `other` default context: nothing is sent to it.
    let notes = doc("notes");
    pos.store()
        .put(&notes, "/x", json!(1), Durability::Fast)
        .expect("pos notes");
    wait_value("notes at cloud", cloud.store(), &notes, "/x", &json!(1)).await;
    assert!(
        absent(kitchen.store(), &notes, "/x").await,
        "kitchen must not receive what it may not read"
    );

    let status = within("status", pos.status()).await.expect("status");
    assert!(
        status.peer(&peer("cloud-1")).is_some_and(|p| p.connected),
        "{status:?}"
    );

    for node in [kitchen, kiosk, pos, cloud] {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_order_reaches_pos_while_cloud_is_down_and_cloud_catches_up() {
    let site = Site::new();
    let cloud = site.cloud().await;
    let cloud_addr = cloud.local_addr();
    let pos = site.device("pos-1", "pos", vec![cloud_addr]).await;
    let kiosk = site
        .device("kiosk-1", "kiosk", vec![cloud_addr, pos.local_addr()])
        .await;
    wait_connected(&kiosk, "pos-1").await;
    wait_connected(&kiosk, "cloud-1").await;
    wait_connected(&pos, "cloud-1").await;

    let orders = doc("orders/2026-11-24");
    kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order 1");
    wait_value(
        "order 1 at cloud",
        cloud.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;

    // The cloud goes down.
    within("cloud shutdown", cloud.shutdown())
        .await
        .expect("cloud shutdown");
    within("pos notices", pos.wait_disconnected(&peer("cloud-1"))).await;
    within("kiosk notices", kiosk.wait_disconnected(&peer("cloud-1"))).await;

    // The site keeps working on its own.
    kiosk
        .store()
        .put(&orders, "/o-2/status", json!("new"), Durability::Durable)
        .expect("order 2");
    wait_value(
        "order 2 at pos",
        pos.store(),
        &orders,
        "/o-2/status",
        &json!("new"),
    )
    .await;
    pos.store()
        .put(&orders, "/o-2/status", json!("paid"), Durability::Durable)
        .expect("pay");
    wait_value(
        "payment at kiosk",
        kiosk.store(),
        &orders,
        "/o-2/status",
        &json!("paid"),
    )
    .await;
    let menu = doc("menu");
    pos.store()
        .put(
            &menu,
            "/items/fries/available",
            json!(false),
            Durability::Durable,
        )
        .expect("menu");

    // The cloud comes back on the same address and catches up.
    let mut config = site.cloud_config();
    config.listen = cloud_addr;
    let cloud = start_retrying(config).await;
    wait_value(
        "order 2 at cloud",
        cloud.store(),
        &orders,
        "/o-2/status",
        &json!("paid"),
    )
    .await;
    wait_value(
        "menu at cloud",
        cloud.store(),
        &menu,
        "/items/fries/available",
        &json!(false),
    )
    .await;
    wait_converged(
        "orders",
        &[pos.store(), kiosk.store(), cloud.store()],
        &orders,
    )
    .await;

    for node in [kiosk, pos, cloud] {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}

/// Starts a node, retrying while its fixed UDP port is still held by a previous run.
async fn start_retrying(config: outpost_transport::NodeConfig) -> Node {
    within("restart on the same address", async {
        loop {
            match Node::start(config.clone()).await {
                Ok(node) => return node,
                Err(outpost_transport::Error::Bind { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
    })
    .await
}

/// A kiosk whose store skips the local policy check writes the menu. Every receiver
/// declares itself read-only for the kiosk's menu in the Automerge sync exchange, so the
/// kiosk's engine never even sends the change; nothing is stored anywhere and the links
/// stay up for what the kiosk may write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_writing_the_menu_is_refused_everywhere() {
    let site = Site::new();
    let cloud = site.cloud().await;
    let pos = site.device("pos-1", "pos", vec![cloud.local_addr()]).await;
    let kitchen = site
        .device(
            "kitchen-1",
            "kitchen",
            vec![cloud.local_addr(), pos.local_addr()],
        )
        .await;
    // A tampered kiosk: its store does not check the policy locally.
    let mut config = site.config(
        "lyon",
        "kiosk-1",
        "kiosk",
        vec![cloud.local_addr(), pos.local_addr(), kitchen.local_addr()],
    );
    config.store_policy = Some(Policy::allow_all());
    let kiosk = start(config).await;
    for other in ["pos-1", "kitchen-1", "cloud-1"] {
        wait_connected(&kiosk, other).await;
    }
    let menu = doc("menu");
    pos.store()
        .put(
            &menu,
            "/items/burger/price",
            json!(950),
            Durability::Durable,
        )
        .expect("pos writes the menu");
    wait_value(
        "menu at kiosk",
        kiosk.store(),
        &menu,
        "/items/burger/price",
        &json!(950),
    )
    .await;

    kiosk
        .store()
        .put(&menu, "/items/burger/price", json!(1), Durability::Durable)
        .expect("tampered kiosk writes locally");
    kiosk
        .store()
        .put(&menu, "/items/free-lunch", json!(true), Durability::Durable)
        .expect("tampered kiosk writes locally");

    // The link stays up for what is allowed: an order written afterwards reaches everyone.
    let orders = doc("orders/2026-11-24");
    kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    for node in [&pos, &kitchen, &cloud] {
        wait_value(
            "order after the menu write",
            node.store(),
            &orders,
            "/o-1/status",
            &json!("new"),
        )
        .await;
    }
    pos.store()
        .put(&menu, "/items/fries/price", json!(300), Durability::Durable)
        .expect("pos menu update");
    for node in [&kiosk, &kitchen, &cloud] {
        wait_value(
            "later menu change",
            node.store(),
            &menu,
            "/items/fries/price",
            &json!(300),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in [&pos, &kitchen, &cloud] {
        assert_eq!(
            node.store()
                .get(&menu, "/items/burger/price")
                .expect("read"),
            Some(json!(950)),
            "at {}",
            node.info().peer
        );
        assert!(
            absent(node.store(), &menu, "/items/free-lunch").await,
            "menu change leaked to {}",
            node.info().peer
        );
    }

    for node in [kiosk, kitchen, pos, cloud] {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}

/// A kiosk that pushes menu changes without waiting to be asked (a hand-made Automerge
/// sync message): every receiver refuses them, tells the kiosk, stores nothing, and keeps
/// the link up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_pushed_by_a_kiosk_are_refused_at_every_receiver() {
    use outpost_core::engine::wire::{WireMessage, WIRE_VERSION};
    use outpost_transport::{self as tls, Session, SessionConfig, SessionEvent};

    let site = Site::new();
    let cloud = site.cloud().await;
    let pos = site.device("pos-1", "pos", vec![cloud.local_addr()]).await;
    let kitchen = site
        .device(
            "kitchen-1",
            "kitchen",
            vec![cloud.local_addr(), pos.local_addr()],
        )
        .await;

    // The kiosk's change, authored with its identity in a store without local checks.
    let kiosk_cert = issue(&site.ca, "lyon", "kiosk-6", "kiosk");
    let menu = doc("menu");
    let kiosk_store = outpost_core::Store::open_with(
        site.dir.join("kiosk-6"),
        outpost_core::StoreOptions {
            identity: Some(kiosk_cert.info().clone()),
            policy: Policy::allow_all(),
            ..Default::default()
        },
    )
    .expect("kiosk store");
    kiosk_store
        .put(&menu, "/items/burger/price", json!(1), Durability::Fast)
        .expect("kiosk writes");
    let changes = kiosk_store.changes_since(&menu, &[]).expect("changes");
    let sync = automerge::sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: changes.into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    let push = WireMessage::Sync {
        doc: menu.clone(),
        data: sync.encode(),
    }
    .encode();
    let hello = WireMessage::Hello { docs: vec![] }.encode();
    assert_eq!(hello[0], WIRE_VERSION);

    let endpoint = endpoint(&kiosk_cert, &filter_for(&kiosk_cert));
    for node in [&pos, &kitchen, &cloud] {
        let mut events = node.events();
        let conn = within(
            "connect",
            endpoint
                .connect(node.local_addr(), tls::SERVER_NAME)
                .expect("connect"),
        )
        .await
        .expect("handshake");
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let mut session = Session::start(conn, node.info().clone(), SessionConfig::default(), tx);
        session.send(None, hello.clone()).expect("hello");
        session.send(Some(&menu), push.clone()).expect("push");

        let event = wait_event("refusal", &mut events, |e| {
            matches!(e, Event::ChangeRefused { .. })
        })
        .await;
        let Event::ChangeRefused {
            peer: from,
            doc: d,
            reason,
        } = event
        else {
            unreachable!()
        };
        assert_eq!((from, &d), (peer("kiosk-6"), &menu));
        assert!(reason.contains("kiosk"), "{reason}");
        // The kiosk is told why.
        let refused = within("refused message", async {
            loop {
                match rx.recv().await {
                    Some(SessionEvent::Message { bytes, .. }) => {
                        if let Ok(WireMessage::Refused { doc, reason }) =
                            WireMessage::decode(&bytes)
                        {
                            return (doc, reason);
                        }
                    }
                    Some(SessionEvent::Closed { error, .. }) => panic!("link closed: {error}"),
                    None => panic!("session gone"),
                }
            }
        })
        .await;
        assert_eq!(refused.0, menu);
        assert!(
            node.connected_peers()
                .iter()
                .any(|p| p.peer.as_str() == "kiosk-6"),
            "link stays up"
        );
        assert!(
            absent(node.store(), &menu, "/items/burger/price").await,
            "change stored at {}",
            node.info().peer
        );
        session
            .finish(outpost_core::CloseCode::Shutdown, Duration::from_secs(1))
            .await;
    }

    for node in [kitchen, pos, cloud] {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}
