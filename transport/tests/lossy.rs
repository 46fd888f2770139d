//! Sync converges through a UDP relay that drops, delays and reorders datagrams.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::Durability;
use outpost_transport::FleetCa;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::*;
use tokio::net::UdpSocket;

/// A UDP relay between one client and `target` that drops `loss` of the datagrams in
/// each direction and delays the others by up to `max_delay`, which reorders them.
struct LossyRelay {
    addr: SocketAddr,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    blackhole: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LossyRelay {
    async fn start(target: SocketAddr, loss: f64, max_delay: Duration, seed: u64) -> LossyRelay {
        let front = Arc::new(
            UdpSocket::bind(localhost())
                .await
                .expect("bind relay front"),
        );
        let back = Arc::new(UdpSocket::bind(localhost()).await.expect("bind relay back"));
        back.connect(target).await.expect("connect relay back");
        let addr = front.local_addr().expect("relay addr");
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let blackhole = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Returns the delay for a datagram, or None to drop it.
        let fate = {
            let rng = rng.clone();
            let dropped = dropped.clone();
            let blackhole = blackhole.clone();
            move || {
                let mut rng = rng.lock().expect("relay rng");
                if blackhole.load(std::sync::atomic::Ordering::Relaxed) || rng.random_bool(loss) {
                    dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    None
                } else {
                    Some(Duration::from_micros(
                        rng.random_range(0..=max_delay.as_micros() as u64),
                    ))
                }
            }
        };
        let upstream = {
            let (front, back, client, fate) =
                (front.clone(), back.clone(), client.clone(), fate.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().expect("relay client") = Some(from);
                    let Some(delay) = fate() else { continue };
                    let (back, data) = (back.clone(), buf[..n].to_vec());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = back.send(&data).await;
                    });
                }
            })
        };
        let downstream = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = back.recv(&mut buf).await {
                let Some(to) = *client.lock().expect("relay client") else {
                    continue;
                };
                let Some(delay) = fate() else { continue };
                let (front, data) = (front.clone(), buf[..n].to_vec());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = front.send_to(&data, to).await;
                });
            }
        });
        LossyRelay {
            addr,
            dropped,
            blackhole,
            tasks: vec![upstream, downstream],
        }
    }
}

