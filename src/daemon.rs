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
//! This is the only module that reads the clock: `now` is the time since the daemon started.
//!
//! Frames carry their 12-byte virtio-net header end to end: the bytes read from a tap, header
//! included, are the bytes written to the egress tap. Taps run with TSO and checksum offload, so
//! a frame may be a 64 KiB GSO super-frame or carry a partial checksum; it crosses to a port that
//! `accepts_offloads` as it is (one read, one write), and is cut into plain frames and summed by
//! `wire::gso` on the way to one that does not (the appliance; later port kinds without a
//! virtio-net header). Each worker owns a scratch buffer for that, next to its read buffer.

mod appliance;
mod capture;
mod control;
mod dhcp;
mod dns;
mod log_json;
mod loops;
mod metrics;
mod notify;
mod privileges;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// The running switch's ports, in `PortId` order, with their namespaces.
///
/// Field order is drop order: taps close (and non-persistent ones vanish) before the namespaces
/// the daemon created are removed.
struct Ports {
    ports: Vec<Port>,
    /// `switchyard capture`'s mirror: one atomic load per frame while no capture runs.
    capture: Arc<capture::Capture>,
    _namespaces: Vec<Netns>,
}

impl Ports {
    /// Writes `bytes` (virtio-net header + frame) out of `port`, never blocking, and counts the
    /// outcome on that port: tx on success, `tx_full` if its queue is full, `needs_offload` for a
    /// GSO/partial-checksum frame a socket port cannot take, `port_down` if its peer is gone,
    /// `tx_error` otherwise.
    fn send_counted(&self, switch: &Switch, port: PortId, bytes: &[u8]) {
        match self.ports[port.index()].send(bytes) {
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

    /// Reads one header + frame from `port`, then applies what its link reported (peer or
    /// netdev come or gone, counted events) to the switch before the frame is processed.
    fn recv(&self, switch: &Switch, port: PortId, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.ports[port.index()].recv(buf);
        self.sync_link(switch, port);
        r
    }

    fn sync_link(&self, switch: &Switch, port: PortId) {
        let Some(report) = self.ports[port.index()].link().and_then(|l| l.take()) else {
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

    /// Once a tick: packet ports look for their netdev; every link's news reaches the switch.
    fn tick(&self, switch: &Switch) {
        for (i, p) in self.ports.iter().enumerate() {
            p.tick();
            self.sync_link(switch, PortId(i as u16));
        }
    }
}

impl Ports {
    /// Whether `port` takes GSO super-frames and partial checksums as they are; a port that does
    /// not gets plain frames from `wire::gso`. Each port kind says what it can take.
    fn accepts_offloads(&self, port: PortId) -> bool {
        self.ports[port.index()].offloads()
    }
}

/// Builds every namespace and port of `config`, or none.
fn build_ports(config: &Config) -> Result<Ports, DaemonError> {
    let mut namespaces: Vec<Netns> = Vec::new();
    let mut ports = Vec::with_capacity(config.ports.len());
    for p in &config.ports {
        let port = open_port(config, p, &mut namespaces).map_err(|source| DaemonError::Port {
            port: p.name.clone(),
            source,
        })?;
        ports.push(port);
    }
    Ok(Ports {
        ports,
        // Every configured port and the service port.
        capture: Arc::new(capture::Capture::new(config.ports.len() + 1)),
        _namespaces: namespaces,
    })
}

/// The index in `namespaces` of the namespace `name`, opened (or, with `create`, created) if
/// it is not there yet.
fn netns_index(namespaces: &mut Vec<Netns>, name: &str, create: bool) -> Result<usize, PortError> {
    if let Some(i) = namespaces.iter().position(|n| n.name() == name) {
        return Ok(i);
    }
    let ns = if create {
        Netns::ensure(name)?
    } else {
        Netns::open(name)?
    };
    namespaces.push(ns);
    Ok(namespaces.len() - 1)
}

fn open_port(
    config: &Config,
    p: &PortConfig,
    namespaces: &mut Vec<Netns>,
) -> Result<Port, PortError> {
    match &p.kind {
        PortKind::Tap(tap_cfg) => open_tap(config, p, tap_cfg, namespaces).map(Port::Tap),
        PortKind::Packet(cfg) => {
            let ns = match &cfg.netns {
                Some(name) => Some(netns_index(namespaces, name, false)?),
                None => None,
            };
            let port = PacketPort::open(&cfg.ifname, ns.map(|i| &namespaces[i]))?;
            tracing::info!(port = %p.name, ifname = %cfg.ifname,
                netns = %cfg.netns.as_deref().unwrap_or("-"), "port: packet");
            Ok(Port::Packet(port))
        }
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
    }
}

fn open_tap(
    config: &Config,
    p: &PortConfig,
    tap_cfg: &TapConfig,
    namespaces: &mut Vec<Netns>,
) -> Result<TapPort, PortError> {
    let host = p.host.map(|h| &config.hosts[h]);
    // A persistent tap and its namespace outlive the daemon; a restart finds the tap there.
    let ns_idx = match &tap_cfg.netns {
        Some(ns_name) => Some(netns_index(namespaces, ns_name, true)?),
        None => None,
    };
    let mut tap = if tap_cfg.persist {
        let tap = TapPort::open_persistent(&tap_cfg.ifname, p.mtu, ns_idx.map(|i| &namespaces[i]))?;
        if let Some(idx) = ns_idx {
            namespaces[idx].keep();
        }
        tap
    } else {
        TapPort::open(&tap_cfg.ifname, p.mtu)?
    };
    match (&tap_cfg.netns, ns_idx) {
        (Some(ns_name), Some(idx)) => {
            let ipv4 = match tap_cfg.address {
                AddressMode::Static => host
                    .and_then(|h| h.ipv4)
                    .map(|a| (a, config.network.subnet.prefix_len())),
                AddressMode::None => None,
            };
            tap.plug_into(&namespaces[idx], host.and_then(|h| h.mac), ipv4)?;
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
            tracing::info!(port = %p.name, ifname = %tap_cfg.ifname,
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
    let specs = config
        .ports
        .iter()
        .map(|p| PortSpec {
            name: p.name.clone(),
            mtu: p.mtu,
            isolated: p.isolated,
            policy: p.policy(config),
        })
        .chain(std::iter::once(PortSpec {
            name: SERVICE_PORT_NAME.to_string(),
            mtu: config.network.mtu,
            isolated: false,
            policy: None,
        }))
        .collect::<Vec<_>>();
    let sw = Switch::new(&params, specs);
    for s in &config.switch.static_fdb {
        sw.add_static(s.mac, PortId(s.port as u16));
    }
    sw.add_static(identity(config).mac, service_port(config));
    sw
}

/// The appliance's address and MAC on the segment.
fn identity(config: &Config) -> Identity {
    Identity {
        mac: default_mac(&config.network.name),
        ip: config.network.gateway,
    }
}

/// The service port comes after every configured port.
fn service_port(config: &Config) -> PortId {
    PortId(config.ports.len() as u16)
}

fn worker_count(config: &Config) -> usize {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = if config.switch.workers == 0 {
        cores
    } else {
        config.switch.workers
    };
    wanted.clamp(1, config.ports.len().max(1))
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
    let service = Service {
        port: service_port(config),
        mtu: config.network.mtu as usize,
        id: identity(config),
        tx: service_tx,
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
    let dhcp = if config.dhcp.enabled {
        let svc = dhcp::DhcpService::open(
            dhcp_params(config),
            config.dhcp.journal_path(),
            config.dhcp.lease_file.clone(),
            Arc::clone(&switch),
        )
        .map_err(|message| DaemonError::Dhcp { message })?;
        Some(svc)
    } else {
        None
    };
    let control = Arc::new(control::Control {
        switch: Arc::clone(&switch),
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

    let n_workers = worker_count(config);
    let mut handles = Vec::with_capacity(n_workers);
    for w in 0..n_workers {
        let mine: Vec<PortId> = (0..ports.ports.len())
            .filter(|i| i % n_workers == w)
            .map(|i| PortId(i as u16))
            .collect();
        let worker = Worker::new(
            Arc::clone(&ports),
            Arc::clone(&switch),
            service.clone(),
            mine,
            start,
        )?;
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
        ports = ports.ports.len(),
        workers = n_workers,
        control_socket = %config.control.socket.display(),
        metrics = %config.control.metrics.map_or_else(|| "off".into(), |a| a.to_string()),
        "switch running; SIGINT or SIGTERM stops it, SIGHUP reloads the config"
    );
    notify::notify("READY=1");

    let mut monitored_seen = vec![0u64; switch.port_count()];
    let mut prober = loops::LoopProber::new(&switch, identity(config).mac, config.ports.len());
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
    // Dropping the last reference to `ports` closes the taps and removes created namespaces.
    drop(ports);
    tracing::info!("stopped; taps and namespaces the daemon created are removed");
    Ok(())
}

impl Worker {
    /// Hands `bytes` (virtio-net header + frame) to the appliance as plain frames with complete
    /// checksums, if it wants them; never blocks. The appliance verifies checksums, so a partial
    /// one is completed and a super-frame segmented (at the network's MTU) first.
    fn dispatch_to_appliance(&self, ingress: PortId, bytes: &[u8], scratch: &mut [u8]) {
        let frame = &bytes[bytes.len().min(VNET_HDR_LEN)..];
        if !self.service.id.wants(frame) {
            return;
        }
        if !gso::needs_software(bytes) {
            return self.enqueue_for_appliance(ingress, frame);
        }
        let done = gso::for_each_segment(bytes, self.service.mtu, scratch, |seg| {
            self.enqueue_for_appliance(ingress, &seg[VNET_HDR_LEN..]);
        });
        if done.is_err() {
            self.switch.count_drop(ingress, DropReason::Malformed);
        }
    }

    fn enqueue_for_appliance(&self, ingress: PortId, frame: &[u8]) {
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
    for (i, p) in ports.ports.iter().enumerate() {
        let Port::Tap(tap) = p else {
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
    for i in 0..switch.port_count() {
        let id = PortId(i as u16);
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
}

/// One data-plane thread: an epoll set over its ports, and a frame buffer.
struct Worker {
    ports: Arc<Ports>,
    switch: Arc<Switch>,
    service: Service,
    mine: Vec<PortId>,
    epoll: Epoll,
    start: Instant,
}

impl Worker {
    fn new(
        ports: Arc<Ports>,
        switch: Arc<Switch>,
        service: Service,
        mine: Vec<PortId>,
        start: Instant,
    ) -> Result<Worker, DaemonError> {
        let io_err = |what| move |source| DaemonError::Io { what, source };
        let epoll = Epoll::new().map_err(io_err("creating an epoll instance"))?;
        for id in &mine {
            epoll
                .add(ports.ports[id.index()].fd(), u64::from(id.0))
                .map_err(io_err("adding a port to epoll"))?;
        }
        Ok(Worker {
            ports,
            switch,
            service,
            mine,
            epoll,
            start,
        })
    }

    fn run(self, stop: &AtomicBool) {
        if let Err(e) = port::set_thread_nice(WORKER_NICE) {
            tracing::debug!(error = %e, nice = WORKER_NICE, "worker keeps the default priority");
        }
        let mut buf = vec![0u8; FRAME_BUF];
        let mut scratch = vec![0u8; FRAME_BUF];
        let mut events = port::Events::with_capacity(self.mine.len().max(1));
        while !stop.load(Ordering::Relaxed) {
            let ready = match self.epoll.wait(&mut events, TICK) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "epoll_wait failed; worker stops");
                    return;
                }
            };
            let now = self.start.elapsed();
            for i in 0..ready {
                let id = PortId(events.token(i) as u16);
                self.process_port(id, &mut buf, &mut scratch, now);
            }
        }
    }

    /// Reads up to `BATCH` frames from `ingress` and carries out each verdict.
    fn process_port(&self, ingress: PortId, buf: &mut [u8], scratch: &mut [u8], now: Duration) {
        for _ in 0..BATCH {
            let n = match self.ports.recv(&self.switch, ingress, buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The netdev went away or the fd broke: take the port out of service rather
                    // than spin on it. The other ports are unaffected.
                    tracing::warn!(port = %self.switch.port_spec(ingress).name, error = %e,
                        "read failed; port goes down");
                    self.switch.set_port_up(ingress, false);
                    let _ = self.epoll.delete(self.ports.ports[ingress.index()].fd());
                    return;
                }
            };
            let bytes = &buf[..n];
            self.ports
                .capture
                .mirror(ingress, capture::Dir::Rx, &bytes[n.min(VNET_HDR_LEN)..]);
            match self.switch.process_vnet(ingress, bytes, now) {
                Verdict::Forward(egress) => self.dispatch(ingress, egress, bytes, scratch),
                Verdict::Flood => {
                    for egress in self.switch.flood_targets_vnet(ingress, bytes) {
                        self.dispatch(ingress, egress, bytes, scratch);
                    }
                }
                Verdict::Drop(_) => {}
            }
        }
    }

    /// Writes one frame (virtio-net header included) out of `egress`, never blocking: as it is
    /// if the port accepts offloads or the frame needs none, else as the plain frames
    /// `wire::gso` makes of it (a frame it cannot cut is counted `malformed` on the ingress).
    fn dispatch(&self, ingress: PortId, egress: PortId, bytes: &[u8], scratch: &mut [u8]) {
        if egress == self.service.port {
            return self.dispatch_to_appliance(ingress, bytes, scratch);
        }
        if self.ports.accepts_offloads(egress) || !gso::needs_software(bytes) {
            return self.ports.send_counted(&self.switch, egress, bytes);
        }
        let mtu = self.switch.port_spec(egress).mtu as usize;
        let done = gso::for_each_segment(bytes, mtu, scratch, |seg| {
            self.ports.send_counted(&self.switch, egress, seg);
        });
        if done.is_err() {
            self.switch.count_drop(ingress, DropReason::Malformed);
        }
    }
}
