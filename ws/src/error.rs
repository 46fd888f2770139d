//! Errors of the WebSocket side.

use std::path::PathBuf;

/// Errors of `outpost-ws`: tokens, the token key, the listener.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The token key or the revocation list could not be read or written.
    #[error("web token files in {dir}: {source}; check that the data directory is writable by this user")]
    TokenFiles {
        /// The directory holding the key and the revocation list.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A token is malformed, forged, expired, revoked or of another site.
    #[error("web token refused: {0}; issue a new one with `outpost token issue`")]
    TokenRefused(String),
    /// A token was asked for with a role or name that is not valid.
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
    /// The listening socket could not be bound.
    #[error("could not listen for WebSocket clients on {addr}: {source}; is the port free?")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS configuration of the WebSocket port could not be made from the device's
    /// certificate and key.
    #[error("TLS for web clients (wss): {0}; check the device's certificate and key (`outpost cert issue`)")]
    Tls(String),
}
