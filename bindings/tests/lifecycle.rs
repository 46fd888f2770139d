//! An app's lifecycle from Rust on real nodes: `pause` closes the links and keeps the store,
//! `resume` reconnects at once, and a node shut down releases its port and data directory
//! when `shutdown` returns (reopened at once, no retry); errors carry their document, path and
//! `retryable`.

use std::time::{Duration, Instant};

use outpost_ffi::{FleetCa, Outpost, OutpostError};

mod common;
use common::config;

const TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

#[test]
fn pause_closes_the_links_and_keeps_the_store_and_resume_reconnects() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let pos = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("pos");
    let mut kiosk_config = config(dir.path(), &ca, "kiosk-1", "kiosk");
    kiosk_config.peers = vec![pos.local_address().expect("address")];
    let kiosk = Outpost::open_blocking(kiosk_config).expect("kiosk");
    let online = |n: &Outpost| n.status_blocking().map(|s| s.online).unwrap_or(false);
    wait_until("the link", || online(&kiosk));

    rt.block_on(kiosk.clone().pause()).expect("pause");
    assert!(kiosk.is_paused());
    assert!(!online(&kiosk), "links closed when pause returns");
    // The pos redials (the kiosk's port is known to it only as a peer that dialed it), and the
    // kiosk does not dial: the link stays down for a while.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !online(&kiosk) && !online(&pos),
        "a paused node came back online"
    );
    // The store is kept: writes go on while paused.
    kiosk
        .put_blocking(
            "orders".into(),
            "/o-1".into(),
            r#"{"status": "new"}"#.into(),
        )
        .expect("a write while paused");

    let resumed = Instant::now();
    kiosk.resume().expect("resume");
    assert!(!kiosk.is_paused());
    wait_until("the order on the pos after resume", || {
        pos.get_blocking("orders".into(), "/o-1/status".into())
            .ok()
            .flatten()
            .as_deref()
            == Some("\"new\"")
    });
    println!(
        "after resume, the order written while paused reached the pos in {:?}",
        resumed.elapsed()
    );
    kiosk.shutdown_blocking().expect("shutdown");
    pos.shutdown_blocking().expect("shutdown");
}

#[test]
fn a_node_shut_down_is_reopened_at_once_on_the_same_port_and_directory() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let pos = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("pos");
    let mut kiosk_config = config(dir.path(), &ca, "kiosk-1", "kiosk");
    kiosk_config.peers = vec![pos.local_address().expect("address")];
    let first = Outpost::open_blocking(kiosk_config.clone()).expect("kiosk");
    kiosk_config.listen = first.local_address().expect("address");
    let mut slowest = Duration::ZERO;
    let mut node = first;
    for round in 0..3 {
        node.put_blocking("orders".into(), format!("/o-{round}"), "{}".into())
            .expect("put");
        // A watch and a listener running at shutdown hold nothing that outlives it.
        let _watch = node
            .clone()
            .watch("orders".into(), String::new())
            .expect("watch");
        let started = Instant::now();
        rt.block_on(node.shutdown()).expect("shutdown");
        drop(node);
        // Same port, same directory, no retry: "port in use" or a store lock here fails.
        node = rt
            .block_on(Outpost::open(kiosk_config.clone()))
            .unwrap_or_else(|e| panic!("reopen {round} failed: {e:?}"));
        slowest = slowest.max(started.elapsed());
        assert_eq!(node.local_address(), Some(kiosk_config.listen.clone()));
        assert!(node
            .get_blocking("orders".into(), format!("/o-{round}"))
            .expect("get")
            .is_some());
    }
    println!("slowest shutdown + reopen on the same port of 3: {slowest:?}");
    node.shutdown_blocking().expect("shutdown");
    pos.shutdown_blocking().expect("shutdown");
}

#[test]
fn errors_name_their_document_path_and_whether_to_retry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    node.put_string_blocking("orders".into(), "/o-1/status".into(), "new".into())
        .expect("put");
    let e = node
        .increment_blocking("orders".into(), "/o-1/status".into(), 1)
        .expect_err("a counter on a string");
    assert!(matches!(e, OutpostError::WrongType { .. }), "{e:?}");
    assert_eq!(
        (e.doc(), e.path(), e.retryable()),
        (Some("orders"), Some("/o-1/status"), false)
    );
    let e = node
        .put_blocking("orders".into(), "/o-2".into(), "{nope".into())
        .expect_err("bad JSON");
    assert!(matches!(e, OutpostError::InvalidJson { .. }), "{e:?}");
    assert_eq!(e.doc(), Some("orders"), "{e:?}");
    let e = node
        .get_blocking("stock".into(), "/burger".into())
        .expect_err("unknown");
    // Not synced yet: the same read may succeed later.
    assert!(
        matches!(
            e,
            OutpostError::UnknownDocument {
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.doc(), Some("stock"));
    node.shutdown_blocking().expect("shutdown");
    let e = node
        .get_blocking("orders".into(), "/o-1".into())
        .expect_err("shut down");
    assert!(
        matches!(
            e,
            OutpostError::ShutDown {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
}
