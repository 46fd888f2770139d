//! The JSON Pointers that received changes touch, worked out from their operations.
//!
//! Automerge's patch log would give them too, but turning a patch log into paths looks up
//! the key of every touched object by scanning every key of its parent
//! (`PatchBuilder::get_path` in Automerge 0.12): a change below `/orders/<id>` cost time
//! proportional to the number of orders in the document. Here each touched object's path
//! comes from `ReadDoc::parents`, which finds an object's creating operation through the
//! operation id index: the cost is proportional to the change and the depth of its paths.

use std::collections::{HashMap, HashSet};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, Change, ChangeHash, ObjId, Prop, ReadDoc};

use crate::Pointer;

/// The paths written by `changes`, which `doc` already contains. A change inside a list
/// reports the list's path when its element holds a scalar, and the element's path (with its
/// current index) when the element is an object or a list; a map entry always reports its
/// own path.
pub(super) fn changed_paths(doc: &Automerge, changes: &[Change]) -> Vec<Pointer> {
    let mut objects: ObjectPaths = HashMap::new();
    let mut out = Vec::new();
    for change in changes {
        let expanded = change.decode();
        let start = expanded.start_op.get();
        for (i, op) in expanded.operations.iter().enumerate() {
            let Some(obj) = object_path(doc, &mut objects, &op.obj) else {
                continue;
            };
            match &op.key {
                Key::Map(k) => out.push(obj.child(k.to_string())),
                Key::Seq(_) => {
                    let made = matches!(op.action, OpType::Make(_))
                        .then(|| format!("{}@{}", start + i as u64, expanded.actor_id))
                        .and_then(|id| doc.import_obj(&id).ok())
                        .and_then(|id| pointer_of(doc, &id));
                    out.push(made.unwrap_or(obj));
                }
            }
        }
    }
    out
}

/// Paths of objects, by object id, as looked up (`None`: not found).
pub(super) type ObjectPaths = HashMap<ObjectId, Option<Pointer>>;

/// The path of an object, looked up once per object and call.
fn object_path(doc: &Automerge, cache: &mut ObjectPaths, obj: &ObjectId) -> Option<Pointer> {
    if let ObjectId::Root = obj {
        return Some(Pointer::root());
    }
    if let Some(p) = cache.get(obj) {
        return p.clone();
    }
    let p = doc
        .import_obj(&obj.to_string())
        .ok()
        .and_then(|id| pointer_of(doc, &id));
    cache.insert(obj.clone(), p.clone());
    p
}

fn pointer_of(doc: &Automerge, obj: &ObjId) -> Option<Pointer> {
    let path = doc.parents(obj).ok()?.path();
    Some(path.into_iter().fold(Pointer::root(), |p, (_, prop)| {
        p.child(match prop {
            Prop::Map(k) => k,
            Prop::Seq(i) => i.to_string(),
        })
    }))
}

/// What one received change writes, for the per-path write rules: each operation's path and
/// whether it replaces or deletes a value that was there, rather than creating one. `Err`
/// names an operation whose path cannot be found. `objects` caches the paths of objects
/// across the changes of one message.
///
/// Whether an operation replaces is judged against the document the receiver held before
/// the message (`before`, its heads then), never from what the change says of itself: a
/// crafted change can leave `pred` empty and take a higher op counter, and Automerge then
/// shows its value over the one already at that key (issue 27: a kiosk putting a new map at
/// `/orders` hid the day's orders). So, by kind of operation:
/// - put or make-object at a map key: a replacement if `pred` is not empty or the key held
///   a value before the message;
/// - put or make-object on a list element (not an insert): always a replacement (the
///   element exists, or it could not be named);
/// - insert into a list or text (splices are inserts and deletes): a creation, judged at
///   the list's path;
/// - delete, increment (of a counter that exists), mark (formatting existing text): always
///   a replacement.
pub(super) fn written_paths(
    doc: &Automerge,
    change: &Change,
    objects: &mut ObjectPaths,
    before: &[ChangeHash],
) -> Result<Vec<(Pointer, bool)>, String> {
    let mut out = Vec::new();
    let expanded = change.decode();
    for op in &expanded.operations {
        let Some(obj) = object_path(doc, objects, &op.obj) else {
            return Err(format!("an operation on object {} of unknown path", op.obj));
        };
        let kind_replaces = match op.action {
            OpType::Delete | OpType::Increment(_) | OpType::MarkBegin(_) | OpType::MarkEnd(_) => {
                true
            }
            OpType::Put(_) | OpType::Make(_) => !op.pred.is_empty(),
        };
        match &op.key {
            Key::Map(k) => {
                let replaces = kind_replaces || held_before(doc, &op.obj, k, before)?;
                out.push((obj.child(k.to_string()), replaces));
            }
            // List elements are judged at the list's path: their indexes move.
            Key::Seq(_) => out.push((obj, kind_replaces || !op.insert)),
        }
    }
    Ok(out)
}

