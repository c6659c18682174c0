//! Per-port counters: frames and bytes each way, and every drop by its named reason.
//!
//! A drop is counted once, on one port, by a reason that says which side it happened on:
//! reasons about what arrived (`Runt`, `BadSrcMac`, `LinkLocal`, `Hairpin`, `Isolated`, `Mtu`,
//! `PortDown` for a frame whose ingress or only egress is down, and the guard's `Spoofed*`,
//! `Rogue*`, `VlanNotAllowed` and `Malformed`) count on the ingress port; a monitor-mode guard
//! counts what it would have dropped in a separate `monitored` array and drops nothing;
//! reasons about writing (`TxFull`, `TxError`) count on the egress port that refused the frame.
//!
//! Counters are relaxed atomics: each is written by the worker that owns the port (rx) or the
//! worker that wrote the frame (tx), and read only for display, so no ordering is needed. The rx
//! and tx sides of a port sit on different cache lines: with two ports and two workers, worker A
//! counts rx on port a and tx on port b while worker B does the opposite, and sharing a line
//! would bounce it between the cores on every frame.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a frame was dropped. Every drop in the data plane has one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Source MAC is multicast, broadcast or all-zero.
    BadSrcMac,
    /// Destination is an IEEE 802.1D reserved group address (01:80:c2:00:00:0X): never forwarded.
    LinkLocal,
    /// The destination was learned on the ingress port itself.
    Hairpin,
    /// Both ends are isolated ports.
    Isolated,
    /// Payload larger than the egress port's MTU (dropped, never truncated).
    Mtu,
    /// The ingress port, or the known egress port, is down.
    PortDown,
    /// The egress port's queue was full (EAGAIN); the worker never blocks on it.
    TxFull,
    /// The egress write failed for another reason (the netdev vanished, EIO, ...).
    TxError,
    /// Guard: source MAC is not the host's nor one of its declared extra MACs.
    SpoofedMac,
    /// Guard: IPv4/IPv6 source address is not allowed on the port.
    SpoofedIp,
    /// Guard: ARP sender MAC is not the frame's, or sender IP is not allowed.
    SpoofedArp,
    /// Guard: IPv6 neighbour advertisement for a target the port does not own.
    SpoofedNd,
    /// Guard: DHCP server traffic (UDP 67→68 or 547→546) from a guarded port.
    RogueDhcp,
    /// Guard: ICMPv6 router advertisement from a guarded port.
    RogueRa,
    /// Guard: an 802.1Q / 802.1ad tagged frame from a guarded (access) port.
    VlanNotAllowed,
    /// Guard: an IPv4, IPv6 or ARP header that cannot be parsed, or whose lengths lie; on any
    /// port, a GSO super-frame whose headers do not match its virtio-net header.
    Malformed,
    /// Broadcast/multicast beyond the port's storm limit (`[switch] storm_limit` a second).
    StormControl,
    /// A GSO or partial-checksum frame for a port that cannot take one as it is (a socket port),
    /// and that could not be segmented or completed (malformed, or an unsupported GSO type).
    NeedsOffload,
    /// A stream peer sent a length prefix out of range; it was disconnected.
    BadLength,
    /// One of the switch's own loop probes came back on this port: a loop outside the switch.
    LoopDetected,
    /// The port is blocked for a while because it closed a loop.
    LoopBlocked,
    /// Addressed to the appliance (its MAC or the gateway address) but nothing it serves:
    /// only ARP for its address, ICMP echo, DHCP, DNS and the TCP it answers reach its queue.
    NotServed,
    /// Beyond the port's share of the appliance ([`SERVICE_PER_SEC`](super::SERVICE_PER_SEC)
    /// frames a second): one guest's flood cannot crowd out another's DHCP and DNS.
    ServiceLimit,
    /// A vxlan port received a VXLAN packet for another VNI.
    WrongVni,
    /// A vxlan port received a datagram from an address that is none of its remote VTEPs.
    UnknownVtep,
    /// Beyond the port's `ingress` limit (counted on the ingress port) or `egress` limit
    /// (counted on the egress port): see `rate.rs`.
    RateLimited,
}

