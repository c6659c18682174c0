//! The IPv6 section of the dnsmasq lease file, after the DHCPv4 lines, as dnsmasq writes it
//! (`lease.c`, `lease_update_file`):
//!
//! ```text
//! duid <server-duid>
//! <expiry> <iaid> <ipv6> <hostname|*> <client-duid>
//! ```
//!
//! DUIDs in colon-separated hex, the IAID in decimal, one line per live binding, sorted by
//! address. The `duid` line is written whenever DHCPv6 runs, bindings or not (dnsmasq writes
//! it whenever it has a DUID, that is whenever DHCPv6 is configured).

use std::fmt::Write;

use super::Lease6;
use crate::service::dhcp::leases::hex_colon;

/// The section for `leases` live at `now`; `name` gives each binding's hostname (the zone's
/// choice when DNS runs).
pub fn format_dnsmasq6<'a>(
    server_duid: &[u8],
    leases: impl Iterator<Item = &'a Lease6>,
    now: u64,
    name: impl Fn(&Lease6) -> Option<String>,
) -> String {
    let mut live: Vec<&Lease6> = leases.filter(|l| !l.has_expired(now)).collect();
    live.sort_by_key(|l| l.ip);
    let mut out = format!("duid {}\n", hex_colon(server_duid));
    for l in live {
        let _ = writeln!(
            out,
            "{} {} {} {} {}",
            l.expires,
            l.iaid,
            l.ip,
            name(l).as_deref().unwrap_or("*"),
            hex_colon(&l.duid)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn the_section_reads_like_dnsmasqs() {
        let l = |n: u16, expires| Lease6 {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n as u8],
            iaid: u32::from(n) + 0x100,
            ip: Ipv6Addr::new(0xfd00, 0x13, 0x31, 0, 0, 0, 0, n),
            port: 1,
            expires,
            mac: None,
            hostname: (n == 2).then(|| "vm2".to_string()),
        };
        let leases = [l(9, 2000), l(2, 3000), l(5, 50)];
        let text = format_dnsmasq6(
            &[0, 3, 0, 1, 2, 0xaa, 0, 0, 0, 1],
            leases.iter(),
            100,
            |l| l.hostname.clone(),
        );
        assert_eq!(
            text,
            "duid 00:03:00:01:02:aa:00:00:00:01\n\
             3000 258 fd00:13:31::2 vm2 00:03:00:01:02:00:00:00:00:02\n\
             2000 265 fd00:13:31::9 * 00:03:00:01:02:00:00:00:00:09\n"
        );
    }
}
