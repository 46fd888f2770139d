//! Just enough of the Automerge binary format to see who authored the changes in a sync
//! message before applying it.
//!
//! A sync message carries Automerge chunks back to back: each is the magic bytes
//! `85 6f 4a 83`, a 4-byte checksum, a 1-byte type (0 document, 1 change, 2 compressed
//! change), a ULEB128 length, and the contents. A document chunk starts with its actor table
//! and a change chunk with its dependencies and then its actor, so the authors are read from
//! the headers without decoding any operations. Compressed changes are decoded by Automerge.

use automerge::ActorId;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

fn uleb(input: &mut &[u8]) -> Result<u64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or("truncated number")?;
        *input = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("number too long".into())
}

fn take<'a>(input: &mut &'a [u8], n: u64) -> Result<&'a [u8], String> {
    let n = usize::try_from(n).map_err(|_| "length too large")?;
    if input.len() < n {
        return Err(format!("truncated: need {n} bytes, have {}", input.len()));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// The actors that authored the changes in `bytes` (one or more concatenated chunks).
pub(crate) fn chunk_actors(mut bytes: &[u8]) -> Result<Vec<ActorId>, String> {
    let mut actors = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let magic = take(&mut bytes, 4)?;
        if magic != MAGIC {
            return Err("not an Automerge chunk (bad magic bytes)".into());
        }
        take(&mut bytes, 4)?;
        let kind = take(&mut bytes, 1)?[0];
        let len = uleb(&mut bytes)?;
        let header_len = start.len() - bytes.len();
        let mut contents = take(&mut bytes, len)?;
        let whole = &start[..header_len + contents.len()];
        match kind {
            0 => {
                let n = uleb(&mut contents)?;
                for _ in 0..n {
                    let l = uleb(&mut contents)?;
                    actors.push(ActorId::from(take(&mut contents, l)?));
                }
            }
            1 => {
                let deps = uleb(&mut contents)?;
                take(
                    &mut contents,
                    deps.checked_mul(32).ok_or("too many dependencies")?,
                )?;
                let l = uleb(&mut contents)?;
                actors.push(ActorId::from(take(&mut contents, l)?));
            }
            2 => {
                let change = automerge::Change::try_from(whole).map_err(|e| e.to_string())?;
                actors.push(change.actor_id().clone());
            }
            other => return Err(format!("unknown chunk type {other}")),
        }
    }
    actors.sort();
    actors.dedup();
    Ok(actors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    #[test]
    fn reads_actors_of_documents_and_changes() {
        let mut a = Automerge::new().with_actor(ActorId::from(b"alice".as_slice()));
        let mut b = Automerge::new().with_actor(ActorId::from(b"bob".as_slice()));
        for (doc, v) in [(&mut a, 1), (&mut b, 2)] {
            let mut tx = doc.transaction();
            tx.put(ROOT, "k", v).expect("put");
            tx.commit();
        }
        a.merge(&mut b).expect("merge");
        let names = |v: Vec<ActorId>| v.iter().map(|a| a.to_bytes().to_vec()).collect::<Vec<_>>();
        let expected = vec![b"alice".to_vec(), b"bob".to_vec()];
        assert_eq!(names(chunk_actors(&a.save()).expect("doc")), expected);
        let changes: Vec<u8> = a
            .get_changes(&[])
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        assert_eq!(names(chunk_actors(&changes).expect("changes")), expected);
        assert!(chunk_actors(&[1, 2, 3]).is_err());
        assert!(chunk_actors(&a.save()[..20]).is_err());
    }
}
