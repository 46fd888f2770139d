//! Durable consumer feeds for apps: a feed object with `next`/`ack`, and a callback form.
//!
//! See `outpost_core::Feed`: a named consumer gets everything that changed since it last
//! acknowledged, also what arrived while the app was down, then what changes live. Delivery
//! is at least once: a batch not acknowledged (the app crashed while acting on it) comes
//! again. Acting on an item keyed by its path (the order id) makes it effectively once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_core::{ChangeHash, FeedDocs, FeedFilter, FeedItems, Pointer};

use crate::error::{guard, OutpostError, Result};
use crate::listener::Subscription;

/// What changed in one document since the consumer's position.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct FeedBatch {
    /// The document, e.g. `orders/2026-12-01`.
    pub doc: String,
    /// The items that changed: JSON Pointers one level below the feed's path (e.g.
    /// `/orders/K1-042`), each once however many of its fields changed.
    pub items: Vec<String>,
    /// The position acknowledging this batch moves to (hex change hashes).
    pub position: Vec<String>,
}

impl From<outpost_core::FeedBatch> for FeedBatch {
    fn from(b: outpost_core::FeedBatch) -> Self {
        FeedBatch {
            doc: b.doc.to_string(),
            items: b.items,
            position: b.to.iter().map(ToString::to_string).collect(),
        }
    }
}

impl FeedBatch {
    fn to_core(&self) -> Result<outpost_core::FeedBatch> {
        let doc = self
            .doc
            .parse()
            .map_err(|e: outpost_core::Error| OutpostError::from(e))?;
        let to = self
            .position
            .iter()
            .map(|h| {
                h.parse::<ChangeHash>().map_err(|_| {
                    OutpostError::invalid_value(format!(
                        "{h:?} is not a change hash: acknowledge a batch as the feed returned it"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(outpost_core::FeedBatch {
            doc,
            items: self.items.clone(),
            from: Vec::new(),
            to,
        })
    }
}

/// A named consumer's feed, returned by `Outpost.feed`.
#[derive(uniffi::Object)]
pub struct ConsumerFeed {
    // A tokio mutex: `next` holds it across its wait, on the runtime.
    feed: Arc<tokio::sync::Mutex<outpost_core::Feed>>,
    handle: tokio::runtime::Handle,
}

/// What an app implements to consume a feed by callback (`Outpost.consume`).
#[uniffi::export(foreign)]
pub trait FeedListener: Send + Sync {
    /// The app acts on `batch` (prints the tickets, sends the sales) and returns `true` to
    /// acknowledge it; `false` (or an exception) leaves it unacknowledged, so it comes again
    /// after the next restart.
    fn on_batch(&self, batch: FeedBatch) -> bool;
}

/// The filter of a feed: `doc` (one document), else `context` (every partition of it),
/// else every document; `path` what an item is: a pattern whose last segment is `*` (each
/// child of `/orders`), or the path whose children are the items (`/orders`); none: the
/// policy's `items` of each document's context (each order for `orders` in the default
/// policy), else top-level keys. (No slash-star here: Kotlin nests block comments.)
pub(crate) fn filter(
    doc: Option<String>,
    context: Option<String>,
    path: Option<String>,
) -> Result<FeedFilter> {
    let docs = match (doc, context) {
        (Some(d), _) => Some(FeedDocs::Doc(d.parse()?)),
        (None, Some(c)) => Some(FeedDocs::Context(c.parse()?)),
        (None, None) => None,
    };
    let prefix = match path.as_deref() {
        Some(p) if p.ends_with("/*") => Some(FeedItems::parse(p)?.parent().clone()),
        Some(p) => Some(Pointer::parse(p)?),
        None => None,
    };
    Ok(FeedFilter { docs, prefix })
}

impl ConsumerFeed {
    pub(crate) fn new(feed: outpost_core::Feed, handle: tokio::runtime::Handle) -> Self {
        ConsumerFeed {
            feed: Arc::new(tokio::sync::Mutex::new(feed)),
            handle,
        }
    }
}

#[uniffi::export]
impl ConsumerFeed {
    /// The next batch not yet delivered, waiting up to `timeout_ms` for one without blocking
    /// the caller (Kotlin `suspend`, Swift `async`); `None` if none came. Call `ack` once the
    /// app acted on it. `nextBlocking` blocks.
    pub async fn next(&self, timeout_ms: u64) -> Result<Option<FeedBatch>> {
        let feed = self.feed.clone();
        let task = self.handle.spawn(async move {
            let mut feed = feed.lock().await;
            next_within(&mut feed, timeout_ms).await
        });
        crate::outpost::join("feed.next", task).await
    }

    /// `next`, blocking the calling thread (not a UI thread) for up to `timeout_ms`.
    pub fn next_blocking(&self, timeout_ms: u64) -> Result<Option<FeedBatch>> {
        guard("feed.nextBlocking", || {
            self.handle.block_on(async {
                let mut feed = self.feed.lock().await;
                next_within(&mut feed, timeout_ms).await
            })
        })
    }

    /// Acknowledges `batch`: the app acted on its items. Durable when it returns; does not
    /// block the caller (`ackBlocking` does).
    pub async fn ack(&self, batch: FeedBatch) -> Result<()> {
        let feed = self.feed.clone();
        let task = self.handle.spawn_blocking(move || ack_now(&feed, &batch));
        crate::outpost::join("feed.ack", task).await
    }

    /// `ack`, blocking the calling thread until the position is on disk.
    pub fn ack_blocking(&self, batch: FeedBatch) -> Result<()> {
        guard("feed.ackBlocking", || ack_now(&self.feed, &batch))
    }
}

/// The next batch of `feed` within `timeout_ms`, or `None`.
async fn next_within(feed: &mut outpost_core::Feed, timeout_ms: u64) -> Result<Option<FeedBatch>> {
    // Made inside the runtime: a timer needs its reactor.
    match tokio::time::timeout(Duration::from_millis(timeout_ms), feed.next()).await {
        Ok(batch) => Ok(Some(batch?.into())),
        Err(_elapsed) => Ok(None),
    }
}

fn ack_now(feed: &tokio::sync::Mutex<outpost_core::Feed>, batch: &FeedBatch) -> Result<()> {
    let core = batch.to_core()?;
    Ok(feed.blocking_lock().ack(&core)?)
}

/// Calls `listener` (on a blocking thread of the runtime) for every batch of `feed`,
/// acknowledging those it returns `true` for, until the subscription is cancelled. Waits
/// for changes without polling.
pub(crate) fn consume(
    handle: &tokio::runtime::Handle,
    mut feed: outpost_core::Feed,
    listener: Arc<dyn FeedListener>,
) -> Subscription {
    let cancelled = Arc::new(AtomicBool::new(false));
    let stop = cancelled.clone();
    let task = handle.spawn(async move {
        loop {
            let batch = match feed.next().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "the feed failed; its listener stops");
                    return;
                }
            };
            let l = listener.clone();
            let record: FeedBatch = batch.clone().into();
            let acted = tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.on_batch(record)))
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if acted && !stop.load(Ordering::SeqCst) {
                if let Err(e) = feed.ack(&batch) {
                    tracing::warn!(error = %e, "cannot acknowledge a feed batch; it comes again");
                }
            }
        }
    });
    Subscription::of_task(task, cancelled)
}
