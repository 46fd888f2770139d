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

/// The next chunk of `bytes`: its type, its contents, and the whole chunk (header included).
fn next_chunk<'a>(bytes: &mut &'a [u8]) -> Result<(u8, &'a [u8], &'a [u8]), String> {
    let start = *bytes;
    let magic = take(bytes, 4)?;
    if magic != MAGIC {
        return Err("not an Automerge chunk (bad magic bytes)".into());
    }
    take(bytes, 4)?;
    let kind = take(bytes, 1)?[0];
    let len = uleb(bytes)?;
    let header_len = start.len() - bytes.len();
    let contents = take(bytes, len)?;
    Ok((kind, contents, &start[..header_len + contents.len()]))
}

/// The chunks of `bytes`, each whole (header included), with its type (0 document, 1
/// change, 2 compressed change).
pub(crate) fn split_chunks(mut bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (kind, _, whole) = next_chunk(&mut bytes)?;
        out.push((kind, whole));
    }
    Ok(out)
}

/// The actors that authored the changes in `bytes` (one or more concatenated chunks).
pub(crate) fn chunk_actors(mut bytes: &[u8]) -> Result<Vec<ActorId>, String> {
    let mut actors = Vec::new();
    while !bytes.is_empty() {
        let (kind, mut contents, whole) = next_chunk(&mut bytes)?;
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

/// The author and sequence number of each change chunk in `bytes`; `None` for a document
/// chunk (which holds every change of the document).
pub(crate) fn change_headers(mut bytes: &[u8]) -> Result<Vec<Option<(ActorId, u64)>>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (kind, mut contents, whole) = next_chunk(&mut bytes)?;
        match kind {
            0 => out.push(None),
            1 => {
                let deps = uleb(&mut contents)?;
                take(
                    &mut contents,
                    deps.checked_mul(32).ok_or("too many dependencies")?,
                )?;
                let l = uleb(&mut contents)?;
                let actor = ActorId::from(take(&mut contents, l)?);
                out.push(Some((actor, uleb(&mut contents)?)));
            }
            2 => {
                let change = automerge::Change::try_from(whole).map_err(|e| e.to_string())?;
                out.push(Some((change.actor_id().clone(), change.seq())));
            }
            other => return Err(format!("unknown chunk type {other}")),
        }
    }
    Ok(out)
}

/// Column specs carry a deflate flag in bit 3 (`id << 4 | deflate << 3 | type`).
const DEFLATE_BIT: u64 = 0b1000;

/// Inflates a DEFLATE stream into nothing, counting; fails once it passes `budget`.
fn inflated_len(deflated: &[u8], budget: usize) -> Result<usize, String> {
    use std::io::Read;
    let limit = u64::try_from(budget).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = flate2::read::DeflateDecoder::new(deflated).take(limit);
    let n = std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| format!("bad compressed data: {e}"))?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > budget {
        return Err(format!("inflates beyond {budget} bytes"));
    }
    Ok(n)
}

/// The column metadata of a chunk: (spec, length) pairs.
fn columns(input: &mut &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let n = uleb(input)?;
    if n > 1024 {
        return Err(format!("{n} columns"));
    }
    (0..n).map(|_| Ok((uleb(input)?, uleb(input)?))).collect()
}

/// The bytes of column data, inflating deflated columns against `budget`.
fn column_bytes(meta: &[(u64, u64)], data: &mut &[u8], budget: &mut usize) -> Result<(), String> {
    for (spec, len) in meta {
        let col = take(data, *len)?;
        let n = if spec & DEFLATE_BIT != 0 {
            inflated_len(col, *budget)?
        } else {
            col.len()
        };
        *budget = budget
            .checked_sub(n)
            .ok_or_else(|| "inflates beyond the budget".to_string())?;
    }
    Ok(())
}

fn skip_sleb(input: &mut &[u8]) -> Result<(), String> {
    for _ in 0..10 {
        let (&b, rest) = input.split_first().ok_or("truncated number")?;
        *input = rest;
        if b & 0x80 == 0 {
            return Ok(());
        }
    }
    Err("number too long".into())
}

/// Checks that the change chunks of one received message inflate to at most `budget` bytes
/// together (see [`inflated_size`]); the error says the bound, for the sender.
pub(crate) fn check_message_inflation<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    budget: usize,
) -> Result<(), String> {
    let mut left = budget;
    for chunk in chunks {
        match inflated_size(chunk, left) {
            Ok(n) => left -= n,
            Err(e) => {
                return Err(format!(
                    "refused unread: {e} (at most {budget} bytes inflated per message)"
                ))
            }
        }
    }
    Ok(())
}

/// The bytes the chunks in `bytes` occupy once every compressed part is inflated, checked
/// against `budget` without keeping any of it: a compressed change, or the deflated columns
/// of a document or change, that would inflate past `budget` (a decompression bomb) is an
/// error before Automerge decodes anything.
pub(crate) fn inflated_size(mut bytes: &[u8], budget: usize) -> Result<usize, String> {
    let mut left = budget;
    while !bytes.is_empty() {
        let (kind, mut c, _) = next_chunk(&mut bytes)?;
        match kind {
            0 => {
                let actors = uleb(&mut c)?;
                for _ in 0..actors {
                    let l = uleb(&mut c)?;
                    take(&mut c, l)?;
                }
                let heads = uleb(&mut c)?;
                take(&mut c, heads.checked_mul(32).ok_or("too many heads")?)?;
                let change_cols = columns(&mut c)?;
                let op_cols = columns(&mut c)?;
                column_bytes(&change_cols, &mut c, &mut left)?;
                column_bytes(&op_cols, &mut c, &mut left)?;
            }
            1 => {
                let deps = uleb(&mut c)?;
                take(&mut c, deps.checked_mul(32).ok_or("too many dependencies")?)?;
                let l = uleb(&mut c)?;
                take(&mut c, l)?;
                uleb(&mut c)?;
                uleb(&mut c)?;
                skip_sleb(&mut c)?;
                let l = uleb(&mut c)?;
                take(&mut c, l)?;
                let others = uleb(&mut c)?;
                for _ in 0..others {
                    let l = uleb(&mut c)?;
                    take(&mut c, l)?;
                }
                let op_cols = columns(&mut c)?;
                column_bytes(&op_cols, &mut c, &mut left)?;
            }
            2 => {
                let n = inflated_len(c, left)?;
                left -= n;
            }
            other => return Err(format!("unknown chunk type {other}")),
        }
    }
    Ok(budget - left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    #[test]
    fn reads_change_headers() {
        let mut doc =
            automerge::AutoCommit::new().with_actor(automerge::ActorId::from(&b"abc"[..]));
        for i in 0..3 {
            doc.put(automerge::ROOT, "k", i).expect("put");
            doc.commit();
        }
        let changes = doc.get_changes(&[]);
        let headers = change_headers(changes[2].raw_bytes()).expect("a change chunk");
        assert_eq!(
            headers,
            vec![Some((automerge::ActorId::from(&b"abc"[..]), 3))]
        );
        assert_eq!(
            change_headers(&doc.save()).expect("a document chunk"),
            vec![None]
        );
        assert!(change_headers(&[0x85, 0x6f, 0x4a, 0x83, 0, 0]).is_err());
    }

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
        let saved = a.save();
        let size = inflated_size(&saved, 1 << 20).expect("a document within budget");
        assert!(size > 0);
        assert!(inflated_size(&saved, 8).is_err(), "over a tiny budget");
        assert!(inflated_size(&changes, 1 << 20).is_ok());
        assert!(chunk_actors(&a.save()[..20]).is_err());
    }
}
