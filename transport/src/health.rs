//! Site health through sync: each device publishes its health into the site document
//! [`HEALTH_DOC`] at `/devices/<device-id>`, as a local write. It reaches the cloud whenever a
//! link is up, so a site that was offline for a day still reports, once it reconnects, what
//! happened meanwhile (the last errors, the backlog that grew, when it last wrote).
//!
//! # Cost
//!
//! The node checks its health every [`NodeConfig::health_period`] (default 60 s) and at
//! start, and writes only the fields that changed meaningfully: the backlog, the errors, the
//! version or certificate, the disk use by more than a tenth (and 1 MiB); `updated_ms` alone
//! is refreshed once per [`NodeConfig::health_heartbeat`] (default 15 minutes). An idle
//! device thus writes about 96 small changes a day (one field each), and the document's
//! history grows by roughly that many operations per device per day: about 1 KB once compacted
//! (7 bytes a write, measured by `cloud/tests/health.rs`).
//!
//! [`NodeConfig::health_period`]: crate::NodeConfig::health_period
//! [`NodeConfig::health_heartbeat`]: crate::NodeConfig::health_heartbeat

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::engine::wire::Protocol;
use outpost_core::engine::SyncStatus;
use outpost_core::{AuditKind, AuditQuery, DocumentId, Durability, Event, Store, Timestamp};
use serde_json::{json, Map, Value as Json};

use crate::runner::RunnerHandle;

/// The site document each device publishes its health into, at `/devices/<device-id>`.
pub const HEALTH_DOC: &str = "health";

/// How many of its last errors a device keeps in its health.
pub const MAX_LAST_ERRORS: usize = 5;

/// How many audit entries a device's health carries.
pub const MAX_RECENT_AUDIT: usize = 10;

/// Errors are cut to this many characters in the health document.
const MAX_ERROR_CHARS: usize = 200;

/// One device's health, as it is in the site document `health` at `/devices/<device-id>`.
/// This schema is a contract with the cloud's API: fields are only ever added.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceHealth {
    /// The software version (`outpost-transport`'s crate version).
    pub version: String,
    /// The newest sync protocol the device speaks.
    pub protocol: u32,
    /// When the device (its node) started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When the device last wrote its health, ms since the Unix epoch.
    pub updated_ms: u64,
    /// Bytes its store takes on disk.
    pub disk_bytes: u64,
    /// Changes some known peer still lacks (its health document's own aside).
    pub backlog: u64,
    /// Its last errors (at most [`MAX_LAST_ERRORS`], oldest first), each prefixed with
    /// the time it happened in ms since the Unix epoch.
    pub last_errors: Vec<String>,
    /// When its certificate expires, ms since the Unix epoch.
    pub cert_not_after_ms: u64,
    /// The newest entries of its audit trail (at most [`MAX_RECENT_AUDIT`], oldest first,
    /// acknowledgements left out), one line each as `outpost audit` prints them: links
    /// opened and closed, refusals, revocations, renewals, erasures, backups. The whole
    /// trail stays on the device (`outpost audit`).
    #[serde(default)]
    pub recent_audit: Vec<String>,
}

/// The protocol number as published (`outpost/3` is 3).
fn protocol_number(p: Protocol) -> u32 {
    match p {
        Protocol::V1 => 1,
        Protocol::V2 => 2,
        Protocol::V3 => 3,
    }
}

/// The last errors of a device, filled by its runner's hooks.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    errors: Mutex<VecDeque<String>>,
    /// Wakes the publisher when an error was recorded.
    pub(crate) notify: tokio::sync::Notify,
}

