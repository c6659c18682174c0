//! Packet ports: the switch attaches to a netdev someone else owns (a VM's tap held by QEMU, a
//! veth, a physical uplink) with an `AF_PACKET` socket.
//!
//! # Theory of operation
//!
//! [`PacketPort::open`] makes one non-blocking `AF_PACKET`/`SOCK_RAW` socket in the namespace the
//! netdev lives in (a helper thread enters it; the daemon never moves), with
//! - `PACKET_VNET_HDR`: every frame comes with a 10-byte `virtio_net_hdr`, so GSO super-frames and
//!   frames whose checksum is still partial (`CHECKSUM_PARTIAL`: a veth's TCP, before the NIC
//!   would fill it in) are marked as such instead of arriving silently broken. The port converts
//!   it to and from the switch's 12-byte header (`num_buffers` = 0) in place: the kernel reads
//!   into `buf[2..]`, then the 10 header bytes move 2 to the left; sending hands the kernel the
//!   first 10 header bytes and the frame as two iovecs. The frame itself is never copied.
//! - `PACKET_IGNORE_OUTGOING`: what the switch sends is never read back;
//! - `PACKET_QDISC_BYPASS`: frames go straight to the driver, as a tap write would.
//!
//! Attaching to the netdev (at open and again after it disappeared) turns IPv6 address generation
//! off on it (`addrgenmode none`: the host must not talk on the switch's wire), brings it up,
//! binds the socket to its ifindex for every protocol, and makes it promiscuous for as long as
//! the socket is bound (a packet membership: the kernel undoes it when the socket closes).
//!
//! # Link life
//!
//! A netdev can vanish under the port (the VM shut down, the veth was deleted). The kernel then
//! reports `ENETDOWN` on the socket once: [`PacketPort::recv`] turns that into "link down" and
//! `WouldBlock`, and the worker carries on. [`PacketPort::tick`], called by the daemon once a
//! tick, looks the name up (one netlink request in the netdev's namespace): a netdev of that name
//! that is there while the port is down, or under a new ifindex, is attached again by re-binding
//! the same socket, so the fd the workers poll never changes. A netdev that is missing at start
//! is not an error: the port starts down and attaches when it appears (a VM not started yet).
//!
//! # Multi-queue (`[switch] multi_queue`)
//!
//! [`PacketPort::open_queues`] with several queues makes one socket per worker in a
//! `PACKET_FANOUT` group (`PACKET_FANOUT_HASH` with defragmentation; the group id picked by the
//! kernel, `PACKET_FANOUT_FLAG_UNIQUEID`): the kernel hands each flow to one socket by its
//! symmetric hash, so a flow stays with one worker, in order, and the port's flows spread over
//! the workers. Each worker also sends through its own socket. A socket in a fanout group can
//! never be bound again, so the port's fds are one epoll set per queue over its current socket
//! (an epoll fd is readable while a socket in it is): when the netdev comes back the port
//! makes a new group and swaps the sockets under the same fds. Each socket holds its own
//! promiscuous membership (`promiscuity` counts them).
//!
//! # Limits
//!
//! Frames are read in `recvmmsg` batches of up to 16 ([`PortIo::recv_batch`]) and sent one
//! `sendmsg` each: no `TPACKET_V3` ring. A V3 ring saves the receive syscalls, but it wakes the
//! reader only when a block is full or its retire timer (at least a millisecond) fires, so a
//! lone frame (a ping, a DHCP exchange) would wait that long; a V2 ring wakes per frame. It was
//! not tried (issue 24 left it for later). The netdev's MTU is left as its owner set it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};

use super::link::LinkState;
use super::netlink::Netlink;
use super::{sys, validate_ifname, Epoll, Netns, PortError, PortIo, RxQueue};
use crate::control::config::{PacketConfig, PortConfig};
use crate::wire::{vlan, VLAN_TAG_LEN, VNET_HDR_LEN};

/// The kernel's `struct virtio_net_hdr` on a packet socket: ours without `num_buffers`.
const PACKET_VNET_HDR_LEN: usize = 10;
/// Bytes the frame sits to the right of where a packet socket would put it.
const SHIFT: usize = VNET_HDR_LEN - PACKET_VNET_HDR_LEN;

/// The sockets of a multi-queue packet port: one per queue in a `PACKET_FANOUT` group (hash),
/// each behind an epoll fd of its own that the workers watch (the port's fds, stable for its
/// life). A socket in a fanout group can never be bound again, so when the netdev comes back
/// the port makes a new group and swaps every socket under the same epoll fds.
#[derive(Debug)]
struct Fanout {
    /// Queue `i`'s stable fd: an epoll set over its current socket (readable while it is).
    wakers: Vec<Epoll>,
    /// The current socket of each queue; empty before the first attach.
    socks: RwLock<Vec<OwnedFd>>,
    /// The namespace new sockets are made in (`None`: the daemon's).
    nsfd: Option<OwnedFd>,
}

