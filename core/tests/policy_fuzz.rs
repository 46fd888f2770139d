//! The policy fuzzer (issue 27): a rogue kiosk with a valid certificate sends random hostile
//! input to the honest devices of a site (a POS, a kitchen linked only to the POS, a menu
//! board), and the oracle compares every honest device with the same device in a run of
//! the same seed without the rogue: nothing the kiosk may not write may differ, honest
//! changes must all arrive, and the engine state the rogue can make an honest device hold
//! must stay bounded by what it may read. See `outpost_testkit::rogue`.
//!
//! `OUTPOST_SIM_SEEDS` sets how many seeds run (default: `MIXED_SEEDS` and `KIND_SEEDS`, sized
//! for CI), `OUTPOST_SIM_SEED` replays one.

use std::collections::BTreeMap;
use std::time::Instant;

use automerge::Automerge;
use outpost_core::signing::SignatureRule;
use outpost_core::{Durability, PeerId, PeerInfo, Pointer, Policy};
use outpost_testkit::rogue::{
    changes_per_actor, protected_diff, AttackKind, AttackStats, Rogue, SETTLE_MS,
};
use outpost_testkit::{doc, replay_hint, Net, PeerOptions, SEEDS_ENV, SEED_ENV};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

const DAY: &str = "orders/2026-12-07";
const ROUNDS: u64 = 3;
const ATTACKS_PER_ROUND: u64 = 3;
/// Per-document engine state an honest device may hold for the rogue beyond the documents
/// that exist and that the rogue may read: the engine's documented bound.
const STRAY_STATE_LIMIT: usize = outpost_core::engine::MAX_UNHELD_STATES_PER_PEER;

struct Site {
    net: Net,
    pos: PeerId,
    kitchen: PeerId,
    board: PeerId,
}

impl Site {
    fn honest(&self) -> [PeerId; 3] {
        [self.pos.clone(), self.kitchen.clone(), self.board.clone()]
    }
}

/// The README's site: a kitchen and a menu board linked only to the POS.
fn site(seed: u64, rule: SignatureRule) -> Site {
    let mut net = Net::seeded(seed);
    net.signing(rule);
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let board = net.add_peer("s1", "board-1", "menu-board");
    net.connect(&kitchen, &pos);
    net.connect(&board, &pos);
    Site {
        net,
        pos,
        kitchen,
        board,
    }
}

