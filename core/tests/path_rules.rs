//! Per-path write rules on received changes: a step written by the wrong role is refused by
//! every peer, even relayed, and the check costs a catch-up time proportional to the changes
//! (printed: a catch-up of 2,000 orders with and without path rules).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use outpost_core::{ContextRule, Durability, Policy};
use outpost_testkit::{doc, Net, PeerOptions};
use serde_json::json;

#[test]
fn a_tampered_kiosk_cannot_mark_an_order_paid_even_through_a_relay() {
    let day = doc("orders/2026-12-01");
    let mut net = Net::seeded(7);
    net.calm();
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let rogue = net.add_peer_with(
        "s1",
        "kiosk-9",
        "kiosk",
        PeerOptions {
            store_policy: Some(Policy::allow_all()),
            ..PeerOptions::default()
        },
    );
    // The rogue reaches the POS only through the kitchen, a relay.
    net.connect(&kitchen, &pos);
    net.connect(&rogue, &kitchen);
    net.put(&pos, &day, "/orders", json!({}));
    net.run_until_quiet();
    net.put(&rogue, &day, "/orders/K9-001", json!({"total": 950}));
    net.run_until_quiet();
    assert_eq!(
        net.get(&pos, &day, "/orders/K9-001/total"),
        Some(json!(950))
    );
    net.put(&rogue, &day, "/orders/K9-001/payment", json!({"amount": 0}));
    net.put(
        &rogue,
        &day,
        "/orders/K9-001/kitchen",
        json!({"state": "ready"}),
    );
    net.run_until_quiet();
    for p in [&pos, &kitchen] {
        assert_eq!(net.get(p, &day, "/orders/K9-001/payment"), None, "{p}");
        assert_eq!(net.get(p, &day, "/orders/K9-001/kitchen"), None, "{p}");
    }
    let refused: Vec<String> = net
        .events(&kitchen)
        .into_iter()
        .filter_map(|e| match e {
            outpost_core::Event::ChangeRefused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(!refused.is_empty());
    println!("kitchen-1 refused kiosk-9: {}", refused[0]);
    // The kitchen's own step, relayed by nobody but itself, is accepted by the POS.
    net.put(
        &kitchen,
        &day,
        "/orders/K9-001/kitchen",
        json!({"state": "ready"}),
    );
    net.run_until_quiet();
    assert_eq!(
        net.get(&pos, &day, "/orders/K9-001/kitchen/state"),
        Some(json!("ready"))
    );
}

#[test]
fn path_rules_cost_a_catch_up_time_proportional_to_its_changes() {
    const ORDERS: usize = 2_000;
    let day = doc("orders/2026-12-01");
    let mut without = Policy::default();
    without.contexts.insert(
        "orders".parse().unwrap(),
        ContextRule::new(&["pos", "kiosk", "kitchen"], &["pos", "kiosk", "kitchen"]),
    );
    let mut figures = Vec::new();
    for (name, policy) in [("with path rules", Policy::default()), ("without", without)] {
        let mut net = Net::seeded(11);
        net.calm().policy(policy);
        let pos = net.add_peer("s1", "pos-1", "pos");
        let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
        net.write(&pos, &day, |s, d| {
            s.put(d, "/orders", json!({}), Durability::Fast)
        });
        for i in 0..ORDERS {
            net.write(&pos, &day, |s, d| {
                s.put(
                    d,
                    &format!("/orders/P1-{i:04}"),
                    json!({"items": [{"sku": "burger", "qty": 1}], "total": 950}),
                    Durability::Fast,
                )
            });
        }
        let started = Instant::now();
        net.connect(&kitchen, &pos);
        net.run_until_quiet();
        let took = started.elapsed();
        assert_eq!(
            net.get(
                &kitchen,
                &day,
                &format!("/orders/P1-{:04}/total", ORDERS - 1)
            ),
            Some(json!(950))
        );
        figures.push(format!("{name}: {:.0} ms", took.as_secs_f64() * 1e3));
    }
    println!(
        "catch-up of {ORDERS} orders (one change each) by a new kitchen, debug build: {}",
        figures.join(", ")
    );
}
