//! The DHCPv6 server (RFC 8415), sans-IO: reservations by DUID or MAC, a pool, one address
//! per IA_NA, and the port ownership rules of the DHCPv4 server.
//!
//! # Theory of operation
//!
//! [`Dhcp6Server::handle`] takes one client message (the UDP payload), the port it came in
//! on, the frame's source MAC and `now` (seconds since the epoch), and returns an
//! [`Outcome`]: the reply to send and the lease changes that must be durable first (the caller
//! appends them to the `leases6.journal` and fsyncs before the REPLY leaves). Every message is
//! structurally checked by [`validate`] before `dhcproto` decodes it.
//!
//! The messages: SOLICIT gets an ADVERTISE with preference 255 (the client need not wait for
//! others), or with Rapid Commit a REPLY that commits; REQUEST, RENEW and REBIND get a REPLY
//! that commits the binding; RELEASE and DECLINE end it (a declined address is kept out of the
//! pool for a lease time); CONFIRM says whether the client's addresses are on-link;
//! INFORMATION-REQUEST gets the DNS options only. Every REPLY and ADVERTISE carries the DNS
//! server (the gateway) and the search list. Relays are not served (their option is refused).
//!
//! The address of an IA_NA: the host's reservation (matched by the client's DUID, else by the
//! frame's source MAC: without relays that is the client's own), else the address the binding
//! already has, else the first free one of the pool from a point hashed from the DUID and IAID
//! (at most [`MAX_PROBES`] tries, so a huge pool costs no more than a small one).
//!
//! Ownership, as `dhcp/server/ownership.rs` does for DHCPv4: on a port whose guard enforces,
//! the source MAC must be the port's host's; a reservation whose host is bound to another port
//! is never granted (a guest writing another host's DUID into its message gets nothing:
//! [`Drop::Impersonation`]); a binding recorded on another declared port is not acted on
//! ([`Drop::NotOwner`]).
//!
//! Limits: no IA_TA or IA_PD (answered with NoAddrsAvail/ignored), no reconfigure, no
//! authentication, one address per IA_NA, T1/T2 at 0.5/0.8 of the lease time.

pub mod journal;
pub mod lease_file;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, Status, StatusCode, IANA,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, Name};
use ipnet::Ipv6Net;

use crate::wire::MacAddr;

/// Pool addresses tried per allocation.
pub const MAX_PROBES: u64 = 1024;

/// A `[[host]]` with an `ipv6`, as DHCPv6 matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation6 {
    pub name: String,
    pub duid: Option<Vec<u8>>,
    pub mac: Option<MacAddr>,
    pub ipv6: Ipv6Addr,
}

/// The port a message came in on, as ownership sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortOwner {
    /// The host bound to the port.
    pub host: Option<String>,
    /// `Some` when the port's guard enforces: the source MAC must be one of these.
    pub guard_macs: Option<Vec<MacAddr>>,
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Params {
    /// The server's DUID (DUID-LL of the appliance's MAC).
    pub server_duid: Vec<u8>,
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    /// Inclusive; `None`: reservations only.
    pub pool: Option<(Ipv6Addr, Ipv6Addr)>,
    /// Valid and preferred lifetime, seconds.
    pub lease_time: u32,
    pub reservations: Vec<Reservation6>,
    /// Declared ports; an undeclared port (sans-IO tests) has no owner.
    pub ports: BTreeMap<u16, PortOwner>,
    pub trusted_ports: Vec<u16>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    /// Only INFORMATION-REQUEST is answered (`ra-stateless`).
    pub stateless: bool,
}

impl Dhcp6Params {
    /// DUID-LL (type 3, hardware type 1) of `mac`.
    pub fn duid_ll(mac: MacAddr) -> Vec<u8> {
        let mut d = vec![0, 3, 0, 1];
        d.extend_from_slice(&mac.0);
        d
    }
}

