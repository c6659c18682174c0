//! DHCP under a full disk: the server never acknowledges a lease it could not persist, and
//! recovers by itself when space returns. The state directory is a tiny tmpfs this test mounts
//! in its own temp dir (and unmounts even if it fails).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{clients, sh, Lab};

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

/// Fills the filesystem holding `path` until it is full.
fn fill(path: &Path) {
    // dd stops with ENOSPC; its exit status is non-zero by design.
    let _ = sh(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", path.display()),
        "bs=4k",
    ]);
}

#[test]
fn a_full_disk_withholds_the_ack_and_dhcp_recovers_when_space_returns() {
    let mut lab = Lab::new();
    let state = lab.dir.join("state");
    let _fs = Tmpfs::mount(&state, "256k");
    let script = clients::udhcpc_script(&lab.dir);
    let ns = lab.ns("h1");
    let ifname = lab.ifname("h1");
    let cfg = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\n\
         [switch]\ncontrol_socket = \"{socket}\"\n\n\
         [[host]]\nname = \"h1\"\nmac = \"52:54:00:31:00:51\"\nipv4 = \"10.13.31.51\"\n\n\
         [[port]]\nname = \"h1\"\nkind = \"tap\"\nifname = \"{ifname}\"\nhost = \"h1\"\n\
         netns = \"{ns}\"\naddress = \"none\"\n",
        tag = lab.tag,
        state = state.display(),
        socket = lab.control_socket().display()
    );
    lab.start(&cfg, &[("h1", &ifname)]);

    let filler = state.join("filler");
    fill(&filler);
    assert!(
        !clients::udhcpc(&mut lab, "h1", &script, "3"),
        "an ACK left although the journal could not be written"
    );
    let out = lab.exec("h1", &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("10.13.31.51"));

    fs::remove_file(&filler).unwrap();
    assert!(
        clients::udhcpc(&mut lab, "h1", &script, "5"),
        "DHCP did not recover when space returned"
    );
    let out = lab.exec("h1", &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.13.31.51"),
        "{out:?}"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("cannot persist a lease change"),
        "the failure is logged clearly:\n{}",
        exit.stderr
    );
}

/// A journal that cannot be opened at start (here its path is a directory; on a real machine a
/// read-only or full state directory) does not keep the switch from starting: frames flow, DHCP
/// acknowledges nothing (counted as `no_journal`), `stats` and the log say why, and once the
/// path is fixed the journal opens by itself (tried every 10 s) and the host gets its lease.
#[test]
fn a_journal_that_cannot_be_opened_degrades_dhcp_and_recovers() {
    let mut lab = Lab::new();
    let state = lab.dir.join("state");
    let journal = state.join("leases.journal");
    fs::create_dir_all(journal.join("in-the-way")).unwrap();
    let script = clients::udhcpc_script(&lab.dir);
    let cfg = common::lab_config(&mut lab, &[("h1", 51, false), ("h2", 52, false)], "");
    // h2 keeps its static address (the lab's default); h1 asks DHCP for its reservation.
    let cfg = cfg.replacen(
        &format!("netns = \"{}\"\n", lab.ns("h1")),
        &format!("netns = \"{}\"\naddress = \"none\"\n", lab.ns("h1")),
        1,
    );
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
    // The switch runs: the static host reaches the gateway.
    assert!(
        lab.ping("h2", "10.13.31.1", 2),
        "the switch did not come up"
    );
    assert!(
        !clients::udhcpc(&mut lab, "h1", &script, "3"),
        "an ACK left without a journal"
    );
    let stats = lab.cli_ok(&["stats"]);
    assert!(
        stats.contains("problem: DHCP acknowledges no lease") && stats.contains("leases.journal"),
        "stats does not say what is wrong:\n{stats}"
    );
    fs::remove_dir_all(&journal).unwrap();
    let mut got = false;
    for _ in 0..4 {
        if clients::udhcpc(&mut lab, "h1", &script, "5") {
            got = true;
            break;
        }
    }
    assert!(got, "DHCP did not recover once the journal could be opened");
    let stats = lab.cli_ok(&["stats"]);
    assert!(!stats.contains("problem:"), "{stats}");
    assert!(journal.is_file(), "the journal was not created");

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    for want in [
        "DHCP acknowledges no lease until the lease journal can be opened",
        "lease journal open: DHCP acknowledges leases again",
    ] {
        assert!(
            exit.stderr.contains(want),
            "{want:?} not logged:\n{}",
            exit.stderr
        );
    }
}

/// A journal line with a bad CRC (disk corruption: a lease the server may have acknowledged)
/// is skipped at start and said loudly, at error level, not only counted.
#[test]
fn a_journal_line_with_a_bad_crc_is_logged_as_an_error() {
    let mut lab = Lab::new();
    let state = lab.dir.join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(
        state.join("leases.journal"),
        "U - 52:54:00:31:00:51 10.13.31.51 0 m:52:54:00:31:00:51 h1 * deadbeef\n",
    )
    .unwrap();
    let cfg = common::lab_config(&mut lab, &[("h1", 51, false)], "");
    let i1 = lab.ifname("h1");
    lab.start(&cfg, &[("h1", &i1)]);
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let line = exit
        .stderr
        .lines()
        .find(|l| l.contains("lease journal lines with a bad CRC were skipped"))
        .unwrap_or_else(|| panic!("the corrupt line was not logged:\n{}", exit.stderr));
    assert!(line.contains("ERROR"), "not at error level: {line}");
}
