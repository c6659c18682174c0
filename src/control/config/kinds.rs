//! The kind-specific keys of a `[[port]]`: which keys each kind takes, and their checks.
//!
//! | kind | keys |
//! |---|---|
//! | `tap` | `ifname` (required), `netns`, `address`, `host_address` (a host port), `persist` |
//! | `packet` | `ifname` (required: an existing netdev), `netns` (where it lives) |
//! | `stream` | `path` (required) |
//! | `dgram` | `path` (required), `peer` |
//! | `vhost-user` | `path` (required), `mode` (`"server"`, the default, or `"client"`) |
//! | `vxlan` | `vni` (required), `local` (required, `ADDR[:PORT]`), `remotes` (required) |
//!
//! A key of another kind is an error naming it, so a config meant for one kind never half-works
//! as another. Socket paths are absolute, fit `sun_path`, and are unique across the file
//! (a dgram `peer` included).

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::{
    netdev_keys, q, validate_tap, ConfigError, Cx, DgramConfig, Host, PacketConfig, PortKind,
    RawPort, StreamConfig, Unique, VhostUserConfig, VhostUserMode, VxlanConfig,
};
use crate::wire::vxlan::{MAX_VNI, VXLAN_PORT};

/// Longest unix socket path (`sun_path` is 108 bytes with its NUL). The config's rule, which
/// `port::socket` applies again when it binds.
pub const MAX_PATH_LEN: usize = 107;

pub(super) fn validate_kind(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
    host: Option<&Host>,
    paths: &mut Unique<'_>,
) -> Result<PortKind, ConfigError> {
    let kind = p.kind.get_ref().as_str();
    let keys: [(&str, Option<Range<usize>>); 11] = [
        ("ifname", p.ifname.as_ref().map(Spanned::span)),
        ("netns", p.netns.as_ref().map(Spanned::span)),
        ("address", p.address.as_ref().map(Spanned::span)),
        ("host_address", p.host_address.as_ref().map(Spanned::span)),
        ("persist", p.persist.as_ref().map(Spanned::span)),
        ("path", p.path.as_ref().map(Spanned::span)),
        ("peer", p.peer.as_ref().map(Spanned::span)),
        ("mode", p.mode.as_ref().map(Spanned::span)),
        ("vni", p.vni.as_ref().map(Spanned::span)),
        ("local", p.local.as_ref().map(Spanned::span)),
        ("remotes", p.remotes.as_ref().map(Spanned::span)),
    ];
    let allowed: &[&str] = match kind {
        "tap" => &["ifname", "netns", "address", "host_address", "persist"],
        "packet" => &["ifname", "netns"],
        "stream" => &["path"],
        "vhost-user" => &["path", "mode"],
        "vxlan" => &["vni", "local", "remotes"],
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
        "vxlan" => validate_vxlan(cx, e, p, table, paths).map(PortKind::Vxlan),
        "stream" => {
            let path = socket_path(cx, e, "path", p.path.as_ref(), &table, paths)?;
            Ok(PortKind::Stream(StreamConfig { path }))
        }
        "vhost-user" => validate_vhost_user(cx, e, p, table, paths).map(PortKind::VhostUser),
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

/// `path` and `mode` of a vhost-user port.
fn validate_vhost_user(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
    paths: &mut Unique<'_>,
) -> Result<VhostUserConfig, ConfigError> {
    let path = socket_path(cx, e, "path", p.path.as_ref(), &table, paths)?;
    let mode = match p.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("server", _)) => VhostUserMode::Server,
        Some(("client", _)) => VhostUserMode::Client,
        Some((other, span)) => {
            return Err(cx.error(
                span,
                format!(
                    "{e}: mode {} is neither \"server\" (the switch listens, QEMU \
                     connects) nor \"client\" (QEMU listens with server=on)",
                    q(other)
                ),
            ))
        }
    };
    Ok(VhostUserConfig { path, mode })
}

fn validate_packet(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
) -> Result<PacketConfig, ConfigError> {
    let (ifname, netns) = netdev_keys(cx, e, p, table, || {
        "a packet port attaches to an existing netdev: a VM's tap, a veth, an uplink; \
         e.g. ifname = \"tap-vm1\""
            .to_string()
    })?;
    Ok(PacketConfig { ifname, netns })
}

