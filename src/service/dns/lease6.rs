//! The names of DHCPv6 bindings in the zone: AAAA and `ip6.arpa` PTR, live as bindings come
//! and go.
//!
//! # Which name a binding gets
//!
//! As dnsmasq chooses (`rfc3315.c`: a `dhcp-host` name beats the client's FQDN option; and
//! its `ra-names` borrows the DHCPv4 lease name of the same MAC for an address it did not
//! name), in this order:
//! 1. the `[[host]]` whose `mac` is the binding's source MAC, or whose `ipv6` the binding holds
//!    (a reservation): the host's name;
//! 2. the first label of the client's FQDN option (39), if no host reserves it (a binding
//!    cannot take `vm1` from the host `vm1`: refused, and the caller logs it);
//! 3. else the name the DHCPv4 lease of the same MAC holds in the zone (a client that sends
//!    its hostname only over DHCPv4, as dhclient does).
//!
//! A host's own `ipv6` is already a static AAAA; a binding of that address adds nothing. Two
//! clients (DUIDs) with one name: the binding that expires last wins, the other keeps its
//! address without a name (dnsmasq: the newer lease wins). One client with several IA_NAs:
//! the name answers all their addresses.
//!
//! Each binding's name is chosen when it is added, and again for the bindings of a MAC whose
//! DHCPv4 name changed; a name's answer is picked at lookup among the few bindings that claim
//! it. So a change costs O(claims of one name + hosts), not O(bindings): a segment with
//! thousands of DHCPv6 clients (a perfdhcp run) stays linear.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use super::params::DnsHost;
use super::zone::is_host_label;
use super::zone::Zone;
use crate::service::dhcp6::Lease6;
use crate::wire::MacAddr;

type Key = (Vec<u8>, u32);

/// A binding as the zone keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    ip: Ipv6Addr,
    mac: Option<MacAddr>,
    hostname: Option<String>,
    expires: u64,
    /// The name chosen for it (module docs), if any.
    name: Option<String>,
}

/// Why a binding's client name did not enter the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused6 {
    /// The name of a `[[host]]` that is not this client.
    Reserved { name: String, ip: Ipv6Addr },
}

/// The bindings and the names they claim.
#[derive(Debug, Clone, Default)]
pub(super) struct LeaseNames6 {
    bindings: HashMap<Key, Binding>,
    by_ip: HashMap<Ipv6Addr, Key>,
    by_mac: HashMap<MacAddr, Vec<Key>>,
    /// Name → the bindings that chose it.
    claims: HashMap<String, Vec<Key>>,
}

impl LeaseNames6 {
    pub(super) fn len(&self) -> usize {
        self.bindings.len()
    }

    /// Does a binding of `mac` exist (its name may follow `mac`'s DHCPv4 name)?
    pub(super) fn has_mac(&self, mac: MacAddr) -> bool {
        self.by_mac.contains_key(&mac)
    }

    /// Adds or refreshes `lease`, its name chosen now; `Err` if the client's FQDN name is a
    /// host's that is not this client (the binding then has no name from it).
    pub(super) fn upsert(
        &mut self,
        lease: &Lease6,
        hosts: &HashMap<String, DnsHost>,
        v4_name_of: impl Fn(MacAddr) -> Option<String>,
    ) -> Result<(), Refused6> {
        let key = (lease.duid.clone(), lease.iaid);
        self.remove_key(&key);
        // An address moved to this binding: whichever binding held it before lost it.
        if let Some(old) = self.by_ip.get(&lease.ip).cloned() {
            self.remove_key(&old);
        }
        let mut b = Binding {
            ip: lease.ip,
            mac: lease.mac,
            hostname: lease.hostname.clone(),
            expires: lease.expires,
            name: None,
        };
        b.name = choose(&b, hosts, &v4_name_of);
        self.insert(key, b);
        match lease.hostname.as_deref().and_then(|n| hosts.get(n)) {
            Some(h) if !is_hosts(h, lease.mac, lease.ip) => Err(Refused6::Reserved {
                name: h.name.clone(),
                ip: lease.ip,
            }),
            _ => Ok(()),
        }
    }

