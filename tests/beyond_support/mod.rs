//! Helpers for the "beyond Go wesher" end-to-end tests (tests/e2e_beyond.rs): starting meshes
//! with per-node flags, waiting on pings, logs and `wg show dump`, and the extra namespaces
//! (NAT, LANs, partitions) the harness in tests/common/netns.rs does not build itself.
#![allow(dead_code)] // shared by several test binaries, each using a subset

use std::collections::BTreeSet;
use std::fmt::Display;

use crate::common::netns::{
    assert_running, wait_for, Node, Proc, Topology, WgDump, CONVERGE, DEFAULT_IFACE, WESHER,
};
use crate::common::run;

/// Short failure detection for tests.
pub const LAN: [&str; 2] = ["--gossip-profile", "lan"];

/// Starts wesher in `node` with the cluster key and `extra` flags: `--init` when `seed` is None,
/// else `--join seed`.
pub fn start<'a>(node: &'a Node, key: &str, seed: Option<&str>, extra: &[&str]) -> Proc<'a> {
    let cmd = node
        .wesher()
        .args(LAN)
        .args(["--cluster-key", key])
        .args(extra.iter().copied());
    match seed {
        None => cmd.arg("--init"),
        Some(seed) => cmd.args(["--join", seed]),
    }
    .spawn()
}

/// Waits until `from` pings `host`, failing at once if an agent dies.
pub fn wait_ping(from: &Node, host: &str, agents: &mut [Proc]) {
    wait_for(format!("{} to ping {host}", from.name), CONVERGE, || {
        assert_running(agents);
        from.ping(host)
    });
}

/// Waits until every node of `nodes` pings every other by its name in `names` (same order).
pub fn wait_full_mesh(nodes: &[&Node], names: &[&str], agents: &mut [Proc]) {
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in names.iter().enumerate() {
            if i != j {
                wait_ping(from, to, agents);
            }
        }
    }
}

/// Waits until `check` holds for `node`'s `wg show dump`, failing at once if an agent dies.
pub fn wait_wg<T>(
    what: impl Display,
    node: &Node,
    agents: &mut [Proc],
    mut check: impl FnMut(&WgDump) -> Result<T, String>,
) -> T {
    wait_for(what, CONVERGE, || {
        assert_running(agents);
        check(&node.wg(DEFAULT_IFACE)?)
    })
}

/// The allowed IPs of `key`'s peer in `dump`, as a set.
pub fn allowed_ips(dump: &WgDump, key: &str) -> Result<BTreeSet<String>, String> {
    dump.peer(key)
        .map(|p| p.allowed_ips.iter().cloned().collect())
        .ok_or_else(|| format!("no peer {key} in {dump:?}"))
}

/// A set of strings, for exact comparisons.
pub fn set<S: ToString>(items: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

/// Waits until `proc`'s log has a line containing every one of `parts`; returns that line.
pub fn wait_log(proc: &Proc, parts: &[&str]) -> String {
    wait_for(format!("a log line with {parts:?}"), CONVERGE, || {
        let log = proc.log();
        log.lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
            .ok_or_else(|| format!("log so far:\n{log}"))
    })
}

/// Runs `wesher ARGS` (a client command: status, key) inside `node`.
pub fn client(node: &Node, args: &[&str]) -> crate::common::netns::Output {
    node.exec(WESHER, args)
}

/// Runs `ip netns exec NETNS ARGS`, panicking on failure: set-up steps in namespaces that are
/// not nodes (routers, LAN hosts).
pub fn ns(netns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "netns", "exec", netns];
    all.extend_from_slice(args);
    run(&all)
}

/// The bridge namespace of a topology (the first one it creates, holding br0 and the ports
/// `p<i>` of node i).
pub fn bridge(topo: &Topology) -> &str {
    &topo.namespaces()[0]
}

/// A plain `ping -c1 -W1 DST` in a namespace that is not a node.
pub fn ping_from_ns(netns: &str, dst: &str) -> Result<(), String> {
    let out = crate::common::output(&["ip", "netns", "exec", netns, "ping", "-c1", "-W1", dst]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ping {dst} from {netns}: {}",
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}
