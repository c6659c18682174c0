//! 802.1Q VLAN membership of a port, as the forwarding decision reads it.
//!
//! Every frame inside the switch belongs to one VLAN (1 to 4094). A port is either
//! - an *access* port of one VLAN (`vlan = N`; the default is VLAN 1, [`DEFAULT_VLAN`]): its
//!   frames are untagged on the wire, so an untagged frame it sends is in VLAN N, a frame of
//!   VLAN N leaves it untagged, and a tagged frame from it is dropped (`vlan_not_allowed`);
//! - or a *trunk* (`trunk = [10, 20, "30-39"]`): a frame tagged with an allowed VID is in that
//!   VLAN and leaves tagged; an untagged frame is in the `native` VLAN if there is one (and
//!   frames of the native VLAN leave untagged), else it is dropped (`vlan_not_allowed`); so is a
//!   frame tagged with a VID the trunk does not carry, a priority tag (VID 0) and any 802.1ad /
//!   Q-in-Q outer tag (one level of tags only).
//!
//! The switch keeps each port's membership in atomics ([`VlanState`]): the data path reads a
//! word and one bit of a 4096-bit map, never a lock; a live change (`Switch::set_vlan`) stores
//! the map, then the mode word, so a frame racing it sees the old or the new mode.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// The VLAN of ports without `vlan` or `trunk`: the kernel bridge's default PVID.
pub const DEFAULT_VLAN: u16 = 1;
/// The highest VID a frame may carry (4095 is reserved).
pub const MAX_VID: u16 = 4094;

/// A set of VIDs (1..=4094), as a bitmap (boxed: 512 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet(Box<[u64; 64]>);

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet(Box::new([0; 64]))
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl VlanSet {
    /// Adds `vid`; ignored outside 1..=4094.
    pub fn insert(&mut self, vid: u16) {
        if (1..=MAX_VID).contains(&vid) {
            self.0[usize::from(vid / 64)] |= 1 << (vid % 64);
        }
    }

    pub fn contains(&self, vid: u16) -> bool {
        vid <= MAX_VID && vid != 0 && self.0[usize::from(vid / 64)] & (1 << (vid % 64)) != 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=MAX_VID).filter(|&v| self.contains(v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

impl FromIterator<u16> for VlanSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut s = VlanSet::default();
        for v in iter {
            s.insert(v);
        }
        s
    }
}

/// A port's VLAN membership (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortVlan {
    /// Untagged, in this one VLAN.
    Access(u16),
    /// Tagged for the VLANs of `allowed`; untagged for `native`, if any.
    Trunk {
        allowed: VlanSet,
        native: Option<u16>,
    },
}

impl Default for PortVlan {
    fn default() -> Self {
        PortVlan::Access(DEFAULT_VLAN)
    }
}

impl PortVlan {
    /// The VLAN whose frames cross the port untagged, if any.
    pub fn untagged(&self) -> Option<u16> {
        match self {
            PortVlan::Access(v) => Some(*v),
            PortVlan::Trunk { native, .. } => *native,
        }
    }

    /// Whether the port carries `vid` at all (tagged or not).
    pub fn carries(&self, vid: u16) -> bool {
        self.untagged() == Some(vid)
            || matches!(self, PortVlan::Trunk { allowed, .. } if allowed.contains(vid))
    }
}

/// The mode word: bit 31 trunk, bits 0..12 the untagged VID (0: none).
const TRUNK: u32 = 1 << 31;

/// A port's membership for the data path: lock-free reads (see the module documentation).
#[derive(Debug)]
pub(super) struct VlanState {
    mode: AtomicU32,
    allowed: [AtomicU64; 64],
}

impl VlanState {
    pub(super) fn new(v: &PortVlan) -> VlanState {
        let s = VlanState {
            mode: AtomicU32::new(0),
            allowed: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        s.set(v);
        s
    }

    pub(super) fn set(&self, v: &PortVlan) {
        let words = match v {
            PortVlan::Access(_) => [0; 64],
            PortVlan::Trunk { allowed, .. } => *allowed.0,
        };
        for (a, w) in self.allowed.iter().zip(words) {
            a.store(w, Relaxed);
        }
        let trunk = if matches!(v, PortVlan::Trunk { .. }) {
            TRUNK
        } else {
            0
        };
        self.mode
            .store(trunk | u32::from(v.untagged().unwrap_or(0)), Relaxed);
    }

    /// The untagged VID (0: none).
    fn untagged(&self) -> u16 {
        (self.mode.load(Relaxed) & 0x0fff) as u16
    }

    fn tagged_allows(&self, vid: u16) -> bool {
        self.mode.load(Relaxed) & TRUNK != 0
            && vid != 0
            && vid <= MAX_VID
            && self.allowed[usize::from(vid / 64)].load(Relaxed) & (1 << (vid % 64)) != 0
    }

    /// The VLAN of a frame arriving with `tag` (`None`: untagged), or `None` if the port does
    /// not take it.
    pub(super) fn ingress(&self, tag: Option<u16>) -> Option<u16> {
        match tag {
            None => Some(self.untagged()).filter(|&v| v != 0),
            Some(vid) => self.tagged_allows(vid).then_some(vid),
        }
    }

    /// How a frame of `vid` leaves this port: `Some(true)` tagged, `Some(false)` untagged,
    /// `None` not at all.
    pub(super) fn egress(&self, vid: u16) -> Option<bool> {
        if vid != 0 && self.untagged() == vid {
            Some(false)
        } else if self.tagged_allows(vid) {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_and_trunk_membership() {
        let access = VlanState::new(&PortVlan::Access(10));
        assert_eq!(access.ingress(None), Some(10));
        assert_eq!(access.ingress(Some(10)), None, "access ports take no tags");
        assert_eq!(access.egress(10), Some(false));
        assert_eq!(access.egress(20), None);

        let trunk = VlanState::new(&PortVlan::Trunk {
            allowed: [10, 20].into_iter().collect(),
            native: None,
        });
        assert_eq!(
            trunk.ingress(None),
            None,
            "no native VLAN: untagged dropped"
        );
        assert_eq!(trunk.ingress(Some(20)), Some(20));
        assert_eq!(trunk.ingress(Some(30)), None);
        assert_eq!(trunk.ingress(Some(0)), None);
        assert_eq!(trunk.egress(10), Some(true));
        assert_eq!(trunk.egress(1), None);

        trunk.set(&PortVlan::Trunk {
            allowed: [10].into_iter().collect(),
            native: Some(1),
        });
        assert_eq!(trunk.ingress(None), Some(1));
        assert_eq!(trunk.egress(1), Some(false));
        assert_eq!(
            trunk.ingress(Some(20)),
            None,
            "a live change holds from the next frame"
        );
    }

    #[test]
    fn the_set_bounds_its_vids() {
        let s: VlanSet = [0, 1, 4094, 4095, 4096].into_iter().collect();
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 4094]);
        assert!(!s.contains(4095) && !s.contains(0));
    }
}
