//! What a new user trips over (issue 17) and the control socket's guards (issue 11 item 9),
//! each run through the real `outpost` binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_testbins::issue as issue_cert;
use outpost_testbins::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn certificates_are_not_overwritten_roles_are_checked_and_validity_is_shown() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let out = tmp.path().join("k1");
    let issue = |device: &str, role: &str, extra: &[&str]| {
        let mut args = vec![
            "cert",
            "issue",
            "--ca",
            p(&ca),
            "--site",
            "paris",
            "--device",
            device,
            "--role",
            role,
            "--out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        outpost(&args)
    };
    // Item 4: a misspelt role is refused, naming the roles the policy knows.
    issue("k1", "admni", &[]).expect_err("not named by the fleet's policy");
    assert!(!out.join("cert.pem").exists());
    issue("k1", "kiosk", &["--days", "30"]).expect_ok();
    // Item 3: another device's certificate is not silently replaced.
    issue("k2", "kiosk", &[]).expect_err("already holds the certificate of paris/k1");
    let show = outpost(&["cert", "show", p(&out), "--json"]).json();
    assert_eq!(show["peer"], "k1");
    assert_eq!(show["role"], "kiosk");
    assert_eq!(show["expired"], false);
    // --days 0 makes a certificate that has already expired; --force replaces.
    issue("k1", "kiosk", &["--days", "0", "--force"]).expect_ok();
    assert_eq!(
        outpost(&["cert", "show", p(&out), "--json"]).json()["expired"],
        true
    );
    // Item 12 and item 10: an expired certificate is refused at start, with what to do,
    // and the data directory the failed start would have created is not left behind.
    let data = tmp.path().join("never");
    on(
        &data,
        &["--cert-dir", p(&out), "serve", "--listen", "127.0.0.1:0"],
    )
    .expect_err("expired on");
    assert!(
        !data.exists(),
        "a failed start left {} behind",
        data.display()
    );
    // Item 9: no Rust internals in what a user reads.
    let other = issue_cert(&ca, tmp.path(), "paris", "k9", "kiosk");
    std::fs::copy(other.join("key.pem"), out.join("key.pem")).expect("copy key");
    let bad = on(&data, &["--cert-dir", p(&out), "put", "menu", "/a", "1"]);
    bad.expect_err("outpost cert issue");
    assert!(!bad.stderr.contains("DeviceCert::"), "{}", bad.stderr);
}

#[test]
fn the_default_policy_is_printed_and_reads_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = outpost(&["policy", "show"]).expect_ok().to_string();
    assert!(text.contains("[contexts.orders]"), "{text}");
    assert!(text.contains("kiosk"), "{text}");
    let file = tmp.path().join("policy.toml");
    std::fs::write(&file, &text).expect("write policy");
    let again = outpost(&["--policy", p(&file), "policy", "show"]);
    assert_eq!(
        again.expect_ok(),
        text,
        "the printed policy is a valid policy file"
    );
}

