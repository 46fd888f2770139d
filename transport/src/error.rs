//! The error type of outpost-transport.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in outpost-transport. Each message says what happened,
/// to which peer or file, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PEM file or string could not be decoded.
    #[error("cannot read the {what} PEM{}: {reason}; check that the file is the one written by `FleetCa::save` / `DeviceCert::save`, or issue a new certificate", path_suffix(.path))]
    InvalidPem {
        /// What was being read (`fleet CA certificate`, `device key`, ...).
        what: &'static str,
        /// The file, when read from disk.
        path: Option<PathBuf>,
        /// Why decoding failed.
        reason: String,
    },
    /// A certificate could not be generated or signed.
    #[error(
        "cannot generate the {what}: {source}; this is a bug or an unsupported key type, report it"
    )]
    CertGeneration {
        /// What was being generated.
        what: &'static str,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate does not carry a usable outpost identity.
    #[error("certificate carries no valid outpost identity: {reason}; issue device certificates with `FleetCa::issue`, which writes a SAN URI outpost://<site>/<peer>?role=<role>")]
    InvalidIdentity {
        /// What is wrong with it.
        reason: String,
    },
    /// A device certificate, its key and the fleet CA do not belong together.
    #[error("{reason}; keep cert.pem, key.pem and ca.pem from the same `DeviceCert::save`, or issue a new certificate")]
    MismatchedCertificate {
        /// What does not match.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("cannot access {}: {source}; check that the path exists and is readable/writable", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A name in a deny list or a peer identity was malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What kind of value it was.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The rustls configuration could not be built.
    #[error("cannot build the TLS configuration: {0}; check the certificates (the fleet CA must be a CA certificate and the device key must match its certificate)")]
    TlsConfig(String),
    /// The UDP socket for the QUIC endpoint could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A connection could not be started or completed.
    #[error("cannot connect to {addr}: {reason}; check that the peer is running, reachable, and holds a certificate of the same fleet")]
    Connect {
        /// The remote address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A node was started with a cloud certificate but no single site to serve.
    #[error("{identity} is a cloud identity, and a Node serves one site: set NodeConfig::site_rule to SiteRule::SameSite(<site>), or run outpost-cloud, which serves every site with an engine and store namespace of its own")]
    MultiSiteNode {
        /// The node's identity.
        identity: outpost_core::PeerInfo,
    },
    /// A dial target could not be resolved or reached.
    #[error("cannot reach {target}: {reason}; check the name or address and that the peer is running and reachable")]
    Dial {
        /// The target as given (`host:port`).
        target: String,
        /// Why.
        reason: String,
    },
    /// The peer refused this device's certificate as revoked during the handshake.
    #[error("{target} refused this device's certificate as revoked: the fleet revoked this device (outpost cert revoke); it cannot sync until it gets a new certificate")]
    DialRevoked {
        /// The target as given (`host:port`).
        target: String,
    },
    /// A connection was lost or closed.
    #[error("connection lost: {0}; the node reconnects to static peers on its own")]
    Connection(#[from] quinn::ConnectionError),
    /// A frame announced more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes; the peer is misbehaving or uses a larger `max_frame_size`, make it equal on all peers")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame (expected {expected} bytes, got {received}); the peer crashed or is misbehaving")]
    FrameTruncated {
        /// Bytes the frame needed (including the 4-byte length for a truncated header).
        expected: usize,
        /// Bytes received before the end.
        received: usize,
    },
    /// Reading or writing a stream failed.
    #[error("stream I/O failed: {0}; the connection is closed and will be re-established")]
    StreamIo(#[source] std::io::Error),
    /// A stream did not follow the outpost stream layout.
    #[error(
        "protocol violation by the peer: {0}; make sure both peers run compatible outpost versions"
    )]
    Protocol(String),
    /// A peer does not read fast enough: its send queue is full.
    #[error("peer {peer} reads too slowly ({queued} messages queued on one stream); the connection is closed and will be re-established, check the peer's network and load")]
    SendQueueFull {
        /// The peer.
        peer: outpost_core::PeerId,
        /// The queue capacity.
        queued: usize,
    },
    /// The session with a peer has ended.
    #[error(
        "the connection with peer {peer} has ended; messages are sent again after it reconnects"
    )]
    SessionClosed {
        /// The peer.
        peer: outpost_core::PeerId,
    },
    /// The local store failed.
    #[error("store error: {0}")]
    Store(#[from] outpost_core::Error),
    /// The node has shut down (or its engine task ended).
    #[error("the node has shut down; start a new `Node` to continue")]
    NodeStopped,
    /// A certificate renewal failed.
    #[error("certificate renewal through {peer} failed: {reason}; the device keeps its current certificate and retries (renew it by hand with `outpost cert issue` before it expires)")]
    Renewal {
        /// The peer asked.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A revocation was not taken.
    #[error("revocation not taken: {0}")]
    Revocation(#[from] outpost_core::engine::RevocationRefused),
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" at {}", p.display()),
        None => String::new(),
    }
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
