//! The arguments of `host add`, `allow` and `disallow` as the control protocol carries them
//! (strings), parsed into the config's types: shared by the control socket and the live state's
//! replay (`daemon::live_state`).

use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::{fail, Failure};
use crate::control::config::NewHost;
use crate::control::protocol::{ErrorKind, HostAdd};
use crate::wire::MacAddr;

/// `host add`'s arguments, parsed.
pub(in crate::daemon) fn new_host(add: &HostAdd) -> Result<NewHost, Failure> {
    let HostAdd {
        name,
        mac,
        ipv4,
        extra_ipv4,
        port,
    } = add;
    Ok(NewHost {
        name: name.clone(),
        mac: mac.parse::<MacAddr>().map_err(|_| {
            (
                ErrorKind::BadArgument,
                format!("mac {mac:?} is not a MAC address (write 52:54:00:12:34:56)"),
            )
        })?,
        ipv4: ipv4.parse::<Ipv4Addr>().map_err(|_| {
            (
                ErrorKind::BadArgument,
                format!("ipv4 {ipv4:?} is not an IPv4 address"),
            )
        })?,
        extra_ipv4: extra_ipv4
            .iter()
            .map(|s| match parse_net(s)? {
                IpNet::V4(n) => Ok(n),
                IpNet::V6(_) => fail(
                    ErrorKind::BadArgument,
                    format!("extra-ipv4 {s:?} is an IPv6 prefix"),
                ),
            })
            .collect::<Result<_, _>>()?,
        port: port.clone(),
    })
}

/// `ADDR` or `ADDR/LEN`, IPv4 or IPv6.
pub(in crate::daemon) fn parse_net(text: &str) -> Result<IpNet, Failure> {
    if let Ok(addr) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    text.parse::<IpNet>().map_err(|_| {
        (
            ErrorKind::BadArgument,
            format!("{text:?} is neither an address nor a prefix (write ADDR or ADDR/LEN)"),
        )
    })
}
