//! What happens on the links of a peer: the one event type of the engine, the link layer and
//! the transport's runner (device nodes and cloud sites alike).

use crate::{CloseCode, DocumentId, PeerId, PeerInfo};

/// Something the driver, the app or an operator should know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A link to a peer came up.
    PeerConnected(PeerInfo),
    /// A device was revoked by the fleet CA (this engine learnt a new revocation): its links
    /// close, its handshakes are refused, and its changes are refused (see
    /// `outpost_core::revocation`).
    Revoked {
        /// What was revoked.
        revocation: crate::revocation::Revocation,
        /// The record as the CA signed it (to persist or forward).
        record: crate::revocation::SignedRevocation,
    },
    /// The link to a peer went down.
    PeerDisconnected(PeerInfo),
    /// A connection was refused or closed by this side's rules (our own id, a cut link, a
    /// peer id of another site, a revoked peer); nothing of it reached the engine.
    ConnectionRefused {
        /// Who the connection claimed to be, from its verified certificate.
        peer: PeerInfo,
        /// The close code sent.
        code: CloseCode,
    },
    /// A peer's changes were applied to a document. Apps that need the changed paths
    /// subscribe to the store (`Store::subscribe`), whose events carry them.
    RemoteChange {
        /// Who sent them.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// How many changes were added.
        changes: usize,
    },
    /// We refused a peer's changes: its role may not make them. Nothing was applied.
    ChangeRefused {
        /// The sender.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// Why.
        reason: String,
    },
    /// A peer refused our changes to a document; we stop offering it that document until
    /// the link is re-established.
    RefusedByPeer {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
        /// The peer's reason.
        reason: String,
    },
    /// A peer and this engine have the same heads of a document, and that is on disk.
    InSync {
        /// The peer.
        peer: PeerId,
        /// The document.
        doc: DocumentId,
    },
    /// A peer sent something the engine could not use (the link stays up).
    ProtocolError {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        message: String,
    },
    /// Writing sync bookkeeping or received changes to the store failed. Nothing is
    /// reported synced that did not reach the store; the exchange is retried (by timeout,
    /// and from the persisted state on the next session).
    StorageFailed {
        /// The peer the write concerned, if one.
        peer: Option<PeerId>,
        /// The document the write concerned, if one.
        doc: Option<DocumentId>,
        /// The store's error; check the disk (space, permissions).
        error: String,
    },
}