/// A binding: one address of one IA_NA of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    pub duid: Vec<u8>,
    pub iaid: u32,
    pub ip: Ipv6Addr,
    pub port: u16,
    /// Seconds since the epoch.
    pub expires: u64,
    /// The source MAC of the message that made the binding (`None` in a journal line written
    /// before it was recorded): how DNS finds the host's reservation or its DHCPv4 name.
    pub mac: Option<MacAddr>,
    /// The first label of the client's FQDN option (39, RFC 4704), lowercase, if it is a
    /// valid host label.
    pub hostname: Option<String>,
}

impl Lease6 {
    pub fn has_expired(&self, now: u64) -> bool {
        self.expires <= now
    }
}

/// A change to persist before the reply leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change6 {
    Upsert(Lease6),
    Remove { duid: Vec<u8>, iaid: u32 },
}

/// Why a message got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Malformed(validate::Invalid),
    /// It decoded, but breaks RFC 8415's rules (no client id, a server id where none belongs).
    Invalid,
    /// A server id that is not ours: for another server.
    NotForUs,
    Impersonation,
    NotOwner,
    /// `ra-stateless`: only INFORMATION-REQUEST is served.
    Stateless,
}

/// What [`Dhcp6Server::handle`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Vec<u8>,
    /// Durable before `reply` leaves.
    pub changes: Vec<Change6>,
}

/// Messages handled, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dhcp6Counters {
    pub replies: u64,
    pub advertises: u64,
    pub dropped: u64,
}

type Key = (Vec<u8>, u32);

/// The server state: the bindings and the declined addresses.
#[derive(Debug, Clone)]
pub struct Dhcp6Server {
    params: Dhcp6Params,
    leases: HashMap<Key, Lease6>,
    by_ip: HashMap<Ipv6Addr, Key>,
    declined: HashMap<Ipv6Addr, u64>,
    counters: Dhcp6Counters,
}

/// One client message, decoded, with where it came from.
struct Request<'a> {
    msg: &'a Message,
    duid: Vec<u8>,
    port: u16,
    mac: MacAddr,
    now: u64,
}

impl Dhcp6Server {
    pub fn new(params: Dhcp6Params, leases: impl IntoIterator<Item = Lease6>) -> Dhcp6Server {
        let mut s = Dhcp6Server {
            params,
            leases: HashMap::new(),
            by_ip: HashMap::new(),
            declined: HashMap::new(),
            counters: Dhcp6Counters::default(),
        };
        for l in leases {
            s.insert(l);
        }
        s
    }

    pub fn counters(&self) -> Dhcp6Counters {
        self.counters
    }

    pub fn params(&self) -> &Dhcp6Params {
        &self.params
    }

    /// The live bindings at `now`.
    pub fn leases(&self, now: u64) -> impl Iterator<Item = &Lease6> {
        self.leases.values().filter(move |l| !l.has_expired(now))
    }

    /// Every binding held, expired or not (for the journal's compaction).
    pub fn all_leases(&self) -> impl Iterator<Item = &Lease6> {
        self.leases.values()
    }

    /// New reservations and ports (`host add`, reload); bindings stay.
    pub fn set_params(&mut self, params: Dhcp6Params) {
        self.params = params;
    }

    fn insert(&mut self, l: Lease6) {
        let key = (l.duid.clone(), l.iaid);
        if let Some(old) = self.leases.remove(&key) {
            self.by_ip.remove(&old.ip);
        }
        if let Some(other) = self.by_ip.insert(l.ip, key.clone()) {
            if other != key {
                self.leases.remove(&other);
            }
        }
        self.leases.insert(key, l);
    }

    fn remove(&mut self, key: &Key) -> Option<Lease6> {
        let l = self.leases.remove(key)?;
        self.by_ip.remove(&l.ip);
        Some(l)
    }

