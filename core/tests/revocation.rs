//! Revocation that spreads (issue 12) in the simulation: a record signed by the fleet CA,
//! learnt at one device, reaches every device of the site through relays, closes the revoked
//! device's links, refuses its reconnections and its changes (also relayed), survives a
//! restart; forged or oversized records are errors that keep nothing.

use outpost_core::engine::wire::WireMessage;
use outpost_core::engine::{RevocationRefused, MAX_BAD_REVOCATIONS_PER_SESSION};
use outpost_core::revocation::{SignedRevocation, MAX_REVOCATIONS_PER_MESSAGE};
use outpost_core::signing::SignatureRule;
use outpost_core::{Engine, EngineConfig, EngineError, Event, PeerInfo, Policy, Store, Timestamp};
use outpost_testkit::{doc, replay_hint, Net, TestCa};
use serde_json::json;

const ORDERS: &str = "orders/2026-12-01";

fn site() -> outpost_core::SiteId {
    "s1".parse().expect("a site id")
}

/// A stolen kiosk: revoked at the POS, the revocation reaches the kitchen (which never talks
/// to the POS's operator), every link of the kiosk closes and stays closed, and what the
/// kiosk writes afterwards reaches nobody, also through a menu board that was offline when
/// the revocation went out and took the kiosk's new order meanwhile.
fn stolen_kiosk(seed: u64) {
    let orders = doc(ORDERS);
    let mut net = Net::seeded(seed);
    net.signing(SignatureRule::Transitional);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let kiosk = net.add_peer("s1", "kiosk-1", "kiosk");
    let kiosk2 = net.add_peer("s1", "kiosk-2", "kiosk");
    for (a, b) in [(&kiosk, &pos), (&pos, &kitchen), (&kiosk, &kitchen)] {
        net.connect(a, b);
    }
    net.put(&kiosk, &orders, "/orders/k-1", json!({"total": 950}));
    net.run_until_quiet();
    assert_eq!(
        net.get(&kitchen, &orders, "/orders/k-1/total"),
        Some(json!(950))
    );

    // kiosk-2 is off the site's network, only linked to the stolen kiosk.
    net.connect(&kiosk, &kiosk2);
    net.run_until_quiet();
    net.disconnect(&kiosk, &kiosk2);

    net.revoke_at(&pos, &kiosk, "stolen from the counter");
    // The kiosk keeps redialing (a thief's device does): a minute of refusals.
    net.advance(60_000);
    for p in [&pos, &kitchen] {
        assert!(
            net.engine(p).is_revoked(&site(), &kiosk),
            "{p} did not learn the revocation; {}",
            replay_hint(seed)
        );
        assert_eq!(
            net.connections_between(p, &kiosk) + net.connections_between(&kiosk, p),
            0,
            "{p} kept a link with the revoked kiosk; {}",
            replay_hint(seed)
        );
        assert_eq!(net.engine(p).metrics().revocations_learned, 1);
        assert!(net
            .events(p)
            .iter()
            .any(|e| matches!(e, Event::Revoked { revocation, .. } if revocation.peer == kiosk)));
    }
    // The thief's kiosk keeps writing and dialing: nobody takes its links.
    net.put(&kiosk, &orders, "/orders/k-2", json!({"total": 1}));
    net.advance(60_000);
    for p in [&pos, &kitchen] {
        assert_eq!(net.connections_between(&kiosk, p), 0);
        assert_eq!(net.get(p, &orders, "/orders/k-2"), None);
    }
    net.disconnect(&kiosk, &pos);
    net.disconnect(&kiosk, &kitchen);
    net.run_until_quiet();

    // kiosk-2 meets the stolen kiosk again before it hears of the revocation, and takes k-2.
    net.connect(&kiosk, &kiosk2);
    net.run_until_quiet();
    assert_eq!(
        net.get(&kiosk2, &orders, "/orders/k-2/total"),
        Some(json!(1))
    );
    net.disconnect(&kiosk, &kiosk2);
    // Then it comes back to the site: it learns the revocation first, and the POS refuses
    // the kiosk's k-2 that it relays.
    net.refusals(&pos);
    net.connect(&kiosk2, &pos);
    net.run_until_quiet();
    assert!(net.engine(&kiosk2).is_revoked(&site(), &kiosk));
    assert_eq!(
        net.get(&pos, &orders, "/orders/k-2"),
        None,
        "the POS took a revoked device's change through a relay; {}",
        replay_hint(seed)
    );
    let refused = net.refusals(&pos);
    assert!(
        refused.iter().any(|r| r.contains("revoked")),
        "{refused:?}; {}",
        replay_hint(seed)
    );
    println!(
        "seed {seed}: relayed change of the revoked kiosk refused: {}",
        refused[0]
    );
    // kiosk-2 writes on: its order builds on k-2, which it took before it knew. The document
    // must not stall between kiosk-2 and the site: the next session takes both.
    net.put(&kiosk2, &orders, "/orders/k2-1", json!({"total": 5}));
    net.disconnect(&kiosk2, &pos);
    net.connect(&kiosk2, &pos);
    net.run_until_quiet();
    for p in [&pos, &kitchen] {
        assert_eq!(
            net.get(p, &orders, "/orders/k2-1/total"),
            Some(json!(5)),
            "{p}: {}",
            replay_hint(seed)
        );
    }
    // The stolen kiosk's copy keeps what nobody took.
    net.exempt(&kiosk, &orders);
    net.assert_converged();

    // A restart forgets nothing: the kiosk is still refused.
    net.restart(&pos);
    net.connect(&kiosk, &pos);
    net.advance(30_000);
    assert_eq!(net.connections_between(&kiosk, &pos), 0);
    assert!(net.engine(&pos).is_revoked(&site(), &kiosk));
}

