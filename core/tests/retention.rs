//! Retention of dated partitions: a device keeps `orders/<day>` partitions its role's
//! `retain_days`, drops older ones only once a cloud peer holds them, and peers never send a
//! dropped or excluded partition back.
#![allow(clippy::unwrap_used)]

use outpost_core::{ContextRule, DocumentId, Policy};
use outpost_testkit::Net;
use serde_json::json;

/// `orders/<the day `back` days before the simulation's now>`.
fn day(net: &Net, back: i64) -> DocumentId {
    let today = (net.now().as_millis() / 86_400_000) as i64;
    let date = time::Date::from_julian_day((today - back + 2_440_588) as i32).unwrap();
    format!(
        "orders/{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
    .parse()
    .unwrap()
}

#[test]
fn old_partitions_leave_devices_once_the_cloud_holds_them() {
    let mut net = Net::seeded(5);
    let mut policy = Policy::default();
    policy.contexts.insert(
        "orders".parse().unwrap(),
        ContextRule::new(&["pos", "kiosk", "kitchen"], &["pos", "kiosk", "kitchen"])
            .retain("pos", 7)
            .retain("kitchen", 1),
    );
    net.policy(policy);
    // Ten days into the simulated calendar.
    net.advance(10 * 86_400_000 + 3_600_000);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let cloud = net.add_peer("fleet", "cloud-1", "cloud");
    for back in 0..10 {
        let d = day(&net, back);
        net.put(&pos, &d, "/o1", json!({"sku": "burger", "day": back}));
    }
    net.put(&pos, &"menu".parse().unwrap(), "/burger", json!(950));

    // Before the cloud has them, nothing is dropped: never the only copy.
    assert!(net.drop_expired(&pos).is_empty());

    net.connect(&pos, &kitchen);
    net.connect(&pos, &cloud);
    net.run_until_quiet();
    let kitchen_docs = net.store(&kitchen).documents().unwrap();
    assert_eq!(
        kitchen_docs,
        vec!["menu".parse().unwrap(), day(&net, 0)],
        "a kitchen keeping 1 day is sent today's orders only"
    );
    assert_eq!(net.store(&cloud).documents().unwrap().len(), 11);

    let mut dropped = net.drop_expired(&pos);
    dropped.sort();
    let mut expected: Vec<DocumentId> = (7..10).map(|b| day(&net, b)).collect();
    expected.sort();
    assert_eq!(dropped, expected, "older than 7 days, held by the cloud");
    assert_eq!(net.store(&pos).documents().unwrap().len(), 8);

    // Reconnecting does not bring them back, from the cloud or anyone.
    net.disconnect(&pos, &cloud);
    net.connect(&pos, &cloud);
    net.run_until_quiet();
    assert_eq!(net.store(&pos).documents().unwrap().len(), 8);
    assert_eq!(net.store(&cloud).documents().unwrap().len(), 11);

    // A day later, one more leaves the POS. The kitchen keeps its now-old day: it has never
    // met a cloud peer, so it cannot know the cloud holds it.
    net.advance(86_400_000);
    net.run_until_quiet();
    assert_eq!(net.drop_expired(&pos), vec![day(&net, 7)]);
    assert!(net.drop_expired(&kitchen).is_empty());
    assert_eq!(net.store(&kitchen).documents().unwrap().len(), 2);
    println!(
        "retention: pos keeps {} documents, kitchen {}, cloud {}",
        net.store(&pos).documents().unwrap().len(),
        net.store(&kitchen).documents().unwrap().len(),
        net.store(&cloud).documents().unwrap().len()
    );
}
