//! The daemon: builds the ports a `Config` describes, runs the data-plane workers, and tears
//! everything down again on SIGINT/SIGTERM.
//!
//! Theory of operation. `run` builds every namespace and tap first; if any of them fails, what
//! was built is dropped again (each `Netns` and `TapPort` undoes itself on drop) and the error
//! names the port, so the daemon never starts half-built. Then one worker thread per core (or
//! `[switch] workers`) takes a share of the ports: it owns an epoll set over their fds, reads each
//! ready port in a batch until EAGAIN (at most `BATCH` frames per wake-up, so one busy port cannot
//! starve the others), hands each frame to `Switch::process`, and writes it straight to the
//! egress fd (run to completion: no queue between read and write). Any worker may write to any
//! port: a tap write is one atomic frame. The main thread waits for signals and ages the FDB.
//!
//! Replies. A host usually answers a frame inside the write that delivered it (the kernel runs
//! the receiving stack in the writer's context), so after its batch a worker also reads the
//! other workers' ports it has just written to (`collect_replies`): the reply crosses without
//! waking the port's owner, which in a VM is a cross-CPU interrupt of several microseconds on
//! the round trip. One reader at a time per port (`Ports::readers`, a try-lock) keeps each
//! port's frames in order; epoll is level-triggered, so frames one reader leaves behind still
//! wake the owner.
//!
//! This is the only module that reads the clock: `now` is the time since the daemon started.
//!
//! Frames carry their 12-byte virtio-net header end to end: the bytes read from a tap, header
//! included, are the bytes written to the egress tap. Taps run with TSO and checksum offload, so
//! a frame may be a 64 KiB GSO super-frame or carry a partial checksum; it crosses to a port that
//! `accepts_offloads` as it is (one read, one write), and is cut into plain frames and summed by
//! `wire::gso` on the way to one that does not (the appliance; later port kinds without a
//! virtio-net header). Each worker owns a scratch buffer for that, next to its read buffer.
//!
//! Hotplug (see `hotplug.rs`). The port table has `[switch] max_ports` slots, plus the service
//! port's fixed slot after them; configured ports take the first slots in file order. The
//! table sits behind a `RwLock` that a worker reads once per batch (one port, up to `BATCH`
//! frames) and that only `port add|del` and a reload write; each worker's epoll set is shared
//! with the control thread, which adds a new port to the least loaded worker's set.

mod appliance;
mod capture;
mod control;
mod dhcp;
mod dns;
mod hotplug;
mod log_json;
mod loops;
mod metrics;
mod nat;
mod notify;
mod privileges;

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::control::config::{dhcp_params, AddressMode, Config, PortConfig, PortKind, TapConfig};
use crate::port::netns::Netns;
use crate::port::packet::PacketPort;
use crate::port::socket::{DgramPort, StreamPort};
use crate::port::tap::TapPort;
use crate::port::{self, Epoll, Port, PortError};
use crate::switch::{DropReason, PortId, PortSpec, Switch, SwitchParams, Verdict};
use crate::wire::{gso, VNET_HDR_LEN};

/// Frames read from one port per wake-up before the worker moves on to the next ready port.
const BATCH: usize = 64;
/// Room for the virtio-net header and the largest frame a tap can hand over (64 KiB GSO + L2).
const FRAME_BUF: usize = VNET_HDR_LEN + 65_550;
/// How often workers look at the stop flag when idle, and the main thread ages the FDB.
const TICK: Duration = Duration::from_millis(200);
/// Frames queued for the appliance before further ones are dropped (`tx_full` on its port).
const SERVICE_QUEUE: usize = 4096;
/// The service port's name in counters.
const SERVICE_PORT_NAME: &str = "appliance";
/// Nice value of the data-plane workers, as ovs-ctl gives ovs-vswitchd by default: a woken worker
/// should not wait a scheduler slice behind batch jobs with a frame in hand (the kernel bridge
/// forwards in softirq, ahead of every task). The workers sleep in epoll when there is nothing
/// to move. Without CAP_SYS_NICE they keep the daemon's priority.
const WORKER_NICE: i32 = -10;

