//! The per-port guard: anti-spoofing, DHCP snooping and RA guard, as one pure function.
//!
//! # Theory of operation
//!
//! A guarded port is bound to one host. Its [`PortPolicy`] says which source MACs and which
//! IPv4/IPv6 source addresses that host may use. [`check`] runs on ingress, after the bad-source
//! check and before learning (so a refused frame never poisons the FDB), and returns
//! `Err(DropReason)` for a frame the host has no business sending:
//!
//! ```text
//! src MAC ∈ macs? ─► VLAN tag? ─► EtherType ─┬─ IPv4: source allowed (or DHCP client 0.0.0.0:68→67),
//! (SpoofedMac)       (VlanNotAllowed)        │        no UDP 67→68              (SpoofedIp, RogueDhcp)
//!                                            ├─ ARP:  sender MAC = src MAC, sender IP allowed
//!                                            │        or 0.0.0.0 in a request   (SpoofedArp)
//!                                            ├─ IPv6: source ::, own link-local, or allowed;
//!                                            │        no RA, no UDP 547→546, NA target allowed
//!                                            │                          (SpoofedIp, RogueRa, ...)
//!                                            └─ other EtherTypes: pass (MAC already checked)
//! ```
//!
//! Limits and decisions. There is no L4 protocol whitelist: from an allowed address IGMP, VRRP,
//! OSPF, GRE, SCTP all pass (keepalived and routing daemons depend on it). The parsers are
//! hand-written and bounds-checked; a header that cannot be read in full, or whose length fields
//! lie (claim more than the frame holds), is a `Malformed` drop, never a pass: a parser giving up
//! must not be a way around the guard. Ethernet padding after the IP datagram is allowed.
//! Fragments: the source address is in every fragment's header and is always checked. Only a
//! first fragment carries the L4 header; it must carry the whole UDP header (8 bytes) or ICMPv6
//! header it needs, or it is `Malformed` (the RFC 1858 "tiny fragment" trick would split the
//! ports across fragments). A non-first fragment has no ports to read and passes once its source
//! is allowed: it cannot rebuild a DHCP server message because the first fragment, which holds
//! the ports, was dropped, and an offset ≥ 8 bytes cannot overwrite the 8-byte UDP header.
//!
//! The policy is a value; the switch keeps one per port behind a lock and swaps or edits it
//! between frames (`Switch::set_policy`, `allow`, `bind_lease`).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::DropReason;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::udp::{UdpPacket, UDP_HEADER_LEN};

use crate::wire::{EtherType, MacAddr, ETHERNET_HEADER_LEN, VLAN_TAG_LEN};

const IPV6_HEADER_LEN: usize = 40;
const ARP_IPV4_LEN: usize = 28;
/// ICMPv6 type, code, checksum, reserved/flags, then the 16-byte target of an NS/NA.
const ICMPV6_NA_LEN: usize = 24;
/// Most IPv6 extension headers walked before giving up (and dropping as `Malformed`).
const MAX_IPV6_EXT_HEADERS: usize = 8;
/// The 802.1ad predecessor's TPID, still emitted by some gear: a tag like the others.
const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;

/// IP protocol numbers / IPv6 next headers the guard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpProtocol {
    HopByHop,
    Udp,
    Ipv6Route,
    Ipv6Frag,
    Ah,
    Icmpv6,
    Ipv6NoNext,
    Ipv6Opts,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        match v {
            0 => IpProtocol::HopByHop,
            17 => IpProtocol::Udp,
            43 => IpProtocol::Ipv6Route,
            44 => IpProtocol::Ipv6Frag,
            51 => IpProtocol::Ah,
            58 => IpProtocol::Icmpv6,
            59 => IpProtocol::Ipv6NoNext,
            60 => IpProtocol::Ipv6Opts,
            other => IpProtocol::Unknown(other),
        }
    }
}

