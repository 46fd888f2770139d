//! One HTTP client cannot freeze the cloud's HTTP server: raw TCP clients on loopback that
//! stall their body, trickle their headers, send too much, open too many connections, or
//! never read an export, while other clients are served. Each test prints the figure it
//! bounds (the limits are in `cloud/API.md`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use outpost_cloud::server::{Cloud, CloudConfig, HttpLimits};
use outpost_testbins::*;
use serde_json::json;

/// What "at once" means on a loaded 2-core CI machine.
const PROMPT: Duration = Duration::from_secs(5);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    s
}

/// Sends `request` on a fresh connection and reads the whole answer; returns (status, text,
/// how long it took). `None` if nothing came within `within`.
fn exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Option<(u16, String, Duration)> {
    let start = Instant::now();
    let mut s = connect(addr);
    s.set_read_timeout(Some(within)).expect("read timeout");
    s.write_all(request).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer (the server closed with our bytes unread) ends it too.
            Err(_) if !raw.is_empty() => break,
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text, start.elapsed()))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: cloud\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Asserts that `path` answers `status` promptly; returns how long it took.
#[track_caller]
fn answers(addr: SocketAddr, path: &str, status: u16) -> Duration {
    let (got, text, took) = exchange(addr, &get(path), PROMPT)
        .unwrap_or_else(|| panic!("GET {path} got no answer within {PROMPT:?}"));
    assert_eq!(got, status, "GET {path}: {text}");
    took
}

/// Reads from `s` until the server closes it (or resets it); returns when, counted from
/// `since`, and what came.
fn until_closed(s: &mut TcpStream, since: Instant, limit: Duration) -> (Duration, String) {
    s.set_read_timeout(Some(limit)).expect("read timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the server kept the connection open for {limit:?}")
            }
            Err(_) => break,
        }
    }
    (since.elapsed(), String::from_utf8_lossy(&raw).into_owned())
}

/// The hole: `POST /revocations` with `Content-Length: 4000` and no body froze tiny_http's
/// one thread, so `/health`, `/metrics`, the API, the dashboard and revocations stopped
/// answering. With the real binary and its default limits; runs against another build with
/// `OUTPOST_BIN_DIR` (this failed on main: `/health` got no answer).
#[test]
fn a_body_that_never_comes_does_not_stop_the_other_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let (_cloud, _quic, http) = start_cloud_with(&cloud_cert, &root.join("cloud-data"), &[]);
    answers(http, "/health", 200);

    let mut stalled = connect(http);
    stalled
        .write_all(b"POST /revocations HTTP/1.1\r\nHost: cloud\r\nContent-Length: 4000\r\n\r\n")
        .expect("send the head");
    // And a second one on the API, whose body never comes either.
    let mut stalled_api = connect(http);
    stalled_api
        .write_all(
            b"PUT /api/v1/fleet/documents/prices?pointer=/x HTTP/1.1\r\nHost: cloud\r\n\
              Authorization: Bearer opt_00\r\nContent-Length: 4000\r\n\r\n",
        )
        .expect("send the head");
    std::thread::sleep(Duration::from_millis(300));

    let mut slowest = Duration::ZERO;
    for (path, status) in [
        ("/health", 200),
        ("/metrics", 200),
        ("/api/v1/openapi.json", 200),
        ("/dashboard", 200),
        ("/api/v1/sites", 401),
    ] {
        slowest = slowest.max(answers(http, path, status));
    }
    let garbage = b"POST /revocations HTTP/1.1\r\nHost: cloud\r\nContent-Length: 3\r\n\r\nabc";
    let (status, text, took) =
        exchange(http, garbage, PROMPT).expect("a revocation is answered while one stalls");
    assert_eq!(status, 400, "{text}");
    slowest = slowest.max(took);
    println!(
        "two clients stalled mid-body (Content-Length 4000, nothing sent); /health, /metrics, \
         the API, the dashboard and revocations answered, the slowest in {slowest:?}"
    );
    drop((stalled, stalled_api));
}

