//! `outpost cert ca` and `outpost cert issue`.

use anyhow::{bail, Context, Result};
use outpost_core::PeerInfo;
use outpost_transport::{DeviceCert, FleetCa};

use crate::CertCommand;

pub(crate) fn run(command: CertCommand) -> Result<()> {
    match command {
        CertCommand::Ca { out, fleet, force } => {
            if out.join("ca.key").exists() && !force {
                bail!(
                    "{} already holds a fleet CA (ca.key); every device certificate of the fleet depends on it. \
                     Use another directory, or pass --force to replace it",
                    out.display()
                );
            }
            let ca = FleetCa::generate(&fleet)?;
            ca.save(&out)?;
            eprintln!(
                "created fleet CA {fleet:?} in {} (ca.pem, ca.key); keep ca.key offline",
                out.display()
            );
            Ok(())
        }
        CertCommand::Issue {
            ca,
            site,
            device,
            role,
            out,
        } => {
            let info = PeerInfo::parse(&site, &device, &role)?;
            let ca = FleetCa::load(&ca).with_context(|| {
                format!(
                    "cannot load the fleet CA from {}; create one with `outpost cert ca --out {}`",
                    ca.display(),
                    ca.display()
                )
            })?;
            let cert = ca.issue(&info)?;
            cert.save(&out)?;
            // Read back what was written, so a bad directory fails here and not at `serve`.
            DeviceCert::load(&out)?;
            eprintln!(
                "issued a certificate for {info} in {} (cert.pem, key.pem, ca.pem)",
                out.display()
            );
            Ok(())
        }
    }
}
