//! Certificates that expire and renew: a device asks the cloud (which holds the fleet CA's
//! key) for a new certificate for its own key before the current one expires.
//!
//! The request is a short QUIC connection to a peer the device already links with,
//! authenticated like every link (mutual TLS with the current certificate, the deny list and
//! revocations apply), negotiated by its own ALPN id [`RENEW_ALPN`] so that it never reaches a
//! sync engine. The device sends one frame (`RENEW_REQUEST`); the peer answers one frame: `0`
//! and the new certificate in PEM, or `1` and why not. The renewing peer takes the identity
//! and the public key from the certificate the device presented in the handshake (never from
//! the request), so a device can only renew itself, as itself. The device keeps its private
//! key; it saves the new certificate and uses it for every later handshake.
//!
//! A device whose certificate already expired cannot renew (its handshakes fail): the
//! operator issues it a new one with `outpost cert issue`. Renewal starts
//! `NodeConfig::renew_before` ahead (default 10 days), so a site whose cloud is down for a
//! week still renews in time.
//!
//! What keeps renewal from defeating revocation and from locking a device out:
//! - the renewing peer renews a certificate only inside its renewal window (its last
//!   [`Renewer::window`], by default 15 days or half the renewed lifetime), at most once per
//!   window per key (a second request with the same certificate gets the same answer again;
//!   any other is refused), and never a revoked key (the handshake refuses it: revocations
//!   name the key as well as the certificate, see `outpost_core::revocation`);
//! - a device asks only peers whose verified certificate has the role `cloud`, checks that
//!   the answer chains to the fleet CA (signature, not only the issuer's name) and is valid
//!   now and longer than the current one, and switches to it only after a handshake with it
//!   succeeded (a probe, [`probe_certificate`]): until then it keeps the previous one, in
//!   memory and on disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::signing::KeyId;
use outpost_core::Role;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::error::{Error, Result};
use crate::frame::{read_frame, write_frame};
use crate::identity::{public_key_id, DeviceCert, FleetCa, SERVER_NAME};
use crate::tls::{self, PeerFilter, TransportTuning};

/// The ALPN id of a renewal connection.
pub const RENEW_ALPN: &[u8] = b"outpost-renew/1";

/// What a device sends.
const RENEW_REQUEST: &[u8] = b"renew v1";
/// What a device sends to try a renewed certificate: the answer is `0` and nothing.
const PROBE_REQUEST: &[u8] = b"probe v1";
/// The largest answer (a certificate in PEM is about 1 KiB).
const MAX_ANSWER: usize = 64 * 1024;
/// How long one renewal exchange may take.
const RENEW_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest renewal window (see [`Renewer::window`]).
pub const MAX_RENEW_WINDOW_DAYS: i64 = 15;
/// The most keys a renewer remembers (about 200 bytes each): beyond, the oldest entries whose
/// window has passed are forgotten.
const MAX_LEDGER: usize = 100_000;

/// A peer that renews certificates: the fleet CA, the lifetime of what it issues, the window
/// in which it renews, and which keys it renewed when.
#[derive(Clone, Debug)]
pub struct Renewer {
    ca: Arc<FleetCa>,
    validity: time::Duration,
    window: time::Duration,
    ledger: Arc<Mutex<Ledger>>,
    filter: Option<PeerFilter>,
}

/// The renewals of the last window, by key, and where they are kept.
#[derive(Debug, Default)]
struct Ledger {
    by_key: BTreeMap<KeyId, Renewed>,
    path: Option<PathBuf>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Renewed {
    /// When, in ms since the Unix epoch.
    at_ms: u64,
    /// The certificate presented (SHA-256 of its DER).
    from: KeyId,
    /// The certificate issued, in PEM.
    pem: String,
}

impl Renewer {
    /// Renews with `ca` for `validity_days` days, inside a window of
    /// min([`MAX_RENEW_WINDOW_DAYS`], half the validity).
    pub fn new(ca: FleetCa, validity_days: u32) -> Renewer {
        let validity = time::Duration::days(i64::from(validity_days.max(1)));
        Renewer {
            ca: Arc::new(ca),
            validity,
            window: (validity / 2_i32).min(time::Duration::days(MAX_RENEW_WINDOW_DAYS)),
            ledger: Arc::default(),
            filter: None,
        }
    }

