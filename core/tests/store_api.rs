//! Integration tests of the store's value API, transactions, counters, conflicts,
//! subscriptions and compaction.

mod common;

use common::{doc, open, open_with, pos, tempdir};
use outpost_core::{
    ChangeEvent, Durability, Error, Origin, Pointer, Store, StoreOptions, SubscriptionFilter,
};
use serde_json::{json, Value as Json};

const D: Durability = Durability::Fast;

fn get(store: &Store, d: &str, path: &str) -> Option<Json> {
    store
        .get(&doc(d), path)
        .unwrap_or_else(|e| panic!("get {d}{path}: {e}"))
}

fn heads_hex(store: &Store, d: &str) -> Vec<String> {
    store
        .heads(&doc(d))
        .expect("heads of a document")
        .iter()
        .map(|h| h.to_string())
        .collect()
}

fn drain(sub: &mut outpost_core::Subscription) -> Vec<ChangeEvent> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

/// Asserts that `e`'s message names the document and, if given, the path.
fn assert_names(e: &Error, d: &str, path: Option<&str>) {
    let msg = e.to_string();
    assert!(msg.contains(d), "message should name document {d}: {msg}");
    if let Some(p) = path {
        assert!(msg.contains(p), "message should name path {p}: {msg}");
    }
}

// ---- value API ----

#[test]
fn put_and_get_nested_values_and_subtrees() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    s.put(&menu, "/items/burger/price", json!(950), D)
        .expect("put creates parent objects");
    s.put(
        &menu,
        "/items/fries",
        json!({"name": "Fries", "price": 350, "vegan": true, "tags": ["side", "hot"], "note": null}),
        D,
    )
    .expect("put an object");

    assert_eq!(get(&s, "menu", "/items/burger/price"), Some(json!(950)));
    assert_eq!(get(&s, "menu", "/items/fries/tags/1"), Some(json!("hot")));
    assert_eq!(get(&s, "menu", "/items/fries/note"), Some(Json::Null));
    assert_eq!(
        get(&s, "menu", "/items"),
        Some(json!({
            "burger": {"price": 950},
            "fries": {"name": "Fries", "price": 350, "vegan": true, "tags": ["side", "hot"], "note": null}
        }))
    );
    assert_eq!(get(&s, "menu", "/items/salad"), None);
    assert_eq!(get(&s, "menu", "/items/salad/price"), None);
    assert_eq!(
        s.get_all(&menu).expect("whole document"),
        get(&s, "menu", "").expect("root exists")
    );

    // Overwriting a subtree replaces it whole.
    s.put(&menu, "/items/burger", json!({"price": 990}), D)
        .expect("replace an object");
    assert_eq!(
        get(&s, "menu", "/items/burger"),
        Some(json!({"price": 990}))
    );

    // Keys that need escaping in a JSON Pointer.
    s.put(&menu, "/items/a~1b/m~0n", json!("escaped"), D)
        .expect("escaped tokens");
    assert_eq!(
        get(&s, "menu", "/items").and_then(|v| v.get("a/b").cloned()),
        Some(json!({"m~n": "escaped"}))
    );
    assert!(s.contains(&menu).expect("contains"));
    assert_eq!(s.documents().expect("documents"), vec![menu]);
}

#[test]
fn lists_insert_push_put_and_remove() {
    let dir = tempdir();
    let s = open(&dir);
    let orders = doc("orders");
    s.insert(&orders, "/o1/lines", 0, json!("burger"), D)
        .expect("insert creates the list");
    s.insert(&orders, "/o1/lines", 1, json!("fries"), D)
        .expect("insert at the end");
    s.insert(&orders, "/o1/lines", 0, json!({"sku": "cola", "qty": 2}), D)
        .expect("insert an object at the front");
    s.transact(&orders, D, |tx| {
        tx.push("/o1/lines", json!("shake"))?;
        tx.push("/o1/lines", json!([1, 2]))
    })
    .expect("push appends");
    assert_eq!(
        get(&s, "orders", "/o1/lines"),
        Some(json!([{"sku": "cola", "qty": 2}, "burger", "fries", "shake", [1, 2]]))
    );
    assert_eq!(get(&s, "orders", "/o1/lines/0/qty"), Some(json!(2)));
    assert_eq!(get(&s, "orders", "/o1/lines/9"), None);

    s.put(&orders, "/o1/lines/1", json!("double burger"), D)
        .expect("put replaces a list element");
    s.delete(&orders, "/o1/lines/2", D)
        .expect("delete removes a list element");
    s.put(&orders, "/o1/lines/0/qty", json!(3), D)
        .expect("put inside an object in a list");
    assert_eq!(
        get(&s, "orders", "/o1/lines"),
        Some(json!([{"sku": "cola", "qty": 3}, "double burger", "shake", [1, 2]]))
    );

    // Pushing to a path that is not yet a list creates it.
    s.transact(&orders, D, |tx| tx.push("/o2/lines", json!("tea")))
        .expect("push creates the list");
    assert_eq!(get(&s, "orders", "/o2/lines"), Some(json!(["tea"])));
}

