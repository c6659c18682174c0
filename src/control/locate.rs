//! Finding a running network: the registry the daemons keep, and which control socket a client
//! command talks to.
//!
//! # Theory of operation
//!
//! A daemon, once its control socket is bound, writes one small JSON file,
//! `<run dir>/networks/<name>.json` (its network's name, socket, config file and pid), and
//! removes it when it stops. The run directory is `/run/switchyard` (the systemd unit's
//! `RuntimeDirectory=`), or `$SWITCHYARD_RUN_DIR`. The entry is only a pointer: whether the
//! network runs is decided by connecting to the socket it names, so an entry left by a daemon
//! killed with SIGKILL is shown as not running and never chosen. Nothing scans for `*.sock`
//! files: a stream port's socket may live in the same directory, and a control request sent to
//! it would be frames on the wire.
//!
//! A client command picks its daemon in this order: `--socket PATH`; the `control_socket` of
//! `--config FILE`; `--network NAME` (the registry's entry for NAME, else
//! `<config dir>/NAME.toml`, the config dir being `/etc/switchyard` or `$SWITCHYARD_CONFIG_DIR`,
//! as the `switchyard@NAME` unit reads it); with none of them, the one network that runs. When
//! none or several run, the error says so and names them.

use std::fs;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cli::{table, unexpected, Client, ClientError};
use super::config;
use super::protocol::{Body, Command, NetworkStatus};

/// The run directory without `$SWITCHYARD_RUN_DIR`.
pub const RUN_DIR: &str = "/run/switchyard";
/// Where `switchyard@NAME.service` reads `NAME.toml`, without `$SWITCHYARD_CONFIG_DIR`.
pub const CONFIG_DIR: &str = "/etc/switchyard";

/// `$SWITCHYARD_RUN_DIR`, or [`RUN_DIR`].
pub fn run_dir() -> PathBuf {
    env_dir("SWITCHYARD_RUN_DIR", RUN_DIR)
}

/// `$SWITCHYARD_CONFIG_DIR`, or [`CONFIG_DIR`].
pub fn config_dir() -> PathBuf {
    env_dir("SWITCHYARD_CONFIG_DIR", CONFIG_DIR)
}

fn env_dir(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

/// One running daemon's registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `[network] name`.
    pub name: String,
    /// Its control socket.
    pub socket: PathBuf,
    /// The config file it runs (or `<embedded default>`).
    pub config: String,
    pub pid: u32,
}

impl Entry {
    /// True when something accepts connections on the entry's socket.
    pub fn is_running(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    /// The config file, unless the daemon runs the embedded default.
    pub fn config_path(&self) -> Option<PathBuf> {
        (self.config != config::DEFAULT_SOURCE).then(|| PathBuf::from(&self.config))
    }
}

/// `<dir>/networks/<name>.json`.
pub fn entry_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("networks").join(format!("{name}.json"))
}

/// Writes `entry` under `dir` (the directory made if missing), atomically: a temporary file,
/// then a rename over the old entry. Returns the entry's path.
pub fn write_entry(dir: &Path, entry: &Entry) -> io::Result<PathBuf> {
    let path = entry_path(dir, &entry.name);
    let parent = path.parent().unwrap_or(dir);
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{}.json.{}", entry.name, entry.pid));
    let text = serde_json::to_string(entry).map_err(io::Error::other)?;
    let mut f = fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    drop(f);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Removes `name`'s entry if it is still `pid`'s (another daemon may have taken the name since).
pub fn remove_entry(dir: &Path, name: &str, pid: u32) {
    let path = entry_path(dir, name);
    if read_entry(&path).is_some_and(|e| e.pid == pid) {
        let _ = fs::remove_file(path);
    }
}

fn read_entry(path: &Path) -> Option<Entry> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Every entry under `dir`, by name; files that are not entries are skipped.
pub fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(list) = fs::read_dir(dir.join("networks")) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = list
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter_map(|p| read_entry(&p))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The entry named `name` under `dir`, if any (running or not).
pub fn entry(dir: &Path, name: &str) -> Option<Entry> {
    read_entry(&entry_path(dir, name))
}

// ---- the client's side: which daemon a command talks to, and `switchyard list` ----

/// What a client command was told about its daemon (`--socket`, `--config`, `--network`).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub socket: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub network: Option<String>,
}

/// The daemon a client command talks to, and the network's config file where one is known
/// (`leases --offline` reads the journal it names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
}

