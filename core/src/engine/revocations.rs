//! Revocations on the engine's paths: learnt (from the app, from a peer), kept, sent on
//! connect and relayed, and applied to the changes that arrive. See `crate::revocation`.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;

use super::wire::{Protocol, WireMessage};
use super::{Engine, EngineError};
use crate::revocation::{
    Revocation, SignedRevocation, MAX_REVOCATIONS, MAX_REVOCATIONS_PER_MESSAGE,
};
use crate::signing::KeyId;
use crate::store::NewChange;
use crate::{parse_actor, Event, PeerId, SiteId, Timestamp};

/// The revocations an engine knows.
#[derive(Default)]
pub(super) struct Revocations {
    /// By record id, with the decoded body.
    records: BTreeMap<[u8; 32], (SignedRevocation, Revocation)>,
    /// Learnt since the link layer last looked.
    new: Vec<Revocation>,
}

impl Revocations {
    fn all(&self) -> impl Iterator<Item = &Revocation> {
        self.records.values().map(|(_, r)| r)
    }

    /// The revocations naming device `peer` of `site`.
    fn covering<'s: 'q, 'q>(
        &'s self,
        site: &'q SiteId,
        peer: &'q PeerId,
    ) -> impl Iterator<Item = &'s Revocation> + 'q {
        self.all().filter(move |r| r.names(site, peer))
    }
}

/// Revocations of one peer that may fail verification in a session before its `Revocations`
/// messages are dropped unread (each failure costs one signature verification).
pub const MAX_BAD_REVOCATIONS_PER_SESSION: u32 = 8;

/// Why a revocation was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationRefused {
    /// This engine has no verifier for the fleet CA's signature.
    #[error("this engine checks no signatures (EngineConfig::verifier is unset), so it cannot trust a revocation")]
    NoVerifier,
    /// The record is malformed or its signature is not the fleet CA's.
    #[error("{0}")]
    Invalid(String),
    /// The store keeps [`MAX_REVOCATIONS`] already.
    #[error("this store keeps {MAX_REVOCATIONS} revocations already; the record is dropped")]
    Full,
}

impl Engine {
    /// Loads the revocations the store keeps (verified when they were learnt).
    pub(super) fn load_revocations(&mut self) {
        match self.store.revocations() {
            Ok(records) => {
                for record in records {
                    if let Ok(r) = record.revocation() {
                        self.revocations.records.insert(record.id(), (record, r));
                    }
                }
            }
            Err(e) => self.storage_failed(None, None, &e),
        }
    }

    /// The revocations this engine knows, as the fleet CA signed them.
    pub fn revocations(&self) -> impl Iterator<Item = (&SignedRevocation, &Revocation)> {
        self.revocations.records.values().map(|(s, r)| (s, r))
    }

    /// Whether every certificate of a device is revoked (a revocation that names one
    /// certificate is enforced where the certificate is seen: the transport's handshake).
    pub fn is_revoked(&self, site: &SiteId, peer: &PeerId) -> bool {
        self.revocations
            .covering(site, peer)
            .any(Revocation::is_whole_device)
    }

    /// Takes a revocation signed by the fleet CA (from the operator, `outpost cert revoke`):
    /// it is verified, stored durably, applied (links to the device close, its changes are
    /// refused) and sent to every connected peer, which relay it on. Returns whether it was
    /// new. An [`Event::Revoked`] reports it.
    pub fn learn_revocation(
        &mut self,
        record: SignedRevocation,
        now: Timestamp,
    ) -> Result<bool, RevocationRefused> {
        self.take_revocation(None, record, now)
    }

