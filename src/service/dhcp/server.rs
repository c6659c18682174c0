//! The DHCPv4 server state machine: sans-IO, authoritative, dnsmasq's behaviour as reference.
//!
//! # Theory of operation
//!
//! [`DhcpServer::process`] takes one client message (the UDP payload sent to port 67), its
//! ingress port and `now` (epoch seconds), and returns an [`Outcome`]: at most one [`Reply`] and
//! at most one [`LeaseChange`]. The caller persists the change *before* it sends the reply (see
//! the parent module), and builds the frame: source the server id, UDP 67 → 68, out of the
//! ingress port only, to the [`Destination`] given.
//!
//! The life of a message: the per-port token bucket, then the option pre-scan
//! ([`validate`](super::validate)), then dhcproto, then the header checks (a BOOTREQUEST from
//! Ethernet; relayed only from a trusted port, for this subnet). Every refusal is a [`DropReason`] for the caller to count.
//!
//! Address choice for a client, in order (dnsmasq's): its reservation (by client id, MAC or
//! hostname), the address already offered to it, its previous lease (even expired), the address
//! it asks for (option 50) if in the pool, then a pool address probed from a hash of its key
//! (stable: a client that released or lost its lease tends to get the same address back), first
//! among never-leased addresses, then among expired leases. An address is never given while it is
//! quarantined (DECLINE: 600 s), leased or offered to another client, or reserved for another.
//!
//! Authoritative: a REQUEST (selecting with our server id, init-reboot, renewing, rebinding) for
//! an address the client may not have gets a NAK, never silence, so a client whose lease database
//! was lost recovers at once. A REQUEST carrying another server's id only withdraws our offer.
//!
//! Bounded state: leases (one per subnet address), offers ([`MAX_OFFERS`], 60 s), the quarantine
//! (addresses of the subnet), token buckets (one per port id). Expiry is lazy: every check
//! compares with `now`, so the server has no timer and no deadline to expose.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Name};

use super::leases::{ClientKey, Lease, LeaseChange, LeaseTable};
use super::params::{DhcpParams, Reservation, MIN_LEASE};
use super::reply::{self, Client};
use super::validate::check_options;

mod ownership;
mod reason;

pub use reason::DropReason;

pub use super::reply::{Destination, LeaseTerm, Reply};

/// A declined address is not offered to anyone for this long (dnsmasq's DECLINE_BACKOFF).
pub const DECLINE_QUARANTINE_SECS: u64 = 600;
/// An offer reserves its address for this long.
pub const OFFER_SECS: u64 = 60;
/// At most this many outstanding offers (expired ones are purged when full).
pub const MAX_OFFERS: usize = 4096;

/// What to do after one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Persist this (fsync) *before* sending the reply.
    pub change: Option<LeaseChange>,
    pub reply: Option<Reply>,
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    ip: Ipv4Addr,
    expires: u64,
    port: u16,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    last: u64,
}

/// The server: configuration, leases, offers, quarantine and rate limits.
#[derive(Debug)]
pub struct DhcpServer {
    pub(super) params: DhcpParams,
    pub(super) search: Vec<Name>,
    leases: LeaseTable,
    /// The pool's addresses that hold no lease record, as `u32`: where a new client's address
    /// is looked for first, in O(log pool) instead of a walk over leased addresses.
    unleased: BTreeSet<u32>,
    offers: HashMap<ClientKey, Offer>,
    /// The keys of `offers`, by port: a port's offers are counted without a scan of all.
    offers_by_port: HashMap<u16, HashSet<ClientKey>>,
    offered: HashMap<Ipv4Addr, ClientKey>,
    quarantine: HashMap<Ipv4Addr, u64>,
    reserved: HashSet<Ipv4Addr>,
    buckets: HashMap<u16, Bucket>,
    /// Which port owns which host and guarded MAC (from `params.ports`).
    owners: ownership::Owners,
    /// False while the caller cannot persist lease changes: no lease is granted or removed.
    can_persist: bool,
}

