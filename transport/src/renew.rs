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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::frame::{read_frame, write_frame};
use crate::identity::{DeviceCert, FleetCa, SERVER_NAME};
use crate::tls::{self, PeerFilter, TransportTuning};

/// The ALPN id of a renewal connection.
pub const RENEW_ALPN: &[u8] = b"outpost-renew/1";

/// What a device sends.
const RENEW_REQUEST: &[u8] = b"renew v1";
/// The largest answer (a certificate in PEM is about 1 KiB).
const MAX_ANSWER: usize = 64 * 1024;
/// How long one renewal exchange may take.
const RENEW_TIMEOUT: Duration = Duration::from_secs(15);

/// A peer that renews certificates: the fleet CA and the lifetime of what it issues.
#[derive(Clone, Debug)]
pub struct Renewer {
    ca: Arc<FleetCa>,
    validity: time::Duration,
}

impl Renewer {
    /// Renews with `ca` for `validity_days` days.
    pub fn new(ca: FleetCa, validity_days: u32) -> Renewer {
        Renewer {
            ca: Arc::new(ca),
            validity: time::Duration::days(i64::from(validity_days)),
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
        let answer = if request.as_deref() != Some(RENEW_REQUEST) {
            Err("not a renewal request of this version".to_string())
        } else {
            match (renewer, tls::peer_certificate(&conn).ok()) {
                (None, _) => Err(
                    "this peer does not renew certificates; the cloud does when \
                     it holds the fleet CA's key (outpost-cloud --ca-key)"
                        .to_string(),
                ),
                (_, None) => Err("no certificate was presented".to_string()),
                (Some(r), Some(der)) => r.ca.renew(&der, r.validity).map_err(|e| e.to_string()),
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
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        write_frame(&mut send, RENEW_REQUEST, RENEW_REQUEST.len())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = send.finish();
        let answer = read_frame(&mut recv, MAX_ANSWER)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("the peer closed without an answer".into()))?;
        conn.close(0u32.into(), b"done");
        match answer.split_first() {
            Some((0, pem)) => {
                let pem = std::str::from_utf8(pem)
                    .map_err(|_| failed("the certificate is not PEM text".into()))?;
                let renewed = DeviceCert::from_pem(pem, cert.key_pem(), cert.ca_pem())?;
                if renewed.info() != cert.info() {
                    return Err(failed(format!(
                        "the peer renewed {} instead of {}",
                        renewed.info(),
                        cert.info()
                    )));
                }
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

/// When `cert` stops being valid, in milliseconds since the Unix epoch.
pub fn not_after_ms(cert: &[u8]) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    u64::try_from(parsed.validity().not_after.timestamp())
        .ok()
        .map(|s| s.saturating_mul(1000))
}
