//! How far a write is acknowledged when it returns.

use crate::PeerId;

/// How far a write had got when it returned: what the app may tell its user ("saved",
/// "saved on this tablet only", "saved on the site").
///
/// What each level means, exactly (see `core/docs/design.md`, "Durability"):
/// - [`Acknowledged::InStore`]: in this device's store; on its disk within the store's
///   background flush (`Durability::Fast`).
/// - [`Acknowledged::ThisDevice`]: on this device's disk (its fsync returned). A
///   `Durability::Replicated` write gets this when no peer acknowledged it within the
///   timeout: it is not an error, the write is kept and sent to peers as soon as one is
///   reachable, but a device that dies now loses it.
/// - [`Acknowledged::Site`]: on this device's disk, and `peer` (another device of the site,
///   or the cloud) announced heads that include the change. A peer announces its heads only
///   after the changes it received are on its disk (`EngineConfig::durable_acks`), so the
///   change survives the loss of this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acknowledged {
    /// In the store; flushed to disk in the background.
    InStore,
    /// On this device's disk only.
    ThisDevice,
    /// On this device's disk and on `peer`'s.
    Site {
        /// The first peer known to hold the change on its disk.
        peer: PeerId,
    },
}

impl Acknowledged {
    /// Whether another device (or the cloud) holds the write on its disk.
    pub fn is_replicated(&self) -> bool {
        matches!(self, Acknowledged::Site { .. })
    }
}

impl std::fmt::Display for Acknowledged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acknowledged::InStore => {
                f.write_str("in the store (flushed to disk in the background)")
            }
            Acknowledged::ThisDevice => f.write_str("stored on this device only"),
            Acknowledged::Site { peer } => write!(f, "stored on this device and on {peer}"),
        }
    }
}
