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

/// The cost of encryption, for the report (`benches/benches/at_rest.rs` is the criterion
/// bench of the same figures): durable and fast writes of a small order and the catch-up of a
/// fresh POS through two engines in memory, plain and encrypted interleaved in the same run.
/// Run in release: `cargo test -p outpost-core --release --test at_rest -- --ignored
/// --nocapture encryption_cost`.
#[test]
#[ignore = "a measurement for the report, not a check"]
fn encryption_cost_ratios() {
    use outpost_core::{Engine, EngineConfig, PeerInfo, Policy, Timestamp};
    use std::time::Duration;
    const ORDERS: u64 = 2_000;
    const WRITES: u64 = 200;
    let rounds: usize = std::env::var("AT_REST_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(9);
    let info = |p: &str| PeerInfo::parse("s1", p, "pos").unwrap();
    let open = |dir: &Path, peer: &str, key: Option<&SharedKeyWrap>| {
        Store::open_with(
            dir,
            StoreOptions {
                identity: Some(info(peer)),
                policy: Policy::default(),
                data_key: key.cloned(),
                ..StoreOptions::default()
            },
        )
        .unwrap()
    };
    let day = doc("orders/2026-12-07");
    let keys = [None, Some(key())];
    // Per variant: a writer store, a catch-up source engine.
    let mut writers = Vec::new();
    let mut sources = Vec::new();
    let mut dirs = Vec::new();
    for k in &keys {
        let d = tempfile::tempdir().unwrap();
        writers.push((open(d.path(), "pos-w", k.as_ref()), 0u64));
        dirs.push(d);
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), "pos-a", k.as_ref());
        for n in 0..ORDERS {
            for (field, value) in [
                ("sku", json!(["burger", "fries", "soda"][n as usize % 3])),
                ("qty", json!(1 + n % 3)),
                ("table", json!(n % 24)),
                ("status", json!("new")),
                ("total_cents", json!(1250 + (n % 7) * 100)),
            ] {
                s.put(&day, &format!("/o{n:05}/{field}"), value, Durability::Fast)
                    .unwrap();
            }
        }
        s.flush().unwrap();
        sources.push(Engine::new(
            s,
            EngineConfig::new(info("pos-a"), Policy::default()),
        ));
        dirs.push(d);
    }
    let deliver = |from: &mut Engine, to: &mut Engine| {
        let me = from.local().peer.clone();
        let mut moved = false;
        while let Some(t) = from.poll_transmit() {
            moved = true;
            to.handle_message(&me, &t.bytes, Timestamp(1_000)).unwrap();
        }
        moved
    };
    let mut times: [[Vec<Duration>; 2]; 3] = Default::default();
    for round in 0..rounds {
        for v in [round % 2, 1 - round % 2] {
            let (store, next) = &mut writers[v];
            for (i, d) in [Durability::Durable, Durability::Fast]
                .into_iter()
                .enumerate()
            {
                let t = Instant::now();
                for _ in 0..WRITES {
                    *next += 1;
                    store
                        .put(
                            &day,
                            &format!("/A-{next:06}"),
                            json!({"sku": "burger", "qty": 2, "note": "no onions"}),
                            d,
                        )
                        .unwrap();
                }
                store.flush().unwrap();
                times[i][v].push(t.elapsed() / WRITES as u32);
            }
            let fresh_dir = tempfile::tempdir().unwrap();
            let mut b = Engine::new(
                open(fresh_dir.path(), "pos-b", keys[v].as_ref()),
                EngineConfig::new(info("pos-b"), Policy::default()),
            );
            let a = &mut sources[v];
            let t = Instant::now();
            let (ia, ib) = (a.local().clone(), b.local().clone());
            a.handle_connect(ib.clone(), Timestamp(1_000));
            b.handle_connect(ia.clone(), Timestamp(1_000));
            while deliver(a, &mut b) | deliver(&mut b, a) {}
            b.store().flush().unwrap();
            times[2][v].push(t.elapsed());
            assert_eq!(
                b.store().heads(&day).unwrap(),
                a.store().heads(&day).unwrap()
            );
            a.handle_disconnect(&ib.peer, Timestamp(1_000));
            b.handle_disconnect(&ia.peer, Timestamp(1_000));
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for (name, t) in ["durable write", "fast write", "catch-up of 2,000 orders"]
        .iter()
        .zip(times.iter_mut())
    {
        let (p, s) = (median(&mut t[0]), median(&mut t[1]));
        println!(
            "at_rest, summary ({}): {name}: encrypted {:.3} ms, plain {:.3} ms ({rounds} interleaved rounds, medians): {:.2}x (goal <= 1.15x)",
            writers[0].0.engine(),
            s.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3,
            s.as_secs_f64() / p.as_secs_f64()
        );
    }
}
