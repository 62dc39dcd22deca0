//! The userspace backend against a real wireguard-go, each daemon in a namespace of
//! its own, checked with `wg show dump`; then two such nodes ping over the tunnel.

mod common;

use std::net::IpAddr;

use common::{assert_device, prerequisites, unique, Netns};
use wesher::netlink::Netlink;
use wesher::wireguard::{Backend, DeviceConfig, PeerChange, PeerConfig, PrivateKey};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer(endpoint: &str, allowed: &[(&str, u8)], keepalive: Option<u16>) -> PeerConfig {
    PeerConfig {
        public_key: PrivateKey::generate().unwrap().public_key(),
        endpoint: Some(endpoint.parse().unwrap()),
        allowed_ips: allowed.iter().map(|(a, l)| (ip(a), *l)).collect(),
        persistent_keepalive: keepalive,
    }
}

#[test]
fn userspace_backend_sets_device_and_changes_peers_one_by_one() {
    if !prerequisites(&["ip", "wireguard-go", "wg"]) {
        return;
    }
    let ns = Netns::new();
    let ifname = unique("wgu");
    let _daemon = ns.wireguard_go(&ifname);
    let kind = ns.enter(|| {
        Netlink::open()
            .unwrap()
            .link(&ifname)
            .unwrap()
            .unwrap()
            .kind
    });
    assert_eq!(kind.as_deref(), Some("tun"));

    let mut wg = Backend::open(&ifname).unwrap();
    assert!(wg.is_userspace());
    let private = PrivateKey::generate().unwrap();
    let port = 51999;
    wg.set_device(&DeviceConfig {
        private_key: &private,
        listen_port: port,
    })
    .unwrap();
    let dump = || ns.run(&["wg", "show", &ifname, "dump"]);
    assert_device(&dump(), &private, port, &[], &wg.device().unwrap());

    let mut a = peer("192.0.2.10:51820", &[("10.5.0.2", 32)], None);
    let b = peer(
        "[2001:db8::2]:51820",
        &[("10.5.0.3", 32), ("fd05::3", 128)],
        Some(25),
    );
    wg.apply(&[PeerChange::Upsert(a.clone()), PeerChange::Upsert(b.clone())])
        .unwrap();
    assert_device(
        &dump(),
        &private,
        port,
        &[a.clone(), b.clone()],
        &wg.device().unwrap(),
    );

    // An update replaces the endpoint and the allowed IPs of that peer only.
    a.endpoint = Some("192.0.2.11:51821".parse().unwrap());
    a.allowed_ips = vec![(ip("10.5.0.2"), 32), (ip("10.6.0.0"), 16)];
    wg.apply(&[PeerChange::Upsert(a.clone())]).unwrap();
    assert_device(
        &dump(),
        &private,
        port,
        &[a.clone(), b.clone()],
        &wg.device().unwrap(),
    );

    wg.apply(&[PeerChange::Remove(b.public_key)]).unwrap();
    assert_device(&dump(), &private, port, &[a.clone()], &wg.device().unwrap());
    let peers = wg.peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].last_handshake, None);
    assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (0, 0));

    // Removing a peer that is not there is not an error for wireguard-go either.
    wg.apply(&[PeerChange::Remove(b.public_key)]).unwrap();
    // An empty change list sends nothing.
    wg.apply(&[]).unwrap();
}

#[test]
fn userspace_backend_reports_daemon_errors() {
    if !prerequisites(&["ip", "wireguard-go"]) {
        return;
    }
    let ns = Netns::new();
    let ifname = unique("wge");
    let _daemon = ns.wireguard_go(&ifname);
    let mut wg = Backend::open(&ifname).unwrap();
    let bad = PeerConfig {
        public_key: PrivateKey::generate().unwrap().public_key(),
        endpoint: None,
        // wireguard-go rejects a mask longer than the address.
        allowed_ips: vec![(ip("10.0.0.1"), 33)],
        persistent_keepalive: None,
    };
    let err = wg.apply(&[PeerChange::Upsert(bad)]).unwrap_err();
    assert_eq!(err.raw_errno(), Some(libc::EINVAL), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("changing peers of WireGuard device {ifname}: ")),
        "{err}"
    );
}

/// One node: a namespace, wireguard-go, the underlay address on a veth end.
struct Node {
    ns: Netns,
    ifname: String,
    underlay: &'static str,
    overlay: &'static str,
    key: PrivateKey,
}

#[test]
fn two_wireguard_go_nodes_configured_by_us_ping_over_the_tunnel() {
    if !prerequisites(&["ip", "wireguard-go", "ping"]) {
        return;
    }
    let nodes = [
        Node {
            ns: Netns::new(),
            ifname: unique("wgp"),
            underlay: "172.30.0.1",
            overlay: "10.44.0.1",
            key: PrivateKey::generate().unwrap(),
        },
        Node {
            ns: Netns::new(),
            ifname: unique("wgp"),
            underlay: "172.30.0.2",
            overlay: "10.44.0.2",
            key: PrivateKey::generate().unwrap(),
        },
    ];
    let [one, two] = &nodes;
    one.ns.run(&[
        "ip",
        "link",
        "add",
        "u0",
        "type",
        "veth",
        "peer",
        "name",
        "u1",
        "netns",
        &two.ns.name,
    ]);
    for (node, dev) in [(one, "u0"), (two, "u1")] {
        node.ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", node.underlay),
            "dev",
            dev,
        ]);
        node.ns.run(&["ip", "link", "set", dev, "up"]);
    }
    let daemons: Vec<_> = nodes.iter().map(|n| n.ns.wireguard_go(&n.ifname)).collect();

    let port = 51820;
    for (me, other) in [(one, two), (two, one)] {
        me.ns.enter(|| {
            let mut nl = Netlink::open().unwrap();
            let link = nl.create_wireguard(&me.ifname).unwrap(); // exists: reused
            assert_eq!(link.kind.as_deref(), Some("tun"));
            nl.set_mtu_up(link.index, 1420).unwrap();
            nl.add_address(link.index, ip(me.overlay), 32).unwrap();
            let mut wg = Backend::open(&me.ifname).unwrap();
            wg.set_device(&DeviceConfig {
                private_key: &me.key,
                listen_port: port,
            })
            .unwrap();
            wg.apply(&[PeerChange::Upsert(PeerConfig {
                public_key: other.key.public_key(),
                endpoint: Some(format!("{}:{port}", other.underlay).parse().unwrap()),
                allowed_ips: vec![(ip(other.overlay), 32)],
                persistent_keepalive: None,
            })])
            .unwrap();
            nl.add_route(link.index, ip(other.overlay), 32).unwrap();
        });
    }

    // The first ping may be spent on the handshake; a few tries, no timing asserted.
    let pinged = (0..5).any(|_| {
        one.ns
            .output(&["ping", "-c1", "-W2", two.overlay])
            .status
            .success()
    });
    assert!(
        pinged,
        "no ping from {} to {} over WireGuard",
        one.overlay, two.overlay
    );

    let peers = Backend::open(&one.ifname).unwrap().peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].public_key, two.key.public_key());
    assert!(peers[0].last_handshake.is_some());
    assert!(peers[0].rx_bytes > 0 && peers[0].tx_bytes > 0);
    drop(daemons);
}
