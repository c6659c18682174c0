//! Port I/O: the only code besides the daemon that touches file descriptors.
//!
//! # Theory of operation
//!
//! - [`tap::TapPort`] opens (or creates) a tap with a virtio-net header and hands out its fd;
//!   [`tap::TapPort::plug_into`] moves the tap's netdev into a [`netns::Netns`] and configures it
//!   there, which turns a namespace into a lab "host" on the switch.
//! - [`netns::Netns`] opens or creates a named network namespace (`/run/netns/NAME`, the same
//!   place `ip netns` uses) and deletes it on drop if it created it.
//! - `netlink` (private) speaks just enough rtnetlink to set a link's MTU, MAC and state, move it
//!   between namespaces and give it an IPv4 address, in safe code.
//! - [`packet::PacketPort`] attaches to a netdev someone else owns (a VM's tap, a veth, an
//!   uplink) with an `AF_PACKET` socket; [`socket::StreamPort`] and [`socket::DgramPort`] serve
//!   QEMU's `-netdev stream` and `-netdev dgram` on a unix socket. [`PortIo`] is the seam every
//!   kind implements and [`Port`] (a boxed one) the one type the daemon holds, whatever the kind; [`link::LinkState`] is how a port whose other end comes and
//!   goes tells the daemon.
//! - [`vxlan::VxlanPort`] is a VXLAN tunnel endpoint (RFC 7348): frames in UDP to remote VTEPs,
//!   interoperable with the Linux `vxlan` device.
//! - `sys` (private, except the daemon's event-loop pieces re-exported here: [`Epoll`],
//!   [`Events`], [`block_signals`], [`wait_signal`], [`set_thread_nice`]) is the one file of the crate that allows `unsafe_code`.
//!
//! The process never changes network namespace: work inside another namespace goes through a
//! netlink socket created there by a short-lived helper thread.
//!
//! Ownership rule: what a port creates, it removes when dropped; what it found, it leaves as it
//! found it (a pre-existing persistent tap is not deleted and is moved back home).

use std::os::fd::BorrowedFd;
use std::{fmt, io};

use crate::wire::MacAddr;

pub mod link;
pub mod netns;
pub mod packet;
pub mod socket;
pub mod tap;
pub mod vhost_user;
pub mod vxlan;

mod netlink;
pub(crate) mod sys;

#[cfg(test)]
mod io_tests;

pub use netns::Netns;
pub use sys::{
    allow_nice, block_signals, cap_ambient_clear, cap_bound_drop, cap_get, cap_last_cap, cap_set,
    fill_random, memfd, peer_cred, set_thread_nice, wait_readable, wait_signal, CapSets, Epoll,
    EpollEvent, Events, PeerCred,
};
pub use tap::TapPort;

/// One port of the switch, whatever its kind: the seam a port kind plugs into.
///
/// Every kind reads and writes the same bytes: a 12-byte virtio-net header, then the Ethernet
/// frame. Receiving never blocks (`WouldBlock` when nothing is waiting); sending never blocks
/// either. Teardown is `Drop`: what a port created it removes, what it found it leaves.
///
/// A kind is one file under `port/` (the struct, its constructor from its config section, and
/// this impl) plus its `[[port]]` keys in `control/config/kinds.rs`; `daemon/build.rs` calls its
/// constructor, and nothing else in the daemon knows the kind. A port may expose several fds
/// (`fds`): a vhost-user port its unix socket and one kick eventfd per queue, a multi-queue tap
/// one queue fd per worker. Epoll reports which one woke, as the [`RxQueue`] passed to `recv`.
pub trait PortIo: fmt::Debug + Send + Sync {
    /// The fds a worker's epoll watches for input, the same for the port's whole life. The
    /// index of an fd in this list is the [`RxQueue`] a wake-up on it reads from.
    fn fds(&self) -> Vec<BorrowedFd<'_>>;

