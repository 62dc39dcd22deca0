//! The mesh as the agent wants it: one entry per remote member that is accepted, with the
//! WireGuard peers, routes and hosts lines that follow from it.
//!
//! The agent hands `accept` every usable member each time membership changes; conflicts are
//! settled by name order, so every node settles them the same way whatever order events came in.
//! Routed networks that would take over this node's own routing are refused here. Pure
//! bookkeeping: `reconcile` compares the result with the system.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::overlay::Cidr;
use crate::reconcile::Net;
use crate::wireguard::{Key, PeerChange, PeerConfig};

/// The persistent keepalive (seconds) a session reset turns on for a moment, only for the
/// keepalive WireGuard sends when it is turned on.
const HANDSHAKE_KICK: u16 = 1;

/// Everything the agent configures for one remote member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub overlay: IpAddr,
    pub public_key: Key,
    pub endpoint: SocketAddr,
    /// Networks behind this member, routed through it (besides its overlay address).
    pub routed: Vec<Cidr>,
    pub keepalive: Option<u16>,
    /// The member drops its WireGuard sessions at every membership event, as Go wesher does
    /// (it replaces its whole peer list): ours with it must be dropped too, see `session_resets`.
    pub resets_sessions: bool,
    /// Its overlay address was set by hand: it wins a collision with a derived one.
    pub fixed_overlay: bool,
}

impl Peer {
    fn allowed_ips(&self) -> Vec<Net> {
        let mut ips = vec![(self.overlay, host_prefix(self.overlay))];
        ips.extend(self.routed.iter().map(|n| (n.network(), n.prefix_len())));
        ips
    }

    pub fn config(&self) -> PeerConfig {
        PeerConfig {
            public_key: self.public_key,
            endpoint: Some(self.endpoint),
            allowed_ips: self.allowed_ips(),
            persistent_keepalive: self.keepalive,
        }
    }
}

/// The prefix length of a single host: 32 for IPv4, 128 for IPv6.
pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// What this node holds itself, which no peer may claim.
#[derive(Debug, Clone)]
pub struct Local {
    pub overlay: IpAddr,
    pub overlay_net: Cidr,
    pub routed: Vec<Cidr>,
    /// Networks connected to this node (its LAN, its uplink): a route to one of them through
    /// the mesh would cut the node off from it.
    pub connected: Vec<Cidr>,
    /// Routed networks accepted even so (`--accept-routed-nets`): inside one of these, only
    /// conflicts with the overlay and other members are refused.
    pub accept: Vec<Cidr>,
}

impl Local {
    /// Why a routed network must not be installed on this node, if it must not: it would
    /// replace the default route, cover a connected network, or send a member's underlay
    /// endpoint (and so the tunnel itself) into the tunnel.
    fn unsafe_route(&self, net: &Cidr, endpoints: &[(String, IpAddr)]) -> Option<String> {
        if self
            .accept
            .iter()
            .any(|a| a.contains(net.network()) && a.prefix_len() <= net.prefix_len())
        {
            return None;
        }
        if net.prefix_len() == 0 {
            return Some("the default route".into());
        }
        if let Some(c) = self.connected.iter().find(|c| c.overlaps(net)) {
            return Some(format!("this node's connected network {c}"));
        }
        endpoints
            .iter()
            .find(|(_, ip)| net.contains(*ip))
            .map(|(name, ip)| format!("the underlay address {ip} of {name}"))
    }
}

/// A claim of a member that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    /// Another member (or this node) holds the overlay address: the member is left out.
    Overlay { addr: IpAddr, holder: String },
    /// Another member advertises the same WireGuard key: the member is left out.
    Key { holder: String },
    /// The routed network overlaps one claimed first, this node's, or the overlay network:
    /// the member stays in the mesh without that network.
    Routed { net: String, holder: String },
    /// The routed network would take over this node's own routing (see `Local::unsafe_route`).
    Unsafe { net: String, why: String },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Overlay { addr, holder } => {
                write!(
                    f,
                    "overlay address {addr} is already held by {holder}; left out of the mesh"
                )
            }
            Refused::Key { holder } => {
                write!(
                    f,
                    "its WireGuard key is already used by {holder}; left out of the mesh"
                )
            }
            Refused::Routed { net, holder } => {
                write!(
                    f,
                    "routed network {net} overlaps one of {holder}; not routed"
                )
            }
            Refused::Unsafe { net, why } => {
                write!(
                    f,
                    "routed network {net} overlaps {why}; not routed (list it in \
                     --accept-routed-nets to route it anyway)"
                )
            }
        }
    }
}

