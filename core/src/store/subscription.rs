//! Change notifications to apps.

use std::sync::Mutex;

use automerge::ChangeHash;
use tokio::sync::mpsc;

use crate::{DocumentId, PeerId, Pointer};

/// Where a change came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Written through this store.
    Local,
    /// Received from a peer by sync.
    Remote(PeerId),
    /// Merged from Automerge bytes by `import`.
    Import,
    /// The document was found corrupt on disk and moved aside: it reads as unavailable
    /// until a peer sends it again (the sync engine asks for it at once).
    Quarantine,
}

/// What changed in a document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChangeEvent {
    /// The document.
    pub doc: DocumentId,
    /// The JSON Pointers of the values that changed (within the subscription's prefix).
    pub paths: Vec<String>,
    /// The document's heads after the change, hex encoded.
    pub heads: Vec<String>,
    /// Where the change came from.
    pub origin: Origin,
}

/// Which changes a subscription receives.
#[derive(Clone, Debug)]
pub struct SubscriptionFilter {
    /// Only this document, or all documents.
    pub doc: Option<DocumentId>,
    /// Only changes at or below (or above) this path.
    pub prefix: Option<Pointer>,
    /// Whether events carry the changed paths. Working them out costs time proportional to
    /// the change; a subscriber that only needs to know *which document* changed says `false`
    /// and, if no other subscriber wants paths, the store skips that work.
    pub paths: bool,
}

impl Default for SubscriptionFilter {
    fn default() -> Self {
        SubscriptionFilter {
            doc: None,
            prefix: None,
            paths: true,
        }
    }
}

impl SubscriptionFilter {
    /// Every change to every document.
    pub fn all() -> Self {
        SubscriptionFilter::default()
    }

    /// Every change to one document.
    pub fn doc(doc: DocumentId) -> Self {
        SubscriptionFilter {
            doc: Some(doc),
            ..Default::default()
        }
    }

    /// Changes to one document that touch `prefix`.
    pub fn path(doc: DocumentId, prefix: Pointer) -> Self {
        SubscriptionFilter {
            doc: Some(doc),
            prefix: Some(prefix),
            paths: true,
        }
    }

    /// The same filter, with events that do not carry paths (empty `paths`).
    pub fn without_paths(mut self) -> Self {
        self.paths = false;
        self.prefix = None;
        self
    }

    fn matches(&self, doc: &DocumentId) -> bool {
        self.doc.as_ref().is_none_or(|d| d == doc)
    }
}

/// A stream of [`ChangeEvent`]s. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<ChangeEvent>,
}

impl Subscription {
    /// Waits for the next event; `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<ChangeEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ChangeEvent> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next event, blocking the thread (not for use inside async code).
    pub fn blocking_recv(&mut self) -> Option<ChangeEvent> {
        self.rx.blocking_recv()
    }
}

struct Entry {
    filter: SubscriptionFilter,
    tx: mpsc::UnboundedSender<ChangeEvent>,
}

#[derive(Default)]
pub(super) struct Subscribers {
    entries: Mutex<Vec<Entry>>,
}

impl Subscribers {
    pub(super) fn add(&self, filter: SubscriptionFilter) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Entry { filter, tx });
        Subscription { rx }
    }

    /// Whether any live subscriber wants events about `doc`.
    pub(super) fn interested(&self, doc: &DocumentId) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .any(|e| !e.tx.is_closed() && e.filter.matches(doc))
    }

    /// Whether any live subscriber wants the changed paths of `doc`.
    pub(super) fn wants_paths(&self, doc: &DocumentId) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .any(|e| !e.tx.is_closed() && e.filter.paths && e.filter.matches(doc))
    }

    /// Sends a change, with the paths it touched, to every interested subscriber.
    pub(super) fn notify(
        &self,
        doc_id: &DocumentId,
        heads: &[ChangeHash],
        mut paths: Vec<Pointer>,
        origin: Origin,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !e.tx.is_closed());
        let interested: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.filter.matches(doc_id))
            .collect();
        if interested.is_empty() {
            return;
        }
        paths.sort_by_cached_key(|p| p.to_string());
        paths.dedup();
        let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
        for e in interested {
            let selected: Vec<String> = match (&e.filter.prefix, e.filter.paths) {
                (_, false) => Vec::new(),
                (None, true) => paths.iter().map(|p| p.to_string()).collect(),
                (Some(prefix), true) => paths
                    .iter()
                    .filter(|p| p.overlaps(prefix))
                    .map(|p| p.to_string())
                    .collect(),
            };
            if selected.is_empty() && e.filter.prefix.is_some() {
                continue;
            }
            // A closed receiver is removed on the next notification.
            let _ = e.tx.send(ChangeEvent {
                doc: doc_id.clone(),
                paths: selected,
                heads: heads.clone(),
                origin: origin.clone(),
            });
        }
    }
}
