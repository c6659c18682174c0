//! The control side: the configuration file (TOML → validated `Config`), the control protocol
//! (typed JSON requests and replies), and the client half of the CLI commands that use it.

pub mod cli;
pub mod config;
pub mod manpage;
pub mod protocol;
pub mod top;
