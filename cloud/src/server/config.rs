//! Configuration of `outpost-cloud`: flags, environment variables and a TOML file.
//!
//! Precedence: a command-line flag, then its environment variable, then the config file,
//! then the default. Relative paths in the config file are relative to the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::Policy;
use outpost_transport::{SessionConfig, TransportTuning};
use serde::Deserialize;

/// How many document streams a device may have open towards the cloud on one connection.
///
/// quinn reserves state for every stream a peer may open as soon as a connection starts
/// (about 48 bytes each): the transport's default of 4,096 costs ~200 KiB per connected
/// device, which for a thousand sites is most of the cloud's memory. A device opens one
/// stream per document it changes during a connection (`menu`, `stock`, one `orders/<day>`
/// a day, ...), so 1,024 lasts years of daily partitions on one connection.
pub const CLOUD_DOCUMENT_STREAMS: u32 = 1024;

/// Command line of `outpost-cloud`. Every flag can also be set by its environment variable
/// or in the TOML file given by `--config`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "outpost-cloud",
    version,
    about = "The outpost cloud peer: syncs every site of a fleet over QUIC with mutual TLS, \
             keeps each site's documents apart, relays between a site's devices, and serves \
             /health and Prometheus /metrics over HTTP.",
    after_help = "Config file keys: data, store, listen, http, ca, cert, key, cache_mb, idle_secs, max_documents, deny, ca_key, head_office_cert, head_office_key, renew_days, signatures, ws_listen, ws_plain, \
                  a [policy] table and a [limits] table (see cloud/CLI.md). Flags override environment variables, \
                  which override the file. SIGTERM or SIGINT: stop accepting, flush, exit 0."
)]
pub struct Args {
    /// Data directory (one sled database for every site).
    #[arg(
        long,
        global = true,
        env = "OUTPOST_DATA",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub data: Option<PathBuf>,
    /// Keep every site in PostgreSQL (`postgres://user:password@host/db`), shared by several
    /// instances; the data directory then only holds this instance's cache. Default: sled in
    /// the data directory.
    #[arg(
        long,
        env = "OUTPOST_STORE",
        hide_env_values = true,
        value_name = "postgres://..."
    )]
    pub store: Option<String>,
    /// UDP address for QUIC, e.g. `0.0.0.0:7733` or `localhost:7733`.
    #[arg(
        long,
        env = "OUTPOST_LISTEN",
        hide_env_values = true,
        value_name = "HOST:PORT"
    )]
    pub listen: Option<String>,
    /// TCP address for HTTP /health and /metrics, e.g. `127.0.0.1:9090` or `localhost:9090`.
    #[arg(
        long,
        env = "OUTPOST_HTTP",
        hide_env_values = true,
        value_name = "HOST:PORT"
    )]
    pub http: Option<String>,
    /// The fleet CA certificate.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_CA",
        hide_env_values = true,
        value_name = "CA.pem"
    )]
    pub ca: Option<PathBuf>,
    /// This cloud peer's certificate (issued with role `cloud`).
    #[arg(
        long,
        global = true,
        env = "OUTPOST_CERT",
        hide_env_values = true,
        value_name = "CERT.pem"
    )]
    pub cert: Option<PathBuf>,
    /// This cloud peer's private key.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_KEY",
        hide_env_values = true,
        value_name = "KEY.pem"
    )]
    pub key: Option<PathBuf>,
    /// TOML file with any of the settings above, plus `deny` and `[policy]`.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// The key that encrypts the working copy in the data directory at rest (a file of 32
    /// random bytes, or 64 hex digits, or base64; OUTPOST_DATA_KEY gives the key itself). A
    /// new data directory opened with a key is encrypted; an encrypted one opens only with
    /// it (the server and `backup`/`restore`/`migrate`). Fetch it from your KMS at start,
    /// e.g. `--data-key-file <(kms-decrypt ...)`.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_DATA_KEY_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub data_key_file: Option<PathBuf>,
    /// sled page cache in MiB (default 64).
    #[arg(
        long,
        env = "OUTPOST_CACHE_MB",
        hide_env_values = true,
        value_name = "MIB"
    )]
    pub cache_mb: Option<u64>,
    /// Unload documents, and sites without devices connected, after this many idle seconds
    /// (default 10).
    #[arg(
        long,
        env = "OUTPOST_IDLE_SECS",
        hide_env_values = true,
        value_name = "SECS"
    )]
    pub idle_secs: Option<u64>,
    /// Above this many documents in memory (all sites), documents unused for a second are
    /// unloaded too (default 256).
    #[arg(
        long,
        env = "OUTPOST_MAX_DOCUMENTS",
        hide_env_values = true,
        value_name = "N"
    )]
    pub max_documents: Option<usize>,
    /// Revoked devices, refused at the handshake: `peer` or `site/peer`, comma separated.
    #[arg(
        long,
        env = "OUTPOST_DENY",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub deny: Vec<String>,
    /// The fleet CA's private key (ca.key): with it the cloud renews device certificates over
    /// the link before they expire (devices ask 10 days ahead). Keep it on this machine only.
    #[arg(
        long,
        env = "OUTPOST_CA_KEY",
        hide_env_values = true,
        value_name = "CA.key"
    )]
    pub ca_key: Option<PathBuf>,
    /// A head-office certificate (role `head-office`, issued offline with `outpost cert issue
    /// --role head-office`): the API's writes are authored and signed as it, so the fleet
    /// CA's key need not be on this machine. Give its key with --head-office-key.
    #[arg(
        long,
        env = "OUTPOST_HEAD_OFFICE_CERT",
        hide_env_values = true,
        requires = "head_office_key",
        value_name = "CERT.pem"
    )]
    pub head_office_cert: Option<PathBuf>,
    /// The private key of --head-office-cert (key.pem).
    #[arg(
        long,
        env = "OUTPOST_HEAD_OFFICE_KEY",
        hide_env_values = true,
        requires = "head_office_cert",
        value_name = "KEY.pem"
    )]
    pub head_office_key: Option<PathBuf>,
    /// Days a renewed device certificate is valid (default 30). A certificate is renewed only
    /// in its last min(15, DAYS/2) days, and one key at most once in that window.
    #[arg(
        long,
        env = "OUTPOST_RENEW_DAYS",
        hide_env_values = true,
        value_name = "DAYS"
    )]
    pub renew_days: Option<u32>,
    /// Which changes devices send must be signed: `required` (default), `transitional`
    /// (for fleets still running devices from before signed changes: their unsigned changes
    /// are taken within what every relaying role may write itself) or
    /// `required-from:YYYY-MM-DD`.
    #[arg(
        long,
        env = "OUTPOST_SIGNATURES",
        hide_env_values = true,
        value_name = "RULE"
    )]
    pub signatures: Option<outpost_core::signing::SignatureRule>,
    /// TCP address for automerge-repo's WebSocket protocol (browsers, Node, samod), e.g.
    /// `0.0.0.0:7735`: a site's web clients connect to `wss://ADDR/sites/<site>?token=...`
    /// (TLS with the cloud's certificate and the fleet CA's) with a token of
    /// `outpost-cloud web-token issue`. Default: not served.
    #[arg(
        long,
        env = "OUTPOST_WS_LISTEN",
        hide_env_values = true,
        value_name = "HOST:PORT"
    )]
    pub ws_listen: Option<String>,
    /// Serve plain `ws` on --ws-listen instead of `wss`: tokens and documents then cross the
    /// network unencrypted, so only behind a TLS terminator of your own.
    #[arg(long, env = "OUTPOST_WS_PLAIN")]
    pub ws_plain: bool,
    /// Instead of serving: back up, restore or erase (run without one to serve).
    #[command(subcommand)]
    pub command: Option<CloudCommand>,
}

