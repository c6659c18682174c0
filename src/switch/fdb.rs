//! The forwarding database: which port a MAC address was last seen on.
//!
//! Theory of operation. Every worker reads the table for every frame (a lookup of the
//! destination, a refresh of the source) and writes it only when a source MAC is new or moves,
//! and when entries age out or a port goes down. So reads take no lock and execute no locked
//! instruction; writes serialise on one `Mutex`.
//!
//! Layout. One open-addressed array (a power of two, kept at or under 50 % load) of 16-byte
//! slots, four to a 64-byte bucket that is one cache line. A slot is two `AtomicU64`s:
//! - the *word*: `mac << 16 | tag`, with the tag's low 15 bits the port index plus one and its top
//!   bit marking a static entry. A live word is never 0, which marks an empty slot. MAC and port
//!   are one atomic value, so a reader always sees a pair that was stored together.
//! - `seen`: the milliseconds of `now` when a learned entry was last seen (unused for static ones).
//!
//! A MAC hashes (multiply-shift with a random odd multiplier chosen per table, so nobody can pick
//! source MACs that pile into one bucket) to a home bucket, and is probed for slot by slot from
//! the bucket's first slot onwards (linear probing across buckets, wrapping). At 50 % load most
//! lookups end in the home bucket: one cache line, one miss in a table that does not fit the
//! caches. [`Fdb::prefetch`] brings that line in ahead of time.
//!
//! Readers (`lookup`, and `learn` when the MAC is known on the same port or is static elsewhere,
//! or the caps leave no room for a new one) use Acquire/Relaxed loads only. A refresh on the same
//! port is a plain store of the millisecond into `seen`, and only when it changed, so a MAC seen
//! a million times a second dirties its line at most a thousand times a second.
//!
//! Writers (a new MAC, a move, `add_static`, `expire`, `flush_port`) take the `Mutex`, re-check
//! under it, and publish a slot by storing `seen` (Relaxed) and then the word (Release). A move
//! rewrites the word in place. The counters behind the caps are written only under the `Mutex`;
//! a learn checks them (plain loads) before taking it, so a port flooding new source MACs past
//! its cap costs one probe and two loads a frame, and never waits for the lock.
//!
//! Deletion is backward-shift, not tombstones: the entries after the removed one in its cluster
//! that may move back are moved back (each copied into the hole before its old slot is reused),
//! and the last hole is emptied. So the table never fills with tombstones and never needs a
//! rebuild; a rebuild under the lock would make readers miss every entry it moves, where a
//! backward shift makes them miss only the few entries it moves, for the moment it moves them.
//!
//! What a reader racing a writer can see:
//! - **A transient miss**, while an entry is being moved back over a deleted one (the reader
//!   passed the hole before the entry was copied into it, and reaches the entry's old slot after
//!   it was reused), or while the table grows. The frame is flooded, as just after ageing; a
//!   `learn` that misses goes to the locked path, which finds the entry (unless the caps are
//!   reached: then that one frame is reported `Full`, and counted, though its MAC is known).
//! - **Never a wrong port**: MAC and port come from one atomic word that a writer stored whole, so
//!   a lookup returns a port that the MAC was on at some moment during the lookup (the old one,
//!   during a move). Its `seen` may belong to the slot's next occupant (read after the slot was
//!   reused), which at worst makes a just-removed entry look alive for that one lookup.
//! - **Never a duplicate**: only writers store words, one at a time, each after looking for the MAC
//!   under the lock. A backward shift briefly holds the same word in two slots (the copy is made
//!   before the original is overwritten); a reader returns either copy, and `entries`, which
//!   counts, takes the lock.
//! - A refresh that races a writer may land in a slot just given to another entry (a shift or a
//!   reuse after the reader found its word): that entry gets a `seen` of about `now`, i.e. it is
//!   kept a little longer; static entries ignore `seen`, so they cannot be aged by it.
//!
//! Limits. The table is bounded twice: a global cap and a per-port cap. When either is reached a
//! new source MAC is not learned (`Learn::Full`), its frames still flow (replies to it are
//! flooded), and the caller counts it. So one port sending random source MACs fills only its own
//! share and cannot push other ports' entries out. Expired entries are reclaimed by `expire`,
//! which the daemon calls about once a second, in chunks (the lock is released between them); a
//! lookup never returns an entry whose own `seen` is older than `ageing` (see the races above).
//!
//! Ageing: a learned entry expires `ageing` after it was last seen. Static entries (from config)
//! never age, never move and do not count against the caps.
//!
//! Time is passed in (`now`, a `Duration` since an epoch the caller picks); nothing here reads
//! the clock.
//!
//! Size. The table starts at twice `max_macs` slots, but at most `FIRST_SLOTS` (64 KiB), and a
//! writer that would take it past 50 % load first moves every entry into one twice the size (or
//! more) and makes that the table in use. Learned entries stop at the cap, so the table stops
//! growing at twice the cap (plus room for the static entries). A table sized for the cap from the
//! start would spread ten thousand entries over a 64 MiB array when the cap is two million, and
//! every lookup would miss the caches (docs/benchmarks/micro.md has the measurement). The old
//! tables stay allocated until the `Fdb` is dropped, since a
//! reader may still be in one: doubling keeps them smaller than the table in use. Growth happens
//! under the lock and copies every entry (tens of milliseconds at a million), once per doubling;
//! readers go on in the old table meanwhile (what they see is what it held; refreshes that land
//! there are lost, and made again by the next frame).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::PortId;
use crate::mem;
use crate::wire::MacAddr;

