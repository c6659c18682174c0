//! The lease journal: append-only, one CRC-checked line per change, fsynced before the ACK.
//!
//! # Theory of operation
//!
//! Every [`LeaseChange`] becomes one text line, so the file can be read with `cat`:
//!
//! ```text
//! U <expires|-> <mac> <ip> <port> <key> <hostname|*> <client-id-hex|*> <crc32-hex>
//! R <key> <crc32-hex>
//! ```
//!
//! `<key>` is `m:<mac>` or `c:<hex>`; `-` is an infinite lease; the CRC-32 (IEEE) covers every
//! byte of the line before the space that precedes it. [`Journal::append`] writes the line and
//! calls `sync_data` before returning, so a change the caller has appended survives `kill -9` and
//! power loss; the caller sends the ACK only afterwards.
//!
//! [`replay`] rebuilds the table by applying the lines in order. A crash can leave a partial
//! last line (no newline): it is ignored, since its change was never acknowledged. A complete
//! line whose CRC or syntax is wrong (disk corruption) is skipped and counted. [`Journal::open`]
//! replays and then compacts: it writes the table's leases to `<path>.tmp`, fsyncs it, renames it
//! over the journal and fsyncs the directory, so the file never holds a torn line that a later
//! append would glue onto. The daemon also calls [`Journal::compact`] periodically (e.g. when
//! [`Journal::records_since_compaction`] exceeds a few times the table's size).
//!
//! Records are written at the journal's logical end into space that was zero-filled ahead of
//! them ([`PREALLOC`] bytes at a time, as PostgreSQL does with its WAL segments): the write
//! changes neither the file's size nor its block map, so the `fdatasync` that follows flushes
//! the data and does not wait for the file system's journal commit (on ext4 that commit also
//! carries every other process's metadata, and its latency tails reach 100 ms on a busy disk).
//! Replay ignores the trailing zeros. If the zeros cannot be written (a nearly full disk), the
//! record is written at the end as a plain append.
//!
//! This is the one file of the DHCP service that does I/O; it uses `std::fs` only.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::leases::{write_atomically, ClientKey, Lease, LeaseChange, LeaseTable};
use crate::wire::MacAddr;

/// What replay found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records applied.
    pub applied: usize,
    /// Complete lines skipped: bad CRC or syntax.
    pub corrupt: usize,
    /// A partial last line was ignored.
    pub truncated_tail: bool,
}

/// Zero-filled room made ahead of the records at a time.
pub const PREALLOC: u64 = 256 * 1024;

/// An open journal, positioned for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Where the next record goes: the end of the last one.
    end: u64,
    /// The file's length: `end` plus the zero-filled room after it.
    len: u64,
    since_compaction: usize,
}

