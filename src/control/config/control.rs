//! The operating keys: `control_socket` and `control_group` in `[switch]`, and the optional
//! `[metrics]` section.
//!
//! The control socket is always on (it is how every client command reaches the daemon); its
//! default path is `/run/switchyard/<network name>.sock`, so two networks on one machine never
//! share one. The group is checked for syntax here and resolved (through `/etc/group`) when the
//! daemon starts, so `switchyard check` gives the same answer on any machine. Metrics are off
//! unless `[metrics] listen` names an address.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{q, ConfigError, Cx, Network, RawSwitch};

/// Where control sockets live without `control_socket`: this, then `<network name>.sock`.
pub const DEFAULT_SOCKET_DIR: &str = "/run/switchyard";
/// A unix socket path must fit `sun_path` (108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The control socket and metrics endpoint, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The control socket's path (absolute).
    pub socket: PathBuf,
    /// The group allowed to use the socket besides root (a name or a numeric gid); `None`:
    /// root only.
    pub group: Option<String>,
    /// `[metrics] listen`: where the Prometheus endpoint listens; `None`: off.
    pub metrics: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [metrics] table")]
pub(super) struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// `/run/switchyard/<network>.sock`.
pub fn default_socket(network: &str) -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET_DIR).join(format!("{network}.sock"))
}

/// Validates `[switch] control_socket`, `control_group` and `[metrics]`.
pub(super) fn validate_control(
    cx: &Cx<'_>,
    network: &Network,
    switch: Option<&RawSwitch>,
    metrics: Option<&RawMetrics>,
) -> Result<ControlConfig, ConfigError> {
    let e = "[switch]";
    let socket = match switch.and_then(|s| s.control_socket.as_ref()) {
        None => default_socket(&network.name),
        Some(raw) => {
            let text = raw.get_ref();
            let path = PathBuf::from(text);
            if !path.is_absolute() || text.contains('\0') || text.ends_with('/') {
                return Err(cx.error(
                    raw.span(),
                    format!(
                        "{e}: control_socket {} must be an absolute file path (like \
                         \"/run/switchyard/lab.sock\")",
                        q(text)
                    ),
                ));
            }
            if text.len() > MAX_SOCKET_PATH {
                return Err(cx.error(
                    raw.span(),
                    format!(
                        "{e}: control_socket is {} bytes long; a unix socket path holds at \
                         most {MAX_SOCKET_PATH} (pick a shorter one)",
                        text.len()
                    ),
                ));
            }
            path
        }
    };
    let group = match switch.and_then(|s| s.control_group.as_ref()) {
        None => None,
        Some(raw) => {
            let g = raw.get_ref();
            let ok = !g.is_empty()
                && g.len() <= 32
                && g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !ok {
                return Err(cx.error(
                    raw.span(),
                    format!(
                        "{e}: control_group {} is not a group name or number (write a group \
                         such as \"switchyard\", or remove the key for root only)",
                        q(g)
                    ),
                ));
            }
            Some(g.clone())
        }
    };
    let metrics = match metrics.and_then(|m| m.listen.as_ref()) {
        None => None,
        Some(raw) => Some(raw.get_ref().parse::<SocketAddr>().map_err(|_| {
            cx.error(
                raw.span(),
                format!(
                    "[metrics]: listen {} is not an address and port (write \
                     \"127.0.0.1:9750\", or remove [metrics] to turn it off)",
                    q(raw.get_ref())
                ),
            )
        })?),
    };
    Ok(ControlConfig {
        socket,
        group,
        metrics,
    })
}
