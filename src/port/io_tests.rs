//! Root-only tests of the port layer against the real kernel: taps, namespaces, netlink, epoll.
//!
//! Each test reads setup → act → check, uses names unique to this process and test, and cleans
//! up through the same `Drop` impls the daemon relies on (plus guards for what the code under test
//! does not own), so a failing assertion leaves nothing behind. Without root these tests fail
//! loudly: CI runs as root, and a silent skip would hide a broken port layer.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::netlink::Netlink;
use super::{sys, Epoll, Events, Netns, PortError, TapPort};
use crate::wire::{EtherType, EthernetFrame, MacAddr, ETHERNET_HEADER_LEN, VNET_HDR_LEN};

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "this test needs root (CI runs as root): run `sudo -E cargo test`"
    );
}

/// A name unique to this process and call: `{prefix}{pid}-{n}` (tap names stay under 15 bytes).
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip ARGS` (inside `netns` if given): success and stdout.
fn ip(netns: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["netns", "exec", ns, "ip"]);
    }
    let out = cmd.args(args).output().expect("run ip");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn link_exists(netns: Option<&str>, ifname: &str) -> bool {
    ip(netns, &["link", "show", "dev", ifname]).0
}

/// Whether `ifname` is gone within two seconds: a tap closed by its last fd is unregistered by
/// the kernel a moment later, longer on a loaded machine.
fn link_gone(netns: Option<&str>, ifname: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while link_exists(netns, ifname) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

fn netns_listed(name: &str) -> bool {
    let (_, out) = ip(None, &["netns", "list"]);
    out.lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_OP_REQUEST: u16 = 1;
const ARP_OP_REPLY: u16 = 2;
const ARP_LEN: usize = 28;

/// A virtio-net header (all zero: no offload) followed by an ARP request for `target`.
fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&MacAddr::BROADCAST.octets());
    f.extend_from_slice(&src_mac.octets());
    f.extend_from_slice(&u16::from(EtherType::Arp).to_be_bytes());
    f.extend_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    f.extend_from_slice(&u16::from(EtherType::Ipv4).to_be_bytes());
    f.extend_from_slice(&[6, 4]); // hardware and protocol address lengths
    f.extend_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    f.extend_from_slice(&src_mac.octets());
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&MacAddr::ZERO.octets());
    f.extend_from_slice(&target.octets());
    f
}

/// If `frame` (virtio-net header + Ethernet) is an ARP reply, its sender MAC and IP.
fn arp_reply_sender(frame: &[u8]) -> Option<(MacAddr, Ipv4Addr)> {
    assert!(
        frame.len() >= VNET_HDR_LEN,
        "every tap read starts with the virtio-net header"
    );
    let eth = EthernetFrame::new_checked(&frame[VNET_HDR_LEN..])?;
    if eth.ethertype() != EtherType::Arp {
        return None;
    }
    let arp = frame
        .get(VNET_HDR_LEN + ETHERNET_HEADER_LEN..)?
        .get(..ARP_LEN)?;
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    (op == ARP_OP_REPLY).then(|| {
        let ip = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
        (MacAddr::from_bytes(&arp[8..14]), ip)
    })
}

/// Reads frames from `tap` until `want` accepts one or `timeout` passes.
fn wait_for_frame<T>(
    tap: &TapPort,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let ep = Epoll::new().unwrap();
    ep.add(tap.fd(), 1).unwrap();
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ep.wait(&mut events, Duration::from_millis(100)).unwrap() == 0 {
            continue;
        }
        assert_eq!(events.token(0), 1);
        loop {
            match tap.recv(&mut buf) {
                Ok(n) => {
                    if let Some(found) = want(&buf[..n]) {
                        return Some(found);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("tap read: {e}"),
            }
        }
    }
    None
}

#[test]
fn plugged_tap_answers_arp_and_everything_is_removed() {
    require_root();
    let ns_name = unique("sy-t-");
    let tap_name = unique("syt");
    let host_mac: MacAddr = "02:5e:00:00:00:02".parse().unwrap();
    let switch_mac: MacAddr = "02:5e:00:00:00:01".parse().unwrap();
    let host_ip = Ipv4Addr::new(10, 213, 0, 2);

    let ns = Netns::ensure(&ns_name).unwrap();
    assert!(ns.is_owned());
    assert!(netns_listed(&ns_name), "the netns is visible from outside");
    assert!(ip(Some(&ns_name), &["-br", "link", "show", "dev", "lo"])
        .1
        .contains("UP"));

    let mut tap = TapPort::open(&tap_name, 1400).unwrap();
    assert!(tap.is_owned());
    assert!(link_exists(None, &tap_name));
    tap.plug_into(&ns, Some(host_mac), Some((host_ip, 24)))
        .unwrap();
    assert_eq!(tap.netns(), Some(ns_name.as_str()));

    assert!(
        !link_exists(None, &tap_name),
        "moved out of the root namespace"
    );
    let (ok, link) = ip(Some(&ns_name), &["-br", "link", "show", "dev", &tap_name]);
    assert!(ok, "{tap_name} is in {ns_name}");
    assert!(
        link.contains(&host_mac.to_string()) && link.contains("UP"),
        "{link}"
    );
    assert!(ip(Some(&ns_name), &["link", "show", "dev", &tap_name])
        .1
        .contains("mtu 1400"));
    let (_, addr) = ip(Some(&ns_name), &["-br", "addr", "show", "dev", &tap_name]);
    assert!(addr.contains("10.213.0.2/24"), "{addr}");

    let request = arp_request(switch_mac, Ipv4Addr::new(10, 213, 0, 1), host_ip);
    assert_eq!(tap.send(&request).unwrap(), request.len());
    let reply = wait_for_frame(&tap, Duration::from_secs(3), arp_reply_sender);
    assert_eq!(
        reply,
        Some((host_mac, host_ip)),
        "the kernel in {ns_name} answers ARP"
    );

    drop(tap);
    assert!(
        link_gone(Some(&ns_name), &tap_name),
        "closing the fd removes the created tap"
    );
    drop(ns);
    assert!(!netns_listed(&ns_name));
    assert!(!sys::netns_path(&ns_name).exists());
    assert!(!link_exists(None, &tap_name));
}

/// Leaves no persistent tap behind, wherever a failed test left it: clears `IFF_PERSIST`.
struct PersistentTap(String);

impl PersistentTap {
    fn create(name: &str) -> PersistentTap {
        let fd = sys::open_tun().unwrap();
        sys::tun_set_iff(fd.as_fd(), name, libc::IFF_TAP | libc::IFF_NO_PI).unwrap();
        sys::tun_set_persist(fd.as_fd(), true).unwrap();
        PersistentTap(name.to_string())
    }
}

impl Drop for PersistentTap {
    fn drop(&mut self) {
        if let Ok(fd) = sys::open_tun() {
            if sys::tun_set_iff(fd.as_fd(), &self.0, libc::IFF_TAP | libc::IFF_NO_PI).is_ok() {
                let _ = sys::tun_set_persist(fd.as_fd(), false);
            }
        }
    }
}

#[test]
fn found_persistent_tap_is_moved_back_and_kept() {
    require_root();
    let tap_name = unique("syp");
    let guard = PersistentTap::create(&tap_name);
    let ns = Netns::ensure(&unique("sy-t-")).unwrap();

    let mut tap = TapPort::open(&tap_name, 1500).unwrap();
    assert!(!tap.is_owned(), "it existed: not ours to remove");
    let info = sys::tun_get_iff(tap.fd()).unwrap();
    assert!(info.is_persistent());
    assert_ne!(
        info.flags & libc::IFF_VNET_HDR,
        0,
        "attaching switched the vnet header on"
    );
    tap.plug_into(&ns, None, None).unwrap();
    assert!(link_exists(Some(ns.name()), &tap_name));

    // The namespace's name goes first; the port still holds the namespace, so the tap survives.
    drop(ns);
    drop(tap);
    assert!(link_exists(None, &tap_name), "moved back home and kept");

    drop(guard);
    assert!(link_gone(None, &tap_name), "guard removed it");
}

#[test]
fn refusals_name_the_problem() {
    require_root();
    let tap_name = unique("syb");
    let first = TapPort::open(&tap_name, 1500).unwrap();
    first.bring_up().unwrap();
    assert!(ip(None, &["-br", "link", "show", "dev", &tap_name])
        .1
        .contains("UP"));
    let again = TapPort::open(&tap_name, 1500).unwrap_err();
    assert!(matches!(again, PortError::TapBusy { .. }), "{again}");
    drop(first);
    assert!(link_gone(None, &tap_name));

    let lo = TapPort::open("lo", 1500).unwrap_err();
    assert!(matches!(lo, PortError::NotATap { .. }), "{lo}");
    assert!(lo.to_string().contains("ip link del lo"));
    let mtu = TapPort::open(&tap_name, 70_000).unwrap_err();
    assert!(matches!(mtu, PortError::InvalidMtu { .. }), "{mtu}");
    assert!(link_gone(None, &tap_name));

    let ns = Netns::ensure(&unique("sy-t-")).unwrap();
    let mut tap = TapPort::open(&tap_name, 1500).unwrap();
    let multicast = Some("01:00:5e:00:00:01".parse().unwrap());
    let mac = tap.plug_into(&ns, multicast, None).unwrap_err();
    assert!(matches!(mac, PortError::InvalidMac { .. }), "{mac}");
    assert!(
        link_exists(None, &tap_name),
        "refused before anything moved"
    );
}

#[test]
fn second_handle_on_a_netns_does_not_delete_it() {
    require_root();
    let name = unique("sy-t-");
    let first = Netns::ensure(&name).unwrap();
    let second = Netns::ensure(&name).unwrap();
    assert!(first.is_owned() && !second.is_owned());
    drop(second);
    assert!(netns_listed(&name));
    drop(first);
    assert!(!netns_listed(&name));
}

#[test]
fn leftover_file_is_not_taken_for_a_netns() {
    require_root();
    let name = unique("sy-t-");
    std::fs::create_dir_all(sys::NETNS_RUN_DIR).unwrap();
    let path = sys::netns_path(&name);
    std::fs::write(&path, b"").unwrap();
    let err = Netns::ensure(&name).unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert!(matches!(err, PortError::NotANetns { .. }), "{err}");
}

#[test]
fn netns_socket_leaves_the_caller_where_it_was() {
    require_root();
    let me = || std::fs::read_link(sys::THREAD_NETNS).unwrap();
    let before = me();
    let ns = Netns::ensure(&unique("sy-t-")).unwrap();
    let mut nl = Netlink::open_in(ns.fd()).unwrap();
    assert_eq!(me(), before);
    // A fresh namespace holds only lo (index 1); the root one has eth0 as well.
    assert_eq!(nl.link_index("lo").unwrap(), 1);
    let lo_here = Netlink::open().unwrap().link_index("lo").unwrap();
    assert_eq!(lo_here, sys::if_nametoindex("lo").unwrap());
    let missing = nl.link_index("sy-missing").unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENODEV));
    let own = sys::open_netns(Path::new(sys::THREAD_NETNS)).unwrap();
    assert!(sys::is_net_namespace(own.as_fd()).unwrap());
}

#[test]
fn offload_flags_can_be_set_and_cleared() {
    require_root();
    let tap = TapPort::open(&unique("syo"), 1500).unwrap();
    sys::tun_set_offload(tap.fd(), libc::TUN_F_CSUM | libc::TUN_F_TSO4).unwrap();
    sys::tun_set_offload(tap.fd(), 0).unwrap();
}

#[test]
fn tap_takes_offloads_and_counts_what_the_kernel_drops_at_its_ring() {
    require_root();
    let ns_name = unique("sy-t-");
    let ns = Netns::ensure(&ns_name).unwrap();
    let tap_name = unique("syk");
    let mut tap = TapPort::open(&tap_name, 1500).unwrap();
    let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    assert_eq!(tap.offloads() & tcp, tcp, "{:#x}", tap.offloads());
    assert!(tap.accepts_offloads());
    tap.plug_into(&ns, None, Some((Ipv4Addr::new(10, 214, 0, 2), 24)))
        .unwrap();
    assert_eq!(tap.kernel_tx_dropped().unwrap(), 0);

    // Nobody reads the tap: 6000 datagrams to a static neighbour fill its ring (TX_QUEUE_LEN
    // frames) and the kernel drops the rest.
    let (ok, out) = ip(
        Some(&ns_name),
        &[
            "neigh",
            "add",
            "10.214.0.9",
            "lladdr",
            "02:5e:00:00:00:09",
            "dev",
            &tap_name,
        ],
    );
    assert!(ok, "{out}");
    let blast = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 for _ in range(6000): s.sendto(b'x', ('10.214.0.9', 9))";
    let sent = Command::new("timeout")
        .args([
            "20",
            "ip",
            "netns",
            "exec",
            &ns_name,
            "/usr/bin/python3",
            "-c",
            blast,
        ])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let dropped = tap.kernel_tx_dropped().unwrap();
    let ring = super::tap::TX_QUEUE_LEN as u64;
    assert!(
        dropped >= 6000 - ring && dropped < 6000 - ring / 2,
        "{dropped} dropped: the ring should hold about {ring} frames"
    );
}
