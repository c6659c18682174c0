//! The guard's test table: frame builders (from reprs of the headers, checksums left zero:
//! the guard never reads them), the test policy, and one row per case of issue 5.
#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, Ipv6Addr};

use switchyard::switch::{eui64_link_local, DropReason, PortPolicy};
use switchyard::wire::MacAddr;

pub const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x11]);
pub const VRRP_MAC: MacAddr = MacAddr([0x00, 0x00, 0x5e, 0, 0x01, 0x07]);
pub const OTHER_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x12]);
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
pub const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
pub const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
pub const BCAST: Ipv4Addr = Ipv4Addr::BROADCAST;

pub const IPV4: u16 = 0x0800;
pub const ARP: u16 = 0x0806;
pub const IPV6: u16 = 0x86dd;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;

pub fn policy() -> PortPolicy {
    let mut p = PortPolicy::for_host(HOST_MAC, Some(HOST_IP));
    p.macs.push(VRRP_MAC);
    p.ipv4.insert("10.0.0.50/32".parse().unwrap());
    p.ipv4.insert("10.0.0.64/28".parse().unwrap());
    p.ipv6.insert("fd00::50/128".parse().unwrap());
    p.slaac = Some("fd00:13:31::/64".parse().unwrap());
    p
}

/// The SLAAC address `mac` forms in the test policy's prefix.
pub fn slaac(mac: MacAddr) -> Ipv6Addr {
    switchyard::wire::ipv6::eui64(v6("fd00:13:31::"), mac)
}

// ---- Frame builders (checksums are irrelevant to the guard). ----

pub fn eth(src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = MacAddr::BROADCAST.0.to_vec();
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header with `options` (a multiple of 4 bytes) and fragment field `frag`.
pub fn ipv4_full(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    frag: u16,
    options: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    let ihl = 20 + options.len();
    let mut p = vec![0x40 | (ihl / 4) as u8, 0];
    p.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(l4);
    p
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ipv4_full(src, dst, proto, 0, &[], l4)
}

pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    u
}

pub fn arp(op: u16, sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sender_mac.0);
    a.extend_from_slice(&sender_ip.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip.octets());
    a
}

pub fn ipv6(src: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(payload);
    p
}

/// ICMPv6 `kind` with a 4-byte reserved field and a 16-byte target (NS/NA shape).
pub fn icmpv6(kind: u8, target: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m
}

/// An extension header of 8 bytes announcing `next`.
pub fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 0, 0, 0, 0, 0, 0]
}

