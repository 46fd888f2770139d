//! Pairing a screen with a QR code: a POS app issues a scoped token for a kitchen screen or
//! a customer's phone and shows the URL that opens the page with it (see the README, "Web
//! clients").

use crate::error::{guard, OutpostError, Result};
use crate::outpost::Outpost;

/// What `pairScreenBlocking` returns: the token and where a screen uses it.
#[derive(Clone, Debug, uniffi::Record)]
pub struct ScreenPairing {
    /// The token, as the screen presents it (`?token=` on the WebSocket URL).
    pub token: String,
    /// Its id, for `revokeScreenBlocking`.
    pub token_id: String,
    /// The policy role the screen acts as, e.g. `kds`.
    pub role: String,
    /// The screen's name, e.g. `kitchen-screen-1` (a guest's own documents are
    /// `carts/<name>`).
    pub name: String,
    /// When the token stops working, in seconds since 1970 (UTC).
    pub expires_unix: u64,
    /// The kitchen display page with the token in its fragment (which never reaches a
    /// server or a log): `https://HOST:PORT/kds/#token=...&name=...`.
    pub url: String,
    /// The WebSocket URL an automerge-repo client joins, without the token:
    /// `wss://HOST:PORT/`.
    pub ws_url: String,
    /// What to show as a QR code for the screen to scan: `url`.
    pub qr_payload: String,
}

pub(crate) fn web_error(e: outpost_ws::WsError) -> OutpostError {
    use outpost_ws::WsError;
    match e {
        WsError::TokenFiles { .. } => OutpostError::storage(e.to_string()),
        WsError::TokenRefused(_) => OutpostError::not_permitted(e.to_string()),
        WsError::InvalidRequest(_) => OutpostError::invalid_value(e.to_string()),
        WsError::Bind { .. } => OutpostError::network(e.to_string()),
        WsError::Tls(_) => OutpostError::certificate(e.to_string()),
    }
}

#[uniffi::export]
impl Outpost {
    /// Where web clients join (`NodeConfig.ws_listen`) as `ip:port`; `None` when not served.
    pub fn web_address(&self) -> Option<String> {
        self.web_listener().map(|(a, _)| a.to_string())
    }

    /// Pairs a screen: issues a token for a web client of `role` (e.g. `kds` for a kitchen
    /// screen, `guest` for a customer's phone) named `name`, valid `ttl_secs`, and returns
    /// the URL to show as a QR code. `host` is how the screen reaches this device (an IP
    /// address, or for `wss` the name in the device's certificate, `outpost`, resolved by
    /// the site's DNS); `None`: the address `ws_listen` is bound to. Fails with
    /// `NotPermitted` if this device's role may not vouch for `role` (the policy's `vouch`:
    /// a POS for kds and guest), `InvalidConfig` without `ws_listen`.
    #[uniffi::method(default(host = None))]
    pub fn pair_screen_blocking(
        &self,
        role: String,
        name: String,
        ttl_secs: u64,
        host: Option<String>,
    ) -> Result<ScreenPairing> {
        guard("pairScreenBlocking", || {
            let (Some((addr, tls)), Some(tokens)) = (self.web_listener(), self.tokens()) else {
                return Err(OutpostError::invalid_config(
                    "this node serves no web clients: open it with ws_listen (e.g. \"0.0.0.0:7735\") to pair screens".into(),
                ));
            };
            let store = self.store_for_watch()?;
            let me = store.identity().cloned().ok_or_else(|| {
                OutpostError::invalid_config("pairing needs a node with a certificate".into())
            })?;
            let role: outpost_core::Role = role.parse()?;
            if !store.policy().may_vouch(&me.role, &role) {
                return Err(OutpostError::not_permitted(format!(
                    "a device of role {} may not vouch for web clients of role {role} (the policy's `vouch`); \
                     pair the screen from a device that may (by default a POS for kds and guest, a kitchen for kds)",
                    me.role
                )));
            }
            if ttl_secs == 0 {
                return Err(OutpostError::invalid_value(
                    "ttl_secs is 0: give how long the screen may stay paired, e.g. 43200 for 12 h"
                        .into(),
                ));
            }
            let host = match host {
                Some(h) if !h.trim().is_empty() => h.trim().to_string(),
                _ if !addr.ip().is_unspecified() => addr.ip().to_string(),
                _ => {
                    return Err(OutpostError::invalid_value(format!(
                        "ws_listen is {addr}, which a screen cannot dial: pass host, the address or name the screen reaches this device at"
                    )))
                }
            };
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host
            };
            let now = outpost_core::Timestamp::now().as_millis() / 1000;
            let (token, claims) = tokens
                .issue(&me.site, &role, &name, now, ttl_secs)
                .map_err(web_error)?;
            let (http, ws) = if tls {
                ("https", "wss")
            } else {
                ("http", "ws")
            };
            let port = addr.port();
            let url = format!(
                "{http}://{host}:{port}/kds/#token={token}&name={}",
                fragment_escape(&claims.name)
            );
            Ok(ScreenPairing {
                token,
                token_id: claims.id,
                role: claims.role,
                name: claims.name,
                expires_unix: claims.expires,
                qr_payload: url.clone(),
                url,
                ws_url: format!("{ws}://{host}:{port}/"),
            })
        })
    }

    /// Revokes a screen's token (`ScreenPairing.tokenId`): its connections are cut within
    /// a second and it is refused from then on.
    pub fn revoke_screen_blocking(&self, token_id: String) -> Result<()> {
        guard("revokeScreenBlocking", || {
            let tokens = self.tokens().ok_or_else(|| {
                OutpostError::invalid_config("openLocal nodes issue no tokens".into())
            })?;
            tokens.revoke(&token_id).map_err(web_error)
        })
    }
}

/// Percent-escapes what is not unreserved in a URL fragment value.
fn fragment_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