/// What `outpost-cloud` does instead of serving. Backup and restore work on the data
/// directory of a stopped cloud peer (sled lets one process open it); erase goes through a
/// running cloud's control socket, or opens the directory of a stopped one.
#[derive(Debug, clap::Subcommand)]
pub enum CloudCommand {
    /// Write a backup of every site of a stopped cloud peer to FILE: each site's documents, signatures,
    /// certificates, feed positions and erasure tombstones, not the sync states (devices
    /// send a restored cloud what it lacks).
    Backup {
        /// The backup file to write (written in full or not at all).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup of `outpost-cloud backup` into the data directory, which must be new
    /// or empty.
    Restore {
        /// The backup file to read.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Erase a document (a partition such as `orders/2026-11-03`) fleet-wide: the cloud
    /// deletes it and keeps a tombstone, refuses it if a device sends it back, and tells
    /// every device of the site through the `erasures` document (connected devices at once,
    /// the others when they next connect). A running cloud does it through its control
    /// socket (DIR/outpost-cloud.sock); on a stopped one it needs --cert, --key and --ca
    /// (the entry in `erasures` is signed) and devices hear of it once the cloud runs again.
    Erase {
        /// The document to erase.
        doc: String,
        /// Only in this site (default: every site the data directory holds).
        #[arg(long)]
        site: Option<String>,
    },
    /// Move the data directory to another storage engine (sled or redb), every site and the
    /// fleet documents at once. The cloud must be stopped. Every entry is copied and compared
    /// before the files are swapped; the old files are kept in DIR/.old-<engine>-<time>.
    /// Interrupted: run it again, it finishes. (With --store postgres://..., the data
    /// directory's working copy is rebuilt at every start: nothing to migrate.)
    Migrate {
        /// The engine to move to: sled or redb.
        #[arg(long, value_name = "ENGINE")]
        to: outpost_core::StorageEngine,
    },
    /// Issue or revoke bearer tokens of the HTTP API (`/api/v1`, the dashboard). Works on a
    /// running cloud: it reads DIR/api-tokens.json, which keeps only the tokens' hashes, on
    /// every request.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Tokens for a site's web clients (automerge-repo over `--ws-listen`).
    #[command(subcommand, name = "web-token")]
    WebToken(WebTokenCommand),
}

/// `outpost-cloud web-token ...`: tokens that let a web client sync one site's documents
/// through the cloud under a policy role (`kds`, `guest`; the cloud must be allowed to vouch
/// for it: the policy's `vouch` table).
#[derive(Debug, clap::Subcommand)]
pub enum WebTokenCommand {
    /// Issue a token and print it (`ws://ADDR/sites/<site>?token=<it>`).
    Issue {
        /// The site whose documents it syncs.
        #[arg(long)]
        site: String,
        /// The client's policy role, e.g. `kds` or `guest`.
        #[arg(long)]
        role: String,
        /// The client's name, e.g. `kitchen-screen-1` (a guest's own documents are named
        /// after it).
        #[arg(long)]
        name: String,
        /// How long it is valid: e.g. 30m, 12h, 7d (default 12h).
        #[arg(long, default_value = "12h")]
        ttl: String,
    },
    /// Revoke a token by its id (its connections are cut within a second).
    Revoke {
        /// The site it was issued for.
        #[arg(long)]
        site: String,
        /// The token's id (printed when it was issued).
        id: String,
    },
}

/// `outpost-cloud token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it (once: the cloud keeps only its hash).
    Issue {
        /// Who holds it, e.g. `erp` or `head-office` (unique; named in the change messages
        /// of its writes).
        #[arg(long)]
        name: String,
        /// The sites it may reach: `*` for every site, or a comma-separated list.
        #[arg(long, value_delimiter = ',', required = true)]
        sites: Vec<String>,
        /// Let it write documents (as role `head-office`, within the fleet policy).
        #[arg(long)]
        write: bool,
    },
    /// Revoke the token named NAME (refused from the next request on).
    Revoke {
        /// The token's name.
        #[arg(long)]
        name: String,
    },
    /// List the tokens issued (names, sites, write), not the tokens themselves.
    List,
}

/// What the subcommands need from flags, environment and config file.
#[derive(Debug)]
pub(crate) struct AdminConfig {
    pub(crate) data: PathBuf,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) policy: Policy,
    pub(crate) data_key: Option<outpost_core::storage::SharedKeyWrap>,
}