/// The result of one `accept`.
#[derive(Debug, Default)]
pub struct Accepted {
    /// The set of (address, name) pairs changed: rewrite the hosts file.
    pub hosts: bool,
    /// Every refused claim, by member name (all of them, not just new ones).
    pub refused: Vec<(String, Refused)>,
}

/// The accepted mesh, sorted by member name (a vector: a `BTreeMap` costs a router binary
/// kilobytes more for the few dozen members of a mesh).
#[derive(Debug, Default)]
pub struct Mesh {
    peers: Vec<Peer>,
}

impl Mesh {
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Peer> {
        let at = self.peers.binary_search_by(|p| (*p.name).cmp(name)).ok()?;
        Some(&self.peers[at])
    }

    /// Make the applied mesh hold exactly the acceptable members of `want`. Conflicts go to a
    /// hand-set overlay address first, then to the member whose name sorts first; this node
    /// always keeps what it holds.
    pub fn accept(&mut self, mut want: Vec<Peer>, local: &Local) -> Accepted {
        want.sort_by(|a, b| a.name.cmp(&b.name));
        want.dedup_by(|a, b| a.name == b.name);
        // Stable: names stay in order within each group.
        want.sort_by_key(|p| !p.fixed_overlay);
        let mut refused = Vec::new();
        let endpoints: Vec<(String, IpAddr)> = want
            .iter()
            .map(|p| (p.name.clone(), p.endpoint.ip()))
            .collect();
        let overlays: Vec<IpAddr> = want.iter().map(|p| p.overlay).collect();
        let mut accepted: Vec<Peer> = Vec::new();
        for mut peer in want {
            let holder = if peer.overlay == local.overlay {
                Some("this node".to_string())
            } else {
                accepted
                    .iter()
                    .find(|p| p.overlay == peer.overlay)
                    .map(|p| p.name.clone())
            };
            if let Some(holder) = holder {
                let addr = peer.overlay;
                refused.push((peer.name, Refused::Overlay { addr, holder }));
                continue;
            }
            if let Some(p) = accepted.iter().find(|p| p.public_key == peer.public_key) {
                let holder = p.name.clone();
                refused.push((peer.name, Refused::Key { holder }));
                continue;
            }
            let mut routed = Vec::new();
            for net in std::mem::take(&mut peer.routed) {
                if let Some(why) = local.unsafe_route(&net, &endpoints) {
                    let net = net.to_string();
                    refused.push((peer.name.clone(), Refused::Unsafe { net, why }));
                    continue;
                }
                let holder = if net.overlaps(&local.overlay_net)
                    && !is_device_route(&net, local, &overlays)
                {
                    Some("the overlay network".to_string())
                } else if local.routed.iter().any(|n| n.overlaps(&net)) {
                    Some("this node".to_string())
                } else if let Some(p) = accepted
                    .iter()
                    .find(|p| p.routed.iter().any(|n| n.overlaps(&net)))
                {
                    Some(p.name.clone())
                } else if routed.iter().any(|n: &Cidr| n.overlaps(&net)) {
                    // The member lists overlapping networks itself: keep the first.
                    Some(peer.name.clone())
                } else {
                    None
                };
                match holder {
                    Some(holder) => refused.push((
                        peer.name.clone(),
                        Refused::Routed {
                            net: net.to_string(),
                            holder,
                        },
                    )),
                    None => routed.push(net),
                }
            }
            peer.routed = routed;
            accepted.push(peer);
        }
        accepted.sort_by(|a, b| a.name.cmp(&b.name));
        let hosts = self.hosts_entries() != hosts_entries(&accepted);
        self.peers = accepted;
        Accepted { hosts, refused }
    }

    /// The WireGuard peers to configure.
    pub fn peer_configs(&self) -> Vec<PeerConfig> {
        self.peers.iter().map(Peer::config).collect()
    }

    /// The routes through our link: every peer's overlay address and routed networks.
    pub fn routes(&self) -> Vec<Net> {
        let mut routes: Vec<Net> = self.peers.iter().flat_map(Peer::allowed_ips).collect();
        routes.sort();
        routes.dedup();
        routes
    }

