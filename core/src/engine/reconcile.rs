//! Range-based reconciliation of the documents two peers share ([`Protocol::V2`]).
//!
//! Each side takes a snapshot of the documents both peers may read: their names in byte
//! order, the heads of each, and a 128-bit hash of each (name, digest of heads). A range of
//! names is summarized by its count and the wrapping sum of those hashes, which prefix sums
//! answer for any range in O(log n), so a message of ranges costs the receiver time
//! proportional to its size, not to the number of documents.
//!
//! The peer with the smaller id sends one fingerprint over every name. A receiver answers each
//! range: `Equal` when its fingerprint matches; its `Items` when it holds few documents there;
//! otherwise [`SPLIT`] finer fingerprints over its own documents of the range. Items are
//! compared one by one: equal documents are shared, the others are synced document by
//! document. An idle reconnect is one fingerprint each way; a difference costs about
//! `SPLIT` fingerprints per level of a tree of depth log_SPLIT(documents).
//!
//! [`Protocol::V2`]: super::wire::Protocol::V2

use automerge::ChangeHash;

use super::wire::{NameRange, RangeSummary, HELLO_PAGE_BYTES};
use crate::DocumentId;

/// A range of more documents than this is split rather than listed.
pub const ITEMS: usize = 32;
/// How many finer ranges a differing range is split into.
pub const SPLIT: usize = 16;

/// One document of a snapshot.
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) doc: DocumentId,
    pub(super) heads: Vec<ChangeHash>,
    pub(super) digest: u64,
}

/// The documents both peers of a link may read, as they were when the link came up.
pub(super) struct Snapshot {
    entries: Vec<Entry>,
    /// `prefix[i]` is the wrapping sum of the hashes of entries `0..i`.
    prefix: Vec<u128>,
}

/// What answering a `Reconcile` message decided.
#[derive(Default)]
pub(super) struct Outcome {
    /// Indices of snapshot entries that are the same on both sides.
    pub(super) equal: Vec<usize>,
    /// Documents that differ, or that one side lacks: to be synced one by one.
    pub(super) differ: Vec<DocumentId>,
    /// The answer, as ranges.
    pub(super) reply: Vec<NameRange>,
    /// How many names the peer listed in `Items`.
    pub(super) named: usize,
}

fn item_hash(name: &str, digest: u64) -> u128 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(digest.to_le_bytes());
    let out = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out[..16]);
    u128::from_le_bytes(b)
}

