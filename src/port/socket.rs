//! Socket ports: QEMU (or anything speaking its framing) connects to a unix socket the switch
//! listens on. No tap, no root for the VM.
//!
//! # Theory of operation
//!
//! - [`StreamPort`] is QEMU's `-netdev stream,server=off,addr.type=unix,addr.path=PATH`: a
//!   `SOCK_STREAM` listener at `path`; each frame is preceded by its length, 4 bytes big-endian,
//!   not counting itself, at most [`MAX_FRAME`] (QEMU's `NET_BUFSIZE`). One peer at a time: a
//!   second connection while one is served is accepted and closed at once (so it cannot keep the
//!   listener readable). The port's fd for the workers is an epoll set of its own holding the
//!   listener and the peer, so it never changes as peers come and go; a worker woken by it calls
//!   [`StreamPort::recv`], which accepts, reads and reassembles.
//!   - Input: bytes are read into a per-peer buffer of two maximal frames and cut into frames
//!     there, so a length or a frame split over any number of reads (one byte at a time) comes
//!     out whole. A length of 0 or above `MAX_FRAME` cannot be resynchronised: the peer is
//!     disconnected and counted (`bad_length`); the worker never waits for the rest of anything.
//!   - Output: one `writev` of length + frame. What the socket does not take is kept, whole
//!     frames only, in a per-peer queue of at most [`TX_QUEUE_MAX`] bytes, flushed when the socket
//!     has room again (the peer's fd is then also watched for `EPOLLOUT`). A frame that does not
//!     fit in the queue is refused whole (`WouldBlock`, counted `tx_full`): never a torn frame.
//!   - EOF, a reset or any other read/write error disconnects the peer; the port is down until
//!     the next peer connects.
//! - [`DgramPort`] is QEMU's `-netdev dgram,local.type=unix,local.path=QEMU_PATH,
//!   remote.type=unix,remote.path=PATH`: a `SOCK_DGRAM` socket bound at `path`, one frame per
//!   datagram. The frames go back to `peer` if configured (QEMU's `local.path`), else to the
//!   address the latest datagram came from; the port is down until it has somewhere to send.
//!   A learned peer that is gone (`ECONNREFUSED`, `ENOENT`) is forgotten: the port goes down.
//!
//! Neither carries a virtio-net header: received frames get an all-zero one in front, and sent
//! frames lose theirs. A frame whose header asks for GSO or a checksum completion (a packet
//! port's TCP) is first made plain with `wire::gso`: segmented to the port's MTU, or its checksum
//! filled in, in a scratch buffer the port keeps (allocated the first time it is needed). One
//! that cannot be (malformed, or UFO) is refused with `ErrorKind::Unsupported`, counted
//! `needs_offload`.
//!
//! A socket file left behind by a dead daemon is replaced; one that a live process still listens
//! on (a connect succeeds) is an error. The port removes its socket file when dropped.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, RwLock};

use super::link::LinkState;
use super::{Epoll, PortError};
use crate::wire::{gso, VNET_HDR_LEN};

/// Largest frame QEMU's socket backends send or accept (`NET_BUFSIZE`: 4096 + 65536).
pub const MAX_FRAME: usize = 69_632;
/// Longest unix socket path (`sun_path` is 108 bytes with its NUL): the config checks it first.
pub use crate::control::config::MAX_SOCKET_PATH_LEN as MAX_PATH_LEN;
/// Bytes of output a stream port queues for a slow peer before it refuses frames.
pub const TX_QUEUE_MAX: usize = 256 * 1024;

const LEN_PREFIX: usize = 4;
/// Two maximal frames with their prefixes: a whole frame always fits after compaction.
const RX_BUF: usize = 2 * (LEN_PREFIX + MAX_FRAME);
const LISTENER: u64 = 0;
const PEER: u64 = 1;

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