impl DhcpServer {
    /// A server with an empty lease table. Use [`with_leases`](Self::with_leases) after replay.
    pub fn new(params: DhcpParams) -> Result<DhcpServer, super::ParamsError> {
        let search = params.validate()?;
        let reserved = params.reservations.iter().map(|r| r.ipv4).collect();
        let owners = ownership::Owners::build(&params.ports);
        let mut server = DhcpServer {
            params,
            search,
            leases: LeaseTable::new(),
            unleased: BTreeSet::new(),
            offers: HashMap::new(),
            offers_by_port: HashMap::new(),
            offered: HashMap::new(),
            quarantine: HashMap::new(),
            reserved,
            buckets: HashMap::new(),
            owners,
            can_persist: true,
        };
        server.index_unleased();
        Ok(server)
    }

    /// Replaces the lease table (the one [`Journal::open`](super::Journal::open) rebuilt).
    pub fn with_leases(mut self, leases: LeaseTable) -> DhcpServer {
        self.leases = leases;
        self.index_unleased();
        self
    }

    /// Replaces the lease table in place (the journal opened late: its replay is the truth).
    pub fn replace_leases(&mut self, leases: LeaseTable) {
        self.leases = leases;
        self.index_unleased();
    }

    /// Whether lease changes can be made durable. While not, REQUESTs get no ACK and
    /// RELEASE/DECLINE change nothing (counted [`DropReason::NoJournal`]); DISCOVER, INFORM
    /// and the NAKs that fix a client's wrong address still work.
    pub fn set_can_persist(&mut self, can: bool) {
        self.can_persist = can;
    }

    /// Rebuilds [`DhcpServer::unleased`] from the pool and the table: O(pool), at start only.
    fn index_unleased(&mut self) {
        self.unleased = match self.params.pool {
            Some((lo, hi)) => (u32::from(lo)..=u32::from(hi))
                .filter(|&ip| self.leases.get_by_ip(Ipv4Addr::from(ip)).is_none())
                .collect(),
            None => BTreeSet::new(),
        };
    }

    /// Keeps [`DhcpServer::unleased`] in step with a table change: the record of `key` moved
    /// from `before` to `after` (`None`: no record).
    fn note_move(&mut self, before: Option<Ipv4Addr>, after: Option<Ipv4Addr>) {
        if let Some(ip) = after {
            self.unleased.remove(&u32::from(ip));
        }
        if let Some(ip) = before.filter(|ip| Some(*ip) != after && self.in_pool(*ip)) {
            if self.leases.get_by_ip(ip).is_none() {
                self.unleased.insert(u32::from(ip));
            }
        }
    }

    /// Upserts `lease` into the table, keeping the index of unleased addresses.
    fn upsert_lease(&mut self, lease: Lease) {
        let before = self.leases.get(&lease.key).map(|l| l.ip);
        let after = lease.ip;
        self.leases.upsert(lease);
        self.note_move(before, Some(after));
    }

    /// Removes the lease of `key`, keeping the index of unleased addresses.
    fn remove_lease(&mut self, key: &ClientKey) {
        if let Some(old) = self.leases.remove(key) {
            self.note_move(Some(old.ip), None);
        }
    }

    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    pub fn params(&self) -> &DhcpParams {
        &self.params
    }

    /// Replaces the reservations (a live `host add`/`host del`, or a reload), checked as
    /// [`DhcpServer::new`] checks them; on error nothing changes. Leases already granted stay
    /// (a lease is never lost): one that now contradicts a reservation is NAKed at its next
    /// REQUEST, and the client then gets what it is entitled to.
    /// Replaces the trusted ports (relays and uplinks: no per-port lease limit), e.g. after a
    /// port was plugged into the switch or unplugged.
    pub fn set_trusted_ports(&mut self, ports: Vec<u16>) {
        self.params.trusted_ports = ports;
    }

    /// Replaces what the server knows of the switch's ports (their hosts and guards), e.g.
    /// after a port was plugged or unplugged or a host changed: see [`ownership`].
    pub fn set_ports(&mut self, ports: std::collections::BTreeMap<u16, super::PortBinding>) {
        self.owners = ownership::Owners::build(&ports);
        self.params.ports = ports;
    }

    pub fn set_reservations(
        &mut self,
        reservations: Vec<Reservation>,
    ) -> Result<(), super::ParamsError> {
        let mut params = self.params.clone();
        params.reservations = reservations;
        self.search = params.validate()?;
        self.reserved = params.reservations.iter().map(|r| r.ipv4).collect();
        self.params = params;
        Ok(())
    }

