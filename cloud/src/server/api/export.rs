//! `GET /api/v1/export/{context}`: one document of every site, as NDJSON, streamed.
//!
//! The response body is a [`Read`] that produces the lines of one site at a time, when the
//! HTTP writer asks for more: what is in memory is the current site's document and its
//! lines, never the whole export. The writer sends it with chunked transfer encoding.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use outpost_core::{DocumentId, SiteId};
use serde_json::{json, Value};

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
    pos: usize,
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
            pos: 0,
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
        self.pos = 0;
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

impl Read for ExportReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.buf.len() && !self.fill() {
            self.api.metrics.add_export_lines(self.lines);
            self.lines = 0;
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
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
