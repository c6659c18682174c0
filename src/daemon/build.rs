//! Building what a `Config` describes: its ports (with the namespaces they live in) and the
//! switch over them.
//!
//! Theory of operation. [`ports`] opens every configured port into the first slots of the
//! table; if one fails, what was built is dropped again (each `Netns` and port undoes itself on
//! drop) and the error names the port, so the daemon never starts half-built. A hotplugged
//! port is opened by the same [`Ports::open_port`]. [`switch`] makes the switch with one slot
//! per table slot, the static FDB entries and the appliance's MAC on the service port.

use std::sync::Arc;
use std::time::Duration;

use super::table::{Plugged, Ports};
use super::{default_mac, DaemonError, Identity, SERVICE_PORT_NAME};
use crate::control::config::{Config, Forward, PortConfig, PortKind, Segment};
use crate::port::netns::Netns;
use crate::port::packet::PacketPort;
use crate::port::socket::{DgramPort, StreamPort};
use crate::port::tap::TapPort;
use crate::port::vhost_user::VhostUserPort;
use crate::port::vxlan::VxlanPort;
use crate::port::{Port, PortError};
use crate::service::ndp::{Ndp, NdpParams, RaParams};
use crate::switch::{PortId, PortSpec, PortVlan, Switch, SwitchParams, DEFAULT_VLAN};
use crate::wire::MacAddr;

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
        slots.push(Some(Plugged::new(Arc::from(port), netns)));
    }
    slots.resize_with(config.switch.max_ports + 1, || None);
    ports.fill(slots);
    Ok(ports)
}

impl Ports {
    /// Opens port `p` of `config`, with the namespace it lives in: one constructor per kind.
    pub(super) fn open_port(
        &self,
        config: &Config,
        p: &PortConfig,
    ) -> Result<(Port, Option<Arc<Netns>>), PortError> {
        let ns = match p.kind.netns() {
            Some((name, create)) => Some(self.netns(name, create)?),
            None => None,
        };
        // `[switch] multi_queue`: one queue per worker (the worker count is fixed until a
        // restart, so a hotplugged port gets as many as one built at start).
        let queues = if config.switch.multi_queue {
            super::worker::worker_count(config)
        } else {
            1
        };
        let port: Port = match &p.kind {
            PortKind::Tap(c) => {
                Box::new(TapPort::from_config(config, p, c, ns.as_deref(), queues)?)
            }
            PortKind::Packet(c) => Box::new(PacketPort::from_config(p, c, ns.as_deref(), queues)?),
            PortKind::Stream(c) => Box::new(StreamPort::from_config(p, c)?),
            PortKind::Dgram(c) => Box::new(DgramPort::from_config(p, c)?),
            PortKind::VhostUser(c) => Box::new(VhostUserPort::from_config(p, c)?),
            PortKind::Vxlan(c) => Box::new(VxlanPort::from_config(
                p,
                c,
                config.switch.ageing,
                super::TICK,
            )?),
        };
        Ok((port, ns))
    }
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
        vlan: service_vlan(config),
        limits: Default::default(),
    }));
    let sw = Switch::with_slots(&params, slots);
    for s in &config.switch.static_fdb {
        sw.add_static(s.mac, PortId(s.port as u16));
    }
    sw.add_static(identity(config).mac, service_port(config));
    for s in &config.segments {
        sw.add_static_in(
            s.vlan,
            segment_identity(config, s).mac,
            service_port(config),
        );
    }
    for (i, p) in config.ports.iter().enumerate() {
        sw.set_service_exempt(PortId(i as u16), p.trusted);
    }
    sw
}

/// What the switch needs of port `p` of `config`.
pub(super) fn port_spec(config: &Config, p: &PortConfig) -> PortSpec {
    PortSpec {
        name: p.name.clone(),
        mtu: p.mtu,
        isolated: p.isolated,
        policy: p.policy(config),
        vlan: p.vlan.clone(),
        limits: p.limits,
    }
}

