//! `switchyard import-libvirt FILE`: a libvirt network definition (`virsh net-dumpxml NAME`)
//! turned into a switchyard config.
//!
//! What maps: the name; the IPv4 `<ip>` (address and netmask or prefix: libvirt's bridge
//! address becomes the gateway, so guests keep their DNS and DHCP server; the host's own leg
//! is a host port with the bridge's name and a free address next to the range); `<forward
//! mode>` nat, route, open or none; `<domain name>`; `<mtu size>`; the DHCP `<range>` (one)
//! and `<host mac name ip>` reservations; `<dns>` `<host ip>`/`<hostname>` entries (A records)
//! and `<forwarder addr>` (upstreams, or a per-domain forward with `domain`). What does not
//! map is an error naming it: forward modes that put guests on a host NIC (bridge, passthrough,
//! private, vepa, hostdev: use a packet uplink port instead), IPv6 `<ip>`, several ranges,
//! DHCPv6 hosts, `<bandwidth>`, `<portgroup>`, `<virtualport>`, DNS TXT and SRV records.
//! The result is checked by the config file's own rules before it is returned.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::libvirt::attr;

/// Every opening tag `<TAG ...>` in `xml`, in order.
fn tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let start = from + i;
        let next = xml[start + open.len()..].chars().next();
        if matches!(next, Some(c) if c.is_whitespace() || c == '/' || c == '>') {
            if let Some(end) = xml[start..].find('>') {
                out.push(&xml[start..=start + end]);
            }
        }
        from = start + open.len();
    }
    out
}

/// The text between `<TAG ...>` and `</TAG>` for each element TAG (not self-closing).
fn sections<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    for t in tags(xml, tag) {
        if t.ends_with("/>") {
            continue;
        }
        let start = t.as_ptr() as usize - xml.as_ptr() as usize + t.len();
        if let Some(end) = xml[start..].find(&close) {
            out.push(&xml[start..start + end]);
        }
    }
    out
}

fn text_of<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    sections(xml, tag).first().map(|s| s.trim())
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn addr(tag: &str, key: &str) -> Result<Ipv4Addr, String> {
    let v = attr(tag, key).ok_or_else(|| format!("{tag}: no {key}"))?;
    v.parse()
        .map_err(|_| format!("{tag}: {key} {v:?} is not an IPv4 address"))
}

/// A DNS label from a libvirt host name (lower case, other characters as '-').
fn label(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').chars().take(63).collect()
}

