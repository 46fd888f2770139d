//! Deterministic simulations of many sync engines (see `sim/mod.rs`): convergence under
//! faults, refusal of forbidden changes, resumption cost, idle links, flow control, status.
//!
//! Property tests run `OUTPOST_SIM_SEEDS` seeds each (default [`DEFAULT_SEEDS`]); a failure
//! prints its seed, `OUTPOST_SIM_SEED=<seed>` replays just that one, and
//! `OUTPOST_SIM_TRACE=1` prints every network event.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use outpost_core::engine::wire::FRAGMENT_BYTES;
use outpost_core::{ChangeHash, DocumentId, Event, PeerId, Policy};
use outpost_testkit::{
    doc, pid, replay_hint, FaultModel, Net, PeerOptions, MAX_FRAGMENT_MESSAGE, SEEDS_ENV, SEED_ENV,
};
use rand::distr::{Alphanumeric, SampleString};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;

/// Seeds per property when `OUTPOST_SIM_SEEDS` is not set: about 15 s for the main property
/// in a debug build on 2 cores, a few seconds for the others.
const DEFAULT_SEEDS: u64 = 200;

/// The seeds to run: `OUTPOST_SIM_SEED` alone, or `OUTPOST_SIM_SEEDS` (else `default`) of
/// them from `base` (each property has its own range).
fn seeds(base: u64, default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n = std::env::var(SEEDS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (base..base + n).collect()
}

/// Runs `f` for every seed; a panic names the seed and how to replay it.
fn for_seeds(name: &str, base: u64, default: u64, f: impl Fn(u64)) {
    let started = Instant::now();
    let seeds = seeds(base, default);
    for &seed in &seeds {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(seed))) {
            eprintln!("{name} FAILED: {} {name}", replay_hint(seed));
            std::panic::resume_unwind(e);
        }
    }
    eprintln!("{name}: {} seeds in {:.1?}", seeds.len(), started.elapsed());
}

/// The default policy with only POS and cloud as relays: strict authorship.
fn strict_relays() -> Policy {
    Policy {
        relay_roles: ["cloud", "pos"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect(),
        ..Policy::default()
    }
}

const SKUS: [&str; 3] = ["burger", "fries", "soda"];
const ORDER_DAYS: [&str; 2] = ["orders/2026-11-24", "orders/2026-11-25"];
const INITIAL_STOCK: i64 = 50;

/// How the tampered kiosk of a random site (if any) misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    /// Its changes honestly claim its role, but it also writes the menu, which kiosks may not.
    Menu,
    /// Its changes claim the POS role: every change it makes must be refused.
    ForgedRole,
}

/// What a random workload did, to check the outcome against.
#[derive(Default)]
struct Expect {
    /// Order id -> (document, sku, qty): orders every reader must end up with.
    orders: BTreeMap<String, (DocumentId, String, i64)>,
    /// Sum of accepted stock increments per SKU.
    stock: BTreeMap<String, i64>,
    /// The tampered kiosk and how it misbehaves.
    tamperer: Option<(PeerId, Tamper)>,
    /// Changes the tampered kiosk made that everyone must refuse, by document.
    refused: Vec<(DocumentId, ChangeHash)>,
    /// Orders the tampered kiosk wrote with a forged role, which nobody may show.
    refused_orders: Vec<(DocumentId, String)>,
}

impl Expect {
    fn tamper_of(&self, p: &PeerId) -> Option<Tamper> {
        self.tamperer
            .as_ref()
            .filter(|(t, _)| t == p)
            .map(|(_, how)| *how)
    }
}

