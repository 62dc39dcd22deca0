//! Self-healing in network namespaces with wireguard-go: faults injected under a running mesh
//! (a restarted daemon, a peer or route removed by hand, the link deleted, a late uplink, a
//! changed underlay address, hostile routed networks) and repaired without restarting wesher.
//! Each healing time is printed ("healed: CASE in N ms") for BENCHMARKS.md; the limits only
//! bound a hang.
//!
//! The fault cases are functions of a `Topology` and the interface, so the VM's kernel
//! WireGuard run can call them with its own set-up.

mod common;

use common::netns::{
    assert_running, wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE,
};
use std::time::{Duration, Instant};

const LAN: [&str; 2] = ["--gossip-profile", "lan"];
/// Bounds a repair; the agent reads the system back every 10 s at the latest.
const HEAL: Duration = Duration::from_secs(45);

/// Starts node1 --init and the others --join node1; waits for pings both ways.
fn start_mesh<'a>(topo: &'a Topology, extra: &[&str]) -> Vec<Proc<'a>> {
    let seed = topo.node(1).ip.to_string();
    let mut agents: Vec<Proc> = topo
        .nodes()
        .iter()
        .map(|node| start_agent(node, &seed, extra))
        .collect();
    for other in &topo.nodes()[1..] {
        wait_ping(topo.node(1), &other.name, &mut agents, CONVERGE);
        wait_ping(other, "node1", &mut agents, CONVERGE);
    }
    agents
}

fn start_agent<'a>(node: &'a Node, seed: &str, extra: &[&str]) -> Proc<'a> {
    let cmd = node
        .wesher()
        .args(LAN)
        .args(extra.iter().copied())
        .args(["--cluster-key", CLUSTER_KEY]);
    match node.name.as_str() {
        "node1" => cmd.arg("--init"),
        _ => cmd.args(["--join", seed]),
    }
    .spawn()
}

fn wait_ping(from: &Node, host: &str, agents: &mut [Proc], timeout: Duration) {
    wait_for(format!("{} to ping {host}", from.name), timeout, || {
        assert_running(agents);
        from.ping(host)
    });
}

/// Waits until both nodes ping each other again; prints and returns the time since `since`.
fn healed(case: &str, since: Instant, a: &Node, b: &Node, agents: &mut [Proc]) -> Duration {
    wait_ping(a, &b.name, agents, HEAL);
    wait_ping(b, &a.name, agents, HEAL);
    let took = since.elapsed();
    println!("healed: {case} in {} ms", took.as_millis());
    took
}

fn must(node: &Node, program: &str, args: &[&str]) {
    let out = node.exec(program, args);
    assert!(out.success(), "{} {program} {args:?}: {out}", node.name);
}

/// wireguard-go killed and started again (as its service manager would): a fresh, empty
/// interface that wesher configures again.
pub fn daemon_restart<'a>(
    topo: &'a Topology,
    iface: &str,
    daemons: &mut [Proc<'a>],
    agents: &mut [Proc],
) {
    let node = topo.node(2);
    daemons[1].kill();
    let since = Instant::now();
    wait_for("the link to go", Duration::from_secs(10), || {
        (!node.link_exists(iface))
            .then_some(())
            .ok_or("still there".to_string())
    });
    daemons[1] = node.start_wireguard(iface);
    healed("wireguard-go restarted", since, topo.node(1), node, agents);
}

/// `wg set IFACE peer K remove` on node1: the peer comes back.
pub fn peer_removed(topo: &Topology, iface: &str, agents: &mut [Proc]) {
    let (n1, n2) = (topo.node(1), topo.node(2));
    let key = n2.wg(iface).unwrap().public_key;
    must(n1, "wg", &["set", iface, "peer", &key, "remove"]);
    let since = Instant::now();
    wait_for("node1 to have node2's peer again", HEAL, || {
        assert_running(agents);
        n1.wg(iface)?
            .peer(&key)
            .map(drop)
            .ok_or("not yet".to_string())
    });
    healed("peer removed by hand", since, n1, n2, agents);
}