    /// Reads one header + frame into `buf` from queue `rxq`; `WouldBlock` when none is waiting.
    /// [`RxQueue::ANY`] (a read no wake-up asked for: a worker collecting replies) lets the
    /// port choose. A kind with frames in memory of its own (vhost-user's guest memory) copies
    /// one into `buf` here; a kind with control messages on one of its fds handles them here
    /// and returns `WouldBlock` when they carried no frame.
    fn recv(&self, rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes one header + frame. `WouldBlock`: no room now (the frame is not sent);
    /// `Unsupported`: the frame needs an offload (GSO, checksum) this port cannot take;
    /// `NotConnected`: the peer is gone.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;

    /// Whether the port takes GSO super-frames and partial checksums as they are (the kernel
    /// finishes them: taps that accepted TUNSETOFFLOAD, and packet sockets with
    /// PACKET_VNET_HDR); a port that does not gets complete, MTU-sized frames.
    fn offloads(&self) -> bool;

    /// The port's link state: whether its other end is there, and what happened to it. `None`
    /// (the default) for a port whose other end cannot vanish, such as a tap the switch holds.
    fn link(&self) -> Option<&link::LinkState> {
        None
    }

    /// Once a tick, from the daemon's main thread: a packet port looks for its netdev, a
    /// stream port listens again after a failed `accept`. The default does nothing.
    fn tick(&self) {}

    /// Frames the kernel dropped on the port's side before the switch read them (a tap's
    /// netdev `tx_dropped`), for the log at exit; `None` (the default) if the kind cannot tell.
    fn kernel_tx_dropped(&self) -> Option<io::Result<u64>> {
        None
    }

    /// How many of the first [`fds`](Self::fds) are queues that different workers may read at
    /// the same time (a multi-queue tap's queue fds, a packet port's fanout sockets): the
    /// daemon spreads fd `i < queues()` over the workers and gives each its own reader lock.
    /// 1 (the default): every fd of the port is read by one worker at a time.
    fn queues(&self) -> usize {
        1
    }

    /// Writes one header + frame through queue `queue` (`< queues()`), as [`send`](Self::send)
    /// does: each worker writes through its own queue, so no two workers write one fd, and a
    /// tap steers the flow's replies back to that queue. The default ignores the queue.
    fn send_on(&self, queue: usize, buf: &[u8]) -> io::Result<usize> {
        let _ = queue;
        self.send(buf)
    }

    /// Reads up to `bufs.len()` frames from queue `rxq`, frame `i` into `bufs[i]` with its
    /// length in `lens[i]`; returns how many (at least 1) or `recv`'s error. The default reads
    /// one with [`recv`](Self::recv); a packet port reads a batch in one `recvmmsg`.
    fn recv_batch(
        &self,
        rxq: RxQueue,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
    ) -> io::Result<usize> {
        let (Some(buf), Some(len)) = (bufs.first_mut(), lens.first_mut()) else {
            return Ok(0);
        };
        *len = self.recv(rxq, buf)?;
        Ok(1)
    }

    /// The most frames one [`recv_batch`](Self::recv_batch) returns; 1 (the default) means the
    /// daemon reads with `recv`, one frame ahead.
    fn rx_batch(&self) -> usize {
        1
    }
}

/// The most queues a multi-queue port opens (`[switch] multi_queue`: one per worker, at most
/// this many); it sizes the daemon's per-queue reader locks.
pub const MAX_QUEUES: usize = 16;

/// One port of the switch, whatever its kind: what the daemon's port table holds.
pub type Port = Box<dyn PortIo>;

/// Which of a port's fds ([`PortIo::fds`]) a read is for: its index in that list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxQueue(pub u16);

impl RxQueue {
    /// A read no wake-up asked for: the port reads whichever queue it likes.
    pub const ANY: RxQueue = RxQueue(u16::MAX);

    /// The epoll token of fd `self` of the port in slot `slot`.
    pub fn token(self, slot: u16) -> u64 {
        u64::from(slot) | (u64::from(self.0) << 16)
    }

