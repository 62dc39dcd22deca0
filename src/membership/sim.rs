//! A deterministic simulated network of [`Membership`] nodes on a virtual clock, for tests and
//! benchmarks: seeded random latency, packet loss, partitions, crashes and restarts, TCP
//! streams as reliable ordered byte delivery, and timers that wake up a few ms late as a real
//! event loop's do (so a core that loses a tick when woken late shows it here). The same seed
//! and calls give the same run.
//!
//! Work per step is proportional to what happens: one binary heap holds every pending delivery
//! and every node's next deadline (stale deadlines are skipped when popped).
//!
//! ```
//! use std::time::Duration;
//! use wesher::membership::sim::{Sim, SimConfig};
//! use wesher::membership::Timing;
//!
//! let mut sim = Sim::new(SimConfig::new(Timing::lan(), 1));
//! let a = sim.add_node("a", vec![]);
//! let b = sim.add_node("b", vec![]);
//! sim.join(b, &[a]);
//! assert!(sim.run_until(Duration::from_secs(10), |s| s.converged()).is_some());
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::io::{Input, StreamId, Transmit};
use super::rng::Rng;
use super::{Config, Event, Keyring, MemberState, Membership, Timing};

/// Network and protocol settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub timing: Timing,
    /// One-way latency, uniform in [min, max].
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    pub seed: u64,
    /// Every timer wake-up is late by a random delay in [0, timer_jitter] (0: exact).
    pub timer_jitter: Duration,
    /// Keep every node's events (turn off for large benchmarks to save memory).
    pub record_events: bool,
}

impl SimConfig {
    /// 5 to 50 ms latency, no loss, timers up to 5 ms late, events recorded.
    pub fn new(timing: Timing, seed: u64) -> Self {
        SimConfig {
            timing,
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
            seed,
            timer_jitter: Duration::from_millis(5),
            record_events: true,
        }
    }
}

/// Traffic one node sent and received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub streams_opened: u64,
    pub stream_bytes_out: u64,
    /// Largest datagram sent.
    pub max_packet: usize,
}

enum Item {
    /// The node's `next_deadline` as scheduled at that time.
    Timer { node: usize },
    /// Input for one incarnation (`gen`) of a node; dropped if it crashed or restarted since.
    Deliver { node: usize, gen: u32, input: Input },
}

