//! `outpost serve --ws-listen` and `outpost token`: a device serves automerge-repo clients
//! beside QUIC, issues scoped tokens, lists document ids by name for a token, and stops
//! honouring a revoked token (the protocol itself is tested in ws/tests/).

use std::net::SocketAddr;
use std::time::Duration;

use outpost_testbins::*;

/// Runs the `outpost` binary cargo built for this package's tests, unless OUTPOST_BIN_DIR
/// names one (scripts/test.sh does). Without either, outpost_testbins builds it again with
/// `--profile test`, another set of fingerprints: the whole dependency tree rebuilt inside
/// the test, which is what made this test take 160-190 s (the test itself takes 1-2 s).
fn use_the_binary_cargo_built() {
    if std::env::var_os("OUTPOST_BIN_DIR").is_none() {
        let dir = std::path::Path::new(env!("CARGO_BIN_EXE_outpost"))
            .parent()
            .expect("a binary lives in a directory");
        std::env::set_var("OUTPOST_BIN_DIR", dir);
    }
}

#[test]
fn serve_lists_document_ids_for_a_token_and_revocation_stops_it() {
    use_the_binary_cargo_built();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let cert = issue(&ca, tmp.path(), "lyon", "pos-1", "pos");
    let kitchen = issue(&ca, tmp.path(), "lyon", "kitchen-1", "kitchen");
    let d = tmp.path().join("pos1");
    let c = cert.to_str().expect("utf-8");
    let on_pos = |args: &[&str]| {
        let mut all = vec!["--cert-dir", c];
        all.extend_from_slice(args);
        on(&d, &all)
    };
    on_pos(&[
        "put",
        "orders/2026-12-07",
        "/orders/P1-001",
        r#"{"total": 950}"#,
    ])
    .expect_ok();
    on_pos(&["put", "menu", "/items/burger/price", "950"]).expect_ok();

    let mut cmd = serve_command(&d, &cert, "127.0.0.1:0", &[]);
    // Plain ws (`--ws-plain`), so this test speaks HTTP without TLS; wss, the default, is
    // tested in ws/tests/wss.rs and ws/tests/kds_browser.rs.
    cmd.args(["--ws-listen", "127.0.0.1:0", "--ws-plain"]);
    let started = std::time::Instant::now();
    let (mut node, _) = serving("pos-1", cmd);
    let line = node.wait_line("out: web clients on ws://", Duration::from_secs(10));
    let web: SocketAddr = line
        .rsplit("ws://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    let issued = on_pos(&[
        "token",
        "issue",
        "--role",
        "kds",
        "--name",
        "kitchen-screen-1",
        "--ttl",
        "12h",
    ])
    .json();
    let token = issued["token"].as_str().expect("token").to_string();
    let id = issued["id"].as_str().expect("id").to_string();
    assert_eq!(issued["role"], "kds");
    let expires = issued["expires"].as_u64().expect("expires");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 12 * 3600 - 60..=now + 12 * 3600 + 60).contains(&expires),
        "{issued}"
    );

    // The ids a kds screen may read: orders and the menu, by name.
    let (status, body) = http_get(web, &format!("/v1/documents?token={token}"));
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    let names: Vec<&str> = listed["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        names.contains(&"orders/2026-12-07") && names.contains(&"menu"),
        "{listed}"
    );
    let orders = listed["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["name"] == "orders/2026-12-07")
        .expect("orders");
    let expected = outpost_ws::repo_document_id(
        &"lyon".parse().expect("site"),
        &"orders/2026-12-07".parse().expect("doc"),
    );
    assert_eq!(orders["documentId"], expected.as_str());
    assert_eq!(orders["url"], format!("automerge:{expected}").as_str());
    let (status, one) = http_get(
        web,
        &format!("/v1/documents?token={token}&name=orders/2026-12-08"),
    );
    assert_eq!(status, 200, "{one}");
    assert!(one.contains("\"exists\":false"), "{one}");
    // Without a token, or for a document the role may not read: refused.
    assert_eq!(http_get(web, "/v1/documents").0, 401);
    assert_eq!(
        http_get(web, &format!("/v1/documents?token={token}&name=health")).0,
        403
    );

    // Roles the device may not vouch for are refused at issue time.
    on_pos(&["token", "issue", "--role", "pos", "--name", "x"]).expect_err("may not vouch");
    let k = kitchen.to_str().expect("utf-8");
    on(
        &tmp.path().join("kitchen1"),
        &[
            "--cert-dir",
            k,
            "token",
            "issue",
            "--role",
            "guest",
            "--name",
            "g",
        ],
    )
    .expect_err("may not vouch");

    // Revocation, from another process while the node runs.
    on_pos(&["token", "revoke", &id]).expect_ok();
    eventually(
        "the revoked token is refused",
        Duration::from_secs(5),
        || (http_get(web, &format!("/v1/documents?token={token}")).0 == 401).then_some(()),
    );
    node.terminate();
    println!("serve, list, refuse and revoke: {:?}", started.elapsed());
}
