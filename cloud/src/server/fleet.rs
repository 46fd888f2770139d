//! Fleet-wide documents: one copy in the cloud, synced to the devices of every site.
//!
//! The documents of contexts the policy marks `scope = "fleet"` (a catalog, prices) live in
//! one store namespace, `fleet/`, of the cloud's database. Every site's store delegates those
//! documents to this one store ([`StoreOptions::fleet`]): a site's engine reads, writes and
//! syncs them like its own, while its sync states (per device) stay in the site. So:
//!
//! - a change written here (head office, through [`Fleet::put`]) or received from a device
//!   that may write it, through any site, is stored once; the fleet store's subscription
//!   then tells every loaded site's runner ([`RunnerHandle::changed`]), whose engine offers
//!   it to that site's connected devices at once;
//! - a site loaded later lists the fleet documents in its engine's hello, so its devices get
//!   what they missed when they connect;
//! - devices of a site may write a fleet context only if the policy lets their role (the
//!   default policy: `head-office` only); a refused change is never stored.
//!
//! [`StoreOptions::fleet`]: outpost_core::StoreOptions
//! [`RunnerHandle::changed`]: outpost_transport::RunnerHandle::changed

use std::sync::Arc;

use outpost_core::{
    DocumentId, Durability, Pointer, Policy, Role, Store, StoreOptions, SubscriptionFilter,
};
use serde_json::Value as Json;

use super::Shared;

/// The store namespace of fleet documents in the cloud's database.
pub(crate) const FLEET_NAMESPACE: &str = "fleet/";

/// Why a fleet read or write was refused.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The document's context is not of fleet scope.
    #[error("{doc} is not a fleet document: its context is not marked scope = \"fleet\" in the policy; read or write it in a site")]
    NotFleet {
        /// The document.
        doc: DocumentId,
    },
    /// The author's role may not write there.
    #[error("role {role} may not write {doc}{at}: {reason}")]
    NotPermitted {
        /// The role of the writer.
        role: Role,
        /// The document.
        doc: DocumentId,
        /// ` at <pointer>` when a per-path rule refused.
        at: String,
        /// What the policy says.
        reason: String,
    },
    /// The pointer is not a JSON Pointer.
    #[error("{pointer:?} is not a JSON Pointer (write /items/burger/price, or \"\" for the whole document): {reason}")]
    BadPointer {
        /// The pointer given.
        pointer: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Reading or writing the store failed (a full disk, a type mismatch at the path).
    #[error("fleet document {doc}: {source}")]
    Store {
        /// The document.
        doc: DocumentId,
        /// The store's error.
        #[source]
        source: outpost_core::Error,
    },
    /// Listing the fleet's documents failed.
    #[error("cannot list the fleet documents: {0}")]
    Storage(#[source] outpost_core::Error),
}

/// The fleet documents of a cloud: read and written as head office. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fleet {
    store: Store,
    policy: Policy,
    /// Who head office's writes are authored as (see `Shared::head_office`).
    author: Option<outpost_core::Author>,
}

impl Fleet {
    /// The fleet store in `db` (namespace `fleet/`), written as `local` (the cloud).
    /// With `mirror` (the cloud on PostgreSQL), the database holds the truth and the store
    /// in `db` is this instance's copy.
    pub(crate) fn open(
        db: &outpost_core::Database,
        local: &outpost_core::PeerInfo,
        policy: &Policy,
        signer: outpost_core::signing::SharedSigner,
        author: Option<outpost_core::Author>,
        mirror: Option<outpost_core::SharedMirror>,
    ) -> outpost_core::Result<Fleet> {
        let store = Store::on_db(
            db.clone(),
            FLEET_NAMESPACE,
            StoreOptions {
                identity: Some(local.clone()),
                policy: policy.clone(),
                signer: Some(signer),
                mirror,
                ..StoreOptions::default()
            },
        )?;
        Ok(Fleet {
            store,
            policy: policy.clone(),
            author,
        })
    }

    /// The store every site delegates fleet documents to.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Whether `doc` is a fleet document (its context is of fleet scope).
    pub fn is_fleet(&self, doc: &DocumentId) -> bool {
        self.policy.is_fleet(doc.context())
    }

    fn check(&self, doc: &DocumentId) -> Result<(), FleetError> {
        if self.is_fleet(doc) {
            Ok(())
        } else {
            Err(FleetError::NotFleet { doc: doc.clone() })
        }
    }

    fn pointer(pointer: &str) -> Result<Pointer, FleetError> {
        Pointer::parse(pointer).map_err(|e| FleetError::BadPointer {
            pointer: pointer.to_string(),
            reason: e.to_string(),
        })
    }