pub use appliance::{default_mac, Identity};
pub use log_json::JsonLines;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("port '{port}': {source}")]
    Port { port: String, source: PortError },
    #[error("DHCP: {message}")]
    Dhcp { message: String },
    #[error("{message}")]
    Control { message: String },
    #[error("forward = \"nat\": {message}")]
    Nat { message: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// One port in its slot, and what it needs to live.
///
/// Field order is drop order: the port closes (a tap the daemon made vanishes, a socket file is
/// removed) before its namespace handle goes (and with the last handle, a namespace the daemon
/// created).
struct Plugged {
    port: Port,
    /// The worker whose epoll set watches `port`.
    worker: usize,
    _netns: Option<Arc<Netns>>,
}

/// The slots of the running switch's ports, in `PortId` order (`None`: a free slot, and the
/// service port's), and the namespaces they live in.
struct Ports {
    slots: RwLock<Vec<Option<Plugged>>>,
    /// `switchyard capture`'s mirror: one atomic load per frame while no capture runs.
    capture: Arc<capture::Capture>,
    /// One reader at a time per port, by slot: its owner woken by epoll, or another worker
    /// collecting the reply to a frame it has just written there (see `Worker::collect_replies`).
    /// Whoever holds it reads and forwards a batch, so a port's frames keep their order.
    readers: Box<[AtomicBool]>,
    /// Every namespace a port lives in, shared by the ports there.
    namespaces: Mutex<Vec<Weak<Netns>>>,
}

/// The port table as one batch of a worker (or one appliance send) sees it.
struct Table<'a> {
    slots: RwLockReadGuard<'a, Vec<Option<Plugged>>>,
    capture: &'a capture::Capture,
}

impl Ports {
    /// The table for one batch: a read lock, held until the returned value is dropped.
    fn table(&self) -> Table<'_> {
        Table {
            slots: self.slots.read().unwrap_or_else(PoisonError::into_inner),
            capture: &self.capture,
        }
    }

    /// `Table::send_counted` for a single frame (the appliance's replies, loop probes).
    fn send_counted(&self, switch: &Switch, port: PortId, bytes: &[u8]) {
        self.table().send_counted(switch, port, bytes);
    }

    /// Once a tick: packet ports look for their netdev; every link's news reaches the switch.
    fn tick(&self, switch: &Switch) {
        let table = self.table();
        for (i, p) in table.slots.iter().enumerate() {
            if let Some(p) = p {
                p.port.tick();
                table.sync_link(switch, PortId(i as u16));
            }
        }
    }
}

impl Table<'_> {
    fn port(&self, port: PortId) -> Option<&Port> {
        self.slots
            .get(port.index())
            .and_then(Option::as_ref)
            .map(|p| &p.port)
    }

    /// Writes `bytes` (virtio-net header + frame) out of `port`, never blocking, and counts the
    /// outcome on that port: tx on success, `tx_full` if its queue is full, `needs_offload` for a
    /// GSO/partial-checksum frame a socket port cannot take, `port_down` if its peer is gone (or
    /// the port was unplugged a moment ago), `tx_error` otherwise.
    fn send_counted(&self, switch: &Switch, port: PortId, bytes: &[u8]) {
        let Some(p) = self.port(port) else {
            return switch.count_drop(port, DropReason::PortDown);
        };
        match p.send(bytes) {
            Ok(_) => {
                let frame = &bytes[bytes.len().min(VNET_HDR_LEN)..];
                self.capture.mirror(port, capture::Dir::Tx, frame);
                switch.count_tx(port, frame.len());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                switch.count_drop(port, DropReason::TxFull)
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                switch.count_drop(port, DropReason::NeedsOffload)
            }
            // A socket port whose peer left a moment ago (the switch learns it at its next read).
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                switch.count_drop(port, DropReason::PortDown)
            }
            Err(_) => switch.count_drop(port, DropReason::TxError),
        }
    }

    /// Reads one header + frame from `port`. What its link reported meanwhile (peer or netdev
    /// come or gone, counted events) is for the caller to apply (`sync_link`) before the frame
    /// is processed. An empty slot (a port unplugged after epoll reported it) has nothing to read.
    fn recv(&self, port: PortId, buf: &mut [u8]) -> io::Result<usize> {
        let Some(p) = self.port(port) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        p.recv(buf)
    }

    /// The worker whose epoll set watches `port`, if a port is plugged there.
    fn owner(&self, port: PortId) -> Option<usize> {
        self.slots.get(port.index())?.as_ref().map(|p| p.worker)
    }

    fn sync_link(&self, switch: &Switch, port: PortId) {
        let Some(report) = self.port(port).and_then(Port::link).and_then(|l| l.take()) else {
            return;
        };
        switch.set_port_up(port, report.up);
        switch.count_link_downs(port, report.downs);
        for _ in 0..report.bad_lengths {
            switch.count_drop(port, DropReason::BadLength);
        }
        for _ in 0..report.oversize {
            switch.count_drop(port, DropReason::Mtu);
        }
    }

    /// Whether `port` takes GSO super-frames and partial checksums as they are; a port that does
    /// not gets plain frames from `wire::gso`. Each port kind says what it can take.
    fn accepts_offloads(&self, port: PortId) -> bool {
        self.port(port).is_some_and(Port::offloads)
    }
}

