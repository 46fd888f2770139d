//! Change and link events delivered to a foreign callback, off the caller's thread.
//!
//! Per subscription, one task on the node's runtime drains the store's change
//! notifications and the node's link events into a bounded queue ([`Pending`]), and a
//! second task takes events from it and calls the listener on the runtime's blocking pool
//! (threads shared by all subscriptions, made on demand). A slow listener delays only its
//! own later events, never the node, the sync engine or the caller that wrote; while it is
//! slow, changes to the same document are merged into one event (the union of their
//! paths), so the queue stays within [`MAX_PENDING`] events.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use outpost_core::DocumentId;
use outpost_core::Event;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{panic_message, Result};
use crate::types::{ChangeEvent, PeerIdentity, RefusedChange};

/// What an app implements to hear about changes and links.
///
/// Methods are called on a thread owned by the subscription, one event at a time and in
/// order, never on the thread that subscribed or wrote. They may call back into the node
/// (e.g. `get`). An exception thrown by a method is logged and the next event delivered.
#[uniffi::export(foreign)]
pub trait NodeListener: Send + Sync {
    /// A document changed, here or on another device.
    fn on_change(&self, event: ChangeEvent);
    /// A link to a peer came up.
    fn on_peer_connected(&self, peer: PeerIdentity);
    /// The link to a peer went down.
    fn on_peer_disconnected(&self, peer: PeerIdentity);
    /// Changes were refused by the access policy, by this node or by the peer.
    fn on_change_refused(&self, refused: RefusedChange);
}

/// Events waiting for a listener, at most this many (changes to one document are merged
/// beyond it; a link event is dropped, oldest first, with a warning).
pub(crate) const MAX_PENDING: usize = 256;

/// Changed paths one merged change event carries at most; beyond, it carries the root
/// path `""` (the whole document changed), which every filter matches.
pub(crate) const MAX_MERGED_PATHS: usize = 1024;

/// A live subscription, returned by `Outpost.subscribe` and `Outpost.consume`.
///
/// It lasts until `cancel`, until the handle is dropped (Kotlin `close()` or garbage
/// collection, Swift deinit, Python `del`), or until the node shuts down; keep the handle
/// for as long as the app wants events, as with Realm's notification tokens. The
/// subscription holds the listener, never the other way round, so a listener that
/// captures the node makes no cycle that outlives the handle.
#[derive(Debug, uniffi::Object)]
pub struct Subscription {
    tasks: Mutex<Vec<JoinHandle<()>>>,
    cancelled: Arc<AtomicBool>,
}

impl Subscription {
    /// A subscription that `cancel` (or drop) ends by aborting `task`.
    pub(crate) fn of_task(task: JoinHandle<()>, cancelled: Arc<AtomicBool>) -> Subscription {
        Subscription {
            tasks: Mutex::new(vec![task]),
            cancelled,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops delivering events and releases the listener. Returns at once; an event being
    /// delivered finishes.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub(crate) enum Delivery {
    Change(ChangeEvent),
    Connected(PeerIdentity),
    Disconnected(PeerIdentity),
    Refused(RefusedChange),
}

impl Delivery {
    /// The app-facing form of a node event, if apps see it and it passes the filter.
    fn from_node(event: Event, doc: Option<&DocumentId>) -> Option<Delivery> {
        let wanted = |d: &DocumentId| doc.is_none_or(|f| f == d);
        match event {
            Event::PeerConnected(p) => Some(Delivery::Connected((&p).into())),
            Event::PeerDisconnected(p) => Some(Delivery::Disconnected((&p).into())),
            Event::ChangeRefused { peer, doc, reason } if wanted(&doc) => {
                Some(Delivery::Refused(RefusedChange {
                    peer: peer.to_string(),
                    doc: doc.to_string(),
                    reason,
                    refused_by_peer: false,
                }))
            }
            Event::RefusedByPeer { peer, doc, reason } if wanted(&doc) => {
                Some(Delivery::Refused(RefusedChange {
                    peer: peer.to_string(),
                    doc: doc.to_string(),
                    reason,
                    refused_by_peer: true,
                }))
            }
            // Remote changes reach apps through the store's notifications, which carry the
            // same paths and also cover local writes.
            _ => None,
        }
    }

    fn deliver(self, listener: &dyn NodeListener) {
        match self {
            Delivery::Change(e) => listener.on_change(e),
            Delivery::Connected(p) => listener.on_peer_connected(p),
            Delivery::Disconnected(p) => listener.on_peer_disconnected(p),
            Delivery::Refused(r) => listener.on_change_refused(r),
        }
    }
}

/// The next node event, skipping over lag; pending forever without (or after) a node.
async fn next_node_event(events: &mut Option<broadcast::Receiver<Event>>) -> Event {
    loop {
        let Some(rx) = events.as_mut() else {
            return std::future::pending().await;
        };
        match rx.recv().await {
            Ok(e) => return e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "a listener fell behind the node's link events; the oldest were skipped"
                )
            }
            Err(RecvError::Closed) => *events = None,
        }
    }
}

/// The bounded queue between a subscription's two tasks.
#[derive(Default)]
pub(crate) struct Pending {
    queue: Mutex<VecDeque<Delivery>>,
    ready: Notify,
    dropped: std::sync::atomic::AtomicU64,
}