/// The key of the data directory: `--data-key-file`, or the key itself in OUTPOST_DATA_KEY.
pub(crate) fn data_key(
    file: Option<&Path>,
) -> Result<Option<outpost_core::storage::SharedKeyWrap>> {
    use outpost_core::storage::WrappingKey;
    let key = match (file, std::env::var("OUTPOST_DATA_KEY")) {
        (Some(path), _) => WrappingKey::from_file(path)
            .with_context(|| format!("cannot use the key file {}", path.display()))?,
        (None, Ok(text)) => WrappingKey::parse(&text).context("cannot use OUTPOST_DATA_KEY")?,
        (None, Err(_)) => return Ok(None),
    };
    Ok(Some(std::sync::Arc::new(key)))
}

impl AdminConfig {
    pub(crate) fn from_args(args: &Args) -> Result<AdminConfig> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let base = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        Ok(AdminConfig {
            data: args.data.clone().or(file.data.map(rel)).ok_or_else(|| {
                anyhow!("missing --data: pass --data, set OUTPOST_DATA, or put `data = ...` in the --config file")
            })?,
            ca: args.ca.clone().or(file.ca.map(rel)),
            cert: args.cert.clone().or(file.cert.map(rel)),
            key: args.key.clone().or(file.key.map(rel)),
            policy: file.policy.unwrap_or_default(),
            data_key: data_key(args.data_key_file.as_deref())?,
        })
    }
}

