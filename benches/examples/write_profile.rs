//! A small program to profile the write path with `valgrind --tool=callgrind`, which counts
//! instructions and so gives stable figures on a loaded machine.
//!
//! ```text
//! write_profile prepare <dir> <orders>            # a store with <orders> orders in one document
//! write_profile measure <dir> <writes> <mode> [durable]
//! write_profile sync <dir> <writes>                # live sync of each write to a second engine
//! write_profile compact <dir> <times>             # time of compacting the document
//! ```
//! `sync` opens the prepared store as device A next to an empty device B (two sans-IO engines,
//! both subscribed for paths as a `Node` is), lets B catch up (not measured), then measures
//! (`write_profile::live`) each write on A followed by the messages until both are quiet.
//! `mode` is `bare` (no subscriber), `paths` (one subscriber asking for changed paths, as a
//! `Node` subscribes to its own store) or `nopaths` (one subscriber without paths). Under
//! callgrind, collect only the measured writes:
//! `valgrind --tool=callgrind --toggle-collect='write_profile::measure' ...`.

use std::process::ExitCode;
use std::time::Instant;

use outpost_benches::order;
use outpost_core::{
    DocumentId, Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions,
    Subscription, SubscriptionFilter, Timestamp,
};

fn doc() -> DocumentId {
    "orders/day".parse().expect("a valid document id")
}

#[inline(never)]
fn measure(store: &Store, from: u64, writes: u64, durability: Durability) {
    let doc = doc();
    for n in from..from + writes {
        store
            .put(&doc, &format!("/orders/o{n}"), order(n), durability)
            .expect("put an order");
    }
}

fn pos(peer: &str) -> PeerInfo {
    PeerInfo::parse("lyon", peer, "pos").expect("a valid identity")
}

fn options(me: &PeerInfo) -> StoreOptions {
    StoreOptions {
        identity: Some(me.clone()),
        ..StoreOptions::default()
    }
}

fn engine(dir: &str, me: PeerInfo) -> (Engine, Subscription) {
    let store = Store::open_with(dir, options(&me)).expect("open a store");
    let sub = store.subscribe(SubscriptionFilter::all());
    (
        Engine::new(store, EngineConfig::new(me, Policy::default())),
        sub,
    )
}

/// Moves messages between two engines until both are quiet.
fn drive(a: &mut Engine, b: &mut Engine, now: Timestamp) {
    let (a_id, b_id) = (a.local().peer.clone(), b.local().peer.clone());
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_message(&a_id, &t.bytes, now)
                .expect("a valid message");
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_message(&b_id, &t.bytes, now)
                .expect("a valid message");
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

#[inline(never)]
fn live(a: &mut (Engine, Subscription), b: &mut (Engine, Subscription), from: u64, writes: u64) {
    let doc = doc();
    for n in from..from + writes {
        a.0.store()
            .put(&doc, &format!("/orders/o{n}"), order(n), Durability::Fast)
            .expect("put an order");
        let now = Timestamp::now();
        while a.1.try_recv().is_some() {}
        a.0.handle_local_change(&doc, now);
        drive(&mut a.0, &mut b.0, now);
        while b.1.try_recv().is_some() {}
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!("usage: write_profile prepare <dir> <orders> | measure <dir> <writes> <bare|paths|nopaths> [durable]");
        ExitCode::FAILURE
    };
    let (Some(cmd), Some(dir), Some(count)) = (args.get(1), args.get(2), args.get(3)) else {
        return usage();
    };
    let Ok(count) = count.parse::<u64>() else {
        return usage();
    };
    if cmd == "sync" {
        let mut a = engine(dir, pos("pos-1"));
        let b_dir = format!("{dir}-b");
        let mut b = engine(&b_dir, pos("pos-2"));
        let now = Timestamp::now();
        a.0.handle_connect(b.0.local().clone(), now);
        b.0.handle_connect(a.0.local().clone(), now);
        drive(&mut a.0, &mut b.0, now);
        let existing = a.0.store().history_len(&doc()).unwrap_or(0) as u64;
        let start = Instant::now();
        live(&mut a, &mut b, existing, count);
        println!(
            "{count} live writes into {existing} orders: {:?} per write",
            start.elapsed() / u32::try_from(count.max(1)).unwrap_or(u32::MAX)
        );
        return ExitCode::SUCCESS;
    }
    let store = Store::open_with(dir, options(&pos("pos-1"))).expect("open the store");
    let doc = doc();
    match cmd.as_str() {
        "compact" => {
            for _ in 0..count {
                let start = Instant::now();
                store.compact(&doc).expect("compact");
                println!("compacted in {:?}", start.elapsed());
            }
        }
        "prepare" => {
            let start = Instant::now();
            measure(&store, 0, count, Durability::Fast);
            store.flush().expect("flush");
            println!("prepared {count} orders in {:?}", start.elapsed());
        }
        "measure" => {
            let from = store.heads(&doc).map(|h| !h.is_empty()).unwrap_or(false);
            let existing = if from {
                store
                    .get(&doc, "/orders")
                    .ok()
                    .flatten()
                    .and_then(|o| o.as_object().map(|m| m.len() as u64))
                    .unwrap_or(0)
            } else {
                0
            };
            let _sub = match args.get(4).map(String::as_str) {
                Some("bare") => None,
                Some("paths") => Some(store.subscribe(SubscriptionFilter::all())),
                Some("nopaths") => Some(store.subscribe(SubscriptionFilter::all().without_paths())),
                _ => return usage(),
            };
            let durability = if args.get(5).map(String::as_str) == Some("durable") {
                Durability::Durable
            } else {
                Durability::Fast
            };
            let start = Instant::now();
            measure(&store, existing, count, durability);
            let took = start.elapsed();
            println!(
                "{count} writes into {existing} orders: {:?} per write ({:.0}/s)",
                took / u32::try_from(count.max(1)).unwrap_or(u32::MAX),
                count as f64 / took.as_secs_f64()
            );
        }
        _ => return usage(),
    }
    ExitCode::SUCCESS
}
