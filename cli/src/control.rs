//! The control socket of a running node: how `outpost get/put/status/watch ...` reach the
//! documents of a data directory while `outpost serve` (or `outpost watch`) holds it open.
//!
//! sled allows one process per database, so the process that holds a data directory
//! listens on `<data dir>/outpost.sock` (a Unix domain socket) and every other command on
//! the same directory sends it its request instead of opening the store. The protocol is
//! one JSON request line per connection, answered by one [`Reply`] line, or, for `watch`,
//! by one `event` line per change until the client hangs up.
//!
//! The socket is an entry to the device's documents, so it is guarded (whatever the umask
//! or the permissions of the directory): the file is made 0600, a connection from another
//! user is refused (its uid is read from the socket), a request line is at most
//! [`MAX_REQUEST_BYTES`], at most [`MAX_CONNECTIONS`] are served at once, and `export` and
//! `import` refuse paths inside the data directory or the certificate directory (an export
//! must not overwrite the store or the key, an import must not copy the key into a document
//! that syncs).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::revocation::SignedRevocation;
use outpost_core::{Acknowledged, DocumentId, Store, SubscriptionFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Why `put --replicated` needs a running node.
const NEEDS_SERVE: &str = "put --replicated waits for another device of the site or the cloud to \
    hold the write, and no node runs on this data directory: start `outpost serve` on it (it links \
    with the site), then run this command again; without --replicated the write is durable on \
    this device only. Nothing was written";

/// The socket file inside a data directory.
pub(crate) const SOCKET_FILE: &str = "outpost.sock";

/// The longest request line accepted (a `put` of a large JSON value fits easily).
pub(crate) const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;

/// How many control connections are served at once (each `watch` holds one).
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// One command on the documents of a data directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Write `value` at `path`; `replicated`: then wait for another device of the site or
    /// the cloud to hold it (`Durability::Replicated`).
    Put {
        doc: String,
        path: String,
        value: Json,
        #[serde(default)]
        replicated: bool,
    },
    /// Read the value at `path`.
    Get { doc: String, path: String },
    /// Delete the value at `path`.
    Delete { doc: String, path: String },
    /// Add `delta` to the counter at `path`.
    Incr {
        doc: String,
        path: String,
        delta: i64,
    },
    /// Every concurrent value at `path`.
    Conflicts { doc: String, path: String },
    /// Write the document as Automerge bytes to the file `out`.
    Export { doc: String, out: PathBuf },
    /// The document as Automerge bytes, hex encoded in the reply (`export --out -`).
    ExportBytes { doc: String },
    /// The ids of every document.
    Documents,
    /// Delete a document here.
    DeleteDocument { doc: String },
    /// Merge the Automerge bytes of the file `file`.
    Import { doc: String, file: PathBuf },
    /// Documents, peers and what is unsynced.
    Status,
    /// Write a backup of the whole store to the file `out`.
    Backup { out: PathBuf },
    /// The audit trail's entries that match.
    Audit {
        #[serde(default)]
        since_ms: Option<u64>,
        #[serde(default)]
        until_ms: Option<u64>,
        #[serde(default)]
        kinds: Vec<String>,
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        doc: Option<String>,
        #[serde(default)]
        limit: usize,
    },
    /// Take a revocation signed by the fleet CA (hex of the record's bytes).
    Revoke { record: String },
    /// Stream every change of `doc`, after its current state if `current`.
    Watch {
        doc: String,
        #[serde(default)]
        current: bool,
        /// A durable consumer: batches since its acknowledged position, each acknowledged
        /// once the client answers `ack` (after it printed the batch).
        #[serde(default)]
        consumer: Option<String>,
        /// With `consumer`: the item pattern (`/orders/*`); the policy's when absent.
        #[serde(default)]
        items: Option<String>,
    },
}

impl Request {
    /// Whether the request changes the store (and may create the data directory).
    pub(crate) fn writes(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::Delete { .. }
                | Request::Incr { .. }
                | Request::Import { .. }
        )
    }
}

/// One answer line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reply {
    /// The request succeeded with this result.
    Ok(Json),
    /// The request failed; the message says why.
    Error(String),
    /// A change (for `watch`).
    Event(Json),
}

