//! The local zone: the network's names, live.
//!
//! # Theory of operation
//!
//! The zone is authoritative for `[network] domain` and for the subnet's reverse names under
//! `in-addr.arpa` (and, with `subnet6`, the /64's under `ip6.arpa`: hosts' `ipv6` and the
//! gateway's, see `reverse6`). Its names come from three places, in this order of precedence:
//! 1. `[[host]]` reservations: a reserved name always belongs to its host. With an `ipv4` it
//!    answers that address; without one it answers the address of the host's own lease.
//! 2. `[[dns.record]]` static records (A, AAAA, CNAME, TXT, SRV), possibly several labels deep.
//! 3. Live DHCP leases that carried a hostname (option 12), a valid label, that is no
//!    reservation's name. A lease cannot take `vm1` from the host `vm1`: the collision is
//!    refused and returned to the caller to log. Two leases with one name: the newer wins.
//!    DHCPv6 bindings give AAAA and `ip6.arpa` PTR names the same way (the host of their MAC,
//!    the client's FQDN option, or the DHCPv4 name of the same MAC: see `lease6`).
//!
//! [`Zone::lookup`] maps a question to [`Lookup`]: records, NODATA or NXDOMAIN (each with the
//! zone's SOA as authority), or `NotLocal` (the caller forwards). A name with a single label
//! (`vm1.`) is looked up as `vm1.<domain>` and never leaves the appliance. Every name in the
//! domain and every reverse name inside the subnet is local, so it is never forwarded
//! (libvirt's `localOnly`).
//!
//! Answers carry the owner name as the client asked it (its case too), so a client that checks
//! the question against the answer, or randomises the case, is satisfied.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::{Ipv4Net, Ipv6Net};

use super::lease6::LeaseNames6;
use super::params::{DnsHost, DnsParams, RecordValue};
use super::reverse6::{self, Reverse6};
use crate::service::dhcp::{ClientKey, Lease};
use crate::wire::MacAddr;

/// CNAME chains inside the zone are followed this far.
const MAX_CNAME_CHAIN: usize = 8;
/// SOA timers (seconds): refresh, retry, expire. The zone is never transferred.
const SOA_TIMERS: (i32, i32, i32) = (3600, 600, 86_400);

/// Zone versions are unique in the process: a new zone or a changed one never takes the
/// number of one seen before (see [`Zone::version`]).
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// What the zone says about one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Records for the answer section.
    Answer(Vec<Record>),
    /// The name exists, the type does not: the SOA for the authority section.
    NoData(Record),
    /// The name does not exist: the SOA for the authority section.
    NxDomain(Record),
    /// Not the zone's: forward it.
    NotLocal,
}

/// Why a lease's hostname did not enter the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRefused {
    /// Not a valid DNS label.
    Invalid(String),
    /// The name of a reservation (another machine's).
    Reserved { name: String, ip: Ipv4Addr },
}

/// A lease's name in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseName {
    key: ClientKey,
    ip: Ipv4Addr,
    mac: MacAddr,
}

/// The zone's data; see the module docs.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Changes with every change of the zone's data (see [`Zone::version`]).
    version: u64,
    apex: Name,
    ttl: u32,
    gateway: Ipv4Addr,
    subnet: Ipv4Net,
    /// `gateway6` and `subnet6`.
    ipv6: Option<(Ipv6Addr, Ipv6Net)>,
    soa: SOA,
    /// Static records by relative lowercase name ("" = apex).
    statics: HashMap<String, Vec<RData>>,
    /// Names that exist only because a longer static name ends with them.
    empty_non_terminals: HashSet<String>,
    pub(super) reserved: HashMap<String, DnsHost>,
    /// Reserved names without an ipv4, answered from their own host's lease.
    reserved_lease: HashMap<String, Ipv4Addr>,
    /// Lease hostnames (not reserved) → owner and address.
    leases: HashMap<String, LeaseName>,
    lease_name_of: HashMap<ClientKey, String>,
    /// Addresses named statically (hosts, static A records): first name wins.
    static_ptr: HashMap<Ipv4Addr, String>,
    /// Addresses named by leases (and reserved hosts without ipv4).
    lease_ptr: HashMap<Ipv4Addr, String>,
    /// IPv6 addresses named statically (hosts' `ipv6`, static AAAA records): first name wins.
    static_ptr6: HashMap<Ipv6Addr, String>,
    /// DHCPv6 bindings and the AAAA/PTR names they give.
    pub(super) names6: LeaseNames6,
    /// MACs of DHCPv6 bindings whose DHCPv4 name went since their names were chosen.
    pub(super) macs6_changed: Vec<MacAddr>,
    /// The lease name each MAC holds (for DHCPv6 bindings that send none).
    pub(super) lease_name_by_mac: HashMap<MacAddr, String>,
}

