//! 50 browser-protocol clients (automerge-repo's WebSocket protocol, spoken by hand over
//! tokio-tungstenite: join, request, sync) on one site device (a kitchen serving
//! `outpost-ws`) follow the day's orders while a POS writes 10 orders/s to the device over
//! QUIC. Figures: p50/p99 latency from the POS's write to each client holding the order,
//! and the process's resident memory per connected client (an upper bound for the device:
//! the clients' own replicas live in the same process).
//!
//! `cargo bench -p outpost-benches --bench ws_clients` (env `WS_CLIENTS`, `WS_SECONDS`,
//! `WS_RATE` change 50 clients, 10 s, 10 orders/s).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ReadDoc, ROOT};
use ciborium::Value;
use futures_util::{SinkExt, StreamExt};
use outpost_core::{Backoff, Durability, PeerInfo};
use outpost_transport::{FleetCa, Node, NodeConfig};
use outpost_ws::{repo_document_id, TokenBook, WsConfig, WsServer};
use tokio_tungstenite::tungstenite::Message;

const DAY: &str = "orders/2026-12-07";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node_config(dir: &std::path::Path, ca: &FleetCa, peer: &str, role: &str) -> NodeConfig {
    let info = PeerInfo::parse("paris", peer, role).expect("identity");
    let mut config = NodeConfig::new(dir.join(peer), ca.issue(&info).expect("certificate"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.reconnect = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    config.health_period = None;
    config
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cbor(entries: Vec<(&str, Value)>) -> Vec<u8> {
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

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

type Written = Arc<Mutex<HashMap<String, Instant>>>;

/// One client: joins, requests the day, and answers every sync message; records, for each
/// order it sees for the first time, the latency since the POS wrote it. Sends `()` once
/// it holds the document.
async fn client(
    n: usize,
    url: String,
    repo_id: String,
    written: Written,
    latencies: Arc<Mutex<Vec<Duration>>>,
    synced: tokio::sync::mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let me = format!("bench-{n}");
    let t = |s: &str| Value::Text(s.to_string());
    ws.send(Message::Binary(
        cbor(vec![
            ("type", t("join")),
            ("senderId", t(&me)),
            ("supportedProtocolVersions", Value::Array(vec![t("1")])),
        ])
        .into(),
    ))
    .await
    .expect("join");
    let mut server = String::new();
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    let mut seen: std::collections::HashSet<String> = Default::default();
    let mut first = true;
    let mut announced = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => return,
        };
        let Some(Ok(Message::Binary(b))) = msg else {
            if matches!(msg, Some(Ok(_))) {
                continue;
            }
            return;
        };
        let v: Value = ciborium::from_reader(&b[..]).expect("CBOR");
        match field(&v, "type").and_then(Value::as_text) {
            Some("peer") => {
                server = field(&v, "senderId")
                    .and_then(Value::as_text)
                    .unwrap_or_default()
                    .to_string();
            }
            Some("sync") => {
                let data = field(&v, "data").and_then(Value::as_bytes).expect("data");
                let m = sync::Message::decode(data).expect("sync message");
                doc.receive_sync_message(&mut state, m).expect("apply");
                let now = Instant::now();
                if let Ok(Some((_, orders))) = doc.get(ROOT, "orders") {
                    let w = written.lock().expect("lock");
                    for k in doc.keys(&orders) {
                        if seen.insert(k.clone()) {
                            if let Some(at) = w.get(&k) {
                                latencies
                                    .lock()
                                    .expect("lock")
                                    .push(now.duration_since(*at));
                            }
                        }
                    }
                }
                if !announced && !seen.is_empty() {
                    announced = true;
                    let _ = synced.send(()).await;
                }
            }
            _ => {}
        }
        if !server.is_empty() {
            if let Some(m) = doc.generate_sync_message(&mut state) {
                let frame = cbor(vec![
                    ("type", t(if first { "request" } else { "sync" })),
                    ("senderId", t(&me)),
                    ("targetId", t(&server)),
                    ("documentId", t(&repo_id)),
                    ("data", Value::Bytes(m.encode())),
                ]);
                first = false;
                if ws.send(Message::Binary(frame.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let clients = env("WS_CLIENTS", 50) as usize;
    let seconds = env("WS_SECONDS", 10);
    let rate = env("WS_RATE", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::generate("acme").expect("ca");
        let pos = Node::start(node_config(tmp.path(), &ca, "pos-1", "pos"))
            .await
            .expect("pos");
        let mut kitchen_config = node_config(tmp.path(), &ca, "kitchen-1", "kitchen");
        kitchen_config.static_peers = vec![pos.local_addr()];
        let kitchen = Node::start(kitchen_config).await.expect("kitchen");
        kitchen
            .wait_connected(&"pos-1".parse().expect("peer"))
            .await;
        let day = DAY.parse().expect("doc");
        pos.store()
            .put(&day, "/orders/warm", serde_json::json!({"total": 1}), Durability::Fast)
            .expect("first order");
        let tokens = TokenBook::open(tmp.path().join("tokens")).expect("tokens");
        let web = WsServer::start(
            kitchen.store().clone(),
            WsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tokens.clone()),
        )
        .await
        .expect("ws");
        // The first order reaches the kitchen before the clients ask for the day.
        while kitchen.store().get(&day, "/orders/warm").ok().flatten().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let repo_id = repo_document_id(&"paris".parse().expect("site"), &day);
        let written: Written = Arc::default();
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let (synced_tx, mut synced) = tokio::sync::mpsc::channel(clients.max(1));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let rss_before = rss_kib();
        let now = outpost_core::Timestamp::now().as_millis() / 1000;
        let mut tasks = Vec::new();
        for n in 0..clients {
            let (token, _) = tokens
                .issue(
                    &"paris".parse().expect("site"),
                    &"kds".parse().expect("role"),
                    &format!("screen-{n}"),
                    now,
                    3600,
                )
                .expect("token");
            let url = format!("ws://{}/?token={token}", web.local_addr());
            tasks.push(tokio::spawn(client(
                n,
                url,
                repo_id.clone(),
                written.clone(),
                latencies.clone(),
                synced_tx.clone(),
                stopped.clone(),
            )));
        }
        for _ in 0..clients {
            synced.recv().await.expect("a client synced");
        }
        let rss_joined = rss_kib();
        let period = Duration::from_micros(1_000_000 / rate.max(1));
        let total = seconds * rate;
        let mut tick = tokio::time::interval(period);
        for i in 0..total {
            tick.tick().await;
            let id = format!("B-{i:05}");
            written
                .lock()
                .expect("lock")
                .insert(id.clone(), Instant::now());
            pos.store()
                .put(
                    &day,
                    &format!("/orders/{id}"),
                    serde_json::json!({"items": ["burger"], "total": 950}),
                    Durability::Fast,
                )
                .expect("order");
        }
        let expected = clients * total as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while latencies.lock().expect("lock").len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rss_end = rss_kib();
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let mut l = latencies.lock().expect("lock").clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "ws_clients: {clients} clients, {total} orders at {rate}/s: {} of {expected} deliveries; \
             latency POS write -> client p50 {:?}, p99 {:?}, max {:?}",
            l.len(),
            pct(0.50),
            pct(0.99),
            l.last().copied().unwrap_or_default()
        );
        println!(
            "ws_clients: RSS {rss_before} KiB before the clients, {rss_joined} KiB with {clients} \
             synced, {rss_end} KiB after the orders: {} KiB per client (joined), {} KiB per \
             client (end; includes each client's own replica)",
            rss_joined.saturating_sub(rss_before) / clients.max(1) as u64,
            rss_end.saturating_sub(rss_before) / clients.max(1) as u64,
        );
        web.shutdown().await;
        let _ = kitchen.shutdown().await;
        let _ = pos.shutdown().await;
    });
}
