//! The Prometheus endpoint (`[metrics] listen`): a tiny HTTP/1.1 server on a std `TcpListener`
//! in the daemon's network namespace, serving the text exposition format at `/metrics`.
//!
//! Theory of operation. One thread accepts (epoll with the daemon's tick, so it sees the stop
//! flag) and answers each connection itself: read the request head (at most 8 KiB, 2 s), answer
//! `GET /metrics` (or `/`) with the counters, anything else with 404/405, and close. A scrape is
//! a few hundred lines built from the same reads as `switchyard stats`, plus the lease count
//! from the appliance; one slow client delays the next scrape by at most the timeouts, and
//! never touches the data plane.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::control::{dns_named, Control};
use super::dhcp::DhcpStats;
use super::TICK;
use crate::control::protocol::PortStats;
use crate::port::{Epoll, Events};
use crate::service::dhcp::DropReason as DhcpDropReason;
use crate::service::dns::DnsCounters;

const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The accept loop; returns when the daemon stops.
pub(super) fn serve(ctl: Arc<Control>, listener: TcpListener) {
    let epoll = match Epoll::new().and_then(|e| e.add(listener.as_fd(), 0).map(|()| e)) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "metrics: epoll failed; no metrics");
            return;
        }
    };
    let mut events = Events::with_capacity(1);
    while !ctl.stop.load(Ordering::Relaxed) {
        if let Err(e) = epoll.wait(&mut events, TICK) {
            tracing::error!(error = %e, "metrics: epoll_wait failed; no metrics");
            return;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = answer(&ctl, stream) {
                        tracing::debug!(error = %e, "metrics: a scrape failed");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    break;
                }
            }
        }
    }
}

