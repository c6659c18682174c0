//! vhost-user ports: the switch is the virtio-net device of a VM whose memory it maps.
//!
//! # Theory of operation
//!
//! QEMU (`-netdev vhost-user`) or libvirt (`<interface type='vhostuser'>`) connects to a unix
//! socket the port listens on (`mode = "server"`, the default), or the port connects to one
//! QEMU listens on (`mode = "client"`, retrying every [`RECONNECT`] until it is there). Over that
//! socket the frontend hands over the guest's memory (memfd regions, mapped here with
//! `vm-memory`), the two virtqueues' addresses and their kick/call eventfds (module `device`).
//!
//! The socket is served by one control-plane thread per port, blocking in `vhost`'s
//! `BackendReqHandler`. The data plane never touches it: the TX ring's kick eventfd is in the
//! port's own epoll set, and that set's fd is what [`VhostUserPort::fd`] gives the worker's
//! epoll, so a guest's kick wakes the worker that owns the port, which then takes frames straight
//! from the ring (module `ring`) with no system call per frame and no thread hop. Writing to the
//! port fills the guest's RX ring and, when the guest asked to be told (EVENT_IDX), writes its
//! call eventfd.
//!
//! Life of a port: down until a guest has set up both rings; up while they run; down again when
//! the guest stops them (reboot, device reset), disconnects or crashes, and up when it starts
//! them again or a new connection does. QEMU's `reconnect=` brings a guest back after switchyard
//! restarts: the new connection replays the whole setup with the ring positions QEMU kept. A bad
//! descriptor (outside the memory table, a loop, the wrong direction, too short) stops the port,
//! counted (`bad_chains`) and logged, until the guest restarts its rings.
//!
//! # Limits
//!
//! One queue pair (no multiqueue), no control virtqueue, no live-migration dirty log, no
//! in-flight tracking, no `CONFIGURE_MEM_SLOTS` (QEMU then sends whole memory tables).

mod device;
#[doc(hidden)]
pub mod fuzzing;
pub mod guest;
mod ring;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::{BackendReqHandler, Error as VuError, Listener};

use self::device::{Device, Shared};
use self::ring::RingError;
use crate::control::config::{PortConfig, VhostUserConfig, VhostUserMode};
use crate::port::link::LinkState;
use crate::port::sys::Epoll;
use crate::port::{PortError, PortIo, RxQueue};

pub use self::device::features;

/// How often a client-mode port tries to connect to a socket that is not there yet, and how
/// often a listening port looks at its stop flag.
pub const RECONNECT: Duration = Duration::from_millis(200);

/// Who connects to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The port listens on `path`; QEMU connects (`-chardev socket,path=...,reconnect=1`).
    Server,
    /// QEMU listens on `path` (`-chardev socket,path=...,server=on`); the port connects.
    Client,
}

/// A vhost-user port.
#[derive(Debug)]
pub struct VhostUserPort {
    dev: Arc<Mutex<Device>>,
    shared: Arc<Shared>,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    mode: Mode,
}

/// What the port's control thread shares with the port.
#[derive(Debug, Default)]
struct Control {
    stop: AtomicBool,
    /// The live connection, to shut it down (which ends the thread's blocking read).
    conn: Mutex<Option<UnixStream>>,
}

impl VhostUserPort {
    /// Listens on (server) or connects to (client) `path` and serves the vhost-user protocol
    /// there on a thread named after `name`. A server's socket file is replaced if stale (a
    /// live one, or another file, is refused) and removed when the port is dropped.
    pub fn open(name: &str, path: &Path, mode: Mode) -> Result<VhostUserPort, PortError> {
        let err = |action: &str, err: io::Error| PortError::Socket {
            path: path.to_path_buf(),
            action: action.to_string(),
            err,
        };
        if mode == Mode::Server {
            crate::port::socket::prepare_path(path)?;
        }
        let shared = Arc::new(Shared {
            link: LinkState::new(false),
            kicks: Epoll::new().map_err(|e| err("create its epoll set", e))?,
            bad_chains: Default::default(),
            rx_full: Default::default(),
            offloads: Default::default(),
            name: name.to_string(),
        });
        let dev = Arc::new(Mutex::new(Device::new(shared.clone())));
        let control = Arc::new(Control::default());
        let listener = match mode {
            Mode::Server => {
                let l = Listener::new(path, false).map_err(|e| err("listen on it", vu_io(e)))?;
                l.set_nonblocking(true)
                    .map_err(|e| err("make it non-blocking", vu_io(e)))?;
                Some(l)
            }
            Mode::Client => None,
        };
        let (d, c, p) = (dev.clone(), control.clone(), path.to_path_buf());
        let thread = std::thread::Builder::new()
            .name(format!("vu-{name}"))
            .spawn(move || serve(&d, &c, listener, &p))
            .map_err(|e| err("start its thread", e))?;
        Ok(VhostUserPort {
            dev,
            shared,
            control,
            thread: Some(thread),
            path: path.to_path_buf(),
            mode,
        })
    }

