//! The policy fuzzer's pieces: a rogue device that sends honest devices random hostile input,
//! and the oracle that says what it must never change.
//!
//! The rogue holds a valid certificate of a low role (a kiosk in the tests) and a store that
//! lets it write anything locally. Each [`Rogue::attack`] is one of the [`AttackKind`]s:
//! ordinary writes of its own store on random paths (synced by its own engine, signed),
//! changes crafted with Automerge's `ExpandedChange` (arbitrary actors, sequence numbers,
//! op counters, `pred` and dependencies), with its own valid signature, with none, or with a
//! broken one, replays and altered relays of what honest devices sent it, random protocol
//! messages, and floods of messages naming fresh documents. Frames it crafts go straight onto
//! its connections ([`Net::inject`]), past its own engine.
//!
//! The oracle ([`protected_diff`]) compares an honest device's document with the same
//! device's document in a run of the same seed without the rogue: every value at a path the
//! rogue may not write (under the policy, by its role) must be the same, nothing may be
//! removed or replaced that the rogue could not remove or replace, and nothing may be added
//! where it could not add.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use automerge::legacy::{ElementId, Key, MarkData, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::{ActorId, Automerge, Change, ChangeHash, ExpandedChange, ObjId, ObjType, ReadDoc};
use outpost_core::engine::wire::{ChangeSignature, DocDigest, WireMessage};
use outpost_core::revocation::SignedRevocation;
use outpost_core::signing::{signed_bytes, KeyId, Signer};
use outpost_core::{DocumentId, PeerId, PeerInfo, Pointer, Policy, Role};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

use crate::{Net, TestSigner};

/// Virtual time the network runs after each attack. Not "until quiet": an exchange with the
/// rogue may never go quiet (an honest engine retrying every few seconds a sync the rogue
/// never answers is its right), and that is no reason to stop the fuzzer.
pub const SETTLE_MS: u64 = 5_000;

/// More messages than this in the network within [`SETTLE_MS`] of an attack is a message
/// storm (an attack and its answers take a few dozen).
pub const STORM_MESSAGES: u64 = 5_000;

/// What the rogue tried, one kind per attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttackKind {
    /// Random puts, deletes, increments and inserts on random paths of its own store
    /// (which lets it write anything), synced by its engine, signed as itself.
    LocalWrite,
    /// A change crafted with `ExpandedChange` under its own identity (arbitrary `pred`, op
    /// counters, sequence numbers, dependencies), validly signed.
    Crafted,
    /// A crafted change sent with no signature, under its own or any other actor.
    Unsigned,
    /// A crafted change claiming another device or role (a POS, `outpost:cloud:...`,
    /// head office, made-up devices, non-outpost actors), signed with its own key or a
    /// forged signature.
    ClaimOther,
    /// A change crafted to be invalid: operations on objects the document does not have,
    /// sequence numbers and op counters that repeat or skip, missing dependencies, `pred`
    /// naming made-up operations; under any actor, its own or another's.
    Malformed,
    /// A `Signatures` and `Sync` pair an honest device sent it, sent again, to any honest
    /// device, under its document or another.
    Replay,
    /// Another device's changes relayed with a signature altered, swapped, re-signed by the
    /// rogue, or dropped, or with the change's bytes altered.
    AlteredRelay,
    /// A random protocol message (`Hello`, `Reconcile`, `Ack`, `Error`, `Refused`,
    /// `SyncPart`, `Revocations`, garbage sync data, undecodable bytes).
    Protocol,
    /// Many `Refused`, empty `Sync` and empty `Signatures` messages naming fresh documents.
    NameFlood,
}

impl AttackKind {
    /// Every kind.
    pub const ALL: [AttackKind; 9] = [
        AttackKind::LocalWrite,
        AttackKind::Crafted,
        AttackKind::Unsigned,
        AttackKind::ClaimOther,
        AttackKind::Malformed,
        AttackKind::Replay,
        AttackKind::AlteredRelay,
        AttackKind::Protocol,
        AttackKind::NameFlood,
    ];
}

/// Counts per attack kind: what the rogue tried and how the honest devices took it.
#[derive(Clone, Debug, Default)]
pub struct AttackStats {
    /// Per kind: (tried, refused, applied somewhere, not sent for want of a link).
    pub kinds: BTreeMap<AttackKind, KindStats>,
    /// Honest writes that failed because of what the rogue wrote within its rights (the
    /// test counts them; e.g. a kiosk may replace `/devices` of `health`).
    pub blocked_within_rights: u64,
}

/// How the honest devices took one kind of attack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Attacks of this kind.
    pub tried: u64,
    /// Attacks after which an honest engine counted a refused change or a bad message.
    pub refused: u64,
    /// Attacks after which an honest engine applied a change (the rogue's rights allow some).
    pub applied: u64,
    /// Attacks not delivered: the rogue had no link to its target at that moment.
    pub no_link: u64,
}

