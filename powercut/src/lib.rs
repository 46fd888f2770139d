//! Power cuts for tests: a FUSE file system that keeps what was written and not yet synced in
//! a volatile layer, and loses it (all of it, or a random part) at a "power cut".
//!
//! kill -9 shows what a process crash loses; the kernel still writes the page cache out
//! afterwards. A power cut also loses what the OS had not written to stable storage. This
//! crate serves a directory over FUSE from the test process ([`PowerFs::mount`]); the
//! workload runs in a child process on the mount point; the test SIGKILLs the child (so it
//! can flush nothing after the cut), then [`PowerFs::cut`] drops the volatile layer and
//! remounts from what is durable, and the test checks what a program opening the store finds.
//!
//! # The model (what survives a cut)
//!
//! The backing directory holds exactly what is durable. Programs see the durable state plus
//! every operation since; those operations are of two kinds:
//!
//! - **Data** (`write`/`pwrite` into a file): volatile until `fsync` or `fdatasync` of that
//!   file (both flush the file's data: there is no metadata-only distinction worth modelling
//!   here). `sync_file_range` is not a flush: FUSE never sees it, so what it "wrote" stays
//!   volatile, as it does on a disk with a write cache (sled 0.34's log flush). `close` is not
//!   a flush either. At a cut, each unsynced write independently survives or not (a disk
//!   reorders its cache), and a surviving write longer than a 512-byte sector may be torn: only
//!   a prefix of its sectors arrives. A dropped write leaves what was there before (zeros past
//!   the old end of the file).
//! - **Metadata** (create, mkdir, rename, unlink, rmdir, truncate and extend, chmod): one
//!   ordered journal. At a cut a prefix of the unsynced journal survives (any length, from
//!   none to all). With [`Metadata::Journaled`] (the default: ext4 and xfs), any `fsync`,
//!   `fdatasync` or `fsync` of a directory commits the whole journal, so a file created,
//!   written and fsynced exists after a cut even if its directory was never fsynced. With
//!   [`Metadata::Strict`] (POSIX's letter), only an `fsync` of a directory commits the
//!   journal: a file's fsynced data survives only if the file's creation does.
//! - **Ordered data**: a size change committed through the journal first commits that file's
//!   earlier writes (ext4 `data=ordered`), so a write made before a truncate is never applied
//!   after it. There is no `auto_da_alloc` guarantee: a file replaced by rename without an
//!   fsync of its data may be empty or partial after a cut.
//! - Nothing fsynced is ever undone. Access and modification times are not durable; inode
//!   numbers and change times are (a file keeps its identity across a cut), but the device
//!   number changes with each mount, so tests that check file identity must not check it.
//!
//! What is not modelled: a drive that lies about flushes, bit rot, lost or misdirected
//! writes of synced data, xattrs, hard and symbolic links (refused), mmap writes (the kernel
//! writes them back as ordinary writes, volatile like any other).

mod child;
mod fuse;
mod model;

pub use child::{Ended, Workload};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption};

use crate::model::Model;

/// What goes wrong setting up or cutting a power-loss file system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The machine cannot mount FUSE file systems.
    #[error(
        "power-cut tests need FUSE: {0}. Run them as root on Linux with /dev/fuse \
         (`modprobe fuse`) and Debian's fuse3 (`apt-get install fuse3`, which \
         scripts/test.sh does)"
    )]
    Unavailable(String),
    /// The kernel refused the mount or the unmount.
    #[error("{what} {path} failed: {source}")]
    Mount {
        /// What was being done.
        what: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading or writing the backing directory failed.
    #[error("{what} {path} (backing directory) failed: {source}; is its disk full or gone?")]
    Backing {
        /// The backing file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The backing directory holds something the model does not (a symlink, a device).
    #[error("unsupported in a power-cut file system: {0}")]
    Unsupported(String),
}

/// When metadata operations become durable (see the crate docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Metadata {
    /// Any fsync commits the whole journal (ext4, xfs).
    #[default]
    Journaled,
    /// Only an fsync of a directory commits the journal (POSIX's letter).
    Strict,
}

/// What a power cut loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Every unsynced write and journal entry.
    All,
    /// A random prefix of the journal and a random subset of the writes, some torn.
    Random,
}

/// What one cut did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Writes not synced when the power went.
    pub unsynced_writes: usize,
    /// Of those, the ones that reached the disk anyway (whole or torn).
    pub writes_kept: usize,
    /// Of those, the ones torn (a prefix of their sectors arrived).
    pub writes_torn: usize,
    /// Journal entries not committed when the power went.
    pub journal_ops: usize,
    /// Of those, the prefix that was committed anyway.
    pub journal_kept: usize,
}