/// Well-known UDP ports of DHCP.
const DHCPV4_SERVER_PORT: u16 = 67;
const DHCPV4_CLIENT_PORT: u16 = 68;
const DHCPV6_CLIENT_PORT: u16 = 546;
const DHCPV6_SERVER_PORT: u16 = 547;

/// ARP operations (RFC 826).
const ARP_OP_REQUEST: u16 = 1;
/// ARP hardware type Ethernet.
const ARP_HTYPE_ETHERNET: u16 = 1;

/// ICMPv6 types (RFC 4861).
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;

/// A prefix type the allowed set can hold.
pub trait Prefix: Copy + Eq + std::fmt::Debug {
    type Addr: Copy;
    fn covers(&self, addr: &Self::Addr) -> bool;
}

impl Prefix for Ipv4Net {
    type Addr = Ipv4Addr;
    fn covers(&self, addr: &Ipv4Addr) -> bool {
        self.contains(addr)
    }
}

impl Prefix for Ipv6Net {
    type Addr = Ipv6Addr;
    fn covers(&self, addr: &Ipv6Addr) -> bool {
        self.contains(addr)
    }
}

/// A small set of allowed prefixes (single addresses are /32 or /128), shaped like boringtun's
/// `AllowedIps`. A port allows a handful of entries, so a linear scan beats a trie here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedIps<N> {
    nets: Vec<N>,
}

impl<N: Prefix> AllowedIps<N> {
    pub fn new() -> Self {
        AllowedIps { nets: Vec::new() }
    }

    /// Adds `net`; returns false if it was already there.
    pub fn insert(&mut self, net: N) -> bool {
        if self.nets.contains(&net) {
            return false;
        }
        self.nets.push(net);
        true
    }

    /// Removes exactly `net` (not other entries that overlap it); returns whether it was there.
    pub fn remove(&mut self, net: &N) -> bool {
        let before = self.nets.len();
        self.nets.retain(|n| n != net);
        self.nets.len() != before
    }

    /// Whether any entry covers `addr`.
    pub fn contains(&self, addr: &N::Addr) -> bool {
        self.nets.iter().any(|n| n.covers(addr))
    }

    pub fn iter(&self) -> impl Iterator<Item = &N> {
        self.nets.iter()
    }

    pub fn len(&self) -> usize {
        self.nets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

impl<N: Prefix> Extend<N> for AllowedIps<N> {
    fn extend<I: IntoIterator<Item = N>>(&mut self, iter: I) {
        for n in iter {
            self.insert(n);
        }
    }
}

impl<N: Prefix> FromIterator<N> for AllowedIps<N> {
    fn from_iter<I: IntoIterator<Item = N>>(iter: I) -> Self {
        let mut s = AllowedIps::new();
        for n in iter {
            s.insert(n);
        }
        s
    }
}

/// What the guard does with a frame it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardMode {
    /// Drop and count it.
    #[default]
    Enforce,
    /// Count it as a would-be drop and let it pass: for debugging a guest before enforcing.
    Monitor,
}

/// What one guarded port's host may send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortPolicy {
    /// The host's MAC and its declared extra MACs (VRRP virtual MAC, a nested bridge).
    pub macs: Vec<MacAddr>,
    /// The reservation and declared extra IPv4 addresses and prefixes.
    pub ipv4: AllowedIps<Ipv4Net>,
    /// Addresses leased to this port by the DHCP server, bound while the lease lives. Kept apart
    /// from `ipv4` so that a lease ending never removes a declared address.
    pub leased_ipv4: AllowedIps<Ipv4Net>,
    /// Declared IPv6 addresses and prefixes (besides `::` for DAD and the EUI-64 link-local),
    /// and the host's `ipv6` reservation.
    pub ipv6: AllowedIps<Ipv6Net>,
    /// Addresses leased to this port by the DHCPv6 server, bound while the lease lives (apart
    /// from `ipv6` for the same reason as `leased_ipv4`).
    pub leased_ipv6: AllowedIps<Ipv6Net>,
    /// The advertised SLAAC prefix (a /64): the host may use the address its MACs form in it
    /// (modified EUI-64, RFC 4862), and only that one.
    pub slaac: Option<Ipv6Net>,
    pub mode: GuardMode,
    /// Allow any fe80::/10 source, not just the EUI-64 one of `macs` (for guests with
    /// stable-privacy or random link-local addresses).
    pub allow_any_link_local: bool,
}

