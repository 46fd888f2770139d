//! One authenticated QUIC connection with a peer, and the streams it carries.
//!
//! # Stream layout
//!
//! - **Control stream**: one bidirectional stream per connection, opened by the dialer
//!   (the QUIC client) right after the handshake. It carries the engine messages that
//!   name no document (`Transmit.doc == None`), in both directions.
//! - **Document streams**: one unidirectional stream per (direction, document), opened
//!   lazily by the sender the first time it has a message for that document, and kept
//!   open for the life of the connection. A large catch-up of one document therefore
//!   never delays live changes of another: QUIC flow control and loss recovery are per
//!   stream.
//!
//! Every stream carries [frames](crate::frame). The first frame of every stream, in each
//! direction, is a **header**: empty on the control stream, the document id in UTF-8
//! (e.g. `orders/2026-11-24`) on a document stream. The header is used for routing logs
//! and for sanity checks only: engine messages name their document themselves and are
//! opaque to the transport. A malformed header, a second control stream or a stream that
//! ends inside a frame closes the connection with the matching [`CloseCode`].
//!
//! # Backpressure
//!
//! Every stream has its own writer task with a bounded queue; [`Session::send`] never
//! waits. When a queue is full the peer is not keeping up, [`Session::send`] fails with
//! [`Error::SendQueueFull`], and the caller closes the connection with
//! [`CloseCode::SlowPeer`] (the sync engine resumes after the reconnect). Readers push
//! into the caller's bounded inbox and wait when it is full, which lets QUIC flow
//! control slow the sender down.

use std::collections::HashMap;
use std::time::Duration;

use outpost_core::{DocumentId, PeerId, PeerInfo};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::frame::{
    read_frame, read_header, read_payload, write_frame, CloseCode, CloseCodeExt,
    DEFAULT_MAX_FRAME_SIZE,
};

/// Identifies one connection for its whole life (quinn's `stable_id`).
pub type SessionId = usize;

/// Limits of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Maximum frame payload, in both directions (default 1 MiB, the engine's largest message). Use the same value on
    /// every peer of a fleet.
    pub max_frame_size: usize,
    /// Messages queued per stream before the peer counts as too slow (default 1024).
    pub send_queue: usize,
    /// Bytes of incoming frames a connection may hold at once, over all its streams, while
    /// they are read and handed to the engine (default 8 MiB, at least one frame). A peer
    /// that opens many streams and leaves frames half sent waits for this budget instead of
    /// making us buffer its frames; QUIC flow control then stops it.
    pub max_buffered_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            send_queue: 1024,
            max_buffered_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a session reports to its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// A frame arrived from the peer.
    Message {
        /// The session it arrived on.
        session: SessionId,
        /// The peer, as authenticated by its certificate.
        peer: PeerId,
        /// The document named by the stream header; `None` on the control stream.
        doc: Option<DocumentId>,
        /// The frame payload.
        bytes: Vec<u8>,
    },
    /// The connection is closed: by us, by the peer, or lost. Sent exactly once.
    Closed {
        /// The session.
        session: SessionId,
        /// The peer.
        peer: PeerId,
        /// Why.
        error: quinn::ConnectionError,
    },
}

/// An established, authenticated connection with one peer.
///
/// Dropping a `Session` closes its connection with [`CloseCode::Shutdown`]; use
/// [`Session::finish`] to flush queued messages first.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    peer: PeerInfo,
    conn: quinn::Connection,
    config: SessionConfig,
    control: Option<mpsc::Sender<Vec<u8>>>,
    docs: HashMap<DocumentId, mpsc::Sender<Vec<u8>>>,
    writers: Vec<JoinHandle<()>>,
    span: tracing::Span,
}

