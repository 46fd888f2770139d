//! Link management of a node: duplicate connections, cutting and restoring links,
//! revocation at runtime, and misbehaving peers.

mod support;

use std::time::Duration;

use outpost_core::CloseCode;
use outpost_core::Durability;
use outpost_core::Event;
use outpost_transport::{self as frame, CloseCodeExt};
use outpost_transport::{self as tls, DenyEntry, FleetCa, SiteRule};
use serde_json::json;
use support::*;

struct Pair {
    _dir: tempfile::TempDir,
    ca: FleetCa,
    pos: outpost_transport::Node,
    kiosk: outpost_transport::Node,
}

/// A POS and a kiosk; the kiosk dials the POS.
async fn pair() -> Pair {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = start(test_config(
        &dir.path().join("pos"),
        &issue(&ca, "lyon", "pos-1", "pos"),
        vec![],
    ))
    .await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &issue(&ca, "lyon", "kiosk-1", "kiosk"),
        vec![pos.local_addr()],
    ))
    .await;
    wait_connected(&kiosk, "pos-1").await;
    wait_connected(&pos, "kiosk-1").await;
    Pair {
        _dir: dir,
        ca,
        pos,
        kiosk,
    }
}

impl Pair {
    async fn shutdown(self) {
        within("kiosk shutdown", self.kiosk.shutdown())
            .await
            .expect("shutdown");
        within("pos shutdown", self.pos.shutdown())
            .await
            .expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_dialing_each_other_keep_one_connection() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    // Bind both first, then make each a static peer of the other.
    let a_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let b_cert = issue(&ca, "lyon", "pos-1", "pos");
    let a = start(test_config(&dir.path().join("a"), &a_cert, vec![])).await;
    let b = start(test_config(&dir.path().join("b"), &b_cert, vec![])).await;
    let mut a_events = a.events();
    a.add_static_peer(b.local_addr());
    b.add_static_peer(a.local_addr());
    wait_connected(&a, "pos-1").await;
    wait_connected(&b, "kiosk-1").await;

    // Over a while, writes flow both ways and the link does not flap.
    let orders = doc("orders/2026-11-24");
    for i in 0..10 {
        a.store()
            .put(&orders, &format!("/a-{i}"), json!(i), Durability::Fast)
            .expect("a writes");
        b.store()
            .put(&orders, &format!("/b-{i}"), json!(i), Durability::Fast)
            .expect("b writes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_value("a's order at b", b.store(), &orders, "/a-9", &json!(9)).await;
    wait_value("b's order at a", a.store(), &orders, "/b-9", &json!(9)).await;
    wait_converged("orders", &[a.store(), b.store()], &orders).await;
    assert_eq!(a.connected_peers().len(), 1);
    assert_eq!(b.connected_peers().len(), 1);
    let mut disconnects = 0;
    while let Ok(e) = a_events.try_recv() {
        if matches!(e, Event::PeerDisconnected(_)) {
            disconnects += 1;
        }
    }
    assert_eq!(
        disconnects, 0,
        "keeping one of two connections is not a disconnect"
    );

    within("a shutdown", a.shutdown()).await.expect("shutdown");
    within("b shutdown", b.shutdown()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_restored_link() {
    let p = pair().await;
    let orders = doc("orders/2026-11-24");
    let mut pos_events = p.pos.events();

    within("cut", p.kiosk.cut_link(&peer("pos-1")))
        .await
        .expect("cut");
    within(
        "pos sees the cut",
        p.pos.wait_disconnected(&peer("kiosk-1")),
    )
    .await;
    wait_event("disconnected event", &mut pos_events, |e| {
        matches!(e, Event::PeerDisconnected(_))
    })
    .await;
    p.kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        p.pos.store().get(&orders, "/o-1/status").ok().flatten(),
        None,
        "nothing crosses a cut link"
    );
    assert!(p.kiosk.connected_peers().is_empty());

    p.kiosk.restore_link(&peer("pos-1"));
    wait_value(
        "order after restore",
        p.pos.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;
    wait_event("connected event", &mut pos_events, |e| {
        matches!(e, Event::PeerConnected(_))
    })
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_refused_when_the_peer_dials_in() {
    let p = pair().await;
    let orders = doc("orders/2026-11-24");
    // The POS cuts the link; the kiosk keeps dialing and is refused.
    within("cut", p.pos.cut_link(&peer("kiosk-1")))
        .await
        .expect("cut");
    within(
        "kiosk sees the cut",
        p.kiosk.wait_disconnected(&peer("pos-1")),
    )
    .await;
    p.kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        p.pos.store().get(&orders, "/o-1/status").ok().flatten(),
        None
    );
    p.pos.restore_link(&peer("kiosk-1"));
    wait_value(
        "order after restore",
        p.pos.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_static_peer_is_redialed() {
    let p = pair().await;
    assert!(
        within("disconnect", p.pos.disconnect_peer(&peer("kiosk-1")))
            .await
            .expect("disconnect")
    );
    within("gone", p.pos.wait_disconnected(&peer("kiosk-1"))).await;
    wait_connected(&p.pos, "kiosk-1").await;
    let orders = doc("orders/2026-11-24");
    p.kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    wait_value(
        "order after redial",
        p.pos.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;
    assert!(
        !within("disconnect unknown", p.pos.disconnect_peer(&peer("nobody")))
            .await
            .expect("disconnect")
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_dialing_and_resume() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = start(test_config(
        &dir.path().join("pos"),
        &issue(&ca, "lyon", "pos-1", "pos"),
        vec![],
    ))
    .await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &issue(&ca, "lyon", "kiosk-1", "kiosk"),
        vec![],
    ))
    .await;
    kiosk.pause_dialing(pos.local_addr());
    assert!(kiosk.add_static_peer(pos.local_addr()));
    assert!(!kiosk.add_static_peer(pos.local_addr()), "added once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        kiosk.connected_peers().is_empty(),
        "a paused address is not dialed"
    );
    kiosk.resume_dialing(pos.local_addr());
    wait_connected(&kiosk, "pos-1").await;
    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("shutdown");
    within("pos shutdown", pos.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_at_runtime_closes_the_link_and_refuses_redials() {
    let p = pair().await;
    within(
        "revoke",
        p.pos.revoke(DenyEntry::SitePeer(
            "lyon".parse().expect("site"),
            peer("kiosk-1"),
        )),
    )
    .await
    .expect("revoke");
    within(
        "revoked peer gone",
        p.pos.wait_disconnected(&peer("kiosk-1")),
    )
    .await;
    let orders = doc("orders/2026-11-24");
    p.kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        p.pos.connected_peers().is_empty(),
        "revoked kiosk must not get back in"
    );
    assert_eq!(
        p.pos.store().get(&orders, "/o-1/status").ok().flatten(),
        None
    );
    // Status says why, and a revoked peer is not a backlog that never drains.
    let status = within("pos status", p.pos.status()).await.expect("status");
    let kiosk = status.peer(&peer("kiosk-1")).expect("kiosk in status");
    assert!(kiosk.revoked && !kiosk.connected, "{kiosk:?}");
    assert!(kiosk.offline_since.is_some(), "{kiosk:?}");
    assert!(
        kiosk
            .offline_reason
            .as_deref()
            .is_some_and(|r| r.contains("revoked")),
        "{kiosk:?}"
    );
    assert_eq!(status.unsynced_changes(), 0, "{status:?}");
    let status = within("kiosk status", p.kiosk.status())
        .await
        .expect("status");
    let pos = status.peer(&peer("pos-1")).expect("pos in status");
    assert!(
        pos.offline_reason
            .as_deref()
            .is_some_and(|r| r.contains("revoked")),
        "the kiosk learns why: {pos:?}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_peer_closes_only_its_connection() {
    let p = pair().await;
    let evil_cert = issue(&p.ca, "lyon", "kiosk-9", "kiosk");
    let ep = endpoint(&evil_cert, &filter_for(&evil_cert));
    let conn = within(
        "evil connect",
        ep.connect(p.pos.local_addr(), tls::SERVER_NAME)
            .expect("connect"),
    )
    .await
    .expect("handshake");
    within("evil registered", p.pos.wait_connected(&peer("kiosk-9"))).await;
    let (mut send, _recv) = within("open bi", conn.open_bi()).await.expect("open bi");
    frame::write_frame(&mut send, b"", frame::DEFAULT_MAX_FRAME_SIZE)
        .await
        .expect("header");
    send.write_all(&[0x7f, 0xff, 0xff, 0xff])
        .await
        .expect("oversized length");
    let error = within("evil closed", conn.closed()).await;
    assert_eq!(
        CloseCode::of_connection_error(&error),
        Some(CloseCode::FrameTooLarge),
        "{error}"
    );
    within("evil gone", p.pos.wait_disconnected(&peer("kiosk-9"))).await;

    // Engine-level garbage in a well-formed frame: logged, the link stays up.
    let conn = within(
        "evil reconnect",
        ep.connect(p.pos.local_addr(), tls::SERVER_NAME)
            .expect("connect"),
    )
    .await
    .expect("handshake");
    within(
        "evil registered again",
        p.pos.wait_connected(&peer("kiosk-9")),
    )
    .await;
    let mut events = p.pos.events();
    let (mut send, _recv) = within("open bi", conn.open_bi()).await.expect("open bi");
    frame::write_frame(&mut send, b"", frame::DEFAULT_MAX_FRAME_SIZE)
        .await
        .expect("header");
    frame::write_frame(&mut send, b"\x01garbage", frame::DEFAULT_MAX_FRAME_SIZE)
        .await
        .expect("garbage");
    wait_event("protocol error", &mut events, |e| {
        matches!(e, Event::ProtocolError { .. })
    })
    .await;
    assert!(
        conn.close_reason().is_none(),
        "undecodable engine messages do not close the link"
    );

    // The good kiosk never noticed.
    let orders = doc("orders/2026-11-24");
    p.kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    wait_value(
        "good kiosk still syncs",
        p.pos.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;
    assert!(p
        .kiosk
        .connected_peers()
        .iter()
        .any(|i| i.peer.as_str() == "pos-1"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_peers_and_backlog() {
    let p = pair().await;
    let orders = doc("orders/2026-11-24");
    p.kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order");
    wait_value(
        "order",
        p.pos.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;
    within("in sync", async {
        loop {
            let status = p.kiosk.status().await.expect("status");
            if status
                .peer(&peer("pos-1"))
                .is_some_and(|s| s.connected && s.they_lack() == 0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_itself_is_harmless() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let cert = issue(&ca, "lyon", "pos-1", "pos");
    let node = start(test_config(&dir.path().join("pos"), &cert, vec![])).await;
    node.add_static_peer(node.local_addr());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(node.connected_peers().is_empty());
    within("shutdown", node.shutdown()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_cloud_certificate_serves_one_site_only() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let cloud_cert = issue(&ca, "acme", "cloud-1", "cloud");
    // Without a site, a Node would quietly become a second multi-site cloud: refused.
    let err =
        outpost_transport::Node::start(test_config(&dir.path().join("cloud"), &cloud_cert, vec![]))
            .await
            .expect_err("a cloud identity without a site must be refused");
    assert!(
        matches!(err, outpost_transport::Error::MultiSiteNode { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("outpost-cloud"), "{err}");
    let mut config = test_config(&dir.path().join("cloud"), &cloud_cert, vec![]);
    config.site_rule = Some(SiteRule::SameSite("lyon".parse().expect("site")));
    let cloud = start(config).await;
    let lyon = start(test_config(
        &dir.path().join("lyon"),
        &issue(&ca, "lyon", "pos-1", "pos"),
        vec![cloud.local_addr()],
    ))
    .await;
    wait_connected(&lyon, "cloud-1").await;
    let paris = start(test_config(
        &dir.path().join("paris"),
        &issue(&ca, "paris", "pos-2", "pos"),
        vec![cloud.local_addr()],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        paris.connected_peers().is_empty(),
        "a device of another site is refused by a one-site cloud node"
    );
    let connected = cloud.connected_peers();
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0].site.as_str(), "lyon");
    for node in [paris, lyon, cloud] {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_node_releases_its_store() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let cert = issue(&ca, "lyon", "pos-1", "pos");
    let node = start(test_config(&dir.path().join("pos"), &cert, vec![])).await;
    let menu = doc("menu");
    node.store()
        .put(&menu, "/x", json!(1), Durability::Durable)
        .expect("write");
    drop(node);
    let node = within("reopen after drop", async {
        loop {
            match outpost_transport::Node::start(test_config(
                &dir.path().join("pos"),
                &cert,
                vec![],
            ))
            .await
            {
                Ok(node) => return node,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(node.store().get(&menu, "/x").expect("read"), Some(json!(1)));
    within("shutdown", node.shutdown()).await.expect("shutdown");
}
