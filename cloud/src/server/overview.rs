//! What the cloud knows of each site: when it was last heard from, its devices, backlog and
//! soonest certificate expiry, from the cloud's own sessions and from the site's `health`
//! document, which every device writes locally and sync brings here (see
//! `outpost_transport::DeviceHealth`).

use std::collections::BTreeMap;

use outpost_core::{SiteId, Store, StoreOptions};
use outpost_transport::{DeviceHealth, HEALTH_DOC};

use super::Shared;

/// One site as the cloud sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SiteOverview {
    /// The site.
    pub site: SiteId,
    /// When a device of the site was last heard from, ms since the Unix epoch: by this
    /// cloud (connected now counts as now), or the newest `updated_ms` of its devices'
    /// health. `None`: never.
    pub last_seen_ms: Option<u64>,
    /// Whether a device of the site is connected now.
    pub online: bool,
    /// Devices of the site connected now.
    pub connected: u64,
    /// Devices of the site: those the cloud's engine knows or that publish their health.
    pub devices: u64,
    /// Changes waiting to travel: what the cloud holds that the site's devices lack, plus
    /// what the devices reported they had not sent yet (their health).
    pub backlog: u64,
    /// The soonest expiry of a device certificate of the site (from their health), ms
    /// since the Unix epoch.
    pub cert_not_after_ms: Option<u64>,
    /// Each device's last published health, by device id.
    pub health: BTreeMap<String, DeviceHealth>,
}

/// The devices' health published in a site, read from the cloud's copy of its `health`
/// document (without loading the site).
pub(crate) fn site_health(
    db: &outpost_core::Database,
    site: &SiteId,
) -> BTreeMap<String, DeviceHealth> {
    let doc = HEALTH_DOC
        .parse()
        .expect("the health document's name is valid");
    let store = match Store::on_db(
        db.clone(),
        &super::admin::namespace(site),
        StoreOptions::default(),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%site, error = %e, "cannot read the site's health");
            return BTreeMap::new();
        }
    };
    match store.get(&doc, "/devices") {
        Ok(Some(serde_json::Value::Object(devices))) => devices
            .into_iter()
            // A device that published an older or broken schema is left out, not fatal.
            .filter_map(|(id, v)| Some((id, serde_json::from_value(v).ok()?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

impl Shared {
    /// Every site the cloud holds or has seen since it started, sorted by site.
    pub(crate) fn site_overview(&self) -> Vec<SiteOverview> {
        let stats = self.metrics.sites();
        let mut sites: Vec<SiteId> = super::admin::sites(&self.db);
        sites.extend(stats.keys().cloned());
        sites.sort();
        sites.dedup();
        let now = outpost_core::Timestamp::now().as_millis();
        sites
            .into_iter()
            .map(|site| {
                let s = stats.get(&site).cloned().unwrap_or_default();
                let health = site_health(&self.db, &site);
                let online = s.connected > 0;
                let reported = health.values().map(|h| h.updated_ms).max();
                let seen = if online {
                    Some(now)
                } else {
                    (s.last_seen_ms > 0).then_some(s.last_seen_ms)
                };
                SiteOverview {
                    last_seen_ms: seen.max(reported),
                    online,
                    connected: s.connected,
                    devices: s.devices.max(health.len() as u64),
                    backlog: s.backlog + health.values().map(|h| h.backlog).sum::<u64>(),
                    cert_not_after_ms: health
                        .values()
                        .map(|h| h.cert_not_after_ms)
                        .filter(|t| *t > 0)
                        .min(),
                    health,
                    site,
                }
            })
            .collect()
    }
}
