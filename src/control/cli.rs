//! The client half of the CLI: finds the daemon's control socket, sends one request, and renders
//! the reply as a table (the default) or JSON (`--json`). `capture` writes pcap by hand.
//!
//! Finding the daemon ([`find`], see `control::locate`): `--socket PATH` if given, else the
//! `control_socket` of `--config FILE`, else `--network NAME`'s, else the one network that runs.
//! Every error says which socket was tried, or which networks run, and what to do.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::control::config::ConfigError;
pub use crate::control::locate::{duration, find, find_in, list, Found, Target};
pub use crate::control::protocol::SNAPLEN;
use crate::control::protocol::{
    from_hex, Body, CapturedFrame, Command, ErrorKind, FdbRow, LeaseRow, PortInfo, Reply, Request,
    PROTOCOL_VERSION,
};
use crate::wire::ipv4::{Ipv4Packet, IPV4_HEADER_LEN};
use crate::wire::ETHERNET_HEADER_LEN;

mod counters;

pub use counters::{services_table, stats, stats_table, why_table};

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot reach the daemon at {path}: {source} (is `switchyard run` running for this \
         network? `switchyard list` shows the running ones; pick one with --network NAME, \
         --config FILE or --socket PATH)"
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error(
        "no switchyard network is running (no daemon registered in {}/networks answers): start \
         one (`systemctl start switchyard@NAME`), or name one with --network NAME, --config FILE \
         or --socket PATH", run_dir.display()
    )]
    NoNetwork { run_dir: PathBuf },
    #[error("{} networks are running ({names}): pick one with --network NAME", names.split(", ").count())]
    Several { names: String },
    #[error(
        "no network '{name}': none of that name is registered in {}/networks and there is no \
         {} (running: {running})", run_dir.display(), config.display()
    )]
    UnknownNetwork {
        name: String,
        run_dir: PathBuf,
        config: PathBuf,
        running: String,
    },
    #[error("talking to the daemon: {0}")]
    Io(#[from] io::Error),
    #[error("the daemon refused ({kind}): {message}")]
    Daemon { kind: ErrorKind, message: String },
    #[error("the daemon's reply makes no sense to this client: {0}")]
    Protocol(String),
}

impl ClientError {
    /// True when no daemon listens at the socket (no file, or nobody accepting).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::Connect { source, .. }
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused))
    }
}

/// One connection to the daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client {
            reader,
            writer: stream,
        })
    }

    fn send(&mut self, command: Command) -> Result<(), ClientError> {
        let req = Request {
            version: PROTOCOL_VERSION,
            command,
        };
        let mut line =
            serde_json::to_string(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        Ok(())
    }

    fn read(&mut self) -> Result<Body, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(ClientError::Protocol(
                "the daemon closed the connection".into(),
            ));
        }
        let reply: Reply =
            serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match (reply.result, reply.error) {
            (_, Some(e)) => Err(ClientError::Daemon {
                kind: e.kind,
                message: e.message,
            }),
            (Some(body), None) => Ok(body),
            (None, None) => Err(ClientError::Protocol(
                "a reply with neither result nor error".into(),
            )),
        }
    }

    /// Sends `command` and reads its one reply.
    pub fn call(&mut self, command: Command) -> Result<Body, ClientError> {
        self.send_or_hear_why(command)?;
        self.read()
    }

    /// Sends `command`; if the daemon already closed the connection (it refuses a peer at
    /// once), returns the refusal it wrote rather than the broken pipe.
    fn send_or_hear_why(&mut self, command: Command) -> Result<(), ClientError> {
        match self.send(command) {
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                match self.read() {
                    Err(refusal @ ClientError::Daemon { .. }) => Err(refusal),
                    _ => Err(ClientError::Io(e)),
                }
            }
            other => other,
        }
    }

    /// Starts a capture of `port` and hands each frame to `on_frame` until `count` frames (or
    /// the daemon ends it). Returns (frames, dropped by the daemon).
    pub fn capture(
        &mut self,
        port: &str,
        count: Option<u64>,
        mut on_frame: impl FnMut(&CapturedFrame, &[u8]) -> io::Result<()>,
    ) -> Result<(u64, u64), ClientError> {
        self.send_or_hear_why(Command::Capture {
            port: port.to_string(),
            count,
        })?;
        match self.read()? {
            Body::CaptureStarted { .. } => {}
            other => return Err(unexpected(&other)),
        }
        loop {
            match self.read()? {
                Body::Frame(f) => {
                    let data = from_hex(&f.data)
                        .ok_or_else(|| ClientError::Protocol("a frame that is not hex".into()))?;
                    on_frame(&f, &data)?;
                }
                Body::CaptureEnd { frames, dropped } => return Ok((frames, dropped)),
                other => return Err(unexpected(&other)),
            }
        }
    }
}

