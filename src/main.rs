//! The `switchyard` command: parse arguments, then either run the daemon (load the config, hand
//! over) or be a client of a running one (`control::cli`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod commands;
mod hook;
mod state_cmd;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchyard::control::protocol::{Command as ProtoCommand, HostAdd, NewPort};
use switchyard::control::{cli, config, locate, resolv};

/// A userspace virtual switch with a DHCP/DNS appliance built in.
#[derive(Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
struct Cli {
    /// How log lines look on stderr: "human" (the default) or "json" (one object a line).
    /// Also read from $SWITCHYARD_LOG_FORMAT.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
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
    /// Print the capabilities `switchyard run` needs for a config (derived from its ports,
    /// namespaces, listen addresses and control group).
    ///
    /// With --unit, as a drop-in for `systemctl edit switchyard@NAME` that narrows the unit's
    /// bounding set to exactly these.
    Capabilities {
        /// The config file.
        file: PathBuf,
        /// Print a systemd drop-in ([Service] CapabilityBoundingSet=...).
        #[arg(long)]
        unit: bool,
    },
    /// Print the embedded default config (a starting point for your own).
    DefaultConfig,
    /// Show the live changes: what `port add|del`, `host add|del`, `allow` and `disallow`
    /// changed that the config file does not say (kept in `[dhcp] state_dir`/live.json, brought
    /// back at restart and merged at reload), as the commands that made them.
    ///
    /// With --save, writes them into the config file (comments and layout kept), checks the
    /// result, and empties the live state: the file then says it all.
    State {
        #[command(flatten)]
        target: Target,
        /// Write the live changes into the network's config file.
        #[arg(long)]
        save: bool,
        /// Print a JSON array of the changes (control protocol requests) instead.
        #[arg(long)]
        json: bool,
    },
    /// libvirt's qemu hook (`contrib/libvirt-qemu-hook`, installed as /etc/libvirt/hooks/qemu,
    /// runs this with libvirt's arguments and the domain XML on stdin).
    ///
    /// On `prepare`, each `<interface type='ethernet'>` whose target dev starts with the tap
    /// prefix gets a persistent tap and a packet port, guarded by the [[host]] with its MAC;
    /// on `release` both go. Any failure on `prepare` exits non-zero, so libvirt does not start
    /// the guest without its network.
    LibvirtHook {
        guest: String,
        operation: String,
        sub_operation: Option<String>,
        extra: Option<String>,
        /// Only interfaces whose tap name starts with this are switchyard's.
        #[arg(long, default_value = "sy-")]
        tap_prefix: String,
        #[command(flatten)]
        target: Target,
    },
    /// Turn a libvirt network (`virsh net-dumpxml NAME > FILE`) into a switchyard config,
    /// printed on stdout; what cannot be mapped is an error that names it.
    ImportLibvirt {
        /// The network XML.
        file: PathBuf,
    },
    /// Show the running networks: name, state, control socket, ports, leases, uptime, config.
    ///
    /// Every daemon registers itself in /run/switchyard/networks ($SWITCHYARD_RUN_DIR); one
    /// that was killed without cleaning up shows as "not running".
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the network's live DHCP leases (like `virsh net-dhcp-leases`).
    ///
    /// Asks the running daemon; if it does not answer, that is an error (the table would be
    /// stale). With --offline, reads the lease journal in the config's `[dhcp] state_dir`
    /// instead, read-only: the leases as the daemon last wrote them.
    Leases {
        #[command(flatten)]
        target: Target,
        /// Read the journal (of --config FILE, or --network NAME's config), never the daemon.
        #[arg(long)]
        offline: bool,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the ports: kind, state, MAC, allowed addresses, counters.
    Ports {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the MAC table: MAC, port, static or learned, age.
    Fdb {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the counters of one port (or of all, then the DHCP and DNS servers'), non-zero ones.
    ///
    /// Frames, bytes and drops by reason a port; the DHCP server's leases, messages, replies and
    /// refusals by reason; the DNS server's queries, answers and errors. All read live.
    Stats {
        /// The port; all ports, and the DHCP and DNS servers, without it.
        port: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Show every counter, zeros included.
        #[arg(long)]
        all: bool,
        /// Only the DHCP and DNS servers' counters.
        #[arg(long, conflicts_with = "port")]
        services: bool,
        /// Print JSON instead of a table (every counter: the ports, or with --services the
        /// servers).
        #[arg(long)]
        json: bool,
    },
    /// A live view of the running daemon: port rates, drops as they happen, DHCP and DNS.
    ///
    /// Redraws once a second: each port's frames and bits a second in and out and drops a
    /// second, the drops of the last second by port and reason, the MAC table's size, the
    /// leases, and the DHCP and DNS servers' counters a second. `q` quits. When stdout is not a
    /// terminal (or with --once) it prints one table of two readings a second apart.
    Top {
        #[command(flatten)]
        target: Target,
        /// Print one table and exit, even on a terminal.
        #[arg(long)]
        once: bool,
    },
    /// The last frames a port dropped: when, why, and the frame's MACs and addresses.
    ///
    /// The daemon remembers the last 16 drops of each port (a ring the data plane fills only
    /// when it drops a frame); `switchyard stats PORT` has the counts.
    Why {
        port: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Allow an extra source address or prefix on a guarded port, live.
    Allow {
        port: String,
        /// An address (10.13.31.50) or a prefix (10.13.31.64/28), IPv4 or IPv6.
        net: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Set a port's bandwidth limits, live (until the next reload or restart, which apply the
    /// file's `ingress` and `egress`).
    Limit {
        port: String,
        /// What the switch takes from the port: AVERAGE[,PEAK[,BURST]] in KiB/s, KiB/s, KiB
        /// (libvirt's units), or `none`.
        #[arg(long)]
        ingress: Option<String>,
        /// What the switch sends to the port, as --ingress.
        #[arg(long)]
        egress: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw an extra source address or prefix from a guarded port, live.
    Disallow {
        port: String,
        net: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Add or remove a host (a DHCP reservation and its guard), live.
    Host {
        #[command(subcommand)]
        action: HostAction,
    },
    /// Mirror one port's frames (both directions): to a pcap file, or one line per frame.
    Capture {
        port: String,
        /// Write a pcap file (readable by tcpdump -r and Wireshark) instead of printing; "-" is
        /// stdout (`switchyard capture vm1 -w - | wireshark -k -i -`).
        #[arg(short = 'w', long = "write")]
        write: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Plug a port into the running switch, or unplug one (a VM started or stopped).
    Port {
        #[command(subcommand)]
        action: PortAction,
    },
    /// Re-read the config file and apply host, guard and port changes (as SIGHUP does).
    ///
    /// The changes made through the control socket (`switchyard state`) are merged over the
    /// file: a port plugged or a host added live stays. With --prune they are forgotten, and
    /// the file alone is applied (live ports it lacks are unplugged).
    Reload {
        #[command(flatten)]
        target: Target,
        /// Apply the file alone: forget the live changes.
        #[arg(long)]
        prune: bool,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages or a shell's completions (for packagers: see docs/install.md).
    #[command(hide = true)]
    Gen {
        #[command(subcommand)]
        what: GenWhat,
    },
}

#[derive(Subcommand)]
enum GenWhat {
    /// switchyard(8), switchyard-SUBCOMMAND(8) and switchyard.toml(5) under DIR/man8 and
    /// DIR/man5 (e.g. /usr/local/share/man).
    Man { dir: PathBuf },
    /// The completion script of SHELL, on stdout.
    Completions { shell: clap_complete::Shell },
}

/// Which daemon a client command talks to. With none of these: the one network that runs
/// (`switchyard list`); when none or several run, the command says so.
#[derive(Args)]
struct Target {
    /// The daemon's control socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The network's config file (for its `[switch] control_socket`).
    #[arg(short, long, conflicts_with = "network")]
    config: Option<PathBuf>,
    /// The network's name: a running daemon's, or /etc/switchyard/NAME.toml's
    /// ($SWITCHYARD_CONFIG_DIR for another directory).
    #[arg(short, long)]
    network: Option<String>,
}

impl Target {
    fn cli(&self) -> cli::Target {
        cli::Target {
            socket: self.socket.clone(),
            config: self.config.clone(),
            network: self.network.clone(),
        }
    }

    fn find(&self) -> Result<cli::Found, cli::ClientError> {
        cli::find(&self.cli())
    }

    fn socket(&self) -> Result<PathBuf, cli::ClientError> {
        Ok(self.find()?.socket)
    }
}

#[derive(Subcommand)]
enum HostAction {
    /// Reserve an address for a MAC (DHCP) and allow it (guard); with --port, guard that port.
    Add {
        #[command(flatten)]
        host: HostAdd,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Remove a host's reservation (its live lease runs out as usual).
    Del {
        name: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PortAction {
    /// Add a port, checked by the config file's rules for a [[port]] (not written to the file).
    Add {
        #[command(flatten)]
        port: NewPort,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Remove a port: its tap (and a namespace the daemon created for it) or socket file goes.
    Del {
        name: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format =
        cli.log_format
            .unwrap_or_else(|| match std::env::var("SWITCHYARD_LOG_FORMAT").as_deref() {
                Ok("json") => LogFormat::Json,
                _ => LogFormat::Human,
            });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.event_format(switchyard::daemon::JsonLines).init(),
    }
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
            let mut cfg = cfg;
            let file = resolv::fill_upstreams(&mut cfg);
            commands::log_host_upstreams(file, &cfg);
            // What was changed live before a restart comes back.
            let cfg = switchyard::daemon::restore_live_state(cfg).map_err(anyhow::Error::msg)?;
            switchyard::daemon::run(&cfg).context("the switch stopped with an error")?;
        }
        Command::Check { file } => {
            let cfg = config::load(&file)?;
            let leg = match cfg.host_port() {
                Some((i, _, addr)) => format!(
                    "; host port '{}' at {addr}{}",
                    cfg.ports[i].name,
                    match cfg.network.forward {
                        config::Forward::None => String::new(),
                        mode => format!(", forward = \"{}\" (router for DHCP)", mode.name()),
                    }
                ),
                None => String::new(),
            };
            let segments: Vec<String> = cfg
                .segments
                .iter()
                .map(|s| {
                    format!(
                        "'{}' {} on VLAN {}",
                        s.network.name, s.network.subnet, s.vlan
                    )
                })
                .collect();
            let leg = match segments.is_empty() {
                true => leg,
                false => format!("{leg}; segments {}", segments.join(", ")),
            };
            println!(
                "{}: ok: network '{}' {} with {} hosts and {} ports{leg}",
                file.display(),
                cfg.network.name,
                cfg.network.subnet,
                cfg.hosts.len(),
                cfg.ports.len()
            );
        }
        Command::Capabilities { file, unit } => commands::capabilities(&file, unit)?,
        Command::DefaultConfig => print!("{}", config::DEFAULT_CONFIG),
        Command::Leases {
            target,
            offline,
            json,
        } => commands::leases(&target.cli(), offline, json)?,
        Command::LibvirtHook {
            guest,
            operation,
            tap_prefix,
            target,
            ..
        } => hook::Hook {
            guest,
            operation,
            tap_prefix,
            target: target.cli(),
        }
        .run()?,
        Command::ImportLibvirt { file } => commands::import_libvirt(&file)?,
        Command::List { json } => print!("{}", cli::list(&locate::run_dir(), json)),
        Command::Ports { target, json } => {
            print!(
                "{}",
                cli::run(&target.socket()?, ProtoCommand::Ports, json)?
            );
        }
        Command::Fdb { target, json } => {
            print!("{}", cli::run(&target.socket()?, ProtoCommand::Fdb, json)?);
        }
        Command::Stats {
            port,
            target,
            all,
            services,
            json,
        } => print!(
            "{}",
            cli::stats(&target.socket()?, port, json, all, services)?
        ),
        Command::Why { port, target, json } => {
            let cmd = ProtoCommand::Why { port };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Top { target, once } => {
            switchyard::control::top::run(&target.socket()?, once)?;
        }
        Command::Allow {
            port,
            net,
            target,
            json,
        } => {
            let cmd = ProtoCommand::Allow { port, net };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Limit {
            port,
            ingress,
            egress,
            target,
            json,
        } => {
            let cmd = ProtoCommand::Limit {
                port,
                ingress,
                egress,
            };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Disallow {
            port,
            net,
            target,
            json,
        } => {
            let cmd = ProtoCommand::Disallow { port, net };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Host {
            action: HostAction::Add { host, target, json },
        } => {
            let cmd = ProtoCommand::HostAdd(host);
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Host {
            action: HostAction::Del { name, target, json },
        } => {
            let cmd = ProtoCommand::HostDel { name };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Port {
            action: PortAction::Add { port, target, json },
        } => {
            let cmd = ProtoCommand::PortAdd(port);
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Port {
            action: PortAction::Del { name, target, json },
        } => {
            let cmd = ProtoCommand::PortDel { name };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::Reload {
            target,
            prune,
            json,
        } => {
            let cmd = ProtoCommand::Reload { prune };
            print!("{}", cli::run(&target.socket()?, cmd, json)?);
        }
        Command::State { target, save, json } => state_cmd::state(&target.cli(), save, json)?,
        Command::Capture {
            port,
            write,
            count,
            target,
        } => capture(&target.socket()?, &port, write.as_deref(), count)?,
        Command::Gen {
            what: GenWhat::Man { dir },
        } => {
            for path in gen_man(&dir)? {
                println!("{}", path.display());
            }
        }
        Command::Gen {
            what: GenWhat::Completions { shell },
        } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "switchyard", &mut std::io::stdout());
        }
    }
    Ok(())
}

/// Writes the man pages under `dir` (`man8/`, `man5/`) and returns their paths: one page for
/// the command, one for each (visible) subcommand, from the clap definitions above, and
/// switchyard.toml(5) from the config reference page.
fn gen_man(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn pages(cmd: &clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let man = clap_mangen::Man::new(cmd.clone())
            .section("8")
            .manual("System Manager's Manual");
        out.push(man.generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(sub, dir, out)?;
        }
        Ok(())
    }
    let (man8, man5) = (dir.join("man8"), dir.join("man5"));
    for d in [&man8, &man5] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    pages(&cmd, &man8, &mut out).with_context(|| format!("cannot write in {}", man8.display()))?;
    let toml = man5.join("switchyard.toml.5");
    let page = switchyard::control::manpage::config_page(
        switchyard::control::manpage::CONFIG_MD,
        env!("CARGO_PKG_VERSION"),
    );
    std::fs::write(&toml, page).with_context(|| format!("cannot write {}", toml.display()))?;
    out.push(toml);
    Ok(out)
}

/// `switchyard capture`: a pcap file with -w, else one line per frame on stdout.
fn capture(
    socket: &Path,
    port: &str,
    write: Option<&Path>,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let mut client = cli::Client::connect(socket)?;
    let (frames, dropped) = match write {
        Some(path) if path == Path::new("-") => {
            let mut pcap = cli::PcapWriter::new(std::io::stdout().lock(), cli::SNAPLEN)?;
            client.capture(port, count, |f, data| pcap.write(f.ts_us, f.len, data))?
        }
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut pcap = cli::PcapWriter::new(std::io::BufWriter::new(file), cli::SNAPLEN)?;
            client.capture(port, count, |f, data| pcap.write(f.ts_us, f.len, data))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            client.capture(port, count, |f, data| {
                writeln!(out, "{}", cli::frame_summary(f, data))
            })?
        }
    };
    eprintln!("switchyard: {frames} frames captured, {dropped} dropped by the switch");
    Ok(())
}
