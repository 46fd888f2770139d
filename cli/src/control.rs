//! The control socket of a running node: how `outpost get/put/status/watch ...` reach the
//! documents of a data directory while `outpost serve` (or `outpost watch`) holds it open.
//!
//! sled allows one process per database, so the process that holds a data directory
//! listens on `<data dir>/outpost.sock` (a Unix domain socket) and every other command on
//! the same directory sends it its request instead of opening the store. The protocol is
//! one JSON request line per connection, answered by one [`Reply`] line, or, for `watch`,
//! by one `event` line per change until the client hangs up.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use outpost_core::{DocumentId, Store, SubscriptionFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The socket file inside a data directory.
pub(crate) const SOCKET_FILE: &str = "outpost.sock";

/// One command on the documents of a data directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Write `value` at `path`.
    Put {
        doc: String,
        path: String,
        value: Json,
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
    /// Merge the Automerge bytes of the file `file`.
    Import { doc: String, file: PathBuf },
    /// Documents, peers and what is unsynced.
    Status,
    /// Stream every change of `doc`.
    Watch { doc: String },
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
        } => {
            store.put(&doc(d)?, path, value.clone(), Durable)?;
            Json::Null
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
            serde_json::to_value(store.conflicts(&id, path)?)?
        }
        Request::Export { doc: d, out } => {
            let bytes = store.export(&doc(d)?)?;
            write_file_durably(out, &bytes)?;
            serde_json::json!({ "bytes": bytes.len() })
        }
        Request::Import { doc: d, file } => {
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
        Request::Watch { .. } => {
            return Err(anyhow!(
                "watch is a stream, not a single request (internal misuse)"
            ))
        }
    })
}

/// Writes `bytes` to `path` and syncs it, so that `export` returns with the file on disk.
fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<()> {
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
/// the changed paths (`null` where something was deleted) and the local time.
pub(crate) fn event_json(store: &Store, event: &outpost_core::ChangeEvent) -> Json {
    let mut values = serde_json::Map::new();
    for p in &event.paths {
        let v = store
            .get(&event.doc, p)
            .ok()
            .flatten()
            .unwrap_or(Json::Null);
        values.insert(p.clone(), v);
    }
    serde_json::json!({
        "doc": event.doc.to_string(),
        "origin": event.origin,
        "paths": event.paths,
        "values": values,
        "heads": event.heads,
        "at": crate::time::iso8601(outpost_core::Timestamp::now()),
    })
}

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
    use std::os::unix::net::UnixListener;
    let path = dir.join(SOCKET_FILE);
    // We hold the store, so a socket file left here belongs to a process that is gone.
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot create the control socket; other outpost commands cannot reach this data directory while it runs");
            return None;
        }
    };
    std::thread::Builder::new()
        .name("outpost-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let host = host.clone();
                let _ = std::thread::Builder::new()
                    .name("outpost-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, host) {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                    });
            }
        })
        .ok()?;
    Some(Server { path })
}

/// Without Unix sockets, other commands cannot reach a running node.
#[cfg(not(unix))]
pub(crate) fn serve(_dir: &Path, _host: Arc<dyn Host>) -> Option<Server> {
    None
}

#[cfg(unix)]
fn handle(conn: std::os::unix::net::UnixStream, host: Arc<dyn Host>) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return send(
                &mut writer,
                &Reply::Error(format!("malformed control request: {e}")),
            )
        }
    };
    if let Request::Watch { doc } = &request {
        let filter = match watch_filter(doc) {
            Ok(f) => f,
            Err(e) => {
                return send(
                    &mut writer,
                    &Reply::Error(outpost_binsupport::one_line(e.as_ref())),
                )
            }
        };
        let mut sub = host.store().subscribe(filter);
        send(&mut writer, &Reply::Ok(Json::Null))?;
        // Notice a client that hung up even when no change comes.
        writer.set_nonblocking(true)?;
        let mut probe = [0u8; 1];
        loop {
            match sub.try_recv() {
                Some(event) => {
                    writer.set_nonblocking(false)?;
                    send(&mut writer, &Reply::Event(event_json(host.store(), &event)))?;
                    writer.set_nonblocking(true)?;
                }
                None => {
                    use std::io::Read;
                    match (&writer).read(&mut probe) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
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
