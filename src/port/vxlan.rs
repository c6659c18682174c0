//! The `vxlan` port: a VXLAN tunnel endpoint (RFC 7348) that joins this switch's segment to
//! other VTEPs over a UDP underlay: the Linux `vxlan` device, Open vSwitch, another switchyard.
//!
//! # Theory of operation
//!
//! To the switch the port is one port like any other: its FDB learns every MAC behind every
//! remote VTEP on this port, and floods reach it once. Which VTEP a frame goes to is the port's
//! own business, decided by a small table inside it ([`VtepTable`]: inner source MAC → the VTEP
//! it arrived from), the way the kernel's `vxlan` device keeps its own FDB under the bridge's.
//!
//! - Sockets. One UDP socket bound at `local` (default port 4789) in the daemon's namespace
//!   receives; [`SOURCE_PORTS`] more, bound at `local`'s address with ports the kernel picks,
//!   send. The inner flow's hash ([`flow_hash`]) picks the sending socket, so one flow always
//!   leaves from one source port and different flows spread over the underlay's ECMP paths
//!   (RFC 7348 §5; the kernel does the same over `ip_local_port_range`). IPv4 or IPv6: one
//!   family per port, the config checks it.
//! - Ingress ([`decap`]): a datagram from an address that is none of `remotes` is dropped
//!   (`unknown_vtep`: a static VTEP list is also the list of who may inject frames into the
//!   segment); one without the I flag, or too short for a VXLAN header and an Ethernet header,
//!   is `malformed`; another VNI is `wrong_vni`. The frame is read in place: the 8-byte VXLAN
//!   header lands where the 12-byte virtio-net header goes, and is overwritten with a zero one.
//!   The inner source MAC is learned against the VTEP (a unicast source only). A TCP or UDP
//!   segment whose checksum the far kernel left partial (a veth underlay) gets `F_NEEDS_CSUM`
//!   in its virtio-net header, so the egress completes it, and a partial TCP super-frame (the
//!   far kernel's GSO skb, which a veth hands the UDP socket unsegmented) gets a TCP GSO header
//!   at the port's MTU (`wire::vxlan::rx_offload`).
//! - Egress ([`VxlanPort::send`]): a frame to a MAC the table knows goes to that VTEP; any
//!   other (unknown unicast, broadcast, multicast) goes to every remote (head-end replication).
//!   The VXLAN header and the frame leave in one `sendmsg` with two iovecs: no copy.
//! - Offloads: the port takes GSO super-frames and partial checksums as they are, and makes
//!   them plain itself (`wire::gso`, at the port's MTU) into a per-thread buffer, each segment
//!   behind its VXLAN header; the datagrams leave in one UDP GSO `sendmsg` (`UDP_SEGMENT`) per
//!   64 KiB, so a 64 KiB TCP super-frame from a tap costs two system calls, not 45. Every
//!   datagram is a whole frame of at most MTU + 18 bytes; one that would be larger is refused
//!   and counted, never sent truncated.
//! - MTU: VXLAN adds 50 bytes on an IPv4 underlay, 70 on IPv6 (`wire::vxlan`). The port's
//!   `mtu` is the inner IP MTU; the underlay must carry `mtu + 50`, or the kernel fragments the
//!   outer datagram (the Linux device's default MTU is 1450 on a 1500 underlay for that reason).
//! - Ageing: the table's clock is the daemon's tick ([`PortIo::tick`]); an entry not refreshed
//!   for the switch's ageing time is forgotten (its frames flood again), and the table holds at
//!   most [`MAX_LEARNED`] MACs (when full, stale entries go first; then new MACs are not learned
//!   and their frames are replicated to every VTEP, which is slower but still delivered).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

use super::link::LinkState;
use super::{sys, PortError, PortIo, RxQueue};
use crate::control::config::{PortConfig, VxlanConfig};
use crate::wire::vxlan::{flow_hash, rx_offload, VxlanError, VxlanHeader, VXLAN_HEADER_LEN};
use crate::wire::{gso, MacAddr, ETHERNET_HEADER_LEN, VLAN_TAG_LEN, VNET_HDR_LEN};

