//! `outpost cert ca`, `outpost cert issue` and `outpost cert show`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use outpost_core::{PeerInfo, Policy, Timestamp};
use outpost_transport::{DeviceCert, FleetCa};
use serde_json::json;

use crate::time::iso8601;
use crate::CertCommand;

pub(crate) fn run(command: CertCommand, policy: &Policy) -> Result<()> {
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
            days,
            force,
        } => {
            let info = PeerInfo::parse(&site, &device, &role)?;
            let known = known_roles(policy);
            if !force && !known.contains(&info.role.to_string()) {
                bail!(
                    "the role {role:?} is not named by the fleet's policy (roles: {}); check the spelling, \
                     give the fleet's policy with --policy FILE, or pass --force to issue it anyway",
                    known.join(", ")
                );
            }
            if !force {
                if let Ok(existing) = DeviceCert::load(&out) {
                    bail!(
                        "{} already holds the certificate of {}; use another directory, or pass --force to replace it",
                        out.display(),
                        existing.info()
                    );
                }
                if out.join("key.pem").exists() || out.join("cert.pem").exists() {
                    bail!(
                        "{} already holds certificate files (cert.pem or key.pem); use another directory, or pass --force to replace them",
                        out.display()
                    );
                }
            }
            let ca = FleetCa::load(&ca).map_err(|e| {
                anyhow!(
                    "cannot load the fleet CA from {}: {}; create one with `outpost cert ca --out {}`",
                    ca.display(),
                    crate::data::for_users(&e),
                    ca.display()
                )
            })?;
            let cert = ca.issue_valid_for(&info, time::Duration::days(i64::from(days)))?;
            cert.save(&out).with_context(|| {
                format!(
                    "cannot write the certificate into {}; check that it is a writable directory",
                    out.display()
                )
            })?;
            // Read back what was written, so a bad directory fails here and not at `serve`.
            DeviceCert::load(&out).with_context(|| {
                format!(
                    "the certificate written into {} cannot be read back; check the disk and issue it again",
                    out.display()
                )
            })?;
            let day_s = if days == 1 { "day" } else { "days" };
            eprintln!(
                "issued a certificate for {info} in {} (cert.pem, key.pem, ca.pem), valid {days} {day_s}",
                out.display()
            );
            Ok(())
        }
        CertCommand::Revoke {
            ca,
            site,
            device,
            cert,
            reason,
            out,
        } => {
            let site: outpost_core::SiteId = site.parse()?;
            let device: outpost_core::PeerId = device.parse()?;
            let ca = FleetCa::load(&ca).map_err(|e| {
                anyhow!(
                    "cannot load the fleet CA from {}: {}; revocations are signed with the key of \
                     the CA that issued the device (ca.key, from `outpost cert ca`)",
                    ca.display(),
                    crate::data::for_users(&e)
                )
            })?;
            let der = match &cert {
                None => None,
                Some(path) => {
                    let pem = std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read {}; give the device's cert.pem", path.display())
                    })?;
                    let (_, pem) =
                        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| {
                            anyhow!(
                                "{} is not a PEM certificate ({e}); give the device's cert.pem",
                                path.display()
                            )
                        })?;
                    let der = pem.contents;
                    let info = outpost_transport::peer_info_from_cert(&der)?;
                    if info.site != site || info.peer != device {
                        bail!(
                            "{} is the certificate of {info}, not of {site}/{device}; give the \
                             certificate of the device you revoke",
                            path.display()
                        );
                    }
                    Some(der.to_vec())
                }
            };
            let record = ca.revoke(&site, &device, der.as_deref(), &reason)?;
            crate::control::write_file_durably(&out, &record.to_bytes())
                .with_context(|| format!("cannot write the revocation into {}", out.display()))?;
            eprintln!(
                "wrote the revocation of {site}/{device}{} to {}; hand it to any running device \
                 (`outpost revoke {}`) or to the cloud (POST it to /revocations): it spreads to \
                 every device of the site",
                if cert.is_some() {
                    " (this certificate only)"
                } else {
                    ""
                },
                out.display(),
                out.display()
            );
            Ok(())
        }
        CertCommand::Show { dir, json } => {
            let cert = crate::data::load_cert(&dir)?;
            let validity = validity(&cert)?;
            let now = Timestamp::now();
            let info = cert.info();
            let fleet = fleet_of(&cert).unwrap_or_default();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "site": info.site.to_string(),
                        "peer": info.peer.to_string(),
                        "role": info.role.to_string(),
                        "fleet": fleet,
                        "not_before": iso8601(validity.not_before),
                        "not_after": iso8601(validity.not_after),
                        "expired": validity.expired(now),
                    }))?
                );
            } else {
                println!("device:    {}/{}", info.site, info.peer);
                println!("role:      {}", info.role);
                println!("fleet:     {fleet}");
                println!(
                    "valid:     {} to {}",
                    iso8601(validity.not_before),
                    iso8601(validity.not_after)
                );
                if validity.expired(now) {
                    println!(
                        "status:    EXPIRED; issue a new one with `outpost cert issue ... --force`"
                    );
                } else {
                    println!("status:    valid");
                }
            }
            Ok(())
        }
    }
}

/// Every role the policy names (readers, writers, relays), plus `cloud`.
fn known_roles(policy: &Policy) -> Vec<String> {
    let mut roles = std::collections::BTreeSet::new();
    roles.insert("cloud".to_string());
    for rule in policy.contexts.values().chain([&policy.default_rule]) {
        roles.extend(rule.read.iter().map(|r| r.to_string()));
        roles.extend(rule.write.iter().map(|r| r.to_string()));
    }
    roles.extend(policy.relay_roles.iter().map(|r| r.to_string()));
    roles.into_iter().collect()
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validity {
    pub(crate) not_before: Timestamp,
    pub(crate) not_after: Timestamp,
}

impl Validity {
    pub(crate) fn expired(&self, now: Timestamp) -> bool {
        now.as_millis() >= self.not_after.as_millis()
    }
}

/// The validity period written in a device certificate.
pub(crate) fn validity(cert: &DeviceCert) -> Result<Validity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert_der())
        .map_err(|e| anyhow!("cert.pem is not a readable certificate ({e}); issue a new one with `outpost cert issue`"))?;
    let ms = |t: x509_parser::time::ASN1Time| {
        Timestamp(u64::try_from(t.timestamp()).unwrap_or(0) * 1000)
    };
    Ok(Validity {
        not_before: ms(parsed.validity().not_before),
        not_after: ms(parsed.validity().not_after),
    })
}

/// The fleet name in the issuer's common name (`outpost fleet NAME`).
fn fleet_of(cert: &DeviceCert) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert_der()).ok()?;
    let cn = parsed
        .issuer()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn.strip_prefix("outpost fleet ").unwrap_or(&cn).to_string())
}

/// Fails when the certificate has expired, with what to do.
pub(crate) fn check_not_expired(cert: &DeviceCert, dir: &Path) -> Result<()> {
    let v = validity(cert)?;
    if v.expired(Timestamp::now()) {
        bail!(
            "the certificate of {} in {} expired on {}; peers will refuse it. Issue a new one with \
             `outpost cert issue --ca CA_DIR --site {} --device {} --role {} --out {} --force`",
            cert.info(),
            dir.display(),
            iso8601(v.not_after),
            cert.info().site,
            cert.info().peer,
            cert.info().role,
            dir.display()
        );
    }
    Ok(())
}