    /// The renewal window: a certificate is renewed only when less than this remains of it,
    /// and a key at most once per window.
    pub fn window(&self) -> time::Duration {
        self.window
    }

    /// Sets the renewal window (clamped to at least one minute).
    pub fn with_window(mut self, window: time::Duration) -> Renewer {
        self.window = window.max(time::Duration::minutes(1));
        self
    }

    /// Also refuses what `filter` refuses (the deny list and the revocations the peer knows),
    /// checked again at the moment of renewal.
    pub fn with_filter(mut self, filter: PeerFilter) -> Renewer {
        self.filter = Some(filter);
        self
    }

    /// Keeps the ledger of renewals (which key was renewed when) in the file `path`, so that
    /// the once-per-window rule holds across restarts. A missing or unreadable file starts
    /// an empty ledger (logged).
    pub fn with_ledger(self, path: PathBuf) -> Renewer {
        {
            let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
            match std::fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<Vec<(KeyId, Renewed)>>(&bytes) {
                    Ok(entries) => ledger.by_key = entries.into_iter().collect(),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "the renewal ledger is unreadable; starting an empty one")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the renewal ledger cannot be read; starting an empty one")
                }
            }
            ledger.path = Some(path);
        }
        self
    }

    /// Renews the certificate `presented` (DER, verified in the handshake) at `now_ms`: the
    /// new certificate in PEM, or why not.
    pub fn renew(&self, presented: &[u8], now_ms: u64) -> std::result::Result<String, String> {
        let info = crate::identity::peer_info_from_cert(presented).map_err(|e| e.to_string())?;
        let not_after = not_after_ms(presented)
            .ok_or_else(|| format!("the validity of the certificate of {info} cannot be read"))?;
        let window_ms = u64::try_from(self.window.whole_milliseconds()).unwrap_or(u64::MAX);
        let left_ms = not_after.saturating_sub(now_ms);
        if left_ms > window_ms {
            return Err(format!(
                "the certificate of {info} is valid {:.1} more days; it is renewed only in its \
                 last {:.1} days (the renewal window)",
                left_ms as f64 / 86_400_000.0,
                window_ms as f64 / 86_400_000.0
            ));
        }
        let cert_id = KeyId::of(presented);
        let key = public_key_id(presented).map_err(|e| e.to_string())?;
        if let Some(filter) = &self.filter {
            filter
                .check_presenting(&info, Some(&cert_id), Some(&key))
                .map_err(|refusal| format!("{info} is not renewed: {refusal}"))?;
        }
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = ledger.by_key.get(&key) {
            if now_ms.saturating_sub(prev.at_ms) < window_ms {
                if prev.from == cert_id {
                    // The device did not get (or save) the answer: the same one again, no
                    // second certificate.
                    return Ok(prev.pem.clone());
                }
                return Err(format!(
                    "the key of {info} was renewed {:.1} hours ago; a key is renewed at most \
                     once per renewal window ({:.1} days)",
                    now_ms.saturating_sub(prev.at_ms) as f64 / 3_600_000.0,
                    window_ms as f64 / 86_400_000.0
                ));
            }
        }
        let pem = self
            .ca
            .renew(presented, self.validity)
            .map_err(|e| e.to_string())?;
        ledger.by_key.insert(
            key,
            Renewed {
                at_ms: now_ms,
                from: cert_id,
                pem: pem.clone(),
            },
        );
        if ledger.by_key.len() > MAX_LEDGER {
            ledger
                .by_key
                .retain(|_, r| now_ms.saturating_sub(r.at_ms) < window_ms);
        }
        ledger.save();
        Ok(pem)
    }
}

