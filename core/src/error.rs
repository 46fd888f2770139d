//! The error type of outpost-core.

use crate::DocumentId;

/// Everything that can go wrong in outpost-core. Each message says what happened to
/// which document or peer, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A site, peer, role, context or document name was malformed.
    #[error("invalid {kind} {name:?}: {reason}; use a name like {example:?}")]
    InvalidName {
        /// What kind of name it was.
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
        /// A valid example.
        example: &'static str,
    },
    /// A JSON Pointer path was malformed.
    #[error("invalid path {path:?}: {reason}; paths are JSON Pointers (RFC 6901) like \"/items/burger/price\"")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The document does not exist in this store.
    #[error("unknown document {doc}: nothing was ever written to it here or synced from a peer; check its name or write to it first")]
    UnknownDocument {
        /// The document.
        doc: DocumentId,
    },
    /// Nothing is stored at the path.
    #[error("nothing at {path} in document {doc}; write a value there first or check the path")]
    NotFound {
        /// The document.
        doc: DocumentId,
        /// The path.
        path: String,
    },
    /// The value at a path has a different type than the operation needs.
    #[error("wrong type at {path} in document {doc}: expected {expected}, found {found}")]
    WrongType {
        /// The document.
        doc: DocumentId,
        /// The path.
        path: String,
        /// What the operation needed.
        expected: &'static str,
        /// What is there.
        found: String,
    },
    /// A list index was past the end of the list.
    #[error(
        "index {index} is out of range at {path} in document {doc} (the list has {}; append with the index \"-\")",
        elements(.len)
    )]
    IndexOutOfRange {
        /// The document.
        doc: DocumentId,
        /// The path of the list.
        path: String,
        /// The index given.
        index: usize,
        /// The list length.
        len: usize,
    },
    /// A JSON value could not be stored (e.g. a number that is neither an integer nor finite).
    #[error("cannot store value at {path} in document {doc}: {reason}")]
    InvalidValue {
        /// The document.
        doc: DocumentId,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Serializing or deserializing a typed value failed.
    #[error("cannot convert the value at {path} in document {doc} to or from the requested type: {source}")]
    Serde {
        /// The document.
        doc: DocumentId,
        /// The path.
        path: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// `Durability::Replicated` asked of a store, which has no peers to wait for.
    #[error("a Replicated write to {doc} waits for another device of the site, which a Store alone cannot: write through the node (Node::put / Node::transact, the bindings' putReplicated, `outpost put --replicated` with `outpost serve` running), or use Durability::Durable")]
    ReplicatedNeedsNode {
        /// The document.
        doc: DocumentId,
    },
    /// The local role may not write this document's context.
    #[error("role {role} may not write document {doc}: the access policy does not grant it; write from a device whose role may, or change the policy")]
    NotPermitted {
        /// The role of this store.
        role: crate::Role,
        /// The document.
        doc: DocumentId,
    },
    /// The per-path write rules of the document's context do not grant the local role this
    /// path.
    #[error("role {role} may not write {path} in document {doc} ({rule}); that step belongs to another role: write it from a device of that role, or change the policy's path rules")]
    PathNotPermitted {
        /// The role of this store.
        role: crate::Role,
        /// The document.
        doc: DocumentId,
        /// The path refused.
        path: String,
        /// The rules that refuse it.
        rule: String,
    },
    /// A ticket was asked of a store without a ticket prefix.
    #[error("this store issues no ticket numbers: set a ticket prefix unique to this device (StoreOptions::ticket_prefix, NodeConfig::ticket_prefix, ticketPrefix in the bindings' config), e.g. \"K1\"")]
    NoTicketPrefix,
    /// Every number of a ticket series was issued.
    #[error(
        "ticket prefix {prefix} has issued its last number; give this device a new ticket prefix"
    )]
    TicketsExhausted {
        /// The prefix.
        prefix: String,
    },
    /// A file of the store's directory could not be created or read.
    #[error("cannot use {path} in the store's directory ({reason}); check that the directory is writable by this app")]
    StoreFiles {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// Stored bytes of a document could not be decoded.
    #[error("document {doc} is corrupt on disk ({reason}); it was moved aside (quarantine/{doc}@<time> in the store, for inspection) and is fetched again from peers on the next sync; until then it reads as unknown")]
    CorruptDocument {
        /// The document.
        doc: DocumentId,
        /// What failed to decode.
        reason: String,
    },
    /// Store metadata could not be decoded.
    #[error(
        "store metadata is corrupt ({0}); move the data directory aside and resync from peers"
    )]
    CorruptStore(String),
    /// Bytes given to import were not an Automerge document.
    #[error("cannot import into document {doc}: the bytes are not an Automerge document or change ({reason}); nothing was changed")]
    InvalidImport {
        /// The document.
        doc: DocumentId,
        /// Why.
        reason: String,
    },
    /// Automerge refused an operation.
    #[error("automerge error on document {doc}: {source}")]
    Automerge {
        /// The document.
        doc: DocumentId,
        /// The automerge error.
        #[source]
        source: Box<automerge::AutomergeError>,
    },
    /// The document was erased (fleet-wide, by the cloud, or here) and keeps a tombstone.
    #[error("document {doc} was erased and may not be written again; write to another document (e.g. another day's partition)")]
    Erased {
        /// The document.
        doc: DocumentId,
    },
    /// A feed waited on a store that was closed.
    #[error("the store was closed while a feed waited for changes; open the feed again on an open store")]
    FeedClosed,
    /// The storage engine failed (disk full, permissions, I/O error).
    #[error(
        "storage error: {0}; check that the data directory is writable and the disk is not full"
    )]
    Storage(#[from] crate::storage::StorageError),
    /// An encrypted store's key is missing or wrong (see `storage/sealed.rs`); nothing was
    /// written.
    #[error(transparent)]
    Key(#[from] crate::storage::KeyError),
    /// A change written as another identity (`Store::transact_as`) could not be signed with
    /// its key; nothing was stored.
    #[error(
        "a change to {doc} could not be signed as {author}: {source}; check that identity's key"
    )]
    SigningAs {
        /// The document.
        doc: crate::DocumentId,
        /// The identity written as.
        author: crate::PeerInfo,
        /// Why the key did not sign.
        #[source]
        source: crate::signing::SignatureError,
    },
    /// Another process (or another open store in this one) holds the data directory.
    #[error("the data directory {path} is in use: its storage is open in another process or by another store of this one (is outpost or outpost-cloud running on it?); stop it, then try again")]
    InUse {
        /// The data directory.
        path: String,
    },
    /// A storage engine name that is neither `sled` nor `redb`.
    #[error("unknown storage engine {name:?}; use sled or redb")]
    UnknownEngine {
        /// The name given.
        name: String,
    },
    /// An audit entry kind that does not exist (`outpost audit --kind`).
    #[error("unknown audit entry kind {name:?}; use one of {known}")]
    UnknownAuditKind {
        /// The name given.
        name: String,
        /// The kinds there are.
        known: String,
    },
    /// Moving a store to another engine failed or found a difference.
    #[error("migrating {path} failed: {reason}; the store is unchanged unless said otherwise, and running the migration again resumes it")]
    Migration {
        /// The data directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The durable truth behind the store (its mirror, e.g. the cloud's PostgreSQL) did not
    /// commit what the store wrote; it stays queued and peers are told nothing of it.
    #[error("the store's database did not commit {changes} changes: {reason}; check that the database is reachable (they are retried)")]
    Mirror {
        /// Changes waiting.
        changes: usize,
        /// Why the commit failed.
        reason: String,
    },
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn automerge(doc: &DocumentId, e: automerge::AutomergeError) -> Error {
        Error::Automerge {
            doc: doc.clone(),
            source: Box::new(e),
        }
    }
}

/// `1 element`, `2 elements`.
fn elements(len: &usize) -> String {
    if *len == 1 {
        "1 element".to_string()
    } else {
        format!("{len} elements")
    }
}
