//! The audit trail of sync: a bounded, persisted, queryable record of what this peer's links
//! did (see `core/docs/design.md`, "Audit trail").
//!
//! Each entry sits in the keyspace `<namespace>audit` under a 16-byte key: the time (ms,
//! big-endian), a random tag of this session and a counter, so keys are time-ordered and two
//! sessions never write the same key. The value is the entry as JSON (self-describing, so
//! fields can be added). The trail keeps at most [`AuditLimits::max_entries`] entries, none
//! older than [`AuditLimits::max_age_ms`]: each write past the bound drops the oldest in the
//! same atomic batch. Writes are not flushed on their own (they ride on the next durable
//! write or the store's periodic flush): an audit record costs a sync no `fsync`.
//!
//! Acknowledgements (a peer announced heads, which it does only once it holds them on disk)
//! come once per sync message; they are coalesced to one entry per (peer, document) per
//! minute, rewritten in place with the latest heads and a count.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::storage::{Batch, Keyspace};
use crate::{Error, Result, Timestamp};

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A link to a peer came up.
    LinkOpened,
    /// A link to a peer went down (`detail`: by whom and the close code).
    LinkClosed,
    /// A connection was refused by this side's rules before any sync (`detail`: the code).
    LinkRefused,
    /// We refused a peer's changes (`rule`, `authors`, `detail`: the reason).
    ChangesRefused,
    /// A peer refused our changes (`detail`: its reason).
    RefusedByPeer,
    /// A revocation signed by the fleet CA was learnt (`detail`: the revoked device).
    Revoked,
    /// This peer's certificate was renewed (`detail`: its new expiry).
    CertificateRenewed,
    /// A document was erased here.
    Erased,
    /// A backup of this store was taken (`detail`: what it holds).
    BackupTaken,
    /// A peer announced it holds a document up to `heads` on its disk.
    Acknowledged,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [AuditKind; 10] = [
        AuditKind::LinkOpened,
        AuditKind::LinkClosed,
        AuditKind::LinkRefused,
        AuditKind::ChangesRefused,
        AuditKind::RefusedByPeer,
        AuditKind::Revoked,
        AuditKind::CertificateRenewed,
        AuditKind::Erased,
        AuditKind::BackupTaken,
        AuditKind::Acknowledged,
    ];

    /// The name used in JSON and on the command line (`link_opened`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LinkOpened => "link_opened",
            AuditKind::LinkClosed => "link_closed",
            AuditKind::LinkRefused => "link_refused",
            AuditKind::ChangesRefused => "changes_refused",
            AuditKind::RefusedByPeer => "refused_by_peer",
            AuditKind::Revoked => "revoked",
            AuditKind::CertificateRenewed => "certificate_renewed",
            AuditKind::Erased => "erased",
            AuditKind::BackupTaken => "backup_taken",
            AuditKind::Acknowledged => "acknowledged",
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<AuditKind> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::UnknownAuditKind {
                name: s.to_string(),
                known: AuditKind::ALL.map(AuditKind::as_str).join(", "),
            })
    }
}

/// One record of the audit trail. Fields that do not apply to a kind are empty (and left out
/// of the JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, in ms since the Unix epoch (for a coalesced acknowledgement: the latest).
    pub at_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// The peer (its id), for link, refusal and acknowledgement entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The peer's site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The peer's certified role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// For links: whether this side dialed (`true`) or accepted (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialed_by_us: Option<bool>,
    /// For refusals: the rule that refused (`write`, `relay`, `path`, `signature`, `quota`,
    /// `erased`, `retention`, `decode`, `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For refusals: the devices the refused changes claim as authors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    /// For acknowledgements: the heads the peer holds (hex change hashes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<String>,
    /// For acknowledgements: how many were coalesced into this entry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u32,
    /// What happened, in words: a close code, a reason, a revoked device.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AuditEntry {
    /// An entry of `kind` at `at`, every other field empty.
    pub fn new(at: Timestamp, kind: AuditKind) -> AuditEntry {
        AuditEntry {
            at_ms: at.as_millis(),
            kind,
            peer: None,
            site: None,
            role: None,
            doc: None,
            dialed_by_us: None,
            rule: None,
            authors: Vec::new(),
            heads: Vec::new(),
            count: 0,
            detail: String::new(),
        }
    }

    /// With the peer's identity.
    pub fn peer(mut self, info: &crate::PeerInfo) -> AuditEntry {
        self.peer = Some(info.peer.to_string());
        self.site = Some(info.site.to_string());
        self.role = Some(info.role.to_string());
        self
    }

    /// With the peer's id only.
    pub fn peer_id(mut self, peer: &crate::PeerId) -> AuditEntry {
        self.peer = Some(peer.to_string());
        self
    }

    /// With the document.
    pub fn doc(mut self, doc: &crate::DocumentId) -> AuditEntry {
        self.doc = Some(doc.to_string());
        self
    }

    /// With the detail.
    pub fn detail(mut self, detail: impl Into<String>) -> AuditEntry {
        self.detail = detail.into();
        self
    }
}

