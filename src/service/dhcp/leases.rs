//! The lease table, and the dnsmasq-format lease file.
//!
//! # Theory of operation
//!
//! A [`Lease`] binds one client (its [`ClientKey`]) to one address until `expires` (epoch seconds;
//! `None` is an infinite lease). The [`LeaseTable`] indexes leases by key and by address, and
//! the addresses by ingress port (for the per-port lease limit); every change is O(1).
//!
//! An expired lease stays in the table: it is how a returning client gets its previous address.
//! The server reuses its address for another client only when the pool has no never-used address
//! left, and the upsert of the new lease evicts the old one. The table is therefore bounded by the
//! subnet: one lease per address at most, and one address per key.
//!
//! Every mutation is a [`LeaseChange`], the unit that the server returns and the
//! [`journal`](super::journal) persists, so replaying the journal rebuilds the same table.
//!
//! [`LeaseTable::write_dnsmasq`] writes dnsmasq's lease file (the one Multipass and libvirt
//! tools parse), live leases only, atomically (temp file, fsync, rename).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;

use crate::wire::MacAddr;

/// How the server tells clients apart: by MAC (the default) or by DHCP client identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    Mac(MacAddr),
    ClientId(Box<[u8]>),
}

/// One client's binding to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: ClientKey,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Epoch seconds; `None`: infinite.
    pub expires: Option<u64>,
    /// Sanitized: `[A-Za-z0-9-]{1,63}` (the reservation's name, or the client's option 12).
    pub hostname: Option<String>,
    pub client_id: Option<Box<[u8]>>,
    /// The ingress port the client was last seen on.
    pub port: u16,
}

impl Lease {
    /// Has the lease run out at `now`? Infinite leases never do.
    pub fn has_expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// One mutation of the table: what the server returns and the journal records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// Insert or replace the lease of `lease.key` (evicting whichever lease held `lease.ip`).
    Upsert(Lease),
    /// Forget the lease of `key` (RELEASE, DECLINE).
    Remove(ClientKey),
}

/// Leases by client key and by address, addresses by port.
#[derive(Debug, Default, Clone)]
pub struct LeaseTable {
    by_key: HashMap<ClientKey, Lease>,
    by_ip: HashMap<Ipv4Addr, ClientKey>,
    by_port: HashMap<u16, HashSet<Ipv4Addr>>,
}

impl LeaseTable {
    pub fn new() -> LeaseTable {
        LeaseTable::default()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, key: &ClientKey) -> Option<&Lease> {
        self.by_key.get(key)
    }

    pub fn get_by_ip(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip).and_then(|k| self.by_key.get(k))
    }

    /// All leases, live and expired, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_key.values()
    }

    /// Applies one change; the journal replays through here too.
    pub fn apply(&mut self, change: &LeaseChange) {
        match change {
            LeaseChange::Upsert(lease) => self.upsert(lease.clone()),
            LeaseChange::Remove(key) => {
                self.remove(key);
            }
        }
    }

    /// Inserts or replaces `lease`; a different client's lease on the same address is evicted.
    pub fn upsert(&mut self, lease: Lease) {
        if let Some(holder) = self.by_ip.get(&lease.ip) {
            if *holder != lease.key {
                let holder = holder.clone();
                self.remove(&holder);
            }
        }
        self.remove(&lease.key);
        self.by_ip.insert(lease.ip, lease.key.clone());
        self.by_port.entry(lease.port).or_default().insert(lease.ip);
        self.by_key.insert(lease.key.clone(), lease);
    }

    /// Removes the lease of `key`, returning it.
    pub fn remove(&mut self, key: &ClientKey) -> Option<Lease> {
        let lease = self.by_key.remove(key)?;
        self.by_ip.remove(&lease.ip);
        if let Some(set) = self.by_port.get_mut(&lease.port) {
            set.remove(&lease.ip);
            if set.is_empty() {
                self.by_port.remove(&lease.port);
            }
        }
        Some(lease)
    }

    /// Does `port` hold at least `limit` live leases besides `except`'s? O(1) while the port
    /// holds fewer than `limit` leases (live or expired), else O(leases on the port).
    pub fn is_port_full(&self, port: u16, now: u64, except: &ClientKey, limit: usize) -> bool {
        let Some(ips) = self.by_port.get(&port) else {
            return limit == 0;
        };
        if ips.len() < limit {
            return false;
        }
        let live = ips
            .iter()
            .filter_map(|ip| self.get_by_ip(*ip))
            .filter(|l| l.key != *except && !l.has_expired(now));
        live.take(limit).count() >= limit
    }

    /// Lease records (live or expired) on `port`.
    pub fn records_on_port(&self, port: u16) -> usize {
        self.by_port.get(&port).map_or(0, HashSet::len)
    }

    /// Live leases on `port` besides `except`'s, counted up to `limit`.
    pub fn live_on_port(&self, port: u16, now: u64, except: &ClientKey, limit: usize) -> usize {
        let Some(ips) = self.by_port.get(&port) else {
            return 0;
        };
        ips.iter()
            .filter_map(|ip| self.get_by_ip(*ip))
            .filter(|l| l.key != *except && !l.has_expired(now))
            .take(limit)
            .count()
    }

    /// The dnsmasq lease file: `<expiry> <mac> <ip> <hostname|*> <client-id|*>` per live lease,
    /// expiry 0 for infinite, client id as colon-separated hex; sorted by address.
    pub fn format_dnsmasq(&self, now: u64) -> String {
        let mut live: Vec<&Lease> = self.iter().filter(|l| !l.has_expired(now)).collect();
        live.sort_by_key(|l| l.ip);
        let mut out = String::new();
        for l in live {
            let cid = l
                .client_id
                .as_deref()
                .map_or_else(|| "*".to_string(), hex_colon);
            let _ = writeln!(
                out,
                "{} {} {} {} {}",
                l.expires.unwrap_or(0),
                l.mac,
                l.ip,
                l.hostname.as_deref().unwrap_or("*"),
                cid
            );
        }
        out
    }

    /// Writes [`format_dnsmasq`](Self::format_dnsmasq) to `path` atomically.
    pub fn write_dnsmasq(&self, path: &Path, now: u64) -> io::Result<()> {
        write_atomically(path, self.format_dnsmasq(now).as_bytes())
    }
}