    /// The slot and queue an epoll token of [`RxQueue::token`] names.
    pub fn from_token(token: u64) -> (u16, RxQueue) {
        (token as u16, RxQueue((token >> 16) as u16))
    }
}

/// Adds every fd of `port` (in slot `slot`) to `epoll`; on failure, none stays added.
pub fn watch(epoll: &Epoll, port: &dyn PortIo, slot: u16) -> io::Result<()> {
    let fds = port.fds();
    for (i, fd) in fds.iter().enumerate() {
        if let Err(e) = epoll.add(*fd, RxQueue(i as u16).token(slot)) {
            for fd in &fds[..i] {
                let _ = epoll.delete(*fd);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Removes every fd of `port` from `epoll` (errors ignored: an fd not there is fine).
pub fn unwatch(epoll: &Epoll, port: &dyn PortIo) {
    for fd in port.fds() {
        let _ = epoll.delete(fd);
    }
}

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const IFNAME_MAX_LEN: usize = sys::IFNAMSIZ - 1;

/// Longest namespace name we accept (iproute2 has no hard limit; 64 keeps paths and logs sane).
pub const NETNS_NAME_MAX_LEN: usize = 64;

/// Why a port could not be opened, created or configured. Every message names the tap or
/// namespace, says what failed and, where it can, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("tap name '{name}' {reason}")]
    InvalidTapName { name: String, reason: String },

    #[error("netns name '{name}' {reason}")]
    InvalidNetnsName { name: String, reason: String },

    #[error(
        "tap '{ifname}': MTU {mtu} is out of range (a tap takes {}..={})",
        tap::MIN_MTU,
        tap::MAX_MTU
    )]
    InvalidMtu { ifname: String, mtu: u32 },

    #[error(
        "tap '{ifname}': MAC {mac} is multicast or all-zero; a NIC needs a unicast address \
         (first byte even, e.g. 52:54:00:..)"
    )]
    InvalidMac { ifname: String, mac: MacAddr },

    #[error("tap '{ifname}': cannot open /dev/net/tun: {}{}", errno_text(.err), tun_hint(.err))]
    TunDevice { ifname: String, err: io::Error },

    #[error(
        "tap '{ifname}' is held by another process (a VM, or another switchyard); \
         stop that process or pick another name"
    )]
    TapBusy { ifname: String },

    #[error(
        "'{ifname}' already exists and is not a single-queue tap device; \
         pick another name or delete it (ip link del {ifname})"
    )]
    NotATap { ifname: String },

    #[error("tap '{ifname}': cannot {action}: {}{}", errno_text(.err), hint(.err))]
    Tap {
        ifname: String,
        action: String,
        err: io::Error,
    },

    #[error(
        "tap '{ifname}': netns '{netns}' already has a device named '{ifname}'; \
         delete that one or pick another tap name"
    )]
    NameTaken { ifname: String, netns: String },

    #[error("tap '{ifname}' in netns '{netns}': cannot {action}: {}{}", errno_text(.err), hint(.err))]
    Plug {
        ifname: String,
        netns: String,
        action: String,
        err: io::Error,
    },

    #[error("netns '{name}': cannot {action}: {}{}", errno_text(.err), netns_hint(.err))]
    Netns {
        name: String,
        action: String,
        err: io::Error,
    },

    #[error("packet port on '{ifname}': cannot {action}: {}{}", errno_text(.err), hint(.err))]
    Packet {
        ifname: String,
        action: String,
        err: io::Error,
    },

    #[error("socket {}: cannot {action}: {}{}", .path.display(), errno_text(.err), hint(.err))]
    Socket {
        path: std::path::PathBuf,
        action: String,
        err: io::Error,
    },

    #[error("vxlan port on {local}: cannot {action}: {}{}", errno_text(.err), vxlan_hint(.err))]
    Vxlan {
        local: std::net::SocketAddr,
        action: String,
        err: io::Error,
    },

    #[error(
        "netns '{name}': {path} exists but is not a network namespace (left over from an \
         interrupted `ip netns add`?); remove it with `ip netns del {name}`"
    )]
    NotANetns { name: String, path: String },
}

impl PortError {
    /// The kernel's errno behind this error, if there is one.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            PortError::TunDevice { err, .. }
            | PortError::Tap { err, .. }
            | PortError::Plug { err, .. }
            | PortError::Netns { err, .. }
            | PortError::Packet { err, .. }
            | PortError::Socket { err, .. }
            | PortError::Vxlan { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

/// The error's text without std's " (os error N)" suffix: the message already says what failed.
fn errno_text(err: &io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(n) => text
            .strip_suffix(&format!(" (os error {n})"))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    }
}

/// What to do about the errors a user can fix.
fn hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => " (run as root or with CAP_NET_ADMIN)",
        Some(libc::ENODEV) => " (the device is gone: was it deleted, or moved to another netns?)",
        _ => "",
    }
}