pub(crate) fn unexpected(body: &Body) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {body:?}"))
}

/// Runs one non-streaming command against the daemon at `socket` and renders its reply.
pub fn run(socket: &Path, command: Command, json: bool) -> Result<String, ClientError> {
    let body = Client::connect(socket)?.call(command)?;
    Ok(render(&body, json))
}

/// A reply as the CLI prints it.
pub fn render(body: &Body, json: bool) -> String {
    if json {
        let value = match body {
            Body::Ports(v) => serde_json::to_string(v),
            Body::Fdb(v) => serde_json::to_string(v),
            Body::Leases(v) => serde_json::to_string(v),
            Body::Stats(v) => serde_json::to_string(v),
            Body::Services(s) => serde_json::to_string(s),
            Body::Why(v) => serde_json::to_string(v),
            Body::Done(m) => {
                serde_json::to_string(&serde_json::json!({ "ok": true, "message": m }))
            }
            other => serde_json::to_string(other),
        };
        return value.unwrap_or_default() + "\n";
    }
    match body {
        Body::Ports(v) => ports_table(v),
        Body::Fdb(v) => fdb_table(v),
        Body::Leases(v) => leases_table(v),
        Body::Stats(v) => stats_table(v, true),
        Body::Services(s) => services_table(s, true),
        Body::Why(v) => why_table(v),
        Body::Done(m) => format!("{m}\n"),
        other => format!("{other:?}\n"),
    }
}

/// Left-aligned columns, two spaces apart, header first.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (cell, w) in cells.zip(&widths) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

pub fn ports_table(ports: &[PortInfo]) -> String {
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.kind.clone(),
                p.ifname.clone(),
                p.state.clone(),
                dash(p.mac.as_deref()),
                if p.addresses.is_empty() {
                    "-".into()
                } else {
                    p.addresses.join(",")
                },
                p.guard.clone(),
                p.rx_frames.to_string(),
                p.rx_bytes.to_string(),
                p.tx_frames.to_string(),
                p.tx_bytes.to_string(),
                p.drops.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "PORT",
            "KIND",
            "IFNAME",
            "STATE",
            "MAC",
            "ADDRESSES",
            "GUARD",
            "RX_FRAMES",
            "RX_BYTES",
            "TX_FRAMES",
            "TX_BYTES",
            "DROPS",
        ],
        &rows,
    )
}

pub fn fdb_table(rows: &[FdbRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.mac.clone(),
                r.vlan.to_string(),
                r.port.clone(),
                if r.is_static { "static" } else { "learned" }.into(),
                if r.is_static {
                    "-".into()
                } else {
                    format!("{}s", r.age_secs)
                },
            ]
        })
        .collect();
    table(&["MAC", "VLAN", "PORT", "TYPE", "AGE"], &rows)
}

