//! Ticket numbers people can read (`K1-042`), unique across devices that are offline from
//! each other, never issued twice, also after the data directory is restored from an old
//! backup. See `core/docs/design.md`, "Ticket numbers".
//!
//! - **Per device**: every device has its own prefix (`K1`, `P2`), so devices that never
//!   meet never collide.
//! - **A durable counter**: the highest number issued, in the store's `meta` tree
//!   (`ticket/<prefix>`), written before the change that uses it, in the same sled log: sled
//!   recovers a prefix of its log, so after a crash a stored change never carries a number
//!   the counter lacks (a number may be lost with its change: a gap, never a reuse).
//! - **A synced copy**: the same commit writes the ticket at `/_tickets/<prefix>` of the
//!   document, so every peer holding the document holds the highest number the device used
//!   in it. A store that receives a document (sync or import) whose record of its own prefix
//!   is higher than its counter raises the counter: a copy restored from an old backup gets
//!   its numbers back from the first peer it syncs with.
//! - **A generation** for what a restored copy cannot know before that sync: a store whose
//!   files are not the ones it last wrote (their identity, device and inode and change time,
//!   differs from what the store recorded: the directory was copied back from a backup) moves
//!   to the next generation, which is part of the number (`K1b-031`), so even unsynced it
//!   never repeats a number of the generation it was copied from.

use std::path::Path;
use std::sync::Mutex;

use automerge::ReadDoc;

use super::lock;
use crate::storage::Keyspace;
use crate::{DocumentId, Error, Pointer, Result};

/// The key below the document root where each prefix's last ticket is recorded.
pub(crate) const RECORD_KEY: &str = "_tickets";

const META_KEY: &str = "ticket/";
const IDENTITY_KEY: &str = "store/files";
/// Set when a copy is detected, cleared once the ticket series moved to a new generation: a
/// store opened without a prefix in between (a tool on the data directory) does not make the
/// restore forgotten.
const RESTORED_KEY: &str = "ticket-restored";
pub(crate) const MARKER_FILE: &str = "outpost-store";

/// Creates a file readable by its owner only (0600) from the start: the marker's change
/// time is part of its identity, so its mode is never changed afterwards.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A device's ticket prefix: 1 to 8 upper-case letters and digits starting with a letter
/// (`K1`, `POS2`). Unique per device within a site; the generation (lower case) follows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketPrefix(String);

impl TicketPrefix {
    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TicketPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TicketPrefix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let valid = !s.is_empty()
            && s.len() <= 8
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid {
            return Err(Error::InvalidName {
                kind: "ticket prefix",
                name: s.to_string(),
                reason: "use 1 to 8 upper-case letters and digits, starting with a letter, \
                         different on every device of the site"
                    .into(),
                example: "K1",
            });
        }
        Ok(TicketPrefix(s.to_string()))
    }
}

/// A ticket number: prefix, generation and number, shown as `K1-042` (generation 1) or
/// `K1b-042` (generation 2; the generation changes when a store is restored from a copy).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket {
    /// The issuing device's prefix.
    pub prefix: TicketPrefix,
    /// The generation of the issuing store, from 1.
    pub generation: u32,
    /// The number within the prefix and generation, from 1.
    pub number: u64,
}

/// `b`, `c`, ... `z`, `ba`, ...: generation 1 shows nothing.
fn generation_suffix(generation: u32) -> String {
    let mut g = generation.saturating_sub(1);
    let mut out = Vec::new();
    while g > 0 {
        out.push(b'a' + (g % 26) as u8);
        g /= 26;
    }
    out.reverse();
    String::from_utf8(out).expect("letters are UTF-8")
}

fn parse_generation(s: &str) -> Option<u32> {
    let mut g: u32 = 0;
    if s.starts_with('a') {
        return None;
    }
    for c in s.bytes() {
        if !c.is_ascii_lowercase() {
            return None;
        }
        g = g.checked_mul(26)?.checked_add(u32::from(c - b'a'))?;
    }
    g.checked_add(1)
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}-{:03}",
            self.prefix,
            generation_suffix(self.generation),
            self.number
        )
    }
}

