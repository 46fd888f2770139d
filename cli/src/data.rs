//! The commands on a data directory: reads, writes, export/import, status, watch, serve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::storage::{SharedKeyWrap, WrappingKey};
use outpost_core::{PeerInfo, Policy, Store, StoreOptions};
use outpost_transport::DeviceCert;
use serde_json::Value as Json;

use crate::control::{self, Client, Host, Reply, Request};
use crate::Command;

/// The file in a data directory that records the identity of the device that serves it,
/// so that later commands write as that device.
pub(crate) const IDENTITY_FILE: &str = "outpost-identity.json";

/// How long a command waits for a running node to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn run(dir: &Path, cert_dir: Option<&Path>, command: Command) -> Result<()> {
    let request = match command {
        Command::Cert(_) | Command::Policy(_) => {
            unreachable!("cert and policy commands need no data directory")
        }
        Command::Token(t) => return crate::token::run(dir, cert_dir, t),
        Command::Serve(args) => {
            let cert_dir = cert_dir.ok_or_else(|| {
                anyhow!("serve needs this device's certificates: pass --cert-dir DIR (made by `outpost cert issue`)")
            })?;
            return crate::serve::run(dir, cert_dir, args);
        }
        Command::Watch {
            doc,
            current,
            consumer,
            exec,
            items,
        } => {
            return watch(
                dir,
                cert_dir,
                &doc,
                current,
                consumer.as_deref(),
                exec.as_deref(),
                items.as_deref(),
            )
        }
        Command::Docs(crate::DocsCommand::List) => Request::Documents,
        Command::Docs(crate::DocsCommand::Delete { doc }) => Request::DeleteDocument { doc },
        Command::Status { json } => return crate::status::run(dir, cert_dir, json),
        Command::Audit {
            since,
            until,
            kind,
            peer,
            doc,
            limit,
            json,
        } => {
            let request = crate::audit::request(since, until, kind, peer, doc, limit)?;
            return crate::audit::run(dir, cert_dir, &request, json);
        }
        Command::Restore { from } => return restore(dir, &from),
        Command::Rekey { new_key_file } => return rekey(dir, &new_key_file),
        Command::Migrate { to } => return migrate(dir, to),
        Command::Backup { out } => Request::Backup {
            out: absolute(&out)?,
        },
        Command::Put {
            doc,
            path,
            json,
            replicated,
        } => Request::Put {
            doc,
            path,
            value: parse_json(&json)?,
            replicated,
        },
        Command::Get { doc, path } => Request::Get { doc, path },
        Command::Delete { doc, path } => Request::Delete { doc, path },
        Command::Incr { doc, path, delta } => Request::Incr { doc, path, delta },
        Command::Conflicts { doc, path } => Request::Conflicts { doc, path },
        Command::Export { doc, out } if out.as_os_str() == "-" => Request::ExportBytes { doc },
        Command::Export { doc, out } => Request::Export {
            doc,
            out: absolute(&out)?,
        },
        Command::Import { doc, file } => Request::Import {
            doc,
            file: absolute(&file)?,
        },
        Command::Revoke { file } => {
            let bytes = std::fs::read(&file).with_context(|| {
                format!(
                    "cannot read {}; give the file written by `outpost cert revoke --out`",
                    file.display()
                )
            })?;
            Request::Revoke {
                record: control::to_hex(&bytes),
            }
        }
    };
    let result = request_or_open(dir, cert_dir, &request)?;
    print_result(&request, &result)
}

