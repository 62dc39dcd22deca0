//! End-to-end tests, in network namespaces with wireguard-go, of what wesher does beyond Go
//! wesher: NAT (advertised address and port, keepalive), MTU, routed networks, split-brain
//! healing, overlay collisions and --overlay-addr, --node-name, `wesher status`, key rotation
//! and an IPv6 underlay. Every check is a ping by name or an exact look at `wg show dump`, the
//! routes, the link or the hosts lines.

mod beyond_support;
mod common;

use std::time::Duration;

use beyond_support::{
    allowed_ips, bridge, client, ns, ping_from_ns, set, start, wait_full_mesh, wait_log, wait_ping,
    wait_wg,
};
use common::netns::{
    assert_running, wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE,
    FAILURE_DETECTION,
};
use wesher::control::Status;
use wesher::overlay::{self, Cidr};

/// The key rotated to (bytes 200..232).
const NEW_CLUSTER_KEY: &str = "yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5uc=";
const STOP: Duration = Duration::from_secs(20);

fn pubkey(node: &Node) -> String {
    node.wg(DEFAULT_IFACE).unwrap().public_key
}

fn overlay_of(node: &Node) -> String {
    node.overlay_addr(DEFAULT_IFACE).unwrap()
}

/// The MTU of `node`'s WireGuard link and whether it is up, from `ip -o link`.
fn link_mtu(node: &Node) -> Result<(String, bool), String> {
    let link = node.exec("ip", &["-o", "link", "show", "dev", DEFAULT_IFACE]);
    if !link.success() {
        return Err(link.to_string());
    }
    let mtu = link
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1);
    Ok((mtu.unwrap_or("").to_string(), link.stdout.contains(",UP")))
}

#[test]
fn mtu_is_set_on_the_link_and_bounds_the_packets() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let mtu = ["--mtu", "1380"];
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &mtu),
        start(n2, CLUSTER_KEY, Some(&seed), &mtu),
    ];
    wait_ping(n2, "node1", &mut agents);
    for node in [n1, n2] {
        assert_eq!(link_mtu(node).unwrap(), ("1380".to_string(), true));
    }
    // 1352 bytes of ICMP payload + 28 of headers fill the link exactly; one more does not fit
    // and may not be fragmented.
    wait_for("a full-size ping", CONVERGE, || {
        let fits = n2.exec("ping", &["-c1", "-W1", "-M", "do", "-s", "1352", "node1"]);
        fits.success().then_some(()).ok_or(fits.to_string())
    });
    let too_big = n2.exec("ping", &["-c1", "-W2", "-M", "do", "-s", "1353", "node1"]);
    assert!(!too_big.success(), "{too_big}");
    assert!(
        format!("{}{}", too_big.stdout, too_big.stderr).contains("mtu=1380"),
        "{too_big}"
    );
}

#[test]
fn node_name_lets_two_hosts_with_one_hostname_mesh() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    for n in [n1, n2] {
        let out = n.exec("hostname", &["twin"]);
        assert!(out.success(), "{out}");
        assert_eq!(n.exec("hostname", &[]).stdout.trim(), "twin");
    }
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &["--node-name", "twin-a"]),
        start(n2, CLUSTER_KEY, Some(&seed), &["--node-name", "twin-b"]),
    ];
    wait_ping(n1, "twin-b", &mut agents);
    wait_ping(n2, "twin-a", &mut agents);
    let net: Cidr = "10.0.0.0/8".parse().unwrap();
    for (node, me, other) in [(n1, "twin-a", "twin-b"), (n2, "twin-b", "twin-a")] {
        assert_eq!(overlay_of(node), overlay::derive(&net, me).to_string());
        assert_eq!(
            node.managed_hosts(DEFAULT_IFACE),
            [(overlay::derive(&net, other).to_string(), other.to_string())]
        );
    }
}

/// Parses `wesher status --json` run in `node`.
fn status_json(node: &Node) -> Result<Status, String> {
    let out = client(node, &["status", "--json"]);
    if !out.success() {
        return Err(format!("wesher status --json in {}: {out}", node.name));
    }
    Status::from_json(&out.stdout)
        .ok_or_else(|| format!("unparsable status JSON: {:?}", out.stdout))
}

