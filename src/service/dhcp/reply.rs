//! Who the client is, and the reply it gets: options and destination.
//!
//! # Theory of operation
//!
//! [`Client::parse`] pulls what the server keys on out of a decoded request: the [`ClientKey`]
//! (by [`KeyMode`]), chaddr, option 61 and a sanitized option 12.
//!
//! [`build`] writes an OFFER, ACK or NAK. Option rules (dnsmasq's): 53 and 54 always; for OFFER
//! and ACK also 1, 28, 3 and 6 when configured, and 51/58/59 for a lease (T1 = 1/2, T2 = 7/8;
//! an infinite lease is 0xffffffff and no T1/T2). 12, 15, 26, 119 and 121 only when the client
//! asks for them in option 55, and only when configured. Option 61 is echoed (RFC 6842). An
//! INFORM's ACK carries no lease time. A NAK carries only 53, 54, 56 and 61.
//!
//! The lease time (51) is the configured one, or shorter if the client asked for less (at least
//! 2 minutes), as dnsmasq does: see [`LeaseTerm`]. `[[dhcp.option]]` extras come last: each
//! replaces a built-in option of its code, an empty one removes it, and one is added when the
//! client asked for it or it is marked `always`.
//!
//! Where it goes (RFC 2131 §4.1): a relayed message's reply (NAK included) goes to the relay
//! agent at giaddr, UDP port 67, echoing its option 82 (RFC 3046); otherwise a NAK is broadcast;
//! otherwise to ciaddr if set; otherwise broadcast if the client set the broadcast flag;
//! otherwise unicast to yiaddr at chaddr, without ARP (the client has no address yet to answer
//! ARP with).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::Encodable;

use super::leases::ClientKey;
use super::params::KeyMode;
use super::server::{DhcpServer, DropReason};
use crate::wire::MacAddr;

/// Where the caller sends a reply: from the server id, out of `port`; UDP 67 → 68 to a client,
/// 67 → 67 to a relay agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255 at ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// To `ip` at `mac` (no ARP: the frame is built directly).
    Unicast { ip: Ipv4Addr, mac: MacAddr },
    /// To the relay agent at `ip` (giaddr), port 67, at the MAC the request came from.
    Relay { ip: Ipv4Addr },
}

/// How long a lease lasts, as sent in option 51.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseTerm {
    Secs(u32),
    Infinite,
}

impl LeaseTerm {
    /// The expiry of a lease granted at `now`; `None`: never.
    pub fn expiry(self, now: u64) -> Option<u64> {
        match self {
            LeaseTerm::Secs(s) => Some(now.saturating_add(u64::from(s))),
            LeaseTerm::Infinite => None,
        }
    }
}

/// One reply: the DHCP message (the UDP payload) and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub payload: Vec<u8>,
    pub dest: Destination,
    /// The ingress port of the request: replies leave only through it.
    pub port: u16,
}

/// What the server knows of the sender of one message.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub(super) key: ClientKey,
    pub(super) mac: MacAddr,
    pub(super) client_id: Option<Box<[u8]>>,
    pub(super) hostname: Option<String>,
    pub(super) port: u16,
}

impl Client {
    /// `msg` has been checked: hlen is 6.
    pub(super) fn parse(msg: &Message, port: u16, mode: KeyMode) -> Client {
        let mac = MacAddr::from_bytes(&msg.chaddr()[..6]);
        let client_id = match msg.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => {
                Some(id.clone().into_boxed_slice())
            }
            _ => None,
        };
        let hostname = match msg.opts().get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) => sanitize_hostname(h),
            _ => None,
        };
        let key = match (&client_id, mode) {
            (Some(id), KeyMode::ClientId) => ClientKey::ClientId(id.clone()),
            _ => ClientKey::Mac(mac),
        };
        Client {
            key,
            mac,
            client_id,
            hostname,
            port,
        }
    }
}

/// The first label of `h` if it is `[A-Za-z0-9-]{1,63}`: the lease file and journal are
/// space-separated, and a hostname is a DNS label to the DNS side.
pub(super) fn sanitize_hostname(h: &str) -> Option<String> {
    let label = h.split('.').next()?;
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| label.to_string())
}

fn requested(msg: &Message, code: OptionCode) -> bool {
    matches!(
        msg.opts().get(OptionCode::ParameterRequestList),
        Some(DhcpOption::ParameterRequestList(list)) if list.contains(&code)
    )
}

