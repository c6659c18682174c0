//! The shipped systemd unit, `contrib/switchyard@.service`: `systemd-analyze verify` accepts it
//! (an instance of the template, with the built binary in place of /usr/local/bin), and its
//! keys say what the daemon needs: one network per instance, `Type=notify`, a reload that runs
//! `switchyard reload`, ordered before libvirt, and a bounding set that holds every capability
//! each example config needs (`switchyard capabilities`). tests/examples.rs starts each example
//! under that exact set.

mod common;

use std::path::Path;
use std::process::Command;

use common::unit::{unit_capabilities, unit_path, unit_value};

#[test]
fn systemd_analyze_verify_accepts_an_instance_of_the_template() {
    let dir = std::env::temp_dir().join(format!("sy-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let bin = env!("CARGO_BIN_EXE_switchyard");
    assert!(
        text.contains("/usr/local/bin/switchyard "),
        "ExecStart path"
    );
    std::fs::write(
        dir.join("switchyard@.service"),
        text.replace("/usr/local/bin/switchyard", bin),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("switchyard@vmnet.service"))
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/test.sh installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A key systemd cannot parse is only a warning (exit 0): any output at all fails.
    assert!(out.status.success() && stderr.trim().is_empty(), "{out:?}");
}

#[test]
fn one_network_per_instance_notify_reload_and_before_libvirt() {
    assert_eq!(unit_value("Type").as_deref(), Some("notify"));
    assert_eq!(
        unit_value("ExecStart").as_deref(),
        Some("/usr/local/bin/switchyard run --config /etc/switchyard/%i.toml")
    );
    assert_eq!(
        unit_value("ExecReload").as_deref(),
        Some("/usr/local/bin/switchyard reload --network %i")
    );
    let before = unit_value("Before").unwrap();
    for unit in [
        "libvirtd.service",
        "virtqemud.service",
        "libvirt-guests.service",
    ] {
        assert!(before.split_whitespace().any(|u| u == unit), "{before}");
    }
    // Instances share the run directory: one stopping must not take the others' sockets.
    assert_eq!(
        unit_value("RuntimeDirectoryPreserve").as_deref(),
        Some("yes")
    );
}

#[test]
fn the_bounding_set_holds_what_every_example_needs() {
    let unit = unit_capabilities();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("capabilities")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let needed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            needed.contains("cap_net_admin"),
            "{}: {needed}",
            file.display()
        );
        for cap in needed.split_whitespace() {
            assert!(
                unit.iter().any(|u| u == cap),
                "{} needs {cap}, which the unit's CapabilityBoundingSet lacks",
                file.display()
            );
        }
    }
}

#[test]
fn capabilities_follow_the_config() {
    let dir = std::env::temp_dir().join(format!("sy-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = "[network]\nname = \"c\"\nsubnet = \"10.9.0.0/24\"\ngateway = \"10.9.0.1\"\n\
                domain = \"c.test\"\n";
    let caps = |extra: &str| {
        let path = dir.join("c.toml");
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("capabilities")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Socket ports only: no netdev, so not even CAP_NET_ADMIN.
    let sockets = caps("[[port]]\nname = \"s\"\nkind = \"stream\"\npath = \"/tmp/sy-c.sock\"\n");
    assert_eq!(sockets, "cap_setpcap cap_sys_resource");
    let packet = caps("[[port]]\nname = \"p\"\nkind = \"packet\"\nifname = \"eth9\"\n");
    assert_eq!(
        packet,
        "cap_net_admin cap_net_raw cap_setpcap cap_sys_resource"
    );
    let full = caps(
        "[switch]\ncontrol_group = \"0\"\n[dns]\nlisten = [\"127.0.0.1:53\"]\n\
         [[port]]\nname = \"t\"\nkind = \"tap\"\nifname = \"t9\"\nnetns = \"n9\"\n",
    );
    assert_eq!(
        full,
        "cap_net_admin cap_net_bind_service cap_sys_admin cap_chown cap_setpcap cap_sys_resource"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