    fn take_revocation(
        &mut self,
        from: Option<&PeerId>,
        record: SignedRevocation,
        now: Timestamp,
    ) -> Result<bool, RevocationRefused> {
        let id = record.id();
        if self.revocations.records.contains_key(&id) {
            return Ok(false);
        }
        let Some(verifier) = self.config.verifier.clone() else {
            return Err(RevocationRefused::NoVerifier);
        };
        let revocation = record
            .revocation()
            .map_err(|e| RevocationRefused::Invalid(e.to_string()))?;
        verifier
            .verify_authority(
                &SignedRevocation::signed_bytes(&record.body),
                &record.signature,
            )
            .map_err(|e| {
                RevocationRefused::Invalid(format!(
                    "the revocation of {revocation} is not signed by this fleet's CA: {e}"
                ))
            })?;
        if self.revocations.records.len() >= MAX_REVOCATIONS {
            return Err(RevocationRefused::Full);
        }
        if let Err(e) = self.store.put_revocation(&record) {
            self.storage_failed(from, None, &e);
            return Err(RevocationRefused::Invalid(format!(
                "the revocation could not be stored: {e}"
            )));
        }
        tracing::warn!(device = %revocation, reason = %revocation.reason, from = ?from.map(ToString::to_string), "device revoked");
        self.metrics.revocations_learned += 1;
        self.revocations
            .records
            .insert(id, (record.clone(), revocation.clone()));
        // Relay to every other peer that speaks revocations.
        let message = WireMessage::Revocations {
            records: vec![record.clone()],
        }
        .encode();
        for (peer, p) in &mut self.peers {
            if Some(peer) != from && p.revocations {
                p.control.push_back((None, message.clone()));
            }
        }
        self.revocations.new.push(revocation.clone());
        let mut entry = crate::AuditEntry::new(now, crate::AuditKind::Revoked)
            .detail(format!("{revocation}: {}", revocation.reason));
        entry.peer = Some(revocation.peer.to_string());
        entry.site = Some(revocation.site.to_string());
        if let Some(from) = from {
            entry.detail.push_str(&format!(" (learnt from {from})"));
        }
        if let Err(e) = self.store.audit().record(entry) {
            self.storage_failed(from, None, &e);
        }
        self.events.push_back(Event::Revoked { revocation, record });
        Ok(true)
    }

