//! The fast path for local and cached answers: the wire bytes of each answer, kept ready, patched
//! with the query's id, RD flag and spelling of the name, so a repeated question costs no
//! `Message` parse, no lookup and no encode.
//!
//! # Theory of operation
//!
//! [`FastQuery::parse`] accepts only the plainest query, and anything else takes the full path
//! (hickory-proto): a header with QR, opcode, AA, TC, Z, RA and rcode all zero (RD, AD and CD
//! may be set: the full path ignores AD and CD and copies RD), one question and no answer or
//! authority records, a question name of plain labels (no compression pointer) in class IN and
//! not AXFR/IXFR, and either nothing after the question or exactly one OPT record of EDNS
//! version 0 with no options and extended rcode 0 (its DO bit and payload size may be anything).
//! The message ends right there: trailing bytes take the full path. A query carrying EDNS
//! options (dig sends a cookie by default) takes the full path too.
//!
//! The [`Memo`] maps (the lowercased question name, qtype, EDNS or not) to the answer the full
//! path produced for that question, encoded for TCP (never truncated), with id 0 and RD clear.
//! It is filled by the server after the full path answered a fast-shaped query from the zone or
//! from the cache, so every byte of a memoized answer was made by the full path once. An answer
//! from the cache is kept only for the span in which the cache gives the same one (its TTLs aged
//! by the same whole seconds: at most a second, never past its expiry); if the cache refills that
//! name meanwhile (a query the fast path does not take found it expired or evicted), the memo
//! may serve the older answer until the span ends, with the TTLs that answer has left. At answer time the copy gets the
//! query's id, its RD bit and its question name bytes (the client's case: a 0x20-randomising
//! client checks it). Over UDP an answer longer than the client takes (512 bytes, or its EDNS
//! size, capped by the path) is not served here: the full path truncates it.
//!
//! Case: hickory's encoder compresses names by exact bytes, so a name in the answer that is a
//! suffix of the question (the SOA owner under an NXDOMAIN) becomes a pointer into the question
//! only when the question spells it in the same case. The server therefore builds each answer
//! twice, with the question lowercased and uppercased; if the two differ anywhere but in the
//! question, the answer depends on the case and is served only to a query spelled exactly in
//! lowercase (others take the full path), so the fast path's bytes always equal the full path's.
//!
//! Validity: the memo belongs to one [`Zone::version`](super::Zone::version); a zone that
//! changed (a lease, a reload) empties it at the next query. Bounded: at [`MEMO_ENTRIES`] it is
//! emptied before the next insert, and answers over [`MEMO_MAX_ANSWER`] bytes are not kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::server::HEADER_LEN;

/// Answers kept at most (a flood of names asked once each cannot grow it beyond this).
pub const MEMO_ENTRIES: usize = 4096;
/// The largest answer kept, bytes.
pub const MEMO_MAX_ANSWER: usize = 1232;
/// The smallest UDP payload every client takes (RFC 1035).
const MIN_UDP_PAYLOAD: usize = 512;
/// A question name on the wire is at most 255 bytes; the key adds qtype and the EDNS flag.
const MAX_KEY: usize = 255 + 3;
const TYPE_OPT: u16 = 41;
const TYPE_AXFR: u16 = 252;
const TYPE_IXFR: u16 = 251;
const CLASS_IN: u16 = 1;

/// A query the fast path can take: where its question name is, and its memo key.
#[derive(Debug, Clone, Copy)]
pub struct FastQuery {
    /// The question name's wire bytes are `query[HEADER_LEN..HEADER_LEN + name_len]`.
    name_len: usize,
    /// Lowercased name, qtype (2 bytes), EDNS flag (1 byte).
    key: [u8; MAX_KEY],
    key_len: usize,
    /// The EDNS payload size, if the query has an OPT record.
    edns_payload: Option<u16>,
}

