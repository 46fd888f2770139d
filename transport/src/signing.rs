//! The device's certificate key signs the changes it authors ([`DeviceSigner`]); the fleet CA
//! vouches for the certificates of their authors ([`FleetVerifier`]). Both implement the
//! traits of `outpost_core::signing` with ring and rustls-webpki, the crypto that rustls
//! already brings.

use std::time::Duration;

use outpost_core::signing::{KeyId, SignatureError, Signer, Verifier};
use outpost_core::PeerInfo;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};

use crate::identity::{peer_info_from_cert, DeviceCert, FleetCa};
use crate::{Error, Result};

enum Key {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Signs changes with a device's certificate key (ECDSA P-256 as `FleetCa::issue` makes
/// them, P-384 or Ed25519 for imported keys).
pub struct DeviceSigner {
    cert: Vec<u8>,
    key_id: KeyId,
    key: Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for DeviceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSigner")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl DeviceSigner {
    /// The signer of the device that holds `cert`.
    pub fn new(cert: &DeviceCert) -> Result<DeviceSigner> {
        let rng = SystemRandom::new();
        let pkcs8 = cert.pkcs8_key();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .or_else(|_| EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8, &rng))
            .map(Key::Ecdsa)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map(Key::Ed25519))
            .map_err(|e| Error::InvalidIdentity {
                reason: format!(
                    "the device key cannot sign changes ({e}); outpost signs with ECDSA P-256, \
                     P-384 or Ed25519 keys: issue a new certificate with `outpost cert issue`"
                ),
            })?;
        Ok(DeviceSigner {
            cert: cert.cert_der().to_vec(),
            key_id: KeyId::of(cert.cert_der()),
            key,
            rng,
        })
    }
}

impl Signer for DeviceSigner {
    fn certificate(&self) -> &[u8] {
        &self.cert
    }

    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        match &self.key {
            Key::Ecdsa(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| SignatureError::SigningFailed {
                    reason: e.to_string(),
                }),
            Key::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// The signature algorithms a device key may use.
static ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
];

/// Verifies certificates against the fleet CA, and change signatures against them.
#[derive(Clone, Debug)]
pub struct FleetVerifier {
    ca: CertificateDer<'static>,
}

impl FleetVerifier {
    /// A verifier that trusts the CA certificate `ca_der`.
    pub fn new(ca_der: CertificateDer<'static>) -> FleetVerifier {
        FleetVerifier { ca: ca_der }
    }

    /// A verifier that trusts the CA of a device's certificate.
    pub fn for_device(cert: &DeviceCert) -> FleetVerifier {
        FleetVerifier::new(cert.ca_der().clone())
    }

    /// A verifier that trusts `ca`.
    pub fn for_ca(ca: &FleetCa) -> FleetVerifier {
        FleetVerifier::new(ca.cert_der().clone())
    }
}

fn untrusted(reason: impl std::fmt::Display) -> SignatureError {
    SignatureError::UntrustedCertificate {
        reason: reason.to_string(),
    }
}

impl Verifier for FleetVerifier {
    fn verify_certificate(
        &self,
        certificate_der: &[u8],
    ) -> std::result::Result<PeerInfo, SignatureError> {
        let anchor = webpki::anchor_from_trusted_cert(&self.ca)
            .map_err(|e| untrusted(format!("the fleet CA certificate is unusable ({e})")))?;
        let der = CertificateDer::from(certificate_der);
        let ee = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| untrusted(format!("not an X.509 certificate ({e})")))?;
        // A change outlives its author's certificate (a week-old partition relayed after a
        // renewal): the chain is checked as of the certificate's start of validity, which
        // proves the CA issued it. Revocation is the job of the CA-signed revocation records
        // (`outpost_core::revocation`).
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate_der)
            .map_err(|e| untrusted(format!("not an X.509 certificate ({e})")))?;
        let start = u64::try_from(parsed.validity().not_before.timestamp()).unwrap_or(0);
        let at = UnixTime::since_unix_epoch(Duration::from_secs(start.saturating_add(1)));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            at,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| untrusted(format!("not issued by this fleet's CA ({e})")))?;
        peer_info_from_cert(certificate_der).map_err(untrusted)
    }

    fn verify_signature(
        &self,
        certificate_der: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), SignatureError> {
        let der = CertificateDer::from(certificate_der);
        let ee = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| untrusted(format!("not an X.509 certificate ({e})")))?;
        let mut last = None;
        for alg in ALGORITHMS {
            match ee.verify_signature(*alg, message, signature) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(SignatureError::InvalidSignature {
            reason: last.map_or_else(|| "no algorithm".to_string(), |e| e.to_string()),
        })
    }

    fn public_key_id(&self, certificate_der: &[u8]) -> Option<KeyId> {
        crate::identity::public_key_id(certificate_der).ok()
    }

    fn verify_authority(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), SignatureError> {
        // The CA's own key signs revocations: its certificate is read as any other for the
        // public key.
        self.verify_signature(&self.ca, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_fleet_certificates() {
        let ca = FleetCa::generate("test").expect("CA");
        let me = PeerInfo::parse("paris", "pos-1", "pos").expect("valid");
        let cert = ca.issue(&me).expect("issued");
        let signer = DeviceSigner::new(&cert).expect("signer");
        let verifier = FleetVerifier::for_device(&cert);
        assert_eq!(
            verifier.verify_certificate(signer.certificate()),
            Ok(me.clone())
        );
        let sig = signer.sign(b"change").expect("signs");
        assert_eq!(
            verifier.verify_signature(signer.certificate(), b"change", &sig),
            Ok(())
        );
        assert!(verifier
            .verify_signature(signer.certificate(), b"other", &sig)
            .is_err());
        assert!(verifier
            .verify_signature(signer.certificate(), b"change", &sig[..sig.len() - 1])
            .is_err());
        // Another fleet's certificate is not trusted.
        let other = FleetCa::generate("other").expect("CA");
        let stranger = other.issue(&me).expect("issued");
        assert!(matches!(
            verifier.verify_certificate(stranger.cert_der()),
            Err(SignatureError::UntrustedCertificate { .. })
        ));
        assert!(verifier.verify_certificate(&[1, 2, 3]).is_err());
        assert!(verifier.verify_signature(&[1, 2, 3], b"x", &sig).is_err());
    }
}
