//! The control socket of a running cloud peer: how `outpost-cloud erase` reaches the cloud
//! that holds the data directory (sled lets one process open it).
//!
//! `<data dir>/outpost-cloud.sock`, a Unix domain socket made 0600, serving only its owner
//! (the peer's uid is checked); one JSON request line per connection, answered by one
//! [`AdminReply`] line.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use outpost_core::{DocumentId, SiteId};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::Shared;

/// The socket file inside the cloud's data directory.
pub(crate) const SOCKET_FILE: &str = "outpost-cloud.sock";

/// The longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// How long a client waits for the cloud's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A command for the running cloud.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum AdminRequest {
    /// Erase `doc` in `site`, or in every site.
    Erase { doc: String, site: Option<String> },
}

/// The answer: one line per site done, or why it failed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AdminReply {
    Ok(Vec<String>),
    Error(String),
}

/// The socket being served; removed when dropped.
pub(crate) struct Control {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the control socket of a running cloud; `None` (logged) when it cannot be made:
/// the cloud still runs, and `outpost-cloud erase` then says the directory is in use.
pub(crate) fn serve(shared: Arc<Shared>) -> Option<Control> {
    let path = shared.config.data.join(SOCKET_FILE);
    let bound = outpost_binsupport::owner_only_socket(&path).and_then(|(listener, owner)| {
        listener
            .set_nonblocking(true)
            .and_then(|_| tokio::net::UnixListener::from_std(listener))
            .map(|l| (l, owner))
            .map_err(outpost_binsupport::SocketError::Bind)
    });
    let (listener, owner) = match bound {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "`outpost-cloud erase` cannot reach this cloud while it runs");
            return None;
        }
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match stream.peer_cred().map(|c| c.uid()) {
                Ok(uid) if uid == owner => {}
                other => {
                    tracing::warn!(uid = ?other.ok(), owner, "refused a control connection from another user");
                    continue;
                }
            }
            let shared = shared.clone();
            let runtime = tokio::runtime::Handle::current();
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            // Requests are rare and short: a blocking thread each keeps this simple.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = handle(stream, &shared, &runtime) {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
        }
    });
    Some(Control { path, task })
}

fn handle(
    stream: std::os::unix::net::UnixStream,
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST_BYTES)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Err(e) => AdminReply::Error(format!("malformed request ({e})")),
        Ok(AdminRequest::Erase { doc, site }) => match erase(shared, runtime, &doc, site) {
            Ok(lines) => AdminReply::Ok(lines),
            Err(e) => AdminReply::Error(format!("{e:#}")),
        },
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    (&stream).write_all(&out)?;
    Ok(())
}

fn erase(
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    doc: &str,
    site: Option<String>,
) -> Result<Vec<String>> {
    let doc: DocumentId = doc.parse()?;
    let sites: Vec<SiteId> = match site {
        Some(s) => vec![s.parse()?],
        None => super::admin::sites(&shared.db),
    };
    if sites.is_empty() {
        anyhow::bail!("the cloud holds no site; nothing to erase");
    }
    let mut lines = Vec::new();
    for site in sites {
        let held = runtime.block_on(shared.erase(&site, &doc))?;
        lines.push(super::admin::erased_line(&site, &doc, held, true));
    }
    Ok(lines)
}

/// Sends `request` to the cloud running on `data`; `None` if no cloud listens there.
pub(crate) fn request(data: &Path, request: &AdminRequest) -> Result<Option<AdminReply>> {
    let path = data.join(SOCKET_FILE);
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot reach the cloud at {}", path.display()))
        }
    };
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .with_context(|| format!("the cloud at {} did not answer", path.display()))?;
    let reply = serde_json::from_str(&answer).with_context(|| {
        format!(
            "the cloud at {} answered something unreadable (is it another version?)",
            path.display()
        )
    })?;
    Ok(Some(reply))
}
