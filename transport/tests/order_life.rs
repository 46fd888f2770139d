//! The life of an order between real nodes over QUIC with mutual TLS on loopback, each step
//! written by the role that owns it and the policy's per-path rules enforcing it: a kiosk
//! places the order under a ticket number issued in the same commit, the kitchen's printer
//! reads it from its durable feed and prints it, the kitchen marks it in progress then
//! ready, the POS named on the order is notified, takes the payment and closes it. Steps by
//! the wrong role are refused: locally by the app's store, and by every peer when a tampered
//! kiosk sends them anyway. Prints the time each step took to reach the next role (a figure,
//! not an assertion).

mod support;

use std::time::Instant;

use outpost_core::{
    Durability, Error as CoreError, Event, Feed, FeedDocs, FeedFilter, Pointer, Policy,
};
use outpost_transport::{FleetCa, Node};
use serde_json::json;
use support::*;

fn orders_feed() -> FeedFilter {
    FeedFilter {
        docs: Some(FeedDocs::Context("orders".parse().expect("valid"))),
        prefix: Some(Pointer::parse("/orders").expect("valid")),
    }
}

async fn node(
    ca: &FleetCa,
    root: &std::path::Path,
    name: &str,
    role: &str,
    dial: Vec<std::net::SocketAddr>,
    tweak: impl FnOnce(&mut outpost_transport::NodeConfig),
) -> Node {
    let cert = issue(ca, "lyon", name, role);
    let mut config = test_config(&root.join(name), &cert, dial);
    tweak(&mut config);
    start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_lives_from_kiosk_to_closed_each_step_by_its_role() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos = node(&ca, tmp.path(), "pos-1", "pos", vec![], |_| {}).await;
    let kitchen = node(
        &ca,
        tmp.path(),
        "kitchen-1",
        "kitchen",
        vec![pos.local_addr()],
        |_| {},
    )
    .await;
    let kiosk = node(
        &ca,
        tmp.path(),
        "kiosk-1",
        "kiosk",
        vec![pos.local_addr(), kitchen.local_addr()],
        |c| c.ticket_prefix = Some("K1".parse().expect("valid")),
    )
    .await;
    wait_connected(&kiosk, "pos-1").await;
    wait_connected(&kiosk, "kitchen-1").await;
    wait_connected(&kitchen, "pos-1").await;
    let day = doc("orders/2026-12-01");
    // The day's map of orders comes from one device (see design.md, "Value API").
    pos.store()
        .put(&day, "/orders", json!({}), Durability::Durable)
        .expect("pos-1 opens the day");
    for n in [&kiosk, &kitchen] {
        wait_value(
            "the day reaches every role",
            n.store(),
            &day,
            "/orders",
            &json!({}),
        )
        .await;
    }
    let mut kitchen_feed =
        Feed::open(kitchen.store(), "kitchen-1/printer", orders_feed()).expect("printer feed");
    let mut pos_feed = Feed::open(pos.store(), "pos-1/pickup", orders_feed()).expect("pos feed");
    let mut pos_events = pos.events();
    let mut kitchen_events = kitchen.events();

    // 1. The kiosk places the order: the ticket and the order in one commit.
    let placed = Instant::now();
    let ticket = kiosk
        .store()
        .transact(&day, Durability::Durable, |tx| {
            let t = tx.next_ticket()?;
            tx.put(
                &format!("/orders/{t}"),
                json!({
                    "ticket": t.to_string(),
                    "items": [{"sku": "burger", "qty": 2, "price": 950}],
                    "total": 1900,
                    "pos": "pos-1",
                    "by": "kiosk-1",
                }),
            )?;
            Ok(t)
        })
        .expect("the kiosk places the order");
    assert_eq!(ticket.to_string(), "K1-001");
    let order = format!("/orders/{ticket}");

    // 2. The kitchen's printer gets it from its durable feed and prints it, once.
    let batch = within("the printer's feed", kitchen_feed.next())
        .await
        .expect("a batch");
    assert_eq!(batch.items, vec![order.clone()]);
    let printed_at = placed.elapsed();
    let items = kitchen
        .store()
        .get(&day, &format!("{order}/items"))
        .expect("read")
        .expect("the order's items");
    println!("kitchen-1 prints {ticket}: {items}");
    kitchen_feed.ack(&batch).expect("ack");

    // 3. The kitchen marks it in progress, then ready.
    kitchen
        .store()
        .put(
            &day,
            &format!("{order}/kitchen"),
            json!({"state": "in_progress", "by": "kitchen-1"}),
            Durability::Durable,
        )
        .expect("in progress");
    let ready = Instant::now();
    kitchen
        .store()
        .put(
            &day,
            &format!("{order}/kitchen/state"),
            json!("ready"),
            Durability::Durable,
        )
        .expect("ready");

    // 4. The POS that took it is notified: its feed brings the order back until it is ready.
    let notified = within("pos-1 hears the order is ready", async {
        loop {
            let b = pos_feed.next().await.expect("pos feed");
            pos_feed.ack(&b).expect("ack");
            for item in &b.items {
                let o = pos
                    .store()
                    .get(&day, item)
                    .expect("read")
                    .unwrap_or_default();
                if o["pos"] == json!("pos-1") && o["kitchen"]["state"] == json!("ready") {
                    return item.clone();
                }
            }
        }
    })
    .await;
    assert_eq!(notified, order);
    let ready_at = ready.elapsed();

    // Steps by the wrong role fail in the app, before anything is written.
    let e = kiosk
        .store()
        .put(
            &day,
            &format!("{order}/payment"),
            json!({"amount": 1900}),
            Durability::Durable,
        )
        .expect_err("a kiosk may not take the payment");
    assert!(matches!(e, CoreError::PathNotPermitted { .. }), "{e}");
    println!("kiosk-1 marking {ticket} paid: {e}");
    let e = kitchen
        .store()
        .put(
            &day,
            &format!("{order}/closed"),
            json!({"by": "kitchen-1"}),
            Durability::Durable,
        )
        .expect_err("the kitchen may not close the order");
    assert!(matches!(e, CoreError::PathNotPermitted { .. }), "{e}");
    let e = pos
        .store()
        .put(
            &day,
            &format!("{order}/kitchen/state"),
            json!("ready"),
            Durability::Durable,
        )
        .expect_err("a POS may not write the kitchen's step");
    assert!(matches!(e, CoreError::PathNotPermitted { .. }), "{e}");

    // 5. The POS takes the payment and closes the order.
    let paid = Instant::now();
    pos.store()
        .transact(&day, Durability::Durable, |tx| {
            tx.put(
                &format!("{order}/payment"),
                json!({"amount": 1900, "by": "pos-1"}),
            )?;
            tx.put(&format!("{order}/closed"), json!({"by": "pos-1"}))
        })
        .expect("pos-1 takes the payment and closes");
    for n in [&kiosk, &kitchen] {
        wait_value(
            "closed everywhere",
            n.store(),
            &day,
            &format!("{order}/closed/by"),
            &json!("pos-1"),
        )
        .await;
    }
    let closed_at = paid.elapsed();

    // A tampered kiosk (its local checks removed) marks the order paid for nothing: every
    // peer refuses the change, and nobody stores it.
    let rogue = node(
        &ca,
        tmp.path(),
        "kiosk-2",
        "kiosk",
        vec![pos.local_addr(), kitchen.local_addr()],
        |c| c.store_policy = Some(Policy::allow_all()),
    )
    .await;
    wait_value(
        "the rogue has the order",
        rogue.store(),
        &day,
        &format!("{order}/closed/by"),
        &json!("pos-1"),
    )
    .await;
    rogue
        .store()
        .put(
            &day,
            &format!("{order}/payment/amount"),
            json!(0),
            Durability::Durable,
        )
        .expect("the tampered kiosk writes what it may not");
    for (who, events) in [
        ("pos-1", &mut pos_events),
        ("kitchen-1", &mut kitchen_events),
    ] {
        let refused = wait_event(
            &format!("{who} refuses the forged payment"),
            events,
            |e| matches!(e, Event::ChangeRefused { peer, .. } if peer.as_str() == "kiosk-2"),
        )
        .await;
        if let Event::ChangeRefused { reason, .. } = &refused {
            println!("{who} refused kiosk-2's change: {reason}");
            assert!(
                reason.contains("/orders/*/payment is written by pos"),
                "{reason}"
            );
        }
    }
    rogue.shutdown().await.expect("rogue stops");
    for n in [&pos, &kitchen, &kiosk] {
        assert_eq!(
            n.store()
                .get(&day, &format!("{order}/payment/amount"))
                .expect("read"),
            Some(json!(1900)),
            "{}: the forged payment is stored nowhere",
            n.info().peer
        );
    }
    wait_converged(
        "the order's life",
        &[pos.store(), kitchen.store(), kiosk.store()],
        &day,
    )
    .await;
    let final_order = pos
        .store()
        .get(&day, &order)
        .expect("read")
        .expect("the order");
    println!(
        "order {ticket}: placed by kiosk-1, printed by kitchen-1 {:.1} ms later; ready -> pos-1 \
         notified in {:.1} ms; paid and closed by pos-1, seen everywhere in {:.1} ms; final: {final_order}",
        printed_at.as_secs_f64() * 1e3,
        ready_at.as_secs_f64() * 1e3,
        closed_at.as_secs_f64() * 1e3
    );
    for n in [kiosk, kitchen, pos] {
        n.shutdown().await.expect("node stops");
    }
}
