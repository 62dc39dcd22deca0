//! The wesher agent: one thread, one mio loop.
//!
//! The loop owns the gossip sockets (through `Transport`), the signal pipe and the clock. It moves
//! bytes and deadlines between the sockets and the membership core, turns membership events into
//! mesh changes, and applies them through the WireGuard backend, rtnetlink and the hosts file.
//! Netlink and UAPI calls are short blocking request/replies on local sockets.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Bind, Config, GossipProfile, JoinAddr};
use crate::control::{self, MemberStatus, Request, Status};
use crate::hosts::{self, HostEntry};
use crate::membership::{self, Event, Keyring, Member, MemberState, Membership, Timing};
use crate::mesh::{host_prefix, Changes, Local, Mesh, Peer, Refused};
use crate::netlink::{self, Netlink};
use crate::nodemeta::{Extra, ExtraValue, NodeMeta};
use crate::overlay::{self, Cidr, MoveReason};
use crate::state::{self, KeySource, State, StoredNode};
use crate::transport::{self, Transport};
use crate::wireguard::{Backend, DeviceConfig, Key};

const SIGNALS: Token = Token(0);
/// The control socket's listener; its connections take the tokens after it.
const CONTROL: Token = Token(1);

/// Go wesher's join backoff: 0.5 s, times 1.5, at most 60 s. Unlike Go we never give up.
const JOIN_BACKOFF_START: Duration = Duration::from_millis(500);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often lost members and configured addresses are re-joined (split-brain healing).
const REJOIN_INTERVAL: Duration = Duration::from_secs(30);
/// How long the address of a member that failed (not one that left) is kept for re-joins: long
/// enough for a cut between two sites to be repaired, short enough not to knock forever on the
/// door of a node that is gone for good.
const FORGET_FAILED_AFTER: Duration = Duration::from_secs(24 * 3600);
/// At most this many failed addresses are kept; the oldest go first.
const MAX_FAILED: usize = 256;
/// How long a graceful leave may take before we exit anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The gob field that carries routed networks; Go nodes ignore fields they do not know.
const ROUTED_NETS_FIELD: &str = "RoutedNets";
/// The gob field listing what this implementation does differently from Go wesher.
const CAPS_FIELD: &str = "Caps";
/// We keep WireGuard sessions across membership events; a member without it (Go wesher)
/// replaces its whole peer list, and so drops every session, at each event.
const CAP_KEEPS_SESSIONS: &str = "keeps-sessions";
/// The overlay address was set by hand (`--overlay-addr`): a derived address yields to it.
const CAP_FIXED_OVERLAY: &str = "fixed-overlay";
/// When, after a membership event, to reset our sessions with such members: once they have
/// processed the same event (gossip takes up to a few hundred milliseconds per hop), and again
/// in case one of them heard of it late. Measured against Go wesher: without the resets, traffic
/// from us to a Go node stopped for about 15 s after each event.
const SESSION_RESET_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1500),
    Duration::from_secs(3),
];

/// A fatal agent error: what failed and why, for `wesher: error: ...`.
#[derive(Debug)]
pub struct AgentError(String);

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AgentError {}

fn fail(what: impl fmt::Display, err: impl fmt::Display) -> AgentError {
    AgentError(format!("{what}: {err}"))
}

/// Run the agent until a signal stops it.
pub fn run(cfg: Config) -> Result<(), AgentError> {
    let mut poll = Poll::new().map_err(|e| fail("creating the event loop", e))?;
    // Signals first, so a TERM during set-up or the join phase is not lost.
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| fail("installing signal handlers", e))?;
    poll.registry()
        .register(&mut signals, SIGNALS, mio::Interest::READABLE)
        .map_err(|e| fail("registering signal handlers", e))?;

    let mut agent = Agent::start(cfg, &poll)?;
    let result = agent.run(&mut poll, &mut signals);
    agent.shutdown();
    result
}

/// Where a join attempt stands.
struct Joining {
    /// Addresses as configured (`--join`) or resumed from the state file.
    targets: Vec<JoinAddr>,
    backoff: Duration,
    next_attempt: Option<Instant>,
    /// Join results still expected from the current attempt, and whether one succeeded.
    pending: usize,
    succeeded: bool,
}