#[test]
fn delete_removes_map_keys() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    s.put(
        &menu,
        "/items/burger",
        json!({"price": 950, "name": "Burger"}),
        D,
    )
    .expect("put");
    s.delete(&menu, "/items/burger/price", D)
        .expect("delete a key");
    assert_eq!(
        get(&s, "menu", "/items/burger"),
        Some(json!({"name": "Burger"}))
    );
    s.delete(&menu, "/items/burger", D)
        .expect("delete a subtree");
    assert_eq!(get(&s, "menu", "/items"), Some(json!({})));

    let e = s
        .delete(&menu, "/items/burger", D)
        .expect_err("deleting a missing key fails");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_names(&e, "menu", Some("/items/burger"));
    // A failed delete below a missing parent creates nothing.
    let e = s
        .delete(&menu, "/nowhere/deep", D)
        .expect_err("nothing there");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(get(&s, "menu", "/nowhere"), None);
}

#[test]
fn counters_increment_and_create() {
    let dir = tempdir();
    let s = open(&dir);
    let stock = doc("stock");
    s.increment(&stock, "/burger", 20, D)
        .expect("increment creates a counter");
    s.increment(&stock, "/burger", -3, D).expect("decrement");
    s.transact(&stock, D, |tx| {
        tx.increment("/burger", 1)?;
        tx.increment("/fries/count", 5)
    })
    .expect("increments in a transaction");
    assert_eq!(get(&s, "stock", "/burger"), Some(json!(18)));
    assert_eq!(
        get(&s, "stock", ""),
        Some(json!({"burger": 18, "fries": {"count": 5}}))
    );
}

