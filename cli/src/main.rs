//! The `outpost` command line. Its usage, exactly as `outpost help` prints it, is in
//! `cli/CLI.md`; keep the two in step (a test compares them, `scripts/cli-md.sh` regenerates
//! it).

use std::net::SocketAddr;

mod audit;
mod cert;
mod control;
mod data;
mod serve;
mod status;
mod time;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keep shops and restaurants working offline: documents, certificates and device nodes.
///
/// Documents are Automerge documents named like `menu`, `stock` or `orders/2026-11-24`.
/// Paths are JSON Pointers (`/items/burger/price`, `""` for the whole document) and values
/// are JSON (`950`, `'"Burger"'`, `'{"price": 950}'`, `true`, `null`).
#[derive(Debug, Parser)]
#[command(
    name = "outpost",
    version,
    propagate_version = true,
    disable_help_subcommand = false,
    after_help = "Writes are durable: a command returns once its change is on disk.\n\
                  While `outpost serve` or `outpost watch` runs on a data directory, the other commands on\n\
                  that directory go through it (its control socket DIR/outpost.sock).\n\
                  Exit status: 0 on success, 1 on any error (the message is on stderr), 2 on bad usage."
)]
struct Cli {
    /// The device's data directory (created by the first write).
    #[arg(
        long,
        global = true,
        env = "OUTPOST_DATA",
        hide_env_values = true,
        value_name = "DIR"
    )]
    data: Option<PathBuf>,

    /// Directory with this device's cert.pem, key.pem and ca.pem (from `outpost cert issue`).
    /// Required by `serve`; for other commands it sets the identity that authors writes
    /// (default: the identity of the last `serve` on this data directory).
    #[arg(
        long,
        global = true,
        env = "OUTPOST_CERT_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    cert_dir: Option<PathBuf>,

    /// The fleet's access policy: a TOML file with the table that `[policy]` holds in the
    /// cloud's config (see CLI.md). Default: the restaurant policy. Use the same everywhere.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_POLICY",
        hide_env_values = true,
        value_name = "FILE"
    )]
    policy: Option<PathBuf>,

    /// The key that encrypts the data directory at rest (32 random bytes, or a file holding
    /// them as 64 hex digits or base64; make one with `head -c 32 /dev/urandom > FILE` and
    /// keep it off the device's disk when you can). A new data directory opened with a key
    /// is encrypted; an encrypted one opens only with it. OUTPOST_DATA_KEY gives the key
    /// itself (hex or base64) instead of a file.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_DATA_KEY_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    data_key_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The commands of `outpost`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a fleet CA or issue device certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Write a JSON value at PATH (missing parent objects are created).
    Put {
        /// Document id, e.g. `menu` or `orders/2026-11-24`.
        doc: String,
        /// JSON Pointer, e.g. `/items/burger/price`.
        path: String,
        /// JSON value, e.g. `950`, `-1` or `'{"name": "Burger"}'`.
        #[arg(allow_hyphen_values = true)]
        json: String,
        /// Also wait (at most 3 s) until another device of the site or the cloud holds the
        /// change on its disk, and print which; if none does in time, print "stored on this
        /// device only" (exit status 0). Needs `outpost serve` running on the data directory.
        #[arg(long)]
        replicated: bool,
    },
    /// Print the JSON value at PATH (the whole document without PATH).
    Get {
        /// Document id.
        doc: String,
        /// JSON Pointer; the whole document if omitted.
        #[arg(default_value = "")]
        path: String,
    },
    /// Delete the value at PATH.
    Delete {
        /// Document id.
        doc: String,
        /// JSON Pointer.
        path: String,
    },
    /// Add DELTA to the counter at PATH (created at DELTA) and print the new total.
    Incr {
        /// Document id.
        doc: String,
        /// JSON Pointer.
        path: String,
        /// Integer to add, e.g. `5` or `-1`.
        #[arg(allow_negative_numbers = true)]
        delta: i64,
    },
    /// Print every concurrent value at PATH with its author, the winner first (JSON).
    Conflicts {
        /// Document id.
        doc: String,
        /// JSON Pointer.
        path: String,
    },
    /// Write the document as standard Automerge bytes (`Automerge.load` reads them).
    Export {
        /// Document id.
        doc: String,
        /// The file to write; `-` writes to standard output.
        #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
        out: PathBuf,
    },
    /// Merge Automerge bytes (a saved document or changes) into the document.
    Import {
        /// Document id.
        doc: String,
        /// The file to read.
        file: PathBuf,
    },
    /// Hand a revocation signed by the fleet CA (from `outpost cert revoke`) to the running
    /// node: it closes the device's links, refuses its changes and spreads the revocation
    /// to every peer (which spread it on), also to the cloud.
    Revoke {
        /// The file written by `outpost cert revoke --out`.
        file: PathBuf,
    },
    /// Run this device's node: serve and sync its documents with peers until stopped.
    Serve(ServeArgs),
    /// Print each change of the document as one JSON line, until stopped.
    Watch {
        /// Document id.
        doc: String,
        /// First print the current state as one line (`"origin":"current"`).
        #[arg(long, conflicts_with = "consumer")]
        current: bool,
        /// A durable consumer (e.g. `kitchen-1/printer`): what changed since it last
        /// acknowledged, then live, one JSON line per batch (`"origin":"feed"`, the items and
        /// their values). Without --exec a batch is printed and acknowledged once written to
        /// stdout: for a pipe that is its buffer, so a reader that dies before handling the
        /// line loses it (a kill of `outpost watch` itself prints it again: at least once).
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,
        /// With --consumer: run CMD (`sh -c CMD`) once per batch, the batch's JSON line on its
        /// stdin; the batch is acknowledged only when CMD exits 0. A non-zero exit (or a kill)
        /// leaves it unacknowledged: it is given to CMD again, after 0.2 s, then twice as long
        /// up to 30 s, never skipped. Use it for printers and integrations.
        #[arg(long, value_name = "CMD", requires = "consumer")]
        exec: Option<String>,
        /// With --consumer: what one item is, a pattern ending in `/*` (`/orders/*`: one item
        /// per order, `/orders/K1-001`, with its value); `/*` for the document's top-level
        /// keys. Default: the policy's `items` for the document's context (`/orders/*` for
        /// `orders` in the default policy), else the map named after the context if the
        /// document has one, else `/*`.
        #[arg(long, value_name = "PATTERN", requires = "consumer")]
        items: Option<String>,
    },
    /// List or delete the documents of the data directory.
    #[command(subcommand)]
    Docs(DocsCommand),
    /// Print the fleet's access policy in effect (the default unless --policy is given).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Issue or revoke tokens for web clients (automerge-repo over WebSocket, served by
    /// `serve --ws-listen`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Write a backup of the whole data directory to FILE: every document, signatures,
    /// certificates, feed positions and erasure tombstones, not the sync states (peers send
    /// a restored device what it lacks). Consistent while `outpost serve` runs (it writes the
    /// backup itself, through its control socket).
    Backup {
        /// The backup file to write (replaced if it exists; written in full or not at all).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup (from `outpost backup`) into the data directory, which must be new or
    /// empty. Then run `outpost serve` on it: peers send it everything written since the
    /// backup, and it writes under a new actor, so nothing it wrote before is reused.
    Restore {
        /// The backup file to read.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Move the data directory's store to another storage engine (sled or redb). The device
    /// must be stopped (`outpost serve` holds the store). Every document's heads, the sync
    /// states, signatures, certificates, tickets and bookkeeping are copied and compared
    /// before the files are swapped; the old files are kept in DIR/.old-<engine>-<time>.
    /// Interrupted (a crash, a power cut): run it again, it finishes.
    Migrate {
        /// The engine to move to: sled or redb.
        #[arg(long, value_name = "ENGINE")]
        to: outpost_core::StorageEngine,
    },
    /// Rotate the key of an encrypted data directory: the data key is rewrapped under the
    /// new key (one record; no data is rewritten). Takes the current key as usual
    /// (`--data-key-file` or OUTPOST_DATA_KEY). The device must be stopped.
    Rekey {
        /// The new key file (as `--data-key-file` reads it).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Show documents, heads, peers, and what is unsynced since when.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail of sync, oldest first: links opened and closed (peer, site, role,
    /// who dialed, close code), connections and changes refused (rule, authors, document),
    /// refusals by peers, revocations learnt, certificates renewed, erasures, backups, and
    /// when each peer acknowledged holding a document (its heads, at most one entry per
    /// peer, document and minute). The trail keeps the newest 10,000 entries of 90 days.
    Audit {
        /// From this time: `2026-12-07`, `2026-12-07T10:00Z`, `90m`, `2h` or `7d` ago, or
        /// ms since the epoch.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Until this time (same forms), excluded.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only entries of this kind (repeat for several): link_opened, link_closed,
        /// link_refused, changes_refused, refused_by_peer, revoked, certificate_renewed,
        /// erased, backup_taken, acknowledged.
        #[arg(long, value_name = "KIND")]
        kind: Vec<String>,
        /// Only entries about this peer (its id, e.g. `cloud-1`).
        #[arg(long, value_name = "PEER")]
        peer: Option<String>,
        /// Only entries about this document (e.g. `orders/2026-12-07`).
        #[arg(long, value_name = "DOC")]
        doc: Option<String>,
        /// At most this many entries, the newest (0: all).
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `outpost cert ...`.
#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Create a fleet certificate authority: DIR/ca.pem and DIR/ca.key (keep it offline).
    Ca {
        /// Directory to write the CA into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Fleet name, written into the CA's common name.
        #[arg(long, default_value = "outpost")]
        fleet: String,
        /// Replace a CA that already exists in DIR.
        #[arg(long)]
        force: bool,
    },
    /// Issue a device certificate: DIR/cert.pem, DIR/key.pem and DIR/ca.pem.
    Issue {
        /// Directory of the fleet CA (from `outpost cert ca`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Site of the device, e.g. `paris-11` (cloud peers: the fleet name).
        #[arg(long)]
        site: String,
        /// Device id, unique within its site, e.g. `pos-1`.
        #[arg(long)]
        device: String,
        /// Role: `pos`, `kiosk`, `menu-board`, `kitchen`, `cloud`, ... (one the policy names)
        #[arg(long)]
        role: String,
        /// Directory to write the certificate into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, value_name = "N", default_value_t = 825)]
        days: u32,
        /// Replace a certificate that already exists in DIR, or allow a role the policy does
        /// not name.
        #[arg(long)]
        force: bool,
    },
    /// Revoke a device with the fleet CA's key: writes a signed record that any device or
    /// the cloud takes (`outpost revoke FILE`, or POST it to the cloud's /revocations) and
    /// that spreads through sync to every device.
    Revoke {
        /// Directory of the fleet CA (from `outpost cert ca`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Site of the device, e.g. `paris-11`.
        #[arg(long)]
        site: String,
        /// Device id, e.g. `kiosk-2`.
        #[arg(long)]
        device: String,
        /// Revoke only this certificate of the device (its cert.pem); a replacement device
        /// issued a new certificate under the same id keeps working. Default: every
        /// certificate of the device.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Why, for logs and status (at most 200 characters).
        #[arg(long, default_value = "")]
        reason: String,
        /// The file to write the signed record into.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the device, role, fleet and validity of the certificate in DIR.
    Show {
        /// Directory with cert.pem (from `outpost cert issue`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `outpost policy ...`.
#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the policy in effect (`--policy FILE`, else the default) as a policy file.
    Show,
}

/// `outpost docs ...`.
#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// List the documents of the data directory, one per line.
    List,
    /// Delete a document from this device (its data and sync state). Peers that hold it
    /// send it back on their next sync unless their policy keeps it from this device.
    Delete {
        /// The document, e.g. `orders/2026-11-24`.
        doc: String,
    },
}

/// `outpost serve ...`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// UDP address to listen on for QUIC, e.g. `0.0.0.0:4433` or `localhost:4433` (port 0:
    /// any free port). Required here or in the config file.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// A peer to dial and keep connected (another device or the cloud), e.g.
    /// `cloud.example.com:7733`; repeatable. Every address a name resolves to is dialed.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Devices to refuse (revoked): `peer` or `site/peer`, comma separated; repeatable.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    deny: Vec<String>,
    /// Find the other devices of the site on the local network (mDNS).
    #[arg(long)]
    discover: bool,
    /// Which received changes must be signed: `required` (the default: every change new
    /// here carries its author's valid signature), `transitional` (unsigned changes of
    /// devices never seen signing are still taken, within what every relaying role may
    /// write itself; for fleets still running devices from before signed changes) or
    /// `required-from:YYYY-MM-DD` (transitional until that day, UTC).
    #[arg(long, value_name = "RULE")]
    signatures: Option<outpost_core::signing::SignatureRule>,
    /// TCP address to serve automerge-repo clients on (its WebSocket protocol), e.g.
    /// `0.0.0.0:7735`: `wss`, TLS with this device's certificate (screens trust the fleet
    /// CA), the kitchen display page at `/kds/`; clients present a token from
    /// `outpost token issue`.
    #[arg(long, value_name = "HOST:PORT")]
    ws_listen: Option<SocketAddr>,
    /// Serve plain `ws` on --ws-listen instead of `wss`: tokens and documents cross the
    /// network unencrypted, so only for guest roles (customers' phones) on a guest network.
    #[arg(long, requires = "ws_listen")]
    ws_plain: bool,
    /// TOML file with any of `listen`, `peers`, `deny`, `discover`, `signatures` (flags add
    /// to or override it; relative paths are relative to the file).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    outpost_binsupport::install_panic_hook("outpost");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let default_log = match cli.command {
        // automerge logs what it also returns as errors; the command reports those itself.
        Command::Serve(_) => "info,automerge=off",
        _ => "warn,automerge=off",
    };
    outpost_binsupport::init_logging(default_log, outpost_binsupport::LogTarget::Stderr);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => outpost_binsupport::report("outpost", e.as_ref()),
    }
}

/// Runs one parsed command.
fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(path) = &cli.policy {
        data::set_policy(data::load_policy(path)?);
    }
    data::set_data_key(cli.data_key_file.as_deref())?;
    match cli.command {
        Command::Cert(c) => cert::run(c, &data::policy()),
        Command::Policy(PolicyCommand::Show) => {
            print!("{}", data::policy_toml()?);
            Ok(())
        }
        command => {
            let dir = cli.data.ok_or_else(|| {
                anyhow::anyhow!(
                    "no data directory: pass --data DIR (or set OUTPOST_DATA), e.g. `outpost --data ./pos1 get menu`"
                )
            })?;
            data::run(&dir, cli.cert_dir.as_deref(), command)
        }
    }
}
