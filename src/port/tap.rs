//! Tap ports: the switch holds the tap's fd, the tap's netdev is the other end of the cable.
//!
//! # Theory of operation
//!
//! [`TapPort::open`] attaches a fresh `/dev/net/tun` fd to the netdev NAME with `IFF_TAP |
//! IFF_NO_PI | IFF_VNET_HDR`, creating the netdev when it does not exist, and negotiates a 12-byte
//! virtio-net header (`crate::wire::VNET_HDR_LEN`). Every frame read from or written to the fd
//! is that header followed by an Ethernet frame; with offloads off (no `TUNSETOFFLOAD` yet) the
//! kernel writes an all-zero header and a complete frame, and an all-zero header is what the
//! switch writes for a plain frame. [`TapPort::recv`] and [`TapPort::send`] pass bytes through.
//!
//! # Offloads
//!
//! `open` then turns on `TUNSETOFFLOAD` with checksum offload and TCP segmentation (`TUN_F_CSUM |
//! TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN`), plus UDP segmentation (`TUN_F_USO4 | TUN_F_USO6`)
//! where the kernel has it (6.2+; probed, and dropped on `EINVAL`). From then on the netdev's
//! stack hands the switch 64 KiB GSO super-frames and frames with partial checksums, described by
//! the virtio-net header, instead of cutting and summing them itself: one read and one write move
//! 64 KiB. In the other direction a tap takes such frames whatever it negotiated (the kernel
//! segments or completes them if its own path needs it), so every tap
//! [`accepts_offloads`](TapPort::accepts_offloads). Ports that cannot take them get plain frames
//! from `crate::wire::gso` on the daemon's egress path. If the kernel refuses offloads altogether
//! the port runs without them (plain frames, as before) and says so in the log.
//!
//! The netdev's `txqueuelen` (the tun ring the switch drains) is raised from 1000 to
//! [`TX_QUEUE_LEN`]: the kernel drops what arrives while the ring is full (the netdev's
//! `tx_dropped`, [`TapPort::kernel_tx_dropped`], which the daemon logs at exit), and a deeper
//! ring absorbs the moments a worker spends on another port.
//!
//! The netdev then lives where the caller puts it: in the current namespace (the host's leg on
//! the network, [`TapPort::bring_up`]) or moved into a [`Netns`] ([`TapPort::plug_into`]), where
//! it keeps its name and becomes that namespace "host"'s NIC, with the MAC and IPv4 address the
//! lab gives it. Moving a netdev takes it down and may change its ifindex, so every operation
//! looks the index up again by name, through a netlink socket in the netdev's current namespace.
//!
//! # Multi-queue taps
//!
//! With `[switch] multi_queue = true`, a tap the port creates is a multi-queue tap
//! ([`TapPort::open_queues`]): `IFF_MULTI_QUEUE` on one `/dev/net/tun` fd per worker, each
//! attached to the same netdev. The kernel's tun driver picks a queue per flow: the queue the
//! switch last wrote the flow's frames to (its flow table), else by the flow's hash. The daemon
//! gives queue `i` to a different worker, and each worker writes through its own queue
//! ([`PortIo::send_on`]), so both directions of a flow stay with one worker and no two workers
//! write one fd. A tap that exists already (a persistent one, or one made ahead of time) is
//! attached single-queue as before, and so is a `persist = true` port's.
//!
//! # Who removes what
//!
//! - A tap this port created is not persistent: closing the fd (dropping the port) removes it,
//!   wherever it has been moved to. The port never sets `IFF_PERSIST` on it.
//! - A tap that existed before can only be attached if it is persistent (a non-persistent one
//!   exists only while another fd holds it: `EBUSY`). It survives the port; if the port moved it
//!   into a namespace, dropping the port moves it back to the namespace it was found in, so it is
//!   not destroyed with a lab namespace. Its MTU, MAC, address and state are not restored.
//!
//! - A `persist = true` port ([`TapPort::open_persistent`]) makes a tap it creates persistent
//!   (`TUNSETPERSIST`) and never removes or moves anything: the netdev stays where the port put
//!   it, with its MAC, address and state, and the daemon leaves the namespace in place too. A
//!   restarted daemon finds the netdev in that namespace and attaches to it there: `TUNSETIFF`
//!   looks names up in the opener's namespace, so the fd is opened on a helper thread that has
//!   entered it (`sys::tun_attach_in_netns`). The host sees its link lose carrier while no
//!   daemon runs, and keep its name, address and routes.
//!
//! The ifindex lookup before attaching only sharpens the error message (`EINVAL` from an existing
//! non-tap device); whether the port created the tap is read from the kernel afterwards
//! (`IFF_PERSIST` in `TUNGETIFF`), so a race with another creator cannot make the port delete a
//! tap it did not create.

