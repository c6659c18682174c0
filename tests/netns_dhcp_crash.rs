//! `kill -9` of the daemon in the middle of a burst of DHCP exchanges from four hosts: every
//! lease a client was acknowledged (its hook ran `bound`) is in the journal afterwards, and after
//! a restart every host gets the address it had. The hosts have no reservations: their addresses
//! come from the pool, so only the journal can give them back.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{clients, Lab};

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

/// A DHCP client loop in a lab namespace, killed (with its children) when dropped.
struct Loop(Child);

impl Drop for Loop {
    fn drop(&mut self) {
        // The loop runs in its own process group: stop the shell and the udhcpc it runs.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn mac(i: usize) -> String {
    format!("52:54:00:31:01:{:02x}", 0x10 + i)
}

fn config(lab: &mut Lab) -> String {
    let mut c = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\npool = [\"10.13.31.100\", \"10.13.31.199\"]\n\
         state_dir = \"{state}\"\nrate_limit = \"off\"\n\n[switch]\ncontrol_socket = \"{sock}\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        sock = lab.dir.join("control.sock").display(),
    );
    for (i, h) in HOSTS.iter().enumerate() {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        c.push_str(&format!(
            "\n[[host]]\nname = \"{h}\"\nmac = \"{mac}\"\n\n[[port]]\nname = \"{h}\"\n\
             kind = \"tap\"\nifname = \"{ifname}\"\nhost = \"{h}\"\nnetns = \"{ns}\"\n\
             address = \"none\"\n",
            mac = mac(i)
        ));
    }
    c
}

/// The offline lease table (read from the journal, no daemon needed): ip by MAC.
fn journal_leases(lab: &Lab) -> HashMap<String, String> {
    let cfg = lab.dir.join("switchyard.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "leases",
            "--offline",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mac"].as_str().unwrap().to_string(),
                l["ipaddr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn kill_9_during_a_dhcp_burst_loses_no_acknowledged_lease() {
    let mut lab = Lab::new();
    let cfg = config(&mut lab);
    let hosts: Vec<(String, String)> = HOSTS
        .iter()
        .map(|h| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    lab.start(&cfg, &refs);

    // Each host runs udhcpc over and over (DORA, exit, again), logging every ACK it acted on.
    let mut loops = Vec::new();
    for h in HOSTS {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        let log = lab.dir.join(format!("{h}.bound"));
        let script = lab.dir.join(format!("{h}.hook"));
        fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in bound|renew) echo \"$ip\" >> {};; esac\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let sh = format!(
            "while true; do udhcpc -i {ifname} -n -q -f -t 2 -T 1 -s {} >/dev/null 2>&1; done",
            script.display()
        );
        let child = Command::new("setsid")
            .args(["ip", "netns", "exec", &ns, "sh", "-c", &sh])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loops.push(Loop(child));
    }
    let dir = lab.dir.clone();
    let bound = |h: &str| -> Vec<String> {
        fs::read_to_string(dir.join(format!("{h}.bound")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Let the burst run until every host has been acknowledged a few times, then kill -9.
    lab.wait_for("every host bound 15 times", Duration::from_secs(60), || {
        HOSTS.iter().all(|h| bound(h).len() >= 15)
    });
    lab.kill9();
    std::thread::sleep(Duration::from_millis(300));
    drop(loops);

    let journal = journal_leases(&lab);
    let mut before = HashMap::new();
    let mut exchanges = 0;
    for (i, h) in HOSTS.iter().enumerate() {
        let acks = bound(h);
        exchanges += acks.len();
        let ips: BTreeSet<&String> = acks.iter().collect();
        assert_eq!(ips.len(), 1, "{h} moved between addresses: {ips:?}");
        let ip = acks[0].clone();
        assert_eq!(
            journal.get(&mac(i)),
            Some(&ip),
            "{h}'s acknowledged lease {ip} is not in the journal: {journal:?}"
        );
        before.insert(h.to_string(), ip);
    }
    println!("{exchanges} acknowledged exchanges before kill -9; journal: {journal:?}");

    // Restart: every host gets its address back.
    lab.start(&cfg, &refs);
    let usc = clients::udhcpc_script(&lab.dir);
    for h in HOSTS {
        assert!(clients::udhcpc(&mut lab, h, &usc, "5"), "{h} after restart");
        let ifname = lab.ifname(h);
        let out = lab.exec(h, &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("inet {}/", before[h])),
            "{h} had {} before kill -9, now: {text}",
            before[h]
        );
    }
}