/// The bytes of the journal at `path` for replay: empty if it does not exist yet, with its
/// directory created. Shared by the DHCPv6 journal.
pub(crate) fn read_for_replay(path: &Path) -> io::Result<Vec<u8>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl Journal {
    /// Replays the journal at `path` (a missing file is an empty table; missing directories are
    /// created), compacts it, and opens it for appending. Returns the rebuilt table and what
    /// replay found.
    pub fn open(path: &Path) -> io::Result<(Journal, LeaseTable, ReplayStats)> {
        let bytes = read_for_replay(path)?;
        let (table, stats) = replay(&bytes);
        let compacted = snapshot(&table);
        write_atomically(path, &compacted)?;
        let journal = Journal {
            path: path.to_owned(),
            file: OpenOptions::new().read(true).write(true).open(path)?,
            end: compacted.len() as u64,
            len: compacted.len() as u64,
            since_compaction: 0,
        };
        Ok((journal, table, stats))
    }

    /// Writes `bytes` at the logical end, into zero-filled room made first if needed.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        let need = self.end + bytes.len() as u64;
        if need > self.len {
            let grown = need.div_ceil(PREALLOC) * PREALLOC;
            let zeros = vec![0u8; (grown - self.len) as usize];
            match self.file.write_all_at(&zeros, self.len) {
                Ok(()) => self.len = grown,
                // No room for the zeros: give back what was taken, and append plainly.
                Err(_) => {
                    let _ = self.file.set_len(self.len);
                }
            }
        }
        self.file.write_all_at(bytes, self.end)?;
        self.end = need;
        self.len = self.len.max(need);
        Ok(())
    }

    /// Appends one change and fsyncs: when this returns `Ok`, the change is durable.
    pub fn append(&mut self, change: &LeaseChange) -> io::Result<()> {
        self.write(change)?;
        self.sync()
    }

    /// Writes one change without waiting for the disk: it is durable only after the next
    /// successful [`Journal::sync`]. Group commit: write a batch, sync once, then acknowledge.
    pub fn write(&mut self, change: &LeaseChange) -> io::Result<()> {
        self.put(&encode_record(change))?;
        self.since_compaction += 1;
        Ok(())
    }

    /// Writes many changes with one `write`, without waiting for the disk (see
    /// [`Journal::write`]): the committer's way to append a whole group at once.
    pub fn write_many<'a>(
        &mut self,
        changes: impl IntoIterator<Item = &'a LeaseChange>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut n = 0;
        for c in changes {
            buf.extend_from_slice(&encode_record(c));
            n += 1;
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.put(&buf)?;
        self.since_compaction += n;
        Ok(())
    }

    /// Makes every change written so far durable (`fdatasync`).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Rewrites the journal as one record per lease of `table`, atomically.
    /// Rewrites the journal as one record per lease of `table`, atomically. A failed write
    /// before it may have left a torn record at the end; the rewrite drops it.
    pub fn compact(&mut self, table: &LeaseTable) -> io::Result<()> {
        let bytes = snapshot(table);
        write_atomically(&self.path, &bytes)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.end = bytes.len() as u64;
        self.len = self.end;
        self.since_compaction = 0;
        Ok(())
    }

    /// Records appended since the last compaction (or open).
    pub fn records_since_compaction(&self) -> usize {
        self.since_compaction
    }
}

/// Reads the journal at `path` without modifying it (no compaction, no directory creation), for
/// readers such as `switchyard leases` while the daemon may be appending: a partial last line is
/// ignored like on replay, and a compaction's rename shows the old file or the new one whole. A
/// missing file is an empty table.
pub fn read(path: &Path) -> io::Result<(LeaseTable, ReplayStats)> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(replay(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e),
    }
}

/// The table as a journal: one `U` record per lease, sorted by address for stable output.
fn snapshot(table: &LeaseTable) -> Vec<u8> {
    let mut leases: Vec<&Lease> = table.iter().collect();
    leases.sort_by_key(|l| l.ip);
    let mut out = Vec::new();
    for l in leases {
        out.extend_from_slice(&encode_record(&LeaseChange::Upsert(l.clone())));
    }
    out
}

/// Rebuilds a table from journal bytes; never fails, never panics.
pub fn replay(bytes: &[u8]) -> (LeaseTable, ReplayStats) {
    let mut table = LeaseTable::new();
    let mut stats = ReplayStats::default();
    // The zero-filled room after the last record (a record is text: it has no NUL byte).
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut rest = &bytes[..used];
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            stats.truncated_tail = true;
            break;
        };
        match decode_record(&rest[..nl]) {
            Some(change) => {
                table.apply(&change);
                stats.applied += 1;
            }
            None => stats.corrupt += 1,
        }
        rest = &rest[nl + 1..];
    }
    (table, stats)
}

/// One change as one journal line, newline included.
pub fn encode_record(change: &LeaseChange) -> Vec<u8> {
    let body = match change {
        LeaseChange::Upsert(l) => format!(
            "U {} {} {} {} {} {} {}",
            l.expires.map_or_else(|| "-".to_string(), |e| e.to_string()),
            l.mac,
            l.ip,
            l.port,
            encode_key(&l.key),
            l.hostname.as_deref().unwrap_or("*"),
            l.client_id.as_deref().map_or_else(|| "*".to_string(), hex),
        ),
        LeaseChange::Remove(key) => format!("R {}", encode_key(key)),
    };
    format!("{body} {:08x}\n", crc32(body.as_bytes())).into_bytes()
}

