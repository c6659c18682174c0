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
//! The netdev then lives where the caller puts it: in the current namespace (the host's leg on
//! the network, [`TapPort::bring_up`]) or moved into a [`Netns`] ([`TapPort::plug_into`]), where
//! it keeps its name and becomes that namespace "host"'s NIC, with the MAC and IPv4 address the
//! lab gives it. Moving a netdev takes it down and may change its ifindex, so every operation
//! looks the index up again by name, through a netlink socket in the netdev's current namespace.
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
//! The ifindex lookup before attaching only sharpens the error message (`EINVAL` from an existing
//! non-tap device); whether the port created the tap is read from the kernel afterwards
//! (`IFF_PERSIST` in `TUNGETIFF`), so a race with another creator cannot make the port delete a
//! tap it did not create.

use std::ffi::c_int;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::netlink::Netlink;
use super::{sys, validate_ifname, Netns, PortError};
use crate::wire::{MacAddr, VNET_HDR_LEN};

/// Smallest MTU a tap accepts (the IPv4 minimum).
pub const MIN_MTU: u32 = 68;
/// Largest MTU a tap accepts: 65535 minus the Ethernet header.
pub const MAX_MTU: u32 = 65_535 - 14;

/// A tap device whose fd the switch holds.
#[derive(Debug)]
pub struct TapPort {
    ifname: String,
    fd: OwnedFd,
    created: bool,
    /// The namespace the tap was found or created in.
    home: OwnedFd,
    /// The namespace `plug_into` moved the netdev to: its name, and an fd that keeps it
    /// reachable (and alive) for as long as the port exists.
    plugged: Option<(String, OwnedFd)>,
}

impl TapPort {
    /// Opens the tap `ifname` in the current network namespace, creating it if there is none,
    /// with a 12-byte virtio-net header, and sets its MTU.
    pub fn open(ifname: &str, mtu: u32) -> Result<TapPort, PortError> {
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
        let fd = sys::open_tun().map_err(|err| PortError::TunDevice {
            ifname: ifname.to_string(),
            err,
        })?;
        let name = sys::tun_set_iff(fd.as_fd(), ifname, sys::TAP_FLAGS).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EBUSY) => PortError::TapBusy {
                    ifname: ifname.to_string(),
                },
                Some(libc::EINVAL) if existed => PortError::NotATap {
                    ifname: ifname.to_string(),
                },
                _ => tap_err("create or attach it (TUNSETIFF)", e),
            }
        })?;
        let info = sys::tun_get_iff(fd.as_fd()).map_err(|e| tap_err("read its flags", e))?;
        let home = sys::open_netns(Path::new(sys::THREAD_NETNS))
            .map_err(|e| tap_err("open the current network namespace", e))?;
        // From here on, dropping `port` closes the fd, which removes a tap we created.
        let port = TapPort {
            ifname: name,
            fd,
            created: !info.is_persistent(),
            home,
            plugged: None,
        };
        let hdr_len = VNET_HDR_LEN as c_int;
        sys::tun_set_vnet_hdr_size(port.fd(), hdr_len)
            .map_err(|e| tap_err("set the virtio-net header size", e))?;
        let ifindex =
            sys::if_nametoindex(&port.ifname).map_err(|e| tap_err("find its ifindex", e))?;
        Netlink::open()
            .and_then(|mut nl| nl.set_link(ifindex, Some(mtu), None, None))
            .map_err(|e| tap_err(&format!("set its MTU to {mtu}"), e))?;
        Ok(port)
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
        let mut here = self
            .netlink()
            .map_err(|e| self.tap_err("open a netlink socket", e))?;
        let ifindex = here
            .link_index(&self.ifname)
            .map_err(|e| self.tap_err("find its ifindex", e))?;
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
        let mut nl = self
            .netlink()
            .map_err(|e| self.tap_err("open a netlink socket", e))?;
        let ifindex = nl
            .link_index(&self.ifname)
            .map_err(|e| self.tap_err("find its ifindex", e))?;
        nl.set_link(ifindex, None, None, Some(true))
            .map_err(|e| self.tap_err("bring it up", e))
    }

    /// Adds an IPv4 address to the netdev where it is (a host port's address, in the switch's
    /// namespace).
    pub fn add_ipv4(&self, addr: Ipv4Addr, prefix_len: u8) -> Result<(), PortError> {
        let mut nl = self
            .netlink()
            .map_err(|e| self.tap_err("open a netlink socket", e))?;
        let ifindex = nl
            .link_index(&self.ifname)
            .map_err(|e| self.tap_err("find its ifindex", e))?;
        nl.add_ipv4_addr(ifindex, addr, prefix_len)
            .map_err(|e| self.tap_err(&format!("add address {addr}/{prefix_len}"), e))
    }

    /// A netlink socket in the namespace the netdev is in now.
    fn netlink(&self) -> io::Result<Netlink> {
        match &self.plugged {
            Some((_, ns)) => Netlink::open_in(ns.as_fd()),
            None => Netlink::open_in(self.home.as_fd()),
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

    /// Whether this port created the tap, and so removes it when dropped.
    pub fn is_owned(&self) -> bool {
        self.created
    }

    /// The tap fd (non-blocking), for epoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads one virtio-net header plus frame; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.fd.as_fd(), buf)
    }

    /// Writes one virtio-net header plus frame.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.fd.as_fd(), buf)
    }
}

impl AsFd for TapPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for TapPort {
    /// A created tap goes away when `fd` closes, after this. A found one that was moved into a
    /// namespace is moved back home first.
    fn drop(&mut self) {
        let (false, Some((netns, ns))) = (self.created, &self.plugged) else {
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
