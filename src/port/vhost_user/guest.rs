//! The guest side of a vhost-user port: a virtio-net *driver* that owns its memory (a memfd)
//! and its two split virtqueues and talks to a backend as the vhost-user frontend, the way QEMU
//! plus a guest kernel do. Tests use it to drive a port without a VM; `sy-vmguest` uses it to
//! benchmark one.
//!
//! # Theory of operation
//!
//! Guest memory is one memfd region at guest address 0: each ring's descriptor table, avail and
//! used rings, then one buffer of [`GuestNic::buf_size`] bytes per descriptor. Descriptor `i` of
//! a ring always points at buffer `i`, so a free descriptor is just a free index. TX: write
//! header + frame into a free buffer, publish it in the avail ring, kick the backend if EVENT_IDX
//! says it is waiting. RX: every buffer starts posted; a used entry is a frame (with
//! `num_buffers` > 1, several consecutive entries are one frame), reposted once read.
//!
//! Every access to the shared memory goes through `vm-memory` (volatile, bounds-checked), with
//! acquire/release on the ring indices the backend reads and writes.

use std::fs::File;
use std::io;
use std::num::Wrapping;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

use super::device::{features, RX, TX};
use crate::port::sys;
use crate::wire::VNET_HDR_LEN;

const DESC_SIZE: u64 = 16;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
/// A fake offset between guest-physical and "frontend virtual" addresses, so that the backend's
/// translation of ring addresses is exercised.
const VMM_OFFSET: u64 = 0x7f00_0000_0000;
/// RX buffers `recv_in_place` reads before it posts them again in one avail-index update.
const RX_REPOST_BATCH: usize = 32;

/// Addresses of one split ring and its buffers in guest memory.
#[derive(Debug, Clone, Copy)]
struct Layout {
    desc: u64,
    avail: u64,
    used: u64,
    bufs: u64,
}

impl Layout {
    fn new(base: u64, size: u16, buf_size: u64) -> (Layout, u64) {
        let n = u64::from(size);
        let desc = base;
        let avail = desc + DESC_SIZE * n;
        let used = (avail + 6 + 2 * n + 3) & !3;
        let bufs = (used + 6 + 8 * n + 4095) & !4095;
        (
            Layout {
                desc,
                avail,
                used,
                bufs,
            },
            bufs + n * buf_size,
        )
    }
}

/// One ring as its driver sees it.
#[derive(Debug)]
struct DriverRing {
    at: Layout,
    size: u16,
    /// Next free slot of the avail ring (the avail index we publish).
    avail_idx: Wrapping<u16>,
    /// Next used entry to read.
    last_used: Wrapping<u16>,
    /// Free descriptor (= buffer) indices.
    free: Vec<u16>,
    kick: EventFd,
    call: EventFd,
    /// Kicks sent (for tests of notification suppression).
    kicks: u64,
}

/// A virtio-net NIC of a pretend guest, connected to a vhost-user backend.
pub struct GuestNic {
    mem: GuestMemoryMmap,
    _memfd: File,
    frontend: Frontend,
    rings: [DriverRing; 2],
    buf_size: u32,
    features: u64,
    /// RX buffers read in place and not yet posted again (`recv_in_place` batches them).
    rx_pending: Vec<u16>,
}

/// What the guest negotiates.
#[derive(Debug, Clone, Copy)]
pub struct GuestConfig {
    /// Ring size (a power of two up to 1024).
    pub queue_size: u16,
    /// Bytes per buffer (both rings).
    pub buf_size: u32,
    /// Virtio feature bits the guest wants (masked by what the backend offers).
    pub features: u64,
}

impl Default for GuestConfig {
    fn default() -> Self {
        use features::*;
        GuestConfig {
            queue_size: 256,
            buf_size: 2048,
            features: VERSION_1
                | MRG_RXBUF
                | RING_EVENT_IDX
                | CSUM
                | GUEST_CSUM
                | HOST_TSO4
                | HOST_TSO6
                | GUEST_TSO4
                | GUEST_TSO6,
        }
    }
}

