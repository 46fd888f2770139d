//! Node events as the apps get them (`Outpost.events`), `awaitDocument`, the pushed sync
//! status and a value watch telling "not synced yet" from "empty", from Rust on two real
//! nodes on loopback.

use std::time::{Duration, Instant};

use outpost_ffi::{FleetCa, NodeEvent, Outpost, Snapshot};

mod common;
use common::config;

const TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}

/// The next event of `events` that `wanted` accepts, printing the others; at most `TIMEOUT`.
fn event_where(
    rt: &tokio::runtime::Runtime,
    events: &outpost_ffi::EventStream,
    what: &str,
    wanted: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                match events.next().await.expect("next event") {
                    Some(e) if wanted(&e) => return e,
                    Some(e) => println!("  (event {e:?})"),
                    None => panic!("the event stream ended waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    })
}

#[test]
fn events_reach_the_app_typed_and_a_document_is_awaited() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let pos = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("pos");
    let kiosk = Outpost::open_blocking(config(dir.path(), &ca, "kiosk-1", "kiosk")).expect("kiosk");
    let events = kiosk.events().expect("events");
    let watch = kiosk
        .clone()
        .watch("menu".into(), "/items/fries".into())
        .expect("watch");
    let first = rt.block_on(watch.next()).expect("next");
    assert_eq!(
        first,
        Some(Snapshot {
            json: None,
            document_exists: false
        }),
        "not synced yet"
    );

    // Not there yet: awaitDocument times out with false, not an error.
    let started = Instant::now();
    assert!(!rt
        .block_on(kiosk.clone().await_document("menu".into(), 100))
        .expect("await"));
    assert!(started.elapsed() >= Duration::from_millis(100));

    kiosk
        .add_peer(pos.local_address().expect("address"))
        .expect("add peer");
    let connected = event_where(
        &rt,
        &events,
        "pos-1 connected",
        |e| matches!(e, NodeEvent::PeerConnected { peer } if peer.peer == "pos-1"),
    );
    println!("{connected:?}");
    pos.put_blocking(
        "menu".into(),
        "/items/burger".into(),
        r#"{"price": 950}"#.into(),
    )
    .expect("put");
    let waited = Instant::now();
    assert!(rt
        .block_on(kiosk.clone().await_document("menu".into(), 10_000))
        .expect("await"));
    println!(
        "the menu arrived {:?} after awaitDocument began",
        waited.elapsed()
    );
    event_where(
        &rt,
        &events,
        "in sync on the menu",
        |e| matches!(e, NodeEvent::InSync { peer, doc } if peer == "pos-1" && doc == "menu"),
    );
    // Synced, and nothing at the path: `document_exists` tells it from "not synced".
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s = rt.block_on(watch.next()).expect("next").expect("a value");
        if s.document_exists {
            assert_eq!(s.json, None);
            break;
        }
        assert!(Instant::now() < deadline, "the watch never saw the menu");
    }

    // A revocation taken here reaches the stream as a typed event.
    let record = ca
        .revoke("paris-11".into(), "kiosk-9".into(), "stolen".into())
        .expect("revoke");
    assert!(kiosk.revoke_blocking(record).expect("taken"));
    let revoked = event_where(&rt, &events, "the revocation", |e| {
        matches!(e, NodeEvent::Revoked { .. })
    });
    assert_eq!(
        revoked,
        NodeEvent::Revoked {
            site: "paris-11".into(),
            peer: "kiosk-9".into(),
            reason: "stolen".into()
        }
    );

    // Ended by cancel, and by the node's shutdown.
    let other = kiosk.events().expect("events");
    other.cancel();
    assert_eq!(rt.block_on(other.next()).expect("next"), None);
    kiosk.shutdown_blocking().expect("shutdown");
    let ended = rt.block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            while events.next().await.expect("next").is_some() {}
        })
        .await
    });
    assert!(ended.is_ok(), "the stream did not end with the node");
    pos.shutdown_blocking().expect("shutdown");
}

#[test]
fn the_status_watch_follows_a_write_to_synced_without_polling() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let pos = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("pos");
    let mut kiosk_config = config(dir.path(), &ca, "kiosk-1", "kiosk");
    kiosk_config.peers = vec![pos.local_address().expect("address")];
    let kiosk = Outpost::open_blocking(kiosk_config).expect("kiosk");
    let status = kiosk.clone().watch_status().expect("watch");
    let next = |what: &str, ok: &dyn Fn(&outpost_ffi::SyncStatus) -> bool| {
        rt.block_on(async {
            tokio::time::timeout(TIMEOUT, async {
                loop {
                    let s = status.next().await.expect("next").expect("a status");
                    if ok(&s) {
                        return s;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        })
    };
    next("online", &|s| s.online);
    // Ten orders, each pending then synced; the watch must show each synced state promptly
    // (it used to look again once a second when no event came).
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let written = Instant::now();
        kiosk
            .put_blocking(
                "orders".into(),
                format!("/o-{i}"),
                r#"{"status": "new"}"#.into(),
            )
            .expect("put");
        next("the order synced", &|s| {
            s.online
                && s.unsynced_changes == 0
                && s.peers
                    .iter()
                    .any(|p| p.documents.iter().any(|d| d.doc == "orders"))
        });
        slowest = slowest.max(written.elapsed());
    }
    println!("slowest write-to-synced status of 10: {slowest:?}");
    kiosk.shutdown_blocking().expect("shutdown");
    pos.shutdown_blocking().expect("shutdown");
}
