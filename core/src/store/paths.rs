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
use automerge::{Automerge, Change, ObjId, Prop, ReadDoc};

use crate::Pointer;

/// The paths written by `changes`, which `doc` already contains. A change inside a list
/// reports the list's path when its element holds a scalar, and the element's path (with its
/// current index) when the element is an object or a list; a map entry always reports its
/// own path.
pub(super) fn changed_paths(doc: &Automerge, changes: &[Change]) -> Vec<Pointer> {
    let mut objects: HashMap<String, Option<Pointer>> = HashMap::new();
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

/// The path of an object, looked up once per object and call.
fn object_path(
    doc: &Automerge,
    cache: &mut HashMap<String, Option<Pointer>>,
    obj: &ObjectId,
) -> Option<Pointer> {
    if let ObjectId::Root = obj {
        return Some(Pointer::root());
    }
    let key = obj.to_string();
    if let Some(p) = cache.get(&key) {
        return p.clone();
    }
    let p = doc
        .import_obj(&key)
        .ok()
        .and_then(|id| pointer_of(doc, &id));
    cache.insert(key, p.clone());
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
/// whether it replaces or deletes a value that was there (a put with predecessors, a
/// delete), rather than creating one. `Err` names an operation whose path cannot be found.
/// `objects` caches the paths of objects across the changes of one message.
pub(super) fn written_paths(
    doc: &Automerge,
    change: &Change,
    objects: &mut HashMap<String, Option<Pointer>>,
) -> Result<Vec<(Pointer, bool)>, String> {
    let mut out = Vec::new();
    let expanded = change.decode();
    for op in &expanded.operations {
        let Some(obj) = object_path(doc, objects, &op.obj) else {
            return Err(format!("an operation on object {} of unknown path", op.obj));
        };
        let replaces = !op.pred.is_empty() || matches!(op.action, OpType::Delete);
        match &op.key {
            Key::Map(k) => out.push((obj.child(k.to_string()), replaces)),
            // List elements are judged at the list's path: their indexes move.
            Key::Seq(_) => out.push((obj, replaces)),
        }
    }
    Ok(out)
}
