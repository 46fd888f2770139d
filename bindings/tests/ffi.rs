//! The FFI layer from Rust: what the foreign tests cannot easily provoke.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use outpost_ffi::{
    ChangeEvent, ChangeOrigin, FleetCa, NodeListener, Outpost, OutpostError, PeerIdentity,
    RefusedChange,
};

mod common;
use common::config;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Counts changes; panics on the first one, as a buggy app callback would.
#[derive(Default)]
struct Panicky {
    changes: Mutex<Vec<ChangeEvent>>,
    changed: Condvar,
}

impl NodeListener for Panicky {
    fn on_change(&self, event: ChangeEvent) {
        let mut changes = self.changes.lock().expect("not poisoned");
        changes.push(event);
        self.changed.notify_all();
        if changes.len() == 1 {
            drop(changes);
            panic!("a bug in the app's listener");
        }
    }
    fn on_peer_connected(&self, _: PeerIdentity) {}
    fn on_peer_disconnected(&self, _: PeerIdentity) {}
    fn on_change_refused(&self, _: RefusedChange) {}
}

impl Panicky {
    fn wait_for(&self, n: usize) -> Vec<ChangeEvent> {
        let changes = self.changes.lock().expect("not poisoned");
        let (changes, timeout) = self
            .changed
            .wait_timeout_while(changes, TIMEOUT, |c| c.len() < n)
            .expect("not poisoned");
        assert!(
            !timeout.timed_out(),
            "only {} of {n} changes",
            changes.len()
        );
        changes.clone()
    }
}

#[test]
fn a_panicking_listener_keeps_receiving_and_the_node_keeps_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    let listener = Arc::new(Panicky::default());
    let sub = node
        .subscribe(listener.clone(), Some("stock".into()), None)
        .expect("subscribe");
    node.increment_blocking("stock".into(), "/burger".into(), 1)
        .expect("first write");
    // Waiting changes to one document are delivered merged: the second write follows the
    // first's (panicking) delivery.
    listener.wait_for(1);
    node.increment_blocking("stock".into(), "/burger".into(), 1)
        .expect("second write");
    let changes = listener.wait_for(2);
    assert!(changes.iter().all(|c| c.origin == ChangeOrigin::Local));
    assert_eq!(
        node.get_int_blocking("stock".into(), "/burger".into())
            .expect("read"),
        Some(2)
    );
    sub.cancel();
    node.shutdown_blocking().expect("shutdown");
}

#[test]
fn dropping_a_running_node_shuts_it_down_and_releases_the_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let node = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("open");
    node.put_int_blocking("menu".into(), "/items/burger/price".into(), 950)
        .expect("write");
    drop(node);
    // The same data directory opens again: the store was released.
    let again = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("reopen");
    assert_eq!(
        again
            .get_int_blocking("menu".into(), "/items/burger/price".into())
            .expect("read"),
        Some(950)
    );
    again.shutdown_blocking().expect("shutdown");
    again.shutdown_blocking().expect("twice is fine");
    assert!(matches!(
        again.status_blocking(),
        Err(OutpostError::ShutDown { reason: m, .. }) if m.contains("shut down")
    ));
}

#[test]
fn two_nodes_open_on_the_same_directory_fail_with_a_storage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let node = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("open");
    match Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")) {
        Err(OutpostError::Storage { reason: m, .. }) => assert!(m.contains("storage"), "{m}"),
        Err(e) => panic!("expected Storage, got {e:?}"),
        Ok(_) => panic!("expected Storage, the directory opened twice"),
    }
    node.shutdown_blocking().expect("shutdown");
}

#[test]
fn a_revocation_handed_to_a_node_is_taken_once_and_garbage_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let node = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("open");
    let record = ca
        .revoke("paris-11".into(), "kiosk-9".into(), "stolen".into())
        .expect("revoke");
    assert!(node.revoke_blocking(record.clone()).expect("taken"));
    assert!(
        !node.revoke_blocking(record).expect("taken"),
        "a second time is not new"
    );
    let rogue = FleetCa::generate("rogue".into()).expect("ca");
    let forged = rogue
        .revoke("paris-11".into(), "pos-2".into(), String::new())
        .expect("revoke");
    assert!(
        matches!(node.revoke_blocking(forged), Err(OutpostError::Certificate { reason: m, .. }) if m.contains("not signed by this fleet"))
    );
    assert!(matches!(
        node.revoke_blocking(vec![0xff; 12]),
        Err(OutpostError::Certificate { .. })
    ));
    node.shutdown_blocking().expect("shutdown");
}

/// Collects log records, as an app's logcat or os_log sink would.
#[derive(Default)]
struct Sink(Mutex<Vec<(outpost_ffi::LogLevel, String, String)>>);

impl outpost_ffi::LogSink for Sink {
    fn log(&self, level: outpost_ffi::LogLevel, target: String, message: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((level, target, message));
    }
}

#[test]
fn logs_reach_the_apps_sink_and_links_are_controlled_at_runtime() {
    let sink = Arc::new(Sink::default());
    assert!(outpost_ffi::set_log_sink(sink.clone(), "info".into()).expect("filter"));
    assert!(
        !outpost_ffi::set_log_sink(sink.clone(), "info".into()).expect("filter"),
        "one logger per process"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let pos = Outpost::open_blocking(config(dir.path(), &ca, "pos-1", "pos")).expect("open");
    let kiosk = Outpost::open_blocking(config(dir.path(), &ca, "kiosk-1", "kiosk")).expect("open");
    let pos_addr = pos.local_address().expect("listening");
    // A peer learnt at runtime.
    assert!(kiosk.add_peer(pos_addr.clone()).expect("add"));
    assert!(
        !kiosk.add_peer(pos_addr.clone()).expect("add"),
        "already a peer"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert!(rt
        .block_on(kiosk.wait_for_peer("pos-1".into(), 10_000))
        .expect("wait"));
    kiosk.reconnect_now().expect("reconnect");
    // Removed: the link closes and is not dialed again.
    assert!(kiosk.remove_peer(pos_addr.clone()).expect("remove"));
    assert!(
        !kiosk.remove_peer(pos_addr).expect("remove"),
        "no longer a peer"
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !kiosk
        .status_blocking()
        .expect("status")
        .connected_peers
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed peer stayed connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let connected = logs
        .iter()
        .find(|(level, _, m)| *level == outpost_ffi::LogLevel::Info && m.contains("peer connected"))
        .expect("the link's life is logged to the sink");
    println!("{} records; e.g. {connected:?}", logs.len());
    assert!(connected.1.starts_with("outpost_"), "{connected:?}");
    kiosk.shutdown_blocking().expect("shutdown");
    pos.shutdown_blocking().expect("shutdown");
}