#[test]
fn concurrent_increments_from_two_stores_add_up() {
    let (da, db) = (tempdir(), tempdir());
    let a = open_with(&da, pos("pos-1"));
    let b = open_with(&db, pos("pos-2"));
    let stock = doc("stock");
    a.increment(&stock, "/burger", 10, D).expect("create on a");
    b.import(&stock, &a.export(&stock).expect("export a"))
        .expect("b gets the counter");
    // Both sell offline.
    a.increment(&stock, "/burger", -1, D).expect("sell on a");
    a.increment(&stock, "/burger", -2, D).expect("sell on a");
    b.increment(&stock, "/burger", -4, D).expect("sell on b");
    let from_a = a.export(&stock).expect("export a");
    let from_b = b.export(&stock).expect("export b");
    assert!(a.import(&stock, &from_b).expect("merge into a") > 0);
    assert!(b.import(&stock, &from_a).expect("merge into b") > 0);
    assert_eq!(get(&a, "stock", "/burger"), Some(json!(3)));
    assert_eq!(get(&b, "stock", "/burger"), Some(json!(3)));
    assert_eq!(
        a.heads(&stock).expect("heads"),
        b.heads(&stock).expect("heads")
    );
    // Importing the same changes again adds nothing.
    assert_eq!(a.import(&stock, &from_b).expect("re-import"), 0);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: String,
    table: u32,
    lines: Vec<Line>,
    paid: bool,
    note: Option<String>,
    total_cents: i64,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Line {
    sku: String,
    qty: u32,
}

#[test]
fn put_serde_and_get_serde_roundtrip() {
    let dir = tempdir();
    let s = open(&dir);
    let orders = doc("orders/2026-11-24");
    let order = Order {
        id: "o-1".into(),
        table: 7,
        lines: vec![
            Line {
                sku: "burger".into(),
                qty: 2,
            },
            Line {
                sku: "fries".into(),
                qty: 1,
            },
        ],
        paid: false,
        note: None,
        total_cents: -1250,
    };
    s.put_serde(&orders, "/o-1", &order, Durability::Durable)
        .expect("put_serde");
    let back: Option<Order> = s.get_serde(&orders, "/o-1").expect("get_serde");
    assert_eq!(back.as_ref(), Some(&order));
    let missing: Option<Order> = s.get_serde(&orders, "/o-2").expect("missing is None");
    assert!(missing.is_none());

    let e = s
        .get_serde::<Order>(&orders, "/o-1/lines")
        .expect_err("a list is not an order");
    assert!(matches!(e, Error::Serde { .. }), "{e:?}");
    assert_names(&e, "orders/2026-11-24", Some("/o-1/lines"));
}

// ---- typed errors ----

#[test]
fn wrong_types_are_typed_errors_naming_doc_and_path() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    s.put(&menu, "/items/burger/name", json!("Burger"), D)
        .expect("put");
    s.put(&menu, "/list", json!([1, 2]), D).expect("put a list");
    let before = s.heads(&menu).expect("heads");

    let e = s
        .increment(&menu, "/items/burger/name", 1, D)
        .expect_err("increment on a string");
    assert!(
        matches!(&e, Error::WrongType { expected: "a counter", found, .. } if found == "a string"),
        "{e:?}"
    );
    assert_names(&e, "menu", Some("/items/burger/name"));

    let e = s
        .insert(&menu, "/items/burger", 0, json!(1), D)
        .expect_err("insert into a map");
    assert!(
        matches!(
            &e,
            Error::WrongType {
                expected: "a list",
                ..
            }
        ),
        "{e:?}"
    );
    assert_names(&e, "menu", Some("/items/burger"));

    let e = s
        .put(&menu, "/items/burger/name/first", json!("B"), D)
        .expect_err("put below a string");
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
    assert_names(&e, "menu", Some("/items/burger/name"));

    let e = s
        .get(&menu, "/items/burger/name/first")
        .expect_err("get below a string");
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
    assert_names(&e, "menu", Some("/items/burger/name"));

    let e = s
        .put(&menu, "/list/first", json!(1), D)
        .expect_err("a key into a list");
    assert!(matches!(e, Error::InvalidPath { .. }), "{e:?}");

    assert_eq!(
        s.heads(&menu).expect("heads"),
        before,
        "nothing was written"
    );
}

#[test]
fn invalid_pointers_are_rejected() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    s.put(&menu, "/a", json!(1), D).expect("put");
    for bad in ["items", "/a~2", "/a~"] {
        let e = s.get(&menu, bad).expect_err("invalid pointer on get");
        assert!(matches!(e, Error::InvalidPath { .. }), "{bad}: {e:?}");
        assert!(e.to_string().contains(bad), "{e}");
        let e = s
            .put(&menu, bad, json!(1), D)
            .expect_err("invalid pointer on put");
        assert!(matches!(e, Error::InvalidPath { .. }), "{bad}: {e:?}");
    }
    let e = s
        .put(&menu, "", json!({"a": 2}), D)
        .expect_err("the root cannot be replaced");
    assert!(matches!(e, Error::InvalidPath { .. }), "{e:?}");
    assert_eq!(get(&s, "menu", "/a"), Some(json!(1)));
}

#[test]
fn unknown_documents_are_typed_errors() {
    let dir = tempdir();
    let s = open(&dir);
    let ghost = doc("ghost/2026-01-01");
    for e in [
        s.get(&ghost, "/a").expect_err("get"),
        s.get(&ghost, "").expect_err("get root"),
        s.conflicts(&ghost, "/a").expect_err("conflicts"),
        s.export(&ghost).expect_err("export"),
    ] {
        assert!(matches!(e, Error::UnknownDocument { .. }), "{e:?}");
        assert_names(&e, "ghost/2026-01-01", None);
    }
    assert!(!s.contains(&ghost).expect("contains"));
    assert!(s.heads(&ghost).expect("heads").is_empty());
    assert!(s.documents().expect("documents").is_empty());
}