/// One honest write: (device index in `Site::honest`, document, path, value).
type Write = (usize, &'static str, String, Json);

/// The honest workload of round `r`: the day's orders (one per key, keys the rogue cannot
/// guess), the kitchen's and the POS's steps on earlier orders, menu prices, a site price
/// override, a POS-only report, each device's health.
fn workload(r: u64, rng: &mut StdRng, orders: &mut Vec<String>) -> Vec<Write> {
    let mut w: Vec<Write> = Vec::new();
    if r == 0 {
        w.push((0, DAY, "/orders".into(), json!({})));
        w.push((
            0,
            "menu",
            "/items".into(),
            json!({"burger": {"name": "Burger", "price": 950}, "fries": {"name": "Fries", "price": 350}}),
        ));
        w.push((0, "reports", "/daily".into(), json!({})));
        return w;
    }
    let key = format!("P1-{r}-{:016x}", rng.random::<u64>());
    let sku = if rng.random_bool(0.5) {
        "burger"
    } else {
        "fries"
    };
    w.push((
        0,
        DAY,
        format!("/orders/{key}"),
        json!({"items": [{"sku": sku, "qty": rng.random_range(1..4)}], "total": rng.random_range(100..5000)}),
    ));
    orders.push(key);
    if r >= 2 {
        let o = &orders[orders.len() - 2];
        w.push((
            1,
            DAY,
            format!("/orders/{o}/kitchen"),
            json!({"state": "ready", "round": r}),
        ));
    }
    if r >= 3 {
        let o = &orders[orders.len() - 3];
        w.push((
            0,
            DAY,
            format!("/orders/{o}/payment"),
            json!({"amount": 1200, "method": "card"}),
        ));
        w.push((0, DAY, format!("/orders/{o}/closed"), json!(true)));
    }
    w.push((
        0,
        "menu",
        format!("/items/{sku}/price"),
        json!(rng.random_range(100..2000)),
    ));
    w.push((0, "prices_override", format!("/{sku}"), json!(r)));
    w.push((0, "reports", format!("/daily/r{r}"), json!(r * 10)));
    w.push((2, "health", "/devices/board-1".into(), json!({"round": r})));
    w.push((
        1,
        "health",
        "/devices/kitchen-1".into(),
        json!({"round": r}),
    ));
    w
}

/// Whether `rogue` may replace `path` of `d` or one of its parents: then a write there can
/// fail because of what it wrote (a kiosk may write `/devices` of `health` as a
/// boolean, and no device can publish its health under it), within its rights.
fn may_block(policy: &Policy, rogue: &PeerInfo, d: &str, path: &str) -> bool {
    let d = doc(d);
    let Ok(p) = Pointer::parse(path) else {
        return false;
    };
    let tokens = p.tokens();
    policy.may_write(&rogue.role, d.context())
        && (1..=tokens.len()).any(|n| {
            let prefix = tokens[..n]
                .iter()
                .fold(Pointer::root(), |q, t| q.child(t.to_string()));
            policy.may_write_path_as(&rogue.role, Some(&rogue.peer), d.context(), &prefix, true)
        })
}

/// Honest writes the rogue blocked within its rights, per (author's actor, document): they
/// were never made, so they cannot arrive.
type Blocked = BTreeMap<(String, String), u64>;

/// Applies the writes; returns those that failed, and how many of them `rogue` could block
/// within its rights (not findings), adding those to `blocked`.
fn apply(
    site: &mut Site,
    writes: &[Write],
    rogue: Option<&PeerInfo>,
    blocked: &mut Blocked,
) -> (Vec<String>, u64) {
    let honest = site.honest();
    let mut failed = Vec::new();
    let mut excused = 0;
    for (who, d, path, value) in writes {
        let p = &honest[*who];
        let r = site.net.try_write(p, &doc(d), |s, d| {
            s.put(d, path, value.clone(), Durability::Fast)
        });
        if let Err(e) = r {
            let policy = site.net.engine(p).policy().clone();
            if rogue.is_some_and(|me| may_block(&policy, me, d, path)) {
                excused += 1;
                let actor = site.net.store(p).actor().to_hex_string();
                *blocked.entry((actor, d.to_string())).or_default() += 1;
            } else {
                failed.push(format!("{p} {d}{path}: {e}"));
            }
        }
    }
    (failed, excused)
}

fn value(net: &Net, peer: &PeerId, d: &outpost_core::DocumentId) -> Json {
    net.store(peer).get_all(d).unwrap_or_else(|_| json!({}))
}

fn changes(net: &Net, peer: &PeerId, d: &outpost_core::DocumentId) -> BTreeMap<String, u64> {
    let a = net
        .store(peer)
        .export(d)
        .ok()
        .and_then(|b| Automerge::load(&b).ok())
        .unwrap_or_default();
    changes_per_actor(&a)
        .into_iter()
        .map(|(k, v)| (k.to_hex_string(), v))
        .collect()
}

/// The oracle: every difference between the run with the rogue and the run without it that
/// the rogue's rights do not explain.
fn oracle(
    base: &Site,
    site: &Site,
    me: &PeerInfo,
    blocked: &Blocked,
    arrivals: bool,
) -> Vec<String> {
    let (rogue, role) = (&me.peer, &me.role);
    let mut out = Vec::new();
    let honest_actors: Vec<String> = base
        .honest()
        .iter()
        .map(|p| base.net.store(p).actor().to_hex_string())
        .collect();
    for p in site.honest() {
        let mut docs = base.net.store(&p).documents().unwrap_or_default();
        docs.extend(site.net.store(&p).documents().unwrap_or_default());
        docs.sort();
        docs.dedup();
        let policy = site.net.engine(&p).policy().clone();
        for d in &docs {
            let (b, a) = (value(&base.net, &p, d), value(&site.net, &p, d));
            for diff in protected_diff(&policy, me, d, &b, &a) {
                out.push(format!("at {p}: {diff}"));
            }
            // Honest devices' changes always arrive (checked at the end of rounds: loading
            // every document's history after every attack would cost most of the run).
            if !arrivals {
                continue;
            }
            let (cb, ca) = (changes(&base.net, &p, d), changes(&site.net, &p, d));
            for actor in &honest_actors {
                // Writes the rogue blocked within its rights were never made.
                let never = blocked
                    .get(&(actor.clone(), d.to_string()))
                    .copied()
                    .unwrap_or(0);
                let (want, got) = (
                    cb.get(actor).copied().unwrap_or(0).saturating_sub(never),
                    ca.get(actor).copied().unwrap_or(0),
                );
                if got < want {
                    out.push(format!(
                        "at {p}: {d}: {got} of the {want} changes of honest actor {}.. arrived",
                        &actor[..16]
                    ));
                }
            }
        }
        // The engine state the rogue can make us hold.
        let held = site.net.engine(&p).peer_documents(rogue);
        let stray: Vec<_> = held
            .iter()
            .filter(|d| {
                !policy.may_read(role, d.context())
                    || !site.net.store(&p).contains(d).unwrap_or(false)
            })
            .collect();
        if stray.len() > STRAY_STATE_LIMIT {
            out.push(format!(
                "at {p}: engine state for {} documents the rogue named that do not exist or \
                 that it may not read (e.g. {})",
                stray.len(),
                stray[0]
            ));
        }
    }
    out
}

/// The `ChangeRefused` events of the honest devices so far (the last few of each), for a
/// finding's report: which refusal left an honest change behind.
fn refusal_log(site: &mut Site) -> String {
    let mut out = String::new();
    for p in site.honest() {
        let events: Vec<String> = site
            .net
            .events(&p)
            .into_iter()
            .filter_map(|e| match e {
                outpost_core::Event::ChangeRefused { peer, doc, reason } => {
                    Some(format!("    at {p} from {peer}: {doc}: {reason}"))
                }
                _ => None,
            })
            .collect();
        for e in &events[events.len().saturating_sub(6)..] {
            out.push_str(e);
            out.push('\n');
        }
    }
    out
}

/// What one seed found: the attack kind at fault (`None`: found after honest writes, a late
/// effect of earlier attacks) and the report.
struct Finding {
    kind: Option<AttackKind>,
    report: String,
    /// What the rogue tried up to the finding (the attack at fault included).
    stats: AttackStats,
}

/// One seed: the run without the rogue and the run with it, in lockstep, the rogue drawing
/// from `kinds`; the oracle after every attack. Returns what the rogue tried, or the first
/// finding.
fn run(seed: u64, kinds: &[AttackKind]) -> Result<AttackStats, Finding> {
    let mut plan = StdRng::seed_from_u64(seed ^ 0x005e_ed0f_f022);
    // Mostly the default signature rule; a quarter of the seeds under `Transitional`, which
    // must hold against a kiosk too.
    let rule = if plan.random_bool(0.25) {
        SignatureRule::Transitional
    } else {
        SignatureRule::default()
    };
    let (to_kitchen, to_board) = (plan.random_bool(0.5), plan.random_bool(0.5));
    let mut base = site(seed, rule);
    let mut site = site(seed, rule);
    let rogue = site.net.add_peer_with(
        "s1",
        "kiosk-9",
        "kiosk",
        PeerOptions {
            store_policy: Some(outpost_core::Policy::allow_all()),
            ..PeerOptions::default()
        },
    );
    let me = site.net.info(&rogue);
    let mut targets = vec![site.pos.clone()];
    site.net.connect(&rogue, &site.pos);
    // A rogue with a valid certificate can dial any device of the site, not only the POS.
    if to_kitchen {
        site.net.connect(&rogue, &site.kitchen);
        targets.push(site.kitchen.clone());
    }
    if to_board {
        site.net.connect(&rogue, &site.board);
        targets.push(site.board.clone());
    }
    let docs = [DAY, "menu", "reports", "stock", "health", "prices_override"]
        .iter()
        .map(|d| doc(d))
        .collect();
    let mut r = Rogue::new(&mut site.net, &rogue, targets, docs, seed ^ 0xbad);
    r.only(kinds);
    let mut orders = Vec::new();
    let mut blocked = 0;
    let mut never_made = Blocked::new();
    let finding = |r: &Rogue,
                   site: &mut Site,
                   kind: Option<AttackKind>,
                   round: u64,
                   what: &[String]| {
        let mut what = what.to_vec();
        what.push(format!(
            "refusals at honest devices (the last few):\n{}",
            refusal_log(site)
        ));
        let what = &what;
        Finding {
        kind,
        report: format!(
            "{} in round {round} (rule {rule:?}, rogue linked to pos{}{}):\n  {}\nthe rogue tried:\n{}{}",
            kind.map_or("after honest writes".to_string(), |k| format!("after a {k:?} attack")),
            if to_kitchen { ", kitchen" } else { "" },
            if to_board { ", board" } else { "" },
            what.join("\n  "),
            r.stats,
            replay_hint(seed)
        ),
        stats: r.stats.clone(),
    }
    };
    for round in 0..=ROUNDS + 1 {
        if round <= ROUNDS {
            let writes = workload(round, &mut plan, &mut orders);
            let (failed_base, _) = apply(&mut base, &writes, None, &mut Blocked::new());
            assert!(
                failed_base.is_empty(),
                "honest writes fail without a rogue: {failed_base:?}; {}",
                replay_hint(seed)
            );
            let (failed, excused) = apply(&mut site, &writes, Some(&me), &mut never_made);
            blocked += excused;
            r.stats.blocked_within_rights = blocked;
            base.net.run_until_quiet();
            site.net.advance(SETTLE_MS);
            if !failed.is_empty() {
                let what = [format!("honest writes refused: {failed:?}")];
                return Err(finding(&r, &mut site, None, round, &what));
            }
        } else {
            // A last round: every session starts again (state kept across sessions).
            base.net.reconnect_all();
            site.net.reconnect_all();
            base.net.run_until_quiet();
            site.net.advance(SETTLE_MS);
        }
        base.net.assert_converged();
        let found = oracle(&base, &site, &me, &never_made, true);
        if !found.is_empty() {
            return Err(finding(&r, &mut site, None, round, &found));
        }
        // The day starts with honest data everywhere; then the rogue acts.
        if round == 0 || round > ROUNDS {
            continue;
        }
        for _ in 0..ATTACKS_PER_ROUND {
            let attacked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.attack(&mut site.net)));
            let kind = match attacked {
                Ok(kind) => kind,
                Err(p) => {
                    let what = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let what = [format!("an honest device panicked: {what}")];
                    return Err(finding(&r, &mut site, r.last(), round, &what));
                }
            };
            if let Some(n) = r.take_storm() {
                // Which links carried it (messages so far, per direction).
                let mut all = site.honest().to_vec();
                all.push(me.peer.clone());
                let mut links = Vec::new();
                for a in &all {
                    for b in &all {
                        let m = site.net.link_stats(a, b).messages;
                        if m > 1_000 {
                            links.push(format!("{a}->{b}: {m}"));
                        }
                    }
                }
                let what = [format!(
                    "a message storm: {n} messages within {SETTLE_MS} ms of the attack \
                     (honest devices exchanging messages without end); busiest links: {}",
                    links.join(", ")
                )];
                return Err(finding(&r, &mut site, Some(kind), round, &what));
            }
            let found = oracle(&base, &site, &me, &never_made, false);
            if !found.is_empty() {
                return Err(finding(&r, &mut site, Some(kind), round, &found));
            }
        }
    }
    let mut stats = r.stats;
    stats.blocked_within_rights = blocked;
    Ok(stats)
}

