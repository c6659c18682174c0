//! libvirt's qemu hook: `switchyard libvirt-hook GUEST OPERATION SUB-OPERATION EXTRA`, the
//! program behind `contrib/libvirt-qemu-hook` (installed as `/etc/libvirt/hooks/qemu`).
//!
//! # Theory of operation
//!
//! libvirt runs the hook with the domain's XML on stdin at each step of a domain's life. The
//! hook acts on `prepare` (before QEMU starts) and `release` (after it is gone), and only on the
//! domain's `<interface type='ethernet'>` whose `<target dev=...>` starts with its tap prefix
//! (`sy-` unless `--tap-prefix`; any other interface, and every other domain, is left alone).
//! For each: on `prepare`, a persistent tap of that name is made (`ip tuntap add`, where libvirt
//! with `managed='no'` expects one) and plugged into the network as a `packet` port named after
//! the tap, with the `[[host]]` whose MAC is the interface's `<mac address=...>` (from the
//! network's config file or its live state) as the port's host, so the guest gets its
//! reservation and its guard. A MAC that no host has is plugged unguarded, with a warning (the
//! guest takes a pool address). On `release` the port is unplugged and the tap removed.
//!
//! The network is found as every client command finds it (`--network NAME`, else the only
//! running network; `control::locate`). A port add is a live change, so it is saved and comes
//! back when switchyard restarts (`control::live_state`). Every failure on `prepare` exits
//! non-zero with its reason on stderr: libvirt then refuses to start the domain and shows the
//! reason, rather than starting a guest with no network. On `release` failures are reported and
//! the hook still exits 0 (the guest is gone either way).
//!
//! The XML is read by hand (no XML library): libvirt writes it canonically, one element a line
//! with attributes in single quotes; double quotes are accepted too.

/// One `<interface type='ethernet'>` of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetIface {
    /// `<target dev='...'/>`.
    pub target: String,
    /// `<mac address='...'/>`, if given.
    pub mac: Option<String>,
}

/// The value of attribute `name` in the tag text `tag` (`<mac address='52:54:...'/>`).
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        let after_eq = after.trim_start().strip_prefix('=').map(str::trim_start);
        if let (Some(b), Some(v)) = (before, after_eq) {
            if b.is_whitespace() {
                let quote = v.chars().next()?;
                if quote == '\'' || quote == '"' {
                    let end = v[1..].find(quote)?;
                    return Some(v[1..=end].to_string());
                }
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

/// The first `<TAG ...>` in `xml` (its text up to `>`), if any.
fn first_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let start = from + i;
        let next = xml[start + open.len()..].chars().next();
        if matches!(next, Some(c) if c.is_whitespace() || c == '/' || c == '>') {
            let end = xml[start..].find('>')?;
            return Some(&xml[start..start + end + 1]);
        }
        from = start + open.len();
    }
    None
}

/// Every `<interface type='ethernet'>` of the domain XML `xml`, in order.
pub fn ethernet_interfaces(xml: &str) -> Vec<EthernetIface> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<interface") {
        let after = &rest[i..];
        let end = after.find("</interface>").unwrap_or(after.len());
        let block = &after[..end];
        let head = first_tag(block, "interface").unwrap_or("");
        if attr(head, "type").as_deref() == Some("ethernet") {
            if let Some(target) = first_tag(block, "target").and_then(|t| attr(t, "dev")) {
                let mac = first_tag(block, "mac").and_then(|t| attr(t, "address"));
                out.push(EthernetIface { target, mac });
            }
        }
        rest = &after[end.min(after.len()).max(1)..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `virsh dumpxml` prints a domain with two NICs (trimmed).
    const DOMAIN: &str = "<domain type='qemu'>\n  <name>vm1</name>\n  <devices>\n\
        <interface type='ethernet'>\n      <mac address='52:54:00:00:34:11'/>\n\
              <target dev='sy-vm1' managed='no'/>\n      <model type='virtio'/>\n\
            </interface>\n    <interface type='network'>\n\
              <mac address='52:54:00:aa:bb:cc'/>\n      <source network='default'/>\n\
              <target dev='vnet0'/>\n    </interface>\n\
            <interface type=\"ethernet\">\n      <target dev=\"other0\"/>\n    </interface>\n\
          </devices>\n</domain>\n";

    #[test]
    fn ethernet_interfaces_with_their_targets_and_macs() {
        assert_eq!(
            ethernet_interfaces(DOMAIN),
            vec![
                EthernetIface {
                    target: "sy-vm1".into(),
                    mac: Some("52:54:00:00:34:11".into()),
                },
                EthernetIface {
                    target: "other0".into(),
                    mac: None,
                },
            ]
        );
        assert!(ethernet_interfaces("<domain/>").is_empty());
        assert!(ethernet_interfaces("<interface type='ethernet'><target").is_empty());
    }

    #[test]
    fn attributes_in_either_quotes_and_not_inside_other_names() {
        assert_eq!(
            attr("<target dev='sy-a' managed='no'/>", "dev").as_deref(),
            Some("sy-a")
        );
        assert_eq!(
            attr("<x mydev='a' dev=\"b\"/>", "dev").as_deref(),
            Some("b")
        );
        assert_eq!(attr("<x dev=unquoted/>", "dev"), None);
    }
}
