//! Ports added and removed while the daemon runs (`switchyard port add|del`, and a reload).
//!
//! A new port is checked by the file's own rules: it is written out as the `[[port]]` table the
//! file would hold, parsed and validated by the same code as the file (name, kind, the kind's
//! keys, ifname and path limits, the host it names, its guard), and then against the ports that
//! are already there (a name, netdev, tap namespace, socket path or host used twice), and the
//! `[switch] max_ports` capacity. Only a port that passes becomes part of a new `Config`; the
//! daemon opens it from there, and keeps that `Config` only if opening worked.

use std::path::PathBuf;

use super::live::LiveError;
use super::{
    q, validate_ports, Config, ConfigError, Cx, PortConfig, PortKind, RawConfig, TapConfig,
};

pub use crate::control::protocol::NewPort;

impl NewPort {
    /// The `[[port]]` table the file would hold for this port.
    fn to_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut t = format!(
            "[[port]]\nname = {}\nkind = {}\n",
            quote(&self.name),
            quote(&self.kind)
        );
        for (key, value) in [
            ("ifname", &self.ifname),
            ("path", &self.path),
            ("peer", &self.peer),
            ("mode", &self.mode),
            ("host", &self.host),
            ("netns", &self.netns),
        ] {
            if let Some(v) = value {
                t.push_str(&format!("{key} = {}\n", quote(v)));
            }
        }
        if let Some(mtu) = self.mtu {
            t.push_str(&format!("mtu = {mtu}\n"));
        }
        if self.isolated {
            t.push_str("isolated = true\n");
        }
        if self.trusted {
            t.push_str("trusted = true\n");
        }
        t
    }
}

/// The message of a config error, without the location (a command has no file and line).
fn message(e: ConfigError) -> LiveError {
    match e {
        ConfigError::Invalid { message, .. } => LiveError(message),
        other => LiveError(other.to_string()),
    }
}

impl Config {
    /// Validates `new` as the file would, then against the ports there are; returns the
    /// port's config.
    pub fn check_new_port(&self, new: &NewPort) -> Result<PortConfig, LiveError> {
        let text = new.to_toml();
        let cx = Cx {
            text: &text,
            source: "port add",
        };
        let raw: RawConfig = toml::from_str(&text).map_err(|e| message(cx.toml_error(&e)))?;
        let port = validate_ports(&cx, &self.network, &self.hosts, raw.port)
            .map_err(message)?
            .pop()
            .ok_or_else(|| LiveError("no port given".into()))?;
        self.check_port_fits(&port)?;
        Ok(port)
    }

    /// Whether `port` can join this config's ports: nothing it needs is taken, and there is room.
    pub fn check_port_fits(&self, port: &PortConfig) -> Result<(), LiveError> {
        let e = format!("port {}", q(&port.name));
        if self.ports.iter().any(|p| p.name == port.name) {
            return Err(LiveError(format!(
                "{e} already exists (delete it first with `switchyard port del`, or pick \
                 another name)"
            )));
        }
        if let Some(ifname) = port.kind.ifname() {
            if let Some(p) = self.ports.iter().find(|p| p.kind.ifname() == Some(ifname)) {
                return Err(LiveError(format!(
                    "{e}: ifname {} is taken by port {} (each port needs its own netdev)",
                    q(ifname),
                    q(&p.name)
                )));
            }
        }
        if let Some(ns) = tap_netns(&port.kind) {
            if let Some(p) = self.ports.iter().find(|p| tap_netns(&p.kind) == Some(ns)) {
                return Err(LiveError(format!(
                    "{e}: netns {} already holds the tap of port {} (one port per namespace)",
                    q(ns),
                    q(&p.name)
                )));
            }
        }
        for path in socket_paths(&port.kind) {
            if let Some(p) = self
                .ports
                .iter()
                .find(|p| socket_paths(&p.kind).contains(&path))
            {
                return Err(LiveError(format!(
                    "{e}: path {} is in use by port {} (give each socket its own path)",
                    path.display(),
                    q(&p.name)
                )));
            }
        }
        if let Some(h) = port.host {
            if let Some(p) = self.ports.iter().find(|p| p.host == Some(h)) {
                return Err(LiveError(format!(
                    "{e}: host {} is already plugged into port {} (a host has at most one port)",
                    q(&self.hosts[h].name),
                    q(&p.name)
                )));
            }
        }
        if self.ports.len() >= self.switch.max_ports {
            return Err(LiveError(format!(
                "{e}: the switch is full ({} ports, [switch] max_ports = {}; delete a port or \
                 raise max_ports and restart)",
                self.ports.len(),
                self.switch.max_ports
            )));
        }
        Ok(())
    }

