//! Binding of Automerge actor ids to device identities.
//!
//! An outpost actor id is `outpost:<role>:<peer>:` followed by 8 random bytes. The random
//! tail makes a reinstalled device a new actor (Automerge requires each actor's sequence
//! numbers to be unique); the prefix says which device, in which role, authored a change,
//! so the sync engine can check every received change against the access policy.

use automerge::ActorId;

use crate::{PeerId, PeerInfo, Role};

const PREFIX: &[u8] = b"outpost:";

/// The device and role an actor id claims, if it is an outpost actor id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorClaim {
    /// The role the author claims.
    pub role: Role,
    /// The device that claims authorship.
    pub peer: PeerId,
}

/// A new actor id for `me`, with `tail` as its unique random part.
pub(crate) fn actor_for(me: &PeerInfo, tail: [u8; 8]) -> ActorId {
    let mut bytes = PREFIX.to_vec();
    bytes.extend_from_slice(me.role.as_str().as_bytes());
    bytes.push(b':');
    bytes.extend_from_slice(me.peer.as_str().as_bytes());
    bytes.push(b':');
    bytes.extend_from_slice(&tail);
    ActorId::from(bytes)
}

/// Parses the claim of an actor id; `None` for actors not made by outpost (imports, other apps).
pub fn parse_actor(actor: &ActorId) -> Option<ActorClaim> {
    let rest = actor.to_bytes().strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, |b| *b == b':');
    let role = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let peer = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    parts.next()?;
    Some(ActorClaim { role, peer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let me = PeerInfo::parse("paris", "kiosk-2", "kiosk").expect("valid");
        let a = actor_for(&me, [1, 2, 3, 4, 5, 6, 7, 8]);
        let claim = parse_actor(&a).expect("outpost actor");
        assert_eq!(claim.role.as_str(), "kiosk");
        assert_eq!(claim.peer.as_str(), "kiosk-2");
        assert_eq!(parse_actor(&ActorId::from(vec![1u8, 2, 3])), None);
    }
}