struct InProcess {
    rt: tokio::runtime::Runtime,
    cloud: Option<Cloud>,
    http: SocketAddr,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl InProcess {
    /// A cloud in this process with `limits`; `sites` site namespaces exist before it starts.
    fn start(limits: HttpLimits, sites: usize) -> InProcess {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let ca = make_ca(&root);
        let cert = issue(&ca, &root, "acme", "cloud-1", "cloud");
        let data = root.join("cloud-data");
        if sites > 0 {
            // A site the cloud holds is one with a store namespace in its database.
            let db = sled::open(&data).expect("open the cloud's database");
            for i in 0..sites {
                db.open_tree(format!("site/s{i:02}/chunks"))
                    .expect("a site's namespace");
            }
            db.flush().expect("flush");
        }
        let mut config = CloudConfig::new(
            data.clone(),
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
            cert.join("ca.pem"),
            cert.join("cert.pem"),
            cert.join("key.pem"),
        );
        config.http_limits = limits;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cloud = rt.block_on(Cloud::start(config)).expect("cloud starts");
        let http = cloud.http_addr();
        InProcess {
            rt,
            cloud: Some(cloud),
            http,
            data,
            _tmp: tmp,
        }
    }

    fn cloud(&self) -> &Cloud {
        self.cloud.as_ref().expect("running")
    }

    fn metric(&self, series: &str) -> u64 {
        let (_, text, _) = exchange(self.http, &get("/metrics"), PROMPT).expect("/metrics");
        metric(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(cloud) = self.cloud.take() {
            let _ = self.rt.block_on(cloud.shutdown());
        }
    }
}

fn short(f: impl FnOnce(&mut HttpLimits)) -> HttpLimits {
    let mut limits = HttpLimits::default();
    f(&mut limits);
    limits
}

#[test]
fn a_request_head_that_trickles_is_cut_at_the_header_timeout() {
    let header_timeout = Duration::from_secs(1);
    let c = InProcess::start(short(|l| l.header_timeout = header_timeout), 0);
    // Headers, one line every 300 ms, never ending.
    let mut slow = connect(c.http);
    let start = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: cloud\r\n")
        .expect("send");
    let trickle = {
        let mut s = slow.try_clone().expect("clone");
        std::thread::spawn(move || {
            for i in 0..30 {
                std::thread::sleep(Duration::from_millis(300));
                if s.write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                    .is_err()
                {
                    return i;
                }
            }
            30
        })
    };
    // Meanwhile others are served.
    answers(c.http, "/health", 200);
    let (closed_after, _) = until_closed(&mut slow, start, Duration::from_secs(10));
    let lines = trickle.join().expect("trickle");
    // A connection that sends nothing at all is closed the same way.
    let mut idle = connect(c.http);
    let start = Instant::now();
    let (idle_closed_after, _) = until_closed(&mut idle, start, Duration::from_secs(10));
    println!(
        "header timeout {header_timeout:?}: a trickled head ({lines} lines sent) was cut after \
         {closed_after:?}, a silent connection after {idle_closed_after:?}"
    );
    for took in [closed_after, idle_closed_after] {
        assert!(
            took >= header_timeout - Duration::from_millis(100) && took < header_timeout + PROMPT,
            "closed after {took:?}"
        );
    }
    assert!(c.metric("outpost_http_timeouts_total{kind=\"header\"}") >= 2);
}

#[test]
fn a_body_that_trickles_gets_408_at_the_body_timeout() {
    let body_timeout = Duration::from_secs(1);
    let c = InProcess::start(short(|l| l.body_timeout = body_timeout), 0);
    let token = api_token(&c.data, &["--name", "hq", "--sites", "*", "--write"]);
    let requests = [
        (
            "revocation",
            "POST /revocations HTTP/1.1\r\nHost: cloud\r\nContent-Length: 4000\r\n\r\n".to_string(),
        ),
        (
            "API write",
            format!(
                "PUT /api/v1/fleet/documents/prices?pointer=/x HTTP/1.1\r\nHost: cloud\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: 4000\r\n\r\n"
            ),
        ),
    ];
    for (what, head) in requests {
        let mut slow = connect(c.http);
        let start = Instant::now();
        slow.write_all(head.as_bytes()).expect("send the head");
        let trickle = {
            let mut s = slow.try_clone().expect("clone");
            std::thread::spawn(move || {
                // 10 bytes every 200 ms: 4000 bytes would take 80 s.
                for _ in 0..400 {
                    std::thread::sleep(Duration::from_millis(200));
                    if s.write_all(b"          ").is_err() {
                        return;
                    }
                }
            })
        };
        let (took, answer) = until_closed(&mut slow, start, Duration::from_secs(10));
        drop(slow);
        let _ = trickle.join();
        println!(
            "body timeout {body_timeout:?}: a trickled {what} body was answered after {took:?}: {}",
            answer.lines().next().unwrap_or("")
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
        assert!(answer.contains("did not arrive within"), "{what}: {answer}");
        assert!(took < body_timeout + PROMPT, "{what}: {took:?}");
    }
    assert!(c.metric("outpost_http_timeouts_total{kind=\"body\"}") >= 2);
    // The same write sent at once is taken.
    let body = br#"{"price": 1}"#;
    let reply = http_request(
        c.http,
        "PUT",
        "/api/v1/fleet/documents/prices?pointer=/x",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        Some(body),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn oversized_bodies_are_refused_before_they_are_read() {
    let c = InProcess::start(HttpLimits::default(), 0);
    let token = api_token(&c.data, &["--name", "hq", "--sites", "*", "--write"]);
    // Declared too large: refused at once, no byte of the body sent.
    let (status, text, took) = exchange(
        c.http,
        b"POST /revocations HTTP/1.1\r\nHost: cloud\r\nContent-Length: 1073741824\r\n\r\n",
        PROMPT,
    )
    .expect("an answer without the body");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("at most 4096 bytes"), "{text}");
    println!("a revocation declaring 1 GiB: 413 after {took:?}, nothing read");
    let head = format!(
        "PUT /api/v1/fleet/documents/prices?pointer=/x HTTP/1.1\r\nHost: cloud\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 2097152\r\n\r\n"
    );
    let (status, text, took) = exchange(c.http, head.as_bytes(), PROMPT).expect("an answer");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("at most 1048576 bytes"), "{text}");
    println!("an API write declaring 2 MiB: 413 after {took:?}, nothing read");
    // Not declared (chunked): cut where it passes the limit.
    let mut chunked =
        b"POST /revocations HTTP/1.1\r\nHost: cloud\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(b"3e8\r\n");
        chunked.extend_from_slice(&[b'x'; 1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text, _) = exchange(c.http, &chunked, PROMPT).expect("an answer");
    assert_eq!(status, 413, "{text}");
    println!("a chunked revocation of 5000 bytes: 413 (limit 4096)");
}

#[test]
fn one_client_cannot_take_every_connection() {
    let per_client = 4;
    let c = InProcess::start(
        short(|l| {
            l.max_connections_per_client = per_client;
            // The held connections stay open for the test's length.
            l.header_timeout = Duration::from_secs(20);
        }),
        0,
    );
    let held: Vec<TcpStream> = (0..per_client).map(|_| connect(c.http)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // One more from the same address: 503 at once.
    let mut extra = connect(c.http);
    let start = Instant::now();
    let (took, answer) = until_closed(&mut extra, start, PROMPT);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(&format!("at most {per_client} at once")),
        "{answer}"
    );
    // Another address (127.0.0.2 is loopback too) is served meanwhile.
    let other = c.rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        let stream = socket.connect(c.http).await.expect("connect");
        stream.into_std().expect("std stream")
    });
    other.set_nonblocking(false).expect("blocking");
    let mut other = other;
    other.write_all(&get("/health")).expect("send");
    let (_, answer) = until_closed(&mut other, Instant::now(), PROMPT);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Once the first address closes its connections, it is served again. Until the
    // server has seen them go, a retry may still be refused (and counted): count those.
    drop(held);
    let mut refused_retries = 0;
    let served_again = eventually("the address is served again", PROMPT, || {
        let answer = exchange(c.http, &get("/health"), PROMPT);
        if matches!(answer, Some((503, _, _))) {
            refused_retries += 1;
        }
        answer.filter(|(s, _, _)| *s == 200)
    });
    // Every refusal is counted, and nothing else is: the extra connection and the
    // retries that came before the server saw the held connections close.
    assert_eq!(
        c.metric("outpost_http_connections_refused_total{limit=\"client\"}"),
        1 + refused_retries
    );
    println!(
        "{per_client} connections per address: the next one got 503 in {took:?}; another \
         address was served; after closing, served again in {:?}",
        served_again.2
    );
}

#[test]
fn an_export_client_that_never_reads_is_dropped_at_the_send_timeout() {
    let send_timeout = Duration::from_secs(2);
    let sites = 8;
    let c = InProcess::start(short(|l| l.send_timeout = send_timeout), sites);
    let token = api_token(&c.data, &["--name", "hq", "--sites", "*", "--write"]);
    // A fleet document is read through every site: 8 sites x 1 MiB = an 8 MiB export, more
    // than the sockets buffer.
    let prices = "prices".parse().expect("doc");
    let role = "head-office".parse().expect("role");
    c.cloud()
        .fleet()
        .put(&prices, "/blob", &json!("x".repeat(1 << 20)), &role)
        .expect("a large fleet document");
    let export = format!(
        "GET /api/v1/export/prices HTTP/1.1\r\nHost: cloud\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    // Two clients (every export slot) ask and never read.
    let start = Instant::now();
    let stalled: Vec<tokio::net::TcpStream> = c.rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..2 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .set_recv_buffer_size(4096)
                .expect("small receive buffer");
            let mut s = socket.connect(c.http).await.expect("connect");
            tokio::io::AsyncWriteExt::write_all(&mut s, export.as_bytes())
                .await
                .expect("send");
            out.push(s);
        }
        out
    });
    std::thread::sleep(Duration::from_millis(500));
    let busy = http_request(
        c.http,
        "GET",
        "/api/v1/export/prices",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(busy.status, 429, "both slots are taken: {}", busy.text());
    // Once the send timeout dropped them, a reading client gets the whole export.
    let reply = eventually(
        "an export slot is free again",
        send_timeout * 3 + PROMPT * 2,
        || {
            let r = http_request(
                c.http,
                "GET",
                "/api/v1/export/prices",
                &[("Authorization", &format!("Bearer {token}"))],
                None,
            );
            (r.status == 200).then_some(r)
        },
    );
    let freed = start.elapsed();
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    // One line per site, then the trailer that says the export is complete.
    assert_eq!(lines.len(), sites + 1, "one line per site and a trailer");
    let trailer: serde_json::Value =
        serde_json::from_str(lines[sites]).expect("the trailer is JSON");
    assert_eq!(trailer["end"], json!(true), "{trailer}");
    let dropped = c.metric("outpost_http_timeouts_total{kind=\"send\"}");
    println!(
        "send timeout {send_timeout:?}: two exports of {} MiB whose clients never read were \
         dropped ({dropped} send timeouts); a slot was free again after {freed:?}",
        reply.body.len() >> 20
    );
    assert!(dropped >= 2, "{dropped}");
    assert!(freed < send_timeout * 3 + PROMPT * 2, "{freed:?}");
    drop(stalled);
}
