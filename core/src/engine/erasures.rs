//! The erasure list on relayed paths: the `erasures` document is written only by the cloud,
//! but it must reach devices that link only through another device (a kitchen behind the
//! POS). Its changes are taken from any peer whose role may relay, provided every change new
//! to the receiver is authored by a cloud actor and its signature by a cloud certificate
//! verifies: the author's signature vouches for it, not the relay's role.

use automerge::sync;

use super::Engine;
use crate::store::{NewChange, SignatureRecord};
use crate::{parse_actor, DocumentId, PeerInfo, Role};

impl Engine {
    /// Whether changes to `doc` from `from` are the erasure list relayed by a peer that may
    /// not write it itself (they are then judged by [`Engine::check_relayed_erasures`] and
    /// [`Engine::check_relayed_erasure_signatures`]).
    pub(super) fn is_relayed_erasure_list(&self, from: &PeerInfo, doc: &DocumentId) -> bool {
        super::is_erasure_list(doc) && !self.config.policy.may_write(&from.role, doc.context())
    }

    /// Whether a peer of `role` may send us changes of `doc` (their fragments, their
    /// signatures; a read-only sync state otherwise tells it to send none): the writers of
    /// the context, and for the erasure list also the roles that relay the cloud's changes.
    pub(super) fn may_send_changes(&self, role: &Role, doc: &DocumentId) -> bool {
        let policy = &self.config.policy;
        policy.may_write(role, doc.context())
            || (super::is_erasure_list(doc) && policy.may_relay(role))
    }

    /// Why the erasure list's changes in `msg`, relayed by `from`, must be refused, if they
    /// must: the relay's role may not relay, this engine checks no signatures (nothing could
    /// prove the cloud wrote them), or a change new here is not authored by a cloud actor.
    pub(super) fn check_relayed_erasures(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        msg: &sync::Message,
    ) -> Option<String> {
        if !self.config.policy.may_relay(&from.role) {
            return Some(format!(
                "role {} may not write context {} nor relay the cloud's changes to it",
                from.role,
                doc.context()
            ));
        }
        if self.config.verifier.is_none() {
            return Some(format!(
                "{doc} relayed by {from}: this peer checks no signatures \
                 (EngineConfig::verifier), so it takes the cloud's erasure list only from the \
                 cloud"
            ));
        }
        let authors = match self.new_change_authors(doc, msg) {
            Ok(a) => a,
            Err(e) => return Some(format!("undecodable change: {e}")),
        };
        authors.iter().find_map(|actor| match parse_actor(actor) {
            Some(claim) if claim.role == Role::cloud() => None,
            _ => Some(format!(
                "{doc} relayed by {from} holds a change of actor {}, not the cloud's: only the \
                 cloud writes the erasure list",
                actor.to_hex_string()
            )),
        })
    }

    /// After the signatures of relayed erasure-list changes were checked (`verify_new`):
    /// every author must have a verified signature (whatever `EngineConfig::signatures`
    /// allows elsewhere), which `check_signature` already required to be by a certificate
    /// of the author's identity and role (the cloud's).
    pub(super) fn check_relayed_erasure_signatures(
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
                "change {} of {doc}, relayed by {from}, carries no signature by the cloud: a \
                 relayed erasure list is taken only signed",
                c.hash
            )),
        }
    }
}
