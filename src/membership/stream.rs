//! TCP streams of the SWIM core: join and periodic push-pull (full state exchange), the
//! fallback ping, and serving both to peers. One framed message each way per stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::io::{StreamId, Transmit};
use super::message::{AckResp, ErrResp, Message, NodeState, PushNodeState, PushPull};
use super::noise::suppressed;
use super::swim::{Membership, Node};
use super::wire;
use super::{Event, MemberState};

/// Incoming streams waiting for their frame. Until the frame is complete it cannot be
/// authenticated, so these are strangers: when all are taken, the oldest is evicted for a new
/// one (a real peer sends its frame within milliseconds of connecting, a squatter idles).
/// A stream whose frame decrypted is served at once; its reply then counts against the
/// transport's cap, not this one.
const MAX_PENDING_STREAMS: usize = 64;
/// Pending streams from one IP address. A member opens at most a join, a push-pull and a
/// fallback ping to us at once; more from one address is someone squatting slots.
const MAX_PENDING_PER_SOURCE: usize = 8;
/// Bytes buffered by all pending streams together: two frames of the largest size. A new
/// chunk beyond it evicts the oldest other pending streams until it fits.
const PENDING_BYTES: usize = 2 * MAX_FRAME_BYTES;
/// Bytes one stream buffers: the largest frame plus its header.
const MAX_FRAME_BYTES: usize = wire::MAX_STREAM_FRAME + wire::STREAM_HEADER;
/// How long an incoming stream may take to deliver its frame. Go gives the whole exchange
/// tcp_timeout (10 s; our default 30 s); a stranger holding a slot that long is the attack.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Members accepted from one push-pull: as many as fit `wire::MAX_STREAM_FRAME`.
const MAX_PUSH_NODES: usize = 16_384;

pub(super) enum Role {
    /// Our push-pull (join or periodic anti-entropy) with `addr`.
    PushPull { addr: SocketAddr, join: bool },
    /// TCP fallback ping of the running probe.
    Ping { seq: u32, ping: Vec<u8> },
    /// A peer's stream to us.
    Incoming,
}

pub(super) struct Stream {
    role: Role,
    /// The other end, for logs.
    peer: SocketAddr,
    buf: Vec<u8>,
    pub(super) deadline: Instant,
}

impl Membership {
    /// Opens TCP push-pull (with `Join = true`) to each address; one `Event::JoinResult` each.
    pub fn join(&mut self, now: Instant, addrs: &[SocketAddr]) {
        for &addr in addrs {
            self.open_push_pull(now, addr, true);
        }
    }

    fn open_stream(&mut self, to: SocketAddr, role: Role, deadline: Instant) -> StreamId {
        self.next_stream += 1;
        let id = StreamId::Outgoing(self.next_stream);
        self.streams.insert(
            id,
            Stream {
                role,
                peer: to,
                buf: Vec::new(),
                deadline,
            },
        );
        self.stats.streams_out += 1;
        self.transmits.push_back(Transmit::Connect { id, to });
        id
    }

    fn open_push_pull(&mut self, now: Instant, addr: SocketAddr, join: bool) {
        let deadline = now + self.timing.tcp_timeout;
        self.open_stream(addr, Role::PushPull { addr, join }, deadline);
    }

    pub(super) fn open_ping_stream(
        &mut self,
        to: SocketAddr,
        seq: u32,
        ping: Vec<u8>,
        deadline: Instant,
    ) -> StreamId {
        self.open_stream(to, Role::Ping { seq, ping }, deadline)
    }

    /// Periodic anti-entropy with one random alive member. Better than Go: every other round
    /// goes to a member that died within gossip_to_the_dead_time if there is one, so a healed
    /// partition reconverges (Go only heals if gossip happens to cross in that window).
    pub(super) fn periodic_push_pull(&mut self, now: Instant) {
        let me = self.name.clone();
        let dead_time = self.timing.gossip_to_the_dead_time;
        let recently_dead =
            |n: &Node| n.member.state == MemberState::Dead && n.changed_within(now, dead_time);
        let mut picked = Vec::new();
        if self.rng.below(2) == 0 {
            picked = self.random_nodes(1, |n| !recently_dead(n));
        }
        if picked.is_empty() {
            picked = self.random_nodes(1, |n| {
                n.member.name == me || n.member.state != MemberState::Alive
            });
        }
        if let Some(&i) = picked.first() {
            let addr = self.nodes[i].member.addr;
            debug!("memberlist: initiating push/pull sync with {addr}");
            self.open_push_pull(now, addr, false);
        }
    }

