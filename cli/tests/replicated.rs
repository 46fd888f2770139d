//! `outpost put --replicated`: through a running node, acknowledged by a peer of the site or
//! "stored on this device only" after the timeout (exit status 0 both ways); without a node,
//! refused before anything is written.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_testbins::*;
use serde_json::json;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

const DAY: &str = "orders/2026-12-07";

#[test]
fn put_replicated_says_who_holds_the_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let pos_cert = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
    let kiosk_cert = issue(&ca, tmp.path(), "paris", "kiosk-1", "kiosk");
    let pos = tmp.path().join("pos1");
    let kiosk = tmp.path().join("kiosk1");

    // No node on the directory: nothing to wait with, so nothing is written.
    on(
        &pos,
        &[
            "--cert-dir",
            p(&pos_cert),
            "put",
            "--replicated",
            DAY,
            "/orders/o-0",
            r#"{"total": 100}"#,
        ],
    )
    .expect_err("start `outpost serve`");
    on(
        &pos,
        &["--cert-dir", p(&pos_cert), "get", DAY, "/orders/o-0"],
    )
    .expect_err("");

    let (mut pos_node, pos_addr) = serve("pos-1", &pos, &pos_cert, 0, &[]);
    let (mut kiosk_node, _) = serve("kiosk-1", &kiosk, &kiosk_cert, 0, &[pos_addr]);
    // Acknowledged by the kiosk once it is linked (it may still be connecting at first).
    let out = eventually(
        "a write acknowledged by the kiosk",
        Duration::from_secs(30),
        || {
            let out = on(
                &pos,
                &[
                    "put",
                    "--replicated",
                    DAY,
                    "/orders/o-1",
                    r#"{"total": 950}"#,
                ],
            );
            let text = out.expect_ok().to_string();
            text.contains("kiosk-1").then_some(text)
        },
    );
    println!("linked: {}", out.trim());
    assert!(
        out.contains("replicated: stored on this device and on kiosk-1"),
        "{out}"
    );
    assert_eq!(
        on(&kiosk, &["get", DAY, "/orders/o-1/total"]).json(),
        json!(950),
        "the kiosk acknowledged the order, so it holds it"
    );

    // The kiosk is gone: stored on this device only, after the node's timeout, exit 0.
    kiosk_node.terminate();
    let started = Instant::now();
    let out = on(
        &pos,
        &[
            "put",
            "--replicated",
            DAY,
            "/orders/o-2",
            r#"{"total": 1250}"#,
        ],
    );
    let waited = started.elapsed();
    let text = out.expect_ok();
    println!("alone: {} after {waited:?}", text.trim());
    assert!(text.contains("stored on this device only"), "{text}");
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert_eq!(
        on(&pos, &["get", DAY, "/orders/o-2/total"]).json(),
        json!(1250)
    );
    pos_node.terminate();
}
