//! Encryption at rest (`storage/sealed.rs`): a stolen data directory (or backup) holds none
//! of the values written; a wrong or missing key fails cleanly and leaves the store intact;
//! the platform key rotates without rewriting data; backups restore on a replacement device
//! given the key. Every test runs on both engines.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use outpost_core::storage::{rewrap_data_key, KeyError, SharedKeyWrap, WrappingKey};
use outpost_core::{
    BackupError, ChangeHash, DocumentId, Durability, Error, StorageEngine, Store, StoreOptions,
};
use serde_json::json;

const ENGINES: [StorageEngine; 2] = [StorageEngine::Sled, StorageEngine::Redb];

/// Values no engine, format or key could produce by chance.
const SECRETS: [&str; 3] = [
    "SECRET-ORDER-7f3a9c-burger-x12",
    "allergic to peanuts QX81-ZZ",
    "card ending 4242 VIP-Kx93",
];

fn doc(s: &str) -> DocumentId {
    s.parse().unwrap()
}

fn key() -> SharedKeyWrap {
    Arc::new(WrappingKey::generate().unwrap())
}

fn options(engine: StorageEngine, key: Option<&SharedKeyWrap>) -> StoreOptions {
    StoreOptions {
        engine,
        data_key: key.cloned(),
        ..StoreOptions::default()
    }
}

/// Writes the secrets as an order's fields, a note and a menu price label, durably.
fn write_secrets(store: &Store) {
    let orders = doc("orders/2026-12-07");
    store
        .put(
            &orders,
            "/A-001",
            json!({"item": SECRETS[0], "qty": 2}),
            Durability::Durable,
        )
        .unwrap();
    store
        .put(&orders, "/A-001/note", json!(SECRETS[1]), Durability::Fast)
        .unwrap();
    store
        .put(
            &doc("customers"),
            "/c-1",
            json!(SECRETS[2]),
            Durability::Durable,
        )
        .unwrap();
    store.flush().unwrap();
}

/// Every file under `dir`, byte by byte: which secrets appear in any of them.
fn secrets_in_files(dir: &Path) -> Vec<&'static str> {
    let mut files = 0;
    let mut bytes = 0;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            files += 1;
            bytes += data.len();
            found.extend(secrets_in(&data));
        }
    }
    found.sort();
    found.dedup();
    println!("{}: {files} files, {bytes} bytes read", dir.display());
    found
}

fn secrets_in(data: &[u8]) -> Vec<&'static str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| data.windows(s.len()).any(|w| w == s.as_bytes()))
        .collect()
}

fn heads(store: &Store) -> Vec<(DocumentId, Vec<ChangeHash>)> {
    store
        .documents()
        .unwrap()
        .into_iter()
        .map(|d| {
            let h = store.heads(&d).unwrap();
            (d, h)
        })
        .collect()
}

/// Stores release their engine's lock a moment after the last handle is dropped: wait.
fn reopen(dir: &Path, options: StoreOptions) -> outpost_core::Result<Store> {
    Store::open_with(dir, options)
}

#[test]
fn a_stolen_data_directory_holds_no_value_written() {
    for engine in ENGINES {
        for encrypted in [false, true] {
            let t = Instant::now();
            let dir = tempfile::tempdir().unwrap();
            let k = key();
            let store =
                Store::open_with(dir.path(), options(engine, encrypted.then_some(&k))).unwrap();
            write_secrets(&store);
            let before = heads(&store);
            drop(store);
            let found = secrets_in_files(dir.path());
            println!(
                "{engine}, encrypted {encrypted}: secrets found in the files: {found:?} ({:?})",
                t.elapsed()
            );
            if encrypted {
                assert!(found.is_empty(), "{engine}: {found:?} readable at rest");
                // And the store reads them back with its key.
                let store = reopen(dir.path(), options(engine, Some(&k))).unwrap();
                assert_eq!(heads(&store), before);
                assert_eq!(
                    store.get(&doc("customers"), "/c-1").unwrap(),
                    Some(json!(SECRETS[2]))
                );
            } else {
                // The same check finds them in a plain store: it can fail.
                assert_eq!(found.len(), SECRETS.len(), "{engine}: {found:?}");
            }
        }
    }
}

