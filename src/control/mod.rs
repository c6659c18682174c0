//! The control side: the configuration file (TOML → validated `Config`).

pub mod config;