/// Builds the reply of type `ty` to `req`, offering or acknowledging `yiaddr`; `lease` adds
/// 51/58/59. Fails only if dhcproto cannot encode a configured option.
pub(super) fn build(
    srv: &DhcpServer,
    req: &Message,
    ty: MessageType,
    yiaddr: Ipv4Addr,
    c: &Client,
    lease: Option<LeaseTerm>,
) -> Result<Reply, DropReason> {
    let p = &srv.params;
    let is_nak = ty == MessageType::Nak;
    // RFC 2131 table 3: ciaddr is echoed in an ACK (renew, INFORM), zero in OFFER and NAK.
    let ciaddr = if ty == MessageType::Ack {
        req.ciaddr()
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut m = Message::new_with_id(
        req.xid(),
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        &req.chaddr()[..6],
    );
    m.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_flags(req.flags());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(ty));
    o.insert(DhcpOption::ServerIdentifier(p.server_id));
    if let Some(id) = &c.client_id {
        o.insert(DhcpOption::ClientIdentifier(id.to_vec()));
    }
    let relayed = !req.giaddr().is_unspecified();
    if relayed {
        if let Some(info) = req.opts().get(OptionCode::RelayAgentInformation) {
            o.insert(info.clone());
        }
    }
    if is_nak {
        o.insert(DhcpOption::Message("address not available".into()));
    } else {
        o.insert(DhcpOption::SubnetMask(p.subnet.netmask()));
        o.insert(DhcpOption::BroadcastAddr(p.subnet.broadcast()));
        if let Some(r) = p.router {
            o.insert(DhcpOption::Router(vec![r]));
        }
        if !p.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(p.dns.clone()));
        }
        match lease {
            Some(LeaseTerm::Secs(secs)) => {
                o.insert(DhcpOption::AddressLeaseTime(secs));
                o.insert(DhcpOption::Renewal(secs / 2));
                o.insert(DhcpOption::Rebinding((u64::from(secs) * 7 / 8) as u32));
            }
            Some(LeaseTerm::Infinite) => {
                o.insert(DhcpOption::AddressLeaseTime(u32::MAX));
            }
            None => {}
        }
        insert_requested(srv, req, c, &mut m);
        insert_extra(srv, req, &mut m);
    }
    let dest = if relayed {
        Destination::Relay { ip: req.giaddr() }
    } else if is_nak {
        Destination::Broadcast
    } else if !req.ciaddr().is_unspecified() {
        Destination::Unicast {
            ip: req.ciaddr(),
            mac: c.mac,
        }
    } else if req.flags().broadcast() {
        Destination::Broadcast
    } else {
        Destination::Unicast {
            ip: yiaddr,
            mac: c.mac,
        }
    };
    // Encoding fails only for an option value dhcproto cannot write (a config problem).
    let payload = m.to_vec().map_err(|_| DropReason::Unencodable)?;
    Ok(Reply {
        payload,
        dest,
        port: c.port,
    })
}

/// `[[dhcp.option]]`: replace, remove, or add when asked for (or `always`).
fn insert_extra(srv: &DhcpServer, req: &Message, m: &mut Message) {
    let o = m.opts_mut();
    for x in &srv.params.extra_options {
        let code = OptionCode::from(x.code);
        if x.data.is_empty() {
            o.remove(code);
        } else if x.always || requested(req, code) {
            o.insert(DhcpOption::Unknown(UnknownOption::new(
                code,
                x.data.clone(),
            )));
        }
    }
}

/// The options sent only when asked for (option 55) and configured.
fn insert_requested(srv: &DhcpServer, req: &Message, c: &Client, m: &mut Message) {
    let p = &srv.params;
    let o = m.opts_mut();
    if requested(req, OptionCode::Hostname) {
        if let Some(r) = srv.reservation_for(c) {
            o.insert(DhcpOption::Hostname(r.name.clone()));
        }
    }
    if let Some(d) = p.domain.as_ref().filter(|d| !d.is_empty()) {
        if requested(req, OptionCode::DomainName) {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
    }
    if let Some(mtu) = p.mtu {
        if requested(req, OptionCode::InterfaceMtu) {
            o.insert(DhcpOption::InterfaceMtu(mtu));
        }
    }
    if !srv.search.is_empty() && requested(req, OptionCode::DomainSearch) {
        o.insert(DhcpOption::DomainSearch(srv.search.clone()));
    }
    if !p.routes.is_empty() && requested(req, OptionCode::ClasslessStaticRoute) {
        let mut routes = p.routes.clone();
        // RFC 3442: a client that gets 121 ignores option 3, so carry the default route too.
        if let Some(r) = p
            .router
            .filter(|_| !routes.iter().any(|(n, _)| n.prefix_len() == 0))
        {
            routes.push((ipnet::Ipv4Net::default(), r));
        }
        o.insert(DhcpOption::ClasslessStaticRoute(routes));
    }
}