#[test]
fn names_paths_lists_and_documents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    // Item 5: messages that name the offending character.
    on(&d, &["put", "Orders", "/a", "1"]).expect_err("capital 'O' is not allowed");
    on(&d, &["put", "/orders", "/a", "1"]).expect_err("context before '/' is empty");
    let bad = on(&d, &["put", "Menu", "/a", "1"]);
    assert!(!bad.stderr.contains("menu or orders"), "{}", bad.stderr);
    // Item 6: appending to a list, with `-` or the current length.
    on(&d, &["put", "menu", "/items", r#"["burger"]"#]).expect_ok();
    on(&d, &["put", "menu", "/items/-", r#""fries""#]).expect_ok();
    on(&d, &["put", "menu", "/items/2", r#""cola""#]).expect_ok();
    assert_eq!(
        on(&d, &["get", "menu", "/items"]).json(),
        serde_json::json!(["burger", "fries", "cola"])
    );
    // Item 14: one element is not "1 elements"; conflicts on nothing fails like get.
    on(&d, &["put", "stock", "/l", "[1]"]).expect_ok();
    let far = on(&d, &["put", "stock", "/l/5", "2"]);
    far.expect_err("the list has 1 element;");
    on(&d, &["conflicts", "menu", "/nothing"]).expect_err("nothing at /nothing");
    on(&d, &["get", "menu", "/nothing"]).expect_err("nothing at /nothing");
    // Listing documents.
    assert_eq!(on(&d, &["docs", "list"]).expect_ok(), "menu\nstock\n");
    // Item 11: `export --out -` writes to standard output, not to a file named `-`.
    let piped = tmp.path().join("piped.automerge");
    let mut cmd = Command::new("sh");
    cmd.current_dir(tmp.path()).args([
        "-c",
        r#""$0" --data "$1" export menu --out - > "$2""#,
        p(&outpost_bin()),
        p(&d),
        p(&piped),
    ]);
    run_with(cmd, COMMAND_TIMEOUT).expect_ok();
    assert!(!tmp.path().join("-").exists(), "a file named - was written");
    let file = tmp.path().join("menu.automerge");
    on(&d, &["export", "menu", "--out", p(&file)]).expect_ok();
    let bytes = std::fs::read(&piped).expect("read piped export");
    assert!(!bytes.is_empty());
    assert_eq!(bytes, std::fs::read(&file).expect("read export"));
    // Deleting a document: gone from the list and from reads; deleting it again says so.
    assert_eq!(
        on(&d, &["docs", "delete", "stock"]).expect_ok(),
        "deleted stock\n"
    );
    assert_eq!(on(&d, &["docs", "list"]).expect_ok(), "menu\n");
    on(&d, &["get", "stock", "/l"]).expect_err("unknown document stock");
    assert!(on(&d, &["docs", "delete", "stock"])
        .expect_ok()
        .contains("nothing deleted"));
}

#[test]
fn a_cloud_data_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca_for(tmp.path(), "acme");
    let cert = issue(&ca, tmp.path(), "acme", "cloud-1", "cloud");
    let data = tmp.path().join("cloud");
    let mut cmd = Command::new(cloud_bin());
    cmd.args([
        "--data",
        p(&data),
        "--listen",
        "localhost:0",
        "--http",
        "localhost:0",
    ])
    .args([
        "--ca",
        p(&cert.join("ca.pem")),
        "--cert",
        p(&cert.join("cert.pem")),
    ])
    .args(["--key", p(&cert.join("key.pem"))]);
    let mut cloud = Proc::spawn("cloud", cmd);
    // Item 1 (cloud): hostnames in --listen and --http.
    cloud.wait_line("outpost-cloud started", Duration::from_secs(30));
    cloud.terminate();
    // Item 8: the device command refuses the cloud's database instead of showing nothing
    // and writing into a copy of it.
    on(&data, &["status"]).expect_err("data directory of an outpost-cloud peer");
    on(&data, &["put", "menu", "/a", "1"]).expect_err("not of a device");
}

#[test]
fn serve_resolves_names_denies_and_guards_its_control_socket() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let pos = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
    let kiosk = issue(&ca, tmp.path(), "paris", "kiosk-1", "kiosk");
    let pos2 = issue(&ca, tmp.path(), "paris", "pos-2", "pos");
    let d1 = tmp.path().join("pos1");
    let d2 = tmp.path().join("kiosk1");
    // Item 1: `localhost` in --listen, and in --peer (from a config file).
    let config = tmp.path().join("kiosk.toml");
    let mut cmd = Command::new(outpost_bin());
    cmd.args([
        "--data",
        p(&d1),
        "--cert-dir",
        p(&pos),
        "serve",
        "--listen",
        "localhost:0",
    ])
    .args(["--deny", "paris/kiosk-1"])
    .env("RUST_LOG", "info,outpost_transport=debug");
    let node = Proc::spawn("pos-1", cmd);
    let line = node.wait_line("out: serving ", Duration::from_secs(30));
    let port = line.rsplit(':').next().expect("port").trim().to_string();
    std::fs::write(
        &config,
        format!("peers = [\"localhost:{port}\"]\nlisten = \"localhost:0\"\n"),
    )
    .expect("write config");
    let mut cmd = Command::new(outpost_bin());
    cmd.args([
        "--data",
        p(&d2),
        "--cert-dir",
        p(&kiosk),
        "serve",
        "--config",
        p(&config),
    ])
    .env("RUST_LOG", "info,outpost_transport=debug");
    let kiosk_node = Proc::spawn("kiosk-1", cmd);
    kiosk_node.wait_line("out: serving ", Duration::from_secs(30));
    // Item 2 (CLI side): pos-1 was told the kiosk is revoked, so nothing the kiosk writes
    // reaches it.
    on(&d2, &["put", "orders/2026-11-24", "/o1", r#"{"total": 5}"#]).expect_ok();
    std::thread::sleep(Duration::from_secs(3));
    on(&d1, &["get", "orders/2026-11-24"]).expect_err("unknown document");

    // Item 7: a --cert-dir of another device is refused, not ignored, through the socket.
    on(&d1, &["--cert-dir", p(&pos2), "put", "menu", "/a", "1"])
        .expect_err("authors every command");
    on(&d1, &["--cert-dir", p(&pos), "put", "menu", "/a", "1"]).expect_ok();

    // Issue 11 item 9: the socket is the owner's only; export and import stay outside the
    // node's own files; requests are bounded.
    use std::os::unix::fs::PermissionsExt;
    let sock = d1.join("outpost.sock");
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");
    on(&d1, &["export", "menu", "--out", p(&d1.join("db"))]).expect_err("refusing to export");
    on(&d1, &["export", "menu", "--out", p(&pos.join("key.pem"))]).expect_err("refusing to export");
    on(&d1, &["import", "menu", p(&pos.join("key.pem"))]).expect_err("refusing to import");
    let key = std::fs::read(pos.join("key.pem")).expect("key");
    assert!(
        String::from_utf8_lossy(&key).contains("PRIVATE KEY"),
        "the key is intact"
    );
    {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let big = vec![b'x'; 17 * 1024 * 1024];
        let _ = s.write_all(&big);
        let mut reply = String::new();
        let _ = BufReader::new(&s).read_line(&mut reply);
        assert!(
            reply.contains("too large"),
            "reply to an oversized request: {reply:?}"
        );
    }
    // Item 13: watch says who wrote a change, and --current prints the state first.
    let mut cmd = Command::new(outpost_bin());
    cmd.args(["--data", p(&d1), "watch", "menu", "--current"]);
    let watch = Proc::spawn("watch", cmd);
    watch.wait_line("\"origin\":\"current\"", Duration::from_secs(30));
    on(&d1, &["put", "menu", "/b", "2"]).expect_ok();
    let line = watch.wait_line("\"/b\"", Duration::from_secs(30));
    assert!(line.contains(r#""authors":{"/b":"pos-1"}"#), "{line}");
    drop(watch);
    // Status: the certificate and plurals.
    let status = on(&d1, &["status"]);
    let text = status.expect_ok();
    assert!(text.contains("certificate:    valid until"), "{text}");
    assert!(!text.contains(" 1 changes"), "{text}");
    let mut node = node;
    node.terminate();
    let mut kiosk_node = kiosk_node;
    kiosk_node.terminate();
}
