//! Deterministic containers (`core/src/genesis.rs`): a document's containers are made by a
//! genesis change every device computes byte for byte, so a kiosk that creates the day
//! offline writes into the same `/orders` as the POS, and its orders are creations that
//! every peer takes; a change that claims the genesis actor with anything else is refused.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU64;
use std::time::Instant;

use automerge::legacy::{Key, ObjectId, Op, OpType, SortedVec};
use automerge::{ActorId, Automerge, ObjType, ScalarValue};
use outpost_core::signing::SignatureRule;
use outpost_core::{Durability, PeerInfo, Policy, Store, StoreOptions};
use outpost_testkit::{doc, Net};
use serde_json::json;

/// The simulation starts on 2023-11-14: today's orders.
const TODAY: &str = "orders/2023-11-14";

/// The POS, a kitchen linked only to it, and a kiosk, under the default signature rule
/// (`Required`).
fn site(seed: u64) -> (Net, [outpost_core::PeerId; 3]) {
    let mut net = Net::seeded(seed);
    net.calm();
    net.signing(SignatureRule::Required);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let kiosk = net.add_peer("s1", "kiosk-1", "kiosk");
    net.connect(&kitchen, &pos);
    (net, [pos, kitchen, kiosk])
}

fn refused(net: &Net, peers: &[outpost_core::PeerId]) -> u64 {
    peers
        .iter()
        .map(|p| net.engine(p).metrics().changes_refused)
        .sum()
}

/// The offline promise: the POS and a kiosk each create the day while apart (the POS takes
/// P1-001, the kiosk K1-001, the kiosk first saying "create the day" with `/orders {}` as
/// apps do); when the kiosk comes back, every device has both orders and nothing is
/// refused. Before genesis changes, the kiosk's `/orders` counted as a replacement of the
/// POS's and all its offline orders were refused.
#[test]
fn a_kiosk_that_creates_the_day_offline_loses_no_order() {
    let started = Instant::now();
    for seed in 0..8 {
        let day = doc(TODAY);
        let (mut net, [pos, kitchen, kiosk]) = site(seed);
        net.put(&pos, &day, "/orders/P1-001", json!({"total": 950}));
        net.run_until_quiet();
        net.put(&kiosk, &day, "/orders", json!({}));
        net.put(&kiosk, &day, "/orders/K1-001", json!({"total": 420}));
        net.put(&kiosk, &day, "/orders/K1-002", json!({"total": 130}));
        net.connect(&kiosk, &pos);
        net.run_until_quiet();
        for p in [&pos, &kitchen, &kiosk] {
            for (order, total) in [("P1-001", 950), ("K1-001", 420), ("K1-002", 130)] {
                assert_eq!(
                    net.get(p, &day, &format!("/orders/{order}/total")),
                    Some(json!(total)),
                    "seed {seed}: {p} lacks {order}"
                );
            }
        }
        let all = [pos.clone(), kitchen.clone(), kiosk.clone()];
        assert_eq!(
            refused(&net, &all),
            0,
            "seed {seed}: {:?}",
            net.refusals(&pos)
        );
        net.assert_converged();
        // The kitchen, linked only to the POS, moves the kiosk's order on: `/orders` is one
        // object on every device, so its write lands where the others read it.
        net.put(
            &kitchen,
            &day,
            "/orders/K1-001/kitchen",
            json!({"state": "ready"}),
        );
        net.run_until_quiet();
        assert_eq!(
            net.get(&kiosk, &day, "/orders/K1-001/kitchen/state"),
            Some(json!("ready")),
            "seed {seed}"
        );
        assert_eq!(refused(&net, &all), 0, "seed {seed}");
    }
    println!("8 seeds in {:?}", started.elapsed());
}

