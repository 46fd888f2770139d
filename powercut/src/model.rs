//! The file system as the FUSE server sees it: what programs see (the visible tree, all in
//! memory), what is durable (the backing directory, and its tree of inode numbers here), and
//! the operations in between, which a power cut loses all or part of. See the crate docs for
//! the model.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rand::Rng;

use crate::{Cut, CutReport, Error, Metadata, Stats};

/// The root directory's inode number (FUSE's).
pub(crate) const ROOT: u64 = 1;

/// A disk writes whole sectors: a torn write keeps a prefix of them.
const SECTOR: usize = 512;

#[derive(Clone, Debug)]
pub(crate) enum Content {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, u64>),
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) content: Content,
    pub(crate) mode: u32,
    pub(crate) time: SystemTime,
    pub(crate) nlink: u32,
}

impl Node {
    pub(crate) fn size(&self) -> u64 {
        match &self.content {
            Content::File(d) => d.len() as u64,
            Content::Dir(e) => e.len() as u64,
        }
    }
}

/// An operation that changed the visible tree and is not yet durable.
#[derive(Clone, Debug)]
enum Op {
    /// Metadata (the journal): create, mkdir, rename, unlink, rmdir, truncate, chmod.
    Create {
        parent: u64,
        name: OsString,
        ino: u64,
        dir: bool,
        mode: u32,
    },
    Rename {
        parent: u64,
        name: OsString,
        newparent: u64,
        newname: OsString,
    },
    Remove {
        parent: u64,
        name: OsString,
    },
    SetLen {
        ino: u64,
        size: u64,
    },
    Chmod {
        ino: u64,
        mode: u32,
    },
    /// Data: a `pwrite` into a file's page cache.
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
        /// fsynced, but the file is not yet durably linked (strict metadata): the write
        /// survives every cut that keeps the file.
        synced: bool,
    },
}

impl Op {
    fn is_meta(&self) -> bool {
        !matches!(self, Op::Write { .. })
    }
}

#[derive(Clone, Debug)]
struct Pending {
    op: Op,
    time: SystemTime,
}

/// What the backing directory holds, by this file system's inode numbers, so that a file keeps
/// its inode number and change time across a power cut as it would on a disk.
#[derive(Clone, Debug, Default)]
struct Durable {
    /// Directory inode -> its durable entries.
    dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    /// Inode -> where it is linked durably.
    links: HashMap<u64, (u64, OsString)>,
    /// Inode -> (mode, time of its last durable change).
    attrs: HashMap<u64, (u32, SystemTime)>,
}

/// The whole state of one file system, shared by the FUSE server thread and the harness.
pub(crate) struct Model {
    backing: PathBuf,
    metadata: Metadata,
    pub(crate) nodes: HashMap<u64, Node>,
    pending: Vec<Pending>,
    durable: Durable,
    next_ino: u64,
    pub(crate) stats: Stats,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Backing {
        path: path.to_path_buf(),
        what: what.to_string(),
        source: e,
    }
}

