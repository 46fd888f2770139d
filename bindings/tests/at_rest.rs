//! A node opened through the bindings with `data_key`: its data directory holds none of the
//! values written; without the key, or with another, it refuses to open (`InvalidConfig`)
//! and the store stays intact.

mod common;

use outpost_ffi::{FleetCa, Outpost, OutpostError};

const SECRET: &str = "SECRET-bindings-note-Qx81-peanuts";

fn files_with(dir: &std::path::Path, needle: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(data) = std::fs::read(&path) {
                if data.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn a_node_opened_with_a_data_key_keeps_nothing_readable_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = FleetCa::generate("demo".into()).expect("ca");
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(13) ^ 0x5a).collect();
    let mut config = common::config(dir.path(), &ca, "pos-1", "pos");
    config.durable_writes = true;
    config.data_key = Some(key.clone());
    let data = std::path::PathBuf::from(&config.data_dir);
    assert!(
        !format!("{config:?}").contains("90"),
        "the key never reaches a log"
    );

    let pos = Outpost::open_blocking(config.clone()).expect("open with a key");
    pos.put_blocking(
        "orders/2026-12-07".into(),
        "/A-1".into(),
        format!(r#"{{"note": "{SECRET}"}}"#),
    )
    .expect("put");
    pos.shutdown_blocking().expect("shutdown");
    drop(pos);
    let found = files_with(&data, SECRET);
    println!("files holding the note: {found}");
    assert_eq!(found, 0);

    for (what, k) in [("no key", None), ("a wrong key", Some(vec![7u8; 32]))] {
        let mut c = config.clone();
        c.data_key = k;
        match Outpost::open_blocking(c) {
            Err(e @ OutpostError::InvalidConfig { .. }) => println!("{what}: {e}"),
            Err(e) => panic!("{what}: {e:?}"),
            Ok(_) => panic!("{what}: an encrypted store opened"),
        }
    }
    let pos = Outpost::open_blocking(config).expect("reopen with the key");
    let note = pos
        .get_string_blocking("orders/2026-12-07".into(), "/A-1/note".into())
        .expect("get");
    assert_eq!(note.as_deref(), Some(SECRET));
    pos.shutdown_blocking().expect("shutdown");
}
