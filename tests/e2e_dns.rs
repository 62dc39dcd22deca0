//! Joins by a name only DNS knows, through our stub resolver and a real DNS server: dnsmasq
//! (Debian's dnsmasq-base) in node3 of the test network answers for the `lan` domain. node2's
//! /etc/resolv.conf (in its own /etc overlay) lists a dead nameserver first, then dnsmasq, with
//! `search lan`, and node2 joins node1 as `seed`: the mesh must form. node4 joins `nosuch`,
//! which does not exist: the warning names it and the agent keeps running and retrying. Every
//! resolv.conf names only addresses of the test network.

mod common;

use std::fs;
use std::time::Duration;

use common::netns::{assert_running, wait_for, Node, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE};
use common::netns::{Proc, Topology};

/// No node has this address: queries to it go unanswered.
const DEAD_NAMESERVER: &str = "10.99.0.250";

/// Replaces the node's /etc/resolv.conf (removed first, so that a symlink in the host's /etc is
/// replaced rather than followed out of the node).
fn set_resolv_conf(node: &Node, text: &str) {
    let path = node.path("/etc/resolv.conf");
    let _ = fs::remove_file(&path);
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn start<'a>(node: &'a Node, extra: &[&str]) -> Proc<'a> {
    node.wesher()
        .args(["--gossip-profile", "lan", "--cluster-key", CLUSTER_KEY])
        .args(extra.iter().copied())
        .spawn()
}

fn count(log: &str, line: &str) -> usize {
    log.matches(line).count()
}

#[test]
fn join_by_a_dns_name_with_a_dead_nameserver_first_and_a_search_domain() {
    let Some(topo) = Topology::new(4) else { return };
    if !common::prerequisites(&["dnsmasq"]) {
        return;
    }
    let (n1, n2, n3, n4) = (topo.node(1), topo.node(2), topo.node(3), topo.node(4));
    let mut dns = n3.command("dnsmasq");
    dns.args([
        "--keep-in-foreground",
        "--log-facility=-",
        "--log-queries",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--bind-interfaces",
        "--domain-needed",
        "--local=/lan/",
    ])
    .arg(format!("--listen-address={}", n3.ip))
    .arg(format!("--host-record=seed.lan,{}", n1.ip));
    let mut dns = n3.spawn("dnsmasq", dns);
    wait_for("dnsmasq to start", Duration::from_secs(15), || {
        if let Some(status) = dns.exited() {
            panic!("dnsmasq exited ({status}): {}", dns.log());
        }
        dns.log()
            .contains("started")
            .then_some(())
            .ok_or_else(|| dns.log())
    });
    let resolv_conf = format!(
        "# test network only\nnameserver {DEAD_NAMESERVER}\nnameserver {}\nsearch lan\n",
        n3.ip
    );
    for node in [n1, n2, n4] {
        set_resolv_conf(node, &resolv_conf);
    }
    let _wg: Vec<Proc> = [n1, n2, n4]
        .iter()
        .map(|n| n.start_wireguard(DEFAULT_IFACE))
        .collect();
    let mut agents = vec![
        start(n1, &["--init"]),
        start(n2, &["--join", "seed"]),
        start(n4, &["--join", "nosuch"]),
    ];

    wait_for(format!("{} to ping {}", n2.name, n1.name), CONVERGE, || {
        assert_running(&mut agents);
        n2.ping(&n1.name)
    });
    let joiner = agents[1].log();
    assert!(
        joiner.contains(&format!("joining [{}:7946]", n1.ip)),
        "node2 did not join node1's address: {joiner}"
    );
    assert!(!joiner.contains("join target seed"), "{joiner}");
    assert!(
        dns.log().contains("query[A] seed.lan"),
        "dnsmasq was not asked: {}",
        dns.log()
    );
    // The lookups ran in the event loop: the agent is one thread (nsenter execs it, so the
    // PID is the agent's).
    let status = fs::read_to_string(format!("/proc/{}/status", agents[1].pid())).unwrap();
    for line in ["Name:\twesher", "Threads:\t1"] {
        assert!(status.lines().any(|l| l == line), "{status}");
    }

    // The name that does not exist: warned about by name, at each retry, the agent running.
    let warning = "join target nosuch: no such host";
    wait_for("node4 to warn twice about nosuch", CONVERGE, || {
        assert_running(&mut agents);
        let log = agents[2].log();
        (count(&log, warning) >= 2).then_some(()).ok_or(log)
    });
    let queries = dns.log();
    assert!(
        queries.contains("query[A] nosuch.lan") && queries.contains("query[A] nosuch from"),
        "the search list, then the name itself: {queries}"
    );
    assert_running(&mut agents);
}
