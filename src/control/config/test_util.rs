//! What the config tests share: a minimal file, and asserting on an error's `file:line`.

use super::{parse, Config, ConfigError};

pub(super) const MINIMAL: &str = r#"
[network]
name = "t"
subnet = "10.0.0.0/24"
gateway = "10.0.0.1"
domain = "t.test"
"#;

/// `MINIMAL` plus `extra`; the error's line numbers count from `MINIMAL`'s first (empty) line.
pub(super) fn with(extra: &str) -> Result<Config, ConfigError> {
    parse(&format!("{MINIMAL}{extra}"), "t.toml")
}

/// The (location, message) of an error that must be `Invalid`.
pub(super) fn invalid(r: Result<Config, ConfigError>) -> (String, String) {
    match r {
        Err(ConfigError::Invalid { location, message }) => (location, message),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

/// Asserts the error is at `t.toml:line` and its message contains every one of `needles`.
#[track_caller]
pub(super) fn assert_err(r: Result<Config, ConfigError>, line: usize, needles: &[&str]) {
    let (location, message) = invalid(r);
    assert_eq!(location, format!("t.toml:{line}"), "{message}");
    for needle in needles {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

pub(super) const HOST_AND_PORT: &str = r#"
[[host]]
name = "vm1"
mac = "52:54:00:00:00:11"
ipv4 = "10.0.0.11"

[[port]]
name = "p1"
kind = "tap"
ifname = "sy-p1"
host = "vm1"
"#;
