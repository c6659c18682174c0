//! The daemon: builds the ports a `Config` describes, runs the data-plane workers and the
//! appliance, and tears everything down again on SIGINT/SIGTERM.
//!
//! # Theory of operation
//!
//! [`run`] is the life of the daemon in six phases:
//!
//! 1. **Bind**: the stop signals are blocked in every thread (the main thread takes them with
//!    sigtimedwait), and the control socket is bound: a second daemon for the same network is
//!    refused here, before it touches a tap.
//! 2. **Build** (`build.rs`): every namespace and port into the port table (`table.rs`); if one
//!    fails, what was built is dropped again and the error names the port. Then the NAT table,
//!    the metrics listener, the privilege drop (`privileges.rs`), and the switch.
//! 3. **Services**: the DNS service and the DHCP server, and the bounded queue to the appliance.
//! 4. **Workers** (`worker.rs`): the ports dealt round-robin into one epoll set per worker; the
//!    control thread (`control.rs`, `hotplug.rs`), the appliance thread (`appliance.rs`), the
//!    workers and the metrics endpoint started.
//! 5. **Main loop**: signals (SIGHUP reloads), and once a `TICK` the FDB ageing, the ports'
//!    ticks, the loop prober (`loops.rs`) and the monitor-mode log (`report.rs`).
//! 6. **Shutdown**: every thread stopped and joined, the counters printed, the NAT table
//!    removed, and the ports closed (taps and namespaces the daemon made removed).
//!
//! This is the only module that reads the clock: `now` is the time since the daemon started.

mod appliance;
mod build;
mod capture;
mod control;
mod dhcp;
mod dhcp6;
mod dns;
mod hotplug;
mod live_state;
pub use live_state::restore as restore_live_state;
mod log_json;
mod loops;
mod metrics;
mod nat;
mod notify;
mod poll;
mod privileges;
mod ratelog;
mod report;
mod retry;
mod table;
mod worker;
pub use privileges::needed_at_start as capabilities_at_start;

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control::config::{dhcp_params, Config};
use crate::port::{self, PortError};
use crate::service::dns::DnsCounters;
use crate::switch::Switch;
use table::Ports;
use worker::Service;

/// How often workers look at the stop flag when idle, and the main thread ages the FDB.
const TICK: Duration = Duration::from_millis(200);
/// Frames queued for the appliance before further ones are dropped (`tx_full` on its port).
const SERVICE_QUEUE: usize = 4096;
/// The service port's name in counters.
const SERVICE_PORT_NAME: &str = "appliance";
/// The signals the main thread takes: SIGINT and SIGTERM stop, SIGHUP reloads.
const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

pub use appliance::{default_mac, Identity};
pub use log_json::JsonLines;
pub use report::counters_table;

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