/// A peer's route deleted on node1: it comes back (rtnetlink tells at once).
pub fn route_deleted(topo: &Topology, iface: &str, agents: &mut [Proc]) {
    let (n1, n2) = (topo.node(1), topo.node(2));
    let overlay = n2.overlay_addr(iface).unwrap();
    must(
        n1,
        "ip",
        &["route", "del", &format!("{overlay}/32"), "dev", iface],
    );
    let since = Instant::now();
    wait_for("node1's route to node2 again", HEAL, || {
        let routes = n1.routes(iface)?;
        routes
            .iter()
            .any(|r| r == &overlay)
            .then_some(())
            .ok_or(format!("{routes:?}"))
    });
    healed("route deleted", since, n1, n2, agents);
}

/// The link deleted on node2 (wireguard-go exits with it) and the daemon started again.
pub fn link_deleted<'a>(
    topo: &'a Topology,
    iface: &str,
    daemons: &mut [Proc<'a>],
    agents: &mut [Proc],
) {
    let node = topo.node(2);
    must(node, "ip", &["link", "del", iface]);
    let since = Instant::now();
    assert!(
        daemons[1].wait_exit(Duration::from_secs(10)).is_some(),
        "wireguard-go should exit with its link"
    );
    daemons[1] = node.start_wireguard(iface);
    healed("link deleted", since, topo.node(1), node, agents);
}

#[test]
fn a_restarted_daemon_a_removed_peer_a_deleted_route_and_link_are_repaired() {
    let Some(topo) = Topology::new(3) else {
        return;
    };
    let mut daemons = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_mesh(&topo, &[]);
    peer_removed(&topo, DEFAULT_IFACE, &mut agents);
    route_deleted(&topo, DEFAULT_IFACE, &mut agents);
    daemon_restart(&topo, DEFAULT_IFACE, &mut daemons, &mut agents);
    link_deleted(&topo, DEFAULT_IFACE, &mut daemons, &mut agents);
    // node3 never lost anything: its pings still work both ways.
    wait_ping(topo.node(3), "node2", &mut agents, HEAL);
    // A service manager stopping both at once: wireguard-go takes the link with it while
    // wesher leaves; that is no error.
    for (daemon, agent) in daemons.iter_mut().zip(agents.iter_mut()) {
        daemon.signal("TERM");
        agent.signal("TERM");
    }
    for agent in &mut agents {
        assert!(agent.wait_exit(Duration::from_secs(20)).is_some());
        assert!(
            !agent.log().contains("ERROR"),
            "a clean run logs no error: {}",
            agent.log()
        );
    }
}

