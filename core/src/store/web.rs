//! Sync with web clients (automerge-repo over WebSocket, `outpost-ws`): the store's side of
//! one client's exchange on one document. A web client is not a device: it holds no
//! certificate, so its changes are judged by the role of its token, and this device vouches
//! for what it accepts with its own signature (see `core/docs/design.md`, "Web clients").

use std::collections::HashMap;

use automerge::sync;
use automerge::ActorId;

use super::{Origin, Received, Store, StoredSignature};
use crate::signing::signed_bytes;
use crate::{DocumentId, PeerId, Result, Role};

/// The Automerge sync state of one web client for one document. Kept in memory for the
/// client's connection: a client that reconnects starts from its heads, which automerge-repo
/// sends first, so nothing is sent twice that it already holds.
#[derive(Debug, Default)]
pub struct WebSyncState(sync::State);

impl WebSyncState {
    /// A fresh state (a new connection).
    pub fn new() -> Self {
        WebSyncState(sync::State::new())
    }
}

/// Who writes through a web connection.
#[derive(Clone, Debug)]
pub struct WebWriter {
    /// The connection, as a peer id for logs and change notifications (`web-<name>`).
    pub peer: PeerId,
    /// The role of the client's token.
    pub role: Role,
}

/// What [`Store::web_receive`] did with a client's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebReceived {
    /// The message was applied; this many changes were new and are stored.
    Applied(usize),
    /// The message was refused, nothing stored: the reason, for the client and the logs.
    Refused(String),
    /// The bytes are not an Automerge sync message.
    Malformed(String),
}

impl Store {
    /// The next sync message for a web client on `doc`, encoded, if there is one to send.
    /// The client must be allowed to read the document (checked by the caller).
    pub fn web_sync_message(
        &self,
        doc: &DocumentId,
        state: &mut WebSyncState,
    ) -> Result<Option<Vec<u8>>> {
        let (msg, _signatures) = self.generate_sync(doc, &mut state.0)?;
        Ok(msg.map(sync::Message::encode))
    }

    /// Applies a web client's sync message on `doc`. A message that carries changes is
    /// accepted only if the client's role and this device's role may both write the
    /// document's context, no change claims an outpost device's actor, and, in a context
    /// with per-path rules, every operation is allowed at its path for both roles (judged
    /// against the document held here, as for a device's changes). Accepted changes are
    /// signed by this device (the newest change of each actor, as for an import) so peers
    /// that require signatures take them, stored, and announced as [`Origin::Import`] so
    /// the site's peers get them. A refused message stores nothing.
    pub fn web_receive(
        &self,
        doc: &DocumentId,
        state: &mut WebSyncState,
        bytes: &[u8],
        writer: &WebWriter,
    ) -> Result<WebReceived> {
        let msg = match sync::Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => return Ok(WebReceived::Malformed(e.to_string())),
        };
        let policy = &self.inner.policy;
        let context = doc.context();
        let device_role = self.inner.identity.as_ref().map(|me| me.role.clone());
        if !msg.changes.is_empty() {
            if !policy.may_write(&writer.role, context) {
                return Ok(WebReceived::Refused(format!(
                    "role {} may not write {doc}",
                    writer.role
                )));
            }
            if let Some(role) = &device_role {
                if !policy.may_write(role, context) {
                    return Ok(WebReceived::Refused(format!(
                        "this device (role {role}) may not vouch for writes to {doc}"
                    )));
                }
            }
            if self.is_erased(doc) {
                return Ok(WebReceived::Refused(format!("{doc} was erased")));
            }
        }
        let written = policy.has_path_rules(context);
        let signer = self.inner.signer.clone();
        let verify = |new: &[super::NewChange]| -> std::result::Result<_, String> {
            let mut newest: HashMap<&ActorId, (u64, automerge::ChangeHash)> = HashMap::new();
            for c in new {
                if crate::parse_actor(&c.actor).is_some() {
                    return Err(format!(
                        "a web client may not write as an outpost device (actor {})",
                        c.actor
                    ));
                }
                if written {
                    let paths = match &c.written {
                        Some(Ok(w)) => w,
                        Some(Err(e)) => return Err(format!("change by {}: {e}", writer.peer)),
                        None => return Err("the change's paths were not decoded".to_string()),
                    };
                    let roles = std::iter::once(&writer.role).chain(device_role.as_ref());
                    for role in roles {
                        for (path, replaces) in paths {
                            if !policy.may_write_path(role, context, path, *replaces) {
                                return Err(format!(
                                    "role {role} may not {} {path} in {doc}: {}",
                                    if *replaces { "replace" } else { "write" },
                                    policy.path_refusal(role, context, path)
                                ));
                            }
                        }
                    }
                }
                let e = newest.entry(&c.actor).or_insert((c.seq, c.hash));
                if c.seq >= e.0 {
                    *e = (c.seq, c.hash);
                }
            }
            let Some(signer) = &signer else {
                return Ok(Vec::new());
            };
            let mut records = Vec::new();
            for (actor, (seq, hash)) in newest {
                let signature = signer
                    .sign(&signed_bytes(doc, &hash))
                    .map_err(|e| format!("this device could not vouch for the change: {e}"))?;
                records.push((
                    actor.clone(),
                    seq,
                    StoredSignature {
                        hash,
                        key: signer.key_id(),
                        signature,
                    },
                ));
            }
            Ok(records)
        };
        let received = self.receive_sync_as(
            doc,
            &mut state.0,
            msg,
            &writer.peer,
            Origin::Import,
            written.then_some(policy),
            &verify,
            // A client's change whose dependencies are missing is not queued: nothing
            // vouches for it yet.
            &|_, _| false,
        )?;
        Ok(match received {
            Received::Applied(n) => WebReceived::Applied(n),
            Received::Refused(reason) => {
                tracing::warn!(%doc, client = %writer.peer, role = %writer.role, %reason, "refused a web client's change");
                WebReceived::Refused(reason)
            }
        })
    }

    /// Whether `role` may read `doc`'s context under the store's policy.
    pub fn policy_may_read(&self, role: &Role, doc: &DocumentId) -> bool {
        self.inner.policy.may_read(role, doc.context())
    }

    /// The store's policy.
    pub fn policy(&self) -> &crate::Policy {
        &self.inner.policy
    }
}
