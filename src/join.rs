//! When to join, and whom: the first join with Go wesher's backoff, and the periodic re-joins
//! that heal a split cluster. Sans-IO: fed with `now` and what membership knows, it answers with
//! names to look up and addresses to open join push-pulls to; the agent does both.
//!
//! Re-joins are bounded (a router's gossip port faces the internet, and a partition must not
//! turn into O(N^2) full-state transfers): a few targets per round, a backoff per address that
//! grows while the address keeps failing, and a cap on join streams in flight.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::JoinAddr;

/// Go wesher's join backoff: 0.5 s, times 1.5, at most 60 s. Unlike Go we never give up.
const JOIN_BACKOFF_START: Duration = Duration::from_millis(500);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often lost members and configured addresses are re-joined (split-brain healing).
pub const REJOIN_INTERVAL: Duration = Duration::from_secs(30);
/// An address that failed skips the next round; the delay doubles at each failure up to the max.
const ADDR_BACKOFF_START: Duration = Duration::from_secs(2 * REJOIN_INTERVAL.as_secs());
const ADDR_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// Addresses tried per re-join round.
pub const TARGETS_PER_ROUND: usize = 3;
/// Join push-pulls in flight at once (the first join included): each is a TCP stream and a
/// full state transfer.
pub const MAX_IN_FLIGHT: usize = 8;
/// How long the address of a member that failed (not one that left) is kept for re-joins: long
/// enough for a cut between two sites to be repaired, short enough not to knock forever on the
/// door of a node that is gone for good.
const FORGET_FAILED_AFTER: Duration = Duration::from_secs(24 * 3600);
/// At most this many failed addresses are kept; the oldest go first.
const MAX_FAILED: usize = 256;

/// What the agent must do for the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look these targets up (the port defaults to the cluster port) and hand every address
    /// found to `resolved`, even none.
    Resolve(Vec<JoinAddr>),
    /// Open join push-pulls to these addresses; each ends in one `result`.
    Join(Vec<SocketAddr>),
}

/// Which kind of join an address result belongs to, for how loudly to log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first join (or its retries): a failure is news.
    First,
    /// A periodic re-join of a lost member: failures are expected.
    Rejoin,
}

/// What membership knows, as the scheduler needs it.
pub struct View<'a> {
    /// Addresses of alive members, this node included.
    pub alive: &'a [SocketAddr],
    /// Addresses of members known dead or left.
    pub lost: &'a [SocketAddr],
}

#[derive(Debug, Clone, Copy)]
struct AddrBackoff {
    next: Instant,
    delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first join is due at this time (None: not configured or done).
    First(Option<Instant>),
    /// Waiting for the first join's lookup or its results.
    FirstRunning {
        succeeded: bool,
    },
    Done,
}

pub struct Scheduler {
    /// Addresses as configured (`--join`) or resumed from the state file.
    targets: Vec<JoinAddr>,
    phase: Phase,
    backoff: Duration,
    /// Where the next first-join attempt starts in the resolved list (rotates past the cap).
    first_offset: usize,
    retry_in: Option<Duration>,
    /// A lookup is out: its result is for the first join, or for a re-join round.
    resolving: Option<Kind>,
    next_rejoin: Instant,
    /// Join streams open, at most `MAX_IN_FLIGHT`.
    in_flight: Vec<(SocketAddr, Kind)>,
    backoffs: AddrMap<AddrBackoff>,
    /// Addresses of members that failed, with when: memberlist forgets dead members after a
    /// while, but the other half of a split cluster must still be found once the cut heals.
    failed: AddrMap<Instant>,
}

/// A map by address for the few hundred addresses a node keeps: a vector searched in order,
/// a fraction of the code of a `BTreeMap` on a router.
struct AddrMap<V>(Vec<(SocketAddr, V)>);

impl<V> AddrMap<V> {
    fn get(&self, addr: &SocketAddr) -> Option<&V> {
        self.0.iter().find(|(a, _)| a == addr).map(|(_, v)| v)
    }

