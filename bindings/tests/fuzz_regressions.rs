//! Replays the committed inputs of the `ffi_json` fuzz target (`fuzz/regressions/ffi_json`)
//! with the same check: accepted JSON reads back as the same value.
#![allow(clippy::unwrap_used)]

use outpost_ffi::Outpost;

#[test]
fn ffi_json_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let node = Outpost::open_local(dir.path().display().to_string()).unwrap();
    let inputs =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/ffi_json");
    let mut checked = 0;
    for entry in std::fs::read_dir(&inputs).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let (pointer, json) = text.split_once('\n').unwrap_or(("/value", text));
        if node
            .put_blocking("fuzz".into(), pointer.into(), json.into())
            .is_ok()
        {
            let expected: serde_json::Value = serde_json::from_str(json).unwrap();
            let back = node
                .get_blocking("fuzz".into(), pointer.into())
                .unwrap()
                .unwrap();
            let back: serde_json::Value = serde_json::from_str(&back).unwrap();
            assert_eq!(back, expected, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no accepted input in {}", inputs.display());
    node.shutdown_blocking().unwrap();
}