    /// A peer connected to us: wait for its frame, unless its address already holds its share
    /// of pending slots; when all are taken, the oldest pending stranger makes room.
    pub(super) fn accept(&mut self, now: Instant, id: StreamId, from: SocketAddr) {
        let pending = self.pending_streams();
        if pending.iter().filter(|(_, ip)| *ip == from.ip()).count() >= MAX_PENDING_PER_SOURCE {
            self.stats.drop("too_many_streams_from_source");
            if let Some(n) = self.noise.streams_refused.allow(now) {
                debug!(
                    "memberlist: too many pending streams from {}, refusing{}",
                    from.ip(),
                    suppressed(n)
                );
            }
            self.transmits.push_back(Transmit::StreamClose { id });
            return;
        }
        if pending.len() >= MAX_PENDING_STREAMS {
            if let Some(&(oldest, _)) = pending.first() {
                self.stats.drop("pending_stream_evicted");
                self.close_stream(oldest);
            }
        }
        self.stats.streams_in += 1;
        let deadline = now + self.timing.tcp_timeout.min(FIRST_FRAME_TIMEOUT);
        self.streams.insert(
            id,
            Stream {
                role: Role::Incoming,
                peer: from,
                buf: Vec::new(),
                deadline,
            },
        );
    }

    /// Incoming streams still waiting for their frame, oldest first, with their source.
    fn pending_streams(&self) -> Vec<(StreamId, std::net::IpAddr)> {
        // Stream ids grow with time and the map iterates in id order.
        self.streams
            .iter()
            .filter(|(_, s)| matches!(s.role, Role::Incoming))
            .map(|(id, s)| (*id, s.peer.ip()))
            .collect()
    }

    /// Makes room for `more` bytes on pending stream `id` within [`PENDING_BYTES`] by evicting
    /// the oldest other pending streams. False if even that is not enough.
    fn make_room(&mut self, id: StreamId, more: usize) -> bool {
        let pending = self.pending_streams();
        let mut held: usize = pending
            .iter()
            .filter_map(|(p, _)| self.streams.get(p))
            .map(|s| s.buf.len())
            .sum();
        for (other, _) in pending {
            if held + more <= PENDING_BYTES {
                break;
            }
            if other == id {
                continue;
            }
            held -= self.streams.get(&other).map_or(0, |s| s.buf.len());
            self.stats.drop("pending_stream_evicted");
            self.close_stream(other);
        }
        held + more <= PENDING_BYTES
    }

    /// The driver reports the stream gone (refused, reset or closed by the peer).
    pub(super) fn stream_closed(&mut self, id: StreamId) {
        if let Some(s) = self.streams.remove(&id) {
            self.stream_failed(&s.role, "connection closed");
        }
    }

    /// Our side speaks first on streams we open.
    pub(super) fn send_first(&mut self, id: StreamId) {
        let msg = match self.streams.get(&id).map(|s| &s.role) {
            Some(Role::PushPull { join, .. }) => {
                wire::encode_message(&Message::PushPull(self.local_state(*join)))
            }
            Some(Role::Ping { ping, .. }) => ping.clone(),
            _ => return,
        };
        self.stream_send(id, &msg);
    }

    fn stream_send(&mut self, id: StreamId, msg: &[u8]) {
        let bytes = wire::seal_stream(msg, &self.keyring, &mut self.nonces);
        self.stats.bytes_out += bytes.len() as u64;
        self.transmits.push_back(Transmit::StreamSend { id, bytes });
    }

