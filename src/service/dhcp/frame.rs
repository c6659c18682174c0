//! The DHCP service's frames: recognising a request, and wrapping a reply in Ethernet, IPv4 and
//! UDP with complete checksums.
//!
//! # Theory of operation
//!
//! The service port hands [`dhcp_payload`] every frame it receives; it returns the UDP payload
//! when the frame is an untagged IPv4 UDP datagram to port 67, unfragmented, with a valid IPv4
//! header checksum, addressed to the limited broadcast or to the server's address. Anything
//! else is not for the DHCP service (`None`): the caller treats it as ARP, ICMP or a drop.
//!
//! [`emit_reply_frame`] writes the frame for a [`Reply`]: from the server's MAC and address, UDP
//! 67 → 68, to ff:ff:ff:ff:ff:ff / 255.255.255.255 or to the client's MAC and address as the
//! [`Destination`] says. It fills both the IPv4 and the UDP checksum (dnsmasq on Multipass needs
//! a firewall rule to fill them; a frame from a userspace switch must be complete). Clients with
//! no address yet get a unicast frame built directly, with no ARP.

use std::net::Ipv4Addr;

use super::reply::{Destination, Reply};
use crate::wire::MacAddr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
const TTL: u8 = 64;

/// The UDP payload of `frame` if it is a DHCP message for the server at `server_ip`.
pub fn dhcp_payload(frame: &[u8], server_ip: Ipv4Addr) -> Option<&[u8]> {
    if frame.len() < ETH_LEN + IPV4_LEN + UDP_LEN
        || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV4
    {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff; // MF and the offset
    if ip[0] >> 4 != 4 || ihl < IPV4_LEN || total < ihl + UDP_LEN || total > ip.len() {
        return None;
    }
    if frag != 0 || ip[9] != IPPROTO_UDP || checksum(&[&ip[..ihl]]) != 0 {
        return None;
    }
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if dst != Ipv4Addr::BROADCAST && dst != server_ip {
        return None;
    }
    let udp = &ip[ihl..total];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if u16::from_be_bytes([udp[2], udp[3]]) != SERVER_PORT
        || udp_len < UDP_LEN
        || udp_len > udp.len()
    {
        return None;
    }
    Some(&udp[UDP_LEN..udp_len])
}

/// The complete frame for `reply`, sent by the server at `server_mac` / `server_ip`.
pub fn emit_reply_frame(reply: &Reply, server_mac: MacAddr, server_ip: Ipv4Addr) -> Vec<u8> {
    let (dst_mac, dst_ip) = match reply.dest {
        Destination::Broadcast => (MacAddr::BROADCAST, Ipv4Addr::BROADCAST),
        Destination::Unicast { ip, mac } => (mac, ip),
    };
    let ends = (
        (server_mac, server_ip, SERVER_PORT),
        (dst_mac, dst_ip, CLIENT_PORT),
    );
    emit_udp_frame(ends.0, ends.1, &reply.payload)
}

/// An Ethernet II / IPv4 / UDP frame from `src` to `dst` (MAC, address, port), checksums filled.
pub fn emit_udp_frame(
    src: (MacAddr, Ipv4Addr, u16),
    dst: (MacAddr, Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_LEN + payload.len();
    let total = IPV4_LEN + udp_len;
    let mut f = Vec::with_capacity(ETH_LEN + total);
    f.extend_from_slice(&dst.0 .0);
    f.extend_from_slice(&src.0 .0);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    // IPv4: version 4, IHL 5, no DSCP, total length, id 0, DF clear, TTL, UDP, checksum.
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, TTL, IPPROTO_UDP, 0, 0]);
    f.extend_from_slice(&src.1.octets());
    f.extend_from_slice(&dst.1.octets());
    let ip_sum = checksum(&[&f[ETH_LEN..ETH_LEN + IPV4_LEN]]);
    f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_at = f.len();
    f.extend_from_slice(&src.2.to_be_bytes());
    f.extend_from_slice(&dst.2.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let pseudo = pseudo_header(src.1, dst.1, udp_len as u16);
    let sum = match checksum(&[&pseudo, &f[udp_at..]]) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones
        s => s,
    };
    f[udp_at + 6..udp_at + 8].copy_from_slice(&sum.to_be_bytes());
    f
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = IPPROTO_UDP;
    p[10..].copy_from_slice(&udp_len.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts` (each even-length but the
/// last); 0 when the parts already include a correct checksum.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const SMAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const CMAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 7]);

    fn request(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let src = (CMAC, Ipv4Addr::UNSPECIFIED, CLIENT_PORT);
        emit_udp_frame(src, (MacAddr::BROADCAST, dst, SERVER_PORT), payload)
    }

    #[test]
    fn reply_frames_have_valid_checksums() {
        for dest in [
            Destination::Broadcast,
            Destination::Unicast {
                ip: [10, 0, 0, 7].into(),
                mac: CMAC,
            },
        ] {
            let reply = Reply {
                payload: vec![1, 2, 3, 4, 5],
                dest,
                port: 3,
            };
            let f = emit_reply_frame(&reply, SMAC, SERVER);
            assert_eq!(f.len(), 14 + 20 + 8 + 5);
            assert_eq!(checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
            let pseudo = pseudo_header(SERVER, Ipv4Addr::new(f[30], f[31], f[32], f[33]), 13);
            assert_eq!(checksum(&[&pseudo, &f[34..]]), 0, "UDP checksum");
            assert_eq!(&f[6..12], &SMAC.0);
            match dest {
                Destination::Broadcast => {
                    assert_eq!((&f[..6], &f[30..34]), (&[0xff; 6][..], &[255; 4][..]))
                }
                Destination::Unicast { .. } => {
                    assert_eq!((&f[..6], &f[30..34]), (&CMAC.0[..], &[10, 0, 0, 7][..]))
                }
            }
            assert_eq!(&f[34..38], &[0, 67, 0, 68]);
        }
    }

    #[test]
    fn recognises_requests_to_the_server_only() {
        let payload = [7u8; 300];
        assert_eq!(
            dhcp_payload(&request(Ipv4Addr::BROADCAST, &payload), SERVER),
            Some(&payload[..])
        );
        assert_eq!(
            dhcp_payload(&request(SERVER, &payload), SERVER),
            Some(&payload[..])
        );
        assert_eq!(
            dhcp_payload(&request([10, 0, 0, 9].into(), &payload), SERVER),
            None
        );
        // Ethernet padding after the datagram is ignored.
        let mut padded = request(SERVER, &[1, 2]);
        padded.resize(60, 0);
        assert_eq!(dhcp_payload(&padded, SERVER), Some(&[1u8, 2][..]));
        // Another UDP port, a bad header checksum, a fragment, a non-IPv4 frame: not ours.
        let mut f = request(SERVER, &payload);
        f[37] = 53;
        assert_eq!(dhcp_payload(&f, SERVER), None);
        let mut f = request(SERVER, &payload);
        f[22] ^= 1;
        assert_eq!(dhcp_payload(&f, SERVER), None);
        let mut f = request(SERVER, &payload);
        f[20] = 0x20; // MF
        let s = checksum(&[&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        }]);
        f[24..26].copy_from_slice(&s.to_be_bytes());
        assert_eq!(dhcp_payload(&f, SERVER), None);
        let mut f = request(SERVER, &payload);
        f[12] = 0x86;
        assert_eq!(dhcp_payload(&f, SERVER), None);
    }

    #[test]
    fn every_truncation_is_refused_or_bounded() {
        let f = request(SERVER, &[9u8; 40]);
        for cut in 0..f.len() {
            assert_eq!(dhcp_payload(&f[..cut], SERVER), None, "cut at {cut}");
        }
    }
}
