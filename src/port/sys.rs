#![allow(unsafe_code)]
//! Every `unsafe` block of the crate: thin, safe wrappers over the Linux calls the port layer and
//! the daemon need. Nothing here decides anything; it translates one system call into a function
//! that takes `BorrowedFd`, returns `OwnedFd` and reports failure as `std::io::Error` carrying the
//! kernel's errno.
//!
//! # Theory of operation
//!
//! - **Taps.** `open_tun` opens `/dev/net/tun` (non-blocking, close-on-exec); `tun_set_iff` binds
//!   that fd to a netdev, creating it if needed. A tap lives while an fd is attached to it, unless
//!   it is persistent (`tun_set_persist`), which `tun_get_iff` reports in its flags.
//! - **Epoll and signals.** The daemon's event loop: level-triggered `EPOLLIN` with a `u64` token
//!   per fd, and signals blocked in every thread (`block_signals` before spawning any) and taken
//!   synchronously with `wait_signal`, so no handler ever runs.
//! - **Network namespaces.** The process never moves between namespaces. Work that must happen
//!   inside another one (`socket_in_netns`, `create_named_netns`) runs on a short-lived thread that
//!   enters the namespace and exits; a socket keeps the namespace it was created in for its whole
//!   life, so the caller gets a handle into that namespace without changing its own.
//! - **Named namespaces** follow iproute2's convention exactly (`/run/netns/NAME`, a bind mount of
//!   an nsfs file on a shared mount point), so `ip netns exec NAME` sees what the daemon creates.
//!   The mount must be made in the root mount namespace (see TESTBED.md: a process started by
//!   `ip netns exec` has a private one whose mounts do not propagate back).
//!
//! # Limits
//!
//! Linux only. Every wrapper is one call (plus `EINTR` handling where stated); batching and
//! retries belong to the callers.

use std::ffi::{c_int, c_short, c_uint, c_ulong, CStr, CString};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Turns a `-1`-on-error return value into an `io::Result`.
fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for the `ssize_t` returned by read/write/send/recv.
fn cvt_len(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

fn einval(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| einval("string contains a NUL byte"))
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| einval("path contains a NUL byte"))
}

// ---------------------------------------------------------------------------------------------
// Taps
// ---------------------------------------------------------------------------------------------

/// The tun/tap clone device.
pub(crate) const TUN_PATH: &str = "/dev/net/tun";

/// Interface names are at most `IFNAMSIZ - 1` bytes plus a NUL.
pub(crate) const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// Flags for every tap the switch opens: Ethernet frames, no packet-info prefix, a virtio-net
/// header in front of each frame.
pub(crate) const TAP_FLAGS: c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Set in the flags `TUNGETIFF` returns when the device outlives its fds.
pub(crate) const IFF_PERSIST: c_int = libc::IFF_PERSIST;

const IFREQ_DATA_LEN: usize = size_of::<libc::ifreq>() - IFNAMSIZ;

/// `struct ifreq` as the tun ioctls use it: the name, then `ifr_flags` at the start of the union.
/// Our own plain-bytes copy, so building one needs no `mem::zeroed` of a union with a pointer.
#[repr(C, align(8))]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; IFREQ_DATA_LEN],
}

const _: () = assert!(size_of::<IfReq>() == size_of::<libc::ifreq>());

impl IfReq {
    fn with_name(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
            return Err(einval(
                "interface name is longer than 15 bytes or contains NUL",
            ));
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; IFREQ_DATA_LEN],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    fn flags(&self) -> c_short {
        c_short::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn set_flags(&mut self, flags: c_short) {
        self.data[..2].copy_from_slice(&flags.to_ne_bytes());
    }
}

/// What `TUNGETIFF` tells about the netdev a tun fd is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TunInfo {
    pub(crate) name: String,
    pub(crate) flags: c_int,
}

impl TunInfo {
    pub(crate) fn is_persistent(&self) -> bool {
        self.flags & IFF_PERSIST != 0
    }
}

/// Opens `/dev/net/tun` read-write, non-blocking and close-on-exec (std adds `O_CLOEXEC`).
pub(crate) fn open_tun() -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(TUN_PATH)?;
    Ok(OwnedFd::from(file))
}

/// `TUNSETIFF`: attaches `fd` to the tun/tap netdev `name`, creating it when it does not exist.
/// Returns the name the kernel used. `EBUSY`: a single-queue device already has an fd;
/// `EINVAL`: `name` exists and is not a device of the requested kind.
pub(crate) fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: c_int) -> io::Result<String> {
    let mut req = IfReq::with_name(name)?;
    let flags = c_short::try_from(flags).map_err(|_| einval("tun flags do not fit ifr_flags"))?;
    req.set_flags(flags);
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a live, exclusively
    // borrowed value of exactly that size (checked by the const assertion above).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) })?;
    Ok(req.name())
}

