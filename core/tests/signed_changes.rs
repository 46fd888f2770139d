//! Signed changes (issue 12) in the simulation: forged authorship is refused everywhere,
//! signatures and certificates travel through relays, and the rollout rule.

use outpost_core::engine::wire::{ChangeSignature, WireMessage};
use outpost_core::signing::{SignatureRule, Signer};
use outpost_core::{EngineError, PeerInfo, Policy, Store};
use outpost_core::{StoreOptions, Timestamp};
use outpost_testkit::{doc, replay_hint, FaultModel, Net, PeerOptions, TestCa};
use rand::Rng;
use serde_json::json;

const ORDERS: &str = "orders/2026-12-01";

/// A kitchen that writes an order under the kiosk's actor: `signed` with its own key (a
/// tampered device of this version), or unsigned (a tampered device of an older version).
fn forging_relay(seed: u64, rule: SignatureRule, signed: bool) {
    let orders = doc(ORDERS);
    let mut net = Net::seeded(seed);
    net.signing(rule);
    let pos1 = net.add_peer("s1", "pos-1", "pos");
    let pos2 = net.add_peer("s1", "pos-2", "pos");
    let kiosk = net.add_peer("s1", "kiosk-1", "kiosk");
    let forger = net.add_peer_with(
        "s1",
        "kitchen-1",
        "kitchen",
        PeerOptions {
            claimed_peer: Some("kiosk-1".into()),
            claimed_role: Some("kiosk".into()),
            unsigned: !signed,
            ..PeerOptions::default()
        },
    );
    net.exempt(&forger, &orders);
    for (a, b) in [
        (&kiosk, &pos1),
        (&pos1, &pos2),
        (&forger, &pos1),
        (&forger, &pos2),
        (&forger, &kiosk),
    ] {
        net.connect(a, b);
    }
    net.put(&kiosk, &orders, "/orders/k-1", json!({"total": 950}));
    net.run_until_quiet();
    for p in [&pos1, &pos2, &kiosk] {
        net.refusals(p);
    }
    net.put(&forger, &orders, "/orders/forged", json!({"total": 1}));
    net.run_until_quiet();
    for p in [&pos1, &pos2, &kiosk] {
        assert_eq!(
            net.get(p, &orders, "/orders/forged"),
            None,
            "{p} took the forged order; {}",
            replay_hint(seed)
        );
        let refused = net.refusals(p);
        assert!(
            !refused.is_empty(),
            "{p} did not report the forgery; {}",
            replay_hint(seed)
        );
        if signed {
            assert!(
                refused.iter().any(|r| r.contains("forged authorship")),
                "{p}: {refused:?}"
            );
        }
        assert!(net.engine(p).metrics().changes_refused > 0);
    }
    // The real kiosk goes on; its orders reach everyone, also after new sessions.
    for i in 2..6 {
        net.put(
            &kiosk,
            &orders,
            &format!("/orders/k-{i}"),
            json!({"total": i}),
        );
    }
    net.run_until_quiet();
    net.disconnect(&kiosk, &pos1);
    net.put(&kiosk, &orders, "/orders/k-6", json!({"total": 6}));
    net.connect(&kiosk, &pos1);
    net.run_until_quiet();
    for p in [&pos1, &pos2] {
        assert_eq!(net.get(p, &orders, "/orders/k-6/total"), Some(json!(6)));
        assert_eq!(net.get(p, &orders, "/orders/forged"), None);
    }
    net.assert_converged();
}

#[test]
fn a_forging_relay_is_refused_everywhere() {
    for seed in 0..8 {
        forging_relay(seed, SignatureRule::Required, true);
        forging_relay(seed, SignatureRule::Transitional, true);
    }
}

#[test]
fn an_unsigned_forgery_of_a_device_known_to_sign_is_refused_even_in_transition() {
    for seed in 0..8 {
        forging_relay(seed, SignatureRule::Required, false);
        forging_relay(seed, SignatureRule::Transitional, false);
    }
}

