//! Shared helpers for outpost's criterion benchmarks (`benches/`).
//!
//! Every benchmark measures outpost next to a reference doing the same work in the same run
//! (raw sled, raw automerge, the fsync floor), so that figures are read as ratios that hold
//! across machines. Run them with `cargo bench -p outpost-benches`.
//!
//! ```
//! let (doc, path) = outpost_benches::order_location(1234);
//! assert_eq!((doc.to_string().as_str(), path.as_str()), ("orders/p1", "/o234"));
//! assert_eq!(outpost_benches::order(7).as_object().map(|o| o.len()), Some(6));
//! ```

use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ScalarValue, ROOT};
use outpost_core::{DocumentId, StoreOptions};
use serde_json::{json, Value};

/// How many orders go into one partition of the `orders` context. Like a site partitions
/// orders by day, the benchmarks roll over to a new document so that its size, and so the
/// cost of a write, does not depend on how many iterations criterion chose to run.
pub const ORDERS_PER_PARTITION: u64 = 1000;

/// A small order of six fields, as a POS writes it.
pub fn order(n: u64) -> Value {
    json!({
        "id": format!("pos-1-{n:08}"),
        "table": n % 24,
        "lines": [{"sku": "burger", "qty": 1 + n % 3}, {"sku": "fries", "qty": 1}],
        "status": "new",
        "paid": false,
        "total_cents": 1250 + (n % 7) * 100,
    })
}

/// [`order`] serialized as JSON bytes: what a raw key-value store would persist.
pub fn order_bytes(n: u64) -> Vec<u8> {
    serde_json::to_vec(&order(n)).expect("a JSON value always serializes")
}

/// Where order `n` is written: its partition document and its path in it.
pub fn order_location(n: u64) -> (DocumentId, String) {
    let partition = format!("orders/p{}", n / ORDERS_PER_PARTITION);
    let doc = partition
        .parse()
        .expect("orders/p<number> is a valid document id");
    (doc, format!("/o{}", n % ORDERS_PER_PARTITION))
}

/// A raw sled database at `path`, configured like an outpost store with `options` (same
/// page cache, same background flush interval), to serve as the reference.
pub fn raw_sled(path: &Path, options: &StoreOptions) -> sled::Db {
    sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity)
        .flush_every_ms(Some(options.flush_every_ms))
        .open()
        .expect("a sled database opens in a fresh directory")
}

/// Raw Automerge doing the document part of a write of order `n`, for reference: one
/// transaction that puts the order at its key, then the encoded change that a store would
/// persist. `docs` holds one document per partition, as in [`order_location`].
pub fn automerge_put_order(docs: &mut Vec<Automerge>, n: u64) -> Vec<u8> {
    let partition = usize::try_from(n / ORDERS_PER_PARTITION).expect("benchmarks stay small");
    if docs.len() <= partition {
        docs.resize_with(partition + 1, Automerge::new);
    }
    let doc = &mut docs[partition];
    let mut tx = doc.transaction();
    put_value(
        &mut tx,
        &ROOT,
        Key::Map(format!("o{}", n % ORDERS_PER_PARTITION)),
        &order(n),
    );
    tx.commit();
    doc.get_last_local_change()
        .expect("a change was just committed")
        .raw_bytes()
        .to_vec()
}

enum Key {
    Map(String),
    Insert(usize),
}

fn put_value<T: Transactable>(tx: &mut T, obj: &ObjId, key: Key, value: &Value) {
    let scalar = match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(x) => x
            .as_i64()
            .map(ScalarValue::Int)
            .unwrap_or_else(|| ScalarValue::F64(x.as_f64().unwrap_or_default())),
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => {
            let ty = if value.is_array() {
                ObjType::List
            } else {
                ObjType::Map
            };
            let child = match key {
                Key::Map(k) => tx.put_object(obj, k, ty),
                Key::Insert(i) => tx.insert_object(obj, i, ty),
            }
            .expect("writing into a fresh object succeeds");
            match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        put_value(tx, &child, Key::Insert(i), item);
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map {
                        put_value(tx, &child, Key::Map(k.clone()), item);
                    }
                }
                _ => {}
            }
            return;
        }
    };
    match key {
        Key::Map(k) => tx.put(obj, k, scalar),
        Key::Insert(i) => tx.insert(obj, i, scalar),
    }
    .expect("writing into a fresh object succeeds");
}

/// Raw Automerge writing `value` at the root key `key` of `doc` in one transaction: the
/// document part of a store write of one JSON value, as a reference (used by the transport
/// benchmark, whose orders do not follow [`order_location`]).
pub fn automerge_put_json(doc: &mut Automerge, key: &str, value: &Value) {
    let mut tx = doc.transaction();
    put_value(&mut tx, &ROOT, Key::Map(key.to_string()), value);
    tx.commit();
}