impl PortPolicy {
    /// An enforcing policy for a host with `mac` and, if it has one, its reserved `ipv4`.
    pub fn for_host(mac: MacAddr, ipv4: Option<Ipv4Addr>) -> PortPolicy {
        PortPolicy {
            macs: vec![mac],
            ipv4: ipv4.map(Ipv4Net::from).into_iter().collect(),
            ..PortPolicy::default()
        }
    }

    pub fn allows_mac(&self, mac: MacAddr) -> bool {
        self.macs.contains(&mac)
    }

    pub fn allows_ipv4(&self, addr: Ipv4Addr) -> bool {
        self.ipv4.contains(&addr) || self.leased_ipv4.contains(&addr)
    }

    /// A unicast source the host may use: its link-local (EUI-64 of one of its MACs, or any
    /// when configured) or a declared address. `::` is not included (see `check_ipv6`).
    pub fn allows_ipv6(&self, addr: Ipv6Addr) -> bool {
        if addr.is_unicast_link_local() {
            // Threat: a guest answering for another guest's link-local (NDP spoofing).
            // Assumption: guests derive their link-local from their MAC (RFC 4291 EUI-64)
            // unless the operator says otherwise with `any_link_local`.
            return self.allow_any_link_local
                || self.macs.iter().any(|m| eui64_link_local(*m) == addr)
                || self.ipv6.contains(&addr);
        }
        self.ipv6.contains(&addr) || self.leased_ipv6.contains(&addr) || self.is_own_slaac(addr)
    }

    /// Whether `addr` is the SLAAC address one of the host's MACs forms in the advertised
    /// prefix. Threat: a guest taking another host's SLAAC address (or the gateway's) inside
    /// the prefix. Assumption: SLAAC hosts use EUI-64 interface identifiers; a guest with
    /// RFC 7217 stable-privacy or RFC 8981 temporary addresses needs them declared (or DHCPv6).
    pub fn is_own_slaac(&self, addr: Ipv6Addr) -> bool {
        self.slaac.is_some_and(|p| {
            p.contains(&addr)
                && self
                    .macs
                    .iter()
                    .any(|m| crate::wire::ipv6::eui64(p.network(), *m) == addr)
        })
    }
}

/// fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A).
pub fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.octets();
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Whether `policy` lets `frame` (a whole Ethernet frame) in, and if not, why.
pub fn check(policy: &PortPolicy, frame: &[u8]) -> Result<(), DropReason> {
    check_at(policy, frame, ETHERNET_HEADER_LEN - 2)
}

/// [`check`] for a frame a trunk port took with its one 802.1Q tag: the same checks on what
/// the tag carries (a further tag inside is refused, `VlanNotAllowed`).
pub fn check_tagged(policy: &PortPolicy, frame: &[u8]) -> Result<(), DropReason> {
    check_at(policy, frame, ETHERNET_HEADER_LEN - 2 + VLAN_TAG_LEN)
}

