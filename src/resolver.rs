//! Join-target name lookups in the agent's event loop, by our stub resolver (`dns`): each
//! lookup reads /etc/hosts and /etc/resolv.conf afresh (DHCP rewrites the latter), its queries
//! go out on UDP sockets registered on the loop's `Poll`, its timeouts come from the loop's
//! deadline, and its answer comes back through `poll`. No thread, no getaddrinfo. IP literals
//! are answered at once.
//!
//! The sockets (one per address family in use, on an ephemeral port) are opened for the
//! lookups out and closed when none is: each round of lookups gets a new random source port.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use log::warn;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::config::JoinAddr;
use crate::dns::conf::ResolvConf;
use crate::dns::lookup::{Ids, Lookup};
use crate::dns::message::MAX_UDP;

/// What one lookup found.
#[derive(Debug, Default)]
pub struct Answer {
    pub addrs: Vec<SocketAddr>,
    /// One message per target that failed, naming it.
    pub errors: Vec<String>,
}

/// The targets of one `lookup` call, answered together.
struct Batch {
    answer: Answer,
    names: Vec<Name>,
}

struct Name {
    host: String,
    port: u16,
    lookup: Lookup,
}

pub struct Resolver {
    /// The IPv4 socket's; the IPv6 socket has the next one.
    token: Token,
    /// IPv4 and IPv6, while lookups are out.
    sockets: [Option<UdpSocket>; 2],
    /// A family whose socket could not be opened while these lookups are out (IPv6 disabled,
    /// say): its servers time out, and the failure is logged once, not per query.
    unavailable: [bool; 2],
    batches: Vec<Batch>,
    answers: Vec<Answer>,
    resolv_conf: PathBuf,
    hosts: PathBuf,
}

impl Resolver {
    /// A resolver reading the system's files; its sockets take `token` and the one after it,
    /// registered on the registry each call is given (the loop's).
    pub fn new(token: Token) -> Resolver {
        Resolver::with_files(token, "/etc/resolv.conf", "/etc/hosts")
    }

    /// The same reading other files (tests).
    pub fn with_files(
        token: Token,
        resolv_conf: impl Into<PathBuf>,
        hosts: impl Into<PathBuf>,
    ) -> Resolver {
        Resolver {
            token,
            sockets: [None, None],
            unavailable: [false; 2],
            batches: Vec::new(),
            answers: Vec::new(),
            resolv_conf: resolv_conf.into(),
            hosts: hosts.into(),
        }
    }

    /// Whether an event of `token` is for `handle_readable`.
    pub fn owns(&self, token: Token) -> bool {
        token.0.wrapping_sub(self.token.0) < 2
    }

    /// Looks `targets` up (port: theirs or `default_port`). Some: the answer now (literals and
    /// /etc/hosts names only); None: it comes later from `poll`.
    pub fn lookup(
        &mut self,
        registry: &Registry,
        now: Instant,
        targets: &[JoinAddr],
        default_port: u16,
    ) -> Option<Answer> {
        let mut batch = Batch {
            answer: Answer::default(),
            names: Vec::new(),
        };
        let mut files = None;
        for t in targets {
            let port = t.port_or(default_port);
            if let Ok(ip) = t.host.trim_matches(['[', ']']).parse::<IpAddr>() {
                batch.answer.addrs.push(SocketAddr::new(ip, port));
                continue;
            }
            let (hosts, conf) = files.get_or_insert_with(|| {
                // Missing files are empty ones: no hosts, the default nameserver.
                let read = |p: &PathBuf| {
                    String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned()
                };
                (
                    read(&self.hosts),
                    ResolvConf::parse(&read(&self.resolv_conf)),
                )
            });
            let mut random = [0u8; std::mem::size_of::<Ids>()];
            if let Err(e) = getrandom::fill(&mut random) {
                let host = &t.host;
                batch
                    .answer
                    .errors
                    .push(format!("{host}: no random query IDs: {e}"));
                continue;
            }
            let ids: Ids =
                std::array::from_fn(|i| u16::from_ne_bytes([random[2 * i], random[2 * i + 1]]));
            batch.names.push(Name {
                host: t.host.clone(),
                port,
                lookup: Lookup::new(now, &t.host, hosts, conf, ids),
            });
        }
        if batch.names.iter().all(|n| n.lookup.outcome().is_some()) {
            return Some(finish(batch));
        }
        self.batches.push(batch);
        self.flush(registry);
        None
    }

