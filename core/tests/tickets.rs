//! Ticket numbers: unique per device across concurrent writers and devices that never meet,
//! issued in the same commit as the order, and never issued twice by a store restored from
//! an old copy of its data directory (at once when the copy is detected, after its first
//! sync with a peer when it is not). Prints the figures it checks.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use outpost_core::{
    Durability, Error, PeerInfo, Policy, Store, StoreOptions, Ticket, TicketPrefix,
};
use outpost_testkit::{doc, Net, PeerOptions};
use serde_json::json;

fn kiosk_options(prefix: &str) -> StoreOptions {
    StoreOptions {
        identity: Some(
            PeerInfo::parse("lyon", &format!("kiosk-{}", prefix.to_lowercase()), "kiosk").unwrap(),
        ),
        policy: Policy::default(),
        ticket_prefix: Some(prefix.parse().unwrap()),
        ..Default::default()
    }
}

/// What a kiosk does: the ticket and the order that uses it, in one commit.
fn place(store: &Store, day: &str) -> outpost_core::Result<Ticket> {
    store.transact(
        &format!("orders/{day}").parse().unwrap(),
        Durability::Durable,
        |tx| {
            let t = tx.next_ticket()?;
            tx.put(
                &format!("/orders/{t}"),
                json!({"ticket": t.to_string(), "items": [{"sku": "burger", "qty": 1}]}),
            )?;
            Ok(t)
        },
    )
}

#[test]
fn concurrent_writers_and_offline_devices_never_share_a_number() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let k1 = Store::open_with(dirs[0].path(), kiosk_options("K1")).unwrap();
    let k2 = Store::open_with(dirs[1].path(), kiosk_options("K2")).unwrap();
    // The days' maps of orders come from one device (two devices creating the same map
    // concurrently make two maps, and one wins: design.md, "Value API").
    for day in ["2026-12-01", "2026-12-02"] {
        let d = format!("orders/{day}").parse().unwrap();
        k1.put(&d, "/orders", json!({}), Durability::Fast).unwrap();
        k2.import(&d, &k1.export(&d).unwrap()).unwrap();
    }
    const THREADS: usize = 6;
    const EACH: usize = 40;
    let mut handles = Vec::new();
    for i in 0..THREADS {
        // Two kiosks that never meet, three writers each, over two days' documents.
        let store = if i % 2 == 0 { k1.clone() } else { k2.clone() };
        handles.push(std::thread::spawn(move || {
            (0..EACH)
                .map(|n| {
                    let day = if (i + n) % 3 == 0 {
                        "2026-12-01"
                    } else {
                        "2026-12-02"
                    };
                    place(&store, day).unwrap()
                })
                .collect::<Vec<_>>()
        }));
    }
    let all: Vec<Ticket> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let distinct: BTreeSet<String> = all.iter().map(Ticket::to_string).collect();
    assert_eq!(distinct.len(), THREADS * EACH, "a number was issued twice");
    for prefix in ["K1", "K2"] {
        let numbers: BTreeSet<u64> = all
            .iter()
            .filter(|t| t.prefix.as_str() == prefix)
            .map(|t| t.number)
            .collect();
        let want: BTreeSet<u64> = (1..=(THREADS * EACH / 2) as u64).collect();
        assert_eq!(
            numbers, want,
            "{prefix}: no gaps when no transaction failed"
        );
    }
    // Both devices' orders merge without one key written twice.
    for day in ["2026-12-01", "2026-12-02"] {
        let d = format!("orders/{day}").parse().unwrap();
        k1.import(&d, &k2.export(&d).unwrap()).unwrap();
    }
    let merged: usize = ["2026-12-01", "2026-12-02"]
        .iter()
        .map(|day| {
            let d = format!("orders/{day}").parse().unwrap();
            match k1.get(&d, "/orders").unwrap() {
                Some(serde_json::Value::Object(m)) => m.len(),
                _ => 0,
            }
        })
        .sum();
    assert_eq!(merged, THREADS * EACH);
    // Each device's record survives the merge, though both created `/_tickets`.
    let d = "orders/2026-12-02".parse().unwrap();
    k2.import(&d, &k1.export(&d).unwrap()).unwrap();
    for s in [&k1, &k2] {
        for prefix in ["K1", "K2"] {
            let all = s.conflicts(&d, "/_tickets").unwrap();
            let found = all.iter().any(|c| c.value.get(prefix).is_some());
            assert!(found, "{prefix}'s record is kept");
        }
    }
    println!(
        "tickets: {THREADS} writers on 2 offline kiosks issued {} tickets, {} distinct, \
         K1-001..K1-{:03} and K2-001..K2-{:03} without gaps; merged: {merged} orders",
        all.len(),
        distinct.len(),
        THREADS * EACH / 2,
        THREADS * EACH / 2
    );
    assert_eq!(
        k1.last_ticket().map(|t| t.to_string()),
        Some(format!("K1-{:03}", THREADS * EACH / 2))
    );
}