/// The checks, with the EtherType that announces the L3 header at `et` (behind the tags the
/// port accepts).
fn check_at(policy: &PortPolicy, frame: &[u8], et: usize) -> Result<(), DropReason> {
    if frame.len() < et + 2 {
        return Err(DropReason::Malformed);
    }
    let src = MacAddr::from_bytes(&frame[6..12]);
    // Threat: a guest impersonating another machine at L2 (FDB poisoning, MAC flooding).
    // Assumption: the host uses only its own MAC and the extra MACs it declared.
    if !policy.allows_mac(src) {
        return Err(DropReason::SpoofedMac);
    }
    let payload = &frame[et + 2..];
    match EtherType::from(be16(frame, et)) {
        // Threat: a tag lets a guest hop into another VLAN on a trunk behind us, and hides the
        // L3 header from this guard. Guarded ports are access ports: tags are refused.
        EtherType::Vlan | EtherType::QinQ | EtherType::Unknown(ETHERTYPE_QINQ_LEGACY) => {
            Err(DropReason::VlanNotAllowed)
        }
        EtherType::Ipv4 => check_ipv4(policy, payload),
        EtherType::Arp => check_arp(policy, src, payload),
        EtherType::Ipv6 => check_ipv6(policy, payload),
        // Other EtherTypes carry no address this guard knows; the source MAC was checked, and
        // there is no protocol whitelist (the issue's rule: don't break what we don't know).
        EtherType::Unknown(_) => Ok(()),
    }
}

fn check_ipv4(policy: &PortPolicy, p: &[u8]) -> Result<(), DropReason> {
    // Lying lengths: a header longer than the datagram, or a datagram longer than the frame.
    // Shorter is fine (Ethernet pads to 60 bytes).
    let ip = Ipv4Packet::new_checked(p).ok_or(DropReason::Malformed)?;
    let proto = IpProtocol::from(ip.protocol());
    let src = ip.src_addr();
    // Only a first fragment has an L4 header; it must hold all 8 bytes of a UDP header.
    let udp_ports = if ip.is_first_fragment() && proto == IpProtocol::Udp {
        if ip.payload().len() < UDP_HEADER_LEN {
            return Err(DropReason::Malformed);
        }
        let udp = UdpPacket::new_unchecked(ip.payload());
        Some((udp.src_port(), udp.dst_port()))
    } else {
        None
    };
    if src.is_unspecified() {
        // A DHCP client has no address yet: DISCOVER/REQUEST go from 0.0.0.0:68 to :67. Anything
        // else from 0.0.0.0 (including a non-first fragment, whose ports we cannot see) is refused.
        return match udp_ports {
            Some((DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT)) => Ok(()),
            _ => Err(DropReason::SpoofedIp),
        };
    }
    // Threat: a guest using another host's (or the gateway's) address.
    if !policy.allows_ipv4(src) {
        return Err(DropReason::SpoofedIp);
    }
    // DHCP snooping. Threat: a rogue DHCP server handing out a false router or DNS server.
    // Assumption: the only DHCP server on the segment is ours; a guarded port never serves.
    if udp_ports == Some((DHCPV4_SERVER_PORT, DHCPV4_CLIENT_PORT)) {
        return Err(DropReason::RogueDhcp);
    }
    Ok(())
}

fn check_arp(policy: &PortPolicy, src: MacAddr, p: &[u8]) -> Result<(), DropReason> {
    // Only Ethernet/IPv4 ARP exists on this segment; anything else is refused as malformed.
    if p.len() < ARP_IPV4_LEN
        || be16(p, 0) != ARP_HTYPE_ETHERNET
        || EtherType::from(be16(p, 2)) != EtherType::Ipv4
        || p[4] != 6
        || p[5] != 4
    {
        return Err(DropReason::Malformed);
    }
    let op = be16(p, 6);
    let sender_mac = MacAddr::from_bytes(&p[8..14]);
    let sender_ip = ipv4_at(p, 14);
    // Threat: ARP cache poisoning with a MAC other than the frame's (checked against `macs`).
    if sender_mac != src {
        return Err(DropReason::SpoofedArp);
    }
    // RFC 5227 probes (requests with sender 0.0.0.0) must pass: duplicate address detection
    // breaks without them (libvirt's clean-traffic drops them). Gratuitous ARP for a declared
    // address passes like any other ARP from an allowed sender (MetalLB L2, keepalived).
    if sender_ip.is_unspecified() && op == ARP_OP_REQUEST {
        return Ok(());
    }
    // Threat: claiming the gateway's or another host's IP (MITM by ARP).
    if !policy.allows_ipv4(sender_ip) {
        return Err(DropReason::SpoofedArp);
    }
    Ok(())
}

