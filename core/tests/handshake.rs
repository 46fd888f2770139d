//! The handshake scales: two peers holding 100,000 documents reconnect with bytes
//! proportional to what differs between them ([`Protocol::V2`] range digests), where the
//! first protocol's `Hello` lists every document. Printed figures: bytes of each reconnect.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use outpost_core::engine::wire::Protocol;
use outpost_core::{
    Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions, Timestamp,
};
use serde_json::json;

/// Documents on each side; `OUTPOST_HANDSHAKE_DOCS` lowers it for a quick run.
fn documents() -> usize {
    std::env::var("OUTPOST_HANDSHAKE_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

fn name(i: usize) -> outpost_core::DocumentId {
    format!("orders/d{i:06}").parse().unwrap()
}

fn engine(dir: &Path, me: &PeerInfo) -> Engine {
    let store = Store::open_with(
        dir,
        StoreOptions {
            identity: Some(me.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut config = EngineConfig::new(me.clone(), Policy::default());
    // Room for one document more than the test makes (the default limit is 100,000).
    config.max_documents = documents() + 1;
    Engine::new(store, config)
}

#[derive(Default, Debug)]
struct Traffic {
    bytes: usize,
    messages: usize,
}

/// Connects `a` and `b` speaking `protocol` and delivers messages until both are quiet.
fn reconnect(a: &mut Engine, b: &mut Engine, protocol: Protocol, now: Timestamp) -> Traffic {
    let (ia, ib) = (a.local().clone(), b.local().clone());
    a.handle_connect_speaking(ib.clone(), protocol, now);
    b.handle_connect_speaking(ia.clone(), protocol, now);
    let mut t = Traffic::default();
    loop {
        let mut moved = false;
        while let Some(m) = a.poll_transmit() {
            t.bytes += m.bytes.len();
            t.messages += 1;
            b.handle_message(&ia.peer, &m.bytes, now).unwrap();
            moved = true;
        }
        while let Some(m) = b.poll_transmit() {
            t.bytes += m.bytes.len();
            t.messages += 1;
            a.handle_message(&ib.peer, &m.bytes, now).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    a.handle_disconnect(&ib.peer, now);
    b.handle_disconnect(&ia.peer, now);
    t
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_reconnect_costs_what_differs_not_what_is_held() {
    let n = documents();
    let root = tempfile::tempdir().unwrap();
    let (da, db) = (root.path().join("pos"), root.path().join("cloud"));
    let pos = PeerInfo::parse("s1", "pos-1", "pos").unwrap();
    let cloud = PeerInfo::parse("s1", "cloud-1", "cloud").unwrap();

    // One store of n documents, copied: both sides hold the same n documents.
    let started = Instant::now();
    {
        let store = Store::open_with(
            &da,
            StoreOptions {
                identity: Some(pos.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..n {
            store
                .put(&name(i), "/total", json!(i), Durability::Fast)
                .unwrap();
        }
        store.flush().unwrap();
    }
    copy_dir(&da, &db);
    println!(
        "handshake: {n} documents on each side built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut a = engine(&da, &pos);
    let mut b = engine(&db, &cloud);
    let now = Timestamp(1_000);

    // First meeting: nothing persisted of each other, every document equal.
    let first = reconnect(&mut a, &mut b, Protocol::V2, now);
    println!("handshake: first meeting of two peers holding the same {n} documents: {first:?}");
    assert!(first.bytes < 1_024, "{first:?}");
    let status = a.status();
    let synced = status
        .peers
        .iter()
        .filter(|p| p.peer == cloud.peer)
        .flat_map(|p| &p.docs)
        .filter(|d| d.last_sync.is_some())
        .count();
    assert_eq!(
        synced, n,
        "every equal document is known in sync with the peer"
    );

    // Differences on both sides while apart.
    a.store()
        .put(
            &name(7),
            "/total",
            json!("changed on the pos"),
            Durability::Fast,
        )
        .unwrap();
    a.store()
        .put(
            &name(n / 2),
            "/total",
            json!("changed on the pos"),
            Durability::Fast,
        )
        .unwrap();
    b.store()
        .put(
            &name(n - 1),
            "/total",
            json!("changed in the cloud"),
            Durability::Fast,
        )
        .unwrap();
    b.store()
        .put(
            &"menu".parse().unwrap(),
            "/name",
            json!("new in the cloud"),
            Durability::Fast,
        )
        .unwrap();
    let v2 = reconnect(&mut a, &mut b, Protocol::V2, Timestamp(2_000));
    println!("handshake: reconnect with 4 documents changed among {n} (range digests): {v2:?}");

    assert!(
        v2.bytes < 64 * 1024,
        "bytes follow the differences, not the documents: {v2:?}"
    );
    for (doc, want) in [
        (name(7), json!("changed on the pos")),
        (name(n / 2), json!("changed on the pos")),
        (name(n - 1), json!("changed in the cloud")),
    ] {
        assert_eq!(a.store().get(&doc, "/total").unwrap(), Some(want.clone()));
        assert_eq!(b.store().get(&doc, "/total").unwrap(), Some(want));
    }
    assert_eq!(
        a.store().get(&"menu".parse().unwrap(), "/name").unwrap(),
        Some(json!("new in the cloud"))
    );

    let idle = reconnect(&mut a, &mut b, Protocol::V2, Timestamp(3_000));
    println!("handshake: idle reconnect, range digests: {idle:?}");
    assert_eq!(idle.messages, 2, "one fingerprint and its answer: {idle:?}");

    // The same idle reconnect in the first protocol lists every document.
    let v1 = reconnect(&mut a, &mut b, Protocol::V1, Timestamp(4_000));
    println!(
        "handshake: idle reconnect, Hello of protocol 1: {v1:?} ({:.0}x the range digests)",
        v1.bytes as f64 / idle.bytes as f64
    );
    assert!(v1.bytes > n * 10, "{v1:?}");
}