    /// Forgets a stream and asks the driver to close it.
    pub(super) fn close_stream(&mut self, id: StreamId) {
        if self.streams.remove(&id).is_some() {
            self.transmits.push_back(Transmit::StreamClose { id });
        }
    }

    pub(super) fn stream_data(&mut self, now: Instant, id: StreamId, bytes: &[u8]) {
        self.stats.bytes_in += bytes.len() as u64;
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        let pending = matches!(s.role, Role::Incoming);
        if s.buf.len() + bytes.len() > MAX_FRAME_BYTES
            || (pending && !self.make_room(id, bytes.len()))
        {
            self.stats.drop("stream_too_large");
            self.fail_stream(id, "remote state too large");
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.buf.extend_from_slice(bytes);
        match wire::open_stream(&s.buf, &self.keyring) {
            Ok(None) => {}
            Ok(Some((msg, _))) => {
                self.stats.messages_in += 1;
                self.stream_message(now, id, msg);
            }
            Err(e) => {
                self.stats.drop(e.kind());
                if pending {
                    // An operator wants to see a node knocking with the wrong key (Go logs it
                    // too), but a stranger must not fill the log; our own joins report their
                    // failures through `Event::JoinResult`.
                    if let Some(n) = self.noise.streams_rejected.allow(now) {
                        warn!(
                            "memberlist: rejected a stream from {}: {e}{}",
                            s.peer,
                            suppressed(n)
                        );
                    }
                    // As Go does: tell the peer why (it needs our key to read it), except
                    // for a label, where Go just closes.
                    if e != wire::WireError::Label {
                        let resp = wire::encode_message(&Message::Err(ErrResp {
                            error: e.to_string(),
                        }));
                        self.stream_send(id, &resp);
                    }
                }
                self.fail_stream(id, &e.to_string());
            }
        }
    }

    /// The one message a stream carries has arrived: act on it, answer if we serve, close.
    fn stream_message(&mut self, now: Instant, id: StreamId, msg: Message) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        match (s.role, msg) {
            (Role::Incoming, Message::PushPull(pp)) if pp.nodes.len() > MAX_PUSH_NODES => {
                self.stats.drop("push_pull_too_large");
            }
            (Role::Incoming, Message::PushPull(pp)) => {
                // Answer with our state as it was before the merge, as Go does.
                let reply = wire::encode_message(&Message::PushPull(self.local_state(pp.join)));
                self.stream_send(id, &reply);
                if let Err(e) = self.merge(now, pp) {
                    debug!("memberlist: failed push/pull merge: {e}");
                    self.stats.drop("incompatible_protocol");
                }
            }
            (Role::Incoming, Message::Ping(p)) if p.node.is_empty() || p.node == self.name => {
                let ack = wire::encode_message(&Message::Ack(AckResp {
                    seq_no: p.seq_no,
                    payload: None,
                }));
                self.stream_send(id, &ack);
            }
            (Role::PushPull { addr, join }, Message::PushPull(pp)) => {
                let n = pp.nodes.len();
                if n > MAX_PUSH_NODES {
                    self.stats.drop("push_pull_too_large");
                    self.join_result(join, addr, Err("remote state too large".into()));
                } else {
                    let merged = self.merge(now, pp).map(|()| n);
                    if merged.is_err() {
                        self.stats.drop("incompatible_protocol");
                    }
                    self.join_result(join, addr, merged);
                }
            }
            (Role::PushPull { addr, join }, Message::Err(e)) => {
                self.join_result(join, addr, Err(format!("remote error: {:?}", e.error)));
            }
            (Role::Ping { seq, .. }, Message::Ack(a)) if a.seq_no == seq => {
                self.tcp_ping_acked(seq);
            }
            (role, _) => {
                self.stats.drop("unexpected_stream_message");
                self.stream_failed(&role, "unexpected message");
            }
        }
        self.transmits.push_back(Transmit::StreamClose { id });
    }

    fn fail_stream(&mut self, id: StreamId, why: &str) {
        if let Some(s) = self.streams.remove(&id) {
            self.transmits.push_back(Transmit::StreamClose { id });
            self.stream_failed(&s.role, why);
        }
    }

