//! `Switch::process`: the forwarding decision, in the Linux bridge's order (`br_input.c`).
//!
//! ```text
//! parse ─► bad source? ─► link-local? ─► guard ─► storm? ─► learn ─► multicast? ─► lookup ─► should_deliver
//! (Runt)   (BadSrcMac)    (LinkLocal)  (Spoofed*, (Storm-   (FDB)     (Flood)      (FDB)    (Hairpin,
//!                                      Rogue*, ...) Control)                                 PortDown,
//!                                                                                            Isolated, Mtu)
//! ```
//!
//! Storm control: a port's broadcast and multicast frames beyond `storm_limit` a second are
//! dropped (metered in 100 ms windows) before they are learned from or flooded.
//!
//! Learning happens only after the frame passed the ingress checks and the port's guard (see
//! `guard.rs`), so a frame that is dropped cannot poison the table. Each port's policy sits
//! behind its own `RwLock`: the data path takes the read side for the length of one `check`
//! (uncontended, no allocation); `set_policy`, `allow`, `bind_lease` and friends take the write
//! side of that one port only, so a change never stalls other ports' traffic and holds from the
//! next frame on. A frame never goes back out of its ingress port. Isolated ports
//! (libvirt's `<port isolated='yes'/>`) reach non-isolated ports but not each other. A frame whose
//! payload exceeds the egress MTU is dropped, never truncated. Unknown unicast, broadcast and
//! multicast are flooded to every other port that is up and `should_deliver` allows.
//!
//! Frames read from a tap with offloads may be GSO super-frames (up to 64 KiB behind the headers
//! of their first segment) or carry partial checksums: [`Switch::process_vnet`] takes the frame
//! with its virtio-net header and decides exactly as for a plain frame, reading the same headers;
//! only the MTU check looks at the size of the segments the super-frame stands for, as the
//! kernel bridge does (`skb_gso_validate_network_len`). Whether a port can take such a frame as
//! it is, or needs it cut and summed first (`wire::gso`), is the egress side's business; the
//! decision hands it what it read on the way ([`FrameSummary`] in the [`Decision`]: the MTU
//! length and the parsed [`Offload`]), so egress reads none of those headers again.
//!
//! The decision is a function of the frame, the ingress port, the tables and `now`; its only side
//! effects are on the FDB and the counters, both interior and lock-light, so `&self` is shared
//! by every worker thread.
//!
//! Hotplug. The port table is a fixed array of slots sized once ([`Switch::with_slots`]); a slot
//! is *present* (a port is plugged into it) or *absent*. An absent slot is a port that is down
//! and stays down: never a flood or forward target, and a frame that still arrives from it is
//! dropped (`PortDown`). [`Switch::attach`] fills a slot with a fresh port (counters, meters and
//! policy reset), [`Switch::detach`] empties one (down, its learned MACs flushed, its policy
//! gone). The per-frame path reads a slot's MTU and isolation from atomics, never from a lock;
//! only the name, read by the control plane, sits behind the slot's `RwLock`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use super::guard::{self, GuardMode, PortPolicy};
use super::loops::{own_probe, LoopKey, LOOP_BLOCK};
use super::rate::{Meter, PortLimits};
use super::vlan::{PortVlan, VlanState, DEFAULT_VLAN, MAX_VID};
use super::{CounterSnapshot, DropReason, Fdb, FdbEntry, Learn, PortCounters, PortId};
use crate::wire::gso::Offload;
use crate::wire::vlan::tag_vid;
use crate::wire::{EtherType, EthernetFrame, MacAddr, VNET_HDR_LEN};

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it out of this one port.
    Forward(PortId),
    /// Send it out of every port `Switch::flood_targets` yields.
    Flood,
    /// Drop it; already counted on the ingress port.
    Drop(DropReason),
}

/// A verdict with the VLAN the frame is in, whether it arrived tagged, and what the decision
/// read of its headers: what the worker needs to give each egress port the frame in its form
/// ([`Switch::egress_tagged`], [`Switch::flood_targets_of`], `wire::gso::for_each_segment_as`)
/// without parsing it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The frame's VLAN (0 when it was dropped before its VLAN was known).
    pub vlan: u16,
    /// It carried an 802.1Q tag on the ingress port.
    pub tagged: bool,
    /// The frame's headers as the decision read them; meaningful for `Forward` and `Flood`.
    pub frame: FrameSummary,
}

/// What the decision read of a frame's virtio-net, Ethernet and IP headers, carried in its
/// [`Decision`] so that egress does not read them a second and third time: the size the egress
/// MTU is held to (which a flood's targets are chosen by) and what a port without offloads needs
/// done to the frame (segmentation, a checksum; `wire::gso::Offload`), both as the frame came in
/// (an egress that pushes or pops its tag moves the offsets: `Offload::moved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameSummary {
    /// The L2 payload length (after Ethernet and VLAN headers) of the frame, or of a GSO
    /// super-frame's largest segment: what `should_deliver` compares with the egress MTU.
    pub mtu_len: usize,
    /// What the virtio-net header asks of a port that takes no offloads.
    pub offload: Offload,
}