/// `virsh net-dhcp-leases`'s columns, one row per lease.
pub fn leases_table(leases: &[LeaseRow]) -> String {
    let header = [
        "Expiry Time",
        "MAC address",
        "Protocol",
        "IP address",
        "Hostname",
        "Client ID or DUID",
    ];
    let rows: Vec<[String; 6]> = leases
        .iter()
        .map(|l| {
            [
                l.expiry_time.map_or_else(|| "never".to_string(), utc),
                l.mac.clone(),
                l.kind.clone(),
                format!("{}/{}", l.ipaddr, l.prefix),
                dash(l.hostname.as_deref()),
                dash(l.clientid.as_deref()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(&format!(" {cell}"));
            } else {
                out.push_str(&format!(" {cell:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    let total: usize = widths.iter().sum::<usize>() + 3 * widths.len();
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    out
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` UTC (proleptic Gregorian, days-from-civil inverse).
pub fn utc(epoch: u64) -> String {
    let (days, secs) = (epoch / 86_400, epoch % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A classic pcap file (not pcapng): microsecond timestamps, Ethernet link type. Each record is
/// flushed as it is written, so a capture cut short by Ctrl-C still leaves a readable file.
pub struct PcapWriter<W: Write> {
    out: W,
}

/// pcap's magic for microsecond timestamps, written in the host's byte order as libpcap does.
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&PCAP_MAGIC.to_ne_bytes());
        h.extend_from_slice(&2u16.to_ne_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_ne_bytes());
        h.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
        h.extend_from_slice(&snaplen.to_ne_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(PcapWriter { out })
    }

    /// One record: `data` (possibly truncated) of a frame `orig_len` long, seen at `ts_us`.
    pub fn write(&mut self, ts_us: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(ts_us / 1_000_000).unwrap_or(u32::MAX);
        let usecs = (ts_us % 1_000_000) as u32;
        let incl = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut r = Vec::with_capacity(16 + data.len());
        r.extend_from_slice(&secs.to_ne_bytes());
        r.extend_from_slice(&usecs.to_ne_bytes());
        r.extend_from_slice(&incl.to_ne_bytes());
        r.extend_from_slice(&orig_len.max(incl).to_ne_bytes());
        r.extend_from_slice(data);
        self.out.write_all(&r)?;
        self.out.flush()
    }
}

/// One line about a frame: time, direction, length, MACs, and the IPv4/ARP addresses if any.
pub fn frame_summary(f: &CapturedFrame, data: &[u8]) -> String {
    let secs = f.ts_us / 1_000_000;
    let time = utc(secs);
    let time = time.split(' ').nth(1).unwrap_or("");
    let mac = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut s = format!("{time}.{:06} {} {:>5} ", f.ts_us % 1_000_000, f.dir, f.len);
    if data.len() < 14 {
        s.push_str("runt");
        return s;
    }
    s.push_str(&format!("{} > {} ", mac(&data[6..12]), mac(&data[0..6])));
    let ethertype = u16::from_be_bytes([data[12], data[13]]);
    let ip = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
    match ethertype {
        0x0800 if data.len() >= ETHERNET_HEADER_LEN + IPV4_HEADER_LEN => {
            // The fixed header's fields as they are, even in a malformed frame (a capture shows
            // what crossed the port).
            let ipv4 = Ipv4Packet::new_unchecked(&data[ETHERNET_HEADER_LEN..]);
            let proto = match ipv4.protocol() {
                1 => "icmp".to_string(),
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                p => format!("proto {p}"),
            };
            s.push_str(&format!(
                "IPv4 {} > {} {proto}",
                ipv4.src_addr(),
                ipv4.dst_addr()
            ));
        }
        0x0806 if data.len() >= 42 => {
            let op = if data[21] == 1 { "request" } else { "reply" };
            s.push_str(&format!(
                "ARP {op} {} > {}",
                ip(&data[28..32]),
                ip(&data[38..42])
            ));
        }
        0x86dd => s.push_str("IPv6"),
        t => s.push_str(&format!("ethertype 0x{t:04x}")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59");
    }

    #[test]
    fn pcap_layout() {
        let mut buf = Vec::new();
        let mut w = PcapWriter::new(&mut buf, 65535).unwrap();
        w.write(1_700_000_000_123_456, 60, &[0xab; 42]).unwrap();
        assert_eq!(buf.len(), 24 + 16 + 42);
        assert_eq!(&buf[0..4], &PCAP_MAGIC.to_ne_bytes());
        assert_eq!(&buf[20..24], &1u32.to_ne_bytes());
        assert_eq!(&buf[24..28], &1_700_000_000u32.to_ne_bytes());
        assert_eq!(&buf[28..32], &123_456u32.to_ne_bytes());
        assert_eq!(&buf[32..36], &42u32.to_ne_bytes());
        assert_eq!(&buf[36..40], &60u32.to_ne_bytes());
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
