//! Applying a received Automerge sync message in time proportional to the message.
//!
//! `SyncDoc::receive_sync_message` of Automerge 0.12 trims `sent_hashes` with
//! `ChangeGraph::remove_ancestors`, which visits *every* ancestor of the peer's heads, even
//! when nothing was sent: each received message cost a walk over the whole history (57% of
//! the live-sync instructions into a 10,000-order document, callgrind). This is the same
//! function (`receive_sync_message_inner`, line for line) with that trim answered by the
//! change graph's clock index instead: the changes the peer's heads do not cover are found
//! per actor from a cached clock, so the cost is that of the changes the peer lacks.
//!
//! Keep it in step with Automerge's when upgrading (tests in `core/tests/simulation.rs` and
//! `core/tests/engine_basic.rs` drive it through every sync exchange).

use std::collections::{HashMap, HashSet};

use automerge::sync::{Capability, Message, MessageFlags, State};
use automerge::{Automerge, AutomergeError, ChangeHash, ReadDoc};

/// `Ok(Some(reason))`: the message's changes fail the checks of `super::screen` and nothing
/// of it was applied (the sync state is untouched too).
///
/// A snapshot catch-up into a document that held nothing (the message is a whole document,
/// then changes that apply on it) sets `snapshot` to the bytes the document now is, as
/// received: the store keeps them as they are instead of saving the document again.
///
/// `vouched` is set to the changes applied now whose author's signed change waits in the
/// queue and descends from them (`screen::Screened::vouched`).
pub(super) fn receive_sync_message(
    doc: &mut Automerge,
    state: &mut State,
    message: Message,
    may_queue: &super::screen::MayQueue<'_>,
    snapshot: &mut Option<Vec<u8>>,
    vouched: &mut HashMap<ChangeHash, (ChangeHash, u64)>,
) -> Result<Option<String>, AutomergeError> {
    // Checked before Automerge sees them (it panics on some, and queues others unchecked).
    let screened = if message.changes.is_empty() || state.read_only {
        None
    } else {
        match super::screen::screen(doc, &message.changes, may_queue) {
            Ok(s) => Some(s),
            Err(reason) => return Ok(Some(reason)),
        }
    };
    state.in_flight = false;
    let before_heads = doc.get_heads();
    let Message {
        heads: message_heads,
        changes: message_changes,
        need: message_need,
        have: message_have,
        flags: message_flags,
        ..
    } = message;

    if let Some(flags) = message_flags {
        // A peer that sends flags supports V2 messages (flags came with V2).
        let mut caps = vec![Capability::MessageV2];
        if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
            caps.push(Capability::SyncReset);
        }
        state.their_capabilities = Some(caps);
        if flags.contains(MessageFlags::SYNC_RESET) {
            state.sent_hashes.clear();
        }
        state.peer_read_only = flags.contains(MessageFlags::READ_ONLY);
    }

    let changes_is_empty = message_changes.is_empty();
    if let Some(screened) = screened {
        if screened.dropped > 0 {
            tracing::debug!(
                dropped = screened.dropped,
                "left out received changes whose dependencies are missing"
            );
        }
        let empty = before_heads.is_empty() && doc.get_missing_deps(&[]).is_empty();
        match screened.document {
            Some((loaded, document_len)) if empty => {
                // The document chunk was loaded (and so checked) by the screen: take it as
                // it is, then the changes after it, instead of loading it a second time.
                let actor = doc.get_actor().clone();
                *doc = loaded.with_actor(actor);
                if screened.bytes.len() > document_len {
                    doc.load_incremental(&screened.bytes[document_len..])?;
                }
                *snapshot = Some(screened.bytes);
            }
            _ => {
                doc.load_incremental(&screened.bytes)?;
            }
        }
        *vouched = screened.vouched;
        state.shared_heads = advance_heads(&before_heads, &doc.get_heads(), &state.shared_heads);
    }

    let known_heads: Vec<ChangeHash> = message_heads
        .iter()
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .copied()
        .collect();

    // Trim the sent hashes to those the peer has not seen: the changes not covered by its
    // (known) heads. Nothing to trim is the usual case of a live exchange.
    if !state.sent_hashes.is_empty() && !known_heads.is_empty() {
        let unseen: HashSet<ChangeHash> = doc
            .get_changes_meta(&known_heads)
            .into_iter()
            .map(|c| c.hash)
            .collect();
        state.sent_hashes.retain(|h| unseen.contains(h));
    }

    if changes_is_empty && message_heads == before_heads {
        state.last_sent_heads.clone_from(&message_heads);
    }

    if known_heads.len() == message_heads.len() {
        state.shared_heads.clone_from(&message_heads);
        // A peer that lost all its data: start a full resync.
        if message_heads.is_empty() {
            state.last_sent_heads = Vec::new();
            state.sent_hashes = Default::default();
        }
    } else {
        let mut shared: Vec<ChangeHash> = state
            .shared_heads
            .iter()
            .chain(&known_heads)
            .copied()
            .collect();
        shared.sort();
        shared.dedup();
        state.shared_heads = shared;
    }

    state.their_have = Some(message_have);
    state.their_heads = Some(message_heads);
    state.their_need = Some(message_need);
    Ok(None)
}

