//! The data-plane workers: an epoll loop each, reading ports in batches, deciding each frame
//! with `Switch::process_vnet` and carrying the verdict out, including the hand-off to the
//! appliance.
//!
//! Theory of operation. One worker thread per core (or `[switch] workers`) takes a share of the
//! ports: it owns an epoll set over their fds, reads each ready port in a batch until EAGAIN (at
//! most `BATCH` frames per wake-up, so one busy port cannot starve the others), hands each frame
//! to `Switch::process_vnet`, and writes it straight to the egress fd (run to completion: no
//! queue between read and write). Any worker may write to any port: a tap write is one atomic
//! frame. Each worker's epoll set is shared with the control thread, which adds a hotplugged
//! port to the least loaded worker's set.
//!
//! Replies. A host usually answers a frame inside the write that delivered it (the kernel runs
//! the receiving stack in the writer's context), so after its batch a worker also reads the
//! other workers' ports it has just written to (`collect_replies`): the reply crosses without
//! waking the port's owner, which in a VM is a cross-CPU interrupt of several microseconds on
//! the round trip. One reader at a time per port (`Ports::readers`, a try-lock) keeps each
//! port's frames in order; epoll is level-triggered, so frames one reader leaves behind still
//! wake the owner.
//!
//! Multi-queue ports (`[switch] multi_queue`: a tap's queues, a packet port's fanout sockets).
//! Fd `i < queues()` of such a port is in the epoll set of the `i`-th worker after the port's
//! own (`Plugged::watch`), each queue has its own reader lock, and a worker writes to the port
//! through its own queue (`PortIo::send_on`), where the kernel also sends that flow's replies:
//! so other workers never collect from a multi-queue port. A port read in batches
//! (`PortIo::rx_batch` > 1: packet ports' `recvmmsg`) goes through `process_port_batched`.
//! Each worker counts what it read per port and queue (`Ports::count_worker_rx`).
//!
//! Frames carry their 12-byte virtio-net header end to end: the bytes read from a tap, header
//! included, are the bytes written to the egress tap. Taps run with TSO and checksum offload, so
//! a frame may be a 64 KiB GSO super-frame or carry a partial checksum; it crosses to a port that
//! `accepts_offloads` as it is (one read, one write), and is cut into plain frames and summed by
//! `wire::gso` on the way to one that does not (the appliance; port kinds without a virtio-net
//! header). Each worker owns a scratch buffer for that, next to its read buffer. What the frame
//! needs, and a flood's targets, come from the decision (`Decision::frame`: the parsed
//! `gso::Offload` and the MTU length), never from parsing the frame's headers again.
//!
//! The appliance. Frames the appliance wants (`Identity::wants`) go to it on a bounded queue
//! (`SERVICE_QUEUE`; a full queue is `tx_full` on its port), as plain frames with complete
//! checksums; a DNS query the memo answers is answered here instead (`dns::WorkerDns`). A
//! frame of a `[[segment]]`'s VLAN goes to it untagged, with its VLAN, for that segment's
//! identity (`Service::identity_for`).

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::poll::{PollMode, Poller};
use super::table::{self, Ports, Table};
use super::{appliance, capture, dns, DaemonError, Identity, TICK};
use crate::control::config::Config;
use crate::port::{self, Epoll, RxQueue};
use crate::switch::{Decision, DropReason, PortId, Switch, Verdict, DEFAULT_VLAN};
use crate::wire::{gso, vlan, VLAN_TAG_LEN, VNET_HDR_LEN};

/// Frames read from one port per wake-up before the worker moves on to the next ready port.
const BATCH: usize = 64;
/// Room for the virtio-net header and the largest frame a tap can hand over (64 KiB GSO + L2).
const FRAME_BUF: usize = VNET_HDR_LEN + 65_550;
/// Nice value of the data-plane workers, as ovs-ctl gives ovs-vswitchd by default: a woken worker
/// should not wait a scheduler slice behind batch jobs with a frame in hand (the kernel bridge
/// forwards in softirq, ahead of every task). The workers sleep in epoll when there is nothing
/// to move. Without CAP_SYS_NICE they keep the daemon's priority.
pub(super) const WORKER_NICE: i32 = -10;

/// The bytes an 802.1Q tag pushed or popped at egress moves the frame's headers by.
const TAG: isize = VLAN_TAG_LEN as isize;

