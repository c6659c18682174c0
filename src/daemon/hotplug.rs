//! Ports plugged in and out of the running switch: `switchyard port add|del`, and the ports a
//! reload adds or removes.
//!
//! Theory of operation. Every change runs on the control thread under the live config's lock,
//! so changes are serialized; the data path never waits for one except at the end of a batch.
//!
//! Plugging a port: the new port is checked by the file's rules (`Config::check_new_port`),
//! opened (a tap made and moved into its namespace, created if the daemon must; a packet
//! socket bound; a socket file listened on), put into a free slot of the port table (write
//! lock: held for one assignment), attached in the switch (fresh counters and policy, up), and
//! only then added to the epoll set of the worker with the fewest ports. Free slots are taken
//! round-robin from where the last one was found, so a slot just emptied is the last to be
//! reused (a frame of the old port that a worker had already been told about then finds an
//! empty slot, or a port with nothing to read).
//!
//! Unplugging: the switch detaches the slot first (down: no frame is sent to it any more,
//! frames still read from it are dropped; its learned MACs flushed; its policy gone); then the
//! port leaves the table under the write lock, which waits for every batch that could be
//! using it; it leaves its worker's epoll set, and is dropped outside the lock: its fd closes
//! (a tap the daemon made vanishes with it), a socket file is removed, and with the last port
//! in a namespace the daemon created, the namespace is deleted. Leases are the DHCP server's
//! and stay: a VM that comes back gets its address again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::build::port_spec;
use super::control::{Control, Failure};
use super::table::Plugged;
use crate::control::config::{Config, NewPort};
use crate::control::protocol::ErrorKind;
use crate::switch::PortId;

impl Control {
    /// `switchyard port add`: checked, opened, plugged; the live config gains the port.
    pub(super) fn port_add(&self, new: NewPort) -> Result<String, Failure> {
        let mut live = self.live();
        let port = live
            .check_new_port(&new)
            .map_err(|e| (ErrorKind::Refused, e.0))?;
        let mut next = live.clone();
        next.ports.push(port);
        let id = self
            .plug(&next, next.ports.len() - 1)
            .map_err(|m| (ErrorKind::Refused, m))?;
        let p = &next.ports[next.ports.len() - 1];
        // The appliance learns the port (a trusted port's DHCP exemptions follow its slot).
        if let Err(e) = self.apply(&live, &next, &[]) {
            self.unplug(&p.name);
            return Err(e);
        }
        let message = format!(
            "port {} added ({} {}, slot {})",
            p.name,
            p.kind.name(),
            p.kind.attachment(),
            id.0
        );
        tracing::info!("{message}");
        *live = next;
        Ok(message)
    }

    /// `switchyard port del`: unplugged and closed; the live config loses the port.
    pub(super) fn port_del(&self, name: &str) -> Result<String, Failure> {
        let mut live = self.live();
        let i = live
            .port_position(name)
            .map_err(|e| (ErrorKind::NotFound, e.0))?;
        if live.pinned_by_static_fdb(i) {
            return Err((
                ErrorKind::Refused,
                format!(
                    "port {name} is named by a [[switch.fdb]] entry: remove the entry and \
                     restart to remove the port"
                ),
            ));
        }
        let mut next = live.clone();
        remove_port(&mut next, i);
        self.unplug(name);
        if let Err((_, e)) = self.apply(&live, &next, &[]) {
            tracing::error!("port {name} removed, but the appliance did not follow: {e}");
        }
        let message = format!("port {name} removed");
        tracing::info!("{message}");
        *live = next;
        Ok(message)
    }

    /// Opens port `i` of `cfg` and plugs it into a free slot; `Err` says why not, and then
    /// nothing is plugged (what was opened is closed again).
    pub(super) fn plug(&self, cfg: &Config, i: usize) -> Result<PortId, String> {
        let p = &cfg.ports[i];
        let from = self.next_slot.load(Ordering::Relaxed);
        let id = self.switch.free_slot(from, self.max_ports).ok_or_else(|| {
            format!(
                "port {}: no free slot ([switch] max_ports = {})",
                p.name, self.max_ports
            )
        })?;
        let (port, netns) = self
            .ports
            .open_port(cfg, p)
            .map_err(|e| format!("port {}: {e}", p.name))?;
        // The slot's last drops were another port's.
        self.ports.drops.clear(id);
        {
            let mut slots = self
                .ports
                .slots
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut load = vec![0usize; self.epolls.len()];
            for q in slots.iter().flatten() {
                load[q.worker] += 1;
            }
            let worker = (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0);
            let mut plugged = Plugged::new(Arc::from(port), netns);
            plugged.give_to(worker, self.epolls.len());
            slots[id.index()] = Some(plugged);
        };
        self.next_slot.store(id.index() + 1, Ordering::Relaxed);
        self.switch.attach(id, port_spec(cfg, p));
        self.switch.set_service_exempt(id, p.trusted);
        let table = self.ports.table();
        table.sync_link(&self.switch, id);
        let added = table.plugged(id).map(|p| p.watch(&self.epolls, id.0));
        drop(table);
        if let Some(Err(e)) = added {
            self.unplug(&p.name);
            return Err(format!("port {}: adding it to epoll: {e}", p.name));
        }
        Ok(id)
    }

    /// Takes port `name` out of the switch and closes it; nothing if there is no such port.
    pub(super) fn unplug(&self, name: &str) {
        let Some(id) = self.switch.port_by_name(name) else {
            return;
        };
        self.switch.detach(id);
        self.ports
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(id);
        let gone = self
            .ports
            .slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)[id.index()]
        .take();
        if let Some(p) = gone {
            p.unwatch(&self.epolls);
            // Dropped here, outside the lock: the fd closes, the tap or socket file goes.
            drop(p);
        }
    }

    /// Applies the ports `new` adds and removes over `old` (a reload): removed first (a
    /// re-plumbed port frees its netdev or path), then added. If one cannot be opened, the
    /// ones added are removed, the removed ones put back, and the error says which.
    pub(super) fn apply_ports(&self, old: &Config, new: &Config) -> Result<(usize, usize), String> {
        let (removed, added) = old.port_changes(new);
        for &i in &removed {
            self.unplug(&old.ports[i].name);
        }
        for (n, &i) in added.iter().enumerate() {
            if let Err(e) = self.plug(new, i) {
                for &j in &added[..n] {
                    self.unplug(&new.ports[j].name);
                }
                for &j in &removed {
                    if let Err(back) = self.plug(old, j) {
                        tracing::error!("putting port {} back failed: {back}", old.ports[j].name);
                    }
                }
                return Err(e);
            }
        }
        Ok((added.len(), removed.len()))
    }
}

/// Removes port `i` from `cfg`, keeping the static FDB entries' port indices right.
pub(super) fn remove_port(cfg: &mut Config, i: usize) {
    cfg.ports.remove(i);
    for s in &mut cfg.switch.static_fdb {
        if s.port > i {
            s.port -= 1;
        }
    }
}
