//! The audit trail of sync over real QUIC (issue 32): a kiosk's link to the POS opening and
//! closing, a refusal of pushed menu changes (signatures required, the default), and the POS
//! acknowledging the kiosk's orders are in both devices' trails, and still there once their
//! stores are opened again from disk.

mod support;

use outpost_core::engine::wire::WireMessage;
use outpost_core::{AuditKind, AuditQuery, Durability, Event, Store, StoreOptions};
use outpost_transport::{self as tls, Session, SessionConfig};
use serde_json::json;
use support::*;

const ORDERS: &str = "orders/2026-12-07";

fn trail(dir: &std::path::Path) -> Vec<outpost_core::AuditEntry> {
    let store = Store::open(dir).expect("the store opens again");
    let entries = store.audit().query(&AuditQuery::default()).expect("query");
    for e in &entries {
        println!("{}: {e}", dir.display());
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_refusals_and_acknowledgements_are_audited_and_survive_a_restart() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = tls::FleetCa::generate("test").expect("CA");
    let pos_cert = issue(&ca, "s1", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "s1", "kiosk-1", "kiosk");
    let rogue_cert = issue(&ca, "s1", "kiosk-6", "kiosk");
    let (pos_dir, kiosk_dir) = (dir.path().join("pos"), dir.path().join("kiosk"));
    let pos = start(test_config(&pos_dir, &pos_cert, vec![])).await;
    let kiosk = start(test_config(&kiosk_dir, &kiosk_cert, vec![pos.local_addr()])).await;
    wait_connected(&kiosk, "pos-1").await;

    // An order reaches the POS, which acknowledges it (its heads announce it).
    let orders = doc(ORDERS);
    kiosk
        .store()
        .put(
            &orders,
            "/orders/K1-001",
            json!({"total": 950}),
            Durability::Durable,
        )
        .expect("order");
    wait_value(
        "order at the POS",
        pos.store(),
        &orders,
        "/orders/K1-001/total",
        &json!(950),
    )
    .await;
    let kiosk_heads: Vec<String> = kiosk
        .store()
        .heads(&orders)
        .expect("heads")
        .iter()
        .map(ToString::to_string)
        .collect();
    within("the POS's acknowledgement in the kiosk's trail", async {
        loop {
            let acks = kiosk
                .store()
                .audit()
                .query(&AuditQuery {
                    kinds: vec![AuditKind::Acknowledged],
                    peer: Some("pos-1".into()),
                    doc: Some(ORDERS.into()),
                    ..AuditQuery::default()
                })
                .expect("query");
            if acks.last().is_some_and(|a| a.heads == kiosk_heads) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    // A rogue kiosk pushes a menu change: refused.
    let menu = doc("menu");
    let rogue_store = Store::open_with(
        dir.path().join("rogue"),
        StoreOptions {
            identity: Some(rogue_cert.info().clone()),
            policy: outpost_core::Policy::allow_all(),
            ..StoreOptions::default()
        },
    )
    .expect("rogue store");
    rogue_store
        .put(&menu, "/items/burger/price", json!(1), Durability::Fast)
        .expect("rogue writes");
    let sync = automerge::sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: rogue_store
            .changes_since(&menu, &[])
            .expect("changes")
            .into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    let mut events = pos.events();
    let endpoint = endpoint(&rogue_cert, &filter_for(&rogue_cert));
    let conn = within(
        "connect",
        endpoint
            .connect(pos.local_addr(), tls::SERVER_NAME)
            .expect("connect"),
    )
    .await
    .expect("handshake");
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let mut session = Session::start(conn, pos.info().clone(), SessionConfig::default(), tx);
    session
        .send(None, WireMessage::Hello { docs: vec![] }.encode())
        .expect("hello");
    let push = WireMessage::Sync {
        doc: menu.clone(),
        data: sync.encode(),
    };
    session.send(Some(&menu), push.encode()).expect("push");
    wait_event("refusal", &mut events, |e| {
        matches!(e, Event::ChangeRefused { .. })
    })
    .await;
    drop(session);

    // The kiosk stops (its link closes with `shutdown`), then the POS.
    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("clean shutdown");
    wait_event(
        "the kiosk's link closed",
        &mut events,
        |e| matches!(e, Event::PeerDisconnected(p) if p.peer.as_str() == "kiosk-1"),
    )
    .await;
    within("pos shutdown", pos.shutdown())
        .await
        .expect("clean shutdown");

    // Both trails, read from disk after the restart.
    let at_pos = trail(&pos_dir);
    let opened = at_pos
        .iter()
        .find(|e| e.kind == AuditKind::LinkOpened && e.peer.as_deref() == Some("kiosk-1"))
        .expect("the kiosk's link opened at the POS");
    assert_eq!(opened.site.as_deref(), Some("s1"));
    assert_eq!(opened.role.as_deref(), Some("kiosk"));
    assert_eq!(opened.dialed_by_us, Some(false), "the kiosk dialed");
    let closed = at_pos
        .iter()
        .find(|e| e.kind == AuditKind::LinkClosed && e.peer.as_deref() == Some("kiosk-1"))
        .expect("the kiosk's link closed at the POS");
    assert_eq!(closed.detail, "closed by the peer: shutting down (0x00)");
    assert!(closed.at_ms >= opened.at_ms);
    let refused = at_pos
        .iter()
        .find(|e| e.kind == AuditKind::ChangesRefused)
        .expect("the refusal at the POS");
    assert_eq!(refused.peer.as_deref(), Some("kiosk-6"));
    assert_eq!(refused.doc.as_deref(), Some("menu"));
    assert_eq!(refused.rule.as_deref(), Some("write"), "{refused}");
    assert_eq!(refused.authors, vec!["kiosk-6 (kiosk)".to_string()]);
    assert!(refused.detail.contains("may not write"), "{refused}");

    let at_kiosk = trail(&kiosk_dir);
    let opened = at_kiosk
        .iter()
        .find(|e| e.kind == AuditKind::LinkOpened)
        .expect("the link opened at the kiosk");
    assert_eq!(opened.peer.as_deref(), Some("pos-1"));
    assert_eq!(opened.dialed_by_us, Some(true));
    let closed = at_kiosk
        .iter()
        .find(|e| e.kind == AuditKind::LinkClosed)
        .expect("the link closed at the kiosk");
    assert_eq!(closed.detail, "closed here: shutting down (0x00)");
    let ack = at_kiosk
        .iter()
        .rev()
        .find(|e| e.kind == AuditKind::Acknowledged && e.doc.as_deref() == Some(ORDERS))
        .expect("the POS's acknowledgement survived");
    assert_eq!(ack.heads, kiosk_heads, "{ack}");
    println!(
        "pos: {} entries, kiosk: {} entries",
        at_pos.len(),
        at_kiosk.len()
    );
}
