//! The sled engine, hardened for sled 0.34.7's two known ways of losing or bricking data
//! (see `core/docs/design.md`, "Durability"):
//!
//! - **An empty `snap.*.generating` file bricks the store.** sled writes a snapshot while it
//!   opens; a kill at that moment can leave an empty `snap.<lsn>.generating`, which 0.34.7
//!   takes for the newest snapshot, and every later open fails with `Corruption { at: None }`
//!   (sled #1527, #1533; fixed on sled's main branch, in no 0.34 release). Before every open,
//!   such files are moved into `generating-quarantine/` inside the data directory (never
//!   deleted, no other snapshot touched): sled then recovers from its log and last complete
//!   snapshot.
//! - **`Db::flush` is not a power-loss flush.** 0.34.7 writes its log with `sync_file_range`,
//!   which does not flush the disk's write cache nor the file's metadata; only a background
//!   thread calls `sync_all`, every 500 ms (sled #1351, #1452), and blob files (values too
//!   large for the log) are never synced. [`FileSync::sync`] follows a flush with an
//!   `fdatasync` of the log file, of every new blob file and of the directories that gained
//!   entries.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sled::Transactional;

use super::{Backend, DatabaseOptions, Engine, Entry, Op, StorageError};

/// sled behind [`Backend`]: one sled tree per keyspace.
pub(crate) struct SledBackend {
    db: sled::Db,
    trees: RwLock<HashMap<Arc<str>, sled::Tree>>,
    /// `None`: a handle opened by the caller, whose files are not known.
    files: Option<FileSync>,
}

impl SledBackend {
    /// Opens the sled database in `dir`, after setting aside incomplete snapshots.
    pub(crate) fn open(dir: &Path, options: &DatabaseOptions) -> crate::Result<SledBackend> {
        quarantine_incomplete_snapshots(dir).map_err(StorageError::Io)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(Some(options.flush_every_ms));
        // The lock of a handle being dropped: `Database::open` retries briefly.
        let db = match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(crate::Error::InUse {
                    path: dir.display().to_string(),
                })
            }
            Err(sled::Error::Corruption { .. }) if dir.join("conf").exists() => {
                reopen_without_conf(&config, dir)?
            }
            other => other.map_err(StorageError::Sled)?,
        };
        let backend = SledBackend {
            db,
            trees: RwLock::new(HashMap::new()),
            files: Some(FileSync::new(dir)),
        };
        // sled created its files while opening: their directory entries must survive, and
        // so must `conf`, which sled writes once, at creation, and never syncs.
        if let Ok(conf) = File::open(dir.join("conf")) {
            conf.sync_all().map_err(StorageError::Io)?;
        }
        backend.sync()?;
        Ok(backend)
    }

    pub(crate) fn from_db(db: sled::Db) -> SledBackend {
        SledBackend {
            db,
            trees: RwLock::new(HashMap::new()),
            files: None,
        }
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        if let Some(t) = self
            .trees
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(t.clone());
        }
        let t = self.db.open_tree(name)?;
        self.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::from(name), t.clone());
        Ok(t)
    }
}

impl Backend for SledBackend {
    fn engine(&self) -> Engine {
        Engine::Sled
    }

