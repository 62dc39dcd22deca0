//! The socket driver for the sans-IO membership core: one UDP socket and one TCP listener on the
//! same address and port (as memberlist binds them), plus the TCP streams the core opens or
//! accepts. It turns `Transmit`s into socket calls and readiness events into `Input`s, and holds
//! no protocol logic. Single-threaded, non-blocking, driven by the caller's `mio::Poll`.

use std::collections::VecDeque;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use crate::membership::io::{Input, StreamId, Transmit};
use crate::membership::noise::{suppressed, Noise};
use crate::membership::Membership;
use crate::vecmap::VecMap;

/// Largest datagram we can receive; memberlist's own are at most 1400 bytes but a peer's MTU
/// choice is not ours to police here.
const DATAGRAM_BUF: usize = 64 * 1024;
/// Incoming streams beyond this are closed right after accept: the core's 64 pending strangers
/// (it evicts among those itself) plus memberlist's 128 push-pulls (maxPushPullRequests), which
/// here are the streams whose frame decrypted and whose reply is still being written.
const MAX_INCOMING_STREAMS: usize = 64 + 128;
/// Bytes queued for one stream; above the core's 20 MiB push-pull cap plus framing. A core that
/// queues more has a bug or a peer that never reads: the stream is closed.
const MAX_STREAM_QUEUE: usize = 24 * 1024 * 1024;
/// Bytes read from the UDP socket per readiness event. Reading stops there and the socket is
/// re-armed, so a flooding peer cannot make one event allocate without bound. Tiny under test,
/// so that every loopback test goes through the re-arming.
const READ_BUDGET: usize = if cfg!(test) { 4096 } else { 1024 * 1024 };
/// The same for one stream: one read. Every ready stream of a poll (up to its 64 events) is
/// copied into the input queue before the core sees any of it, so this bounds that queue to
/// 4 MiB however many strangers stream at once.
const STREAM_READ_BUDGET: usize = if cfg!(test) { 4096 } else { DATAGRAM_BUF };
/// How often binding to port 0 retries when the TCP port it got is taken for UDP.
const BIND_ATTEMPTS: usize = 10;

const UDP_TOKEN: Token = Token(Transport::TOKEN_BASE);
const LISTENER_TOKEN: Token = Token(Transport::TOKEN_BASE + 1);
const FIRST_STREAM_TOKEN: usize = Transport::TOKEN_BASE + 2;

/// Counters for what the driver dropped or refused; the core keeps the protocol counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub datagram_send_errors: u64,
    pub streams_accepted: u64,
    pub streams_rejected: u64,
    pub stream_errors: u64,
}

struct Stream {
    socket: TcpStream,
    id: StreamId,
    /// An outgoing connect not yet confirmed writable.
    connecting: bool,
    /// The core asked to close: flush, then drop; nothing more is reported.
    closing: bool,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the queue's front already written.
    front_written: usize,
    queued: usize,
}

/// How one stream's turn ended.
enum Outcome {
    Open,
    /// Gone; `report` says whether the core must hear `StreamClosed`, `error` whether it ended
    /// on an I/O error rather than an orderly close.
    Closed {
        report: bool,
        error: bool,
    },
}

pub struct Transport {
    registry: Registry,
    udp: UdpSocket,
    listener: TcpListener,
    local: SocketAddr,
    streams: VecMap<Token, Stream>,
    tokens: VecMap<StreamId, Token>,
    free_tokens: Vec<Token>,
    next_token: usize,
    next_incoming: u64,
    incoming: usize,
    /// Inputs produced inside `send` (a connect that failed at once, an overflowing queue).
    pending: Vec<Input>,
    buf: Vec<u8>,
    stats: TransportStats,
    refused_noise: Noise,
}

impl Transport {
    /// Tokens from here up belong to the transport; the caller keeps those below.
    pub const TOKEN_BASE: usize = 1024;

