//! `outpost backup` and `outpost restore` with the real binary: two POS nodes over real QUIC
//! on loopback, real sled on disk.

use std::path::Path;
use std::time::Duration;

use outpost_testbins::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

const DAY: &str = "orders/2026-12-01";

/// The value of `/<key>` in today's orders on the node or store of `dir`, if any.
fn order(dir: &Path, key: &str) -> Option<String> {
    let out = on(dir, &["get", DAY, &format!("/{key}")]);
    out.ok().then(|| out.stdout.trim().to_string())
}

/// A POS is backed up while it serves, writes on (its peer receives those writes), is wiped
/// and restored from the old backup, and serves again: every order written after the backup
/// comes back from the peer, nothing is refused, and its new writes reach the peer.
#[test]
fn a_pos_restored_from_an_old_backup_catches_up_and_writes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let pos1_cert = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
    let pos2_cert = issue(&ca, tmp.path(), "paris", "pos-2", "pos");
    let (d1, d2) = (tmp.path().join("pos-1"), tmp.path().join("pos-2"));
    let backup = tmp.path().join("pos-1.backup");
    let wait = Duration::from_secs(60);

    let (mut pos2, addr2) = serve("pos-2", &d2, &pos2_cert, 0, &[]);
    let (mut pos1, _) = serve("pos-1", &d1, &pos1_cert, 0, &[addr2]);
    for i in 0..10 {
        on(&d1, &["put", DAY, &format!("/A-{i}"), r#"{"qty": 1}"#]).expect_ok();
    }
    eventually("pos-2 has the first orders", wait, || order(&d2, "A-9"));

    // The backup goes through the running node's control socket.
    let out = on(&d1, &["backup", "--out", p(&backup)]);
    println!("backup: {}", out.expect_ok().trim());
    assert!(
        out.stdout.contains("backed up 1 document"),
        "{}",
        out.stdout
    );
    let size = std::fs::metadata(&backup).expect("the backup exists").len();
    println!("backup file: {size} bytes");

    for i in 0..10 {
        on(&d1, &["put", DAY, &format!("/B-{i}"), r#"{"qty": 2}"#]).expect_ok();
    }
    eventually(
        "pos-2 has the orders written after the backup",
        wait,
        || order(&d2, "B-9"),
    );

    // The disk of pos-1 is lost.
    pos1.terminate();
    std::fs::remove_dir_all(&d1).expect("wipe pos-1");
    let out = on(&d1, &["restore", "--from", p(&backup)]);
    println!("restore: {}", out.expect_ok().trim());
    assert!(
        out.stdout.contains("as paris/pos-1 (pos)"),
        "{}",
        out.stdout
    );
    on(&d1, &["restore", "--from", p(&backup)]).expect_err("not empty");
    assert_eq!(
        order(&d1, "A-9").as_deref(),
        Some(
            r#"{
  "qty": 1
}"#
        )
    );
    assert_eq!(order(&d1, "B-0"), None, "the backup predates the B orders");

    let (mut pos1, _) = serve("pos-1", &d1, &pos1_cert, 0, &[addr2]);
    for i in 0..10 {
        eventually(
            &format!("order B-{i} comes back to the restored pos-1"),
            wait,
            || order(&d1, &format!("B-{i}")),
        );
    }
    for i in 0..5 {
        on(&d1, &["put", DAY, &format!("/C-{i}"), r#"{"qty": 3}"#]).expect_ok();
    }
    eventually("pos-2 has the restored pos-1's new orders", wait, || {
        order(&d2, "C-4")
    });

    let status = on(&d1, &["status", "--json"]).json();
    let refused: Vec<_> = status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["docs"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["refused"].as_bool() == Some(true))
        .collect();
    assert!(refused.is_empty(), "nothing refused: {refused:?}");
    let doc = status["documents"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["doc"] == DAY).cloned())
        .expect("status lists the day");
    println!(
        "status of {DAY}: {} bytes, retention {}",
        doc["bytes"], doc["retention"]
    );
    assert!(doc["bytes"].as_u64().unwrap_or(0) > 0, "{doc}");
    assert_eq!(doc["retention"], "kept");
    let text = on(&d1, &["status"]);
    assert!(text.expect_ok().contains(DAY), "{}", text.stdout);
    pos1.terminate();
    pos2.terminate();
}

#[test]
fn restore_refuses_what_it_cannot_restore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("d");
    on(&d, &["put", "menu", "/burger", "950"]).expect_ok();
    let b = tmp.path().join("b.backup");
    on(&d, &["backup", "--out", p(&b)]).expect_ok();
    on(&d, &["restore", "--from", p(&b)]).expect_err("not empty");
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"not a backup").expect("write");
    on(&tmp.path().join("e"), &["restore", "--from", p(&junk)]).expect_err("not an outpost backup");
    assert!(!tmp.path().join("e").exists(), "nothing is left behind");
    let bytes = std::fs::read(&b).expect("read");
    let cut = tmp.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).expect("write");
    on(&tmp.path().join("f"), &["restore", "--from", p(&cut)]).expect_err("damaged");
    on(&tmp.path().join("g"), &["restore", "--from", p(&b)]).expect_ok();
    let got = on(&tmp.path().join("g"), &["get", "menu", "/burger"]);
    assert_eq!(got.expect_ok().trim(), "950");
}
