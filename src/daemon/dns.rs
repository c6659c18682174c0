//! The DNS server's I/O inside the appliance thread: query frames in, answer frames out, and
//! the sockets to the upstream resolvers.
//!
//! Life of a query. A worker hands the appliance a frame to gateway:53. A UDP query goes to
//! the sans-IO [`DnsServer`]; a TCP segment goes to the [`TcpResponder`] first, which hands out
//! each complete query. A local or cached answer is built into a frame at once and leaves
//! through the ingress port. A query to forward is sent from a socket of its own on a random
//! port, opened in the daemon's own network namespace (never the lab's), and its id is random
//! too (RFC 5452, see [`upstream`]). A reader thread takes the upstreams' replies and pushes
//! them into the appliance's queue as [`DnsEvent`]s, tagged with the socket, so the zone, the
//! cache and the pending table stay in the appliance thread without locks. A forwarded
//! query with no reply within `timeout_ms` gets SERVFAIL. `[dns] listen` sockets work the same
//! way: a reader thread each, answers sent from the appliance thread.
//!
//! DHCP lease changes (ACK, release, decline) reach the zone right after the DHCP server
//! handles them, in the same thread; expiries once a second. A lease whose hostname collides
//! with a reservation is refused and logged.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::appliance::{ApplianceMsg, Identity};
use super::{DaemonError, TICK};
use crate::control::config::{dns_params, Config};
use crate::control::resolv;
use crate::service::dhcp::{ClientKey, Lease, LeaseChange};
use crate::service::dhcp6::{Change6, Lease6};
use crate::service::dns::tcp::{ConnKey, TcpOutput, TcpResponder};
use crate::service::dns::{
    ClientReply, DnsCounters, DnsServer, NameRefused, Outcome, Refused6, SharedMemo, Transport,
    Zone,
};
use crate::switch::PortId;
use crate::wire::ipv4::{build_udp, Ipv4View, UdpEndpoints, IPV4_HEADER_LEN, UDP_HEADER_LEN};
use crate::wire::ipv6::{self, Ipv6View};
use crate::wire::tcp::{build_tcp, TcpSegment, PROTO_TCP, TCP_HEADER_LEN};
use crate::wire::{MacAddr, VNET_HDR_LEN};

mod upstream;

use upstream::{OsRandom, UpstreamPool};

pub(super) const DNS_PORT: u16 = 53;
/// TCP connections at once, and how long one may stay silent.
const MAX_TCP_CONNS: usize = 256;
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How often pending queries and TCP connections are checked for their deadlines.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The largest DNS message read from a socket.
const MAX_DATAGRAM: usize = 65_535;

/// Something for the DNS server that did not come through the switch.
pub(super) enum DnsEvent {
    /// A datagram from `from` on upstream socket `via`.
    Upstream {
        from: SocketAddr,
        via: u64,
        bytes: Vec<u8>,
    },
    /// A query on `[dns] listen` socket number `socket`.
    Listen {
        socket: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
}

/// Where an answer goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Client {
    /// A UDP query from the segment: reply out of `port` to `mac`/`ip`:`udp_port`.
    Frame {
        port: PortId,
        mac: MacAddr,
        ip: Ipv4Addr,
        udp_port: u16,
    },
    /// A UDP query over IPv6 to `gateway6`: reply out of `port` to `mac`/`ip`:`udp_port`.
    Frame6 {
        port: PortId,
        mac: MacAddr,
        ip: Ipv6Addr,
        udp_port: u16,
    },
    /// A query on a TCP connection through the service port.
    Tcp(ConnKey),
    /// A query on listen socket `socket` from `addr`.
    Listen { socket: usize, addr: SocketAddr },
}

/// Per-connection data of the TCP responder: where its segments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TcpPeer {
    port: PortId,
    mac: MacAddr,
}

/// A frame to send out of a port.
pub(super) type OutFrame = (PortId, Vec<u8>);

/// The fast path in the worker that read the query: a UDP query to gateway:53 that the
/// memo has an answer for (a local name, or a cache hit in its second) is answered there and
/// then, out of the port it came in on, and never reaches the appliance thread. That saves the
/// two thread hand-offs (worker to appliance, and the appliance's wake-up) that cost more than
/// the answer itself. Anything else goes to the appliance as before; the answer bytes are the
/// ones the appliance would send (the memo holds the full path's own answers).
#[derive(Clone)]
pub(super) struct WorkerDns {
    memo: Arc<SharedMemo>,
    /// The DNS service's clock, which the memo's cached answers are timed by.
    start: Instant,
    udp_limit: usize,
    id: Identity,
}