#[test]
fn a_node_without_uplink_waits_and_joins_when_it_appears() {
    let Some(topo) = Topology::new(2) else {
        return;
    };
    let _daemons = topo.start_wireguard_all(DEFAULT_IFACE);
    let n2 = topo.node(2);
    let addr = format!("{}/24", n2.ip);
    must(n2, "ip", &["addr", "del", &addr, "dev", "eth0"]);
    let mut agents = vec![start_agent(topo.node(1), "", &[])];
    agents.push(start_agent(n2, &topo.node(1).ip.to_string(), &[]));
    // A router booting before its uplink: a minute without address or route.
    let wait = std::env::var("WESHER_LATE_UPLINK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::thread::sleep(Duration::from_secs(wait));
    assert_running(&mut agents);
    must(n2, "ip", &["addr", "add", &addr, "dev", "eth0"]);
    let since = Instant::now();
    healed("late uplink", since, topo.node(1), n2, &mut agents);
    assert_eq!(
        agents[1]
            .log()
            .matches("no usable underlay address")
            .count(),
        1,
        "logged once: {}",
        agents[1].log()
    );
}

/// The address `move_underlay` gives a node, in the topology's subnet.
const NEW_UNDERLAY: &str = "10.99.0.200";

/// Replaces the node's underlay address by `NEW_UNDERLAY` (as a new DHCP lease would); returns
/// when it happened.
fn move_underlay(node: &Node) -> Instant {
    // Deleting a primary address takes the secondary ones of its subnet with it: delete first.
    let old = format!("{}/24", node.ip);
    must(node, "ip", &["addr", "del", &old, "dev", "eth0"]);
    let new = format!("{NEW_UNDERLAY}/24");
    must(node, "ip", &["addr", "add", &new, "dev", "eth0"]);
    Instant::now()
}

#[test]
fn a_changed_underlay_address_heals_without_restart() {
    let Some(topo) = Topology::new(3) else {
        return;
    };
    let _daemons = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_mesh(&topo, &[]);
    let n2 = topo.node(2);
    let new_ip = NEW_UNDERLAY;
    let since = move_underlay(n2);
    healed(
        "underlay address changed",
        since,
        topo.node(1),
        n2,
        &mut agents,
    );
    wait_ping(topo.node(3), "node2", &mut agents, HEAL);
    // Everyone has node2's new endpoint.
    let key = n2.wg(DEFAULT_IFACE).unwrap().public_key;
    for other in [topo.node(1), topo.node(3)] {
        wait_for(format!("{}'s endpoint for node2", other.name), HEAL, || {
            let dump = other.wg(DEFAULT_IFACE)?;
            let peer = dump.peer(&key).ok_or("no peer")?;
            peer.endpoint
                .starts_with(new_ip)
                .then_some(())
                .ok_or(peer.endpoint.clone())
        });
    }
}

#[test]
fn state_is_written_only_when_it_changed() {
    let Some(topo) = Topology::new(3) else {
        return;
    };
    let mut daemons = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_mesh(&topo, &[]);
    let saves = |agents: &[Proc]| agents[0].log().matches("state saved").count();
    // Settled: gossip, probes and pings go on, nothing stored changes.
    std::thread::sleep(Duration::from_secs(8));
    let settled = saves(&agents);
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(saves(&agents), settled, "no write without a change");
    // Ten membership events: node3 leaves and comes back five times (a new key each time).
    let seed = topo.node(1).ip.to_string();
    for _ in 0..5 {
        assert!(agents[2].terminate(Duration::from_secs(20)).is_some());
        // Stopping wesher removed the link, and wireguard-go with it.
        daemons[2].wait_exit(Duration::from_secs(10));
        daemons[2] = topo.node(3).start_wireguard(DEFAULT_IFACE);
        agents[2] = start_agent(topo.node(3), &seed, &[]);
        wait_ping(topo.node(1), "node3", &mut agents, CONVERGE);
    }
    std::thread::sleep(Duration::from_secs(8));
    let writes = saves(&agents) - settled;
    println!("state writes for 10 membership events: {writes}");
    assert!((1..=10).contains(&writes), "{writes}");
    let state = std::fs::read_to_string(topo.node(1).state_file(DEFAULT_IFACE)).unwrap();
    assert!(
        state.contains("node3") && state.contains("node2"),
        "{state}"
    );
}

/// A default route through a gateway on the node's uplink subnet (nothing answers there).
fn add_default_route(node: &Node) {
    let route = [
        "route",
        "add",
        "default",
        "via",
        "10.99.0.254",
        "dev",
        "eth0",
    ];
    must(node, "ip", &route);
}

/// Routed networks that would take over a node's own routing: node2 advertises node1's LAN
/// and the underlay subnet; node1 keeps its LAN route, default route and underlay
/// reachability. (The default routes themselves: `a_peer_advertising_the_default_routes_...`.)
#[test]
fn hostile_routed_networks_are_refused() {
    let Some(topo) = Topology::new(2) else {
        return;
    };
    let n1 = topo.node(1);
    // node1's LAN and a default route through a gateway on its uplink's subnet.
    must(n1, "ip", &["link", "add", "lan0", "type", "bridge"]);
    must(n1, "ip", &["addr", "add", "192.168.1.1/24", "dev", "lan0"]);
    must(n1, "ip", &["link", "set", "lan0", "up"]);
    add_default_route(n1);
    let before = n1.exec("ip", &["route", "show", "table", "main"]).stdout;
    let _daemons = topo.start_wireguard_all(DEFAULT_IFACE);
    let seed = n1.ip.to_string();
    // The default overlay (10.0.0.0/8) holds the underlay 10.99.0.0/24.
    let overlay = ["--overlay-net", "172.30.0.0/16"];
    let mut agents = vec![start_agent(n1, &seed, &overlay)];
    agents.push(start_agent(
        topo.node(2),
        &seed,
        &[
            &overlay[..],
            &["--routed-net", "192.168.1.0/24,10.99.0.0/24"],
        ]
        .concat(),
    ));
    wait_ping(n1, "node2", &mut agents, CONVERGE);
    wait_for("the refusals in node1's log", HEAL, || {
        let log = agents[0].log();
        for why in [
            "routed network 192.168.1.0/24 overlaps this node's connected network 192.168.1.0/24",
            "routed network 10.99.0.0/24 overlaps this node's connected network 10.99.0.0/24",
        ] {
            if !log.contains(why) {
                return Err(format!("no {why:?}"));
            }
        }
        Ok(())
    });
    let after = n1.exec("ip", &["route", "show", "table", "main"]).stdout;
    for line in before.lines() {
        assert!(after.contains(line), "route {line:?} gone: {after}");
    }
    assert!(!after.contains("192.168.1.0/24 dev wgoverlay"), "{after}");
    n1.ping(&topo.node(2).ip.to_string()).unwrap();
    // Logged once, not at every reconcile.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        agents[0]
            .log()
            .matches("routed network 192.168.1.0/24")
            .count(),
        1
    );
}

