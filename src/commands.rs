//! The network-side client commands of `switchyard`: `leases` (the daemon's table, or the
//! journal with --offline), `capabilities`, `import-libvirt`, and the log line that says where
//! a network's DNS upstreams came from.

use std::path::{Path, PathBuf};

use anyhow::Context;
use switchyard::control::protocol::{Body, Command as ProtoCommand, LeaseRow};
use switchyard::control::{cli, config};
use switchyard::service::dhcp::journal;
use switchyard::service::dhcp::Lease;

/// `switchyard leases [--offline] [--json]`.
pub(crate) fn leases(target: &cli::Target, offline: bool, json: bool) -> anyhow::Result<()> {
    if !offline {
        let found = cli::find(target)?;
        match cli::run(&found.socket, ProtoCommand::Leases, json) {
            Ok(out) => print!("{out}"),
            Err(e) if e.is_not_running() => anyhow::bail!(
                "{e}\nThe lease table is the running daemon's; `switchyard leases \
                 --offline` with --config FILE or --network NAME reads the lease journal \
                 it left, as it was when it stopped"
            ),
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    let path = match cli::find(target) {
        Ok(cli::Found {
            config: Some(path), ..
        }) => path,
        Ok(_) | Err(cli::ClientError::NoNetwork { .. } | cli::ClientError::Several { .. }) => {
            anyhow::bail!(
                "--offline reads the lease journal that the network's config names: \
                 pass --config FILE or --network NAME"
            )
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", offline_leases(&config::load(&path)?, json)?);
    Ok(())
}

/// `switchyard capabilities [--unit] FILE`.
pub(crate) fn capabilities(file: &Path, unit: bool) -> anyhow::Result<()> {
    let caps = switchyard::daemon::capabilities_at_start(&config::load(file)?);
    if unit {
        let upper: Vec<String> = caps.iter().map(|c| c.to_uppercase()).collect();
        println!(
            "# {}: the capabilities switchyard needs for this network\n[Service]\n\
             CapabilityBoundingSet=\nCapabilityBoundingSet={}",
            file.display(),
            upper.join(" ")
        );
    } else {
        println!("{}", caps.join(" "));
    }
    Ok(())
}

/// `switchyard import-libvirt FILE`.
pub(crate) fn import_libvirt(file: &Path) -> anyhow::Result<()> {
    let xml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = switchyard::control::libvirt_import::convert(&xml, &file.display().to_string())
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    print!("{text}");
    Ok(())
}

/// Says where a network without `upstreams` sends outside names.
pub(crate) fn log_host_upstreams(file: Option<PathBuf>, cfg: &config::Config) {
    let network = cfg.network.name.as_str();
    if !cfg.dns.enabled || !cfg.dns.upstreams_from_host {
        return;
    }
    match file {
        Some(f) => tracing::info!(network, file = %f.display(),
            upstreams = ?cfg.dns.upstreams, "dns: the host's resolvers are the upstreams"),
        None => tracing::warn!(
            network,
            "dns: no [dns] upstreams and no usable nameserver in the host's resolv.conf: \
             outside names get REFUSED"
        ),
    }
}

/// The live leases from the journal, read-only, as a table or JSON.
fn offline_leases(cfg: &config::Config, json: bool) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut rows: Vec<LeaseRow> = Vec::new();
    // `[network]`'s journal, then each segment's.
    for path in cfg.journal_paths() {
        let (table, stats) = journal::read(&path)
            .with_context(|| format!("cannot read the lease journal {}", path.display()))?;
        if stats.corrupt > 0 {
            eprintln!(
                "switchyard: warning: skipped {} corrupt record(s) in {}",
                stats.corrupt,
                path.display()
            );
        }
        let mut live: Vec<&Lease> = table.iter().filter(|l| !l.has_expired(now)).collect();
        live.sort_by_key(|l| l.ip);
        rows.extend(
            live.iter()
                .map(|l| LeaseRow::from_lease(l, cfg.prefix_of(l.ip), None)),
        );
    }
    if let Some(v6) = &cfg.ipv6 {
        // The DHCPv6 bindings from leases6.journal (missing: none), with the client's name.
        let path = cfg.dhcp.state_dir.join("leases6.journal");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("cannot read the DHCPv6 journal {}: {e}", path.display()),
        };
        let (mut leases, _) = switchyard::service::dhcp6::journal::replay(&bytes);
        leases.retain(|l| !l.has_expired(now));
        leases.sort_by_key(|l| l.ip);
        let prefix6 = v6.subnet.prefix_len();
        rows.extend(
            leases
                .iter()
                .map(|l| LeaseRow::from_lease6(l, prefix6, l.hostname.clone(), None)),
        );
    }
    Ok(cli::render(&Body::Leases(rows), json))
}