impl std::fmt::Display for AuditEntry {
    /// One line: time, kind, then the fields that are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.at_ms, self.kind)?;
        if let Some(p) = &self.peer {
            write!(f, " peer={p}")?;
        }
        if let Some(s) = &self.site {
            write!(f, " site={s}")?;
        }
        if let Some(r) = &self.role {
            write!(f, " role={r}")?;
        }
        if let Some(d) = &self.doc {
            write!(f, " doc={d}")?;
        }
        if let Some(d) = self.dialed_by_us {
            write!(f, " dialed={}", if d { "us" } else { "peer" })?;
        }
        if let Some(r) = &self.rule {
            write!(f, " rule={r}")?;
        }
        if !self.authors.is_empty() {
            write!(f, " authors={}", self.authors.join(","))?;
        }
        if !self.heads.is_empty() {
            write!(f, " heads={}", self.heads.join(","))?;
        }
        if self.count > 1 {
            write!(f, " count={}", self.count)?;
        }
        if !self.detail.is_empty() {
            write!(f, " {}", self.detail)?;
        }
        Ok(())
    }
}

/// How much the trail keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLimits {
    /// At most this many entries (default 10,000): past it, the oldest are dropped (a 64th
    /// of the bound at once, so the trail holds between 63/64 of it and all of it).
    pub max_entries: usize,
    /// Entries older than this are dropped (default 90 days).
    pub max_age_ms: u64,
}

impl Default for AuditLimits {
    fn default() -> Self {
        AuditLimits {
            max_entries: 10_000,
            max_age_ms: 90 * 24 * 3600 * 1000,
        }
    }
}

/// Which entries [`AuditTrail::query`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// From this time (ms, included).
    pub since_ms: Option<u64>,
    /// Until this time (ms, excluded).
    pub until_ms: Option<u64>,
    /// Of these kinds (empty: every kind).
    pub kinds: Vec<AuditKind>,
    /// About this peer (its id).
    pub peer: Option<String>,
    /// About this document.
    pub doc: Option<String>,
    /// At most this many, the newest (0: no limit).
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `e` matches (time aside, which the scan bounds).
    fn matches(&self, e: &AuditEntry) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self
                .peer
                .as_ref()
                .is_none_or(|p| e.peer.as_deref() == Some(p.as_str()))
            && self
                .doc
                .as_ref()
                .is_none_or(|d| e.doc.as_deref() == Some(d.as_str()))
    }
}

const KEY_LEN: usize = 16;

/// The coalesced acknowledgement of a (peer, document) in the current minute.
struct LastAck {
    minute: u64,
    key: [u8; KEY_LEN],
    entry: AuditEntry,
}

/// Acknowledgements remembered for coalescing; past this, the map starts over (the cost is
/// one extra entry per pair).
const MAX_COALESCED: usize = 4_096;

struct State {
    limits: AuditLimits,
    counter: u32,
    /// Entries in the keyspace (read at open, kept since).
    count: usize,
    /// The time of the oldest entry, if any.
    oldest_ms: Option<u64>,
    acks: HashMap<(String, String), LastAck>,
}

/// The audit trail of a store; see the [module documentation](self). Thread-safe.
pub struct AuditTrail {
    ks: Keyspace,
    tag: u32,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("keyspace", &self.ks.name())
            .finish()
    }
}

fn time_key(ms: u64) -> [u8; 8] {
    ms.to_be_bytes()
}

