//! The redb engine: one redb table per keyspace, in one file (`outpost.redb`), with group
//! commit.
//!
//! A redb write transaction costs a commit (page writes, checksums, the allocator's
//! bookkeeping) whatever it holds, and a durable commit an `fsync` on top; committing every
//! write on its own made a bulk load of 100,000 documents take minutes. So writes do not go
//! to redb one by one: [`Backend::put`] and [`Backend::apply`] put them into an in-memory
//! **overlay** (per keyspace, an ordered map of new values and removals) under one short
//! lock, and a **commit** moves everything the overlay holds into redb in one write
//! transaction:
//!
//! - [`Backend::sync`] (a durable write's acknowledgement) commits with
//!   `Durability::Immediate` (one `fsync`) everything written before it, unless a commit
//!   that already covers it finished. Commits take turns (one lock): writers that ask while
//!   one runs keep writing into the overlay meanwhile, and the next commit covers them all,
//!   so N durable writers arriving together pay two `fsync`s, not N.
//! - A background thread makes a durable commit every `flush_every_ms` while writes wait
//!   (`Durability::Fast`), and a writer that finds more than [`COMMIT_BYTES`] waiting commits
//!   them (without `fsync`), which bounds the overlay's memory.
//!
//! Reads see the overlay over redb, newest first: a write is visible to every read the moment
//! it returns (read-your-writes), committed or not. A read takes the overlay's lock while it
//! begins its redb read transaction and copies what it needs of the overlay, and a commit
//! leaves the overlay only after redb made it visible: a read is one consistent state, never
//! half of a batch. A commit takes a whole number of writes (the overlay as it was at one
//! instant), so a crash keeps a prefix of the writes, and an acknowledged durable write is
//! in a commit that `fsync`ed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redb::{Durability, ReadableTableMetadata, TableDefinition, TableHandle};

use super::{Backend, DatabaseOptions, Engine, Entry, Op, StorageError};

/// The database file inside the data directory.
pub(crate) const FILE: &str = "outpost.redb";

/// Bytes of writes waiting in the overlay past which a writer commits them (without
/// `fsync`): bounds the overlay's memory during bulk writes (a 100,000-document import)
/// between two periodic commits.
pub(crate) const COMMIT_BYTES: usize = 8 * 1024 * 1024;

/// What a key's bookkeeping costs in the overlay besides its bytes (map node, vectors).
const ENTRY_OVERHEAD: usize = 64;

fn def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