/// Finds the daemon for `target` (see the module documentation), looking for registered
/// daemons in `run_dir` and for `NAME.toml` in `config_dir`.
pub fn find_in(target: &Target, run_dir: &Path, config_dir: &Path) -> Result<Found, ClientError> {
    let with_config = |socket: PathBuf| Found {
        socket,
        config: target.config.clone(),
    };
    if let Some(s) = &target.socket {
        return Ok(with_config(s.clone()));
    }
    if let Some(path) = &target.config {
        return Ok(with_config(config::load(path)?.control.socket));
    }
    let entries = entries(run_dir);
    let running: Vec<&Entry> = entries.iter().filter(|e| e.is_running()).collect();
    let names = |list: &[&Entry]| {
        list.iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = &target.network {
        let file = config_dir.join(format!("{name}.toml"));
        // A running daemon of that name first, then a stale entry, then the config file.
        let entry = running
            .iter()
            .find(|e| &e.name == name)
            .copied()
            .or_else(|| entries.iter().find(|e| &e.name == name));
        if let Some(e) = entry {
            let config = e.config_path().or_else(|| file.exists().then_some(file));
            return Ok(Found {
                socket: e.socket.clone(),
                config,
            });
        }
        if file.exists() {
            let socket = config::load(&file)?.control.socket;
            return Ok(Found {
                socket,
                config: Some(file),
            });
        }
        return Err(ClientError::UnknownNetwork {
            name: name.clone(),
            run_dir: run_dir.to_path_buf(),
            config: file,
            running: if running.is_empty() {
                "none".into()
            } else {
                names(&running)
            },
        });
    }
    match running.as_slice() {
        [] => Err(ClientError::NoNetwork {
            run_dir: run_dir.to_path_buf(),
        }),
        [one] => Ok(Found {
            socket: one.socket.clone(),
            config: one.config_path(),
        }),
        several => Err(ClientError::Several {
            names: names(several),
        }),
    }
}

/// [`find_in`] with the run and config directories of `control::locate`.
pub fn find(target: &Target) -> Result<Found, ClientError> {
    find_in(target, &run_dir(), &config_dir())
}

/// `switchyard list`: every registered network, asked for its status.
pub fn list(run_dir: &Path, json: bool) -> String {
    let rows: Vec<(Entry, Result<NetworkStatus, String>)> = entries(run_dir)
        .into_iter()
        .map(|e| {
            let status = Client::connect(&e.socket)
                .and_then(|mut c| c.call(Command::Status))
                .map_err(|err| match err {
                    ClientError::Connect { .. } => "not running".to_string(),
                    ClientError::Daemon { kind, .. } => kind.to_string(),
                    other => format!("error: {other}"),
                })
                .and_then(|body| match body {
                    Body::Status(s) => Ok(s),
                    other => Err(format!("error: {}", unexpected(&other))),
                });
            (e, status)
        })
        .collect();
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, st)| match st {
                Ok(s) => serde_json::json!({
                    "name": s.name, "state": "running", "socket": s.socket, "config": s.config,
                    "pid": s.pid, "ports": s.ports, "leases": s.leases,
                    "uptime_secs": s.uptime_secs,
                }),
                Err(why) => serde_json::json!({
                    "name": e.name, "state": why, "socket": e.socket, "config": e.config,
                    "pid": e.pid,
                }),
            })
            .collect();
        return serde_json::to_string(&v).unwrap_or_default() + "\n";
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(e, st)| match st {
            Ok(s) => vec![
                s.name.clone(),
                "running".into(),
                s.socket.clone(),
                s.ports.to_string(),
                s.leases.to_string(),
                duration(s.uptime_secs),
                s.config.clone(),
            ],
            Err(why) => vec![
                e.name.clone(),
                why.clone(),
                e.socket.display().to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                e.config.clone(),
            ],
        })
        .collect();
    table(
        &[
            "NAME", "STATE", "SOCKET", "PORTS", "LEASES", "UPTIME", "CONFIG",
        ],
        &rows,
    )
}

/// `45s`, `12m05s`, `3h02m`, `2d04h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sy-locate-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn entries_round_trip_and_removal_checks_the_pid() {
        let dir = tmp("rt");
        let e = Entry {
            name: "vmnet".into(),
            socket: dir.join("vmnet.sock"),
            config: "/etc/switchyard/vmnet.toml".into(),
            pid: 4242,
        };
        let path = write_entry(&dir, &e).unwrap();
        assert_eq!(path, dir.join("networks/vmnet.json"));
        // A stray file and a temporary one are not entries.
        fs::write(dir.join("networks/junk.json"), "not json").unwrap();
        fs::write(dir.join("networks/.x.json.1"), "{}").unwrap();
        assert_eq!(entries(&dir), vec![e.clone()]);
        assert_eq!(entry(&dir, "vmnet"), Some(e.clone()));
        assert!(!e.is_running(), "no socket: not running");
        assert_eq!(
            e.config_path(),
            Some(PathBuf::from("/etc/switchyard/vmnet.toml"))
        );
        remove_entry(&dir, "vmnet", 1);
        assert!(path.exists(), "another pid's entry stays");
        remove_entry(&dir, "vmnet", 4242);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(725), "12m05s");
        assert_eq!(duration(3 * 3600 + 120), "3h02m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600 + 59), "2d04h");
    }

    #[test]
    fn no_run_dir_is_no_entries() {
        assert!(entries(&tmp("none")).is_empty());
    }
}
