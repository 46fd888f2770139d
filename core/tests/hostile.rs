//! Attacks by an authenticated but hostile peer on the sync engine, each printing the figure
//! its limit bounds. (Attacks on the transport, with real QUIC, are in
//! `transport/tests/hostile.rs`.)
#![allow(clippy::unwrap_used)]

use outpost_core::engine::wire::{DocDigest, WireMessage, FRAGMENT_BYTES};
use outpost_core::engine::DEFAULT_MAX_INFLATED_BYTES;
use outpost_core::{Engine, EngineConfig, Event, PeerInfo, Policy, Store, StoreOptions, Timestamp};

const NOW: Timestamp = Timestamp(1_000);
/// sled's default tree plus a store's `meta`, `sync`, `chunks`, `sigs` and `certs` (each
/// opened when first used).
const TREES_OF_A_STORE: usize = 6;

struct Target {
    engine: Engine,
    db: sled::Db,
    _dir: tempfile::TempDir,
}

/// A POS engine over a sled database the test can look into.
fn pos(config: impl FnOnce(&mut EngineConfig)) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let me = PeerInfo::parse("s1", "pos-1", "pos").unwrap();
    let store = Store::on_db(
        db.clone(),
        "",
        StoreOptions {
            identity: Some(me.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut c = EngineConfig::new(me, Policy::default());
    config(&mut c);
    Target {
        engine: Engine::new(store, c),
        db,
        _dir: dir,
    }
}

fn attacker(engine: &mut Engine, peer: &str, role: &str) -> PeerInfo {
    let info = PeerInfo::parse("s1", peer, role).unwrap();
    engine.handle_connect(info.clone(), NOW);
    while engine.poll_transmit().is_some() {}
    info
}

/// The kiosk's own store, where the attacks write the changes they send.
fn kiosk_store() -> (Store, tempfile::TempDir) {
    let me = PeerInfo::parse("s1", "kiosk-1", "kiosk").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            identity: Some(me),
            ..Default::default()
        },
    )
    .unwrap();
    (store, dir)
}

