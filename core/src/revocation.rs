//! Revocation that spreads: deny-list entries signed by the fleet CA, gossiped by sync.
//!
//! An operator revokes a device (a stolen kiosk) with the fleet CA's key
//! (`outpost cert revoke`). The result, a [`SignedRevocation`], is self-authenticating: any
//! peer may carry it, and a receiver keeps it only if the fleet CA's signature over its body
//! verifies ([`Verifier::verify_revocation`](crate::signing::Verifier::verify_revocation)).
//! So revocations travel through sync itself, in a message of their own
//! (`WireMessage::Revocations`, protocol 3) that every engine sends on connect and relays when
//! it learns a new one: a kiosk revoked through the cloud reaches every device of its site,
//! also through a kitchen display that never talks to the cloud, and also when the cloud is
//! later unreachable. The set of revocations only grows (a grow-only set of signed records:
//! it converges without any merge rule), which is why it is not an Automerge document: a
//! document would need a policy that lets every device write it, and a record's authority
//! comes from the CA's signature, not from who wrote it.
//!
//! What a known revocation does (see `core/docs/design.md`, "Revocation"):
//! - links to the device close, and its handshakes are refused (by the transport);
//! - changes new to a receiver that the revoked device authored are refused, also when a
//!   relay forwards them, unless a change of a device in good standing in the same message
//!   builds on them (it took them before the revocation reached it: refusing them would
//!   stall that document between the two forever).

use serde::{Deserialize, Serialize};

use crate::signing::KeyId;
use crate::{PeerId, PeerInfo, SiteId, Timestamp};

/// The most revocations a store keeps (default bound of the fleet's deny list; about 3 MB).
pub const MAX_REVOCATIONS: usize = 10_000;
/// The most revocations one `Revocations` message may carry.
pub const MAX_REVOCATIONS_PER_MESSAGE: usize = 1_000;
/// The largest encoded body of one revocation.
pub const MAX_REVOCATION_BYTES: usize = 1_024;
/// The longest reason an operator may give.
pub const MAX_REASON_CHARS: usize = 200;

const CONTEXT: &[u8] = b"outpost revocation v1\0";

/// What a revocation says: this device of this site (this one certificate of it, if `key`
/// is set) is no longer trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The site of the device.
    pub site: SiteId,
    /// The device.
    pub peer: PeerId,
    /// Only this certificate of the device (SHA-256 of its DER): a replacement device that
    /// reuses the name with a new certificate is not affected. `None`: every certificate.
    pub key: Option<KeyId>,
    /// When the operator revoked it.
    pub issued: Timestamp,
    /// Why, for logs and status (at most [`MAX_REASON_CHARS`]).
    pub reason: String,
}

/// A [`Revocation`] with the fleet CA's signature over its encoded body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRevocation {
    /// The encoded [`Revocation`].
    pub body: Vec<u8>,
    /// The CA's signature over [`SignedRevocation::signed_bytes`].
    pub signature: Vec<u8>,
}

/// Why a revocation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The body does not decode, or breaks a limit.
    #[error("malformed revocation: {0}; create revocations with `outpost cert revoke`")]
    Malformed(String),
}

impl Revocation {
    /// Encodes the body that the CA signs.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a revocation always encodes")
    }

    /// Decodes and checks a body.
    pub fn decode(body: &[u8]) -> Result<Revocation, RevocationError> {
        if body.len() > MAX_REVOCATION_BYTES {
            return Err(RevocationError::Malformed(format!(
                "{} bytes, over {MAX_REVOCATION_BYTES}",
                body.len()
            )));
        }
        let r: Revocation =
            postcard::from_bytes(body).map_err(|e| RevocationError::Malformed(e.to_string()))?;
        if r.reason.chars().count() > MAX_REASON_CHARS {
            return Err(RevocationError::Malformed(format!(
                "a reason over {MAX_REASON_CHARS} characters"
            )));
        }
        Ok(r)
    }

    /// Whether this revocation names the device `peer` of site `site` (any certificate).
    pub fn names(&self, site: &SiteId, peer: &PeerId) -> bool {
        &self.site == site && &self.peer == peer
    }

    /// Whether a connection of `peer` presenting certificate `key` is revoked.
    pub fn covers(&self, peer: &PeerInfo, key: Option<&KeyId>) -> bool {
        self.names(&peer.site, &peer.peer)
            && match (&self.key, key) {
                (None, _) => true,
                (Some(k), Some(presented)) => k == presented,
                // Only one certificate is revoked, and we do not know which one the peer
                // presents: the connection is not closed for it.
                (Some(_), None) => false,
            }
    }
}

impl std::fmt::Display for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.site, self.peer)?;
        if let Some(k) = &self.key {
            write!(f, " (certificate {k})")?;
        }
        Ok(())
    }
}

impl SignedRevocation {
    /// The bytes the CA signs: a context string and the body.
    pub fn signed_bytes(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTEXT.len() + body.len());
        out.extend_from_slice(CONTEXT);
        out.extend_from_slice(body);
        out
    }

    /// The record's identity: the SHA-256 of body and signature.
    pub fn id(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((self.body.len() as u64).to_le_bytes());
        h.update(&self.body);
        h.update(&self.signature);
        h.finalize().into()
    }

    /// The revocation it carries (not verified: see `Verifier::verify_revocation`).
    pub fn revocation(&self) -> Result<Revocation, RevocationError> {
        Revocation::decode(&self.body)
    }

    /// Encodes the record as a file holds it (`outpost cert revoke --out`).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a signed revocation always encodes")
    }

    /// Decodes a record written by [`SignedRevocation::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedRevocation, RevocationError> {
        if bytes.len() > MAX_REVOCATION_BYTES + crate::signing::MAX_SIGNATURE_BYTES + 16 {
            return Err(RevocationError::Malformed(format!(
                "{} bytes: too large for a revocation",
                bytes.len()
            )));
        }
        let s: SignedRevocation =
            postcard::from_bytes(bytes).map_err(|e| RevocationError::Malformed(e.to_string()))?;
        s.revocation()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let r = Revocation {
            site: "paris-11".parse().expect("test setup"),
            peer: "kiosk-2".parse().expect("test setup"),
            key: Some(KeyId([7; 32])),
            issued: Timestamp(1_000),
            reason: "stolen".into(),
        };
        let s = SignedRevocation {
            body: r.encode(),
            signature: vec![1, 2, 3],
        };
        let back = SignedRevocation::from_bytes(&s.to_bytes()).expect("test setup");
        assert_eq!(back.revocation().expect("test setup"), r);
        let long = Revocation {
            reason: "x".repeat(MAX_REASON_CHARS + 1),
            ..r.clone()
        };
        assert!(Revocation::decode(&long.encode()).is_err());
        assert!(Revocation::decode(&[0xff; 8]).is_err());
        let kiosk = PeerInfo::parse("paris-11", "kiosk-2", "kiosk").expect("test setup");
        assert!(r.covers(&kiosk, Some(&KeyId([7; 32]))));
        assert!(!r.covers(&kiosk, Some(&KeyId([8; 32]))));
        let other = PeerInfo::parse("lyon-1", "kiosk-2", "kiosk").expect("test setup");
        assert!(!r.covers(&other, Some(&KeyId([7; 32]))));
    }
}
