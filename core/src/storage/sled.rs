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

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
        let mut to = aside.join(&name);
        let mut n = 1;
        while to.exists() {
            to = aside.join(format!("{text}.{n}"));
            n += 1;
        }
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
}