/// Slots per bucket: four 16-byte slots fill a 64-byte cache line.
const LANES: usize = 4;
/// The smallest table: 16 buckets.
const MIN_SLOTS: usize = 64;
/// The largest first table: 4096 slots, 64 KiB.
const FIRST_SLOTS: usize = 4096;
/// A slot's word: the tag bit of a static entry.
const STATIC: u64 = 1 << 15;
/// A slot's word: the tag bits holding the port index plus one.
const PORT_BITS: u64 = STATIC - 1;
/// Examine this many slots per hold of the lock in `expire`.
const EXPIRE_CHUNK: usize = 1 << 16;
/// How many times the table may grow (from 4096 slots to at least 2^36 slots: memory runs out
/// first).
const GROWTHS: usize = 24;

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
    /// The VLAN whose table holds the entry (an `Fdb` is one VLAN's; the switch fills this in).
    pub vlan: u16,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The port a live word names.
fn word_port(word: u64) -> PortId {
    // The tag holds index + 1 in 15 bits, so this fits a u16.
    PortId(((word & PORT_BITS) - 1) as u16)
}

fn word_mac(word: u64) -> u64 {
    word >> 16
}

fn is_static(word: u64) -> bool {
    word & STATIC != 0
}

/// The most live entries a table of `slots` holds before a writer grows it: 50 % load.
fn fill_limit(slots: usize) -> usize {
    slots / 2
}

/// One open-addressed array of slots (see the module documentation).
struct Table {
    /// Two words a slot (the word, then `seen`), starting at `base`: the first word of a
    /// 64-byte line, so that every bucket is one cache line.
    words: Box<[AtomicU64]>,
    base: usize,
    slot_mask: usize,
    /// `64 - log2(buckets)`: the hash's top bits pick the bucket.
    shift: u32,
    /// The hash's multiplier (odd).
    mul: u64,
}

impl Table {
    fn new(slots: usize, mul: u64) -> Table {
        debug_assert!(slots.is_power_of_two() && slots >= MIN_SLOTS);
        // Seven spare words, to start at a line boundary whatever the allocator returned.
        let words = mem::zeroed_atomic_u64s(2 * slots + 7);
        let misalign = (words.as_ptr() as usize / 8) % 8;
        Table {
            base: (8 - misalign) % 8,
            words,
            slot_mask: slots - 1,
            shift: 64 - (slots / LANES).trailing_zeros(),
            mul,
        }
    }

    fn slots(&self) -> usize {
        self.slot_mask + 1
    }

    /// The first slot of `mac`'s home bucket.
    fn home(&self, mac: u64) -> usize {
        (mac.wrapping_mul(self.mul) >> self.shift) as usize * LANES
    }

    fn word(&self, slot: usize) -> &AtomicU64 {
        &self.words[self.base + 2 * slot]
    }

    fn seen(&self, slot: usize) -> &AtomicU64 {
        &self.words[self.base + 2 * slot + 1]
    }

    fn next(&self, slot: usize) -> usize {
        (slot + 1) & self.slot_mask
    }

    /// The slot holding `mac`, and its word. Lock-free; under the lock, exact.
    fn find(&self, mac: u64) -> Option<(usize, u64)> {
        let mut slot = self.home(mac);
        for _ in 0..self.slots() {
            let word = self.word(slot).load(Acquire);
            if word == 0 {
                return None;
            }
            if word_mac(word) == mac {
                return Some((slot, word));
            }
            slot = self.next(slot);
        }
        None
    }

