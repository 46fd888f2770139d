//! A node restarted in the middle of a sync resumes from its data directory and converges.

mod support;

use std::time::Duration;

use outpost_core::Durability;
use outpost_transport::FleetCa;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restarted_mid_sync_converges() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let kiosk_dir = dir.path().join("kiosk");
    let pos = start(test_config(&dir.path().join("pos"), &pos_cert, vec![])).await;
    let kiosk = start(test_config(&kiosk_dir, &kiosk_cert, vec![pos.local_addr()])).await;
    wait_connected(&kiosk, "pos-1").await;

    let menu = doc("menu");
    let orders = doc("orders/2026-11-24");
    // The POS keeps editing the menu while the kiosk restarts.
    let writer = {
        let store = pos.store().clone();
        let menu = menu.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let name = format!("/items/item-{i}");
                store.put(
                    &menu,
                    &name,
                    json!({"price": i, "name": "a fine dish ".repeat(20)}),
                    Durability::Fast,
                )?;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Ok::<_, outpost_core::Error>(())
        })
    };
    kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("order before restart");
    tokio::time::sleep(Duration::from_millis(300)).await;
    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("shutdown");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let kiosk = start(test_config(&kiosk_dir, &kiosk_cert, vec![pos.local_addr()])).await;
    assert_eq!(
        kiosk.store().get(&orders, "/o-1/status").expect("read"),
        Some(json!("new")),
        "durable write survives the restart"
    );
    kiosk
        .store()
        .put(&orders, "/o-2/status", json!("new"), Durability::Durable)
        .expect("order after restart");
    within("writer", writer)
        .await
        .expect("writer task")
        .expect("writes");
    wait_converged("menu after restart", &[pos.store(), kiosk.store()], &menu).await;
    wait_converged(
        "orders after restart",
        &[pos.store(), kiosk.store()],
        &orders,
    )
    .await;
    assert_eq!(
        kiosk
            .store()
            .get(&menu, "/items/item-299/price")
            .expect("read"),
        Some(json!(299))
    );

    // Restart the other side too, with the kiosk dialing it again on the same port.
    let pos_addr = pos.local_addr();
    within("pos shutdown", pos.shutdown())
        .await
        .expect("shutdown");
    let mut config = test_config(&dir.path().join("pos"), &pos_cert, vec![]);
    config.listen = pos_addr;
    let pos = within("pos restart", async {
        loop {
            match outpost_transport::Node::start(config.clone()).await {
                Ok(node) => return node,
                Err(outpost_transport::Error::Bind { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("pos restart failed: {e}"),
            }
        }
    })
    .await;
    kiosk
        .store()
        .put(&orders, "/o-3/status", json!("new"), Durability::Durable)
        .expect("order 3");
    wait_value(
        "order 3 at restarted pos",
        pos.store(),
        &orders,
        "/o-3/status",
        &json!("new"),
    )
    .await;
    wait_converged(
        "orders after pos restart",
        &[pos.store(), kiosk.store()],
        &orders,
    )
    .await;

    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("shutdown");
    within("pos shutdown", pos.shutdown())
        .await
        .expect("shutdown");
}
