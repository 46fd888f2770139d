//! `GET /api/v1/export/{context}`: one document of every site, as NDJSON, streamed.
//!
//! With `lines=item`, one line per item (an order) with its site and key: the items are the
//! values an [`ItemPattern`] matches (`/orders/*` for orders stored one per key under
//! `/orders`, as the README and the default policy lay them out). A site that holds no such
//! document gives a line `{site, doc, absent: true}`, and the last line is a trailer
//! `{end: true, doc, lines, sites: {site: lines}}`, so an ERP tells "no sales" from "wrong
//! request" (refused with 400 before the stream starts) and a cut stream (no trailer) from a
//! whole one.
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
use outpost_core::{ContextName, DocumentId, SiteId};
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

/// Which values of a document are its items: JSON Pointer tokens, `*` matching every key
/// of an object (or index of an array) at that level, e.g. `/orders/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemPattern {
    /// `None`: decided per document (see [`ItemPattern::from_policy`]).
    tokens: Option<Vec<String>>,
}

impl ItemPattern {
    /// A pattern given as `?items=`.
    pub(crate) fn parse(s: &str) -> Result<ItemPattern, String> {
        let pointer = outpost_core::Pointer::parse(s).map_err(|e| {
            format!("items={s:?} is not a JSON Pointer pattern ({e}); e.g. items=/orders/*")
        })?;
        if pointer.tokens().is_empty() {
            return Err(format!(
                "items={s:?} names the whole document; give the items' paths, e.g. items=/orders/*"
            ));
        }
        Ok(ItemPattern {
            tokens: Some(pointer.tokens().to_vec()),
        })
    }

    /// The items of `context` by default: the shortest per-path rule of the policy that
    /// ends with `*` (the default policy's `/orders/*`); without one, decided per document.
    pub(crate) fn from_policy(policy: &outpost_core::Policy, context: &ContextName) -> ItemPattern {
        let tokens = policy.contexts.get(context).and_then(|rule| {
            rule.paths
                .iter()
                .filter_map(|r| outpost_core::Pointer::parse(&r.path).ok())
                .map(|p| p.tokens().to_vec())
                .filter(|t| t.last().is_some_and(|l| l == "*"))
                .min_by_key(Vec::len)
        });
        ItemPattern { tokens }
    }

    /// The pattern for one document: the given one, or `/<context>/*` when the document
    /// keeps its items under a key named after the context (`/orders/K1-001`), else `/*`.
    fn for_document(&self, context: &ContextName, value: &Value) -> Vec<String> {
        match &self.tokens {
            Some(t) => t.clone(),
            None if value.get(context.as_str()).is_some_and(Value::is_object) => {
                vec![context.as_str().to_string(), "*".to_string()]
            }
            None => vec!["*".to_string()],
        }
    }

    /// Every item of `value`: (its pointer, its last token, its value).
    pub(crate) fn items<'a>(
        &self,
        context: &ContextName,
        value: &'a Value,
    ) -> Vec<(String, String, &'a Value)> {
        let tokens = self.for_document(context, value);
        let mut out = Vec::new();
        walk(value, &tokens, String::new(), String::new(), &mut out);
        out
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn walk<'a>(
    value: &'a Value,
    tokens: &[String],
    path: String,
    key: String,
    out: &mut Vec<(String, String, &'a Value)>,
) {
    let Some((first, rest)) = tokens.split_first() else {
        out.push((path, key, value));
        return;
    };
    let mut step = |k: String, v: &'a Value| {
        let p = format!("{path}/{}", escape(&k));
        walk(v, rest, p, k, out);
    };
    match (first.as_str(), value) {
        ("*", Value::Object(map)) => map.iter().for_each(|(k, v)| step(k.clone(), v)),
        ("*", Value::Array(items)) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| step(i.to_string(), v)),
        (k, Value::Object(map)) => {
            if let Some(v) = map.get(k) {
                step(k.to_string(), v)
            }
        }
        (k, Value::Array(items)) => {
            if let Some(v) = k.parse::<usize>().ok().and_then(|i| items.get(i)) {
                step(k.to_string(), v)
            }
        }
        _ => {}
    }
}

