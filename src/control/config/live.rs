//! Live changes to a running daemon's [`Config`]: hosts added and removed, extra addresses
//! allowed and disallowed, and the check that a reloaded config differs only in what can be
//! applied without a restart.
//!
//! The daemon keeps one `Config` as the truth about hosts and their addresses; every live change
//! is made here first, checked by the same rules as the file (a DNS-label name, unique MAC and
//! address, never the gateway), and only then applied to the DHCP server and the guard, so the
//! two never disagree. Live changes are not written back to the file: a reload replaces them
//! with what the file says.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::guard::Guard;
use super::{dns_label_problem, host_address_problem, q, Config, Host, HostMatch, PortConfig};
use crate::wire::MacAddr;

/// Most extra addresses of one family on a host (as in the file).
const MAX_EXTRAS: usize = 64;

/// A live change refused, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LiveError(pub String);

fn refuse<T>(message: String) -> Result<T, LiveError> {
    Err(LiveError(message))
}

/// `switchyard host add`: a reservation matched by MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHost {
    pub name: String,
    pub mac: MacAddr,
    pub ipv4: Ipv4Addr,
    pub extra_ipv4: Vec<Ipv4Net>,
    /// Bind the host to this port: the port is then guarded with the host's addresses.
    pub port: Option<String>,
}

