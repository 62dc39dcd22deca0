//! The SWIM core: members and incarnations, probes (direct, indirect, TCP fallback), Lifeguard
//! awareness and suspicion, gossip rounds and memberlist's alive / suspect / dead rules.
//! TCP streams (join, push-pull, fallback ping) live in `stream.rs`.

use std::collections::VecDeque;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::broadcast::BroadcastQueue;
use super::io::{Input, StreamId, Transmit};
use super::message::{
    AckResp, Alive, Dead, IndirectPing, Message, NackResp, Ping, Suspect, WESHER_VSN,
};
use super::noise::{suppressed, NoiseLines};
use super::rng::Rng;
use super::stream::Stream;
use super::timing::{suspicion_timeout, Timing};
use super::wire::{
    self, Keyring, Nonces, PacketOpts, COMPOUND_ENTRY_OVERHEAD, COMPOUND_HEADER_OVERHEAD,
    CRC_OVERHEAD, ENCRYPTION_OVERHEAD, MAX_COMPOUND_PARTS,
};
use super::{Config, Event, Member, MemberState, Stats};
use crate::vecmap::VecMap;

/// memberlist's UDPBufferSize: no packet we build is larger.
pub(super) const UDP_BUFFER_SIZE: usize = 1400;
/// Indirect pings we relay at once; more are dropped (each holds an ack wait).
const MAX_RELAYS: usize = 256;
/// Members we keep track of; alive messages about further new names are dropped.
const MAX_MEMBERS: usize = 65_536;

/// Our view of one member plus when its state last changed.
pub(super) struct Node {
    pub(super) member: Member,
    /// `member.addr`'s IP in the byte form its alive messages carry (IPv4 may come as a mapped
    /// IPv6): relayed as is, since Go rejects another form of the same address as a conflict.
    pub(super) wire_ip: IpAddr,
    /// None: never, like Go's zero StateChange of a member inserted dead by an alive with
    /// incarnation 0 (reapable at once, never "recently dead").
    pub(super) state_change: Option<Instant>,
}

impl Node {
    /// The state changed no longer than `d` before `now`.
    pub(super) fn changed_within(&self, now: Instant, d: Duration) -> bool {
        self.state_change
            .is_some_and(|t| now.saturating_duration_since(t) <= d)
    }
}

/// The probe in flight (memberlist's probeNode, as a state machine).
struct Probe {
    target: String,
    addr: SocketAddr,
    seq: u32,
    incarnation: u32,
    /// End of the direct phase: then indirect pings and the TCP fallback start.
    direct_deadline: Option<Instant>,
    /// End of the whole probe: the awareness-scaled probe interval.
    deadline: Instant,
    expected_nacks: u32,
    nacks: u32,
    tcp: Option<StreamId>,
    tcp_ok: bool,
}

/// An indirect ping we relay for someone else.
struct Relay {
    seq: u32,
    reply_to: SocketAddr,
    nack: bool,
    deadline: Instant,
}

/// A suspicion timer (memberlist's suspicion.go): starts at `max`, shrinks toward `min` with
/// each independent confirmation.
struct Suspicion {
    k: u32,
    confirmations: u32,
    from: Vec<String>,
    min: Duration,
    max: Duration,
    start: Instant,
    deadline: Instant,
}

impl Suspicion {
    fn new(from: String, k: u32, min: Duration, max: Duration, now: Instant) -> Self {
        let timeout = if k < 1 { min } else { max };
        Suspicion {
            k,
            confirmations: 0,
            from: vec![from],
            min,
            max,
            start: now,
            deadline: now + timeout,
        }
    }

    /// Records an independent confirmation; true if it was new (then it is re-gossiped).
    fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations >= self.k || self.from.iter().any(|f| f == from) {
            return false;
        }
        self.from.push(from.to_owned());
        self.confirmations += 1;
        let timeout = suspicion_timeout(self.confirmations, self.k, self.min, self.max);
        self.deadline = self.start + timeout;
        true
    }
}