    /// Removes the bindings expired at `now` and returns them (the caller unbinds the guard and
    /// journals the removal).
    pub fn expire(&mut self, now: u64) -> Vec<Lease6> {
        let gone: Vec<Key> = self
            .leases
            .iter()
            .filter(|(_, l)| l.has_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        self.declined.retain(|_, until| *until > now);
        gone.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Answers one client message; `Err` says why there is no reply (a counted drop).
    pub fn handle(
        &mut self,
        payload: &[u8],
        port: u16,
        mac: MacAddr,
        now: u64,
    ) -> Result<Outcome, Drop> {
        let r = self.handle_inner(payload, port, mac, now);
        match &r {
            Ok(o) if o.reply.first() == Some(&2) => self.counters.advertises += 1,
            Ok(_) => self.counters.replies += 1,
            Err(_) => self.counters.dropped += 1,
        }
        r
    }

    fn handle_inner(
        &mut self,
        payload: &[u8],
        port: u16,
        mac: MacAddr,
        now: u64,
    ) -> Result<Outcome, Drop> {
        validate::validate(payload).map_err(Drop::Malformed)?;
        let msg = Message::decode(&mut Decoder::new(payload))
            .map_err(|_| Drop::Malformed(validate::Invalid::Length))?;
        let opts = msg.opts();
        let duid = match opts.get(dhcproto::v6::OptionCode::ClientId) {
            Some(DhcpOption::ClientId(d)) => Some(d.clone()),
            _ => None,
        };
        let server_id = match opts.get(dhcproto::v6::OptionCode::ServerId) {
            Some(DhcpOption::ServerId(d)) => Some(d.clone()),
            _ => None,
        };
        let kind = msg.msg_type();
        // RFC 8415 §16: which messages carry a server id, and whose it must be.
        match (kind, &server_id) {
            (MessageType::Solicit | MessageType::Rebind | MessageType::Confirm, Some(_)) => {
                return Err(Drop::Invalid)
            }
            (
                MessageType::Request
                | MessageType::Renew
                | MessageType::Release
                | MessageType::Decline,
                None,
            ) => return Err(Drop::Invalid),
            (_, Some(id)) if *id != self.params.server_duid => return Err(Drop::NotForUs),
            _ => {}
        }
        self.check_port(port, mac)?;
        if kind == MessageType::InformationRequest {
            return Ok(self.reply(&msg, MessageType::Reply, duid.as_deref(), Vec::new()));
        }
        let duid = duid.ok_or(Drop::Invalid)?;
        if self.params.stateless {
            return Err(Drop::Stateless);
        }
        let req = Request {
            msg: &msg,
            duid,
            port,
            mac,
            now,
        };
        let rapid = opts.get(dhcproto::v6::OptionCode::RapidCommit).is_some();
        match kind {
            MessageType::Solicit if rapid => self.assign(&req, true, true),
            MessageType::Solicit => self.assign(&req, false, false),
            MessageType::Request | MessageType::Renew | MessageType::Rebind => {
                self.assign(&req, true, false)
            }
            MessageType::Release | MessageType::Decline => self.release(&req, kind),
            MessageType::Confirm => Ok(self.confirm(&req)),
            _ => Err(Drop::Invalid),
        }
    }

    /// On an enforcing port, the source MAC is the host's (the guard checks it too, but not in
    /// monitor mode).
    fn check_port(&self, port: u16, mac: MacAddr) -> Result<(), Drop> {
        let owner = self.params.ports.get(&port);
        if let Some(macs) = owner.and_then(|o| o.guard_macs.as_ref()) {
            if !macs.contains(&mac) {
                return Err(Drop::Impersonation);
            }
        }
        Ok(())
    }

    fn is_trusted(&self, port: u16) -> bool {
        self.params.trusted_ports.contains(&port)
    }

    /// The port a reservation's host is bound to, if any.
    fn owner_of(&self, r: &Reservation6) -> Option<u16> {
        self.params
            .ports
            .iter()
            .find(|(_, o)| o.host.as_deref() == Some(r.name.as_str()))
            .map(|(p, _)| *p)
    }

    /// The reservation for this client: by DUID, else by MAC; `Err` if the only match is a
    /// host bound to another port.
    fn reservation(&self, req: &Request<'_>) -> Result<Option<Ipv6Addr>, Drop> {
        let by_duid = self
            .params
            .reservations
            .iter()
            .find(|r| r.duid.as_deref() == Some(&req.duid[..]));
        let by_mac = || {
            self.params
                .reservations
                .iter()
                .find(|r| r.duid.is_none() && r.mac == Some(req.mac))
        };
        let Some(r) = by_duid.or_else(by_mac) else {
            return Ok(None);
        };
        match self.owner_of(r) {
            Some(p) if p != req.port && !self.is_trusted(req.port) => Err(Drop::Impersonation),
            _ => Ok(Some(r.ipv6)),
        }
    }

    fn is_free(&self, ip: Ipv6Addr, key: &Key, now: u64) -> bool {
        ip != self.params.gateway
            && ip != self.params.subnet.network()
            && !self.declined.contains_key(&ip)
            && !self.params.reservations.iter().any(|r| r.ipv6 == ip)
            && self
                .by_ip
                .get(&ip)
                .and_then(|k| self.leases.get(k))
                .is_none_or(|l| l.duid == key.0 && l.iaid == key.1 || l.has_expired(now))
    }

    /// A pool address for `key`: from a point hashed from it, the first free one.
    fn pool_address(&self, key: &Key, now: u64) -> Option<Ipv6Addr> {
        let (start, end) = self.params.pool?;
        let (s, e) = (u128::from(start), u128::from(end));
        let size = e - s + 1;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.0.iter().chain(&key.1.to_be_bytes()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let first = u128::from(h) % size;
        (0..u128::from(MAX_PROBES).min(size))
            .map(|i| Ipv6Addr::from(s + (first + i) % size))
            .find(|ip| self.is_free(*ip, key, now))
    }

    /// SOLICIT, REQUEST, RENEW, REBIND: an address for each IA_NA; `commit`: bind it.
    fn assign(&mut self, req: &Request<'_>, commit: bool, rapid: bool) -> Result<Outcome, Drop> {
        let reserved = self.reservation(req)?;
        let mut ias = Vec::new();
        let mut changes = Vec::new();
        let iaids: Vec<u32> = req
            .msg
            .opts()
            .iter()
            .filter_map(|o| match o {
                DhcpOption::IANA(ia) => Some(ia.id),
                _ => None,
            })
            .take(8)
            .collect();
        for iaid in iaids {
            let key = (req.duid.clone(), iaid);
            let held = self.leases.get(&key).cloned();
            if let Some(l) = &held {
                // Rule 3: a binding recorded on another declared port is not this port's.
                if l.port != req.port
                    && !l.has_expired(req.now)
                    && self.params.ports.contains_key(&l.port)
                {
                    return Err(Drop::NotOwner);
                }
            }
            let ip = reserved
                .or_else(|| {
                    held.as_ref()
                        .map(|l| l.ip)
                        .filter(|ip| self.is_free(*ip, &key, req.now))
                })
                .or_else(|| self.pool_address(&key, req.now));
            let Some(ip) = ip else {
                ias.push(self.ia(iaid, None, Some(Status::NoAddrsAvail)));
                continue;
            };
            if commit {
                let lease = Lease6 {
                    duid: req.duid.clone(),
                    iaid,
                    ip,
                    port: req.port,
                    expires: req.now + u64::from(self.params.lease_time),
                    mac: Some(req.mac),
                    hostname: client_fqdn_label(req.msg),
                };
                self.insert(lease.clone());
                changes.push(Change6::Upsert(lease));
            }
            ias.push(self.ia(iaid, Some(ip), None));
        }
        let kind = if commit {
            MessageType::Reply
        } else {
            MessageType::Advertise
        };
        let mut extra = Vec::new();
        if rapid {
            extra.push(DhcpOption::RapidCommit);
        }
        if !commit {
            extra.push(DhcpOption::Preference(255));
        }
        ias.extend(extra);
        let mut out = self.reply(req.msg, kind, Some(&req.duid), ias);
        out.changes = changes;
        Ok(out)
    }

    fn release(&mut self, req: &Request<'_>, kind: MessageType) -> Result<Outcome, Drop> {
        let mut changes = Vec::new();
        for o in req.msg.opts().iter() {
            let DhcpOption::IANA(ia) = o else { continue };
            let key = (req.duid.clone(), ia.id);
            let Some(l) = self.leases.get(&key) else {
                continue;
            };
            if l.port != req.port && self.params.ports.contains_key(&l.port) {
                return Err(Drop::NotOwner);
            }
            if let Some(l) = self.remove(&key) {
                if kind == MessageType::Decline {
                    self.declined
                        .insert(l.ip, req.now + u64::from(self.params.lease_time));
                }
                changes.push(Change6::Remove {
                    duid: l.duid,
                    iaid: l.iaid,
                });
            }
        }
        let status = DhcpOption::StatusCode(StatusCode {
            status: Status::Success,
            msg: String::new(),
        });
        let mut out = self.reply(req.msg, MessageType::Reply, Some(&req.duid), vec![status]);
        out.changes = changes;
        Ok(out)
    }

    fn confirm(&mut self, req: &Request<'_>) -> Outcome {
        let on_link = req.msg.opts().iter().all(|o| match o {
            DhcpOption::IANA(ia) => ia.opts.iter().all(|a| match a {
                DhcpOption::IAAddr(a) => self.params.subnet.contains(&a.addr),
                _ => true,
            }),
            _ => true,
        });
        let status = DhcpOption::StatusCode(StatusCode {
            status: if on_link {
                Status::Success
            } else {
                Status::NotOnLink
            },
            msg: String::new(),
        });
        self.reply(req.msg, MessageType::Reply, Some(&req.duid), vec![status])
    }

    fn ia(&self, iaid: u32, ip: Option<Ipv6Addr>, status: Option<Status>) -> DhcpOption {
        let life = self.params.lease_time;
        let mut opts = DhcpOptions::new();
        if let Some(addr) = ip {
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr,
                preferred_life: life,
                valid_life: life,
                opts: DhcpOptions::new(),
            }));
        }
        if let Some(status) = status {
            opts.insert(DhcpOption::StatusCode(StatusCode {
                status,
                msg: String::new(),
            }));
        }
        let (t1, t2) = if ip.is_some() {
            (life / 2, (u64::from(life) * 4 / 5) as u32)
        } else {
            (0, 0)
        };
        DhcpOption::IANA(IANA {
            id: iaid,
            t1,
            t2,
            opts,
        })
    }