use std::ffi::{c_int, c_uint};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::netlink::Netlink;
use super::{sys, validate_ifname, Netns, PortError, PortIo, RxQueue};
use crate::control::config::{AddressMode, Config, PortConfig, TapConfig};
use crate::wire::{MacAddr, VNET_HDR_LEN};

/// Smallest MTU a tap accepts (the IPv4 minimum).
pub const MIN_MTU: u32 = 68;
/// Largest MTU a tap accepts: 65535 minus the Ethernet header.
pub const MAX_MTU: u32 = 65_535 - 14;
/// The tap netdev's `txqueuelen`: the tun ring between the netdev and the switch.
pub const TX_QUEUE_LEN: u32 = 4096;

/// Checksum offload and TCP segmentation: asked of every tap.
const OFFLOADS_TCP: c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// UDP segmentation (Linux 6.2+): asked for too, dropped if the kernel refuses it.
const OFFLOADS_UDP: c_uint = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// A tap device whose fd the switch holds.
#[derive(Debug)]
pub struct TapPort {
    ifname: String,
    fd: OwnedFd,
    /// A multi-queue tap's other queues (`IFF_MULTI_QUEUE`): queue `i + 1` of the netdev.
    /// Empty for a single-queue tap.
    more_queues: Vec<OwnedFd>,
    created: bool,
    /// The namespace the tap was found or created in.
    home: OwnedFd,
    /// The namespace `plug_into` moved the netdev to: its name, and an fd that keeps it
    /// reachable (and alive) for as long as the port exists.
    plugged: Option<(String, OwnedFd)>,
    /// The `TUN_F_*` flags the kernel accepted (0: plain frames only).
    offloads: c_uint,
    /// `persist = true`: the tap outlives the port where it is; drop neither removes nor moves it.
    persist: bool,
}

impl TapPort {
    /// Opens the tap `ifname` in the current network namespace, creating it if there is none,
    /// with a 12-byte virtio-net header, and sets its MTU.
    pub fn open(ifname: &str, mtu: u32) -> Result<TapPort, PortError> {
        TapPort::open_queues(ifname, mtu, 1)
    }

