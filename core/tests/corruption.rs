//! Corrupt bytes on disk: a document whose stored chunks do not decode reads as
//! `Error::CorruptDocument` naming it, other documents still read, and nothing panics.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{doc, tempdir};
use outpost_core::{Durability, Error, StorageEngine, Store, StoreOptions};
use rand::{Rng, SeedableRng};
use serde_json::json;

/// These tests corrupt sled's trees directly: their stores are on sled, whatever the default.
fn sled_options() -> StoreOptions {
    StoreOptions {
        engine: StorageEngine::Sled,
        ..StoreOptions::default()
    }
}

/// Opens the store's sled database directly, waiting for the store's lock to be released.
fn open_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("lock"), "sled open: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("sled open: {e}"),
        }
    }
}

/// A store with a `menu` of several chunks (a snapshot and changes) and a `stock`.
fn populated(path: &Path) {
    let s = Store::open_with(path, sled_options()).expect("open");
    let menu = doc("menu");
    for i in 0..3 {
        s.put(
            &menu,
            &format!("/items/i{i}"),
            json!({"price": i}),
            Durability::Fast,
        )
        .expect("put");
    }
    s.compact(&menu).expect("compact");
    s.put(&menu, "/items/i3", json!({"price": 3}), Durability::Fast)
        .expect("put");
    s.put(&menu, "/items/i4", json!({"price": 4}), Durability::Fast)
        .expect("put");
    s.increment(&doc("stock"), "/burger", 7, Durability::Durable)
        .expect("increment");
}

/// Stored chunks as (key, value), in key order.
type Chunks = Vec<(Vec<u8>, Vec<u8>)>;

/// The chunks of `menu` (sequence number keys), moved back into the layout of earlier
/// versions (a tree `doc/menu`), which the store migrates when it opens: the tests corrupt
/// that tree, and so check the migration and the detection at once.
fn menu_chunks(db: &sled::Db) -> (sled::Tree, Chunks) {
    let all = db.open_tree("chunks").expect("the chunks tree");
    let prefix = b"\x01menu\x00";
    let chunks = all
        .scan_prefix(prefix)
        .map(|kv| {
            let (k, v) = kv.expect("sled reads");
            (k[prefix.len()..].to_vec(), v.to_vec())
        })
        .collect::<Vec<_>>();
    let mut batch = sled::Batch::default();
    batch.remove(&b"\x00menu"[..]);
    for kv in all.scan_prefix(prefix) {
        batch.remove(kv.expect("sled reads").0);
    }
    all.apply_batch(batch).expect("remove");
    let tree = db.open_tree("doc/menu").expect("the menu tree");
    for (k, v) in &chunks {
        tree.insert(k, v.as_slice()).expect("insert");
    }
    assert_eq!(chunks.len(), 3, "a snapshot and two changes");
    (tree, chunks)
}

/// Asserts the store reports `menu` as corrupt everywhere and still serves `stock`.
fn assert_menu_corrupt(s: &Store, what: &str) {
    let menu = doc("menu");
    let check = |r: Result<(), Error>, op: &str| {
        let e = r.expect_err(&format!("{what}: {op} on a corrupt document fails"));
        assert!(
            matches!(&e, Error::CorruptDocument { doc, .. } if doc == &menu),
            "{what}: {op}: {e:?}"
        );
        assert!(e.to_string().contains("document menu"), "{what}: {e}");
    };
    check(s.get(&menu, "/items").map(drop), "get");
    check(s.get(&menu, "").map(drop), "get root");
    check(
        s.put(&menu, "/items/i9", json!(1), Durability::Durable),
        "put",
    );
    check(s.increment(&menu, "/n", 1, Durability::Fast), "increment");
    check(s.heads(&menu).map(drop), "heads");
    check(s.export(&menu).map(drop), "export");
    check(s.conflicts(&menu, "/items").map(drop), "conflicts");
    check(s.compact(&menu), "compact");

    let stock = doc("stock");
    assert_eq!(
        s.get(&stock, "/burger")
            .expect("other documents still read"),
        Some(json!(7)),
        "{what}"
    );
    s.increment(&stock, "/burger", 1, Durability::Fast)
        .expect("other documents still take writes");
    assert_eq!(
        s.get(&stock, "/burger").expect("read"),
        Some(json!(8)),
        "{what}"
    );
    s.put(
        &doc("orders"),
        "/o1",
        json!({"status": "new"}),
        Durability::Fast,
    )
    .expect("new documents can be created");
    let docs = s
        .documents()
        .expect("listing documents does not decode them");
    assert!(docs.contains(&stock), "{what}: {docs:?}");
}

/// Builds a store, applies `corrupt` to the menu's chunks through sled, reopens the store and
/// checks the outcome.
fn corrupt_and_check(what: &str, corrupt: impl FnOnce(&sled::Tree, &[(Vec<u8>, Vec<u8>)])) {
    let dir = tempdir();
    populated(dir.path());
    {
        let db = open_sled(dir.path());
        let (tree, chunks) = menu_chunks(&db);
        corrupt(&tree, &chunks);
        db.flush().expect("flush");
    }
    let s = Store::open_with(dir.path(), sled_options()).expect("open");
    assert_menu_corrupt(&s, what);
}

