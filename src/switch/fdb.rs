//! The forwarding database: which port a MAC address was last seen on.
//!
//! Theory of operation. Every worker reads the table for every frame and writes it only when a
//! source MAC is new, moves, or is refreshed, so it is built for reads: 64 shards, each a
//! `RwLock<HashMap>`, keyed by the MAC as a `u64` with a multiplicative hash (the key is six bytes
//! of a NIC's address, not attacker-chosen strings into a long-lived table we can't bound, and the
//! table is capped). A refresh of an existing entry on the same port only stores the timestamp
//! into an atomic under the shard's read lock; the write lock is taken only to insert, move or
//! remove. No lock is held across more than one shard.
//!
//! Limits. The table is bounded twice: a global cap and a per-port cap. When either is reached a
//! new source MAC is not learned (`Learn::Full`), its frames still flow (replies to it are
//! flooded), and the caller counts it. So one port sending random source MACs fills only its own
//! share and cannot push other ports' entries out. Expired entries are reclaimed by `expire`,
//! which the daemon calls about once a second; a lookup never returns an expired entry.
//!
//! Ageing: a learned entry expires `ageing` after it was last seen. Static entries (from config)
//! never age, never move and do not count against the caps.
//!
//! Time is passed in (`now`, a `Duration` since an epoch the caller picks); nothing here reads
//! the clock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::PortId;
use crate::wire::MacAddr;

const SHARDS: usize = 64;

/// What `Fdb::learn` did with a source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// Already known on this port; its timestamp was refreshed.
    Refreshed,
    /// A new entry.
    Learned,
    /// Moved from another port (a VM migrated, a cable was re-plugged).
    Moved { from: PortId },
    /// The address is static on another port; the table was left alone.
    StaticElsewhere,
    /// Not learned: the port's or the global cap is reached.
    Full,
}

/// One row, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub port: PortId,
    pub is_static: bool,
    /// Time since last seen (zero for static entries).
    pub age: Duration,
}

#[derive(Debug)]
struct Entry {
    port: PortId,
    is_static: bool,
    /// Milliseconds since the caller's epoch.
    last_seen: AtomicU64,
}

/// Multiplicative (Fibonacci) hashing of the 48-bit MAC held in a u64.
#[derive(Default)]
struct MacHasher(u64);

impl Hasher for MacHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<MacHasher>>;

/// The MAC table. See the module documentation.
#[derive(Debug)]
pub struct Fdb {
    shards: Box<[RwLock<Shard>]>,
    /// Learned (non-static) entries in the whole table.
    learned: AtomicUsize,
    /// Learned entries per port, indexed by `PortId`.
    per_port: Box<[AtomicUsize]>,
    max_macs: usize,
    max_macs_per_port: usize,
    ageing_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Fdb {
    pub fn new(ports: usize, ageing: Duration, max_macs: usize, max_macs_per_port: usize) -> Fdb {
        Fdb {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            learned: AtomicUsize::new(0),
            per_port: (0..ports).map(|_| AtomicUsize::new(0)).collect(),
            max_macs,
            max_macs_per_port,
            ageing_ms: millis(ageing),
        }
    }

    fn shard_of(key: u64) -> usize {
        // The top bits of a multiplicative hash are the well-mixed ones.
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
    }

    fn read(&self, key: u64) -> RwLockReadGuard<'_, Shard> {
        // A poisoned lock means a worker panicked mid-update of a plain map; the map itself is
        // still consistent (every update is a single insert/remove), so keep serving.
        self.shards[Self::shard_of(key)]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, key: u64) -> RwLockWriteGuard<'_, Shard> {
        self.shards[Self::shard_of(key)]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn is_expired(&self, e: &Entry, now_ms: u64) -> bool {
        !e.is_static && now_ms.saturating_sub(e.last_seen.load(Relaxed)) > self.ageing_ms
    }

    /// The port `mac` was last seen on, unless unknown or expired.
    pub fn lookup(&self, mac: MacAddr, now: Duration) -> Option<PortId> {
        let key = mac.to_u64();
        let shard = self.read(key);
        let e = shard.get(&key)?;
        (!self.is_expired(e, millis(now))).then_some(e.port)
    }