    /// [`open`](Self::open) with `queues` queues: a tap this port creates with `queues > 1` is a
    /// multi-queue tap (`IFF_MULTI_QUEUE`, one `/dev/net/tun` fd per queue, the kernel choosing
    /// a queue per flow). A tap that already exists is attached with one queue, as before.
    pub fn open_queues(ifname: &str, mtu: u32, queues: usize) -> Result<TapPort, PortError> {
        validate_ifname(ifname)?;
        let tap_err = |action: &str, err: io::Error| PortError::Tap {
            ifname: ifname.to_string(),
            action: action.to_string(),
            err,
        };
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(PortError::InvalidMtu {
                ifname: ifname.to_string(),
                mtu,
            });
        }
        let existed = sys::if_nametoindex(ifname).is_ok();
        let queues = if existed {
            1
        } else {
            queues.clamp(1, super::MAX_QUEUES)
        };
        let flags = if queues > 1 {
            sys::TAP_FLAGS | libc::IFF_MULTI_QUEUE
        } else {
            sys::TAP_FLAGS
        };
        let fd = sys::open_tun().map_err(|err| PortError::TunDevice {
            ifname: ifname.to_string(),
            err,
        })?;
        let name =
            sys::tun_set_iff(fd.as_fd(), ifname, flags).map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => PortError::TapBusy {
                    ifname: ifname.to_string(),
                },
                Some(libc::EINVAL) if existed => PortError::NotATap {
                    ifname: ifname.to_string(),
                },
                _ => tap_err("create or attach it (TUNSETIFF)", e),
            })?;
        let info = sys::tun_get_iff(fd.as_fd()).map_err(|e| tap_err("read its flags", e))?;
        let mut more_queues = Vec::with_capacity(queues - 1);
        for q in 1..queues {
            let qfd = sys::open_tun().map_err(|err| PortError::TunDevice {
                ifname: ifname.to_string(),
                err,
            })?;
            sys::tun_set_iff(qfd.as_fd(), &name, flags)
                .map_err(|e| tap_err(&format!("attach queue {q} (TUNSETIFF)"), e))?;
            more_queues.push(qfd);
        }
        let home = sys::open_netns(Path::new(sys::THREAD_NETNS))
            .map_err(|e| tap_err("open the current network namespace", e))?;
        // From here on, dropping `port` closes the fd, which removes a tap we created.
        let port = TapPort {
            ifname: name,
            fd,
            more_queues,
            created: !info.is_persistent(),
            home,
            plugged: None,
            offloads: 0,
            persist: false,
        };
        port.set_up_fd(mtu)
    }

    /// Opens the tap of a `persist = true` port. If `ns` is given and the netdev `ifname` is
    /// already in it (left there by an earlier run), attaches to it inside `ns`: the port is
    /// then already plugged, and [`plug_into`](Self::plug_into) the same namespace only
    /// configures it. Otherwise it opens the tap here like [`open`](Self::open) and makes it
    /// persistent. Either way, dropping the port leaves the netdev where it is.
    pub fn open_persistent(
        ifname: &str,
        mtu: u32,
        ns: Option<&Netns>,
    ) -> Result<TapPort, PortError> {
        validate_ifname(ifname)?;
        let tap_err = |action: &str, err: io::Error| PortError::Tap {
            ifname: ifname.to_string(),
            action: action.to_string(),
            err,
        };
        let there = match ns {
            Some(ns) => Netlink::open_in(ns.fd())
                .and_then(|mut nl| nl.link_index(ifname))
                .is_ok()
                .then_some(ns),
            None => None,
        };
        let Some(ns) = there else {
            let mut port = TapPort::open(ifname, mtu)?;
            sys::tun_set_persist(port.fd(), true)
                .map_err(|e| tap_err("make it persistent (TUNSETPERSIST)", e))?;
            port.persist = true;
            return Ok(port);
        };
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(PortError::InvalidMtu {
                ifname: ifname.to_string(),
                mtu,
            });
        }
        let (fd, name) =
            sys::tun_attach_in_netns(ns.fd(), ifname, sys::TAP_FLAGS).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EBUSY) => PortError::TapBusy {
                        ifname: ifname.to_string(),
                    },
                    Some(libc::EINVAL) => PortError::NotATap {
                        ifname: ifname.to_string(),
                    },
                    _ => tap_err("attach it in its namespace (TUNSETIFF)", e),
                }
            })?;
        let home = sys::open_netns(Path::new(sys::THREAD_NETNS))
            .map_err(|e| tap_err("open the current network namespace", e))?;
        let ns_fd = ns
            .fd()
            .try_clone_to_owned()
            .map_err(|e| tap_err("keep its namespace open", e))?;
        let port = TapPort {
            ifname: name,
            fd,
            more_queues: Vec::new(),
            created: false,
            home,
            plugged: Some((ns.name().to_string(), ns_fd)),
            offloads: 0,
            persist: true,
        };
        port.set_up_fd(mtu)
    }

    /// Sets the virtio-net header size, the offloads, the MTU and the txqueuelen of a freshly
    /// attached fd, wherever its netdev is.
    fn set_up_fd(mut self, mtu: u32) -> Result<TapPort, PortError> {
        let hdr_len = VNET_HDR_LEN as c_int;
        sys::tun_set_vnet_hdr_size(self.fd(), hdr_len)
            .map_err(|e| self.tap_err("set the virtio-net header size", e))?;
        self.offloads = negotiate_offloads(&self);
        let (mut nl, ifindex) = self.netlink_and_index()?;
        match nl.set_link(ifindex, Some(mtu), None, None) {
            Ok(()) => {}
            // A daemon without CAP_NET_ADMIN on a tap made ahead of time: fine if whoever made
            // it gave it the MTU the config asks for.
            Err(e) if is_eperm(&e) && self.current_state().map(|l| l.mtu) == Some(mtu) => {}
            Err(e) => {
                let action = format!(
                    "set its MTU to {mtu}{}",
                    if is_eperm(&e) {
                        format!(
                            " (without CAP_NET_ADMIN, make the tap with that MTU ahead of \
                                 time: ip link set {} mtu {mtu})",
                            self.ifname
                        )
                    } else {
                        String::new()
                    }
                );
                return Err(self.tap_err(&action, e));
            }
        }
        match nl.set_tx_queue_len(ifindex, TX_QUEUE_LEN) {
            Ok(()) => {}
            Err(e)
                if is_eperm(&e)
                    && self.current_state().map(|l| l.tx_queue_len) == Some(TX_QUEUE_LEN) => {}
            Err(e) if is_eperm(&e) => {
                tracing::warn!(tap = %self.ifname, "cannot set txqueuelen {TX_QUEUE_LEN} without \
                    CAP_NET_ADMIN; the tap keeps its own (ip link set {} txqueuelen \
                    {TX_QUEUE_LEN} ahead of time)", self.ifname);
            }
            Err(e) => return Err(self.tap_err(&format!("set its txqueuelen to {TX_QUEUE_LEN}"), e)),
        }
        Ok(self)
    }

    /// The MTU, up state and txqueuelen of a netdev in the daemon's own namespace, read
    /// without privilege; `None` for one moved elsewhere or on error.
    fn current_state(&self) -> Option<sys::LinkState> {
        if self.plugged.is_some() {
            return None;
        }
        sys::link_state(&self.ifname).ok()
    }

    /// Whether the tap outlives this port where it is (`persist = true`).
    pub fn is_persistent(&self) -> bool {
        self.persist
    }

    /// The `TUN_F_*` offloads the kernel accepted: what frames read from this tap may need
    /// (GSO super-frames, partial checksums). 0 if it refused them all.
    pub fn offloads(&self) -> c_uint {
        self.offloads
    }

    /// Frames the kernel dropped at this tap's ring because the switch had not read them yet
    /// (the netdev's `tx_dropped`, from `/proc/net/dev` in the namespace the netdev is in).
    pub fn kernel_tx_dropped(&self) -> io::Result<u64> {
        // The home namespace is the daemon's own: read there without entering it (no
        // CAP_SYS_ADMIN needed once privileges are dropped).
        let table = match &self.plugged {
            Some((_, ns)) => sys::proc_net_dev_in(ns.as_fd())?,
            None => std::fs::read_to_string("/proc/thread-self/net/dev")?,
        };
        tx_dropped_of(&table, &self.ifname).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no row for {} in /proc/net/dev", self.ifname),
            )
        })
    }

    /// Whether frames with GSO or partial-checksum metadata in their virtio-net header may be
    /// written to this port as they are. Always true for a tap with a virtio-net header.
    pub fn accepts_offloads(&self) -> bool {
        true
    }

    /// Moves the netdev into `ns` (it keeps its name), then, inside `ns`, sets its MAC (if
    /// given), brings it up and adds the IPv4 address (if given).
    pub fn plug_into(
        &mut self,
        ns: &Netns,
        mac: Option<MacAddr>,
        ipv4: Option<(Ipv4Addr, u8)>,
    ) -> Result<(), PortError> {
        if let Some(mac) = mac.filter(|m| !m.is_valid_source()) {
            return Err(PortError::InvalidMac {
                ifname: self.ifname.clone(),
                mac,
            });
        }
        let plug_err = |action: &str, err: io::Error| PortError::Plug {
            ifname: self.ifname.clone(),
            netns: ns.name().to_string(),
            action: action.to_string(),
            err,
        };
        // A persistent tap found in `ns` by `open_persistent` is there already.
        if self.netns() != Some(ns.name()) {
            let (mut here, ifindex) = self.netlink_and_index()?;
            here.move_link_to_netns(ifindex, ns.fd())
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EEXIST) => PortError::NameTaken {
                        ifname: self.ifname.clone(),
                        netns: ns.name().to_string(),
                    },
                    _ => plug_err("move it into the netns", e),
                })?;
            let ns_fd = ns
                .fd()
                .try_clone_to_owned()
                .map_err(|e| plug_err("keep the netns open", e))?;
            self.plugged = Some((ns.name().to_string(), ns_fd));
        }

        let mut there =
            Netlink::open_in(ns.fd()).map_err(|e| plug_err("open a netlink socket", e))?;
        let ifindex = there
            .link_index(&self.ifname)
            .map_err(|e| plug_err("find its ifindex", e))?;
        let action = match mac {
            Some(mac) => format!("set its MAC to {mac} and bring it up"),
            None => "bring it up".to_string(),
        };
        there
            .set_link(ifindex, None, mac, Some(true))
            .map_err(|e| plug_err(&action, e))?;
        if let Some((addr, prefix_len)) = ipv4 {
            there
                .add_ipv4_addr(ifindex, addr, prefix_len)
                .map_err(|e| plug_err(&format!("add address {addr}/{prefix_len}"), e))?;
        }
        Ok(())
    }

    /// Brings the netdev up where it is (for a tap that stays in the switch's namespace).
    pub fn bring_up(&self) -> Result<(), PortError> {
        let (mut nl, ifindex) = self.netlink_and_index()?;
        match nl.set_link(ifindex, None, None, Some(true)) {
            // Without CAP_NET_ADMIN: fine if it was brought up ahead of time.
            Err(e) if is_eperm(&e) && self.current_state().is_some_and(|l| l.up) => Ok(()),
            Err(e) if is_eperm(&e) => Err(self.tap_err(
                &format!(
                    "bring it up (without CAP_NET_ADMIN, bring it up ahead of time: ip link set \
                     {} up)",
                    self.ifname
                ),
                e,
            )),
            r => r.map_err(|e| self.tap_err("bring it up", e)),
        }
    }

    /// Adds an IPv4 address to the netdev where it is (a host port's address, in the switch's
    /// namespace).
    pub fn add_ipv4(&self, addr: Ipv4Addr, prefix_len: u8) -> Result<(), PortError> {
        let (mut nl, ifindex) = self.netlink_and_index()?;
        nl.add_ipv4_addr(ifindex, addr, prefix_len)
            .map_err(|e| self.tap_err(&format!("add address {addr}/{prefix_len}"), e))
    }

    /// A netlink socket where the netdev is now, and the netdev's index there.
    fn netlink_and_index(&self) -> Result<(Netlink, u32), PortError> {
        let mut nl = self
            .netlink()
            .map_err(|e| self.tap_err("open a netlink socket", e))?;
        let ifindex = nl
            .link_index(&self.ifname)
            .map_err(|e| self.tap_err("find its ifindex", e))?;
        Ok((nl, ifindex))
    }

    /// A netlink socket in the namespace the netdev is in now. Home is the caller's own
    /// namespace (no thread of the daemon stays in another), so no `setns` (and no
    /// CAP_SYS_ADMIN) is needed for a tap that was not moved.
    fn netlink(&self) -> io::Result<Netlink> {
        match &self.plugged {
            Some((_, ns)) => Netlink::open_in(ns.as_fd()),
            None => Netlink::open(),
        }
    }

    fn tap_err(&self, action: &str, err: io::Error) -> PortError {
        PortError::Tap {
            ifname: self.ifname.clone(),
            action: action.to_string(),
            err,
        }
    }

    /// The netdev's name (the same in every namespace it is moved to).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The namespace `plug_into` moved the netdev to, if any.
    pub fn netns(&self) -> Option<&str> {
        self.plugged.as_ref().map(|(name, _)| name.as_str())
    }

    /// Whether this port created the tap, and so removes it when dropped (never when persistent).
    pub fn is_owned(&self) -> bool {
        self.created && !self.persist
    }

    /// The tap fd (non-blocking), for epoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads one virtio-net header plus frame; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.fd.as_fd(), buf)
    }

    /// How many queues the tap has (1 unless it was created multi-queue).
    pub fn queues(&self) -> usize {
        1 + self.more_queues.len()
    }

    /// The fd of queue `q` (queue 0 for one out of range).
    fn queue_fd(&self, q: usize) -> BorrowedFd<'_> {
        match q.checked_sub(1).and_then(|i| self.more_queues.get(i)) {
            Some(fd) => fd.as_fd(),
            None => self.fd.as_fd(),
        }
    }

    /// Writes one virtio-net header plus frame.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.fd.as_fd(), buf)
    }
}

