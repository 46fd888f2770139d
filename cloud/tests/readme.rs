//! The README's head-office section, run command by command as a new user would: its `sh`
//! block is read from README.md, the cloud's data directory and HTTP address put in place
//! of `DATA` and `CLOUD`, and each command run by bash (with `outpost-cloud` of this build on
//! the PATH, curl from the system) against a real cloud whose sites' POS wrote yesterday's
//! orders the way the README shows (`outpost put orders/DAY /orders/K1-001 '{...}'`).
//! Then what the section promises is checked: the price reached every site's device, the
//! export holds one line per order, the stock answer counts every site.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_testbins::*;
use serde_json::{json, Value};

const SYNC: Duration = Duration::from_secs(40);

/// The commands of the `sh` block under `## Head office` in README.md, continuation lines
/// joined, comments and blank lines left out.
fn head_office_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Head office"))
        .expect("README.md has a `## Head office` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the head-office section has a ```sh block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim_end();
        if current.is_empty() && (line.trim_start().starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[test]
fn the_readme_head_office_section_runs_command_by_command() {
    let commands = head_office_commands();
    assert!(commands.len() >= 5, "the section's commands: {commands:#?}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ca = make_ca(root);
    let cloud_cert = issue(&ca, root, "acme", "cloud-1", "cloud");
    let data = root.join("cloud-data");
    // The default policy, as the README's reader has it: `prices` of fleet scope, written by
    // head-office; orders one per key under /orders.
    let (_cloud, quic, http) = start_cloud_with(&cloud_cert, &data, &[]);
    let out = Command::new("date")
        .args(["-u", "-d", "yesterday", "+%F"])
        .output()
        .expect("GNU date");
    let yesterday = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut devices = Vec::new();
    let mut dirs = Vec::new();
    for (site, orders) in [("paris", 3), ("lyon", 2)] {
        let dir = root.join(site);
        let (device, _) = serve(
            &format!("{site}/pos-1"),
            &dir,
            &issue(&ca, root, site, "pos-1", "pos"),
            0,
            &[quic],
        );
        for i in 1..=orders {
            on(
                &dir,
                &[
                    "put",
                    &format!("orders/{yesterday}"),
                    &format!("/orders/K1-{i:03}"),
                    &format!(r#"{{"items": ["burger"], "total": {}}}"#, 900 + i),
                ],
            )
            .expect_ok();
        }
        on(&dir, &["incr", "stock", "/burger", "4"]).expect_ok();
        devices.push(device);
        dirs.push(dir);
    }
    // The cloud holds both sites' day before head office asks.
    let probe = api_token(&data, &["--name", "probe", "--sites", "*"]);
    eventually("the cloud holds both sites' orders and stock", SYNC, || {
        let r = http_request(
            http,
            "GET",
            "/api/v1/stock/burger",
            &[("Authorization", &format!("Bearer {probe}"))],
            None,
        );
        let e = http_request(
            http,
            "GET",
            &format!("/api/v1/export/orders?partition={yesterday}&lines=item"),
            &[("Authorization", &format!("Bearer {probe}"))],
            None,
        );
        (r.status == 200
            && r.json()["total"] == json!(8)
            && e.text().matches("\"key\"").count() == 5)
            .then_some(())
    });

    // The section's commands, each run on its own by bash; the variables it sets carry over
    // (DATA, CLOUD, HQ, ERP), so the commands go through one script that stops at the first
    // that fails and says which.
    let first = &commands[0];
    assert!(
        first.starts_with("DATA=") && first.contains("CLOUD="),
        "the section starts by naming the data directory and the cloud: {first}"
    );
    let mut script = String::from("set -u -o pipefail\n");
    script.push_str(&format!(
        "DATA='{}'; CLOUD='http://{http}'\necho '__step 0 ok'\n",
        data.display()
    ));
    for (i, cmd) in commands.iter().enumerate().skip(1) {
        script.push_str(&format!(
            "{cmd}\nrc=$?; if [ $rc -ne 0 ]; then echo \"__step {i} failed: $rc\"; exit 1; fi\necho '__step {i} ok'\n"
        ));
    }
    let bin_dir = cloud_bin()
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("PATH", path)
        .env_remove("OUTPOST_DATA");
    let started = std::time::Instant::now();
    let out = run_with(cmd, Duration::from_secs(120));
    let elapsed = started.elapsed();
    for (i, command) in commands.iter().enumerate() {
        assert!(
            out.stdout.contains(&format!("__step {i} ok")),
            "README head-office command {i} failed: {command}\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
    }

    // What the section promises.
    for dir in &dirs {
        eventually("each site's POS has head office's price", SYNC, || {
            let got = on(dir, &["get", "prices", "/burger/price"]);
            (got.ok() && got.json() == json!(990)).then_some(())
        });
    }
    let sales = std::fs::read_to_string(root.join("sales.ndjson")).expect("sales.ndjson");
    let lines: Vec<Value> = sales
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let orders: Vec<String> = lines
        .iter()
        .filter(|l| l.get("key").is_some())
        .map(|l| {
            format!(
                "{}/{}",
                l["site"].as_str().unwrap_or(""),
                l["key"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        orders,
        [
            "lyon/K1-001",
            "lyon/K1-002",
            "paris/K1-001",
            "paris/K1-002",
            "paris/K1-003"
        ],
        "one line per order: {sales}"
    );
    assert_eq!(
        lines.last().map(|l| l["sites"].clone()),
        Some(json!({"lyon": 2, "paris": 3})),
        "{sales}"
    );
    // The stock command printed the answer on stdout (its JSON is the last line there).
    let stock = out
        .stdout
        .lines()
        .find(|l| l.contains("\"item\":\"burger\""))
        .expect("the stock command's answer");
    let stock: Value = serde_json::from_str(stock).expect("JSON");
    assert_eq!(stock["total"], json!(8), "{stock}");
    // `outpost` pointed at the running cloud's directory says what it is (the cloud holds
    // its database locked: this was "in use by another process").
    on(&data, &["get", "menu", "/items"]).expect_err("data directory of an outpost-cloud peer");
    println!(
        "README head office: {} commands ran in {elapsed:?}; {} orders exported",
        commands.len(),
        orders.len()
    );
}
