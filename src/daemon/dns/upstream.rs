//! The forwarder's upstream sockets, per RFC 5452: a random source port per query.
//!
//! # Theory of operation
//!
//! Threat: an off-path attacker (a guest on an unguarded port, anyone who can route to the
//! daemon's namespace) races the upstream with forged answers. With one fixed source port and
//! predictable ids it needs a few thousand tries; RFC 5452 asks for ids and source ports from a
//! cryptographic generator, so a forged answer must guess about 16 + 15 bits at once.
//!
//! Every forwarded query takes a socket of its own, bound to a port drawn from the kernel's
//! CSPRNG in 1024-65535 (the draw is repeated when the port is taken), while the pool holds
//! fewer than [`MAX_SOCKETS`]; beyond that (a burst of queries in flight) it shares one of the
//! open sockets, chosen at random, and the ids keep the queries apart. A socket is closed as
//! soon as no pending query waits on it ([`UpstreamPool::retire`], every poll), so the next
//! query draws a new port. Ids come from the same generator ([`OsRandom`]).
//!
//! One reader thread waits on all the pool's sockets with epoll and hands each datagram to the
//! appliance tagged with the socket it came in on; the DNS server accepts it only if that is
//! the socket its query left from, from the address and port the query went to, with the id and
//! question it asked (`DnsServer::process_upstream_via`); the rest is counted as
//! `answers_refused`.
//!
//! 0x20 (mixed-case query names) is not used: the port and id already give about 31 bits, the
//! upstreams are usually the host's own stub resolver, and an upstream that does not echo the
//! case (some forwarders and middleboxes lowercase it) would make every forwarded answer look
//! forged unless a fallback path were added, which is complexity an attacker can then aim at.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use super::{io_err, DnsEvent, MAX_DATAGRAM};
use crate::daemon::appliance::ApplianceMsg;
use crate::daemon::{DaemonError, TICK};
use crate::port::{fill_random, Epoll, Events};
use crate::service::dns::IdSource;

/// Most upstream sockets open at once (queries in flight beyond this share them).
pub(in crate::daemon) const MAX_SOCKETS: usize = 128;
/// Random ports tried before letting the kernel pick one (also random on Linux).
const BIND_TRIES: usize = 16;
/// The lowest source port drawn (below it: privileged and well-known ports).
const PORT_LO: u16 = 1024;

/// The kernel's CSPRNG (`getrandom(2)`), read 256 bytes at a time.
#[derive(Debug)]
pub(in crate::daemon) struct OsRandom {
    buf: [u8; 256],
    at: usize,
}

impl OsRandom {
    pub(in crate::daemon) fn new() -> io::Result<OsRandom> {
        let mut r = OsRandom {
            buf: [0; 256],
            at: 0,
        };
        fill_random(&mut r.buf)?;
        Ok(r)
    }

    pub(in crate::daemon) fn u16(&mut self) -> u16 {
        if self.at + 2 > self.buf.len() {
            if let Err(e) = fill_random(&mut self.buf) {
                // Never seen after boot; the old bytes are not reused as they were.
                tracing::error!(error = %e, "getrandom failed: DNS ids and ports are weaker");
                self.buf.rotate_left(1);
            }
            self.at = 0;
        }
        let v = u16::from_ne_bytes([self.buf[self.at], self.buf[self.at + 1]]);
        self.at += 2;
        v
    }
}

impl IdSource for OsRandom {
    fn next_id(&mut self) -> u16 {
        self.u16()
    }
}

struct Entry {
    sock: Arc<UdpSocket>,
    v6: bool,
}

type Sockets = Arc<Mutex<HashMap<u64, Entry>>>;

/// The pool and its reader thread's shared state; see the module docs.
pub(in crate::daemon) struct UpstreamPool {
    epoll: Arc<Epoll>,
    socks: Sockets,
    next_token: u64,
    random: OsRandom,
}

impl UpstreamPool {
    /// An empty pool and its reader thread, feeding `tx` until `stop`.
    pub(in crate::daemon) fn start(
        tx: SyncSender<ApplianceMsg>,
        stop: Arc<AtomicBool>,
    ) -> Result<(UpstreamPool, JoinHandle<()>), DaemonError> {
        let epoll = Arc::new(Epoll::new().map_err(io_err("creating the DNS upstream epoll"))?);
        let socks: Sockets = Arc::default();
        let random = OsRandom::new().map_err(io_err("reading the kernel's random generator"))?;
        let (e, s) = (Arc::clone(&epoll), Arc::clone(&socks));
        let thread = thread::Builder::new()
            .name("sy-dns-upstream".into())
            .spawn(move || read_loop(&e, &s, &tx, &stop))
            .map_err(io_err("spawning the DNS upstream reader"))?;
        let pool = UpstreamPool {
            epoll,
            socks,
            next_token: 0,
            random,
        };
        Ok((pool, thread))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.socks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The socket for one new query to `upstream`: a new one on a random port while the pool
    /// has room, else a random open one of the same family; `None` if none can be had.
    pub(in crate::daemon) fn socket_for(&mut self, upstream: SocketAddr) -> Option<u64> {
        let v6 = upstream.is_ipv6();
        if self.lock().len() < MAX_SOCKETS {
            match self.open(v6) {
                Ok(token) => return Some(token),
                Err(e) => tracing::warn!(error = %e, "cannot open a DNS upstream socket"),
            }
        }
        let open: Vec<u64> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.v6 == v6)
            .map(|(t, _)| *t)
            .collect();
        if open.is_empty() {
            return None;
        }
        Some(open[usize::from(self.random.u16()) % open.len()])
    }

