//! The cloud on PostgreSQL (`--store postgres://...`): several instances share one database.
//!
//! Each instance keeps the sites its devices use in a sled working copy (`<data>/pg-cache`,
//! emptied at every start: it is only a cache) and makes PostgreSQL the truth:
//!
//! - a site's store has a [`Mirror`] that commits what the store writes to the database;
//!   the engine flushes the store before it tells a device "I have it", so an ack means the
//!   transaction committed, and a store whose commit fails tells no device its heads;
//! - a site loads from the database when its first device connects on this instance;
//! - every commit notifies the site on a channel; the instances that hold the site fetch
//!   what they lack and write it to their copy, announced like an import, so the site's
//!   runner offers it to the devices connected there at once. No instance needs another.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use outpost_core::{
    ChangeHash, DocumentId, Mirror, MirrorBatch, MirrorTree, MirroredChange, MirroredEntry,
    SharedMirror, SiteId, Store,
};
use outpost_pgstore::{Batch, ChangeRow, EntryRow, Fetched, PgStore};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often every site held here is compared with the database, notified or not.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The database and the sites this instance holds.
pub(crate) struct PgSites {
    db: PgStore,
    sites: Mutex<HashMap<SiteId, Arc<SiteSync>>>,
    /// How far each site unloaded here had caught up (its cache stays on disk).
    unloaded: Mutex<HashMap<SiteId, i64>>,
    _listener: outpost_pgstore::Listener,
}

/// A site held by this instance: its store, and the last commit number it took in.
struct SiteSync {
    site: SiteId,
    store: Store,
    upto: Mutex<i64>,
}

/// Keeps a site registered for notifications while its task runs.
pub(crate) struct Registration {
    sites: Arc<PgSites>,
    site: SiteId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.sites.sites).remove(&self.site) {
            let upto = *lock(&s.upto);
            lock(&self.sites.unloaded).insert(self.site.clone(), upto);
        }
    }
}

impl Registration {
    /// Replaces the document's changes in the database by the compacted copy held here,
    /// covering every commit this copy took in. Blocks.
    pub(crate) fn compact(&self, store: &Store, doc: &DocumentId) -> Result<(), String> {
        let Some(sync) = lock(&self.sites.sites).get(&self.site).cloned() else {
            return Ok(());
        };
        // Held while the snapshot is taken and written: no catch-up moves `upto` meanwhile,
        // so the snapshot holds every change of the document committed up to it.
        let upto = lock(&sync.upto);
        if *upto == 0 {
            return Ok(());
        }
        let saved = store.export(doc).map_err(|e| e.to_string())?;
        self.sites
            .db
            .compact(self.site.as_str(), &doc.to_string(), &saved, *upto)
            .map_err(|e| e.to_string())
    }
}

impl PgSites {
    /// Connects (and migrates) the database, and starts listening.
    pub(crate) fn open(url: &str) -> Result<Arc<PgSites>, outpost_pgstore::PgError> {
        let db = PgStore::open(url)?;
        let (wake, woken) = std::sync::mpsc::channel::<Option<String>>();
        let listener = db.listen(move |site| {
            let _ = wake.send(site);
        });
        let sites = Arc::new(PgSites {
            db,
            sites: Mutex::new(HashMap::new()),
            unloaded: Mutex::new(HashMap::new()),
            _listener: listener,
        });
        let weak = Arc::downgrade(&sites);
        std::thread::Builder::new()
            .name("outpost-pg-catchup".into())
            .spawn(move || catch_up_loop(weak, woken))
            .map_err(|e| outpost_pgstore::PgError::Pool(e.to_string()))?;
        Ok(sites)
    }

    /// The mirror of `site`'s store.
    pub(crate) fn mirror(self: &Arc<Self>, site: &SiteId) -> SharedMirror {
        Arc::new(SiteMirror {
            sites: std::panic::AssertUnwindSafe(self.clone()),
            site: site.clone(),
        })
    }

    /// Registers the site's store and brings it up to date with the database; from then on
    /// notifications keep it current. Blocks.
    pub(crate) fn load(
        self: &Arc<Self>,
        site: &SiteId,
        store: &Store,
    ) -> Result<Registration, String> {
        let upto = lock(&self.unloaded).remove(site).unwrap_or(0);
        let sync = Arc::new(SiteSync {
            site: site.clone(),
            store: store.clone(),
            upto: Mutex::new(upto),
        });
        lock(&self.sites).insert(site.clone(), sync.clone());
        let registration = Registration {
            sites: self.clone(),
            site: site.clone(),
        };
        let added = self.catch_up(&sync)?;
        tracing::debug!(added, "site loaded from PostgreSQL");
        Ok(registration)
    }

