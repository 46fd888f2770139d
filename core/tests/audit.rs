//! The audit trail of sync (issue 32): bounded by count and age, persisted across a restart
//! on both storage engines, coalescing acknowledgements, queried by time, kind, peer and
//! document. The links and engine hooks are tested over real QUIC in
//! `transport/tests/audit.rs`.

use outpost_core::{
    AuditEntry, AuditKind, AuditLimits, AuditQuery, ChangeHash, DocumentId, PeerInfo,
    StorageEngine, Store, StoreOptions, Timestamp,
};

fn open(dir: &std::path::Path, engine: StorageEngine) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            engine,
            ..StoreOptions::default()
        },
    )
    .expect("store opens")
}

fn kiosk() -> PeerInfo {
    PeerInfo::parse("paris-11", "kiosk-1", "kiosk").expect("valid identity")
}

fn orders() -> DocumentId {
    "orders/2026-12-07".parse().expect("valid document id")
}

#[test]
fn the_trail_stays_bounded_by_count_and_age() {
    for engine in [StorageEngine::Sled, StorageEngine::Redb] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), engine);
        let audit = store.audit();
        audit.set_limits(AuditLimits {
            max_entries: 200,
            max_age_ms: 3_600_000,
        });
        let t0 = 1_765_000_000_000u64;
        for i in 0..1_000u64 {
            audit
                .record(
                    AuditEntry::new(Timestamp(t0 + i), AuditKind::LinkOpened)
                        .peer(&kiosk())
                        .detail(format!("entry {i}")),
                )
                .expect("recorded");
        }
        let bytes = audit.stored_bytes().expect("readable");
        println!(
            "{engine}: bound {} entries, holds {} after 1000 writes, {} bytes ({} per entry)",
            audit.limits().max_entries,
            audit.len(),
            bytes,
            bytes / audit.len() as u64
        );
        let n = audit.len();
        assert!(
            (200 - 200 / 64..=200).contains(&n),
            "{engine}: the count bound holds: {n}"
        );
        let all = audit.query(&AuditQuery::default()).expect("query");
        assert_eq!(all.len(), n, "the count kept matches what is stored");
        assert_eq!(
            all[0].detail,
            format!("entry {}", 1000 - n),
            "{engine}: the oldest were dropped"
        );
        assert_eq!(all[n - 1].detail, "entry 999");

        // Two hours later: everything older than an hour goes with the next write.
        audit
            .record(AuditEntry::new(
                Timestamp(t0 + 7_200_000),
                AuditKind::BackupTaken,
            ))
            .expect("recorded");
        let left = audit.query(&AuditQuery::default()).expect("query");
        println!("{engine}: after the age bound, {} entry left", left.len());
        assert_eq!(left.len(), 1, "{engine}: the age bound holds: {left:?}");
        assert_eq!(audit.len(), 1);
        assert_eq!(left[0].kind, AuditKind::BackupTaken);
    }
}

#[test]
fn the_trail_survives_a_restart_on_both_engines() {
    for engine in [StorageEngine::Sled, StorageEngine::Redb] {
        let dir = tempfile::tempdir().expect("temp dir");
        let t0 = 1_765_000_000_000u64;
        {
            let store = open(dir.path(), engine);
            let mut opened = AuditEntry::new(Timestamp(t0), AuditKind::LinkOpened).peer(&kiosk());
            opened.dialed_by_us = Some(false);
            store.audit().record(opened).expect("recorded");
            store
                .audit()
                .record(
                    AuditEntry::new(Timestamp(t0 + 5), AuditKind::LinkClosed)
                        .peer(&kiosk())
                        .detail("closed by the peer: shutdown"),
                )
                .expect("recorded");
            // A durable write of data carries the trail's writes with it.
            store
                .put(
                    &orders(),
                    "/orders/k-1",
                    1.into(),
                    outpost_core::Durability::Durable,
                )
                .expect("write");
        }
        let store = open(dir.path(), engine);
        let after = store.audit().query(&AuditQuery::default()).expect("query");
        println!("{engine}: {} entries after the restart", after.len());
        assert_eq!(store.audit().len(), 2, "{engine}");
        assert_eq!(after[0].kind, AuditKind::LinkOpened);
        assert_eq!(after[0].peer.as_deref(), Some("kiosk-1"));
        assert_eq!(after[0].dialed_by_us, Some(false));
        assert_eq!(after[1].detail, "closed by the peer: shutdown");
        // New entries of the new session sort after the old ones at the same time.
        store
            .audit()
            .record(AuditEntry::new(Timestamp(t0 + 5), AuditKind::Erased))
            .expect("recorded");
        assert_eq!(store.audit().len(), 3);
    }
}

