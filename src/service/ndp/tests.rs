//! The NDP/RA responder against frames built as a guest's stack sends them.

use super::*;

const ME: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const GUEST: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 9]);

fn gw() -> Ipv6Addr {
    "fd00:13:31::1".parse().unwrap()
}

fn params(ra: bool) -> NdpParams {
    NdpParams {
        mac: ME,
        gateway: gw(),
        ra: ra.then(|| RaParams {
            prefix: "fd00:13:31::/64".parse().unwrap(),
            managed: true,
            other: true,
            autonomous: true,
            interval: Duration::from_secs(600),
            rdnss: vec![gw()],
            dnssl: vec!["lab.test".into()],
            mtu: Some(1500),
            router: None,
        }),
        dhcp6: true,
        dns: false,
    }
}

/// A guest's ICMPv6 message `m` from `src` to `dst` (checksum filled), hop limit `hops`.
fn icmp(src: Ipv6Addr, dst: Ipv6Addr, dst_mac: MacAddr, hops: u8, m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let ends = Ends {
        src_mac: GUEST,
        dst_mac,
        src,
        dst,
    };
    ipv6::build(&mut out, &ends, NEXT_ICMPV6, hops, m, 2);
    out
}

fn ns(src: Ipv6Addr, target: Ipv6Addr, hops: u8) -> Vec<u8> {
    let mut m = vec![icmpv6::NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    let dst = ipv6::solicited_node(target);
    icmp(src, dst, ipv6::multicast_mac(dst), hops, &m)
}

fn guest_ll() -> Ipv6Addr {
    ipv6::link_local(GUEST)
}

#[test]
fn neighbour_solicitations_for_our_addresses_get_an_advertisement() {
    let mut ndp = Ndp::new(params(true), Duration::ZERO);
    for target in [gw(), ndp.link_local()] {
        let frame = ns(guest_ll(), target, 255);
        assert_eq!(ndp.is_served(&frame), Some(true));
        let na = ndp.handle(&frame).expect("an NA");
        let v = Ipv6View::parse(&na).unwrap();
        assert_eq!(
            (v.src, v.dst, v.dst_mac, v.hop_limit),
            (target, guest_ll(), GUEST, 255)
        );
        let m = v.icmpv6().expect("valid checksum");
        assert_eq!(m[0], icmpv6::NEIGHBOR_ADVERTISEMENT);
        assert_eq!(m[4], NA_SOLICITED | NA_OVERRIDE);
        assert_eq!(ipv6::addr_at(m, 8), target);
        assert_eq!(&m[24..32], &[OPT_TARGET_LL, 1, 2, 0, 0, 0, 0, 1]);
    }
    // DAD for our address: told to all nodes, not solicited.
    let na = ndp.handle(&ns(Ipv6Addr::UNSPECIFIED, gw(), 255)).unwrap();
    let v = Ipv6View::parse(&na).unwrap();
    assert_eq!((v.dst, v.icmpv6().unwrap()[4]), (ALL_NODES, NA_OVERRIDE));
    // Someone else's address: not ours to answer, and not counted as refused either.
    let other: Ipv6Addr = "fd00:13:31::9".parse().unwrap();
    assert_eq!(ndp.is_served(&ns(guest_ll(), other, 255)), None);
    assert_eq!(ndp.handle(&ns(guest_ll(), other, 255)), None);
    // Forged from off-link (hop limit below 255), or a bad checksum: no answer.
    assert_eq!(ndp.handle(&ns(guest_ll(), gw(), 64)), None);
    let mut bad = ns(guest_ll(), gw(), 255);
    bad[70] ^= 0x10;
    assert_eq!(ndp.handle(&bad), None);
    assert_eq!(ndp.counters().neighbor_advertisements, 3);
}

#[test]
fn echo_requests_to_our_addresses_are_answered() {
    let mut ndp = Ndp::new(params(false), Duration::ZERO);
    let req = [icmpv6::ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
    let guest: Ipv6Addr = "fd00:13:31::9".parse().unwrap();
    let frame = icmp(guest, gw(), ME, 64, &req);
    assert_eq!(ndp.is_served(&frame), Some(true));
    let reply = ndp.handle(&frame).unwrap();
    let v = Ipv6View::parse(&reply).unwrap();
    assert_eq!((v.src, v.dst, v.dst_mac), (gw(), guest, GUEST));
    let m = v.icmpv6().unwrap();
    assert_eq!((m[0], &m[4..]), (icmpv6::ECHO_REPLY, &req[4..]));
    // To another address: not ours.
    let other = icmp(guest, "fd00:13:31::7".parse().unwrap(), ME, 64, &req);
    assert_eq!(ndp.handle(&other), None);
    assert_eq!(ndp.is_served(&other), None);
    // UDP to a closed port of the gateway: addressed to us, not served (counted).
    let mut udp = Vec::new();
    let ends = Ends {
        src_mac: GUEST,
        dst_mac: ME,
        src: guest,
        dst: gw(),
    };
    ipv6::build_udp(&mut udp, &ends, (1000, 9), 64, b"x");
    assert_eq!(ndp.is_served(&udp), Some(false));
    ipv6::build_udp(&mut udp, &ends, (546, 547), 64, b"x");
    assert_eq!(ndp.is_served(&udp), Some(true));
    // Without RAs, a router solicitation is not served.
    let rs = icmp(
        guest_ll(),
        ipv6::ALL_ROUTERS,
        ME,
        255,
        &[133, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(ndp.is_served(&rs), None);
}

/// The options of an RA message `m`, as (type, body) pairs.
fn options(m: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 2 <= m.len() {
        let len = usize::from(m[at + 1]) * 8;
        assert!(len > 0 && at + len <= m.len(), "option length");
        out.push((m[at], m[at + 2..at + len].to_vec()));
        at += len;
    }
    out
}

#[test]
fn a_router_solicitation_gets_the_prefix_rdnss_and_dnssl() {
    let mut ndp = Ndp::new(params(true), Duration::ZERO);
    let rs = icmp(
        guest_ll(),
        ipv6::ALL_ROUTERS,
        ipv6::multicast_mac(ipv6::ALL_ROUTERS),
        255,
        &[icmpv6::ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(ndp.is_served(&rs), Some(true));
    let ra = ndp.handle(&rs).unwrap();
    let v = Ipv6View::parse(&ra).unwrap();
    assert_eq!(
        (v.src, v.dst, v.hop_limit),
        (ndp.link_local(), guest_ll(), 255)
    );
    let m = v.icmpv6().unwrap();
    assert_eq!(m[0], icmpv6::ROUTER_ADVERTISEMENT);
    assert_eq!(m[5], RA_MANAGED | RA_OTHER);
    assert_eq!(&m[6..8], &[0, 0], "router lifetime 0: we do not route");
    let opts = options(m);
    let kinds: Vec<u8> = opts.iter().map(|o| o.0).collect();
    assert_eq!(
        kinds,
        [
            OPT_SOURCE_LL,
            OPT_MTU,
            OPT_PREFIX_INFO,
            OPT_RDNSS,
            OPT_DNSSL
        ]
    );
    let prefix = &opts[2].1;
    assert_eq!(
        (prefix[0], prefix[1]),
        (64, PREFIX_ON_LINK | PREFIX_AUTONOMOUS)
    );
    assert_eq!(
        ipv6::addr_at(prefix, 14),
        "fd00:13:31::".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(&opts[1].1[2..], &1500u32.to_be_bytes());
    let rdnss = &opts[3].1;
    assert_eq!(&rdnss[2..6], &1200u32.to_be_bytes());
    assert_eq!(ipv6::addr_at(rdnss, 6), gw());
    assert!(opts[4].1[6..].starts_with(b"\x03lab\x04test\x00"));
    // From `::`: to all nodes.
    let rs0 = icmp(
        Ipv6Addr::UNSPECIFIED,
        ipv6::ALL_ROUTERS,
        ipv6::multicast_mac(ipv6::ALL_ROUTERS),
        255,
        &[icmpv6::ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
    );
    let v = ndp.handle(&rs0).unwrap();
    assert_eq!(Ipv6View::parse(&v).unwrap().dst, ALL_NODES);
    assert_eq!(ndp.counters().solicited_ras, 2);
}

#[test]
fn when_the_host_leg_routes_the_advertisement_speaks_for_it() {
    let router: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut p = params(true);
    if let Some(ra) = p.ra.as_mut() {
        ra.router = Some(router);
    }
    let ndp = Ndp::new(p.clone(), Duration::ZERO);
    let ra = ndp.router_advertisement(GUEST, guest_ll()).unwrap();
    let v = Ipv6View::parse(&ra).unwrap();
    // From the host leg's address, our own MAC on the frame, no source link-layer option
    // claiming the host leg's MAC.
    assert_eq!((v.src, v.src_mac), (router, ME));
    let m = v.icmpv6().unwrap();
    assert_eq!(&m[6..8], &1800u16.to_be_bytes(), "3 x 600 s interval");
    assert!(options(m).iter().all(|o| o.0 != OPT_SOURCE_LL));
    // At the longest interval [ra] takes (1800 s): 5400 s, inside RFC 4861's 9000 s.
    if let Some(ra) = p.ra.as_mut() {
        ra.interval = Duration::from_secs(1800);
    }
    let ra = Ndp::new(p, Duration::ZERO)
        .router_advertisement(GUEST, guest_ll())
        .unwrap();
    let v = Ipv6View::parse(&ra).unwrap();
    assert_eq!(&v.icmpv6().unwrap()[6..8], &5400u16.to_be_bytes());
}

#[test]
fn unsolicited_advertisements_follow_rfc_4861_timing() {
    let mut ndp = Ndp::new(params(true), Duration::from_secs(100));
    assert_eq!(
        ndp.poll(Duration::from_secs(99)),
        None,
        "not before it is due"
    );
    let mut at = Duration::from_secs(100);
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let ra = ndp.poll(at).expect("due");
        assert_eq!(Ipv6View::parse(&ra).unwrap().dst, ALL_NODES);
        let next = ndp.next_deadline().unwrap();
        assert_eq!(ndp.poll(next - Duration::from_millis(1)), None);
        gaps.push(next - at);
        at = next;
    }
    for g in &gaps[..2] {
        assert!(*g <= Duration::from_secs(16), "initial: {g:?}");
    }
    for g in &gaps[2..] {
        assert!(
            (Duration::from_secs(450)..=Duration::from_secs(600)).contains(g),
            "{g:?}"
        );
    }
    assert!(
        gaps[2..].windows(2).any(|w| w[0] != w[1]),
        "jittered: {gaps:?}"
    );
    assert_eq!(ndp.counters().periodic_ras, 6);
    let mut off = Ndp::new(params(false), Duration::ZERO);
    assert_eq!(
        (off.poll(Duration::ZERO), off.next_deadline()),
        (None, None)
    );
}
