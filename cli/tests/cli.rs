//! The `outpost` command line, run as a real binary: each command's happy path, and clean
//! failures (non-zero exit, a message on stderr, no panic) on bad input.

use std::path::Path;
use std::time::Duration;

use outpost_testbins::*;
use serde_json::json;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn help_lists_every_command_and_matches_cli_md() {
    let help = outpost(&["help"]);
    let text = help.expect_ok();
    for cmd in [
        "cert",
        "put",
        "get",
        "delete",
        "incr",
        "conflicts",
        "export",
        "import",
        "serve",
        "watch",
        "status",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`outpost help` does not list {cmd}:\n{text}"
        );
    }
    // CLI.md carries the exact usage of every command, as printed by --help.
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/CLI.md"))
        .expect("cli/CLI.md exists");
    // The same list scripts/cli-md.sh documents.
    let commands =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.txt"))
            .expect("cli/docs/commands.txt exists");
    let mut pages: Vec<(String, Vec<&str>)> = vec![("outpost".into(), vec!["--help"])];
    for sub in commands.lines().filter(|l| !l.trim().is_empty()) {
        let sub: Vec<&str> = sub.trim().split('+').collect();
        let mut args = sub.clone();
        args.push("--help");
        pages.push((format!("outpost {}", sub.join(" ")), args));
    }
    for (name, args) in pages {
        let out = outpost(&args);
        let page = out.expect_ok().trim_end();
        assert!(
            md.contains(page),
            "cli/CLI.md is out of date: it lacks the exact output of `{name} --help`; \
             regenerate it with scripts/cli-md.sh. Expected:\n{page}"
        );
    }
}

#[test]
fn usage_errors_exit_2_without_panic() {
    outpost(&["frobnicate"]).expect_err("unrecognized subcommand");
    let out = outpost(&["--data", "x", "incr", "stock", "/a", "many"]);
    out.expect_err("invalid value");
    assert_eq!(out.status.code(), Some(2));
    outpost(&["put", "menu"]).expect_err("required");
}

