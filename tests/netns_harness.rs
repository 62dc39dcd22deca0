//! Tests of the namespace harness itself, with no wesher involved: isolation of the nodes,
//! the underlay, a hand-configured wireguard-go tunnel, and cleanup (also after a panic).

mod common;

use common::netns::{wait_for, Node, Topology, CONVERGE};
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

fn netns_names() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn sh(node: &Node, script: &str) -> String {
    let out = node.exec("sh", &["-c", script]);
    assert!(out.success(), "{} sh -c {script:?}: {out}", node.name);
    out.stdout
}

/// Gives the node's wg0 a fresh key and returns its public key.
fn wg_key(node: &Node) -> String {
    let key_file = node.dir().join("wg0.key");
    let key = node.exec("wg", &["genkey"]);
    assert!(key.success(), "wg genkey: {key}");
    fs::write(&key_file, key.stdout).unwrap();
    let key_path = key_file.display().to_string();
    let set = node.exec(
        "wg",
        &[
            "set",
            "wg0",
            "private-key",
            &key_path,
            "listen-port",
            "51820",
        ],
    );
    assert!(set.success(), "wg set private-key: {set}");
    node.wg("wg0").unwrap().public_key
}

#[test]
fn nodes_are_isolated_connected_and_can_run_a_wireguard_tunnel() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));

    for node in topo.nodes() {
        assert_eq!(sh(node, "uname -n").trim(), node.name);
    }
    n1.ping(&n2.underlay_name()).unwrap();
    n2.ping(&n1.ip.to_string()).unwrap();

    // /etc/hosts is private per node (and the host's is untouched).
    sh(n1, "echo '10.1.2.3 probe-only-in-node1' >> /etc/hosts");
    assert!(n1.hosts().contains("probe-only-in-node1"));
    assert!(!n2.hosts().contains("probe-only-in-node1"));
    assert!(!fs::read_to_string("/etc/hosts")
        .unwrap()
        .contains("probe-only-in-node1"));

    // The same interface name in both nodes: /run/wireguard is per node.
    let _wg1 = n1.start_wireguard("wg0");
    let _wg2 = n2.start_wireguard("wg0");
    let (k1, k2) = (wg_key(n1), wg_key(n2));
    assert_ne!(k1, k2);
    for (node, addr, peer, peer_key, peer_addr) in [
        (n1, "10.200.0.1/32", n2, &k2, "10.200.0.2"),
        (n2, "10.200.0.2/32", n1, &k1, "10.200.0.1"),
    ] {
        let endpoint = format!("{}:51820", peer.ip);
        let out = node.exec(
            "wg",
            &[
                "set",
                "wg0",
                "peer",
                peer_key,
                "endpoint",
                &endpoint,
                "allowed-ips",
                &format!("{peer_addr}/32"),
            ],
        );
        assert!(out.success(), "wg set peer: {out}");
        for args in [
            &["addr", "add", addr, "dev", "wg0"][..],
            &["link", "set", "wg0", "up"][..],
            &["route", "add", &format!("{peer_addr}/32"), "dev", "wg0"][..],
        ] {
            let out = node.exec("ip", args);
            assert!(out.success(), "ip {args:?}: {out}");
        }
    }
    n1.wait_ping("10.200.0.2", CONVERGE);
    let dump = n1.wg("wg0").unwrap();
    let peer = dump.peer(&k2).expect("node2 is a peer of node1");
    assert!(peer.latest_handshake > 0, "no handshake recorded: {dump:?}");
    assert_eq!(peer.allowed_ips, ["10.200.0.2/32"]);
    assert_eq!(n1.routes("wg0").unwrap(), ["10.200.0.2"]);
    assert_eq!(n1.overlay_addr("wg0").unwrap(), "10.200.0.1");
}

#[test]
fn everything_is_removed_on_drop_even_after_a_panic() {
    let Some(topo) = Topology::new(2) else { return };
    let namespaces = topo.namespaces().to_vec();
    assert_eq!(namespaces.len(), 3, "a bridge and two nodes");
    let dir = topo.node(1).dir().parent().unwrap().to_path_buf();
    let mut pids = Vec::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let topo = topo;
        let wg = topo.node(1).start_wireguard("wg0");
        pids.push(wg.pid());
        let names = netns_names();
        for ns in topo.namespaces() {
            assert!(names.contains(ns), "{ns} exists while the topology lives");
        }
        panic!("deliberate failure to exercise the cleanup");
    }));
    assert!(result.is_err());
    let names = netns_names();
    for ns in &namespaces {
        assert!(!names.contains(ns), "{ns} was not deleted");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
    for pid in pids {
        // Reaped, so /proc has no entry (barring an improbable immediate PID reuse).
        wait_for(
            format!("pid {pid} to be gone"),
            CONVERGE,
            || match Path::new(&format!("/proc/{pid}")).exists() {
                false => Ok(()),
                true => Err(format!("/proc/{pid} still exists")),
            },
        );
    }
}
