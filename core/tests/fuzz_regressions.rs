//! Replays the committed fuzz inputs of `fuzz/regressions/` as ordinary tests, so a crash
//! found by fuzzing stays fixed. Each target's check mirrors its fuzz target.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use outpost_core::engine::wire::WireMessage;
use outpost_core::{
    Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions, Timestamp,
};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no regression inputs in {}", dir.display());
    out
}

#[test]
fn wire_decode_regressions() {
    for (name, data) in inputs("wire_decode") {
        if let Ok(msg) = WireMessage::decode(&data) {
            assert_eq!(WireMessage::decode(&msg.encode()).unwrap(), msg, "{name}");
        }
    }
}

#[test]
fn sync_apply_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let me = PeerInfo::parse("s1", "pos-1", "pos").unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            identity: Some(me.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let menu = "menu".parse().unwrap();
    store
        .put(&menu, "/items/burger/price", 950.into(), Durability::Fast)
        .unwrap();
    let mut engine = Engine::new(store, EngineConfig::new(me, Policy::default()));
    let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").unwrap();
    engine.handle_connect(kiosk.clone(), Timestamp(0));
    for (name, data) in inputs("sync_apply") {
        let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
        let bytes = match mode % 3 {
            0 => rest.to_vec(),
            1 => WireMessage::Sync {
                doc: "menu".parse().unwrap(),
                data: rest.to_vec(),
            }
            .encode(),
            _ => WireMessage::Sync {
                doc: "orders".parse().unwrap(),
                data: rest.to_vec(),
            }
            .encode(),
        };
        let _ = engine.handle_message(&kiosk.peer, &bytes, Timestamp(1));
        while engine.poll_transmit().is_some() {}
        while engine.poll_event().is_some() {}
        assert_eq!(
            engine.store().get(&menu, "/items/burger/price").unwrap(),
            Some(950.into()),
            "{name}"
        );
    }
}