/// The static description of one port, as the switch needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    /// IP MTU: the largest L2 payload (after Ethernet and VLAN headers) the port accepts.
    pub mtu: u32,
    pub isolated: bool,
    /// The guard's initial policy; `None`: unguarded (no host, `guard = false`, or trusted).
    /// Live changes go through `Switch::set_policy` and friends, not through this field.
    pub policy: Option<PortPolicy>,
    /// The port's VLAN membership (default: access port of VLAN 1); live changes go through
    /// `Switch::set_vlan`.
    pub vlan: PortVlan,
    /// Bandwidth limits (default: none); live changes go through `Switch::set_limits`.
    pub limits: PortLimits,
}

/// Switch-wide parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchParams {
    /// FDB ageing; zero disables learning (every unicast is flooded, like a hub).
    pub ageing: Duration,
    pub max_macs: usize,
    pub max_macs_per_port: usize,
    /// Broadcast and multicast frames a second accepted from each port (storm control);
    /// `None`: no limit.
    pub storm_limit: Option<u32>,
    /// The key of the loop probes (`loops.rs`); `None`: loop detection off.
    pub loop_key: Option<LoopKey>,
}

impl Default for SwitchParams {
    fn default() -> Self {
        SwitchParams {
            ageing: Duration::from_secs(300),
            max_macs: 65536,
            max_macs_per_port: 1024,
            storm_limit: None,
            loop_key: None,
        }
    }
}

/// Storm control's meter: broadcast and multicast frames seen in the current window of
/// [`STORM_WINDOW`]. Written only by the worker that owns the port (relaxed atomics, like the
/// counters); a race between two writers could only let a few extra frames through.
#[derive(Debug, Default)]
struct StormMeter {
    window: AtomicU64,
    seen: AtomicU32,
}

/// Storm control measures in windows this long: a limit of N a second lets N/10 through in each
/// 100 ms, so a storm is cut within 100 ms and normal bursts (an ARP sweep) are not.
pub const STORM_WINDOW: Duration = Duration::from_millis(100);

impl StormMeter {
    /// Counts one frame at `now`; false if it is over `per_window` in its window.
    fn admit(&self, now: Duration, per_window: u32) -> bool {
        let window = (now.as_millis() / STORM_WINDOW.as_millis()) as u64;
        if self.window.load(Relaxed) != window {
            self.window.store(window, Relaxed);
            self.seen.store(0, Relaxed);
        }
        let seen = self.seen.fetch_add(1, Relaxed);
        seen < per_window
    }
}

/// Frames a second each port may hand to the appliance's queue (DHCP, DNS not answered from
/// the memo, ARP and ping for the gateway), unless it is exempt ([`Switch::set_service_exempt`]:
/// trusted ports, which carry a relay's or an uplink's many clients), on average, with bursts
/// of up to [`SERVICE_BURST`] (a token bucket, [`ShareMeter`]). A guest's resolver or DHCP
/// client needs a few a second, and `dig` asking 200 names one after another about 1,250 for a
/// moment; the appliance answers tens of thousands, so a handful of flooding ports cannot fill
/// its queue (4,096) for the others.
pub const SERVICE_PER_SEC: u32 = 1_000;
/// The bucket's depth: frames a port may hand the appliance at once after a quiet moment.
pub const SERVICE_BURST: u32 = 500;

/// A port's share of the appliance: a token bucket of `rate` frames a second and `burst`
/// deep, in millionths of a frame. Written only by the worker that owns the port (relaxed
/// atomics, like [`StormMeter`]); a race between two writers could only let a few extra frames
/// through. A new port starts full.
#[derive(Debug)]
struct ShareMeter {
    /// `now` of the last frame, in microseconds; `u64::MAX`: none yet.
    last_us: AtomicU64,
    tokens: AtomicU64,
}

impl Default for ShareMeter {
    fn default() -> Self {
        ShareMeter {
            last_us: AtomicU64::new(u64::MAX),
            tokens: AtomicU64::new(0),
        }
    }
}

impl ShareMeter {
    const FRAME: u64 = 1_000_000;

    /// Takes one frame's token at `now`; false if the bucket is empty.
    fn admit(&self, now: Duration, rate: u32, burst: u32) -> bool {
        let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX - 1);
        let full = u64::from(burst) * Self::FRAME;
        let last = self.last_us.swap(now_us, Relaxed);
        let mut tokens = if last == u64::MAX {
            full
        } else {
            // At most 10 s of refill (keeps the product far from overflow).
            let refill = now_us.saturating_sub(last).min(10_000_000) * u64::from(rate);
            self.tokens.load(Relaxed).saturating_add(refill).min(full)
        };
        let admitted = tokens >= Self::FRAME;
        if admitted {
            tokens -= Self::FRAME;
        }
        self.tokens.store(tokens, Relaxed);
        admitted
    }

    fn reset(&self) {
        self.last_us.store(u64::MAX, Relaxed);
        self.tokens.store(0, Relaxed);
    }
}

#[derive(Debug)]
struct PortState {
    /// The port plugged into this slot (the last one, for an absent slot).
    spec: RwLock<Arc<PortSpec>>,
    /// Whether a port is plugged into this slot (see "Hotplug" above).
    present: AtomicBool,
    /// `spec.mtu` and `spec.isolated`, for the data path.
    mtu: AtomicU32,
    isolated: AtomicBool,
    up: AtomicBool,
    counters: PortCounters,
    policy: RwLock<Option<Arc<PortPolicy>>>,
    storm: StormMeter,
    /// The port's share of the appliance's queue (see [`SERVICE_PER_SEC`]).
    service: ShareMeter,
    service_exempt: AtomicBool,
    /// Blocked for closing a loop until this many milliseconds of `now` (0: not blocked).
    blocked_until_ms: AtomicU64,
    /// The port the loop probe that blocked this one left through, plus one (0: none yet).
    looped_with: AtomicU32,
    vlan: VlanState,
    /// `limits.ingress` and `limits.egress` (`rate.rs`).
    rate_in: Meter,
    rate_out: Meter,
}

