//! The life of links, simulated over many seeds without wall-clock time: crossing dials
//! (duplicate connections), breaks and redials with backoff, cut and restored links,
//! partitions, restarts, and the grace period of a replaced connection. Every seed ends with
//! exactly one connection per wanted link that both ends agree on, and converged documents.
//!
//! `OUTPOST_SIM_SEEDS` sets the number of seeds (default 200); a failure prints its seed and
//! `OUTPOST_SIM_SEED=<seed>` replays it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Instant;

use outpost_core::{Event, PeerId};
use outpost_testkit::{doc, pid, replay_hint, Net, SEEDS_ENV, SEED_ENV};
use rand::Rng;
use serde_json::json;

fn seeds(base: u64) -> Vec<u64> {
    if let Some(s) = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n = std::env::var(SEEDS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    (base..base + n).collect()
}

/// Every peer's view of who is connected matches the connections in the network, and every
/// wanted link is up with exactly one connection.
fn assert_links_settled(net: &Net, wanted: &BTreeSet<(PeerId, PeerId)>, seed: u64) {
    for (a, b) in wanted {
        assert!(
            net.is_up(a, b),
            "{a} <-> {b} is wanted but not up; {}",
            replay_hint(seed)
        );
        assert_eq!(
            net.connections_between(a, b),
            1,
            "{a} <-> {b}: one connection per pair; {}",
            replay_hint(seed)
        );
    }
    for p in net.peer_ids() {
        for q in net.links(&p).connected() {
            assert_ne!(q.peer, p, "connected to itself; {}", replay_hint(seed));
            assert!(
                net.connections_between(&p, &q.peer) == 1,
                "{p} counts {} as connected without a connection; {}",
                q.peer,
                replay_hint(seed)
            );
        }
    }
}

#[test]
fn crossing_dials_breaks_cuts_and_restarts_settle_on_one_connection() {
    let started = Instant::now();
    let mut total_dials = 0;
    let mut total_breaks = 0;
    let all = seeds(7_000);
    for &seed in &all {
        let mut net = Net::seeded(seed);
        net.delay(1, 30).reorder(true).reconnect_delay(20, 2_000);
        let n = net.rng().random_range(2..=5);
        let peers: Vec<PeerId> = (0..n)
            .map(|i| net.add_peer("s1", &format!("pos-{i}"), "pos"))
            .collect();
        // A connected graph of links, each dialed from both ends (crossing dials).
        let mut wanted = BTreeSet::new();
        for i in 1..n {
            let j = net.rng().random_range(0..i);
            wanted.insert((peers[j].clone(), peers[i].clone()));
        }
        for _ in 0..net.rng().random_range(0..3) {
            let (i, j) = (net.rng().random_range(0..n), net.rng().random_range(0..n));
            if i < j {
                wanted.insert((peers[i].clone(), peers[j].clone()));
            }
        }
        for (a, b) in &wanted {
            if net.rng().random_bool(0.7) {
                net.connect_both(a, b);
            } else {
                net.connect(b, a);
            }
        }
        let d = doc("orders/2026-11-24");
        net.drop_rate(0.02);
        for round in 0..6 {
            let w = peers[net.rng().random_range(0..n)].clone();
            net.put(&w, &d, &format!("/o-{round}"), json!({"by": w.as_str()}));
            match net.rng().random_range(0..6) {
                0 => {
                    let (a, b) = wanted.iter().next().cloned().unwrap();
                    net.cut(&a, &b);
                    let ms = net.rng().random_range(10..3_000);
                    net.advance(ms);
                    assert!(
                        !net.is_up(&a, &b),
                        "a cut link stays down; {}",
                        replay_hint(seed)
                    );
                    net.restore(&a, &b);
                }
                1 => {
                    let p = peers[net.rng().random_range(0..n)].clone();
                    net.restart(&p);
                }
                2 => {
                    let k = net.rng().random_range(1..n);
                    net.partition(&[&peers[..k]]);
                    let ms = net.rng().random_range(10..3_000);
                    net.advance(ms);
                    net.heal();
                }
                3 => net.reconnect_all(),
                _ => {}
            }
            let ms = net.rng().random_range(0..500);
            net.advance(ms);
        }
        net.calm();
        net.run_until_quiet();
        assert_links_settled(&net, &wanted, seed);
        net.assert_converged();
        total_dials += net.dials;
        total_breaks += net.breaks;
    }
    eprintln!(
        "link lifecycle: {} seeds in {:.1?}, {total_dials} dials, {total_breaks} breaks",
        all.len(),
        started.elapsed()
    );
}

/// When the peer closes our connection as a duplicate, the peer stays connected for the
/// grace period while its own connection arrives: apps see no disconnect.
#[test]
fn crossing_dials_cause_no_disconnect_events() {
    for seed in seeds(9_000).into_iter().take(50) {
        let mut net = Net::seeded(seed);
        net.delay(1, 50);
        let (a, b) = (
            net.add_peer("s1", "pos-1", "pos"),
            net.add_peer("s1", "pos-2", "pos"),
        );
        net.connect_both(&a, &b);
        net.run_until_quiet();
        assert!(net.is_up(&a, &b), "{}", replay_hint(seed));
        for p in [&a, &b] {
            let events = net.events(p);
            let connected = events
                .iter()
                .filter(|e| matches!(e, Event::PeerConnected(_)))
                .count();
            let disconnected = events
                .iter()
                .filter(|e| matches!(e, Event::PeerDisconnected(_)))
                .count();
            assert_eq!(
                (connected, disconnected),
                (1, 0),
                "{p}: one connect, no flap: {events:?}; {}",
                replay_hint(seed)
            );
        }
    }
}

/// A dial to a peer that is down is retried with backoff, not in a busy loop: a peer alone
/// for ten virtual minutes dials a bounded number of times, and connects as soon as the peer
/// is back.
#[test]
fn redials_back_off_while_the_peer_is_down() {
    let mut net = Net::seeded(1);
    net.reconnect_delay(100, 10_000);
    let (a, b) = (
        net.add_peer("s1", "pos-1", "pos"),
        net.add_peer("s1", "pos-2", "pos"),
    );
    net.connect(&a, &b);
    net.run_until_quiet();
    assert!(net.is_up(&a, &b));
    net.stop(&b);
    // The dial hangs while b is down; each restart of b lets it fail and back off.
    let before = net.dials;
    for _ in 0..10 {
        net.start(&b);
        net.stop(&b);
        net.advance(60_000);
    }
    let dials = net.dials - before;
    eprintln!("dials over 10 virtual minutes with the peer down: {dials}");
    assert!(dials <= 30, "{dials} dials: no busy loop");
    net.start(&b);
    net.run_until_quiet();
    assert!(net.is_up(&a, &b), "reconnects once the peer is back");
    assert_eq!(pid("pos-2"), b);
}

/// On a slow WAN link (1 Mbit/s, 200 ms round trip) a cloud that lacks part of a busy day
/// (2,500 orders on top of 6,000 it has: about 3 s of transfer, longer than the engine's
/// retry period) catches up with bytes within 1.2x of the changes it lacked: no exchange is
/// restarted and resent while a large message is still on the wire.
#[test]
fn catch_up_over_a_slow_wan_sends_each_change_about_once() {
    let mut net = Net::seeded(5);
    net.delay(100, 100).bandwidth(1_000_000);
    let (cloud, pos) = (
        net.add_peer("fleet", "cloud-1", "cloud"),
        net.add_peer("s1", "pos-1", "pos"),
    );
    let d = doc("orders/2026-11-24");
    let order =
        |i: usize| json!({"sku": "burger", "qty": 1 + i % 3, "status": "paid", "table": i % 40});
    for i in 0..6_000 {
        net.put(&pos, &d, &format!("/o-{i:05}"), order(i));
    }
    net.connect(&pos, &cloud);
    net.run_until_quiet();
    net.disconnect(&pos, &cloud);
    let shared = net.heads(&pos, &d);
    for i in 6_000..8_500 {
        net.put(&pos, &d, &format!("/o-{i:05}"), order(i));
    }
    let lacked: usize = net
        .store(&pos)
        .changes_since(&d, &shared)
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    net.reset_stats();
    let started = net.now();
    net.connect(&pos, &cloud);
    net.run_until_quiet();
    net.assert_converged();
    let sent = net.link_stats(&pos, &cloud).sync_bytes;
    let took = net.now().millis_since(started);
    let ratio = sent as f64 / lacked as f64;
    eprintln!(
        "slow WAN catch-up of 2,500 orders: {lacked} B of changes lacked, {sent} B of sync \
         messages sent ({ratio:.2}x) in {took} virtual ms"
    );
    assert!(
        ratio <= 1.2,
        "{sent} B sent for {lacked} B lacked ({ratio:.2}x)"
    );
}

/// A POS restored from a week-old copy of its data directory, while the original went on
/// writing and syncing, writes again under a fresh actor: everything converges and nothing
/// is refused or stuck (with a persisted actor, the restored copy reused sequence numbers
/// its peers already held for other changes, and Automerge refused its new changes forever).
#[test]
fn a_store_restored_from_an_old_backup_forks_nothing() {
    for seed in seeds(11_000).into_iter().take(20) {
        let mut net = Net::seeded(seed);
        let (pos, kitchen) = (
            net.add_peer("s1", "pos-1", "pos"),
            net.add_peer("s1", "kitchen-1", "kitchen"),
        );
        net.connect(&pos, &kitchen);
        let d = doc("orders/2026-11-24");
        for i in 0..5 {
            net.put(&pos, &d, &format!("/early-{i}"), json!("paid"));
        }
        net.run_until_quiet();
        net.stop(&pos);
        let backup = net.backup(&pos);
        net.start(&pos);
        for i in 0..5 {
            net.put(&pos, &d, &format!("/later-{i}"), json!("paid"));
        }
        net.run_until_quiet();
        // The tablet is wiped and restored from the old copy, then takes new orders.
        net.stop(&pos);
        net.restore_backup(&pos, &backup);
        net.start(&pos);
        for i in 0..5 {
            net.put(&pos, &d, &format!("/restored-{i}"), json!("new"));
        }
        net.run_until_quiet();
        net.assert_converged();
        for p in [&pos, &kitchen] {
            for key in ["/early-4", "/later-4", "/restored-4"] {
                assert!(
                    net.get(p, &d, key).is_some(),
                    "{p} lacks {key}; {}",
                    replay_hint(seed)
                );
            }
            let refused = net
                .events(p)
                .into_iter()
                .filter(|e| matches!(e, Event::ChangeRefused { .. } | Event::ProtocolError { .. }))
                .count();
            assert_eq!(refused, 0, "{p}: nothing refused; {}", replay_hint(seed));
        }
        assert!(
            net.errors().is_empty(),
            "{:?}; {}",
            net.errors(),
            replay_hint(seed)
        );
    }
}

/// A document corrupt on one device's disk is moved aside at the first read, blocked for the
/// app until a peer sends it again, and fetched again at once over the open link: the site
/// converges and the device reads it again.
#[test]
fn a_corrupt_document_is_quarantined_and_fetched_again() {
    for seed in seeds(12_000).into_iter().take(20) {
        let mut net = Net::seeded(seed);
        let (pos, kitchen) = (
            net.add_peer("s1", "pos-1", "pos"),
            net.add_peer("s1", "kitchen-1", "kitchen"),
        );
        net.connect(&kitchen, &pos);
        let d = doc("orders/2026-11-24");
        for i in 0..20 {
            net.put(&pos, &d, &format!("/o-{i}"), json!({"status": "paid"}));
        }
        net.run_until_quiet();
        net.stop(&kitchen);
        net.corrupt(&kitchen, &d);
        net.start(&kitchen);
        net.run_until_quiet();
        // An idle reconnect compares stored heads and loads nothing; the first read finds
        // the damage: the document is moved aside and unavailable...
        assert_eq!(net.get(&kitchen, &d, "/o-19/status"), None);
        // ... and comes back from the POS at once.
        net.run_until_quiet();
        net.assert_converged();
        assert_eq!(
            net.get(&kitchen, &d, "/o-19/status"),
            Some(json!("paid")),
            "fetched again; {}",
            replay_hint(seed)
        );
    }
}
