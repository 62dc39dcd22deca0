//! Go wesher's five end-to-end scenarios (its tests/e2e.sh), re-created with network
//! namespaces and wireguard-go. Each check is `ping -c1 -W1 <hostname>` from one node to
//! another, which proves both the /etc/hosts entry and the tunnel. As in Go's tests, the cluster
//! key is fixed, wireguard-go pre-creates the interface and nodes join by a name that resolves
//! to the other node's underlay address. Fixed sleeps are replaced by waits with a deadline.

mod common;

use common::netns::{
    assert_running, hosts_banner, wait_for, Node, Proc, Topology, WesherCmd, CLUSTER_KEY, CONVERGE,
    DEFAULT_IFACE,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const LAN: [&str; 2] = ["--gossip-profile", "lan"];
const STOP: Duration = Duration::from_secs(20);

/// Waits until `from` pings `host` by name, failing at once if an agent dies.
fn wait_ping(from: &Node, host: &str, agents: &mut [Proc]) {
    wait_for(format!("{} to ping {host}", from.name), CONVERGE, || {
        assert_running(agents);
        from.ping(host)
    });
}

/// Go's test_3_node_up, with the default (WAN) gossip profile: node1 --init, node2 and node3
/// --join node1. Every pair is checked, not only node1's pings, and then every node's kernel
/// state and files against Go wesher's.
#[test]
fn scenario_1_three_nodes_wan_profile() {
    let Some(topo) = Topology::new(3) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = topo.node(1).underlay_name();
    let mut agents = vec![topo
        .node(1)
        .wesher()
        .args(["--cluster-key", CLUSTER_KEY, "--init"])
        .spawn()];
    for i in [2, 3] {
        agents.push(
            topo.node(i)
                .wesher()
                .args(["--cluster-key", CLUSTER_KEY, "--join", &seed])
                .spawn(),
        );
    }
    for from in topo.nodes() {
        for to in topo.nodes().iter().filter(|n| n.name != from.name) {
            wait_ping(from, &to.name, &mut agents);
        }
    }
    for node in topo.nodes() {
        assert_go_compatible_state(node, &topo);
    }
}

/// Overlay addresses from the SPEC's vectors (FNV-1a 128 of the hostname in 10.0.0.0/8).
fn overlay_addr(name: &str) -> &'static str {
    match name {
        "node1" => "10.59.73.60",
        "node2" => "10.59.76.237",
        "node3" => "10.59.75.178",
        _ => panic!("no vector for {name}"),
    }
}

/// What Go wesher leaves on a node of a converged mesh: the interface (overlay /32, up), one
/// WireGuard peer per other node (endpoint = its underlay address and our WireGuard port,
/// allowed IPs = its overlay /32), a link route per peer, one hosts line per peer in Go's
/// format, and the state file (0600 in a 0700 directory) holding the key and the members.
fn assert_go_compatible_state(node: &Node, topo: &Topology) {
    let others: Vec<&Node> = topo
        .nodes()
        .iter()
        .filter(|n| n.name != node.name)
        .collect();
    let me = &node.name;
    assert_eq!(
        node.addrs(DEFAULT_IFACE).unwrap(),
        [format!("{}/32", overlay_addr(me))],
        "{me}'s overlay address"
    );
    let link = node.exec("ip", &["-o", "link", "show", "dev", DEFAULT_IFACE]);
    assert!(
        link.stdout.contains(",UP") || link.stdout.contains("<UP"),
        "{me}: {DEFAULT_IFACE} is not up: {link}"
    );
    let dump = node.wg(DEFAULT_IFACE).unwrap();
    assert_eq!(dump.listen_port, 51820, "{me}'s listen port");
    assert_eq!(
        dump.peers.len(),
        others.len(),
        "{me}'s peers: {:?}",
        dump.peers
    );
    for other in &others {
        let key = other.wg(DEFAULT_IFACE).unwrap().public_key;
        let peer = dump
            .peer(&key)
            .unwrap_or_else(|| panic!("{me} has no peer for {}: {dump:?}", other.name));
        assert_eq!(
            peer.endpoint,
            format!("{}:51820", other.ip),
            "{me} -> {}",
            other.name
        );
        assert_eq!(
            peer.allowed_ips,
            [format!("{}/32", overlay_addr(&other.name))]
        );
    }
    let mut routes = node.routes(DEFAULT_IFACE).unwrap();
    routes.sort();
    let mut expected: Vec<String> = others
        .iter()
        .map(|o| overlay_addr(&o.name).to_string())
        .collect();
    expected.sort();
    assert_eq!(routes, expected, "{me}'s routes via {DEFAULT_IFACE}");

    let hosts = node.hosts();
    for other in &others {
        let line = format!(
            "{}\t{}\t{}",
            overlay_addr(&other.name),
            other.name,
            hosts_banner(DEFAULT_IFACE)
        );
        assert!(
            hosts.lines().any(|l| l == line),
            "{me}: no line {line:?} in {hosts}"
        );
    }
    assert_eq!(
        node.managed_hosts(DEFAULT_IFACE).len(),
        others.len(),
        "{hosts}"
    );

    let state_file = node.state_file(DEFAULT_IFACE);
    wait_for(
        format!("{me}'s state file to list its peers"),
        CONVERGE,
        || {
            let state = fs::read_to_string(&state_file).map_err(|e| e.to_string())?;
            let complete = state.contains("\"ClusterKey\"")
                && state.contains(CLUSTER_KEY)
                && others
                    .iter()
                    .all(|o| state.contains(&format!("\"{}\"", o.name)));
            complete.then_some(()).ok_or(state)
        },
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state_file), 0o600, "{}", state_file.display());
    assert_eq!(
        mode(&node.state_dir()),
        0o700,
        "{}",
        node.state_dir().display()
    );
}

