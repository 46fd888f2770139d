//! What the engine persists besides documents, behind one small typed interface.
//!
//! Per (peer, document): the part of Automerge's sync state that survives restarts (the
//! heads both sides are known to share) and the progress shown in status (last sync, unsynced
//! since). Per peer: the role it was last seen with. The sled [`Store`] implements it in its
//! `sync` and `meta` trees; another backend implements the same trait. Every write returns
//! its error: the engine surfaces it (an event, a metric) and never reports as synced what
//! did not reach the store.

use std::collections::BTreeMap;

use automerge::sync;

use crate::{DocumentId, PeerId, Result, Role, Store, Timestamp};

/// What the engine persists per (peer, document) for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Progress {
    pub(crate) last_sync: Option<Timestamp>,
    pub(crate) unsynced_since: Option<Timestamp>,
}

/// The engine's persistent bookkeeping.
pub(crate) trait SyncStateStore {
    /// The persisted sync state of (peer, doc), if any.
    fn load_sync_state(&self, peer: &PeerId, doc: &DocumentId) -> Result<Option<sync::State>>;
    /// Persists the part of a sync state that survives restarts.
    fn save_sync_state(&self, peer: &PeerId, doc: &DocumentId, state: &sync::State) -> Result<()>;
    /// Every (peer, doc) with a persisted sync state, with its progress.
    fn load_progress(&self) -> Result<Vec<((PeerId, DocumentId), Progress)>>;
    /// Persists the progress of (peer, doc).
    fn save_progress(&self, peer: &PeerId, doc: &DocumentId, progress: Progress) -> Result<()>;
    /// The roles of the peers seen.
    fn load_roles(&self) -> Result<BTreeMap<PeerId, Role>>;
    /// Persists the roles of the peers seen.
    fn save_roles(&self, roles: &BTreeMap<PeerId, Role>) -> Result<()>;
}

const ROLES_KEY: &str = "engine/roles";
/// Documents each device's changes created here (`EngineConfig::max_new_documents_per_device`).
const CREATED_KEY: &str = "engine/created";

/// Loads how many documents each device's changes created in `store`.
pub(super) fn load_created(store: &Store) -> Result<BTreeMap<PeerId, u64>> {
    match store.meta_get(CREATED_KEY)? {
        Some(b) => postcard::from_bytes(&b).map_err(|e| corrupt("documents per device", e)),
        None => Ok(BTreeMap::new()),
    }
}

/// Persists how many documents each device's changes created.
pub(super) fn save_created(store: &Store, created: &BTreeMap<PeerId, u64>) -> Result<()> {
    let bytes = postcard::to_stdvec(created).map_err(|e| corrupt("documents per device", e))?;
    store.meta_set(CREATED_KEY, Some(&bytes))
}

/// The prefix of progress records in the store's `meta` tree.
pub(crate) const PROGRESS_PREFIX: &str = "progress/";

fn progress_key(peer: &PeerId, doc: &DocumentId) -> String {
    format!("{PROGRESS_PREFIX}{peer}/{doc}")
}

fn corrupt(what: &str, e: postcard::Error) -> crate::Error {
    crate::Error::CorruptStore(format!("{what}: {e}"))
}

impl SyncStateStore for Store {
    fn load_sync_state(&self, peer: &PeerId, doc: &DocumentId) -> Result<Option<sync::State>> {
        Store::load_sync_state(self, peer, doc)
    }

    fn save_sync_state(&self, peer: &PeerId, doc: &DocumentId, state: &sync::State) -> Result<()> {
        Store::save_sync_state(self, peer, doc, state)
    }

    fn load_progress(&self) -> Result<Vec<((PeerId, DocumentId), Progress)>> {
        let mut out = Vec::new();
        for (peer, doc) in self.sync_peers()? {
            let progress = match self.meta_get(&progress_key(&peer, &doc))? {
                // Unreadable bookkeeping is only observability: start it over.
                Some(b) => postcard::from_bytes::<Progress>(&b).unwrap_or_default(),
                None => Progress::default(),
            };
            out.push(((peer, doc), progress));
        }
        Ok(out)
    }

    fn save_progress(&self, peer: &PeerId, doc: &DocumentId, progress: Progress) -> Result<()> {
        let bytes = postcard::to_stdvec(&progress).map_err(|e| corrupt("progress", e))?;
        let key = progress_key(peer, doc);
        self.meta_set(&key, Some(&bytes))?;
        // Another cloud instance that takes the peer over shows the same progress.
        self.mirror_lazy(crate::MirrorTree::Progress, key.as_bytes(), &bytes);
        Ok(())
    }

    fn load_roles(&self) -> Result<BTreeMap<PeerId, Role>> {
        match self.meta_get(ROLES_KEY)? {
            Some(b) => postcard::from_bytes(&b).map_err(|e| corrupt("peer roles", e)),
            None => Ok(BTreeMap::new()),
        }
    }

    fn save_roles(&self, roles: &BTreeMap<PeerId, Role>) -> Result<()> {
        let bytes = postcard::to_stdvec(roles).map_err(|e| corrupt("peer roles", e))?;
        self.meta_set(ROLES_KEY, Some(&bytes))
    }
}
