//! Signatures on the engine's paths: received (`Signatures` messages, checks of new
//! changes) and sent (before every sync message that carries changes).
//!
//! See `crate::signing` for what a signature proves and `core/docs/design.md` ("Signed
//! changes") for the rules.

use std::collections::BTreeMap;

use automerge::ChangeHash;

use super::wire::{ChangeSignature, WireMessage, MAX_MESSAGE_BYTES};
use super::{Engine, EngineError};
use crate::signing::{
    signed_bytes, KeyId, SignatureRule, MAX_CERTIFICATE_BYTES, MAX_SIGNATURE_BYTES,
};
use crate::store::{NewChange, SignatureRecord, StoredSignature};
use crate::{parse_actor, DocumentId, PeerId, PeerInfo, Role, SiteId};

/// An actor as refusals name it.
fn describe(actor: &automerge::ActorId) -> String {
    match parse_actor(actor) {
        Some(c) => format!("{} ({})", c.peer, c.role),
        None => format!("actor {}", actor.to_hex_string()),
    }
}

/// The role of head office (fleet-wide writes through the cloud): like the cloud's, never
/// taken from an unsigned change.
const HEAD_OFFICE: &str = "head-office";

/// Signatures received for changes of one document not applied yet: change hash -> (key,
/// signature).
pub(super) type Pending = BTreeMap<ChangeHash, (KeyId, Vec<u8>)>;

/// The most signatures one peer may have waiting for their changes (about 40 MB at the
/// largest signature size; a message needs one per actor).
pub const MAX_PENDING_SIGNATURES: usize = 65_536;
/// The most signatures kept, per peer and document, after a message for changes it did not
/// bring (Automerge queued them behind a missing dependency: a few at most). More are
/// dropped, so that a peer cannot make every later message re-examine tens of thousands.
const MAX_WAITING_SIGNATURES: usize = 4_096;
/// The most certificates one `Signatures` message may carry.
pub const MAX_CERTIFICATES_PER_MESSAGE: usize = 1_024;
/// Outgoing `Signatures` messages are split to stay under this many encoded bytes.
const SIGNATURES_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES / 2;

impl Engine {
    /// A `Signatures` message: certificates are verified (and stored) now, signatures wait
    /// for their changes. A message that fails marks the document, so that the changes it
    /// came with are refused rather than taken as unsigned (a signature that is present
    /// but cannot be checked never passes, whatever the rollout rule).
    pub(super) fn handle_signatures(
        &mut self,
        from: &PeerId,
        doc: DocumentId,
        signatures: Vec<ChangeSignature>,
        certificates: Vec<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let result = self.read_signatures(from, doc.clone(), signatures, certificates);
        if let Err(e) = &result {
            // Marked only where changes of the peer could follow (a role that may neither
            // write nor relay the context gets them refused anyway), within the bound of
            // entries.
            let held = self.known.contains(&doc);
            let marked = self
                .peers
                .get(from)
                .is_some_and(|p| self.may_send_changes(&p.info.role, &doc));
            if let Some(p) = self.peers.get_mut(from) {
                if marked {
                    if let Some(ds) = p.entry(&doc, held) {
                        ds.bad_signatures = Some(e.to_string());
                    }
                }
            }
            self.events.push_back(crate::Event::ProtocolError {
                peer: from.clone(),
                message: e.to_string(),
            });
        }
        result
    }

    /// The reason the last `Signatures` message of (`from`, `doc`) failed, if it did; cleared.
    pub(super) fn take_bad_signatures(
        &mut self,
        from: &PeerId,
        doc: &DocumentId,
    ) -> Option<String> {
        self.peers
            .get_mut(from)
            .and_then(|p| p.docs.get_mut(doc))
            .and_then(|d| d.bad_signatures.take())
    }

