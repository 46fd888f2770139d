//! Retention of dated partitions: a device keeps `orders/<day>` partitions its role's
//! `retain_days`, drops older ones only once a cloud peer holds them, and peers never send a
//! dropped or excluded partition back.
#![allow(clippy::unwrap_used)]

use outpost_core::engine::Retention;
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
    let retention_of = |net: &Net, back: i64| {
        let d = day(net, back);
        let status = net.links(&pos).status_at(net.now());
        let s = status.documents.iter().find(|s| s.doc == d).cloned();
        s.map(|s| (s.retention, s.bytes))
    };
    let (r, bytes) = retention_of(&net, 9).unwrap();
    assert_eq!(r, Retention::WaitingForCloud);
    assert!(bytes > 0, "the status tells the document's size");
    assert_eq!(retention_of(&net, 6).unwrap().0, Retention::Kept);

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

    assert_eq!(retention_of(&net, 9).unwrap().0, Retention::DropDue);
    assert_eq!(retention_of(&net, 0).unwrap().0, Retention::Kept);
    println!(
        "status: {:?}",
        net.links(&pos)
            .status_at(net.now())
            .documents
            .iter()
            .map(|d| format!("{} {} B {:?}", d.doc, d.bytes, d.retention))
            .collect::<Vec<_>>()
    );
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