/// Hands the frame in `buf` (virtio-net header + frame) to `send` without its header, as the
/// plain frames a NIC would have sent: as it is if it needs nothing, else segmented to `mtu` or
/// checksum-completed in `scratch` (grown to fit). Stops at the first error `send` returns.
/// `Unsupported` if the frame cannot be made plain.
fn for_each_plain_frame(
    buf: &[u8],
    mtu: u32,
    scratch: &mut Vec<u8>,
    mut send: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let Some(frame) = buf.get(VNET_HDR_LEN..) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    if !gso::needs_software(buf) {
        if frame.len() > MAX_FRAME {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        return send(frame);
    }
    if scratch.len() < buf.len() {
        scratch.resize(buf.len(), 0);
    }
    let mut result = Ok(());
    gso::for_each_segment(buf, mtu as usize, scratch, |seg| {
        if result.is_ok() {
            result = send(&seg[VNET_HDR_LEN..]);
        }
    })
    .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    result
}

/// Validates `path` and makes room for a socket there: creates the parent directory, removes
/// a stale socket file, refuses a live one or any other file.
pub(crate) fn prepare_path(path: &Path) -> Result<(), PortError> {
    let err = |action: &str, err: io::Error| PortError::Socket {
        path: path.to_path_buf(),
        action: action.to_string(),
        err,
    };
    let bytes = path.as_os_str().len();
    if !path.is_absolute() || bytes > MAX_PATH_LEN {
        return Err(err(
            "use it",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a socket path must be absolute and at most {MAX_PATH_LEN} bytes"),
            ),
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| err("create its directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err("look at it", e)),
        Ok(m) if !m.file_type().is_socket() => Err(err(
            "bind it",
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way (remove it or pick another path)",
            ),
        )),
        Ok(_) => {
            let live = UnixStream::connect(path).is_ok()
                || UnixDatagram::unbound()
                    .and_then(|s| s.connect(path))
                    .is_ok();
            if live {
                return Err(err(
                    "bind it",
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process is listening there (stop it or pick another path)",
                    ),
                ));
            }
            std::fs::remove_file(path).map_err(|e| err("remove the stale socket", e))
        }
    }
}

fn remove_socket_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
        }
    }
}

/// QEMU's stream framing, the listening side.
#[derive(Debug)]
pub struct StreamPort {
    path: PathBuf,
    mtu: u32,
    listener: UnixListener,
    /// The listener and the peer, if any: the fd the workers poll.
    poll: Epoll,
    peer: Mutex<Option<Peer>>,
    link: LinkState,
    /// The listener is in `poll`. Taken out when `accept` fails for want of resources (EMFILE),
    /// so a connection that cannot be accepted does not keep the worker spinning; the tick puts
    /// it back.
    listening: AtomicBool,
}

/// Cuts a byte stream in QEMU's framing into frames, whatever the reads' sizes: bytes are read
/// straight into [`FrameReassembler::space`], announced with [`FrameReassembler::filled`], and
/// whole frames come out of [`FrameReassembler::next_frame`]. Pure: no I/O, so it is unit-tested
/// and fuzzed on its own (`fuzz/fuzz_targets/stream.rs`).
#[derive(Debug)]
pub struct FrameReassembler {
    buf: Vec<u8>,
    /// `buf[start..end]` is received and not yet handed out.
    start: usize,
    end: usize,
}

/// A length prefix no frame can have (0, or above [`MAX_FRAME`]): the stream cannot be
/// resynchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLength(pub u32);

impl Default for FrameReassembler {
    fn default() -> Self {
        FrameReassembler::new()
    }
}

impl FrameReassembler {
    /// Room for two maximal frames with their prefixes: a whole frame always fits after
    /// compaction.
    pub fn new() -> FrameReassembler {
        FrameReassembler {
            buf: vec![0; RX_BUF],
            start: 0,
            end: 0,
        }
    }

