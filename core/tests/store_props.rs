//! Property tests: random operations applied to a store and to a plain `serde_json::Value`
//! model give the same JSON, before and after reopening the store.

mod common;

use std::collections::BTreeSet;

use common::{doc, tempdir};
use outpost_core::{Durability, Store, StoreOptions};
use proptest::prelude::*;
use serde_json::{Map, Value as Json};

/// One write. Paths are lists of map keys; lists only appear as leaves.
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<String>, Json),
    Delete(Vec<String>),
    Increment(Vec<String>, i64),
    Push(Vec<String>, Json),
}

/// What a test case does to the store.
#[derive(Clone, Debug)]
enum Step {
    /// Several writes in one transaction: all or none apply.
    Tx(Vec<Op>),
    /// Close and reopen the store.
    Reopen,
    /// Compact the document.
    Compact,
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from)
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(key(), 1..=3)
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-1000i64..1000).prop_map(Json::from),
        "[a-z]{0,3}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "x"]).prop_map(String::from),
                inner,
                0..3
            )
            .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), json_value()).prop_map(|(p, v)| Op::Put(p, v)),
        2 => path().prop_map(Op::Delete),
        3 => (path(), -5i64..=5).prop_map(|(p, d)| Op::Increment(p, d)),
        1 => (path(), json_value()).prop_map(|(p, v)| Op::Push(p, v)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => op().prop_map(|o| Step::Tx(vec![o])),
        2 => prop::collection::vec(op(), 2..4).prop_map(Step::Tx),
        1 => Just(Step::Reopen),
        1 => Just(Step::Compact),
    ]
}

fn pointer(path: &[String]) -> String {
    path.iter().map(|t| format!("/{t}")).collect()
}

/// The JSON model of a document and which of its numbers are counters.
#[derive(Clone, Debug, Default)]
struct Model {
    root: Map<String, Json>,
    counters: BTreeSet<Vec<String>>,
}

impl Model {
    /// The parent map of `path`, creating missing maps like the store does; `None` if a
    /// value on the way is not a map.
    fn parent_mut(&mut self, path: &[String]) -> Option<&mut Map<String, Json>> {
        let (_, init) = path.split_last()?;
        let mut cur = &mut self.root;
        for t in init {
            cur = cur
                .entry(t.clone())
                .or_insert_with(|| Json::Object(Map::new()))
                .as_object_mut()?;
        }
        Some(cur)
    }

    fn forget_counters(&mut self, path: &[String]) {
        self.counters.retain(|c| !c.starts_with(path));
    }

    /// Applies `op`; `Err` means the store must refuse it too (and then nothing changes).
    fn apply(&mut self, op: &Op) -> Result<(), ()> {
        match op {
            Op::Put(p, v) => {
                let last = p.last().ok_or(())?.clone();
                self.parent_mut(p).ok_or(())?.insert(last, v.clone());
                self.forget_counters(p);
            }
            Op::Delete(p) => {
                let last = p.last().ok_or(())?;
                self.parent_mut(p).ok_or(())?.remove(last).ok_or(())?;
                self.forget_counters(p);
            }
            Op::Increment(p, d) => {
                let last = p.last().ok_or(())?.clone();
                let is_counter = self.counters.contains(p);
                let parent = self.parent_mut(p).ok_or(())?;
                match parent.get(&last) {
                    None => {
                        parent.insert(last, Json::from(*d));
                        self.counters.insert(p.clone());
                    }
                    Some(v) if is_counter => {
                        let total = v.as_i64().ok_or(())? + d;
                        parent.insert(last, Json::from(total));
                    }
                    Some(_) => return Err(()),
                }
            }
            Op::Push(p, v) => {
                let last = p.last().ok_or(())?.clone();
                let parent = self.parent_mut(p).ok_or(())?;
                match parent
                    .entry(last)
                    .or_insert_with(|| Json::Array(Vec::new()))
                {
                    Json::Array(items) => items.push(v.clone()),
                    _ => return Err(()),
                }
            }
        }
        Ok(())
    }

    /// Applies all of `ops` or, if one fails, none.
    fn apply_all(&mut self, ops: &[Op]) -> Result<(), ()> {
        let mut next = self.clone();
        for op in ops {
            next.apply(op)?;
        }
        *self = next;
        Ok(())
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        compaction_threshold: 4,
        ..StoreOptions::default()
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_with(dir.path(), options()).expect("the store opens")
}

fn store_json(store: &Store) -> Json {
    let d = doc("stock");
    if store.contains(&d).expect("contains") {
        store.get_all(&d).expect("an existing document reads")
    } else {
        Json::Object(Map::new())
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempdir();
    let d = doc("stock");
    let mut store = open(&dir);
    let mut model = Model::default();
    for step in steps {
        match step {
            Step::Tx(ops) => {
                let got = store.transact(&d, Durability::Fast, |tx| {
                    for op in ops {
                        match op {
                            Op::Put(p, v) => tx.put(&pointer(p), v.clone())?,
                            Op::Delete(p) => tx.delete(&pointer(p))?,
                            Op::Increment(p, delta) => tx.increment(&pointer(p), *delta)?,
                            Op::Push(p, v) => tx.push(&pointer(p), v.clone())?,
                        }
                    }
                    Ok(())
                });
                let want = model.apply_all(ops);
                prop_assert_eq!(got.is_ok(), want.is_ok(), "{:?} gave {:?}", ops, got);
            }
            Step::Reopen => {
                drop(store);
                store = open(&dir);
            }
            Step::Compact => {
                if store.contains(&d).expect("contains") {
                    store.compact(&d).expect("compact");
                    prop_assert_eq!(store.chunk_count(&d).expect("chunks"), 1);
                }
            }
        }
        prop_assert_eq!(store_json(&store), Json::Object(model.root.clone()));
        // Compaction waits for the tail to weigh as much as the snapshot, up to 16 times
        // the threshold of 4.
        prop_assert!(store.chunk_count(&d).expect("chunks") < 4 * 16);
    }
    let heads = store.heads(&d).expect("heads");
    drop(store);
    let store = open(&dir);
    prop_assert_eq!(store_json(&store), Json::Object(model.root.clone()));
    prop_assert_eq!(store.heads(&d).expect("heads"), heads);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_json_model(steps in prop::collection::vec(step(), 1..40)) {
        run(&steps)?;
    }
}