/// Parses one line (without its newline); `None` if the CRC or the syntax is wrong.
pub fn decode_record(line: &[u8]) -> Option<LeaseChange> {
    let line = std::str::from_utf8(line).ok()?;
    let (body, crc) = line.rsplit_once(' ')?;
    if crc.len() != 8 || u32::from_str_radix(crc, 16).ok()? != crc32(body.as_bytes()) {
        return None;
    }
    let f: Vec<&str> = body.split(' ').collect();
    match f.as_slice() {
        ["U", expires, mac, ip, port, key, host, cid] => {
            let expires = match *expires {
                "-" => None,
                e => Some(e.parse().ok()?),
            };
            let hostname = match *host {
                "*" => None,
                h => Some(h.to_string()),
            };
            let client_id = match *cid {
                "*" => None,
                c => Some(unhex(c)?.into_boxed_slice()),
            };
            Some(LeaseChange::Upsert(Lease {
                key: decode_key(key)?,
                mac: mac.parse::<MacAddr>().ok()?,
                ip: ip.parse::<Ipv4Addr>().ok()?,
                expires,
                hostname,
                client_id,
                port: port.parse().ok()?,
            }))
        }
        ["R", key] => Some(LeaseChange::Remove(decode_key(key)?)),
        _ => None,
    }
}

fn encode_key(key: &ClientKey) -> String {
    match key {
        ClientKey::Mac(m) => format!("m:{m}"),
        ClientKey::ClientId(id) => format!("c:{}", hex(id)),
    }
}