impl FastQuery {
    /// The fast-path view of `query`, if it has the plain shape described in the module docs.
    pub fn parse(query: &[u8]) -> Option<FastQuery> {
        if query.len() < HEADER_LEN + 5 {
            return None;
        }
        // Byte 2: QR, opcode (4 bits), AA, TC must be 0 (RD free). Byte 3: RA, Z and rcode must
        // be 0 (AD and CD free).
        if query[2] & 0xfe != 0 || query[3] & 0xcf != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        if qd != 1 || an != 0 || ns != 0 || ar > 1 {
            return None;
        }
        let mut key = [0u8; MAX_KEY];
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*query.get(pos)?);
            if len == 0 {
                break;
            }
            // 0x40 and up: a compression pointer or an extended label type.
            if len > 63 || pos + 1 + len - HEADER_LEN > 254 {
                return None;
            }
            let label = query.get(pos + 1..pos + 1 + len)?;
            let k = pos - HEADER_LEN;
            key[k] = len as u8;
            for (d, s) in key[k + 1..k + 1 + len].iter_mut().zip(label) {
                *d = s.to_ascii_lowercase();
            }
            pos += 1 + len;
        }
        let name_len = pos + 1 - HEADER_LEN;
        let fixed = query.get(pos + 1..pos + 5)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        if qclass != CLASS_IN || qtype == TYPE_AXFR || qtype == TYPE_IXFR || qtype == TYPE_OPT {
            return None;
        }
        let end = pos + 5;
        let edns_payload = if ar == 1 {
            // root name, type OPT, class = payload, ttl = ext rcode, version, flags; rdlen 0.
            let opt = query.get(end..)?;
            if opt.len() != 11
                || opt[0] != 0
                || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT
                || opt[5] != 0
                || opt[6] != 0
                || opt[9..11] != [0, 0]
            {
                return None;
            }
            Some(u16::from_be_bytes([opt[3], opt[4]]))
        } else {
            if query.len() != end {
                return None;
            }
            None
        };
        key[name_len..name_len + 2].copy_from_slice(&qtype.to_be_bytes());
        key[name_len + 2] = u8::from(edns_payload.is_some());
        Some(FastQuery {
            name_len,
            key,
            key_len: name_len + 3,
            edns_payload,
        })
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// The lowercased question name's wire bytes.
    fn lower_name(&self) -> &[u8] {
        &self.key[..self.name_len]
    }

    /// `query` with its question name lowercased (`upper`: uppercased), id 0 and RD clear:
    /// the canonical query whose answer the memo keeps.
    pub fn canonical(&self, query: &[u8], upper: bool) -> Vec<u8> {
        let mut q = query.to_vec();
        q[0] = 0;
        q[1] = 0;
        q[2] &= !0x01;
        for b in &mut q[HEADER_LEN..HEADER_LEN + self.name_len] {
            // Length bytes are at most 63: no ASCII letters, so they stay as they are.
            *b = if upper {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
        }
        q
    }

    /// The largest answer the client takes over UDP with the path's `limit` (as the full path
    /// computes it).
    fn udp_max(&self, limit: usize) -> usize {
        let client = self
            .edns_payload
            .map_or(MIN_UDP_PAYLOAD, usize::from)
            .max(MIN_UDP_PAYLOAD);
        client.min(limit.max(MIN_UDP_PAYLOAD))
    }
}

/// Where a kept answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The zone: valid for the zone version.
    Zone,
    /// The cache: valid for the zone version and only from `from` until `until` (the span in
    /// which the cache ages it by the same whole seconds, up to its expiry).
    Cache { from: Duration, until: Duration },
}

impl Source {
    fn valid_at(self, now: Duration) -> bool {
        match self {
            Source::Zone => true,
            Source::Cache { from, until } => from <= now && now < until,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The answer to the canonical query (id 0, RD clear, name lowercased).
    bytes: Box<[u8]>,
    /// Whether the answer is the same for any spelling of the name.
    any_case: bool,
    source: Source,
}

/// Local answers by question; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    version: u64,
    entries: HashMap<Box<[u8]>, Entry>,
}

impl Memo {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every answer if they belong to another zone version than `version`.
    pub(super) fn sync(&mut self, version: u64) {
        if self.version != version {
            self.entries.clear();
            self.version = version;
        }
    }

    /// Whether a valid answer to `q`'s question is kept for zone `version` at `now` (whether
    /// or not it could be served to this spelling or size).
    pub fn contains(&mut self, q: &FastQuery, version: u64, now: Duration) -> bool {
        self.sync(version);
        self.entries
            .get(q.key())
            .is_some_and(|e| e.source.valid_at(now))
    }