fn print_result(request: &Request, result: &Json) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match request {
        Request::Get { .. } | Request::Conflicts { .. } => {
            writeln!(out, "{}", serde_json::to_string_pretty(result)?)?
        }
        Request::Incr { .. } => writeln!(out, "{result}")?,
        Request::Put {
            replicated: true, ..
        } => {
            let peer = result.get("peer").and_then(Json::as_str);
            match peer {
                Some(peer) => writeln!(out, "replicated: stored on this device and on {peer}")?,
                None => writeln!(
                    out,
                    "stored on this device only: no other device of the site nor the cloud acknowledged it in time; it is sent once one is reachable"
                )?,
            }
        }
        Request::Import { doc, .. } => {
            let n = result.get("changes").and_then(Json::as_u64).unwrap_or(0);
            let changes = if n == 1 { "change" } else { "changes" };
            eprintln!("imported {n} new {changes} into {doc}");
        }
        Request::Documents => {
            for d in result.as_array().into_iter().flatten() {
                writeln!(out, "{}", d.as_str().unwrap_or_default())?;
            }
        }
        Request::DeleteDocument { doc } => {
            if result.as_bool().unwrap_or(false) {
                writeln!(out, "deleted {doc}")?;
            } else {
                writeln!(out, "{doc} held no data here; nothing deleted")?;
            }
        }
        Request::Backup { out: file } => {
            let n = result.get("documents").and_then(Json::as_u64).unwrap_or(0);
            let bytes = result.get("bytes").and_then(Json::as_u64).unwrap_or(0);
            writeln!(
                out,
                "backed up {} ({bytes} bytes) to {}",
                crate::status::count(n, "document", "documents"),
                file.display()
            )?;
        }
        Request::Revoke { .. } => {
            let device = result.get("device").and_then(Json::as_str).unwrap_or("?");
            if result.get("new").and_then(Json::as_bool).unwrap_or(false) {
                eprintln!("revoked {device}: its links are closed and its changes refused here; the revocation spreads to every peer");
            } else {
                eprintln!("{device} was already revoked here");
            }
        }
        Request::ExportBytes { .. } => {
            let bytes = control::from_hex(result.as_str().unwrap_or_default())?;
            out.write_all(&bytes)?;
            out.flush()?;
        }
        _ => {}
    }
    Ok(())
}