#[test]
fn index_out_of_range_is_a_typed_error() {
    let dir = tempdir();
    let s = open(&dir);
    let orders = doc("orders");
    s.put(&orders, "/lines", json!(["a", "b"]), D).expect("put");
    let cases = [
        s.insert(&orders, "/lines", 3, json!("c"), D)
            .expect_err("insert past the end"),
        s.put(&orders, "/lines/2", json!("c"), D)
            .expect_err("put past the end"),
        s.put(&orders, "/lines/5/x", json!("c"), D)
            .expect_err("put below a missing element"),
    ];
    for e in cases {
        assert!(matches!(e, Error::IndexOutOfRange { len: 2, .. }), "{e:?}");
        assert_names(&e, "orders", Some("/lines"));
    }
    let e = s
        .delete(&orders, "/lines/2", D)
        .expect_err("delete past the end");
    assert!(
        matches!(e, Error::NotFound { .. } | Error::IndexOutOfRange { .. }),
        "{e:?}"
    );
    assert_eq!(get(&s, "orders", "/lines"), Some(json!(["a", "b"])));
}

#[test]
fn writes_refused_by_policy_are_typed_errors() {
    let dir = tempdir();
    let s = open_with(
        &dir,
        StoreOptions {
            identity: Some(
                outpost_core::PeerInfo::parse("site", "board-1", "menu-board").expect("valid"),
            ),
            policy: outpost_core::Policy::default(),
            ..StoreOptions::default()
        },
    );
    let menu = doc("menu");
    let e = s
        .put(&menu, "/a", json!(1), D)
        .expect_err("a menu board may not write the menu");
    assert!(matches!(e, Error::NotPermitted { .. }), "{e:?}");
    assert_names(&e, "menu", None);
    assert!(!s.contains(&menu).expect("contains"));
}

// ---- transactions ----

#[test]
fn transaction_commits_all_operations_as_one_change() {
    let dir = tempdir();
    let s = open(&dir);
    let orders = doc("orders");
    s.put(&orders, "/seq", json!(0), D).expect("put");
    let history = s.history_len(&orders).expect("history");
    let n = s
        .transact(&orders, Durability::Durable, |tx| {
            tx.put("/o1", json!({"status": "new"}))?;
            tx.push("/o1/lines", json!("burger"))?;
            tx.increment("/count", 1)?;
            tx.delete("/seq")?;
            // The transaction sees its own writes.
            assert_eq!(tx.get("/o1/lines")?, Some(json!(["burger"])));
            Ok(42)
        })
        .expect("commit");
    assert_eq!(n, 42);
    assert_eq!(s.history_len(&orders).expect("history"), history + 1);
    assert_eq!(
        get(&s, "orders", ""),
        Some(json!({"o1": {"status": "new", "lines": ["burger"]}, "count": 1}))
    );
}

#[test]
fn failed_transaction_leaves_nothing_also_after_reopen() {
    let dir = tempdir();
    let orders = doc("orders");
    let (heads, chunks) = {
        let s = open(&dir);
        s.put(&orders, "/kept", json!(1), Durability::Durable)
            .expect("put");
        let heads = s.heads(&orders).expect("heads");
        let chunks = s.chunk_count(&orders).expect("chunks");
        let mut sub = s.subscribe(SubscriptionFilter::all());

        // An error from the closure itself.
        let e = s
            .transact(&orders, Durability::Durable, |tx| -> Result<(), Error> {
                tx.put("/o1", json!({"status": "new"}))?;
                tx.increment("/count", 1)?;
                Err(Error::NotFound {
                    doc: doc("orders"),
                    path: "/abort".into(),
                })
            })
            .expect_err("closure failed");
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        // An error from an operation after successful ones.
        let e = s
            .transact(&orders, Durability::Durable, |tx| {
                tx.put("/o2", json!("x"))?;
                tx.increment("/kept", 1)
            })
            .expect_err("increment on an int");
        assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
        // A failed transaction on a new document does not create it.
        let fresh = doc("fresh");
        s.transact(&fresh, Durability::Durable, |tx| {
            tx.put("/a", json!(1))?;
            tx.insert("/a", 0, json!(1))
        })
        .expect_err("insert into an int");
        assert!(!s.contains(&fresh).expect("contains"));

        assert_eq!(get(&s, "orders", ""), Some(json!({"kept": 1})));
        assert_eq!(s.heads(&orders).expect("heads"), heads);
        assert_eq!(s.chunk_count(&orders).expect("chunks"), chunks);
        assert!(
            drain(&mut sub).is_empty(),
            "no events for rolled back writes"
        );
        (heads, chunks)
    };
    let s = open(&dir);
    assert_eq!(get(&s, "orders", ""), Some(json!({"kept": 1})));
    assert_eq!(s.heads(&orders).expect("heads"), heads);
    assert_eq!(s.chunk_count(&orders).expect("chunks"), chunks);
    assert_eq!(s.documents().expect("documents"), vec![orders]);
}