    /// Handles one client message; see the module docs.
    pub fn process(&mut self, payload: &[u8], port: u16, now: u64) -> Result<Outcome, DropReason> {
        self.take_token(port, now)?;
        check_options(payload).map_err(|_| DropReason::Malformed)?;
        let msg = Message::decode(&mut Decoder::new(payload)).map_err(|_| DropReason::Malformed)?;
        if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
            return Err(DropReason::NotClientMessage);
        }
        let giaddr = msg.giaddr();
        if !giaddr.is_unspecified()
            && (!self.params.trusted_ports.contains(&port) || !self.params.is_host_addr(giaddr))
        {
            return Err(DropReason::Relayed);
        }
        let ty = msg.opts().msg_type().ok_or(DropReason::NotClientMessage)?;
        let client = Client::parse(&msg, port, self.params.key_mode);
        self.check_identity(&client)?;
        match ty {
            MessageType::Discover => self.process_discover(&msg, &client, now),
            MessageType::Request => self.process_request(&msg, &client, now),
            MessageType::Release => self.process_release(&msg, &client),
            MessageType::Decline => self.process_decline(&msg, &client, now),
            MessageType::Inform => self.process_inform(&msg, &client, now),
            _ => Err(DropReason::UnexpectedType),
        }
    }

    fn process_discover(
        &mut self,
        msg: &Message,
        c: &Client,
        now: u64,
    ) -> Result<Outcome, DropReason> {
        // Outstanding offers count against the port's cap too: otherwise DISCOVERs with ever new
        // chaddrs from one port would hold the whole pool in offers (60 s each).
        if self.port_is_full(c, now) || self.port_offers_full(c, now) {
            return Err(DropReason::PortLeaseLimit);
        }
        if self.lease_elsewhere(c, now) {
            return Err(DropReason::NotOwner);
        }
        let ip = self
            .pick_address(c, requested_ip(msg), now)
            .ok_or(DropReason::NoAddress)?;
        if self.offers.len() >= MAX_OFFERS && !self.offers.contains_key(&c.key) {
            self.offers.retain(|_, o| o.expires > now);
            let offers = &self.offers;
            self.offers_by_port.retain(|_, keys| {
                keys.retain(|k| offers.contains_key(k));
                !keys.is_empty()
            });
            let live: HashSet<Ipv4Addr> = self.offers.values().map(|o| o.ip).collect();
            self.offered.retain(|ip, _| live.contains(ip));
            if self.offers.len() >= MAX_OFFERS {
                return Err(DropReason::OffersFull);
            }
        }
        self.withdraw_offer(&c.key);
        self.offers.insert(
            c.key.clone(),
            Offer {
                ip,
                expires: now.saturating_add(OFFER_SECS),
                port: c.port,
            },
        );
        self.offered.insert(ip, c.key.clone());
        self.offers_by_port
            .entry(c.port)
            .or_default()
            .insert(c.key.clone());
        let term = self.lease_term(msg);
        let reply = reply::build(self, msg, MessageType::Offer, ip, c, Some(term))?;
        Ok(Outcome {
            change: None,
            reply: Some(reply),
        })
    }

    fn process_request(
        &mut self,
        msg: &Message,
        c: &Client,
        now: u64,
    ) -> Result<Outcome, DropReason> {
        let ciaddr = msg.ciaddr();
        let ip = match (server_id(msg), requested_ip(msg)) {
            // SELECTING: the client chose a server.
            (Some(sid), _) if sid != self.params.server_id => {
                self.withdraw_offer(&c.key);
                return Err(DropReason::NotForUs);
            }
            (Some(_), Some(ip)) => ip,
            // INIT-REBOOT: no server id, the address it remembers in option 50.
            (None, Some(ip)) => ip,
            // RENEWING (unicast) or REBINDING (broadcast): the address is in ciaddr.
            (_, None) if !ciaddr.is_unspecified() => ciaddr,
            _ => return Err(DropReason::Ignored),
        };
        // A live lease of this client on another port is not this port's to renew or move.
        if self.lease_elsewhere(c, now) {
            return Err(DropReason::NotOwner);
        }
        if !self.may_have(c, ip, now) || self.port_is_full(c, now) {
            return self.nak(msg, c);
        }
        if !self.can_persist {
            return Err(DropReason::NoJournal);
        }
        let term = self.lease_term(msg);
        let reply = reply::build(self, msg, MessageType::Ack, ip, c, Some(term))?;
        self.withdraw_offer(&c.key);
        let lease = Lease {
            key: c.key.clone(),
            mac: c.mac,
            ip,
            expires: term.expiry(now),
            hostname: self
                .reservation_for(c)
                .map(|r| r.name.clone())
                .or(c.hostname.clone()),
            client_id: c.client_id.clone(),
            port: c.port,
        };
        self.upsert_lease(lease.clone());
        Ok(Outcome {
            change: Some(LeaseChange::Upsert(lease)),
            reply: Some(reply),
        })
    }

    fn nak(&self, msg: &Message, c: &Client) -> Result<Outcome, DropReason> {
        let reply = reply::build(self, msg, MessageType::Nak, Ipv4Addr::UNSPECIFIED, c, None)?;
        Ok(Outcome {
            change: None,
            reply: Some(reply),
        })
    }

    /// RELEASE: only with our server id, only for the lease the client holds on ciaddr.
    fn process_release(&mut self, msg: &Message, c: &Client) -> Result<Outcome, DropReason> {
        if server_id(msg) != Some(self.params.server_id) {
            return Err(DropReason::NotForUs);
        }
        if !self.can_persist {
            return Err(DropReason::NoJournal);
        }
        match self.leases.get(&c.key) {
            Some(l) if l.ip == msg.ciaddr() && !self.port_owns(c, l.port) => {
                Err(DropReason::NotOwner)
            }
            Some(l) if l.ip == msg.ciaddr() => {
                self.remove_lease(&c.key);
                Ok(Outcome {
                    change: Some(LeaseChange::Remove(c.key.clone())),
                    reply: None,
                })
            }
            _ => Err(DropReason::Ignored),
        }
    }

    /// DECLINE: the client found the address in use (ARP). Quarantine it for everyone (if it
    /// was offered to or held by this client on this port), and forget the client's lease on it.
    fn process_decline(
        &mut self,
        msg: &Message,
        c: &Client,
        now: u64,
    ) -> Result<Outcome, DropReason> {
        if server_id(msg) != Some(self.params.server_id) {
            return Err(DropReason::NotForUs);
        }
        let ip = requested_ip(msg).ok_or(DropReason::Ignored)?;
        if !self.params.is_host_addr(ip) {
            return Err(DropReason::Ignored);
        }
        // Threat: a DECLINE for an address the guest never had would lock its rightful holder
        // out for 600 s. Only what was offered to this client here, or is its lease, counts.
        if !self.offered_or_held(c, ip, now) {
            return Err(DropReason::NotOwner);
        }
        if !self.can_persist {
            return Err(DropReason::NoJournal);
        }
        self.quarantine.retain(|_, until| *until > now);
        self.quarantine
            .insert(ip, now.saturating_add(DECLINE_QUARANTINE_SECS));
        self.withdraw_offer(&c.key);
        let change = match self.leases.get(&c.key) {
            Some(l) if l.ip == ip => {
                self.remove_lease(&c.key);
                Some(LeaseChange::Remove(c.key.clone()))
            }
            _ => None,
        };
        Ok(Outcome {
            change,
            reply: None,
        })
    }

    /// INFORM: configuration only, no lease time, unicast to ciaddr.
    fn process_inform(
        &mut self,
        msg: &Message,
        c: &Client,
        now: u64,
    ) -> Result<Outcome, DropReason> {
        if msg.ciaddr().is_unspecified() {
            return Err(DropReason::Ignored);
        }
        if !self.may_inform(c, msg.ciaddr(), now) {
            return Err(DropReason::NotOwner);
        }
        let reply = reply::build(self, msg, MessageType::Ack, Ipv4Addr::UNSPECIFIED, c, None)?;
        Ok(Outcome {
            change: None,
            reply: Some(reply),
        })
    }

    /// The reservation that matches `c` and that its port may claim (see [`ownership`]).
    pub(super) fn reservation_for(&self, c: &Client) -> Option<&Reservation> {
        self.params
            .reservations
            .iter()
            .find(|r| Self::matches(r, c) && self.may_claim(c, r))
    }

    /// Does `r` name `c`: by client id if it holds one, by hostname if it asks for that, else
    /// by MAC.
    fn matches(r: &Reservation, c: &Client) -> bool {
        match (&r.client_id, r.match_hostname) {
            (Some(id), _) => c.client_id.as_deref() == Some(id.as_slice()),
            (None, true) => c
                .hostname
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(&r.name)),
            (None, false) => r.mac == Some(c.mac),
        }
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        self.params
            .pool
            .is_some_and(|(lo, hi)| lo <= ip && ip <= hi)
    }

    /// May `ip` be handed to `c` now, as far as other clients are concerned?
    fn is_free_for(&self, c: &Client, ip: Ipv4Addr, now: u64) -> bool {
        if !self.params.is_host_addr(ip) || ip == self.params.server_id {
            return false;
        }
        if self.quarantine.get(&ip).is_some_and(|until| *until > now) {
            return false;
        }
        if self.reserved.contains(&ip) && self.reservation_for(c).map(|r| r.ipv4) != Some(ip) {
            return false;
        }
        if let Some(l) = self.leases.get_by_ip(ip) {
            if l.key != c.key && !l.has_expired(now) {
                return false;
            }
        }
        match self.offered.get(&ip) {
            Some(k) if *k != c.key => self.offers.get(k).is_none_or(|o| o.expires <= now),
            _ => true,
        }
    }

    /// May `c` be bound to `ip` (the REQUEST check)?
    fn may_have(&self, c: &Client, ip: Ipv4Addr, now: u64) -> bool {
        if !self.is_free_for(c, ip, now) {
            return false;
        }
        match self.reservation_for(c) {
            Some(r) if r.ipv4 == ip => true,
            // The reservation is usable: the client must move to it.
            Some(r) if self.is_free_for(c, r.ipv4, now) => false,
            _ => self.in_pool(ip) || self.leases.get(&c.key).is_some_and(|l| l.ip == ip),
        }
    }

    fn pick_address(&self, c: &Client, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(r) = self.reservation_for(c) {
            if self.is_free_for(c, r.ipv4, now) {
                return Some(r.ipv4);
            }
        }
        let candidates = [
            self.offers
                .get(&c.key)
                .filter(|o| o.expires > now)
                .map(|o| o.ip),
            self.leases.get(&c.key).map(|l| l.ip),
            requested,
        ];
        for ip in candidates.into_iter().flatten() {
            if self.in_pool(ip) && self.is_free_for(c, ip, now) {
                return Some(ip);
            }
        }
        let (lo, hi) = self.params.pool?;
        let (lo, hi) = (u32::from(lo), u32::from(hi));
        let size = u64::from(hi - lo) + 1;
        let start = lo + (fnv1a(&c.key) % size) as u32;
        let probe = |ip: &Ipv4Addr| self.is_free_for(c, *ip, now);
        // Addresses without a lease record first (the next one at or after the key's hash, in
        // the ring), so expired leases stay available to returning clients. O(log pool), plus
        // the ones skipped because they are offered to someone else or reserved.
        let unleased = self
            .unleased
            .range(start..)
            .chain(self.unleased.range(..start))
            .map(|&ip| Ipv4Addr::from(ip));
        unleased.clone().find(probe).or_else(|| {
            let ring =
                (0..size).map(|i| Ipv4Addr::from(lo + ((u64::from(start - lo) + i) % size) as u32));
            ring.filter(|ip| self.leases.get_by_ip(*ip).is_some())
                .find(probe)
        })
    }

    /// The configured lease time, or the shorter one the client asked for in option 51 (at
    /// least the 2-minute minimum), as dnsmasq grants it.
    fn lease_term(&self, msg: &Message) -> LeaseTerm {
        let asked = match msg.opts().get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) if *t != u32::MAX => {
                Some((*t).max(MIN_LEASE.as_secs() as u32))
            }
            _ => None,
        };
        let configured = self
            .params
            .lease_time
            .map(|t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX - 1));
        match (configured, asked) {
            (Some(c), Some(a)) => LeaseTerm::Secs(c.min(a)),
            (Some(c), None) => LeaseTerm::Secs(c),
            (None, Some(a)) => LeaseTerm::Secs(a),
            (None, None) => LeaseTerm::Infinite,
        }
    }

    /// Would one more lease on `c.port` exceed the per-port limit? Trusted ports (uplinks,
    /// relays) carry many clients and have no limit.
    fn port_is_full(&self, c: &Client, now: u64) -> bool {
        if self.params.trusted_ports.contains(&c.port) {
            return false;
        }
        let max = self.params.max_leases_per_port;
        self.leases.is_port_full(c.port, now, &c.key, max)
    }

    /// Do the port's live leases and live offers to other clients reach the per-port limit?
    /// O(offers on the port), which this check itself keeps below the limit; trusted ports
    /// are exempt.
    fn port_offers_full(&self, c: &Client, now: u64) -> bool {
        if self.params.trusted_ports.contains(&c.port) {
            return false;
        }
        let max = self.params.max_leases_per_port;
        let Some(keys) = self.offers_by_port.get(&c.port) else {
            return false;
        };
        // O(1) in the common case: even counting every offer and lease record, room is left.
        if keys.len() + self.leases.records_on_port(c.port) < max {
            return false;
        }
        let offers = keys
            .iter()
            .filter(|k| **k != c.key && self.offers.get(*k).is_some_and(|o| o.expires > now))
            .filter(|k| {
                // A client that already holds a live lease here is counted once, by its lease.
                self.leases
                    .get(k)
                    .is_none_or(|l| l.port != c.port || l.has_expired(now))
            })
            .count();
        offers > 0 && offers + self.leases.live_on_port(c.port, now, &c.key, max) >= max
    }

    fn withdraw_offer(&mut self, key: &ClientKey) {
        if let Some(o) = self.offers.remove(key) {
            if let Some(keys) = self.offers_by_port.get_mut(&o.port) {
                keys.remove(key);
                if keys.is_empty() {
                    self.offers_by_port.remove(&o.port);
                }
            }
            if self.offered.get(&o.ip) == Some(key) {
                self.offered.remove(&o.ip);
            }
        }
    }

    fn take_token(&mut self, port: u16, now: u64) -> Result<(), DropReason> {
        let Some(limit) = self.params.rate_limit else {
            return Ok(());
        };
        let b = self.buckets.entry(port).or_insert(Bucket {
            tokens: limit.burst,
            last: now,
        });
        let refill = now
            .saturating_sub(b.last)
            .saturating_mul(u64::from(limit.per_sec));
        b.tokens = u64::from(b.tokens)
            .saturating_add(refill)
            .min(u64::from(limit.burst)) as u32;
        b.last = b.last.max(now);
        if b.tokens == 0 {
            return Err(DropReason::RateLimited);
        }
        b.tokens -= 1;
        Ok(())
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn requested_ip(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

/// FNV-1a of the key: a hash that is stable across restarts (unlike `RandomState`).
fn fnv1a(key: &ClientKey) -> u64 {
    let bytes: &[u8] = match key {
        ClientKey::Mac(m) => &m.0,
        ClientKey::ClientId(id) => id,
    };
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;

    fn lease(n: u32, ip: u32) -> Lease {
        let mac = MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
        Lease {
            key: ClientKey::Mac(mac),
            mac,
            ip: Ipv4Addr::from(ip),
            expires: Some(100),
            hostname: None,
            client_id: None,
            port: 1,
        }
    }

    /// The index of unleased pool addresses stays what a rebuild from the table gives, through
    /// inserts, moves, evictions (another client's lease on the same address) and removals,
    /// including addresses outside the pool.
    #[test]
    fn the_unleased_index_follows_every_table_change() {
        let net: ipnet::Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let mut params = DhcpParams::new(Ipv4Addr::new(10, 0, 0, 1), net);
        params.pool = Some((Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 60)));
        let mut s = DhcpServer::new(params).unwrap();
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(s.unleased.len(), 51);
        // A fixed pseudo-random walk: 40 clients over addresses 5..70 (some outside the pool).
        let mut x: u32 = 12345;
        for step in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let client = (x >> 8) % 40;
            let ip = base + 5 + (x >> 16) % 66;
            if step % 5 == 0 {
                s.remove_lease(&lease(client, ip).key);
            } else {
                s.upsert_lease(lease(client, ip));
            }
            let maintained = s.unleased.clone();
            s.index_unleased();
            assert_eq!(maintained, s.unleased, "step {step}");
        }
    }
}
