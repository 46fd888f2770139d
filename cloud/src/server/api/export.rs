//! `GET /api/v1/export/{context}`: one document of every site, as NDJSON, streamed.
//!
//! The lines of one site at a time are made on a blocking thread ([`ExportReader`]) and
//! handed to the response body ([`ExportBody`]) through a channel that holds one chunk: what
//! is in memory is a site's document and its lines (and the chunk being sent), never the
//! whole export. hyper sends it with chunked transfer encoding. A client that stops reading
//! ends the export: its connection fails on the send timeout, the body is dropped, and the
//! thread's next send finds no receiver.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::Frame;
use outpost_core::{DocumentId, SiteId};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Api;

/// One of a bounded number of slots ([`super::MAX_WORKERS`] requests, [`super::MAX_EXPORTS`]
/// exports); freed when dropped (the request is answered, the export ends or its client goes).
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a slot if fewer than `max` are taken.
    pub(crate) fn take(counter: Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(counter))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The body of an export.
pub(crate) struct ExportReader {
    api: Api,
    sites: VecDeque<SiteId>,
    doc: DocumentId,
    per_item: bool,
    buf: Vec<u8>,
    /// The most bytes buffered at once (for the test that memory stays bounded).
    pub(crate) max_buffered: usize,
    /// Lines produced so far.
    pub(crate) lines: u64,
    _slot: Slot,
}

impl ExportReader {
    pub(crate) fn new(
        api: Api,
        sites: Vec<SiteId>,
        doc: DocumentId,
        per_item: bool,
        slot: Slot,
    ) -> ExportReader {
        ExportReader {
            api,
            sites: sites.into(),
            doc,
            per_item,
            buf: Vec::new(),
            max_buffered: 0,
            lines: 0,
            _slot: slot,
        }
    }

    fn line(&mut self, value: &Value) {
        if serde_json::to_writer(&mut self.buf, value).is_ok() {
            self.buf.push(b'\n');
            self.lines += 1;
        }
    }

    /// Fills the buffer with the lines of the next site that holds the document; false
    /// when every site is done.
    fn fill(&mut self) -> bool {
        self.buf.clear();
        while self.buf.is_empty() {
            let Some(site) = self.sites.pop_front() else {
                return false;
            };
            let doc = self.doc.to_string();
            // A site that fails is reported in the stream: the status line is already sent.
            let value = match self.api.lease(&site) {
                Err(e) => Err(e.message),
                Ok(lease) => match lease.store.has_document(&self.doc) {
                    Ok(false) => continue,
                    Ok(true) => lease.store.get_all(&self.doc).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            match value {
                Err(error) => {
                    self.line(&json!({"site": site.as_str(), "doc": doc, "error": error}))
                }
                Ok(Value::Object(items)) if self.per_item => {
                    for (key, value) in items {
                        self.line(
                            &json!({"site": site.as_str(), "doc": doc, "key": key, "value": value}),
                        );
                    }
                }
                Ok(value) if !self.per_item => {
                    self.line(&json!({"site": site.as_str(), "doc": doc, "value": value}))
                }
                Ok(_) => {}
            }
            self.max_buffered = self.max_buffered.max(self.buf.len());
        }
        true
    }
}

impl ExportReader {
    /// The lines of the next site that holds the document; `None` once every site is done.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if !self.fill() {
            self.api.metrics.add_export_lines(self.lines);
            self.lines = 0;
            return None;
        }
        Some(std::mem::take(&mut self.buf))
    }
}

/// The body of an export response: the chunks an [`ExportReader`] makes on a blocking
/// thread, one at a time.
pub(crate) struct ExportBody {
    chunks: mpsc::Receiver<Vec<u8>>,
}

impl ExportBody {
    /// Starts making the export's chunks on a blocking thread of the current runtime.
    pub(crate) fn start(mut reader: ExportReader) -> ExportBody {
        // One chunk waits while the previous one is written: a slow client slows the export.
        let (tx, chunks) = mpsc::channel(1);
        tokio::task::spawn_blocking(move || {
            while let Some(chunk) = reader.next_chunk() {
                if tx.blocking_send(chunk).is_err() {
                    tracing::debug!("an export's client went away; export ended");
                    break;
                }
            }
            // The reader (its slot, its site's lease) goes with this thread.
        });
        ExportBody { chunks }
    }
}

impl http_body::Body for ExportBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(Bytes::from(c)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_exports_beyond_their_limit_get_no_slot_until_one_ends() {
        let counter = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(counter.clone(), 2).expect("first");
        let b = Slot::take(counter.clone(), 2).expect("second");
        assert!(
            Slot::take(counter.clone(), 2).is_none(),
            "a third export must wait"
        );
        drop(a);
        let c = Slot::take(counter.clone(), 2).expect("a slot was freed");
        drop((b, c));
        assert_eq!(counter.load(Ordering::SeqCst), 0);
    }
}