/// Go's test_5_node_up: node1 --init, four nodes --join node1; node1 pings all four.
#[test]
fn scenario_2_five_nodes() {
    let Some(topo) = Topology::new(5) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = topo.node(1).underlay_name();
    let mut agents = vec![topo
        .node(1)
        .wesher()
        .args(LAN)
        .args(["--cluster-key", CLUSTER_KEY, "--init"])
        .spawn()];
    for i in 2..=5 {
        agents.push(
            topo.node(i)
                .wesher()
                .args(LAN)
                .args(["--cluster-key", CLUSTER_KEY, "--join", &seed])
                .spawn(),
        );
    }
    for i in 2..=5 {
        wait_ping(topo.node(1), &topo.node(i).name, &mut agents);
    }
}

/// Go's test_node_restart: node1 + node2; node2 is stopped and started again (with a new
/// WireGuard key, as every start makes one); node1 pings node2.
#[test]
fn scenario_3_node_restart() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    let _wg1 = n1.start_wireguard(DEFAULT_IFACE);
    let mut wg2 = n2.start_wireguard(DEFAULT_IFACE);
    let start_node2 = || {
        n2.wesher()
            .args(LAN)
            .args(["--cluster-key", CLUSTER_KEY, "--join", &n1.underlay_name()])
            .spawn()
    };
    let mut agents = vec![
        n1.wesher()
            .args(LAN)
            .args(["--cluster-key", CLUSTER_KEY, "--init"])
            .spawn(),
        start_node2(),
    ];
    wait_ping(n1, &n2.name, &mut agents);
    let old_key = n2.wg(DEFAULT_IFACE).unwrap().public_key;

    // Like `docker stop` + `docker start`: SIGTERM, then the node's processes start afresh.
    let mut old = agents.pop().unwrap();
    let status = old.terminate(STOP);
    assert!(
        status.is_some(),
        "node2's wesher ignored SIGTERM: {}",
        old.log()
    );
    if wg2.terminate(STOP).is_none() {
        panic!("wireguard-go of node2 ignored SIGTERM");
    }
    wg2 = n2.start_wireguard(DEFAULT_IFACE);
    agents.push(start_node2());

    let new_key = wait_for("node2's new WireGuard key", CONVERGE, || {
        assert_running(&mut agents);
        let key = n2.wg(DEFAULT_IFACE)?.public_key;
        if key == "(none)" {
            return Err("node2 has no private key yet".into());
        }
        Ok(key)
    });
    assert_ne!(new_key, old_key, "a restart must make a new WireGuard key");
    wait_for("node1 to follow node2's new key", CONVERGE, || {
        assert_running(&mut agents);
        let dump = n1.wg(DEFAULT_IFACE)?;
        match (dump.peer(&new_key), dump.peer(&old_key)) {
            (Some(_), None) => Ok(()),
            _ => Err(format!("node1's peers: {:?}", dump.peers)),
        }
    });
    wait_ping(n1, &n2.name, &mut agents);
    drop(wg2);
}

