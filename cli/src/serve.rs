//! `outpost serve`: runs this device's node until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::{PeerInfo, Store};
use outpost_transport::{Node, NodeConfig};
use serde_json::Value as Json;

use crate::control::{self, Client, Host};
use crate::data;
use crate::ServeArgs;

/// The control-socket view of a running node.
struct NodeHost {
    store: Store,
    info: PeerInfo,
    dir: std::path::PathBuf,
    node: Mutex<Option<Arc<Node>>>,
    runtime: tokio::runtime::Handle,
}

impl Host for NodeHost {
    fn store(&self) -> &Store {
        &self.store
    }

    fn status(&self) -> Result<Json> {
        let node = self
            .node
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| anyhow!("the node is shutting down"))?;
        let sync = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), node.status()).await })
            .map_err(|_| anyhow!("the node did not answer within 10 s"))??;
        crate::status::to_json(&self.dir, &self.store, Some(&self.info), &sync, true)
    }
}

pub(crate) fn run(dir: &Path, cert_dir: &Path, args: ServeArgs) -> Result<()> {
    let cert = data::load_cert(cert_dir)?;
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
        let mut config = NodeConfig::new(dir, cert);
        config.listen = args.listen;
        config.static_peers = args.peers.clone();
        config.discovery = args.discover;
        config.policy = data::policy();
        let node = Node::start(config)
            .await
            .with_context(|| format!("cannot start the node on {}", args.listen))?;
        data::record_identity(dir, &info)?;
        let node = Arc::new(node);
        let host = Arc::new(NodeHost {
            store: node.store().clone(),
            info: info.clone(),
            dir: dir.to_path_buf(),
            node: Mutex::new(Some(node.clone())),
            runtime: tokio::runtime::Handle::current(),
        });
        let server = control::serve(dir, host.clone());
        // Scripts and tests read the bound address (useful with port 0) from this line.
        println!("serving {info} on {}", node.local_addr());
        signals
            .recv()
            .await
            .context("cannot wait for SIGTERM or SIGINT")?;
        tracing::info!("shutdown requested");
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