    fn insert(&mut self, key: Key, b: Binding) {
        self.by_ip.insert(b.ip, key.clone());
        if let Some(mac) = b.mac {
            self.by_mac.entry(mac).or_default().push(key.clone());
        }
        if let Some(n) = &b.name {
            self.claims.entry(n.clone()).or_default().push(key.clone());
        }
        self.bindings.insert(key, b);
    }

    fn remove_key(&mut self, key: &Key) -> bool {
        let Some(b) = self.bindings.remove(key) else {
            return false;
        };
        if self.by_ip.get(&b.ip) == Some(key) {
            self.by_ip.remove(&b.ip);
        }
        if let Some(mac) = b.mac {
            drop_from(&mut self.by_mac, mac, key);
        }
        if let Some(n) = b.name {
            drop_from(&mut self.claims, n, key);
        }
        true
    }

    /// Forgets a binding; false if it was not there.
    pub(super) fn remove(&mut self, duid: &[u8], iaid: u32) -> bool {
        self.remove_key(&(duid.to_vec(), iaid))
    }

    /// Keeps the bindings `is_live` says are live; true if any went.
    pub(super) fn retain(&mut self, mut is_live: impl FnMut(&[u8], u32) -> bool) -> bool {
        let gone: Vec<Key> = self
            .bindings
            .keys()
            .filter(|(d, i)| !is_live(d, *i))
            .cloned()
            .collect();
        for k in &gone {
            self.remove_key(k);
        }
        !gone.is_empty()
    }

    /// `mac`'s DHCPv4 name changed: its bindings choose their names again.
    pub(super) fn follow_mac(
        &mut self,
        mac: MacAddr,
        hosts: &HashMap<String, DnsHost>,
        v4_name_of: impl Fn(MacAddr) -> Option<String>,
    ) {
        let keys = self.by_mac.get(&mac).cloned().unwrap_or_default();
        for k in keys {
            let Some(mut b) = self.bindings.get(&k).cloned() else {
                continue;
            };
            self.remove_key(&k);
            b.name = choose(&b, hosts, &v4_name_of);
            self.insert(k, b);
        }
    }

    /// The DUID that holds `name`: of its claims, the binding that expires last.
    fn holder(&self, name: &str) -> Option<&[u8]> {
        self.claims
            .get(name)?
            .iter()
            .filter_map(|k| self.bindings.get(k).map(|b| (k, b.expires)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(k, _)| k.0.as_slice())
    }

    /// The addresses `name` answers through bindings (the holder's, sorted), leaving out
    /// `except` (a host's own reserved address, a static AAAA already).
    pub(super) fn addresses(&self, name: &str, except: Option<Ipv6Addr>) -> Vec<Ipv6Addr> {
        let Some(holder) = self.holder(name) else {
            return Vec::new();
        };
        let mut ips: Vec<Ipv6Addr> = self.claims[name]
            .iter()
            .filter(|k| k.0 == holder)
            .filter_map(|k| self.bindings.get(k).map(|b| b.ip))
            .filter(|ip| Some(*ip) != except)
            .collect();
        ips.sort();
        ips
    }

    /// The name a bound address has, if its binding holds it.
    pub(super) fn name_of(&self, ip: Ipv6Addr) -> Option<&str> {
        let key = self.by_ip.get(&ip)?;
        let name = self.bindings.get(key)?.name.as_deref()?;
        (self.holder(name) == Some(key.0.as_slice())).then_some(name)
    }
}

impl Zone {
    /// Puts a DHCPv6 binding's name into the zone (or refreshes it); `Err` if the client's
    /// FQDN name is a host's that is not this client (the binding still gets no name).
    pub fn upsert_lease6(&mut self, lease: &Lease6) -> Result<(), Refused6> {
        self.bump_serial();
        let by_mac = &self.lease_name_by_mac;
        self.names6
            .upsert(lease, &self.reserved, |mac| by_mac.get(&mac).cloned())
    }

    /// Takes a DHCPv6 binding's name out (release, decline, expiry).
    pub fn remove_lease6(&mut self, duid: &[u8], iaid: u32) {
        if self.names6.remove(duid, iaid) {
            self.bump_serial();
        }
    }