#[test]
fn a_new_kiosks_orders_reach_a_pos_that_never_met_it() {
    for seed in 0..8 {
        let orders = doc(ORDERS);
        let mut net = Net::seeded(seed);
        net.signing(SignatureRule::Required);
        let pos1 = net.add_peer("s1", "pos-1", "pos");
        let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
        let kiosk = net.add_peer("s1", "kiosk-9", "kiosk");
        net.connect(&pos1, &kitchen);
        net.connect(&kitchen, &kiosk);
        // One device creates `/orders` (two creating it concurrently make two maps).
        net.put(&pos1, &orders, "/orders/p-1", json!({"total": 1}));
        net.run_until_quiet();
        for i in 0..20 {
            net.put(
                &kiosk,
                &orders,
                &format!("/orders/k-{i}"),
                json!({"total": i}),
            );
        }
        net.run_until_quiet();
        assert_eq!(
            net.get(&pos1, &orders, "/orders/k-19/total"),
            Some(json!(19)),
            "{}",
            replay_hint(seed)
        );
        assert!(net.refusals(&pos1).is_empty());
        let certified = net.store(&pos1).certified_peers().expect("readable");
        assert!(
            certified.contains(&"kiosk-9".parse().expect("valid")),
            "{certified:?}"
        );
        assert!(net.engine(&pos1).metrics().signatures_verified > 0);
        // The kiosk signed each of its 20 commits (and kept the signature of pos-1's order it
        // verified); pos-1 kept what it verified.
        assert_eq!(
            net.store(&kiosk)
                .signature_count(&orders)
                .expect("readable"),
            21
        );
        assert!(net.store(&pos1).signature_count(&orders).expect("readable") >= 1);
        // pos-1 relays what it learnt (signatures and the kiosk's certificate) to a POS
        // that only ever meets pos-1, also after a restart.
        net.restart(&pos1);
        let pos2 = net.add_peer("s1", "pos-2", "pos");
        net.connect(&pos2, &pos1);
        net.run_until_quiet();
        assert_eq!(
            net.get(&pos2, &orders, "/orders/k-19/total"),
            Some(json!(19))
        );
        assert!(net.refusals(&pos2).is_empty());
        net.assert_converged();
    }
}

#[test]
fn rollout_old_devices_are_accepted_in_transition_only() {
    for rule in [SignatureRule::Transitional, SignatureRule::Required] {
        let orders = doc(ORDERS);
        let mut net = Net::seeded(3);
        net.signing(rule);
        let pos1 = net.add_peer("s1", "pos-1", "pos");
        let old = net.add_peer_with(
            "s1",
            "pos-old",
            "pos",
            PeerOptions {
                unsigned: true,
                ..PeerOptions::default()
            },
        );
        net.connect(&pos1, &old);
        net.put(&old, &orders, "/o-1", json!({"total": 1}));
        net.put(&pos1, &orders, "/p-1", json!({"total": 2}));
        net.run_until_quiet();
        let got = net.get(&pos1, &orders, "/o-1/total");
        match rule {
            SignatureRule::Transitional => {
                assert_eq!(got, Some(json!(1)));
                assert!(net.refusals(&pos1).is_empty());
                // The old device still gets the signed device's changes.
                assert_eq!(net.get(&old, &orders, "/p-1/total"), Some(json!(2)));
            }
            _ => {
                assert_eq!(got, None);
                let r = net.refusals(&pos1);
                assert!(r.iter().any(|r| r.contains("no signature")), "{r:?}");
            }
        }
    }
}