#[test]
fn certificates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    assert!(ca.join("ca.pem").exists() && ca.join("ca.key").exists());
    // A second CA in the same place would orphan every certificate: refused without --force.
    outpost(&["cert", "ca", "--out", p(&ca)]).expect_err("already holds a fleet CA");
    outpost(&["cert", "ca", "--out", p(&ca), "--force", "--fleet", "acme"]).expect_ok();

    let dev = issue(&ca, tmp.path(), "paris-11", "pos-1", "pos");
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        assert!(dev.join(f).exists(), "{f} missing");
    }
    let issue_args = |site: &str, ca: &Path| {
        outpost(&[
            "cert",
            "issue",
            "--ca",
            p(ca),
            "--site",
            site,
            "--device",
            "d",
            "--role",
            "pos",
            "--out",
            p(&tmp.path().join("x")),
        ])
    };
    issue_args("Paris!", &ca).expect_err("invalid site id");
    issue_args("paris", &tmp.path().join("no-ca")).expect_err("cannot load the fleet CA");
    let out = issue_args("paris", &tmp.path().join("no-ca"));
    // The cause is said once, not repeated by every layer.
    assert_eq!(
        out.stderr.matches("No such file").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn values_round_trip_through_the_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    on(&d, &["put", "menu", "/items/burger/price", "950"]).expect_ok();
    on(&d, &["put", "menu", "/items/burger/name", "\"Burger\""]).expect_ok();
    on(
        &d,
        &[
            "put",
            "menu",
            "/items/fries",
            r#"{"price": 350, "tags": ["veg", "hot"], "available": true}"#,
        ],
    )
    .expect_ok();
    assert_eq!(
        on(&d, &["get", "menu", "/items/burger/price"]).json(),
        json!(950)
    );
    assert_eq!(
        on(&d, &["get", "menu"]).json(),
        json!({"items": {
            "burger": {"price": 950, "name": "Burger"},
            "fries": {"price": 350, "tags": ["veg", "hot"], "available": true}
        }})
    );
    on(&d, &["delete", "menu", "/items/fries/tags"]).expect_ok();
    assert_eq!(
        on(&d, &["get", "menu", "/items/fries"]).json(),
        json!({"price": 350, "available": true})
    );
    // Counters add up and print their new total.
    assert_eq!(
        on(&d, &["incr", "stock", "/burger", "20"]).json(),
        json!(20)
    );
    assert_eq!(
        on(&d, &["incr", "stock", "/burger", "-3"]).json(),
        json!(17)
    );
    assert_eq!(on(&d, &["get", "stock", "/burger"]).json(), json!(17));
    // Partitioned documents.
    on(
        &d,
        &["put", "orders/2026-11-27", "/o-1", r#"{"total": 1250}"#],
    )
    .expect_ok();
    assert_eq!(
        on(&d, &["get", "orders/2026-11-27", "/o-1/total"]).json(),
        json!(1250)
    );
    // JSON Pointer escapes.
    on(&d, &["put", "menu", "/a~1b/m~0n", "true"]).expect_ok();
    assert_eq!(
        on(&d, &["get", "menu", "/a~1b"]).json(),
        json!({"m~n": true})
    );
}

#[test]
fn conflicts_show_every_concurrent_value() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    on(&a, &["put", "menu", "/items/burger/price", "950"]).expect_ok();
    let base = tmp.path().join("base.am");
    on(&a, &["export", "menu", "--out", p(&base)]).expect_ok();
    on(&b, &["import", "menu", p(&base)]).expect_ok();
    // Two managers edit the same price offline.
    on(&a, &["put", "menu", "/items/burger/price", "990"]).expect_ok();
    on(&b, &["put", "menu", "/items/burger/price", "1000"]).expect_ok();
    let from_b = tmp.path().join("b.am");
    on(&b, &["export", "menu", "--out", p(&from_b)]).expect_ok();
    let imported = on(&a, &["import", "menu", p(&from_b)]);
    imported.expect_ok();
    assert!(
        imported.stderr.contains("imported 1 new change into menu"),
        "{}",
        imported.stderr
    );

    let c = on(&a, &["conflicts", "menu", "/items/burger/price"]).json();
    let values: Vec<_> = c
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["value"].clone())
        .collect();
    assert_eq!(values.len(), 2, "{c}");
    assert!(
        values.contains(&json!(990)) && values.contains(&json!(1000)),
        "{c}"
    );
    assert_eq!(c[0]["winner"], json!(true));
    assert_eq!(
        on(&a, &["get", "menu", "/items/burger/price"]).json(),
        c[0]["value"]
    );
    // No conflict: one value.
    on(&a, &["put", "menu", "/items/tea", "300"]).expect_ok();
    let one = on(&a, &["conflicts", "menu", "/items/tea"]).json();
    assert_eq!(one.as_array().map(Vec::len), Some(1));
}

#[test]
fn export_writes_a_loadable_file_and_import_merges_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    on(&a, &["put", "menu", "/items/burger/price", "950"]).expect_ok();
    on(&a, &["incr", "menu", "/sold", "3"]).expect_ok();
    let file = tmp.path().join("menu.automerge");
    on(&a, &["export", "menu", "--out", p(&file)]).expect_ok();
    let bytes = std::fs::read(&file).expect("export wrote the file");
    // Automerge's document chunk magic bytes.
    assert_eq!(&bytes[..4], &[0x85, 0x6f, 0x4a, 0x83]);
    on(&b, &["import", "menu", p(&file)]).expect_ok();
    assert_eq!(
        on(&b, &["get", "menu"]).json(),
        on(&a, &["get", "menu"]).json()
    );
    // Importing the same bytes again adds nothing.
    let again = on(&b, &["import", "menu", p(&file)]);
    assert!(
        again.stderr.contains("imported 0 new changes"),
        "{}",
        again.stderr
    );
    let sa = on(&a, &["status", "--json"]).json();
    let sb = on(&b, &["status", "--json"]).json();
    assert_eq!(sa["documents"][0]["heads"], sb["documents"][0]["heads"]);
}