/// Runs the switch described by `config` until SIGINT or SIGTERM, then prints the counters.
pub fn run(config: &Config) -> Result<(), DaemonError> {
    let bound = bind(config)?;
    let built = build(config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let services = start_services(config, &built, &stop)?;
    let running = start_threads(config, bound, built, services, start, stop)?;
    tracing::info!(
        network = %config.network.name,
        ports = config.ports.len(),
        max_ports = config.switch.max_ports,
        workers = running.workers.len(),
        control_socket = %config.control.socket.display(),
        metrics = %config.control.metrics.map_or_else(|| "off".into(), |a| a.to_string()),
        "switch running; SIGINT or SIGTERM stops it, SIGHUP reloads the config"
    );
    notify::notify("READY=1");
    running.main_loop(config);
    running.shut_down();
    tracing::info!("stopped; taps and namespaces the daemon created are removed");
    Ok(())
}

/// What the bind phase holds: the control socket (and its file, removed when this drops).
struct Bound {
    gid: u32,
    listener: UnixListener,
    /// The entry in the running networks' registry (`switchyard list`), if it could be written.
    registration: Option<control::Registration>,
    socket_file: RemoveOnDrop,
}

/// Phase 1: the signals blocked (workers inherit the mask) and the control socket bound.
fn bind(config: &Config) -> Result<Bound, DaemonError> {
    port::block_signals(&SIGNALS).map_err(|source| DaemonError::Io {
        what: "blocking signals",
        source,
    })?;
    let gid = control::resolve_group(config.control.group.as_deref())?;
    let listener = control::bind_socket(&config.control.socket, gid)?;
    Ok(Bound {
        gid,
        listener,
        registration: control::Registration::write(config),
        socket_file: RemoveOnDrop(config.control.socket.clone()),
    })
}

/// What the build phase made. Field order is drop order: the NAT table goes before the ports.
struct Built {
    nat: Option<nat::Nat>,
    ports: Arc<Ports>,
    switch: Arc<Switch>,
    metrics: Option<TcpListener>,
    dropped: privileges::Dropped,
}

/// Phase 2: ports, NAT, the metrics listener; then privileges are dropped and the switch made.
fn build(config: &Config) -> Result<Built, DaemonError> {
    let ports = Arc::new(build::ports(config)?);
    // After the host port exists; its table and ip_forward are undone when `nat` drops, on
    // SIGINT/SIGTERM and on any startup failure below alike.
    let nat = nat::Nat::install(config)?;
    let metrics = bind_metrics(config)?;
    // Setup is done: from here on (and in every thread started from here) only what the
    // running daemon uses.
    let dropped = privileges::drop_privileges(config)?;
    let switch = Arc::new(build::switch(config));
    ports.tick(&switch);
    Ok(Built {
        nat,
        ports,
        switch,
        metrics,
        dropped,
    })
}

/// The `[metrics] listen` socket, non-blocking, if one is configured.
fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, DaemonError> {
    let Some(addr) = config.control.metrics else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).map_err(|source| DaemonError::Io {
        what: "binding the [metrics] listen address",
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| DaemonError::Io {
        what: "setting the metrics listener non-blocking",
        source,
    })?;
    Ok(Some(l))
}

/// The appliance's services before its thread starts, and the workers' way to it.
struct Services {
    service: Service,
    rx: Receiver<appliance::ApplianceMsg>,
    dns: Option<dns::DnsService>,
    dhcp: Option<dhcp::DhcpService>,
    segments: Vec<appliance::SegmentService>,
}

/// Phase 3: the DNS service and the DHCP server, each if enabled.
fn start_services(
    config: &Config,
    built: &Built,
    stop: &Arc<AtomicBool>,
) -> Result<Services, DaemonError> {
    let (tx, rx) = sync_channel(SERVICE_QUEUE);
    let mut service = Service {
        port: build::service_port(config),
        mtu: config.network.mtu as usize,
        id: build::identity(config),
        tx,
        dns: None,
        segments: config
            .segments
            .iter()
            .map(|s| (s.vlan, build::segment_identity(config, s)))
            .collect(),
    };
    let dns = if config.dns.enabled {
        Some(dns::DnsService::start(
            config,
            service.id,
            &service.tx,
            stop,
        )?)
    } else {
        None
    };
    service.dns = dns.as_ref().map(dns::DnsService::for_workers);
    let dhcp = open_dhcp(config, config.dhcp.journal_path(), built, &service)?;
    let mut segments = Vec::with_capacity(config.segments.len());
    for s in &config.segments {
        let c = build::segment_config(config, s);
        let id = build::segment_identity(config, s);
        let dns = if c.dns.enabled {
            Some(dns::DnsService::start(&c, id, &service.tx, stop)?)
        } else {
            None
        };
        let journal = c.dhcp.state_dir.join(s.journal_file());
        segments.push(appliance::SegmentService {
            vlan: s.vlan,
            id,
            dhcp: open_dhcp(&c, journal, built, &service)?,
            dns,
        });
    }
    Ok(Services {
        service,
        rx,
        dns,
        dhcp,
        segments,
    })
}

/// The DHCP server of `config` (`None` if `[dhcp]` is off), its leases in `journal`.
fn open_dhcp(
    config: &Config,
    journal: std::path::PathBuf,
    built: &Built,
    service: &Service,
) -> Result<Option<dhcp::DhcpService>, DaemonError> {
    let dhcp = if config.dhcp.enabled {
        let svc = dhcp::DhcpService::open(
            dhcp_params(config),
            journal,
            config.dhcp.lease_file.clone(),
            Arc::clone(&built.switch),
            dhcp::ReplySink::new(
                Arc::clone(&built.ports),
                Arc::clone(&built.switch),
                service.port,
            ),
            built.dropped.service_nice(),
        )
        .map_err(|message| DaemonError::Dhcp { message })?;
        Some(svc)
    } else {
        None
    };
    Ok(dhcp)
}

/// The running daemon. Field order is drop order: the control socket's file is removed last.
struct Running {
    service: Service,
    control: Arc<control::Control>,
    workers: Vec<JoinHandle<()>>,
    service_threads: Vec<JoinHandle<()>>,
    appliance: JoinHandle<Option<DnsCounters>>,
    stop: Arc<AtomicBool>,
    start: Instant,
    built: Built,
    _bound_registration: Option<control::Registration>,
    _bound_socket_file: RemoveOnDrop,
}

/// Phase 4: the control plane and the appliance thread, the workers, then the control and
/// metrics threads.
fn start_threads(
    config: &Config,
    bound: Bound,
    mut built: Built,
    services: Services,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Result<Running, DaemonError> {
    let Services {
        service,
        rx,
        dns,
        dhcp,
        segments,
    } = services;
    let (ports, switch) = (&built.ports, &built.switch);
    let epolls = worker::give_ports_to_workers(ports, worker::worker_count(config))?;
    let calls = Arc::new(appliance::CallLane::new(service.tx.clone()));
    let control = Arc::new(control::Control {
        switch: Arc::clone(switch),
        ports: Arc::clone(ports),
        epolls: epolls.clone(),
        max_ports: config.switch.max_ports,
        next_slot: AtomicUsize::new(config.ports.len()),
        capture: Arc::clone(&ports.capture),
        appliance: Arc::clone(&calls),
        live: Mutex::new(config.clone()),
        identity: service.id,
        service_port: service.port,
        start,
        stop: Arc::clone(&stop),
        gid: bound.gid,
        connections: Default::default(),
    });
    let appliance = appliance::Appliance {
        id: service.id,
        port: service.port,
        rx,
        calls,
        ports: Arc::clone(ports),
        switch: Arc::clone(switch),
        dhcp,
        dns,
        segments,
        dhcp6: dhcp6::Dhcp6Service::open(config, service.id.mac, Arc::clone(switch))
            .map_err(|message| DaemonError::Dhcp { message })?,
        ndp: build::ndp_params(config, service.id.mac)
            .map(|p| crate::service::ndp::Ndp::new(p, std::time::Duration::ZERO)),
        nice: built.dropped.service_nice(),
    };
    let appliance = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("sy-appliance".into())
            .spawn(move || appliance.run(&stop))
            .map_err(|source| DaemonError::Io {
                what: "spawning the appliance thread",
                source,
            })?
    };
    let workers = worker::spawn(config, epolls, ports, switch, &service, start, &stop)?;
    built.dropped.workers_started();
    let mut service_threads = vec![spawn_named("sy-control", {
        let control = Arc::clone(&control);
        let listener = bound.listener;
        move || control.serve(listener)
    })?];
    if let Some(l) = built.metrics.take() {
        let control = Arc::clone(&control);
        service_threads.push(spawn_named("sy-metrics", move || {
            metrics::serve(control, l)
        })?);
    }
    Ok(Running {
        service,
        control,
        workers,
        service_threads,
        appliance,
        stop,
        start,
        built,
        _bound_registration: bound.registration,
        _bound_socket_file: bound.socket_file,
    })
}

impl Running {
    /// Phase 5: until SIGINT or SIGTERM, SIGHUP reloads; once a tick, the FDB ages, the ports
    /// tick, the loop prober probes, monitor-mode guards report and enforced guard drops are
    /// logged.
    fn main_loop(&self, config: &Config) {
        let switch = &self.built.switch;
        let mut monitored_seen = vec![0u64; switch.port_count()];
        let mut guard_log = ratelog::GuardDropLog::default();
        let mut prober =
            loops::LoopProber::new(switch, build::identity(config).mac, config.switch.max_ports);
        loop {
            match port::wait_signal(&SIGNALS, TICK) {
                Ok(Some(libc::SIGHUP)) => {
                    // Logged (and notified) by `reload` itself.
                    let _ = self.control.reload();
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
            switch.expire(self.start.elapsed());
            self.built.ports.tick(switch);
            prober.tick(switch, &self.built.ports, self.start.elapsed());
            report::log_monitored(switch, &mut monitored_seen);
            guard_log.tick(switch, dhcp::epoch_now());
            self.built
                .ports
                .retry_failed(switch, &self.control.epolls, self.start.elapsed());
        }
    }

    /// Phase 6: every thread stopped and joined, the counters printed, the NAT table removed
    /// and the ports closed.
    fn shut_down(self) {
        notify::notify("STOPPING=1");
        self.stop.store(true, Ordering::Relaxed);
        drop(self.service);
        drop(self.control);
        for h in self.workers.into_iter().chain(self.service_threads) {
            if h.join().is_err() {
                tracing::error!("a data-plane thread panicked");
            }
        }
        let dns_counters = self.appliance.join().unwrap_or_else(|_| {
            tracing::error!("the appliance thread panicked");
            None
        });
        let Built {
            nat, ports, switch, ..
        } = self.built;
        report::log_kernel_drops(&ports, &switch);
        print!("{}", counters_table(&switch));
        print!("{}", report::worker_table(&ports, &switch));
        if let Some(c) = dns_counters {
            println!("dns: {c}");
        }
        drop(nat);
        // Dropping the last reference to `ports` closes the taps and removes created namespaces.
        drop(ports);
    }
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
