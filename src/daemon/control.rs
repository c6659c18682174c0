//! The control socket's server: the daemon's side of `switchyard ports|fdb|leases|stats|allow|
//! disallow|host|capture|reload`.
//!
//! Theory of operation. One thread accepts on the unix socket (epoll with the daemon's tick, so
//! it sees the stop flag), checks the peer's credentials (SO_PEERCRED: root, or the control
//! group as primary or supplementary group; the socket file's 0660 root:group mode is the first
//! fence, this the second), and hands each connection to a short-lived thread of its own (at
//! most [`MAX_CONNECTIONS`] at once; one more is told the daemon is busy). A connection reads
//! request lines of at most `MAX_REQUEST` bytes and answers each with one reply line (see
//! `control::protocol`); a line it cannot use gets an error reply and the connection carries
//! on, except an oversized one, after which the stream cannot be resynchronised and is closed.
//! Idle connections time out; a client that does not read its replies cannot hold a thread
//! for more than [`IO_TIMEOUT`].
//!
//! State. The daemon's live `Config` (behind one mutex, so changes are serialized) is the
//! truth about hosts and extra addresses. A change is made to a copy first (validated by
//! `Config::add_host` and friends), then applied to the guard (the ports' policies, keeping the
//! lease bindings) and to the appliance (the DHCP reservations, through its queue: the DHCP
//! server stays on its own thread), and only then becomes the live config. Reads (ports, FDB,
//! counters) go straight to the lock-light `Switch`.
//!
//! Layout: this file is the state side (what each command reads or changes); `control/server.rs`
//! is the socket side (binding, the peer check, connections, capture streaming).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::appliance::{Call, CallLane, Identity, Ticket};
use super::capture::Capture;
use super::dhcp::DhcpStats;
use super::notify;
use crate::control::config::{self, Config};
use crate::control::protocol::{
    Body, Command, DropRow, ErrorKind, FdbRow, LeaseRow, NetworkStatus, PortInfo, PortStats,
    ServiceStats,
};
use crate::port::Epoll;
use crate::service::dhcp::DropReason as DhcpDropReason;
use crate::service::dns::DnsCounters;
use crate::switch::{DropReason, GuardMode, PortId, Switch};

/// Connections served at once; one more gets a `busy` reply.
const MAX_CONNECTIONS: usize = 16;
/// A connection idle this long is closed; a reply not read within it is abandoned.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for the appliance thread (it answers between frame batches).
const APPLIANCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the control plane reads and changes.
pub(super) struct Control {
    pub(super) switch: Arc<Switch>,
    /// The port table, for `port add|del` and reloads (see `hotplug.rs`).
    pub(super) ports: Arc<super::table::Ports>,
    /// Each worker's epoll set: a plugged port joins the least loaded one.
    pub(super) epolls: Vec<Arc<Epoll>>,
    /// `[switch] max_ports`: the slots below it take ports; the service port has this one.
    pub(super) max_ports: usize,
    /// Where the next free slot is looked for.
    pub(super) next_slot: AtomicUsize,
    pub(super) capture: Arc<Capture>,
    /// Calls to the appliance, on their own path (see [`CallLane`]).
    pub(super) appliance: Arc<CallLane>,
    pub(super) live: Mutex<Config>,
    pub(super) identity: Identity,
    pub(super) service_port: PortId,
    pub(super) start: Instant,
    pub(super) stop: Arc<AtomicBool>,
    /// The group allowed besides root.
    pub(super) gid: u32,
    pub(super) connections: AtomicUsize,
}

/// A failed request: the error reply's kind and message.
pub(super) type Failure = (ErrorKind, String);

fn fail<T>(kind: ErrorKind, message: impl Into<String>) -> Result<T, Failure> {
    Err((kind, message.into()))
}

mod args;
mod server;

pub(super) use args::{new_host, parse_net};

pub(super) use server::{bind_socket, resolve_group, Registration};