    fn stream_failed(&mut self, role: &Role, why: &str) {
        if let Role::PushPull { addr, join } = role {
            debug!("memberlist: push/pull with {addr} failed: {why}");
            self.join_result(*join, *addr, Err(why.to_owned()));
        }
    }

    fn join_result(&mut self, join: bool, addr: SocketAddr, result: Result<usize, String>) {
        if join {
            self.events.push_back(Event::JoinResult { addr, result });
        }
    }

    pub(super) fn expire_streams(&mut self, now: Instant) {
        let due: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.fail_stream(id, "i/o timeout");
        }
    }

    fn local_state(&self, join: bool) -> PushPull {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let m = &n.member;
                PushNodeState {
                    name: m.name.clone(),
                    addr: n.wire_ip,
                    port: m.addr.port(),
                    meta: m.meta.clone(),
                    incarnation: m.incarnation,
                    state: match m.state {
                        MemberState::Alive => NodeState::Alive,
                        MemberState::Suspect => NodeState::Suspect,
                        MemberState::Dead => NodeState::Dead,
                        MemberState::Left => NodeState::Left,
                    },
                    vsn: m.vsn,
                }
            })
            .collect();
        PushPull {
            join,
            nodes,
            skipped: 0,
        }
    }

    /// memberlist's verifyProtocol: every alive member, theirs and ours, must speak a protocol
    /// (and delegate) version inside the range all of them understand.
    fn verify_protocol(&self, remote: &[PushNodeState]) -> Result<(), String> {
        let alive_vsns = remote
            .iter()
            .filter(|r| r.state == NodeState::Alive)
            .map(|r| r.vsn)
            .chain(
                self.nodes
                    .iter()
                    .filter(|n| n.member.state == MemberState::Alive)
                    .map(|n| n.member.vsn),
            );
        let (mut pmin, mut pmax, mut dmin, mut dmax) = (0u8, u8::MAX, 0u8, u8::MAX);
        for v in alive_vsns {
            pmin = pmin.max(v[0]);
            pmax = pmax.min(v[1]);
            dmin = dmin.max(v[3]);
            dmax = dmax.min(v[4]);
        }
        let all = remote
            .iter()
            .map(|r| (&r.name, r.vsn))
            .chain(self.nodes.iter().map(|n| (&n.member.name, n.member.vsn)));
        for (name, v) in all {
            if v[2] < pmin || v[2] > pmax {
                return Err(format!(
                    "node {name:?} protocol version ({}) is incompatible: [{pmin}, {pmax}]",
                    v[2]
                ));
            }
            if v[5] < dmin || v[5] > dmax {
                return Err(format!(
                    "node {name:?} delegate protocol version ({}) is incompatible: [{dmin}, {dmax}]",
                    v[5]
                ));
            }
        }
        Ok(())
    }

    /// memberlist's mergeRemoteState: verify versions, then alive through the alive rules, left
    /// as a graceful dead, dead and suspect only as suspect (a remote opinion is not proof).
    fn merge(&mut self, now: Instant, remote: PushPull) -> Result<(), String> {
        use super::message::{Alive, Dead, Suspect};
        for _ in 0..remote.skipped {
            self.stats.drop("name_not_utf8");
        }
        self.verify_protocol(&remote.nodes)?;
        for r in remote.nodes {
            match r.state {
                NodeState::Alive => self.alive_node(
                    now,
                    Alive {
                        incarnation: r.incarnation,
                        node: r.name,
                        addr: r.addr,
                        port: r.port,
                        meta: r.meta,
                        vsn: r.vsn,
                    },
                    false,
                ),
                NodeState::Left => self.dead_node(
                    now,
                    Dead {
                        incarnation: r.incarnation,
                        from: r.name.clone(),
                        node: r.name,
                    },
                ),
                NodeState::Dead | NodeState::Suspect => self.suspect_node(
                    now,
                    Suspect {
                        incarnation: r.incarnation,
                        node: r.name,
                        from: self.name.clone(),
                    },
                ),
            }
        }
        Ok(())
    }
}
