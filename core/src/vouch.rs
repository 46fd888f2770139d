//! Vouch records: a device's signature that binds a web client's change to the client's
//! identity and role (see `core/docs/design.md`, "Web clients").
//!
//! A web client (automerge-repo in a browser, samod, ...) holds no certificate and writes
//! under an actor id of its own, which names nobody. The device that accepts its changes
//! (the holder of the token's key) signs, for the newest change of each client actor, the
//! bytes of [`vouch_bytes`]: the document, the change hash and the client (site, name,
//! role). The record travels where a signature does (`Signatures` messages, the `sigs`
//! store) as an envelope ([`VouchClaim::seal`]) whose bytes carry the claim, so relays that
//! store and forward signatures carry it unchanged. Every receiver opens it
//! ([`open`]) and checks the voucher's certificate and signature, that the voucher's role
//! may vouch for the client's role (the policy's `vouch` table), and that the client's role
//! may write every path the actor's changes touch: the client's narrower role holds at
//! every hop, not only at the device that accepted it.

use crate::signing::MAX_SIGNATURE_BYTES;
use crate::{DocumentId, Role, SiteId};

/// How an envelope starts: no DER (ECDSA, `0x30 ..`) signature does.
const MAGIC: &[u8] = b"OPV1";
/// The longest site, name or role an envelope carries.
pub const MAX_CLAIM_PART: usize = 128;

/// The web client a device vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VouchClaim {
    /// The client's site (the site of the device whose token it holds).
    pub site: SiteId,
    /// The client's name (its token's `name`: `kitchen-screen-1`, a guest id).
    pub name: String,
    /// The policy role of its token (`kds`, `guest`).
    pub role: Role,
}

impl std::fmt::Display for VouchClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "web client {}/{} ({})", self.site, self.name, self.role)
    }
}

/// The bytes a device signs to vouch for change `hash` of `doc` by `client`. Distinct from
/// `signing::signed_bytes` (its own context string), so a vouch never passes for a device's
/// signature of its own change, nor the other way round.
pub fn vouch_bytes(doc: &DocumentId, hash: &automerge::ChangeHash, client: &VouchClaim) -> Vec<u8> {
    let mut out = b"outpost vouch v1\0".to_vec();
    out.extend_from_slice(doc.to_string().as_bytes());
    out.push(0);
    out.extend_from_slice(&hash.0);
    for part in [client.site.as_str(), &client.name, client.role.as_str()] {
        out.push(0);
        out.extend_from_slice(part.as_bytes());
    }
    out
}

impl VouchClaim {
    /// The envelope of `signature` (over [`vouch_bytes`] for this claim), as it is stored
    /// and sent in place of a plain signature. `None` if a part of the claim is longer than
    /// [`MAX_CLAIM_PART`] or the whole would exceed `MAX_SIGNATURE_BYTES`.
    pub fn seal(&self, signature: &[u8]) -> Option<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        for part in [self.site.as_str(), &self.name, self.role.as_str()] {
            if part.len() > MAX_CLAIM_PART {
                return None;
            }
            out.push(u8::try_from(part.len()).ok()?);
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(signature);
        (out.len() <= MAX_SIGNATURE_BYTES).then_some(out)
    }
}

/// The claim and the voucher's signature in `stored`, if it is a vouch envelope; `None` for
/// a plain signature. An envelope whose claim does not parse is `Some(Err(..))`: it is
/// refused, never taken for a plain signature.
pub fn open(stored: &[u8]) -> Option<Result<(VouchClaim, &[u8]), String>> {
    let mut rest = stored.strip_prefix(MAGIC)?;
    let mut parts = Vec::with_capacity(3);
    for _ in 0..3 {
        let Some((&len, tail)) = rest.split_first() else {
            return Some(Err("a vouch record cut short".into()));
        };
        let len = usize::from(len);
        if tail.len() < len {
            return Some(Err("a vouch record cut short".into()));
        }
        let (part, tail) = tail.split_at(len);
        match std::str::from_utf8(part) {
            Ok(s) => parts.push(s.to_string()),
            Err(_) => return Some(Err("a vouch record whose claim is not UTF-8".into())),
        }
        rest = tail;
    }
    let role = parts.pop().unwrap_or_default();
    let name = parts.pop().unwrap_or_default();
    let site = parts.pop().unwrap_or_default();
    let site = match site.parse::<SiteId>() {
        Ok(s) => s,
        Err(e) => return Some(Err(format!("a vouch record naming site {site:?}: {e}"))),
    };
    let role = match role.parse::<Role>() {
        Ok(r) => r,
        Err(e) => return Some(Err(format!("a vouch record naming role {role:?}: {e}"))),
    };
    if name.is_empty() {
        return Some(Err("a vouch record naming no client".into()));
    }
    Some(Ok((VouchClaim { site, name, role }, rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_to_its_claim_and_signature() {
        let claim = VouchClaim {
            site: "paris".parse().expect("site"),
            name: "kitchen-screen-1".into(),
            role: "kds".parse().expect("role"),
        };
        let sealed = claim.seal(&[0x30, 1, 2, 3]).expect("fits");
        let (back, sig) = open(&sealed).expect("an envelope").expect("valid");
        assert_eq!(back, claim);
        assert_eq!(sig, &[0x30, 1, 2, 3]);
        // A DER signature is no envelope; a cut envelope is refused, not taken as plain.
        assert!(open(&[0x30, 0x45, 0x02]).is_none());
        assert!(open(&sealed[..8]).expect("an envelope").is_err());
        let long = VouchClaim {
            name: "x".repeat(MAX_CLAIM_PART + 1),
            ..claim
        };
        assert!(long.seal(&[1]).is_none());
    }
}