/// Whether map `obj` held a value at `key` in the document as of `before`.
fn held_before(
    doc: &Automerge,
    obj: &ObjectId,
    key: &str,
    before: &[ChangeHash],
) -> Result<bool, String> {
    if before.is_empty() {
        // The document was empty: nothing could be replaced.
        return Ok(false);
    }
    let id = match obj {
        ObjectId::Root => automerge::ROOT,
        ObjectId::Id(_) => match doc.import_obj(&obj.to_string()) {
            Ok(id) => id,
            Err(e) => return Err(format!("object {obj} cannot be looked up: {e}")),
        },
    };
    // An object created by this message did not exist before: reading it as of `before`
    // finds nothing (or fails, which means the same).
    Ok(doc
        .get_all_at(&id, key, before)
        .map(|values| !values.is_empty())
        .unwrap_or(false))
}

/// What decides a path check in one context, read from its rules' patterns: the verdict of
/// [`crate::Policy::may_write_path_as`] on a path looks only at the path's first `depth`
/// tokens (the longest pattern's length) and at whether the path is longer than each
/// pattern; and at each of those positions only at whether the token equals a pattern's
/// literal there (or, where a pattern has [`crate::DEVICE_TOKEN`], the token
/// itself). Two paths of the same **class** (their tokens so reduced, cut after
/// `depth + 1` tokens) get the same verdict for the same author, whatever the rules grant.
struct Shapes {
    depth: usize,
    /// Per position below `depth`: the literal tokens of patterns there.
    literals: Vec<HashSet<String>>,
    /// Per position below `depth`: whether a pattern has the device token there (the token
    /// is then kept as it is).
    device: Vec<bool>,
    /// Tokens kept in classes, numbered from 1 (0: any other token).
    interned: HashMap<String, u32>,
}

impl Shapes {
    fn of(policy: &crate::Policy, context: &crate::ContextName) -> Self {
        let rule = policy.contexts.get(context).unwrap_or(&policy.default_rule);
        let patterns: Vec<Vec<&str>> = rule
            .paths
            .iter()
            .map(|r| r.path.split('/').skip(1).collect())
            .collect();
        let depth = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let mut literals = vec![HashSet::new(); depth];
        let mut device = vec![false; depth];
        for p in &patterns {
            for (i, t) in p.iter().enumerate() {
                if *t == crate::DEVICE_TOKEN {
                    device[i] = true;
                } else if *t != "*" {
                    literals[i].insert((*t).to_string());
                }
            }
        }
        Shapes {
            depth,
            literals,
            device,
            interned: HashMap::new(),
        }
    }

    /// The class of token `t` at position `at`.
    fn token(&mut self, at: usize, t: &str) -> u32 {
        if at >= self.depth || !(self.device[at] || self.literals[at].contains(t)) {
            return 0;
        }
        let next = self.interned.len() as u32 + 1;
        *self.interned.entry(t.to_string()).or_insert(next)
    }

    /// The class of `path` + `key`, given the class of `path` (tokens `len`).
    fn child(&mut self, parent: &[u32], len: usize, key: &str) -> Vec<u32> {
        let mut c = parent.to_vec();
        if len <= self.depth {
            c.push(self.token(len, key));
        }
        c
    }

