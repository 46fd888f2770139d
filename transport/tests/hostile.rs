//! Attacks by an authenticated but hostile device on a node, over real QUIC with mutual TLS.
//! Each test prints the figure its limit bounds.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_core::Durability;
use outpost_transport::{self as tls, write_frame, DEFAULT_MAX_FRAME_SIZE};
use outpost_transport::{FleetCa, SessionConfig, TransportTuning};
use serde_json::json;
use support::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A POS under attack, in a directory of its own, and the fleet CA.
async fn target_pos() -> (tempfile::TempDir, FleetCa, outpost_transport::Node) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = FleetCa::generate("acme").unwrap();
    let pos = start(test_config(
        &dir.path().join("pos"),
        &issue(&ca, "lyon", "pos-1", "pos"),
        vec![],
    ))
    .await;
    (dir, ca, pos)
}

/// A hand-made connection of an authenticated kiosk to `pos`, speaking raw QUIC.
async fn attacker(
    ca: &FleetCa,
    pos: &outpost_transport::Node,
) -> (quinn::Endpoint, quinn::Connection) {
    let cert = issue(ca, "lyon", "kiosk-9", "kiosk");
    let endpoint = endpoint(&cert, &filter_for(&cert));
    let conn = within(
        "attacker connects",
        endpoint
            .connect(pos.local_addr(), tls::SERVER_NAME)
            .unwrap(),
    )
    .await
    .unwrap();
    (endpoint, conn)
}

/// A kiosk opens hundreds of document streams and leaves a largest frame half sent on each:
/// the node holds at most its per-connection budget of frame bytes (8 MiB) plus QUIC's
/// receive window (8 MiB), the kiosk's writes stall, and the node keeps syncing others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_frames_on_many_streams_are_bounded() {
    let (dir, ca, pos) = target_pos().await;
    let honest = start(test_config(
        &dir.path().join("kitchen"),
        &issue(&ca, "lyon", "kitchen-1", "kitchen"),
        vec![pos.local_addr()],
    ))
    .await;
    wait_connected(&honest, "pos-1").await;

    let (_endpoint, conn) = attacker(&ca, &pos).await;
    let before = rss_kib();
    const STREAMS: usize = 600;
    let frame = DEFAULT_MAX_FRAME_SIZE;
    let attempted = (STREAMS * (frame - 1)) as u64;
    let written = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let conn = conn.clone();
        let written = written.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut send) = conn.open_uni().await else {
                return;
            };
            let header = format!("orders/d{i:04}");
            if write_frame(&mut send, header.as_bytes(), 1 << 20)
                .await
                .is_err()
            {
                return;
            }
            // A largest frame, announced and never completed.
            if send.write_all(&(frame as u32).to_be_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![7u8; 64 * 1024];
            let mut left = frame - 1;
            while left > 0 {
                let n = left.min(chunk.len());
                if send.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                written.fetch_add(n as u64, Ordering::Relaxed);
                left -= n;
            }
            std::future::pending::<()>().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The node still syncs with an honest peer meanwhile.
    let orders = "orders/2026-11-24".parse().unwrap();
    honest
        .store()
        .put(&orders, "/o-1/status", json!("ready"), Durability::Fast)
        .unwrap();
    wait_value(
        "order at pos during the attack",
        pos.store(),
        &orders,
        "/o-1/status",
        &json!("ready"),
    )
    .await;
    let accepted = written.load(Ordering::Relaxed);
    let growth = rss_kib().saturating_sub(before);
    println!(
        "half-sent frames: attacker tried {} MiB on {STREAMS} streams, the node took {:.1} MiB \
         (budget {} MiB + receive window {} MiB); process RSS grew {} MiB",
        attempted >> 20,
        accepted as f64 / (1 << 20) as f64,
        SessionConfig::default().max_buffered_bytes >> 20,
        TransportTuning::default().connection_receive_window >> 20,
        growth >> 10
    );
    assert!(
        accepted <= 24 << 20,
        "the node accepted {accepted} bytes of unfinished frames"
    );
    for t in tasks {
        t.abort();
    }
    conn.close(0u32.into(), b"done");
    within("shutdown", honest.shutdown()).await.unwrap();
    within("shutdown", pos.shutdown()).await.unwrap();
}

/// A frame announcing more than the engine's largest message closes that connection before
/// anything is allocated; the limit is the engine's 1 MiB, not 16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_capped_at_the_engine_message_limit() {
    let (_dir, ca, pos) = target_pos().await;
    let (_endpoint, conn) = attacker(&ca, &pos).await;
    let mut send = within("open", conn.open_uni()).await.unwrap();
    write_frame(&mut send, b"menu", 1 << 20).await.unwrap();
    send.write_all(&((DEFAULT_MAX_FRAME_SIZE + 1) as u32).to_be_bytes())
        .await
        .unwrap();
    let reason = within("closed", conn.closed()).await;
    println!(
        "frame cap: {DEFAULT_MAX_FRAME_SIZE} bytes; an announced {} bytes closed the connection: {reason}",
        DEFAULT_MAX_FRAME_SIZE + 1
    );
    assert_eq!(
        <outpost_core::CloseCode as outpost_transport::CloseCodeExt>::of_connection_error(&reason),
        Some(outpost_core::CloseCode::FrameTooLarge)
    );
    within("shutdown", pos.shutdown()).await.unwrap();
}

/// A device, like the cloud, drops documents it has not used for a while from memory: a
/// kiosk that received many partitions does not keep them all loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_unload_idle_documents() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = FleetCa::generate("acme").unwrap();
    let mut config = test_config(
        &dir.path().join("pos"),
        &issue(&ca, "lyon", "pos-1", "pos"),
        vec![],
    );
    config.evict_idle = Some(Duration::from_millis(200));
    let pos = start(config).await;
    for i in 0..40 {
        let d = format!("orders/d{i:02}").parse().unwrap();
        pos.store()
            .put(&d, "/o", json!(i), Durability::Fast)
            .unwrap();
    }
    let loaded = pos.store().loaded_documents();
    within("idle documents unloaded", async {
        while pos.store().loaded_documents() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    println!("device eviction: {loaded} documents loaded after writing, 0 after 200 ms idle");
    assert_eq!(loaded, 40);
    let again: outpost_core::DocumentId = "orders/d07".parse().unwrap();
    assert_eq!(pos.store().get(&again, "/o").unwrap(), Some(json!(7)));
    within("shutdown", pos.shutdown()).await.unwrap();
}