    fn get(&self, ks: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree(ks)?.get(key)?.map(|v| v.to_vec()))
    }

    fn put(
        &self,
        ks: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let t = self.tree(ks)?;
        let old = match value {
            Some(v) => t.insert(key, v)?,
            None => t.remove(key)?,
        };
        Ok(old.map(|v| v.to_vec()))
    }

    fn range(
        &self,
        ks: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let t = self.tree(ks)?;
        let mut out = Vec::new();
        for kv in t.range::<&[u8], _>((from, to)).take(limit) {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let mut names: Vec<Arc<str>> = ops.iter().map(|(ks, _, _)| ks.clone()).collect();
        names.sort();
        names.dedup();
        if let [only] = &names[..] {
            let mut batch = sled::Batch::default();
            for (_, k, v) in ops {
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            return Ok(self.tree(only)?.apply_batch(batch)?);
        }
        // Across trees: one sled transaction (atomic in sled's log).
        let trees: Vec<sled::Tree> = names
            .iter()
            .map(|n| self.tree(n))
            .collect::<Result<_, _>>()?;
        let mut batches: Vec<sled::Batch> = names.iter().map(|_| sled::Batch::default()).collect();
        for (ks, k, v) in ops {
            let i = names.binary_search(&ks).unwrap_or(0);
            match v {
                Some(v) => batches[i].insert(k, v),
                None => batches[i].remove(k),
            }
        }
        trees[..]
            .transaction(|txs| {
                for (tx, batch) in txs.iter().zip(&batches) {
                    tx.apply_batch(batch)?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StorageError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StorageError::Sled(sled::Error::Unsupported("aborted batch".into()))
                }
            })
    }

    fn last_in(&self, ks: &str, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StorageError> {
        match self.tree(ks)?.range(from..to).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn len(&self, ks: &str) -> Result<usize, StorageError> {
        Ok(self.tree(ks)?.len())
    }

    fn keyspaces(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| String::from_utf8(n.to_vec()).ok())
            // sled's default tree is not a keyspace of ours.
            .filter(|n| n != "__sled__default")
            .collect())
    }

    fn drop_keyspace(&self, ks: &str) -> Result<(), StorageError> {
        self.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ks);
        self.db.drop_tree(ks)?;
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        if let Some(f) = &self.files {
            f.sync()?;
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// sled 0.34.7 writes `conf` (its segment size, compression and version, with a CRC) once,
/// when it creates a database, and never syncs it: a power cut soon after creation can leave
/// it torn, and every later open fails with `Corruption`. It holds no data, only the
/// parameters this engine always opens with, so a failed open is retried once with the file
/// moved into `generating-quarantine/` (sled then writes it again); if that open fails too,
/// the file is put back and the first error stands.
fn reopen_without_conf(config: &sled::Config, dir: &Path) -> crate::Result<sled::Db> {
    let conf = dir.join("conf");
    let aside = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&aside).map_err(StorageError::Io)?;
    let to = free_name(&aside, "conf");
    std::fs::rename(&conf, &to).map_err(StorageError::Io)?;
    match config.open() {
        Ok(db) => {
            tracing::warn!(
                file = %conf.display(),
                to = %to.display(),
                "sled's configuration file was torn (a power cut right after the store was \
                 created): it was moved aside and written again"
            );
            sync_dir(dir).map_err(StorageError::Io)?;
            sync_dir(&aside).map_err(StorageError::Io)?;
            Ok(db)
        }
        Err(e) => {
            std::fs::rename(&to, &conf).map_err(StorageError::Io)?;
            Err(StorageError::Sled(e).into())
        }
    }
}

/// `dir/name`, or `dir/name.1`, `dir/name.2`, ... if taken: nothing set aside is overwritten.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let mut to = dir.join(name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    to
}

/// The folder (inside the data directory) where incomplete snapshots are moved.
pub(crate) const QUARANTINE_DIR: &str = "generating-quarantine";

/// Moves every `snap.*.generating` file of `dir` into `dir/generating-quarantine/` and logs
/// it; returns the files moved (their new paths). A directory that does not exist yet has
/// none.
pub fn quarantine_incomplete_snapshots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut moved = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if !(text.starts_with("snap.") && text.ends_with(".generating")) {
            continue;
        }
        let aside = dir.join(QUARANTINE_DIR);
        std::fs::create_dir_all(&aside)?;
        // A name already taken (the same LSN quarantined by an earlier open) gets a suffix:
        // nothing already set aside is overwritten.
        let to = free_name(&aside, text);
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::rename(entry.path(), &to)?;
        tracing::warn!(
            file = %entry.path().display(),
            bytes = len,
            to = %to.display(),
            "an incomplete sled snapshot (left by a crash while opening) was moved aside: \
             sled recovers from its log and its last complete snapshot"
        );
        moved.push(to);
    }
    if !moved.is_empty() {
        sync_dir(dir)?;
        sync_dir(&dir.join(QUARANTINE_DIR))?;
    }
    Ok(moved)
}