    /// The answer to `query` (parsed as `q`) for zone `version` at `now`, and where it came
    /// from, if the memo has it and it fits `udp_limit` (`None`: TCP, no limit).
    pub fn answer(
        &mut self,
        q: &FastQuery,
        query: &[u8],
        udp_limit: Option<usize>,
        version: u64,
        now: Duration,
    ) -> Option<(Vec<u8>, Source)> {
        self.sync(version);
        self.peek(q, query, udp_limit, now)
    }

    /// [`Self::answer`] for the zone version the memo holds answers of.
    fn peek(
        &self,
        q: &FastQuery,
        query: &[u8],
        udp_limit: Option<usize>,
        now: Duration,
    ) -> Option<(Vec<u8>, Source)> {
        let e = self.entries.get(q.key())?;
        if !e.source.valid_at(now) {
            return None;
        }
        let name = &query[HEADER_LEN..HEADER_LEN + q.name_len];
        if !e.any_case && name != q.lower_name() {
            return None;
        }
        if udp_limit.is_some_and(|limit| e.bytes.len() > q.udp_max(limit)) {
            return None;
        }
        let mut out = e.bytes.to_vec();
        out[..2].copy_from_slice(&query[..2]);
        out[2] |= query[2] & 0x01;
        out[HEADER_LEN..HEADER_LEN + q.name_len].copy_from_slice(name);
        Some((out, e.source))
    }

