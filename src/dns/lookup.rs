//! One name's lookup, sans-IO: /etc/hosts first, then DNS. Fed `now`, datagrams and timeouts,
//! drained of datagrams to send; ends in the addresses found or a `Failure`.
//!
//! As musl does, each candidate name (the search list applied per `ndots`) is asked for A and
//! AAAA of every nameserver at once; an attempt waits `timeout`, then the unanswered queries go
//! out again, `attempts` times in all. The first valid answer per type wins, from any server.
//! NXDOMAIN and NODATA move to the next candidate; SERVFAIL or REFUSED from a server leaves the
//! query to the others (all of them failing starts the next attempt at once). When a candidate
//! gets no answer in time the lookup ends there (musl's EAI_AGAIN), with whatever one of the two
//! types brought, so a server that drops AAAA queries still gives the A records.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::conf::{hosts_lookup, ResolvConf, MAX_SEARCH};
use super::message::{self, Rcode, TYPE_A, TYPE_AAAA};
use crate::hosts::is_hostname;

/// The search list and the name itself.
pub const MAX_CANDIDATES: usize = MAX_SEARCH + 1;
/// Random query IDs for every query a lookup may send: A and AAAA of each candidate.
pub type Ids = [u16; 2 * MAX_CANDIDATES];
const DNS_PORT: u16 = 53;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    InvalidName,
    NotFound,
    /// No nameserver answered within this time (every attempt).
    Timeout(Duration),
    /// No valid answer in time, and a nameserver answered with SERVFAIL, REFUSED or another
    /// error (the others, if any, with the same or not at all).
    ServerFailure,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::InvalidName => f.write_str("not a valid host name"),
            Failure::NotFound => f.write_str("no such host"),
            Failure::Timeout(t) => write!(f, "no nameserver answered within {} s", t.as_secs()),
            Failure::ServerFailure => {
                f.write_str("no nameserver could answer (SERVFAIL or REFUSED)")
            }
        }
    }
}

struct Query {
    packet: Vec<u8>,
    done: bool,
    /// Servers (a bit per index) that failed it in this attempt.
    failed: u8,
}

/// Before the first candidate (or with none: answered from /etc/hosts).
const NO_QUERY: Query = Query {
    packet: Vec::new(),
    done: true,
    failed: 0,
};

pub struct Lookup {
    candidates: Vec<String>,
    current: usize,
    servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: u32,
    attempt: u32,
    deadline: Instant,
    ids: Ids,
    /// A and AAAA of the current candidate.
    queries: [Query; 2],
    found: Vec<IpAddr>,
    /// A server answered the current candidate with an error (for the message).
    server_failed: bool,
    transmit: Vec<(SocketAddr, Vec<u8>)>,
    outcome: Option<Result<Vec<IpAddr>, Failure>>,
}

impl Lookup {
    /// Starts looking `name` up; `hosts` is /etc/hosts' text, `ids` random.
    pub fn new(now: Instant, name: &str, hosts: &str, conf: &ResolvConf, ids: Ids) -> Lookup {
        let mut lookup = Lookup {
            candidates: Vec::new(),
            current: 0,
            servers: conf
                .nameservers
                .iter()
                .map(|ip| SocketAddr::new(*ip, DNS_PORT))
                .collect(),
            timeout: conf.timeout,
            attempts: conf.attempts,
            attempt: 0,
            deadline: now,
            ids,
            queries: [NO_QUERY, NO_QUERY],
            found: Vec::new(),
            server_failed: false,
            transmit: Vec::new(),
            outcome: None,
        };
        let (bare, absolute) = match name.strip_suffix('.') {
            Some(bare) => (bare, true),
            None => (name, false),
        };
        if !is_hostname(bare) {
            lookup.outcome = Some(Err(Failure::InvalidName));
            return lookup;
        }
        let in_hosts = hosts_lookup(hosts, bare);
        if !in_hosts.is_empty() {
            lookup.outcome = Some(Ok(in_hosts));
            return lookup;
        }
        // The name first if absolute or with enough dots, then the search list, else last.
        let bare_first = absolute || bare.bytes().filter(|&b| b == b'.').count() >= conf.ndots;
        let c = &mut lookup.candidates;
        if bare_first {
            c.push(bare.to_string());
        }
        if !absolute {
            for domain in &conf.search {
                let name = format!("{bare}.{domain}");
                if name.len() <= 253 {
                    c.push(name);
                }
            }
        }
        if !bare_first {
            c.push(bare.to_string());
        }
        lookup.start_candidate(now);
        lookup
    }

