//! The device side of the vhost-user protocol: what the frontend (QEMU) tells us about the
//! guest's memory and its two virtqueues, kept in one [`Device`] behind the port's mutex.
//!
//! # Theory of operation
//!
//! `vhost`'s `BackendReqHandler` reads each message from the socket and calls one method of
//! [`VhostUserBackendReqHandlerMut`] here, on the port's control thread, with the mutex held.
//! The workers take the same mutex for each frame they move (uncontended but for those
//! messages), so a memory table or a ring never changes under a frame in flight.
//!
//! A ring is *live* once it has a size, addresses inside the memory table, a kick eventfd and
//! the frontend has enabled it (`SET_VRING_ENABLE`, or implicitly when the protocol features were
//! not negotiated); `GET_VRING_BASE` stops it (the frontend stops the device, reboots the guest,
//! or migrates it), and a disconnect resets everything. The port's link is up while both rings
//! are live and no bad descriptor was seen since they were last started.
//!
//! The TX ring's kick eventfd sits in the port's own epoll set, whose fd sits in the worker's:
//! a kick wakes the worker directly, with no thread in between.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::VhostUserBackendReqHandlerMut;
use vhost::vhost_user::{Error as VuError, GpuBackend, Result as VuResult};
use vhost::VhostUserMemoryRegionBase;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::port::link::LinkState;
use crate::port::sys::{self, Epoll};

/// Queue indices of a virtio-net device with one queue pair.
pub(super) const RX: usize = 0;
pub(super) const TX: usize = 1;
/// Largest ring we accept (QEMU's default is 256, its maximum 1024).
pub(super) const MAX_QUEUE_SIZE: u16 = 1024;

/// Virtio feature bits we offer (virtio 1.2, 5.1.3, and the ring features of 6).
pub mod features {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    pub const VERSION_1: u64 = 1 << 32;
    /// What the switch takes as it is to a guest: checksums left to finish, and TCP super-frames.
    pub const GUEST_OFFLOADS: u64 = GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6;
}

/// Everything we offer: the offloads in both directions, mergeable RX buffers, EVENT_IDX, and
/// the vhost-user protocol features (just REPLY_ACK).
pub(super) fn offered_features() -> u64 {
    use features::*;
    CSUM | GUEST_CSUM
        | GUEST_TSO4
        | GUEST_TSO6
        | GUEST_ECN
        | HOST_TSO4
        | HOST_TSO6
        | HOST_ECN
        | MRG_RXBUF
        | RING_INDIRECT_DESC
        | RING_EVENT_IDX
        | VERSION_1
        | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
}

/// One virtqueue and its eventfds.
#[derive(Debug)]
pub(super) struct Vring {
    pub(super) queue: Queue,
    pub(super) kick: Option<File>,
    pub(super) call: Option<File>,
    pub(super) enabled: bool,
    /// Between `SET_VRING_KICK` and `GET_VRING_BASE`.
    pub(super) started: bool,
    /// Whether guest notifications are on (they are turned off while frames are being taken).
    pub(super) notify_on: bool,
}

impl Vring {
    fn new() -> Vring {
        Vring {
            queue: Queue::new(MAX_QUEUE_SIZE).expect("MAX_QUEUE_SIZE is a power of two"),
            kick: None,
            call: None,
            // Enabled until the frontend disables it. The spec has rings start disabled once
            // PROTOCOL_FEATURES is acked, but QEMU 7.2 sends its first SET_VRING_ENABLE(1)
            // before SET_FEATURES, which `vhost`'s handler refuses (seen here), so a ring that
            // waited for it would never run. A started ring is one QEMU means to use.
            enabled: true,
            started: false,
            notify_on: true,
        }
    }

    pub(super) fn is_live(&self) -> bool {
        self.started && self.enabled && self.queue.ready()
    }
}

/// Where a region of guest memory lives in the frontend's address space (ring addresses come
/// in the frontend's virtual addresses).
#[derive(Debug, Clone, Copy)]
struct Mapping {
    vmm_addr: u64,
    size: u64,
    gpa: u64,
}

/// What the port counts and shows outside its mutex.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) link: LinkState,
    /// The TX kick eventfd's set; its fd is in the owning worker's epoll set.
    pub(super) kicks: Epoll,
    /// Bad descriptor chains seen (each one stopped the port until its rings were restarted).
    pub(super) bad_chains: AtomicU64,
    /// Frames dropped because the guest's RX ring had no room.
    pub(super) rx_full: AtomicU64,
    /// Whether the connected guest takes offloads ([`Device::takes_offloads`]), read without
    /// the mutex on every dispatch to the port.
    pub(super) offloads: std::sync::atomic::AtomicBool,
    /// The port's name for logs.
    pub(super) name: String,
}