fn check_ipv6(policy: &PortPolicy, p: &[u8]) -> Result<(), DropReason> {
    if p.len() < IPV6_HEADER_LEN || p[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let total = IPV6_HEADER_LEN + usize::from(be16(p, 4));
    if total > p.len() {
        return Err(DropReason::Malformed);
    }
    let packet = &p[..total];
    let src = ipv6_at(p, 8);
    let l4 = find_ipv6_l4(packet)?;
    if src.is_unspecified() {
        // `::` is a legitimate source only for DAD neighbour solicitations and MLD reports
        // (RFC 4862, RFC 3810), both ICMPv6. Anything else from `::` is refused.
        if !matches!(l4, Some((IpProtocol::Icmpv6, _))) {
            return Err(DropReason::SpoofedIp);
        }
    } else if !policy.allows_ipv6(src) {
        return Err(DropReason::SpoofedIp);
    }
    match l4 {
        Some((IpProtocol::Icmpv6, at)) => {
            let icmp = &packet[at..];
            if icmp.is_empty() {
                return Err(DropReason::Malformed);
            }
            match icmp[0] {
                // RA guard. Threat: a guest announcing itself as the router (RFC 6105).
                ICMPV6_ROUTER_ADVERTISEMENT => Err(DropReason::RogueRa),
                // Threat: NDP spoofing, advertising someone else's address as ours.
                ICMPV6_NEIGHBOR_ADVERTISEMENT => {
                    if icmp.len() < ICMPV6_NA_LEN {
                        return Err(DropReason::Malformed);
                    }
                    if policy.allows_ipv6(ipv6_at(icmp, 8)) {
                        Ok(())
                    } else {
                        Err(DropReason::SpoofedNd)
                    }
                }
                _ => Ok(()),
            }
        }
        Some((IpProtocol::Udp, at)) => {
            if packet.len() < at + UDP_HEADER_LEN {
                return Err(DropReason::Malformed);
            }
            // DHCPv6 server (547 → 546): the same threat as a rogue DHCPv4 server.
            if (be16(packet, at), be16(packet, at + 2)) == (DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT)
            {
                return Err(DropReason::RogueDhcp);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Walks the extension headers of `packet` (a whole IPv6 packet): `Some((protocol, offset))`
/// of the upper-layer header, `None` when there is none to read (a non-first fragment, ESP, no
/// next header), `Err(Malformed)` when the chain runs past the packet or is too long (RFC 7112:
/// a first fragment must hold the whole chain).
fn find_ipv6_l4(packet: &[u8]) -> Result<Option<(IpProtocol, usize)>, DropReason> {
    let mut next = IpProtocol::from(packet[6]);
    let mut at = IPV6_HEADER_LEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                (usize::from(*packet.get(at + 1).ok_or(DropReason::Malformed)?) + 1) * 8
            }
            IpProtocol::Ah => {
                (usize::from(*packet.get(at + 1).ok_or(DropReason::Malformed)?) + 2) * 4
            }
            IpProtocol::Ipv6Frag => {
                if packet.len() < at + 8 {
                    return Err(DropReason::Malformed);
                }
                if be16(packet, at + 2) & 0xfff8 != 0 {
                    // A non-first fragment: no upper-layer header here (see the module doc).
                    return Ok(None);
                }
                8
            }
            IpProtocol::Ipv6NoNext => return Ok(None),
            l4 => return Ok(Some((l4, at))),
        };
        if packet.len() < at + len {
            return Err(DropReason::Malformed);
        }
        next = IpProtocol::from(packet[at]);
        at += len;
    }
    Err(DropReason::Malformed)
}