/// The switch: ports, FDB, counters. Shared by reference between all worker threads.
#[derive(Debug)]
pub struct Switch {
    ports: Box<[PortState]>,
    /// VLAN 1's MAC table.
    fdb: Fdb,
    /// The other VLANs' tables, by VID, made when a VLAN's first frame is learned from.
    vlan_fdbs: Box<[OnceLock<Box<Fdb>>]>,
    fdb_params: (Duration, usize, usize),
    learning: bool,
    /// Broadcast/multicast frames admitted per port per [`STORM_WINDOW`]; `None`: no limit.
    storm_per_window: Option<u32>,
    loop_key: Option<LoopKey>,
    /// Bumped whenever a loop blocks a port, for the daemon to log.
    loops_seen: AtomicU64,
}

impl Switch {
    /// A switch with `ports`, all up, and no free slot.
    ///
    /// # Panics
    /// If there are more than [`Fdb::MAX_PORTS`] (32767) ports (config validation bounds this far
    /// lower).
    pub fn new(params: &SwitchParams, ports: Vec<PortSpec>) -> Switch {
        Switch::with_slots(params, ports.into_iter().map(Some).collect())
    }

    /// A switch with one slot per entry of `slots`: `Some` is a port, up; `None` an absent slot
    /// that [`Switch::attach`] may fill later.
    ///
    /// # Panics
    /// If there are more than [`Fdb::MAX_PORTS`] (32767) slots (config validation bounds this far
    /// lower).
    pub fn with_slots(params: &SwitchParams, slots: Vec<Option<PortSpec>>) -> Switch {
        assert!(slots.len() <= Fdb::MAX_PORTS, "too many ports");
        let n = slots.len();
        Switch {
            ports: slots
                .into_iter()
                .map(|spec| {
                    let present = spec.is_some();
                    let spec = spec.unwrap_or_else(|| PortSpec {
                        name: String::new(),
                        mtu: 0,
                        isolated: false,
                        policy: None,
                        vlan: PortVlan::default(),
                        limits: PortLimits::default(),
                    });
                    PortState {
                        vlan: VlanState::new(&spec.vlan),
                        rate_in: meter(spec.limits.ingress.as_ref()),
                        rate_out: meter(spec.limits.egress.as_ref()),
                        policy: RwLock::new(spec.policy.clone().map(Arc::new)),
                        present: AtomicBool::new(present),
                        mtu: AtomicU32::new(spec.mtu),
                        isolated: AtomicBool::new(spec.isolated),
                        spec: RwLock::new(Arc::new(spec)),
                        up: AtomicBool::new(present),
                        counters: PortCounters::default(),
                        storm: StormMeter::default(),
                        service: ShareMeter::default(),
                        service_exempt: AtomicBool::new(false),
                        blocked_until_ms: AtomicU64::new(0),
                        looped_with: AtomicU32::new(0),
                    }
                })
                .collect(),
            fdb: Fdb::new(n, params.ageing, params.max_macs, params.max_macs_per_port),
            vlan_fdbs: (0..=MAX_VID).map(|_| OnceLock::new()).collect(),
            fdb_params: (params.ageing, params.max_macs, params.max_macs_per_port),
            learning: !params.ageing.is_zero(),
            storm_per_window: params.storm_limit.map(|per_sec| (per_sec / 10).max(1)),
            loop_key: params.loop_key,
            loops_seen: AtomicU64::new(0),
        }
    }

    /// Decides the fate of `frame` (an Ethernet frame, no virtio-net header) received on
    /// `ingress`, learning its source and counting it on the way.
    pub fn process(&self, ingress: PortId, frame: &[u8], now: Duration) -> Verdict {
        self.process_sized(ingress, frame, Ok(Offload::None), now)
            .verdict
    }

    /// `process`, with the frame's VLAN.
    pub fn decide_frame(&self, ingress: PortId, frame: &[u8], now: Duration) -> Decision {
        self.process_sized(ingress, frame, Ok(Offload::None), now)
    }

    /// Decides the fate of `bytes`, a frame with its virtio-net header in front, exactly as
    /// `process` does for the frame behind the header, except that a GSO super-frame is held
    /// to the egress MTU by the size of its segments, and one whose headers do not match its
    /// virtio-net header (wrong family or protocol, lengths that lie) is `Malformed`.
    pub fn process_vnet(&self, ingress: PortId, bytes: &[u8], now: Duration) -> Verdict {
        self.decide_vnet(ingress, bytes, now).verdict
    }

    /// `process_vnet`, with the frame's VLAN.
    pub fn decide_vnet(&self, ingress: PortId, bytes: &[u8], now: Duration) -> Decision {
        let frame = bytes.get(VNET_HDR_LEN..).unwrap_or_default();
        let offload = Offload::parse(bytes).map_err(|_| DropReason::Malformed);
        self.process_sized(ingress, frame, offload, now)
    }

