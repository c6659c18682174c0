//! The `switchyard` command: parse arguments, load the config, hand over to the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard::control::config;

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
    }
    Ok(())
}
