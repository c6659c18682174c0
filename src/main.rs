//! The `switchyard` command: parse arguments, load the config, hand over to the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard::control::config;
use switchyard::service::dhcp::journal;
use switchyard::service::dhcp::leases::hex_colon;
use switchyard::service::dhcp::Lease;

/// A userspace virtual switch with a DHCP/DNS appliance built in.
#[derive(Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch in the foreground until SIGINT or SIGTERM.
    ///
    /// Without --config it runs the embedded default lab network (config/default.toml): three
    /// namespace hosts sy-lab-vm1..3 at 10.13.31.11-13 on one switch. Needs root (or
    /// CAP_NET_ADMIN + CAP_SYS_ADMIN) for taps and namespaces.
    Run {
        /// The network's config file (TOML). Default: the embedded default lab network.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and exit: 0 if valid, non-zero with the error otherwise.
    Check {
        /// The config file to validate.
        file: PathBuf,
    },
    /// Print the embedded default config (a starting point for your own).
    DefaultConfig,
    /// List the network's live DHCP leases (like `virsh net-dhcp-leases`).
    ///
    /// Reads the lease journal in `[dhcp] state_dir` without modifying it, so it works whether
    /// or not the daemon is running. No journal yet: an empty list.
    Leases {
        /// The network's config file (TOML). Default: the embedded default lab network.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let cfg = match &config {
                Some(path) => config::load(path)?,
                None => config::load_default()?,
            };
            switchyard::daemon::run(&cfg).context("the switch stopped with an error")?;
        }
        Command::Check { file } => {
            let cfg = config::load(&file)?;
            println!(
                "{}: ok: network '{}' {} with {} hosts and {} ports",
                file.display(),
                cfg.network.name,
                cfg.network.subnet,
                cfg.hosts.len(),
                cfg.ports.len()
            );
        }
        Command::DefaultConfig => print!("{}", config::DEFAULT_CONFIG),
        Command::Leases { config, json } => {
            let cfg = match &config {
                Some(path) => config::load(path)?,
                None => config::load_default()?,
            };
            let path = cfg.dhcp.journal_path();
            let (table, stats) = journal::read(&path)
                .with_context(|| format!("cannot read the lease journal {}", path.display()))?;
            if stats.corrupt > 0 {
                eprintln!(
                    "switchyard: warning: skipped {} corrupt record(s) in {}",
                    stats.corrupt,
                    path.display()
                );
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut live: Vec<&Lease> = table.iter().filter(|l| !l.has_expired(now)).collect();
            live.sort_by_key(|l| l.ip);
            let prefix = cfg.network.subnet.prefix_len();
            if json {
                println!("{}", leases_json(&live, prefix));
            } else {
                print!("{}", leases_table(&live, prefix));
            }
        }
    }
    Ok(())
}

/// `virsh net-dhcp-leases`'s columns, one row per lease.
fn leases_table(leases: &[&Lease], prefix: u8) -> String {
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
                l.expires.map_or_else(|| "never".to_string(), utc),
                l.mac.to_string(),
                "ipv4".to_string(),
                format!("{}/{prefix}", l.ip),
                l.hostname.clone().unwrap_or_else(|| "-".into()),
                l.client_id.as_deref().map_or_else(|| "-".into(), hex_colon),
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

/// A JSON array of `{expiry_time, mac, type, ipaddr, prefix, hostname, clientid}`, the field
/// names of libvirt's lease API; `expiry_time` is epoch seconds, `null` for an infinite lease.
fn leases_json(leases: &[&Lease], prefix: u8) -> String {
    let arr: Vec<serde_json::Value> = leases
        .iter()
        .map(|l| {
            serde_json::json!({
                "expiry_time": l.expires,
                "mac": l.mac.to_string(),
                "type": "ipv4",
                "ipaddr": l.ip.to_string(),
                "prefix": prefix,
                "hostname": l.hostname,
                "clientid": l.client_id.as_deref().map(hex_colon),
            })
        })
        .collect();
    serde_json::Value::Array(arr).to_string()
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` UTC (proleptic Gregorian, days-from-civil inverse).
fn utc(epoch: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59");
    }
}
