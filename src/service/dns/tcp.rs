//! DNS over TCP (RFC 7766) at the service port: just enough TCP, sans-IO and bounded.
//!
//! # Theory of operation
//!
//! The appliance has no kernel socket on the segment, so it answers TCP itself. The responder
//! is passive only and speaks the subset a DNS exchange needs:
//! - SYN → SYN-ACK (with our MSS), then the client's ACK establishes the connection. A
//!   retransmitted SYN gets the same SYN-ACK again.
//! - In-order data is appended to the connection's buffer and acknowledged; out-of-order
//!   data is dropped and the expected sequence number re-acknowledged, so the client
//!   retransmits. Every complete 2-byte-length-prefixed message is handed out as a query
//!   (several per connection, pipelined; answers may come back in any order, as RFC 7766
//!   allows). A message split over any number of segments is reassembled.
//! - An answer is sent length-prefixed, cut at the client's MSS. Unacknowledged answer bytes
//!   are retransmitted (go-back-N) after [`RTO`], at most [`MAX_RETRIES`] times, then the
//!   connection is reset.
//! - The client's FIN is acknowledged; once every query of the connection is answered the
//!   responder sends its own FIN and forgets the connection when that is acknowledged. RST
//!   forgets it at once. A segment for no connection gets RST.
//!
//! Bounds: at most `max_conns` connections (a new SYN first evicts idle ones, else gets RST),
//! at most a quarter of them from one client address (so one host cannot take them all),
//! [`MAX_BUFFER`] bytes buffered per connection (more: RST), and every connection silent for
//! `idle` is reset. The receive window is not tracked: answers are at most 64 KiB, which
//! every client's initial window takes.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::tcp::{TcpHeader, TcpSegment, ACK, FIN, PSH, RST, SYN};

/// One complete message plus its length prefix.
pub const MAX_BUFFER: usize = 2 + 65_535;
/// Retransmission timeout for unacknowledged answer bytes and the SYN-ACK.
pub const RTO: Duration = Duration::from_millis(1_000);
pub const MAX_RETRIES: u32 = 3;
/// RFC 9293's default MSS when the client sends none.
const DEFAULT_MSS: u16 = 536;
const WINDOW: u16 = 65_535;

/// A connection, by the client's address and port (the server side is always gateway:53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SynReceived,
    Established,
    /// Our FIN is sent; waiting for its ACK.
    LastAck,
}

#[derive(Debug, Clone)]
struct Conn<M> {
    meta: M,
    state: State,
    iss: u32,
    /// The oldest unacknowledged sequence number and the next to send.
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    mss: usize,
    /// Received stream bytes not yet cut into messages.
    rx: Vec<u8>,
    /// Sent, not yet acknowledged (starts at `snd_una`).
    unacked: Vec<u8>,
    /// Whether our FIN follows `unacked`.
    fin_sent: bool,
    peer_fin: bool,
    /// Queries handed out and not answered yet.
    outstanding: u32,
    last_heard: Duration,
    last_sent: Duration,
    retries: u32,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOutput<M> {
    /// Emit a segment to the client of `key` (from gateway:53).
    Segment {
        meta: M,
        key: ConnKey,
        header: TcpHeader,
        payload: Vec<u8>,
    },
    /// A complete DNS message from the client of `key`: answer it with
    /// [`TcpResponder::answer`].
    Query { key: ConnKey, message: Vec<u8> },
}

/// Counts of the responder's refusals and resets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub connections: u64,
    /// SYNs refused because the table, or the client's share of it, was full.
    pub refused_full: u64,
    pub resets_sent: u64,
    pub idle_closed: u64,
}

/// See the module docs. `M` is the caller's per-connection data (ingress port, client MAC).
#[derive(Debug)]
pub struct TcpResponder<M> {
    conns: HashMap<ConnKey, Conn<M>>,
    max_conns: usize,
    idle: Duration,
    our_mss: u16,
    seed: u64,
    pub counters: TcpCounters,
}