#[test]
fn bad_input_fails_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    on(&d, &["put", "menu", "/items/burger/price", "950"]).expect_ok();

    // Unknown document, bad pointers, bad document names, bad JSON.
    on(&d, &["get", "menux"]).expect_err("unknown document menux");
    on(&d, &["export", "stock", "--out", p(&tmp.path().join("x"))])
        .expect_err("unknown document stock");
    on(&d, &["conflicts", "nope", "/a"]).expect_err("unknown document nope");
    on(&d, &["get", "menu", "items/burger"]).expect_err("JSON Pointer");
    on(&d, &["get", "menu", "/a~2"]).expect_err("JSON Pointer");
    on(&d, &["put", "menu", "price", "1"]).expect_err("JSON Pointer");
    on(&d, &["get", "Menu"]).expect_err("invalid document id");
    on(&d, &["put", "a/b/c", "/x", "1"]).expect_err("invalid document id");
    on(&d, &["put", "menu", "/items/x", "Burger"]).expect_err("invalid JSON value");
    on(&d, &["put", "menu", "/items/x", "{\"a\":"]).expect_err("invalid JSON value");
    on(&d, &["get", "menu", "/items/nothing"]).expect_err("nothing at /items/nothing");
    on(&d, &["delete", "menu", "/items/nothing"]).expect_err("nothing at /items/nothing");
    on(&d, &["incr", "menu", "/items/burger/price", "1"]).expect_err("expected a counter");
    on(&d, &["put", "menu", "/items/burger/price/x", "1"]).expect_err("wrong type");
    on(&d, &["put", "menu", "", "1"]).expect_err("root");
    // Files.
    let garbage = tmp.path().join("garbage.bin");
    std::fs::write(&garbage, b"not automerge").expect("write");
    on(&d, &["import", "menu", p(&garbage)]).expect_err("not an Automerge document");
    on(&d, &["import", "menu", p(&tmp.path().join("missing.am"))]).expect_err("cannot read");
    on(
        &d,
        &[
            "export",
            "menu",
            "--out",
            p(&tmp.path().join("no/such/dir/x.am")),
        ],
    )
    .expect_err("cannot create");
    // Nothing was changed by all of that.
    assert_eq!(
        on(&d, &["get", "menu"]).json(),
        json!({"items": {"burger": {"price": 950}}})
    );

    // Data directories.
    outpost(&["get", "menu"]).expect_err("no data directory");
    on(&tmp.path().join("missing"), &["get", "menu"]).expect_err("does not exist");
    assert!(
        !tmp.path().join("missing").exists(),
        "a read must not create the directory"
    );
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), "hello").expect("write");
    on(&foreign, &["put", "menu", "/a", "1"]).expect_err("not an outpost data directory");
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").expect("write");
    on(&file, &["get", "menu"]).expect_err("is not a directory");
}

#[test]
fn corrupt_data_directory_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    for i in 0..20 {
        on(
            &d,
            &["put", "menu", &format!("/items/i{i}"), &i.to_string()],
        )
        .expect_ok();
    }
    // Overwrite the storage engine's file with garbage (redb's file, or sled's log).
    let db = ["outpost.redb", "db"]
        .iter()
        .map(|f| d.join(f))
        .find(|f| f.exists())
        .expect("the storage engine's file");
    let len = std::fs::metadata(&db).expect("db file").len() as usize;
    let junk: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&db, junk).expect("corrupt");
    on(&d, &["get", "menu"]).expect_err("corrupt");
    on(&d, &["put", "menu", "/a", "1"]).expect_err("corrupt");
    on(&d, &["status"]).expect_err("corrupt");
}

#[test]
fn missing_certificates_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    on(&d, &["serve", "--listen", "127.0.0.1:0"]).expect_err("--cert-dir");
    on(
        &d,
        &["--cert-dir", p(&empty), "serve", "--listen", "127.0.0.1:0"],
    )
    .expect_err("missing or unusable certificates");
    on(&d, &["--cert-dir", p(&empty), "put", "menu", "/a", "1"])
        .expect_err("missing or unusable certificates");
    // A certificate whose key belongs to another device.
    let ca = make_ca(tmp.path());
    let one = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
    let two = issue(&ca, tmp.path(), "paris", "pos-2", "pos");
    std::fs::copy(two.join("key.pem"), one.join("key.pem")).expect("copy key");
    on(
        &d,
        &["--cert-dir", p(&one), "serve", "--listen", "127.0.0.1:0"],
    )
    .expect_err("does not belong");
}