/// `01:aa:bb`: the client-id form dnsmasq writes.
pub fn hex_colon(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes `bytes` to `path.tmp`, fsyncs it, renames it over `path` and fsyncs the directory:
/// a reader sees the old file or the new one, never a mix, even across a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // A full disk: do not leave a partial copy holding the space that is missing.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(mac: u8, ip: [u8; 4], port: u16, expires: Option<u64>) -> Lease {
        let mac = MacAddr([2, 0, 0, 0, 0, mac]);
        Lease {
            key: ClientKey::Mac(mac),
            mac,
            ip: ip.into(),
            expires,
            hostname: None,
            client_id: None,
            port,
        }
    }

    #[test]
    fn indexes_stay_consistent() {
        let mut t = LeaseTable::new();
        t.upsert(lease(1, [10, 0, 0, 5], 1, Some(100)));
        t.upsert(lease(2, [10, 0, 0, 6], 1, Some(100)));
        let other = ClientKey::Mac(MacAddr::ZERO);
        assert!(t.is_port_full(1, 50, &other, 2));
        assert!(!t.is_port_full(1, 50, &ClientKey::Mac(MacAddr([2, 0, 0, 0, 0, 1])), 2));
        assert!(
            !t.is_port_full(1, 100, &other, 1),
            "expired leases do not count"
        );
        // Client 1 moves address: its old address is free.
        t.upsert(lease(1, [10, 0, 0, 7], 2, Some(100)));
        assert!(t.get_by_ip([10, 0, 0, 5].into()).is_none());
        assert!(t.is_port_full(1, 50, &other, 1) && !t.is_port_full(1, 50, &other, 2));
        // Client 3 takes client 2's address: client 2's lease is evicted.
        t.upsert(lease(3, [10, 0, 0, 6], 1, None));
        assert_eq!(t.len(), 2);
        assert!(t
            .get(&ClientKey::Mac(MacAddr([2, 0, 0, 0, 0, 2])))
            .is_none());
        t.apply(&LeaseChange::Remove(ClientKey::Mac(MacAddr([
            2, 0, 0, 0, 0, 3,
        ]))));
        assert!(t.get_by_ip([10, 0, 0, 6].into()).is_none());
        assert!(!t.is_port_full(1, 0, &other, 1));
    }

    #[test]
    fn dnsmasq_format() {
        let mut t = LeaseTable::new();
        let mut l = lease(1, [10, 0, 0, 5], 1, Some(1700000000));
        l.hostname = Some("vm1".into());
        l.client_id = Some(vec![1, 2, 0, 0, 0, 0, 1].into());
        t.upsert(l);
        t.upsert(lease(2, [10, 0, 0, 4], 1, None));
        t.upsert(lease(3, [10, 0, 0, 3], 1, Some(10)));
        assert_eq!(
            t.format_dnsmasq(100),
            "0 02:00:00:00:00:02 10.0.0.4 * *\n\
             1700000000 02:00:00:00:00:01 10.0.0.5 vm1 01:02:00:00:00:00:01\n"
        );
        let dir = std::env::temp_dir().join(format!("sy-dnsmasq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("leases");
        t.write_dnsmasq(&p, 100).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), t.format_dnsmasq(100));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