/// `TUNGETIFF`: the name and flags (`IFF_TAP`, `IFF_VNET_HDR`, `IFF_PERSIST`, ..) of the device.
pub(crate) fn tun_get_iff(fd: BorrowedFd<'_>) -> io::Result<TunInfo> {
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        data: [0; IFREQ_DATA_LEN],
    };
    // SAFETY: TUNGETIFF writes one `struct ifreq` into the buffer it is given; `req` is one.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req as *mut IfReq) })?;
    // ifr_flags is a C short: widen through u16 so the high flag bits stay as they were.
    let flags = c_int::from(req.flags() as u16);
    Ok(TunInfo {
        name: req.name(),
        flags,
    })
}

/// `TUNSETVNETHDRSZ`: the size of the virtio-net header in front of every frame.
pub(crate) fn tun_set_vnet_hdr_size(fd: BorrowedFd<'_>, size: c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one C int through the pointer; `size` lives on our stack for
    // the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size as *const c_int) })?;
    Ok(())
}

/// `TUNSETPERSIST`: whether the device outlives its last fd.
#[allow(
    dead_code,
    reason = "the switch never makes its taps persistent; tests use it"
)]
pub(crate) fn tun_set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    let arg = c_ulong::from(persist);
    // SAFETY: TUNSETPERSIST takes its argument by value; no memory is passed to the kernel.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, arg) })?;
    Ok(())
}

/// `TUNSETOFFLOAD`: which offloads (`TUN_F_CSUM`, `TUN_F_TSO4`, ..) the reader can take.
pub(crate) fn tun_set_offload(fd: BorrowedFd<'_>, flags: c_uint) -> io::Result<()> {
    let arg = c_ulong::from(flags);
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed to the kernel.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, arg) })?;
    Ok(())
}

