//! The DNS forwarder against off-path forgery (RFC 5452), through the daemon: a fake upstream
//! in its own namespace (joined to the daemon's by a veth, `Lab::upstream_ns`) records the
//! source port and id of every forwarded query. Forty queries leave from forty-odd ports spread
//! over the range with ids spread too; a forged answer with the right id from the upstream's
//! address but another port, and one from another address, are refused (counted as
//! `answers_refused`) while the real answer, sent after them, is what the client gets.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab_config, sh, Lab};

const UPSTREAM: &str = "192.0.2.53";
const OTHER: &str = "192.0.2.99";

/// The fake upstream: answers A queries with 192.0.2.7 and logs `port id name` per query. For
/// names starting with `spoof` it first sends two forgeries (6.6.6.6) with the right id to the
/// right client port: one from its own address but port 5353, one from `OTHER`:53.
const FAKE: &str = r#"
import signal, socket, struct, sys, time
# Bounded by itself (and killed directly by the test: no wrapper process in between).
signal.alarm(120)
log = open(sys.argv[1], 'a', buffering=1)
main = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); main.bind((sys.argv[2], 53))
wrong_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); wrong_port.bind((sys.argv[2], 5353))
wrong_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); wrong_addr.bind((sys.argv[3], 53))
def answer(q, addr):
    qid, = struct.unpack('!H', q[:2])
    i = 12
    while q[i] != 0:
        i += q[i] + 1
    question = q[12:i + 5]
    rr = b'\xc0\x0c' + struct.pack('!HHIH', 1, 1, 60, 4) + socket.inet_aton(addr)
    return struct.pack('!HHHHHH', qid, 0x8180, 1, 1, 0, 0) + question + rr
def name(q):
    i, labels = 12, []
    while q[i] != 0:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += q[i] + 1
    return '.'.join(labels)
print('ready', flush=True)
while True:
    q, peer = main.recvfrom(4096)
    n = name(q)
    log.write('%d %d %s\n' % (peer[1], struct.unpack('!H', q[:2])[0], n))
    if n.lower().startswith('spoof'):
        wrong_port.sendto(answer(q, '6.6.6.6'), peer)
        wrong_addr.sendto(answer(q, '6.6.6.6'), peer)
        time.sleep(0.2)
    main.sendto(answer(q, '192.0.2.7'), peer)
"#;

/// A process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dig_short(lab: &mut Lab, names: &[String]) -> Vec<String> {
    let mut args = vec![
        "timeout",
        "60",
        "dig",
        "@10.13.31.1",
        "+short",
        "+tries=1",
        "+time=3",
    ];
    args.extend(names.iter().map(String::as_str));
    let out = lab.exec("vm1", &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

/// Range (max - min) of `v`.
fn spread(v: &[u16]) -> u16 {
    v.iter().max().unwrap() - v.iter().min().unwrap()
}

#[test]
fn forwarded_queries_use_random_ports_and_ids_and_forged_answers_are_refused() {
    let mut lab = Lab::new();
    let up = lab.upstream_ns(&[UPSTREAM, OTHER]);
    let log = lab.dir.join("upstream.log");
    std::fs::write(&log, "").unwrap();
    let mut fake = Proc(
        Command::new("ip")
            .args(["netns", "exec", &up, "/usr/bin/python3", "-c"])
            .arg(FAKE)
            .arg(&log)
            .args([UPSTREAM, OTHER])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake upstream"),
    );
    {
        use std::io::Read;
        let mut out = fake.0.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        out.read_exact(&mut buf)
            .expect("fake upstream did not start");
        assert_eq!(&buf, b"ready\n");
    }
    let mut cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    cfg.push_str(&format!(
        "\n[dns]\nupstreams = [\"{UPSTREAM}\"]\ntimeout_ms = 3000\n"
    ));
    let ifname = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &ifname)]);

    // Forty distinct names: none is answered from the cache.
    let names: Vec<String> = (0..40).map(|i| format!("q{i}.example.org")).collect();
    let got = dig_short(&mut lab, &names);
    assert_eq!(got.len(), 40, "answers: {got:?}");
    assert!(got.iter().all(|a| a == "192.0.2.7"), "{got:?}");

    // The real answer wins over the forgeries that arrived before it.
    let got = dig_short(&mut lab, &["spoof.example.org".to_string()]);
    assert_eq!(got, ["192.0.2.7"], "a forged answer was used");

    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.lines().count() >= 41 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let rows: Vec<(u16, u16)> = text
        .lines()
        .filter(|l| l.split(' ').nth(2).is_some_and(|n| n.starts_with('q')))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 40, "the upstream saw:\n{text}");
    let ports: Vec<u16> = rows.iter().map(|r| r.0).collect();
    let ids: Vec<u16> = rows.iter().map(|r| r.1).collect();
    let distinct_ports = ports.iter().collect::<HashSet<_>>().len();
    let distinct_ids = ids.iter().collect::<HashSet<_>>().len();
    println!(
        "source ports: {distinct_ports} distinct, range {}; ids: {distinct_ids} distinct, range {}\n{ports:?}\n{ids:?}",
        spread(&ports),
        spread(&ids)
    );
    // 40 uniform draws from ~64,000 ports (or 65,536 ids): a repeat is rare, and the range is
    // under a quarter of the space with probability about 1e-20. A fixed port gives 1 and 0.
    assert!(distinct_ports >= 36, "source ports: {ports:?}");
    assert!(distinct_ids >= 36, "ids: {ids:?}");
    assert!(spread(&ports) > 16_384, "source ports: {ports:?}");
    assert!(spread(&ids) > 16_384, "ids: {ids:?}");

    let exit = lab.stop_with("TERM");
    let counters = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("dns: "))
        .unwrap_or_else(|| panic!("no dns counters:\n{}", exit.stdout))
        .to_string();
    let refused: u64 = counters
        .split_whitespace()
        .find_map(|f| f.strip_prefix("answers_refused=")?.parse().ok())
        .unwrap_or_else(|| panic!("no answers_refused in {counters}"));
    assert!(
        refused >= 2,
        "the two forgeries were not counted: {counters}"
    );
    drop(fake);
    // Nothing of the lab's is left in the root namespace's links.
    let links = String::from_utf8_lossy(&sh(&["ip", "-o", "link"]).stdout).to_string();
    assert!(!links.contains(&lab.tag), "{links}");
}