/// The config for the network definition `xml`, or what cannot be mapped.
pub fn convert(xml: &str, source: &str) -> Result<String, String> {
    let net = sections(xml, "network")
        .into_iter()
        .next()
        .ok_or("not a libvirt network definition (no <network> element)")?;
    for (tag, why) in [
        ("bandwidth", "switchyard has no rate limits per network"),
        ("portgroup", "switchyard has no port groups"),
        (
            "virtualport",
            "Open vSwitch and 802.1Qbh ports are not switchyard's",
        ),
    ] {
        if !tags(net, tag).is_empty() {
            return Err(format!("<{tag}> cannot be mapped: {why}"));
        }
    }
    let name = text_of(net, "name").ok_or("no <name>")?.to_string();
    let forward = match tags(net, "forward").first() {
        None => "none".to_string(),
        Some(t) => match attr(t, "mode").as_deref().unwrap_or("nat") {
            m @ ("nat" | "route" | "open") => m.to_string(),
            m => {
                return Err(format!(
                    "<forward mode='{m}'> cannot be mapped: it puts the guests on a host NIC; \
                     give switchyard a packet port on that NIC instead (config/examples/\
                     lan-uplink.toml)"
                ))
            }
        },
    };
    let bridge = tags(net, "bridge")
        .first()
        .and_then(|t| attr(t, "name"))
        .unwrap_or_else(|| format!("sy-{name}"));
    let domain = tags(net, "domain")
        .first()
        .and_then(|t| attr(t, "name"))
        .unwrap_or_else(|| format!("{}.internal", label(&name)));
    let mtu = tags(net, "mtu").first().and_then(|t| attr(t, "size"));

    // The IPv4 <ip>: the only one switchyard can take.
    let ips: Vec<&str> = tags(net, "ip");
    if let Some(v6) = ips
        .iter()
        .find(|t| attr(t, "family").as_deref() == Some("ipv6"))
    {
        return Err(format!(
            "{v6} cannot be mapped: switchyard's networks are IPv4 only"
        ));
    }
    let ip_tag = match ips.as_slice() {
        [one] => *one,
        [] => return Err("no <ip>: switchyard needs the network's IPv4 subnet".into()),
        _ => return Err("several IPv4 <ip> elements: switchyard takes one subnet".into()),
    };
    let gateway = addr(ip_tag, "address")?;
    let prefix: u8 = match (attr(ip_tag, "prefix"), attr(ip_tag, "netmask")) {
        (Some(p), _) => p
            .parse()
            .map_err(|_| format!("prefix {p:?} is not a number"))?,
        (None, Some(m)) => {
            let m: Ipv4Addr = m
                .parse()
                .map_err(|_| format!("netmask {m:?} is not a mask"))?;
            ipnet::ipv4_mask_to_prefix(m).map_err(|_| format!("netmask {m} is not contiguous"))?
        }
        (None, None) => 24,
    };
    let subnet = Ipv4Net::new(gateway, prefix)
        .map_err(|e| format!("{ip_tag}: {e}"))?
        .trunc();
    let ip_body = sections(net, "ip").into_iter().next().unwrap_or("");
    let ranges = tags(ip_body, "range");
    if ranges.len() > 1 {
        return Err(
            "several DHCP <range>s cannot be mapped: switchyard's pool is one range".into(),
        );
    }
    let pool = ranges
        .first()
        .map(|r| Ok::<_, String>((addr(r, "start")?, addr(r, "end")?)))
        .transpose()?;
    let mut hosts = Vec::new();
    for h in tags(ip_body, "host") {
        if attr(h, "id").is_some() {
            return Err(format!("{h}: DHCPv6 hosts cannot be mapped"));
        }
        let ip = addr(h, "ip")?;
        let mac = attr(h, "mac").ok_or_else(|| {
            format!("{h}: a host without mac cannot be mapped (switchyard reserves by MAC)")
        })?;
        let name = attr(h, "name")
            .map(|n| label(&n))
            .unwrap_or_else(|| format!("host-{}", ip.to_string().replace('.', "-")));
        hosts.push((name, mac, ip));
    }

    // The host's leg: a free address next to the pool (libvirt's host is the gateway itself).
    let taken = |a: Ipv4Addr| a == gateway || hosts.iter().any(|(_, _, ip)| *ip == a);
    let mut pool = pool;
    let mut note = String::new();
    let free = subnet
        .hosts()
        .find(|a| !taken(*a) && !pool.is_some_and(|(s, e)| (s..=e).contains(a)));
    let leg = match (free, pool) {
        (Some(a), _) => a,
        (None, Some((s, e))) if s < e => {
            note =
                format!("# The DHCP range was {s}-{e}; its first address is the host's leg now.\n");
            pool = Some((Ipv4Addr::from(u32::from(s) + 1), e));
            s
        }
        _ => return Err("no free address for the host's leg in the subnet".into()),
    };

    let mut out = format!(
        "# Imported from {source} (a libvirt network, `virsh net-dumpxml {name}`) by \
         `switchyard import-libvirt`.\n\
         # libvirt's bridge address {gateway} is the gateway (the guests' DNS and DHCP server); \
         the host's own leg\n# is the tap {q_bridge} at {leg} (stop libvirt's network first: \
         `virsh net-destroy {name}`).\n{note}\n\
         [network]\nname = {}\nsubnet = \"{subnet}\"\ngateway = \"{gateway}\"\ndomain = {}\n",
        q(&name),
        q(&domain),
        q_bridge = q(&bridge),
    );
    if let Some(m) = mtu {
        out.push_str(&format!("mtu = {m}\n"));
    }
    if forward != "none" {
        out.push_str(&format!("forward = {}\n", q(&forward)));
    }
    if let Some((s, e)) = pool {
        out.push_str(&format!("\n[dhcp]\npool = [\"{s}\", \"{e}\"]\n"));
    }
    dns(net, &mut out)?;
    for (name, mac, ip) in &hosts {
        out.push_str(&format!(
            "\n[[host]]\nname = {}\nmac = {}\nipv4 = \"{ip}\"\n",
            q(name),
            q(mac)
        ));
    }
    out.push_str(&format!(
        "\n# The host's leg, as libvirt's {q_bridge} bridge was.\n[[port]]\nname = \"host\"\n\
         kind = \"tap\"\nifname = {q_bridge}\nhost_address = \"{leg}/{prefix}\"\n",
        q_bridge = q(&bridge)
    ));
    super::config::parse(&out, source)
        .map_err(|e| format!("the imported config does not load: {e}"))?;
    Ok(out)
}

