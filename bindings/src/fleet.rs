//! Certificates for provisioning tools and tests: the fleet CA and device certificates.

use std::path::Path;
use std::sync::Arc;

use outpost_core::PeerInfo;
use outpost_transport::DeviceCert;

use crate::config::DeviceCertificate;
use crate::error::{guard, Result};

/// The certificate authority of a fleet. It issues one certificate per device.
///
/// Apps on devices never hold it: they get a `DeviceCertificate` from the fleet's
/// provisioning. It is exposed for provisioning tools and tests.
#[derive(Debug, uniffi::Object)]
pub struct FleetCa {
    inner: outpost_transport::FleetCa,
}

#[uniffi::export]
impl FleetCa {
    /// Creates a new fleet CA with a fresh key; `fleet_name` ends up in its common name.
    #[uniffi::constructor]
    pub fn generate(fleet_name: String) -> Result<Arc<FleetCa>> {
        guard("FleetCa.generate", || {
            Ok(Arc::new(FleetCa {
                inner: outpost_transport::FleetCa::generate(&fleet_name)?,
            }))
        })
    }

    /// Loads a fleet CA from its certificate and private key, PEM.
    #[uniffi::constructor]
    pub fn from_pem(cert_pem: String, key_pem: String) -> Result<Arc<FleetCa>> {
        guard("FleetCa.fromPem", || {
            Ok(Arc::new(FleetCa {
                inner: outpost_transport::FleetCa::from_pem(&cert_pem, &key_pem)?,
            }))
        })
    }

    /// Loads a fleet CA saved with `save` (`ca.pem` and `ca.key` in `dir`).
    #[uniffi::constructor]
    pub fn load(dir: String) -> Result<Arc<FleetCa>> {
        guard("FleetCa.load", || {
            Ok(Arc::new(FleetCa {
                inner: outpost_transport::FleetCa::load(Path::new(&dir))?,
            }))
        })
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`.
    pub fn save(&self, dir: String) -> Result<()> {
        guard("FleetCa.save", || Ok(self.inner.save(Path::new(&dir))?))
    }

    /// The CA certificate, PEM: what every device trusts.
    pub fn cert_pem(&self) -> String {
        self.inner.cert_pem().to_string()
    }

    /// Issues a certificate for device `peer` of `site` with `role`, e.g.
    /// `issue("paris-11", "kiosk-1", "kiosk")`.
    pub fn issue(
        &self,
        site: String,
        peer: String,
        role: String,
    ) -> Result<Arc<DeviceCertificate>> {
        guard("FleetCa.issue", || {
            let info = PeerInfo::parse(&site, &peer, &role)?;
            Ok(Arc::new(self.inner.issue(&info)?.into()))
        })
    }

    /// Revokes device `peer` of `site` (every certificate of it): the record to hand to any
    /// running node (`Outpost.revoke`) or to the cloud, from where it spreads by sync.
    pub fn revoke(&self, site: String, peer: String, reason: String) -> Result<Vec<u8>> {
        guard("FleetCa.revoke", || {
            let record = self
                .inner
                .revoke(&site.parse()?, &peer.parse()?, None, &reason)?;
            Ok(record.to_bytes())
        })
    }
}

/// Reads a device certificate saved with `save_device_certificate` (or the fleet tool):
/// `cert.pem`, `key.pem` and `ca.pem` in `dir`. Checks that they belong together.
#[uniffi::export]
pub fn load_device_certificate(dir: String) -> Result<Arc<DeviceCertificate>> {
    guard("loadDeviceCertificate", || {
        Ok(Arc::new(DeviceCert::load(Path::new(&dir))?.into()))
    })
}

/// Writes a device certificate as `cert.pem`, `key.pem` (mode 0600) and `ca.pem` into `dir`.
#[uniffi::export]
pub fn save_device_certificate(certificate: Arc<DeviceCertificate>, dir: String) -> Result<()> {
    guard("saveDeviceCertificate", || {
        Ok(certificate.device_cert().save(Path::new(&dir))?)
    })
}

/// The identity (site, device id, role) a device certificate carries.
#[uniffi::export]
pub fn certificate_identity(
    certificate: Arc<DeviceCertificate>,
) -> Result<crate::types::PeerIdentity> {
    guard("certificateIdentity", || {
        Ok(certificate.device_cert().info().into())
    })
}

/// Moves the store in the data directory `dir` to the storage engine `to` (`"sled"` or
/// `"redb"`), with the app's `Outpost` closed (an open store is refused). Every entry is
/// copied and compared before the files are swapped; interrupted (the app killed, the
/// battery at 0 %), calling it again finishes it. Returns a one-line summary.
#[uniffi::export]
pub fn migrate_storage(dir: String, to: String) -> Result<String> {
    guard("migrateStorage", || {
        let to: outpost_core::StorageEngine = to.parse()?;
        let r = outpost_core::migrate(Path::new(&dir), to)?;
        Ok(match r.old_files {
            None => format!("{dir} is on {to} already"),
            Some(old) => format!(
                "moved {dir} from {} to {}: {} documents, {} entries copied and compared; old files in {}",
                r.from,
                r.to,
                r.documents,
                r.entries,
                old.display()
            ),
        })
    })
}
