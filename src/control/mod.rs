//! The control side: the configuration file (TOML → validated `Config`), the control protocol
//! (typed JSON requests and replies), the client half of the CLI commands that use it (`cli`,
//! and `top`'s live view), and `switchyard.toml(5)` made from the config reference (`manpage`).

pub mod cli;
pub mod config;
pub mod libvirt;
pub mod libvirt_import;
pub mod live_state;
pub mod locate;
pub mod manpage;
pub mod protocol;
pub mod resolv;
pub mod top;
