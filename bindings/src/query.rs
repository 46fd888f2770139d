//! Live queries evaluated in Rust: the items of a collection (an object of items, e.g. the
//! orders of a day keyed by id) that match field equalities, sorted by a field, at most a
//! limit.
//!
//! The state keeps the matching items. After a change it reads only the items under the
//! changed paths (`/orders/K1-042/status` re-reads `/orders/K1-042`), so one new order in a
//! day of 10,000 costs one item read and a sort of the matches, not a read of the whole
//! document (see `benches/benches/live_query.rs`). A change at or above the collection (the
//! collection replaced or deleted) evaluates everything again.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use outpost_core::{DocumentId, Pointer, Store};
use serde_json::Value as Json;

use crate::error::{OutpostError, Result};

/// Changed items one update re-reads at most; beyond, the query is evaluated in full (as
/// cheap as that many reads).
pub(crate) const MAX_INCREMENTAL_ITEMS: usize = 512;

/// One condition of a query: the item's field at `path` equals `equalsJson`.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct QueryFilter {
    /// JSON Pointer inside the item, e.g. `/status`.
    pub path: String,
    /// The value it must equal, as JSON text, e.g. `"\"new\""`.
    pub equals_json: String,
}

/// A query over the items of one collection of a document.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Query {
    /// JSON Pointer of the collection: an object whose values are the items (`""` for the
    /// document itself, e.g. a day's `orders/2026-11-24` document keyed by order id).
    pub collection: String,
    /// Conditions every item matches (all of them).
    #[uniffi(default = [])]
    pub filters: Vec<QueryFilter>,
    /// JSON Pointer inside the item to sort by (numbers before strings; missing last), e.g.
    /// `/placedAt`; `None`: by key. Ties are broken by key.
    #[uniffi(default = None)]
    pub sort_by: Option<String>,
    /// Largest first.
    #[uniffi(default = false)]
    pub descending: bool,
    /// At most this many items; `None`: all.
    #[uniffi(default = None)]
    pub limit: Option<u32>,
}

/// One item of a query's result.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct QueryItem {
    /// Its key in the collection, e.g. `K1-042`.
    pub key: String,
    /// The item as JSON text.
    pub json: String,
}

/// A query and the items that match it now.
pub(crate) struct QueryState {
    doc: DocumentId,
    collection: Pointer,
    filters: Vec<(Pointer, Json)>,
    sort_by: Option<Pointer>,
    descending: bool,
    limit: Option<usize>,
    matches: BTreeMap<String, Json>,
    /// Whether `matches` is current (false before the first evaluation and after a failure).
    valid: bool,
}

