//! Named network namespaces, the "hosts" of a lab network.
//!
//! # Theory of operation
//!
//! A [`Netns`] is an open fd on `/run/netns/NAME`, iproute2's convention, so `ip netns exec NAME`
//! and the daemon see the same namespaces. [`Netns::ensure`] opens the namespace if it exists and
//! creates it otherwise (what `ip netns add` does, plus bringing `lo` up, which `ip netns add`
//! leaves down). A namespace this handle created is deleted when the handle is dropped (what
//! `ip netns del` does); one it found is left alone.
//!
//! Deleting removes the name, not necessarily the namespace: the kernel keeps a namespace while
//! anything refers to it (a process, a socket, an fd such as the one a plugged [`TapPort`] keeps).
//! Virtual netdevs still inside it when it finally dies are destroyed with it.
//!
//! The daemon must run in the root mount namespace for the name to be visible to others (see
//! TESTBED.md, "the namespace mount trap").
//!
//! [`TapPort`]: super::TapPort

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::netlink::Netlink;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{sys, validate_netns_name, PortError};

/// A named network namespace, open. Deleted on drop if this handle created it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    fd: OwnedFd,
    /// Cleared by [`Netns::keep`], which may be called through a shared handle.
    created: AtomicBool,
}

impl Netns {
    /// Opens `/run/netns/NAME`, or creates the namespace (with `lo` up) if there is none.
    pub fn ensure(name: &str) -> Result<Netns, PortError> {
        validate_netns_name(name)?;
        let err = |action: &str, err: io::Error| PortError::Netns {
            name: name.to_string(),
            action: action.to_string(),
            err,
        };
        match Netns::open_existing(name) {
            Err(PortError::Netns { err: e, .. }) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        match sys::create_named_netns(name) {
            Ok(()) => {}
            // Someone else created it between our open and our create: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Netns::open_existing(name)
            }
            Err(e) => return Err(err("create it", e)),
        }
        let path = sys::netns_path(name);
        let fd = match sys::open_netns(&path) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::remove_named_netns(name);
                return Err(err("open the namespace it just created", e));
            }
        };
        // From here on, dropping `ns` deletes the namespace if a later step fails.
        let ns = Netns {
            name: name.to_string(),
            fd,
            created: AtomicBool::new(true),
        };
        ns.bring_loopback_up()
            .map_err(|e| err("bring lo up in it", e))?;
        Ok(ns)
    }

    /// Opens the existing namespace `/run/netns/NAME`; never creates one (`NotFound` if absent).
    pub fn open(name: &str) -> Result<Netns, PortError> {
        validate_netns_name(name)?;
        Netns::open_existing(name)
    }

    fn open_existing(name: &str) -> Result<Netns, PortError> {
        let path = sys::netns_path(name);
        let err = |action: &str, err: io::Error| PortError::Netns {
            name: name.to_string(),
            action: action.to_string(),
            err,
        };
        let shown = path.display().to_string();
        let fd = sys::open_netns(&path).map_err(|e| err(&format!("open {shown}"), e))?;
        if !sys::is_net_namespace(fd.as_fd()).map_err(|e| err(&format!("check {shown}"), e))? {
            return Err(PortError::NotANetns {
                name: name.to_string(),
                path: shown,
            });
        }
        Ok(Netns {
            name: name.to_string(),
            fd,
            created: AtomicBool::new(false),
        })
    }

    fn bring_loopback_up(&self) -> io::Result<()> {
        let mut nl = Netlink::open_in(self.fd())?;
        let lo = nl.link_index("lo")?;
        nl.set_link(lo, None, None, Some(true))
    }

    /// The namespace's name (`/run/netns/NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An fd on the namespace, for `setns` or `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Leaves the namespace in place when this handle is dropped, even if it created it (it
    /// holds a persistent tap that outlives the daemon).
    pub fn keep(&self) {
        self.created.store(false, Ordering::Relaxed);
    }

    /// Whether this handle created the namespace, and so deletes it on drop.
    pub fn is_owned(&self) -> bool {
        self.created.load(Ordering::Relaxed)
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if *self.created.get_mut() {
            if let Err(e) = sys::remove_named_netns(&self.name) {
                tracing::warn!(netns = %self.name, error = %e, "cannot delete the namespace");
            }
        }
    }
}
