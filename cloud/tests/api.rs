//! The cloud's HTTP API with the real binaries: a cloud peer, devices of two sites over QUIC
//! on 127.0.0.1, tokens issued with `outpost-cloud token`. Reads and writes by JSON Pointer
//! (a head-office write reaches the site's device; the policy refuses what it refuses a
//! head-office device), the NDJSON export, stock across sites, every refusal and every limit
//! on hostile input, and the API's counters in `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_testbins::*;
use serde_json::{json, Value};

const SYNC: Duration = Duration::from_secs(40);

/// The default restaurant policy, plus head office writing `menu` and `prices`.
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
scope = "fleet"
[policy.contexts.stock]
read = ["pos", "kiosk"]
write = ["pos", "kiosk"]
[policy.contexts.orders]
read = ["pos", "kiosk"]
write = ["pos", "kiosk"]
"#;

struct Client {
    http: SocketAddr,
    auth: String,
}

impl Client {
    fn new(http: SocketAddr, token: &str) -> Client {
        Client {
            http,
            auth: format!("Bearer {token}"),
        }
    }

    fn get(&self, path: &str) -> HttpReply {
        http_request(
            self.http,
            "GET",
            path,
            &[("Authorization", &self.auth)],
            None,
        )
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> HttpReply {
        http_request(
            self.http,
            method,
            path,
            &[
                ("Authorization", &self.auth),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        )
    }
}

/// Asserts a refusal: its status and a JSON body whose message contains `needle`.
#[track_caller]
fn refused(reply: &HttpReply, status: u16, needle: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{reply:?}"
    );
    let body = reply.json();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "the message {message:?} should contain {needle:?}"
    );
    assert!(body["error"].is_string(), "{body}");
}

fn device_get(dir: &Path, doc: &str, path: &str) -> Option<Value> {
    let out = on(dir, &["get", doc, path]);
    out.ok().then(|| out.json())
}