    fn class_of(&mut self, path: &Pointer) -> Vec<u32> {
        path.tokens()
            .iter()
            .take(self.depth + 1)
            .enumerate()
            .map(|(i, t)| self.token(i, t))
            .collect()
    }
}

/// An object's path (its list indexes may be left out where no rule looks, see
/// [`written_paths_into_empty`]), its number of tokens and its class ([`Shapes`]).
struct Placed {
    path: Pointer,
    len: usize,
    class: Vec<u32>,
}

/// [`written_paths`] for every change of `doc` when the receiver held nothing of it before
/// the message (a snapshot catch-up, or a first sync): the same verdicts for a fraction of
/// the cost (issue 30: the per-operation checks were 3.6 G of a 10,000-order catch-up's
/// 4.99 G instructions). Nothing was held, so nothing is replaced but by what an operation
/// says of itself, and:
/// - objects' paths come from the operations that made them, in one pass over the changes
///   in causal order (no lookup per object); an object made in a list is placed at its
///   index only where a rule's pattern reaches that deep (then looked up as before), else
///   at `-`, which no rule reads;
/// - per author, each class of (path, replaces) is reported once, with the change that
///   first writes it: every later write of the same class by the same author gets the same
///   verdict from every check that reads these paths (`Engine::check_paths`, the unsigned
///   claim check, a web client's), so a message is refused exactly when the full list
///   would refuse it. An operation whose object cannot be placed fails its change, as in
///   [`written_paths`].
///
/// `changes` are the document's changes in causal order (`Automerge::get_changes`).
pub(super) fn written_paths_into_empty(
    doc: &Automerge,
    changes: &[Change],
    policy: &crate::Policy,
    context: &crate::ContextName,
) -> HashMap<ChangeHash, Result<Vec<(Pointer, bool)>, String>> {
    let mut shapes = Shapes::of(policy, context);
    let mut objects: HashMap<ObjectId, Placed> = HashMap::new();
    let mut seen: HashMap<automerge::ActorId, HashSet<(Vec<u32>, bool)>> = HashMap::new();
    let mut out = HashMap::with_capacity(changes.len());
    let mut lookups = ObjectPaths::new();
    for change in changes {
        let expanded = change.decode();
        let start = expanded.start_op.get();
        let reported = seen.entry(change.actor_id().clone()).or_default();
        let mut written = Vec::new();
        let mut failed = None;
        for (i, op) in expanded.operations.iter().enumerate() {
            if let ObjectId::Id(_) = &op.obj {
                if !objects.contains_key(&op.obj) {
                    // Not made by a change before it: found in the document, as before.
                    let Some(path) = object_path(doc, &mut lookups, &op.obj) else {
                        failed = Some(format!("an operation on object {} of unknown path", op.obj));
                        break;
                    };
                    let class = shapes.class_of(&path);
                    let len = path.tokens().len();
                    objects.insert(op.obj.clone(), Placed { path, len, class });
                }
            }
            let root = Placed {
                path: Pointer::root(),
                len: 0,
                class: Vec::new(),
            };
            let obj = match &op.obj {
                ObjectId::Root => &root,
                id => objects.get(id).expect("placed just above when missing"),
            };
            let kind_replaces = match op.action {
                OpType::Delete
                | OpType::Increment(_)
                | OpType::MarkBegin(_)
                | OpType::MarkEnd(_) => true,
                OpType::Put(_) | OpType::Make(_) => !op.pred.is_empty(),
            };
            let (class, replaces, key) = match &op.key {
                Key::Map(k) => (shapes.child(&obj.class, obj.len, k), kind_replaces, Some(k)),
                Key::Seq(_) => (obj.class.clone(), kind_replaces || !op.insert, None),
            };
            let made = match (&op.action, &op.key) {
                (OpType::Make(_), Key::Map(k)) => Some(Placed {
                    path: obj.path.child(k.to_string()),
                    len: obj.len + 1,
                    class: class.clone(),
                }),
                (OpType::Make(_), Key::Seq(_)) if obj.len >= shapes.depth => Some(Placed {
                    path: obj.path.child("-".to_string()),
                    len: obj.len + 1,
                    class: shapes.child(&obj.class, obj.len, "-"),
                }),
                (OpType::Make(_), Key::Seq(_)) => {
                    // A rule reads the index: look the element up where it is now.
                    let id = format!("{}@{}", start + i as u64, expanded.actor_id);
                    doc.import_obj(&id)
                        .ok()
                        .and_then(|id| pointer_of(doc, &id))
                        .map(|path| Placed {
                            len: path.tokens().len(),
                            class: shapes.class_of(&path),
                            path,
                        })
                }
                _ => None,
            };
            if reported.insert((class, replaces)) {
                let path = match key {
                    Some(k) => obj.path.child(k.to_string()),
                    None => obj.path.clone(),
                };
                written.push((path, replaces));
            }
            if let Some(placed) = made {
                let id = ObjectId::Id(automerge::legacy::OpId::new(
                    start + i as u64,
                    &expanded.actor_id,
                ));
                objects.insert(id, placed);
            }
        }
        out.insert(
            change.hash(),
            match failed {
                Some(e) => Err(e),
                None => Ok(written),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ObjType, ROOT};

    use crate::{ContextName, PathRule, PeerId, Policy, Role};

    fn role(r: &str) -> Role {
        r.parse().expect("a literal role is valid")
    }

    /// Rules that read list indexes (`/orders/*/lines/*/sku`), device entries and literals
    /// at several depths.
    fn policy(context: &ContextName) -> Policy {
        let mut p = Policy::default();
        let mut rule = p
            .contexts
            .get(&"orders".parse().expect("valid"))
            .cloned()
            .unwrap_or_default();
        rule.write = ["kiosk", "pos", "kitchen"].into_iter().map(role).collect();
        let paths = [
            ("/orders/*", &["kiosk", "pos"][..]),
            ("/orders/*/kitchen", &["kitchen"][..]),
            ("/orders/*/lines/*/sku", &["pos"][..]),
            ("/orders/*/lines/0/qty", &["kiosk", "pos"][..]),
            ("/orders/*/lines/1/note", &["pos"][..]),
            ("/devices/{device}", &["kiosk", "pos", "kitchen"][..]),
            ("/devices", &["kiosk"][..]),
        ];
        rule.paths = paths
            .iter()
            .map(|(path, write)| PathRule {
                path: (*path).to_string(),
                write: write.iter().map(|r| role(r)).collect(),
            })
            .collect();
        p.contexts.insert(context.clone(), rule);
        p
    }

    fn edit(
        doc: &mut Automerge,
        who: &str,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) {
        doc.set_actor(ActorId::from(who.as_bytes()));
        let mut tx = doc.transaction();
        f(&mut tx);
        tx.commit();
    }

    fn get(tx: &automerge::transaction::Transaction<'_>, obj: &ObjId, key: &str) -> ObjId {
        tx.get(obj, key).expect("readable").expect("present").1
    }

    /// A document whose authors write creations, replacements, deletions, list elements
    /// (objects in lists, at indexes a rule reads), counters and device entries, some of
    /// them where their role may not.
    fn document() -> Automerge {
        let mut doc = Automerge::new();
        edit(&mut doc, "kiosk-1", |tx| {
            let orders = tx.put_object(ROOT, "orders", ObjType::Map).expect("put");
            for n in 0..3 {
                let o = tx
                    .put_object(&orders, format!("o{n}"), ObjType::Map)
                    .expect("put");
                tx.put(&o, "total", 100 + n).expect("put");
                let lines = tx.put_object(&o, "lines", ObjType::List).expect("put");
                for l in 0..2 {
                    let line = tx.insert_object(&lines, l, ObjType::Map).expect("insert");
                    tx.put(&line, "qty", 1).expect("put");
                    tx.put(&line, "note", "x").expect("put");
                }
            }
            let devices = tx.put_object(ROOT, "devices", ObjType::Map).expect("put");
            tx.put_object(&devices, "kiosk-1", ObjType::Map)
                .expect("put");
        });
        edit(&mut doc, "pos-1", |tx| {
            let orders = get(tx, &ROOT, "orders");
            let o = get(tx, &orders, "o1");
            let lines = get(tx, &o, "lines");
            let line = tx.get(&lines, 1).expect("readable").expect("present").1;
            tx.put(&line, "sku", "burger").expect("put");
            tx.put(&o, "total", 5).expect("put");
            tx.put(&o, "count", automerge::ScalarValue::counter(1))
                .expect("put");
            let devices = get(tx, &ROOT, "devices");
            let me = tx.put_object(&devices, "pos-1", ObjType::Map).expect("put");
            tx.put(&me, "ok", true).expect("put");
        });
        edit(&mut doc, "kitchen-1", |tx| {
            let orders = get(tx, &ROOT, "orders");
            let o = get(tx, &orders, "o0");
            let k = tx.put_object(&o, "kitchen", ObjType::Map).expect("put");
            tx.put(&k, "state", "ready").expect("put");
            let o2 = get(tx, &orders, "o2");
            tx.delete(&o2, "total").expect("delete");
            let devices = get(tx, &ROOT, "devices");
            tx.put_object(&devices, "pos-1", ObjType::Map).expect("put");
        });
        edit(&mut doc, "pos-1", |tx| {
            let orders = get(tx, &ROOT, "orders");
            let o = get(tx, &orders, "o1");
            tx.increment(&o, "count", 2).expect("increment");
            let lines = get(tx, &o, "lines");
            let line = tx.get(&lines, 0).expect("readable").expect("present").1;
            tx.put(&line, "qty", 3).expect("put");
            // A scalar element: a deleted object's path trips a debug assertion of
            // Automerge 0.12's list lookup (the same for both ways of finding paths).
            let tags = tx.put_object(&o, "tags", ObjType::List).expect("put");
            tx.insert(&tags, 0, "a").expect("insert");
            tx.insert(&tags, 1, "b").expect("insert");
            tx.delete(&tags, 0).expect("delete");
        });
        doc
    }

    /// Every author, judged as every role and device, passes the old per-operation list
    /// exactly when it passes the reduced one.
    #[test]
    fn into_empty_gives_the_verdicts_of_every_operation() {
        let context: ContextName = "paths-test".parse().expect("valid");
        let policy = policy(&context);
        let doc = document();
        let changes = doc.get_changes(&[]);
        let fast = written_paths_into_empty(&doc, &changes, &policy, &context);
        let mut full: HashMap<ActorId, Vec<(Pointer, bool)>> = HashMap::new();
        let mut reduced: HashMap<ActorId, Vec<(Pointer, bool)>> = HashMap::new();
        let (mut ops, mut kept) = (0, 0);
        for c in &changes {
            let old = written_paths(&doc, c, &mut ObjectPaths::new(), &[]).expect("placed");
            let new = fast[&c.hash()].clone().expect("placed");
            ops += old.len();
            kept += new.len();
            full.entry(c.actor_id().clone()).or_default().extend(old);
            reduced.entry(c.actor_id().clone()).or_default().extend(new);
        }
        println!("{ops} operations judged as {kept} paths");
        assert!(kept < ops, "writes of one class are reported once");
        let (mut passed, mut refused) = (0, 0);
        for actor in full.keys() {
            for who in ["kiosk-1", "pos-1", "kitchen-1", "pos-2"] {
                let device: PeerId = who.parse().expect("valid");
                let r = role(who.split('-').next().expect("a role prefix"));
                let judge = |items: &[(Pointer, bool)]| {
                    items.iter().all(|(p, replaces)| {
                        policy.may_write_path_as(&r, Some(&device), &context, p, *replaces)
                    })
                };
                let old = judge(&full[actor]);
                assert_eq!(old, judge(&reduced[actor]), "{actor} judged as {who}");
                if old {
                    passed += 1;
                } else {
                    refused += 1;
                }
                // And each reduced item has exactly its own verdict on the full path.
                for (p, replaces) in &full[actor] {
                    let v = policy.may_write_path_as(&r, Some(&device), &context, p, *replaces);
                    if !v {
                        assert!(!judge(&reduced[actor]), "{actor} as {who}: {p} refused");
                    }
                }
            }
        }
        println!("authors judged as each role: {passed} passed, {refused} refused alike");
        assert!(
            passed > 0 && refused > 0,
            "{passed} passed, {refused} refused"
        );
    }
}