impl WorkerDns {
    /// If `frame` (no virtio-net header, checksums complete) is a UDP query to the gateway's
    /// port 53 that the memo answers, builds the answer frame into `out`, after an all-zero
    /// virtio-net header, and returns true. `scratch` is a work buffer.
    pub(super) fn answer(&self, frame: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> bool {
        let Some(ip) = Ipv4View::parse(frame) else {
            return false;
        };
        if ip.dst != self.id.ip {
            return false;
        }
        let Some((src_port, DNS_PORT, query)) = ip.udp() else {
            return false;
        };
        let now = self.start.elapsed();
        let Some(answer) = self.memo.answer_udp(query, self.udp_limit, now) else {
            return false;
        };
        let ep = UdpEndpoints {
            src_mac: self.id.mac,
            dst_mac: ip.src_mac,
            src: self.id.ip,
            dst: ip.src,
            src_port: DNS_PORT,
            dst_port: src_port,
        };
        build_udp(scratch, &ep, &answer);
        out.clear();
        out.resize(VNET_HDR_LEN, 0);
        out.extend_from_slice(scratch);
        true
    }
}

/// The DNS server with its sockets.
pub(super) struct DnsService {
    server: DnsServer<Client>,
    tcp: TcpResponder<TcpPeer>,
    id: Identity,
    /// The forwarder's sockets, one per query in flight, on random ports.
    upstream: UpstreamPool,
    listeners: Vec<Arc<UdpSocket>>,
    threads: Vec<JoinHandle<()>>,
    start: Instant,
    /// Largest UDP payload on the segment (MTU - IP and UDP headers).
    udp_limit: usize,
    last_poll: Duration,
    /// Without `[dns] upstreams`: the host's resolv.conf files, looked at again now and then.
    host_resolvers: Option<resolv::Watch>,
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

impl DnsService {
    /// Opens the upstream and listen sockets (in the daemon's namespace) and starts a reader
    /// thread for each, feeding `tx` until `stop`.
    pub(super) fn start(
        config: &Config,
        id: Identity,
        tx: &SyncSender<ApplianceMsg>,
        stop: &Arc<AtomicBool>,
    ) -> Result<DnsService, DaemonError> {
        let params = dns_params(config);
        let (upstream, reader) = UpstreamPool::start(tx.clone(), Arc::clone(stop))?;
        let mut threads = vec![reader];
        let ids = OsRandom::new().map_err(io_err("reading the kernel's random generator"))?;
        let mut listeners = Vec::new();
        for (socket, addr) in config.dns.listen.iter().enumerate() {
            let sock =
                Arc::new(UdpSocket::bind(addr).map_err(io_err("binding a [dns] listen address"))?);
            tracing::info!(%addr, "DNS also answering on a listen socket");
            threads.push(spawn_reader(
                Arc::clone(&sock),
                tx.clone(),
                Arc::clone(stop),
                move |from, bytes| DnsEvent::Listen {
                    socket,
                    from,
                    bytes,
                },
            )?);
            listeners.push(sock);
        }
        let mtu = config.network.mtu as usize;
        let our_mss = u16::try_from(mtu.saturating_sub(IPV4_HEADER_LEN + TCP_HEADER_LEN))
            .unwrap_or(u16::MAX)
            .max(536);
        Ok(DnsService {
            server: DnsServer::new(&params, seed()).with_ids(Box::new(ids)),
            tcp: TcpResponder::new(MAX_TCP_CONNS, TCP_IDLE, our_mss, seed().rotate_left(17)),
            id,
            upstream,
            listeners,
            threads,
            start: Instant::now(),
            udp_limit: mtu.saturating_sub(IPV4_HEADER_LEN + UDP_HEADER_LEN),
            last_poll: Duration::ZERO,
            host_resolvers: config
                .dns
                .upstreams_from_host
                .then(|| resolv::Watch::new(config.network.gateway)),
        })
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The server's counters, with the answers the workers gave from the memo.
    pub(super) fn counters(&self) -> DnsCounters {
        let mut c = self.server.counters;
        let (local, cached) = self.server.shared_memo().counts();
        c.queries += local + cached;
        c.local += local;
        c.local_fast += local;
        c.cache_hits += cached;
        c.cache_fast += cached;
        c.shared_fast += local + cached;
        c
    }

    /// What a data-plane worker needs to answer from the memo itself.
    pub(super) fn for_workers(&self) -> WorkerDns {
        WorkerDns {
            memo: self.server.shared_memo(),
            start: self.start,
            udp_limit: self.udp_limit,
            id: self.id,
        }
    }

    /// Handles `frame` from `ingress` if it is DNS for the appliance (UDP or TCP to
    /// gateway:53): `None` if it is not, else the frames to send.
    pub(super) fn process_frame(&mut self, ingress: PortId, frame: &[u8]) -> Option<Vec<OutFrame>> {
        let Some(ip) = Ipv4View::parse(frame) else {
            return self.process_frame6(ingress, frame);
        };
        if ip.dst != self.id.ip {
            return None;
        }
        let now = self.now();
        if let Some((src_port, dst_port, payload)) = ip.udp() {
            if dst_port != DNS_PORT {
                return None;
            }
            let client = Client::Frame {
                port: ingress,
                mac: ip.src_mac,
                ip: ip.src,
                udp_port: src_port,
            };
            let transport = Transport::Udp {
                limit: self.udp_limit,
            };
            let outcome = self
                .server
                .process_query(payload, client.clone(), transport, now);
            return Some(self.carry_out(outcome, client));
        }
        if ip.protocol != PROTO_TCP {
            return None;
        }
        let seg = TcpSegment::parse(&ip)?;
        if seg.dst_port != DNS_PORT {
            return None;
        }
        let peer = TcpPeer {
            port: ingress,
            mac: ip.src_mac,
        };
        let outputs = self.tcp.process_segment(ip.src, &seg, peer, now);
        Some(self.tcp_outputs(outputs, now))
    }

    /// A UDP query over IPv6 to `gateway6`:53 (DNS over TCP is IPv4 only).
    fn process_frame6(&mut self, ingress: PortId, frame: &[u8]) -> Option<Vec<OutFrame>> {
        let ip = Ipv6View::parse(frame)?;
        if Some(ip.dst) != self.id.ipv6.map(|v6| v6.gateway) {
            return None;
        }
        let (src_port, DNS_PORT, payload) = ip.udp()? else {
            return None;
        };
        let client = Client::Frame6 {
            port: ingress,
            mac: ip.src_mac,
            ip: ip.src,
            udp_port: src_port,
        };
        // The IPv6 header is 20 bytes longer than IPv4's.
        let transport = Transport::Udp {
            limit: self.udp_limit.saturating_sub(20),
        };
        let outcome = self
            .server
            .process_query(payload, client.clone(), transport, self.now());
        Some(self.carry_out(outcome, client))
    }

    /// Segments become frames; queries go to the server, and local answers straight back.
    fn tcp_outputs(&mut self, outputs: Vec<TcpOutput<TcpPeer>>, now: Duration) -> Vec<OutFrame> {
        let mut frames = Vec::new();
        let mut work = outputs;
        while !work.is_empty() {
            let mut next = Vec::new();
            for o in work {
                match o {
                    TcpOutput::Segment {
                        meta,
                        key,
                        header,
                        payload,
                    } => {
                        let mut f = Vec::with_capacity(54 + payload.len());
                        build_tcp(
                            &mut f,
                            &self.endpoints(meta.mac, key.ip, key.port),
                            &header,
                            &payload,
                        );
                        frames.push((meta.port, f));
                    }
                    TcpOutput::Query { key, message } => {
                        let client = Client::Tcp(key);
                        match self.server.process_query(
                            &message,
                            client.clone(),
                            Transport::Tcp,
                            now,
                        ) {
                            Outcome::Reply(bytes) => {
                                next.extend(self.tcp.answer(key, Some(&bytes), now))
                            }
                            Outcome::Drop(_) => next.extend(self.tcp.answer(key, None, now)),
                            Outcome::Forward { upstream, query } => {
                                self.send_upstream(upstream, &query, None)
                            }
                        }
                    }
                }
            }
            work = next;
        }
        frames
    }

    fn endpoints(&self, mac: MacAddr, ip: Ipv4Addr, port: u16) -> UdpEndpoints {
        UdpEndpoints {
            src_mac: self.id.mac,
            dst_mac: mac,
            src: self.id.ip,
            dst: ip,
            src_port: DNS_PORT,
            dst_port: port,
        }
    }

    /// Sends a reply to a client wherever it is: frames for the segment are returned.
    fn deliver(&mut self, reply: ClientReply<Client>, now: Duration) -> Vec<OutFrame> {
        match reply.client {
            Client::Frame {
                port,
                mac,
                ip,
                udp_port,
            } => {
                let mut f = Vec::with_capacity(42 + reply.bytes.len());
                build_udp(&mut f, &self.endpoints(mac, ip, udp_port), &reply.bytes);
                vec![(port, f)]
            }
            Client::Frame6 {
                port,
                mac,
                ip,
                udp_port,
            } => {
                let Some(v6) = self.id.ipv6 else {
                    return Vec::new();
                };
                let ends = ipv6::Ends {
                    src_mac: self.id.mac,
                    dst_mac: mac,
                    src: v6.gateway,
                    dst: ip,
                };
                let mut f = Vec::with_capacity(62 + reply.bytes.len());
                ipv6::build_udp(&mut f, &ends, (DNS_PORT, udp_port), 64, &reply.bytes);
                vec![(port, f)]
            }
            Client::Tcp(key) => {
                let outputs = self.tcp.answer(key, Some(&reply.bytes), now);
                self.tcp_outputs(outputs, now)
            }
            Client::Listen { socket, addr } => {
                if let Some(s) = self.listeners.get(socket) {
                    if let Err(e) = s.send_to(&reply.bytes, addr) {
                        tracing::debug!(%addr, error = %e, "DNS answer on a listen socket not sent");
                    }
                }
                Vec::new()
            }
        }
    }

    fn carry_out(&mut self, outcome: Outcome, client: Client) -> Vec<OutFrame> {
        match outcome {
            Outcome::Reply(bytes) => {
                let now = self.now();
                self.deliver(
                    ClientReply {
                        client,
                        transport: Transport::Tcp,
                        bytes,
                    },
                    now,
                )
            }
            Outcome::Forward { upstream, query } => {
                self.send_upstream(upstream, &query, None);
                Vec::new()
            }
            Outcome::Drop(_) => Vec::new(),
        }
    }

    /// Sends a forwarded query from socket `via` (a retry: the socket its first copy left
    /// from), else from a fresh one, and tells the server which; a failure is left to the
    /// timeout (SERVFAIL).
    fn send_upstream(&mut self, upstream: SocketAddr, query: &[u8], via: Option<u64>) {
        let Some(via) = via.or_else(|| self.upstream.socket_for(upstream)) else {
            return;
        };
        self.server.sent_via(query, via);
        self.upstream.send(via, upstream, query);
    }

    /// Handles an event from a reader thread.
    pub(super) fn process_event(&mut self, event: DnsEvent) -> Vec<OutFrame> {
        let now = self.now();
        match event {
            DnsEvent::Upstream { from, via, bytes } => {
                match self
                    .server
                    .process_upstream_via(&bytes, from, Some(via), now)
                {
                    Some(reply) => self.deliver(reply, now),
                    None => Vec::new(),
                }
            }
            DnsEvent::Listen {
                socket,
                from,
                bytes,
            } => {
                let client = Client::Listen { socket, addr: from };
                // A UDP socket on the host's side: answers up to the EDNS size, no path limit.
                let transport = Transport::Udp {
                    limit: MAX_DATAGRAM,
                };
                let outcome = self
                    .server
                    .process_query(&bytes, client.clone(), transport, now);
                self.carry_out(outcome, client)
            }
        }
    }

    /// Deadlines: retries to a second upstream, SERVFAIL for timed-out queries, TCP
    /// retransmissions and idle resets.
    pub(super) fn poll(&mut self) -> Vec<OutFrame> {
        let now = self.now();
        if now.saturating_sub(self.last_poll) < POLL_EVERY {
            return Vec::new();
        }
        self.last_poll = now;
        self.follow_host_resolvers(now);
        for (upstream, query) in self.server.poll_retries(now) {
            let via = self.server.via_of(&query);
            self.send_upstream(upstream, &query, via);
        }
        let mut frames = Vec::new();
        for reply in self.server.poll_timeouts(now) {
            frames.extend(self.deliver(reply, now));
        }
        self.upstream.retire(&self.server.sockets_in_use());
        let outputs = self.tcp.poll(now);
        frames.extend(self.tcp_outputs(outputs, now));
        frames
    }

    /// Takes the host's resolvers again if their files changed (see [`resolv::Watch`]).
    fn follow_host_resolvers(&mut self, now: Duration) {
        let Some((file, upstreams)) = self.host_resolvers.as_mut().and_then(|w| w.changed(now))
        else {
            return;
        };
        if upstreams == self.server.upstreams() {
            return;
        }
        match &file {
            Some(f) => tracing::info!(file = %f.display(), ?upstreams,
                "dns: the host's resolvers changed; these are the upstreams now"),
            None => tracing::warn!(
                "dns: the host's resolv.conf names no usable nameserver any more: outside \
                 names get REFUSED"
            ),
        }
        self.server.set_upstreams(upstreams);
    }

    /// Applies DHCP lease changes to the zone, logging refused names.
    pub(super) fn apply_lease_changes(&mut self, changes: Vec<LeaseChange>) {
        for change in changes {
            match change {
                LeaseChange::Upsert(lease) => self.upsert_lease(&lease),
                LeaseChange::Remove(key) => self.server.zone_mut().remove_lease(&key),
            }
        }
    }

    /// Loads every live lease (at start).
    pub(super) fn load_leases<'a>(&mut self, leases: impl Iterator<Item = &'a Lease>) {
        for l in leases {
            self.upsert_lease(l);
        }
    }

