//! The cloud as a web peer (`outpost-cloud --ws-listen`), with the real binaries and the
//! reference client: `@automerge/automerge-repo` with its WebSocket adapter in Node.js
//! (ws/tests/js/kds.mjs) syncs a site's orders through the cloud with a token the cloud's
//! operator issued for the site (`outpost-cloud web-token issue`), while the site's POS
//! syncs with the cloud over QUIC. An order the POS writes reaches the client; the client's
//! kitchen step reaches the POS (vouched for by the cloud, checked by the POS); the cloud
//! restarts, the client bumps an order while it is away, reconnects and resumes both ways.
//! Needs `node` and `npm` (installs ws/tests/js/node_modules with `npm ci` when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_testbins::*;
use serde_json::{json, Value as Json};

const DAY: &str = "orders/2026-12-07";
const WAIT: Duration = Duration::from_secs(25);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ws/tests/js")
}

fn prepare_js() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "this test runs the automerge-repo client in Node.js (18 or later): install it (e.g. \
         `apt-get install nodejs npm`) and run the tests again"
    );
    let dir = js_dir();
    if dir
        .join("node_modules/@automerge/automerge-repo-network-websocket/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .expect("run npm");
    assert!(
        out.status.success(),
        "`npm ci` in {} failed (it needs npm and the npm registry):\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `n`th JSON line the Node client printed (0-based), waiting for it.
fn client_line(client: &Proc, n: usize, what: &str) -> Json {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines: Vec<String> = client
            .output()
            .into_iter()
            .filter_map(|l| l.strip_prefix("out: ").map(str::to_string))
            .collect();
        if let Some(l) = lines.get(n) {
            let v: Json =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}"));
            assert!(v.get("error").is_none(), "{what}: {v}");
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the client said nothing in {WAIT:?}; output:\n{}",
            client.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pos_value(pos: &Path, path: &str) -> Option<Json> {
    let out = on(pos, &["get", DAY, path]);
    out.ok().then(|| out.json())
}

#[test]
fn the_automerge_repo_client_syncs_a_site_through_the_cloud_and_resumes_after_a_restart() {
    prepare_js();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let pos_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let data = root.join("cloud-data");

    // The operator issues the screen's token for site paris (before or while the cloud runs).
    let issued = cloud_web_token(&data, "paris", "kds", "screen-1");
    let token = issued.expect_ok().trim().to_string();
    // The cloud may not vouch for a role its policy's `vouch` does not list.
    let issued = cloud_web_token(&data, "paris", "pos", "x");
    issued.expect_err("may not vouch");

    let (quic, http, ws) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let start_cloud = || {
        let cloud = Proc::spawn(
            "cloud",
            cloud_command(
                &cloud_cert,
                &data,
                &format!("127.0.0.1:{quic}"),
                &format!("127.0.0.1:{http}"),
                // The Node adapter cannot be told which name to verify (the certificate
                // names `outpost`): plain ws here, wss in the test below.
                &["--ws-listen", &format!("127.0.0.1:{ws}"), "--ws-plain"],
            ),
        );
        cloud.wait_line("outpost-cloud started", WAIT);
        cloud
    };
    let mut cloud = start_cloud();
    let ws_addr: std::net::SocketAddr = format!("127.0.0.1:{ws}").parse().expect("addr");
    let quic_addr: std::net::SocketAddr = format!("127.0.0.1:{quic}").parse().expect("addr");
    let pos_d = root.join("pos");
    let (_pos, _) = serve("paris/pos-1", &pos_d, &pos_cert, 0, &[quic_addr]);

    // A site with no web token is not served; a paris token is nothing at another site.
    let (status, body) = http_get(ws_addr, &format!("/sites/lyon/v1/documents?token={token}"));
    assert_eq!(status, 404, "{body}");
    println!("unknown site: {status} {body}");

    on(
        &pos_d,
        &[
            "put",
            DAY,
            "/orders/P1-001",
            r#"{"items": ["burger"], "total": 950}"#,
        ],
    )
    .expect_ok();
    // The client looks the document's id up by name, and waits until the cloud holds it.
    let listed = eventually("the order at the cloud", WAIT, || {
        let (status, body) = http_get(
            ws_addr,
            &format!("/sites/paris/v1/documents?name={DAY}&token={token}"),
        );
        assert_eq!(status, 200, "{body}");
        let v: Json = serde_json::from_str(&body).expect("JSON");
        (v["exists"] == json!(true)).then_some(v)
    });
    assert_eq!(
        listed["documentId"],
        json!(outpost_ws::repo_document_id(
            &"paris".parse().expect("site"),
            &DAY.parse().expect("doc")
        )),
        "the cloud gives the site's document id, the same as the site's devices"
    );
    let url = format!("ws://{ws_addr}/sites/paris?token={token}");
    let doc_url = listed["url"].as_str().expect("url").to_string();

    let mut node = Command::new("node");
    node.arg("kds.mjs")
        .arg(&url)
        .arg(&doc_url)
        .current_dir(js_dir());
    let mut client = Proc::spawn("node", node);
    assert_eq!(
        client_line(&client, 0, "the client sees the POS's order"),
        json!({"seen": "P1-001", "total": 950})
    );
    let started = Instant::now();
    assert_eq!(
        client_line(&client, 1, "the bump"),
        json!({"bumped": "P1-001"})
    );
    eventually("the bump at the POS", WAIT, || {
        (pos_value(&pos_d, "/orders/P1-001/kitchen/state") == Some(json!("in_progress")))
            .then_some(())
    });
    println!(
        "Node client bump -> cloud -> POS over QUIC: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    on(&pos_d, &["put", DAY, "/orders/P1-002", r#"{"total": 400}"#]).expect_ok();
    assert_eq!(
        client_line(&client, 2, "live: the second order"),
        json!({"seen": "P1-002"})
    );
    println!("POS write -> cloud -> Node client: {:?}", started.elapsed());

    // The cloud restarts; the client bumps P1-002 while it is away, and the POS takes P1-003.
    cloud.terminate();
    assert_eq!(
        client_line(&client, 3, "the offline bump"),
        json!({"offline_bump": "P1-002"})
    );
    on(
        &pos_d,
        &["put", DAY, "/orders/P1-003", r#"{"total": 1200}"#],
    )
    .expect_ok();
    let restarted = Instant::now();
    let mut cloud = start_cloud();
    assert_eq!(
        client_line(&client, 4, "the client resumes"),
        json!({"seen": "P1-003", "resumed": true})
    );
    eventually("the offline bump at the POS", WAIT, || {
        (pos_value(&pos_d, "/orders/P1-002/kitchen/state") == Some(json!("ready"))).then_some(())
    });
    println!(
        "cloud restart -> client resumed both ways: {:?}",
        restarted.elapsed()
    );
    let status = client.wait_exit(WAIT);
    assert!(status.success(), "{status}: {}", client.output().join("\n"));
    cloud.terminate();
}

/// An HTTPS GET of `path` at `addr` with Node's TLS client, verifying the server as `outpost`
/// against `ca` (`None`: Node's default roots). Returns the status, or the TLS error.
fn node_https_get(
    addr: std::net::SocketAddr,
    path: &str,
    ca: Option<&Path>,
) -> Result<u16, String> {
    let script = r#"
const https = require('https'); const fs = require('fs');
const [port, path, ca] = process.argv.slice(1);
const opts = { host: '127.0.0.1', port: Number(port), path, servername: 'outpost', timeout: 10000 };
if (ca) opts.ca = fs.readFileSync(ca);
https.get(opts, (res) => { res.resume(); res.on('end', () => console.log('status ' + res.statusCode)); })
  .on('error', (e) => console.log('error ' + e.code + ' ' + e.message));
"#;
    let mut cmd = Command::new("node");
    cmd.arg("-e")
        .arg(script)
        .arg(addr.port().to_string())
        .arg(path)
        .arg(ca.map(|p| p.display().to_string()).unwrap_or_default());
    let ran = run_with(cmd, COMMAND_TIMEOUT);
    let line = ran.expect_ok().trim().to_string();
    match line.strip_prefix("status ") {
        Some(code) => code.parse().map_err(|_| line.clone()),
        None => Err(line),
    }
}

#[test]
fn the_cloud_serves_wss_with_its_certificate_unless_told_plain() {
    prepare_js();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let data = root.join("cloud-data");
    let issued = cloud_web_token(&data, "paris", "kds", "screen-1");
    let token = issued.expect_ok().trim().to_string();
    let (quic, http, ws) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let mut cloud = Proc::spawn(
        "cloud",
        cloud_command(
            &cloud_cert,
            &data,
            &format!("127.0.0.1:{quic}"),
            &format!("127.0.0.1:{http}"),
            &["--ws-listen", &format!("127.0.0.1:{ws}")],
        ),
    );
    cloud.wait_line("outpost-cloud started", WAIT);
    let said = cloud.wait_line("serving automerge-repo clients", WAIT);
    assert!(said.contains("wss"), "{said}");
    let ws_addr: std::net::SocketAddr = format!("127.0.0.1:{ws}").parse().expect("addr");
    let path = format!("/sites/paris/v1/documents?token={token}");

    // A client that trusts the fleet CA verifies the cloud as `outpost` and gets its answer.
    let status = node_https_get(ws_addr, &path, Some(&ca.join("ca.pem")));
    println!("wss with the fleet CA: {status:?}");
    assert_eq!(status, Ok(200));
    // One that does not trust the fleet CA gets nowhere.
    let refused = node_https_get(ws_addr, &path, None);
    println!("wss without the fleet CA: {refused:?}");
    assert!(refused.is_err(), "{refused:?}");
    // Nor does plain HTTP (tokens would cross the network in the clear).
    let mut s = std::net::TcpStream::connect(ws_addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    use std::io::{Read, Write};
    // The server may close before the request is written: either way no HTTP answer.
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP answered on the wss port: {}",
        String::from_utf8_lossy(&raw)
    );
    cloud.terminate();
}