    /// Binds UDP and TCP on `addr` (port 0 picks one free port for both) and registers them.
    pub fn bind(registry: &Registry, addr: SocketAddr) -> io::Result<Transport> {
        let (udp, listener) = bind_pair(addr)?;
        let local = listener.local_addr()?;
        let mut transport = Transport {
            registry: registry.try_clone()?,
            udp,
            listener,
            local,
            streams: VecMap::new(),
            tokens: VecMap::new(),
            free_tokens: Vec::new(),
            next_token: FIRST_STREAM_TOKEN,
            next_incoming: 0,
            incoming: 0,
            pending: Vec::new(),
            buf: vec![0; DATAGRAM_BUF],
            stats: TransportStats::default(),
            refused_noise: Noise::default(),
        };
        transport
            .registry
            .register(&mut transport.udp, UDP_TOKEN, Interest::READABLE)?;
        transport
            .registry
            .register(&mut transport.listener, LISTENER_TOKEN, Interest::READABLE)?;
        Ok(transport)
    }

    /// The bound address, with the port actually chosen.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Whether `token` is one of ours, i.e. its events go to `handle_event`.
    pub fn owns(token: Token) -> bool {
        token.0 >= Self::TOKEN_BASE
    }

    /// Carries out one request of the core. Failures that the core must hear about are queued
    /// for `drain_pending`.
    pub fn send(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Datagram { to, bytes } => self.send_datagram(to, &bytes),
            Transmit::Connect { id, to } => self.connect(id, to),
            Transmit::StreamSend { id, bytes } => self.stream_send(id, bytes),
            Transmit::StreamClose { id } => self.stream_close(id),
        }
    }

    /// Moves the inputs produced by `send` into `out`.
    pub fn drain_pending(&mut self, out: &mut Vec<Input>) {
        out.append(&mut self.pending);
    }

    /// Handles one readiness event for a token we own, appending what happened to `out`.
    pub fn handle_event(&mut self, event: &Event, out: &mut Vec<Input>) {
        self.drain_pending(out);
        match event.token() {
            UDP_TOKEN => self.read_datagrams(out),
            LISTENER_TOKEN => self.accept(out),
            token => self.stream_ready(token, out),
        }
    }

    fn send_datagram(&mut self, to: SocketAddr, bytes: &[u8]) {
        match self.udp.send_to(bytes, to) {
            Ok(_) => self.stats.datagrams_out += 1,
            Err(err) => {
                // UDP is lossy anyway; the protocol's retries cover a dropped packet.
                self.stats.datagram_send_errors += 1;
                log::debug!("transport: dropped datagram to {to}: {err}");
            }
        }
    }

    fn connect(&mut self, id: StreamId, to: SocketAddr) {
        let registered = TcpStream::connect(to).and_then(|mut socket| {
            let token = self.alloc_token();
            match self.registry.register(
                &mut socket,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => Ok((token, socket)),
                Err(err) => {
                    self.free_tokens.push(token);
                    Err(err)
                }
            }
        });
        match registered {
            Ok((token, socket)) => self.insert(token, Stream::new(socket, id, true)),
            Err(err) => {
                log::debug!("transport: connect to {to} failed: {err}");
                self.stats.stream_errors += 1;
                self.pending.push(Input::StreamClosed { id });
            }
        }
    }

    fn stream_send(&mut self, id: StreamId, bytes: Vec<u8>) {
        let Some(&token) = self.tokens.get(&id) else {
            // The stream ended and the core has not processed that yet.
            log::debug!("transport: send on closed stream {id:?} dropped");
            return;
        };
        let Some(stream) = self.streams.get_mut(&token) else {
            return;
        };
        if stream.closing {
            return;
        }
        if stream.queued + bytes.len() > MAX_STREAM_QUEUE {
            log::debug!("transport: stream {id:?} write queue overflow, closing");
            self.stats.stream_errors += 1;
            self.remove(token);
            self.pending.push(Input::StreamClosed { id });
            return;
        }
        stream.queued += bytes.len();
        stream.queue.push_back(bytes);
        // Writability is edge-triggered: an idle socket will not announce it again.
        let mut inputs = Vec::new();
        self.drive(token, &mut inputs);
        self.pending.append(&mut inputs);
    }

    fn stream_close(&mut self, id: StreamId) {
        let Some(&token) = self.tokens.get(&id) else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&token) {
            stream.closing = true;
        }
        let mut inputs = Vec::new();
        self.drive(token, &mut inputs);
        self.pending.append(&mut inputs);
    }

    fn read_datagrams(&mut self, out: &mut Vec<Input>) {
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                self.rearm_udp();
                return;
            }
            match self.udp.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    let bytes = self.buf.get(..len).unwrap_or_default().to_vec();
                    budget = budget.saturating_sub(len.max(1));
                    self.stats.datagrams_in += 1;
                    out.push(Input::Datagram { from, bytes });
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // ICMP errors from earlier sends surface here; the socket is still fine.
                    log::debug!("transport: udp receive: {err}");
                }
            }
        }
    }

    /// Re-registering a still-readable socket makes epoll report it again on the next poll.
    fn rearm_udp(&mut self) {
        if let Err(err) = self
            .registry
            .reregister(&mut self.udp, UDP_TOKEN, Interest::READABLE)
        {
            log::warn!("transport: re-arming the UDP socket: {err}");
        }
    }

    fn accept(&mut self, out: &mut Vec<Input>) {
        loop {
            match self.listener.accept() {
                Ok((mut socket, from)) => {
                    if self.incoming >= MAX_INCOMING_STREAMS {
                        self.stats.streams_rejected += 1;
                        if let Some(n) = self.refused_noise.allow(Instant::now()) {
                            log::debug!(
                                "transport: too many incoming streams, refusing {from}{}",
                                suppressed(n)
                            );
                        }
                        continue;
                    }
                    let token = self.alloc_token();
                    if let Err(err) = self.registry.register(
                        &mut socket,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        self.free_tokens.push(token);
                        log::debug!("transport: registering stream from {from}: {err}");
                        continue;
                    }
                    let id = StreamId::Incoming(self.next_incoming);
                    self.next_incoming += 1;
                    self.incoming += 1;
                    self.stats.streams_accepted += 1;
                    self.insert(token, Stream::new(socket, id, false));
                    out.push(Input::Accepted { id, from });
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // ECONNABORTED, EMFILE and the like: this connection is lost, the
                    // listener is not.
                    log::debug!("transport: accept: {err}");
                    return;
                }
            }
        }
    }

    fn stream_ready(&mut self, token: Token, out: &mut Vec<Input>) {
        // Stale events for a stream removed earlier in the same batch land here too.
        if self.streams.contains_key(&token) {
            self.drive(token, out);
        }
    }

    /// Advances one stream as far as it goes without blocking: finish connecting, flush, read.
    fn drive(&mut self, token: Token, out: &mut Vec<Input>) {
        let Some(stream) = self.streams.get_mut(&token) else {
            return;
        };
        let id = stream.id;
        let mut budget = STREAM_READ_BUDGET;
        let outcome = stream.advance(&mut self.buf, &mut budget, out);
        match outcome {
            Outcome::Open => {
                if budget == 0 {
                    self.rearm_stream(token);
                }
            }
            Outcome::Closed { report, error } => {
                if error {
                    self.stats.stream_errors += 1;
                }
                if report {
                    out.push(Input::StreamClosed { id });
                }
                self.remove(token);
            }
        }
    }

    fn rearm_stream(&mut self, token: Token) {
        let Some(stream) = self.streams.get_mut(&token) else {
            return;
        };
        if let Err(err) = self.registry.reregister(
            &mut stream.socket,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("transport: re-arming stream {:?}: {err}", stream.id);
        }
    }

    fn alloc_token(&mut self) -> Token {
        self.free_tokens.pop().unwrap_or_else(|| {
            let token = Token(self.next_token);
            self.next_token += 1;
            token
        })
    }

    fn insert(&mut self, token: Token, stream: Stream) {
        self.tokens.insert(stream.id, token);
        self.streams.insert(token, stream);
    }

    fn remove(&mut self, token: Token) {
        if let Some(mut stream) = self.streams.remove(&token) {
            if let Err(err) = self.registry.deregister(&mut stream.socket) {
                log::debug!("transport: deregistering stream {:?}: {err}", stream.id);
            }
            self.tokens.remove(&stream.id);
            if matches!(stream.id, StreamId::Incoming(_)) {
                self.incoming = self.incoming.saturating_sub(1);
            }
            self.free_tokens.push(token);
        }
    }
}

