//! How an app opens a node: [`NodeConfig`] and the certificates it carries.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use outpost_core::Policy;
use outpost_transport::DeviceCert;

use crate::error::{OutpostError, Result};

/// A device certificate, its private key and the fleet CA certificate it trusts.
///
/// An object, not a record, so that the private key never shows up in `toString()`,
/// `description`, `repr()` or a log line: printing one shows only whose certificate it is
/// (`DeviceCertificate(kiosk-1 of paris-11, role kiosk)`). The key is read only through the
/// explicit `keyPem()`, for the app to store it in the Android Keystore or the iOS Keychain
/// and to build the certificate again with `fromPem` from the bytes the app holds.
///
/// Made by `FleetCa.issue`, `loadDeviceCertificate` or `fromPem`, which all check that the
/// three parts belong together.
#[derive(Clone, uniffi::Object)]
#[uniffi::export(Display, Debug)]
pub struct DeviceCertificate {
    cert: DeviceCert,
}

impl std::fmt::Display for DeviceCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.cert.info();
        // Never the private key.
        write!(
            f,
            "DeviceCertificate({} of {}, role {})",
            info.peer, info.site, info.role
        )
    }
}

impl std::fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl DeviceCertificate {
    pub(crate) fn device_cert(&self) -> &DeviceCert {
        &self.cert
    }
}

impl From<DeviceCert> for DeviceCertificate {
    fn from(cert: DeviceCert) -> Self {
        DeviceCertificate { cert }
    }
}

#[uniffi::export]
impl DeviceCertificate {
    /// A device certificate from its three PEM texts (`cert.pem`, `key.pem`, `ca.pem`), e.g.
    /// the key read back from the Android Keystore or the iOS Keychain. Fails with
    /// `Certificate` if they do not belong together.
    #[uniffi::constructor]
    pub fn from_pem(cert_pem: String, key_pem: String, ca_pem: String) -> Result<Arc<Self>> {
        crate::error::guard("DeviceCertificate.fromPem", || {
            Ok(Arc::new(DeviceCertificate {
                cert: DeviceCert::from_pem(&cert_pem, &key_pem, &ca_pem)?,
            }))
        })
    }

    /// The device certificate, PEM (public).
    pub fn cert_pem(&self) -> String {
        self.cert.cert_pem().to_string()
    }

    /// The fleet CA certificate, PEM (public).
    pub fn ca_pem(&self) -> String {
        self.cert.ca_pem().to_string()
    }

    /// The device's private key, PEM: only to hand to secure storage (Android Keystore, iOS
    /// Keychain). Never log it.
    pub fn key_pem(&self) -> String {
        self.cert.key_pem().to_string()
    }

    /// Who this certificate says the device is.
    pub fn identity(&self) -> crate::types::PeerIdentity {
        self.cert.info().into()
    }
}

/// How to open a node.
#[derive(Clone, uniffi::Record)]
pub struct NodeConfig {
    /// The directory where the node keeps its documents (created if missing), e.g. the
    /// app's files directory plus `/outpost`.
    pub data_dir: String,
    /// This device's certificate; its identity (site, device id, role) comes from it.
    pub certificate: Arc<DeviceCertificate>,
    /// The role the app expects to run as, e.g. `kiosk`. When set, opening fails with
    /// `InvalidConfig` if the certificate is of another role, so that a kiosk app
    /// provisioned with a POS certificate does not start.
    #[uniffi(default = None)]
    pub role: Option<String>,
    /// The UDP address to listen on: `0.0.0.0:7733` by default, `127.0.0.1:0` for any
    /// free port on loopback (see `Outpost.localAddress`).
    #[uniffi(default = "0.0.0.0:7733")]
    pub listen: String,
    /// Peers to dial and keep dialing while the link is down, as `ip:port`.
    #[uniffi(default = [])]
    pub peers: Vec<String>,
    /// Find peers of the site on the LAN by mDNS (when the library is built with the
    /// `discovery` feature; otherwise a warning is logged and only `peers` are dialed).
    #[uniffi(default = false)]
    pub discovery: bool,
    /// The access policy as JSON (outpost-core's `Policy`); `None` for the restaurant
    /// default (menu: pos writes; stock: pos and kiosk; orders: pos, kiosk, kitchen).
    #[uniffi(default = None)]
    pub policy_json: Option<String>,
    /// `true`: a write returns once it is flushed to disk (survives power loss).
    /// `false`: it returns once stored and is flushed within ~100 ms (faster).
    #[uniffi(default = true)]
    pub durable_writes: bool,
    /// This device's ticket prefix, e.g. `K1` (1 to 8 upper-case letters and digits, unique
    /// within the site), for ticket numbers issued with orders (`transactWithTicket`);
    /// `None`: the device issues no tickets.
    #[uniffi(default = None)]
    pub ticket_prefix: Option<String>,
    /// Which received changes must be signed: `None` or `"required"` (the default: every
    /// change carries its author's valid signature), `"transitional"` (a fleet still running
    /// devices from before signed changes) or `"required-from:YYYY-MM-DD"`.
    #[uniffi(default = None)]
    pub signatures: Option<String>,
    /// How long `putReplicated` and `transactReplicated` wait for another device of the
    /// site (or the cloud) to hold the write on its disk before they return
    /// `WriteAck.ThisDevice` ("stored on this device only"), in milliseconds.
    #[uniffi(default = 3000)]
    pub replicated_timeout_ms: u32,
    /// The TCP address to serve web clients on (automerge-repo's WebSocket protocol and the
    /// kitchen display page at `/kds/`), e.g. `0.0.0.0:7735`; `None`: none. Screens paired
    /// with `pairScreenBlocking` join here with their token.
    #[uniffi(default = None)]
    pub ws_listen: Option<String>,
    /// Serve plain `ws` on `ws_listen` instead of `wss` (TLS with this device's certificate,
    /// which screens trusting the fleet CA check): tokens and documents then cross the
    /// network unencrypted, so only for guest roles on a guest network.
    #[uniffi(default = false)]
    pub ws_plain: bool,
    /// The key that encrypts the data directory at rest: 32 bytes the platform keeps
    /// (Android Keystore, iOS Keychain; see bindings/README.md). A new data directory opened
    /// with a key is encrypted; an encrypted one opens only with it (`InvalidConfig`
    /// otherwise, and the store is not changed). `None`: not encrypted.
    #[uniffi(default = None)]
    pub data_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field but the key's bytes.
        f.debug_struct("NodeConfig")
            .field("data_dir", &self.data_dir)
            .field("certificate", &self.certificate)
            .field("role", &self.role)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("discovery", &self.discovery)
            .field("policy_json", &self.policy_json)
            .field("durable_writes", &self.durable_writes)
            .field("ticket_prefix", &self.ticket_prefix)
            .field("signatures", &self.signatures)
            .field("replicated_timeout_ms", &self.replicated_timeout_ms)
            .field("ws_listen", &self.ws_listen)
            .field("ws_plain", &self.ws_plain)
            .field("data_key", &self.data_key.as_ref().map(|_| "(32 bytes)"))
            .finish()
    }
}

