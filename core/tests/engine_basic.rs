//! Two and three engines over in-memory links: sync, relay, refusal, resume.
#![allow(clippy::unwrap_used)]

use outpost_core::{
    Durability, Engine, EngineConfig, Event, PeerInfo, Policy, Store, StoreOptions, Timestamp,
};
use serde_json::json;

struct Node {
    engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

fn node(dir: &std::path::Path, site: &str, peer: &str, role: &str, local_policy: Policy) -> Engine {
    let me = PeerInfo::parse(site, peer, role).unwrap();
    let store = Store::open_with(
        dir,
        StoreOptions {
            identity: Some(me.clone()),
            policy: local_policy,
            ..Default::default()
        },
    )
    .unwrap();
    Engine::new(store, EngineConfig::new(me, Policy::default()))
}

fn new_node(peer: &str, role: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    Node {
        engine: node(dir.path(), "s1", peer, role, Policy::default()),
        _dir: Some(dir),
    }
}

/// Delivers messages between engines until none are left; returns bytes moved.
fn run(nodes: &mut [&mut Engine], now: Timestamp) -> u64 {
    let mut moved = 0;
    loop {
        let mut any = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                any = true;
                moved += t.bytes.len() as u64;
                let from = nodes[i].local().peer.clone();
                if let Some(j) = nodes.iter().position(|n| n.local().peer == t.to) {
                    if nodes[j].is_connected(&from) {
                        if let Err(e) = nodes[j].handle_message(&from, &t.bytes, now) {
                            eprintln!("ERR {e}");
                        }
                    }
                }
            }
        }
        if !any {
            return moved;
        }
    }
}

fn connect(a: &mut Engine, b: &mut Engine, now: Timestamp) {
    let (ai, bi) = (a.local().clone(), b.local().clone());
    a.handle_connect(bi, now);
    b.handle_connect(ai, now);
}

#[test]
fn two_pos_sync_both_ways_and_relay_through_a_third() {
    let now = Timestamp(1_000);
    let (mut a, mut b, mut c) = (
        new_node("pos-1", "pos"),
        new_node("pos-2", "pos"),
        new_node("kitchen-1", "kitchen"),
    );
    let menu = "menu".parse().unwrap();
    let orders = "orders".parse().unwrap();
    a.engine
        .store()
        .put(
            &menu,
            "/items/burger",
            json!({"price": 950, "available": true}),
            Durability::Fast,
        )
        .unwrap();
    c.engine
        .store()
        .put(
            &orders,
            "/o1",
            json!({"sku": "burger", "status": "new"}),
            Durability::Fast,
        )
        .unwrap();
    connect(&mut a.engine, &mut b.engine, now);
    connect(&mut b.engine, &mut c.engine, now);
    run(&mut [&mut a.engine, &mut b.engine, &mut c.engine], now);
    assert_eq!(
        b.engine.store().get(&menu, "/items/burger/price").unwrap(),
        Some(json!(950))
    );
    // The kitchen's order reaches pos-1 through pos-2.
    assert_eq!(
        a.engine.store().get(&orders, "/o1/status").unwrap(),
        Some(json!("new"))
    );
    // Live: a local change is offered at once.
    b.engine
        .store()
        .put(&orders, "/o1/status", json!("paid"), Durability::Fast)
        .unwrap();
    b.engine.handle_local_change(&orders, now);
    run(&mut [&mut a.engine, &mut b.engine, &mut c.engine], now);
    assert_eq!(
        a.engine.store().get(&orders, "/o1/status").unwrap(),
        Some(json!("paid"))
    );
    assert_eq!(
        c.engine.store().get(&orders, "/o1/status").unwrap(),
        Some(json!("paid"))
    );
    let status = a.engine.status();
    assert_eq!(status.unsynced_changes(), 0, "{status:?}");
}

