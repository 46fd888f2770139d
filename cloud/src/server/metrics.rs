//! Counters of the cloud peer, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use outpost_core::engine::EngineMetrics;
use outpost_core::SiteId;

/// What one site contributed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SiteStats {
    /// Devices of the site connected now.
    pub(crate) connected: u64,
    /// Changes the cloud holds that some known device of the site lacks, as computed after
    /// the site's last activity.
    pub(crate) backlog: u64,
    /// Documents of the site in memory.
    pub(crate) documents_loaded: u64,
    /// Whether the site is loaded.
    pub(crate) loaded: bool,
    /// Bytes of the site's documents in storage (as last measured).
    pub(crate) stored_bytes: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) changes_applied: u64,
    pub(crate) changes_refused: u64,
    pub(crate) sync_errors: u64,
    /// When a device of the site was last heard from (a connection, a message), ms since
    /// the Unix epoch; 0: not since the cloud started.
    pub(crate) last_seen_ms: u64,
    /// Devices of the site the cloud's engine knows (as of its last activity).
    pub(crate) devices: u64,
}

/// All counters. Site tasks add the deltas of their engines' metrics.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    totals: Mutex<EngineMetrics>,
    sites: Mutex<BTreeMap<SiteId, SiteStats>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Adds what an engine counted since `last`, and remembers `now` as the new `last`.
    pub(crate) fn add_engine_delta(
        &self,
        site: &SiteId,
        last: &mut EngineMetrics,
        now: &EngineMetrics,
    ) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let delta = EngineMetrics {
            bytes_in: d(now.bytes_in, last.bytes_in),
            bytes_out: d(now.bytes_out, last.bytes_out),
            messages_in: d(now.messages_in, last.messages_in),
            messages_out: d(now.messages_out, last.messages_out),
            changes_applied: d(now.changes_applied, last.changes_applied),
            changes_refused: d(now.changes_refused, last.changes_refused),
            sync_errors: d(now.sync_errors, last.sync_errors),
            storage_errors: d(now.storage_errors, last.storage_errors),
            signatures_verified: d(now.signatures_verified, last.signatures_verified),
            revocations_learned: d(now.revocations_learned, last.revocations_learned),
        };
        *last = now.clone();
        if delta == EngineMetrics::default() {
            return;
        }
        {
            let mut t = lock(&self.totals);
            t.bytes_in += delta.bytes_in;
            t.bytes_out += delta.bytes_out;
            t.messages_in += delta.messages_in;
            t.messages_out += delta.messages_out;
            t.changes_applied += delta.changes_applied;
            t.changes_refused += delta.changes_refused;
            t.sync_errors += delta.sync_errors;
            t.storage_errors += delta.storage_errors;
            t.revocations_learned += delta.revocations_learned;
        }
        let mut sites = lock(&self.sites);
        let s = sites.entry(site.clone()).or_default();
        s.bytes_in += delta.bytes_in;
        s.bytes_out += delta.bytes_out;
        s.changes_applied += delta.changes_applied;
        s.changes_refused += delta.changes_refused;
        s.sync_errors += delta.sync_errors;
    }

    /// Updates the gauges of a site.
    pub(crate) fn set_site(&self, site: &SiteId, f: impl FnOnce(&mut SiteStats)) {
        f(lock(&self.sites).entry(site.clone()).or_default());
    }

    /// The gauges and counters of every site seen since the cloud started.
    pub(crate) fn sites(&self) -> BTreeMap<SiteId, SiteStats> {
        lock(&self.sites).clone()
    }

    /// The totals counted so far.
    pub(crate) fn totals(&self) -> EngineMetrics {
        lock(&self.totals).clone()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self) -> String {
        let t = self.totals();
        let sites = lock(&self.sites).clone();
        let mut out = String::with_capacity(4096 + sites.len() * 512);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let connected: u64 = sites.values().map(|s| s.connected).sum();
        let loaded = sites.values().filter(|s| s.loaded).count() as u64;
        let docs: u64 = sites.values().map(|s| s.documents_loaded).sum();
        let backlog: u64 = sites.values().map(|s| s.backlog).sum();
        metric(
            "outpost_connected_peers",
            "gauge",
            "Devices connected now, all sites.",
            connected,
        );
        metric(
            "outpost_sites_loaded",
            "gauge",
            "Sites whose sync engine is in memory.",
            loaded,
        );
        metric(
            "outpost_documents_loaded",
            "gauge",
            "Documents in memory, all sites.",
            docs,
        );
        metric(
            "outpost_backlog_changes",
            "gauge",
            "Changes held by the cloud that known devices lack, all sites.",
            backlog,
        );
        metric(
            "outpost_connections_accepted_total",
            "counter",
            "Connections that completed the mutual-TLS handshake.",
            self.connections_accepted.load(Relaxed),
        );
        metric(
            "outpost_handshake_failures_total",
            "counter",
            "Incoming connections whose handshake failed (bad or revoked certificates included).",
            self.handshake_failures.load(Relaxed),
        );
        metric(
            "outpost_connections_refused_total",
            "counter",
            "Authenticated connections refused (cloud-to-cloud, shutting down).",
            self.connections_refused.load(Relaxed),
        );
        metric(
            "outpost_bytes_in_total",
            "counter",
            "Sync bytes received from devices.",
            t.bytes_in,
        );
        metric(
            "outpost_bytes_out_total",
            "counter",
            "Sync bytes sent to devices.",
            t.bytes_out,
        );
        metric(
            "outpost_messages_in_total",
            "counter",
            "Sync messages received.",
            t.messages_in,
        );
        metric(
            "outpost_messages_out_total",
            "counter",
            "Sync messages sent.",
            t.messages_out,
        );
        metric(
            "outpost_changes_applied_total",
            "counter",
            "Changes received from devices and applied.",
            t.changes_applied,
        );
        metric(
            "outpost_changes_refused_total",
            "counter",
            "Changes received and refused by the access policy.",
            t.changes_refused,
        );
        metric(
            "outpost_sync_errors_total",
            "counter",
            "Messages that could not be decoded or applied.",
            t.sync_errors,
        );
        metric(
            "outpost_storage_errors_total",
            "counter",
            "Writes of received changes or sync state that storage refused (disk full, I/O).",
            t.storage_errors,
        );
        metric(
            "outpost_revocations_learned_total",
            "counter",
            "Revocations signed by the fleet CA that sites learnt (from devices or the operator).",
            t.revocations_learned,
        );
        type Field = fn(&SiteStats) -> u64;
        let per_site: [(&str, &str, &str, Field); 10] = [
            (
                "outpost_site_last_seen_seconds",
                "gauge",
                "When a device of the site was last heard from, in seconds since the Unix epoch (0: not since the cloud started).",
                |s| s.last_seen_ms / 1000,
            ),
            (
                "outpost_site_devices",
                "gauge",
                "Devices of the site that the cloud knows (ever synced, not revoked).",
                |s| s.devices,
            ),
            (
                "outpost_site_stored_bytes",
                "gauge",
                "Bytes of the site's documents in storage (their chunks; measured after activity, at most every 10 s).",
                |s| s.stored_bytes,
            ),
            (
                "outpost_site_connected_peers",
                "gauge",
                "Devices of the site connected now.",
                |s| s.connected,
            ),
            (
                "outpost_site_backlog_changes",
                "gauge",
                "Changes held by the cloud that known devices of the site lack (as of its last activity).",
                |s| s.backlog,
            ),
            (
                "outpost_site_bytes_in_total",
                "counter",
                "Sync bytes received from the site's devices.",
                |s| s.bytes_in,
            ),
            (
                "outpost_site_bytes_out_total",
                "counter",
                "Sync bytes sent to the site's devices.",
                |s| s.bytes_out,
            ),
            (
                "outpost_site_changes_applied_total",
                "counter",
                "Changes from the site's devices applied.",
                |s| s.changes_applied,
            ),
            (
                "outpost_site_changes_refused_total",
                "counter",
                "Changes from the site's devices refused by the access policy.",
                |s| s.changes_refused,
            ),
            (
                "outpost_site_sync_errors_total",
                "counter",
                "Messages from the site's devices that could not be used.",
                |s| s.sync_errors,
            ),
        ];
        for (name, kind, help, field) in per_site {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (site, s) in &sites {
                let _ = writeln!(out, "{name}{{site=\"{site}\"}} {}", field(s));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_totals_and_sites() {
        let m = Metrics::default();
        let site: SiteId = "paris".parse().expect("site");
        let mut last = EngineMetrics::default();
        let now = EngineMetrics {
            bytes_in: 10,
            changes_applied: 2,
            ..EngineMetrics::default()
        };
        m.add_engine_delta(&site, &mut last, &now);
        m.add_engine_delta(&site, &mut last, &now);
        m.set_site(&site, |s| {
            s.connected = 2;
            s.backlog = 5;
        });
        let text = m.render();
        assert!(text.contains("outpost_bytes_in_total 10\n"), "{text}");
        assert!(text.contains("outpost_changes_applied_total 2\n"), "{text}");
        assert!(text.contains("outpost_connected_peers 2\n"), "{text}");
        assert!(
            text.contains("outpost_site_backlog_changes{site=\"paris\"} 5\n"),
            "{text}"
        );
    }
}