    /// Keeps `lower`, the answer to `q`'s canonical lowercase query, for zone `version`;
    /// `upper` is the answer to the uppercase one (to tell whether the answer depends on the
    /// case).
    pub fn insert(
        &mut self,
        q: &FastQuery,
        lower: Vec<u8>,
        upper: &[u8],
        version: u64,
        source: Source,
    ) {
        self.sync(version);
        let n = HEADER_LEN + q.name_len;
        if lower.len() > MEMO_MAX_ANSWER || lower.len() < n {
            return;
        }
        if self.entries.len() >= MEMO_ENTRIES {
            self.entries.clear();
        }
        let any_case = lower.len() == upper.len()
            && lower[..HEADER_LEN] == upper[..HEADER_LEN]
            && lower[n..] == upper[n..];
        self.entries.insert(
            q.key().into(),
            Entry {
                bytes: lower.into_boxed_slice(),
                any_case,
                source,
            },
        );
    }
}

/// The memo shared between the DNS server, which fills it, and the data-plane workers, which
/// answer from it the queries it has answers for, without handing them to the appliance.
///
/// The server keeps it in step with its zone: every change of the zone empties it before the
/// change is done (see [`DnsServer::zone_mut`](super::DnsServer::zone_mut)), so what a worker
/// finds is valid for the zone as it is. A worker that read an entry just before a change
/// answers as the zone was a moment earlier, as a query that arrived a moment earlier would.
/// Readers take a read lock only for the lookup and copy; writes (a first answer to a
/// question, a cached answer's next second, a zone change) are rare next to reads.
#[derive(Debug, Default)]
pub struct SharedMemo {
    memo: RwLock<Memo>,
    /// Answers given by [`SharedMemo::answer_udp`]: from the zone, and from the cache.
    local: AtomicU64,
    cached: AtomicU64,
}

impl SharedMemo {
    fn read(&self) -> RwLockReadGuard<'_, Memo> {
        self.memo.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Memo> {
        self.memo.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Memo::answer`], with the write lock taken only when the zone version moved on.
    pub(super) fn answer(
        &self,
        q: &FastQuery,
        query: &[u8],
        udp_limit: Option<usize>,
        version: u64,
        now: Duration,
    ) -> Option<(Vec<u8>, Source)> {
        {
            let m = self.read();
            if m.version == version {
                return m.peek(q, query, udp_limit, now);
            }
        }
        self.write().answer(q, query, udp_limit, version, now)
    }

    /// The answer to the UDP query `query` (a DNS message), if it has the fast path's shape
    /// and the memo an answer valid at `now` (the server's clock) that fits the client and
    /// `udp_limit` (the path's largest UDP payload). Counted in [`SharedMemo::counts`].
    pub fn answer_udp(&self, query: &[u8], udp_limit: usize, now: Duration) -> Option<Vec<u8>> {
        let q = FastQuery::parse(query)?;
        let (answer, source) = self.read().peek(&q, query, Some(udp_limit), now)?;
        let counter = match source {
            Source::Zone => &self.local,
            Source::Cache { .. } => &self.cached,
        };
        counter.fetch_add(1, Relaxed);
        Some(answer)
    }

    /// Answers given by [`SharedMemo::answer_udp`]: (from the zone, from the cache).
    pub fn counts(&self) -> (u64, u64) {
        (self.local.load(Relaxed), self.cached.load(Relaxed))
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted, no trailing dot) type `qtype`, with `opt` appended.
    fn query(flags: [u8; 2], name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, flags[0], flags[1], 0, 1, 0, 0, 0, 0, 0];
        q.push(u8::from(opt.is_some()));
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(o) = opt {
            q.extend_from_slice(o);
        }
        q
    }

    const T: Duration = Duration::from_secs(100);
    const OPT_4096: [u8; 11] = [0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn the_key_is_case_insensitive_and_tells_types_and_edns_apart() {
        let a = FastQuery::parse(&query([1, 0], "Vm1.LAB.test", 1, None)).unwrap();
        let b = FastQuery::parse(&query([1, 0], "vm1.lab.test", 1, None)).unwrap();
        let c = FastQuery::parse(&query([1, 0], "vm1.lab.test", 28, None)).unwrap();
        let d = FastQuery::parse(&query([1, 0], "vm1.lab.test", 1, Some(&OPT_4096))).unwrap();
        assert_eq!(a.key(), b.key());
        assert_ne!(b.key(), c.key());
        assert_ne!(b.key(), d.key());
        assert_eq!(d.edns_payload, Some(4096));
        assert_eq!(a.lower_name(), b"\x03vm1\x03lab\x04test\x00");
    }

    #[test]
    fn anything_but_the_plainest_query_is_refused() {
        let ok = query([1, 0x30], "vm1.lab.test", 1, None);
        assert!(FastQuery::parse(&ok).is_some(), "RD, AD and CD are free");
        let mut bad = vec![
            query([0x81, 0], "a.b", 1, None), // QR
            query([0x08, 0], "a.b", 1, None), // opcode 1
            query([0x04, 0], "a.b", 1, None), // AA
            query([0x02, 0], "a.b", 1, None), // TC
            query([0, 0x40], "a.b", 1, None), // Z
            query([0, 0x80], "a.b", 1, None), // RA
            query([0, 0x01], "a.b", 1, None), // rcode
            query([0, 0], "a.b", 252, None),  // AXFR
            query([0, 0], "a.b", 251, None),  // IXFR
        ];
        let mut chaos = query([0, 0], "a.b", 1, None);
        let n = chaos.len();
        chaos[n - 1] = 3;
        bad.push(chaos);
        let mut trailing = query([0, 0], "a.b", 1, None);
        trailing.push(0);
        bad.push(trailing);
        let mut two = query([0, 0], "a.b", 1, None);
        two[5] = 2;
        bad.push(two);
        let mut answers = query([0, 0], "a.b", 1, None);
        answers[7] = 1;
        bad.push(answers);
        let mut pointer = query([0, 0], "a.b", 1, None);
        pointer[12] = 0xc0;
        bad.push(pointer);
        let mut version1 = OPT_4096;
        version1[6] = 1;
        bad.push(query([0, 0], "a.b", 1, Some(&version1)));
        let mut ext_rcode = OPT_4096;
        ext_rcode[5] = 1;
        bad.push(query([0, 0], "a.b", 1, Some(&ext_rcode)));
        // An OPT with a cookie option.
        let mut cookie = OPT_4096.to_vec();
        cookie[10] = 12;
        cookie.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        bad.push(query([0, 0], "a.b", 1, Some(&cookie)));
        let mut not_opt = OPT_4096;
        not_opt[2] = 1;
        bad.push(query([0, 0], "a.b", 1, Some(&not_opt)));
        for (i, q) in bad.iter().enumerate() {
            assert!(FastQuery::parse(q).is_none(), "case {i}: {q:02x?}");
        }
        for cut in 0..ok.len() {
            assert!(FastQuery::parse(&ok[..cut]).is_none(), "cut at {cut}");
        }
        let long = ["a"; 128].join(".");
        assert!(FastQuery::parse(&query([0, 0], &long, 1, None)).is_none());
    }

    #[test]
    fn answers_are_patched_with_id_rd_and_spelling_and_respect_the_udp_size() {
        let mut m = Memo::default();
        let asked = query([1, 0], "VM1.lab.test", 1, None);
        let q = FastQuery::parse(&asked).unwrap();
        let canon = q.canonical(&asked, false);
        assert_eq!(&canon[..3], &[0, 0, 0]);
        // A fake answer: the canonical query with QR set and 4 more bytes.
        let mut lower = canon.clone();
        lower[2] |= 0x80;
        lower.extend_from_slice(&[9, 9, 9, 9]);
        m.insert(&q, lower.clone(), &lower, 7, Source::Zone);
        let (out, _) = m.answer(&q, &asked, Some(1472), 7, T).unwrap();
        assert_eq!(&out[..3], &[0x12, 0x34, 0x81]);
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 4], b"\x03VM1");
        assert_eq!(&out[out.len() - 4..], &[9, 9, 9, 9]);
        assert!(
            m.answer(&q, &asked, None, 8, T).is_none(),
            "another zone version"
        );
        assert!(m.is_empty());
        // Case-dependent: only the lowercase spelling is served.
        let mut upper = lower.clone();
        upper.push(0);
        m.insert(&q, lower.clone(), &upper, 8, Source::Zone);
        assert!(m.answer(&q, &asked, None, 8, T).is_none());
        let plain = query([0, 0], "vm1.lab.test", 1, None);
        let p = FastQuery::parse(&plain).unwrap();
        assert!(m.answer(&p, &plain, None, 8, T).is_some());
        // Over the client's 512 bytes: not served over UDP, served over TCP.
        let mut big = lower.clone();
        big.resize(600, 0);
        m.insert(&p, big, &[], 8, Source::Zone);
        assert!(m.answer(&p, &plain, Some(1472), 8, T).is_none());
        assert_eq!(m.answer(&p, &plain, None, 8, T).unwrap().0.len(), 600);
        let with_edns = query([0, 0], "vm1.lab.test", 1, Some(&OPT_4096));
        assert_eq!(FastQuery::parse(&with_edns).unwrap().udp_max(1472), 1472);
    }

    #[test]
    fn cached_answers_are_kept_only_for_their_span() {
        let mut m = Memo::default();
        let asked = query([1, 0], "n1.example.org", 1, None);
        let q = FastQuery::parse(&asked).unwrap();
        let a = q.canonical(&asked, false);
        let span = Source::Cache {
            from: Duration::from_secs(10),
            until: Duration::from_millis(10_500),
        };
        m.insert(&q, a.clone(), &a, 1, span);
        for (ms, served) in [
            (9_999, false),
            (10_000, true),
            (10_499, true),
            (10_500, false),
        ] {
            let now = Duration::from_millis(ms);
            assert_eq!(m.contains(&q, 1, now), served, "{ms} ms");
            let got = m.answer(&q, &asked, None, 1, now);
            assert_eq!(got.map(|(_, s)| s), served.then_some(span), "{ms} ms");
        }
    }

    #[test]
    fn the_memo_is_bounded() {
        let mut m = Memo::default();
        for i in 0..MEMO_ENTRIES + 10 {
            let asked = query([0, 0], &format!("n{i}.lab.test"), 1, None);
            let q = FastQuery::parse(&asked).unwrap();
            let a = q.canonical(&asked, false);
            m.insert(&q, a.clone(), &a, 1, Source::Zone);
            assert!(m.len() <= MEMO_ENTRIES);
        }
        let asked = query([0, 0], "big.lab.test", 1, None);
        let q = FastQuery::parse(&asked).unwrap();
        let mut big = q.canonical(&asked, false);
        big.resize(MEMO_MAX_ANSWER + 1, 0);
        let before = m.len();
        m.insert(&q, big.clone(), &big, 1, Source::Zone);
        assert_eq!(m.len(), before, "too large to keep");
    }
}