/// A memberlist node as a sans-IO state machine; see the module documentation.
pub struct Membership {
    pub(super) name: String,
    pub(super) advertise: SocketAddr,
    pub(super) keyring: Keyring,
    pub(super) timing: Timing,
    pub(super) rng: Rng,
    pub(super) nonces: Nonces,
    /// Probe order (memberlist's m.nodes), the local node included.
    pub(super) nodes: Vec<Node>,
    pub(super) index: VecMap<String, usize>,
    incarnation: u32,
    seq_no: u32,
    /// Lifeguard local health score, 0..awareness_max_multiplier.
    awareness: u32,
    probe_index: usize,
    probe: Option<Probe>,
    next_probe: Instant,
    /// A probe tick that fell while a probe was running: it starts the next probe as soon as
    /// that one ends, as the one pending tick of Go's ticker does.
    probe_tick_pending: Option<Instant>,
    next_gossip: Instant,
    /// An extra gossip round asked for at this time (a new member was learned, our meta
    /// changed, we left).
    gossip_soon: Option<Instant>,
    pub(super) next_push_pull: Instant,
    suspicions: VecMap<String, Suspicion>,
    relays: VecMap<u32, Relay>,
    broadcasts: BroadcastQueue,
    pub(super) streams: VecMap<StreamId, Stream>,
    pub(super) next_stream: u64,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    pub(super) stats: Stats,
    pub(super) noise: NoiseLines,
    left: bool,
    left_alone: bool,
}

/// Go memberlist never sends metadata above this (MetaMaxSize); more is not a real member.
pub(super) const META_MAX_SIZE: usize = 512;
/// Longest member name kept. Names are hostnames in wesher (at most 253 bytes); a longer one,
/// or one with control characters, would only serve to flood logs and the status table.
const NAME_MAX_SIZE: usize = 255;

/// Whether an alive message's name and metadata are within what a real member sends.
fn peer_data_ok(a: &Alive) -> Result<(), &'static str> {
    if a.meta.len() > META_MAX_SIZE {
        return Err("meta_too_large");
    }
    if a.node.is_empty() || a.node.len() > NAME_MAX_SIZE || a.node.chars().any(char::is_control) {
        return Err("bad_name");
    }
    Ok(())
}

impl Membership {
    /// A node that knows only itself (alive, incarnation 1). Probes tick one interval after
    /// start and every interval from then on, as Go's probe ticker (its random stagger is
    /// shorter than the first tick, so it changes nothing); gossip and push-pull timers start
    /// with a random stagger so nodes started together do not tick in lockstep.
    pub fn new(config: Config, now: Instant, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let nonces = Nonces::new(rng.next_u64());
        let t = &config.timing;
        let stagger = |rng: &mut Rng, d: Duration| d.mul_f64(rng.unit());
        let next_probe = now + t.probe_interval;
        let next_gossip = now + stagger(&mut rng, t.gossip_interval);
        let next_push_pull = now + stagger(&mut rng, t.push_pull_interval) + t.push_pull_interval;
        let mut m = Membership {
            name: config.name.clone(),
            advertise: config.advertise,
            keyring: config.keyring,
            timing: config.timing,
            rng,
            nonces,
            nodes: Vec::new(),
            index: VecMap::new(),
            incarnation: 0,
            seq_no: 0,
            awareness: 0,
            probe_index: 0,
            probe: None,
            next_probe,
            probe_tick_pending: None,
            next_gossip,
            gossip_soon: None,
            next_push_pull,
            suspicions: VecMap::new(),
            relays: VecMap::new(),
            broadcasts: BroadcastQueue::default(),
            streams: VecMap::new(),
            next_stream: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            noise: NoiseLines::default(),
            left: false,
            left_alone: false,
        };
        let alive = m.local_alive(config.meta);
        m.alive_node(now, alive, true);
        m
    }