/// What a control server serves: a store and a way to describe the sync status.
pub(crate) trait Host: Send + Sync + 'static {
    /// The store of the data directory.
    fn store(&self) -> &Store;
    /// The status as JSON (see `cli::status`).
    fn status(&self) -> Result<Json>;
    /// Directories that `export` must not write into and `import` must not read from: the
    /// data directory and the certificate directory.
    fn own_files(&self) -> Vec<PathBuf>;
    /// Takes a revocation signed by the fleet CA; returns whether it was new. Only a running
    /// node can: it verifies the record against the fleet CA, applies it and relays it.
    /// Whether [`Host::wait_replicated`] can wait for peers: only a running node has them.
    fn has_peers(&self) -> bool {
        false
    }
    /// Waits until another device of the site or the cloud holds `doc` as it is now.
    fn wait_replicated(&self, _doc: &DocumentId) -> Result<Acknowledged> {
        bail!(NEEDS_SERVE)
    }
    fn learn_revocation(&self, _record: SignedRevocation) -> Result<bool> {
        bail!(
            "a revocation is taken by a running node, which checks it against the fleet CA and \
             spreads it to its peers: start `outpost serve` on this data directory and run this \
             command again (or give the record to any other device or the cloud)"
        )
    }
}

/// Refuses a path of `export` or `import` inside one of the host's own directories.
fn check_outside(host: &dyn Host, path: &Path, what: &str) -> Result<()> {
    // The file may not exist yet (export): resolve its directory, which must.
    let resolved = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|p| p.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    };
    let resolved = resolved.canonicalize().unwrap_or(resolved);
    for own in host.own_files() {
        let own = own.canonicalize().unwrap_or(own);
        if resolved.starts_with(&own) {
            bail!(
                "refusing to {what} {}: it is inside {}, which holds this device's store or keys; \
                 give a path outside the data and certificate directories",
                path.display(),
                own.display()
            );
        }
    }
    Ok(())
}