struct Agent {
    cfg: Config,
    name: String,
    overlay: IpAddr,
    public_key: Key,
    link: u32,
    rtnl: Netlink,
    wg: Backend,
    membership: Membership,
    transport: Transport,
    mesh: Mesh,
    hosts_path: Option<PathBuf>,
    joining: Joining,
    next_rejoin: Instant,
    state_dirty: bool,
    leave_deadline: Option<Instant>,
    control: Option<control::Server>,
    /// Membership changed since the mesh was last reconciled.
    mesh_dirty: bool,
    /// Addresses of members that failed, with when: memberlist forgets dead members after a while,
    /// but the other half of a split cluster must still be found once the cut heals.
    failed: BTreeMap<SocketAddr, Instant>,
    /// Pending resets of the sessions with members that drop theirs at membership events.
    session_resets: Vec<Instant>,
    /// Refusals already logged, so each is logged once.
    refused: Vec<(String, Refused)>,
}

impl Agent {
    fn start(cfg: Config, poll: &Poll) -> Result<Agent, AgentError> {
        let name = match &cfg.node_name {
            Some(n) => n.clone(),
            None => {
                let h = hostname()?;
                crate::config::validate_node_name(&h).map_err(|e| {
                    AgentError(format!(
                        "the hostname {h:?} cannot be a node name: {e}; pass --node-name"
                    ))
                })?;
                h
            }
        };

        let stored = if cfg.init {
            State::default()
        } else {
            match state::load(&cfg.state_dir, &cfg.interface)
                .map_err(|e| AgentError(e.to_string()))?
            {
                Some(loaded) => {
                    for w in &loaded.warnings {
                        warn!("{}: {w}", loaded.path.display());
                    }
                    loaded.state
                }
                None => State::default(),
            }
        };
        let (cluster_key, source) =
            state::choose_key(cfg.cluster_key, stored.cluster_key, cfg.init)
                .map_err(|e| AgentError(e.to_string()))?;
        if source == KeySource::Generated && io::stdout().is_terminal() {
            // Printed, never logged: logs end up in places a secret should not.
            let _ = writeln!(
                io::stdout(),
                "new cluster key generated: {}",
                crate::base64::encode(&cluster_key)
            );
        }
        let mut initial = stored.clone();
        initial.cluster_key = Some(cluster_key);
        initial.extra_keys.retain(|k| *k != cluster_key);
        // Written at once so a generated key survives a crash before the first member joins.
        state::save(&cfg.state_dir, &cfg.interface, &initial)
            .map_err(|e| AgentError(e.to_string()))?;

        let mut rtnl = Netlink::open().map_err(|e| fail("opening rtnetlink", e))?;
        let (bind_ip, advertise_ip) = bind_addresses(&cfg, &mut rtnl)?;
        let advertise = SocketAddr::new(
            cfg.advertise_addr.unwrap_or(advertise_ip),
            cfg.advertise_port.unwrap_or(cfg.cluster_port),
        );

        let overlay = match cfg.overlay_addr {
            Some(addr) => addr,
            None => {
                let derived = overlay::derive(&cfg.overlay_net, &name);
                let free = overlay::first_free(&cfg.overlay_net, &name, &[]).unwrap_or(derived);
                if free != derived {
                    error!(
                        "overlay address {derived} of node {name} is the network or broadcast \
                         address of {}; using {free} instead",
                        cfg.overlay_net
                    );
                }
                free
            }
        };

        let transport =
            Transport::bind(poll.registry(), SocketAddr::new(bind_ip, cfg.cluster_port)).map_err(
                |e| {
                    fail(
                        format!("binding the gossip port {bind_ip}:{}", cfg.cluster_port),
                        e,
                    )
                },
            )?;

        let key = Key::generate().map_err(|e| fail("generating the WireGuard key", e))?;
        let meta = local_meta(
            overlay,
            &key.public_key(),
            &cfg.routed_nets,
            cfg.overlay_addr.is_some(),
        )?;
        let timing = match cfg.gossip_profile {
            GossipProfile::Wan => Timing::wan(),
            GossipProfile::Lan => Timing::lan(),
        };
        let seed = random_seed().map_err(|e| fail("seeding the random source", e))?;
        // Keys installed by `wesher key install` survive restarts until removed.
        let keyring = Keyring::from_keys(
            std::iter::once(cluster_key)
                .chain(initial.extra_keys.iter().copied())
                .collect(),
        )
        .map_err(|e| fail("loading the cluster keyring", e))?;
        let existed = rtnl
            .link_index(&cfg.interface)
            .map_err(|e| AgentError(e.to_string()))?
            .is_some();
        let link = rtnl
            .create_wireguard(&cfg.interface)
            .map_err(|e| AgentError(e.to_string()))?
            .index;
        let configured = Backend::open(&cfg.interface).and_then(|mut wg| {
            wg.set_device(&DeviceConfig {
                private_key: key,
                listen_port: cfg.wireguard_port,
            })?;
            configure_link(&mut rtnl, link, overlay, cfg.mtu)?;
            Ok(wg)
        });
        let agent_wg = match configured {
            Ok(wg) => wg,
            Err(e) => {
                // A link we made is ours to remove; one a userspace daemon made is left to it.
                if !existed {
                    let _ = rtnl.delete_link(link);
                }
                return Err(AgentError(e.to_string()));
            }
        };

        let membership = Membership::new(
            membership::Config {
                name: name.clone(),
                advertise,
                keyring,
                timing,
                meta,
            },
            Instant::now(),
            seed,
        );
        let targets = if cfg.join.is_empty() {
            stored
                .nodes
                .iter()
                .map(|n| JoinAddr {
                    host: n.addr.to_string(),
                    port: None,
                })
                .collect()
        } else {
            cfg.join.clone()
        };
        let hosts_path = (!cfg.no_etc_hosts).then(|| cfg.hosts_file.clone());
        info!(
            "node {name}: overlay {overlay}, gossip {advertise} (bound to {bind_ip}), interface {}",
            cfg.interface
        );
        // Without the control socket the mesh still works; only `wesher status` and `wesher key` do not.
        let socket = control::socket_path(&cfg.interface);
        let control = match control::Server::bind(&socket, poll.registry(), CONTROL) {
            Ok(server) => Some(server),
            Err(e) => {
                warn!(
                    "control socket {}: {e}; `wesher status` will not work",
                    socket.display()
                );
                None
            }
        };
        let now = Instant::now();
        Ok(Agent {
            name,
            overlay,
            public_key: key.public_key(),
            link,
            rtnl,
            wg: agent_wg,
            membership,
            transport,
            mesh: Mesh::default(),
            hosts_path,
            joining: Joining {
                next_attempt: (!targets.is_empty()).then_some(now),
                targets,
                backoff: JOIN_BACKOFF_START,
                pending: 0,
                succeeded: false,
            },
            next_rejoin: now + REJOIN_INTERVAL,
            state_dirty: false,
            leave_deadline: None,
            control,
            mesh_dirty: false,
            failed: BTreeMap::new(),
            session_resets: Vec::new(),
            refused: Vec::new(),
            cfg,
        })
    }

