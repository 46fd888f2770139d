//! Fleet CA and device certificates.
//!
//! Every fleet has one certificate authority ([`FleetCa`]). It issues one certificate per
//! device ([`DeviceCert`]) that binds the device's key to its identity, a
//! [`PeerInfo`]: the site, the peer id and the role.
//!
//! # What a device certificate contains
//!
//! - A SAN URI `outpost://<site>/<peer>?role=<role>`, e.g.
//!   `outpost://paris-11/pos-1?role=pos`. This is the only place the identity is read
//!   from ([`peer_info_from_cert`]); the three parts are validated like
//!   [`SiteId`](outpost_core::SiteId), [`PeerId`](outpost_core::PeerId) and
//!   [`Role`](outpost_core::Role). Exactly one such URI must be present.
//! - A DNS SAN `outpost` ([`SERVER_NAME`]), the TLS server name every peer dials, so
//!   that one certificate serves both as client and as server certificate.
//! - Extended key usages `serverAuth` and `clientAuth`, a random serial number, and a
//!   validity from one hour ago to [`DEVICE_CERT_VALIDITY_DAYS`] days from now.
//!
//! # Files
//!
//! [`FleetCa::save`] writes `ca.pem` and `ca.key`; [`DeviceCert::save`] writes `cert.pem`,
//! `key.pem` and `ca.pem` (the CA certificate, never its key). Keys are written with mode
//! `0600` on Unix.

use std::path::Path;

use outpost_core::PeerInfo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::extensions::GeneralName;

use crate::error::{Error, Result};

/// The TLS server name of every outpost peer, present as a DNS SAN in device certificates.
pub const SERVER_NAME: &str = "outpost";

/// The URI scheme of the identity SAN.
const URI_SCHEME: &str = "outpost://";

/// How long a device certificate is valid when issued with [`FleetCa::issue`].
pub const DEVICE_CERT_VALIDITY_DAYS: i64 = 5 * 365;

/// How long the fleet CA certificate is valid.
const CA_VALIDITY_DAYS: i64 = 20 * 365;