/// Automerge's `advance_heads`: our new heads, plus the old shared heads that are still heads.
fn advance_heads(
    old_heads: &[ChangeHash],
    new_heads: &[ChangeHash],
    old_shared: &[ChangeHash],
) -> Vec<ChangeHash> {
    let old: HashSet<&ChangeHash> = old_heads.iter().collect();
    let new: HashSet<&ChangeHash> = new_heads.iter().collect();
    let mut advanced: Vec<ChangeHash> = new_heads
        .iter()
        .filter(|h| !old.contains(h))
        .chain(old_shared.iter().filter(|h| new.contains(h)))
        .copied()
        .collect();
    advanced.sort();
    advanced.dedup();
    advanced
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    fn write(doc: &mut Automerge, key: &str, n: i64) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, n).expect("put into a fresh map");
        tx.commit();
    }

    /// A syncs with B; B takes every message twice, through Automerge's function and through
    /// ours, on two copies of itself: documents and sync states must stay identical.
    fn lockstep(a: &mut Automerge, b: &mut Automerge) {
        let (mut sa, mut sb) = (State::new(), State::new());
        let mut b2 = b.clone();
        let mut sb2 = State::new();
        for _ in 0..50 {
            let mut moved = false;
            if let Some(m) = a.generate_sync_message(&mut sa) {
                b.receive_sync_message(&mut sb, m.clone())
                    .expect("automerge applies a valid message");
                receive_sync_message(
                    &mut b2,
                    &mut sb2,
                    m,
                    &|_, _| true,
                    &mut None,
                    &mut HashMap::new(),
                )
                .expect("we apply it too");
                assert_eq!(sb, sb2);
                assert_eq!(b.get_heads(), b2.get_heads());
                moved = true;
            }
            let m = b.generate_sync_message(&mut sb);
            let m2 = b2.generate_sync_message(&mut sb2);
            assert_eq!(
                m.as_ref().map(|m| m.clone().encode()),
                m2.map(|m| m.encode())
            );
            if let Some(m) = m {
                a.receive_sync_message(&mut sa, m).expect("a valid message");
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("sync did not finish");
    }

    #[test]
    fn same_states_and_messages_as_automerge() {
        let mut a = Automerge::new();
        let mut b = Automerge::new();
        for i in 0..30 {
            write(&mut a, &format!("a{i}"), i);
        }
        lockstep(&mut a, &mut b);
        // Concurrent changes on both sides, then live changes one at a time.
        for i in 0..10 {
            write(&mut a, &format!("a{i}"), i + 100);
            write(&mut b, &format!("b{i}"), i);
        }
        lockstep(&mut a, &mut b);
        for i in 0..5 {
            write(&mut a, "live", i);
            lockstep(&mut a, &mut b);
        }
        assert_eq!(a.get_heads(), b.get_heads());
    }
}
