//! Whole-store backup and restore (`Store::backup`, `outpost_core::restore`) and fleet-wide
//! erasure (`Engine::erase`), in the simulation over real stores.
#![allow(clippy::unwrap_used)]

use outpost_core::signing::SignatureRule;
use outpost_core::{BackupError, DocumentId, Event, Policy};
use outpost_testkit::Net;
use serde_json::json;

fn doc(s: &str) -> DocumentId {
    s.parse().unwrap()
}

fn refusals(net: &mut Net, peers: &[&outpost_core::PeerId]) -> Vec<String> {
    let mut out = Vec::new();
    for p in peers {
        for e in net.events(p) {
            if let Event::ChangeRefused { doc, reason, .. }
            | Event::RefusedByPeer { doc, reason, .. } = e
            {
                out.push(format!("{p}: {doc}: {reason}"));
            }
        }
    }
    out
}

/// A POS is backed up while it runs, writes on, its writes reach the cloud, its disk is
/// wiped and the old backup restored: everything written after the backup comes back from
/// the cloud, nothing is refused or stuck, and the restored POS's new writes reach the cloud.
#[test]
fn a_restored_backup_catches_up_from_peers() {
    let mut net = Net::seeded(151);
    net.policy(Policy::default());
    net.signing(SignatureRule::Required);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let cloud = net.add_peer("fleet", "cloud-1", "cloud");
    let orders = doc("orders/2026-12-01");
    net.connect(&pos, &cloud);
    for i in 0..40 {
        net.put(&pos, &orders, &format!("/A-{i:03}"), json!({"qty": 1}));
    }
    net.put(&pos, &doc("menu"), "/burger", json!(950));
    net.run_until_quiet();
    let actor_before = net.store(&pos).actor().clone();
    let (backup, taken) = net.backup_store(&pos);
    println!(
        "backup: {} documents, {} B of documents, {} signatures, {} certificates, {} meta; {} B in all",
        taken.documents,
        taken.document_bytes,
        taken.signatures,
        taken.certificates,
        taken.meta,
        backup.len()
    );
    assert_eq!(taken.documents, 2);
    assert!(taken.signatures > 0 && taken.certificates > 0);

    // The POS writes on after the backup; the cloud receives it.
    for i in 0..30 {
        net.put(&pos, &orders, &format!("/B-{i:03}"), json!({"qty": 2}));
    }
    net.put(&pos, &doc("orders/2026-12-02"), "/C-000", json!({"qty": 3}));
    net.run_until_quiet();
    assert_eq!(net.store(&cloud).documents().unwrap().len(), 3);

    net.stop(&pos);
    let restored = net.restore_store(&pos, &backup);
    assert_eq!(restored.documents, 2);
    assert_eq!(restored.signatures, taken.signatures);
    net.start(&pos);
    assert_ne!(
        net.store(&pos).actor(),
        &actor_before,
        "a restored store writes under a fresh actor"
    );
    assert!(
        net.get(&pos, &orders, "/B-000").is_none(),
        "the backup is older"
    );
    net.run_until_quiet();
    for i in 0..30 {
        assert_eq!(
            net.get(&pos, &orders, &format!("/B-{i:03}")),
            Some(json!({"qty": 2})),
            "order B-{i:03}, written after the backup, came back from the cloud"
        );
    }
    assert!(net
        .store(&pos)
        .has_document(&doc("orders/2026-12-02"))
        .unwrap());
    for i in 0..10 {
        net.put(&pos, &orders, &format!("/D-{i:03}"), json!({"qty": 4}));
    }
    net.run_until_quiet();
    assert_eq!(net.get(&cloud, &orders, "/D-009"), Some(json!({"qty": 4})));
    net.assert_converged();
    let refused = refusals(&mut net, &[&pos, &cloud]);
    assert!(refused.is_empty(), "nothing is refused: {refused:?}");
    assert!(net.errors().is_empty(), "{:?}", net.errors());
    println!(
        "restore: {} orders on the POS after catching up, {} on the cloud",
        net.store(&pos)
            .get_all(&orders)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        net.store(&cloud)
            .get_all(&orders)
            .unwrap()
            .as_object()
            .unwrap()
            .len()
    );
}