#[test]
fn identity_of_a_data_directory_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let kiosk = issue(&ca, tmp.path(), "paris", "kiosk-1", "kiosk");
    let other = issue(&ca, tmp.path(), "paris", "kiosk-2", "kiosk");
    let d = tmp.path().join("kiosk1");
    // Writes are authored by the device of --cert-dir and checked against its role.
    on(
        &d,
        &[
            "--cert-dir",
            p(&kiosk),
            "put",
            "orders/2026-11-27",
            "/o-1",
            r#"{"total": 5}"#,
        ],
    )
    .expect_ok();
    on(
        &d,
        &[
            "--cert-dir",
            p(&kiosk),
            "put",
            "menu",
            "/items/x/price",
            "1",
        ],
    )
    .expect_err("role kiosk may not write document menu");
    let (mut node, _) = serve("kiosk-1", &d, &kiosk, 0, &[]);
    node.terminate();
    // After a serve, the directory remembers its device.
    let c = on(&d, &["conflicts", "orders/2026-11-27", "/o-1"]).json();
    assert_eq!(c[0]["author"], json!("kiosk-1"));
    assert_eq!(c[0]["author_role"], json!("kiosk"));
    on(&d, &["put", "menu", "/items/x/price", "1"]).expect_err("role kiosk may not write");
    let status = on(&d, &["status", "--json"]).json();
    assert_eq!(status["identity"]["peer"], json!("kiosk-1"));
    // A fleet policy that lets kiosks write the menu.
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "relay_roles = [\"cloud\", \"pos\", \"kiosk\"]\n\
         default_rule = { read = [\"pos\"], write = [\"pos\"] }\n\
         [contexts.menu]\nread = [\"pos\", \"kiosk\"]\nwrite = [\"pos\", \"kiosk\"]\n",
    )
    .expect("write policy");
    on(
        &d,
        &["--policy", p(&policy), "put", "menu", "/items/x/price", "1"],
    )
    .expect_ok();
    std::fs::write(&policy, "contexts = 3").expect("write policy");
    on(&d, &["--policy", p(&policy), "get", "menu"]).expect_err("invalid policy file");
    // Another device's certificate on this directory is refused.
    on(&d, &["--cert-dir", p(&other), "get", "orders/2026-11-27"])
        .expect_err("belongs to paris/kiosk-1");
}

#[test]
fn serve_watch_and_status_work_together() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let c1 = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
    let c2 = issue(&ca, tmp.path(), "paris", "pos-2", "pos");
    let d1 = tmp.path().join("pos1");
    let d2 = tmp.path().join("pos2");
    let (mut n1, a1) = serve("pos-1", &d1, &c1, 0, &[]);
    let (mut n2, _) = serve("pos-2", &d2, &c2, 0, &[a1]);

    // `watch` on pos-2 prints the changes that arrive from pos-1.
    let mut cmd = std::process::Command::new(outpost_bin());
    cmd.args(["--data", p(&d2), "watch", "menu"]);
    let watch = Proc::spawn("watch", cmd);
    watch.wait_line("err: watching menu", Duration::from_secs(20));
    // Writes go through the running node (its control socket) and are durable.
    on(&d1, &["put", "menu", "/items/burger/price", "950"]).expect_ok();
    let line = watch.wait_line("out: {", Duration::from_secs(30));
    let event: serde_json::Value =
        serde_json::from_str(line.trim_start_matches("out: ")).expect("JSON line");
    assert_eq!(event["doc"], json!("menu"));
    assert_eq!(event["origin"], json!({"remote": "pos-1"}));
    assert_eq!(event["values"]["/items/burger/price"], json!(950));
    assert_eq!(
        on(&d2, &["get", "menu", "/items/burger/price"]).json(),
        json!(950)
    );

    // A local write on pos-2 shows up too.
    let seen = watch.output().len();
    on(&d2, &["incr", "menu", "/sold", "2"]).expect_ok();
    let line = watch.wait_line_after(seen, "out: {", Duration::from_secs(30));
    assert!(line.contains("\"origin\":\"local\""), "{line}");

    // Status through the node: connected peer, documents, heads.
    let status = eventually("pos-1 in sync on pos-2", Duration::from_secs(30), || {
        let s = on(&d2, &["status", "--json"]).json();
        let synced = s["peers"][0]["connected"] == json!(true)
            && s["unsynced_changes"] == json!(0)
            && s["peers"][0]["docs"][0]["last_sync"].is_string();
        synced.then_some(s)
    });
    assert_eq!(status["node_running"], json!(true));
    assert_eq!(status["peers"][0]["peer"], json!("pos-1"));
    assert_eq!(status["documents"][0]["doc"], json!("menu"));
    let text = on(&d2, &["status"]);
    let text = text.expect_ok();
    assert!(text.contains("pos-1 (pos)  connected"), "{text}");
    assert!(text.contains("node:           running"), "{text}");

    // A second serve on the same directory is refused.
    on(
        &d2,
        &["--cert-dir", p(&c2), "serve", "--listen", "127.0.0.1:0"],
    )
    .expect_err("already served");

    // Changes made while pos-1 is down are shown as unsynced, with since when.
    n1.terminate();
    on(&d2, &["put", "menu", "/items/tea/price", "300"]).expect_ok();
    let s = on(&d2, &["status", "--json"]).json();
    let pos1 = &s["peers"][0];
    assert_eq!(pos1["connected"], json!(false));
    assert!(pos1["unsynced_changes"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(pos1["docs"][0]["unsynced_since"].is_string(), "{s}");
    let text = on(&d2, &["status"]);
    assert!(
        text.expect_ok().contains("unsynced since"),
        "{}",
        text.stdout
    );

    n2.terminate();
    // The watch ends when its node stops.
    drop(watch);
    // Offline status still knows the peer and the backlog.
    let s = on(&d2, &["status", "--json"]).json();
    assert_eq!(s["node_running"], json!(false));
    assert!(s["unsynced_changes"].as_u64().unwrap_or(0) >= 1, "{s}");
}

#[test]
fn watch_without_a_node_serves_other_commands() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    on(&d, &["put", "menu", "/a", "1"]).expect_ok();
    let mut cmd = std::process::Command::new(outpost_bin());
    cmd.args(["--data", p(&d), "watch", "menu"]);
    let watch = Proc::spawn("watch", cmd);
    // The watch holds the store; this write reaches it through the watch's control socket.
    watch.wait_line("err: watching menu", Duration::from_secs(20));
    on(&d, &["put", "menu", "/a", "2"]).expect_ok();
    let line = watch.wait_line("out: {", Duration::from_secs(20));
    assert!(line.contains("\"/a\":2"), "{line}");
    on(&d, &["watch", "Bad Name"]).expect_err("invalid document id");
}