/// Builds every namespace and port of `config` into the first slots of a table of
/// `[switch] max_ports` slots and the service port's, or none. Workers are given later.
fn build_ports(config: &Config) -> Result<Ports, DaemonError> {
    let ports = Ports {
        slots: RwLock::new(Vec::new()),
        capture: Arc::new(capture::Capture::new(config.switch.max_ports + 1)),
        readers: (0..=config.switch.max_ports)
            .map(|_| AtomicBool::new(false))
            .collect(),
        namespaces: Mutex::new(Vec::new()),
    };
    let mut slots = Vec::with_capacity(config.switch.max_ports + 1);
    for p in &config.ports {
        let (port, netns) = ports
            .open_port(config, p)
            .map_err(|source| DaemonError::Port {
                port: p.name.clone(),
                source,
            })?;
        slots.push(Some(Plugged {
            port,
            worker: 0,
            _netns: netns,
        }));
    }
    slots.resize_with(config.switch.max_ports + 1, || None);
    *ports.slots.write().unwrap_or_else(PoisonError::into_inner) = slots;
    Ok(ports)
}

impl Ports {
    /// The namespace `name`, shared with the ports already there, or opened (with `create`,
    /// created) if no port lives there yet.
    fn netns(&self, name: &str, create: bool) -> Result<Arc<Netns>, PortError> {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        namespaces.retain(|n| n.strong_count() > 0);
        if let Some(ns) = namespaces
            .iter()
            .filter_map(Weak::upgrade)
            .find(|n| n.name() == name)
        {
            return Ok(ns);
        }
        let ns = Arc::new(if create {
            Netns::ensure(name)?
        } else {
            Netns::open(name)?
        });
        namespaces.push(Arc::downgrade(&ns));
        Ok(ns)
    }

    /// Opens port `p` of `config`, with the namespace it lives in.
    fn open_port(
        &self,
        config: &Config,
        p: &PortConfig,
    ) -> Result<(Port, Option<Arc<Netns>>), PortError> {
        match &p.kind {
            PortKind::Tap(tap_cfg) => {
                let ns = match &tap_cfg.netns {
                    Some(name) => Some(self.netns(name, true)?),
                    None => None,
                };
                let tap = open_tap(config, p, tap_cfg, ns.as_deref())?;
                Ok((Port::Tap(tap), ns))
            }
            PortKind::Packet(cfg) => {
                let ns = match &cfg.netns {
                    Some(name) => Some(self.netns(name, false)?),
                    None => None,
                };
                let port = PacketPort::open(&cfg.ifname, ns.as_deref())?;
                tracing::info!(port = %p.name, ifname = %cfg.ifname,
                    netns = %cfg.netns.as_deref().unwrap_or("-"), "port: packet");
                Ok((Port::Packet(port), ns))
            }
            other => open_socket_port(p, other).map(|port| (port, None)),
        }
    }
}

/// Opens a stream or dgram port.
fn open_socket_port(p: &PortConfig, kind: &PortKind) -> Result<Port, PortError> {
    match kind {
        PortKind::Stream(cfg) => {
            let port = StreamPort::open(&cfg.path, p.mtu)?;
            tracing::info!(port = %p.name, path = %cfg.path.display(), "port: stream");
            Ok(Port::Stream(port))
        }
        PortKind::Dgram(cfg) => {
            let port = DgramPort::open(&cfg.path, cfg.peer.as_deref(), p.mtu)?;
            tracing::info!(port = %p.name, path = %cfg.path.display(), "port: dgram");
            Ok(Port::Dgram(port))
        }
        PortKind::Tap(_) | PortKind::Packet(_) => unreachable!("opened by Ports::open_port"),
    }
}