impl Ledger {
    fn save(&self) {
        let Some(path) = &self.path else { return };
        let entries: Vec<(&KeyId, &Renewed)> = self.by_key.iter().collect();
        let result = serde_json::to_vec(&entries)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let partial = path.with_extension("partial");
                std::fs::write(&partial, bytes)?;
                std::fs::File::open(&partial)?.sync_all()?;
                std::fs::rename(&partial, path)
            });
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "the renewal ledger could not be saved: after a restart a key may be renewed once more in its window");
        }
    }
}

/// Whether an established connection is a renewal request (by its ALPN).
pub fn is_renewal(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == RENEW_ALPN)
}

/// Answers one renewal request on an accepted connection (see [`is_renewal`]). A peer
/// without a [`Renewer`] answers that it does not renew.
pub async fn serve_renewal(conn: quinn::Connection, renewer: Option<&Renewer>) {
    let remote = conn.remote_address();
    let result = tokio::time::timeout(RENEW_TIMEOUT, async {
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let request = read_frame(&mut recv, RENEW_REQUEST.len())
            .await
            .map_err(|e| e.to_string())?;
        let answer = if request.as_deref() == Some(PROBE_REQUEST) {
            // A device tries a renewed certificate: the handshake was the test.
            Ok(String::new())
        } else if request.as_deref() != Some(RENEW_REQUEST) {
            Err("not a renewal request of this version".to_string())
        } else {
            match (renewer, tls::peer_certificate(&conn).ok()) {
                (None, _) => Err(
                    "this peer does not renew certificates; the cloud does when \
                     it holds the fleet CA's key (outpost-cloud --ca-key)"
                        .to_string(),
                ),
                (_, None) => Err("no certificate was presented".to_string()),
                (Some(r), Some(der)) => r.renew(&der, outpost_core::Timestamp::now().as_millis()),
            }
        };
        let mut frame = Vec::new();
        match &answer {
            Ok(pem) => {
                frame.push(0);
                frame.extend_from_slice(pem.as_bytes());
            }
            Err(reason) => {
                frame.push(1);
                frame.extend_from_slice(reason.as_bytes());
            }
        }
        write_frame(&mut send, &frame, MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        // The device closes once it has read the answer.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        answer
    })
    .await;
    match result {
        Ok(Ok(pem)) if pem.is_empty() => {
            tracing::debug!(%remote, "a device tried its renewed certificate");
        }
        Ok(Ok(_)) => {
            let who = tls::peer_info_of(&conn)
                .map(|p| p.to_string())
                .unwrap_or_default();
            tracing::info!(%remote, device = %who, "renewed a device certificate");
        }
        Ok(Err(reason)) => tracing::warn!(%remote, %reason, "certificate renewal refused"),
        Err(_) => tracing::warn!(%remote, "certificate renewal timed out"),
    }
}

/// Asks the peer at `addr` for a renewed certificate of `cert` (same identity, same key).
///
/// Only a peer whose certificate (verified in the handshake) has the role `cloud` is asked:
/// a device never takes a certificate from another device. The answer is taken only if it
/// chains to the fleet CA, is valid now, ends later than `cert`, and certifies the same
/// identity for the same key ([`verify_renewed`]).
pub async fn request_renewal(
    endpoint: &quinn::Endpoint,
    cert: &DeviceCert,
    filter: &PeerFilter,
    tuning: &TransportTuning,
    addr: SocketAddr,
) -> Result<DeviceCert> {
    let failed = |reason: String| Error::Renewal {
        peer: addr.to_string(),
        reason,
    };
    let config = tls::client_config_for(cert, filter, tuning, &[RENEW_ALPN])?;
    let exchange = async {
        let conn = endpoint
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| failed(e.to_string()))?
            .await
            .map_err(|e| failed(e.to_string()))?;
        let server = tls::peer_info_of(&conn)?;
        if server.role != Role::cloud() {
            conn.close(0u32.into(), b"not a cloud peer");
            return Err(failed(format!(
                "{server} is not a cloud peer: a device does not renew certificates, and a \
                 device asks only the cloud"
            )));
        }
        let answer = exchange(&conn, RENEW_REQUEST).await.map_err(failed)?;
        match answer.split_first() {
            Some((0, pem)) => {
                let pem = std::str::from_utf8(pem)
                    .map_err(|_| failed("the certificate is not PEM text".into()))?;
                let renewed = DeviceCert::from_pem(pem, cert.key_pem(), cert.ca_pem())?;
                verify_renewed(cert, &renewed, UnixTime::now()).map_err(failed)?;
                Ok(renewed)
            }
            Some((_, reason)) => Err(failed(String::from_utf8_lossy(reason).into_owned())),
            None => Err(failed("an empty answer".into())),
        }
    };
    tokio::time::timeout(RENEW_TIMEOUT, exchange)
        .await
        .map_err(|_| failed("no answer within 15 s".into()))?
}

