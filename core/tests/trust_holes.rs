//! Issue 27's holes in the core sync engine, each as a tampered kiosk would use it: every
//! honest peer refuses the attack (an event, a metric, a `Refused` to the sender), keeps
//! the data other devices wrote, and the figure each limit bounds is printed.
#![allow(clippy::unwrap_used)]

use outpost_core::signing::SignatureRule;
use outpost_core::{Durability, Event};
use outpost_testkit::{doc, Net, PeerOptions};
use serde_json::json;

/// The simulation starts on 2023-11-14 (`START_MS`): today's orders.
const TODAY: &str = "orders/2023-11-14";

/// Hole 1: a kiosk writes, unsigned, under the actor of a device nobody has seen
/// (`outpost:<claimed role>:ghost:…`): it deletes today's `/orders` and marks an order paid.
/// `rule`: the signature rule of the honest peers (`None`: the default).
fn ghost_writes(seed: u64, rule: Option<SignatureRule>, claimed_role: &str) {
    let day = doc(TODAY);
    let mut net = Net::seeded(seed);
    net.calm();
    net.signing(rule.unwrap_or_default());
    let pos1 = net.add_peer("s1", "pos-1", "pos");
    let pos2 = net.add_peer("s1", "pos-2", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let rogue = net.add_peer_with(
        "s1",
        "kiosk-9",
        "kiosk",
        PeerOptions {
            claimed_peer: Some("ghost".into()),
            claimed_role: Some(claimed_role.into()),
            unsigned: true,
            store_policy: Some(outpost_core::Policy::allow_all()),
            ..PeerOptions::default()
        },
    );
    net.exempt(&rogue, &day);
    // The README's topology, plus the rogue linked to every honest peer, so that each one
    // has to judge the forgery itself.
    for (a, b) in [
        (&pos1, &pos2),
        (&kitchen, &pos1),
        (&rogue, &pos1),
        (&rogue, &pos2),
        (&rogue, &kitchen),
    ] {
        net.connect(a, b);
    }
    net.put(
        &pos1,
        &day,
        "/orders",
        json!({"P1-001": {"total": 950}, "P1-002": {"total": 420}}),
    );
    net.run_until_quiet();
    assert_eq!(
        net.get(&rogue, &day, "/orders/P1-001/total"),
        Some(json!(950))
    );
    for p in [&pos1, &pos2, &kitchen] {
        net.refusals(p);
    }
    net.put(&rogue, &day, "/orders/P1-002/payment", json!({"paid": 420}));
    net.write(&rogue, &day, |s, d| {
        s.delete(d, "/orders", Durability::Fast)
    });
    net.run_until_quiet();
    for p in [&pos1, &pos2, &kitchen] {
        let refused = net.refusals(p);
        let metric = net.engine(p).metrics().changes_refused;
        println!(
            "seed {seed}, {rule:?}, ghost as {claimed_role}: {p} refused {metric} changes: {:?}",
            refused.first()
        );
        assert_eq!(
            net.get(p, &day, "/orders/P1-001/total"),
            Some(json!(950)),
            "{p} lost the orders to a ghost {claimed_role} (seed {seed}, {rule:?})"
        );
        assert_eq!(net.get(p, &day, "/orders/P1-002/payment"), None, "{p}");
        assert!(!refused.is_empty(), "{p} reported no refusal");
        assert!(metric > 0, "{p} counted no refusal");
    }
    // The honest devices still sync with each other.
    net.put(&pos2, &day, "/orders/P2-001", json!({"total": 1}));
    net.run_until_quiet();
    assert_eq!(
        net.get(&kitchen, &day, "/orders/P2-001/total"),
        Some(json!(1))
    );
}

#[test]
fn a_ghost_cloud_is_refused_under_the_default_rule() {
    for seed in 0..3 {
        ghost_writes(seed, None, "cloud");
        ghost_writes(seed, None, "pos");
    }
}

#[test]
fn a_ghost_cloud_is_refused_even_in_transition() {
    for seed in 0..3 {
        for role in ["cloud", "head-office", "pos"] {
            ghost_writes(seed, Some(SignatureRule::Transitional), role);
        }
    }
}

mod crafted {
    //! Changes built by hand, as a tampered kiosk signing as itself would send them, against
    //! a POS engine over a real store.
    use std::num::NonZeroU64;

    use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
    use automerge::{ActorId, ObjType, ReadDoc, ScalarValue};
    use outpost_core::engine::wire::WireMessage;
    use outpost_core::{
        DocumentId, Durability, Engine, EngineConfig, Event, PeerInfo, Policy, Store, StoreOptions,
        Timestamp,
    };
    use serde_json::json;

    pub(super) const NOW: Timestamp = Timestamp(1_700_000_000_000);

    pub(super) struct Pos {
        pub(super) engine: Engine,
        pub(super) _dir: tempfile::TempDir,
    }

    /// A POS holding today's orders, with a kiosk connected.
    pub(super) fn pos_with_orders(day: &DocumentId) -> (Pos, PeerInfo) {
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
        store
            .put(
                day,
                "/orders",
                json!({
                    "P1-001": {"total": 950, "kitchen": {"state": "ready"}, "payment": {"paid": 950}},
                    "P1-002": {"total": 420, "closed": true},
                }),
                Durability::Fast,
            )
            .unwrap();
        let mut engine = Engine::new(store, EngineConfig::new(me, Policy::default()));
        let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").unwrap();
        engine.handle_connect(kiosk.clone(), NOW);
        while engine.poll_transmit().is_some() {}
        (Pos { engine, _dir: dir }, kiosk)
    }

    /// The kiosk's actor as its store would make it.
    fn kiosk_actor() -> ActorId {
        let mut bytes = b"outpost:kiosk:kiosk-1:".to_vec();
        bytes.extend_from_slice(&[9; 8]);
        ActorId::from(bytes)
    }

    /// The legacy id of the map at `key` of the root of `doc` in `store`.
    fn map_id(store: &Store, doc: &DocumentId, key: &str) -> ObjectId {
        let am = automerge::Automerge::load(&store.export(doc).unwrap()).unwrap();
        match am.get(automerge::ROOT, key).unwrap() {
            Some((_, automerge::ObjId::Id(counter, actor, _))) => {
                ObjectId::Id(OpId::new(counter, &actor))
            }
            other => panic!("no map at /{key}: {other:?}"),
        }
    }

    /// One change by the kiosk of `ops`, on top of the POS's heads, with an op counter far
    /// above everything the document holds (so that Automerge shows its values first).
    fn change(store: &Store, doc: &DocumentId, ops: Vec<Op>) -> Vec<u8> {
        let expanded = automerge::ExpandedChange {
            operations: ops,
            actor_id: kiosk_actor(),
            hash: None,
            seq: 1,
            start_op: NonZeroU64::new(1_000_000).unwrap(),
            time: 0,
            message: None,
            deps: store.heads(doc).unwrap(),
            extra_bytes: Vec::new(),
            author: None,
        };
        automerge::Change::from(expanded).raw_bytes().to_vec()
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

    /// Sends `chunk` as the kiosk; returns the refusals the POS reported.
    pub(super) fn send(
        pos: &mut Pos,
        kiosk: &PeerInfo,
        doc: &DocumentId,
        chunk: Vec<u8>,
    ) -> Vec<String> {
        let msg = automerge::sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: vec![chunk].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let bytes = WireMessage::Sync {
            doc: doc.clone(),
            data: msg.encode(),
        }
        .encode();
        pos.engine.handle_message(&kiosk.peer, &bytes, NOW).unwrap();
        while pos.engine.poll_transmit().is_some() {}
        std::iter::from_fn(|| pos.engine.poll_event())
            .filter_map(|e| match e {
                Event::ChangeRefused { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// Builds the operations of one attack against the POS's store.
    type Attack = Box<dyn Fn(&Store) -> Vec<Op>>;

    /// Hole 2: puts with an empty `pred` and a higher op counter over keys the POS holds.
    #[test]
    fn a_replacement_disguised_as_a_creation_is_refused() {
        let day: DocumentId = super::TODAY.parse().unwrap();
        let attacks: Vec<(&str, Attack)> = vec![
            (
                "a new map over /orders",
                Box::new(|_| vec![op(OpType::Make(ObjType::Map), ObjectId::Root, "orders")]),
            ),
            (
                "a scalar over /orders",
                Box::new(|_| vec![op(OpType::Put(ScalarValue::Null), ObjectId::Root, "orders")]),
            ),
            (
                "a new map over /orders/P1-001",
                Box::new(|s| {
                    vec![op(
                        OpType::Make(ObjType::Map),
                        map_id(s, &super::TODAY.parse().unwrap(), "orders"),
                        "P1-001",
                    )]
                }),
            ),
            (
                "a scalar over /orders/P1-002",
                Box::new(|s| {
                    vec![op(
                        OpType::Put(ScalarValue::Str("void".into())),
                        map_id(s, &super::TODAY.parse().unwrap(), "orders"),
                        "P1-002",
                    )]
                }),
            ),
        ];
        for (name, ops) in attacks {
            let (mut pos, kiosk) = pos_with_orders(&day);
            let store = pos.engine.store().clone();
            let chunk = change(&store, &day, ops(&store));
            let refused = send(&mut pos, &kiosk, &day, chunk);
            println!("{name}: refused {:?}", refused.first());
            assert_eq!(
                store.get(&day, "/orders/P1-001/payment/paid").unwrap(),
                Some(json!(950)),
                "{name}: the orders vanished"
            );
            assert_eq!(
                store.get(&day, "/orders/P1-002/closed").unwrap(),
                Some(json!(true)),
                "{name}"
            );
            assert_eq!(refused.len(), 1, "{name}: not refused");
            assert_eq!(pos.engine.metrics().changes_refused, 1, "{name}");
        }
        // The control: a new order at a new key, crafted the same way, is taken.
        let (mut pos, kiosk) = pos_with_orders(&day);
        let store = pos.engine.store().clone();
        let orders = map_id(&store, &day, "orders");
        let chunk = change(
            &store,
            &day,
            vec![op(OpType::Make(ObjType::Map), orders, "K1-001")],
        );
        let refused = send(&mut pos, &kiosk, &day, chunk);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(store.get(&day, "/orders/K1-001").unwrap(), Some(json!({})));
    }
}

/// Hole 2, the plain way: a kiosk that never synced the day writes `/orders` with a new
/// order in it, and then meets the POS that holds the day's orders. The day's genesis made
/// `/orders` on both (one object), and an object written over an empty map fills it: the
/// kiosk's order is a creation every peer takes, and nothing of the POS's is hidden. Once
/// the kiosk holds the day's orders, writing `/orders` whole is a replacement, refused
/// (a crafted one sent anyway is refused by receivers: `crafted::a_replacement_...`).
#[test]
fn an_unsynced_kiosk_seeding_orders_cannot_hide_the_days_orders() {
    let day = doc(TODAY);
    let mut net = Net::seeded(5);
    net.calm();
    net.signing(SignatureRule::Required);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let kiosk = net.add_peer("s1", "kiosk-1", "kiosk");
    net.connect(&kitchen, &pos);
    net.put(
        &pos,
        &day,
        "/orders",
        json!({"P1-001": {"total": 950, "payment": {"paid": 950}}}),
    );
    net.run_until_quiet();
    net.put(&kiosk, &day, "/orders", json!({"K1-001": {"total": 5}}));
    net.connect(&kiosk, &pos);
    net.run_until_quiet();
    for p in [&pos, &kitchen, &kiosk] {
        assert_eq!(
            net.get(p, &day, "/orders/P1-001/payment/paid"),
            Some(json!(950)),
            "{p} lost the day's orders"
        );
        assert_eq!(
            net.get(p, &day, "/orders/K1-001/total"),
            Some(json!(5)),
            "{p}"
        );
        assert_eq!(net.engine(p).metrics().changes_refused, 0, "{p}");
    }
    net.assert_converged();
    for value in [json!({}), json!({"K1-002": {"total": 7}})] {
        let err = net
            .try_write(&kiosk, &day, |s, d| {
                s.put(d, "/orders", value.clone(), Durability::Fast)
            })
            .expect_err("a kiosk may not replace the day's orders");
        println!("kiosk-1 writing /orders {value}: {err}");
    }
    assert_eq!(
        net.get(&kiosk, &day, "/orders/P1-001/total"),
        Some(json!(950))
    );
}

/// Hole 5: a read-only menu board sends 100,000 tiny messages (refusals, empty sync
/// messages, empty signatures), each naming a fresh document, readable or not. The POS keeps
/// a bounded number of per-document entries for it, answers each with a typed error, an
/// event and a metric where it drops one, and `poll_timeout` stays cheap.
#[test]
fn messages_naming_fresh_documents_keep_engine_state_bounded() {
    use outpost_core::engine::wire::WireMessage;
    use outpost_core::engine::MAX_UNHELD_STATES_PER_PEER;
    use outpost_core::{DocumentId, PeerInfo};

    const MESSAGES: usize = 100_000;
    let day: DocumentId = TODAY.parse().unwrap();
    let (mut pos, _kiosk) = crafted::pos_with_orders(&day);
    let board = PeerInfo::parse("s1", "menu-board-1", "menu-board").unwrap();
    pos.engine.handle_connect(board.clone(), crafted::NOW);
    while pos.engine.poll_transmit().is_some() {}
    let empty_sync = automerge::sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: Vec::<Vec<u8>>::new().into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode();
    let started = std::time::Instant::now();
    let (mut errors, mut events) = (0usize, 0usize);
    let mut most = 0;
    for i in 0..MESSAGES {
        // Half of them name documents the board may read (menu partitions it lacks), half
        // documents it may not (orders).
        let doc: DocumentId = if i % 2 == 0 {
            format!("menu/p{i}")
        } else {
            format!("orders/p{i}")
        }
        .parse()
        .unwrap();
        let msg = match i % 3 {
            0 => WireMessage::Refused {
                doc,
                reason: "no".into(),
            },
            1 => WireMessage::Sync {
                doc,
                data: empty_sync.clone(),
            },
            _ => WireMessage::Signatures {
                doc,
                signatures: vec![],
                certificates: vec![],
            },
        };
        if pos
            .engine
            .handle_message(&board.peer, &msg.encode(), crafted::NOW)
            .is_err()
        {
            errors += 1;
        }
        // As the runner does after every input.
        let _ = pos.engine.poll_timeout();
        while pos.engine.poll_transmit().is_some() {}
        events += std::iter::from_fn(|| pos.engine.poll_event()).count();
        most = most.max(pos.engine.document_states());
    }
    let took = started.elapsed();
    let states = pos.engine.document_states();
    println!(
        "{MESSAGES} messages naming fresh documents: {states} per-document entries kept (at \
         most {most}; limit {MAX_UNHELD_STATES_PER_PEER} per peer), {errors} typed errors, \
         {events} events, sync_errors {}, {:.1} s (debug)",
        pos.engine.metrics().sync_errors,
        took.as_secs_f64()
    );
    assert!(most <= MAX_UNHELD_STATES_PER_PEER + 2, "{most} entries");
    assert!(errors >= MESSAGES / 2, "{errors} errors");
    assert!(events >= MESSAGES / 2, "{events} events");
    assert_eq!(pos.engine.store().documents().unwrap(), vec![day.clone()]);
}

/// Hole 6: a kiosk reconnects again and again, each session creating junk documents up to
/// the per-session limit. Its per-device quota holds across sessions and a restart of the
/// POS, and another device's new document (tomorrow's orders) is still accepted.
#[test]
fn one_device_cannot_fill_the_store_across_sessions() {
    use outpost_core::engine::wire::WireMessage;
    use outpost_core::{DocumentId, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions};

    const PER_SESSION: usize = 50;
    const PER_DEVICE: usize = 120;
    const SESSIONS: usize = 6;
    let now = crafted::NOW;
    let dir = tempfile::tempdir().unwrap();
    let me = PeerInfo::parse("s1", "pos-1", "pos").unwrap();
    let open = || {
        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                identity: Some(me.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        let mut c = EngineConfig::new(me.clone(), Policy::default());
        c.max_new_documents_per_session = PER_SESSION;
        c.max_new_documents_per_device = PER_DEVICE;
        Engine::new(store, c)
    };
    let source = |peer: &str, role: &str| {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(
            d.path(),
            StoreOptions {
                identity: Some(PeerInfo::parse("s1", peer, role).unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        (s, d)
    };
    // Sends `doc` whole from `source` as `from`; whether it was refused.
    let send = |engine: &mut Engine, from: &PeerInfo, source: &Store, doc: &DocumentId| -> bool {
        let msg = automerge::sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: source.changes_since(doc, &[]).unwrap().into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let bytes = WireMessage::Sync {
            doc: doc.clone(),
            data: msg.encode(),
        }
        .encode();
        engine.handle_message(&from.peer, &bytes, now).unwrap();
        while engine.poll_transmit().is_some() {}
        std::iter::from_fn(|| engine.poll_event()).any(|e| matches!(e, Event::ChangeRefused { .. }))
    };
    let kiosk = PeerInfo::parse("s1", "kiosk-9", "kiosk").unwrap();
    let (junk, _d1) = source("kiosk-9", "kiosk");
    let mut engine = open();
    let mut next = 0;
    let mut accepted = 0;
    let mut sessions = Vec::new();
    for session in 0..SESSIONS {
        if session == SESSIONS / 2 {
            // A restart of the POS in the middle: the count is on disk.
            drop(engine);
            engine = open();
        }
        engine.handle_connect(kiosk.clone(), now);
        while engine.poll_transmit().is_some() {}
        let mut took = 0;
        for _ in 0..PER_SESSION {
            let d: DocumentId = format!("orders/junk-{next:05}").parse().unwrap();
            next += 1;
            junk.put(&d, "/x", json!(1), Durability::Fast).unwrap();
            if !send(&mut engine, &kiosk, &junk, &d) {
                took += 1;
            }
        }
        accepted += took;
        sessions.push(took);
        engine.handle_disconnect(&kiosk.peer, now);
    }
    let held = engine.store().documents().unwrap().len();
    println!(
        "one kiosk, {SESSIONS} sessions of {PER_SESSION} new documents (a restart after {}): \
         accepted per session {sessions:?}, {accepted} in all, {held} held; quota \
         {PER_DEVICE} per device, {PER_SESSION} per session; refusals {}",
        SESSIONS / 2,
        engine.metrics().changes_refused
    );
    assert_eq!(accepted, PER_DEVICE);
    assert_eq!(held, PER_DEVICE);
    // Tomorrow's orders from the POS of the site are still taken.
    let pos2 = PeerInfo::parse("s1", "pos-2", "pos").unwrap();
    let (other, _d2) = source("pos-2", "pos");
    let tomorrow: DocumentId = "orders/2023-11-15".parse().unwrap();
    other
        .put(
            &tomorrow,
            "/orders",
            json!({"P2-001": {"total": 1}}),
            Durability::Fast,
        )
        .unwrap();
    engine.handle_connect(pos2.clone(), now);
    while engine.poll_transmit().is_some() {}
    assert!(!send(&mut engine, &pos2, &other, &tomorrow), "refused");
    assert_eq!(
        engine
            .store()
            .get(&tomorrow, "/orders/P2-001/total")
            .unwrap(),
        Some(json!(1))
    );
}
