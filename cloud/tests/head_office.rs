//! The head-office surface of the cloud checked by outside tools, against the real cloud
//! binary with real devices (QUIC on 127.0.0.1):
//!
//! - schemathesis (PyPI, installed by scripts/test.sh into `<target>/venv-schemathesis`)
//!   fuzzes the API against its own OpenAPI document with every check;
//! - Debian's chromium, driven by playwright-core (npm, `cloud/tests/browser`), opens the
//!   fleet dashboard and sees the sites, a site that went quiet, and an order written on a
//!   device appear live; the screenshot is kept in `<target>/artifacts/dashboard.png`.
//!
//! Both fail (not skip) when their tool is missing: run scripts/test.sh, which installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_testbins::*;

const SYNC: Duration = Duration::from_secs(40);

/// Head office writes `menu` and `prices`; devices follow the restaurant policy.
const POLICY: &str = r#"
[policy]
relay_roles = ["cloud", "pos", "kiosk", "kitchen"]
[policy.default_rule]
read = ["pos"]
write = ["pos"]
[policy.contexts.menu]
read = ["pos", "kiosk"]
write = ["pos", "head-office"]
[policy.contexts.prices]
read = ["pos", "kiosk"]
write = ["head-office"]
[policy.contexts.stock]
read = ["pos", "kiosk"]
write = ["pos", "kiosk"]
[policy.contexts.orders]
read = ["pos", "kiosk"]
write = ["pos", "kiosk"]
[policy.contexts.health]
read = ["pos"]
write = ["pos", "kiosk", "kitchen"]
"#;

/// `outpost serve` with its health reports on (every 2 s), linked to `peer` only.
fn with_health(
    name: &str,
    dir: &Path,
    cert: &Path,
    peer: std::net::SocketAddr,
) -> (Proc, std::net::SocketAddr) {
    let mut cmd = serve_command(dir, cert, "127.0.0.1:0", &[&peer.to_string()]);
    cmd.env("OUTPOST_HEALTH_SECS", "2");
    serving(name, cmd)
}

/// Polls `f` until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The cargo target directory (the test binary is `<target>/debug/deps/<name>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps")
        .to_path_buf()
}

/// A cloud with devices of `paris` and `lyon` online, and `nice`, which synced once and went
/// quiet; in paris, as in a restaurant, a kiosk and a kitchen device linked only to the POS
/// (on the shop's LAN), the kitchen's device then revoked (stolen); returns what the tests
/// need.
struct Fleet {
    _tmp: tempfile::TempDir,
    _cloud: Proc,
    _devices: Vec<Proc>,
    http: std::net::SocketAddr,
    token: String,
    paris: PathBuf,
}