/// Environment variable of a child process: the first and last seed it runs (`first,last`).
const CHILD_ENV: &str = "OUTPOST_FUZZ_CHILD_SEEDS";

/// A seed's outcome as a child prints it.
fn outcome_line(seed: u64, outcome: &Result<AttackStats, Finding>, ms: u128) -> String {
    let (stats, finding) = match outcome {
        Ok(s) => (s, None),
        Err(f) => (&f.stats, Some(f)),
    };
    let kinds: Vec<Json> = stats
        .kinds
        .iter()
        .map(|(k, s)| json!([format!("{k:?}"), s.tried, s.refused, s.applied, s.no_link]))
        .collect();
    json!({
        "seed": seed,
        "ms": ms,
        "kinds": kinds,
        "blocked": stats.blocked_within_rights,
        "fault": finding.map(|f| f.kind.map_or("late".to_string(), |k| format!("{k:?}"))),
        "report": finding.map(|f| f.report.clone()),
    })
    .to_string()
}

/// Parses [`outcome_line`]: (seed, stats, fault and report if it failed).
#[allow(clippy::type_complexity)]
fn parse_outcome(line: &str) -> Option<(u64, u64, AttackStats, Option<(String, String)>)> {
    let v: Json = serde_json::from_str(line).ok()?;
    let mut stats = AttackStats::default();
    for k in v["kinds"].as_array()? {
        let name = k[0].as_str()?;
        let kind = AttackKind::ALL
            .into_iter()
            .find(|a| format!("{a:?}") == name)?;
        let e = stats.kinds.entry(kind).or_default();
        e.tried = k[1].as_u64()?;
        e.refused = k[2].as_u64()?;
        e.applied = k[3].as_u64()?;
        e.no_link = k[4].as_u64()?;
    }
    stats.blocked_within_rights = v["blocked"].as_u64()?;
    let fault = v["fault"].as_str().map(|f| {
        (
            f.to_string(),
            v["report"].as_str().unwrap_or("").to_string(),
        )
    });
    Some((v["seed"].as_u64()?, v["ms"].as_u64()?, stats, fault))
}

