//! `outpost token ...`: scoped tokens for web clients (automerge-repo over WebSocket,
//! `outpost serve --ws-listen`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use outpost_core::Role;
use outpost_ws::TokenBook;

/// `outpost token ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a token for a web client (a kitchen screen, a customer's phone) and print it
    /// with its id as JSON; the client passes it as `?token=` on the WebSocket URL.
    Issue {
        /// The policy role the client acts as, e.g. `kds` or `guest`; this device's role
        /// must be allowed to vouch for it (the policy's `vouch`).
        #[arg(long)]
        role: String,
        /// The client's name, e.g. `kitchen-screen-1` (a guest's own documents are
        /// `carts/<name>`).
        #[arg(long)]
        name: String,
        /// How long it is valid: `30m`, `12h`, `7d` or seconds.
        #[arg(long, default_value = "12h")]
        ttl: String,
    },
    /// Revoke a token by its id: a running `outpost serve` cuts its connections within a
    /// second and refuses it from then on.
    Revoke {
        /// The id printed by `outpost token issue`.
        id: String,
    },
}

/// Where a device keeps its token key and revocation list.
pub(crate) fn book_dir(dir: &Path) -> PathBuf {
    dir.join("web-tokens")
}

fn parse_ttl(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("invalid --ttl {s:?}: give e.g. 30m, 12h, 7d or seconds"))?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        'd' => n * 86_400,
        _ => return Err(anyhow!("invalid --ttl {s:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

pub(crate) fn run(dir: &Path, cert_dir: Option<&Path>, command: TokenCommand) -> Result<()> {
    // The data directory is checked (and its device known) before anything is written in it.
    let me = crate::data::identity(dir, cert_dir)?;
    let book = TokenBook::open(book_dir(dir))?;
    match command {
        TokenCommand::Issue { role, name, ttl } => {
            let me = me.ok_or_else(|| {
                anyhow!("tokens are issued by a device: pass --cert-dir DIR (made by `outpost cert issue`)")
            })?;
            let role: Role = role.parse().context("invalid --role")?;
            let policy = crate::data::policy();
            if !policy.may_vouch(&me.role, &role) {
                return Err(anyhow!(
                    "a device of role {} may not vouch for web clients of role {role}; \
                     issue the token on a device the policy's `vouch` allows (default: pos for kds and guest, kitchen for kds)",
                    me.role
                ));
            }
            let ttl = parse_ttl(&ttl)?;
            let now = outpost_core::Timestamp::now().as_millis() / 1000;
            let (token, claims) = book.issue(&me.site, &role, &name, now, ttl.as_secs())?;
            println!(
                "{}",
                serde_json::json!({
                    "token": token,
                    "id": claims.id,
                    "role": claims.role,
                    "name": claims.name,
                    "site": claims.site,
                    "expires": claims.expires,
                })
            );
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            book.revoke(&id)?;
            println!("revoked {id}");
            Ok(())
        }
    }
}
