//! Interop with samod, the Rust automerge-repo (crates.io `samod`, a dev-dependency: it uses
//! the workspace's automerge 0.12), as a client of a kitchen device serving web clients (what
//! `outpost serve --ws-listen` runs), with a POS beside it over QUIC. An order the POS writes
//! reaches the samod client; the client's kitchen step reaches the POS; the server restarts,
//! the client bumps an order while it is away, samod's dialer reconnects with its backoff and
//! the exchange resumes both ways. samod dials through a small [`samod::Dialer`] over the
//! workspace's tokio-tungstenite (samod's own `tungstenite` feature would pull native-tls).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ROOT};
use futures_util::future::{ready, BoxFuture};
use futures_util::{SinkExt, StreamExt};
use outpost_core::Durability;
use outpost_ws::{WsConfig, WsLimits, WsServer};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const DAY: &str = "orders/2026-12-07";

/// Dials `url` (a `ws://` URL with the token) with tokio-tungstenite, each time samod needs
/// a connection (the first, and every reconnection).
struct WsDialer {
    url: samod::Url,
}

impl samod::Dialer for WsDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> samod::Url {
        self.url.clone()
    }

    fn connect(
        &self,
    ) -> BoxFuture<'static, Result<samod::Transport, samod::DialError<Self::Error>>> {
        let url = self.url.to_string();
        Box::pin(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(samod::DialError::transient)?;
            let (sink, stream) = ws.split();
            let stream = stream.filter_map(|m| {
                ready(match m {
                    Ok(Message::Binary(b)) => Some(Ok(b.to_vec())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
            });
            let sink = sink.with(|b: Vec<u8>| {
                ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(
                    Message::Binary(b.into()),
                ))
            });
            Ok(samod::Transport::new(stream, sink))
        })
    }
}

/// The value at `/orders/<order>/<key>` of the client's copy, as a string if it is one.
fn read(handle: &samod::DocHandle, order: &str, key: &str) -> Option<String> {
    handle.with_document(|d| {
        let (_, orders) = d.get(ROOT, "orders").ok()??;
        let (_, o) = d.get(&orders, order).ok()??;
        match key.split_once('/') {
            None => d.get(&o, key).ok()?.map(|(v, _)| v.to_string()),
            Some((a, b)) => {
                let (_, inner) = d.get(&o, a).ok()??;
                d.get(&inner, b).ok()?.map(|(v, _)| v.to_string())
            }
        }
    })
}

async fn client_sees(handle: &samod::DocHandle, what: &str, order: &str, key: &str) -> String {
    within(what, async {
        loop {
            if let Some(v) = read(handle, order, key) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The client sets `/orders/<order>/kitchen` to `{state}`.
fn bump(handle: &samod::DocHandle, order: &str, state: &str) {
    handle.with_document(|d| {
        let mut tx = d.transaction();
        let (_, orders) = tx.get(ROOT, "orders").expect("read").expect("/orders");
        let (_, o) = tx.get(&orders, order).expect("read").expect("the order");
        let k = tx
            .put_object(&o, "kitchen", ObjType::Map)
            .expect("kitchen map");
        tx.put(&k, "state", state).expect("state");
        tx.commit();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samod_syncs_both_ways_and_resumes_after_a_server_restart() {
    init_tracing();
    let site = Site::start(WsLimits::default()).await;
    let (pos, kitchen) = (site.pos.store().clone(), site.kitchen.store().clone());
    let day = doc(DAY);
    pos.put(
        &day,
        "/orders/P1-001",
        json!({"items": ["burger"], "total": 950}),
        Durability::Durable,
    )
    .expect("order");
    wait_value(
        "order at the kitchen",
        &kitchen,
        &day,
        "/orders/P1-001/total",
        &json!(950),
    )
    .await;

    let config = WsConfig::new("127.0.0.1:0".parse().expect("addr"), site.tokens.clone());
    let web = WsServer::start(kitchen.clone(), config.clone())
        .await
        .expect("ws");
    let addr = web.local_addr();
    let url = format!("ws://{addr}/?token={}", site.token("kds", "samod-screen"));

    let repo = samod::Repo::build_tokio().load().await;
    let backoff = samod::BackoffConfig {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(300),
        max_retries: None,
    };
    let dialer = repo
        .dial(
            backoff,
            Arc::new(WsDialer {
                url: samod::Url::parse(&url).expect("url"),
            }),
        )
        .expect("dial");
    within("samod connects", dialer.established())
        .await
        .expect("the handshake (join/peer) succeeds");
    let id: samod::DocumentId = site.repo_id(DAY).parse().expect("document id");
    let handle = within("samod finds the orders", repo.find(id))
        .await
        .expect("repo running")
        .expect("the device has the document");
    assert_eq!(
        client_sees(&handle, "P1-001 at samod", "P1-001", "total").await,
        "950"
    );

    let started = Instant::now();
    bump(&handle, "P1-001", "in_progress");
    wait_value(
        "samod's bump at the POS",
        &pos,
        &day,
        "/orders/P1-001/kitchen/state",
        &json!("in_progress"),
    )
    .await;
    println!(
        "samod bump -> kitchen -> POS over QUIC: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    pos.put(
        &day,
        "/orders/P1-002",
        json!({"total": 400}),
        Durability::Durable,
    )
    .expect("order 2");
    client_sees(&handle, "live: P1-002 at samod", "P1-002", "total").await;
    println!("POS write -> samod (live): {:?}", started.elapsed());

    // The server goes away: samod bumps P1-002 offline, the POS takes P1-003.
    web.shutdown().await;
    within("samod sees the disconnect", async {
        while dialer.is_connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    bump(&handle, "P1-002", "ready");
    pos.put(
        &day,
        "/orders/P1-003",
        json!({"total": 1200}),
        Durability::Durable,
    )
    .expect("order 3");
    wait_value(
        "P1-003 at the kitchen",
        &kitchen,
        &day,
        "/orders/P1-003/total",
        &json!(1200),
    )
    .await;
    let restarted = Instant::now();
    let mut config = config;
    config.listen = addr;
    let web = WsServer::start(kitchen.clone(), config)
        .await
        .expect("ws again");
    client_sees(&handle, "samod resumes: P1-003", "P1-003", "total").await;
    wait_value(
        "the offline bump at the POS",
        &pos,
        &day,
        "/orders/P1-002/kitchen/state",
        &json!("ready"),
    )
    .await;
    println!(
        "server restart -> samod resumed both ways: {:?}",
        restarted.elapsed()
    );
    repo.stop().await;
    web.shutdown().await;
    site.stop().await;
}