#[test]
fn kiosk_menu_change_is_refused_everywhere() {
    let now = Timestamp(5);
    let pos = new_node("pos-1", "pos");
    let kdir = tempfile::tempdir().unwrap();
    // The kiosk bypasses its local check to act like a tampered device.
    let mut kiosk = node(kdir.path(), "s1", "kiosk-1", "kiosk", Policy::allow_all());
    let mut pos = pos;
    let menu = "menu".parse().unwrap();
    pos.engine
        .store()
        .put(&menu, "/items/fries/price", json!(300), Durability::Fast)
        .unwrap();
    connect(&mut pos.engine, &mut kiosk, now);
    run(&mut [&mut pos.engine, &mut kiosk], now);
    assert_eq!(
        kiosk.store().get(&menu, "/items/fries/price").unwrap(),
        Some(json!(300))
    );
    kiosk
        .store()
        .put(&menu, "/items/fries/price", json!(1), Durability::Fast)
        .unwrap();
    kiosk.handle_local_change(&menu, now);
    run(&mut [&mut pos.engine, &mut kiosk], now);
    assert_eq!(
        pos.engine.store().get(&menu, "/items/fries/price").unwrap(),
        Some(json!(300))
    );
    // Disconnect and reconnect: still refused (nothing sneaks in on a new session).
    pos.engine
        .handle_disconnect(&kiosk.local().peer.clone(), now);
    kiosk.handle_disconnect(&pos.engine.local().peer.clone(), now);
    connect(&mut pos.engine, &mut kiosk, now);
    run(&mut [&mut pos.engine, &mut kiosk], now);
    assert_eq!(
        pos.engine.store().get(&menu, "/items/fries/price").unwrap(),
        Some(json!(300))
    );
    let mut events = Vec::new();
    while let Some(e) = pos.engine.poll_event() {
        events.push(e);
    }
    let refused = events
        .iter()
        .any(|e| matches!(e, Event::ChangeRefused { .. }));
    // The kiosk is read-only for menu, so it may simply never send: either way nothing applies.
    assert!(refused || pos.engine.metrics().changes_refused == 0);
}

/// Bytes moved to resume after `history` orders were synced and 5 more were written offline.
fn resume_bytes(history: usize) -> u64 {
    let now = Timestamp(10);
    let (mut a, mut b) = (new_node("pos-1", "pos"), new_node("pos-2", "pos"));
    let orders = "orders".parse().unwrap();
    for i in 0..history {
        a.engine
            .store()
            .put(
                &orders,
                &format!("/o{i}"),
                json!({"sku": "burger", "qty": 1, "status": "new"}),
                Durability::Fast,
            )
            .unwrap();
    }
    connect(&mut a.engine, &mut b.engine, now);
    run(&mut [&mut a.engine, &mut b.engine], now);
    a.engine.handle_disconnect(&"pos-2".parse().unwrap(), now);
    b.engine.handle_disconnect(&"pos-1".parse().unwrap(), now);
    for i in 0..5 {
        a.engine
            .store()
            .put(
                &orders,
                &format!("/new{i}"),
                json!({"sku": "fries"}),
                Durability::Fast,
            )
            .unwrap();
    }
    connect(&mut a.engine, &mut b.engine, now);
    let moved = run(&mut [&mut a.engine, &mut b.engine], now);
    assert_eq!(
        b.engine.store().get(&orders, "/new4/sku").unwrap(),
        Some(json!("fries"))
    );
    assert_eq!(
        a.engine.store().heads(&orders).unwrap(),
        b.engine.store().heads(&orders).unwrap()
    );
    moved
}

#[test]
fn reconnect_resumes_without_resending_history() {
    let small = resume_bytes(50);
    let large = resume_bytes(1_000);
    // 20x the history, the same 5 new changes: the resume must not grow with history.
    assert!(
        large < small + small / 2,
        "resume after 50 orders: {small} bytes; after 1000: {large} bytes"
    );
}