/// `<dns>`: forwarders and host names; TXT and SRV are refused.
fn dns(net: &str, out: &mut String) -> Result<(), String> {
    let Some(dns) = sections(net, "dns").into_iter().next() else {
        return Ok(());
    };
    for tag in ["txt", "srv"] {
        if !tags(dns, tag).is_empty() {
            return Err(format!(
                "<dns><{tag}> records cannot be mapped (write [[dns.record]]s)"
            ));
        }
    }
    let mut upstreams = Vec::new();
    let mut forwards = String::new();
    for f in tags(dns, "forwarder") {
        let Some(a) = attr(f, "addr") else { continue };
        match attr(f, "domain") {
            Some(d) => forwards.push_str(&format!(
                "\n[[dns.forward]]\ndomain = {}\nupstreams = [{}]\n",
                q(&d),
                q(&a)
            )),
            None => upstreams.push(q(&a)),
        }
    }
    out.push_str("\n[dns]\n");
    if !upstreams.is_empty() {
        out.push_str(&format!("upstreams = [{}]\n", upstreams.join(", ")));
    }
    out.push_str(&forwards);
    let mut records = String::new();
    let mut rest = dns;
    while let Some(i) = rest.find("<host") {
        let block = &rest[i..];
        let end = block.find("</host>").map_or(block.len(), |e| e + 7);
        let head = tags(block, "host").first().copied().unwrap_or("");
        let ip = addr(head, "ip")?;
        for name in sections(&block[..end], "hostname") {
            records.push_str(&format!(
                "\n[[dns.record]]\nname = {}\ntype = \"A\"\nvalue = \"{ip}\"\n",
                q(name.trim())
            ));
        }
        rest = &block[end.max(1)..];
    }
    out.push_str(&records);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `virsh net-dumpxml default` on Debian 12, with a reservation, a DNS host and a forwarder.
    const DEFAULT: &str = "<network>\n  <name>default</name>\n\
        <uuid>1e6f6b26-5a3c-4a5e-9d2b-6a0b4d3c2a11</uuid>\n  <forward mode='nat'>\n\
            <nat>\n      <port start='1024' end='65535'/>\n    </nat>\n  </forward>\n\
          <bridge name='virbr0' stp='on' delay='0'/>\n  <mac address='52:54:00:0a:cd:21'/>\n\
          <domain name='vms.test' localOnly='yes'/>\n  <mtu size='9000'/>\n  <dns>\n\
            <forwarder addr='192.0.2.53'/>\n\
            <forwarder domain='corp.test' addr='192.0.2.60'/>\n\
            <host ip='192.168.122.5'>\n      <hostname>printer</hostname>\n    </host>\n\
          </dns>\n  <ip address='192.168.122.1' netmask='255.255.255.0'>\n    <dhcp>\n\
              <range start='192.168.122.2' end='192.168.122.254'/>\n\
              <host mac='52:54:00:6f:78:f3' name='Web_1' ip='192.168.122.11'/>\n\
            </dhcp>\n  </ip>\n</network>\n";

    #[test]
    fn the_default_network_maps() {
        let text = convert(DEFAULT, "default.xml").unwrap();
        let cfg = crate::control::config::parse(&text, "t").unwrap();
        assert_eq!(cfg.network.name, "default");
        assert_eq!(cfg.network.subnet, "192.168.122.0/24".parse().unwrap());
        assert_eq!(cfg.network.gateway, Ipv4Addr::new(192, 168, 122, 1));
        assert_eq!(cfg.network.domain, "vms.test");
        assert_eq!(cfg.network.mtu, 9000);
        assert_eq!(cfg.network.forward, crate::control::config::Forward::Nat);
        // The range covered every free address: its first is the host's leg now.
        assert_eq!(
            cfg.dhcp.pool.map(|p| (p.0, p.1)),
            Some((
                Ipv4Addr::new(192, 168, 122, 3),
                Ipv4Addr::new(192, 168, 122, 254)
            ))
        );
        let (_, ifname, leg) = cfg.host_port().unwrap();
        assert_eq!((ifname, leg), ("virbr0", Ipv4Addr::new(192, 168, 122, 2)));
        assert_eq!(cfg.hosts[0].name, "web-1");
        assert_eq!(cfg.hosts[0].ipv4, Some(Ipv4Addr::new(192, 168, 122, 11)));
        assert!(text.contains("upstreams = [\"192.0.2.53\"]"), "{text}");
        assert!(text.contains("domain = \"corp.test\""), "{text}");
        assert!(text.contains("name = \"printer\"\ntype = \"A\"\nvalue = \"192.168.122.5\""));
    }

    #[test]
    fn an_isolated_network_with_a_prefix_and_no_dhcp() {
        let xml = "<network><name>iso</name><bridge name='virbr9'/>\
                   <ip address='10.9.0.1' prefix='24'/></network>";
        let text = convert(xml, "iso.xml").unwrap();
        let cfg = crate::control::config::parse(&text, "t").unwrap();
        assert_eq!(cfg.network.forward, crate::control::config::Forward::None);
        assert_eq!(cfg.network.domain, "iso.internal");
        assert_eq!(cfg.host_port().unwrap().2, Ipv4Addr::new(10, 9, 0, 2));
    }

    #[test]
    fn what_cannot_be_mapped_is_named() {
        let err = |xml: &str| convert(xml, "x.xml").unwrap_err();
        let base = "<ip address='10.9.0.1' prefix='24'/></network>";
        let e = err(&format!(
            "<network><name>b</name><forward mode='bridge'/>{base}"
        ));
        assert!(
            e.contains("mode='bridge'") && e.contains("packet port"),
            "{e}"
        );
        let e = err(
            "<network><name>v6</name><ip family='ipv6' address='fd00::1' prefix='64'/>\
                     <ip address='10.9.0.1' prefix='24'/></network>",
        );
        assert!(e.contains("IPv4 only"), "{e}");
        let e = err(&format!("<network><name>b</name><bandwidth/>{base}"));
        assert!(e.contains("<bandwidth>"), "{e}");
        let e = err(
            "<network><name>b</name><dns><txt name='a' value='b'/></dns>\
                     <ip address='10.9.0.1' prefix='24'/></network>",
        );
        assert!(e.contains("<txt>"), "{e}");
        assert!(err("<domain/>").contains("not a libvirt network"));
    }
}