    fn store_error(doc: &DocumentId) -> impl FnOnce(outpost_core::Error) -> FleetError + '_ {
        move |source| FleetError::Store {
            doc: doc.clone(),
            source,
        }
    }

    /// The value at `pointer` (`""`: the whole document) of a fleet document; `None` if
    /// nothing is there (or the document does not exist yet).
    pub fn get(&self, doc: &DocumentId, pointer: &str) -> Result<Option<Json>, FleetError> {
        self.check(doc)?;
        Self::pointer(pointer)?;
        match self.store.get(doc, pointer) {
            Ok(v) => Ok(v),
            Err(outpost_core::Error::UnknownDocument { .. }) => Ok(None),
            Err(e) => Err(Self::store_error(doc)(e)),
        }
    }

    /// Checks that `author` may write at `pointer` of `doc`, like a device of that role: at
    /// the pointer, and at every path below it that `value` (the value put, if any) writes.
    fn may_write(
        &self,
        doc: &DocumentId,
        at: &Pointer,
        value: Option<&Json>,
        author: &Role,
    ) -> Result<(), FleetError> {
        if !self.policy.may_write(author, doc.context()) {
            return Err(FleetError::NotPermitted {
                role: author.clone(),
                doc: doc.clone(),
                at: String::new(),
                reason: "the policy does not list the role among the context's writers".into(),
            });
        }
        let replaces = !matches!(self.get(doc, &at.to_string()), Ok(None));
        let refused = if !self
            .policy
            .may_write_path(author, doc.context(), at, replaces)
        {
            Some(at.clone())
        } else {
            value.and_then(|v| refused_nested_path(&self.policy, author, doc, at, v))
        };
        match refused {
            None => Ok(()),
            Some(path) => Err(FleetError::NotPermitted {
                role: author.clone(),
                doc: doc.clone(),
                at: format!(" at {path}"),
                reason: self.policy.path_refusal(author, doc.context(), &path),
            }),
        }
    }

    /// Writes `value` at `pointer` of a fleet document as `author` (the role of the caller,
    /// e.g. `head-office`), checked against the policy like a device's write, per-path rules
    /// included. The change is the cloud's (signed with its key), durable when this returns,
    /// and offered at once to the connected devices of every loaded site; other sites get it
    /// when their devices next connect.
    pub fn put(
        &self,
        doc: &DocumentId,
        pointer: &str,
        value: &Json,
        author: &Role,
    ) -> Result<(), FleetError> {
        self.check(doc)?;
        let at = Self::pointer(pointer)?;
        self.may_write(doc, &at, Some(value), author)?;
        self.write(doc, |tx| tx.put(pointer, value.clone()))?;
        tracing::info!(%doc, %pointer, %author, "fleet document written");
        Ok(())
    }

    /// Deletes the value at `pointer` of a fleet document as `author` (see [`Fleet::put`]).
    pub fn delete(&self, doc: &DocumentId, pointer: &str, author: &Role) -> Result<(), FleetError> {
        self.check(doc)?;
        let at = Self::pointer(pointer)?;
        self.may_write(doc, &at, None, author)?;
        self.write(doc, |tx| tx.delete(pointer))?;
        tracing::info!(%doc, %pointer, %author, "fleet document value deleted");
        Ok(())
    }

    /// Makes a durable write as the head-office identity when there is one (devices then
    /// judge it as head office's), else as the cloud.
    fn write(
        &self,
        doc: &DocumentId,
        f: impl FnOnce(&mut outpost_core::Tx<'_>) -> outpost_core::Result<()>,
    ) -> Result<(), FleetError> {
        match &self.author {
            Some(a) => {
                let id = format!(
                    "head-office/{}-{:016x}",
                    outpost_core::Timestamp::now().as_millis(),
                    rand::random::<u64>()
                );
                self.store
                    .transact_as(a, doc, &id, Durability::Durable, f)
                    .map(|_| ())
            }
            None => self.store.transact(doc, Durability::Durable, f),
        }
        .map_err(Self::store_error(doc))
    }

    /// The fleet documents that hold data, sorted.
    pub fn documents(&self) -> Result<Vec<DocumentId>, FleetError> {
        self.store.documents().map_err(FleetError::Storage)
    }

    /// Bytes of a fleet document's stored chunks (its one copy in the cloud).
    pub fn document_bytes(&self, doc: &DocumentId) -> Result<u64, FleetError> {
        self.store
            .document_bytes(doc)
            .map_err(Self::store_error(doc))
    }
}

/// The first path strictly below `at` that `value` (written at `at`) creates and that
/// `role` may not write under the per-path rules of `doc`'s context; `None` if there is none.
///
/// A device's change is checked at the path of each operation it holds, so a nested object
/// is checked key by key; a write made here as one JSON value must be too, or a key that a
/// rule keeps for another role (`/orders/*/kitchen`) could be created by putting its
/// parent. Nested paths are checked as creations: when something exists at `at`, the
/// caller's check of `at` as a replacement already needs the rights of every rule below it.
pub(crate) fn refused_nested_path(
    policy: &Policy,
    role: &Role,
    doc: &DocumentId,
    at: &Pointer,
    value: &Json,
) -> Option<Pointer> {
    if !policy.has_path_rules(doc.context()) {
        return None;
    }
    // A stack, not recursion: the depth is the client's.
    let mut stack = vec![(at.clone(), value)];
    while let Some((path, value)) = stack.pop() {
        let children: Box<dyn Iterator<Item = (String, &Json)>> = match value {
            Json::Object(map) => Box::new(map.iter().map(|(k, v)| (k.clone(), v))),
            Json::Array(items) => {
                Box::new(items.iter().enumerate().map(|(i, v)| (i.to_string(), v)))
            }
            _ => continue,
        };
        for (token, child) in children {
            let below = path.child(token);
            if !policy.may_write_path(role, doc.context(), &below, false) {
                return Some(below);
            }
            stack.push((below, child));
        }
    }
    None
}

/// Tells every loaded site's runner about each change of a fleet document, whoever made it
/// (head office here, or a device through one site): their engines offer it to their
/// connected devices at once. Runs until the cloud stops.
pub(crate) async fn fan_out(shared: Arc<Shared>) {
    let mut changes = shared
        .fleet
        .store()
        .subscribe(SubscriptionFilter::all().without_paths());
    while let Some(change) = changes.recv().await {
        let runners: Vec<_> = shared.sites().values().map(|e| e.runner.clone()).collect();
        tracing::debug!(doc = %change.doc, sites = runners.len(), "fleet document changed");
        for r in runners {
            let _ = r.changed(change.doc.clone());
        }
    }
}