#[test]
fn acknowledgements_coalesce_per_peer_document_and_minute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), StorageEngine::DEFAULT);
    let audit = store.audit();
    let cloud = "cloud".parse().expect("valid peer id");
    let h = |b: u8| ChangeHash([b; 32]);
    // 1_765_000_020_000 starts a minute: t0 is 20 s into it.
    let t0 = 1_765_000_040_000u64;
    for i in 0..50u8 {
        audit
            .record_ack(
                Timestamp(t0 + u64::from(i) * 1000),
                &cloud,
                &orders(),
                &[h(i)],
            )
            .expect("recorded");
    }
    // The same heads again: nothing new.
    audit
        .record_ack(Timestamp(t0 + 51_000), &cloud, &orders(), &[h(49)])
        .expect("recorded");
    let acks = audit
        .query(&AuditQuery {
            kinds: vec![AuditKind::Acknowledged],
            ..AuditQuery::default()
        })
        .expect("query");
    println!(
        "51 acknowledgements over 2 minutes -> {} entries",
        acks.len()
    );
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!(acks[0].count, 40, "the first minute: 20 s to 59 s");
    assert_eq!(acks[0].heads, vec![h(39).to_string()]);
    assert_eq!(acks[1].count, 10);
    assert_eq!(acks[1].heads, vec![h(49).to_string()]);
    assert_eq!(acks[1].at_ms, t0 + 49_000);
    assert_eq!(acks[1].peer.as_deref(), Some("cloud"));
}

#[test]
fn queries_filter_by_time_kind_peer_and_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), StorageEngine::DEFAULT);
    let audit = store.audit();
    let pos = PeerInfo::parse("paris-11", "pos-1", "pos").expect("valid identity");
    let t0 = 1_765_000_000_000u64;
    for i in 0..10u64 {
        let who = if i % 2 == 0 { kiosk() } else { pos.clone() };
        let kind = if i % 3 == 0 {
            AuditKind::ChangesRefused
        } else {
            AuditKind::LinkOpened
        };
        let mut e = AuditEntry::new(Timestamp(t0 + i * 1000), kind).peer(&who);
        if kind == AuditKind::ChangesRefused {
            e = e.doc(&orders());
        }
        audit.record(e).expect("recorded");
    }
    let q = |q: AuditQuery| audit.query(&q).expect("query").len();
    assert_eq!(q(AuditQuery::default()), 10);
    assert_eq!(
        q(AuditQuery {
            since_ms: Some(t0 + 5000),
            ..AuditQuery::default()
        }),
        5
    );
    assert_eq!(
        q(AuditQuery {
            since_ms: Some(t0 + 2000),
            until_ms: Some(t0 + 4000),
            ..AuditQuery::default()
        }),
        2
    );
    assert_eq!(
        q(AuditQuery {
            kinds: vec![AuditKind::ChangesRefused],
            ..AuditQuery::default()
        }),
        4
    );
    assert_eq!(
        q(AuditQuery {
            peer: Some("kiosk-1".into()),
            ..AuditQuery::default()
        }),
        5
    );
    assert_eq!(
        q(AuditQuery {
            doc: Some(orders().to_string()),
            peer: Some("pos-1".into()),
            ..AuditQuery::default()
        }),
        2,
        "refusals at 3 and 9 are pos-1's"
    );
    let newest = audit
        .query(&AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        })
        .expect("query");
    assert_eq!(
        newest.iter().map(|e| e.at_ms - t0).collect::<Vec<_>>(),
        vec![7000, 8000, 9000]
    );
    assert!("nonsense".parse::<AuditKind>().is_err());
    assert_eq!(
        "link_closed".parse::<AuditKind>().expect("a kind"),
        AuditKind::LinkClosed
    );
}

#[test]
fn erasures_and_backups_are_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), StorageEngine::DEFAULT);
    store
        .put(
            &orders(),
            "/orders/k-1",
            1.into(),
            outpost_core::Durability::Fast,
        )
        .expect("write");
    let mut backup = Vec::new();
    store.backup(&mut backup).expect("backup");
    store.erase(&orders(), 1_765_000_000_000).expect("erased");
    let kinds: Vec<AuditKind> = store
        .audit()
        .query(&AuditQuery::default())
        .expect("query")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&AuditKind::BackupTaken), "{kinds:?}");
    assert!(kinds.contains(&AuditKind::Erased), "{kinds:?}");
}