/// File names used by [`FleetCa::save`] and [`DeviceCert::save`].
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// The certificate authority of a fleet: it issues device certificates.
///
/// Keep its key offline; devices only need the CA certificate ([`FleetCa::cert_pem`]).
pub struct FleetCa {
    fleet: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl FleetCa {
    /// Creates a new fleet CA with a fresh ECDSA P-256 key.
    ///
    /// `fleet_name` ends up in the CA's common name (`outpost fleet <name>`).
    pub fn generate(fleet_name: &str) -> Result<FleetCa> {
        if fleet_name.is_empty() || fleet_name.len() > 64 {
            return Err(Error::InvalidName {
                what: "fleet name",
                value: fleet_name.to_string(),
                reason: "it must be 1 to 64 bytes long".into(),
            });
        }
        let key = KeyPair::generate().map_err(|source| Error::CertGeneration {
            what: "fleet CA key",
            source,
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{CA_CN_PREFIX}{fleet_name}"));
        dn.push(DnType::OrganizationName, "outpost");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
        let issuer =
            CertifiedIssuer::self_signed(params, key).map_err(|source| Error::CertGeneration {
                what: "fleet CA certificate",
                source,
            })?;
        let cert_pem = issuer.pem();
        let cert_der = issuer.der().clone();
        // Re-read the issuer from its own certificate so that `generate` and `from_pem`
        // produce the same kind of value.
        let key = KeyPair::from_pem(&issuer.key().serialize_pem()).map_err(|source| {
            Error::CertGeneration {
                what: "fleet CA key",
                source,
            }
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| Error::CertGeneration {
                what: "fleet CA issuer",
                source,
            })?;
        Ok(FleetCa {
            fleet: fleet_name.to_string(),
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Loads a fleet CA from its certificate and private key in PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<FleetCa> {
        Self::from_pem_at(cert_pem, key_pem, None)
    }

    fn from_pem_at(cert_pem: &str, key_pem: &str, dir: Option<&Path>) -> Result<FleetCa> {
        let cert_der = parse_cert_pem(
            cert_pem,
            "fleet CA certificate",
            dir.map(|d| d.join(CA_CERT_FILE)),
        )?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::InvalidPem {
            what: "fleet CA key",
            path: dir.map(|d| d.join(CA_KEY_FILE)),
            reason: e.to_string(),
        })?;
        let (fleet, spki) = {
            let (_, x509) =
                x509_parser::parse_x509_certificate(&cert_der).map_err(|e| Error::InvalidPem {
                    what: "fleet CA certificate",
                    path: dir.map(|d| d.join(CA_CERT_FILE)),
                    reason: e.to_string(),
                })?;
            if !x509.is_ca() {
                return Err(Error::MismatchedCertificate {
                    reason: "the fleet CA certificate is not a CA certificate".into(),
                });
            }
            let cn = x509
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_string();
            let fleet = cn.strip_prefix(CA_CN_PREFIX).unwrap_or(&cn).to_string();
            (fleet, x509.public_key().subject_public_key.data.to_vec())
        };
        if spki != key.public_key_raw() {
            return Err(Error::MismatchedCertificate {
                reason: "the fleet CA key does not belong to the fleet CA certificate".into(),
            });
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| Error::CertGeneration {
                what: "fleet CA issuer",
                source,
            })?;
        Ok(FleetCa {
            fleet,
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    /// The fleet name given to [`FleetCa::generate`].
    pub fn fleet_name(&self) -> &str {
        &self.fleet
    }

    /// The CA certificate in PEM, to distribute to every device.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key in PEM. Keep it secret.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a certificate for a device (or a cloud peer) with a fresh key.
    pub fn issue(&self, peer: &PeerInfo) -> Result<DeviceCert> {
        self.issue_valid_for(peer, time::Duration::days(DEVICE_CERT_VALIDITY_DAYS))
    }

    /// Issues a certificate valid from one hour ago for `validity` from now.
    ///
    /// A negative `validity` produces an already expired certificate (useful in tests).
    pub fn issue_valid_for(&self, peer: &PeerInfo, validity: time::Duration) -> Result<DeviceCert> {
        let key = KeyPair::generate().map_err(|source| Error::CertGeneration {
            what: "device key",
            source,
        })?;
        let params = device_params(peer, validity)?;
        let cert =
            params
                .signed_by(&key, &self.issuer)
                .map_err(|source| Error::CertGeneration {
                    what: "device certificate",
                    source,
                })?;
        Ok(DeviceCert {
            info: peer.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
            ca_der: self.cert_der.clone(),
        })
    }

    /// Renews a device certificate (DER, as the device presented it in a verified TLS
    /// handshake): a new certificate for the same identity and the same public key, valid
    /// from one hour ago for `validity`. The device keeps its private key. Only ECDSA P-256
    /// keys (those [`FleetCa::issue`] makes) are renewed. Returns the new certificate in PEM.
    pub fn renew(&self, presented: &[u8], validity: time::Duration) -> Result<String> {
        let info = peer_info_from_cert(presented)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(presented).map_err(|e| Error::InvalidIdentity {
                reason: format!("not an X.509 certificate: {e}"),
            })?;
        let key = PresentedKey {
            bits: cert.public_key().subject_public_key.data.to_vec(),
        };
        if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.public_key().raw {
            return Err(Error::InvalidIdentity {
                reason: format!(
                    "the certificate of {info} has a key outpost does not renew (only ECDSA \
                     P-256); issue it a new certificate with `outpost cert issue`"
                ),
            });
        }
        let renewed = device_params(&info, validity)?
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::CertGeneration {
                what: "renewed device certificate",
                source,
            })?;
        Ok(renewed.pem())
    }

    /// Revokes a device: a record signed with the CA's key that every device and the cloud
    /// accept from any peer and relay (see `outpost_core::revocation`). `certificate`:
    /// only this certificate of the device (DER) and every certificate of its key (those
    /// renewed from it); `None`: every certificate of the device.
    pub fn revoke(
        &self,
        site: &outpost_core::SiteId,
        peer: &outpost_core::PeerId,
        certificate: Option<&[u8]>,
        reason: &str,
    ) -> Result<outpost_core::revocation::SignedRevocation> {
        use outpost_core::revocation::{Revocation, SignedRevocation, MAX_REASON_CHARS};
        use rcgen::SigningKey;
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(Error::InvalidName {
                what: "revocation reason",
                value: reason.chars().take(40).collect(),
                reason: format!("it must be at most {MAX_REASON_CHARS} characters"),
            });
        }
        let body = Revocation {
            site: site.clone(),
            peer: peer.clone(),
            key: certificate.map(outpost_core::signing::KeyId::of),
            issued: outpost_core::Timestamp::now(),
            reason: reason.to_string(),
            // The key too: the certificates renewed from this one keep it.
            public_key: certificate.map(public_key_id).transpose()?,
        }
        .encode();
        let signature = self
            .issuer
            .key()
            .sign(&SignedRevocation::signed_bytes(&body))
            .map_err(|source| Error::CertGeneration {
                what: "revocation signature",
                source,
            })?;
        Ok(SignedRevocation { body, signature })
    }

    /// Writes `ca.pem` and `ca.key` into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), self.cert_pem.as_bytes(), false)?;
        write_file(&dir.join(CA_KEY_FILE), self.key_pem().as_bytes(), true)
    }

    /// Reads a fleet CA written by [`FleetCa::save`].
    pub fn load(dir: &Path) -> Result<FleetCa> {
        let cert = read_file(&dir.join(CA_CERT_FILE))?;
        let key = read_file(&dir.join(CA_KEY_FILE))?;
        Self::from_pem_at(&cert, &key, Some(dir))
    }
}

const CA_CN_PREFIX: &str = "outpost fleet ";

/// A device's certificate and private key, with the fleet CA certificate it trusts.
pub struct DeviceCert {
    info: PeerInfo,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    key_der: PrivatePkcs8KeyDer<'static>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

impl Clone for DeviceCert {
    fn clone(&self) -> Self {
        DeviceCert {
            info: self.info.clone(),
            cert_pem: self.cert_pem.clone(),
            cert_der: self.cert_der.clone(),
            key_pem: self.key_pem.clone(),
            key_der: self.key_der.clone_key(),
            ca_pem: self.ca_pem.clone(),
            ca_der: self.ca_der.clone(),
        }
    }
}

impl std::fmt::Debug for DeviceCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCert")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl DeviceCert {
    /// Loads a device certificate, its private key and the fleet CA certificate from PEM.
    ///
    /// Checks that the certificate carries an outpost identity, that the key belongs to
    /// the certificate and that the certificate names the CA as its issuer. The signature
    /// itself is checked by every peer during the TLS handshake.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<DeviceCert> {
        Self::from_pem_at(cert_pem, key_pem, ca_pem, None)
    }

    fn from_pem_at(
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
        dir: Option<&Path>,
    ) -> Result<DeviceCert> {
        let path = |f: &str| dir.map(|d| d.join(f));
        let cert_der = parse_cert_pem(cert_pem, "device certificate", path(CERT_FILE))?;
        let ca_der = parse_cert_pem(ca_pem, "fleet CA certificate", path(CA_CERT_FILE))?;
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            Error::InvalidPem {
                what: "device key (PKCS#8)",
                path: path(KEY_FILE),
                reason: e.to_string(),
            }
        })?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::InvalidPem {
            what: "device key",
            path: path(KEY_FILE),
            reason: e.to_string(),
        })?;
        let info = peer_info_from_cert(&cert_der)?;
        let parse_err = |what: &'static str, file: &str, e: String| Error::InvalidPem {
            what,
            path: path(file),
            reason: e,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| parse_err("device certificate", CERT_FILE, e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| parse_err("fleet CA certificate", CA_CERT_FILE, e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::MismatchedCertificate {
                reason: format!("the device key does not belong to the certificate of {info}"),
            });
        }
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(Error::MismatchedCertificate {
                reason: format!(
                    "the certificate of {info} was not issued by this fleet CA ({})",
                    ca.subject()
                ),
            });
        }
        Ok(DeviceCert {
            info,
            cert_pem: cert_pem.to_string(),
            cert_der,
            key_pem: key_pem.to_string(),
            key_der,
            ca_pem: ca_pem.to_string(),
            ca_der,
        })
    }

    /// Writes `cert.pem`, `key.pem` and `ca.pem` into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_file(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), false)?;
        write_file(&dir.join(KEY_FILE), self.key_pem.as_bytes(), true)?;
        write_file(&dir.join(CA_CERT_FILE), self.ca_pem.as_bytes(), false)
    }

