//! Sync with web clients (automerge-repo over WebSocket, `outpost-ws`): the store's side of
//! one client's exchange on one document. A web client is not a device: it holds no
//! certificate, so its changes are judged by the role of its token, and this device vouches
//! for what it accepts with its own signature (see `core/docs/design.md`, "Web clients").

use std::collections::HashMap;

use automerge::sync;
use automerge::ActorId;

use super::{Origin, Received, Store, StoredSignature};
use crate::vouch::{vouch_bytes, VouchClaim, MAX_CLAIM_PART};
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
    /// The client's name (its token's `name`), which this device's vouch records bind its
    /// changes to (`crate::vouch`), with this device's site and the token's role.
    pub name: String,
    /// The client's site (its token's): the site of the device that accepted it, or at a
    /// cloud the site whose documents it syncs (the cloud's own identity is fleet-wide).
    pub site: crate::SiteId,
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
    /// document's context, this device's role may vouch for the client's (the policy's
    /// `vouch`), no change claims an outpost device's actor, and, in a context with
    /// per-path rules, every operation is allowed at its path for the client's role (judged
    /// against the document held here, as for a device's changes, and as every receiver
    /// judges it). For the newest change of each client actor this device stores a vouch
    /// record naming the client (`crate::vouch`), which receivers check in place of an
    /// author's signature; the changes are stored and announced as [`Origin::Import`] so
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
        // Before anything is decoded: what the compressed parts inflate to, counted without
        // keeping it, as for a device's message (`EngineConfig::max_inflated_bytes`). A 1 MiB
        // message of deflated zeros would otherwise take a gigabyte to read.
        if let Err(reason) = crate::chunk::check_message_inflation(
            msg.changes.iter(),
            crate::engine::DEFAULT_MAX_INFLATED_BYTES,
        ) {
            tracing::warn!(%doc, client = %writer.peer, role = %writer.role, %reason, "refused a web client's change");
            return Ok(WebReceived::Refused(reason));
        }
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
                // Receivers refuse a vouch the policy does not allow (`Engine::check_vouch`):
                // refused here first, so that nothing is stored that no peer would take.
                if !policy.may_vouch(role, &writer.role) {
                    return Ok(WebReceived::Refused(format!(
                        "this device (role {role}) may not vouch for web clients of role {} \
                         (the policy's `vouch`)",
                        writer.role
                    )));
                }
            }
            if self.is_erased(doc) {
                return Ok(WebReceived::Refused(format!("{doc} was erased")));
            }
        }
        let written = policy.has_path_rules(context);
        let signer = self.inner.signer.clone();
        // `{device}` in a path pattern stands for the client's name (as receivers read it).
        let client_id: Option<PeerId> = writer.name.parse().ok();
        let client = self.inner.identity.as_ref().map(|_| VouchClaim {
            site: writer.site.clone(),
            name: writer.name.clone(),
            role: writer.role.clone(),
        });
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
                    // Judged by the client's role alone, as every receiver judges it (the
                    // vouch record names that role): a POS may accept a kitchen screen's
                    // bump that it may not write itself.
                    let role = &writer.role;
                    for (path, replaces) in paths {
                        if !policy.may_write_path_as(
                            role,
                            client_id.as_ref(),
                            context,
                            path,
                            *replaces,
                        ) {
                            return Err(format!(
                                "role {role} may not {} {path} in {doc}: {}",
                                if *replaces { "replace" } else { "write" },
                                policy.path_refusal(role, context, path)
                            ));
                        }
                    }
                }
                let e = newest.entry(&c.actor).or_insert((c.seq, c.hash));
                if c.seq >= e.0 {
                    *e = (c.seq, c.hash);
                }
            }
            let (Some(signer), Some(client)) = (&signer, &client) else {
                return Ok(Vec::new());
            };
            let mut records = Vec::new();
            for (actor, (seq, hash)) in newest {
                let signature = signer
                    .sign(&vouch_bytes(doc, &hash, client))
                    .map_err(|e| format!("this device could not vouch for the change: {e}"))?;
                let signature = client.seal(&signature).ok_or_else(|| {
                    format!(
                        "the client's name {:?} is too long to vouch for (at most {MAX_CLAIM_PART} bytes)",
                        client.name
                    )
                })?;
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
