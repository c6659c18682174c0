//! Why the DHCP server sent no reply: the caller's counters and logs name each reason.

/// Why a message got no reply. Each is a counted drop for the caller, never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Truncated, bad cookie, an option length dhcproto would assert on, or dhcproto refused it.
    Malformed,
    /// A BOOTREPLY, a non-Ethernet chaddr, or no message type: not a client message for us.
    NotClientMessage,
    /// giaddr set on a port that is not `trusted`, or giaddr outside the subnet: only a relay
    /// agent on an uplink or relay port may relay, and only for this network.
    Relayed,
    /// OFFER, ACK, NAK, LEASEQUERY and the like arriving at a server.
    UnexpectedType,
    /// The port's token bucket is empty.
    RateLimited,
    /// The port already holds its maximum of live leases.
    PortLeaseLimit,
    /// No address can be offered: no reservation, pool exhausted or absent.
    NoAddress,
    /// Too many outstanding offers.
    OffersFull,
    /// REQUEST/RELEASE/DECLINE for another server, or RELEASE/DECLINE without a server id.
    NotForUs,
    /// The message claims an identity its port may not use: on an enforcing port a `chaddr`
    /// that is not the port's host's; from any untrusted port the MAC of a host guarded on
    /// another port, or only reservations (MAC, client id, hostname) of another port's host.
    Impersonation,
    /// The lease, offer or address the message acts on belongs to another port or client:
    /// a REQUEST/RELEASE/DECLINE for a lease live on another port, a DECLINE of an address
    /// never offered to or held by the client, an INFORM naming another's address.
    NotOwner,
    /// RELEASE of a lease we do not hold, INFORM without ciaddr, REQUEST without any address.
    Ignored,
    /// A REQUEST, RELEASE or DECLINE while the lease journal cannot be written
    /// ([`DhcpServer::set_can_persist`]): nothing is acknowledged that could not be kept.
    NoJournal,
    /// dhcproto could not encode the reply (a configured option it cannot write).
    Unencodable,
}

impl DropReason {
    /// Every reason, for counter tables.
    pub const ALL: [DropReason; 14] = [
        DropReason::Malformed,
        DropReason::NotClientMessage,
        DropReason::Relayed,
        DropReason::UnexpectedType,
        DropReason::RateLimited,
        DropReason::PortLeaseLimit,
        DropReason::NoAddress,
        DropReason::OffersFull,
        DropReason::NotForUs,
        DropReason::Impersonation,
        DropReason::NotOwner,
        DropReason::Ignored,
        DropReason::NoJournal,
        DropReason::Unencodable,
    ];

    /// A stable snake_case name for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotClientMessage => "not_client_message",
            DropReason::Relayed => "relayed",
            DropReason::UnexpectedType => "unexpected_type",
            DropReason::RateLimited => "rate_limited",
            DropReason::PortLeaseLimit => "port_lease_limit",
            DropReason::NoAddress => "no_address",
            DropReason::OffersFull => "offers_full",
            DropReason::NotForUs => "not_for_us",
            DropReason::Impersonation => "impersonation",
            DropReason::NotOwner => "not_owner",
            DropReason::Ignored => "ignored",
            DropReason::NoJournal => "no_journal",
            DropReason::Unencodable => "unencodable",
        }
    }
}