    fn open(&mut self, v6: bool) -> io::Result<u64> {
        let any = |port| -> SocketAddr {
            if v6 {
                (Ipv6Addr::UNSPECIFIED, port).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, port).into()
            }
        };
        let mut sock = None;
        for _ in 0..BIND_TRIES {
            let port = PORT_LO + self.random.u16() % (u16::MAX - PORT_LO + 1);
            if let Ok(s) = UdpSocket::bind(any(port)) {
                sock = Some(s);
                break;
            }
        }
        let sock = match sock {
            Some(s) => s,
            None => UdpSocket::bind(any(0))?,
        };
        sock.set_nonblocking(true)?;
        let token = self.next_token;
        self.next_token += 1;
        self.epoll.add(sock.as_fd(), token)?;
        self.lock().insert(
            token,
            Entry {
                sock: Arc::new(sock),
                v6,
            },
        );
        Ok(token)
    }

    /// Sends `query` to `upstream` from socket `via`; a failure is left to the timeout.
    pub(in crate::daemon) fn send(&self, via: u64, upstream: SocketAddr, query: &[u8]) {
        let sock = self.lock().get(&via).map(|e| Arc::clone(&e.sock));
        let Some(sock) = sock else { return };
        if let Err(e) = sock.send_to(query, upstream) {
            tracing::debug!(%upstream, error = %e, "DNS query to upstream not sent");
        }
    }

    /// Closes every socket no pending query waits on (`in_use`): the next query draws a new
    /// port, and a late or forged answer to a finished query meets a closed port.
    pub(in crate::daemon) fn retire(&mut self, in_use: &HashSet<u64>) {
        let gone: Vec<Entry> = {
            let mut socks = self.lock();
            let idle: Vec<u64> = socks
                .keys()
                .filter(|t| !in_use.contains(t))
                .copied()
                .collect();
            idle.iter().filter_map(|t| socks.remove(t)).collect()
        };
        for e in gone {
            let _ = self.epoll.delete(e.sock.as_fd());
        }
    }

    /// The local port of socket `via` (for tests and logs).
    #[cfg(test)]
    fn port_of(&self, via: u64) -> Option<u16> {
        let socks = self.lock();
        socks.get(&via)?.sock.local_addr().ok().map(|a| a.port())
    }
}

/// The reader thread: every datagram on a pool socket goes to the appliance, tagged with the
/// socket; a full queue drops it (the query then times out, or its retry is answered).
fn read_loop(epoll: &Epoll, socks: &Sockets, tx: &SyncSender<ApplianceMsg>, stop: &AtomicBool) {
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = epoll.wait(&mut events, TICK) {
            tracing::warn!(error = %e, "waiting on DNS upstream sockets failed");
            thread::sleep(TICK);
            continue;
        }
        for ev in events.iter() {
            let via = ev.token();
            let sock = socks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&via)
                .map(|e| Arc::clone(&e.sock));
            let Some(sock) = sock else { continue };
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let bytes = buf[..n].to_vec();
                        let msg = ApplianceMsg::Dns(DnsEvent::Upstream { from, via, bytes });
                        match tx.try_send(msg) {
                            Ok(()) | Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // WouldBlock: drained. Anything else (an ICMP error queued on the socket)
                    // is left to the query's timeout.
                    Err(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    /// Each query gets its own socket on a random port while there is room; idle sockets close.
    #[test]
    fn queries_take_fresh_random_ports_and_idle_sockets_close() {
        let (tx, _rx) = sync_channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let (mut pool, reader) = UpstreamPool::start(tx, Arc::clone(&stop)).unwrap();
        let up: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let tokens: Vec<u64> = (0..20).map(|_| pool.socket_for(up).unwrap()).collect();
        let ports: HashSet<u16> = tokens.iter().filter_map(|t| pool.port_of(*t)).collect();
        assert_eq!(ports.len(), 20, "one socket and port per query: {ports:?}");
        assert!(ports.iter().all(|p| *p >= PORT_LO));
        let keep: HashSet<u64> = tokens[..3].iter().copied().collect();
        pool.retire(&keep);
        assert_eq!(pool.lock().len(), 3);
        // Full: queries share the open sockets.
        for _ in 0..MAX_SOCKETS {
            pool.socket_for(up).unwrap();
        }
        assert_eq!(pool.lock().len(), MAX_SOCKETS);
        let shared = pool.socket_for(up).unwrap();
        assert!(pool.lock().contains_key(&shared));
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }

    #[test]
    fn os_random_ids_are_not_a_short_cycle() {
        let mut r = OsRandom::new().unwrap();
        let ids: HashSet<u16> = (0..1000).map(|_| r.next_id()).collect();
        // 1,000 draws from 65,536 values: about 992 distinct; a stuck or short generator
        // gives far fewer.
        assert!(ids.len() > 950, "{}", ids.len());
    }
}
