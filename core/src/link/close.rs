//! Why a link was closed: the application close codes of outpost links.
//!
//! The link layer decides when to close a connection and with which code; the transport
//! sends the code as the QUIC application close code and maps a peer's code back.

/// Application error codes used when closing an outpost QUIC connection.
///
/// | code | name | meaning |
/// |---|---|---|
/// | `0x00` | `Shutdown` | the node is shutting down |
/// | `0x01` | `Disconnected` | the application asked to drop the link  |
/// | `0x02` | `Duplicate` | another connection with the same peer is kept instead |
/// | `0x03` | `Revoked` | the peer was revoked while connected |
/// | `0x04` | `LinkCut` | the link to this peer is administratively cut (`Node::cut_link`) |
/// | `0x05` | `PeerIdInUse` | a peer with the same id but another site is connected |
/// | `0x06` | `CertificateExpired` | the peer's certificate expired while connected (renew it) |
/// | `0x10` | `FrameTooLarge` | the peer sent a frame over the maximum size |
/// | `0x11` | `FrameTruncated` | a stream of the peer ended inside a frame |
/// | `0x12` | `Protocol` | the peer broke the stream layout (bad header, unexpected stream) |
/// | `0x13` | `SlowPeer` | the peer did not read fast enough and our send queue filled up |
/// | `0x14` | `BadIdentity` | the peer's certificate identity is unusable (or it is ourselves) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// The node is shutting down.
    Shutdown,
    /// The application asked to drop the link.
    Disconnected,
    /// Another connection with the same peer is kept instead.
    Duplicate,
    /// The peer was revoked while connected.
    Revoked,
    /// The link to this peer is administratively cut.
    LinkCut,
    /// A peer with the same id but another site is connected.
    PeerIdInUse,
    /// The peer's certificate expired while connected.
    CertificateExpired,
    /// The peer sent a frame over the maximum size.
    FrameTooLarge,
    /// A stream of the peer ended inside a frame.
    FrameTruncated,
    /// The peer broke the stream layout.
    Protocol,
    /// The peer did not read fast enough.
    SlowPeer,
    /// The peer's certificate identity is unusable.
    BadIdentity,
}

impl CloseCode {
    /// Every code.
    pub const ALL: [CloseCode; 12] = [
        CloseCode::Shutdown,
        CloseCode::Disconnected,
        CloseCode::Duplicate,
        CloseCode::Revoked,
        CloseCode::LinkCut,
        CloseCode::PeerIdInUse,
        CloseCode::CertificateExpired,
        CloseCode::FrameTooLarge,
        CloseCode::FrameTruncated,
        CloseCode::Protocol,
        CloseCode::SlowPeer,
        CloseCode::BadIdentity,
    ];

    /// The numeric code sent on the wire.
    pub fn code(self) -> u32 {
        match self {
            CloseCode::Shutdown => 0x00,
            CloseCode::Disconnected => 0x01,
            CloseCode::Duplicate => 0x02,
            CloseCode::Revoked => 0x03,
            CloseCode::LinkCut => 0x04,
            CloseCode::PeerIdInUse => 0x05,
            CloseCode::CertificateExpired => 0x06,
            CloseCode::FrameTooLarge => 0x10,
            CloseCode::FrameTruncated => 0x11,
            CloseCode::Protocol => 0x12,
            CloseCode::SlowPeer => 0x13,
            CloseCode::BadIdentity => 0x14,
        }
    }

    /// The code for a wire value, if it is one of ours.
    pub fn from_code(code: u64) -> Option<CloseCode> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }

    /// The short reason sent along with the code.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Shutdown => "shutting down",
            CloseCode::Disconnected => "disconnected by the application",
            CloseCode::Duplicate => "duplicate connection",
            CloseCode::Revoked => "revoked",
            CloseCode::LinkCut => "link cut",
            CloseCode::PeerIdInUse => "peer id in use by another site",
            CloseCode::CertificateExpired => "certificate expired",
            CloseCode::FrameTooLarge => "frame too large",
            CloseCode::FrameTruncated => "truncated frame",
            CloseCode::Protocol => "protocol violation",
            CloseCode::SlowPeer => "peer too slow",
            CloseCode::BadIdentity => "unusable identity",
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:02x})", self.reason(), self.code())
    }
}
