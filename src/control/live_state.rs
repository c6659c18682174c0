//! Live state that lasts: the changes made through the control socket (`port add|del`, `host
//! add|del`, `allow`, `disallow`), kept in the network's state directory so that a restart or
//! a reload brings them back instead of unplugging running VMs.
//!
//! # Theory of operation
//!
//! The state is an ordered list of the change commands that succeeded, exactly as the control
//! protocol carries them, in `<[dhcp] state_dir>/live.json`. Each successful change is
//! [`LiveState::record`]ed and the file is rewritten whole: a temporary file, fsynced, renamed
//! over the old one, and the directory fsynced, so a crash leaves the old list or the new one,
//! never half of either. Recording compacts: a `port del` of a port added live removes both, so
//! do `host del` after `host add` and `disallow` after `allow` of the same thing; the list
//! holds what differs from the file, not the history.
//!
//! The list is replayed over the config file's contents at start and at every reload (the
//! daemon side, `daemon::live_state`), each change checked by the same rules as when it was
//! made. A change the file has since made redundant (the host or port is in the file now) or
//! impossible (its port is gone) is dropped from the list, with a log line; the rest stay. A
//! reload with `--prune` replays nothing and empties the list: the file alone is the truth.
//! `switchyard state` prints the list as the commands that would make it again, and `switchyard
//! state --save` writes it into the config file and empties it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::protocol::Command;

/// The state file's name inside `[dhcp] state_dir`.
pub const FILE: &str = "live.json";
/// The file format's version.
const VERSION: u32 = 1;

/// The live changes of one network, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    pub version: u32,
    pub changes: Vec<Command>,
}

/// `<state_dir>/live.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Whether `cmd` is a change that lasts (the rest are reads, captures and reloads).
pub fn is_change(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::PortAdd(_)
            | Command::PortDel { .. }
            | Command::HostAdd(_)
            | Command::HostDel { .. }
            | Command::Allow { .. }
            | Command::Disallow { .. }
    )
}

impl LiveState {
    /// Reads the state at `path`; no file is an empty state.
    pub fn load(path: &Path) -> io::Result<LiveState> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let state: LiveState = serde_json::from_str(&text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: not a live state file: {e}", path.display()),
                    )
                })?;
                if state.version != VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: live state version {} (this build reads {VERSION})",
                            path.display(),
                            state.version
                        ),
                    ));
                }
                Ok(state)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LiveState::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state to `path` atomically and durably (temporary file, fsync, rename,
    /// fsync of the directory); the directory is made if missing. An empty state removes the
    /// file.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        if self.changes.is_empty() {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            return sync_dir(dir);
        }
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut text = serde_json::to_string_pretty(&LiveState {
            version: VERSION,
            changes: self.changes.clone(),
        })
        .map_err(io::Error::other)?;
        text.push('\n');
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    }

    /// Adds a change that succeeded, compacting it against the list (see the module doc).
    pub fn record(&mut self, cmd: Command) {
        let undone = match &cmd {
            Command::PortDel { name } => {
                self.take(|c| matches!(c, Command::PortAdd(p) if &p.name == name))
            }
            Command::HostDel { name } => {
                self.take(|c| matches!(c, Command::HostAdd(h) if &h.name == name))
            }
            Command::Disallow { port, net } => self
                .take(|c| matches!(c, Command::Allow { port: p, net: n } if p == port && n == net)),
            Command::Allow { port, net } => self.take(
                |c| matches!(c, Command::Disallow { port: p, net: n } if p == port && n == net),
            ),
            _ => false,
        };
        if !undone {
            self.changes.push(cmd);
        }
    }

    /// Removes the last change matching `undoes`; true if there was one.
    fn take(&mut self, undoes: impl Fn(&Command) -> bool) -> bool {
        match self.changes.iter().rposition(undoes) {
            Some(i) => {
                self.changes.remove(i);
                true
            }
            None => false,
        }
    }

    /// The changes as the commands that would make them again, one a line.
    pub fn commands(&self) -> Vec<String> {
        self.changes.iter().map(command_line).collect()
    }
}