impl Model {
    /// A model over `backing`, whose current contents are taken as durable.
    pub(crate) fn load(backing: &Path, metadata: Metadata) -> Result<Model, Error> {
        let mut m = Model {
            backing: backing.to_path_buf(),
            metadata,
            nodes: HashMap::new(),
            pending: Vec::new(),
            durable: Durable::default(),
            next_ino: ROOT + 1,
            stats: Stats::default(),
        };
        m.durable.dirs.insert(ROOT, BTreeMap::new());
        m.durable.attrs.insert(ROOT, (0o755, SystemTime::now()));
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let path = m
                .durable_path(dir)
                .expect("a directory being scanned is linked");
            let rd = std::fs::read_dir(&path).map_err(|e| io(&path, "read the directory", e))?;
            for entry in rd {
                let entry = entry.map_err(|e| io(&path, "read the directory", e))?;
                let meta = entry.metadata().map_err(|e| io(&entry.path(), "stat", e))?;
                let ino = m.next_ino;
                m.next_ino += 1;
                let name = entry.file_name();
                m.durable
                    .dirs
                    .get_mut(&dir)
                    .expect("scanned directories are known")
                    .insert(name.clone(), ino);
                m.durable.links.insert(ino, (dir, name));
                let time = meta.modified().unwrap_or_else(|_| SystemTime::now());
                m.durable
                    .attrs
                    .insert(ino, (meta.permissions().mode() & 0o7777, time));
                if meta.is_dir() {
                    m.durable.dirs.insert(ino, BTreeMap::new());
                    stack.push(ino);
                } else if !meta.is_file() {
                    return Err(Error::Unsupported(format!(
                        "{} is neither a file nor a directory",
                        entry.path().display()
                    )));
                }
            }
        }
        m.rebuild_visible()?;
        Ok(m)
    }

    /// The backing path of a durably linked inode.
    fn durable_path(&self, ino: u64) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let (parent, name) = self.durable.links.get(&at)?;
            names.push(name.clone());
            at = *parent;
        }
        let mut p = self.backing.clone();
        for n in names.iter().rev() {
            p.push(n);
        }
        Some(p)
    }

    /// The visible tree := the durable one (at mount, and after a cut).
    fn rebuild_visible(&mut self) -> Result<(), Error> {
        self.nodes.clear();
        let inos: Vec<u64> = self.durable.attrs.keys().copied().collect();
        for ino in inos {
            let (mode, time) = self.durable.attrs[&ino];
            let content = if let Some(entries) = self.durable.dirs.get(&ino) {
                Content::Dir(entries.clone())
            } else {
                let Some(path) = self.durable_path(ino) else {
                    continue;
                };
                Content::File(std::fs::read(&path).map_err(|e| io(&path, "read", e))?)
            };
            let nlink = match &content {
                Content::Dir(e) => {
                    2 + e
                        .values()
                        .filter(|c| self.durable.dirs.contains_key(c))
                        .count() as u32
                }
                Content::File(_) => 1,
            };
            self.nodes.insert(
                ino,
                Node {
                    content,
                    mode,
                    time,
                    nlink,
                },
            );
        }
        Ok(())
    }

    fn push(&mut self, op: Op) {
        if op.is_meta() {
            self.stats.journal_ops += 1;
        } else {
            self.stats.writes += 1;
        }
        self.pending.push(Pending {
            op,
            time: SystemTime::now(),
        });
    }

    // ---- what programs do (the FUSE server calls these) ----

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> Option<u64> {
        match &self.nodes.get(&parent)?.content {
            Content::Dir(e) => e.get(name).copied(),
            Content::File(_) => None,
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.content) {
            Some(Content::Dir(e)) => Ok(e),
            Some(Content::File(_)) => Err(libc_errno::ENOTDIR),
            None => Err(libc_errno::ENOENT),
        }
    }

    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        mode: u32,
    ) -> Result<u64, i32> {
        let ino = self.next_ino;
        let entries = self.entries_mut(parent)?;
        if entries.contains_key(name) {
            return Err(libc_errno::EEXIST);
        }
        entries.insert(name.to_os_string(), ino);
        self.next_ino += 1;
        let now = SystemTime::now();
        let content = if dir {
            Content::Dir(BTreeMap::new())
        } else {
            Content::File(Vec::new())
        };
        self.nodes.insert(
            ino,
            Node {
                content,
                mode: mode & 0o7777,
                time: now,
                nlink: if dir { 2 } else { 1 },
            },
        );
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.time = now;
            if dir {
                p.nlink += 1;
            }
        }
        self.push(Op::Create {
            parent,
            name: name.to_os_string(),
            ino,
            dir,
            mode: mode & 0o7777,
        });
        Ok(ino)
    }

    pub(crate) fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), i32> {
        let ino = self.lookup(parent, name).ok_or(libc_errno::ENOENT)?;
        match (&self.nodes[&ino].content, dir) {
            (Content::Dir(e), true) if !e.is_empty() => return Err(libc_errno::ENOTEMPTY),
            (Content::Dir(_), false) => return Err(libc_errno::EISDIR),
            (Content::File(_), true) => return Err(libc_errno::ENOTDIR),
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.nlink = n.nlink.saturating_sub(1);
        }
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.time = SystemTime::now();
            if dir {
                p.nlink = p.nlink.saturating_sub(1);
            }
        }
        self.push(Op::Remove {
            parent,
            name: name.to_os_string(),
        });
        Ok(())
    }

    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<(), i32> {
        let ino = self.lookup(parent, name).ok_or(libc_errno::ENOENT)?;
        self.entries_mut(newparent)?;
        if let Some(target) = self.lookup(newparent, newname) {
            if target == ino {
                return Ok(());
            }
            if noreplace {
                return Err(libc_errno::EEXIST);
            }
            let src_dir = matches!(self.nodes[&ino].content, Content::Dir(_));
            match &self.nodes[&target].content {
                Content::Dir(e) if !src_dir => {
                    let _ = e;
                    return Err(libc_errno::EISDIR);
                }
                Content::Dir(e) if !e.is_empty() => return Err(libc_errno::ENOTEMPTY),
                Content::File(_) if src_dir => return Err(libc_errno::ENOTDIR),
                _ => {}
            }
            if let Some(t) = self.nodes.get_mut(&target) {
                t.nlink = 0;
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(newparent)?
            .insert(newname.to_os_string(), ino);
        let now = SystemTime::now();
        for d in [parent, newparent, ino] {
            if let Some(n) = self.nodes.get_mut(&d) {
                n.time = now;
            }
        }
        self.push(Op::Rename {
            parent,
            name: name.to_os_string(),
            newparent,
            newname: newname.to_os_string(),
        });
        Ok(())
    }

    pub(crate) fn set_len(&mut self, ino: u64, size: u64) -> Result<(), i32> {
        let n = self.nodes.get_mut(&ino).ok_or(libc_errno::ENOENT)?;
        let Content::File(data) = &mut n.content else {
            return Err(libc_errno::EISDIR);
        };
        let size = usize::try_from(size).map_err(|_| libc_errno::EFBIG)?;
        data.resize(size, 0);
        n.time = SystemTime::now();
        self.push(Op::SetLen {
            ino,
            size: size as u64,
        });
        Ok(())
    }

    pub(crate) fn chmod(&mut self, ino: u64, mode: u32) -> Result<(), i32> {
        let n = self.nodes.get_mut(&ino).ok_or(libc_errno::ENOENT)?;
        n.mode = mode & 0o7777;
        n.time = SystemTime::now();
        self.push(Op::Chmod {
            ino,
            mode: mode & 0o7777,
        });
        Ok(())
    }

    pub(crate) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), i32> {
        let n = self.nodes.get_mut(&ino).ok_or(libc_errno::ENOENT)?;
        let Content::File(data) = &mut n.content else {
            return Err(libc_errno::EISDIR);
        };
        let start = usize::try_from(offset).map_err(|_| libc_errno::EFBIG)?;
        let end = start + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        n.time = SystemTime::now();
        self.push(Op::Write {
            ino,
            offset,
            data: bytes.to_vec(),
            synced: false,
        });
        Ok(())
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], i32> {
        let n = self.nodes.get(&ino).ok_or(libc_errno::ENOENT)?;
        let Content::File(data) = &n.content else {
            return Err(libc_errno::EISDIR);
        };
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(&data[start..end])
    }

    /// `fsync`/`fdatasync` of a file: its writes become durable, and with journaled
    /// metadata the whole journal before them too.
    pub(crate) fn fsync(&mut self, ino: u64) -> Result<(), Error> {
        self.stats.fsyncs += 1;
        if self.metadata == Metadata::Journaled {
            self.commit_journal()?;
        }
        if self.durable_path(ino).is_some() {
            let take: Vec<bool> = self
                .pending
                .iter()
                .map(|p| matches!(&p.op, Op::Write { ino: i, .. } if *i == ino))
                .collect();
            self.apply_selected(&take)
        } else {
            // Strict: the data is on the disk but the file may never have been linked; it
            // survives with the file's creation (applied when the journal commits).
            for p in &mut self.pending {
                if let Op::Write { ino: i, synced, .. } = &mut p.op {
                    if *i == ino {
                        *synced = true;
                    }
                }
            }
            Ok(())
        }
    }

    /// Commits the journal, then the synced writes of files it linked.
    fn commit_journal(&mut self) -> Result<(), Error> {
        let take: Vec<bool> = self.pending.iter().map(|p| p.op.is_meta()).collect();
        self.apply_selected(&take)?;
        let take: Vec<bool> = self
            .pending
            .iter()
            .map(|p| matches!(&p.op, Op::Write { synced: true, .. }))
            .collect();
        self.apply_selected(&take)
    }

    /// `fsync` of a directory: the journal becomes durable (all of it: one journal, as ext4
    /// and xfs commit it).
    pub(crate) fn fsyncdir(&mut self) -> Result<(), Error> {
        self.stats.fsyncs += 1;
        self.commit_journal()
    }

    /// Everything becomes durable (a clean shutdown).
    pub(crate) fn sync_all(&mut self) -> Result<(), Error> {
        let take = vec![true; self.pending.len()];
        self.apply_selected(&take)
    }

    /// The power cut: drops the visible state, keeping what `cut` lets survive of the
    /// unsynced operations, and rebuilds the visible tree from the durable one.
    pub(crate) fn power_cut(&mut self, cut: Cut, rng: &mut impl Rng) -> Result<CutReport, Error> {
        let mut report = CutReport {
            unsynced_writes: 0,
            writes_kept: 0,
            writes_torn: 0,
            journal_ops: 0,
            journal_kept: 0,
        };
        let meta_count = self.pending.iter().filter(|p| p.op.is_meta()).count();
        report.journal_ops = meta_count;
        let journal_keep = match cut {
            Cut::All => 0,
            Cut::Random => rng.random_range(0..=meta_count),
        };
        let mut seen_meta = 0;
        let mut take = Vec::with_capacity(self.pending.len());
        for p in &mut self.pending {
            let keep = if p.op.is_meta() {
                seen_meta += 1;
                seen_meta <= journal_keep
            } else if let Op::Write { data, synced, .. } = &mut p.op {
                report.unsynced_writes += usize::from(!*synced);
                if *synced {
                    true
                } else if cut == Cut::Random && rng.random_bool(0.5) {
                    report.writes_kept += 1;
                    if data.len() > SECTOR && rng.random_bool(0.25) {
                        let sectors = data.len().div_ceil(SECTOR);
                        let kept = rng.random_range(1..sectors);
                        data.truncate(kept * SECTOR);
                        report.writes_torn += 1;
                    }
                    true
                } else {
                    false
                }
            } else {
                false
            };
            take.push(keep);
        }
        report.journal_kept = journal_keep;
        self.apply_selected(&take)?;
        self.pending.clear();
        self.rebuild_visible()?;
        self.stats.cuts += 1;
        Ok(report)
    }

    /// Applies the selected pending operations to the backing directory, in the order they
    /// were made, and removes them from `pending`.
    fn apply_selected(&mut self, take: &[bool]) -> Result<(), Error> {
        // Ordered data: a size change of a file is committed after the file's earlier
        // writes (ext4's data=ordered), never before them, so that a write made before a
        // truncate is never applied after it.
        let mut take = take.to_vec();
        for i in (0..self.pending.len()).rev() {
            if let (true, Op::SetLen { ino, .. }) = (take[i], &self.pending[i].op) {
                let ino = *ino;
                for (t, p) in take.iter_mut().zip(&self.pending).take(i) {
                    if matches!(&p.op, Op::Write { ino: w, .. } if *w == ino) {
                        *t = true;
                    }
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (p, t) in pending.into_iter().zip(take) {
            if t {
                self.apply(&p)?;
            } else {
                self.pending.push(p);
            }
        }
        Ok(())
    }

    fn apply(&mut self, p: &Pending) -> Result<(), Error> {
        match &p.op {
            Op::Create {
                parent,
                name,
                ino,
                dir,
                mode,
            } => {
                let Some(mut path) = self.durable_path(*parent) else {
                    return Ok(());
                };
                path.push(name);
                if *dir {
                    std::fs::create_dir(&path).map_err(|e| io(&path, "mkdir", e))?;
                    self.durable.dirs.insert(*ino, BTreeMap::new());
                } else {
                    std::fs::File::create(&path).map_err(|e| io(&path, "create", e))?;
                }
                if let Some(e) = self.durable.dirs.get_mut(parent) {
                    e.insert(name.clone(), *ino);
                }
                self.durable.links.insert(*ino, (*parent, name.clone()));
                self.durable.attrs.insert(*ino, (*mode, p.time));
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
            } => {
                let Some(ino) = self
                    .durable
                    .dirs
                    .get(parent)
                    .and_then(|e| e.get(name).copied())
                else {
                    return Ok(());
                };
                let (Some(from), Some(mut to)) =
                    (self.durable_path(ino), self.durable_path(*newparent))
                else {
                    return Ok(());
                };
                to.push(newname);
                std::fs::rename(&from, &to).map_err(|e| io(&from, "rename", e))?;
                if let Some(e) = self.durable.dirs.get_mut(parent) {
                    e.remove(name);
                }
                let replaced = self
                    .durable
                    .dirs
                    .get_mut(newparent)
                    .and_then(|e| e.insert(newname.clone(), ino));
                if let Some(r) = replaced {
                    self.forget_durable(r);
                }
                self.durable
                    .links
                    .insert(ino, (*newparent, newname.clone()));
                if let Some(a) = self.durable.attrs.get_mut(&ino) {
                    a.1 = p.time;
                }
            }
            Op::Remove { parent, name } => {
                let Some(ino) = self
                    .durable
                    .dirs
                    .get(parent)
                    .and_then(|e| e.get(name).copied())
                else {
                    return Ok(());
                };
                let Some(path) = self.durable_path(ino) else {
                    return Ok(());
                };
                if self.durable.dirs.contains_key(&ino) {
                    std::fs::remove_dir(&path).map_err(|e| io(&path, "rmdir", e))?;
                } else {
                    std::fs::remove_file(&path).map_err(|e| io(&path, "unlink", e))?;
                }
                if let Some(e) = self.durable.dirs.get_mut(parent) {
                    e.remove(name);
                }
                self.forget_durable(ino);
            }
            Op::SetLen { ino, size } => {
                if let Some(path) = self.durable_path(*ino) {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io(&path, "open", e))?;
                    f.set_len(*size).map_err(|e| io(&path, "truncate", e))?;
                    if let Some(a) = self.durable.attrs.get_mut(ino) {
                        a.1 = p.time;
                    }
                }
            }
            Op::Chmod { ino, mode } => {
                if let Some(a) = self.durable.attrs.get_mut(ino) {
                    *a = (*mode, p.time);
                }
            }
            Op::Write {
                ino, offset, data, ..
            } => {
                if let Some(path) = self.durable_path(*ino) {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io(&path, "open", e))?;
                    f.write_all_at(data, *offset)
                        .map_err(|e| io(&path, "write", e))?;
                    if let Some(a) = self.durable.attrs.get_mut(ino) {
                        a.1 = p.time;
                    }
                }
            }
        }
        Ok(())
    }

    fn forget_durable(&mut self, ino: u64) {
        self.durable.links.remove(&ino);
        self.durable.attrs.remove(&ino);
        self.durable.dirs.remove(&ino);
    }

    /// Unsynced operations now (writes, journal entries).
    pub(crate) fn pending_counts(&self) -> (usize, usize) {
        let meta = self.pending.iter().filter(|p| p.op.is_meta()).count();
        (self.pending.len() - meta, meta)
    }
}

/// The errno values the model answers with (Linux's; the crate is Linux-only like FUSE's
/// pure-Rust mount).
pub(crate) mod libc_errno {
    pub(crate) const ENOENT: i32 = 2;
    pub(crate) const EEXIST: i32 = 17;
    pub(crate) const ENOTDIR: i32 = 20;
    pub(crate) const EISDIR: i32 = 21;
    pub(crate) const EFBIG: i32 = 27;
    pub(crate) const ENOTEMPTY: i32 = 39;
}