#[test]
fn a_revocation_spreads_closes_links_and_refuses_relayed_changes() {
    for seed in 0..6 {
        stolen_kiosk(seed);
    }
}

/// Records not signed by the fleet CA, malformed ones and oversized messages are errors;
/// nothing of them is kept or relayed; the good records before them in a message are.
#[test]
fn forged_and_oversized_revocations_keep_nothing() {
    let ca = TestCa::new(1);
    let rogue = TestCa::new(2);
    let dir = tempfile::tempdir().expect("test setup");
    let pos = PeerInfo::parse("s1", "pos-1", "pos").expect("test setup");
    let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").expect("test setup");
    let evil = PeerInfo::parse("s1", "kitchen-9", "kitchen").expect("test setup");
    let mut e = ca.engine(dir.path(), pos, SignatureRule::Transitional);
    let now = Timestamp(1_000);
    e.handle_connect(evil.clone(), now);

    // From the app: a record of another CA.
    match e.learn_revocation(rogue.revoke(&kiosk, "forged"), now) {
        Err(RevocationRefused::Invalid(reason)) => println!("forged record refused: {reason}"),
        other => panic!("a forged revocation was taken: {other:?}"),
    }
    // From a peer: a forged one, a malformed one and a good one in one message.
    let mut bad_body = ca.revoke(&kiosk, "x");
    bad_body.body = vec![0xff; 40];
    let good = ca.revoke(&evil, "caught forging");
    let msg = WireMessage::Revocations {
        records: vec![good.clone(), rogue.revoke(&kiosk, "forged"), bad_body],
    };
    let err = e
        .handle_message(&evil.peer, &msg.encode(), now)
        .expect_err("a forged record is an error");
    assert!(matches!(err, EngineError::BadRevocation { .. }), "{err}");
    println!("bad records from a peer: {err}");
    let kept: Vec<SignedRevocation> = e.store().revocations().expect("test setup");
    assert_eq!(kept, vec![good], "only the CA's record is kept");
    assert!(!e.is_revoked(&kiosk.site, &kiosk.peer));
    assert!(e.is_revoked(&evil.site, &evil.peer));

    // A peer that keeps sending bad records: one verification per message, and after
    // MAX_BAD_REVOCATIONS_PER_SESSION failures its messages are dropped unread.
    let verified_before = e.metrics().sync_errors;
    let mut dropped_unread = 0;
    for _ in 0..20 {
        let msg = WireMessage::Revocations {
            records: vec![rogue.revoke(&kiosk, "forged"); MAX_REVOCATIONS_PER_MESSAGE],
        };
        match e.handle_message(&evil.peer, &msg.encode(), now) {
            Err(EngineError::BadRevocation { reason, .. }) if reason.contains("unread") => {
                dropped_unread += 1
            }
            Err(EngineError::BadRevocation { .. }) => {}
            other => panic!("a bad record was taken: {other:?}"),
        }
    }
    println!(
        "20 messages of {MAX_REVOCATIONS_PER_MESSAGE} forged records: {} verified and failed, {dropped_unread} dropped unread (bound {MAX_BAD_REVOCATIONS_PER_SESSION} per session)",
        20 - dropped_unread
    );
    assert_eq!(
        20 - dropped_unread,
        MAX_BAD_REVOCATIONS_PER_SESSION as usize - 1
    );
    assert_eq!(e.metrics().sync_errors, verified_before + 20);
    // A new session starts afresh.
    e.handle_disconnect(&evil.peer, now);
    e.handle_connect(evil.clone(), now);

    // Over the per-message bound: all dropped unread.
    let many = vec![ca.revoke(&kiosk, "x"); MAX_REVOCATIONS_PER_MESSAGE + 1];
    let msg = WireMessage::Revocations { records: many };
    let bytes = msg.encode();
    let before = e.metrics().sync_errors;
    let err = e
        .handle_message(&evil.peer, &bytes, now)
        .expect_err("an error");
    println!(
        "{} records ({} B) in one message refused (bound {MAX_REVOCATIONS_PER_MESSAGE}): {err}",
        MAX_REVOCATIONS_PER_MESSAGE + 1,
        bytes.len()
    );
    assert_eq!(e.metrics().sync_errors, before + 1);
    assert!(!e.is_revoked(&kiosk.site, &kiosk.peer));
    assert_eq!(e.store().revocations().expect("test setup").len(), 1);

    // An engine without a verifier cannot trust a revocation.
    let dir2 = tempfile::tempdir().expect("test setup");
    let me = PeerInfo::parse("s1", "pos-2", "pos").expect("test setup");
    let store = Store::open(dir2.path()).expect("test setup");
    let mut plain = Engine::new(store, EngineConfig::new(me, Policy::default()));
    assert_eq!(
        plain.learn_revocation(ca.revoke(&kiosk, "x"), now),
        Err(RevocationRefused::NoVerifier)
    );
}

