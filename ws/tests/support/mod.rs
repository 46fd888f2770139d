//! A site for the WebSocket tests: a POS and a kitchen as real nodes over QUIC on loopback
//! (mutual TLS, certificates made at test time), the kitchen serving automerge-repo clients;
//! and a small automerge-repo protocol client over a real WebSocket.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::Automerge;
use ciborium::Value;
use futures_util::{SinkExt, StreamExt};
use outpost_core::{Backoff, DocumentId, PeerInfo, Store};
use outpost_transport::{FleetCa, Node, NodeConfig};
use outpost_ws::{TokenBook, WsConfig, WsLimits, WsServer};
use tokio_tungstenite::tungstenite::Message;

/// The bound on every await.
pub const STEP: Duration = Duration::from_secs(15);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("outpost_ws=info")),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

pub fn doc(s: &str) -> DocumentId {
    s.parse().expect("valid document id")
}

pub struct Site {
    pub tmp: tempfile::TempDir,
    pub pos: Node,
    pub kitchen: Node,
    /// The kitchen's web server (kds screens).
    pub web: WsServer,
    pub tokens: TokenBook,
    /// The POS's web server (customers' phones: guests).
    pub pos_web: WsServer,
    pub pos_tokens: TokenBook,
}

fn config(
    dir: &std::path::Path,
    ca: &FleetCa,
    peer: &str,
    role: &str,
    dial: Vec<SocketAddr>,
) -> NodeConfig {
    let info = PeerInfo::parse("lyon", peer, role).expect("valid identity");
    let cert = ca.issue(&info).expect("issue certificate");
    let mut config = NodeConfig::new(dir.join(peer), cert);
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.static_peers = dial;
    config.reconnect = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    config.tuning.keep_alive = Duration::from_millis(300);
    config.tuning.idle_timeout = Duration::from_secs(2);
    config.health_period = None;
    config
}

impl Site {
    /// A POS and a kitchen (dialing the POS); the kitchen serves web clients with `limits`.
    pub async fn start(limits: WsLimits) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::generate("acme").expect("ca");
        let pos = within(
            "pos starts",
            Node::start(config(tmp.path(), &ca, "pos-1", "pos", vec![])),
        )
        .await
        .expect("pos starts");
        let kitchen = within(
            "kitchen starts",
            Node::start(config(
                tmp.path(),
                &ca,
                "kitchen-1",
                "kitchen",
                vec![pos.local_addr()],
            )),
        )
        .await
        .expect("kitchen starts");
        within(
            "kitchen connects",
            kitchen.wait_connected(&"pos-1".parse().expect("peer")),
        )
        .await;
        let tokens = TokenBook::open(tmp.path().join("kitchen-1-tokens")).expect("token book");
        let mut ws = WsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tokens.clone());
        ws.limits = limits;
        ws.revocation_poll = Duration::from_millis(100);
        let web = WsServer::start(kitchen.store().clone(), ws.clone())
            .await
            .expect("ws server");
        let pos_tokens = TokenBook::open(tmp.path().join("pos-1-tokens")).expect("token book");
        ws.tokens = pos_tokens.clone();
        let pos_web = WsServer::start(pos.store().clone(), ws)
            .await
            .expect("ws server");
        Site {
            tmp,
            pos,
            kitchen,
            web,
            tokens,
            pos_web,
            pos_tokens,
        }
    }

    pub fn token(&self, role: &str, name: &str) -> String {
        let now = outpost_core::Timestamp::now().as_millis() / 1000;
        self.tokens
            .issue(
                &"lyon".parse().expect("site"),
                &role.parse().expect("role"),
                name,
                now,
                3600,
            )
            .expect("issue token")
            .0
    }

    pub fn pos_token(&self, role: &str, name: &str) -> String {
        let now = outpost_core::Timestamp::now().as_millis() / 1000;
        self.pos_tokens
            .issue(
                &"lyon".parse().expect("site"),
                &role.parse().expect("role"),
                name,
                now,
                3600,
            )
            .expect("issue token")
            .0
    }

    pub fn pos_url(&self, token: &str) -> String {
        format!("ws://{}/?token={token}", self.pos_web.local_addr())
    }

    pub fn url(&self, token: &str) -> String {
        format!("ws://{}/?token={token}", self.web.local_addr())
    }

    pub fn repo_id(&self, name: &str) -> String {
        outpost_ws::repo_document_id(&"lyon".parse().expect("site"), &doc(name))
    }

    pub async fn stop(self) {
        self.web.shutdown().await;
        self.pos_web.shutdown().await;
        let _ = self.kitchen.shutdown().await;
        let _ = self.pos.shutdown().await;
    }
}