fn decode_key(s: &str) -> Option<ClientKey> {
    if let Some(m) = s.strip_prefix("m:") {
        return m.parse().ok().map(ClientKey::Mac);
    }
    let id = unhex(s.strip_prefix("c:")?)?;
    (!id.is_empty()).then(|| ClientKey::ClientId(id.into_boxed_slice()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, the zlib one).
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lease(n: u8, expires: Option<u64>) -> Lease {
        let mac = MacAddr([2, 0, 0, 0, 0, n]);
        Lease {
            key: if n % 2 == 0 {
                ClientKey::Mac(mac)
            } else {
                ClientKey::ClientId(vec![1, 2, 0, 0, 0, 0, n].into())
            },
            mac,
            ip: Ipv4Addr::new(10, 0, 0, n),
            expires,
            hostname: (n % 3 == 0).then(|| format!("host{n}")),
            client_id: (n % 2 == 1).then(|| vec![1, 2, 0, 0, 0, 0, n].into()),
            port: u16::from(n % 4),
        }
    }

    fn changes() -> Vec<LeaseChange> {
        let mut v: Vec<LeaseChange> = (1..=9)
            .map(|n| LeaseChange::Upsert(lease(n, Some(1000 + u64::from(n)))))
            .collect();
        v.push(LeaseChange::Remove(lease(4, None).key));
        v.push(LeaseChange::Upsert(lease(6, None)));
        v
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip() {
        for c in changes() {
            let rec = encode_record(&c);
            assert_eq!(decode_record(&rec[..rec.len() - 1]), Some(c));
        }
    }

    #[test]
    fn corrupt_line_is_skipped() {
        let mut bytes = Vec::new();
        for c in changes() {
            bytes.extend(encode_record(&c));
        }
        bytes[3] ^= 1; // a bit flip in the first record
        let (table, stats) = replay(&bytes);
        assert_eq!(stats.corrupt, 1);
        assert_eq!(table.len(), 7);
    }

    /// Truncation at every byte offset inside the last record: the table is exactly the one
    /// built from the complete records, and nothing panics.
    #[test]
    fn replay_after_truncation_at_every_offset_of_the_last_record() {
        let changes = changes();
        let mut bytes = Vec::new();
        for c in &changes[..changes.len() - 1] {
            bytes.extend(encode_record(c));
        }
        let (expected, _) = replay(&bytes);
        let full_len = bytes.len();
        bytes.extend(encode_record(changes.last().unwrap()));
        for cut in full_len..bytes.len() {
            let (table, stats) = replay(&bytes[..cut]);
            assert_eq!(stats.corrupt, 0, "cut at {cut}");
            assert_eq!(stats.truncated_tail, cut > full_len, "cut at {cut}");
            let mut got: Vec<_> = table.iter().cloned().collect();
            let mut want: Vec<_> = expected.iter().cloned().collect();
            got.sort_by_key(|l| l.ip);
            want.sort_by_key(|l| l.ip);
            assert_eq!(got, want, "cut at {cut}");
        }
        let (table, stats) = replay(&bytes);
        assert!(!stats.truncated_tail);
        assert_eq!(table.get(&lease(6, None).key).unwrap().expires, None);
    }

    /// Records go into zero-filled room made ahead of them; replay and a reopen see exactly
    /// the records, and the next record lands right after the last one, not after the zeros.
    #[test]
    fn records_fill_preallocated_room_that_replay_ignores() {
        let dir = crate::test_dir::TempDir::new("sy-journal-pre");
        let path = dir.0.join("leases.journal");
        let (mut j, _, _) = Journal::open(&path).unwrap();
        for c in changes() {
            j.append(&c).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, PREALLOC);
        let used = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        assert!(bytes[used..].iter().all(|&b| b == 0));
        let mut expected = Vec::new();
        for c in changes() {
            expected.extend(encode_record(&c));
        }
        assert_eq!(&bytes[..used], &expected[..]);
        let (t, stats) = read(&path).unwrap();
        assert_eq!((t.len(), stats.applied, stats.corrupt), (8, 11, 0));
        assert!(!stats.truncated_tail);
        // More records than the room holds: it grows by whole steps, records stay contiguous.
        let big = LeaseChange::Upsert(lease(7, Some(5)));
        let n = (PREALLOC as usize / encode_record(&big).len()) + 10;
        j.write_many(std::iter::repeat_n(&big, n)).unwrap();
        j.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, 2 * PREALLOC);
        let (table, stats) = read(&path).unwrap();
        assert_eq!((stats.applied, stats.corrupt), (11 + n, 0));
        // After a compaction the file is the snapshot, and the next record lands right after
        // it, in room made then.
        j.compact(&table).unwrap();
        let snap = snapshot(&table);
        assert_eq!(std::fs::read(&path).unwrap(), snap);
        let one = LeaseChange::Upsert(lease(40, Some(7)));
        j.append(&one).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(
            after.len() as u64,
            snap.len() as u64 + PREALLOC - snap.len() as u64 % PREALLOC
        );
        let rec = encode_record(&one);
        assert_eq!(&after[snap.len()..snap.len() + rec.len()], &rec[..]);
        let (t, stats) = read(&path).unwrap();
        assert_eq!((t.len(), stats.corrupt), (table.len() + 1, 0));
    }

    #[test]
    fn open_append_reopen_compacts_a_torn_tail() {
        let dir = crate::test_dir::TempDir::new("sy-journal");
        let path = dir.0.join("state").join("leases.journal");
        let _ = std::fs::remove_file(&path);
        let (mut j, t, _) = Journal::open(&path).unwrap();
        assert!(t.is_empty());
        for c in changes() {
            j.append(&c).unwrap();
        }
        assert_eq!(j.records_since_compaction(), 11);
        drop(j);
        // A crash mid-append: half a record at the end.
        let torn = encode_record(&LeaseChange::Upsert(lease(20, None)));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let (mut j, t, stats) = Journal::open(&path).unwrap();
        assert!(stats.truncated_tail);
        assert_eq!(t.len(), 8);
        // Compaction removed the torn tail, so a new append starts on a clean line.
        j.append(&LeaseChange::Upsert(lease(21, None))).unwrap();
        drop(j);
        let (_, t, stats) = Journal::open(&path).unwrap();
        assert_eq!(
            (stats.corrupt, stats.truncated_tail, stats.applied),
            (0, false, 9)
        );
        assert_eq!(t.len(), 9);
    }
}
