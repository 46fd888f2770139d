//! Signatures of changes and the certificates of their signers, beside the documents.
//!
//! Two sled trees per namespace:
//! - `<namespace>sigs`: `<document id> 0x00 <actor length u16 BE> <actor> <seq u64 BE>` ->
//!   `<change hash (32)> <key id (32)> <signature>`: the signatures of local commits (and
//!   of this device's earlier unsigned changes, signed later), of the newest change of each
//!   actor in every accepted received message (see `crate::signing`), and late signatures
//!   of changes held before their author signed;
//! - `<namespace>certs`: `k <key id>` -> certificate DER, and `p <peer id>` -> the key id of
//!   the peer's latest certificate: the devices known to sign; `r <record id>` -> a
//!   verified revocation (`crate::revocation`).

use std::collections::BTreeSet;

use automerge::{ActorId, ChangeHash};

use super::Store;
use crate::signing::KeyId;
use crate::{DocumentId, Error, PeerId, Result};

/// A stored (or received) signature of one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredSignature {
    /// The change signed.
    pub(crate) hash: ChangeHash,
    /// The signer's certificate.
    pub(crate) key: KeyId,
    /// The signature over `signing::signed_bytes(doc, hash)`.
    pub(crate) signature: Vec<u8>,
}

/// A change new to a document, as the signature check sees it.
#[derive(Clone, Debug)]
pub(crate) struct NewChange {
    pub(crate) hash: ChangeHash,
    pub(crate) actor: ActorId,
    pub(crate) seq: u64,
    /// The paths the change writes and whether each replaces a value, when the context has
    /// per-path write rules (`Err`: a path could not be found).
    pub(crate) written: Option<std::result::Result<Vec<(crate::Pointer, bool)>, String>>,
    /// The changes it depends on.
    pub(crate) deps: Vec<ChangeHash>,
    /// A later change of the same author, from the same message, that waits in Automerge's
    /// queue (a dependency is missing) and descends from this one: (its hash, its seq). Its
    /// signature vouches for this change when this one has none (`Engine::verify_new`).
    pub(crate) vouched_by: Option<(ChangeHash, u64)>,
}

/// A signature to store for change `seq` of `actor`.
pub(crate) type SignatureRecord = (ActorId, u64, StoredSignature);

pub(super) fn doc_prefix(doc: &DocumentId) -> Vec<u8> {
    let mut k = doc.to_string().into_bytes();
    k.push(0);
    k
}

fn actor_prefix(doc: &DocumentId, actor: &ActorId) -> Vec<u8> {
    let mut k = doc_prefix(doc);
    let a = actor.to_bytes();
    let len = u16::try_from(a.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&a[..usize::from(len)]);
    k
}

pub(super) fn sig_key(doc: &DocumentId, actor: &ActorId, seq: u64) -> Vec<u8> {
    let mut k = actor_prefix(doc, actor);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn sig_value(s: &StoredSignature) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + s.signature.len());
    v.extend_from_slice(&s.hash.0);
    v.extend_from_slice(&s.key.0);
    v.extend_from_slice(&s.signature);
    v
}

pub(super) fn decode_value(v: &[u8]) -> Option<StoredSignature> {
    let hash: [u8; 32] = v.get(..32)?.try_into().ok()?;
    let key: [u8; 32] = v.get(32..64)?.try_into().ok()?;
    Some(StoredSignature {
        hash: ChangeHash(hash),
        key: KeyId(key),
        signature: v.get(64..)?.to_vec(),
    })
}

fn cert_key(key: &KeyId) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(&key.0);
    k
}

fn peer_key(peer: &PeerId) -> Vec<u8> {
    let mut k = vec![b'p'];
    k.extend_from_slice(peer.as_str().as_bytes());
    k
}

