//! Checks on received changes before Automerge applies them.
//!
//! Automerge 0.12 trusts the changes it loads: `load_incremental` panics on operations that
//! name an object the document lacks ("Obj ... Missing from Index"), on op counters that
//! repeat one already held (`assert!(self.data[index].is_none())`), on `pred` or list
//! elements naming made-up operations, on unbalanced marks (a panic while unwinding: an
//! abort, which `catch_unwind` cannot stop). And it queues a change whose dependencies are
//! missing without any check; a forgery queued under an honest actor's next sequence number
//! then had that device's real change refused as a duplicate for good (issue 27, found by the
//! policy fuzzer). So every change of a message is decoded and checked here first, against
//! the document and the changes before it in the same message, at a cost proportional to the
//! message (each check is an index lookup: `Automerge::import` for objects,
//! `Automerge::hash_for_opid` for operations):
//! - it decodes, and is not already held (those are left out);
//! - its dependencies are held or come earlier in the message; a change whose dependencies
//!   are missing is left out, unless its author's signature verifies (then Automerge queues
//!   it, unchecked: only a holder of the author's key can place it there);
//! - none of its op counters is already taken by an operation of its actor;
//! - each operation's object is the root, an object of the document, or an object made by
//!   an earlier operation of the message, of a type that fits its key (map key or list
//!   element), and inserts only into lists;
//! - each `pred` and each list element it names is an operation held or earlier in the
//!   message;
//! - its marks are balanced: each mark end follows a mark begin of the same change on the
//!   same object.
//!
//! Not checked (no panic found on it): that a `pred` names an operation on the same object
//! and key. Document chunks (sent for a catch-up) are loaded alone, which Automerge checks,
//! and count as held.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::legacy::{ElementId, Key, ObjectId, OpId, OpType};
use automerge::sync::ChunkList;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjType, ReadDoc};

/// Whether changes by this actor whose dependencies are missing may wait in Automerge's queue,
/// given the hash of the actor's newest change in the message (the one its signature
/// covers): only if that signature verifies, when signatures are checked.
pub(crate) type MayQueue<'a> = dyn Fn(&ActorId, &ChangeHash) -> bool + 'a;

/// What survives the checks: the bytes to load, in an order where each change follows its
/// dependencies, and how many changes were left out for missing dependencies.
pub(super) struct Screened {
    pub(super) bytes: Vec<u8>,
    pub(super) dropped: usize,
    /// A snapshot catch-up (the message is one document chunk, then only changes that all
    /// apply on it): the document chunk as it was loaded here to check it, so that a
    /// receiver holding nothing takes it as it is instead of loading the same bytes again
    /// (a second load was a third of a fresh device's catch-up, issue 30). `bytes` are then
    /// exactly what the receiver ends up holding, to be stored as they are.
    /// Its length: it comes first in `bytes`.
    pub(super) document: Option<(Automerge, usize)>,
    /// Changes of the message that apply now, each mapped to a change of the same author
    /// that waits in Automerge's queue, is an in-message descendant of it, and whose
    /// signature verified (`MayQueue`): (its hash, its seq). See [`vouchers`].
    pub(super) vouched: HashMap<ChangeHash, (ChangeHash, u64)>,
}

