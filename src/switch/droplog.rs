//! The last drops of each port, with the frame's addresses: what `switchyard why PORT` shows.
//!
//! Theory of operation. The counters say how many frames a port lost and why; this says which
//! ones. Each port has a ring of [`RING`] slots, allocated once when the daemon starts (a slot
//! per port the switch can hold) and filled only when a frame is dropped: the worker that
//! carried out the drop calls [`DropLog::record`] with the reason the verdict gave, the frame
//! and the `now` it already has. The forwarding decision stays pure: `Switch::process` returns
//! the verdict; recording is the caller's.
//!
//! Lock-free, allocation-free, never waiting: a writer claims the next slot of the port's ring
//! (`fetch_add`), takes the slot by moving its sequence number from even to odd (a CAS; if
//! another writer holds it, the record is skipped: the counters stay exact, this is a sample),
//! stores the fields as plain words and makes the sequence even again. A reader copies a slot
//! and keeps it only if its sequence was even and unchanged across the copy (a seqlock), so it
//! never sees half a record and never holds up the data plane.
//!
//! What a record keeps: when (`now`), the reason, the frame's length, both MACs, the
//! EtherType, and for IPv4 the source and destination addresses and the protocol, for ARP the
//! sender and target addresses. Nothing else of the frame is kept.

use std::net::Ipv4Addr;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

use super::{DropReason, PortId};
use crate::wire::ipv4::{Ipv4Packet, IPV4_HEADER_LEN};
use crate::wire::{MacAddr, ETHERNET_HEADER_LEN};

/// Drops remembered per port.
pub const RING: usize = 16;
/// The words of one record.
const WORDS: usize = 6;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

/// One remembered drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRecord {
    /// The `now` of the worker that dropped it (time since the daemon started).
    pub at: Duration,
    pub reason: DropReason,
    /// The frame's length (without the virtio-net header).
    pub len: u32,
    pub src: MacAddr,
    pub dst: MacAddr,
    /// 0 for a frame too short to have one.
    pub ethertype: u16,
    /// IPv4: (source, destination); ARP: (sender, target).
    pub ipv4: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The IPv4 protocol (1 ICMP, 6 TCP, 17 UDP, ...); `None` for anything but IPv4.
    pub protocol: Option<u8>,
}

#[derive(Default)]
struct Slot {
    /// Even: stable; odd: being written.
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

#[derive(Default)]
struct PortRing {
    /// Slots claimed so far (the next one is `next % RING`).
    next: AtomicU64,
    slots: [Slot; RING],
}

/// Every port's ring (see the module documentation).
pub struct DropLog {
    ports: Box<[PortRing]>,
}

impl DropLog {
    /// Rings for ports `0..ports`, all empty.
    pub fn new(ports: usize) -> DropLog {
        DropLog {
            ports: (0..ports).map(|_| PortRing::default()).collect(),
        }
    }

    /// Remembers that `frame` (an Ethernet frame, no virtio-net header) from or to `port` was
    /// dropped for `reason` at `now`. Never blocks or allocates; a port outside the log, or a
    /// slot another writer holds, is skipped.
    pub fn record(&self, port: PortId, reason: DropReason, frame: &[u8], now: Duration) {
        let Some(ring) = self.ports.get(port.index()) else {
            return;
        };
        let claim = ring.next.fetch_add(1, Ordering::Relaxed);
        let slot = &ring.slots[(claim % RING as u64) as usize];
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq % 2 == 1
            || slot
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // A reader that sees any word below also sees the odd sequence (the seqlock's fence).
        fence(Ordering::Release);
        for (w, v) in slot.words.iter().zip(encode(claim, reason, frame, now)) {
            w.store(v, Ordering::Relaxed);
        }
        slot.seq.store(seq + 2, Ordering::Release);
    }

    /// The drops `port` remembers, newest first (at most [`RING`]).
    pub fn recent(&self, port: PortId) -> Vec<DropRecord> {
        let Some(ring) = self.ports.get(port.index()) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, DropRecord)> = ring
            .slots
            .iter()
            .filter_map(|slot| {
                let before = slot.seq.load(Ordering::Acquire);
                let words: [u64; WORDS] =
                    std::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
                fence(Ordering::Acquire);
                let after = slot.seq.load(Ordering::Relaxed);
                if before % 2 == 1 || before != after {
                    return None; // being written: that drop is skipped
                }
                decode(&words)
            })
            .collect();
        found.sort_by_key(|(claim, _)| std::cmp::Reverse(*claim));
        found.into_iter().map(|(_, r)| r).collect()
    }

    /// Forgets `port`'s drops (a new port in the slot of an old one).
    pub fn clear(&self, port: PortId) {
        let Some(ring) = self.ports.get(port.index()) else {
            return;
        };
        for slot in &ring.slots {
            let seq = slot.seq.load(Ordering::Relaxed);
            if seq % 2 == 0
                && slot
                    .seq
                    .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                fence(Ordering::Release);
                slot.words[0].store(0, Ordering::Relaxed);
                slot.seq.store(seq + 2, Ordering::Release);
            }
        }
    }
}

/// A 48-bit MAC from 6 bytes at `at` (zeros past the end).
fn mac_bits(frame: &[u8], at: usize) -> u64 {
    (0..6).fold(0, |acc, i| {
        (acc << 8) | u64::from(frame.get(at + i).copied().unwrap_or(0))
    })
}

fn ipv4_bits(frame: &[u8], at: usize) -> u64 {
    frame.get(at..at + 4).map_or(0, |b| {
        u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    })
}

