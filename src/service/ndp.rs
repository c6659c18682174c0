//! The appliance's IPv6 presence: neighbour discovery for its two addresses, ping6, and router
//! advertisements (RFC 4861, RFC 8106).
//!
//! # Theory of operation
//!
//! The appliance has two IPv6 addresses: `gateway6` and the link-local formed from its MAC
//! (EUI-64). [`Ndp::is_served`] is the worker's classification (what takes a place in the
//! appliance's queue); [`Ndp::handle`] answers one frame:
//!
//! - a neighbour solicitation for either address gets a solicited, override advertisement
//!   with the target link-layer option (to `ff02::1` when the solicitation came from `::`: a
//!   host's DAD for our address is told it is taken);
//! - an echo request to either address gets its echo reply;
//! - a router solicitation gets an advertisement, unicast to the soliciting host (RFC 4861
//!   §6.2.6 allows it) or to `ff02::1` if it came from `::`.
//!
//! Unsolicited advertisements go to `ff02::1` on every port: [`Ndp::poll`] says when, from the
//! `now` its caller passes. The first three leave at most 16 s apart
//! (MAX_INITIAL_RTR_ADVERTISEMENTS, MAX_INITIAL_RTR_ADVERT_INTERVAL), then one every interval
//! drawn from [0.75, 1] × `interval` (MinRtrAdvInterval = 0.75 × Max, RFC 4861's default is
//! 0.33; the narrower range keeps the RDNSS lifetime's margin) with a small generator seeded
//! from the MAC, so networks on one host do not advertise in step and the core stays
//! deterministic.
//!
//! Every answered message is checked first as RFC 4861 §6.1 and §7.1.1 ask: hop limit 255
//! (a message from off-link is forged), code 0, a valid checksum, a non-multicast target.
//! Limits: no extension headers (the stacks we serve send NDP without them), no options are
//! read from solicitations (the reply goes to the frame's source MAC), and the appliance
//! never advertises itself as a router: it routes no IPv6. On an isolated network the router
//! lifetime is 0, so hosts get the prefix on-link, RDNSS and DNSSL, and no default route. When
//! the host leg routes (`forward`), the advertisements speak for the host leg instead: they
//! leave from its link-local `fe80::1` ([`RaParams::router`]) with a non-zero lifetime, so
//! hosts route through the host, as radvd on libvirt's bridge would make them.

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::wire::ipv6::{self, icmpv6, Ends, Ipv6View, ALL_NODES, NEXT_ICMPV6, NEXT_UDP};
use crate::wire::MacAddr;

/// RFC 4861 §10.
const MAX_INITIAL_RTR_ADVERTISEMENTS: u8 = 3;
const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// RFC 4861 §6.2.1: AdvDefaultLifetime is at most 9000 seconds.
const MAX_ROUTER_LIFETIME: u16 = 9000;
/// NDP messages are sent, and accepted, with hop limit 255 only.
const NDP_HOP_LIMIT: u8 = 255;
const ECHO_HOP_LIMIT: u8 = 64;
/// NDP option types (RFC 4861 §4.6, RFC 8106).
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
const OPT_PREFIX_INFO: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;
/// Neighbour advertisement flags: solicited, override.
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;
/// Router advertisement flags: managed, other configuration.
const RA_MANAGED: u8 = 0x80;
const RA_OTHER: u8 = 0x40;
/// Prefix information flags: on-link, autonomous.
const PREFIX_ON_LINK: u8 = 0x80;
const PREFIX_AUTONOMOUS: u8 = 0x40;
/// The prefix's lifetimes: a day valid, four hours preferred (radvd's defaults).
const PREFIX_VALID: u32 = 86_400;
const PREFIX_PREFERRED: u32 = 14_400;
/// The DHCPv6 server port, for classification.
const DHCPV6_SERVER_PORT: u16 = 547;
const DNS_PORT: u16 = 53;

/// What the advertisements carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaParams {
    pub prefix: Ipv6Net,
    pub managed: bool,
    pub other: bool,
    pub autonomous: bool,
    pub interval: Duration,
    /// RDNSS servers; empty: no option.
    pub rdnss: Vec<Ipv6Addr>,
    /// DNSSL domains (normalized); empty: no option.
    pub dnssl: Vec<String>,
    pub mtu: Option<u32>,
    /// The default router the advertisements name: `None` on a network that does not route
    /// (router lifetime 0, sent from the appliance's link-local); `Some(fe80::1)` when the
    /// host leg routes (`forward`): then they leave from that address with no source
    /// link-layer option (hosts resolve the router by NDP, and the host leg answers) and a
    /// router lifetime of 3 × `interval` (RFC 4861's AdvDefaultLifetime), at most 9000 s.
    pub router: Option<Ipv6Addr>,
}

