//! wss: TLS on the WebSocket port with the serving device's certificate, so a screen that
//! trusts the fleet CA knows it talks to a device of the fleet and nobody on the network
//! reads its token or the orders.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::WsError;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; past that, new connections wait in the kernel's backlog
/// (a client that opens connections and never speaks TLS cannot pin the device's memory).
const MAX_HANDSHAKES: usize = 64;

/// The TLS server configuration of the WebSocket port: `chain` (the device's certificate,
/// then the fleet CA's, which clients that trust the CA may need to build the path) and the
/// device's key; no client certificates (web clients present tokens); HTTP/1.1, as the
/// WebSocket upgrade needs.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, WsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WsError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| WsError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener handing axum connections whose TLS handshake is done; handshakes run in tasks
/// of their own, so a slow client holds up nobody else's.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp`, handshaking with `config`, until `stop` changes.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(16);
        let acceptor = TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, as axum does.
                            tracing::warn!(error = %e, "accepting a web client failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "a web client's TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::info!(%peer, "a web client did not finish its TLS handshake")
                        }
                    }
                });
            }
        });
        Ok(TlsListener { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // Only after shutdown, when axum stops asking.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Serves `router` on `tcp` until `stop` changes: over TLS with `config` (`wss`), or plain
/// `ws` with `None`. The task ends with the server; an error that stops it is logged.
pub fn serve(
    tcp: TcpListener,
    router: axum::Router,
    config: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut stopped = stop.clone();
    let shutdown = async move {
        let _ = stopped.changed().await;
    };
    let logged = |result: std::io::Result<()>| {
        if let Err(e) = result {
            tracing::error!(error = %e, "the WebSocket server stopped");
        }
    };
    Ok(match config {
        Some(config) => {
            let listener = TlsListener::new(tcp, config, stop)?;
            tokio::spawn(async move {
                logged(
                    axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await,
                )
            })
        }
        None => tokio::spawn(async move {
            logged(
                axum::serve(tcp, router)
                    .with_graceful_shutdown(shutdown)
                    .await,
            )
        }),
    })
}
