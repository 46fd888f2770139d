//! Storage engines behind the store (see `core/docs/design.md`, "Storage layout").
//!
//! The store needs little from an engine: named keyspaces of ordered byte keys, atomic
//! batches across keyspaces, ordered range scans, a durable commit ([`Database::sync`]) and a
//! size estimate. [`Database`] is that, over one engine per file of this module: `sled`
//! (hardened, see `storage/sled.rs`) and `redb`. Many stores share one database through
//! keyspace names prefixed by a namespace (the cloud keeps every site in one database).
//!
//! Writes ([`Keyspace::insert`], [`Database::apply`]) are ordered and atomic but not durable
//! on return: every engine keeps a prefix of them across a crash, and [`Database::sync`]
//! returns once every write made before it started is on stable storage. The engine also
//! syncs on its own every `flush_every_ms`.

pub(crate) mod redb;
pub(crate) mod sealed;
pub(crate) mod sled;

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::sealed::{rewrap_data_key, KeyError, KeyWrap, SharedKeyWrap, WrappingKey};
pub use self::sled::quarantine_incomplete_snapshots;
use crate::{Error, Result};

/// The storage engine of a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// sled 0.34.7, hardened (incomplete snapshots set aside before opening; durable
    /// flushes followed by an `fdatasync` of its files).
    Sled,
    /// redb: ACID, copy-on-write B-trees, an fsync on every durable commit.
    Redb,
}

impl Engine {
    /// The engine of a new data directory when the options name none: a one-line change.
    pub const DEFAULT: Engine = Engine::Redb;

    /// The engine of new data directories whose options name none (`StoreOptions::default`):
    /// [`Engine::DEFAULT`], or the engine named by the environment variable
    /// `OUTPOST_TEST_ENGINE` (`sled`, `redb`), which CI sets to run every test once per
    /// engine.
    pub fn for_new_directories() -> Engine {
        match std::env::var("OUTPOST_TEST_ENGINE") {
            Ok(name) => name.parse().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "OUTPOST_TEST_ENGINE ignored");
                Engine::DEFAULT
            }),
            Err(_) => Engine::DEFAULT,
        }
    }

    /// The engine whose files `dir` holds, if any.
    pub fn detect(dir: &Path) -> Option<Engine> {
        if dir.join(redb::FILE).exists() {
            Some(Engine::Redb)
        } else if dir.join("conf").exists() || dir.join("db").exists() {
            Some(Engine::Sled)
        } else {
            None
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::DEFAULT
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        })
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Engine> {
        match s {
            "sled" => Ok(Engine::Sled),
            "redb" => Ok(Engine::Redb),
            other => Err(Error::UnknownEngine {
                name: other.to_string(),
            }),
        }
    }
}

/// What an engine reported.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] ::sled::Error),
    /// redb failed.
    #[error("redb: {0}")]
    Redb(#[from] Box<::redb::Error>),
    /// A file of the data directory could not be read, written or synced.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A value of an encrypted store does not open with its data key (see `storage/sealed.rs`).
    #[error("the value of key {key:?} in keyspace {keyspace} does not decrypt with the store's data key: the file was altered or damaged; move the data directory aside and restore a backup or sync again from peers")]
    Tampered {
        /// The keyspace.
        keyspace: String,
        /// The key (lossy text).
        key: String,
    },
}

impl From<::sled::Error> for Error {
    fn from(e: ::sled::Error) -> Error {
        Error::Storage(e.into())
    }
}

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// One write of a batch: keyspace, key, new value (`None`: remove).
pub(crate) type Op = (Arc<str>, Vec<u8>, Option<Vec<u8>>);

