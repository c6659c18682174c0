//! The control socket itself: binding it with the right owner and mode, the accept loop, the
//! peer check, one thread per connection reading request lines, and `capture`'s streaming.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;

use super::{Control, IO_TIMEOUT, MAX_CONNECTIONS};
use crate::control::locate;
use crate::control::protocol::{
    parse_request, to_hex, Body, CapturedFrame, Command, ErrorKind, Reply, MAX_REQUEST,
};
use crate::daemon::capture::{Mirrored, SNAPLEN};
use crate::daemon::{DaemonError, TICK};
use crate::port::{self, Epoll, Events};

/// The gid of `group` (a name from /etc/group, or a number); root's group without one.
pub(in crate::daemon) fn resolve_group(group: Option<&str>) -> Result<u32, DaemonError> {
    let Some(group) = group else { return Ok(0) };
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = fs::read_to_string("/etc/group").map_err(|source| DaemonError::Io {
        what: "reading /etc/group for control_group",
        source,
    })?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| DaemonError::Control {
            message: format!(
                "control_group '{group}' is not in /etc/group (create it with `groupadd \
                 {group}`, or remove the key for root only)"
            ),
        })
}

/// The daemon's entry in the registry of running networks (`control::locate`): written once
/// the control socket is bound, removed when the daemon stops. A daemon that cannot write it
/// (an unprivileged one without /run/switchyard) still runs; `switchyard list` just does not
/// show it, and clients find it by --config or --socket.
pub(in crate::daemon) struct Registration {
    dir: std::path::PathBuf,
    name: String,
}

impl Registration {
    pub(in crate::daemon) fn write(config: &crate::control::config::Config) -> Option<Self> {
        let dir = locate::run_dir();
        let entry = locate::Entry {
            name: config.network.name.clone(),
            socket: config.control.socket.clone(),
            config: config.source.clone(),
            pid: std::process::id(),
        };
        match locate::write_entry(&dir, &entry) {
            Ok(path) => {
                tracing::debug!(entry = %path.display(), "registered in the running networks");
                Some(Registration {
                    dir,
                    name: entry.name,
                })
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(),
                    "cannot register in the running networks ({e}): `switchyard list` will not \
                     show this network");
                None
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        locate::remove_entry(&self.dir, &self.name, std::process::id());
    }
}

/// Binds the control socket at `path`: parent directory created (0755) if missing, a stale
/// socket file from a dead daemon replaced, a live one refused; then mode 0660, root:`gid`.
pub(in crate::daemon) fn bind_socket(path: &Path, gid: u32) -> Result<UnixListener, DaemonError> {
    let err = |what: &'static str| move |source| DaemonError::Io { what, source };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(err("creating the control socket's directory"))?;
        }
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(DaemonError::Control {
                message: format!(
                    "control socket {} exists and is not a socket (remove it, or set \
                     [switch] control_socket to another path)",
                    path.display()
                ),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(DaemonError::Control {
                message: format!(
                    "control socket {} is in use: another switchyard serves it (stop it, or \
                     give this network another name or control_socket)",
                    path.display()
                ),
            });
        }
        fs::remove_file(path).map_err(err("removing a stale control socket"))?;
    }
    let listener = UnixListener::bind(path).map_err(err("binding the control socket"))?;
    // Between bind and chmod the file has the umask's mode; the peer check below is the
    // second fence that holds regardless.
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .map_err(err("setting the control socket's mode"))?;
    match std::os::unix::fs::chown(path, Some(0), Some(gid)) {
        Ok(()) => {}
        // A daemon running as an unprivileged user (taps made ahead of time) cannot give the
        // socket away: it stays its own, mode 0660, and root still reaches it.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !is_root() => {
            tracing::info!(socket = %path.display(),
                "not root: the control socket stays owned by the daemon's user and group");
        }
        Err(e) => return Err(err("setting the control socket's owner")(e)),
    }
    listener
        .set_nonblocking(true)
        .map_err(err("setting the control socket non-blocking"))?;
    Ok(listener)
}

/// Whether this process runs as root (the owner of `/proc/self`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether the peer may use the socket: root, or a member of `gid` (primary or supplementary,
/// the latter read from /proc/PID/status of the peer).
fn is_authorized(cred: port::PeerCred, gid: u32) -> bool {
    if cred.uid == 0 || cred.gid == gid {
        return true;
    }
    let status = fs::read_to_string(format!("/proc/{}/status", cred.pid)).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| {
            groups
                .split_whitespace()
                .any(|g| g.parse::<u32>() == Ok(gid))
        })
}

