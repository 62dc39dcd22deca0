//! The wesher agent: one thread, one mio loop, and the wiring of the parts.
//!
//! The loop owns the gossip sockets (through `Transport`), the rtnetlink notifications, the
//! signal pipe and the clock. Membership events become the desired mesh (`desired`, `mesh`);
//! `reconcile::plan` compares it with what `system` reads back and `system` applies the
//! difference, again after failures (with backoff), on a period, and at once when rtnetlink
//! says a link, address or route changed. Joins are scheduled by `join`, state writes by
//! `persist`.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Poll, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Bind, Config, GossipProfile, JoinAddr};
use crate::control::{self, MemberStatus, Request, Status};
use crate::desired::{self, Candidate, Collision};
use crate::devices::{self, Device};
use crate::hooks::{self, Hooks};
use crate::hosts::{self, HostEntry};
use crate::join::{self, Action, Kind, Scheduler, View};
use crate::membership::{self, Event, Keyring, Member, MemberState, Membership, Timing};
use crate::mesh::{host_prefix, Local, Mesh, Peer, Refused};
use crate::meta::{LocalMeta, PeerMeta};
use crate::metrics::Counters;
use crate::netlink::Netlink;
use crate::overlay::{self, Cidr};
use crate::persist::Persist;
use crate::reconcile::{self, Desired};
use crate::resolver::{Answer, Resolver};
use crate::rtnotify::Notifications;
use crate::state::{self, KeySource, State, StoredNode};
use crate::system::System;
use crate::transport::{self, Transport};
use crate::wireguard::{Backend, DeviceConfig, Key, PeerChange, PrivateKey};

const SIGNALS: Token = Token(0);
/// The control socket's listener; its connections take the tokens after it.
const CONTROL: Token = Token(1);
/// rtnetlink notifications: below the transport's tokens, above the control socket's.
const NOTIFY: Token = Token(1000);
/// The resolver's sockets: this token (IPv4) and the next (IPv6).
const RESOLVER: Token = Token(1001);