/// What an engine provides (one implementation per file of this module).
pub(crate) trait Backend: Send + Sync {
    fn engine(&self) -> Engine;
    fn get(&self, ks: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes `value` (or removes the key); returns the previous value.
    fn put(
        &self,
        ks: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StorageError>;
    /// At most `limit` entries with keys in (`from`, `to`), in key order.
    fn range(
        &self,
        ks: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError>;
    /// Applies every write or none.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StorageError>;
    /// The last entry with a key in [`from`, `to`).
    fn last_in(&self, ks: &str, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StorageError>;
    fn len(&self, ks: &str) -> Result<usize, StorageError>;
    fn keyspaces(&self) -> Result<Vec<String>, StorageError>;
    fn drop_keyspace(&self, ks: &str) -> Result<(), StorageError>;
    /// Returns once every write made before the call is on stable storage.
    fn sync(&self) -> Result<(), StorageError>;
    fn size_on_disk(&self) -> Result<u64, StorageError>;
}

/// How to open a data directory.
#[derive(Clone, Debug)]
pub struct DatabaseOptions {
    /// The platform key of an encrypted store (see `storage/sealed.rs`): a new store given
    /// one is encrypted; an encrypted store refuses to open without it
    /// ([`KeyError::KeyRequired`]) or with another ([`KeyError::WrongKey`]).
    pub key: Option<SharedKeyWrap>,
    /// The engine of a new directory; a directory that holds one engine's files is opened
    /// with that engine.
    pub engine: Engine,
    /// Page cache in bytes.
    pub cache_capacity: u64,
    /// Writes not synced by a caller are made durable within this interval.
    pub flush_every_ms: u64,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            key: None,
            engine: Engine::for_new_directories(),
            cache_capacity: 64 * 1024 * 1024,
            flush_every_ms: 100,
        }
    }
}

/// An open database: the keyspaces of one data directory. Cheap to clone; thread-safe.
#[derive(Clone)]
pub struct Database {
    backend: Arc<dyn Backend>,
    dir: Option<PathBuf>,
    /// The data key, if the store is encrypted.
    key: Option<Arc<sealed::DataKey>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("engine", &self.engine())
            .field("dir", &self.dir)
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

impl Database {
    /// Opens (or creates) the database in `dir`, with the engine whose files it holds, or
    /// `options.engine` for a new directory. Fails if another process holds it.
    /// An encrypted store needs `options.key`; a new store given a key is encrypted.
    pub fn open(dir: impl AsRef<Path>, options: &DatabaseOptions) -> Result<Database> {
        let dir = dir.as_ref();
        let raw = Database::open_unsealed(dir, options)?;
        let path = dir.display().to_string();
        match &options.key {
            None if sealed::is_sealed(raw.backend.as_ref())? => {
                Err(KeyError::KeyRequired { path }.into())
            }
            None => Ok(raw),
            Some(wrap) => {
                let backend = sealed::SealedBackend::open(raw.backend, wrap.as_ref(), &path)?;
                let key = Some(backend.data_key().clone());
                Ok(Database {
                    backend: Arc::new(backend),
                    dir: raw.dir,
                    key,
                })
            }
        }
    }

    /// The engine's keyspaces as stored: an encrypted store's values stay sealed (a
    /// migration copies them as they are: their keyspace and key, which they are bound to,
    /// do not change).
    pub(crate) fn open_unsealed(dir: &Path, options: &DatabaseOptions) -> Result<Database> {
        check_no_unfinished_swap(dir)?;
        crate::storage::private_dir(dir)?;
        let engine = Engine::detect(dir).unwrap_or(options.engine);
        // Both engines release their lock a moment after the last handle is dropped (sled
        // from a background thread, sled issues #1234 and #1289; redb when its periodic sync
        // thread lets go), so reopening a store right after closing it in the same process
        // may briefly find it held: retry for up to 2 s before reporting it in use.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let backend: Arc<dyn Backend> = loop {
            let opened: Result<Arc<dyn Backend>> = match engine {
                Engine::Sled => sled::SledBackend::open(dir, options).map(|b| Arc::new(b) as _),
                Engine::Redb => redb::RedbBackend::open(dir, options).map(|b| b as _),
            };
            match opened {
                Err(crate::Error::InUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        private_files(dir)?;
        Ok(Database {
            backend,
            dir: Some(dir.to_path_buf()),
            key: None,
        })
    }

    /// Whether the store's values are encrypted (see `storage/sealed.rs`).
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// The data key of an encrypted store.
    pub(crate) fn data_key(&self) -> Option<&Arc<sealed::DataKey>> {
        self.key.as_ref()
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.backend.engine()
    }

    /// The data directory, if this database was opened from one (not from a sled handle).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The keyspace `name` (created on first write).
    pub fn keyspace(&self, name: impl AsRef<str>) -> Keyspace {
        Keyspace {
            db: self.clone(),
            name: Arc::from(name.as_ref()),
        }
    }

    /// The names of the keyspaces that hold (or held) data.
    pub fn keyspaces(&self) -> Result<Vec<String>> {
        Ok(self.backend.keyspaces()?)
    }

    /// Removes a keyspace and everything in it.
    pub fn drop_keyspace(&self, name: &str) -> Result<()> {
        Ok(self.backend.drop_keyspace(name)?)
    }

    /// Applies every write of `batch`, across keyspaces, or none.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        Ok(self.backend.apply(batch.ops)?)
    }

    /// Returns once every write made before the call is on stable storage (sled: a flush
    /// and an `fdatasync` of its files; redb: a durable commit).
    pub fn sync(&self) -> Result<()> {
        Ok(self.backend.sync()?)
    }

    /// The size of the database's files (every namespace).
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.backend.size_on_disk()?)
    }
}

impl From<::sled::Db> for Database {
    /// A database over a sled handle opened by the caller: its files are not known, so
    /// [`Database::sync`] is sled's own flush only (no `fdatasync`); prefer
    /// [`Database::open`].
    fn from(db: ::sled::Db) -> Database {
        Database {
            backend: Arc::new(sled::SledBackend::from_db(db)),
            dir: None,
            key: None,
        }
    }
}

/// Writes to apply atomically, across keyspaces.
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// Sets `key` of `ks` to `value`.
    pub fn insert(&mut self, ks: &Keyspace, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops.push((
            ks.name.clone(),
            key.as_ref().to_vec(),
            Some(value.as_ref().to_vec()),
        ));
    }

    /// Removes `key` of `ks`.
    pub fn remove(&mut self, ks: &Keyspace, key: impl AsRef<[u8]>) {
        self.ops
            .push((ks.name.clone(), key.as_ref().to_vec(), None));
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A named set of ordered keys of a [`Database`]. Cheap to clone.
#[derive(Clone)]
pub struct Keyspace {
    db: Database,
    name: Arc<str>,
}

impl Keyspace {
    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.db.backend.get(&self.name, key.as_ref())?)
    }

    /// Whether `key` holds a value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .backend
            .put(&self.name, key.as_ref(), Some(value.as_ref()))?)
    }

    /// Removes `key`; returns the previous value.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.db.backend.put(&self.name, key.as_ref(), None)?)
    }

    /// Sets `key` to `value` (`None`: removes it) without reading the value it replaces:
    /// cheaper than [`Keyspace::insert`] where that is a read of the engine (redb's writes
    /// wait in memory, a read of what they replace does not).
    pub fn set(&self, key: impl AsRef<[u8]>, value: Option<&[u8]>) -> Result<()> {
        let op = (
            self.name.clone(),
            key.as_ref().to_vec(),
            value.map(<[u8]>::to_vec),
        );
        Ok(self.db.backend.apply(vec![op])?)
    }

    /// Applies `batch` (which may write other keyspaces too) atomically.
    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        self.db.apply(batch)
    }

    /// The entry with the greatest key in [`from`, `to`).
    pub fn last_in(&self, from: &[u8], to: &[u8]) -> Result<Option<Entry>> {
        if from >= to {
            return Ok(None);
        }
        Ok(self.db.backend.last_in(&self.name, from, to)?)
    }

    /// Number of keys.
    pub fn len(&self) -> Result<usize> {
        Ok(self.db.backend.len(&self.name)?)
    }

    /// Whether the keyspace holds no key.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self
            .db
            .backend
            .range(&self.name, Bound::Unbounded, Bound::Unbounded, 1)?
            .is_empty())
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        self.range_bounds(Bound::Unbounded, Bound::Unbounded)
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let prefix = prefix.as_ref();
        let end = match prefix_end(prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        self.range_bounds(Bound::Included(prefix.to_vec()), end)
    }

    /// The entries with keys from `from` (included), in key order.
    pub fn range_from(&self, from: impl AsRef<[u8]>) -> Iter {
        self.range_bounds(Bound::Included(from.as_ref().to_vec()), Bound::Unbounded)
    }

    /// The entries with keys in (`from`, `to`), in key order.
    pub fn range_bounds(&self, from: Bound<Vec<u8>>, to: Bound<Vec<u8>>) -> Iter {
        Iter {
            ks: self.clone(),
            next: from,
            end: to,
            buf: VecDeque::new(),
            done: false,
        }
    }
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Entries of a keyspace in key order, read a page at a time (no read transaction stays
/// open between pages; a page is a consistent read).
pub struct Iter {
    ks: Keyspace,
    next: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    buf: VecDeque<Entry>,
    done: bool,
}

const PAGE: usize = 512;

impl Iter {
    /// The keys only.
    pub fn keys(self) -> impl Iterator<Item = Result<Vec<u8>>> {
        self.map(|kv| kv.map(|(k, _)| k))
    }
}

impl Iterator for Iter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.buf.is_empty() && !self.done {
            let page = self.ks.db.backend.range(
                &self.ks.name,
                bound_ref(&self.next),
                bound_ref(&self.end),
                PAGE,
            );
            match page {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
                Ok(page) => {
                    if page.len() < PAGE {
                        self.done = true;
                    }
                    if let Some((k, _)) = page.last() {
                        self.next = Bound::Excluded(k.clone());
                    }
                    self.buf.extend(page);
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v),
        Bound::Excluded(v) => Bound::Excluded(v),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Creates `dir` if needed, readable by its owner only (0700): every order of a site is in
/// it. An existing directory with wider permissions is narrowed.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::StoreFiles {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
    }
    Ok(())
}

/// Narrows the files under `dir` to their owner (0600, directories 0700). Engines create
/// files with the process's umask; this runs after each open, so files created since the
/// last open are narrowed then (and the directory's own 0700 already keeps others out).
pub(crate) fn private_files(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let io = |p: &Path, e: std::io::Error| Error::StoreFiles {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(dir, e))?;
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            // The restore marker's change time is its identity (`store/ticket.rs`): it is
            // created 0600 and holds no data; changing the mode of an older one would make
            // the store believe it was restored from a copy.
            if entry.file_name() == crate::store::MARKER_FILE {
                continue;
            }
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            if meta.permissions().mode() & 0o777 != want {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))
                    .map_err(|e| io(&path, e))?;
            }
            if meta.is_dir() {
                private_files(&path)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What [`migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// The engine the store was on.
    pub from: Engine,
    /// The engine it is on now.
    pub to: Engine,
    /// Keyspaces copied (every namespace: a cloud's sites too).
    pub keyspaces: usize,
    /// Entries copied and compared.
    pub entries: u64,
    /// Documents (markers of every `chunks` keyspace), whose chunks, and so heads, are equal
    /// before and after.
    pub documents: u64,
    /// Where the old engine's files were kept (delete them once the store works).
    pub old_files: Option<PathBuf>,
}

/// The folder inside a data directory where a migration builds the new engine's files.
const STAGING: &str = ".migrate-to";
/// Written in the staging folder once the copy is complete, synced and verified.
const COMPLETE: &str = "COMPLETE";
/// The keyspace of the staging database that records the keyspaces fully copied.
const PROGRESS: &str = "__outpost_migration";

fn migration_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Migration {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The files of `engine` in a data directory.
fn engine_files(dir: &Path, engine: Engine) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = match engine {
            Engine::Sled => {
                matches!(name, "conf" | "db" | "blobs")
                    || (name.starts_with("snap.") && !name.ends_with(".generating"))
            }
            Engine::Redb => name == redb::FILE,
        };
        if ours {
            out.push(dir.join(name));
        }
    }
    Ok(out)
}

/// Refuses to open a directory whose migration stopped while its files were being swapped.
fn check_no_unfinished_swap(dir: &Path) -> Result<()> {
    if dir.join(STAGING).join(COMPLETE).exists() {
        return Err(migration_error(
            dir,
            "a migration stopped while it swapped the engines' files; run `outpost migrate` \
             (or `outpost-cloud migrate`) with the same --to again to finish it",
        ));
    }
    Ok(())
}

/// Moves the store (or the cloud database) in `path` to the engine `to`: copies every
/// keyspace into a new database in `path/.migrate-to/`, syncs it, compares every entry, then
/// swaps the files (the old ones are kept in `path/.old-<engine>-<time>/`). Resumable: a run that
/// stopped (a crash, a power cut) is finished by running it again. Refuses a store that is
/// open (its engine's lock).
pub fn migrate(path: &Path, to: Engine) -> Result<MigrationReport> {
    let staging = path.join(STAGING);
    let io = |e: std::io::Error| migration_error(path, e);
    if !staging.join(COMPLETE).exists() {
        let Some(from) = Engine::detect(path) else {
            return Err(migration_error(
                path,
                "no store in this directory; check the path",
            ));
        };
        if from == to {
            return Ok(MigrationReport {
                from,
                to,
                keyspaces: 0,
                entries: 0,
                documents: 0,
                old_files: None,
            });
        }
        // A staging folder of the other direction (an earlier run for another target) is
        // of no use.
        if staging.exists() && Engine::detect(&staging) != Some(to) {
            std::fs::remove_dir_all(&staging).map_err(io)?;
        }
        let options = DatabaseOptions {
            engine: to,
            ..DatabaseOptions::default()
        };
        // Sealed values are copied as they are, with the header that holds their key.
        let source = Database::open_unsealed(path, &DatabaseOptions::default())?;
        let target = match Database::open_unsealed(&staging, &options) {
            Ok(db) => db,
            Err(e @ Error::InUse { .. }) => return Err(e),
            // A copy killed while its engine created its files may not open; nothing in it
            // was verified (no `COMPLETE`) and the source is untouched: start it again.
            Err(e) => {
                tracing::warn!(error = %e, "the unfinished copy does not open: starting it again");
                std::fs::remove_dir_all(&staging).map_err(io)?;
                Database::open_unsealed(&staging, &options)?
            }
        };
        let report = copy_and_verify(path, &source, &target, from, to)?;
        target.drop_keyspace(PROGRESS)?;
        target.sync()?;
        drop(target);
        drop(source);
        let marker = staging.join(COMPLETE);
        // The old files' folder is named once, here: a rerun of the swap uses the same.
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let old = format!(".old-{from}-{secs}");
        std::fs::write(&marker, format!("{from} {to} {old}\n")).map_err(io)?;
        std::fs::File::open(&marker)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        sled::sync_dir(&staging).map_err(io)?;
        let old_files = swap(path, from, to, &old)?;
        return Ok(MigrationReport {
            old_files: Some(old_files),
            ..report
        });
    }
    // A copy verified earlier: finish the swap.
    let text = std::fs::read_to_string(staging.join(COMPLETE)).map_err(io)?;
    let mut words = text.split_whitespace();
    let from: Engine = words.next().unwrap_or_default().parse()?;
    let planned: Engine = words.next().unwrap_or_default().parse()?;
    let old = words.next().unwrap_or_default().to_string();
    if planned != to || !old.starts_with(".old-") {
        return Err(migration_error(
            path,
            format!(
                "an unfinished migration to {planned} is in this directory; run it with \
                 --to {planned} first"
            ),
        ));
    }
    let old_files = swap(path, from, to, &old)?;
    let db = Database::open_unsealed(path, &DatabaseOptions::default())?;
    let keyspaces: Vec<String> = db
        .keyspaces()?
        .into_iter()
        .filter(|n| n != PROGRESS)
        .collect();
    let mut entries = 0;
    let mut documents = 0;
    for name in &keyspaces {
        for kv in db.keyspace(name).iter() {
            let (k, _) = kv?;
            entries += 1;
            if name.ends_with("chunks") && k.first() == Some(&0) {
                documents += 1;
            }
        }
    }
    Ok(MigrationReport {
        from,
        to,
        keyspaces: keyspaces.len(),
        entries,
        documents,
        old_files: Some(old_files),
    })
}

fn copy_and_verify(
    path: &Path,
    source: &Database,
    target: &Database,
    from: Engine,
    to: Engine,
) -> Result<MigrationReport> {
    let progress = target.keyspace(PROGRESS);
    // The progress of an earlier migration of this directory is not data.
    let mut names: Vec<String> = source
        .keyspaces()?
        .into_iter()
        .filter(|n| n != PROGRESS)
        .collect();
    names.sort();
    let (mut entries, mut documents) = (0u64, 0u64);
    for name in &names {
        let src = source.keyspace(name);
        let dst = target.keyspace(name);
        if !progress.contains_key(name)? {
            // Inserts are idempotent: a keyspace half copied by a run that stopped is
            // copied again over itself.
            let mut batch = Batch::default();
            let mut n = 0;
            for kv in src.iter() {
                let (k, v) = kv?;
                batch.insert(&dst, k, v);
                n += 1;
                if n % 1024 == 0 {
                    target.apply(std::mem::take(&mut batch))?;
                }
            }
            batch.insert(&progress, name, []);
            target.apply(batch)?;
            target.sync()?;
        }
        // Every entry compared, in order: the copy is the source, byte for byte.
        let mut a = src.iter();
        let mut b = dst.iter();
        loop {
            match (a.next().transpose()?, b.next().transpose()?) {
                (None, None) => break,
                (Some(x), Some(y)) if x == y => {
                    entries += 1;
                    if name.ends_with("chunks") && x.0.first() == Some(&0) {
                        documents += 1;
                    }
                }
                (x, y) => {
                    return Err(migration_error(
                        path,
                        format!(
                            "keyspace {name}: the copy differs (source {:?}, copy {:?})",
                            x.map(|e| e.0),
                            y.map(|e| e.0)
                        ),
                    ))
                }
            }
        }
    }
    Ok(MigrationReport {
        from,
        to,
        keyspaces: names.len(),
        entries,
        documents,
        old_files: None,
    })
}

/// Moves the old engine's files into `old` and the new ones in; every step is a
/// rename, and a run that stopped anywhere is finished by the next.
fn swap(path: &Path, from: Engine, to: Engine, old: &str) -> Result<PathBuf> {
    let io = |e: std::io::Error| migration_error(path, e);
    let staging = path.join(STAGING);
    let old = path.join(old);
    std::fs::create_dir_all(&old).map_err(io)?;
    for f in engine_files(path, from).map_err(io)? {
        let Some(name) = f.file_name() else { continue };
        std::fs::rename(&f, old.join(name)).map_err(io)?;
    }
    for f in engine_files(&staging, to).map_err(io)? {
        let Some(name) = f.file_name() else { continue };
        std::fs::rename(&f, path.join(name)).map_err(io)?;
    }
    sled::sync_dir(path).map_err(io)?;
    std::fs::remove_dir_all(&staging).map_err(io)?;
    sled::sync_dir(path).map_err(io)?;
    tracing::info!(dir = %path.display(), %from, %to, old = %old.display(),
        "the store moved to another storage engine; the old files are kept");
    Ok(old)
}