/// A socket address from a string, or `InvalidConfig` naming the field.
fn socket_addr(field: &str, s: &str) -> Result<SocketAddr> {
    s.trim().parse().map_err(|e| {
        OutpostError::invalid_config(format!(
            "{field} {s:?} is not an ip:port address ({e}); use e.g. \"192.168.1.20:7733\" or \"127.0.0.1:0\""
        ))
    })
}

impl NodeConfig {
    /// The web clients' server configuration, if `ws_listen` is set: its tokens in
    /// `<data_dir>/web-tokens` (where `outpost token issue` keeps them too).
    pub(crate) fn to_web(&self) -> Result<Option<outpost_ws::WsConfig>> {
        let Some(listen) = &self.ws_listen else {
            return Ok(None);
        };
        let addr = socket_addr("ws_listen", listen)?;
        let tokens = outpost_ws::TokenBook::open(Path::new(&self.data_dir).join("web-tokens"))
            .map_err(crate::pairing::web_error)?;
        let mut config = outpost_ws::WsConfig::new(addr, tokens);
        if !self.ws_plain {
            let cert = self.certificate.device_cert();
            let chain = vec![cert.cert_der().clone(), cert.ca_der().clone()];
            config = config
                .with_tls(chain, cert.private_key())
                .map_err(crate::pairing::web_error)?;
        }
        Ok(Some(config))
    }

    /// The transport's configuration for this one.
    pub(crate) fn to_transport(&self) -> Result<outpost_transport::NodeConfig> {
        let cert = self.certificate.device_cert().clone();
        if let Some(role) = &self.role {
            let expected: outpost_core::Role = role.parse()?;
            if cert.info().role != expected {
                return Err(OutpostError::invalid_config(format!(
                    "the certificate is for {} with role {}, but this app runs as role {expected}; \
                     provision this device with a {expected} certificate, or open without `role`",
                    cert.info().peer,
                    cert.info().role,
                )));
            }
        }
        if self.data_dir.trim().is_empty() {
            return Err(OutpostError::invalid_config(
                "data_dir is empty; pass a directory the app may write, e.g. its files directory plus /outpost".into(),
            ));
        }
        let mut config = outpost_transport::NodeConfig::new(Path::new(&self.data_dir), cert);
        config.listen = socket_addr("listen", &self.listen)?;
        config.static_peers = self
            .peers
            .iter()
            .map(|p| socket_addr("peer", p))
            .collect::<Result<_>>()?;
        config.discovery = self.discovery;
        config.replicated_timeout =
            std::time::Duration::from_millis(self.replicated_timeout_ms.into());
        config.ticket_prefix = self
            .ticket_prefix
            .as_deref()
            .map(str::parse::<outpost_core::TicketPrefix>)
            .transpose()?;
        if let Some(rule) = &self.signatures {
            config.signatures = rule.trim().parse()?;
        }
        if let Some(key) = &self.data_key {
            let key = outpost_core::storage::WrappingKey::from_bytes(key)
                .map_err(|e| OutpostError::invalid_config(format!("data_key: {e}")))?;
            config.data_key = Some(Arc::new(key));
        }
        if let Some(json) = &self.policy_json {
            config.policy = serde_json::from_str::<Policy>(json).map_err(|e| {
                OutpostError::invalid_config(format!(
                    "policy_json is not an outpost policy ({e}); pass None for the default policy"
                ))
            })?;
        }
        Ok(config)
    }
}
