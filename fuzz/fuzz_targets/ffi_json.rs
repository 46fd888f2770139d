//! The FFI's JSON value conversion: arbitrary (path, JSON text) pairs written through the
//! foreign-language API. Bad input must be an error, never a panic, and whatever was accepted
//! reads back as the same JSON value.
#![no_main]
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use outpost_ffi::Outpost;

struct Target {
    node: Arc<Outpost>,
    _dir: tempfile::TempDir,
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, json) = text.split_once('\n').unwrap_or(("/value", text));
    let mut guard = TARGET.lock().unwrap_or_else(|p| p.into_inner());
    let t = guard.get_or_insert_with(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Outpost::open_local(dir.path().display().to_string()).expect("local node opens");
        Target { node, _dir: dir }
    });
    if t.node.put_blocking("fuzz".into(), path.into(), json.into()).is_ok() {
        let expected: serde_json::Value = serde_json::from_str(json).expect("accepted input is JSON");
        let back = t.node.get_blocking("fuzz".into(), path.into()).expect("an accepted path reads");
        let back: serde_json::Value =
            serde_json::from_str(&back.expect("a written value is there")).expect("reads are JSON");
        assert_eq!(back, expected, "path {path:?}");
    }
});