/// Sending sockets, one source port each, that the inner flows are spread over.
pub const SOURCE_PORTS: usize = 16;
/// Most inner MACs the port remembers against their VTEP.
pub const MAX_LEARNED: usize = 4096;
/// Datagrams a UDP GSO `sendmsg` may carry (the kernel's `UDP_MAX_SEGMENTS` is 64 on older
/// kernels, 128 on newer ones).
const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes a UDP GSO `sendmsg` may carry: one IP datagram's worth, less the headers.
const GSO_MAX_BYTES: usize = 65_000;
/// Receive buffer asked for (the kernel's 208 KiB default loses bursts of a TCP window).
const RCVBUF: i32 = 4 << 20;

/// Where a learned MAC lives: an index into the port's remotes, and when it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Learned {
    vtep: u16,
    seen: u64,
}

/// Inner source MAC → remote VTEP, bounded and aged. Pure: `now` is a tick count the caller
/// passes; nothing here reads a clock or touches a socket.
#[derive(Debug)]
pub struct VtepTable {
    map: HashMap<MacAddr, Learned>,
    cap: usize,
    /// Ticks after which an entry not seen again is stale.
    ageing: u64,
}

impl VtepTable {
    pub fn new(cap: usize, ageing: u64) -> VtepTable {
        VtepTable {
            map: HashMap::new(),
            cap,
            ageing: ageing.max(1),
        }
    }

    fn is_fresh(&self, e: &Learned, now: u64) -> bool {
        now.saturating_sub(e.seen) < self.ageing
    }

    /// The VTEP `mac` was last seen behind, unless that has aged out.
    pub fn lookup(&self, mac: MacAddr, now: u64) -> Option<u16> {
        self.map
            .get(&mac)
            .filter(|e| self.is_fresh(e, now))
            .map(|e| e.vtep)
    }

    /// Whether `learn(mac, vtep, now)` would change anything worth a write lock: a new MAC, a
    /// move to another VTEP, or an entry that has not been refreshed for a tenth of the
    /// ageing time (so a busy flow takes the write lock a few times per ageing period, not per
    /// frame).
    pub fn needs_update(&self, mac: MacAddr, vtep: u16, now: u64) -> bool {
        match self.map.get(&mac) {
            Some(e) => e.vtep != vtep || now.saturating_sub(e.seen) >= (self.ageing / 10).max(1),
            None => true,
        }
    }

