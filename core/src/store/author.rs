//! Another identity a store writes as: the cloud's head-office API.

use automerge::ActorId;

use crate::signing::SharedSigner;
use crate::PeerInfo;

/// An identity other than the store's own that local writes can be authored as
/// ([`super::Store::transact_as`]): the cloud writes what head office sends through its API
/// as head office, under an actor of that identity, signed with its certificate key, and
/// checked against the policy's rules for its role, so that every receiver judges the
/// change as it would a head-office device's (issue 27), not as the cloud's (which may write
/// everything).
#[derive(Clone)]
pub struct Author {
    info: PeerInfo,
    actor: ActorId,
    signer: SharedSigner,
}

impl Author {
    /// The identity `info` (its certificate's), signing with `signer` (whose certificate
    /// must name `info`), under a fresh actor: actors never repeat, so each process that
    /// writes as this identity writes under its own.
    pub fn new(info: PeerInfo, signer: SharedSigner) -> Author {
        let actor = crate::actor::actor_for(&info, rand::random());
        Author {
            info,
            actor,
            signer,
        }
    }

    /// The identity.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }

    /// The actor its changes carry.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    pub(super) fn signer(&self) -> &SharedSigner {
        &self.signer
    }
}

impl std::fmt::Debug for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Author")
            .field("info", &self.info)
            .field("actor", &self.actor.to_hex_string())
            .finish()
    }
}
