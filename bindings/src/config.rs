//! How an app opens a node: [`NodeConfig`] and the certificates it carries.

use std::net::SocketAddr;
use std::path::Path;

use outpost_core::Policy;
use outpost_transport::DeviceCert;

use crate::error::{OutpostError, Result};

/// A device certificate, its private key and the fleet CA certificate, all PEM.
///
/// Issued by `FleetCa.issue` (or the fleet's provisioning tool) and stored by the app in
/// its keystore or data directory.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceCertificate {
    /// The device certificate (`cert.pem`).
    pub cert_pem: String,
    /// The device's private key (`key.pem`). Keep it private.
    pub key_pem: String,
    /// The fleet CA certificate (`ca.pem`), the only CA this device trusts.
    pub ca_pem: String,
}

impl std::fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("DeviceCertificate").finish_non_exhaustive()
    }
}

impl DeviceCertificate {
    pub(crate) fn to_device_cert(&self) -> Result<DeviceCert> {
        Ok(DeviceCert::from_pem(
            &self.cert_pem,
            &self.key_pem,
            &self.ca_pem,
        )?)
    }
}

impl From<&DeviceCert> for DeviceCertificate {
    fn from(c: &DeviceCert) -> Self {
        DeviceCertificate {
            cert_pem: c.cert_pem().to_string(),
            key_pem: c.key_pem().to_string(),
            ca_pem: c.ca_pem().to_string(),
        }
    }
}

/// How to open a node.
#[derive(Clone, Debug, uniffi::Record)]
pub struct NodeConfig {
    /// The directory where the node keeps its documents (created if missing), e.g. the
    /// app's files directory plus `/outpost`.
    pub data_dir: String,
    /// This device's certificate; its identity (site, device id, role) comes from it.
    pub certificate: DeviceCertificate,
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
}

/// A socket address from a string, or `InvalidConfig` naming the field.
fn socket_addr(field: &str, s: &str) -> Result<SocketAddr> {
    s.trim().parse().map_err(|e| {
        OutpostError::InvalidConfig(format!(
            "{field} {s:?} is not an ip:port address ({e}); use e.g. \"192.168.1.20:7733\" or \"127.0.0.1:0\""
        ))
    })
}

impl NodeConfig {
    /// The transport's configuration for this one.
    pub(crate) fn to_transport(&self) -> Result<outpost_transport::NodeConfig> {
        let cert = self.certificate.to_device_cert()?;
        if let Some(role) = &self.role {
            let expected: outpost_core::Role = role.parse()?;
            if cert.info().role != expected {
                return Err(OutpostError::InvalidConfig(format!(
                    "the certificate is for {} with role {}, but this app runs as role {expected}; \
                     provision this device with a {expected} certificate, or open without `role`",
                    cert.info().peer,
                    cert.info().role,
                )));
            }
        }
        if self.data_dir.trim().is_empty() {
            return Err(OutpostError::InvalidConfig(
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
        config.ticket_prefix = self
            .ticket_prefix
            .as_deref()
            .map(str::parse::<outpost_core::TicketPrefix>)
            .transpose()?;
        if let Some(json) = &self.policy_json {
            config.policy = serde_json::from_str::<Policy>(json).map_err(|e| {
                OutpostError::InvalidConfig(format!(
                    "policy_json is not an outpost policy ({e}); pass None for the default policy"
                ))
            })?;
        }
        Ok(config)
    }
}