impl Store {
    /// The stored signature of change `seq` of `actor` in `doc`, or else the one of the
    /// actor's next later change that has one (it vouches for this one too).
    pub(crate) fn signature_at_or_after(
        &self,
        doc: &DocumentId,
        actor: &ActorId,
        seq: u64,
    ) -> Result<Option<StoredSignature>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.signature_at_or_after(doc, actor, seq);
        }
        let from = sig_key(doc, actor, seq);
        let to = sig_key(doc, actor, u64::MAX);
        match self
            .inner
            .sigs
            .range_bounds(
                std::ops::Bound::Included(from),
                std::ops::Bound::Included(to),
            )
            .next()
        {
            None => Ok(None),
            Some(kv) => {
                let (_, v) = kv?;
                decode_value(&v).map(Some).ok_or_else(|| {
                    Error::CorruptStore(format!(
                        "a signature record of document {doc} is {} bytes, under 64",
                        v.len()
                    ))
                })
            }
        }
    }

    /// The signature of the newest signed change of every actor of `doc`: one reverse
    /// lookup per actor.
    pub(crate) fn latest_signatures(
        &self,
        doc: &DocumentId,
    ) -> Result<Vec<(ActorId, StoredSignature)>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.latest_signatures(doc);
        }
        let start = doc_prefix(doc);
        let mut end = start.clone();
        *end.last_mut().expect("a prefix ends with its separator") = 1;
        let mut out = Vec::new();
        while let Some((k, v)) = self.inner.sigs.last_in(&start, &end)? {
            let Some(s) = decode_value(&v) else {
                return Err(Error::CorruptStore(format!(
                    "a signature record of document {doc} is {} bytes, under 64",
                    v.len()
                )));
            };
            // Everything of this actor sorts after its prefix: continue below it.
            end = k[..k.len().saturating_sub(8)].to_vec();
            let actor_start = start.len() + 2;
            out.push((ActorId::from(end.get(actor_start..).unwrap_or_default()), s));
        }
        Ok(out)
    }

    /// Whether change `seq` of `actor` in `doc` has a stored signature.
    pub(crate) fn has_signature(
        &self,
        doc: &DocumentId,
        actor: &ActorId,
        seq: u64,
    ) -> Result<bool> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.has_signature(doc, actor, seq);
        }
        self.inner.sigs.contains_key(sig_key(doc, actor, seq))
    }

    /// The author and sequence number of a change `doc` holds.
    pub(crate) fn change_author(
        &self,
        doc: &DocumentId,
        hash: &ChangeHash,
    ) -> Result<Option<(ActorId, u64)>> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.change_author(doc, hash);
        }
        let slot = self.slot(doc)?;
        let s = super::lock(&slot);
        Ok(s.doc
            .get_change_meta_by_hash(hash)
            .map(|m| (m.actor.into_owned(), m.seq)))
    }

    /// Signs the newest change of each of this device's actors in `doc` that has no
    /// signature: changes written before the device signed (an upgrade), or by a tool that
    /// had no key. Done when the document is first sent after the store got a signer (`meta`
    /// key `signed-history/<doc>`), and again after unsigned local writes (`unsigned/<doc>`,
    /// set by a store without a signer).
    pub(crate) fn sign_own_history(&self, doc: &DocumentId) -> Result<()> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.sign_own_history(doc);
        }
        let (Some(signer), Some(me)) = (&self.inner.signer, &self.inner.identity) else {
            return Ok(());
        };
        let flag = format!("signed-history/{doc}");
        let unsigned = format!("{}{doc}", super::UNSIGNED_KEY);
        if self.meta_get(&flag)?.is_some() && self.meta_get(&unsigned)?.is_none() {
            return Ok(());
        }
        let mut newest: std::collections::HashMap<ActorId, (u64, ChangeHash)> =
            std::collections::HashMap::new();
        {
            let slot = self.slot(doc)?;
            let s = super::lock(&slot);
            for m in s.doc.get_changes_meta(&[]) {
                if crate::parse_actor(&m.actor).is_some_and(|c| c.peer == me.peer) {
                    let e = newest.entry(m.actor.into_owned()).or_insert((0, m.hash));
                    if m.seq >= e.0 {
                        *e = (m.seq, m.hash);
                    }
                }
            }
        }
        let mut records = Vec::new();
        for (actor, (seq, hash)) in newest {
            if self.has_signature(doc, &actor, seq)? {
                continue;
            }
            match signer.sign(&crate::signing::signed_bytes(doc, &hash)) {
                Ok(signature) => records.push((
                    actor,
                    seq,
                    StoredSignature {
                        hash,
                        key: signer.key_id(),
                        signature,
                    },
                )),
                Err(e) => {
                    tracing::error!(%doc, error = %e, "earlier changes could not be signed");
                    return Ok(());
                }
            }
        }
        self.put_signatures(doc, &records)?;
        self.meta_set(&flag, Some(b"1"))?;
        self.meta_set(&unsigned, None)
    }

    /// Stores signatures of changes `doc` already holds (verified by the caller).
    pub(crate) fn put_late_signatures(
        &self,
        doc: &DocumentId,
        records: &[SignatureRecord],
    ) -> Result<()> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.put_late_signatures(doc, records);
        }
        self.put_signatures(doc, records)
    }

    /// How many changes of `doc` have a stored signature.
    pub fn signature_count(&self, doc: &DocumentId) -> Result<usize> {
        if let Some(fleet) = self.fleet_of(doc) {
            return fleet.signature_count(doc);
        }
        let mut n = 0;
        for kv in self.inner.sigs.scan_prefix(doc_prefix(doc)) {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    /// Stores signatures of changes of `doc` (not flushed: the caller flushes).
    pub(super) fn put_signatures(
        &self,
        doc: &DocumentId,
        records: &[SignatureRecord],
    ) -> Result<()> {
        use super::mirror::MirrorTree;
        if let [(actor, seq, s)] = records {
            // A local commit: one insert, cheaper than a batch.
            let (k, v) = (sig_key(doc, actor, *seq), sig_value(s));
            self.inner.sigs.insert(&k[..], &v[..])?;
            self.mirror_entry(MirrorTree::Signatures, &k, &v);
            return Ok(());
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = crate::storage::Batch::default();
        for (actor, seq, s) in records {
            let (k, v) = (sig_key(doc, actor, *seq), sig_value(s));
            self.mirror_entry(MirrorTree::Signatures, &k, &v);
            batch.insert(&self.inner.sigs, k, v);
        }
        self.inner.sigs.apply_batch(batch)?;
        Ok(())
    }

    /// A certificate learnt earlier, by its key id.
    /// A store that delegates fleet documents also finds the certificates its fleet store
    /// learnt (the signers of fleet documents, from any site).
    pub(crate) fn certificate(&self, key: &KeyId) -> Result<Option<Vec<u8>>> {
        match self.inner.certs.get(cert_key(key))? {
            Some(v) => Ok(Some(v.to_vec())),
            None => match &self.inner.fleet {
                Some(fleet) => fleet.certificate(key),
                None => Ok(None),
            },
        }
    }

    /// Stores a certificate (already verified) of `peer`.
    pub(crate) fn put_certificate(&self, key: &KeyId, der: &[u8], peer: &PeerId) -> Result<()> {
        if let Some(fleet) = &self.inner.fleet {
            // Signers of fleet documents must be known to every site that sends them.
            fleet.put_certificate(key, der, peer)?;
        }
        let mut batch = crate::storage::Batch::default();
        batch.insert(&self.inner.certs, cert_key(key), der);
        batch.insert(&self.inner.certs, peer_key(peer), &key.0[..]);
        self.inner.certs.apply_batch(batch)?;
        use super::mirror::MirrorTree::Certificates;
        self.mirror_entry(Certificates, &cert_key(key), der);
        self.mirror_entry(Certificates, &peer_key(peer), &key.0);
        Ok(())
    }

    /// The devices whose certificates this store knows: they sign their changes.
    pub fn certified_peers(&self) -> Result<BTreeSet<PeerId>> {
        let mut out = BTreeSet::new();
        for kv in self.inner.certs.scan_prefix(b"p") {
            let (k, _) = kv?;
            if let Some(p) = std::str::from_utf8(&k[1..])
                .ok()
                .and_then(|p| p.parse().ok())
            {
                out.insert(p);
            }
        }
        Ok(out)
    }

    /// Stores a verified revocation (durably: a revocation must survive a crash); returns
    /// whether it was new.
    pub(crate) fn put_revocation(
        &self,
        record: &crate::revocation::SignedRevocation,
    ) -> Result<bool> {
        let mut k = vec![b'r'];
        k.extend_from_slice(&record.id());
        let bytes = record.to_bytes();
        let old = self.inner.certs.insert(&k[..], &bytes[..])?;
        self.mirror_entry(super::mirror::MirrorTree::Certificates, &k, &bytes);
        if old.is_none() {
            self.sync_to_disk()?;
        }
        Ok(old.is_none())
    }

    /// The revocations this store keeps (verified when they were learnt).
    pub fn revocations(&self) -> Result<Vec<crate::revocation::SignedRevocation>> {
        let mut out = Vec::new();
        for kv in self.inner.certs.scan_prefix(b"r") {
            let (_, v) = kv?;
            match crate::revocation::SignedRevocation::from_bytes(&v) {
                Ok(r) => out.push(r),
                Err(e) => return Err(Error::CorruptStore(format!("a stored revocation: {e}"))),
            }
        }
        Ok(out)
    }

    /// Removes the signatures of a deleted document.
    pub(super) fn delete_signatures(&self, doc: &DocumentId) -> Result<()> {
        let mut batch = crate::storage::Batch::default();
        for k in self.inner.sigs.scan_prefix(doc_prefix(doc)).keys() {
            batch.remove(&self.inner.sigs, k?);
        }
        self.inner.sigs.apply_batch(batch)?;
        Ok(())
    }
}
