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