impl Control {
    /// Answers one (non-streaming) command; a change that succeeded is also written to the
    /// live state (`live_state::persist`), so it survives a reload and a restart.
    pub(super) fn handle(&self, command: Command) -> Result<Body, Failure> {
        let lasting = crate::control::live_state::is_change(&command).then(|| command.clone());
        let result = self.handle_now(command);
        if let (Some(cmd), Ok(Body::Done(message))) = (lasting, &result) {
            let state_dir = self.live().dhcp.state_dir.clone();
            if let Err(e) = super::live_state::persist(&state_dir, cmd) {
                tracing::error!(error = %e, "a live change is applied but not saved");
                return Ok(Body::Done(format!(
                    "{message} (applied, but not saved: {e}; a restart will not bring it back)"
                )));
            }
        }
        result
    }

    fn handle_now(&self, command: Command) -> Result<Body, Failure> {
        match command {
            Command::Ports => Ok(Body::Ports(self.ports())),
            Command::Fdb => Ok(Body::Fdb(self.fdb())),
            Command::Leases => self.leases().map(Body::Leases),
            Command::Stats { port } => self.stats(port.as_deref()).map(Body::Stats),
            Command::Services => self.services().map(Body::Services),
            Command::Why { port } => self.why(&port).map(Body::Why),
            Command::Allow { port, net } => {
                let net = parse_net(&net)?;
                self.change(|c| c.allow_extra(&port, net).map(Some))
                    .map(|()| Body::Done(format!("{net} allowed on port {port}")))
            }
            Command::Disallow { port, net } => {
                let net = parse_net(&net)?;
                self.change(|c| c.disallow_extra(&port, net).map(Some))
                    .map(|()| Body::Done(format!("{net} no longer allowed on port {port}")))
            }
            Command::HostAdd(add) => {
                let new = new_host(&add)?;
                self.change(|c| c.add_host(new))
                    .map(|()| Body::Done(format!("host {} added", add.name)))
            }
            Command::HostDel { name } => self
                .change(|c| c.remove_host(&name).map(|()| None))
                .map(|()| Body::Done(format!("host {name} removed"))),
            Command::PortAdd(new) => self.port_add(new).map(Body::Done),
            Command::PortDel { name } => self.port_del(&name).map(Body::Done),
            Command::Reload { prune } => self
                .reload_with(prune)
                .map(Body::Done)
                .map_err(|m| (ErrorKind::Refused, m)),
            Command::Status => self.status().map(Body::Status),
            Command::Limit {
                port,
                ingress,
                egress,
            } => self
                .limit(&port, ingress.as_deref(), egress.as_deref())
                .map(Body::Done),
            Command::Capture { .. } => fail(
                ErrorKind::BadArgument,
                "capture streams: send it on a connection of its own",
            ),
        }
    }

    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, Config> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn port_name(&self, id: PortId) -> String {
        self.switch.port_spec(id).name.clone()
    }

    fn port_id(&self, name: &str) -> Result<PortId, Failure> {
        self.switch.port_by_name(name).ok_or_else(|| {
            (
                ErrorKind::NotFound,
                format!("no port '{name}' (see `switchyard ports`)"),
            )
        })
    }

    // ---- reads ----

    fn ports(&self) -> Vec<PortInfo> {
        let cfg = self.live();
        self.switch
            .present_ports()
            .filter_map(|id| {
                let name = self.port_name(id);
                let p = cfg.ports.iter().find(|p| p.name == name);
                if p.is_none() && id != self.service_port {
                    // Plugged a moment ago, not in the live config yet.
                    return None;
                }
                let c = self.switch.counters(id);
                let policy = self.switch.policy(id);
                let (kind, ifname, mac, mut addresses) = if let Some(p) = p {
                    let host = p.host.map(|h| &cfg.hosts[h]);
                    let mac = host.and_then(|h| h.mac).map(|m| m.to_string());
                    let addrs = match &policy {
                        Some(_) => Vec::new(),
                        // The reservation, or the host port's own address.
                        None => host
                            .and_then(|h| h.ipv4)
                            .or(match &p.kind {
                                config::PortKind::Tap(t) => t.host_address,
                                _ => None,
                            })
                            .map(|a| a.to_string())
                            .into_iter()
                            .collect(),
                    };
                    (p.kind.name().to_string(), p.kind.attachment(), mac, addrs)
                } else {
                    (
                        "appliance".to_string(),
                        "-".to_string(),
                        Some(self.identity.mac.to_string()),
                        vec![self.identity.ip.to_string()],
                    )
                };
                if let Some(p) = &policy {
                    addresses.extend(p.ipv4.iter().map(|n| short_net(IpNet::V4(*n))));
                    addresses.extend(p.leased_ipv4.iter().map(|n| short_net(IpNet::V4(*n))));
                    addresses.extend(p.ipv6.iter().map(|n| short_net(IpNet::V6(*n))));
                    addresses.dedup();
                }
                Some(PortInfo {
                    name,
                    kind,
                    ifname,
                    state: if self.switch.is_port_up(id) {
                        "up"
                    } else {
                        "down"
                    }
                    .into(),
                    mac,
                    addresses,
                    guard: match policy.map(|p| p.mode) {
                        None => "off",
                        Some(GuardMode::Enforce) => "enforce",
                        Some(GuardMode::Monitor) => "monitor",
                    }
                    .into(),
                    rx_frames: c.rx_frames,
                    rx_bytes: c.rx_bytes,
                    tx_frames: c.tx_frames,
                    tx_bytes: c.tx_bytes,
                    drops: c.total_drops(),
                })
            })
            .collect()
    }

