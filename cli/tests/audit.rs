//! `outpost audit` with the real binary: two POS nodes over real QUIC on loopback, a backup,
//! then the trail printed while the node serves (through its control socket) and after it
//! stopped (from the data directory), as text and JSON, filtered by kind, peer and time.

use std::path::Path;
use std::time::Duration;

use outpost_testbins::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

const DAY: &str = "orders/2026-12-07";

#[test]
fn outpost_audit_prints_links_acknowledgements_and_backups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let pos1_cert = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
    let pos2_cert = issue(&ca, tmp.path(), "paris", "pos-2", "pos");
    let (d1, d2) = (tmp.path().join("pos-1"), tmp.path().join("pos-2"));
    let wait = Duration::from_secs(30);

    let (mut pos2, addr2) = serve("pos-2", &d2, &pos2_cert, 0, &[]);
    let (mut pos1, _) = serve("pos-1", &d1, &pos1_cert, 0, &[addr2]);
    on(&d1, &["put", DAY, "/K1-001", r#"{"total": 950}"#]).expect_ok();
    // pos-2 acknowledges the order: pos-1's trail says when it reached pos-2.
    let acked = eventually("pos-2 acknowledged the order", wait, || {
        let out = on(&d1, &["audit", "--kind", "acknowledged", "--peer", "pos-2"]);
        let text = out.expect_ok().to_string();
        text.contains(&format!("doc={DAY}")).then_some(text)
    });
    println!("{acked}");
    on(&d1, &["backup", "--out", p(&tmp.path().join("b"))]).expect_ok();

    pos1.terminate();
    pos2.terminate();

    // From the data directory, the node stopped.
    let out = on(&d1, &["audit"]);
    let text = out.expect_ok();
    println!("{text}");
    let opened = text
        .lines()
        .find(|l| l.contains(" link_opened peer=pos-2"))
        .unwrap_or_else(|| panic!("no link_opened line: {text}"));
    assert!(opened.contains("site=paris role=pos dialed=us"), "{opened}");
    assert!(opened.starts_with("20"), "an ISO 8601 time first: {opened}");
    assert!(text.contains(" backup_taken "), "{text}");
    assert!(text.contains(" link_closed peer=pos-2"), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("the trail holds") && last.contains("at most 10000"),
        "{last}"
    );

    let json = on(
        &d1,
        &[
            "audit",
            "--json",
            "--kind",
            "link_opened",
            "--kind",
            "link_closed",
        ],
    )
    .json();
    let entries = json["entries"].as_array().expect("entries");
    println!(
        "{} link entries; the trail holds {} of at most {}",
        entries.len(),
        json["held"],
        json["max_entries"]
    );
    assert!(entries.len() >= 2, "{json}");
    assert!(entries
        .iter()
        .all(|e| e["kind"] == "link_opened" || e["kind"] == "link_closed"));
    assert_eq!(entries[0]["peer"], "pos-2");
    assert_eq!(entries[0]["dialed_by_us"], true);
    assert!(json["held"].as_u64().expect("a count") >= 4);

    // Time bounds: nothing from the future, everything from an hour ago.
    let future = on(&d1, &["audit", "--json", "--since", "2099-01-01"]).json();
    assert_eq!(future["entries"].as_array().map(Vec::len), Some(0));
    let hour = on(&d1, &["audit", "--json", "--since", "1h"]).json();
    assert_eq!(hour["entries"], json_all(&d1)["entries"]);

    on(&d1, &["audit", "--kind", "nonsense"]).expect_err("unknown audit entry kind");
    on(&d1, &["audit", "--since", "yesterday"]).expect_err("cannot read the time");
}

fn json_all(dir: &Path) -> serde_json::Value {
    on(dir, &["audit", "--json"]).json()
}