#[test]
fn a_wrong_or_missing_key_fails_cleanly_and_the_store_stays_intact() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let store = Store::open_with(dir.path(), options(engine, Some(&k))).unwrap();
        write_secrets(&store);
        let before = heads(&store);
        drop(store);

        let missing = reopen(dir.path(), options(engine, None)).unwrap_err();
        println!("{engine}, no key: {missing}");
        assert!(
            matches!(missing, Error::Key(KeyError::KeyRequired { .. })),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("--data-key-file"));
        let wrong = reopen(dir.path(), options(engine, Some(&key()))).unwrap_err();
        println!("{engine}, wrong key: {wrong}");
        assert!(
            matches!(wrong, Error::Key(KeyError::WrongKey { .. })),
            "{wrong:?}"
        );

        let store = reopen(dir.path(), options(engine, Some(&k))).unwrap();
        assert_eq!(
            heads(&store),
            before,
            "{engine}: the same heads after the refusals"
        );
        assert_eq!(
            store.get(&doc("orders/2026-12-07"), "/A-001/note").unwrap(),
            Some(json!(SECRETS[1]))
        );
        drop(store);

        // A key given to a store that holds plain data is refused, not half-applied.
        let plain = tempfile::tempdir().unwrap();
        let store = Store::open_with(plain.path(), options(engine, None)).unwrap();
        write_secrets(&store);
        drop(store);
        let refused = reopen(plain.path(), options(engine, Some(&k))).unwrap_err();
        assert!(
            matches!(refused, Error::Key(KeyError::NotEncrypted { .. })),
            "{refused:?}"
        );
        let store = reopen(plain.path(), options(engine, None)).unwrap();
        assert_eq!(store.documents().unwrap().len(), 2);
    }
}

#[test]
fn rotating_the_platform_key_rewraps_the_data_key_only() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let old = key();
        let new = key();
        let store = Store::open_with(dir.path(), options(engine, Some(&old))).unwrap();
        write_secrets(&store);
        let before = heads(&store);
        drop(store);

        // A wrong old key changes nothing.
        let e = rewrap_data_key(dir.path(), key().as_ref(), new.as_ref()).unwrap_err();
        assert!(matches!(e, Error::Key(KeyError::WrongKey { .. })), "{e:?}");
        let store = reopen(dir.path(), options(engine, Some(&old))).unwrap();
        drop(store);

        let t = Instant::now();
        rewrap_data_key(dir.path(), old.as_ref(), new.as_ref()).unwrap();
        println!("{engine}: rotation took {:?}", t.elapsed());
        let e = reopen(dir.path(), options(engine, Some(&old))).unwrap_err();
        assert!(matches!(e, Error::Key(KeyError::WrongKey { .. })), "{e:?}");
        let store = reopen(dir.path(), options(engine, Some(&new))).unwrap();
        assert_eq!(heads(&store), before);
        // Writes go on under the same data key.
        store
            .put(
                &doc("customers"),
                "/c-2",
                json!("after"),
                Durability::Durable,
            )
            .unwrap();
        drop(store);
        assert!(secrets_in_files(dir.path()).is_empty());
    }
}

#[test]
fn an_encrypted_store_moves_between_engines_still_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let store = Store::open_with(dir.path(), options(StorageEngine::Sled, Some(&k))).unwrap();
    write_secrets(&store);
    let before = heads(&store);
    drop(store);
    let report = outpost_core::migrate(dir.path(), StorageEngine::Redb).unwrap();
    println!("{report:?}");
    if let Some(old) = &report.old_files {
        std::fs::remove_dir_all(old).unwrap();
    }
    assert!(secrets_in_files(dir.path()).is_empty());
    let e = reopen(dir.path(), options(StorageEngine::Redb, None)).unwrap_err();
    assert!(
        matches!(e, Error::Key(KeyError::KeyRequired { .. })),
        "{e:?}"
    );
    let store = reopen(dir.path(), options(StorageEngine::Redb, Some(&k))).unwrap();
    assert_eq!(store.engine(), StorageEngine::Redb);
    assert_eq!(heads(&store), before);
}

