//! Loop detection: probes that must never come back.
//!
//! # Theory of operation
//!
//! Once a second the daemon sends a [`probe_frame`] out of every port that is up and not
//! blocked: a broadcast frame of EtherType [`LOOP_PROBE_ETHERTYPE`] (IEEE 802 local experimental)
//! carrying a magic, the id of the port it left through, and a token keyed by a secret only the
//! daemon knows. A switch has no business seeing its own probe again: if one arrives, the
//! network outside the switch joins two of its ports (two VM taps bridged inside a guest, two
//! veths of one namespace bridged by the kernel), or reflects frames back into one. Every
//! broadcast would circle that loop forever.
//!
//! `Switch::process` recognises its own probes before any other check (a guarded port would
//! otherwise drop them as spoofed) and blocks one port of the loop: the higher-numbered of the
//! port the probe left through and the one it came back on. A blocked port drops everything it
//! receives (`loop_blocked`), is never flooded to, loses its learned MACs, and sends no probes;
//! the block lifts after [`LOOP_BLOCK`], and the next probe blocks it again if the loop is still
//! there. The returning probe itself counts as `loop_detected`.
//!
//! The token is SipHash-2-4 of the port id under the daemon's random 128-bit key, so a guest
//! sees only the token of its own port. Replaying that probe can block only its own port; to
//! block another port it would need a second guest on that port to hand it the other token, and
//! then the port blocked is one of those two.

use std::hash::Hasher;
use std::time::Duration;

use super::PortId;
use crate::wire::{EtherType, EthernetFrame, MacAddr, ETHERNET_HEADER_LEN};

/// IEEE 802 "local experimental EtherType 2".
pub const LOOP_PROBE_ETHERTYPE: u16 = 0x88b6;
/// How long a port stays blocked after its loop was seen.
pub const LOOP_BLOCK: Duration = Duration::from_secs(30);

const MAGIC: [u8; 8] = *b"SYLOOP01";
/// Ethernet header, magic, port id (u16), token (u64), padded to the 60-byte minimum.
const PROBE_LEN: usize = 60;

/// The daemon's secret for probe tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopKey(pub [u64; 2]);

impl LoopKey {
    fn token(self, from: PortId) -> u64 {
        #[allow(deprecated)] // std's SipHasher is deprecated only in favour of external crates.
        let mut h = std::hash::SipHasher::new_with_keys(self.0[0], self.0[1]);
        h.write_u16(from.0);
        h.finish()
    }
}

/// Writes the probe that leaves through `from` into `out` (replacing its contents).
pub fn probe_frame(key: LoopKey, src: MacAddr, from: PortId, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MacAddr::BROADCAST.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&LOOP_PROBE_ETHERTYPE.to_be_bytes());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&from.0.to_be_bytes());
    out.extend_from_slice(&key.token(from).to_be_bytes());
    out.resize(PROBE_LEN, 0);
}

/// The port our probe `frame` left through, if it is one of ours with a valid token.
pub fn own_probe(key: LoopKey, frame: &[u8]) -> Option<PortId> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != EtherType::Unknown(LOOP_PROBE_ETHERTYPE) {
        return None;
    }
    let p = &frame[ETHERNET_HEADER_LEN..];
    if p.len() < 18 || p[..8] != MAGIC {
        return None;
    }
    let from = PortId(u16::from_be_bytes([p[8], p[9]]));
    let token = u64::from_be_bytes(p[10..18].try_into().ok()?);
    (token == key.token(from)).then_some(from)
}

const _: () = assert!(ETHERNET_HEADER_LEN + 18 <= PROBE_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: LoopKey = LoopKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

    #[test]
    fn a_probe_names_its_port_only_under_the_right_key() {
        let mut f = Vec::new();
        probe_frame(KEY, SRC, PortId(7), &mut f);
        assert_eq!(f.len(), PROBE_LEN);
        assert_eq!(own_probe(KEY, &f), Some(PortId(7)));
        assert_eq!(
            own_probe(LoopKey([1, 2]), &f),
            None,
            "another switch's probe"
        );
        // A guest that rewrites the port id without the key is not believed.
        f[ETHERNET_HEADER_LEN + 9] = 8;
        assert_eq!(own_probe(KEY, &f), None);
        assert_eq!(own_probe(KEY, &f[..20]), None, "truncated");
    }
}
