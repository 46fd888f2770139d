//! Group commit of flushes: durable writers that arrive together share one durable flush
//! (for sled, `Db::flush` followed by an `fdatasync` of its files; see `storage::sled`).
//!
//! A flush makes durable everything written to sled before it
//! started. A writer takes a ticket once its change is in sled; if a flush is running, it
//! started before the ticket and may not cover it, so the writer waits for it to end and
//! the next flush, started by one of the waiting writers, covers every ticket taken so far.
//! Eight writers arriving together thus pay two flushes, not eight.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::Result;

#[derive(Default)]
pub(super) struct FlushGroup {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets handed out: writes that asked for a flush.
    tickets: u64,
    /// Every ticket up to this one is on disk.
    flushed: u64,
    /// A flush is running.
    running: bool,
    /// The last flush failed (disk full, I/O error): what was written since the last
    /// successful one may not be on disk (see [`FlushGroup::failed`]).
    failed: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is three counters updated together under the lock: always consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FlushGroup {
    /// Returns once everything written before the call is on disk: runs `flush` (which
    /// makes durable everything written before it started), or waits for a run of it by
    /// another writer that started after this call.
    pub(super) fn flush(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut st = lock(&self.state);
        st.tickets += 1;
        let ticket = st.tickets;
        loop {
            if st.flushed >= ticket {
                return Ok(());
            }
            if !st.running {
                st.running = true;
                let covers = st.tickets;
                drop(st);
                let result = flush();
                let mut st = lock(&self.state);
                st.running = false;
                st.failed = result.is_err();
                if result.is_ok() {
                    st.flushed = st.flushed.max(covers);
                }
                drop(st);
                self.done.notify_all();
                // On failure, the writers waiting on this flush retry it themselves, each
                // seeing its own error if the disk still fails.
                result?;
                return Ok(());
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl FlushGroup {
    /// Whether the last flush failed. An engine that buffers writes (redb's group commit)
    /// takes them in memory and learns only at the flush that the disk is full: until a
    /// flush succeeds, what readers see may not be on disk, so no heads may leave the store
    /// (see `Store::generate_sync`).
    pub(super) fn failed(&self) -> bool {
        lock(&self.state).failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_flushes_and_all_return() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("open sled");
        let group = Arc::new(FlushGroup::default());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (db, group) = (db.clone(), group.clone());
                std::thread::spawn(move || {
                    for i in 0..20u64 {
                        db.insert((t * 100 + i).to_be_bytes(), &[1u8; 16])
                            .expect("insert");
                        group
                            .flush(|| db.flush().map(drop).map_err(Into::into))
                            .expect("flush");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a writer thread");
        }
        let st = lock(&group.state);
        assert_eq!(st.tickets, 160);
        assert_eq!(st.flushed, 160, "every ticket is covered by a flush");
        assert!(!st.running);
    }
}
