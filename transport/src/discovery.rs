//! LAN discovery by mDNS / DNS-SD.
//!
//! Every node announces a `_outpost._udp.local.` service whose TXT record names it:
//!
//! | key | value |
//! |---|---|
//! | `v` | `1`, the version of this record |
//! | `site` | its site id |
//! | `peer` | its peer id |
//! | `role` | its role |
//!
//! and browses for the others. The record is only a hint of whom to dial: identity is
//! established by the certificate in the TLS handshake, never by the record. To avoid
//! dialing each other at the same time, only the smaller peer of a pair dials (the same
//! rule that picks which duplicate connection to keep, see [`node`](crate::node)).
//!
//! The record logic below is always compiled (and unit tested); the mDNS daemon that
//! sends multicast exists only with the `discovery` cargo feature and only runs when
//! [`NodeConfig::discovery`](crate::node::NodeConfig::discovery) is set.

use outpost_core::{PeerInfo, Role};

use crate::error::{Error, Result};

/// The DNS-SD service type of outpost nodes.
pub const SERVICE_TYPE: &str = "_outpost._udp.local.";

/// The TXT record version written by [`txt_record`].
pub const TXT_VERSION: &str = "1";

/// The TXT record announcing `info`, as key/value pairs.
pub fn txt_record(info: &PeerInfo) -> Vec<(String, String)> {
    vec![
        ("v".into(), TXT_VERSION.into()),
        ("site".into(), info.site.to_string()),
        ("peer".into(), info.peer.to_string()),
        ("role".into(), info.role.to_string()),
    ]
}

/// Reads the identity announced in a TXT record. Keys are case-insensitive; the first
/// occurrence of a key wins (RFC 6763 §6.4); unknown keys are ignored.
pub fn parse_txt_record<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<PeerInfo> {
    let (mut v, mut site, mut peer, mut role) = (None, None, None, None);
    for (k, value) in pairs {
        let slot = match k.as_ref().to_ascii_lowercase().as_str() {
            "v" => &mut v,
            "site" => &mut site,
            "peer" => &mut peer,
            "role" => &mut role,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.as_ref().to_string());
        }
    }
    let bad = |reason: String| Error::InvalidName {
        what: "discovery TXT record",
        value: String::new(),
        reason,
    };
    match v.as_deref() {
        Some(TXT_VERSION) => {}
        Some(other) => {
            return Err(bad(format!(
                "unsupported version {other:?}; upgrade this node"
            )))
        }
        None => return Err(bad("no version key `v`".into())),
    }
    let missing = |key: &str| bad(format!("no `{key}` key"));
    let site = site.ok_or_else(|| missing("site"))?;
    let peer = peer.ok_or_else(|| missing("peer"))?;
    let role = role.ok_or_else(|| missing("role"))?;
    PeerInfo::parse(&site, &peer, &role).map_err(|e| bad(e.to_string()))
}

/// The DNS-SD instance name of a node: `<site>--<peer>`, unique within a fleet.
pub fn instance_name(info: &PeerInfo) -> String {
    format!("{}--{}", info.site, info.peer)
}

/// Whether `local` should dial a node that announced `remote`: not itself, of the same
/// site or a cloud peer (on either side), and only if `local` is the smaller of the two.
pub fn should_dial(local: &PeerInfo, remote: &PeerInfo) -> bool {
    let cloud = Role::cloud();
    let admitted = local.site == remote.site || local.role == cloud || remote.role == cloud;
    admitted && (&local.peer, &local.site) < (&remote.peer, &remote.site)
}

#[cfg(feature = "discovery")]
pub(crate) use daemon::Discovery;

#[cfg(feature = "discovery")]
mod daemon {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
    use outpost_core::PeerInfo;

    use super::*;

    /// A running mDNS announcer and browser.
    pub(crate) struct Discovery {
        daemon: ServiceDaemon,
        task: tokio::task::JoinHandle<()>,
    }