    /// Remove and re-add every peer that drops its sessions at membership events, so that we
    /// do not keep using a session the peer has forgotten (which WireGuard would only notice
    /// after 15 s of silence), and have the re-added peer start a handshake at once: WireGuard
    /// sends a keepalive when a peer's persistent keepalive is turned on, and with no session
    /// that keepalive starts one. Without that, a session the peer had already made again
    /// towards us (its own traffic since its event) is gone on our side only, and its traffic
    /// to us is dropped until it gives up on that session after 15 s.
    pub fn session_resets(&self) -> Vec<PeerChange> {
        self.peers
            .iter()
            .filter(|p| p.resets_sessions)
            .flat_map(|p| {
                let config = p.config();
                let mut changes = vec![PeerChange::Remove(p.public_key)];
                if config.persistent_keepalive.is_none() {
                    changes.push(PeerChange::Upsert(PeerConfig {
                        persistent_keepalive: Some(HANDSHAKE_KICK),
                        ..config.clone()
                    }));
                }
                // A configured keepalive kicks on its own; else this turns the kick off again.
                changes.push(PeerChange::Upsert(config));
                changes
            })
            .collect()
    }

    /// The hosts entries for every peer, sorted by name.
    pub fn hosts_entries(&self) -> Vec<(IpAddr, String)> {
        hosts_entries(&self.peers)
    }
}

/// A device without wesher behind a member (`wesher peer add`): a host route inside the
/// overlay network to an address no member and not this node holds.
fn is_device_route(net: &Cidr, local: &Local, overlays: &[IpAddr]) -> bool {
    let ip = net.network();
    net.prefix_len() == host_prefix(ip) && ip != local.overlay && !overlays.contains(&ip)
}

fn hosts_entries(peers: &[Peer]) -> Vec<(IpAddr, String)> {
    peers.iter().map(|p| (p.overlay, p.name.clone())).collect()
}