    /// Feeds one thing the driver saw.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Datagram { from, bytes } => self.handle_datagram(now, from, &bytes),
            Input::Accepted { id, from } => self.accept(now, id, from),
            Input::Connected { id } => self.send_first(id),
            Input::StreamData { id, bytes } => self.stream_data(now, id, &bytes),
            Input::StreamClosed { id } => self.stream_closed(id),
        }
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_suspicions(now);
        self.expire_relays(now);
        self.advance_probe(now);
        if self.next_probe <= now {
            // Like Go's ticker: ticks missed while a probe runs collapse into one pending tick.
            self.probe_tick_pending.get_or_insert(self.next_probe);
            while self.next_probe <= now {
                self.next_probe += self.timing.probe_interval;
            }
        }
        if self.probe.is_none() && self.probe_tick_pending.take().is_some() {
            self.start_probe(now);
        }
        if self.gossip_soon.is_some_and(|t| t <= now) || self.next_gossip <= now {
            self.gossip_soon = None;
            while self.next_gossip <= now {
                self.next_gossip += self.timing.gossip_interval;
            }
            self.gossip(now);
        }
        if self.next_push_pull <= now {
            self.next_push_pull = now + self.timing.push_pull_period(self.nodes.len());
            self.periodic_push_pull(now);
        }
        self.expire_streams(now);
    }

    /// The next transmission for the driver.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called (may be in the past: call it at once).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d = self
            .next_probe
            .min(self.next_gossip)
            .min(self.next_push_pull);
        if let Some(t) = self.gossip_soon {
            d = d.min(t);
        }
        match (&self.probe, self.probe_tick_pending) {
            (Some(p), _) => {
                d = d.min(p.deadline);
                if let Some(direct) = p.direct_deadline {
                    d = d.min(direct);
                }
            }
            // A probe acked while a tick was pending: the next one starts at once.
            (None, Some(tick)) => d = d.min(tick),
            (None, None) => {}
        }
        let timers = self
            .suspicions
            .values()
            .map(|s| s.deadline)
            .chain(self.relays.values().map(|r| r.deadline))
            .chain(self.streams.values().map(|s| s.deadline));
        Some(timers.fold(d, Instant::min))
    }

    /// Announces new metadata: a new incarnation, gossiped at once.
    pub fn set_meta(&mut self, now: Instant, meta: Vec<u8>) {
        let alive = self.local_alive(meta);
        self.alive_node(now, alive, true);
        self.gossip_soon = Some(now);
    }

    /// Takes a new advertised address (our underlay address changed) and announces it with a
    /// new incarnation, back from a leave if there was one. Memberlist (Go's too) ignores a
    /// new address for a member it has alive: announce a `leave` first and call this once it
    /// is done, then `join` the members again so they learn the new address at once.
    pub fn readvertise(&mut self, now: Instant, advertise: SocketAddr) {
        self.advertise = advertise;
        self.left = false;
        self.left_alone = false;
        let idx = self.index[&self.name];
        self.nodes[idx].member.addr = advertise;
        self.nodes[idx].wire_ip = advertise.ip();
        let meta = self.nodes[idx].member.meta.clone();
        let alive = self.local_alive(meta);
        self.alive_node(now, alive, true);
        self.gossip_soon = Some(now);
    }

    /// Announces a graceful leave (a dead message about ourselves, From = our name).
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.left = true;
        let inc = self.local().incarnation;
        self.dead_node(
            now,
            Dead {
                incarnation: inc,
                node: self.name.clone(),
                from: self.name.clone(),
            },
        );
        self.left_alone = !self.any_alive();
        self.gossip_soon = Some(now);
    }

    /// True once the leave broadcast has been sent as often as the retransmit limit asks (or
    /// there was nobody alive to tell).
    pub fn leave_done(&self) -> bool {
        self.left && (self.left_alone || self.broadcasts.notified())
    }

    /// Every known member, the local node included (dead ones until they are reaped).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.nodes.iter().map(|n| &n.member)
    }

    /// One member by name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.index.get(name).map(|&i| &self.nodes[i].member)
    }

    /// The local node.
    pub fn local(&self) -> &Member {
        // The local node is inserted by `new` and never reaped.
        &self.nodes[self.index[&self.name]].member
    }

    /// Number of members alive or suspect, the local node included.
    pub fn num_alive(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| !n.member.state.is_dead_or_left())
            .count()
    }

    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard local health score (0 = healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness
    }

    // ---- incoming packets ----

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        match wire::open_packet_parts(bytes, &self.keyring) {
            // As Go: every part on its own, the good ones handled, the bad ones counted.
            Ok((msgs, bad)) => {
                for e in bad {
                    debug!("memberlist: dropping a message in a packet from {from}: {e}");
                    self.stats.drop(e.kind());
                }
                for msg in msgs {
                    self.stats.messages_in += 1;
                    self.handle_message(now, from, msg);
                }
            }
            Err(e) => {
                if let Some(n) = self.noise.packets.allow(now) {
                    debug!(
                        "memberlist: dropping packet from {from}: {e}{}",
                        suppressed(n)
                    );
                }
                self.stats.drop(e.kind());
            }
        }
    }

    fn handle_message(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        match msg {
            Message::Ping(p) => self.handle_ping(from, p),
            Message::IndirectPing(ind) => self.handle_indirect_ping(now, from, ind),
            Message::Ack(a) => self.handle_ack(now, a),
            Message::Nack(n) => match &mut self.probe {
                Some(p) if p.seq == n.seq_no => p.nacks += 1,
                _ => self.stats.drop("nack_unknown_seq"),
            },
            Message::Suspect(s) => self.suspect_node(now, s),
            Message::Alive(a) => self.alive_node(now, a, false),
            Message::Dead(d) => self.dead_node(now, d),
            Message::PushPull(_) | Message::Err(_) | Message::User(_) => {
                debug!("memberlist: unexpected message in a packet from {from}");
                self.stats.drop("unexpected_message");
            }
        }
    }

    fn handle_ping(&mut self, from: SocketAddr, p: Ping) {
        if !p.node.is_empty() && p.node != self.name {
            debug!(
                "memberlist: ping for unexpected node {:?} from {from}",
                p.node
            );
            self.stats.drop("ping_wrong_node");
            return;
        }
        let reply_to = reply_addr(from, p.source_addr, p.source_port);
        self.send_msg(
            reply_to,
            &Message::Ack(AckResp {
                seq_no: p.seq_no,
                payload: None,
            }),
        );
    }

    fn handle_indirect_ping(&mut self, now: Instant, from: SocketAddr, ind: IndirectPing) {
        if self.relays.len() >= MAX_RELAYS {
            self.stats.drop("relays_full");
            return;
        }
        let seq = self.next_seq();
        self.relays.insert(
            seq,
            Relay {
                seq: ind.seq_no,
                reply_to: reply_addr(from, ind.source_addr, ind.source_port),
                nack: ind.nack,
                deadline: now + self.timing.probe_timeout,
            },
        );
        // As Go: no port (protocol < 2) means the cluster's (our) port.
        let port = match ind.port {
            0 => self.advertise.port(),
            p => p,
        };
        let ping = self.ping_msg(seq, ind.node);
        self.send_msg(SocketAddr::new(ind.target, port), &ping);
    }

    fn handle_ack(&mut self, now: Instant, ack: AckResp) {
        if self.probe.as_ref().is_some_and(|p| p.seq == ack.seq_no) {
            self.finish_probe(now, true);
        } else if let Some(r) = self.relays.remove(&ack.seq_no) {
            let fwd = Message::Ack(AckResp {
                seq_no: r.seq,
                payload: None,
            });
            self.send_msg(r.reply_to, &fwd);
        } else {
            self.stats.drop("ack_unknown_seq");
        }
    }

    fn expire_relays(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            if let Some(r) = self.relays.remove(&seq) {
                if r.nack {
                    self.send_msg(r.reply_to, &Message::Nack(NackResp { seq_no: r.seq }));
                }
            }
        }
    }

    // ---- probing ----

    fn start_probe(&mut self, now: Instant) {
        let mut checked = 0;
        let idx = loop {
            if checked >= self.nodes.len() {
                return;
            }
            if self.probe_index >= self.nodes.len() {
                self.reset_nodes(now);
                self.probe_index = 0;
                checked += 1;
                continue;
            }
            let i = self.probe_index;
            self.probe_index += 1;
            let n = &self.nodes[i].member;
            if n.name == self.name || n.state.is_dead_or_left() {
                checked += 1;
                continue;
            }
            break i;
        };
        let node = &self.nodes[idx].member;
        let (target, addr, state, incarnation, pmax) = (
            node.name.clone(),
            node.addr,
            node.state,
            node.incarnation,
            node.vsn[1],
        );
        self.stats.probes += 1;
        let seq = self.next_seq();
        let ping = self.ping_msg(seq, target.clone());
        if state == MemberState::Alive {
            self.send_msg(addr, &ping);
        } else {
            // Tell a suspect what we think so it can refute at once.
            let suspect = Message::Suspect(Suspect {
                incarnation,
                node: target.clone(),
                from: self.name.clone(),
            });
            let msgs = [wire::encode_message(&ping), wire::encode_message(&suspect)];
            self.send_packet(addr, &msgs, pmax >= 5);
        }
        let interval = self.timing.probe_interval * (self.awareness + 1);
        self.probe = Some(Probe {
            target,
            addr,
            seq,
            incarnation,
            direct_deadline: Some(now + self.timing.probe_timeout),
            deadline: now + interval,
            expected_nacks: 0,
            nacks: 0,
            tcp: None,
            tcp_ok: false,
        });
    }

    fn advance_probe(&mut self, now: Instant) {
        let Some(p) = &mut self.probe else {
            return;
        };
        if p.direct_deadline.is_some_and(|d| d <= now) {
            p.direct_deadline = None;
            self.start_indirect(now);
        }
        if self.probe.as_ref().is_some_and(|p| p.deadline <= now) {
            self.finish_probe(now, false);
        }
    }

    /// The direct ping went unanswered: ask `indirect_checks` members, and try TCP.
    fn start_indirect(&mut self, now: Instant) {
        let Some(p) = &self.probe else {
            return;
        };
        let (target, addr, seq) = (p.target.clone(), p.addr, p.seq);
        debug!("memberlist: failed UDP ping: {target} (timeout reached)");
        let me = self.name.clone();
        let peers = self.random_nodes(self.timing.indirect_checks, |n| {
            n.member.name == me || n.member.name == target || n.member.state != MemberState::Alive
        });
        let mut expected = 0;
        for i in peers {
            let peer = &self.nodes[i].member;
            let (peer_addr, nack) = (peer.addr, peer.vsn[1] >= 4);
            expected += u32::from(nack);
            let ind = Message::IndirectPing(IndirectPing {
                seq_no: seq,
                target: addr.ip(),
                port: addr.port(),
                node: target.clone(),
                nack,
                source_addr: Some(self.advertise.ip()),
                source_port: Some(self.advertise.port()),
                source_node: Some(self.name.clone()),
            });
            self.send_msg(peer_addr, &ind);
        }
        let tcp_capable = self
            .index
            .get(&target)
            .is_some_and(|&i| self.nodes[i].member.vsn[1] >= 3);
        let tcp = if tcp_capable {
            let ping = wire::encode_message(&self.ping_msg(seq, target.clone()));
            let deadline = self.probe.as_ref().map_or(now, |p| p.deadline);
            Some(self.open_ping_stream(addr, seq, ping, deadline))
        } else {
            None
        };
        if let Some(p) = &mut self.probe {
            p.expected_nacks = expected;
            p.tcp = tcp;
        }
    }

    /// Ends the probe: `acked` when a UDP ack (direct or relayed) came back.
    fn finish_probe(&mut self, now: Instant, acked: bool) {
        let Some(p) = self.probe.take() else {
            return;
        };
        if let Some(id) = p.tcp {
            self.close_stream(id);
        }
        if acked || p.tcp_ok {
            if !acked {
                warn!(
                    "memberlist: was able to connect to {} over TCP but UDP probes failed, network may be misconfigured",
                    p.target
                );
            }
            self.apply_awareness(-1);
            return;
        }
        // Missing nacks mean our own network may be the problem (Lifeguard).
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks - p.nacks.min(p.expected_nacks)
        } else {
            1
        };
        self.apply_awareness(delta as i32);
        info!(
            "memberlist: suspect {} has failed, no acks received",
            p.target
        );
        self.suspect_node(
            now,
            Suspect {
                incarnation: p.incarnation,
                node: p.target,
                from: self.name.clone(),
            },
        );
    }

    /// A TCP fallback ping got its ack.
    pub(super) fn tcp_ping_acked(&mut self, seq: u32) {
        if let Some(p) = &mut self.probe {
            if p.seq == seq {
                p.tcp_ok = true;
            }
        }
    }

    fn apply_awareness(&mut self, delta: i32) {
        let max = self.timing.awareness_max_multiplier.saturating_sub(1) as i64;
        self.awareness = (self.awareness as i64 + delta as i64).clamp(0, max) as u32;
    }

    /// Probe round wrapped: reap members dead longer than gossip_to_the_dead_time, shuffle.
    fn reset_nodes(&mut self, now: Instant) {
        let keep = self.timing.gossip_to_the_dead_time;
        let me = &self.name;
        self.nodes.retain(|n| {
            &n.member.name == me || !n.member.state.is_dead_or_left() || n.changed_within(now, keep)
        });
        let Membership { rng, nodes, .. } = self;
        rng.shuffle(nodes);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, n) in self.nodes.iter().enumerate() {
            self.index.insert(n.member.name.clone(), i);
        }
    }

    // ---- gossip ----

    fn gossip(&mut self, now: Instant) {
        let me = self.name.clone();
        let dead_time = self.timing.gossip_to_the_dead_time;
        let targets = self.random_nodes(self.timing.gossip_nodes, |n| {
            n.member.name == me
                || match n.member.state {
                    MemberState::Alive | MemberState::Suspect => false,
                    MemberState::Dead => !n.changed_within(now, dead_time),
                    MemberState::Left => true,
                }
        });
        // Budget for the CRC header too, so no packet exceeds UDP_BUFFER_SIZE.
        let avail = UDP_BUFFER_SIZE - COMPOUND_HEADER_OVERHEAD - ENCRYPTION_OVERHEAD - CRC_OVERHEAD;
        let limit = self.timing.retransmit_limit(self.nodes.len());
        for i in targets {
            let msgs = self.broadcasts.take(COMPOUND_ENTRY_OVERHEAD, avail, limit);
            if msgs.is_empty() {
                return;
            }
            let (addr, crc) = (self.nodes[i].member.addr, self.nodes[i].member.vsn[1] >= 5);
            for chunk in msgs.chunks(MAX_COMPOUND_PARTS) {
                self.send_packet(addr, chunk, crc);
            }
        }
    }

    /// Up to `k` distinct random members not excluded (memberlist's kRandomNodes: 3n tries).
    pub(super) fn random_nodes(&mut self, k: usize, exclude: impl Fn(&Node) -> bool) -> Vec<usize> {
        let n = self.nodes.len();
        let mut out: Vec<usize> = Vec::with_capacity(k);
        let mut tries = 0;
        while tries < 3 * n && out.len() < k {
            tries += 1;
            let i = self.rng.below(n);
            if exclude(&self.nodes[i]) || out.contains(&i) {
                continue;
            }
            out.push(i);
        }
        out
    }

    fn any_alive(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.member.name != self.name && !n.member.state.is_dead_or_left())
    }

    // ---- sending ----

    /// Sends one message with pending broadcasts piggybacked (memberlist's sendMsg; no CRC,
    /// as Go's lookup of the target by address never finds it).
    fn send_msg(&mut self, to: SocketAddr, msg: &Message) {
        let first = wire::encode_message(msg);
        // Unlike Go, also count the first part's compound entry, so the packet stays <= 1400.
        let avail = UDP_BUFFER_SIZE.saturating_sub(
            first.len() + COMPOUND_ENTRY_OVERHEAD + COMPOUND_HEADER_OVERHEAD + ENCRYPTION_OVERHEAD,
        );
        let limit = self.timing.retransmit_limit(self.nodes.len());
        let mut msgs = vec![first];
        msgs.extend(self.broadcasts.take(COMPOUND_ENTRY_OVERHEAD, avail, limit));
        msgs.truncate(MAX_COMPOUND_PARTS);
        self.send_packet(to, &msgs, false);
    }

    fn send_packet(&mut self, to: SocketAddr, msgs: &[Vec<u8>], crc: bool) {
        let opts = PacketOpts {
            crc,
            compress: true,
        };
        let bytes = wire::seal_packet(msgs, opts, &self.keyring, &mut self.nonces);
        self.stats.packets_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.transmits.push_back(Transmit::Datagram { to, bytes });
    }

    fn broadcast(&mut self, node: &str, msg: &Message, notify: bool) {
        self.broadcasts
            .push(node, wire::encode_message(msg), notify);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq_no = self.seq_no.wrapping_add(1);
        self.seq_no
    }

    fn ping_msg(&self, seq: u32, node: String) -> Message {
        Message::Ping(Ping {
            seq_no: seq,
            node,
            source_addr: Some(self.advertise.ip()),
            source_port: Some(self.advertise.port()),
            source_node: Some(self.name.clone()),
        })
    }

    fn local_alive(&mut self, meta: Vec<u8>) -> Alive {
        // Go's incarnation is a wrapping u32 (atomic.AddUint32).
        self.incarnation = self.incarnation.wrapping_add(1);
        Alive {
            incarnation: self.incarnation,
            node: self.name.clone(),
            addr: self.advertise.ip(),
            port: self.advertise.port(),
            meta,
            vsn: WESHER_VSN,
        }
    }

    // ---- memberlist's state rules ----

    /// Raises our incarnation above `accused` and gossips that we are alive. Wraps like Go's
    /// u32 (nextIncarnation, skipIncarnation): an accusation at u32::MAX refutes with 0.
    fn refute(&mut self, accused: u32) {
        self.incarnation = self.incarnation.wrapping_add(1);
        if accused >= self.incarnation {
            self.incarnation = accused.wrapping_add(1);
        }
        let Some(&i) = self.index.get(&self.name) else {
            return;
        };
        self.nodes[i].member.incarnation = self.incarnation;
        self.apply_awareness(1);
        let me = &self.nodes[i].member;
        let alive = Message::Alive(Alive {
            incarnation: self.incarnation,
            node: me.name.clone(),
            addr: me.addr.ip(),
            port: me.addr.port(),
            meta: me.meta.clone(),
            vsn: me.vsn,
        });
        let name = self.name.clone();
        self.broadcast(&name, &alive, false);
    }

    /// memberlist's aliveNode. `bootstrap` marks our own announcements (start, set_meta).
    pub(super) fn alive_node(&mut self, now: Instant, mut a: Alive, bootstrap: bool) {
        let is_local = a.node == self.name;
        if self.left && is_local {
            return;
        }
        if a.vsn[0] == 0 || a.vsn[1] == 0 || a.vsn[0] > a.vsn[1] {
            debug!(
                "memberlist: ignoring alive for {:?}: bad protocol versions",
                a.node
            );
            self.stats.drop("bad_vsn");
            return;
        }
        // Our own name and metadata were checked by the configuration.
        if let Some(why) = (!is_local).then(|| peer_data_ok(&a).err()).flatten() {
            if let Some(n) = self.noise.peer_data.allow(now) {
                debug!(
                    "memberlist: ignoring alive for {:?}: {why}{}",
                    a.node,
                    suppressed(n)
                );
            }
            self.stats.drop(why);
            return;
        }
        // As Go: a missing port means the cluster's (our) port.
        if a.port == 0 {
            a.port = self.advertise.port();
        }
        let addr = SocketAddr::new(a.addr.to_canonical(), a.port);
        let mut updates_node = false;
        let idx = match self.index.get(&a.node) {
            Some(&i) => {
                let old = &self.nodes[i].member;
                if old.addr != addr {
                    if old.state == MemberState::Left {
                        info!(
                            "memberlist: updating address for left node {} from {} to {addr}",
                            old.name, old.addr
                        );
                        updates_node = true;
                    } else {
                        debug!(
                            "memberlist: conflicting address for {}: mine {} theirs {addr}",
                            old.name, old.addr
                        );
                        self.stats.drop("address_conflict");
                        return;
                    }
                }
                i
            }
            None if self.nodes.len() >= MAX_MEMBERS => {
                self.stats.drop("too_many_members");
                return;
            }
            None => self.insert_node(&a, addr),
        };
        let node = &self.nodes[idx];
        if a.incarnation <= node.member.incarnation && !is_local && !updates_node {
            return;
        }
        if a.incarnation < node.member.incarnation && is_local {
            return;
        }
        self.suspicions.remove(&a.node);
        let old_state = node.member.state;
        if !bootstrap && is_local {
            let m = &node.member;
            if a.incarnation == m.incarnation && a.meta == m.meta && a.vsn == m.vsn {
                return;
            }
            warn!("memberlist: refuting an alive message for {:?}", a.node);
            self.refute(a.incarnation);
            return;
        }
        let name = a.node.clone();
        let msg = Message::Alive(a);
        self.broadcast(&name, &msg, false);
        let Message::Alive(a) = msg else {
            return;
        };
        let node = &mut self.nodes[idx];
        let meta_changed = node.member.meta != a.meta;
        node.member.vsn = a.vsn;
        node.member.incarnation = a.incarnation;
        node.member.meta = a.meta;
        node.member.addr = addr;
        node.wire_ip = a.addr;
        if node.member.state != MemberState::Alive {
            node.member.state = MemberState::Alive;
            node.state_change = Some(now);
        }
        if is_local {
            return;
        }
        if old_state.is_dead_or_left() {
            self.events.push_back(Event::Join(node.member.clone()));
            // Better than Go: spread a newcomer at once rather than at the next gossip tick.
            self.gossip_soon.get_or_insert(now);
        } else if meta_changed {
            self.events.push_back(Event::Update(node.member.clone()));
        }
    }

    /// Adds a member never seen before at a random position of the probe order.
    fn insert_node(&mut self, a: &Alive, addr: SocketAddr) -> usize {
        let n = self.nodes.len();
        self.nodes.push(Node {
            member: Member {
                name: a.node.clone(),
                addr,
                meta: a.meta.clone(),
                incarnation: 0,
                state: MemberState::Dead,
                vsn: a.vsn,
            },
            // Go's zero time: dead since ever until an alive with a higher incarnation comes.
            state_change: None,
            wire_ip: a.addr,
        });
        let offset = self.rng.below(n);
        self.nodes.swap(offset, n);
        self.index.insert(self.nodes[n].member.name.clone(), n);
        self.index.insert(a.node.clone(), offset);
        offset
    }

    /// memberlist's suspectNode.
    pub(super) fn suspect_node(&mut self, now: Instant, s: Suspect) {
        let Some(&idx) = self.index.get(&s.node) else {
            self.stats.drop("unknown_node");
            return;
        };
        if s.incarnation < self.nodes[idx].member.incarnation {
            return;
        }
        if let Some(sus) = self.suspicions.get_mut(&s.node) {
            if sus.confirm(&s.from) {
                let name = s.node.clone();
                self.broadcast(&name, &Message::Suspect(s), false);
            }
            return;
        }
        if self.nodes[idx].member.state != MemberState::Alive {
            return;
        }
        if s.node == self.name {
            warn!(
                "memberlist: refuting a suspect message (from: {:?})",
                s.from
            );
            self.refute(s.incarnation);
            return;
        }
        let name = s.node.clone();
        let (from, incarnation) = (s.from.clone(), s.incarnation);
        self.broadcast(&name, &Message::Suspect(s), false);
        let node = &mut self.nodes[idx];
        node.member.incarnation = incarnation;
        node.member.state = MemberState::Suspect;
        node.state_change = Some(now);
        let n = self.nodes.len();
        let t = &self.timing;
        let sus = Suspicion::new(
            from,
            t.suspicion_k(n),
            t.suspicion_min(n),
            t.suspicion_max(n),
            now,
        );
        self.suspicions.insert(name, sus);
    }

    fn expire_suspicions(&mut self, now: Instant) {
        let due: Vec<String> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(sus) = self.suspicions.remove(&name) else {
                continue;
            };
            let Some(&idx) = self.index.get(&name) else {
                continue;
            };
            let node = &self.nodes[idx];
            if node.member.state != MemberState::Suspect || node.state_change != Some(sus.start) {
                continue;
            }
            info!(
                "memberlist: marking {name} as failed, suspect timeout reached ({} peer confirmations)",
                sus.confirmations
            );
            let dead = Dead {
                incarnation: node.member.incarnation,
                node: name,
                from: self.name.clone(),
            };
            self.dead_node(now, dead);
        }
    }

    /// memberlist's deadNode; `from == node` is a graceful leave.
    pub(super) fn dead_node(&mut self, now: Instant, d: Dead) {
        let Some(&idx) = self.index.get(&d.node) else {
            self.stats.drop("unknown_node");
            return;
        };
        if d.incarnation < self.nodes[idx].member.incarnation {
            return;
        }
        self.suspicions.remove(&d.node);
        if self.nodes[idx].member.state.is_dead_or_left() {
            return;
        }
        let is_local = d.node == self.name;
        if is_local && !self.left {
            warn!("memberlist: refuting a dead message (from: {:?})", d.from);
            self.refute(d.incarnation);
            return;
        }
        let left = d.node == d.from;
        let (name, incarnation) = (d.node.clone(), d.incarnation);
        // Our own leave is watched until it has been sent out.
        self.broadcast(&name, &Message::Dead(d), is_local);
        let node = &mut self.nodes[idx];
        node.member.incarnation = incarnation;
        node.member.state = if left {
            MemberState::Left
        } else {
            MemberState::Dead
        };
        node.state_change = Some(now);
        if !is_local {
            self.events.push_back(Event::Leave(node.member.clone()));
        }
    }
}

/// Where to answer: the source the sender names, else the packet's source address.
fn reply_addr(from: SocketAddr, addr: Option<std::net::IpAddr>, port: Option<u16>) -> SocketAddr {
    match (addr, port) {
        (Some(ip), Some(port)) if port > 0 => SocketAddr::new(ip, port),
        _ => from,
    }
}
