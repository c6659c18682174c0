//! The pure data plane: the forwarding decision, the per-port guard, the MAC table, the
//! counters, and the rings of each port's last drops that the caller fills (`droplog`).
//!
//! Nothing in here makes a syscall or reads the clock: the caller passes `now`, and gets back a
//! `Verdict` it carries out. That keeps the decision unit-testable without root and benchmarkable
//! without I/O.

mod counters;
mod droplog;
mod fdb;
mod forward;
mod guard;
mod loops;
mod rate;
mod vlan;

pub use counters::{CounterSnapshot, DropReason, PortCounters};
pub use droplog::{DropLog, DropRecord, RING as DROP_RING};
pub use fdb::{Fdb, FdbEntry, Learn};
pub use forward::{
    Decision, FrameSummary, PortSpec, Switch, SwitchParams, Verdict, SERVICE_BURST,
    SERVICE_PER_SEC, STORM_WINDOW,
};
pub use guard::{check, check_tagged, eui64_link_local, AllowedIps, GuardMode, PortPolicy, Prefix};
pub use loops::{own_probe, probe_frame, LoopKey, LOOP_BLOCK, LOOP_PROBE_ETHERTYPE};
pub use rate::{PortLimits, RateLimit, MIN_BUCKET};
pub use vlan::{PortVlan, VlanSet, DEFAULT_VLAN, MAX_VID};

/// A port's index in the switch's port table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}