#[test]
fn empty_transaction_writes_nothing() {
    let (da, db) = (tempdir(), tempdir());
    let a = open(&da);
    let b = open_with(&db, pos("pos-2"));
    let menu = doc("menu");
    b.put(&menu, "/c", json!(3), D).expect("put");
    a.import(&menu, &b.export(&menu).expect("export"))
        .expect("import");
    a.put(&menu, "/a", json!(1), D).expect("put");
    // b's last local change is no longer a head once a's change on top of it is merged.
    b.import(&menu, &a.export(&menu).expect("export"))
        .expect("import");
    let mut sub = b.subscribe(SubscriptionFilter::all());
    let chunks = b.chunk_count(&menu).expect("chunks");
    let heads = b.heads(&menu).expect("heads");
    b.transact(&menu, D, |tx| tx.get("/a").map(|_| ()))
        .expect("read-only transaction");
    assert_eq!(b.chunk_count(&menu).expect("chunks"), chunks);
    assert_eq!(b.heads(&menu).expect("heads"), heads);
    assert!(
        drain(&mut sub).is_empty(),
        "no event for an empty transaction"
    );
}

// ---- conflicts ----

#[test]
fn concurrent_writes_are_visible_conflicts_with_authors() {
    let (da, db) = (tempdir(), tempdir());
    let a = open_with(&da, pos("pos-1"));
    let b = open_with(&db, pos("pos-2"));
    let menu = doc("menu");
    a.put(
        &menu,
        "/items/burger",
        json!({"price": 900, "name": "Burger"}),
        D,
    )
    .expect("put");
    b.import(&menu, &a.export(&menu).expect("export"))
        .expect("share the base");
    assert_eq!(
        a.conflicts(&menu, "/items/burger/price")
            .expect("no conflict yet")
            .len(),
        1
    );

    // Two managers change the price offline.
    a.put(&menu, "/items/burger/price", json!(950), D)
        .expect("a writes");
    b.put(&menu, "/items/burger/price", json!(990), D)
        .expect("b writes");
    let from_a = a.export(&menu).expect("export");
    let from_b = b.export(&menu).expect("export");
    a.import(&menu, &from_b).expect("merge");
    b.import(&menu, &from_a).expect("merge");

    let ca = a
        .conflicts(&menu, "/items/burger/price")
        .expect("conflicts on a");
    let cb = b
        .conflicts(&menu, "/items/burger/price")
        .expect("conflicts on b");
    assert_eq!(ca.len(), 2, "{ca:?}");
    assert_eq!(ca.iter().filter(|c| c.winner).count(), 1, "{ca:?}");
    assert!(ca[0].winner, "the winner comes first: {ca:?}");
    let mut values: Vec<Json> = ca.iter().map(|c| c.value.clone()).collect();
    values.sort_by_key(|v| v.as_i64());
    assert_eq!(values, vec![json!(950), json!(990)]);
    let mut authors: Vec<String> = ca
        .iter()
        .map(|c| {
            c.author
                .as_ref()
                .expect("outpost actors name their author")
                .to_string()
        })
        .collect();
    authors.sort();
    assert_eq!(authors, ["pos-1", "pos-2"]);
    for c in &ca {
        assert_eq!(c.author_role.as_ref().map(|r| r.as_str()), Some("pos"));
        assert!(!c.actor.is_empty());
    }
    let author_of = |v: &Json| {
        ca.iter()
            .find(|c| &c.value == v)
            .and_then(|c| c.author.as_ref())
            .map(|p| p.to_string())
    };
    assert_eq!(author_of(&json!(950)).as_deref(), Some("pos-1"));
    assert_eq!(author_of(&json!(990)).as_deref(), Some("pos-2"));

    // Both stores pick the same winner, and reads return it.
    assert_eq!(ca, cb);
    let winner = ca[0].value.clone();
    assert_eq!(get(&a, "menu", "/items/burger/price"), Some(winner.clone()));
    assert_eq!(get(&b, "menu", "/items/burger/price"), Some(winner));

    // Unconflicted and missing paths.
    assert_eq!(
        a.conflicts(&menu, "/items/burger/name").expect("one").len(),
        1
    );
    assert!(a
        .conflicts(&menu, "/items/salad/price")
        .expect("none")
        .is_empty());
    assert!(a.conflicts(&menu, "").expect("root").is_empty());
    let e = a
        .conflicts(&menu, "/items/burger/name/x")
        .expect_err("below a string");
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");

    // A later write resolves the conflict.
    a.put(&menu, "/items/burger/price", json!(970), D)
        .expect("resolve");
    assert_eq!(
        a.conflicts(&menu, "/items/burger/price")
            .expect("one")
            .len(),
        1
    );
}