impl Stream {
    fn new(socket: TcpStream, id: StreamId, connecting: bool) -> Stream {
        Stream {
            socket,
            id,
            connecting,
            closing: false,
            queue: VecDeque::new(),
            front_written: 0,
            queued: 0,
        }
    }

    fn advance(&mut self, buf: &mut [u8], budget: &mut usize, out: &mut Vec<Input>) -> Outcome {
        if self.connecting {
            match self.finish_connect() {
                Ok(true) => {
                    self.connecting = false;
                    if !self.closing {
                        out.push(Input::Connected { id: self.id });
                    }
                }
                Ok(false) => return Outcome::Open,
                Err(err) => {
                    log::debug!("transport: connect {:?}: {err}", self.id);
                    return self.closed(true);
                }
            }
        }
        if let Err(err) = self.flush() {
            log::debug!("transport: write {:?}: {err}", self.id);
            return self.closed(true);
        }
        if self.closing && self.queue.is_empty() {
            return self.closed(false);
        }
        self.read(buf, budget, out)
    }

    /// Once the core asked to close, it hears nothing more about the stream.
    fn closed(&self, error: bool) -> Outcome {
        Outcome::Closed {
            report: !self.closing,
            error,
        }
    }

    /// The recipe from mio's `TcpStream::connect`: an error, a peer address, or not yet.
    fn finish_connect(&self) -> io::Result<bool> {
        if let Some(err) = self.socket.take_error()? {
            return Err(err);
        }
        match self.socket.peer_addr() {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while let Some(front) = self.queue.front() {
            let rest = front.get(self.front_written..).unwrap_or_default();
            match self.socket.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.front_written += n;
                    self.queued = self.queued.saturating_sub(n);
                    if self.front_written >= front.len() {
                        self.queue.pop_front();
                        self.front_written = 0;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], budget: &mut usize, out: &mut Vec<Input>) -> Outcome {
        loop {
            if *budget == 0 {
                return Outcome::Open;
            }
            match self.socket.read(buf) {
                Ok(0) => return self.closed(false),
                Ok(n) => {
                    *budget = budget.saturating_sub(n);
                    // After the core asked to close, whatever the peer still sends is dropped.
                    if !self.closing {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        out.push(Input::StreamData { id: self.id, bytes });
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Outcome::Open,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("transport: read {:?}: {err}", self.id);
                    return self.closed(true);
                }
            }
        }
    }
}

/// Hands everything the core wants sent to the transport, and feeds back at once what that
/// produced (a connect refused on the spot, an overflowing stream), until both are quiet. Call it
/// after every `handle_input` / `handle_timeout` / `join` / `set_meta` / `leave`.
pub fn pump(membership: &mut Membership, transport: &mut Transport, now: Instant) {
    let mut inputs = Vec::new();
    loop {
        while let Some(transmit) = membership.poll_transmit() {
            transport.send(transmit);
        }
        transport.drain_pending(&mut inputs);
        if inputs.is_empty() {
            return;
        }
        for input in inputs.drain(..) {
            membership.handle_input(now, input);
        }
    }
}

/// Binds TCP first, then UDP on the same port. With port 0, TCP's free port may be busy for UDP:
/// try again with a new one, as memberlist does.
fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..BIND_ATTEMPTS {
        let listener = TcpListener::bind(addr).map_err(|err| context(err, "TCP", addr))?;
        let mut udp_addr = addr;
        udp_addr.set_port(listener.local_addr()?.port());
        match UdpSocket::bind(udp_addr) {
            Ok(udp) => return Ok((udp, listener)),
            Err(err) if addr.port() == 0 && err.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(err);
            }
            Err(err) => return Err(context(err, "UDP", udp_addr)),
        }
    }
    let err = last_err.unwrap_or_else(|| io::ErrorKind::AddrInUse.into());
    Err(context(err, "UDP", addr))
}

fn context(err: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(err.kind(), format!("binding {proto} {addr}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    /// One endpoint: its own Poll (the transport's tokens are fixed), and what it received.
    struct Node {
        poll: Poll,
        transport: Transport,
        inputs: Vec<Input>,
    }

    impl Node {
        fn bind(ip: IpAddr) -> io::Result<Node> {
            let poll = Poll::new()?;
            let transport = Transport::bind(poll.registry(), SocketAddr::new(ip, 0))?;
            Ok(Node {
                poll,
                transport,
                inputs: Vec::new(),
            })
        }

        fn addr(&self) -> SocketAddr {
            self.transport.local_addr()
        }

        fn step(&mut self, events: &mut Events) {
            self.transport.drain_pending(&mut self.inputs);
            self.poll
                .poll(events, Some(Duration::from_millis(10)))
                .expect("poll");
            for event in events.iter() {
                assert!(Transport::owns(event.token()));
                self.transport.handle_event(event, &mut self.inputs);
            }
        }

        fn accepted(&self) -> Option<StreamId> {
            self.inputs.iter().find_map(|i| match i {
                Input::Accepted { id, .. } => Some(*id),
                _ => None,
            })
        }

        fn has(&self, wanted: &Input) -> bool {
            self.inputs.contains(wanted)
        }

        fn stream_bytes(&self, id: StreamId) -> Vec<u8> {
            let mut all = Vec::new();
            for input in &self.inputs {
                if let Input::StreamData { id: got, bytes } = input {
                    if *got == id {
                        all.extend_from_slice(bytes);
                    }
                }
            }
            all
        }
    }

    /// Steps every node until `done` holds. The round cap only keeps a broken test from
    /// hanging; nothing here asserts on time.
    fn run_until(nodes: &mut [&mut Node], done: impl Fn(&[&mut Node]) -> bool) {
        let mut events = Events::with_capacity(64);
        for _ in 0..1000 {
            if done(nodes) {
                return;
            }
            for node in nodes.iter_mut() {
                node.step(&mut events);
            }
        }
        let inputs: Vec<&Vec<Input>> = nodes.iter().map(|n| &n.inputs).collect();
        panic!("condition never met; inputs: {inputs:?}");
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn udp_and_tcp_share_one_port() {
        let node = Node::bind(V4).expect("bind");
        let port = node.addr().port();
        assert_ne!(port, 0);
        assert_eq!(
            node.transport.udp.local_addr().expect("udp addr").port(),
            port
        );
        assert!(
            TcpListener::bind(node.addr()).is_err(),
            "TCP port not taken"
        );
        assert!(UdpSocket::bind(node.addr()).is_err(), "UDP port not taken");
    }

    #[test]
    fn bind_error_names_the_address() {
        let node = Node::bind(V4).expect("bind");
        let err = Node::bind(node.addr().ip())
            .and_then(|_| Transport::bind(node.poll.registry(), node.addr()))
            .err()
            .expect("second bind on a taken port");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&node.addr().to_string()), "{err}");
    }

    #[test]
    fn datagram_round_trip() {
        let mut a = Node::bind(V4).expect("bind a");
        let mut b = Node::bind(V4).expect("bind b");
        let (a_addr, b_addr) = (a.addr(), b.addr());
        // More than one read budget at once: the rest must come on the re-armed socket.
        let burst: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1400]).collect();
        for bytes in &burst {
            a.transport.send(Transmit::Datagram {
                to: b_addr,
                bytes: bytes.clone(),
            });
        }
        run_until(&mut [&mut a, &mut b], |n| n[1].inputs.len() == burst.len());
        let expected: Vec<Input> = burst
            .into_iter()
            .map(|bytes| Input::Datagram {
                from: a_addr,
                bytes,
            })
            .collect();
        assert_eq!(b.inputs, expected);
        b.transport.send(Transmit::Datagram {
            to: a_addr,
            bytes: vec![7; 1400],
        });
        let ack = Input::Datagram {
            from: b_addr,
            bytes: vec![7; 1400],
        };
        run_until(&mut [&mut a, &mut b], |n| n[0].has(&ack));
        assert_eq!(a.transport.stats().datagrams_out, 10);
        assert_eq!(a.transport.stats().datagrams_in, 1);
        assert_eq!(b.transport.stats().datagrams_in, 10);
    }

