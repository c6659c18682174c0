//! The data path of a vhost-user port: taking a frame the guest sent (its TX ring) and giving
//! a frame to the guest (its RX ring).
//!
//! # Theory of operation
//!
//! A TX chain is header + frame in readable descriptors. [`Device::pop_tx`] walks it with
//! `virtio-queue`'s bounded iterator and copies it into the worker's frame buffer with
//! `vm-memory`'s checked copies; the buffer is what `Switch::process` decides on. That is the
//! frame's one copy on the way in, and it is deliberate: a decision made on the bytes in guest
//! memory can be undone by the guest rewriting them (a source MAC, an IP) between the guard's
//! check and the copy out, so the guard checks exactly the bytes that leave.
//!
//! [`Device::push_rx`] writes header + frame into as many RX chains as it needs (one without
//! `MRG_RXBUF`), patches `num_buffers` in the header it wrote, and publishes them in one go; if
//! the guest has not posted enough room, the chains it took are given back and the frame is
//! dropped (the caller counts `tx_full`), never waited for.
//!
//! Notifications: a TX kick wakes the worker; while frames are there, notifications stay off
//! (or, with EVENT_IDX, `avail_event` stays behind); when the ring is empty the kick is drained
//! and notifications go back on before one last look, so no kick is lost; if that look finds
//! frames (posted before the guest saw the new `avail_event`, so it will not kick for them),
//! the port kicks itself, so a worker whose batch ends before the ring is empty comes back.
//! Calls to the guest go through `needs_notification` (EVENT_IDX's `used_event` when
//! negotiated).
//!
//! A chain that leaves the memory table, loops, points past the ring, mixes directions or is
//! shorter than a header is a bad descriptor: [`Device::fail`] stops the port (counted, logged).

use std::io::{Read, Write};

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::device::{features, Device, Vring, RX, TX};
use crate::wire::VNET_HDR_LEN;

/// Why no frame moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RingError {
    /// Nothing waiting (TX) .
    Empty,
    /// The rings are not running (no guest, stopped, or stopped by a bad descriptor).
    Down,
    /// The guest's RX ring has no room for the frame.
    Full,
    /// A TX frame larger than the caller's buffer (dropped) or an RX frame larger than a
    /// guest without MRG_RXBUF posted room for.
    TooBig,
    /// A bad descriptor chain; the port has been stopped.
    Bad,
}

/// Most RX chains one frame may take (a 64 KiB frame in Linux's smallest mergeable buffers,
/// 1.5 KiB, is 44; 256 leaves room for guests that post smaller ones).
const MAX_RX_CHAINS: usize = 256;

fn drain(kick: &Option<std::fs::File>) {
    if let Some(mut k) = kick.as_ref() {
        let _ = k.read(&mut [0u8; 8]);
    }
}

fn kick(kick: &Option<std::fs::File>) {
    if let Some(mut k) = kick.as_ref() {
        let _ = k.write(&1u64.to_ne_bytes());
    }
}

fn signal(vq: &mut Vring, mem: &GuestMemoryMmap) {
    if vq.queue.needs_notification(mem).unwrap_or(true) {
        if let Some(mut call) = vq.call.as_ref() {
            let _ = call.write(&1u64.to_ne_bytes());
        }
    }
}

/// What walking one TX chain found.
enum Walk {
    Ok(usize),
    TooBig,
    Bad(&'static str),
}

/// Copies a readable chain into `buf[at..]`; the length copied, or why not.
fn read_chain(
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    buf: &mut [u8],
    at: usize,
) -> Walk {
    let (mut len, mut seen, mut more, mut too_big) = (0usize, 0usize, true, false);
    for desc in chain {
        seen += 1;
        more = desc.has_next();
        if desc.is_write_only() {
            return Walk::Bad("a writable descriptor in a TX chain");
        }
        let n = desc.len() as usize;
        let start = at + len;
        len += n;
        if too_big || start + n > buf.len() {
            too_big = true;
            continue;
        }
        if mem
            .read_slice(&mut buf[start..start + n], desc.addr())
            .is_err()
        {
            return Walk::Bad("a TX descriptor outside the guest's memory table");
        }
    }
    if seen == 0 || more {
        return Walk::Bad("a TX chain that loops, points past the ring or is unreadable");
    }
    if too_big {
        Walk::TooBig
    } else {
        Walk::Ok(len)
    }
}

impl Device {
    /// Takes the guest's next TX frame into `buf` as a 12-byte virtio-net header + frame (a
    /// legacy 10-byte header is widened); its length.
    pub(super) fn pop_tx(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        if !self.is_up() {
            drain(&self.vrings[TX].kick);
            return Err(RingError::Down);
        }
        let hdr_len = self.hdr_len();
        let at = VNET_HDR_LEN - hdr_len;
        let (Some(mem), vq) = (self.mem.as_ref(), &mut self.vrings[TX]) else {
            return Err(RingError::Down);
        };
        let chain = match vq.queue.pop_descriptor_chain(mem) {
            Some(c) => c,
            None => {
                // Empty: drain the kick, turn notifications on, and look once more (a frame
                // posted in between would otherwise wait for a kick that never comes).
                drain(&vq.kick);
                signal(vq, mem);
                vq.notify_on = true;
                match vq.queue.enable_notification(mem) {
                    Ok(false) => return Err(RingError::Empty),
                    Ok(true) => match vq.queue.pop_descriptor_chain(mem) {
                        Some(c) => {
                            // The guest posted these before it saw the `avail_event` just set,
                            // so it will not kick for them, and the kick was drained: if the
                            // worker's batch ends before the ring is empty, nothing would wake
                            // it again and the guest's full ring would wait for ever. Kick
                            // ourselves, as vhost-net requeues its work at its weight limit.
                            kick(&vq.kick);
                            c
                        }
                        None => return self.fail_with("a TX avail index out of range"),
                    },
                    Err(_) => return self.fail_with("a TX ring outside the memory table"),
                }
            }
        };
        if vq.notify_on {
            let _ = vq.queue.disable_notification(mem);
            vq.notify_on = false;
        }
        let head = chain.head_index();
        let walk = read_chain(mem, chain, buf, at);
        let len = match walk {
            Walk::Bad(why) => return self.fail_with(why),
            Walk::Ok(len) if len < hdr_len => {
                return self.fail_with("a TX chain shorter than a header")
            }
            Walk::Ok(len) => len,
            Walk::TooBig => 0,
        };
        if vq.queue.add_used(mem, head, 0).is_err() {
            return self.fail_with("a TX used ring outside the memory table");
        }
        if matches!(walk, Walk::TooBig) {
            return Err(RingError::TooBig);
        }
        if at > 0 {
            // Legacy 10-byte header: move it to the front, num_buffers = 0.
            buf.copy_within(at..VNET_HDR_LEN, 0);
            buf[hdr_len..VNET_HDR_LEN].fill(0);
        }
        Ok(at + len)
    }