    impl std::fmt::Debug for Discovery {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Discovery").finish_non_exhaustive()
        }
    }

    impl Discovery {
        /// Announces this node and calls `on_found` with the address of every node worth
        /// dialing that shows up.
        pub(crate) fn start(
            local: &PeerInfo,
            local_addr: SocketAddr,
            on_found: Arc<dyn Fn(SocketAddr) + Send + Sync>,
        ) -> Result<Discovery> {
            let err = |e: mdns_sd::Error| Error::InvalidName {
                what: "mDNS service",
                value: instance_name(local),
                reason: e.to_string(),
            };
            let daemon = ServiceDaemon::new().map_err(err)?;
            let name = instance_name(local);
            let props = txt_record(local);
            let service = ServiceInfo::new(
                SERVICE_TYPE,
                &name,
                &format!("{name}.local."),
                (),
                local_addr.port(),
                props.as_slice(),
            )
            .map_err(err)?
            .enable_addr_auto();
            daemon.register(service).map_err(err)?;
            let events = daemon.browse(SERVICE_TYPE).map_err(err)?;
            let local = local.clone();
            let task = tokio::spawn(async move {
                while let Ok(event) = events.recv_async().await {
                    let ServiceEvent::ServiceResolved(info) = event else {
                        continue;
                    };
                    let pairs = info
                        .get_properties()
                        .iter()
                        .map(|p| (p.key().to_string(), p.val_str().to_string()));
                    let remote = match parse_txt_record(pairs.collect::<Vec<_>>()) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(name = info.get_fullname(), error = %e, "ignoring mDNS service");
                            continue;
                        }
                    };
                    if !should_dial(&local, &remote) {
                        continue;
                    }
                    // Prefer IPv4: link-local IPv6 needs a scope id that mDNS does not give.
                    let ip = info
                        .get_addresses()
                        .iter()
                        .copied()
                        .min_by_key(|ip| matches!(ip, IpAddr::V6(_)));
                    if let Some(ip) = ip {
                        let addr = SocketAddr::new(ip, info.get_port());
                        tracing::info!(peer = %remote, %addr, "discovered peer");
                        on_found(addr);
                    }
                }
            });
            Ok(Discovery { daemon, task })
        }

        /// Stops announcing and browsing.
        pub(crate) fn stop(self) {
            self.task.abort();
            let _ = self.daemon.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(site: &str, peer: &str, role: &str) -> PeerInfo {
        PeerInfo::parse(site, peer, role).expect("valid test identity")
    }

    #[test]
    fn txt_round_trips() {
        let p = info("lyon", "kiosk-1", "kiosk");
        let txt = txt_record(&p);
        assert_eq!(
            parse_txt_record(txt.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("parse"),
            p
        );
        assert_eq!(instance_name(&p), "lyon--kiosk-1");
    }

    #[test]
    fn txt_keys_are_case_insensitive_and_first_wins() {
        let pairs = [
            ("V", "1"),
            ("Site", "lyon"),
            ("peer", "pos-1"),
            ("peer", "pos-2"),
            ("role", "pos"),
            ("x", "y"),
        ];
        assert_eq!(
            parse_txt_record(pairs).expect("parse"),
            info("lyon", "pos-1", "pos")
        );
    }

    #[test]
    fn bad_txt_records_are_refused() {
        let cases: [&[(&str, &str)]; 5] = [
            &[("site", "lyon"), ("peer", "pos-1"), ("role", "pos")],
            &[
                ("v", "2"),
                ("site", "lyon"),
                ("peer", "pos-1"),
                ("role", "pos"),
            ],
            &[("v", "1"), ("peer", "pos-1"), ("role", "pos")],
            &[
                ("v", "1"),
                ("site", "Lyon!"),
                ("peer", "pos-1"),
                ("role", "pos"),
            ],
            &[("v", "1"), ("site", "lyon"), ("peer", ""), ("role", "pos")],
        ];
        for pairs in cases {
            assert!(
                parse_txt_record(pairs.iter().copied()).is_err(),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn only_the_smaller_peer_of_an_admitted_pair_dials() {
        let a = info("lyon", "kiosk-1", "kiosk");
        let b = info("lyon", "pos-1", "pos");
        assert!(should_dial(&a, &b));
        assert!(!should_dial(&b, &a));
        assert!(!should_dial(&a, &a));
        let paris = info("paris", "pos-2", "pos");
        assert!(!should_dial(&a, &paris) && !should_dial(&paris, &a));
        let cloud = info("acme", "cloud-1", "cloud");
        assert!(should_dial(&cloud, &paris) || should_dial(&paris, &cloud));
    }
}
