//! Signed changes over real QUIC (issue 12): a new kiosk's orders relayed by a kitchen reach
//! a POS that never met the kiosk, with the kiosk's ECDSA signatures checked against the
//! fleet CA; a kitchen that forges a change under a kiosk's actor is refused.

mod support;

use outpost_core::engine::wire::{ChangeSignature, WireMessage};
use outpost_core::signing::{signed_bytes, SignatureRule, Signer};
use outpost_core::{Durability, Event, Store, StoreOptions};
use outpost_transport::{self as tls, DeviceSigner, FleetCa, Session, SessionConfig};
use serde_json::json;
use support::*;

const ORDERS: &str = "orders/2026-12-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kiosks_orders_reach_a_pos_through_a_kitchen() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test").expect("CA");
    let pos_cert = issue(&ca, "s1", "pos-1", "pos");
    let kitchen_cert = issue(&ca, "s1", "kitchen-1", "kitchen");
    let kiosk_cert = issue(&ca, "s1", "kiosk-9", "kiosk");
    let mut config = test_config(&dir.path().join("pos"), &pos_cert, vec![]);
    config.signatures = SignatureRule::Required;
    let pos = start(config).await;
    let kitchen = start(test_config(
        &dir.path().join("kitchen"),
        &kitchen_cert,
        vec![pos.local_addr()],
    ))
    .await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![kitchen.local_addr()],
    ))
    .await;
    let mut pos_events = pos.events();
    let orders = doc(ORDERS);
    // One device creates `/orders` (two creating it concurrently make two maps).
    pos.store()
        .put(
            &orders,
            "/orders/p-1",
            json!({"total": 1}),
            Durability::Durable,
        )
        .expect("write");
    wait_value(
        "pos order at the kiosk",
        kiosk.store(),
        &orders,
        "/orders/p-1/total",
        &json!(1),
    )
    .await;
    for i in 0..50 {
        kiosk
            .store()
            .put(
                &orders,
                &format!("/orders/k-{i}"),
                json!({"total": i}),
                Durability::Fast,
            )
            .expect("write");
    }
    wait_value(
        "kiosk orders at the POS",
        pos.store(),
        &orders,
        "/orders/k-49/total",
        &json!(49),
    )
    .await;
    wait_converged(
        "orders",
        &[pos.store(), kitchen.store(), kiosk.store()],
        &orders,
    )
    .await;
    assert!(
        pos.store()
            .certified_peers()
            .expect("readable")
            .contains(&peer("kiosk-9")),
        "the POS learnt the kiosk's certificate from the kitchen"
    );
    assert!(pos.store().signature_count(&orders).expect("readable") > 0);
    while let Ok(e) = pos_events.try_recv() {
        assert!(!matches!(e, Event::ChangeRefused { .. }), "{e:?}");
    }
    for n in [kiosk, kitchen, pos] {
        within("shutdown", n.shutdown())
            .await
            .expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kitchen_forging_a_kiosks_change_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test").expect("CA");
    let pos_cert = issue(&ca, "s1", "pos-1", "pos");
    let kitchen_cert = issue(&ca, "s1", "kitchen-1", "kitchen");
    let pos = start(test_config(&dir.path().join("pos"), &pos_cert, vec![])).await;
    let orders = doc(ORDERS);

    // The forged change: written under the kiosk's actor, signed with the kitchen's key.
    let forged = Store::open_with(
        dir.path().join("forger"),
        StoreOptions {
            identity: Some(info("s1", "kiosk-1", "kiosk")),
            ..StoreOptions::default()
        },
    )
    .expect("store");
    forged
        .put(
            &orders,
            "/orders/forged",
            json!({"total": 1}),
            Durability::Fast,
        )
        .expect("write");
    let changes = forged.changes_since(&orders, &[]).expect("changes");
    let hash = automerge::Change::try_from(changes[0].as_slice())
        .expect("a change")
        .hash();
    let signer = DeviceSigner::new(&kitchen_cert).expect("signer");
    let signature = signer.sign(&signed_bytes(&orders, &hash)).expect("signs");
    let signatures = WireMessage::Signatures {
        doc: orders.clone(),
        signatures: vec![ChangeSignature {
            change: hash.0,
            key: signer.key_id().0,
            signature,
        }],
        certificates: vec![signer.certificate().to_vec()],
    }
    .encode();
    let sync = automerge::sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: changes.into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    let push = WireMessage::Sync {
        doc: orders.clone(),
        data: sync.encode(),
    }
    .encode();

    let mut events = pos.events();
    let endpoint = endpoint(&kitchen_cert, &filter_for(&kitchen_cert));
    let conn = within(
        "connect",
        endpoint
            .connect(pos.local_addr(), tls::SERVER_NAME)
            .expect("connect"),
    )
    .await
    .expect("handshake");
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let mut session = Session::start(conn, pos.info().clone(), SessionConfig::default(), tx);
    session
        .send(None, WireMessage::Hello { docs: vec![] }.encode())
        .expect("hello");
    session.send(Some(&orders), signatures).expect("signatures");
    session.send(Some(&orders), push).expect("push");
    let event = wait_event("refusal", &mut events, |e| {
        matches!(e, Event::ChangeRefused { .. })
    })
    .await;
    let Event::ChangeRefused { reason, .. } = event else {
        unreachable!()
    };
    assert!(reason.contains("forged authorship"), "{reason}");
    // Nothing was stored: the document the forged change would have created does not exist.
    assert!(!pos.store().has_document(&orders).expect("readable"));
    drop(session);
    within("shutdown", pos.shutdown())
        .await
        .expect("clean shutdown");
}