/// Namespaces are created, mounted and entered with CAP_SYS_ADMIN besides CAP_NET_ADMIN.
fn netns_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            " (run as root, or with CAP_SYS_ADMIN and CAP_NET_ADMIN: a systemd unit's \
             CapabilityBoundingSet= needs both; see `switchyard capabilities FILE`)"
        }
        _ => hint(err),
    }
}

fn vxlan_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            " (another socket holds that UDP port: a kernel vxlan device with the same dstport, \
             or another vxlan port; pick another local address or port)"
        }
        Some(libc::EADDRNOTAVAIL) => {
            " (no interface in the daemon's namespace has that address: give the underlay \
             interface the address first, or use 0.0.0.0)"
        }
        _ => hint(err),
    }
}

fn tun_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => " (load the tun module: modprobe tun)",
        _ => hint(err),
    }
}

/// Checks a tap name the way the kernel's `dev_valid_name` does, and refuses `%` (a name with
/// `%d` would be a template, and the switch needs to know the exact name it gets).
pub fn validate_ifname(name: &str) -> Result<(), PortError> {
    let reason = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > IFNAME_MAX_LEN {
        Some(format!("is longer than {IFNAME_MAX_LEN} bytes"))
    } else if name == "." || name == ".." {
        Some("is reserved".to_string())
    } else {
        name.chars()
            .find(|&c| c == '/' || c == ':' || c == '%' || c == '\0' || c.is_whitespace())
            .map(|c| format!("contains {c:?}, which interface names cannot"))
    };
    match reason {
        Some(reason) => Err(PortError::InvalidTapName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a namespace name: one non-empty path component of at most 64 bytes.
pub fn validate_netns_name(name: &str) -> Result<(), PortError> {
    let reason = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > NETNS_NAME_MAX_LEN {
        Some(format!("is longer than {NETNS_NAME_MAX_LEN} bytes"))
    } else if name == "." || name == ".." {
        Some("is reserved".to_string())
    } else {
        name.chars()
            .find(|&c| c == '/' || c == '\0' || c.is_whitespace() || c.is_control())
            .map(|c| format!("contains {c:?}, which namespace names cannot"))
    };
    match reason {
        Some(reason) => Err(PortError::InvalidNetnsName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames() {
        for ok in ["sy-vm1", "tap0", "a", "0123456789abcde", "sy_lab.1"] {
            validate_ifname(ok).unwrap();
        }
        let long = validate_ifname("xxxxxxxxxxxxxxxxxx").unwrap_err();
        assert_eq!(
            long.to_string(),
            "tap name 'xxxxxxxxxxxxxxxxxx' is longer than 15 bytes"
        );
        for bad in ["", ".", "..", "a/b", "a:1", "tap%d", "a b", "a\tb", "a\0"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn netns_names() {
        for ok in ["lab1", "sy-t-123-4", &"n".repeat(64)] {
            validate_netns_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\nb", &"n".repeat(65)] {
            assert!(validate_netns_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = PortError::TunDevice {
            ifname: "sy-vm1".into(),
            err: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "tap 'sy-vm1': cannot open /dev/net/tun: No such file or directory \
             (load the tun module: modprobe tun)"
        );
        assert_eq!(e.os_error(), Some(libc::ENOENT));
        let e = PortError::Netns {
            name: "lab".into(),
            action: "create it".into(),
            err: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            e.to_string(),
            "netns 'lab': cannot create it: Operation not permitted (run as root, or with \
             CAP_SYS_ADMIN and CAP_NET_ADMIN: a systemd unit's CapabilityBoundingSet= needs both; \
             see `switchyard capabilities FILE`)"
        );
        let e = PortError::Tap {
            ifname: "t".into(),
            action: "x".into(),
            err: io::Error::other("plain"),
        };
        assert_eq!(e.to_string(), "tap 't': cannot x: plain");
    }
}
