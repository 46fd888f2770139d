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

/// Signatures received for changes of one document not applied yet: change hash -> (key,
/// signature).
pub(super) type Pending = BTreeMap<ChangeHash, (KeyId, Vec<u8>)>;

/// The most signatures one peer may have waiting for their changes (about 40 MB at the
/// largest signature size; a message needs one per actor).
pub const MAX_PENDING_SIGNATURES: usize = 65_536;
/// The most certificates one `Signatures` message may carry.
pub const MAX_CERTIFICATES_PER_MESSAGE: usize = 1_024;
/// Outgoing `Signatures` messages are split to stay under this many encoded bytes.
const SIGNATURES_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES / 2;

impl Engine {
    /// A `Signatures` message: certificates are verified (and stored) now, signatures wait
    /// for their changes.
    pub(super) fn handle_signatures(
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
        if !self.config.policy.may_write(&peer.info.role, doc.context()) {
            self.metrics.sync_errors += 1;
            return Err(bad(format!(
                "role {} may not write context {}: its signatures are dropped unread",
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

    /// Puts back the signatures still waiting for changes that are not in the document
    /// (changes Automerge queued for a missing dependency).
    pub(super) fn keep_pending(&mut self, from: &PeerId, doc: &DocumentId, mut pending: Pending) {
        if pending.is_empty() {
            return;
        }
        pending.retain(|h, _| !self.store.has_all(doc, &[*h]).unwrap_or(true));
        if pending.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get_mut(from) {
            p.pending_sigs
                .entry(doc.clone())
                .or_default()
                .extend(pending);
        }
    }

    /// The site whose devices may sign changes that reach us from `from`: a device's own
    /// site, or for a cloud the site of the device it serves. `None` between clouds.
    fn signer_site<'a>(&'a self, from: &'a PeerInfo) -> Option<&'a SiteId> {
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
    ) -> Result<Vec<SignatureRecord>, String> {
        let Some(verifier) = &self.config.verifier else {
            return Ok(Vec::new());
        };
        let mut newest: BTreeMap<&automerge::ActorId, &NewChange> = BTreeMap::new();
        for c in new {
            let e = newest.entry(&c.actor).or_insert(c);
            if c.seq > e.seq {
                *e = c;
            }
        }
        let policy = &self.config.policy;
        let mut records = Vec::new();
        for (actor, change) in newest {
            let claim = parse_actor(actor);
            let author = match &claim {
                Some(c) => format!("{} ({})", c.peer, c.role),
                None => format!("actor {}", actor.to_hex_string()),
            };
            let Some((key, signature)) = pending.get(&change.hash) else {
                match (self.config.signatures, &claim) {
                    (SignatureRule::Required, _) => {
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
                    (SignatureRule::Transitional, _) => continue,
                }
            };
            let Some((signer, der)) = self.certs.get(key) else {
                return Err(format!(
                    "change {} by {author} is signed by certificate {key}, which the sender \
                     did not send and this peer does not know",
                    change.hash
                ));
            };
            match &claim {
                Some(c) if c.peer != signer.peer || c.role != signer.role => {
                    return Err(format!(
                        "change {} claims {author} but is signed by {signer}: forged authorship",
                        change.hash
                    ))
                }
                Some(_) => {}
                None if !policy.may_relay(&signer.role) => {
                    return Err(format!(
                        "change {} of {author} is signed by {signer}, whose role may not vouch \
                         for others' changes",
                        change.hash
                    ))
                }
                None => {}
            }
            if signer.role != Role::cloud() {
                if let Some(site) = self.signer_site(from) {
                    if &signer.site != site {
                        return Err(format!(
                            "change {} is signed by {signer}, a device of another site than {site}",
                            change.hash
                        ));
                    }
                }
            }
            if !policy.may_write(&signer.role, doc.context()) {
                return Err(format!(
                    "change {} is signed by {signer}, whose role may not write context {}",
                    change.hash,
                    doc.context()
                ));
            }
            verifier
                .verify_signature(der, &signed_bytes(doc, &change.hash), signature)
                .map_err(|e| format!("change {} by {author}: {e}", change.hash))?;
            records.push((
                actor.clone(),
                change.seq,
                StoredSignature {
                    hash: change.hash,
                    key: *key,
                    signature: signature.clone(),
                },
            ));
        }
        Ok(records)
    }

    /// Queues, before a sync message carrying changes, the stored signatures of the newest
    /// change of each actor in it (`sigs`, from `Store::generate_sync`), with the
    /// certificates not sent to `peer` yet.
    pub(super) fn queue_signatures(
        &mut self,
        peer: &PeerId,
        doc: &DocumentId,
        sigs: Vec<StoredSignature>,
    ) {
        if sigs.is_empty() || self.peers.get(peer).is_none_or(|p| p.legacy) {
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