/// The appliance's IPv6 identity and what it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdpParams {
    pub mac: MacAddr,
    pub gateway: Ipv6Addr,
    /// `None`: no advertisements (NDP and ping6 still answered).
    pub ra: Option<RaParams>,
    /// Whether DHCPv6 (UDP 547) is served, for classification.
    pub dhcp6: bool,
    /// Whether DNS (UDP 53 to the gateway) is served, for classification.
    pub dns: bool,
}

/// The appliance's IPv6 addresses and services, as the workers classify frames by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served6 {
    pub gateway: Ipv6Addr,
    pub link_local: Ipv6Addr,
    /// Router solicitations are answered.
    pub ra: bool,
    /// DHCPv6 (UDP 547) is answered.
    pub dhcp6: bool,
    /// DNS over UDP to the gateway's port 53 is answered.
    pub dns: bool,
}

impl Served6 {
    fn is_ours(&self, addr: Ipv6Addr) -> bool {
        addr == self.gateway || addr == self.link_local
    }

    /// Whether `frame` is something [`Ndp::handle`] (or the DHCPv6 server) answers: the
    /// worker's cheap check, before any copy. `Some(false)`: addressed to the appliance's
    /// addresses but not served; `None`: not for the appliance (a flood it sees, an NA, MLD,
    /// an ICMPv6 error about its own traffic).
    pub fn is_served(&self, frame: &[u8]) -> Option<bool> {
        let ip = Ipv6View::parse(frame)?;
        let m = ip.payload;
        match ip.next_header {
            NEXT_ICMPV6 => match *m.first()? {
                icmpv6::NEIGHBOR_SOLICITATION => {
                    (m.len() >= 24 && self.is_ours(ipv6::addr_at(m, 8))).then_some(true)
                }
                icmpv6::ROUTER_SOLICITATION => self.ra.then_some(true),
                icmpv6::ECHO_REQUEST => self.is_ours(ip.dst).then_some(true),
                // Errors (< 128), NAs, MLD and the rest: a guest's stack talking, not asking.
                _ => None,
            },
            NEXT_UDP if m.len() >= 4 => {
                let dst_port = u16::from_be_bytes([m[2], m[3]]);
                let served = match dst_port {
                    DNS_PORT => self.dns,
                    DHCPV6_SERVER_PORT => self.dhcp6,
                    _ => false,
                };
                if ip.dst == ipv6::ALL_DHCP_SERVERS {
                    // Multicast: other servers' business unless it is DHCPv6 and we serve it.
                    return (served && dst_port == DHCPV6_SERVER_PORT).then_some(true);
                }
                self.is_ours(ip.dst).then_some(served)
            }
            _ => self.is_ours(ip.dst).then_some(false),
        }
    }
}

/// Whether `frame` is ICMPv6 (without extension headers): what the appliance does not answer
/// of it (errors about its own replies, NAs, MLD) is a guest's stack talking, never queued and
/// never a `not_served` drop.
pub fn is_icmpv6(frame: &[u8]) -> bool {
    Ipv6View::parse(frame).is_some_and(|ip| ip.next_header == NEXT_ICMPV6)
}

/// Messages handled, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NdpCounters {
    pub neighbor_advertisements: u64,
    pub echo_replies: u64,
    pub solicited_ras: u64,
    pub periodic_ras: u64,
}

/// The state: the next unsolicited advertisement and the jitter generator.
#[derive(Debug, Clone)]
pub struct Ndp {
    params: NdpParams,
    link_local: Ipv6Addr,
    next_ra: Duration,
    initial_left: u8,
    rng: u64,
    counters: NdpCounters,
}

