//! ICMPv4 (RFC 792): a zero-copy view of a message's fixed header, and its types as an enum.

use super::checksum::checksum;

/// The type, code, checksum and 4 bytes of rest-of-header every message carries.
pub const ICMPV4_HEADER_LEN: usize = 8;

/// ICMPv4 message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Message {
    EchoReply,
    DstUnreachable,
    Redirect,
    EchoRequest,
    TimeExceeded,
    ParamProblem,
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(v: u8) -> Self {
        match v {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            5 => Icmpv4Message::Redirect,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            12 => Icmpv4Message::ParamProblem,
            n => Icmpv4Message::Unknown(n),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(m: Icmpv4Message) -> u8 {
        match m {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::Redirect => 5,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::ParamProblem => 12,
            Icmpv4Message::Unknown(n) => n,
        }
    }
}

impl Icmpv4Message {
    /// An error report about another packet (destination unreachable, time exceeded,
    /// parameter problem): a host's kernel answering, never a request.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Icmpv4Message::DstUnreachable
                | Icmpv4Message::TimeExceeded
                | Icmpv4Message::ParamProblem
        )
    }
}

/// An ICMPv4 message view (smoltcp's `Icmpv4Packet` contract); the checksum covers the whole
/// buffer, which must be exactly the message (an IPv4 payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// The view if the fixed header is whole.
    pub fn new_checked(buffer: T) -> Option<Self> {
        let p = Self::new_unchecked(buffer);
        (p.buffer.as_ref().len() >= ICMPV4_HEADER_LEN).then_some(p)
    }

    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[0])
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref(), 0) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, m: Icmpv4Message) {
        self.buffer.as_mut()[0] = u8::from(m);
    }

    /// Computes the checksum over the whole message and writes it.
    pub fn fill_checksum(&mut self) {
        self.buffer.as_mut()[2..4].fill(0);
        let c = checksum(self.buffer.as_ref(), 0);
        self.buffer.as_mut()[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_round_trip() {
        let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p'];
        Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
        let p = Icmpv4Packet::new_checked(&m[..]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (Icmpv4Message::EchoRequest, 0));
        assert!(p.verify_checksum());
        let mut r = Icmpv4Packet::new_unchecked(&mut m[..]);
        r.set_msg_type(Icmpv4Message::EchoReply);
        assert!(!r.verify_checksum(), "type changed, checksum stale");
        r.fill_checksum();
        assert!(r.verify_checksum());
        assert_eq!(Icmpv4Packet::new_checked(&m[..7]), None);
        for t in 0..=255u8 {
            assert_eq!(u8::from(Icmpv4Message::from(t)), t);
        }
        assert!(Icmpv4Message::from(3).is_error() && !Icmpv4Message::from(8).is_error());
    }
}
