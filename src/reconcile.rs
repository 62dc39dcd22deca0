//! Desired against observed: the one pure function that says what to change on the system.
//!
//! Desired comes from membership (through the mesh); observed is read back from the kernel and
//! the WireGuard daemon. Nothing here remembers what was applied: a change counts once the
//! system shows it, so a failed change, a restarted wireguard-go, a recreated link or a hand
//! edit all show up as a difference at the next observation and are repaired.

use std::net::{IpAddr, SocketAddr};

use crate::wireguard::{Key, PeerChange, PeerConfig, PeerStatus};

/// A network as (address, prefix length), as the kernel and WireGuard list them.
pub type Net = (IpAddr, u8);

/// What the system should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub public_key: Key,
    pub listen_port: u16,
    pub mtu: u32,
    /// Our overlay address, as a host prefix.
    pub address: Net,
    pub peers: Vec<PeerConfig>,
    /// Routes through our link, installed with our protocol.
    pub routes: Vec<Net>,
}

/// The link as rtnetlink shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub mtu: u32,
    pub up: bool,
}

/// What the system looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// None: there is no link.
    pub link: Option<LinkState>,
    /// The device's key and port; None when it could not be read (no daemon yet).
    pub device: Option<(Option<Key>, u16)>,
    pub peers: Vec<PeerStatus>,
    /// Addresses on our link (link-local ones left out: the kernel manages those).
    pub addresses: Vec<Net>,
    /// Routes of our protocol through our link.
    pub routes: Vec<Net>,
}

/// One change, in the order they must be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the link (the kernel's WireGuard) or wait for the daemon to create it again.
    CreateLink,
    SetDevice,
    SetMtuUp,
    AddAddress(Net),
    DelAddress(Net),
    Peers(Vec<PeerChange>),
    DelRoute(Net),
    AddRoute(Net),
}

/// The changes from `observed` to `desired`. `endpoints` holds the endpoint we last set for
/// each peer: a peer's endpoint is set again only when we want another one or the device has
/// none, so WireGuard's roaming (a peer behind NAT that moved) is not undone.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    endpoints: &[(Key, SocketAddr)],
) -> Vec<Change> {
    let Some(link) = observed.link else {
        return vec![Change::CreateLink];
    };
    let Some((key, port)) = observed.device else {
        // No daemon to talk to yet: nothing else can be applied.
        return Vec::new();
    };
    let mut out = Vec::new();
    if key != Some(desired.public_key) || port != desired.listen_port {
        out.push(Change::SetDevice);
    }
    if link.mtu != desired.mtu || !link.up {
        out.push(Change::SetMtuUp);
    }
    if !observed.addresses.contains(&desired.address) {
        out.push(Change::AddAddress(desired.address));
    }
    out.extend(
        observed
            .addresses
            .iter()
            .filter(|a| **a != desired.address)
            .map(|a| Change::DelAddress(*a)),
    );
    let mut peers: Vec<PeerChange> = observed
        .peers
        .iter()
        .filter(|o| !desired.peers.iter().any(|d| d.public_key == o.public_key))
        .map(|o| PeerChange::Remove(o.public_key))
        .collect();
    for want in &desired.peers {
        let have = observed
            .peers
            .iter()
            .find(|o| o.public_key == want.public_key);
        let stale = match have {
            None => true,
            Some(have) => {
                !same_nets(&have.allowed_ips, &want.allowed_ips)
                    || have.persistent_keepalive != want.persistent_keepalive
                    || (want.endpoint.is_some() && have.endpoint.is_none())
                    || endpoint_set(endpoints, &want.public_key) != want.endpoint.as_ref()
            }
        };
        if stale {
            peers.push(PeerChange::Upsert(want.clone()));
        }
    }
    if !peers.is_empty() {
        out.push(Change::Peers(peers));
    }
    out.extend(
        observed
            .routes
            .iter()
            .filter(|r| !desired.routes.contains(r))
            .map(|r| Change::DelRoute(*r)),
    );
    out.extend(
        desired
            .routes
            .iter()
            .filter(|r| !observed.routes.contains(r))
            .map(|r| Change::AddRoute(*r)),
    );
    out
}

/// The endpoint we last set for a peer.
fn endpoint_set<'e>(endpoints: &'e [(Key, SocketAddr)], key: &Key) -> Option<&'e SocketAddr> {
    endpoints.iter().find(|(k, _)| k == key).map(|(_, e)| e)
}