/// `if_nametoindex(3)` in the calling thread's network namespace (`ENODEV` when absent).
pub(crate) fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = cstring(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

// ---------------------------------------------------------------------------------------------
// Plain I/O
// ---------------------------------------------------------------------------------------------

/// `read(2)`. On a non-blocking fd an empty queue is `ErrorKind::WouldBlock`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which we borrow mutably.
    cvt_len(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)`.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, which we borrow.
    cvt_len(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `send(2)` with no flags, to the socket's default peer.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, which we borrow.
    cvt_len(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) })
}

/// `recv(2)` with no flags.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which we borrow mutably.
    cvt_len(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })
}

// ---------------------------------------------------------------------------------------------
// Epoll
// ---------------------------------------------------------------------------------------------

/// One readiness report from [`Epoll::wait`]. Same layout as `struct epoll_event`.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct EpollEvent(libc::epoll_event);

impl EpollEvent {
    /// The token the fd was registered with.
    pub fn token(&self) -> u64 {
        self.0.u64
    }

    /// Data is waiting (`EPOLLIN`).
    pub fn is_readable(&self) -> bool {
        self.events() & libc::EPOLLIN as u32 != 0
    }

    /// The fd reported an error or a hang-up: reading it tells which.
    pub fn is_error_or_hangup(&self) -> bool {
        self.events() & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0
    }

    fn events(&self) -> u32 {
        self.0.events
    }
}

impl Default for EpollEvent {
    fn default() -> Self {
        EpollEvent(libc::epoll_event { events: 0, u64: 0 })
    }
}

impl std::fmt::Debug for EpollEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollEvent")
            .field("token", &self.token())
            .field("events", &format_args!("{:#x}", self.events()))
            .finish()
    }
}

/// An epoll instance: level-triggered `EPOLLIN` interest, one `u64` token per fd.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for input (level-triggered); its events carry `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: EPOLL_CTL_ADD reads one `epoll_event` from `ev`, which lives across the call.
        cvt(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since Linux 2.6.9).
        cvt(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Waits at most `timeout` (rounded up to whole milliseconds; zero polls) and fills
    /// `events` from the front. Returns how many were filled; an interrupted wait (`EINTR`)
    /// returns 0.
    pub fn wait(&self, events: &mut Events, timeout: Duration) -> io::Result<usize> {
        events.filled = 0;
        let max = c_int::try_from(events.buf.len()).unwrap_or(c_int::MAX);
        let ms = timeout.as_nanos().div_ceil(1_000_000);
        let timeout_ms = c_int::try_from(ms).unwrap_or(c_int::MAX);
        // SAFETY: `EpollEvent` is `repr(transparent)` over `epoll_event`, and the kernel writes at
        // most `max <= buf.len()` of them into the mutably borrowed buffer.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.buf.as_mut_ptr().cast(),
                max,
                timeout_ms,
            )
        };
        match cvt(n) {
            Ok(n) => {
                events.filled = n as usize;
                Ok(events.filled)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// The buffer [`Epoll::wait`] fills: a fixed capacity, and the events of the last wait.
#[derive(Debug, Clone)]
pub struct Events {
    buf: Vec<EpollEvent>,
    filled: usize,
}

impl Events {
    /// Room for `capacity` events per wait (at least one).
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: vec![EpollEvent::default(); capacity.max(1)],
            filled: 0,
        }
    }

    /// How many events the last wait reported.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The token of the `i`-th event of the last wait.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn token(&self, i: usize) -> u64 {
        self.buf[..self.filled][i].token()
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = &EpollEvent> + '_ {
        self.buf[..self.filled].iter()
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

fn sigset(signals: &[c_int]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set it is pointed at.
    cvt(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    for &sig in signals {
        // SAFETY: the set was initialised above; sigaddset only sets one bit (EINVAL if bad).
        cvt(unsafe { libc::sigaddset(set.as_mut_ptr(), sig) })?;
    }
    // SAFETY: initialised by sigemptyset above.
    Ok(unsafe { set.assume_init() })
}

/// Blocks `signals` in the calling thread. Call it in `main` before spawning any thread: new
/// threads inherit the mask, so the signals then wait for [`wait_signal`] instead of running a
/// handler on some random thread.
pub fn block_signals(signals: &[c_int]) -> io::Result<()> {
    let set = sigset(signals)?;
    // SAFETY: `set` is an initialised sigset_t; the old mask is not requested (null).
    let err = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// Waits up to `timeout` for one of `signals` (which must be blocked, see [`block_signals`]).
/// `Ok(None)` on timeout or when another signal interrupted the wait.
pub fn wait_signal(signals: &[c_int], timeout: Duration) -> io::Result<Option<c_int>> {
    let set = sigset(signals)?;
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; siginfo is not requested.
    let ret = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match cvt(ret) {
        Ok(sig) => Ok(Some(sig)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Ok(None),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

/// Where iproute2 keeps named network namespaces.
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

/// The calling thread's own network namespace.
pub(crate) const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// `/run/netns/NAME`.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Opens a namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`) read-only, close-on-exec.
pub(crate) fn open_netns(path: &Path) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(File::open(path)?))
}

/// Whether `fd` refers to a network namespace (`NS_GET_NSTYPE`); a plain file answers false.
pub(crate) fn is_net_namespace(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the namespace type.
    match cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) }) {
        Ok(ty) => Ok(ty == libc::CLONE_NEWNET),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs `f` on a fresh thread and returns its result: namespace changes made there die with it.
fn on_fresh_thread<T: Send>(f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("sy-netns".into())
            .spawn_scoped(s, f)?;
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn setns_net(nsfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag; it changes only the calling (throwaway) thread.
    cvt(unsafe { libc::setns(nsfd.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

fn socket(domain: c_int, ty: c_int, proto: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a socket (close-on-exec) inside the network namespace `nsfd`. A helper thread enters
/// the namespace, makes the socket and exits; the socket stays bound to that namespace, the
/// caller's thread never changes namespace.
pub(crate) fn socket_in_netns(
    nsfd: BorrowedFd<'_>,
    domain: c_int,
    ty: c_int,
    proto: c_int,
) -> io::Result<OwnedFd> {
    on_fresh_thread(move || {
        setns_net(nsfd)?;
        socket(domain, ty, proto)
    })
}

/// Opens `/dev/net/tun` and attaches it (`TUNSETIFF`) to the netdev `name` inside the network
/// namespace `nsfd`: TUNSETIFF looks the name up in the opener's namespace, so a helper thread
/// enters it first. Returns the fd and the name the kernel used.
pub(crate) fn tun_attach_in_netns(
    nsfd: BorrowedFd<'_>,
    name: &str,
    flags: c_int,
) -> io::Result<(OwnedFd, String)> {
    on_fresh_thread(move || {
        setns_net(nsfd)?;
        let fd = open_tun()?;
        let name = tun_set_iff(fd.as_fd(), name, flags)?;
        Ok((fd, name))
    })
}

fn mount(src: &CStr, target: &CStr, fstype: &CStr, flags: c_ulong) -> io::Result<()> {
    // SAFETY: all strings are NUL-terminated and outlive the call; no filesystem data (null).
    cvt(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

/// Makes `/run/netns` a shared mount point, as iproute2 does: mounts made under it then
/// propagate to mount namespaces created later (so `ip netns exec` sees new namespaces).
fn make_netns_run_dir_shared() -> io::Result<()> {
    let dir = path_cstring(Path::new(NETNS_RUN_DIR))?;
    let (none, empty) = (c"none", c"");
    let shared = libc::MS_SHARED | libc::MS_REC;
    match mount(empty, &dir, none, shared) {
        // EINVAL: not a mount point yet. Bind-mount the directory on itself, then retry.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            mount(&dir, &dir, none, libc::MS_BIND | libc::MS_REC)?;
            mount(empty, &dir, none, shared)
        }
        other => other,
    }
}

/// What `ip netns add NAME` does: a new network namespace pinned by a bind mount on
/// `/run/netns/NAME`. `EEXIST` if the name is taken. On failure nothing is left behind.
pub(crate) fn create_named_netns(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(einval("namespace name must be one path component"));
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_RUN_DIR)?;
    make_netns_run_dir_shared()?;
    let path = netns_path(name);
    drop(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)?,
    );
    let target = path_cstring(&path)?;
    let made = on_fresh_thread(|| {
        // SAFETY: unshare takes a flag; it changes only this throwaway thread's namespace.
        cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
        let own = path_cstring(Path::new(THREAD_NETNS))?;
        mount(&own, &target, c"none", libc::MS_BIND)
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(())
}

/// What `ip netns del NAME` does: detach the bind mount, remove the file. The namespace itself
/// lives on while a process, socket or fd still holds it.
pub(crate) fn remove_named_netns(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(einval("namespace name must be one path component"));
    }
    let path = netns_path(name);
    let target = path_cstring(&path)?;
    // SAFETY: `target` is NUL-terminated and outlives the call.
    let unmounted = cvt(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) });
    std::fs::remove_file(&path)?;
    match unmounted {
        // EINVAL: it was not mounted (a leftover file); removing it was all there was to do.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => Err(e),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Netlink
// ---------------------------------------------------------------------------------------------

fn netlink_bind(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain data for which all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes living across the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            len,
        )
    })?;
    Ok(())
}

fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    let len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: SO_RCVTIMEO reads one timeval of `len` bytes from `tv`, which outlives the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            len,
        )
    })?;
    Ok(())
}

/// How long a netlink request may wait for the kernel's answer before it is an error.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

fn netlink_setup(fd: OwnedFd) -> io::Result<OwnedFd> {
    netlink_bind(fd.as_fd())?;
    set_recv_timeout(fd.as_fd(), NETLINK_TIMEOUT)?;
    Ok(fd)
}

/// A bound `NETLINK_ROUTE` socket in the calling thread's network namespace (blocking, with a
/// receive timeout).
pub(crate) fn netlink_route_socket() -> io::Result<OwnedFd> {
    netlink_setup(socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW,
        libc::NETLINK_ROUTE,
    )?)
}

/// Same, in the network namespace `nsfd`.
pub(crate) fn netlink_route_socket_in(nsfd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = socket_in_netns(nsfd, libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    netlink_setup(fd)
}

// ---- AF_PACKET and unix sockets ----

/// `ETH_P_ALL` in network byte order, as `socket`/`bind` want the protocol of a packet socket.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// A non-blocking, close-on-exec `AF_PACKET`/`SOCK_RAW` socket with protocol 0 (it receives
/// nothing until [`packet_bind`] names a device and a protocol), in the namespace `nsfd` (the
/// calling thread's when `None`).
pub(crate) fn packet_socket(nsfd: Option<BorrowedFd<'_>>) -> io::Result<OwnedFd> {
    let ty = libc::SOCK_RAW | libc::SOCK_NONBLOCK;
    match nsfd {
        Some(ns) => socket_in_netns(ns, libc::AF_PACKET, ty, 0),
        None => socket(libc::AF_PACKET, ty, 0),
    }
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub(crate) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> io::Result<()> {
    // SAFETY: the kernel reads one C int of the given size from `value`, which outlives the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const c_int).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `PACKET_VNET_HDR`, `PACKET_IGNORE_OUTGOING`, `PACKET_QDISC_BYPASS` on a packet socket.
pub(crate) fn packet_set_options(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
    set_int_option(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    set_int_option(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
}

/// Binds a packet socket to `ifindex` for every protocol (`ETH_P_ALL`). Binding again moves
/// the socket to another device (the way a port re-attaches to a re-created netdev).
pub(crate) fn packet_bind(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data for which all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL_BE;
    addr.sll_ifindex = c_int::try_from(ifindex).map_err(|_| einval("ifindex out of range"))?;
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes living across the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            len,
        )
    })?;
    Ok(())
}

/// `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`: the device is promiscuous while this socket
/// is open (the kernel counts it, and drops it when the socket closes or the device goes away).
pub(crate) fn packet_add_promisc(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    // SAFETY: packet_mreq is plain data for which all-zero bytes are a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = c_int::try_from(ifindex).map_err(|_| einval("ifindex out of range"))?;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    // SAFETY: the kernel reads one packet_mreq of the given size from `mreq`, which outlives the
    // call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `PACKET_FANOUT` type of a switch's packet port: by the flow's (symmetric) hash, so a flow
/// stays with one socket, reassembling IP fragments first so they hash as their datagram.
const FANOUT_HASH: c_uint = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;

/// Makes the bound packet socket `fd` the first of a new `PACKET_FANOUT` group (hash), with an
/// id the kernel picks among the unused ones (`PACKET_FANOUT_FLAG_UNIQUEID`, Linux 4.3+), and
/// returns that id, for [`packet_fanout_join`].
pub(crate) fn packet_fanout_new(fd: BorrowedFd<'_>) -> io::Result<u16> {
    let arg = ((FANOUT_HASH | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16) as c_int;
    set_int_option(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, arg)?;
    let mut val: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes (one C int) into `val` and the length into
    // `len`, both on our stack for the whole call.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&mut val as *mut c_int).cast(),
            &mut len,
        )
    })?;
    // The low 16 bits are the id; type and flags are above.
    Ok(val as u16)
}

/// Adds the bound packet socket `fd` to the `PACKET_FANOUT` group `id` of [`packet_fanout_new`]
/// (same device, protocol and type).
pub(crate) fn packet_fanout_join(fd: BorrowedFd<'_>, id: u16) -> io::Result<()> {
    let arg = ((FANOUT_HASH << 16) | c_uint::from(id)) as c_int;
    set_int_option(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, arg)
}

/// Most frames one [`recv_many`] takes.
pub(crate) const RECV_MANY_MAX: usize = 16;

/// `recvmmsg(2)` with `MSG_DONTWAIT` of up to [`RECV_MANY_MAX`] datagrams, datagram `i` into
/// `bufs[i][offset..len - tail]` (`tail` bytes kept free at the end) with its length in `lens[i]`; returns how many (at least 1), or the
/// error of the first (`WouldBlock` when none is waiting). A datagram larger than its buffer
/// is cut (its length says so only up to the buffer).
///
/// With `PACKET_AUXDATA` on the socket, `tags[i]` is datagram `i`'s VLAN tag that the kernel
/// took off (as [`recv_packet`] reports it).
pub(crate) fn recv_many(
    fd: BorrowedFd<'_>,
    bufs: &mut [Vec<u8>],
    offset: usize,
    tail: usize,
    lens: &mut [usize],
    tags: &mut [Option<(u16, u16)>],
) -> io::Result<usize> {
    let n = bufs
        .len()
        .min(lens.len())
        .min(tags.len())
        .min(RECV_MANY_MAX);
    // Room for one cmsg holding a tpacket_auxdata per datagram, 8-byte aligned.
    let mut control = [[0u64; 8]; RECV_MANY_MAX];
    // SAFETY: iovec and mmsghdr are plain data for which all-zero bytes are valid values (null
    // pointers and zero lengths, no name, no control data).
    let mut iov: [libc::iovec; RECV_MANY_MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; RECV_MANY_MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let end = bufs[i].len().saturating_sub(tail).max(offset);
        let buf = bufs[i].get_mut(offset..end).unwrap_or_default();
        iov[i] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control[i].as_mut_ptr().cast();
        msgs[i].msg_hdr.msg_controllen = std::mem::size_of_val(&control[i]);
    }
    // SAFETY: the first `n` headers each point at one iovec over a distinct buffer borrowed
    // mutably for the whole call (the kernel writes at most `iov_len` bytes there and the
    // lengths into `msgs`) and at their own control buffer in `control` (at most
    // `msg_controllen` bytes); `iov`, `control` and `msgs` outlive the call; no timeout pointer.
    let got = cvt(unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    })? as usize;
    for i in 0..got {
        lens[i] = msgs[i].msg_len as usize;
        tags[i] = aux_vlan_tag(&msgs[i].msg_hdr);
    }
    Ok(got)
}

/// `struct tpacket_auxdata` (linux/if_packet.h): what `PACKET_AUXDATA` reports per frame.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `PACKET_AUXDATA` on a packet socket: each frame's VLAN tag, which the kernel took off it on
/// receive (`skb_vlan_untag`), comes with it ([`recv_packet`]).
pub(crate) fn packet_set_auxdata(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
}

/// `recvmsg(2)` on a packet socket with `PACKET_AUXDATA` on: the frame's length, and the
/// (TPID, TCI) of the VLAN tag the kernel took off it, if there was one.
pub(crate) fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<(u16, u16)>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one cmsg holding a tpacket_auxdata, 8-byte aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data for which all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `iov` points into `buf` and `msg_control` into `control`, both borrowed mutably
    // for the whole call; the kernel writes at most their lengths.
    let n = cvt_len(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) })?;
    Ok((n, aux_vlan_tag(&msg)))
}

