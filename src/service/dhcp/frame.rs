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
//! [`Destination`] says (67 → 67 to a relay agent, at the MAC its request came from). It fills both the IPv4 and the UDP checksum (dnsmasq on Multipass needs
//! a firewall rule to fill them; a frame from a userspace switch must be complete). Clients with
//! no address yet get a unicast frame built directly, with no ARP.

use std::net::Ipv4Addr;

use super::reply::{Destination, Reply};
use crate::wire::ipv4::{build_udp, Ipv4View, UdpEndpoints};
use crate::wire::MacAddr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// The UDP payload of `frame` if it is a DHCP message for the server at `server_ip`.
pub fn dhcp_payload(frame: &[u8], server_ip: Ipv4Addr) -> Option<&[u8]> {
    let ip = Ipv4View::parse(frame)?;
    if ip.dst != Ipv4Addr::BROADCAST && ip.dst != server_ip {
        return None;
    }
    match ip.udp()? {
        (_, SERVER_PORT, payload) => Some(payload),
        _ => None,
    }
}

/// The complete frame for `reply`, sent by the server at `server_mac` / `server_ip`;
/// `request_src` is the source MAC of the request (a relay agent's, for a relayed one).
pub fn emit_reply_frame(
    reply: &Reply,
    server_mac: MacAddr,
    server_ip: Ipv4Addr,
    request_src: MacAddr,
) -> Vec<u8> {
    let (dst_mac, dst, dst_port) = match reply.dest {
        Destination::Broadcast => (MacAddr::BROADCAST, Ipv4Addr::BROADCAST, CLIENT_PORT),
        Destination::Unicast { ip, mac } => (mac, ip, CLIENT_PORT),
        Destination::Relay { ip } => (request_src, ip, SERVER_PORT),
    };
    let mut f = Vec::with_capacity(42 + reply.payload.len());
    let ep = UdpEndpoints {
        src_mac: server_mac,
        dst_mac,
        src: server_ip,
        dst,
        src_port: SERVER_PORT,
        dst_port,
    };
    build_udp(&mut f, &ep, &reply.payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const SMAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const CMAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 7]);

    fn request(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        let ep = UdpEndpoints {
            src_mac: CMAC,
            dst_mac: MacAddr::BROADCAST,
            src: Ipv4Addr::UNSPECIFIED,
            dst,
            src_port: CLIENT_PORT,
            dst_port: SERVER_PORT,
        };
        build_udp(&mut f, &ep, payload);
        f
    }

    fn checksum(parts: &[&[u8]]) -> u16 {
        crate::wire::ipv4::checksum(&parts.concat(), 0)
    }

    fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[..4].copy_from_slice(&src.octets());
        p[4..8].copy_from_slice(&dst.octets());
        p[9] = 17;
        p[10..].copy_from_slice(&udp_len.to_be_bytes());
        p
    }

    #[test]
    fn reply_frames_have_valid_checksums() {
        for dest in [
            Destination::Broadcast,
            Destination::Unicast {
                ip: [10, 0, 0, 7].into(),
                mac: CMAC,
            },
            Destination::Relay {
                ip: [10, 0, 0, 7].into(),
            },
        ] {
            let reply = Reply {
                payload: vec![1, 2, 3, 4, 5],
                dest,
                port: 3,
            };
            let f = emit_reply_frame(&reply, SMAC, SERVER, CMAC);
            assert_eq!(f.len(), 14 + 20 + 8 + 5);
            assert_eq!(checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
            let pseudo = pseudo_header(SERVER, Ipv4Addr::new(f[30], f[31], f[32], f[33]), 13);
            assert_eq!(checksum(&[&pseudo, &f[34..]]), 0, "UDP checksum");
            assert_eq!(&f[6..12], &SMAC.0);
            match dest {
                Destination::Broadcast => {
                    assert_eq!((&f[..6], &f[30..34]), (&[0xff; 6][..], &[255; 4][..]))
                }
                Destination::Unicast { .. } | Destination::Relay { .. } => {
                    // A relay agent is reached at the MAC its request came from (CMAC here).
                    assert_eq!((&f[..6], &f[30..34]), (&CMAC.0[..], &[10, 0, 0, 7][..]))
                }
            }
            let dst_port = if matches!(dest, Destination::Relay { .. }) {
                67
            } else {
                68
            };
            assert_eq!(&f[34..38], &[0, 67, 0, dst_port]);
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
        f[20] = 0x20; // MF (and DF cleared)
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
