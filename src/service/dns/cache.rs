//! The forwarder's response cache: positive and negative answers, TTLs honoured, bounded.
//!
//! # Theory of operation
//!
//! Key: the question (lowercased name, type, class). Value: the upstream's response and when it
//! expires. A positive answer (NOERROR with answers) lives for its smallest record TTL; a
//! negative one (NXDOMAIN, or NOERROR with no answer) for the SOA's negative TTL (RFC 2308: the
//! smaller of the SOA record's TTL and its minimum); a negative answer without a SOA, a
//! truncated answer, any other rcode, and TTL 0 are not cached. A hit is served with every TTL
//! reduced by the time spent in the cache.
//!
//! Bounded: at `capacity` entries an insert first drops the expired ones, then, if still full,
//! the entry closest to expiry. Lookups never allocate beyond the lowercased key. Expired
//! entries are also swept by [`Cache::remove_expired`] (the server calls it once a second), so
//! a stream of names asked once each does not keep up to `capacity` dead answers in memory
//! (found by the soak: RSS grew by the size of every answer ever cached).

use std::collections::HashMap;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// The cache key: a question, name lowercased.
pub type CacheKey = (Name, RecordType, DNSClass);

#[derive(Debug, Clone)]
struct Entry {
    response: Message,
    stored: Duration,
    expires: Duration,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Cache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
}

/// How long `response` may be cached, if at all.
pub fn cacheable_ttl(response: &Message) -> Option<u32> {
    let m = &response.metadata;
    if m.truncation {
        return None;
    }
    let ttl = match m.response_code {
        ResponseCode::NoError if !response.answers.is_empty() => {
            response.answers.iter().map(|r| r.ttl).min()
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            response.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        }
        _ => None,
    }?;
    (ttl > 0).then_some(ttl)
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            entries: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry expired at `now`.
    pub fn remove_expired(&mut self, now: Duration) {
        self.entries.retain(|_, e| e.expires > now);
    }

    /// Stores `response` to `key` at `now` if it is cacheable.
    pub fn insert(&mut self, key: CacheKey, response: &Message, now: Duration) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = cacheable_ttl(response) else {
            return;
        };
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        let mut response = response.clone();
        // Never cache the upstream's OPT or TSIG: they belong to that one exchange.
        response.edns = None;
        response.signature = None;
        self.entries.insert(
            key,
            Entry {
                response,
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    /// The span of time around `now` in which [`Cache::get`] gives the same response to `key`
    /// as at `now` (the same entry, aged by the same whole seconds): `[from, until)`. `None` if
    /// absent or expired.
    pub fn same_answer(&self, key: &CacheKey, now: Duration) -> Option<(Duration, Duration)> {
        let e = self.entries.get(key)?;
        if e.expires <= now {
            return None;
        }
        let age = now.saturating_sub(e.stored).as_secs();
        let from = e.stored + Duration::from_secs(age);
        let until = (from + Duration::from_secs(1)).min(e.expires);
        Some((from, until))
    }

    /// The cached response to `key` at `now`, TTLs reduced by its age; `None` if absent or
    /// expired (an expired entry is removed).
    pub fn get(&mut self, key: &CacheKey, now: Duration) -> Option<Message> {
        let e = self.entries.get(key)?;
        if e.expires <= now {
            self.entries.remove(key);
            return None;
        }
        let age = u32::try_from(now.saturating_sub(e.stored).as_secs()).unwrap_or(u32::MAX);
        let mut m = e.response.clone();
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Record;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn key(s: &str) -> CacheKey {
        (name(s), RecordType::A, DNSClass::IN)
    }

    fn answer(s: &str, ttl: u32) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(Query::query(name(s), RecordType::A));
        m.add_answer(Record::from_rdata(
            name(s),
            ttl,
            RData::A(A::new(192, 0, 2, 7)),
        ));
        m
    }

    fn nxdomain(s: &str, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_query(Query::query(name(s), RecordType::A));
        let soa = SOA::new(name("org."), name("h.org."), 1, 1, 1, 1, minimum);
        m.add_authority(Record::from_rdata(name("org."), soa_ttl, RData::SOA(soa)));
        m
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn positive_answers_live_for_their_ttl_and_age() {
        let mut c = Cache::new(10);
        c.insert(key("a.org."), &answer("a.org.", 30), S(100));
        let hit = c.get(&key("a.org."), S(110)).unwrap();
        assert_eq!(hit.answers[0].ttl, 20);
        assert!(c.get(&key("a.org."), S(130)).is_none());
        assert!(c.is_empty(), "an expired entry is removed on lookup");
    }

    #[test]
    fn negative_answers_use_the_soa_minimum_and_ttl_zero_is_not_cached() {
        let mut c = Cache::new(10);
        c.insert(key("x.org."), &nxdomain("x.org.", 300, 60), S(0));
        assert!(c.get(&key("x.org."), S(59)).is_some());
        assert!(c.get(&key("x.org."), S(60)).is_none());
        c.insert(key("z.org."), &answer("z.org.", 0), S(0));
        let mut no_soa = nxdomain("y.org.", 1, 1);
        no_soa.authorities.clear();
        c.insert(key("y.org."), &no_soa, S(0));
        let mut servfail = answer("w.org.", 60);
        servfail.metadata.response_code = ResponseCode::ServFail;
        c.insert(key("w.org."), &servfail, S(0));
        let mut tc = answer("t.org.", 60);
        tc.metadata.truncation = true;
        c.insert(key("t.org."), &tc, S(0));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn remove_expired_sweeps_only_dead_entries() {
        let mut c = Cache::new(10);
        c.insert(key("a.org."), &answer("a.org.", 5), S(0));
        c.insert(key("b.org."), &answer("b.org.", 100), S(0));
        c.remove_expired(S(4));
        assert_eq!(c.len(), 2);
        c.remove_expired(S(5));
        assert_eq!(c.len(), 1, "a expired at 5 s");
        assert!(c.get(&key("b.org."), S(6)).is_some());
    }

    #[test]
    fn bounded_evicting_expired_then_soonest_to_expire() {
        let mut c = Cache::new(3);
        c.insert(key("a.org."), &answer("a.org.", 10), S(0));
        c.insert(key("b.org."), &answer("b.org.", 100), S(0));
        c.insert(key("c.org."), &answer("c.org.", 50), S(0));
        c.insert(key("d.org."), &answer("d.org.", 100), S(20)); // a has expired
        assert_eq!(c.len(), 3);
        assert!(c.get(&key("a.org."), S(20)).is_none());
        c.insert(key("e.org."), &answer("e.org.", 100), S(21)); // evicts c (expires soonest)
        assert_eq!(c.len(), 3);
        assert!(c.get(&key("c.org."), S(21)).is_none());
        assert!(c.get(&key("b.org."), S(21)).is_some());
        let mut off = Cache::new(0);
        off.insert(key("a.org."), &answer("a.org.", 10), S(0));
        assert!(off.is_empty());
    }
}
