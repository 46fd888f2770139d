//! A small program to profile the write path with `valgrind --tool=callgrind`, which counts
//! instructions and so gives stable figures on a loaded machine.
//!
//! ```text
//! write_profile prepare <dir> <orders>            # a store with <orders> orders in one document
//! write_profile measure <dir> <writes> <mode> [durable]
//! ```
//! `mode` is `bare` (no subscriber), `paths` (one subscriber asking for changed paths, as a
//! `Node` subscribes to its own store) or `nopaths` (one subscriber without paths). Under
//! callgrind, collect only the measured writes:
//! `valgrind --tool=callgrind --toggle-collect='write_profile::measure' ...`.

use std::process::ExitCode;
use std::time::Instant;

use outpost_benches::order;
use outpost_core::{DocumentId, Durability, Store, StoreOptions, SubscriptionFilter};

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
    let store = Store::open_with(dir, StoreOptions::default()).expect("open the store");
    let doc = doc();
    match cmd.as_str() {
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
