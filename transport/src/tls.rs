//! Mutual TLS for QUIC: who may connect, and the rustls / quinn configurations.
//!
//! Both sides of every link present a device certificate issued by the fleet CA (see
//! [`identity`](crate::identity)). On top of the usual WebPKI checks (chain to the fleet
//! CA as the only root, validity period, key usage, and on the client side the server
//! name [`SERVER_NAME`]), the verifiers of this module read the peer's identity from its
//! certificate during the handshake and refuse it when
//!
//! - it is on the [`DenyList`] (a revoked device), or
//! - the [`SiteRule`] does not admit it: a device of a site only talks to devices of the
//!   same site and to cloud peers (role `cloud`); a cloud peer talks to every site.
//!
//! So a refused peer never completes the handshake and never receives a byte of data.
//! ALPN negotiates the protocol ([`Protocol`]): `outpost/3`, `outpost/2` and `outpost/1` are offered, newest
//! first, and a peer that predates ALPN choice speaks `outpost/1`; TLS 1.3 only, with the *ring*
//! provider.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use outpost_core::engine::wire::Protocol;
use outpost_core::revocation::Revocation;
use outpost_core::signing::KeyId;
use outpost_core::{PeerId, PeerInfo, Role, SiteId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::{Error, Result};
use crate::identity::{peer_info_from_cert, DeviceCert};

/// The ALPN protocol id of the newest protocol of outpost links.
pub const ALPN: &[u8] = b"outpost/3";

fn alpn_ids(protocols: &[Protocol]) -> Vec<Vec<u8>> {
    protocols.iter().map(|p| p.alpn().to_vec()).collect()
}

/// The protocol an established connection negotiated (by ALPN).
pub(crate) fn protocol_of(conn: &quinn::Connection) -> Protocol {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    Protocol::from_alpn(alpn.as_deref()).unwrap_or(Protocol::V1)
}

/// Which sites a node accepts peers from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteRule {
    /// A device of this site: accept peers of the same site, and cloud peers (role
    /// `cloud`) of any site.
    SameSite(SiteId),
    /// A cloud peer: accept peers of every site of the fleet.
    AnySite,
}

impl SiteRule {
    /// The rule for a node with identity `local`: [`SiteRule::AnySite`] for the cloud
    /// role, [`SiteRule::SameSite`] otherwise.
    pub fn for_identity(local: &PeerInfo) -> SiteRule {
        if local.role == Role::cloud() {
            SiteRule::AnySite
        } else {
            SiteRule::SameSite(local.site.clone())
        }
    }

    /// Whether `peer` may connect under this rule.
    pub fn admits(&self, peer: &PeerInfo) -> bool {
        match self {
            SiteRule::AnySite => true,
            SiteRule::SameSite(site) => &peer.site == site || peer.role == Role::cloud(),
        }
    }
}

/// One entry of a [`DenyList`]: a peer id in any site, or a peer of one site.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DenyEntry {
    /// `pos-1`: every peer with this id, whatever its site.
    Peer(PeerId),
    /// `paris-11/pos-1`: this peer of this site.
    SitePeer(SiteId, PeerId),
}

impl DenyEntry {
    /// Whether the entry matches `peer`.
    pub fn matches(&self, peer: &PeerInfo) -> bool {
        match self {
            DenyEntry::Peer(p) => p == &peer.peer,
            DenyEntry::SitePeer(s, p) => s == &peer.site && p == &peer.peer,
        }
    }
}

impl std::fmt::Display for DenyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DenyEntry::Peer(p) => write!(f, "{p}"),
            DenyEntry::SitePeer(s, p) => write!(f, "{s}/{p}"),
        }
    }
}

impl std::str::FromStr for DenyEntry {
    type Err = Error;
    /// Parses `peer` or `site/peer`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |e: outpost_core::Error| Error::InvalidName {
            what: "deny list entry",
            value: s.to_string(),
            reason: format!(
                "{e}; use `<peer>` or `<site>/<peer>`, e.g. `pos-1` or `paris-11/pos-1`"
            ),
        };
        match s.split_once('/') {
            None => Ok(DenyEntry::Peer(s.parse().map_err(bad)?)),
            Some((site, peer)) => Ok(DenyEntry::SitePeer(
                site.parse().map_err(bad)?,
                peer.parse().map_err(bad)?,
            )),
        }
    }
}

impl From<PeerId> for DenyEntry {
    fn from(p: PeerId) -> Self {
        DenyEntry::Peer(p)
    }
}

/// Revoked devices: peers whose certificates are refused although the CA signed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyList {
    entries: BTreeSet<DenyEntry>,
}

impl DenyList {
    /// An empty deny list.
    pub fn new() -> Self {
        DenyList::default()
    }

