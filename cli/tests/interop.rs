//! Interop with the JavaScript `@automerge/automerge` package in Node.js: a document written
//! by `outpost export` loads there with the same values and heads, and bytes saved there
//! merge with `outpost import`. Needs `node` and `npm` (installs cli/tests/js/node_modules
//! with `npm ci` when missing); without them the test fails and says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_testbins::*;
use serde_json::{json, Value as Json};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Makes sure node and the npm package are there, installing the package if needed.
fn prepare_js() {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "the interop test needs Node.js (18 or later) on PATH to run the JavaScript Automerge \
             package; install it (e.g. `apt-get install nodejs npm`) and run the tests again"
        ),
    }
    let dir = js_dir();
    if dir
        .join("node_modules/@automerge/automerge/package.json")
        .exists()
    {
        return;
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir);
    let out = run_with(cmd, Duration::from_secs(600));
    assert!(
        out.ok(),
        "`npm ci` in {} failed; it needs npm and the npm registry (run it by hand to see why):\n{}\n{}",
        dir.display(),
        out.stdout,
        out.stderr
    );
}

/// Runs the JS side; returns its JSON report `{"value": ..., "heads": [...]}`.
fn js(command: &str, file: &Path) -> Json {
    let mut cmd = Command::new("node");
    cmd.arg("interop.mjs")
        .arg(command)
        .arg(file)
        .current_dir(js_dir());
    let out = run_with(cmd, Duration::from_secs(60));
    assert!(
        out.ok(),
        "node interop.mjs {command} failed:\n{}",
        out.stderr
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("node printed no JSON ({e}): {}", out.stdout))
}

fn heads(dir: &Path, doc: &str) -> Json {
    let status = on(dir, &["status", "--json"]).json();
    status["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["doc"] == json!(doc))
        .map(|d| d["heads"].clone())
        .unwrap_or_else(|| panic!("no {doc} in {status}"))
}

#[test]
fn automerge_js_reads_exports_and_writes_imports() {
    prepare_js();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("pos1");
    let p = |x: &Path| x.to_str().expect("utf-8").to_string();

    // outpost -> JavaScript: every kind of value, a counter, escapes and several changes.
    on(&d, &["put", "menu", "/items/burger", r#"{"name": "Crème brûlée burger", "price": 950, "available": true, "tags": ["beef", "hot"], "ratio": 1.5, "note": null}"#]).expect_ok();
    on(&d, &["put", "menu", "/items/burger/price", "990"]).expect_ok();
    on(&d, &["put", "menu", "/a~1b", "-7"]).expect_ok();
    on(&d, &["incr", "menu", "/sold", "12"]).expect_ok();
    on(&d, &["incr", "menu", "/sold", "-2"]).expect_ok();
    on(&d, &["delete", "menu", "/items/burger/note"]).expect_ok();
    let exported = tmp.path().join("menu.automerge");
    on(&d, &["export", "menu", "--out", &p(&exported)]).expect_ok();
    let expected = on(&d, &["get", "menu"]).json();
    assert_eq!(expected["sold"], json!(10));
    let seen = js("dump", &exported);
    assert_eq!(seen["value"], expected, "JavaScript reads other values");
    let mut js_heads = seen["heads"].clone();
    let mut our_heads = heads(&d, "menu");
    if let (Some(a), Some(b)) = (js_heads.as_array_mut(), our_heads.as_array_mut()) {
        a.sort_by_key(|v| v.to_string());
        b.sort_by_key(|v| v.to_string());
    }
    assert_eq!(js_heads, our_heads, "same history, same heads");

    // JavaScript -> outpost: a document saved by Automerge.save imports and reads the same.
    let made = tmp.path().join("from-js.automerge");
    let js_doc = js("make", &made);
    let e = tmp.path().join("pos2");
    let out = on(&e, &["import", "catalog", &p(&made)]);
    out.expect_ok();
    assert!(
        out.stderr.contains("imported 2 new changes"),
        "{}",
        out.stderr
    );
    assert_eq!(on(&e, &["get", "catalog"]).json(), js_doc["value"]);
    assert_eq!(on(&e, &["get", "catalog", "/sold"]).json(), json!(10));
    assert_eq!(
        on(&e, &["get", "catalog", "/items/tea/name"]).json(),
        json!("Thé vert")
    );
    // The counter made in JavaScript stays a counter here.
    assert_eq!(on(&e, &["incr", "catalog", "/sold", "5"]).json(), json!(15));

    // And back: outpost's changes on top of the JavaScript document load in JavaScript.
    on(&e, &["put", "catalog", "/items/tea/price", "380"]).expect_ok();
    let back = tmp.path().join("back.automerge");
    on(&e, &["export", "catalog", "--out", &p(&back)]).expect_ok();
    let seen = js("dump", &back);
    assert_eq!(seen["value"], on(&e, &["get", "catalog"]).json());
    assert_eq!(seen["value"]["items"]["tea"]["price"], json!(380));
    assert_eq!(seen["value"]["sold"], json!(15));
}