/// Under `Transitional`, an old device's unsigned order (`/orders/*`, which the kitchen, a
/// relay role that reads orders, may not write) is refused where it enters, not taken there
/// and refused at the next hop with every later change of its relay (policy fuzzer seeds 207
/// and 227); it waits in the old device's store and arrives once the device is upgraded and
/// signs its history.
#[test]
fn transition_holds_an_old_devices_unsigned_order_until_it_signs() {
    let orders = doc(ORDERS);
    let mut net = Net::seeded(5);
    net.signing(SignatureRule::Transitional);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let old = net.add_peer_with(
        "s1",
        "kiosk-old",
        "kiosk",
        PeerOptions {
            unsigned: true,
            ..PeerOptions::default()
        },
    );
    net.connect(&old, &pos);
    net.put(&old, &orders, "/orders/k-1", json!({"total": 7}));
    net.run_until_quiet();
    assert_eq!(net.get(&pos, &orders, "/orders/k-1/total"), None);
    let r = net.refusals(&pos);
    println!("the old kiosk's unsigned order at the POS: {r:?}");
    assert!(
        r.iter()
            .any(|r| r.contains("relay role kitchen") && r.contains("upgrade")),
        "{r:?}"
    );
    net.set_unsigned(&old, false);
    net.restart(&old);
    net.run_until_quiet();
    assert_eq!(
        net.get(&pos, &orders, "/orders/k-1/total"),
        Some(json!(7)),
        "the upgraded kiosk signs its history and the order arrives"
    );
}

/// The rollout date set ahead on every device (`SignatureRule::RequiredFrom`): an old,
/// unsigned device syncs until the date, and is refused from it on, with no redeployment.
#[test]
fn a_rollout_date_switches_from_transition_to_required() {
    let orders = doc(ORDERS);
    let mut net = Net::seeded(4);
    let switch = Timestamp(net.now().0 + 60_000);
    net.signing(SignatureRule::RequiredFrom(switch));
    let pos1 = net.add_peer("s1", "pos-1", "pos");
    let old = net.add_peer_with(
        "s1",
        "pos-old",
        "pos",
        PeerOptions {
            unsigned: true,
            ..PeerOptions::default()
        },
    );
    net.connect(&pos1, &old);
    net.put(&old, &orders, "/o-1", json!({"total": 1}));
    net.run_until_quiet();
    assert!(net.now() < switch);
    assert_eq!(net.get(&pos1, &orders, "/o-1/total"), Some(json!(1)));
    net.advance(120_000);
    assert!(net.now() >= switch);
    net.put(&old, &orders, "/o-2", json!({"total": 2}));
    net.run_until_quiet();
    assert_eq!(net.get(&pos1, &orders, "/o-2"), None);
    let r = net.refusals(&pos1);
    assert!(r.iter().any(|r| r.contains("no signature")), "{r:?}");
    println!("after the rollout date: {}", r[0]);
}

/// A device upgraded to a signing version vouches for what it wrote before: a relay that
/// holds that history unsigned learns the signatures at the next sync, and serves the whole
/// history to a kiosk that knows the device signs.
#[test]
fn an_upgraded_device_vouches_for_its_earlier_changes() {
    for seed in 0..4 {
        let orders = doc(ORDERS);
        let mut net = Net::seeded(seed);
        net.signing(SignatureRule::Transitional);
        let pos1 = net.add_peer_with(
            "s1",
            "pos-1",
            "pos",
            PeerOptions {
                unsigned: true,
                ..PeerOptions::default()
            },
        );
        let pos2 = net.add_peer("s1", "pos-2", "pos");
        net.connect(&pos1, &pos2);
        // Outside `/orders/*`: `Transitional` takes an unsigned change only where every relay
        // role that reads the context may write (the kitchen may not write `/orders/*`), so
        // that every hop judges it alike (`Engine::check_unsigned_claim`).
        for i in 0..5 {
            net.put(&pos1, &orders, &format!("/a-{i}"), json!({"total": i}));
        }
        net.run_until_quiet();
        assert_eq!(net.get(&pos2, &orders, "/a-4/total"), Some(json!(4)));
        // The upgrade.
        net.set_unsigned(&pos1, false);
        net.restart(&pos1);
        net.put(&pos1, &orders, "/b-1", json!({"total": 9}));
        net.run_until_quiet();
        // A new kiosk only meets pos-2; it learns that pos-1 signs with the first message.
        let kiosk = net.add_peer("s1", "kiosk-1", "kiosk");
        net.connect(&kiosk, &pos2);
        net.run_until_quiet();
        let refused = net.refusals(&kiosk);
        assert!(refused.is_empty(), "{refused:?}; {}", replay_hint(seed));
        assert_eq!(net.get(&kiosk, &orders, "/a-4/total"), Some(json!(4)));
        assert_eq!(net.get(&kiosk, &orders, "/b-1/total"), Some(json!(9)));
        net.assert_converged();
    }
}