    /// Where the next read goes. Call it once `next_frame` says `Ok(None)`: then it is never
    /// empty (a frame not yet whole always has room to finish).
    pub fn space(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 && self.end > RX_BUF / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were written at the front of [`FrameReassembler::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(RX_BUF);
    }

    /// The next whole frame, `None` if it has not all arrived, `BadLength` if its prefix is out
    /// of range (what follows is then meaningless; the caller disconnects).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, BadLength> {
        let have = self.end - self.start;
        if have < LEN_PREFIX {
            return Ok(None);
        }
        let p = &self.buf[self.start..self.start + LEN_PREFIX];
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        if len == 0 || len as usize > MAX_FRAME {
            return Err(BadLength(len));
        }
        let len = len as usize;
        if have < LEN_PREFIX + len {
            return Ok(None);
        }
        let from = self.start + LEN_PREFIX;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }
}

/// One connected peer and its buffers.
#[derive(Debug)]
struct Peer {
    stream: UnixStream,
    rx: FrameReassembler,
    /// Whole frames (the first possibly partly written) waiting for room in the socket.
    tx: Vec<u8>,
    /// The peer's fd is watched for `EPOLLOUT` (while `tx` is not empty).
    watching_out: bool,
    /// Where offloaded frames are made plain (empty until one comes).
    scratch: Vec<u8>,
}

impl Peer {
    fn new(stream: UnixStream) -> Peer {
        Peer {
            stream,
            rx: FrameReassembler::new(),
            tx: Vec::new(),
            watching_out: false,
            scratch: Vec::new(),
        }
    }

    /// Reads what the socket has into the reassembler: `Ok(false)` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            match self.stream.read(self.rx.space()) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.rx.filled(n);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much of the queue as the socket takes; watches for room if some is left.
    fn flush(&mut self, poll: &Epoll) -> io::Result<()> {
        while !self.tx.is_empty() {
            match self.stream.write(&self.tx) {
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let want_out = !self.tx.is_empty();
        if want_out != self.watching_out {
            poll.modify(self.stream.as_fd(), PEER, want_out)?;
            self.watching_out = want_out;
        }
        Ok(())
    }

    /// Writes one frame with its length prefix, queueing what the socket does not take.
    fn send(&mut self, poll: &Epoll, frame: &[u8]) -> io::Result<()> {
        let prefix = (frame.len() as u32).to_be_bytes();
        let total = LEN_PREFIX + frame.len();
        if !self.tx.is_empty() {
            self.flush(poll)?;
        }
        let written = if self.tx.is_empty() {
            loop {
                match self
                    .stream
                    .write_vectored(&[IoSlice::new(&prefix), IoSlice::new(frame)])
                {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(e) => return Err(e),
                }
            }
        } else {
            0
        };
        if written == total {
            return Ok(());
        }
        // Queue the rest: a frame partly written must be finished; one not started at all may
        // be refused if the queue is full.
        if written == 0 && self.tx.len() + total > TX_QUEUE_MAX {
            return Err(would_block());
        }
        if written < LEN_PREFIX {
            self.tx.extend_from_slice(&prefix[written..]);
            self.tx.extend_from_slice(frame);
        } else {
            self.tx.extend_from_slice(&frame[written - LEN_PREFIX..]);
        }
        self.flush(poll)
    }
}

impl StreamPort {
    /// Listens on `path` (replacing a stale socket file, creating the directory); frames that
    /// need segmenting are cut to `mtu`.
    pub fn open(path: &Path, mtu: u32) -> Result<StreamPort, PortError> {
        let err = |action: &str, err: io::Error| PortError::Socket {
            path: path.to_path_buf(),
            action: action.to_string(),
            err,
        };
        prepare_path(path)?;
        let listener = UnixListener::bind(path).map_err(|e| err("listen on it", e))?;
        // From here on a failure must not leave the socket file behind.
        let cleanup = |e: PortError| {
            remove_socket_file(path);
            e
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| cleanup(err("make it non-blocking", e)))?;
        let poll = Epoll::new().map_err(|e| cleanup(err("create its epoll set", e)))?;
        poll.add(listener.as_fd(), LISTENER)
            .map_err(|e| cleanup(err("watch it", e)))?;
        Ok(StreamPort {
            path: path.to_path_buf(),
            mtu,
            listener,
            poll,
            peer: Mutex::new(None),
            link: LinkState::new(false),
            listening: AtomicBool::new(true),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Peer>> {
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the peer: the port is down until the next one connects.
    fn disconnect(&self, slot: &mut Option<Peer>, why: &str) {
        if let Some(peer) = slot.take() {
            // Down first, then close: a peer that sees the close finds the port already down.
            self.link.set_up(false);
            let _ = self.poll.delete(peer.stream.as_fd());
            drop(peer);
            tracing::info!(path = %self.path.display(), why, "stream port: peer disconnected");
        }
    }

    /// Accepts waiting connections: the first becomes the peer if there is none, the others
    /// are closed.
    fn accept(&self, slot: &mut Option<Peer>) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // The connection stays queued: stop watching the listener until the next
                    // tick rather than wake up for it again and again.
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "stream port: accept failed; retrying next tick");
                    if self.poll.delete(self.listener.as_fd()).is_ok() {
                        self.listening.store(false, Relaxed);
                    }
                    return;
                }
            };
            if slot.is_some() {
                tracing::warn!(path = %self.path.display(),
                    "stream port: a second peer connected; closed (one peer at a time)");
                continue;
            }
            let ready = stream
                .set_nonblocking(true)
                .and_then(|()| self.poll.add(stream.as_fd(), PEER));
            match ready {
                Ok(()) => {
                    tracing::info!(path = %self.path.display(), "stream port: peer connected");
                    *slot = Some(Peer::new(stream));
                    self.link.set_up(true);
                }
                Err(e) => tracing::warn!(path = %self.path.display(), error = %e,
                    "stream port: cannot take the peer"),
            }
        }
    }

    /// Once a tick: watches the listener again if a failed `accept` took it out.
    pub fn tick(&self) {
        if !self.listening.load(Relaxed) && self.poll.add(self.listener.as_fd(), LISTENER).is_ok() {
            self.listening.store(true, Relaxed);
        }
    }

    /// Hands out the next whole frame as a zero virtio-net header + frame; accepts a new peer
    /// when the current one has nothing more. `WouldBlock` when there is nothing whole yet.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut slot = self.lock();
        while let Some(peer) = slot.as_mut() {
            if let Err(e) = peer.flush(&self.poll) {
                self.disconnect(&mut slot, &format!("write failed: {e}"));
                break;
            }
            match peer.rx.next_frame() {
                Ok(Some(frame)) => {
                    let Some(out) = buf.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + frame.len()) else {
                        self.link.note_oversize();
                        continue;
                    };
                    out.copy_from_slice(frame);
                    buf[..VNET_HDR_LEN].fill(0);
                    return Ok(VNET_HDR_LEN + frame.len());
                }
                Err(BadLength(len)) => {
                    self.link.note_bad_length();
                    self.disconnect(&mut slot, &format!("bad length {len}"));
                }
                Ok(None) => match peer.fill() {
                    Ok(true) => {}
                    Ok(false) => self.disconnect(&mut slot, "end of stream"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => self.disconnect(&mut slot, &format!("read failed: {e}")),
                },
            }
        }
        self.accept(&mut slot);
        Err(would_block())
    }

    /// Sends one virtio-net header + frame as length + frame (segmented or completed first if
    /// it needs it). `NotConnected` without a peer, `WouldBlock` when the peer's queue is full,
    /// `Unsupported` for an offloaded frame that cannot be made plain.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut slot = self.lock();
        let Some(peer) = slot.as_mut() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let mut scratch = std::mem::take(&mut peer.scratch);
        let sent = for_each_plain_frame(buf, self.mtu, &mut scratch, |frame| {
            peer.send(&self.poll, frame)
        });
        peer.scratch = scratch;
        match sent {
            Ok(()) => Ok(buf.len()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Unsupported
                        | io::ErrorKind::InvalidInput
                ) =>
            {
                Err(e)
            }
            Err(e) => {
                self.disconnect(&mut slot, &format!("write failed: {e}"));
                Err(e)
            }
        }
    }

    /// The port's own epoll set (listener + peer), for the worker's epoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }

    pub fn link(&self) -> &LinkState {
        &self.link
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StreamPort {
    fn drop(&mut self) {
        remove_socket_file(&self.path);
    }
}

/// QEMU's dgram backend over unix sockets: one frame per datagram.
#[derive(Debug)]
pub struct DgramPort {
    path: PathBuf,
    mtu: u32,
    socket: UnixDatagram,
    /// Where offloaded frames are made plain (empty until one comes).
    scratch: Mutex<Vec<u8>>,
    /// Where frames go: the configured peer, or the latest sender.
    peer: RwLock<Option<PathBuf>>,
    fixed_peer: bool,
    link: LinkState,
}

impl DgramPort {
    /// Binds `path`; frames go to `peer` if given, else to whoever sent last. Frames that need
    /// segmenting are cut to `mtu`.
    pub fn open(path: &Path, peer: Option<&Path>, mtu: u32) -> Result<DgramPort, PortError> {
        let err = |action: &str, err: io::Error| PortError::Socket {
            path: path.to_path_buf(),
            action: action.to_string(),
            err,
        };
        prepare_path(path)?;
        let socket = UnixDatagram::bind(path).map_err(|e| err("bind it", e))?;
        if let Err(e) = socket.set_nonblocking(true) {
            remove_socket_file(path);
            return Err(err("make it non-blocking", e));
        }
        Ok(DgramPort {
            path: path.to_path_buf(),
            mtu,
            socket,
            scratch: Mutex::new(Vec::new()),
            peer: RwLock::new(peer.map(Path::to_path_buf)),
            fixed_peer: peer.is_some(),
            link: LinkState::new(peer.is_some()),
        })
    }

    /// Reads one datagram as a zero virtio-net header + frame, learning the sender.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(room) = buf.get_mut(VNET_HDR_LEN..) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let (n, from) = self.socket.recv_from(room)?;
        if n == room.len() {
            // Filled to the brim: it may have been cut (a datagram larger than any MTU).
            self.link.note_oversize();
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        if !self.fixed_peer {
            if let Some(from) = from.as_pathname() {
                let known = self.peer.read().unwrap_or_else(|p| p.into_inner());
                if known.as_deref() != Some(from) {
                    drop(known);
                    tracing::info!(path = %self.path.display(), peer = %from.display(),
                        "dgram port: peer learned");
                    *self.peer.write().unwrap_or_else(|p| p.into_inner()) =
                        Some(from.to_path_buf());
                    self.link.set_up(true);
                }
            }
        }
        buf[..VNET_HDR_LEN].fill(0);
        Ok(VNET_HDR_LEN + n)
    }

    /// Sends one virtio-net header + frame as one datagram to the peer (segmented or completed
    /// first if it needs it).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = self.peer.read().unwrap_or_else(|p| p.into_inner());
        let Some(to) = peer.as_deref() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let sent = for_each_plain_frame(buf, self.mtu, &mut scratch, |frame| {
            self.socket.send_to(frame, to).map(drop)
        });
        drop(scratch);
        match sent {
            Ok(()) => Ok(buf.len()),
            Err(e)
                if !self.fixed_peer
                    && matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) =>
            {
                drop(peer);
                tracing::info!(path = %self.path.display(), error = %e,
                    "dgram port: peer gone; port down until it sends again");
                *self.peer.write().unwrap_or_else(|p| p.into_inner()) = None;
                self.link.set_up(false);
                // Counted like every later send until it comes back: the port is down.
                Err(io::Error::new(io::ErrorKind::NotConnected, e))
            }
            Err(e) => Err(e),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub fn link(&self) -> &LinkState {
        &self.link
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DgramPort {
    fn drop(&mut self) {
        remove_socket_file(&self.path);
    }
}

mod kinds;
#[cfg(test)]
mod tests;