/// Checks the change chunks of a sync message against `doc`. `Err` says why the message
/// must be refused.
pub(super) fn screen(
    doc: &mut Automerge,
    chunks: &ChunkList,
    may_queue: &MayQueue<'_>,
) -> Result<Screened, String> {
    let mut held: Vec<Automerge> = Vec::new();
    let mut bytes = Vec::new();
    let mut pending: Vec<Change> = Vec::new();
    // The length of the document chunk that came first, if one did.
    let mut document_first = 0;
    for chunk in chunks.iter() {
        for (kind, whole) in crate::chunk::split_chunks(chunk)? {
            if kind == 0 {
                if held.is_empty() && pending.is_empty() {
                    document_first = whole.len();
                }
                // A whole document: Automerge rebuilds and checks it when loading it alone.
                let loaded = Automerge::load(whole)
                    .map_err(|e| format!("an undecodable document chunk: {e}"))?;
                held.push(loaded);
                bytes.extend_from_slice(whole);
                continue;
            }
            let change =
                Change::try_from(whole).map_err(|e| format!("an undecodable change: {e}"))?;
            pending.push(change);
        }
    }
    let mut batch = Batch::default();
    // Each author's last change held: Automerge asserts that a change's seq follows it, and
    // finds operations by a binary search that needs op counters to grow with seq.
    for change in &pending {
        let actor = change.actor_id();
        if batch.last.contains_key(actor) {
            continue;
        }
        let mut last = (0, 0);
        for d in std::iter::once(&mut *doc).chain(held.iter_mut()) {
            let (seq, max_op) = last_change(d, actor);
            if seq > last.0 {
                last = (seq, max_op);
            }
        }
        batch.last.insert(actor.clone(), last);
    }
    let mut refs: Vec<&Automerge> = vec![doc];
    refs.extend(held.iter());
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    pending.retain(|c| {
        seen.insert(c.hash())
            && !refs
                .iter()
                .any(|d| d.get_change_meta_by_hash(&c.hash()).is_some())
    });
    // Each change of the message by hash: its author and dependencies (for `vouchers`).
    let graph: HashMap<ChangeHash, (ActorId, Vec<ChangeHash>)> = pending
        .iter()
        .map(|c| (c.hash(), (c.actor_id().clone(), c.deps().to_vec())))
        .collect();
    // Apply in dependency order: each pass takes the changes whose dependencies are held.
    loop {
        let before = pending.len();
        let mut rest = Vec::new();
        for change in pending {
            let ready = change.deps().iter().all(|d| {
                batch.hashes.contains(d)
                    || refs.iter().any(|r| r.get_change_meta_by_hash(d).is_some())
            });
            if !ready {
                rest.push(change);
                continue;
            }
            batch.check(&refs, &change)?;
            batch.hashes.insert(change.hash());
            bytes.extend_from_slice(change.raw_bytes());
        }
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    let document = (document_first > 0 && held.len() == 1 && pending.is_empty())
        .then(|| held.pop().map(|d| (d, document_first)))
        .flatten();
    // Changes whose dependencies are missing: Automerge would queue them unchecked, and a
    // queued forgery of an honest actor's next seq had the real change refused for good. So
    // they wait only if their author's signature verifies (an honest peer's change sent
    // before its dependency arrived, e.g. after a lost message); the others are left out.
    let mut newest: HashMap<&ActorId, (u64, ChangeHash)> = HashMap::new();
    for c in &pending {
        let e = newest.entry(c.actor_id()).or_insert((c.seq(), c.hash()));
        if c.seq() > e.0 {
            *e = (c.seq(), c.hash());
        }
    }
    let allowed: HashSet<&ActorId> = newest
        .iter()
        .filter(|(a, (_, h))| may_queue(a, h))
        .map(|(a, _)| *a)
        .collect();
    let mut dropped = 0;
    for c in &pending {
        if allowed.contains(c.actor_id()) {
            bytes.extend_from_slice(c.raw_bytes());
        } else {
            dropped += 1;
        }
    }
    let signed: Vec<(&ActorId, (u64, ChangeHash))> = newest
        .iter()
        .filter(|(a, _)| allowed.contains(*a))
        .map(|(a, t)| (*a, *t))
        .collect();
    let vouched = vouchers(&graph, &batch.hashes, &signed);
    Ok(Screened {
        bytes,
        dropped,
        document,
        vouched,
    })
}

/// Which changes applying now are vouched for by a signed change that must wait.
///
/// A sender signs, per author, the newest change of the message. When the author's later
/// changes depend on a change the receiver lacks (a message lost on another link), only
/// the earlier ones apply now, and the newest of those carries no signature of its own:
/// refusing them refused the whole message, and the refusal stopped the exchange for the
/// session (found by the simulation with lossy links and a relay). The waiting change's
/// verified signature covers its hash, and its hash covers its dependencies: each change
/// of the same author reached from it through the message's dependency links is the
/// genuine one (a forged change at the same sequence has another hash, and is not reached).
///
/// `graph`: every change of the message not held before, with its author and dependencies;
/// `ready`: those applying now; `signed`: per author allowed to wait, its newest waiting
/// change (seq, hash). One walk per such author, over the message.
fn vouchers(
    graph: &HashMap<ChangeHash, (ActorId, Vec<ChangeHash>)>,
    ready: &HashSet<ChangeHash>,
    signed: &[(&ActorId, (u64, ChangeHash))],
) -> HashMap<ChangeHash, (ChangeHash, u64)> {
    let mut out = HashMap::new();
    for (actor, (seq, tip)) in signed {
        let mut seen: HashSet<ChangeHash> = HashSet::new();
        let mut stack = vec![*tip];
        while let Some(h) = stack.pop() {
            if !seen.insert(h) {
                continue;
            }
            // Held changes and missing ones end the walk: only the message's are judged.
            let Some((author, deps)) = graph.get(&h) else {
                continue;
            };
            if author == *actor && ready.contains(&h) {
                out.entry(h).or_insert((*tip, *seq));
            }
            stack.extend(deps.iter().copied());
        }
    }
    out
}

/// What the accepted changes of the message add.
#[derive(Default)]
struct Batch {
    hashes: HashSet<ChangeHash>,
    /// The op counter ranges of the accepted changes: (actor, first) to last.
    ops: BTreeMap<(ActorId, u64), u64>,
    /// Where each operation of the accepted changes (and of the change being checked, up
    /// to the current operation) writes: its object and key.
    places: HashMap<OpId, (ObjectId, Key)>,
    /// The operations of the message that put a counter.
    counters: HashSet<OpId>,
    /// Per accepted change, the held changes it builds on (its dependencies, with those in
    /// the message replaced by theirs): the document it was written on, as far as we hold it.
    frontier: HashMap<ChangeHash, Vec<ChangeHash>>,
    /// Per author, the seq and the last op counter of its last change (held or accepted).
    last: HashMap<ActorId, (u64, u64)>,
    made: HashMap<OpId, ObjType>,
}

impl Batch {
    fn has_op(&self, refs: &[&Automerge], id: &OpId) -> bool {
        let in_batch = self
            .ops
            .range((id.1.clone(), 0)..=(id.1.clone(), id.0))
            .next_back()
            .is_some_and(|(_, last)| *last >= id.0);
        in_batch || refs.iter().any(|d| op_held(d, id))
    }

    /// Whether `e` names an operation held, of an earlier change of the message, or of the
    /// change being checked (ops `start..=last`) before operation `cur`.
    fn known(&self, refs: &[&Automerge], e: &OpId, cur: &OpId, start: u64, last: u64) -> bool {
        let own = e.1 == cur.1 && e.0 >= start && e.0 <= last;
        if own {
            e.0 < cur.0
        } else {
            self.has_op(refs, e)
        }
    }

    /// Whether `p`, named in `op`'s `pred`, is an operation at `op`'s object and key: Automerge
    /// rebuilds a change from its operations by id, and panics on a `pred` elsewhere (found
    /// by the fuzzer: a put into a new map naming the map's own creation). An operation of
    /// the message is looked up; a held one at a map key must be visible there in the
    /// document the change was written on (`frontier`), as an honest `pred` is. A held one
    /// at a list element is only known to exist (what is left unchecked). An increment's
    /// must be a counter.
    fn pred_fits(
        &self,
        refs: &[&Automerge],
        p: &OpId,
        op: &automerge::legacy::Op,
        frontier: &[ChangeHash],
    ) -> bool {
        // An increment that names anything but a counter panics in Automerge too.
        let counter = matches!(op.action, OpType::Increment(_));
        if let Some((obj, key)) = self.places.get(p) {
            return obj == &op.obj && key == &op.key && (!counter || self.counters.contains(p));
        }
        let Key::Map(k) = &op.key else {
            return true;
        };
        let obj = op.obj.to_string();
        refs.iter().any(|d| {
            let heads: Vec<ChangeHash> = frontier
                .iter()
                .filter(|h| d.get_change_meta_by_hash(h).is_some())
                .copied()
                .collect();
            let Ok(id) = (match &op.obj {
                ObjectId::Root => Ok(automerge::ROOT),
                ObjectId::Id(_) => d.import_obj(&obj),
            }) else {
                return false;
            };
            d.get_all_at(&id, k.as_str(), &heads).is_ok_and(|values| {
                values.iter().any(|(v, e)| {
                    let is_p = match e {
                        automerge::ObjId::Id(c, a, _) => *c == p.0 && a == &p.1,
                        automerge::ObjId::Root => false,
                    };
                    is_p && (!counter || v.is_counter())
                })
            })
        })
    }

    fn object_type(&self, refs: &[&Automerge], obj: &ObjectId) -> Option<ObjType> {
        match obj {
            ObjectId::Root => Some(ObjType::Map),
            ObjectId::Id(id) => self.made.get(id).copied().or_else(|| {
                let s = obj.to_string();
                refs.iter().find_map(|d| d.import(&s).ok().map(|(_, t)| t))
            }),
        }
    }

    fn check(&mut self, refs: &[&Automerge], change: &Change) -> Result<(), String> {
        let actor = change.actor_id().clone();
        let hash = change.hash();
        let start = change.start_op().get();
        let len = change.len() as u64;
        let last = start
            .checked_add(len.saturating_sub(1))
            .ok_or_else(|| format!("change {hash}: its op counters overflow"))?;
        let (seq, max_op) = self.last.get(&actor).copied().unwrap_or((0, 0));
        if change.seq() != seq + 1 {
            return Err(format!(
                "change {hash} has seq {} but actor {actor}'s next is {}",
                change.seq(),
                seq + 1
            ));
        }
        if start <= max_op {
            return Err(format!(
                "change {hash} starts at op {start}, not after actor {actor}'s last op {max_op}"
            ));
        }
        if change.author().is_some() && change.seq() != 1 {
            return Err(format!(
                "change {hash} names an author but is not its actor's first"
            ));
        }
        // Decoding panics (once: no abort) on an action it does not know; `Change::try_from`
        // has checked the columns, so this is a belt.
        let expanded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
            .map_err(|_| format!("change {hash} does not decode"))?;
        let mut frontier: Vec<ChangeHash> = Vec::new();
        for d in change.deps() {
            match self.frontier.get(d) {
                Some(f) => frontier.extend(f.iter().copied()),
                None => frontier.push(*d),
            }
        }
        frontier.sort();
        frontier.dedup();
        let mut open_marks: Vec<ObjectId> = Vec::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            let id = OpId(start + i as u64, actor.clone());
            let bad = |what: String| format!("change {hash}, operation {}@{actor}: {what}", id.0);
            let Some(typ) = self.object_type(refs, &op.obj) else {
                return Err(bad(format!("object {} does not exist", op.obj)));
            };
            let is_map = matches!(typ, ObjType::Map | ObjType::Table);
            match &op.key {
                Key::Map(_) if !is_map || op.insert => {
                    return Err(bad(format!("a map key on {typ:?} object {}", op.obj)));
                }
                Key::Seq(_) if is_map => {
                    return Err(bad(format!("a list element on map {}", op.obj)));
                }
                Key::Seq(ElementId::Id(e)) if !self.known(refs, e, &id, start, last) => {
                    return Err(bad(format!("list element {e} does not exist")));
                }
                Key::Seq(ElementId::Head) if !op.insert => {
                    return Err(bad("names the head of a list without inserting".into()));
                }
                _ => {}
            }
            // What Automerge makes of each kind: an insert creates an element (nothing to
            // replace); a delete, an increment, a put on a list element replace something.
            if op.insert && !op.pred.is_empty() {
                return Err(bad("an insert that names a pred".into()));
            }
            let replaces = matches!(op.action, OpType::Delete | OpType::Increment(_))
                || (matches!(op.key, Key::Seq(_)) && !op.insert);
            if replaces && op.pred.is_empty() {
                return Err(bad("replaces nothing: its pred is empty".into()));
            }
            for p in op.pred.iter() {
                if !self.known(refs, p, &id, start, last) {
                    return Err(bad(format!("pred {p} does not exist")));
                }
                if !self.pred_fits(refs, p, op, &frontier) {
                    return Err(bad(format!("pred {p} is not an operation at its key")));
                }
            }
            self.places
                .insert(id.clone(), (op.obj.clone(), op.key.clone()));
            if matches!(op.action, OpType::Put(automerge::ScalarValue::Counter(_))) {
                self.counters.insert(id.clone());
            }
            match &op.action {
                OpType::Make(t) => {
                    self.made.insert(id.clone(), *t);
                }
                OpType::MarkBegin(_) => open_marks.push(op.obj.clone()),
                OpType::MarkEnd(_) => match open_marks.iter().position(|o| o == &op.obj) {
                    Some(at) => {
                        open_marks.remove(at);
                    }
                    None => return Err(bad("a mark end without its beginning".into())),
                },
                _ => {}
            }
        }
        if !open_marks.is_empty() {
            return Err(format!("change {hash}: a mark begins and never ends"));
        }
        if len > 0 {
            self.ops.insert((actor.clone(), start), last);
        }
        self.frontier.insert(hash, frontier);
        self.last
            .insert(actor, (change.seq(), if len > 0 { last } else { max_op }));
        Ok(())
    }
}

