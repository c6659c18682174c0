//! `ip6.arpa` names (RFC 3596 §2.5) inside the network's /64: which address a name is, so the
//! zone can answer its PTR, and the SOA owner of that reverse zone.
//!
//! A name is local when its leading 16 nibbles are the /64's; then it is either a whole
//! address (32 nibbles), an inner node of the reverse tree (fewer: it exists and holds
//! nothing), or not a name of the tree at all (a label that is no nibble, too many labels:
//! NXDOMAIN). Anything outside the /64 is not local and is forwarded.

use std::net::Ipv6Addr;

use hickory_proto::rr::Name;
use ipnet::Ipv6Net;

/// What an `ip6.arpa` name inside the prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reverse6 {
    Address(Ipv6Addr),
    Inner,
    Invalid,
}

/// `lower` (lowercased) as a reverse name of `prefix`, if it is one.
pub(super) fn classify(lower: &Name, prefix: Ipv6Net) -> Option<Reverse6> {
    let labels: Vec<&[u8]> = lower.iter().collect();
    let n = labels.len();
    if n < 2 || labels[n - 1] != b"arpa" || labels[n - 2] != b"ip6" {
        return None;
    }
    // Most significant nibble first; `None` for a label that is not one hex digit.
    let nibbles: Vec<Option<u8>> = labels[..n - 2]
        .iter()
        .rev()
        .map(|l| match l {
            [c] => (*c as char).to_digit(16).map(|d| d as u8),
            _ => None,
        })
        .collect();
    let net = prefix.network().octets();
    let prefix_nibbles = usize::from(prefix.prefix_len() / 4);
    if nibbles.len() < prefix_nibbles {
        return None;
    }
    for (i, nib) in nibbles.iter().take(prefix_nibbles).enumerate() {
        let want = (net[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if *nib != Some(want) {
            return None;
        }
    }
    if nibbles.len() > 32 || nibbles.iter().any(Option::is_none) {
        return Some(Reverse6::Invalid);
    }
    if nibbles.len() < 32 {
        return Some(Reverse6::Inner);
    }
    let mut a = [0u8; 16];
    for (i, nib) in nibbles.iter().enumerate() {
        a[i / 2] |= nib.unwrap_or(0) << (if i % 2 == 0 { 4 } else { 0 });
    }
    Some(Reverse6::Address(Ipv6Addr::from(a)))
}

/// The reverse zone's apex for `prefix` (`0.0.0.0.1.3.0.0.3.1.0.0.0.0.d.f.ip6.arpa` for
/// fd00:13:31::/64).
pub(super) fn apex(prefix: Ipv6Net) -> String {
    let net = prefix.network().octets();
    let mut labels: Vec<String> = (0..usize::from(prefix.prefix_len() / 4))
        .map(|i| {
            format!(
                "{:x}",
                (net[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f
            )
        })
        .collect();
    labels.reverse();
    format!("{}.ip6.arpa", labels.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap().to_lowercase()
    }

    #[test]
    fn reverse_names_of_the_prefix() {
        let p: Ipv6Net = "fd00:13:31::/64".parse().unwrap();
        assert_eq!(apex(p), "0.0.0.0.1.3.0.0.3.1.0.0.0.0.d.f.ip6.arpa");
        let full = "b.0.0.0.1.3.e.f.f.f.0.0.4.5.0.5.0.0.0.0.1.3.0.0.3.1.0.0.0.0.d.f.ip6.arpa.";
        let want: Ipv6Addr = "fd00:13:31::5054:ff:fe31:b".parse().unwrap();
        assert_eq!(classify(&name(full), p), Some(Reverse6::Address(want)));
        assert_eq!(
            classify(&name(&full.to_uppercase()), p),
            Some(Reverse6::Address(want))
        );
        assert_eq!(
            classify(&name("0.1.3.0.0.3.1.0.0.0.0.d.f.ip6.arpa."), p),
            None,
            "shorter than the prefix: not ours to answer"
        );
        assert_eq!(
            classify(&name(&format!("{}.", apex(p))), p),
            Some(Reverse6::Inner)
        );
        assert_eq!(
            classify(&name(&format!("zz.0.{}.", apex(p))), p),
            Some(Reverse6::Invalid)
        );
        assert_eq!(
            classify(&name("0.0.0.0.1.3.0.0.3.1.0.0.0.0.d.e.ip6.arpa."), p),
            None,
            "another prefix"
        );
        assert_eq!(classify(&name("1.31.13.10.in-addr.arpa."), p), None);
    }
}