    /// A reply of `kind` to `msg`: its transaction id, our server id, the client's id, `opts`,
    /// and the DNS options.
    fn reply(
        &self,
        msg: &Message,
        kind: MessageType,
        duid: Option<&[u8]>,
        opts: Vec<DhcpOption>,
    ) -> Outcome {
        let mut m = Message::new_with_id(kind, msg.xid());
        let o = m.opts_mut();
        o.insert(DhcpOption::ServerId(self.params.server_duid.clone()));
        if let Some(d) = duid {
            o.insert(DhcpOption::ClientId(d.to_vec()));
        }
        for x in opts {
            o.insert(x);
        }
        if !self.params.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServers(self.params.dns.clone()));
        }
        let names: Vec<Name> = self
            .params
            .search
            .iter()
            .filter_map(|d| Name::from_ascii(format!("{d}.")).ok())
            .collect();
        if !names.is_empty() {
            o.insert(DhcpOption::DomainSearchList(names));
        }
        let mut reply = Vec::with_capacity(256);
        // Encoding into a Vec cannot fail.
        let _ = m.encode(&mut Encoder::new(&mut reply));
        Outcome {
            reply,
            changes: Vec::new(),
        }
    }
}

/// The Client FQDN option's code (RFC 4704; `dhcproto` 0.15 does not decode it).
const OPTION_CLIENT_FQDN: u16 = 39;

/// The first label of the client's FQDN option (flags, then the name in DNS wire format,
/// possibly partial), lowercase, if it is a valid host label. Anything else: `None`.
pub fn client_fqdn_label(msg: &Message) -> Option<String> {
    let data = msg.opts().iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == OPTION_CLIENT_FQDN => Some(u.data()),
        _ => None,
    })?;
    let len = usize::from(*data.get(1)?);
    let label = data.get(2..2 + len)?;
    let label = std::str::from_utf8(label).ok()?.to_ascii_lowercase();
    crate::service::dns::zone::is_host_label(&label).then_some(label)
}

#[cfg(test)]
mod tests;
