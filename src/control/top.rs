//! `switchyard top`: a live view of a running daemon over its control socket.
//!
//! Theory of operation. Once a second the view asks the daemon for three things on one
//! connection (`ports`, `stats`, `services`: the same reads as `switchyard ports` and `stats`,
//! never the data plane), keeps the previous answer, and draws the differences as rates: each
//! port's frames and bits a second both ways and drops a second, the drops of the last second by
//! port and reason as they happen, the MAC table's size, the live leases, and the DHCP and DNS
//! servers' counters a second. Drawing is a pure function of two samples ([`render`]), so the
//! one-shot table (stdout not a terminal, or `--once`: two samples a second apart, printed once)
//! and the live screen are the same text, and both are tested without a terminal.
//!
//! The terminal (crossterm): raw mode and the alternate screen while the view runs, restored by
//! a guard's `Drop` on every way out (`q`, Esc, Ctrl-C, an error). A daemon that stops ends the
//! view with the client's error.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};

use super::cli::{utc, Client, ClientError};
use super::protocol::{Body, Command, PortInfo, PortStats, ServiceStats};

/// How often the view asks and redraws.
pub const PERIOD: Duration = Duration::from_secs(1);
/// At most this many lines of drops (each list), so a drop storm cannot push the ports away.
const MAX_DROP_LINES: usize = 8;

/// What the daemon said at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the view started (the client's clock: rates are per second of it).
    pub at: f64,
    pub ports: Vec<PortInfo>,
    pub stats: Vec<PortStats>,
    pub services: ServiceStats,
}

/// Asks the daemon for a sample on `client`'s connection.
pub fn sample(client: &mut Client, at: f64) -> Result<Sample, ClientError> {
    let ports = match client.call(Command::Ports)? {
        Body::Ports(v) => v,
        other => return Err(unexpected(&other)),
    };
    let stats = match client.call(Command::Stats { port: None })? {
        Body::Stats(v) => v,
        other => return Err(unexpected(&other)),
    };
    let services = match client.call(Command::Services)? {
        Body::Services(s) => s,
        other => return Err(unexpected(&other)),
    };
    Ok(Sample {
        at,
        ports,
        stats,
        services,
    })
}

fn unexpected(body: &Body) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {body:?}"))
}

/// A value a second in three significant figures with an SI suffix: `950`, `9.60k`, `13.8G`.
pub fn si(v: f64) -> String {
    let (v, suffix) = match v {
        v if v >= 1e9 => (v / 1e9, "G"),
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    match (suffix, v) {
        ("", v) if v.fract() == 0.0 || v >= 9.95 => format!("{v:.0}"),
        ("", v) => format!("{v:.1}"),
        (s, v) if v >= 100.0 => format!("{v:.0}{s}"),
        (s, v) if v >= 10.0 => format!("{v:.1}{s}"),
        (s, v) => format!("{v:.2}{s}"),
    }
}

/// Per second between two readings of a counter; a counter that went back (a port removed and
/// added again) counts from zero.
fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    let delta = if now >= before { now - before } else { now };
    delta as f64 / secs
}