impl AttackStats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &AttackStats) {
        for (k, s) in &other.kinds {
            let e = self.kinds.entry(*k).or_default();
            e.tried += s.tried;
            e.refused += s.refused;
            e.applied += s.applied;
            e.no_link += s.no_link;
        }
        self.blocked_within_rights += other.blocked_within_rights;
    }

    /// Attacks tried in all.
    pub fn tried(&self) -> u64 {
        self.kinds.values().map(|s| s.tried).sum()
    }
}

impl fmt::Display for AttackStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<13} {:>7} {:>8} {:>8} {:>8}",
            "attack", "tried", "refused", "applied", "no link"
        )?;
        for (k, s) in &self.kinds {
            writeln!(
                f,
                "{:<13} {:>7} {:>8} {:>8} {:>8}",
                format!("{k:?}"),
                s.tried,
                s.refused,
                s.applied,
                s.no_link
            )?;
        }
        writeln!(
            f,
            "honest writes blocked within the rogue's rights: {}",
            self.blocked_within_rights
        )
    }
}

// ---- the oracle ----

/// What differs between an honest device's document `base` (from the run without the rogue)
/// and `actual` (from the run with it) at paths that the `rogue` device (by its role and,
/// for rules of its own entry, its id) may not write under `policy`:
/// one line per difference, empty if none. A value the role could replace is skipped with
/// everything below it; a key the role could not delete must still be there; a key that was
/// not there must be one the role could create (with everything inside it); elsewhere
/// values must be equal. A missing document reads as `{}`.
pub fn protected_diff(
    policy: &Policy,
    rogue: &PeerInfo,
    doc: &DocumentId,
    base: &Json,
    actual: &Json,
) -> Vec<String> {
    let mut out = Vec::new();
    let judge = Judge {
        policy,
        role: &rogue.role,
        device: &rogue.peer,
        doc,
    };
    judge.diff(&Pointer::root(), base, Some(actual), &mut out);
    out
}

struct Judge<'a> {
    policy: &'a Policy,
    role: &'a Role,
    device: &'a PeerId,
    doc: &'a DocumentId,
}

impl Judge<'_> {
    fn may(&self, path: &Pointer, replaces: bool) -> bool {
        self.policy.may_write(self.role, self.doc.context())
            && self.policy.may_write_path_as(
                self.role,
                Some(self.device),
                self.doc.context(),
                path,
                replaces,
            )
    }

    fn diff(&self, path: &Pointer, base: &Json, actual: Option<&Json>, out: &mut Vec<String>) {
        if !path.tokens().is_empty() && self.may(path, true) {
            return;
        }
        let Some(actual) = actual else {
            out.push(format!("{}{path}: removed (was {})", self.doc, brief(base)));
            return;
        };
        match (base, actual) {
            (Json::Object(b), Json::Object(a)) => {
                for (k, bv) in b {
                    self.diff(&path.child(k.clone()), bv, a.get(k), out);
                }
                for (k, av) in a {
                    if !b.contains_key(k) {
                        self.added(&path.child(k.clone()), av, out);
                    }
                }
            }
            (Json::Array(b), Json::Array(a)) => {
                // List elements are written at the list's path: one who may insert may add
                // elements, never remove or change those there.
                let kept = if self.may(path, false) {
                    is_subsequence(b, a)
                } else {
                    a == b
                };
                if !kept {
                    out.push(format!(
                        "{}{path}: list {} became {}",
                        self.doc,
                        brief(base),
                        brief(actual)
                    ));
                }
            }
            _ if base == actual => {}
            _ => out.push(format!(
                "{}{path}: {} became {}",
                self.doc,
                brief(base),
                brief(actual)
            )),
        }
    }

    /// `value` was added at `path` (not there without the rogue).
    fn added(&self, path: &Pointer, value: &Json, out: &mut Vec<String>) {
        if !self.may(path, false) {
            out.push(format!("{}{path}: added {}", self.doc, brief(value)));
            return;
        }
        if let Json::Object(m) = value {
            for (k, v) in m {
                self.added(&path.child(k.clone()), v, out);
            }
        }
    }
}

fn is_subsequence(small: &[Json], big: &[Json]) -> bool {
    let mut it = big.iter();
    small.iter().all(|s| it.any(|b| b == s))
}

fn brief(v: &Json) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

// ---- the rogue ----

/// A rogue device of a simulation: see the [module documentation](self).
pub struct Rogue {
    rng: StdRng,
    me: PeerInfo,
    signer: Arc<TestSigner>,
    /// Honest devices it may target.
    targets: Vec<PeerId>,
    /// Documents it knows of, to aim at.
    docs: Vec<DocumentId>,
    /// `Signatures` and `Sync` frames honest devices sent it, by document.
    captured: Vec<(DocumentId, Option<Vec<u8>>, Vec<u8>)>,
    /// Certificates of other devices it has seen.
    certificates: Vec<Vec<u8>>,
    /// Signatures of other devices it has seen.
    signatures: Vec<ChangeSignature>,
    /// The kinds of attack it draws from.
    kinds: Vec<AttackKind>,
    /// The attack under way or last made.
    last: Option<AttackKind>,
    /// Messages sent after the last attack, if they were a storm (see [`STORM_MESSAGES`]).
    storm: Option<u64>,
    /// What it tried.
    pub stats: AttackStats,
}