impl ErrorLog {
    /// Records the event if it is an error worth reporting.
    pub(crate) fn on_event(&self, event: &Event) {
        let text = match event {
            Event::ChangeRefused { peer, doc, reason } => {
                format!("refused changes to {doc} from {peer}: {reason}")
            }
            Event::RefusedByPeer { peer, doc, reason } => {
                format!("{peer} refused our changes to {doc}: {reason}")
            }
            Event::ProtocolError { peer, message } => {
                format!("protocol error with {peer}: {message}")
            }
            Event::StorageFailed { error, doc, .. } => match doc {
                Some(d) => format!("storage failed for {d}: {error}"),
                None => format!("storage failed: {error}"),
            },
            Event::ConnectionRefused { peer, code } => format!("refused {peer}: {code:?}"),
            _ => return,
        };
        let mut text = format!("{} {text}", Timestamp::now().as_millis());
        if let Some((i, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
            text.truncate(i);
        }
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.push_back(text);
        while errors.len() > MAX_LAST_ERRORS {
            errors.pop_front();
        }
        drop(errors);
        self.notify.notify_one();
    }

    fn last(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// The backlog a health report shows: what peers lack, the health document aside (its own
/// write would otherwise change the backlog it reports, forever).
fn backlog(status: &SyncStatus, health: &DocumentId) -> u64 {
    status
        .peers
        .iter()
        .filter(|p| !p.revoked)
        .flat_map(|p| &p.docs)
        .filter(|d| &d.doc != health)
        .map(|d| d.they_lack as u64)
        .sum()
}

/// Turns the list at `path` from `old` into `new` by dropping from its front and pushing at
/// its end what the window moved by: each audit line enters the health document's history
/// once (rewriting the whole list on every move would add every line again each time).
fn edit_list(
    tx: &mut outpost_core::Tx<'_>,
    path: &str,
    old: &[String],
    new: &[String],
) -> outpost_core::Result<()> {
    // The most lines at the end of `old` that begin `new`.
    let kept = (0..=old.len().min(new.len()))
        .rev()
        .find(|&k| old[old.len() - k..] == new[..k])
        .unwrap_or(0);
    if old.is_empty() || kept == 0 {
        return tx.put(path, json!(new));
    }
    for _ in 0..old.len() - kept {
        tx.delete(&format!("{path}/0"))?;
    }
    for line in &new[kept..] {
        tx.push(path, json!(line))?;
    }
    Ok(())
}

/// The newest audit entries worth a health report (acknowledgements come with every sync and
/// would rewrite the report each time): one line each, cut to [`MAX_ERROR_CHARS`].
fn recent_audit(store: &Store) -> Vec<String> {
    let kinds = AuditKind::ALL
        .into_iter()
        .filter(|k| *k != AuditKind::Acknowledged)
        .collect();
    let entries = store
        .audit()
        .query(&AuditQuery {
            kinds,
            limit: MAX_RECENT_AUDIT,
            ..AuditQuery::default()
        })
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the audit trail for the health report");
            Vec::new()
        });
    entries
        .iter()
        .map(|e| {
            let mut line = e.to_string();
            if let Some((i, _)) = line.char_indices().nth(MAX_ERROR_CHARS) {
                line.truncate(i);
            }
            line
        })
        .collect()
}

/// Whether the disk use moved enough to be worth a write: a tenth, and at least 1 MiB.
fn disk_moved(old: u64, new: u64) -> bool {
    old.abs_diff(new) >= (old / 10).max(1 << 20)
}

/// Publishes a device's health; see the [module documentation](self).
pub(crate) struct Publisher {
    pub(crate) store: Store,
    pub(crate) runner: RunnerHandle,
    pub(crate) errors: Arc<ErrorLog>,
    pub(crate) cert: Arc<Mutex<crate::DeviceCert>>,
    pub(crate) period: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) started_ms: u64,
}

impl Publisher {
    fn doc() -> DocumentId {
        HEALTH_DOC
            .parse()
            .expect("the health document's name is valid")
    }

    fn path(&self) -> Option<String> {
        let me = self.store.identity()?;
        Some(format!("/devices/{}", me.peer))
    }

    async fn current(&self) -> Option<DeviceHealth> {
        let status = self.runner.status().await.ok()?;
        let der = self
            .cert
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cert_der()
            .to_vec();
        Some(DeviceHealth {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: protocol_number(Protocol::CURRENT),
            started_ms: self.started_ms,
            updated_ms: Timestamp::now().as_millis(),
            disk_bytes: self.store.size_on_disk().unwrap_or(0),
            backlog: backlog(&status, &Self::doc()),
            last_errors: self.errors.last(),
            cert_not_after_ms: crate::renew::not_after_ms(&der).unwrap_or(0),
            recent_audit: recent_audit(&self.store),
        })
    }