#[test]
fn status_lists_every_member_with_addresses_handshakes_and_bytes() {
    let Some(topo) = Topology::new(3) else { return };
    let nodes: Vec<&Node> = topo.nodes().iter().collect();
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = nodes[0].ip.to_string();
    let mut agents = vec![
        start(nodes[0], CLUSTER_KEY, None, &[]),
        start(nodes[1], CLUSTER_KEY, Some(&seed), &[]),
        start(nodes[2], CLUSTER_KEY, Some(&seed), &[]),
    ];
    wait_full_mesh(&nodes, &["node1", "node2", "node3"], &mut agents);
    let net: Cidr = "10.0.0.0/8".parse().unwrap();
    let keys: Vec<String> = nodes.iter().map(|n| pubkey(n)).collect();

    // Pings went both ways between node1 and each other node: both saw a handshake and bytes.
    let status = status_json(nodes[0]).unwrap();
    assert_eq!(status.interface, DEFAULT_IFACE);
    assert_eq!(status.node.name, "node1");
    assert_eq!(
        status.node.overlay,
        overlay::derive(&net, "node1").to_string()
    );
    assert_eq!(status.node.underlay, "10.99.0.1:7946");
    assert_eq!(status.node.public_key, keys[0]);
    assert_eq!(status.node.state, "alive");
    let mut names: Vec<&str> = status.members.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["node2", "node3"], "{status:?}");
    for m in &status.members {
        let i: usize = m.name["node".len()..].parse().unwrap();
        assert_eq!(m.overlay, overlay::derive(&net, &m.name).to_string());
        assert_eq!(m.underlay, format!("10.99.0.{i}:7946"));
        assert_eq!(m.state, "alive");
        assert_eq!(m.public_key, keys[i - 1]);
        assert!(m.handshake_age_secs.is_some(), "no handshake: {m:?}");
        assert!(m.rx_bytes > 0 && m.tx_bytes > 0, "no traffic: {m:?}");
    }

    // The table for people: a header, then one line per member with the same facts.
    let text = client(nodes[0], &["status"]);
    assert!(text.success(), "{text}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", text.stdout);
    assert!(lines[0].starts_with("interface wgoverlay: node node1 overlay "));
    assert!(lines[1].starts_with("NAME"), "{}", lines[1]);
    for m in &status.members {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(m.name.as_str()))
            .unwrap_or_else(|| panic!("no line for {}: {}", m.name, text.stdout));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1..4], [&m.overlay, &m.underlay, "alive"], "{line}");
        assert!(line.contains("s ago"), "{line}");
    }

    // Only root may ask: the socket is 0600.
    let mode = nodes[0].exec("stat", &["-c", "%a %U", "/var/run/wesher/wgoverlay.sock"]);
    assert_eq!(mode.stdout.trim(), "600 root", "{mode}");

    // node3 leaves: node1 shows it as left, and asking node3's stopped agent fails clearly.
    let mut leaving = agents.pop().unwrap();
    assert_eq!(leaving.terminate(STOP).and_then(|s| s.code()), Some(0));
    wait_for("node1's status to show node3 left", CONVERGE, || {
        let s = status_json(nodes[0])?;
        match s.members.iter().find(|m| m.name == "node3") {
            Some(m) if m.state == "left" => Ok(()),
            other => Err(format!("node3 in node1's status: {other:?}")),
        }
    });
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = client(nodes[2], args);
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert!(
            out.stderr
                .starts_with("wesher: error: connecting to /var/run/wesher/wgoverlay.sock")
                && out.stderr.contains("is the agent running"),
            "{out}"
        );
    }
}

/// Two names that derive the same address in `net` (Go's FNV-1a scheme), the lower one first,
/// neither of them reserved.
fn colliding_names(net: &Cidr) -> (String, String) {
    let mut seen: Vec<(std::net::IpAddr, String)> = Vec::new();
    for i in 0.. {
        let name = format!("node-{i}");
        let ip = overlay::derive(net, &name);
        if overlay::is_reserved(net, ip) {
            continue;
        }
        if let Some((_, other)) = seen.iter().find(|(a, _)| *a == ip) {
            let (a, b) = if *other < name {
                (other.clone(), name)
            } else {
                (name, other.clone())
            };
            return (a, b);
        }
        seen.push((ip, name));
    }
    unreachable!()
}