/// Changes a device's store took without its key (an offline tool while the node was
/// stopped) are signed by the device when it next sends the document: even a peer that
/// requires signatures takes them.
#[test]
fn offline_writes_without_the_key_are_signed_by_the_device_later() {
    for seed in 0..4 {
        let orders = doc(ORDERS);
        let mut net = Net::seeded(seed);
        net.signing(SignatureRule::Required);
        let pos1 = net.add_peer("s1", "pos-1", "pos");
        let pos2 = net.add_peer("s1", "pos-2", "pos");
        net.connect(&pos1, &pos2);
        net.put(&pos1, &orders, "/orders/a-1", json!({"total": 1}));
        net.run_until_quiet();
        // Offline, without the key.
        net.partition(&[std::slice::from_ref(&pos1), std::slice::from_ref(&pos2)]);
        net.set_unsigned(&pos1, true);
        net.restart(&pos1);
        net.put(&pos1, &orders, "/orders/offline", json!({"total": 2}));
        net.set_unsigned(&pos1, false);
        net.restart(&pos1);
        net.heal();
        net.run_until_quiet();
        let refused = net.refusals(&pos2);
        assert!(refused.is_empty(), "{refused:?}; {}", replay_hint(seed));
        assert_eq!(
            net.get(&pos2, &orders, "/orders/offline/total"),
            Some(json!(2))
        );
        net.assert_converged();
    }
}

/// Signatures must not cost convergence: the usual workload (several writers, a relay, link
/// breaks, partitions, restarts, two documents whose streams overtake each other) over many
/// seeds, every peer requiring signatures.
#[test]
fn signed_sites_converge_under_faults() {
    for seed in 0..24 {
        let orders = doc(ORDERS);
        let stock = doc("stock");
        let mut net = Net::seeded(seed);
        net.signing(SignatureRule::Required);
        net.model(FaultModel::Quic).drop_rate(0.02).reorder(true);
        let peers = [
            net.add_peer("s1", "pos-1", "pos"),
            net.add_peer("s1", "pos-2", "pos"),
            net.add_peer("s1", "kiosk-1", "kiosk"),
            net.add_peer("s1", "kiosk-2", "kiosk"),
            net.add_peer("s1", "kitchen-1", "kitchen"),
        ];
        net.connect(&peers[0], &peers[1]);
        net.connect(&peers[2], &peers[0]);
        net.connect(&peers[3], &peers[1]);
        net.connect(&peers[4], &peers[2]);
        net.connect(&peers[4], &peers[3]);
        // The day's top-level maps come from one device, as design.md says: a second
        // `/orders` created concurrently would hide the first one's orders, and is refused
        // as a replacement (issue 27).
        net.put(&peers[0], &orders, "/orders", json!({}));
        net.put(&peers[0], &orders, "/kitchen", json!({}));
        net.run_until_quiet();
        for round in 0..6 {
            if round == 2 {
                net.partition(&[&peers[..2], &peers[2..]]);
            }
            if round == 4 {
                net.heal();
            }
            if round == 3 {
                let p = peers[net.rng().random_range(0..peers.len())].clone();
                net.restart(&p);
            }
            for i in 0..15 {
                let p = peers[net.rng().random_range(0..peers.len())].clone();
                // Orders are placed by POS and kiosks (the default policy's path rules);
                // the kitchen writes elsewhere in the document.
                let at = if p.as_str().starts_with("kitchen") {
                    format!("/kitchen/{p}-{round}-{i}")
                } else {
                    format!("/orders/{p}-{round}-{i}")
                };
                net.put(&p, &orders, &at, json!({"total": i}));
                // Stock is written by POS and kiosks only.
                if !p.as_str().starts_with("kitchen") && net.rng().random_bool(0.5) {
                    net.put(&p, &stock, &format!("/s-{p}-{round}-{i}"), json!(i));
                }
            }
            net.advance(50);
        }
        net.drop_rate(0.0);
        net.heal();
        net.run_until_quiet();
        for p in &peers {
            let r = net.refusals(p);
            assert!(r.is_empty(), "{p} refused: {r:?}; {}", replay_hint(seed));
        }
        net.assert_converged();
    }
}

