//! The changed paths of change events, local and received by sync. They are worked out from
//! the operations of each change (not from an Automerge patch log, whose path lookups scan
//! every sibling of a touched object), so these tests pin down what they report.
#![allow(clippy::unwrap_used)]

use outpost_core::{
    ChangeEvent, Durability, Engine, EngineConfig, Origin, PeerInfo, Policy, Store, StoreOptions,
    Subscription, SubscriptionFilter, Timestamp,
};
use serde_json::json;

const F: Durability = Durability::Fast;

fn engine(dir: &std::path::Path, peer: &str) -> Engine {
    let me = PeerInfo::parse("s1", peer, "pos").unwrap();
    let store = Store::open_with(
        dir,
        StoreOptions {
            identity: Some(me.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    Engine::new(store, EngineConfig::new(me, Policy::default()))
}

/// Delivers messages between two engines until none are left.
fn run(a: &mut Engine, b: &mut Engine, now: Timestamp) {
    loop {
        let mut any = false;
        while let Some(t) = a.poll_transmit() {
            any = true;
            b.handle_message(&a.local().peer.clone(), &t.bytes, now)
                .unwrap();
        }
        while let Some(t) = b.poll_transmit() {
            any = true;
            a.handle_message(&b.local().peer.clone(), &t.bytes, now)
                .unwrap();
        }
        if !any {
            return;
        }
    }
}

fn drain(sub: &mut Subscription) -> Vec<ChangeEvent> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

struct Pair {
    a: Engine,
    b: Engine,
    a_events: Subscription,
    b_events: Subscription,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Pair {
    fn new() -> Pair {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut a = engine(da.path(), "pos-1");
        let mut b = engine(db.path(), "pos-2");
        let now = Timestamp(1_000);
        a.handle_connect(b.local().clone(), now);
        b.handle_connect(a.local().clone(), now);
        run(&mut a, &mut b, now);
        Pair {
            a_events: a.store().subscribe(SubscriptionFilter::all()),
            b_events: b.store().subscribe(SubscriptionFilter::all()),
            a,
            b,
            _dirs: (da, db),
        }
    }

    /// Writes on A with `f` and syncs, ignoring the events.
    fn setup(&mut self, f: impl FnOnce(&Store)) {
        let doc = "orders".parse().unwrap();
        f(self.a.store());
        let now = Timestamp(2_000);
        self.a.handle_local_change(&doc, now);
        run(&mut self.a, &mut self.b, now);
        drain(&mut self.a_events);
        drain(&mut self.b_events);
    }

    /// Writes on A with `f` (one write), syncs, and returns (A's local paths, B's received
    /// paths).
    fn write(&mut self, f: impl FnOnce(&Store)) -> (Vec<String>, Vec<String>) {
        let doc = "orders".parse().unwrap();
        f(self.a.store());
        let now = Timestamp(2_000);
        self.a.handle_local_change(&doc, now);
        run(&mut self.a, &mut self.b, now);
        let local = drain(&mut self.a_events);
        let remote = drain(&mut self.b_events);
        assert_eq!(local.len(), 1, "{local:?}");
        assert_eq!(local[0].origin, Origin::Local);
        assert_eq!(remote.len(), 1, "{remote:?}");
        assert!(matches!(remote[0].origin, Origin::Remote(_)), "{remote:?}");
        assert_eq!(remote[0].heads, local[0].heads);
        (local[0].paths.clone(), remote[0].paths.clone())
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_object_written_reports_itself_and_everything_inside_it() {
    let mut p = Pair::new();
    let doc = "orders".parse().unwrap();
    let (local, remote) = p.write(|s| {
        s.put(
            &doc,
            "/orders/o1",
            json!({"status": "new", "lines": [{"sku": "burger", "qty": 2}]}),
            F,
        )
        .unwrap()
    });
    let want = strings(&[
        "/orders/o1",
        "/orders/o1/lines",
        "/orders/o1/lines/0",
        "/orders/o1/lines/0/qty",
        "/orders/o1/lines/0/sku",
        "/orders/o1/status",
    ]);
    assert_eq!(local, want);
    // Received: the parent `/orders` was created by the same change, so it is reported too.
    let mut remote_want = want.clone();
    remote_want.insert(0, "/orders".to_string());
    assert_eq!(remote, remote_want);
}

#[test]
fn field_updates_deletes_and_counters_report_their_own_path() {
    let mut p = Pair::new();
    let doc = "orders".parse().unwrap();
    p.setup(|s| {
        s.put(&doc, "/orders/o1", json!({"status": "new", "note": "x"}), F)
            .unwrap();
        s.put(&doc, "/orders/o2", json!({"status": "new"}), F)
            .unwrap()
    });
    let (local, remote) = p.write(|s| s.put(&doc, "/orders/o1/status", json!("paid"), F).unwrap());
    assert_eq!(local, strings(&["/orders/o1/status"]));
    assert_eq!(remote, local);
    let (local, remote) = p.write(|s| s.delete(&doc, "/orders/o1/note", F).unwrap());
    assert_eq!(local, strings(&["/orders/o1/note"]));
    assert_eq!(remote, local);
    let (local, remote) = p.write(|s| s.increment(&doc, "/stock/burger", -1, F).unwrap());
    assert_eq!(local, strings(&["/stock/burger"]));
    assert_eq!(remote, strings(&["/stock", "/stock/burger"]));
    let (local, remote) = p.write(|s| s.increment(&doc, "/stock/burger", -1, F).unwrap());
    assert_eq!(local, strings(&["/stock/burger"]));
    assert_eq!(remote, local);
}

#[test]
fn list_elements_report_their_index_when_they_are_objects() {
    let mut p = Pair::new();
    let doc = "orders".parse().unwrap();
    p.setup(|s| {
        s.put(&doc, "/tags", json!(["a"]), F).unwrap();
        s.put(&doc, "/lines", json!([{"sku": "fries"}]), F).unwrap()
    });
    // A scalar inserted into a list: received, it reports the list.
    let (local, remote) = p.write(|s| s.insert(&doc, "/tags", 0, json!("b"), F).unwrap());
    assert_eq!(local, strings(&["/tags/0"]));
    assert_eq!(remote, strings(&["/tags"]));
    // An object inserted into a list: its index, and what is inside it.
    let (local, remote) = p.write(|s| {
        s.insert(&doc, "/lines", 1, json!({"sku": "cola"}), F)
            .unwrap()
    });
    assert_eq!(local, strings(&["/lines/1", "/lines/1/sku"]));
    assert_eq!(remote, local);
    // A field of an object in a list.
    let (local, remote) = p.write(|s| s.put(&doc, "/lines/0/sku", json!("salad"), F).unwrap());
    assert_eq!(local, strings(&["/lines/0/sku"]));
    assert_eq!(remote, local);
}

#[test]
fn paths_stay_right_among_many_siblings() {
    let mut p = Pair::new();
    let doc = "orders".parse().unwrap();
    p.write(|s| {
        s.transact(&doc, F, |tx| {
            for i in 0..2_000 {
                tx.put(&format!("/orders/o{i}"), json!({"status": "new"}))?;
            }
            Ok(())
        })
        .unwrap()
    });
    let (local, remote) = p.write(|s| {
        s.put(&doc, "/orders/o1234/status", json!("paid"), F)
            .unwrap()
    });
    assert_eq!(local, strings(&["/orders/o1234/status"]));
    assert_eq!(remote, local);
}

#[test]
fn subscribers_without_paths_get_events_with_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let doc = "orders".parse().unwrap();
    let mut sub = s.subscribe(SubscriptionFilter::all().without_paths());
    s.put(&doc, "/orders/o1", json!({"status": "new"}), F)
        .unwrap();
    let ev = drain(&mut sub);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].paths.is_empty(), "{ev:?}");
}