/// An `AF_PACKET` socket attached to a netdev by name.
#[derive(Debug)]
pub struct PacketPort {
    ifname: String,
    /// The namespace the netdev lives in, if not the daemon's.
    netns: Option<String>,
    /// The socket of a single-queue port; unused (an unbound socket) with `fanout`.
    fd: OwnedFd,
    /// A multi-queue port's fanout group, one socket per queue (`[switch] multi_queue`).
    fanout: Option<Fanout>,
    /// The ifindex the socket is bound to; 0 before the first attach.
    ifindex: AtomicU32,
    /// Requests in the netdev's namespace; only the tick (and `open`) use it.
    netlink: Mutex<Netlink>,
    link: LinkState,
}

impl PacketPort {
    /// Opens a packet socket in `netns` (the daemon's namespace if `None`) and attaches it to
    /// the netdev `ifname` if it exists (otherwise the port starts down).
    pub fn open(ifname: &str, netns: Option<&Netns>) -> Result<PacketPort, PortError> {
        PacketPort::open_queues(ifname, netns, 1)
    }

    /// [`open`](Self::open) with `queues` queues: with more than one, a `PACKET_FANOUT` group of
    /// that many sockets (at most `MAX_QUEUES`), the kernel sending each flow to one of them.
    pub fn open_queues(
        ifname: &str,
        netns: Option<&Netns>,
        queues: usize,
    ) -> Result<PacketPort, PortError> {
        validate_ifname(ifname)?;
        let err = |action: &str, err: io::Error| PortError::Packet {
            ifname: ifname.to_string(),
            action: action.to_string(),
            err,
        };
        let nsfd = netns.map(|n| n.fd());
        let fd = sys::packet_socket(nsfd).map_err(|e| err("create an AF_PACKET socket", e))?;
        sys::packet_set_options(fd.as_fd()).map_err(|e| {
            err(
                "set PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING and PACKET_QDISC_BYPASS",
                e,
            )
        })?;
        sys::packet_set_auxdata(fd.as_fd()).map_err(|e| err("set PACKET_AUXDATA", e))?;
        let netlink = match nsfd {
            Some(ns) => Netlink::open_in(ns),
            None => Netlink::open(),
        }
        .map_err(|e| err("open a netlink socket", e))?;
        let queues = queues.clamp(1, super::MAX_QUEUES);
        let fanout = if queues > 1 {
            let wakers = (0..queues)
                .map(|_| Epoll::new())
                .collect::<io::Result<Vec<_>>>()
                .map_err(|e| err("create its queues' epoll sets", e))?;
            let nsfd = nsfd
                .map(|ns| ns.try_clone_to_owned())
                .transpose()
                .map_err(|e| err("keep its namespace open", e))?;
            Some(Fanout {
                wakers,
                socks: RwLock::new(Vec::new()),
                nsfd,
            })
        } else {
            None
        };
        let port = PacketPort {
            ifname: ifname.to_string(),
            netns: netns.map(|n| n.name().to_string()),
            fd,
            fanout,
            ifindex: AtomicU32::new(0),
            netlink: Mutex::new(netlink),
            link: LinkState::new(false),
        };
        match port.lookup() {
            Ok(Some(index)) => port.attach(index).map_err(|e| err("attach to it", e))?,
            Ok(None) => tracing::warn!(ifname, netns = ?port.netns,
                "packet port: no such netdev yet; the port stays down until it appears"),
            Err(e) => return Err(err("look it up", e)),
        }
        Ok(port)
    }