/// The view's text, one string a line: `target` names the daemon, `clock` the wall time. Rates
/// need `prev`; without one they are `-`.
pub fn render(target: &str, clock: &str, prev: Option<&Sample>, cur: &Sample) -> Vec<String> {
    let secs = prev.map(|p| (cur.at - p.at).max(0.001));
    let mut out = vec![format!("switchyard top  {target}  {clock} UTC")];
    out.push(String::new());
    out.extend(ports_table(prev, cur, secs));
    out.push(String::new());
    let learned: u64 = cur.stats.iter().map(|s| s.fdb_entries).sum();
    let leases = cur
        .services
        .dhcp
        .as_ref()
        .and_then(|d| {
            d.iter()
                .find(|(k, _)| k == "leases")
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| "-".into());
    out.push(format!("FDB {learned} learned MACs   leases {leases}"));
    let before = prev.map(|p| &p.services);
    out.push(service_line(
        "DHCP",
        cur.services.dhcp.as_deref(),
        before.and_then(|b| b.dhcp.as_deref()),
        secs,
    ));
    out.push(service_line(
        "DNS",
        cur.services.dns.as_deref(),
        before.and_then(|b| b.dns.as_deref()),
        secs,
    ));
    out.push(String::new());
    out.extend(drops(prev, cur, secs));
    out
}

fn ports_table(prev: Option<&Sample>, cur: &Sample, secs: Option<f64>) -> Vec<String> {
    let header = [
        "PORT", "STATE", "RX f/s", "RX bit/s", "TX f/s", "TX bit/s", "DROP/s", "DROPS",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in &cur.ports {
        let old = prev.and_then(|s| s.ports.iter().find(|o| o.name == p.name));
        let rate = |get: fn(&PortInfo) -> u64, scale: f64| match (old, secs) {
            (Some(o), Some(t)) => si(per_sec(get(p), get(o), t) * scale),
            _ => "-".into(),
        };
        rows.push(vec![
            p.name.clone(),
            p.state.clone(),
            rate(|p| p.rx_frames, 1.0),
            rate(|p| p.rx_bytes, 8.0),
            rate(|p| p.tx_frames, 1.0),
            rate(|p| p.tx_bytes, 8.0),
            rate(|p| p.drops, 1.0),
            p.drops.to_string(),
        ]);
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            // Names left, numbers right.
            if i < 2 {
                s.push_str(&format!("{c:<w$}  "));
            } else {
                s.push_str(&format!("{c:>w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out
}

/// `DHCP  received 2.0/s  acks 1.0/s`: every counter that moved, a second; `idle` if none did.
fn service_line(
    name: &str,
    cur: Option<&[(String, u64)]>,
    prev: Option<&[(String, u64)]>,
    secs: Option<f64>,
) -> String {
    let Some(cur) = cur else {
        return format!("{name:<5} off");
    };
    let (Some(prev), Some(t)) = (prev, secs) else {
        return format!("{name:<5} -");
    };
    let moved: Vec<String> = cur
        .iter()
        .filter(|(k, _)| k != "leases") // a gauge, shown above
        .filter_map(|(k, v)| {
            let before = prev.iter().find(|(pk, _)| pk == k).map_or(0, |(_, b)| *b);
            let r = per_sec(*v, before, t);
            (r > 0.0).then(|| format!("{k} {}/s", si(r)))
        })
        .collect();
    if moved.is_empty() {
        format!("{name:<5} idle")
    } else {
        format!("{name:<5} {}", moved.join("  "))
    }
}

/// The drops of the last second by port and reason, then the totals since start.
fn drops(prev: Option<&Sample>, cur: &Sample, secs: Option<f64>) -> Vec<String> {
    let mut now: Vec<(u64, String)> = Vec::new();
    let mut total: Vec<(u64, String)> = Vec::new();
    for s in &cur.stats {
        let old = prev.and_then(|p| p.stats.iter().find(|o| o.port == s.port));
        for (reason, n) in &s.drops {
            if *n > 0 {
                total.push((*n, format!("{} {reason}", s.port)));
            }
            let before = old
                .and_then(|o| o.drops.iter().find(|(r, _)| r == reason))
                .map_or(0, |(_, b)| *b);
            if old.is_some() && *n > before {
                now.push((*n - before, format!("{} {reason}", s.port)));
            }
        }
    }
    let mut out = Vec::new();
    match secs {
        Some(t) => drop_list(
            &mut out,
            format!("DROPS in the last {t:.1} s (port reason)"),
            now,
        ),
        None => out.push("DROPS in the last second: -".into()),
    }
    drop_list(&mut out, "DROPS since start (port reason)".into(), total);
    out
}

/// `title`, then the largest `items` first, at most [`MAX_DROP_LINES`] of them.
fn drop_list(out: &mut Vec<String>, title: String, mut items: Vec<(u64, String)>) {
    out.push(title);
    items.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if items.is_empty() {
        out.push("  none".into());
    }
    let more = items.len().saturating_sub(MAX_DROP_LINES);
    for (n, what) in items.into_iter().take(MAX_DROP_LINES) {
        out.push(format!("  {what}  {n}"));
    }
    if more > 0 {
        out.push(format!("  ... {more} more (switchyard stats)"));
    }
}

/// The wall clock as `HH:MM:SS`.
fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs).split(' ').nth(1).unwrap_or_default().to_string()
}

/// `switchyard top`: live on a terminal, else (or with `once`) one table of two samples a
/// second apart.
pub fn run(socket: &Path, once: bool) -> Result<(), ClientError> {
    let mut client = Client::connect(socket)?;
    let start = Instant::now();
    let target = socket.display().to_string();
    let first = sample(&mut client, 0.0)?;
    if once || !io::stdout().is_terminal() {
        std::thread::sleep(PERIOD);
        let second = sample(&mut client, start.elapsed().as_secs_f64())?;
        let mut out = io::stdout().lock();
        for line in render(&target, &clock(), Some(&first), &second) {
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let _screen = Screen::enter()?;
    let mut prev: Option<Sample> = None;
    let mut cur = first;
    loop {
        let mut lines = render(&target, &clock(), prev.as_ref(), &cur);
        lines.push(String::new());
        lines.push("q quits".into());
        draw(&lines)?;
        let next = start + Duration::from_secs_f64(cur.at) + PERIOD;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if event::poll(left)? {
                match event::read()? {
                    Event::Key(key) if quits(&key) => return Ok(()),
                    Event::Resize(..) => draw(&lines)?,
                    _ => {}
                }
            }
        }
        let at = start.elapsed().as_secs_f64();
        prev = Some(std::mem::replace(&mut cur, sample(&mut client, at)?));
    }
}

fn quits(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Redraws the whole screen, each line cut to the terminal's width.
fn draw(lines: &[String]) -> io::Result<()> {
    let (cols, rows) = terminal::size().unwrap_or((80, 24));
    let mut out = io::stdout().lock();
    queue!(
        out,
        cursor::MoveTo(0, 0),
        terminal::Clear(terminal::ClearType::All)
    )?;
    for line in lines.iter().take(usize::from(rows)) {
        let cut: String = line.chars().take(usize::from(cols)).collect();
        write!(out, "{cut}\r\n")?;
    }
    out.flush()
}

/// Raw mode and the alternate screen, for as long as it lives.
struct Screen;

impl Screen {
    fn enter() -> io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let screen = Screen; // from here on, Drop restores the terminal
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, rx: u64, rx_bytes: u64, drops: u64) -> PortInfo {
        PortInfo {
            name: name.into(),
            kind: "tap".into(),
            ifname: "t".into(),
            state: "up".into(),
            mac: None,
            addresses: vec![],
            guard: "enforce".into(),
            rx_frames: rx,
            rx_bytes,
            tx_frames: rx,
            tx_bytes: rx_bytes,
            drops,
        }
    }

    fn stats(name: &str, spoofed: u64) -> PortStats {
        PortStats {
            port: name.into(),
            rx_frames: 0,
            rx_bytes: 0,
            tx_frames: 0,
            tx_bytes: 0,
            fdb_full: 0,
            drops: vec![("runt".into(), 0), ("spoofed_ip".into(), spoofed)],
            monitored: vec![],
            fdb_entries: 1,
            capture_dropped: 0,
            problems: Vec::new(),
        }
    }

    fn at(at: f64, rx: u64, spoofed: u64, queries: u64) -> Sample {
        Sample {
            at,
            ports: vec![port("vm1", rx, rx * 100, spoofed)],
            stats: vec![stats("vm1", spoofed)],
            services: ServiceStats {
                dhcp: Some(vec![("leases".into(), 2), ("acks".into(), 0)]),
                dns: Some(vec![("queries".into(), queries), ("local".into(), queries)]),
                dhcp6: None,
            },
        }
    }

    #[test]
    fn rates_come_from_two_samples() {
        let (a, b) = (at(0.0, 10, 1, 5), at(2.0, 30, 4, 9));
        let text = render("sock", "12:00:00", Some(&a), &b).join("\n");
        // 20 frames in 2 s, 2000 bytes = 16000 bits in 2 s.
        let vm1 = text.lines().find(|l| l.starts_with("vm1")).unwrap();
        let cells: Vec<&str> = vm1.split_whitespace().collect();
        assert_eq!(
            cells,
            ["vm1", "up", "10", "8.00k", "10", "8.00k", "1.5", "4"]
        );
        assert!(text.contains("FDB 1 learned MACs   leases 2"), "{text}");
        assert!(text.contains("DHCP  idle"), "{text}");
        assert!(text.contains("DNS   queries 2/s  local 2/s"), "{text}");
        assert!(text.contains("DROPS in the last 2.0 s (port reason)\n  vm1 spoofed_ip  3"));
        assert!(text.contains("DROPS since start (port reason)\n  vm1 spoofed_ip  4"));
    }

    #[test]
    fn a_first_sample_has_no_rates() {
        let text = render("sock", "12:00:00", None, &at(0.0, 10, 0, 0)).join("\n");
        let vm1 = text.lines().find(|l| l.starts_with("vm1")).unwrap();
        assert_eq!(vm1.split_whitespace().filter(|c| *c == "-").count(), 5);
        assert!(text.contains("DNS   -"));
        assert!(text.contains("DROPS since start (port reason)\n  none"));
    }

    #[test]
    fn si_figures() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(1.5), "1.5");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(9_600.0), "9.60k");
        assert_eq!(si(13_820_000_000.0), "13.8G");
        assert_eq!(si(215_000.0), "215k");
    }
}