/// The WireGuard public key the Go peer advertises.
const GO_PEER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// The default routes as a peer's routed networks: our own agents never advertise them, so
/// the Go memberlist peer carries them in its metadata, next to one harmless network. node1
/// routes that one, keeps its own default routes, puts neither default route in the mesh's
/// routes or in WireGuard's allowed IPs, and logs each refusal once.
#[test]
fn a_peer_advertising_the_default_routes_is_refused() {
    let Some(bin) = common::gopeer::build() else {
        return;
    };
    let Some(topo) = Topology::new(2) else {
        return;
    };
    let (n1, n2) = (topo.node(1), topo.node(2));
    add_default_route(n1);
    let routes = |family: &str| n1.exec("ip", &[family, "route", "show", "table", "main"]);
    let before = [routes("-4").stdout, routes("-6").stdout];
    let _go = GoPeer::start(n2, &bin, &["-routed", "0.0.0.0/0,::/0,192.168.50.0/24"]);
    let _d1 = n1.start_wireguard(DEFAULT_IFACE);
    let mut agents = vec![start_agent(n1, "", &["--join", &n2.ip.to_string()])];
    // The harmless network shows that node1 read the peer's routed networks.
    wait_for(
        "node1 to route the Go peer's 192.168.50.0/24",
        CONVERGE,
        || {
            assert_running(&mut agents);
            let out = routes("-4");
            out.stdout
                .contains("192.168.50.0/24 dev wgoverlay")
                .then_some(())
                .ok_or(format!("{out}"))
        },
    );
    let refusals = [
        "member go3: routed network 0.0.0.0/0 overlaps the default route; not routed",
        "member go3: routed network ::/0 overlaps the default route; not routed",
    ];
    wait_for("the refusals in node1's log", HEAL, || {
        let log = agents[0].log();
        match refusals.iter().find(|why| !log.contains(*why)) {
            Some(why) => Err(format!("no {why:?} in {log}")),
            None => Ok(()),
        }
    });
    for (family, before) in ["-4", "-6"].iter().zip(&before) {
        let after = routes(family).stdout;
        for line in before.lines() {
            assert!(after.contains(line), "route {line:?} gone: {after}");
        }
        assert!(
            !after
                .lines()
                .any(|l| l.starts_with("default") && l.contains("wgoverlay")),
            "{after}"
        );
    }
    let dump = n1.wg(DEFAULT_IFACE).unwrap();
    let peer = dump
        .peer(GO_PEER_KEY)
        .expect("the Go peer is a WireGuard peer");
    let mut allowed = peer.allowed_ips.clone();
    allowed.sort();
    assert_eq!(allowed, ["10.33.33.33/32", "192.168.50.0/24"]);
    // Logged once, not at every reconcile (at most 10 s apart).
    std::thread::sleep(Duration::from_secs(12));
    let log = agents[0].log();
    for why in refusals {
        assert_eq!(log.matches(why).count(), 1, "{log}");
    }
}

