//! Bearer tokens of the HTTP API: issued and revoked with `outpost-cloud token`, kept as
//! SHA-256 hashes in `<data>/api-tokens.json` (never the token itself).
//!
//! The file is read on every request (it is small), so a token issued or revoked while the
//! cloud runs takes effect at once, and the CLI need not reach the running cloud.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use outpost_core::SiteId;
use serde::{Deserialize, Serialize};

/// The token file inside the data directory.
pub(crate) const TOKENS_FILE: &str = "api-tokens.json";

/// The longest `Authorization` header value looked at.
pub(crate) const MAX_TOKEN_BYTES: usize = 256;

/// Tokens start with this, so that a leaked one is recognisable (secret scanners).
const PREFIX: &str = "opt_";

/// One issued token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TokenEntry {
    /// Who holds it (`erp`, `head-office`): unique, shown in logs and in change messages.
    pub(crate) name: String,
    /// Hex SHA-256 of the token.
    pub(crate) sha256: String,
    /// `["*"]` for every site, else the sites it may reach.
    pub(crate) sites: Vec<String>,
    /// Whether it may write documents.
    pub(crate) write: bool,
    /// When it was issued (ms since the epoch).
    pub(crate) issued_ms: u64,
}

impl TokenEntry {
    /// Whether this token may reach `site`.
    pub(crate) fn grants(&self, site: &SiteId) -> bool {
        self.grants_every_site() || self.sites.iter().any(|s| s == site.as_str())
    }

    /// Whether this token was issued for every site (`--sites '*'`).
    pub(crate) fn grants_every_site(&self) -> bool {
        self.sites.iter().any(|s| s == "*")
    }
}

/// The token file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct TokenFile {
    pub(crate) tokens: Vec<TokenEntry>,
}

fn path(data: &Path) -> PathBuf {
    data.join(TOKENS_FILE)
}

/// Hex SHA-256 of `token`.
pub(crate) fn hash(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the token file (none: no token).
pub(crate) fn load(data: &Path) -> Result<TokenFile> {
    let p = path(data);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the token file {} is not readable JSON; fix it or remove it and issue tokens again",
                p.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// The entry of `token`, if it is issued and not revoked.
pub(crate) fn find(data: &Path, token: &str) -> Result<Option<TokenEntry>> {
    if !token.starts_with(PREFIX) {
        return Ok(None);
    }
    let h = hash(token);
    Ok(load(data)?.tokens.into_iter().find(|t| t.sha256 == h))
}

fn save(data: &Path, file: &TokenFile) -> Result<()> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create the data directory {}", data.display()))?;
    let p = path(data);
    let bytes = serde_json::to_vec_pretty(file)?;
    // Whole or not at all; tempfile makes the file 0600 (only hashes, but still the owner's).
    outpost_binsupport::write_atomically(&p, |w| w.write_all(&bytes))
        .with_context(|| format!("cannot replace {}", p.display()))?;
    Ok(())
}

/// Issues a token named `name` for `sites` (`*` or site names); returns the token, which is
/// shown once and stored only as its hash.
pub(crate) fn issue(data: &Path, name: &str, sites: &[String], write: bool) -> Result<String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("a token name is 1 to 64 letters, digits, '-', '_' or '.', e.g. `erp`");
    }
    if sites.is_empty() {
        bail!(
            "give --sites '*' for every site, or the sites the token may reach: --sites paris,lyon"
        );
    }
    for s in sites {
        if s != "*" {
            s.parse::<SiteId>()
                .with_context(|| format!("--sites: {s:?} is not a site name"))?;
        }
    }
    let mut file = load(data)?;
    if file.tokens.iter().any(|t| t.name == name) {
        bail!("a token named {name} exists; revoke it first (`outpost-cloud token revoke --name {name}`) or pick another name");
    }
    let secret: [u8; 32] = rand::random();
    let token = format!(
        "{PREFIX}{}",
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    file.tokens.push(TokenEntry {
        name: name.to_string(),
        sha256: hash(&token),
        sites: sites.to_vec(),
        write,
        issued_ms: outpost_core::Timestamp::now().as_millis(),
    });
    save(data, &file)?;
    Ok(token)
}

/// Revokes the token named `name`; returns whether there was one.
pub(crate) fn revoke(data: &Path, name: &str) -> Result<bool> {
    let mut file = load(data)?;
    let before = file.tokens.len();
    file.tokens.retain(|t| t.name != name);
    if file.tokens.len() == before {
        return Ok(false);
    }
    save(data, &file)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_are_found_by_hash_and_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = issue(dir.path(), "erp", &["paris".into()], false).expect("issue");
        assert!(t.starts_with(PREFIX));
        let raw = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).expect("file");
        assert!(!raw.contains(&t), "the token itself must not be stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKENS_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads the token file");
        }
        let e = find(dir.path(), &t).expect("find").expect("issued");
        assert!(e.grants(&"paris".parse().expect("site")));
        assert!(!e.grants(&"lyon".parse().expect("site")));
        assert!(issue(dir.path(), "erp", &["*".into()], true).is_err());
        assert!(find(dir.path(), "opt_nope").expect("find").is_none());
        assert!(revoke(dir.path(), "erp").expect("revoke"));
        assert!(find(dir.path(), &t).expect("find").is_none());
        assert!(!revoke(dir.path(), "erp").expect("revoke"));
    }
}
