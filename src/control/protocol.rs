//! The control protocol: what the CLI and the daemon say to each other over the control socket.
//!
//! # Theory of operation
//!
//! JSON, one message a line, over a unix stream socket. A client writes a [`Request`] line
//! (`{"version":1,"command":"ports"}`), the daemon answers with one [`Reply`] line, and the
//! connection may carry more requests. `capture` is the one streaming command: its reply is a
//! `capture_started` line, then one `frame` line per mirrored frame, then `capture_end`.
//!
//! Every request carries `version`; the daemon answers a version it does not speak with an error
//! naming the one it does, so an old or newer client gets a clear message rather than a
//! misunderstanding. Requests are capped at [`MAX_REQUEST`] bytes. Anything the daemon cannot
//! use (not JSON, not an object, no version, an unknown command, a bad argument) gets an error
//! reply with an [`ErrorKind`]; the daemon never stops serving because of what a client sent.
//!
//! This module is pure: types and their (de)serialization, no I/O.

use serde::{Deserialize, Serialize};

use crate::service::dhcp::leases::hex_colon;
use crate::service::dhcp::Lease;
use crate::service::dhcp6::Lease6;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Bytes the daemon keeps of each captured frame (a 64 KiB GSO frame and its Ethernet header),
/// and the snap length of the pcap files the CLI writes.
pub const SNAPLEN: u32 = 65_535 + 14;
/// Longest request line the daemon reads (newline included); a longer one is refused.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Every port: kind, state, MAC, addresses, counters.
    Ports,
    /// The MAC table.
    Fdb,
    /// The DHCP server's live leases.
    Leases,
    /// Every counter of one port, or of all.
    Stats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// The appliance's DHCP and DNS servers' counters, live.
    Services,
    /// The last frames one port dropped, with why and their addresses.
    Why { port: String },
    /// Declare an extra source address or prefix on a guarded port.
    Allow { port: String, net: String },
    /// Withdraw a declared extra source address or prefix.
    Disallow { port: String, net: String },
    /// Add a reservation (DHCP and guard together).
    HostAdd(HostAdd),
    /// Remove a reservation.
    HostDel { name: String },
    /// Mirror one port's frames (both directions) to this connection.
    Capture {
        port: String,
        /// Stop after this many frames; `None`: until the client disconnects.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// Re-read the config file and apply what changed (as SIGHUP does). The live changes
    /// (`control::live_state`) are merged over the file's contents, unless `prune`: then the
    /// file alone is applied and the live changes are forgotten.
    Reload {
        #[serde(default)]
        prune: bool,
    },
    /// Plug a new port into the running switch (the keys of a `[[port]]` table).
    PortAdd(NewPort),
    /// Unplug a port and close it.
    PortDel { name: String },
    /// Who this daemon is: network, socket, config, ports, leases, uptime (`switchyard list`).
    Status,
    /// Set a port's bandwidth limits live: each direction `"AVERAGE[,PEAK[,BURST]]"` (KiB/s,
    /// KiB/s, KiB) or `"none"`; a direction not given keeps its limit.
    Limit {
        port: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ingress: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        egress: Option<String>,
    },
}

/// `host add`: a reservation as the command line gives it (the daemon parses and checks it).
/// The one list of its fields: the CLI's arguments and the request's JSON keys both come from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct HostAdd {
    /// A DNS label: the host's name.
    pub name: String,
    /// The host's MAC address (52:54:00:12:34:56).
    #[arg(long)]
    pub mac: String,
    /// The IPv4 address reserved for it, inside the network's subnet.
    #[arg(long)]
    pub ipv4: String,
    /// More IPv4 sources the guard allows (repeatable): addresses or prefixes.
    #[arg(long = "extra-ipv4")]
    #[serde(default)]
    pub extra_ipv4: Vec<String>,
    /// The port the host is plugged into: guarded with the host's addresses from now on.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// `port add`: what the command line says about the new port, as the keys of a `[[port]]`
/// table (checked by the config file's rules, see `config::ports`). The one list of its fields:
/// the CLI's arguments and the request's JSON keys both come from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct NewPort {
    /// The port's name: 1 to 32 of A-Z, a-z, 0-9, '_', '.', '-'.
    pub name: String,
    /// tap, packet, stream, dgram or vhost-user.
    #[arg(long)]
    pub kind: String,
    /// The netdev: the tap to create, or the existing one a packet port attaches to.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// The unix socket a stream, dgram or vhost-user port listens on (or, for a vhost-user port
    /// with `--mode client`, connects to).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A dgram port's fixed peer socket.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// A vhost-user port's side: server (the switch listens; the default) or client.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The [[host]] plugged into the port (its guard and DHCP reservation).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The namespace a tap is moved into (created if missing), or a packet port's netdev
    /// lives in.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The port's IP MTU (default: [network] mtu).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Reaches non-isolated ports only.
    #[arg(long)]
    #[serde(default)]
    pub isolated: bool,
    /// Exempt from the guard (an uplink, a server's port).
    #[arg(long)]
    #[serde(default)]
    pub trusted: bool,
}