// ---- subscriptions ----

#[test]
fn subscriptions_filter_by_document_and_path() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    let stock = doc("stock");
    let mut all = s.subscribe(SubscriptionFilter::all());
    let mut menu_only = s.subscribe(SubscriptionFilter::doc(menu.clone()));
    let mut burger = s.subscribe(SubscriptionFilter::path(
        menu.clone(),
        Pointer::parse("/items/burger").expect("pointer"),
    ));

    s.put(&menu, "/items/burger/price", json!(950), D)
        .expect("put");
    let menu_heads = heads_hex(&s, "menu");
    s.put(&menu, "/items/fries/price", json!(350), D)
        .expect("put");
    s.increment(&stock, "/burger", 5, D).expect("increment");
    s.put(&menu, "/items/burger/name", json!("Burger"), D)
        .expect("put");

    let ev = drain(&mut all);
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev.iter().all(|e| e.origin == Origin::Local));
    assert_eq!(ev[0].doc, menu);
    assert!(
        ev[0].paths.contains(&"/items/burger/price".to_string()),
        "{ev:?}"
    );
    assert_eq!(ev[0].heads, menu_heads);
    assert_eq!(ev[2].doc, stock);
    assert_eq!(ev[2].paths, ["/burger"]);
    assert_eq!(ev[2].heads, heads_hex(&s, "stock"));
    assert_eq!(ev[3].heads, heads_hex(&s, "menu"));

    let ev = drain(&mut menu_only);
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert!(ev.iter().all(|e| e.doc == menu));

    let ev = drain(&mut burger);
    assert_eq!(ev.len(), 2, "fries and stock are filtered out: {ev:?}");
    assert!(
        ev[0].paths.contains(&"/items/burger/price".to_string()),
        "{ev:?}"
    );
    assert_eq!(ev[1].paths, ["/items/burger/name"]);
    for e in &ev {
        assert!(
            e.paths.iter().all(|p| {
                let p = Pointer::parse(p).expect("event paths are pointers");
                p.overlaps(&Pointer::parse("/items/burger").expect("pointer"))
            }),
            "{e:?}"
        );
    }

    // A dropped subscription does not block writes.
    drop(all);
    s.delete(&menu, "/items/burger/name", D).expect("delete");
    let ev = drain(&mut burger);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].paths, ["/items/burger/name"]);
}

#[test]
fn imports_produce_events_with_paths_and_new_heads() {
    let (da, db) = (tempdir(), tempdir());
    let a = open_with(&da, pos("pos-1"));
    let b = open_with(&db, pos("pos-2"));
    let stock = doc("stock");
    let mut sub = b.subscribe(SubscriptionFilter::doc(stock.clone()));
    a.increment(&stock, "/burger", 10, D).expect("increment");
    a.put(&stock, "/fries/available", json!(true), D)
        .expect("put");
    b.import(&stock, &a.export(&stock).expect("export"))
        .expect("import");
    let ev = drain(&mut sub);
    assert_eq!(ev.len(), 1, "one event per import: {ev:?}");
    assert_eq!(ev[0].origin, Origin::Import);
    assert_eq!(ev[0].doc, stock);
    assert!(ev[0].paths.contains(&"/burger".to_string()), "{ev:?}");
    assert!(
        ev[0].paths.iter().any(|p| p.starts_with("/fries")),
        "{ev:?}"
    );
    assert_eq!(ev[0].heads, heads_hex(&b, "stock"));
    assert_eq!(ev[0].heads, heads_hex(&a, "stock"));

    a.increment(&stock, "/burger", -1, D).expect("sell");
    b.import(&stock, &a.export(&stock).expect("export"))
        .expect("import");
    let ev = drain(&mut sub);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].paths, ["/burger"]);
    assert_eq!(ev[0].heads, heads_hex(&a, "stock"));

    // Nothing new, no event.
    b.import(&stock, &a.export(&stock).expect("export"))
        .expect("import");
    assert!(drain(&mut sub).is_empty());
}