/// The VLAN tag in a `PACKET_AUXDATA` control message of `msg`, which `recvmsg` or `recvmmsg`
/// filled (its control buffer still alive and not otherwise borrowed).
fn aux_vlan_tag(msg: &libc::msghdr) -> Option<(u16, u16)> {
    let mut tag = None;
    // SAFETY: `msg` was filled by recvmsg/recvmmsg; CMSG_FIRSTHDR/NXTHDR stay inside its
    // `msg_controllen` bytes of its control buffer, which is alive and not otherwise borrowed.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null cmsg from CMSG_FIRSTHDR/NXTHDR points at a whole header in the
        // control buffer.
        let c = unsafe { &*cmsg };
        // SAFETY: CMSG_LEN is arithmetic on its argument only.
        let want = unsafe { libc::CMSG_LEN(std::mem::size_of::<TpacketAuxdata>() as u32) } as usize;
        if c.cmsg_level == libc::SOL_PACKET
            && c.cmsg_type == libc::PACKET_AUXDATA
            && c.cmsg_len as usize >= want
        {
            // SAFETY: the cmsg's length covers a tpacket_auxdata behind its header (checked
            // above); read_unaligned makes no assumption about its alignment.
            let aux: TpacketAuxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0x8100
                };
                tag = Some((tpid, aux.tp_vlan_tci));
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    tag
}