/// One reply line: `result` on success, `error` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Body>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
}

impl Reply {
    pub fn ok(body: Body) -> Reply {
        Reply {
            version: PROTOCOL_VERSION,
            result: Some(body),
            error: None,
        }
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply {
            version: PROTOCOL_VERSION,
            result: None,
            error: Some(ErrorReply {
                kind,
                message: message.into(),
            }),
        }
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> String {
        // Serializing these plain types cannot fail; fall back to a fixed error line anyway.
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"version\":{PROTOCOL_VERSION},\"error\":{{\"kind\":\"internal\",\
                 \"message\":\"reply not serializable\"}}}}"
            )
        });
        s.push('\n');
        s
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not JSON, not an object, or a line that is not UTF-8.
    BadRequest,
    /// Longer than [`MAX_REQUEST`].
    TooLarge,
    /// No version, or one the daemon does not speak.
    Version,
    /// A command this daemon does not know.
    UnknownCommand,
    /// A known command with a missing or malformed argument.
    BadArgument,
    /// No such port or host.
    NotFound,
    /// The change was refused (it would break a rule); nothing was applied.
    Refused,
    /// Another capture is running.
    Busy,
    /// The peer is neither root nor in the control group.
    PermissionDenied,
    /// The daemon could not do it (a service did not answer in time).
    Internal,
}

impl std::fmt::Display for ErrorKind {
    /// The wire name (`unknown_command`), as clients and scripts see it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Body {
    Ports(Vec<PortInfo>),
    Fdb(Vec<FdbRow>),
    Leases(Vec<LeaseRow>),
    Stats(Vec<PortStats>),
    Services(ServiceStats),
    /// Newest first.
    Why(Vec<DropRow>),
    /// A change was applied; what happened, in words.
    Done(String),
    CaptureStarted {
        port: String,
        snaplen: u32,
    },
    Frame(CapturedFrame),
    CaptureEnd {
        frames: u64,
        dropped: u64,
    },
    Status(NetworkStatus),
}

/// One running network, as `switchyard list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// `[network] name`.
    pub name: String,
    /// The control socket the daemon listens on.
    pub socket: String,
    /// The config file it runs (or `<embedded default>`).
    pub config: String,
    pub pid: u32,
    /// Ports plugged in now, the appliance's service port not counted.
    pub ports: u64,
    /// Live DHCP leases (0 without DHCP).
    pub leases: u64,
    /// Whole seconds since the daemon started.
    pub uptime_secs: u64,
}

/// One row of `switchyard ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    /// "tap", or "appliance" for the service port.
    pub kind: String,
    /// The netdev (taps), or "-".
    pub ifname: String,
    /// "up" or "down".
    pub state: String,
    /// The host's MAC (or the appliance's); `None` when the port has no host.
    pub mac: Option<String>,
    /// Source addresses the guard allows: reservation, extras, leases; the gateway for the
    /// appliance; the host port's address; empty for an unguarded port without a reservation.
    pub addresses: Vec<String>,
    /// "enforce", "monitor" or "off".
    pub guard: String,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub drops: u64,
}

/// One MAC table entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    pub mac: String,
    pub port: String,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Whole seconds since last seen (0 for static entries).
    pub age_secs: u64,
    /// The entry's VLAN (1 from a daemon that predates VLANs).
    #[serde(default = "default_vlan")]
    pub vlan: u16,
}

fn default_vlan() -> u16 {
    crate::switch::DEFAULT_VLAN
}

/// One lease, with libvirt's field names (`virsh net-dhcp-leases`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRow {
    /// Epoch seconds; `None`: infinite.
    pub expiry_time: Option<u64>,
    pub mac: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ipaddr: String,
    pub prefix: u8,
    pub hostname: Option<String>,
    pub clientid: Option<String>,
    /// The switch port the lease is bound to (absent when read from the journal offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// A DHCPv6 binding's IAID (libvirt's `iaid`); absent for IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iaid: Option<u32>,
}

impl LeaseRow {
    /// The row for `lease` on a subnet of `prefix` bits, bound to `port` if known.
    pub fn from_lease(lease: &Lease, prefix: u8, port: Option<String>) -> LeaseRow {
        LeaseRow {
            expiry_time: lease.expires,
            mac: lease.mac.to_string(),
            kind: "ipv4".into(),
            ipaddr: lease.ip.to_string(),
            prefix,
            hostname: lease.hostname.clone(),
            clientid: lease.client_id.as_deref().map(hex_colon),
            port,
            iaid: None,
        }
    }

    /// The row for a DHCPv6 binding (`type` "ipv6", the client's DUID as its client id, the
    /// name DNS gives it), bound to `port` if known.
    pub fn from_lease6(
        lease: &Lease6,
        prefix: u8,
        hostname: Option<String>,
        port: Option<String>,
    ) -> LeaseRow {
        LeaseRow {
            expiry_time: Some(lease.expires),
            mac: lease.mac.map_or_else(|| "-".to_string(), |m| m.to_string()),
            kind: "ipv6".into(),
            ipaddr: lease.ip.to_string(),
            prefix,
            hostname,
            clientid: Some(hex_colon(&lease.duid)),
            port,
            iaid: Some(lease.iaid),
        }
    }
}