#[test]
fn invalid_import_is_a_typed_error_and_changes_nothing() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    s.put(&menu, "/a", json!(1), D).expect("put");
    let heads = s.heads(&menu).expect("heads");
    let e = s
        .import(&menu, b"definitely not automerge")
        .expect_err("garbage import");
    assert!(matches!(e, Error::InvalidImport { .. }), "{e:?}");
    assert_names(&e, "menu", None);
    assert_eq!(s.heads(&menu).expect("heads"), heads);
}

/// Polls a future to completion on this thread (core has no async runtime of its own).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut f = std::pin::pin!(f);
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => return v,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

#[test]
fn subscription_receivers_wait_for_events_from_other_threads() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    let mut sub = s.subscribe(SubscriptionFilter::doc(menu.clone()));
    let writer = s.clone();
    let m = menu.clone();
    let t = std::thread::spawn(move || {
        writer
            .put(&m, "/x", json!(1), Durability::Fast)
            .expect("put from another thread");
        writer
            .put(&m, "/y", json!(2), Durability::Fast)
            .expect("put from another thread");
    });
    let ev = sub.blocking_recv().expect("the store is alive");
    assert_eq!(ev.paths, ["/x"]);
    let ev = block_on(sub.recv()).expect("the store is alive");
    assert_eq!(ev.paths, ["/y"]);
    t.join().expect("writer thread");
    drop(s);
    assert!(
        sub.blocking_recv().is_none(),
        "the stream ends with the store"
    );
}

// ---- compaction ----

fn compacting(threshold: usize) -> StoreOptions {
    StoreOptions {
        compaction_threshold: threshold,
        ..StoreOptions::default()
    }
}

#[test]
fn compaction_keeps_chunks_bounded_and_reopen_reads_the_same() {
    let dir = tempdir();
    let orders = doc("orders");
    let stock = doc("stock");
    let (all, heads, history, stock_all) = {
        let s = open_with(&dir, compacting(8));
        let (mut last_orders, mut last_stock) = (0, 0);
        let (mut orders_compactions, mut stock_compactions) = (0, 0);
        for i in 0..100 {
            s.put(
                &orders,
                &format!("/o{i}"),
                json!({"n": i, "status": "new"}),
                D,
            )
            .expect("put");
            s.increment(&stock, "/burger", 1, D).expect("increment");
            if i % 3 == 0 {
                s.delete(&orders, &format!("/o{}", i / 2), D)
                    .or_else(|e| match e {
                        Error::NotFound { .. } => Ok(()),
                        e => Err(e),
                    })
                    .expect("delete");
            }
            let (o, st) = (
                s.chunk_count(&orders).expect("chunks"),
                s.chunk_count(&stock).expect("chunks"),
            );
            // Compaction waits for the tail to weigh as much as the snapshot, and never
            // lets a document reach 16 times the threshold.
            assert!(o < 8 * 16 && st < 8 * 16, "{o} and {st} chunks");
            if o < last_orders {
                orders_compactions += 1;
            }
            if st < last_stock {
                stock_compactions += 1;
            }
            (last_orders, last_stock) = (o, st);
        }
        // 100 orders and 100 increments: both compacted several times.
        assert!(orders_compactions >= 2, "{orders_compactions}");
        assert!(stock_compactions >= 2, "{stock_compactions}");
        (
            s.get_all(&orders).expect("all"),
            s.heads(&orders).expect("heads"),
            s.history_len(&orders).expect("history"),
            s.get_all(&stock).expect("all"),
        )
    };
    assert_eq!(stock_all, json!({"burger": 100}));
    let s = open_with(&dir, compacting(8));
    assert_eq!(s.get_all(&orders).expect("all"), all);
    assert_eq!(s.heads(&orders).expect("heads"), heads);
    assert_eq!(s.history_len(&orders).expect("history"), history);
    assert_eq!(s.get_all(&stock).expect("all"), stock_all);
    assert!(s.chunk_count(&orders).expect("chunks") < 8 * 16);
    // Writing after reopen continues the sequence of chunks.
    s.put(&orders, "/after", json!(true), D)
        .expect("put after reopen");
    drop(s);
    let s = open_with(&dir, compacting(8));
    assert_eq!(get(&s, "orders", "/after"), Some(json!(true)));
    assert_eq!(s.history_len(&orders).expect("history"), history + 1);
}

