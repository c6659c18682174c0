//! Frame order across workers. With two workers, each port is read by its owner, and also by the
//! other worker when it collects the replies to frames it has just written there. One reader at
//! a time per port keeps each port's frames in order; this test would see reordering if two
//! workers read one tap at once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{lab_config, Lab};

/// A process in a lab namespace, killed when dropped.
struct Bg(Option<Child>);

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Echoes every datagram on UDP port 7000 for at most 30 s, then prints how many arrived and
/// how many arrived with a sequence number lower than one seen before.
const ECHO: &str = r#"
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("10.13.31.12", 7000))
s.settimeout(1.0)
end = time.time() + 30
last, seen, late = -1, 0, 0
while time.time() < end:
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        if seen:
            break
        continue
    n = struct.unpack("!I", data[:4])[0]
    if n == 0xFFFFFFFF:
        break
    seen += 1
    if n < last:
        late += 1
    last = max(last, n)
    s.sendto(data, peer)
print(seen, late, flush=True)
"#;

/// Sends 20,000 numbered datagrams, at most 256 unanswered, collects the echoes (giving up after
/// a second without one), and prints how many came back and how many came back out of order.
const CLIENT: &str = r#"
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.connect(("10.13.31.12", 7000))
s.setblocking(False)
TOTAL, sent, got, late, last = 20000, 0, 0, 0, -1
pad = bytes(60)
quiet_since, end = time.time(), time.time() + 20
while got < TOTAL and time.time() < end and time.time() - quiet_since < 1.0:
    while sent < TOTAL and sent - got < 256:
        s.send(struct.pack("!I", sent) + pad)
        sent += 1
    try:
        n = struct.unpack("!I", s.recv(2048)[:4])[0]
    except BlockingIOError:
        time.sleep(0.0001)
        continue
    quiet_since = time.time()
    got += 1
    if n < last:
        late += 1
    last = max(last, n)
s.send(struct.pack("!I", 0xFFFFFFFF))
print(sent, got, late, flush=True)
"#;

fn python(lab: &mut Lab, host: &str, script: &str) -> Command {
    let ns = lab.ns(host);
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns, "/usr/bin/python3", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn numbers(out: &std::process::Output) -> Vec<u64> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .map(|w| w.parse().unwrap_or_else(|_| panic!("bad output {out:?}")))
        .collect()
}

#[test]
fn frames_keep_their_order_when_two_workers_share_a_port() {
    // Two workers: h1's tap goes to worker 0, h2's to worker 1.
    echo_in_order("workers = 2");
}

#[test]
fn frames_keep_their_order_with_busy_polling_workers() {
    echo_in_order("workers = 2\npoll_us = 2000");
}

fn echo_in_order(switch: &str) {
    let mut lab = Lab::new();
    let hosts = [("h1", 11, false), ("h2", 12, false)];
    let cfg = lab_config(&mut lab, &hosts, switch);
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
    assert!(lab.ping("h1", "10.13.31.12", 3), "no path h1 -> h2");

    let mut echo = Bg(Some(python(&mut lab, "h2", ECHO).spawn().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    let client = python(&mut lab, "h1", CLIENT).output().unwrap();
    let echo_out = echo.0.take().unwrap().wait_with_output().unwrap();

    let c = numbers(&client);
    let e = numbers(&echo_out);
    assert_eq!(c.len(), 3, "client printed {client:?}");
    assert_eq!(e.len(), 2, "echo printed {echo_out:?}");
    let (sent, got, late_at_client) = (c[0], c[1], c[2]);
    let (seen, late_at_echo) = (e[0], e[1]);
    assert_eq!(sent, 20_000);
    // The point is order, not loss; but a path that lost most frames would prove nothing.
    assert!(
        got >= sent * 9 / 10,
        "only {got} of {sent} echoes came back"
    );
    assert!(seen >= got, "echo saw {seen}, client got {got}");
    assert_eq!(
        late_at_echo, 0,
        "h1 -> h2 reordered {late_at_echo} of {seen}"
    );
    assert_eq!(
        late_at_client, 0,
        "h2 -> h1 reordered {late_at_client} of {got}"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "daemon exit: {exit:?}");
}