#[test]
fn overlay_collision_moves_the_higher_name_and_overlay_addr_sets_one_by_hand() {
    let Some(topo) = Topology::new(3) else { return };
    let (n1, n2, n3) = (topo.node(1), topo.node(2), topo.node(3));
    let net: Cidr = "10.250.0.0/24".parse().unwrap();
    let (a, b) = colliding_names(&net);
    let shared = overlay::derive(&net, &a);
    assert_eq!(shared, overlay::derive(&net, &b));
    // Where b moves: its first free candidate (the same whether or not it knows node3 yet,
    // since node3's hand-set address is none of b's first candidates).
    let moved = overlay::first_free(&net, &b, &[shared]).unwrap();
    let manual = (1..=254u8)
        .map(|i| std::net::IpAddr::from([10, 250, 0, i]))
        .find(|ip| (0..8).all(|n| overlay::candidate(&net, &b, n) != *ip) && *ip != shared)
        .unwrap();
    let (shared, moved, manual) = (shared.to_string(), moved.to_string(), manual.to_string());

    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let net_arg = ["--overlay-net", "10.250.0.0/24"];
    let mut agents = vec![start(
        n1,
        CLUSTER_KEY,
        None,
        &[&net_arg[..], &["--node-name", &a]].concat(),
    )];
    wait_for("node1's overlay address", CONVERGE, || {
        n1.overlay_addr(DEFAULT_IFACE)
    });
    agents.push(start(
        n2,
        CLUSTER_KEY,
        Some(&seed),
        &[&net_arg[..], &["--node-name", &b]].concat(),
    ));
    agents.push(start(
        n3,
        CLUSTER_KEY,
        Some(&seed),
        &[&net_arg[..], &["--overlay-addr", &manual]].concat(),
    ));
    wait_full_mesh(&[n1, n2, n3], &[&a, &b, "node3"], &mut agents);

    // Both noticed: a refused b's claim on its address, b moved (loudly) to its next candidate.
    let refusal = wait_log(
        &agents[0],
        &[&format!(
            "member {b}: overlay address {shared} is already held by this node"
        )],
    );
    assert!(refusal.contains("ERROR"), "{refusal}");
    let mv = wait_log(
        &agents[1],
        &[&format!(
            "overlay address {shared} collides with member {a}, whose claim wins (set by hand, or its name sorts first); moving to {moved}"
        )],
    );
    assert!(mv.contains("ERROR"), "{mv}");

    assert_eq!(n1.addrs(DEFAULT_IFACE).unwrap(), [format!("{shared}/32")]);
    assert_eq!(n2.addrs(DEFAULT_IFACE).unwrap(), [format!("{moved}/32")]);
    assert_eq!(n3.addrs(DEFAULT_IFACE).unwrap(), [format!("{manual}/32")]);
    let keys = [pubkey(n1), pubkey(n2), pubkey(n3)];
    let ips = [&shared, &moved, &manual];
    for (i, node) in [n1, n2, n3].iter().enumerate() {
        let dump = node.wg(DEFAULT_IFACE).unwrap();
        assert_eq!(dump.peers.len(), 2, "{dump:?}");
        for j in (0..3).filter(|j| *j != i) {
            assert_eq!(
                allowed_ips(&dump, &keys[j]).unwrap(),
                set([format!("{}/32", ips[j])]),
                "{}'s peer {j}",
                node.name
            );
        }
    }
    let mut hosts = n3.managed_hosts(DEFAULT_IFACE);
    hosts.sort();
    let mut want = vec![(shared.clone(), a.clone()), (moved.clone(), b.clone())];
    want.sort();
    assert_eq!(hosts, want);
}

/// A hand-set address that another member derives by name: the hand-set one cannot move, so
/// the derived one should, whatever the name order.
#[test]
fn overlay_addr_set_by_hand_wins_over_a_derived_one() {
    let Some(topo) = Topology::new(3) else { return };
    let (n1, n2, n3) = (topo.node(1), topo.node(2), topo.node(3));
    let net: Cidr = "10.250.0.0/24".parse().unwrap();
    let taken = overlay::derive(&net, "node1");
    assert_ne!(taken, overlay::derive(&net, "node2"));
    let moved = overlay::first_free(&net, "node1", &[taken]).unwrap();
    let (taken, moved) = (taken.to_string(), moved.to_string());

    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let net_arg = ["--overlay-net", "10.250.0.0/24"];
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &net_arg),
        start(n2, CLUSTER_KEY, Some(&seed), &net_arg),
        start(
            n3,
            CLUSTER_KEY,
            Some(&seed),
            &[&net_arg[..], &["--overlay-addr", &taken]].concat(),
        ),
    ];
    wait_full_mesh(&[n1, n2, n3], &["node1", "node2", "node3"], &mut agents);
    assert_eq!(n1.addrs(DEFAULT_IFACE).unwrap(), [format!("{moved}/32")]);
    assert_eq!(n3.addrs(DEFAULT_IFACE).unwrap(), [format!("{taken}/32")]);
}

/// Turns on a forwarding switch under /proc/sys in a namespace (what `sysctl -w` does, without
/// needing procps).
fn forwarding(netns: &str, key: &str) {
    ns(netns, &["sh", "-c", &format!("echo 1 > /proc/sys/{key}")]);
}

