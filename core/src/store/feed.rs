//! Durable consumer feeds: everything that changed since a named consumer last acknowledged,
//! then what changes live, at least once, across restarts.
//!
//! A consumer's position in a document is the document's heads it acknowledged: one small
//! record per (consumer, document) in the store's `meta` tree, no log of changes. What changed
//! since is Automerge's diff between those heads and the current ones, so a position survives
//! restarts, compactions (they keep the history) and catch-ups of thousands of changes, which
//! arrive as one batch. A consumer that acted on a batch acknowledges it
//! ([`Feed::ack`], durable); a crash before that delivers the batch again, merged with what
//! came since. With a stable key per item (the order id), acting on an item twice is a no-op
//! for the app, so each item is processed effectively once.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ChangeHash, Prop, ReadDoc};

use super::{lock, slot, Store, Subscription, SubscriptionFilter};
use crate::{ContextName, DocumentId, Error, Pointer, Result};

/// Which changes a feed delivers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// One document (`orders/2026-12-01`), every partition of a context (`orders`), or, if
    /// `None`, every document.
    pub docs: Option<FeedDocs>,
    /// Only items at or below this path, e.g. `/orders`. Items are the paths one level
    /// below it (`/orders/o-17`), each reported once per batch however many of its fields
    /// changed. `None`: what the store's policy says of each document's context
    /// ([`crate::ContextRule::items`]: `/orders/*` for `orders` in the default policy, so
    /// `/orders` here), else the map named after the context if the document has one
    /// (`/orders` in `orders/2026-12-07`), else the document's top-level keys (the root).
    pub prefix: Option<Pointer>,
}

/// The documents of a [`FeedFilter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedDocs {
    /// This document.
    Doc(DocumentId),
    /// Every document of this context, partitioned or not.
    Context(ContextName),
}

impl FeedFilter {
    fn admits(&self, doc: &DocumentId) -> bool {
        match &self.docs {
            None => true,
            Some(FeedDocs::Doc(d)) => d == doc,
            Some(FeedDocs::Context(c)) => doc.context() == c,
        }
    }
}

/// What changed in one document since the consumer's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedBatch {
    /// The document.
    pub doc: DocumentId,
    /// The items that changed (JSON Pointers one level below the filter's prefix), sorted.
    pub items: Vec<String>,
    /// The position this batch starts from (the heads last acknowledged).
    pub from: Vec<ChangeHash>,
    /// The position acknowledging this batch moves to.
    pub to: Vec<ChangeHash>,
}

/// A named consumer's feed over a store. See the [module documentation](self).
pub struct Feed {
    store: Store,
    name: String,
    filter: FeedFilter,
    sub: Subscription,
    /// Documents that may have changed since last looked at.
    dirty: BTreeSet<DocumentId>,
    /// Heads delivered this session, per document (ahead of the acknowledged position until
    /// the app acknowledges).
    delivered: BTreeMap<DocumentId, Vec<ChangeHash>>,
}

const FEED_KEY: &str = "feed/";

fn position_key(name: &str, doc: &DocumentId) -> Vec<u8> {
    format!("{FEED_KEY}{name}/{doc}").into_bytes()
}