    /// Connect, exchange a request and a reply bigger than socket buffers, close from `closer`.
    fn stream_exchange(ip: IpAddr, client_closes: bool) {
        let mut client = Node::bind(ip).expect("bind client");
        let mut server = Node::bind(ip).expect("bind server");
        let out = StreamId::Outgoing(42);
        client.transport.send(Transmit::Connect {
            id: out,
            to: server.addr(),
        });
        // Queued before the connect completes: must be flushed once it does.
        let request: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        client.transport.send(Transmit::StreamSend {
            id: out,
            bytes: request.clone(),
        });
        run_until(&mut [&mut client, &mut server], |n| {
            n[0].has(&Input::Connected { id: out })
                && n[1]
                    .accepted()
                    .is_some_and(|id| n[1].stream_bytes(id).len() == request.len())
        });
        let inc = server.accepted().expect("accepted");
        assert!(matches!(inc, StreamId::Incoming(_)));
        assert!(server
            .inputs
            .iter()
            .any(|i| matches!(i, Input::Accepted { from, .. } if from.ip() == ip)));
        assert_eq!(server.stream_bytes(inc), request);

        let reply: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        server.transport.send(Transmit::StreamSend {
            id: inc,
            bytes: reply.clone(),
        });
        run_until(&mut [&mut client, &mut server], |n| {
            n[0].stream_bytes(out).len() == reply.len()
        });
        assert_eq!(client.stream_bytes(out), reply);

        let (closer, other, closer_id, other_id) = if client_closes {
            (&mut client, &mut server, out, inc)
        } else {
            (&mut server, &mut client, inc, out)
        };
        closer.transport.send(Transmit::StreamSend {
            id: closer_id,
            bytes: b"last words".to_vec(),
        });
        closer
            .transport
            .send(Transmit::StreamClose { id: closer_id });
        run_until(&mut [closer, other], |n| {
            n[1].has(&Input::StreamClosed { id: other_id })
        });
        assert!(other.stream_bytes(other_id).ends_with(b"last words"));
        assert!(
            !closer.has(&Input::StreamClosed { id: closer_id }),
            "the closing side hears nothing more"
        );
        assert!(closer.transport.streams.is_empty());
        assert!(other.transport.streams.is_empty());
        assert_eq!(server.transport.incoming, 0);
    }

