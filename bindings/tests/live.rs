//! Live values, live queries and lifecycles of the FFI layer, from Rust: watches end with
//! their handles, a listener that captures the node makes no cycle, dropping a running node
//! does not wait for its shutdown, and the device key is never printed.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use outpost_ffi::{
    ChangeEvent, FleetCa, NodeListener, Outpost, PeerIdentity, Query, QueryFilter, RefusedChange,
};

mod common;
use common::config;

const TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}

/// Awaits `f` at most `TIMEOUT`.
fn within<T>(
    rt: &tokio::runtime::Runtime,
    what: &str,
    f: impl std::future::Future<Output = T>,
) -> T {
    rt.block_on(async { tokio::time::timeout(TIMEOUT, f).await })
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_value_watch_gives_the_current_value_then_changes_and_ends_with_cancel() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    let watch = node
        .clone()
        .watch("menu".into(), "/items/burger/price".into())
        .expect("watch");
    let first = within(&rt, "the first value", watch.next()).expect("next");
    assert_eq!(
        first.map(|s| s.json),
        Some(None),
        "a document not synced reads as null"
    );
    node.put_blocking("menu".into(), "/items/burger/price".into(), "950".into())
        .expect("put");
    let second = within(&rt, "the new price", watch.next()).expect("next");
    assert_eq!(second.and_then(|s| s.json).as_deref(), Some("950"));
    // Many writes while nobody collects: one value, the last (conflated).
    for price in 951..=1000 {
        node.put_int_blocking("menu".into(), "/items/burger/price".into(), price)
            .expect("put");
    }
    let mut last = None;
    while last.as_deref() != Some("1000") {
        last = within(&rt, "the last price", watch.next())
            .expect("next")
            .and_then(|s| s.json);
    }
    // A write elsewhere in the document is not a new value.
    node.put_blocking("menu".into(), "/items/fries/price".into(), "300".into())
        .expect("put");
    assert_eq!(node.live_tasks(), 1);
    watch.cancel();
    assert_eq!(within(&rt, "the end", watch.next()).expect("next"), None);
    wait_until("the watch task to end", || node.live_tasks() == 0);
    node.shutdown_blocking().expect("shutdown");
}

#[test]
fn dropping_a_watch_ends_its_task_and_a_watch_does_not_keep_the_node_alive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    let watch = node
        .clone()
        .watch("menu".into(), String::new())
        .expect("watch");
    let status = node.clone().watch_status().expect("watch status");
    assert_eq!(node.live_tasks(), 2);
    drop(watch);
    wait_until("the dropped watch's task to end", || node.live_tasks() == 1);
    // The status watch holds the node weakly: dropping the app's last handle frees it.
    let weak: Weak<Outpost> = Arc::downgrade(&node);
    drop(node);
    wait_until("the node to be freed", || weak.upgrade().is_none());
    let rt = runtime();
    // Its watch ends with it.
    let mut seen = 0;
    while within(&rt, "the status watch to end", status.next())
        .expect("next")
        .is_some()
    {
        seen += 1;
        assert!(seen < 10, "the status watch outlived its node");
    }
}

/// A listener that holds the node, as a Kotlin lambda capturing it would.
struct Capturing {
    _node: Mutex<Option<Arc<Outpost>>>,
}

impl NodeListener for Capturing {
    fn on_change(&self, _: ChangeEvent) {}
    fn on_peer_connected(&self, _: PeerIdentity) {}
    fn on_peer_disconnected(&self, _: PeerIdentity) {}
    fn on_change_refused(&self, _: RefusedChange) {}
}

#[test]
fn a_listener_capturing_the_node_is_released_when_its_subscription_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    let listener = Arc::new(Capturing {
        _node: Mutex::new(Some(node.clone())),
    });
    let sub = node
        .subscribe(listener.clone(), None, None)
        .expect("subscribe");
    let weak_listener = Arc::downgrade(&listener);
    drop(listener);
    assert!(
        weak_listener.upgrade().is_some(),
        "the subscription holds the listener"
    );
    drop(sub);
    wait_until("the listener to be released", || {
        weak_listener.upgrade().is_none()
    });
    assert_eq!(node.live_tasks(), 0);
    let weak_node = Arc::downgrade(&node);
    drop(node);
    assert!(weak_node.upgrade().is_none(), "nothing else holds the node");
}