#[test]
fn damaged_backups_and_full_directories_are_refused() {
    let mut net = Net::seeded(152);
    let pos = net.add_peer("s1", "pos-1", "pos");
    net.put(&pos, &doc("menu"), "/burger", json!(950));
    let (backup, _) = net.backup_store(&pos);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("something"), b"x").unwrap();
    let e = outpost_core::restore(dir.path(), &backup[..]).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");
    println!("restore into a full directory: {e}");

    for cut in [10, backup.len() / 2, backup.len() - 1] {
        let target = tempfile::tempdir().unwrap();
        let into = target.path().join("data");
        let e = outpost_core::restore(&into, &backup[..cut]).unwrap_err();
        assert!(
            matches!(e, BackupError::Damaged(_) | BackupError::NotABackup),
            "{e}"
        );
        assert!(!into.exists(), "a failed restore leaves nothing behind");
    }
    let mut altered = backup.clone();
    let i = backup.len() / 2;
    altered[i] ^= 0x20;
    let target = tempfile::tempdir().unwrap();
    let e = outpost_core::restore(&target.path().join("data"), &altered[..]).unwrap_err();
    println!("restore of an altered backup: {e}");
    assert!(matches!(e, BackupError::Damaged(_)), "{e}");
    let e = outpost_core::restore(&target.path().join("x"), &b"hello"[..]).unwrap_err();
    assert!(matches!(e, BackupError::NotABackup), "{e}");
}

/// The cloud erases a partition fleet-wide: it deletes it and keeps a tombstone; devices
/// that hear of it delete it and keep one too; a device that was away and wrote to it has
/// its copy refused by the cloud, then deletes it once it hears the erasure list.
#[test]
fn an_erased_partition_leaves_the_fleet_and_stays_gone() {
    let mut net = Net::seeded(153);
    net.policy(Policy::default());
    net.signing(SignatureRule::Required);
    let cloud = net.add_peer("fleet", "cloud-1", "cloud");
    let pos1 = net.add_peer("s1", "pos-1", "pos");
    let pos2 = net.add_peer("s1", "pos-2", "pos");
    let board = net.add_peer("s1", "board-1", "menu-board");
    let day = doc("orders/2026-11-03");
    let keep = doc("orders/2026-11-04");
    net.connect(&pos1, &cloud);
    net.connect(&pos2, &cloud);
    net.connect(&board, &cloud);
    for i in 0..20 {
        net.put(
            &pos1,
            &day,
            &format!("/K-{i:02}"),
            json!({"customer": "Ada"}),
        );
        net.put(
            &pos1,
            &keep,
            &format!("/K-{i:02}"),
            json!({"customer": "Bob"}),
        );
    }
    net.run_until_quiet();
    assert!(net.store(&pos2).has_document(&day).unwrap());

    // pos-2 is away when the cloud erases the day, and writes to it meanwhile.
    net.disconnect(&pos2, &cloud);
    net.run_until_quiet();
    assert!(net.erase(&cloud, &day));
    net.run_until_quiet();
    for p in [&cloud, &pos1] {
        assert!(!net.store(p).has_document(&day).unwrap(), "{p} deleted it");
        assert!(net.store(p).is_erased(&day), "{p} keeps a tombstone");
        assert!(
            net.store(p).has_document(&keep).unwrap(),
            "{p} keeps the rest"
        );
    }
    assert!(
        net.store(&board).is_erased(&day),
        "a menu board hears of the erasure too (and never held the orders)"
    );
    let e = net
        .store(&pos1)
        .put(&day, "/K-99", json!({}), outpost_core::Durability::Fast)
        .unwrap_err();
    assert!(matches!(e, outpost_core::Error::Erased { .. }), "{e}");
    println!("a write to an erased document: {e}");

    net.put(&pos2, &day, "/K-50", json!({"customer": "Ada again"}));
    net.connect(&pos2, &cloud);
    net.run_until_quiet();
    let refused = refusals(&mut net, &[&cloud, &pos2]);
    println!("refusals of the erased day: {refused:?}");
    assert!(
        !net.store(&cloud).has_document(&day).unwrap(),
        "the cloud never takes it back"
    );
    assert!(
        !net.store(&pos2).has_document(&day).unwrap(),
        "pos-2 deleted it"
    );
    assert!(net.store(&pos2).is_erased(&day));
    assert_eq!(
        net.get(&pos2, &keep, "/K-00"),
        Some(json!({"customer": "Bob"}))
    );

    // Tombstones survive restarts, and a restart does not bring the day back.
    net.restart(&pos1);
    net.restart(&cloud);
    net.run_until_quiet();
    for p in [&cloud, &pos1, &pos2] {
        assert!(net.store(p).is_erased(&day));
        assert!(!net.store(p).has_document(&day).unwrap());
    }
    net.assert_converged();
}

