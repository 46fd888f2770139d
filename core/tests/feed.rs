//! Durable consumer feeds: a named consumer gets everything that changed since it last
//! acknowledged, across restarts, compactions and catch-ups, then what changes live.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use outpost_core::{
    Durability, Feed, FeedDocs, FeedFilter, PeerInfo, Pointer, Store, StoreOptions,
};
use serde_json::json;

fn open(path: &std::path::Path) -> Store {
    Store::open_with(
        path,
        StoreOptions {
            identity: Some(PeerInfo::parse("s1", "kitchen-1", "kitchen").unwrap()),
            ..Default::default()
        },
    )
    .unwrap()
}

fn orders() -> FeedFilter {
    FeedFilter {
        docs: Some(FeedDocs::Context("orders".parse().unwrap())),
        prefix: Some(Pointer::parse("/orders").unwrap()),
    }
}

fn order(store: &Store, day: &str, id: &str) {
    store
        .put(
            &format!("orders/{day}").parse().unwrap(),
            &format!("/orders/{id}"),
            json!({"sku": "burger", "status": "new"}),
            Durability::Fast,
        )
        .unwrap();
}

#[test]
fn a_consumer_resumes_from_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for id in ["o1", "o2", "o3"] {
        order(&store, "2026-12-01", id);
    }
    store
        .put(
            &"menu".parse().unwrap(),
            "/burger/price",
            json!(950),
            Durability::Fast,
        )
        .unwrap();
    let mut feed = Feed::open(&store, "kitchen-1/printer", orders()).unwrap();
    let b = feed.poll().unwrap().expect("the day's orders");
    assert_eq!(b.doc.to_string(), "orders/2026-12-01");
    assert_eq!(b.items, vec!["/orders/o1", "/orders/o2", "/orders/o3"]);
    assert!(
        feed.poll().unwrap().is_none(),
        "menu changes are not in this feed"
    );
    feed.ack(&b).unwrap();

    // More arrives; the printer takes it but dies before acknowledging.
    order(&store, "2026-12-01", "o4");
    store
        .put(
            &"orders/2026-12-01".parse().unwrap(),
            "/orders/o2/status",
            json!("cooking"),
            Durability::Fast,
        )
        .unwrap();
    order(&store, "2026-12-02", "o5");
    let mut got = Vec::new();
    while let Some(b) = feed.poll().unwrap() {
        got.extend(b.items);
    }
    got.sort();
    assert_eq!(got, vec!["/orders/o2", "/orders/o4", "/orders/o5"]);
    drop(feed);
    store.flush().unwrap();
    drop(store);

    // After a restart, everything not acknowledged comes again, nothing acknowledged does.
    let store = open(dir.path());
    let mut feed = Feed::open(&store, "kitchen-1/printer", orders()).unwrap();
    let mut again = Vec::new();
    while let Some(b) = feed.poll().unwrap() {
        again.extend(b.items.clone());
        feed.ack(&b).unwrap();
    }
    again.sort();
    assert_eq!(again, got);
    assert!(feed.poll().unwrap().is_none());
    drop(feed);
    // Another consumer has its own position: it starts from the beginning.
    let mut other = Feed::open(&store, "erp", orders()).unwrap();
    let mut all = Vec::new();
    while let Some(b) = other.poll().unwrap() {
        all.extend(b.items);
    }
    assert_eq!(all.len(), 5);
    assert!(Feed::open(&store, "no spaces", orders()).is_err());
}

/// A consumer that was away while 5,000 orders arrived and the document was compacted gets
/// them in one batch from its position: no log of changes is kept, the position is heads.
#[test]
fn a_catch_up_across_a_compaction_is_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    order(&store, "2026-12-01", "first");
    let mut feed = Feed::open(&store, "printer", orders()).unwrap();
    let b = feed.poll().unwrap().unwrap();
    feed.ack(&b).unwrap();
    drop(feed);
    let doc = "orders/2026-12-01".parse().unwrap();
    for i in 0..5_000 {
        order(&store, "2026-12-01", &format!("o{i:04}"));
    }
    store.compact(&doc).unwrap();
    assert_eq!(store.chunk_count(&doc).unwrap(), 1);
    let mut feed = Feed::open(&store, "printer", orders()).unwrap();
    let started = Instant::now();
    let b = feed.poll().unwrap().unwrap();
    println!(
        "feed: 5,000 orders since the position, across a compaction, in one batch in {:?}",
        started.elapsed()
    );
    assert_eq!(b.items.len(), 5_000);
    assert!(!b.items.contains(&"/orders/first".to_string()));
    assert_eq!(feed.position(&doc).unwrap(), b.from);
    feed.ack(&b).unwrap();
    assert_eq!(feed.position(&doc).unwrap().len(), b.to.len());
    assert!(feed.poll().unwrap().is_none());
}