    /// Parses entries such as `["pos-1", "paris-11/kiosk-2"]`.
    pub fn parse<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self> {
        let entries = entries
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_>>()?;
        Ok(DenyList { entries })
    }

    /// Adds an entry; returns whether it was new.
    pub fn insert(&mut self, entry: impl Into<DenyEntry>) -> bool {
        self.entries.insert(entry.into())
    }

    /// Removes an entry; returns whether it was present.
    pub fn remove(&mut self, entry: &DenyEntry) -> bool {
        self.entries.remove(entry)
    }

    /// Whether `peer` is denied.
    pub fn denies(&self, peer: &PeerInfo) -> bool {
        self.entries.iter().any(|e| e.matches(peer))
    }

    /// The entries, sorted.
    pub fn entries(&self) -> impl Iterator<Item = &DenyEntry> {
        self.entries.iter()
    }
}

/// Why a [`PeerFilter`] refused a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is on the deny list.
    Revoked,
    /// The peer belongs to another site and is not a cloud peer.
    OtherSite,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Revoked => f.write_str("the device is on the deny list (revoked)"),
            Refusal::OtherSite => {
                f.write_str("the device belongs to another site and is not a cloud peer")
            }
        }
    }
}

/// The admission rules checked in every handshake: a [`SiteRule`] and a [`DenyList`].
///
/// Cheap to clone; clones share state, so [`PeerFilter::revoke`] on the node's filter
/// takes effect for the next handshake of every endpoint built with it.
#[derive(Clone, Debug)]
pub struct PeerFilter {
    inner: Arc<RwLock<FilterState>>,
}

#[derive(Debug)]
struct FilterState {
    site_rule: SiteRule,
    deny: DenyList,
    /// Revocations signed by the fleet CA, learnt through sync (see
    /// `outpost_core::revocation`).
    revoked: Vec<Revocation>,
}

impl PeerFilter {
    /// A filter with a site rule and a deny list.
    pub fn new(site_rule: SiteRule, deny: DenyList) -> Self {
        PeerFilter {
            inner: Arc::new(RwLock::new(FilterState {
                site_rule,
                deny,
                revoked: Vec::new(),
            })),
        }
    }

    /// Checks whether `peer` may connect (whatever certificate it presents: revocations of
    /// one certificate are checked in the handshake, which sees it).
    pub fn check(&self, peer: &PeerInfo) -> std::result::Result<(), Refusal> {
        self.check_presenting(peer, None, None)
    }

    /// Checks whether `peer`, presenting the certificate `key` (SHA-256 of its DER) with the
    /// public key `public_key` (see [`crate::public_key_id`]), may connect.
    pub fn check_presenting(
        &self,
        peer: &PeerInfo,
        key: Option<&KeyId>,
        public_key: Option<&KeyId>,
    ) -> std::result::Result<(), Refusal> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.deny.denies(peer)
            || state
                .revoked
                .iter()
                .any(|r| r.covers(peer, key, public_key))
        {
            Err(Refusal::Revoked)
        } else if !state.site_rule.admits(peer) {
            Err(Refusal::OtherSite)
        } else {
            Ok(())
        }
    }

    /// Adds `entry` to the deny list; returns whether it was new.
    pub fn revoke(&self, entry: impl Into<DenyEntry>) -> bool {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .deny
            .insert(entry)
    }

    /// Adds a revocation signed by the fleet CA (verified by the engine that learnt it);
    /// returns whether it was new.
    pub fn add_revocation(&self, revocation: Revocation) -> bool {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.revoked.contains(&revocation) {
            return false;
        }
        state.revoked.push(revocation);
        true
    }

    /// Removes `entry` from the deny list; returns whether it was present.
    pub fn unrevoke(&self, entry: &DenyEntry) -> bool {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .deny
            .remove(entry)
    }

    /// A copy of the current deny list.
    pub fn deny_list(&self) -> DenyList {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .deny
            .clone()
    }

    /// The site rule.
    pub fn site_rule(&self) -> SiteRule {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .site_rule
            .clone()
    }

    /// Reads the identity of a verified certificate and applies the rules, as a rustls error.
    fn admit(
        &self,
        end_entity: &CertificateDer<'_>,
        side: &'static str,
    ) -> std::result::Result<PeerInfo, rustls::Error> {
        let peer = peer_info_from_cert(end_entity).map_err(|e| {
            tracing::warn!(side, error = %e, "refusing peer: certificate has no valid outpost identity");
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
        })?;
        let key = KeyId::of(end_entity);
        let public_key = crate::identity::public_key_id(end_entity).ok();
        self.check_presenting(&peer, Some(&key), public_key.as_ref()).map_err(|refusal| {
            tracing::warn!(side, %peer, reason = %refusal, "refusing peer during TLS handshake");
            rustls::Error::InvalidCertificate(match refusal {
                Refusal::Revoked => CertificateError::Revoked,
                Refusal::OtherSite => CertificateError::ApplicationVerificationFailure,
            })
        })?;
        Ok(peer)
    }
}