/// `outpost restore --from FILE`: into a new or empty data directory only.
fn migrate(dir: &Path, to: outpost_core::StorageEngine) -> Result<()> {
    refuse_cloud_data(dir)?;
    let report = outpost_core::migrate(dir, to).map_err(|e| match e {
        outpost_core::Error::InUse { .. } => anyhow!(
            "{} is in use (is `outpost serve` running on it?); stop it, then run `outpost migrate` again",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot migrate {}", dir.display())),
    })?;
    match &report.old_files {
        None => println!("{} is on {} already; nothing to do", dir.display(), report.to),
        Some(old) => println!(
            "moved {} from {} to {}: {} ({} entries) copied and compared; the old files are in {} (delete them once the device works)",
            dir.display(),
            report.from,
            report.to,
            crate::status::count(report.documents, "document", "documents"),
            report.entries,
            old.display()
        ),
    }
    Ok(())
}

fn restore(dir: &Path, from: &Path) -> Result<()> {
    let file = std::fs::File::open(from).with_context(|| {
        format!(
            "cannot open the backup {}; give the file written by `outpost backup --out FILE`",
            from.display()
        )
    })?;
    let summary = outpost_core::restore_with_key(dir, std::io::BufReader::new(file), data_key())
        .with_context(|| format!("cannot restore {} into {}", from.display(), dir.display()))?;
    if let Some(info) = &summary.identity {
        record_identity(dir, info)?;
    }
    println!(
        "restored {} ({} signatures, {} certificate records) into {}{}; run `outpost serve` on it to catch up from peers",
        crate::status::count(summary.documents, "document", "documents"),
        summary.signatures,
        summary.certificates,
        dir.display(),
        summary
            .identity
            .as_ref()
            .map(|i| format!(" as {i}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Parses a value given on the command line.
fn parse_json(s: &str) -> Result<Json> {
    serde_json::from_str(s).map_err(|e| {
        anyhow!(
            "invalid JSON value {s:?} ({e}); values are JSON: numbers like 950, strings in double quotes \
             like '\"Burger\"' (quote them for the shell), true, false, null, objects and arrays"
        )
    })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(p))
}

/// Sends `request` to the node holding `dir`, or runs it on the store directly.
pub(crate) fn request_or_open(
    dir: &Path,
    cert_dir: Option<&Path>,
    request: &Request,
) -> Result<Json> {
    if let Some(mut client) = Client::connect(dir)? {
        check_node_identity(dir, cert_dir)?;
        return client.request(request, Some(NODE_TIMEOUT));
    }
    let identity = identity(dir, cert_dir)?;
    let store = open_store(dir, identity.clone(), request.writes())?;
    let host = LocalHost {
        store,
        identity,
        dir: dir.to_path_buf(),
        cert_dir: cert_dir.map(Path::to_path_buf),
    };
    control::execute(&host, request)
}

/// A store opened by this process, for commands run without a node.
pub(crate) struct LocalHost {
    pub(crate) store: Store,
    pub(crate) identity: Option<PeerInfo>,
    pub(crate) dir: PathBuf,
    pub(crate) cert_dir: Option<PathBuf>,
}

impl Host for LocalHost {
    fn store(&self) -> &Store {
        &self.store
    }

    fn own_files(&self) -> Vec<PathBuf> {
        std::iter::once(self.dir.clone())
            .chain(self.cert_dir.clone())
            .collect()
    }

    fn status(&self) -> Result<Json> {
        crate::status::offline(&self.dir, &self.store, self.identity.as_ref())
    }
}

/// The identity that authors this command's writes: `--cert-dir`, else the identity the
/// data directory was last served as, else none (an anonymous local store).
pub(crate) fn identity(dir: &Path, cert_dir: Option<&Path>) -> Result<Option<PeerInfo>> {
    // A directory that cannot be a store is reported as such before anything is read in it.
    check_data_dir(dir, true)?;
    let recorded = recorded_identity(dir)?;
    let Some(cert_dir) = cert_dir else {
        return Ok(recorded);
    };
    let cert = load_cert(cert_dir)?;
    let info = cert.info().clone();
    if let Some(r) = recorded {
        if r != info {
            bail!(
                "the data directory {} belongs to {r}, but the certificate in {} is for {info}; \
                 use the data directory of that device, or that device's certificate",
                dir.display(),
                cert_dir.display()
            );
        }
    }
    Ok(Some(info))
}

/// A command sent to a running node is authored by the node's device, whatever `--cert-dir`
/// says: refuse a `--cert-dir` of another device instead of ignoring it.
fn check_node_identity(dir: &Path, cert_dir: Option<&Path>) -> Result<()> {
    let Some(cert_dir) = cert_dir else {
        return Ok(());
    };
    let info = load_cert(cert_dir)?.info().clone();
    match recorded_identity(dir)? {
        Some(node) if node == info => Ok(()),
        Some(node) => bail!(
            "the node running on {} is {node}, and it authors every command sent to it; --cert-dir {} is {info}. \
             Drop --cert-dir, or run the command on that device's own data directory",
            dir.display(),
            cert_dir.display()
        ),
        None => bail!(
            "a node is running on {} and authors every command sent to it, so --cert-dir {} would be ignored; drop --cert-dir",
            dir.display(),
            cert_dir.display()
        ),
    }
}

/// Loads a device certificate with a message that says how to get one.
pub(crate) fn load_cert(cert_dir: &Path) -> Result<DeviceCert> {
    DeviceCert::load(cert_dir).map_err(|e| {
        anyhow!(
            "missing or unusable certificates in {}: {}; it must hold cert.pem, key.pem and ca.pem from \
             `outpost cert issue --ca CA_DIR --site SITE --device ID --role ROLE --out {}`",
            cert_dir.display(),
            for_users(&e),
            cert_dir.display()
        )
    })
}

/// A transport error as a command-line user reads it: its hints name Rust functions
/// (`DeviceCert::save`), which are `outpost cert ...` commands here.
pub(crate) fn for_users(e: &outpost_transport::Error) -> String {
    outpost_binsupport::one_line(e)
        .replace(
            "`FleetCa::save` / `DeviceCert::save`",
            "`outpost cert ca` / `outpost cert issue`",
        )
        .replace("`DeviceCert::save`", "`outpost cert issue`")
        .replace("`FleetCa::issue`", "`outpost cert issue`")
        .replace("`FleetCa::save`", "`outpost cert ca`")
}

fn recorded_identity(dir: &Path) -> Result<Option<PeerInfo>> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is corrupt; delete it and run `outpost serve` again to record the device identity",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Records the identity a data directory is served as.
pub(crate) fn record_identity(dir: &Path, info: &PeerInfo) -> Result<()> {
    let path = dir.join(IDENTITY_FILE);
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(&serde_json::to_vec_pretty(info)?)?;
    f.sync_all()?;
    Ok(())
}

static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();

static DATA_KEY: std::sync::OnceLock<SharedKeyWrap> = std::sync::OnceLock::new();

/// Reads the key of an encrypted data directory (`--data-key-file`, or the key itself in
/// OUTPOST_DATA_KEY); once, before any store is opened.
pub(crate) fn set_data_key(file: Option<&Path>) -> Result<()> {
    let key = match (file, std::env::var("OUTPOST_DATA_KEY")) {
        (Some(path), _) => WrappingKey::from_file(path)
            .with_context(|| format!("cannot use the key file {}", path.display()))?,
        (None, Ok(text)) => WrappingKey::parse(&text).context("cannot use OUTPOST_DATA_KEY")?,
        (None, Err(_)) => return Ok(()),
    };
    let _ = DATA_KEY.set(Arc::new(key));
    Ok(())
}

/// The key of this command's data directory, if one was given.
pub(crate) fn data_key() -> Option<SharedKeyWrap> {
    DATA_KEY.get().cloned()
}

/// `outpost rekey`: the data key rewrapped under a new key file.
fn rekey(dir: &Path, new_key_file: &Path) -> Result<()> {
    let old = data_key().ok_or_else(|| {
        anyhow!("rekey needs the current key: pass --data-key-file FILE (or set OUTPOST_DATA_KEY)")
    })?;
    let new = WrappingKey::from_file(new_key_file)
        .with_context(|| format!("cannot use the new key file {}", new_key_file.display()))?;
    outpost_core::storage::rewrap_data_key(dir, old.as_ref(), &new)
        .with_context(|| format!("cannot rotate the key of {}", dir.display()))?;
    println!(
        "the data key of {} is now wrapped by {}; the old key no longer opens it",
        dir.display(),
        new_key_file.display()
    );
    Ok(())
}

/// Sets the policy of this command (from `--policy`); once, before any store is opened.
pub(crate) fn set_policy(policy: Policy) {
    let _ = POLICY.set(policy);
}

/// Reads a policy file: the `[policy]` table of the cloud's config, as its own file.
pub(crate) fn load_policy(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "invalid policy file {}: it needs relay_roles, default_rule and [contexts.<name>] tables with read and write role lists (see cloud/CLI.md)",
            path.display()
        )
    })
}

/// The policy in effect as a policy file (what `--policy` reads).
pub(crate) fn policy_toml() -> Result<String> {
    toml::to_string_pretty(&policy()).context("cannot print the policy as TOML")
}

/// The access policy of the fleet. Every device and the cloud use the same one.
pub(crate) fn policy() -> Policy {
    POLICY.get().cloned().unwrap_or_default()
}

/// Opens the store of a data directory with clear errors for the usual mistakes.
pub(crate) fn open_store(dir: &Path, identity: Option<PeerInfo>, create: bool) -> Result<Store> {
    refuse_cloud_files(dir)?;
    check_data_dir(dir, create)?;
    refuse_cloud_data(dir)?;
    let options = StoreOptions {
        identity,
        policy: policy(),
        data_key: data_key(),
        ..StoreOptions::default()
    };
    // The options hold no store (`fleet` is a cloud's), so nothing shared outlives a panic.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Store::open_with(dir, options)
    }));
    match opened {
        Ok(Ok(store)) => Ok(store),
        // A missing or wrong key says what to do itself; the store is intact.
        Ok(Err(e @ outpost_core::Error::Key(_))) => Err(anyhow::Error::new(e)),
        Ok(Err(e)) => {
            let msg = e.to_string();
            if msg.contains("could not acquire lock") {
                bail!(
                    "the data directory {} is in use by another process (an `outpost serve` or `outpost watch` \
                     whose control socket is unreachable, or an app); stop it or run the command through it",
                    dir.display()
                )
            }
            if msg.contains("corrupt") {
                bail!(
                    "the data directory {} is corrupt (the storage engine read corrupted data); move it aside \
                     and let the device sync again from its peers, or restore a backup",
                    dir.display()
                )
            }
            Err(anyhow::Error::new(e).context(format!(
                "cannot open the data directory {}; if it is corrupt, move it aside and let the device sync again from its peers",
                dir.display()
            )))
        }
        Err(_) => bail!(
            "the data directory {} is corrupt (the storage engine could not read it); move it aside and \
             let the device sync again from its peers, or restore a backup",
            dir.display()
        ),
    }
}

