//! `outpost audit`: the audit trail of sync, from the running node or the data directory.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use outpost_core::{AuditEntry, AuditKind, Timestamp};
use serde_json::Value as Json;

use crate::control::Request;
use crate::data;
use crate::time::{iso8601, parse_when};

/// The request for `outpost audit`'s arguments (times resolved against the clock now).
pub(crate) fn request(
    since: Option<String>,
    until: Option<String>,
    kinds: Vec<String>,
    peer: Option<String>,
    doc: Option<String>,
    limit: usize,
) -> Result<Request> {
    let now = Timestamp::now();
    for k in &kinds {
        // Said before anything is opened.
        k.parse::<AuditKind>()?;
    }
    let since_ms = since.map(|s| parse_when(&s, now)).transpose()?;
    let until_ms = until.map(|s| parse_when(&s, now)).transpose()?;
    if let (Some(a), Some(b)) = (since_ms, until_ms) {
        if a >= b {
            bail!("--since must be before --until (they select [since, until))");
        }
    }
    Ok(Request::Audit {
        since_ms: since_ms.map(Timestamp::as_millis),
        until_ms: until_ms.map(Timestamp::as_millis),
        kinds,
        peer,
        doc,
        limit,
    })
}

pub(crate) fn run(
    dir: &Path,
    cert_dir: Option<&Path>,
    request: &Request,
    json: bool,
) -> Result<()> {
    let reply = data::request_or_open(dir, cert_dir, request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", text(&reply)?);
    }
    Ok(())
}

/// One line per entry, its time in ISO 8601, then a line saying how much the trail holds.
fn text(reply: &Json) -> Result<String> {
    let entries: Vec<AuditEntry> =
        serde_json::from_value(reply.get("entries").cloned().unwrap_or(Json::Null))?;
    let mut out = String::new();
    for e in &entries {
        let line = e.to_string();
        // The entry's own line starts with its time in ms: shown as a date instead.
        let rest = line.split_once(' ').map_or("", |(_, r)| r);
        writeln!(out, "{} {rest}", iso8601(Timestamp(e.at_ms)))?;
    }
    let n = |k: &str| reply.get(k).and_then(Json::as_u64).unwrap_or(0);
    writeln!(
        out,
        "{} entries shown; the trail holds {} (at most {}, none older than {} days)",
        entries.len(),
        n("held"),
        n("max_entries"),
        n("max_age_ms") / 86_400_000
    )?;
    Ok(out)
}
