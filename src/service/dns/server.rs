//! The query handler: local answers, the cache, and the table of forwarded queries.
//!
//! # Theory of operation
//!
//! [`DnsServer::process_query`] takes one DNS message from a client (UDP payload, or one
//! length-prefixed TCP message), the client's return address `C` (opaque here: the daemon's
//! port, MAC, IP and UDP port or TCP connection), the transport and `now`. It returns an
//! [`Outcome`]: a reply to send back, a query to forward to an upstream, or a counted drop.
//!
//! 1. Fewer than 12 bytes, or a response (QR set): dropped, never answered (no reflection loop).
//! 2. Undecodable (truncated, a compression loop, a name over 255 bytes, trailing garbage in
//!    counts): FORMERR with the client's id; the decoder bounds every loop.
//! 3. Not one IN-class QUERY question: FORMERR / NOTIMP / REFUSED; zone transfers: REFUSED.
//! 4. The [`Zone`] answers local names (authoritative, TTL `local_ttl`); they never leave.
//! 5. A fresh [`Cache`] hit is answered with TTLs aged.
//! 6. Otherwise the query goes to an upstream: the longest `[[dns.forward]]` domain that holds
//!    the name, else `[dns] upstreams` (round robin); with none, REFUSED. The forwarded copy
//!    gets a fresh id; the pending table (bounded) remembers the client. The upstream's reply is
//!    accepted only from that upstream, with that id and that question; it is cached, given the
//!    client's id back and returned from [`DnsServer::process_upstream`]. With more than one
//!    upstream, a query still unanswered after half the timeout is sent once more, with the
//!    same id, to the next upstream ([`DnsServer::poll_retries`]); a reply from either is
//!    accepted. A query with no reply
//!    by its deadline gets SERVFAIL from [`DnsServer::poll_timeouts`].
//!
//! Before step 2, a query of the plainest shape whose local answer was made before is answered
//! from the [`Memo`](super::fast::Memo) (see [`fast`](super::fast)): the same bytes, patched with
//! the query's id, RD flag and spelling, without a parse or an encode. Steps 4 and 5 fill the
//! memo (a cached answer is kept only while the cache would age it by the same whole seconds).
//!
//! A UDP answer larger than the client can take (512 bytes, or its EDNS payload size, capped
//! by the segment's MTU) is sent truncated (TC, question only), so the client retries over TCP.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use super::cache::{Cache, CacheKey};
use super::fast::{FastQuery, Memo, SharedMemo, Source};
use super::params::DnsParams;
use super::zone::{Lookup, Zone};

/// How often `poll_timeouts` sweeps expired answers out of the cache.
const CACHE_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The smallest UDP payload every client takes (RFC 1035).
const MIN_UDP_PAYLOAD: usize = 512;
/// The EDNS payload size the appliance advertises (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// A DNS header.
pub const HEADER_LEN: usize = 12;

/// How the query arrived: UDP (answers capped at `limit` bytes by the path) or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp { limit: usize },
    Tcp,
}

/// Why a message got no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a DNS header.
    Short,
    /// A response (QR set) sent to the server.
    NotAQuery,
    /// An upstream reply nobody waits for, from the wrong address, or for another question.
    Unsolicited,
}

/// What to do with a client's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply(Vec<u8>),
    Forward {
        upstream: SocketAddr,
        query: Vec<u8>,
    },
    Drop(DropReason),
}

/// Counts of what the server did; printed when the daemon stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounters {
    pub queries: u64,
    /// Answered from the zone (including NXDOMAIN/NODATA for local names).
    pub local: u64,
    /// Of `local`, answered by the fast path (an answer kept ready, patched).
    pub local_fast: u64,
    pub cache_hits: u64,
    /// Of `cache_hits`, answered by the fast path.
    pub cache_fast: u64,
    /// Of `local_fast` and `cache_fast`, answered by whoever shares the memo
    /// ([`SharedMemo::answer_udp`]: the data-plane workers) without reaching the server.
    pub shared_fast: u64,
    pub forwarded: u64,
    /// Forwarded queries sent again to a second upstream.
    pub retried: u64,
    /// Upstream replies relayed to a client.
    pub upstream_answers: u64,
    /// SERVFAIL: no upstream reply in time, an undecodable reply, or the pending table full.
    pub servfail: u64,
    pub refused: u64,
    pub formerr: u64,
    pub notimp: u64,
    /// Messages that got no answer at all (see [`DropReason`]).
    pub dropped: u64,
    /// Of `dropped`, datagrams on an upstream socket refused as possibly forged (RFC 5452): no
    /// query pending with that id, not from the upstream asked, not on the socket the query
    /// left from, or not the question asked.
    pub answers_refused: u64,
}