impl Config {
    fn port_index(&self, name: &str) -> Result<usize, LiveError> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| LiveError(format!("no port {} (see `switchyard ports`)", q(name))))
    }

    /// Adds a reservation; with `port`, binds it to that port and guards the port (unless it is
    /// trusted). Returns the index of the port whose policy changed.
    pub fn add_host(&mut self, new: NewHost) -> Result<Option<usize>, LiveError> {
        self.check_new_host_identity(&new)?;
        self.check_new_host_ipv4(&new)?;
        if new.extra_ipv4.len() > MAX_EXTRAS {
            return refuse(format!(
                "more than {MAX_EXTRAS} extra addresses (use a prefix instead)"
            ));
        }
        for net in &new.extra_ipv4 {
            self.check_extra(IpNet::V4(*net))?;
        }
        let port = match &new.port {
            None => None,
            Some(p) => Some(self.port_for_new_host(p)?),
        };
        self.hosts.push(Host {
            name: new.name,
            mac: Some(new.mac),
            ipv4: Some(new.ipv4),
            ipv6: None,
            duid: None,
            client_id: None,
            match_by: HostMatch::Mac,
            extra_macs: Vec::new(),
            extra_ipv4: new.extra_ipv4,
            extra_ipv6: Vec::new(),
        });
        if let Some(i) = port {
            let p = &mut self.ports[i];
            p.host = Some(self.hosts.len() - 1);
            p.guard = if p.trusted {
                Guard::Off
            } else {
                Guard::Enforce
            };
        }
        Ok(port)
    }

    /// A new host's name and MAC: a DNS label and a unicast MAC, neither taken.
    fn check_new_host_identity(&self, new: &NewHost) -> Result<(), LiveError> {
        let name = &new.name;
        if let Some(problem) = dns_label_problem(name) {
            return refuse(format!("host name {} {problem}", q(name)));
        }
        if self.hosts.iter().any(|h| &h.name == name) {
            return refuse(format!(
                "host {} already exists (delete it first, or pick another name)",
                q(name)
            ));
        }
        if !new.mac.is_valid_source() {
            return refuse(format!(
                "mac {} is not a unicast address (use the VM's NIC address)",
                new.mac
            ));
        }
        if let Some(h) = self.hosts.iter().find(|h| h.mac == Some(new.mac)) {
            return refuse(format!(
                "mac {} belongs to host {} (each host needs its own MAC)",
                new.mac,
                q(&h.name)
            ));
        }
        Ok(())
    }

    /// A new host's address: inside the subnet, not the gateway's, the host port's or another
    /// host's.
    fn check_new_host_ipv4(&self, new: &NewHost) -> Result<(), LiveError> {
        let problem = if new.ipv4 == self.network.gateway {
            Some("is the gateway's address")
        } else {
            host_address_problem(self.network.subnet, new.ipv4)
        };
        if let Some(problem) = problem {
            return refuse(format!(
                "ipv4 {} {problem} (pick a free address inside {})",
                new.ipv4, self.network.subnet
            ));
        }
        if let Some((_, ifname, _)) = self.host_port().filter(|(_, _, a)| *a == new.ipv4) {
            return refuse(format!(
                "ipv4 {} is the host port's address (on {ifname}; pick a free address)",
                new.ipv4
            ));
        }
        if let Some(h) = self.hosts.iter().find(|h| h.ipv4 == Some(new.ipv4)) {
            return refuse(format!(
                "ipv4 {} is reserved for host {} (each host needs its own address)",
                new.ipv4,
                q(&h.name)
            ));
        }
        Ok(())
    }

    /// The index of port `p`, if a new host may be bound to it (no host yet, not the host port).
    fn port_for_new_host(&self, p: &str) -> Result<usize, LiveError> {
        let i = self.port_index(p)?;
        if let Some(h) = self.ports[i].host {
            return refuse(format!(
                "port {} already has host {} (delete that host first)",
                q(p),
                q(&self.hosts[h].name)
            ));
        }
        if self.host_port().is_some_and(|(hp, _, _)| hp == i) {
            return refuse(format!(
                "port {} is the host port, the host's own leg (bind the host to a \
                 guest's port)",
                q(p)
            ));
        }
        Ok(i)
    }

    /// Removes a reservation. Refused while a port is bound to the host: the port's guard is
    /// the host's addresses, and leaving it without them would either open it or cut it off.
    pub fn remove_host(&mut self, name: &str) -> Result<(), LiveError> {
        let Some(idx) = self.hosts.iter().position(|h| h.name == name) else {
            return refuse(format!("no host {} (see `switchyard leases`)", q(name)));
        };
        if let Some(p) = self.ports.iter().find(|p| p.host == Some(idx)) {
            return refuse(format!(
                "host {} is the host of port {} (remove the port first)",
                q(name),
                q(&p.name)
            ));
        }
        self.hosts.remove(idx);
        for p in &mut self.ports {
            if let Some(h) = p.host.as_mut() {
                if *h > idx {
                    *h -= 1;
                }
            }
        }
        Ok(())
    }

    /// An extra source prefix must be a unicast prefix with its host bits zero, and an IPv4 one
    /// must not cover the gateway (a host owning it could answer ARP for it).
    fn check_extra(&self, net: IpNet) -> Result<(), LiveError> {
        if net.trunc() != net {
            return refuse(format!(
                "{net} has host bits set (did you mean {}?)",
                net.trunc()
            ));
        }
        let addr = net.network();
        let is_broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
        if addr.is_unspecified() || addr.is_multicast() || is_broadcast {
            return refuse(format!("{net} is not a unicast address"));
        }
        if net.contains(&IpAddr::V4(self.network.gateway)) {
            return refuse(format!("{net} covers the gateway {}", self.network.gateway));
        }
        Ok(())
    }

    /// The host behind a guarded port, for `allow`/`disallow`.
    fn guarded_host(&self, port: &str) -> Result<(usize, usize), LiveError> {
        let i = self.port_index(port)?;
        let p = &self.ports[i];
        match p.host {
            Some(h) if p.guard != Guard::Off => Ok((i, h)),
            _ => refuse(format!(
                "port {} is not guarded: every source is allowed already (give it a host)",
                q(port)
            )),
        }
    }

    /// Declares `net` as an extra source address of `port`'s host. Returns the port's index.
    pub fn allow_extra(&mut self, port: &str, net: IpNet) -> Result<usize, LiveError> {
        let (i, h) = self.guarded_host(port)?;
        self.check_extra(net)?;
        let host = &mut self.hosts[h];
        let (len, present) = match net {
            IpNet::V4(n) => (host.extra_ipv4.len(), host.extra_ipv4.contains(&n)),
            IpNet::V6(n) => (host.extra_ipv6.len(), host.extra_ipv6.contains(&n)),
        };
        if present {
            return refuse(format!("{net} is already allowed on port {}", q(port)));
        }
        if len >= MAX_EXTRAS {
            return refuse(format!(
                "port {} has {MAX_EXTRAS} extra addresses already (use a prefix instead)",
                q(port)
            ));
        }
        match net {
            IpNet::V4(n) => host.extra_ipv4.push(n),
            IpNet::V6(n) => host.extra_ipv6.push(n),
        }
        Ok(i)
    }

    /// Withdraws an extra source address declared with `allow` or in the file. The host's
    /// reservation and its DHCP leases are not extras and stay allowed.
    pub fn disallow_extra(&mut self, port: &str, net: IpNet) -> Result<usize, LiveError> {
        let (i, h) = self.guarded_host(port)?;
        let host = &mut self.hosts[h];
        let before = host.extra_ipv4.len() + host.extra_ipv6.len();
        match net {
            IpNet::V4(n) => host.extra_ipv4.retain(|x| *x != n),
            IpNet::V6(n) => host.extra_ipv6.retain(|x| *x != n),
        }
        if host.extra_ipv4.len() + host.extra_ipv6.len() == before {
            return refuse(format!(
                "{net} is not an extra address of port {} (see `switchyard ports`)",
                q(port)
            ));
        }
        Ok(i)
    }

    /// Whether `new` (a reloaded file) differs from `self` only in what a running daemon can
    /// apply: hosts, ports added, removed or re-plumbed, and each port's host and guard keys.
    /// `Err` says what else changed.
    pub fn live_difference(&self, new: &Config) -> Result<(), LiveError> {
        let mut changed = Vec::new();
        if self.network != new.network {
            changed.push("[network]".to_string());
        }
        if self.switch_but_fdb() != new.switch_but_fdb() || self.static_fdb() != new.static_fdb() {
            changed.push("[switch]".to_string());
        }
        if self.dhcp != new.dhcp {
            changed.push("[dhcp]".to_string());
        }
        if self.segments != new.segments {
            changed.push("[[segment]]".to_string());
        }
        // The appliance's IPv6 side (NDP, RAs, DHCPv6, the zone's ip6.arpa) is built once, at
        // start: a changed prefix or mode is refused rather than half applied.
        if self.ipv6 != new.ipv6 {
            changed.push("subnet6, gateway6, [ra] or [dhcp6]".to_string());
        }
        if self.control != new.control {
            changed.push("control_socket, control_group or [metrics]".to_string());
        }
        // A static FDB entry names a slot: the port it names stays as it is.
        let pinned_replugged = self.switch.static_fdb.iter().any(|s| {
            let a = &self.ports[s.port];
            !new.ports
                .iter()
                .any(|b| b.name == a.name && !a.replugged(b))
        });
        if pinned_replugged {
            changed.push("a port a [[switch.fdb]] entry names".to_string());
        }
        if changed.is_empty() {
            Ok(())
        } else {
            refuse(format!(
                "{} changed: that needs a restart (a reload applies hosts, port guards and ports \
                 added or removed only); nothing was applied",
                changed.join(", ")
            ))
        }
    }

    /// The ports a reload to `new` removes (indices into `self`: gone, or re-plumbed) and adds
    /// (indices into `new`: new, or re-plumbed). A port whose name, kind, MTU and isolation stay
    /// is untouched: its host and guard are changed in place.
    pub fn port_changes(&self, new: &Config) -> (Vec<usize>, Vec<usize>) {
        let kept = |a: &PortConfig, others: &[PortConfig]| {
            others.iter().any(|b| b.name == a.name && !a.replugged(b))
        };
        let removed = (0..self.ports.len())
            .filter(|&i| !kept(&self.ports[i], &new.ports))
            .collect();
        let added = (0..new.ports.len())
            .filter(|&i| !kept(&new.ports[i], &self.ports))
            .collect();
        (removed, added)
    }
}

impl Config {
    /// `[switch]` without its static FDB entries (which name ports by index).
    fn switch_but_fdb(&self) -> super::SwitchConfig {
        let mut s = self.switch.clone();
        s.static_fdb.clear();
        s
    }

    /// The static FDB entries, with their ports by name.
    fn static_fdb(&self) -> Vec<(MacAddr, &str)> {
        self.switch
            .static_fdb
            .iter()
            .map(|s| (s.mac, self.ports[s.port].name.as_str()))
            .collect()
    }
}

impl PortConfig {
    /// Whether going from `self` to `other` (same name) needs the port closed and opened again.
    pub fn replugged(&self, other: &PortConfig) -> bool {
        self.name != other.name
            || self.kind != other.kind
            || self.isolated != other.isolated
            || self.mtu != other.mtu
    }
}
