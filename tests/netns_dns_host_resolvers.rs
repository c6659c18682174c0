//! A network without `[dns] upstreams` takes the host's resolvers, as dnsmasq and libvirt do
//! (`control::resolv`). The "host's" resolv.conf files are the test's own, in its directory
//! (`$SWITCHYARD_RESOLV_CONF`): a systemd-resolved stub file naming only 127.0.0.53, then a
//! file with the real upstream; the upstream is a dnsmasq in a namespace of the lab's. The
//! machine's own resolvers are never read or asked.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab_config, sh, Lab};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A dnsmasq in `ns` answering every name under `domain` with `answer`, on `listen` only.
fn fake_upstream(lab: &Lab, ns: &str, listen: &str, domain: &str, answer: &str) -> Proc {
    let pid = lab.dir.join(format!("dnsmasq-{listen}.pid"));
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "dnsmasq",
            "-k",
            "--conf-file=/dev/null",
        ])
        .args([
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
        ])
        .arg(format!("--listen-address={listen}"))
        .arg(format!("--address=/{domain}/{answer}"))
        .arg(format!("--pid-file={}", pid.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq");
    Proc(child)
}

fn dig_short(lab: &mut Lab, host: &str, name: &str) -> String {
    let out = lab.exec(
        host,
        &[
            "timeout",
            "20",
            "dig",
            "@10.13.31.1",
            "+short",
            "+tries=1",
            "+time=3",
            name,
        ],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn no_upstreams_means_the_hosts_resolvers_past_the_resolved_stub() {
    let mut lab = Lab::new();
    let up = lab.upstream_ns(&["192.0.2.53", "192.0.2.54"]);
    let _dnsmasq = fake_upstream(&lab, &up, "192.0.2.53", "example.org", "192.0.2.7");
    let _second = fake_upstream(&lab, &up, "192.0.2.54", "example.org", "192.0.2.8");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh(&[
        "ip",
        "netns",
        "exec",
        &up,
        "dig",
        "@192.0.2.53",
        "+short",
        "+time=1",
        "+tries=1",
        "ready.example.org",
    ])
    .status
    .success()
    {
        assert!(
            Instant::now() < deadline,
            "the fake upstream never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // /etc/resolv.conf as systemd-resolved leaves it (the stub only), and resolved's own list.
    let stub = lab.dir.join("etc-resolv.conf");
    std::fs::write(&stub, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
    let real = lab.dir.join("run-systemd-resolve-resolv.conf");
    std::fs::write(&real, "# resolved's upstreams\nnameserver 192.0.2.53\n").unwrap();
    let files = format!("{}:{}", stub.display(), real.display());
    lab.env.push(("SWITCHYARD_RESOLV_CONF".into(), files));

    let cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    assert!(!cfg.contains("upstreams"), "{cfg}");
    let vm1 = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &vm1)]);
    assert_eq!(dig_short(&mut lab, "vm1", "www.example.org"), "192.0.2.7");
    // Local names stay local.
    assert_eq!(dig_short(&mut lab, "vm1", "vm1.lab.test"), "10.13.31.11");
    // The host's resolvers change (a new file renamed into place, as resolvconf writes it):
    // the running daemon follows within a few seconds, no reload.
    let tmp = lab.dir.join("resolv.new");
    std::fs::write(
        &tmp,
        "# resolved's upstreams, new network\nnameserver 192.0.2.54\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &real).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = String::new();
    while Instant::now() < deadline {
        got = dig_short(&mut lab, "vm1", "new.example.org");
        if got == "192.0.2.8" {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(got, "192.0.2.8", "the new resolver was never asked");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr
            .contains("the host's resolvers are the upstreams")
            && exit.stderr.contains("run-systemd-resolve-resolv.conf")
            && exit.stderr.contains("the host's resolvers changed"),
        "{}",
        exit.stderr
    );

    // `upstreams = []` says none: REFUSED, whatever the host has.
    let none = format!("{cfg}\n[dns]\nupstreams = []\n");
    lab.start(&none, &[("vm1", &vm1)]);
    let out = lab.exec(
        "vm1",
        &[
            "timeout",
            "20",
            "dig",
            "@10.13.31.1",
            "+tries=1",
            "+time=3",
            "www.example.org",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("status: REFUSED"),
        "{out:?}"
    );
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}
