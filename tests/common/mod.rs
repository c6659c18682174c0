//! The namespace test bed: a `Lab` makes uniquely named network namespaces, runs the daemon in
//! one of its own (entered with `nsenter --net`, so the daemon stays in the root mount namespace
//! and the namespaces it creates are visible to the test), and removes every namespace and
//! process it started when dropped, even if the test panicked.
#![allow(dead_code, unreachable_pub)]

pub mod clients;
pub mod unit;
pub mod vm;

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn require_root() {
    // The effective uid, from /proc/self/status (no libc call needed in tests).
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "namespace tests need root (CI runs as root); run the README's test command as root"
    );
}

/// Runs a command, returning its output; panics with the command line if it cannot start.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

pub fn netns_exists(name: &str) -> bool {
    let out = sh(&["ip", "netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// What the daemon printed, once it has exited.
#[derive(Debug)]
pub struct Exit {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Exit {
    /// The counters row of `port` from the table the daemon prints when it stops.
    pub fn counters(&self, port: &str) -> PortRow {
        let line = self
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(port))
            .unwrap_or_else(|| panic!("no counters row for {port} in:\n{}", self.stdout));
        let f: Vec<&str> = line.split_whitespace().collect();
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        PortRow {
            rx_frames: n(1),
            tx_frames: n(3),
            fdb_full: n(5),
            downs: n(6),
            drops: f[7..].join(" "),
        }
    }
}

#[derive(Debug)]
pub struct PortRow {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub fdb_full: u64,
    /// Times the port's link went down (netdev gone, socket peer left).
    pub downs: u64,
    pub drops: String,
}

/// A lab: a daemon namespace, host namespaces, a temp dir, and the daemon process.
pub struct Lab {
    /// Unique short prefix for every name this lab makes (fits IFNAMSIZ with a suffix).
    pub tag: String,
    pub dir: PathBuf,
    daemon: Option<Child>,
    namespaces: Vec<String>,
    /// Extra environment for the daemon (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let tag = format!(
            "sy{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("switchyard-test-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // The daemon registers itself (`switchyard list`) in the lab's own run directory, never
        // in the machine's /run/switchyard.
        let run_dir = dir.join("run").display().to_string();
        let lab = Lab {
            tag,
            dir,
            daemon: None,
            namespaces: Vec::new(),
            // Never the machine's resolvers: a network without upstreams gets none
            // (`control::resolv`); a test that wants some gives its own file.
            env: vec![
                ("SWITCHYARD_RUN_DIR".into(), run_dir),
                ("SWITCHYARD_RESOLV_CONF".into(), String::new()),
            ],
        };
        let sw = lab.switch_ns();
        let out = sh(&["ip", "netns", "add", &sw]);
        assert!(out.status.success(), "ip netns add {sw}: {out:?}");
        lab
    }

    /// The namespace the daemon runs in.
    pub fn switch_ns(&self) -> String {
        format!("{}-sw", self.tag)
    }

    /// A host namespace name for this lab (the daemon creates it; the lab removes leftovers).
    pub fn ns(&mut self, host: &str) -> String {
        let name = format!("{}-{host}", self.tag);
        if !self.namespaces.contains(&name) {
            self.namespaces.push(name.clone());
        }
        name
    }

    /// A tap name unique to this lab (<= 15 bytes).
    pub fn ifname(&self, host: &str) -> String {
        let name = format!("{}{host}", self.tag);
        assert!(name.len() <= 15, "ifname {name} too long");
        name
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.join("switchyard.toml");
        fs::write(&path, text).unwrap();
        path
    }

    /// Starts `switchyard run --config` inside the switch namespace.
    pub fn spawn(&mut self, config: &str) {
        self.spawn_with(config, &[]);
    }

    /// Like `spawn`, through `wrapper` (a command that execs its arguments, e.g. `setpriv
    /// --reuid=...`), so the daemon's pid is still the child's.
    pub fn spawn_with(&mut self, config: &str, wrapper: &[&str]) {
        let path = self.write_config(config);
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.switch_ns()))
            .args(wrapper)
            .arg(env!("CARGO_BIN_EXE_switchyard"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsenter switchyard");
        self.daemon = Some(child);
    }

    /// Starts the daemon and waits until `ifname` is up inside each host namespace.
    pub fn start(&mut self, config: &str, hosts: &[(&str, &str)]) {
        self.start_with(config, hosts, &[]);
    }

    /// Like `start`, through `wrapper` (see `spawn_with`).
    pub fn start_with(&mut self, config: &str, hosts: &[(&str, &str)], wrapper: &[&str]) {
        self.spawn_with(config, wrapper);
        for (host, ifname) in hosts {
            let ns = self.ns(host);
            self.wait_for(
                &format!("{ifname} up in {ns}"),
                Duration::from_secs(15),
                || {
                    if !netns_exists(&ns) {
                        return false;
                    }
                    let out = sh(&["ip", "-n", &ns, "-br", "link", "show", "dev", ifname]);
                    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
                },
            );
        }
    }

    /// Polls `cond` every 50 ms until it holds or `limit` passes; panics (with the daemon's
    /// output) on timeout or if the daemon died.
    pub fn wait_for(&mut self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if cond() {
                return;
            }
            if let Some(child) = self.daemon.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let exit = self.collect(status.code());
                    panic!("daemon exited ({status}) while waiting for {what}:\n{exit:?}");
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `args` inside host namespace `host`.
    pub fn exec(&mut self, host: &str, args: &[&str]) -> Output {
        let ns = self.ns(host);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ping -c count` from `host` to `addr`; true if every reply came back.
    pub fn ping(&mut self, host: &str, addr: &str, count: u32) -> bool {
        let c = count.to_string();
        self.exec(
            host,
            &["ping", "-n", "-q", "-c", &c, "-i", "0.05", "-W", "1", addr],
        )
        .status
        .success()
    }

    fn collect(&mut self, code: Option<i32>) -> Exit {
        let mut child = self.daemon.take().expect("daemon");
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut stdout);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let _ = child.wait();
        Exit {
            code,
            stdout,
            stderr,
        }
    }

    /// Sends `signal` to the daemon and waits (bounded) for it to exit.
    pub fn stop_with(&mut self, signal: &str) -> Exit {
        let child = self.daemon.as_mut().expect("daemon running");
        let pid = child.id().to_string();
        // nsenter execs the daemon, so the child's pid is the daemon's.
        sh(&["kill", &format!("-{signal}"), &pid]);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return self.collect(status.code());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let exit = self.collect(None);
                panic!("daemon did not stop within 15 s of SIG{signal}:\n{exit:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of the daemon: no cleanup runs (the namespaces it made stay; its taps vanish).
    pub fn kill9(&mut self) {
        let mut child = self.daemon.take().expect("daemon running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits (bounded) for a daemon that should exit on its own, e.g. on a startup error.
    pub fn wait_exit(&mut self, limit: Duration) -> Exit {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.daemon.as_mut().expect("daemon");
            if let Ok(Some(status)) = child.try_wait() {
                return self.collect(status.code());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let exit = self.collect(None);
                panic!("daemon still running after {limit:?}:\n{exit:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The control socket `lab_config` puts in the lab's directory.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Runs `switchyard ARGS --socket <the lab's control socket>` (as root).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg("--socket")
            .arg(self.control_socket())
            .output()
            .unwrap_or_else(|e| panic!("cannot run switchyard {args:?}: {e}"))
    }

    /// Like `cli`, and asserts success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "switchyard {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The daemon's pid (nsenter execs it, so the child's pid is the daemon's).
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// A namespace `up` joined to the daemon's namespace by a veth, for fake upstream servers:
    /// 192.0.2.1/24 on the daemon's side, each of `addrs` (in 192.0.2.0/24) on the other; lo up
    /// on both sides. Nothing leaves the lab's namespaces. Returns the namespace's name.
    pub fn upstream_ns(&mut self, addrs: &[&str]) -> String {
        let run = |args: &[&str]| {
            let out = sh(args);
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        let up = self.ns("up");
        run(&["ip", "netns", "add", &up]);
        let (a, b) = (self.ifname("u0"), self.ifname("u1"));
        let sw = self.switch_ns();
        run(&[
            "ip", "link", "add", &a, "netns", &sw, "type", "veth", "peer", "name", &b, "netns", &up,
        ]);
        run(&["ip", "-n", &sw, "addr", "add", "192.0.2.1/24", "dev", &a]);
        run(&["ip", "-n", &sw, "link", "set", &a, "up"]);
        run(&["ip", "-n", &sw, "link", "set", "lo", "up"]);
        for addr in addrs {
            run(&[
                "ip",
                "-n",
                &up,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &b,
            ]);
        }
        run(&["ip", "-n", &up, "link", "set", &b, "up"]);
        run(&["ip", "-n", &up, "link", "set", "lo", "up"]);
        up
    }

    /// Names of links in the switch namespace other than lo.
    pub fn switch_links(&self) -> Vec<String> {
        let out = sh(&["ip", "-n", &self.switch_ns(), "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n != "lo")
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self
            .namespaces
            .iter()
            .chain(std::iter::once(&self.switch_ns()))
        {
            if netns_exists(ns) {
                let _ = sh(&["ip", "netns", "del", ns]);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        // A daemon killed above (or with kill9) leaves its control socket behind; configs that
        // do not set one use the default path, named after the network (the lab's tag).
        let _ = fs::remove_file(format!("/run/switchyard/{}.sock", self.tag));
    }
}

/// A config for `hosts` (name, last octet), each on its own tap plugged into a namespace.
pub fn lab_config(lab: &mut Lab, hosts: &[(&str, u8, bool)], extra_switch: &str) -> String {
    let mut c = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\n[switch]\n\
         control_socket = \"{socket}\"\n{extra_switch}\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        socket = lab.control_socket().display()
    );
    for (h, octet, isolated) in hosts {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        c.push_str(&format!(
            "\n[[host]]\nname = \"{h}\"\nmac = \"52:54:00:31:00:{octet:02x}\"\nipv4 = \"10.13.31.{octet}\"\n\
             \n[[port]]\nname = \"{h}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nhost = \"{h}\"\n\
             netns = \"{ns}\"\nisolated = {isolated}\n"
        ));
    }
    c
}

/// A broadcast ARP request from `mac`/`ip` for `target`, padded to the 60-byte minimum.
pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}
