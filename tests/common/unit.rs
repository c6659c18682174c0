//! The shipped systemd unit, read the way systemd reads the keys the tests care about.

use std::path::{Path, PathBuf};

/// `contrib/switchyard@.service`.
pub fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/switchyard@.service")
}

/// The last value of `key=` in the unit (comments skipped).
pub fn unit_value(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .next_back()
        .map(str::to_string)
}

/// The unit's `CapabilityBoundingSet=`, lower case (`cap_net_admin`), as `capsh` prints them.
pub fn unit_capabilities() -> Vec<String> {
    unit_value("CapabilityBoundingSet")
        .expect("the unit sets CapabilityBoundingSet=")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect()
}

/// A wrapper that runs the daemon as the unit does: exactly its bounding set, and
/// `NoNewPrivileges=` (`setpriv --bounding-set -all,+net_admin,... --no-new-privs`).
pub fn unit_wrapper() -> Vec<String> {
    let caps: Vec<String> = unit_capabilities()
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("cap_")))
        .collect();
    let mut w = vec![
        "setpriv".to_string(),
        "--bounding-set".to_string(),
        format!("-all,{}", caps.join(",")),
    ];
    if unit_value("NoNewPrivileges").as_deref() == Some("yes") {
        w.push("--no-new-privs".into());
    }
    w
}