/// A revoked certificate vouches for nothing: changes under an actor that names no device
/// (an import the revoked kiosk signed, as importers sign foreign actors' changes) are
/// refused too, not only those under the kiosk's own actors.
#[test]
fn a_revoked_certificate_vouches_for_no_actor() {
    let ca = TestCa::new(3);
    let pos = PeerInfo::parse("s1", "pos-1", "pos").expect("valid");
    let kiosk = PeerInfo::parse("s1", "kiosk-1", "kiosk").expect("valid");
    let (d1, d2) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let mut p = ca.engine(d1.path(), pos.clone(), SignatureRule::Transitional);
    let mut k = ca.engine(d2.path(), kiosk.clone(), SignatureRule::Transitional);
    let now = Timestamp(1_000);
    // The kiosk imports an order written by a foreign tool (a random actor).
    let mut foreign = automerge::AutoCommit::new();
    automerge::transaction::Transactable::put(&mut foreign, automerge::ROOT, "o-1", 1_i64)
        .expect("write");
    let orders: outpost_core::DocumentId = ORDERS.parse().expect("doc id");
    k.store()
        .import(&orders, &foreign.save())
        .expect("the kiosk imports");
    assert!(p
        .learn_revocation(ca.revoke(&kiosk, "stolen"), now)
        .expect("the CA's record"));
    p.handle_connect(kiosk.clone(), now);
    k.handle_connect(pos.clone(), now);
    for _ in 0..50 {
        let mut moved = false;
        while let Some(t) = k.poll_transmit() {
            let _ = p.handle_message(&kiosk.peer, &t.bytes, now);
            moved = true;
        }
        while let Some(t) = p.poll_transmit() {
            let _ = k.handle_message(&pos.peer, &t.bytes, now);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert_eq!(
        p.store().get(&orders, "/o-1").ok().flatten(),
        None,
        "the POS took a change vouched for by a revoked certificate"
    );
    let refused: Vec<String> = std::iter::from_fn(|| p.poll_event())
        .filter_map(|e| match e {
            Event::ChangeRefused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    println!("{refused:?}");
    assert!(refused.iter().any(|r| r.contains("revoked")), "{refused:?}");
}
