//! Stable automerge-repo document ids for outpost document names.

use outpost_core::{DocumentId, SiteId};
use ring::digest;

/// Bytes of an automerge-repo document id (a UUID's worth).
const ID_BYTES: usize = 16;

/// The automerge-repo document id of `doc` in `site`: the first 16 bytes of
/// SHA-256(`"outpost automerge-repo document v1\0" site "\0" name`), base58check encoded as
/// automerge-repo writes its ids. Every device of the site and the cloud derive the same id
/// without a table, and a name never maps to another site's document.
pub fn repo_document_id(site: &SiteId, doc: &DocumentId) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"outpost automerge-repo document v1\0");
    ctx.update(site.to_string().as_bytes());
    ctx.update(b"\0");
    ctx.update(doc.to_string().as_bytes());
    let hash = ctx.finish();
    bs58check(&hash.as_ref()[..ID_BYTES])
}

/// `automerge:<id>`, the URL automerge-repo's `Repo::find` takes.
pub fn repo_url(site: &SiteId, doc: &DocumentId) -> String {
    format!("automerge:{}", repo_document_id(site, doc))
}

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58 of `payload` followed by the first 4 bytes of its double SHA-256 (bs58check, as
/// the `bs58check` package automerge-repo uses).
fn bs58check(payload: &[u8]) -> String {
    let once = digest::digest(&digest::SHA256, payload);
    let twice = digest::digest(&digest::SHA256, once.as_ref());
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&twice.as_ref()[..4]);
    base58(&bytes)
}

fn base58(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    // Digits in base 58, least significant first.
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|d| ALPHABET[*d as usize] as char));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_matches_known_vectors() {
        // Vectors of the Bitcoin base58 alphabet.
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(base58(&[0, 0, 1]), "112");
        assert_eq!(base58(&[]), "");
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let site: SiteId = "lyon".parse().expect("valid");
        let other: SiteId = "paris-11".parse().expect("valid");
        let doc: DocumentId = "orders/2026-12-07".parse().expect("valid");
        let a = repo_document_id(&site, &doc);
        assert_eq!(a, repo_document_id(&site, &doc));
        assert_ne!(a, repo_document_id(&other, &doc));
        assert_ne!(a, repo_document_id(&site, &"menu".parse().expect("valid")));
        // 16 bytes + 4 of checksum are 27 or 28 base58 digits.
        assert!((26..=28).contains(&a.len()), "{a}");
    }
}
