//! The kitchen display page in a real browser against real devices, with no cloud: a POS
//! (`outpost serve --ws-listen`) and a kitchen printer (`outpost serve`, its consumer feed
//! through `outpost watch --consumer`) over QUIC; the page, served by the POS, in Debian's
//! chromium driven by playwright-core (ws/tests/js/kds_page.mjs). An order written on the POS
//! appears on the screen; the screen's bump reaches the POS and the printer's feed; a screen
//! with a guest's token cannot write an order (refused at the device, stored nowhere, shown
//! on the page). Screenshots: <target>/artifacts/kds.png and kds-guest.png.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_testbins::*;

const DAY: &str = "2026-12-07";

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps")
        .to_path_buf()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn kitchen_display_in_chromium_shows_orders_bumps_and_refuses_a_guest() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci` in {} (scripts/test.sh does)",
        js.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is missing: `apt-get install -y --no-install-recommends chromium` (scripts/test.sh does)"
    );
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let pos_cert = issue(&ca, tmp.path(), "lyon", "pos-1", "pos");
    let kitchen_cert = issue(&ca, tmp.path(), "lyon", "kitchen-1", "kitchen");
    let (pos_dir, kitchen_dir) = (tmp.path().join("pos1"), tmp.path().join("kitchen1"));
    let doc = format!("orders/{DAY}");
    let on_pos = |args: &[&str]| {
        let mut all = vec!["--cert-dir", p(&pos_cert)];
        all.extend_from_slice(args);
        on(&pos_dir, &all)
    };
    on_pos(&[
        "put",
        &doc,
        "/orders/P1-001",
        r#"{"items": ["burger", "fries"], "total": 1250}"#,
    ])
    .expect_ok();

    // Both devices serve web clients: screens join the kitchen's device (a kitchen may
    // vouch for `kds` and write `/orders/*/kitchen`: a write is checked against the screen's
    // role and the vouching device's), customers' phones the POS (a POS vouches for guests).
    let web_base = |node: &Proc| {
        let line = node.wait_line("out: web clients on ", Duration::from_secs(10));
        line.rsplit(' ')
            .next()
            .map(|u| {
                u.trim()
                    .replacen("wss://", "https://", 1)
                    .replacen("ws://", "http://", 1)
            })
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    };
    let mut cmd = serve_command(&pos_dir, &pos_cert, "127.0.0.1:0", &[]);
    cmd.args(["--ws-listen", "127.0.0.1:0"]);
    let (mut pos, pos_addr) = serving("pos-1", cmd);
    let pos_base = web_base(&pos);
    let mut cmd = serve_command(
        &kitchen_dir,
        &kitchen_cert,
        "127.0.0.1:0",
        &[&pos_addr.to_string()],
    );
    cmd.args(["--ws-listen", "127.0.0.1:0"]);
    let (mut kitchen, _) = serving("kitchen-1", cmd);
    let kitchen_base = web_base(&kitchen);
    // The kitchen printer: the day's orders as a durable consumer feed, through its node.
    let mut printer_cmd = Command::new(outpost_bin());
    printer_cmd.args([
        "--data",
        p(&kitchen_dir),
        "watch",
        &doc,
        "--consumer",
        "printer",
    ]);
    let printer = Proc::spawn("printer", printer_cmd);
    printer.wait_line("\"/orders/P1-001\"", Duration::from_secs(30));

    let token = |dir: &Path, cert: &Path, role: &str, name: &str| {
        on(
            dir,
            &[
                "--cert-dir",
                p(cert),
                "token",
                "issue",
                "--role",
                role,
                "--name",
                name,
                "--ttl",
                "1h",
            ],
        )
        .json()["token"]
            .as_str()
            .expect("a token")
            .to_string()
    };
    let kds_token = token(&kitchen_dir, &kitchen_cert, "kds", "kitchen-screen-1");
    let guest_token = token(&pos_dir, &pos_cert, "guest", "guest-7");

    let artifacts = target_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    for shot in ["kds.png", "kds-guest.png"] {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }
    let mut node_cmd = Command::new("node");
    node_cmd
        .current_dir(&js)
        .arg("kds_page.mjs")
        .arg(&kitchen_base)
        .arg(&kds_token)
        .arg(&pos_base)
        .arg(&guest_token)
        .arg(DAY)
        .arg(&artifacts);
    let mut page = Proc::spawn("chromium", node_cmd);
    page.wait_line("out: WAITING", Duration::from_secs(40));
    let shown = Instant::now();
    on_pos(&[
        "put",
        &doc,
        "/orders/P1-002",
        r#"{"items": ["salad"], "total": 400}"#,
    ])
    .expect_ok();
    let seen = page.wait_line("out: SEEN P1-002", Duration::from_secs(30));
    println!(
        "POS write -> on the screen: {:?} (the page measured {} ms)",
        shown.elapsed(),
        seen.rsplit(' ').next().unwrap_or("?")
    );
    page.wait_line("out: BUMPED P1-002", Duration::from_secs(30));
    let bumped = Instant::now();
    // The bump at the POS, with its author, and at the printer's feed over QUIC.
    eventually("the bump at the POS", Duration::from_secs(20), || {
        let out = on_pos(&["get", &doc, "/orders/P1-002/kitchen/state"]);
        (out.ok() && out.stdout.contains("in_progress")).then_some(())
    });
    println!("bump -> POS: {:?}", bumped.elapsed());
    let fed = printer.wait_line("\"in_progress\"", Duration::from_secs(20));
    assert!(fed.contains("/orders/P1-002"), "{fed}");
    println!("bump -> kitchen printer's feed: {:?}", bumped.elapsed());
    let by = on_pos(&["get", &doc, "/orders/P1-002/kitchen/by"]);
    assert!(by.stdout.contains("kitchen-screen-1"), "{}", by.stdout);

    let status = page.wait_exit(Duration::from_secs(40));
    let output = page.output().join("\n");
    assert!(status.success(), "the page check failed:\n{output}");
    let refused = page
        .output()
        .into_iter()
        .find(|l| l.contains("GUEST REFUSED"))
        .unwrap_or_else(|| panic!("no refusal shown:\n{output}"));
    assert!(refused.contains("403"), "{refused}");
    println!("the guest's page shows: {refused}");
    // Stored nowhere: neither at the POS that refused it nor at the kitchen.
    std::thread::sleep(Duration::from_millis(500));
    for (who, dir, cert) in [
        ("pos", &pos_dir, &pos_cert),
        ("kitchen", &kitchen_dir, &kitchen_cert),
    ] {
        let out = on(dir, &["--cert-dir", p(cert), "get", &doc, "/orders"]);
        assert!(
            out.ok() && out.stdout.contains("P1-002") && !out.stdout.contains("G-666"),
            "{who}: {}",
            out.stdout
        );
    }
    for shot in ["kds.png", "kds-guest.png"] {
        let png = std::fs::read(artifacts.join(shot)).expect("the screenshot was saved");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{shot}: a real screenshot"
        );
    }
    println!(
        "screenshots: {} and kds-guest.png; the whole test: {:?}",
        artifacts.join("kds.png").display(),
        started.elapsed()
    );
    drop(printer);
    kitchen.terminate();
    pos.terminate();
}
