//! Signed changes: what a device's key proves about the changes it authors.
//!
//! Core knows no X.509 and no cryptographic library: the transport (or a test harness)
//! implements [`Signer`] over a device's certificate key and [`Verifier`] over the fleet CA.
//! Core decides *what* is signed ([`signed_bytes`]), *which* signatures travel, and *when* a
//! change is accepted (see `core/docs/design.md`, "Signed changes").
//!
//! A device signs every change it commits: the bytes signed are a fixed context string, the
//! document id and the change hash. A signature on an actor's change also vouches for every
//! earlier change of that actor: Automerge keeps exactly one change per (actor, sequence
//! number) and applies an actor's changes in sequence order, and an honest author's change
//! depends (through the hash graph) on its previous one. So a receiver verifies, per message,
//! one signature per actor: that of the actor's newest change new to it.

use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;

use crate::PeerInfo;

/// Identifies a signing certificate: the SHA-256 of its DER bytes.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The key id of a certificate.
    pub fn of(certificate_der: &[u8]) -> KeyId {
        use sha2::Digest;
        let mut out = [0u8; 32];
        out.copy_from_slice(&sha2::Sha256::digest(certificate_der));
        KeyId(out)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a certificate or a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The certificate does not chain to the fleet CA, or names no outpost identity.
    #[error("certificate not accepted: {reason}; only certificates issued by this fleet's CA are trusted")]
    UntrustedCertificate {
        /// What was wrong.
        reason: String,
    },
    /// The device could not sign (its key is unusable, or the system's random source failed).
    #[error("cannot sign: {reason}; check the device's key with `outpost cert show`")]
    SigningFailed {
        /// What was wrong.
        reason: String,
    },
    /// The signature does not match the certificate's key and the signed bytes.
    #[error("invalid signature: {reason}")]
    InvalidSignature {
        /// What was wrong.
        reason: String,
    },
}

/// Signs what this device authors. Implemented by the transport over the device's
/// certificate key (`outpost_transport::DeviceSigner`). Unwind-safe, so that the options of
/// a store holding one can cross `catch_unwind` (the CLI opens stores that way).
pub trait Signer: Send + Sync + fmt::Debug + RefUnwindSafe + UnwindSafe {
    /// The device's certificate, DER encoded; receivers verify signatures against it.
    fn certificate(&self) -> &[u8];
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError>;
    /// The key id of [`Signer::certificate`].
    fn key_id(&self) -> KeyId {
        KeyId::of(self.certificate())
    }
}

/// Checks certificates and signatures. Implemented by the transport over the fleet CA
/// (`outpost_transport::FleetVerifier`).
pub trait Verifier: Send + Sync + fmt::Debug + RefUnwindSafe + UnwindSafe {
    /// Checks that `certificate_der` was issued by the fleet CA and returns the identity it
    /// certifies.
    fn verify_certificate(&self, certificate_der: &[u8]) -> Result<PeerInfo, SignatureError>;
    /// Checks `signature` over `message` by the key of `certificate_der` (a certificate
    /// already accepted by [`Verifier::verify_certificate`]).
    fn verify_signature(
        &self,
        certificate_der: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError>;
    /// Checks that `signature` over `message` was made by the fleet CA's key (revocations,
    /// see `crate::revocation`). The default refuses: a verifier that cannot check the CA's
    /// signature accepts no revocation from a peer.
    fn verify_authority(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let _ = (message, signature);
        Err(SignatureError::InvalidSignature {
            reason: "this verifier does not check the fleet CA's signatures".into(),
        })
    }
}

/// A shared signer, as stores hold it.
pub type SharedSigner = Arc<dyn Signer>;
/// A shared verifier, as engines hold it.
pub type SharedVerifier = Arc<dyn Verifier>;

/// Whether a change without a signature is still accepted (the rollout switch,
/// `EngineConfig::signatures`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureRule {
    /// Unsigned changes are accepted only while no certificate is known for the device the
    /// change's actor claims (a device that never signed: an old version), and only for what
    /// the peer that sent them could write as itself: never a claim of role `cloud` or
    /// `head-office`, never a relayed claim writing a context or path the relay's own role
    /// may not. A change whose signature is present but invalid is always refused, and so is
    /// an unsigned change of a device whose certificate this store has learnt (from any
    /// signature of it, relayed or not). For fleets that still run devices from before
    /// signed changes, opted into explicitly.
    Transitional,
    /// Every change new to us must carry a valid signature of its author. The default: a
    /// fleet whose devices all sign.
    #[default]
    Required,
    /// [`SignatureRule::Transitional`] until this time, [`SignatureRule::Required`] from it
    /// on: the date a fleet's rollout plan says every device signs, set ahead of time on
    /// every device so that the switch needs no second deployment.
    RequiredFrom(crate::Timestamp),
}