/// Onboarding by role: a new device pulls only the partitions within its role's window. A
/// site with 90 days of orders in the cloud; a new kitchen display (1 day), a new POS
/// (7 days) and a back-office device that keeps everything join, one after the other.
/// Printed: bytes and simulated time until each is ready, against pulling everything.
#[test]
fn a_new_device_pulls_only_its_window() {
    let mut net = Net::seeded(9);
    let mut policy = Policy::default();
    policy.contexts.insert(
        "orders".parse().unwrap(),
        ContextRule::new(&["pos", "kitchen", "office"], &["pos", "kitchen"])
            .retain("pos", 7)
            .retain("kitchen", 1),
    );
    net.policy(policy);
    // A slow shop uplink, so that the time to be ready follows the bytes.
    net.bandwidth(1_000_000);
    net.advance(90 * 86_400_000 + 3_600_000);
    let cloud = net.add_peer("fleet", "cloud-1", "cloud");
    let orders_per_day = 100;
    for back in 0..90 {
        let d = day(&net, back);
        net.store(&cloud)
            .transact(&d, outpost_core::Durability::Fast, |tx| {
                for i in 0..orders_per_day {
                    tx.put(
                        &format!("/o{i}"),
                        json!({"sku": "burger", "qty": 1 + i % 3, "status": "paid"}),
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
    let mut figures = Vec::new();
    for (name, role, want) in [
        ("kitchen-2", "kitchen", 1),
        ("pos-2", "pos", 7),
        ("office-1", "office", 90),
    ] {
        let device = net.add_peer("s1", name, role);
        net.reset_stats();
        let started = net.now();
        net.connect(&device, &cloud);
        net.run_until_quiet();
        let stats = net.total_stats();
        let held = net.store(&device).documents().unwrap().len();
        assert_eq!(held, want, "{role} holds its window");
        figures.push((
            role,
            stats.bytes,
            net.now().as_millis() - started.as_millis(),
        ));
        net.disconnect(&device, &cloud);
    }
    let all = figures[2].1 as f64;
    for (role, bytes, ms) in &figures {
        println!(
            "onboarding: new {role}: {} KB in {ms} ms simulated ({:.3} of pulling all 90 days)",
            bytes / 1024,
            *bytes as f64 / all
        );
    }
    assert!(
        figures[0].1 * 20 < figures[2].1,
        "a kitchen pulls a small part of 90 days"
    );
}

/// Bytes of every file under `dir` (sled's log, its snapshots and blobs).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        n += if meta.is_dir() {
            dir_bytes(&e.path())
        } else {
            meta.len()
        };
    }
    n
}

/// Disk stays bounded: a POS takes 30 simulated days of orders (one partition a day) with a
/// retention of 7 days and a cloud peer that acknowledges them; its daily housekeeping drops
/// what expired. Printed: per day, the data directory's size, sled's own figure and the bytes
/// of the documents held. Bounded: day 30 is at most 1.5 times day 8.
#[test]
fn disk_stays_flat_under_retention() {
    let mut net = Net::seeded(15);
    let mut policy = Policy::default();
    policy.contexts.insert(
        "orders".parse().unwrap(),
        ContextRule::new(&["pos"], &["pos"]).retain("pos", 7),
    );
    net.policy(policy);
    net.advance(86_400_000 + 8 * 3_600_000);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let cloud = net.add_peer("fleet", "cloud-1", "cloud");
    // The audit trail is on this disk too, bounded by its count: at the default (10,000
    // entries) this soak's one acknowledgement entry a minute of writing fills it by day 50,
    // so the directory would still be growing on day 30. With a bound of 1,000 it is full by
    // day 5, and the directory must stay flat with it.
    net.store(&pos)
        .audit()
        .set_limits(outpost_core::AuditLimits {
            max_entries: 1_000,
            ..outpost_core::AuditLimits::default()
        });
    net.connect(&pos, &cloud);
    net.run_until_quiet();

    let (orders_per_day, per_commit) = (400, 2);
    let mut sizes = Vec::new();
    for day_no in 1..=30 {
        let today = day(&net, 0);
        for batch in 0..orders_per_day / per_commit {
            net.write(&pos, &today, |s, d| {
                s.transact(d, outpost_core::Durability::Fast, |tx| {
                    for i in 0..per_commit {
                        let n = batch * per_commit + i;
                        tx.put(
                            &format!("/K1-{n:04}"),
                            json!({"sku": "burger", "qty": 1 + n % 3, "status": "paid",
                                   "total": 950 * (1 + n % 3), "note": "no onions"}),
                        )?;
                    }
                    Ok(())
                })
            });
            net.advance(60_000);
        }
        net.run_until_quiet();
        let dropped = net.drop_expired(&pos);
        let store = net.store(&pos);
        store.flush().unwrap();
        let on_disk = dir_bytes(net.data_dir(&pos));
        let held = store.documents().unwrap().len();
        println!(
            "soak: day {day_no:2}: {held:2} documents, {:6} KB of documents, {:6} KB sled, {:6} KB directory{}",
            store.documents_bytes().unwrap() / 1024,
            store.size_on_disk().unwrap() / 1024,
            on_disk / 1024,
            if dropped.is_empty() {
                String::new()
            } else {
                format!(", dropped {}", dropped.len())
            }
        );
        assert!(
            held <= 8,
            "day {day_no}: {held} documents held, retention is 7 days"
        );
        sizes.push(on_disk);
        // To the next morning.
        net.advance(86_400_000 - (orders_per_day / per_commit) as u64 * 60_000);
    }
    assert_eq!(
        net.store(&cloud).documents().unwrap().len(),
        30,
        "the cloud keeps every day"
    );
    println!(
        "soak: the audit trail holds {} entries (bound 1,000)",
        net.store(&pos).audit().len()
    );
    assert!(net.store(&pos).audit().len() <= 1_000);
    let (day8, day30) = (sizes[7], sizes[29]);
    println!(
        "soak: day 30 / day 8 = {:.2} ({} KB / {} KB)",
        day30 as f64 / day8 as f64,
        day30 / 1024,
        day8 / 1024
    );
    assert!(
        day30 as f64 <= 1.5 * day8 as f64,
        "the store grew from {day8} B on day 8 to {day30} B on day 30"
    );
}

/// What sled gives back (sled 0.34): deleted data frees space inside its file for reuse, the
/// file does not shrink unless the free space is at its end. Printed: the file's size after
/// writing ~4 MB of documents, after deleting them all, after writing as much again, and
/// after reopening.
#[test]
fn what_sled_gives_back() {
    use outpost_core::{Durability, Store};
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let write = |store: &Store, round: u32, rng: &mut rand::rngs::StdRng| {
        for d in 0..40 {
            let doc: DocumentId = format!("orders/r{round}-{d:02}").parse().unwrap();
            // Random text does not compress: ~100 KB per document.
            let text: String = (0..100_000)
                .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                .collect();
            store
                .put(&doc, "/blob", json!(text), Durability::Fast)
                .unwrap();
        }
        store.flush().unwrap();
    };
    let size = |store: &Store| store.size_on_disk().unwrap() / 1024;
    let store = Store::open(dir.path()).unwrap();
    write(&store, 1, &mut rng);
    let written = size(&store);
    for doc in store.documents().unwrap() {
        store.delete_document(&doc).unwrap();
    }
    store.flush().unwrap();
    let deleted = size(&store);
    write(&store, 2, &mut rng);
    let rewritten = size(&store);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let reopened = size(&store);
    println!(
        "sled: {written} KB after writing 40 documents of 100 KB, {deleted} KB after deleting \
         them all, {rewritten} KB after writing 40 others, {reopened} KB reopened"
    );
    assert!(
        rewritten < written * 3 / 2,
        "space freed by deletions is reused: {rewritten} KB after the second round, {written} KB after the first"
    );
}
