//! The appliance's I/O: the thread behind the switch's service port.
//!
//! The service port is a port of the switch like any other (it has a `PortId`, a static FDB
//! entry for the appliance's MAC, and receives floods), but instead of an fd it has a bounded
//! channel. Workers hand it only the frames it `wants` (ARP for the gateway address, IPv4 to the
//! gateway or broadcast UDP to the DHCP server port), as `(ingress, frame)`; a full channel is a
//! counted `tx_full` drop on the service port, never a blocked worker. The appliance thread answers
//! each frame and writes the reply straight out of the port the request came in on, never through
//! the FDB: a DHCP client without an address, or a host on an isolated port, gets its answer on its
//! own port only.
//!
//! Replies are complete frames (every checksum filled) preceded by an all-zero virtio-net header.
//!
//! One exception to "the appliance answers": a UDP DNS query whose answer the DNS memo holds is
//! answered by the worker that read it (`dns::WorkerDns`), with the same bytes, and never
//! queued here. The memo is filled by this thread and emptied by every zone change it makes.
//!
//! The queue also carries [`DnsEvent`]s from the DNS reader threads (upstream replies, queries on
//! `[dns] listen` sockets), so the DNS zone, cache and pending table live in this one thread.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use super::capture::Dir;
use super::dhcp::{epoch_now, DhcpService, DhcpStats};
use super::dns::{DnsEvent, DnsService, DNS_PORT};
use super::table::Ports;
use super::TICK;
use crate::control::config::Config;
use crate::service::dhcp::frame::{
    dhcp_payload, emit_reply_frame, SERVER_PORT as DHCP_SERVER_PORT,
};
use crate::service::dhcp::leases::write_atomically;
use crate::service::dhcp::Lease;
use crate::service::dhcp6::{Change6, Lease6};
use crate::service::dns::DnsCounters;
use crate::service::ndp::{Ndp, Served6};
use crate::switch::{PortId, Switch, DEFAULT_VLAN};
use crate::wire::icmp::Icmpv4Message;
use crate::wire::ipv4::{
    arp_reply, icmp_echo_reply, Ipv4Packet, IPV4_HEADER_LEN, PROTO_ICMP, PROTO_UDP,
};
use crate::wire::tcp::PROTO_TCP;
use crate::wire::vlan::TPID_8021Q;
use crate::wire::{EtherType, EthernetFrame, MacAddr, VNET_HDR_LEN};

/// Frames the appliance answers before one group commit of the lease journal.
const BATCH: usize = 64;

/// The appliance and the lease journal's thread yield the CPU after this many frames of a
/// burst (`sched_yield`: returns at once when nothing else waits for this core). A client on
/// the same core then reads its replies between two slices of the burst instead of after all
/// of it, and its socket does not overflow. Yielding more often costs the client more wake-ups
/// for fewer exchanges (the measurements: docs/benchmarks/dhcp.md, "Why the appliance yields").
pub(super) const YIELD_EVERY: usize = 8;

/// One frame for the appliance, with the port it arrived on.
pub(super) struct ServiceFrame {
    pub(super) ingress: PortId,
    /// Its VLAN: `[network]`'s (1) or a `[[segment]]`'s. The frame itself is untagged.
    pub(super) vlan: u16,
    pub(super) frame: Vec<u8>,
}

/// What arrives on the appliance's queue: frames from the workers, events from the DNS reader
/// threads, and calls from the control plane. The DHCP and DNS servers live on this thread
/// alone; everything reaches them in order with the frames, so no lock is shared with the data
/// plane.
pub(super) enum ApplianceMsg {
    Frame(ServiceFrame),
    Dns(DnsEvent),
    /// A control call waits in the [`CallLane`]: look there now.
    Wake,
}

/// A control call's ticket: the control plane and the appliance each try to move it out of
/// "pending"; only one can. The appliance takes it before it acts, the control plane abandons
/// it when it gives up waiting, so a call that timed out is never applied later.
#[derive(Debug, Clone, Default)]
pub(super) struct Ticket(Arc<AtomicU8>);