/// `health`'s `/devices` is guarded again (nobody replaces it): each device's first report,
/// made while apart, lands in the one `/devices` every device holds.
#[test]
fn first_health_reports_made_apart_all_arrive() {
    let day = doc("health");
    let (mut net, [pos, kitchen, kiosk]) = site(3);
    net.disconnect(&kitchen, &pos);
    for p in [&pos, &kitchen, &kiosk] {
        net.put(p, &day, &format!("/devices/{p}"), json!({"ok": true}));
    }
    net.connect(&kitchen, &pos);
    net.connect(&kiosk, &pos);
    net.run_until_quiet();
    for p in [&pos, &kitchen, &kiosk] {
        assert_eq!(
            net.get(&pos, &day, &format!("/devices/{p}/ok")),
            Some(json!(true)),
            "the POS lacks {p}'s report"
        );
    }
    let all = [pos.clone(), kitchen.clone(), kiosk.clone()];
    assert_eq!(refused(&net, &all), 0, "{:?}", net.refusals(&pos));
    // Replacing `/devices` itself stays refused, locally first.
    let err = net
        .try_write(&kiosk, &day, |s, d| {
            s.put(d, "/devices", json!({"kiosk-1": {}}), Durability::Fast)
        })
        .expect_err("no device replaces /devices");
    println!("a kiosk replacing /devices: {err}");
}

/// The genesis actor of `day`, read from a store that created it.
fn genesis_actor(day: &outpost_core::DocumentId) -> ActorId {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            identity: Some(PeerInfo::parse("s1", "pos-9", "pos").unwrap()),
            policy: Policy::default(),
            ..Default::default()
        },
    )
    .unwrap();
    store
        .put(day, "/orders/P9-001", json!({}), Durability::Fast)
        .unwrap();
    let am = Automerge::load(&store.export(day).unwrap()).unwrap();
    let genesis = am
        .get_changes(&[])
        .into_iter()
        .find(|c| c.actor_id().to_bytes().starts_with(b"genesis:"))
        .expect("the store made the day with a genesis");
    assert_eq!(genesis.seq(), 1);
    genesis.actor_id().clone()
}

fn op(action: OpType, obj: ObjectId, key: &str) -> Op {
    Op {
        action,
        obj,
        key: Key::Map(key.into()),
        pred: SortedVec::new(),
        insert: false,
    }
}

/// A change that claims the genesis actor of a day the POS does not hold yet, with other
/// operations than the genesis (`/orders` made as a map holding a kiosk's order), sent by a
/// kiosk that vouches for it with its own valid signature (a relay's voucher is what lets
/// other actors' changes through): refused. Had it been taken, the real genesis (same
/// actor, same seq) could never be applied there, and every device's orders of that day
/// with it.
#[test]
fn a_forged_genesis_is_refused() {
    let day = doc(TODAY);
    let actor = genesis_actor(&day);
    let (mut net, [pos, kitchen, kiosk]) = site(11);
    net.connect(&kiosk, &pos);
    net.run_until_quiet();
    let orders = ObjectId::Id(automerge::legacy::OpId(1, actor.clone()));
    let forged = automerge::Change::from(automerge::ExpandedChange {
        operations: vec![
            op(OpType::Make(ObjType::Map), ObjectId::Root, "orders"),
            op(OpType::Put(ScalarValue::Str("x".into())), orders, "K9-001"),
        ],
        actor_id: actor,
        hash: None,
        seq: 1,
        start_op: NonZeroU64::new(1).unwrap(),
        time: 0,
        message: None,
        deps: Vec::new(),
        extra_bytes: Vec::new(),
        author: None,
    });
    net.inject_signed(&kiosk, &pos, &day, &forged);
    net.advance(1_000);
    let refusals = net.refusals(&pos);
    println!("the POS refused the forged genesis: {:?}", refusals.first());
    assert!(
        refusals.iter().any(|r| r.contains("genesis")),
        "not refused as a forged genesis: {refusals:?}"
    );
    assert_eq!(net.get(&pos, &day, "/orders/K9-001"), None);
    // The day still works: the POS creates it with the real genesis, and an honest kiosk
    // order arrives everywhere (in a new session: a peer refused takes no more changes to
    // the document from the sender in this one).
    net.disconnect(&kiosk, &pos);
    net.connect(&kiosk, &pos);
    net.put(&pos, &day, "/orders/P1-001", json!({"total": 950}));
    net.put(&kiosk, &day, "/orders/K1-001", json!({"total": 420}));
    net.run_until_quiet();
    for p in [&pos, &kitchen, &kiosk] {
        assert_eq!(
            net.get(p, &day, "/orders/P1-001/total"),
            Some(json!(950)),
            "{p}"
        );
        assert_eq!(
            net.get(p, &day, "/orders/K1-001/total"),
            Some(json!(420)),
            "{p}"
        );
    }
}

