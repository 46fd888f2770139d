//! Several operations on one document, committed atomically.

use automerge::transaction::{Transactable, Transaction};
use automerge::{ObjType, Prop, ReadDoc, ScalarValue, Value};
use serde_json::Value as Json;

use crate::value;
use crate::{DocumentId, Error, Pointer, Result};

/// A transaction on one document, given to the closure of [`Store::transact`](crate::Store::transact).
///
/// Paths are JSON Pointers; missing parent objects are created as maps.
pub struct Tx<'a> {
    tx: Option<Transaction<'a>>,
    doc: &'a DocumentId,
}

impl<'a> Tx<'a> {
    pub(super) fn new(tx: Transaction<'a>, doc: &'a DocumentId) -> Self {
        Tx { tx: Some(tx), doc }
    }

    /// Commits; returns the new change's hash (`None` if the transaction changed nothing)
    /// and the patch log the transaction recorded into.
    pub(super) fn commit(mut self) -> (Option<automerge::ChangeHash>, Option<automerge::PatchLog>) {
        match self.tx.take() {
            Some(tx) => {
                let (hash, log) = tx.commit();
                (hash, Some(log))
            }
            None => (None, None),
        }
    }

    fn tx(&mut self) -> &mut Transaction<'a> {
        self.tx
            .as_mut()
            .expect("a Tx is only used before commit, which consumes it")
    }

    fn parent(&mut self, path: &str) -> Result<(Pointer, automerge::ObjId, Prop)> {
        let p = Pointer::parse(path)?;
        let doc = self.doc;
        let Some((parent, last)) = p.split_last() else {
            return Err(Error::InvalidPath {
                path: path.to_string(),
                reason: "the root itself cannot be replaced; write to a key below it".into(),
            });
        };
        let obj = value::ensure_object(self.tx(), doc, &parent)?;
        let prop = value::prop_for(self.tx(), &obj, last, doc, &parent)?;
        Ok((p, obj, prop))
    }

    /// Writes `value` at `path`.
    pub fn put(&mut self, path: &str, value: Json) -> Result<()> {
        let (p, obj, prop) = self.parent(path)?;
        let doc = self.doc;
        if let Prop::Seq(i) = prop {
            let len = self.tx().length(&obj);
            if i >= len {
                return Err(Error::IndexOutOfRange {
                    doc: doc.clone(),
                    path: path.to_string(),
                    index: i,
                    len,
                });
            }
        }
        value::put_json(self.tx(), doc, &p, &obj, prop, &value, false)
    }

    /// Deletes the value at `path`.
    pub fn delete(&mut self, path: &str) -> Result<()> {
        let (_, obj, prop) = self.parent(path)?;
        let doc = self.doc;
        let exists = self
            .tx()
            .get(&obj, prop.clone())
            .map_err(|e| Error::automerge(doc, e))?
            .is_some();
        if !exists {
            return Err(Error::NotFound {
                doc: doc.clone(),
                path: path.to_string(),
            });
        }
        self.tx()
            .delete(&obj, prop)
            .map_err(|e| Error::automerge(doc, e))
    }

    /// Inserts `value` into the list at `path` before `index`. Creates the list if absent.
    pub fn insert(&mut self, path: &str, index: usize, value: Json) -> Result<()> {
        let p = Pointer::parse(path)?;
        let doc = self.doc;
        let list = match value::resolve(self.tx(), doc, &p)? {
            Some((Value::Object(ObjType::List), id)) => id,
            Some((v, _)) => {
                return Err(Error::WrongType {
                    doc: doc.clone(),
                    path: path.to_string(),
                    expected: "a list",
                    found: value::kind_of(&v),
                })
            }
            None => {
                let (parent_ptr, obj, prop) = self.parent(path)?;
                let _ = parent_ptr;
                match prop {
                    Prop::Map(k) => self.tx().put_object(&obj, k, ObjType::List),
                    Prop::Seq(i) => self.tx().insert_object(&obj, i, ObjType::List),
                }
                .map_err(|e| Error::automerge(doc, e))?
            }
        };
        let len = self.tx().length(&list);
        if index > len {
            return Err(Error::IndexOutOfRange {
                doc: doc.clone(),
                path: path.to_string(),
                index,
                len,
            });
        }
        value::put_json(
            self.tx(),
            doc,
            &p.child(index.to_string()),
            &list,
            Prop::Seq(index),
            &value,
            true,
        )
    }

    /// Appends `value` to the list at `path`.
    pub fn push(&mut self, path: &str, value: Json) -> Result<()> {
        let p = Pointer::parse(path)?;
        let doc = self.doc;
        let len = match value::resolve(self.tx(), doc, &p)? {
            Some((Value::Object(ObjType::List), id)) => self.tx().length(&id),
            _ => 0,
        };
        self.insert(path, len, value)
    }

    /// Adds `delta` to the counter at `path`, creating it at `delta` if absent.
    pub fn increment(&mut self, path: &str, delta: i64) -> Result<()> {
        let (_, obj, prop) = self.parent(path)?;
        let doc = self.doc;
        let am = |e| Error::automerge(doc, e);
        match self.tx().get(&obj, prop.clone()).map_err(am)? {
            Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Counter(_)) => {
                self.tx().increment(&obj, prop, delta).map_err(am)
            }
            Some((v, _)) => Err(Error::WrongType {
                doc: doc.clone(),
                path: path.to_string(),
                expected: "a counter",
                found: value::kind_of(&v),
            }),
            None => match prop {
                Prop::Map(k) => self
                    .tx()
                    .put(&obj, k, ScalarValue::counter(delta))
                    .map_err(am),
                Prop::Seq(i) => self
                    .tx()
                    .insert(&obj, i, ScalarValue::counter(delta))
                    .map_err(am),
            },
        }
    }

    /// Reads the value at `path` as the transaction sees it.
    pub fn get(&mut self, path: &str) -> Result<Option<Json>> {
        let p = Pointer::parse(path)?;
        let doc = self.doc;
        let tx = self.tx();
        Ok(value::resolve(tx, doc, &p)?.map(|(v, id)| value::value_to_json(tx, &v, &id)))
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.rollback();
        }
    }
}
