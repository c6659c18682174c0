//! `sy-vmguest`: plays a VM's virtio-net driver for `scripts/bench-vm.sh`.
//!
//! Either it is the vhost-user frontend of a switch port (`--vhost-user PATH`: its own memfd
//! memory and split virtqueues, `switchyard::port::vhost_user::guest`), or it drives a tap the
//! way QEMU does without vhost-net (`--tap NAME`: one `read`/`write` of virtio-net header +
//! frame per frame, the tap created here with IFF_VNET_HDR and TSO/checksum offloads). The
//! same roles run over either, so the two paths move the same frames:
//!
//! - `sink`: announces its MAC (so the switch or bridge learns it), then counts what arrives
//!   until `--idle-ms` passes with nothing, or `--seconds`; prints frames, bytes and the time
//!   from the first frame to the last (a vhost-user sink also how often it caught up and slept
//!   waiting for a call, how many of those sleeps timed out, and their total microseconds).
//! - `blast --to MAC --size N [--gso]`: sends frames for `--seconds` as fast as the path takes
//!   them (a full vhost-user TX ring waits, as a guest driver does; a tap write never waits).
//!   `--gso`: one TCP/IPv4 super-frame of N bytes with a GSO header, as a guest with TSO sends.
//! - `echo`: sends every frame back to where it came from (MACs swapped).
//! - `ping --to MAC --count N`: ping-pong with an `echo` guest, prints p50/p99 in µs.
//!
//! Output: one line of `key=value` pairs on stdout for the script to parse.
//! A separate binary (not a `switchyard` subcommand) because it is a test tool: it shares the
//! crate's guest driver and tap code, and stays out of the daemon's CLI.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use switchyard::port::vhost_user::guest::{GuestConfig, GuestNic};
use switchyard::port::TapPort;
use switchyard::wire::checksum::{checksum as ipv4_checksum, fold, pseudo_header_sum};
use switchyard::wire::{MacAddr, VNET_HDR_LEN};

#[derive(Parser)]
#[command(about = "A pretend VM NIC for the vhost-user vs kernel bridge benchmark")]
struct Args {
    /// Connect to this vhost-user socket as the frontend.
    #[arg(long, conflicts_with = "tap")]
    vhost_user: Option<std::path::PathBuf>,
    /// Create this tap (IFF_VNET_HDR, offloads on) and read/write it as QEMU would.
    #[arg(long)]
    tap: Option<String>,
    /// This guest's MAC.
    #[arg(long)]
    mac: String,
    /// Stop after this long whatever happens.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    Sink {
        #[arg(long, default_value_t = 1000)]
        idle_ms: u64,
    },
    Blast {
        #[arg(long)]
        to: String,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        gso: bool,
    },
    Echo,
    Ping {
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 2000)]
        count: usize,
    },
}

/// Either NIC.
enum Nic {
    Vu(Box<GuestNic>),
    Tap(TapPort),
}

impl Nic {
    /// One header + frame, or `None` if nothing came within `wait`.
    fn recv(&mut self, buf: &mut Vec<u8>, wait: Duration) -> Option<usize> {
        match self {
            Nic::Vu(g) => {
                if let Ok(Some(n)) = g.recv(buf) {
                    return Some(n);
                }
                let _ = g.wait_rx(wait);
                g.recv(buf).ok().flatten()
            }
            Nic::Tap(t) => {
                buf.resize(VNET_HDR_LEN + 65_550, 0);
                if let Ok(n) = t.recv(buf) {
                    return Some(n);
                }
                let _ = switchyard::port::wait_readable(&t.fd(), wait);
                t.recv(buf).ok()
            }
        }
    }

    /// Counts one received frame without copying it where the path allows (vhost-user: it
    /// stays in guest memory; a tap must be read): (length with header, destination MAC).
    fn take(&mut self, buf: &mut Vec<u8>, wait: Duration) -> Option<(usize, [u8; 6])> {
        let dst = |b: &[u8]| -> [u8; 6] {
            b[VNET_HDR_LEN..VNET_HDR_LEN + 6]
                .try_into()
                .unwrap_or([0; 6])
        };
        match self {
            Nic::Vu(g) => {
                if let Ok(Some(f)) = g.recv_in_place() {
                    return Some(f);
                }
                let t = Instant::now();
                let ready = g.wait_rx(wait).unwrap_or(false);
                WAITS.fetch_add(1, Relaxed);
                if !ready {
                    TIMEOUTS.fetch_add(1, Relaxed);
                }
                WAIT_US.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
                g.recv_in_place().ok().flatten()
            }
            Nic::Tap(_) => {
                let n = self.recv(buf, wait)?;
                (n >= VNET_HDR_LEN + 6).then(|| (n, dst(&buf[..n])))
            }
        }
    }