    /// Remembers that `mac` is behind `vtep`. When the table is full, stale entries are
    /// dropped first; if it is still full, a new MAC is not learned (`false`).
    pub fn learn(&mut self, mac: MacAddr, vtep: u16, now: u64) -> bool {
        if !self.map.contains_key(&mac) && self.map.len() >= self.cap {
            let ageing = self.ageing;
            self.map.retain(|_, e| now.saturating_sub(e.seen) < ageing);
            if self.map.len() >= self.cap {
                return false;
            }
        }
        self.map.insert(mac, Learned { vtep, seen: now });
        true
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Why a received datagram carries no frame for the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecapError {
    /// From an address that is none of the remotes.
    UnknownVtep,
    /// No I flag, or shorter than a VXLAN header plus an Ethernet header.
    Malformed,
    /// Another VNI.
    WrongVni(u32),
}

/// What a good VXLAN packet said: which remote sent it, and the inner frame's source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapped {
    pub vtep: u16,
    pub src: MacAddr,
}

/// Checks one UDP payload `datagram` from `from` against the port's `vni` and `remotes`
/// (matched by address: a VTEP sends from whatever source port its flow hash picks).
pub fn decap(
    datagram: &[u8],
    from: IpAddr,
    vni: u32,
    remotes: &[SocketAddr],
) -> Result<Decapped, DecapError> {
    let from = from.to_canonical();
    let vtep = remotes
        .iter()
        .position(|r| r.ip() == from)
        .ok_or(DecapError::UnknownVtep)?;
    let hdr = VxlanHeader::parse(datagram).map_err(|e| match e {
        VxlanError::Truncated | VxlanError::NoVni => DecapError::Malformed,
    })?;
    if hdr.vni != vni {
        return Err(DecapError::WrongVni(hdr.vni));
    }
    let inner = &datagram[VXLAN_HEADER_LEN..];
    if inner.len() < ETHERNET_HEADER_LEN {
        return Err(DecapError::Malformed);
    }
    Ok(Decapped {
        vtep: vtep as u16,
        src: MacAddr::from_bytes(&inner[6..12]),
    })
}

/// A VXLAN tunnel endpoint on the switch.
#[derive(Debug)]
pub struct VxlanPort {
    vni: u32,
    mtu: u32,
    local: SocketAddr,
    rx: UdpSocket,
    tx: Vec<UdpSocket>,
    remotes: Vec<SocketAddr>,
    table: RwLock<VtepTable>,
    /// Ticks since the port opened: the table's clock.
    now: AtomicU64,
    link: LinkState,
    /// UDP GSO works here (cleared the first time the kernel refuses it).
    udp_gso: AtomicBool,
}

impl VxlanPort {
    /// Binds vxlan port `p` (`cfg` its section); `ageing` is the switch's FDB ageing time and
    /// `tick` how often the daemon calls [`PortIo::tick`].
    pub fn from_config(
        p: &PortConfig,
        cfg: &VxlanConfig,
        ageing: Duration,
        tick: Duration,
    ) -> Result<VxlanPort, PortError> {
        let ticks = (ageing.as_millis() / tick.as_millis().max(1)) as u64;
        let port = VxlanPort::open(cfg.local, &cfg.remotes, cfg.vni, p.mtu, ticks)?;
        tracing::info!(port = %p.name, local = %port.local, vni = cfg.vni,
            remotes = ?cfg.remotes, "port: vxlan");
        Ok(port)
    }