/// Counters over a file system's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes seen.
    pub writes: u64,
    /// Journal entries seen.
    pub journal_ops: u64,
    /// fsync, fdatasync and directory fsync calls seen.
    pub fsyncs: u64,
    /// Power cuts.
    pub cuts: u64,
}

/// Checks that this process can serve FUSE file systems: root, `/dev/fuse`, `fusermount3`
/// (the lazy unmount of the cleanup). The error says what is missing.
pub fn check_available() -> Result<(), Error> {
    if !cfg!(target_os = "linux") {
        return Err(Error::Unavailable("this is not Linux".into()));
    }
    if effective_uid() != Some(0) {
        return Err(Error::Unavailable(
            "this process does not run as root".into(),
        ));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Unavailable("/dev/fuse does not exist".into()));
    }
    let found = Command::new("fusermount3")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        return Err(Error::Unavailable("fusermount3 is not installed".into()));
    }
    Ok(())
}

/// The (effective uid, effective gid) of this process, from `/proc/self/status`.
fn effective_ids() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u32> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(2)?.parse().ok()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

fn effective_uid() -> Option<u32> {
    effective_ids().map(|(u, _)| u)
}

/// A power-loss file system mounted at a directory, served by a thread of this process.
/// Dropping it unmounts (lazily if something still holds it), also when a test panics.
pub struct PowerFs {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl PowerFs {
    /// Serves `backing` at `mountpoint` (both directories, created if missing). What
    /// `backing` holds is taken as durable.
    pub fn mount(backing: &Path, mountpoint: &Path, metadata: Metadata) -> Result<PowerFs, Error> {
        check_available()?;
        for d in [backing, mountpoint] {
            std::fs::create_dir_all(d).map_err(|e| Error::Backing {
                path: d.to_path_buf(),
                what: "create the directory".into(),
                source: e,
            })?;
        }
        let model = Arc::new(Mutex::new(Model::load(backing, metadata)?));
        let mut fs = PowerFs {
            model,
            mountpoint: mountpoint.to_path_buf(),
            session: None,
        };
        fs.start()?;
        Ok(fs)
    }

    /// The directory programs use.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&mut self) -> Result<(), Error> {
        let (uid, gid) = effective_ids().unwrap_or((0, 0));
        let fs = fuse::PowerFuse {
            model: self.model.clone(),
            uid,
            gid,
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("outpost-powercut".into()),
            MountOption::NoAtime,
        ];
        let session =
            fuser::spawn_mount(fs, &self.mountpoint, &config).map_err(|e| Error::Mount {
                what: "mount",
                path: self.mountpoint.clone(),
                source: e,
            })?;
        self.session = Some(session);
        Ok(())
    }

    /// Unmounts; waits up to 5 s for the last user (a process still exiting) to let go,
    /// then detaches lazily.
    fn stop(&mut self) -> Result<(), Error> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .output();
            match out {
                Ok(o) if o.status.success() => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(o) => {
                    lazy_unmount(&self.mountpoint);
                    return Err(Error::Mount {
                        what: "unmount",
                        path: self.mountpoint.clone(),
                        source: std::io::Error::other(format!(
                            "still busy after 5 s: {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        )),
                    });
                }
                Err(e) => {
                    return Err(Error::Mount {
                        what: "unmount",
                        path: self.mountpoint.clone(),
                        source: e,
                    })
                }
            }
        }
        session.join().map_err(|e| Error::Mount {
            what: "end the session of",
            path: self.mountpoint.clone(),
            source: e,
        })
    }

    /// The power cut: unmounts (every process using the mount must be dead: SIGKILL the
    /// workload first), loses what `cut` says of the unsynced operations, and mounts again
    /// from what is durable.
    pub fn cut(&mut self, cut: Cut, rng: &mut impl rand::Rng) -> Result<CutReport, Error> {
        self.stop()?;
        let report = self.model().power_cut(cut, rng)?;
        self.start()?;
        Ok(report)
    }

    /// Makes everything durable now (a clean shutdown).
    pub fn sync_all(&self) -> Result<(), Error> {
        self.model().sync_all()
    }

    /// Unsynced (writes, journal entries) now.
    pub fn pending(&self) -> (usize, usize) {
        self.model().pending_counts()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.model().stats
    }
}

fn lazy_unmount(mountpoint: &Path) {
    let _ = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .output();
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("outpost-powercut: {e}");
        }
        // Whatever happened above (a panic mid-cut), leave no mount behind.
        if self.session.is_none() {
            lazy_unmount(&self.mountpoint);
        }
    }
}