/// The genesis is invisible to apps: "create the day" (`/orders {}`) makes the document
/// (one change, the genesis, so peers receive it) but a feed over `/orders` reports no item
/// for the empty container, only the orders written into it.
#[test]
fn the_genesis_makes_no_feed_item() {
    use outpost_core::{Feed, FeedDocs, FeedFilter};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            identity: Some(PeerInfo::parse("s1", "kiosk-1", "kiosk").unwrap()),
            policy: Policy::default(),
            ..Default::default()
        },
    )
    .unwrap();
    let day = doc(TODAY);
    let mut feed = Feed::open(
        &store,
        "kitchen-1/printer",
        FeedFilter {
            docs: Some(FeedDocs::Doc(day.clone())),
            prefix: Some("/orders".parse().unwrap()),
        },
    )
    .unwrap();
    store
        .put(&day, "/orders", json!({}), Durability::Durable)
        .unwrap();
    assert!(store.contains(&day).unwrap(), "the day exists");
    assert_eq!(store.history_len(&day).unwrap(), 1, "only the genesis");
    assert_eq!(store.get(&day, "/orders").unwrap(), Some(json!({})));
    assert_eq!(
        feed.poll().unwrap(),
        None,
        "an item for the empty container"
    );
    store
        .put(
            &day,
            "/orders/K1-001",
            json!({"total": 5}),
            Durability::Durable,
        )
        .unwrap();
    let batch = feed.poll().unwrap().expect("the new order");
    assert_eq!(batch.items, vec!["/orders/K1-001".to_string()]);
    // A write that fails creates no document.
    let other = doc("orders/2023-11-15");
    assert!(store
        .put(
            &other,
            "/orders/K1-001/payment",
            json!({"paid": 5}),
            Durability::Fast
        )
        .is_err());
    assert!(
        !store.contains(&other).unwrap(),
        "a refused write made a document"
    );
}

/// Older data: a day the POS created before genesis changes existed (its store made `/orders`
/// itself) keeps working: a kiosk that receives it writes into the POS's `/orders` (the
/// document exists, so the kiosk adds no genesis), and a genesis that would make a second
/// `/orders` there is refused.
#[test]
fn a_day_created_before_genesis_changes_keeps_working() {
    use outpost_testkit::PeerOptions;
    let day = doc(TODAY);
    let mut net = Net::seeded(21);
    net.calm();
    net.signing(SignatureRule::Required);
    let old = PeerOptions {
        store_policy: Some(Policy::allow_all()),
        ..PeerOptions::default()
    };
    let pos = net.add_peer_with("s1", "pos-1", "pos", old);
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let kiosk = net.add_peer("s1", "kiosk-1", "kiosk");
    net.connect(&kitchen, &pos);
    net.connect(&kiosk, &pos);
    net.put(&pos, &day, "/orders/P1-001", json!({"total": 950}));
    net.run_until_quiet();
    net.put(&kiosk, &day, "/orders/K1-001", json!({"total": 420}));
    net.run_until_quiet();
    for p in [&pos, &kitchen, &kiosk] {
        assert_eq!(
            net.get(p, &day, "/orders/P1-001/total"),
            Some(json!(950)),
            "{p}"
        );
        assert_eq!(
            net.get(p, &day, "/orders/K1-001/total"),
            Some(json!(420)),
            "{p}"
        );
    }
    let all = [pos.clone(), kitchen.clone(), kiosk.clone()];
    assert_eq!(refused(&net, &all), 0, "{:?}", net.refusals(&pos));
    net.assert_converged();
    // A second day, made fresh (with a genesis) by the kiosk while the old POS made its own:
    // the clash of before, refused rather than hiding either side's orders.
    let next = doc("orders/2023-11-15");
    net.disconnect(&kiosk, &pos);
    net.put(&pos, &next, "/orders/P1-001", json!({"total": 1}));
    net.put(&kiosk, &next, "/orders/K1-001", json!({"total": 2}));
    net.connect(&kiosk, &pos);
    net.run_until_quiet();
    let refusals = net.refusals(&pos);
    println!(
        "the old POS refused the fresh day's genesis: {:?}",
        refusals.first()
    );
    assert!(
        refusals.iter().any(|r| r.contains("genesis")),
        "{refusals:?}"
    );
    assert_eq!(net.get(&pos, &next, "/orders/P1-001/total"), Some(json!(1)));
}
