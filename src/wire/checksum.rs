//! The internet checksum (RFC 1071), once, for every header the crate reads or writes.
//!
//! The one's complement sum is associative and commutative (RFC 1071 §2): words may be summed
//! in any grouping and folded at the end. [`sum`] adds 4 bytes at a time into a 64-bit
//! accumulator (2^16 ≡ 1 mod 0xffff, so a 32-bit word counts as its two 16-bit halves), which
//! keeps segmenting and verifying 64 KiB super-frames cheap; [`fold`] takes the end-around
//! carries; [`checksum`] is the complemented result a header carries. A sum folds to 0 only
//! when every word is 0, so the grouping never changes the result.

use std::net::Ipv4Addr;

/// One's complement partial sum of `data` as big-endian 16-bit words (odd tail padded with 0),
/// not yet folded.
pub fn sum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    match *words.remainder() {
        [a, b, c] => acc += u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8),
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a] => acc += u64::from(a) << 8,
        _ => {}
    }
    acc
}

/// Folds a partial sum to 16 bits (not complemented).
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The internet checksum of `data`, starting from a partial sum `start` (a pseudo-header's):
/// the value a header carries, and 0 when verifying bytes whose checksum field is right.
pub fn checksum(data: &[u8], start: u32) -> u16 {
    !fold(u64::from(start) + sum(data))
}

/// The partial sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1) for `len` bytes of
/// `proto`.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let (s, d) = (src.octets(), dst.octets());
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto)
        + len as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3's example, summed 16 bits at a time as the RFC does.
    fn reference(data: &[u8], start: u32) -> u16 {
        let mut s = start;
        for c in data.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn rfc1071_example() {
        // §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&b)), 0xddf2);
        assert_eq!(checksum(&b, 0), !0xddf2);
    }

    #[test]
    fn any_length_and_start_matches_the_16_bit_sum() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..data.len() {
            for start in [0, 1, 0xffff, 0x1_fffe] {
                assert_eq!(
                    checksum(&data[..len], start),
                    reference(&data[..len], start),
                    "len {len} start {start:#x}"
                );
            }
        }
        assert_eq!(checksum(&[], 0), 0xffff);
        assert_eq!(checksum(&[0xff; 64], 0), 0);
    }
}