pub fn frag6(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
    let field = (offset_units << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1]);
    h
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn ll() -> Ipv6Addr {
    eui64_link_local(HOST_MAC)
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn tagged(tpid: u16) -> Vec<u8> {
    let mut inner = vec![0x00, 0x05];
    inner.extend_from_slice(&IPV4.to_be_bytes());
    inner.extend_from_slice(&ipv4(HOST_IP, OTHER_IP, UDP, &udp(1, 2)));
    eth(HOST_MAC, tpid, &inner)
}

/// Every case: (name, frame, expected verdict of the guard).
pub fn cases() -> Vec<(&'static str, Vec<u8>, Result<(), DropReason>)> {
    use DropReason::*;
    let ok = Ok(());
    let v4 = |src, dst, proto, l4: &[u8]| eth(HOST_MAC, IPV4, &ipv4(src, dst, proto, l4));
    let arp_f = |mac, op, smac, sip, tip| eth(mac, ARP, &arp(op, smac, sip, tip));
    let v6f = |src, next, payload: &[u8]| eth(HOST_MAC, IPV6, &ipv6(src, next, payload));
    let opts = [0x94, 0x04, 0, 0]; // Router Alert, 4 bytes
    let mut padded = v4(HOST_IP, OTHER_IP, 112, &[0; 4]);
    padded.resize(60, 0);
    let mut lying_v4 = v4(HOST_IP, OTHER_IP, UDP, &udp(1, 2));
    lying_v4[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let mut short_total = v4(HOST_IP, OTHER_IP, UDP, &udp(1, 2));
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    let mut ihl4 = v4(HOST_IP, OTHER_IP, UDP, &udp(1, 2));
    ihl4[14] = 0x44;
    let mut ihl15 = v4(HOST_IP, OTHER_IP, UDP, &udp(1, 2));
    ihl15[14] = 0x4f;
    let mut v6_in_v4 = v4(HOST_IP, OTHER_IP, UDP, &udp(1, 2));
    v6_in_v4[14] = 0x65;
    let mut lying_v6 = v6f(ll(), ICMPV6, &icmpv6(128, ll()));
    lying_v6[18..20].copy_from_slice(&500u16.to_be_bytes());
    let mut bad_htype = arp_f(HOST_MAC, 1, HOST_MAC, HOST_IP, OTHER_IP);
    bad_htype[15] = 6;
    let jumbo = |src| {
        v4(
            src,
            OTHER_IP,
            UDP,
            &cat(&[&udp(5000, 5001), &vec![0xab; 8900]]),
        )
    };
    let frag =
        |src, off, l4: &[u8]| eth(HOST_MAC, IPV4, &ipv4_full(src, OTHER_IP, UDP, off, &[], l4));
    vec![
        // MAC
        (
            "own mac and ip",
            v4(HOST_IP, OTHER_IP, UDP, &udp(1000, 53)),
            ok,
        ),
        (
            "spoofed source mac",
            eth(OTHER_MAC, IPV4, &ipv4(HOST_IP, OTHER_IP, UDP, &udp(1, 2))),
            Err(SpoofedMac),
        ),
        (
            "declared extra mac (vrrp)",
            eth(VRRP_MAC, IPV4, &ipv4(HOST_IP, OTHER_IP, 112, &[0; 8])),
            ok,
        ),
        (
            "spoofed mac, unknown ethertype",
            eth(OTHER_MAC, 0x88b5, &[0; 46]),
            Err(SpoofedMac),
        ),
        (
            "own mac, unknown ethertype",
            eth(HOST_MAC, 0x88b5, &[0; 46]),
            ok,
        ),
        // IPv4 source
        (
            "spoofed ipv4 source",
            v4(OTHER_IP, HOST_IP, UDP, &udp(1, 2)),
            Err(SpoofedIp),
        ),
        (
            "gateway's ipv4 as source",
            v4(GATEWAY, HOST_IP, 1, &[8, 0, 0, 0]),
            Err(SpoofedIp),
        ),
        (
            "declared extra ipv4",
            v4(VIP, OTHER_IP, 1, &[8, 0, 0, 0]),
            ok,
        ),
        (
            "inside declared pool",
            v4(Ipv4Addr::new(10, 0, 0, 70), OTHER_IP, 6, &[0; 20]),
            ok,
        ),
        (
            "outside declared pool",
            v4(Ipv4Addr::new(10, 0, 0, 80), OTHER_IP, 6, &[0; 20]),
            Err(SpoofedIp),
        ),
        (
            "dhcp discover from 0.0.0.0:68",
            v4(ANY, BCAST, UDP, &udp(68, 67)),
            ok,
        ),
        (
            "udp from 0.0.0.0 not to 67",
            v4(ANY, BCAST, UDP, &udp(68, 68)),
            Err(SpoofedIp),
        ),
        (
            "icmp from 0.0.0.0",
            v4(ANY, OTHER_IP, 1, &[8, 0, 0, 0]),
            Err(SpoofedIp),
        ),
        // No protocol whitelist
        (
            "vrrp (112) from own ip",
            v4(HOST_IP, Ipv4Addr::new(224, 0, 0, 18), 112, &[0x21; 20]),
            ok,
        ),
        (
            "igmp from own ip",
            v4(HOST_IP, Ipv4Addr::new(224, 0, 0, 22), 2, &[0x22; 8]),
            ok,
        ),
        ("gre from own ip", v4(HOST_IP, OTHER_IP, 47, &[0; 8]), ok),
        ("sctp from own ip", v4(HOST_IP, OTHER_IP, 132, &[0; 12]), ok),
        (
            "ospf from own ip",
            v4(HOST_IP, Ipv4Addr::new(224, 0, 0, 5), 89, &[0; 24]),
            ok,
        ),
        (
            "vrrp from a foreign ip",
            v4(OTHER_IP, Ipv4Addr::new(224, 0, 0, 18), 112, &[0; 20]),
            Err(SpoofedIp),
        ),
        // DHCP snooping
        (
            "rogue dhcp offer 67->68",
            v4(HOST_IP, BCAST, UDP, &udp(67, 68)),
            Err(RogueDhcp),
        ),
        (
            "rogue dhcp from 0.0.0.0",
            v4(ANY, BCAST, UDP, &udp(67, 68)),
            Err(SpoofedIp),
        ),
        (
            "dhcp relay 67->67 passes",
            v4(HOST_IP, OTHER_IP, UDP, &udp(67, 67)),
            ok,
        ),
        // IPv4 options, padding, lying lengths
        (
            "ipv4 options, own source",
            eth(
                HOST_MAC,
                IPV4,
                &ipv4_full(HOST_IP, OTHER_IP, 2, 0, &opts, &[0; 8]),
            ),
            ok,
        ),
        (
            "ipv4 options, spoofed source",
            eth(
                HOST_MAC,
                IPV4,
                &ipv4_full(OTHER_IP, HOST_IP, 2, 0, &opts, &[0; 8]),
            ),
            Err(SpoofedIp),
        ),
        (
            "ipv4 options hide a rogue dhcp",
            eth(
                HOST_MAC,
                IPV4,
                &ipv4_full(HOST_IP, BCAST, UDP, 0, &opts, &udp(67, 68)),
            ),
            Err(RogueDhcp),
        ),
        ("ethernet padding after ipv4", padded, ok),
        (
            "truncated ipv4 header",
            eth(HOST_MAC, IPV4, &[0x45, 0, 0, 20, 0, 0]),
            Err(Malformed),
        ),
        ("ipv4 total length > frame", lying_v4, Err(Malformed)),
        ("ipv4 total length < header", short_total, Err(Malformed)),
        ("ipv4 ihl < 5", ihl4, Err(Malformed)),
        ("ipv4 ihl past the datagram", ihl15, Err(Malformed)),
        ("version 6 under ethertype ipv4", v6_in_v4, Err(Malformed)),
        (
            "udp header cut short",
            v4(HOST_IP, BCAST, UDP, &[0, 67, 0]),
            Err(Malformed),
        ),
        // Fragments
        (
            "first fragment rogue dhcp",
            frag(HOST_IP, 0x2000, &udp(67, 68)),
            Err(RogueDhcp),
        ),
        (
            "first fragment own source",
            frag(HOST_IP, 0x2000, &udp(1, 2)),
            ok,
        ),
        (
            "tiny first fragment (4 bytes of udp)",
            frag(HOST_IP, 0x2000, &[0, 67, 0, 68]),
            Err(Malformed),
        ),
        (
            "non-first fragment, own source",
            frag(HOST_IP, 100, &udp(67, 68)),
            ok,
        ),
        (
            "non-first fragment, spoofed source",
            frag(OTHER_IP, 100, &udp(1, 2)),
            Err(SpoofedIp),
        ),
        (
            "non-first fragment from 0.0.0.0",
            frag(ANY, 100, &udp(68, 67)),
            Err(SpoofedIp),
        ),
        // Jumbo
        ("jumbo from own ip", jumbo(HOST_IP), ok),
        ("jumbo spoofed", jumbo(OTHER_IP), Err(SpoofedIp)),
        // VLAN
        ("802.1q tagged", tagged(0x8100), Err(VlanNotAllowed)),
        ("qinq 802.1ad tagged", tagged(0x88a8), Err(VlanNotAllowed)),
        ("legacy qinq 0x9100", tagged(0x9100), Err(VlanNotAllowed)),
        // ARP
        (
            "arp request from own ip",
            arp_f(HOST_MAC, 1, HOST_MAC, HOST_IP, OTHER_IP),
            ok,
        ),
        (
            "arp reply from own ip",
            arp_f(HOST_MAC, 2, HOST_MAC, HOST_IP, OTHER_IP),
            ok,
        ),
        (
            "arp probe from 0.0.0.0 (rfc 5227)",
            arp_f(HOST_MAC, 1, HOST_MAC, ANY, VIP),
            ok,
        ),
        (
            "arp reply from 0.0.0.0",
            arp_f(HOST_MAC, 2, HOST_MAC, ANY, OTHER_IP),
            Err(SpoofedArp),
        ),
        (
            "gratuitous arp for declared ip",
            arp_f(HOST_MAC, 1, HOST_MAC, VIP, VIP),
            ok,
        ),
        (
            "gratuitous arp from the vrrp mac",
            arp_f(VRRP_MAC, 2, VRRP_MAC, VIP, VIP),
            ok,
        ),
        (
            "arp claiming the gateway's ip",
            arp_f(HOST_MAC, 2, HOST_MAC, GATEWAY, OTHER_IP),
            Err(SpoofedArp),
        ),
        (
            "arp claiming another host's ip",
            arp_f(HOST_MAC, 1, HOST_MAC, OTHER_IP, GATEWAY),
            Err(SpoofedArp),
        ),
        (
            "arp with a foreign sender mac",
            arp_f(HOST_MAC, 2, OTHER_MAC, HOST_IP, OTHER_IP),
            Err(SpoofedArp),
        ),
        (
            "arp sender mac differs from frame",
            arp_f(HOST_MAC, 2, VRRP_MAC, HOST_IP, OTHER_IP),
            Err(SpoofedArp),
        ),
        (
            "truncated arp",
            eth(HOST_MAC, ARP, &arp(1, HOST_MAC, HOST_IP, OTHER_IP)[..20]),
            Err(Malformed),
        ),
        ("arp for another hardware type", bad_htype, Err(Malformed)),
        // IPv6
        (
            "dad ns from ::",
            v6f(Ipv6Addr::UNSPECIFIED, ICMPV6, &icmpv6(135, ll())),
            ok,
        ),
        (
            "mld report from :: behind hop-by-hop",
            v6f(
                Ipv6Addr::UNSPECIFIED,
                0,
                &cat(&[&ext8(ICMPV6), &icmpv6(143, ll())]),
            ),
            ok,
        ),
        (
            "udp from ::",
            v6f(Ipv6Addr::UNSPECIFIED, UDP, &udp(1, 2)),
            Err(SpoofedIp),
        ),
        (
            "eui-64 link-local echo",
            v6f(ll(), ICMPV6, &icmpv6(128, ll())),
            ok,
        ),
        (
            "eui-64 link-local of the extra mac",
            v6f(eui64_link_local(VRRP_MAC), ICMPV6, &icmpv6(128, ll())),
            ok,
        ),
        (
            "another link-local",
            v6f(eui64_link_local(OTHER_MAC), ICMPV6, &icmpv6(128, ll())),
            Err(SpoofedIp),
        ),
        (
            "declared extra ipv6",
            v6f(v6("fd00::50"), UDP, &udp(1, 2)),
            ok,
        ),
        (
            "undeclared ipv6",
            v6f(v6("fd00::51"), UDP, &udp(1, 2)),
            Err(SpoofedIp),
        ),
        (
            "router advertisement",
            v6f(ll(), ICMPV6, &icmpv6(134, ll())),
            Err(RogueRa),
        ),
        (
            "own slaac address",
            v6f(slaac(HOST_MAC), UDP, &udp(1, 2)),
            ok,
        ),
        (
            "slaac address of the extra mac",
            v6f(slaac(VRRP_MAC), UDP, &udp(1, 2)),
            ok,
        ),
        (
            "another host's slaac address",
            v6f(slaac(OTHER_MAC), UDP, &udp(1, 2)),
            Err(SpoofedIp),
        ),
        (
            "an address of the prefix that is not our eui-64",
            v6f(v6("fd00:13:31::1"), ICMPV6, &icmpv6(128, ll())),
            Err(SpoofedIp),
        ),
        (
            "own eui-64 outside the slaac prefix",
            v6f(
                switchyard::wire::ipv6::eui64(v6("fd00:99::"), HOST_MAC),
                UDP,
                &udp(1, 2),
            ),
            Err(SpoofedIp),
        ),
        (
            "na for own slaac address",
            v6f(ll(), ICMPV6, &icmpv6(136, slaac(HOST_MAC))),
            ok,
        ),
        (
            "na claiming another host's slaac address",
            v6f(ll(), ICMPV6, &icmpv6(136, slaac(OTHER_MAC))),
            Err(SpoofedNd),
        ),
        (
            "na claiming the gateway's address",
            v6f(ll(), ICMPV6, &icmpv6(136, v6("fd00:13:31::1"))),
            Err(SpoofedNd),
        ),
        (
            "ra behind hop-by-hop and dest opts",
            v6f(
                ll(),
                0,
                &cat(&[&ext8(60), &ext8(ICMPV6), &icmpv6(134, ll())]),
            ),
            Err(RogueRa),
        ),
        (
            "ra in a first fragment",
            v6f(
                ll(),
                44,
                &cat(&[&frag6(ICMPV6, 0, true), &icmpv6(134, ll())]),
            ),
            Err(RogueRa),
        ),
        (
            "ipv6 non-first fragment, own source",
            v6f(
                ll(),
                44,
                &cat(&[&frag6(ICMPV6, 3, false), &icmpv6(134, ll())]),
            ),
            ok,
        ),
        (
            "ipv6 non-first fragment, spoofed source",
            v6f(v6("fd00::51"), 44, &cat(&[&frag6(UDP, 3, false), &[0; 16]])),
            Err(SpoofedIp),
        ),
        (
            "dhcpv6 server 547->546",
            v6f(ll(), UDP, &udp(547, 546)),
            Err(RogueDhcp),
        ),
        ("dhcpv6 client 546->547", v6f(ll(), UDP, &udp(546, 547)), ok),
        (
            "na for own link-local",
            v6f(ll(), ICMPV6, &icmpv6(136, ll())),
            ok,
        ),
        (
            "na for declared address",
            v6f(ll(), ICMPV6, &icmpv6(136, v6("fd00::50"))),
            ok,
        ),
        (
            "na for another's address",
            v6f(ll(), ICMPV6, &icmpv6(136, v6("fd00::99"))),
            Err(SpoofedNd),
        ),
        (
            "na truncated before the target",
            v6f(ll(), ICMPV6, &icmpv6(136, ll())[..12]),
            Err(Malformed),
        ),
        (
            "icmpv6 with no header",
            v6f(ll(), ICMPV6, &[]),
            Err(Malformed),
        ),
        ("ipv6 payload length > frame", lying_v6, Err(Malformed)),
        (
            "truncated ipv6 header",
            eth(HOST_MAC, IPV6, &[0x60, 0, 0, 0, 0, 8, 58]),
            Err(Malformed),
        ),
        (
            "extension chain past the packet",
            v6f(ll(), 0, &[ICMPV6, 4, 0, 0]),
            Err(Malformed),
        ),
        (
            "endless extension chain",
            v6f(ll(), 60, &ext8(60).repeat(9)),
            Err(Malformed),
        ),
    ]
}