impl Ndp {
    /// Ready to advertise at once (the first unsolicited RA is due at `now`).
    pub fn new(params: NdpParams, now: Duration) -> Ndp {
        let m = params.mac.octets();
        let seed = u64::from_be_bytes([0x5e, 0xed, m[0], m[1], m[2], m[3], m[4], m[5]]);
        Ndp {
            link_local: ipv6::link_local(params.mac),
            params,
            next_ra: now,
            initial_left: MAX_INITIAL_RTR_ADVERTISEMENTS,
            rng: seed | 1,
            counters: NdpCounters::default(),
        }
    }

    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    pub fn counters(&self) -> NdpCounters {
        self.counters
    }

    fn is_ours(&self, addr: Ipv6Addr) -> bool {
        addr == self.params.gateway || addr == self.link_local
    }

    /// What the worker needs to classify frames for this responder.
    pub fn served(&self) -> Served6 {
        Served6 {
            gateway: self.params.gateway,
            link_local: self.link_local,
            ra: self.params.ra.is_some(),
            dhcp6: self.params.dhcp6,
            dns: self.params.dns,
        }
    }

    /// [`Served6::is_served`].
    pub fn is_served(&self, frame: &[u8]) -> Option<bool> {
        self.served().is_served(frame)
    }

    /// The reply to `frame` (NA, echo reply or solicited RA), if it asks for one.
    pub fn handle(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let ip = Ipv6View::parse(frame)?;
        let m = ip.icmpv6()?;
        if m[1] != 0 {
            return None;
        }
        match m[0] {
            icmpv6::NEIGHBOR_SOLICITATION => self.neighbor_advertisement(&ip, m),
            icmpv6::ECHO_REQUEST => self.echo_reply(&ip, m),
            icmpv6::ROUTER_SOLICITATION => {
                if ip.hop_limit != NDP_HOP_LIMIT || m.len() < 8 {
                    return None;
                }
                // Unicast to a host that has an address; `::` cannot be answered but by all.
                let (dst_mac, dst) = if ip.src.is_unspecified() {
                    (ipv6::multicast_mac(ALL_NODES), ALL_NODES)
                } else {
                    (ip.src_mac, ip.src)
                };
                let ra = self.router_advertisement(dst_mac, dst)?;
                self.counters.solicited_ras += 1;
                Some(ra)
            }
            _ => None,
        }
    }

    fn neighbor_advertisement(&mut self, ip: &Ipv6View<'_>, m: &[u8]) -> Option<Vec<u8>> {
        if ip.hop_limit != NDP_HOP_LIMIT || m.len() < 24 {
            return None;
        }
        let target = ipv6::addr_at(m, 8);
        if !self.is_ours(target) {
            return None;
        }
        // DAD from `::` for our address: answer to all nodes, not solicited (RFC 4861 §7.2.4).
        let (dst_mac, dst, flags) = if ip.src.is_unspecified() {
            (ipv6::multicast_mac(ALL_NODES), ALL_NODES, NA_OVERRIDE)
        } else {
            (ip.src_mac, ip.src, NA_SOLICITED | NA_OVERRIDE)
        };
        let mut na = vec![icmpv6::NEIGHBOR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0];
        na.extend_from_slice(&target.octets());
        na.extend_from_slice(&[OPT_TARGET_LL, 1]);
        na.extend_from_slice(&self.params.mac.0);
        let ends = Ends {
            src_mac: self.params.mac,
            dst_mac,
            src: target,
            dst,
        };
        let mut out = Vec::with_capacity(100);
        ipv6::build(&mut out, &ends, NEXT_ICMPV6, NDP_HOP_LIMIT, &na, 2);
        self.counters.neighbor_advertisements += 1;
        Some(out)
    }

    fn echo_reply(&mut self, ip: &Ipv6View<'_>, m: &[u8]) -> Option<Vec<u8>> {
        if !self.is_ours(ip.dst) || ip.src.is_unspecified() || ip.src.is_multicast() {
            return None;
        }
        let mut reply = m.to_vec();
        reply[0] = icmpv6::ECHO_REPLY;
        let ends = Ends {
            src_mac: self.params.mac,
            dst_mac: ip.src_mac,
            src: ip.dst,
            dst: ip.src,
        };
        let mut out = Vec::with_capacity(m.len() + 54);
        ipv6::build(&mut out, &ends, NEXT_ICMPV6, ECHO_HOP_LIMIT, &reply, 2);
        self.counters.echo_replies += 1;
        Some(out)
    }