/// Malformed `Signatures` messages are errors that keep nothing, never panics.
#[test]
fn malformed_signatures_are_errors() {
    let ca = TestCa::new(7);
    let other_ca = TestCa::new(8);
    let dir = tempfile::tempdir().expect("temp dir");
    let me = PeerInfo::parse("s1", "pos-1", "pos").expect("valid");
    let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").expect("valid");
    let board = PeerInfo::parse("s1", "board-1", "menu-board").expect("valid");
    let mut e = ca.engine(dir.path(), me, SignatureRule::Required);
    let now = Timestamp(0);
    e.handle_connect(kiosk.clone(), now);
    e.handle_connect(board.clone(), now);
    let orders = doc(ORDERS);
    let sig = |len: usize| ChangeSignature {
        change: [1; 32],
        key: [2; 32],
        signature: vec![3; len],
    };
    let cases: Vec<(&PeerInfo, WireMessage)> = vec![
        // A certificate that is not one.
        (
            &kiosk,
            WireMessage::Signatures {
                doc: orders.clone(),
                signatures: vec![sig(64)],
                certificates: vec![vec![0xff; 40]],
            },
        ),
        // A certificate of another fleet.
        (
            &kiosk,
            WireMessage::Signatures {
                doc: orders.clone(),
                signatures: vec![],
                certificates: vec![other_ca.issue(&kiosk).certificate().to_vec()],
            },
        ),
        // An oversized signature.
        (
            &kiosk,
            WireMessage::Signatures {
                doc: orders.clone(),
                signatures: vec![sig(100_000)],
                certificates: vec![],
            },
        ),
        // Signatures from a role that may not write the context.
        (
            &board,
            WireMessage::Signatures {
                doc: orders.clone(),
                signatures: vec![sig(64)],
                certificates: vec![],
            },
        ),
    ];
    for (from, m) in cases {
        let r = e.handle_message(&from.peer, &m.encode(), now);
        assert!(
            matches!(r, Err(EngineError::BadSignatures { .. })),
            "{m:?}: {r:?}"
        );
    }
    // Changes that follow a refused `Signatures` message are refused, not taken unsigned.
    let kiosk2 = PeerInfo::parse("s1", "kiosk-2", "kiosk").expect("valid");
    let dir2 = tempfile::tempdir().expect("temp dir");
    let mut lenient = ca.engine(
        dir2.path(),
        PeerInfo::parse("s1", "pos-2", "pos").expect("valid"),
        SignatureRule::Transitional,
    );
    lenient.handle_connect(kiosk2.clone(), now);
    let kdir = tempfile::tempdir().expect("temp dir");
    let kstore = Store::open_with(
        kdir.path(),
        StoreOptions {
            identity: Some(kiosk2.clone()),
            policy: Policy::default(),
            ..StoreOptions::default()
        },
    )
    .expect("store");
    kstore
        .put(&orders, "/o-1", json!(1), outpost_core::Durability::Fast)
        .expect("write");
    let bogus = WireMessage::Signatures {
        doc: orders.clone(),
        signatures: vec![sig(64)],
        certificates: vec![other_ca.issue(&kiosk2).certificate().to_vec()],
    };
    assert!(lenient
        .handle_message(&kiosk2.peer, &bogus.encode(), now)
        .is_err());
    let push = WireMessage::Sync {
        doc: orders.clone(),
        data: automerge::sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: kstore.changes_since(&orders, &[]).expect("changes").into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
        .encode(),
    };
    lenient
        .handle_message(&kiosk2.peer, &push.encode(), now)
        .expect("handled");
    // The kiosk's change and the document's genesis, which came with it.
    assert_eq!(lenient.metrics().changes_refused, 2);
    assert!(!lenient.store().has_document(&orders).expect("readable"));
    // Truncated and garbled encodings are wire errors.
    let good = WireMessage::Signatures {
        doc: orders.clone(),
        signatures: vec![sig(64)],
        certificates: vec![ca.issue(&kiosk).certificate().to_vec()],
    }
    .encode();
    for cut in 1..good.len() {
        let _ = e.handle_message(&kiosk.peer, &good[..cut], now);
    }
    let mut rng = rand::rng();
    for _ in 0..2_000 {
        let mut bytes = good.clone();
        let i = rng.random_range(1..bytes.len());
        bytes[i] = rng.random();
        let _ = e.handle_message(&kiosk.peer, &bytes, now);
    }
    // The real certificate was learnt once, and nothing else.
    assert_eq!(
        e.store().certified_peers().expect("readable").len(),
        2,
        "pos-1 and kiosk-1"
    );
    assert!(e.metrics().sync_errors >= 4);
}