/// Runs a request that is not `watch` against a store.
pub(crate) fn execute(host: &dyn Host, request: &Request) -> Result<Json> {
    use outpost_core::Durability::Durable;
    let store = host.store();
    let doc = |d: &str| -> Result<DocumentId> { Ok(d.parse::<DocumentId>()?) };
    Ok(match request {
        Request::Put {
            doc: d,
            path,
            value,
            replicated,
        } => {
            let id = doc(d)?;
            if *replicated && !host.has_peers() {
                bail!(NEEDS_SERVE);
            }
            match append_at(store, &id, path)? {
                Some((list, index)) => store.insert(&id, list, index, value.clone(), Durable)?,
                None => store.put(&id, path, value.clone(), Durable)?,
            }
            if !*replicated {
                return Ok(Json::Null);
            }
            match host.wait_replicated(&id)? {
                Acknowledged::Site { peer } => serde_json::json!({ "peer": peer.to_string() }),
                _ => serde_json::json!({ "peer": null }),
            }
        }
        Request::Get { doc: d, path } => {
            let id = doc(d)?;
            match store.get(&id, path)? {
                Some(v) => v,
                None => {
                    return Err(outpost_core::Error::NotFound {
                        doc: id,
                        path: path.clone(),
                    }
                    .into())
                }
            }
        }
        Request::Delete { doc: d, path } => {
            store.delete(&doc(d)?, path, Durable)?;
            Json::Null
        }
        Request::Incr {
            doc: d,
            path,
            delta,
        } => {
            let id = doc(d)?;
            store.increment(&id, path, *delta, Durable)?;
            store.get(&id, path)?.unwrap_or(Json::Null)
        }
        Request::Conflicts { doc: d, path } => {
            let id = doc(d)?;
            let values = store.conflicts(&id, path)?;
            // Like `get`: a path with no value is an error, not an empty list.
            if values.is_empty() && store.get(&id, path)?.is_none() {
                return Err(outpost_core::Error::NotFound {
                    doc: id,
                    path: path.clone(),
                }
                .into());
            }
            serde_json::to_value(values)?
        }
        Request::Export { doc: d, out } => {
            check_outside(host, out, "export to")?;
            let bytes = store.export(&doc(d)?)?;
            write_file_durably(out, &bytes)?;
            serde_json::json!({ "bytes": bytes.len() })
        }
        Request::ExportBytes { doc: d } => Json::String(to_hex(&store.export(&doc(d)?)?)),
        Request::DeleteDocument { doc: d } => Json::Bool(store.delete_document(&doc(d)?)?),
        Request::Documents => Json::Array(
            store
                .documents()?
                .iter()
                .map(|d| Json::String(d.to_string()))
                .collect(),
        ),
        Request::Import { doc: d, file } => {
            check_outside(host, file, "import from")?;
            let bytes = std::fs::read(file).with_context(|| {
                format!(
                    "cannot read {}; give the path of a file written by `outpost export` or by Automerge's save()",
                    file.display()
                )
            })?;
            let changes = store.import(&doc(d)?, &bytes)?;
            serde_json::json!({ "changes": changes })
        }
        Request::Status => host.status()?,
        Request::Audit {
            since_ms,
            until_ms,
            kinds,
            peer,
            doc,
            limit,
        } => {
            let query = outpost_core::AuditQuery {
                since_ms: *since_ms,
                until_ms: *until_ms,
                kinds: kinds
                    .iter()
                    .map(|k| k.parse())
                    .collect::<std::result::Result<_, _>>()?,
                peer: peer.clone(),
                doc: doc.clone(),
                limit: *limit,
            };
            let audit = store.audit();
            serde_json::json!({
                "entries": audit.query(&query)?,
                "held": audit.len(),
                "max_entries": audit.limits().max_entries,
                "max_age_ms": audit.limits().max_age_ms,
            })
        }
        Request::Backup { out } => {
            check_outside(host, out, "write a backup to")?;
            let (summary, bytes) = write_backup(store, out)?;
            serde_json::json!({
                "documents": summary.documents,
                "signatures": summary.signatures,
                "certificates": summary.certificates,
                "corrupt": summary.corrupt,
                "bytes": bytes,
            })
        }
        Request::Revoke { record } => {
            let record = SignedRevocation::from_bytes(&from_hex(record)?)?;
            let revocation = record.revocation()?;
            let new = host.learn_revocation(record)?;
            serde_json::json!({ "new": new, "device": revocation.to_string() })
        }
        Request::Watch { .. } => {
            return Err(anyhow!(
                "watch is a stream, not a single request (internal misuse)"
            ))
        }
    })
}

/// Whether `put` at `path` appends to a list: its last token is `-` (RFC 6901's end of the
/// array), or the list's length. Returns the list's path and the index to insert at.
fn append_at<'p>(
    store: &Store,
    doc: &DocumentId,
    path: &'p str,
) -> Result<Option<(&'p str, usize)>> {
    let Some((list, last)) = path.rsplit_once('/') else {
        return Ok(None);
    };
    let current = match store.get(doc, list) {
        Ok(Some(Json::Array(items))) => Some(items.len()),
        Ok(_) | Err(_) => None,
    };
    Ok(match (last, current) {
        // A new list: `put /items/- 1` creates it with one element.
        ("-", None) if store.get(doc, list).ok().flatten().is_none() => Some((list, 0)),
        ("-", Some(len)) => Some((list, len)),
        (index, Some(len)) if index.parse::<usize>().ok() == Some(len) => Some((list, len)),
        _ => None,
    })
}

/// Writes a backup of `store` to `path`, in full or not at all: into `<path>.partial`,
/// synced, then renamed. Returns what it holds and its size.
pub(crate) fn write_backup(
    store: &Store,
    path: &Path,
) -> Result<(outpost_core::BackupSummary, u64)> {
    outpost_binsupport::write_atomically(path, |w| anyhow::Ok(store.backup(w)?)).with_context(
        || {
            format!(
            "cannot write the backup to {}; check the directory exists, is writable and has space",
            path.display()
        )
        },
    )
}

/// Writes `bytes` to `path` and syncs it, so that `export` returns with the file on disk.
pub(crate) fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| {
        format!(
            "cannot create {}; check the directory exists and is writable",
            path.display()
        )
    })?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The JSON of a change event as `watch` prints it: the event plus the current values at
