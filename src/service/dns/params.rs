//! [`DnsParams`]: the plain settings the daemon maps its TOML onto (no TOML types, no I/O).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::wire::MacAddr;

/// Default `[dns] cache_size`: entries (one per name, type and class).
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// Default `[dns] timeout_ms`: how long a forwarded query waits before SERVFAIL.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Forwarded queries in flight at once; past that new ones get SERVFAIL at once.
pub const MAX_PENDING: usize = 4_096;

/// One `[[host]]` as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    /// One lowercase DNS label.
    pub name: String,
    /// Its A record and PTR; without it the name is still reserved (a lease of this host's own
    /// MAC, or any lease when `match_hostname`, may carry it).
    pub ipv4: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    /// Its AAAA record and `ip6.arpa` PTR.
    pub ipv6: Option<Ipv6Addr>,
    /// DHCP recognises the host by the hostname it sends (`match = "hostname"`).
    pub match_hostname: bool,
}

/// The data of one `[[dns.record]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// An absolute name, lowercase, no trailing dot.
    Cname(String),
    Txt(Vec<String>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        /// An absolute name, lowercase, no trailing dot.
        target: String,
    },
}

/// A static record: `name` relative to the domain ("" is the apex, "_http._tcp" two labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRecord {
    pub name: String,
    pub value: RecordValue,
}

/// A per-domain forwarder (`[[dns.forward]]`), like dnsmasq's `server=/domain/ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRule {
    /// Lowercase, no trailing dot.
    pub domain: String,
    pub upstreams: Vec<SocketAddr>,
}

/// Everything the DNS service needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsParams {
    /// The network's domain: lowercase, no trailing dot.
    pub domain: String,
    pub subnet: Ipv4Net,
    /// The appliance's address: the zone's name server.
    pub gateway: Ipv4Addr,
    /// The appliance's IPv6 address and the /64 it is in (`subnet6`): the apex's AAAA and the
    /// `ip6.arpa` reverse zone of that prefix.
    pub ipv6: Option<(Ipv6Addr, Ipv6Net)>,
    pub hosts: Vec<DnsHost>,
    pub records: Vec<StaticRecord>,
    /// TTL of local answers (and of the SOA's negative-caching minimum).
    pub local_ttl: u32,
    pub upstreams: Vec<SocketAddr>,
    pub forwards: Vec<ForwardRule>,
    /// Cache entries; 0 disables the cache.
    pub cache_size: usize,
    pub timeout: Duration,
    pub max_pending: usize,
}

impl DnsParams {
    /// Settings for `domain` on `subnet` with no hosts, records or upstreams, defaults elsewhere.
    pub fn new(domain: &str, subnet: Ipv4Net, gateway: Ipv4Addr) -> DnsParams {
        DnsParams {
            domain: domain.to_ascii_lowercase(),
            subnet,
            gateway,
            ipv6: None,
            hosts: Vec::new(),
            records: Vec::new(),
            local_ttl: 0,
            upstreams: Vec::new(),
            forwards: Vec::new(),
            cache_size: DEFAULT_CACHE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            max_pending: MAX_PENDING,
        }
    }
}