/// QUIC timing of links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportTuning {
    /// How often an idle link sends a keep-alive (default 1 s).
    pub keep_alive: Duration,
    /// How long without any packet before a link is declared dead (default 5 s).
    pub idle_timeout: Duration,
    /// Maximum number of concurrently open unidirectional streams a peer may open
    /// towards us: one per document that has changed during the connection (default 4096).
    pub max_document_streams: u32,
    /// Bytes a peer may send us ahead of what we read, over the whole connection
    /// (QUIC's connection receive window; default 8 MiB). Bounds what quinn buffers per peer.
    pub connection_receive_window: u32,
    /// The same per stream (default 1 MiB + 64 KiB: one largest frame).
    pub stream_receive_window: u32,
    /// The protocols offered in the TLS handshake, preferred first (default: every protocol
    /// this version speaks, newest first). Restricting it plays an older peer in tests.
    pub protocols: Vec<Protocol>,
}

impl Default for TransportTuning {
    fn default() -> Self {
        TransportTuning {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            max_document_streams: 4096,
            connection_receive_window: 8 * 1024 * 1024,
            stream_receive_window: 1024 * 1024 + 64 * 1024,
            protocols: Protocol::ALL.to_vec(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cert: &DeviceCert) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.ca_der().clone()).map_err(|e| {
        Error::TlsConfig(format!(
            "the fleet CA certificate is not a usable trust anchor: {e}"
        ))
    })?;
    Ok(Arc::new(roots))
}

/// Verifies client certificates: WebPKI against the fleet CA, then the [`PeerFilter`].
#[derive(Debug)]
struct FleetClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    filter: PeerFilter,
}

impl ClientCertVerifier for FleetClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "refusing client: certificate not valid for this fleet");
            })?;
        self.filter.admit(end_entity, "client")?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies server certificates: WebPKI against the fleet CA, then the [`PeerFilter`].
#[derive(Debug)]
struct FleetServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    filter: PeerFilter,
}

impl ServerCertVerifier for FleetServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .inspect_err(|e| tracing::warn!(error = %e, "refusing server: certificate not valid for this fleet"))?;
        self.filter.admit(end_entity, "server")?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls server configuration: device certificate, mandatory client certificates
/// verified against the fleet CA and `filter`, every protocol by ALPN, TLS 1.3.
pub fn rustls_server_config(
    cert: &DeviceCert,
    filter: &PeerFilter,
) -> Result<rustls::ServerConfig> {
    let webpki = WebPkiClientVerifier::builder_with_provider(roots(cert)?, provider())
        .build()
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    let verifier = Arc::new(FleetClientVerifier {
        inner: webpki,
        filter: filter.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert.cert_chain(), cert.private_key())
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    config.alpn_protocols = alpn_ids(&Protocol::ALL);
    Ok(config)
}

/// The rustls client configuration: the device certificate as client certificate, server
/// certificates verified against the fleet CA and `filter`, every protocol by ALPN, TLS 1.3.
pub fn rustls_client_config(
    cert: &DeviceCert,
    filter: &PeerFilter,
) -> Result<rustls::ClientConfig> {
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(cert)?, provider())
            .build()
            .map_err(|e| Error::TlsConfig(e.to_string()))?;
    let verifier = Arc::new(FleetServerVerifier {
        inner: webpki,
        filter: filter.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(cert.cert_chain(), cert.private_key())
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    config.alpn_protocols = alpn_ids(&Protocol::ALL);
    Ok(config)
}

/// The QUIC transport parameters: keep-alive, idle timeout and stream limits.
pub fn transport_config(tuning: &TransportTuning) -> Result<Arc<quinn::TransportConfig>> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(tuning.idle_timeout).map_err(|_| {
        Error::TlsConfig(format!(
            "idle timeout {:?} is too large",
            tuning.idle_timeout
        ))
    })?;
    transport
        .keep_alive_interval(Some(tuning.keep_alive))
        .max_idle_timeout(Some(idle))
        .max_concurrent_uni_streams(tuning.max_document_streams.into())
        .receive_window(tuning.connection_receive_window.into())
        .stream_receive_window(tuning.stream_receive_window.into())
        // One control stream per connection, opened by the dialer.
        .max_concurrent_bidi_streams(1u32.into());
    Ok(Arc::new(transport))
}

/// The quinn server configuration built from [`rustls_server_config`].
pub fn server_config(
    cert: &DeviceCert,
    filter: &PeerFilter,
    tuning: &TransportTuning,
) -> Result<quinn::ServerConfig> {
    let mut tls = rustls_server_config(cert, filter)?;
    tls.alpn_protocols = alpn_ids(&tuning.protocols);
    // Certificate renewal requests (`crate::renew`) come in connections of their own.
    tls.alpn_protocols.push(crate::renew::RENEW_ALPN.to_vec());
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(tuning)?);
    Ok(config)
}