/// `a` is before `b` in sequence space.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl<M: Clone> TcpResponder<M> {
    /// `our_mss`: the largest segment payload the path takes (MTU - 40).
    pub fn new(max_conns: usize, idle: Duration, our_mss: u16, seed: u64) -> TcpResponder<M> {
        TcpResponder {
            conns: HashMap::new(),
            max_conns,
            idle,
            our_mss,
            seed,
            counters: TcpCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// An initial sequence number that differs per connection and per run.
    fn iss(&self, key: &ConnKey, now: Duration) -> u32 {
        let mut h = self.seed ^ u64::from(u32::from(key.ip)) << 16 ^ u64::from(key.port);
        h ^= now.as_micros() as u64;
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as u32
    }

    /// Handles one segment from the client at `src` (to port 53).
    pub fn process_segment(
        &mut self,
        src: Ipv4Addr,
        seg: &TcpSegment<'_>,
        meta: M,
        now: Duration,
    ) -> Vec<TcpOutput<M>> {
        let key = ConnKey {
            ip: src,
            port: seg.src_port,
        };
        let mut out = Vec::new();
        if seg.flags & RST != 0 {
            self.conns.remove(&key);
            return out;
        }
        if seg.flags & SYN != 0 && seg.flags & ACK == 0 {
            self.on_syn(key, seg, meta, now, &mut out);
            return out;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            self.reset(key, seg, meta, &mut out);
            return out;
        };
        c.last_heard = now;
        if seg.flags & ACK != 0 {
            let acked = seg.ack.wrapping_sub(c.snd_una) as usize;
            let in_flight = c.snd_nxt.wrapping_sub(c.snd_una) as usize;
            if acked <= in_flight && acked > 0 {
                if c.state == State::SynReceived {
                    c.state = State::Established;
                } else {
                    c.unacked.drain(..acked.min(c.unacked.len()));
                }
                c.snd_una = seg.ack;
                c.retries = 0;
            }
            if c.state == State::LastAck && seg.ack == c.snd_nxt {
                self.conns.remove(&key);
                return out;
            }
        }
        if c.state == State::SynReceived {
            return out;
        }
        let ack_needed = Self::take_data(c, seg);
        if c.rx.len() > MAX_BUFFER {
            self.counters.resets_sent += 1;
            out.push(segment(c, key, RST, c.snd_nxt, Vec::new()));
            self.conns.remove(&key);
            return out;
        }
        while let Some(message) = next_message(&mut c.rx) {
            c.outstanding += 1;
            out.push(TcpOutput::Query { key, message });
        }
        if ack_needed {
            let flags = if c.peer_fin && c.outstanding == 0 && !c.fin_sent {
                c.fin_sent = true;
                c.state = State::LastAck;
                c.snd_nxt = c.snd_nxt.wrapping_add(1);
                c.last_sent = now;
                ACK | FIN
            } else {
                ACK
            };
            let seq = if flags & FIN != 0 {
                c.snd_nxt.wrapping_sub(1)
            } else {
                c.snd_nxt
            };
            out.push(segment(c, key, flags, seq, Vec::new()));
        }
        out
    }

    /// Takes the in-order part of `seg`'s payload and its FIN; whether an ACK is due.
    fn take_data(c: &mut Conn<M>, seg: &TcpSegment<'_>) -> bool {
        let len = seg.payload.len();
        let fin = seg.flags & FIN != 0;
        if len == 0 && !fin {
            return false;
        }
        // Bytes of this segment we already have (a retransmission overlapping the edge).
        let skip = c.rcv_nxt.wrapping_sub(seg.seq) as usize;
        if seq_lt(c.rcv_nxt, seg.seq) || skip > len {
            // A gap (or something stale): drop it and say again what we expect.
            return true;
        }
        c.rx.extend_from_slice(&seg.payload[skip..]);
        c.rcv_nxt = c.rcv_nxt.wrapping_add((len - skip) as u32);
        if fin && !c.peer_fin {
            c.peer_fin = true;
            c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
        }
        true
    }

    fn on_syn(
        &mut self,
        key: ConnKey,
        seg: &TcpSegment<'_>,
        meta: M,
        now: Duration,
        out: &mut Vec<TcpOutput<M>>,
    ) {
        if let Some(c) = self.conns.get(&key) {
            if c.state == State::SynReceived && c.rcv_nxt == seg.seq.wrapping_add(1) {
                out.push(self.syn_ack(key));
                return;
            }
            // A new connection from a reused port: the old one is over.
            self.conns.remove(&key);
        }
        let per_client = (self.max_conns / 4).max(1);
        if self.conns.keys().filter(|k| k.ip == key.ip).count() >= per_client {
            self.counters.refused_full += 1;
            self.reset(key, seg, meta, out);
            return;
        }
        if self.conns.len() >= self.max_conns {
            let idle = self.idle;
            self.conns
                .retain(|_, c| now.saturating_sub(c.last_heard) < idle);
            if self.conns.len() >= self.max_conns {
                self.counters.refused_full += 1;
                self.reset(key, seg, meta, out);
                return;
            }
        }
        let iss = self.iss(&key, now);
        let mss = usize::from(seg.mss.unwrap_or(DEFAULT_MSS).min(self.our_mss).max(64));
        self.counters.connections += 1;
        self.conns.insert(
            key,
            Conn {
                meta,
                state: State::SynReceived,
                iss,
                snd_una: iss,
                snd_nxt: iss.wrapping_add(1),
                rcv_nxt: seg.seq.wrapping_add(1),
                mss,
                rx: Vec::new(),
                unacked: Vec::new(),
                fin_sent: false,
                peer_fin: false,
                outstanding: 0,
                last_heard: now,
                last_sent: now,
                retries: 0,
            },
        );
        out.push(self.syn_ack(key));
    }

    fn syn_ack(&self, key: ConnKey) -> TcpOutput<M> {
        let c = &self.conns[&key];
        TcpOutput::Segment {
            meta: c.meta.clone(),
            key,
            header: TcpHeader {
                seq: c.iss,
                ack: c.rcv_nxt,
                flags: SYN | ACK,
                window: WINDOW,
                mss: Some(self.our_mss),
            },
            payload: Vec::new(),
        }
    }

    /// RST for a segment that belongs to no connection (RFC 9293 §3.10.7.1).
    fn reset(&mut self, key: ConnKey, seg: &TcpSegment<'_>, meta: M, out: &mut Vec<TcpOutput<M>>) {
        self.counters.resets_sent += 1;
        let header = if seg.flags & ACK != 0 {
            TcpHeader {
                seq: seg.ack,
                ack: 0,
                flags: RST,
                window: 0,
                mss: None,
            }
        } else {
            let len = seg.payload.len() as u32 + u32::from(seg.flags & (SYN | FIN) != 0);
            TcpHeader {
                seq: 0,
                ack: seg.seq.wrapping_add(len),
                flags: RST | ACK,
                window: 0,
                mss: None,
            }
        };
        out.push(TcpOutput::Segment {
            meta,
            key,
            header,
            payload: Vec::new(),
        });
    }

    /// Sends the answer to one query of `key` (`None`: the query gets no answer); then the
    /// FIN if the client has closed and nothing else is outstanding. Nothing if the
    /// connection is gone.
    pub fn answer(
        &mut self,
        key: ConnKey,
        message: Option<&[u8]>,
        now: Duration,
    ) -> Vec<TcpOutput<M>> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get_mut(&key) else {
            return out;
        };
        c.outstanding = c.outstanding.saturating_sub(1);
        if let Some(m) = message {
            let len = u16::try_from(m.len()).unwrap_or(u16::MAX);
            let mut data = Vec::with_capacity(2 + m.len());
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&m[..usize::from(len)]);
            let start = c.snd_nxt;
            c.unacked.extend_from_slice(&data);
            c.snd_nxt = c.snd_nxt.wrapping_add(data.len() as u32);
            c.last_sent = now;
            push_data(c, key, start, &data, &mut out);
        }
        if c.peer_fin && c.outstanding == 0 && !c.fin_sent {
            c.fin_sent = true;
            c.state = State::LastAck;
            out.push(segment(c, key, ACK | FIN, c.snd_nxt, Vec::new()));
            c.snd_nxt = c.snd_nxt.wrapping_add(1);
        }
        out
    }

    /// Retransmissions due at `now`, and resets of idle or unresponsive connections.
    pub fn poll(&mut self, now: Duration) -> Vec<TcpOutput<M>> {
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for (key, c) in &mut self.conns {
            let waiting = c.snd_una != c.snd_nxt;
            if now.saturating_sub(c.last_heard) >= self.idle {
                self.counters.idle_closed += 1;
                dead.push(*key);
                continue;
            }
            if !waiting || now.saturating_sub(c.last_sent) < RTO {
                continue;
            }
            if c.retries >= MAX_RETRIES {
                dead.push(*key);
                continue;
            }
            c.retries += 1;
            c.last_sent = now;
            match c.state {
                State::SynReceived => out.push(TcpOutput::Segment {
                    meta: c.meta.clone(),
                    key: *key,
                    header: TcpHeader {
                        seq: c.iss,
                        ack: c.rcv_nxt,
                        flags: SYN | ACK,
                        window: WINDOW,
                        mss: Some(self.our_mss),
                    },
                    payload: Vec::new(),
                }),
                _ => {
                    let data = c.unacked.clone();
                    push_data(c, *key, c.snd_una, &data, &mut out);
                    if c.fin_sent {
                        let fin_seq = c.snd_nxt.wrapping_sub(1);
                        out.push(segment(c, *key, ACK | FIN, fin_seq, Vec::new()));
                    }
                }
            }
        }
        for key in dead {
            if let Some(c) = self.conns.remove(&key) {
                self.counters.resets_sent += 1;
                out.push(segment(&c, key, RST, c.snd_nxt, Vec::new()));
            }
        }
        out
    }
}

