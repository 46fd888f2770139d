//! The genesis change of a document: its containers, made the same way by every device.
//!
//! A put at a key the receiver holds is a replacement (`store/paths.rs`), which a kiosk may
//! not make. Without this, a kiosk that took the first order of a day offline created its
//! own `/orders` map while the POS created another: two concurrent make-map operations at
//! one key, and the kiosk's counted as a replacement of the POS's, so every order it took
//! offline that day was refused. Here, the first local write to a document is preceded by
//! one change per container the policy's path rules declare (`/orders`), each computed
//! byte for byte from the document's name and the container's path alone: an actor derived
//! from both that also spells the path, seq 1, time 0, no message, one make-map (deps: the
//! parent container's genesis, for a nested one). Equal bytes, equal hash: Automerge holds
//! it once, and `/orders` is one object everywhere, so an order written into it offline is
//! a creation.
//!
//! Receivers accept such a change without a signature or path check when it is the one
//! they compute themselves for the path its actor names, and it replaces nothing in their
//! copy (a document created before genesis changes existed keeps its own containers). The
//! check does not depend on the receiver's policy: a cloud whose policy declares other
//! containers (or none) still takes the devices' days. Any other change of a genesis actor
//! is refused as a forgery.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjType};
use sha2::Digest;

use crate::{DocumentId, Policy};

/// The start of every genesis actor. Never `outpost:`, so `crate::parse_actor` never reads
/// a device in it; and it sorts before `outpost:`, so where a genesis container meets a
/// device's map made at the same key at op 1 (a document from before genesis), the
/// device's map is the one Automerge shows.
const PREFIX: &[u8] = b"genesis:";

/// Bytes of the hash in an actor, between the prefix and the path.
const HASH_BYTES: usize = 16;

/// Whether `actor` is a genesis actor (of any document and container).
pub(crate) fn is_actor(actor: &ActorId) -> bool {
    actor.to_bytes().starts_with(PREFIX)
}

/// The genesis actor of container `path` of `doc`: the prefix, 16 bytes of a hash of the
/// document's name and the path, then the path itself (its keys joined by `/`), so that a
/// receiver knows which container a genesis claims to make whatever its own policy says.
fn actor(doc: &DocumentId, path: &[String]) -> ActorId {
    let joined = path.join("/");
    let mut h = sha2::Sha256::new();
    h.update(b"outpost genesis v2\0");
    h.update(doc.to_string().as_bytes());
    h.update(b"\0");
    h.update(joined.as_bytes());
    let digest = h.finalize();
    let mut bytes = PREFIX.to_vec();
    bytes.extend_from_slice(&digest[..HASH_BYTES]);
    bytes.extend_from_slice(joined.as_bytes());
    ActorId::from(bytes)
}

/// The container path a genesis actor names, if it is one.
fn path_of(actor: &ActorId) -> Option<Vec<String>> {
    let bytes = actor.to_bytes();
    let rest = bytes.strip_prefix(PREFIX)?.get(HASH_BYTES..)?;
    let joined = std::str::from_utf8(rest).ok()?;
    if joined.is_empty() {
        return None;
    }
    Some(joined.split('/').map(str::to_string).collect())
}

/// The genesis changes of container `path` of `doc` and of its parents, parents first:
/// each makes one map in its parent's (the root for a top-level one), depends on the
/// parent's genesis only, and has time 0 and no message.
fn chain(doc: &DocumentId, path: &[String]) -> Option<Vec<Change>> {
    let mut am = Automerge::new();
    let mut parent = automerge::ROOT;
    let mut out = Vec::with_capacity(path.len());
    for end in 1..=path.len() {
        am.set_actor(actor(doc, &path[..end]));
        let mut tx = am.transaction();
        let id = tx
            .put_object(&parent, path[end - 1].as_str(), ObjType::Map)
            .ok()?;
        tx.commit_with(CommitOptions::default().with_time(0));
        out.push(am.get_last_local_change()?.clone());
        parent = id;
    }
    Some(out)
}

/// The genesis changes of `doc` under `policy`, parents before children: one per container
/// its context declares (none without path rules, or with rules only at the root).
pub(crate) fn changes(policy: &Policy, doc: &DocumentId) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for path in policy.containers(doc.context()) {
        for c in chain(doc, &path).unwrap_or_default() {
            if !out.iter().any(|o| o.hash() == c.hash()) {
                out.push(c);
            }
        }
    }
    out
}

/// Whether the change `hash` of `actor` is the genesis of the container that actor names
/// in `doc`: the change every device computes for it, whatever its policy.
pub(crate) fn is_genesis(doc: &DocumentId, actor: &ActorId, hash: ChangeHash) -> bool {
    path_of(actor)
        .and_then(|path| chain(doc, &path))
        .and_then(|c| c.last().map(Change::hash))
        == Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ReadDoc;

    fn day() -> DocumentId {
        "orders/2026-12-07".parse().expect("a valid document id")
    }

    #[test]
    fn every_device_computes_the_same_bytes() {
        let p = Policy::default();
        let a = changes(&p, &day());
        let b = changes(&p, &day());
        assert_eq!(a.len(), 1, "orders declares /orders");
        assert_eq!(a[0].raw_bytes(), b[0].raw_bytes());
        let a = &a[0];
        assert_eq!((a.seq(), a.start_op().get(), a.timestamp()), (1, 1, 0));
        assert!(a.deps().is_empty() && a.message().is_none());
        assert!(crate::parse_actor(a.actor_id()).is_none());
        assert!(is_actor(a.actor_id()));
        assert!(is_genesis(&day(), a.actor_id(), a.hash()));
        let other: DocumentId = "orders/2026-12-08".parse().expect("valid");
        assert!(
            !is_genesis(&other, a.actor_id(), a.hash()),
            "one genesis per document"
        );
        let mut am = Automerge::new();
        am.apply_changes([a.clone()]).expect("a valid change");
        assert!(am
            .get(automerge::ROOT, "orders")
            .expect("readable")
            .is_some());
    }

    #[test]
    fn a_receiver_checks_a_genesis_whatever_its_own_policy() {
        // A cloud whose policy has no path rules for `orders` makes no genesis itself, but
        // still recognises the devices' one; and a nested container's genesis depends on
        // its parent's.
        let nested = vec!["a".to_string(), "b".to_string()];
        let c = chain(&day(), &nested).expect("a chain");
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].deps(), &[c[0].hash()][..]);
        assert!(is_genesis(&day(), c[1].actor_id(), c[1].hash()));
        assert!(!is_genesis(&day(), c[1].actor_id(), c[0].hash()));
        assert!(changes(&Policy::allow_all(), &day()).is_empty());
    }

    #[test]
    fn containers_of_the_default_policy() {
        let p = Policy::default();
        let c = |ctx: &str| p.containers(&ctx.parse().expect("a valid context"));
        assert_eq!(c("orders"), vec![vec!["orders".to_string()]]);
        assert_eq!(c("health"), vec![vec!["devices".to_string()]]);
        assert!(c("menu").is_empty());
    }
}
