//! The engine's side of `Durability::Replicated`: a wait for a peer to hold a write is
//! answered only once a peer that received the change announces heads covering it, never
//! by a peer that does not read the document, and can be cancelled.

use outpost_core::engine::HeldWait;
use outpost_core::{
    Durability, Engine, EngineConfig, PeerId, PeerInfo, Policy, Store, StoreOptions, Timestamp,
};
use serde_json::json;

fn engine(dir: &std::path::Path, peer: &str, role: &str) -> Engine {
    let me = PeerInfo::parse("lyon", peer, role).expect("identity");
    let store = Store::open_with(
        dir,
        StoreOptions {
            identity: Some(me.clone()),
            ..Default::default()
        },
    )
    .expect("store");
    Engine::new(store, EngineConfig::new(me, Policy::default()))
}

/// Delivers messages until none are left; returns how many were delivered.
fn run(nodes: &mut [&mut Engine], now: Timestamp) -> usize {
    let mut moved = 0;
    loop {
        let mut any = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                any = true;
                moved += 1;
                let from = nodes[i].local().peer.clone();
                if let Some(j) = nodes.iter().position(|n| n.local().peer == t.to) {
                    nodes[j]
                        .handle_message(&from, &t.bytes, now)
                        .expect("a message between honest engines");
                }
            }
        }
        if !any {
            return moved;
        }
    }
}

fn answers(e: &mut Engine) -> Vec<(HeldWait, PeerId)> {
    std::iter::from_fn(|| e.poll_held()).collect()
}

#[test]
fn a_wait_is_answered_by_a_peer_that_holds_the_write_and_only_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pos = engine(&dir.path().join("pos"), "pos-1", "pos");
    let mut kiosk = engine(&dir.path().join("kiosk"), "kiosk-1", "kiosk");
    // A menu board does not read orders: it never holds them, so it never answers.
    let mut board = engine(&dir.path().join("board"), "board-1", "menu-board");
    let now = Timestamp(1_000);
    pos.handle_connect(board.local().clone(), now);
    board.handle_connect(pos.local().clone(), now);
    run(&mut [&mut pos, &mut board], now);

    let day = "orders/2026-12-07".parse().expect("doc");
    pos.store()
        .put(
            &day,
            "/orders/o-1",
            json!({"total": 950}),
            Durability::Durable,
        )
        .expect("write");
    let heads = pos.store().heads(&day).expect("heads");
    let waiting = pos.await_held(day.clone(), heads.clone());
    pos.handle_local_change(&day, now);
    let moved = run(&mut [&mut pos, &mut board], now);
    println!(
        "with only a menu board linked: {moved} messages, {} waits",
        pos.held_waits()
    );
    assert!(
        answers(&mut pos).is_empty(),
        "the menu board holds no order"
    );
    assert_eq!(pos.held_waits(), 1);

    // The kiosk connects: the order reaches it, it flushes and answers with its heads.
    pos.handle_connect(kiosk.local().clone(), now);
    kiosk.handle_connect(pos.local().clone(), now);
    run(&mut [&mut pos, &mut kiosk, &mut board], now);
    assert_eq!(
        answers(&mut pos),
        vec![(waiting, kiosk.local().peer.clone())]
    );
    assert_eq!(
        kiosk.store().get(&day, "/orders/o-1/total").expect("read"),
        Some(json!(950))
    );
    assert_eq!(pos.held_waits(), 0);

    // Heads already held are answered at once; an earlier write is covered by later heads.
    let again = pos.await_held(day.clone(), heads);
    assert_eq!(answers(&mut pos), vec![(again, kiosk.local().peer.clone())]);

    // A wait given up on is forgotten, and a later answer does not name it.
    pos.store()
        .put(
            &day,
            "/orders/o-2",
            json!({"total": 1250}),
            Durability::Durable,
        )
        .expect("write");
    let abandoned = pos.await_held(day.clone(), pos.store().heads(&day).expect("heads"));
    assert!(pos.cancel_held(abandoned));
    assert!(!pos.cancel_held(abandoned), "already forgotten");
    pos.handle_local_change(&day, now);
    run(&mut [&mut pos, &mut kiosk, &mut board], now);
    assert!(answers(&mut pos).is_empty());
    assert_eq!(pos.held_waits(), 0);
}