/// The files only a cloud's data directory holds: its control socket (while it runs), its
/// API tokens, its PostgreSQL cache. Checked before the database, which a running cloud
/// holds locked (opening it would only say "in use").
fn refuse_cloud_files(dir: &Path) -> Result<()> {
    let cloud = ["outpost-cloud.sock", "api-tokens.json", "pg-cache"]
        .iter()
        .any(|f| dir.join(f).exists());
    if cloud {
        return Err(cloud_dir_error(dir));
    }
    Ok(())
}

fn cloud_dir_error(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is the data directory of an outpost-cloud peer (every site of a fleet), not of a device. \
         Read a site's documents through one of its devices (`outpost --data DEVICE_DIR get ...`) \
         or the cloud's HTTP API (cloud/API.md); do not open the cloud's data with `outpost`",
        dir.display()
    )
}

/// The cloud keeps every site in one database, as trees named `site/<site>/...` (and
/// `cloud/...`); a device store has neither. Opening a cloud's directory as a device store
/// would show nothing and write into a copy of the cloud's database.
fn refuse_cloud_data(dir: &Path) -> Result<()> {
    if outpost_core::storage::Engine::detect(dir).is_none() {
        return Ok(());
    }
    // One process per database: a running cloud holds it, and opening it fails (reported by
    // the caller as "in use").
    let Ok(db) = outpost_core::Database::open(dir, &Default::default()) else {
        return Ok(());
    };
    let cloud = db
        .keyspaces()
        .unwrap_or_default()
        .iter()
        .any(|name| name.starts_with("site/") || name.starts_with("cloud/"));
    drop(db);
    if cloud {
        return Err(cloud_dir_error(dir));
    }
    Ok(())
}

