//! Several operations on one document, committed atomically.

use automerge::transaction::{Transactable, Transaction};
use automerge::{ObjType, Prop, ReadDoc, ScalarValue, Value};
use serde_json::Value as Json;

use crate::value;
use crate::{DocumentId, Error, PeerInfo, Pointer, Policy, Result};

/// A transaction on one document, given to the closure of [`Store::transact`](crate::Store::transact).
///
/// Paths are JSON Pointers; missing parent objects are created as maps.
pub struct Tx<'a> {
    tx: Option<Transaction<'a>>,
    doc: &'a DocumentId,
    /// The paths written so far, when a subscriber wants them (`None` otherwise).
    ///
    /// Recorded from the operations themselves rather than from an Automerge patch log:
    /// turning a patch log into paths looks up each touched object's key by scanning every
    /// key of its parent (`PatchBuilder::get_path`), so a write below `/orders/<id>` cost
    /// time proportional to the number of orders in the document.
    paths: Option<Vec<Pointer>>,
    /// The per-path write rules this store's role writes under, if its context has any.
    guard: Option<(&'a Policy, &'a PeerInfo)>,
    /// Ticket numbers (see [`Tx::next_ticket`]).
    tickets: Option<&'a super::ticket::Tickets>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(
        tx: Transaction<'a>,
        doc: &'a DocumentId,
        record_paths: bool,
        guard: Option<(&'a Policy, &'a PeerInfo)>,
        tickets: Option<&'a super::ticket::Tickets>,
    ) -> Self {
        Tx {
            tx: Some(tx),
            doc,
            paths: record_paths.then(Vec::new),
            guard: guard.filter(|(p, _)| p.has_path_rules(doc.context())),
            tickets,
        }
    }

    /// Issues the next ticket number of this device (`K1-042`), atomically with this
    /// transaction: the number is recorded in the device's counter before the change is
    /// stored, and in the document (`/_tickets/<prefix>`) inside the change, so that a copy
    /// of the store restored from an old backup learns it back from any peer. Never
    /// returns a number twice (a failed transaction leaves a gap). See
    /// `core/docs/design.md`, "Ticket numbers", for what holds after a restore.
    pub fn next_ticket(&mut self) -> Result<super::Ticket> {
        let tickets = self.tickets.ok_or(Error::NoTicketPrefix)?;
        let doc = self.doc;
        let path = Pointer::root()
            .child(super::ticket::RECORD_KEY)
            .child(tickets.prefix().as_str());
        let recorded = super::ticket::recorded(self.tx(), &path, tickets.prefix());
        let ticket = tickets.issue(doc, recorded)?;
        self.put(&path.to_string(), Json::String(ticket.to_string()))?;
        Ok(ticket)
    }

    /// Refuses a write the per-path rules do not grant this store's role: at `path`
    /// (replacing what is there if `replaces`), at every missing parent it creates, and at
    /// every path inside `value`.
    fn check(&mut self, path: &Pointer, value: Option<&Json>, replaces: bool) -> Result<()> {
        let Some((policy, me)) = self.guard else {
            return Ok(());
        };
        let doc = self.doc;
        let mut checks = Vec::new();
        let mut at = Pointer::root();
        for t in path
            .tokens()
            .iter()
            .take(path.tokens().len().saturating_sub(1))
        {
            at = at.child(t.clone());
            if value::resolve(self.tx(), doc, &at)?.is_none() {
                checks.push((at.clone(), false));
            }
        }
        checks.push((path.clone(), replaces));
        if let Some(v) = value {
            let mut inner = Vec::new();
            record(&mut inner, path, Some(v));
            checks.extend(inner.into_iter().skip(1).map(|p| (p, false)));
        }
        for (p, replaces) in checks {
            let role = &me.role;
            if !policy.may_write_path_as(role, Some(&me.peer), doc.context(), &p, replaces) {
                return Err(Error::PathNotPermitted {
                    role: role.clone(),
                    doc: doc.clone(),
                    path: p.to_string(),
                    rule: policy.path_refusal(role, doc.context(), &p),
                });
            }
        }
        Ok(())
    }

    /// Whether an empty map is at `path` now.
    fn is_empty_map(&mut self, path: &str) -> Result<bool> {
        let p = Pointer::parse(path)?;
        if p.tokens().is_empty() {
            return Ok(false);
        }
        let doc = self.doc;
        Ok(match value::resolve(self.tx(), doc, &p)? {
            Some((Value::Object(ObjType::Map), obj)) => self.tx().length(&obj) == 0,
            _ => false,
        })
    }

    /// Whether a value is at `path` now.
    fn exists(&mut self, path: &Pointer) -> Result<bool> {
        let doc = self.doc;
        Ok(value::resolve(self.tx(), doc, path)?.is_some())
    }

    /// Commits; returns the new change's hash (`None` if the transaction changed nothing)
    /// and the paths it wrote (empty unless recorded).
    /// `message` becomes the change's message (a write id: see `Store::transact_once`).
    pub(super) fn commit(
        mut self,
        message: Option<String>,
    ) -> (Option<automerge::ChangeHash>, Vec<Pointer>) {
        let paths = self.paths.take().unwrap_or_default();
        match (self.tx.take(), message) {
            (Some(tx), None) => (tx.commit().0, paths),
            (Some(tx), Some(m)) => (
                tx.commit_with(automerge::transaction::CommitOptions::default().with_message(m))
                    .0,
                paths,
            ),
            (None, _) => (None, paths),
        }
    }

    /// Records that `path` was written with `value` (and so every path inside it).
    fn wrote(&mut self, path: &Pointer, value: Option<&Json>) {
        if let Some(paths) = &mut self.paths {
            record(paths, path, value);
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
        if let Json::Object(fields) = &value {
            if self.is_empty_map(path)? {
                // An object over an empty map: its keys are written into the map, which
                // reads the same as replacing it, but keeps the map others write into
                // meanwhile (a document's genesis makes `/orders` on every device, so
                // "create the day" with `/orders {}` is a no-op, and a first batch of orders
                // is a creation of each, even by a kiosk offline). Replacing a map that
                // holds something stays a replacement.
                let at = Pointer::parse(path)?;
                for (k, v) in fields {
                    self.put(&at.child(k.clone()).to_string(), v.clone())?;
                }
                return Ok(());
            }
        }
        if self.guard.is_some() {
            let p = Pointer::parse(path)?;
            let replaces = self.exists(&p)?;
            self.check(&p, Some(&value), replaces)?;
        }
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
        value::put_json(self.tx(), doc, &p, &obj, prop, &value, false)?;
        self.wrote(&p, Some(&value));
        Ok(())
    }

    /// Deletes the value at `path`.
    pub fn delete(&mut self, path: &str) -> Result<()> {
        if self.guard.is_some() {
            self.check(&Pointer::parse(path)?, None, true)?;
        }
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
            .map_err(|e| Error::automerge(doc, e))?;
        let p = Pointer::parse(path)?;
        self.wrote(&p, None);
        Ok(())
    }

    /// Inserts `value` into the list at `path` before `index`. Creates the list if absent.
    pub fn insert(&mut self, path: &str, index: usize, value: Json) -> Result<()> {
        let p = Pointer::parse(path)?;
        if self.guard.is_some() {
            // A list element is judged at the list's path (indexes move), what is inside a
            // new element at its own.
            self.check(&p, None, false)?;
            let mut inner = Vec::new();
            record(&mut inner, &p.child(index.to_string()), Some(&value));
            for q in inner.iter().skip(1) {
                self.check(q, None, false)?;
            }
        }
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
                let (_, obj, prop) = self.parent(path)?;
                let list = match prop {
                    Prop::Map(k) => self.tx().put_object(&obj, k, ObjType::List),
                    Prop::Seq(i) => self.tx().insert_object(&obj, i, ObjType::List),
                }
                .map_err(|e| Error::automerge(doc, e))?;
                self.wrote(&p, None);
                list
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
        let at = p.child(index.to_string());
        value::put_json(self.tx(), doc, &at, &list, Prop::Seq(index), &value, true)?;
        self.wrote(&at, Some(&value));
        Ok(())
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
        if self.guard.is_some() {
            let p = Pointer::parse(path)?;
            let replaces = self.exists(&p)?;
            self.check(&p, None, replaces)?;
        }
        let (p, obj, prop) = self.parent(path)?;
        let doc = self.doc;
        let am = |e| Error::automerge(doc, e);
        let done = match self.tx().get(&obj, prop.clone()).map_err(am)? {
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
        };
        done?;
        self.wrote(&p, None);
        Ok(())
    }

    /// Reads the value at `path` as the transaction sees it.
    pub fn get(&mut self, path: &str) -> Result<Option<Json>> {
        let p = Pointer::parse(path)?;
        let doc = self.doc;
        let tx = self.tx();
        Ok(value::resolve(tx, doc, &p)?.map(|(v, id)| value::value_to_json(tx, &v, &id)))
    }
}

/// Appends `path` and, for an object or a list, every path inside `value`: what Automerge's
/// patches listed for the same write. Costs time proportional to the value, not the document.
fn record(paths: &mut Vec<Pointer>, path: &Pointer, value: Option<&Json>) {
    paths.push(path.clone());
    match value {
        Some(Json::Object(map)) => {
            for (k, v) in map {
                record(paths, &path.child(k.clone()), Some(v));
            }
        }
        Some(Json::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                record(paths, &path.child(i.to_string()), Some(v));
            }
        }
        _ => {}
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.rollback();
        }
    }
}