/// Builds a random site: 1-3 POS, 0-2 kiosks (the first maybe tampered), maybe a kitchen, a
/// menu board and a cloud peer. Links: the "hubs" (POS and cloud, which read every context)
/// form a connected graph and every other device is linked to a hub. With `mesh`, random
/// extra links join any two peers; without, non-hub devices keep their single hub (a star,
/// which strict relay policies need).
fn random_site(net: &mut Net, exp: &mut Expect, mesh: bool) -> Vec<PeerId> {
    let rng = net.rng();
    let n_pos = rng.random_range(1..=3);
    let n_kiosk = rng.random_range(0..=2);
    let kitchen = rng.random_bool(0.7);
    let board = rng.random_bool(0.5);
    let cloud = rng.random_bool(0.5);
    let tamper = match rng.random_range(0..4) {
        _ if n_kiosk == 0 => None,
        0 => Some(Tamper::Menu),
        1 => Some(Tamper::ForgedRole),
        _ => None,
    };
    let mut hubs = Vec::new();
    let mut others = Vec::new();
    for i in 1..=n_pos {
        hubs.push(net.add_peer("s1", &format!("pos-{i}"), "pos"));
    }
    if cloud {
        hubs.push(net.add_peer("fleet", "cloud-1", "cloud"));
    }
    for i in 1..=n_kiosk {
        let name = format!("kiosk-{i}");
        match tamper {
            Some(how) if i == 1 => {
                // A tampered device: its store lets it write anything, perhaps as another
                // role. Its own copies keep its refused changes: not checked for convergence.
                let id = net.add_peer_with(
                    "s1",
                    &name,
                    "kiosk",
                    PeerOptions {
                        store_policy: Some(Policy::allow_all()),
                        claimed_role: (how == Tamper::ForgedRole).then(|| "pos".to_string()),
                        ..PeerOptions::default()
                    },
                );
                net.exempt(&id, &doc("menu"));
                if how == Tamper::ForgedRole {
                    net.exempt(&id, &doc("stock"));
                    for d in ORDER_DAYS {
                        net.exempt(&id, &doc(d));
                    }
                }
                exp.tamperer = Some((id.clone(), how));
                others.push(id);
            }
            _ => others.push(net.add_peer("s1", &name, "kiosk")),
        }
    }
    if kitchen {
        others.push(net.add_peer("s1", "kitchen-1", "kitchen"));
    }
    if board {
        others.push(net.add_peer("s1", "board-1", "menu-board"));
    }
    hubs.shuffle(net.rng());
    for i in 1..hubs.len() {
        let j = net.rng().random_range(0..i);
        let (a, b) = (hubs[i].clone(), hubs[j].clone());
        net.connect(&a, &b);
    }
    for o in &others {
        let h = hubs[net.rng().random_range(0..hubs.len())].clone();
        net.connect(o, &h);
    }
    let all: Vec<PeerId> = hubs.iter().chain(&others).cloned().collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let both_hubs = hubs.contains(a) && hubs.contains(b);
            if (mesh || both_hubs) && net.rng().random_bool(0.25) {
                net.connect(a, b);
            }
        }
    }
    all
}

/// A write by the tampered kiosk `p` that every other peer must refuse; records its hash.
fn tampered_write(net: &mut Net, p: &PeerId, exp: &mut Expect, seq: usize, how: Tamper) {
    let sku = SKUS[net.rng().random_range(0..SKUS.len())];
    let kind = match how {
        Tamper::Menu => 0,
        Tamper::ForgedRole => net.rng().random_range(0..3),
    };
    let d = match kind {
        1 => doc(ORDER_DAYS[seq % ORDER_DAYS.len()]),
        2 => doc("stock"),
        _ => doc("menu"),
    };
    let before = net.heads(p, &d);
    match kind {
        1 => {
            let id = format!("{p}-forged-{seq}");
            net.put(p, &d, &format!("/{id}"), json!({"sku": sku, "qty": 99}));
            exp.refused_orders.push((d.clone(), id));
        }
        2 => net.increment(p, &d, &format!("/{sku}"), 1000),
        _ => net.put(p, &d, &format!("/items/{sku}/price"), json!(1)),
    }
    for h in net.heads(p, &d) {
        if !before.contains(&h) {
            exp.refused.push((d.clone(), h));
        }
    }
}

