//! Change and link events delivered to a foreign callback, on a thread of their own.
//!
//! A task on the node's runtime merges the store's change notifications and the node's
//! link events into an unbounded channel; a dedicated thread per subscription drains it
//! and calls the listener. A slow listener therefore delays only its own later events,
//! never the node, the sync engine or the caller that wrote.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use outpost_core::DocumentId;
use outpost_core::Event;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use crate::error::{panic_message, OutpostError, Result};
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

/// A live subscription, returned by `Outpost.subscribe`.
///
/// It lasts until `cancel` or until the node shuts down; dropping the handle does not end it
/// (garbage collectors drop handles at unpredictable times).
#[derive(Debug, uniffi::Object)]
pub struct Subscription {
    task: Mutex<Option<JoinHandle<()>>>,
    cancelled: Arc<AtomicBool>,
}

impl Subscription {
    /// A subscription that `cancel` ends by aborting `task`.
    pub(crate) fn of_task(task: JoinHandle<()>, cancelled: Arc<AtomicBool>) -> Subscription {
        Subscription {
            task: Mutex::new(Some(task)),
            cancelled,
        }
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops delivering events. Returns at once; an event being delivered finishes.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

enum Delivery {
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

/// Starts delivering to `listener`.
pub(crate) fn start(
    runtime: &tokio::runtime::Handle,
    mut changes: outpost_core::Subscription,
    mut events: Option<broadcast::Receiver<Event>>,
    doc: Option<DocumentId>,
    listener: Arc<dyn NodeListener>,
) -> Result<Subscription> {
    let (tx, rx) = mpsc::channel::<Delivery>();
    let cancelled = Arc::new(AtomicBool::new(false));
    let thread_cancelled = cancelled.clone();
    std::thread::Builder::new()
        .name("outpost-listener".into())
        .spawn(move || {
            while let Ok(delivery) = rx.recv() {
                if thread_cancelled.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(payload) =
                    catch_unwind(AssertUnwindSafe(|| delivery.deliver(listener.as_ref())))
                {
                    tracing::warn!(
                        error = %panic_message(payload.as_ref()),
                        "a NodeListener method failed; delivering the next event"
                    );
                }
            }
        })
        .map_err(|e| {
            OutpostError::Internal(format!(
                "cannot start the listener thread ({e}); the system is out of threads or memory"
            ))
        })?;
    let task = runtime.spawn(async move {
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
            if tx.send(delivery).is_err() {
                break;
            }
        }
    });
    Ok(Subscription {
        task: Mutex::new(Some(task)),
        cancelled,
    })
}