impl std::str::FromStr for Ticket {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidName {
            kind: "ticket",
            name: s.to_string(),
            reason: "a ticket is a prefix, an optional generation and a number".into(),
            example: "K1-042",
        };
        let (head, number) = s.rsplit_once('-').ok_or_else(bad)?;
        let number: u64 = number.parse().map_err(|_| bad())?;
        let split = head
            .find(|c: char| c.is_ascii_lowercase())
            .unwrap_or(head.len());
        let prefix: TicketPrefix = head[..split].parse().map_err(|_| bad())?;
        let generation = parse_generation(&head[split..]).ok_or_else(bad)?;
        Ok(Ticket {
            prefix,
            generation,
            number,
        })
    }
}

/// Where a series stands: the generation and the last number issued in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    generation: u32,
    last: u64,
}

impl Position {
    fn encode(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.generation.to_be_bytes());
        b[4..].copy_from_slice(&self.last.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Position> {
        Some(Position {
            generation: u32::from_be_bytes(b.get(..4)?.try_into().ok()?),
            last: u64::from_be_bytes(b.get(4..12)?.try_into().ok()?),
        })
    }
}

/// The ticket series of a store (one prefix per device).
pub(crate) struct Tickets {
    prefix: TicketPrefix,
    meta: Keyspace,
    at: Mutex<Position>,
}

impl Tickets {
    /// Loads the series of `prefix`; `restored`: the store's files are a copy, so the series
    /// moves to the next generation (persisted before any number is issued).
    pub(crate) fn open(
        meta: &Keyspace,
        prefix: TicketPrefix,
        restored: bool,
        durable: &dyn Fn() -> Result<()>,
    ) -> Result<Self> {
        let restored = restored || meta.contains_key(RESTORED_KEY)?;
        let key = format!("{META_KEY}{prefix}");
        let stored = meta.get(key.as_bytes())?.and_then(|v| Position::decode(&v));
        let mut at = stored.unwrap_or(Position {
            generation: 1,
            last: 0,
        });
        if restored {
            // Also when the copy holds no number of this prefix: its earlier self may have
            // issued some after the copy was taken.
            at = Position {
                generation: at.generation.saturating_add(1),
                last: 0,
            };
            meta.insert(key.as_bytes(), at.encode())?;
            meta.remove(RESTORED_KEY)?;
            durable()?;
            tracing::warn!(%prefix, generation = at.generation,
                "this store's files are a copy (restored from a backup?): its tickets move to a new generation");
        }
        Ok(Tickets {
            prefix,
            meta: meta.clone(),
            at: Mutex::new(at),
        })
    }

    pub(crate) fn prefix(&self) -> &TicketPrefix {
        &self.prefix
    }

    /// Issues the next number, past `recorded` (the document's record of this prefix, which
    /// the caller holds locked): the counter is written (not flushed: the transaction's
    /// flush covers it) before the caller stores the change that carries the number.
    pub(crate) fn issue(&self, doc: &DocumentId, recorded: Option<Ticket>) -> Result<Ticket> {
        let mut at = lock(&self.at);
        let mut next = *at;
        if let Some(r) = recorded {
            next = next.max(Position {
                generation: r.generation,
                last: r.number,
            });
        }
        next.last = next
            .last
            .checked_add(1)
            .ok_or_else(|| Error::TicketsExhausted {
                prefix: self.prefix.to_string(),
            })?;
        self.meta.insert(
            format!("{META_KEY}{}", self.prefix).as_bytes(),
            next.encode(),
        )?;
        *at = next;
        tracing::debug!(%doc, generation = next.generation, number = next.last, "ticket issued");
        Ok(Ticket {
            prefix: self.prefix.clone(),
            generation: next.generation,
            number: next.last,
        })
    }

    /// Raises the counter to the record of this prefix in `doc` (a document received from a
    /// peer or imported), so that a restored copy never issues a number its earlier self
    /// used in it. Returns whether the counter moved.
    pub(crate) fn learn(&self, doc: &automerge::Automerge) -> Result<bool> {
        let path = Pointer::root()
            .child(RECORD_KEY)
            .child(self.prefix.as_str());
        let Some(r) = recorded(doc, &path, &self.prefix) else {
            return Ok(false);
        };
        let seen = Position {
            generation: r.generation,
            last: r.number,
        };
        let mut at = lock(&self.at);
        if seen <= *at {
            return Ok(false);
        }
        self.meta.insert(
            format!("{META_KEY}{}", self.prefix).as_bytes(),
            seen.encode(),
        )?;
        *at = seen;
        tracing::info!(prefix = %self.prefix, ticket = %r, "a peer knew a later ticket of ours: the counter moves past it");
        Ok(true)
    }

