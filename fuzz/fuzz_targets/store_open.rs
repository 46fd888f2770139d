//! A store whose document bytes on disk are arbitrary: opening and reading never panics, and
//! garbage is reported as a corrupt document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost_core::{Error, Store};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let db = sled::open(dir.path()).expect("sled opens");
        let tree = db.open_tree("doc/menu").expect("tree opens");
        for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
            tree.insert((i as u64).to_be_bytes(), chunk).expect("insert");
        }
        db.flush().expect("flush");
    }
    let store = Store::open(dir.path()).expect("the store itself opens");
    let menu = "menu".parse().expect("valid");
    match store.get(&menu, "") {
        Ok(_) | Err(Error::CorruptDocument { .. }) | Err(Error::UnknownDocument { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
