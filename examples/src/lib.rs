//! Helpers shared by the outpost examples: waiting for a value to show up on a node, and a
//! timeline printer.

use std::time::{Duration, Instant};

use outpost_core::{DocumentId, Store, SubscriptionFilter};
use serde_json::Value;

/// Prints lines prefixed with the time since the start of the program.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    start: Instant,
}

impl Timeline {
    /// A timeline starting now.
    pub fn start() -> Self {
        Timeline {
            start: Instant::now(),
        }
    }

    /// Prints one line of the timeline.
    pub fn say(&self, line: impl std::fmt::Display) {
        println!("[{:>7.3}s] {line}", self.start.elapsed().as_secs_f64());
    }

    /// Prints a section heading.
    pub fn step(&self, title: impl std::fmt::Display) {
        println!();
        self.say(format!("== {title}"));
    }
}

/// Waits until the value at `path` of `doc` in `store` satisfies `ok`, reacting to the
/// store's change notifications (no polling). Returns how long it took since `since`.
pub async fn wait_for(
    store: &Store,
    doc: &DocumentId,
    path: &str,
    since: Instant,
    timeout: Duration,
    ok: impl Fn(Option<&Value>) -> bool,
) -> anyhow::Result<Duration> {
    let mut sub = store.subscribe(SubscriptionFilter::doc(doc.clone()));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = match store.get(doc, path) {
            Ok(v) => v,
            Err(outpost_core::Error::UnknownDocument { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if ok(current.as_ref()) {
            return Ok(since.elapsed());
        }
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("the store of {doc} closed while waiting for {path}"),
            Err(_) => anyhow::bail!(
                "timed out after {timeout:?} waiting for {doc}{path} (now {current:?})"
            ),
        }
    }
}

/// The p-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let idx = ((samples.len() - 1) * p.min(100)).div_ceil(100);
    samples[idx]
}