impl fmt::Display for DnsCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queries={} local={} local_fast={} cache_hits={} cache_fast={} shared_fast={} forwarded={} retried={} upstream_answers={} \
             servfail={} refused={} formerr={} notimp={} dropped={} answers_refused={}",
            self.queries,
            self.local,
            self.local_fast,
            self.cache_hits,
            self.cache_fast,
            self.shared_fast,
            self.forwarded,
            self.retried,
            self.upstream_answers,
            self.servfail,
            self.refused,
            self.formerr,
            self.notimp,
            self.dropped,
            self.answers_refused
        )
    }
}

/// A forwarded query waiting for its upstream.
#[derive(Debug, Clone)]
struct Pending<C> {
    client: C,
    transport: Transport,
    request: Message,
    key: CacheKey,
    /// The upstreams asked so far (replies are accepted from these only).
    asked: Vec<SocketAddr>,
    /// When to ask `retry_to` too, if no reply came by then.
    retry: Option<(Duration, SocketAddr)>,
    /// The forwarded bytes, for the retry.
    query: Vec<u8>,
    /// The caller's handle on the socket the query left from ([`DnsServer::sent_via`]): a
    /// reply is accepted on that socket only (its random source port is half the secret).
    via: Option<u64>,
    deadline: Duration,
}

/// An answer for a client: where it goes, how, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply<C> {
    pub client: C,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

/// The DNS service; `C` is the caller's handle on a client.
#[derive(Debug)]
pub struct DnsServer<C> {
    zone: Zone,
    cache: Cache,
    upstreams: Vec<SocketAddr>,
    /// (domain, upstreams), longest domain first.
    forwards: Vec<(Name, Vec<SocketAddr>)>,
    timeout: Duration,
    max_pending: usize,
    pending: HashMap<u16, Pending<C>>,
    /// Round-robin position over upstreams.
    next_upstream: usize,
    /// Where upstream query ids come from: the daemon gives the OS's CSPRNG ([`IdSource`]).
    ids: Box<dyn IdSource>,
    /// When `poll_timeouts` next sweeps the cache.
    next_cache_sweep: Duration,
    /// Local answers ready to patch and send (the fast path), shared with the data plane.
    memo: Arc<SharedMemo>,
    /// Whether the fast path is used (on by default; off to compare it with the full path).
    fast_path: bool,
    pub counters: DnsCounters,
}

impl<C: Clone> DnsServer<C> {
    /// Replaces `[dns] upstreams` (the host's resolvers changed): new queries go to these;
    /// queries already forwarded still take the answer of the upstream they went to.
    pub fn set_upstreams(&mut self, upstreams: Vec<SocketAddr>) {
        self.upstreams = upstreams;
        self.next_upstream = 0;
    }

    /// The upstreams new queries go to (round robin), outside `[[dns.forward]]` domains.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// `seed` varies the ids of forwarded queries between runs.
    pub fn new(params: &DnsParams, seed: u64) -> DnsServer<C> {
        let mut forwards: Vec<(Name, Vec<SocketAddr>)> = params
            .forwards
            .iter()
            .filter_map(|f| {
                let mut n = Name::from_ascii(&f.domain).ok()?;
                n.set_fqdn(true);
                Some((n.to_lowercase(), f.upstreams.clone()))
            })
            .collect();
        forwards.sort_by_key(|(n, _)| std::cmp::Reverse(n.num_labels()));
        DnsServer {
            zone: Zone::new(params),
            cache: Cache::new(params.cache_size),
            upstreams: params.upstreams.clone(),
            forwards,
            timeout: params.timeout,
            max_pending: params.max_pending,
            pending: HashMap::new(),
            next_upstream: 0,
            ids: Box::new(Xorshift(seed | 1)),
            next_cache_sweep: Duration::ZERO,
            memo: Arc::default(),
            fast_path: true,
            counters: DnsCounters::default(),
        }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The zone, to change. The memo follows when the returned guard goes: answers kept for
    /// the zone as it was are forgotten before anyone is told of the change.
    pub fn zone_mut(&mut self) -> ZoneMut<'_> {
        ZoneMut {
            zone: &mut self.zone,
            memo: &self.memo,
        }
    }