#[test]
fn garbage_chunk_replacing_the_snapshot() {
    corrupt_and_check("snapshot replaced", |tree, chunks| {
        tree.insert(&chunks[0].0, &b"not an automerge document at all"[..])
            .expect("insert");
    });
}

#[test]
fn garbage_chunk_appended_after_the_changes() {
    corrupt_and_check("garbage appended", |tree, chunks| {
        let last = u64::from_be_bytes(chunks[2].0.as_slice().try_into().expect("8-byte keys"));
        tree.insert((last + 1).to_be_bytes(), vec![0xff; 64])
            .expect("insert");
    });
}

#[test]
fn truncated_chunk() {
    corrupt_and_check("truncated change", |tree, chunks| {
        let (k, v) = &chunks[1];
        tree.insert(k, &v[..v.len() / 2]).expect("insert");
    });
}

#[test]
fn flipped_byte_in_a_chunk() {
    corrupt_and_check("flipped byte", |tree, chunks| {
        let (k, v) = &chunks[0];
        let mut v = v.clone();
        let i = v.len() / 2;
        v[i] ^= 0x5a;
        tree.insert(k, v).expect("insert");
    });
}

#[test]
fn key_of_the_wrong_length() {
    corrupt_and_check("bad key", |tree, chunks| {
        tree.insert(b"abc", chunks[1].1.clone()).expect("insert");
    });
}

#[test]
fn missing_change_in_the_middle() {
    // The last change depends on the one removed: the document cannot be rebuilt.
    corrupt_and_check("missing change", |tree, chunks| {
        tree.remove(&chunks[1].0).expect("remove");
    });
}

#[test]
fn random_corruptions_never_panic() {
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempdir();
    populated(dir.path());
    let pristine: Chunks = {
        let db = open_sled(dir.path());
        menu_chunks(&db).1
    };
    let db = open_sled(dir.path());
    for round in 0..60 {
        // Each round starts over: the previous round quarantined the document (moved it
        // aside and blocked it until a peer sends it again).
        db.open_tree("meta")
            .and_then(|m| m.remove("quarantine/menu"))
            .expect("unblock");
        let tree = db.open_tree("doc/menu").expect("the menu tree");
        tree.clear().expect("clear");
        let mut chunks = pristine.clone();
        // An empty chunk is a lost chunk; losing the last one is indistinguishable from an
        // older state, so only earlier chunks are removed.
        let victim = rng.random_range(0..chunks.len());
        let is_last = victim == chunks.len() - 1;
        let v = &mut chunks[victim].1;
        match rng.random_range(0..5) {
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..v.len());
                    v[i] ^= rng.random_range(1..=255u8);
                }
            }
            1 => v.truncate(rng.random_range(1..v.len())),
            2 => {
                let len = rng.random_range(1..200);
                *v = (0..len).map(|_| rng.random()).collect();
            }
            3 if !is_last => v.clear(),
            _ => {
                let at = rng.random_range(0..=v.len());
                let extra: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                v.splice(at..at, extra);
            }
        }
        for (k, v) in chunks.iter().filter(|(_, v)| !v.is_empty()) {
            tree.insert(k, v.as_slice()).expect("insert");
        }
        // A store over the same database loads the document afresh.
        let s = Store::on_db(db.clone(), "", Default::default()).expect("store over the db");
        match s.get(&doc("menu"), "/items") {
            Err(Error::CorruptDocument { doc: d, reason }) => {
                assert_eq!(d, doc("menu"));
                assert!(
                    !reason.contains("waiting for a peer"),
                    "seed {seed} round {round}: detected, not just blocked: {reason}"
                );
            }
            Ok(v) => panic!("seed {seed} round {round}: corrupt chunk {victim} read as {v:?}"),
            Err(e) => panic!("seed {seed} round {round}: unexpected error {e:?}"),
        }
        assert_eq!(
            s.get(&doc("stock"), "/burger").expect("stock reads"),
            Some(json!(7)),
            "seed {seed} round {round}"
        );
    }
}

#[test]
fn a_store_of_the_earlier_layout_opens_with_nothing_lost() {
    let dir = tempdir();
    populated(dir.path());
    {
        // One sled tree per document, as earlier versions wrote it.
        let db = open_sled(dir.path());
        menu_chunks(&db);
        db.flush().expect("flush");
    }
    let s = Store::open_with(dir.path(), sled_options()).expect("open");
    assert_eq!(
        s.get(&doc("menu"), "/items/i4/price").expect("menu reads"),
        Some(json!(4))
    );
    assert_eq!(
        s.documents().expect("list"),
        vec![doc("menu"), doc("stock")]
    );
    drop(s);
    let db = open_sled(dir.path());
    assert!(
        !db.tree_names().iter().any(|n| n.starts_with(b"doc/")),
        "the old trees are gone"
    );
}