/// A feed follows live writes, waking when they arrive.
#[test]
fn a_feed_follows_live_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut feed = Feed::open(&store, "printer", orders()).unwrap();
    assert!(feed.poll().unwrap().is_none());
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                order(&store, "2026-12-01", &format!("o{i:02}"));
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 20 {
        let b = feed.next_blocking().unwrap();
        feed.ack(&b).unwrap();
        seen.extend(b.items);
    }
    writer.join().unwrap();
    assert_eq!(seen.len(), 20);
}

#[test]
fn two_printers_on_one_station_each_get_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for id in ["K1-001", "K1-002", "K1-003"] {
        order(&store, "2026-12-01", id);
    }
    let mut grill = Feed::open(&store, "kitchen-1/printer-grill", orders()).unwrap();
    let mut pass = Feed::open(&store, "kitchen-1/printer-pass", orders()).unwrap();
    let a = grill.poll().unwrap().expect("the grill's batch");
    let b = pass.poll().unwrap().expect("the pass's batch");
    assert_eq!(a.items, b.items, "each consumer gets every order");
    assert_eq!(a.items.len(), 3);
    grill.ack(&a).unwrap();
    drop((grill, pass));
    // Positions are per consumer: the pass never acknowledged, so it gets them again.
    let mut grill = Feed::open(&store, "kitchen-1/printer-grill", orders()).unwrap();
    let mut pass = Feed::open(&store, "kitchen-1/printer-pass", orders()).unwrap();
    assert_eq!(grill.poll().unwrap(), None);
    assert_eq!(pass.poll().unwrap().expect("again").items.len(), 3);
}

/// Issue 28: a feed that names no item path takes the policy's (`/orders/*` for `orders` in
/// the default policy), else the map named after the context, else the top-level keys; so
/// orders laid out as the README shows are one item each, never the whole day as `/orders`.
#[test]
fn items_default_from_the_policy_then_the_context() {
    let everything = |docs| FeedFilter { docs, prefix: None };
    let write_day = |store: &Store| {
        for id in ["K1-001", "K1-002"] {
            order(store, "2026-12-07", id);
        }
        // A ticket counter beside the orders is not an order.
        store
            .put(
                &"orders/2026-12-07".parse().unwrap(),
                "/_tickets/K1",
                json!(2),
                Durability::Fast,
            )
            .unwrap();
    };
    // The restaurant policy says `items = "/orders/*"`.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            policy: outpost_core::Policy::default(),
            ..Default::default()
        },
    )
    .unwrap();
    write_day(&store);
    let mut feed = Feed::open(&store, "erp", everything(None)).unwrap();
    let b = feed.poll().unwrap().expect("the day");
    assert_eq!(b.items, vec!["/orders/K1-001", "/orders/K1-002"]);
    // A policy without `items` (here: none at all): the context's own map.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_day(&store);
    store
        .put(
            &"menu".parse().unwrap(),
            "/items/burger/price",
            json!(950),
            Durability::Fast,
        )
        .unwrap();
    let mut feed = Feed::open(&store, "erp", everything(None)).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = feed.poll().unwrap() {
        batches.push((b.doc.to_string(), b.items));
    }
    batches.sort();
    assert_eq!(
        batches,
        vec![
            ("menu".to_string(), vec!["/items".to_string()]),
            (
                "orders/2026-12-07".to_string(),
                vec!["/orders/K1-001".to_string(), "/orders/K1-002".to_string()]
            ),
        ]
    );
    // An explicit path wins: the root gives the top-level keys.
    let root = FeedFilter {
        docs: Some(FeedDocs::Context("orders".parse().unwrap())),
        prefix: Some(Pointer::root()),
    };
    let mut feed = Feed::open(&store, "display", root).unwrap();
    assert_eq!(
        feed.poll().unwrap().expect("the day").items,
        vec!["/_tickets", "/orders"]
    );
    assert!(outpost_core::FeedItems::parse("/orders").is_err());
    assert!(outpost_core::FeedItems::parse("/*/x/*").is_err());
    assert_eq!(
        outpost_core::FeedItems::parse("/orders/*")
            .unwrap()
            .parent(),
        &Pointer::parse("/orders").unwrap()
    );
    assert_eq!(
        outpost_core::FeedItems::parse("/*").unwrap().to_string(),
        "/*"
    );
}