/// Runs `OUTPOST_SIM_SEEDS` seeds (default `default_seeds`), or the one `OUTPOST_SIM_SEED`
/// names, of a rogue drawing from `kinds`; prints what it tried and what was found, and
/// fails naming every failing seed.
///
/// The seeds run in child processes of this test binary (`test` names the test): a crafted
/// change can make Automerge panic inside an honest engine, and some of those panics panic
/// again while unwinding, which aborts the process. A child that dies reports the seed it
/// was running as a finding, and the next child goes on from the seed after it.
fn fuzz(test: &str, name: &str, kinds: &[AttackKind], default_seeds: u64) {
    if let Ok(range) = std::env::var(CHILD_ENV) {
        let (first, last) = range
            .split_once(',')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .expect("the parent passes first,last");
        for seed in first..=last {
            let t = Instant::now();
            let outcome = run(seed, kinds);
            // On a line of its own: the harness prints the test's name before it.
            println!(
                "\n@@ {}",
                outcome_line(seed, &outcome, t.elapsed().as_millis())
            );
        }
        return;
    }
    let started = Instant::now();
    let (first, last) = match std::env::var(SEED_ENV) {
        Ok(s) => {
            let s = s.parse().expect("OUTPOST_SIM_SEED is a number");
            (s, s)
        }
        Err(_) => {
            let n: u64 = std::env::var(SEEDS_ENV)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_seeds);
            (0, n.max(1) - 1)
        }
    };
    let mut total = AttackStats::default();
    let mut failures: Vec<(u64, String, String)> = Vec::new();
    let mut next = first;
    let mut slowest = (0, first);
    while next <= last {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        let out = std::process::Command::new(exe)
            // `--include-ignored`: a kind with an open hole is run with `--ignored`.
            .args([
                test,
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "--include-ignored",
            ])
            .env(CHILD_ENV, format!("{next},{last}"))
            .output()
            .expect("the test binary runs as a child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().filter_map(|l| l.strip_prefix("@@ ")) {
            let (seed, ms, stats, fault) = parse_outcome(line).expect("children print outcomes");
            total.add(&stats);
            slowest = slowest.max((ms, seed));
            if let Some((kind, report)) = fault {
                failures.push((seed, kind, report));
            }
            next = seed + 1;
        }
        if next <= last && !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("panicked at") || l.contains("abort"))
                .collect();
            failures.push((
                next,
                "abort".to_string(),
                format!(
                    "the process died ({}) running this seed: a panic inside an honest \
                     engine panicked again while unwinding; last panics:\n  {}\n{}",
                    out.status,
                    tail[tail.len().saturating_sub(4)..].join("\n  "),
                    replay_hint(next)
                ),
            ));
            next += 1;
        } else if next <= last {
            panic!(
                "a child stopped at seed {next} without a failure: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut by_kind: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (seed, kind, _) in &failures {
        by_kind.entry(kind).or_default().push(*seed);
    }
    println!(
        "policy fuzzer {name}: {} seeds, {} attacks, {} seeds failed, {:.1} s (slowest seed \
         {}: {} ms)\n{total}failing seeds by the attack at fault: {by_kind:?}",
        last - first + 1,
        total.tried(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        slowest.1,
        slowest.0
    );
    for (seed, _, report) in failures.iter().take(3) {
        println!("seed {seed}: {report}\n");
    }
    assert!(
        failures.is_empty(),
        "{name}: the rogue kiosk got past the policy at {} of {} seeds: {by_kind:?}\nfirst:\n{}",
        failures.len(),
        last - first + 1,
        failures[0].2
    );
}

/// Every kind of attack, mixed. 16 seeds by default (about 20 s in debug on a loaded
/// machine); `OUTPOST_SIM_SEEDS=10000` with `--release` for the run the report quotes.
#[test]
fn rogue_kiosk_mixed_attacks() {
    fuzz(
        "rogue_kiosk_mixed_attacks",
        "mixed",
        &AttackKind::ALL,
        MIXED_SEEDS,
    );
}

/// Seeds of the mixed test in CI.
const MIXED_SEEDS: u64 = 16;

/// Seeds of each one-kind test in CI.
const KIND_SEEDS: u64 = 8;

macro_rules! one_kind {
    ($($(#[$attr:meta])* $name:ident: $kind:ident),* $(,)?) => {$(
        /// One kind of attack alone, so that a failure names the kind.
        #[test]
        $(#[$attr])*
        fn $name() {
            fuzz(stringify!($name), stringify!($kind), &[AttackKind::$kind], KIND_SEEDS);
        }
    )*};
}

one_kind! {
    rogue_kiosk_local_writes: LocalWrite,
    rogue_kiosk_crafted_changes: Crafted,
    rogue_kiosk_unsigned_changes: Unsigned,
    rogue_kiosk_claims_other_devices: ClaimOther,
    rogue_kiosk_malformed_changes: Malformed,
    rogue_kiosk_replays: Replay,
    rogue_kiosk_altered_relays: AlteredRelay,
    rogue_kiosk_protocol_messages: Protocol,
    rogue_kiosk_name_floods: NameFlood,
}

// ---- minimal cases of what the fuzzer found beyond issue 27's list ----

/// A change by `actor` of `doc` on top of `copy` (seq `seq`, first op `start_op`, `deps`)
/// with one put of 1 at key `x` of `obj`.
fn one_put(
    actor: &automerge::ActorId,
    seq: u64,
    start_op: u64,
    deps: Vec<automerge::ChangeHash>,
    obj: automerge::legacy::ObjectId,
) -> automerge::Change {
    use automerge::legacy::{Key, Op, OpType, SortedVec};
    automerge::Change::from(automerge::ExpandedChange {
        operations: vec![Op {
            action: OpType::Put(automerge::ScalarValue::Int(1)),
            obj,
            key: Key::Map("x".into()),
            pred: SortedVec::new(),
            insert: false,
        }],
        actor_id: actor.clone(),
        hash: None,
        seq,
        start_op: std::num::NonZeroU64::new(start_op).expect("start_op is at least 1"),
        time: 0,
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    })
}

fn max_op(doc: &Automerge) -> u64 {
    doc.get_changes(&[])
        .iter()
        .map(|c| c.start_op().get() + c.len() as u64 - 1)
        .max()
        .unwrap_or(0)
}

/// Found by `rogue_kiosk_malformed_changes` (and `..._unsigned_changes`): a kiosk's own,
/// validly signed change to `stock` (no path rules there) that puts a value into an object
/// the document does not have makes Automerge 0.12 panic inside `load_incremental` ("Obj ...
/// Missing from Index"): one message from a kiosk stops the POS. Every receiver must refuse
/// such a change, not apply it.
#[test]
fn a_change_into_a_missing_object_crashes_no_one() {
    let mut net = Net::seeded(27);
    net.signing(SignatureRule::default());
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kiosk = net.add_peer("s1", "kiosk-9", "kiosk");
    net.connect(&kiosk, &pos);
    let stock = doc("stock");
    net.put(&pos, &stock, "/burger", json!(40));
    net.run_until_quiet();
    let copy = Automerge::load(
        &net.store(&kiosk)
            .export(&stock)
            .expect("the kiosk reads stock"),
    )
    .expect("a stored document loads");
    let actor = net.store(&kiosk).actor().clone();
    let missing = automerge::legacy::ObjectId::Id(automerge::legacy::OpId(47, actor.clone()));
    let change = one_put(&actor, 1, max_op(&copy) + 1, copy.get_heads(), missing);
    net.inject_signed(&kiosk, &pos, &stock, &change);
    let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| net.advance(1_000)));
    assert!(
        delivered.is_ok(),
        "the POS panicked on a kiosk's change into an object its document does not have"
    );
    assert_eq!(net.get(&pos, &stock, "/burger"), Some(json!(40)));
    assert!(
        net.engine(&pos).metrics().changes_refused + net.engine(&pos).metrics().sync_errors > 0,
        "the POS must refuse the change"
    );
}

/// Found by `rogue_kiosk_replays` (seed 8) and the crafted kinds: a change that claims an
/// honest device's actor and its next sequence number, with a dependency the receiver lacks,
/// is queued by Automerge without any check (only changes that apply are judged); when the
/// device's real change with that sequence number arrives, Automerge refuses it ("duplicate
/// seq"), for good: a kiosk silences the kitchen at the POS with one unsigned change.
#[test]
fn a_queued_forgery_does_not_block_an_honest_devices_changes() {
    let mut net = Net::seeded(28);
    net.signing(SignatureRule::default());
    let pos = net.add_peer("s1", "pos-1", "pos");
    let kitchen = net.add_peer("s1", "kitchen-1", "kitchen");
    let kiosk = net.add_peer("s1", "kiosk-9", "kiosk");
    net.connect(&kitchen, &pos);
    net.connect(&kiosk, &pos);
    let day = doc(DAY);
    net.put(
        &pos,
        &day,
        "/orders/P1-1",
        json!({"items": [], "total": 100}),
    );
    net.run_until_quiet();
    let copy = Automerge::load(
        &net.store(&kiosk)
            .export(&day)
            .expect("the kiosk reads orders"),
    )
    .expect("a stored document loads");
    // The kitchen has not written to the day yet: its next sequence number there is 1.
    let victim = net.store(&kitchen).actor().clone();
    let missing_dep = automerge::ChangeHash([7; 32]);
    let change = one_put(
        &victim,
        1,
        max_op(&copy) + 1,
        vec![missing_dep],
        automerge::legacy::ObjectId::Root,
    );
    let frame = outpost_testkit::rogue::sync_frame(&day, vec![change.raw_bytes().to_vec()], vec![]);
    assert!(
        net.inject(&kiosk, &pos, frame),
        "the kiosk is linked to the POS"
    );
    net.advance(1_000);
    net.put(
        &kitchen,
        &day,
        "/orders/P1-1/kitchen",
        json!({"state": "ready"}),
    );
    net.advance(10_000);
    assert_eq!(
        net.get(&pos, &day, "/orders/P1-1/kitchen"),
        Some(json!({"state": "ready"})),
        "the kitchen's change must reach the POS whatever a kiosk queued before it"
    );
}

/// Found at scale (release runs of 2026-12-07: `Unsigned` seed 227, mixed seed 207): under the
/// opt-in `Transitional` rule, a kiosk hands the kitchen a write the kitchen takes and the POS
/// refuses when the kitchen forwards it, and the kitchen's "ready" never reaches the POS.
/// Seed 227: an unsigned change of the kiosk's own, judged at the kitchen by the kiosk's role
/// and at the POS by the kitchen's ("no more than its relay"); now every hop judges an
/// unsigned change by the rights of every relay role that reads the context
/// (`Engine::check_unsigned_claim`). Seed 207: a change of a non-outpost actor vouched for by
/// the kiosk's signature, judged by each sender's role; now by its voucher's
/// (`Engine::voucher`). See core/docs/design.md, "Policy fuzzer".
#[test]
fn transitional_rule_relay_gap_found_at_scale() {
    let cases: [(u64, &[AttackKind]); 2] =
        [(227, &[AttackKind::Unsigned]), (207, &AttackKind::ALL)];
    for (seed, kinds) in cases {
        if let Err(f) = run(seed, kinds) {
            panic!("seed {seed}: {}", f.report);
        }
    }
}
