//! A backup file is read from outside (`outpost restore --from FILE`): restoring arbitrary
//! bytes never panics, and whatever fails leaves the directory empty.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("restored");
    if outpost_core::restore(&dir, data).is_err() {
        assert!(!dir.exists(), "a failed restore leaves nothing behind");
    }
});