    /// Stores `word` in the first empty slot from its home on (the caller holds the lock and
    /// knows the MAC is absent); false if there is none, which the fill limit rules out.
    fn insert(&self, word: u64, seen: u64) -> bool {
        let mut slot = self.home(word_mac(word));
        for _ in 0..self.slots() {
            if self.word(slot).load(Relaxed) == 0 {
                self.seen(slot).store(seen, Relaxed);
                self.word(slot).store(word, Release);
                return true;
            }
            slot = self.next(slot);
        }
        false
    }

    /// Removes the entry in `hole` by backward shift (the caller holds the lock): every later
    /// entry of the cluster whose home is not after the hole moves back into it, leaving a new
    /// hole where it was; the last hole is emptied. Each entry is copied before its old slot is
    /// overwritten, so it is never absent from the table, only briefly in two slots.
    fn remove_at(&self, mut hole: usize) {
        let mut slot = hole;
        loop {
            slot = self.next(slot);
            if slot == hole {
                break; // The whole table is one cluster: cannot happen under the fill limit.
            }
            let word = self.word(slot).load(Relaxed);
            if word == 0 {
                break;
            }
            let home = self.home(word_mac(word));
            // The entry may sit in the hole iff the hole lies between its home and its slot.
            let (from_home, from_hole) = (
                slot.wrapping_sub(home) & self.slot_mask,
                slot.wrapping_sub(hole) & self.slot_mask,
            );
            if from_home >= from_hole {
                self.seen(hole)
                    .store(self.seen(slot).load(Relaxed), Relaxed);
                self.word(hole).store(word, Release);
                hole = slot;
            }
        }
        self.word(hole).store(0, Release);
    }
}

/// What the writers' lock guards besides the slots.
#[derive(Debug, Default)]
struct Writer {
    /// Static entries in the table.
    statics: usize,
}

/// The writers' side, on cache lines of its own so that a learn does not evict the fields every
/// lookup reads from the other workers' caches.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Writers {
    lock: Mutex<Writer>,
    /// Learned (non-static) entries in the whole table; written under `lock`.
    learned: AtomicUsize,
}

/// The MAC table. See the module documentation.
pub struct Fdb {
    first: Table,
    /// The tables `add_static` grew into, in order; `generation` says how many are in use.
    grown: Box<[OnceLock<Table>]>,
    generation: AtomicUsize,
    ageing_ms: u64,
    max_macs: usize,
    max_macs_per_port: usize,
    /// Learned entries per port, indexed by `PortId`; written under `writers.lock`.
    per_port: Box<[AtomicUsize]>,
    writers: Writers,
}

impl std::fmt::Debug for Fdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fdb")
            .field("slots", &self.table().slots())
            .field("learned", &self.learned_len())
            .field("max_macs", &self.max_macs)
            .field("max_macs_per_port", &self.max_macs_per_port)
            .field("ageing_ms", &self.ageing_ms)
            .finish_non_exhaustive()
    }
}

impl Fdb {
    /// The most ports a table can tell apart (a word keeps the port index plus one in 15 bits).
    pub const MAX_PORTS: usize = PORT_BITS as usize;

    /// A table for `ports` ports, at most `max_macs` learned entries, at most `max_macs_per_port`
    /// on any one port.
    ///
    /// # Panics
    /// If `ports` exceeds [`Fdb::MAX_PORTS`] (the switch bounds its slots by it).
    pub fn new(ports: usize, ageing: Duration, max_macs: usize, max_macs_per_port: usize) -> Fdb {
        assert!(ports <= Fdb::MAX_PORTS, "too many ports for the FDB");
        let slots = max_macs
            .saturating_mul(2)
            .min(FIRST_SLOTS)
            .next_power_of_two()
            .max(MIN_SLOTS);
        let mul = RandomState::new().hash_one(0x5357_4954_4348_5944_u64) | 1;
        Fdb {
            first: Table::new(slots, mul),
            grown: (0..GROWTHS).map(|_| OnceLock::new()).collect(),
            generation: AtomicUsize::new(0),
            ageing_ms: millis(ageing),
            max_macs,
            max_macs_per_port,
            per_port: (0..ports).map(|_| AtomicUsize::new(0)).collect(),
            writers: Writers::default(),
        }
    }