/// The device state of one vhost-user port.
#[derive(Debug)]
pub(super) struct Device {
    owned: bool,
    pub(super) acked: u64,
    protocol: u64,
    pub(super) mem: Option<GuestMemoryMmap>,
    mappings: Vec<Mapping>,
    pub(super) vrings: [Vring; 2],
    /// A bad descriptor stopped the rings; cleared when the frontend restarts one.
    pub(super) broken: bool,
    pub(super) shared: std::sync::Arc<Shared>,
}

impl Device {
    pub(super) fn new(shared: std::sync::Arc<Shared>) -> Device {
        Device {
            owned: false,
            acked: 0,
            protocol: 0,
            mem: None,
            mappings: Vec::new(),
            vrings: [Vring::new(), Vring::new()],
            broken: false,
            shared,
        }
    }

    pub(super) fn has(&self, feature: u64) -> bool {
        self.acked & feature == feature
    }

    /// The virtio-net header length the guest uses: 12 bytes with VERSION_1 or MRG_RXBUF, the
    /// legacy 10 otherwise.
    pub(super) fn hdr_len(&self) -> usize {
        if self.acked & (features::VERSION_1 | features::MRG_RXBUF) != 0 {
            12
        } else {
            10
        }
    }

    /// Whether the guest takes partial checksums and TCP super-frames (else the switch
    /// finishes or cuts them before they reach it).
    pub(super) fn takes_offloads(&self) -> bool {
        self.has(features::GUEST_OFFLOADS)
    }

    /// Forgets the connection: memory unmapped, rings reset, link down. Called when the
    /// frontend disconnects and on `RESET_OWNER`/`RESET_DEVICE`.
    pub(super) fn disconnect(&mut self) {
        self.set_kick(TX, None);
        *self = Device::new(self.shared.clone());
        self.shared.offloads.store(false, Relaxed);
        self.sync_link();
    }

    /// A bad descriptor chain: the port stops (both rings) until the frontend restarts a ring,
    /// as the kernel's vhost-net does; counted and logged, nothing more is read.
    pub(super) fn fail(&mut self, why: &str) {
        if !self.broken {
            tracing::error!(port = %self.shared.name, reason = why,
                "bad descriptor from the guest; port stops until the guest resets its rings");
        }
        self.broken = true;
        self.shared.bad_chains.fetch_add(1, Relaxed);
        self.sync_link();
    }

    pub(super) fn is_up(&self) -> bool {
        !self.broken && self.mem.is_some() && self.vrings.iter().all(Vring::is_live)
    }

    fn sync_link(&self) {
        self.shared.link.set_up(self.is_up());
    }

