//! The genesis change of a document: its containers, made the same way by every device.
//!
//! A put at a key the receiver holds is a replacement (`store/paths.rs`), which a kiosk may
//! not make. Without this, a kiosk that took the first order of a day offline created its
//! own `/orders` map while the POS created another: two concurrent make-map operations at
//! one key, and the kiosk's counted as a replacement of the POS's, so every order it took
//! offline that day was refused. Here, the first local write to a document is preceded by
//! a change that every device computes byte for byte from the document's name and the
//! policy alone: a fixed actor derived from the name, seq 1, start op 1, time 0, no deps, no
//! message, and one make-map per container the policy's path rules declare. Equal bytes,
//! equal hash: Automerge holds it once, and `/orders` is one object everywhere, so an order
//! written into it offline is a creation.
//!
//! Receivers accept the change without a signature or path check only when its hash is the
//! one they compute themselves and their copy of the document was empty before it (a
//! document created before genesis changes existed keeps its own containers; a genesis
//! arriving for it would make a second `/orders` and is refused). Any other change of the
//! genesis actor is refused as a forgery.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjType};
use sha2::Digest;

use crate::{DocumentId, Policy};

/// The start of every genesis actor. Never `outpost:`, so `crate::parse_actor` never reads
/// a device in it; and it sorts before `outpost:`, so where a genesis container meets a
/// device's map made at the same key at op 1 (a document from before genesis), the
/// device's map is the one Automerge shows.
const PREFIX: &[u8] = b"genesis:";

/// The genesis actor of `doc`: the prefix and 16 bytes of a hash of the document's name.
pub(crate) fn actor(doc: &DocumentId) -> ActorId {
    let mut h = sha2::Sha256::new();
    h.update(b"outpost genesis v1\0");
    h.update(doc.to_string().as_bytes());
    let digest = h.finalize();
    let mut bytes = PREFIX.to_vec();
    bytes.extend_from_slice(&digest[..16]);
    ActorId::from(bytes)
}

/// The genesis change of `doc` under `policy`, `None` when its context declares no
/// containers (no path rules, or only rules at the root).
pub(crate) fn change(policy: &Policy, doc: &DocumentId) -> Option<Change> {
    let containers = policy.containers(doc.context());
    if containers.is_empty() {
        return None;
    }
    let mut am = Automerge::new().with_actor(actor(doc));
    let mut tx = am.transaction();
    let mut made: Vec<(Vec<String>, automerge::ObjId)> = Vec::new();
    for path in &containers {
        let (last, parent) = path.split_last()?;
        let obj = if parent.is_empty() {
            automerge::ROOT
        } else {
            // Parents come first (`Policy::containers`), so each parent was made above.
            made.iter().find(|(p, _)| p.as_slice() == parent)?.1.clone()
        };
        let id = tx.put_object(&obj, last.as_str(), ObjType::Map).ok()?;
        made.push((path.clone(), id));
    }
    tx.commit_with(CommitOptions::default().with_time(0));
    am.get_last_local_change()
}

/// The hash of `doc`'s genesis change under `policy`.
pub(crate) fn hash(policy: &Policy, doc: &DocumentId) -> Option<ChangeHash> {
    change(policy, doc).map(|c| c.hash())
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
        let a = change(&p, &day()).expect("orders declares /orders");
        let b = change(&p, &day()).expect("orders declares /orders");
        assert_eq!(a.raw_bytes(), b.raw_bytes());
        assert_eq!((a.seq(), a.start_op().get(), a.timestamp()), (1, 1, 0));
        assert!(a.deps().is_empty() && a.message().is_none());
        assert!(crate::parse_actor(a.actor_id()).is_none());
        let other = change(&p, &"orders/2026-12-08".parse().expect("valid")).expect("same");
        assert_ne!(a.hash(), other.hash(), "one genesis per document");
        let mut am = Automerge::new();
        am.apply_changes([a]).expect("a valid change");
        assert!(am
            .get(automerge::ROOT, "orders")
            .expect("readable")
            .is_some());
    }

    #[test]
    fn containers_of_the_default_policy() {
        let p = Policy::default();
        let c = |ctx: &str| p.containers(&ctx.parse().expect("a valid context"));
        assert_eq!(c("orders"), vec![vec!["orders".to_string()]]);
        assert_eq!(c("health"), vec![vec!["devices".to_string()]]);
        assert!(c("menu").is_empty());
        assert!(change(&Policy::allow_all(), &day()).is_none());
    }
}