impl TapPort {
    /// Opens (or creates) the tap of port `p` of `config` and configures it: plugged into
    /// `netns` with the host's MAC and address if it lives in one, else brought up with its
    /// `host_address`. A persistent tap keeps its namespace after the daemon. `queues` is the
    /// number of queues a tap it creates gets (the workers', with `[switch] multi_queue`).
    pub fn from_config(
        config: &Config,
        p: &PortConfig,
        tap_cfg: &TapConfig,
        netns: Option<&Netns>,
        queues: usize,
    ) -> Result<TapPort, PortError> {
        let host = p.host.map(|h| &config.hosts[h]);
        // A persistent tap and its namespace outlive the daemon; a restart finds the tap there.
        let mut tap = if tap_cfg.persist {
            let tap = TapPort::open_persistent(&tap_cfg.ifname, p.mtu, netns)?;
            if let Some(ns) = netns {
                ns.keep();
            }
            tap
        } else {
            TapPort::open_queues(&tap_cfg.ifname, p.mtu, queues)?
        };
        match (&tap_cfg.netns, netns) {
            (Some(ns_name), Some(ns)) => {
                let ipv4 = match tap_cfg.address {
                    AddressMode::Static => host
                        .and_then(|h| h.ipv4)
                        .map(|a| (a, config.network.subnet.prefix_len())),
                    AddressMode::None => None,
                };
                tap.plug_into(ns, host.and_then(|h| h.mac), ipv4)?;
                tracing::info!(
                    port = %p.name,
                    ifname = %tap_cfg.ifname,
                    netns = %ns_name,
                    mac = %host.and_then(|h| h.mac).map_or_else(|| "-".into(), |m| m.to_string()),
                    ipv4 = %ipv4.map(|(a, l)| format!("{a}/{l}")).unwrap_or_else(|| "-".into()),
                    persist = tap.is_persistent(),
                    queues = tap.queues(),
                    "port up: tap plugged into namespace"
                );
            }
            _ => {
                tap.bring_up()?;
                if let Some(addr) = tap_cfg.host_address {
                    tap.add_ipv4(addr, config.network.subnet.prefix_len())?;
                }
                tracing::info!(port = %p.name, ifname = %tap_cfg.ifname,
                    host_address = %tap_cfg.host_address.map_or_else(|| "-".into(), |a| a.to_string()),
                    persist = tap.is_persistent(), queues = tap.queues(), "port up: tap");
            }
        }
        Ok(tap)
    }
}