/// Is `label` a valid host label (RFC 1123, lowercase)?
pub fn is_host_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `name` as an absolute DNS name (`name.`); `None` if it is not one.
fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?;
    n.set_fqdn(true);
    Some(n)
}

impl Zone {
    /// Builds the zone from validated params. Names that hickory cannot represent (the config
    /// validated them, so this does not happen) are skipped.
    pub fn new(p: &DnsParams) -> Zone {
        let apex = fqdn(&p.domain).unwrap_or_else(Name::root);
        let soa = SOA::new(
            apex.clone(),
            fqdn(&format!("hostmaster.{}", p.domain)).unwrap_or_else(Name::root),
            1,
            SOA_TIMERS.0,
            SOA_TIMERS.1,
            SOA_TIMERS.2,
            p.local_ttl,
        );
        let mut z = Zone {
            version: next_version(),
            apex,
            ttl: p.local_ttl,
            gateway: p.gateway,
            subnet: p.subnet,
            ipv6: p.ipv6,
            soa,
            statics: HashMap::new(),
            empty_non_terminals: HashSet::new(),
            reserved: HashMap::new(),
            reserved_lease: HashMap::new(),
            leases: HashMap::new(),
            lease_name_of: HashMap::new(),
            static_ptr: HashMap::new(),
            lease_ptr: HashMap::new(),
            static_ptr6: HashMap::new(),
            names6: LeaseNames6::default(),
            macs6_changed: Vec::new(),
            lease_name_by_mac: HashMap::new(),
        };
        for h in &p.hosts {
            z.reserved.insert(h.name.clone(), h.clone());
            if let Some(ip) = h.ipv4 {
                z.static_ptr.entry(ip).or_insert_with(|| h.name.clone());
            }
            if let Some(ip) = h.ipv6 {
                z.static_ptr6.entry(ip).or_insert_with(|| h.name.clone());
            }
        }
        for r in &p.records {
            let data = match &r.value {
                RecordValue::A(ip) => {
                    if !r.name.is_empty() {
                        z.static_ptr.entry(*ip).or_insert_with(|| r.name.clone());
                    }
                    RData::A(A(*ip))
                }
                RecordValue::Aaaa(ip) => {
                    if !r.name.is_empty() {
                        z.static_ptr6.entry(*ip).or_insert_with(|| r.name.clone());
                    }
                    RData::AAAA(AAAA(*ip))
                }
                RecordValue::Cname(t) => match fqdn(t) {
                    Some(t) => RData::CNAME(CNAME(t)),
                    None => continue,
                },
                RecordValue::Txt(parts) => RData::TXT(TXT::new(parts.clone())),
                RecordValue::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => match fqdn(target) {
                    Some(t) => RData::SRV(SRV::new(*priority, *weight, *port, t)),
                    None => continue,
                },
            };
            z.statics.entry(r.name.clone()).or_default().push(data);
            let mut rest = r.name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                z.empty_non_terminals.insert(parent.to_string());
                rest = parent;
            }
        }
        z
    }

    /// The zone's apex (`lab.test.`).
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Puts `lease`'s hostname into the zone (or refreshes it). `Err` says why it was refused;
    /// a lease without a hostname only releases a name its owner held before.
    pub fn upsert_lease(&mut self, lease: &Lease) -> Result<(), NameRefused> {
        let r = self.upsert_lease_v4(lease);
        self.follow_macs6(lease.mac);
        r
    }

    fn upsert_lease_v4(&mut self, lease: &Lease) -> Result<(), NameRefused> {
        self.bump_serial();
        self.forget_lease(&lease.key);
        // The address moved to this lease: whichever lease held it before lost it.
        if let Some(old) = self.lease_ptr.get(&lease.ip).cloned() {
            if let Some(owner) = self.leases.get(&old).map(|l| l.key.clone()) {
                self.forget_lease(&owner);
            }
        }
        let Some(raw) = lease.hostname.as_deref() else {
            return Ok(());
        };
        let name = raw.to_ascii_lowercase();
        if !is_host_label(&name) {
            return Err(NameRefused::Invalid(raw.to_string()));
        }
        if let Some(host) = self.reserved.get(&name) {
            let own = match (host.ipv4, host.mac) {
                (Some(ip), _) => ip == lease.ip,
                (None, Some(mac)) => mac == lease.mac || host.match_hostname,
                (None, None) => host.match_hostname,
            };
            if !own {
                return Err(NameRefused::Reserved { name, ip: lease.ip });
            }
            if host.ipv4.is_none() {
                self.reserved_lease.insert(name.clone(), lease.ip);
                self.lease_ptr.insert(lease.ip, name.clone());
                self.lease_name_of.insert(lease.key.clone(), name);
            }
            return Ok(());
        }
        if let Some(prev) = self.leases.get(&name).map(|l| l.key.clone()) {
            // Two clients, one name: the newer lease wins (dnsmasq does the same).
            self.forget_lease(&prev);
        }
        self.lease_ptr.insert(lease.ip, name.clone());
        self.lease_name_of.insert(lease.key.clone(), name.clone());
        self.lease_name_by_mac.insert(lease.mac, name.clone());
        self.leases.insert(
            name,
            LeaseName {
                key: lease.key.clone(),
                ip: lease.ip,
                mac: lease.mac,
            },
        );
        Ok(())
    }

    /// Takes the name of `key`'s lease out of the zone (release, expiry, replacement).
    pub fn remove_lease(&mut self, key: &ClientKey) {
        if self.forget_lease(key) {
            self.follow_macs6(None);
        }
    }

    /// [`remove_lease`](Self::remove_lease) without the DHCPv6 names' rebuild; true if the
    /// lease had a name.
    fn forget_lease(&mut self, key: &ClientKey) -> bool {
        let Some(name) = self.lease_name_of.remove(key) else {
            return false;
        };
        self.bump_serial();
        let ip = match self.leases.remove(&name) {
            Some(l) => {
                if self.lease_name_by_mac.get(&l.mac) == Some(&name) {
                    self.lease_name_by_mac.remove(&l.mac);
                }
                if self.names6.has_mac(l.mac) {
                    self.macs6_changed.push(l.mac);
                }
                Some(l.ip)
            }
            None => self.reserved_lease.remove(&name),
        };
        if let Some(ip) = ip {
            if self.lease_ptr.get(&ip) == Some(&name) {
                self.lease_ptr.remove(&ip);
            }
        }
        true
    }

    /// Takes out the names of every lease whose key `is_live` says is gone (expiry).
    pub fn retain_leases(&mut self, mut is_live: impl FnMut(&ClientKey) -> bool) {
        let gone: Vec<ClientKey> = self
            .lease_name_of
            .keys()
            .filter(|k| !is_live(k))
            .cloned()
            .collect();
        let mut any = false;
        for k in gone {
            any |= self.forget_lease(&k);
        }
        if any {
            self.follow_macs6(None);
        }
    }

    /// The SOA serial: 1 at start, one more for every change of the lease names (RFC 1982
    /// arithmetic, so it wraps).
    pub fn serial(&self) -> u32 {
        self.soa.serial
    }

    pub(super) fn bump_serial(&mut self) {
        self.soa.serial = self.soa.serial.wrapping_add(1);
        self.version = next_version();
    }

    /// A number that changes whenever the zone's answers may change (a lease name in or out, a
    /// new zone): answers kept for one version are stale under another. Unlike the SOA serial,
    /// a rebuilt zone never repeats an earlier version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The address a lease name answers, if the name is in the zone through a lease.
    pub fn lease_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.leases
            .get(name)
            .map(|l| l.ip)
            .or_else(|| self.reserved_lease.get(name).copied())
    }

    /// Names held by leases now.
    pub fn lease_count(&self) -> usize {
        self.lease_name_of.len()
    }

    /// Answers `qname`/`qtype` from local data, or says it is not local.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let lower = qname.to_lowercase();
        if let Some((_, net6)) = self.ipv6 {
            if let Some(r) = reverse6::classify(&lower, net6) {
                return self.lookup_reverse6(qname, qtype, r);
            }
        }
        if let Some(octets) = self.reverse_octets(&lower) {
            return self.lookup_reverse(qname, qtype, &octets);
        }
        let relative = if lower.num_labels() == 1 {
            String::from_utf8_lossy(lower.iter().next().unwrap_or_default()).into_owned()
        } else if lower == self.apex {
            String::new()
        } else if self.apex.zone_of(&lower) {
            let keep = usize::from(lower.num_labels() - self.apex.num_labels());
            let labels: Vec<String> = lower
                .iter()
                .take(keep)
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            labels.join(".")
        } else {
            return Lookup::NotLocal;
        };
        self.lookup_relative(qname, &relative, qtype)
    }

    fn lookup_relative(&self, owner: &Name, relative: &str, qtype: RecordType) -> Lookup {
        let data = self.rdata_of(relative);
        if data.is_empty() {
            return if relative.is_empty() || self.empty_non_terminals.contains(relative) {
                Lookup::NoData(self.soa_record())
            } else {
                Lookup::NxDomain(self.soa_record())
            };
        }
        let cname = data.iter().find(|d| matches!(d, RData::CNAME(_)));
        if let (Some(RData::CNAME(target)), false) = (cname, qtype == RecordType::CNAME) {
            return Lookup::Answer(self.chase(owner, &target.0, qtype));
        }
        let answers: Vec<Record> = data
            .into_iter()
            .filter(|d| qtype == RecordType::ANY || d.record_type() == qtype)
            .map(|d| Record::from_rdata(owner.clone(), self.ttl, d))
            .collect();
        if answers.is_empty() {
            Lookup::NoData(self.soa_record())
        } else {
            Lookup::Answer(answers)
        }
    }

    /// The CNAME at `owner`, then what its target answers while the target is in the zone.
    fn chase(&self, owner: &Name, target: &Name, qtype: RecordType) -> Vec<Record> {
        let mut out = vec![Record::from_rdata(
            owner.clone(),
            self.ttl,
            RData::CNAME(CNAME(target.clone())),
        )];
        let mut target = target.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            if !self.apex.zone_of(&target) || target.num_labels() == 1 {
                break;
            }
            match self.lookup(&target, qtype) {
                Lookup::Answer(records) => {
                    let next = records.last().and_then(|r| match &r.data {
                        RData::CNAME(c) => Some(c.0.clone()),
                        _ => None,
                    });
                    out.extend(records);
                    match next {
                        Some(n) => target = n,
                        None => break,
                    }
                }
                _ => break,
            }
        }
        out
    }

    /// Every record at `relative` (unfiltered).
    fn rdata_of(&self, relative: &str) -> Vec<RData> {
        let mut data = Vec::new();
        if relative.is_empty() {
            data.push(RData::SOA(self.soa.clone()));
            data.push(RData::NS(NS(self.apex.clone())));
            data.push(RData::A(A(self.gateway)));
            if let Some((gw6, _)) = self.ipv6 {
                data.push(RData::AAAA(AAAA(gw6)));
            }
        }
        if let Some(host) = self.reserved.get(relative) {
            if let Some(ip) = host
                .ipv4
                .or_else(|| self.reserved_lease.get(relative).copied())
            {
                data.push(RData::A(A(ip)));
            }
            if let Some(ip) = host.ipv6 {
                data.push(RData::AAAA(AAAA(ip)));
            }
        } else if let Some(l) = self.leases.get(relative) {
            data.push(RData::A(A(l.ip)));
        }
        let own6 = self.reserved.get(relative).and_then(|h| h.ipv6);
        data.extend(
            self.names6
                .addresses(relative, own6)
                .into_iter()
                .map(|ip| RData::AAAA(AAAA(ip))),
        );
        if let Some(s) = self.statics.get(relative) {
            data.extend(s.iter().cloned());
        }
        data
    }

    fn soa_record(&self) -> Record {
        Record::from_rdata(self.apex.clone(), self.ttl, RData::SOA(self.soa.clone()))
    }

    /// The address octets of a reverse name inside the subnet (most significant first, 0 to 4
    /// of them, or more labels than that: the caller answers NXDOMAIN), if the name is the
    /// zone's; `None` if it is not a reverse name of the subnet.
    fn reverse_octets(&self, lower: &Name) -> Option<Vec<Option<u8>>> {
        let labels: Vec<&[u8]> = lower.iter().collect();
        let n = labels.len();
        if n < 3 || labels[n - 1] != b"arpa" || labels[n - 2] != b"in-addr" {
            return None;
        }
        // Most significant octet first; `None` for a label that is not an octet.
        let octets: Vec<Option<u8>> = labels[..n - 2]
            .iter()
            .rev()
            .map(|l| std::str::from_utf8(l).ok()?.parse::<u8>().ok())
            .collect();
        // The name is local once its leading octets name a prefix inside the subnet.
        let prefix = self.subnet.prefix_len();
        let mut addr = [0u8; 4];
        for (i, o) in octets.iter().take(4).enumerate() {
            addr[i] = (*o)?;
            let bits = 8 * (i as u8 + 1);
            if bits >= prefix && self.subnet.contains(&Ipv4Addr::from(addr)) {
                return Some(octets);
            }
        }
        None
    }

    fn lookup_reverse(&self, owner: &Name, qtype: RecordType, octets: &[Option<u8>]) -> Lookup {
        let soa = self.reverse_soa(octets);
        if octets.len() > 4 || octets.iter().any(Option::is_none) {
            return Lookup::NxDomain(soa);
        }
        let apex_len = usize::from(self.subnet.prefix_len().div_ceil(8)).clamp(1, 4);
        if octets.len() == apex_len && qtype == RecordType::SOA {
            return Lookup::Answer(vec![Record::from_rdata(
                owner.clone(),
                self.ttl,
                RData::SOA(self.soa.clone()),
            )]);
        }
        if octets.len() < 4 {
            // An inner node of the reverse tree inside the subnet: exists, holds nothing.
            return Lookup::NoData(soa);
        }
        let ip = Ipv4Addr::new(
            octets[0].unwrap_or(0),
            octets[1].unwrap_or(0),
            octets[2].unwrap_or(0),
            octets[3].unwrap_or(0),
        );
        let name = if ip == self.gateway {
            Some(String::new())
        } else {
            self.static_ptr
                .get(&ip)
                .or_else(|| self.lease_ptr.get(&ip))
                .cloned()
        };
        let Some(name) = name else {
            return Lookup::NxDomain(soa);
        };
        if qtype != RecordType::PTR && qtype != RecordType::ANY {
            return Lookup::NoData(soa);
        }
        let target = if name.is_empty() {
            Some(self.apex.clone())
        } else {
            fqdn(&format!("{name}.{}", self.apex))
        };
        match target {
            Some(t) => Lookup::Answer(vec![Record::from_rdata(
                owner.clone(),
                self.ttl,
                RData::PTR(PTR(t)),
            )]),
            None => Lookup::NxDomain(soa),
        }
    }

    /// A name under the /64's `ip6.arpa` tree: the PTR of the gateway or a named address.
    fn lookup_reverse6(&self, owner: &Name, qtype: RecordType, r: Reverse6) -> Lookup {
        let Some((gw6, net6)) = self.ipv6 else {
            return Lookup::NotLocal;
        };
        let soa = Record::from_rdata(
            fqdn(&reverse6::apex(net6)).unwrap_or_else(Name::root),
            self.ttl,
            RData::SOA(self.soa.clone()),
        );
        let ip = match r {
            Reverse6::Invalid => return Lookup::NxDomain(soa),
            Reverse6::Inner => return Lookup::NoData(soa),
            Reverse6::Address(ip) => ip,
        };
        let target = if ip == gw6 {
            Some(self.apex.clone())
        } else {
            match self
                .static_ptr6
                .get(&ip)
                .map(String::as_str)
                .or_else(|| self.names6.name_of(ip))
            {
                Some(name) => fqdn(&format!("{name}.{}", self.apex)),
                None => return Lookup::NxDomain(soa),
            }
        };
        match (target, qtype) {
            (Some(t), RecordType::PTR | RecordType::ANY) => {
                Lookup::Answer(vec![Record::from_rdata(
                    owner.clone(),
                    self.ttl,
                    RData::PTR(PTR(t)),
                )])
            }
            (Some(_), _) => Lookup::NoData(soa),
            (None, _) => Lookup::NxDomain(soa),
        }
    }

    /// The SOA of the reverse zone holding `octets`: the subnet's prefix rounded up to whole
    /// octets (`31.13.10.in-addr.arpa.` for a /24).
    fn reverse_soa(&self, octets: &[Option<u8>]) -> Record {
        let keep = usize::from(self.subnet.prefix_len().div_ceil(8)).clamp(1, 4);
        let mut labels: Vec<String> = octets
            .iter()
            .take(keep)
            .map(|o| o.unwrap_or(0).to_string())
            .collect();
        labels.reverse();
        let owner = fqdn(&format!("{}.in-addr.arpa", labels.join("."))).unwrap_or_else(Name::root);
        Record::from_rdata(owner, self.ttl, RData::SOA(self.soa.clone()))
    }
}
