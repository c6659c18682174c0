//! The DHCPv6 lease journal, `leases6.journal` beside the DHCPv4 one, in its format: one
//! CRC-checked text line per change, fsynced before the REPLY that acknowledges it.
//!
//! ```text
//! U <expires> <duid-hex> <iaid> <ip> <port> <mac|*> <hostname|*> <crc32-hex>
//! R <duid-hex> <iaid> <crc32-hex>
//! ```
//!
//! A `U` line without the MAC and hostname (written before they were recorded) still reads,
//! as a binding with neither.
//!
//! The CRC and the atomic rewrite are the DHCPv4 journal's (`dhcp::journal::crc32`,
//! `dhcp::leases::write_atomically`), and so are the rules: replay applies the lines in order,
//! ignores a partial last line (never acknowledged), skips and counts a complete line whose
//! CRC or syntax is wrong; [`Journal6::open`] replays and compacts. Unlike the DHCPv4 journal
//! it has no preallocation and no group commit: every change is one `write` and one
//! `fdatasync` on the appliance thread (DHCPv6 on a VM segment is a handful of clients).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use super::{Change6, Lease6};
use crate::service::dhcp::journal::{crc32, read_for_replay, ReplayStats};
use crate::service::dhcp::leases::{hex_colon, write_atomically};
use crate::service::dns::zone::is_host_label;
use crate::wire::MacAddr;

/// An open journal.
#[derive(Debug)]
pub struct Journal6 {
    path: PathBuf,
    file: File,
    since_compaction: usize,
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect()
}

/// One change as its line, CRC included.
pub fn encode(change: &Change6) -> Vec<u8> {
    let body = match change {
        Change6::Upsert(l) => format!(
            "U {} {} {} {} {} {} {}",
            l.expires,
            hex_colon(&l.duid),
            l.iaid,
            l.ip,
            l.port,
            l.mac.map_or_else(|| "*".to_string(), |m| m.to_string()),
            l.hostname.as_deref().unwrap_or("*"),
        ),
        Change6::Remove { duid, iaid } => format!("R {} {}", hex_colon(duid), iaid),
    };
    format!("{body} {:08x}\n", crc32(body.as_bytes())).into_bytes()
}

/// One line (without its newline) back into a change; `None` if its CRC or syntax is wrong.
pub fn decode(line: &str) -> Option<Change6> {
    let (body, crc) = line.rsplit_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32(body.as_bytes()) {
        return None;
    }
    let f: Vec<&str> = body.split(' ').collect();
    let (upsert, mac, hostname) = match f.as_slice() {
        ["U", rest @ .., mac, name] if rest.len() == 5 => (rest, Some(*mac), Some(*name)),
        ["U", rest @ ..] if rest.len() == 5 => (rest, None, None),
        _ => (&[][..], None, None),
    };
    if let [expires, duid, iaid, ip, port] = upsert {
        let mac = match mac {
            Some("*") | None => None,
            Some(m) => Some(m.parse::<MacAddr>().ok()?),
        };
        let hostname = match hostname {
            Some("*") | None => None,
            Some(h) if is_host_label(h) => Some(h.to_string()),
            Some(_) => return None,
        };
        return Some(Change6::Upsert(Lease6 {
            expires: expires.parse().ok()?,
            duid: parse_hex(duid)?,
            iaid: iaid.parse().ok()?,
            ip: ip.parse::<Ipv6Addr>().ok()?,
            port: port.parse().ok()?,
            mac,
            hostname,
        }));
    }
    match f.as_slice() {
        ["R", duid, iaid] => Some(Change6::Remove {
            duid: parse_hex(duid)?,
            iaid: iaid.parse().ok()?,
        }),
        _ => None,
    }
}

/// The leases `bytes` (a journal's content) leave, and what replay found.
pub fn replay(bytes: &[u8]) -> (Vec<Lease6>, ReplayStats) {
    let mut stats = ReplayStats::default();
    let mut table: HashMap<(Vec<u8>, u32), Lease6> = HashMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            stats.truncated_tail = true;
            break;
        };
        let line = std::str::from_utf8(&rest[..nl]).ok();
        rest = &rest[nl + 1..];
        match line.and_then(decode) {
            Some(Change6::Upsert(l)) => {
                table.insert((l.duid.clone(), l.iaid), l);
                stats.applied += 1;
            }
            Some(Change6::Remove { duid, iaid }) => {
                table.remove(&(duid, iaid));
                stats.applied += 1;
            }
            None => stats.corrupt += 1,
        }
    }
    let mut leases: Vec<Lease6> = table.into_values().collect();
    leases.sort_by(|a, b| (&a.duid, a.iaid).cmp(&(&b.duid, b.iaid)));
    (leases, stats)
}