impl PortIo for TapPort {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        (0..self.queues()).map(|q| self.queue_fd(q)).collect()
    }

    /// Queue `rxq`'s fd; [`RxQueue::ANY`] reads queue 0.
    fn recv(&self, rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.queue_fd(usize::from(rxq.0)), buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        TapPort::send(self, buf)
    }

    fn queues(&self) -> usize {
        TapPort::queues(self)
    }

    /// A write to queue `queue` also tells the kernel to send the flow's replies there (the
    /// tun driver's flow table, which `tun_automq_select_queue` consults).
    fn send_on(&self, queue: usize, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.queue_fd(queue), buf)
    }

    fn offloads(&self) -> bool {
        self.accepts_offloads()
    }

    fn kernel_tx_dropped(&self) -> Option<io::Result<u64>> {
        Some(TapPort::kernel_tx_dropped(self))
    }
}

fn is_eperm(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPERM)
}

/// The `tx_dropped` column of `ifname`'s row in a `/proc/net/dev` table: after the name, 8 rx
/// then 8 tx counters (bytes, packets, errs, drop, ...), so tx drop is the 12th number.
fn tx_dropped_of(table: &str, ifname: &str) -> Option<u64> {
    table.lines().find_map(|line| {
        let (name, counters) = line.split_once(':')?;
        if name.trim() != ifname {
            return None;
        }
        counters.split_whitespace().nth(11)?.parse().ok()
    })
}