fn open_tap(
    config: &Config,
    p: &PortConfig,
    tap_cfg: &TapConfig,
    netns: Option<&Netns>,
) -> Result<TapPort, PortError> {
    let host = p.host.map(|h| &config.hosts[h]);
    // A persistent tap and its namespace outlive the daemon; a restart finds the tap there.
    let mut tap = if tap_cfg.persist {
        let tap = TapPort::open_persistent(&tap_cfg.ifname, p.mtu, netns)?;
        if let Some(ns) = netns {
            ns.keep();
        }
        tap
    } else {
        TapPort::open(&tap_cfg.ifname, p.mtu)?
    };
    match (&tap_cfg.netns, netns) {
        (Some(ns_name), Some(ns)) => {
            let ipv4 = match tap_cfg.address {
                AddressMode::Static => host
                    .and_then(|h| h.ipv4)
                    .map(|a| (a, config.network.subnet.prefix_len())),
                AddressMode::None => None,
            };
            tap.plug_into(ns, host.and_then(|h| h.mac), ipv4)?;
            tracing::info!(
                port = %p.name,
                ifname = %tap_cfg.ifname,
                netns = %ns_name,
                mac = %host.and_then(|h| h.mac).map_or_else(|| "-".into(), |m| m.to_string()),
                ipv4 = %ipv4.map(|(a, l)| format!("{a}/{l}")).unwrap_or_else(|| "-".into()),
                persist = tap.is_persistent(),
                "port up: tap plugged into namespace"
            );
        }
        _ => {
            tap.bring_up()?;
            if let Some(addr) = tap_cfg.host_address {
                tap.add_ipv4(addr, config.network.subnet.prefix_len())?;
            }
            tracing::info!(port = %p.name, ifname = %tap_cfg.ifname,
                host_address = %tap_cfg.host_address.map_or_else(|| "-".into(), |a| a.to_string()),
                persist = tap.is_persistent(), "port up: tap");
        }
    }
    Ok(tap)
}

fn switch_for(config: &Config) -> Switch {
    let params = SwitchParams {
        ageing: config.switch.ageing,
        max_macs: config.switch.max_macs,
        max_macs_per_port: config.switch.max_macs_per_port,
        storm_limit: config.switch.storm_limit,
        loop_key: config.switch.loop_detection.then(loops::random_key),
    };
    let mut slots: Vec<Option<PortSpec>> = config
        .ports
        .iter()
        .map(|p| Some(port_spec(config, p)))
        .collect();
    slots.resize(config.switch.max_ports, None);
    slots.push(Some(PortSpec {
        name: SERVICE_PORT_NAME.to_string(),
        mtu: config.network.mtu,
        isolated: false,
        policy: None,
    }));
    let sw = Switch::with_slots(&params, slots);
    for s in &config.switch.static_fdb {
        sw.add_static(s.mac, PortId(s.port as u16));
    }
    sw.add_static(identity(config).mac, service_port(config));
    sw
}

/// What the switch needs of port `p` of `config`.
fn port_spec(config: &Config, p: &PortConfig) -> PortSpec {
    PortSpec {
        name: p.name.clone(),
        mtu: p.mtu,
        isolated: p.isolated,
        policy: p.policy(config),
    }
}

/// The appliance's address and MAC on the segment.
fn identity(config: &Config) -> Identity {
    Identity {
        mac: default_mac(&config.network.name),
        ip: config.network.gateway,
    }
}

/// The service port's slot comes after every slot a port may take.
fn service_port(config: &Config) -> PortId {
    PortId(config.switch.max_ports as u16)
}