impl DropReason {
    pub const COUNT: usize = 27;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::BadSrcMac,
        DropReason::LinkLocal,
        DropReason::Hairpin,
        DropReason::Isolated,
        DropReason::Mtu,
        DropReason::PortDown,
        DropReason::TxFull,
        DropReason::TxError,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::SpoofedArp,
        DropReason::SpoofedNd,
        DropReason::RogueDhcp,
        DropReason::RogueRa,
        DropReason::VlanNotAllowed,
        DropReason::Malformed,
        DropReason::StormControl,
        DropReason::NeedsOffload,
        DropReason::BadLength,
        DropReason::LoopDetected,
        DropReason::LoopBlocked,
        DropReason::NotServed,
        DropReason::ServiceLimit,
        DropReason::WrongVni,
        DropReason::UnknownVtep,
        DropReason::RateLimited,
    ];

    /// The snake_case name shown to users and used in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadSrcMac => "bad_src_mac",
            DropReason::LinkLocal => "link_local",
            DropReason::Hairpin => "hairpin",
            DropReason::Isolated => "isolated",
            DropReason::Mtu => "mtu",
            DropReason::PortDown => "port_down",
            DropReason::TxFull => "tx_full",
            DropReason::TxError => "tx_error",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::SpoofedNd => "spoofed_nd",
            DropReason::RogueDhcp => "rogue_dhcp",
            DropReason::RogueRa => "rogue_ra",
            DropReason::VlanNotAllowed => "vlan_not_allowed",
            DropReason::Malformed => "malformed",
            DropReason::StormControl => "storm_control",
            DropReason::NeedsOffload => "needs_offload",
            DropReason::BadLength => "bad_length",
            DropReason::LoopDetected => "loop_detected",
            DropReason::LoopBlocked => "loop_blocked",
            DropReason::NotServed => "not_served",
            DropReason::ServiceLimit => "service_limit",
            DropReason::WrongVni => "wrong_vni",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::RateLimited => "rate_limited",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// The live counters of one port. Aligned to a cache line so two ports' counters, updated by
/// different workers, never share one; its tx side has a line of its own too.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PortCounters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx: TxCounters,
    /// Source MACs not learned because the port's or the global FDB cap was reached.
    fdb_full: AtomicU64,
    /// Times the port's link went down (a netdev vanished, a socket peer left).
    link_downs: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
    /// Frames a guard in monitor mode would have dropped, by reason (they were forwarded).
    monitored: [AtomicU64; DropReason::COUNT],
}

impl PortCounters {
    /// Every counter back to zero (a slot reused by a new port).
    pub fn reset(&self) {
        for c in [
            &self.rx_frames,
            &self.rx_bytes,
            &self.tx.frames,
            &self.tx.bytes,
            &self.fdb_full,
            &self.link_downs,
        ] {
            c.store(0, Relaxed);
        }
        for c in self.drops.iter().chain(self.monitored.iter()) {
            c.store(0, Relaxed);
        }
    }

    /// Counts a frame a monitor-mode guard let through that enforcing would have dropped.
    pub fn count_monitored(&self, reason: DropReason) {
        self.monitored[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn count_rx(&self, bytes: usize) {
        self.rx_frames.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn count_tx(&self, bytes: usize) {
        self.tx.frames.fetch_add(1, Relaxed);
        self.tx.bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn count_fdb_full(&self) {
        self.fdb_full.fetch_add(1, Relaxed);
    }

    pub fn count_link_downs(&self, n: u64) {
        self.link_downs.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let mut drops = [0u64; DropReason::COUNT];
        for (d, a) in drops.iter_mut().zip(&self.drops) {
            *d = a.load(Relaxed);
        }
        let mut monitored = [0u64; DropReason::COUNT];
        for (d, a) in monitored.iter_mut().zip(&self.monitored) {
            *d = a.load(Relaxed);
        }
        CounterSnapshot {
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_frames: self.tx.frames.load(Relaxed),
            tx_bytes: self.tx.bytes.load(Relaxed),
            fdb_full: self.fdb_full.load(Relaxed),
            link_downs: self.link_downs.load(Relaxed),
            drops,
            monitored,
        }
    }
}

/// Frames and bytes written out of a port: by any worker, so on a cache line apart from rx.
#[derive(Debug, Default)]
#[repr(align(64))]
struct TxCounters {
    frames: AtomicU64,
    bytes: AtomicU64,
}

/// A plain copy of one port's counters, for display and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub fdb_full: u64,
    pub link_downs: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Would-be drops of a monitor-mode guard, by reason.
    pub monitored: [u64; DropReason::COUNT],
}

impl CounterSnapshot {
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    pub fn monitored(&self, reason: DropReason) -> u64 {
        self.monitored[reason.index()]
    }

    pub fn total_monitored(&self) -> u64 {
        self.monitored.iter().sum()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `reason=count` for every non-zero drop counter, e.g. `"mtu=3 tx_full=1"`; `"-"` if none.
    pub fn drops_summary(&self) -> String {
        let parts: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| self.drops(**r) > 0)
            .map(|r| format!("{}={}", r.name(), self.drops(*r)))
            .collect();
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
    }

    #[test]
    fn monitored_is_apart_from_drops() {
        let c = PortCounters::default();
        c.count_monitored(DropReason::SpoofedIp);
        let s = c.snapshot();
        assert_eq!(
            (s.monitored(DropReason::SpoofedIp), s.total_drops()),
            (1, 0)
        );
        assert_eq!(s.drops_summary(), "-");
    }

    #[test]
    fn snapshot_reflects_counts() {
        let c = PortCounters::default();
        c.count_rx(100);
        c.count_tx(60);
        c.count_drop(DropReason::Mtu);
        c.count_drop(DropReason::Mtu);
        let s = c.snapshot();
        assert_eq!(
            (s.rx_frames, s.rx_bytes, s.tx_frames, s.tx_bytes),
            (1, 100, 1, 60)
        );
        assert_eq!(s.drops(DropReason::Mtu), 2);
        assert_eq!(s.total_drops(), 2);
        assert_eq!(s.drops_summary(), "mtu=2");
    }
}