fn answer(ctl: &Control, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => {
            let body = render(ctl);
            let body = if method == "HEAD" { "" } else { &body };
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        ("GET" | "HEAD", _) => {
            respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n")
        }
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, ty: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Label values are port names (validated `[a-z0-9_-]`-like) and reason names; escape anyway.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one counter out of a port's stats.
type Getter = fn(&PortStats) -> u64;

/// The exposition text.
pub(super) fn render(ctl: &Control) -> String {
    let mut out = String::new();
    let stats = ctl.stats(None).unwrap_or_default();
    let counters: [(&str, &str, Getter); 5] = [
        ("rx_frames", "Frames received from the port", |s| {
            s.rx_frames
        }),
        ("rx_bytes", "Bytes received from the port", |s| s.rx_bytes),
        ("tx_frames", "Frames sent out of the port", |s| s.tx_frames),
        ("tx_bytes", "Bytes sent out of the port", |s| s.tx_bytes),
        (
            "fdb_full",
            "Source MACs not learned: MAC table cap reached",
            |s| s.fdb_full,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP switchyard_port_{name}_total {help}.");
        let _ = writeln!(out, "# TYPE switchyard_port_{name}_total counter");
        for s in &stats {
            let _ = writeln!(
                out,
                "switchyard_port_{name}_total{{port=\"{}\"}} {}",
                label(&s.port),
                get(s)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_port_drops_total Frames dropped, by reason."
    );
    let _ = writeln!(out, "# TYPE switchyard_port_drops_total counter");
    for s in &stats {
        for (reason, n) in &s.drops {
            let _ = writeln!(
                out,
                "switchyard_port_drops_total{{port=\"{}\",reason=\"{}\"}} {n}",
                label(&s.port),
                label(reason)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_port_monitored_total Frames a monitor-mode guard would have dropped."
    );
    let _ = writeln!(out, "# TYPE switchyard_port_monitored_total counter");
    for s in &stats {
        for (reason, n) in &s.monitored {
            let _ = writeln!(
                out,
                "switchyard_port_monitored_total{{port=\"{}\",reason=\"{}\"}} {n}",
                label(&s.port),
                label(reason)
            );
        }
    }
    let _ = writeln!(out, "# HELP switchyard_port_up Whether the port is up.");
    let _ = writeln!(out, "# TYPE switchyard_port_up gauge");
    for s in &stats {
        let up = ctl
            .switch
            .port_by_name(&s.port)
            .is_some_and(|id| ctl.switch.is_port_up(id));
        let _ = writeln!(
            out,
            "switchyard_port_up{{port=\"{}\"}} {}",
            label(&s.port),
            u8::from(up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_port_fdb_entries Learned MAC table entries."
    );
    let _ = writeln!(out, "# TYPE switchyard_port_fdb_entries gauge");
    for s in &stats {
        let _ = writeln!(
            out,
            "switchyard_port_fdb_entries{{port=\"{}\"}} {}",
            label(&s.port),
            s.fdb_entries
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_fdb_entries Learned MAC table entries."
    );
    let _ = writeln!(out, "# TYPE switchyard_fdb_entries gauge");
    let _ = writeln!(
        out,
        "switchyard_fdb_entries {}",
        ctl.switch.fdb_learned_len()
    );
    let _ = writeln!(
        out,
        "# HELP switchyard_worker_rx_frames_total Frames a data-plane worker read from the port."
    );
    let _ = writeln!(out, "# TYPE switchyard_worker_rx_frames_total counter");
    for w in 0..ctl.ports.workers() {
        for id in ctl.switch.present_ports() {
            let _ = writeln!(
                out,
                "switchyard_worker_rx_frames_total{{worker=\"{w}\",port=\"{}\"}} {}",
                label(&ctl.switch.port_spec(id).name),
                ctl.ports.worker_rx(w, id)
            );
        }
    }
    if let Ok(Some(d)) = ctl.dhcp_stats() {
        render_dhcp(&mut out, &d);
    }
    if let Ok(Some(c)) = ctl.dns_stats() {
        render_dns(&mut out, &c);
    }
    if let Ok(leases) = ctl.leases() {
        let v4 = leases.iter().filter(|l| l.kind == "ipv4").count();
        let _ = writeln!(out, "# HELP switchyard_dhcp_leases Live DHCP leases.");
        let _ = writeln!(out, "# TYPE switchyard_dhcp_leases gauge");
        let _ = writeln!(out, "switchyard_dhcp_leases {v4}");
    }
    if let Ok(Some(s)) = ctl.services().map(|s| s.dhcp6) {
        render_dhcp6(&mut out, &s);
    }
    out
}

/// The DHCPv6 server's counts (`switchyard stats --services`' `dhcp6` rows).
fn render_dhcp6(out: &mut String, rows: &[(String, u64)]) {
    let get = |k: &str| rows.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    let _ = writeln!(out, "# HELP switchyard_dhcp6_leases Live DHCPv6 bindings.");
    let _ = writeln!(out, "# TYPE switchyard_dhcp6_leases gauge");
    let _ = writeln!(out, "switchyard_dhcp6_leases {}", get("leases"));
    let _ = writeln!(
        out,
        "# HELP switchyard_dhcp6_messages_total DHCPv6 client messages, by outcome."
    );
    let _ = writeln!(out, "# TYPE switchyard_dhcp6_messages_total counter");
    for k in ["replies", "advertises", "dropped"] {
        let _ = writeln!(
            out,
            "switchyard_dhcp6_messages_total{{outcome=\"{k}\"}} {}",
            get(k)
        );
    }
}

/// The DHCP server's message counts.
fn render_dhcp(out: &mut String, d: &DhcpStats) {
    let _ = writeln!(
        out,
        "# HELP switchyard_dhcp_received_total DHCP client messages the server handled."
    );
    let _ = writeln!(out, "# TYPE switchyard_dhcp_received_total counter");
    let _ = writeln!(out, "switchyard_dhcp_received_total {}", d.received);
    let _ = writeln!(
        out,
        "# HELP switchyard_dhcp_replies_total DHCP replies, by message type."
    );
    let _ = writeln!(out, "# TYPE switchyard_dhcp_replies_total counter");
    for (ty, n) in [
        ("offer", d.offers),
        ("ack", d.acks),
        ("nak", d.naks),
        ("other", d.other_replies),
    ] {
        let _ = writeln!(out, "switchyard_dhcp_replies_total{{type=\"{ty}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_dhcp_drops_total DHCP messages not answered, by reason."
    );
    let _ = writeln!(out, "# TYPE switchyard_dhcp_drops_total counter");
    for (reason, n) in DhcpDropReason::ALL.iter().zip(d.drops) {
        let _ = writeln!(
            out,
            "switchyard_dhcp_drops_total{{reason=\"{}\"}} {n}",
            reason.as_str()
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_dhcp_unpersisted_total Replies withheld: the lease journal write failed."
    );
    let _ = writeln!(out, "# TYPE switchyard_dhcp_unpersisted_total counter");
    let _ = writeln!(out, "switchyard_dhcp_unpersisted_total {}", d.unpersisted);
    let _ = writeln!(
        out,
        "# HELP switchyard_dhcp_journal_up 1 if the lease journal is open; 0: DHCP acknowledges \
         no lease (see the log)."
    );
    let _ = writeln!(out, "# TYPE switchyard_dhcp_journal_up gauge");
    let _ = writeln!(
        out,
        "switchyard_dhcp_journal_up {}",
        u8::from(d.journal_error.is_none())
    );
}

/// The DNS server's counts, one counter each, named as in `switchyard stats` (so a counter the
/// server adds is exported too): `switchyard_dns_queries_total` and so on.
fn render_dns(out: &mut String, c: &DnsCounters) {
    for (name, n) in dns_named(c) {
        let metric = format!("switchyard_dns_{name}_total");
        let _ = writeln!(
            out,
            "# HELP {metric} DNS server: {}.",
            name.replace('_', " ")
        );
        let _ = writeln!(out, "# TYPE {metric} counter");
        let _ = writeln!(out, "{metric} {n}");
    }
}
