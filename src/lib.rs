//! switchyard: a userspace L2 switch with a DHCP/DNS appliance built in.
//!
//! # Theory of operation
//!
//! The switch owns the file descriptors of its ports and moves Ethernet frames between them.
//! One function decides each frame's fate, in named stages, in the Linux bridge's order:
//!
//! ```text
//! port rx (batch) ─► parse ─► ingress checks ─► guard ─► learn ─► lookup ─► egress
//!   port/             wire/    switch/forward   guard.rs   fdb      fdb      should_deliver: not the
//!   (tap fd, epoll)            (drop + count by DropReason)                  ingress, up, isolation,
//!                                                                            MTU; unicast or flood
//! ```
//!
//! The appliance (ARP, ping, DHCP and DNS for the gateway address) is a port of the switch too: its
//! MAC is a static FDB entry, it receives floods, and the daemon hands it the frames it wants on
//! a bounded queue; its replies leave through the port the request came in on. (A UDP DNS
//! query whose answer the DNS memo already holds is answered by the worker that read it, with
//! the same bytes, and never queued: see `daemon::dns::WorkerDns`.)
//!
//! # Layers, and the dependency rule
//!
//! - [`wire`]: byte views of what the switch parses (Ethernet, the virtio-net header, one view
//!   per L3/L4 header: `wire::ipv4`, `wire::udp`, `wire::icmp`, `wire::tcp`), the internet
//!   checksum once (`wire::checksum`), the `MacAddr` type, and `wire::gso`: software
//!   segmentation and checksum completion of the GSO super-frames taps hand over, for ports
//!   that cannot take them. Nothing else parses an IPv4 or UDP header. No I/O.
//! - [`switch`]: the pure data plane. [`switch::Switch::process`] takes a frame, its ingress port
//!   and `now`, and returns a [`switch::Verdict`]; it makes no syscall and reads no clock, so it
//!   is tested without root and benchmarked without I/O. The worker's form of it,
//!   `decide_vnet`, returns a [`switch::Decision`]: the verdict with the frame's VLAN and a
//!   [`switch::FrameSummary`] of what it read of the headers (MTU length, `wire::gso::Offload`),
//!   which egress uses instead of parsing the frame again. The FDB and counters live here; the
//!   FDB's two memory helpers (a zeroed atomic table, a prefetch hint) come through `mem`, a
//!   neutral name for safe wrappers whose unchecked bodies sit in `port/sys.rs`.
//! - [`port`]: the I/O seam: the [`port::PortIo`] trait (fds for epoll, `recv` per queue,
//!   `send`, offloads, link state, tick; teardown is `Drop`), one file per kind implementing it
//!   and building itself from its config section: taps, AF_PACKET sockets on existing netdevs,
//!   QEMU's stream/dgram unix sockets. Also network namespaces, rtnetlink, epoll and signals.
//!   `port/sys.rs` is the one file that allows `unsafe_code` (each block with a SAFETY comment).
//! - [`service`]: the appliance's services, sans-IO: the DHCPv4 server (`service::dhcp`), its
//!   lease table and its journal format; the DHCPv6 server and its journal (`service::dhcp6`);
//!   NDP, ping6 and router advertisements (`service::ndp`); the DNS zone, cache, forwarder and
//!   TCP responder (`service::dns`). Replies are values; the daemon sends them.
//! - [`control`]: the configuration (TOML → validated [`control::config::Config`]: the serde
//!   mirror in `config/raw.rs`, `file:line` diagnostics in `config/diag.rs`, one module per
//!   section's checks; and the live changes to it), the control protocol (typed JSON lines with a version,
//!   [`control::protocol`], pure) and the client half of the CLI ([`control::cli`]; and
//!   [`control::top`], whose live view reads the client's own clock for its rates: the one
//!   clock outside `daemon`, and no part of the data path); finding a running network
//!   ([`control::locate`]: the registry daemons write in /run/switchyard), the live changes
//!   that last ([`control::live_state`]: the list in the state directory), the host's
//!   resolvers ([`control::resolv`]), and libvirt's side ([`control::libvirt`]: the qemu hook's
//!   XML; [`control::libvirt_import`]: `virsh net-dumpxml` to a config).
//! - [`daemon`]: threads, epoll loops, signals and the clock: the only module that reads time
//!   and owns fds. `daemon::run` reads as its phases (bind, build, services, workers, main loop,
//!   shutdown); `daemon/table.rs` is the port table, `daemon/build.rs` builds ports and switch
//!   from a config, `daemon/worker.rs` is the epoll loop that calls only the `PortIo` seam. It
//!   builds the ports, runs one worker per core over their share of them, serves
//!   the control socket and the metrics endpoint, installs the table of a `forward` mode (by
//!   running `nft`, and `iptables` where its FORWARD chain exists), replays the live state at
//!   start and reload (`daemon/live_state.rs`), reloads on SIGHUP, and tears everything down
//!   on SIGINT/SIGTERM.
//!
//! `switch`, `service`, `wire` and `control` import nothing from `port` or `daemon` (the lease
//! journals' file I/O, plain `std::fs`, DHCPv4's and DHCPv6's, is the one exception in
//! `service`); `port` may read
//! `control::config`'s plain data types, since each kind builds itself from its section.
//!
//! # Threat model (so far)
//!
//! Every port's peer is untrusted: any byte string may arrive. Malformed frames are counted
//! drops, never errors that travel up; every table is bounded (the FDB globally and per port, so
//! one port cannot evict another's entries); a full egress queue is a counted drop, never a
//! blocked worker. Every port bound to a host is guarded ([`switch::PortPolicy`], checked before
//! learning): the host may only use its own MACs and addresses, may not act as a DHCP server or
//! IPv6 router, and a header the guard cannot parse is a drop, never a pass.
//!
//! The control socket is a second door: only root and the control group get through (file
//! mode, then SO_PEERCRED), and what they send is untrusted too: a bad or oversized request is
//! an error reply, never a crash or a stalled daemon.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod control;
pub mod daemon;
pub(crate) mod mem;
pub mod port;
pub mod service;
pub mod switch;
#[cfg(test)]
pub(crate) mod test_dir;
pub mod wire;
