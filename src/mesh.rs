//! The mesh as the agent wants it: one entry per remote member, and the minimal changes
//! (WireGuard peers, routes, hosts lines) that move the applied configuration to it.
//!
//! Pure bookkeeping: the agent applies the returned `Changes` through the backends.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::wireguard::{Key, PeerChange, PeerConfig};

/// Everything the agent configures for one remote member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub overlay: IpAddr,
    pub public_key: Key,
    pub endpoint: SocketAddr,
    /// Extra networks routed through this peer (besides its overlay address).
    pub routed: Vec<(IpAddr, u8)>,
    pub keepalive: Option<u16>,
}

impl Peer {
    fn allowed_ips(&self) -> Vec<(IpAddr, u8)> {
        let mut ips = vec![(self.overlay, host_prefix(self.overlay))];
        ips.extend(self.routed.iter().copied());
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

/// What to apply to move from the old mesh to the new one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub wireguard: Vec<PeerChange>,
    pub routes_add: Vec<(IpAddr, u8)>,
    pub routes_del: Vec<(IpAddr, u8)>,
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

/// Why a peer was not admitted to the mesh.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another member (or we) already holds this overlay address.
    OverlayTaken { by: String },
    /// Another member already advertises this WireGuard key.
    KeyTaken { by: String },
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

    /// The owner of an overlay address among the peers, if any.
    fn holder_of(&self, overlay: IpAddr, except: &str) -> Option<&Peer> {
        self.peers
            .values()
            .find(|p| p.name != except && p.overlay == overlay)
    }

    /// Add a member or change what it advertises. `local_overlay` is our own address, which no
    /// peer may take. A refused peer leaves the mesh unchanged (its old entry, if any, is kept).
    pub fn upsert(&mut self, peer: Peer, local_overlay: IpAddr) -> Result<Changes, Refused> {
        if peer.overlay == local_overlay {
            return Err(Refused::OverlayTaken {
                by: "this node".into(),
            });
        }
        if let Some(other) = self.holder_of(peer.overlay, &peer.name) {
            return Err(Refused::OverlayTaken {
                by: other.name.clone(),
            });
        }
        if let Some(other) = self
            .peers
            .values()
            .find(|p| p.name != peer.name && p.public_key == peer.public_key)
        {
            return Err(Refused::KeyTaken {
                by: other.name.clone(),
            });
        }
        let mut changes = Changes::default();
        match self.peers.get(&peer.name) {
            Some(old) if *old == peer => return Ok(changes),
            Some(old) => {
                if old.public_key != peer.public_key {
                    changes.wireguard.push(PeerChange::Remove(old.public_key));
                }
                let (old_nets, new_nets) = (old.allowed_ips(), peer.allowed_ips());
                changes.routes_del = minus(&old_nets, &new_nets);
                changes.routes_add = minus(&new_nets, &old_nets);
                changes.hosts = old.overlay != peer.overlay;
            }
            None => {
                changes.routes_add = peer.allowed_ips();
                changes.hosts = true;
            }
        }
        changes.wireguard.push(PeerChange::Upsert(peer.config()));
        self.peers.insert(peer.name.clone(), peer);
        Ok(changes)
    }

    /// Drop a member that died or left.
    pub fn remove(&mut self, name: &str) -> Changes {
        match self.peers.remove(name) {
            None => Changes::default(),
            Some(old) => Changes {
                wireguard: vec![PeerChange::Remove(old.public_key)],
                routes_add: Vec::new(),
                routes_del: old.allowed_ips(),
                hosts: true,
            },
        }
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
        }
    }

    const LOCAL: &str = "10.0.0.1";

    fn local() -> IpAddr {
        LOCAL.parse().unwrap()
    }

    #[test]
    fn new_peer_adds_one_peer_one_route_and_hosts() {
        let mut mesh = Mesh::default();
        let c = mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        assert_eq!(c.wireguard.len(), 1);
        assert!(
            matches!(&c.wireguard[0], PeerChange::Upsert(p) if p.public_key == key(1)
            && p.allowed_ips == vec![("10.0.0.2".parse().unwrap(), 32)])
        );
        assert_eq!(c.routes_add, vec![("10.0.0.2".parse().unwrap(), 32)]);
        assert!(c.routes_del.is_empty());
        assert!(c.hosts);
    }

    #[test]
    fn unchanged_peer_changes_nothing() {
        let mut mesh = Mesh::default();
        mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        let c = mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn new_key_replaces_the_old_peer_without_touching_routes() {
        let mut mesh = Mesh::default();
        mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        let c = mesh.upsert(peer("a", "10.0.0.2", 2), local()).unwrap();
        assert_eq!(c.wireguard.len(), 2);
        assert_eq!(c.wireguard[0], PeerChange::Remove(key(1)));
        assert!(matches!(&c.wireguard[1], PeerChange::Upsert(p) if p.public_key == key(2)));
        assert!(c.routes_add.is_empty() && c.routes_del.is_empty() && !c.hosts);
    }

    #[test]
    fn moved_overlay_swaps_route_and_hosts() {
        let mut mesh = Mesh::default();
        mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        let c = mesh.upsert(peer("a", "10.0.0.3", 1), local()).unwrap();
        assert_eq!(c.routes_del, vec![("10.0.0.2".parse().unwrap(), 32)]);
        assert_eq!(c.routes_add, vec![("10.0.0.3".parse().unwrap(), 32)]);
        assert!(c.hosts);
    }

    #[test]
    fn remove_drops_peer_route_and_hosts_line() {
        let mut mesh = Mesh::default();
        mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        let c = mesh.remove("a");
        assert_eq!(c.wireguard, vec![PeerChange::Remove(key(1))]);
        assert_eq!(c.routes_del, vec![("10.0.0.2".parse().unwrap(), 32)]);
        assert!(c.hosts);
        assert!(mesh.hosts_entries().is_empty());
        assert!(mesh.remove("a").is_empty());
    }

    #[test]
    fn colliding_overlay_is_refused_and_keeps_the_holder() {
        let mut mesh = Mesh::default();
        mesh.upsert(peer("a", "10.0.0.2", 1), local()).unwrap();
        assert_eq!(
            mesh.upsert(peer("b", "10.0.0.2", 2), local()),
            Err(Refused::OverlayTaken { by: "a".into() })
        );
        assert_eq!(
            mesh.upsert(peer("c", LOCAL, 3), local()),
            Err(Refused::OverlayTaken {
                by: "this node".into()
            })
        );
        assert_eq!(
            mesh.upsert(peer("d", "10.0.0.4", 1), local()),
            Err(Refused::KeyTaken { by: "a".into() })
        );
        assert_eq!(
            mesh.hosts_entries(),
            vec![("10.0.0.2".parse().unwrap(), "a".to_string())]
        );
    }

    #[test]
    fn routed_networks_follow_the_peer() {
        let mut mesh = Mesh::default();
        let mut p = peer("r", "10.0.0.5", 5);
        p.routed = vec![("192.168.10.0".parse().unwrap(), 24)];
        let c = mesh.upsert(p.clone(), local()).unwrap();
        assert_eq!(c.routes_add.len(), 2);
        p.routed = vec![("192.168.20.0".parse().unwrap(), 24)];
        let c = mesh.upsert(p, local()).unwrap();
        assert_eq!(c.routes_del, vec![("192.168.10.0".parse().unwrap(), 24)]);
        assert_eq!(c.routes_add, vec![("192.168.20.0".parse().unwrap(), 24)]);
        assert!(!c.hosts);
    }
}