    /// Reads a device certificate written by [`DeviceCert::save`].
    pub fn load(dir: &Path) -> Result<DeviceCert> {
        let cert = read_file(&dir.join(CERT_FILE))?;
        let key = read_file(&dir.join(KEY_FILE))?;
        let ca = read_file(&dir.join(CA_CERT_FILE))?;
        Self::from_pem_at(&cert, &key, &ca, Some(dir))
    }

    /// The identity in the certificate.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }

    /// The device certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The device private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The fleet CA certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The device certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The fleet CA certificate in DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The certificate chain presented in TLS handshakes (the device certificate only).
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    /// The private key as PKCS#8 DER bytes (what ring takes to sign changes).
    pub(crate) fn pkcs8_key(&self) -> &[u8] {
        self.key_der.secret_pkcs8_der()
    }

    /// The private key, as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

/// The parameters of a device certificate for `peer`, valid from one hour ago for `validity`.
fn device_params(peer: &PeerInfo, validity: time::Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{}/{}", peer.site, peer.peer));
    dn.push(DnType::OrganizationName, "outpost");
    dn.push(DnType::OrganizationalUnitName, peer.role.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    let uri = identity_uri(peer);
    let dns = |s: &str| {
        s.try_into().map_err(|source| Error::CertGeneration {
            what: "device certificate SAN",
            source,
        })
    };
    params.subject_alt_names = vec![
        SanType::URI(dns(&uri)?),
        SanType::DnsName(dns(SERVER_NAME)?),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + validity;
    Ok(params)
}

/// A public key as presented in a certificate (ECDSA P-256), for [`FleetCa::renew`].
struct PresentedKey {
    bits: Vec<u8>,
}

impl rcgen::PublicKeyData for PresentedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// The identity SAN URI of a peer: `outpost://<site>/<peer>?role=<role>`.
pub fn identity_uri(peer: &PeerInfo) -> String {
    format!("{URI_SCHEME}{}/{}?role={}", peer.site, peer.peer, peer.role)
}

/// Parses an identity SAN URI written by [`identity_uri`].
pub fn parse_identity_uri(uri: &str) -> Result<PeerInfo> {
    let bad = |reason: &str| Error::InvalidIdentity {
        reason: format!("URI {uri:?}: {reason}"),
    };
    let rest = uri
        .strip_prefix(URI_SCHEME)
        .ok_or_else(|| bad("it does not start with outpost://"))?;
    let (path, query) = rest
        .split_once('?')
        .ok_or_else(|| bad("it has no ?role= part"))?;
    let (site, peer) = path
        .split_once('/')
        .ok_or_else(|| bad("it is not outpost://<site>/<peer>"))?;
    let role = query
        .strip_prefix("role=")
        .ok_or_else(|| bad("the query is not role=<role>"))?;
    PeerInfo::parse(site, peer, role).map_err(|e| bad(&e.to_string()))
}

/// The key id of a certificate's public key: the SHA-256 of its SubjectPublicKeyInfo DER. A
/// renewal keeps it (see [`FleetCa::renew`]); revocations name it.
pub fn public_key_id(der: &[u8]) -> Result<outpost_core::signing::KeyId> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| Error::InvalidIdentity {
            reason: format!("the certificate is not valid DER X.509 ({e})"),
        })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(outpost_core::signing::KeyId(out))
}

/// Reads the outpost identity from a DER certificate (see the [module docs](self)).
///
/// Fails unless the certificate has exactly one SAN URI with the `outpost://` scheme and
/// that URI is well formed. This does not check the signature: call it on certificates
/// that rustls has verified (as the TLS verifiers of this crate do).
pub fn peer_info_from_cert(der: &[u8]) -> Result<PeerInfo> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| Error::InvalidIdentity {
            reason: format!("the certificate is not valid DER X.509 ({e})"),
        })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::InvalidIdentity {
            reason: format!("the subject alternative names are malformed ({e})"),
        })?
        .ok_or_else(|| Error::InvalidIdentity {
            reason: "the certificate has no subject alternative names".into(),
        })?;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if uri.starts_with(URI_SCHEME) {
                if found.is_some() {
                    return Err(Error::InvalidIdentity {
                        reason: "the certificate has several outpost:// URIs".into(),
                    });
                }
                found = Some(parse_identity_uri(uri)?);
            }
        }
    }
    found.ok_or_else(|| Error::InvalidIdentity {
        reason: "the certificate has no outpost:// SAN URI".into(),
    })
}

