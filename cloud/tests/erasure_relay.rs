//! Issue 27, hole 9, over real QUIC: the cloud (the real binary) erases a day; a POS linked
//! to the cloud and a kitchen linked only to the POS (real nodes on 127.0.0.1) both delete
//! it and keep a tombstone. Before, the kitchen refused the erasure list relayed by the POS
//! (a POS may not write it) and kept the erased customer data forever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_core::{DocumentId, Durability, PeerInfo};
use outpost_testbins::start_cloud_with;
use outpost_transport::{FleetCa, Node, NodeConfig};
use serde_json::json;

const STEP: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

fn doc(s: &str) -> DocumentId {
    s.parse().expect("doc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_reaches_a_kitchen_linked_only_through_the_pos_over_quic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let certs = tmp.path().join("cloud-cert");
    std::fs::create_dir_all(&certs).expect("dir");
    let cloud_cert = ca
        .issue(&PeerInfo::parse("acme", "cloud-1", "cloud").expect("id"))
        .expect("cert");
    std::fs::write(certs.join("ca.pem"), ca.cert_pem()).expect("write");
    std::fs::write(certs.join("cert.pem"), cloud_cert.cert_pem()).expect("write");
    std::fs::write(certs.join("key.pem"), cloud_cert.key_pem()).expect("write");
    let data = tmp.path().join("cloud-data");
    let (_cloud, quic, _http) = start_cloud_with(&certs, &data, &[]);

    let device = |name: &str, role: &str, peers: Vec<SocketAddr>| {
        let cert = ca
            .issue(&PeerInfo::parse("paris", name, role).expect("id"))
            .expect("cert");
        let mut config = NodeConfig::new(tmp.path().join(name), cert);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.static_peers = peers;
        config
    };
    let pos = within("pos", Node::start(device("pos-1", "pos", vec![quic])))
        .await
        .expect("pos starts");
    let kitchen = within(
        "kitchen",
        Node::start(device("kitchen-1", "kitchen", vec![pos.local_addr()])),
    )
    .await
    .expect("kitchen starts");

    let (day, keep) = (doc("orders/2026-12-01"), doc("orders/2026-12-02"));
    for i in 0..3 {
        for d in [&day, &keep] {
            pos.store()
                .put(
                    d,
                    &format!("/pos-{i}"),
                    json!({"customer": "Ada", "total": i}),
                    Durability::Fast,
                )
                .expect("write");
        }
    }
    within("the kitchen holds both days", async {
        while !(kitchen.store().has_document(&day).unwrap_or(false)
            && kitchen.store().has_document(&keep).unwrap_or(false)
            && pos
                .connected_peers()
                .iter()
                .any(|p| p.peer.as_str() == "cloud-1"))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Until the cloud holds the day, it has nothing to erase.
    within("the cloud holds the day", async {
        loop {
            let status = pos.status().await.expect("status");
            if status
                .peer(&"cloud-1".parse().expect("id"))
                .is_some_and(|p| p.they_lack() == 0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let mut erase = std::process::Command::new(outpost_testbins::cloud_bin());
    erase
        .arg("--data")
        .arg(&data)
        .args(["erase", &day.to_string(), "--site", "paris"])
        .env_remove("OUTPOST_DATA");
    let started = Instant::now();
    let out = outpost_testbins::run_with(erase, STEP);
    println!("erase: {}", out.expect_ok().trim());
    for (name, node) in [("the POS", &pos), ("the kitchen behind the POS", &kitchen)] {
        within(&format!("{name} erases the day"), async {
            while !node.store().is_erased(&day) || node.store().has_document(&day).unwrap_or(true) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        println!(
            "{name} erased the day {} ms after the erase command started",
            started.elapsed().as_millis()
        );
        assert!(
            node.store().has_document(&keep).expect("readable"),
            "{name} keeps the other day"
        );
    }
    kitchen.shutdown().await.expect("shutdown");
    pos.shutdown().await.expect("shutdown");
}