#[test]
fn nat_advertised_address_and_port_with_keepalive() {
    if !common::prerequisites(&["nft"]) {
        return;
    }
    let Some(topo) = Topology::new(3) else { return };
    let (n1, n2, n3) = (topo.node(1), topo.node(2), topo.node(3));
    // The bridge namespace becomes node3's NAT router: node3 moves to a private network on its
    // port, and the router maps public 10.99.0.3 to it 1:1 (gossip from port 17946 to 7946).
    let router = bridge(&topo);
    for args in [
        &["ip", "link", "set", "p3", "nomaster"][..],
        &["ip", "addr", "add", "192.168.77.1/24", "dev", "p3"],
        &["ip", "addr", "add", "10.99.0.254/24", "dev", "br0"],
        &["ip", "addr", "add", "10.99.0.3/32", "dev", "br0"],
    ] {
        ns(router, args);
    }
    forwarding(router, "net/ipv4/ip_forward");
    let rules = "table ip nat {
        chain pre { type nat hook prerouting priority -100;
            ip daddr 10.99.0.3 tcp dport 17946 dnat to 192.168.77.2:7946
            ip daddr 10.99.0.3 udp dport 17946 dnat to 192.168.77.2:7946
            ip daddr 10.99.0.3 udp dport 51820 dnat to 192.168.77.2:51820
        }
        chain post { type nat hook postrouting priority 100;
            ip saddr 192.168.77.2 udp sport 7946 snat to 10.99.0.3:17946
            ip saddr 192.168.77.2 snat to 10.99.0.3
        }
    }";
    let rules_file = topo.node(1).dir().join("nat.nft");
    std::fs::write(&rules_file, rules).unwrap();
    ns(router, &["nft", "-f", rules_file.to_str().unwrap()]);
    for args in [
        &["ip", "addr", "flush", "dev", "eth0"][..],
        &["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"],
        &["ip", "route", "add", "default", "via", "192.168.77.1"],
    ] {
        let out = n3.exec(args[0], &args[1..]);
        assert!(out.success(), "{args:?}: {out}");
    }
    // node1 and node2 cannot reach node3's private address.
    assert!(n1.ping("192.168.77.2").is_err());

    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &[]),
        start(n2, CLUSTER_KEY, Some(&seed), &[]),
        start(
            n3,
            CLUSTER_KEY,
            Some(&seed),
            &[
                "--advertise-addr",
                "10.99.0.3",
                "--advertise-port",
                "17946",
                "--persistent-keepalive",
                "25",
            ],
        ),
    ];
    wait_full_mesh(&[n1, n2, n3], &["node1", "node2", "node3"], &mut agents);

    let keys = [pubkey(n1), pubkey(n2), pubkey(n3)];
    // node3 reaches the others directly and keeps its NAT mapping alive towards each of them.
    let dump = n3.wg(DEFAULT_IFACE).unwrap();
    assert_eq!(dump.peers.len(), 2, "{dump:?}");
    for (i, key) in keys[..2].iter().enumerate() {
        let peer = dump.peer(key).unwrap();
        assert_eq!(peer.endpoint, format!("10.99.0.{}:51820", i + 1));
        assert_eq!(peer.persistent_keepalive, "25", "{peer:?}");
    }
    // The others reach node3 at its public address; they set no keepalive themselves.
    for node in [n1, n2] {
        let dump = node.wg(DEFAULT_IFACE).unwrap();
        assert_eq!(dump.peers.len(), 2, "{dump:?}");
        let peer = dump.peer(&keys[2]).unwrap();
        assert_eq!(peer.endpoint, "10.99.0.3:51820", "{}", node.name);
        assert!(dump.peers.iter().all(|p| p.persistent_keepalive == "off"));
    }
    // Gossip knows node3 by its advertised address and port.
    let status = status_json(n1).unwrap();
    let m = status.members.iter().find(|m| m.name == "node3").unwrap();
    assert_eq!(
        (m.underlay.as_str(), m.state.as_str()),
        ("10.99.0.3:17946", "alive")
    );
    assert_eq!(status_json(n3).unwrap().node.underlay, "10.99.0.3:17946");
}

/// A dual-stack "LAN" namespace behind `router`: router side `lan0` with `<v4>.1/24` and
/// `<v6>1/64`, the host's `eth0` with the given addresses (IPv4 /24, IPv6 /64), default routes
/// via the router, forwarding on in the router.
fn lan_behind(router: &Node, v4: &str, v6: &str, host_addrs: &[&str]) -> common::Netns {
    let lan = common::Netns::new();
    let r = router.netns.as_str();
    let (gw4, gw6) = (format!("{v4}.1"), format!("{v6}1"));
    common::run(&[
        "ip", "-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns",
        &lan.name,
    ]);
    for args in [
        &["ip", "addr", "add", &format!("{gw4}/24"), "dev", "lan0"][..],
        &[
            "ip",
            "addr",
            "add",
            &format!("{gw6}/64"),
            "dev",
            "lan0",
            "nodad",
        ],
        &["ip", "link", "set", "lan0", "up"],
    ] {
        ns(r, args);
    }
    forwarding(r, "net/ipv4/ip_forward");
    forwarding(r, "net/ipv6/conf/all/forwarding");
    for a in host_addrs {
        let len = if a.contains(':') { "64" } else { "24" };
        lan.run(&[
            "ip",
            "addr",
            "add",
            &format!("{a}/{len}"),
            "dev",
            "eth0",
            "nodad",
        ]);
    }
    lan.run(&["ip", "link", "set", "eth0", "up"]);
    lan.run(&["ip", "route", "add", "default", "via", &gw4]);
    lan.run(&["ip", "-6", "route", "add", "default", "via", &gw6]);
    lan
}