/// Refuses a missing directory for reads, and a directory that is not a store.
fn check_data_dir(dir: &Path, create: bool) -> Result<()> {
    if !dir.exists() {
        if create {
            return Ok(());
        }
        bail!(
            "the data directory {} does not exist; check --data (a data directory is created by the first write or by `outpost serve`)",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; --data takes the directory of a device's store",
            dir.display()
        );
    }
    let mut foreign = false;
    let mut has_db = false;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        match name.as_ref() {
            // sled's files, redb's file.
            "db" | "conf" | "outpost.redb" => has_db = true,
            // `outpost-store`: the store's marker that tells a directory copied back;
            // `generating-quarantine`: sled's incomplete snapshots set aside.
            "blobs"
            | "outpost-store"
            | "generating-quarantine"
            | IDENTITY_FILE
            | control::SOCKET_FILE => {}
            n if n.starts_with("snap.") || n.starts_with(".old-") || n == ".migrate-to" => {}
            _ => foreign = true,
        }
    }
    if foreign && !has_db {
        bail!(
            "{} is not an outpost data directory (it holds other files and no store); pick an empty or new directory",
            dir.display()
        );
    }
    Ok(())
}

/// The first wait before `watch --exec` gives a batch to CMD again.
const EXEC_FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const EXEC_MAX_RETRY: Duration = Duration::from_secs(30);