/// Turns on TSO and checksum offload, and USO where the kernel has it; returns what it took.
fn negotiate_offloads(port: &TapPort) -> c_uint {
    for flags in [OFFLOADS_TCP | OFFLOADS_UDP, OFFLOADS_TCP] {
        match sys::tun_set_offload(port.fd(), flags) {
            Ok(()) => return flags,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
            Err(e) => {
                tracing::warn!(tap = %port.ifname, error = %e,
                    "TUNSETOFFLOAD failed; the port runs without offloads (slower)");
                return 0;
            }
        }
    }
    tracing::warn!(tap = %port.ifname, "the kernel refuses TSO on taps; the port runs without offloads (slower)");
    0
}

impl AsFd for TapPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for TapPort {
    /// A created tap goes away when `fd` closes, after this. A found one that was moved into a
    /// namespace is moved back home first. A persistent one stays where it is.
    fn drop(&mut self) {
        let (false, false, Some((netns, ns))) = (self.persist, self.created, &self.plugged) else {
            return;
        };
        let moved = Netlink::open_in(ns.as_fd()).and_then(|mut nl| {
            let ifindex = nl.link_index(&self.ifname)?;
            nl.move_link_to_netns(ifindex, self.home.as_fd())
        });
        if let Err(e) = moved {
            tracing::warn!(tap = %self.ifname, %netns, error = %e, "cannot move the tap back home");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tx_dropped_of;

    /// Captured from this machine's `/proc/net/dev` (a tap under load, and lo).
    const PROC_NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
sybq-a:    1746      21    0    0    0     0          0         0 11455976  190930    0 379890    0     0       0          0
";

    #[test]
    fn tx_dropped_is_the_twelfth_counter() {
        assert_eq!(tx_dropped_of(PROC_NET_DEV, "sybq-a"), Some(379_890));
        assert_eq!(tx_dropped_of(PROC_NET_DEV, "lo"), Some(0));
        assert_eq!(
            tx_dropped_of(PROC_NET_DEV, "sybq"),
            None,
            "whole names only"
        );
        assert_eq!(tx_dropped_of("sybq-a: 1 2 3", "sybq-a"), None, "short row");
    }
}
