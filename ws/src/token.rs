//! Scoped tokens for web clients: a role and a client name, bound to a site, valid until a
//! time, signed with a key only this device's data directory holds (HMAC-SHA256). A token is
//! checked at the WebSocket upgrade and again while its connection lives: revoking it
//! (`outpost token revoke ID`) cuts its connections within a poll period.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use outpost_core::{Role, SiteId};
use rand::RngCore;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::WsError;

const KEY_FILE: &str = "token.key";
const REVOKED_FILE: &str = "revoked";
const PREFIX: &str = "opt1";

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The token's id (random), for revocation and logs.
    pub id: String,
    /// The site whose device issued it.
    pub site: String,
    /// The policy role the client acts as (`kds`, `guest`).
    pub role: String,
    /// The client's name (`kitchen-screen-1`, a guest id): a guest's own documents are
    /// named after it.
    pub name: String,
    /// Unix seconds after which the token is refused and its connections cut.
    pub expires: u64,
}

/// The token key and revocation list of one device (`<data>/web-tokens/`).
#[derive(Clone, Debug)]
pub struct TokenBook {
    dir: PathBuf,
    key: hmac::Key,
    revoked: Arc<RwLock<HashSet<String>>>,
}

fn io(dir: &Path) -> impl Fn(std::io::Error) -> WsError + '_ {
    move |source| WsError::TokenFiles {
        dir: dir.to_path_buf(),
        source,
    }
}

impl TokenBook {
    /// Opens the book in `dir`, creating the key (32 random bytes, file mode 0600) on first use.
    pub fn open(dir: impl Into<PathBuf>) -> Result<TokenBook, WsError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key_path = dir.join(KEY_FILE);
        let secret = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => {
                return Err(WsError::TokenFiles {
                    source: std::io::Error::other(format!(
                        "{} is not 32 bytes; delete it to make a new key (every token issued \
                         so far stops working)",
                        key_path.display()
                    )),
                    dir,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                rand::rng().fill_bytes(&mut k);
                let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io(&dir))?;
                tmp.write_all(&k).map_err(io(&dir))?;
                tmp.as_file().sync_all().map_err(io(&dir))?;
                set_private(tmp.path()).map_err(io(&dir))?;
                tmp.persist(&key_path).map_err(|e| io(&dir)(e.error))?;
                k
            }
            Err(e) => return Err(io(&dir)(e)),
        };
        let book = TokenBook {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            revoked: Arc::new(RwLock::new(HashSet::new())),
            dir,
        };
        book.reload_revoked()?;
        Ok(book)
    }

    /// Issues a token for `role` and `name` in `site`, valid `ttl_secs` from `now_secs`.
    pub fn issue(
        &self,
        site: &SiteId,
        role: &Role,
        name: &str,
        now_secs: u64,
        ttl_secs: u64,
    ) -> Result<(String, TokenClaims), WsError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(WsError::InvalidRequest(format!(
                "client name {name:?}: use 1 to 64 letters, digits, '-' or '_' (e.g. kitchen-screen-1)"
            )));
        }
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let claims = TokenClaims {
            id: hex(&id),
            site: site.to_string(),
            role: role.to_string(),
            name: name.to_string(),
            expires: now_secs.saturating_add(ttl_secs),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize to JSON");
        let tag = hmac::sign(&self.key, &payload);
        Ok((
            format!("{PREFIX}.{}.{}", hex(&payload), hex(tag.as_ref())),
            claims,
        ))
    }

    /// Checks a presented token: its signature, its site, its expiry and the revocation list.
    pub fn check(&self, token: &str, site: &SiteId, now_secs: u64) -> Result<TokenClaims, WsError> {
        let refused = |why: &str| WsError::TokenRefused(why.to_string());
        let mut parts = token.trim().split('.');
        let (Some(PREFIX), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("not an outpost web token"));
        };
        let payload = unhex(payload).ok_or_else(|| refused("malformed payload"))?;
        let tag = unhex(tag).ok_or_else(|| refused("malformed signature"))?;
        hmac::verify(&self.key, &payload, &tag)
            .map_err(|_| refused("its signature is not this device's"))?;
        let claims: TokenClaims =
            serde_json::from_slice(&payload).map_err(|_| refused("malformed claims"))?;
        if claims.site != site.to_string() {
            return Err(refused(&format!("issued for site {}", claims.site)));
        }
        if now_secs >= claims.expires {
            return Err(refused("expired"));
        }
        if self.is_revoked(&claims.id) {
            return Err(refused(&format!("token {} was revoked", claims.id)));
        }
        Ok(claims)
    }

    /// Adds a token id to the revocation list (durably); running servers cut its
    /// connections when they next reload the list.
    pub fn revoke(&self, id: &str) -> Result<(), WsError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(WsError::InvalidRequest(format!(
                "token id {id:?}: the id `outpost token issue` printed (hex)"
            )));
        }
        let path = self.dir.join(REVOKED_FILE);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&self.dir))?;
        writeln!(f, "{id}").map_err(io(&self.dir))?;
        f.sync_all().map_err(io(&self.dir))?;
        self.revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
        Ok(())
    }

    /// Reads the revocation list again (another process may have added to it).
    pub fn reload_revoked(&self) -> Result<(), WsError> {
        let list = match std::fs::read_to_string(self.dir.join(REVOKED_FILE)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let set: HashSet<String> = list.lines().map(|l| l.trim().to_string()).collect();
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = set;
        Ok(())
    }

    /// Whether the token id is revoked (as of the last reload).
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }
}

#[cfg(unix)]
fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 8192 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_forgery_site_expiry_and_revocation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = TokenBook::open(dir.path()).expect("book");
        let site: SiteId = "lyon".parse().expect("valid");
        let kds: Role = "kds".parse().expect("valid");
        let (token, claims) = book
            .issue(&site, &kds, "screen-1", 1000, 60)
            .expect("issue");
        assert_eq!(book.check(&token, &site, 1010).expect("valid"), claims);
        assert!(book.check(&token, &site, 1060).is_err(), "expired");
        let other: SiteId = "paris-11".parse().expect("valid");
        assert!(book.check(&token, &other, 1010).is_err(), "another site");
        // A token whose claims were edited (role kds -> pos) fails its signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let forged = String::from_utf8(unhex(&parts[1]).expect("hex"))
            .expect("json")
            .replace("\"kds\"", "\"pos\"");
        parts[1] = hex(forged.as_bytes());
        assert!(book.check(&parts.join("."), &site, 1010).is_err(), "forged");
        // Another device's key (another book) does not verify it.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let book2 = TokenBook::open(dir2.path()).expect("book");
        assert!(book2.check(&token, &site, 1010).is_err());
        // Revocation, seen by a second handle after a reload.
        let again = TokenBook::open(dir.path()).expect("reopen");
        book.revoke(&claims.id).expect("revoke");
        assert!(book.check(&token, &site, 1010).is_err());
        assert!(again.check(&token, &site, 1010).is_ok(), "not reloaded yet");
        again.reload_revoked().expect("reload");
        assert!(again.check(&token, &site, 1010).is_err());
    }
}