    /// The fields of `new` worth writing over `old`; empty: nothing to write.
    fn changed(&self, old: &DeviceHealth, new: &DeviceHealth) -> Map<String, Json> {
        let mut out = Map::new();
        if old.version != new.version {
            out.insert("version".into(), json!(new.version));
        }
        if old.protocol != new.protocol {
            out.insert("protocol".into(), json!(new.protocol));
        }
        if old.started_ms != new.started_ms {
            out.insert("started_ms".into(), json!(new.started_ms));
        }
        if disk_moved(old.disk_bytes, new.disk_bytes) {
            out.insert("disk_bytes".into(), json!(new.disk_bytes));
        }
        if old.backlog != new.backlog {
            out.insert("backlog".into(), json!(new.backlog));
        }
        if old.last_errors != new.last_errors {
            out.insert("last_errors".into(), json!(new.last_errors));
        }
        if old.cert_not_after_ms != new.cert_not_after_ms {
            out.insert("cert_not_after_ms".into(), json!(new.cert_not_after_ms));
        }
        // `recent_audit` is written by `publish` (list edits, not a field).
        let stale = new.updated_ms.saturating_sub(old.updated_ms)
            >= u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX);
        if !out.is_empty() || stale || old.recent_audit != new.recent_audit {
            out.insert("updated_ms".into(), json!(new.updated_ms));
        }
        out
    }

    /// Writes what changed; returns how many fields were written.
    async fn publish(&self) -> usize {
        let (Some(path), Some(new)) = (self.path(), self.current().await) else {
            return 0;
        };
        let doc = Self::doc();
        let old: Option<DeviceHealth> = match self.store.get(&doc, &path) {
            Ok(Some(v)) => serde_json::from_value(v).ok(),
            _ => None,
        };
        let result = match old {
            None => self
                .store
                .put_serde(&doc, &path, &new, Durability::Fast)
                .map(|()| 8),
            Some(old) => {
                let fields = self.changed(&old, &new);
                if fields.is_empty() {
                    return 0;
                }
                let audit_moved = old.recent_audit != new.recent_audit;
                let n = fields.len() + usize::from(audit_moved);
                self.store
                    .transact(&doc, Durability::Fast, |tx| {
                        for (k, v) in fields {
                            tx.put(&format!("{path}/{k}"), v)?;
                        }
                        if audit_moved {
                            let list = format!("{path}/recent_audit");
                            edit_list(tx, &list, &old.recent_audit, &new.recent_audit)?;
                        }
                        Ok(())
                    })
                    .map(|()| n)
            }
        };
        match result {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write this device's health");
                0
            }
        }
    }

    /// Publishes at start, every period, and soon after an error.
    pub(crate) async fn run(self) {
        loop {
            let written = self.publish().await;
            if written > 0 {
                tracing::debug!(fields = written, "health published");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.period) => {}
                _ = self.errors.notify.notified() => {
                    // Errors come in bursts: one write for the burst.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_window_moves_by_list_edits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let doc = Publisher::doc();
        let lines = |r: std::ops::Range<u32>| r.map(|i| format!("line {i}")).collect::<Vec<_>>();
        let path = "/devices/pos-1/recent_audit";
        let mut old = Vec::new();
        for window in [
            lines(0..3),
            lines(0..10),
            lines(4..14),
            lines(20..30),
            lines(21..31),
        ] {
            store
                .transact(&doc, Durability::Fast, |tx| {
                    edit_list(tx, path, &old, &window)
                })
                .expect("edited");
            assert_eq!(store.get(&doc, path).expect("read"), Some(json!(window)));
            old = window;
        }
    }

    #[test]
    fn disk_use_is_written_only_when_it_moved_enough() {
        assert!(!disk_moved(10 << 20, (10 << 20) + 4096));
        assert!(disk_moved(10 << 20, 12 << 20));
        assert!(!disk_moved(100 << 20, 105 << 20), "under a tenth");
        assert!(disk_moved(0, 2 << 20));
    }
}