/// The Go memberlist peer in a node namespace, stopped by its PID on drop.
struct GoPeer {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl GoPeer {
    /// `extra`: more gopeer flags, such as `-routed`.
    fn start(node: &Node, bin: &std::path::Path, extra: &[&str]) -> GoPeer {
        let log = node.dir().join("gopeer.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = node.command(bin);
        // A WireGuard key of 32 bytes 7, inside the default overlay: the agents add it as a
        // peer (nothing answers there) as they would a Go wesher node.
        cmd.args([
            "-name",
            "go3",
            "-bind",
            &node.ip.to_string(),
            "-port",
            "7946",
        ])
        .args(["-key", CLUSTER_KEY, "-profile", "fast"])
        .args(["-overlay", "10.33.33.33"])
        .args(["-pubkey", GO_PEER_KEY])
        .args(extra)
        // Its stdin stays open (it exits when it closes); it is never written to.
        .stdin(std::process::Stdio::piped())
        .stdout(out)
        .stderr(err);
        // nsenter execs the program: the child's PID is gopeer's.
        let child = cmd.spawn().expect("start gopeer");
        GoPeer { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether Go reported `name` joining at `addr` (a join event, first or after a leave).
    fn saw_join(&self, name: &str, addr: &str) -> bool {
        self.log().lines().any(|l| {
            l.contains("\"event\":\"join\"")
                && l.contains(&format!("\"name\":\"{name}\""))
                && l.contains(&format!("\"addr\":\"{addr}\""))
        })
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_changed_underlay_address_heals_with_the_go_memberlist_peer_in_the_mix() {
    let Some(bin) = common::gopeer::build() else {
        return;
    };
    let Some(topo) = Topology::new(3) else {
        return;
    };
    let (n1, n2, n3) = (topo.node(1), topo.node(2), topo.node(3));
    let go = GoPeer::start(n3, &bin, &[]);
    let _d1 = n1.start_wireguard(DEFAULT_IFACE);
    let _d2 = n2.start_wireguard(DEFAULT_IFACE);
    let go_addr = n3.ip.to_string();
    let mut agents = vec![start_agent(n1, "", &["--join", &go_addr])];
    agents.push(start_agent(n2, &n1.ip.to_string(), &[]));
    wait_ping(n1, "node2", &mut agents, CONVERGE);
    let old_ip = n2.ip.to_string();
    wait_for("Go to have node2", CONVERGE, || {
        go.saw_join("node2", &old_ip).then_some(()).ok_or(go.log())
    });
    let new_ip = NEW_UNDERLAY;
    let since = move_underlay(n2);
    healed(
        "underlay address changed, Go peer in the mix",
        since,
        n1,
        n2,
        &mut agents,
    );
    wait_for("Go to have node2 at its new address", HEAL, || {
        go.saw_join("node2", new_ip).then_some(()).ok_or(go.log())
    });
    println!(
        "healed: Go memberlist has node2's new address in {} ms",
        since.elapsed().as_millis()
    );
    assert!(
        go.log()
            .contains("Updating address for left or failed node node2"),
        "{}",
        go.log()
    );
}