impl LossyRelay {
    /// Drops every datagram while `on`: the link dies without any close.
    fn set_blackhole(&self, on: bool) {
        self.blackhole
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_converges_through_a_lossy_reordering_relay() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let pos = start(test_config(&dir.path().join("pos"), &pos_cert, vec![])).await;
    // 5% loss each way, up to 20 ms of delay: datagrams arrive out of order.
    let relay = LossyRelay::start(pos.local_addr(), 0.05, Duration::from_millis(20), 0x5eed).await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![relay.addr],
    ))
    .await;
    wait_connected(&kiosk, "pos-1").await;

    let (orders, stock, menu) = (doc("orders/2026-11-24"), doc("stock"), doc("menu"));
    // Counters are created once, then incremented concurrently (two concurrent creations
    // would be two conflicting values, one of which wins).
    pos.store()
        .increment(&stock, "/burger", 0, Durability::Fast)
        .expect("create counter");
    wait_value(
        "counter at kiosk",
        kiosk.store(),
        &stock,
        "/burger",
        &json!(0),
    )
    .await;

    // A large menu, so that catch-up spans many packets and engine fragments.
    let big = "x".repeat(300 * 1024);
    pos.store()
        .put(&menu, "/notes", json!(big), Durability::Fast)
        .expect("big menu");
    for i in 0..60 {
        let order = format!("/k-{i}/status");
        kiosk
            .store()
            .put(&orders, &order, json!("new"), Durability::Fast)
            .expect("kiosk order");
        pos.store()
            .increment(&stock, "/burger", 1, Durability::Fast)
            .expect("pos restock");
        if i % 3 == 0 {
            kiosk
                .store()
                .increment(&stock, "/burger", -1, Durability::Fast)
                .expect("kiosk sale");
            pos.store()
                .put(
                    &orders,
                    &format!("/p-{i}/status"),
                    json!("paid"),
                    Durability::Fast,
                )
                .expect("pos order");
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let both = [pos.store(), kiosk.store()];
    wait_value(
        "all sales counted at pos",
        pos.store(),
        &stock,
        "/burger",
        &json!(40),
    )
    .await;
    wait_value(
        "all sales counted at kiosk",
        kiosk.store(),
        &stock,
        "/burger",
        &json!(40),
    )
    .await;
    wait_value(
        "last kiosk order at pos",
        pos.store(),
        &orders,
        "/k-59/status",
        &json!("new"),
    )
    .await;
    wait_value(
        "last pos order at kiosk",
        kiosk.store(),
        &orders,
        "/p-57/status",
        &json!("paid"),
    )
    .await;
    wait_value(
        "big menu at kiosk",
        kiosk.store(),
        &menu,
        "/notes",
        &json!(big),
    )
    .await;
    wait_converged("orders through relay", &both, &orders).await;
    wait_converged("stock through relay", &both, &stock).await;
    wait_converged("menu through relay", &both, &menu).await;

    let dropped = relay.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "the relay should have dropped datagrams");

    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("shutdown");
    within("pos shutdown", pos.shutdown())
        .await
        .expect("shutdown");
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_link_is_noticed_and_reestablished() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let pos = start(test_config(&dir.path().join("pos"), &pos_cert, vec![])).await;
    let relay = LossyRelay::start(pos.local_addr(), 0.0, Duration::ZERO, 1).await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![relay.addr],
    ))
    .await;
    wait_connected(&kiosk, "pos-1").await;
    wait_connected(&pos, "kiosk-1").await;

    // The network goes silent: no close reaches either side; the idle timeout (2 s in
    // the tests, 5 s by default) notices.
    relay.set_blackhole(true);
    let started = std::time::Instant::now();
    within("kiosk notices", kiosk.wait_disconnected(&peer("pos-1"))).await;
    within("pos notices", pos.wait_disconnected(&peer("kiosk-1"))).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        started.elapsed()
    );

    let orders = doc("orders/2026-11-24");
    kiosk
        .store()
        .put(&orders, "/o-1/status", json!("new"), Durability::Durable)
        .expect("offline order");
    relay.set_blackhole(false);
    wait_connected(&kiosk, "pos-1").await;
    wait_value(
        "offline order after the link is back",
        pos.store(),
        &orders,
        "/o-1/status",
        &json!("new"),
    )
    .await;

    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("shutdown");
    within("pos shutdown", pos.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_converges_under_heavy_loss() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("acme").expect("ca");
    let pos_cert = issue(&ca, "lyon", "pos-1", "pos");
    let kiosk_cert = issue(&ca, "lyon", "kiosk-1", "kiosk");
    let pos = start(test_config(&dir.path().join("pos"), &pos_cert, vec![])).await;
    let relay = LossyRelay::start(pos.local_addr(), 0.15, Duration::from_millis(40), 0xbad).await;
    let kiosk = start(test_config(
        &dir.path().join("kiosk"),
        &kiosk_cert,
        vec![relay.addr],
    ))
    .await;
    let orders = doc("orders/2026-11-24");
    for i in 0..30 {
        kiosk
            .store()
            .put(
                &orders,
                &format!("/k-{i}/status"),
                json!("new"),
                Durability::Fast,
            )
            .expect("kiosk order");
        pos.store()
            .put(
                &orders,
                &format!("/p-{i}/status"),
                json!("new"),
                Durability::Fast,
            )
            .expect("pos order");
    }
    wait_value(
        "kiosk orders at pos",
        pos.store(),
        &orders,
        "/k-29/status",
        &json!("new"),
    )
    .await;
    wait_value(
        "pos orders at kiosk",
        kiosk.store(),
        &orders,
        "/p-29/status",
        &json!("new"),
    )
    .await;
    wait_converged(
        "orders under heavy loss",
        &[pos.store(), kiosk.store()],
        &orders,
    )
    .await;
    within("kiosk shutdown", kiosk.shutdown())
        .await
        .expect("shutdown");
    within("pos shutdown", pos.shutdown())
        .await
        .expect("shutdown");
}
