//! `switchyard libvirt-hook`: the actions behind libvirt's qemu hook (see
//! `switchyard::control::libvirt` for the design).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use switchyard::control::libvirt::{ethernet_interfaces, EthernetIface};
use switchyard::control::protocol::{Command as ProtoCommand, ErrorKind, NewPort};
use switchyard::control::{cli, config, live_state};
use switchyard::wire::MacAddr;

/// The hook's own arguments, after libvirt's four.
pub(crate) struct Hook {
    pub(crate) guest: String,
    pub(crate) operation: String,
    pub(crate) tap_prefix: String,
    pub(crate) target: cli::Target,
}

impl Hook {
    /// Acts on the domain XML read from stdin.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let mut xml = String::new();
        std::io::stdin()
            .read_to_string(&mut xml)
            .context("reading the domain XML libvirt writes on stdin")?;
        let ifaces: Vec<EthernetIface> = ethernet_interfaces(&xml)
            .into_iter()
            .filter(|i| i.target.starts_with(&self.tap_prefix))
            .collect();
        if ifaces.is_empty() {
            return Ok(());
        }
        match self.operation.as_str() {
            "prepare" => self.prepare(&ifaces),
            "release" => {
                self.release(&ifaces);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn prepare(&self, ifaces: &[EthernetIface]) -> anyhow::Result<()> {
        let guest = &self.guest;
        let found = cli::find(&self.target).with_context(|| {
            format!("guest {guest}: which switchyard network its interfaces join")
        })?;
        let mut made: Vec<String> = Vec::new();
        for iface in ifaces {
            if let Err(e) = self.plug(&found, iface, &mut made) {
                // Undo this guest's ports and the taps made for it: libvirt will not start it.
                for done in ifaces.iter().take_while(|i| i.target != iface.target) {
                    let cmd = ProtoCommand::PortDel {
                        name: done.target.clone(),
                    };
                    let _ = cli::run(&found.socket, cmd, false);
                }
                for tap in &made {
                    let _ = ip(&["link", "del", tap]);
                }
                return Err(e.context(format!(
                    "guest {guest}: interface {} not plugged into switchyard",
                    iface.target
                )));
            }
        }
        Ok(())
    }

    fn plug(
        &self,
        found: &cli::Found,
        iface: &EthernetIface,
        made: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let tap = &iface.target;
        let host = match &iface.mac {
            Some(mac) => host_by_mac(found.config.as_deref(), mac)?,
            None => None,
        };
        if host.is_none() {
            eprintln!(
                "switchyard hook: guest {}: no [[host]] has MAC {} (interface {tap}): plugged \
                 unguarded; it takes a pool address",
                self.guest,
                iface.mac.as_deref().unwrap_or("(none in the domain XML)")
            );
        }
        if !Path::new("/sys/class/net").join(tap).exists() {
            ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
            made.push(tap.clone());
        }
        let cmd = ProtoCommand::PortAdd(NewPort {
            name: tap.clone(),
            kind: "packet".into(),
            ifname: Some(tap.clone()),
            host,
            ..NewPort::default()
        });
        match cli::run(&found.socket, cmd, false) {
            Ok(msg) => eprint!("switchyard hook: {msg}"),
            // Brought back from the live state by a restart of switchyard: already plugged.
            Err(cli::ClientError::Daemon {
                kind: ErrorKind::Refused,
                message,
            }) if message.contains("already exists") => {
                eprintln!("switchyard hook: port {tap} is plugged already")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn release(&self, ifaces: &[EthernetIface]) {
        let found = cli::find(&self.target);
        for iface in ifaces {
            let tap = &iface.target;
            if let Ok(found) = &found {
                let cmd = ProtoCommand::PortDel { name: tap.clone() };
                match cli::run(&found.socket, cmd, false) {
                    Ok(_)
                    | Err(cli::ClientError::Daemon {
                        kind: ErrorKind::NotFound,
                        ..
                    }) => {}
                    Err(e) => eprintln!("switchyard hook: port del {tap}: {e}"),
                }
            }
            if Path::new("/sys/class/net").join(tap).exists() {
                if let Err(e) = ip(&["link", "del", tap]) {
                    eprintln!("switchyard hook: {e}");
                }
            }
        }
    }
}

/// The name of the host with `mac`, in the network's config file or its live state.
fn host_by_mac(config: Option<&Path>, mac: &str) -> anyhow::Result<Option<String>> {
    let mac: MacAddr = mac
        .parse()
        .map_err(|_| anyhow::anyhow!("the domain XML's MAC {mac:?} is not a MAC address"))?;
    let Some(path) = config else {
        return Ok(None);
    };
    let cfg = config::load(path)?;
    if let Some(h) = cfg.hosts.iter().find(|h| h.mac == Some(mac)) {
        return Ok(Some(h.name.clone()));
    }
    let state = live_state::LiveState::load(&live_state::path(&cfg.dhcp.state_dir))?;
    Ok(state.changes.iter().rev().find_map(|c| match c {
        ProtoCommand::HostAdd(h) if h.mac.parse::<MacAddr>().ok() == Some(mac) => {
            Some(h.name.clone())
        }
        _ => None,
    }))
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