/// A plain peer for unit tests here and in the modules fed by the mesh (hooks).
#[cfg(test)]
pub(crate) fn test_peer(name: &str, overlay: &str, k: u8) -> Peer {
    Peer {
        name: name.into(),
        overlay: overlay.parse().unwrap(),
        public_key: Key([k; 32]),
        endpoint: "192.0.2.1:51820".parse().unwrap(),
        routed: Vec::new(),
        keepalive: None,
        resets_sessions: false,
        fixed_overlay: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    fn peer(name: &str, overlay: &str, k: u8) -> Peer {
        test_peer(name, overlay, k)
    }

    fn local() -> Local {
        Local {
            overlay: "10.0.0.1".parse().unwrap(),
            overlay_net: "10.0.0.0/8".parse().unwrap(),
            routed: vec!["192.168.1.0/24".parse().unwrap()],
            connected: vec![
                "192.168.8.0/24".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap(),
            ],
            accept: Vec::new(),
        }
    }

    fn net(s: &str) -> (IpAddr, u8) {
        let c: Cidr = s.parse().unwrap();
        (c.network(), c.prefix_len())
    }

    #[test]
    fn a_new_peer_gives_one_peer_one_route_and_hosts() {
        let mut mesh = Mesh::default();
        let r = mesh.accept(vec![peer("a", "10.0.0.2", 1)], &local());
        assert!(r.hosts && r.refused.is_empty());
        let configs = mesh.peer_configs();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].public_key, key(1));
        assert_eq!(configs[0].allowed_ips, vec![net("10.0.0.2/32")]);
        assert_eq!(mesh.routes(), vec![net("10.0.0.2/32")]);
    }

    #[test]
    fn unchanged_members_leave_hosts_alone() {
        let mut mesh = Mesh::default();
        let all = vec![peer("a", "10.0.0.2", 1), peer("b", "10.0.0.3", 2)];
        mesh.accept(all.clone(), &local());
        assert!(!mesh.accept(all, &local()).hosts);
        // A new key does not change the hosts lines either.
        assert!(
            !mesh
                .accept(
                    vec![peer("a", "10.0.0.2", 7), peer("b", "10.0.0.3", 2)],
                    &local()
                )
                .hosts
        );
        assert!(mesh.accept(vec![peer("a", "10.0.0.4", 7)], &local()).hosts);
    }

    #[test]
    fn collisions_go_to_the_first_name_whatever_the_order() {
        for order in [["a", "b"], ["b", "a"]] {
            let mut mesh = Mesh::default();
            let want = order
                .iter()
                .map(|n| peer(n, "10.0.0.2", n.as_bytes()[0]))
                .collect();
            let r = mesh.accept(want, &local());
            assert_eq!(
                mesh.hosts_entries(),
                vec![("10.0.0.2".parse().unwrap(), "a".into())]
            );
            assert_eq!(
                r.refused,
                vec![(
                    "b".into(),
                    Refused::Overlay {
                        addr: "10.0.0.2".parse().unwrap(),
                        holder: "a".into()
                    }
                )]
            );
        }
    }

    #[test]
    fn our_own_address_and_a_taken_key_are_refused() {
        let mut mesh = Mesh::default();
        let r = mesh.accept(
            vec![
                peer("a", "10.0.0.2", 1),
                peer("c", "10.0.0.1", 3),
                peer("d", "10.0.0.4", 1),
            ],
            &local(),
        );
        assert_eq!(
            r.refused,
            vec![
                (
                    "c".into(),
                    Refused::Overlay {
                        addr: "10.0.0.1".parse().unwrap(),
                        holder: "this node".into()
                    }
                ),
                ("d".into(), Refused::Key { holder: "a".into() }),
            ]
        );
        assert_eq!(mesh.peers().count(), 1);
    }

    #[test]
    fn when_the_holder_leaves_the_refused_member_gets_in() {
        let mut mesh = Mesh::default();
        mesh.accept(
            vec![peer("a", "10.0.0.2", 1), peer("b", "10.0.0.2", 2)],
            &local(),
        );
        let r = mesh.accept(vec![peer("b", "10.0.0.2", 2)], &local());
        assert!(r.refused.is_empty() && r.hosts);
        assert_eq!(mesh.peer_configs()[0].public_key, key(2));
        assert_eq!(mesh.routes(), vec![net("10.0.0.2/32")]);
    }

    #[test]
    fn routed_networks_follow_the_peer() {
        let mut mesh = Mesh::default();
        let mut p = peer("r", "10.0.0.5", 5);
        p.routed = vec!["192.168.10.0/24".parse().unwrap()];
        mesh.accept(vec![p.clone()], &local());
        assert_eq!(
            mesh.routes(),
            vec![net("10.0.0.5/32"), net("192.168.10.0/24")]
        );
        assert_eq!(mesh.peer_configs()[0].allowed_ips.len(), 2);
        p.routed = vec!["192.168.20.0/24".parse().unwrap()];
        assert!(!mesh.accept(vec![p], &local()).hosts);
        assert_eq!(
            mesh.routes(),
            vec![net("10.0.0.5/32"), net("192.168.20.0/24")]
        );
    }

    fn holders(refused: &[(String, Refused)]) -> Vec<String> {
        refused
            .iter()
            .map(|(n, why)| {
                assert_eq!(n, "b");
                match why {
                    Refused::Routed { holder, .. } => holder.clone(),
                    Refused::Unsafe { why, .. } => why.clone(),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn overlapping_routed_networks_are_refused_but_the_peer_stays() {
        let mut mesh = Mesh::default();
        let mut a = peer("a", "10.0.0.2", 1);
        a.routed = vec!["192.168.10.0/24".parse().unwrap()];
        let mut b = peer("b", "10.0.0.3", 2);
        b.routed = vec![
            "192.168.10.128/25".parse().unwrap(),
            "192.168.1.0/24".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
            "172.16.0.0/16".parse().unwrap(),
        ];
        let r = mesh.accept(vec![b, a], &local());
        assert_eq!(
            holders(&r.refused),
            vec!["a", "this node", "the overlay network"]
        );
        assert_eq!(
            mesh.get("b").unwrap().routed,
            vec!["172.16.0.0/16".parse().unwrap()]
        );
        assert_eq!(mesh.peers().count(), 2);
    }

    #[test]
    fn device_host_routes_inside_the_overlay_pass_unless_an_address_is_held() {
        let mut mesh = Mesh::default();
        let mut b = peer("b", "10.0.0.2", 1);
        b.routed = ["10.7.7.7/32", "10.0.0.3/32", "10.0.0.1/32", "10.8.0.0/16"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let r = mesh.accept(vec![b, peer("a", "10.0.0.3", 2)], &local());
        assert_eq!(
            mesh.get("b").unwrap().routed,
            vec!["10.7.7.7/32".parse().unwrap()]
        );
        assert_eq!(holders(&r.refused), vec!["the overlay network"; 3]);
        assert!(mesh.routes().contains(&net("10.7.7.7/32")));
    }

    #[test]
    fn routed_networks_that_would_take_over_our_routing_are_refused() {
        let mut mesh = Mesh::default();
        let mut a = peer("a", "10.0.0.2", 1);
        a.endpoint = "198.51.100.7:51820".parse().unwrap();
        let mut b = peer("b", "10.0.0.3", 2);
        b.routed = vec![
            "0.0.0.0/0".parse().unwrap(),
            "192.168.8.0/24".parse().unwrap(),
            "192.0.2.128/25".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
            "172.20.0.0/16".parse().unwrap(),
        ];
        let r = mesh.accept(vec![a.clone(), b.clone()], &local());
        assert_eq!(
            holders(&r.refused),
            vec![
                "the default route",
                "this node's connected network 192.168.8.0/24",
                "this node's connected network 192.0.2.0/24",
                "the underlay address 198.51.100.7 of a",
            ]
        );
        assert_eq!(
            mesh.get("b").unwrap().routed,
            vec!["172.20.0.0/16".parse().unwrap()]
        );
        // Opted in: routed, each net as listed.
        let mut opted = local();
        opted.accept = vec![
            "192.168.8.0/24".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ];
        b.routed = vec![
            "192.168.8.0/24".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ];
        let r = mesh.accept(vec![a.clone(), b.clone()], &opted);
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        assert_eq!(mesh.get("b").unwrap().routed.len(), 2);
        // A wider net than the one accepted is still refused.
        b.routed = vec!["192.168.0.0/16".parse().unwrap()];
        assert_eq!(
            mesh.accept(vec![a.clone(), b.clone()], &opted)
                .refused
                .len(),
            1
        );
        // The default route also covers the overlay: never routed, accepted or not.
        opted.accept = vec!["0.0.0.0/0".parse().unwrap()];
        b.routed = vec!["0.0.0.0/0".parse().unwrap()];
        assert_eq!(
            holders(&mesh.accept(vec![a, b], &opted).refused),
            vec!["the overlay network"]
        );
    }

    #[test]
    fn session_resets_touch_only_peers_that_drop_sessions() {
        let mut mesh = Mesh::default();
        let mut go = peer("go", "10.0.0.2", 1);
        go.resets_sessions = true;
        mesh.accept(vec![go, peer("rust", "10.0.0.3", 2)], &local());
        let resets = mesh.session_resets();
        let keepalives: Vec<Option<u16>> = resets
            .iter()
            .map(|c| match c {
                PeerChange::Upsert(p) => {
                    assert_eq!(p.public_key, key(1));
                    assert_eq!(p.allowed_ips, vec![net("10.0.0.2/32")]);
                    p.persistent_keepalive
                }
                PeerChange::Remove(k) => {
                    assert_eq!(*k, key(1));
                    None
                }
            })
            .collect();
        assert_eq!(resets[0], PeerChange::Remove(key(1)));
        // Re-added with a keepalive turned on (WireGuard then starts a handshake at once), then
        // turned off again as configured.
        assert_eq!(keepalives[1..], [Some(HANDSHAKE_KICK), None]);
    }

    #[test]
    fn a_session_reset_keeps_a_configured_keepalive_which_kicks_by_itself() {
        let mut mesh = Mesh::default();
        let mut go = peer("go", "10.0.0.2", 1);
        go.resets_sessions = true;
        go.keepalive = Some(25);
        mesh.accept(vec![go.clone()], &local());
        assert_eq!(
            mesh.session_resets(),
            vec![PeerChange::Remove(key(1)), PeerChange::Upsert(go.config())]
        );
    }

    #[test]
    fn a_hand_set_overlay_wins_over_a_derived_one_whatever_the_names() {
        let mut mesh = Mesh::default();
        let mut fixed = peer("zz", "10.0.0.2", 2);
        fixed.fixed_overlay = true;
        let r = mesh.accept(vec![peer("aa", "10.0.0.2", 1), fixed], &local());
        assert_eq!(
            mesh.hosts_entries(),
            vec![("10.0.0.2".parse().unwrap(), "zz".into())]
        );
        assert_eq!(
            r.refused,
            vec![(
                "aa".into(),
                Refused::Overlay {
                    addr: "10.0.0.2".parse().unwrap(),
                    holder: "zz".into()
                }
            )]
        );
    }
}