    /// The fast path's answers, for threads that answer from them (see [`SharedMemo`]).
    pub fn shared_memo(&self) -> Arc<SharedMemo> {
        Arc::clone(&self.memo)
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes upstream query ids from `ids` from now on (the daemon: the OS's CSPRNG).
    pub fn with_ids(mut self, ids: Box<dyn IdSource>) -> DnsServer<C> {
        self.ids = ids;
        self
    }

    /// Records that the forwarded `query` (as [`Outcome::Forward`] or
    /// [`poll_retries`](Self::poll_retries) gave it) left from the socket the caller calls
    /// `via`: its reply is then accepted only through [`process_upstream_via`] with that `via`.
    ///
    /// [`process_upstream_via`]: Self::process_upstream_via
    pub fn sent_via(&mut self, query: &[u8], via: u64) {
        if let Some(p) = query_id(query).and_then(|id| self.pending.get_mut(&id)) {
            p.via = Some(via);
        }
    }

    /// The socket `query` was sent from (for its retry to the next upstream: the same one).
    pub fn via_of(&self, query: &[u8]) -> Option<u64> {
        self.pending.get(&query_id(query)?)?.via
    }

    /// The sockets some pending query waits on: the caller may close the others.
    pub fn sockets_in_use(&self) -> std::collections::HashSet<u64> {
        self.pending.values().filter_map(|p| p.via).collect()
    }

    /// Turns the fast path for local and cached answers on (the default) or off. Off, every query takes
    /// the full path: the way tests and benchmarks compare the two.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
        *self.memo.write() = Memo::default();
    }

    /// Answers the fast path holds now.
    pub fn memo_len(&self) -> usize {
        self.memo.len()
    }

    /// Handles one client message.
    pub fn process_query(
        &mut self,
        bytes: &[u8],
        client: C,
        transport: Transport,
        now: Duration,
    ) -> Outcome {
        if bytes.len() < HEADER_LEN {
            self.counters.dropped += 1;
            return Outcome::Drop(DropReason::Short);
        }
        if bytes[2] & 0x80 != 0 {
            // QR = 1: a response. Answering it could start a loop between two servers.
            self.counters.dropped += 1;
            return Outcome::Drop(DropReason::NotAQuery);
        }
        self.counters.queries += 1;
        let fast = if self.fast_path {
            FastQuery::parse(bytes)
        } else {
            None
        };
        if let Some(q) = &fast {
            let limit = match transport {
                Transport::Udp { limit } => Some(limit),
                Transport::Tcp => None,
            };
            let version = self.zone.version();
            if let Some((answer, source)) = self.memo.answer(q, bytes, limit, version, now) {
                match source {
                    Source::Zone => {
                        self.counters.local += 1;
                        self.counters.local_fast += 1;
                    }
                    Source::Cache { .. } => {
                        self.counters.cache_hits += 1;
                        self.counters.cache_fast += 1;
                    }
                }
                return Outcome::Reply(answer);
            }
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let Ok(request) = Message::from_vec(bytes) else {
            self.counters.formerr += 1;
            let op = OpCode::from_u8((bytes[2] >> 3) & 0x0f);
            return Outcome::Reply(encode(&Message::error_msg(id, op, ResponseCode::FormErr)));
        };
        if let Some(rcode) = self.refusal(&request) {
            return Outcome::Reply(self.respond(&request, rcode, Vec::new(), None, transport));
        }
        let query = request.queries[0].clone();
        let local = match self.zone.lookup(query.name(), query.query_type()) {
            Lookup::Answer(records) => Some((ResponseCode::NoError, records, None)),
            Lookup::NoData(soa) => Some((ResponseCode::NoError, Vec::new(), Some(soa))),
            Lookup::NxDomain(soa) => Some((ResponseCode::NXDomain, Vec::new(), Some(soa))),
            Lookup::NotLocal => None,
        };
        if let Some((rcode, records, soa)) = local {
            self.counters.local += 1;
            if let Some(q) =
                fast.filter(|q| !self.memo.write().contains(q, self.zone.version(), now))
            {
                self.memoize(&q, bytes);
            }
            return Outcome::Reply(self.respond(&request, rcode, records, soa, transport));
        }
        let key = cache_key(&query);
        if let Some(cached) = self.cache.get(&key, now) {
            self.counters.cache_hits += 1;
            if let Some(q) =
                fast.filter(|q| !self.memo.write().contains(q, self.zone.version(), now))
            {
                self.memoize_cached(&q, bytes, &key, now);
            }
            let answer = from_cache(&request, cached);
            return Outcome::Reply(fit(answer, transport, payload_of(&request)));
        }
        self.forward(request, key, client, transport, now)
    }

    /// Puts the local answer to `query` (a fast-shaped query, just answered from the zone) into
    /// the memo: the full path's answer to its canonical lowercase spelling, and whether the
    /// uppercase spelling gets the same bytes (see [`fast`](super::fast)).
    fn memoize(&mut self, q: &FastQuery, query: &[u8]) {
        let lower = self.local_answer(&q.canonical(query, false));
        let upper = self.local_answer(&q.canonical(query, true));
        if let (Some(lower), Some(upper)) = (lower, upper) {
            let version = self.zone.version();
            self.memo
                .write()
                .insert(q, lower, &upper, version, Source::Zone);
        }
    }

    /// Like [`Self::memoize`], for a query just answered from the cache entry `key`: kept while
    /// the cache gives the same answer (the same entry, aged by the same whole seconds).
    fn memoize_cached(&mut self, q: &FastQuery, query: &[u8], key: &CacheKey, now: Duration) {
        let Some((from, until)) = self.cache.same_answer(key, now) else {
            return;
        };
        let lower = self.cached_answer(&q.canonical(query, false), key, now);
        let upper = self.cached_answer(&q.canonical(query, true), key, now);
        if let (Some(lower), Some(upper)) = (lower, upper) {
            let version = self.zone.version();
            self.memo
                .write()
                .insert(q, lower, &upper, version, Source::Cache { from, until });
        }
    }

    /// The full path's answer to `query` from the cache entry `key` over TCP (never
    /// truncated).
    fn cached_answer(&mut self, query: &[u8], key: &CacheKey, now: Duration) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        let cached = self.cache.get(key, now)?;
        Some(fit(from_cache(&request, cached), Transport::Tcp, 0))
    }

    /// The full path's local answer to `query` over TCP (never truncated), if the zone answers
    /// it.
    fn local_answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        let q = request.queries.first()?;
        let (rcode, records, soa) = match self.zone.lookup(q.name(), q.query_type()) {
            Lookup::Answer(records) => (ResponseCode::NoError, records, None),
            Lookup::NoData(soa) => (ResponseCode::NoError, Vec::new(), Some(soa)),
            Lookup::NxDomain(soa) => (ResponseCode::NXDomain, Vec::new(), Some(soa)),
            Lookup::NotLocal => return None,
        };
        Some(self.respond(&request, rcode, records, soa, Transport::Tcp))
    }

