//! The short soak: `scripts/soak.sh` for 30 s (`SOAK_SECONDS`) with this build's daemon: iperf3
//! bursts, DHCP churn, DNS loops and control-socket churn through one daemon in namespaces of
//! the script's own, with its RSS, fds and threads sampled. The script fails if any of them grew
//! (or a load never succeeded); its summary is printed either way.

mod common;

use std::process::Command;

#[test]
fn thirty_second_soak_keeps_memory_fds_and_threads_flat() {
    common::require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak.sh");
    let out = Command::new("timeout")
        .args(["-s", "INT", "-k", "10", "150", script])
        .env("SOAK_SECONDS", "30")
        .env("SWITCHYARD", env!("CARGO_BIN_EXE_switchyard"))
        .output()
        .expect("run scripts/soak.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "soak failed ({}):\n{stdout}{stderr}",
        out.status
    );
    for needle in ["soak: PASS", "RSS kB: first", "fds: first", "load iperf3: "] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
}