/// One random write by `p`, as its role allows.
fn random_write(net: &mut Net, p: &PeerId, exp: &mut Expect, seq: usize) {
    let role = net.role(p).to_string();
    let tamper = exp.tamper_of(p);
    let choice = net.rng().random_range(0..100);
    if let Some(how) = tamper {
        if how == Tamper::ForgedRole || choice < 20 {
            return tampered_write(net, p, exp, seq, how);
        }
    }
    let sku = SKUS[net.rng().random_range(0..SKUS.len())].to_string();
    let day = doc(ORDER_DAYS[net.rng().random_range(0..ORDER_DAYS.len())]);
    let new_order = |net: &mut Net, exp: &mut Expect| {
        let id = format!("{p}-{seq}");
        let qty = net.rng().random_range(1..5);
        let order = json!({"sku": sku, "qty": qty, "status": "new", "by": p.to_string()});
        net.put(p, &day, &format!("/{id}"), order);
        exp.orders.insert(id, (day.clone(), sku.clone(), qty));
    };
    match role.as_str() {
        "pos" if choice < 25 => {
            let price = net.rng().random_range(100..2000);
            net.put(
                p,
                &doc("menu"),
                &format!("/items/{sku}/price"),
                json!(price),
            );
        }
        "pos" if choice < 35 => {
            let available = net.rng().random_bool(0.5);
            let path = format!("/items/{sku}/available");
            net.put(p, &doc("menu"), &path, json!(available));
        }
        "pos" | "kiosk" if choice < 60 => {
            let delta = if net.rng().random_bool(0.2) {
                10
            } else {
                -net.rng().random_range(1..=3)
            };
            net.increment(p, &doc("stock"), &format!("/{sku}"), delta);
            *exp.stock.entry(sku.clone()).or_default() += delta;
        }
        "pos" | "kiosk" | "kitchen" => {
            // The kitchen (and sometimes others) moves a known order on; else a new order.
            let known: Vec<String> = exp
                .orders
                .iter()
                .filter(|(id, (d, _, _))| net.get(p, d, &format!("/{id}/sku")).is_some())
                .map(|(id, _)| id.clone())
                .collect();
            if !known.is_empty() && (role == "kitchen" || net.rng().random_bool(0.3)) {
                let id = known[net.rng().random_range(0..known.len())].clone();
                let d = exp.orders[&id].0.clone();
                let status = ["cooking", "ready", "served"][net.rng().random_range(0..3)];
                net.put(p, &d, &format!("/{id}/status"), json!(status));
            } else if role != "kitchen" {
                new_order(net, exp);
            }
        }
        _ => {}
    }
}