    /// Sends a batch of frames; how many went (a tap takes them all or drops them itself).
    fn send(&mut self, frames: &[&[u8]]) -> usize {
        match self {
            Nic::Vu(g) => match g.send_many(frames) {
                Ok(()) => frames.len(),
                Err(_) => 0,
            },
            Nic::Tap(t) => frames.iter().filter(|f| t.send(f).is_ok()).count(),
        }
    }
}

fn parse_mac(s: &str) -> [u8; 6] {
    s.parse::<MacAddr>()
        .unwrap_or_else(|e| panic!("--mac/--to {s:?}: {e}"))
        .octets()
}

/// Header + Ethernet/IPv4 frame of `size` bytes: UDP, or with `gso` a TCP super-frame whose
/// virtio-net header asks for segmentation (MSS 1448) and the TCP checksum.
fn frame(src: [u8; 6], dst: [u8; 6], size: usize, gso: bool) -> Vec<u8> {
    let size = size.max(64);
    let mut f = vec![0u8; VNET_HDR_LEN + size];
    let (h, e) = f.split_at_mut(VNET_HDR_LEN);
    e[0..6].copy_from_slice(&dst);
    e[6..12].copy_from_slice(&src);
    e[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (size - 14) as u16;
    let proto = if gso { 6 } else { 17 };
    let ip = &mut e[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&[10, 99, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 99, 0, 2]);
    let c = ipv4_checksum(ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    if gso {
        let tcp = &mut e[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18; // PSH ACK
        tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
        // The pseudo-header sum, not complemented: the checksum offload finishes it.
        let (src, dst) = (Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 2));
        let pseudo = pseudo_header_sum(src, dst, 6, usize::from(ip_len - 20));
        let partial = fold(u64::from(pseudo));
        tcp[16..18].copy_from_slice(&partial.to_be_bytes());
        h[0] = 1; // NEEDS_CSUM
        h[1] = 1; // GSO TCPV4
        h[2..4].copy_from_slice(&54u16.to_le_bytes());
        h[4..6].copy_from_slice(&1448u16.to_le_bytes());
        h[6..8].copy_from_slice(&34u16.to_le_bytes());
        h[8..10].copy_from_slice(&16u16.to_le_bytes());
    } else {
        let udp = &mut e[34..42];
        udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&9u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    }
    f
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A vhost-user sink's sleeps: how often it caught up and waited for a call, how many of those
/// waits ended with no call, and the microseconds spent in them (printed with its result).
static WAITS: AtomicU64 = AtomicU64::new(0);
static TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static WAIT_US: AtomicU64 = AtomicU64::new(0);

fn main() {
    let args = Args::parse();
    let mac = parse_mac(&args.mac);
    let limit = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut nic = match (&args.vhost_user, &args.tap) {
        (Some(path), _) => {
            // Senders of super-frames get buffers that hold one; everyone else the 4 KiB
            // mergeable buffers a Linux guest posts, in a ring of 1024 (QEMU's rx_queue_size
            // maximum) so that a receiver has about as much room as a tap's 1000-frame queue.
            let (buf_size, queue_size) = match &args.role {
                Role::Blast {
                    gso: true, size, ..
                } => ((*size + VNET_HDR_LEN) as u32, 256),
                _ => (4096, 1024),
            };
            let cfg = GuestConfig {
                buf_size,
                queue_size,
                ..GuestConfig::default()
            };
            Nic::Vu(Box::new(
                GuestNic::connect(path, cfg).expect("vhost-user connect"),
            ))
        }
        (None, Some(name)) => {
            let t = TapPort::open(name, 1500).expect("tap");
            t.bring_up().expect("tap up");
            Nic::Tap(t)
        }
        (None, None) => panic!("--vhost-user PATH or --tap NAME"),
    };
    let mut buf = Vec::with_capacity(70_000);
    match args.role {
        Role::Sink { idle_ms } => {
            // Announce our MAC once the port is surely up, so that the switch or bridge learns
            // it and the stream is unicast, not flooded.
            let hello = frame(mac, [0xff; 6], 64, false);
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(100));
                nic.send(&[&hello]);
            }
            println!("ready=1");
            let (mut frames, mut bytes, mut first, mut last) = (0u64, 0u64, None, Instant::now());
            while Instant::now() < limit {
                match nic.take(&mut buf, Duration::from_millis(50)) {
                    // Only frames for us: a switch's loop probes and floods are not the stream.
                    Some((_, dst)) if dst != mac => {}
                    Some((n, _)) => {
                        frames += 1;
                        bytes += (n - VNET_HDR_LEN) as u64;
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                    None if first.is_some() && last.elapsed() > Duration::from_millis(idle_ms) => {
                        break
                    }
                    None => {}
                }
            }
            let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
            println!(
                "rx_frames={frames} rx_bytes={bytes} secs={secs:.6} cpu={:.2} waits={} timeouts={} wait_us={}",
                cpu_seconds(),
                WAITS.load(Relaxed),
                TIMEOUTS.load(Relaxed),
                WAIT_US.load(Relaxed)
            );
        }
        Role::Blast { to, size, gso } => {
            let f = frame(mac, parse_mac(&to), size, gso);
            let batch: Vec<&[u8]> = vec![&f[..]; if gso { 4 } else { 32 }];
            // A guest's frames are in its memory already: the vhost-user sender writes them
            // into its TX buffers once; the tap sender's write is its one copy.
            if let Nic::Vu(g) = &mut nic {
                g.prefill_tx(&f).expect("prefill");
            }
            let (mut sent, start) = (0u64, Instant::now());
            while Instant::now() < limit {
                let n = match &mut nic {
                    Nic::Vu(g) => g.send_prefilled(batch.len(), f.len() as u32).unwrap_or(0),
                    Nic::Tap(_) => nic.send(&batch),
                };
                if n == 0 {
                    // Ring full: let the switch (on this small machine, maybe this core) run.
                    std::thread::yield_now();
                }
                sent += n as u64;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "tx_frames={sent} tx_bytes={} secs={secs:.6} cpu={:.2}",
                sent * size as u64,
                cpu_seconds()
            );
        }
        Role::Echo => {
            while Instant::now() < limit {
                if let Some(n) = nic.recv(&mut buf, Duration::from_millis(50)) {
                    // Only frames for us (a switch's loop probe echoed back blocks the port).
                    if n < VNET_HDR_LEN + 12 || buf[VNET_HDR_LEN..VNET_HDR_LEN + 6] != mac {
                        continue;
                    }
                    let mut back = buf[..n].to_vec();
                    let e = &mut back[VNET_HDR_LEN..];
                    let (d, s) = e.split_at_mut(6);
                    d.swap_with_slice(&mut s[..6]);
                    nic.send(&[&back]);
                }
            }
            println!("cpu={:.2}", cpu_seconds());
        }
        Role::Ping { to, count } => {
            let f = frame(mac, parse_mac(&to), 64, false);
            let mut rtts = Vec::with_capacity(count);
            while rtts.len() < count && Instant::now() < limit {
                let t0 = Instant::now();
                nic.send(&[&f]);
                let deadline = t0 + Duration::from_millis(200);
                while Instant::now() < deadline {
                    if nic.recv(&mut buf, Duration::from_millis(20)).is_some()
                        && buf[VNET_HDR_LEN..VNET_HDR_LEN + 6] == mac
                    {
                        rtts.push(t0.elapsed());
                        break;
                    }
                }
            }
            rtts.sort();
            let pct = |p: f64| {
                rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
                    .map_or(0.0, |d| d.as_secs_f64() * 1e6)
            };
            println!(
                "pongs={} p50_us={:.1} p99_us={:.1} cpu={:.2}",
                rtts.len(),
                pct(0.5),
                pct(0.99),
                cpu_seconds()
            );
        }
    }
}
