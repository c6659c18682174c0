//! switchyard: a userspace L2 switch with a DHCP/DNS appliance built in.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod control;
pub mod wire;
