//! The stream and dgram ports at the seam: their constructors from their config sections and
//! their [`PortIo`] impls.

use std::io;
use std::os::fd::BorrowedFd;

use super::{DgramPort, StreamPort};
use crate::control::config::{DgramConfig, PortConfig, StreamConfig};
use crate::port::link::LinkState;
use crate::port::{PortError, PortIo, RxQueue};

impl StreamPort {
    /// Listens on the socket of stream port `p` (`cfg` its section).
    pub fn from_config(p: &PortConfig, cfg: &StreamConfig) -> Result<StreamPort, PortError> {
        let port = StreamPort::open(&cfg.path, p.mtu)?;
        tracing::info!(port = %p.name, path = %cfg.path.display(), "port: stream");
        Ok(port)
    }
}

impl DgramPort {
    /// Binds the socket of dgram port `p` (`cfg` its section).
    pub fn from_config(p: &PortConfig, cfg: &DgramConfig) -> Result<DgramPort, PortError> {
        let port = DgramPort::open(&cfg.path, cfg.peer.as_deref(), p.mtu)?;
        tracing::info!(port = %p.name, path = %cfg.path.display(), "port: dgram");
        Ok(port)
    }
}

/// Socket ports carry no offload metadata to their peer: they take complete, MTU-sized frames.
impl PortIo for StreamPort {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.fd()]
    }

    fn recv(&self, _rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        StreamPort::recv(self, buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        StreamPort::send(self, buf)
    }

    fn offloads(&self) -> bool {
        false
    }

    fn link(&self) -> Option<&LinkState> {
        Some(StreamPort::link(self))
    }

    fn tick(&self) {
        StreamPort::tick(self)
    }
}

impl PortIo for DgramPort {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.fd()]
    }

    fn recv(&self, _rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        DgramPort::recv(self, buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        DgramPort::send(self, buf)
    }

    fn offloads(&self) -> bool {
        false
    }

    fn link(&self) -> Option<&LinkState> {
        Some(DgramPort::link(self))
    }
}