impl Snapshot {
    /// A snapshot of `docs` (document, its heads, the digest of its heads).
    pub(super) fn new(docs: impl IntoIterator<Item = (DocumentId, Vec<ChangeHash>, u64)>) -> Self {
        let mut entries: Vec<Entry> = docs
            .into_iter()
            .map(|(doc, heads, digest)| Entry {
                name: doc.to_string(),
                doc,
                heads,
                digest,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        let mut prefix = Vec::with_capacity(entries.len() + 1);
        let mut sum = 0u128;
        prefix.push(sum);
        for e in &entries {
            sum = sum.wrapping_add(item_hash(&e.name, e.digest));
            prefix.push(sum);
        }
        Snapshot { entries, prefix }
    }

    pub(super) fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// The indices of entries within `lower..upper`.
    fn span(&self, lower: &str, upper: Option<&str>) -> std::ops::Range<usize> {
        let i = self.entries.partition_point(|e| e.name.as_str() < lower);
        let j = match upper {
            Some(u) => self.entries.partition_point(|e| e.name.as_str() < u),
            None => self.entries.len(),
        };
        i..j.max(i)
    }

    fn fingerprint(&self, span: &std::ops::Range<usize>) -> RangeSummary {
        RangeSummary::Fingerprint {
            count: span.len() as u64,
            hash: self.prefix[span.end].wrapping_sub(self.prefix[span.start]),
        }
    }

    /// Every document of `span`, asking the peer for those it finds equal.
    fn items(&self, span: std::ops::Range<usize>) -> RangeSummary {
        RangeSummary::Items {
            docs: self.entries[span]
                .iter()
                .map(|e| (e.name.clone(), e.digest))
                .collect(),
            reply: true,
        }
    }

    /// The message that starts a reconciliation: everything in one range, or the items
    /// themselves when there are few.
    pub(super) fn start(&self) -> NameRange {
        let all = 0..self.entries.len();
        let summary = if all.len() <= ITEMS {
            self.items(all)
        } else {
            self.fingerprint(&all)
        };
        NameRange {
            lower: String::new(),
            upper: None,
            summary,
        }
    }

    /// Answers the ranges of a peer's `Reconcile`.
    pub(super) fn answer(&self, ranges: Vec<NameRange>) -> Outcome {
        let mut out = Outcome::default();
        for range in ranges {
            let span = self.span(&range.lower, range.upper.as_deref());
            match range.summary {
                RangeSummary::Equal => out.equal.extend(span),
                RangeSummary::Fingerprint { .. } if self.fingerprint(&span) == range.summary => {
                    out.equal.extend(span);
                    out.reply.push(NameRange {
                        summary: RangeSummary::Equal,
                        ..range
                    });
                }
                RangeSummary::Fingerprint { .. } if span.len() <= ITEMS => {
                    let summary = self.items(span);
                    out.reply.push(NameRange { summary, ..range });
                }
                RangeSummary::Fingerprint { .. } => self.split(range, span, &mut out.reply),
                RangeSummary::Items { docs, reply } => {
                    out.named += docs.len();
                    let (lower, upper) = (range.lower, range.upper);
                    let before = out.equal.len();
                    self.compare(&lower, upper.as_deref(), span, docs, &mut out);
                    if reply {
                        // What differs we sync ourselves; the peer only needs to learn which
                        // of its items are shared: at most as many as it listed.
                        let summary = RangeSummary::Items {
                            docs: out.equal[before..]
                                .iter()
                                .map(|&i| (self.entries[i].name.clone(), self.entries[i].digest))
                                .collect(),
                            reply: false,
                        };
                        out.reply.push(NameRange {
                            lower,
                            upper,
                            summary,
                        });
                    }
                }
            }
        }
        out
    }

    /// Splits a differing range into [`SPLIT`] ranges of about as many of our documents each.
    fn split(&self, range: NameRange, span: std::ops::Range<usize>, reply: &mut Vec<NameRange>) {
        let n = span.len();
        let start = |g: usize| span.start + g * n / SPLIT;
        for g in 0..SPLIT {
            let lower = if g == 0 {
                range.lower.clone()
            } else {
                self.entries[start(g)].name.clone()
            };
            let upper = if g + 1 == SPLIT {
                range.upper.clone()
            } else {
                Some(self.entries[start(g + 1)].name.clone())
            };
            let sub = start(g)..start(g + 1);
            reply.push(NameRange {
                lower,
                upper,
                summary: self.fingerprint(&sub),
            });
        }
    }

    /// Compares the peer's items of a range with ours.
    fn compare(
        &self,
        lower: &str,
        upper: Option<&str>,
        span: std::ops::Range<usize>,
        theirs: Vec<(String, u64)>,
        out: &mut Outcome,
    ) {
        let in_range = |name: &str| name >= lower && upper.is_none_or(|u| name < u);
        let mut theirs: std::collections::BTreeMap<String, u64> = theirs
            .into_iter()
            .filter(|(name, _)| in_range(name))
            .collect();
        for i in span {
            let e = &self.entries[i];
            match theirs.remove(&e.name) {
                Some(d) if d == e.digest => out.equal.push(i),
                _ => out.differ.push(e.doc.clone()),
            }
        }
        // Theirs only: names this version does not accept are skipped, as in `Hello`.
        out.differ
            .extend(theirs.into_keys().filter_map(|name| name.parse().ok()));
    }
}

/// Splits ranges into `Reconcile` messages of at most about [`HELLO_PAGE_BYTES`] each.
pub(super) fn pages(ranges: Vec<NameRange>) -> Vec<Vec<NameRange>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut size = 0;
    for r in ranges {
        let items = match &r.summary {
            RangeSummary::Items { docs, .. } => docs.iter().map(|(n, _)| n.len() + 12).sum(),
            _ => 0,
        };
        let entry = r.lower.len() + r.upper.as_ref().map_or(0, String::len) + items + 40;
        if size + entry > HELLO_PAGE_BYTES - 64 && !page.is_empty() {
            pages.push(std::mem::take(&mut page));
            size = 0;
        }
        size += entry;
        page.push(r);
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(docs: &[(&str, u64)]) -> Snapshot {
        Snapshot::new(
            docs.iter()
                .map(|(n, d)| (n.parse().expect("valid"), Vec::new(), *d)),
        )
    }

    /// Runs a reconciliation between two snapshots to its end; returns what each side
    /// decided differs and the number of ranges sent.
    fn run(a: &Snapshot, b: &Snapshot) -> (Vec<String>, Vec<String>, usize, usize) {
        let mut to_b = vec![a.start()];
        let mut to_a = Vec::new();
        let (mut da, mut db, mut sent) = (Vec::new(), Vec::new(), 1);
        let (mut eq_a, mut eq_b) = (0, 0);
        for _ in 0..64 {
            if to_b.is_empty() && to_a.is_empty() {
                break;
            }
            let ob = b.answer(std::mem::take(&mut to_b));
            db.extend(ob.differ.iter().map(|d| d.to_string()));
            eq_b += ob.equal.len();
            sent += ob.reply.len();
            to_a = ob.reply;
            let oa = a.answer(std::mem::take(&mut to_a));
            da.extend(oa.differ.iter().map(|d| d.to_string()));
            eq_a += oa.equal.len();
            sent += oa.reply.len();
            to_b = oa.reply;
        }
        assert!(to_a.is_empty() && to_b.is_empty(), "reconciliation ends");
        da.sort();
        da.dedup();
        db.sort();
        db.dedup();
        let _ = eq_b;
        (da, db, sent, eq_a)
    }

    #[test]
    fn equal_sets_cost_one_range_each_way() {
        let docs: Vec<(String, u64)> = (0..10_000).map(|i| (format!("orders/p{i}"), i)).collect();
        let refs: Vec<(&str, u64)> = docs.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let (a, b) = (snap(&refs), snap(&refs));
        let (da, db, sent, equal) = run(&a, &b);
        assert!(da.is_empty() && db.is_empty());
        assert_eq!(sent, 2);
        assert_eq!(equal, 10_000, "the starter learns every document is shared");
    }

    #[test]
    fn differences_are_found_whatever_side_holds_them() {
        let mut docs: Vec<(String, u64)> =
            (0..20_000).map(|i| (format!("orders/p{i}"), i)).collect();
        let refs: Vec<(&str, u64)> = docs.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let a = snap(&refs);
        docs[7].1 = 99; // changed on b
        docs.remove(12_345); // a holds one b lacks
        docs.push(("menu".into(), 1)); // b holds one a lacks
        let refs: Vec<(&str, u64)> = docs.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let b = snap(&refs);
        for (a, b) in [(&a, &b), (&b, &a)] {
            let (da, db, sent, _) = run(a, b);
            let mut all: Vec<String> = da.into_iter().chain(db).collect();
            all.sort();
            all.dedup();
            assert_eq!(all, vec!["menu", "orders/p12345", "orders/p7"]);
            assert!(sent < 400, "{sent} ranges for 3 differences in 20,000");
        }
    }

    #[test]
    fn an_empty_side_lists_nothing_and_learns_everything() {
        let docs: Vec<(String, u64)> = (0..1_000).map(|i| (format!("stock/p{i}"), i)).collect();
        let refs: Vec<(&str, u64)> = docs.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let (a, b) = (snap(&refs), snap(&[]));
        let (da, db, _, _) = run(&a, &b);
        assert_eq!(da.len() + db.len(), 1_000);
        let (da, db, _, _) = run(&b, &a);
        assert_eq!(da.len() + db.len(), 1_000);
    }

    #[test]
    fn hostile_ranges_cost_nothing_but_their_size() {
        let a = snap(&[("menu", 1), ("stock", 2)]);
        let out = a.answer(vec![
            NameRange {
                lower: "zzz".into(),
                upper: Some("aaa".into()),
                summary: RangeSummary::Fingerprint { count: 5, hash: 1 },
            },
            NameRange {
                lower: String::new(),
                upper: None,
                summary: RangeSummary::Items {
                    docs: vec![("Not A Name".into(), 1), ("menu".into(), 1)],
                    reply: false,
                },
            },
        ]);
        assert_eq!(out.equal, vec![0]);
        assert_eq!(
            out.differ.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            vec!["stock"]
        );
        assert_eq!(
            out.reply.len(),
            1,
            "the inverted range is answered as empty"
        );
    }
}