    /// Asks the CPU to fetch the FDB buckets that processing `frame` (an Ethernet frame, no
    /// virtio-net header) will read: its destination's, and its source's if the switch learns.
    /// A hint: it changes no state and no verdict. Issued a little ahead of `process` (while
    /// the next frame is read), it overlaps the table's cache misses with other work.
    pub fn prefetch_frame(&self, frame: &[u8]) {
        let (Some(dst), Some(src)) = (frame.get(..6), frame.get(6..12)) else {
            return;
        };
        // A hint: the VLAN 1 table unless the frame is tagged (an access port's VLAN is not
        // looked up for a hint).
        let fdb = match tag_vid(frame) {
            Some(vid) => match self.vlan_fdbs.get(usize::from(vid)).and_then(OnceLock::get) {
                Some(f) => &**f,
                None => return,
            },
            None => &self.fdb,
        };
        let dst = MacAddr::from_bytes(dst);
        if !dst.is_multicast() {
            fdb.prefetch(dst);
        }
        if self.learning {
            fdb.prefetch(MacAddr::from_bytes(src));
        }
    }

    /// `prefetch_frame` for a frame with its virtio-net header in front (as `process_vnet`).
    pub fn prefetch_vnet(&self, bytes: &[u8]) {
        self.prefetch_frame(bytes.get(VNET_HDR_LEN..).unwrap_or_default());
    }

    /// `offload`: what the frame's virtio-net header asks (`Offload::None` for a frame without
    /// one), `Err` for a super-frame whose headers do not parse.
    fn process_sized(
        &self,
        ingress: PortId,
        frame: &[u8],
        offload: Result<Offload, DropReason>,
        now: Duration,
    ) -> Decision {
        let port = &self.ports[ingress.index()];
        port.counters.count_rx(frame.len());
        let mut d = Decision {
            verdict: Verdict::Drop(DropReason::Runt),
            vlan: 0,
            tagged: false,
            frame: FrameSummary::default(),
        };
        d.verdict = if !port.rate_in.admit(frame.len(), now) {
            Verdict::Drop(DropReason::RateLimited)
        } else {
            match offload {
                Ok(offload) => self.decide(ingress, frame, offload, now, &mut d),
                Err(reason) => Verdict::Drop(reason),
            }
        };
        if let Verdict::Drop(reason) = d.verdict {
            port.counters.count_drop(reason);
        }
        d
    }

    /// The VLAN `frame` from `ingress` is in and whether it came tagged, or `None` if the port
    /// does not take it (see `vlan.rs`).
    fn ingress_vlan(&self, ingress: PortId, frame: &[u8]) -> Option<(u16, bool)> {
        let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let tag = match EtherType::from(et) {
            EtherType::Vlan => Some(tag_vid(frame)?),
            // 802.1ad and the legacy 0x9100 outer tags: one level of tags only.
            EtherType::QinQ | EtherType::Unknown(0x9100) => return None,
            _ => None,
        };
        let vlan = self.ports[ingress.index()].vlan.ingress(tag)?;
        Some((vlan, tag.is_some()))
    }

    /// The MAC table of VLAN `vid`, made on first use.
    fn fdb_of(&self, vid: u16) -> &Fdb {
        if vid == DEFAULT_VLAN {
            return &self.fdb;
        }
        let Some(cell) = self.vlan_fdbs.get(usize::from(vid)) else {
            return &self.fdb;
        };
        cell.get_or_init(|| {
            let (ageing, max, per_port) = self.fdb_params;
            Box::new(Fdb::new(self.ports.len(), ageing, max, per_port))
        })
    }

    /// The tables made so far, VLAN 1's first, with their VIDs.
    fn fdbs(&self) -> impl Iterator<Item = (u16, &Fdb)> {
        std::iter::once((DEFAULT_VLAN, &self.fdb)).chain(
            self.vlan_fdbs
                .iter()
                .enumerate()
                .filter_map(|(v, f)| Some((v as u16, &**f.get()?))),
        )
    }

    fn decide(
        &self,
        ingress: PortId,
        frame: &[u8],
        offload: Offload,
        now: Duration,
        d: &mut Decision,
    ) -> Verdict {
        let Some(eth) = EthernetFrame::new_checked(frame) else {
            return Verdict::Drop(DropReason::Runt);
        };
        d.frame = FrameSummary {
            mtu_len: offload.segment_l3_len().unwrap_or(eth.payload_len()),
            offload,
        };
        let port = &self.ports[ingress.index()];
        if !port.up.load(Relaxed) {
            return Verdict::Drop(DropReason::PortDown);
        }
        if self.is_blocked(ingress, now) {
            return Verdict::Drop(DropReason::LoopBlocked);
        }
        // Our own loop probe, back: before the guard, which would drop it as spoofed.
        // The key makes the port id believable, not in range: a probe sent before a restart
        // with fewer ports (or a forged one, should the key ever leak) names no port of ours.
        if let Some(from) = self.loop_key.and_then(|k| own_probe(k, frame)) {
            if from.index() < self.ports.len() {
                self.block_loop(from, ingress, now);
            }
            return Verdict::Drop(DropReason::LoopDetected);
        }
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        if !src.is_valid_source() {
            return Verdict::Drop(DropReason::BadSrcMac);
        }
        // 802.1D reserved group addresses (STP, LACP, LLDP, pause, 802.1X) are for the link,
        // not for the segment: a bridge that forwards them breaks the protocols that use them.
        if dst.is_link_local() {
            return Verdict::Drop(DropReason::LinkLocal);
        }
        let Some((vlan, tagged)) = self.ingress_vlan(ingress, frame) else {
            return Verdict::Drop(DropReason::VlanNotAllowed);
        };
        (d.vlan, d.tagged) = (vlan, tagged);
        if let Err(reason) = self.check_guard(port, frame, tagged) {
            return Verdict::Drop(reason);
        }
        if dst.is_multicast() {
            if let Some(limit) = self.storm_per_window {
                if !port.storm.admit(now, limit) {
                    return Verdict::Drop(DropReason::StormControl);
                }
            }
        }
        let fdb = self.fdb_of(vlan);
        if self.learning && fdb.learn(src, ingress, now) == Learn::Full {
            port.counters.count_fdb_full();
        }
        if dst.is_multicast() {
            return Verdict::Flood;
        }
        match fdb.lookup(dst, now) {
            None => Verdict::Flood,
            // Learned before the port left the VLAN (a live change flushes, but a frame may
            // race it): flood inside the VLAN rather than leak out of it.
            Some(egress) if self.ports[egress.index()].vlan.egress(vlan).is_none() => {
                Verdict::Flood
            }
            Some(egress) => match self.should_deliver(ingress, egress, d.frame.mtu_len) {
                Ok(()) => Verdict::Forward(egress),
                Err(reason) => Verdict::Drop(reason),
            },
        }
    }