/// A restored store opened with default options (`actor_tail: None`) writes under an actor
/// that neither the original store nor an earlier opening of the restored one used.
#[test]
fn a_restored_store_takes_a_fresh_actor_every_time_it_opens() {
    let original = tempfile::tempdir().unwrap();
    let store = outpost_core::Store::open(original.path()).unwrap();
    store
        .put(
            &doc("menu"),
            "/burger",
            json!(950),
            outpost_core::Durability::Durable,
        )
        .unwrap();
    let mut backup = Vec::new();
    store.backup(&mut backup).unwrap();
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("restored");
    outpost_core::restore(&into, &backup[..]).unwrap();
    let first = outpost_core::Store::open(&into).unwrap();
    let a1 = first.actor().clone();
    assert_eq!(
        first.get(&doc("menu"), "/burger").unwrap(),
        Some(json!(950))
    );
    drop(first);
    let second = outpost_core::Store::open(&into).unwrap();
    assert_ne!(&a1, store.actor());
    assert_ne!(&a1, second.actor());
    println!(
        "actors: original {}, restored {}, reopened {}",
        store.actor(),
        a1,
        second.actor()
    );
}

/// Every byte of a backup garbled in turn: each restore is an error or a complete restore,
/// never a panic, and a failed one leaves nothing behind. Printed: how many were refused.
#[test]
fn garbled_backups_are_errors_never_panics() {
    let mut net = Net::seeded(154);
    net.signing(SignatureRule::Required);
    let pos = net.add_peer("s1", "pos-1", "pos");
    net.put(&pos, &doc("menu"), "/burger", json!(950));
    let target = tempfile::tempdir().unwrap();
    let (mut refused, mut restored) = (0, 0);
    // Every record type: a document, its signature, the certificate, a feed position.
    let mut feed = outpost_core::Feed::open(
        net.store(&pos),
        "kitchen-1/printer",
        outpost_core::FeedFilter::default(),
    )
    .unwrap();
    let batch = feed.poll().unwrap().expect("the menu is a batch");
    feed.ack(&batch).unwrap();
    drop(feed);
    let (backup, summary) = net.backup_store(&pos);
    assert!(summary.signatures > 0 && summary.certificates > 0 && summary.meta > 0);
    for i in (0..backup.len()).step_by(3) {
        let mut garbled = backup.clone();
        garbled[i] ^= 0xa5;
        let into = target.path().join(format!("r{i}"));
        match outpost_core::restore(&into, &garbled[..]) {
            Ok(_) => restored += 1,
            Err(_) => {
                refused += 1;
                assert!(
                    !into.exists(),
                    "byte {i}: a failed restore leaves nothing behind"
                );
            }
        }
    }
    println!(
        "garbled backups: {refused} refused, {restored} restored, of {} bytes garbled one at a time",
        backup.len().div_ceil(3)
    );
    assert_eq!(restored, 0, "the checksum catches every altered byte");
}

/// Issue 27, hole 9 (failed before: a receiver refused the `erasures` document's changes
/// from any relay whose role may not write it, so a kitchen linked only through the POS kept
/// the erased day forever): the cloud's erasure list reaches a kitchen behind the POS, taken
/// because the cloud signed it, and the kitchen deletes the day.
#[test]
fn an_erasure_reaches_a_kitchen_linked_only_through_the_pos() {
    let mut net = Net::seeded(271);
    net.policy(Policy::default());
    net.signing(SignatureRule::Required);
    let cloud = net.add_peer("fleet", "cloud-1", "cloud");
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let day = doc("orders/2026-11-03");
    let keep = doc("orders/2026-11-04");
    net.connect(&pos, &cloud);
    net.connect(&kitchen, &pos);
    for i in 0..5 {
        net.put(
            &pos,
            &day,
            &format!("/K-{i:02}"),
            json!({"customer": "Ada"}),
        );
        net.put(
            &pos,
            &keep,
            &format!("/K-{i:02}"),
            json!({"customer": "Bob"}),
        );
    }
    net.run_until_quiet();
    assert!(net.store(&kitchen).has_document(&day).unwrap());

    assert!(net.erase(&cloud, &day));
    net.run_until_quiet();
    let refused = refusals(&mut net, &[&cloud, &pos, &kitchen]);
    println!("refusals: {refused:?}");
    for p in [&cloud, &pos, &kitchen] {
        assert!(net.store(p).is_erased(&day), "{p} keeps a tombstone");
        assert!(
            !net.store(p).has_document(&day).unwrap(),
            "{p} deleted the day"
        );
        assert!(
            net.store(p).has_document(&keep).unwrap(),
            "{p} keeps the rest"
        );
    }
}
