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

/// A samod repo dialing `url`, redialing quickly (50 ms, at most 300 ms apart) when the
/// server goes away.
async fn samod_dialing(url: &str) -> (samod::Repo, samod::DialerHandle<std::convert::Infallible>) {
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
                url: samod::Url::parse(url).expect("url"),
            }),
        )
        .expect("dial");
    (repo, dialer)
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

    let (repo, dialer) = samod_dialing(&url).await;
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

/// The same client against the cloud binary (`outpost-cloud --ws-listen`, plain `ws` here:
/// samod's dialer above speaks `ws`), with the site's POS (the `outpost` binary) over QUIC:
/// both ways, and resuming after the cloud restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samod_syncs_a_site_through_the_cloud_and_resumes_after_a_restart() {
    use outpost_testbins as bins;
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let ca = bins::make_ca(&root);
    let cloud_cert = bins::issue(&ca, &root, "acme", "cloud-1", "cloud");
    let pos_cert = bins::issue(&ca, &root, "paris", "pos-1", "pos");
    let data = root.join("cloud-data");
    let issued = bins::cloud_web_token(&data, "paris", "kds", "samod-1");
    let token = issued.expect_ok().trim().to_string();
    let (quic, http, ws) = (
        bins::free_udp_port(),
        bins::free_tcp_port(),
        bins::free_tcp_port(),
    );
    let start_cloud = || {
        let cloud = bins::Proc::spawn(
            "cloud",
            bins::cloud_command(
                &cloud_cert,
                &data,
                &format!("127.0.0.1:{quic}"),
                &format!("127.0.0.1:{http}"),
                &["--ws-listen", &format!("127.0.0.1:{ws}"), "--ws-plain"],
            ),
        );
        cloud.wait_line("outpost-cloud started", STEP);
        cloud
    };
    let mut cloud = start_cloud();
    let quic_addr: std::net::SocketAddr = format!("127.0.0.1:{quic}").parse().expect("addr");
    let pos_d = root.join("pos");
    let (_pos, _) = bins::serve("paris/pos-1", &pos_d, &pos_cert, 0, &[quic_addr]);
    let pos_value = |path: &str| {
        let out = bins::on(&pos_d, &["get", DAY, path]);
        out.ok().then(|| out.json())
    };
    bins::on(
        &pos_d,
        &[
            "put",
            DAY,
            "/orders/P1-001",
            r#"{"items": ["burger"], "total": 950}"#,
        ],
    )
    .expect_ok();
    // The cloud holds the day before the client asks for it.
    tokio::task::block_in_place(|| {
        bins::eventually("the day at the cloud", STEP, || {
            let (status, body) = bins::http_get(
                format!("127.0.0.1:{ws}").parse().expect("addr"),
                &format!("/sites/paris/v1/documents?name={DAY}&token={token}"),
            );
            (status == 200 && body.contains("\"exists\":true")).then_some(())
        })
    });

    let url = format!("ws://127.0.0.1:{ws}/sites/paris?token={token}");
    let (repo, dialer) = samod_dialing(&url).await;
    within("samod connects to the cloud", dialer.established())
        .await
        .expect("the handshake (join/peer) succeeds");
    let id: samod::DocumentId =
        outpost_ws::repo_document_id(&"paris".parse().expect("site"), &DAY.parse().expect("doc"))
            .parse()
            .expect("document id");
    let handle = within("samod finds the orders at the cloud", repo.find(id))
        .await
        .expect("repo running")
        .expect("the cloud has the document");
    assert_eq!(
        client_sees(&handle, "P1-001 at samod", "P1-001", "total").await,
        "950"
    );

    let started = Instant::now();
    bump(&handle, "P1-001", "in_progress");
    tokio::task::block_in_place(|| {
        bins::eventually("samod's bump at the POS", STEP, || {
            (pos_value("/orders/P1-001/kitchen/state") == Some(json!("in_progress"))).then_some(())
        })
    });
    println!("samod bump -> cloud -> POS: {:?}", started.elapsed());
    let started = Instant::now();
    bins::on(&pos_d, &["put", DAY, "/orders/P1-002", r#"{"total": 400}"#]).expect_ok();
    client_sees(&handle, "live: P1-002 at samod", "P1-002", "total").await;
    println!("POS write -> cloud -> samod: {:?}", started.elapsed());

    // The cloud restarts; samod bumps P1-002 while it is away, the POS takes P1-003.
    cloud.terminate();
    within("samod sees the disconnect", async {
        while dialer.is_connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    bump(&handle, "P1-002", "ready");
    bins::on(
        &pos_d,
        &["put", DAY, "/orders/P1-003", r#"{"total": 1200}"#],
    )
    .expect_ok();
    let restarted = Instant::now();
    let mut cloud = tokio::task::block_in_place(start_cloud);
    client_sees(&handle, "samod resumes: P1-003", "P1-003", "total").await;
    tokio::task::block_in_place(|| {
        bins::eventually("the offline bump at the POS", STEP, || {
            (pos_value("/orders/P1-002/kitchen/state") == Some(json!("ready"))).then_some(())
        })
    });
    println!(
        "cloud restart -> samod resumed both ways: {:?}",
        restarted.elapsed()
    );
    repo.stop().await;
    cloud.terminate();
}