    /// The port's kick set: readable while the guest has kicked its TX ring.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.kicks.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn device(&self) -> std::sync::MutexGuard<'_, Device> {
        self.dev.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the guest's next frame (12-byte virtio-net header + frame) into `buf`.
    /// `WouldBlock` when there is none or the port is down. A frame larger than `buf` is
    /// dropped and counted as oversize; a bad descriptor stops the port.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut dev = self.device();
        loop {
            match dev.pop_tx(buf) {
                Ok(n) => return Ok(n),
                Err(RingError::TooBig) => self.shared.link.note_oversize(),
                Err(_) => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Gives one header + frame to the guest. `WouldBlock`: its RX ring is full (dropped);
    /// `NotConnected`: no running guest; `InvalidInput`: larger than a guest without mergeable
    /// buffers posted room for.
    pub fn send(&self, bytes: &[u8]) -> io::Result<usize> {
        match self.device().push_rx(bytes) {
            Ok(n) => Ok(n),
            Err(RingError::Full) => {
                self.shared.rx_full.fetch_add(1, Ordering::Relaxed);
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(RingError::TooBig) => Err(io::ErrorKind::InvalidInput.into()),
            Err(_) => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Whether the guest negotiated GUEST_CSUM and GUEST_TSO4/6 (else it gets complete,
    /// MTU-sized frames).
    pub fn accepts_offloads(&self) -> bool {
        self.shared.offloads.load(Ordering::Relaxed)
    }

    pub fn link(&self) -> &LinkState {
        &self.shared.link
    }

    /// Bad descriptor chains seen since the port was opened.
    pub fn bad_chains(&self) -> u64 {
        self.shared.bad_chains.load(Ordering::Relaxed)
    }

    /// Frames dropped because the guest's RX ring was full.
    pub fn rx_full(&self) -> u64 {
        self.shared.rx_full.load(Ordering::Relaxed)
    }
}

impl Drop for VhostUserPort {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self
            .control
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn vu_io(e: VuError) -> io::Error {
    match e {
        VuError::SocketError(e) | VuError::SocketConnect(e) | VuError::ReqHandlerError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The control thread: accept (or connect), serve the connection until it ends, forget it,
/// and start again, until the port is dropped.
fn serve(dev: &Arc<Mutex<Device>>, control: &Control, listener: Option<Listener>, path: &Path) {
    let name = dev
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .shared
        .name
        .clone();
    while !control.stop.load(Ordering::Relaxed) {
        let stream = match &listener {
            Some(l) => l.accept().map_err(vu_io),
            None => UnixStream::connect(path).map(Some),
        };
        let stream = match stream {
            Ok(Some(s)) => s,
            Ok(None) => {
                std::thread::sleep(RECONNECT);
                continue;
            }
            Err(e) => {
                tracing::debug!(port = %name, error = %e, "no vhost-user connection yet");
                std::thread::sleep(RECONNECT);
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        tracing::info!(port = %name, "vhost-user frontend connected");
        *control.conn.lock().unwrap_or_else(PoisonError::into_inner) = stream.try_clone().ok();
        // The stop flag may have been set before `conn` was stored.
        if control.stop.load(Ordering::Relaxed) {
            break;
        }
        let mut handler = BackendReqHandler::from_stream(stream, dev.clone());
        loop {
            match handler.handle_request() {
                Ok(()) => {}
                Err(e) if is_connection_error(&e) => {
                    tracing::info!(port = %name, reason = %e, "vhost-user frontend gone");
                    break;
                }
                Err(e) => tracing::warn!(port = %name, error = %e, "vhost-user request refused"),
            }
        }
        *control.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
        dev.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .disconnect();
    }
}

/// Errors after which the connection cannot go on (the others refuse one request).
fn is_connection_error(e: &VuError) -> bool {
    !matches!(
        e,
        VuError::InvalidParam
            | VuError::InvalidOperation(_)
            | VuError::InactiveFeature(_)
            | VuError::InactiveOperation(_)
            | VuError::ReqHandlerError(_)
    )
}

impl VhostUserPort {
    /// Opens vhost-user port `p` (`cfg` its section).
    pub fn from_config(p: &PortConfig, cfg: &VhostUserConfig) -> Result<VhostUserPort, PortError> {
        let mode = match cfg.mode {
            VhostUserMode::Server => Mode::Server,
            VhostUserMode::Client => Mode::Client,
        };
        let port = VhostUserPort::open(&p.name, &cfg.path, mode)?;
        tracing::info!(port = %p.name, path = %cfg.path.display(), mode = ?mode, "port: vhost-user");
        Ok(port)
    }
}

/// One fd for the worker's epoll, for the port's whole life: the port's own epoll set, in
/// which each connection's TX kick eventfd comes and goes.
impl PortIo for VhostUserPort {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.fd()]
    }

    fn recv(&self, _rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        VhostUserPort::recv(self, buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        VhostUserPort::send(self, buf)
    }

    fn offloads(&self) -> bool {
        self.accepts_offloads()
    }

    fn link(&self) -> Option<&LinkState> {
        Some(&self.shared.link)
    }
}