/// The record's words: [claim + 1, at µs, reason | len | ethertype, src MAC | protocol | kind,
/// dst MAC, IPv4 source | destination]. Word 0 is 0 in an empty slot.
fn encode(claim: u64, reason: DropReason, frame: &[u8], now: Duration) -> [u64; WORDS] {
    let ethertype = match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    };
    // kind: 0 no addresses, 1 IPv4 (with protocol), 2 ARP.
    let (kind, protocol, ips) = match ethertype {
        // The fixed header's fields as they are: a dropped frame is recorded even when its
        // header lies (a malformed drop is one this log must show).
        ETHERTYPE_IPV4 if frame.len() >= ETHERNET_HEADER_LEN + IPV4_HEADER_LEN => {
            let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
            (
                1u64,
                u64::from(ip.protocol()),
                u64::from(u32::from(ip.src_addr())) << 32 | u64::from(u32::from(ip.dst_addr())),
            )
        }
        ETHERTYPE_ARP if frame.len() >= 42 => {
            (2, 0, ipv4_bits(frame, 28) << 32 | ipv4_bits(frame, 38))
        }
        _ => (0, 0, 0),
    };
    let len = u64::from(u32::try_from(frame.len()).unwrap_or(u32::MAX));
    [
        claim + 1,
        u64::try_from(now.as_micros()).unwrap_or(u64::MAX),
        (reason as u64) | len << 8 | u64::from(ethertype) << 40,
        mac_bits(frame, 6) | protocol << 48 | kind << 56,
        mac_bits(frame, 0),
        ips,
    ]
}

fn mac(bits: u64) -> MacAddr {
    let b = bits.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn decode(w: &[u64; WORDS]) -> Option<(u64, DropRecord)> {
    if w[0] == 0 {
        return None;
    }
    let reason = *DropReason::ALL.get((w[2] & 0xff) as usize)?;
    let kind = w[3] >> 56;
    let ips = (
        Ipv4Addr::from((w[5] >> 32) as u32),
        Ipv4Addr::from(w[5] as u32),
    );
    Some((
        w[0],
        DropRecord {
            at: Duration::from_micros(w[1]),
            reason,
            len: (w[2] >> 8) as u32,
            src: mac(w[3] & 0xffff_ffff_ffff),
            dst: mac(w[4]),
            ethertype: (w[2] >> 40) as u16,
            ipv4: (kind != 0).then_some(ips),
            protocol: (kind == 1).then_some(((w[3] >> 48) & 0xff) as u8),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP frame from 10.0.0.5 to 10.0.0.1, 60 bytes.
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 5]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f
    }

    #[test]
    fn records_come_back_newest_first_with_their_addresses() {
        let log = DropLog::new(2);
        let p = PortId(1);
        log.record(
            p,
            DropReason::SpoofedIp,
            &udp_frame(),
            Duration::from_millis(5),
        );
        log.record(p, DropReason::Runt, &[0xff; 9], Duration::from_millis(7));
        let got = log.recent(p);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].reason, DropReason::Runt);
        assert_eq!(got[0].len, 9);
        assert_eq!(got[0].ethertype, 0);
        assert_eq!(got[0].ipv4, None);
        let r = got[1];
        assert_eq!(r.reason, DropReason::SpoofedIp);
        assert_eq!(r.at, Duration::from_millis(5));
        assert_eq!(r.len, 60);
        assert_eq!(r.src.to_string(), "52:54:00:00:00:02");
        assert_eq!(r.dst.to_string(), "52:54:00:00:00:01");
        assert_eq!(r.ethertype, 0x0800);
        assert_eq!(
            r.ipv4,
            Some((Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(r.protocol, Some(17));
        assert!(log.recent(PortId(0)).is_empty(), "the other port's ring");
        assert!(log.recent(PortId(9)).is_empty(), "outside the log");
        log.record(PortId(9), DropReason::Runt, &[], Duration::ZERO); // ignored, no panic
    }

    #[test]
    fn arp_keeps_sender_and_target() {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[28..32].copy_from_slice(&[10, 0, 0, 9]);
        f[38..42].copy_from_slice(&[10, 0, 0, 1]);
        let log = DropLog::new(1);
        log.record(PortId(0), DropReason::SpoofedArp, &f, Duration::ZERO);
        let r = log.recent(PortId(0))[0];
        assert_eq!(r.ipv4.unwrap().0, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(r.protocol, None);
    }

    #[test]
    fn the_ring_keeps_the_last_ones_and_clear_empties_it() {
        let log = DropLog::new(1);
        let p = PortId(0);
        for i in 0..RING as u64 + 5 {
            log.record(p, DropReason::Mtu, &udp_frame(), Duration::from_millis(i));
        }
        let got = log.recent(p);
        assert_eq!(got.len(), RING);
        assert_eq!(got[0].at, Duration::from_millis(RING as u64 + 4));
        assert_eq!(got[RING - 1].at, Duration::from_millis(5));
        log.clear(p);
        assert!(log.recent(p).is_empty());
    }

    #[test]
    fn concurrent_writers_and_a_reader_never_see_half_a_record() {
        let log = std::sync::Arc::new(DropLog::new(1));
        let frame = udp_frame();
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (log, frame) = (&log, &frame);
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        // Each record's time says which writer: its reason must match.
                        let reason = DropReason::ALL[t as usize];
                        log.record(
                            PortId(0),
                            reason,
                            frame,
                            Duration::from_micros(t * 1_000_000 + i),
                        );
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..2_000 {
                    for r in log.recent(PortId(0)) {
                        let t = r.at.as_micros() / 1_000_000;
                        assert_eq!(r.reason, DropReason::ALL[t as usize]);
                        assert_eq!(r.len, 60);
                        assert_eq!(r.protocol, Some(17));
                    }
                }
            });
        });
        assert!(!log.recent(PortId(0)).is_empty());
    }
}