/// Waits until `store` holds `expected` at `path` of `doc`.
pub async fn wait_value(
    what: &str,
    store: &Store,
    doc: &DocumentId,
    path: &str,
    expected: &serde_json::Value,
) {
    within(what, async {
        loop {
            if store.get(doc, path).ok().flatten().as_ref() == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal automerge-repo client speaking the wire protocol by hand.
pub struct Client {
    pub ws: Ws,
    pub me: String,
    pub server: String,
}

pub fn text(v: &Value, key: &str) -> Option<String> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .and_then(|(_, v)| v.as_text())
        .map(str::to_string)
}

pub fn bytes(v: &Value, key: &str) -> Option<Vec<u8>> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .and_then(|(_, v)| v.as_bytes())
        .cloned()
}

pub fn cbor(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let v = Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).expect("encode");
    out
}

pub fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

impl Client {
    /// Connects (no join yet). `Err` carries the refusal (e.g. HTTP 401).
    pub async fn connect(url: &str) -> Result<Client, String> {
        let (ws, _) = within("connect", tokio_tungstenite::connect_async(url))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Client {
            ws,
            me: format!("test-{}", rand_id()),
            server: String::new(),
        })
    }

    pub async fn send_raw(&mut self, frame: Vec<u8>) -> Result<(), String> {
        self.ws
            .send(Message::Binary(frame.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next message, `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            match within("a message from the server", self.ws.next()).await {
                Some(Ok(Message::Binary(b))) => {
                    return Some(ciborium::from_reader(&b[..]).expect("the server sends CBOR"))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn join(&mut self, versions: &[&str]) -> Option<Value> {
        let versions = Value::Array(versions.iter().map(|v| t(v)).collect());
        let me = self.me.clone();
        self.send_raw(cbor(vec![
            ("type", t("join")),
            ("senderId", t(&me)),
            ("supportedProtocolVersions", versions),
        ]))
        .await
        .expect("send join");
        let reply = self.recv().await?;
        if let Some(s) = text(&reply, "senderId") {
            self.server = s;
        }
        Some(reply)
    }

    pub async fn send_sync(
        &mut self,
        kind: &str,
        repo_id: &str,
        data: Vec<u8>,
    ) -> Result<(), String> {
        let (me, server) = (self.me.clone(), self.server.clone());
        self.send_raw(cbor(vec![
            ("type", t(kind)),
            ("senderId", t(&me)),
            ("targetId", t(&server)),
            ("documentId", t(repo_id)),
            ("data", Value::Bytes(data)),
        ]))
        .await
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One document on the client side: an Automerge document and its sync state with the server.
pub struct Replica {
    pub id: String,
    pub doc: Automerge,
    pub state: sync::State,
}

impl Replica {
    pub fn new(id: String) -> Replica {
        Replica {
            id,
            doc: Automerge::new(),
            state: sync::State::new(),
        }
    }

    /// Sends our next sync message (as `request` the first time).
    pub async fn offer(&mut self, client: &mut Client, request: bool) -> Result<(), String> {
        let msg = self.doc.generate_sync_message(&mut self.state);
        match msg {
            Some(m) => {
                client
                    .send_sync(
                        if request { "request" } else { "sync" },
                        &self.id,
                        m.encode(),
                    )
                    .await
            }
            None => Ok(()),
        }
    }

    /// Exchanges messages until `done` holds or the server says something else; returns the
    /// messages that were not sync messages for this document (errors, doc-unavailable).
    pub async fn sync_until(
        &mut self,
        client: &mut Client,
        done: impl Fn(&Automerge) -> bool,
    ) -> Vec<Value> {
        let mut other = Vec::new();
        within("sync", async {
            loop {
                if done(&self.doc) {
                    return;
                }
                let Some(m) = client.recv().await else { return };
                let kind = text(&m, "type").unwrap_or_default();
                if kind == "sync" && text(&m, "documentId").as_deref() == Some(self.id.as_str()) {
                    let data = bytes(&m, "data").expect("sync data");
                    let msg = sync::Message::decode(&data).expect("a sync message");
                    self.doc
                        .receive_sync_message(&mut self.state, msg)
                        .expect("apply");
                    self.offer(client, false).await.expect("answer");
                } else {
                    other.push(m);
                    return;
                }
            }
        })
        .await;
        other
    }
}