    /// Takes out the DHCPv6 bindings `is_live` says are gone (expiry).
    pub fn retain_leases6(&mut self, is_live: impl FnMut(&[u8], u32) -> bool) {
        if self.names6.retain(is_live) {
            self.bump_serial();
        }
    }

    /// DHCPv6 bindings the zone holds.
    pub fn lease6_count(&self) -> usize {
        self.names6.len()
    }

    /// The name a DHCPv6-bound address answers to in the zone, if any.
    pub fn lease6_name(&self, ip: Ipv6Addr) -> Option<&str> {
        self.names6.name_of(ip)
    }

    /// The DHCPv6 bindings of `mac` (and of every MAC whose DHCPv4 name went meanwhile)
    /// choose their names again: a DHCPv4 name may be theirs (see `lease6`).
    pub(super) fn follow_macs6(&mut self, mac: impl Into<Option<MacAddr>>) {
        let mut macs = std::mem::take(&mut self.macs6_changed);
        macs.extend(mac.into().filter(|m| self.names6.has_mac(*m)));
        for m in macs {
            let by_mac = &self.lease_name_by_mac;
            self.names6
                .follow_mac(m, &self.reserved, |mac| by_mac.get(&mac).cloned());
        }
    }
}

/// Takes `key` out of `map[k]`, and the entry out when it is empty.
fn drop_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Key>>, k: K, key: &Key) {
    if let Some(v) = map.get_mut(&k) {
        v.retain(|x| x != key);
        if v.is_empty() {
            map.remove(&k);
        }
    }
}

/// Is `host` the machine with `mac` or the holder of its reserved `ip`?
fn is_hosts(host: &DnsHost, mac: Option<MacAddr>, ip: Ipv6Addr) -> bool {
    host.ipv6 == Some(ip) || (mac.is_some() && host.mac == mac)
}