impl std::str::FromStr for SignatureRule {
    type Err = crate::Error;

    /// `required`, `transitional` or `required-from:YYYY-MM-DD` (midnight UTC), as the
    /// command line and the config files spell it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| crate::Error::InvalidName {
            kind: "signature rule",
            name: s.to_string(),
            reason: reason.to_string(),
            example: "required (or transitional, or required-from:2027-03-01)",
        };
        match s {
            "required" => Ok(SignatureRule::Required),
            "transitional" => Ok(SignatureRule::Transitional),
            _ => {
                let day = s
                    .strip_prefix("required-from:")
                    .ok_or_else(|| bad("not a signature rule"))?;
                let not_a_date = || bad("the date is not YYYY-MM-DD");
                let mut parts = day.splitn(3, '-').map(str::parse::<u16>);
                let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(not_a_date());
                };
                let month = u8::try_from(m)
                    .ok()
                    .and_then(|m| time::Month::try_from(m).ok())
                    .ok_or_else(not_a_date)?;
                let date = u8::try_from(d)
                    .ok()
                    .and_then(|d| time::Date::from_calendar_date(i32::from(y), month, d).ok())
                    .ok_or_else(not_a_date)?;
                let ms = date.midnight().assume_utc().unix_timestamp() * 1000;
                let ms = u64::try_from(ms).map_err(|_| bad("the date is before 1970"))?;
                Ok(SignatureRule::RequiredFrom(crate::Timestamp(ms)))
            }
        }
    }
}

impl fmt::Display for SignatureRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureRule::Required => f.write_str("required"),
            SignatureRule::Transitional => f.write_str("transitional"),
            SignatureRule::RequiredFrom(t) => {
                let secs = i64::try_from(t.as_millis() / 1000).unwrap_or(i64::MAX);
                match time::OffsetDateTime::from_unix_timestamp(secs) {
                    Ok(d) => write!(f, "required-from:{}", d.date()),
                    Err(_) => write!(f, "required-from:{}ms", t.as_millis()),
                }
            }
        }
    }
}

impl SignatureRule {
    /// The rule in force at `now`.
    pub fn at(self, now: crate::Timestamp) -> SignatureRule {
        match self {
            SignatureRule::RequiredFrom(t) if now >= t => SignatureRule::Required,
            SignatureRule::RequiredFrom(_) => SignatureRule::Transitional,
            rule => rule,
        }
    }
}

/// The largest signature accepted from a peer (ECDSA P-384 in DER is 104 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 512;
/// The largest certificate accepted from a peer.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// The bytes a device signs for change `hash` of `doc`: binding the document keeps a relay
/// from replaying a signed change into another document.
pub fn signed_bytes(doc: &crate::DocumentId, hash: &automerge::ChangeHash) -> Vec<u8> {
    let doc = doc.to_string();
    let mut out = Vec::with_capacity(24 + doc.len() + 1 + 32);
    out.extend_from_slice(b"outpost change v1\0");
    out.extend_from_slice(doc.as_bytes());
    out.push(0);
    out.extend_from_slice(&hash.0);
    out
}
