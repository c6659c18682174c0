//! Finding the daemon: `switchyard list`, `--network NAME`, the one running network by default,
//! and `leases` refusing to print a stale table when the daemon it was asked for is gone.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{lab_config, Lab};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `switchyard ARGS` with the given run and config directories, no --socket.
fn sy(run_dir: &Path, config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_RUN_DIR", run_dir)
        .env("SWITCHYARD_CONFIG_DIR", config_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run switchyard {args:?}: {e}"))
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A lab running one host on one tap, registered in `run_dir`.
fn start(run_dir: &Path) -> Lab {
    let mut lab = Lab::new();
    lab.env
        .push(("SWITCHYARD_RUN_DIR".into(), run_dir.display().to_string()));
    let cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    let ifname = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &ifname)]);
    let socket = lab.control_socket();
    lab.wait_for("the control socket", Duration::from_secs(10), || {
        socket.exists()
    });
    lab
}

#[test]
fn list_network_and_the_only_running_network() {
    // Both labs register in one run directory of the test's; its /etc/switchyard is another.
    let tmp = TempDir(std::env::temp_dir().join(format!("sy-list-{}", std::process::id())));
    let run_dir = tmp.0.join("run");
    let config_dir = tmp.0.join("etc");
    std::fs::create_dir_all(&config_dir).unwrap();
    let mut a = start(&run_dir);
    let mut b = start(&run_dir);

    // `list`: both networks, running, with their sockets, one port each and no lease yet.
    let o = sy(&run_dir, &config_dir, &["list"]);
    assert!(o.status.success(), "{}", err(&o));
    let table = out(&o);
    println!("{table}");
    assert!(table.starts_with("NAME"), "{table}");
    for lab in [&a, &b] {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(lab.tag.as_str()))
            .unwrap_or_else(|| panic!("no row for {} in:\n{table}", lab.tag));
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[1], "running", "{row}");
        assert_eq!(f[2], lab.control_socket().display().to_string(), "{row}");
        assert_eq!((f[3], f[4]), ("1", "0"), "ports and leases: {row}");
        assert!(f[5].ends_with('s'), "uptime: {row}");
        assert_eq!(f[6], lab.dir.join("switchyard.toml").display().to_string());
    }
    let json: serde_json::Value =
        serde_json::from_str(&out(&sy(&run_dir, &config_dir, &["list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json[0]["state"], "running");
    assert_eq!(json[0]["ports"], 1);

    // Two run: a command without a target names them and asks for --network.
    let o = sy(&run_dir, &config_dir, &["ports"]);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(e.contains("2 networks are running"), "{e}");
    assert!(
        e.contains(&a.tag) && e.contains(&b.tag) && e.contains("--network"),
        "{e}"
    );

    // --network picks one.
    let o = sy(&run_dir, &config_dir, &["ports", "--network", &b.tag]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains(&b.ifname("vm1")), "{}", out(&o));
    // An unknown name: it says what runs.
    let o = sy(&run_dir, &config_dir, &["ports", "--network", "nosuchnet"]);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("no network 'nosuchnet'") && e.contains(&a.tag),
        "{e}"
    );

    // One stops cleanly: its entry goes, and the other is now the default.
    let exit = b.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let table = out(&sy(&run_dir, &config_dir, &["list"]));
    assert!(
        !table.contains(&b.tag),
        "a stopped network is unlisted:\n{table}"
    );
    let o = sy(&run_dir, &config_dir, &["ports"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains(&a.ifname("vm1")), "{}", out(&o));

    // `leases --network` of the stopped one: an error that says so, not an empty table; with
    // --offline it reads the journal through /etc/switchyard/NAME.toml (here the test's dir).
    std::fs::copy(
        b.dir.join("switchyard.toml"),
        config_dir.join(format!("{}.toml", b.tag)),
    )
    .unwrap();
    let o = sy(&run_dir, &config_dir, &["leases", "--network", &b.tag]);
    assert!(!o.status.success(), "stdout: {}", out(&o));
    assert!(out(&o).is_empty(), "no table: {}", out(&o));
    let e = err(&o);
    assert!(
        e.contains("cannot reach the daemon") && e.contains("--offline"),
        "{e}"
    );
    let o = sy(
        &run_dir,
        &config_dir,
        &["leases", "--offline", "--network", &b.tag],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).starts_with(" Expiry Time"), "{}", out(&o));

    // kill -9 leaves the entry: listed as not running, never chosen.
    a.kill9();
    let table = out(&sy(&run_dir, &config_dir, &["list"]));
    let row = table
        .lines()
        .find(|l| l.starts_with(a.tag.as_str()))
        .unwrap_or_else(|| panic!("no row for {} in:\n{table}", a.tag));
    assert!(row.contains("not running"), "{row}");
    let o = sy(&run_dir, &config_dir, &["ports"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("no switchyard network is running"),
        "{}",
        err(&o)
    );
    // Asked by name, the stale entry's socket is tried, and the error says nobody answers.
    let o = sy(&run_dir, &config_dir, &["leases", "--network", &a.tag]);
    assert!(!o.status.success());
    assert!(err(&o).contains("cannot reach the daemon"), "{}", err(&o));
}
