//! The wire format between engines.
//!
//! Every message is one byte of wire version followed by a postcard-encoded [`WireMessage`].
//! Version 1 is the only version. A message longer than [`MAX_MESSAGE_BYTES`] is refused
//! before decoding. Automerge sync messages larger than [`FRAGMENT_BYTES`] travel as
//! [`WireMessage::SyncPart`]s that the receiver reassembles, up to [`MAX_SYNC_BYTES`].
//!
//! | message | lane | meaning |
//! |---|---|---|
//! | `Hello` | control | documents the sender offers to the receiver, with a digest of their heads |
//! | `Sync` | document | one Automerge sync message for a document |
//! | `SyncPart` | document | part `index` of `total` of a large Automerge sync message |
//! | `Ack` | control | the receiver processed this many payload bytes (flow control) |
//! | `Refused` | document | the receiver refused the sender's changes to a document, and why |
//! | `Error` | control | a protocol error (e.g. unsupported version); the link stays up |
//! | `HelloPart` | control | a page of a `Hello` over [`HELLO_PAGE_BYTES`]; the `Hello` ends the list |
//! | `Reconcile` | control | range digests of the documents both peers may read ([`Protocol::V2`]) |
//! | `Signatures` | document | signatures of the changes of the `Sync` that follows, and certificates of their signers the receiver may lack |
//! | `Revocations` | control | deny-list entries signed by the fleet CA, on connect and when new ([`Protocol::V3`]) |
//!
//! Which summary a link starts with depends on the [`Protocol`] the two peers negotiated
//! (the transport does it with ALPN): [`Protocol::V1`] peers list every document and its
//! digest in `Hello`, [`Protocol::V2`] peers reconcile ranges of documents, so that an idle
//! reconnect costs bytes proportional to what differs, not to the number of documents;
//! [`Protocol::V3`] peers also exchange revocations.

use serde::{Deserialize, Serialize};

use crate::DocumentId;

/// The wire version this engine speaks.
pub const WIRE_VERSION: u8 = 1;
/// The largest encoded message accepted.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Sync messages larger than this are split into parts.
pub const FRAGMENT_BYTES: usize = 256 * 1024;
/// The largest reassembled Automerge sync message accepted by default
/// (`EngineConfig::max_reassembly_bytes`).
pub const MAX_SYNC_BYTES: usize = 64 * 1024 * 1024;

/// Error code: the message's wire version is not supported.
pub const ERROR_UNSUPPORTED_VERSION: u16 = 1;
/// Error code: the message could not be decoded.
pub const ERROR_MALFORMED: u16 = 2;

/// What two engines speak on a link, negotiated by the transport before the first message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// The first protocol: `Hello` lists every document offered with its digest.
    V1,
    /// Adds `Reconcile`: range digests over the sorted names of the documents both peers may
    /// read, with recursion into the ranges that differ.
    V2,
    /// Adds `Revocations`: deny-list entries signed by the fleet CA, sent on connect and
    /// relayed (see `crate::revocation`).
    V3,
}

impl Protocol {
    /// The newest protocol this engine speaks.
    pub const CURRENT: Protocol = Protocol::V3;
    /// Every protocol this engine speaks, newest first.
    pub const ALL: [Protocol; 3] = [Protocol::V3, Protocol::V2, Protocol::V1];

    /// The ALPN protocol id that names this protocol on a TLS link.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::V1 => b"outpost/1",
            Protocol::V2 => b"outpost/2",
            Protocol::V3 => b"outpost/3",
        }
    }

    /// The protocol an ALPN id names; `None` (no ALPN negotiated) is the first protocol.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Option<Protocol> {
        match alpn {
            None => Some(Protocol::V1),
            Some(id) => Protocol::ALL.into_iter().find(|p| p.alpn() == id),
        }
    }
}

/// One range of document names in a [`WireMessage::Reconcile`]: names `n` with
/// `lower <= n < upper` (no `upper`: no end), in byte order of their text form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRange {
    /// The first name of the range (inclusive).
    pub lower: String,
    /// The end of the range (exclusive); `None` is past every name.
    pub upper: Option<String>,
    /// What the sender says of its documents in the range.
    pub summary: RangeSummary,
}

/// What a peer says of its documents in a [`NameRange`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeSummary {
    /// How many documents and the wrapping sum of a 128-bit hash of each (name, digest): the
    /// receiver answers `Equal`, or finer ranges, or its `Items`.
    Fingerprint {
        /// Documents in the range.
        count: u64,
        /// The sum of their item hashes.
        hash: u128,
    },
    /// Documents of the sender in the range with the digests of their heads: all of them when
    /// `reply` is set, which asks the receiver to answer with the items it found equal (the
    /// documents that differ, each side syncs one by one).
    Items {
        /// Names and digests, as `Hello` lists them.
        docs: Vec<(String, u64)>,
        /// Whether the receiver answers with its items.
        reply: bool,
    },
    /// The receiver's fingerprint of the range matched the sender's: every document in it is
    /// the same on both sides.
    Equal,
}

/// A document and a digest of its heads, as announced in `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDigest {
    /// The document.
    pub doc: DocumentId,
    /// A digest of the sender's heads of the document: the first 8 bytes of the SHA-256 of
    /// its sorted heads.
    pub digest: u64,
}