    fn insert(&mut self, addr: SocketAddr, value: V) {
        self.remove(&addr);
        self.0.push((addr, value));
    }

    fn remove(&mut self, addr: &SocketAddr) {
        self.0.retain(|(a, _)| a != addr);
    }
}

impl Scheduler {
    pub fn new(now: Instant, targets: Vec<JoinAddr>) -> Scheduler {
        let phase = if targets.is_empty() {
            Phase::Done
        } else {
            Phase::First(Some(now))
        };
        Scheduler {
            targets,
            phase,
            backoff: JOIN_BACKOFF_START,
            first_offset: 0,
            retry_in: None,
            resolving: None,
            next_rejoin: now + REJOIN_INTERVAL,
            in_flight: Vec::new(),
            backoffs: AddrMap(Vec::new()),
            failed: AddrMap(Vec::new()),
        }
    }

    pub fn targets(&self) -> &[JoinAddr] {
        &self.targets
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::First(Some(at)) => Some(at.min(self.next_rejoin)),
            _ => Some(self.next_rejoin),
        }
    }

    /// The next thing to do at `now`, if any; call until None.
    pub fn poll(&mut self, now: Instant, view: &View<'_>) -> Option<Action> {
        if self.resolving.is_some() {
            return None;
        }
        if let Phase::First(Some(at)) = self.phase {
            if at <= now {
                self.phase = Phase::FirstRunning { succeeded: false };
                self.resolving = Some(Kind::First);
                return Some(Action::Resolve(self.targets.clone()));
            }
        }
        if now < self.next_rejoin {
            return None;
        }
        self.next_rejoin = now + REJOIN_INTERVAL;
        if self.phase != Phase::Done {
            return None;
        }
        // Hostnames need a lookup: done again only when this node is alone (`alive` holds this
        // node); otherwise the addresses of lost members find the other half without DNS.
        let alone = view.alive.len() <= 1;
        let lookup: Vec<JoinAddr> = self
            .targets
            .iter()
            .filter(|t| alone || t.host.parse::<IpAddr>().is_ok())
            .cloned()
            .collect();
        self.failed
            .0
            .retain(|(_, at)| now.duration_since(*at) < FORGET_FAILED_AFTER);
        if lookup.is_empty() {
            self.rejoin_round(now, view, &[])
        } else {
            self.resolving = Some(Kind::Rejoin);
            Some(Action::Resolve(lookup))
        }
    }

    /// The addresses found for the last `Resolve`.
    pub fn resolved(
        &mut self,
        now: Instant,
        view: &View<'_>,
        mut addrs: Vec<SocketAddr>,
    ) -> Option<Action> {
        match self.resolving.take()? {
            Kind::Rejoin => self.rejoin_round(now, view, &addrs),
            Kind::First => {
                addrs.sort();
                addrs.dedup();
                addrs.retain(|a| !self.is_in_flight(a));
                if addrs.is_empty() {
                    self.retry_first(now);
                    return None;
                }
                let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight.len()).max(1);
                // Past the cap, each attempt starts where the last one stopped.
                let start = self.first_offset % addrs.len();
                addrs.rotate_left(start);
                addrs.truncate(room);
                self.first_offset = start + addrs.len();
                self.start(&addrs, Kind::First)
            }
        }
    }

    /// A join push-pull ended. Returns which kind it was (None: not one of ours).
    pub fn result(&mut self, now: Instant, addr: SocketAddr, ok: bool) -> Option<Kind> {
        let at = self.in_flight.iter().position(|(a, _)| *a == addr)?;
        let (_, kind) = self.in_flight.swap_remove(at);
        // A re-join that worked but left the address without a live member (an alias of one:
        // NAT, a second interface) would otherwise be repeated every round for ever; it backs
        // off like a failure, and `member_alive` clears that when a member does turn up there.
        if ok && kind == Kind::First {
            self.backoffs.remove(&addr);
            self.failed.remove(&addr);
        } else {
            let delay = self
                .backoffs
                .get(&addr)
                .map_or(ADDR_BACKOFF_START, |b| (b.delay * 2).min(ADDR_BACKOFF_MAX));
            self.backoffs.insert(
                addr,
                AddrBackoff {
                    next: now + delay,
                    delay,
                },
            );
        }
        if kind == Kind::First {
            if let Phase::FirstRunning { succeeded } = &mut self.phase {
                *succeeded |= ok;
            }
            let first_left = self.in_flight.iter().any(|(_, k)| *k == Kind::First);
            if let (Phase::FirstRunning { succeeded }, false) = (self.phase, first_left) {
                if succeeded {
                    self.phase = Phase::Done;
                    self.backoff = JOIN_BACKOFF_START;
                } else {
                    self.retry_first(now);
                }
            }
        }
        Some(kind)
    }

    /// After a failed first-join attempt: the delay before the next one.
    pub fn retrying_in(&self) -> Option<Duration> {
        match self.phase {
            Phase::First(Some(_)) => self.retry_in,
            _ => None,
        }
    }

    /// A member was declared dead: its address is kept for re-joins.
    pub fn member_failed(&mut self, now: Instant, addr: SocketAddr) {
        self.failed.insert(addr, now);
        if self.failed.0.len() > MAX_FAILED {
            if let Some(oldest) = self
                .failed
                .0
                .iter()
                .min_by_key(|(_, at)| *at)
                .map(|(a, _)| *a)
            {
                self.failed.remove(&oldest);
            }
        }
    }

    /// A member is alive at this address: nothing to re-join there.
    pub fn member_alive(&mut self, addr: SocketAddr) {
        self.failed.remove(&addr);
        self.backoffs.remove(&addr);
    }

    fn retry_first(&mut self, now: Instant) {
        self.phase = Phase::First(Some(now + self.backoff));
        self.retry_in = Some(self.backoff);
        self.backoff = (self.backoff * 3 / 2).min(JOIN_BACKOFF_MAX);
    }

    /// Pick a few lost addresses whose backoff is over, least recently tried first.
    fn rejoin_round(
        &mut self,
        now: Instant,
        view: &View<'_>,
        configured: &[SocketAddr],
    ) -> Option<Action> {
        let mut lost: Vec<SocketAddr> = view
            .lost
            .iter()
            .chain(self.failed.0.iter().map(|(a, _)| a))
            .chain(configured)
            .copied()
            .filter(|a| !view.alive.contains(a) && !self.is_in_flight(a))
            .filter(|a| self.backoffs.get(a).is_none_or(|b| b.next <= now))
            .collect();
        lost.sort();
        lost.dedup();
        // Never tried first, then the longest waiting.
        lost.sort_by_key(|a| self.backoffs.get(a).map(|b| b.next));
        let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight.len());
        lost.truncate(TARGETS_PER_ROUND.min(room));
        self.start(&lost, Kind::Rejoin)
    }

    fn is_in_flight(&self, addr: &SocketAddr) -> bool {
        self.in_flight.iter().any(|(a, _)| a == addr)
    }

    fn start(&mut self, addrs: &[SocketAddr], kind: Kind) -> Option<Action> {
        if addrs.is_empty() {
            return None;
        }
        for a in addrs {
            self.in_flight.push((*a, kind));
        }
        Some(Action::Join(addrs.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn target(s: &str) -> JoinAddr {
        s.parse().unwrap()
    }

    const ME: &str = "192.0.2.1:7946";

    /// Answers lookups the way the agent's resolver would, for literals only.
    fn lookup(targets: &[JoinAddr]) -> Vec<SocketAddr> {
        targets
            .iter()
            .filter_map(|t| t.host.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 7946))
            .collect()
    }

    /// Runs the scheduler at `now` until it has nothing to do; returns the joins it asked for.
    fn drive(
        s: &mut Scheduler,
        now: Instant,
        alive: &[SocketAddr],
        lost: &[SocketAddr],
    ) -> Vec<SocketAddr> {
        let view = View { alive, lost };
        let mut joins = Vec::new();
        let mut action = s.poll(now, &view);
        while let Some(a) = action {
            action = match a {
                Action::Resolve(t) => s.resolved(now, &view, lookup(&t)),
                Action::Join(addrs) => {
                    joins.extend(addrs);
                    s.poll(now, &view)
                }
            };
        }
        joins
    }

    #[test]
    fn first_join_backs_off_like_go_and_never_gives_up() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, vec![target("192.0.2.7")]);
        let me = [sa(ME)];
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..16 {
            assert_eq!(drive(&mut s, now, &me, &[]), vec![sa("192.0.2.7:7946")]);
            assert_eq!(
                s.result(now, sa("192.0.2.7:7946"), false),
                Some(Kind::First)
            );
            let d = s.retrying_in().unwrap();
            delays.push(d);
            // Nothing before the retry is due.
            assert!(drive(&mut s, now + d - Duration::from_millis(1), &me, &[]).is_empty());
            now += d;
        }
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_millis(750));
        assert_eq!(*delays.last().unwrap(), JOIN_BACKOFF_MAX);
        assert_eq!(drive(&mut s, now, &me, &[]).len(), 1);
        assert_eq!(s.result(now, sa("192.0.2.7:7946"), true), Some(Kind::First));
        assert_eq!(s.retrying_in(), None);
    }

    #[test]
    fn first_join_succeeds_when_any_target_answers() {
        let t0 = Instant::now();
        let targets = vec![target("192.0.2.7"), target("192.0.2.8")];
        let mut s = Scheduler::new(t0, targets);
        assert_eq!(drive(&mut s, t0, &[sa(ME)], &[]).len(), 2);
        s.result(t0, sa("192.0.2.7:7946"), false);
        assert_eq!(s.retrying_in(), None, "one answer is still expected");
        s.result(t0, sa("192.0.2.8:7946"), true);
        assert_eq!(s.retrying_in(), None);
        assert!(drive(&mut s, t0 + Duration::from_secs(5), &[sa(ME)], &[]).is_empty());
    }

    #[test]
    fn a_first_join_with_nothing_resolved_is_retried() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, vec![target("seed.example.net")]);
        assert!(drive(&mut s, t0, &[sa(ME)], &[]).is_empty());
        assert_eq!(s.retrying_in(), Some(JOIN_BACKOFF_START));
    }

    #[test]
    fn a_long_join_list_is_taken_in_slices_under_the_stream_cap() {
        let t0 = Instant::now();
        let targets: Vec<JoinAddr> = (10..30).map(|i| target(&format!("192.0.2.{i}"))).collect();
        let mut s = Scheduler::new(t0, targets);
        let first = drive(&mut s, t0, &[sa(ME)], &[]);
        assert_eq!(first.len(), MAX_IN_FLIGHT);
        for a in &first {
            s.result(t0, *a, false);
        }
        let now = t0 + s.retrying_in().unwrap();
        let second = drive(&mut s, now, &[sa(ME)], &[]);
        assert_eq!(second.len(), MAX_IN_FLIGHT);
        assert!(
            second.iter().all(|a| !first.contains(a)),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn rejoins_take_a_few_targets_per_round_and_back_off_per_address() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, Vec::new());
        let alive = [sa(ME), sa("192.0.2.2:7946")];
        let lost: Vec<SocketAddr> = (100..200)
            .map(|i| sa(&format!("198.51.100.{i}:7946")))
            .collect();
        for a in &lost[..50] {
            s.member_failed(t0, *a);
        }
        let mut now = t0;
        let mut tried: BTreeMap<SocketAddr, Vec<Instant>> = BTreeMap::new();
        let mut max_round = 0;
        // An hour of rounds, every join failing: a partition that does not heal.
        while now < t0 + Duration::from_secs(3600) {
            now += Duration::from_secs(1);
            let joins = drive(&mut s, now, &alive, &lost[50..]);
            assert!(s.in_flight.len() <= MAX_IN_FLIGHT);
            max_round = max_round.max(joins.len());
            for a in joins {
                assert!(!alive.contains(&a));
                tried.entry(a).or_default().push(now);
                // Half of them time out only a round later: still in flight meanwhile.
                if a.ip().to_string().ends_with('0') {
                    continue;
                }
                s.result(now, a, false);
            }
            let late: Vec<SocketAddr> = s.in_flight.iter().map(|(a, _)| *a).collect();
            for a in late {
                if tried[&a]
                    .last()
                    .is_some_and(|t| now.duration_since(*t) >= REJOIN_INTERVAL)
                {
                    s.result(now, a, false);
                }
            }
        }
        assert_eq!(max_round, TARGETS_PER_ROUND);
        let rounds = 3600 / REJOIN_INTERVAL.as_secs() as usize;
        let total: usize = tried.values().map(Vec::len).sum();
        assert!(total <= rounds * TARGETS_PER_ROUND, "{total}");
        // Every lost address got its turn, and none was knocked at more often than its backoff.
        assert_eq!(tried.len(), lost.len());
        for times in tried.values() {
            for pair in times.windows(2) {
                assert!(pair[1].duration_since(pair[0]) >= ADDR_BACKOFF_START);
            }
        }
    }

    #[test]
    fn an_address_that_answers_is_tried_again_without_backoff() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, Vec::new());
        let a = sa("198.51.100.1:7946");
        s.member_failed(t0, a);
        let now = t0 + REJOIN_INTERVAL;
        assert_eq!(drive(&mut s, now, &[sa(ME)], &[]), vec![a]);
        assert_eq!(s.result(now, a, false), Some(Kind::Rejoin));
        // Backed off: the next round skips it.
        assert!(drive(&mut s, now + REJOIN_INTERVAL, &[sa(ME)], &[]).is_empty());
        let later = now + ADDR_BACKOFF_START;
        assert_eq!(drive(&mut s, later, &[sa(ME)], &[]), vec![a]);
        s.result(later, a, true);
        // It joined: alive now, nothing to do.
        assert!(drive(&mut s, later + REJOIN_INTERVAL, &[sa(ME), a], &[]).is_empty());
    }

    #[test]
    fn a_rejoined_alias_of_a_live_member_backs_off() {
        let t0 = Instant::now();
        let alias = sa("192.0.2.7:7946");
        let mut s = Scheduler::new(t0, vec![target("192.0.2.7")]);
        assert_eq!(drive(&mut s, t0, &[sa(ME)], &[]), vec![alias]);
        s.result(t0, alias, true);
        // The member behind it advertises another address: the alias stays "not alive".
        let crowd = [sa(ME), sa("10.99.0.2:7946")];
        let mut tried = 0;
        let mut now = t0;
        while now < t0 + Duration::from_secs(600) {
            now += REJOIN_INTERVAL;
            for addr in drive(&mut s, now, &crowd, &[]) {
                assert_eq!(addr, alias);
                tried += 1;
                s.result(now, addr, true);
            }
        }
        // 60 s, then 120, 240: three re-joins in ten minutes, not twenty.
        assert!(
            (1..=4).contains(&tried),
            "{tried} re-joins of an alias in 10 minutes"
        );
    }

    #[test]
    fn hostnames_are_looked_up_again_only_when_alone() {
        let t0 = Instant::now();
        let targets = vec![target("192.0.2.7"), target("seed.example.net:7000")];
        let mut s = Scheduler::new(t0, targets.clone());
        drive(&mut s, t0, &[sa(ME)], &[]);
        s.result(t0, sa("192.0.2.7:7946"), true);
        let now = t0 + REJOIN_INTERVAL;
        let crowd = [sa(ME), sa("192.0.2.2:7946")];
        let view = View {
            alive: &crowd,
            lost: &[],
        };
        assert_eq!(
            s.poll(now, &view),
            Some(Action::Resolve(vec![target("192.0.2.7")]))
        );
        s.resolved(now, &view, Vec::new());
        let view = View {
            alive: &[sa(ME)],
            lost: &[],
        };
        assert_eq!(
            s.poll(now + REJOIN_INTERVAL, &view),
            Some(Action::Resolve(targets))
        );
    }
}