/// `sendmsg(2)` of the concatenation of `parts` in one call (one packet on a packet socket),
/// `MSG_DONTWAIT | MSG_NOSIGNAL`, to the socket's bound device or connected peer.
pub(crate) fn send_parts(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<usize> {
    let iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr().cast_mut().cast(),
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: msghdr is plain data for which all-zero bytes are a valid value (no name, no
    // control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr().cast_mut();
    msg.msg_iovlen = iov.len();
    // SAFETY: every iovec points into a slice borrowed for the whole call; the kernel only reads
    // them (sendmsg never writes through msg_iov), and `iov` outlives the call.
    cvt_len(unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

impl Epoll {
    /// Changes the interest of an fd already watched: `EPOLLIN`, plus `EPOLLOUT` when `writable`
    /// (a port with output waiting for room in its socket).
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, token: u64, writable: bool) -> io::Result<()> {
        let out = if writable { libc::EPOLLOUT as u32 } else { 0 };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32 | out,
            u64: token,
        };
        // SAFETY: EPOLL_CTL_MOD reads one `epoll_event` from `ev`, which lives across the call.
        cvt(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })?;
        Ok(())
    }
}

// ---- offloads ----
// (and the rest of the speed work: whatever the data path needs from the kernel beyond I/O)

/// Sets the calling thread's nice value (`setpriority(PRIO_PROCESS, 0, nice)`: on Linux the nice
/// value is per thread, and who = 0 names the caller).
pub fn set_thread_nice(nice: c_int) -> io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) })?;
    Ok(())
}