fn same_nets(a: &[Net], b: &[Net]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        let (ip, len) = s.split_once('/').unwrap();
        (ip.parse().unwrap(), len.parse().unwrap())
    }

    fn peer(k: u8, overlay: &str) -> PeerConfig {
        PeerConfig {
            public_key: Key([k; 32]),
            endpoint: Some(format!("192.0.2.{k}:51820").parse().unwrap()),
            allowed_ips: vec![net(overlay)],
            persistent_keepalive: None,
        }
    }

    fn desired() -> Desired {
        Desired {
            public_key: Key([1; 32]),
            listen_port: 51820,
            mtu: 1420,
            address: net("10.0.0.1/32"),
            peers: vec![peer(2, "10.0.0.2/32"), peer(3, "10.0.0.3/32")],
            routes: vec![net("10.0.0.2/32"), net("10.0.0.3/32")],
        }
    }

    fn status(p: &PeerConfig) -> PeerStatus {
        PeerStatus {
            public_key: p.public_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips.clone(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            persistent_keepalive: p.persistent_keepalive,
        }
    }

    /// The system once everything desired is applied.
    fn applied(d: &Desired) -> (Observed, Vec<(Key, SocketAddr)>) {
        let observed = Observed {
            link: Some(LinkState {
                index: 7,
                mtu: d.mtu,
                up: true,
            }),
            device: Some((Some(d.public_key), d.listen_port)),
            peers: d.peers.iter().map(status).collect(),
            addresses: vec![d.address],
            routes: d.routes.clone(),
        };
        let endpoints = d
            .peers
            .iter()
            .filter_map(|p| Some((p.public_key, p.endpoint?)))
            .collect();
        (observed, endpoints)
    }

    #[test]
    fn nothing_to_do_when_the_system_matches() {
        let d = desired();
        let (o, e) = applied(&d);
        assert_eq!(plan(&d, &o, &e), Vec::new());
    }

    #[test]
    fn a_fresh_daemon_gets_everything_back() {
        // wireguard-go restarted: a new TUN link with no key, port, address, peers or routes.
        let d = desired();
        let (_, e) = applied(&d);
        let fresh = Observed {
            link: Some(LinkState {
                index: 9,
                mtu: 1420,
                up: false,
            }),
            device: Some((None, 0)),
            ..Observed::default()
        };
        let changes = plan(&d, &fresh, &e);
        assert_eq!(changes[0], Change::SetDevice);
        assert_eq!(changes[1], Change::SetMtuUp);
        assert_eq!(changes[2], Change::AddAddress(net("10.0.0.1/32")));
        assert_eq!(
            changes[3],
            Change::Peers(d.peers.iter().cloned().map(PeerChange::Upsert).collect())
        );
        assert_eq!(
            &changes[4..],
            &[
                Change::AddRoute(net("10.0.0.2/32")),
                Change::AddRoute(net("10.0.0.3/32"))
            ]
        );
    }

    #[test]
    fn a_missing_link_is_created_first_and_a_silent_daemon_waits() {
        let d = desired();
        assert_eq!(
            plan(&d, &Observed::default(), &[]),
            vec![Change::CreateLink]
        );
        let (mut o, e) = applied(&d);
        o.device = None;
        assert_eq!(plan(&d, &o, &e), Vec::new());
    }

    #[test]
    fn hand_edits_are_undone() {
        let d = desired();
        let (mut o, e) = applied(&d);
        // `wg set ... peer K remove`, a stranger peer, a route deleted, an extra address.
        o.peers.remove(0);
        o.peers.push(status(&peer(9, "10.0.0.9/32")));
        o.routes.remove(1);
        o.addresses.push(net("10.9.9.9/24"));
        assert_eq!(
            plan(&d, &o, &e),
            vec![
                Change::DelAddress(net("10.9.9.9/24")),
                Change::Peers(vec![
                    PeerChange::Remove(Key([9; 32])),
                    PeerChange::Upsert(d.peers[0].clone())
                ]),
                Change::AddRoute(net("10.0.0.3/32")),
            ]
        );
    }

    #[test]
    fn a_roamed_endpoint_is_kept_but_a_new_one_we_want_is_set() {
        let d = desired();
        let (mut o, mut e) = applied(&d);
        o.peers[0].endpoint = Some("198.51.100.7:40000".parse().unwrap());
        assert_eq!(plan(&d, &o, &e), Vec::new());
        // The member moved: membership gives another address than the one we set.
        e[0].1 = "192.0.2.99:51820".parse().unwrap();
        assert_eq!(
            plan(&d, &o, &e),
            vec![Change::Peers(vec![PeerChange::Upsert(d.peers[0].clone())])]
        );
    }

    #[test]
    fn allowed_ips_in_another_order_are_the_same() {
        let mut d = desired();
        d.peers[0].allowed_ips.push(net("192.168.5.0/24"));
        let (mut o, e) = applied(&d);
        o.peers[0].allowed_ips.reverse();
        assert_eq!(plan(&d, &o, &e), Vec::new());
        o.peers[0].allowed_ips.pop();
        assert_eq!(plan(&d, &o, &e).len(), 1);
    }
}
