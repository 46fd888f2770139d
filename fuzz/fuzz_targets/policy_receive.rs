//! The policy fuzzer's receive path (issue 27): changes crafted from the input (any actor,
//! sequence number, op counter, `pred`, dependencies and operation, against the POS's own
//! copy of the document) arrive from a kiosk at a POS's engine, signed by the kiosk, unsigned,
//! or with a forged signature. Never panics, and the oracle of the simulation's policy fuzzer
//! holds: no value the kiosk may not write differs from what it was before the kiosk spoke.
#![no_main]
use std::sync::Mutex;

use automerge::Automerge;
use libfuzzer_sys::fuzz_target;
use outpost_core::engine::wire::{ChangeSignature, WireMessage};
use outpost_core::signing::{signed_bytes, KeyId, SignatureRule, Signer};
use outpost_core::{
    DocumentId, Durability, Engine, EngineConfig, PeerInfo, Policy, Store, StoreOptions,
    Timestamp,
};
use outpost_testkit::rogue::{craft_change, pick_actor, protected_diff, AttackKind, FuzzRng};
use outpost_testkit::{TestCa, TestSigner};
use rand::Rng;
use serde_json::{json, Value as Json};

const DOCS: [&str; 5] = ["orders/2026-12-07", "menu", "stock", "reports", "health"];

struct Target {
    engine: Engine,
    kiosk: PeerInfo,
    signer: std::sync::Arc<TestSigner>,
    /// Every document's value before the kiosk spoke.
    before: Vec<(DocumentId, Json)>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

fn doc(name: &str) -> DocumentId {
    name.parse().expect("valid document name")
}

fn target() -> Target {
    let ca = TestCa::new(27);
    let pos = PeerInfo::parse("s1", "pos-1", "pos").expect("valid identity");
    // The day as the README lays it out, each step of an order written (by a store that
    // may write anything: the values, not their authors, are what the oracle guards).
    let scratch = tempfile::tempdir().expect("temp dir");
    let writer = Store::open_with(
        scratch.path(),
        StoreOptions {
            identity: Some(pos.clone()),
            policy: Policy::allow_all(),
            ..Default::default()
        },
    )
    .expect("store opens");
    let seed: [(&str, &str, Json); 6] = [
        ("orders/2026-12-07", "/orders", json!({
            "P1-1": {"items": [{"sku": "burger", "qty": 2}], "total": 1900,
                     "kitchen": {"state": "ready"}, "payment": {"amount": 1900}, "closed": true},
            "P1-2": {"items": [{"sku": "fries", "qty": 1}], "total": 350, "kitchen": {"state": "cooking"}},
        })),
        ("menu", "/items", json!({"burger": {"price": 950}, "fries": {"price": 350}})),
        ("stock", "/burger", json!(40)),
        ("reports", "/daily", json!({"r1": 10})),
        ("health", "/devices/pos-1", json!({"ok": true})),
        ("prices_override", "/burger", json!(990)),
    ];
    for (d, path, value) in seed {
        writer.put(&doc(d), path, value, Durability::Fast).expect("seed the documents");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            identity: Some(pos.clone()),
            signer: Some(ca.issue(&pos)),
            ..Default::default()
        },
    )
    .expect("store opens");
    let mut before = Vec::new();
    for d in DOCS {
        let bytes = writer.export(&doc(d)).expect("export");
        store.import(&doc(d), &bytes).expect("import");
        before.push((doc(d), store.get_all(&doc(d)).expect("readable")));
    }
    let mut config = EngineConfig::new(pos, Policy::default());
    config.verifier = Some(ca.verifier());
    config.signatures = SignatureRule::default();
    let mut engine = Engine::new(store, config);
    let kiosk = PeerInfo::parse("s1", "kiosk-9", "kiosk").expect("valid identity");
    engine.handle_connect(kiosk.clone(), Timestamp(0));
    while engine.poll_transmit().is_some() {}
    Target { engine, signer: ca.issue(&kiosk), kiosk, before, _dirs: (scratch, dir) }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = TARGET.lock().unwrap_or_else(|p| p.into_inner());
    let t = guard.get_or_insert_with(target);
    let mut rng = FuzzRng::new(data);
    let own = automerge::ActorId::from(b"outpost:kiosk:kiosk-9:\x01\x02\x03\x04\x05\x06\x07\x08".to_vec());
    for _ in 0..4 {
        if rng.is_empty() {
            break;
        }
        let d = doc(DOCS[rng.random_range(0..DOCS.len())]);
        let copy = t
            .engine
            .store()
            .export(&d)
            .ok()
            .and_then(|b| Automerge::load(&b).ok())
            .unwrap_or_default();
        let kind = [
            AttackKind::Crafted,
            AttackKind::Unsigned,
            AttackKind::ClaimOther,
            AttackKind::Malformed,
        ][rng.random_range(0..4)];
        let actor = pick_actor(&mut rng, kind, &t.kiosk, &copy, &own);
        let change = craft_change(&mut rng, &copy, actor, kind == AttackKind::Malformed);
        let hash = change.hash();
        let mut frames = Vec::new();
        let signature = match (kind, rng.random_range(0..4)) {
            (AttackKind::Unsigned, _) => None,
            (_, 0) => Some(vec![rng.random::<u8>(); 64]),
            _ => Some(t.signer.sign(&signed_bytes(&d, &hash)).expect("the test key signs")),
        };
        if let Some(signature) = signature {
            frames.push(
                WireMessage::Signatures {
                    doc: d.clone(),
                    signatures: vec![ChangeSignature {
                        change: hash.0,
                        key: KeyId::of(t.signer.certificate()).0,
                        signature,
                    }],
                    certificates: vec![t.signer.certificate().to_vec()],
                }
                .encode(),
            );
        }
        let msg = automerge::sync::Message {
            heads: vec![hash],
            need: Vec::new(),
            have: Vec::new(),
            changes: automerge::sync::ChunkList::from(change.raw_bytes().to_vec()),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        frames.push(WireMessage::Sync { doc: d, data: msg.encode() }.encode());
        for f in frames {
            let _ = t.engine.handle_message(&t.kiosk.peer, &f, Timestamp(1));
        }
        while t.engine.poll_transmit().is_some() {}
        while t.engine.poll_event().is_some() {}
    }
    for (d, before) in &t.before {
        let now = t.engine.store().get_all(d).expect("documents stay readable");
        let diff = protected_diff(t.engine.policy(), &t.kiosk, d, before, &now);
        assert!(diff.is_empty(), "the kiosk changed what it may not: {diff:?}");
    }
});