    /// The rcode for a request the server will not look up, if it is one.
    fn refusal(&mut self, request: &Message) -> Option<ResponseCode> {
        let m = &request.metadata;
        let rcode = if m.op_code != OpCode::Query {
            self.counters.notimp += 1;
            ResponseCode::NotImp
        } else if request.queries.len() != 1 {
            self.counters.formerr += 1;
            ResponseCode::FormErr
        } else {
            let q = &request.queries[0];
            let transfer = matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR);
            if q.query_class() != DNSClass::IN || transfer {
                self.counters.refused += 1;
                ResponseCode::Refused
            } else {
                return None;
            }
        };
        Some(rcode)
    }

    fn forward(
        &mut self,
        request: Message,
        key: CacheKey,
        client: C,
        transport: Transport,
        now: Duration,
    ) -> Outcome {
        let Some((upstream, next)) = self.pick_upstream(&key.0) else {
            self.counters.refused += 1;
            return Outcome::Reply(self.respond(
                &request,
                ResponseCode::Refused,
                Vec::new(),
                None,
                transport,
            ));
        };
        if self.pending.len() >= self.max_pending {
            self.counters.servfail += 1;
            return Outcome::Reply(self.respond(
                &request,
                ResponseCode::ServFail,
                Vec::new(),
                None,
                transport,
            ));
        }
        let id = self.fresh_id();
        let mut out = request.clone();
        out.metadata.id = id;
        let query = encode(&out);
        self.pending.insert(
            id,
            Pending {
                client,
                transport,
                request,
                key,
                asked: vec![upstream],
                retry: (next != upstream).then_some((now + self.timeout / 2, next)),
                query: query.clone(),
                via: None,
                deadline: now + self.timeout,
            },
        );
        self.counters.forwarded += 1;
        Outcome::Forward { upstream, query }
    }

    /// The upstream for `name`, and the one to retry with (the same if there is only one).
    fn pick_upstream(&mut self, name: &Name) -> Option<(SocketAddr, SocketAddr)> {
        let list = self
            .forwards
            .iter()
            .find(|(d, _)| d.zone_of(name))
            .map_or(&self.upstreams, |(_, u)| u);
        if list.is_empty() {
            return None;
        }
        self.next_upstream = self.next_upstream.wrapping_add(1);
        let i = self.next_upstream % list.len();
        Some((list[i], list[(i + 1) % list.len()]))
    }

    /// An id no pending query uses (the pending table is bounded well below 65,536).
    fn fresh_id(&mut self) -> u16 {
        loop {
            let id = self.ids.next_id();
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Handles one datagram from an upstream, for a caller that does not track sockets
    /// (never called [`sent_via`](Self::sent_via)).
    pub fn process_upstream(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        now: Duration,
    ) -> Option<ClientReply<C>> {
        self.process_upstream_via(bytes, from, None, now)
    }

    /// Handles one datagram that arrived from `from` on socket `via`: the reply for the
    /// client that waits for it. Threat: an off-path attacker racing the upstream with forged
    /// answers (RFC 5452). Accepted only with the id of a pending query, from an upstream that
    /// query was sent to (address and port), on the socket it left from, for its question;
    /// anything else is refused and counted, and the query keeps waiting for the real answer.
    pub fn process_upstream_via(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        via: Option<u64>,
        now: Duration,
    ) -> Option<ClientReply<C>> {
        let unsolicited = |s: &mut Self| {
            s.counters.dropped += 1;
            s.counters.answers_refused += 1;
            None
        };
        let Some(id) = query_id(bytes).filter(|_| bytes.len() >= HEADER_LEN) else {
            return unsolicited(self);
        };
        match self.pending.get(&id) {
            Some(p) if p.asked.contains(&from) && p.via == via => {}
            _ => return unsolicited(self),
        }
        let response = match Message::from_vec(bytes) {
            Ok(r) => r,
            Err(_) => {
                let p = self.pending.remove(&id)?;
                self.counters.servfail += 1;
                let bytes = self.respond(
                    &p.request,
                    ResponseCode::ServFail,
                    Vec::new(),
                    None,
                    p.transport,
                );
                return Some(ClientReply {
                    client: p.client,
                    transport: p.transport,
                    bytes,
                });
            }
        };
        let same_question = response.metadata.message_type == MessageType::Response
            && response.queries.len() == 1
            && self
                .pending
                .get(&id)
                .is_some_and(|p| cache_key(&response.queries[0]) == p.key);
        if !same_question {
            // Possibly forged: keep waiting for the real reply until the deadline.
            return unsolicited(self);
        }
        let p = self.pending.remove(&id)?;
        self.cache.insert(p.key.clone(), &response, now);
        self.counters.upstream_answers += 1;
        let mut response = response;
        response.metadata.id = p.request.metadata.id;
        // The client's own spelling of the name (a 0x20-randomising client checks it).
        response.queries = p.request.queries.clone();
        Some(ClientReply {
            client: p.client,
            transport: p.transport,
            bytes: fit(response, p.transport, payload_of(&p.request)),
        })
    }

    /// Queries to send again, to their next upstream, because the first has not answered
    /// within half the timeout: `(upstream, bytes)`.
    pub fn poll_retries(&mut self, now: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        for p in self.pending.values_mut() {
            if let Some((at, to)) = p.retry {
                if at <= now {
                    p.retry = None;
                    p.asked.push(to);
                    out.push((to, p.query.clone()));
                }
            }
        }
        self.counters.retried += out.len() as u64;
        out
    }

    /// SERVFAIL for every forwarded query past its deadline at `now`; once a second, also
    /// sweeps the cache's expired answers.
    pub fn poll_timeouts(&mut self, now: Duration) -> Vec<ClientReply<C>> {
        if now >= self.next_cache_sweep {
            self.cache.remove_expired(now);
            self.next_cache_sweep = now + CACHE_SWEEP_EVERY;
        }
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.counters.servfail += 1;
                let bytes = self.respond(
                    &p.request,
                    ResponseCode::ServFail,
                    Vec::new(),
                    None,
                    p.transport,
                );
                out.push(ClientReply {
                    client: p.client,
                    transport: p.transport,
                    bytes,
                });
            }
        }
        out
    }

    /// The response to `request`: local answers are authoritative.
    fn respond(
        &self,
        request: &Message,
        rcode: ResponseCode,
        answers: Vec<Record>,
        soa: Option<Record>,
        transport: Transport,
    ) -> Vec<u8> {
        let mut m = Message::response(request.metadata.id, request.metadata.op_code);
        m.metadata.response_code = rcode;
        m.metadata.recursion_desired = request.metadata.recursion_desired;
        m.metadata.recursion_available = !self.upstreams.is_empty() || !self.forwards.is_empty();
        m.metadata.authoritative = !answers.is_empty() || soa.is_some();
        m.queries = request.queries.clone();
        m.answers = answers;
        m.authorities.extend(soa);
        m.edns = request.edns.as_ref().map(|_| our_edns());
        fit(m, transport, payload_of(request))
    }
}