/// the changed paths (`null` where something was deleted), who wrote each of them (the
/// device that authored the value, which `origin` is not: that is who delivered it) and the
/// local time.
pub(crate) fn event_json(store: &Store, event: &outpost_core::ChangeEvent) -> Json {
    let mut values = serde_json::Map::new();
    let mut authors = serde_json::Map::new();
    for p in &event.paths {
        let v = store
            .get(&event.doc, p)
            .ok()
            .flatten()
            .unwrap_or(Json::Null);
        values.insert(p.clone(), v);
        let author = store
            .conflicts(&event.doc, p)
            .ok()
            .and_then(|c| c.into_iter().find(|v| v.winner))
            .and_then(|w| w.author)
            .map(|a| Json::String(a.to_string()))
            .unwrap_or(Json::Null);
        authors.insert(p.clone(), author);
    }
    serde_json::json!({
        "doc": event.doc.to_string(),
        "origin": event.origin,
        "paths": event.paths,
        "values": values,
        "authors": authors,
        "heads": event.heads,
        "at": crate::time::iso8601(outpost_core::Timestamp::now()),
    })
}

/// The first line of `watch --current`: the whole document as it is now.
pub(crate) fn current_json(store: &Store, doc: &DocumentId) -> Result<Json> {
    let exists = store.contains(doc)?;
    let heads: Vec<String> = if exists {
        store.heads(doc)?.iter().map(|h| h.to_string()).collect()
    } else {
        Vec::new()
    };
    Ok(serde_json::json!({
        "doc": doc.to_string(),
        "origin": "current",
        "value": if exists { store.get_all(doc)? } else { Json::Null },
        "heads": heads,
        "at": crate::time::iso8601(outpost_core::Timestamp::now()),
    }))
}

/// Lower-case hex of `bytes` (how `export --out -` crosses the JSON control protocol).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`to_hex`] output.
pub(crate) fn from_hex(hex: &str) -> Result<Vec<u8>> {
    if hex.len() % 2 != 0 {
        bail!("malformed export from the node (odd hex length); run the export again");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("malformed export from the node; run the export again"))
        })
        .collect()
}

/// The JSON line of a feed batch for `watch --consumer`: its items and their values now.
pub(crate) fn batch_json(store: &Store, consumer: &str, batch: &outpost_core::FeedBatch) -> Json {
    let values: serde_json::Map<String, Json> = batch
        .items
        .iter()
        .map(|p| {
            let v = store
                .get(&batch.doc, p)
                .ok()
                .flatten()
                .unwrap_or(Json::Null);
            (p.clone(), v)
        })
        .collect();
    serde_json::json!({
        "doc": batch.doc.to_string(),
        "origin": "feed",
        "consumer": consumer,
        "items": batch.items,
        "values": values,
        "heads": batch.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The feed of `watch DOC --consumer NAME [--items PATTERN]`: without a pattern, the
/// store's policy says what an item of the document's context is (`Feed` reads it).
pub(crate) fn consumer_feed(
    store: &Store,
    doc: &str,
    name: &str,
    items: Option<&str>,
) -> Result<outpost_core::Feed> {
    let prefix = items
        .map(outpost_core::FeedItems::parse)
        .transpose()?
        .map(|i| i.parent().clone());
    let filter = outpost_core::FeedFilter {
        docs: Some(outpost_core::FeedDocs::Doc(doc.parse()?)),
        prefix,
    };
    Ok(outpost_core::Feed::open(store, name, filter)?)
}

/// What a `watch --consumer` client sends once it printed a batch.
pub(crate) const ACK_LINE: &[u8; 4] = b"ack\n";

/// The subscription filter of `watch DOC`.
pub(crate) fn watch_filter(doc: &str) -> Result<SubscriptionFilter> {
    Ok(SubscriptionFilter::doc(doc.parse()?))
}

/// A listening control socket; removes its file when dropped.
pub(crate) struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts serving `host` on `<dir>/outpost.sock` in background threads.
///
/// Returns `None` (after logging why) when the socket cannot be created, e.g. because the
/// path is longer than Unix sockets allow: the node still runs, other commands on the
/// directory then report that it is in use.
#[cfg(unix)]
pub(crate) fn serve(dir: &Path, host: Arc<dyn Host>) -> Option<Server> {
    let path = dir.join(SOCKET_FILE);
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (listener, owner) = match outpost_binsupport::owner_only_socket(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "other outpost commands cannot reach this data directory while it runs");
            return None;
        }
    };
    let server = Server { path };
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("outpost-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                match peer_uid(&conn) {
                    Ok(uid) if uid == owner => {}
                    Ok(uid) => {
                        tracing::warn!(uid, owner, "refused a control connection from another user");
                        let _ = send(&mut conn, &Reply::Error(format!(
                            "refused: this node's control socket serves only its owner (uid {owner}); run outpost as that user"
                        )));
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the uid of a control connection; refused");
                        continue;
                    }
                }
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = send(&mut conn, &Reply::Error(format!(
                        "the node is busy: {MAX_CONNECTIONS} control connections are open (watch holds one each); close some and try again"
                    )));
                    continue;
                }
                let host = host.clone();
                let active = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("outpost-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, host) {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    // The closure (and the connection) is gone with the failed spawn.
                    tracing::warn!("cannot start a thread for a control connection");
                }
            }
        })
        .ok()?;
    Some(server)
}