    /// The table in use.
    fn table(&self) -> &Table {
        match self.generation.load(Acquire) {
            0 => &self.first,
            // `generation` is stored (Release) only after the table it names was set.
            g => self.grown[g - 1].get().unwrap_or(&self.first),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A poisoned lock means a writer panicked; every slot it stored was stored whole and the
        // counters are recomputed by nothing, so keep serving rather than stop forwarding.
        self.writers.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_expired(&self, word: u64, seen: u64, now_ms: u64) -> bool {
        !is_static(word) && now_ms.saturating_sub(seen) > self.ageing_ms
    }

    /// Asks the CPU to fetch the bucket `mac` lives in, ahead of a `lookup` or `learn` of it.
    pub fn prefetch(&self, mac: MacAddr) {
        let table = self.table();
        mem::prefetch(table.word(table.home(mac.to_u64())));
    }

    /// The port `mac` was last seen on, unless unknown or expired.
    pub fn lookup(&self, mac: MacAddr, now: Duration) -> Option<PortId> {
        let table = self.table();
        let (slot, word) = table.find(mac.to_u64())?;
        if self.is_expired(word, table.seen(slot).load(Relaxed), millis(now)) {
            return None;
        }
        Some(word_port(word))
    }

    /// Records that `mac` was seen as a source on `port` at `now`.
    pub fn learn(&self, mac: MacAddr, port: PortId, now: Duration) -> Learn {
        let key = mac.to_u64();
        let now_ms = millis(now);
        let table = self.table();
        match table.find(key) {
            Some((slot, word)) if word_port(word) == port => {
                // Store only when the millisecond changed: at a few hundred thousand frames a
                // second this keeps the entry's cache line shared between the workers that look
                // it up instead of bouncing it on every frame.
                let seen = table.seen(slot);
                if !is_static(word) && seen.load(Relaxed) != now_ms {
                    seen.store(now_ms, Relaxed);
                }
                return Learn::Refreshed;
            }
            Some((_, word)) if is_static(word) => return Learn::StaticElsewhere,
            Some(_) => {} // A move: under the lock.
            None if !self.has_room(port) => return Learn::Full,
            None => {}
        }
        self.learn_locked(key, port, now_ms)
    }

    fn learn_locked(&self, key: u64, port: PortId, now_ms: u64) -> Learn {
        let writer = self.lock();
        let table = self.table();
        // Re-check under the lock: another worker may have raced us here.
        let found = table.find(key);
        let previous = match found {
            Some((slot, word)) if word_port(word) == port => {
                if !is_static(word) {
                    table.seen(slot).store(now_ms, Relaxed);
                }
                return Learn::Refreshed;
            }
            Some((_, word)) if is_static(word) => return Learn::StaticElsewhere,
            Some((_, word)) => {
                // A move: the old port loses the entry whether or not the new port may take it,
                // because the address is no longer behind the old port.
                let from = word_port(word);
                self.uncount(from);
                Some(from)
            }
            None => None,
        };
        if !self.count(port) {
            if let Some((slot, _)) = found {
                table.remove_at(slot);
            }
            return Learn::Full;
        }
        let word = key << 16 | (u64::from(port.0) + 1);
        match (found, previous) {
            (Some((slot, _)), Some(from)) => {
                table.seen(slot).store(now_ms, Relaxed);
                table.word(slot).store(word, Release);
                Learn::Moved { from }
            }
            // `count` took the new entry's place already: the learned count includes it.
            _ if self.room(&writer, 0).insert(word, now_ms) => Learn::Learned,
            _ => {
                self.uncount(port);
                Learn::Full
            }
        }
    }

    /// Whether the caps leave room for one more entry on `port` (a hint, without the lock).
    fn has_room(&self, port: PortId) -> bool {
        self.per_port[port.index()].load(Relaxed) < self.max_macs_per_port
            && self.writers.learned.load(Relaxed) < self.max_macs
    }

    /// Takes one slot of `port`'s and the global quota, or reports that there is none. Only
    /// under the lock.
    fn count(&self, port: PortId) -> bool {
        let per_port = &self.per_port[port.index()];
        let (on_port, learned) = (per_port.load(Relaxed), self.writers.learned.load(Relaxed));
        if on_port >= self.max_macs_per_port || learned >= self.max_macs {
            return false;
        }
        per_port.store(on_port + 1, Relaxed);
        self.writers.learned.store(learned + 1, Relaxed);
        true
    }

    /// Gives back the slot `count` took. Only under the lock.
    fn uncount(&self, port: PortId) {
        let per_port = &self.per_port[port.index()];
        per_port.store(per_port.load(Relaxed).saturating_sub(1), Relaxed);
        let learned = &self.writers.learned;
        learned.store(learned.load(Relaxed).saturating_sub(1), Relaxed);
    }

    /// Adds a static entry (replacing any learned one for that address). A port beyond
    /// [`Fdb::MAX_PORTS`] cannot be represented and is ignored.
    pub fn add_static(&self, mac: MacAddr, port: PortId) {
        if port.index() >= Fdb::MAX_PORTS {
            return;
        }
        let mut writer = self.lock();
        let key = mac.to_u64();
        let word = key << 16 | STATIC | (u64::from(port.0) + 1);
        let table = self.table();
        if let Some((slot, old)) = table.find(key) {
            if !is_static(old) {
                self.uncount(word_port(old));
                writer.statics += 1;
            }
            table.seen(slot).store(0, Relaxed);
            table.word(slot).store(word, Release);
            return;
        }
        if self.room(&writer, 1).insert(word, 0) {
            writer.statics += 1;
        }
    }

    /// The table in use, grown first if the live entries plus `more` would take it past the fill
    /// limit (under the lock).
    fn room(&self, writer: &Writer, more: usize) -> &Table {
        let table = self.table();
        let live = self.writers.learned.load(Relaxed) + writer.statics + more;
        if live <= fill_limit(table.slots()) {
            return table;
        }
        self.grow(live)
    }

    /// Moves every entry into a new table that holds `live` entries under the fill limit, and
    /// makes it the one in use (under the lock). The old table stays allocated: readers may be
    /// in it. After `GROWTHS` growths the table stays as it is (beyond what memory holds).
    fn grow(&self, live: usize) -> &Table {
        let old = self.table();
        let generation = self.generation.load(Relaxed);
        let Some(cell) = self.grown.get(generation) else {
            return old;
        };
        let mut slots = old.slots() * 2;
        while fill_limit(slots) < live {
            slots *= 2;
        }
        let new = Table::new(slots, old.mul);
        for slot in 0..old.slots() {
            let word = old.word(slot).load(Relaxed);
            if word != 0 {
                new.insert(word, old.seen(slot).load(Relaxed));
            }
        }
        let table = cell.get_or_init(|| new);
        self.generation.store(generation + 1, Release);
        table
    }

    /// Removes learned entries that have expired at `now`; returns how many. The lock is held
    /// for `EXPIRE_CHUNK` slots at a time; an entry that a removal in one chunk shifts back into
    /// a chunk already done is hidden from lookups and reclaimed at the next call.
    pub fn expire(&self, now: Duration) -> usize {
        let now_ms = millis(now);
        self.remove_learned_where(EXPIRE_CHUNK, |word, seen| {
            self.is_expired(word, seen, now_ms)
        })
    }

    /// Removes every learned entry of `port` (it went down); returns how many.
    pub fn flush_port(&self, port: PortId) -> usize {
        self.remove_learned_where(usize::MAX, |word, _| word_port(word) == port)
    }

    /// Removes the learned entries `pred(word, seen)` picks, `chunk` slots per hold of the lock.
    fn remove_learned_where(&self, chunk: usize, pred: impl Fn(u64, u64) -> bool) -> usize {
        let mut removed = 0;
        let mut start = 0;
        loop {
            let _writer = self.lock();
            let table = self.table();
            if start >= table.slots() {
                return removed;
            }
            let end = start.saturating_add(chunk).min(table.slots());
            let doomed: Vec<u64> = (start..end)
                .map(|slot| (table.word(slot).load(Relaxed), table.seen(slot)))
                .filter(|&(word, seen)| {
                    word != 0 && !is_static(word) && pred(word, seen.load(Relaxed))
                })
                .map(|(word, _)| word)
                .collect();
            // Removing one entry may shift others, so each is found again by its MAC.
            for word in doomed {
                if let Some((slot, now_there)) = table.find(word_mac(word)) {
                    if now_there == word {
                        table.remove_at(slot);
                        self.uncount(word_port(word));
                        removed += 1;
                    }
                }
            }
            start = end;
        }
    }

    /// Learned entries (static ones not included).
    pub fn learned_len(&self) -> usize {
        self.writers.learned.load(Relaxed)
    }

    /// Learned entries on `port`.
    pub fn port_len(&self, port: PortId) -> usize {
        self.per_port[port.index()].load(Relaxed)
    }

    /// Every live entry, sorted by port then MAC, for display.
    pub fn entries(&self, now: Duration) -> Vec<FdbEntry> {
        let now_ms = millis(now);
        // Under the lock: no entry is in two slots while a removal shifts it.
        let _writer = self.lock();
        let table = self.table();
        let mut out = Vec::new();
        for slot in 0..table.slots() {
            let word = table.word(slot).load(Relaxed);
            if word == 0 {
                continue;
            }
            let seen = table.seen(slot).load(Relaxed);
            if self.is_expired(word, seen, now_ms) {
                continue;
            }
            let b = word_mac(word).to_be_bytes();
            out.push(FdbEntry {
                mac: MacAddr::from_bytes(&b[2..8]),
                port: word_port(word),
                is_static: is_static(word),
                vlan: super::DEFAULT_VLAN,
                age: if is_static(word) {
                    Duration::ZERO
                } else {
                    Duration::from_millis(now_ms.saturating_sub(seen))
                },
            });
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

    /// A small xorshift generator: the tests' random MACs and operations, reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn matches_a_model_under_churn() {
        // A small table (64 slots, clusters that wrap around the end) driven by random learns,
        // moves, statics, expiry and flushes, checked entry by entry against a plain map.
        use std::collections::HashMap;
        let ports = 3;
        let f = Fdb::new(ports, 5 * S, 24, 12);
        assert_eq!(f.table().slots(), MIN_SLOTS);
        // MAC -> (port, static, last seen ms).
        let mut model: HashMap<u32, (PortId, bool, u64)> = HashMap::new();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut now_ms = 1_000u64;
        for round in 0..20_000 {
            now_ms += rng.below(40);
            let now = Duration::from_millis(now_ms);
            let live = |e: &(PortId, bool, u64)| e.1 || now_ms.saturating_sub(e.2) <= 5_000;
            let m = rng.below(60) as u32;
            let port = PortId(rng.below(ports as u64) as u16);
            match rng.below(100) {
                0..=69 => {
                    let got = f.learn(mac(m), port, now);
                    let learned = |model: &HashMap<u32, (PortId, bool, u64)>| {
                        model.values().filter(|e| !e.1).count()
                    };
                    let on = |model: &HashMap<u32, (PortId, bool, u64)>, p| {
                        model.values().filter(|e| !e.1 && e.0 == p).count()
                    };
                    let want = match model.get(&m).copied() {
                        Some((p, st, _)) if p == port => {
                            if !st {
                                model.insert(m, (p, false, now_ms));
                            }
                            Learn::Refreshed
                        }
                        Some((_, true, _)) => Learn::StaticElsewhere,
                        previous => {
                            let from = previous.map(|e| e.0);
                            model.remove(&m);
                            if on(&model, port) >= 12 || learned(&model) >= 24 {
                                Learn::Full
                            } else {
                                model.insert(m, (port, false, now_ms));
                                from.map_or(Learn::Learned, |from| Learn::Moved { from })
                            }
                        }
                    };
                    assert_eq!(got, want, "round {round}: learn {m} on {port:?}");
                }
                70..=71 => {
                    // Statics only among the first few MACs: the rest keep churning.
                    let m = m % 6;
                    f.add_static(mac(m), port);
                    model.insert(m, (port, true, 0));
                }
                72..=75 => {
                    let n = f.expire(now);
                    let before = model.len();
                    model.retain(|_, e| live(e));
                    assert_eq!(n, before - model.len(), "round {round}: expire");
                }
                76 => {
                    let n = f.flush_port(port);
                    let before = model.len();
                    model.retain(|_, e| e.1 || e.0 != port);
                    assert_eq!(n, before - model.len(), "round {round}: flush");
                }
                _ => {}
            }
            // Every MAC looks up as the model says (expired ones not yet reclaimed included).
            for k in 0..60 {
                let want = model.get(&k).filter(|e| live(e)).map(|e| e.0);
                assert_eq!(f.lookup(mac(k), now), want, "round {round}: lookup {k}");
            }
            let learned = model.values().filter(|e| !e.1).count();
            assert_eq!(f.learned_len(), learned, "round {round}");
            for p in 0..ports {
                let p = PortId(p as u16);
                let want = model.values().filter(|e| !e.1 && e.0 == p).count();
                assert_eq!(f.port_len(p), want, "round {round}: port {p:?}");
            }
        }
    }

    #[test]
    fn the_table_starts_small_and_grows_with_its_entries() {
        let f = Fdb::new(1, 300 * S, 2_000_000, 2_000_000);
        assert_eq!(f.table().slots(), FIRST_SLOTS);
        for i in 0..10_000 {
            assert_eq!(f.learn(mac(i), P0, S), Learn::Learned);
        }
        assert_eq!(f.table().slots(), 32_768, "10,000 entries at <= 50 % load");
        for i in 0..10_000 {
            assert_eq!(f.lookup(mac(i), S), Some(P0));
        }
        assert_eq!((f.learned_len(), f.entries(S).len()), (10_000, 10_000));
        // A small cap starts (and stays) small.
        let g = Fdb::new(1, 300 * S, 100, 100);
        for i in 0..1_000 {
            g.learn(mac(i), P0, S);
        }
        assert_eq!((g.table().slots(), g.learned_len()), (256, 100));
    }

    #[test]
    fn statics_beyond_the_fill_limit_grow_the_table() {
        let f = Fdb::new(2, 300 * S, 4, 4);
        let first = f.table().slots();
        for i in 0..4 {
            assert_eq!(f.learn(mac(i), P0, S), Learn::Learned);
        }
        for i in 100..1_100 {
            f.add_static(mac(i), P1);
        }
        assert!(f.table().slots() > first);
        assert!(1_000 + 4 <= fill_limit(f.table().slots()));
        for i in 0..4 {
            assert_eq!(f.lookup(mac(i), S), Some(P0));
        }
        for i in 100..1_100 {
            assert_eq!(f.lookup(mac(i), 1_000 * S), Some(P1));
        }
        assert_eq!(f.learned_len(), 4);
        assert_eq!(f.entries(S).len(), 1_004);
        // Static entries still take no part of the caps; learned ones still age.
        assert_eq!(f.expire(1_000 * S), 4);
        assert_eq!(f.learn(mac(5), P0, S), Learn::Learned);
    }

    #[test]
    fn a_port_too_large_to_encode_is_not_stored() {
        let f = Fdb::new(2, 300 * S, 4, 4);
        f.add_static(mac(1), PortId(Fdb::MAX_PORTS as u16));
        assert_eq!(f.lookup(mac(1), S), None);
        let last = PortId(Fdb::MAX_PORTS as u16 - 1);
        let big = Fdb::new(Fdb::MAX_PORTS, 300 * S, 4, 4);
        assert_eq!(big.learn(mac(2), last, S), Learn::Learned);
        assert_eq!(big.lookup(mac(2), S), Some(last));
        big.add_static(mac(3), last);
        assert_eq!(big.entries(S)[1].port, last);
    }

    /// Threads learn, move, look up, expire and flush random MACs for a bounded time. Each MAC
    /// may only ever be learned on two ports of its own, so a lookup that returned any other
    /// port would be a torn or misplaced word. At the end the counters must equal the entries.
    #[test]
    fn concurrent_stress_keeps_ports_and_counters_right() {
        use std::collections::HashSet;
        use std::sync::atomic::AtomicBool;
        use std::time::Instant;

        const PORTS: usize = 6;
        const MACS: u64 = 4_000;
        // Few slots for many MACs: long clusters, constant shifts, caps hit.
        let f = Fdb::new(PORTS, Duration::from_millis(30), 1_000, 300);
        // Static entries, the first 20 now and the rest from one thread while the others run:
        // 1,000 learned + 200 static take the table past 50 % of its 2,048 slots, so it grows
        // under the readers' feet.
        let statics: Vec<u32> = (0..200).map(|i| 10_000 + i).collect();
        let static_port = |m: u32| PortId((m % PORTS as u32) as u16);
        for &m in &statics[..20] {
            f.add_static(mac(m), static_port(m));
        }
        let first_slots = f.table().slots();
        let allowed = |m: u64, p: PortId| {
            let home = m % PORTS as u64;
            p.0 as u64 == home || p.0 as u64 == (home + 1) % PORTS as u64
        };
        let clock = AtomicU64::new(1_000);
        let stop = AtomicBool::new(false);
        // Thread 3 adds the other 180 statics one every 256 of its operations; on a loaded
        // machine it may need longer than the stress's 1.5 s, so the stress goes on until it
        // has (at most 60 s).
        let statics_added = AtomicU64::new(20);
        let deadline = Instant::now() + Duration::from_millis(1_500);
        let hard_deadline = Instant::now() + Duration::from_secs(60);
        let learned_on = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4u64)
                .map(|t| {
                    let (f, clock, stop, statics, statics_added) =
                        (&f, &clock, &stop, &statics, &statics_added);
                    scope.spawn(move || {
                        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x1234_5678));
                        let mut learned = HashSet::new();
                        let mut looked = Vec::new();
                        let mut ops = 0u64;
                        while !stop.load(Relaxed) {
                            ops += 1;
                            let now = Duration::from_millis(clock.load(Relaxed));
                            let m = rng.below(MACS);
                            let port = PortId(((m + rng.below(2)) % PORTS as u64) as u16);
                            match rng.below(100) {
                                0..=49 => match f.learn(mac(m as u32), port, now) {
                                    Learn::Learned | Learn::Moved { .. } | Learn::Refreshed => {
                                        learned.insert((m, port));
                                    }
                                    Learn::Full => {}
                                    Learn::StaticElsewhere => panic!("{m} is not static"),
                                },
                                50..=97 => {
                                    if let Some(p) = f.lookup(mac(m as u32), now) {
                                        looked.push((m, p));
                                    }
                                    let s = statics[rng.below(statics.len() as u64) as usize];
                                    if let Some(p) = f.lookup(mac(s), now) {
                                        assert_eq!(p, static_port(s), "static {s}");
                                    }
                                }
                                98 => {
                                    f.expire(now);
                                }
                                _ if ops % 64 == 0 => {
                                    f.flush_port(port);
                                }
                                _ => {}
                            }
                            if t == 3 && ops % 256 == 0 {
                                if let Some(&m) = statics.get(19 + (ops / 256) as usize) {
                                    f.add_static(mac(m), static_port(m));
                                    statics_added.fetch_add(1, Relaxed);
                                }
                            }
                            assert!(f.learned_len() <= 1_000);
                            if t == 0 && ops % 256 == 0 {
                                clock.fetch_add(1, Relaxed);
                            }
                        }
                        for &(m, p) in &looked {
                            assert!(allowed(m, p), "MAC {m} looked up on {p:?}");
                        }
                        (learned, looked.len(), ops)
                    })
                })
                .collect();
            while Instant::now() < deadline
                || (statics_added.load(Relaxed) < statics.len() as u64
                    && Instant::now() < hard_deadline)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Relaxed);
            let mut all = HashSet::new();
            let (mut lookups, mut ops) = (0, 0);
            for w in workers {
                let (learned, n, o) = w.join().expect("a stress thread panicked");
                all.extend(learned);
                lookups += n;
                ops += o;
            }
            assert!(
                lookups > 1_000 && ops > 10_000,
                "the stress ran ({ops} ops)"
            );
            all
        });
        // Every static entry that was added is there, on its port.
        let now = Duration::from_millis(clock.load(Relaxed));
        let added: Vec<_> = statics
            .iter()
            .filter(|&&m| f.lookup(mac(m), now).is_some())
            .collect();
        assert_eq!(added.len(), statics.len(), "every static entry was added");
        for &&m in &added {
            assert_eq!(f.lookup(mac(m), now), Some(static_port(m)));
        }
        // No lookup saw a port the MAC was not learned on: checked per thread against the
        // allowed pairs, and every learned pair is one of them.
        for &(m, p) in &learned_on {
            assert!(allowed(m, p));
        }
        // Quiescent: the counters equal the entries, and no MAC has two.
        f.expire(now);
        f.expire(now); // an entry one chunk shifted back behind the scan
        let entries = f.entries(now);
        let macs: HashSet<MacAddr> = entries.iter().map(|e| e.mac).collect();
        assert_eq!(macs.len(), entries.len(), "a MAC twice in the table");
        let learned: Vec<_> = entries.iter().filter(|e| !e.is_static).collect();
        assert_eq!(f.learned_len(), learned.len());
        for p in 0..PORTS {
            let p = PortId(p as u16);
            assert_eq!(
                f.port_len(p),
                learned.iter().filter(|e| e.port == p).count()
            );
            assert!(f.port_len(p) <= 300);
        }
        assert_eq!(entries.iter().filter(|e| e.is_static).count(), added.len());
        assert!(
            f.table().slots() > first_slots,
            "the table grew during the run"
        );
    }
}
