//! Every event of the node as a typed value the app awaits (`Outpost.events()`): links,
//! refusals, revocations, sync and storage failures. The Kotlin and Swift layers make it a
//! `Flow<NodeEvent>` (a sealed class) and an `AsyncThrowingStream<NodeEvent>` (an enum).
//!
//! A stream is a receiver of the node's broadcast channel: it holds nothing of the node,
//! needs no task, and waits without a runtime (tokio's channels need none), so a foreign
//! executor may poll `next()` directly. Events sent while no one awaits are kept, up to
//! [`outpost_transport`]'s channel capacity (1024); a stream that falls further behind gets
//! one [`NodeEvent::Lagged`] saying how many it missed, never a silent gap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_core::Event;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Notify;

use crate::error::Result;
use crate::types::{PeerIdentity, RefusedChange};

/// Something that happened on the node's links or in its store, for the app to show or act
/// on. Kotlin: a sealed class `NodeEvent` with a subclass per case; Swift: an enum.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum NodeEvent {
    /// A link to a peer came up.
    PeerConnected {
        /// Who.
        peer: PeerIdentity,
    },
    /// The link to a peer went down.
    PeerDisconnected {
        /// Who.
        peer: PeerIdentity,
    },
    /// Changes were refused by the access policy (by this node, or by the peer when
    /// `refused.refusedByPeer`): show it, the write will not spread.
    ChangeRefused {
        /// What, by whom, why.
        refused: RefusedChange,
    },
    /// A connection was refused or closed by this node's rules (a revoked device, a peer of
    /// another site, a cut link); nothing of it reached the documents.
    ConnectionRefused {
        /// Who the connection claimed to be (from its verified certificate).
        peer: PeerIdentity,
        /// Why, e.g. `revoked`.
        reason: String,
    },
    /// The fleet CA revoked a device, learnt now (from the app's `revoke` or from a peer):
    /// its links close and its changes are refused. When `peer` is this device, it is cut
    /// off: show it and stop taking orders.
    Revoked {
        /// The device's site.
        site: String,
        /// The device id.
        peer: String,
        /// The operator's reason.
        reason: String,
    },
    /// This node and `peer` have the same state of `doc`, on disk: e.g. "the order reached
    /// the counter".
    InSync {
        /// The peer's device id.
        peer: String,
        /// The document.
        doc: String,
    },
    /// Changes from `peer` were applied to `doc` (their paths come with `subscribe` and
    /// the watches).
    RemoteChange {
        /// The peer's device id.
        peer: String,
        /// The document.
        doc: String,
        /// How many changes.
        changes: u64,
    },
    /// A peer sent something this node could not use; the link stays up. Usually peers of
    /// different versions: update the app on every device.
    ProtocolError {
        /// The peer's device id.
        peer: String,
        /// What went wrong.
        message: String,
    },
    /// Writing received changes or sync state to this device's disk failed (disk full,
    /// permissions): nothing is reported synced that is not on disk, and it is retried.
    /// Show it: the device needs space.
    StorageFailed {
        /// The peer it concerned, if one.
        peer: Option<String>,
        /// The document it concerned, if one.
        doc: Option<String>,
        /// The store's error.
        error: String,
    },
    /// This stream fell behind and `skipped` events were dropped (the app did not collect
    /// for a while); a status read gives the current state.
    Lagged {
        /// How many.
        skipped: u64,
    },
}

impl NodeEvent {
    /// The app-facing form of a node event; `None` for events apps do not see.
    pub(crate) fn from_core(event: Event) -> Option<NodeEvent> {
        Some(match event {
            Event::PeerConnected(p) => NodeEvent::PeerConnected { peer: (&p).into() },
            Event::PeerDisconnected(p) => NodeEvent::PeerDisconnected { peer: (&p).into() },
            Event::Revoked { revocation, .. } => NodeEvent::Revoked {
                site: revocation.site.to_string(),
                peer: revocation.peer.to_string(),
                reason: revocation.reason,
            },
            Event::ConnectionRefused { peer, code } => NodeEvent::ConnectionRefused {
                peer: (&peer).into(),
                reason: format!("{code:?}"),
            },
            Event::RemoteChange { peer, doc, changes } => NodeEvent::RemoteChange {
                peer: peer.to_string(),
                doc: doc.to_string(),
                changes: changes as u64,
            },
            Event::ChangeRefused { peer, doc, reason } => NodeEvent::ChangeRefused {
                refused: RefusedChange {
                    peer: peer.to_string(),
                    doc: doc.to_string(),
                    reason,
                    refused_by_peer: false,
                },
            },
            Event::RefusedByPeer { peer, doc, reason } => NodeEvent::ChangeRefused {
                refused: RefusedChange {
                    peer: peer.to_string(),
                    doc: doc.to_string(),
                    reason,
                    refused_by_peer: true,
                },
            },
            Event::InSync { peer, doc } => NodeEvent::InSync {
                peer: peer.to_string(),
                doc: doc.to_string(),
            },
            Event::ProtocolError { peer, message } => NodeEvent::ProtocolError {
                peer: peer.to_string(),
                message,
            },
            Event::StorageFailed { peer, doc, error } => NodeEvent::StorageFailed {
                peer: peer.map(|p| p.to_string()),
                doc: doc.map(|d| d.to_string()),
                error,
            },
            // Event is non-exhaustive: a new kind reaches apps once it has a case here.
            _ => return None,
        })
    }
}

/// The node's events from the moment `Outpost.events()` was called (`Outpost.events`).
#[derive(uniffi::Object)]
pub struct EventStream {
    rx: tokio::sync::Mutex<Option<broadcast::Receiver<Event>>>,
    cancelled: Arc<AtomicBool>,
    cancel: Notify,
}

impl EventStream {
    /// A stream of `rx`; `None` (a store without a node, `openLocal`) ends at once.
    pub(crate) fn new(rx: Option<broadcast::Receiver<Event>>) -> EventStream {
        EventStream {
            rx: tokio::sync::Mutex::new(rx),
            cancelled: Arc::new(AtomicBool::new(false)),
            cancel: Notify::new(),
        }
    }
}

#[uniffi::export]
impl EventStream {
    /// The next event, waiting for one; `None` once the stream ended (`cancel()`, the node
    /// shut down, or a store without network).
    pub async fn next(&self) -> Result<Option<NodeEvent>> {
        let mut guard = self.rx.lock().await;
        loop {
            // Made before the flag is read: a `cancel()` in between still wakes it.
            let cancelled = self.cancel.notified();
            if self.cancelled.load(Ordering::SeqCst) {
                *guard = None;
            }
            let Some(rx) = guard.as_mut() else {
                return Ok(None);
            };
            let received = tokio::select! {
                r = rx.recv() => r,
                () = cancelled => continue,
            };
            match received {
                Ok(event) => {
                    if let Some(e) = NodeEvent::from_core(event) {
                        return Ok(Some(e));
                    }
                }
                Err(RecvError::Lagged(skipped)) => return Ok(Some(NodeEvent::Lagged { skipped })),
                Err(RecvError::Closed) => *guard = None,
            }
        }
    }

    /// Ends the stream: a pending and every later `next()` returns `None`.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.cancel.notify_waiters();
    }
}
