//! `outpost status`: documents, heads, peers, and what is unsynced since when.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use outpost_core::engine::SyncStatus;
use outpost_core::{Engine, EngineConfig, PeerInfo, Store, Timestamp};
use serde_json::{json, Value as Json};

use crate::control::Request;
use crate::data;
use crate::time::{age, iso8601};

pub(crate) fn run(dir: &Path, cert_dir: Option<&Path>, as_json: bool) -> Result<()> {
    let status = data::request_or_open(dir, cert_dir, &Request::Status)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", text(&status, Timestamp::now()));
    }
    Ok(())
}

/// The status of a store that no node is serving: peers as the engine remembers them.
pub(crate) fn offline(dir: &Path, store: &Store, identity: Option<&PeerInfo>) -> Result<Json> {
    let local = identity.cloned().unwrap_or_else(|| {
        PeerInfo::parse("local", "local", "local").expect("literal identity is valid")
    });
    let engine = Engine::new(store.clone(), EngineConfig::new(local, data::policy()));
    to_json(
        dir,
        store,
        identity,
        &engine.status_at(Timestamp::now()),
        false,
    )
}

/// The status document shared by `status --json` and the text view.
pub(crate) fn to_json(
    dir: &Path,
    store: &Store,
    identity: Option<&PeerInfo>,
    sync: &SyncStatus,
    running: bool,
) -> Result<Json> {
    let ts = |t: Option<Timestamp>| t.map(iso8601);
    let mut documents = Vec::new();
    for doc in store.documents()? {
        let heads: Vec<String> = store.heads(&doc)?.iter().map(|h| h.to_string()).collect();
        let held = sync.documents.iter().find(|d| d.doc == doc);
        documents.push(json!({
            "doc": doc.to_string(),
            "heads": heads,
            "changes": store.history_len(&doc)?,
            "bytes": match held {
                Some(d) => d.bytes,
                None => store.document_bytes(&doc)?,
            },
            "retention": held.map(|d| d.retention),
        }));
    }
    let peers: Vec<Json> = sync
        .peers
        .iter()
        .map(|p| {
            json!({
                "peer": p.peer.to_string(),
                "role": p.role.as_ref().map(|r| r.to_string()),
                "connected": p.connected,
                "offline_since": ts(p.offline_since),
                "offline_reason": p.offline_reason,
                "revoked": p.revoked,
                "unsynced_changes": p.they_lack(),
                "docs": p.docs.iter().map(|d| json!({
                    "doc": d.doc.to_string(),
                    "last_sync": ts(d.last_sync),
                    "unsynced_changes": d.they_lack,
                    "unsynced_since": ts(d.unsynced_since),
                    "peer_has_changes_we_lack": d.we_lack,
                    "refused": d.refused,
                    "reason": d.reason,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let revocations: Vec<Json> = store
        .revocations()?
        .iter()
        .filter_map(|r| r.revocation().ok())
        .map(|r| {
            json!({
                "device": format!("{}/{}", r.site, r.peer),
                "certificate": r.key.map(|k| k.to_string()),
                "issued": iso8601(r.issued),
                "reason": r.reason,
            })
        })
        .collect();
    Ok(json!({
        "data": dir.display().to_string(),
        "identity": identity,
        "node_running": running,
        "documents": documents,
        "peers": peers,
        "revocations": revocations,
        "unsynced_changes": sync.unsynced_changes(),
    }))
}

/// Adds the validity of this node's certificate to a status document: an expired
/// certificate is why every peer refuses the node.
pub(crate) fn add_certificate(
    status: &mut Json,
    cert: &outpost_transport::DeviceCert,
) -> Result<()> {
    let v = crate::cert::validity(cert)?;
    status["certificate"] = json!({
        "not_after": iso8601(v.not_after),
        "expired": v.expired(Timestamp::now()),
    });
    Ok(())
}

/// `1 change`, `2 changes`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `512 B`, `12.3 KB`, `4.5 MB`.
fn bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.1} KB", n as f64 / 1000.0),
        _ => format!("{:.1} MB", n as f64 / 1_000_000.0),
    }
}

fn short(head: &str) -> &str {
    head.get(..8).unwrap_or(head)
}

/// The human view of a status document.
pub(crate) fn text(s: &Json, now: Timestamp) -> String {
    let mut out = String::new();
    let str_of = |v: &Json| v.as_str().unwrap_or("").to_string();
    let _ = writeln!(out, "data directory: {}", str_of(&s["data"]));
    match s.get("identity").filter(|i| !i.is_null()) {
        Some(i) => {
            let _ = writeln!(
                out,
                "device:         {}/{} (role {})",
                str_of(&i["site"]),
                str_of(&i["peer"]),
                str_of(&i["role"])
            );
        }
        None => {
            let _ = writeln!(
                out,
                "device:         none (an anonymous local store; `outpost serve --cert-dir DIR` gives it an identity)"
            );
        }
    }
    if let Some(c) = s.get("certificate").filter(|c| !c.is_null()) {
        let until = str_of(&c["not_after"]);
        let _ = if c["expired"].as_bool().unwrap_or(false) {
            writeln!(
                out,
                "certificate:    EXPIRED on {until}: peers refuse this device; issue a new one with `outpost cert issue ... --force`"
            )
        } else {
            writeln!(out, "certificate:    valid until {until}")
        };
    }
    let running = s["node_running"].as_bool().unwrap_or(false);
    let _ = writeln!(
        out,
        "node:           {}",
        if running {
            "running"
        } else {
            "not running (peers as of the last session)"
        }
    );
    let docs = s["documents"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "documents ({}):", docs.len());
    for d in &docs {
        let heads: Vec<String> = d["heads"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|x| short(x.as_str().unwrap_or("")).to_string())
                    .collect()
            })
            .unwrap_or_default();
        let retention = match d["retention"].as_str() {
            Some("drop_due") => {
                "  past retention: dropped at the next housekeeping (the cloud holds it)"
            }
            Some("waiting_for_cloud") => {
                "  past retention: kept until a cloud peer holds all of it"
            }
            _ => "",
        };
        let _ = writeln!(
            out,
            "  {:<24} {:>14} {:>10}  heads {}{retention}",
            str_of(&d["doc"]),
            count(d["changes"].as_u64().unwrap_or(0), "change", "changes"),
            bytes(d["bytes"].as_u64().unwrap_or(0)),
            heads.join(", ")
        );
    }
    let peers = s["peers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "peers ({}):", peers.len());
    let when = |v: &Json| -> Option<String> {
        let t = v.as_str()?;
        let ms = parse_iso_ms(t)?;
        Some(format!("{t} ({})", age(now, Timestamp(ms))))
    };
    for p in &peers {
        let _ = writeln!(
            out,
            "  {} ({})  {}",
            str_of(&p["peer"]),
            p["role"].as_str().unwrap_or("role unknown"),
            if p["connected"].as_bool().unwrap_or(false) {
                "connected".to_string()
            } else {
                let mut s = if p["revoked"].as_bool().unwrap_or(false) {
                    "revoked, offline".to_string()
                } else {
                    "offline".to_string()
                };
                if let Some(since) = when(&p["offline_since"]) {
                    s.push_str(&format!(" since {since}"));
                }
                if let Some(why) = p["offline_reason"].as_str() {
                    s.push_str(&format!(": {why}"));
                }
                s
            }
        );
        for d in p["docs"].as_array().cloned().unwrap_or_default() {
            let n = d["unsynced_changes"].as_u64().unwrap_or(0);
            let mut line = if n > 0 {
                match when(&d["unsynced_since"]) {
                    Some(since) => {
                        format!("{} unsynced since {since}", count(n, "change", "changes"))
                    }
                    None => format!("{} unsynced", count(n, "change", "changes")),
                }
            } else {
                match when(&d["last_sync"]) {
                    Some(t) => format!("in sync, last sync {t}"),
                    None => "in sync".to_string(),
                }
            };
            if d["peer_has_changes_we_lack"].as_bool().unwrap_or(false) {
                line.push_str("; the peer has changes we lack");
            }
            match d["reason"].as_str() {
                Some(why) => line.push_str(&format!("; {why}")),
                None if d["refused"].as_bool().unwrap_or(false) => {
                    line.push_str("; changes were refused (see the log)")
                }
                None => {}
            }
            let _ = writeln!(out, "    {:<24} {line}", str_of(&d["doc"]));
        }
    }
    let revoked = s["revocations"].as_array().cloned().unwrap_or_default();
    if !revoked.is_empty() {
        let _ = writeln!(out, "revoked by the fleet CA ({}):", revoked.len());
        for r in &revoked {
            let _ = writeln!(
                out,
                "  {}{} on {}{}",
                str_of(&r["device"]),
                r["certificate"]
                    .as_str()
                    .map(|k| format!(" (certificate {k})"))
                    .unwrap_or_default(),
                str_of(&r["issued"]),
                r["reason"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default()
            );
        }
    }
    let total = s["unsynced_changes"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "unsynced:       {}",
        if total == 0 {
            "nothing; every known peer has every change".to_string()
        } else {
            format!(
                "{} not yet acknowledged by some peer",
                count(total, "change", "changes")
            )
        }
    );
    out
}

/// Parses the timestamps written by [`iso8601`] back to milliseconds.
fn parse_iso_ms(s: &str) -> Option<u64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, ms) = time.split_once('.')?;
    let mut t = hms.split(':').map(|x| x.parse::<u64>());
    let (h, mi, se) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from civil (inverse of util::civil_from_days).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + se;
    Some(secs * 1000 + ms.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_roundtrip() {
        for ms in [0, 951_782_400_000, 1_795_774_831_123] {
            assert_eq!(parse_iso_ms(&iso8601(Timestamp(ms))), Some(ms));
        }
    }
}