fn key_ms(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

impl AuditTrail {
    /// The trail kept in `ks`, with default limits.
    pub(crate) fn open(ks: Keyspace) -> Result<AuditTrail> {
        let count = ks.len()?;
        let oldest_ms = match ks.iter().next() {
            Some(kv) => key_ms(&kv?.0),
            None => None,
        };
        Ok(AuditTrail {
            ks,
            tag: rand::random(),
            state: Mutex::new(State {
                limits: AuditLimits::default(),
                counter: 0,
                count,
                oldest_ms,
                acks: HashMap::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a counter and a cache of what is on disk: still usable after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> AuditLimits {
        self.state().limits
    }

    /// Sets the limits; the next write applies them.
    pub fn set_limits(&self, limits: AuditLimits) {
        self.state().limits = AuditLimits {
            max_entries: limits.max_entries.max(1),
            ..limits
        };
    }

    /// How many entries the trail holds.
    pub fn len(&self) -> usize {
        self.state().count
    }

    /// Whether the trail holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the entries as stored (keys and values), read from disk.
    pub fn stored_bytes(&self) -> Result<u64> {
        let mut n = 0u64;
        for kv in self.ks.iter() {
            let (k, v) = kv?;
            n += (k.len() + v.len()) as u64;
        }
        Ok(n)
    }

    fn next_key(&self, state: &mut State, ms: u64) -> [u8; KEY_LEN] {
        state.counter = state.counter.wrapping_add(1);
        let mut key = [0u8; KEY_LEN];
        key[..8].copy_from_slice(&time_key(ms));
        key[8..12].copy_from_slice(&self.tag.to_be_bytes());
        key[12..].copy_from_slice(&state.counter.to_be_bytes());
        key
    }

    /// Records `entry`, dropping the oldest entries past the limits in the same batch.
    pub fn record(&self, entry: AuditEntry) -> Result<()> {
        let mut state = self.state();
        let key = self.next_key(&mut state, entry.at_ms);
        self.write(&mut state, key, &entry, true)
    }

    /// Records that `peer` announced it holds `doc` up to `heads` (on its disk), coalesced
    /// to one entry per (peer, document) per minute. Heads equal to the last recorded ones
    /// are not recorded again.
    pub fn record_ack(
        &self,
        at: Timestamp,
        peer: &crate::PeerId,
        doc: &crate::DocumentId,
        heads: &[crate::ChangeHash],
    ) -> Result<()> {
        let heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
        let minute = at.as_millis() / 60_000;
        let id = (peer.to_string(), doc.to_string());
        let mut state = self.state();
        if let Some(last) = state.acks.get(&id) {
            if last.entry.heads == heads {
                return Ok(());
            }
            if last.minute == minute {
                let key = last.key;
                let mut entry = last.entry.clone();
                entry.at_ms = entry.at_ms.max(at.as_millis());
                entry.heads = heads;
                entry.count = entry.count.saturating_add(1);
                self.write(&mut state, key, &entry, false)?;
                if let Some(last) = state.acks.get_mut(&id) {
                    last.entry = entry;
                }
                return Ok(());
            }
        }
        let mut entry = AuditEntry::new(at, AuditKind::Acknowledged)
            .peer_id(peer)
            .doc(doc);
        entry.heads = heads;
        entry.count = 1;
        let key = self.next_key(&mut state, entry.at_ms);
        self.write(&mut state, key, &entry, true)?;
        if state.acks.len() >= MAX_COALESCED {
            state.acks.clear();
        }
        state.acks.insert(id, LastAck { minute, key, entry });
        Ok(())
    }

    fn write(
        &self,
        state: &mut State,
        key: [u8; KEY_LEN],
        entry: &AuditEntry,
        new: bool,
    ) -> Result<()> {
        let value = serde_json::to_vec(entry)
            .expect("an audit entry serializes: it holds strings, numbers and lists only");
        let mut batch = Batch::default();
        batch.insert(&self.ks, key, value);
        let mut dropped = 0usize;
        // The oldest entry left: the previous one, or (after a prune) the first one kept.
        let mut oldest = state.oldest_ms;
        let count = state.count + usize::from(new);
        let cutoff = entry.at_ms.saturating_sub(state.limits.max_age_ms);
        let too_old = oldest.is_some_and(|o| o < cutoff);
        if count > state.limits.max_entries || too_old {
            // Past the count bound, a 64th more goes too: the scan of the oldest keys is
            // then paid once per that many writes, not on every one.
            let over = match count.saturating_sub(state.limits.max_entries) {
                0 => 0,
                n => n + state.limits.max_entries / 64,
            };
            oldest = None;
            for kv in self.ks.iter().keys() {
                let k = kv?;
                if k.as_slice() == key.as_slice() {
                    // Never drop the entry being written (a clock set far back).
                    continue;
                }
                let ms = key_ms(&k).unwrap_or(0);
                if dropped < over || ms < cutoff {
                    batch.remove(&self.ks, &k);
                    dropped += 1;
                } else {
                    oldest = Some(ms);
                    break;
                }
            }
        }
        self.ks.apply_batch(batch)?;
        state.count = count - dropped;
        state.oldest_ms = Some(oldest.map_or(entry.at_ms, |o| o.min(entry.at_ms)));
        Ok(())
    }

    /// The entries that match `q`, oldest first (the newest `q.limit` if it is set).
    pub fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        use std::ops::Bound;
        let from = match q.since_ms {
            Some(ms) => Bound::Included(time_key(ms).to_vec()),
            None => Bound::Unbounded,
        };
        let to = match q.until_ms {
            Some(ms) => Bound::Excluded(time_key(ms).to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = std::collections::VecDeque::new();
        for kv in self.ks.range_bounds(from, to) {
            let (k, v) = kv?;
            let Ok(entry) = serde_json::from_slice::<AuditEntry>(&v) else {
                // An entry of a newer kind, or damaged: the rest of the trail still reads.
                tracing::debug!(key = ?k, "skipping an audit entry this version cannot read");
                continue;
            };
            if q.matches(&entry) {
                out.push_back(entry);
                if q.limit > 0 && out.len() > q.limit {
                    out.pop_front();
                }
            }
        }
        Ok(out.into())
    }
}

/// The rule a refusal's reason names, in one word (for filtering; the reason says it in
/// full).
pub(crate) fn refusal_rule(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("signature") || r.contains("unsigned") || r.contains("not signed") {
        "signature"
    } else if r.contains("erased") {
        "erased"
    } else if r.contains("retain") {
        "retention"
    } else if r.contains("limit") || r.contains("quota") {
        "quota"
    } else if r.contains("forward") || r.contains("relay") {
        "relay"
    } else if r.contains("path") {
        "path"
    } else if r.contains("undecodable") || r.contains("refused unread") {
        "decode"
    } else if r.contains("may not write") || r.contains("claims role") {
        "write"
    } else {
        "policy"
    }
}