impl Pending {
    /// Queues `d`, merging it into a waiting change of the same document when it directly
    /// follows one from the same origin, or when the queue is full.
    pub(crate) fn push(&self, d: Delivery) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Delivery::Change(new) = &d {
            let merge_into = match q.back() {
                Some(Delivery::Change(last))
                    if last.doc == new.doc && last.origin == new.origin =>
                {
                    Some(q.len() - 1)
                }
                _ if q.len() >= MAX_PENDING => q
                    .iter()
                    .rposition(|w| matches!(w, Delivery::Change(c) if c.doc == new.doc)),
                _ => None,
            };
            if let (Some(i), Delivery::Change(new)) = (merge_into, &d) {
                if let Some(Delivery::Change(old)) = q.get_mut(i) {
                    merge_change(old, new);
                }
                drop(q);
                self.ready.notify_one();
                return;
            }
        }
        if q.len() >= MAX_PENDING {
            q.pop_front();
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                dropped = n,
                "a listener is too slow: an old event was dropped from its full queue"
            );
        }
        q.push_back(d);
        drop(q);
        self.ready.notify_one();
    }

    /// The oldest waiting event, waiting for one.
    pub(crate) async fn pop(&self) -> Delivery {
        loop {
            let ready = self.ready.notified();
            if let Some(d) = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            {
                return d;
            }
            ready.await;
        }
    }

    /// How many events wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// `old` followed by `new`: the union of their paths (the root beyond
/// [`MAX_MERGED_PATHS`]) at `new`'s heads.
fn merge_change(old: &mut ChangeEvent, new: &ChangeEvent) {
    if old.paths.iter().any(|p| p.is_empty()) {
        // Already the whole document.
    } else if new.paths.iter().any(|p| p.is_empty())
        || old.paths.len() + new.paths.len() > MAX_MERGED_PATHS
    {
        old.paths = vec![String::new()];
    } else {
        for p in &new.paths {
            if !old.paths.contains(p) {
                old.paths.push(p.clone());
            }
        }
    }
    old.heads.clone_from(&new.heads);
}

/// Starts delivering to `listener`.
pub(crate) fn start(
    runtime: &tokio::runtime::Handle,
    mut changes: outpost_core::Subscription,
    mut events: Option<broadcast::Receiver<Event>>,
    doc: Option<DocumentId>,
    listener: Arc<dyn NodeListener>,
    tracked: crate::live::Tracked,
) -> Result<Subscription> {
    let pending = Arc::new(Pending::default());
    let cancelled = Arc::new(AtomicBool::new(false));
    let stop = cancelled.clone();
    let queue = pending.clone();
    let deliver = runtime.spawn(async move {
        // Counted while the listener is held.
        let _tracked = tracked;
        loop {
            let delivery = queue.pop().await;
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let l = listener.clone();
            // On the blocking pool: a foreign method may block; the runtime's workers must not.
            let done = tokio::task::spawn_blocking(move || {
                if let Err(payload) =
                    catch_unwind(AssertUnwindSafe(|| delivery.deliver(l.as_ref())))
                {
                    tracing::warn!(
                        error = %panic_message(payload.as_ref()),
                        "a NodeListener method failed; delivering the next event"
                    );
                }
            })
            .await;
            if done.is_err() {
                return;
            }
        }
    });
    let pump = runtime.spawn(async move {
        loop {
            let delivery = tokio::select! {
                change = changes.recv() => match change {
                    Some(c) => Delivery::Change((&c).into()),
                    None => break,
                },
                event = next_node_event(&mut events) => {
                    match Delivery::from_node(event, doc.as_ref()) {
                        Some(d) => d,
                        None => continue,
                    }
                }
            };
            pending.push(delivery);
        }
    });
    Ok(Subscription {
        tasks: Mutex::new(vec![pump, deliver]),
        cancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ChangeOrigin;

    fn change(doc: &str, path: &str) -> Delivery {
        Delivery::Change(ChangeEvent {
            doc: doc.into(),
            paths: vec![path.into()],
            origin: ChangeOrigin::Local,
            heads: vec![],
        })
    }

    #[test]
    fn a_flood_of_changes_stays_within_the_bound() {
        let pending = Pending::default();
        // 100,000 changes to 1,000 documents, interleaved, with no one taking them.
        for i in 0..100_000 {
            pending.push(change(&format!("doc-{}", i % 1000), &format!("/k{i}")));
        }
        println!(
            "queued after 100,000 changes to 1,000 documents: {}",
            pending.len()
        );
        assert!(
            pending.len() <= MAX_PENDING,
            "{} events queued",
            pending.len()
        );
        // Consecutive changes to one document become one event with all their paths.
        let one = Pending::default();
        for i in 0..10 {
            one.push(change("menu", &format!("/p{i}")));
        }
        assert_eq!(one.len(), 1);
        let merged = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(one.pop());
        match merged {
            Delivery::Change(c) => assert_eq!(c.paths.len(), 10),
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn merged_paths_beyond_the_cap_become_the_root() {
        let pending = Pending::default();
        for i in 0..(MAX_MERGED_PATHS + 5) {
            pending.push(change("menu", &format!("/p{i}")));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        match rt.block_on(pending.pop()) {
            Delivery::Change(c) => assert_eq!(c.paths, vec![String::new()]),
            other => panic!("expected a change, got {other:?}"),
        }
    }
}