/// IPv4 and IPv6 destinations routed through the WireGuard link (not the link-local ones).
fn all_routes(node: &Node) -> Result<std::collections::BTreeSet<String>, String> {
    let mut routes = set(node.routes(DEFAULT_IFACE)?);
    let v6 = node.exec("ip", &["-o", "-6", "route", "show", "dev", DEFAULT_IFACE]);
    if !v6.success() {
        return Err(v6.to_string());
    }
    routes.extend(
        v6.stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|d| !d.starts_with("fe80:"))
            .map(str::to_string),
    );
    Ok(routes)
}

#[test]
fn routed_networks_connect_two_lans_and_overlaps_are_refused() {
    let Some(topo) = Topology::new(4) else { return };
    let [n1, n2, n3, n4] = [1, 2, 3, 4].map(|i| topo.node(i));
    let lan_a = lan_behind(
        n1,
        "192.168.10",
        "fd10::",
        &["192.168.10.2", "192.168.10.130", "fd10::2"],
    );
    let lan_b = lan_behind(n2, "192.168.20", "fd20::", &["192.168.20.2", "fd20::2"]);

    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let mut agents = vec![
        start(
            n1,
            CLUSTER_KEY,
            None,
            &["--routed-net", "192.168.10.0/24,fd10::/64"],
        ),
        start(
            n2,
            CLUSTER_KEY,
            Some(&seed),
            &[
                "--routed-net",
                "192.168.20.0/24",
                "--routed-net",
                "fd20::/64",
            ],
        ),
        start(n3, CLUSTER_KEY, Some(&seed), &[]),
        // Claims part of node1's LAN: node1 sorts first and keeps it.
        start(
            n4,
            CLUSTER_KEY,
            Some(&seed),
            &["--routed-net", "192.168.10.128/25"],
        ),
    ];
    let names = ["node1", "node2", "node3", "node4"];
    wait_full_mesh(&[n1, n2, n3, n4], &names, &mut agents);
    let keys = [n1, n2, n3, n4].map(pubkey);
    let ov = [n1, n2, n3, n4].map(overlay_of);
    let host = |i: usize| format!("{}/32", ov[i]);

    // node3 routes each LAN through its router, and nothing through node4.
    wait_wg(
        "node3's peers with the routed networks",
        n3,
        &mut agents,
        |d| {
            let got = [0, 1, 3].map(|i| allowed_ips(d, &keys[i]));
            let want = [
                set([host(0), "192.168.10.0/24".into(), "fd10::/64".into()]),
                set([host(1), "192.168.20.0/24".into(), "fd20::/64".into()]),
                set([host(3)]),
            ];
            match got {
                [Ok(a), Ok(b), Ok(c)] if [&a, &b, &c] == [&want[0], &want[1], &want[2]] => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    let routes = all_routes(n3).unwrap();
    let want = set([
        &ov[0],
        &ov[1],
        &ov[3],
        "192.168.10.0/24",
        "192.168.20.0/24",
        "fd10::/64",
        "fd20::/64",
    ]);
    assert_eq!(routes, want, "node3's routes");
    let refused =
        "member node4: routed network 192.168.10.128/25 overlaps one of node1; not routed";
    for agent in &agents[1..3] {
        assert!(wait_log(agent, &[refused]).contains("ERROR"));
    }
    // node4 keeps its own claim and so does not route node1's IPv4 LAN (only its IPv6 one).
    wait_wg(
        "node4 to leave node1's LAN unrouted",
        n4,
        &mut agents,
        |d| {
            let ips = allowed_ips(d, &keys[0])?;
            (ips == set([host(0), "fd10::/64".into()]))
                .then_some(())
                .ok_or(format!("{ips:?}"))
        },
    );
    wait_log(
        &agents[3],
        &["member node1: routed network 192.168.10.0/24 overlaps one of this node; not routed"],
    );

    // A host in LAN A reaches a host in LAN B through the mesh, and back.
    wait_for("LAN A to ping LAN B", CONVERGE, || {
        ping_from_ns(&lan_a.name, "192.168.20.2")
    });
    wait_for("LAN B to ping LAN A", CONVERGE, || {
        ping_from_ns(&lan_b.name, "192.168.10.130")
    });
    wait_for("LAN A to ping LAN B over IPv6", CONVERGE, || {
        ping_from_ns(&lan_a.name, "fd20::2")
    });
    wait_for("LAN B to ping LAN A over IPv6", CONVERGE, || {
        ping_from_ns(&lan_b.name, "fd10::2")
    });
    // node4's overlapping half of LAN A still goes to node1.
    n3.ping("192.168.10.130").unwrap();

    // The router of LAN A leaves: its LAN is no longer routed anywhere, and node4's claim,
    // which no longer overlaps anything, is routed through node4.
    let mut router_a = agents.remove(0);
    assert_eq!(router_a.terminate(STOP).and_then(|s| s.code()), Some(0));
    let after = [
        (n2, set([&ov[2], &ov[3], "192.168.10.128/25"])),
        (
            n3,
            set([
                &ov[1],
                &ov[3],
                "192.168.10.128/25",
                "192.168.20.0/24",
                "fd20::/64",
            ]),
        ),
    ];
    for (node, want) in after {
        wait_for(
            format!("{} to drop LAN A's route", node.name),
            CONVERGE,
            || {
                assert_running(&mut agents);
                let routes = all_routes(node)?;
                (routes == want)
                    .then_some(())
                    .ok_or(format!("routes {routes:?}, want {want:?}"))
            },
        );
        let dump = node.wg(DEFAULT_IFACE).unwrap();
        assert!(dump.peer(&keys[0]).is_none(), "{dump:?}");
        assert_eq!(
            allowed_ips(&dump, &keys[3]).unwrap(),
            set([host(3), "192.168.10.128/25".into()])
        );
    }
    assert!(ping_from_ns(&lan_b.name, "192.168.10.2").is_err());
    assert!(ping_from_ns(&lan_b.name, "fd10::2").is_err());
}

/// Waits until `node` has exactly the peers `keys` in `wg show dump`.
fn wait_peers(node: &Node, keys: &[&String], timeout: Duration, agents: &mut [Proc]) {
    let want = set(keys.iter());
    wait_for(
        format!("{}'s peers to be {want:?}", node.name),
        timeout,
        || {
            assert_running(agents);
            let got = set(node.wg(DEFAULT_IFACE)?.peers.iter().map(|p| &p.public_key));
            (got == want).then_some(()).ok_or(format!("peers {got:?}"))
        },
    );
}

/// A 4-node mesh (node1 --init, the others --join node1), as started by `start`.
fn four_node_mesh(topo: &Topology) -> Vec<Proc<'_>> {
    let seed = topo.node(1).ip.to_string();
    topo.nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| start(n, CLUSTER_KEY, (i > 0).then_some(seed.as_str()), &[]))
        .collect()
}

/// Cuts a mesh in two (the nodes in `cut`, 1-based, move to a second bridge) until both halves
/// have declared the other dead and then forgotten it (memberlist reaps the dead after
/// gossip_to_the_dead_time, 30 s with the lan profile, so only the agent's periodic re-join can
/// bring them back), heals the cut and checks that every node sees every other again, without
/// restarts. `agents` are the agents of `live` (1-based), in that order.
fn partition_and_heal(topo: &Topology, live: &[usize], cut: &[usize], agents: &mut [Proc]) {
    let nodes: Vec<&Node> = live.iter().map(|i| topo.node(*i)).collect();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    wait_full_mesh(&nodes, &names, agents);
    let keys: Vec<String> = nodes.iter().map(|n| pubkey(n)).collect();
    let pids: Vec<u32> = agents.iter().map(Proc::pid).collect();
    let half = |i: usize| cut.contains(&live[i]);

    let br = bridge(topo);
    ns(br, &["ip", "link", "add", "br1", "type", "bridge"]);
    ns(br, &["ip", "link", "set", "br1", "up"]);
    for i in cut {
        ns(
            br,
            &["ip", "link", "set", &format!("p{i}"), "master", "br1"],
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let mates: Vec<&String> = (0..nodes.len())
            .filter(|j| *j != i && half(*j) == half(i))
            .map(|j| &keys[j])
            .collect();
        wait_peers(node, &mates, FAILURE_DETECTION, agents);
    }
    for (i, node) in nodes.iter().enumerate() {
        let mates: Vec<&str> = (0..nodes.len())
            .filter(|j| *j != i && half(*j) == half(i))
            .map(|j| names[j])
            .collect();
        wait_for(
            format!("{} to forget the other half", node.name),
            FAILURE_DETECTION,
            || {
                assert_running(agents);
                let status = status_json(node)?;
                let mut known: Vec<&str> = status
                    .members
                    .iter()
                    .filter(|m| m.state != "left")
                    .map(|m| m.name.as_str())
                    .collect();
                known.sort();
                (known == mates)
                    .then_some(())
                    .ok_or(format!("known: {known:?}"))
            },
        );
    }

    // Heal.
    for i in cut {
        ns(
            br,
            &["ip", "link", "set", &format!("p{i}"), "master", "br0"],
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<&String> = keys
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, k)| k)
            .collect();
        wait_peers(node, &others, FAILURE_DETECTION, agents);
    }
    wait_full_mesh(&nodes, &names, agents);
    assert_eq!(agents.iter().map(Proc::pid).collect::<Vec<_>>(), pids);
    for node in &nodes {
        let status = status_json(node).unwrap();
        let alive = status.members.iter().filter(|m| m.state == "alive").count();
        assert_eq!(alive, nodes.len() - 1, "{status:?}");
    }
}

#[test]
fn split_brain_heals_without_restarts() {
    let Some(topo) = Topology::new(4) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = four_node_mesh(&topo);
    partition_and_heal(&topo, &[1, 2, 3, 4], &[3, 4], &mut agents);
}

/// Nodes restarted without --join resume from the members in their state file; they must
/// re-join those too, or a cluster without --join flags never heals.
#[test]
fn split_brain_heals_for_nodes_resumed_from_the_state_file() {
    let Some(topo) = Topology::new(4) else { return };
    let mut wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = four_node_mesh(&topo);
    let names = ["node1", "node2", "node3", "node4"];
    let nodes: Vec<&Node> = topo.nodes().iter().collect();
    wait_full_mesh(&nodes, &names, &mut agents);
    for i in [2, 3] {
        assert_eq!(agents[i].terminate(STOP).and_then(|s| s.code()), Some(0));
        // The agent deleted the interface, which ends wireguard-go.
        assert!(wg[i].wait_exit(STOP).is_some());
        wg[i] = nodes[i].start_wireguard(DEFAULT_IFACE);
        agents[i] = nodes[i].wesher().args(beyond_support::LAN).spawn();
    }
    partition_and_heal(&topo, &[1, 2, 3, 4], &[3, 4], &mut agents);
}

/// The only configured join address (node1) is gone for good when the cut happens: the halves
/// can only find each other through the members each half lost.
#[test]
fn split_brain_heals_when_the_join_address_is_gone() {
    let Some(topo) = Topology::new(4) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = four_node_mesh(&topo);
    let nodes: Vec<&Node> = topo.nodes().iter().collect();
    wait_full_mesh(&nodes, &["node1", "node2", "node3", "node4"], &mut agents);
    let mut seed = agents.remove(0);
    assert_eq!(seed.terminate(STOP).and_then(|s| s.code()), Some(0));
    partition_and_heal(&topo, &[2, 3, 4], &[3, 4], &mut agents);
}

/// Runs `wesher key ACTION KEY` in every node and checks the reply.
fn key_command(nodes: &[&Node], action: &str, key: &str, reply: &str) {
    for node in nodes {
        let out = client(node, &["key", action, key]);
        assert!(out.success(), "key {action} in {}: {out}", node.name);
        assert_eq!(out.stdout, reply);
    }
}

#[test]
fn key_rotation_on_a_live_mesh() {
    let Some(topo) = Topology::new(5) else { return };
    let [n1, n2, n3, n4, n5] = [1, 2, 3, 4, 5].map(|i| topo.node(i));
    let mut wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    let mut agents = vec![
        start(n1, CLUSTER_KEY, None, &[]),
        start(n2, CLUSTER_KEY, Some(&seed), &[]),
        start(n3, CLUSTER_KEY, Some(&seed), &[]),
    ];
    let mesh = [n1, n2, n3];
    wait_full_mesh(&mesh, &["node1", "node2", "node3"], &mut agents);

    // Traffic flows during the whole rotation: node1 pings node2 and node3 in a loop (three
    // tries per round, so that one lost packet on a busy machine is not a failure).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (rounds, failures) = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let (mut rounds, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for host in ["node2", "node3"] {
                    let mut result = n1.ping(host);
                    for _ in 0..2 {
                        if result.is_ok() {
                            break;
                        }
                        result = n1.ping(host);
                    }
                    if let Err(e) = result {
                        failures.push(e);
                    }
                }
                rounds += 1;
            }
            (rounds, failures)
        });
        for (action, key, reply) in [
            ("install", NEW_CLUSTER_KEY, "installed\n"),
            ("use", NEW_CLUSTER_KEY, "in use\n"),
            ("remove", CLUSTER_KEY, "removed\n"),
        ] {
            key_command(&mesh, action, key, reply);
            // Let a few probe and gossip rounds run in this phase.
            std::thread::sleep(Duration::from_secs(3));
            assert_running(&mut agents);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        pinger.join().unwrap()
    });
    eprintln!("{rounds} ping rounds during the rotation");
    assert!(
        rounds > 0 && failures.is_empty(),
        "{rounds} rounds, failures: {failures:?}"
    );
    // Nobody was lost on the way.
    for (node, agent) in mesh.iter().zip(&agents) {
        let status = status_json(node).unwrap();
        assert!(
            status.members.len() == 2 && status.members.iter().all(|m| m.state == "alive"),
            "{status:?}"
        );
        assert!(!agent.log().contains("left the mesh"), "{}", agent.log());
    }
    // The key in use cannot be removed, nor can a key that is not installed be used.
    for (args, why) in [
        (
            ["key", "remove", NEW_CLUSTER_KEY],
            "removing the primary key is not allowed",
        ),
        (
            ["key", "use", CLUSTER_KEY],
            "requested key is not in the keyring",
        ),
    ] {
        let out = client(n1, &args);
        assert_eq!(out.code(), Some(1), "{out}");
        assert_eq!(
            out.stderr.trim_end(),
            format!("wesher: error: {why}"),
            "{out}"
        );
    }
    // The state files hold the new key only.
    let new_key = wesher::secret::SecretKey::from_base64(NEW_CLUSTER_KEY).unwrap();
    for node in mesh {
        let state = wesher::state::load(&node.state_dir(), DEFAULT_IFACE)
            .unwrap()
            .unwrap()
            .state;
        assert_eq!(state.cluster_key, Some(new_key.clone()), "{}", node.name);
        assert!(state.extra_keys.is_empty(), "{}", node.name);
    }

    // A node with only the old key is kept out; one with the new key gets in.
    let keys = mesh.map(pubkey);
    agents.push(start(n4, CLUSTER_KEY, Some(&seed), &[]));
    wait_log(&agents[3], &["join through", "failed", "cluster key"]);
    agents.push(start(n5, NEW_CLUSTER_KEY, Some(&seed), &[]));
    wait_ping(n5, "node1", &mut agents);
    wait_ping(n1, "node5", &mut agents);
    let key5 = pubkey(n5);
    let want = [&keys[1], &keys[2], &key5];
    wait_peers(n1, &want, CONVERGE, &mut agents);
    assert!(n1.ping("node4").is_err());

    // node2 restarts without --cluster-key: the stored (new) key lets it back in.
    let mut old = agents.remove(1);
    assert_eq!(old.terminate(STOP).and_then(|s| s.code()), Some(0));
    // Its interface went with it, and with it wireguard-go.
    assert!(wg[1].wait_exit(STOP).is_some());
    wg[1] = n2.start_wireguard(DEFAULT_IFACE);
    agents.push(
        n2.wesher()
            .args(beyond_support::LAN)
            .args(["--join", &seed])
            .spawn(),
    );
    wait_ping(n2, "node1", &mut agents);
    wait_ping(n2, "node5", &mut agents);
    wait_ping(n3, "node2", &mut agents);
}

