//! The JSON Pointers that received changes touch, worked out from their operations.
//!
//! Automerge's patch log would give them too, but turning a patch log into paths looks up
//! the key of every touched object by scanning every key of its parent
//! (`PatchBuilder::get_path` in Automerge 0.12): a change below `/orders/<id>` cost time
//! proportional to the number of orders in the document. Here each touched object's path
//! comes from `ReadDoc::parents`, which finds an object's creating operation through the
//! operation id index: the cost is proportional to the change and the depth of its paths.

use std::collections::HashMap;

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

/// The paths of every object visible in `doc`, in one walk from the root: for a document
/// received whole (a snapshot catch-up), looking each object up on its own
/// (`ReadDoc::parents`) cost 84% of the path checks, about 100,000 instructions per object
/// (callgrind, issue 30). Objects no longer visible (overwritten or deleted in the history)
/// are not in it and are looked up one by one as before. The cost is proportional to the
/// document, so only for a document that is new as a whole.
pub(super) fn visible_object_paths(doc: &Automerge) -> ObjectPaths {
    let mut out = ObjectPaths::new();
    let mut stack = vec![(automerge::ROOT, Pointer::root())];
    while let Some((obj, path)) = stack.pop() {
        let children: Vec<(ObjId, Pointer)> = match doc.object_type(&obj) {
            Ok(automerge::ObjType::Map) | Ok(automerge::ObjType::Table) => doc
                .map_range(&obj, ..)
                .filter(|item| matches!(item.value, automerge::ValueRef::Object(_)))
                .map(|item| (item.id(), path.child(item.key.to_string())))
                .collect(),
            Ok(automerge::ObjType::List) => doc
                .list_range(&obj, ..)
                .filter(|item| matches!(item.value, automerge::ValueRef::Object(_)))
                .map(|item| (item.id(), path.child(item.index.to_string())))
                .collect(),
            _ => Vec::new(),
        };
        for (id, p) in children {
            if let ObjId::Id(counter, actor, _) = &id {
                out.insert(
                    ObjectId::Id(automerge::legacy::OpId::new(*counter, actor)),
                    Some(p.clone()),
                );
                stack.push((id, p));
            }
        }
    }
    out
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