    /// A `Revocations` message from `from`: records are taken in order until one fails (an
    /// error reports it; the rest of the message is dropped).
    pub(super) fn handle_revocations(
        &mut self,
        from: &PeerId,
        records: Vec<SignedRevocation>,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let bad = |reason: String| EngineError::BadRevocation {
            peer: from.clone(),
            reason,
        };
        let bad_so_far = self.peers.get(from).map_or(0, |p| p.bad_revocations);
        if bad_so_far >= MAX_BAD_REVOCATIONS_PER_SESSION {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "{bad_so_far} revocations of this peer failed verification this session: its \
                 revocations are dropped unread until it reconnects"
            )));
        }
        if records.len() > MAX_REVOCATIONS_PER_MESSAGE {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "{} revocations in one message, over {MAX_REVOCATIONS_PER_MESSAGE}; all dropped",
                records.len()
            )));
        }
        let mut first_error = None;
        for record in records {
            match self.take_revocation(Some(from), record, now) {
                Ok(_) => {}
                // An engine without a verifier ignores revocations it cannot check.
                Err(RevocationRefused::NoVerifier) => {}
                Err(e) => {
                    // One verification failure ends the message: a peer cannot make us check
                    // a thousand bad signatures per message.
                    self.metrics.sync_errors += 1;
                    if let Some(p) = self.peers.get_mut(from) {
                        p.bad_revocations += 1;
                    }
                    first_error = Some(e.to_string());
                    break;
                }
            }
        }
        match first_error {
            Some(reason) => Err(bad(reason)),
            None => Ok(()),
        }
    }

    /// On connect: what this engine knows, in messages of at most
    /// [`MAX_REVOCATIONS_PER_MESSAGE`], for a peer of [`Protocol::V3`].
    pub(super) fn revocation_messages(&self, protocol: Protocol) -> Vec<Vec<u8>> {
        if protocol < Protocol::V3 || self.revocations.records.is_empty() {
            return Vec::new();
        }
        let all: Vec<SignedRevocation> = self
            .revocations
            .records
            .values()
            .map(|(s, _)| s.clone())
            .collect();
        all.chunks(MAX_REVOCATIONS_PER_MESSAGE)
            .map(|c| {
                WireMessage::Revocations {
                    records: c.to_vec(),
                }
                .encode()
            })
            .collect()
    }

    /// The revocations learnt since the last call, for the link layer to close links.
    pub fn take_new_revocations(&mut self) -> Vec<Revocation> {
        std::mem::take(&mut self.revocations.new)
    }

    /// Why the changes `new` (arriving from `from`) must be refused for a revocation, if they
    /// must: a change whose actor claims a revoked device of `site` (signed, if the message
    /// signs it, by a revoked certificate), or whose signature is by a revoked certificate
    /// whatever actor it claims, unless a change of a device in good standing in the same
    /// message builds on it.
    pub(super) fn revoked_changes(
        &self,
        site: Option<&SiteId>,
        new: &[NewChange],
        signer_of: &dyn Fn(&automerge::ActorId) -> Option<KeyId>,
    ) -> Result<(), String> {
        if self.revocations.records.is_empty() {
            return Ok(());
        }
        // The public key of a signer's certificate: a revocation of the certificate that a
        // renewed one replaced names this key.
        let public_key_of = |key: &KeyId| {
            let (_, der) = self.certs.get(key)?;
            self.config.verifier.as_ref()?.public_key_id(der)
        };
        let mut revoked: BTreeMap<ChangeHash, &Revocation> = BTreeMap::new();
        let mut vouchers: Vec<&NewChange> = Vec::new();
        for c in new {
            let hit = parse_actor(&c.actor).and_then(|claim| {
                let site = site?;
                let key = signer_of(&c.actor);
                self.revocations
                    .covering(site, &claim.peer)
                    .find(|r| match key {
                        Some(signer) => {
                            r.matches_certificate(&signer, public_key_of(&signer).as_ref())
                        }
                        // Unsigned: the revoked certificate may be the one that wrote it.
                        None => true,
                    })
            });
            // Whatever actor the change claims (an imported change's actor names no device),
            // a signature by a revoked certificate does not vouch for it.
            let hit = hit.or_else(|| {
                let key = signer_of(&c.actor)?;
                let (signer, _) = self.certs.get(&key)?;
                self.revocations
                    .all()
                    .find(|r| r.covers(signer, Some(&key), public_key_of(&key).as_ref()))
            });
            match hit {
                Some(r) => {
                    revoked.insert(c.hash, r);
                }
                None => vouchers.push(c),
            }
        }
        if revoked.is_empty() {
            return Ok(());
        }
        // Walk back from the changes of devices in good standing, through the changes of
        // this message: what they reach was taken by an honest device before it learnt of
        // the revocation, and stays.
        let by_hash: BTreeMap<ChangeHash, &NewChange> = new.iter().map(|c| (c.hash, c)).collect();
        let mut reached: BTreeSet<ChangeHash> = BTreeSet::new();
        let mut stack: Vec<ChangeHash> = vouchers
            .iter()
            .flat_map(|c| c.deps.iter().copied())
            .collect();
        while let Some(h) = stack.pop() {
            if !reached.insert(h) {
                continue;
            }
            if let Some(c) = by_hash.get(&h) {
                stack.extend(c.deps.iter().copied());
            }
        }
        match revoked.iter().find(|(h, _)| !reached.contains(h)) {
            None => Ok(()),
            Some((hash, r)) => Err(format!(
                "change {hash} was written by {r}, a device revoked by the fleet CA ({}): \
                 refused, as every change of it that no device in good standing built on",
                if r.reason.is_empty() {
                    "no reason given"
                } else {
                    r.reason.as_str()
                }
            )),
        }
    }
}
