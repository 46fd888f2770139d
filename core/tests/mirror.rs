//! A store kept as a cache of a durable mirror: what it writes is committed on flush, what a
//! failed commit holds is retried and hides the store's heads from peers meanwhile, and
//! another store takes what the mirror holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use outpost_core::{Durability, Mirror, MirrorBatch, SharedMirror, Store, StoreOptions};

#[derive(Debug, Default)]
struct Recorder {
    batches: Mutex<Vec<MirrorBatch>>,
    failing: AtomicBool,
}

impl Mirror for Recorder {
    fn commit(&self, batch: &MirrorBatch) -> Result<(), String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("database down".into());
        }
        self.batches.lock().expect("lock").push(batch.clone());
        Ok(())
    }
}

fn store(dir: &std::path::Path, mirror: Option<SharedMirror>) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            mirror,
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

#[test]
fn writes_commit_on_flush_and_a_failed_commit_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Arc::new(Recorder::default());
    let a = store(&dir.path().join("a"), Some(rec.clone()));
    let doc = "orders/2026-12-01".parse().expect("doc id");
    a.put(
        &doc,
        "/o1",
        serde_json::json!({"total": 5}),
        Durability::Fast,
    )
    .expect("write");
    assert!(a.mirror_pending());
    a.flush().expect("flush commits");
    assert!(!a.mirror_pending());
    let committed: usize = rec
        .batches
        .lock()
        .expect("lock")
        .iter()
        .map(|b| b.changes.len())
        .sum();
    assert_eq!(committed, 1);

    rec.failing.store(true, Ordering::SeqCst);
    a.put(
        &doc,
        "/o2",
        serde_json::json!({"total": 7}),
        Durability::Fast,
    )
    .expect("write");
    let err = a.flush().expect_err("the mirror is down");
    assert!(
        err.to_string().contains("did not commit 1 changes"),
        "{err}"
    );
    // The heads the engine tells peers are not readable while the mirror lags.
    assert!(a.stored_heads(&doc).is_err());
    assert!(a.mirror_pending());

    rec.failing.store(false, Ordering::SeqCst);
    a.flush().expect("the retry commits");
    let batches = rec.batches.lock().expect("lock").clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].changes.len(), 1);

    // Another store takes everything the mirror holds, and converges.
    let b = store(&dir.path().join("b"), None);
    let mut added = 0;
    for batch in &batches {
        added += b.apply_mirrored(batch).expect("apply");
    }
    assert_eq!(added, 2);
    assert_eq!(b.heads(&doc).expect("heads"), a.heads(&doc).expect("heads"));
    // Applying again adds nothing.
    assert_eq!(b.apply_mirrored(&batches[0]).expect("apply"), 0);
}
