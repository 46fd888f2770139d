//! Live values: a document or path, the sync status, or a query, as a stream of values the
//! app awaits (`next()`), which the Kotlin and Swift layers turn into a `Flow` and an
//! `AsyncStream`.
//!
//! Each watch is one task on the node's runtime (no thread of its own) that drains the
//! store's change notifications, works out the new value once per batch of changes, and
//! puts it in a one-value slot (a `tokio::sync::watch` channel): values are conflated, so a
//! slow collector gets the latest value, never a backlog, and nothing grows while it is
//! slow. `next()` returns the current value first, then each different value, and `None`
//! once the watch is ended (`cancel()`, the handle dropped, or the node shut down).
//!
//! The task holds the node weakly: a watch, or a collector that captures the node, never
//! keeps a node alive.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use outpost_core::{DocumentId, Pointer, SubscriptionFilter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{OutpostError, Result};
use crate::outpost::Outpost;
use crate::query::{Query, QueryDiff, QueryItem, QueryState};
use crate::types::SyncStatus;

/// Counts running subscription and watch tasks (`Outpost.liveTasks`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LiveTasks(Arc<std::sync::atomic::AtomicU32>);

impl LiveTasks {
    pub(crate) fn track(&self) -> Tracked {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tracked(self.0.clone())
    }