/// fsyncs a directory, so that the entries created or renamed in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Makes what sled flushed reach stable storage: an `fdatasync` of its log file (`db`), of
/// the blob files written since the last sync, and of the directories that gained entries.
pub(crate) struct FileSync {
    dir: PathBuf,
    state: Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    /// The log file, opened once.
    log: Option<File>,
    /// Blob files already synced (blobs are written once, never modified).
    blobs: HashSet<OsString>,
    /// The data directory itself was synced since the store opened (sled created its
    /// files in it while opening).
    dir_synced: bool,
}

impl FileSync {
    pub(crate) fn new(dir: &Path) -> FileSync {
        FileSync {
            dir: dir.to_path_buf(),
            state: Mutex::new(SyncState::default()),
        }
    }

    /// Call after `Db::flush` returned: everything it wrote is then on stable storage.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.log.is_none() {
            st.log = Some(File::open(self.dir.join("db"))?);
        }
        if let Some(log) = &st.log {
            log.sync_data()?;
        }
        let blob_dir = self.dir.join("blobs");
        match std::fs::read_dir(&blob_dir) {
            Ok(entries) => {
                let mut present = HashSet::new();
                let mut new = false;
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    if !st.blobs.contains(&name) {
                        // A blob deleted between the listing and here is garbage already.
                        match File::open(entry.path()) {
                            Ok(f) => f.sync_data()?,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        }
                        new = true;
                    }
                    present.insert(name);
                }
                if new {
                    sync_dir(&blob_dir)?;
                }
                st.blobs = present;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !st.dir_synced {
            sync_dir(&self.dir)?;
            st.dir_synced = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generating_snapshots_are_moved_and_none_is_overwritten() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let p = dir.path();
        std::fs::write(p.join("snap.00000000000000AA"), b"complete").expect("write");
        std::fs::write(p.join("snap.00000000000000BB.generating"), b"").expect("write");
        std::fs::write(p.join("db"), b"log").expect("write");
        let moved = quarantine_incomplete_snapshots(p).expect("quarantine");
        assert_eq!(moved.len(), 1);
        assert!(
            p.join("snap.00000000000000AA").exists(),
            "a complete snapshot stays"
        );
        assert!(p.join("db").exists());
        assert!(!p.join("snap.00000000000000BB.generating").exists());
        // The same name again: kept beside the first, not over it.
        std::fs::write(p.join("snap.00000000000000BB.generating"), b"x").expect("write");
        let again = quarantine_incomplete_snapshots(p).expect("quarantine");
        assert_eq!(again.len(), 1);
        let aside: Vec<_> = std::fs::read_dir(p.join(QUARANTINE_DIR))
            .expect("the quarantine folder")
            .collect();
        assert_eq!(aside.len(), 2, "both incomplete snapshots are kept");
    }

    #[test]
    fn a_torn_configuration_file_is_set_aside_and_the_data_kept() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let p = dir.path().join("store");
        let options = DatabaseOptions::default();
        {
            let backend = SledBackend::open(&p, &options).expect("a new store");
            backend
                .db
                .insert(b"order", b"K1-001".as_slice())
                .expect("a write");
            backend.sync().expect("durable");
        }
        // What a power cut right after creation can leave: the size written, not the bytes.
        let len = std::fs::metadata(p.join("conf")).expect("conf").len();
        std::fs::write(p.join("conf"), vec![0u8; len as usize]).expect("tear conf");
        let backend = SledBackend::open(&p, &options).expect("opens again");
        assert_eq!(
            backend.db.get(b"order").expect("read").as_deref(),
            Some(b"K1-001".as_slice()),
            "the data survives"
        );
        assert!(
            p.join(QUARANTINE_DIR).join("conf").exists(),
            "the torn file is kept aside"
        );
    }
}