/// Tries `cert` (a renewed certificate) in a handshake with the peer at `addr`: a device
/// switches to a renewed certificate only once it has worked.
pub async fn probe_certificate(
    endpoint: &quinn::Endpoint,
    cert: &DeviceCert,
    filter: &PeerFilter,
    tuning: &TransportTuning,
    addr: SocketAddr,
) -> Result<()> {
    let failed = |reason: String| Error::Renewal {
        peer: addr.to_string(),
        reason: format!("the renewed certificate failed its first handshake: {reason}"),
    };
    let config = tls::client_config_for(cert, filter, tuning, &[RENEW_ALPN])?;
    let probe = async {
        let conn = endpoint
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| failed(e.to_string()))?
            .await
            .map_err(|e| failed(e.to_string()))?;
        exchange(&conn, PROBE_REQUEST).await.map_err(failed)?;
        Ok(())
    };
    tokio::time::timeout(RENEW_TIMEOUT, probe)
        .await
        .map_err(|_| failed("no answer within 15 s".into()))?
}

/// Sends `request` on a new stream of `conn`, reads the one-frame answer, closes.
async fn exchange(
    conn: &quinn::Connection,
    request: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    write_frame(&mut send, request, request.len())
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let answer = read_frame(&mut recv, MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the peer closed without an answer".to_string())?;
    conn.close(0u32.into(), b"done");
    Ok(answer)
}

/// Checks a renewed certificate before a device takes it: its chain to the fleet CA of
/// `current` (the CA's signature, not only its name), its validity at `now`, that it ends
/// later than `current`, and that it certifies the same identity. The key is checked by
/// [`DeviceCert::from_pem`].
pub fn verify_renewed(
    current: &DeviceCert,
    renewed: &DeviceCert,
    now: UnixTime,
) -> std::result::Result<(), String> {
    if renewed.info() != current.info() {
        return Err(format!(
            "the peer renewed {} instead of {}",
            renewed.info(),
            current.info()
        ));
    }
    let anchor = webpki::anchor_from_trusted_cert(current.ca_der())
        .map_err(|e| format!("the fleet CA certificate is unusable ({e})"))?;
    let der = CertificateDer::from(renewed.cert_der().as_ref());
    let ee = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| format!("the renewed certificate is not X.509 ({e})"))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        now,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| {
        format!("the renewed certificate is not a valid certificate of this fleet's CA now ({e})")
    })?;
    match (
        not_after_ms(renewed.cert_der()),
        not_after_ms(current.cert_der()),
    ) {
        (Some(new), Some(old)) if new > old => Ok(()),
        _ => Err("the renewed certificate does not end later than the current one".into()),
    }
}

/// When `cert` stops being valid, in milliseconds since the Unix epoch.
pub fn not_after_ms(cert: &[u8]) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    u64::try_from(parsed.validity().not_after.timestamp())
        .ok()
        .map(|s| s.saturating_mul(1000))
}
