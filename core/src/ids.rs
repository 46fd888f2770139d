//! Identities of sites, peers and roles.

use crate::name::ident_newtype;

ident_newtype!(
    /// A physical site (a restaurant, a shop), e.g. `paris-11`.
    SiteId, "site id", "paris-11"
);
ident_newtype!(
    /// One running outpost instance: a device of a site or a cloud peer, e.g. `pos-1`.
    ///
    /// Unique within a site. The transport binds it to the device's TLS certificate.
    PeerId, "peer id", "pos-1"
);
ident_newtype!(
    /// What a peer is for, e.g. `pos`, `kiosk`, `menu-board`, `kitchen` or `cloud`.
    ///
    /// The access [`Policy`](crate::Policy) grants read and write rights per role.
    Role, "role", "kiosk"
);

impl Role {
    /// The role of cloud peers, which serve every site of a fleet.
    pub fn cloud() -> Role {
        Role("cloud".into())
    }
}

/// Who a peer is: its site, its id and its role, as proven by its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PeerInfo {
    /// The site the peer belongs to (cloud peers use the fleet's name).
    pub site: SiteId,
    /// The peer's id, unique within its site.
    pub peer: PeerId,
    /// The peer's role.
    pub role: Role,
}

impl PeerInfo {
    /// Builds a peer identity from already validated parts.
    pub fn new(site: SiteId, peer: PeerId, role: Role) -> Self {
        PeerInfo { site, peer, role }
    }

    /// Parses `site`, `peer` and `role`, as in `PeerInfo::parse("paris-11", "pos-1", "pos")`.
    pub fn parse(site: &str, peer: &str, role: &str) -> Result<Self, crate::Error> {
        Ok(PeerInfo {
            site: site.parse()?,
            peer: peer.parse()?,
            role: role.parse()?,
        })
    }
}

impl std::fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.site, self.peer, self.role)
    }
}