impl Session {
    /// Starts the stream tasks of an established connection.
    ///
    /// `peer` must be the identity verified during the handshake
    /// ([`peer_info_of`](crate::tls::peer_info_of)). Incoming frames and the final
    /// close are reported to `inbox`. Must be called within a tokio runtime.
    pub fn start(
        conn: quinn::Connection,
        peer: PeerInfo,
        config: SessionConfig,
        inbox: mpsc::Sender<SessionEvent>,
    ) -> Session {
        let id = conn.stable_id();
        let dialer = conn.side() == quinn::Side::Client;
        let span = tracing::info_span!("session", peer = %peer.peer, site = %peer.site, id, dialer);
        let ctx = ReaderCtx {
            conn: conn.clone(),
            session: id,
            peer: peer.peer.clone(),
            max: config.max_frame_size,
            inbox,
            budget: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.max_buffered_bytes.max(config.max_frame_size),
            )),
        };

        let (control_tx, control_rx) = mpsc::channel(config.send_queue);
        let control =
            tokio::spawn(control_stream(ctx.clone(), dialer, control_rx).instrument(span.clone()));
        tokio::spawn(accept_document_streams(ctx.clone()).instrument(span.clone()));
        tokio::spawn(
            async move {
                let error = ctx.conn.closed().await;
                tracing::debug!(%error, "connection closed");
                let _ = ctx
                    .inbox
                    .send(SessionEvent::Closed {
                        session: ctx.session,
                        peer: ctx.peer,
                        error,
                    })
                    .await;
            }
            .instrument(span.clone()),
        );
        Session {
            id,
            peer,
            conn,
            config,
            control: Some(control_tx),
            docs: HashMap::new(),
            writers: vec![control],
            span,
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The certificate the peer presented (DER), if any.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        crate::tls::peer_certificate(&self.conn)
            .ok()
            .map(|c| c.to_vec())
    }

    /// The peer's identity, from its verified certificate.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Whether we dialed this connection (as opposed to accepting it).
    pub fn is_dialer(&self) -> bool {
        self.conn.side() == quinn::Side::Client
    }

    /// Queues `bytes` on the control stream (`doc == None`) or on the stream of `doc`,
    /// opening it if needed. Never waits.
    pub fn send(&mut self, doc: Option<&DocumentId>, bytes: Vec<u8>) -> Result<()> {
        if bytes.len() > self.config.max_frame_size {
            return Err(Error::FrameTooLarge {
                len: bytes.len() as u64,
                max: self.config.max_frame_size,
            });
        }
        let closed = || Error::SessionClosed {
            peer: self.peer.peer.clone(),
        };
        if self.conn.close_reason().is_some() {
            return Err(closed());
        }
        let queue = match doc {
            None => self.control.as_ref().ok_or_else(closed)?,
            Some(doc) => {
                if !self.docs.contains_key(doc) {
                    let (tx, rx) = mpsc::channel(self.config.send_queue);
                    let span = tracing::info_span!(parent: &self.span, "doc", %doc);
                    let task = document_writer(
                        self.conn.clone(),
                        doc.clone(),
                        rx,
                        self.config.max_frame_size,
                    );
                    self.writers.push(tokio::spawn(task.instrument(span)));
                    self.docs.insert(doc.clone(), tx);
                }
                self.docs.get(doc).ok_or_else(closed)?
            }
        };
        queue.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::SendQueueFull {
                peer: self.peer.peer.clone(),
                queued: self.config.send_queue,
            },
            mpsc::error::TrySendError::Closed(_) => Error::SessionClosed {
                peer: self.peer.peer.clone(),
            },
        })
    }

    /// Closes the connection now; queued messages are dropped.
    pub fn close(&self, code: CloseCode) {
        code.close(&self.conn);
    }

    /// Sends what is queued (waiting at most `grace` for the peer to acknowledge it),
    /// then closes the connection with `code`.
    pub async fn finish(mut self, code: CloseCode, grace: Duration) {
        self.control = None;
        self.docs.clear();
        let writers = std::mem::take(&mut self.writers);
        let all = async {
            for w in writers {
                let _ = w.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::debug!(parent: &self.span, "peer did not acknowledge queued messages in time");
        }
        self.close(code);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Idempotent: a connection already closed keeps its first close reason.
        CloseCode::Shutdown.close(&self.conn);
    }
}

#[derive(Clone)]
struct ReaderCtx {
    conn: quinn::Connection,
    session: SessionId,
    peer: PeerId,
    max: usize,
    inbox: mpsc::Sender<SessionEvent>,
    /// Bytes of frames being read or waiting for the inbox, over all streams.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Opens (dialer) or accepts (acceptor) the control stream, reads it in a sub-task and
/// writes queued control messages to it.
async fn control_stream(ctx: ReaderCtx, dialer: bool, rx: mpsc::Receiver<Vec<u8>>) {
    let streams = if dialer {
        ctx.conn.open_bi().await
    } else {
        ctx.conn.accept_bi().await
    };
    let (send, recv) = match streams {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "no control stream");
            return;
        }
    };
    tokio::spawn(read_stream(ctx.clone(), recv, None).in_current_span());
    write_stream(send, Vec::new(), rx, ctx.max).await;
}