/// `switchyard state --save`: writes `state`'s changes into the config file at `path`,
/// keeping its comments and layout, checks the result with the file's own rules, and replaces
/// the file atomically. Nothing is written if any change cannot be expressed or the result is
/// not a valid config.
pub fn save_into_config(path: &Path, state: &LiveState) -> Result<(), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for cmd in &state.changes {
        edit(&mut doc, cmd).map_err(|e| format!("`{}`: {e}", command_line(cmd)))?;
    }
    let new = doc.to_string();
    super::config::parse(&new, &path.display().to_string())
        .map_err(|e| format!("the config with the live changes would not load: {e}"))?;
    let tmp = path.with_extension("toml.switchyard-tmp");
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(&tmp, meta.permissions())?;
        }
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The `[[name]]` array of tables, made if missing.
fn tables<'a>(
    doc: &'a mut toml_edit::DocumentMut,
    name: &str,
) -> Result<&'a mut toml_edit::ArrayOfTables, String> {
    doc.entry(name)
        .or_insert(toml_edit::Item::ArrayOfTables(
            toml_edit::ArrayOfTables::new(),
        ))
        .as_array_of_tables_mut()
        .ok_or_else(|| format!("{name} is not an array of tables ([[{name}]])"))
}

fn named<'a>(
    doc: &'a mut toml_edit::DocumentMut,
    kind: &str,
    name: &str,
) -> Result<&'a mut toml_edit::Table, String> {
    tables(doc, kind)?
        .iter_mut()
        .find(|t| t.get("name").and_then(|v| v.as_str()) == Some(name))
        .ok_or_else(|| format!("the file has no [[{kind}]] named {name}"))
}

fn remove_named(doc: &mut toml_edit::DocumentMut, kind: &str, name: &str) -> Result<(), String> {
    let list = tables(doc, kind)?;
    let i = list
        .iter()
        .position(|t| t.get("name").and_then(|v| v.as_str()) == Some(name))
        .ok_or_else(|| format!("the file has no [[{kind}]] named {name}"))?;
    list.remove(i);
    Ok(())
}

/// `ADDR` as `ADDR/32` (or /128), for comparing extras however they are written.
fn as_net(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .or_else(|_| text.parse())
        .ok()
}