/// The appliance's address and MAC on the segment.
pub(super) fn identity(config: &Config) -> Identity {
    let mac = default_mac(&config.network.name);
    Identity {
        mac,
        ip: config.network.gateway,
        ipv6: ndp_params(config, mac).map(|p| Ndp::new(p, Duration::ZERO).served()),
    }
}

/// The service port's membership: VLAN 1 untagged (`[network]`), and with `[[segment]]`s a
/// trunk carrying their VLANs too, so their floods and the appliance's MACs in them reach it.
fn service_vlan(config: &Config) -> PortVlan {
    if config.segments.is_empty() {
        return PortVlan::default();
    }
    PortVlan::Trunk {
        allowed: config.segments.iter().map(|s| s.vlan).collect(),
        native: Some(DEFAULT_VLAN),
    }
}

/// The appliance's address and MAC on segment `s` (its MAC from both names: stable, and
/// different from `[network]`'s and every other segment's).
pub(super) fn segment_identity(config: &Config, s: &Segment) -> Identity {
    Identity {
        mac: default_mac(&format!("{}/{}", config.network.name, s.network.name)),
        ip: s.network.gateway,
        ipv6: None,
    }
}

/// `config` as segment `s` sees it, for its DHCP and DNS servers: `s`'s network, pool and lease
/// time; no hosts, no extra DHCP options, no IPv6; DNS for its own names only (no upstreams,
/// forwards, static records or listen sockets); DHCP option 6 the segment's gateway (if DNS
/// runs) and option 119 its domain; its lease file `leases-<name>` in `[dhcp] state_dir`.
pub(super) fn segment_config(config: &Config, s: &Segment) -> Config {
    let mut c = config.clone();
    c.network = s.network.clone();
    c.hosts.clear();
    for p in &mut c.ports {
        p.host = None;
    }
    c.dhcp.pool = s.pool;
    c.dhcp.lease_time = s.lease_time;
    c.dhcp.options.clear();
    c.dhcp.dns = if c.dns.enabled {
        vec![s.network.gateway]
    } else {
        Vec::new()
    };
    c.dhcp.search = vec![s.network.domain.clone()];
    c.dhcp.lease_file = c.dhcp.state_dir.join(s.lease_file());
    c.dns.upstreams.clear();
    c.dns.upstreams_from_host = false;
    c.dns.listen.clear();
    c.dns.forwards.clear();
    c.dns.records.clear();
    c.ipv6 = None;
    c.segments.clear();
    c
}

/// What the appliance's IPv6 side answers and advertises (`None` without `subnet6`). RDNSS
/// names the gateway only when the appliance answers DNS.
pub(super) fn ndp_params(config: &Config, mac: MacAddr) -> Option<NdpParams> {
    let v6 = config.ipv6.as_ref()?;
    let ra = v6.ra.enabled.then(|| RaParams {
        prefix: v6.subnet,
        managed: v6.ra.mode.managed(),
        other: v6.ra.mode.other(),
        autonomous: v6.ra.mode.autonomous(),
        interval: v6.ra.interval,
        rdnss: if v6.ra.rdnss && config.dns.enabled {
            vec![v6.gateway]
        } else {
            Vec::new()
        },
        dnssl: v6.ra.dnssl.clone(),
        mtu: v6.ra.mtu.then_some(config.network.mtu),
        // With a forward mode the host leg routes IPv6 too: the advertisements name it.
        router: (config.network.forward != Forward::None && config.host_port().is_some())
            .then_some(super::nat::HOST_LEG6),
    });
    Some(NdpParams {
        mac,
        gateway: v6.gateway,
        ra,
        dhcp6: v6.dhcp6.enabled,
        dns: config.dns.enabled,
    })
}

/// The service port's slot comes after every slot a port may take.
pub(super) fn service_port(config: &Config) -> PortId {
    PortId(config.switch.max_ports as u16)
}
