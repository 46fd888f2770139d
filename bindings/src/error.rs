//! The one error type of the FFI, and the guard that keeps panics on the Rust side.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Everything that can go wrong in a call into outpost.
///
/// Each variant carries the full message of the underlying error, which says what
/// happened, to which document, path or peer, and what to do about it. Foreign code sees
/// `OutpostException.NotPermitted` (Kotlin), `OutpostError.NotPermitted` (Swift, Python)
/// and so on.
#[derive(Clone, Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum OutpostError {
    /// A document, site, peer or role name is malformed (e.g. `"Menu!"`).
    #[error("{0}")]
    InvalidName(String),
    /// A path is not a JSON Pointer (RFC 6901), e.g. `"items/burger"` without the
    /// leading `/`.
    #[error("{0}")]
    InvalidPath(String),
    /// A string given as a JSON value is not valid JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// A value cannot be stored or converted (e.g. a number too large, or a typed getter
    /// used on a value of another type).
    #[error("{0}")]
    InvalidValue(String),
    /// The document does not exist here yet: nothing was written to it or synced.
    #[error("{0}")]
    UnknownDocument(String),
    /// Nothing is stored at the path (deleting a missing key).
    #[error("{0}")]
    NotFound(String),
    /// The value at the path has another type than the operation needs (e.g.
    /// incrementing a string).
    #[error("{0}")]
    WrongType(String),
    /// A list index is past the end of the list.
    #[error("{0}")]
    IndexOutOfRange(String),
    /// This device's role may not write the document's context (e.g. a kiosk writing
    /// `menu`).
    #[error("{0}")]
    NotPermitted(String),
    /// The node configuration is unusable (bad address, policy, or a certificate of
    /// another role than the app expects).
    #[error("{0}")]
    InvalidConfig(String),
    /// A certificate, key or CA is malformed or they do not belong together.
    #[error("{0}")]
    Certificate(String),
    /// The data directory or a file could not be read or written, or stored data is
    /// corrupt.
    #[error("{0}")]
    Storage(String),
    /// A network operation failed (binding the port, a connection).
    #[error("{0}")]
    Network(String),
    /// The node was shut down; open a new one.
    #[error("{0}")]
    ShutDown(String),
    /// A bug in outpost (a Rust panic was caught); the message says where.
    #[error("{0}")]
    Internal(String),
}

/// A `Result` with [`OutpostError`].
pub type Result<T, E = OutpostError> = std::result::Result<T, E>;

impl OutpostError {
    /// The error of every call on a node that was shut down.
    pub(crate) fn shut_down() -> OutpostError {
        OutpostError::ShutDown(
            "this outpost node was shut down; open a new one with Outpost.open to continue".into(),
        )
    }

    /// A JSON string that does not parse.
    pub(crate) fn json(what: &str, e: &serde_json::Error) -> OutpostError {
        OutpostError::InvalidJson(format!(
            "{what} is not valid JSON ({e}); pass JSON text such as \"\\\"Burger\\\"\", \"950\", \"true\" or \"{{\\\"price\\\": 950}}\""
        ))
    }
}

impl From<outpost_core::Error> for OutpostError {
    fn from(e: outpost_core::Error) -> Self {
        use outpost_core::Error as E;
        let message = e.to_string();
        match e {
            E::InvalidName { .. } => OutpostError::InvalidName(message),
            E::InvalidPath { .. } => OutpostError::InvalidPath(message),
            E::UnknownDocument { .. } => OutpostError::UnknownDocument(message),
            E::NotFound { .. } => OutpostError::NotFound(message),
            E::WrongType { .. } => OutpostError::WrongType(message),
            E::IndexOutOfRange { .. } => OutpostError::IndexOutOfRange(message),
            E::InvalidValue { .. } | E::Serde { .. } | E::InvalidImport { .. } => {
                OutpostError::InvalidValue(message)
            }
            E::NotPermitted { .. } | E::PathNotPermitted { .. } | E::Erased { .. } => {
                OutpostError::NotPermitted(message)
            }
            E::CorruptDocument { .. } | E::CorruptStore(_) | E::Storage(_) => {
                OutpostError::Storage(message)
            }
            E::FeedClosed => OutpostError::shut_down(),
            E::NoTicketPrefix | E::TicketsExhausted { .. } => OutpostError::InvalidConfig(message),
            E::StoreFiles { .. } | E::InUse { .. } | E::Migration { .. } => {
                OutpostError::Storage(message)
            }
            E::UnknownEngine { .. } => OutpostError::InvalidConfig(message),
            // Automerge refuses operations that the value API does not produce.
            E::Automerge { .. } => OutpostError::Internal(message),
            _ => OutpostError::Internal(message),
        }
    }
}

impl From<outpost_transport::Error> for OutpostError {
    fn from(e: outpost_transport::Error) -> Self {
        use outpost_transport::Error as E;
        match e {
            E::Store(inner) => inner.into(),
            E::InvalidPem { .. }
            | E::CertGeneration { .. }
            | E::InvalidIdentity { .. }
            | E::MismatchedCertificate { .. }
            | E::TlsConfig(_)
            | E::Revocation(_)
            | E::Renewal { .. } => OutpostError::Certificate(e.to_string()),
            E::Io { .. } => OutpostError::Storage(e.to_string()),
            E::InvalidName { .. } => OutpostError::InvalidName(e.to_string()),
            E::NodeStopped => OutpostError::shut_down(),
            _ => OutpostError::Network(e.to_string()),
        }
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
        Err(OutpostError::Internal(format!(
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
            Err(OutpostError::Internal(m)) => {
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
            OutpostError::InvalidPath(m) => assert_eq!(m, text),
            other => panic!("expected InvalidPath, got {other:?}"),
        }
    }
}
