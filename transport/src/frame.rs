//! Length-prefixed frames and the application close codes of outpost links.
//!
//! Every QUIC stream of an outpost link carries a sequence of frames:
//!
//! ```text
//! +----------------------+---------------------+
//! | length: u32, big end | payload: length B   |
//! +----------------------+---------------------+
//! ```
//!
//! A frame longer than the configured maximum ([`DEFAULT_MAX_FRAME_SIZE`], 1 MiB, the engine's largest message) is
//! refused as soon as its length is read, before anything is allocated
//! ([`Error::FrameTooLarge`]); a stream that ends inside a frame is
//! [`Error::FrameTruncated`]. In both cases the session closes the whole connection
//! with [`CloseCode::FrameTooLarge`] or [`CloseCode::FrameTruncated`] and logs why; the
//! node keeps serving its other peers, and the offending peer may reconnect.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) use outpost_core::CloseCode;

use crate::error::{Error, Result};

/// The default maximum payload size of a frame: the engine's largest message (1 MiB). A
/// frame the engine would refuse anyway is refused before it is buffered.
pub const DEFAULT_MAX_FRAME_SIZE: usize = outpost_core::engine::wire::MAX_MESSAGE_BYTES;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// How the transport sends and reads [`CloseCode`]s on QUIC connections.
pub trait CloseCodeExt: Sized {
    /// The code as a QUIC variable-length integer.
    fn varint(self) -> quinn::VarInt;
    /// Closes `conn` with this code and its reason.
    fn close(self, conn: &quinn::Connection);
    /// The close code that answers a frame reading error, if the error is the peer's fault.
    fn for_error(error: &Error) -> Option<CloseCode>;
    /// The outpost close code of a connection error, if the peer closed with one.
    fn of_connection_error(error: &quinn::ConnectionError) -> Option<CloseCode>;
}

impl CloseCodeExt for CloseCode {
    fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.code())
    }

    fn for_error(error: &Error) -> Option<CloseCode> {
        match error {
            Error::FrameTooLarge { .. } => Some(CloseCode::FrameTooLarge),
            Error::FrameTruncated { .. } => Some(CloseCode::FrameTruncated),
            Error::Protocol(_) => Some(CloseCode::Protocol),
            _ => None,
        }
    }

    fn close(self, conn: &quinn::Connection) {
        conn.close(self.varint(), self.reason().as_bytes());
    }

    fn of_connection_error(error: &quinn::ConnectionError) -> Option<CloseCode> {
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => {
                CloseCode::from_code(close.error_code.into_inner())
            }
            // The peer's TLS refused our certificate as revoked (its deny list names this
            // device): in TLS 1.3 the client's handshake completes before the server checks
            // the client's certificate, so this arrives as a close of the new connection.
            e if refused_as_revoked(e) => Some(CloseCode::Revoked),
            _ => None,
        }
    }
}

/// Whether `error` is the peer refusing our certificate as revoked (TLS alert
/// `certificate_revoked`, which QUIC carries as a crypto error code).
pub(crate) fn refused_as_revoked(error: &quinn::ConnectionError) -> bool {
    let revoked =
        quinn::TransportErrorCode::crypto(u8::from(rustls::AlertDescription::CertificateRevoked));
    matches!(error, quinn::ConnectionError::ConnectionClosed(close) if close.error_code == revoked)
}

/// Encodes one frame: the 4-byte big-endian length, then `payload`.
pub fn encode(payload: &[u8], max: usize) -> Result<Vec<u8>> {
    let len = checked_len(payload.len(), max)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn checked_len(len: usize, max: usize) -> Result<u32> {
    match u32::try_from(len) {
        Ok(l) if len <= max => Ok(l),
        _ => Err(Error::FrameTooLarge {
            len: len as u64,
            max,
        }),
    }
}

/// Decodes one frame from the start of `buf` without I/O.
///
/// Returns `Ok(None)` when `buf` does not hold a whole frame yet, otherwise the payload
/// and the number of bytes consumed.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max,
        });
    }
    Ok(buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .map(|payload| (payload, HEADER_LEN + len)))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
    max: usize,
) -> Result<()> {
    let len = checked_len(payload.len(), max)?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(Error::StreamIo)?;
    writer.write_all(payload).await.map_err(Error::StreamIo)
}

/// Reads one frame.
///
/// Returns `Ok(None)` when the stream ends cleanly between frames,
/// [`Error::FrameTruncated`] when it ends inside one, and [`Error::FrameTooLarge`]
/// when the announced length exceeds `max` (nothing is allocated for it).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>> {
    match read_header(reader, max).await? {
        None => Ok(None),
        Some(len) => read_payload(reader, len).await.map(Some),
    }
}

/// Reads the length prefix of the next frame: `Ok(None)` at a clean end of the stream.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<usize>> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(Error::FrameTruncated {
            expected: HEADER_LEN,
            received: got,
        });
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max,
        });
    }
    Ok(Some(len))
}

/// Reads a payload of `len` bytes; memory grows with the bytes that arrive, not with the
/// length a peer announces.
pub(crate) async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(len.min(64 * 1024));
    let got = reader
        .take(len as u64)
        .read_to_end(&mut payload)
        .await
        .map_err(Error::StreamIo)?;
    if got < len {
        return Err(Error::FrameTruncated {
            expected: HEADER_LEN + len,
            received: HEADER_LEN + got,
        });
    }
    Ok(payload)
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader
            .read(&mut buf[filled..])
            .await
            .map_err(Error::StreamIo)?
        {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello", 100).await.expect("write");
        write_frame(&mut buf, b"", 100).await.expect("write empty");
        assert_eq!(buf, [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0, 0]);
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame(&mut r, 100).await.expect("read"),
            Some(b"hello".to_vec())
        );
        assert_eq!(
            read_frame(&mut r, 100).await.expect("read"),
            Some(Vec::new())
        );
        assert_eq!(read_frame(&mut r, 100).await.expect("eof"), None);
    }

    #[tokio::test]
    async fn oversized_is_refused_before_allocation() {
        let buf = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_frame(&mut buf.as_slice(), 1024)
            .await
            .expect_err("too large");
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    len: 0xffff_ffff,
                    max: 1024
                }
            ),
            "{err}"
        );
        assert_eq!(CloseCode::for_error(&err), Some(CloseCode::FrameTooLarge));
        let err = write_frame(&mut Vec::new(), &[0; 11], 10)
            .await
            .expect_err("too large to send");
        assert!(
            matches!(err, Error::FrameTooLarge { len: 11, max: 10 }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn truncated_is_an_error() {
        for buf in [&[0u8, 0][..], &[0, 0, 0, 5, b'a', b'b'][..]] {
            let err = read_frame(&mut &buf[..], 100).await.expect_err("truncated");
            assert!(matches!(err, Error::FrameTruncated { .. }), "{err}");
            assert_eq!(CloseCode::for_error(&err), Some(CloseCode::FrameTruncated));
        }
    }

    #[test]
    fn sans_io_decode() {
        let framed = encode(b"abc", 10).expect("encode");
        assert_eq!(decode(&framed[..2], 10).expect("partial header"), None);
        assert_eq!(decode(&framed[..5], 10).expect("partial payload"), None);
        assert_eq!(decode(&framed, 10).expect("whole"), Some((&b"abc"[..], 7)));
        assert!(decode(&[0, 0, 1, 0], 10).is_err());
        assert!(encode(&[0; 11], 10).is_err());
    }

    #[test]
    fn close_codes_round_trip() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code().into()), Some(code));
        }
        assert_eq!(CloseCode::from_code(0x99), None);
    }
}