/// The first address of `HOST:PORT` (a name such as `localhost` is looked up once, at start).
fn resolve(setting: &str, addr: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .with_context(|| {
            format!(
                "cannot resolve the {setting} address {addr:?}: give HOST:PORT, e.g. `0.0.0.0:7733` or `localhost:7733`"
            )
        })?
        .next()
        .ok_or_else(|| {
            anyhow!("the {setting} address {addr:?} resolves to no address; give an IP address and port, e.g. `0.0.0.0:7733`")
        })
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    store: Option<String>,
    listen: Option<String>,
    http: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cache_mb: Option<u64>,
    idle_secs: Option<u64>,
    max_documents: Option<usize>,
    deny: Option<Vec<String>>,
    ca_key: Option<PathBuf>,
    head_office_cert: Option<PathBuf>,
    head_office_key: Option<PathBuf>,
    renew_days: Option<u32>,
    signatures: Option<String>,
    ws_listen: Option<String>,
    ws_plain: Option<bool>,
    policy: Option<Policy>,
    limits: Option<SiteLimits>,
}

/// What one device may make a site of the cloud spend: the engine's limits, per site (the
/// `[limits]` table of the config file). Every key is optional; the defaults are the engine's.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteLimits {
    /// Documents a site may hold before devices' changes creating new ones are refused
    /// (default 100,000).
    pub site_documents: usize,
    /// Documents one device may create in one session (default 1,000).
    pub new_documents_per_session: usize,
    /// Documents one device's changes may create in the site, across sessions and
    /// restarts (default 10,000).
    pub new_documents_per_device: usize,
    /// MiB of changes one device may send per hour, across sessions (default 256).
    pub peer_mib_per_hour: u64,
    /// MiB one message may inflate to before it is applied (default 64).
    pub inflated_mib: usize,
    /// MiB of one reassembled fragmented message (default 64).
    pub reassembly_mib: usize,
    /// KiB of unacknowledged sync bytes in flight per device (default 4,096).
    pub window_kib: u64,
}

