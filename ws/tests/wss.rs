//! wss: the WebSocket port with TLS and the serving device's certificate. A client that
//! trusts the fleet CA (and reaches the device by the name in its certificate, `outpost`)
//! joins and syncs; a client that trusts another CA, and a plain `ws` client, get nowhere.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use outpost_core::{Durability, PeerInfo};
use outpost_transport::{FleetCa, Node, NodeConfig};
use outpost_ws::{TokenBook, WsConfig, WsServer};
use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

fn trusting(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("a CA certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// `wss://outpost:PORT/?token=...` over a TLS connection to `addr` verified with `tls`.
async fn wss(
    tls: &TlsConnector,
    addr: SocketAddr,
    token: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, String>
{
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("outpost").expect("a server name");
    let stream = within("TLS handshake", tls.connect(name, tcp))
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("wss://outpost:{}/?token={token}", addr.port());
    let (ws, _) = within("upgrade", tokio_tungstenite::client_async(url, stream))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_fleet_ca_joins_over_wss_and_others_do_not() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let info = PeerInfo::parse("lyon", "pos-1", "pos").expect("identity");
    let cert = ca.issue(&info).expect("certificate");
    let mut config = NodeConfig::new(tmp.path().join("pos-1"), cert.clone());
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.health_period = None;
    let node = within("node starts", Node::start(config))
        .await
        .expect("node");
    let day = doc("orders/2026-12-07");
    node.store()
        .put(
            &day,
            "/orders/P1-001",
            serde_json::json!({"total": 950}),
            Durability::Durable,
        )
        .expect("order");

    let tokens = TokenBook::open(tmp.path().join("tokens")).expect("tokens");
    let chain = vec![cert.cert_der().clone(), cert.ca_der().clone()];
    let web = WsServer::start(
        node.store().clone(),
        WsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tokens.clone())
            .with_tls(chain, cert.private_key())
            .expect("TLS config"),
    )
    .await
    .expect("wss server");
    assert_eq!(web.scheme(), "wss");
    let addr = web.local_addr();
    let now = outpost_core::Timestamp::now().as_millis() / 1000;
    let token = tokens
        .issue(
            &"lyon".parse().expect("site"),
            &"kds".parse().expect("role"),
            "kitchen-screen-1",
            now,
            3600,
        )
        .expect("token")
        .0;

    // Trusting the fleet CA: the handshake, the join, the day's orders.
    let started = Instant::now();
    let mut ws = wss(&trusting(cert.ca_der()), addr, &token)
        .await
        .expect("a client trusting the fleet CA connects");
    println!("wss connect (TCP + TLS + upgrade): {:?}", started.elapsed());
    let join = cbor(vec![
        ("type", t("join")),
        ("senderId", t("screen-1")),
        (
            "supportedProtocolVersions",
            ciborium::Value::Array(vec![t("1")]),
        ),
    ]);
    ws.send(Message::Binary(join.into())).await.expect("join");
    let reply = loop {
        match within("peer", ws.next()).await {
            Some(Ok(Message::Binary(b))) => {
                break ciborium::from_reader::<ciborium::Value, _>(&b[..]).expect("CBOR")
            }
            Some(Ok(_)) => continue,
            other => panic!("no peer message: {other:?}"),
        }
    };
    assert_eq!(text(&reply, "type").as_deref(), Some("peer"), "{reply:?}");
    let repo_id = outpost_ws::repo_document_id(&"lyon".parse().expect("site"), &day);
    let mut replica = automerge::Automerge::new();
    let mut state = automerge::sync::State::new();
    use automerge::sync::SyncDoc;
    use automerge::ReadDoc;
    let first = replica
        .generate_sync_message(&mut state)
        .expect("a first sync message");
    let request = cbor(vec![
        ("type", t("request")),
        ("senderId", t("screen-1")),
        ("targetId", t(&text(&reply, "senderId").expect("server id"))),
        ("documentId", t(&repo_id)),
        ("data", ciborium::Value::Bytes(first.encode())),
    ]);
    ws.send(Message::Binary(request.into()))
        .await
        .expect("request");
    within("the day's orders over wss", async {
        loop {
            let Some(Ok(Message::Binary(b))) = ws.next().await else {
                continue;
            };
            let m: ciborium::Value = ciborium::from_reader(&b[..]).expect("CBOR");
            if text(&m, "type").as_deref() != Some("sync") {
                continue;
            }
            let msg = automerge::sync::Message::decode(&bytes(&m, "data").expect("data"))
                .expect("a sync message");
            replica
                .receive_sync_message(&mut state, msg)
                .expect("apply");
            let orders = replica
                .get(automerge::ROOT, "orders")
                .expect("read")
                .map(|(_, id)| id);
            if let Some(orders) = orders {
                if replica.get(&orders, "P1-001").expect("read").is_some() {
                    return;
                }
            }
        }
    })
    .await;
    println!(
        "the day's orders reached the wss client in {:?}",
        started.elapsed()
    );

    // Trusting another CA: the handshake fails, nothing is served.
    let other = FleetCa::generate("not-acme").expect("ca");
    let refused = wss(&trusting(other.cert_der()), addr, &token).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("certificate")),
        "{:?}",
        refused.err()
    );
    // Plain ws on the wss port: no WebSocket.
    let plain = tokio_tungstenite::connect_async(format!("ws://{addr}/?token={token}")).await;
    assert!(plain.is_err(), "plain ws got through a wss port");
    assert_eq!(
        web.stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    web.shutdown().await;
    let _ = node.shutdown().await;
}