/// `/proc/thread-self/net/dev` as seen from the network namespace `nsfd`: the per-netdev
/// counters, including what each driver dropped. Read by a helper thread that enters the
/// namespace; the caller's thread never moves.
pub(crate) fn proc_net_dev_in(nsfd: BorrowedFd<'_>) -> io::Result<String> {
    on_fresh_thread(move || {
        setns_net(nsfd)?;
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn thread_nice_is_per_thread() {
        // Lowering priority needs no privilege; the main test thread keeps its own value.
        let before = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let nice_of = |stat: &str| -> i64 {
            let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
            after_comm.split(' ').nth(16).unwrap().parse().unwrap()
        };
        let there = std::thread::spawn(move || {
            set_thread_nice(5).unwrap();
            nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(there, 5);
        let here = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        assert_eq!(here, nice_of(&before));
    }

    #[test]
    fn ifreq_name_round_trip_and_limits() {
        let req = IfReq::with_name("sy-vm1").unwrap();
        assert_eq!(req.name(), "sy-vm1");
        assert!(IfReq::with_name("0123456789abcde").is_ok());
        assert!(IfReq::with_name("0123456789abcdef").is_err());
        assert!(IfReq::with_name("a\0b").is_err());
        let mut req = IfReq::with_name("x").unwrap();
        req.set_flags(TAP_FLAGS as c_short);
        assert_eq!(c_int::from(req.flags()), TAP_FLAGS);
    }

    #[test]
    fn epoll_reports_the_token_of_a_readable_fd() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(a.as_fd(), 7).unwrap();
        let mut events = Events::with_capacity(4);
        let (zero, second) = (Duration::ZERO, Duration::from_secs(1));
        assert_eq!(ep.wait(&mut events, zero).unwrap(), 0);
        assert!(events.is_empty());
        b.write_all(b"x").unwrap();
        assert_eq!(ep.wait(&mut events, second).unwrap(), 1);
        assert_eq!(events.token(0), 7);
        let ev: Vec<_> = events.iter().collect();
        assert!(ev.len() == 1 && ev[0].is_readable() && !ev[0].is_error_or_hangup());
        // Level-triggered: still readable while the byte is unread.
        assert_eq!(ep.wait(&mut events, zero).unwrap(), 1);
        drop(b);
        ep.wait(&mut events, zero).unwrap();
        assert!(events.iter().next().unwrap().is_error_or_hangup());
        ep.delete(a.as_fd()).unwrap();
        assert_eq!(ep.wait(&mut events, zero).unwrap(), 0);
        assert_eq!(events.len(), 0);
    }

    #[test]
    fn blocked_signal_is_taken_by_wait_signal() {
        // Signal masks are per thread: do it on a thread of our own so other tests are unaffected.
        std::thread::spawn(|| {
            block_signals(&[libc::SIGUSR2]).unwrap();
            assert_eq!(
                wait_signal(&[libc::SIGUSR2], Duration::from_millis(10)).unwrap(),
                None
            );
            // SAFETY: raise sends SIGUSR2 to this thread, where it is blocked: it stays pending.
            assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
            let got = wait_signal(&[libc::SIGUSR2], Duration::from_secs(1)).unwrap();
            assert_eq!(got, Some(libc::SIGUSR2));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn zero_capacity_still_waits() {
        let ep = Epoll::new().unwrap();
        let mut events = Events::with_capacity(0);
        assert_eq!(ep.wait(&mut events, Duration::from_micros(10)).unwrap(), 0);
    }

    #[test]
    fn bad_signal_number_is_an_error() {
        assert!(block_signals(&[100_000]).is_err());
    }

    #[test]
    fn named_netns_refuses_paths() {
        for bad in ["", "a/b", ".", ".."] {
            assert!(create_named_netns(bad).is_err(), "{bad:?}");
            assert!(remove_named_netns(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_file_is_not_a_namespace() {
        let f = File::open("/proc/self/status").unwrap();
        assert!(!is_net_namespace(f.as_fd()).unwrap());
        let ns = open_netns(Path::new(THREAD_NETNS)).unwrap();
        assert!(is_net_namespace(ns.as_fd()).unwrap());
    }
}

// ---- control socket ----

/// The credentials of the process at the other end of a connected unix socket, as the kernel
/// recorded them at `connect` time (SO_PEERCRED): they cannot be forged by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `getsockopt(SO_PEERCRED)` on a connected unix socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable ucred and `len` holds its exact size; the kernel
    // writes at most `len` bytes and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

// ---- privileges ----
//
// Capabilities are per thread: `capset` and `PR_CAPBSET_DROP` change the calling thread, and
// threads created afterwards inherit its sets. The daemon drops on its main thread before it
// starts any long-lived thread, so every thread runs with what is left.

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set (capabilities 0..=63).
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit word of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets, as masks (bit N: capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `capget(2)` of the calling thread.
pub fn cap_get() -> io::Result<CapSets> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads the header and writes two `__user_cap_data_struct`s (version 3);
    // both are live, exclusively borrowed and of the layout the kernel expects.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) as c_int
    })?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// `capset(2)` of the calling thread. The kernel refuses to add to `permitted`, so this can only
/// narrow what the thread has.
pub fn cap_set(sets: &CapSets) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let word = |m: u64, i: u32| (m >> (32 * i)) as u32;
    let data = [0, 1].map(|i| CapData {
        effective: word(sets.effective, i),
        permitted: word(sets.permitted, i),
        inheritable: word(sets.inheritable, i),
    });
    // SAFETY: capset reads the header and two `__user_cap_data_struct`s (version 3); both
    // outlive the call and have the layout the kernel expects.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) as c_int
    })?;
    Ok(())
}

/// `prctl(PR_CAPBSET_DROP, cap)`: removes `cap` from the calling thread's bounding set, so
/// nothing it (or a program it executes) runs can regain it. Needs `CAP_SETPCAP`.
pub fn cap_bound_drop(cap: u32) -> io::Result<()> {
    // SAFETY: prctl with PR_CAPBSET_DROP takes plain integers and touches no memory of ours.
    cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) })?;
    Ok(())
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`: empties the calling thread's ambient set.
pub fn cap_ambient_clear() -> io::Result<()> {
    // SAFETY: prctl with PR_CAP_AMBIENT takes plain integers and touches no memory of ours.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn cap_last_cap() -> io::Result<u32> {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?
        .trim()
        .parse()
        .map_err(|_| einval("/proc/sys/kernel/cap_last_cap is not a number"))
}

/// Raises `RLIMIT_NICE` (soft and hard) so that threads may lower their nice value down to
/// `nice` without `CAP_SYS_NICE` (the limit is `20 - nice`). Raising it needs
/// `CAP_SYS_RESOURCE`, so call it before dropping that.
pub fn allow_nice(nice: i32) -> io::Result<()> {
    let limit = libc::rlim_t::try_from(20 - nice).map_err(|_| einval("nice out of range"))?;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads one `struct rlimit`, which outlives the call.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NICE, &rl) })?;
    Ok(())
}

/// What a netdev looks like, read without privilege (`SIOCGIFMTU`, `SIOCGIFFLAGS`,
/// `SIOCGIFTXQLEN` in the calling thread's namespace): to check a tap made ahead of time by
/// someone who could configure it when the daemon cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub(crate) mtu: u32,
    pub(crate) up: bool,
    pub(crate) tx_queue_len: u32,
}

pub(crate) fn link_state(name: &str) -> io::Result<LinkState> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let get_int = |request: c_ulong| -> io::Result<IfReq> {
        let mut req = IfReq::with_name(name)?;
        // SAFETY: SIOCGIFMTU, SIOCGIFFLAGS and SIOCGIFTXQLEN read the name from and write one
        // int or short into one `struct ifreq`; `req` is a live, exclusively borrowed value of
        // exactly that size.
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req as *mut IfReq) })?;
        Ok(req)
    };
    let int = |r: &IfReq| c_int::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]);
    let mtu = int(&get_int(libc::SIOCGIFMTU)?);
    let up = c_int::from(get_int(libc::SIOCGIFFLAGS)?.flags()) & libc::IFF_UP != 0;
    let qlen = int(&get_int(libc::SIOCGIFTXQLEN)?);
    Ok(LinkState {
        mtu: u32::try_from(mtu).unwrap_or(0),
        up,
        tx_queue_len: u32::try_from(qlen).unwrap_or(0),
    })
}

// ---- memory helpers for the data plane (no system calls) ----

/// `n` atomics, all zero, from a zeroed allocation: for a large table the allocator maps fresh
/// zero pages and the kernel commits each page on its first write, so a table sized for its cap
/// costs memory only where entries land.
///
/// # Panics
/// If `n` atomics would exceed `isize::MAX` bytes (as `vec!` does).
pub(crate) fn zeroed_atomic_u64s(n: usize) -> Box<[std::sync::atomic::AtomicU64]> {
    use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
    use std::sync::atomic::AtomicU64;
    if n == 0 {
        return Box::new([]);
    }
    let layout = Layout::array::<AtomicU64>(n).expect("capacity overflow");
    // SAFETY: `layout` has a non-zero size (n > 0).
    let p = unsafe { alloc_zeroed(layout) }.cast::<AtomicU64>();
    if p.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `p` is a live allocation of the global allocator with the layout of `n`
    // `AtomicU64`s (exactly what `Box<[AtomicU64]>` frees it with), all bytes zero, and zero is a
    // valid `AtomicU64`; nothing else owns it.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) }
}

/// Asks the CPU to bring the cache line holding `p` into every cache level; a hint with no
/// effect on the program's meaning (a no-op off x86_64).
#[inline(always)]
pub(crate) fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is in the x86_64 baseline
    // this crate is built for); a prefetch never faults, and `p` is a valid reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

// vhost-user ports (src/port/vhost_user) and the benchmark guest: the guest memory and the
// eventfds. Every access to guest memory itself goes through vm-memory's checked copies.

/// Sets `O_NONBLOCK` on `fd` (an eventfd the frontend sent us may be blocking).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take an int, no pointers; `fd` is open for the borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// `memfd_create(name, MFD_CLOEXEC)` sized to `size` bytes: the shared memory a guest (QEMU's
/// `memory-backend-memfd,share=on`, or `sy-vmguest`) hands to a vhost-user backend.
pub fn memfd(name: &str, size: u64) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(size)?;
    Ok(file)
}

/// Waits up to `timeout` for `fd` to be readable (`poll`); whether it is. For fds held by types
/// that expose only `AsRawFd` (vmm-sys-util's `EventFd`).
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd for the call's duration; the fd is kept open by the
    // borrowed owner, and poll never takes ownership of it.
    let n = cvt(unsafe { libc::poll(&mut pfd, 1, ms) })?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// Fills `buf` from the kernel's CSPRNG (`getrandom(2)`, flags 0: blocks only until the pool is
/// first seeded at boot). For what an off-path attacker must not guess: DNS query ids and
/// source ports (RFC 5452).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into the mutably borrowed buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match cvt_len(n) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `UDP_SEGMENT` (linux/udp.h): a sendmsg control message asking the kernel to cut the buffer
/// into datagrams of this many bytes (UDP GSO).
const UDP_SEGMENT: c_int = 103;

/// `sendmsg(2)` of `parts` concatenated, as one datagram to `to` (a UDP socket's VXLAN header
/// and frame without copying them together), `MSG_DONTWAIT | MSG_NOSIGNAL`.
pub(crate) fn send_to_parts(
    fd: BorrowedFd<'_>,
    to: &std::net::SocketAddr,
    parts: [&[u8]; 2],
) -> io::Result<usize> {
    let iov = parts.map(|p| libc::iovec {
        iov_base: p.as_ptr().cast_mut().cast(),
        iov_len: p.len(),
    });
    sendmsg_to(fd, to, &iov, None)
}

/// `sendmsg(2)` of `buf` to `to` with `UDP_SEGMENT`: the kernel sends it as datagrams of
/// `segment` bytes each (the last may be shorter), in one pass through the stack (UDP GSO,
/// Linux 4.18). At most 64 datagrams and 64 KiB a call.
pub(crate) fn send_to_segmented(
    fd: BorrowedFd<'_>,
    to: &std::net::SocketAddr,
    buf: &[u8],
    segment: u16,
) -> io::Result<usize> {
    let iov = [libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    }];
    sendmsg_to(fd, to, &iov, Some(segment))
}

fn sendmsg_to(
    fd: BorrowedFd<'_>,
    to: &std::net::SocketAddr,
    iov: &[libc::iovec],
    udp_segment: Option<u16>,
) -> io::Result<usize> {
    // SAFETY: sockaddr_in6 and sockaddr_in are plain data for which all-zero bytes are valid.
    let mut v6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut v4: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let (name, len): (*mut libc::c_void, usize) = match to {
        std::net::SocketAddr::V4(a) => {
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            (
                (&mut v4 as *mut libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>(),
            )
        }
        std::net::SocketAddr::V6(a) => {
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_addr.s6_addr = a.ip().octets();
            v6.sin6_flowinfo = a.flowinfo();
            v6.sin6_scope_id = a.scope_id();
            (
                (&mut v6 as *mut libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>(),
            )
        }
    };
    // Room for one cmsghdr and a u16, 8-byte aligned (CMSG_SPACE(2) is 24 on 64-bit Linux).
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data for which all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name;
    msg.msg_namelen = len as libc::socklen_t;
    msg.msg_iov = iov.as_ptr().cast_mut();
    msg.msg_iovlen = iov.len();
    if let Some(segment) = udp_segment {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
        debug_assert!(space <= size_of::<[u64; 4]>());
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` zeroed, aligned bytes we own, so CMSG_FIRSTHDR
        // returns a pointer to the first cmsghdr inside them (non-null: space >= its size), and
        // CMSG_DATA a pointer to the 2 bytes after it, still inside the buffer.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
        }
    }
    // SAFETY: `msg_name` points at a sockaddr of `msg_namelen` bytes, every iovec into a slice
    // borrowed for the whole call, `msg_control` (if set) at `control`; the kernel only reads
    // them, and all outlive the call.
    cvt_len(unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}
