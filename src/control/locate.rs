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
        (self.config != super::config::DEFAULT_SOURCE).then(|| PathBuf::from(&self.config))
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
    fn no_run_dir_is_no_entries() {
        assert!(entries(&tmp("none")).is_empty());
    }
}