/// A peer that sends tens of thousands of signatures for changes we hold unsigned makes us
/// verify at most one per actor of its own, never one per signature.
#[test]
fn late_signatures_cost_one_verification_per_actor() {
    let ca = TestCa::new(9);
    let dir = tempfile::tempdir().expect("temp dir");
    let me = PeerInfo::parse("s1", "pos-1", "pos").expect("valid");
    let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").expect("valid");
    let mut e = ca.engine(dir.path(), me, SignatureRule::Transitional);
    e.handle_connect(kiosk.clone(), Timestamp(0));
    let orders = doc(ORDERS);
    // The kiosk's 300 orders, unsigned (a version before signed changes).
    let kdir = tempfile::tempdir().expect("temp dir");
    let kstore = Store::open_with(
        kdir.path(),
        StoreOptions {
            identity: Some(kiosk.clone()),
            policy: Policy::default(),
            ..StoreOptions::default()
        },
    )
    .expect("store");
    for i in 0..300 {
        kstore
            .put(
                &orders,
                &format!("/o-{i}"),
                json!(i),
                outpost_core::Durability::Fast,
            )
            .expect("write");
    }
    let changes = kstore.changes_since(&orders, &[]).expect("changes");
    let hashes: Vec<[u8; 32]> = changes
        .iter()
        .map(|c| {
            automerge::Change::try_from(c.as_slice())
                .expect("a change")
                .hash()
                .0
        })
        .collect();
    let sync = |changes: Vec<Vec<u8>>| {
        WireMessage::Sync {
            doc: orders.clone(),
            data: automerge::sync::Message {
                heads: vec![],
                need: vec![],
                have: vec![],
                changes: changes.into(),
                flags: None,
                version: automerge::sync::MessageVersion::V1,
            }
            .encode(),
        }
        .encode()
    };
    // Transitional (the kiosk is not known to sign yet): accepted unsigned.
    e.handle_message(&kiosk.peer, &sync(changes.clone()), Timestamp(1))
        .expect("applied");
    // The kiosk's 300 and the day's genesis (`core/src/genesis.rs`).
    assert_eq!(e.metrics().changes_applied, 301);
    let errors_before = e.metrics().sync_errors;
    // 60,000 signatures with the kiosk's real certificate: 300 of its changes, the rest of
    // changes we do not have.
    let cert = ca.issue(&kiosk).certificate().to_vec();
    let key = outpost_core::signing::KeyId::of(&cert).0;
    let mut rng = rand::rng();
    let all: Vec<ChangeSignature> = (0..60_000)
        .map(|i| ChangeSignature {
            change: hashes.get(i).copied().unwrap_or_else(|| rng.random()),
            key,
            signature: vec![7; 64],
        })
        .collect();
    let mut messages = 0;
    for (i, part) in all.chunks(5_000).enumerate() {
        let m = WireMessage::Signatures {
            doc: orders.clone(),
            signatures: part.to_vec(),
            certificates: if i == 0 { vec![cert.clone()] } else { vec![] },
        };
        e.handle_message(&kiosk.peer, &m.encode(), Timestamp(2))
            .expect("kept");
        messages += 1;
    }
    let started = std::time::Instant::now();
    let changes_again = changes.clone();
    let _ = e.handle_message(&kiosk.peer, &sync(changes), Timestamp(3));
    let took = started.elapsed();
    let checked = e.metrics().sync_errors - errors_before;
    assert_eq!(e.metrics().signatures_verified, 0);
    println!(
        "late signatures: 60,000 signatures in {messages} messages for 300 held changes \
         cost {checked} errors (one failed verification, one drop of the rest), {} ms (debug build)",
        took.as_millis()
    );
    // One verification (which fails: the signatures are garbage) for the kiosk's one actor,
    // and one error for the 59,700 signatures of changes it never sent, dropped.
    assert_eq!(checked, 2, "one verification for the kiosk's one actor");
    let started = std::time::Instant::now();
    let _ = e.handle_message(&kiosk.peer, &sync(changes_again), Timestamp(4));
    println!(
        "late signatures: the next message costs {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        e.metrics().sync_errors - errors_before,
        2,
        "nothing left to examine"
    );
}

