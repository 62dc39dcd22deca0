//! The mesh as the agent wants it: one entry per remote member, and the minimal changes
//! (WireGuard peers, routes, hosts lines) that move the applied configuration there.
//!
//! The agent hands `reconcile` every usable member each time membership changes; conflicts are
//! settled by name order, so every node settles them the same way whatever order events came in.
//! Pure bookkeeping: the agent applies the returned `Changes` through the backends.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::overlay::Cidr;
use crate::wireguard::{Key, PeerChange, PeerConfig};

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
    fn allowed_ips(&self) -> Vec<(IpAddr, u8)> {
        let mut ips = vec![(self.overlay, host_prefix(self.overlay))];
        ips.extend(self.routed.iter().map(|n| (n.network(), n.prefix_len())));
        ips
    }

    fn config(&self) -> PeerConfig {
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
}

/// What to apply to move from the old mesh to the new one, in this order: WireGuard changes
/// (removals first), route removals, route additions, then the hosts file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub wireguard: Vec<PeerChange>,
    pub routes_del: Vec<(IpAddr, u8)>,
    pub routes_add: Vec<(IpAddr, u8)>,
    /// The set of (address, name) pairs changed: rewrite the hosts file.
    pub hosts: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.wireguard.is_empty()
            && self.routes_add.is_empty()
            && self.routes_del.is_empty()
            && !self.hosts
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
        }
    }
}

/// The result of one reconcile.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub changes: Changes,
    /// Every refused claim, by member name (all of them, not just new ones).
    pub refused: Vec<(String, Refused)>,
}

/// The applied mesh, keyed by member name.
#[derive(Debug, Default)]
pub struct Mesh {
    peers: BTreeMap<String, Peer>,
}

impl Mesh {
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn get(&self, name: &str) -> Option<&Peer> {
        self.peers.get(name)
    }