/// Accepts the peer's document streams and reads each one in its own task.
async fn accept_document_streams(ctx: ReaderCtx) {
    loop {
        match ctx.conn.accept_uni().await {
            Ok(recv) => {
                tokio::spawn(read_stream(ctx.clone(), recv, Some(())).in_current_span());
            }
            Err(e) => {
                tracing::trace!(error = %e, "no more document streams");
                return;
            }
        }
    }
}

/// Reads one stream: the header frame, then messages until the stream ends.
///
/// `document` is `None` for the control stream, `Some(())` for a document stream whose
/// header names the document.
async fn read_stream(ctx: ReaderCtx, mut recv: quinn::RecvStream, document: Option<()>) {
    let result = async {
        let Some(header) = read_frame(&mut recv, ctx.max).await? else {
            return Ok(());
        };
        let doc = match document {
            None if header.is_empty() => None,
            None => {
                return Err(Error::Protocol(
                    "the control stream header must be empty".into(),
                ))
            }
            Some(()) => {
                let name = std::str::from_utf8(&header)
                    .map_err(|_| Error::Protocol("a document stream header is not UTF-8".into()))?;
                Some(
                    name.parse::<DocumentId>()
                        .map_err(|e| Error::Protocol(format!("bad document stream header: {e}")))?,
                )
            }
        };
        let span = match &doc {
            Some(doc) => tracing::debug_span!("recv", %doc),
            None => tracing::debug_span!("recv", doc = "control"),
        };
        async {
            while let Some(len) = read_header(&mut recv, ctx.max).await? {
                // Room for the frame first; `len` fits u32 (the length prefix is one).
                let Ok(_permit) = ctx.budget.acquire_many(len as u32).await else {
                    return Ok(());
                };
                let bytes = read_payload(&mut recv, len).await?;
                tracing::trace!(len = bytes.len(), "frame received");
                let event = SessionEvent::Message {
                    session: ctx.session,
                    peer: ctx.peer.clone(),
                    doc: doc.clone(),
                    bytes,
                };
                if ctx.inbox.send(event).await.is_err() {
                    // The owner is gone; nobody listens any more.
                    return Ok(());
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
    .await;
    if let Err(error) = result {
        match CloseCode::for_error(&error).or_else(|| reset_by_peer(&error)) {
            Some(code) => {
                tracing::warn!(%error, %code, "closing connection: the peer broke the protocol");
                code.close(&ctx.conn);
            }
            None => tracing::debug!(%error, "stream ended with the connection"),
        }
    }
}

/// A stream reset by the peer loses messages; outpost peers never reset their streams.
fn reset_by_peer(error: &Error) -> Option<CloseCode> {
    match error {
        Error::StreamIo(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(CloseCode::Protocol)
        }
        _ => None,
    }
}

async fn document_writer(
    conn: quinn::Connection,
    doc: DocumentId,
    rx: mpsc::Receiver<Vec<u8>>,
    max: usize,
) {
    match conn.open_uni().await {
        Ok(send) => write_stream(send, doc.to_string().into_bytes(), rx, max).await,
        Err(e) => tracing::debug!(error = %e, "cannot open document stream"),
    }
}

/// Writes the header, then queued messages; when the queue is closed, finishes the
/// stream and waits until the peer has acknowledged everything.
async fn write_stream(
    mut send: quinn::SendStream,
    header: Vec<u8>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    max: usize,
) {
    if let Err(e) = write_frame(&mut send, &header, max).await {
        tracing::debug!(error = %e, "cannot write stream header");
        return;
    }
    while let Some(bytes) = rx.recv().await {
        if let Err(e) = write_frame(&mut send, &bytes, max).await {
            tracing::debug!(error = %e, "stream write failed");
            return;
        }
    }
    if send.finish().is_ok() {
        let _ = send.stopped().await;
    }
}
