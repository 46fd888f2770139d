//! Change notifications to apps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use automerge::{Automerge, ChangeHash};
use tokio::sync::mpsc;

use crate::value::patch_pointer;
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
#[derive(Clone, Debug, Default)]
pub struct SubscriptionFilter {
    /// Only this document, or all documents.
    pub doc: Option<DocumentId>,
    /// Only changes at or below (or above) this path.
    pub prefix: Option<Pointer>,
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
            prefix: None,
        }
    }

    /// Changes to one document that touch `prefix`.
    pub fn path(doc: DocumentId, prefix: Pointer) -> Self {
        SubscriptionFilter {
            doc: Some(doc),
            prefix: Some(prefix),
        }
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
    id: u64,
    filter: SubscriptionFilter,
    tx: mpsc::UnboundedSender<ChangeEvent>,
}

#[derive(Default)]
pub(super) struct Subscribers {
    next: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

impl Subscribers {
    pub(super) fn add(&self, filter: SubscriptionFilter) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Entry { id, filter, tx });
        Subscription { rx }
    }

    /// Sends the change from `before` to the document's current heads to every interested subscriber.
    pub(super) fn notify(
        &self,
        doc_id: &DocumentId,
        doc: &Automerge,
        before: &[ChangeHash],
        origin: Origin,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !e.tx.is_closed());
        let interested: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.filter.doc.as_ref().is_none_or(|d| d == doc_id))
            .collect();
        if interested.is_empty() {
            return;
        }
        let after = doc.get_heads();
        let mut paths: Vec<Pointer> = doc.diff(before, &after).iter().map(patch_pointer).collect();
        paths.dedup();
        let heads: Vec<String> = after.iter().map(|h| h.to_string()).collect();
        for e in interested {
            let selected: Vec<String> = match &e.filter.prefix {
                None => paths.iter().map(|p| p.to_string()).collect(),
                Some(prefix) => paths
                    .iter()
                    .filter(|p| p.overlaps(prefix))
                    .map(|p| p.to_string())
                    .collect(),
            };
            if selected.is_empty() && e.filter.prefix.is_some() {
                continue;
            }
            let _ = e.id;
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
