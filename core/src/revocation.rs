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
//!
//! A revocation of one certificate names its key as well ([`Revocation::public_key`], the
//! SHA-256 of the certificate's SubjectPublicKeyInfo): a renewal keeps the device's key, so
//! every certificate renewed from the revoked one is revoked with it.

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
    /// Every certificate of this key (SHA-256 of its SubjectPublicKeyInfo DER): the
    /// certificates renewed from the revoked one, which keep its key. Last in the body, so
    /// that a peer of an older version still reads the rest (postcard ignores what follows).
    pub public_key: Option<KeyId>,
}

/// The body of a revocation as versions before `public_key` encoded it.
#[derive(Deserialize)]
struct RevocationV1 {
    site: SiteId,
    peer: PeerId,
    key: Option<KeyId>,
    issued: Timestamp,
    reason: String,
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
        let r: Revocation = match postcard::from_bytes(body) {
            Ok(r) => r,
            // A record signed before revocations named keys.
            Err(e) => match postcard::from_bytes::<RevocationV1>(body) {
                Ok(v1) => Revocation {
                    site: v1.site,
                    peer: v1.peer,
                    key: v1.key,
                    issued: v1.issued,
                    reason: v1.reason,
                    public_key: None,
                },
                Err(_) => return Err(RevocationError::Malformed(e.to_string())),
            },
        };
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

    /// Whether this revocation names every certificate of the device.
    pub fn is_whole_device(&self) -> bool {
        self.key.is_none() && self.public_key.is_none()
    }

    /// Whether a certificate (`certificate`: the SHA-256 of its DER; `public_key`: of its
    /// SubjectPublicKeyInfo) is one this revocation names, when it is the device's.
    pub fn matches_certificate(&self, certificate: &KeyId, public_key: Option<&KeyId>) -> bool {
        self.is_whole_device()
            || self.key.as_ref() == Some(certificate)
            || (self.public_key.is_some() && self.public_key.as_ref() == public_key)
    }

    /// Whether a connection of `peer` presenting certificate `key` (and its public key
    /// `public_key`, when known) is revoked.
    pub fn covers(&self, peer: &PeerInfo, key: Option<&KeyId>, public_key: Option<&KeyId>) -> bool {
        self.names(&peer.site, &peer.peer)
            && match key {
                Some(presented) => self.matches_certificate(presented, public_key),
                // Only one certificate is revoked, and we do not know which one the peer
                // presents: the connection is not closed for it.
                None => self.is_whole_device(),
            }
    }
}

impl std::fmt::Display for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.site, self.peer)?;
        if let Some(k) = &self.key {
            write!(f, " (certificate {k})")?;
        }
        if let Some(k) = &self.public_key {
            write!(f, " (key {k})")?;
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
            public_key: Some(KeyId([9; 32])),
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
        assert!(r.covers(&kiosk, Some(&KeyId([7; 32])), None));
        assert!(!r.covers(&kiosk, Some(&KeyId([8; 32])), None));
        // A renewed certificate: another DER, the same key.
        assert!(r.covers(&kiosk, Some(&KeyId([8; 32])), Some(&KeyId([9; 32]))));
        assert!(!r.covers(&kiosk, Some(&KeyId([8; 32])), Some(&KeyId([10; 32]))));
        let other = PeerInfo::parse("lyon-1", "kiosk-2", "kiosk").expect("test setup");
        assert!(!r.covers(&other, Some(&KeyId([7; 32])), Some(&KeyId([9; 32]))));
    }

    #[test]
    fn a_record_signed_before_keys_were_named_still_reads() {
        #[derive(Serialize)]
        struct V1 {
            site: SiteId,
            peer: PeerId,
            key: Option<KeyId>,
            issued: Timestamp,
            reason: String,
        }
        let old = postcard::to_allocvec(&V1 {
            site: "paris-11".parse().expect("test setup"),
            peer: "kiosk-2".parse().expect("test setup"),
            key: Some(KeyId([7; 32])),
            issued: Timestamp(1_000),
            reason: "stolen".into(),
        })
        .expect("test setup");
        let r = Revocation::decode(&old).expect("a v1 record decodes");
        assert_eq!(r.key, Some(KeyId([7; 32])));
        assert_eq!(r.public_key, None);
    }
}
