//! A deterministic fleet CA for the simulation: real Ed25519 signatures (ring) from fixed
//! seeds, over a small certificate format of its own (no X.509: the transport's
//! `FleetVerifier` covers that), so that a seeded run replays exactly.
//!
//! A certificate is `OPTC`, then the site, peer and role (each a length byte and UTF-8),
//! the device's 32-byte Ed25519 public key, and the CA's 64-byte signature over all of that.

use std::sync::Arc;

use outpost_core::revocation::{Revocation, SignedRevocation};
use outpost_core::signing::{SignatureError, Signer, Verifier};
use outpost_core::PeerInfo;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

const MAGIC: &[u8] = b"OPTC";

fn seed(what: &[u8], fleet: u64) -> [u8; 32] {
    let mut input = fleet.to_le_bytes().to_vec();
    input.extend_from_slice(what);
    let d = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn key_pair(seed: &[u8; 32]) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed")
}

/// The simulation's fleet CA.
#[derive(Debug)]
pub struct TestCa {
    fleet: u64,
    key: Ed25519KeyPair,
}

impl TestCa {
    /// A CA whose keys all derive from `fleet`.
    pub fn new(fleet: u64) -> TestCa {
        TestCa {
            fleet,
            key: key_pair(&seed(b"ca", fleet)),
        }
    }

    /// Issues `peer` its certificate and key (the same for the same fleet and identity).
    pub fn issue(&self, peer: &PeerInfo) -> Arc<TestSigner> {
        let key = key_pair(&seed(peer.to_string().as_bytes(), self.fleet));
        let mut cert = MAGIC.to_vec();
        for part in [peer.site.as_str(), peer.peer.as_str(), peer.role.as_str()] {
            cert.push(u8::try_from(part.len()).expect("identity names are under 256 bytes"));
            cert.extend_from_slice(part.as_bytes());
        }
        cert.extend_from_slice(key.public_key().as_ref());
        let sig = self.key.sign(&cert);
        cert.extend_from_slice(sig.as_ref());
        Arc::new(TestSigner { cert, key })
    }

    /// Revokes a device, as `outpost cert revoke` does with a fleet CA.
    pub fn revoke(&self, device: &PeerInfo, reason: &str) -> SignedRevocation {
        let body = Revocation {
            site: device.site.clone(),
            peer: device.peer.clone(),
            key: None,
            issued: outpost_core::Timestamp(0),
            reason: reason.to_string(),
            public_key: None,
        }
        .encode();
        let signature = self
            .key
            .sign(&SignedRevocation::signed_bytes(&body))
            .as_ref()
            .to_vec();
        SignedRevocation { body, signature }
    }

    /// An engine over a fresh store in `dir` for `me`, signing with this CA's certificate for
    /// it and verifying against this CA under `rule`.
    pub fn engine(
        &self,
        dir: &std::path::Path,
        me: PeerInfo,
        rule: outpost_core::signing::SignatureRule,
    ) -> outpost_core::Engine {
        let store = outpost_core::Store::open_with(
            dir,
            outpost_core::StoreOptions {
                identity: Some(me.clone()),
                signer: Some(self.issue(&me)),
                ..outpost_core::StoreOptions::default()
            },
        )
        .expect("store opens");
        let mut config = outpost_core::EngineConfig::new(me, outpost_core::Policy::default());
        config.verifier = Some(self.verifier());
        config.signatures = rule;
        outpost_core::Engine::new(store, config)
    }

    /// A verifier that trusts this CA.
    pub fn verifier(&self) -> Arc<TestVerifier> {
        Arc::new(TestVerifier {
            ca: self.key.public_key().as_ref().to_vec(),
        })
    }
}

/// A device's signer: its certificate and Ed25519 key.
#[derive(Debug)]
pub struct TestSigner {
    cert: Vec<u8>,
    key: Ed25519KeyPair,
}

impl Signer for TestSigner {
    fn certificate(&self) -> &[u8] {
        &self.cert
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        Ok(self.key.sign(message).as_ref().to_vec())
    }
}

/// Verifies certificates of one [`TestCa`].
#[derive(Debug)]
pub struct TestVerifier {
    ca: Vec<u8>,
}

fn untrusted(reason: &str) -> SignatureError {
    SignatureError::UntrustedCertificate {
        reason: reason.to_string(),
    }
}

/// A certificate's parts, unchecked.
struct Parsed<'a> {
    info: PeerInfo,
    key: &'a [u8],
    /// What the CA signed.
    signed: &'a [u8],
    /// The CA's signature.
    ca_signature: &'a [u8],
}

fn parse(cert: &[u8]) -> Result<Parsed<'_>, SignatureError> {
    let mut rest = cert
        .strip_prefix(MAGIC)
        .ok_or_else(|| untrusted("not a simulation certificate"))?;
    let mut parts = Vec::new();
    for _ in 0..3 {
        let (&len, tail) = rest.split_first().ok_or_else(|| untrusted("truncated"))?;
        let len = usize::from(len);
        let part = tail.get(..len).ok_or_else(|| untrusted("truncated"))?;
        parts.push(std::str::from_utf8(part).map_err(|_| untrusted("a name is not UTF-8"))?);
        rest = &tail[len..];
    }
    let info = PeerInfo::parse(parts[0], parts[1], parts[2])
        .map_err(|e| untrusted(&format!("bad identity: {e}")))?;
    if rest.len() != 32 + 64 {
        return Err(untrusted("bad key or signature length"));
    }
    Ok(Parsed {
        info,
        key: &rest[..32],
        signed: &cert[..cert.len() - 64],
        ca_signature: &rest[32..],
    })
}

impl Verifier for TestVerifier {
    fn verify_certificate(&self, certificate_der: &[u8]) -> Result<PeerInfo, SignatureError> {
        let p = parse(certificate_der)?;
        UnparsedPublicKey::new(&ED25519, &self.ca)
            .verify(p.signed, p.ca_signature)
            .map_err(|_| untrusted("not issued by this fleet's CA"))?;
        Ok(p.info)
    }

    fn verify_signature(
        &self,
        certificate_der: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let p = parse(certificate_der)?;
        UnparsedPublicKey::new(&ED25519, p.key)
            .verify(message, signature)
            .map_err(|_| SignatureError::InvalidSignature {
                reason: "the Ed25519 signature does not match the certificate's key".into(),
            })
    }

    fn verify_authority(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(&ED25519, &self.ca)
            .verify(message, signature)
            .map_err(|_| SignatureError::InvalidSignature {
                reason: "not signed by this fleet's CA".into(),
            })
    }
}