#[test]
fn a_failed_transaction_leaves_a_gap_never_a_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), kiosk_options("K1")).unwrap();
    let day = doc("orders/2026-12-01");
    assert_eq!(place(&store, "2026-12-01").unwrap().to_string(), "K1-001");
    let failed = store.transact(&day, Durability::Durable, |tx| {
        let t = tx.next_ticket()?;
        assert_eq!(t.to_string(), "K1-002");
        // The kiosk may not mark it paid: the whole transaction fails.
        tx.put(&format!("/orders/{t}"), json!({"ticket": t.to_string()}))?;
        tx.put(&format!("/orders/{t}/payment"), json!({"amount": 950}))
    });
    assert!(
        matches!(failed, Err(Error::PathNotPermitted { .. })),
        "{failed:?}"
    );
    assert_eq!(store.get(&day, "/orders/K1-002").unwrap(), None);
    drop(store);
    let store = Store::open_with(dir.path(), kiosk_options("K1")).unwrap();
    assert_eq!(place(&store, "2026-12-01").unwrap().to_string(), "K1-003");
    // Without a prefix there are no tickets, and the error says what to set.
    let plain = Store::open(tempfile::tempdir().unwrap().path()).unwrap();
    let e = plain
        .transact(&day, Durability::Fast, |tx| tx.next_ticket())
        .unwrap_err();
    assert!(e.to_string().contains("ticket prefix"), "{e}");
    assert!("k1".parse::<TicketPrefix>().is_err());
}

/// A kiosk issues 30 tickets, its directory is copied while it is stopped, it issues 12 more
/// that reach the POS, then the old copy is put back and the kiosk restarts from it.
fn restored_kiosk(
    seed: u64,
    undetected: bool,
) -> (Net, outpost_core::PeerId, outpost_core::PeerId) {
    let mut net = Net::seeded(seed);
    net.calm();
    let kiosk = net.add_peer_with(
        "lyon",
        "kiosk-1",
        "kiosk",
        PeerOptions {
            ticket_prefix: Some("K1".into()),
            undetected_restore: undetected,
            ..PeerOptions::default()
        },
    );
    let pos = net.add_peer("lyon", "pos-1", "pos");
    net.connect(&kiosk, &pos);
    net.run_until_quiet();
    let day = doc("orders/2026-12-01");
    let take = |net: &mut Net, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                net.write(&kiosk, &day, |s, _| place(s, "2026-12-01"))
                    .to_string()
            })
            .collect()
    };
    take(&mut net, 30);
    net.run_until_quiet();
    net.stop(&kiosk);
    let backup = net.backup(&kiosk);
    net.start(&kiosk);
    let later = take(&mut net, 12);
    assert_eq!(later.last().map(String::as_str), Some("K1-042"));
    net.run_until_quiet();
    assert!(net.get(&pos, &day, "/orders/K1-042").is_some());
    net.stop(&kiosk);
    net.restore_backup(&kiosk, &backup);
    (net, kiosk, pos)
}