    fn run(&mut self, poll: &mut Poll, signals: &mut Signals) -> Result<(), AgentError> {
        let mut events = Events::with_capacity(64);
        let mut inputs = Vec::new();
        loop {
            let now = Instant::now();
            self.on_timers(now);
            transport::pump(&mut self.membership, &mut self.transport, now);
            self.drain_events(now);
            if self.state_dirty {
                self.save_state();
            }
            if let Some(deadline) = self.leave_deadline {
                if self.membership.leave_done() || now >= deadline {
                    return Ok(());
                }
            }

            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(fail("waiting for events", e));
                }
            }
            for event in events.iter() {
                if event.token() == SIGNALS {
                    for signal in signals.pending() {
                        if self.leave_deadline.is_some() {
                            warn!("second signal {signal}: exiting without waiting for the leave");
                            return Ok(());
                        }
                        warn!("signal {signal}: leaving the cluster");
                        let now = Instant::now();
                        self.membership.leave(now);
                        self.leave_deadline = Some(now + LEAVE_TIMEOUT);
                    }
                } else if self.control.as_ref().is_some_and(|c| c.owns(event.token())) {
                    self.on_control(poll.registry(), event.token());
                } else {
                    self.transport.handle_event(event, &mut inputs);
                }
            }
            let now = Instant::now();
            for input in inputs.drain(..) {
                self.membership.handle_input(now, input);
            }
        }
    }

    fn on_control(&mut self, registry: &mio::Registry, token: Token) {
        let Some(mut server) = self.control.take() else {
            return;
        };
        for (conn, request) in server.handle_event(registry, token) {
            let reply = request.and_then(|r| self.answer(r));
            server.reply(registry, conn, reply);
        }
        self.control = Some(server);
    }

    fn answer(&mut self, request: Request) -> Result<String, String> {
        let (key, done) = match &request {
            Request::Status => return Ok(miniserde::json::to_string(&self.status())),
            Request::KeyInstall(k) => (k, "installed"),
            Request::KeyUse(k) => (k, "in use"),
            Request::KeyRemove(k) => (k, "removed"),
        };
        let key = crate::base64::decode_key(key)?;
        let keyring = self.membership.keyring_mut();
        match request {
            Request::KeyInstall(_) => keyring.install(key),
            Request::KeyUse(_) => keyring.use_key(&key).map_err(|e| e.to_string())?,
            _ => keyring.remove(&key).map_err(|e| e.to_string())?,
        }
        info!(
            "cluster key {done} (the keyring holds {} keys)",
            keyring.keys().len()
        );
        self.state_dirty = true;
        Ok(format!("{done}\n"))
    }

    fn status(&mut self) -> Status {
        let peers = match self.wg.peers() {
            Ok(p) => p,
            Err(e) => {
                warn!("reading WireGuard peers for status: {e}");
                Vec::new()
            }
        };
        let now = std::time::SystemTime::now();
        let mesh = &self.mesh;
        let describe = |m: &Member| {
            let peer = mesh.get(&m.name);
            let wg = peer.and_then(|p| peers.iter().find(|s| s.public_key == p.public_key));
            MemberStatus {
                name: m.name.clone(),
                overlay: peer.map_or_else(String::new, |p| p.overlay.to_string()),
                underlay: m.addr.to_string(),
                state: format!("{:?}", m.state).to_lowercase(),
                public_key: peer.map_or_else(String::new, |p| p.public_key.to_base64()),
                handshake_age_secs: wg
                    .and_then(|s| s.last_handshake)
                    .and_then(|t| now.duration_since(t).ok())
                    .map(|d| d.as_secs()),
                rx_bytes: wg.map_or(0, |s| s.rx_bytes),
                tx_bytes: wg.map_or(0, |s| s.tx_bytes),
            }
        };
        let mut node = describe(self.membership.local());
        node.overlay = self.overlay.to_string();
        node.public_key = self.public_key.to_base64();
        let members = self
            .membership
            .members()
            .filter(|m| m.name != self.name)
            .map(describe)
            .collect();
        Status {
            interface: self.cfg.interface.clone(),
            node,
            members,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.membership.next_deadline(),
            self.joining.next_attempt,
            Some(self.next_rejoin),
            self.session_resets.first().copied(),
            self.leave_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_timers(&mut self, now: Instant) {
        if self.membership.next_deadline().is_some_and(|d| d <= now) {
            self.membership.handle_timeout(now);
        }
        if self.leave_deadline.is_some() {
            return;
        }
        if self.session_resets.first().is_some_and(|t| *t <= now) {
            self.session_resets.remove(0);
            let resets = self.mesh.session_resets();
            if !resets.is_empty() {
                debug!(
                    "resetting WireGuard sessions with {} Go wesher peers",
                    resets.len() / 2
                );
                if let Err(e) = self.wg.apply(&resets) {
                    warn!(
                        "resetting WireGuard sessions on {}: {e}",
                        self.cfg.interface
                    );
                }
            }
        }
        if self.joining.next_attempt.is_some_and(|t| t <= now) {
            self.joining.next_attempt = None;
            let addrs = self.resolve(&self.joining.targets);
            if addrs.is_empty() {
                warn!(
                    "join: none of {:?} resolved; retrying",
                    self.joining.targets
                );
                self.schedule_join_retry(now);
            } else {
                info!("joining {addrs:?}");
                self.joining.pending = addrs.len();
                self.joining.succeeded = false;
                self.membership.join(now, &addrs);
            }
        }
        if now >= self.next_rejoin {
            self.next_rejoin = now + REJOIN_INTERVAL;
            self.rejoin_lost(now);
            // Puts back our lines if another tool rewrote the file; a no-op when they are there.
            self.write_hosts();
        }
    }

    /// Re-join the join targets (configured, or the stored members when none were) and lost
    /// members that are not alive members now, so two halves of a cut cluster find each other
    /// again once the link is back, also after memberlist has forgotten the dead.
    fn rejoin_lost(&mut self, now: Instant) {
        if self.joining.pending > 0 || self.joining.next_attempt.is_some() {
            return;
        }
        let alive: Vec<SocketAddr> = self
            .membership
            .members()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.addr)
            .collect();
        self.failed
            .retain(|_, at| now.duration_since(*at) < FORGET_FAILED_AFTER);
        let mut lost: Vec<SocketAddr> = self
            .membership
            .members()
            .filter(|m| matches!(m.state, MemberState::Dead | MemberState::Left))
            .map(|m| m.addr)
            .chain(self.failed.keys().copied())
            .collect();
        // `alive` includes this node: alone, it may look hostnames up again.
        let targets = rejoin_targets(&self.joining.targets, alive.len() <= 1);
        lost.extend(self.resolve(&targets));
        lost.retain(|a| !alive.contains(a));
        lost.sort();
        lost.dedup();
        if !lost.is_empty() {
            debug!("re-joining lost or configured members {lost:?}");
            self.membership.join(now, &lost);
        }
    }

    fn schedule_join_retry(&mut self, now: Instant) {
        self.joining.next_attempt = Some(now + self.joining.backoff);
        self.joining.backoff = (self.joining.backoff * 3 / 2).min(JOIN_BACKOFF_MAX);
    }

    /// Resolve join targets; the port defaults to our cluster port.
    fn resolve(&self, targets: &[JoinAddr]) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for target in targets {
            match resolve_target(&target.host, target.port_or(self.cfg.cluster_port)) {
                Ok(addrs) => out.extend(addrs),
                Err(e) => warn!("join target {target}: {e}"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.membership.poll_event() {
            match event {
                Event::Join(m) | Event::Update(m) => {
                    self.failed.remove(&m.addr);
                    // Checked here so a bad blob is reported once per change, not per reconcile.
                    if let Err(e) = peer_meta(&m) {
                        if m.meta.is_empty() {
                            // Go wesher's first alive carries no metadata; the update that follows does.
                            debug!("member {} has no metadata yet", m.name);
                        } else {
                            warn!("member {} ({}): {e}; not added to the mesh", m.name, m.addr);
                        }
                    }
                    self.mesh_dirty = true;
                }
                Event::Leave(m) => {
                    if m.state == MemberState::Dead {
                        self.remember_failed(m.addr, now);
                    }
                    info!(
                        "member {} ({}) left the mesh ({:?})",
                        m.name, m.addr, m.state
                    );
                    self.mesh_dirty = true;
                }
                Event::JoinResult { addr, result } => self.join_result(now, addr, result),
            }
        }
        if self.mesh_dirty {
            self.mesh_dirty = false;
            self.session_resets = SESSION_RESET_DELAYS.iter().map(|d| now + *d).collect();
            self.sync_mesh(now);
            self.state_dirty = true;
        }
    }

    /// Bring WireGuard, routes and hosts in line with the current members.
    fn sync_mesh(&mut self, now: Instant) {
        let members: Vec<(Member, NodeMeta)> = self
            .membership
            .members()
            .filter(|m| {
                m.name != self.name && matches!(m.state, MemberState::Alive | MemberState::Suspect)
            })
            .filter_map(|m| peer_meta(m).ok().map(|meta| (m.clone(), meta)))
            .collect();
        self.resolve_collision(now, &members);
        let keepalive =
            (self.cfg.persistent_keepalive > 0).then_some(self.cfg.persistent_keepalive);
        let want = members
            .iter()
            .filter_map(|(m, meta)| {
                let public_key = Key::from_base64(&meta.pub_key).ok()?;
                Some(Peer {
                    name: m.name.clone(),
                    overlay: meta.overlay_addr,
                    public_key,
                    endpoint: SocketAddr::new(m.addr.ip(), self.cfg.wireguard_port),
                    routed: routed_nets(meta),
                    keepalive,
                    resets_sessions: !has_cap(meta, CAP_KEEPS_SESSIONS),
                    fixed_overlay: has_cap(meta, CAP_FIXED_OVERLAY),
                })
            })
            .collect();
        let local = Local {
            overlay: self.overlay,
            overlay_net: self.cfg.overlay_net,
            routed: self.cfg.routed_nets.clone(),
        };
        let result = self.mesh.reconcile(want, &local);
        for (name, why) in &result.refused {
            if !self.refused.contains(&(name.clone(), why.clone())) {
                error!("member {name}: {why}");
            }
        }
        self.refused = result.refused;
        if !result.changes.is_empty() {
            info!(
                "mesh: {} peers; applying {} WireGuard changes, {} route additions, {} route removals",
                self.mesh.peers().count(),
                result.changes.wireguard.len(),
                result.changes.routes_add.len(),
                result.changes.routes_del.len()
            );
        }
        self.apply(result.changes);
    }

    /// Move our overlay address when another member holds it and wins by name order, and tell
    /// everyone. Go peers follow because they use the advertised address.
    fn resolve_collision(&mut self, now: Instant, members: &[(Member, NodeMeta)]) {
        let others: Vec<(String, IpAddr)> = members
            .iter()
            .map(|(m, meta)| (m.name.clone(), meta.overlay_addr))
            .collect();
        // A hand-set address wins over our derived one whatever the names; between two derived
        // (or two hand-set) addresses, name order decides.
        let fixed_holder = members
            .iter()
            .find(|(_, meta)| meta.overlay_addr == self.overlay && has_cap(meta, CAP_FIXED_OVERLAY))
            .map(|(m, _)| m.name.clone());
        let taken: Vec<IpAddr> = others.iter().map(|(_, ip)| *ip).collect();
        let mv = match fixed_holder {
            Some(with) if self.cfg.overlay_addr.is_none() => {
                overlay::first_free(&self.cfg.overlay_net, &self.name, &taken).map(|to| {
                    overlay::Move {
                        to,
                        reason: MoveReason::Collision { with },
                    }
                })
            }
            _ => overlay::must_move(&self.cfg.overlay_net, &self.name, self.overlay, &others),
        };
        let Some(mv) = mv else {
            return;
        };
        let MoveReason::Collision { with } = mv.reason else {
            return; // reserved addresses were avoided at start
        };
        if self.cfg.overlay_addr.is_some() {
            error!(
                "overlay address {} set by --overlay-addr is also advertised by {with}; \
                 one of the two must change",
                self.overlay
            );
            return;
        }
        error!(
            "overlay address {} collides with member {with}, whose claim wins (set by hand, or \
             its name sorts first); moving to {}",
            self.overlay, mv.to
        );
        // Only a derived address moves, so the new one is not fixed either.
        let meta = match local_meta(mv.to, &self.public_key, &self.cfg.routed_nets, false) {
            Ok(m) => m,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        let (old, new) = (
            (self.overlay, host_prefix(self.overlay)),
            (mv.to, host_prefix(mv.to)),
        );
        if let Err(e) = self
            .rtnl
            .add_address(self.link, new.0, new.1)
            .and_then(|()| self.rtnl.del_address(self.link, old.0, old.1))
        {
            error!("moving the overlay address on {}: {e}", self.cfg.interface);
        }
        self.overlay = mv.to;
        self.membership.set_meta(now, meta);
    }

    fn remember_failed(&mut self, addr: SocketAddr, now: Instant) {
        self.failed.insert(addr, now);
        if self.failed.len() > MAX_FAILED {
            if let Some(oldest) = self
                .failed
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(a, _)| *a)
            {
                self.failed.remove(&oldest);
            }
        }
    }

    fn join_result(&mut self, now: Instant, addr: SocketAddr, result: Result<usize, String>) {
        // Re-joins of lost members knock every 30 s: their failures are expected, not news.
        let rejoin = self.joining.pending == 0;
        match result {
            Ok(n) => {
                info!("joined through {addr}: learned {n} members");
                self.joining.succeeded = true;
            }
            Err(e) if rejoin => debug!("re-join through {addr} failed: {e}"),
            Err(e) if e.contains("decrypt") => {
                warn!(
                    "join through {addr} failed: {e} (is the cluster key the same on both nodes?)"
                )
            }
            Err(e) => warn!("join through {addr} failed: {e}"),
        }
        if rejoin {
            return;
        }
        self.joining.pending -= 1;
        if self.joining.pending == 0 {
            if self.joining.succeeded {
                self.joining.backoff = JOIN_BACKOFF_START;
            } else {
                warn!(
                    "could not join any of {:?}; retrying in {:?}",
                    self.joining.targets, self.joining.backoff
                );
                self.schedule_join_retry(now);
            }
        }
    }

    /// Apply mesh changes; failures are logged and the next event tries again.
    fn apply(&mut self, changes: Changes) {
        if !changes.wireguard.is_empty() {
            if let Err(e) = self.wg.apply(&changes.wireguard) {
                error!("configuring WireGuard peers on {}: {e}", self.cfg.interface);
            }
        }
        for (net, len) in &changes.routes_del {
            if let Err(e) = self.rtnl.del_route(self.link, *net, *len) {
                warn!("removing route {net}/{len}: {e}");
            }
        }
        for (net, len) in &changes.routes_add {
            if let Err(e) = self.rtnl.add_route(self.link, *net, *len) {
                error!("adding route {net}/{len} via {}: {e}", self.cfg.interface);
            }
        }
        if changes.hosts {
            self.write_hosts();
        }
    }

    fn write_hosts(&self) {
        if let Some(path) = &self.hosts_path {
            let entries: Vec<HostEntry> = self
                .mesh
                .hosts_entries()
                .into_iter()
                .map(|(ip, name)| HostEntry { name, ip })
                .collect();
            match hosts::update(path, &self.cfg.interface, &entries) {
                Ok(outcome) => {
                    for name in outcome.skipped {
                        warn!(
                            "member name {name:?} cannot be written to {}",
                            path.display()
                        );
                    }
                }
                Err(e) => error!("updating {}: {e}", path.display()),
            }
        }
    }

    fn save_state(&mut self) {
        self.state_dirty = false;
        let nodes = self
            .membership
            .members()
            .filter(|m| m.name != self.name && m.state == MemberState::Alive)
            .map(|m| StoredNode {
                name: m.name.clone(),
                addr: m.addr.ip(),
                meta: m.meta.clone(),
            })
            .collect();
        let keyring = self.membership.keyring_mut();
        let primary = *keyring.primary();
        let state = State {
            cluster_key: Some(primary),
            extra_keys: keyring
                .keys()
                .iter()
                .filter(|k| **k != primary)
                .copied()
                .collect(),
            nodes,
        };
        if let Err(e) = state::save(&self.cfg.state_dir, &self.cfg.interface, &state) {
            error!("{e}");
        }
    }

    /// Leave no trace: our hosts lines, the link (with its routes and address), the state.
    fn shutdown(&mut self) {
        self.save_state();
        if let Some(path) = &self.hosts_path {
            if let Err(e) = hosts::cleanup(path, &self.cfg.interface) {
                error!("cleaning {}: {e}", path.display());
            }
        }
        if let Err(e) = self.rtnl.delete_link(self.link) {
            error!("deleting interface {}: {e}", self.cfg.interface);
        }
        info!("node {} stopped", self.name);
    }
}

/// Our gob metadata: overlay address, WireGuard key, and the routed networks as an extra field.
fn local_meta(
    overlay: IpAddr,
    public_key: &Key,
    routed: &[Cidr],
    fixed_overlay: bool,
) -> Result<Vec<u8>, AgentError> {
    let mut meta = NodeMeta::new(overlay, public_key.to_base64());
    let mut caps = vec![CAP_KEEPS_SESSIONS.to_string()];
    if fixed_overlay {
        caps.push(CAP_FIXED_OVERLAY.into());
    }
    meta.extras.push(Extra {
        name: CAPS_FIELD.into(),
        value: ExtraValue::Strings(caps),
    });
    if !routed.is_empty() {
        meta.extras.push(Extra {
            name: ROUTED_NETS_FIELD.into(),
            value: ExtraValue::Strings(routed.iter().map(Cidr::to_string).collect()),
        });
    }
    meta.encode()
        .map_err(|e| fail("encoding our node metadata", e))
}

/// A member's metadata, with its WireGuard key checked.
fn peer_meta(m: &Member) -> Result<NodeMeta, String> {
    let (meta, _format) =
        NodeMeta::decode(&m.meta).map_err(|e| format!("unusable metadata: {e}"))?;
    Key::from_base64(&meta.pub_key).map_err(|e| format!("bad WireGuard public key: {e}"))?;
    Ok(meta)
}

/// The routed networks a member advertises; entries that do not parse are skipped.
fn routed_nets(meta: &NodeMeta) -> Vec<Cidr> {
    strings_field(meta, ROUTED_NETS_FIELD)
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether a member's metadata lists a capability (Go nodes list none).
fn has_cap(meta: &NodeMeta, cap: &str) -> bool {
    strings_field(meta, CAPS_FIELD).iter().any(|c| c == cap)
}

/// An extra `[]string` field of a member's metadata; empty when absent.
fn strings_field<'m>(meta: &'m NodeMeta, name: &str) -> &'m [String] {
    meta.extras
        .iter()
        .find_map(|e| match &e.value {
            ExtraValue::Strings(v) if e.name == name => Some(v.as_slice()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Put the overlay address (and only it) on the link, set the MTU and bring it up. Routes left
/// by an earlier run are removed: the mesh adds what it needs as members appear.
fn configure_link(
    rtnl: &mut Netlink,
    link: u32,
    overlay: IpAddr,
    mtu: u32,
) -> Result<(), netlink::Error> {
    let want = (overlay, host_prefix(overlay));
    let mut present = false;
    for a in rtnl.addresses(Some(link))? {
        if (a.addr, a.prefix_len) == want {
            present = true;
        } else {
            rtnl.del_address(link, a.addr, a.prefix_len)?;
        }
    }
    if !present {
        rtnl.add_address(link, want.0, want.1)?;
    }
    for r in rtnl.routes(link)? {
        if (r.dst, r.prefix_len) != want {
            rtnl.del_route(link, r.dst, r.prefix_len)?;
        }
    }
    rtnl.set_mtu_up(link, mtu)
}

/// The gossip bind address and the address advertised to others.
fn bind_addresses(cfg: &Config, rtnl: &mut Netlink) -> Result<(IpAddr, IpAddr), AgentError> {
    match &cfg.bind {
        Bind::Addr(ip) => Ok((*ip, *ip)),
        Bind::Iface(iface) => {
            let ip = rtnl
                .first_address(iface)
                .map_err(|e| fail(format!("--bind-iface {iface}"), e))?;
            Ok((ip, ip))
        }
        Bind::Auto => rtnl
            .detect_bind()
            .map(|b| (b.bind, b.advertise))
            .map_err(|e| fail("detecting the bind address (set --bind-addr)", e)),
    }
}

/// The join targets worth re-joining every 30 s. Hostnames need a blocking lookup, so they are
/// looked up again only when this node is alone; otherwise the addresses of lost members (kept
/// in `failed`) find the other half of a split cluster without DNS.
fn rejoin_targets(targets: &[JoinAddr], alone: bool) -> Vec<JoinAddr> {
    targets
        .iter()
        .filter(|t| alone || t.host.parse::<IpAddr>().is_ok())
        .cloned()
        .collect()
}

fn resolve_target(target: &str, default_port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if let Ok(ip) = target.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    // host or host:port; getaddrinfo blocks, but only at join attempts.
    let with_port = if target
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        target.to_string()
    } else {
        format!("{target}:{default_port}")
    };
    Ok(with_port.to_socket_addrs()?.collect())
}

fn hostname() -> Result<String, AgentError> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| {
        fail(
            "reading the hostname from /proc/sys/kernel/hostname (or pass --node-name)",
            e,
        )
    })?;
    let name = raw.trim().to_string();
    if name.is_empty() {
        return Err(AgentError("the hostname is empty: pass --node-name".into()));
    }
    Ok(name)
}

fn random_seed() -> Result<u64, getrandom::Error> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_looked_up_again_only_when_alone() {
        let targets: Vec<JoinAddr> = ["192.0.2.7", "seed.example.net:7000", "2001:db8::1"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let hosts = |ts: Vec<JoinAddr>| ts.into_iter().map(|t| t.host).collect::<Vec<_>>();
        assert_eq!(
            hosts(rejoin_targets(&targets, false)),
            ["192.0.2.7", "2001:db8::1"]
        );
        assert_eq!(rejoin_targets(&targets, true), targets);
    }

    #[test]
    fn join_targets_take_the_cluster_port_by_default() {
        assert_eq!(
            resolve_target("192.0.2.7", 7946).unwrap(),
            vec!["192.0.2.7:7946".parse().unwrap()]
        );
        assert_eq!(
            resolve_target("192.0.2.7:8000", 7946).unwrap(),
            vec!["192.0.2.7:8000".parse().unwrap()]
        );
        assert_eq!(
            resolve_target("[2001:db8::1]:8000", 7946).unwrap(),
            vec!["[2001:db8::1]:8000".parse().unwrap()]
        );
        assert_eq!(
            resolve_target("2001:db8::1", 7946).unwrap(),
            vec!["[2001:db8::1]:7946".parse().unwrap()]
        );
        assert_eq!(
            resolve_target("localhost:7000", 7946).unwrap()[0].port(),
            7000
        );
        assert!(resolve_target("localhost", 7946)
            .unwrap()
            .iter()
            .all(|a| a.port() == 7946));
    }
}
