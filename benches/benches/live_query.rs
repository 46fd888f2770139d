//! A live query over a day of 10,000 orders (issue 19): the kitchen screen's "new orders,
//! newest first, 20 at most" kept current as orders come in, against what an app does without
//! live queries: re-read the day's orders and filter and sort them itself, on every change.
//!
//! Both arms write the same new order first (a fast write through the FFI's `Outpost`, the
//! `write` arm measures it alone), then:
//! - `live_query`: awaits the query watch's next result, which the watch worked out from the
//!   changed paths only (one item read, a sort of the matches);
//! - `reread_and_filter`: reads `/orders` of the day as JSON text (as an app gets it), parses
//!   it, filters, sorts and limits.
//!
//! `cargo bench -p outpost-benches --bench live_query`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use outpost_ffi::{Outpost, Query, QueryFilter};
use serde_json::{json, Value};

const DAY: &str = "orders/2026-12-01";
const ORDERS: usize = 10_000;
/// One order in 20 of the day is still new; the others are done.
const NEW_EVERY: usize = 20;
const LIMIT: usize = 20;

fn order(i: usize, status: &str) -> Value {
    json!({
        "status": status,
        "placedAt": i,
        "total": 950 + i % 7 * 100,
        "items": [{"sku": "burger", "qty": 1}, {"sku": "fries", "qty": 1}],
    })
}

/// What an app does without live queries: everything, every time.
fn reread_and_filter(node: &Outpost) -> usize {
    let json = node
        .get_blocking(DAY.into(), "/orders".into())
        .expect("read")
        .expect("orders");
    let orders: serde_json::Map<String, Value> = serde_json::from_str(&json).expect("json");
    let mut new: Vec<(&String, &Value)> = orders
        .iter()
        .filter(|(_, o)| o["status"] == "new")
        .collect();
    new.sort_by_key(|(_, o)| std::cmp::Reverse(o["placedAt"].as_u64()));
    new.truncate(LIMIT);
    new.len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Outpost::open_local(dir.path().display().to_string()).expect("open");
    let day: serde_json::Map<String, Value> = (0..ORDERS)
        .map(|i| {
            let status = if i % NEW_EVERY == 0 { "new" } else { "done" };
            (format!("K1-{i:05}"), order(i, status))
        })
        .collect();
    node.put_blocking(DAY.into(), "/orders".into(), Value::Object(day).to_string())
        .expect("a day of orders");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let query = Query {
        collection: "/orders".into(),
        filters: vec![QueryFilter {
            path: "/status".into(),
            equals_json: r#""new""#.into(),
        }],
        conditions: vec![],
        sort_by: Some("/placedAt".into()),
        descending: true,
        limit: Some(LIMIT as u32),
    };
    let watch = node.clone().watch_query(DAY.into(), query).expect("watch");
    let first = rt.block_on(watch.next()).expect("next").expect("result");
    assert_eq!(first.total as usize, ORDERS / NEW_EVERY);

    // Each new order is new and the newest: it enters the result.
    let next = std::cell::Cell::new(ORDERS);
    let add = |node: &Outpost| {
        let n = next.get() + 1;
        next.set(n);
        let key = format!("K1-{n:05}");
        node.put_blocking(
            DAY.into(),
            format!("/orders/{key}"),
            order(n, "new").to_string(),
        )
        .expect("a new order");
        key
    };

    // A new order, then the live query's results until it has it on top.
    let add_and_see = |node: &Outpost| {
        let key = add(node);
        loop {
            let r = rt
                .block_on(watch.next())
                .expect("the query watch")
                .expect("a result");
            if r.items.first().is_some_and(|i| i.key == key) {
                break r.items.len();
            }
        }
    };

    let mut group = c.benchmark_group("a new order, 10,000-order day");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function(BenchmarkId::new("write", "alone"), |b| {
        b.iter(|| add(&node));
    });
    group.bench_function(BenchmarkId::new("live_query", "write + next result"), |b| {
        b.iter(|| add_and_see(&node));
    });
    group.bench_function(
        BenchmarkId::new("reread_and_filter", "write + read all"),
        |b| {
            b.iter(|| {
                add(&node);
                reread_and_filter(&node)
            });
        },
    );
    group.finish();

    // Interleaved, so that both arms see the same load: medians and their ratio. Few rounds:
    // one re-read of an ~18,000-order day takes seconds on a loaded machine.
    let rounds = 10;
    let (mut live, mut reread, mut write) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        add(&node);
        write.push(t.elapsed());
        let t = std::time::Instant::now();
        add_and_see(&node);
        live.push(t.elapsed());
        let t = std::time::Instant::now();
        add(&node);
        reread_and_filter(&node);
        reread.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (w, l, r) = (median(&mut write), median(&mut live), median(&mut reread));
    println!(
        "live_query summary ({rounds} interleaved rounds, {}+ orders): write alone {w:?}; \
         write + live query result {l:?}; write + re-read and filter {r:?}; \
         re-read / live = {:.1}x; beyond the write: live {:?}, re-read {:?}",
        ORDERS,
        r.as_secs_f64() / l.as_secs_f64(),
        l.saturating_sub(w),
        r.saturating_sub(w),
    );
    drop(watch);
    node.shutdown_blocking().expect("shutdown");
}

/// Runs the benchmark (what `criterion_group!` and `criterion_main!` would generate).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