/// The uid of the process at the other end of a control connection.
#[cfg(unix)]
fn peer_uid(conn: &std::os::unix::net::UnixStream) -> std::io::Result<u32> {
    // std's `peer_cred` is unstable; tokio's is stable and wraps the same getsockopt.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _guard = runtime.enter();
    // tokio takes only non-blocking sockets; the clone shares the flag, so it is restored
    // for the blocking reads of `handle`.
    let clone = conn.try_clone()?;
    clone.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(clone)?;
    let uid = stream.peer_cred().map(|c| c.uid());
    drop(stream);
    conn.set_nonblocking(false)?;
    uid
}

/// Without Unix sockets, other commands cannot reach a running node.
#[cfg(not(unix))]
pub(crate) fn serve(_dir: &Path, _host: Arc<dyn Host>) -> Option<Server> {
    None
}

#[cfg(unix)]
fn handle(conn: std::os::unix::net::UnixStream, host: Arc<dyn Host>) -> Result<()> {
    use std::io::Read;
    let mut reader = BufReader::new(conn.try_clone()?.take(MAX_REQUEST_BYTES + 1));
    let mut writer = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.len() as u64 > MAX_REQUEST_BYTES {
        return send(
            &mut writer,
            &Reply::Error(format!(
                "control request too large (over {MAX_REQUEST_BYTES} bytes); write large values with `import` from a file"
            )),
        );
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return send(
                &mut writer,
                &Reply::Error(format!("malformed control request: {e}")),
            )
        }
    };
    if let Request::Watch {
        doc,
        consumer: Some(name),
        items,
        ..
    } = &request
    {
        let mut feed = match consumer_feed(host.store(), doc, name, items.as_deref()) {
            Ok(f) => f,
            Err(e) => {
                return send(
                    &mut writer,
                    &Reply::Error(outpost_binsupport::one_line(e.as_ref())),
                )
            }
        };
        send(&mut writer, &Reply::Ok(Json::Null))?;
        loop {
            match feed.poll()? {
                Some(batch) => {
                    writer.set_nonblocking(false)?;
                    send(
                        &mut writer,
                        &Reply::Event(batch_json(host.store(), name, &batch)),
                    )?;
                    // Acknowledged only once the client says it printed the batch.
                    let mut ack = [0u8; 4];
                    match (&writer).read_exact(&mut ack) {
                        Ok(()) if &ack == ACK_LINE => feed.ack(&batch)?,
                        _ => return Ok(()),
                    }
                }
                None => {
                    writer.set_nonblocking(true)?;
                    if client_gone(&writer)? {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    if let Request::Watch { doc, current, .. } = &request {
        let filter = match watch_filter(doc) {
            Ok(f) => f,
            Err(e) => {
                return send(
                    &mut writer,
                    &Reply::Error(outpost_binsupport::one_line(e.as_ref())),
                )
            }
        };
        let mut sub = host.store().subscribe(filter.clone());
        send(&mut writer, &Reply::Ok(Json::Null))?;
        if let (true, Some(id)) = (*current, filter.doc.as_ref()) {
            let reply = match current_json(host.store(), id) {
                Ok(state) => Reply::Event(state),
                Err(e) => Reply::Error(outpost_binsupport::one_line(e.as_ref())),
            };
            send(&mut writer, &reply)?;
        }
        // Notice a client that hung up even when no change comes.
        writer.set_nonblocking(true)?;
        loop {
            match sub.try_recv() {
                Some(event) => {
                    writer.set_nonblocking(false)?;
                    send(&mut writer, &Reply::Event(event_json(host.store(), &event)))?;
                    writer.set_nonblocking(true)?;
                }
                None => {
                    if client_gone(&writer)? {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    let reply = match execute(&*host, &request) {
        Ok(v) => Reply::Ok(v),
        Err(e) => Reply::Error(outpost_binsupport::one_line(e.as_ref())),
    };
    send(&mut writer, &reply)
}

/// Whether the client of a non-blocking control connection hung up.
#[cfg(unix)]
fn client_gone(conn: &std::os::unix::net::UnixStream) -> Result<bool> {
    use std::io::Read;
    let mut probe = [0u8; 1];
    match (&*conn).read(&mut probe) {
        Ok(0) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn send(w: &mut impl Write, reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()?;
    Ok(())
}

/// A connection to the node that holds a data directory.
pub(crate) struct Client {
    #[cfg(unix)]
    reader: BufReader<std::os::unix::net::UnixStream>,
}

impl Client {
    /// Connects to the node holding `dir`, or `None` if no node is running there.
    #[cfg(unix)]
    pub(crate) fn connect(dir: &Path) -> Result<Option<Client>> {
        use std::io::ErrorKind;
        use std::os::unix::net::UnixStream;
        let path = dir.join(SOCKET_FILE);
        if !dir.is_dir() {
            // Opening the store reports what is wrong with the directory.
            return Ok(None);
        }
        match UnixStream::connect(&path) {
            Ok(s) => Ok(Some(Client {
                reader: BufReader::new(s),
            })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot reach the outpost node running on {} through {}",
                    dir.display(),
                    path.display()
                )
            }),
        }
    }

    /// Without Unix sockets there is never a node to reach.
    #[cfg(not(unix))]
    pub(crate) fn connect(_dir: &Path) -> Result<Option<Client>> {
        Ok(None)
    }

    /// Sends `request` and waits for its reply.
    #[cfg(unix)]
    pub(crate) fn request(&mut self, request: &Request, timeout: Option<Duration>) -> Result<Json> {
        self.reader.get_ref().set_read_timeout(timeout)?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.reader.get_mut().write_all(&line)?;
        match self.next()? {
            Some(Reply::Ok(v)) => Ok(v),
            Some(Reply::Error(e)) => Err(anyhow!(e)),
            Some(Reply::Event(_)) => Err(anyhow!("unexpected event from the node")),
            None => Err(anyhow!(
                "the node closed the control connection without answering; it may be shutting down"
            )),
        }
    }

    #[cfg(not(unix))]
    pub(crate) fn request(
        &mut self,
        _request: &Request,
        _timeout: Option<Duration>,
    ) -> Result<Json> {
        Err(anyhow!("control sockets need a Unix system"))
    }

    /// Tells the node that the last batch of a `watch --consumer` was acted on.
    #[cfg(unix)]
    pub(crate) fn ack(&mut self) -> Result<()> {
        self.reader.get_mut().write_all(ACK_LINE)?;
        Ok(())
    }

    #[cfg(not(unix))]
    pub(crate) fn ack(&mut self) -> Result<()> {
        Ok(())
    }

    /// The next reply line, `None` when the node hung up.
    #[cfg(unix)]
    pub(crate) fn next(&mut self) -> Result<Option<Reply>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&line).with_context(|| {
            format!("malformed reply from the node: {line:?}")
        })?))
    }

    #[cfg(not(unix))]
    pub(crate) fn next(&mut self) -> Result<Option<Reply>> {
        Ok(None)
    }
}
