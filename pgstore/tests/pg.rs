//! The PostgreSQL store against a real, throwaway PostgreSQL cluster.

use std::sync::mpsc;
use std::time::Duration;

use outpost_pgstore::{Batch, ChangeRow, EntryRow, PgStore};
use outpost_testbins::PgCluster;

fn change(doc: &str, n: u8) -> ChangeRow {
    ChangeRow {
        doc: doc.into(),
        hash: vec![n; 32],
        bytes: vec![n; 10],
    }
}

#[test]
fn content_addressed_commits_numbered_per_site_notified_and_compacted() {
    let pg = PgCluster::start();
    let url = pg.create_database("outpost");
    // Two instances start together: the schema is migrated once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| PgStore::open(&url).expect("open a"));
        let b = s.spawn(|| PgStore::open(&url).expect("open b"));
        (a.join().expect("a"), b.join().expect("b"))
    });
    let (tx, notified) = mpsc::channel();
    let _listener = b.listen(move |site| {
        let _ = tx.send(site);
    });
    // The listener says it (re)connected before any site.
    assert_eq!(
        notified
            .recv_timeout(Duration::from_secs(10))
            .expect("connected"),
        None
    );

    let one = Batch {
        changes: vec![change("orders/d1", 1), change("orders/d1", 2)],
        entries: vec![EntryRow {
            tree: 1,
            key: b"k".to_vec(),
            value: b"v1".to_vec(),
        }],
    };
    let s1 = a.commit("site-a", &one).expect("commit");
    // The same changes from the other instance: no new rows, a new commit number.
    let s2 = b.commit("site-a", &one).expect("commit again");
    assert!(s2 > s1);
    assert_eq!(
        notified
            .recv_timeout(Duration::from_secs(10))
            .expect("notified"),
        Some("site-a".to_string())
    );
    assert_eq!(pg.psql_on("outpost", "SELECT count(*) FROM changes"), "2");
    // Another site is numbered on its own.
    assert_eq!(
        b.commit(
            "site-b",
            &Batch {
                changes: vec![change("x/1", 9)],
                entries: vec![]
            }
        )
        .expect("b"),
        1
    );

    let all = b.fetch("site-a", 0).expect("fetch");
    assert_eq!(all.upto, s2);
    assert_eq!(all.changes.len(), 2);
    assert_eq!(all.entries, one.entries);
    let later = Batch {
        changes: vec![change("orders/d1", 3)],
        entries: vec![
            EntryRow {
                tree: 1,
                key: b"k".to_vec(),
                value: b"v2".to_vec(),
            },
            EntryRow {
                tree: 1,
                key: b"k".to_vec(),
                value: b"v3".to_vec(),
            },
        ],
    };
    let s3 = a.commit("site-a", &later).expect("commit later");
    let tail = b.fetch("site-a", all.upto).expect("fetch tail");
    assert_eq!(tail.upto, s3);
    assert_eq!(tail.changes, later.changes);
    assert_eq!(tail.entries.len(), 1, "the last write of a key wins");
    assert_eq!(tail.entries[0].value, b"v3");

    // Compaction up to s2: the first two changes go, a reader that lagged finds the
    // snapshot, one that did not finds nothing new but the snapshot.
    a.compact("site-a", "orders/d1", b"saved", s2)
        .expect("compact");
    assert_eq!(
        pg.psql_on(
            "outpost",
            "SELECT count(*) FROM changes WHERE site = 'site-a'"
        ),
        "1"
    );
    let lagging = b.fetch("site-a", 0).expect("fetch");
    assert_eq!(
        lagging.snapshots,
        vec![("orders/d1".to_string(), b"saved".to_vec())]
    );
    assert_eq!(lagging.changes, later.changes);
    // An older compaction never replaces a newer one.
    a.compact("site-a", "orders/d1", b"older", s1)
        .expect("compact older");
    assert_eq!(
        b.fetch("site-a", 0).expect("fetch").snapshots[0].1,
        b"saved"
    );

    // The database goes away: commits fail with a message saying what to check, and work
    // again once it is back.
    let mut pg = pg;
    pg.stop();
    let err = a.commit("site-a", &later).expect_err("database down");
    assert!(
        err.to_string().contains("check that the database is up"),
        "{err}"
    );
    pg.start_server();
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(s) = a.commit("site-a", &later) {
            ok = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ok.is_some_and(|s| s > s3),
        "commits resume once the database is back"
    );
}

/// Issue 27, hole 9 (failed before: an erasure deleted the rows it found, and nothing stopped
/// another instance, which had not heard of it yet, from committing the document's changes or
/// a compaction snapshot right after): instance `a` erases a day; instance `b` then commits a
/// device's change of that day and compacts it; neither leaves a row. Other documents and
/// other sites are untouched, and the erasure runs again harmlessly.
#[test]
fn an_erased_document_gets_no_rows_back_from_another_instance() {
    let pg = PgCluster::start();
    let url = pg.create_database("outpost");
    let a = PgStore::open(&url).expect("open a");
    let b = PgStore::open(&url).expect("open b");
    let rows = |site: &str, doc: &str| -> u64 {
        pg.psql_on(
            "outpost",
            &format!(
                "SELECT (SELECT count(*) FROM changes WHERE site = '{site}' AND doc = '{doc}') \
                 + (SELECT count(*) FROM snapshots WHERE site = '{site}' AND doc = '{doc}')"
            ),
        )
        .trim()
        .parse()
        .expect("a count")
    };
    let batch = |changes: Vec<ChangeRow>| Batch {
        changes,
        entries: vec![],
    };
    b.commit(
        "paris",
        &batch(vec![change("orders/d1", 1), change("orders/d2", 2)]),
    )
    .expect("commit");
    b.commit("lyon", &batch(vec![change("orders/d1", 3)]))
        .expect("commit");
    assert_eq!(rows("paris", "orders/d1"), 1);

    let deleted = a.erase("paris", "orders/d1").expect("erase");
    println!("the erasure deleted {deleted} rows");
    assert_eq!(deleted, 1);

    // b had not heard of it: a device's late change of the day, then a compaction of it.
    let seq = b
        .commit(
            "paris",
            &batch(vec![change("orders/d1", 4), change("orders/d2", 5)]),
        )
        .expect("a commit of an erased document still commits the rest");
    b.compact("paris", "orders/d1", b"saved", seq)
        .expect("a compaction of an erased document is a no-op");
    let left = rows("paris", "orders/d1");
    println!("rows of the erased day after b's commit and compaction: {left}");
    assert_eq!(left, 0, "another instance brought the erased day back");
    assert_eq!(rows("paris", "orders/d2"), 2, "the other day is kept");
    assert_eq!(
        rows("lyon", "orders/d1"),
        1,
        "the same day of another site is kept"
    );
    let fetched = a.fetch("paris", 0).expect("fetch");
    assert!(
        fetched.changes.iter().all(|c| c.doc != "orders/d1") && fetched.snapshots.is_empty(),
        "a reader finds nothing of the erased day"
    );
    assert_eq!(a.erase("paris", "orders/d1").expect("erase again"), 0);
}
