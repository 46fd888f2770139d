//! Messages from an untrusted kiosk applied to a POS's store through the engine and its access
//! policy: never panics, and nothing the kiosk may not write ever reaches the menu.
#![no_main]
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use outpost_core::engine::wire::WireMessage;
use outpost_core::{Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions, Timestamp};

struct Target {
    engine: Engine,
    kiosk: PeerInfo,
    _dir: tempfile::TempDir,
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

fn target() -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let me = PeerInfo::parse("s1", "pos-1", "pos").expect("valid identity");
    let options = StoreOptions { identity: Some(me.clone()), ..Default::default() };
    let store = Store::open_with(dir.path(), options).expect("store opens");
    let menu = "menu".parse().expect("valid id");
    store.put(&menu, "/items/burger/price", 950.into(), Durability::Fast).expect("seed menu");
    let mut engine = Engine::new(store, EngineConfig::new(me, Policy::default()));
    let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").expect("valid identity");
    engine.handle_connect(kiosk.clone(), Timestamp(0));
    Target { engine, kiosk, _dir: dir }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = TARGET.lock().unwrap_or_else(|p| p.into_inner());
    let t = guard.get_or_insert_with(target);
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let bytes = match mode % 3 {
        // Raw wire bytes.
        0 => rest.to_vec(),
        // An Automerge sync payload for the menu (the kiosk may not write it) or the orders.
        1 => WireMessage::Sync { doc: "menu".parse().expect("valid"), data: rest.to_vec() }.encode(),
        _ => WireMessage::Sync { doc: "orders".parse().expect("valid"), data: rest.to_vec() }.encode(),
    };
    let _ = t.engine.handle_message(&t.kiosk.peer, &bytes, Timestamp(1));
    while t.engine.poll_transmit().is_some() {}
    while t.engine.poll_event().is_some() {}
    let menu = "menu".parse().expect("valid");
    let price = t.engine.store().get(&menu, "/items/burger/price").expect("menu stays readable");
    assert_eq!(price, Some(950.into()), "a kiosk changed the menu");
});