    /// Make the applied mesh hold exactly the acceptable members of `want`. Conflicts go to a
    /// hand-set overlay address first, then to the member whose name sorts first; this node
    /// always keeps what it holds.
    pub fn reconcile(&mut self, mut want: Vec<Peer>, local: &Local) -> Reconciled {
        want.sort_by(|a, b| a.name.cmp(&b.name));
        want.dedup_by(|a, b| a.name == b.name);
        // Stable: names stay in order within each group.
        want.sort_by_key(|p| !p.fixed_overlay);
        let mut refused = Vec::new();
        let mut accepted: BTreeMap<String, Peer> = BTreeMap::new();
        for mut peer in want {
            let holder = if peer.overlay == local.overlay {
                Some("this node".to_string())
            } else {
                accepted
                    .values()
                    .find(|p| p.overlay == peer.overlay)
                    .map(|p| p.name.clone())
            };
            if let Some(holder) = holder {
                let addr = peer.overlay;
                refused.push((peer.name, Refused::Overlay { addr, holder }));
                continue;
            }
            if let Some(p) = accepted.values().find(|p| p.public_key == peer.public_key) {
                let holder = p.name.clone();
                refused.push((peer.name, Refused::Key { holder }));
                continue;
            }
            let mut routed = Vec::new();
            for net in std::mem::take(&mut peer.routed) {
                let holder = if net.overlaps(&local.overlay_net) {
                    Some("the overlay network".to_string())
                } else if local.routed.iter().any(|n| n.overlaps(&net)) {
                    Some("this node".to_string())
                } else if let Some(p) = accepted
                    .values()
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
            accepted.insert(peer.name.clone(), peer);
        }
        let changes = self.diff(&accepted);
        self.peers = accepted;
        Reconciled { changes, refused }
    }

    fn diff(&self, new: &BTreeMap<String, Peer>) -> Changes {
        let mut c = Changes::default();
        let mut upserts = Vec::new();
        for (name, old) in &self.peers {
            match new.get(name) {
                None => {
                    c.wireguard.push(PeerChange::Remove(old.public_key));
                    c.routes_del.extend(old.allowed_ips());
                    c.hosts = true;
                }
                Some(p) if p.public_key != old.public_key => {
                    c.wireguard.push(PeerChange::Remove(old.public_key));
                }
                Some(_) => {}
            }
        }
        for (name, peer) in new {
            let old = self.peers.get(name);
            if old == Some(peer) {
                continue;
            }
            let old_ips = old.map(Peer::allowed_ips).unwrap_or_default();
            let new_ips = peer.allowed_ips();
            c.routes_del.extend(minus(&old_ips, &new_ips));
            c.routes_add.extend(minus(&new_ips, &old_ips));
            c.hosts |= old.is_none_or(|o| o.overlay != peer.overlay);
            upserts.push(PeerChange::Upsert(peer.config()));
        }
        // A route that moved from one peer to another is deleted and added again, in that order.
        c.wireguard.extend(upserts);
        c
    }

    /// Remove and re-add every peer that drops its sessions at membership events, so that the
    /// next packet starts a new handshake instead of using a session the peer has forgotten
    /// (which WireGuard would only notice after 15 s of silence).
    pub fn session_resets(&self) -> Vec<PeerChange> {
        self.peers
            .values()
            .filter(|p| p.resets_sessions)
            .flat_map(|p| {
                [
                    PeerChange::Remove(p.public_key),
                    PeerChange::Upsert(p.config()),
                ]
            })
            .collect()
    }

    /// The hosts entries for every peer, sorted by name.
    pub fn hosts_entries(&self) -> Vec<(IpAddr, String)> {
        self.peers
            .values()
            .map(|p| (p.overlay, p.name.clone()))
            .collect()
    }
}

fn minus(a: &[(IpAddr, u8)], b: &[(IpAddr, u8)]) -> Vec<(IpAddr, u8)> {
    a.iter().filter(|n| !b.contains(n)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    fn peer(name: &str, overlay: &str, k: u8) -> Peer {
        Peer {
            name: name.into(),
            overlay: overlay.parse().unwrap(),
            public_key: key(k),
            endpoint: "192.0.2.1:51820".parse().unwrap(),
            routed: Vec::new(),
            keepalive: None,
            resets_sessions: false,
            fixed_overlay: false,
        }
    }

    fn local() -> Local {
        Local {
            overlay: "10.0.0.1".parse().unwrap(),
            overlay_net: "10.0.0.0/8".parse().unwrap(),
            routed: vec!["192.168.1.0/24".parse().unwrap()],
        }
    }

    fn net(s: &str) -> (IpAddr, u8) {
        let c: Cidr = s.parse().unwrap();
        (c.network(), c.prefix_len())
    }

    #[test]
    fn new_peer_adds_one_peer_one_route_and_hosts() {
        let mut mesh = Mesh::default();
        let r = mesh.reconcile(vec![peer("a", "10.0.0.2", 1)], &local());
        let c = r.changes;
        assert_eq!(c.wireguard.len(), 1);
        assert!(
            matches!(&c.wireguard[0], PeerChange::Upsert(p) if p.public_key == key(1)
            && p.allowed_ips == vec![net("10.0.0.2/32")])
        );
        assert_eq!(c.routes_add, vec![net("10.0.0.2/32")]);
        assert!(c.routes_del.is_empty());
        assert!(c.hosts);
        assert!(r.refused.is_empty());
    }

    #[test]
    fn unchanged_members_change_nothing() {
        let mut mesh = Mesh::default();
        let all = vec![peer("a", "10.0.0.2", 1), peer("b", "10.0.0.3", 2)];
        mesh.reconcile(all.clone(), &local());
        let r = mesh.reconcile(all, &local());
        assert!(r.changes.is_empty(), "{:?}", r.changes);
    }

    #[test]
    fn one_join_among_many_is_one_upsert() {
        let mut mesh = Mesh::default();
        let mut all: Vec<Peer> = (2..50)
            .map(|i| peer(&format!("n{i}"), &format!("10.0.0.{i}"), i))
            .collect();
        mesh.reconcile(all.clone(), &local());
        all.push(peer("new", "10.0.0.99", 99));
        let c = mesh.reconcile(all, &local()).changes;
        assert_eq!(c.wireguard.len(), 1);
        assert_eq!(c.routes_add, vec![net("10.0.0.99/32")]);
    }

    #[test]
    fn new_key_replaces_the_old_peer_without_touching_routes() {
        let mut mesh = Mesh::default();
        mesh.reconcile(vec![peer("a", "10.0.0.2", 1)], &local());
        let c = mesh
            .reconcile(vec![peer("a", "10.0.0.2", 2)], &local())
            .changes;
        assert_eq!(c.wireguard.len(), 2);
        assert_eq!(c.wireguard[0], PeerChange::Remove(key(1)));
        assert!(matches!(&c.wireguard[1], PeerChange::Upsert(p) if p.public_key == key(2)));
        assert!(c.routes_add.is_empty() && c.routes_del.is_empty() && !c.hosts);
    }

    #[test]
    fn moved_overlay_swaps_route_and_hosts() {
        let mut mesh = Mesh::default();
        mesh.reconcile(vec![peer("a", "10.0.0.2", 1)], &local());
        let c = mesh
            .reconcile(vec![peer("a", "10.0.0.3", 1)], &local())
            .changes;
        assert_eq!(c.routes_del, vec![net("10.0.0.2/32")]);
        assert_eq!(c.routes_add, vec![net("10.0.0.3/32")]);
        assert!(c.hosts);
    }

    #[test]
    fn a_member_gone_drops_peer_route_and_hosts_line() {
        let mut mesh = Mesh::default();
        mesh.reconcile(vec![peer("a", "10.0.0.2", 1)], &local());
        let c = mesh.reconcile(Vec::new(), &local()).changes;
        assert_eq!(c.wireguard, vec![PeerChange::Remove(key(1))]);
        assert_eq!(c.routes_del, vec![net("10.0.0.2/32")]);
        assert!(c.hosts);
        assert!(mesh.hosts_entries().is_empty());
        assert!(mesh.reconcile(Vec::new(), &local()).changes.is_empty());
    }

    #[test]
    fn collisions_go_to_the_first_name_whatever_the_order() {
        for order in [["a", "b"], ["b", "a"]] {
            let mut mesh = Mesh::default();
            let want = order
                .iter()
                .map(|n| peer(n, "10.0.0.2", n.as_bytes()[0]))
                .collect();
            let r = mesh.reconcile(want, &local());
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
        let r = mesh.reconcile(
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
        mesh.reconcile(
            vec![peer("a", "10.0.0.2", 1), peer("b", "10.0.0.2", 2)],
            &local(),
        );
        let r = mesh.reconcile(vec![peer("b", "10.0.0.2", 2)], &local());
        assert!(r.refused.is_empty());
        let c = r.changes;
        assert_eq!(c.wireguard[0], PeerChange::Remove(key(1)));
        assert!(matches!(&c.wireguard[1], PeerChange::Upsert(p) if p.public_key == key(2)));
        // The route stays: deleted for a, added for b, in that order.
        assert_eq!(c.routes_del, vec![net("10.0.0.2/32")]);
        assert_eq!(c.routes_add, vec![net("10.0.0.2/32")]);
        assert!(c.hosts);
    }

    #[test]
    fn routed_networks_follow_the_peer() {
        let mut mesh = Mesh::default();
        let mut p = peer("r", "10.0.0.5", 5);
        p.routed = vec!["192.168.10.0/24".parse().unwrap()];
        let c = mesh.reconcile(vec![p.clone()], &local()).changes;
        assert_eq!(
            c.routes_add,
            vec![net("10.0.0.5/32"), net("192.168.10.0/24")]
        );
        assert!(matches!(&c.wireguard[0], PeerChange::Upsert(cfg) if cfg.allowed_ips.len() == 2));
        p.routed = vec!["192.168.20.0/24".parse().unwrap()];
        let c = mesh.reconcile(vec![p], &local()).changes;
        assert_eq!(c.routes_del, vec![net("192.168.10.0/24")]);
        assert_eq!(c.routes_add, vec![net("192.168.20.0/24")]);
        assert!(!c.hosts);
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
        let r = mesh.reconcile(vec![b, a], &local());
        let holders: Vec<&str> = r
            .refused
            .iter()
            .map(|(n, why)| {
                assert_eq!(n, "b");
                match why {
                    Refused::Routed { holder, .. } => holder.as_str(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(holders, vec!["a", "this node", "the overlay network"]);
        assert_eq!(
            mesh.get("b").unwrap().routed,
            vec!["172.16.0.0/16".parse().unwrap()]
        );
        assert_eq!(mesh.peers().count(), 2);
    }

    #[test]
    fn session_resets_touch_only_peers_that_drop_sessions() {
        let mut mesh = Mesh::default();
        let mut go = peer("go", "10.0.0.2", 1);
        go.resets_sessions = true;
        mesh.reconcile(vec![go, peer("rust", "10.0.0.3", 2)], &local());
        let resets = mesh.session_resets();
        assert_eq!(resets.len(), 2);
        assert_eq!(resets[0], PeerChange::Remove(key(1)));
        assert!(
            matches!(&resets[1], PeerChange::Upsert(p) if p.public_key == key(1)
            && p.allowed_ips == vec![net("10.0.0.2/32")])
        );
    }

    #[test]
    fn a_hand_set_overlay_wins_over_a_derived_one_whatever_the_names() {
        let mut mesh = Mesh::default();
        let mut fixed = peer("zz", "10.0.0.2", 2);
        fixed.fixed_overlay = true;
        let r = mesh.reconcile(vec![peer("aa", "10.0.0.2", 1), fixed], &local());
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