    fn fdb(&self) -> Vec<FdbRow> {
        self.switch
            .fdb_entries(self.start.elapsed())
            .into_iter()
            .map(|e| FdbRow {
                mac: e.mac.to_string(),
                port: self.port_name(e.port),
                is_static: e.is_static,
                age_secs: e.age.as_secs(),
                vlan: e.vlan,
            })
            .collect()
    }

    /// Every counter of `port`, or of every port.
    pub(super) fn stats(&self, port: Option<&str>) -> Result<Vec<PortStats>, Failure> {
        let ids: Vec<PortId> = match port {
            Some(name) => vec![self.port_id(name)?],
            None => self.switch.present_ports().collect(),
        };
        Ok(ids
            .into_iter()
            .map(|id| {
                let c = self.switch.counters(id);
                PortStats {
                    port: self.port_name(id),
                    rx_frames: c.rx_frames,
                    rx_bytes: c.rx_bytes,
                    tx_frames: c.tx_frames,
                    tx_bytes: c.tx_bytes,
                    fdb_full: c.fdb_full,
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_string(), c.drops(*r)))
                        .collect(),
                    monitored: DropReason::ALL
                        .iter()
                        .filter(|r| c.monitored(**r) > 0)
                        .map(|r| (r.name().to_string(), c.monitored(*r)))
                        .collect(),
                    fdb_entries: self.switch.fdb_port_len(id) as u64,
                    capture_dropped: self.capture.dropped_on(id),
                    problems: if id == self.service_port {
                        self.appliance_problems()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect())
    }

    /// `switchyard why PORT`: the port's remembered drops, newest first.
    fn why(&self, port: &str) -> Result<Vec<DropRow>, Failure> {
        let id = self.port_id(port)?;
        let now = self.start.elapsed();
        Ok(self
            .ports
            .drops
            .recent(id)
            .into_iter()
            .map(|r| DropRow {
                ago_ms: u64::try_from(now.saturating_sub(r.at).as_millis()).unwrap_or(u64::MAX),
                reason: r.reason.name().to_string(),
                len: r.len,
                src_mac: r.src.to_string(),
                dst_mac: r.dst.to_string(),
                ethertype: format!("0x{:04x}", r.ethertype),
                src_ip: r.ipv4.map(|(s, _)| s.to_string()),
                dst_ip: r.ipv4.map(|(_, d)| d.to_string()),
                protocol: r.protocol.map(|p| match p {
                    1 => "icmp".to_string(),
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    n => n.to_string(),
                }),
            })
            .collect())
    }

    /// What is wrong with the appliance's services (asked of it; a busy appliance says so).
    fn appliance_problems(&self) -> Vec<String> {
        match self.dhcp_stats() {
            Ok(Some(DhcpStats {
                journal_error: Some(e),
                ..
            })) => vec![format!("DHCP acknowledges no lease: {e}")],
            Ok(_) => Vec::new(),
            Err((_, e)) => vec![e],
        }
    }

    /// Asks the appliance thread, on the calls' own path; it answers before the frames queued
    /// ahead (at most a few frames later). A call not taken in time is abandoned: never
    /// applied later. One the appliance took is waited for (it is being applied).
    fn ask<T>(&self, make: impl FnOnce(SyncSender<T>) -> Call) -> Result<T, Failure> {
        let (tx, rx) = sync_channel(1);
        let ticket = Ticket::default();
        if !self.appliance.push(make(tx), ticket.clone()) {
            return fail(
                ErrorKind::Internal,
                "the appliance has too many calls waiting",
            );
        }
        match rx.recv_timeout(APPLIANCE_TIMEOUT) {
            Ok(answer) => Ok(answer),
            Err(_) if ticket.abandon() => fail(
                ErrorKind::Internal,
                "the appliance did not answer in time; nothing was changed",
            ),
            // Taken just now: the answer follows once the change is applied.
            Err(_) => rx
                .recv()
                .or_else(|_| fail(ErrorKind::Internal, "the appliance stopped")),
        }
    }

    /// The DHCP server's message counts; `None` without DHCP.
    pub(super) fn dhcp_stats(&self) -> Result<Option<DhcpStats>, Failure> {
        self.ask(Call::DhcpStats)
    }

    /// The DNS server's counts; `None` without DNS.
    pub(super) fn dns_stats(&self) -> Result<Option<DnsCounters>, Failure> {
        self.ask(Call::DnsStats)
    }

    /// The DHCP and DNS servers' counters by name, read now (`switchyard stats`, `top`).
    pub(super) fn services(&self) -> Result<ServiceStats, Failure> {
        let dhcp = match self.dhcp_stats()? {
            Some(d) => Some(dhcp_named(&d, self.ask(Call::Leases)?.len() as u64)),
            None => None,
        };
        let dhcp6 = self.ask(Call::Dhcp6)?.map(|s| {
            vec![
                ("leases".to_string(), s.leases.len() as u64),
                ("replies".to_string(), s.counters.replies),
                ("advertises".to_string(), s.counters.advertises),
                ("dropped".to_string(), s.counters.dropped),
            ]
        });
        Ok(ServiceStats {
            dhcp,
            dns: self.dns_stats()?.map(|c| dns_named(&c)),
            dhcp6,
        })
    }

    /// The live leases, with the port each is bound to: the DHCPv4 ones, then the DHCPv6
    /// bindings.
    pub(super) fn leases(&self) -> Result<Vec<LeaseRow>, Failure> {
        let leases = self.ask(Call::Leases)?;
        let live = self.live();
        // A lease whose port was unplugged since shows no port.
        let port_of = |p: u16| {
            let id = PortId(p);
            (usize::from(p) < self.switch.port_count() && self.switch.is_present(id))
                .then(|| self.port_name(id))
        };
        let mut rows: Vec<LeaseRow> = leases
            .iter()
            .map(|l| LeaseRow::from_lease(l, live.prefix_of(l.ip), port_of(l.port)))
            .collect();
        if let Some(snap) = self.ask(Call::Dhcp6)? {
            let prefix6 = live.ipv6.as_ref().map_or(64, |v6| v6.subnet.prefix_len());
            rows.extend(snap.leases.into_iter().map(|(l, name)| {
                let port = port_of(l.port);
                LeaseRow::from_lease6(&l, prefix6, name, port)
            }));
        }
        Ok(rows)
    }

    /// `switchyard list`'s row for this daemon.
    fn status(&self) -> Result<NetworkStatus, Failure> {
        let leases = self.ask(Call::Leases)?.len() as u64;
        let cfg = self.live();
        let ports = self
            .switch
            .present_ports()
            .filter(|id| *id != self.service_port)
            .count() as u64;
        Ok(NetworkStatus {
            name: cfg.network.name.clone(),
            socket: cfg.control.socket.display().to_string(),
            config: cfg.source.clone(),
            pid: std::process::id(),
            ports,
            leases,
            uptime_secs: self.start.elapsed().as_secs(),
        })
    }

    // ---- changes ----

    /// Makes a change to a copy of the live config, applies it, and keeps it. `edit` returns
    /// the port whose policy changed, if one did.
    fn change(
        &self,
        edit: impl FnOnce(&mut Config) -> Result<Option<usize>, config::LiveError>,
    ) -> Result<(), Failure> {
        let mut live = self.live();
        let mut next = live.clone();
        let port = edit(&mut next).map_err(|e| (ErrorKind::Refused, e.0))?;
        let ports: Vec<String> = port
            .map(|i| next.ports[i].name.clone())
            .into_iter()
            .collect();
        self.apply(&live, &next, &ports)?;
        *live = next;
        Ok(())
    }

    /// Applies `new` over `old`: the guard policies of the ports named `ports` (lease bindings
    /// kept), then the appliance's hosts (which also re-binds every live lease). If the
    /// appliance refuses, the policies go back to `old`'s and nothing has changed.
    pub(super) fn apply(
        &self,
        old: &Config,
        new: &Config,
        ports: &[String],
    ) -> Result<(), Failure> {
        for name in ports {
            self.set_policy(new, name);
        }
        let result = self
            .ask(|tx| Call::Hosts(Box::new(new.clone()), tx))
            .and_then(|r| r.map_err(|m| (ErrorKind::Refused, m)));
        if result.is_err() {
            for name in ports {
                self.set_policy(old, name);
            }
        }
        result
    }

    /// Port `name`'s policy from `cfg`, keeping the DHCP lease bindings it has now; nothing if
    /// either has no such port.
    fn set_policy(&self, cfg: &Config, name: &str) {
        let (Some(p), Some(id)) = (
            cfg.ports.iter().find(|p| p.name == name),
            self.switch.port_by_name(name),
        ) else {
            return;
        };
        let mut policy = p.policy(cfg);
        if let (Some(new), Some(old)) = (policy.as_mut(), self.switch.policy(id)) {
            new.leased_ipv4 = old.leased_ipv4;
            new.leased_ipv6 = old.leased_ipv6;
        }
        self.switch.set_policy(id, policy);
    }

    /// `switchyard limit`: a port's bandwidth limits, in place from the next frame on.
    fn limit(
        &self,
        port: &str,
        ingress: Option<&str>,
        egress: Option<&str>,
    ) -> Result<String, Failure> {
        let id = self.port_id(port)?;
        let mut limits = self.switch.port_spec(id).limits;
        let parse = |s: &str| {
            crate::switch::RateLimit::parse_cli(s).map_err(|m| (ErrorKind::BadArgument, m))
        };
        if let Some(s) = ingress {
            limits.ingress = parse(s)?;
        }
        if let Some(s) = egress {
            limits.egress = parse(s)?;
        }
        self.switch.set_limits(id, limits, self.start.elapsed());
        let show =
            |l: Option<crate::switch::RateLimit>| l.map_or("none".to_string(), |l| l.to_string());
        Ok(format!(
            "port {port}: ingress {}, egress {}",
            show(limits.ingress),
            show(limits.egress)
        ))
    }

    /// Each kept port's VLAN membership and bandwidth limits, applied in place (a reload).
    fn apply_segments(&self, new: &Config) {
        for p in &new.ports {
            let Some(id) = self.switch.port_by_name(&p.name) else {
                continue;
            };
            let spec = self.switch.port_spec(id);
            if spec.vlan != p.vlan {
                self.switch.set_vlan(id, p.vlan.clone());
            }
            if spec.limits != p.limits {
                self.switch.set_limits(id, p.limits, self.start.elapsed());
            }
        }
    }

    /// Re-reads the config file (SIGHUP, `switchyard reload`) and applies it if it is valid and
    /// differs only in hosts, port guards and ports added or removed (a port whose kind,
    /// netdev, path, MTU or isolation changed is removed and added again; the others are not
    /// touched); otherwise the running config stays, and the error says why.
    pub(super) fn reload(&self) -> Result<String, String> {
        self.reload_with(false)
    }

    /// [`Control::reload`]; with `prune`, the live changes are not merged but forgotten.
    pub(super) fn reload_with(&self, prune: bool) -> Result<String, String> {
        notify::notify("RELOADING=1");
        let result = self.reload_now(prune);
        match &result {
            Ok(m) => tracing::info!("{m}"),
            Err(m) => tracing::error!("{m}"),
        }
        notify::notify("READY=1");
        result
    }

    fn reload_now(&self, prune: bool) -> Result<String, String> {
        let mut live = self.live();
        let mut new = if live.source == config::DEFAULT_SOURCE {
            config::load_default()
        } else {
            config::load(Path::new(&live.source))
        }
        .map_err(|e| format!("reload refused, the running config stays: {e}"))?;
        // Upstreams taken from the host's resolv.conf are the DNS server's business (it follows
        // the files itself, `resolv::Watch`); a reload does not change the server's upstreams.
        if new.dns.upstreams_from_host {
            new.dns.upstreams.clone_from(&live.dns.upstreams);
        }
        let state = super::live_state::merge(&mut new, prune)
            .map_err(|e| format!("reload refused, the running config stays: {e}"))?;
        live.live_difference(&new)
            .map_err(|e| format!("reload refused, the running config stays: {e}"))?;
        let (added, removed) = self
            .apply_ports(&live, &new)
            .map_err(|m| format!("reload refused, the running config stays: {m}"))?;
        let all: Vec<String> = new.ports.iter().map(|p| p.name.clone()).collect();
        if let Err((_, m)) = self.apply(&live, &new, &all) {
            // The hosts were refused: the ports go back to the running config's too.
            if let Err(e) = self.apply_ports(&new, &live) {
                tracing::error!("restoring the running config's ports failed: {e}");
            }
            return Err(format!("reload refused, the running config stays: {m}"));
        }
        self.apply_segments(&new);
        let kept = state.changes.len();
        let saved = super::live_state::save(&new.dhcp.state_dir, &state);
        let message = format!(
            "reloaded {}: {} hosts, {} ports ({added} added, {removed} removed); {}{}",
            new.source,
            new.hosts.len(),
            new.ports.len(),
            match (prune, kept) {
                (true, _) => "live changes pruned".to_string(),
                (false, 0) => "no live changes".to_string(),
                (false, n) => format!("{n} live changes kept (`switchyard state`)"),
            },
            match saved {
                Ok(()) => String::new(),
                Err(e) => format!(" (the live state file was not updated: {e})"),
            }
        );
        *live = new;
        Ok(message)
    }
}

/// The DHCP server's counts by name, every drop reason included (`DhcpDropReason::ALL`: a
/// reason added there is listed here too), after the `leases` live now.
pub(super) fn dhcp_named(d: &DhcpStats, leases: u64) -> Vec<(String, u64)> {
    let mut out = vec![
        ("leases".to_string(), leases),
        ("received".to_string(), d.received),
        ("offers".to_string(), d.offers),
        ("acks".to_string(), d.acks),
        ("naks".to_string(), d.naks),
        ("other_replies".to_string(), d.other_replies),
    ];
    out.extend(
        DhcpDropReason::ALL
            .iter()
            .zip(d.drops)
            .map(|(r, n)| (format!("drop.{}", r.as_str()), n)),
    );
    out.push(("unpersisted".to_string(), d.unpersisted));
    out
}

/// The DNS server's counts by name, in the order of its `name=value` line (the one the daemon
/// logs at exit): that line is the one list of them, so a counter added to it is listed here
/// too without a change in this file.
pub(super) fn dns_named(c: &DnsCounters) -> Vec<(String, u64)> {
    c.to_string()
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `10.0.0.5` for a /32 (or /128), else `10.0.0.64/28`.
fn short_net(net: IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_counters_by_name_are_every_field() {
        let c = DnsCounters {
            queries: 7,
            dropped: 3,
            answers_refused: 2,
            ..DnsCounters::default()
        };
        let named = dns_named(&c);
        assert_eq!(named.first(), Some(&("queries".to_string(), 7)));
        assert!(named.contains(&("dropped".to_string(), 3)), "{named:?}");
        assert_eq!(named.last(), Some(&("answers_refused".to_string(), 2)));
        // Every field of the struct is in the line (its Debug form names them all).
        let fields = format!("{c:?}").matches(": ").count();
        assert_eq!(named.len(), fields, "{named:?}");
    }

    #[test]
    fn dhcp_counters_by_name_list_every_reason() {
        let mut d = DhcpStats {
            received: 5,
            ..DhcpStats::default()
        };
        d.drops[0] = 2;
        let named = dhcp_named(&d, 1);
        assert_eq!(named[0], ("leases".to_string(), 1));
        assert!(named.contains(&("received".to_string(), 5)));
        let drops: Vec<_> = named
            .iter()
            .filter(|(k, _)| k.starts_with("drop."))
            .collect();
        assert_eq!(drops.len(), DhcpDropReason::ALL.len());
        assert_eq!(drops[0].1, 2);
    }
}
