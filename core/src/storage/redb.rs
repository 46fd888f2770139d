//! The redb engine: one redb table per keyspace, in one file (`outpost.redb`).
//!
//! redb commits are atomic and ordered; a commit with `Durability::Immediate` fsyncs and
//! makes every earlier commit durable too. Writes commit with `Durability::None` (no fsync;
//! a crash loses a suffix of them, never a middle one) and [`Backend::sync`] is an empty
//! `Immediate` commit: durable writers that arrive together share it through the store's
//! group commit (`store/flush.rs`), as with sled. A background thread makes a durable commit
//! every `flush_every_ms` while writes wait (`Durability::Fast`), which also lets redb free
//! the pages of earlier non-durable commits.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redb::{Durability, ReadableTableMetadata, TableDefinition, TableHandle};

use super::{Backend, DatabaseOptions, Engine, Entry, Op, StorageError};

/// The database file inside the data directory.
pub(crate) const FILE: &str = "outpost.redb";

fn def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

fn err(e: impl Into<redb::Error>) -> StorageError {
    StorageError::Redb(Box::new(e.into()))
}

pub(crate) struct RedbBackend {
    db: redb::Database,
    path: PathBuf,
    /// Writes committed without durability since the last durable commit.
    dirty: AtomicBool,
}

impl RedbBackend {
    pub(crate) fn open(dir: &Path, options: &DatabaseOptions) -> crate::Result<Arc<RedbBackend>> {
        let path = dir.join(FILE);
        // The lock of a handle being dropped: `Database::open` retries briefly.
        let db = redb::Builder::new()
            .set_cache_size(usize::try_from(options.cache_capacity).unwrap_or(usize::MAX))
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => crate::Error::InUse {
                    path: dir.display().to_string(),
                },
                e => crate::Error::Storage(err(e)),
            })?;
        super::sled::sync_dir(dir).map_err(StorageError::Io)?;
        let backend = Arc::new(RedbBackend {
            db,
            path,
            dirty: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&backend);
        let every = Duration::from_millis(options.flush_every_ms.max(1));
        std::thread::Builder::new()
            .name("outpost-redb-sync".into())
            .spawn(move || periodic_sync(weak, every))
            .map_err(StorageError::Io)?;
        Ok(backend)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_durability(Durability::None);
        let out = f(&tx)?;
        tx.commit().map_err(err)?;
        self.dirty.store(true, Ordering::Release);
        Ok(out)
    }
}

/// Makes a durable commit every `every` while non-durable commits wait; ends with the
/// database.
fn periodic_sync(db: Weak<RedbBackend>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(db) = db.upgrade() else { return };
        if db.dirty.load(Ordering::Acquire) {
            if let Err(e) = db.sync() {
                tracing::error!(error = %e, "redb: the periodic durable commit failed");
            }
        }
    }
}

impl Drop for RedbBackend {
    fn drop(&mut self) {
        if self.dirty.load(Ordering::Acquire) {
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "redb: the durable commit at close failed");
            }
        }
    }
}

impl Backend for RedbBackend {
    fn engine(&self) -> Engine {
        Engine::Redb
    }

    fn get(&self, ks: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = match tx.open_table(def(ks)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn put(
        &self,
        ks: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.write(|tx| {
            let mut table = tx.open_table(def(ks)).map_err(err)?;
            let old = match value {
                Some(v) => table.insert(key, v).map_err(err)?,
                None => table.remove(key).map_err(err)?,
            };
            Ok(old.map(|v| v.value().to_vec()))
        })
    }

    fn range(
        &self,
        ks: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = match tx.open_table(def(ks)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        // redb panics on a range whose start is after its end; such a range is empty.
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (from, to)
        {
            if a > b || (a == b && !matches!((from, to), (Bound::Included(_), Bound::Included(_))))
            {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::new();
        for kv in table.range::<&[u8]>((from, to)).map_err(err)?.take(limit) {
            let (k, v) = kv.map_err(err)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        self.write(|tx| {
            let mut i = 0;
            while i < ops.len() {
                // Consecutive writes to one keyspace share an open table.
                let name = ops[i].0.clone();
                let mut table = tx.open_table(def(&name)).map_err(err)?;
                while i < ops.len() && ops[i].0 == name {
                    let (_, k, v) = &ops[i];
                    match v {
                        Some(v) => {
                            table.insert(&k[..], &v[..]).map_err(err)?;
                        }
                        None => {
                            table.remove(&k[..]).map_err(err)?;
                        }
                    }
                    i += 1;
                }
            }
            Ok(())
        })
    }

    fn last_in(&self, ks: &str, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StorageError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = match tx.open_table(def(ks)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let last = table.range::<&[u8]>(from..to).map_err(err)?.next_back();
        match last {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv.map_err(err)?;
                Ok(Some((k.value().to_vec(), v.value().to_vec())))
            }
        }
    }

    fn len(&self, ks: &str) -> Result<usize, StorageError> {
        let tx = self.db.begin_read().map_err(err)?;
        match tx.open_table(def(ks)) {
            Ok(t) => Ok(usize::try_from(t.len().map_err(err)?).unwrap_or(usize::MAX)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(err(e)),
        }
    }

    fn keyspaces(&self) -> Result<Vec<String>, StorageError> {
        let tx = self.db.begin_read().map_err(err)?;
        let names = tx
            .list_tables()
            .map_err(err)?
            .map(|t| t.name().to_string())
            .collect();
        Ok(names)
    }

    fn drop_keyspace(&self, ks: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.delete_table(def(ks)).map_err(err)?;
            Ok(())
        })
    }

    fn sync(&self) -> Result<(), StorageError> {
        // Cleared before the commit: a write landing during it sets it again.
        self.dirty.store(false, Ordering::Release);
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_durability(Durability::Immediate);
        tx.commit().map_err(|e| {
            self.dirty.store(true, Ordering::Release);
            err(e)
        })
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(std::fs::metadata(&self.path)?.len())
    }
}