struct Entry {
    at: Instant,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct SimNode {
    name: String,
    addr: SocketAddr,
    m: Membership,
    up: bool,
    gen: u32,
    /// The core's deadline the pending timer is for, and when that timer wakes the node.
    deadline: Option<Instant>,
    scheduled: Option<Instant>,
    group: u32,
    /// UDP to and from this node is dropped (TCP still works).
    udp_blocked: bool,
    next_incoming: u64,
    events: Vec<(Duration, Event)>,
    counters: NodeCounters,
}

/// The simulated network.
pub struct Sim {
    cfg: SimConfig,
    base: Instant,
    now: Instant,
    rng: Rng,
    seq: u64,
    queue: BinaryHeap<Reverse<Entry>>,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Open stream ends: (node, id) -> (peer node, peer id).
    conns: HashMap<(usize, StreamId), (usize, StreamId)>,
    /// Latest delivery time per stream end, so bytes stay in order.
    last_delivery: HashMap<(usize, StreamId), Instant>,
}

const KEY: [u8; 32] = [0x42; 32];
const PORT: u16 = 7946;

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let base = Instant::now();
        let rng = Rng::new(cfg.seed);
        Sim {
            cfg,
            base,
            now: base,
            rng,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            conns: HashMap::new(),
            last_delivery: HashMap::new(),
        }
    }

    /// Starts a node named `name` (address 10.x.y.z:7946); returns its index.
    pub fn add_node(&mut self, name: &str, meta: Vec<u8>) -> usize {
        let i = self.nodes.len();
        let n = i as u32 + 1;
        let ip = Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8);
        let addr = SocketAddr::new(IpAddr::V4(ip), PORT);
        let m = self.make_membership(name, addr, meta, 0);
        self.nodes.push(SimNode {
            name: name.to_owned(),
            addr,
            m,
            up: true,
            gen: 0,
            deadline: None,
            scheduled: None,
            group: 0,
            udp_blocked: false,
            next_incoming: 0,
            events: Vec::new(),
            counters: NodeCounters::default(),
        });
        self.by_addr.insert(addr, i);
        self.after(i);
        i
    }

    fn make_membership(
        &mut self,
        name: &str,
        addr: SocketAddr,
        meta: Vec<u8>,
        gen: u32,
    ) -> Membership {
        let config = Config {
            name: name.to_owned(),
            advertise: addr,
            keyring: Keyring::new(KEY.into()),
            timing: self.cfg.timing.clone(),
            meta,
        };
        let seed = self.rng.next_u64() ^ u64::from(gen);
        Membership::new(config, self.now, seed)
    }

    /// Node `i` joins through the given nodes (TCP push-pull with each).
    pub fn join(&mut self, i: usize, through: &[usize]) {
        let addrs: Vec<SocketAddr> = through.iter().map(|&j| self.nodes[j].addr).collect();
        let now = self.now;
        self.nodes[i].m.join(now, &addrs);
        self.after(i);
    }

    pub fn set_meta(&mut self, i: usize, meta: Vec<u8>) {
        let now = self.now;
        self.nodes[i].m.set_meta(now, meta);
        self.after(i);
    }

    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].m.leave(now);
        self.after(i);
    }

    /// The node stops dead: no more input, timers or traffic.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.up = false;
        node.gen += 1;
        node.deadline = None;
        node.scheduled = None;
        self.conns.retain(|k, v| k.0 != i && v.0 != i);
        self.last_delivery.retain(|k, _| k.0 != i);
    }

    /// Crashes node `i` if it is up, then starts it afresh (incarnation 1, knows only itself)
    /// with the same name and address and new metadata. Call `join` next.
    pub fn restart(&mut self, i: usize, meta: Vec<u8>) {
        if self.nodes[i].up {
            self.crash(i);
        }
        let (name, addr, gen) = {
            let n = &self.nodes[i];
            (n.name.clone(), n.addr, n.gen)
        };
        self.nodes[i].m = self.make_membership(&name, addr, meta, gen);
        self.nodes[i].up = true;
        self.after(i);
    }

    /// Splits the network: nodes in `groups[k]` talk only among themselves; nodes in no group
    /// form one more group. Open streams across groups stall.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for n in &mut self.nodes {
            n.group = 0;
        }
        for (k, g) in groups.iter().enumerate() {
            for &i in g.iter() {
                self.nodes[i].group = k as u32 + 1;
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.partition(&[]);
    }

    /// Drops every datagram to or from node `i` while TCP keeps working (a misconfigured
    /// firewall), or lifts that.
    pub fn block_udp(&mut self, i: usize, blocked: bool) {
        self.nodes[i].udp_blocked = blocked;
    }

    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    pub fn node(&self, i: usize) -> &Membership {
        &self.nodes[i].m
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up
    }

    /// Events node `i` reported, with the virtual time they were polled.
    pub fn events(&self, i: usize) -> &[(Duration, Event)] {
        &self.nodes[i].events
    }

    pub fn counters(&self, i: usize) -> &NodeCounters {
        &self.nodes[i].counters
    }

    /// How node `i` currently sees node `j` (None: unknown or reaped).
    pub fn view(&self, i: usize, j: usize) -> Option<MemberState> {
        self.nodes[i].m.member(&self.nodes[j].name).map(|m| m.state)
    }

    /// Every up node sees every other up node alive.
    pub fn converged(&self) -> bool {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        up.iter().all(|&i| {
            up.iter()
                .all(|&j| i == j || self.view(i, j) == Some(MemberState::Alive))
        })
    }

    /// Processes the earliest pending delivery or deadline; false when nothing is pending.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(entry)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(entry.at);
        let now = self.now;
        match entry.item {
            Item::Timer { node } => {
                let n = &mut self.nodes[node];
                if !n.up || n.scheduled != Some(entry.at) {
                    return true;
                }
                n.deadline = None;
                n.scheduled = None;
                n.m.handle_timeout(now);
                self.after(node);
            }
            Item::Deliver { node, gen, input } => {
                let n = &mut self.nodes[node];
                if !n.up || n.gen != gen {
                    return true;
                }
                if let Input::Datagram { bytes, .. } = &input {
                    n.counters.packets_in += 1;
                    n.counters.bytes_in += bytes.len() as u64;
                }
                n.m.handle_input(now, input);
                self.after(node);
            }
        }
        true
    }

    /// Runs `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.queue.peek().is_some_and(|Reverse(e)| e.at <= end) {
            self.step();
        }
        self.now = end;
    }

    /// Runs until `done` holds (checked every 100 ms of virtual time) or `limit` passes;
    /// returns the virtual time it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(Duration::from_millis(100));
        }
    }

    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            item,
        }));
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = (self.cfg.latency_min, self.cfg.latency_max);
        lo + (hi.saturating_sub(lo)).mul_f64(self.rng.unit())
    }

    fn reachable(&self, i: usize, j: usize) -> bool {
        self.nodes[j].up && self.nodes[i].group == self.nodes[j].group
    }

    fn deliver(&mut self, j: usize, delay: Duration, input: Input) {
        let gen = self.nodes[j].gen;
        let at = self.now + delay;
        self.push(
            at,
            Item::Deliver {
                node: j,
                gen,
                input,
            },
        );
    }

    /// Delivers on a stream end after everything already sent on it.
    fn deliver_ordered(&mut self, j: usize, id: StreamId, input: Input) {
        let lat = self.latency();
        let at = (self.now + lat).max(
            self.last_delivery
                .get(&(j, id))
                .copied()
                .unwrap_or(self.now),
        );
        self.last_delivery.insert((j, id), at);
        let gen = self.nodes[j].gen;
        self.push(
            at,
            Item::Deliver {
                node: j,
                gen,
                input,
            },
        );
    }

    /// Routes node `i`'s output, records its events, reschedules its deadline.
    fn after(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].m.poll_transmit() {
            self.route(i, t);
        }
        let elapsed = self.elapsed();
        let record = self.cfg.record_events;
        let n = &mut self.nodes[i];
        while let Some(e) = n.m.poll_event() {
            if record {
                n.events.push((elapsed, e));
            }
        }
        let Some(d) = n.m.next_deadline() else {
            return;
        };
        if n.deadline == Some(d) {
            return;
        }
        n.deadline = Some(d);
        let late = self.cfg.timer_jitter.mul_f64(self.rng.unit());
        let at = d.max(self.now) + late;
        self.nodes[i].scheduled = Some(at);
        self.push(at, Item::Timer { node: i });
    }

    fn route(&mut self, i: usize, t: Transmit) {
        match t {
            Transmit::Datagram { to, bytes } => {
                let c = &mut self.nodes[i].counters;
                c.packets_out += 1;
                c.bytes_out += bytes.len() as u64;
                c.max_packet = c.max_packet.max(bytes.len());
                let Some(&j) = self.by_addr.get(&to) else {
                    return;
                };
                let lost = self.cfg.loss > 0.0 && self.rng.unit() < self.cfg.loss;
                let blocked = self.nodes[i].udp_blocked || self.nodes[j].udp_blocked;
                if lost || blocked || !self.reachable(i, j) {
                    return;
                }
                let from = self.nodes[i].addr;
                let lat = self.latency();
                self.deliver(j, lat, Input::Datagram { from, bytes });
            }
            Transmit::Connect { id, to } => {
                self.nodes[i].counters.streams_opened += 1;
                let lat = self.latency();
                let target = self.by_addr.get(&to).copied();
                match target {
                    Some(j) if self.reachable(i, j) => {
                        let jid = StreamId::Incoming(self.nodes[j].next_incoming);
                        self.nodes[j].next_incoming += 1;
                        self.conns.insert((i, id), (j, jid));
                        self.conns.insert((j, jid), (i, id));
                        let from = self.nodes[i].addr;
                        self.deliver_ordered(j, jid, Input::Accepted { id: jid, from });
                        self.deliver(i, lat * 2, Input::Connected { id });
                    }
                    // Partitioned: the SYN is lost and the connect hangs until the core's timeout.
                    Some(j) if self.nodes[j].up => {}
                    // Nobody there (or crashed): refused after a round trip.
                    _ => self.deliver(i, lat * 2, Input::StreamClosed { id }),
                }
            }
            Transmit::StreamSend { id, bytes } => {
                self.nodes[i].counters.stream_bytes_out += bytes.len() as u64;
                let Some(&(j, jid)) = self.conns.get(&(i, id)) else {
                    return;
                };
                if self.reachable(i, j) {
                    self.deliver_ordered(j, jid, Input::StreamData { id: jid, bytes });
                }
            }
            Transmit::StreamClose { id } => {
                if let Some((j, jid)) = self.conns.remove(&(i, id)) {
                    self.conns.remove(&(j, jid));
                    self.last_delivery.remove(&(i, id));
                    if self.reachable(i, j) {
                        self.deliver_ordered(j, jid, Input::StreamClosed { id: jid });
                    }
                    self.last_delivery.remove(&(j, jid));
                }
            }
        }
    }
}