#[test]
fn a_backup_of_an_encrypted_store_is_sealed_and_restores_only_with_the_key() {
    for engine in ENGINES {
        for encrypted in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let k = key();
            let store =
                Store::open_with(dir.path(), options(engine, encrypted.then_some(&k))).unwrap();
            write_secrets(&store);
            let before = heads(&store);
            let mut backup = Vec::new();
            let taken = store.backup(&mut backup).unwrap();
            drop(store);
            let found = secrets_in(&backup);
            println!(
                "{engine}, encrypted {encrypted}: backup of {} B, {} documents; secrets in it: {found:?}",
                backup.len(),
                taken.documents
            );
            if !encrypted {
                // The check finds them in a plain backup: it can fail.
                assert_eq!(found.len(), SECRETS.len());
                continue;
            }
            assert!(
                found.is_empty(),
                "{engine}: {found:?} readable in the backup"
            );
            assert_eq!(backup[15], outpost_core::BACKUP_VERSION_SEALED);

            // The replacement device: a new, empty directory.
            let device = tempfile::tempdir().unwrap();
            let target = device.path().join("data");
            let e = outpost_core::restore(&target, &backup[..]).unwrap_err();
            println!("{engine}, restore without a key: {e}");
            assert!(matches!(e, BackupError::KeyRequired), "{e:?}");
            assert!(!target.exists(), "a refused restore leaves nothing");
            let e = outpost_core::restore_with_key(&target, &backup[..], Some(key())).unwrap_err();
            println!("{engine}, restore with a wrong key: {e}");
            assert!(
                matches!(e, BackupError::Key(KeyError::WrongKey { .. })),
                "{e:?}"
            );
            assert!(!target.exists(), "a refused restore leaves nothing");

            let t = Instant::now();
            let restored =
                outpost_core::restore_with_key(&target, &backup[..], Some(k.clone())).unwrap();
            println!("{engine}: restored {restored:?} in {:?}", t.elapsed());
            assert_eq!(restored.documents, 2);
            // The restored store is encrypted too, under the same platform key.
            assert!(secrets_in_files(&target).is_empty());
            let e = reopen(&target, options(engine, None)).unwrap_err();
            assert!(
                matches!(e, Error::Key(KeyError::KeyRequired { .. })),
                "{e:?}"
            );
            let store = reopen(&target, options(engine, Some(&k))).unwrap();
            assert_eq!(heads(&store), before);
            assert_eq!(
                store.get(&doc("orders/2026-12-07"), "/A-001/item").unwrap(),
                Some(json!(SECRETS[0]))
            );

            // A sealed backup altered anywhere is refused.
            let mut altered = backup.clone();
            let at = altered.len() / 2;
            altered[at] ^= 1;
            let other = device.path().join("altered");
            let e =
                outpost_core::restore_with_key(&other, &altered[..], Some(k.clone())).unwrap_err();
            assert!(matches!(e, BackupError::Damaged(_)), "{e:?}");
        }
    }
}

#[test]
fn a_plain_backup_restored_with_a_key_becomes_an_encrypted_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    write_secrets(&store);
    let before = heads(&store);
    let mut backup = Vec::new();
    store.backup(&mut backup).unwrap();
    drop(store);
    let k = key();
    let target = dir.path().join("encrypted");
    outpost_core::restore_with_key(&target, &backup[..], Some(k.clone())).unwrap();
    assert!(secrets_in_files(&target).is_empty());
    let store = reopen(
        &target,
        StoreOptions {
            data_key: Some(k),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(heads(&store), before);
    // A plain writer refuses an encrypted store rather than leak it.
    let mut w = outpost_core::BackupWriter::new(Vec::new()).unwrap();
    assert!(matches!(w.add(&store), Err(BackupError::WouldLeak(_))));
}