    /// The last ticket issued (`None` before the first).
    pub(crate) fn last(&self) -> Option<Ticket> {
        let at = *lock(&self.at);
        (at.last > 0).then(|| Ticket {
            prefix: self.prefix.clone(),
            generation: at.generation,
            number: at.last,
        })
    }
}

/// The highest ticket of `prefix` recorded at `path` of a document: every concurrent value
/// counts (two copies of one device may both have written it), the highest wins, also in
/// the losing copy of a `_tickets` map two devices created concurrently.
pub(crate) fn recorded<R: ReadDoc>(
    doc: &R,
    path: &Pointer,
    prefix: &TicketPrefix,
) -> Option<Ticket> {
    let (parent, last) = path.split_last()?;
    let mut objs = vec![automerge::ROOT];
    for t in parent.tokens() {
        objs = objs
            .iter()
            .flat_map(|o| doc.get_all(o, t.as_str()).unwrap_or_default())
            .filter_map(|(v, id)| {
                matches!(v, automerge::Value::Object(automerge::ObjType::Map)).then_some(id)
            })
            .collect();
    }
    objs.iter()
        .flat_map(|o| doc.get_all(o, last).unwrap_or_default())
        .filter_map(|(v, _)| match v {
            automerge::Value::Scalar(s) => match s.as_ref() {
                automerge::ScalarValue::Str(t) => t.parse::<Ticket>().ok(),
                _ => None,
            },
            _ => None,
        })
        .filter(|t| &t.prefix == prefix)
        .max_by_key(|t| (t.generation, t.number))
}

/// Whether the store's files are a copy of the ones it last wrote: the identity of a marker
/// file in its directory (device, inode, change time: a copy cannot keep them) differs from
/// the one recorded in `meta`. Records the current identity.
pub(crate) fn files_restored(
    dir: &Path,
    meta: &Keyspace,
    durable: &dyn Fn() -> Result<()>,
) -> Result<bool> {
    let marker = dir.join(MARKER_FILE);
    let existed = marker.exists();
    if !existed {
        write_private(
            &marker,
            b"outpost store: the identity of this file tells a copy\n",
        )
        .map_err(|e| Error::StoreFiles {
            path: marker.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let now = file_identity(&marker)?;
    let recorded = meta.get(IDENTITY_KEY)?;
    let restored = match &recorded {
        Some(r) => r.as_slice() != now.as_bytes(),
        // An earlier version's store, or a new one: nothing to compare yet.
        None => false,
    };
    if recorded.as_deref() != Some(now.as_bytes()) {
        if restored {
            meta.insert(RESTORED_KEY, &[1u8][..])?;
        }
        meta.insert(IDENTITY_KEY, now.as_bytes())?;
        durable()?;
    }
    Ok(restored)
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| Error::StoreFiles {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(format!(
        "{}:{}:{}.{}",
        m.dev(),
        m.ino(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Result<String> {
    let m = std::fs::metadata(path).map_err(|e| Error::StoreFiles {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let created = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{created}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_print_and_parse() {
        let p: TicketPrefix = "K1".parse().expect("valid");
        for (g, n, s) in [
            (1, 42, "K1-042"),
            (2, 7, "K1b-007"),
            (27, 1234, "K1ba-1234"),
        ] {
            let t = Ticket {
                prefix: p.clone(),
                generation: g,
                number: n,
            };
            assert_eq!(t.to_string(), s);
            assert_eq!(s.parse::<Ticket>().expect("parses"), t);
        }
        for bad in ["k1", "1K", "K-1", "", "TOOLONGXX"] {
            assert!(bad.parse::<TicketPrefix>().is_err(), "{bad}");
        }
        for bad in ["K1", "K1a-001", "K1-x", "-001"] {
            assert!(bad.parse::<Ticket>().is_err(), "{bad}");
        }
    }
}
