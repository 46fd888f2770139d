//! Counters of the HTTP API, appended to `/metrics`. Labels come from fixed sets (the
//! endpoint names of the router and the status codes it answers), so their cardinality is
//! bounded whatever the requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct ApiMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    export_lines: AtomicU64,
}

impl ApiMetrics {
    /// Counts a request answered `status` by `endpoint` (a name of the router).
    pub(crate) fn count(&self, endpoint: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
    }

    pub(crate) fn add_export_lines(&self, n: u64) {
        self.export_lines.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP outpost_api_requests_total HTTP API requests by endpoint and status (4xx are refusals)."
        );
        let _ = writeln!(out, "# TYPE outpost_api_requests_total counter");
        for ((endpoint, status), n) in &requests {
            let _ = writeln!(
                out,
                "outpost_api_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let refused: u64 = requests
            .iter()
            .filter(|((_, s), _)| (400..500).contains(s))
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(
            out,
            "# HELP outpost_api_refused_total HTTP API requests refused (4xx)."
        );
        let _ = writeln!(out, "# TYPE outpost_api_refused_total counter");
        let _ = writeln!(out, "outpost_api_refused_total {refused}");
        let _ = writeln!(
            out,
            "# HELP outpost_api_export_lines_total NDJSON lines streamed by exports."
        );
        let _ = writeln!(out, "# TYPE outpost_api_export_lines_total counter");
        let _ = writeln!(
            out,
            "outpost_api_export_lines_total {}",
            self.export_lines.load(Ordering::Relaxed)
        );
        out
    }
}
