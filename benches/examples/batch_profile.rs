//! How much of a write Automerge itself costs, and what batching several orders into one
//! change would save: the bound behind issue 13's group-commit targets. Raw Automerge, no
//! store. Under `valgrind --tool=callgrind --toggle-collect='batch_profile::measure'`:
//!
//! ```text
//! batch_profile <orders already in the document> <orders to write> <orders per change>
//! ```

use automerge::hydrate;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ROOT};
use outpost_benches::order;

fn hydrate_json(v: &serde_json::Value) -> hydrate::Value {
    match v {
        serde_json::Value::Object(m) => hydrate::Value::Map(hydrate::Map::from(
            m.iter()
                .map(|(k, v)| (k.as_str(), hydrate_json(v)))
                .collect::<std::collections::HashMap<_, _>>(),
        )),
        serde_json::Value::Array(a) => hydrate::Value::List(hydrate::List::from(
            a.iter().map(hydrate_json).collect::<Vec<_>>(),
        )),
        serde_json::Value::String(s) => {
            hydrate::Value::Scalar(automerge::ScalarValue::Str(s.as_str().into()))
        }
        serde_json::Value::Bool(b) => hydrate::Value::Scalar(automerge::ScalarValue::Boolean(*b)),
        serde_json::Value::Number(n) => {
            hydrate::Value::Scalar(automerge::ScalarValue::Int(n.as_i64().unwrap_or(0)))
        }
        serde_json::Value::Null => hydrate::Value::Scalar(automerge::ScalarValue::Null),
    }
}

#[inline(never)]
fn measure(doc: &mut AutoCommit, orders: &automerge::ObjId, from: u64, writes: u64, per: u64) {
    let mut n = from;
    while n < from + writes {
        for k in n..(n + per).min(from + writes) {
            let tree = hydrate_json(&order(k));
            doc.batch_create_object(orders, format!("o{k}"), &tree, false)
                .expect("write an order");
        }
        let hash = doc.commit().expect("a change");
        // What a store does next: the change's bytes, to persist them.
        let bytes = doc
            .get_change_by_hash(&hash)
            .map(|c| c.raw_bytes().len())
            .unwrap_or(0);
        std::hint::black_box(bytes);
        n += per;
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: prefill writes per_change"))
        .collect();
    let [prefill, writes, per] = args[..] else {
        eprintln!("usage: batch_profile <prefill> <writes> <orders per change>");
        std::process::exit(2);
    };
    let mut doc = AutoCommit::new();
    let orders = doc
        .put_object(ROOT, "orders", ObjType::Map)
        .expect("the orders map");
    for k in 0..prefill {
        doc.batch_create_object(&orders, format!("o{k}"), &hydrate_json(&order(k)), false)
            .expect("prefill");
        if k % 100 == 99 {
            doc.commit();
        }
    }
    doc.commit();
    let t = std::time::Instant::now();
    measure(&mut doc, &orders, prefill, writes, per.max(1));
    let el = t.elapsed();
    println!(
        "{writes} orders, {per} per change, into {prefill}: {:.0} orders/s ({} keys)",
        writes as f64 / el.as_secs_f64(),
        doc.length(&orders)
    );
}
