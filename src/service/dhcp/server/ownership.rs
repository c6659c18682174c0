//! Which port a DHCP message may act for: clients, leases and reservations are bound to the
//! switch port they belong to.
//!
//! # Theory of operation
//!
//! Threat: DHCP carries the client's identity inside the payload (`chaddr`, option 61, option
//! 12), where the guard, which reads the Ethernet and IP headers, does not look. A guest that
//! writes another host's MAC into `chaddr` would be granted that host's reservation, and the
//! guard would then bind the victim's address to the attacker's port (libvirt's clean-traffic
//! and a managed switch's DHCP snooping refuse this; so does this module). Assumption: the
//! daemon declares every port ([`DhcpParams::ports`](super::super::DhcpParams)) with the host
//! bound to it and, when the port's guard enforces, that host's MACs.
//!
//! The rules, checked for every client message after it parsed:
//!
//! 1. On an enforcing port, `chaddr` is one of the port's host's MACs; and from any port that
//!    is not trusted, `chaddr` is not the MAC of a host guarded on another port
//!    ([`DropReason::Impersonation`]).
//! 2. A reservation whose host is bound to a port is matched only for messages from that port
//!    (or a trusted one: relays and uplinks); a message that matches only such foreign
//!    reservations (by MAC, client id or hostname) is [`DropReason::Impersonation`].
//! 3. A live lease recorded on a declared port is acted on (DISCOVER, REQUEST, RELEASE,
//!    DECLINE) only from that port ([`DropReason::NotOwner`]); a lease on a port that no longer
//!    exists may move (a VM re-plugged into a new port keeps its address).
//! 4. A DECLINE quarantines only the address offered to or held by that client on that port,
//!    and an INFORM's `ciaddr` is not another client's lease or another port's reservation
//!    (on an enforcing port: one of its own addresses) ([`DropReason::NotOwner`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{Client, DhcpServer, DropReason, Reservation};
use crate::wire::MacAddr;

/// Who owns what, derived from the declared ports: rebuilt whenever they change.
#[derive(Debug, Clone, Default)]
pub(super) struct Owners {
    /// Host name (lowercase) → the port it is bound to.
    hosts: HashMap<String, u16>,
    /// MAC of a host on an enforcing port → that port.
    macs: HashMap<MacAddr, u16>,
}

impl Owners {
    pub(super) fn build(
        ports: &std::collections::BTreeMap<u16, super::super::PortBinding>,
    ) -> Owners {
        let mut o = Owners::default();
        for (&port, b) in ports {
            if let Some(h) = &b.host {
                o.hosts.insert(h.to_ascii_lowercase(), port);
            }
            for mac in b.guard_macs.iter().flatten() {
                o.macs.insert(*mac, port);
            }
        }
        o
    }
}

impl DhcpServer {
    pub(super) fn is_trusted(&self, port: u16) -> bool {
        self.params.trusted_ports.contains(&port)
    }

    /// May a message from `c`'s port use reservation `r` (rule 2)?
    pub(super) fn may_claim(&self, c: &Client, r: &Reservation) -> bool {
        match self.owners.hosts.get(&r.name.to_ascii_lowercase()) {
            Some(&owner) => owner == c.port || self.is_trusted(c.port),
            None => true,
        }
    }

    /// Rules 1 and 2: is the message's claimed identity one its port may use?
    pub(super) fn check_identity(&self, c: &Client) -> Result<(), DropReason> {
        if let Some(macs) = self
            .params
            .ports
            .get(&c.port)
            .and_then(|b| b.guard_macs.as_ref())
        {
            if !macs.contains(&c.mac) {
                return Err(DropReason::Impersonation);
            }
        }
        if !self.is_trusted(c.port) {
            if let Some(&owner) = self.owners.macs.get(&c.mac) {
                if owner != c.port {
                    return Err(DropReason::Impersonation);
                }
            }
        }
        let foreign = || {
            self.params
                .reservations
                .iter()
                .any(|r| Self::matches(r, c) && !self.may_claim(c, r))
        };
        if self.reservation_for(c).is_none() && foreign() {
            return Err(DropReason::Impersonation);
        }
        Ok(())
    }

    /// Rule 3: does `c`'s key hold a live lease on another port that still exists?
    pub(super) fn lease_elsewhere(&self, c: &Client, now: u64) -> bool {
        self.leases.get(&c.key).is_some_and(|l| {
            !l.has_expired(now) && l.port != c.port && self.params.ports.contains_key(&l.port)
        })
    }

    /// Does a lease recorded on `port` belong to a message from `c`'s port? (An undeclared
    /// port's lease belongs to whoever holds the key: the sans-IO default, or a port gone.)
    pub(super) fn port_owns(&self, c: &Client, port: u16) -> bool {
        port == c.port || !self.params.ports.contains_key(&port)
    }

    /// Rule 4 for DECLINE: was `ip` offered to `c` on its port, or is it `c`'s lease there?
    pub(super) fn offered_or_held(&self, c: &Client, ip: Ipv4Addr, now: u64) -> bool {
        let offered = self
            .offers
            .get(&c.key)
            .is_some_and(|o| o.ip == ip && o.port == c.port && o.expires > now);
        let held = self
            .leases
            .get(&c.key)
            .is_some_and(|l| l.ip == ip && self.port_owns(c, l.port));
        offered || held
    }

    /// Rule 4 for INFORM: may `c` say it is configured with `ip`?
    pub(super) fn may_inform(&self, c: &Client, ip: Ipv4Addr, now: u64) -> bool {
        let own_lease = |l: &super::Lease| l.key == c.key && self.port_owns(c, l.port);
        if let Some(l) = self.leases.get_by_ip(ip) {
            if !l.has_expired(now) && !own_lease(l) {
                return false;
            }
        }
        if self
            .params
            .reservations
            .iter()
            .any(|r| r.ipv4 == ip && !self.may_claim(c, r))
        {
            return false;
        }
        let Some(b) = self.params.ports.get(&c.port) else {
            return true;
        };
        if b.guard_macs.is_none() {
            return true;
        }
        b.ipv4.iter().any(|n| n.contains(&ip))
            || self
                .leases
                .get_by_ip(ip)
                .is_some_and(|l| !l.has_expired(now) && own_lease(l))
    }
}
