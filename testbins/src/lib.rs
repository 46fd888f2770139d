//! Helpers for integration tests that run the real `outpost` (crate `outpost-cli`) and
//! `outpost-cloud` (crate `outpost-cloud`) binaries, with a timeout on every wait.
//!
//! Cargo gives a test the path of its own package's binaries only (`CARGO_BIN_EXE_<name>`),
//! and a test of the cloud needs devices (`outpost`) as much as a test of the CLI needs a
//! cloud. So [`outpost_bin`] and [`cloud_bin`] ask cargo to build the binary (a no-op when it
//! is fresh; once per test process) into the target directory and profile the running test
//! was built in, and return its path there. Set `OUTPOST_BIN_DIR` to use binaries built
//! beforehand instead (e.g. tests run outside cargo).

#![allow(missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default timeout of one short command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long building a missing or stale binary may take (it may wait for the build lock of a
/// shared target directory).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

/// The `outpost` binary of this workspace, fresh.
pub fn outpost_bin() -> PathBuf {
    binary("outpost-cli", "outpost")
}

/// The `outpost-cloud` binary of this workspace, fresh.
pub fn cloud_bin() -> PathBuf {
    binary("outpost-cloud", "outpost-cloud")
}

/// The path of binary `bin` of workspace package `package`, built (once per process) with
/// the profile and target directory of the running test executable.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let exe_name = format!("{bin}{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::var_os("OUTPOST_BIN_DIR") {
        return PathBuf::from(dir).join(exe_name);
    }
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    // A test executable lives in <target>/<profile dir>/deps/.
    let exe = std::env::current_exe().expect("the test knows its own executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a cargo test executable lives in <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("a cargo profile directory has a parent")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        // `cargo test` builds with the `test` profile, which writes into `debug/` as `dev`
        // does; using it avoids rebuilding what the test run has just built.
        Some("debug") | None => "test".to_string(),
        Some("release") => "bench".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin, "--profile"])
        .arg(&profile)
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(&manifest);
    let out = run_with(cmd, BUILD_TIMEOUT);
    assert!(
        out.ok(),
        "cannot build {bin} (package {package}) for this test:\n{}",
        out.stderr
    );
    let path = profile_dir.join(exe_name);
    assert!(
        path.exists(),
        "cargo built {bin} but {} is missing",
        path.display()
    );
    built.insert(bin.to_string(), path.clone());
    path
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Whether the command exited with status 0.
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn expect_ok(&self) -> &str {
        assert!(
            self.status.success(),
            "command failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert_no_panic(&self.stderr);
        &self.stdout
    }

    /// Asserts a clean failure: non-zero exit, a message on stderr containing `needle`,
    /// no panic and no backtrace.
    #[track_caller]
    pub fn expect_err(&self, needle: &str) {
        assert!(
            !self.status.success(),
            "command should have failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert_ne!(self.status.code(), Some(101), "exit code 101 is a panic");
        assert!(
            self.stderr.contains(needle),
            "stderr should mention {needle:?}:\n{}",
            self.stderr
        );
        assert_no_panic(&self.stderr);
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.expect_ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

#[track_caller]
pub fn assert_no_panic(stderr: &str) {
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "stack backtrace",
        "internal error",
    ] {
        assert!(!stderr.contains(bad), "stderr shows {bad:?}:\n{stderr}");
    }
}

/// Devices started by tests publish no health reports unless the test asks for them
/// (`OUTPOST_HEALTH_SECS` set on the command): most tests count documents and changes.
fn quiet_health(cmd: &mut Command) {
    if !cmd.get_envs().any(|(k, _)| k == "OUTPOST_HEALTH_SECS") {
        cmd.env("OUTPOST_HEALTH_SECS", "0");
    }
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run_with(mut cmd: Command, timeout: Duration) -> Outcome {
    quiet_health(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// `outpost ARGS...`
pub fn outpost(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(outpost_bin());
    cmd.args(args)
        .env_remove("OUTPOST_DATA")
        .env_remove("OUTPOST_CERT_DIR");
    run_with(cmd, COMMAND_TIMEOUT)
}

/// `outpost --data DIR ARGS...`
pub fn on(dir: &Path, args: &[&str]) -> Outcome {
    let mut all = vec!["--data", dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    outpost(&all)
}

/// A long-running child (a node, a watch, the cloud) whose output lines are collected.
/// Killed (by its own pid) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: mpsc::Receiver<()>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        quiet_health(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, new_line) = mpsc::channel();
        for (stream, tag) in [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                "out",
            ),
            (Box::new(child.stderr.take().expect("stderr")), "err"),
        ] {
            let lines = lines.clone();
            let tx = tx.clone();
            let name = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("OUTPOST_TEST_ECHO").is_some() {
                        eprintln!("[{name} {tag}] {line}");
                    }
                    lines.lock().expect("lines").push(format!("{tag}: {line}"));
                    let _ = tx.send(());
                }
            });
        }
        Proc {
            name: name.to_string(),
            child: Some(child),
            lines,
            new_line,
        }
    }

    /// Every line so far, prefixed by `out: ` or `err: `.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits for a line containing `needle` (on stdout or stderr) and returns it.
    #[track_caller]
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        self.wait_line_after(0, needle, timeout)
    }

    /// Like [`Proc::wait_line`], ignoring the first `skip` lines.
    #[track_caller]
    pub fn wait_line_after(&self, skip: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .output()
                .into_iter()
                .skip(skip)
                .find(|l| l.contains(needle))
            {
                return l;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: no line with {needle:?} within {timeout:?}; output:\n{}",
                    self.name,
                    self.output().join("\n")
                );
            }
            let _ = self
                .new_line
                .recv_timeout(left.min(Duration::from_millis(200)));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by pid with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                self.child = None;
                // Let the reader threads collect the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.output().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit with status 0.
    #[track_caller]
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(20));
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM; output:\n{}",
            self.name,
            self.output().join("\n")
        );
        for l in self.output() {
            assert!(!l.contains("panicked"), "{}: {l}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `outpost --data DIR --cert-dir CERT serve --listen 127.0.0.1:PORT --peer ...` and
/// returns it with the address it serves on.
pub fn serve(
    name: &str,
    dir: &Path,
    cert: &Path,
    port: u16,
    peers: &[SocketAddr],
) -> (Proc, SocketAddr) {
    let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    serving(
        name,
        serve_command(dir, cert, &format!("127.0.0.1:{port}"), &peers),
    )
}

/// The command line `outpost --data DIR --cert-dir CERT serve --listen LISTEN --peer ...`
/// (peers by address or by name), for [`serving`].
pub fn serve_command(dir: &Path, cert: &Path, listen: &str, peers: &[&str]) -> Command {
    let mut cmd = Command::new(outpost_bin());
    cmd.arg("--data")
        .arg(dir)
        .arg("--cert-dir")
        .arg(cert)
        .args(["serve", "--listen", listen])
        .env_remove("OUTPOST_DATA")
        .env("RUST_LOG", "info,outpost_transport=debug");
    for p in peers {
        cmd.args(["--peer", p]);
    }
    cmd
}

/// Starts an `outpost ... serve` command line and waits until it serves: returns it with
/// the address it serves on.
pub fn serving(name: &str, cmd: Command) -> (Proc, SocketAddr) {
    let proc = Proc::spawn(name, cmd);
    let line = proc.wait_line("out: serving ", Duration::from_secs(30));
    let addr = line
        .rsplit(" on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (proc, addr)
}

/// Issues certificates with the CLI: returns the directory.
pub fn issue(ca: &Path, root: &Path, site: &str, device: &str, role: &str) -> PathBuf {
    issue_with(ca, root, site, device, role, &[])
}

/// Like [`issue`], with more arguments of `outpost cert issue` (e.g. `["--days", "5"]`).
pub fn issue_with(
    ca: &Path,
    root: &Path,
    site: &str,
    device: &str,
    role: &str,
    extra: &[&str],
) -> PathBuf {
    let out = root.join(format!("cert-{site}-{device}"));
    let mut args = vec![
        "cert",
        "issue",
        "--ca",
        ca.to_str().expect("utf-8"),
        "--site",
        site,
        "--device",
        device,
        "--role",
        role,
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    outpost(&args).expect_ok();
    out
}

/// Starts `outpost-cloud` on ephemeral loopback ports with the certificate in `cert_dir`
/// (from [`issue`]), its data in `data` and more flags in `extra`; returns it with its QUIC
/// and HTTP addresses.
pub fn start_cloud_with(
    cert_dir: &Path,
    data: &Path,
    extra: &[&str],
) -> (Proc, SocketAddr, SocketAddr) {
    let cloud = Proc::spawn(
        "cloud",
        cloud_command(cert_dir, data, "127.0.0.1:0", "127.0.0.1:0", extra),
    );
    let (quic, http) = cloud_addresses(&cloud);
    (cloud, quic, http)
}

/// The command line of [`start_cloud_with`], listening on `listen` (QUIC) and `http`.
pub fn cloud_command(
    cert_dir: &Path,
    data: &Path,
    listen: &str,
    http: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(cloud_bin());
    cmd.args(["--listen", listen, "--http", http])
        .arg("--data")
        .arg(data)
        .arg("--ca")
        .arg(cert_dir.join("ca.pem"))
        .arg("--cert")
        .arg(cert_dir.join("cert.pem"))
        .arg("--key")
        .arg(cert_dir.join("key.pem"))
        .args(extra)
        .env("RUST_LOG", "info");
    cmd
}

/// Issues a cloud API token with `outpost-cloud --data DATA token issue ARGS` (e.g.
/// `["--name", "hq", "--sites", "*", "--write"]`); returns the token it printed.
pub fn api_token(data: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(cloud_bin());
    cmd.arg("--data")
        .arg(data)
        .args(["token", "issue"])
        .args(args)
        .env_remove("OUTPOST_DATA");
    run_with(cmd, COMMAND_TIMEOUT)
        .expect_ok()
        .trim()
        .to_string()
}

/// Waits until a spawned `outpost-cloud` says it started; returns its QUIC and HTTP
/// addresses from that line (useful with port 0).
pub fn cloud_addresses(cloud: &Proc) -> (SocketAddr, SocketAddr) {
    let line = cloud.wait_line("outpost-cloud started", Duration::from_secs(30));
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (field("quic_addr="), field("http="))
}

/// Creates a fleet CA with the CLI.
pub fn make_ca(root: &Path) -> PathBuf {
    let ca = root.join("ca");
    outpost(&["cert", "ca", "--out", ca.to_str().expect("utf-8")]).expect_ok();
    ca
}

/// `outpost-cloud --data DATA web-token issue --site SITE --role ROLE --name NAME`: a web
/// client's token for a site, issued by the cloud's operator (stdout: the token).
pub fn cloud_web_token(data: &Path, site: &str, role: &str, name: &str) -> Outcome {
    let mut cmd = Command::new(cloud_bin());
    cmd.arg("--data").arg(data).args([
        "web-token",
        "issue",
        "--site",
        site,
        "--role",
        role,
        "--name",
        name,
    ]);
    run_with(cmd, COMMAND_TIMEOUT)
}

/// Creates a fleet CA named `fleet` with the CLI.
pub fn make_ca_for(root: &Path, fleet: &str) -> PathBuf {
    let ca = root.join("ca");
    outpost(&[
        "cert",
        "ca",
        "--out",
        ca.to_str().expect("utf-8"),
        "--fleet",
        fleet,
    ])
    .expect_ok();
    ca
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
#[track_caller]
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {raw}"));
    (status, body.to_string())
}

/// A plain HTTP/1.0 POST of `body`; returns (status, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("send request");
    s.write_all(body).expect("send body");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {raw}"));
    (status, body.to_string())
}

/// The value of an unlabelled or labelled sample in Prometheus text, e.g.
/// `metric(text, "outpost_site_connected_peers{site=\"paris\"}")`.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind udp")
        .port()
}

/// A TCP port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind tcp")
        .port()
}

/// An HTTP response read by [`http_request`].
#[derive(Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, chunked transfer encoding decoded.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 request (`Connection: close`) with `headers` and an optional body; decodes
/// a chunked response.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpReply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send request");
    if let Some(b) = body {
        // The server may answer (413) before reading all of a large body.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("bad HTTP response: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        while let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[at..at + eol])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            at += eol + 2;
            if size == 0 || at + size > rest.len() {
                break;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        rest = body;
    }
    HttpReply {
        status,
        headers,
        body: rest,
    }
}

mod netns;
mod pg;
pub use netns::Netns;
pub use pg::PgCluster;