/// The answer to `request` from its cached response `cached`.
/// [`DnsServer::zone_mut`]'s guard: the zone, and on drop the memo brought in step with it.
pub struct ZoneMut<'a> {
    zone: &'a mut Zone,
    memo: &'a SharedMemo,
}

impl Deref for ZoneMut<'_> {
    type Target = Zone;
    fn deref(&self) -> &Zone {
        self.zone
    }
}

impl DerefMut for ZoneMut<'_> {
    fn deref_mut(&mut self) -> &mut Zone {
        self.zone
    }
}

impl Drop for ZoneMut<'_> {
    fn drop(&mut self) {
        self.memo.write().sync(self.zone.version());
    }
}

fn from_cache(request: &Message, mut cached: Message) -> Message {
    cached.metadata.id = request.metadata.id;
    cached.metadata.recursion_desired = request.metadata.recursion_desired;
    // A copy from the cache speaks for no zone (RFC 1035 §6.1.3 keeps AA for the authority
    // itself).
    cached.metadata.authoritative = false;
    cached.queries = request.queries.clone();
    cached.edns = request.edns.as_ref().map(|_| our_edns());
    cached
}

fn our_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    e
}

fn cache_key(q: &Query) -> CacheKey {
    (q.name().to_lowercase(), q.query_type(), q.query_class())
}

