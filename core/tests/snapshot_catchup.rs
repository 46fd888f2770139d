//! Snapshot catch-up (issue 30): a peer that holds nothing of a document receives it as the
//! source stores it (its compacted form, plus the few changes written since) with the
//! signatures of each actor's newest change, loads it once, checks it like received changes,
//! keeps it as received, and then syncs normally. A snapshot is checked like changes: one
//! that carries anything its sender could not have written as changes is refused whole.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ReadDoc, ROOT};
use outpost_core::engine::wire::{ChangeSignature, WireMessage};
use outpost_core::signing::{SignatureRule, Signer};
use outpost_core::{DocumentId, Durability, Engine, Event, PeerId, PeerInfo, Timestamp};
use outpost_testkit::{doc, TestCa};
use serde_json::json;

const NOW: Timestamp = Timestamp(1_700_000_000_000);
/// Orders of the source's day: each its own signed change.
const ORDERS: u64 = 300;

fn info(peer: &str, role: &str) -> PeerInfo {
    PeerInfo::parse("s1", peer, role).expect("literal identities are valid")
}

fn day() -> DocumentId {
    doc("orders/2026-12-07")
}

/// What travelled from one peer to another: bytes of Automerge sync messages and of
/// signatures, per document.
#[derive(Default, Debug)]
struct Wire {
    sync_bytes: usize,
    signature_bytes: usize,
    /// The `Signatures` frames, as sent.
    signature_frames: Vec<Vec<u8>>,
}

/// Engines by peer id, delivering every message to its receiver until all are quiet;
/// returns what each (from, to) pair sent.
fn drive(engines: &mut [&mut Engine]) -> HashMap<(PeerId, PeerId), Wire> {
    let mut wire: HashMap<(PeerId, PeerId), Wire> = HashMap::new();
    for _ in 0..10_000 {
        let mut moved = false;
        for i in 0..engines.len() {
            while let Some(t) = engines[i].poll_transmit() {
                moved = true;
                let from = engines[i].local().peer.clone();
                let w = wire.entry((from.clone(), t.to.clone())).or_default();
                match WireMessage::decode(&t.bytes) {
                    Ok(WireMessage::Sync { data, .. }) => w.sync_bytes += data.len(),
                    Ok(WireMessage::SyncPart { data, .. }) => w.sync_bytes += data.len(),
                    Ok(WireMessage::Signatures { .. }) => {
                        w.signature_bytes += t.bytes.len();
                        w.signature_frames.push(t.bytes.clone());
                    }
                    _ => {}
                }
                if let Some(to) = engines.iter_mut().find(|e| e.local().peer == t.to) {
                    to.handle_message(&from, &t.bytes, NOW)
                        .expect("honest engines understand each other");
                }
            }
        }
        if !moved {
            return wire;
        }
    }
    panic!("the engines did not settle");
}

/// A POS holding `ORDERS` orders, each its own signed change.
fn source(ca: &TestCa, dir: &std::path::Path) -> Engine {
    let a = ca.engine(dir, info("pos-a", "pos"), SignatureRule::Required);
    for n in 0..ORDERS {
        a.store()
            .put(
                &day(),
                &format!("/orders/o{n:05}"),
                json!({"sku": "burger", "qty": 1 + n % 3, "total_cents": 1250 + n}),
                Durability::Fast,
            )
            .expect("the POS writes an order");
    }
    a
}