/// `vni`, `local` and `remotes` of a vxlan port. `local` is unique in the file (one socket, one
/// VNI: two VNIs need two ports on two UDP ports or addresses); every remote has the family of
/// `local`, is a unicast address (no multicast groups: head-end replication only) and appears
/// once.
fn validate_vxlan(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
    paths: &mut Unique<'_>,
) -> Result<VxlanConfig, ConfigError> {
    let missing = |key: &str, example: &str| {
        cx.error(
            table.clone(),
            format!("{e}: missing key '{key}' (a vxlan port needs it, e.g. {key} = {example})"),
        )
    };
    let vni = p.vni.as_ref().ok_or_else(|| missing("vni", "42"))?;
    let vni = match u32::try_from(*vni.get_ref()) {
        Ok(v) if v <= MAX_VNI => v,
        _ => {
            return Err(cx.error(
                vni.span(),
                format!(
                    "{e}: vni {} is out of range (a VNI has 24 bits: 0..={MAX_VNI})",
                    vni.get_ref()
                ),
            ))
        }
    };
    let raw_local = p
        .local
        .as_ref()
        .ok_or_else(|| missing("local", "\"192.0.2.1:4789\" or \"0.0.0.0\""))?;
    let local = udp_addr(cx, e, "local", raw_local)?;
    if local.port() == 0 {
        return Err(cx.error(
            raw_local.span(),
            format!(
                "{e}: local {} has port 0; remotes send to a fixed port (leave the port out for \
                 {VXLAN_PORT})",
                q(raw_local.get_ref())
            ),
        ));
    }
    paths.check(
        format!("udp {local}"),
        &raw_local.span(),
        e,
        "local",
        "each local UDP address belongs to one vxlan port",
    )?;
    let remotes = vxlan_remotes(cx, e, p, local, &missing)?;
    Ok(VxlanConfig {
        vni,
        local,
        remotes,
    })
}