/// Metrics summed over the honest devices: (applied, refused or malformed).
fn honest_counts(net: &Net, honest: &[PeerId]) -> (u64, u64) {
    honest
        .iter()
        .filter(|p| net.is_running(p))
        .map(|p| {
            let m = net.engine(p).metrics();
            (m.changes_applied, m.changes_refused + m.sync_errors)
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

const VOCABULARY: &[&str] = &[
    "orders", "items", "kitchen", "payment", "closed", "price", "state", "amount", "devices",
    "burger", "fries", "cola", "total", "qty", "sku", "_tickets",
];

impl Rogue {
    /// A rogue with `rogue`'s certificate in a signing `net`, aiming at `targets` and at
    /// `docs` (more are learnt from what it receives); its choices derive from `seed`.
    pub fn new(
        net: &mut Net,
        rogue: &PeerId,
        targets: Vec<PeerId>,
        docs: Vec<DocumentId>,
        seed: u64,
    ) -> Rogue {
        let me = net.info(rogue);
        let ca = net
            .ca()
            .expect("a rogue needs a signing network: call Net::signing first");
        net.tap(rogue);
        Rogue {
            rng: StdRng::seed_from_u64(seed),
            signer: ca.issue(&me),
            me,
            targets,
            docs,
            captured: Vec::new(),
            certificates: Vec::new(),
            signatures: Vec::new(),
            kinds: AttackKind::ALL.to_vec(),
            last: None,
            storm: None,
            stats: AttackStats::default(),
        }
    }

    /// Draws attacks from `kinds` only (all by default).
    pub fn only(&mut self, kinds: &[AttackKind]) -> &mut Self {
        assert!(
            !kinds.is_empty(),
            "a rogue needs at least one kind of attack"
        );
        self.kinds = kinds.to_vec();
        self
    }

    /// How many messages the network sent after the last attack, if that was a storm (over
    /// [`STORM_MESSAGES`] in less than [`SETTLE_MS`]); cleared.
    pub fn take_storm(&mut self) -> Option<u64> {
        self.storm.take()
    }

    /// The attack under way, or the last one made (what a panic interrupted).
    pub fn last(&self) -> Option<AttackKind> {
        self.last
    }

    /// One attack of a random kind, then the network runs [`SETTLE_MS`]; counts what the honest
    /// devices refused and applied. Returns the kind.
    pub fn attack(&mut self, net: &mut Net) -> AttackKind {
        self.learn(net);
        let kind = *self
            .kinds
            .choose(&mut self.rng)
            .expect("a rogue has kinds of attack");
        self.last = Some(kind);
        let before = honest_counts(net, &self.targets);
        self.stats.kinds.entry(kind).or_default().tried += 1;
        let delivered = match kind {
            AttackKind::LocalWrite => self.local_write(net),
            AttackKind::Crafted
            | AttackKind::Unsigned
            | AttackKind::ClaimOther
            | AttackKind::Malformed => self.crafted(net, kind),
            AttackKind::Replay => self.replay(net),
            AttackKind::AlteredRelay => self.altered_relay(net),
            AttackKind::Protocol => self.protocol(net),
            AttackKind::NameFlood => self.name_flood(net),
        };
        // Settle in slices, so that a message storm (honest engines exchanging messages as
        // fast as the links carry them, forever) is caught early rather than simulated.
        let sent = net.total_stats().messages;
        for _ in 0..10 {
            net.advance(SETTLE_MS / 10);
            let now = net.total_stats().messages - sent;
            if now > STORM_MESSAGES {
                // With OUTPOST_FUZZ_DEBUG set: the last frames the storm brought the rogue,
                // decoded (with OUTPOST_SIM_TRACE, every frame of the run is printed).
                if std::env::var("OUTPOST_FUZZ_DEBUG").is_ok() {
                    let tapped = net.take_tapped();
                    for (from, bytes) in tapped.iter().rev().take(12) {
                        let m = match WireMessage::decode(bytes) {
                            Ok(WireMessage::Sync { doc, data }) => match Message::decode(&data) {
                                Ok(m) => format!(
                                    "Sync {doc}: heads {:?} need {:?} have {} changes {}",
                                    m.heads,
                                    m.need,
                                    m.have.len(),
                                    m.changes.len()
                                ),
                                Err(e) => format!("Sync {doc}: {e}"),
                            },
                            other => format!("{other:?}"),
                        };
                        eprintln!("storm: {from} -> rogue: {}", &m[..m.len().min(300)]);
                    }
                }
                self.storm = Some(now);
                break;
            }
        }
        let after = honest_counts(net, &self.targets);
        let s = self.stats.kinds.entry(kind).or_default();
        if !delivered {
            s.no_link += 1;
        }
        if after.1 > before.1 {
            s.refused += 1;
        }
        if after.0 > before.0 {
            s.applied += 1;
        }
        kind
    }

    /// Reads what honest devices sent it: documents, signatures, certificates.
    fn learn(&mut self, net: &mut Net) {
        let mut last_sigs: BTreeMap<DocumentId, Vec<u8>> = BTreeMap::new();
        for (_, bytes) in net.take_tapped() {
            match WireMessage::decode(&bytes) {
                Ok(WireMessage::Signatures {
                    doc,
                    signatures,
                    certificates,
                }) => {
                    for c in certificates {
                        if !self.certificates.contains(&c) && self.certificates.len() < 16 {
                            self.certificates.push(c);
                        }
                    }
                    if self.signatures.len() < 256 {
                        self.signatures.extend(signatures);
                    }
                    last_sigs.insert(doc, bytes);
                }
                Ok(WireMessage::Sync { doc, data }) => {
                    let carries = Message::decode(&data).is_ok_and(|m| !m.changes.is_empty());
                    if carries && self.captured.len() < 256 {
                        let sigs = last_sigs.remove(&doc);
                        self.captured.push((doc.clone(), sigs, bytes));
                    }
                    if !self.docs.contains(&doc) {
                        self.docs.push(doc);
                    }
                }
                _ => {}
            }
        }
    }

    fn target(&mut self) -> PeerId {
        self.targets
            .choose(&mut self.rng)
            .expect("a rogue has targets")
            .clone()
    }

    fn doc(&mut self) -> DocumentId {
        if self.rng.random_bool(0.1) {
            let ctx = [
                "orders",
                "menu",
                "reports",
                "stock",
                "health",
                "prices_override",
            ]
            .choose(&mut self.rng)
            .expect("non-empty");
            return format!("{ctx}/x{}", self.rng.random_range(0..4))
                .parse()
                .expect("valid document name");
        }
        self.docs
            .choose(&mut self.rng)
            .expect("a rogue knows documents")
            .clone()
    }

    /// The rogue's copy of `doc` (empty if it holds none).
    fn copy(net: &Net, rogue: &PeerId, doc: &DocumentId) -> Automerge {
        net.store(rogue)
            .export(doc)
            .ok()
            .and_then(|b| Automerge::load(&b).ok())
            .unwrap_or_default()
    }

    fn send(&mut self, net: &mut Net, to: &PeerId, frames: Vec<Vec<u8>>) -> bool {
        let me = self.me.peer.clone();
        frames.into_iter().all(|f| net.inject(&me, to, f))
    }

    // ---- attacks ----

    fn local_write(&mut self, net: &mut Net) -> bool {
        let doc = self.doc();
        let copy = Self::copy(net, &self.me.peer, &doc);
        let paths = paths_of(&copy);
        let path = match paths.choose(&mut self.rng) {
            Some(p) if self.rng.random_bool(0.8) => {
                let mut p = p.clone();
                if self.rng.random_bool(0.3) {
                    let k = *VOCABULARY.choose(&mut self.rng).expect("non-empty");
                    p.push('/');
                    p.push_str(k);
                }
                p
            }
            _ => format!("/{}", VOCABULARY.choose(&mut self.rng).expect("non-empty")),
        };
        let value = self.json();
        let delta = self.rng.random_range(-5..5);
        let op = self.rng.random_range(0..4);
        let me = self.me.peer.clone();
        let dur = outpost_core::Durability::Fast;
        // Refused local writes (a list where a map is) are fine: the rogue tries another.
        let _ = net.try_write(&me, &doc, |s, d| match op {
            0 => s.put(d, &path, value, dur),
            1 => s.delete(d, &path, dur),
            2 => s.increment(d, &path, delta, dur),
            _ => s.insert(d, &path, 0, value, dur),
        });
        true
    }

    fn json(&mut self) -> Json {
        match self.rng.random_range(0..6) {
            0 => Json::from(self.rng.random_range(-100..1000)),
            1 => Json::Bool(self.rng.random()),
            2 => Json::Null,
            3 => serde_json::json!({"state": "stolen", "amount": 0}),
            4 => serde_json::json!([1, "x"]),
            _ => Json::String(format!("rogue-{}", self.rng.random::<u16>())),
        }
    }

    fn sign_with(
        &self,
        doc: &DocumentId,
        hash: &ChangeHash,
        signer: &TestSigner,
    ) -> ChangeSignature {
        let cert = signer.certificate();
        ChangeSignature {
            change: hash.0,
            key: KeyId::of(cert).0,
            signature: signer
                .sign(&signed_bytes(doc, hash))
                .expect("the simulation's keys sign"),
        }
    }

    fn crafted(&mut self, net: &mut Net, kind: AttackKind) -> bool {
        let doc = self.doc();
        let copy = Self::copy(net, &self.me.peer, &doc);
        let own = net.store(&self.me.peer).actor().clone();
        let mut frames = Vec::new();
        let mut chunks = Vec::new();
        let mut sigs = Vec::new();
        for _ in 0..self.rng.random_range(1..3) {
            let actor = pick_actor(&mut self.rng, kind, &self.me, &copy, &own);
            let malformed = kind == AttackKind::Malformed;
            let change = craft_change(&mut self.rng, &copy, actor, malformed);
            let hash = change.hash();
            chunks.push(change.raw_bytes().to_vec());
            match kind {
                AttackKind::Unsigned => {}
                AttackKind::ClaimOther if self.rng.random_bool(0.3) => {
                    // A forged signature under an honest device's key.
                    let key = self
                        .certificates
                        .choose(&mut self.rng)
                        .map_or([0u8; 32], |c| KeyId::of(c).0);
                    sigs.push(ChangeSignature {
                        change: hash.0,
                        key,
                        signature: self.rng.random::<[u8; 32]>().repeat(2),
                    });
                }
                _ => sigs.push(self.sign_with(&doc, &hash, &self.signer)),
            }
        }
        if !sigs.is_empty() {
            frames.push(
                WireMessage::Signatures {
                    doc: doc.clone(),
                    signatures: sigs,
                    certificates: vec![self.signer.certificate().to_vec()],
                }
                .encode(),
            );
        }
        frames.push(sync_frame(&doc, chunks, copy.get_heads()));
        let to = self.target();
        self.send(net, &to, frames)
    }

    fn replay(&mut self, net: &mut Net) -> bool {
        let Some((doc, sigs, sync)) = self.captured.choose(&mut self.rng).cloned() else {
            return self.protocol(net);
        };
        let other = self.doc();
        let rename = self.rng.random_bool(0.3);
        let mut frames = Vec::new();
        for f in sigs.into_iter().chain([sync]) {
            let f = if rename {
                retarget(&f, &other).unwrap_or(f)
            } else {
                f
            };
            frames.push(f);
        }
        let _ = doc;
        let to = self.target();
        self.send(net, &to, frames)
    }

    fn altered_relay(&mut self, net: &mut Net) -> bool {
        let Some((doc, sigs, sync)) = self.captured.choose(&mut self.rng).cloned() else {
            return self.protocol(net);
        };
        let Ok(WireMessage::Sync { data, .. }) = WireMessage::decode(&sync) else {
            return false;
        };
        let Ok(mut msg) = Message::decode(&data) else {
            return false;
        };
        let mut changes: Vec<Vec<u8>> = msg.changes.iter().map(<[u8]>::to_vec).collect();
        let mut frames = Vec::new();
        let signatures = sigs
            .and_then(|s| match WireMessage::decode(&s) {
                Ok(WireMessage::Signatures { signatures, .. }) => Some(signatures),
                _ => None,
            })
            .unwrap_or_default();
        match self.rng.random_range(0..5) {
            0 => {
                // Flip a bit of one signature.
                let mut signatures = signatures;
                if let Some(s) = signatures.first_mut() {
                    if let Some(b) = s.signature.first_mut() {
                        *b ^= 1;
                    }
                }
                frames.push(sigs_frame(&doc, signatures, self.certificates.clone()));
            }
            1 => {
                // The rogue re-signs another device's changes as if it had authored them.
                let signatures = signatures
                    .iter()
                    .map(|s| self.sign_with(&doc, &ChangeHash(s.change), &self.signer))
                    .collect();
                frames.push(sigs_frame(
                    &doc,
                    signatures,
                    vec![self.signer.certificate().to_vec()],
                ));
            }
            2 => {
                // Signatures of other changes (another document's, earlier ones).
                let mut signatures = signatures;
                if let (Some(s), Some(o)) = (
                    signatures.first_mut(),
                    self.signatures.choose(&mut self.rng),
                ) {
                    s.signature = o.signature.clone();
                    s.key = o.key;
                }
                frames.push(sigs_frame(&doc, signatures, Vec::new()));
            }
            3 => {
                // The change's bytes altered (and so its hash), the signatures kept.
                frames.push(sigs_frame(&doc, signatures, Vec::new()));
                if let Some(c) = changes.first_mut() {
                    let i = self.rng.random_range(0..c.len().max(1));
                    if let Some(b) = c.get_mut(i) {
                        *b ^= 1 << self.rng.random_range(0..8);
                    }
                }
            }
            // No signatures at all.
            _ => {}
        }
        msg.changes = ChunkList::from(changes);
        frames.push(
            WireMessage::Sync {
                doc: doc.clone(),
                data: msg.encode(),
            }
            .encode(),
        );
        let to = self.target();
        self.send(net, &to, frames)
    }

    fn protocol(&mut self, net: &mut Net) -> bool {
        let doc = self.doc();
        let frame = match self.rng.random_range(0..11) {
            0 => WireMessage::Hello {
                docs: (0..self.rng.random_range(0..20))
                    .map(|i| DocDigest {
                        doc: format!("orders/h{i}").parse().expect("valid"),
                        digest: self.rng.random(),
                    })
                    .collect(),
            }
            .encode(),
            1 => WireMessage::Ack {
                bytes: self.rng.random(),
            }
            .encode(),
            2 => WireMessage::Error {
                code: self.rng.random_range(0..4),
                message: "rogue".into(),
            }
            .encode(),
            3 => WireMessage::Refused {
                doc,
                reason: "rogue".into(),
            }
            .encode(),
            4 => WireMessage::SyncPart {
                doc,
                index: self.rng.random_range(0..4),
                total: self.rng.random_range(0..5),
                data: vec![0x42; self.rng.random_range(0..2_000)],
            }
            .encode(),
            5 => WireMessage::Revocations {
                records: vec![SignedRevocation {
                    body: self.rng.random::<[u8; 32]>().to_vec(),
                    signature: vec![7; 64],
                }],
            }
            .encode(),
            6 => WireMessage::Sync {
                doc,
                data: self.rng.random::<[u8; 24]>().to_vec(),
            }
            .encode(),
            7 => WireMessage::Reconcile {
                ranges: vec![outpost_core::engine::wire::NameRange {
                    lower: String::new(),
                    upper: None,
                    summary: outpost_core::engine::wire::RangeSummary::Items {
                        docs: vec![(format!("{doc}"), self.rng.random())],
                        reply: self.rng.random(),
                    },
                }],
            }
            .encode(),
            8 => sigs_frame(
                &doc,
                Vec::new(),
                vec![self.rng.random::<[u8; 32]>().to_vec()],
            ),
            9 => WireMessage::HelloPart {
                docs: vec![DocDigest {
                    doc,
                    digest: self.rng.random(),
                }],
            }
            .encode(),
            _ => {
                let n = self.rng.random_range(0..64);
                (0..n).map(|_| self.rng.random()).collect()
            }
        };
        let to = self.target();
        self.send(net, &to, vec![frame])
    }

    fn name_flood(&mut self, net: &mut Net) -> bool {
        let n = self.rng.random_range(200..800);
        let base: u32 = self.rng.random();
        let mut frames = Vec::new();
        for i in 0..n {
            let doc: DocumentId = format!("orders/f{base}-{i}").parse().expect("valid");
            frames.push(match i % 3 {
                0 => WireMessage::Refused {
                    doc,
                    reason: String::new(),
                }
                .encode(),
                1 => sync_frame(&doc, Vec::new(), Vec::new()),
                _ => sigs_frame(&doc, Vec::new(), Vec::new()),
            });
        }
        let to = self.target();
        self.send(net, &to, frames)
    }
}

/// An actor for a crafted change: for [`AttackKind::Crafted`] the rogue's own (`own`, or a
/// new actor of its identity), else another device's or role's, made up or taken from
/// `copy`, or no outpost actor at all (and for [`AttackKind::Unsigned`] and
/// [`AttackKind::Malformed`] sometimes its own). `me` is the rogue's identity.
pub fn pick_actor<R: Rng + ?Sized>(
    rng: &mut R,
    kind: AttackKind,
    me: &PeerInfo,
    copy: &Automerge,
    own: &ActorId,
) -> ActorId {
    let tail: [u8; 8] = rng.random();
    let made = |role: &str, peer: &str| {
        let mut b = format!("outpost:{role}:{peer}:").into_bytes();
        b.extend_from_slice(&tail);
        ActorId::from(b)
    };
    match kind {
        AttackKind::Crafted => {
            if rng.random_bool(0.5) {
                own.clone()
            } else {
                made(me.role.as_str(), me.peer.as_str())
            }
        }
        _ => {
            let others: Vec<ActorId> = actors_of(copy).into_iter().filter(|a| a != own).collect();
            match rng.random_range(0..9) {
                0 | 1 if !others.is_empty() => {
                    others.choose(rng).expect("checked non-empty").clone()
                }
                2 => made("cloud", "ghost"),
                3 => made("head-office", "hq"),
                4 => made("pos", "pos-9"),
                5 => made("pos", "pos-1"),
                6 => made("kitchen", "kitchen-1"),
                7 if kind != AttackKind::ClaimOther => own.clone(),
                7 => made("kiosk", "kiosk-7"),
                _ => ActorId::from(rng.random::<[u8; 16]>().to_vec()),
            }
        }
    }
}

/// A change of `actor` crafted against `copy` (the attacker's copy of the document): 1 to 3
/// operations of any kind on objects of the document, objects the change makes, or made-up
/// objects; `pred` empty, real or made up; sequence number, first op counter and
/// dependencies valid or not.
pub fn craft_change<R: Rng + ?Sized>(
    rng: &mut R,
    copy: &Automerge,
    actor: ActorId,
    malformed: bool,
) -> Change {
    let changes = copy.get_changes(&[]);
    let max_op = changes
        .iter()
        .map(|c| c.start_op().get() + c.len() as u64 - 1)
        .max()
        .unwrap_or(0);
    let next_seq = changes
        .iter()
        .filter(|c| c.actor_id() == &actor)
        .map(|c| c.seq())
        .max()
        .unwrap_or(0)
        + 1;
    let seq = match rng.random_range(0..6) {
        0 if malformed => rng.random_range(1..4),
        1 if malformed => next_seq + rng.random_range(1..3),
        _ => next_seq,
    };
    let start_op = match rng.random_range(0..5) {
        0 if malformed => rng.random_range(1..10),
        1 | 2 => max_op + 1 + rng.random_range(1..10_000),
        _ => max_op + 1,
    };
    let heads = copy.get_heads();
    let deps = match rng.random_range(0..6) {
        0 if malformed => Vec::new(),
        1 if malformed => vec![ChangeHash(rng.random())],
        2 if !changes.is_empty() => vec![changes.choose(rng).expect("checked non-empty").hash()],
        _ => heads,
    };
    let objects = objects_of(copy);
    let n = rng.random_range(1..4);
    let mut operations: Vec<Op> = Vec::new();
    let mut made: Vec<(ObjectId, ObjType)> = Vec::new();
    for i in 0..n {
        let id = OpId(start_op + i, actor.clone());
        let (obj, ty) = if !made.is_empty() && rng.random_bool(0.5) {
            made.choose(rng).expect("non-empty").clone()
        } else if !malformed || rng.random_bool(0.9) {
            let (o, t) = objects.choose(rng).expect("root is there");
            (legacy_obj(o), *t)
        } else {
            (
                ObjectId::Id(OpId(rng.random_range(1..50), actor.clone())),
                ObjType::Map,
            )
        };
        let obj_ex = copy.import_obj(&obj.to_string()).ok();
        let seq_obj = matches!(ty, ObjType::List | ObjType::Text);
        let (key, existing) = if seq_obj {
            let elems: Vec<OpId> = obj_ex
                .as_ref()
                .map(|o| {
                    copy.list_range(o, ..)
                        .filter_map(|item| item.id().to_string().parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            match elems.choose(rng) {
                Some(e) if rng.random_bool(0.7) => {
                    (Key::Seq(ElementId::Id(e.clone())), vec![e.clone()])
                }
                _ => (Key::Seq(ElementId::Head), Vec::new()),
            }
        } else {
            let keys: Vec<String> = obj_ex
                .as_ref()
                .map(|o| copy.keys(o).collect())
                .unwrap_or_default();
            let k = match keys.choose(rng) {
                Some(k) if rng.random_bool(0.7) => k.clone(),
                _ => VOCABULARY.choose(rng).expect("non-empty").to_string(),
            };
            let existing: Vec<OpId> = obj_ex
                .as_ref()
                .and_then(|o| copy.get_all(o, k.as_str()).ok())
                .map(|all| {
                    all.into_iter()
                        .filter_map(|(_, id)| id.to_string().parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            (Key::Map(k.as_str().into()), existing)
        };
        let pred: Vec<OpId> = match rng.random_range(0..5) {
            0 => Vec::new(),
            1 if malformed => vec![OpId(rng.random_range(1..max_op + 2), actor.clone())],
            _ => existing,
        };
        let action = match rng.random_range(0..12) {
            0..=4 => OpType::Put(scalar(rng)),
            5 => OpType::Make(ObjType::Map),
            6 => OpType::Make(ObjType::List),
            7 => OpType::Make(ObjType::Text),
            8 | 9 => OpType::Delete,
            10 => OpType::Increment(rng.random_range(-5..5)),
            _ if rng.random_bool(0.5) => OpType::MarkBegin(MarkData {
                name: "bold".into(),
                value: automerge::ScalarValue::Boolean(true),
                expand: rng.random(),
            }),
            _ => OpType::MarkEnd(rng.random()),
        };
        if let OpType::Make(t) = action {
            made.push((ObjectId::Id(id.clone()), t));
        }
        let insert = seq_obj && !matches!(action, OpType::Delete) && rng.random_bool(0.8);
        operations.push(Op {
            action,
            obj,
            key,
            pred: SortedVec::from(pred),
            insert,
        });
    }
    Change::from(ExpandedChange {
        operations,
        actor_id: actor,
        hash: None,
        seq,
        start_op: std::num::NonZeroU64::new(start_op).expect("start_op is at least 1"),
        time: rng.random_range(0..2_000_000_000_000),
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    })
}

fn scalar<R: Rng + ?Sized>(rng: &mut R) -> automerge::ScalarValue {
    use automerge::ScalarValue as S;
    match rng.random_range(0..7) {
        0 => S::Str(format!("rogue-{}", rng.random::<u16>()).into()),
        1 => S::Int(rng.random_range(-10..1_000)),
        2 => S::F64(0.0),
        3 => S::Boolean(rng.random()),
        4 => S::Null,
        5 => S::counter(rng.random_range(0..10)),
        _ => S::Uint(rng.random()),
    }
}

/// A `Sync` frame of `doc` carrying `changes` (raw change bytes) and claiming `heads`.
pub fn sync_frame(doc: &DocumentId, changes: Vec<Vec<u8>>, heads: Vec<ChangeHash>) -> Vec<u8> {
    let msg = Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(changes),
        flags: None,
        version: MessageVersion::V1,
    };
    WireMessage::Sync {
        doc: doc.clone(),
        data: msg.encode(),
    }
    .encode()
}

/// A `Signatures` frame of `doc`.
pub fn sigs_frame(
    doc: &DocumentId,
    signatures: Vec<ChangeSignature>,
    certificates: Vec<Vec<u8>>,
) -> Vec<u8> {
    WireMessage::Signatures {
        doc: doc.clone(),
        signatures,
        certificates,
    }
    .encode()
}

/// The same frame for another document.
fn retarget(frame: &[u8], other: &DocumentId) -> Option<Vec<u8>> {
    Some(
        match WireMessage::decode(frame).ok()? {
            WireMessage::Sync { data, .. } => WireMessage::Sync {
                doc: other.clone(),
                data,
            },
            WireMessage::Signatures {
                signatures,
                certificates,
                ..
            } => WireMessage::Signatures {
                doc: other.clone(),
                signatures,
                certificates,
            },
            _ => return None,
        }
        .encode(),
    )
}

fn legacy_obj(o: &ObjId) -> ObjectId {
    o.to_string().parse().unwrap_or(ObjectId::Root)
}

/// The objects of a document (the root first), with their types, to aim at.
fn objects_of(doc: &Automerge) -> Vec<(ObjId, ObjType)> {
    let mut out = vec![(automerge::ROOT, ObjType::Map)];
    let mut i = 0;
    while i < out.len() && out.len() < 200 {
        let (obj, ty) = out[i].clone();
        match ty {
            ObjType::Map | ObjType::Table => {
                for k in doc.keys(&obj).collect::<Vec<_>>() {
                    if let Ok(Some((automerge::Value::Object(t), id))) = doc.get(&obj, k.as_str()) {
                        out.push((id, t));
                    }
                }
            }
            ObjType::List => {
                for item in doc.list_range(&obj, ..) {
                    if let automerge::ValueRef::Object(t) = item.value {
                        out.push((item.id(), t));
                    }
                }
            }
            ObjType::Text => {}
        }
        i += 1;
    }
    out
}

/// JSON Pointers of every value of a document, to aim local writes at.
fn paths_of(doc: &Automerge) -> Vec<String> {
    fn walk(v: &Json, at: String, out: &mut Vec<String>) {
        if out.len() > 500 {
            return;
        }
        match v {
            Json::Object(m) => {
                for (k, c) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    walk(c, p, out);
                }
            }
            Json::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    walk(c, p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&automerge_json(doc), String::new(), &mut out);
    out
}

fn automerge_json(doc: &Automerge) -> Json {
    fn obj(doc: &Automerge, o: &ObjId) -> Json {
        match doc.object_type(o) {
            Ok(ObjType::List) => Json::Array(
                doc.list_range(o, ..)
                    .map(|item| match item.value {
                        automerge::ValueRef::Object(_) => obj(doc, &item.id()),
                        _ => Json::Null,
                    })
                    .collect(),
            ),
            Ok(ObjType::Text) => Json::String(String::new()),
            _ => Json::Object(
                doc.keys(o)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|k| {
                        let v = match doc.get(o, k.as_str()) {
                            Ok(Some((automerge::Value::Object(_), id))) => obj(doc, &id),
                            _ => Json::Null,
                        };
                        (k, v)
                    })
                    .collect(),
            ),
        }
    }
    obj(doc, &automerge::ROOT)
}

/// The actors that authored changes of a document.
fn actors_of(doc: &Automerge) -> Vec<ActorId> {
    let set: BTreeSet<ActorId> = doc
        .get_changes(&[])
        .iter()
        .map(|c| c.actor_id().clone())
        .collect();
    set.into_iter().collect()
}

/// How many changes each actor authored in a document.
pub fn changes_per_actor(doc: &Automerge) -> BTreeMap<ActorId, u64> {
    let mut out = BTreeMap::new();
    for c in doc.get_changes(&[]) {
        *out.entry(c.actor_id().clone()).or_default() += 1;
    }
    out
}

/// A random source that reads a fuzzer's input: every decision of the crafting functions
/// consumes input bytes, so that a coverage-guided fuzzer steers them; zeros once the input
/// is spent.
pub struct FuzzRng<'a> {
    input: &'a [u8],
}

impl<'a> FuzzRng<'a> {
    /// A source over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        FuzzRng { input }
    }

    /// Whether the input is spent.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }
}

impl rand::RngCore for FuzzRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let n = dst.len().min(self.input.len());
        dst[..n].copy_from_slice(&self.input[..n]);
        dst[n..].fill(0);
        self.input = &self.input[n..];
    }
}

/// A compressed change chunk (magic, checksum, type 2, LEB128 length, DEFLATE data) that
/// inflates to `inflated` zero bytes: about 1 KB on the wire per MiB inflated. Receivers must
/// refuse it by counting, before anything is decoded (`max_inflated_bytes`).
pub fn deflate_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        enc.write_all(&zeros[..n])
            .expect("deflating into memory cannot fail");
        left -= n;
    }
    let deflated = enc.finish().expect("deflating into memory cannot fail");
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut len = deflated.len() as u64;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            chunk.push(b);
            break;
        }
        chunk.push(b | 0x80);
    }
    chunk.extend_from_slice(&deflated);
    chunk
}
