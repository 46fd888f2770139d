//! Revocation that spreads, over real QUIC and mutual TLS (issue 12): a record signed by the
//! fleet CA, handed to the POS at runtime, reaches a kitchen that only talks to the POS,
//! closes the stolen kiosk's links on both, refuses its handshakes (also after a restart) and
//! its orders; a record signed by another CA is refused and changes nothing.

mod support;

use std::time::Duration;

use outpost_core::{Durability, Event};
use outpost_transport::{Error, FleetCa};
use serde_json::json;
use support::*;

const ORDERS: &str = "orders/2026-12-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_kiosk_is_cut_off_by_every_device_of_its_site() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test").expect("CA");
    let pos_cert = issue(&ca, "s1", "pos-1", "pos");
    let kitchen_cert = issue(&ca, "s1", "kitchen-1", "kitchen");
    let kiosk_cert = issue(&ca, "s1", "kiosk-1", "kiosk");
    let pos = start(test_config(&dir.path().join("pos"), &pos_cert, vec![])).await;
    let kitchen = start(test_config(
        &dir.path().join("kitchen"),
        &kitchen_cert,
        vec![pos.local_addr()],
    ))
    .await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![pos.local_addr(), kitchen.local_addr()],
    ))
    .await;
    let orders = doc(ORDERS);
    pos.store()
        .put(
            &orders,
            "/orders/p-1",
            json!({"total": 1}),
            Durability::Durable,
        )
        .expect("write");
    wait_value(
        "POS order at the kiosk",
        kiosk.store(),
        &orders,
        "/orders/p-1/total",
        &json!(1),
    )
    .await;
    kiosk
        .store()
        .put(
            &orders,
            "/orders/k-1",
            json!({"total": 950}),
            Durability::Durable,
        )
        .expect("write");
    wait_value(
        "kiosk order in the kitchen",
        kitchen.store(),
        &orders,
        "/orders/k-1/total",
        &json!(950),
    )
    .await;
    wait_connected(&kitchen, "kiosk-1").await;

    // A record of another fleet's CA: refused, nothing changes.
    let rogue = FleetCa::generate("rogue").expect("CA");
    let forged = rogue
        .revoke(
            &"s1".parse().expect("site id"),
            &peer("pos-1"),
            None,
            "forged",
        )
        .expect("record");
    match kitchen.learn_revocation(forged).await {
        Err(Error::Revocation(e)) => println!("a revocation of another CA is refused: {e}"),
        other => panic!("a forged revocation was taken: {other:?}"),
    }
    assert!(kitchen.revocations().expect("revocations").is_empty());

    // The operator revokes the kiosk at the POS, at runtime.
    let mut kitchen_events = kitchen.events();
    let record = ca
        .revoke(
            &"s1".parse().expect("site id"),
            &peer("kiosk-1"),
            None,
            "stolen",
        )
        .expect("record");
    assert!(pos.learn_revocation(record.clone()).await.expect("taken"));
    assert!(
        !pos.learn_revocation(record).await.expect("taken"),
        "a second time is not new"
    );
    let started = std::time::Instant::now();
    wait_event(
        "the kitchen learns the revocation",
        &mut kitchen_events,
        |e| matches!(e, Event::Revoked { revocation, .. } if revocation.peer.as_str() == "kiosk-1"),
    )
    .await;
    println!(
        "revocation reached the kitchen through the POS in {} ms",
        started.elapsed().as_millis()
    );
    // Neither keeps a link with the kiosk, and the kiosk's redials are refused.
    within("the kiosk's links close", async {
        loop {
            let up = |n: &outpost_transport::Node| {
                n.connected_peers()
                    .iter()
                    .any(|p| p.peer.as_str() == "kiosk-1")
            };
            if !up(&pos) && !up(&kitchen) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    kiosk
        .store()
        .put(
            &orders,
            "/orders/k-2",
            json!({"total": 1}),
            Durability::Durable,
        )
        .expect("write");
    // The kiosk redials every 50..500 ms: give it a dozen tries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, node) in [("POS", &pos), ("kitchen", &kitchen)] {
        assert!(!kiosk_connected(node), "{name} let the revoked kiosk in");
        assert_eq!(
            node.store().get(&orders, "/orders/k-2").expect("read"),
            None,
            "{name} took an order the kiosk wrote after its revocation"
        );
        assert_eq!(node.revocations().expect("revocations").len(), 1);
    }
    let refused = kitchen
        .status()
        .await
        .expect("status")
        .peer(&peer("kiosk-1"))
        .map(|p| format!("{p:?}"))
        .unwrap_or_default();
    println!("kitchen's status of the kiosk: {refused}");

    // A restart of the POS forgets nothing.
    let pos_addr = pos.local_addr();
    pos.shutdown().await.expect("shutdown");
    let mut config = test_config(&dir.path().join("pos"), &pos_cert, vec![]);
    config.listen = pos_addr;
    let pos = start(config).await;
    assert_eq!(pos.revocations().expect("revocations").len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!kiosk_connected(&pos));
    assert_eq!(pos.store().get(&orders, "/orders/k-2").expect("read"), None);
    wait_connected(&kitchen, "pos-1").await;
    for n in [kiosk, kitchen, pos] {
        n.shutdown().await.expect("shutdown");
    }
}

fn kiosk_connected(node: &outpost_transport::Node) -> bool {
    node.connected_peers()
        .iter()
        .any(|p| p.peer.as_str() == "kiosk-1")
}
