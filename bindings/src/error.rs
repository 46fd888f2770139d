//! The one error type of the FFI, and the guard that keeps panics on the Rust side.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Everything that can go wrong in a call into outpost.
///
/// Every variant carries the same fields: `reason`, the full message of the underlying error
/// (what happened and what to do about it); `doc`, `path` and `peer` where they apply (the
/// document, the JSON Pointer and the device the error concerns), so that an app can show or
/// act on them without parsing the text; and `retryable`: whether the same call may succeed
/// if made again later unchanged (a busy engine, a full disk freed, a network failure), as
/// opposed to a call that must change first (bad input, a refused write). Foreign code sees
/// `OutpostException.NotPermitted` (Kotlin, with `e.reason`, `e.doc`, ..., `e.retryable`),
/// `OutpostError.NotPermitted(reason:doc:path:peer:retryable:)` (Swift) and so on.
#[derive(Clone, Debug, thiserror::Error, uniffi::Error)]
pub enum OutpostError {
    /// A document, site, peer or role name is malformed (e.g. `"Menu!"`).
    #[error("{reason}")]
    InvalidName {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A path is not a JSON Pointer (RFC 6901), e.g. `"items/burger"` without the
    /// leading `/`.
    #[error("{reason}")]
    InvalidPath {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A string given as a JSON value is not valid JSON, or an app type failed to encode or
    /// decode (the Kotlin and Swift layers' codecs wrap their failures in it).
    #[error("{reason}")]
    InvalidJson {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A value cannot be stored or converted (e.g. a number too large, or a typed getter
    /// used on a value of another type).
    #[error("{reason}")]
    InvalidValue {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// The document does not exist here yet: nothing was written to it or synced.
    #[error("{reason}")]
    UnknownDocument {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// Nothing is stored at the path (deleting a missing key).
    #[error("{reason}")]
    NotFound {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// The value at the path has another type than the operation needs (e.g.
    /// incrementing a string).
    #[error("{reason}")]
    WrongType {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A list index is past the end of the list.
    #[error("{reason}")]
    IndexOutOfRange {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// This device's role may not write the document's context (e.g. a kiosk writing
    /// `menu`).
    #[error("{reason}")]
    NotPermitted {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// The node configuration is unusable (bad address, policy, or a certificate of
    /// another role than the app expects).
    #[error("{reason}")]
    InvalidConfig {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A certificate, key or CA is malformed or they do not belong together.
    #[error("{reason}")]
    Certificate {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// The data directory or a file could not be read or written, or stored data is
    /// corrupt.
    #[error("{reason}")]
    Storage {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A network operation failed (binding the port, a connection), or the engine did not
    /// answer in time.
    #[error("{reason}")]
    Network {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// The node was shut down; open a new one.
    #[error("{reason}")]
    ShutDown {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
    /// A bug in outpost (a Rust panic was caught); the message says where.
    #[error("{reason}")]
    Internal {
        /// What happened and what to do.
        reason: String,
        /// The document it concerns, if one.
        doc: Option<String>,
        /// The path in it, if one.
        path: Option<String>,
        /// The device it concerns, if one.
        peer: Option<String>,
        /// Whether the same call may succeed later unchanged.
        retryable: bool,
    },
}

/// A `Result` with [`OutpostError`].
pub type Result<T, E = OutpostError> = std::result::Result<T, E>;

/// Where an error applies, for [`OutpostError`]'s fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct At {
    pub(crate) doc: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) peer: Option<String>,
}

impl At {
    fn doc(doc: impl ToString) -> At {
        At {
            doc: Some(doc.to_string()),
            ..At::default()
        }
    }

    fn path(doc: impl ToString, path: impl ToString) -> At {
        At {
            doc: Some(doc.to_string()),
            path: Some(path.to_string()),
            peer: None,
        }
    }
}

/// The kind of an [`OutpostError`], to build one with [`OutpostError::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    InvalidName,
    InvalidPath,
    InvalidJson,
    InvalidValue,
    UnknownDocument,
    NotFound,
    WrongType,
    IndexOutOfRange,
    NotPermitted,
    InvalidConfig,
    Certificate,
    Storage,
    Network,
    ShutDown,
    Internal,
}

impl OutpostError {
    /// An error of `kind` saying `reason`, at `at`; `retryable` as it says.
    pub(crate) fn new(kind: Kind, reason: impl Into<String>, at: At, retryable: bool) -> Self {
        let (reason, doc, path, peer) = (reason.into(), at.doc, at.path, at.peer);
        match kind {
            Kind::InvalidName => OutpostError::InvalidName {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::InvalidPath => OutpostError::InvalidPath {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::InvalidJson => OutpostError::InvalidJson {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::InvalidValue => OutpostError::InvalidValue {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::UnknownDocument => OutpostError::UnknownDocument {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::NotFound => OutpostError::NotFound {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::WrongType => OutpostError::WrongType {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::IndexOutOfRange => OutpostError::IndexOutOfRange {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::NotPermitted => OutpostError::NotPermitted {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::InvalidConfig => OutpostError::InvalidConfig {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::Certificate => OutpostError::Certificate {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::Storage => OutpostError::Storage {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::Network => OutpostError::Network {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::ShutDown => OutpostError::ShutDown {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
            Kind::Internal => OutpostError::Internal {
                reason,
                doc,
                path,
                peer,
                retryable,
            },
        }
    }

    /// A [`Kind::InvalidName`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn invalid_name(reason: String) -> Self {
        Self::new(Kind::InvalidName, reason, At::default(), false)
    }

    /// A [`Kind::InvalidPath`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn invalid_path(reason: String) -> Self {
        Self::new(Kind::InvalidPath, reason, At::default(), false)
    }

    /// A [`Kind::InvalidJson`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn invalid_json(reason: String) -> Self {
        Self::new(Kind::InvalidJson, reason, At::default(), false)
    }

    /// A [`Kind::InvalidValue`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn invalid_value(reason: String) -> Self {
        Self::new(Kind::InvalidValue, reason, At::default(), false)
    }

    /// A [`Kind::UnknownDocument`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn unknown_document(reason: String) -> Self {
        Self::new(Kind::UnknownDocument, reason, At::default(), false)
    }

    /// A [`Kind::NotFound`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn not_found(reason: String) -> Self {
        Self::new(Kind::NotFound, reason, At::default(), false)
    }

    /// A [`Kind::WrongType`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn wrong_type(reason: String) -> Self {
        Self::new(Kind::WrongType, reason, At::default(), false)
    }

    /// A [`Kind::IndexOutOfRange`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn index_out_of_range(reason: String) -> Self {
        Self::new(Kind::IndexOutOfRange, reason, At::default(), false)
    }

    /// A [`Kind::NotPermitted`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn not_permitted(reason: String) -> Self {
        Self::new(Kind::NotPermitted, reason, At::default(), false)
    }

    /// A [`Kind::InvalidConfig`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn invalid_config(reason: String) -> Self {
        Self::new(Kind::InvalidConfig, reason, At::default(), false)
    }

    /// A [`Kind::Certificate`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn certificate(reason: String) -> Self {
        Self::new(Kind::Certificate, reason, At::default(), false)
    }

    /// A [`Kind::Storage`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn storage(reason: String) -> Self {
        Self::new(Kind::Storage, reason, At::default(), false)
    }

    /// A [`Kind::Network`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn network(reason: String) -> Self {
        Self::new(Kind::Network, reason, At::default(), false)
    }

    /// A [`Kind::Internal`] error applying nowhere in particular, not retryable.
    #[allow(dead_code)]
    pub(crate) fn internal(reason: String) -> Self {
        Self::new(Kind::Internal, reason, At::default(), false)
    }

    /// The message (`reason`).
    pub fn reason(&self) -> &str {
        self.fields().0
    }

    /// The document the error concerns, if one.
    pub fn doc(&self) -> Option<&str> {
        self.fields().1.as_deref()
    }

    /// The path the error concerns, if one.
    pub fn path(&self) -> Option<&str> {
        self.fields().2.as_deref()
    }

    /// The device the error concerns, if one.
    pub fn peer(&self) -> Option<&str> {
        self.fields().3.as_deref()
    }

    /// Whether the same call may succeed later unchanged.
    pub fn retryable(&self) -> bool {
        *self.fields().4
    }

    #[allow(clippy::type_complexity)]
    fn fields(
        &self,
    ) -> (
        &str,
        &Option<String>,
        &Option<String>,
        &Option<String>,
        &bool,
    ) {
        match self {
            OutpostError::InvalidName {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::InvalidPath {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::InvalidJson {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::InvalidValue {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::UnknownDocument {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::NotFound {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::WrongType {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::IndexOutOfRange {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::NotPermitted {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::InvalidConfig {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::Certificate {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::Storage {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::Network {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::ShutDown {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
            OutpostError::Internal {
                reason,
                doc,
                path,
                peer,
                retryable,
            } => (reason, doc, path, peer, retryable),
        }
    }

    /// The error of every call on a node that was shut down.
    pub(crate) fn shut_down() -> OutpostError {
        OutpostError::shut_down_with(
            "this outpost node was shut down; open a new one with Outpost.open to continue",
        )
    }

    fn shut_down_with(reason: &str) -> OutpostError {
        OutpostError::new(Kind::ShutDown, reason, At::default(), false)
    }

    /// A JSON string that does not parse.
    pub(crate) fn json(what: &str, e: &serde_json::Error) -> OutpostError {
        OutpostError::invalid_json(format!(
            "{what} is not valid JSON ({e}); pass JSON text such as \"\\\"Burger\\\"\", \"950\", \"true\" or \"{{\\\"price\\\": 950}}\""
        ))
    }

    /// This error with `doc` and `path` filled in where it has none (the call's arguments).
    pub(crate) fn at(mut self, doc_: &str, path_: Option<&str>) -> OutpostError {
        match &mut self {
            OutpostError::InvalidName { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::InvalidPath { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::InvalidJson { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::InvalidValue { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::UnknownDocument { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::NotFound { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::WrongType { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::IndexOutOfRange { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::NotPermitted { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::InvalidConfig { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::Certificate { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::Storage { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::Network { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::ShutDown { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
            OutpostError::Internal { doc, path, .. } => {
                doc.get_or_insert_with(|| doc_.to_string());
                if let (None, Some(p)) = (&*path, path_) {
                    *path = Some(p.to_string());
                }
            }
        }
        self
    }
}

impl From<outpost_core::Error> for OutpostError {
    fn from(e: outpost_core::Error) -> Self {
        use outpost_core::Error as E;
        let message = e.to_string();
        let (kind, at, retryable) = match &e {
            E::InvalidName { .. } => (Kind::InvalidName, At::default(), false),
            E::InvalidPath { path, .. } => (
                Kind::InvalidPath,
                At {
                    path: Some(path.clone()),
                    ..At::default()
                },
                false,
            ),
            E::UnknownDocument { doc } => (Kind::UnknownDocument, At::doc(doc), true),
            E::NotFound { doc, path } => (Kind::NotFound, At::path(doc, path), false),
            E::WrongType { doc, path, .. } => (Kind::WrongType, At::path(doc, path), false),
            E::IndexOutOfRange { doc, path, .. } => {
                (Kind::IndexOutOfRange, At::path(doc, path), false)
            }
            E::InvalidValue { doc, path, .. } | E::Serde { doc, path, .. } => {
                (Kind::InvalidValue, At::path(doc, path), false)
            }
            E::InvalidImport { doc, .. } => (Kind::InvalidValue, At::doc(doc), false),
            E::NotPermitted { doc, .. } | E::Erased { doc, .. } => {
                (Kind::NotPermitted, At::doc(doc), false)
            }
            E::PathNotPermitted { doc, path, .. } => {
                (Kind::NotPermitted, At::path(doc, path), false)
            }
            E::CorruptDocument { doc, .. } => (Kind::Storage, At::doc(doc), false),
            // A disk that is full or busy may take the write later.
            E::CorruptStore(_) => (Kind::Storage, At::default(), false),
            E::Storage(_) => (Kind::Storage, At::default(), true),
            E::FeedClosed => return OutpostError::shut_down(),
            E::ReplicatedNeedsNode { doc } => (Kind::InvalidConfig, At::doc(doc), false),
            E::NoTicketPrefix | E::TicketsExhausted { .. } => {
                (Kind::InvalidConfig, At::default(), false)
            }
            E::StoreFiles { .. } | E::Migration { .. } => (Kind::Storage, At::default(), false),
            // Another process (or a handle being released) holds the store: later, it may not.
            E::InUse { .. } => (Kind::Storage, At::default(), true),
            E::UnknownEngine { .. } => (Kind::InvalidConfig, At::default(), false),
            // Automerge refuses operations that the value API does not produce.
            E::Automerge { doc, .. } => (Kind::Internal, At::doc(doc), false),
            _ => (Kind::Internal, At::default(), false),
        };
        OutpostError::new(kind, message, at, retryable)
    }
}

impl From<outpost_transport::Error> for OutpostError {
    fn from(e: outpost_transport::Error) -> Self {
        use outpost_transport::Error as E;
        let message = e.to_string();
        let kind = match e {
            E::Store(inner) => return inner.into(),
            E::InvalidPem { .. }
            | E::CertGeneration { .. }
            | E::InvalidIdentity { .. }
            | E::MismatchedCertificate { .. }
            | E::TlsConfig(_)
            | E::Revocation(_)
            | E::Renewal { .. } => Kind::Certificate,
            E::Io { .. } => Kind::Storage,
            E::InvalidName { .. } => Kind::InvalidName,
            E::NodeStopped => return OutpostError::shut_down(),
            _ => Kind::Network,
        };
        // A network failure (a port in use, a peer gone) may clear up.
        let retryable = matches!(kind, Kind::Network | Kind::Storage);
        OutpostError::new(kind, message, At::default(), retryable)
    }
}

/// Runs `f`, turning a panic into [`OutpostError::Internal`].
///
/// UniFFI would also catch it, but as a generic `InternalException` outside the
/// `OutpostError` hierarchy; apps handle one error type.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    // Unwind safety: every lock in core and transport tolerates poisoning, and a failed
    // call leaves no half-built FFI state behind.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(OutpostError::internal(format!(
            "outpost panicked in {what}: {}; this is a bug, please report it with the log. \
             Close the node and open it again to continue",
            panic_message(payload.as_ref())
        )))
    })
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let r: Result<()> = guard("test", || panic!("boom"));
        match r {
            Err(OutpostError::Internal { reason: m, .. }) => {
                assert!(m.contains("boom") && m.contains("test"), "{m}")
            }
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[test]
    fn core_errors_keep_their_message_and_kind() {
        let e = outpost_core::Pointer::parse("items").expect_err("not a pointer");
        let text = e.to_string();
        match OutpostError::from(e) {
            OutpostError::InvalidPath {
                reason, retryable, ..
            } => {
                assert_eq!(reason, text);
                assert!(!retryable);
            }
            other => panic!("expected InvalidPath, got {other:?}"),
        }
    }
}