impl Feed {
    /// Opens the feed of consumer `name` (letters, digits, `-`, `_`, `.` and `/`, at most 64
    /// bytes, e.g. `kitchen-1/printer`): it starts from the consumer's acknowledged
    /// positions, or from the beginning of every document for a new consumer.
    pub fn open(store: &Store, name: &str, filter: FeedFilter) -> Result<Feed> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !valid {
            return Err(Error::InvalidName {
                kind: "consumer name",
                name: name.to_string(),
                reason: "use 1 to 64 letters, digits, '-', '_', '.' or '/'".into(),
                example: "kitchen-1/printer",
            });
        }
        // Subscribe before listing, so that nothing written in between is missed.
        let sub = store.subscribe(SubscriptionFilter::all().without_paths());
        let dirty = store
            .documents()?
            .into_iter()
            .filter(|d| filter.admits(d))
            .collect();
        Ok(Feed {
            store: store.clone(),
            name: name.to_string(),
            filter,
            sub,
            dirty,
            delivered: BTreeMap::new(),
        })
    }

    /// The consumer's acknowledged position in `doc` (empty: nothing acknowledged).
    pub fn position(&self, doc: &DocumentId) -> Result<Vec<ChangeHash>> {
        let v = self.store.inner.meta.get(position_key(&self.name, doc))?;
        Ok(v.and_then(|v| slot::decode_heads(&v)).unwrap_or_default())
    }

    /// Marks the document of a store notification to be looked at; a closed store ends the
    /// feed.
    fn note(&mut self, ev: Option<super::ChangeEvent>) -> Result<()> {
        let ev = ev.ok_or(Error::FeedClosed)?;
        if self.filter.admits(&ev.doc) {
            self.dirty.insert(ev.doc);
        }
        Ok(())
    }

    /// The next batch of changes not yet delivered this session, if any is ready; does not
    /// wait.
    pub fn poll(&mut self) -> Result<Option<FeedBatch>> {
        while let Some(ev) = self.sub.try_recv() {
            self.note(Some(ev))?;
        }
        while let Some(doc) = self.dirty.pop_first() {
            if let Some(batch) = self.batch(&doc)? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// The next batch, waiting for changes if none is ready.
    pub async fn next(&mut self) -> Result<FeedBatch> {
        loop {
            if let Some(b) = self.poll()? {
                return Ok(b);
            }
            let ev = self.sub.recv().await;
            self.note(ev)?;
        }
    }

    /// Like [`Feed::next`], blocking the thread (not for async code).
    pub fn next_blocking(&mut self) -> Result<FeedBatch> {
        loop {
            if let Some(b) = self.poll()? {
                return Ok(b);
            }
            let ev = self.sub.blocking_recv();
            self.note(ev)?;
        }
    }

    /// Acknowledges `batch`: the consumer acted on its items. Its position in the document
    /// moves to `batch.to`, flushed to disk before this returns.
    pub fn ack(&mut self, batch: &FeedBatch) -> Result<()> {
        let bytes = slot::encode_heads(&batch.to);
        self.store
            .inner
            .meta
            .insert(position_key(&self.name, &batch.doc), bytes)?;
        self.store.sync_to_disk()?;
        Ok(())
    }

    /// What changed in `doc` past what this session delivered (or, first, past the
    /// acknowledged position); `None` if nothing within the filter did.
    fn batch(&mut self, doc: &DocumentId) -> Result<Option<FeedBatch>> {
        let from = match self.delivered.get(doc) {
            Some(h) => h.clone(),
            None => self.position(doc)?,
        };
        let slot = self.store.slot(doc)?;
        let s = lock(&slot);
        // A position this document does not know (it was deleted, or quarantined and fetched
        // again with a different history) starts over: at least once, never a gap.
        let from = if s.doc.get_missing_deps(&from).is_empty() {
            from
        } else {
            Vec::new()
        };
        let mut to = s.doc.get_heads();
        to.sort();
        let mut from_sorted = from.clone();
        from_sorted.sort();
        if to == from_sorted {
            return Ok(None);
        }
        let patches = s.doc.diff(&from, &to);
        // Without a prefix of its own, a feed takes the policy's item path for the context,
        // else the context's own map (`/orders` in `orders/2026-12-07`) when the document
        // has one: else orders kept one per key under `/orders` (the README's layout) came
        // out as one item, `/orders`, carrying the whole day in every batch.
        let context = doc.context().as_str();
        let own_map = matches!(
            s.doc.get(automerge::ROOT, context),
            Ok(Some((automerge::Value::Object(automerge::ObjType::Map), _)))
        );
        drop(s);
        let policy_items = self.store.inner.policy.feed_items(doc.context());
        let context_items =
            (policy_items.is_none() && own_map).then(|| Pointer::root().child(context));
        let prefix = self
            .filter
            .prefix
            .as_ref()
            .or(policy_items.map(crate::FeedItems::parent))
            .or(context_items.as_ref());
        let depth = prefix.map_or(0, |p| p.tokens().len());
        let mut items = BTreeSet::new();
        for p in patches {
            let mut tokens: Vec<String> = p.path.iter().map(|(_, prop)| token(prop)).collect();
            if let Some(prop) = action_prop(&p.action) {
                tokens.push(token(&prop));
            }
            let under = tokens.len() > depth
                && prefix.is_none_or(|prefix| tokens[..depth] == *prefix.tokens());
            if under {
                let item = tokens[..=depth]
                    .iter()
                    .fold(Pointer::root(), |p, t| p.child(t.clone()));
                items.insert(item.to_string());
            }
        }
        self.delivered.insert(doc.clone(), to.clone());
        if items.is_empty() {
            return Ok(None);
        }
        Ok(Some(FeedBatch {
            doc: doc.clone(),
            items: items.into_iter().collect(),
            from,
            to,
        }))
    }
}

fn token(prop: &Prop) -> String {
    match prop {
        Prop::Map(k) => k.clone(),
        Prop::Seq(i) => i.to_string(),
    }
}

fn action_prop(a: &automerge::PatchAction) -> Option<Prop> {
    use automerge::PatchAction as A;
    match a {
        A::PutMap { key, .. } | A::DeleteMap { key } => Some(Prop::Map(key.clone())),
        A::PutSeq { index, .. }
        | A::Insert { index, .. }
        | A::SpliceText { index, .. }
        | A::DeleteSeq { index, .. } => Some(Prop::Seq(*index)),
        A::Increment { prop, .. } | A::Conflict { prop } => Some(prop.clone()),
        _ => None,
    }
}
