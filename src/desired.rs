//! The desired mesh, computed from membership alone: our overlay address after the collision
//! policy, and one `Peer` per usable member. Pure; the agent announces and applies the result.

use std::net::{IpAddr, SocketAddr};

use crate::mesh::Peer;
use crate::meta::PeerMeta;
use crate::overlay::{self, Cidr, MoveReason};

/// A remote member that can be in the mesh.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// Its gossip address: the WireGuard endpoint is this IP and the WireGuard port.
    pub addr: SocketAddr,
    pub meta: PeerMeta,
}

/// What the policy decided about our own overlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collision {
    /// Our derived address is held by a member whose claim wins: move to `to`.
    Move { to: IpAddr, with: String },
    /// Our hand-set address is also advertised by `with`: one of the two must change by hand.
    HandSet { with: String },
}

/// Where our overlay address must be: it moves when another member holds it and wins (a
/// hand-set address wins over a derived one whatever the names; between two derived, or two
/// hand-set, addresses the name that sorts first wins). A hand-set address never moves.
pub fn collision(
    net: &Cidr,
    name: &str,
    current: IpAddr,
    hand_set: bool,
    members: &[Candidate],
) -> Option<Collision> {
    let others: Vec<(String, IpAddr)> = members
        .iter()
        .map(|m| (m.name.clone(), m.meta.overlay))
        .collect();
    let fixed_holder = members
        .iter()
        .find(|m| m.meta.overlay == current && m.meta.fixed_overlay)
        .map(|m| m.name.clone());
    let taken: Vec<IpAddr> = others.iter().map(|(_, ip)| *ip).collect();
    let mv = match fixed_holder {
        Some(with) if !hand_set => overlay::first_free(net, name, &taken).map(|to| overlay::Move {
            to,
            reason: MoveReason::Collision { with },
        }),
        _ => overlay::must_move(net, name, current, &others),
    }?;
    // Reserved addresses were avoided at start.
    let MoveReason::Collision { with } = mv.reason else {
        return None;
    };
    Some(if hand_set {
        Collision::HandSet { with }
    } else {
        Collision::Move { to: mv.to, with }
    })
}

/// The peers we want, one per candidate (conflicts between them are `Mesh::reconcile`'s).
pub fn peers(members: &[Candidate], wireguard_port: u16, keepalive: Option<u16>) -> Vec<Peer> {
    members
        .iter()
        .map(|m| Peer {
            name: m.name.clone(),
            overlay: m.meta.overlay,
            public_key: m.meta.public_key,
            endpoint: SocketAddr::new(m.addr.ip(), wireguard_port),
            routed: m.meta.routed.clone(),
            keepalive,
            resets_sessions: m.meta.resets_sessions,
            fixed_overlay: m.meta.fixed_overlay,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::Key;

    fn cand(name: &str, overlay: &str, fixed: bool) -> Candidate {
        Candidate {
            name: name.into(),
            addr: "192.0.2.9:7946".parse().unwrap(),
            meta: PeerMeta {
                overlay: overlay.parse().unwrap(),
                public_key: Key([name.len() as u8; 32]),
                routed: Vec::new(),
                resets_sessions: false,
                fixed_overlay: fixed,
            },
        }
    }

    fn net() -> Cidr {
        "10.0.0.0/8".parse().unwrap()
    }

    #[test]
    fn the_name_that_sorts_later_moves() {
        let me = overlay::derive(&net(), "node-b");
        let holder = [cand("node-a", &me.to_string(), false)];
        match collision(&net(), "node-b", me, false, &holder) {
            Some(Collision::Move { to, with }) => {
                assert_ne!(to, me);
                assert_eq!(with, "node-a");
            }
            other => panic!("{other:?}"),
        }
        let later = [cand("node-c", &me.to_string(), false)];
        assert_eq!(collision(&net(), "node-b", me, false, &later), None);
        assert_eq!(collision(&net(), "node-b", me, false, &[]), None);
    }

    #[test]
    fn a_hand_set_address_wins_and_never_moves() {
        let me = overlay::derive(&net(), "a");
        let fixed = [cand("z", &me.to_string(), true)];
        assert!(matches!(
            collision(&net(), "a", me, false, &fixed),
            Some(Collision::Move { .. })
        ));
        let derived = [cand("0", &me.to_string(), false)];
        assert_eq!(
            collision(&net(), "a", me, true, &derived),
            Some(Collision::HandSet { with: "0".into() })
        );
    }

    #[test]
    fn peers_take_the_wireguard_port_and_keepalive() {
        let p = peers(&[cand("a", "10.0.0.2", false)], 51820, Some(25));
        assert_eq!(p[0].endpoint, "192.0.2.9:51820".parse().unwrap());
        assert_eq!(p[0].keepalive, Some(25));
    }
}