impl Default for SiteLimits {
    fn default() -> Self {
        let e = outpost_core::EngineConfig::new(
            outpost_core::PeerInfo::parse("limits", "limits", "cloud")
                .expect("a valid placeholder identity"),
            Policy::default(),
        );
        SiteLimits {
            site_documents: e.max_documents,
            new_documents_per_session: e.max_new_documents_per_session,
            new_documents_per_device: e.max_new_documents_per_device,
            peer_mib_per_hour: e.max_peer_bytes_per_hour >> 20,
            inflated_mib: e.max_inflated_bytes >> 20,
            reassembly_mib: e.max_reassembly_bytes >> 20,
            window_kib: e.window_bytes >> 10,
        }
    }
}

impl SiteLimits {
    /// Sets these limits on a site's engine configuration.
    pub fn apply(&self, e: &mut outpost_core::EngineConfig) {
        e.max_documents = self.site_documents;
        e.max_new_documents_per_session = self.new_documents_per_session;
        e.max_new_documents_per_device = self.new_documents_per_device;
        e.max_peer_bytes_per_hour = self.peer_mib_per_hour.saturating_mul(1 << 20);
        e.max_inflated_bytes = self.inflated_mib.saturating_mul(1 << 20);
        e.max_reassembly_bytes = self.reassembly_mib.saturating_mul(1 << 20);
        e.window_bytes = self.window_kib.saturating_mul(1 << 10);
    }
}

/// Everything a [`Cloud`](super::Cloud) needs.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// Data directory (one sled database; each site in the namespace `site/<site>/`).
    pub data: PathBuf,
    /// PostgreSQL URL: sites live there, shared by instances; `None`: sled in `data`.
    pub store: Option<String>,
    /// UDP address for QUIC.
    pub listen: SocketAddr,
    /// TCP address for HTTP.
    pub http: SocketAddr,
    /// Fleet CA certificate (PEM file).
    pub ca: PathBuf,
    /// Cloud certificate (PEM file, role `cloud`).
    pub cert: PathBuf,
    /// Cloud private key (PEM file).
    pub key: PathBuf,
    /// sled page cache in bytes.
    pub cache_bytes: u64,
    /// Documents unused this long are dropped from memory; a site with no device connected
    /// for this long is unloaded entirely.
    pub idle: Duration,
    /// Above this many documents in memory over all sites, documents unused for a second
    /// are unloaded as well: memory stays bounded whatever the rate of connections.
    pub max_documents: usize,
    /// Revoked devices (`peer` or `site/peer`).
    pub deny: Vec<String>,
    /// The fleet CA's private key: set, the cloud renews device certificates.
    pub ca_key: Option<PathBuf>,
    /// A head-office certificate and its key (PEM files), issued offline by the fleet CA:
    /// set, the API's writes are authored as it (without it, as a head-office certificate
    /// the cloud issues itself with `ca_key`, or as the cloud).
    pub head_office: Option<(PathBuf, PathBuf)>,
    /// Days a renewed device certificate is valid.
    pub renew_days: u32,
    /// A connection is closed this long after its peer's certificate expired (clock skew).
    pub expiry_grace: Duration,
    /// Which received changes must be signed (default `required`).
    pub signatures: outpost_core::signing::SignatureRule,
    /// The fleet's access policy (the same on every device).
    pub policy: Policy,
    /// What one device may make its site spend.
    pub limits: SiteLimits,
    /// QUIC keep-alive, idle timeout and stream limits.
    pub tuning: TransportTuning,
    /// Frame size and send queue limits.
    pub session: SessionConfig,
    /// How long shutdown waits for devices to acknowledge queued messages.
    pub shutdown_grace: Duration,
    /// Timeouts and connection limits of every HTTP client (see `cloud/API.md`).
    pub http_limits: super::HttpLimits,
    /// TCP address for web clients (automerge-repo's WebSocket protocol); `None`: not served.
    pub ws_listen: Option<SocketAddr>,
    /// Plain `ws` on `ws_listen` instead of `wss` (`--ws-plain`).
    pub ws_plain: bool,
    /// The platform key of the working copy in `data` (see `--data-key-file`): `None`, not
    /// encrypted at rest. PostgreSQL rows are not encrypted by it (see the README).
    pub data_key: Option<outpost_core::storage::SharedKeyWrap>,
}

