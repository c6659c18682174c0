//! `switchyard top` and `switchyard why` against a daemon in a test namespace. `top`, driven in
//! a pseudo-terminal by tmux (a private tmux server, killed at the end), shows live rates and the
//! drops of a spoofing host as they happen, and `q` quits with the terminal restored; with stdout
//! not a terminal it prints one table. `why` names the spoofing host's last dropped frames, their
//! reason and addresses.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{lab_config, sh, Lab};

/// A tmux server of our own (`tmux -L NAME`): no other session on the machine is touched, and
/// Drop kills it and removes its socket file.
struct Tmux {
    name: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("tmux runs (Debian's tmux)")
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let socket = self.run(&["display-message", "-p", "#{socket_path}"]);
        let _ = self.run(&["kill-server"]);
        let path = String::from_utf8_lossy(&socket.stdout).trim().to_string();
        if path.ends_with(&self.name) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A process killed and reaped on Drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ping` from `ns`, 5 a second for `count`, from `source`, in the background.
fn ping(ns: &str, source: &str, to: &str, count: &str) -> Bg {
    Bg(Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-q", "-i", "0.2", "-c", count])
        .args(["-I", source, to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

/// The cells of the table row that starts with `name`.
fn row<'a>(screen: &'a str, name: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().collect())
}

#[test]
fn top_shows_rates_and_drops_live_and_q_quits() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("vm1", 11, false), ("vm2", 12, false)], "");
    let (if1, if2) = (lab.ifname("vm1"), lab.ifname("vm2"));
    lab.start(&cfg, &[("vm1", &if1), ("vm2", &if2)]);
    assert!(lab.ping("vm1", "10.13.31.12", 2));
    let ns1 = lab.ns("vm1");
    // vm1 also sends from an address it was not given: the guard drops those as spoofed_ip.
    assert!(sh(&[
        "ip",
        "-n",
        &ns1,
        "addr",
        "add",
        "10.13.31.99/24",
        "dev",
        &if1
    ])
    .status
    .success());
    let _good = ping(&ns1, "10.13.31.11", "10.13.31.12", "100");
    let _spoofed = ping(&ns1, "10.13.31.99", "10.13.31.12", "100");
    // And asks the gateway's DNS a local name, about five times a second.
    let _dns = Bg(Command::new("ip")
        .args(["netns", "exec", &lab.ns("vm2"), "sh", "-c"])
        .arg(
            "for i in $(seq 100); do dig +short +time=1 +tries=1 @10.13.31.1 vm1.lab.test \
             >/dev/null; sleep 0.2; done",
        )
        .spawn()
        .unwrap());

    let tmux = Tmux {
        name: format!("{}-top", lab.tag),
    };
    // After top the pane's shell says how top exited, on the normal screen, and waits.
    let command = format!(
        "{} top --socket {}; echo top-exit=$?; sleep 60",
        env!("CARGO_BIN_EXE_switchyard"),
        lab.control_socket().display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "100",
        "-y",
        "40",
        "sh",
        "-c",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");

    // Within a few refreshes: vm1 receives at about 10 frames a second, and its spoofed
    // frames are in the last second's drops.
    let deadline = Instant::now() + Duration::from_secs(15);
    let screen = loop {
        let screen = tmux.capture();
        let live = row(&screen, "vm1").is_some_and(|r| r.len() == 8 && r[2] != "-" && r[2] != "0");
        let dropping = screen
            .split("DROPS in the last")
            .nth(1)
            .and_then(|s| s.split("DROPS since start").next())
            .is_some_and(|s| s.contains("vm1 spoofed_ip"));
        let asked = screen.contains("\nDNS   queries ");
        if live && dropping && asked {
            break screen;
        }
        assert!(Instant::now() < deadline, "no live view:\n{screen}");
        sleep(Duration::from_millis(250));
    };
    println!("switchyard top in tmux (100x40):\n{screen}");
    assert!(screen.starts_with("switchyard top  "), "{screen}");
    let header = row(&screen, "PORT").expect("the port table");
    assert_eq!(header[..3], ["PORT", "STATE", "RX"]);
    for port in ["vm1", "vm2", "appliance"] {
        assert_eq!(
            row(&screen, port).map(|r| r[1]),
            Some("up"),
            "{port}:\n{screen}"
        );
    }
    let rx: f64 = row(&screen, "vm1").unwrap()[2].parse().unwrap();
    assert!((1.0..100.0).contains(&rx), "vm1 RX f/s {rx}:\n{screen}");
    assert!(screen.contains("FDB ") && screen.contains(" learned MACs   leases 0"));
    assert!(screen.contains("\nDHCP  ") && screen.contains("\nDNS   "));
    assert!(screen.contains("q quits"));

    // q quits: the program exits 0 and the terminal is back (the alternate screen left).
    assert!(tmux.run(&["send-keys", "-t", "top", "q"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let screen = tmux.capture();
        if screen.contains("top-exit=") {
            break screen;
        }
        assert!(Instant::now() < deadline, "q did not quit:\n{screen}");
        sleep(Duration::from_millis(100));
    };
    assert!(after.contains("top-exit=0"), "top's exit status:\n{after}");
    assert!(
        !after.contains("switchyard top  "),
        "the view is still on screen:\n{after}"
    );

    // Not a terminal: one table from two readings a second apart, then exit.
    let t0 = Instant::now();
    let once = lab.cli_ok(&["top"]);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "two readings a second apart"
    );
    let vm1 = row(&once, "vm1").unwrap_or_else(|| panic!("no vm1 row:\n{once}"));
    assert!(vm1[2].parse::<f64>().is_ok_and(|r| r > 0.0), "{once}");
    assert!(
        !once.contains("q quits") && !once.contains('\x1b'),
        "{once:?}"
    );
}

#[test]
fn why_shows_the_last_drops_of_a_port_with_their_addresses() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("vm1", 11, false), ("vm2", 12, false)], "");
    let (if1, if2) = (lab.ifname("vm1"), lab.ifname("vm2"));
    lab.start(&cfg, &[("vm1", &if1), ("vm2", &if2)]);
    assert!(lab.ping("vm1", "10.13.31.12", 1));
    assert_eq!(
        lab.cli_ok(&["why", "vm1"]),
        "no drops remembered on this port\n"
    );
    let ns1 = lab.ns("vm1");
    assert!(sh(&[
        "ip",
        "-n",
        &ns1,
        "addr",
        "add",
        "10.13.31.99/24",
        "dev",
        &if1
    ])
    .status
    .success());
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &ns1,
        "ping",
        "-q",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "-I",
        "10.13.31.99",
        "10.13.31.12",
    ]);
    assert!(!out.status.success(), "the guard drops them: no reply");

    let why = lab.cli_ok(&["why", "vm1"]);
    let lines: Vec<&str> = why.lines().collect();
    assert!(lines[0].starts_with("AGO "), "{why}");
    let spoofed: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            l.contains(" spoofed_ip ") && l.ends_with("IPv4 10.13.31.99 > 10.13.31.12 icmp")
        })
        .collect();
    assert_eq!(spoofed.len(), 3, "one line per echo request:\n{why}");
    assert!(
        spoofed[0].contains("52:54:00:31:00:0b"),
        "vm1's MAC:\n{why}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&lab.cli_ok(&["why", "vm1", "--json"])).unwrap();
    let first = &rows.as_array().unwrap()[0];
    assert_eq!(first["reason"], "spoofed_ip");
    assert_eq!(first["src_ip"], "10.13.31.99");
    assert_eq!(first["protocol"], "icmp");
    assert_eq!(first["ethertype"], "0x0800");
    assert!(first["ago_ms"].as_u64().unwrap() < 10_000, "{first}");
    // The counts agree, and the other port has nothing to explain.
    assert!(lab.cli_ok(&["stats", "vm1"]).contains("drop.spoofed_ip  3"));
    assert_eq!(
        lab.cli_ok(&["why", "vm2"]),
        "no drops remembered on this port\n"
    );
    let out = lab.cli(&["why", "nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port 'nosuch'"));
}