#[test]
fn a_restored_copy_never_reissues_a_number() {
    let day = doc("orders/2026-12-01");
    for seed in 1..=4u64 {
        // Detected copy (the directory was copied back): a new generation at once, even
        // before any sync.
        let (mut net, kiosk, pos) = restored_kiosk(seed, false);
        net.cut(&pos, &kiosk);
        net.start(&kiosk);
        let offline = net.write(&kiosk, &day, |s, _| place(s, "2026-12-01"));
        assert_eq!(offline.to_string(), "K1b-001", "seed {seed}");
        net.restore(&pos, &kiosk);
        net.run_until_quiet();
        let synced = net.write(&kiosk, &day, |s, _| place(s, "2026-12-01"));
        net.run_until_quiet();
        net.assert_converged();
        let orders = match net.get(&pos, &day, "/orders") {
            Some(serde_json::Value::Object(m)) => m,
            other => panic!("seed {seed}: {other:?}"),
        };
        assert_eq!(
            orders.len(),
            44,
            "seed {seed}: 42 + 2 orders, none overwritten"
        );
        if seed == 1 {
            println!(
                "restore detected: the copy issued {offline} before any sync and {synced} after; \
                 the POS holds {} orders, every key written once",
                orders.len()
            );
        }

        // Undetected restore (a disk image keeps file identities): once it has synced with a
        // peer, it continues after the highest number the peer holds.
        let (mut net, kiosk, _pos) = restored_kiosk(seed, true);
        net.start(&kiosk);
        net.run_until_quiet();
        let after_sync = net.write(&kiosk, &day, |s, _| place(s, "2026-12-01"));
        assert_eq!(after_sync.to_string(), "K1-043", "seed {seed}");
        net.run_until_quiet();
        net.assert_converged();

        // The limit, stated in design.md: undetected and not yet synced, the copy only
        // knows what it held, and repeats the first number its earlier self issued after
        // the copy was taken. A put at a key the receiver holds is a replacement (issue 27),
        // which a kiosk may not make below `/orders/*`: the POS keeps the original order and
        // refuses the copy's, and the copy refuses the original's; nothing is overwritten
        // and the link goes quiet (it used to answer resets forever).
        let (mut net, kiosk, pos) = restored_kiosk(seed, true);
        net.cut(&pos, &kiosk);
        net.start(&kiosk);
        let repeated = net.write(&kiosk, &day, |s, _| place(s, "2026-12-01"));
        assert_eq!(repeated.to_string(), "K1-031", "seed {seed}");
        let original = net.get(&pos, &day, "/orders/K1-031");
        net.restore(&pos, &kiosk);
        net.run_until_quiet();
        let values = net.store(&pos).conflicts(&day, "/orders/K1-031").unwrap();
        assert_eq!(values.len(), 1, "seed {seed}: the copy's order is refused");
        assert_eq!(
            net.get(&pos, &day, "/orders/K1-031"),
            original,
            "seed {seed}"
        );
        let refused = net
            .events(&pos)
            .into_iter()
            .filter(|e| matches!(e, outpost_core::Event::ChangeRefused { .. }))
            .count();
        assert!(refused > 0, "seed {seed}");
        if seed == 1 {
            println!(
                "restore undetected: after its first sync the copy issued {after_sync}; \
                 before it, it repeated {repeated}, which the POS refused ({} value at \
                 /orders/K1-031 on the POS)",
                values.len()
            );
        }
    }
}

#[test]
fn the_counter_lives_in_the_store_and_in_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), kiosk_options("K7")).unwrap());
    let t = place(&store, "2026-12-01").unwrap();
    let day = doc("orders/2026-12-01");
    assert_eq!(
        store.get(&day, "/_tickets/K7").unwrap(),
        Some(json!(t.to_string())),
        "the record travels with the order"
    );
    assert_eq!(
        store.get(&day, &format!("/orders/{t}/ticket")).unwrap(),
        Some(json!("K7-001"))
    );
}

#[test]
fn a_restore_is_not_forgotten_by_a_tool_that_opens_the_store_without_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), kiosk_options("K1")).unwrap();
    place(&store, "2026-12-01").unwrap();
    drop(store);
    copy(dir.path(), backup.path());
    let store = Store::open_with(dir.path(), kiosk_options("K1")).unwrap();
    assert_eq!(place(&store, "2026-12-01").unwrap().to_string(), "K1-002");
    drop(store);
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    copy(backup.path(), dir.path());
    // A tool (no prefix) opens the restored directory first.
    drop(Store::open(dir.path()).unwrap());
    let store = Store::open_with(dir.path(), kiosk_options("K1")).unwrap();
    let t = place(&store, "2026-12-01").unwrap();
    assert_eq!(t.to_string(), "K1b-001");
    drop(store);
    // The new generation sticks; reopening the same files is no restore.
    let store = Store::open_with(dir.path(), kiosk_options("K1")).unwrap();
    assert_eq!(place(&store, "2026-12-01").unwrap().to_string(), "K1b-002");
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