#[test]
fn explicit_compact_then_reopen_reads_the_same() {
    let dir = tempdir();
    let menu = doc("menu");
    let (all, heads) = {
        let s = open(&dir);
        for i in 0..20 {
            s.put(&menu, &format!("/items/i{i}/price"), json!(i * 10), D)
                .expect("put");
        }
        assert_eq!(s.chunk_count(&menu).expect("chunks"), 20);
        s.compact(&menu).expect("compact");
        assert_eq!(s.chunk_count(&menu).expect("chunks"), 1);
        s.put(&menu, "/items/i0/price", json!(5), D).expect("put");
        assert_eq!(s.chunk_count(&menu).expect("chunks"), 2);
        s.compact(&menu).expect("compact again");
        s.flush().expect("flush");
        (
            s.get_all(&menu).expect("all"),
            s.heads(&menu).expect("heads"),
        )
    };
    let s = open(&dir);
    assert_eq!(s.chunk_count(&menu).expect("chunks"), 1);
    assert_eq!(s.get_all(&menu).expect("all"), all);
    assert_eq!(s.heads(&menu).expect("heads"), heads);
    assert_eq!(get(&s, "menu", "/items/i0/price"), Some(json!(5)));
    assert_eq!(s.history_len(&menu).expect("history"), 21);
}

#[test]
fn changes_since_and_eviction() {
    let dir = tempdir();
    let s = open(&dir);
    let menu = doc("menu");
    s.put(&menu, "/a", json!(1), D).expect("put");
    let mid = s.heads(&menu).expect("heads");
    s.put(&menu, "/b", json!(2), D).expect("put");
    s.put(&menu, "/c", json!(3), D).expect("put");
    assert_eq!(s.changes_since(&menu, &[]).expect("all").len(), 3);
    assert_eq!(s.changes_since(&menu, &mid).expect("since").len(), 2);
    assert_eq!(s.count_changes_since(&menu, &mid).expect("count"), 2);
    assert!(s.has_all(&menu, &mid).expect("has"));

    assert_eq!(s.loaded_documents(), 1);
    assert_eq!(s.evict_idle(std::time::Duration::ZERO), 1);
    assert_eq!(s.loaded_documents(), 0);
    assert_eq!(get(&s, "menu", ""), Some(json!({"a": 1, "b": 2, "c": 3})));
}

#[test]
fn reopening_right_after_closing_works() {
    // sled releases its file lock from a background thread after the last handle drops;
    // opening must wait for it rather than fail.
    let dir = tempdir();
    let menu = doc("menu");
    for i in 0..30 {
        let s = open(&dir);
        s.put(&menu, &format!("/k{i}"), json!(i), Durability::Durable)
            .expect("put");
        assert_eq!(
            s.get_all(&menu).expect("all").as_object().map(|m| m.len()),
            Some(i + 1)
        );
    }
}

/// Every open of a store is a new Automerge actor of the same device, so a store restored
/// from an old copy never reuses (actor, sequence number) pairs; reads see every session's
/// writes, and conflicts still name the device.
#[test]
fn every_open_is_a_new_actor_of_the_same_device() {
    let dir = tempdir();
    let first = {
        let s = open_with(&dir, pos("pos-1"));
        s.put(&doc("menu"), "/a", json!(1), Durability::Durable)
            .expect("write");
        s.actor().clone()
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let s = open_with(&dir, pos("pos-1"));
    assert_ne!(s.actor(), &first, "a new actor per session");
    s.put(&doc("menu"), "/b", json!(2), Durability::Durable)
        .expect("write");
    assert_eq!(s.get(&doc("menu"), "/a").expect("read"), Some(json!(1)));
    let claim = outpost_core::parse_actor(s.actor()).expect("an outpost actor");
    assert_eq!(claim.peer.as_str(), "pos-1");
}
