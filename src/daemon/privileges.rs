//! Dropping privileges once the daemon is set up.
//!
//! Theory of operation. Building the ports is the privileged part: creating taps and
//! namespaces, moving netdevs, binding sockets. Once the ports are open, [`drop_privileges`]
//! narrows the main thread's capabilities to what the running daemon still uses, before it
//! starts any long-lived thread (capabilities are per thread; new threads inherit the creator's),
//! so the workers, the appliance, the control socket and every helper run with the same short
//! list:
//!
//! - `CAP_NET_ADMIN`: netlink on netdevs while running and at exit (a found tap is moved back
//!   to its namespace, taps and namespaces are removed);
//! - `CAP_NET_RAW`: a packet port re-opens its `AF_PACKET` socket when its netdev comes back;
//! - `CAP_NET_BIND_SERVICE`: `[dns] listen` binds port 53 after this point;
//! - `CAP_SYS_ADMIN`, only if some port has a `netns`: entering a namespace (`setns`: a packet
//!   port re-attaching there, a tap's kernel drop counters, moving a found tap home) and
//!   deleting the namespaces the daemon created (`umount` of `/run/netns/NAME`) at exit. A
//!   config without namespaces never needs it, and does not keep it.
//!
//! Everything else goes from the effective, permitted and inheritable sets, the ambient set is
//! emptied, and (with `CAP_SETPCAP`) the bounding set is cut to the same list, so nothing the
//! daemon runs can get the rest back. One thing is arranged first: the workers lower their nice
//! value (`WORKER_NICE`), which needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it; the
//! limit is raised to exactly that (while `CAP_SYS_RESOURCE` is still there), so the workers
//! keep their priority without the daemon keeping `CAP_SYS_NICE`. Where the limit cannot be
//! raised (no `CAP_SYS_RESOURCE`, as in some containers), the main thread takes `WORKER_NICE`
//! itself before the drop, the threads started until the workers are inherit it (nice values
//! are per thread and inherited: the DNS readers, the appliance and the workers), the appliance
//! and the DHCP files' threads take the daemon's own value back ([`Dropped::service_nice`]),
//! and [`Dropped::workers_started`] puts the main thread back where it was.
//!
//! A daemon started without privileges (taps made ahead of time, `ip tuntap add ... user`) has
//! nothing to drop; the same code narrows an empty set and says so.

use crate::control::config::{Config, PortKind};
use crate::port::{self, CapSets};

use super::worker::WORKER_NICE;
use super::DaemonError;

const CAP_SETPCAP: u32 = 8;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// The capabilities the running daemon keeps for `config`, with their names.
pub(super) fn kept(config: &Config) -> Vec<(u32, &'static str)> {
    let mut keep = vec![
        (CAP_NET_ADMIN, "cap_net_admin"),
        (CAP_NET_RAW, "cap_net_raw"),
        (CAP_NET_BIND_SERVICE, "cap_net_bind_service"),
    ];
    let has_netns = config.ports.iter().any(|p| match &p.kind {
        PortKind::Tap(t) => t.netns.is_some(),
        PortKind::Packet(p) => p.netns.is_some(),
        PortKind::Stream(_) | PortKind::Dgram(_) | PortKind::VhostUser(_) | PortKind::Vxlan(_) => {
            false
        }
    });
    if has_netns {
        keep.push((CAP_SYS_ADMIN, "cap_sys_admin"));
    }
    keep
}

/// The capabilities `switchyard run` needs for `config` while it sets up, before it narrows
/// them to `kept`: what a systemd unit's `CapabilityBoundingSet=` must hold for this network
/// (`switchyard capabilities FILE`). Lower-case names as `capsh` and `setpriv` print them.
///
/// - `cap_net_admin`: taps, moving netdevs, addresses, the NAT table and `ip_forward`;
/// - `cap_net_raw`: a packet port's `AF_PACKET` socket;
/// - `cap_net_bind_service`: `[dns] listen` or a `[metrics] listen` port below 1024;
/// - `cap_sys_admin`: a port with a `netns` (creating, mounting and entering namespaces);
/// - `cap_chown`: `[switch] control_group` (the socket's group is given away);
/// - `cap_setpcap`: narrowing its own bounding set, so nothing it runs gets the rest back;
/// - `cap_sys_resource`: raising `RLIMIT_NICE` for the workers' priority (without it they still
///   get it, through the main thread's own nice value).
///
/// Each is needed only as far as its reason goes: a daemon without one of the optional two
/// still runs, and says so in its log.
pub fn needed_at_start(config: &Config) -> Vec<&'static str> {
    let netdevs = config
        .ports
        .iter()
        .any(|p| matches!(p.kind, PortKind::Tap(_) | PortKind::Packet(_)));
    let packet = config
        .ports
        .iter()
        .any(|p| matches!(p.kind, PortKind::Packet(_)));
    let has_netns = kept(config).iter().any(|(c, _)| *c == CAP_SYS_ADMIN);
    let low_port =
        !config.dns.listen.is_empty() || config.control.metrics.is_some_and(|a| a.port() < 1024);
    let forward = config.network.forward != crate::control::config::Forward::None;
    [
        (netdevs || forward, "cap_net_admin"),
        (packet, "cap_net_raw"),
        (low_port, "cap_net_bind_service"),
        (has_netns, "cap_sys_admin"),
        (config.control.group.is_some(), "cap_chown"),
        (true, "cap_setpcap"),
        (true, "cap_sys_resource"),
    ]
    .into_iter()
    .filter_map(|(needed, name)| needed.then_some(name))
    .collect()
}