/// A random workload under random faults, then healing; returns the network and what it
/// expects to find everywhere.
fn random_run(seed: u64, model: FaultModel, policy: Policy, mesh: bool) -> (Net, Expect) {
    let mut net = Net::seeded(seed);
    net.policy(policy).model(model);
    let mut exp = Expect::default();
    let peers = random_site(&mut net, &mut exp, mesh);
    // Before faults: the first POS creates the menu and the stock counters, once (two
    // devices creating one counter concurrently would make two conflicting counters).
    let pos1 = pid("pos-1");
    for sku in SKUS {
        let item = json!({"price": 500, "available": true});
        net.put(&pos1, &doc("menu"), &format!("/items/{sku}"), item);
        net.increment(&pos1, &doc("stock"), &format!("/{sku}"), INITIAL_STOCK);
    }
    net.run_until_quiet();

    let rng = net.rng();
    let drop_rate = if rng.random_bool(0.7) {
        rng.random_range(0.0..0.05)
    } else {
        0.0
    };
    let reorder = rng.random_bool(0.7);
    let max_delay = rng.random_range(1..80);
    net.drop_rate(drop_rate)
        .reorder(reorder)
        .delay(1, max_delay);
    if model == FaultModel::Lossy {
        let dup_rate = net.rng().random_range(0.0..0.05);
        let within = net.rng().random_bool(0.5);
        net.dup_rate(dup_rate).reorder_within_streams(within);
    }

    let steps = net.rng().random_range(20..50);
    let mut cut: Vec<(PeerId, PeerId)> = Vec::new();
    for seq in 0..steps {
        let running: Vec<PeerId> = peers
            .iter()
            .filter(|p| net.is_running(p))
            .cloned()
            .collect();
        let pick =
            |net: &mut Net, from: &[PeerId]| from[net.rng().random_range(0..from.len())].clone();
        match net.rng().random_range(0..100) {
            0..=44 if !running.is_empty() => {
                let p = pick(&mut net, &running);
                random_write(&mut net, &p, &mut exp, seq);
            }
            45..=54 => {
                let mut shuffled = peers.clone();
                shuffled.shuffle(net.rng());
                let k = net.rng().random_range(1..shuffled.len().max(2));
                let (a, b) = shuffled.split_at(k.min(shuffled.len()));
                net.partition(&[a, b]);
            }
            55..=61 => net.heal(),
            62..=65 if !running.is_empty() => {
                let p = pick(&mut net, &running);
                net.restart(&p);
            }
            66..=68 if running.len() > 1 => {
                let p = pick(&mut net, &running);
                net.stop(&p);
            }
            69..=71 => {
                if let Some(p) = peers.iter().find(|p| !net.is_running(p)).cloned() {
                    net.start(&p);
                }
            }
            72..=75 => {
                let (a, b) = (pick(&mut net, &peers), pick(&mut net, &peers));
                if a != b && net.is_up(&a, &b) {
                    net.disconnect(&a, &b);
                    cut.push((a, b));
                }
            }
            76..=78 => {
                if let Some((a, b)) = cut.pop() {
                    net.connect(&a, &b);
                }
            }
            79..=94 => {
                let ms = net.rng().random_range(0..400);
                net.advance(ms);
            }
            // A lossy stream can stall an exchange for the rest of its session (see the
            // harness), so only a new session is sure to go quiet.
            _ if model == FaultModel::Lossy => net.advance(5_000),
            _ => net.run_until_quiet(),
        }
    }
    // Heal: no more faults, every peer running, every link wanted and up.
    net.calm();
    for p in &peers {
        net.start(p);
    }
    for (a, b) in cut {
        net.connect(&a, &b);
    }
    net.heal();
    if model == FaultModel::Lossy {
        net.reconnect_all();
    }
    net.run_until_quiet();
    (net, exp)
}

/// Checks the outcome of a random run: convergence, counters, orders, refusals.
fn check_outcome(net: &Net, exp: &Expect) {
    net.assert_converged();
    let hint = replay_hint(net.seed());
    assert!(
        net.errors().is_empty(),
        "engine errors: {:?}; {hint}",
        net.errors()
    );
    let stock = doc("stock");
    for r in net.readers(&stock) {
        for sku in SKUS {
            let want = INITIAL_STOCK + exp.stock.get(sku).copied().unwrap_or(0);
            assert_eq!(
                net.get(&r, &stock, &format!("/{sku}")),
                Some(json!(want)),
                "stock of {sku} at {r}; {hint}"
            );
        }
    }
    for (id, (d, sku, qty)) in &exp.orders {
        for r in net.readers(d) {
            assert_eq!(
                net.get(&r, d, &format!("/{id}/sku")),
                Some(json!(sku)),
                "order {id} at {r}; {hint}"
            );
            assert_eq!(
                net.get(&r, d, &format!("/{id}/qty")),
                Some(json!(qty)),
                "order {id} at {r}; {hint}"
            );
        }
    }
    let tamperer = exp.tamperer.as_ref().map(|(p, _)| p);
    for p in net.peer_ids() {
        if Some(&p) == tamperer {
            continue;
        }
        for (d, h) in &exp.refused {
            assert!(
                !net.store(&p).has_all(d, &[*h]).unwrap(),
                "a change of {d} that {tamperer:?} may not make reached {p}; {hint}"
            );
        }
        for (d, id) in &exp.refused_orders {
            assert_eq!(
                net.get(&p, d, &format!("/{id}")),
                None,
                "{p} shows a forged order; {hint}"
            );
        }
        if net.policy_may_read(&p, &doc("menu")) {
            for sku in SKUS {
                assert_ne!(
                    net.get(&p, &doc("menu"), &format!("/items/{sku}/price")),
                    Some(json!(1)),
                    "{p} shows a tampered price; {hint}"
                );
            }
        }
    }
}