/// `data` from sequence number `start`, cut at the connection's MSS; PSH on the last piece.
fn push_data<M: Clone>(
    c: &Conn<M>,
    key: ConnKey,
    start: u32,
    data: &[u8],
    out: &mut Vec<TcpOutput<M>>,
) {
    let chunks = data.chunks(c.mss).count();
    for (i, chunk) in data.chunks(c.mss).enumerate() {
        let seq = start.wrapping_add((i * c.mss) as u32);
        let flags = if i + 1 == chunks { ACK | PSH } else { ACK };
        out.push(segment(c, key, flags, seq, chunk.to_vec()));
    }
}

fn segment<M: Clone>(
    c: &Conn<M>,
    key: ConnKey,
    flags: u8,
    seq: u32,
    payload: Vec<u8>,
) -> TcpOutput<M> {
    TcpOutput::Segment {
        meta: c.meta.clone(),
        key,
        header: TcpHeader {
            seq,
            ack: c.rcv_nxt,
            flags,
            window: WINDOW,
            mss: None,
        },
        payload,
    }
}

/// Cuts one complete length-prefixed message off the front of `rx`.
fn next_message(rx: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*rx.first()?, *rx.get(1)?]));
    if rx.len() < 2 + len {
        return None;
    }
    let message = rx[2..2 + len].to_vec();
    rx.drain(..2 + len);
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 13, 31, 11);
    const T: Duration = Duration::from_secs(100);
    const IDLE: Duration = Duration::from_secs(10);

    fn seg(seq: u32, ack: u32, flags: u8, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            src_port: 40000,
            dst_port: 53,
            seq,
            ack,
            flags,
            window: 65535,
            mss: (flags & SYN != 0).then_some(1460),
            payload,
        }
    }

    fn segments(out: &[TcpOutput<u8>]) -> Vec<(TcpHeader, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                TcpOutput::Segment {
                    header, payload, ..
                } => Some((*header, payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn queries(out: &[TcpOutput<u8>]) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                TcpOutput::Query { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Handshake from client seq 1000; returns the responder and our ISS.
    fn connected(max: usize) -> (TcpResponder<u8>, u32) {
        let mut r = TcpResponder::new(max, IDLE, 1460, 7);
        let out = r.process_segment(CLIENT, &seg(1000, 0, SYN, b""), 0, T);
        let (h, _) = segments(&out)[0];
        assert_eq!((h.flags, h.ack, h.mss), (SYN | ACK, 1001, Some(1460)));
        let out = r.process_segment(CLIENT, &seg(1001, h.seq + 1, ACK, b""), 0, T);
        assert!(out.is_empty());
        (r, h.seq)
    }

    #[test]
    fn a_query_split_over_segments_is_reassembled_and_answered() {
        let (mut r, iss) = connected(4);
        let msg = b"\x00\x05hello";
        let out = r.process_segment(CLIENT, &seg(1001, iss + 1, ACK, &msg[..1]), 0, T);
        assert!(queries(&out).is_empty());
        assert_eq!(segments(&out)[0].0.ack, 1002);
        let out = r.process_segment(CLIENT, &seg(1002, iss + 1, ACK | PSH, &msg[1..]), 0, T);
        assert_eq!(queries(&out), vec![b"hello".to_vec()]);
        let key = ConnKey {
            ip: CLIENT,
            port: 40000,
        };
        let out = r.answer(key, Some(b"world!"), T);
        let s = segments(&out);
        assert_eq!(s[0].1, b"\x00\x06world!");
        assert_eq!(s[0].0.seq, iss + 1);
        // Client ACKs and closes: we FIN back, and forget it on the last ACK.
        let out = r.process_segment(CLIENT, &seg(1008, iss + 9, ACK | FIN, b""), 0, T);
        let (h, _) = segments(&out)[0];
        assert_eq!((h.flags, h.ack, h.seq), (ACK | FIN, 1009, iss + 9));
        r.process_segment(CLIENT, &seg(1009, iss + 10, ACK, b""), 0, T);
        assert!(r.is_empty());
    }

    #[test]
    fn out_of_order_data_is_dropped_and_reacknowledged() {
        let (mut r, iss) = connected(4);
        let out = r.process_segment(CLIENT, &seg(1003, iss + 1, ACK, b"llo"), 0, T);
        assert!(queries(&out).is_empty());
        assert_eq!(segments(&out)[0].0.ack, 1001, "a gap: still expects 1001");
        // A retransmission overlapping what we have counts only once.
        r.process_segment(CLIENT, &seg(1001, iss + 1, ACK, b"\x00\x02a"), 0, T);
        let out = r.process_segment(CLIENT, &seg(1001, iss + 1, ACK, b"\x00\x02ab"), 0, T);
        assert_eq!(queries(&out), vec![b"ab".to_vec()]);
    }

    #[test]
    fn pipelined_queries_and_fin_waits_for_answers() {
        let (mut r, iss) = connected(4);
        let key = ConnKey {
            ip: CLIENT,
            port: 40000,
        };
        let out = r.process_segment(
            CLIENT,
            &seg(1001, iss + 1, ACK | FIN, b"\x00\x01a\x00\x01b"),
            0,
            T,
        );
        assert_eq!(queries(&out).len(), 2);
        assert_eq!(
            segments(&out)[0].0.flags,
            ACK,
            "no FIN while queries are open"
        );
        assert!(segments(&r.answer(key, Some(b"A"), T))
            .iter()
            .all(|(h, _)| h.flags & FIN == 0));
        let out = r.answer(key, None, T);
        assert_eq!(segments(&out)[0].0.flags, ACK | FIN);
    }

    #[test]
    fn bounded_table_strays_reset_and_idle_connections_close() {
        let (mut r, _) = connected(1);
        let mut other = seg(5000, 0, SYN, b"");
        other.src_port = 40001;
        let out = r.process_segment(CLIENT, &other, 0, T);
        assert_eq!(segments(&out)[0].0.flags & RST, RST, "full: refused");
        assert_eq!(r.counters.refused_full, 1);
        // A segment for no connection.
        let mut stray = seg(7, 99, ACK, b"x");
        stray.src_port = 40002;
        let out = r.process_segment(CLIENT, &stray, 0, T);
        assert_eq!(
            segments(&out)[0].0,
            TcpHeader {
                seq: 99,
                ack: 0,
                flags: RST,
                window: 0,
                mss: None
            }
        );
        // Idle past the limit: reset and forgotten; then there is room again.
        let out = r.poll(T + IDLE);
        assert_eq!(segments(&out)[0].0.flags, RST);
        assert!(r.is_empty());
        let out = r.process_segment(CLIENT, &other, 0, T + IDLE);
        assert_eq!(segments(&out)[0].0.flags, SYN | ACK);
    }

    #[test]
    fn one_client_gets_a_quarter_of_the_table() {
        let mut r: TcpResponder<u8> = TcpResponder::new(8, IDLE, 1460, 7);
        for port in 0..3u16 {
            let mut s = seg(1, 0, SYN, b"");
            s.src_port = 1000 + port;
            r.process_segment(CLIENT, &s, 0, T);
        }
        assert_eq!(r.len(), 2, "8 / 4 per client");
        assert_eq!(r.counters.refused_full, 1);
        let other = Ipv4Addr::new(10, 13, 31, 12);
        r.process_segment(other, &seg(1, 0, SYN, b""), 0, T);
        assert_eq!(r.len(), 3, "another client still gets in");
    }

    #[test]
    fn unacknowledged_answers_are_retransmitted_then_reset() {
        let (mut r, iss) = connected(4);
        let key = ConnKey {
            ip: CLIENT,
            port: 40000,
        };
        r.process_segment(CLIENT, &seg(1001, iss + 1, ACK, b"\x00\x01q"), 0, T);
        r.answer(key, Some(&[7u8; 3000]), T);
        assert!(r.poll(T + Duration::from_millis(500)).is_empty());
        let again = segments(&r.poll(T + RTO));
        assert_eq!(again.len(), 3, "3002 bytes at MSS 1460");
        assert_eq!(again[0].0.seq, iss + 1);
        for i in 2..=MAX_RETRIES {
            r.process_segment(CLIENT, &seg(1004, iss + 1, ACK, b""), 0, T + RTO * i);
            assert_eq!(segments(&r.poll(T + RTO * i)).len(), 3);
        }
        r.process_segment(CLIENT, &seg(1004, iss + 1, ACK, b""), 0, T + RTO * 4);
        let out = segments(&r.poll(T + RTO * 4));
        assert_eq!(out[0].0.flags, RST);
        assert!(r.is_empty());
    }

    #[test]
    fn oversized_buffers_are_reset_and_rst_forgets() {
        let (mut r, iss) = connected(4);
        let mut seq = 1001u32;
        // A prefix announcing 65535 bytes, then more than that.
        let big = vec![0xffu8; 1400];
        let mut last = Vec::new();
        for _ in 0..48 {
            last = r.process_segment(CLIENT, &seg(seq, iss + 1, ACK, &big), 0, T);
            seq = seq.wrapping_add(1400);
            if r.is_empty() {
                break;
            }
        }
        assert!(r.is_empty());
        assert_eq!(segments(&last)[0].0.flags, RST);
        let (mut r, iss) = connected(4);
        r.process_segment(CLIENT, &seg(1001, iss + 1, RST, b""), 0, T);
        assert!(r.is_empty());
    }
}