/// The name of one binding (module docs: host, client FQDN, DHCPv4 name).
fn choose(
    b: &Binding,
    hosts: &HashMap<String, DnsHost>,
    v4_name_of: &impl Fn(MacAddr) -> Option<String>,
) -> Option<String> {
    // A reservation of the address first, then the host of the MAC (one each: validated).
    let host = hosts
        .values()
        .find(|h| h.ipv6 == Some(b.ip))
        .or_else(|| hosts.values().find(|h| b.mac.is_some() && h.mac == b.mac));
    if let Some(h) = host {
        return Some(h.name.clone());
    }
    if let Some(n) = b.hostname.as_deref().filter(|n| is_host_label(n)) {
        return (!hosts.contains_key(n)).then(|| n.to_string());
    }
    b.mac.and_then(v4_name_of)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{Name, RData, RecordType};

    use super::super::zone::{Lookup, Zone};
    use super::super::{DnsHost, DnsParams};
    use super::*;
    use crate::service::dhcp::{ClientKey, Lease};

    const MAC_A: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0xb]);

    fn ip6(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x13, 0x31, 0, 0, 0, 0, n)
    }

    fn zone() -> Zone {
        let mut p = DnsParams::new(
            "lab.test",
            "10.13.31.0/24".parse().unwrap(),
            Ipv4Addr::new(10, 13, 31, 1),
        );
        p.ipv6 = Some((ip6(1), "fd00:13:31::/64".parse().unwrap()));
        p.hosts.push(DnsHost {
            name: "db".into(),
            ipv4: None,
            mac: Some(MAC_B),
            ipv6: None,
            match_hostname: false,
        });
        Zone::new(&p)
    }

    fn binding(n: u8, mac: MacAddr, name: Option<&str>, expires: u64) -> Lease6 {
        Lease6 {
            duid: vec![0, 3, 0, 1, 0x52, 0x54, 0, 0, 0, n],
            iaid: 1,
            ip: ip6(0x100 + u16::from(n)),
            port: 1,
            expires,
            mac: Some(mac),
            hostname: name.map(str::to_string),
        }
    }

    fn aaaa(z: &Zone, name: &str) -> Vec<Ipv6Addr> {
        match z.lookup(&Name::from_ascii(name).unwrap(), RecordType::AAAA) {
            Lookup::Answer(rs) => rs
                .iter()
                .filter_map(|r| match &r.data {
                    RData::AAAA(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn ptr(z: &Zone, ip: Ipv6Addr) -> Option<String> {
        let nibbles: Vec<String> = ip
            .octets()
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .rev()
            .map(|n| format!("{n:x}"))
            .collect();
        let q = Name::from_ascii(format!("{}.ip6.arpa.", nibbles.join("."))).unwrap();
        match z.lookup(&q, RecordType::PTR) {
            Lookup::Answer(rs) => rs.first().map(|r| r.data.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_client_fqdn_gives_aaaa_and_ptr_until_the_binding_goes() {
        let mut z = zone();
        let b = binding(1, MAC_A, Some("web"), 2000);
        assert_eq!(z.upsert_lease6(&b), Ok(()));
        assert_eq!(aaaa(&z, "web.lab.test."), vec![b.ip]);
        assert_eq!(ptr(&z, b.ip).as_deref(), Some("web.lab.test."));
        z.remove_lease6(&b.duid, b.iaid);
        assert!(aaaa(&z, "web.lab.test.").is_empty());
        assert_eq!(ptr(&z, b.ip), None);
    }

    #[test]
    fn the_host_of_the_mac_beats_the_fqdn_and_a_reserved_name_is_refused() {
        let mut z = zone();
        // MAC_B is the host `db`'s: its binding is `db`, whatever name it sends.
        let own = binding(2, MAC_B, Some("other"), 2000);
        assert_eq!(z.upsert_lease6(&own), Ok(()));
        assert_eq!(aaaa(&z, "db.lab.test."), vec![own.ip]);
        assert!(aaaa(&z, "other.lab.test.").is_empty());
        // Another MAC sending `db` gets no name.
        let thief = binding(3, MAC_A, Some("db"), 3000);
        assert!(matches!(
            z.upsert_lease6(&thief),
            Err(Refused6::Reserved { .. })
        ));
        assert_eq!(aaaa(&z, "db.lab.test."), vec![own.ip]);
        assert_eq!(ptr(&z, thief.ip), None);
    }

    #[test]
    fn without_a_name_the_dhcpv4_lease_of_the_mac_lends_its_own_live() {
        let mut z = zone();
        let b = binding(4, MAC_A, None, 2000);
        z.upsert_lease6(&b).unwrap();
        assert_eq!(ptr(&z, b.ip), None);
        let v4 = Lease {
            key: ClientKey::Mac(MAC_A),
            mac: MAC_A,
            ip: Ipv4Addr::new(10, 13, 31, 50),
            expires: Some(2000),
            hostname: Some("vm4".into()),
            client_id: None,
            port: 1,
        };
        z.upsert_lease(&v4).unwrap();
        assert_eq!(aaaa(&z, "vm4.lab.test."), vec![b.ip]);
        assert_eq!(ptr(&z, b.ip).as_deref(), Some("vm4.lab.test."));
        z.remove_lease(&v4.key);
        assert!(aaaa(&z, "vm4.lab.test.").is_empty());
    }

    #[test]
    fn two_clients_one_name_the_later_expiry_wins_and_expiry_removes() {
        let mut z = zone();
        let old = binding(5, MAC_A, Some("dup"), 1000);
        let new = binding(6, MAC_B.with_last(6), Some("dup"), 5000);
        z.upsert_lease6(&old).unwrap();
        z.upsert_lease6(&new).unwrap();
        assert_eq!(aaaa(&z, "dup.lab.test."), vec![new.ip]);
        assert_eq!(ptr(&z, old.ip), None);
        z.retain_leases6(|d, _| d != new.duid.as_slice());
        assert_eq!(aaaa(&z, "dup.lab.test."), vec![old.ip]);
        let before = z.serial();
        z.retain_leases6(|_, _| false);
        assert!(aaaa(&z, "dup.lab.test.").is_empty());
        assert_ne!(z.serial(), before);
    }

    impl MacAddr {
        fn with_last(self, n: u8) -> MacAddr {
            let mut m = self.0;
            m[5] = n;
            MacAddr(m)
        }
    }
}