    fn read_signatures(
        &mut self,
        from: &PeerId,
        doc: DocumentId,
        signatures: Vec<ChangeSignature>,
        certificates: Vec<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let Some(verifier) = self.config.verifier.clone() else {
            // This engine checks no signatures (see `EngineConfig::verifier`).
            return Ok(());
        };
        let Some(peer) = self.peers.get(from) else {
            return Err(EngineError::UnknownPeer(from.clone()));
        };
        let bad = |reason: String| EngineError::BadSignatures {
            peer: from.clone(),
            doc: doc.clone(),
            reason,
        };
        // Signatures only come with changes, so a peer that may not write the context gets
        // nothing kept, whatever it sends.
        if !self.may_send_changes(&peer.info.role, &doc) {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "role {} may neither write nor relay context {}: its signatures are dropped \
                 unread",
                peer.info.role,
                doc.context()
            )));
        }
        let waiting: usize = peer.pending_sigs.values().map(BTreeMap::len).sum();
        if waiting + signatures.len() > MAX_PENDING_SIGNATURES {
            self.metrics.sync_errors += 1;
            if let Some(p) = self.peers.get_mut(from) {
                p.pending_sigs.clear();
            }
            return Err(bad(format!(
                "over {MAX_PENDING_SIGNATURES} signatures wait for their changes; all dropped"
            )));
        }
        if certificates.len() > MAX_CERTIFICATES_PER_MESSAGE {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "{} certificates in one message, over {MAX_CERTIFICATES_PER_MESSAGE}",
                certificates.len()
            )));
        }
        if let Some(s) = signatures
            .iter()
            .find(|s| s.signature.len() > MAX_SIGNATURE_BYTES)
        {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "a signature of {} bytes, over {MAX_SIGNATURE_BYTES}",
                s.signature.len()
            )));
        }
        for der in &certificates {
            if der.len() > MAX_CERTIFICATE_BYTES {
                self.metrics.sync_errors += 1;
                return Err(bad(format!(
                    "a certificate of {} bytes, over {MAX_CERTIFICATE_BYTES}",
                    der.len()
                )));
            }
            let key = KeyId::of(der);
            if self.certs.contains_key(&key) {
                continue;
            }
            let info = match verifier.verify_certificate(der) {
                Ok(info) => info,
                Err(e) => {
                    self.metrics.sync_errors += 1;
                    return Err(bad(e.to_string()));
                }
            };
            if let Err(e) = self.store.put_certificate(&key, der, &info.peer) {
                self.storage_failed(Some(from), Some(&doc), &e);
            }
            self.certified.insert(info.peer.clone());
            self.certs.insert(key, (info, der.clone()));
        }
        if signatures.is_empty() {
            // Nothing waits: no entry for the document.
            return Ok(());
        }
        if let Some(p) = self.peers.get_mut(from) {
            let pending = p.pending_sigs.entry(doc).or_default();
            for s in signatures {
                pending.insert(ChangeHash(s.change), (KeyId(s.key), s.signature));
            }
        }
        Ok(())
    }

    /// Loads and verifies the certificates of `pending` that this run has not seen yet but
    /// the store knows (learnt in an earlier session).
    pub(super) fn resolve_keys(&mut self, pending: &Pending) {
        let Some(verifier) = self.config.verifier.clone() else {
            return;
        };
        for (key, _) in pending.values() {
            if self.certs.contains_key(key) {
                continue;
            }
            match self.store.certificate(key) {
                Ok(Some(der)) => {
                    // Stored certificates were verified when learnt; verifying again costs
                    // one chain check per signer per run and survives a changed CA.
                    if let Ok(info) = verifier.verify_certificate(&der) {
                        self.certs.insert(*key, (info, der));
                    }
                }
                Ok(None) => {}
                Err(e) => self.storage_failed(None, None, &e),
            }
        }
    }

    /// The device whose certificate signed the newest change of `actor` in `new` (directly,
    /// or through a later change of it waiting in the queue, `NewChange::vouched_by`), if
    /// the message brought such a signature and this peer knows the certificate. For an
    /// actor that is no outpost device (an import, a web client), that device vouched for
    /// the change: its role, not the role of whichever relay forwards it, is what the path
    /// rules judge, so that every hop judges the change alike (judged by each sender's
    /// role, a kiosk-vouched write the kitchen took was refused at the POS when the kitchen
    /// forwarded it, and every later change of the kitchen with it: policy fuzzer seed 207).
    /// Whether the signature verifies is `verify_new`'s to check.
    pub(super) fn voucher(
        &self,
        actor: &automerge::ActorId,
        new: &[NewChange],
        pending: &Pending,
    ) -> Option<&PeerInfo> {
        let newest = new
            .iter()
            .filter(|c| &c.actor == actor)
            .max_by_key(|c| c.seq)?;
        let (key, _) = pending
            .get(&newest.hash)
            .or_else(|| newest.vouched_by.and_then(|(hash, _)| pending.get(&hash)))?;
        self.certs.get(key).map(|(info, _)| info)
    }

    /// The site whose devices may sign changes that reach us from `from`: a device's own
    /// site, or for a cloud the site of the device it serves. `None` between clouds.
    pub(super) fn signer_site<'a>(&'a self, from: &'a PeerInfo) -> Option<&'a SiteId> {
        if self.config.local.role != Role::cloud() {
            Some(&self.config.local.site)
        } else if from.role != Role::cloud() {
            Some(&from.site)
        } else {
            None
        }
    }

    /// Checks the changes new to `doc` that a message from `from` brings: per actor, its
    /// newest new change must carry a valid signature by the device (and role) its actor
    /// claims, which vouches for the actor's earlier changes. Returns the signatures to
    /// store, or why the message is refused.
    pub(super) fn verify_new(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        new: &[NewChange],
        pending: &Pending,
        now: crate::Timestamp,
    ) -> Result<Vec<SignatureRecord>, String> {
        if self.config.verifier.is_none() {
            return Ok(Vec::new());
        }
        let mut newest: BTreeMap<&automerge::ActorId, &NewChange> = BTreeMap::new();
        // The genesis is unsigned: every receiver computes it itself (`Engine::check_genesis`).
        for c in new.iter().filter(|c| !self.is_genesis(doc, c)) {
            let e = newest.entry(&c.actor).or_insert(c);
            if c.seq > e.seq {
                *e = c;
            }
        }
        let signer_of = |actor: &automerge::ActorId| {
            newest
                .get(actor)
                .and_then(|c| {
                    pending
                        .get(&c.hash)
                        .or_else(|| c.vouched_by.and_then(|(hash, _)| pending.get(&hash)))
                })
                .map(|(key, _)| *key)
        };
        self.revoked_changes(self.signer_site(from), new, &signer_of)?;
        let mut records = Vec::new();
        for (actor, change) in newest {
            let claim = parse_actor(actor);
            // The sender signed the newest change of the author in its message; when that
            // one waits in the queue (a dependency of it is missing here), its signature
            // vouches for the ones it descends from that apply now (`screen::vouchers`).
            let signed = match pending.get(&change.hash) {
                Some(s) => Some((change.hash, change.seq, s)),
                None => change
                    .vouched_by
                    .and_then(|(hash, seq)| pending.get(&hash).map(|s| (hash, seq, s))),
            };
            let Some((hash, seq, (key, signature))) = signed else {
                let author = describe(actor);
                if claim.as_ref().is_some_and(|c| c.peer != from.peer)
                    && !self.config.policy.may_relay(&from.role)
                {
                    // Only a signature lets a peer that is no relay forward another device's
                    // change (`Engine::check_actor`).
                    return Err(format!(
                        "change {} by {author} is forwarded unsigned by {from}, whose role \
                         may not relay: refused as a possible forgery",
                        change.hash
                    ));
                }
                match (self.config.signatures.at(now), &claim) {
                    // `at` resolved `RequiredFrom` to one of the others.
                    (SignatureRule::Required | SignatureRule::RequiredFrom(_), _) => {
                        return Err(format!(
                            "change {} by {author} carries no signature, and this peer \
                             requires signed changes (EngineConfig::signatures); upgrade the \
                             author and the relays to a version that signs",
                            change.hash
                        ))
                    }
                    (SignatureRule::Transitional, Some(c)) if self.certified.contains(&c.peer) => {
                        return Err(format!(
                            "change {} claims {author}, a device known to sign, but carries no \
                             signature: refused as a possible forgery",
                            change.hash
                        ))
                    }
                    (SignatureRule::Transitional, claim) => {
                        self.check_unsigned_claim(doc, actor, claim.as_ref(), new)?;
                        continue;
                    }
                }
            };
            self.check_signature(from, doc, actor, &hash, key, signature)?;
            records.push((
                actor.clone(),
                seq,
                StoredSignature {
                    hash,
                    key: *key,
                    signature: signature.clone(),
                },
            ));
        }
        Ok(records)
    }

    /// Why the unsigned changes of `actor` (claiming `claim`, `None` for a non-outpost
    /// actor) in `new` are refused under [`SignatureRule::Transitional`], if they are.
    ///
    /// Nothing proves an unsigned claim, so it is worth no more than what any device that
    /// could have sent it may write itself: a claim of the cloud or head office (which may
    /// write everything) is never taken unsigned, and every other unsigned change must be
    /// within the rights of **every relay role that may read the context** (a kiosk making
    /// up `outpost:pos:ghost:…` to mark an order paid is a relay that reads `orders`, so it
    /// gains nothing). The ceiling is the same at every hop, first hand or relayed: judging
    /// by the role of the peer that sent it instead (the rule before) took at the first hop
    /// what the next hop refused (a kiosk's own unsigned write, taken by the kitchen, was
    /// refused at the POS as "no more than its relay", and with it every later change of the
    /// kitchen to that document: policy fuzzer seeds 207 and 227). A receiver that may not
    /// relay but writes the context takes no unsigned change of another device at all: its
    /// own later changes would carry it, and no peer takes it forwarded by a non-relay.
    fn check_unsigned_claim(
        &self,
        doc: &DocumentId,
        actor: &automerge::ActorId,
        claim: Option<&crate::ActorClaim>,
        new: &[NewChange],
    ) -> Result<(), String> {
        let author = describe(actor);
        let policy = &self.config.policy;
        let context = doc.context();
        if let Some(claim) = claim {
            if claim.role == Role::cloud() || claim.role.as_str() == HEAD_OFFICE {
                return Err(format!(
                    "an unsigned change claims {author}: role {} is never taken without a \
                     signature, whatever the signature rule",
                    claim.role
                ));
            }
        }
        let me = &self.config.local;
        if claim.is_none_or(|c| c.peer != me.peer)
            && !policy.may_relay(&me.role)
            && policy.may_write(&me.role, context)
        {
            return Err(format!(
                "an unsigned change by {author}: this peer's role {} may not relay, so no peer \
                 would take it from here with this peer's own changes; upgrade the author to \
                 a version that signs",
                me.role
            ));
        }
        let ceiling = policy
            .relay_roles
            .iter()
            .filter(|r| policy.may_read(r, context));
        for role in ceiling {
            if !policy.may_write(role, context) {
                return Err(format!(
                    "an unsigned change by {author} to context {context}, which relay role \
                     {role} may not write: an unsigned change counts for no more than any \
                     relay that could have sent it; upgrade the author to a version that signs"
                ));
            }
            for c in new.iter().filter(|c| &c.actor == actor) {
                let Some(Ok(written)) = &c.written else {
                    // No path rules in this context (else the paths were decoded and checked).
                    continue;
                };
                for (path, replaces) in written {
                    if !policy.may_write_path_as(role, None, context, path, *replaces) {
                        return Err(format!(
                            "an unsigned change by {author} would {} {path} in {doc}, which \
                             relay role {role} may not: an unsigned change counts for no more \
                             than any relay that could have sent it; upgrade the author to a \
                             version that signs",
                            if *replaces { "replace" } else { "write" },
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Why the signature `signature` by certificate `key` of change `hash` by `actor` in
    /// `doc`, received from `from`, is not valid, if it is not.
    pub(super) fn check_signature(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        actor: &automerge::ActorId,
        hash: &ChangeHash,
        key: &KeyId,
        signature: &[u8],
    ) -> Result<(), String> {
        let Some(verifier) = &self.config.verifier else {
            return Ok(());
        };
        let policy = &self.config.policy;
        let claim = parse_actor(actor);
        let author = describe(actor);
        let Some((signer, der)) = self.certs.get(key) else {
            return Err(format!(
                "change {hash} by {author} is signed by certificate {key}, which the sender \
                 did not send and this peer does not know"
            ));
        };
        // A vouch record (a device vouching for a web client's change, `crate::vouch`)
        // signs other bytes and is judged by its own rules.
        let vouch = crate::vouch::open(signature).transpose()?;
        if let Some((client, _)) = &vouch {
            if claim.is_some() {
                return Err(format!(
                    "change {hash} claims {author} but carries a vouch record for {client}: \
                     a device's change is signed by the device"
                ));
            }
            self.check_vouch(from, doc, hash, signer, client)?;
        }
        match &claim {
            Some(c) if c.peer != signer.peer || c.role != signer.role => {
                return Err(format!(
                    "change {hash} claims {author} but is signed by {signer}: forged authorship"
                ))
            }
            Some(_) => {}
            None if vouch.is_some() => {}
            None if !policy.may_relay(&signer.role) => {
                return Err(format!(
                    "change {hash} of {author} is signed by {signer}, whose role may not vouch \
                     for others' changes"
                ))
            }
            None => {}
        }
        // Cloud and head-office certificates are fleet-wide (head office writes through
        // the cloud's API into every site).
        if signer.role != Role::cloud() && signer.role.as_str() != HEAD_OFFICE {
            if let Some(site) = self.signer_site(from) {
                if &signer.site != site {
                    return Err(format!(
                        "change {hash} is signed by {signer}, a device of another site than {site}"
                    ));
                }
            }
        }
        if !policy.may_write(&signer.role, doc.context()) {
            return Err(format!(
                "change {hash} is signed by {signer}, whose role may not write context {}",
                doc.context()
            ));
        }
        let (message, signature) = match &vouch {
            Some((client, raw)) => (crate::vouch::vouch_bytes(doc, hash, client), *raw),
            None => (signed_bytes(doc, hash), signature),
        };
        verifier
            .verify_signature(der, &message, signature)
            .map_err(|e| format!("change {hash} by {author}: {e}"))
    }

    /// Why `signer` may not vouch for `client`'s change `hash` of `doc` (received from
    /// `from`), if it may not: its role may not vouch for the client's role (the policy's
    /// `vouch`), the client is of another site than the voucher (or than the device the
    /// change comes from, at a cloud), or the client's role may not write the context. The
    /// client's paths are judged by `Engine::check_paths`; the signature by the caller.
    fn check_vouch(
        &self,
        from: &PeerInfo,
        doc: &DocumentId,
        hash: &ChangeHash,
        signer: &PeerInfo,
        client: &crate::vouch::VouchClaim,
    ) -> Result<(), String> {
        let policy = &self.config.policy;
        if !policy.may_vouch(&signer.role, &client.role) {
            return Err(format!(
                "change {hash} of {doc} is vouched for by {signer}, whose role may not vouch \
                 for web clients of role {} (the policy's `vouch`): refused, the client's \
                 role is not one its device may accept",
                client.role
            ));
        }
        // A cloud certificate is fleet-wide; a device vouches only for its own site's
        // clients.
        let sites = [
            (signer.role != Role::cloud()).then_some(&signer.site),
            self.signer_site(from),
        ];
        if let Some(site) = sites.into_iter().flatten().find(|s| **s != client.site) {
            return Err(format!(
                "change {hash} of {doc} is vouched for as {client}, a client of another site \
                 than {site}"
            ));
        }
        if !policy.may_write(&client.role, doc.context()) {
            return Err(format!(
                "change {hash} is vouched for as {client}, whose role may not write context {}",
                doc.context()
            ));
        }
        Ok(())
    }

    /// The web client each actor of `new` that is no device writes as, where the signature
    /// that covers its newest new change (in `pending`, directly or through
    /// `NewChange::vouched_by`) is a vouch record: its changes are judged by the client's
    /// role (`Engine::check_paths`). The record itself is verified by `verify_new`; a
    /// malformed one is refused.
    pub(super) fn vouched_clients(
        new: &[NewChange],
        pending: &Pending,
    ) -> Result<BTreeMap<automerge::ActorId, crate::vouch::VouchClaim>, String> {
        let mut newest: BTreeMap<&automerge::ActorId, &NewChange> = BTreeMap::new();
        for c in new.iter().filter(|c| parse_actor(&c.actor).is_none()) {
            let e = newest.entry(&c.actor).or_insert(c);
            if c.seq > e.seq {
                *e = c;
            }
        }
        let mut out = BTreeMap::new();
        for (actor, c) in newest {
            let signature = pending
                .get(&c.hash)
                .or_else(|| c.vouched_by.and_then(|(hash, _)| pending.get(&hash)));
            if let Some((_, signature)) = signature {
                if let Some(opened) = crate::vouch::open(signature) {
                    let (client, _) = opened.map_err(|e| format!("change {}: {e}", c.hash))?;
                    out.insert(actor.clone(), client);
                }
            }
        }
        Ok(out)
    }

    /// After a message was handled: signatures of changes the document now holds without a
    /// stored signature are checked and stored ("late" signatures: an upgraded device
    /// vouching for what it wrote before it signed, see `queue_signatures`); those of changes
    /// not in the document yet (queued by Automerge behind a missing dependency) wait.
    ///
    /// Only the sender's own actors are taken, and only the newest change of each: that is
    /// what a device sends, and it bounds the verifications a peer can make us do to one
    /// per actor of its own (a peer sending 65,536 signatures of changes we hold unsigned
    /// would otherwise cost seconds of ECDSA).
    pub(super) fn settle_pending(&mut self, from: &PeerInfo, doc: &DocumentId, pending: Pending) {
        if pending.is_empty() {
            return;
        }
        let mut waiting = Pending::new();
        let mut candidates: BTreeMap<automerge::ActorId, (u64, ChangeHash, KeyId, Vec<u8>)> =
            BTreeMap::new();
        for (hash, (key, signature)) in pending {
            let author = match self.store.change_author(doc, &hash) {
                Ok(a) => a,
                Err(e) => {
                    self.storage_failed(Some(&from.peer), Some(doc), &e);
                    continue;
                }
            };
            let Some((actor, seq)) = author else {
                waiting.insert(hash, (key, signature));
                continue;
            };
            if parse_actor(&actor).is_none_or(|c| c.peer != from.peer) {
                continue;
            }
            if candidates.get(&actor).is_none_or(|c| c.0 < seq) {
                candidates.insert(actor, (seq, hash, key, signature));
            }
        }
        let mut late = Vec::new();
        for (actor, (seq, hash, key, signature)) in candidates {
            match self.store.has_signature(doc, &actor, seq) {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    self.storage_failed(Some(&from.peer), Some(doc), &e);
                    continue;
                }
            }
            match self.check_signature(from, doc, &actor, &hash, &key, &signature) {
                Ok(()) => late.push((
                    actor,
                    seq,
                    StoredSignature {
                        hash,
                        key,
                        signature,
                    },
                )),
                Err(reason) => {
                    // The change is ours already: nothing to refuse, but nothing to keep.
                    self.metrics.sync_errors += 1;
                    tracing::warn!(peer = %from, %doc, %reason, "a late signature is invalid");
                }
            }
        }
        self.metrics.signatures_verified += late.len() as u64;
        if let Err(e) = self.store.put_late_signatures(doc, &late) {
            self.storage_failed(Some(&from.peer), Some(doc), &e);
        }
        if waiting.len() > MAX_WAITING_SIGNATURES {
            self.metrics.sync_errors += 1;
            tracing::warn!(peer = %from, %doc, waiting = waiting.len(), "signatures for changes never sent are dropped");
            return;
        }
        if !waiting.is_empty() {
            if let Some(p) = self.peers.get_mut(&from.peer) {
                p.pending_sigs
                    .entry(doc.clone())
                    .or_default()
                    .extend(waiting);
            }
        }
    }

    /// Queues, before a sync message carrying changes, the stored signatures of the newest
    /// change of each actor in it (`sigs`, from `Store::generate_sync`), with the
    /// certificates not sent to `peer` yet.
    ///
    /// With the first such message of the session on this document, the device also sends
    /// the signatures of the newest change of each of its own actors (signing, once, those
    /// written before it had a key): peers that received its earlier changes unsigned (from
    /// a version before signed changes) store them, and can relay that history to peers that
    /// know this device signs.
    pub(super) fn queue_signatures(
        &mut self,
        peer: &PeerId,
        doc: &DocumentId,
        mut sigs: Vec<StoredSignature>,
    ) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        if p.legacy {
            return;
        }
        if !p.docs.get(doc).is_some_and(|d| d.backfilled) {
            if let Some(ds) = self
                .peers
                .get_mut(peer)
                .map(|p| p.docs.entry(doc.clone()).or_default())
            {
                ds.backfilled = true;
            }
            if let Err(e) = self.store.sign_own_history(doc) {
                self.storage_failed(Some(peer), Some(doc), &e);
            }
            match self.store.latest_signatures(doc) {
                Ok(latest) => {
                    let me = &self.config.local.peer;
                    for (actor, s) in latest {
                        let own = parse_actor(&actor).is_some_and(|c| &c.peer == me);
                        if own && !sigs.iter().any(|o| o.hash == s.hash) {
                            sigs.push(s);
                        }
                    }
                }
                Err(e) => self.storage_failed(Some(peer), Some(doc), &e),
            }
        }
        if sigs.is_empty() {
            return;
        }
        let mut signatures = Vec::new();
        let mut certificates = Vec::new();
        for s in sigs {
            let sent = self
                .peers
                .get(peer)
                .and_then(|p| p.docs.get(doc))
                .is_some_and(|d| d.sent_certs.contains(&s.key));
            if !sent && !certificates.iter().any(|(k, _)| *k == s.key) {
                match self.store.certificate(&s.key) {
                    Ok(Some(der)) => certificates.push((s.key, der)),
                    Ok(None) => {}
                    Err(e) => self.storage_failed(Some(peer), Some(doc), &e),
                }
            }
            signatures.push(ChangeSignature {
                change: s.hash.0,
                key: s.key.0,
                signature: s.signature,
            });
        }
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let ds = p.docs.entry(doc.clone()).or_default();
        for (key, _) in &certificates {
            ds.sent_certs.insert(*key);
        }
        // Split to stay far below the message limit: signatures are under 600 bytes and
        // certificates under 16 KiB each.
        let mut certs = certificates.into_iter().map(|(_, der)| der).peekable();
        let mut sigs = signatures.into_iter().peekable();
        while certs.peek().is_some() || sigs.peek().is_some() {
            let mut size = 64;
            let mut batch_certs = Vec::new();
            let mut batch_sigs = Vec::new();
            while let Some(c) = certs.peek() {
                if size + c.len() + 8 > SIGNATURES_MESSAGE_BYTES && !batch_certs.is_empty() {
                    break;
                }
                size += c.len() + 8;
                batch_certs.extend(certs.next());
            }
            while let Some(s) = sigs.peek() {
                if size + s.signature.len() + 72 > SIGNATURES_MESSAGE_BYTES
                    && !(batch_sigs.is_empty() && batch_certs.is_empty())
                {
                    break;
                }
                size += s.signature.len() + 72;
                batch_sigs.extend(sigs.next());
            }
            p.bulk.push_back((
                doc.clone(),
                WireMessage::Signatures {
                    doc: doc.clone(),
                    signatures: batch_sigs,
                    certificates: batch_certs,
                }
                .encode(),
            ));
        }
    }
}