/// Whether an operation with this id is in one of `doc`'s changes.
fn op_held(doc: &Automerge, id: &OpId) -> bool {
    doc.import_obj(&format!("{}@{}", id.0, id.1))
        .ok()
        .and_then(|exid| doc.hash_for_opid(&exid))
        .is_some()
}

/// The seq and last op counter of `actor`'s last change in `doc`, (0, 0) if none. Automerge
/// answers it only for the document's own actor, hence the switch (restored after).
fn last_change(doc: &mut Automerge, actor: &ActorId) -> (u64, u64) {
    let own = doc.get_actor().clone();
    doc.set_actor(actor.clone());
    let last = doc.get_last_local_change().map(|c| {
        let end = (c.start_op().get() + c.len() as u64).saturating_sub(1);
        (c.seq(), end.max(c.max_op()))
    });
    doc.set_actor(own);
    last.unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    fn write(doc: &mut Automerge, key: &str) -> Change {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, 1).expect("a put into the root");
        tx.commit();
        doc.get_last_local_change().expect("just committed")
    }

    fn actor(name: &str) -> ActorId {
        ActorId::from(name.as_bytes())
    }

    /// Author K's k1 applies; its k2 waits behind x1, which waits behind y1 (lost on
    /// another link). k2's signature verifies, and vouches for k1, a dependency of it.
    /// A forged k1 at the same seq is not reached from k2, so nothing vouches for it.
    #[test]
    fn a_waiting_signed_change_vouches_for_its_ancestors_that_apply() {
        let (mut k, mut x, mut y) = (
            Automerge::new().with_actor(actor("k")),
            Automerge::new().with_actor(actor("x")),
            Automerge::new().with_actor(actor("y")),
        );
        let k1 = write(&mut k, "k1");
        let y1 = write(&mut y, "y1");
        x.apply_changes([k1.clone(), y1.clone()])
            .expect("valid changes");
        let x1 = write(&mut x, "x1");
        k.apply_changes([y1, x1.clone()]).expect("valid changes");
        let k2 = write(&mut k, "k2");
        // Automerge names the author's previous change among the dependencies.
        assert!(k2.deps().contains(&k1.hash()) && k2.deps().contains(&x1.hash()));
        let mut forger = Automerge::new().with_actor(actor("k"));
        let forged = write(&mut forger, "forged");
        assert_eq!((k1.seq(), forged.seq()), (1, 1));
        let k2_hash = k2.hash();
        let signed = |a: &ActorId, h: &ChangeHash| a == &actor("x") || *h == k2_hash;
        for (first, vouched) in [(&k1, true), (&forged, false)] {
            let mut receiver = Automerge::new();
            let chunks: ChunkList = vec![
                first.raw_bytes().to_vec(),
                x1.raw_bytes().to_vec(),
                k2.raw_bytes().to_vec(),
            ]
            .into();
            let s = screen(&mut receiver, &chunks, &signed).expect("valid changes");
            let want = vouched.then_some((k2.hash(), 2));
            assert_eq!(s.vouched.get(&first.hash()).copied(), want);
            assert_eq!(s.vouched.len(), usize::from(vouched));
        }
        // Without a verified signature on k2, nothing waits and nothing is vouched for.
        let mut receiver = Automerge::new();
        let chunks: ChunkList = vec![k1.raw_bytes().to_vec(), k2.raw_bytes().to_vec()].into();
        let s = screen(&mut receiver, &chunks, &|_, _| false).expect("valid changes");
        assert!(s.vouched.is_empty());
        assert_eq!(s.dropped, 1);
    }
}