    fn fail_with<T>(&mut self, why: &str) -> Result<T, RingError> {
        self.fail(why);
        Err(RingError::Bad)
    }

    /// Gives `bytes` (12-byte virtio-net header + frame) to the guest through its RX ring.
    pub(super) fn push_rx(&mut self, bytes: &[u8]) -> Result<usize, RingError> {
        if !self.is_up() || bytes.len() < VNET_HDR_LEN {
            return Err(RingError::Down);
        }
        let hdr_len = self.hdr_len();
        let mergeable = self.has(features::MRG_RXBUF);
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr.copy_from_slice(&bytes[..VNET_HDR_LEN]);
        let frame = &bytes[VNET_HDR_LEN..];
        let (Some(mem), vq) = (self.mem.as_ref(), &mut self.vrings[RX]) else {
            return Err(RingError::Down);
        };
        let mut fill = Fill {
            hdr: &hdr[..hdr_len],
            frame,
            done: 0,
            num_buffers_at: [None; 2],
        };
        let mut used = [(0u16, 0u32); MAX_RX_CHAINS];
        let mut n = 0;
        while fill.done < fill.total() {
            let give_back = |vq: &mut Vring, n: usize| {
                for _ in 0..n {
                    vq.queue.go_to_previous_position();
                }
            };
            if n == MAX_RX_CHAINS || (n == 1 && !mergeable) {
                give_back(vq, n);
                return Err(RingError::TooBig);
            }
            let Some(chain) = vq.queue.pop_descriptor_chain(mem) else {
                give_back(vq, n);
                return Err(RingError::Full);
            };
            let head = chain.head_index();
            match fill.write_chain(mem, chain) {
                Ok(len) => used[n] = (head, len),
                Err(why) => return self.fail_with(why),
            }
            n += 1;
        }
        if hdr_len == VNET_HDR_LEN {
            // num_buffers, little-endian, wherever header bytes 10 and 11 landed.
            let count = (n as u16).to_le_bytes();
            for (addr, b) in fill.num_buffers_at.iter().zip(count) {
                if let Some(a) = addr {
                    let _ = mem.write_obj(b, *a);
                }
            }
        }
        for (head, len) in &used[..n] {
            if vq.queue.add_used(mem, *head, *len).is_err() {
                return self.fail_with("an RX used ring outside the memory table");
            }
        }
        signal(vq, mem);
        Ok(bytes.len())
    }
}

/// Header + frame being written across RX chains.
struct Fill<'a> {
    hdr: &'a [u8],
    frame: &'a [u8],
    /// Bytes of header + frame written so far.
    done: usize,
    /// Where header bytes 10 and 11 (`num_buffers`) were written.
    num_buffers_at: [Option<GuestAddress>; 2],
}

impl Fill<'_> {
    fn total(&self) -> usize {
        self.hdr.len() + self.frame.len()
    }

    /// The next piece of header + frame, at most `room` bytes.
    fn next_piece(&self, room: usize) -> &[u8] {
        let src = if self.done < self.hdr.len() {
            &self.hdr[self.done..]
        } else {
            &self.frame[self.done - self.hdr.len()..]
        };
        &src[..src.len().min(room)]
    }

    /// Fills one writable chain; the bytes written into it.
    fn write_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    ) -> Result<u32, &'static str> {
        let (start, mut seen, mut more) = (self.done, 0usize, true);
        for desc in chain {
            seen += 1;
            more = desc.has_next();
            if !desc.is_write_only() {
                return Err("a read-only descriptor in an RX chain");
            }
            let mut off = 0u64;
            let room = desc.len() as u64;
            while off < room && self.done < self.total() {
                let piece = self.next_piece((room - off) as usize);
                let n = piece.len();
                let addr = desc
                    .addr()
                    .checked_add(off)
                    .ok_or("an RX descriptor wraps")?;
                mem.write_slice(piece, addr)
                    .map_err(|_| "an RX descriptor outside the guest's memory table")?;
                let full_hdr = self.hdr.len() == VNET_HDR_LEN;
                for (i, slot) in self.num_buffers_at.iter_mut().enumerate() {
                    let want = 10 + i;
                    if full_hdr && (self.done..self.done + n).contains(&want) {
                        *slot = addr.checked_add((want - self.done) as u64);
                    }
                }
                off += n as u64;
                self.done += n;
            }
        }
        if seen == 0 || more {
            return Err("an RX chain that loops, points past the ring or is unreadable");
        }
        Ok((self.done - start) as u32)
    }
}