    #[test]
    fn stream_client_closes() {
        stream_exchange(V4, true);
    }

    #[test]
    fn stream_server_closes() {
        stream_exchange(V4, false);
    }

    #[test]
    fn connect_refused_is_stream_closed() {
        let mut node = Node::bind(V4).expect("bind");
        // A port that was free a moment ago: nothing listens there.
        let dead = {
            let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("probe");
            probe.local_addr().expect("probe addr")
        };
        let id = StreamId::Outgoing(1);
        node.transport.send(Transmit::Connect { id, to: dead });
        node.transport.send(Transmit::StreamSend {
            id,
            bytes: b"hello".to_vec(),
        });
        run_until(&mut [&mut node], |n| n[0].has(&Input::StreamClosed { id }));
        assert!(!node.has(&Input::Connected { id }));
        assert!(node.transport.streams.is_empty());
        // A send after the close was reported is dropped quietly.
        node.transport.send(Transmit::StreamSend {
            id,
            bytes: b"late".to_vec(),
        });
        let closed = node
            .inputs
            .iter()
            .filter(|i| **i == Input::StreamClosed { id })
            .count();
        assert_eq!(closed, 1);
    }

    #[test]
    fn overflowing_write_queue_closes_the_stream() {
        let mut node = Node::bind(V4).expect("bind");
        // A peer that accepts (in the kernel) but never reads.
        let sink = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("sink");
        let id = StreamId::Outgoing(9);
        node.transport.send(Transmit::Connect {
            id,
            to: sink.local_addr().expect("sink addr"),
        });
        run_until(&mut [&mut node], |n| n[0].has(&Input::Connected { id }));
        let chunk = vec![0u8; 1024 * 1024];
        let mut sent = 0;
        while !node.transport.pending.contains(&Input::StreamClosed { id }) {
            node.transport.send(Transmit::StreamSend {
                id,
                bytes: chunk.clone(),
            });
            sent += chunk.len();
            assert!(sent <= 2 * MAX_STREAM_QUEUE, "the queue never overflowed");
        }
        assert!(sent > MAX_STREAM_QUEUE);
        assert!(node.transport.streams.is_empty());
        assert_eq!(node.transport.stats().stream_errors, 1);
    }