    /// The index of port `name`, for `switchyard port del`.
    pub fn port_position(&self, name: &str) -> Result<usize, LiveError> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| LiveError(format!("no port {} (see `switchyard ports`)", q(name))))
    }

    /// Whether a static FDB entry names port `i`: such a port cannot go without a restart.
    pub fn pinned_by_static_fdb(&self, i: usize) -> bool {
        self.switch.static_fdb.iter().any(|s| s.port == i)
    }
}

fn tap_netns(kind: &PortKind) -> Option<&str> {
    match kind {
        PortKind::Tap(TapConfig {
            netns: Some(ns), ..
        }) => Some(ns),
        _ => None,
    }
}

fn socket_paths(kind: &PortKind) -> Vec<PathBuf> {
    match kind {
        PortKind::Stream(s) => vec![s.path.clone()],
        PortKind::VhostUser(v) => vec![v.path.clone()],
        PortKind::Dgram(d) => std::iter::once(d.path.clone())
            .chain(d.peer.clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        super::super::parse(
            "[network]\nname = \"t\"\nsubnet = \"10.9.0.0/24\"\ngateway = \"10.9.0.1\"\n\
             domain = \"t.test\"\n[switch]\nmax_ports = 2\n[[host]]\nname = \"a\"\n\
             mac = \"52:54:00:00:00:0a\"\nipv4 = \"10.9.0.10\"\n[[port]]\nname = \"p1\"\n\
             kind = \"tap\"\nifname = \"sy-p1\"\nhost = \"a\"\n",
            "test",
        )
        .unwrap()
    }

    fn port(name: &str, kind: &str) -> NewPort {
        NewPort {
            name: name.into(),
            kind: kind.into(),
            ..NewPort::default()
        }
    }

    #[test]
    fn a_new_port_is_checked_by_the_files_rules_and_against_the_others() {
        let cfg = base();
        let ok = NewPort {
            ifname: Some("sy-p2".into()),
            ..port("p2", "tap")
        };
        assert_eq!(cfg.check_new_port(&ok).unwrap().name, "p2");
        let cases = [
            (
                NewPort {
                    ifname: Some("sy-p9".into()),
                    ..port("p1", "tap")
                },
                "already exists",
            ),
            (
                NewPort {
                    ifname: Some("sy-p1".into()),
                    ..port("p2", "tap")
                },
                "ifname 'sy-p1' is taken by port 'p1'",
            ),
            (
                NewPort {
                    ifname: Some("sy-0123456789abcdef".into()),
                    ..port("p2", "tap")
                },
                "ifname",
            ),
            (
                NewPort {
                    ifname: Some("x".into()),
                    ..port(&"n".repeat(33), "tap")
                },
                "1 to 32 characters",
            ),
            (port("p2", "vhost"), "kind 'vhost' is not known"),
            (
                NewPort {
                    ifname: Some("sy-p2".into()),
                    host: Some("ghost".into()),
                    ..port("p2", "tap")
                },
                "host 'ghost' is not defined",
            ),
            (
                NewPort {
                    ifname: Some("sy-p2".into()),
                    host: Some("a".into()),
                    ..port("p2", "tap")
                },
                "already plugged into port 'p1'",
            ),
            (port("p2", "stream"), "path"),
        ];
        for (new, needle) in cases {
            let err = cfg.check_new_port(&new).unwrap_err().0;
            assert!(err.contains(needle), "{new:?}: {err}");
        }
    }

    #[test]
    fn socket_paths_are_unique_and_capacity_is_enforced() {
        let mut cfg = base();
        let s = NewPort {
            path: Some("/run/sy-test/a.sock".into()),
            ..port("s1", "stream")
        };
        cfg.ports.push(cfg.check_new_port(&s).unwrap());
        let again = NewPort {
            path: Some("/run/sy-test/a.sock".into()),
            ..port("d1", "dgram")
        };
        let err = cfg.check_new_port(&again).unwrap_err().0;
        assert!(err.contains("in use by port 's1'"), "{err}");
        let other = NewPort {
            path: Some("/run/sy-test/b.sock".into()),
            ..port("d1", "dgram")
        };
        let err = cfg.check_new_port(&other).unwrap_err().0;
        assert!(err.contains("the switch is full"), "{err}");
    }
}