    /// Takes in what the database holds for the site beyond what this copy has seen.
    fn catch_up(&self, sync: &SiteSync) -> Result<usize, String> {
        let mut upto = lock(&sync.upto);
        let fetched = self
            .db
            .fetch(sync.site.as_str(), *upto)
            .map_err(|e| e.to_string())?;
        if fetched.upto <= *upto {
            return Ok(0);
        }
        let added = sync
            .store
            .apply_mirrored(&to_batch(&fetched))
            .map_err(|e| e.to_string())?;
        *upto = fetched.upto;
        Ok(added)
    }
}

fn catch_up_loop(
    sites: std::sync::Weak<PgSites>,
    woken: std::sync::mpsc::Receiver<Option<String>>,
) {
    loop {
        // A safety net beside notifications: every site held here is looked at now and then.
        let first = match woken.recv_timeout(RECHECK) {
            Ok(site) => site,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Notifications that arrived together are taken in together: one fetch per site.
        let mut all = first.is_none();
        let mut names: HashSet<String> = first.into_iter().collect();
        while let Ok(next) = woken.try_recv() {
            match next {
                Some(n) => {
                    names.insert(n);
                }
                None => all = true,
            }
        }
        let Some(sites) = sites.upgrade() else { return };
        let held: Vec<Arc<SiteSync>> = lock(&sites.sites)
            .values()
            .filter(|s| all || names.contains(s.site.as_str()))
            .cloned()
            .collect();
        for s in held {
            let span = tracing::debug_span!("site", site = %s.site);
            let _enter = span.enter();
            match sites.catch_up(&s) {
                Ok(0) => {}
                Ok(added) => tracing::debug!(added, "changes from other instances taken in"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take in changes from PostgreSQL; retrying on the next notification")
                }
            }
        }
    }
}

fn to_batch(f: &Fetched) -> MirrorBatch {
    let mut changes = Vec::with_capacity(f.snapshots.len() + f.changes.len());
    for (doc, bytes) in &f.snapshots {
        if let Ok(doc) = doc.parse::<DocumentId>() {
            changes.push(MirroredChange {
                doc,
                hash: ChangeHash([0; 32]),
                bytes: bytes.clone(),
            });
        }
    }
    for c in &f.changes {
        let (Ok(doc), Ok(hash)) = (
            c.doc.parse::<DocumentId>(),
            <[u8; 32]>::try_from(&c.hash[..]),
        ) else {
            tracing::warn!(doc = %c.doc, "a change row with an invalid document id or hash is ignored");
            continue;
        };
        changes.push(MirroredChange {
            doc,
            hash: ChangeHash(hash),
            bytes: c.bytes.clone(),
        });
    }
    let entries = f
        .entries
        .iter()
        .filter_map(|e| {
            Some(MirroredEntry {
                tree: MirrorTree::from_code(e.tree)?,
                key: e.key.clone(),
                value: e.value.clone(),
            })
        })
        .collect();
    MirrorBatch { changes, entries }
}

/// Commits a site's writes to the database.
struct SiteMirror {
    /// A panic while committing leaves the queue as it was (the batch goes back on error
    /// only; a panic loses nothing that was acknowledged, since nothing was).
    sites: std::panic::AssertUnwindSafe<Arc<PgSites>>,
    site: SiteId,
}

impl std::fmt::Debug for SiteMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteMirror")
            .field("site", &self.site)
            .finish()
    }
}

impl Mirror for SiteMirror {
    fn commit(&self, batch: &MirrorBatch) -> Result<(), String> {
        let rows = Batch {
            changes: batch
                .changes
                .iter()
                .map(|c| ChangeRow {
                    doc: c.doc.to_string(),
                    hash: c.hash.0.to_vec(),
                    bytes: c.bytes.clone(),
                })
                .collect(),
            entries: batch
                .entries
                .iter()
                .map(|e| EntryRow {
                    tree: e.tree.code(),
                    key: e.key.clone(),
                    value: e.value.clone(),
                })
                .collect(),
        };
        let seq = self
            .sites
            .db
            .commit(self.site.as_str(), &rows)
            .map_err(|e| e.to_string())?;
        // Our own commit, right after everything this copy took in: nothing to fetch for it.
        if let Some(s) = lock(&self.sites.sites).get(&self.site).cloned() {
            if let Ok(mut upto) = s.upto.try_lock() {
                if *upto == seq - 1 {
                    *upto = seq;
                }
            }
        }
        Ok(())
    }
}

/// Runs blocking database work from a site's task: off the worker's queue where the
/// runtime allows it (the binary's multi-thread runtime), in place otherwise.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