/// The main property: random sites, workloads and QUIC-like faults (link breaks, delays,
/// reordering across documents, partitions, restarts from disk, stopped peers) with the
/// default policy; after healing every reader of a document has the same heads and value,
/// counters hold the sum of all accepted increments, every order is everywhere, and a
/// tampered kiosk's changes are nowhere else.
#[test]
fn random_faults_converge() {
    for_seeds("random_faults_converge", 0, DEFAULT_SEEDS, |seed| {
        let (net, exp) = random_run(seed, FaultModel::Quic, Policy::default(), true);
        check_outcome(&net, &exp);
    });
}

/// Only POS and cloud relay: devices that are not relays must each talk to one relay (a
/// star), else their forwards are refused (see `strict_relays_refuse_forwards` below).
#[test]
fn strict_relays_converge_in_a_star() {
    for_seeds(
        "strict_relays_converge_in_a_star",
        50_000,
        DEFAULT_SEEDS / 4,
        |seed| {
            let (net, exp) = random_run(seed, FaultModel::Quic, strict_relays(), false);
            check_outcome(&net, &exp);
        },
    );
}

/// Beyond what a QUIC link does: document messages lost, duplicated and reordered within
/// their stream while the link stays up. An exchange may then stall until its session ends
/// (see the harness); what must hold is that the network never storms, nothing wrong is
/// applied or persisted, and new sessions converge.
#[test]
fn lossy_streams_heal_on_reconnect() {
    for_seeds(
        "lossy_streams_heal_on_reconnect",
        100_000,
        DEFAULT_SEEDS / 4,
        |seed| {
            let (net, exp) = random_run(seed, FaultModel::Lossy, Policy::default(), true);
            check_outcome(&net, &exp);
        },
    );
}

/// With strict relays, a kiosk between two POS that cannot reach each other forwards one's
/// orders to the other, which refuses them. The refusal must not leave the two sides waiting
/// for each other (the network goes quiet), nothing forwarded is applied, and everything
/// converges once the POS meet and the kiosk's links start new sessions.
#[test]
fn strict_relays_refuse_forwards() {
    let mut net = Net::seeded(1);
    net.policy(strict_relays());
    let p1 = net.add_peer("s1", "pos-1", "pos");
    let p2 = net.add_peer("s1", "pos-2", "pos");
    let k = net.add_peer("s1", "kiosk-1", "kiosk");
    let d = doc("orders/2026-11-24");
    net.connect(&p1, &k);
    net.connect(&p2, &k);
    net.put(&p1, &d, "/o1", json!({"sku": "burger"}));
    net.put(&p2, &d, "/o2", json!({"sku": "fries"}));
    net.run_until_quiet();
    assert_eq!(net.get(&k, &d, "/o1/sku"), Some(json!("burger")));
    assert_eq!(net.get(&k, &d, "/o2/sku"), Some(json!("fries")));
    assert_eq!(net.get(&p1, &d, "/o2"), None, "pos-1 took a forward");
    assert_eq!(net.get(&p2, &d, "/o1"), None, "pos-2 took a forward");
    for p in [&p1, &p2] {
        assert!(net.engine(p).metrics().changes_refused > 0);
        let refused = net
            .events(p)
            .iter()
            .any(|e| matches!(e, Event::ChangeRefused { .. }));
        assert!(refused, "{p} reported no refusal");
    }
    net.put(&k, &d, "/o3", json!({"sku": "soda"}));
    net.run_until_quiet();
    net.connect(&p1, &p2);
    net.run_until_quiet();
    assert_eq!(net.heads(&p1, &d), net.heads(&p2, &d));
    net.reconnect_all();
    net.run_until_quiet();
    net.assert_converged();
    assert_eq!(net.get(&p1, &d, "/o3/sku"), Some(json!("soda")));
}