fn worker_count(config: &Config) -> usize {
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

/// Runs the switch described by `config` until SIGINT or SIGTERM; returns the final counters.
pub fn run(config: &Config) -> Result<(), DaemonError> {
    // Block the stop signals in every thread (workers inherit the mask); the main thread takes
    // them synchronously with sigtimedwait.
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    port::block_signals(&signals).map_err(|source| DaemonError::Io {
        what: "blocking signals",
        source,
    })?;
    // The control socket first: a second daemon for the same network is refused here, before
    // it touches a tap.
    let gid = control::resolve_group(config.control.group.as_deref())?;
    let listener = control::bind_socket(&config.control.socket, gid)?;
    let _socket_file = RemoveOnDrop(config.control.socket.clone());
    let ports = Arc::new(build_ports(config)?);
    // After the host port exists; its table and ip_forward are undone when `nat` drops, on
    // SIGINT/SIGTERM and on any startup failure below alike.
    let nat = nat::Nat::install(config)?;
    let metrics_listener = match config.control.metrics {
        None => None,
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|source| DaemonError::Io {
                what: "binding the [metrics] listen address",
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| DaemonError::Io {
                what: "setting the metrics listener non-blocking",
                source,
            })?;
            Some(l)
        }
    };
    // Setup is done: from here on (and in every thread started from here) only what the
    // running daemon uses.
    let dropped = privileges::drop_privileges(config)?;
    let switch = Arc::new(switch_for(config));
    ports.tick(&switch);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let (service_tx, service_rx) = sync_channel(SERVICE_QUEUE);
    let mut service = Service {
        port: service_port(config),
        mtu: config.network.mtu as usize,
        id: identity(config),
        tx: service_tx,
        dns: None,
    };
    let dns = if config.dns.enabled {
        Some(dns::DnsService::start(
            config,
            service.id,
            &service.tx,
            &stop,
        )?)
    } else {
        None
    };
    service.dns = dns.as_ref().map(dns::DnsService::for_workers);
    let dhcp = if config.dhcp.enabled {
        let svc = dhcp::DhcpService::open(
            dhcp_params(config),
            config.dhcp.journal_path(),
            config.dhcp.lease_file.clone(),
            Arc::clone(&switch),
            dhcp::ReplySink::new(Arc::clone(&ports), Arc::clone(&switch), service.port),
            dropped.service_nice(),
        )
        .map_err(|message| DaemonError::Dhcp { message })?;
        Some(svc)
    } else {
        None
    };
    let n_workers = worker_count(config);
    let epolls = give_ports_to_workers(&ports, n_workers)?;
    let control = Arc::new(control::Control {
        switch: Arc::clone(&switch),
        ports: Arc::clone(&ports),
        epolls: epolls.clone(),
        max_ports: config.switch.max_ports,
        next_slot: std::sync::atomic::AtomicUsize::new(config.ports.len()),
        capture: Arc::clone(&ports.capture),
        appliance: service.tx.clone(),
        live: Mutex::new(config.clone()),
        identity: service.id,
        service_port: service.port,
        start,
        stop: Arc::clone(&stop),
        gid,
        connections: Default::default(),
    });
    let appliance = appliance::Appliance {
        id: service.id,
        port: service.port,
        rx: service_rx,
        ports: Arc::clone(&ports),
        switch: Arc::clone(&switch),
        dhcp,
        dns,
        nice: dropped.service_nice(),
    };
    let appliance_handle = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("sy-appliance".into())
            .spawn(move || appliance.run(&stop))
            .map_err(|source| DaemonError::Io {
                what: "spawning the appliance thread",
                source,
            })?
    };

    let mut handles = Vec::with_capacity(n_workers);
    for (w, epoll) in epolls.into_iter().enumerate() {
        let worker = Worker {
            ports: Arc::clone(&ports),
            switch: Arc::clone(&switch),
            service: service.clone(),
            epoll,
            start,
            id: w,
            poll: config.switch.poll,
            written: RefCell::new(Vec::with_capacity(WRITTEN_MAX)),
            spare: RefCell::new(vec![0u8; FRAME_BUF]),
            dns_out: RefCell::new((Vec::with_capacity(1600), Vec::with_capacity(1600))),
        };
        let stop = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name(format!("sy-worker-{w}"))
            .spawn(move || worker.run(&stop))
            .map_err(|source| DaemonError::Io {
                what: "spawning a worker thread",
                source,
            })?;
        handles.push(handle);
    }
    dropped.workers_started();
    let mut service_threads = vec![spawn_named("sy-control", {
        let control = Arc::clone(&control);
        move || control.serve(listener)
    })?];
    if let Some(l) = metrics_listener {
        let control = Arc::clone(&control);
        service_threads.push(spawn_named("sy-metrics", move || {
            metrics::serve(control, l)
        })?);
    }
    tracing::info!(
        network = %config.network.name,
        ports = config.ports.len(),
        max_ports = config.switch.max_ports,
        workers = n_workers,
        control_socket = %config.control.socket.display(),
        metrics = %config.control.metrics.map_or_else(|| "off".into(), |a| a.to_string()),
        "switch running; SIGINT or SIGTERM stops it, SIGHUP reloads the config"
    );
    notify::notify("READY=1");

    let mut monitored_seen = vec![0u64; switch.port_count()];
    let mut prober = loops::LoopProber::new(&switch, identity(config).mac, config.switch.max_ports);
    loop {
        match port::wait_signal(&signals, TICK) {
            Ok(Some(libc::SIGHUP)) => {
                // Logged (and notified) by `reload` itself.
                let _ = control.reload();
            }
            Ok(Some(sig)) => {
                tracing::info!(signal = sig, "stopping");
                break;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "waiting for signals failed; stopping");
                break;
            }
        }
        switch.expire(start.elapsed());
        ports.tick(&switch);
        prober.tick(&switch, &ports, start.elapsed());
        log_monitored(&switch, &mut monitored_seen);
    }
    notify::notify("STOPPING=1");
    stop.store(true, Ordering::Relaxed);
    drop(service);
    drop(control);
    for h in handles.into_iter().chain(service_threads) {
        if h.join().is_err() {
            tracing::error!("a data-plane thread panicked");
        }
    }
    let dns_counters = appliance_handle.join().unwrap_or_else(|_| {
        tracing::error!("the appliance thread panicked");
        None
    });
    log_kernel_drops(&ports, &switch);
    print!("{}", counters_table(&switch));
    if let Some(c) = dns_counters {
        println!("dns: {c}");
    }
    drop(nat);
    // Dropping the last reference to `ports` closes the taps and removes created namespaces.
    drop(ports);
    tracing::info!("stopped; taps and namespaces the daemon created are removed");
    Ok(())
}

