//! rtnetlink, the few requests the port layer needs, built and parsed by hand in safe code.
//!
//! # Theory of operation
//!
//! A [`Netlink`] handle owns one `NETLINK_ROUTE` socket. The socket belongs to the network
//! namespace it was created in ([`Netlink::open`]: the caller's, [`Netlink::open_in`]: another),
//! so every request it sends acts on that namespace, whatever namespace the calling thread is in.
//!
//! Each method sends exactly one request with `NLM_F_REQUEST | NLM_F_ACK` and a fresh sequence
//! number, then reads until the kernel's `NLMSG_ERROR` for that sequence number arrives: error 0
//! is the ACK, a negative error is the kernel's errno, returned as `io::Error::from_raw_os_error`
//! so callers can match on it. Replies for other sequence numbers (left over from an earlier
//! request that failed half-way) are skipped. A `RTM_GETLINK` answer is an `RTM_NEWLINK` message
//! followed by the ACK.
//!
//! Messages are byte vectors: `nlmsghdr` (16 bytes), the family header (`ifinfomsg`, 16 bytes, or
//! `ifaddrmsg`, 8 bytes), then attributes (`rtattr`: length, type, payload padded to 4 bytes).
//! All integers are in host byte order except addresses, which are in network order. The
//! builders are pure functions, unit-tested byte for byte without root.
//!
//! # Limits
//!
//! No dumps, no multicast groups, no extended ACK messages: one request, one answer. A request
//! that gets no answer within the socket's receive timeout fails with `TimedOut`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::sys;
use crate::wire::MacAddr;

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

// linux/rtnetlink.h
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTA_HDRLEN: usize = 4;

// linux/if_link.h
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
const AF_INET6: u16 = 10;

// linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

// linux/socket.h, linux/if.h
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;

/// `ifinfomsg` is 16 bytes, `ifaddrmsg` 8.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
/// `nlmsgerr`: the errno, then the header of the request it answers.
const NLMSGERR_LEN: usize = 4 + NLMSG_HDRLEN;

