//! `Durability::Replicated` over real QUIC: a write acknowledged by the site survives the
//! loss of the device that wrote it, and a write no peer acknowledges in time is "stored on
//! this device only", not an error.

mod support;

use std::time::{Duration, Instant};

use outpost_core::{Acknowledged, Durability, Store};
use outpost_transport::FleetCa;
use serde_json::json;
use support::*;

/// The README's layout: one document per day, one order per key under `/orders`.
const DAY: &str = "orders/2026-12-07";
const ORDERS: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A POS writes Replicated orders with a kiosk and a kitchen linked to it; each is
/// acknowledged by one of them, which holds it at that moment. The POS dies (its links cut
/// at once, then its data directory destroyed); a replacement POS with the same certificate
/// and an empty data directory gets every acknowledged order back from the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_acknowledged_by_the_site_survive_the_loss_of_the_pos() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let kitchen_cert = issue(&ca, "lyon", "kitchen-1", "kitchen");
    let pos_dir = dir.path().join("pos");
    let pos = start(test_config(&pos_dir, &pos_cert, vec![])).await;
    // Kiosk and kitchen are linked only to the POS (README topology).
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![pos.local_addr()],
    ))
    .await;
    let kitchen = start(test_config(
        &dir.path().join("kitchen"),
        &kitchen_cert,
        vec![pos.local_addr()],
    ))
    .await;
    wait_connected(&pos, "kiosk-1").await;
    wait_connected(&pos, "kitchen-1").await;

    let day = doc(DAY);
    let mut acknowledged = Vec::new();
    let mut took = Vec::new();
    for i in 0..ORDERS {
        let key = format!("/orders/o-{i:03}");
        let order = json!({"status": "new", "total": 950 + i, "items": ["burger", "fries"]});
        let started = Instant::now();
        let (_, ack) = within(
            "a replicated write",
            pos.transact(&day, Durability::Replicated, |tx| {
                tx.put(&key, order.clone())
            }),
        )
        .await
        .expect("the write is stored");
        took.push(started.elapsed());
        let Acknowledged::Site { peer } = &ack else {
            panic!("order {i}: both peers are linked, yet the write got {ack:?}");
        };
        // The peer that acknowledged holds the order now, not later.
        let holder: &Store = match peer.as_str() {
            "kiosk-1" => kiosk.store(),
            "kitchen-1" => kitchen.store(),
            other => panic!("acknowledged by {other}, which is not a peer of the POS"),
        };
        assert_eq!(
            holder.get(&day, &key).expect("read the peer's copy"),
            Some(order.clone()),
            "order {i} was acknowledged by {peer}, which must hold it when the write returns"
        );
        acknowledged.push((key, order));
    }
    took.sort();
    println!(
        "{ORDERS} replicated writes over QUIC on loopback: p50 {:?}, max {:?}",
        percentile(&took, 0.5),
        took[took.len() - 1]
    );

    // The tablet dies: nothing more leaves it once the last write returned.
    within("cut the kiosk", pos.cut_link(&peer("kiosk-1")))
        .await
        .expect("cut");
    within("cut the kitchen", pos.cut_link(&peer("kitchen-1")))
        .await
        .expect("cut");
    within("POS stops", pos.shutdown()).await.expect("shutdown");
    std::fs::remove_dir_all(&pos_dir).expect("destroy the POS's data directory");

    // A replacement tablet: the same certificate (reissued to the same device id), an
    // empty data directory; it dials the devices of the site.
    let replacement_dir = dir.path().join("pos-replacement");
    let replacement = start(test_config(
        &replacement_dir,
        &pos_cert,
        vec![kiosk.local_addr(), kitchen.local_addr()],
    ))
    .await;
    let started = Instant::now();
    within("every acknowledged order comes back", async {
        loop {
            let back = acknowledged
                .iter()
                .filter(|(key, order)| {
                    replacement.store().get(&day, key).ok().flatten().as_ref() == Some(order)
                })
                .count();
            if back == acknowledged.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    println!(
        "{} acknowledged orders back on the replacement POS in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
    within("replacement stops", replacement.shutdown())
        .await
        .expect("shutdown");
    within("kiosk stops", kiosk.shutdown())
        .await
        .expect("shutdown");
    within("kitchen stops", kitchen.shutdown())
        .await
        .expect("shutdown");
}

/// With no peer reachable (its address answers nothing), a Replicated write returns "stored
/// on this device only" after the timeout, not an error, and the order is on the device's
/// disk (it is there after a restart). A store alone refuses a Replicated write before
/// writing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_peer_reachable_a_replicated_write_is_stored_on_this_device_only() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    // The kitchen's address: a socket nobody reads (no handshake, no ICMP error).
    let silent = std::net::UdpSocket::bind(localhost()).expect("bind a silent socket");
    let kitchen_addr = silent.local_addr().expect("address");
    let pos_dir = dir.path().join("pos");
    let timeout = Duration::from_millis(400);
    let mut config = test_config(&pos_dir, &pos_cert, vec![kitchen_addr]);
    config.replicated_timeout = timeout;
    let pos = start(config).await;

    let day = doc(DAY);
    let order = json!({"status": "new", "total": 1250});
    let started = Instant::now();
    let ack = within(
        "a replicated write without peers",
        pos.put(&day, "/orders/o-001", order.clone(), Durability::Replicated),
    )
    .await
    .expect("no peer is not an error");
    let waited = started.elapsed();
    println!("no peer: {ack} after {waited:?} (timeout {timeout:?})");
    assert_eq!(ack, Acknowledged::ThisDevice);
    assert!(
        waited >= timeout,
        "returned after {waited:?}, before the {timeout:?} timeout"
    );
    assert!(
        waited < timeout + Duration::from_secs(3),
        "returned {waited:?} after a {timeout:?} timeout"
    );
    assert_eq!(
        pos.store().get(&day, "/orders/o-001").expect("read"),
        Some(order.clone())
    );

    // The store alone has no peers to wait for: refused, nothing written.
    let refused = pos.store().put(
        &day,
        "/orders/o-002",
        json!({"status": "new"}),
        Durability::Replicated,
    );
    assert!(
        matches!(
            refused,
            Err(outpost_core::Error::ReplicatedNeedsNode { .. })
        ),
        "a store cannot wait for peers: {refused:?}"
    );
    assert_eq!(pos.store().get(&day, "/orders/o-002").expect("read"), None);

    within("POS stops", pos.shutdown()).await.expect("shutdown");
    let reopened = Store::open(&pos_dir).expect("reopen the POS's store");
    assert_eq!(
        reopened.get(&day, "/orders/o-001").expect("read"),
        Some(order),
        "the order stored on this device only is on its disk"
    );
    drop(silent);
}