    fn vring(&mut self, index: u32) -> VuResult<&mut Vring> {
        self.vrings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    fn vmm_to_gpa(&self, vmm: u64) -> VuResult<GuestAddress> {
        self.mappings
            .iter()
            .find(|m| vmm >= m.vmm_addr && vmm - m.vmm_addr < m.size)
            .map(|m| GuestAddress(vmm - m.vmm_addr + m.gpa))
            .ok_or(VuError::InvalidParam)
    }

    /// Replaces the TX ring's kick in the port's epoll set (the RX ring's kick is not
    /// watched: a full RX ring drops, it does not wait).
    fn set_kick(&mut self, index: usize, kick: Option<File>) {
        let old = std::mem::replace(&mut self.vrings[index].kick, kick);
        if index != TX {
            return;
        }
        if let Some(old) = old {
            let _ = self.shared.kicks.delete(old.as_fd());
        }
        if let Some(new) = &self.vrings[index].kick {
            if let Err(e) = self.shared.kicks.add(new.as_fd(), TX as u64) {
                tracing::error!(port = %self.shared.name, error = %e, "cannot watch the TX kick");
            }
        }
    }
}

fn handler_err(e: std::io::Error) -> VuError {
    VuError::ReqHandlerError(e)
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        if self.owned {
            return Err(VuError::InvalidOperation("already claimed"));
        }
        self.owned = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.disconnect();
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        let owned = self.owned;
        self.disconnect();
        self.owned = owned;
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(offered_features())
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !offered_features() != 0 {
            return Err(VuError::InvalidParam);
        }
        self.acked = features;
        let event_idx = features & features::RING_EVENT_IDX != 0;
        for v in &mut self.vrings {
            v.queue.set_event_idx(event_idx);
        }
        self.shared.offloads.store(self.takes_offloads(), Relaxed);
        tracing::info!(port = %self.shared.name, features = format_args!("{features:#x}"),
            offloads = self.takes_offloads(), "vhost-user features negotiated");
        self.sync_link();
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        if postcopy.is_some() {
            return Err(VuError::InvalidOperation("postcopy is not supported"));
        }
        let mut regions = Vec::with_capacity(ctx.len());
        let mut mappings = Vec::with_capacity(ctx.len());
        for (region, file) in ctx.iter().zip(files) {
            let mapped = GuestRegionMmap::new(
                region.mmap_region(file)?,
                GuestAddress(region.guest_phys_addr),
            )
            .ok_or(VuError::InvalidParam)?;
            regions.push(mapped);
            mappings.push(Mapping {
                vmm_addr: region.user_addr,
                size: region.memory_size,
                gpa: region.guest_phys_addr,
            });
        }
        let mem = GuestMemoryMmap::from_regions(regions).map_err(|_| VuError::InvalidParam)?;
        self.mem = Some(mem);
        self.mappings = mappings;
        self.sync_link();
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let num = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        let v = self.vring(index)?;
        v.queue.try_set_size(num).map_err(|_| VuError::InvalidParam)
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let (desc, used, avail) = (
            self.vmm_to_gpa(descriptor)?,
            self.vmm_to_gpa(used)?,
            self.vmm_to_gpa(available)?,
        );
        let q = &mut self.vring(index)?.queue;
        q.try_set_desc_table_address(desc)
            .and_then(|_| q.try_set_avail_ring_address(avail))
            .and_then(|_| q.try_set_used_ring_address(used))
            .map_err(|_| VuError::InvalidParam)
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        let v = self.vring(index)?;
        v.queue.set_next_avail(base);
        v.queue.set_next_used(base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        let v = self.vring(index)?;
        v.started = false;
        v.queue.set_ready(false);
        let next = v.queue.next_avail();
        v.call = None;
        self.set_kick(index as usize, None);
        self.sync_link();
        Ok(VhostUserVringState::new(index, u32::from(next)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?;
        if let Some(f) = &fd {
            sys::set_nonblocking(f.as_fd()).map_err(handler_err)?;
        }
        // `is_valid` looks at a ring marked ready.
        self.vrings[index as usize].queue.set_ready(true);
        let valid = self
            .mem
            .as_ref()
            .is_some_and(|m| self.vrings[index as usize].queue.is_valid(m));
        self.set_kick(index as usize, fd);
        let v = &mut self.vrings[index as usize];
        v.started = true;
        v.notify_on = true;
        v.queue.set_ready(valid);
        if !valid {
            tracing::error!(port = %self.shared.name, ring = index,
                "ring addresses outside the guest's memory table; port stays down");
        }
        // A ring (re)started by the frontend clears a bad-descriptor stop.
        self.broken = false;
        self.sync_link();
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?.call = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?;
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(VhostUserProtocolFeatures::REPLY_ACK)
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(2)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.vring(index)?.enabled = enable;
        self.sync_link();
        Ok(())
    }

    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        Err(VuError::InvalidOperation("no config space: QEMU owns it"))
    }

    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        Err(VuError::InvalidOperation("no config space: QEMU owns it"))
    }

    fn set_gpu_socket(&mut self, _: GpuBackend) -> VuResult<()> {
        Err(VuError::InvalidOperation("not a GPU"))
    }

    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> VuResult<File> {
        Err(VuError::InvalidOperation("no shared objects"))
    }

    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        Err(VuError::InvalidOperation("no inflight tracking"))
    }

    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> VuResult<()> {
        Err(VuError::InvalidOperation("no inflight tracking"))
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Err(VuError::InvalidOperation(
            "CONFIGURE_MEM_SLOTS is not offered",
        ))
    }

    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        Err(VuError::InvalidOperation(
            "CONFIGURE_MEM_SLOTS is not offered",
        ))
    }

    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        Err(VuError::InvalidOperation(
            "CONFIGURE_MEM_SLOTS is not offered",
        ))
    }

    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> VuResult<Option<File>> {
        Err(VuError::InvalidOperation("no device state transfer"))
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        Err(VuError::InvalidOperation("no device state transfer"))
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(VuError::InvalidOperation("no shared memory regions"))
    }

    fn set_log_base(&mut self, _: &VhostUserLog, _: File) -> VuResult<()> {
        Err(VuError::InvalidOperation(
            "no dirty logging (no live migration)",
        ))
    }
}