/// What [`drop_privileges`] arranged for the workers' priority.
#[must_use]
pub(super) struct Dropped {
    /// The main thread's own nice value, to go back to once the workers are started.
    restore_nice: Option<i32>,
}

impl Dropped {
    /// The daemon's own nice value, if the main thread lent `WORKER_NICE` to the threads it
    /// starts until the workers are: the service threads (appliance, lease journal, lease
    /// file) take it back, since only the workers are meant to run ahead of the host's other
    /// processes.
    pub(super) fn service_nice(&self) -> Option<i32> {
        self.restore_nice
    }

    /// Puts the main thread's nice value back, if it lent `WORKER_NICE` to the workers.
    pub(super) fn workers_started(&self) {
        if let Some(nice) = self.restore_nice {
            // Raising one's nice value needs no privilege.
            if let Err(e) = port::set_thread_nice(nice) {
                tracing::debug!(error = %e, "cannot restore the main thread's nice value");
            }
        }
    }
}

/// Puts the calling service thread (`thread` names it in the log) back at the daemon's own
/// nice value, if it inherited the workers' ([`Dropped::service_nice`]).
pub(super) fn take_service_nice(nice: Option<i32>, thread: &'static str) {
    if let Some(nice) = nice {
        if let Err(e) = port::set_thread_nice(nice) {
            tracing::debug!(error = %e, thread, "keeps the workers' priority");
        }
    }
}

/// The calling thread's nice value (field 19 of `/proc/thread-self/stat`, after the command).
fn thread_nice() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(16)?.parse().ok()
}

/// Narrows the calling thread's capabilities to [`kept`] (see the module doc); logs what it kept.
pub(super) fn drop_privileges(config: &Config) -> Result<Dropped, DaemonError> {
    let err = |what: &'static str| move |source| DaemonError::Io { what, source };
    let mut restore_nice = None;
    if let Err(e) = port::allow_nice(WORKER_NICE) {
        let own = thread_nice();
        match port::set_thread_nice(WORKER_NICE) {
            Ok(()) => restore_nice = Some(own.unwrap_or(0)),
            Err(e2) => tracing::debug!(error = %e, error2 = %e2,
                "neither RLIMIT_NICE nor the nice value can be lowered; workers keep the default priority"),
        }
    }
    let before = port::cap_get().map_err(err("reading the daemon's capabilities (capget)"))?;
    let keep = kept(config);
    let wanted = keep.iter().fold(0u64, |m, (c, _)| m | (1 << c));
    let mask = wanted & before.permitted;
    if before.effective & (1 << CAP_SETPCAP) != 0 {
        let last = port::cap_last_cap().map_err(err("reading cap_last_cap"))?;
        for cap in (0..=last.min(63)).filter(|c| mask & (1 << c) == 0) {
            port::cap_bound_drop(cap).map_err(err("dropping from the bounding set"))?;
        }
    }
    match port::cap_ambient_clear() {
        // EINVAL: a kernel without ambient capabilities (before 4.3): nothing to clear.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            return Err(err("clearing the ambient capabilities")(e))
        }
        _ => {}
    }
    port::cap_set(&CapSets {
        effective: mask,
        permitted: mask,
        inheritable: 0,
    })
    .map_err(err("dropping capabilities (capset)"))?;
    let names: Vec<&str> = keep
        .iter()
        .filter(|(c, _)| mask & (1 << c) != 0)
        .map(|(_, n)| *n)
        .collect();
    tracing::info!(
        kept = %if names.is_empty() { "none".to_string() } else { names.join(",") },
        dropped = (before.permitted & !mask).count_ones(),
        "privileges dropped"
    );
    Ok(Dropped { restore_nice })
}