/// Hands a batch of `watch --consumer` to its consumer; returns once the batch may be
/// acknowledged. Plain: written to stdout (for a pipe, into its buffer: what the reader does
/// with it is not known). `--exec CMD`: CMD ran with the line on its stdin and exited 0; a
/// failure is retried with backoff, for as long as it takes: a batch is never skipped.
fn deliver(line: &str, exec: Option<&str>, stdout: &mut std::io::Stdout) -> Result<()> {
    let Some(cmd) = exec else {
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        return Ok(());
    };
    let mut wait = EXEC_FIRST_RETRY;
    for attempt in 1u64.. {
        let why = match run_exec(cmd, line) {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => format!("exited with {status}"),
            Err(e) => format!("could not run ({e})"),
        };
        eprintln!(
            "outpost: `{cmd}` {why} on a batch (attempt {attempt}); the batch stays              unacknowledged and is given to it again in {:.1} s",
            wait.as_secs_f64()
        );
        std::thread::sleep(wait);
        wait = (wait * 2).min(EXEC_MAX_RETRY);
    }
    unreachable!("the attempts of one batch never run out")
}

/// Runs `sh -c CMD` with `line` on its stdin; its stdout and stderr are this process's.
fn run_exec(cmd: &str, line: &str) -> std::io::Result<std::process::ExitStatus> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A CMD that exits without reading all of it decides by its exit status alone.
        let _ = stdin.write_all(line.as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    child.wait()
}

/// `outpost watch DOC`: through the running node, or holding the store itself.
fn watch(
    dir: &Path,
    cert_dir: Option<&Path>,
    doc: &str,
    current: bool,
    consumer: Option<&str>,
    exec: Option<&str>,
    items: Option<&str>,
) -> Result<()> {
    let filter = control::watch_filter(doc)?;
    if let Some(pattern) = items {
        // Checked before anything starts, so that a typo is an error, not a silent feed.
        outpost_core::FeedItems::parse(pattern)?;
    }
    let mut stdout = std::io::stdout();
    if let Some(mut client) = Client::connect(dir)? {
        check_node_identity(dir, cert_dir)?;
        client.request(
            &Request::Watch {
                doc: doc.to_string(),
                current,
                consumer: consumer.map(str::to_string),
                items: items.map(str::to_string),
            },
            None,
        )?;
        // Said once the node has subscribed, so a script knows no later change is missed.
        eprintln!("watching {doc} through the node serving {}", dir.display());
        loop {
            match client.next()? {
                Some(Reply::Event(e)) => {
                    if consumer.is_some() {
                        deliver(&e.to_string(), exec, &mut stdout)?;
                        client.ack()?;
                    } else {
                        writeln!(stdout, "{e}")?;
                        stdout.flush()?;
                    }
                }
                Some(Reply::Error(e)) => bail!(e),
                Some(Reply::Ok(_)) => {}
                None => {
                    eprintln!("outpost: the node serving {} has stopped", dir.display());
                    return Ok(());
                }
            }
        }
    }
    let identity = identity(dir, cert_dir)?;
    let store = open_store(dir, identity.clone(), false)?;
    let mut sub = store.subscribe(filter);
    let host = Arc::new(LocalHost {
        store: store.clone(),
        identity,
        dir: dir.to_path_buf(),
        cert_dir: cert_dir.map(Path::to_path_buf),
    });
    // Other commands on this directory reach the store through us while we watch.
    let _server = control::serve(dir, host);
    eprintln!("watching {doc} in {}", dir.display());
    if let Some(name) = consumer {
        drop(sub);
        let mut feed = control::consumer_feed(&store, doc, name, items)?;
        loop {
            let batch = feed.next_blocking()?;
            let line = control::batch_json(&store, name, &batch).to_string();
            deliver(&line, exec, &mut stdout)?;
            // Delivered: acknowledged. A kill before this line delivers the batch again.
            feed.ack(&batch)?;
        }
    }
    if current {
        writeln!(stdout, "{}", control::current_json(&store, &doc.parse()?)?)?;
        stdout.flush()?;
    }
    while let Some(event) = sub.blocking_recv() {
        writeln!(stdout, "{}", control::event_json(&store, &event))?;
        stdout.flush()?;
    }
    Ok(())
}