/// How long a graceful leave may take before we exit anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// When, after a membership event, to reset our sessions with such members: once they have
/// processed the same event (gossip takes up to a few hundred milliseconds per hop), and again
/// in case one of them heard of it late. Measured against Go wesher: without the resets, traffic
/// from us to a Go node stopped for about 15 s after each event.
const SESSION_RESET_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1500),
    Duration::from_secs(3),
];
/// How often the system is read back when nothing says it changed: a few small netlink dumps
/// and one WireGuard read, cheap on a router. Catches what sends no notification (a peer
/// removed from wireguard-go by hand).
const OBSERVE_INTERVAL: Duration = Duration::from_secs(10);
/// Notifications come in bursts (our own changes make some): read back once after the burst.
const NOTIFY_SETTLE: Duration = Duration::from_millis(200);
/// Read-backs for notifications are at least this far apart: a router whose routing table
/// churns (a routing daemon) must not keep us dumping it.
const NOTIFY_MIN_GAP: Duration = Duration::from_millis(500);
/// Retries of changes that did not take: from this, doubling, to the max.
const RETRY_START: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long the leave that precedes a new underlay address may take (memberlist takes a new
/// address only from a member that left).
const MOVE_LEAVE_TIMEOUT: Duration = Duration::from_secs(3);
/// The new address is announced no sooner than this after the leave: a Go node that hears the
/// new address before the leave refuses it as a name conflict (seen with 5 nodes at 0.4 s).
const MOVE_LEAVE_SPREAD: Duration = Duration::from_millis(1500);
/// When another agent holds the hosts-file lock, the write is tried again after this.
const HOSTS_BUSY_RETRY: Duration = Duration::from_millis(300);
/// Hosts-file lines are put back this often if another tool rewrote the file.
const HOSTS_REFRESH: Duration = join::REJOIN_INTERVAL;

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

/// A move to a new underlay address, waiting for the leave that must come first.
struct Move {
    to: SocketAddr,
    bind: IpAddr,
    deadline: Instant,
    /// Not announced before this, so that the leave has spread.
    earliest: Instant,
    /// Members to join again at the new address.
    rejoin: Vec<SocketAddr>,
}

struct Agent {
    cfg: Config,
    name: String,
    overlay: IpAddr,
    public_key: Key,
    system: System,
    membership: Membership,
    transport: Transport,
    mesh: Mesh,
    hosts_path: Option<PathBuf>,
    joins: Scheduler,
    persist: Persist,
    leave_deadline: Option<Instant>,
    control: Option<control::Server>,
    notifications: Option<Notifications>,
    /// Membership changed since the desired mesh was last computed.
    mesh_dirty: bool,
    /// When to read the system back and apply what differs.
    next_reconcile: Option<Instant>,
    next_observe: Instant,
    last_reconcile: Instant,
    retry: Duration,
    /// The last reconcile error, logged once until it changes.
    last_error: Option<String>,
    next_hosts: Instant,
    /// Pending resets of the sessions with members that drop theirs at membership events.
    session_resets: Vec<Instant>,
    /// Refusals already logged, so each is logged once.
    refused: Vec<(String, Refused)>,
    /// The underlay address is not known yet (no uplink at start): no joins until it is.
    no_underlay: bool,
    moving: Option<Move>,
    /// The gossip sockets must move to this bind address (the underlay address changed).
    rebind_to: Option<IpAddr>,
    /// `--on-change`.
    hooks: Option<Hooks>,
    /// Join requests sent, for the metrics.
    join_attempts: u64,
    /// Devices without wesher, routed through this node (`wesher peer add`).
    devices: Vec<Device>,
    /// This node's connected networks, as the mesh last saw them.
    connected: Vec<Cidr>,
    resolver: Resolver,
}

impl Agent {
    fn start(mut cfg: Config, poll: &Poll) -> Result<Agent, AgentError> {
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
        // Taken out of the configuration: the keyring is the one long-lived holder.
        let (cluster_key, source) =
            state::choose_key(cfg.cluster_key.take(), stored.cluster_key.clone(), cfg.init)
                .map_err(|e| AgentError(e.to_string()))?;
        if source == KeySource::Generated && io::stdout().is_terminal() {
            // Printed, never logged: logs end up in places a secret should not.
            let _ = writeln!(
                io::stdout(),
                "new cluster key generated: {}",
                *cluster_key.to_base64()
            );
        }
        let mut initial = stored.clone();
        initial.extra_keys.retain(|k| *k != cluster_key);
        initial.cluster_key = Some(cluster_key);
        if initial != stored || source == KeySource::Generated {
            // Written at once so a generated key survives a crash before the first member joins.
            state::save(&cfg.state_dir, &cfg.interface, &initial)
                .map_err(|e| AgentError(e.to_string()))?;
        }

        let mut rtnl = Netlink::open().map_err(|e| fail("opening rtnetlink", e))?;
        let underlay = bind_addresses(&cfg, &mut rtnl)?;
        let no_underlay = underlay.is_none();
        let (bind_ip, advertise_ip) = underlay.unwrap_or_else(|| {
            warn!(
                "no usable underlay address or route yet; waiting for one before joining \
                 (set --bind-addr to choose one)"
            );
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            )
        });
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

        // Kept only for devices (their configurations name our public key); else new each start.
        let key = match stored.wireguard_key {
            Some(k) if !stored.devices.is_empty() => k,
            _ => PrivateKey::generate().map_err(|e| fail("generating the WireGuard key", e))?,
        };
        let meta = LocalMeta {
            overlay,
            public_key: key.public_key(),
            routed: devices::advertised(&cfg.routed_nets, &initial.devices),
            fixed_overlay: cfg.overlay_addr.is_some(),
        }
        .encode()
        .map_err(AgentError)?;
        let timing = match cfg.gossip_profile {
            GossipProfile::Wan => Timing::wan(),
            GossipProfile::Lan => Timing::lan(),
        };
        let seed = random_seed().map_err(|e| fail("seeding the random source", e))?;
        // Keys installed by `wesher key install` survive restarts until removed.
        let keyring = Keyring::from_keys(
            initial
                .cluster_key
                .iter()
                .chain(&initial.extra_keys)
                .cloned()
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
        // Set up in full once here, so that a bad start fails at once; later rounds repair.
        let configured = Backend::open(&cfg.interface).and_then(|mut wg| {
            wg.set_device(&DeviceConfig {
                private_key: &key,
                listen_port: cfg.wireguard_port,
            })?;
            rtnl.add_address(link, overlay, host_prefix(overlay))?;
            rtnl.set_mtu_up(link, cfg.mtu)?;
            Ok(wg)
        });
        let wg = match configured {
            Ok(wg) => wg,
            Err(e) => {
                // A link we made is ours to remove; one a userspace daemon made is left to it.
                if !existed {
                    let _ = rtnl.delete_link(link);
                }
                return Err(AgentError(e.to_string()));
            }
        };
        let public_key = key.public_key();
        let system = System::new(&cfg.interface, rtnl, wg, link, key);

        let now = Instant::now();
        let membership = Membership::new(
            membership::Config {
                name: name.clone(),
                advertise,
                keyring,
                timing,
                meta,
            },
            now,
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
        let resolver = Resolver::new(RESOLVER);
        // Without notifications, the periodic read-back still repairs, only later.
        let notifications = match Notifications::open(poll.registry(), NOTIFY) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(
                    "rtnetlink notifications: {e}; changes are noticed every {OBSERVE_INTERVAL:?}"
                );
                None
            }
        };
        Ok(Agent {
            name,
            overlay,
            public_key,
            system,
            membership,
            transport,
            mesh: Mesh::default(),
            hosts_path,
            joins: Scheduler::new(now, targets),
            persist: Persist::new(Some(initial)),
            leave_deadline: None,
            control,
            notifications,
            mesh_dirty: false,
            next_reconcile: Some(now),
            next_observe: now + OBSERVE_INTERVAL,
            last_reconcile: now,
            retry: RETRY_START,
            last_error: None,
            next_hosts: now + HOSTS_REFRESH,
            session_resets: Vec::new(),
            refused: Vec::new(),
            no_underlay,
            moving: None,
            rebind_to: None,
            hooks: cfg.on_change.clone().map(Hooks::new),
            join_attempts: 0,
            devices: stored.devices,
            connected: Vec::new(),
            resolver,
            cfg,
        })
    }

    fn run(&mut self, poll: &mut Poll, signals: &mut Signals) -> Result<(), AgentError> {
        let mut events = Events::with_capacity(64);
        let mut inputs = Vec::new();
        loop {
            let now = Instant::now();
            self.on_timers(poll.registry(), now);
            transport::pump(&mut self.membership, &mut self.transport, now);
            self.drain_events(now);
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
                        info!("signal {signal}: leaving the cluster");
                        let now = Instant::now();
                        self.membership.leave(now);
                        self.leave_deadline = Some(now + LEAVE_TIMEOUT);
                    }
                } else if event.token() == NOTIFY {
                    if self
                        .notifications
                        .as_mut()
                        .is_some_and(Notifications::drain)
                    {
                        let soon = (Instant::now() + NOTIFY_SETTLE)
                            .max(self.last_reconcile + NOTIFY_MIN_GAP);
                        self.next_reconcile =
                            Some(self.next_reconcile.map_or(soon, |t| t.min(soon)));
                    }
                } else if self.resolver.owns(event.token()) {
                    let now = Instant::now();
                    self.resolver.handle_readable(poll.registry(), now);
                    self.take_answers(poll.registry(), now);
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
            self.rebind(poll.registry());
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
            Request::Status => return Ok(self.status().to_json()),
            Request::KeyInstall(k) => (k, "installed"),
            Request::KeyUse(k) => (k, "in use"),
            Request::KeyRemove(k) => (k, "removed"),
            _ => return self.answer_peer(request),
        };
        let key = crate::secret::SecretKey::from_base64(key)?;
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
        // A key change is rare and must survive a crash: written at once, not debounced.
        self.offer_state();
        if let Some(state) = self.persist.flush() {
            self.save_state(Instant::now(), state);
        }
        Ok(format!("{done}\n"))
    }

    /// `wesher peer add|list|remove`: devices without wesher.
    fn answer_peer(&mut self, request: Request) -> Result<String, String> {
        match request {
            Request::PeerAdd {
                name,
                public_key,
                overlay,
            } => {
                let key = Key::from_base64(&public_key).map_err(|e| e.to_string())?;
                let wanted = match overlay {
                    Some(s) => Some(
                        s.parse::<IpAddr>()
                            .map_err(|_| format!("{s:?} is not an IP address"))?,
                    ),
                    None => None,
                };
                let peers: Vec<&Peer> = self.mesh.peers().collect();
                let mut names: Vec<&str> = self.membership.members().map(|m| &*m.name).collect();
                names.extend(self.devices.iter().map(|d| &*d.name));
                let mut keys = vec![self.public_key];
                keys.extend(peers.iter().map(|p| p.public_key));
                keys.extend(self.devices.iter().map(|d| d.public_key));
                let mut overlays = vec![self.overlay];
                for p in &peers {
                    overlays.push(p.overlay);
                    // Other nodes' devices.
                    overlays.extend(p.routed.iter().map(|n| n.network()));
                }
                overlays.extend(self.devices.iter().map(|d| d.overlay));
                let taken = devices::Taken {
                    names: &names,
                    keys: &keys,
                    overlays: &overlays,
                };
                let device = devices::admit(&self.cfg.overlay_net, &name, key, wanted, &taken)?;
                info!("device {name} added: overlay {}", device.overlay);
                let mut allowed = vec![self.cfg.overlay_net];
                allowed.extend(self.cfg.routed_nets.iter().copied());
                for p in &peers {
                    let nets = p
                        .routed
                        .iter()
                        .filter(|n| !n.overlaps(&self.cfg.overlay_net));
                    allowed.extend(nets.copied());
                }
                let endpoint =
                    SocketAddr::new(self.membership.local().addr.ip(), self.cfg.wireguard_port);
                let config = devices::wg_quick(&device, self.public_key, endpoint, &allowed);
                self.devices.push(device);
                self.devices_changed();
                Ok(config)
            }
            Request::PeerRemove(name) => {
                let before = self.devices.len();
                self.devices.retain(|d| d.name != name);
                if self.devices.len() == before {
                    return Err(format!("no device {name:?} on this node"));
                }
                info!("device {name} removed");
                self.devices_changed();
                Ok("removed\n".into())
            }
            _ => Ok(self
                .devices
                .iter()
                .map(|d| format!("{} {} {}\n", d.name, d.overlay, d.public_key.to_base64()))
                .collect()),
        }
    }

    /// Devices came or went: announce them, store them, apply them.
    fn devices_changed(&mut self) {
        self.announce(Instant::now());
        self.offer_state();
        self.mesh_dirty = true;
    }

    fn status(&mut self) -> Status {
        let peers = match self.system.wg().and_then(|wg| wg.peers()) {
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
            version: control::STATUS_VERSION,
            interface: self.cfg.interface.clone(),
            node,
            members,
            counters: Counters::new(
                self.membership.stats(),
                self.transport.stats(),
                self.join_attempts,
            ),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.membership.next_deadline(),
            (!self.no_underlay && self.moving.is_none())
                .then(|| self.joins.next_deadline())
                .flatten(),
            self.next_reconcile,
            Some(self.next_observe),
            Some(self.next_hosts),
            self.persist.next_deadline(),
            self.session_resets.first().copied(),
            self.moving.as_ref().map(|m| {
                if self.membership.leave_done() {
                    m.earliest.min(m.deadline)
                } else {
                    m.deadline
                }
            }),
            self.leave_deadline,
            self.hooks.as_ref().and_then(Hooks::next_deadline),
            self.resolver.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_timers(&mut self, registry: &Registry, now: Instant) {
        if self.membership.next_deadline().is_some_and(|d| d <= now) {
            self.membership.handle_timeout(now);
        }
        // Before the leave check: its deadline counts in `next_deadline` while leaving too.
        if self.resolver.next_deadline().is_some_and(|d| d <= now) {
            self.resolver.handle_timeout(registry, now);
            self.take_answers(registry, now);
        }
        if self.leave_deadline.is_some() {
            return;
        }
        if let Some(state) = self.persist.due(now) {
            self.save_state(now, state);
        }
        if now >= self.next_observe {
            self.next_observe = now + OBSERVE_INTERVAL;
            self.next_reconcile.get_or_insert(now);
            self.check_underlay(now);
        }
        if self.next_reconcile.is_some_and(|t| t <= now) {
            self.reconcile(now);
        }
        if self.moving.as_ref().is_some_and(|m| {
            now >= m.deadline || (now >= m.earliest && self.membership.leave_done())
        }) {
            self.finish_move(now);
        }
        if self.session_resets.first().is_some_and(|t| *t <= now) {
            self.session_resets.remove(0);
            let resets = self.mesh.session_resets();
            if !resets.is_empty() {
                debug!(
                    "resetting WireGuard sessions with {} Go wesher peers",
                    resets
                        .iter()
                        .filter(|c| matches!(c, PeerChange::Remove(_)))
                        .count()
                );
                if let Err(e) = self.system.wg().and_then(|wg| wg.apply(&resets)) {
                    debug!(
                        "resetting WireGuard sessions on {}: {e}",
                        self.cfg.interface
                    );
                }
            }
        }
        if !self.no_underlay && self.moving.is_none() {
            self.run_joins(registry, now, None);
        }
        if now >= self.next_hosts {
            self.next_hosts = now + HOSTS_REFRESH;
            // Puts back our lines if another tool rewrote the file; a no-op when they are there.
            self.write_hosts();
        }
        if let Some(h) = &mut self.hooks {
            let node = hooks::Node {
                interface: &self.cfg.interface,
                name: &self.name,
                overlay: self.overlay,
            };
            h.on_timer(now, &node, &self.mesh);
        }
    }

    /// Hands the lookups the resolver finished to the join scheduler.
    fn take_answers(&mut self, registry: &Registry, now: Instant) {
        while let Some(answer) = self.resolver.poll() {
            self.run_joins(registry, now, Some(answer));
        }
    }

    /// Runs the join scheduler; `answer` is a lookup the resolver finished.
    fn run_joins(&mut self, registry: &Registry, now: Instant, answer: Option<Answer>) {
        let (alive, lost) = self.member_addrs();
        let view = View {
            alive: &alive,
            lost: &lost,
        };
        let mut action = match answer {
            Some(answer) => {
                self.lookup_errors(&answer);
                self.joins.resolved(now, &view, answer.addrs)
            }
            None => self.joins.poll(now, &view),
        };
        while let Some(a) = action {
            action = match a {
                Action::Resolve(targets) => {
                    match self
                        .resolver
                        .lookup(registry, now, &targets, self.cfg.cluster_port)
                    {
                        Some(answer) => {
                            self.lookup_errors(&answer);
                            self.joins.resolved(now, &view, answer.addrs)
                        }
                        // The names are being looked up: the answer resumes this.
                        None => None,
                    }
                }
                Action::Join(addrs) => {
                    debug!("joining {addrs:?}");
                    self.join_attempts += addrs.len() as u64;
                    self.membership.join(now, &addrs);
                    self.joins.poll(now, &view)
                }
            };
        }
    }

    fn lookup_errors(&self, answer: &Answer) {
        for e in &answer.errors {
            warn!("join target {e}");
        }
    }

    /// Addresses of alive members (this node included) and of dead or left ones.
    fn member_addrs(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let (mut alive, mut lost) = (Vec::new(), Vec::new());
        for m in self.membership.members() {
            match m.state {
                MemberState::Alive | MemberState::Suspect => alive.push(m.addr),
                MemberState::Dead | MemberState::Left => lost.push(m.addr),
            }
        }
        (alive, lost)
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.membership.poll_event() {
            match event {
                Event::Join(m) | Event::Update(m) => {
                    self.joins.member_alive(m.addr);
                    // Checked here so a bad blob is reported once per change, not per reconcile.
                    if let Err(e) = PeerMeta::of(&m) {
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
                        self.joins.member_failed(now, m.addr);
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
            self.update_mesh(now);
            self.offer_state();
        }
    }

    fn join_result(&mut self, now: Instant, addr: SocketAddr, result: Result<usize, String>) {
        let kind = self.joins.result(now, addr, result.is_ok());
        match (result, kind) {
            (Ok(n), _) => info!("joined through {addr}: learned {n} members"),
            // Re-joins of lost members are expected to fail: not news.
            (Err(e), Some(Kind::Rejoin) | None) => debug!("re-join through {addr} failed: {e}"),
            (Err(e), Some(Kind::First)) if e.contains("decrypt") => {
                warn!(
                    "join through {addr} failed: {e} (is the cluster key the same on both nodes?)"
                )
            }
            (Err(e), Some(Kind::First)) => warn!("join through {addr} failed: {e}"),
        }
        if let Some(delay) = self.joins.retrying_in() {
            warn!(
                "could not join any of {:?}; retrying in {delay:?}",
                self.joins.targets()
            );
        }
    }

    /// The desired mesh from the current members: our overlay address after the collision
    /// policy (announced when it moves), then the accepted peers; the system follows.
    fn update_mesh(&mut self, now: Instant) {
        let members: Vec<Candidate> = self
            .membership
            .members()
            .filter(|m| {
                m.name != self.name && matches!(m.state, MemberState::Alive | MemberState::Suspect)
            })
            .filter_map(|m| {
                let meta = PeerMeta::of(m).ok()?;
                Some(Candidate {
                    name: m.name.clone(),
                    addr: m.addr,
                    meta,
                })
            })
            .collect();
        let hand_set = self.cfg.overlay_addr.is_some();
        match desired::collision(
            &self.cfg.overlay_net,
            &self.name,
            self.overlay,
            hand_set,
            &members,
        ) {
            Some(Collision::HandSet { with }) => error!(
                "overlay address {} set by --overlay-addr is also advertised by {with}; \
                 one of the two must change",
                self.overlay
            ),
            Some(Collision::Move { to, with }) => {
                error!(
                    "overlay address {} collides with member {with}, whose claim wins (set by \
                     hand, or its name sorts first); moving to {to}",
                    self.overlay
                );
                self.overlay = to;
                self.announce(now);
            }
            None => {}
        }
        let keepalive =
            (self.cfg.persistent_keepalive > 0).then_some(self.cfg.persistent_keepalive);
        let want = desired::peers(&members, self.cfg.wireguard_port, keepalive);
        if let Some(c) = self.read_connected() {
            self.connected = c;
        }
        let local = Local {
            overlay: self.overlay,
            overlay_net: self.cfg.overlay_net,
            routed: devices::advertised(&self.cfg.routed_nets, &self.devices),
            connected: self.connected.clone(),
            accept: self.cfg.accept_routed_nets.clone(),
        };
        let before: Vec<Peer> = match self.hooks {
            Some(_) => self.mesh.peers().cloned().collect(),
            None => Vec::new(),
        };
        let result = self.mesh.accept(want, &local);
        if let Some(h) = &mut self.hooks {
            h.changed(hooks::changes(&before, self.mesh.peers()));
        }
        for (name, why) in &result.refused {
            if !self.refused.contains(&(name.clone(), why.clone())) {
                error!("member {name}: {why}");
            }
        }
        self.refused = result.refused;
        info!("mesh: {} peers", self.mesh.peers().count());
        if result.hosts {
            self.write_hosts();
        }
        self.next_reconcile = Some(now);
    }

    /// The networks this node is connected to (not through our link).
    fn read_connected(&mut self) -> Option<Vec<Cidr>> {
        let link = self.system.index();
        match self.system.rtnl().connected(link) {
            Ok(mut c) => {
                c.sort_by_key(|n| (n.network(), n.prefix_len()));
                Some(c)
            }
            Err(e) => {
                warn!("listing this node's networks: {e}");
                None
            }
        }
    }

    /// Our metadata, announced with a new incarnation.
    fn announce(&mut self, now: Instant) {
        let meta = LocalMeta {
            overlay: self.overlay,
            public_key: self.public_key,
            routed: devices::advertised(&self.cfg.routed_nets, &self.devices),
            // Only a derived address moves, so it stays derived.
            fixed_overlay: self.cfg.overlay_addr.is_some(),
        };
        match meta.encode() {
            Ok(m) => self.membership.set_meta(now, m),
            Err(e) => error!("{e}"),
        }
    }

    fn desired(&self) -> Desired {
        let mut desired = Desired {
            public_key: self.public_key,
            listen_port: self.cfg.wireguard_port,
            mtu: self.cfg.mtu,
            address: (self.overlay, host_prefix(self.overlay)),
            peers: self.mesh.peer_configs(),
            routes: self.mesh.routes(),
        };
        for d in &self.devices {
            desired.peers.push(d.peer_config());
            desired.routes.push(d.host_route());
        }
        desired
    }

    /// Read the system back, apply what differs from the desired mesh, and check it took.
    fn reconcile(&mut self, now: Instant) {
        self.next_reconcile = None;
        self.last_reconcile = now;
        self.check_underlay(now);
        // A network that appeared or went (a LAN brought up) changes which routed nets are safe.
        if self.read_connected().is_some_and(|c| c != self.connected) {
            self.update_mesh(now);
        }
        let mut desired = self.desired();
        self.system.drop_conflicts(&mut desired);
        // What is left to do; a link whose daemon does not answer yet counts too (its socket
        // comes after its link, with no notification).
        let left = |observed: &reconcile::Observed, changes: &[reconcile::Change]| {
            changes.len() + usize::from(observed.link.is_some() && observed.device.is_none())
        };
        let outcome = self.system.observe().and_then(|observed| {
            let changes = reconcile::plan(&desired, &observed, self.system.endpoints());
            if changes.is_empty() {
                return Ok(left(&observed, &changes));
            }
            debug!("applying {} changes", changes.len());
            self.system.apply(&desired, &changes)?;
            let observed = self.system.observe()?;
            let changes = reconcile::plan(&desired, &observed, self.system.endpoints());
            Ok(left(&observed, &changes))
        });
        match outcome {
            Ok(0) => {
                if let Some(h) = &mut self.hooks {
                    h.applied();
                }
                if self.last_error.take().is_some() || self.retry > RETRY_START {
                    info!("interface {} is as wanted again", self.cfg.interface);
                }
                self.retry = RETRY_START;
            }
            Ok(left) => {
                debug!("{left} changes still to confirm; again in {:?}", self.retry);
                self.retry_later(now);
            }
            Err(e) => {
                let text = e.to_string();
                if self.last_error.as_ref() != Some(&text) {
                    warn!("{text}; retrying");
                    self.last_error = Some(text);
                }
                self.retry_later(now);
            }
        }
    }

    fn retry_later(&mut self, now: Instant) {
        self.next_reconcile = Some(now + self.retry);
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }

    /// With automatic bind detection, follow our underlay address: when the advertised one is
    /// gone, move to the new one; at start without one, join once it appears.
    fn check_underlay(&mut self, now: Instant) {
        if self.cfg.bind != Bind::Auto || self.cfg.advertise_addr.is_some() || self.moving.is_some()
        {
            return;
        }
        let current = self.membership.local().addr;
        let link = self.system.index();
        let rtnl = self.system.rtnl();
        let still_there = match rtnl.addresses(None) {
            Ok(addrs) => addrs.iter().any(|a| a.addr == current.ip()),
            Err(_) => return,
        };
        if still_there {
            return;
        }
        let Ok(found) = rtnl.detect_bind(link) else {
            return;
        };
        let to = SocketAddr::new(found.advertise, current.port());
        if self.no_underlay {
            info!("underlay address {} appeared; joining", found.advertise);
            self.no_underlay = false;
            self.membership.readvertise(now, to);
            self.rebind_to = Some(found.bind);
            return;
        }
        info!(
            "underlay address {} is gone; moving to {}",
            current.ip(),
            found.advertise
        );
        let (alive, _) = self.member_addrs();
        let rejoin: Vec<SocketAddr> = alive.into_iter().filter(|a| *a != current).collect();
        if !rejoin.is_empty() {
            self.membership.leave(now);
        }
        self.moving = Some(Move {
            to,
            bind: found.bind,
            deadline: now + MOVE_LEAVE_TIMEOUT,
            earliest: now + MOVE_LEAVE_SPREAD,
            rejoin,
        });
    }

    /// Sockets bound to a specific address follow it; wildcard ones receive on any address.
    fn rebind(&mut self, registry: &mio::Registry) {
        let Some(ip) = self.rebind_to.take() else {
            return;
        };
        let bound = self.transport.local_addr();
        if bound.ip().is_unspecified() || bound.ip() == ip {
            return;
        }
        let addr = SocketAddr::new(ip, bound.port());
        // The old sockets go first: the new ones take the same port.
        match Transport::bind(registry, addr) {
            Ok(t) => {
                info!("gossip port bound to {addr}");
                self.transport = t;
            }
            Err(e) => warn!("binding the gossip port {addr}: {e}; keeping {bound}"),
        }
    }

    /// The leave at the old address is out: announce the new one and join the members again.
    fn finish_move(&mut self, now: Instant) {
        let Some(mv) = self.moving.take() else {
            return;
        };
        self.membership.readvertise(now, mv.to);
        self.rebind_to = Some(mv.bind);
        if !mv.rejoin.is_empty() {
            self.membership.join(now, &mv.rejoin);
        }
    }

    fn write_hosts(&mut self) {
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
                            "member name {name:?} not written to {}: not a hostname, or a name \
                             that lines wesher does not manage already use",
                            path.display()
                        );
                    }
                }
                Err(e @ hosts::HostsError::Busy(_)) => {
                    debug!("{e}; trying again in {HOSTS_BUSY_RETRY:?}");
                    self.next_hosts = Instant::now() + HOSTS_BUSY_RETRY;
                }
                Err(e) => error!("updating {}: {e}", path.display()),
            }
        }
    }

    fn offer_state(&mut self) {
        let mut nodes: Vec<StoredNode> = self
            .membership
            .members()
            .filter(|m| m.name != self.name && m.state == MemberState::Alive)
            .map(|m| StoredNode {
                name: m.name.clone(),
                addr: m.addr.ip(),
                meta: m.meta.clone(),
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let keyring = self.membership.keyring_mut();
        let state = State {
            cluster_key: Some(keyring.primary().clone()),
            extra_keys: keyring.keys()[1..].to_vec(),
            nodes,
            devices: self.devices.clone(),
            wireguard_key: (!self.devices.is_empty()).then(|| self.system.private_key().clone()),
        };
        self.persist.offer(state);
    }

    fn save_state(&mut self, now: Instant, state: State) {
        let result = state::save(&self.cfg.state_dir, &self.cfg.interface, &state);
        if let Err(e) = &result {
            error!("{e}");
        } else {
            debug!("state saved ({} nodes)", state.nodes.len());
        }
        self.persist.done(now, state, result.is_ok());
    }

    /// Leave no trace: our hosts lines, the link (with its routes and address); save the state.
    fn shutdown(&mut self) {
        if let Some(state) = self.persist.flush() {
            self.save_state(Instant::now(), state);
        }
        if let Some(path) = &self.hosts_path {
            if let Err(e) = hosts::cleanup(path, &self.cfg.interface) {
                error!("cleaning {}: {e}", path.display());
            }
        }
        // A link that is gone already (its daemon stopped with us) is what we wanted.
        if let Err(e) = self.system.delete_link() {
            error!("deleting interface {}: {e}", self.cfg.interface);
        }
        info!("node {} stopped", self.name);
    }
}

/// The gossip bind address and the address advertised to others; None when bind detection
/// finds no usable address yet (a router whose uplink is not up).
fn bind_addresses(
    cfg: &Config,
    rtnl: &mut Netlink,
) -> Result<Option<(IpAddr, IpAddr)>, AgentError> {
    match &cfg.bind {
        Bind::Addr(ip) => Ok(Some((*ip, *ip))),
        Bind::Iface(iface) => {
            let ip = rtnl
                .first_address(iface)
                .map_err(|e| fail(format!("--bind-iface {iface}"), e))?;
            Ok(Some((ip, ip)))
        }
        Bind::Auto => match rtnl.detect_bind(None) {
            Ok(b) => Ok(Some((b.bind, b.advertise))),
            Err(e) if e.raw_errno().is_none() => Ok(None),
            Err(e) => Err(fail("detecting the bind address (set --bind-addr)", e)),
        },
    }
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
