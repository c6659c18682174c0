//! `kill -9` of the daemon in the middle of a burst of DHCP exchanges from four hosts: every
//! lease a client was acknowledged (its hook ran `bound`) and has not released since is in the
//! journal afterwards, and after a restart that host gets the address it had.
//!
//! The test can fail (issue 17). Round n of a client asks for a lease of 600 + 10 n seconds
//! (option 51) and ends in a RELEASE (`udhcpc -R`), so every round's record differs from the
//! last (a stable pool address cannot hide a lost record): the journal must hold the last ACK's
//! expiry, not an earlier round's. The kill comes from h1's own hook, a few milliseconds after
//! its client read the ACK, and the daemon runs with a slow disk (a 200 ms fault delay before
//! each commit), so a server that sent the ACK before its fsync is caught every time (tried:
//! the committer sending its group's replies before `persist`). The other hosts' hooks wait a
//! moment after `bound` before udhcpc releases, so they are often checked too.

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

/// The offline lease table (read from the journal, no daemon needed): (ip, expiry) by MAC.
fn journal_leases(lab: &Lab) -> HashMap<String, (String, u64)> {
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
                (
                    l["ipaddr"].as_str().unwrap().to_string(),
                    l["expiry_time"].as_u64().unwrap(),
                ),
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
    // A slow disk (200 ms per commit): an ACK sent before its fsync would reach h1's hook, and
    // the kill, well before the record is on disk.
    lab.env
        .push(("SWITCHYARD_FAULT_JOURNAL_DELAY_MS".into(), "200".into()));
    lab.start(&cfg, &refs);
    // The restart below runs without the fault (the lab's own variables stay).
    lab.env
        .retain(|(k, _)| k != "SWITCHYARD_FAULT_JOURNAL_DELAY_MS");

    // Each host runs udhcpc over and over (DORA, exit, again), logging every ACK it acted on.
    let mut loops = Vec::new();
    for h in HOSTS {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        let log = lab.dir.join(format!("{h}.bound"));
        let script = lab.dir.join(format!("{h}.hook"));
        // `bound`: log the address; then h1 kills the daemon at its 15th ACK, the others hold
        // udhcpc a moment (before its release) and log `done`.
        let after = if h == "h1" {
            format!(
                "[ $(wc -l < {log}) -ge 15 ] && kill -9 {pid}",
                log = log.display(),
                pid = lab.daemon_pid()
            )
        } else {
            format!("sleep 0.2; echo done >> {}", log.display())
        };
        fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in bound|renew) echo \"$ip $(date +%s) $lease\" >> {log}; \
                 {after};; esac\nexit 0\n",
                log = log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // -R: release the lease when udhcpc exits (every round).
        let sh = format!(
            "n=0; while true; do n=$((n+1)); udhcpc -i {ifname} -n -q -R -f -t 2 -T 1 \
             -x lease:$((600+10*n)) -s {} >/dev/null 2>&1; done",
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
    // h1's hook kills the daemon at its 15th ACK.
    // (Not `lab.wait_for`: it fails when the daemon exits, which is the point here.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while bound("h1").len() < 15 {
        assert!(
            std::time::Instant::now() < deadline,
            "h1 was not acknowledged 15 times in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stop the loops at once: no client may release what the journal is checked for.
    drop(loops);
    lab.kill9();

    let journal = journal_leases(&lab);
    let mut before = HashMap::new();
    let mut exchanges = 0;
    for (i, h) in HOSTS.iter().enumerate() {
        let lines = bound(h);
        // "ip epoch-seconds-at-bound lease-seconds"
        let acks: Vec<Vec<&str>> = lines
            .iter()
            .filter(|l| *l != "done")
            .map(|l| l.split(' ').collect())
            .collect();
        exchanges += acks.len();
        let ips: BTreeSet<&str> = acks.iter().map(|a| a[0]).collect();
        assert_eq!(ips.len(), 1, "{h} moved between addresses: {ips:?}");
        let terms: BTreeSet<&str> = acks.iter().map(|a| a[2]).collect();
        assert_eq!(
            terms.len(),
            acks.len(),
            "{h}: every round its own term: {lines:?}"
        );
        // Acknowledged and not released since (its hook had not returned): that ACK must be
        // in the journal. Its expiry is at least the client's clock at `bound` (the server's
        // was earlier by the exchange's latency, under 2 s) plus its term; an earlier round's
        // record is at least 10 s shorter.
        if lines.last().is_some_and(|l| l != "done") {
            let last = &acks[acks.len() - 1];
            let (ip, at, term): (&str, u64, u64) =
                (last[0], last[1].parse().unwrap(), last[2].parse().unwrap());
            let got = journal.get(&mac(i));
            assert!(
                got.is_some_and(|(jip, exp)| jip == ip && *exp + 2 >= at + term),
                "{h}'s last acknowledged lease ({ip} for {term} s at {at}) is not in the \
                 journal: {got:?}"
            );
            before.insert(h.to_string(), ip.to_string());
        }
    }
    println!(
        "{exchanges} acknowledged exchanges before kill -9; held at the kill: {before:?}; \
         journal: {journal:?}"
    );
    assert!(
        before.contains_key("h1"),
        "h1 killed the daemon holding its lease"
    );

    // Restart: every host that held a lease gets its address back.
    lab.start(&cfg, &refs);
    let usc = clients::udhcpc_script(&lab.dir);
    for h in before.keys().map(String::as_str) {
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