/// One message between two engines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMessage {
    /// The documents the sender offers, sent once when a link comes up.
    Hello {
        /// Documents and digests of their heads.
        #[serde(deserialize_with = "lenient_docs")]
        docs: Vec<DocDigest>,
    },
    /// An Automerge sync message.
    Sync {
        /// The document.
        doc: DocumentId,
        /// `automerge::sync::Message::encode` bytes.
        data: Vec<u8>,
    },
    /// A part of a large Automerge sync message.
    SyncPart {
        /// The document.
        doc: DocumentId,
        /// Which part, from 0.
        index: u32,
        /// How many parts.
        total: u32,
        /// The bytes of this part.
        data: Vec<u8>,
    },
    /// Flow control: payload bytes processed since the last ack.
    Ack {
        /// Bytes processed.
        bytes: u64,
    },
    /// The sender's changes to `doc` were refused and not applied.
    Refused {
        /// The document.
        doc: DocumentId,
        /// Why.
        reason: String,
    },
    /// A protocol error.
    Error {
        /// One of the `ERROR_*` codes.
        code: u16,
        /// A message for logs.
        message: String,
    },
    /// A page of a `Hello` too large for one message: more pages follow, and the `Hello`
    /// that ends the list. Added after the other variants, so a site small enough for one
    /// `Hello` speaks exactly as before.
    HelloPart {
        /// Documents and digests of their heads.
        #[serde(deserialize_with = "lenient_docs")]
        docs: Vec<DocDigest>,
    },
    /// Range digests of the documents both peers may read ([`Protocol::V2`]). The peer with
    /// the smaller id starts with one range over every name; each side answers what differs.
    Reconcile {
        /// The ranges, in any order.
        ranges: Vec<NameRange>,
    },
    /// Signatures of changes that the next sync message(s) of `doc` carry, and the
    /// certificates of their signers that the receiver may not know yet. Added last, so
    /// that the other variants encode as before (an old peer answers it with a malformed
    /// message error and the link stays up).
    Signatures {
        /// The document.
        doc: DocumentId,
        /// One signature per actor: that of its newest change in the message.
        signatures: Vec<ChangeSignature>,
        /// DER certificates of signers.
        certificates: Vec<Vec<u8>>,
    },
    /// Revocations signed by the fleet CA ([`Protocol::V3`]): all the sender keeps, on
    /// connect, and each new one as it is learnt.
    Revocations {
        /// The records.
        records: Vec<crate::revocation::SignedRevocation>,
    },
}

/// The signature of one change, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSignature {
    /// The change hash.
    pub change: [u8; 32],
    /// The key id (SHA-256 of the certificate DER) of the signer.
    pub key: [u8; 32],
    /// The signature over `outpost_core::signing::signed_bytes(doc, change)`.
    pub signature: Vec<u8>,
}

/// Reads a list of documents, skipping names this version does not accept (a newer peer may
/// name documents by rules we do not know yet): one unknown name must not drop the Hello.
fn lenient_docs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DocDigest>, D::Error> {
    let raw: Vec<(String, u64)> = Vec::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(name, digest)| name.parse().ok().map(|doc| DocDigest { doc, digest }))
        .collect())
}

/// The largest encoded `Hello` page a sender makes.
pub const HELLO_PAGE_BYTES: usize = 512 * 1024;

/// Why bytes could not be decoded as a wire message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// The message is longer than the maximum.
    #[error("message of {0} bytes exceeds the maximum of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// The sender speaks another wire version.
    #[error("unsupported wire version {0}; this peer speaks version {WIRE_VERSION}: upgrade the older peer")]
    UnsupportedVersion(u8),
    /// The body could not be decoded.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl WireMessage {
    /// Encodes with the version byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        // Serializing these plain types into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).expect("wire messages always serialize"));
        out
    }

    /// Decodes and validates bytes from a peer.
    pub fn decode(bytes: &[u8]) -> Result<WireMessage, WireError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
        if version != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))
    }

    /// The document the message belongs to, which selects its stream; `None` for control messages.
    pub fn doc(&self) -> Option<&DocumentId> {
        match self {
            WireMessage::Sync { doc, .. }
            | WireMessage::SyncPart { doc, .. }
            | WireMessage::Refused { doc, .. }
            | WireMessage::Signatures { doc, .. } => Some(doc),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let m = WireMessage::Sync {
            doc: "orders/2026-11-27".parse().expect("valid"),
            data: vec![1, 2, 3],
        };
        assert_eq!(WireMessage::decode(&m.encode()), Ok(m));
        assert_eq!(WireMessage::decode(&[]), Err(WireError::Empty));
        assert_eq!(
            WireMessage::decode(&[9, 0]),
            Err(WireError::UnsupportedVersion(9))
        );
        assert!(matches!(
            WireMessage::decode(&[1, 200, 200]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            WireMessage::decode(&vec![1; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge(_))
        ));
        // A document id that fails validation is a decode error, not a panic.
        let mut bad = WireMessage::Refused {
            doc: "menu".parse().expect("valid"),
            reason: String::new(),
        }
        .encode();
        let pos = bad
            .iter()
            .position(|b| *b == b'm')
            .expect("name is in the encoding");
        bad[pos] = b'M';
        assert!(matches!(
            WireMessage::decode(&bad),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn a_hello_skips_names_it_does_not_accept() {
        let docs = vec![
            DocDigest {
                doc: "menu".parse().expect("valid"),
                digest: 1,
            },
            DocDigest {
                doc: "stock".parse().expect("valid"),
                digest: 2,
            },
        ];
        let mut bytes = WireMessage::Hello { docs }.encode();
        // A newer peer's name this version refuses ("Menu": capitals).
        let pos = bytes
            .iter()
            .position(|b| *b == b'm')
            .expect("name is in the encoding");
        bytes[pos] = b'M';
        let WireMessage::Hello { docs } = WireMessage::decode(&bytes).expect("still decodes")
        else {
            panic!("a Hello");
        };
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].doc.to_string(), "stock");
    }
}