/// Issue 27: what the cloud writes for head office (its API) is authored as a head-office
/// identity (`Store::transact_as`: its own actor and certificate, fleet-wide), and every
/// device checks it as a head-office device's change, path rules included, not as the
/// cloud's (which may write everything). The cloud's store here enforces nothing
/// (`Policy::allow_all`), as a cloud with a policy out of date would: the POS still
/// refuses what head office may not write.
#[test]
fn writes_as_head_office_are_checked_as_head_offices() {
    use outpost_core::{Author, ContextRule, Durability};
    let mut net = Net::seeded(41);
    let mut policy = Policy::default();
    policy.contexts.insert(
        "menu".parse().expect("valid"),
        ContextRule::new(&["pos", "kiosk"], &["pos", "head-office"])
            .path("/items/*/price", &["head-office"])
            .path("/items/*/name", &["pos"]),
    );
    net.policy(policy);
    net.signing(SignatureRule::Required);
    let cloud = net.add_peer_with(
        "s1",
        "cloud-1",
        "cloud",
        PeerOptions {
            store_policy: Some(Policy::allow_all()),
            ..PeerOptions::default()
        },
    );
    let pos = net.add_peer("s1", "pos-1", "pos");
    net.connect(&pos, &cloud);
    let menu = doc("menu");
    net.put(&pos, &menu, "/items/burger", json!({"name": "Burger"}));
    net.run_until_quiet();
    // A fleet-wide identity: of the fleet's "site", not the device's.
    let hq = PeerInfo::parse("acme", "cloud-1-api", "head-office").expect("valid identity");
    let signer = net.ca().expect("a signing network").issue(&hq);
    let author = Author::new(hq, signer);
    let write = |net: &mut Net, id: &str, path: &'static str, value: serde_json::Value| {
        net.try_write(&cloud, &menu, |s, d| {
            s.transact_as(&author, d, id, Durability::Fast, |tx| tx.put(path, value))
                .map(|_| ())
        })
    };
    write(&mut net, "w1", "/items/burger/price", json!(1050)).expect("head office sets a price");
    net.run_until_quiet();
    assert_eq!(
        net.get(&pos, &menu, "/items/burger/price"),
        Some(json!(1050))
    );
    let authors = net
        .store(&pos)
        .conflicts(&menu, "/items/burger/price")
        .expect("the value is there");
    println!(
        "the price's author at the POS: {:?} ({:?})",
        authors[0].author, authors[0].author_role
    );
    assert_eq!(
        authors[0].author_role.as_ref().map(|r| r.as_str()),
        Some("head-office")
    );
    assert!(net.engine(&pos).metrics().signatures_verified > 0);
    // Renaming is the POS's step: head office may not, whoever relays it.
    write(&mut net, "w2", "/items/burger/name", json!("Rogue")).expect("this store checks nothing");
    net.run_until_quiet();
    assert_eq!(
        net.get(&pos, &menu, "/items/burger/name"),
        Some(json!("Burger")),
        "the POS took a head-office change at a path head office may not write"
    );
    let refused = net.refusals(&pos);
    println!("the POS refused: {refused:?}");
    assert!(
        refused.iter().any(|r| r.contains("head-office")),
        "{refused:?}"
    );
}