/// Bytes to resume after `history` orders were synced and a few more written while apart
/// (by both sides), optionally with both peers restarted from disk in between.
fn resume_bytes(history: usize, restart: bool) -> u64 {
    let mut net = Net::seeded(7);
    let (a, b) = (
        net.add_peer("s1", "pos-1", "pos"),
        net.add_peer("s1", "pos-2", "pos"),
    );
    let d = doc("orders/2026-11-24");
    for i in 0..history {
        let order = json!({"sku": "burger", "qty": 1, "status": "new"});
        net.put(&a, &d, &format!("/o{i}"), order);
    }
    net.connect(&a, &b);
    net.run_until_quiet();
    net.disconnect(&a, &b);
    if restart {
        net.restart(&a);
        net.restart(&b);
    }
    for i in 0..5 {
        net.put(&a, &d, &format!("/a{i}"), json!({"sku": "fries"}));
    }
    for i in 0..3 {
        net.put(&b, &d, &format!("/b{i}"), json!({"sku": "soda"}));
    }
    net.reset_stats();
    net.connect(&a, &b);
    net.run_until_quiet();
    net.assert_converged();
    assert_eq!(net.get(&b, &d, "/a4/sku"), Some(json!("fries")));
    assert_eq!(net.get(&a, &d, "/b2/sku"), Some(json!("soda")));
    net.total_stats().bytes
}

/// Resuming costs what is new, not what was already shared: after a reconnect, and after a
/// restart of both peers from disk.
#[test]
fn resume_does_not_grow_with_history() {
    for restart in [false, true] {
        let small = resume_bytes(50, restart);
        let large = resume_bytes(1_000, restart);
        eprintln!("resume (restart: {restart}): {small} B after 50 orders, {large} B after 1000");
        // 20x the history, the same 8 new changes: at most a little more (the Bloom filter
        // of what each side has since the last sync, not of the whole history).
        assert!(
            large <= small + small / 2,
            "resume (restart: {restart}) after 50 orders: {small} B, after 1000: {large} B"
        );
        assert!(
            large < 8 * 1024,
            "resume (restart: {restart}) took {large} B"
        );
    }
}

/// Reconnecting a link over which 1,000 documents are already in sync sends one range
/// fingerprint and its answer: no per-document exchange, a bounded number of bytes. Also
/// after a restart of both peers from disk.
#[test]
fn idle_reconnect_with_many_documents_is_cheap() {
    let mut net = Net::seeded(11);
    let (a, b) = (
        net.add_peer("s1", "pos-1", "pos"),
        net.add_peer("fleet", "cloud-1", "cloud"),
    );
    let docs: Vec<DocumentId> = (0..1_000)
        .map(|i| doc(&format!("orders/d{i:04}")))
        .collect();
    for (i, d) in docs.iter().enumerate() {
        net.put(&a, d, "/o1", json!({"sku": "burger", "n": i}));
    }
    net.connect(&a, &b);
    net.run_until_quiet();
    net.assert_converged();
    for restart in [false, true] {
        net.disconnect(&a, &b);
        if restart {
            net.restart(&a);
            net.restart(&b);
        }
        net.reset_stats();
        net.connect(&a, &b);
        net.run_until_quiet();
        let total = net.total_stats();
        eprintln!("idle reconnect of 1000 documents (restart: {restart}): {total:?}");
        assert_eq!(
            total.sync_messages, 0,
            "per-document messages on an idle link"
        );
        assert_eq!(total.hellos, 2);
        assert!(total.bytes < 1024, "{} bytes", total.bytes);
    }
    net.assert_converged();
}