    /// The next answer, once every target of a `lookup` has one.
    pub fn poll(&mut self) -> Option<Answer> {
        (!self.answers.is_empty()).then(|| self.answers.remove(0))
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.lookups()
            .filter_map(|l| l.lookup.next_deadline())
            .min()
    }

    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        for name in self.batches.iter_mut().flat_map(|b| b.names.iter_mut()) {
            name.lookup.handle_timeout(now);
        }
        self.flush(registry);
    }

    /// Reads every datagram waiting on the sockets.
    pub fn handle_readable(&mut self, registry: &Registry, now: Instant) {
        let mut buf = [0u8; MAX_UDP];
        for i in 0..2 {
            while let Some(Ok((len, from))) =
                self.sockets[i].as_ref().map(|s| s.recv_from(&mut buf))
            {
                for name in self.batches.iter_mut().flat_map(|b| b.names.iter_mut()) {
                    name.lookup.handle_datagram(now, from, &buf[..len]);
                }
            }
        }
        self.flush(registry);
    }

    fn lookups(&self) -> impl Iterator<Item = &Name> {
        self.batches.iter().flat_map(|b| b.names.iter())
    }

    /// Sends what the lookups want sent, moves the batches that are done to `answers`, and
    /// closes the sockets when no lookup is left.
    fn flush(&mut self, registry: &Registry) {
        for b in 0..self.batches.len() {
            for n in 0..self.batches[b].names.len() {
                while let Some((to, packet)) = self.batches[b].names[n].lookup.poll_transmit() {
                    // A server we cannot reach now times out like one that does not answer.
                    if let Some(socket) = self.socket(registry, to.is_ipv6()) {
                        let _ = socket.send_to(&packet, to);
                    }
                }
            }
        }
        let mut b = 0;
        while b < self.batches.len() {
            if self.batches[b]
                .names
                .iter()
                .all(|n| n.lookup.outcome().is_some())
            {
                let batch = self.batches.remove(b);
                self.answers.push(finish(batch));
            } else {
                b += 1;
            }
        }
        if self.batches.is_empty() {
            self.unavailable = [false; 2];
            for socket in self.sockets.iter_mut().filter_map(Option::take) {
                let mut socket = socket;
                let _ = registry.deregister(&mut socket);
            }
        }
    }

    /// The socket of a family, opened and registered on first use.
    fn socket(&mut self, registry: &Registry, v6: bool) -> Option<&UdpSocket> {
        let i = usize::from(v6);
        if self.sockets[i].is_none() && !self.unavailable[i] {
            let any = match v6 {
                false => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                true => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            };
            let token = Token(self.token.0 + i);
            let opened = UdpSocket::bind(any).and_then(|mut s| {
                registry.register(&mut s, token, Interest::READABLE)?;
                Ok(s)
            });
            match opened {
                Ok(s) => self.sockets[i] = Some(s),
                Err(e) => {
                    warn!("resolver: cannot open a UDP socket on {any}: {e}");
                    self.unavailable[i] = true;
                }
            }
        }
        self.sockets[i].as_ref()
    }
}

/// The answer of a batch whose lookups have all ended.
fn finish(batch: Batch) -> Answer {
    let mut answer = batch.answer;
    for name in batch.names {
        match name.lookup.outcome() {
            Some(Ok(ips)) => answer
                .addrs
                .extend(ips.iter().map(|ip| SocketAddr::new(*ip, name.port))),
            Some(Err(e)) => answer.errors.push(format!("{}: {e}", name.host)),
            None => {}
        }
    }
    answer
}
