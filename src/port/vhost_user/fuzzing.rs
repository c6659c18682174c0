//! A harness for fuzzing the data path of a vhost-user port without a frontend: the input
//! becomes a guest memory map (one to three regions at guest addresses it picks, filled with
//! its bytes), the two rings' sizes and addresses, the negotiated features and the ring
//! positions; then frames are taken from the TX ring and given to the RX ring as a worker
//! would. Whatever the input, nothing may panic or read outside the map (vm-memory checks
//! every access), a frame taken must fit the buffer, and a bad descriptor must stop the port.
//! `fuzz/fuzz_targets/vhost_ring.rs` runs it; the unit tests below run it on pseudo-random
//! inputs.

use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::device::{offered_features, Device, Shared, RX, TX};
use super::ring::RingError;
use crate::port::link::LinkState;
use crate::port::sys::Epoll;

/// Reads little-endian integers from the input, zeros past its end.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.u8()) << (8 * i))
    }
}

/// Counts of what one run did, for the tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub taken: usize,
    pub given: usize,
    pub bad: usize,
}

/// Runs the port's ring code on the memory map and rings `data` describes.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let mut ranges = Vec::new();
    for _ in 0..(input.u8() % 3 + 1) {
        let gpa = u64::from(input.u16() % 64) * 4096;
        let size = (usize::from(input.u8() % 16) + 1) * 4096;
        if ranges.iter().all(|&(a, s): &(GuestAddress, usize)| {
            gpa + size as u64 <= a.0 || a.0 + s as u64 <= gpa
        }) {
            ranges.push((GuestAddress(gpa), size));
        }
    }
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&ranges) else {
        return Outcome::default();
    };
    let shared = Arc::new(Shared {
        link: LinkState::new(false),
        kicks: Epoll::new().expect("an epoll set"),
        bad_chains: Default::default(),
        rx_full: Default::default(),
        offloads: Default::default(),
        name: "fuzz".into(),
    });
    let mut dev = Device::new(shared);
    dev.acked = input.u64() & offered_features();
    // Ring addresses mostly inside the first region (else nearly every input is an invalid
    // ring and the walk is never exercised), sometimes anywhere.
    let Some(&(first, span)) = ranges.first() else {
        return Outcome::default();
    };
    let addr = |input: &mut Input<'_>, align: u64| {
        let raw = u64::from(input.u16()) * align;
        if raw % 7 == 0 {
            raw
        } else {
            (first.0 + raw % span as u64) & !(align - 1)
        }
    };
    for q in [RX, TX] {
        let size = 1u16 << (input.u8() % 9);
        let (d, a, u) = (
            addr(&mut input, 16),
            addr(&mut input, 2),
            addr(&mut input, 4),
        );
        let v = &mut dev.vrings[q];
        let _ = v.queue.try_set_size(size);
        let _ = v.queue.try_set_desc_table_address(GuestAddress(d));
        let _ = v.queue.try_set_avail_ring_address(GuestAddress(a));
        let _ = v.queue.try_set_used_ring_address(GuestAddress(u));
        let base = input.u16();
        v.queue.set_next_avail(base);
        v.queue.set_next_used(base);
        v.queue
            .set_event_idx(dev.acked & super::features::RING_EVENT_IDX != 0);
        v.queue.set_ready(true);
        let valid = v.queue.is_valid(&mem);
        v.queue.set_ready(valid);
        v.started = true;
    }
    // The rest of the input is the guest's memory: descriptor tables, rings and buffers.
    let fill = input.0;
    if !fill.is_empty() {
        for &(at, size) in &ranges {
            let mut off = 0;
            while off < size {
                let n = fill.len().min(size - off);
                let _ = mem.write_slice(&fill[..n], GuestAddress(at.0 + off as u64));
                off += n;
            }
        }
    }
    dev.mem = Some(mem);
    exercise(&mut dev, data.len())
}

/// Takes and gives frames until the rings stop; checks the invariants.
fn exercise(dev: &mut Device, seed: usize) -> Outcome {
    let mut out = Outcome::default();
    let mut buf = vec![0u8; if seed % 2 == 0 { 2048 } else { 70_000 }];
    let frame = vec![0x5au8; 12 + 60 + seed % 3000];
    for _ in 0..64 {
        let was_up = dev.is_up();
        match dev.pop_tx(&mut buf) {
            Ok(n) => {
                assert!((12..=buf.len()).contains(&n), "a frame of {n} bytes taken");
                out.taken += 1;
            }
            Err(RingError::Bad) => {
                assert!(
                    was_up && !dev.is_up(),
                    "a bad chain must stop a running port"
                );
                out.bad += 1;
            }
            Err(_) => {}
        }
        match dev.push_rx(&frame) {
            Ok(n) => {
                assert_eq!(n, frame.len());
                out.given += 1;
            }
            Err(RingError::Bad) => {
                assert!(!dev.is_up(), "a bad chain must stop the port");
                out.bad += 1;
            }
            Err(_) => {}
        }
        if !dev.is_up() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_rings_and_memory_maps_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut totals = Outcome::default();
        for i in 0..300 {
            let data: Vec<u8> = (0..(64 + i * 7))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let o = run(&data);
            totals.taken += o.taken;
            totals.given += o.given;
            totals.bad += o.bad;
        }
        // Random rings mostly hold garbage: the harness must see bad chains stop the port.
        assert!(totals.bad > 0, "{totals:?}");
    }

    #[test]
    fn empty_and_tiny_inputs_are_fine() {
        for data in [&[][..], &[0], &[2, 1, 0, 5, 7, 1, 0, 0, 0, 0, 0]] {
            run(data);
        }
    }
}