impl Worker {
    /// Hands `bytes` (virtio-net header + frame) to the appliance as plain frames with complete
    /// checksums, if it wants them; never blocks. The appliance verifies checksums, so a partial
    /// one is completed and a super-frame segmented (at the network's MTU) first.
    fn dispatch_to_appliance(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        bytes: &[u8],
        scratch: &mut [u8],
    ) {
        let frame = &bytes[bytes.len().min(VNET_HDR_LEN)..];
        if !self.service.id.wants(frame) {
            return;
        }
        if !gso::needs_software(bytes) {
            return self.enqueue_for_appliance(table, ingress, frame);
        }
        let done = gso::for_each_segment(bytes, self.service.mtu, scratch, |seg| {
            self.enqueue_for_appliance(table, ingress, &seg[VNET_HDR_LEN..]);
        });
        if done.is_err() {
            self.switch.count_drop(ingress, DropReason::Malformed);
        }
    }

    /// Hands one plain frame to the appliance, unless it is a DNS query the memo answers:
    /// that one is answered here, out of `ingress` (see `dns::WorkerDns`).
    fn enqueue_for_appliance(&self, table: &Table<'_>, ingress: PortId, frame: &[u8]) {
        if let Some(dns) = &self.service.dns {
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
                return table.send_counted(&self.switch, ingress, out);
            }
        }
        let sf = appliance::ApplianceMsg::Frame(appliance::ServiceFrame {
            ingress,
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

/// Logs, at most once a tick per port, what a monitor-mode guard would have dropped since the
/// last tick: the way to debug a guest's policy before enforcing it, without flooding the log.
fn log_monitored(switch: &Switch, seen: &mut [u64]) {
    for (i, last) in seen.iter_mut().enumerate() {
        let id = PortId(i as u16);
        let c = switch.counters(id);
        let total = c.total_monitored();
        if total < *last {
            // A new port in a reused slot: its counters started again.
            *last = 0;
        }
        if total > *last {
            let reasons: Vec<String> = DropReason::ALL
                .iter()
                .filter(|r| c.monitored(**r) > 0)
                .map(|r| format!("{}={}", r.name(), c.monitored(*r)))
                .collect();
            tracing::warn!(
                port = %switch.port_spec(id).name,
                new = total - *last,
                totals = %reasons.join(" "),
                "guard (monitor mode) would have dropped frames"
            );
            *last = total;
        }
    }
}

/// Logs, per tap, the frames the kernel dropped at its ring because the switch had not read
/// them in time (the netdev's `tx_dropped`): loss that the switch's own counters cannot see.
fn log_kernel_drops(ports: &Ports, switch: &Switch) {
    let table = ports.table();
    for (i, p) in table.slots.iter().enumerate() {
        let Some(Plugged {
            port: Port::Tap(tap),
            ..
        }) = p
        else {
            continue;
        };
        let port = &switch.port_spec(PortId(i as u16)).name;
        match tap.kernel_tx_dropped() {
            Ok(0) => {}
            Ok(dropped) => tracing::warn!(%port, dropped,
                "the kernel dropped frames at the tap's ring before the switch read them"),
            Err(e) => tracing::debug!(%port, error = %e, "cannot read the tap's kernel drops"),
        }
    }
}

/// The per-port counters as a table, one row per port.
pub fn counters_table(switch: &Switch) -> String {
    let mut out = format!(
        "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8} {:>6}  {}\n",
        "PORT", "RX_FRAMES", "RX_BYTES", "TX_FRAMES", "TX_BYTES", "FDB_FULL", "DOWNS", "DROPS"
    );
    for id in switch.present_ports() {
        let c = switch.counters(id);
        out.push_str(&format!(
            "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8} {:>6}  {}\n",
            switch.port_spec(id).name,
            c.rx_frames,
            c.rx_bytes,
            c.tx_frames,
            c.tx_bytes,
            c.fdb_full,
            c.link_downs,
            c.drops_summary()
        ));
    }
    out
}

/// Spawns a named thread.
fn spawn_named(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<thread::JoinHandle<()>, DaemonError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| DaemonError::Io {
            what: "spawning a control-plane thread",
            source,
        })
}

/// Removes the control socket's file when the daemon stops (or fails to start after binding).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a worker reaches the appliance.
#[derive(Clone)]
struct Service {
    port: PortId,
    /// The segment's MTU: what frames for the appliance are cut to.
    mtu: usize,
    id: Identity,
    tx: SyncSender<appliance::ApplianceMsg>,
    /// DNS answers the worker gives itself (`None` without DNS).
    dns: Option<dns::WorkerDns>,
}

/// One data-plane thread: an epoll set over its ports (shared with the control thread, which
/// adds and removes hotplugged ports), and a frame buffer.
struct Worker {
    ports: Arc<Ports>,
    switch: Arc<Switch>,
    service: Service,
    epoll: Arc<Epoll>,
    start: Instant,
    /// This worker's index (`Plugged::worker` of the ports its epoll set watches).
    id: usize,
    /// `[switch] poll_us`.
    poll: Duration,
    /// Ports of other workers that this one wrote frames to since it last looked at them.
    written: RefCell<Vec<PortId>>,
    /// The second frame buffer of `process_port`, which reads one frame ahead.
    spare: RefCell<Vec<u8>>,
    /// Where a DNS answer from the memo is built (the frame, and a work buffer).
    dns_out: RefCell<(Vec<u8>, Vec<u8>)>,
}

/// How many foreign egress ports a worker remembers between looks; frames flooded to more are
/// left to their owners.
const WRITTEN_MAX: usize = 8;
/// Rounds of `collect_replies` after a wake-up's batches, at most.
const COLLECT_ROUNDS: usize = 4;

/// One epoll set per worker, with the configured ports dealt round-robin into them.
fn give_ports_to_workers(ports: &Ports, n_workers: usize) -> Result<Vec<Arc<Epoll>>, DaemonError> {
    let io_err = |what| move |source| DaemonError::Io { what, source };
    let epolls = (0..n_workers)
        .map(|_| Epoll::new().map(Arc::new))
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_err("creating an epoll instance"))?;
    let mut slots = ports.slots.write().unwrap_or_else(PoisonError::into_inner);
    for (i, slot) in slots.iter_mut().enumerate() {
        if let Some(p) = slot {
            p.worker = i % n_workers;
            epolls[p.worker]
                .add(p.port.fd(), i as u64)
                .map_err(io_err("adding a port to epoll"))?;
        }
    }
    Ok(epolls)
}

impl Worker {
    fn run(self, stop: &AtomicBool) {
        if let Err(e) = port::set_thread_nice(WORKER_NICE) {
            tracing::debug!(error = %e, nice = WORKER_NICE, "worker keeps the default priority");
        }
        let mut buf = vec![0u8; FRAME_BUF];
        let mut scratch = vec![0u8; FRAME_BUF];
        let mut events = port::Events::with_capacity(BATCH);
        // Busy polling (`[switch] poll_us`): after a wake-up that found frames, look again
        // without sleeping until `poll` passes with none. On a VM, waking a halted vCPU costs
        // tens of microseconds per frame; a polling worker pays a core instead.
        let mut poll_until: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let timeout = match poll_until {
                Some(t) if Instant::now() < t => Duration::ZERO,
                _ => TICK,
            };
            let ready = self.epoll.wait(&mut events, timeout);
            if !self.poll.is_zero() && matches!(ready, Ok(n) if n > 0) {
                poll_until = Some(Instant::now() + self.poll);
            }
            let ready = match ready {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "epoll_wait failed; worker stops");
                    return;
                }
            };
            let now = self.start.elapsed();
            for i in 0..ready {
                let id = PortId(events.token(i) as u16);
                self.process_port_exclusive(id, &mut buf, &mut scratch, now);
            }
            // Replies to what was just written, while this worker is still awake: a few rounds
            // (a reply may go to a third port and be answered in turn), then back to its own
            // epoll set, so that traffic between other workers' ports cannot hold it here.
            for _ in 0..COLLECT_ROUNDS {
                if !self.collect_replies(&mut buf, &mut scratch) {
                    break;
                }
            }
        }
    }

    /// `process_port` if no other worker is reading `ingress` now; else the port is left to it
    /// (epoll is level-triggered, so frames it leaves behind wake this worker again).
    fn process_port_exclusive(
        &self,
        ingress: PortId,
        buf: &mut [u8],
        scratch: &mut [u8],
        now: Duration,
    ) {
        let Some(reader) = self.ports.readers.get(ingress.index()) else {
            return;
        };
        if reader
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.process_port(ingress, buf, scratch, now);
            reader.store(false, Ordering::Release);
        }
    }

    /// Reads the ports of other workers that this one has just written to.
    ///
    /// A host that answers a frame (a ping, a TCP ACK, a DNS reply) usually does so inside the
    /// write that delivered it: the kernel runs the receiving stack in the writer's context, so
    /// by the time `write` returns the reply is queued on the egress tap. Its owner would need a
    /// wake-up (a cross-CPU IPI, several microseconds in a VM) to forward it; this worker is
    /// awake and takes it instead. It costs one `read` that finds nothing (EAGAIN) per such port
    /// when no reply came. Returns whether anything was looked at: frames taken may have been
    /// written to further ports, whose replies the caller collects in turn.
    fn collect_replies(&self, buf: &mut [u8], scratch: &mut [u8]) -> bool {
        let written = std::mem::take(&mut *self.written.borrow_mut());
        if written.is_empty() {
            return false;
        }
        let now = self.start.elapsed();
        for port in &written {
            self.process_port_exclusive(*port, buf, scratch, now);
        }
        // Give the allocation back for the next round.
        let mut slot = self.written.borrow_mut();
        if slot.is_empty() {
            *slot = written;
            slot.clear();
        }
        true
    }

    /// Notes that a frame went out of `egress`, a port another worker reads.
    fn note_written(&self, table: &Table<'_>, egress: PortId) {
        if table.owner(egress).is_none_or(|w| w == self.id) {
            return;
        }
        let mut written = self.written.borrow_mut();
        if written.len() < WRITTEN_MAX && !written.contains(&egress) {
            written.push(egress);
        }
    }

    /// Reads up to `BATCH` frames from `ingress` and carries out each verdict, in order, one
    /// frame behind the reads: frame k+1 is read into the other buffer and its FDB buckets
    /// prefetched before frame k is processed, so that the table's cache misses for a frame
    /// overlap the work on the one before it (the next read's syscall, the previous write)
    /// instead of stalling its lookup. What a read's link report says (`Table::sync_link`) is
    /// applied after the frame before it is processed and before its own frame, as if read and
    /// process alternated; the read that ends the batch (`WouldBlock`, an error) ends it after
    /// the frame in hand is processed.
    fn process_port(&self, ingress: PortId, buf: &mut [u8], scratch: &mut [u8], now: Duration) {
        // One read lock for the batch: a port unplugged meanwhile waits for its end.
        let table = self.ports.table();
        let mut spare = self.spare.borrow_mut();
        let (mut held_buf, mut read_buf): (&mut [u8], &mut [u8]) = (buf, &mut spare[..]);
        // The length of the frame read into `held_buf` and not yet processed.
        let mut held = None;
        for _ in 0..BATCH {
            let read = table.recv(ingress, read_buf);
            if let Ok(n) = read {
                self.switch.prefetch_vnet(&read_buf[..n]);
            }
            if let Some(n) = held.take() {
                self.handle_frame(&table, ingress, &held_buf[..n], scratch, now);
            }
            table.sync_link(&self.switch, ingress);
            match read {
                Ok(n) => {
                    held = Some(n);
                    std::mem::swap(&mut held_buf, &mut read_buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The netdev went away or the fd broke: take the port out of service rather
                    // than spin on it. The other ports are unaffected.
                    tracing::warn!(port = %self.switch.port_spec(ingress).name, error = %e,
                        "read failed; port goes down");
                    self.switch.set_port_up(ingress, false);
                    if let Some(p) = table.port(ingress) {
                        let _ = self.epoll.delete(p.fd());
                    }
                    return;
                }
            }
        }
        if let Some(n) = held {
            self.handle_frame(&table, ingress, &held_buf[..n], scratch, now);
        }
    }

    /// Mirrors one frame read from `ingress` (virtio-net header + frame) to a running capture,
    /// decides its fate and carries it out.
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
        match self.switch.process_vnet(ingress, bytes, now) {
            Verdict::Forward(egress) => self.dispatch(table, ingress, egress, bytes, scratch),
            Verdict::Flood => {
                for egress in self.switch.flood_targets_vnet(ingress, bytes) {
                    self.dispatch(table, ingress, egress, bytes, scratch);
                }
            }
            Verdict::Drop(_) => {}
        }
    }

    /// Writes one frame (virtio-net header included) out of `egress`, never blocking: as it is
    /// if the port accepts offloads or the frame needs none, else as the plain frames
    /// `wire::gso` makes of it (a frame it cannot cut is counted `malformed` on the ingress).
    fn dispatch(
        &self,
        table: &Table<'_>,
        ingress: PortId,
        egress: PortId,
        bytes: &[u8],
        scratch: &mut [u8],
    ) {
        if egress == self.service.port {
            return self.dispatch_to_appliance(table, ingress, bytes, scratch);
        }
        self.note_written(table, egress);
        if table.accepts_offloads(egress) || !gso::needs_software(bytes) {
            return table.send_counted(&self.switch, egress, bytes);
        }
        let mtu = self.switch.port_mtu(egress) as usize;
        let done = gso::for_each_segment(bytes, mtu, scratch, |seg| {
            table.send_counted(&self.switch, egress, seg);
        });
        if done.is_err() {
            self.switch.count_drop(ingress, DropReason::Malformed);
        }
    }
}
