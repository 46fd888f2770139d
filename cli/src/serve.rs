//! `outpost serve`: runs this device's node until SIGTERM or SIGINT.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::{PeerInfo, Store};
use outpost_transport::{DenyList, Node, NodeConfig};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::control::{self, Client, Host};
use crate::data;
use crate::ServeArgs;

/// The control-socket view of a running node.
struct NodeHost {
    store: Store,
    info: PeerInfo,
    dir: PathBuf,
    cert_dir: PathBuf,
    node: Mutex<Option<Arc<Node>>>,
    runtime: tokio::runtime::Handle,
}

impl Host for NodeHost {
    fn store(&self) -> &Store {
        &self.store
    }

    fn status(&self) -> Result<Json> {
        let (sync, cert) = self.ask(|node| async move {
            let sync = node.status().await?;
            Ok::<_, outpost_transport::Error>((sync, node.certificate()))
        })?;
        let mut status =
            crate::status::to_json(&self.dir, &self.store, Some(&self.info), &sync, true)?;
        // The certificate in use now: a renewed one once the cloud renewed it.
        crate::status::add_certificate(&mut status, &cert)?;
        Ok(status)
    }

    fn own_files(&self) -> Vec<PathBuf> {
        vec![self.dir.clone(), self.cert_dir.clone()]
    }

    fn learn_revocation(&self, record: outpost_core::revocation::SignedRevocation) -> Result<bool> {
        self.ask(|node| async move { node.learn_revocation(record).await })
    }

    fn has_peers(&self) -> bool {
        true
    }

    fn wait_replicated(
        &self,
        doc: &outpost_core::DocumentId,
    ) -> Result<outpost_core::Acknowledged> {
        let doc = doc.clone();
        self.ask(|node| async move {
            let timeout = node.replicated_timeout();
            node.wait_replicated(&doc, timeout).await
        })
    }
}

impl NodeHost {
    /// Runs `f` on the running node, waiting at most 10 s.
    fn ask<T, F>(&self, f: impl FnOnce(Arc<Node>) -> F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, outpost_transport::Error>>,
    {
        let node = self
            .node
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| anyhow!("the node is shutting down"))?;
        Ok(self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), f(node)).await })
            .map_err(|_| anyhow!("the node did not answer within 10 s"))??)
    }
}

/// `serve --config FILE`: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    discover: bool,
    /// `required`, `transitional` or `required-from:YYYY-MM-DD`, as `--signatures`.
    signatures: Option<String>,
}

/// The settings of `serve`, from the flags over the config file.
struct Settings {
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    /// Peers given by name: checked once here, resolved again by the node on every dial.
    peer_names: Vec<String>,
    deny: DenyList,
    discover: bool,
    signatures: outpost_core::signing::SignatureRule,
    ws_listen: Option<SocketAddr>,
    ws_plain: bool,
}

impl Settings {
    fn resolve(args: ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the config file {}; check --config",
                        path.display()
                    )
                })?;
                toml::from_str::<ServeFile>(&text).with_context(|| {
                    format!(
                        "invalid config file {}: it may hold listen = \"HOST:PORT\", peers = [\"HOST:PORT\", ...], \
                         deny = [\"site/peer\", ...], discover = true|false and \
                         signatures = \"required\"|\"transitional\"|\"required-from:YYYY-MM-DD\"",
                        path.display()
                    )
                })?
            }
            None => ServeFile::default(),
        };
        let listen = args.listen.or(file.listen).ok_or_else(|| {
            anyhow!("serve needs an address to listen on: pass --listen HOST:PORT (e.g. 0.0.0.0:7734, port 0 for any) or set listen in --config")
        })?;
        let listen = *resolve(&listen)?.first().ok_or_else(|| {
            anyhow!(
                "{listen} resolves to no address; give an IP address and port, e.g. 0.0.0.0:7734"
            )
        })?;
        let mut peers = Vec::new();
        let mut peer_names: Vec<String> = Vec::new();
        for peer in file.peers.iter().chain(&args.peers) {
            // A socket bound to IPv4 cannot dial IPv6 and the other way round: dial the
            // addresses of the listening socket's family.
            let addrs: Vec<SocketAddr> = resolve(peer)?
                .into_iter()
                .filter(|a| a.is_ipv4() == listen.is_ipv4())
                .collect();
            if addrs.is_empty() {
                bail!(
                    "the peer {peer} has no {} address, and this node listens on {listen}; \
                     listen on an address of the same family (e.g. {}) or give the peer's address",
                    if listen.is_ipv4() { "IPv4" } else { "IPv6" },
                    if listen.is_ipv4() {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    }
                );
            }
            if peer.parse::<SocketAddr>().is_err() {
                // A name: the node looks it up again on every dial, so a peer whose address
                // changes (a cloud behind DNS) is still found.
                if !peer_names.contains(peer) {
                    peer_names.push(peer.clone());
                }
                continue;
            }
            for a in addrs {
                if !peers.contains(&a) {
                    peers.push(a);
                }
            }
        }
        let deny = DenyList::parse(
            file.deny
                .iter()
                .chain(&args.deny)
                .map(|d| d.trim())
                .filter(|d| !d.is_empty()),
        )
        .context("invalid --deny entry: each is `peer` or `site/peer`, e.g. `kiosk-9` or `paris-11/kiosk-9`")?;
        let signatures = match (args.signatures, &file.signatures) {
            (Some(rule), _) => rule,
            (None, Some(text)) => text
                .parse()
                .with_context(|| format!("invalid signatures = {text:?} in the config file"))?,
            (None, None) => outpost_core::signing::SignatureRule::default(),
        };
        Ok(Settings {
            listen,
            peers,
            peer_names,
            deny,
            discover: args.discover || file.discover,
            signatures,
            ws_listen: args.ws_listen,
            ws_plain: args.ws_plain,
        })
    }
}