#[test]
fn head_office_reads_writes_exports_and_is_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let paris_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let lyon_cert = issue(&ca, root, "lyon", "pos-1", "pos");
    let config = root.join("cloud.toml");
    std::fs::write(&config, POLICY).expect("config");
    let data = root.join("cloud-data");
    // With the fleet CA's key, the cloud authors the API's writes as head office.
    let ca_key = ca.join("ca.key");
    let (_cloud, quic, http) = start_cloud_with(
        &cloud_cert,
        &data,
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--ca-key",
            ca_key.to_str().expect("utf-8"),
        ],
    );

    // The devices run the fleet's policy too: the API's writes are head office's, and a
    // device takes them only where its policy lets head office write.
    let device_policy = root.join("policy.toml");
    std::fs::write(
        &device_policy,
        POLICY.replace("[policy]\n", "").replace("[policy.", "["),
    )
    .expect("policy file");
    let device = |name: &str, dir: &Path, cert: &Path| {
        let mut cmd = serve_command(dir, cert, "127.0.0.1:0", &[&quic.to_string()]);
        cmd.env("OUTPOST_POLICY", &device_policy);
        serving(name, cmd)
    };
    let (paris_d, lyon_d) = (root.join("paris"), root.join("lyon"));
    let (_paris, _) = device("paris/pos-1", &paris_d, &paris_cert);
    let (lyon, _) = device("lyon/pos-1", &lyon_d, &lyon_cert);
    let put = |dir: &Path, doc: &str, path: &str, value: &str| {
        on(dir, &["put", doc, path, value]).expect_ok();
    };
    put(
        &paris_d,
        "menu",
        "/items/burger",
        r#"{"price": 950, "available": true}"#,
    );
    on(&paris_d, &["incr", "stock", "/burger", "20"]).expect_ok();
    on(&lyon_d, &["incr", "stock", "/burger", "5"]).expect_ok();
    put(
        &paris_d,
        "orders/2026-12-01",
        "/p-1",
        r#"{"items": ["burger"], "total": 950}"#,
    );
    put(
        &paris_d,
        "orders/2026-12-01",
        "/p-2",
        r#"{"items": ["fries"], "total": 300}"#,
    );
    put(
        &lyon_d,
        "orders/2026-12-01",
        "/l-1",
        r#"{"items": ["quiche"], "total": 700}"#,
    );
    put(
        &lyon_d,
        "orders/2026-12-02",
        "/l-2",
        r#"{"items": ["quiche"], "total": 700}"#,
    );

    // Tokens are issued while the cloud runs; it reads them from the data directory.
    let hq = Client::new(
        http,
        &api_token(&data, &["--name", "hq", "--sites", "*", "--write"]),
    );
    let paris_only = Client::new(
        http,
        &api_token(&data, &["--name", "paris-erp", "--sites", "paris"]),
    );

    // Wait until both sites' data reached the cloud.
    eventually("the cloud holds both sites' stock", SYNC, || {
        let r = hq.get("/api/v1/stock/burger");
        (r.status == 200 && r.json()["total"] == json!(25)).then_some(())
    });

    // Authentication.
    refused(
        &http_request(http, "GET", "/api/v1/sites", &[], None),
        401,
        "outpost-cloud token issue",
    );
    refused(
        &Client::new(http, "opt_0000").get("/api/v1/sites"),
        401,
        "unknown or revoked",
    );
    let long = "x".repeat(300);
    refused(
        &Client::new(http, &long).get("/api/v1/sites"),
        401,
        "too long",
    );

    // Sites.
    let sites = hq.get("/api/v1/sites");
    assert_eq!(sites.status, 200, "{}", sites.text());
    let sites = sites.json();
    let names: Vec<&str> = sites["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter_map(|s| s["site"].as_str())
        .collect();
    assert_eq!(names, ["lyon", "paris"], "{sites}");
    for s in sites["sites"].as_array().expect("sites") {
        assert_eq!(s["online"], json!(true), "{s}");
        assert_eq!(s["devices"], json!(1), "{s}");
        assert!(s["last_seen_ms"].as_u64().is_some(), "{s}");
    }
    let only = paris_only.get("/api/v1/sites").json();
    assert_eq!(only["sites"].as_array().map(Vec::len), Some(1), "{only}");
    let site = hq.get("/api/v1/sites/paris").json();
    assert!(
        site["documents"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("orders/2026-12-01"))),
        "{site}"
    );

    // Reads by JSON Pointer; the document id may carry its slash as is or as %2F.
    let r = hq.get("/api/v1/sites/paris/documents/menu?pointer=/items/burger/price");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"], json!(950));
    let r = hq.get("/api/v1/sites/paris/documents/orders%2F2026-12-01?pointer=%2Fp-1%2Ftotal");
    assert_eq!(r.json()["value"], json!(950), "{}", r.text());
    let r = hq.get("/api/v1/sites/paris/documents/orders/2026-12-01");
    assert_eq!(
        r.json()["value"]["p-2"]["total"],
        json!(300),
        "{}",
        r.text()
    );

    // Refusals, each with a message saying what to do.
    refused(
        &paris_only.get("/api/v1/sites/lyon/documents/menu"),
        403,
        "--sites lyon",
    );
    refused(
        &hq.get("/api/v1/sites/nice/documents/menu"),
        404,
        "no site nice",
    );
    refused(
        &hq.get("/api/v1/sites/paris/documents/prices"),
        404,
        "no document prices",
    );
    refused(
        &hq.get("/api/v1/sites/paris/documents/menu?pointer=/items/pizza"),
        404,
        "nothing at",
    );
    refused(
        &hq.get("/api/v1/sites/paris/documents/menu?pointer=items"),
        400,
        "not a JSON Pointer",
    );
    refused(
        &hq.get("/api/v1/sites/paris/documents/Bad!Doc"),
        400,
        "not a document id",
    );
    refused(&hq.get("/api/v1/nothing"), 404, "openapi.json");
    refused(&hq.send("POST", "/api/v1/sites", b"{}"), 405, "use GET");

    // A head-office write reaches the site's device, and is signed by the cloud.
    let w = hq.send(
        "PUT",
        "/api/v1/sites/paris/documents/menu?pointer=/items/burger/price",
        b"1050",
    );
    assert_eq!(w.status, 200, "{}", w.text());
    eventually("the paris POS sees head office's price", SYNC, || {
        (device_get(&paris_d, "menu", "/items/burger/price") == Some(json!(1050))).then_some(())
    });
    // Authored by the head-office identity, not the cloud: the device checked it as head
    // office's change (issue 27), and its history says who wrote it.
    let authors = on(&paris_d, &["conflicts", "menu", "/items/burger/price"]);
    authors.expect_ok();
    let authors = authors.json();
    println!("the price's author at the paris POS: {authors}");
    assert_eq!(authors[0]["author_role"], json!("head-office"), "{authors}");
    assert_eq!(authors[0]["author"], json!("cloud-1-api"), "{authors}");
    // A fleet-wide price: written once, it reaches every site.
    let w = hq.send(
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger",
        br#"{"price": 990, "currency": "EUR"}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());
    for dir in [&paris_d, &lyon_d] {
        eventually("each POS sees the fleet price", SYNC, || {
            (device_get(dir, "prices", "/burger/price") == Some(json!(990))).then_some(())
        });
        let authors = on(dir, &["conflicts", "prices", "/burger"]);
        authors.expect_ok();
        assert_eq!(
            authors.json()[0]["author_role"],
            json!("head-office"),
            "{}",
            authors.json()
        );
    }
    let r = hq.send(
        "GET",
        "/api/v1/fleet/documents/prices?pointer=/burger/price",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"], json!(990));
    // A site's view of a fleet document is the one copy.
    let r = hq.send(
        "GET",
        "/api/v1/sites/lyon/documents/prices?pointer=/burger/currency",
        b"",
    );
    assert_eq!(r.json()["value"], json!("EUR"), "{}", r.text());
    refused(
        &paris_only.send(
            "PUT",
            "/api/v1/fleet/documents/prices?pointer=/fries",
            b"300",
        ),
        403,
        "--sites '*' --write",
    );
    refused(
        &hq.send("PUT", "/api/v1/fleet/documents/menu?pointer=/x", b"1"),
        404,
        "not a fleet document",
    );
    // The policy refuses head office what it refuses a head-office device.
    refused(
        &hq.send(
            "PUT",
            "/api/v1/sites/paris/documents/stock?pointer=/burger",
            b"1",
        ),
        403,
        "does not let role head-office write context stock",
    );
    refused(
        &paris_only.send("PUT", "/api/v1/sites/paris/documents/menu?pointer=/x", b"1"),
        403,
        "read-only",
    );
    refused(
        &hq.send(
            "PUT",
            "/api/v1/sites/paris/documents/menu?pointer=/x",
            b"{not json",
        ),
        400,
        "one JSON value",
    );
    refused(
        &hq.send("PUT", "/api/v1/sites/paris/documents/menu", b"{}"),
        400,
        "path inside the document",
    );
    let d = hq.send(
        "DELETE",
        "/api/v1/sites/paris/documents/menu?pointer=/items/burger/available",
        b"",
    );
    assert_eq!(d.status, 200, "{}", d.text());
    refused(
        &hq.get("/api/v1/sites/paris/documents/menu?pointer=/items/burger/available"),
        404,
        "nothing at",
    );

    // Limits on hostile input.
    let big = vec![b' '; (1 << 20) + 1];
    refused(
        &hq.send("PUT", "/api/v1/sites/paris/documents/menu?pointer=/x", &big),
        413,
        "at most 1048576 bytes",
    );
    let pointer = format!("/{}", "a".repeat(1100));
    refused(
        &hq.get(&format!(
            "/api/v1/sites/paris/documents/menu?pointer={pointer}"
        )),
        400,
        "at most 1024 bytes",
    );
    refused(
        &hq.get(&format!("/api/v1/stock/{}", "a".repeat(5000))),
        414,
        "at most 4096 bytes",
    );

    // Export: one line per site holding the partition, streamed in chunks.
    let e = hq.get("/api/v1/export/orders?partition=2026-12-01");
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.header("transfer-encoding"), Some("chunked"), "{e:?}");
    assert_eq!(e.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = e
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "two sites and the trailer: {}", e.text());
    assert_eq!(lines[0]["site"], json!("lyon"));
    assert_eq!(lines[1]["value"]["p-1"]["total"], json!(950));
    assert_eq!(lines[2]["end"], json!(true), "{}", e.text());
    let e = hq.get("/api/v1/export/orders?partition=2026-12-01&lines=item");
    let keys: Vec<String> = e
        .text()
        .lines()
        .filter(|l| l.contains("\"key\""))
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            format!(
                "{}/{}",
                v["site"].as_str().unwrap_or(""),
                v["key"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(keys, ["lyon/l-1", "paris/p-1", "paris/p-2"]);
    let e = paris_only.get("/api/v1/export/orders?partition=2026-12-01");
    assert_eq!(
        e.text().lines().count(),
        2,
        "only the sites the token reaches, and the trailer"
    );
    refused(
        &hq.get("/api/v1/export/orders?partition=no/pe"),
        400,
        "not a partition",
    );
    refused(
        &hq.get("/api/v1/export/orders?lines=row"),
        400,
        "lines=item",
    );

    // Stock across sites.
    let s = paris_only.get("/api/v1/stock/burger").json();
    assert_eq!(s["total"], json!(20), "{s}");

    // Metrics count requests by endpoint and status.
    let (_, text) = http_get(http, "/metrics");
    assert!(
        metric(
            &text,
            "outpost_api_requests_total{endpoint=\"document\",status=\"403\"}"
        )
        .is_some_and(|n| n >= 3),
        "{text}"
    );
    assert!(
        metric(&text, "outpost_api_refused_total").is_some_and(|n| n >= 15),
        "{text}"
    );
    assert!(
        metric(&text, "outpost_api_export_lines_total").is_some_and(|n| n >= 6),
        "{text}"
    );

    // The OpenAPI document names every operation served.
    let spec = http_request(http, "GET", "/api/v1/openapi.json", &[], None).json();
    for path in [
        "/api/v1/sites",
        "/api/v1/sites/{site}",
        "/api/v1/sites/{site}/documents/{doc}",
        "/api/v1/export/{context}",
        "/api/v1/stock/{item}",
        "/dashboard",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is not in the spec");
    }

    // A site whose devices all left is retired by the cloud (after its idle time); the API
    // loads it again to answer.
    drop(lyon);
    eventually("the cloud retires lyon once its POS is gone", SYNC, || {
        let (_, text) = http_get(http, "/metrics");
        (metric(&text, "outpost_sites_loaded") == Some(1)).then_some(())
    });
    let r = hq.get("/api/v1/stock/burger");
    assert_eq!(r.status, 200, "{}", r.text());
    let lyon_stock = r.json()["sites"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["site"] == "lyon").cloned());
    assert_eq!(
        lyon_stock.map(|s| s["quantity"].clone()),
        Some(json!(5)),
        "{}",
        r.text()
    );

    // A revoked token is refused from the next request on.
    let mut cmd = Command::new(cloud_bin());
    cmd.arg("--data")
        .arg(&data)
        .args(["token", "revoke", "--name", "paris-erp"]);
    run_with(cmd, COMMAND_TIMEOUT).expect_ok();
    refused(&paris_only.get("/api/v1/sites"), 401, "unknown or revoked");
}

/// A policy with per-path rules under head office's contexts: only a POS writes a menu
/// item's recipe, only accounting a price's cost.
const PATH_POLICY: &str = r#"
[policy]
relay_roles = ["cloud", "pos"]
[policy.default_rule]
read = ["pos"]
write = ["pos"]
[policy.contexts.menu]
read = ["pos"]
write = ["pos", "head-office"]
[[policy.contexts.menu.paths]]
path = "/items/*/recipe"
write = ["pos"]
[policy.contexts.prices]
read = ["pos"]
write = ["head-office", "accounting"]
scope = "fleet"
[[policy.contexts.prices.paths]]
path = "/*/cost"
write = ["accounting"]
"#;

/// Head office's identity issued offline (`outpost cert issue --role head-office`) and given
/// to the cloud with `--head-office-cert`/`--head-office-key`: without the fleet CA's key on
/// the cloud, the API's writes are still authored and signed as head office, every device
/// checks them as head office's, and the policy refuses them what it refuses head office. A
/// certificate of another role, or a certificate without its key, stops the cloud at start.
#[test]
fn a_head_office_certificate_issued_offline_authors_api_writes_without_the_ca_key() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let paris_cert = issue(&ca, root, "paris", "pos-1", "pos");
    // Issued on the CA's machine; only cert.pem and key.pem go to the cloud.
    let hq_cert = issue(&ca, root, "acme", "hq-1", "head-office");
    println!(
        "certificates issued: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let config = root.join("cloud.toml");
    std::fs::write(&config, POLICY).expect("config");
    let data = root.join("cloud-data");
    let cert_arg = |dir: &Path, file: &str| dir.join(file).to_str().expect("utf-8").to_string();

    // Refused at start: a certificate of another role, and a certificate without its key.
    let mut wrong = cloud_command(
        &cloud_cert,
        &data,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--head-office-cert",
            &cert_arg(&paris_cert, "cert.pem"),
            "--head-office-key",
            &cert_arg(&paris_cert, "key.pem"),
        ],
    );
    wrong.env_remove("RUST_LOG");
    let out = run_with(wrong, Duration::from_secs(30));
    println!("a pos certificate as head office: {}", out.stderr.trim());
    out.expect_err("--role head-office");
    let no_key = cloud_command(
        &cloud_cert,
        &data,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--head-office-cert", &cert_arg(&hq_cert, "cert.pem")],
    );
    run_with(no_key, Duration::from_secs(30)).expect_err("--head-office-key");

    println!(
        "refusals at start: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // No --ca-key: the CA's key is not on this machine.
    assert!(!data.join("ca.key").exists());
    let (_cloud, quic, http) = start_cloud_with(
        &cloud_cert,
        &data,
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--head-office-cert",
            &cert_arg(&hq_cert, "cert.pem"),
            "--head-office-key",
            &cert_arg(&hq_cert, "key.pem"),
        ],
    );
    let device_policy = root.join("policy.toml");
    std::fs::write(
        &device_policy,
        POLICY.replace("[policy]\n", "").replace("[policy.", "["),
    )
    .expect("policy file");
    let paris_d = root.join("paris");
    let mut cmd = serve_command(&paris_d, &paris_cert, "127.0.0.1:0", &[&quic.to_string()]);
    cmd.env("OUTPOST_POLICY", &device_policy);
    let (_paris, _) = serving("paris/pos-1", cmd);
    let hq = Client::new(
        http,
        &api_token(&data, &["--name", "hq", "--sites", "*", "--write"]),
    );
    println!(
        "cloud and device up: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // A fleet price (only head office writes `prices`) and a site's menu price.
    let w = hq.send(
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger",
        br#"{"price": 990, "currency": "EUR"}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());
    let w = hq.send(
        "PUT",
        "/api/v1/sites/paris/documents/menu?pointer=/items/burger",
        br#"{"price": 1050}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());
    eventually("the paris POS sees head office's prices", SYNC, || {
        (device_get(&paris_d, "prices", "/burger/price") == Some(json!(990))
            && device_get(&paris_d, "menu", "/items/burger/price") == Some(json!(1050)))
        .then_some(())
    });
    println!("writes arrived: {:.1} s", started.elapsed().as_secs_f64());
    // Authored by the offline certificate's identity: the device verified its signature
    // against the fleet CA and checked it as head office's change.
    for (doc, path) in [("prices", "/burger"), ("menu", "/items/burger")] {
        let authors = on(&paris_d, &["conflicts", doc, path]);
        authors.expect_ok();
        let authors = authors.json();
        println!("the author of {doc}{path} at the paris POS: {authors}");
        assert_eq!(authors[0]["author_role"], json!("head-office"), "{authors}");
        assert_eq!(authors[0]["author"], json!("hq-1"), "{authors}");
    }
    // The policy refuses it what it refuses head office (the cloud itself may write stock).
    refused(
        &hq.send(
            "PUT",
            "/api/v1/sites/paris/documents/stock?pointer=/burger",
            b"1",
        ),
        403,
        "does not let role head-office write context stock",
    );
    println!(
        "offline head-office certificate end to end: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A token issued for one site cannot change a fleet document (which every site reads)
/// through that site's path, and a write is checked at every path its value touches, not
/// only at its pointer: a head-office write may not create a key that a per-path rule
/// keeps for another role by nesting it in a new object.
#[test]
fn site_tokens_cannot_write_fleet_documents_and_nested_keys_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let paris_cert = issue(&ca, root, "paris", "pos-1", "pos");
    let config = root.join("cloud.toml");
    std::fs::write(&config, PATH_POLICY).expect("config");
    let data = root.join("cloud-data");
    let (_cloud, quic, http) = start_cloud_with(
        &cloud_cert,
        &data,
        &["--config", config.to_str().expect("utf-8")],
    );
    let paris_d = root.join("paris");
    let (_paris, _) = serve("paris/pos-1", &paris_d, &paris_cert, 0, &[quic]);
    on(
        &paris_d,
        &["put", "menu", "/items/burger", r#"{"price": 950}"#],
    )
    .expect_ok();
    let hq = Client::new(
        http,
        &api_token(&data, &["--name", "hq", "--sites", "*", "--write"]),
    );
    let paris_writer = Client::new(
        http,
        &api_token(
            &data,
            &["--name", "paris-pos", "--sites", "paris", "--write"],
        ),
    );
    eventually("the cloud holds the paris menu", SYNC, || {
        let r = hq.get("/api/v1/sites/paris/documents/menu?pointer=/items/burger/price");
        (r.status == 200).then_some(())
    });
    let w = hq.send(
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger",
        br#"{"price": 990}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());

    // Hole: the site path routed fleet contexts to the fleet store with no every-site check.
    for (method, body) in [("PUT", &b"1"[..]), ("DELETE", &b""[..])] {
        refused(
            &paris_writer.send(
                method,
                "/api/v1/sites/paris/documents/prices?pointer=/burger/price",
                body,
            ),
            403,
            "--sites '*' --write",
        );
    }
    let r = paris_writer.get("/api/v1/sites/paris/documents/prices?pointer=/burger/price");
    assert_eq!(r.json()["value"], json!(990), "{}", r.text());
    // Its own site's documents it still writes.
    let w = paris_writer.send(
        "PUT",
        "/api/v1/sites/paris/documents/menu?pointer=/items/burger/price",
        b"1000",
    );
    assert_eq!(w.status, 200, "{}", w.text());
    // A token for every site may write the fleet document through a site's path too: it is
    // the one copy, checked like a fleet write.
    let w = hq.send(
        "PUT",
        "/api/v1/sites/paris/documents/prices?pointer=/burger/price",
        b"995",
    );
    assert_eq!(w.status, 200, "{}", w.text());

    // Hole: the policy was checked at the pointer only; a new object carried a key that a
    // per-path rule keeps for another role.
    refused(
        &hq.send(
            "PUT",
            "/api/v1/sites/paris/documents/menu?pointer=/items/salad",
            br#"{"price": 500, "recipe": "secret"}"#,
        ),
        403,
        "/items/salad/recipe",
    );
    // Replacing what holds guarded keys needs their rights too (this was refused before).
    refused(
        &hq.send(
            "PUT",
            "/api/v1/sites/paris/documents/menu?pointer=/items",
            br#"{"salad": {"price": 500}}"#,
        ),
        403,
        "write /items in menu",
    );
    refused(
        &hq.send(
            "PUT",
            "/api/v1/fleet/documents/prices?pointer=/fries",
            br#"{"price": 300, "cost": 90}"#,
        ),
        403,
        "/fries/cost",
    );
    refused(
        &hq.send(
            "PUT",
            "/api/v1/sites/paris/documents/prices?pointer=/fries",
            br#"{"price": 300, "cost": 90}"#,
        ),
        403,
        "/fries/cost",
    );
    refused(
        &hq.get("/api/v1/sites/paris/documents/menu?pointer=/items/salad"),
        404,
        "nothing at",
    );
    // The same value without the guarded key is written.
    let w = hq.send(
        "PUT",
        "/api/v1/sites/paris/documents/menu?pointer=/items/salad",
        br#"{"price": 500}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());
    let w = hq.send(
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/fries",
        br#"{"price": 300}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());
    println!(
        "site token on a fleet document: 403 for PUT and DELETE; nested guarded keys refused at \
         /items/salad/recipe, /fries/cost"
    );
}

/// Orders stored as the README shows (`outpost put orders/DAY /orders/K1-001 '{…}'`, the
/// default policy's layout) come out of the export one line per order, with its site and
/// key; an export that finds nothing is told apart from a wrong request; stock of an unknown
/// item is not zero stock; a PUT answers with the value written.
#[test]
fn exports_give_one_line_per_order_and_wrong_requests_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let config = root.join("cloud.toml");
    std::fs::write(&config, POLICY).expect("config");
    let data = root.join("cloud-data");
    let (_cloud, quic, http) = start_cloud_with(
        &cloud_cert,
        &data,
        &["--config", config.to_str().expect("utf-8")],
    );
    let (paris_d, lyon_d) = (root.join("paris"), root.join("lyon"));
    let (_paris, _) = serve(
        "paris/pos-1",
        &paris_d,
        &issue(&ca, root, "paris", "pos-1", "pos"),
        0,
        &[quic],
    );
    let (_lyon, _) = serve(
        "lyon/pos-1",
        &lyon_d,
        &issue(&ca, root, "lyon", "pos-1", "pos"),
        0,
        &[quic],
    );
    let day = "2026-12-07";
    let orders = format!("orders/{day}");
    for (key, total) in [("K1-001", 950), ("K1-002", 300), ("P1-003", 1250)] {
        on(
            &paris_d,
            &[
                "put",
                &orders,
                &format!("/orders/{key}"),
                &format!(r#"{{"items": ["burger"], "total": {total}}}"#),
            ],
        )
        .expect_ok();
    }
    // lyon sold nothing that day, but did the day before.
    on(
        &lyon_d,
        &[
            "put",
            "orders/2026-12-06",
            "/orders/L1-001",
            r#"{"items": ["quiche"], "total": 700}"#,
        ],
    )
    .expect_ok();
    on(
        &paris_d,
        &["put", "menu", "/items/burger", r#"{"price": 950}"#],
    )
    .expect_ok();
    on(&paris_d, &["incr", "stock", "/burger", "20"]).expect_ok();
    on(&lyon_d, &["incr", "stock", "/burger", "5"]).expect_ok();
    let hq = Client::new(
        http,
        &api_token(&data, &["--name", "hq", "--sites", "*", "--write"]),
    );
    eventually("the cloud holds both sites' orders and stock", SYNC, || {
        let paris = hq.get(&format!(
            "/api/v1/sites/paris/documents/{orders}?pointer=/orders/P1-003/total"
        ));
        let lyon = hq.get("/api/v1/sites/lyon/documents/orders%2F2026-12-06");
        let stock = hq.get("/api/v1/stock/burger");
        (paris.status == 200
            && lyon.status == 200
            && stock.status == 200
            && stock.json()["total"] == json!(25))
        .then_some(())
    });

    let started = std::time::Instant::now();
    let e = hq.get(&format!("/api/v1/export/orders?partition={day}&lines=item"));
    assert_eq!(e.status, 200, "{}", e.text());
    let lines: Vec<Value> = e
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let per_order: Vec<String> = lines
        .iter()
        .filter(|l| l.get("key").is_some())
        .map(|l| {
            format!(
                "{}/{} {}",
                l["site"].as_str().unwrap_or(""),
                l["key"].as_str().unwrap_or(""),
                l["value"]["total"]
            )
        })
        .collect();
    assert_eq!(
        per_order,
        ["paris/K1-001 950", "paris/K1-002 300", "paris/P1-003 1250"],
        "{}",
        e.text()
    );
    assert!(
        lines.iter().any(|l| l["path"] == json!("/orders/K1-001")),
        "{}",
        e.text()
    );
    // lyon holds no orders that day: a line says so, and the trailer counts per site.
    assert!(
        lines
            .iter()
            .any(|l| l["site"] == json!("lyon") && l["absent"] == json!(true)),
        "{}",
        e.text()
    );
    let trailer = lines.last().expect("a trailer");
    assert_eq!(trailer["end"], json!(true), "{trailer}");
    assert_eq!(
        trailer["sites"],
        json!({"lyon": 0, "paris": 3}),
        "{trailer}"
    );
    assert_eq!(trailer["lines"], json!(3), "{trailer}");
    // An explicit item pattern.
    let totals = hq.get(&format!(
        "/api/v1/export/orders?partition={day}&lines=item&items=/orders/*/total"
    ));
    assert_eq!(
        totals
            .text()
            .lines()
            .filter(|l| l.contains("\"key\":\"total\""))
            .count(),
        3,
        "{}",
        totals.text()
    );

    // Wrong requests are refused before the stream starts, each saying what to give.
    refused(
        &hq.get("/api/v1/export/orders?lines=item"),
        400,
        "orders is partitioned: give ?partition=",
    );
    refused(
        &hq.get("/api/v1/export/orders?partition=yesterday&lines=item"),
        400,
        "is not a day",
    );
    refused(
        &hq.get("/api/v1/export/orders?partition=2026-12-7&lines=item"),
        400,
        "give YYYY-MM-DD",
    );
    refused(
        &hq.get(&format!("/api/v1/export/menu?partition={day}")),
        400,
        "menu is not partitioned",
    );
    refused(
        &hq.get(&format!("/api/v1/export/order?partition={day}")),
        404,
        "check the context's name",
    );
    refused(
        &hq.get(&format!(
            "/api/v1/export/orders?partition={day}&items=orders"
        )),
        400,
        "not a JSON Pointer",
    );
    // The unpartitioned menu exports without a partition.
    let menu = hq.get("/api/v1/export/menu");
    assert_eq!(menu.status, 200, "{}", menu.text());
    assert!(menu.text().contains("\"price\":950"), "{}", menu.text());

    // Stock: integers stay integers; an unknown item is not zero stock.
    let s = hq.get("/api/v1/stock/burger").json();
    assert_eq!(s["total"], json!(25), "{s}");
    assert!(s["total"].is_u64(), "an integer total: {s}");
    refused(&hq.get("/api/v1/stock/burgerz"), 404, "unknown item");

    // A successful PUT answers with the value written.
    let w = hq.send(
        "PUT",
        "/api/v1/sites/paris/documents/menu?pointer=/items/burger",
        br#"{"price": 990}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json()["value"], json!({"price": 990}), "{}", w.text());
    let w = hq.send(
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/burger",
        br#"{"price": 990, "currency": "EUR"}"#,
    );
    assert_eq!(w.json()["value"]["currency"], json!("EUR"), "{}", w.text());
    println!(
        "export of 3 orders over 2 sites: {} lines (3 orders, 1 absent, 1 trailer) in {:?}; \
         wrong requests: 400/404",
        lines.len(),
        started.elapsed()
    );
}