/// The quinn client configuration built from [`rustls_client_config`].
pub fn client_config(
    cert: &DeviceCert,
    filter: &PeerFilter,
    tuning: &TransportTuning,
) -> Result<quinn::ClientConfig> {
    let mut tls = rustls_client_config(cert, filter)?;
    tls.alpn_protocols = alpn_ids(&tuning.protocols);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(tuning)?);
    Ok(config)
}

/// A quinn client configuration like [`client_config`] that offers only the ALPN ids
/// `alpn` (e.g. a renewal request).
pub fn client_config_for(
    cert: &DeviceCert,
    filter: &PeerFilter,
    tuning: &TransportTuning,
    alpn: &[&[u8]],
) -> Result<quinn::ClientConfig> {
    let mut tls = rustls_client_config(cert, filter)?;
    tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(tuning)?);
    Ok(config)
}

/// A QUIC endpoint bound to `addr` that accepts and dials outpost links.
///
/// Must be called within a tokio runtime.
pub fn endpoint(
    cert: &DeviceCert,
    filter: &PeerFilter,
    tuning: &TransportTuning,
    addr: std::net::SocketAddr,
) -> Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::server(server_config(cert, filter, tuning)?, addr)
        .map_err(|source| Error::Bind { addr, source })?;
    endpoint.set_default_client_config(client_config(cert, filter, tuning)?);
    Ok(endpoint)
}

/// The end-entity certificate (DER) the remote side of an established connection presented
/// in the TLS handshake, which verified it.
pub fn peer_certificate(conn: &quinn::Connection) -> Result<CertificateDer<'static>> {
    let identity = conn.peer_identity().ok_or_else(|| Error::InvalidIdentity {
        reason: "the peer presented no certificate".into(),
    })?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| Error::InvalidIdentity {
            reason: "the peer identity is not an X.509 certificate chain".into(),
        })?;
    chain
        .first()
        .cloned()
        .ok_or_else(|| Error::InvalidIdentity {
            reason: "the peer presented an empty certificate chain".into(),
        })
}

/// The identity of the remote side of an established connection, read from the
/// certificate that the TLS handshake verified.
pub fn peer_info_of(conn: &quinn::Connection) -> Result<PeerInfo> {
    peer_info_from_cert(&peer_certificate(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(site: &str, peer: &str, role: &str) -> PeerInfo {
        PeerInfo::parse(site, peer, role).expect("valid test identity")
    }

    #[test]
    fn site_rule() {
        let same = SiteRule::SameSite("lyon".parse().expect("site"));
        assert!(same.admits(&info("lyon", "pos-1", "pos")));
        assert!(!same.admits(&info("paris", "pos-1", "pos")));
        assert!(same.admits(&info("acme", "cloud-1", "cloud")));
        assert!(SiteRule::AnySite.admits(&info("paris", "pos-1", "pos")));
        assert_eq!(
            SiteRule::for_identity(&info("acme", "c", "cloud")),
            SiteRule::AnySite
        );
        assert_eq!(SiteRule::for_identity(&info("lyon", "k", "kiosk")), same);
    }

    #[test]
    fn deny_list() {
        let deny = DenyList::parse(["pos-1", "paris/kiosk-2"]).expect("parse");
        assert!(deny.denies(&info("lyon", "pos-1", "pos")));
        assert!(deny.denies(&info("paris", "kiosk-2", "kiosk")));
        assert!(!deny.denies(&info("lyon", "kiosk-2", "kiosk")));
        assert!(DenyList::parse(["a/b/c"]).is_err());
        assert!(DenyList::parse(["Pos"]).is_err());
        let entries: Vec<String> = deny.entries().map(|e| e.to_string()).collect();
        assert_eq!(entries, ["pos-1", "paris/kiosk-2"]);
    }

    #[test]
    fn filter_is_shared_between_clones() {
        let filter = PeerFilter::new(
            SiteRule::SameSite("lyon".parse().expect("site")),
            DenyList::new(),
        );
        let clone = filter.clone();
        let pos = info("lyon", "pos-1", "pos");
        assert_eq!(clone.check(&pos), Ok(()));
        filter.revoke(pos.peer.clone());
        assert_eq!(clone.check(&pos), Err(Refusal::Revoked));
        assert!(filter.unrevoke(&DenyEntry::Peer(pos.peer.clone())));
        assert_eq!(
            clone.check(&info("paris", "pos-1", "pos")),
            Err(Refusal::OtherSite)
        );
    }
}