/// `remotes` of a vxlan port whose `local` is `local` (see [`validate_vxlan`]).
fn vxlan_remotes(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    local: std::net::SocketAddr,
    missing: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
    let raw_remotes = p
        .remotes
        .as_ref()
        .ok_or_else(|| missing("remotes", "[\"192.0.2.2\"]"))?;
    if raw_remotes.get_ref().is_empty() {
        return Err(cx.error(
            raw_remotes.span(),
            format!(
                "{e}: remotes is empty; list the remote VTEPs' addresses, e.g. [\"192.0.2.2\"]"
            ),
        ));
    }
    let mut remotes = Vec::new();
    for raw in raw_remotes.get_ref() {
        let addr = udp_addr(cx, e, "remote", raw)?;
        let ip = addr.ip();
        let problem = if ip.is_ipv4() != local.is_ipv4() {
            Some(format!(
                "is not of the family of local {local} (one underlay: IPv4 or IPv6)"
            ))
        } else if ip.is_unspecified() || ip.is_multicast() || addr.port() == 0 {
            Some(
                "is not a unicast address and port (multicast groups are not supported: \
                 list each remote VTEP)"
                    .to_string(),
            )
        } else if remotes.iter().any(|r: &std::net::SocketAddr| r.ip() == ip) {
            Some("is listed twice (a VTEP is known by its address)".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(cx.error(
                raw.span(),
                format!("{e}: remote {} {problem}", q(raw.get_ref())),
            ));
        }
        remotes.push(addr);
    }
    Ok(remotes)
}

/// `ADDR:PORT`, `[V6]:PORT`, or a bare address with the VXLAN port 4789.
fn udp_addr(
    cx: &Cx<'_>,
    e: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<std::net::SocketAddr, ConfigError> {
    let text = raw.get_ref();
    if let Ok(a) = text.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(std::net::SocketAddr::new(ip, VXLAN_PORT)),
        Err(_) => Err(cx.error(
            raw.span(),
            format!(
                "{e}: {key} {} is not an IP address with an optional port (e.g. \"192.0.2.1\", \
                 \"192.0.2.1:4789\", \"[2001:db8::1]:4789\")",
                q(text)
            ),
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::super::{parse, Config, ConfigError, DgramConfig, PacketConfig, PortKind};

    const NET: &str = "[network]\nname = \"t\"\nsubnet = \"10.0.0.0/24\"\ngateway = \"10.0.0.1\"\n\
                       domain = \"t.test\"\n";

    /// `NET` (lines 1-5) plus `ports`, which starts on line 6.
    fn with(ports: &str) -> Result<Config, ConfigError> {
        parse(&format!("{NET}{ports}"), "t.toml")
    }

    #[track_caller]
    fn assert_err(r: Result<Config, ConfigError>, line: usize, needles: &[&str]) {
        let Err(ConfigError::Invalid { location, message }) = r else {
            panic!("expected an Invalid error, got {r:?}");
        };
        assert_eq!(location, format!("t.toml:{line}"), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    fn port(name: &str, kind: &str, keys: &str) -> String {
        format!("[[port]]\nname = \"{name}\"\nkind = \"{kind}\"\n{keys}")
    }

    #[test]
    fn each_kind_parses_with_its_keys() {
        let cfg = with(
            &[
                port("u", "packet", "ifname = \"veth0\"\nnetns = \"up\"\n"),
                port("v", "packet", "ifname = \"tap-vm\"\n"),
                port("s", "stream", "path = \"/run/switchyard/vm1.sock\"\n"),
                port(
                    "d",
                    "dgram",
                    "path = \"/run/sy/d.sock\"\npeer = \"/run/sy/q.sock\"\n",
                ),
                port("e", "dgram", "path = \"/run/sy/e.sock\"\n"),
            ]
            .concat(),
        )
        .unwrap();
        let kinds: Vec<&PortKind> = cfg.ports.iter().map(|p| &p.kind).collect();
        assert_eq!(
            kinds[0],
            &PortKind::Packet(PacketConfig {
                ifname: "veth0".into(),
                netns: Some("up".into())
            })
        );
        assert!(matches!(kinds[1], PortKind::Packet(p) if p.netns.is_none()));
        assert!(
            matches!(kinds[2], PortKind::Stream(s) if s.path == std::path::Path::new("/run/switchyard/vm1.sock"))
        );
        assert_eq!(
            kinds[3],
            &PortKind::Dgram(DgramConfig {
                path: "/run/sy/d.sock".into(),
                peer: Some("/run/sy/q.sock".into())
            })
        );
        assert!(matches!(kinds[4], PortKind::Dgram(d) if d.peer.is_none()));
    }

    #[test]
    fn vhost_user_ports_take_a_path_and_a_mode() {
        use super::super::VhostUserMode as Mode;
        let cfg = with(
            &[
                port("a", "vhost-user", "path = \"/run/sy/a.vhost\"\n"),
                port(
                    "b",
                    "vhost-user",
                    "path = \"/run/sy/b.vhost\"\nmode = \"client\"\n",
                ),
            ]
            .concat(),
        )
        .unwrap();
        let modes: Vec<_> = cfg
            .ports
            .iter()
            .map(|p| match &p.kind {
                PortKind::VhostUser(v) => (v.path.display().to_string(), v.mode),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            modes,
            [
                ("/run/sy/a.vhost".to_string(), Mode::Server),
                ("/run/sy/b.vhost".to_string(), Mode::Client)
            ]
        );
        assert_eq!(cfg.ports[0].kind.name(), "vhost-user");
        assert_err(
            with(&port(
                "a",
                "vhost-user",
                "path = \"/x.sock\"\nmode = \"both\"\n",
            )),
            10,
            &["mode 'both'", "\"server\"", "\"client\""],
        );
        assert_err(
            with(&port("a", "vhost-user", "")),
            6,
            &["missing key 'path'"],
        );
        assert_err(
            with(&port(
                "a",
                "stream",
                "path = \"/x.sock\"\nmode = \"client\"\n",
            )),
            10,
            &["key 'mode' does not apply to a stream port"],
        );
    }

    #[test]
    fn vxlan_ports_take_a_vni_a_local_address_and_remotes() {
        use super::super::VxlanConfig;
        let cfg = with(
            &[
                port(
                    "vx",
                    "vxlan",
                    "vni = 42\nlocal = \"10.9.0.1\"\nremotes = [\"10.9.0.2\", \"10.9.0.3:8472\"]\n",
                ),
                port(
                    "vx6",
                    "vxlan",
                    "vni = 16777215\nlocal = \"[fd00::1]:4790\"\nremotes = [\"fd00::2\"]\n",
                ),
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            cfg.ports[0].kind,
            PortKind::Vxlan(VxlanConfig {
                vni: 42,
                local: "10.9.0.1:4789".parse().unwrap(),
                remotes: vec![
                    "10.9.0.2:4789".parse().unwrap(),
                    "10.9.0.3:8472".parse().unwrap()
                ],
            })
        );
        assert_eq!(cfg.ports[0].kind.name(), "vxlan");
        assert!(matches!(&cfg.ports[1].kind,
            PortKind::Vxlan(v) if v.vni == 16_777_215 && v.remotes == ["[fd00::2]:4789".parse().unwrap()]));
    }

    #[test]
    fn vxlan_ports_refuse_bad_vnis_addresses_and_remotes() {
        let vx = |keys: &str| with(&port("vx", "vxlan", keys));
        assert_err(
            vx("local = \"10.9.0.1\"\nremotes = [\"10.9.0.2\"]\n"),
            6,
            &["missing key 'vni'"],
        );
        assert_err(
            vx("vni = 16777216\nlocal = \"10.9.0.1\"\nremotes = [\"10.9.0.2\"]\n"),
            9,
            &["vni 16777216 is out of range", "16777215"],
        );
        assert_err(
            vx("vni = 1\nremotes = [\"10.9.0.2\"]\n"),
            6,
            &["missing key 'local'"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1\"\n"),
            6,
            &["missing key 'remotes'"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1\"\nremotes = []\n"),
            11,
            &["remotes is empty"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"host:4789\"\nremotes = [\"10.9.0.2\"]\n"),
            10,
            &["local 'host:4789' is not an IP address"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1:0\"\nremotes = [\"10.9.0.2\"]\n"),
            10,
            &["port 0"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1\"\nremotes = [\"fd00::2\"]\n"),
            11,
            &["remote 'fd00::2'", "family"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1\"\nremotes = [\"239.1.1.1\"]\n"),
            11,
            &["multicast"],
        );
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1\"\nremotes = [\"10.9.0.2\", \"10.9.0.2:1\"]\n"),
            11,
            &["listed twice"],
        );
    }

    #[test]
    fn vxlan_keys_belong_to_vxlan_ports_and_a_local_address_to_one() {
        let vx = |keys: &str| with(&port("vx", "vxlan", keys));
        assert_err(
            vx("vni = 1\nlocal = \"10.9.0.1\"\nremotes = [\"10.9.0.2\"]\npath = \"/x.sock\"\n"),
            12,
            &["key 'path' does not apply to a vxlan port"],
        );
        assert_err(
            with(&port("s", "stream", "path = \"/x.sock\"\nvni = 1\n")),
            10,
            &["key 'vni' does not apply to a stream port"],
        );
        assert_err(
            with(
                &[
                    port(
                        "a",
                        "vxlan",
                        "vni = 1\nlocal = \"10.9.0.1\"\nremotes = [\"10.9.0.2\"]\n",
                    ),
                    port(
                        "b",
                        "vxlan",
                        "vni = 2\nlocal = \"10.9.0.1:4789\"\nremotes = [\"10.9.0.3\"]\n",
                    ),
                ]
                .concat(),
            ),
            16,
            &["port 'b'", "line 10"],
        );
    }

    #[test]
    fn persist_is_a_tap_key_and_defaults_to_false() {
        let cfg = with(
            &[
                port("a", "tap", "ifname = \"a\"\npersist = true\n"),
                port("b", "tap", "ifname = \"b\"\n"),
            ]
            .concat(),
        )
        .unwrap();
        let persist: Vec<bool> = cfg
            .ports
            .iter()
            .map(|p| matches!(&p.kind, PortKind::Tap(t) if t.persist))
            .collect();
        assert_eq!(persist, [true, false]);
        assert_err(
            with(&port("u", "packet", "ifname = \"a\"\npersist = true\n")),
            10,
            &["key 'persist' does not apply to a packet port"],
        );
    }

    #[test]
    fn bad_keys_and_values_name_the_line() {
        assert_err(
            with(&port("s", "stream", "")),
            6,
            &["port 's'", "missing key 'path'"],
        );
        assert_err(
            with(&port("u", "packet", "")),
            6,
            &["port 'u'", "missing key 'ifname'"],
        );
        assert_err(
            with(&port("s", "stream", "path = \"/x.sock\"\nifname = \"a\"\n")),
            10,
            &["key 'ifname' does not apply to a stream port", "'path'"],
        );
        assert_err(
            with(&port("u", "packet", "ifname = \"a\"\naddress = \"none\"\n")),
            10,
            &["key 'address' does not apply to a packet port"],
        );
        assert_err(
            with(&port("t", "tap", "ifname = \"a\"\npath = \"/x.sock\"\n")),
            10,
            &["key 'path' does not apply to a tap port"],
        );
        assert_err(
            with(&port("u", "packet", "ifname = \"much-too-long-name\"\n")),
            9,
            &["ifname 'much-too-long-name'", "18 bytes", "15"],
        );
        assert_err(
            with(&port("s", "stream", "path = \"vm1.sock\"\n")),
            9,
            &["path 'vm1.sock'", "not absolute"],
        );
        let long = format!("/{}", "x".repeat(120));
        assert_err(
            with(&port("s", "stream", &format!("path = \"{long}\"\n"))),
            9,
            &["121 bytes", "107"],
        );
        assert_err(
            with(&port("u", "packet", "ifname = \"a\"\nnetns = \"a/b\"\n")),
            10,
            &["netns 'a/b'"],
        );
    }

    #[test]
    fn socket_paths_and_ifnames_are_unique_across_kinds() {
        assert_err(
            with(
                &[
                    port("s", "stream", "path = \"/run/a.sock\"\n"),
                    port(
                        "d",
                        "dgram",
                        "path = \"/run/b.sock\"\npeer = \"/run/a.sock\"\n",
                    ),
                ]
                .concat(),
            ),
            14,
            &["port 'd'", "peer '/run/a.sock'", "line 9"],
        );
        assert_err(
            with(
                &[
                    port("t", "tap", "ifname = \"x0\"\n"),
                    port("u", "packet", "ifname = \"x0\"\n"),
                ]
                .concat(),
            ),
            13,
            &["port 'u'", "ifname 'x0'", "line 9"],
        );
    }
}