impl Control {
    /// The accept loop; returns when the daemon stops.
    pub(in crate::daemon) fn serve(self: Arc<Self>, listener: UnixListener) {
        let epoll = match Epoll::new().and_then(|e| e.add(listener.as_fd(), 0).map(|()| e)) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "control socket: epoll failed; no control");
                return;
            }
        };
        let mut events = Events::with_capacity(1);
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = epoll.wait(&mut events, TICK) {
                tracing::error!(error = %e, "control socket: epoll_wait failed; no control");
                return;
            }
            loop {
                match listener.accept() {
                    Ok((stream, _)) => self.admit(stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed");
                        break;
                    }
                }
            }
        }
    }

    /// Checks the peer and starts a thread for the connection.
    fn admit(self: &Arc<Self>, mut stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let cred = match port::peer_cred(stream.as_fd()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: no peer credentials; refused");
                return;
            }
        };
        if !is_authorized(cred, self.gid) {
            tracing::warn!(
                uid = cred.uid,
                pid = cred.pid,
                "control socket: peer refused"
            );
            let reply = Reply::error(
                ErrorKind::PermissionDenied,
                format!(
                    "uid {} is neither root nor in the control group (gid {})",
                    cred.uid, self.gid
                ),
            );
            let _ = stream.write_all(reply.to_line().as_bytes());
            return;
        }
        if self.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            let reply = Reply::error(ErrorKind::Busy, "too many control connections; try again");
            let _ = stream.write_all(reply.to_line().as_bytes());
            return;
        }
        let ctl = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("sy-control-conn".into())
            .spawn(move || {
                ctl.converse(stream);
                ctl.connections.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(error = %e, "control socket: cannot spawn a connection thread");
        }
    }

    /// Serves one connection: request lines in, reply lines out, until EOF, an I/O error, the
    /// idle timeout or an oversized request.
    fn converse(&self, stream: UnixStream) {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let mut writer = stream;
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = MAX_REQUEST as u64;
            match (&mut reader).take(limit).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") && line.len() >= MAX_REQUEST {
                let reply = Reply::error(
                    ErrorKind::TooLarge,
                    format!("request longer than {MAX_REQUEST} bytes; connection closed"),
                );
                let _ = writer.write_all(reply.to_line().as_bytes());
                return;
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.is_empty() {
                continue;
            }
            let request = match parse_request(&line) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e.message, "control socket: bad request");
                    if writer
                        .write_all(Reply::error(e.kind, e.message).to_line().as_bytes())
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            let reply = match request.command {
                Command::Capture { port, count } => {
                    return self.stream_capture(&mut writer, &port, count);
                }
                command => match self.handle(command) {
                    Ok(body) => Reply::ok(body),
                    Err((kind, message)) => Reply::error(kind, message),
                },
            };
            if writer.write_all(reply.to_line().as_bytes()).is_err() {
                return;
            }
        }
    }
}

impl Control {
    // ---- capture ----

    /// Streams `port`'s frames to `out` until `count` frames, the client hanging up, or the
    /// daemon stopping; then `capture_end`.
    fn stream_capture(&self, out: &mut UnixStream, port: &str, count: Option<u64>) {
        let id = match self.port_id(port) {
            Ok(id) => id,
            Err((kind, m)) => {
                let _ = out.write_all(Reply::error(kind, m).to_line().as_bytes());
                return;
            }
        };
        let frames = match self.capture.start(id) {
            Ok(rx) => rx,
            Err(_) => {
                let reply = Reply::error(
                    ErrorKind::Busy,
                    "another capture is running (one at a time); try again when it ends",
                );
                let _ = out.write_all(reply.to_line().as_bytes());
                return;
            }
        };
        tracing::info!(port, "capture started");
        let started = Reply::ok(Body::CaptureStarted {
            port: port.to_string(),
            snaplen: SNAPLEN as u32,
        });
        let sent = self.pump(out, &frames, count, started);
        let dropped = self.capture.stop();
        let end = Reply::ok(Body::CaptureEnd {
            frames: sent,
            dropped,
        });
        let _ = out.write_all(end.to_line().as_bytes());
        tracing::info!(port, frames = sent, dropped, "capture ended");
    }

    /// Writes mirrored frames as reply lines; returns how many were written.
    fn pump(
        &self,
        out: &mut UnixStream,
        frames: &Receiver<Mirrored>,
        count: Option<u64>,
        started: Reply,
    ) -> u64 {
        if out.write_all(started.to_line().as_bytes()).is_err() {
            return 0;
        }
        let mut sent = 0;
        while count.is_none_or(|n| sent < n) && !self.stop.load(Ordering::Relaxed) {
            match frames.recv_timeout(TICK) {
                Ok(m) => {
                    let line = Reply::ok(Body::Frame(CapturedFrame {
                        ts_us: m.ts_us,
                        dir: m.dir.name().to_string(),
                        len: m.len,
                        data: to_hex(&m.data),
                    }))
                    .to_line();
                    if out.write_all(line.as_bytes()).is_err() {
                        return sent;
                    }
                    sent += 1;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if has_hung_up(out) {
                        return sent;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return sent,
            }
        }
        sent
    }
}

/// Whether the client closed its end (or sent anything: a capture takes no further input).
fn has_hung_up(stream: &UnixStream) -> bool {
    let mut probe = stream;
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let gone = !matches!(probe.read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    let _ = stream.set_nonblocking(false);
    gone
}