    /// The addresses found, or why none: once the lookup has ended.
    pub fn outcome(&self) -> Option<&Result<Vec<IpAddr>, Failure>> {
        self.outcome.as_ref()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// The next datagram to send, to a nameserver's port 53.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop()
    }

    /// A datagram from `from`; anything but a reply of a queried server to a query out is
    /// ignored.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        let Some(server) = self.servers.iter().position(|s| *s == from) else {
            return;
        };
        let mut hit = None;
        for q in self.queries.iter_mut().filter(|q| !q.done) {
            if let Some(reply) = message::parse_reply(packet, &q.packet) {
                hit = Some((q, reply));
                break;
            }
        }
        let Some((query, reply)) = hit else {
            return;
        };
        match reply.rcode {
            // A cut reply without the records counts as a failure of that server.
            Rcode::NoError if !(reply.truncated && reply.addrs.is_empty()) => {
                query.done = true;
                for ip in reply.addrs {
                    if !self.found.contains(&ip) {
                        self.found.push(ip);
                    }
                }
            }
            Rcode::NxDomain => query.done = true,
            _ => {
                query.failed |= 1 << server;
                self.server_failed = true;
            }
        }
        let all = (1u8 << self.servers.len()) - 1;
        if self.queries.iter().all(|q| q.done) {
            if !self.found.is_empty() {
                self.outcome = Some(Ok(std::mem::take(&mut self.found)));
            } else if self.current + 1 < self.candidates.len() {
                self.current += 1;
                self.start_candidate(now);
            } else {
                self.outcome = Some(Err(Failure::NotFound));
            }
        } else if self.queries.iter().all(|q| q.done || q.failed == all) {
            // Every server failed what is left: no use waiting for the deadline.
            self.next_attempt(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_none() && now >= self.deadline {
            self.next_attempt(now);
        }
    }

    fn start_candidate(&mut self, now: Instant) {
        let name = &self.candidates[self.current];
        let ids = &self.ids[2 * self.current..];
        self.queries = [(ids[0], TYPE_A), (ids[1], TYPE_AAAA)].map(|(id, qtype)| Query {
            packet: message::query(id, name, qtype),
            done: false,
            failed: 0,
        });
        self.attempt = 0;
        self.server_failed = false;
        self.send(now);
    }

    /// (Re)sends the unanswered queries to every server; the attempt ends at the deadline.
    fn send(&mut self, now: Instant) {
        for q in self.queries.iter_mut().filter(|q| !q.done) {
            q.failed = 0;
            for server in &self.servers {
                self.transmit.push((*server, q.packet.clone()));
            }
        }
        self.deadline = now + self.timeout;
    }

    fn next_attempt(&mut self, now: Instant) {
        self.attempt += 1;
        if self.attempt < self.attempts {
            self.send(now);
        } else if !self.found.is_empty() {
            self.outcome = Some(Ok(std::mem::take(&mut self.found)));
        } else if self.server_failed {
            self.outcome = Some(Err(Failure::ServerFailure));
        } else {
            self.outcome = Some(Err(Failure::Timeout(self.timeout * self.attempts)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: Ids = [
        100, 101, 200, 201, 300, 301, 400, 401, 500, 501, 600, 601, 700, 701,
    ];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Everything the lookup wants sent: (server, id, name, type), sorted.
    fn sent(l: &mut Lookup) -> Vec<(SocketAddr, u16, String, u16)> {
        let mut out = Vec::new();
        while let Some((to, q)) = l.poll_transmit() {
            let id = u16::from_be_bytes([q[0], q[1]]);
            let qtype = u16::from_be_bytes([q[q.len() - 4], q[q.len() - 3]]);
            let mut name = Vec::new();
            let mut at = 12;
            while q[at] != 0 {
                name.push(
                    String::from_utf8_lossy(&q[at + 1..at + 1 + q[at] as usize]).into_owned(),
                );
                at += 1 + q[at] as usize;
            }
            out.push((to, id, name.join("."), qtype));
        }
        out.sort();
        out
    }

    /// The server's reply to query `id` (as `sent` gave it) with `rcode` and A/AAAA `addrs`.
    fn answer(name: &str, id: u16, qtype: u16, rcode: u8, addrs: &[&str]) -> Vec<u8> {
        let mut r = message::query(id, name, qtype);
        r[2] |= 0x80;
        r[3] = 0x80 | rcode;
        r[7] = addrs.len() as u8;
        for a in addrs {
            let data = match ip(a) {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            r.extend_from_slice(&[0xc0, 12]);
            r.extend_from_slice(&qtype.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, data.len() as u8]);
            r.extend_from_slice(&data);
        }
        r
    }

    fn conf(text: &str) -> ResolvConf {
        ResolvConf::parse(text)
    }

    const NS1: &str = "10.99.0.250:53";
    const NS2: &str = "10.99.0.251:53";
    const TWO: &str = "nameserver 10.99.0.250\nnameserver 10.99.0.251\nsearch lan\n";

    #[test]
    fn hosts_first_and_dns_not_asked() {
        let t0 = Instant::now();
        let hosts = "192.0.2.7 seed.lan seed\n";
        let mut l = Lookup::new(t0, "Seed", hosts, &conf(TWO), IDS);
        assert_eq!(l.outcome(), Some(&Ok(vec![ip("192.0.2.7")])));
        assert!(sent(&mut l).is_empty());
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn invalid_names_are_refused_before_any_query() {
        let t0 = Instant::now();
        let long = format!("{}.lan", "a".repeat(64));
        for name in ["a..b", long.as_str(), "bad name", "-x", ""] {
            let mut l = Lookup::new(t0, name, "", &conf(TWO), IDS);
            assert_eq!(l.outcome(), Some(&Err(Failure::InvalidName)), "{name:?}");
            assert!(sent(&mut l).is_empty());
        }
    }

    #[test]
    fn short_names_try_the_search_list_first_then_the_name() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed", "", &conf(TWO), IDS);
        let first = sent(&mut l);
        assert_eq!(
            first,
            vec![
                (sa(NS1), 100, "seed.lan".into(), TYPE_A),
                (sa(NS1), 101, "seed.lan".into(), TYPE_AAAA),
                (sa(NS2), 100, "seed.lan".into(), TYPE_A),
                (sa(NS2), 101, "seed.lan".into(), TYPE_AAAA),
            ]
        );
        // seed.lan does not exist (NXDOMAIN for A, NODATA for AAAA): the bare name is next.
        l.handle_datagram(t0, sa(NS1), &answer("seed.lan", 100, TYPE_A, 3, &[]));
        l.handle_datagram(t0, sa(NS2), &answer("seed.lan", 101, TYPE_AAAA, 0, &[]));
        assert_eq!(l.outcome(), None);
        let second = sent(&mut l);
        assert_eq!(second.len(), 4);
        assert!(second
            .iter()
            .all(|(_, id, name, _)| name == "seed" && *id >= 200));
        l.handle_datagram(
            t0,
            sa(NS2),
            &answer("seed", 201, TYPE_AAAA, 0, &["2001:db8::7"]),
        );
        assert_eq!(l.outcome(), None, "A is still out");
        l.handle_datagram(t0, sa(NS1), &answer("seed", 200, TYPE_A, 0, &["192.0.2.7"]));
        assert_eq!(
            l.outcome(),
            Some(&Ok(vec![ip("2001:db8::7"), ip("192.0.2.7")]))
        );
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn names_with_ndots_dots_go_first_and_a_trailing_dot_skips_the_search() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed.example", "", &conf(TWO), IDS);
        let names: Vec<String> = sent(&mut l).into_iter().map(|s| s.2).collect();
        assert!(names.iter().all(|n| n == "seed.example"), "{names:?}");
        l.handle_datagram(t0, sa(NS1), &answer("seed.example", 100, TYPE_A, 3, &[]));
        l.handle_datagram(t0, sa(NS1), &answer("seed.example", 101, TYPE_AAAA, 3, &[]));
        let names: Vec<String> = sent(&mut l).into_iter().map(|s| s.2).collect();
        assert!(names.iter().all(|n| n == "seed.example.lan"), "{names:?}");

        let ndots2 = conf("nameserver 10.99.0.250\nsearch lan\noptions ndots:2\n");
        let mut l = Lookup::new(t0, "seed.example", "", &ndots2, IDS);
        assert!(sent(&mut l).iter().all(|s| s.2 == "seed.example.lan"));

        let mut l = Lookup::new(t0, "seed.", "", &conf(TWO), IDS);
        assert!(sent(&mut l).iter().all(|s| s.2 == "seed"));
        l.handle_datagram(t0, sa(NS1), &answer("seed", 100, TYPE_A, 3, &[]));
        l.handle_datagram(t0, sa(NS1), &answer("seed", 101, TYPE_AAAA, 3, &[]));
        assert_eq!(l.outcome(), Some(&Err(Failure::NotFound)));
        assert!(sent(&mut l).is_empty());
    }

    #[test]
    fn replies_from_elsewhere_or_to_other_queries_are_ignored() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed.", "", &conf(TWO), IDS);
        sent(&mut l);
        let good = answer("seed", 100, TYPE_A, 0, &["192.0.2.7"]);
        // Not a server we asked, another port of it, a wrong ID, a wrong name, garbage.
        l.handle_datagram(t0, sa("10.99.0.9:53"), &good);
        l.handle_datagram(t0, sa("10.99.0.250:5353"), &good);
        l.handle_datagram(
            t0,
            sa(NS1),
            &answer("seed", 999, TYPE_A, 0, &["192.0.2.66"]),
        );
        l.handle_datagram(
            t0,
            sa(NS1),
            &answer("evil", 100, TYPE_A, 0, &["192.0.2.66"]),
        );
        l.handle_datagram(t0, sa(NS1), &good[..good.len() - 2]);
        l.handle_datagram(t0, sa(NS1), b"\x00");
        l.handle_datagram(t0, sa(NS1), &answer("seed", 101, TYPE_AAAA, 0, &[]));
        assert_eq!(l.outcome(), None);
        l.handle_datagram(t0, sa(NS2), &good);
        assert_eq!(l.outcome(), Some(&Ok(vec![ip("192.0.2.7")])));
    }

    #[test]
    fn timeouts_and_attempts_on_the_virtual_clock() {
        let t0 = Instant::now();
        let c = conf("nameserver 10.99.0.250\noptions timeout:3 attempts:3\n");
        let mut l = Lookup::new(t0, "seed.", "", &c, IDS);
        assert_eq!(sent(&mut l).len(), 2);
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(3)));
        l.handle_timeout(t0 + Duration::from_millis(2999));
        assert!(sent(&mut l).is_empty(), "nothing before the deadline");
        // AAAA answered (NODATA) in the first attempt: only A goes out again, with its ID.
        l.handle_datagram(t0, sa(NS1), &answer("seed", 101, TYPE_AAAA, 0, &[]));
        for n in 1..3u64 {
            let at = t0 + Duration::from_secs(3 * n);
            l.handle_timeout(at);
            assert_eq!(sent(&mut l), vec![(sa(NS1), 100, "seed".into(), TYPE_A)]);
            assert_eq!(l.next_deadline(), Some(at + Duration::from_secs(3)));
        }
        l.handle_timeout(t0 + Duration::from_secs(9));
        assert_eq!(
            l.outcome(),
            Some(&Err(Failure::Timeout(Duration::from_secs(9))))
        );
        assert_eq!(
            l.outcome().unwrap().as_ref().unwrap_err().to_string(),
            "no nameserver answered within 9 s"
        );
        assert!(sent(&mut l).is_empty());
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn a_late_answer_to_an_earlier_attempt_counts() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed.", "", &conf(TWO), IDS);
        sent(&mut l);
        l.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(sent(&mut l).len(), 4);
        l.handle_datagram(t0, sa(NS1), &answer("seed", 100, TYPE_A, 0, &["192.0.2.7"]));
        l.handle_datagram(t0, sa(NS1), &answer("seed", 101, TYPE_AAAA, 0, &[]));
        assert_eq!(l.outcome(), Some(&Ok(vec![ip("192.0.2.7")])));
    }

    #[test]
    fn two_servers_one_dead() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed", "", &conf(TWO), IDS);
        sent(&mut l);
        // Only the second server ever answers: seed.lan exists.
        let at = t0 + Duration::from_millis(30);
        l.handle_datagram(
            at,
            sa(NS2),
            &answer("seed.lan", 100, TYPE_A, 0, &["10.99.0.2"]),
        );
        l.handle_datagram(at, sa(NS2), &answer("seed.lan", 101, TYPE_AAAA, 0, &[]));
        assert_eq!(l.outcome(), Some(&Ok(vec![ip("10.99.0.2")])));
    }

    #[test]
    fn servfail_waits_for_the_other_server_and_refusals_from_all_retry_at_once() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed.", "", &conf(TWO), IDS);
        sent(&mut l);
        l.handle_datagram(t0, sa(NS1), &answer("seed", 100, TYPE_A, 2, &[]));
        l.handle_datagram(t0, sa(NS1), &answer("seed", 101, TYPE_AAAA, 5, &[]));
        assert!(sent(&mut l).is_empty(), "the other server may still answer");
        let at = t0 + Duration::from_secs(1);
        l.handle_datagram(
            at,
            sa(NS2),
            &answer("seed", 101, TYPE_AAAA, 0, &["2001:db8::7"]),
        );
        l.handle_datagram(at, sa(NS2), &answer("seed", 100, TYPE_A, 5, &[]));
        // Both refused A: its second attempt goes out with the last refusal, not at the first
        // attempt's deadline, and waits a whole timeout.
        assert_eq!(
            sent(&mut l),
            vec![
                (sa(NS1), 100, "seed".into(), TYPE_A),
                (sa(NS2), 100, "seed".into(), TYPE_A)
            ]
        );
        assert_eq!(l.next_deadline(), Some(at + Duration::from_secs(5)));
        l.handle_datagram(at, sa(NS1), &answer("seed", 100, TYPE_A, 2, &[]));
        l.handle_datagram(at, sa(NS2), &answer("seed", 100, TYPE_A, 2, &[]));
        // Out of attempts: the AAAA answer is what there is.
        assert_eq!(l.outcome(), Some(&Ok(vec![ip("2001:db8::7")])));

        let mut l = Lookup::new(t0, "seed.", "", &conf(TWO), IDS);
        sent(&mut l);
        for _ in 0..2 {
            for (id, t) in [(100, TYPE_A), (101, TYPE_AAAA)] {
                for ns in [NS1, NS2] {
                    l.handle_datagram(t0, sa(ns), &answer("seed", id, t, 2, &[]));
                }
            }
        }
        assert_eq!(l.outcome(), Some(&Err(Failure::ServerFailure)));
    }

    #[test]
    fn a_truncated_reply_without_records_is_a_failure_of_that_server() {
        let t0 = Instant::now();
        let mut l = Lookup::new(t0, "seed.", "", &conf(TWO), IDS);
        sent(&mut l);
        let mut tc = answer("seed", 100, TYPE_A, 0, &[]);
        tc[2] |= 0x02;
        l.handle_datagram(t0, sa(NS1), &tc);
        l.handle_datagram(t0, sa(NS1), &answer("seed", 101, TYPE_AAAA, 0, &[]));
        assert_eq!(l.outcome(), None);
        let mut tc = answer("seed", 100, TYPE_A, 0, &["192.0.2.7"]);
        tc[2] |= 0x02;
        l.handle_datagram(t0, sa(NS2), &tc);
        assert_eq!(l.outcome(), Some(&Ok(vec![ip("192.0.2.7")])));
    }
}