fn at<'a>(v: &'a Json, p: &Pointer) -> Option<&'a Json> {
    p.tokens().iter().try_fold(v, |v, t| match v {
        Json::Object(m) => m.get(t),
        Json::Array(a) => a.get(t.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Order of sort keys: missing last, then numbers, strings, booleans, anything else.
fn compare(a: Option<&Json>, b: Option<&Json>) -> Ordering {
    fn rank(v: Option<&Json>) -> u8 {
        match v {
            Some(Json::Number(_)) => 0,
            Some(Json::String(_)) => 1,
            Some(Json::Bool(_)) => 2,
            Some(_) => 3,
            None => 4,
        }
    }
    match (a, b) {
        (Some(Json::Number(x)), Some(Json::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Json::String(x)), Some(Json::String(y))) => x.cmp(y),
        (Some(Json::Bool(x)), Some(Json::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

impl QueryState {
    pub(crate) fn new(doc: DocumentId, q: &Query) -> Result<Self> {
        let filters = q
            .filters
            .iter()
            .map(|f| {
                let value = serde_json::from_str(&f.equals_json).map_err(|e| {
                    OutpostError::json(&format!("the filter value of {}", f.path), &e)
                })?;
                Ok((Pointer::parse(&f.path)?, value))
            })
            .collect::<Result<_>>()?;
        Ok(QueryState {
            doc,
            collection: Pointer::parse(&q.collection)?,
            filters,
            sort_by: q.sort_by.as_deref().map(Pointer::parse).transpose()?,
            descending: q.descending,
            limit: q.limit.map(|l| l as usize),
            matches: BTreeMap::new(),
            valid: false,
        })
    }

    pub(crate) fn collection(&self) -> &Pointer {
        &self.collection
    }

    fn matches(&self, item: &Json) -> bool {
        self.filters.iter().all(|(p, v)| at(item, p) == Some(v))
    }

    /// Reads the whole collection and evaluates the query.
    pub(crate) fn evaluate(&mut self, store: &Store) -> Result<crate::live::QueryResult> {
        self.valid = false;
        self.matches.clear();
        let collection = match store.get(&self.doc, &self.collection.to_string()) {
            Ok(v) => v,
            // Not synced yet: no items.
            Err(outpost_core::Error::UnknownDocument { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(Json::Object(items)) = collection {
            for (key, item) in items {
                if self.matches(&item) {
                    self.matches.insert(key, item);
                }
            }
        }
        self.valid = true;
        Ok(self.result())
    }

    /// Takes changes at `paths` (JSON Pointers in the document) into account, reading only
    /// the items they touch.
    pub(crate) fn update(
        &mut self,
        store: &Store,
        paths: &[String],
    ) -> Result<crate::live::QueryResult> {
        if !self.valid {
            return self.evaluate(store);
        }
        let depth = self.collection.tokens().len();
        let mut keys = std::collections::BTreeSet::new();
        for p in paths {
            let Ok(p) = Pointer::parse(p) else {
                return self.evaluate(store);
            };
            if !p.starts_with(&self.collection) {
                // Unrelated, unless at or above the collection (replacing it).
                if self.collection.starts_with(&p) {
                    return self.evaluate(store);
                }
                continue;
            }
            match p.tokens().get(depth) {
                Some(key) => {
                    keys.insert(key.clone());
                }
                None => return self.evaluate(store),
            }
            if keys.len() > MAX_INCREMENTAL_ITEMS {
                return self.evaluate(store);
            }
        }
        for key in keys {
            let path = self.collection.child(key.clone()).to_string();
            let item = match store.get(&self.doc, &path) {
                Ok(v) => v,
                Err(outpost_core::Error::UnknownDocument { .. }) => None,
                Err(e) => {
                    self.valid = false;
                    return Err(e.into());
                }
            };
            match item {
                Some(item) if self.matches(&item) => {
                    self.matches.insert(key, item);
                }
                _ => {
                    self.matches.remove(&key);
                }
            }
        }
        Ok(self.result())
    }

    /// The matches, sorted and limited.
    fn result(&self) -> crate::live::QueryResult {
        let mut items: Vec<(&String, &Json)> = self.matches.iter().collect();
        if let Some(sort) = &self.sort_by {
            // Stable: ties stay in key order.
            items.sort_by(|a, b| compare(at(a.1, sort), at(b.1, sort)));
        }
        if self.descending {
            items.reverse();
        }
        let total = items.len() as u64;
        items.truncate(self.limit.unwrap_or(usize::MAX));
        crate::live::QueryResult {
            items: items
                .into_iter()
                .map(|(k, v)| QueryItem {
                    key: k.clone(),
                    json: v.to_string(),
                })
                .collect(),
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::Durability;

    fn query(filters: &[(&str, &str)], sort: Option<&str>, limit: Option<u32>) -> Query {
        Query {
            collection: "/orders".into(),
            filters: filters
                .iter()
                .map(|(p, v)| QueryFilter {
                    path: (*p).into(),
                    equals_json: (*v).into(),
                })
                .collect(),
            sort_by: sort.map(Into::into),
            descending: false,
            limit,
        }
    }

    #[test]
    fn incremental_updates_give_what_a_full_evaluation_gives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let doc: DocumentId = "orders".parse().expect("name");
        let q = query(&[("/status", "\"new\"")], Some("/at"), Some(3));
        let mut live = QueryState::new(doc.clone(), &q).expect("query");
        assert_eq!(
            live.evaluate(&store).expect("eval").total,
            0,
            "unknown document: no items"
        );
        for i in 0..20u32 {
            let status = if i % 3 == 0 { "done" } else { "new" };
            let path = format!("/orders/o{i:02}");
            store
                .put(
                    &doc,
                    &path,
                    serde_json::json!({"status": status, "at": 100 - i}),
                    Durability::Fast,
                )
                .expect("put");
            let incremental = live.update(&store, &[path]).expect("update");
            let full = QueryState::new(doc.clone(), &q)
                .expect("query")
                .evaluate(&store)
                .expect("eval");
            assert_eq!(incremental, full, "after order {i}");
        }
        // A status change removes an order from the matches; sorted by /at ascending.
        store
            .put(
                &doc,
                "/orders/o19/status",
                serde_json::json!("done"),
                Durability::Fast,
            )
            .expect("put");
        let r = live
            .update(&store, &["/orders/o19/status".into()])
            .expect("update");
        assert_eq!(r.total, 12);
        let keys: Vec<&str> = r.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["o17", "o16", "o14"]);
        // The collection replaced: evaluated again.
        store
            .put(&doc, "/orders", serde_json::json!({}), Durability::Fast)
            .expect("put");
        assert_eq!(
            live.update(&store, &["/orders".into()])
                .expect("update")
                .total,
            0
        );
    }

    #[test]
    fn a_bad_filter_value_is_invalid_json() {
        let q = query(&[("/status", "new")], None, None);
        let err = QueryState::new("orders".parse().expect("name"), &q).err();
        assert!(matches!(err, Some(OutpostError::InvalidJson(_))), "{err:?}");
    }
}
