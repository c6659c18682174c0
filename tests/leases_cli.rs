//! `switchyard leases --offline`: reads a journal written through the `Journal` API, read-only;
//! without --offline and no daemon, an error rather than a stale table.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use switchyard::service::dhcp::{ClientKey, Journal, Lease, LeaseChange};
use switchyard::wire::MacAddr;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sy-leases-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config whose `[dhcp] state_dir` is `state`; returns its path.
fn write_config(dir: &Path, state: &Path) -> PathBuf {
    let path = dir.join("net.toml");
    std::fs::write(
        &path,
        format!(
            "[network]\nname = \"t\"\nsubnet = \"10.0.0.0/24\"\ngateway = \"10.0.0.1\"\n\
             domain = \"t.test\"\n[dhcp]\npool = [\"10.0.0.100\", \"10.0.0.199\"]\n\
             state_dir = \"{}\"\n[switch]\ncontrol_socket = \"{}\"\n",
            state.display(),
            dir.join("t.sock").display()
        ),
    )
    .unwrap();
    path
}

fn leases(config: &Path, json: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("leases")
        .arg("--offline")
        .arg("--config")
        .arg(config);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lease(last: u8, expires: Option<u64>) -> Lease {
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, last]);
    Lease {
        key: ClientKey::Mac(mac),
        mac,
        ip: Ipv4Addr::new(10, 0, 0, last),
        expires,
        hostname: None,
        client_id: None,
        port: 0,
    }
}

#[test]
fn no_lease_store_is_an_empty_list() {
    let tmp = TempDir::new("empty");
    let state = tmp.0.join("state");
    let cfg = write_config(&tmp.0, &state);
    let table = leases(&cfg, false);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.starts_with(" Expiry Time"), "{table}");
    assert_eq!(leases(&cfg, true).trim(), "[]");
    assert!(
        !state.exists(),
        "a reader must not create the state directory"
    );
}

#[test]
fn lists_live_leases_from_the_journal_without_touching_it() {
    let tmp = TempDir::new("live");
    let state = tmp.0.join("state");
    let cfg = write_config(&tmp.0, &state);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (mut journal, _, _) = Journal::open(&state.join("leases.journal")).unwrap();
    let mut with_name = lease(11, Some(4_102_444_800)); // 2100-01-01 00:00:00 UTC
    with_name.hostname = Some("vm1".into());
    with_name.client_id = Some(vec![1, 0x52, 0x54, 0, 0, 0, 11].into());
    for change in [
        LeaseChange::Upsert(lease(150, None)),
        LeaseChange::Upsert(with_name),
        LeaseChange::Upsert(lease(101, Some(now - 10))), // expired: not shown
        LeaseChange::Upsert(lease(102, Some(now + 3600))),
        LeaseChange::Remove(lease(102, None).key), // released: not shown
    ] {
        journal.append(&change).unwrap();
    }
    let journal_path = state.join("leases.journal");
    let before = std::fs::read(&journal_path).unwrap();

    let table = leases(&cfg, false);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "Expiry Time",
            "MAC address",
            "Protocol",
            "IP address",
            "Hostname",
            "Client ID or DUID"
        ]
    );
    assert!(lines[1].chars().all(|c| c == '-'), "{table}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[2]),
        [
            "2100-01-01",
            "00:00:00",
            "52:54:00:00:00:0b",
            "ipv4",
            "10.0.0.11/24",
            "vm1",
            "01:52:54:00:00:00:0b"
        ]
    );
    assert_eq!(
        cols(lines[3]),
        [
            "never",
            "52:54:00:00:00:96",
            "ipv4",
            "10.0.0.150/24",
            "-",
            "-"
        ]
    );

    let json: serde_json::Value = serde_json::from_str(&leases(&cfg, true)).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {
                "expiry_time": 4_102_444_800u64,
                "mac": "52:54:00:00:00:0b",
                "type": "ipv4",
                "ipaddr": "10.0.0.11",
                "prefix": 24,
                "hostname": "vm1",
                "clientid": "01:52:54:00:00:00:0b"
            },
            {
                "expiry_time": null,
                "mac": "52:54:00:00:00:96",
                "type": "ipv4",
                "ipaddr": "10.0.0.150",
                "prefix": 24,
                "hostname": null,
                "clientid": null
            }
        ])
    );

    // Read-only: the journal is byte for byte what the daemon wrote, and still appendable.
    assert_eq!(std::fs::read(&journal_path).unwrap(), before);
    journal
        .append(&LeaseChange::Upsert(lease(120, None)))
        .unwrap();
    assert!(leases(&cfg, false).contains("10.0.0.120/24"));
}

#[test]
fn no_daemon_is_an_error_not_the_journal() {
    let tmp = TempDir::new("nodaemon");
    let state = tmp.0.join("state");
    let cfg = write_config(&tmp.0, &state);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("leases")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no table printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the daemon at"), "{err}");
    assert!(err.contains("--offline"), "{err}");
    // With nothing to say which network, --offline asks for one.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["leases", "--offline"])
        .env("SWITCHYARD_RUN_DIR", tmp.0.join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pass --config FILE or --network NAME"),
        "{err}"
    );
}

#[test]
fn an_unreadable_config_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["leases", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}