/// Every socket address of `HOST:PORT` (a name is looked up, an IP address taken as is).
fn resolve(addr: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| {
            format!(
                "cannot resolve {addr:?}: give HOST:PORT, e.g. `cloud.example.com:7733`, `localhost:7734` or `192.168.1.20:7734`"
            )
        })?
        .collect();
    Ok(addrs)
}

pub(crate) fn run(dir: &Path, cert_dir: &Path, args: ServeArgs) -> Result<()> {
    // A failed start must not leave behind a data directory it created.
    let created = !dir.exists();
    let result = start_and_run(dir, cert_dir, args);
    if result.is_err() && created && dir.is_dir() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the data directory created by the failed start");
        }
    }
    result
}

fn start_and_run(dir: &Path, cert_dir: &Path, args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    let cert = data::load_cert(cert_dir)?;
    crate::cert::check_not_expired(&cert, cert_dir)?;
    let info = cert.info().clone();
    // Refuses a data directory that belongs to another device.
    data::identity(dir, Some(cert_dir))?;
    if Client::connect(dir)?.is_some() {
        bail!(
            "the data directory {} is already served by another outpost process; stop it first",
            dir.display()
        );
    }
    data::open_store(dir, Some(info.clone()), true).map(drop)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("outpost-node")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut signals =
            outpost_binsupport::Signals::install().context("cannot handle SIGTERM and SIGINT")?;
        let mut config = NodeConfig::new(dir, cert.clone());
        config.listen = settings.listen;
        config.static_peers = settings.peers.clone();
        config.peer_names = settings.peer_names.clone();
        config.discovery = settings.discover;
        config.deny = settings.deny.clone();
        config.policy = data::policy();
        config.data_key = data::data_key();
        config.signatures = settings.signatures;
        // A certificate renewed by the cloud replaces the files, for the next start too.
        config.cert_dir = Some(cert_dir.to_path_buf());
        // Health reports into the site document `health` (see README): every 60 s by
        // default; OUTPOST_HEALTH_SECS sets the period, 0 turns them off.
        if let Some(secs) = std::env::var("OUTPOST_HEALTH_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            config.health_period = (secs > 0).then(|| Duration::from_secs(secs));
        }
        let node = Node::start(config).await.with_context(|| {
            format!(
                "cannot start the node on {}; if the port is in use, pick another --listen port (0: any free port)",
                settings.listen
            )
        })?;
        data::record_identity(dir, &info)?;
        let node = Arc::new(node);
        let host = Arc::new(NodeHost {
            store: node.store().clone(),
            info: info.clone(),
            dir: dir.to_path_buf(),
            cert_dir: cert_dir.to_path_buf(),
            node: Mutex::new(Some(node.clone())),
            runtime: tokio::runtime::Handle::current(),
        });
        let server = control::serve(dir, host.clone());
        // Web clients (automerge-repo over WebSocket), beside QUIC.
        let web = match settings.ws_listen {
            Some(addr) => {
                let tokens = outpost_ws::TokenBook::open(crate::token::book_dir(dir))?;
                let mut config = outpost_ws::WsConfig::new(addr, tokens);
                if !settings.ws_plain {
                    // The fleet CA's certificate after the device's: a client that trusts
                    // the CA builds the path from it.
                    let chain = vec![cert.cert_der().clone(), cert.ca_der().clone()];
                    config = config.with_tls(chain, cert.private_key())?;
                }
                Some(outpost_ws::WsServer::start(node.store().clone(), config).await?)
            }
            None => None,
        };
        // Scripts and tests read the bound address (useful with port 0) from this line.
        println!("serving {info} on {}", node.local_addr());
        if let Some(web) = &web {
            println!("web clients on {}://{}", web.scheme(), web.local_addr());
        }
        signals
            .recv()
            .await
            .context("cannot wait for SIGTERM or SIGINT")?;
        tracing::info!("shutdown requested");
        if let Some(web) = web {
            web.shutdown().await;
        }
        drop(server);
        host.node.lock().unwrap_or_else(|p| p.into_inner()).take();
        // A control request that is answering may hold the node for a moment.
        let mut node = node;
        let node = loop {
            match Arc::try_unwrap(node) {
                Ok(n) => break n,
                Err(shared) => {
                    node = shared;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        node.shutdown().await.context("stopping the node failed")?;
        Ok(())
    })
}