    /// Drops the names of leases that are no longer live (once a second, for expiries).
    pub(super) fn expire_leases<'a>(&mut self, live: impl Iterator<Item = &'a Lease>) {
        let live: HashSet<&ClientKey> = live.map(|l| &l.key).collect();
        self.server.zone_mut().retain_leases(|k| live.contains(k));
    }

    /// The hosts changed (`host add`/`del`, reload): rebuild the zone from `config`'s hosts and
    /// records, then put the live leases and DHCPv6 bindings back (a lease whose name is now a
    /// host's is refused).
    pub(super) fn set_hosts<'a>(
        &mut self,
        config: &Config,
        live: impl Iterator<Item = &'a Lease>,
        live6: &[Lease6],
    ) {
        *self.server.zone_mut() = Zone::new(&dns_params(config));
        self.load_leases(live);
        for l in live6 {
            self.upsert_lease6(l);
        }
    }

    /// Applies DHCPv6 binding changes to the zone (AAAA and `ip6.arpa` names).
    pub(super) fn apply_lease6_changes(&mut self, changes: &[Change6]) {
        for change in changes {
            match change {
                Change6::Upsert(l) => self.upsert_lease6(l),
                Change6::Remove { duid, iaid } => self.server.zone_mut().remove_lease6(duid, *iaid),
            }
        }
    }