    #[test]
    fn close_before_connected_still_delivers() {
        let mut client = Node::bind(V4).expect("bind client");
        let mut server = Node::bind(V4).expect("bind server");
        let id = StreamId::Outgoing(3);
        client.transport.send(Transmit::Connect {
            id,
            to: server.addr(),
        });
        client.transport.send(Transmit::StreamSend {
            id,
            bytes: b"fire and forget".to_vec(),
        });
        client.transport.send(Transmit::StreamClose { id });
        run_until(&mut [&mut client, &mut server], |n| {
            n[1].accepted()
                .is_some_and(|inc| n[1].has(&Input::StreamClosed { id: inc }))
        });
        let inc = server.accepted().expect("accepted");
        assert_eq!(server.stream_bytes(inc), b"fire and forget");
        // Connected may come first (loopback connects at once); nothing after the close.
        assert!(client.inputs.iter().all(|i| *i == Input::Connected { id }));
        assert!(client.transport.streams.is_empty());
    }

    #[test]
    fn incoming_streams_are_capped() {
        let mut server = Node::bind(V4).expect("bind");
        let mut events = Events::with_capacity(64);
        let mut clients = Vec::new();
        for i in 0..MAX_INCOMING_STREAMS + 3 {
            clients.push(std::net::TcpStream::connect(server.addr()).expect("connect"));
            // Accept as we go: the kernel's accept queue is only as long as the listen backlog.
            if i % 32 == 31 {
                server.step(&mut events);
            }
        }
        run_until(&mut [&mut server], |n| {
            let s = n[0].transport.stats();
            s.streams_accepted + s.streams_rejected == clients.len() as u64
        });
        assert_eq!(
            server.transport.stats().streams_accepted,
            MAX_INCOMING_STREAMS as u64
        );
        assert_eq!(server.transport.stats().streams_rejected, 3);
        assert_eq!(server.transport.incoming, MAX_INCOMING_STREAMS);
    }

    #[test]
    fn ipv6_loopback() {
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        if let Err(err) = Node::bind(v6) {
            let reason = format!("no IPv6 loopback here ({err})");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            eprintln!("skipping: {reason}");
            return;
        }
        let mut a = Node::bind(v6).expect("bind a");
        let mut b = Node::bind(v6).expect("bind b");
        assert!(a.addr().is_ipv6());
        a.transport.send(Transmit::Datagram {
            to: b.addr(),
            bytes: b"v6".to_vec(),
        });
        let got = Input::Datagram {
            from: a.addr(),
            bytes: b"v6".to_vec(),
        };
        run_until(&mut [&mut a, &mut b], |n| n[1].has(&got));
        stream_exchange(v6, true);
    }
}