/// How many foreign egress ports a worker remembers between looks; frames flooded to more are
/// left to their owners.
const WRITTEN_MAX: usize = 8;
/// Rounds of `collect_replies` after a wake-up's batches, at most.
const COLLECT_ROUNDS: usize = 4;

/// How a worker reaches the appliance.
#[derive(Clone)]
pub(super) struct Service {
    pub(super) port: PortId,
    /// The segment's MTU: what frames for the appliance are cut to.
    pub(super) mtu: usize,
    pub(super) id: Identity,
    pub(super) tx: SyncSender<appliance::ApplianceMsg>,
    /// DNS answers the worker gives itself (`None` without DNS).
    pub(super) dns: Option<dns::WorkerDns>,
    /// Each `[[segment]]`'s VLAN and the appliance's identity there.
    pub(super) segments: Arc<[(u16, Identity)]>,
}

impl Service {
    /// Who the appliance is to a frame of `vlan`: `[network]`'s identity on VLAN 1 where it
    /// arrived untagged, a segment's on the segment's VLAN; `None`: not served there.
    fn identity_for(&self, vlan: u16, tagged: bool) -> Option<Identity> {
        if vlan == DEFAULT_VLAN {
            return (!tagged).then_some(self.id);
        }
        self.segments
            .iter()
            .find(|(v, _)| *v == vlan)
            .map(|(_, id)| *id)
    }
}

/// One data-plane thread: an epoll set over its ports (shared with the control thread, which
/// adds and removes hotplugged ports), and a frame buffer.
pub(super) struct Worker {
    ports: Arc<Ports>,
    switch: Arc<Switch>,
    service: Service,
    epoll: Arc<Epoll>,
    /// Every worker's epoll set: a multi-queue port's fds are spread over them.
    epolls: Arc<[Arc<Epoll>]>,
    /// The buffers and lengths of a port read in batches (`PortIo::recv_batch`), made on first use.
    batch: RefCell<(Vec<Vec<u8>>, Vec<usize>)>,
    start: Instant,
    /// This worker's index (`Plugged::worker` of the ports its epoll set watches).
    id: usize,
    /// `[switch] poll_us`.
    poll: PollMode,
    /// Ports of other workers that this one wrote frames to since it last looked at them.
    written: RefCell<Vec<PortId>>,
    /// The second frame buffer of `process_port`, which reads one frame ahead.
    spare: RefCell<Vec<u8>>,
    /// Where a DNS answer from the memo is built (the frame, and a work buffer).
    dns_out: RefCell<(Vec<u8>, Vec<u8>)>,
    /// Where a frame gets its 802.1Q tag pushed or popped for an egress port.
    retag: RefCell<Vec<u8>>,
}

pub(super) fn worker_count(config: &Config) -> usize {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = if config.switch.workers == 0 {
        cores
    } else {
        config.switch.workers
    };
    // Not capped by the configured ports: ports added later go to these workers too. A worker
    // without ports sleeps in epoll_wait.
    wanted.max(1)
}

/// One epoll set per worker, with the configured ports dealt round-robin into them.
pub(super) fn give_ports_to_workers(
    ports: &Ports,
    n_workers: usize,
) -> Result<Vec<Arc<Epoll>>, DaemonError> {
    let io_err = |what| move |source| DaemonError::Io { what, source };
    let epolls = (0..n_workers)
        .map(|_| Epoll::new().map(Arc::new))
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_err("creating an epoll instance"))?;
    ports.set_workers(n_workers);
    let mut slots = ports.slots.write().unwrap_or_else(PoisonError::into_inner);
    for (i, slot) in slots.iter_mut().enumerate() {
        if let Some(p) = slot {
            p.give_to(i % n_workers, n_workers);
            p.watch(&epolls, i as u16)
                .map_err(io_err("adding a port to epoll"))?;
        }
    }
    Ok(epolls)
}

