//! The kind-specific keys of a `[[port]]`: which keys each kind takes, and their checks.
//!
//! | kind | keys |
//! |---|---|
//! | `tap` | `ifname` (required), `netns`, `address` |
//! | `packet` | `ifname` (required: an existing netdev), `netns` (where it lives) |
//! | `stream` | `path` (required) |
//! | `dgram` | `path` (required), `peer` |
//!
//! A key of another kind is an error naming it, so a config meant for one kind never half-works
//! as another. Socket paths are absolute, fit `sun_path`, and are unique across the file
//! (a dgram `peer` included).

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::{
    ifname_problem, netns_problem, q, validate_tap, ConfigError, Cx, DgramConfig, Host,
    PacketConfig, PortKind, RawPort, StreamConfig, Unique,
};
use crate::port::socket::MAX_PATH_LEN;

pub(super) fn validate_kind(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
    host: Option<&Host>,
    paths: &mut Unique<'_>,
) -> Result<PortKind, ConfigError> {
    let kind = p.kind.get_ref().as_str();
    let keys: [(&str, Option<Range<usize>>); 5] = [
        ("ifname", p.ifname.as_ref().map(Spanned::span)),
        ("netns", p.netns.as_ref().map(Spanned::span)),
        ("address", p.address.as_ref().map(Spanned::span)),
        ("path", p.path.as_ref().map(Spanned::span)),
        ("peer", p.peer.as_ref().map(Spanned::span)),
    ];
    let allowed: &[&str] = match kind {
        "tap" => &["ifname", "netns", "address"],
        "packet" => &["ifname", "netns"],
        "stream" => &["path"],
        _ => &["path", "peer"],
    };
    for (key, span) in keys {
        if let (Some(span), false) = (span, allowed.contains(&key)) {
            return Err(cx.error(
                span,
                format!(
                    "{e}: key '{key}' does not apply to a {kind} port (a {kind} port takes {}; \
                     remove it or change the kind)",
                    allowed
                        .iter()
                        .map(|k| format!("'{k}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    match kind {
        "tap" => validate_tap(cx, e, p, table, host).map(PortKind::Tap),
        "packet" => validate_packet(cx, e, p, table).map(PortKind::Packet),
        "stream" => {
            let path = socket_path(cx, e, "path", p.path.as_ref(), &table, paths)?;
            Ok(PortKind::Stream(StreamConfig { path }))
        }
        _ => {
            let path = socket_path(cx, e, "path", p.path.as_ref(), &table, paths)?;
            let peer = match &p.peer {
                None => None,
                Some(raw) => Some(socket_path(cx, e, "peer", Some(raw), &table, paths)?),
            };
            Ok(PortKind::Dgram(DgramConfig { path, peer }))
        }
    }
}

fn validate_packet(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
) -> Result<PacketConfig, ConfigError> {
    let Some(raw_ifname) = &p.ifname else {
        return Err(cx.error(
            table,
            format!(
                "{e}: missing key 'ifname' (a packet port attaches to an existing netdev: a VM's \
                 tap, a veth, an uplink; e.g. ifname = \"tap-vm1\")"
            ),
        ));
    };
    let ifname = raw_ifname.get_ref();
    if let Some(problem) = ifname_problem(ifname) {
        return Err(cx.error(
            raw_ifname.span(),
            format!("{e}: ifname {} {problem}", q(ifname)),
        ));
    }
    let netns = match &p.netns {
        None => None,
        Some(raw) => {
            let netns = raw.get_ref();
            if let Some(problem) = netns_problem(netns) {
                return Err(cx.error(raw.span(), format!("{e}: netns {} {problem}", q(netns))));
            }
            Some(netns.clone())
        }
    };
    Ok(PacketConfig {
        ifname: ifname.clone(),
        netns,
    })
}

/// A unix socket path: required for `path`, absolute, at most 107 bytes, unique in the file.
fn socket_path(
    cx: &Cx<'_>,
    e: &str,
    key: &str,
    raw: Option<&Spanned<String>>,
    table: &Range<usize>,
    paths: &mut Unique<'_>,
) -> Result<PathBuf, ConfigError> {
    let Some(raw) = raw else {
        return Err(cx.error(
            table.clone(),
            format!(
                "{e}: missing key '{key}' (the unix socket QEMU connects to, e.g. \
                 {key} = \"/run/switchyard/vm1.sock\")"
            ),
        ));
    };
    let path = raw.get_ref();
    let problem = if !path.starts_with('/') {
        Some("is not absolute (start it with '/')".to_string())
    } else if path.len() > MAX_PATH_LEN {
        Some(format!(
            "is {} bytes long; a unix socket path is at most {MAX_PATH_LEN} (shorten it)",
            path.len()
        ))
    } else if path.contains('\0') || path.ends_with('/') {
        Some("must name a file (no NUL, no trailing '/')".to_string())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(cx.error(raw.span(), format!("{e}: {key} {} {problem}", q(path))));
    }
    paths.check(
        path.clone(),
        &raw.span(),
        e,
        key,
        "each socket path belongs to one port",
    )?;
    Ok(PathBuf::from(path))
}