    /// A complete RA frame to `dst` (`None` without `[ra]`).
    pub fn router_advertisement(&self, dst_mac: MacAddr, dst: Ipv6Addr) -> Option<Vec<u8>> {
        let ra = self.params.ra.as_ref()?;
        let mut flags = 0;
        if ra.managed {
            flags |= RA_MANAGED;
        }
        if ra.other {
            flags |= RA_OTHER;
        }
        // Cur hop limit 64, flags, router lifetime (0: not a default router), reachable time
        // and retrans timer unspecified.
        let router_lifetime = match ra.router {
            None => 0,
            Some(_) => u16::try_from(ra.interval.as_secs().saturating_mul(3))
                .unwrap_or(MAX_ROUTER_LIFETIME)
                .min(MAX_ROUTER_LIFETIME),
        };
        let mut m = vec![icmpv6::ROUTER_ADVERTISEMENT, 0, 0, 0, 64, flags];
        m.extend_from_slice(&router_lifetime.to_be_bytes());
        m.extend_from_slice(&[0; 8]);
        if ra.router.is_none() {
            // The host leg's MAC is not ours to claim: with a router, hosts ask for it by NDP.
            m.extend_from_slice(&[OPT_SOURCE_LL, 1]);
            m.extend_from_slice(&self.params.mac.0);
        }
        if let Some(mtu) = ra.mtu {
            m.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
            m.extend_from_slice(&mtu.to_be_bytes());
        }
        let mut pflags = PREFIX_ON_LINK;
        if ra.autonomous {
            pflags |= PREFIX_AUTONOMOUS;
        }
        m.extend_from_slice(&[OPT_PREFIX_INFO, 4, ra.prefix.prefix_len(), pflags]);
        m.extend_from_slice(&PREFIX_VALID.to_be_bytes());
        m.extend_from_slice(&PREFIX_PREFERRED.to_be_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&ra.prefix.network().octets());
        // RFC 8106 §5.1: MaxRtrAdvInterval <= lifetime <= 2 × MaxRtrAdvInterval.
        let lifetime = u32::try_from(ra.interval.as_secs().saturating_mul(2)).unwrap_or(u32::MAX);
        if !ra.rdnss.is_empty() {
            m.extend_from_slice(&[OPT_RDNSS, (1 + 2 * ra.rdnss.len()) as u8, 0, 0]);
            m.extend_from_slice(&lifetime.to_be_bytes());
            for a in &ra.rdnss {
                m.extend_from_slice(&a.octets());
            }
        }
        if !ra.dnssl.is_empty() {
            let mut names = Vec::new();
            for d in &ra.dnssl {
                for label in d.split('.') {
                    names.push(label.len() as u8);
                    names.extend_from_slice(label.as_bytes());
                }
                names.push(0);
            }
            // Padded with zeros to the option's 8-byte units (8 bytes of header included).
            let units = (8 + names.len()).div_ceil(8);
            names.resize(units * 8 - 8, 0);
            if units <= 255 {
                m.extend_from_slice(&[OPT_DNSSL, units as u8, 0, 0]);
                m.extend_from_slice(&lifetime.to_be_bytes());
                m.extend_from_slice(&names);
            }
        }
        let ends = Ends {
            src_mac: self.params.mac,
            dst_mac,
            src: ra.router.unwrap_or(self.link_local),
            dst,
        };
        let mut out = Vec::with_capacity(m.len() + 54);
        ipv6::build(&mut out, &ends, NEXT_ICMPV6, NDP_HOP_LIMIT, &m, 2);
        Some(out)
    }

    /// An unsolicited RA to all nodes if one is due at `now` (the caller sends it out of
    /// every port); the next is scheduled.
    pub fn poll(&mut self, now: Duration) -> Option<Vec<u8>> {
        let interval = self.params.ra.as_ref()?.interval;
        if now < self.next_ra {
            return None;
        }
        let frame = self.router_advertisement(ipv6::multicast_mac(ALL_NODES), ALL_NODES)?;
        // xorshift64: a fraction in [0, 1) of the spread.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let mut wait = interval.mul_f64(0.75 + 0.25 * frac);
        if self.initial_left > 1 {
            self.initial_left -= 1;
            wait = wait.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next_ra = now + wait;
        self.counters.periodic_ras += 1;
        Some(frame)
    }

    /// When [`Ndp::poll`] next has something to send.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.params.ra.as_ref().map(|_| self.next_ra)
    }
}

#[cfg(test)]
mod tests;