/// One change, made to the document.
fn edit(doc: &mut toml_edit::DocumentMut, cmd: &Command) -> Result<(), String> {
    use toml_edit::{value, Array, Table};
    match cmd {
        Command::PortAdd(p) => {
            let mut t = Table::new();
            t["name"] = value(&p.name);
            t["kind"] = value(&p.kind);
            for (key, v) in [
                ("ifname", &p.ifname),
                ("path", &p.path),
                ("peer", &p.peer),
                ("host", &p.host),
                ("netns", &p.netns),
            ] {
                if let Some(v) = v {
                    t[key] = value(v);
                }
            }
            if let Some(mtu) = p.mtu {
                t["mtu"] = value(i64::from(mtu));
            }
            for (key, on) in [("isolated", p.isolated), ("trusted", p.trusted)] {
                if on {
                    t[key] = value(true);
                }
            }
            tables(doc, "port")?.push(t);
        }
        Command::PortDel { name } => remove_named(doc, "port", name)?,
        Command::HostAdd(h) => {
            let mut t = Table::new();
            t["name"] = value(&h.name);
            t["mac"] = value(&h.mac);
            t["ipv4"] = value(&h.ipv4);
            if !h.extra_ipv4.is_empty() {
                t["extra_ipv4"] = value(h.extra_ipv4.iter().collect::<Array>());
            }
            tables(doc, "host")?.push(t);
            if let Some(port) = &h.port {
                named(doc, "port", port)?["host"] = value(&h.name);
            }
        }
        Command::HostDel { name } => remove_named(doc, "host", name)?,
        Command::Allow { port, net } | Command::Disallow { port, net } => {
            let host = named(doc, "port", port)?
                .get("host")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("port {port} has no host in the file"))?;
            let want = as_net(net).ok_or_else(|| format!("{net} is not an address or prefix"))?;
            let key = if want.addr().is_ipv4() {
                "extra_ipv4"
            } else {
                "extra_ipv6"
            };
            let t = named(doc, "host", &host)?;
            let list = t
                .entry(key)
                .or_insert(value(Array::new()))
                .as_array_mut()
                .ok_or_else(|| format!("host {host}: {key} is not an array"))?;
            if matches!(cmd, Command::Allow { .. }) {
                list.push(net.as_str());
            } else {
                list.retain(|v| v.as_str().and_then(as_net) != Some(want));
            }
        }
        other => return Err(format!("{other:?} is not a live change")),
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    match fs::File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `switchyard port add vm3 --kind tap --ifname tap-vm3`, and so on.
pub fn command_line(cmd: &Command) -> String {
    let mut s = String::from("switchyard ");
    let opt = |s: &mut String, key: &str, v: &Option<String>| {
        if let Some(v) = v {
            s.push_str(&format!(" --{key} {v}"));
        }
    };
    match cmd {
        Command::PortAdd(p) => {
            s.push_str(&format!("port add {} --kind {}", p.name, p.kind));
            opt(&mut s, "ifname", &p.ifname);
            opt(&mut s, "path", &p.path);
            opt(&mut s, "peer", &p.peer);
            opt(&mut s, "host", &p.host);
            opt(&mut s, "netns", &p.netns);
            opt(&mut s, "mtu", &p.mtu.map(|m| m.to_string()));
            if p.isolated {
                s.push_str(" --isolated");
            }
            if p.trusted {
                s.push_str(" --trusted");
            }
        }
        Command::PortDel { name } => s.push_str(&format!("port del {name}")),
        Command::HostAdd(h) => {
            s.push_str(&format!(
                "host add {} --mac {} --ipv4 {}",
                h.name, h.mac, h.ipv4
            ));
            for x in &h.extra_ipv4 {
                s.push_str(&format!(" --extra-ipv4 {x}"));
            }
            opt(&mut s, "port", &h.port);
        }
        Command::HostDel { name } => s.push_str(&format!("host del {name}")),
        Command::Allow { port, net } => s.push_str(&format!("allow {port} {net}")),
        Command::Disallow { port, net } => s.push_str(&format!("disallow {port} {net}")),
        other => s.push_str(&format!("{other:?}")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{HostAdd, NewPort};

    fn port(name: &str) -> Command {
        Command::PortAdd(NewPort {
            name: name.into(),
            kind: "tap".into(),
            ifname: Some(format!("tap-{name}")),
            ..NewPort::default()
        })
    }

    fn host(name: &str) -> Command {
        Command::HostAdd(HostAdd {
            name: name.into(),
            mac: "52:54:00:00:00:03".into(),
            ipv4: "10.0.0.3".into(),
            extra_ipv4: vec![],
            port: Some("vm3".into()),
        })
    }

    #[test]
    fn recording_compacts_what_was_undone() {
        let mut s = LiveState::default();
        s.record(host("h3"));
        s.record(port("vm3"));
        s.record(Command::Allow {
            port: "vm3".into(),
            net: "10.0.0.64/28".into(),
        });
        s.record(Command::PortDel { name: "vm1".into() });
        assert_eq!(s.changes.len(), 4);
        s.record(Command::Disallow {
            port: "vm3".into(),
            net: "10.0.0.64/28".into(),
        });
        s.record(Command::PortDel { name: "vm3".into() });
        s.record(Command::HostDel { name: "h3".into() });
        // Only the deletion of the file's port vm1 is left.
        assert_eq!(s.changes, vec![Command::PortDel { name: "vm1".into() }]);
        // Disallowing a file extra, then allowing it again, is the file again.
        let mut s = LiveState::default();
        let (p, n) = ("vm1".to_string(), "10.0.0.50".to_string());
        s.record(Command::Disallow {
            port: p.clone(),
            net: n.clone(),
        });
        s.record(Command::Allow { port: p, net: n });
        assert!(s.changes.is_empty());
    }

    #[test]
    fn save_is_atomic_and_load_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("sy-live-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let file = path(&dir);
        assert_eq!(LiveState::load(&file).unwrap(), LiveState::default());
        let mut s = LiveState::default();
        s.record(host("h3"));
        s.record(port("vm3"));
        s.save(&file).unwrap();
        assert!(!dir.join(".live.json.tmp").exists());
        let back = LiveState::load(&file).unwrap();
        assert_eq!(back.changes, s.changes);
        assert_eq!(
            back.commands(),
            [
                "switchyard host add h3 --mac 52:54:00:00:00:03 --ipv4 10.0.0.3 --port vm3",
                "switchyard port add vm3 --kind tap --ifname tap-vm3",
            ]
        );
        // Emptied: the file goes.
        LiveState::default().save(&file).unwrap();
        assert!(!file.exists());
        fs::write(&file, "{not json").unwrap();
        assert!(LiveState::load(&file).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