    pub(crate) fn count(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Held by a running task; dropped (aborted or finished) it counts off.
pub(crate) struct Tracked(Arc<std::sync::atomic::AtomicU32>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The value of a document or path at one moment.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Snapshot {
    /// The value as JSON text; `None` when the document does not exist here yet (not synced)
    /// or nothing is at the path.
    pub json: Option<String>,
    /// Whether the document exists here: `false` means "not synced yet", `true` with a
    /// `None` value means "synced, and nothing at the path".
    pub document_exists: bool,
}

/// The result of a live query at one moment.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct QueryResult {
    /// The matching items, sorted, at most `limit`.
    pub items: Vec<QueryItem>,
    /// How many items match (before `limit`).
    pub total: u64,
    /// How `items` differ from the previous result this watch returned (keys, positions).
    pub diff: QueryDiff,
}

type Slot<T> = Option<std::result::Result<T, OutpostError>>;

/// The receiving end shared by the three watch objects.
struct Receiver<T> {
    rx: tokio::sync::Mutex<watch::Receiver<Slot<T>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Clone + Send + Sync> Receiver<T> {
    fn new(rx: watch::Receiver<Slot<T>>, task: JoinHandle<()>) -> Self {
        Receiver {
            rx: tokio::sync::Mutex::new(rx),
            task: Mutex::new(Some(task)),
        }
    }

    /// The next value different from the last one returned; the current one first.
    async fn next(&self) -> Result<Option<T>> {
        let mut rx = self.rx.lock().await;
        loop {
            // Waits without a runtime: a watch channel needs none, so foreign executors may
            // poll this future directly.
            if rx.changed().await.is_err() {
                return Ok(None);
            }
            let value = rx.borrow_and_update().clone();
            match value {
                None => continue,
                Some(Ok(v)) => return Ok(Some(v)),
                Some(Err(e)) => return Err(e),
            }
        }
    }

    fn close(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Publishes `value` if it differs from what the slot holds.
fn publish<T: PartialEq>(tx: &watch::Sender<Slot<T>>, value: std::result::Result<T, OutpostError>) {
    tx.send_if_modified(|slot| {
        let same = match (&*slot, &value) {
            (Some(Ok(a)), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            *slot = Some(value);
        }
        !same
    });
}

/// A live document or path (`Outpost.watch`).
#[derive(uniffi::Object)]
pub struct ValueWatch {
    inner: Receiver<Snapshot>,
}

#[uniffi::export]
impl ValueWatch {
    /// The current value at once, then each new value (conflated: only the latest if several
    /// changes came meanwhile); `None` once ended.
    pub async fn next(&self) -> Result<Option<Snapshot>> {
        self.inner.next().await
    }

    /// Ends the watch: a pending and every later `next()` returns `None`. (Not `close`,
    /// which Kotlin's `AutoCloseable` already names: it frees the handle, and ends the watch
    /// too, as dropping it in Swift or Python does.)
    pub fn cancel(&self) {
        self.inner.close();
    }
}

/// The live sync status (`Outpost.watchStatus`).
#[derive(uniffi::Object)]
pub struct StatusWatch {
    inner: Receiver<SyncStatus>,
}

#[uniffi::export]
impl StatusWatch {
    /// The current status at once, then each different status; `None` once ended.
    pub async fn next(&self) -> Result<Option<SyncStatus>> {
        self.inner.next().await
    }

    /// Ends the watch.
    pub fn cancel(&self) {
        self.inner.close();
    }
}

/// A live query (`Outpost.watchQuery`).
#[derive(uniffi::Object)]
pub struct QueryWatch {
    inner: Receiver<QueryResult>,
    /// The items `next()` returned last: results are conflated, so a diff is worked out
    /// against what this collector saw, not against the previous evaluation.
    last: tokio::sync::Mutex<Option<Vec<QueryItem>>>,
}

#[uniffi::export]
impl QueryWatch {
    /// The current result at once, then each different result, with its `diff` from the
    /// previous one returned (conflated: results in between are skipped, and the diff spans
    /// them); `None` once ended.
    pub async fn next(&self) -> Result<Option<QueryResult>> {
        let mut last = self.last.lock().await;
        let Some(mut result) = self.inner.next().await? else {
            return Ok(None);
        };
        result.diff = crate::query::diff(last.as_deref(), &result.items);
        *last = Some(result.items.clone());
        Ok(Some(result))
    }

    /// Ends the watch.
    pub fn cancel(&self) {
        self.inner.close();
    }
}

/// Waits for the next batch of changes and returns their paths; `None` when the store or the
/// watch is gone.
async fn next_changes<T>(
    changes: &mut outpost_core::Subscription,
    tx: &watch::Sender<Slot<T>>,
) -> Option<Vec<String>> {
    let first = tokio::select! {
        c = changes.recv() => c?,
        () = tx.closed() => return None,
    };
    let mut paths = first.paths;
    // Conflate what came meanwhile into one evaluation.
    while let Some(c) = changes.try_recv() {
        paths.extend(c.paths);
    }
    Some(paths)
}

pub(crate) fn watch_value(node: &Arc<Outpost>, doc: String, path: String) -> Result<ValueWatch> {
    let id: DocumentId = doc.parse()?;
    let prefix = Pointer::parse(&path)?;
    // Paths are needed for the store to tell which changes touch the prefix.
    let changes = node.store_for_watch()?.subscribe(SubscriptionFilter {
        doc: Some(id),
        prefix: Some(prefix),
        paths: true,
    });
    let weak = Arc::downgrade(node);
    let (tx, rx) = watch::channel(None);
    let tracked = node.track();
    let task = node.runtime_handle().spawn(async move {
        let _tracked = tracked;
        let mut changes = changes;
        loop {
            let Some(node) = weak.upgrade() else { return };
            // A read of a large document takes milliseconds: off the worker's async duties
            // (as the query's evaluation), so the runtime's other tasks go on meanwhile.
            let read = tokio::task::block_in_place(|| node.get_blocking(doc.clone(), path.clone()));
            let value = match read {
                Ok(json) => Ok(Snapshot {
                    json,
                    document_exists: true,
                }),
                Err(OutpostError::UnknownDocument { .. }) => Ok(Snapshot {
                    json: None,
                    document_exists: false,
                }),
                Err(e) => Err(e),
            };
            drop(node);
            if matches!(value, Err(OutpostError::ShutDown { .. })) {
                return;
            }
            publish(&tx, value);
            if next_changes(&mut changes, &tx).await.is_none() {
                return;
            }
        }
    });
    Ok(ValueWatch {
        inner: Receiver::new(rx, task),
    })
}

pub(crate) fn watch_status(node: &Arc<Outpost>) -> Result<StatusWatch> {
    let mut events = node.events_for_watch()?;
    // Local writes raise the unsynced count; which document does not matter, so no paths.
    let mut writes = node.store_for_watch()?.subscribe(SubscriptionFilter {
        doc: None,
        prefix: None,
        paths: false,
    });
    let weak: Weak<Outpost> = Arc::downgrade(node);
    let (tx, rx) = watch::channel(None);
    let tracked = node.track();
    let task = node.runtime_handle().spawn(async move {
        let _tracked = tracked;
        loop {
            let Some(node) = weak.upgrade() else { return };
            let status = node.clone().status().await;
            drop(node);
            if matches!(status, Err(OutpostError::ShutDown { .. })) {
                return;
            }
            publish(&tx, status);
            // Pushed, not polled: the status is read again when something that changes it
            // happens: a link event (connect, disconnect, in sync with a peer, changes
            // received or refused) or a local write.
            let event = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await.err(),
                    // No node (openLocal): only local writes.
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                e = event => {
                    if matches!(e, Some(tokio::sync::broadcast::error::RecvError::Closed)) {
                        events = None;
                    }
                }
                w = writes.recv() => {
                    if w.is_none() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
            // A burst (a sync round, a batch of writes) becomes one read of the status.
            while writes.try_recv().is_some() {}
            if let Some(rx) = events.as_mut() {
                while rx.try_recv().is_ok() {}
            }
        }
    });
    Ok(StatusWatch {
        inner: Receiver::new(rx, task),
    })
}

/// Waits until `doc` exists here (written here or received from a peer), at most `timeout`;
/// returns whether it does. Subscribes before looking, so that an arrival in between is seen;
/// holds the store only while it looks (a shutdown meanwhile is not held up: then `false`).
pub(crate) async fn await_document(
    node: Weak<Outpost>,
    doc: DocumentId,
    timeout: Duration,
) -> Result<bool> {
    let exists = |node: &Weak<Outpost>| -> Result<bool> {
        let Some(store) = node.upgrade().and_then(|n| n.store_for_watch().ok()) else {
            return Ok(false);
        };
        tokio::task::block_in_place(|| match store.get(&doc, "") {
            Ok(_) => Ok(true),
            Err(outpost_core::Error::UnknownDocument { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        })
    };
    let Some(mut changes) = node.upgrade().and_then(|n| {
        n.store_for_watch().ok().map(|s| {
            s.subscribe(SubscriptionFilter {
                doc: Some(doc.clone()),
                prefix: None,
                paths: false,
            })
        })
    }) else {
        return Err(OutpostError::shut_down());
    };
    if exists(&node)? {
        return Ok(true);
    }
    let arrived = tokio::time::timeout(timeout, async {
        while changes.recv().await.is_some() {
            if exists(&node).unwrap_or(false) {
                return true;
            }
        }
        false
    })
    .await;
    Ok(arrived.unwrap_or(false))
}

pub(crate) fn watch_query(node: &Arc<Outpost>, doc: String, query: Query) -> Result<QueryWatch> {
    let id: DocumentId = doc.parse()?;
    let mut state = QueryState::new(id.clone(), &query)?;
    let changes = node.store_for_watch()?.subscribe(SubscriptionFilter {
        doc: Some(id),
        prefix: Some(state.collection().clone()),
        paths: true,
    });
    let weak = Arc::downgrade(node);
    let (tx, rx) = watch::channel(None);
    let tracked = node.track();
    let task = node.runtime_handle().spawn(async move {
        let _tracked = tracked;
        let mut changes = changes;
        let mut paths: Option<Vec<String>> = None;
        loop {
            let Some(node) = weak.upgrade() else { return };
            let store = match node.store_for_watch() {
                Ok(s) => s,
                Err(_) => return,
            };
            drop(node);
            // A full evaluation of a large document takes milliseconds: off the worker's
            // async duties, as the other tasks of the runtime must go on.
            let result = tokio::task::block_in_place(|| match &paths {
                None => state.evaluate(&store),
                Some(p) => state.update(&store, p),
            });
            drop(store);
            publish(&tx, result);
            match next_changes(&mut changes, &tx).await {
                Some(p) => paths = Some(p),
                None => return,
            }
        }
    });
    Ok(QueryWatch {
        inner: Receiver::new(rx, task),
        last: tokio::sync::Mutex::new(None),
    })
}
