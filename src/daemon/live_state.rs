//! The daemon's side of live state that lasts (`control::live_state`): every change that
//! succeeded is saved ([`persist`]), and the saved changes are replayed over the config file at
//! start ([`restore`]) and at each reload ([`merge`]), by the same checks as when they were
//! made. A change that no longer applies is dropped with a log line, never fatal: the file is
//! the base, the live state only what was added to it.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::control::{new_host, parse_net};
use super::hotplug::remove_port;
use crate::control::config::Config;
use crate::control::live_state::{self, LiveState};
use crate::control::protocol::Command;

/// Serializes the read-modify-write of the state file between control connections.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// Records `cmd` (which succeeded) in `state_dir`'s live state.
pub(super) fn persist(state_dir: &Path, cmd: Command) -> Result<(), String> {
    let _lock = FILE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let path = live_state::path(state_dir);
    let mut state = LiveState::load(&path).map_err(|e| e.to_string())?;
    state.record(cmd);
    state
        .save(&path)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes `state` as `state_dir`'s live state.
pub(super) fn save(state_dir: &Path, state: &LiveState) -> Result<(), String> {
    let _lock = FILE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let path = live_state::path(state_dir);
    state
        .save(&path)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Replays the saved live state over `cfg` (a config just read from its file); returns what
/// still applies. With `prune`, replays nothing and returns an empty state. An unreadable
/// state file is an error: the reload or start must not silently forget the VMs it holds.
pub(super) fn merge(cfg: &mut Config, prune: bool) -> Result<LiveState, String> {
    if prune {
        return Ok(LiveState::default());
    }
    let path = live_state::path(&cfg.dhcp.state_dir);
    let saved = LiveState::load(&path).map_err(|e| {
        format!(
            "the live state {} cannot be read ({e}); move it away, or reload with --prune",
            path.display()
        )
    })?;
    let (kept, dropped) = replay(cfg, &saved);
    for line in &dropped {
        tracing::warn!("live state: {line}");
    }
    if !kept.changes.is_empty() {
        tracing::info!(
            changes = kept.changes.len(),
            "live state: changes made through the control socket restored"
        );
    }
    Ok(kept)
}

/// `switchyard run`: the config with its live state merged in (and the state file compacted to
/// what still applies). Fails only if the state file cannot be read.
pub fn restore(mut cfg: Config) -> Result<Config, String> {
    let kept = merge(&mut cfg, false)?;
    if let Err(e) = save(&cfg.dhcp.state_dir, &kept) {
        tracing::warn!("live state: {e}");
    }
    Ok(cfg)
}

/// Applies each change of `state` to `cfg`; returns the changes that applied and, for each
/// one dropped, why.
pub(super) fn replay(cfg: &mut Config, state: &LiveState) -> (LiveState, Vec<String>) {
    let mut kept = LiveState::default();
    let mut dropped = Vec::new();
    for cmd in &state.changes {
        match apply(cfg, cmd) {
            Ok(()) => kept.changes.push(cmd.clone()),
            Err(why) => dropped.push(format!(
                "`{}` dropped: {why}",
                live_state::command_line(cmd)
            )),
        }
    }
    (kept, dropped)
}

fn apply(cfg: &mut Config, cmd: &Command) -> Result<(), String> {
    match cmd {
        Command::PortAdd(p) => {
            if cfg.ports.iter().any(|x| x.name == p.name) {
                return Err(format!("port {} is in the config file now", p.name));
            }
            let port = cfg.check_new_port(p).map_err(|e| e.0)?;
            cfg.ports.push(port);
        }
        Command::PortDel { name } => {
            let i = cfg
                .port_position(name)
                .map_err(|_| format!("the config file has no port {name} any more"))?;
            if cfg.pinned_by_static_fdb(i) {
                return Err(format!("port {name} is named by a [[switch.fdb]] entry"));
            }
            remove_port(cfg, i);
        }
        Command::HostAdd(h) => {
            if cfg.hosts.iter().any(|x| x.name == h.name) {
                return Err(format!("host {} is in the config file now", h.name));
            }
            let new = new_host(h).map_err(|(_, m)| m)?;
            cfg.add_host(new).map_err(|e| e.0)?;
        }
        Command::HostDel { name } => cfg.remove_host(name).map_err(|e| e.0)?,
        Command::Allow { port, net } => {
            let net = parse_net(net).map_err(|(_, m)| m)?;
            cfg.allow_extra(port, net).map_err(|e| e.0)?;
        }
        Command::Disallow { port, net } => {
            let net = parse_net(net).map_err(|(_, m)| m)?;
            cfg.disallow_extra(port, net).map_err(|e| e.0)?;
        }
        other => return Err(format!("{other:?} is not a live change")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::parse;
    use crate::control::protocol::{HostAdd, NewPort};

    const FILE: &str = "[network]\nname = \"t\"\nsubnet = \"10.0.0.0/24\"\ngateway = \"10.0.0.1\"\n\
                        domain = \"t.test\"\n\
                        [[host]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nipv4 = \"10.0.0.11\"\n\
                        [[port]]\nname = \"vm1\"\nkind = \"tap\"\nifname = \"t-vm1\"\nhost = \"vm1\"\n";

    fn state(changes: Vec<Command>) -> LiveState {
        LiveState {
            version: 1,
            changes,
        }
    }

    fn host3() -> Command {
        Command::HostAdd(HostAdd {
            name: "vm3".into(),
            mac: "52:54:00:00:00:03".into(),
            ipv4: "10.0.0.13".into(),
            extra_ipv4: vec![],
            port: None,
        })
    }

    fn port3() -> Command {
        Command::PortAdd(NewPort {
            name: "vm3".into(),
            kind: "tap".into(),
            ifname: Some("t-vm3".into()),
            host: Some("vm3".into()),
            ..NewPort::default()
        })
    }

    #[test]
    fn replay_applies_in_order_and_drops_what_no_longer_applies() {
        let mut cfg = parse(FILE, "t.toml").unwrap();
        let allow = Command::Allow {
            port: "vm1".into(),
            net: "10.0.0.64/28".into(),
        };
        let gone = Command::PortDel { name: "vm9".into() };
        let (kept, dropped) = replay(
            &mut cfg,
            &state(vec![host3(), port3(), allow.clone(), gone]),
        );
        assert_eq!(kept.changes, vec![host3(), port3(), allow]);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("port del vm9") && dropped[0].contains("no port vm9"));
        assert!(cfg.hosts.iter().any(|h| h.name == "vm3"));
        let p = cfg.ports.iter().find(|p| p.name == "vm3").unwrap();
        assert_eq!(cfg.hosts[p.host.unwrap()].name, "vm3");
        assert_eq!(cfg.hosts[0].extra_ipv4, ["10.0.0.64/28".parse().unwrap()]);
    }

    #[test]
    fn what_the_file_now_has_is_dropped_from_the_state() {
        let text = format!(
            "{FILE}[[host]]\nname = \"vm3\"\nmac = \"52:54:00:00:00:03\"\nipv4 = \"10.0.0.13\"\n"
        );
        let mut cfg = parse(&text, "t.toml").unwrap();
        let (kept, dropped) = replay(&mut cfg, &state(vec![host3(), port3()]));
        assert_eq!(kept.changes, vec![port3()]);
        assert!(dropped[0].contains("in the config file now"), "{dropped:?}");
    }

    #[test]
    fn a_deleted_file_port_stays_deleted() {
        let mut cfg = parse(FILE, "t.toml").unwrap();
        let del = Command::PortDel { name: "vm1".into() };
        let (kept, dropped) = replay(&mut cfg, &state(vec![del.clone()]));
        assert!(dropped.is_empty());
        assert_eq!(kept.changes, vec![del]);
        assert!(cfg.ports.is_empty());
    }
}