fn snapshot<'a>(leases: impl Iterator<Item = &'a Lease6>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in leases {
        out.extend_from_slice(&encode(&Change6::Upsert(l.clone())));
    }
    out
}

impl Journal6 {
    /// Replays the journal at `path` (missing: empty), compacts it, opens it for appending.
    pub fn open(path: &Path) -> io::Result<(Journal6, Vec<Lease6>, ReplayStats)> {
        let bytes = read_for_replay(path)?;
        let (leases, stats) = replay(&bytes);
        write_atomically(path, &snapshot(leases.iter()))?;
        let file = OpenOptions::new().append(true).open(path)?;
        let j = Journal6 {
            path: path.to_owned(),
            file,
            since_compaction: 0,
        };
        Ok((j, leases, stats))
    }

    /// Appends `changes` with one write and fsyncs: when this returns `Ok` they are durable.
    pub fn append(&mut self, changes: &[Change6]) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let buf: Vec<u8> = changes.iter().flat_map(encode).collect();
        self.file.write_all(&buf)?;
        self.since_compaction += changes.len();
        self.file.sync_data()
    }

    /// Rewrites the journal as one record per lease, atomically.
    pub fn compact<'a>(&mut self, leases: impl Iterator<Item = &'a Lease6>) -> io::Result<()> {
        write_atomically(&self.path, &snapshot(leases))?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.since_compaction = 0;
        Ok(())
    }

    pub fn records_since_compaction(&self) -> usize {
        self.since_compaction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: u8) -> Lease6 {
        Lease6 {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n],
            iaid: u32::from(n),
            ip: Ipv6Addr::new(0xfd00, 0x13, 0x31, 0, 0, 0, 0, u16::from(n)),
            port: 3,
            expires: 1_000 + u64::from(n),
            mac: Some(MacAddr([2, 0, 0, 0, 0, n])),
            hostname: (n % 2 == 1).then(|| format!("vm{n}")),
        }
    }

    #[test]
    fn a_line_without_mac_and_hostname_still_reads() {
        let body = "U 1001 00:03:00:01:02:00:00:00:00:01 1 fd00:13:31::1 3";
        let line = format!("{body} {:08x}", crc32(body.as_bytes()));
        let want = Lease6 {
            mac: None,
            hostname: None,
            ..lease(1)
        };
        assert_eq!(decode(&line), Some(Change6::Upsert(want)));
        let l = lease(1);
        let text = String::from_utf8(encode(&Change6::Upsert(l.clone()))).unwrap();
        assert!(text.contains(" 02:00:00:00:00:01 vm1 "), "{text}");
        assert_eq!(decode(text.trim_end()), Some(Change6::Upsert(l)));
    }

    #[test]
    fn replay_applies_in_order_and_skips_damage() {
        let mut bytes = Vec::new();
        for n in 1..=3 {
            bytes.extend(encode(&Change6::Upsert(lease(n))));
        }
        bytes.extend(encode(&Change6::Remove {
            duid: lease(2).duid,
            iaid: 2,
        }));
        let mut bad = encode(&Change6::Upsert(lease(9)));
        bad[3] ^= 1;
        bytes.extend(bad);
        bytes.extend_from_slice(b"U 5 torn");
        let (leases, stats) = replay(&bytes);
        assert_eq!(leases, vec![lease(1), lease(3)]);
        assert_eq!(
            (stats.applied, stats.corrupt, stats.truncated_tail),
            (4, 1, true)
        );
    }

    #[test]
    fn open_append_reopen() {
        let dir = std::env::temp_dir().join(format!("sy-j6-{}", std::process::id()));
        let path = dir.join("leases6.journal");
        let _ = std::fs::remove_dir_all(&dir);
        let (mut j, leases, _) = Journal6::open(&path).unwrap();
        assert!(leases.is_empty());
        j.append(&[Change6::Upsert(lease(1)), Change6::Upsert(lease(2))])
            .unwrap();
        j.append(&[Change6::Remove {
            duid: lease(1).duid,
            iaid: 1,
        }])
        .unwrap();
        drop(j);
        let (_, leases, stats) = Journal6::open(&path).unwrap();
        assert_eq!((leases, stats.corrupt), (vec![lease(2)], 0));
        // Compacted on open: one line.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