    /// Records that `mac` was seen as a source on `port` at `now`.
    pub fn learn(&self, mac: MacAddr, port: PortId, now: Duration) -> Learn {
        let key = mac.to_u64();
        let now_ms = millis(now);
        {
            let shard = self.read(key);
            if let Some(e) = shard.get(&key) {
                if e.port == port {
                    // Store only when the millisecond changed: at a few hundred thousand frames
                    // a second this keeps the entry's cache line shared between the workers
                    // that look it up instead of bouncing it on every frame.
                    if !e.is_static && e.last_seen.load(Relaxed) != now_ms {
                        e.last_seen.store(now_ms, Relaxed);
                    }
                    return Learn::Refreshed;
                }
                if e.is_static {
                    return Learn::StaticElsewhere;
                }
            }
        }
        let mut shard = self.write(key);
        // Re-check under the write lock: another worker may have raced us here.
        let previous = match shard.get(&key) {
            Some(e) if e.port == port => {
                e.last_seen.store(now_ms, Relaxed);
                return Learn::Refreshed;
            }
            Some(e) if e.is_static => return Learn::StaticElsewhere,
            Some(e) => Some(e.port),
            None => None,
        };
        if let Some(from) = previous {
            // A move: the old port loses the entry whether or not the new port may take it,
            // because the address is no longer behind the old port.
            shard.remove(&key);
            self.per_port[from.index()].fetch_sub(1, Relaxed);
            self.learned.fetch_sub(1, Relaxed);
        }
        if !self.reserve(port) {
            return Learn::Full;
        }
        shard.insert(
            key,
            Entry {
                port,
                is_static: false,
                last_seen: AtomicU64::new(now_ms),
            },
        );
        match previous {
            Some(from) => Learn::Moved { from },
            None => Learn::Learned,
        }
    }