fn refusals(e: &mut Engine) -> Vec<String> {
    std::iter::from_fn(|| e.poll_event())
        .filter_map(|e| match e {
            Event::ChangeRefused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fresh_device_catches_up_from_the_stored_snapshot_then_syncs_normally() {
    let ca = TestCa::new(30);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = source(&ca, da.path());
    let compacted = Automerge::load(&a.store().export(&day()).unwrap())
        .unwrap()
        .save()
        .len();
    let mut b = ca.engine(db.path(), info("pos-b", "pos"), SignatureRule::Required);
    let started = Instant::now();
    a.handle_connect(b.local().clone(), NOW);
    b.handle_connect(a.local().clone(), NOW);
    let wire = drive(&mut [&mut a, &mut b]);
    let took = started.elapsed();
    assert_eq!(
        b.store().heads(&day()).unwrap(),
        a.store().heads(&day()).unwrap()
    );
    let sent = &wire[&(a.local().peer.clone(), b.local().peer.clone())];
    let stored = b.store().document_bytes(&day()).unwrap();
    println!(
        "snapshot catch-up of {ORDERS} orders: {} B of sync + {} B of signatures on the wire, \
         compacted document {compacted} B, {stored} B stored by the receiver, {} signature(s) \
         verified, {:.0} ms (debug)",
        sent.sync_bytes,
        sent.signature_bytes,
        b.metrics().signatures_verified,
        took.as_secs_f64() * 1e3
    );
    // The document travelled as its stored form: at most the compacted document and an
    // eighth more (the changes written since the last compaction), not 300 changes.
    assert!(
        sent.sync_bytes <= compacted + compacted / 8 + 1024,
        "{} B of sync for a {compacted} B document",
        sent.sync_bytes
    );
    assert!(
        sent.signature_bytes < 2048,
        "one signature and one certificate: {} B",
        sent.signature_bytes
    );
    assert!(
        b.metrics().signatures_verified >= 1,
        "the receiver checked the authorship of what it loaded"
    );
    assert!(
        stored <= (compacted + compacted / 8 + 1024) as u64,
        "the receiver keeps the snapshot as received: {stored} B"
    );
    assert!(refusals(&mut b).is_empty());

    // Normal sync resumes: a new order on either side reaches the other as one change.
    a.store()
        .put(
            &day(),
            "/orders/o99999",
            json!({"sku": "soda"}),
            Durability::Fast,
        )
        .unwrap();
    a.handle_local_change(&day(), NOW);
    b.store()
        .put(
            &day(),
            "/orders/o88888",
            json!({"sku": "fries"}),
            Durability::Fast,
        )
        .unwrap();
    b.handle_local_change(&day(), NOW);
    let wire = drive(&mut [&mut a, &mut b]);
    assert_eq!(
        b.store().heads(&day()).unwrap(),
        a.store().heads(&day()).unwrap()
    );
    let live = &wire[&(a.local().peer.clone(), b.local().peer.clone())];
    assert!(
        live.sync_bytes < 2048,
        "a live change after the snapshot is sent alone: {} B",
        live.sync_bytes
    );
    assert_eq!(
        b.store().get(&day(), "/orders/o00042/qty").unwrap(),
        Some(json!(1))
    );
    // What the receiver stored loads again.
    drop(b);
    let b = ca.engine(db.path(), info("pos-b", "pos"), SignatureRule::Required);
    assert_eq!(
        b.store().heads(&day()).unwrap(),
        a.store().heads(&day()).unwrap()
    );
}

/// A kiosk caught up honestly with the POS (keeping the signatures it was sent); it then
/// sends a fresh POS a snapshot it altered. Returns the fresh POS's refusals, whether it
/// holds the document afterwards, and the kiosk's captured `Signatures` frames.
fn forged_snapshot(
    forge: impl Fn(&mut Automerge, &TestCa) -> Vec<ChangeSignature>,
) -> (Vec<String>, bool) {
    let ca = TestCa::new(31);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = source(&ca, dirs[0].path());
    let kiosk_info = info("kiosk-1", "kiosk");
    let mut kiosk = ca.engine(dirs[1].path(), kiosk_info.clone(), SignatureRule::Required);
    a.handle_connect(kiosk_info.clone(), NOW);
    kiosk.handle_connect(a.local().clone(), NOW);
    let wire = drive(&mut [&mut a, &mut kiosk]);
    assert_eq!(
        kiosk.store().heads(&day()).unwrap(),
        a.store().heads(&day()).unwrap(),
        "the kiosk caught up honestly first"
    );
    let genuine = wire[&(a.local().peer.clone(), kiosk_info.peer.clone())]
        .signature_frames
        .clone();
    assert!(!genuine.is_empty(), "the POS sent signatures");

    let mut forged = Automerge::load(&kiosk.store().export(&day()).unwrap()).unwrap();
    let extra = forge(&mut forged, &ca);
    let snapshot = forged.save();

    let mut b = ca.engine(
        dirs[2].path(),
        info("pos-b", "pos"),
        SignatureRule::Required,
    );
    b.handle_connect(kiosk_info.clone(), NOW);
    while b.poll_transmit().is_some() {}
    // The genuine signatures first (all the kiosk could relay), then its own, then the
    // snapshot, as a whole-document V2 message.
    for frame in &genuine {
        b.handle_message(&kiosk_info.peer, frame, NOW)
            .expect("genuine signatures are accepted");
    }
    if !extra.is_empty() {
        let frame = WireMessage::Signatures {
            doc: day(),
            signatures: extra,
            certificates: vec![ca.issue(&kiosk_info).certificate().to_vec()],
        }
        .encode();
        b.handle_message(&kiosk_info.peer, &frame, NOW)
            .expect("the kiosk's own signature is well formed");
    }
    let mut flags = automerge::sync::MessageFlags::new();
    flags.set(automerge::sync::MessageFlags::SUPPORTS_SYNC_RESET);
    let msg = automerge::sync::Message {
        heads: forged.get_heads(),
        need: vec![],
        have: vec![],
        changes: vec![snapshot].into(),
        flags: Some(flags),
        version: automerge::sync::MessageVersion::V2,
    };
    let frame = WireMessage::Sync {
        doc: day(),
        data: msg.encode(),
    }
    .encode();
    b.handle_message(&kiosk_info.peer, &frame, NOW)
        .expect("a refusal is not an error");
    while b.poll_transmit().is_some() {}
    let held = !b.store().heads(&day()).unwrap().is_empty();
    (refusals(&mut b), held)
}

/// The legacy `ObjId` of the map at `/orders/<order>`.
fn order_obj(doc: &Automerge, order: &str) -> automerge::ObjId {
    let (_, orders) = doc.get(ROOT, "orders").unwrap().expect("/orders exists");
    let (_, o) = doc.get(&orders, order).unwrap().expect("the order exists");
    o
}

fn pos_a_actor(doc: &Automerge) -> ActorId {
    doc.get_changes_meta(&[])
        .into_iter()
        .map(|m| m.actor.into_owned())
        .find(|a| a.to_bytes().starts_with(b"outpost:pos:pos-a:"))
        .expect("the POS's actor")
}

#[test]
fn a_snapshot_relayed_unaltered_is_accepted() {
    // The control: the same path as the forgeries below, with nothing altered.
    let (refused, held) = forged_snapshot(|_, _| Vec::new());
    println!("relayed snapshot: refusals {refused:?}");
    assert!(refused.is_empty(), "{refused:?}");
    assert!(held, "the fresh POS took the genuine snapshot");
}

#[test]
fn a_snapshot_with_a_change_forged_under_another_device_is_refused() {
    // The kiosk lowers an order's total as the POS, in a change it cannot sign as the POS.
    let (refused, held) = forged_snapshot(|doc, _| {
        doc.set_actor(pos_a_actor(doc));
        let o = order_obj(doc, "o00007");
        let mut tx = doc.transaction();
        tx.put(&o, "total_cents", 1).unwrap();
        tx.commit();
        Vec::new()
    });
    println!("forged as the POS: refusals {refused:?}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(!held, "nothing of the forged snapshot was stored");
}

#[test]
fn a_snapshot_with_a_signed_change_its_sender_may_not_write_is_refused() {
    // The kiosk's own change, validly signed by the kiosk, marks an order paid: only a POS
    // may write `/orders/*/payment` (the default policy's path rules).
    let (refused, held) = forged_snapshot(|doc, ca| {
        let mut actor = b"outpost:kiosk:kiosk-1:".to_vec();
        actor.extend_from_slice(&[7; 8]);
        doc.set_actor(ActorId::from(actor));
        let o = order_obj(doc, "o00007");
        let mut tx = doc.transaction();
        let p = tx
            .put_object(&o, "payment", automerge::ObjType::Map)
            .unwrap();
        tx.put(&p, "paid", 1250).unwrap();
        let (hash, _) = tx.commit();
        let hash = hash.expect("a change was made");
        let signer = ca.issue(&info("kiosk-1", "kiosk"));
        let signature = signer
            .sign(&outpost_core::signing::signed_bytes(&day(), &hash))
            .unwrap();
        vec![ChangeSignature {
            change: hash.0,
            key: signer.key_id().0,
            signature,
        }]
    });
    println!("kiosk marks paid: refusals {refused:?}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("payment"),
        "refused for the path: {refused:?}"
    );
    assert!(!held, "nothing of the forged snapshot was stored");
}