fn vu(e: vhost::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl GuestNic {
    /// Connects to a backend listening on `path`.
    pub fn connect(path: &Path, cfg: GuestConfig) -> io::Result<GuestNic> {
        let frontend = Frontend::connect(path, 2).map_err(|e| io::Error::other(e.to_string()))?;
        GuestNic::setup(frontend, cfg)
    }

    /// Sets up a backend that connected to us (`stream` accepted on a socket we listen on).
    pub fn from_stream(
        stream: std::os::unix::net::UnixStream,
        cfg: GuestConfig,
    ) -> io::Result<GuestNic> {
        GuestNic::setup(Frontend::from_stream(stream, 2), cfg)
    }

    fn setup(mut frontend: Frontend, cfg: GuestConfig) -> io::Result<GuestNic> {
        let buf = u64::from(cfg.buf_size);
        let (rx, end) = Layout::new(0, cfg.queue_size, buf);
        let (tx, end) = Layout::new(end, cfg.queue_size, buf);
        let memfd = sys::memfd("sy-vmguest", end)?;
        let region = MmapRegion::from_file(FileOffset::new(memfd.try_clone()?, 0), end as usize)
            .map_err(io::Error::other)?;
        let region =
            GuestRegionMmap::new(region, GuestAddress(0)).ok_or(io::ErrorKind::InvalidInput)?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(io::Error::other)?;

        frontend.set_owner().map_err(vu)?;
        let offered = frontend.get_features().map_err(vu)?;
        let proto = vhost::vhost_user::VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let features = (cfg.features & offered) | (offered & proto);
        frontend.set_features(features).map_err(vu)?;
        if features & proto != 0 {
            let p = frontend.get_protocol_features().map_err(vu)?;
            frontend
                .set_protocol_features(p & VhostUserProtocolFeatures::REPLY_ACK)
                .map_err(vu)?;
        }
        frontend
            .set_mem_table(&[VhostUserMemoryRegionInfo {
                guest_phys_addr: 0,
                memory_size: end,
                userspace_addr: VMM_OFFSET,
                mmap_offset: 0,
                mmap_handle: memfd.as_raw_fd(),
            }])
            .map_err(vu)?;
        let ring = |at: Layout| -> io::Result<DriverRing> {
            Ok(DriverRing {
                at,
                size: cfg.queue_size,
                avail_idx: Wrapping(0),
                last_used: Wrapping(0),
                free: (0..cfg.queue_size).rev().collect(),
                kick: EventFd::new(libc::EFD_NONBLOCK)?,
                call: EventFd::new(libc::EFD_NONBLOCK)?,
                kicks: 0,
            })
        };
        let mut nic = GuestNic {
            mem,
            _memfd: memfd,
            frontend,
            rings: [ring(rx)?, ring(tx)?],
            buf_size: cfg.buf_size,
            features,
            rx_pending: Vec::new(),
        };
        for q in [RX, TX] {
            nic.start_ring(q)?;
        }
        nic.post_all_rx()?;
        Ok(nic)
    }

    fn start_ring(&mut self, q: usize) -> io::Result<()> {
        let r = &self.rings[q];
        let f = &mut self.frontend;
        f.set_vring_num(q, r.size).map_err(vu)?;
        f.set_vring_addr(
            q,
            &VringConfigData {
                queue_max_size: r.size,
                queue_size: r.size,
                flags: 0,
                desc_table_addr: r.at.desc + VMM_OFFSET,
                used_ring_addr: r.at.used + VMM_OFFSET,
                avail_ring_addr: r.at.avail + VMM_OFFSET,
                log_addr: None,
            },
        )
        .map_err(vu)?;
        f.set_vring_base(q, 0).map_err(vu)?;
        f.set_vring_call(q, &r.call).map_err(vu)?;
        f.set_vring_kick(q, &r.kick).map_err(vu)?;
        if self.features & vhost::vhost_user::VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0
        {
            f.set_vring_enable(q, true).map_err(vu)?;
        }
        Ok(())
    }

    /// Stops both rings and starts them afresh, as a guest driver that resets its device does
    /// (`GET_VRING_BASE`, then the whole ring setup from index 0).
    pub fn reset_rings(&mut self) -> io::Result<()> {
        for q in [RX, TX] {
            self.frontend.get_vring_base(q).map_err(vu)?;
            let r = &mut self.rings[q];
            let zeros = vec![0u8; (r.at.bufs - r.at.desc) as usize];
            Self::g(self.mem.write_slice(&zeros, GuestAddress(r.at.desc)))?;
            r.avail_idx = Wrapping(0);
            r.last_used = Wrapping(0);
            r.free = (0..r.size).rev().collect();
        }
        for q in [RX, TX] {
            self.start_ring(q)?;
        }
        self.post_all_rx()
    }

    /// The features both sides agreed on.
    pub fn features(&self) -> u64 {
        self.features
    }

    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Kicks sent on the TX ring so far.
    pub fn tx_kicks(&self) -> u64 {
        self.rings[TX].kicks
    }

    fn g<T>(r: Result<T, vm_memory::GuestMemoryError>) -> io::Result<T> {
        r.map_err(io::Error::other)
    }

    fn write_desc(&self, q: usize, i: u16, len: u32, flags: u16) -> io::Result<()> {
        let r = &self.rings[q];
        let at = GuestAddress(r.at.desc + DESC_SIZE * u64::from(i));
        let addr = r.at.bufs + u64::from(i) * u64::from(self.buf_size);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        Self::g(self.mem.write_slice(&d, at))
    }

    /// Publishes descriptor head `i` in ring `q`'s avail ring; kicks if the backend asked to be.
    fn publish(&mut self, q: usize, heads: &[u16]) -> io::Result<()> {
        let (at, size, old) = {
            let r = &self.rings[q];
            (r.at, r.size, r.avail_idx)
        };
        let mut idx = old;
        for &h in heads {
            let slot = GuestAddress(at.avail + 4 + 2 * u64::from(idx.0 % size));
            Self::g(self.mem.write_obj(h.to_le(), slot))?;
            idx += Wrapping(1);
        }
        Self::g(
            self.mem
                .store(idx.0.to_le(), GuestAddress(at.avail + 2), Ordering::Release),
        )?;
        std::sync::atomic::fence(Ordering::SeqCst);
        self.rings[q].avail_idx = idx;
        let kick = if self.features & features::RING_EVENT_IDX != 0 {
            let ev: u16 = Self::g(self.mem.load(
                GuestAddress(at.used + 4 + 8 * u64::from(size)),
                Ordering::Acquire,
            ))?;
            // vring_need_event(avail_event, new, old)
            (idx - Wrapping(ev) - Wrapping(1)) < (idx - old)
        } else {
            let flags: u16 = Self::g(self.mem.load(GuestAddress(at.used), Ordering::Acquire))?;
            flags & 1 == 0
        };
        if kick {
            self.rings[q].kicks += 1;
            self.rings[q].kick.write(1)?;
        }
        Ok(())
    }

    fn post_all_rx(&mut self) -> io::Result<()> {
        let heads: Vec<u16> = std::mem::take(&mut self.rings[RX].free);
        for &i in &heads {
            self.write_desc(RX, i, self.buf_size, DESC_F_WRITE)?;
        }
        self.publish(RX, &heads)
    }

    /// Reads the next used entry of ring `q`: (descriptor, length).
    fn next_used(&mut self, q: usize) -> io::Result<Option<(u16, u32)>> {
        let r = &self.rings[q];
        let used_idx: u16 = Self::g(
            self.mem
                .load(GuestAddress(r.at.used + 2), Ordering::Acquire),
        )?;
        if Wrapping(u16::from_le(used_idx)) == r.last_used {
            return Ok(None);
        }
        let e = GuestAddress(r.at.used + 4 + 8 * u64::from(r.last_used.0 % r.size));
        let id: u32 = Self::g(self.mem.read_obj(e))?;
        let len: u32 = Self::g(self.mem.read_obj(GuestAddress(e.0 + 4)))?;
        self.rings[q].last_used += Wrapping(1);
        Ok(Some((u32::from_le(id) as u16, u32::from_le(len))))
    }

    /// Takes back TX buffers the backend has used.
    fn reclaim_tx(&mut self) -> io::Result<()> {
        while let Some((id, _)) = self.next_used(TX)? {
            self.rings[TX].free.push(id);
        }
        Ok(())
    }

    /// Sends one 12-byte virtio-net header + frame as a chain of `pieces` descriptors (1 for a
    /// plain frame; more to exercise scatter-gather). `WouldBlock` when the TX ring is full.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.send_many(&[bytes])
    }

    /// Sends several frames, publishing them with one avail-index update (and at most one kick).
    pub fn send_many(&mut self, frames: &[&[u8]]) -> io::Result<()> {
        self.reclaim_tx()?;
        if self.rings[TX].free.len() < frames.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut heads = Vec::with_capacity(frames.len());
        for bytes in frames {
            if bytes.len() > self.buf_size as usize {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            let i = self.rings[TX].free.pop().expect("checked above");
            let addr = self.rings[TX].at.bufs + u64::from(i) * u64::from(self.buf_size);
            Self::g(self.mem.write_slice(bytes, GuestAddress(addr)))?;
            self.write_desc(TX, i, bytes.len() as u32, 0)?;
            heads.push(i);
        }
        self.publish(TX, &heads)
    }

    /// Writes `bytes` into every TX buffer once, for [`send_prefilled`](Self::send_prefilled): a
    /// benchmark sender that, like a guest stack, has its frames in memory already.
    pub fn prefill_tx(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > self.buf_size as usize {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        for i in 0..self.rings[TX].size {
            let addr = self.rings[TX].at.bufs + u64::from(i) * u64::from(self.buf_size);
            Self::g(self.mem.write_slice(bytes, GuestAddress(addr)))?;
        }
        Ok(())
    }

    /// Sends `n` frames of `len` bytes already in the TX buffers (`prefill_tx`), with one
    /// avail-index update; how many went (0 when the TX ring is full).
    pub fn send_prefilled(&mut self, n: usize, len: u32) -> io::Result<usize> {
        self.reclaim_tx()?;
        let n = n.min(self.rings[TX].free.len());
        let mut heads = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.rings[TX].free.pop().expect("counted above");
            self.write_desc(TX, i, len, 0)?;
            heads.push(i);
        }
        if n > 0 {
            self.publish(TX, &heads)?;
        }
        Ok(n)
    }

    /// Takes the next received frame without copying it out (as a guest stack that reads it in
    /// place would): its length (header included) and destination MAC; `None` when nothing
    /// is waiting.
    pub fn recv_in_place(&mut self) -> io::Result<Option<(usize, [u8; 6])>> {
        let Some((id, len)) = self.next_used(RX)? else {
            return Ok(None);
        };
        if id >= self.rings[RX].size || len > self.buf_size {
            return Err(io::Error::other("backend used a bad RX descriptor"));
        }
        let addr = self.rings[RX].at.bufs + u64::from(id) * u64::from(self.buf_size);
        let mut head = [0u8; VNET_HDR_LEN + 6];
        let n = head.len().min(len as usize);
        Self::g(self.mem.read_slice(&mut head[..n], GuestAddress(addr)))?;
        let mut heads = vec![id];
        let mut total = len as usize;
        let count = u16::from_le_bytes([head[10], head[11]]).max(1);
        for _ in 1..count {
            let (id, len) = loop {
                if let Some(u) = self.next_used(RX)? {
                    break u;
                }
                std::hint::spin_loop();
            };
            total += len as usize;
            heads.push(id);
        }
        self.rx_pending.extend_from_slice(&heads);
        if self.rx_pending.len() >= RX_REPOST_BATCH {
            self.flush_rx()?;
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&head[VNET_HDR_LEN..]);
        Ok(Some((total, dst)))
    }

    /// Posts again the RX buffers `recv_in_place` has read.
    pub fn flush_rx(&mut self) -> io::Result<()> {
        let heads = std::mem::take(&mut self.rx_pending);
        for &h in &heads {
            self.write_desc(RX, h, self.buf_size, DESC_F_WRITE)?;
        }
        if !heads.is_empty() {
            self.publish(RX, &heads)?;
        }
        self.rx_pending = heads;
        self.rx_pending.clear();
        Ok(())
    }

    /// Writes raw descriptors into the TX ring and publishes `head`: for tests of bad chains.
    /// Each entry is (guest address, length, flags, next).
    pub fn send_raw_chain(
        &mut self,
        head: u16,
        descs: &[(u16, u64, u32, u16, u16)],
    ) -> io::Result<()> {
        let at = self.rings[TX].at;
        for &(i, addr, len, flags, next) in descs {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
            Self::g(
                self.mem
                    .write_slice(&d, GuestAddress(at.desc + DESC_SIZE * u64::from(i))),
            )?;
        }
        self.publish(TX, &[head])
    }

    /// Guest address of TX buffer `i` (for `send_raw_chain`).
    pub fn tx_buf_addr(&self, i: u16) -> u64 {
        self.rings[TX].at.bufs + u64::from(i) * u64::from(self.buf_size)
    }

    /// Receives one frame (12-byte header + frame, merged across buffers) into `out`;
    /// `Ok(None)` when nothing is waiting.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
        out.clear();
        let Some((id, len)) = self.next_used(RX)? else {
            return Ok(None);
        };
        let mut heads = vec![id];
        self.append_buf(id, len, out)?;
        let hdr = if self.features & (features::VERSION_1 | features::MRG_RXBUF) != 0 {
            12
        } else {
            10
        };
        if hdr == VNET_HDR_LEN && self.features & features::MRG_RXBUF != 0 && out.len() >= 12 {
            let n = u16::from_le_bytes([out[10], out[11]]);
            for _ in 1..n {
                let (id, len) = loop {
                    if let Some(u) = self.next_used(RX)? {
                        break u;
                    }
                    std::hint::spin_loop();
                };
                self.append_buf(id, len, out)?;
                heads.push(id);
            }
        }
        if hdr == 10 {
            out.splice(10..10, [0, 0]);
        }
        for &h in &heads {
            self.write_desc(RX, h, self.buf_size, DESC_F_WRITE)?;
        }
        self.publish(RX, &heads)?;
        Ok(Some(out.len()))
    }

    fn append_buf(&self, id: u16, len: u32, out: &mut Vec<u8>) -> io::Result<()> {
        if id >= self.rings[RX].size || len > self.buf_size {
            return Err(io::Error::other("backend used a bad RX descriptor"));
        }
        let addr = self.rings[RX].at.bufs + u64::from(id) * u64::from(self.buf_size);
        let start = out.len();
        out.resize(start + len as usize, 0);
        Self::g(self.mem.read_slice(&mut out[start..], GuestAddress(addr)))
    }

    /// Waits up to `timeout` for the backend to call on the RX ring; drains the call.
    ///
    /// Like a guest driver's NAPI poll, the RX ring asks for calls only here, when the guest
    /// is about to sleep: EVENT_IDX's `used_event` is set to the next entry it will read, and
    /// it looks once more before sleeping. While it is busy reading it asks for none (and the
    /// TX ring never asks: this driver reclaims TX buffers when it sends), so a busy switch
    /// writes no eventfd per frame.
    pub fn wait_rx(&mut self, timeout: std::time::Duration) -> io::Result<bool> {
        self.flush_rx()?;
        let r = &self.rings[RX];
        let ue = GuestAddress(r.at.avail + 4 + 2 * u64::from(r.size));
        Self::g(self.mem.store(r.last_used.0.to_le(), ue, Ordering::Release))?;
        std::sync::atomic::fence(Ordering::SeqCst);
        let used: u16 = Self::g(
            self.mem
                .load(GuestAddress(r.at.used + 2), Ordering::Acquire),
        )?;
        if Wrapping(u16::from_le(used)) != r.last_used {
            return Ok(true);
        }
        let ready = sys::wait_readable(&self.rings[RX].call, timeout)?;
        let _ = self.rings[RX].call.read();
        Ok(ready)
    }

    /// Descriptor flags, for chains built by hand (`send_raw_chain`).
    pub const F_NEXT: u16 = DESC_F_NEXT;
    pub const F_WRITE: u16 = DESC_F_WRITE;
}