    /// Takes one slot of `port`'s and the global quota, or reports that there is none.
    fn reserve(&self, port: PortId) -> bool {
        let per_port = &self.per_port[port.index()];
        if per_port.fetch_add(1, Relaxed) >= self.max_macs_per_port {
            per_port.fetch_sub(1, Relaxed);
            return false;
        }
        if self.learned.fetch_add(1, Relaxed) >= self.max_macs {
            self.learned.fetch_sub(1, Relaxed);
            per_port.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// Adds a static entry (replacing any learned one for that address).
    pub fn add_static(&self, mac: MacAddr, port: PortId) {
        let key = mac.to_u64();
        let mut shard = self.write(key);
        if let Some(old) = shard.insert(
            key,
            Entry {
                port,
                is_static: true,
                last_seen: AtomicU64::new(0),
            },
        ) {
            if !old.is_static {
                self.per_port[old.port.index()].fetch_sub(1, Relaxed);
                self.learned.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Removes learned entries that have expired at `now`; returns how many.
    pub fn expire(&self, now: Duration) -> usize {
        let now_ms = millis(now);
        self.remove_learned_where(|e| self.is_expired(e, now_ms))
    }

    /// Removes every learned entry of `port` (it went down); returns how many.
    pub fn flush_port(&self, port: PortId) -> usize {
        self.remove_learned_where(|e| e.port == port)
    }

    fn remove_learned_where(&self, mut pred: impl FnMut(&Entry) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, e| {
                let drop = !e.is_static && pred(e);
                if drop {
                    self.per_port[e.port.index()].fetch_sub(1, Relaxed);
                    self.learned.fetch_sub(1, Relaxed);
                    removed += 1;
                }
                !drop
            });
        }
        removed
    }

    /// Learned entries (static ones not included).
    pub fn learned_len(&self) -> usize {
        self.learned.load(Relaxed)
    }

    /// Learned entries on `port`.
    pub fn port_len(&self, port: PortId) -> usize {
        self.per_port[port.index()].load(Relaxed)
    }

    /// Every live entry, sorted by port then MAC, for display.
    pub fn entries(&self, now: Duration) -> Vec<FdbEntry> {
        let now_ms = millis(now);
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for (key, e) in shard.iter() {
                if self.is_expired(e, now_ms) {
                    continue;
                }
                let b = key.to_be_bytes();
                out.push(FdbEntry {
                    mac: MacAddr::from_bytes(&b[2..8]),
                    port: e.port,
                    is_static: e.is_static,
                    age: if e.is_static {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(now_ms.saturating_sub(e.last_seen.load(Relaxed)))
                    },
                });
            }
        }
        out.sort_by_key(|e| (e.port, e.mac));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x52, 0x54, b[0], b[1], b[2], b[3]])
    }
    const P0: PortId = PortId(0);
    const P1: PortId = PortId(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn learn_lookup_refresh_move() {
        let f = Fdb::new(2, 300 * S, 100, 10);
        assert_eq!(f.lookup(mac(1), S), None);
        assert_eq!(f.learn(mac(1), P0, S), Learn::Learned);
        assert_eq!(f.learn(mac(1), P0, 2 * S), Learn::Refreshed);
        assert_eq!(f.lookup(mac(1), 2 * S), Some(P0));
        assert_eq!(f.learn(mac(1), P1, 3 * S), Learn::Moved { from: P0 });
        assert_eq!(f.lookup(mac(1), 3 * S), Some(P1));
        assert_eq!((f.port_len(P0), f.port_len(P1), f.learned_len()), (0, 1, 1));
    }

    #[test]
    fn ageing_hides_then_expire_reclaims() {
        let f = Fdb::new(1, 10 * S, 100, 10);
        f.learn(mac(1), P0, S);
        assert_eq!(f.lookup(mac(1), 11 * S), Some(P0));
        assert_eq!(f.lookup(mac(1), 11 * S + Duration::from_millis(1)), None);
        assert_eq!(f.expire(12 * S), 1);
        assert_eq!(f.learned_len(), 0);
    }

    #[test]
    fn static_entries_never_age_or_move() {
        let f = Fdb::new(2, 10 * S, 100, 10);
        f.add_static(mac(9), P0);
        assert_eq!(f.learn(mac(9), P1, S), Learn::StaticElsewhere);
        assert_eq!(f.expire(1_000_000 * S), 0);
        assert_eq!(f.lookup(mac(9), 1_000_000 * S), Some(P0));
        assert_eq!(f.learned_len(), 0);
    }

    #[test]
    fn caps_per_port_and_global() {
        let f = Fdb::new(3, 300 * S, 5, 3);
        for i in 0..3 {
            assert_eq!(f.learn(mac(i), P0, S), Learn::Learned);
        }
        assert_eq!(f.learn(mac(100), P0, S), Learn::Full);
        assert_eq!(f.learn(mac(200), P1, S), Learn::Learned);
        assert_eq!(f.learn(mac(201), P1, S), Learn::Learned);
        assert_eq!(
            f.learn(mac(300), PortId(2), S),
            Learn::Full,
            "global cap of 5"
        );
        assert_eq!(f.learned_len(), 5);
        // A full port's known addresses still refresh.
        assert_eq!(f.learn(mac(0), P0, 2 * S), Learn::Refreshed);
    }

    #[test]
    fn move_into_a_full_port_forgets_the_old_location() {
        let f = Fdb::new(2, 300 * S, 100, 1);
        f.learn(mac(1), P0, S);
        f.learn(mac(2), P1, S);
        assert_eq!(f.learn(mac(1), P1, S), Learn::Full);
        assert_eq!(f.lookup(mac(1), S), None);
        assert_eq!((f.port_len(P0), f.port_len(P1)), (0, 1));
    }

    #[test]
    fn flush_port_and_entries() {
        let f = Fdb::new(2, 300 * S, 100, 10);
        f.learn(mac(1), P0, S);
        f.learn(mac(2), P1, S);
        f.add_static(mac(3), P0);
        assert_eq!(f.flush_port(P0), 1);
        let e = f.entries(3 * S);
        assert_eq!(e.len(), 2);
        assert!(e.iter().any(|e| e.mac == mac(3) && e.is_static));
        assert!(e.iter().any(|e| e.mac == mac(2) && e.age == 2 * S));
    }
}