    /// Binds `local` (port 0: one the kernel picks, for tests) and the sending sockets.
    /// Frames longer than `mtu` plus an Ethernet header and a VLAN tag are refused.
    pub fn open(
        local: SocketAddr,
        remotes: &[SocketAddr],
        vni: u32,
        mtu: u32,
        ageing_ticks: u64,
    ) -> Result<VxlanPort, PortError> {
        let err = |action: &str, err: io::Error| PortError::Vxlan {
            local,
            action: action.to_string(),
            err,
        };
        let rx = UdpSocket::bind(local).map_err(|e| err("bind the receiving socket", e))?;
        rx.set_nonblocking(true)
            .map_err(|e| err("make it non-blocking", e))?;
        // A bigger receive buffer if the kernel allows it; the default works, only slower.
        if sys::set_int_option(rx.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err()
        {
            let _ = sys::set_int_option(rx.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
        }
        let local = rx.local_addr().map_err(|e| err("read its address", e))?;
        let tx = (0..SOURCE_PORTS)
            .map(|_| {
                let s = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| err("bind the sending sockets", e))?;
        Ok(VxlanPort {
            vni,
            mtu,
            local,
            rx,
            tx,
            remotes: remotes.to_vec(),
            table: RwLock::new(VtepTable::new(MAX_LEARNED, ageing_ticks)),
            now: AtomicU64::new(0),
            link: LinkState::new(true),
            udp_gso: AtomicBool::new(true),
        })
    }

    /// The address the port receives on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many inner MACs the port knows the VTEP of.
    pub fn learned(&self) -> usize {
        self.table.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Reads one VXLAN packet as a zero virtio-net header + the inner frame. A datagram that
    /// is not one for this port is counted on the link and reported as `Interrupted` (the
    /// worker reads on).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // The VXLAN header lands in the last 8 bytes of the virtio-net header's place.
        let at = VNET_HDR_LEN - VXLAN_HEADER_LEN;
        let Some(room) = buf.get_mut(at..) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let (n, from) = self.rx.recv_from(room)?;
        if n == room.len() {
            self.link.note_oversize();
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        match decap(&room[..n], from.ip(), self.vni, &self.remotes) {
            Ok(d) => {
                if d.src.is_valid_source() {
                    self.learn(d.src, d.vtep);
                }
                // A far kernel over a veth leaves checksums, even segmentation, to a NIC.
                let hdr = rx_offload(&buf[VNET_HDR_LEN..at + n], self.mtu);
                hdr.emit(&mut buf[..VNET_HDR_LEN]);
                Ok(at + n)
            }
            Err(e) => {
                match e {
                    DecapError::UnknownVtep => self.link.note_unknown_vtep(),
                    DecapError::Malformed => self.link.note_malformed(),
                    DecapError::WrongVni(_) => self.link.note_wrong_vni(),
                }
                tracing::trace!(from = %from, error = ?e, "vxlan: datagram dropped");
                Err(io::Error::from(io::ErrorKind::Interrupted))
            }
        }
    }

    fn learn(&self, mac: MacAddr, vtep: u16) {
        let now = self.now.load(Relaxed);
        let stale = self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .needs_update(mac, vtep, now);
        if stale {
            self.table
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .learn(mac, vtep, now);
        }
    }

    /// Sends one virtio-net header + frame to the VTEP its destination was learned from, or
    /// to every remote. A GSO super-frame is cut to the MTU here and its datagrams leave in one
    /// UDP GSO `sendmsg` per 64 KiB ([`VxlanPort::send_train`]); a partial checksum is
    /// completed. `Unsupported` for a frame `wire::gso` cannot make plain, `InvalidInput` for
    /// one larger than the MTU allows (never sent cut); `Ok` if at least one remote took it,
    /// else the last error.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let Some(frame) = buf.get(VNET_HDR_LEN..) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        if gso::needs_software(buf) {
            return self.send_offloaded(buf);
        }
        if frame.len() < ETHERNET_HEADER_LEN || frame.len() > self.max_frame() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let hdr = VxlanHeader { vni: self.vni }.to_bytes();
        let sock = &self.tx[flow_hash(frame) as usize % self.tx.len()];
        self.for_each_target(frame, |to| {
            sys::send_to_parts(sock.as_fd(), to, [&hdr, frame])
        })
        .map(|()| buf.len())
    }

    /// The longest inner frame: the MTU, an Ethernet header and one VLAN tag.
    fn max_frame(&self) -> usize {
        self.mtu as usize + ETHERNET_HEADER_LEN + VLAN_TAG_LEN
    }

    /// Calls `send` for the VTEP `frame`'s destination was learned behind, or for every remote;
    /// `Ok` if one of them succeeded, else the last error.
    fn for_each_target(
        &self,
        frame: &[u8],
        mut send: impl FnMut(&SocketAddr) -> io::Result<usize>,
    ) -> io::Result<()> {
        let dst = MacAddr::from_bytes(&frame[..6]);
        let known = if dst.is_multicast() {
            None
        } else {
            let now = self.now.load(Relaxed);
            self.table
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .lookup(dst, now)
        };
        if let Some(vtep) = known {
            return send(&self.remotes[usize::from(vtep)]).map(drop);
        }
        let mut result = Err(io::Error::from(io::ErrorKind::NotConnected));
        for to in &self.remotes {
            match send(to) {
                Ok(_) => result = Ok(()),
                Err(e) if result.is_err() => result = Err(e),
                Err(_) => {}
            }
        }
        result
    }

    /// A GSO super-frame or a partial checksum: made plain by `wire::gso` (at the port's MTU),
    /// each piece behind its VXLAN header, laid end to end in a per-thread buffer (the train),
    /// then sent as one train per remote.
    fn send_offloaded(&self, buf: &[u8]) -> io::Result<usize> {
        thread_local! {
            static BUFS: std::cell::RefCell<Train> = std::cell::RefCell::default();
        }
        BUFS.with_borrow_mut(|t| {
            if t.scratch.len() < buf.len() {
                t.scratch.resize(buf.len(), 0);
            }
            t.bytes.clear();
            t.ends.clear();
            let hdr = VxlanHeader { vni: self.vni }.to_bytes();
            let max = self.max_frame();
            let mut oversize = false;
            let (bytes, ends) = (&mut t.bytes, &mut t.ends);
            gso::for_each_segment(buf, self.mtu as usize, &mut t.scratch, |seg| {
                let f = &seg[VNET_HDR_LEN..];
                oversize |= f.len() > max || f.len() < ETHERNET_HEADER_LEN;
                bytes.extend_from_slice(&hdr);
                bytes.extend_from_slice(f);
                ends.push(bytes.len());
            })
            .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
            if oversize || t.ends.is_empty() {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            let first = &t.bytes[VXLAN_HEADER_LEN..t.ends[0]];
            let sock = &self.tx[flow_hash(first) as usize % self.tx.len()];
            self.for_each_target(first, |to| self.send_train(sock, to, &t.bytes, &t.ends))
                .map(|()| buf.len())
        })
    }

    /// Sends the datagrams laid end to end in `bytes` (each ending at an offset in `ends`) to
    /// `to`: with UDP GSO, up to [`GSO_MAX_SEGMENTS`] and 64 KiB a call, when every datagram
    /// but the last has one size (TCP segments do); one `sendmsg` each otherwise, or once the
    /// kernel has refused UDP GSO.
    fn send_train(
        &self,
        sock: &UdpSocket,
        to: &SocketAddr,
        bytes: &[u8],
        ends: &[usize],
    ) -> io::Result<usize> {
        let size = ends[0];
        let uniform = ends
            .windows(2)
            .enumerate()
            .all(|(i, w)| w[1] - w[0] == size || (i + 2 == ends.len() && w[1] - w[0] < size));
        if ends.len() > 1 && uniform && self.udp_gso.load(Relaxed) {
            let per = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / size).max(1);
            let mut sent = Ok(0);
            for chunk in bytes.chunks(per * size) {
                match sys::send_to_segmented(sock.as_fd(), to, chunk, size as u16) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT)
                        ) =>
                    {
                        tracing::info!(error = %e, "vxlan: the kernel refuses UDP GSO; one sendmsg per datagram from now on");
                        self.udp_gso.store(false, Relaxed);
                        return self.send_train(sock, to, bytes, ends);
                    }
                    Err(e) => sent = Err(e),
                }
            }
            return sent;
        }
        let mut start = 0;
        let mut sent = Ok(0);
        for &end in ends {
            if let Err(e) = sys::send_to_parts(sock.as_fd(), to, [&bytes[start..end], &[]]) {
                sent = Err(e);
            }
            start = end;
        }
        sent
    }
}

/// A thread's buffers for [`VxlanPort::send_offloaded`].
#[derive(Debug, Default)]
struct Train {
    /// Where `wire::gso` cuts segments.
    scratch: Vec<u8>,
    /// VXLAN header + frame, one after the other.
    bytes: Vec<u8>,
    /// Where each datagram in `bytes` ends.
    ends: Vec<usize>,
}

impl PortIo for VxlanPort {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.rx.as_fd()]
    }

    fn recv(&self, _rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        VxlanPort::recv(self, buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        VxlanPort::send(self, buf)
    }

    /// GSO super-frames and partial checksums come in as they are: the port cuts and
    /// completes them itself, to send a super-frame's datagrams with UDP GSO.
    fn offloads(&self) -> bool {
        true
    }

    fn link(&self) -> Option<&LinkState> {
        Some(&self.link)
    }

    fn tick(&self) {
        self.now.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests;
