//! Building what a `Config` describes: its ports (with the namespaces they live in) and the
//! switch over them.
//!
//! Theory of operation. [`ports`] opens every configured port into the first slots of the
//! table; if one fails, what was built is dropped again (each `Netns` and port undoes itself on
//! drop) and the error names the port, so the daemon never starts half-built. A hotplugged
//! port is opened by the same [`Ports::open_port`]. [`switch`] makes the switch with one slot
//! per table slot, the static FDB entries and the appliance's MAC on the service port.

use std::sync::Arc;

use super::table::{Plugged, Ports};
use super::{default_mac, DaemonError, Identity, SERVICE_PORT_NAME};
use crate::control::config::{AddressMode, Config, PortConfig, PortKind, TapConfig};
use crate::port::netns::Netns;
use crate::port::packet::PacketPort;
use crate::port::socket::{DgramPort, StreamPort};
use crate::port::tap::TapPort;
use crate::port::{Port, PortError};
use crate::switch::{PortId, PortSpec, Switch, SwitchParams};

/// Builds every namespace and port of `config` into the first slots of a table of
/// `[switch] max_ports` slots and the service port's, or none. Workers are given later.
pub(super) fn ports(config: &Config) -> Result<Ports, DaemonError> {
    let ports = Ports::new(config.switch.max_ports);
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
    ports.fill(slots);
    Ok(ports)
}

impl Ports {
    /// Opens port `p` of `config`, with the namespace it lives in.
    pub(super) fn open_port(
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

pub(super) fn switch(config: &Config) -> Switch {
    let params = SwitchParams {
        ageing: config.switch.ageing,
        max_macs: config.switch.max_macs,
        max_macs_per_port: config.switch.max_macs_per_port,
        storm_limit: config.switch.storm_limit,
        loop_key: config.switch.loop_detection.then(super::loops::random_key),
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
pub(super) fn port_spec(config: &Config, p: &PortConfig) -> PortSpec {
    PortSpec {
        name: p.name.clone(),
        mtu: p.mtu,
        isolated: p.isolated,
        policy: p.policy(config),
    }
}

/// The appliance's address and MAC on the segment.
pub(super) fn identity(config: &Config) -> Identity {
    Identity {
        mac: default_mac(&config.network.name),
        ip: config.network.gateway,
    }
}

/// The service port's slot comes after every slot a port may take.
pub(super) fn service_port(config: &Config) -> PortId {
    PortId(config.switch.max_ports as u16)
}
