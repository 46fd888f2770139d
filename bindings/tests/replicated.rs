//! `putReplicated` / `transactReplicated` through the FFI layer: acknowledged by a peer,
//! "stored on this device only" without one, refused without a node.

use std::time::{Duration, Instant};

use outpost_ffi::{FleetCa, Outpost, OutpostError, TxOp, WriteAck};

mod common;
use common::config;

const DAY: &str = "orders/2026-12-07";

#[test]
fn replicated_writes_say_who_holds_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = FleetCa::generate("test".into()).expect("ca");
    let mut pos_config = config(dir.path(), &ca, "pos-1", "pos");
    pos_config.replicated_timeout_ms = 300;
    let pos = Outpost::open_blocking(pos_config).expect("open the POS");

    // Alone: stored on this device only, after the timeout, not an error.
    let started = Instant::now();
    let ack = pos
        .put_replicated_blocking(DAY.into(), "/orders/o-1".into(), r#"{"total": 950}"#.into())
        .expect("no peer is not an error");
    let waited = started.elapsed();
    println!("alone: {ack:?} after {waited:?}");
    assert_eq!(ack, WriteAck::ThisDevice);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert_eq!(
        pos.get_blocking(DAY.into(), "/orders/o-1/total".into())
            .expect("read"),
        Some("950".into())
    );

    // With a kiosk linked: acknowledged by it, which holds the order when the call returns.
    let kiosk = Outpost::open_blocking(config(dir.path(), &ca, "kiosk-1", "kiosk")).expect("open");
    assert!(kiosk
        .add_peer(pos.local_address().expect("listening"))
        .expect("add"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert!(rt
        .block_on(kiosk.wait_for_peer("pos-1".into(), 10_000))
        .expect("wait"));
    let ack = pos
        .transact_replicated_blocking(
            DAY.into(),
            vec![TxOp::Put {
                path: "/orders/o-2".into(),
                json: r#"{"total": 1250, "status": "new"}"#.into(),
            }],
        )
        .expect("write");
    println!("linked: {ack:?}");
    assert_eq!(
        ack,
        WriteAck::Site {
            peer: "kiosk-1".into()
        }
    );
    assert_eq!(
        kiosk
            .get_blocking(DAY.into(), "/orders/o-2/total".into())
            .expect("read"),
        Some("1250".into()),
        "the kiosk acknowledged the order, so it holds it"
    );
    kiosk.shutdown_blocking().expect("shutdown");
    pos.shutdown_blocking().expect("shutdown");

    // A store without a node cannot wait for peers: refused, nothing written.
    let local = Outpost::open_local(dir.path().join("local").display().to_string()).expect("open");
    match local.put_replicated_blocking(DAY.into(), "/orders/o-3".into(), "1".into()) {
        Err(OutpostError::InvalidConfig { reason: m, .. }) => {
            assert!(m.contains("openLocal"), "{m}")
        }
        other => panic!("openLocal cannot wait for peers: {other:?}"),
    }
    let read = local.get_blocking(DAY.into(), "/orders/o-3".into());
    assert!(
        matches!(read, Ok(None) | Err(OutpostError::UnknownDocument { .. })),
        "nothing was written: {read:?}"
    );
    local.shutdown_blocking().expect("shutdown");
}
