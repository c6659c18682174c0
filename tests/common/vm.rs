//! A VM for the tests: Debian's kernel (its virtio modules) and a busybox initramfs built here,
//! booted by QEMU under TCG (TESTBED.md: KVM hangs on the test bed).

use std::fs;
use std::path::{Path, PathBuf};

/// The virtio modules virtio_net needs in Debian's kernel, in load order (TESTBED.md).
pub const MODULES: [&str; 8] = [
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
];

/// A guest's `/init`: busybox's applets, /proc and /sys, the virtio modules in load order
/// (`SY-ERROR` lines for what fails), `lo` and `eth0` up, a DHCP lease through `/udhcpc.sh`
/// with `udhcpc_tries` discovers, then `body`.
pub fn guest_init(udhcpc_tries: u32, body: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /lib/modules/$m.ko || echo "SY-ERROR insmod $m"
done
ip link set lo up
ip link set eth0 up || echo "SY-ERROR no eth0"
udhcpc -i eth0 -f -q -n -t {udhcpc_tries} -T 2 -s /udhcpc.sh || echo "SY-ERROR udhcpc failed"
{body}"#
    )
}

/// One entry of a `newc` cpio archive (what the kernel unpacks as an initramfs).
pub fn cpio_entry(
    out: &mut Vec<u8>,
    ino: u32,
    name: &str,
    mode: u32,
    rdev: (u32, u32),
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The Debian kernel to boot: a /boot/vmlinuz-V with /lib/modules/V holding virtio_net.
pub fn debian_kernel() -> (PathBuf, PathBuf) {
    let mut found: Vec<(PathBuf, PathBuf)> = fs::read_dir("/lib/modules")
        .expect("/lib/modules: install linux-image-amd64 (scripts/test.sh does)")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|m| m.join(MODULES[7]).exists())
        .filter_map(|m| {
            let v = m.file_name()?.to_str()?.to_string();
            let k = PathBuf::from(format!("/boot/vmlinuz-{v}"));
            k.exists().then_some((k, m))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("no /boot/vmlinuz-V with virtio_net in /lib/modules/V: install linux-image-amd64")
}

/// Writes the initramfs (busybox, the virtio modules, `init`, the udhcpc hook `udhcpc`) to
/// `path`.
pub fn build_initramfs(path: &Path, modules: &Path, init: &str, udhcpc: &str) {
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox: install busybox-static");
    let mut a = Vec::new();
    let mut ino = 1;
    let mut next = || {
        ino += 1;
        ino
    };
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "lib",
        "lib/modules",
    ] {
        cpio_entry(&mut a, next(), dir, 0o040_755, (0, 0), &[]);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio_entry(&mut a, next(), "dev/console", 0o020_600, (5, 1), &[]);
    cpio_entry(&mut a, next(), "bin/busybox", 0o100_755, (0, 0), &busybox);
    cpio_entry(&mut a, next(), "bin/sh", 0o120_777, (0, 0), b"busybox");
    cpio_entry(&mut a, next(), "init", 0o100_755, (0, 0), init.as_bytes());
    cpio_entry(
        &mut a,
        next(),
        "udhcpc.sh",
        0o100_755,
        (0, 0),
        udhcpc.as_bytes(),
    );
    for m in MODULES {
        let data = fs::read(modules.join(m)).unwrap_or_else(|e| panic!("{m}: {e}"));
        let name = format!(
            "lib/modules/{}",
            Path::new(m).file_name().unwrap().to_str().unwrap()
        );
        cpio_entry(&mut a, next(), &name, 0o100_644, (0, 0), &data);
    }
    cpio_entry(&mut a, 0, "TRAILER!!!", 0, (0, 0), &[]);
    fs::write(path, a).unwrap();
}