    /// The name a DHCPv6 binding has in the zone (for the lease file).
    pub(super) fn lease6_name(&self, lease: &Lease6) -> Option<String> {
        self.server.zone().lease6_name(lease.ip).map(str::to_string)
    }

    fn upsert_lease6(&mut self, lease: &Lease6) {
        if let Err(Refused6::Reserved { name, ip }) = self.server.zone_mut().upsert_lease6(lease) {
            tracing::warn!(
                hostname = %name, ip = %ip,
                "DHCPv6 client FQDN not put in DNS: it is a reserved host's name"
            );
        }
    }

    fn upsert_lease(&mut self, lease: &Lease) {
        match self.server.zone_mut().upsert_lease(lease) {
            Ok(()) => {}
            Err(NameRefused::Reserved { name, ip }) => tracing::warn!(
                hostname = %name, ip = %ip, mac = %lease.mac,
                "DHCP hostname not put in DNS: it is a reserved host's name"
            ),
            Err(NameRefused::Invalid(name)) => tracing::info!(
                hostname = %name.escape_debug(), ip = %lease.ip,
                "DHCP hostname not put in DNS: not a valid DNS label"
            ),
        }
    }

    /// Joins the reader threads (they stop within a tick of the stop flag).
    pub(super) fn shut_down(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Reads datagrams from `sock` until `stop`, pushing each into the appliance's queue as
/// `event(from, bytes)`; a full queue drops it (a forwarded query then times out).
fn spawn_reader(
    sock: Arc<UdpSocket>,
    tx: SyncSender<ApplianceMsg>,
    stop: Arc<AtomicBool>,
    event: impl Fn(SocketAddr, Vec<u8>) -> DnsEvent + Send + 'static,
) -> Result<JoinHandle<()>, DaemonError> {
    sock.set_read_timeout(Some(TICK))
        .map_err(io_err("setting a DNS socket's timeout"))?;
    thread::Builder::new()
        .name("sy-dns-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while !stop.load(Ordering::Relaxed) {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let msg = ApplianceMsg::Dns(event(from, buf[..n].to_vec()));
                        match tx.try_send(msg) {
                            Ok(()) | Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "DNS socket read failed");
                        thread::sleep(TICK);
                    }
                }
            }
        })
        .map_err(io_err("spawning a DNS socket reader"))
}