/// Whether `partition` starts with a calendar day `YYYY-MM-DD` (`2026-12-07`, not
/// `2026-12-7` nor `yesterday`), alone or followed by a non-digit.
pub(crate) fn starts_with_day(partition: &str) -> bool {
    let b = partition.as_bytes();
    if b.len() < 10 || b.get(10).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| partition[r].parse::<u32>().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    if b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// The UTC day `YYYY-MM-DD` of `ms` since the Unix epoch.
pub(crate) fn day_of(ms: u64) -> String {
    // Days to civil date (Howard Hinnant's algorithm).
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The body of an export.
pub(crate) struct ExportReader {
    api: Api,
    sites: VecDeque<SiteId>,
    doc: DocumentId,
    /// `Some`: one line per item; `None`: one line per site.
    items: Option<ItemPattern>,
    buf: Vec<u8>,
    /// The most bytes buffered at once (for the test that memory stays bounded).
    pub(crate) max_buffered: usize,
    /// Lines produced so far.
    pub(crate) lines: u64,
    /// Lines of data (a document or an item) per site, for the trailer.
    counts: serde_json::Map<String, Value>,
    /// Whether the trailer was made.
    ended: bool,
    _slot: Slot,
}

impl ExportReader {
    pub(crate) fn new(
        api: Api,
        sites: Vec<SiteId>,
        doc: DocumentId,
        items: Option<ItemPattern>,
        slot: Slot,
    ) -> ExportReader {
        ExportReader {
            api,
            sites: sites.into(),
            doc,
            items,
            buf: Vec::new(),
            max_buffered: 0,
            lines: 0,
            counts: serde_json::Map::new(),
            ended: false,
            _slot: slot,
        }
    }

    fn line(&mut self, value: &Value) {
        if serde_json::to_writer(&mut self.buf, value).is_ok() {
            self.buf.push(b'\n');
            self.lines += 1;
        }
    }

    /// Fills the buffer with the lines of the next site, then the trailer; false when
    /// both are done.
    fn fill(&mut self) -> bool {
        self.buf.clear();
        let Some(site) = self.sites.pop_front() else {
            if self.ended {
                return false;
            }
            self.ended = true;
            let data: u64 = self.counts.values().filter_map(Value::as_u64).sum();
            let trailer = json!({
                "end": true,
                "doc": self.doc.to_string(),
                "lines": data,
                "sites": Value::Object(std::mem::take(&mut self.counts)),
            });
            self.line(&trailer);
            return true;
        };
        let doc = self.doc.to_string();
        // A site that fails is reported in the stream: the status line is already sent.
        let value = match self.api.lease(&site) {
            Err(e) => Err(e.message),
            Ok(lease) => match lease.store.has_document(&self.doc) {
                Ok(false) => Ok(None),
                Ok(true) => lease
                    .store
                    .get_all(&self.doc)
                    .map(Some)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        let mut count = 0u64;
        match value {
            Err(error) => self.line(&json!({"site": site.as_str(), "doc": doc, "error": error})),
            Ok(None) => self.line(&json!({"site": site.as_str(), "doc": doc, "absent": true})),
            Ok(Some(value)) => match self.items.clone() {
                Some(pattern) => {
                    for (path, key, item) in pattern.items(self.doc.context(), &value) {
                        self.line(&json!({
                            "site": site.as_str(), "doc": doc, "key": key, "path": path, "value": item
                        }));
                        count += 1;
                    }
                }
                None => {
                    self.line(&json!({"site": site.as_str(), "doc": doc, "value": value}));
                    count += 1;
                }
            },
        }
        self.counts.insert(site.as_str().to_string(), json!(count));
        self.max_buffered = self.max_buffered.max(self.buf.len());
        true
    }
}

impl ExportReader {
    /// The lines of the next site (or the trailer); `None` once every site is done.
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

    #[test]
    fn days_are_strict_and_items_follow_the_pattern() {
        for ok in ["2026-12-07", "2024-02-29", "2026-12-07-till2"] {
            assert!(starts_with_day(ok), "{ok}");
        }
        for bad in [
            "2026-12-7",
            "yesterday",
            "2026-13-01",
            "2025-02-29",
            "2026-12-071",
            "",
        ] {
            assert!(!starts_with_day(bad), "{bad}");
        }
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_601_600_000), "2026-12-07");
        let orders: ContextName = "orders".parse().expect("context");
        let doc =
            json!({"orders": {"K1-001": {"total": 950}, "K1-002": {"total": 300}}, "note": 1});
        let by_policy = ItemPattern::from_policy(&outpost_core::Policy::default(), &orders);
        let keys: Vec<String> = by_policy
            .items(&orders, &doc)
            .into_iter()
            .map(|(p, k, _)| format!("{p} {k}"))
            .collect();
        assert_eq!(keys, ["/orders/K1-001 K1-001", "/orders/K1-002 K1-002"]);
        // No rule: the context's key when the document has it, else the top level.
        let none = ItemPattern { tokens: None };
        assert_eq!(none.items(&orders, &doc).len(), 2);
        assert_eq!(
            none.items(&orders, &json!({"p-1": 1, "p-2": 2, "p-3": 3}))
                .len(),
            3
        );
        let given = ItemPattern::parse("/orders/*/total").expect("pattern");
        let totals: Vec<&Value> = given
            .items(&orders, &doc)
            .into_iter()
            .map(|(_, _, v)| v)
            .collect();
        assert_eq!(totals, [&json!(950), &json!(300)]);
        assert!(ItemPattern::parse("orders").is_err());
        assert!(ItemPattern::parse("").is_err());
    }
}
