//! Encryption at rest with the real binary: `outpost serve --data-key-file`, writes through
//! the running node, `outpost backup`, then every file of the data directory and the backup
//! read byte by byte; wrong and missing keys, `outpost rekey`, `outpost restore` on a
//! replacement device. Both engines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_testbins::*;

const DAY: &str = "orders/2026-12-07";
const SECRET: &str = "SECRET-NOTE-peanut-allergy-Qx81";
const SECRET2: &str = "VIP-customer-Kx93-table-4";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `outpost --data DIR [--data-key-file KEY] ARGS...` on `engine` (for a new directory).
fn cli(dir: &Path, key: Option<&Path>, engine: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(outpost_bin());
    cmd.arg("--data").arg(dir);
    if let Some(k) = key {
        cmd.arg("--data-key-file").arg(k);
    }
    cmd.args(args)
        .env_remove("OUTPOST_DATA")
        .env_remove("OUTPOST_CERT_DIR")
        .env_remove("OUTPOST_DATA_KEY")
        .env("OUTPOST_TEST_ENGINE", engine);
    run_with(cmd, Duration::from_secs(60))
}

fn files_with(dir: &Path, needles: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(data) = std::fs::read(&path) {
                if needles
                    .iter()
                    .any(|n| data.windows(n.len()).any(|w| w == n.as_bytes()))
                {
                    found.push(path);
                }
            }
        }
    }
    found
}

fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    // Distinct keys, as 64 hex digits (the file may also hold 32 raw bytes).
    let hex: String = (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(7) ^ byte))
        .collect();
    std::fs::write(&path, hex).expect("write the key file");
    path
}

#[test]
fn a_stolen_device_and_its_backup_reveal_no_value() {
    for engine in ["redb", "sled"] {
        let t = Instant::now();
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = make_ca(tmp.path());
        let cert = issue(&ca, tmp.path(), "paris", "pos-1", "pos");
        let key = key_file(tmp.path(), "data.key", 0x11);
        let wrong = key_file(tmp.path(), "wrong.key", 0x22);
        let new_key = key_file(tmp.path(), "new.key", 0x33);
        let dir = tmp.path().join("pos-1");
        let backup = tmp.path().join("pos-1.backup");

        // The control: the same writes without a key are readable on disk.
        let plain = tmp.path().join("plain");
        cli(
            &plain,
            None,
            engine,
            &["put", DAY, "/A-1/note", &format!("\"{SECRET}\"")],
        )
        .expect_ok();
        let plain_found = files_with(&plain, &[SECRET]);
        println!("{engine}, no key: the note is in {plain_found:?}");
        assert!(!plain_found.is_empty(), "the check must be able to fail");

        let mut cmd = serve_command(&dir, &cert, "127.0.0.1:0", &[]);
        cmd.arg("--data-key-file")
            .arg(&key)
            .env("OUTPOST_TEST_ENGINE", engine);
        let (mut pos, _) = serving("pos-1", cmd);
        cli(
            &dir,
            Some(&key),
            engine,
            &["put", DAY, "/A-1/note", &format!("\"{SECRET}\"")],
        )
        .expect_ok();
        cli(
            &dir,
            Some(&key),
            engine,
            &["put", "customers", "/c-1", &format!("\"{SECRET2}\"")],
        )
        .expect_ok();
        let out = cli(&dir, Some(&key), engine, &["backup", "--out", p(&backup)]);
        println!("{engine}: {}", out.expect_ok().trim());
        pos.terminate();

        let found = files_with(&dir, &[SECRET, SECRET2]);
        let in_backup = files_with(tmp.path(), &[SECRET, SECRET2])
            .into_iter()
            .filter(|f| f == &backup)
            .count();
        println!(
            "{engine}, encrypted: values found in {found:?}; in the backup: {in_backup}; backup {} B",
            std::fs::metadata(&backup).map(|m| m.len()).unwrap_or(0)
        );
        assert!(found.is_empty(), "{engine}: readable at rest in {found:?}");
        assert_eq!(in_backup, 0, "{engine}: readable in the backup");

        // No key, a wrong key: clear errors; the right key reads.
        let out = cli(&dir, None, engine, &["get", DAY, "/A-1/note"]);
        out.expect_err("encrypted and no key was given");
        let out = cli(&dir, Some(&wrong), engine, &["get", DAY, "/A-1/note"]);
        out.expect_err("does not open the store");
        let out = cli(&dir, Some(&key), engine, &["get", DAY, "/A-1/note"]);
        assert!(out.expect_ok().contains(SECRET), "{}", out.stdout);

        // Rotation: the old key stops working, the new one reads the same data.
        cli(
            &dir,
            Some(&key),
            engine,
            &["rekey", "--new-key-file", p(&new_key)],
        )
        .expect_ok();
        cli(&dir, Some(&key), engine, &["get", DAY, "/A-1/note"])
            .expect_err("does not open the store");
        let out = cli(&dir, Some(&new_key), engine, &["get", "customers", "/c-1"]);
        assert!(out.expect_ok().contains(SECRET2), "{}", out.stdout);

        // The replacement device: the backup refuses to restore without the key.
        let device = tmp.path().join("replacement");
        cli(&device, None, engine, &["restore", "--from", p(&backup)])
            .expect_err("this backup is encrypted");
        assert!(!device.join("outpost.redb").exists() && !device.join("db").exists());
        cli(
            &device,
            Some(&key),
            engine,
            &["restore", "--from", p(&backup)],
        )
        .expect_ok();
        let out = cli(&device, Some(&key), engine, &["get", DAY, "/A-1/note"]);
        assert!(out.expect_ok().contains(SECRET), "{}", out.stdout);
        assert!(files_with(&device, &[SECRET, SECRET2]).is_empty());
        println!("{engine}: done in {:?}", t.elapsed());
    }
}