/// The day of orders of the feed tests, in the README's layout: one order per key under
/// `/orders` (`/orders/K1-001`).
const DAY: &str = "orders/2026-12-07";

/// `watch --consumer` prints what changed since the consumer last acknowledged, then live;
/// run again (also through a running node's control socket), it resumes where it left off.
#[test]
fn watch_with_a_consumer_resumes_where_it_left_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("kitchen1");
    on(&d, &["put", DAY, "/orders/K1-001", r#"{"sku":"burger"}"#]).expect_ok();
    on(&d, &["put", DAY, "/orders/K1-002", r#"{"sku":"fries"}"#]).expect_ok();
    let printer = |name: &str| {
        let mut cmd = std::process::Command::new(outpost_bin());
        cmd.args(["--data", p(&d), "watch", DAY, "--consumer", "printer"]);
        Proc::spawn(name, cmd)
    };
    let first = printer("printer");
    let line = first.wait_line("out: {", Duration::from_secs(20));
    assert!(
        line.contains(r#""items":["/orders/K1-001","/orders/K1-002"]"#),
        "{line}"
    );
    assert!(
        line.contains(r#""/orders/K1-001":{"sku":"burger"}"#),
        "{line}"
    );
    // While it runs, a write reaches it through its control socket, and prints live.
    on(&d, &["put", DAY, "/orders/K1-003", r#"{"sku":"cola"}"#]).expect_ok();
    let line = first.wait_line("\"/orders/K1-003\"", Duration::from_secs(20));
    assert!(line.contains(r#""items":["/orders/K1-003"]"#), "{line}");
    drop(first);

    on(&d, &["put", DAY, "/orders/K1-004", r#"{"sku":"shake"}"#]).expect_ok();
    let again = printer("printer again");
    let line = again.wait_line("out: {", Duration::from_secs(20));
    // The first printer was killed right after printing /orders/K1-003, maybe before it acknowledged
    // it: /orders/K1-003 may come again (at least once), /orders/K1-001 and /orders/K1-002 may not.
    assert!(
        line.contains(r#""items":["/orders/K1-004"]"#)
            || line.contains(r#""items":["/orders/K1-003","/orders/K1-004"]"#),
        "only what came since the last acknowledgement: {line}"
    );
    drop(again);

    // Through a running node: the same consumer, over the control socket.
    let mut cmd = std::process::Command::new(outpost_bin());
    cmd.args(["--data", p(&d), "watch", "menu"]);
    let holder = Proc::spawn("holder", cmd);
    holder.wait_line("err: watching menu", Duration::from_secs(20));
    on(&d, &["put", DAY, "/orders/K1-005", r#"{"sku":"salad"}"#]).expect_ok();
    let through = printer("printer through the node");
    through.wait_line(
        "err: watching orders/2026-12-07 through",
        Duration::from_secs(20),
    );
    let line = through.wait_line("out: {", Duration::from_secs(20));
    // /orders/K1-004 again if the last printer was killed between printing and acknowledging it.
    assert!(
        line.contains(r#""items":["/orders/K1-005"]"#)
            || line.contains(r#""items":["/orders/K1-004","/orders/K1-005"]"#),
        "{line}"
    );
    on(&d, &["watch", DAY, "--consumer", "no spaces"]).expect_err("invalid consumer name");
}

/// Issue 27, hole 10 (failed before: `watch --consumer` acknowledged a batch once written to
/// stdout, which for a pipe is its buffer, and there was no other mode): with `--exec CMD` a
/// batch is acknowledged only when CMD exits 0. A CMD that fails the first time gets the same
/// batch again; a consumer killed while CMD handles a batch loses nothing: the next run gets
/// it again.
#[test]
fn watch_exec_acknowledges_a_batch_only_when_the_command_succeeds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("kitchen1");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("dir");
    on(&d, &["put", DAY, "/orders/K1-001", r#"{"sku":"burger"}"#]).expect_ok();
    on(&d, &["put", DAY, "/orders/K1-002", r#"{"sku":"fries"}"#]).expect_ok();
    let watch = |name: &str, cmd: &str| {
        let mut c = std::process::Command::new(outpost_bin());
        c.args([
            "--data",
            p(&d),
            "watch",
            DAY,
            "--consumer",
            "printer",
            "--exec",
            cmd,
        ]);
        c.env("WORK", &work);
        Proc::spawn(name, c)
    };
    let read = |f: &str| std::fs::read_to_string(work.join(f)).unwrap_or_default();

    // Fails its first attempt (exit 3, batch unread), then records what it is given.
    let flaky = r#"n=$(cat "$WORK/attempts" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$WORK/attempts"; [ $n -ge 2 ] || exit 3; cat >> "$WORK/got""#;
    let started = std::time::Instant::now();
    let first = watch("flaky printer", flaky);
    eventually(
        "the batch reaches the command",
        Duration::from_secs(30),
        || read("got").contains("/orders/K1-002").then_some(()),
    );
    let attempts: u32 = read("attempts").trim().parse().expect("a count");
    println!(
        "delivered after {attempts} attempts in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(attempts, 2, "one failure, then one success");
    first.wait_line("exited with", Duration::from_secs(5));
    let got = read("got");
    assert_eq!(got.lines().count(), 1, "{got}");
    assert!(
        got.contains(r#""items":["/orders/K1-001","/orders/K1-002"]"#),
        "{got}"
    );
    // The acknowledgement follows the command's exit.
    std::thread::sleep(Duration::from_millis(500));
    drop(first);

    // Killed while the command handles /orders/K1-003: nothing acknowledged.
    on(&d, &["put", DAY, "/orders/K1-003", r#"{"sku":"cola"}"#]).expect_ok();
    let stuck = r#"echo $$ > "$WORK/stuck.pid"; cat > "$WORK/partial"; exec sleep 60"#;
    let second = watch("stuck printer", stuck);
    let pid = eventually(
        "the command holds /orders/K1-003",
        Duration::from_secs(30),
        || {
            (read("partial").contains("/orders/K1-003"))
                .then(|| read("stuck.pid").trim().to_string())
                .filter(|p| !p.is_empty())
        },
    );
    drop(second);
    // The command we started through it, by its pid.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();

    let record = r#"cat >> "$WORK/got""#;
    let third = watch("printer after the kill", record);
    eventually(
        "the batch comes again after the kill",
        Duration::from_secs(30),
        || read("got").contains("/orders/K1-003").then_some(()),
    );
    let got = read("got");
    assert_eq!(got.lines().count(), 2, "{got}");
    assert!(
        got.lines()
            .nth(1)
            .expect("line")
            .contains(r#""items":["/orders/K1-003"]"#),
        "{got}"
    );
    drop(third);
    on(&d, &["watch", DAY, "--exec", "true"]).expect_err("--consumer");
}

/// Issue 28, item 2, as a new user hits it: orders written as the README shows (`outpost put
/// orders/2026-12-07 /orders/K1-001 '{…}'`) and a consumer feed (`watch --consumer --exec`,
/// through a running node). Before, every batch carried the whole day under the single item
/// `/orders` (136 tickets for 32 orders); now each changed order is one item, with its value,
/// as the default policy's `items = "/orders/*"` for `orders` says. `--items` names another
/// item path.
#[test]
fn a_consumer_feed_delivers_one_item_per_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("kitchen1");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("dir");
    let got = work.join("got");
    on(&d, &["put", "menu", "/burger/price", "950"]).expect_ok();
    // Another process holds the store, so the consumer goes through its control socket.
    let mut cmd = std::process::Command::new(outpost_bin());
    cmd.args(["--data", p(&d), "watch", "menu"]);
    let holder = Proc::spawn("holder", cmd);
    holder.wait_line("err: watching menu", Duration::from_secs(20));
    let mut cmd = std::process::Command::new(outpost_bin());
    cmd.args([
        "--data",
        p(&d),
        "watch",
        DAY,
        "--consumer",
        "erp",
        "--exec",
        r#"cat >> "$WORK/got""#,
    ])
    .env("WORK", &work);
    let erp = Proc::spawn("erp", cmd);
    erp.wait_line(
        "err: watching orders/2026-12-07 through",
        Duration::from_secs(20),
    );
    let started = std::time::Instant::now();
    for i in 1..=32 {
        on(
            &d,
            &[
                "put",
                DAY,
                &format!("/orders/K1-{i:03}"),
                &format!(r#"{{"items": ["burger", "fries"], "total": {}}}"#, 1000 + i),
            ],
        )
        .expect_ok();
    }
    let batches = |file: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each batch is a JSON line"))
            .collect()
    };
    let delivered = |b: &[serde_json::Value]| -> Vec<String> {
        b.iter()
            .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
            .map(|i| i.as_str().expect("an item is a path").to_string())
            .collect()
    };
    eventually(
        "the 32 orders reach the consumer",
        Duration::from_secs(30),
        || {
            let mut items = delivered(&batches(&got));
            items.sort();
            items.dedup();
            (items.len() == 32).then_some(())
        },
    );
    let all = batches(&got);
    let items = delivered(&all);
    println!(
        "32 orders: {} batches, {} items delivered in {} ms",
        all.len(),
        items.len(),
        started.elapsed().as_millis()
    );
    assert_eq!(items.len(), 32, "one item per order, each once: {items:?}");
    for b in &all {
        for item in b["items"].as_array().expect("items") {
            let item = item.as_str().expect("a path");
            assert!(item.starts_with("/orders/K1-"), "{item}");
            let value = &b["values"][item];
            assert_eq!(
                value["items"],
                serde_json::json!(["burger", "fries"]),
                "{b}"
            );
        }
    }
    // A step of one order is a batch of that order alone.
    on(
        &d,
        &[
            "put",
            DAY,
            "/orders/K1-007/kitchen",
            r#"{"state": "ready"}"#,
        ],
    )
    .expect_ok();
    eventually(
        "the step reaches the consumer",
        Duration::from_secs(30),
        || {
            let all = batches(&got);
            let last = all.last()?.clone();
            (last["values"]["/orders/K1-007"]["kitchen"]["state"] == "ready").then_some(last)
        },
    );
    let last = batches(&got).pop().expect("a batch");
    assert_eq!(
        last["items"],
        serde_json::json!(["/orders/K1-007"]),
        "{last}"
    );
    drop(erp);

    // `--items` names the item path: the document's top-level keys give the whole day.
    let mut cmd = std::process::Command::new(outpost_bin());
    cmd.args([
        "--data",
        p(&d),
        "watch",
        DAY,
        "--consumer",
        "display",
        "--items",
        "/*",
    ]);
    let display = Proc::spawn("display", cmd);
    let line = display.wait_line("out: {", Duration::from_secs(20));
    assert!(line.contains(r#""items":["/orders"]"#), "{line}");
    drop(display);
    on(&d, &["watch", DAY, "--consumer", "x", "--items", "/orders"]).expect_err("must end with /*");
    drop(holder);
}