/// Receive buffer: ACKs echo the request (a few hundred bytes); a link answer is a few KiB.
const RECV_BUF_LEN: usize = 32 * 1024;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one netlink message: header, family header, attributes, each padded to 4 bytes.
struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    fn new(ty: u16, flags: u16, seq: u32) -> MessageBuilder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched by `finish`
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0, the kernel fills in ours
        MessageBuilder { buf }
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn push_header(mut self, header: &[u8]) -> Self {
        self.buf.extend_from_slice(header);
        self.pad();
        self
    }

    fn push_attr(mut self, ty: u16, payload: &[u8]) -> Self {
        let len = u16::try_from(RTA_HDRLEN + payload.len()).expect("attribute under 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).expect("message under 4 GiB");
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[0] = AF_UNSPEC; // ifi_family; m[1] is padding, m[2..4] ifi_type (unused in requests)
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn ifaddrmsg(prefix_len: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut m = [0u8; IFADDRMSG_LEN];
    m[0] = AF_INET;
    m[1] = prefix_len;
    m[2] = 0; // ifa_flags
    m[3] = RT_SCOPE_UNIVERSE;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

const REQUEST_ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// `RTM_SETLINK`: MTU, MAC and administrative state of an existing link; absent fields unchanged.
fn set_link_request(
    seq: u32,
    ifindex: u32,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    up: Option<bool>,
) -> Vec<u8> {
    let (flags, change) = match up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let mut m = MessageBuilder::new(RTM_SETLINK, REQUEST_ACK, seq)
        .push_header(&ifinfomsg(ifindex, flags, change));
    if let Some(mtu) = mtu {
        m = m.push_attr(IFLA_MTU, &mtu.to_ne_bytes());
    }
    if let Some(mac) = mac {
        m = m.push_attr(IFLA_ADDRESS, &mac.octets());
    }
    m.finish()
}

/// One attribute as bytes (header, payload, padding), to nest inside another.
fn attr_bytes(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(RTA_HDRLEN + payload.len()).expect("attribute under 64 KiB");
    let mut b = Vec::with_capacity(align4(usize::from(len)));
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    b.resize(align4(b.len()), 0);
    b
}

/// `RTM_SETLINK` with `IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE = NONE } }`: what
/// `ip link set DEV addrgenmode none` sends. The link then gets no IPv6 link-local address, so
/// the host never speaks on a netdev the switch has attached to.
fn addr_gen_mode_none_request(seq: u32, ifindex: u32) -> Vec<u8> {
    let mode = attr_bytes(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
    MessageBuilder::new(RTM_SETLINK, REQUEST_ACK, seq)
        .push_header(&ifinfomsg(ifindex, 0, 0))
        .push_attr(IFLA_AF_SPEC, &attr_bytes(AF_INET6, &mode))
        .finish()
}

/// `RTM_SETLINK` with `IFLA_TXQLEN`: the length of a link's transmit queue (for a tap, its ring).
fn tx_queue_len_request(seq: u32, ifindex: u32, len: u32) -> Vec<u8> {
    MessageBuilder::new(RTM_SETLINK, REQUEST_ACK, seq)
        .push_header(&ifinfomsg(ifindex, 0, 0))
        .push_attr(IFLA_TXQLEN, &len.to_ne_bytes())
        .finish()
}

/// `RTM_SETLINK` with `IFLA_NET_NS_FD`: move a link into the namespace `nsfd` refers to.
fn move_link_request(seq: u32, ifindex: u32, nsfd: u32) -> Vec<u8> {
    MessageBuilder::new(RTM_SETLINK, REQUEST_ACK, seq)
        .push_header(&ifinfomsg(ifindex, 0, 0))
        .push_attr(IFLA_NET_NS_FD, &nsfd.to_ne_bytes())
        .finish()
}

/// The directed broadcast address of `addr/prefix_len`, which iproute2's `brd +` adds for
/// prefixes up to /30 (a /31 or /32 has no broadcast address, RFC 3021).
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    (prefix_len <= 30).then(|| Ipv4Addr::from(u32::from(addr) | (u32::MAX >> prefix_len)))
}

/// `RTM_NEWADDR` with `NLM_F_CREATE | NLM_F_REPLACE` (`ip addr replace`: idempotent, so a
/// restarted daemon can plug the same address again).
fn add_ipv4_addr_request(seq: u32, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> Vec<u8> {
    let flags = REQUEST_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut m = MessageBuilder::new(RTM_NEWADDR, flags, seq)
        .push_header(&ifaddrmsg(prefix_len, ifindex))
        .push_attr(IFA_LOCAL, &addr.octets())
        .push_attr(IFA_ADDRESS, &addr.octets());
    if let Some(brd) = broadcast(addr, prefix_len) {
        m = m.push_attr(IFA_BROADCAST, &brd.octets());
    }
    m.finish()
}

/// `RTM_GETLINK` by name (`IFLA_IFNAME`, NUL-terminated).
fn get_link_request(seq: u32, name: &str) -> Vec<u8> {
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    MessageBuilder::new(RTM_GETLINK, REQUEST_ACK, seq)
        .push_header(&ifinfomsg(0, 0, 0))
        .push_attr(IFLA_IFNAME, &ifname)
        .finish()
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink answer: {what}"),
    )
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads one received datagram for the answer to request `seq`. Returns `Ok(true)` once the ACK
/// is seen, `Ok(false)` if more is to come, the kernel's errno if it refused the request.
/// An `RTM_NEWLINK` for `seq` stores its `ifi_index` in `link_index`.
fn scan_answer(mut datagram: &[u8], seq: u32, link_index: &mut Option<u32>) -> io::Result<bool> {
    while !datagram.is_empty() {
        if datagram.len() < NLMSG_HDRLEN {
            return Err(malformed("truncated header"));
        }
        let len = u32_at(datagram, 0) as usize;
        if len < NLMSG_HDRLEN || len > datagram.len() {
            return Err(malformed("bad nlmsg_len"));
        }
        let (ty, msg_seq) = (u16_at(datagram, 4), u32_at(datagram, 8));
        let payload = &datagram[NLMSG_HDRLEN..len];
        datagram = &datagram[align4(len).min(datagram.len())..];
        if msg_seq != seq {
            continue;
        }
        match ty {
            NLMSG_ERROR => {
                if payload.len() < NLMSGERR_LEN {
                    return Err(malformed("short nlmsgerr"));
                }
                let error = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                return match error {
                    0 => Ok(true),
                    e => Err(io::Error::from_raw_os_error(e.saturating_neg())),
                };
            }
            RTM_NEWLINK => {
                if payload.len() < IFINFOMSG_LEN {
                    return Err(malformed("short ifinfomsg"));
                }
                *link_index = Some(u32_at(payload, 4));
            }
            _ => {}
        }
    }
    Ok(false)
}

/// A `NETLINK_ROUTE` socket and the next sequence number. Requests act on the network namespace
/// the socket was created in.
#[derive(Debug)]
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// In the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Netlink> {
        Ok(Netlink {
            fd: sys::netlink_route_socket()?,
            seq: 0,
        })
    }

    /// In the network namespace `nsfd` refers to; the caller's thread does not move.
    pub(crate) fn open_in(nsfd: BorrowedFd<'_>) -> io::Result<Netlink> {
        Ok(Netlink {
            fd: sys::netlink_route_socket_in(nsfd)?,
            seq: 0,
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `msg` (built with sequence number `seq`) and waits for its ACK. Returns the link
    /// index an `RTM_NEWLINK` answer carried, if any.
    fn request(&mut self, seq: u32, msg: &[u8]) -> io::Result<Option<u32>> {
        let sent = sys::send(self.fd.as_fd(), msg)?;
        if sent != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        let mut buf = vec![0u8; RECV_BUF_LEN];
        let mut link_index = None;
        loop {
            let n = match sys::recv(self.fd.as_fd(), &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let what = "no answer from the kernel to a netlink request";
                    return Err(io::Error::new(io::ErrorKind::TimedOut, what));
                }
                Err(e) => return Err(e),
            };
            if scan_answer(&buf[..n], seq, &mut link_index)? {
                return Ok(link_index);
            }
        }
    }

    /// Sets the MTU, the MAC address and/or the administrative state (`IFF_UP`) of a link.
    pub(crate) fn set_link(
        &mut self,
        ifindex: u32,
        mtu: Option<u32>,
        mac: Option<MacAddr>,
        up: Option<bool>,
    ) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(seq, &set_link_request(seq, ifindex, mtu, mac, up))
            .map(drop)
    }

    /// Sets a link's `txqueuelen`.
    pub(crate) fn set_tx_queue_len(&mut self, ifindex: u32, len: u32) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(seq, &tx_queue_len_request(seq, ifindex, len))
            .map(drop)
    }

    /// Moves a link into the network namespace `nsfd`. It keeps its name; its index may change.
    pub(crate) fn move_link_to_netns(
        &mut self,
        ifindex: u32,
        nsfd: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let seq = self.next_seq();
        let fd = u32::try_from(nsfd.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        self.request(seq, &move_link_request(seq, ifindex, fd))
            .map(drop)
    }

    /// Adds (or replaces) `addr/prefix_len` on a link, with the broadcast address for /30 and
    /// shorter prefixes.
    pub(crate) fn add_ipv4_addr(
        &mut self,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> io::Result<()> {
        if prefix_len > 32 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let seq = self.next_seq();
        self.request(seq, &add_ipv4_addr_request(seq, ifindex, addr, prefix_len))
            .map(drop)
    }

    /// Turns IPv6 address generation off on a link (`addrgenmode none`).
    pub(crate) fn set_addr_gen_mode_none(&mut self, ifindex: u32) -> io::Result<()> {
        let seq = self.next_seq();
        self.request(seq, &addr_gen_mode_none_request(seq, ifindex))
            .map(drop)
    }

    /// The index of link `name` in this socket's namespace (`ENODEV` if there is none).
    pub(crate) fn link_index(&mut self, name: &str) -> io::Result<u32> {
        if name.is_empty() || name.len() >= sys::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let seq = self.next_seq();
        self.request(seq, &get_link_request(seq, name))?
            .ok_or_else(|| malformed("RTM_GETLINK answered without a link"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ty: u16, flags: u16, seq: u32, len: usize) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&(len as u32).to_ne_bytes());
        h.extend_from_slice(&ty.to_ne_bytes());
        h.extend_from_slice(&flags.to_ne_bytes());
        h.extend_from_slice(&seq.to_ne_bytes());
        h.extend_from_slice(&0u32.to_ne_bytes());
        h
    }

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()), 0);
        a
    }

    #[test]
    fn constants_match_libc() {
        assert_eq!(RTM_NEWLINK, libc::RTM_NEWLINK);
        assert_eq!(RTM_GETLINK, libc::RTM_GETLINK);
        assert_eq!(RTM_SETLINK, libc::RTM_SETLINK);
        assert_eq!(RTM_NEWADDR, libc::RTM_NEWADDR);
        assert_eq!(IFLA_NET_NS_FD, libc::IFLA_NET_NS_FD);
        assert_eq!(IFLA_MTU, libc::IFLA_MTU);
        assert_eq!(IFLA_TXQLEN, libc::IFLA_TXQLEN);
        assert_eq!(IFLA_ADDRESS, libc::IFLA_ADDRESS);
        assert_eq!(IFLA_IFNAME, libc::IFLA_IFNAME);
        assert_eq!(IFA_LOCAL, libc::IFA_LOCAL);
        assert_eq!(IFA_ADDRESS, libc::IFA_ADDRESS);
        assert_eq!(IFA_BROADCAST, libc::IFA_BROADCAST);
        assert_eq!(i32::from(NLMSG_ERROR), libc::NLMSG_ERROR);
        assert_eq!(i32::from(NLM_F_CREATE), libc::NLM_F_CREATE);
        assert_eq!(i32::from(NLM_F_REPLACE), libc::NLM_F_REPLACE);
        assert_eq!(IFF_UP, libc::IFF_UP as u32);
        assert_eq!(i32::from(AF_INET), libc::AF_INET);
    }

    #[test]
    fn set_link_with_everything() {
        let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let msg = set_link_request(7, 42, Some(1400), Some(mac), Some(true));
        // header 16 + ifinfomsg 16 + MTU 8 + MAC (4 + 6, padded to 12) = 52
        let mut want = header(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 7, 52);
        want.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        want.extend_from_slice(&42u32.to_ne_bytes());
        want.extend_from_slice(&IFF_UP.to_ne_bytes());
        want.extend_from_slice(&IFF_UP.to_ne_bytes());
        want.extend(attr(IFLA_MTU, &1400u32.to_ne_bytes()));
        want.extend(attr(IFLA_ADDRESS, &mac.octets()));
        assert_eq!(msg, want);
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(&msg[50..52], &[0, 0], "MAC attribute padded with zeros");
    }

    #[test]
    fn tx_queue_len_is_one_attribute() {
        let msg = tx_queue_len_request(3, 9, 4096);
        let mut want = header(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 3, 40);
        want.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        want.extend_from_slice(&9u32.to_ne_bytes());
        want.extend_from_slice(&[0u8; 8]);
        want.extend(attr(IFLA_TXQLEN, &4096u32.to_ne_bytes()));
        assert_eq!(msg, want);
    }

    #[test]
    fn set_link_down_and_untouched() {
        let down = set_link_request(1, 3, None, None, Some(false));
        assert_eq!(down.len(), 32);
        assert_eq!(u32_at(&down, 24), 0, "flags");
        assert_eq!(u32_at(&down, 28), IFF_UP, "change");
        let none = set_link_request(1, 3, None, None, None);
        assert_eq!((u32_at(&none, 24), u32_at(&none, 28)), (0, 0));
    }

    #[test]
    fn addr_gen_mode_none_nests_inet6_in_af_spec() {
        let m = addr_gen_mode_none_request(9, 4);
        let mut want = header(RTM_SETLINK, REQUEST_ACK, 9, 16 + 16 + 16);
        want.extend_from_slice(&ifinfomsg(4, 0, 0));
        want.extend_from_slice(&16u16.to_ne_bytes());
        want.extend_from_slice(&IFLA_AF_SPEC.to_ne_bytes());
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&AF_INET6.to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&IFLA_INET6_ADDR_GEN_MODE.to_ne_bytes());
        want.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(m, want);
    }

    #[test]
    fn move_link_carries_the_fd() {
        let msg = move_link_request(9, 5, 11);
        let mut want = header(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 9, 40);
        want.extend_from_slice(&ifinfomsg(5, 0, 0));
        want.extend(attr(IFLA_NET_NS_FD, &11u32.to_ne_bytes()));
        assert_eq!(msg, want);
    }

    #[test]
    fn add_address_with_broadcast() {
        let msg = add_ipv4_addr_request(3, 8, Ipv4Addr::new(10, 0, 3, 2), 24);
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        let mut want = header(RTM_NEWADDR, flags, 3, 48);
        want.extend_from_slice(&[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        want.extend_from_slice(&8u32.to_ne_bytes());
        want.extend(attr(IFA_LOCAL, &[10, 0, 3, 2]));
        want.extend(attr(IFA_ADDRESS, &[10, 0, 3, 2]));
        want.extend(attr(IFA_BROADCAST, &[10, 0, 3, 255]));
        assert_eq!(msg, want);
    }

    #[test]
    fn broadcast_follows_iproute2() {
        let a = Ipv4Addr::new(192, 168, 7, 9);
        assert_eq!(broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(a, 16), Some(Ipv4Addr::new(192, 168, 255, 255)));
        assert_eq!(broadcast(a, 30), Some(Ipv4Addr::new(192, 168, 7, 11)));
        assert_eq!(broadcast(a, 31), None);
        assert_eq!(broadcast(a, 32), None);
        assert_eq!(add_ipv4_addr_request(1, 1, a, 32).len(), 16 + 8 + 8 + 8);
    }

    #[test]
    fn get_link_name_is_nul_terminated_and_padded() {
        let msg = get_link_request(4, "sy-vm1");
        // "sy-vm1\0" is 7 bytes: attribute length 11, padded to 12.
        assert_eq!(msg.len(), 16 + 16 + 12);
        assert_eq!(u16_at(&msg, 32), 11);
        assert_eq!(u16_at(&msg, 34), IFLA_IFNAME);
        assert_eq!(&msg[36..44], b"sy-vm1\0\0");
    }

    fn answer(error: i32, seq: u32) -> Vec<u8> {
        let mut m = header(NLMSG_ERROR, 0, seq, NLMSG_HDRLEN + NLMSGERR_LEN);
        m.extend_from_slice(&error.to_ne_bytes());
        m.extend(header(RTM_SETLINK, REQUEST_ACK, seq, 32));
        m
    }

    #[test]
    fn ack_and_error() {
        let mut idx = None;
        assert!(scan_answer(&answer(0, 5), 5, &mut idx).unwrap());
        let err = scan_answer(&answer(-libc::EPERM, 5), 5, &mut idx).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        // Another request's answer is skipped.
        assert!(!scan_answer(&answer(-libc::EPERM, 4), 5, &mut idx).unwrap());
    }

    #[test]
    fn link_answer_then_ack_in_one_datagram() {
        let mut d = header(RTM_NEWLINK, 0, 6, 16 + 16 + 8);
        d.extend_from_slice(&ifinfomsg(17, 0, 0));
        d.extend(attr(IFLA_IFNAME, b"lo\0"));
        d.extend(answer(0, 6));
        let mut idx = None;
        assert!(scan_answer(&d, 6, &mut idx).unwrap());
        assert_eq!(idx, Some(17));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let mut idx = None;
        let full = answer(0, 1);
        for cut in [3, 15, 20, full.len() - 1] {
            let e = scan_answer(&full[..cut], 1, &mut idx).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
        let mut bad_len = full.clone();
        bad_len[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(scan_answer(&bad_len, 1, &mut idx).is_err());
        let mut short_err = header(NLMSG_ERROR, 0, 1, 20);
        short_err.extend_from_slice(&0i32.to_ne_bytes());
        assert!(scan_answer(&short_err, 1, &mut idx).is_err());
    }
}
