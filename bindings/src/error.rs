//! The one error type of the FFI, and the guard that keeps panics on the Rust side.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Declares [`OutpostError`] (every variant with the same fields), its [`Kind`] and a
/// constructor per kind: one list instead of fifteen copies of each.
macro_rules! outpost_error {
    ($($(#[doc = $doc:literal])* $variant:ident => $ctor:ident,)*) => {
        /// Everything that can go wrong in a call into outpost.
        ///
        /// Every variant carries the same fields: `reason`, the full message of the underlying
        /// error (what happened and what to do about it); `doc`, `path` and `peer` where they
        /// apply (the document, the JSON Pointer and the device the error concerns), so that an
        /// app can show or act on them without parsing the text; and `retryable`: whether the
        /// same call may succeed if made again later unchanged (a busy engine, a full disk
        /// freed, a network failure), as opposed to a call that must change first (bad input, a
        /// refused write). Foreign code sees `OutpostException.NotPermitted` (Kotlin, with
        /// `e.reason`, `e.doc`, ..., `e.retryable`),
        /// `OutpostError.NotPermitted(reason:doc:path:peer:retryable:)` (Swift) and so on.
        #[derive(Clone, Debug, thiserror::Error, uniffi::Error)]
        pub enum OutpostError {
            $(
                $(#[doc = $doc])*
                #[error("{reason}")]
                $variant {
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
            )*
        }

        /// The kind of an [`OutpostError`], to build one with [`OutpostError::new`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Kind {
            $($variant,)*
        }

        impl OutpostError {
            /// An error of `kind` saying `reason`, at `at`; `retryable` as it says.
            pub(crate) fn new(kind: Kind, reason: impl Into<String>, at: At, retryable: bool) -> Self {
                let (reason, doc, path, peer) = (reason.into(), at.doc, at.path, at.peer);
                match kind {
                    $(Kind::$variant => OutpostError::$variant { reason, doc, path, peer, retryable },)*
                }
            }

            $(
                /// An error of this kind applying nowhere in particular, not retryable.
                #[allow(dead_code)]
                pub(crate) fn $ctor(reason: String) -> Self {
                    Self::new(Kind::$variant, reason, At::default(), false)
                }
            )*

            /// The fields, whatever the variant.
            fn fields(&self) -> (&String, &Option<String>, &Option<String>, &Option<String>, bool) {
                match self {
                    $(OutpostError::$variant { reason, doc, path, peer, retryable } => {
                        (reason, doc, path, peer, *retryable)
                    })*
                }
            }

            /// The document and path fields, whatever the variant.
            fn place_mut(&mut self) -> (&mut Option<String>, &mut Option<String>) {
                match self {
                    $(OutpostError::$variant { doc, path, .. } => (doc, path),)*
                }
            }
        }
    };
}

outpost_error! {
    /// A document, site, peer or role name is malformed (e.g. `"Menu!"`).
    InvalidName => invalid_name,
    /// A path is not a JSON Pointer (RFC 6901), e.g. `"items/burger"` without the
    /// leading `/`.
    InvalidPath => invalid_path,
    /// A string given as a JSON value is not valid JSON, or an app type failed to encode or
    /// decode (the Kotlin and Swift layers' codecs wrap their failures in it).
    InvalidJson => invalid_json,
    /// A value cannot be stored or converted (e.g. a number too large, or a typed getter
    /// used on a value of another type).
    InvalidValue => invalid_value,
    /// The document does not exist here yet: nothing was written to it or synced.
    UnknownDocument => unknown_document,
    /// Nothing is stored at the path (deleting a missing key).
    NotFound => not_found,
    /// The value at the path has another type than the operation needs (e.g.
    /// incrementing a string).
    WrongType => wrong_type,
    /// A list index is past the end of the list.
    IndexOutOfRange => index_out_of_range,
    /// This device's role may not write the document's context (e.g. a kiosk writing
    /// `menu`).
    NotPermitted => not_permitted,
    /// The node configuration is unusable (bad address, policy, or a certificate of
    /// another role than the app expects).
    InvalidConfig => invalid_config,
    /// A certificate, key or CA is malformed or they do not belong together.
    Certificate => certificate,
    /// The data directory or a file could not be read or written, or stored data is
    /// corrupt.
    Storage => storage,
    /// A network operation failed (binding the port, a connection), or the engine did not
    /// answer in time.
    Network => network,
    /// The node was shut down; open a new one.
    ShutDown => shut_down_kind,
    /// A bug in outpost (a Rust panic was caught); the message says where.
    Internal => internal,
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

impl OutpostError {
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
        self.fields().4
    }

    /// The error of every call on a node that was shut down.
    pub(crate) fn shut_down() -> OutpostError {
        OutpostError::shut_down_kind(
            "this outpost node was shut down; open a new one with Outpost.open to continue".into(),
        )
    }

    /// A JSON string that does not parse.
    pub(crate) fn json(what: &str, e: &serde_json::Error) -> OutpostError {
        OutpostError::invalid_json(format!(
            "{what} is not valid JSON ({e}); pass JSON text such as \"\\\"Burger\\\"\", \"950\", \"true\" or \"{{\\\"price\\\": 950}}\""
        ))
    }

    /// This error with `doc` and `path` filled in where it has none (the call's arguments).
    pub(crate) fn at(mut self, doc: &str, path: Option<&str>) -> OutpostError {
        let (d, p) = self.place_mut();
        d.get_or_insert_with(|| doc.to_string());
        if let (None, Some(path)) = (&*p, path) {
            *p = Some(path.to_string());
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
            // A missing or wrong key: the app passes the right one; the store is intact.
            E::Key(_) => (Kind::InvalidConfig, At::default(), false),
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
