//! Interop with the reference client: `@automerge/automerge-repo` and its WebSocket adapter
//! in Node.js (ws/tests/js/kds.mjs) against a kitchen device serving web clients, with a POS
//! beside it over QUIC. An order the POS writes reaches the Node client; the client's kitchen
//! step reaches the POS; the server restarts, the client bumps an order while it is away,
//! reconnects and resumes both ways. Needs `node` and `npm` (installs ws/tests/js/node_modules
//! with `npm ci` from the committed lock file when missing).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use outpost_core::Durability;
use outpost_ws::{WsConfig, WsLimits, WsServer};
use serde_json::{json, Value as Json};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const DAY: &str = "orders/2026-12-07";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn prepare_js() {
    let node = std::process::Command::new("node").arg("--version").output();
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
    let out = std::process::Command::new("npm")
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

struct Lines(tokio::io::Lines<BufReader<tokio::process::ChildStdout>>);

impl Lines {
    async fn next(&mut self, what: &str) -> Json {
        let line = within(what, self.0.next_line())
            .await
            .expect("read the client's output")
            .unwrap_or_else(|| panic!("{what}: the Node client exited"));
        let v: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
        assert!(v.get("error").is_none(), "{what}: {v}");
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automerge_repo_client_syncs_both_ways_and_resumes_after_a_server_restart() {
    init_tracing();
    prepare_js();
    let site = Site::start(WsLimits::default()).await;
    let (pos, kitchen) = (site.pos.store().clone(), site.kitchen.store().clone());
    let day = doc(DAY);
    pos.put(
        &day,
        "/orders/P1-001",
        json!({"items": ["burger"], "total": 950}),
        Durability::Durable,
    )
    .expect("order");
    wait_value(
        "order at the kitchen",
        &kitchen,
        &day,
        "/orders/P1-001/total",
        &json!(950),
    )
    .await;

    // The kitchen's own web server for this test, so it can be restarted on the same port.
    let config = WsConfig::new("127.0.0.1:0".parse().expect("addr"), site.tokens.clone());
    let web = WsServer::start(kitchen.clone(), config.clone())
        .await
        .expect("ws");
    let addr = web.local_addr();
    let url = format!(
        "ws://{addr}/?token={}",
        site.token("kds", "kitchen-screen-1")
    );
    let doc_url = format!("automerge:{}", site.repo_id(DAY));

    let mut child = tokio::process::Command::new("node")
        .arg("kds.mjs")
        .arg(&url)
        .arg(&doc_url)
        .current_dir(js_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut lines = Lines(BufReader::new(child.stdout.take().expect("stdout")).lines());

    let seen = lines.next("the client sees the POS's order").await;
    assert_eq!(seen, json!({"seen": "P1-001", "total": 950}));
    let started = Instant::now();
    assert_eq!(
        lines.next("the client bumps").await,
        json!({"bumped": "P1-001"})
    );
    wait_value(
        "the bump reaches the POS",
        &pos,
        &day,
        "/orders/P1-001/kitchen/state",
        &json!("in_progress"),
    )
    .await;
    println!("Node client bump -> POS over QUIC: {:?}", started.elapsed());
    // Who wrote it: not a device's actor, vouched for by the kitchen's signature.
    let author = pos
        .conflicts(&day, "/orders/P1-001/kitchen")
        .expect("conflicts");
    println!("the bump's author as the POS sees it: {author:?}");

    let started = Instant::now();
    pos.put(
        &day,
        "/orders/P1-002",
        json!({"total": 400}),
        Durability::Durable,
    )
    .expect("order 2");
    assert_eq!(
        lines.next("live: the second order").await,
        json!({"seen": "P1-002"})
    );
    println!(
        "POS write -> Node client (live, through the kitchen): {:?}",
        started.elapsed()
    );

    // The server restarts; the client bumps P1-002 while it is away and the POS takes P1-003.
    web.shutdown().await;
    assert_eq!(
        lines.next("the offline bump").await,
        json!({"offline_bump": "P1-002"})
    );
    pos.put(
        &day,
        "/orders/P1-003",
        json!({"total": 1200}),
        Durability::Durable,
    )
    .expect("order 3");
    wait_value(
        "order 3 at the kitchen",
        &kitchen,
        &day,
        "/orders/P1-003/total",
        &json!(1200),
    )
    .await;
    let restarted = Instant::now();
    let mut config = config;
    config.listen = addr;
    let web = WsServer::start(kitchen.clone(), config)
        .await
        .expect("ws again");
    let resumed = lines.next("the client resumes").await;
    assert_eq!(resumed, json!({"seen": "P1-003", "resumed": true}));
    wait_value(
        "the offline bump reaches the POS",
        &pos,
        &day,
        "/orders/P1-002/kitchen/state",
        &json!("ready"),
    )
    .await;
    println!(
        "server restart -> client resumed both ways: {:?}",
        restarted.elapsed()
    );
    let status = within("node exits", child.wait()).await.expect("wait");
    assert!(status.success(), "{status}");
    web.shutdown().await;
    site.stop().await;
}