    /// The port's guard stage: `Err` only for an enforcing policy that refuses the frame; a
    /// monitor-mode refusal is counted in `monitored` and passes.
    fn check_guard(&self, port: &PortState, frame: &[u8], tagged: bool) -> Result<(), DropReason> {
        let policy = port.policy.read().unwrap_or_else(PoisonError::into_inner);
        let Some(policy) = policy.as_deref() else {
            return Ok(());
        };
        let verdict = if tagged {
            guard::check_tagged(policy, frame)
        } else {
            guard::check(policy, frame)
        };
        match verdict {
            Err(reason) if policy.mode == GuardMode::Monitor => {
                port.counters.count_monitored(reason);
                Ok(())
            }
            verdict => verdict,
        }
    }

    /// Whether a frame with an L2 payload of `payload_len` bytes from `ingress` may leave
    /// through `egress`, and if not, why.
    pub fn should_deliver(
        &self,
        ingress: PortId,
        egress: PortId,
        payload_len: usize,
    ) -> Result<(), DropReason> {
        let (i, e) = (&self.ports[ingress.index()], &self.ports[egress.index()]);
        if ingress == egress {
            return Err(DropReason::Hairpin);
        }
        if !e.up.load(Relaxed) {
            return Err(DropReason::PortDown);
        }
        if e.blocked_until_ms.load(Relaxed) != 0 {
            // Whether the block has lapsed is decided on the port's own next frame or probe;
            // until then nothing is sent into a loop.
            return Err(DropReason::LoopBlocked);
        }
        if i.isolated.load(Relaxed) && e.isolated.load(Relaxed) {
            return Err(DropReason::Isolated);
        }
        if payload_len > e.mtu.load(Relaxed) as usize {
            return Err(DropReason::Mtu);
        }
        Ok(())
    }