fn err(e: impl Into<redb::Error>) -> StorageError {
    StorageError::Redb(Box::new(e.into()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Both states are updated whole under their lock (a panic cannot leave half an update
    // behind: no code that can panic runs between the fields' updates).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes not in redb yet, by keyspace; `None`: a removal.
type Level = HashMap<Arc<str>, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// What the overlay holds of one key: the new value, or `None` for a removal.
type Pending = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct Overlay {
    /// Writes made since the last commit began.
    active: Level,
    /// Their size, roughly (keys, values, [`ENTRY_OVERHEAD`] each).
    active_bytes: usize,
    /// Writes a commit took and redb does not show yet (the commit runs, or failed and the
    /// next retries them), oldest first.
    frozen: Vec<Arc<Level>>,
    /// Number of writes made (`put`, `apply`, `drop_keyspace` calls) since the database
    /// opened.
    written: u64,
}

impl Overlay {
    /// The levels, newest first.
    fn levels(&self) -> impl Iterator<Item = &Level> {
        std::iter::once(&self.active).chain(self.frozen.iter().rev().map(|l| &**l))
    }

    /// What the overlay holds of `key` (`Some(None)`: removed), newest first.
    fn lookup(&self, ks: &str, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.levels().find_map(|l| l.get(ks)?.get(key))
    }

    fn write(&mut self, ks: &Arc<str>, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.active_bytes += key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        match self.active.get_mut(ks) {
            Some(map) => {
                map.insert(key, value);
            }
            None => {
                self.active
                    .entry(ks.clone())
                    .or_default()
                    .insert(key, value);
            }
        }
    }

    /// The overlay's keys of `ks` in (`from`, `to`), in order, each with its newest value,
    /// until `limit` of them hold a value (`usize::MAX`: all). Also returns the last key
    /// taken when the limit stopped it: a range read needs nothing of redb past it.
    fn range(
        &self,
        ks: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> (Vec<Pending>, Option<Vec<u8>>) {
        let mut its: Vec<_> = self
            .levels()
            .filter_map(|l| l.get(ks))
            .map(|m| m.range::<[u8], _>((from, to)).peekable())
            .collect();
        let mut out = Vec::new();
        let mut live = 0;
        loop {
            // The smallest next key among the levels; the newest level's value wins.
            let mut min: Option<&Vec<u8>> = None;
            for it in its.iter_mut() {
                if let Some((k, _)) = it.peek() {
                    if min.is_none_or(|m| *k < m) {
                        min = Some(k);
                    }
                }
            }
            let Some(min) = min.cloned() else {
                return (out, None);
            };
            let mut value = None;
            for it in its.iter_mut() {
                if it.peek().is_some_and(|(k, _)| **k == min) {
                    if let Some((_, v)) = it.next() {
                        value.get_or_insert_with(|| v.clone());
                    }
                }
            }
            let value = value.flatten();
            if value.is_some() {
                live += 1;
            }
            out.push((min.clone(), value));
            if live >= limit {
                return (out, Some(min));
            }
        }
    }
}

/// Commits made so far.
#[derive(Default)]
struct Commits {
    /// Every write up to this number ([`Overlay::written`]) is in redb.
    committed: u64,
    /// Every write up to this number is in a commit that was `fsync`ed.
    durable: u64,
    /// Commits made (durable or not), for tests and figures.
    made: u64,
}

pub(crate) struct RedbBackend {
    db: redb::Database,
    path: PathBuf,
    overlay: Mutex<Overlay>,
    /// Held by the commit that runs: commits take turns, and a durable writer waiting here
    /// finds its write covered by the commit it waited for, or runs the next one.
    commits: Mutex<Commits>,
}

/// Whether the range (`from`, `to`) holds no key (`BTreeMap` and redb panic on a range whose
/// start is after its end).
fn empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
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
            overlay: Mutex::new(Overlay::default()),
            commits: Mutex::new(Commits::default()),
        });
        let weak = Arc::downgrade(&backend);
        let every = Duration::from_millis(options.flush_every_ms.max(1));
        std::thread::Builder::new()
            .name("outpost-redb-sync".into())
            .spawn(move || periodic_sync(weak, every))
            .map_err(StorageError::Io)?;
        Ok(backend)
    }

    /// Commits everything the overlay holds, in one redb write transaction; then `drop`, if
    /// given, deletes that keyspace in the same transaction.
    fn commit(
        &self,
        c: &mut Commits,
        durability: Durability,
        drop: Option<&str>,
    ) -> Result<(), StorageError> {
        let (levels, upto) = {
            let mut o = lock(&self.overlay);
            if !o.active.is_empty() {
                let level = std::mem::take(&mut o.active);
                o.active_bytes = 0;
                o.frozen.push(Arc::new(level));
            }
            (o.frozen.clone(), o.written)
        };
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_durability(durability);
        // Oldest first: a key written in two levels ends with the newest value.
        for level in &levels {
            for (ks, writes) in level.iter() {
                let mut table = tx.open_table(def(ks)).map_err(err)?;
                for (k, v) in writes {
                    match v {
                        Some(v) => {
                            table.insert(&k[..], &v[..]).map_err(err)?;
                        }
                        None => {
                            table.remove(&k[..]).map_err(err)?;
                        }
                    }
                }
            }
        }
        if let Some(ks) = drop {
            tx.delete_table(def(ks)).map_err(err)?;
        }
        // On failure the levels stay in the overlay (reads still see them) and the next
        // commit retries them.
        tx.commit().map_err(err)?;
        // redb shows them now: they leave the overlay (only commits, under `commits`, add
        // or remove frozen levels, so these are its first ones).
        lock(&self.overlay).frozen.drain(..levels.len());
        c.committed = upto;
        c.made += 1;
        if !matches!(durability, Durability::None) {
            c.durable = upto;
        }
        Ok(())
    }

    /// Counts a write; a writer that finds too much waiting commits it.
    fn wrote(&self, mut o: MutexGuard<'_, Overlay>) -> Result<(), StorageError> {
        o.written += 1;
        let over = o.active_bytes > COMMIT_BYTES;
        drop(o);
        if over {
            let mut c = lock(&self.commits);
            // Another writer may have committed them while this one waited.
            if lock(&self.overlay).active_bytes > COMMIT_BYTES {
                self.commit(&mut c, Durability::None, None)?;
            }
        }
        Ok(())
    }

    /// Whether a write is not durable yet.
    fn dirty(&self) -> bool {
        let written = lock(&self.overlay).written;
        lock(&self.commits).durable < written
    }
}

/// Makes a durable commit every `every` while writes wait; ends with the database.
fn periodic_sync(db: Weak<RedbBackend>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(db) = db.upgrade() else { return };
        if db.dirty() {
            if let Err(e) = db.sync() {
                tracing::error!(error = %e, "redb: the periodic durable commit failed");
            }
        }
    }
}