impl CloudConfig {
    /// A configuration with defaults for everything but the required settings.
    pub fn new(
        data: PathBuf,
        listen: SocketAddr,
        http: SocketAddr,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    ) -> CloudConfig {
        CloudConfig {
            data,
            store: None,
            listen,
            http,
            ca,
            cert,
            key,
            cache_bytes: 64 * 1024 * 1024,
            idle: Duration::from_secs(10),
            max_documents: 256,
            deny: Vec::new(),
            ca_key: None,
            head_office: None,
            renew_days: 30,
            expiry_grace: outpost_transport::DEFAULT_EXPIRY_GRACE,
            signatures: outpost_core::signing::SignatureRule::default(),
            policy: Policy::default(),
            limits: SiteLimits::default(),
            tuning: TransportTuning {
                max_document_streams: CLOUD_DOCUMENT_STREAMS,
                ..TransportTuning::default()
            },
            session: SessionConfig::default(),
            shutdown_grace: Duration::from_secs(1),
            http_limits: super::HttpLimits::default(),
            ws_listen: None,
            ws_plain: false,
            data_key: None,
        }
    }

    /// Resolves flags, environment and config file into a configuration.
    pub fn from_args(args: Args) -> Result<CloudConfig> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let base = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let missing = |flag: &str, env: &str| {
            anyhow!(
                "missing --{flag}: pass --{flag}, set {env}, or put `{flag} = ...` in the --config file"
            )
        };
        let mut config = CloudConfig::new(
            args.data
                .or(file.data.map(rel))
                .ok_or_else(|| missing("data", "OUTPOST_DATA"))?,
            resolve(
                "listen",
                &args
                    .listen
                    .or(file.listen)
                    .ok_or_else(|| missing("listen", "OUTPOST_LISTEN"))?,
            )?,
            resolve(
                "http",
                &args
                    .http
                    .or(file.http)
                    .ok_or_else(|| missing("http", "OUTPOST_HTTP"))?,
            )?,
            args.ca
                .or(file.ca.map(rel))
                .ok_or_else(|| missing("ca", "OUTPOST_CA"))?,
            args.cert
                .or(file.cert.map(rel))
                .ok_or_else(|| missing("cert", "OUTPOST_CERT"))?,
            args.key
                .or(file.key.map(rel))
                .ok_or_else(|| missing("key", "OUTPOST_KEY"))?,
        );
        config.store = match args.store.or(file.store) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(url)
            }
            Some(_) => bail!(
                "--store takes a PostgreSQL URL, e.g. postgres://outpost:secret@db.example.com/outpost (leave it out to keep sites in the data directory)"
            ),
            None => None,
        };
        config.data_key = data_key(args.data_key_file.as_deref())?;
        if let Some(mb) = args.cache_mb.or(file.cache_mb) {
            config.cache_bytes = mb.max(1) * 1024 * 1024;
        }
        if let Some(n) = args.max_documents.or(file.max_documents) {
            config.max_documents = n;
        }
        if let Some(s) = args.idle_secs.or(file.idle_secs) {
            config.idle = Duration::from_secs(s.max(1));
        }
        config.deny = if args.deny.is_empty() {
            file.deny.unwrap_or_default()
        } else {
            args.deny
        };
        config.ca_key = args.ca_key.or(file.ca_key.map(rel));
        config.head_office = match (
            args.head_office_cert.or(file.head_office_cert.map(rel)),
            args.head_office_key.or(file.head_office_key.map(rel)),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!(
                "give both head_office_cert and head_office_key (the certificate and key that \
                 `outpost cert issue --role head-office` wrote), or neither"
            ),
        };
        if let Some(d) = args.renew_days.or(file.renew_days) {
            config.renew_days = d.max(1);
        }
        config.signatures = match (args.signatures, file.signatures) {
            (Some(rule), _) => rule,
            (None, Some(text)) => text
                .parse()
                .with_context(|| format!("invalid signatures = {text:?} in the config file"))?,
            (None, None) => config.signatures,
        };
        config.ws_plain = args.ws_plain || file.ws_plain.unwrap_or(false);
        if let Some(addr) = args.ws_listen.or(file.ws_listen) {
            config.ws_listen = Some(resolve("ws_listen", &addr)?);
        }
        if let Some(p) = file.policy {
            config.policy = p;
        }
        if let Some(l) = file.limits {
            config.limits = l;
        }
        Ok(config)
    }
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "invalid config file {}; see cloud/CLI.md for its keys",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The `[limits]` example of cloud/CLI.md states the defaults, and a file may set them.
    #[test]
    fn limits_in_the_docs_are_the_defaults_and_a_file_sets_them() {
        let docs = include_str!("../../docs/cli-template.md");
        let start = docs.find("[limits]").expect("the docs show [limits]");
        let table = &docs[start..docs[start..].find("```").map_or(docs.len(), |e| start + e)];
        #[derive(Deserialize)]
        struct File {
            limits: SiteLimits,
        }
        let parsed: File = toml::from_str(table).expect("the documented table parses");
        assert_eq!(parsed.limits, SiteLimits::default());
        let set: File = toml::from_str("[limits]\npeer_mib_per_hour = 8").expect("parses");
        let mut e = outpost_core::EngineConfig::new(
            outpost_core::PeerInfo::parse("s", "cloud-1", "cloud").expect("valid"),
            Policy::default(),
        );
        set.limits.apply(&mut e);
        assert_eq!(e.max_peer_bytes_per_hour, 8 << 20);
        assert_eq!(e.max_documents, 100_000);
        assert!(
            toml::from_str::<File>("[limits]\npeer_mb = 8").is_err(),
            "typos are errors"
        );
    }

    #[test]
    fn file_fills_in_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cloud.toml");
        std::fs::write(
            &file,
            r#"
data = "data"
listen = "127.0.0.1:7000"
http = "127.0.0.1:9000"
ca = "/etc/ca.pem"
cert = "cert.pem"
key = "key.pem"
idle_secs = 5
deny = ["paris/pos-9"]

[policy]
open = true
relay_roles = []
contexts = {}
default_rule = { read = [], write = [] }
"#,
        )
        .expect("write");
        let args = Args::try_parse_from([
            "outpost-cloud",
            "--config",
            file.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:7001",
        ])
        .expect("parse");
        let c = CloudConfig::from_args(args).expect("config");
        assert_eq!(c.listen, "127.0.0.1:7001".parse().expect("addr"));
        assert_eq!(c.http, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(c.data, dir.path().join("data"));
        assert_eq!(c.ca, PathBuf::from("/etc/ca.pem"));
        assert_eq!(c.idle, Duration::from_secs(5));
        assert_eq!(c.deny, vec!["paris/pos-9".to_string()]);
        assert!(c.policy.open);
    }

    #[test]
    fn missing_settings_say_how_to_set_them() {
        let args = Args::try_parse_from(["outpost-cloud", "--data", "/tmp/x"]).expect("parse");
        let e = CloudConfig::from_args(args).expect_err("listen missing");
        assert!(e.to_string().contains("OUTPOST_LISTEN"), "{e}");
    }
}