/// A catch-up of several MB (many `SyncPart` fragments) never has more than the window plus
/// one message unacknowledged (the harness checks every send), and the window does bind.
#[test]
fn large_catch_up_respects_the_flow_control_window() {
    let window: u64 = 512 * 1024;
    let mut net = Net::seeded(3);
    net.delay(5, 20).reorder(true);
    let opts = || PeerOptions {
        window_bytes: Some(window),
        ..PeerOptions::default()
    };
    let a = net.add_peer_with("s1", "pos-1", "pos", opts());
    let b = net.add_peer_with("s1", "pos-2", "pos", opts());
    // About 4 MB of text that compresses poorly, in two documents, plus a small one.
    for d in ["menu", "orders/2026-11-24"] {
        for i in 0..25 {
            let blob = Alphanumeric.sample_string(net.rng(), 100 * 1024);
            net.put(&a, &doc(d), &format!("/blob{i}"), json!(blob));
        }
    }
    net.put(&a, &doc("stock"), "/burger", json!(5));
    net.connect(&a, &b);
    net.run_until_quiet();
    net.assert_converged();
    let st = net.link_stats(&a, &b);
    eprintln!("catch-up: {st:?}");
    assert!(st.sync_bytes > 3 * 1024 * 1024, "{} bytes", st.sync_bytes);
    assert!(
        st.sync_messages as usize > 3 * 1024 * 1024 / FRAGMENT_BYTES,
        "{st:?}"
    );
    assert!(st.max_unacked <= window + MAX_FRAGMENT_MESSAGE, "{st:?}");
    assert!(st.max_unacked >= window, "the window never filled: {st:?}");
}

/// While two POS are apart, each shows the other lacking its new changes since the first
/// one; once healed, nothing is unsynced.
#[test]
fn status_shows_unsynced_changes_until_healed() {
    let mut net = Net::seeded(5);
    let (a, b) = (
        net.add_peer("s1", "pos-1", "pos"),
        net.add_peer("s1", "pos-2", "pos"),
    );
    let d = doc("orders/2026-11-24");
    net.connect(&a, &b);
    net.put(&a, &d, "/o0", json!({"sku": "burger"}));
    net.run_until_quiet();
    assert_eq!(net.engine(&a).status().unsynced_changes(), 0);

    net.partition(&[std::slice::from_ref(&a), std::slice::from_ref(&b)]);
    net.advance(1_000);
    let since = net.now();
    for i in 1..=3 {
        net.put(&a, &d, &format!("/o{i}"), json!({"sku": "fries"}));
        net.advance(100);
    }
    let status = net.engine(&a).status();
    let peer = status.peer(&b).expect("pos-1 knows pos-2");
    assert!(!peer.connected);
    let ds = peer
        .docs
        .iter()
        .find(|s| s.doc == d)
        .expect("status of the orders");
    assert_eq!(ds.they_lack, 3, "{status:?}");
    assert_eq!(ds.unsynced_since, Some(since), "{status:?}");
    assert_eq!(status.unsynced_changes(), 3);

    net.heal();
    net.run_until_quiet();
    let healed = net.now();
    for (me, other) in [(&a, &b), (&b, &a)] {
        let status = net.engine(me).status();
        let peer = status.peer(other).expect("known peer");
        assert!(peer.connected);
        assert_eq!(peer.they_lack(), 0, "{status:?}");
        let ds = peer
            .docs
            .iter()
            .find(|s| s.doc == d)
            .expect("status of the orders");
        assert_eq!(ds.unsynced_since, None, "{status:?}");
        assert!(
            ds.last_sync.is_some_and(|t| t >= since && t <= healed),
            "{status:?}"
        );
    }
}