/// IPv6 only on the underlay: eth0 keeps no IPv4 address, nodes join by an IPv6 literal or a
/// name that resolves to one, and gossip and WireGuard endpoints use IPv6.
fn ipv6_underlay(overlay_net: &str) {
    let Some(topo) = Topology::new(3) else { return };
    let nodes: Vec<&Node> = topo.nodes().iter().collect();
    let v6 = |i: usize| format!("fd99::{}", i + 1);
    for (i, node) in nodes.iter().enumerate() {
        for args in [
            &["ip", "-4", "addr", "flush", "dev", "eth0"][..],
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{}/64", v6(i)),
                "dev",
                "eth0",
                "nodad",
            ],
        ] {
            let out = node.exec(args[0], &args[1..]);
            assert!(out.success(), "{args:?}: {out}");
        }
        let mut hosts = node.hosts();
        hosts += "fd99::1\tnode1-underlay6\n";
        std::fs::write(node.path("/etc/hosts"), hosts).unwrap();
    }
    wait_for("IPv6 between the nodes", CONVERGE, || nodes[0].ping(&v6(2)));

    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let net = ["--overlay-net", overlay_net];
    let mut agents = vec![
        start(nodes[0], CLUSTER_KEY, None, &net),
        start(nodes[1], CLUSTER_KEY, Some(&v6(0)), &net),
        start(nodes[2], CLUSTER_KEY, Some("node1-underlay6"), &net),
    ];
    let names = ["node1", "node2", "node3"];
    wait_full_mesh(&nodes, &names, &mut agents);

    let keys: Vec<String> = nodes.iter().map(|n| pubkey(n)).collect();
    let cidr: Cidr = overlay_net.parse().unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let dump = node.wg(DEFAULT_IFACE).unwrap();
        assert_eq!(dump.peers.len(), 2, "{dump:?}");
        let status = status_json(node).unwrap();
        assert_eq!(status.node.underlay, format!("[{}]:7946", v6(i)));
        for j in (0..3).filter(|j| *j != i) {
            let peer = dump.peer(&keys[j]).unwrap();
            assert_eq!(peer.endpoint, format!("[{}]:51820", v6(j)));
            let ip = overlay::derive(&cidr, names[j]);
            let len = if ip.is_ipv4() { 32 } else { 128 };
            assert_eq!(peer.allowed_ips, [format!("{ip}/{len}")]);
            let m = status.members.iter().find(|m| m.name == names[j]).unwrap();
            assert_eq!(
                (m.underlay.clone(), m.state.as_str()),
                (format!("[{}]:7946", v6(j)), "alive")
            );
        }
    }
}

#[test]
fn ipv6_underlay_with_ipv4_overlay() {
    ipv6_underlay("10.0.0.0/8");
}

#[test]
fn ipv6_underlay_with_ipv6_overlay() {
    ipv6_underlay("fd77:1:2:3::/64");
}