const PENDING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl Ticket {
    /// The appliance's side: true if it may act on the call.
    pub(super) fn take(&self) -> bool {
        self.0
            .compare_exchange(PENDING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The control plane's side: true if the call will now never be acted on; false if the
    /// appliance already took it (its answer is on the way).
    pub(super) fn abandon(&self) -> bool {
        self.0
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Most control calls waiting at once (a control connection waits for each of its own).
const MAX_CALLS: usize = 64;

/// Control calls' own path to the appliance: a short queue of their own, so a flood that fills
/// the frame queue cannot delay them, and a wake-up in the frame queue (if that is full the
/// appliance is busy and looks here between every few frames anyway).
pub(super) struct CallLane {
    calls: Mutex<VecDeque<(Call, Ticket)>>,
    wake: SyncSender<ApplianceMsg>,
}

impl CallLane {
    pub(super) fn new(wake: SyncSender<ApplianceMsg>) -> CallLane {
        CallLane {
            calls: Mutex::new(VecDeque::new()),
            wake,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Call, Ticket)>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `call`; false if too many wait already.
    pub(super) fn push(&self, call: Call, ticket: Ticket) -> bool {
        {
            let mut calls = self.lock();
            if calls.len() >= MAX_CALLS {
                return false;
            }
            calls.push_back((call, ticket));
        }
        // Full: the appliance is draining frames and checks the lane between them.
        let _ = self.wake.try_send(ApplianceMsg::Wake);
        true
    }

    fn pop(&self) -> Option<(Call, Ticket)> {
        self.lock().pop_front()
    }
}

/// A control-plane request to the appliance, with where to send the answer.
pub(super) enum Call {
    /// The live DHCP leases (empty without DHCP).
    Leases(SyncSender<Vec<Lease>>),
    /// The hosts changed (`host add`/`del`, reload): apply their reservations.
    Hosts(Box<Config>, SyncSender<Result<(), String>>),
    /// The DHCP server's message counts (`None` without DHCP).
    DhcpStats(SyncSender<Option<DhcpStats>>),
    /// The DNS server's counts, the workers' memo answers included (`None` without DNS).
    DnsStats(SyncSender<Option<DnsCounters>>),
    /// The live DHCPv6 bindings, each with the name DNS gives it, and the server's counts
    /// (`None` without DHCPv6).
    Dhcp6(SyncSender<Option<Dhcp6Snapshot>>),
}

/// What [`Call::Dhcp6`] answers.
pub(super) struct Dhcp6Snapshot {
    pub(super) leases: Vec<(Lease6, Option<String>)>,
    pub(super) counters: crate::service::dhcp6::Dhcp6Counters,
}

/// The appliance's identity on the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Its IPv6 addresses and what it serves there (`None` without `subnet6`).
    pub ipv6: Option<Served6>,
}

/// What the appliance makes of a frame the switch delivered to it (see [`Identity::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Something it answers: its queue gets it (within the ingress port's share).
    Serve,
    /// Addressed to it (its MAC or the gateway address) but nothing it serves: a counted
    /// `not_served` drop, never a place in its queue.
    NotServed,
    /// Not for it at all (a flood it sees as every port does): ignored, not counted.
    Ignore,
}

/// The ARP operation the appliance answers.
const ARP_OP_REQUEST: u16 = 1;

impl Identity {
    /// Whether the appliance has anything to do with `frame`.
    pub fn wants(&self, frame: &[u8]) -> bool {
        self.classify(frame) == Want::Serve
    }

    /// The worker's cheap classification, so floods the appliance ignores are never copied
    /// and what it does not serve never takes a place in its queue. Threat: a guest flooding
    /// the gateway address with anything (UDP to a closed port, TCP SYNs, fragments) to fill
    /// the one queue that every port's DHCP and DNS share. Only what the appliance answers
    /// passes: ARP requests for its address, ICMP echo requests to it, DHCP to it or to
    /// broadcast, UDP and TCP to its port 53 (a fragment has no ports to check: not served).
    pub fn classify(&self, frame: &[u8]) -> Want {
        let Some(eth) = EthernetFrame::new_checked(frame) else {
            return Want::Ignore;
        };
        let to_us = eth.dst_addr() == self.mac;
        let refused = if to_us { Want::NotServed } else { Want::Ignore };
        match eth.ethertype() {
            // ARP: the operation at 14 + 6, the target protocol address at 14 + 24.
            EtherType::Arp => {
                if frame.get(38..42) != Some(&self.ip.octets()[..]) {
                    return refused;
                }
                let op = frame.get(20..22).map(|b| u16::from_be_bytes([b[0], b[1]]));
                if op == Some(ARP_OP_REQUEST) {
                    Want::Serve
                } else {
                    // A reply or gratuitous announcement aimed at the gateway: a guest's
                    // kernel answering, not asking. Nothing to serve and nothing to count.
                    Want::Ignore
                }
            }
            EtherType::Ipv4 => self.classify_ipv4(&frame[14..], refused),
            // IPv6: NS for its addresses, RS, ping6, DHCPv6 and DNS (`ndp::Served6`).
            EtherType::Ipv6 => match self.ipv6.map(|v6| v6.is_served(frame)) {
                Some(Some(true)) => Want::Serve,
                Some(Some(false)) => Want::NotServed,
                // A guest's ICMPv6 to the appliance (port unreachable for an ADVERTISE, an NA,
                // MLD): legitimate, never queued, not a drop.
                Some(None) if crate::service::ndp::is_icmpv6(frame) => Want::Ignore,
                _ => refused,
            },
            _ => refused,
        }
    }

    fn classify_ipv4(&self, ip: &[u8], refused: Want) -> Want {
        if ip.len() < IPV4_HEADER_LEN {
            return refused;
        }
        // The fixed header as it is: the appliance's own parse checks the rest.
        let header = Ipv4Packet::new_unchecked(ip);
        let dst = header.dst_addr();
        let first_fragment = header.is_first_fragment();
        let l4 = ip
            .get(header.header_len()..)
            .filter(|_| first_fragment)
            .unwrap_or(&[]);
        let dst_port = l4.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
        let proto = header.protocol();
        if dst == Ipv4Addr::BROADCAST {
            return if proto == PROTO_UDP && dst_port == Some(DHCP_SERVER_PORT) {
                Want::Serve
            } else {
                refused
            };
        }
        if dst != self.ip {
            return refused;
        }
        if proto == PROTO_ICMP
            && l4
                .first()
                .is_some_and(|t| Icmpv4Message::from(*t).is_error())
        {
            // A guest's kernel reporting on the appliance's own traffic (port unreachable for
            // an OFFER it had no client for, say): legitimate, never queued, not a drop.
            return Want::Ignore;
        }
        let served = match proto {
            PROTO_ICMP => {
                l4.first().map(|t| Icmpv4Message::from(*t)) == Some(Icmpv4Message::EchoRequest)
            }
            PROTO_UDP => matches!(dst_port, Some(DHCP_SERVER_PORT | DNS_PORT)),
            PROTO_TCP => dst_port == Some(DNS_PORT),
            _ => false,
        };
        if served {
            Want::Serve
        } else {
            Want::NotServed
        }
    }
}

/// A stable, locally administered MAC for the appliance, derived from the network's name
/// (FNV-1a), so it survives restarts and differs between networks on one host.
pub fn default_mac(network: &str) -> MacAddr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"switchyard-appliance:".iter().chain(network.as_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    // 0x02: locally administered, unicast.
    MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// What the appliance serves on a `[[segment]]`'s VLAN: its own identity, DHCP server (leases
/// in their own journal, bound in the guard like `[network]`'s) and DNS zone.
pub(super) struct SegmentService {
    pub(super) vlan: u16,
    pub(super) id: Identity,
    pub(super) dhcp: Option<DhcpService>,
    pub(super) dns: Option<DnsService>,
}

/// `frame` (no virtio-net header) as it leaves `port` in VLAN `vlan`: tagged where the port
/// carries the VLAN tagged, as it is where untagged; `None` if the port no longer carries it.
fn tag_for(switch: &Switch, port: PortId, vlan: u16, mut frame: Vec<u8>) -> Option<Vec<u8>> {
    match switch.egress_tagged(port, vlan)? {
        false => Some(frame),
        true if frame.len() >= 12 => {
            let mut tag = TPID_8021Q.to_be_bytes().to_vec();
            tag.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
            frame.splice(12..12, tag);
            Some(frame)
        }
        true => None,
    }
}

/// The appliance thread's state.
pub(super) struct Appliance {
    pub(super) id: Identity,
    /// The service port's id (for mirroring what the appliance sends).
    pub(super) port: PortId,
    pub(super) rx: Receiver<ApplianceMsg>,
    /// Control calls, on their own path.
    pub(super) calls: Arc<CallLane>,
    pub(super) ports: Arc<Ports>,
    pub(super) switch: Arc<Switch>,
    pub(super) dhcp: Option<DhcpService>,
    pub(super) dns: Option<DnsService>,
    /// One per `[[segment]]`.
    pub(super) segments: Vec<SegmentService>,
    /// NDP, ping6 and router advertisements (`None` without `subnet6`).
    pub(super) ndp: Option<Ndp>,
    /// The DHCPv6 server (`None` without `subnet6` or with `[dhcp6]` off).
    pub(super) dhcp6: Option<super::dhcp6::Dhcp6Service>,
    /// The nice value to take back if the thread inherited the workers' (see
    /// `privileges::Dropped::service_nice`).
    pub(super) nice: Option<i32>,
}

impl Appliance {
    /// Runs until `stop`; returns the DNS counters, if DNS ran.
    pub(super) fn run(mut self, stop: &AtomicBool) -> Option<DnsCounters> {
        // The daemon's own priority, like dnsmasq's or Kea's, not the workers' nice -10. A
        // service thread that preempts every other process takes the CPU from the clients it
        // answers: with a load generator on the same two cores, perfdhcp's receiving thread
        // waited behind the appliance and the lease journal, its socket overflowed, and fewer
        // renewals completed (README, DHCP benchmark).
        super::privileges::take_service_nice(self.nice, "the appliance");
        let mut reply = Vec::with_capacity(1600);
        let mut out = Vec::with_capacity(1600);
        let mut last_sweep = epoch_now();
        // The clock of the periodic router advertisements (`Ndp::poll`).
        let started = std::time::Instant::now();
        if let (Some(dns), Some(dhcp)) = (self.dns.as_mut(), self.dhcp.as_ref()) {
            dns.load_leases(dhcp.live_leases(last_sweep));
        }
        for seg in &mut self.segments {
            if let (Some(dns), Some(dhcp)) = (seg.dns.as_mut(), seg.dhcp.as_ref()) {
                dns.load_leases(dhcp.live_leases(last_sweep));
            }
        }
        if let (Some(dns), Some(d6)) = (self.dns.as_mut(), self.dhcp6.as_ref()) {
            let live6 = d6.live_leases(last_sweep);
            let changes: Vec<_> = live6.into_iter().map(Change6::Upsert).collect();
            dns.apply_lease6_changes(&changes);
        }
        while !stop.load(Ordering::Relaxed) {
            match self.rx.recv_timeout(TICK) {
                Ok(first) => {
                    // Drain what is already queued (bounded), so one commit covers the batch.
                    let mut next = Some(first);
                    let mut handled = 0;
                    while let Some(msg) = next {
                        if handled % YIELD_EVERY == 0 {
                            // Control calls first, whatever the frames queued before them.
                            self.answer_calls();
                            if handled > 0 {
                                std::thread::yield_now();
                            }
                        }
                        match msg {
                            ApplianceMsg::Frame(sf) if sf.vlan != DEFAULT_VLAN => {
                                self.answer_segment(&sf, &mut out);
                            }
                            ApplianceMsg::Frame(sf) => {
                                match self.answer(sf.ingress, &sf.frame, &mut reply) {
                                    Some((port, true)) => self.wait_for_commit(port, &reply),
                                    Some((port, false)) => self.send(port, &reply, &mut out),
                                    None => self.answer_dns(sf.ingress, &sf.frame, &mut out),
                                }
                            }
                            ApplianceMsg::Dns(event) => {
                                let frames = self.dns.as_mut().map(|d| d.process_event(event));
                                self.send_all(frames.unwrap_or_default(), &mut out);
                            }
                            ApplianceMsg::Wake => self.answer_calls(),
                        }
                        handled += 1;
                        next = (handled < BATCH).then(|| self.rx.try_recv().ok()).flatten();
                    }
                    // The zone (and the workers' DNS memo) follows the batch's leases before
                    // its ACKs can leave: a client that has its ACK finds its name.
                    self.update_zone();
                    if let Some(dhcp) = self.dhcp.as_mut() {
                        dhcp.commit();
                    }
                    self.commit_segments();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let frames = self.dns.as_mut().map(DnsService::poll);
            self.send_all(frames.unwrap_or_default(), &mut out);
            self.poll_segments(&mut out);
            self.advertise(started.elapsed(), &mut out);
            let now = epoch_now();
            if now != last_sweep {
                last_sweep = now;
                self.tick_segments(now);
                if let Some(d6) = self.dhcp6.as_mut() {
                    d6.tick(now);
                }
                self.follow_leases6(now);
                if let Some(dhcp) = self.dhcp.as_mut() {
                    // Expired leases lose their guard binding (and their DNS name) within about
                    // a second.
                    dhcp.tick(now);
                    if let Some(dns) = self.dns.as_mut() {
                        dns.expire_leases(dhcp.live_leases(now));
                    }
                }
            }
        }
        if let Some(dhcp) = self.dhcp.as_mut() {
            dhcp.finish(epoch_now());
        }
        for seg in &mut self.segments {
            if let Some(dhcp) = seg.dhcp.as_mut() {
                dhcp.finish(epoch_now());
            }
            if let Some(dns) = seg.dns.as_mut() {
                dns.shut_down();
            }
        }
        let dns = self.dns.as_mut()?;
        dns.shut_down();
        Some(dns.counters())
    }

    /// Answers a frame of a segment's VLAN with that segment's identity, DHCP and DNS: out of
    /// the ingress port, tagged as the port carries the VLAN.
    fn answer_segment(&mut self, sf: &ServiceFrame, out: &mut Vec<u8>) {
        let Some(seg) = self.segments.iter_mut().find(|s| s.vlan == sf.vlan) else {
            return;
        };
        let (vlan, frame, ingress) = (sf.vlan, &sf.frame[..], sf.ingress);
        let Identity { mac, ip, .. } = seg.id;
        let mut reply = Vec::new();
        let frames = if arp_reply(frame, mac, ip, &mut reply)
            || icmp_echo_reply(frame, mac, ip, &mut reply)
        {
            vec![(ingress, reply)]
        } else if let Some(payload) = dhcp_payload(frame, ip) {
            let Some(dhcp) = seg.dhcp.as_mut() else {
                return;
            };
            let Some((r, wait)) = dhcp.handle(payload, ingress) else {
                return;
            };
            let src = MacAddr::from_bytes(&frame[6..12]);
            let port = PortId(r.port);
            let Some(f) = tag_for(&self.switch, port, vlan, emit_reply_frame(&r, mac, ip, src))
            else {
                return;
            };
            if wait {
                return dhcp.wait(port, f);
            }
            vec![(port, f)]
        } else {
            seg.dns
                .as_mut()
                .and_then(|d| d.process_frame(ingress, frame))
                .unwrap_or_default()
        };
        self.send_tagged(vlan, frames, out);
    }

    /// Sends `frames` of VLAN `vlan`, each tagged as its port carries the VLAN.
    fn send_tagged(&self, vlan: u16, frames: Vec<(PortId, Vec<u8>)>, out: &mut Vec<u8>) {
        for (port, frame) in frames {
            if let Some(f) = tag_for(&self.switch, port, vlan, frame) {
                self.send(port, &f, out);
            }
        }
    }

    /// Each segment's zone follows its batch's leases, then its journal commits.
    fn commit_segments(&mut self) {
        for seg in &mut self.segments {
            if let (Some(dns), Some(dhcp)) = (seg.dns.as_mut(), seg.dhcp.as_mut()) {
                dns.apply_lease_changes(dhcp.take_changes());
            }
            if let Some(dhcp) = seg.dhcp.as_mut() {
                dhcp.commit();
            }
        }
    }

    /// Each segment's DNS deadlines (TCP connections).
    fn poll_segments(&mut self, out: &mut Vec<u8>) {
        let polled: Vec<_> = self
            .segments
            .iter_mut()
            .filter_map(|s| Some((s.vlan, s.dns.as_mut()?.poll())))
            .collect();
        for (vlan, frames) in polled {
            self.send_tagged(vlan, frames, out);
        }
    }

    /// Each segment's lease expiry, once a second.
    fn tick_segments(&mut self, now: u64) {
        for seg in &mut self.segments {
            if let Some(dhcp) = seg.dhcp.as_mut() {
                dhcp.tick(now);
                if let Some(dns) = seg.dns.as_mut() {
                    dns.expire_leases(dhcp.live_leases(now));
                }
            }
        }
    }

    /// An unsolicited router advertisement, if one is due: out of every plugged port (the
    /// service port is not in the table).
    fn advertise(&mut self, now: std::time::Duration, out: &mut Vec<u8>) {
        let Some(ra) = self.ndp.as_mut().and_then(|n| n.poll(now)) else {
            return;
        };
        let ports: Vec<PortId> = {
            let table = self.ports.table();
            (0..table.slots.len())
                .map(|i| PortId(i as u16))
                .filter(|p| table.port(*p).is_some())
                .collect()
        };
        for port in ports {
            self.send(port, &ra, out);
        }
    }

    /// DNS to the gateway (UDP or TCP port 53), if `frame` is that.
    fn answer_dns(&mut self, ingress: PortId, frame: &[u8], out: &mut Vec<u8>) {
        if let Some(frames) = self
            .dns
            .as_mut()
            .and_then(|d| d.process_frame(ingress, frame))
        {
            self.send_all(frames, out);
        }
    }

    /// The zone follows the DHCPv6 binding changes (called before a REPLY leaves, so a client
    /// that has its REPLY finds its name, and after the expiries of a tick).
    fn names_follow_leases6(&mut self) {
        let Some(d6) = self.dhcp6.as_mut() else {
            return;
        };
        let changes = d6.take_changes();
        if let Some(dns) = self.dns.as_mut() {
            dns.apply_lease6_changes(&changes);
        }
    }

    /// Once a second: the zone follows the tick's expiries, and the lease file's IPv6 section,
    /// if behind, goes to its writer (the DHCPv4 service's; written here when DHCPv4 is off).
    fn follow_leases6(&mut self, now: u64) {
        self.names_follow_leases6();
        let Some(d6) = self.dhcp6.as_mut() else {
            return;
        };
        let dns = self.dns.as_ref();
        let name = |l: &Lease6| match dns {
            Some(d) => d.lease6_name(l),
            None => l.hostname.clone(),
        };
        let Some(section) = d6.take_file_section(now, name) else {
            return;
        };
        match self.dhcp.as_mut() {
            Some(dhcp) => dhcp.set_v6_section(section),
            None => {
                let path = d6.lease_file();
                if let Err(e) = write_atomically(path, section.as_bytes()) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot write the lease file");
                }
            }
        }
    }

    /// The zone follows the lease changes of the batch just handled.
    fn update_zone(&mut self) {
        if let (Some(dns), Some(dhcp)) = (self.dns.as_mut(), self.dhcp.as_mut()) {
            let changes = dhcp.take_changes();
            if !changes.is_empty() {
                // A DHCPv4 name may be a DHCPv6 binding's too (see `service::dns::lease6`).
                if let Some(d6) = self.dhcp6.as_mut() {
                    d6.mark_file_dirty();
                }
            }
            dns.apply_lease_changes(changes);
        }
    }

    fn send_all(&self, frames: Vec<(PortId, Vec<u8>)>, out: &mut Vec<u8>) {
        for (port, frame) in frames {
            self.send(port, &frame, out);
        }
    }

    /// Answers every waiting control call whose caller still waits (a call that timed out
    /// is dropped unanswered and unapplied: see [`Ticket`]).
    fn answer_calls(&mut self) {
        while let Some((call, ticket)) = self.calls.pop() {
            if ticket.take() {
                self.call(call);
            }
        }
    }

    /// Answers a control-plane call. A caller that gave up waiting is not an error.
    fn call(&mut self, call: Call) {
        match call {
            Call::Leases(answer) => {
                let now = epoch_now();
                let mut leases = self
                    .dhcp
                    .as_ref()
                    .map_or_else(Vec::new, |d| d.live_leases_sorted(now));
                for seg in &self.segments {
                    if let Some(d) = seg.dhcp.as_ref() {
                        leases.extend(d.live_leases_sorted(now));
                    }
                }
                let _ = answer.send(leases);
            }
            Call::DhcpStats(answer) => {
                let _ = answer.send(self.dhcp.as_ref().map(DhcpService::stats));
            }
            Call::DnsStats(answer) => {
                let _ = answer.send(self.dns.as_ref().map(DnsService::counters));
            }
            Call::Dhcp6(answer) => {
                let dns = self.dns.as_ref();
                let snap = self.dhcp6.as_ref().map(|d6| Dhcp6Snapshot {
                    leases: d6
                        .live_leases(epoch_now())
                        .into_iter()
                        .map(|l| {
                            let name =
                                dns.map_or_else(|| l.hostname.clone(), |d| d.lease6_name(&l));
                            (l, name)
                        })
                        .collect(),
                    counters: d6.counters(),
                });
                let _ = answer.send(snap);
            }
            Call::Hosts(config, answer) => {
                let result = self.apply_hosts(&config);
                let _ = answer.send(result);
            }
        }
    }

    /// The one place a change of hosts reaches the appliance's services: DHCP reservations and
    /// the DNS zone's names (the guard is updated by the caller, from the same `Config`).
    fn apply_hosts(&mut self, config: &Config) -> Result<(), String> {
        let now = epoch_now();
        if let Some(dhcp) = self.dhcp.as_mut() {
            dhcp.set_hosts(config, now)?;
        }
        if let Some(d6) = self.dhcp6.as_mut() {
            d6.set_hosts(config);
        }
        if let Some(dns) = self.dns.as_mut() {
            let live6 = self
                .dhcp6
                .as_ref()
                .map_or_else(Vec::new, |d| d.live_leases(now));
            match self.dhcp.as_ref() {
                Some(dhcp) => dns.set_hosts(config, dhcp.live_leases(now), &live6),
                None => dns.set_hosts(config, std::iter::empty(), &live6),
            }
        }
        Ok(())
    }

    /// Builds the reply to `frame` into `reply` and returns the port it leaves through (always
    /// the ingress port) and whether it must wait for the lease journal's commit; `None` if
    /// there is no reply.
    fn answer(
        &mut self,
        ingress: PortId,
        frame: &[u8],
        reply: &mut Vec<u8>,
    ) -> Option<(PortId, bool)> {
        if let Some(r) = self.ndp.as_mut().and_then(|n| n.handle(frame)) {
            *reply = r;
            return Some((ingress, false));
        }
        if let Some(r) = self.dhcp6.as_mut().and_then(|d| d.handle(ingress, frame)) {
            // Already durable: the DHCPv6 journal was fsynced before `handle` returned.
            *reply = r;
            // The names follow before the REPLY leaves; the lease file at the next tick.
            self.names_follow_leases6();
            return Some((ingress, false));
        }
        let Identity { mac, ip, .. } = self.id;
        if arp_reply(frame, mac, ip, reply) || icmp_echo_reply(frame, mac, ip, reply) {
            return Some((ingress, false));
        }
        let payload = dhcp_payload(frame, ip)?;
        let dhcp = self.dhcp.as_mut()?;
        let (r, wait) = dhcp.handle(payload, ingress)?;
        let src = MacAddr::from_bytes(&frame[6..12]);
        *reply = emit_reply_frame(&r, mac, ip, src);
        Some((PortId(r.port), wait))
    }

    /// A reply that acknowledges a lease change leaves only after the change is durable: the
    /// DHCP service's committer sends it after the fsync of its batch (group commit, off this
    /// thread). If the fsync fails it never leaves (the client retries).
    fn wait_for_commit(&mut self, port: PortId, frame: &[u8]) {
        if let Some(dhcp) = self.dhcp.as_mut() {
            dhcp.wait(port, frame.to_vec());
        }
    }

    /// Writes `frame` (no virtio-net header) out of `port`, counting it as the service port's
    /// output and the egress port's tx.
    fn send(&self, port: PortId, frame: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.resize(VNET_HDR_LEN, 0);
        out.extend_from_slice(frame);
        self.ports.capture.mirror(self.port, Dir::Rx, frame);
        self.ports.send_counted(&self.switch, port, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            ipv6: None,
        }
    }

    /// An IPv4 frame from a guest to `dst_mac`/`dst`, protocol `proto`, L4 bytes `l4`.
    fn ipv4(dst_mac: [u8; 6], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 9, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 9]);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn only_what_the_appliance_answers_is_served() {
        let me = [2, 0, 0, 0, 0, 1];
        let gw = [10, 0, 0, 1];
        let udp = |port: u16| {
            let mut l4 = vec![0, 68];
            l4.extend_from_slice(&port.to_be_bytes());
            l4.extend_from_slice(&[0, 8, 0, 0]);
            l4
        };
        let tcp = |port: u16| {
            let mut l4 = vec![0x30, 0x39];
            l4.extend_from_slice(&port.to_be_bytes());
            l4.extend_from_slice(&[0; 16]);
            l4
        };
        let cases: Vec<(Vec<u8>, Want)> = vec![
            (ipv4(me, gw, PROTO_UDP, &udp(53)), Want::Serve),
            (ipv4(me, gw, PROTO_UDP, &udp(67)), Want::Serve),
            (ipv4([0xff; 6], [255; 4], PROTO_UDP, &udp(67)), Want::Serve),
            (ipv4(me, gw, PROTO_TCP, &tcp(53)), Want::Serve),
            (ipv4(me, gw, PROTO_ICMP, &[8, 0, 0, 0]), Want::Serve),
            (ipv4(me, gw, PROTO_UDP, &udp(9)), Want::NotServed),
            (ipv4(me, gw, PROTO_TCP, &tcp(22)), Want::NotServed),
            (ipv4(me, gw, PROTO_ICMP, &[0, 0, 0, 0]), Want::NotServed),
            (ipv4(me, gw, PROTO_ICMP, &[3, 3, 0, 0]), Want::Ignore),
            (ipv4(me, gw, PROTO_ICMP, &[11, 0, 0, 0]), Want::Ignore),
            (ipv4(me, gw, 47, &[0; 8]), Want::NotServed),
            // To the appliance's MAC, another address: not served, counted.
            (
                ipv4(me, [10, 0, 0, 7], PROTO_UDP, &udp(53)),
                Want::NotServed,
            ),
            // A flood the appliance sees: ignored.
            (ipv4([0xff; 6], [255; 4], PROTO_UDP, &udp(9)), Want::Ignore),
            (
                ipv4([2, 0, 0, 0, 0, 7], [10, 0, 0, 7], PROTO_UDP, &udp(53)),
                Want::Ignore,
            ),
        ];
        for (i, (frame, want)) in cases.iter().enumerate() {
            assert_eq!(id().classify(frame), *want, "case {i}");
        }
        // A non-first fragment to port 53 has no ports: not served.
        let mut frag = ipv4(me, gw, PROTO_UDP, &udp(53));
        frag[14 + 7] = 0x10;
        assert_eq!(id().classify(&frag), Want::NotServed);
        // ARP: requests for the gateway are served, replies to it and requests for others not.
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[
            0x52, 0x54, 0, 0, 0, 9, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1,
        ]);
        arp.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 9, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0]);
        arp.extend_from_slice(&gw);
        assert_eq!(id().classify(&arp), Want::Serve);
        arp[21] = 2;
        assert_eq!(id().classify(&arp), Want::Ignore);
    }

    #[test]
    fn ipv6_is_served_as_ndp_says_and_icmpv6_to_us_is_ignored() {
        use crate::service::ndp::{Ndp, NdpParams};
        use crate::wire::ipv6::{self, Ends, NEXT_ICMPV6};
        let gw: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
        let params = NdpParams {
            mac: id().mac,
            gateway: gw,
            ra: None,
            dhcp6: false,
            dns: true,
        };
        let me = Identity {
            ipv6: Some(Ndp::new(params, std::time::Duration::ZERO).served()),
            ..id()
        };
        let ends = Ends {
            src_mac: MacAddr([0x52, 0x54, 0, 0, 0, 9]),
            dst_mac: id().mac,
            src: "fd00::9".parse().unwrap(),
            dst: gw,
        };
        let mut f = Vec::new();
        ipv6::build(
            &mut f,
            &ends,
            NEXT_ICMPV6,
            64,
            &[128, 0, 0, 0, 0, 1, 0, 1],
            2,
        );
        assert_eq!(me.classify(&f), Want::Serve, "ping6");
        assert_eq!(id().classify(&f), Want::NotServed, "no subnet6: not served");
        ipv6::build(&mut f, &ends, NEXT_ICMPV6, 64, &[1, 4, 0, 0, 0, 0, 0, 0], 2);
        assert_eq!(
            me.classify(&f),
            Want::Ignore,
            "port unreachable from a guest"
        );
        ipv6::build_udp(&mut f, &ends, (1000, 53), 64, b"q");
        assert_eq!(me.classify(&f), Want::Serve, "DNS over IPv6");
        ipv6::build_udp(&mut f, &ends, (1000, 9), 64, b"q");
        assert_eq!(me.classify(&f), Want::NotServed);
    }

    #[test]
    fn a_ticket_goes_to_whoever_moves_first() {
        let t = Ticket::default();
        assert!(t.abandon(), "the caller gave up first");
        assert!(!t.take(), "so the call is never applied");
        let t = Ticket::default();
        assert!(t.take(), "the appliance took it first");
        assert!(!t.abandon(), "so the caller waits for its answer");
    }

    #[test]
    fn default_mac_is_stable_local_unicast_and_per_network() {
        let a = default_mac("lab");
        assert_eq!(a, default_mac("lab"));
        assert_ne!(a, default_mac("lab2"));
        assert!(a.is_local() && a.is_valid_source());
    }
}