fn fleet() -> Fleet {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let ca = make_ca(&root);
    let cloud_cert = issue(&ca, &root, "acme", "cloud-1", "cloud");
    let config = root.join("cloud.toml");
    std::fs::write(&config, POLICY).expect("config");
    let data = root.join("cloud-data");
    let (cloud, quic, http) = start_cloud_with(
        &cloud_cert,
        &data,
        &["--config", config.to_str().expect("utf-8")],
    );
    let token = api_token(&data, &["--name", "hq", "--sites", "*", "--write"]);
    let get = |path: &str| {
        http_request(
            http,
            "GET",
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
    };

    // nice syncs once, then goes quiet.
    let nice_cert = issue(&ca, &root, "nice", "pos-1", "pos");
    let nice_d = root.join("nice");
    let (mut nice, _) = serve("nice/pos-1", &nice_d, &nice_cert, 0, &[quic]);
    on(&nice_d, &["incr", "stock", "/burger", "3"]).expect_ok();
    eventually("nice's stock reached the cloud", SYNC, || {
        (get("/api/v1/sites/nice/documents/stock?pointer=/burger").status == 200).then_some(())
    });
    nice.terminate();

    let mut devices = Vec::new();
    let mut dirs = Vec::new();
    let mut paris_addr = None;
    for site in ["paris", "lyon"] {
        let cert = issue(&ca, &root, site, "pos-1", "pos");
        let dir = root.join(site);
        let (device, addr) = with_health(&format!("{site}/pos-1"), &dir, &cert, quic);
        devices.push(device);
        dirs.push(dir);
        paris_addr.get_or_insert(addr);
    }
    let paris = dirs[0].clone();
    let pos_addr = paris_addr.expect("paris was served first");
    for (name, role) in [("kiosk-1", "kiosk"), ("kitchen-1", "kitchen")] {
        let cert = issue(&ca, &root, "paris", name, role);
        let (device, _) = with_health(
            &format!("paris/{name}"),
            &root.join(format!("paris-{name}")),
            &cert,
            pos_addr,
        );
        devices.push(device);
    }
    on(&paris, &["incr", "stock", "/burger", "20"]).expect_ok();
    on(
        &paris,
        &["put", "menu", "/items/burger", r#"{"price": 950}"#],
    )
    .expect_ok();
    on(&dirs[1], &["incr", "stock", "/burger", "5"]).expect_ok();
    eventually("both sites online with their stock", SYNC, || {
        let r = get("/api/v1/stock/burger");
        (r.status == 200 && r.json()["total"] == serde_json::json!(28)).then_some(())
    });
    // The kiosk and the kitchen reach the cloud only through the POS: their health does.
    let mut last = String::new();
    let reported = wait_for(SYNC, || {
        let r = get("/api/v1/sites/paris");
        last = r.text();
        r.status == 200 && r.json()["reporting_devices"] == serde_json::json!(3)
    });
    assert!(
        reported,
        "paris's three devices report through the POS: {last}"
    );
    let record = root.join("kitchen-1.rev");
    let (ca_s, record_s) = (ca.to_str().expect("utf-8"), record.to_str().expect("utf-8"));
    outpost(&[
        "cert",
        "revoke",
        "--ca",
        ca_s,
        "--site",
        "paris",
        "--device",
        "kitchen-1",
        "--reason",
        "stolen",
        "--out",
        record_s,
    ])
    .expect_ok();
    let (code, body) = http_post(
        http,
        "/revocations",
        &std::fs::read(&record).expect("record"),
    );
    assert_eq!(code, 200, "{body}");
    let site = get("/api/v1/sites/paris").json();
    assert_eq!(
        (
            site["devices"].clone(),
            site["reporting_devices"].clone(),
            site["revoked_devices"].clone()
        ),
        (
            serde_json::json!(2),
            serde_json::json!(2),
            serde_json::json!(1)
        ),
        "the kiosk behind the POS counts, the revoked kitchen does not: {site}"
    );
    Fleet {
        _tmp: tmp,
        _cloud: cloud,
        _devices: devices,
        http,
        token,
        paris,
    }
}

#[test]
fn dashboard_in_chromium_shows_sites_and_a_live_order() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci` in {} (scripts/test.sh does)",
        browser_dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is missing: `apt-get install -y --no-install-recommends chromium` (scripts/test.sh does)"
    );
    let fleet = fleet();
    let artifacts = target_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut cmd = Command::new("node");
    cmd.current_dir(&browser_dir)
        .arg("dashboard.mjs")
        .arg(format!("http://{}", fleet.http))
        .arg(&fleet.token)
        .arg(&screenshot);
    let mut node = Proc::spawn("node", cmd);
    let today = node
        .wait_line("WAITING ", Duration::from_secs(120))
        .rsplit(' ')
        .next()
        .expect("a day")
        .trim()
        .to_string();
    // An order taken at the paris POS now must appear on the open page.
    on(
        &fleet.paris,
        &[
            "put",
            &format!("orders/{today}"),
            "/orders/K1-live",
            r#"{"items": ["burger", "fries"], "total": 1250}"#,
        ],
    )
    .expect_ok();
    let status = node.wait_exit(Duration::from_secs(120));
    assert!(
        status.success(),
        "the dashboard check failed: {}",
        node.output().join("\n")
    );
    assert!(
        node.output().iter().any(|l| l.contains("LIVE ORDER SEEN")),
        "{:?}",
        node.output()
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
}

#[test]
fn schemathesis_finds_nothing_wrong_with_the_api() {
    let st = std::env::var_os("OUTPOST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("venv-schemathesis/bin/st"));
    assert!(
        st.exists(),
        "schemathesis is not installed at {}: run scripts/test.sh (it installs the pinned version \
         into <target>/venv-schemathesis), or set OUTPOST_SCHEMATHESIS to its `st`",
        st.display()
    );
    let fleet = fleet();
    let base = format!("http://{}", fleet.http);
    let mut cmd = Command::new(&st);
    cmd.args(["run", &format!("{base}/api/v1/openapi.json")])
        .args(["--base-url", &base])
        .args(["--checks", "all"])
        .args(["-H", &format!("Authorization: Bearer {}", fleet.token)])
        .args(["--hypothesis-max-examples", "40"])
        .args(["--hypothesis-seed", "16"])
        .args(["--hypothesis-deadline", "None"])
        .args(["--request-timeout", "20000"])
        .args(["--generation-allow-x00", "false"])
        .args(["--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env(
            "HYPOTHESIS_STORAGE_DIRECTORY",
            target_dir().join("hypothesis"),
        );
    let out = run_with(cmd, Duration::from_secs(300));
    assert!(
        out.ok(),
        "schemathesis found failures:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}