/// Starts one worker thread per epoll set of `epolls`, each serving the ports dealt to it.
pub(super) fn spawn(
    config: &Config,
    epolls: Vec<Arc<Epoll>>,
    ports: &Arc<Ports>,
    switch: &Arc<Switch>,
    service: &Service,
    start: Instant,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<thread::JoinHandle<()>>, DaemonError> {
    let mut handles = Vec::with_capacity(epolls.len());
    let all: Arc<[Arc<Epoll>]> = epolls.clone().into();
    for (w, epoll) in epolls.into_iter().enumerate() {
        let worker = Worker {
            ports: Arc::clone(ports),
            switch: Arc::clone(switch),
            service: service.clone(),
            epoll,
            epolls: Arc::clone(&all),
            batch: RefCell::new((Vec::new(), Vec::new())),
            start,
            id: w,
            poll: config.switch.poll,
            written: RefCell::new(Vec::with_capacity(WRITTEN_MAX)),
            spare: RefCell::new(vec![0u8; FRAME_BUF]),
            dns_out: RefCell::new((Vec::with_capacity(1600), Vec::with_capacity(1600))),
            retag: RefCell::new(vec![0u8; FRAME_BUF + VLAN_TAG_LEN]),
        };
        let stop = Arc::clone(stop);
        let handle = thread::Builder::new()
            .name(format!("sy-worker-{w}"))
            .spawn(move || worker.run(&stop))
            .map_err(|source| DaemonError::Io {
                what: "spawning a worker thread",
                source,
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

impl Worker {
    fn run(self, stop: &AtomicBool) {
        if let Err(e) = port::set_thread_nice(WORKER_NICE) {
            tracing::debug!(error = %e, nice = WORKER_NICE, "worker keeps the default priority");
        }
        let mut buf = vec![0u8; FRAME_BUF];
        let mut scratch = vec![0u8; FRAME_BUF];
        let mut events = port::Events::with_capacity(BATCH);
        // Polling (`[switch] poll_us`, `poll::Poller`): after a wait that moved frames, look
        // again without sleeping for a while. On a VM, waking a halted vCPU costs tens of
        // microseconds per frame; a polling worker pays CPU time instead.
        let mut poller = Poller::new(self.poll);
        while !stop.load(Ordering::Relaxed) {
            let timeout = if poller.begin_wait(self.start.elapsed()) {
                Duration::ZERO
            } else {
                TICK
            };
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "epoll_wait failed; worker stops");
                    return;
                }
            };
            let now = self.start.elapsed();
            let mut moved = 0;
            for i in 0..ready {
                let (slot, rxq) = RxQueue::from_token(events.token(i));
                moved +=
                    self.process_port_exclusive(PortId(slot), rxq, &mut buf, &mut scratch, now);
            }
            // Replies to what was just written, while this worker is still awake: a few rounds
            // (a reply may go to a third port and be answered in turn), then back to its own
            // epoll set, so that traffic between other workers' ports cannot hold it here.
            for _ in 0..COLLECT_ROUNDS {
                match self.collect_replies(&mut buf, &mut scratch) {
                    Some(n) => moved += n,
                    None => break,
                }
            }
            let done = if moved > 0 { self.start.elapsed() } else { now };
            poller.after_wait(now, moved > 0, done);
        }
    }

    /// `process_port` if no other worker is reading `ingress` now; else the port is left to it
    /// (epoll is level-triggered, so frames it leaves behind wake this worker again).
    fn process_port_exclusive(
        &self,
        ingress: PortId,
        rxq: RxQueue,
        buf: &mut [u8],
        scratch: &mut [u8],
        now: Duration,
    ) -> u64 {
        // One read lock for the batch: a port unplugged meanwhile waits for its end.
        let table = self.ports.table();
        let Some(p) = table.plugged(ingress) else {
            return 0;
        };
        let lock = table::reader_index(ingress.index(), p.queues, rxq);
        let batched = p.port.rx_batch() > 1;
        let Some(reader) = self.ports.readers.get(lock) else {
            return 0;
        };
        if reader
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let frames = if batched {
            self.process_port_batched(&table, ingress, rxq, scratch, now)
        } else {
            self.process_port(&table, ingress, rxq, buf, scratch, now)
        };
        reader.store(false, Ordering::Release);
        if frames > 0 {
            self.ports.count_worker_rx(self.id, ingress, lock, frames);
        }
        frames
    }

    /// Reads the ports of other workers that this one has just written to.
    ///
    /// A host that answers a frame (a ping, a TCP ACK, a DNS reply) usually does so inside the
    /// write that delivered it: the kernel runs the receiving stack in the writer's context, so
    /// by the time `write` returns the reply is queued on the egress tap. Its owner would need a
    /// wake-up (a cross-CPU IPI, several microseconds in a VM) to forward it; this worker is
    /// awake and takes it instead. It costs one `read` that finds nothing (EAGAIN) per such port
    /// when no reply came. Returns how many frames it moved, or `None` if there was nothing
    /// to look at: frames taken may have been written to further ports, whose replies the
    /// caller collects in turn.
    fn collect_replies(&self, buf: &mut [u8], scratch: &mut [u8]) -> Option<u64> {
        let written = std::mem::take(&mut *self.written.borrow_mut());
        if written.is_empty() {
            return None;
        }
        let now = self.start.elapsed();
        let mut moved = 0;
        for port in &written {
            moved += self.process_port_exclusive(*port, RxQueue::ANY, buf, scratch, now);
        }
        // Give the allocation back for the next round.
        let mut slot = self.written.borrow_mut();
        if slot.is_empty() {
            *slot = written;
            slot.clear();
        }
        Some(moved)
    }

    /// Notes that a frame went out of `egress`, a port another worker reads.
    fn note_written(&self, table: &Table<'_>, egress: PortId) {
        // A multi-queue port sends a flow's replies to the queue this worker wrote through,
        // which is this worker's own (or, past the queues, a queue whose owner is woken).
        if table.owner(egress).is_none_or(|w| w == self.id) || table.is_multi_queue(egress) {
            return;
        }
        let mut written = self.written.borrow_mut();
        if written.len() < WRITTEN_MAX && !written.contains(&egress) {
            written.push(egress);
        }
    }

    /// Reads up to `BATCH` frames from queue `rxq` of `ingress` and carries out each verdict, in order, one
    /// frame behind the reads: frame k+1 is read into the other buffer and its FDB buckets
    /// prefetched before frame k is processed, so that the table's cache misses for a frame
    /// overlap the work on the one before it (the next read's syscall, the previous write)
    /// instead of stalling its lookup. What a read's link report says (`Table::sync_link`) is
    /// applied after the frame before it is processed and before its own frame, as if read and
    /// process alternated; the read that ends the batch (`WouldBlock`, an error) ends it after
    /// the frame in hand is processed.
    /// Returns how many frames it read.
    fn process_port(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        rxq: RxQueue,
        buf: &mut [u8],
        scratch: &mut [u8],
        now: Duration,
    ) -> u64 {
        let mut frames = 0;
        let mut spare = self.spare.borrow_mut();
        let (mut held_buf, mut read_buf): (&mut [u8], &mut [u8]) = (buf, &mut spare[..]);
        // The length of the frame read into `held_buf` and not yet processed.
        let mut held = None;
        for _ in 0..BATCH {
            let read = table.recv(ingress, rxq, read_buf);
            if let Ok(n) = read {
                self.switch.prefetch_vnet(&read_buf[..n]);
                frames += 1;
            }
            if let Some(n) = held.take() {
                self.handle_frame(table, ingress, &held_buf[..n], scratch, now);
            }
            table.sync_link(&self.switch, ingress);
            match read {
                Ok(n) => {
                    held = Some(n);
                    std::mem::swap(&mut held_buf, &mut read_buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return frames,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_failed(table, ingress, &e, now);
                    return frames;
                }
            }
        }
        if let Some(n) = held {
            self.handle_frame(table, ingress, &held_buf[..n], scratch, now);
        }
        frames
    }

    /// `process_port` for a port that reads in batches (`PortIo::recv_batch`: a packet port's
    /// `recvmmsg`): up to `BATCH` frames, a batch at a time; each batch's frames are prefetched
    /// together, then what its read's link report says is applied, then they are processed.
    fn process_port_batched(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        rxq: RxQueue,
        scratch: &mut [u8],
        now: Duration,
    ) -> u64 {
        let Some(port) = table.port(ingress) else {
            return 0;
        };
        let mut batch = self.batch.borrow_mut();
        let (bufs, lens) = &mut *batch;
        let want = port.rx_batch().min(BATCH);
        if bufs.len() < want {
            bufs.resize_with(want, || vec![0u8; FRAME_BUF]);
            lens.resize(want, 0);
        }
        let mut frames = 0u64;
        while (frames as usize) < BATCH {
            let read = port.recv_batch(rxq, &mut bufs[..want], &mut lens[..want]);
            if let Ok(n) = read {
                for i in 0..n {
                    self.switch.prefetch_vnet(&bufs[i][..lens[i]]);
                }
            }
            table.sync_link(&self.switch, ingress);
            match read {
                Ok(0) => return frames,
                Ok(n) => {
                    for i in 0..n {
                        self.handle_frame(table, ingress, &bufs[i][..lens[i]], scratch, now);
                    }
                    frames += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return frames,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_failed(table, ingress, &e, now);
                    return frames;
                }
            }
        }
        frames
    }

    /// A read of `ingress` failed: the netdev went away or the fd broke. The port is taken out
    /// of service rather than spun on (all its fds leave every epoll set), and tried again after
    /// a backoff (`retry.rs`). The other ports are unaffected.
    fn read_failed(&self, table: &Table<'_>, ingress: PortId, e: &io::Error, now: Duration) {
        self.switch.set_port_up(ingress, false);
        if let Some(p) = table.plugged(ingress) {
            p.unwatch(&self.epolls);
        }
        let wait = self
            .ports
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed(ingress, self.id, now);
        tracing::warn!(port = %self.switch.port_spec(ingress).name, error = %e,
            retry_in = ?wait, "read failed; port down until it is tried again");
    }

    /// Mirrors one frame read from `ingress` (virtio-net header + frame) to a running capture,
    /// decides its fate and carries it out; a drop is remembered for `switchyard why`.
    fn handle_frame(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        bytes: &[u8],
        scratch: &mut [u8],
        now: Duration,
    ) {
        table.capture.mirror(
            ingress,
            capture::Dir::Rx,
            &bytes[bytes.len().min(VNET_HDR_LEN)..],
        );
        let d = self.switch.decide_vnet(ingress, bytes, now);
        match d.verdict {
            Verdict::Forward(egress) => {
                self.dispatch(table, ingress, egress, bytes, scratch, &d, now);
            }
            Verdict::Flood => {
                for egress in self.switch.flood_targets_of(ingress, &d) {
                    self.dispatch(table, ingress, egress, bytes, scratch, &d, now);
                }
            }
            Verdict::Drop(reason) => {
                let frame = &bytes[bytes.len().min(VNET_HDR_LEN)..];
                table.drops.record(ingress, reason, frame, now);
            }
        }
    }

    /// Writes one frame (virtio-net header included) out of `egress`, never blocking: in the
    /// port's form of the frame's VLAN (a tag pushed or popped: `wire::vlan`), within its
    /// egress limit (else `rate_limited` on `egress`), as it is if the port accepts offloads or
    /// the frame needs none, else as the plain frames `wire::gso` makes of it (a frame it
    /// cannot cut is counted `malformed` on the ingress). What the frame needs is the
    /// decision's reading of its headers (`d.frame`), not a second one.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        egress: PortId,
        bytes: &[u8],
        scratch: &mut [u8],
        d: &Decision,
        now: Duration,
    ) {
        if egress == self.service.port {
            // `[network]` on VLAN 1 where it is untagged, a `[[segment]]` on its VLAN tagged or
            // not (see docs/config.md); the appliance gets the frame untagged.
            let Some(id) = self.service.identity_for(d.vlan, d.tagged) else {
                if matches!(d.verdict, Verdict::Forward(_)) {
                    self.switch.count_drop(ingress, DropReason::NotServed);
                }
                return;
            };
            let mut untag = self.retag.borrow_mut();
            let (bytes, offload) = match d.tagged {
                false => (bytes, d.frame.offload),
                true => match vlan::pop_tag(bytes, &mut untag) {
                    Some(n) => (&untag[..n], d.frame.offload.moved(-TAG)),
                    None => return self.switch.count_drop(ingress, DropReason::Malformed),
                },
            };
            let to = (d.vlan, &id);
            return self.dispatch_to_appliance(table, ingress, bytes, scratch, &offload, to);
        }
        let mut retag = self.retag.borrow_mut();
        let offload = d.frame.offload;
        let (bytes, offload) = match (d.tagged, self.switch.egress_tagged(egress, d.vlan)) {
            (false, Some(true)) => match vlan::push_tag(bytes, d.vlan, &mut retag) {
                Some(n) => (&retag[..n], offload.moved(TAG)),
                None => return self.switch.count_drop(ingress, DropReason::Malformed),
            },
            (true, Some(false)) => match vlan::pop_tag(bytes, &mut retag) {
                Some(n) => (&retag[..n], offload.moved(-TAG)),
                None => return self.switch.count_drop(ingress, DropReason::Malformed),
            },
            (_, Some(_)) => (bytes, offload),
            // Not a member (a live change raced the decision): nothing leaks out of the VLAN.
            (_, None) => return,
        };
        let frame_len = bytes.len().saturating_sub(VNET_HDR_LEN);
        if !self.switch.admit_egress(egress, frame_len, now) {
            return self.switch.count_drop(egress, DropReason::RateLimited);
        }
        self.note_written(table, egress);
        let me = Some(self.id);
        if table.accepts_offloads(egress) || !offload.is_needed() {
            return table.send_counted_from(&self.switch, egress, me, bytes);
        }
        let mtu = self.switch.port_mtu(egress) as usize;
        let done = gso::for_each_segment_as(bytes, &offload, mtu, scratch, |seg| {
            table.send_counted_from(&self.switch, egress, me, seg);
        });
        if done.is_err() {
            self.switch.count_drop(ingress, DropReason::Malformed);
        }
    }
}

impl Worker {
    /// Hands `bytes` (virtio-net header + frame) to the appliance as plain frames with complete
    /// checksums, if it wants them; never blocks. The appliance verifies checksums, so a partial
    /// one is completed and a super-frame segmented (at the network's MTU) first, as `offload`
    /// (the decision's reading of the header) says.
    fn dispatch_to_appliance(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        bytes: &[u8],
        scratch: &mut [u8],
        offload: &gso::Offload,
        (vlan, id): (u16, &Identity),
    ) {
        let frame = &bytes[bytes.len().min(VNET_HDR_LEN)..];
        match id.classify(frame) {
            appliance::Want::Serve => {}
            appliance::Want::NotServed => {
                return self.switch.count_drop(ingress, DropReason::NotServed)
            }
            appliance::Want::Ignore => return,
        }
        if !offload.is_needed() {
            return self.enqueue_for_appliance(table, ingress, frame, vlan);
        }
        let done = gso::for_each_segment_as(bytes, offload, self.service.mtu, scratch, |seg| {
            self.enqueue_for_appliance(table, ingress, &seg[VNET_HDR_LEN..], vlan);
        });
        if done.is_err() {
            self.switch.count_drop(ingress, DropReason::Malformed);
        }
    }

    /// Hands one plain frame to the appliance, unless it is a DNS query the memo answers:
    /// that one is answered here, out of `ingress` (see `dns::WorkerDns`).
    fn enqueue_for_appliance(&self, table: &Table<'_>, ingress: PortId, frame: &[u8], vlan: u16) {
        // The memo holds `[network]`'s names only: a segment's queries go to the appliance.
        if let Some(dns) = self.service.dns.as_ref().filter(|_| vlan == DEFAULT_VLAN) {
            let mut bufs = self.dns_out.borrow_mut();
            let (out, work) = &mut *bufs;
            if dns.answer(frame, out, work) {
                // Counted and mirrored as if the appliance had taken the query and sent this.
                table
                    .capture
                    .mirror(self.service.port, capture::Dir::Tx, frame);
                self.switch.count_tx(self.service.port, frame.len());
                table
                    .capture
                    .mirror(self.service.port, capture::Dir::Rx, &out[VNET_HDR_LEN..]);
                return table.send_counted_from(&self.switch, ingress, Some(self.id), out);
            }
        }
        // The ingress port's share of the appliance (trusted ports are exempt).
        if !self.switch.admit_to_service(ingress, self.start.elapsed()) {
            return self.switch.count_drop(ingress, DropReason::ServiceLimit);
        }
        let sf = appliance::ApplianceMsg::Frame(appliance::ServiceFrame {
            ingress,
            vlan,
            frame: frame.to_vec(),
        });
        match self.service.tx.try_send(sf) {
            Ok(()) => {
                self.ports
                    .capture
                    .mirror(self.service.port, capture::Dir::Tx, frame);
                self.switch.count_tx(self.service.port, frame.len());
            }
            Err(TrySendError::Full(_)) => self
                .switch
                .count_drop(self.service.port, DropReason::TxFull),
            Err(TrySendError::Disconnected(_)) => self
                .switch
                .count_drop(self.service.port, DropReason::TxError),
        }
    }
}