/// Every counter of one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub port: String,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub fdb_full: u64,
    /// Every drop reason, in a fixed order, zeros included: `(reason, count)`.
    pub drops: Vec<(String, u64)>,
    /// What a monitor-mode guard would have dropped, non-zero reasons only.
    pub monitored: Vec<(String, u64)>,
    /// Learned MAC table entries on this port.
    pub fdb_entries: u64,
    /// Frames a capture of this port could not keep up with.
    pub capture_dropped: u64,
    /// What is wrong with the port's service, in words (the appliance's row: a lease journal
    /// that cannot be opened); empty when nothing is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The appliance's servers' counters, as `(name, value)` in each server's own order: a counter
/// a newer daemon adds reaches every client without a change to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// The DHCP server's: `leases` (live now), messages received, replies by type, drops by
    /// reason (`drop.<reason>`, every reason, zeros included); `None`: DHCP is off.
    pub dhcp: Option<Vec<(String, u64)>>,
    /// The DNS server's: queries, how they were answered, errors, drops; `None`: DNS is off.
    pub dns: Option<Vec<(String, u64)>>,
    /// The DHCPv6 server's: `leases` (bindings live now), replies, advertises, drops; `None`:
    /// DHCPv6 is off (or an older daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp6: Option<Vec<(String, u64)>>,
}

/// One frame a port dropped (`switchyard why`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRow {
    /// How long ago, in milliseconds.
    pub ago_ms: u64,
    /// The drop reason's name, as in `switchyard stats` (`spoofed_ip`).
    pub reason: String,
    /// The frame's length in bytes.
    pub len: u32,
    pub src_mac: String,
    pub dst_mac: String,
    /// The EtherType, `0x0800` style (`0x0000`: the frame was too short to have one).
    pub ethertype: String,
    /// IPv4: the source and destination; ARP: the sender and target addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// IPv4's protocol: `icmp`, `tcp`, `udp` or its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// One mirrored frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedFrame {
    /// Microseconds since the Unix epoch.
    pub ts_us: u64,
    /// "rx": from the port's host into the switch; "tx": out of the switch to the host.
    pub dir: String,
    /// The frame's length on the wire (`data` may be shorter: the snap length).
    pub len: u32,
    /// The frame, lowercase hex.
    pub data: String,
}

/// Why a request line could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Parses one request line (without its newline). The checks go from the outside in, so the
/// error says the most useful thing: not JSON, then the version, then the command.
pub fn parse_request(line: &[u8]) -> Result<Request, ParseError> {
    let err = |kind, message: String| ParseError { kind, message };
    if line.len() >= MAX_REQUEST {
        return Err(err(
            ErrorKind::TooLarge,
            format!(
                "request of {} bytes; the limit is {MAX_REQUEST}",
                line.len()
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        err(
            ErrorKind::BadRequest,
            format!("not a JSON request line: {e}"),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(err(
            ErrorKind::BadRequest,
            "a request is a JSON object like {\"version\":1,\"command\":\"ports\"}".into(),
        ));
    };
    match obj.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(err(
                ErrorKind::Version,
                format!(
                    "protocol version {v} is not spoken here: this daemon speaks version \
                     {PROTOCOL_VERSION} (use the switchyard client of the same release)"
                ),
            ))
        }
        None => {
            return Err(err(
                ErrorKind::Version,
                format!(
                "the request has no numeric \"version\" (this daemon speaks {PROTOCOL_VERSION})"
            ),
            ))
        }
    }
    let command = obj
        .get("command")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let Some(command) = command else {
        return Err(err(
            ErrorKind::BadRequest,
            "the request has no \"command\" string".into(),
        ));
    };
    if !KNOWN_COMMANDS.contains(&command.as_str()) {
        return Err(err(
            ErrorKind::UnknownCommand,
            format!(
                "unknown command {:?} (known: {})",
                command,
                KNOWN_COMMANDS.join(", ")
            ),
        ));
    }
    let request: Request = serde_json::from_value(value.clone())
        .map_err(|e| err(ErrorKind::BadArgument, format!("command {command:?}: {e}")))?;
    // serde cannot deny unknown keys through `flatten`: compare with what the request holds.
    let known = serde_json::to_value(&request).unwrap_or_default();
    if let (Some(sent), Some(known)) = (value.as_object(), known.as_object()) {
        if let Some(key) = sent
            .iter()
            .find(|(k, v)| !known.contains_key(*k) && !v.is_null())
            .map(|(k, _)| k)
        {
            return Err(err(
                ErrorKind::BadArgument,
                format!("command {command:?}: unknown key {key:?}"),
            ));
        }
    }
    Ok(request)
}

/// Every `command` this version knows.
pub const KNOWN_COMMANDS: &[&str] = &[
    "ports", "fdb", "leases", "stats", "services", "why", "allow", "disallow", "host_add",
    "host_del", "capture", "reload", "port_add", "port_del", "status", "limit",
];

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Bytes from lowercase or uppercase hex; `None` if malformed.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests;