fn events(engine: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// A compressed change of 100 MiB of zeros is about 100 KB on the wire. It is refused after
/// counting at most `max_inflated_bytes` (64 MiB) of it, before Automerge decodes it, and
/// nothing is stored.
#[test]
fn a_decompression_bomb_is_refused_unread() {
    let mut t = pos(|_| {});
    let kiosk = attacker(&mut t.engine, "kiosk-1", "kiosk");
    let inflated = 100 << 20;
    let chunk = outpost_testkit::rogue::deflate_bomb(inflated);
    let msg = automerge::sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: vec![chunk].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    let orders = "orders/2026-11-24".parse().unwrap();
    let bytes = WireMessage::Sync {
        doc: orders,
        data: msg.encode(),
    }
    .encode();
    t.engine.handle_message(&kiosk.peer, &bytes, NOW).unwrap();
    let refused = events(&mut t.engine)
        .into_iter()
        .find_map(|e| match e {
            Event::ChangeRefused { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("the bomb is refused");
    println!(
        "decompression bomb: a {} KB message inflating to {} MiB was refused after at most \
         {} MiB were counted (and none kept): {refused}",
        bytes.len() / 1024,
        inflated >> 20,
        DEFAULT_MAX_INFLATED_BYTES >> 20
    );
    assert!(refused.contains("inflates beyond"), "{refused}");
    assert!(t.engine.metrics().changes_refused > 0);
    assert!(
        t.engine.store().documents().unwrap().is_empty(),
        "nothing stored"
    );
}

/// A menu board may not write the menu: its fragments are dropped unread, whatever their
/// number. A kiosk (which may write orders) gets at most one reassembly plus the window
/// buffered, over any number of documents.
#[test]
fn fragments_are_checked_before_they_are_buffered() {
    let max = 1 << 20;
    let mut t = pos(|c| c.max_reassembly_bytes = max);
    let window = t.engine.local().clone();
    drop(window);
    let board = attacker(&mut t.engine, "board-1", "menu-board");
    let part = |doc: &str, index: u32, total: u32| {
        WireMessage::SyncPart {
            doc: doc.parse().unwrap(),
            index,
            total,
            data: vec![1u8; FRAGMENT_BYTES],
        }
        .encode()
    };
    let mut refused = 0;
    for i in 0..40 {
        if t.engine
            .handle_message(&board.peer, &part("menu", i, 400), NOW)
            .is_err()
        {
            refused += 1;
        }
    }
    println!(
        "fragments from a read-only role: 40 parts of 256 KiB sent, {refused} refused, {} bytes buffered",
        t.engine.buffered_fragment_bytes()
    );
    assert_eq!(refused, 40);
    assert_eq!(t.engine.buffered_fragment_bytes(), 0);

    let kiosk = attacker(&mut t.engine, "kiosk-1", "kiosk");
    let mut most = 0;
    for d in 0..64 {
        for i in 0..3 {
            let _ =
                t.engine
                    .handle_message(&kiosk.peer, &part(&format!("orders/d{d:02}"), i, 4), NOW);
            most = most.max(t.engine.buffered_fragment_bytes());
        }
    }
    let bound = max + EngineConfig::new(kiosk.clone(), Policy::default()).window_bytes as usize;
    println!(
        "fragments from a writer: 64 documents x 3 of 4 parts of 256 KiB sent (48 MiB), at most \
         {} KiB buffered (bound {} KiB)",
        most / 1024,
        bound / 1024
    );
    assert!(most <= bound, "{most} > {bound}");
}

/// A Hello naming 60,000 documents (past one 1 MiB message, so in pages) from a peer is
/// handled whole, and naming documents creates none: only changes from a peer that may write
/// a context create its documents.
#[test]
fn documents_named_in_a_paged_hello_are_not_created() {
    let mut t = pos(|_| {});
    let kiosk = attacker(&mut t.engine, "kiosk-1", "kiosk");
    let docs: Vec<DocDigest> = (0..60_000)
        .map(|i| DocDigest {
            doc: format!("orders/p-{i:05}-0123456789abcdef").parse().unwrap(),
            digest: i,
        })
        .collect();
    let (mut pages, mut bytes) = (0, 0);
    let mut chunks = docs.chunks(20_000).peekable();
    while let Some(page) = chunks.next() {
        let msg = if chunks.peek().is_some() {
            WireMessage::HelloPart {
                docs: page.to_vec(),
            }
        } else {
            WireMessage::Hello {
                docs: page.to_vec(),
            }
        }
        .encode();
        pages += 1;
        bytes += msg.len();
        t.engine.handle_message(&kiosk.peer, &msg, NOW).unwrap();
    }
    let mut requests = 0;
    while t.engine.poll_transmit().is_some() {
        requests += 1;
    }
    let created = t.engine.store().documents().unwrap().len()
            // The store opens its trees when first used: at most these are its own.
            + t.db.tree_names().len().saturating_sub(TREES_OF_A_STORE);
    println!(
        "named documents: a Hello of {} KB in {pages} pages named 60,000 documents; {requests} \
         requests answered, {created} documents or sled trees created",
        bytes / 1024
    );
    assert!(
        requests >= 60_000,
        "every named document the kiosk may write is asked for"
    );
    assert_eq!(created, 0, "naming a document creates nothing");
    assert!(
        t.db.tree_names().len() <= TREES_OF_A_STORE,
        "no tree per named document"
    );
    assert!(t.engine.store().documents().unwrap().is_empty());
}

/// A kiosk (which may write orders) creating documents by sending real changes for new
/// partitions is stopped at its per-session quota; the store keeps what it created before,
/// refuses the rest with a reason, and counts them.
#[test]
fn documents_created_by_a_peer_are_bounded() {
    let quota = 50;
    let mut t = pos(|c| c.max_new_documents_per_session = quota);
    let kiosk = attacker(&mut t.engine, "kiosk-1", "kiosk");
    let (source, _dir) = kiosk_store();
    let mut refused = 0;
    for i in 0..120 {
        let d: outpost_core::DocumentId = format!("orders/p{i:03}").parse().unwrap();
        source
            .put(
                &d,
                "/o",
                serde_json::json!(i),
                outpost_core::Durability::Fast,
            )
            .unwrap();
        let msg = automerge::sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: source.changes_since(&d, &[]).unwrap().into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let bytes = WireMessage::Sync {
            doc: d,
            data: msg.encode(),
        }
        .encode();
        t.engine.handle_message(&kiosk.peer, &bytes, NOW).unwrap();
        refused += events(&mut t.engine)
            .iter()
            .filter(|e| matches!(e, Event::ChangeRefused { reason, .. } if reason.contains("max_new_documents_per_session")))
            .count();
    }
    let held = t.engine.store().documents().unwrap().len();
    println!(
        "documents created by one peer: 120 new partitions sent, {held} created (quota {quota}), \
         {refused} refused"
    );
    assert_eq!(held, quota);
    assert_eq!(refused, 120 - quota);
}

/// A kiosk (which may write orders) sending changes as fast as it can is held to its byte
/// quota per hour: what is over it is refused and not stored, and the quota refills with time
/// (a later session is accepted again). The cloud is not limited.
#[test]
fn bytes_a_peer_sends_are_bounded_per_hour() {
    let quota: u64 = 64 * 1024;
    let mut t = pos(|c| c.max_peer_bytes_per_hour = quota);
    let kiosk = attacker(&mut t.engine, "kiosk-1", "kiosk");
    let (source, _dir) = kiosk_store();
    let orders: outpost_core::DocumentId = "orders/2026-12-01".parse().unwrap();
    // Incompressible notes, so that each change costs its size on the wire.
    let note = |i: u64| -> String {
        (0..1_000)
            .map(|j| char::from(b'a' + ((i * 7919 + j * 104_729) % 26) as u8))
            .collect()
    };
    // Each message carries what the POS lacks, as a sync exchange would.
    let send = |t: &mut Target, i: u64, at: Timestamp| -> bool {
        let heads = t.engine.store().heads(&orders).unwrap_or_default();
        source
            .put(
                &orders,
                &format!("/o{i}"),
                serde_json::json!({ "note": note(i) }),
                outpost_core::Durability::Fast,
            )
            .unwrap();
        let msg = automerge::sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: source.changes_since(&orders, &heads).unwrap().into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let bytes = WireMessage::Sync {
            doc: orders.clone(),
            data: msg.encode(),
        }
        .encode();
        t.engine.handle_message(&kiosk.peer, &bytes, at).unwrap();
        !events(&mut t.engine)
            .iter()
            .any(|e| matches!(e, Event::ChangeRefused { reason, .. } if reason.contains("max_peer_bytes_per_hour")))
    };
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..200 {
        if send(&mut t, i, NOW) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    let held: usize = (0..200)
        .filter(|i| {
            matches!(
                t.engine.store().get(&orders, &format!("/o{i}")),
                Ok(Some(_))
            )
        })
        .count();
    println!(
        "bytes per peer: 200 changes of ~1 KB sent at once under a quota of {} KB per hour: \
         {accepted} stored, {refused} refused ({} refused changes counted)",
        quota / 1024,
        t.engine.metrics().changes_refused
    );
    assert_eq!(held, accepted);
    assert!(accepted > 30 && accepted <= 65, "{accepted} accepted");
    assert!(t.engine.metrics().changes_refused >= refused as u64);

    // An hour later, in a new session, the quota has refilled.
    let later = Timestamp(NOW.as_millis() + 3_600_000);
    t.engine.handle_disconnect(&kiosk.peer, later);
    t.engine.handle_connect(kiosk.clone(), later);
    while t.engine.poll_transmit().is_some() {}
    assert!(send(&mut t, 1_000, later), "accepted again after an hour");
    assert!(matches!(
        t.engine.store().get(&orders, "/o1000"),
        Ok(Some(_))
    ));
}