impl Drop for RedbBackend {
    fn drop(&mut self) {
        if self.dirty() {
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "redb: the durable commit at close failed");
            }
        }
    }
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The table of keyspace `ks` as `tx` sees it (`None`: it holds nothing yet).
fn read_table(tx: &redb::ReadTransaction, ks: &str) -> Result<Option<ReadTable>, StorageError> {
    match tx.open_table(def(ks)) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(err(e)),
    }
}

impl Backend for RedbBackend {
    fn engine(&self) -> Engine {
        Engine::Redb
    }

    fn get(&self, ks: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = {
            let o = lock(&self.overlay);
            if let Some(v) = o.lookup(ks, key) {
                return Ok(v.clone());
            }
            // Begun under the lock: the key is not in the overlay, so redb as of now holds
            // its newest value.
            self.db.begin_read().map_err(err)?
        };
        let Some(table) = read_table(&tx, ks)? else {
            return Ok(None);
        };
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn put(
        &self,
        ks: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let ks: Arc<str> = Arc::from(ks);
        let mut o = lock(&self.overlay);
        let old = match o.lookup(&ks, key) {
            Some(v) => Ok(v.clone()),
            // The value this write replaces is redb's as of now: read after the lock is
            // let go, from a read transaction begun before the write enters the overlay.
            None => Err(self.db.begin_read().map_err(err)?),
        };
        o.write(&ks, key.to_vec(), value.map(<[u8]>::to_vec));
        self.wrote(o)?;
        match old {
            Ok(v) => Ok(v),
            Err(tx) => match read_table(&tx, &ks)? {
                None => Ok(None),
                Some(t) => Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec())),
            },
        }
    }

    fn range(
        &self,
        ks: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        if empty_range(from, to) || limit == 0 {
            return Ok(Vec::new());
        }
        let (tx, pending, cutoff) = {
            let o = lock(&self.overlay);
            let (pending, cutoff) = o.range(ks, from, to, limit);
            (self.db.begin_read().map_err(err)?, pending, cutoff)
        };
        let table = read_table(&tx, ks)?;
        let mut stored = match &table {
            Some(t) => Some(t.range::<&[u8]>((from, to)).map_err(err)?),
            None => None,
        };
        let mut next_stored = || -> Result<Option<Entry>, StorageError> {
            match stored.as_mut().and_then(Iterator::next) {
                None => Ok(None),
                Some(kv) => {
                    let (k, v) = kv.map_err(err)?;
                    Ok(Some((k.value().to_vec(), v.value().to_vec())))
                }
            }
        };
        // Merged in key order; the overlay's value (or removal) wins over redb's.
        let mut out = Vec::new();
        let mut pending = pending.into_iter().peekable();
        let mut s = next_stored()?;
        while out.len() < limit {
            match (pending.peek(), &s) {
                (None, None) => break,
                (Some((pk, _)), Some((sk, _))) if sk < pk => {
                    out.extend(s.take());
                    s = next_stored()?;
                }
                (Some((pk, _)), stored) => {
                    if stored.as_ref().is_some_and(|(sk, _)| sk == pk) {
                        s = next_stored()?;
                    }
                    if let Some((k, Some(v))) = pending.next() {
                        out.push((k, v));
                    }
                }
                (None, Some((sk, _))) => {
                    // Past the overlay's cutoff, `limit` entries were already taken.
                    if cutoff.as_ref().is_some_and(|c| sk > c) {
                        break;
                    }
                    out.extend(s.take());
                    s = next_stored()?;
                }
            }
        }
        Ok(out)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let mut o = lock(&self.overlay);
        for (ks, k, v) in ops {
            o.write(&ks, k, v);
        }
        self.wrote(o)
    }

    fn last_in(&self, ks: &str, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StorageError> {
        let (from, to) = (Bound::Included(from), Bound::Excluded(to));
        if empty_range(from, to) {
            return Ok(None);
        }
        let (tx, pending) = {
            let o = lock(&self.overlay);
            let (pending, _) = o.range(ks, from, to, usize::MAX);
            (self.db.begin_read().map_err(err)?, pending)
        };
        let newest_pending = pending
            .iter()
            .rev()
            .find_map(|(k, v)| Some((k.clone(), v.clone()?)));
        let Some(table) = read_table(&tx, ks)? else {
            return Ok(newest_pending);
        };
        for kv in table.range::<&[u8]>((from, to)).map_err(err)?.rev() {
            let (k, v) = kv.map_err(err)?;
            let k = k.value();
            if newest_pending.as_ref().is_some_and(|(pk, _)| &pk[..] >= k) {
                break;
            }
            // A key removed in the overlay is not there; one written there is at most the
            // newest pending key, handled above.
            if pending.binary_search_by(|(pk, _)| pk[..].cmp(k)).is_err() {
                return Ok(Some((k.to_vec(), v.value().to_vec())));
            }
        }
        Ok(newest_pending)
    }

    fn len(&self, ks: &str) -> Result<usize, StorageError> {
        let (tx, pending) = {
            let o = lock(&self.overlay);
            let (pending, _) = o.range(ks, Bound::Unbounded, Bound::Unbounded, usize::MAX);
            (self.db.begin_read().map_err(err)?, pending)
        };
        let Some(table) = read_table(&tx, ks)? else {
            return Ok(pending.iter().filter(|(_, v)| v.is_some()).count());
        };
        let mut n = table.len().map_err(err)?;
        for (k, v) in &pending {
            match (v.is_some(), table.get(&k[..]).map_err(err)?.is_some()) {
                (true, false) => n += 1,
                (false, true) => n -= 1,
                _ => {}
            }
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn keyspaces(&self) -> Result<Vec<String>, StorageError> {
        let (tx, mut names) = {
            let o = lock(&self.overlay);
            let names: BTreeSet<String> = o
                .levels()
                .flat_map(|l| l.keys().map(|k| k.to_string()))
                .collect();
            (self.db.begin_read().map_err(err)?, names)
        };
        names.extend(tx.list_tables().map_err(err)?.map(|t| t.name().to_string()));
        Ok(names.into_iter().collect())
    }

    fn drop_keyspace(&self, ks: &str) -> Result<(), StorageError> {
        let mut c = lock(&self.commits);
        {
            // Writes to it made before the drop are dropped with it; the drop itself is a
            // write that a later durable commit covers.
            let mut o = lock(&self.overlay);
            o.active.remove(ks);
            o.written += 1;
        }
        self.commit(&mut c, Durability::None, Some(ks))
    }

    fn sync(&self) -> Result<(), StorageError> {
        let target = lock(&self.overlay).written;
        let mut c = lock(&self.commits);
        // A commit that ran while this one waited may have covered it: group commit.
        if c.durable >= target {
            return Ok(());
        }
        self.commit(&mut c, Durability::Immediate, None)
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn open(dir: &Path) -> Arc<RedbBackend> {
        let options = DatabaseOptions {
            key: None,
            engine: Engine::Redb,
            cache_capacity: 1024 * 1024,
            // The test commits when it wants to, not the background thread.
            flush_every_ms: 3_600_000,
        };
        RedbBackend::open(dir, &options).expect("redb opens")
    }

    /// Every read (get, pages of ranges, last_in, len) answers as a plain ordered map given
    /// the same writes, whatever of them is committed (durably or not), frozen or pending.
    #[test]
    fn reads_merge_the_overlay_over_redb_like_one_ordered_map() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = open(dir.path());
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let key = |rng: &mut rand::rngs::StdRng| {
            vec![rng.random_range(0u8..4), rng.random_range(0u8..40)]
        };
        let ks: Arc<str> = Arc::from("t");
        let (mut commits, mut checks) = (0, 0);
        for step in 0..3_000 {
            match rng.random_range(0..10) {
                0..=3 => {
                    let k = key(&mut rng);
                    let v = vec![rng.random::<u8>(); rng.random_range(0..4)];
                    let old = db.put(&ks, &k, Some(&v)).expect("put");
                    assert_eq!(old, model.insert(k, v), "step {step}: put's old value");
                }
                4 => {
                    let k = key(&mut rng);
                    let old = db.put(&ks, &k, None).expect("remove");
                    assert_eq!(old, model.remove(&k), "step {step}: remove's old value");
                }
                5 => {
                    let mut ops = Vec::new();
                    for _ in 0..rng.random_range(1..6) {
                        let k = key(&mut rng);
                        if rng.random_bool(0.3) {
                            model.remove(&k);
                            ops.push((ks.clone(), k, None));
                        } else {
                            model.insert(k.clone(), vec![9]);
                            ops.push((ks.clone(), k, Some(vec![9])));
                        }
                    }
                    db.apply(ops).expect("apply");
                }
                6 => {
                    let mut c = lock(&db.commits);
                    let durability = if rng.random_bool(0.5) {
                        Durability::None
                    } else {
                        Durability::Immediate
                    };
                    // Sometimes a commit taken but not finished: its level stays frozen
                    // under newer writes, as while a commit runs.
                    if rng.random_bool(0.3) {
                        let mut o = lock(&db.overlay);
                        let level = std::mem::take(&mut o.active);
                        o.frozen.push(Arc::new(level));
                    } else {
                        db.commit(&mut c, durability, None).expect("commit");
                        commits += 1;
                    }
                }
                _ => {
                    checks += 1;
                    let k = key(&mut rng);
                    assert_eq!(db.get(&ks, &k).expect("get"), model.get(&k).cloned());
                    let (a, b) = (key(&mut rng), key(&mut rng));
                    let (a, b) = (a.clone().min(b.clone()), a.max(b));
                    let limit = rng.random_range(1..8);
                    let bounds = [
                        (Bound::Included(&a[..]), Bound::Excluded(&b[..])),
                        (Bound::Excluded(&a[..]), Bound::Included(&b[..])),
                        (Bound::Included(&a[..]), Bound::Unbounded),
                        (Bound::Unbounded, Bound::Excluded(&b[..])),
                    ];
                    for (from, to) in bounds {
                        let want: Vec<Entry> = if empty_range(from, to) {
                            Vec::new()
                        } else {
                            model
                                .range::<[u8], _>((from, to))
                                .take(limit)
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        };
                        let got = db.range(&ks, from, to, limit).expect("range");
                        assert_eq!(
                            got, want,
                            "step {step}: range {from:?}..{to:?} limit {limit}"
                        );
                    }
                    let want_last = if a < b {
                        model
                            .range(a.clone()..b.clone())
                            .next_back()
                            .map(|(k, v)| (k.clone(), v.clone()))
                    } else {
                        None
                    };
                    assert_eq!(
                        db.last_in(&ks, &a, &b).expect("last_in"),
                        want_last,
                        "step {step}"
                    );
                    assert_eq!(db.len(&ks).expect("len"), model.len(), "step {step}: len");
                }
            }
        }
        db.sync().expect("sync");
        println!("{checks} checks against the model, {commits} commits in between");
        assert!(
            checks > 100 && commits > 100,
            "{checks} checks, {commits} commits"
        );
        // What was synced is what reopening finds.
        drop(db);
        let db = open(dir.path());
        let all = db
            .range(&ks, Bound::Unbounded, Bound::Unbounded, usize::MAX)
            .expect("range");
        let want: Vec<Entry> = model.into_iter().collect();
        assert_eq!(all, want, "after reopening");
    }

    /// Durable writers that wait while a commit runs share the next one: eight writes, one
    /// commit.
    #[test]
    fn durable_writers_waiting_for_a_commit_share_the_next() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = open(dir.path());
        // A commit that runs (the test holds its turn).
        let turn = lock(&db.commits);
        let before = turn.made;
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let db = db.clone();
                std::thread::spawn(move || {
                    db.put("t", &[i], Some(&[i])).expect("put");
                    db.sync().expect("sync");
                })
            })
            .collect();
        let started = std::time::Instant::now();
        while lock(&db.overlay).written < 8 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the writes enter the overlay while a commit runs"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every write is visible before any commit.
        for i in 0..8u8 {
            assert_eq!(db.get("t", &[i]).expect("get"), Some(vec![i]));
        }
        drop(turn);
        for w in writers {
            w.join().expect("a writer");
        }
        let c = lock(&db.commits);
        println!("8 durable writers: {} commit(s)", c.made - before);
        assert_eq!(c.made - before, 1, "one durable commit covers the eight");
        assert_eq!(c.durable, 8);
    }

    /// A bulk load past [`COMMIT_BYTES`] is committed on the way (the overlay stays bounded)
    /// and every write reads back.
    #[test]
    fn a_bulk_load_commits_on_the_way_and_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = open(dir.path());
        let value = vec![5u8; 4096];
        let n = 3 * COMMIT_BYTES / value.len();
        for i in 0..n as u32 {
            db.put("bulk", &i.to_be_bytes(), Some(&value)).expect("put");
            assert!(lock(&db.overlay).active_bytes <= COMMIT_BYTES + value.len() + 64);
        }
        let made = lock(&db.commits).made;
        println!("{n} writes of 4 KiB: {made} commits on the way");
        assert!(made >= 2, "{made} commits");
        assert_eq!(db.len("bulk").expect("len"), n);
        assert_eq!(
            db.get("bulk", &7u32.to_be_bytes()).expect("get"),
            Some(value)
        );
    }

    /// Group commit as the disk sees it: 8 threads each making durable writes (put, then
    /// sync) against one thread doing the same. Prints both throughputs and the commits
    /// made; the 8 threads share commits, so they make fewer commits than writes.
    #[test]
    fn eight_durable_writers_share_fsyncs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = open(dir.path());
        let run = |threads: u8, each: u32| -> (f64, u64) {
            let before = lock(&db.commits).made;
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let db = &db;
                    s.spawn(move || {
                        for i in 0..each {
                            let key = [&[t][..], &i.to_be_bytes()[..]].concat();
                            db.put("orders", &key, Some(&[7u8; 200])).expect("put");
                            db.sync().expect("sync");
                        }
                    });
                }
            });
            let writes = u64::from(threads) * u64::from(each);
            let rate = writes as f64 / started.elapsed().as_secs_f64();
            (rate, lock(&db.commits).made - before)
        };
        let (one, one_commits) = run(1, 80);
        let (eight, eight_commits) = run(8, 20);
        println!(
            "durable writes/s: 1 writer {one:.0} ({one_commits} commits for 80 writes), \
             8 writers {eight:.0} ({eight_commits} commits for 160 writes): {:.2}x",
            eight / one
        );
        assert_eq!(one_commits, 80, "one writer: a commit per durable write");
        assert!(
            eight_commits < 160,
            "8 writers share commits: {eight_commits} commits for 160 writes"
        );
    }
}