    /// The netdev's ifindex in its namespace, `None` if there is no netdev of that name.
    fn lookup(&self) -> io::Result<Option<u32>> {
        let mut nl = self.netlink.lock().unwrap_or_else(|p| p.into_inner());
        match nl.link_index(&self.ifname) {
            Ok(index) => Ok(Some(index)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Configures the netdev `index` (no IPv6 addresses, up), binds the socket to it, makes it
    /// promiscuous, and marks the link up.
    fn attach(&self, index: u32) -> io::Result<()> {
        {
            let mut nl = self.netlink.lock().unwrap_or_else(|p| p.into_inner());
            // Without IPv6 (disabled at boot) there is nothing to turn off: not fatal.
            if let Err(e) = nl.set_addr_gen_mode_none(index) {
                tracing::warn!(ifname = %self.ifname, error = %e,
                    "packet port: cannot turn IPv6 address generation off");
            }
            // Up before bind: binding to a down device reports ENETDOWN on the socket.
            nl.set_link(index, None, None, Some(true))?;
        }
        match &self.fanout {
            None => {
                sys::packet_bind(self.fd.as_fd(), index)?;
                sys::packet_add_promisc(self.fd.as_fd(), index)?;
            }
            Some(f) => f.attach(index)?,
        }
        self.ifindex.store(index, Relaxed);
        self.link.set_up(true);
        tracing::info!(ifname = %self.ifname, netns = ?self.netns, ifindex = index,
            "packet port attached");
        Ok(())
    }

    /// Once a tick: takes the port down if its netdev is gone, attaches it again if a netdev of
    /// that name is there while the port is down or has a new ifindex.
    pub fn tick(&self) {
        let found = match self.lookup() {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(ifname = %self.ifname, error = %e, "packet port: lookup failed");
                return;
            }
        };
        match found {
            None => {
                if self.link.is_up() {
                    tracing::warn!(ifname = %self.ifname, "packet port: netdev gone; port down");
                }
                self.link.set_up(false);
            }
            Some(index) if !self.link.is_up() || index != self.ifindex.load(Relaxed) => {
                if let Err(e) = self.attach(index) {
                    tracing::warn!(ifname = %self.ifname, error = %e,
                        "packet port: cannot attach; retrying next tick");
                    self.link.set_up(false);
                }
            }
            Some(_) => {}
        }
    }

    /// Reads one frame as the switch's 12-byte header + frame. A netdev that went down or away
    /// takes the link down and reads as `WouldBlock`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_on(0, buf)
    }

    /// `recv` from queue `q`'s socket.
    fn recv_on(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() < VNET_HDR_LEN {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // Room to put back a VLAN tag the kernel took off (it reports it in PACKET_AUXDATA).
        let room = buf.len().saturating_sub(VLAN_TAG_LEN).max(SHIFT);
        let mut tag = None;
        let read = self.with_socket(q, |fd| {
            sys::recv_packet(fd, &mut buf[SHIFT..room]).map(|(n, t)| {
                tag = t;
                n
            })
        });
        match self.link_checked(read) {
            Ok(n) if n < PACKET_VNET_HDR_LEN => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Ok(n) => {
                let len = to_switch_header(buf, n);
                Ok(with_tag(buf, len, tag))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads up to `bufs.len()` (at most 16) frames from queue `q`'s socket in one
    /// `recvmmsg`, each as the switch's header + frame.
    fn recv_many(&self, q: usize, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
        let mut tags = [None; sys::RECV_MANY_MAX];
        let read = self.with_socket(q, |fd| {
            sys::recv_many(fd, bufs, SHIFT, VLAN_TAG_LEN, lens, &mut tags)
        });
        let got = self.link_checked(read)?;
        // A runt (shorter than the kernel's header) cannot come from a packet socket with
        // PACKET_VNET_HDR; one that did would be dropped by the switch as malformed.
        for ((buf, len), tag) in bufs.iter_mut().zip(lens.iter_mut()).zip(tags).take(got) {
            *len = if *len < PACKET_VNET_HDR_LEN {
                0
            } else {
                let n = to_switch_header(buf, *len);
                with_tag(buf, n, tag)
            };
        }
        Ok(got)
    }

    /// A read's result, with a netdev that went down or away taking the link down and
    /// reading as `WouldBlock`.
    fn link_checked(&self, read: io::Result<usize>) -> io::Result<usize> {
        match read {
            Err(e) if is_link_gone(&e) => {
                if self.link.is_up() {
                    tracing::warn!(ifname = %self.ifname, error = %e, "packet port: link down");
                }
                self.link.set_up(false);
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            }
            r => r,
        }
    }

    /// Runs `f` on queue `q`'s socket (the only one of a single-queue port; queue 0's for a
    /// `q` out of range). A fanout port not attached yet has none: `WouldBlock`.
    fn with_socket<T>(
        &self,
        q: usize,
        f: impl FnOnce(BorrowedFd<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let Some(fanout) = &self.fanout else {
            return f(self.fd.as_fd());
        };
        let socks = fanout.socks.read().unwrap_or_else(|p| p.into_inner());
        match socks.get(q).or_else(|| socks.first()) {
            Some(fd) => f(fd.as_fd()),
            None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        }
    }

    /// Sends one 12-byte header + frame: the kernel gets the first 10 header bytes and the frame
    /// in one `sendmsg`.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_on(0, buf)
    }

    /// `send` through queue `q`'s socket.
    fn send_on(&self, q: usize, buf: &[u8]) -> io::Result<usize> {
        if buf.len() < VNET_HDR_LEN {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let parts = [&buf[..PACKET_VNET_HDR_LEN], &buf[VNET_HDR_LEN..]];
        self.with_socket(q, |fd| sys::send_parts(fd, &parts))
            .map(|n| n + SHIFT)
    }

    /// The socket (non-blocking), for epoll. The same fd for the port's whole life.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn link(&self) -> &LinkState {
        &self.link
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl PacketPort {
    /// Opens packet port `p` (`cfg` its section) on its netdev in `netns`.
    pub fn from_config(
        p: &PortConfig,
        cfg: &PacketConfig,
        netns: Option<&Netns>,
        queues: usize,
    ) -> Result<PacketPort, PortError> {
        let port = PacketPort::open_queues(&cfg.ifname, netns, queues)?;
        tracing::info!(port = %p.name, ifname = %cfg.ifname,
            netns = %cfg.netns.as_deref().unwrap_or("-"), queues = port.queues(), "port: packet");
        Ok(port)
    }
}

impl PortIo for PacketPort {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        match &self.fanout {
            None => vec![self.fd()],
            Some(f) => f.wakers.iter().map(AsFd::as_fd).collect(),
        }
    }

    fn recv(&self, rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_on(usize::from(rxq.0), buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        PacketPort::send(self, buf)
    }

    fn queues(&self) -> usize {
        self.fanout.as_ref().map_or(1, |f| f.wakers.len())
    }

    fn send_on(&self, queue: usize, buf: &[u8]) -> io::Result<usize> {
        PacketPort::send_on(self, queue, buf)
    }

    fn recv_batch(
        &self,
        rxq: RxQueue,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
    ) -> io::Result<usize> {
        self.recv_many(usize::from(rxq.0), bufs, lens)
    }

    fn rx_batch(&self) -> usize {
        sys::RECV_MANY_MAX
    }

    fn offloads(&self) -> bool {
        true
    }

    fn link(&self) -> Option<&LinkState> {
        Some(PacketPort::link(self))
    }

    fn tick(&self) {
        PacketPort::tick(self)
    }
}

/// Turns what a packet socket read into `buf[SHIFT..]` (`n` bytes: its 10-byte header, then
/// the frame) into the switch's 12-byte header + frame in place; returns the new length.
fn to_switch_header(buf: &mut [u8], n: usize) -> usize {
    buf.copy_within(SHIFT..VNET_HDR_LEN, 0);
    buf[PACKET_VNET_HDR_LEN..VNET_HDR_LEN].fill(0);
    n + SHIFT
}

/// Puts back into the frame of `buf[..len]` the VLAN tag the kernel took off it on receive
/// (reported by `PACKET_AUXDATA`); returns the new length.
fn with_tag(buf: &mut [u8], len: usize, tag: Option<(u16, u16)>) -> usize {
    match tag {
        Some((tpid, tci)) => vlan::insert_tag(buf, len, tpid, tci).unwrap_or(len),
        None => len,
    }
}

impl Fanout {
    /// Makes a new fanout group of one socket per queue on the netdev `index` (each bound,
    /// promiscuous, with the port's options) and puts it in place of the old one, under the
    /// same epoll fds. The old sockets close (and leave their group) when replaced.
    fn attach(&self, index: u32) -> io::Result<()> {
        let mut new = Vec::with_capacity(self.wakers.len());
        let mut id = None;
        for _ in &self.wakers {
            let fd = sys::packet_socket(self.nsfd.as_ref().map(AsFd::as_fd))?;
            sys::packet_set_options(fd.as_fd())?;
            sys::packet_set_auxdata(fd.as_fd())?;
            sys::packet_bind(fd.as_fd(), index)?;
            sys::packet_add_promisc(fd.as_fd(), index)?;
            match id {
                None => id = Some(sys::packet_fanout_new(fd.as_fd())?),
                Some(id) => sys::packet_fanout_join(fd.as_fd(), id)?,
            }
            new.push(fd);
        }
        let mut socks = self.socks.write().unwrap_or_else(|p| p.into_inner());
        for (waker, fd) in self.wakers.iter().zip(&new) {
            waker.add(fd.as_fd(), 0)?;
        }
        for (waker, old) in self.wakers.iter().zip(socks.iter()) {
            let _ = waker.delete(old.as_fd());
        }
        *socks = new;
        Ok(())
    }
}

/// The errors a packet socket reports when its device went down or away.
fn is_link_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}
