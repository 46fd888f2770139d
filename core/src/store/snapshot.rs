//! Snapshot catch-up (issue 30): a peer that holds nothing of a document gets it as the
//! store holds it on disk — its compacted form (what `Automerge::save` writes) and the few
//! changes written since — instead of a fresh `save` made for each such peer.
//!
//! Automerge's own sync already answers a peer with empty heads with the whole document (a
//! V2 message of one document chunk), but it saves the document anew every time, which was
//! half of a raw catch-up. This builds the same message, field for field as
//! `SyncDoc::generate_sync_message` of Automerge 0.12 does in that case, with the stored
//! bytes as its changes. To the receiver (ours or any Automerge peer) it is the message it
//! always got: a document chunk, possibly followed by change chunks, that it loads with
//! `load_incremental`. Nothing changes on the wire, so older peers are served alike.
//!
//! Keep it in step with Automerge's `generate_sync_message` when upgrading (tests in
//! `core/tests/snapshot_catchup.rs` and the simulation drive it).

use automerge::sync::{
    BloomFilter, Capability, Have, Message, MessageFlags, MessageVersion, State,
};
use automerge::{Automerge, ChangeHash};

/// Whether Automerge would answer this peer with the whole document now: it told us it holds
/// nothing of it (empty heads, with its `have` and `need`), takes V2 messages, takes changes,
/// and no sync reset or repeat of an unanswered message is due. The other cases are left to
/// Automerge.
pub(super) fn wants_whole_document(doc: &Automerge, state: &State) -> bool {
    let our_heads = doc.get_heads();
    if our_heads.is_empty()
        || state.their_heads.as_deref() != Some(&[])
        || state.their_need.is_none()
        || state.peer_read_only
        || state.needs_reset
        || !state
            .their_capabilities
            .as_ref()
            .is_some_and(|c| c.contains(&Capability::MessageV2))
    {
        return false;
    }
    // A `have` naming changes we lack asks for a reset: Automerge's answer.
    let Some(their_have) = state.their_have.as_ref() else {
        return false;
    };
    if let Some(first) = their_have.first() {
        if !first
            .last_sync
            .iter()
            .all(|h| doc.get_change_meta_by_hash(h).is_some())
        {
            return false;
        }
    }
    // Sent already and not answered yet: Automerge sends nothing.
    !(state.last_sent_heads == our_heads && state.have_responded && state.in_flight)
}

/// The message Automerge would send when [`wants_whole_document`] holds, with `stored` (the
/// document's chunks as stored, which load to exactly `doc`) as its changes.
pub(super) fn whole_document_message(
    doc: &Automerge,
    state: &mut State,
    stored: Vec<u8>,
) -> Message {
    let our_heads = doc.get_heads();
    let all: Vec<ChangeHash> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| m.hash)
        .collect();
    let since_shared: Vec<ChangeHash> = if state.shared_heads.is_empty() {
        all.clone()
    } else {
        doc.get_changes_meta(&state.shared_heads)
            .into_iter()
            .map(|m| m.hash)
            .collect()
    };
    let have = vec![Have {
        last_sync: state.shared_heads.clone(),
        bloom: BloomFilter::from_hashes(since_shared.iter()),
    }];
    state.have_responded = true;
    state.last_sent_heads.clone_from(&our_heads);
    state.sent_hashes.extend(all);
    let mut flags = MessageFlags::new();
    flags.set(MessageFlags::SUPPORTS_SYNC_RESET);
    if state.read_only {
        flags.set(MessageFlags::READ_ONLY);
    }
    state.in_flight = true;
    Message {
        heads: our_heads,
        // Their heads are empty: nothing of theirs is missing here.
        need: Vec::new(),
        have,
        changes: stored.into(),
        flags: Some(flags),
        version: MessageVersion::V2,
    }
}