    /// The ports a flooded `frame` from `ingress` goes out of. Ports that are down, isolated from
    /// the ingress, or the ingress itself are skipped silently; a port whose MTU the frame
    /// exceeds is skipped and counted as an `Mtu` drop on the ingress port.
    pub fn flood_targets<'a>(
        &'a self,
        ingress: PortId,
        frame: &[u8],
    ) -> impl Iterator<Item = PortId> + 'a {
        let payload_len = EthernetFrame::new_checked(frame).map_or(0, |e| e.payload_len());
        let vlan = self.ingress_vlan(ingress, frame).map_or(0, |(v, _)| v);
        self.flood_targets_sized(ingress, vlan, payload_len)
    }

    /// `flood_targets` for a frame with its virtio-net header in front (see `process_vnet`).
    pub fn flood_targets_vnet<'a>(
        &'a self,
        ingress: PortId,
        bytes: &[u8],
    ) -> impl Iterator<Item = PortId> + 'a {
        let frame = bytes.get(VNET_HDR_LEN..).unwrap_or_default();
        let payload_len = match Offload::parse(bytes).map(|o| o.segment_l3_len()) {
            Ok(Some(n)) => n,
            _ => EthernetFrame::new_checked(frame).map_or(0, |e| e.payload_len()),
        };
        let vlan = self.ingress_vlan(ingress, frame).map_or(0, |(v, _)| v);
        self.flood_targets_sized(ingress, vlan, payload_len)
    }

    /// `flood_targets_vnet` from what the decision `d` (a `Flood` of a frame from `ingress`)
    /// read of the frame: its VLAN and size, without parsing the frame again.
    pub fn flood_targets_of<'a>(
        &'a self,
        ingress: PortId,
        d: &Decision,
    ) -> impl Iterator<Item = PortId> + 'a {
        self.flood_targets_sized(ingress, d.vlan, d.frame.mtu_len)
    }

    /// The ports a flood of `vlan` from `ingress` goes out of: only the VLAN's members (a
    /// frame of no VLAN, 0, goes nowhere).
    fn flood_targets_sized(
        &self,
        ingress: PortId,
        vlan: u16,
        payload_len: usize,
    ) -> impl Iterator<Item = PortId> + '_ {
        (0..self.ports.len()).filter_map(move |i| {
            let egress = PortId(i as u16);
            self.ports[i].vlan.egress(vlan)?;
            match self.should_deliver(ingress, egress, payload_len) {
                Ok(()) => Some(egress),
                Err(DropReason::Mtu) => {
                    self.ports[ingress.index()]
                        .counters
                        .count_drop(DropReason::Mtu);
                    None
                }
                Err(_) => None,
            }
        })
    }

    /// Counts a frame written out of `egress`.
    pub fn count_tx(&self, egress: PortId, bytes: usize) {
        self.ports[egress.index()].counters.count_tx(bytes);
    }

    /// Counts a drop on `port` (used by the I/O side for `TxFull` and `TxError`).
    pub fn count_drop(&self, port: PortId, reason: DropReason) {
        self.ports[port.index()].counters.count_drop(reason);
    }

    /// Counts `n` losses of `port`'s link (the I/O side noticed its netdev or peer go).
    pub fn count_link_downs(&self, port: PortId, n: u64) {
        self.ports[port.index()].counters.count_link_downs(n);
    }

    /// Brings a port up or down. A port going down forgets what was learned on it. An absent
    /// slot stays down.
    pub fn set_port_up(&self, port: PortId, up: bool) {
        let p = &self.ports[port.index()];
        let was = p.up.swap(up && p.present.load(Relaxed), Relaxed);
        if was && !up {
            self.flush_port(port);
        }
    }

    /// Is `port` blocked for closing a loop at `now`? A lapsed block is lifted here.
    pub fn is_blocked(&self, port: PortId, now: Duration) -> bool {
        let p = &self.ports[port.index()];
        let until = p.blocked_until_ms.load(Relaxed);
        if until == 0 {
            return false;
        }
        if (now.as_millis() as u64) < until {
            return true;
        }
        p.blocked_until_ms.store(0, Relaxed);
        false
    }

    /// Our probe that left through `from` came back on `ingress`: block the higher-numbered of
    /// the two for [`LOOP_BLOCK`] and forget what it learned.
    fn block_loop(&self, from: PortId, ingress: PortId, now: Duration) {
        let victim = from.max(ingress);
        let p = &self.ports[victim.index()];
        let until = (now + LOOP_BLOCK).as_millis().max(1) as u64;
        p.looped_with.store(
            u32::from(if victim == ingress { from.0 } else { ingress.0 }) + 1,
            Relaxed,
        );
        if p.blocked_until_ms.swap(until, Relaxed) == 0 {
            self.loops_seen.fetch_add(1, Relaxed);
        }
        self.flush_port(victim);
    }

    /// Forgets what was learned on `port`, in every VLAN.
    fn flush_port(&self, port: PortId) {
        for (_, fdb) in self.fdbs() {
            fdb.flush_port(port);
        }
    }

    /// The loop probes' key; `None` when loop detection is off.
    pub fn loop_key(&self) -> Option<LoopKey> {
        self.loop_key
    }

    /// How many times a loop has blocked a port, for the daemon to notice and log.
    pub fn loops_seen(&self) -> u64 {
        self.loops_seen.load(Relaxed)
    }

    /// The ports blocked at `now` and the port each closed its loop with.
    pub fn blocked_ports(&self, now: Duration) -> Vec<(PortId, PortId)> {
        (0..self.ports.len())
            .map(|i| PortId(i as u16))
            .filter(|&id| self.is_blocked(id, now))
            .map(|id| {
                let with = self.ports[id.index()].looped_with.load(Relaxed);
                (id, PortId(with.saturating_sub(1) as u16))
            })
            .collect()
    }

    pub fn is_port_up(&self, port: PortId) -> bool {
        self.ports[port.index()].up.load(Relaxed)
    }

    /// Adds a static FDB entry: never ages, never moves. It is in the port's untagged VLAN
    /// (VLAN 1 for a trunk without a native VLAN).
    pub fn add_static(&self, mac: MacAddr, port: PortId) {
        let vlan = self.port_spec(port).vlan.untagged().unwrap_or(DEFAULT_VLAN);
        self.fdb_of(vlan).add_static(mac, port);
    }

    /// Adds a static FDB entry in VLAN `vlan` (the appliance's MAC on a segment's VLAN).
    pub fn add_static_in(&self, vlan: u16, mac: MacAddr, port: PortId) {
        self.fdb_of(vlan).add_static(mac, port);
    }

    /// Reclaims expired FDB entries, in every VLAN; the daemon calls this about once a second.
    pub fn expire(&self, now: Duration) -> usize {
        self.fdbs().map(|(_, f)| f.expire(now)).sum()
    }

    /// VLAN 1's MAC table.
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// Learned entries on `port`, in every VLAN.
    pub fn fdb_port_len(&self, port: PortId) -> usize {
        self.fdbs().map(|(_, f)| f.port_len(port)).sum()
    }

    /// Learned entries, in every VLAN.
    pub fn fdb_learned_len(&self) -> usize {
        self.fdbs().map(|(_, f)| f.learned_len()).sum()
    }

    /// Every VLAN's entries, VLAN by VLAN.
    pub fn fdb_entries(&self, now: Duration) -> Vec<FdbEntry> {
        self.fdbs()
            .flat_map(|(vlan, f)| {
                f.entries(now)
                    .into_iter()
                    .map(move |e| FdbEntry { vlan, ..e })
            })
            .collect()
    }

    /// The port `mac` was learned on in `vlan`, if any (for tests and the control plane).
    pub fn lookup(&self, vlan: u16, mac: MacAddr, now: Duration) -> Option<PortId> {
        let cell = self.vlan_fdbs.get(usize::from(vlan))?;
        let fdb = if vlan == DEFAULT_VLAN {
            &self.fdb
        } else {
            &**cell.get()?
        };
        fdb.lookup(mac, now)
    }

    /// How a frame of `vlan` leaves `egress`: `Some(true)` tagged, `Some(false)` untagged,
    /// `None` not at all (the port does not carry the VLAN).
    pub fn egress_tagged(&self, egress: PortId, vlan: u16) -> Option<bool> {
        self.ports[egress.index()].vlan.egress(vlan)
    }

    /// Replaces `port`'s VLAN membership from the next frame on; what it learned is forgotten
    /// (in every VLAN), so nothing learned under the old membership is forwarded to it.
    pub fn set_vlan(&self, port: PortId, vlan: PortVlan) {
        let p = &self.ports[port.index()];
        p.vlan.set(&vlan);
        self.flush_port(port);
        let mut spec = p.spec.write().unwrap_or_else(PoisonError::into_inner);
        Arc::make_mut(&mut spec).vlan = vlan;
    }

    /// Replaces `port`'s bandwidth limits from the next frame on (buckets start full at `now`).
    pub fn set_limits(&self, port: PortId, limits: PortLimits, now: Duration) {
        let p = &self.ports[port.index()];
        p.rate_in.set(limits.ingress.as_ref(), now);
        p.rate_out.set(limits.egress.as_ref(), now);
        let mut spec = p.spec.write().unwrap_or_else(PoisonError::into_inner);
        Arc::make_mut(&mut spec).limits = limits;
    }

    /// Whether `bytes` (a frame's length, virtio-net header excluded) may leave through
    /// `egress` at `now` under its egress limit; a refusal is the caller's `rate_limited`
    /// drop on `egress`. Pure: the caller passes `now`.
    pub fn admit_egress(&self, egress: PortId, bytes: usize, now: Duration) -> bool {
        self.ports[egress.index()].rate_out.admit(bytes, now)
    }

    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The port in slot `port` (the last one that was, for an absent slot).
    pub fn port_spec(&self, port: PortId) -> Arc<PortSpec> {
        let spec = self.ports[port.index()]
            .spec
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&spec)
    }

    /// The IP MTU of the port in slot `port` (the data path's copy: no lock).
    pub fn port_mtu(&self, port: PortId) -> u32 {
        self.ports[port.index()].mtu.load(Relaxed)
    }

    /// Whether a port is plugged into slot `port`.
    pub fn is_present(&self, port: PortId) -> bool {
        self.ports[port.index()].present.load(Relaxed)
    }

    /// The slots a port is plugged into, in slot order.
    pub fn present_ports(&self) -> impl Iterator<Item = PortId> + '_ {
        (0..self.ports.len())
            .map(|i| PortId(i as u16))
            .filter(|&id| self.is_present(id))
    }

    /// The first absent slot below `limit` at or after `from` (wrapping), if any.
    pub fn free_slot(&self, from: usize, limit: usize) -> Option<PortId> {
        let limit = limit.min(self.ports.len());
        (0..limit)
            .map(|k| PortId(((from + k) % limit.max(1)) as u16))
            .find(|&id| !self.is_present(id))
    }

    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.present_ports()
            .find(|&id| self.port_spec(id).name == name)
    }

    /// Plugs the port `spec` into the absent slot `port`, up, with fresh counters, meters and
    /// policy. The slot's old learned MACs were flushed when it was emptied.
    ///
    /// # Panics
    /// If the slot is present (the daemon allocates slots under its own lock).
    pub fn attach(&self, port: PortId, spec: PortSpec) {
        let p = &self.ports[port.index()];
        assert!(!p.present.load(Relaxed), "slot {} is taken", port.0);
        p.counters.reset();
        p.storm.window.store(0, Relaxed);
        p.storm.seen.store(0, Relaxed);
        p.service.reset();
        p.service_exempt.store(false, Relaxed);
        p.blocked_until_ms.store(0, Relaxed);
        p.looped_with.store(0, Relaxed);
        p.mtu.store(spec.mtu, Relaxed);
        p.isolated.store(spec.isolated, Relaxed);
        p.vlan.set(&spec.vlan);
        p.rate_in.set(spec.limits.ingress.as_ref(), Duration::ZERO);
        p.rate_out.set(spec.limits.egress.as_ref(), Duration::ZERO);
        *p.policy.write().unwrap_or_else(PoisonError::into_inner) =
            spec.policy.clone().map(Arc::new);
        *p.spec.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(spec);
        p.present.store(true, Relaxed);
        p.up.store(true, Relaxed);
    }

    /// Empties slot `port`: down (never a target again, frames from it dropped), its learned
    /// MACs forgotten, its policy gone. Its static FDB entries stay (they name the slot).
    pub fn detach(&self, port: PortId) {
        let p = &self.ports[port.index()];
        p.present.store(false, Relaxed);
        p.up.store(false, Relaxed);
        self.flush_port(port);
        *p.policy.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether `port` may hand the appliance one more frame at `now` (its share: see
    /// [`SERVICE_PER_SEC`]); a refusal is the caller's `service_limit` drop. Pure: the caller
    /// passes `now`, the worker that owns the port is the only writer.
    pub fn admit_to_service(&self, port: PortId, now: Duration) -> bool {
        let p = &self.ports[port.index()];
        p.service_exempt.load(Relaxed) || p.service.admit(now, SERVICE_PER_SEC, SERVICE_BURST)
    }

    /// Exempts `port` from the appliance share (a trusted port: a relay agent or an uplink
    /// speaks for many clients). Reset when a port is attached to the slot.
    pub fn set_service_exempt(&self, port: PortId, exempt: bool) {
        self.ports[port.index()]
            .service_exempt
            .store(exempt, Relaxed);
    }

    /// Replaces `port`'s guard policy (`None`: unguarded) from the next frame on.
    pub fn set_policy(&self, port: PortId, policy: Option<PortPolicy>) {
        let new = policy.map(Arc::new);
        *self.ports[port.index()]
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// A copy of `port`'s current guard policy.
    pub fn policy(&self, port: PortId) -> Option<PortPolicy> {
        let policy = self.ports[port.index()]
            .policy
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        policy.as_deref().cloned()
    }

    /// Edits `port`'s policy in place under its write lock; false if the port is unguarded.
    fn edit_policy(&self, port: PortId, edit: impl FnOnce(&mut PortPolicy) -> bool) -> bool {
        let mut policy = self.ports[port.index()]
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        policy.as_mut().is_some_and(|p| edit(Arc::make_mut(p)))
    }

    /// Allows `net` (an address or a prefix) as a source on `port`. Returns whether the policy
    /// changed: false if the port is unguarded or already allowed exactly `net`.
    pub fn allow(&self, port: PortId, net: IpNet) -> bool {
        self.edit_policy(port, |p| match net {
            IpNet::V4(n) => p.ipv4.insert(n),
            IpNet::V6(n) => p.ipv6.insert(n),
        })
    }

    /// Removes exactly `net` from `port`'s declared addresses (leases are untouched).
    pub fn disallow(&self, port: PortId, net: IpNet) -> bool {
        self.edit_policy(port, |p| match net {
            IpNet::V4(n) => p.ipv4.remove(&n),
            IpNet::V6(n) => p.ipv6.remove(&n),
        })
    }

    /// Allows `mac` as a source MAC on `port`.
    pub fn allow_mac(&self, port: PortId, mac: MacAddr) -> bool {
        self.edit_policy(port, |p| {
            let new = !p.macs.contains(&mac);
            if new {
                p.macs.push(mac);
            }
            new
        })
    }

    /// Stops allowing `mac` as a source MAC on `port`.
    pub fn disallow_mac(&self, port: PortId, mac: MacAddr) -> bool {
        self.edit_policy(port, |p| {
            let before = p.macs.len();
            p.macs.retain(|m| *m != mac);
            p.macs.len() != before
        })
    }

    /// Binds a DHCP lease: `addr` is allowed on `port` while the lease lives.
    pub fn bind_lease(&self, port: PortId, addr: Ipv4Addr) -> bool {
        self.edit_policy(port, |p| p.leased_ipv4.insert(Ipv4Net::from(addr)))
    }

    /// Unbinds a lease (expired or released). A declared address stays allowed.
    pub fn unbind_lease(&self, port: PortId, addr: Ipv4Addr) -> bool {
        self.edit_policy(port, |p| p.leased_ipv4.remove(&Ipv4Net::from(addr)))
    }

    /// Binds a DHCPv6 lease: `addr` is allowed on `port` while the lease lives.
    pub fn bind_lease6(&self, port: PortId, addr: std::net::Ipv6Addr) -> bool {
        self.edit_policy(port, |p| p.leased_ipv6.insert(ipnet::Ipv6Net::from(addr)))
    }

    /// Unbinds a DHCPv6 lease (expired or released).
    pub fn unbind_lease6(&self, port: PortId, addr: std::net::Ipv6Addr) -> bool {
        self.edit_policy(port, |p| p.leased_ipv6.remove(&ipnet::Ipv6Net::from(addr)))
    }

    pub fn counters(&self, port: PortId) -> CounterSnapshot {
        self.ports[port.index()].counters.snapshot()
    }
}

fn meter(limit: Option<&super::RateLimit>) -> Meter {
    let m = Meter::default();
    m.set(limit, Duration::ZERO);
    m
}

#[cfg(test)]
mod share_tests {
    use super::*;

    #[test]
    fn the_appliance_share_allows_a_burst_then_its_rate() {
        let m = ShareMeter::default();
        let t0 = Duration::from_secs(7);
        // A full bucket: a burst of 500 at once, then nothing until it refills.
        assert!((0..500).all(|_| m.admit(t0, 1_000, 500)));
        assert!(!m.admit(t0, 1_000, 500));
        // 10 ms at 1,000 a second: 10 more frames.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!((0..20).filter(|_| m.admit(t1, 1_000, 500)).count(), 10);
        // A long quiet moment refills it to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..600).filter(|_| m.admit(t2, 1_000, 500)).count(), 500);
        // A sustained flood gets the rate: 1 s of 10,000 tries in 1 ms steps.
        let mut admitted = 0;
        for ms in 1..=1_000u64 {
            let t = t2 + Duration::from_millis(ms);
            admitted += (0..10).filter(|_| m.admit(t, 1_000, 500)).count();
        }
        assert_eq!(admitted, 1_000);
        m.reset();
        assert!(m.admit(t2, 1_000, 500), "a reset bucket starts full");
    }
}
