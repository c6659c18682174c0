//! The file as written: private serde mirrors of the TOML, with a span on every value a
//! check may point at. Validation (one module per section) turns these into `Config`.

use super::{control, dhcp, dns, ipv6, segments};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a config document")]
pub(super) struct RawConfig {
    pub(super) network: Option<RawNetwork>,
    pub(super) switch: Option<RawSwitch>,
    #[serde(default)]
    pub(super) host: Vec<Spanned<RawHost>>,
    #[serde(default)]
    pub(super) port: Vec<Spanned<RawPort>>,
    pub(super) dhcp: Option<dhcp::RawDhcp>,
    pub(super) dns: Option<dns::RawDns>,
    pub(super) ra: Option<Spanned<ipv6::RawRa>>,
    pub(super) dhcp6: Option<Spanned<ipv6::RawDhcp6>>,
    pub(super) metrics: Option<control::RawMetrics>,
    #[serde(default)]
    pub(super) segment: Vec<segments::RawSegment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [network] table")]
pub(super) struct RawNetwork {
    pub(super) name: Spanned<String>,
    pub(super) subnet: Spanned<String>,
    pub(super) gateway: Spanned<String>,
    pub(super) domain: Spanned<String>,
    pub(super) mtu: Option<Spanned<i64>>,
    pub(super) forward: Option<Spanned<String>>,
    pub(super) subnet6: Option<Spanned<String>>,
    pub(super) gateway6: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [switch] table")]
pub(super) struct RawSwitch {
    /// A string with a unit ("300s", "5m", "1h") or an integer number of seconds.
    pub(super) ageing: Option<Spanned<toml::Value>>,
    pub(super) max_macs: Option<Spanned<i64>>,
    pub(super) max_macs_per_port: Option<Spanned<i64>>,
    pub(super) workers: Option<Spanned<i64>>,
    pub(super) max_ports: Option<Spanned<i64>>,
    /// Frames a second, or "off".
    pub(super) storm_limit: Option<Spanned<toml::Value>>,
    pub(super) loop_detection: Option<bool>,
    /// Microseconds, or "adaptive".
    pub(super) poll_us: Option<Spanned<toml::Value>>,
    pub(super) multi_queue: Option<bool>,
    #[serde(default)]
    pub(super) fdb: Vec<RawFdb>,
    pub(super) control_socket: Option<Spanned<String>>,
    pub(super) control_group: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[switch.fdb]] table")]
pub(super) struct RawFdb {
    pub(super) mac: Spanned<String>,
    pub(super) port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[host]] table")]
pub(super) struct RawHost {
    pub(super) name: Spanned<String>,
    /// Required unless `match = "hostname"` (checked in `dhcp::host_dhcp`).
    pub(super) mac: Option<Spanned<String>>,
    pub(super) ipv4: Option<Spanned<String>>,
    pub(super) ipv6: Option<Spanned<String>>,
    pub(super) duid: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub(super) match_by: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) extra_macs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) extra_ipv4: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) extra_ipv6: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[port]] table")]
pub(super) struct RawPort {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) ifname: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) netns: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) host_address: Option<Spanned<String>>,
    pub(super) persist: Option<Spanned<bool>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) peer: Option<Spanned<String>>,
    /// vhost-user: `"server"` or `"client"`.
    pub(super) mode: Option<Spanned<String>>,
    /// vxlan: the VNI, the local UDP address, the remote VTEPs.
    pub(super) vni: Option<Spanned<i64>>,
    pub(super) local: Option<Spanned<String>>,
    pub(super) remotes: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) isolated: Option<bool>,
    pub(super) mtu: Option<Spanned<i64>>,
    /// `true`, `false` or `"monitor"`.
    pub(super) guard: Option<Spanned<toml::Value>>,
    pub(super) trusted: Option<bool>,
    pub(super) any_link_local: Option<bool>,
    /// 802.1Q: access VLAN, or trunk VLANs with an optional native one (`segment.rs`).
    pub(super) vlan: Option<Spanned<i64>>,
    pub(super) trunk: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pub(super) native: Option<Spanned<i64>>,
    /// Bandwidth limits (`segment.rs`).
    pub(super) ingress: Option<Spanned<super::segment::RawLimit>>,
    pub(super) egress: Option<Spanned<super::segment::RawLimit>>,
}
