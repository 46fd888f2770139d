//! The two steps every loop that drives an [`Engine`] over [`Session`]s shares: the device
//! [`Node`](crate::Node) and each site of the cloud peer use them, so frames from replaced
//! connections, slow peers and oversized messages are handled the same way everywhere.

use std::collections::HashMap;

use outpost_core::{DocumentId, Engine, PeerId, Timestamp};

use crate::error::Error;
use crate::frame::CloseCode;
use crate::session::{Session, SessionId};

/// Hands a frame received on `session` from `peer` to the engine. A frame of a connection
/// that was since replaced is dropped; a message the engine cannot use is logged and the
/// link stays up.
pub fn deliver(
    engine: &mut Engine,
    sessions: &HashMap<PeerId, Session>,
    session: SessionId,
    peer: &PeerId,
    doc: Option<&DocumentId>,
    bytes: &[u8],
    now: Timestamp,
) {
    if sessions.get(peer).map(Session::id) != Some(session) {
        tracing::trace!(%peer, "dropping a frame of a replaced connection");
        return;
    }
    if let Err(error) = engine.handle_message(peer, bytes, now) {
        match doc {
            Some(doc) => tracing::warn!(%peer, %doc, %error, "message not applied"),
            None => tracing::warn!(%peer, %error, "message not applied"),
        }
    }
}

/// Moves every message the engine wants to send into the sessions' bounded queues, without
/// waiting: a peer whose queue is full is closed as a slow peer.
pub fn send_transmits(engine: &mut Engine, sessions: &mut HashMap<PeerId, Session>) {
    while let Some(t) = engine.poll_transmit() {
        let Some(session) = sessions.get_mut(&t.to) else {
            tracing::debug!(peer = %t.to, "no connection for a queued message");
            continue;
        };
        match session.send(t.doc.as_ref(), t.bytes) {
            Ok(()) => {}
            Err(e @ Error::SendQueueFull { .. }) => {
                tracing::warn!(error = %e, "closing connection to a slow peer");
                session.close(CloseCode::SlowPeer);
            }
            Err(e @ Error::FrameTooLarge { .. }) => {
                tracing::error!(peer = %t.to, error = %e, "message not sent")
            }
            Err(e) => tracing::debug!(peer = %t.to, error = %e, "message not sent"),
        }
    }
}