#[test]
fn dropping_a_running_node_returns_before_its_shutdown_and_releases_it_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let pos = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("pos");
    let mut kiosk_config = config(dir.path(), &ca, "kiosk-1", "kiosk");
    kiosk_config.peers = vec![pos.local_address().expect("address")];
    let kiosk = Outpost::open_blocking(kiosk_config.clone()).expect("kiosk");
    wait_until("the link", || {
        kiosk.status_blocking().is_ok_and(|s| s.online)
    });
    // Shutting down a linked node hands over what peers lack (about a second at most); the
    // thread that drops the handle (a UI thread, a finalizer) does not wait for it.
    let started = Instant::now();
    drop(kiosk);
    let dropping = started.elapsed();
    println!("dropping a linked node took {dropping:?} on the caller's thread");
    assert!(
        dropping < Duration::from_secs(1),
        "dropping blocked for {dropping:?}"
    );
    // The shutdown still happens: the data directory is released and opens again.
    let deadline = Instant::now() + TIMEOUT;
    let again = loop {
        match Outpost::open_blocking(kiosk_config.clone()) {
            Ok(n) => break n,
            Err(e) => assert!(Instant::now() < deadline, "never released: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    again.shutdown_blocking().expect("shutdown");
    pos.shutdown_blocking().expect("shutdown");
}

#[test]
fn the_device_key_is_never_printed() {
    let ca = FleetCa::generate("test".into()).expect("ca");
    let cert = ca
        .issue("paris-11".into(), "kiosk-1".into(), "kiosk".into())
        .expect("issue");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &ca, "kiosk-1", "kiosk");
    for printed in [cert.to_string(), format!("{cert:?}"), format!("{config:?}")] {
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains(cert.key_pem().lines().nth(1).expect("key body")));
    }
    assert_eq!(
        cert.to_string(),
        "DeviceCertificate(kiosk-1 of paris-11, role kiosk)"
    );
    // What the app keeps in the Keystore or Keychain builds the same certificate again.
    let again =
        outpost_ffi::DeviceCertificate::from_pem(cert.cert_pem(), cert.key_pem(), cert.ca_pem())
            .expect("from the stored PEM");
    assert_eq!(again.identity(), cert.identity());
    let other = FleetCa::generate("other".into()).expect("ca");
    assert!(outpost_ffi::DeviceCertificate::from_pem(
        cert.cert_pem(),
        cert.key_pem(),
        other.cert_pem()
    )
    .is_err());
}

#[test]
fn a_live_query_follows_orders_as_they_come_and_change() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    let day = "orders/2026-12-01".to_string();
    let query = Query {
        collection: "/orders".into(),
        filters: vec![QueryFilter {
            path: "/status".into(),
            equals_json: r#""new""#.into(),
        }],
        conditions: vec![],
        sort_by: Some("/placedAt".into()),
        descending: false,
        limit: Some(2),
    };
    let watch = node.clone().watch_query(day.clone(), query).expect("watch");
    let first = within(&rt, "the first result", watch.next())
        .expect("next")
        .expect("a result");
    assert_eq!(first.total, 0, "not synced yet: no orders");
    for (id, at, status) in [
        ("K1-003", 30, "new"),
        ("K1-001", 10, "new"),
        ("K1-002", 20, "done"),
        ("K1-004", 5, "new"),
    ] {
        node.put_blocking(
            day.clone(),
            format!("/orders/{id}"),
            format!(r#"{{"status": "{status}", "placedAt": {at}}}"#),
        )
        .expect("put");
    }
    let keys =
        |r: &outpost_ffi::QueryResult| r.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
    let mut result = within(&rt, "the orders", watch.next())
        .expect("next")
        .expect("result");
    while result.total < 3 {
        result = within(&rt, "the orders", watch.next())
            .expect("next")
            .expect("result");
    }
    assert_eq!(
        keys(&result),
        ["K1-004", "K1-001"],
        "sorted by placedAt, limited to 2"
    );
    node.put_string_blocking(day.clone(), "/orders/K1-004/status".into(), "done".into())
        .expect("put");
    let result = within(&rt, "the order done", watch.next())
        .expect("next")
        .expect("result");
    assert_eq!(
        (result.total, keys(&result)),
        (2, vec!["K1-001".to_string(), "K1-003".to_string()])
    );
    drop(watch);
    wait_until("the query task to end", || node.live_tasks() == 0);
    node.shutdown_blocking().expect("shutdown");
}
