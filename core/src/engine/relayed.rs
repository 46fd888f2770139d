//! Changes relayed by a peer whose role may not write their context: the cloud's erasure
//! list and head office's fleet documents (`prices`, `catalog`) must reach devices that link
//! only through another device (a kiosk or a kitchen behind the POS), and the POS may not
//! write either. Such changes are taken from any peer whose role may relay and read the
//! context, provided every change new to the receiver is authored by a role that may write
//! the context and its author's signature verifies: the author's signature vouches for the
//! change, not the relay's role. Without a signature nothing proves the claim, so a relayed
//! change of a context its relay may not write is never taken unsigned, whatever the
//! signature rule.

use automerge::sync;

use super::Engine;
use crate::store::{NewChange, SignatureRecord};
use crate::{parse_actor, DocumentId, PeerInfo, Role};

impl Engine {
    /// Whether changes to `doc` from `from` can only be relayed ones: its role may not write
    /// the context (they are then judged by [`Engine::check_relayed`] and
    /// [`Engine::check_relayed_signatures`]).
    pub(super) fn is_relayed(&self, from: &PeerInfo, doc: &DocumentId) -> bool {
        !self.config.policy.may_write(&from.role, doc.context())
    }

    /// Whether a peer of `role` may send us changes of `doc` (their fragments, their
    /// signatures; a read-only sync state otherwise tells it to send none): the writers of
    /// the context, and the roles that relay and may read it (they forward the writers'
    /// signed changes). Telling a relay "read-only" is what kept head office's prices from a
    /// kiosk behind the POS: the POS, which may not write `prices`, then never offered them.
    pub(super) fn may_send_changes(&self, role: &Role, doc: &DocumentId) -> bool {
        let policy = &self.config.policy;
        policy.may_write(role, doc.context())
            || (policy.may_relay(role) && policy.may_read(role, doc.context()))
    }

    /// Why the changes in `msg`, relayed by `from` whose role may not write `doc`'s context,
    /// must be refused, if they must: the relay's role may not relay, this engine checks no
    /// signatures (nothing could prove who wrote them), or a change new here is not authored
    /// by a device (or the cloud) whose role may write the context.
    pub(super) fn check_relayed(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        msg: &sync::Message,
    ) -> Option<String> {
        let context = doc.context();
        if !self.config.policy.may_relay(&from.role) {
            return Some(format!(
                "role {} may not write context {context} nor relay others' changes to it",
                from.role,
            ));
        }
        if self.config.verifier.is_none() {
            return Some(format!(
                "{doc} relayed by {from}, whose role may not write context {context}: this peer \
                 checks no signatures (EngineConfig::verifier), so it takes changes of \
                 {context} only from a role that may write it"
            ));
        }
        let authors = match self.new_change_authors(doc, msg) {
            Ok(a) => a,
            Err(e) => return Some(format!("undecodable change: {e}")),
        };
        authors.iter().find_map(|actor| match parse_actor(actor) {
            Some(claim) if claim.peer == from.peer => Some(format!(
                "role {} may not write context {context}",
                from.role
            )),
            Some(claim) if self.config.policy.may_write(&claim.role, context) => None,
            Some(claim) => Some(format!(
                "{doc} relayed by {from} holds a change by {} as role {}, which may not write \
                 context {context}",
                claim.peer, claim.role
            )),
            None => Some(format!(
                "{doc} relayed by {from} holds a change of actor {}, which is no device: only \
                 a role that may write context {context} writes it",
                actor.to_hex_string()
            )),
        })
    }

    /// After the signatures of relayed changes were checked (`verify_new`): every author must
    /// have a verified signature (whatever `EngineConfig::signatures` allows elsewhere),
    /// which `check_signature` already required to be by a certificate of the author's
    /// identity and role.
    pub(super) fn check_relayed_signatures(
        from: &PeerInfo,
        doc: &DocumentId,
        new: &[NewChange],
        records: &[SignatureRecord],
    ) -> Result<(), String> {
        match new
            .iter()
            .find(|c| !records.iter().any(|(actor, _, _)| actor == &c.actor))
        {
            None => Ok(()),
            Some(c) => Err(format!(
                "change {} of {doc}, relayed by {from} whose role may not write context {}, \
                 carries no signature by its author: such changes are taken only signed",
                c.hash,
                doc.context()
            )),
        }
    }
}