/// The id of a DNS message (its first two bytes).
fn query_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// Where upstream query ids come from. Threat: an off-path attacker who can predict the next id
/// (and the source port) can race the upstream with a forged answer (RFC 5452 §§ 9.2-10): the
/// daemon's source is the kernel's CSPRNG.
pub trait IdSource: fmt::Debug + Send {
    fn next_id(&mut self) -> u16;
}

/// A seeded xorshift: reproducible ids for tests, benchmarks and fuzzing, never a secret.
#[derive(Debug)]
pub struct Xorshift(pub u64);

impl IdSource for Xorshift {
    fn next_id(&mut self) -> u16 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u16
    }
}

/// Encodes `m`; a message the encoder refuses becomes a SERVFAIL with its id.
fn encode(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap_or_else(|_| {
        let e = Message::error_msg(m.metadata.id, m.metadata.op_code, ResponseCode::ServFail);
        e.to_vec().unwrap_or_default()
    })
}

/// The UDP payload size the client of `request` takes (its EDNS size, at least 512).
fn payload_of(request: &Message) -> usize {
    request
        .edns
        .as_ref()
        .map_or(MIN_UDP_PAYLOAD, |e| usize::from(e.max_payload()))
        .max(MIN_UDP_PAYLOAD)
}

/// Encodes `m` for `transport`: over UDP, larger than the client takes (`client` bytes, and
/// the path's limit) → truncated.
fn fit(m: Message, transport: Transport, client: usize) -> Vec<u8> {
    let bytes = encode(&m);
    let Transport::Udp { limit } = transport else {
        return bytes;
    };
    let max = client.min(limit.max(MIN_UDP_PAYLOAD));
    if bytes.len() <= max {
        return bytes;
    }
    let mut t = m.truncate();
    t.metadata.id = m.metadata.id;
    encode(&t)
}