/// Go's test_cluster_simultaneous_start: three nodes each --join the other two, started
/// together; node1 pings both.
#[test]
fn scenario_4_simultaneous_start() {
    let Some(topo) = Topology::new(3) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents: Vec<Proc> = topo
        .nodes()
        .iter()
        .map(|node| {
            let others: Vec<String> = topo
                .nodes()
                .iter()
                .filter(|n| n.name != node.name)
                .map(Node::underlay_name)
                .collect();
            node.wesher()
                .args(LAN)
                .args(["--cluster-key", CLUSTER_KEY, "--join", &others.join(",")])
                .spawn()
        })
        .collect();
    wait_ping(topo.node(1), "node2", &mut agents);
    wait_ping(topo.node(1), "node3", &mut agents);
}

/// A wesher command for one of the two clusters, with the fixed key and the LAN profile.
fn base<'a>(node: &'a Node, cluster: [&str; 8]) -> WesherCmd<'a> {
    node.wesher()
        .args(LAN)
        .args(cluster)
        .args(["--cluster-key", CLUSTER_KEY])
}

const CLUSTER_A: [&str; 8] = [
    "--cluster-port",
    "7946",
    "--wireguard-port",
    "51820",
    "--interface",
    "wg1",
    "--overlay-net",
    "10.10.0.0/16",
];
const CLUSTER_B: [&str; 8] = [
    "--cluster-port",
    "7947",
    "--wireguard-port",
    "51821",
    "--interface",
    "wg2",
    "--overlay-net",
    "10.11.0.0/16",
];

/// Go's test_multiple_clusters_restart: cluster A (node1, node3) and cluster B (node2, node3)
/// on distinct ports, interfaces and overlay networks; node3's two agents restart, B's without
/// --join (it resumes from its state file); then node3 pings node1 and node2 and both ping it.
#[test]
fn scenario_5_two_clusters_on_one_node_and_restart() {
    let Some(topo) = Topology::new(3) else { return };
    let (n1, n2, n3) = (topo.node(1), topo.node(2), topo.node(3));
    let _wg1 = n1.start_wireguard("wg1");
    let _wg2 = n2.start_wireguard("wg2");
    let mut n3_wg = vec![n3.start_wireguard("wg1"), n3.start_wireguard("wg2")];
    let mut agents = vec![
        base(n1, CLUSTER_A).arg("--init").spawn(),
        base(n2, CLUSTER_B).arg("--init").spawn(),
        base(n3, CLUSTER_A)
            .args(["--join", &n1.underlay_name()])
            .spawn(),
        base(n3, CLUSTER_B)
            .args(["--join", &n2.underlay_name()])
            .spawn(),
    ];
    // Unlike Go's fixed sleep, wait until node3 is in both clusters, so that B's state file
    // holds node2 when node3 restarts.
    wait_ping(n3, "node1", &mut agents);
    wait_ping(n3, "node2", &mut agents);
    let state_b = n3.state_file("wg2");
    wait_for("node2 in node3's wg2 state file", CONVERGE, || {
        let state = std::fs::read_to_string(&state_b).map_err(|e| e.to_string())?;
        if state.contains("\"node2\"") {
            Ok(())
        } else {
            Err(format!("{}: {state}", state_b.display()))
        }
    });

    for mut agent in agents.drain(2..) {
        let status = agent.terminate(STOP);
        assert!(
            status.is_some(),
            "node3's wesher ignored SIGTERM: {}",
            agent.log()
        );
    }
    for wg in &mut n3_wg {
        assert!(
            wg.terminate(STOP).is_some(),
            "node3's wireguard-go ignored SIGTERM"
        );
    }
    n3_wg = vec![n3.start_wireguard("wg1"), n3.start_wireguard("wg2")];
    agents.push(
        base(n3, CLUSTER_A)
            .args(["--join", &n1.underlay_name()])
            .spawn(),
    );
    agents.push(base(n3, CLUSTER_B).spawn());

    wait_ping(n3, "node1", &mut agents);
    wait_ping(n3, "node2", &mut agents);
    wait_ping(n1, "node3", &mut agents);
    wait_ping(n2, "node3", &mut agents);
    drop(n3_wg);
}
