//! The `outpost-cloud` command line, run as the real binary: its usage is what cloud/CLI.md
//! documents, and bad settings fail cleanly (non-zero exit, one line on stderr, no panic).

use std::path::Path;
use std::process::Command;

use outpost_testbins::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn help_matches_cli_md() {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/CLI.md"))
        .expect("cloud/CLI.md exists");
    for sub in [
        None,
        Some("backup"),
        Some("restore"),
        Some("erase"),
        Some("token"),
        Some("web-token"),
    ] {
        let mut cloud_help = Command::new(cloud_bin());
        cloud_help.args(sub).arg("--help");
        let out = run_with(cloud_help, COMMAND_TIMEOUT);
        assert!(
            md.contains(out.expect_ok().trim_end()),
            "cloud/CLI.md lacks the exact output of `outpost-cloud {} --help`; regenerate it with scripts/cli-md.sh",
            sub.unwrap_or_default()
        );
    }
}

#[test]
fn bad_certificates_and_settings_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(tmp.path());
    let two = issue(&ca, tmp.path(), "paris", "pos-2", "pos");
    // The cloud checks its certificate files too.
    let out = run_with(
        {
            let mut c = Command::new(cloud_bin());
            c.args([
                "--data",
                p(&tmp.path().join("cloud")),
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--ca",
                p(&tmp.path().join("nope/ca.pem")),
                "--cert",
                p(&tmp.path().join("nope/cert.pem")),
                "--key",
                p(&tmp.path().join("nope/key.pem")),
            ]);
            c
        },
        COMMAND_TIMEOUT,
    );
    out.expect_err("cannot read the certificate");
    // A device certificate is not a cloud certificate.
    let out = run_with(
        {
            let mut c = Command::new(cloud_bin());
            c.args([
                "--data",
                p(&tmp.path().join("cloud")),
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--ca",
                p(&two.join("ca.pem")),
                "--cert",
                p(&two.join("cert.pem")),
                "--key",
                p(&two.join("key.pem")),
            ]);
            c
        },
        COMMAND_TIMEOUT,
    );
    out.expect_err("not a cloud peer");
    let out = run_with(
        {
            let mut c = Command::new(cloud_bin());
            c.args(["--data", p(&tmp.path().join("cloud"))])
                .env_remove("OUTPOST_LISTEN");
            c
        },
        COMMAND_TIMEOUT,
    );
    out.expect_err("missing --listen");
    // A failed start (its QUIC port is taken) leaves no data directory behind.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let port = taken.local_addr().expect("its address").to_string();
    let cloud_cert = issue(&ca, tmp.path(), "acme", "cloud-1", "cloud");
    let fresh = tmp.path().join("fresh-cloud");
    let out = run_with(
        {
            let mut c = Command::new(cloud_bin());
            c.args([
                "--data",
                p(&fresh),
                "--listen",
                &port,
                "--http",
                "127.0.0.1:0",
                "--ca",
                p(&cloud_cert.join("ca.pem")),
                "--cert",
                p(&cloud_cert.join("cert.pem")),
                "--key",
                p(&cloud_cert.join("key.pem")),
            ]);
            c
        },
        COMMAND_TIMEOUT,
    );
    out.expect_err("cannot");
    assert!(
        !fresh.exists(),
        "the failed start removed the directory it created"
    );
}
