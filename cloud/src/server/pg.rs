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
//!   runner offers it to the devices connected there at once. No instance needs another;
//! - the fleet documents (one store for every site, see `fleet.rs`) are mirrored the same
//!   way under the key [`FLEET_KEY`], held by every instance from its start; so are the
//!   revocations signed by the fleet CA: one learnt by any instance is refused by all;
//! - the sync state and progress per (device, document) go to the database too (with the
//!   next commit of changes, or within [`RECHECK`]): a device that reconnects to another
//!   instance resumes where it left off instead of from the beginning.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use outpost_core::{
    ChangeHash, DocumentId, Mirror, MirrorBatch, MirrorTree, MirroredChange, MirroredEntry,
    SharedMirror, Store,
};
use outpost_pgstore::{Batch, ChangeRow, EntryRow, Fetched, PgStore};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often every site held here is compared with the database, notified or not.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The key of the fleet documents and fleet-wide records in the database, where a site's
/// id goes otherwise (no site id has a `/`).
pub(crate) const FLEET_KEY: &str = super::fleet::FLEET_NAMESPACE;

/// The entry tree of revocations signed by the fleet CA, under [`FLEET_KEY`] (above the
/// codes of [`MirrorTree`], which a store's own entries use).
const REVOCATIONS_TREE: i16 = 16;

/// What an instance does with a revocation another instance committed.
type OnRevocation = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The database and the sites this instance holds.
pub(crate) struct PgSites {
    db: PgStore,
    /// By key in the database: a site's id, or [`FLEET_KEY`].
    sites: Mutex<HashMap<String, Arc<SiteSync>>>,
    /// How far each site unloaded here had caught up (its cache stays on disk).
    unloaded: Mutex<HashMap<String, i64>>,
    on_revocation: std::sync::OnceLock<OnRevocation>,
    _listener: outpost_pgstore::Listener,
}

/// A site (or the fleet) held by this instance: its store, and the last commit number it
/// took in.
struct SiteSync {
    site: String,
    store: Store,
    upto: Mutex<i64>,
}

/// Keeps a site registered for notifications while its task runs.
pub(crate) struct Registration {
    sites: Arc<PgSites>,
    site: String,
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
            .compact(&self.site, &doc.to_string(), &saved, *upto)
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
            on_revocation: std::sync::OnceLock::new(),
            _listener: listener,
        });
        let weak = Arc::downgrade(&sites);
        std::thread::Builder::new()
            .name("outpost-pg-catchup".into())
            .spawn(move || catch_up_loop(weak, woken))
            .map_err(|e| outpost_pgstore::PgError::Pool(e.to_string()))?;
        Ok(sites)
    }

    /// The mirror of the store of `site` (a site's id, or [`FLEET_KEY`]).
    pub(crate) fn mirror(self: &Arc<Self>, site: &str) -> SharedMirror {
        Arc::new(SiteMirror {
            sites: std::panic::AssertUnwindSafe(self.clone()),
            site: site.to_string(),
        })
    }

    /// What to do with each revocation another instance commits (and with those in the
    /// database when the fleet loads): set once, before the fleet is loaded.
    pub(crate) fn on_revocation(&self, f: impl Fn(&[u8]) + Send + Sync + 'static) {
        let _ = self.on_revocation.set(Box::new(f));
    }

    /// Commits a revocation signed by the fleet CA (`record`, under its `id`) for every
    /// instance: they refuse the device from then on. Blocks.
    pub(crate) fn publish_revocation(&self, id: &[u8], record: &[u8]) -> Result<(), String> {
        let batch = Batch {
            changes: Vec::new(),
            entries: vec![EntryRow {
                tree: REVOCATIONS_TREE,
                key: id.to_vec(),
                value: record.to_vec(),
            }],
        };
        self.db
            .commit(FLEET_KEY, &batch)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The sites the database holds (not the fleet's key), whichever instance their devices
    /// use: an instance answers the API for all of them, loading each on demand. Blocks.
    pub(crate) fn sites(&self) -> Result<Vec<String>, String> {
        let mut sites = self.db.sites().map_err(|e| e.to_string())?;
        sites.retain(|s| s != FLEET_KEY);
        Ok(sites)
    }

    /// Deletes `doc` of `site` from the database (after the site erased it: its erasure list
    /// tells the other instances and every device). Blocks.
    pub(crate) fn erase(&self, site: &str, doc: &DocumentId) -> Result<u64, String> {
        self.db
            .erase(site, &doc.to_string())
            .map_err(|e| e.to_string())
    }

    /// Registers the store of `site` (a site's id, or [`FLEET_KEY`]) and brings it up to
    /// date with the database; from then on notifications keep it current. Blocks.
    pub(crate) fn load(
        self: &Arc<Self>,
        site: &str,
        store: &Store,
    ) -> Result<Registration, String> {
        let upto = lock(&self.unloaded).remove(site).unwrap_or(0);
        let sync = Arc::new(SiteSync {
            site: site.to_string(),
            store: store.clone(),
            upto: Mutex::new(upto),
        });
        lock(&self.sites).insert(site.to_string(), sync.clone());
        let registration = Registration {
            sites: self.clone(),
            site: site.to_string(),
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
            .fetch(&sync.site, *upto)
            .map_err(|e| e.to_string())?;
        if fetched.upto <= *upto {
            return Ok(0);
        }
        if let Some(learn) = self.on_revocation.get() {
            for e in fetched
                .entries
                .iter()
                .filter(|e| e.tree == REVOCATIONS_TREE)
            {
                learn(&e.value);
            }
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
    let mut last_pass = std::time::Instant::now();
    loop {
        // A safety net beside notifications: every site held here is looked at now and then,
        // however busy the channel is.
        let wait = RECHECK.saturating_sub(last_pass.elapsed());
        let first = match woken.recv_timeout(wait) {
            Ok(site) => site,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let periodic = last_pass.elapsed() >= RECHECK;
        if periodic {
            last_pass = std::time::Instant::now();
        }
        // Notifications that arrived together are taken in together: one fetch per site.
        let mut all = first.is_none() || periodic;
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
            .filter(|s| all || names.contains(&s.site))
            .cloned()
            .collect();
        for s in held {
            let span = tracing::debug_span!("site", site = %s.site);
            let _enter = span.enter();
            // The sync bookkeeping of the site's devices (lazy: it rides along with changes)
            // reaches the database within RECHECK, for an instance that takes a device over.
            if periodic {
                if let Err(e) = s.store.commit_mirror() {
                    tracing::warn!(error = %e, "cannot commit sync states to PostgreSQL; retrying");
                }
            }
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
    site: String,
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
            .commit(&self.site, &rows)
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