fn random_serial() -> SerialNumber {
    use rand::{Rng, SeedableRng};
    let mut bytes: [u8; 16] = rand::rngs::StdRng::from_os_rng().random();
    // A positive, non-zero DER integer of 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn parse_cert_pem(
    pem: &str,
    what: &'static str,
    path: Option<std::path::PathBuf>,
) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::InvalidPem {
        what,
        path,
        reason: e.to_string(),
    })
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    // Written beside and renamed over: a reader (or a crash) never sees a half-written key
    // or certificate, e.g. while a renewed certificate replaces the old one.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".partial-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(if secret {
            0o600
        } else {
            0o644
        }));
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = builder.tempfile_in(dir).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(site: &str, peer: &str, role: &str) -> PeerInfo {
        PeerInfo::parse(site, peer, role).expect("valid test identity")
    }

    #[test]
    fn uri_round_trips() {
        let p = info("paris-11", "pos-1", "pos");
        let uri = identity_uri(&p);
        assert_eq!(uri, "outpost://paris-11/pos-1?role=pos");
        assert_eq!(parse_identity_uri(&uri).expect("parses"), p);
    }

    #[test]
    fn bad_uris_are_refused() {
        for uri in [
            "https://paris-11/pos-1?role=pos",
            "outpost://paris-11/pos-1",
            "outpost://paris-11?role=pos",
            "outpost://paris-11/pos-1?kind=pos",
            "outpost://Paris/pos-1?role=pos",
            "outpost://paris-11/pos/1?role=pos",
            "outpost://paris-11/pos-1?role=",
        ] {
            assert!(parse_identity_uri(uri).is_err(), "{uri} should be refused");
        }
    }

    #[test]
    fn issued_cert_carries_identity_and_reloads() {
        let ca = FleetCa::generate("acme").expect("ca");
        assert_eq!(ca.fleet_name(), "acme");
        let p = info("paris-11", "kiosk-2", "kiosk");
        let cert = ca.issue(&p).expect("issue");
        assert_eq!(peer_info_from_cert(cert.cert_der()).expect("identity"), p);

        let again =
            DeviceCert::from_pem(cert.cert_pem(), cert.key_pem(), cert.ca_pem()).expect("reload");
        assert_eq!(again.info(), &p);

        let ca2 = FleetCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("ca reload");
        assert_eq!(ca2.fleet_name(), "acme");
        let cert2 = ca2
            .issue(&info("paris-11", "pos-1", "pos"))
            .expect("issue from reloaded ca");
        DeviceCert::from_pem(cert2.cert_pem(), cert2.key_pem(), ca.cert_pem()).expect("same CA");
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::generate("acme").expect("ca");
        ca.save(&dir.path().join("ca")).expect("save ca");
        let ca = FleetCa::load(&dir.path().join("ca")).expect("load ca");
        let cert = ca.issue(&info("lyon", "pos-1", "pos")).expect("issue");
        cert.save(&dir.path().join("pos-1")).expect("save");
        let loaded = DeviceCert::load(&dir.path().join("pos-1")).expect("load");
        assert_eq!(loaded.info(), cert.info());
        assert_eq!(loaded.cert_der(), cert.cert_der());
        assert_eq!(loaded.ca_der(), ca.cert_der());
        let err = DeviceCert::load(&dir.path().join("missing")).expect_err("missing dir");
        assert!(err.to_string().contains("cannot access"), "{err}");
    }

    #[test]
    fn mismatches_are_detected() {
        let ca = FleetCa::generate("acme").expect("ca");
        let other = FleetCa::generate("other").expect("ca");
        let a = ca.issue(&info("lyon", "pos-1", "pos")).expect("issue");
        let b = ca.issue(&info("lyon", "pos-2", "pos")).expect("issue");
        let err =
            DeviceCert::from_pem(a.cert_pem(), b.key_pem(), a.ca_pem()).expect_err("wrong key");
        assert!(matches!(err, Error::MismatchedCertificate { .. }), "{err}");
        let err = DeviceCert::from_pem(a.cert_pem(), a.key_pem(), other.cert_pem())
            .expect_err("wrong ca");
        assert!(matches!(err, Error::MismatchedCertificate { .. }), "{err}");
        let err = FleetCa::from_pem(ca.cert_pem(), &other.key_pem()).expect_err("wrong ca key");
        assert!(matches!(err, Error::MismatchedCertificate { .. }), "{err}");
        let err = DeviceCert::from_pem("garbage", a.key_pem(), a.ca_pem()).expect_err("garbage");
        assert!(matches!(err, Error::InvalidPem { .. }), "{err}");
    }

    #[test]
    fn cert_without_identity_is_refused() {
        let plain =
            rcgen::generate_simple_self_signed(vec!["outpost".to_string()]).expect("self signed");
        let err = peer_info_from_cert(plain.cert.der()).expect_err("no uri");
        assert!(err.to_string().contains("outpost://"), "{err}");
        assert!(peer_info_from_cert(b"not a certificate").is_err());
    }
}
