//! The host's resolvers, for a network whose `[dns]` names no `upstreams` (as dnsmasq and
//! libvirt use the host's `/etc/resolv.conf`).
//!
//! The files are read in order, and the first that names a usable nameserver wins:
//! `/run/systemd/resolve/resolv.conf` (systemd-resolved's list of the real upstreams, where it
//! runs) and then `/etc/resolv.conf`. Skipped: systemd-resolved's stub addresses 127.0.0.53 and
//! 127.0.0.54 (a resolv.conf that names only the stub is how resolved is usually seen, and the
//! stub is not reachable from a daemon in another network namespace), the network's own
//! gateway (the appliance would ask itself), unspecified addresses, and scoped IPv6 addresses.
//! `$SWITCHYARD_RESOLV_CONF`, a ':'-separated list of files, replaces the default list; empty
//! means none (the tests use it, so they never read the machine's resolvers).
//!
//! The list is read when the daemon starts, and the running DNS server looks at the files
//! again every [`WATCH_EVERY`] ([`Watch`]): when one of them was written, renamed into place,
//! created or removed (its modification time or length changed), the list is read again and
//! the forwarder's upstreams are replaced (queries already forwarded still wait for their
//! answers). That is what dnsmasq does with its resolv-file when a laptop changes networks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::config::Config;

/// The default files, in order.
pub const DEFAULT_FILES: &[&str] = &["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"];
/// At most this many upstreams (the config's own limit).
const MAX: usize = 16;

/// `$SWITCHYARD_RESOLV_CONF`, or [`DEFAULT_FILES`].
pub fn files() -> Vec<PathBuf> {
    match std::env::var("SWITCHYARD_RESOLV_CONF") {
        Ok(list) => list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        Err(_) => DEFAULT_FILES.iter().map(PathBuf::from).collect(),
    }
}

/// The usable nameservers of one resolv.conf's text.
pub fn nameservers(text: &str, gateway: Ipv4Addr) -> Vec<SocketAddr> {
    let stubs = [Ipv4Addr::new(127, 0, 0, 53), Ipv4Addr::new(127, 0, 0, 54)];
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()).flatten()
        })
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .filter(|a| match a {
            IpAddr::V4(v4) => !stubs.contains(v4) && *v4 != gateway && !v4.is_unspecified(),
            IpAddr::V6(v6) => !v6.is_unspecified(),
        })
        .map(|a| SocketAddr::new(a, 53))
        .take(MAX)
        .collect()
}

/// The host's resolvers now: the first of [`files`] that names a usable nameserver, and its
/// nameservers (`None` and empty: none).
pub fn host_upstreams(gateway: Ipv4Addr) -> (Option<PathBuf>, Vec<SocketAddr>) {
    read_upstreams(&files(), gateway)
}

fn read_upstreams(files: &[PathBuf], gateway: Ipv4Addr) -> (Option<PathBuf>, Vec<SocketAddr>) {
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let found = nameservers(&text, gateway);
        if !found.is_empty() {
            return (Some(file.clone()), found);
        }
    }
    (None, Vec::new())
}

/// With `upstreams_from_host`, fills `[dns] upstreams` from the first file that names a usable
/// nameserver; returns the file used, if any. A config with upstreams of its own is untouched.
pub fn fill_upstreams(cfg: &mut Config) -> Option<PathBuf> {
    if !cfg.dns.enabled || !cfg.dns.upstreams_from_host {
        return None;
    }
    let (file, found) = host_upstreams(cfg.network.gateway);
    cfg.dns.upstreams = found;
    file
}

/// How often a running DNS server looks at the host's resolv.conf files.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Each file's modification time and length (`None`: not there or unreadable).
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Watches the host's resolv.conf files for changes, by polling their metadata (no inotify:
/// a file renamed into place, as resolvconf and systemd-resolved write it, is caught too).
#[derive(Debug)]
pub struct Watch {
    gateway: Ipv4Addr,
    files: Vec<PathBuf>,
    stamp: Stamp,
    next: Duration,
}

impl Watch {
    /// Starts from the files as they are now (what [`fill_upstreams`] read at start).
    pub fn new(gateway: Ipv4Addr) -> Watch {
        let files = files();
        Watch {
            gateway,
            stamp: stamp(&files),
            files,
            next: WATCH_EVERY,
        }
    }

    /// At most every [`WATCH_EVERY`] of `now`: if a file changed since the last look, the
    /// resolvers read again (as [`host_upstreams`] does).
    pub fn changed(&mut self, now: Duration) -> Option<(Option<PathBuf>, Vec<SocketAddr>)> {
        if now < self.next {
            return None;
        }
        self.next = now + WATCH_EVERY;
        let stamp = stamp(&self.files);
        if stamp == self.stamp {
            return None;
        }
        self.stamp = stamp;
        Some(read_upstreams(&self.files, self.gateway))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_the_gateway_and_scoped_addresses_are_skipped() {
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let text = "# Generated by resolvconf\nnameserver 127.0.0.53\noptions edns0 trust-ad\n\
                    nameserver 10.0.0.1\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n\
                    nameserver 2001:db8::53\nsearch example.test\nnameserver\n";
        assert_eq!(
            nameservers(text, gw),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        assert!(nameservers("nameserver 127.0.0.53\n", gw).is_empty());
    }

    #[test]
    fn a_watch_sees_a_rewritten_file_only_when_it_is_time_to_look() {
        let dir = std::env::temp_dir().join(format!("sy-resolv-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        std::fs::write(&file, "nameserver 192.0.2.1\n").unwrap();
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut w = Watch {
            gateway: gw,
            files: vec![file.clone()],
            stamp: stamp(std::slice::from_ref(&file)),
            next: WATCH_EVERY,
        };
        assert_eq!(w.changed(WATCH_EVERY), None, "unchanged");
        // Written into place by a rename, as resolvconf does.
        let tmp = dir.join("resolv.conf.new");
        std::fs::write(&tmp, "nameserver 192.0.2.2\nnameserver 192.0.2.3\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_eq!(
            w.changed(WATCH_EVERY + Duration::from_millis(10)),
            None,
            "too soon"
        );
        let got = w.changed(WATCH_EVERY * 2).expect("a change");
        assert_eq!(got.1.len(), 2, "{got:?}");
        assert_eq!(got.1[0], "192.0.2.2:53".parse::<SocketAddr>().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
