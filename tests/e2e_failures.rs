//! End-to-end failure cases in network namespaces with wireguard-go: a crashed node, a
//! graceful leave, a wrong cluster key, and bad input (flags, env, state file, /etc/hosts).

mod common;

use common::netns::{
    assert_running, wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE,
    FAILURE_DETECTION, OTHER_CLUSTER_KEY,
};
use std::fs;
use std::time::Duration;

const LAN: [&str; 2] = ["--gossip-profile", "lan"];
/// Bounds a command that must exit promptly (bad input, SIGTERM).
const PROMPT_EXIT: Duration = Duration::from_secs(20);

fn wait_ping(from: &Node, host: &str, agents: &mut [Proc]) {
    wait_for(format!("{} to ping {host}", from.name), CONVERGE, || {
        assert_running(agents);
        from.ping(host)
    });
}

/// Starts a full mesh (node1 --init, the others --join node1 by IP) and waits until node1
/// pings every other node by name and every node pings node1.
fn start_mesh<'a>(topo: &'a Topology, extra: &[&str]) -> Vec<Proc<'a>> {
    let seed = topo.node(1).ip.to_string();
    let mut agents: Vec<Proc> = topo
        .nodes()
        .iter()
        .map(|node| {
            let cmd = node
                .wesher()
                .args(extra.iter().copied())
                .args(["--cluster-key", CLUSTER_KEY]);
            match node.name.as_str() {
                "node1" => cmd.arg("--init"),
                _ => cmd.args(["--join", &seed]),
            }
            .spawn()
        })
        .collect();
    for other in &topo.nodes()[1..] {
        wait_ping(topo.node(1), &other.name, &mut agents);
        wait_ping(other, "node1", &mut agents);
    }
    agents
}

/// What the other nodes know about `node`, to check that it is gone.
struct Footprint {
    name: String,
    public_key: String,
    overlay_addr: String,
}

impl Footprint {
    fn of(node: &Node) -> Footprint {
        Footprint {
            name: node.name.clone(),
            public_key: node.wg(DEFAULT_IFACE).unwrap().public_key,
            overlay_addr: node.overlay_addr(DEFAULT_IFACE).unwrap(),
        }
    }

    /// Ok once `observer` has no peer, route or managed hosts line left for this node.
    fn gone_from(&self, observer: &Node) -> Result<(), String> {
        let dump = observer.wg(DEFAULT_IFACE)?;
        if dump.peer(&self.public_key).is_some() {
            return Err(format!("{} still has {}'s peer", observer.name, self.name));
        }
        let routes = observer.routes(DEFAULT_IFACE)?;
        if routes
            .iter()
            .any(|r| r.split('/').next() == Some(&self.overlay_addr))
        {
            return Err(format!(
                "{} still routes {}: {routes:?}",
                observer.name, self.name
            ));
        }
        let hosts = observer.managed_hosts(DEFAULT_IFACE);
        if hosts.iter().any(|(_, name)| *name == self.name) {
            return Err(format!(
                "{} still has a hosts line for {}: {hosts:?}",
                observer.name, self.name
            ));
        }
        Ok(())
    }
}

#[test]
fn crashed_node_is_removed_after_failure_detection() {
    let Some(topo) = Topology::new(3) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_mesh(&topo, &LAN);
    let node3 = Footprint::of(topo.node(3));

    agents[2].kill();
    let mut survivors: Vec<Proc> = agents.drain(..2).collect();
    for observer in [topo.node(1), topo.node(2)] {
        wait_for(
            format!("{} to drop the crashed node3", observer.name),
            FAILURE_DETECTION,
            || {
                assert_running(&mut survivors);
                node3.gone_from(observer)
            },
        );
    }
    topo.node(1).ping("node2").unwrap();
    topo.node(2).ping("node1").unwrap();
}

/// With the default WAN profile failure detection takes well over 30 s (5 s probes, suspicion
/// 6 x 5 s), so peers dropping node3 within the 15 s below shows the leave message worked.
#[test]
fn graceful_leave_cleans_up_locally_and_on_peers() {
    let Some(topo) = Topology::new(3) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_mesh(&topo, &[]);
    let n3 = topo.node(3);
    let node3 = Footprint::of(n3);

    let mut leaving = agents.pop().unwrap();
    let status = leaving.terminate(PROMPT_EXIT);
    let status = status.unwrap_or_else(|| panic!("wesher ignored SIGTERM: {}", leaving.log()));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {}",
        leaving.log()
    );

    for observer in [topo.node(1), topo.node(2)] {
        wait_for(
            format!("{} to drop node3 after its leave", observer.name),
            Duration::from_secs(15),
            || {
                assert_running(&mut agents);
                node3.gone_from(observer)
            },
        );
    }
    // Locally: no managed hosts lines, and the interface is deleted or left unconfigured.
    assert_eq!(n3.managed_hosts(DEFAULT_IFACE), [], "{}", n3.hosts());
    if n3.link_exists(DEFAULT_IFACE) {
        let dump = n3.wg(DEFAULT_IFACE).unwrap();
        assert!(dump.peers.is_empty(), "peers left on node3: {dump:?}");
        assert_eq!(n3.routes(DEFAULT_IFACE).unwrap(), Vec::<String>::new());
        assert_eq!(n3.addrs(DEFAULT_IFACE).unwrap(), Vec::<String>::new());
    }
    topo.node(1).ping("node2").unwrap();
}

#[test]
fn wrong_cluster_key_is_not_admitted() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_pair(&topo, OTHER_CLUSTER_KEY);
    // The intruder's log says why it is not in: its join failed, and it points at the key (a
    // bare "connection closed" leaves the user guessing).
    wait_for("node2's log to report the failed join", CONVERGE, || {
        let log = agents[1].log().to_lowercase();
        let said_why = log.lines().any(|l| {
            l.contains("join") && l.contains("fail") && (l.contains("key") || l.contains("decrypt"))
        });
        if said_why {
            Ok(())
        } else {
            Err(format!("node2's log so far: {log}"))
        }
    });
    for (node, other) in [(n1, n2), (n2, n1)] {
        let dump = node.wg(DEFAULT_IFACE).unwrap();
        assert!(
            dump.peers.is_empty(),
            "{} admitted a peer: {dump:?}",
            node.name
        );
        assert_eq!(node.managed_hosts(DEFAULT_IFACE), [], "{}", node.hosts());
        assert!(node.ping(&other.name).is_err());
    }
    // The cluster itself stays up.
    assert_running(&mut agents[..1]);
}

#[test]
fn version_and_help_exit_0() {
    let Some(topo) = Topology::new(1) else { return };
    for flag in ["--version", "--help"] {
        let out = topo.node(1).wesher().arg(flag).run(PROMPT_EXIT);
        assert_eq!(out.code(), Some(0), "wesher {flag}: {out}");
        assert!(
            !out.stdout.trim().is_empty(),
            "wesher {flag} printed nothing: {out}"
        );
    }
}

/// Invalid flags and environment values: exit 1 with `wesher: error:` before touching anything.
/// Run inside a node, so that an input wrongly accepted cannot touch the host.
#[test]
fn invalid_flags_and_env_exit_1() {
    let Some(topo) = Topology::new(1) else { return };
    let node = topo.node(1);
    let _wg = node.start_wireguard(DEFAULT_IFACE);
    let short_key = "AAECAwQFBgcICQoLDA0ODw=="; // 16 bytes
    let flag_cases: &[&[&str]] = &[
        &["--no-such-flag"],
        &["--cluster-key", "not base64!"],
        &["--cluster-key", short_key],
        &["--cluster-port", "70000"],
        &["--cluster-port", "seven"],
        &["--wireguard-port", "-1"],
        &["--overlay-net", "10.0.0.0/33"],
        &["--overlay-net", "not-a-cidr"],
        &["--log-level", "chatty"],
        &["--bind-addr", "10.99.0.1", "--bind-iface", "eth0"],
        &["--interface", "name-longer-than-15"],
        &["--join"],
        &["--gossip-profile", "moon"],
    ];
    let env_cases: &[(&str, &str)] = &[
        ("WESHER_CLUSTER_KEY", short_key),
        ("WESHER_CLUSTER_PORT", "seven"),
        ("WESHER_WIREGUARD_PORT", "65536"),
        ("WESHER_OVERLAY_NET", "10.0.0.0/99"),
        ("WESHER_INIT", "maybe"),
        ("WESHER_NO_ETC_HOSTS", "perhaps"),
        ("WESHER_LOG_LEVEL", "chatty"),
    ];
    let mut failures = Vec::new();
    let mut check = |what: String, out: common::netns::Output| {
        if out.code() != Some(1) || !out.stderr.contains("wesher: error:") {
            failures.push(format!("{what}: {out}"));
        }
    };
    for args in flag_cases {
        let out = node.wesher().args(args.iter().copied()).run(PROMPT_EXIT);
        check(format!("flags {args:?}"), out);
    }
    for (key, value) in env_cases {
        let out = node.wesher().env(key, value).run(PROMPT_EXIT);
        check(format!("env {key}={value}"), out);
    }
    assert!(
        failures.is_empty(),
        "accepted or wrongly reported:\n{}",
        failures.join("\n")
    );
    // Nothing was configured by any of them.
    let dump = node.wg(DEFAULT_IFACE).unwrap();
    assert!(
        dump.peers.is_empty() && dump.public_key == "(none)",
        "{dump:?}"
    );
}

/// A corrupt and a truncated state file: a clear error naming the file, exit 1, and the file
/// is left exactly as it was (the user may want to repair it).
#[test]
fn corrupt_or_truncated_state_file_is_reported_and_kept() {
    let Some(topo) = Topology::new(1) else { return };
    let node = topo.node(1);
    let _wg = node.start_wireguard(DEFAULT_IFACE);
    let valid = format!(
        "{{\"ClusterKey\":\"{CLUSTER_KEY}\",\"Nodes\":[{{\"Name\":\"node2\",\"Addr\":\"10.99.0.2\",\
         \"Meta\":\"\",\"OverlayAddr\":\"\",\"PubKey\":\"\"}}]}}"
    );
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "corrupt",
            b"{\"ClusterKey\": 42, \"Nodes\": \"no\"}".to_vec(),
        ),
        ("garbage", vec![0xff, 0x00, 0x13, 0x37]),
        ("truncated", valid.as_bytes()[..valid.len() / 2].to_vec()),
    ];
    let state_file = node.state_file(DEFAULT_IFACE);
    fs::create_dir_all(node.state_dir()).unwrap();
    for (what, bytes) in cases {
        fs::write(&state_file, &bytes).unwrap();
        let out = node.wesher().run(PROMPT_EXIT);
        assert_eq!(out.code(), Some(1), "{what} state file: {out}");
        assert!(
            out.stderr.contains("wesher: error:")
                && out.stderr.contains(&state_file.display().to_string()),
            "{what} state file: the error should name {}: {out}",
            state_file.display()
        );
        assert_eq!(
            fs::read(&state_file).unwrap(),
            bytes,
            "{what} state file was changed"
        );
    }
}

/// /etc/hosts read-only (a read-only bind mount in node2's mount namespace): node2 logs a
/// clear error, keeps running, and the tunnel works by overlay address; node1, whose hosts
/// file is writable, still reaches node2 by name.
#[test]
fn unwritable_etc_hosts_is_logged_and_the_mesh_still_works() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    let lock = n2.exec(
        "sh",
        &[
            "-c",
            "mount --bind /etc/hosts /etc/hosts && mount -o remount,bind,ro /etc/hosts",
        ],
    );
    assert!(
        lock.success(),
        "making node2's /etc/hosts read-only: {lock}"
    );
    assert!(
        !n2.exec("sh", &["-c", "echo >> /etc/hosts"]).success(),
        "still writable"
    );
    let hosts_before = n2.hosts();

    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = start_pair(&topo, CLUSTER_KEY);
    wait_ping(n1, "node2", &mut agents);
    let n1_overlay = n1.overlay_addr(DEFAULT_IFACE).unwrap();
    wait_ping(n2, &n1_overlay, &mut agents);
    wait_for(
        "node2's log to report the hosts write failure",
        CONVERGE,
        || {
            let log = agents[1].log().to_lowercase();
            if log.contains("/etc/hosts") && (log.contains("read-only") || log.contains("error")) {
                Ok(())
            } else {
                Err(format!("node2's log so far: {log}"))
            }
        },
    );
    assert_running(&mut agents);
    assert_eq!(n2.hosts(), hosts_before);
}

/// node1 --init and node2 --join node1 (by IP) with `joiner_key`; no waiting.
fn start_pair<'a>(topo: &'a Topology, joiner_key: &str) -> Vec<Proc<'a>> {
    let (n1, n2) = (topo.node(1), topo.node(2));
    vec![
        n1.wesher()
            .args(LAN)
            .args(["--cluster-key", CLUSTER_KEY, "--init"])
            .spawn(),
        n2.wesher()
            .args(LAN)
            .args(["--cluster-key", joiner_key, "--join", &n1.ip.to_string()])
            .spawn(),
    ]
}

/// SIGTERM while the agent is still trying to join (the seed does not answer): it exits at
/// once with status 0 and leaves nothing behind (Go ignores signals in this phase).
#[test]
fn sigterm_during_the_join_phase_exits_cleanly() {
    let Some(topo) = Topology::new(1) else { return };
    let node = topo.node(1);
    let _wg = node.start_wireguard(DEFAULT_IFACE);
    // An address on the node's own subnet where no one lives: connects fail or hang.
    let nobody = format!("{}", std::net::Ipv4Addr::from(u32::from(node.ip) + 100));
    let mut agent = node
        .wesher()
        .args(LAN)
        .args(["--cluster-key", CLUSTER_KEY, "--join", &nobody])
        .spawn();
    wait_for("the agent to start joining", CONVERGE, || {
        assert_running(std::slice::from_mut(&mut agent));
        let log = agent.log().to_lowercase();
        log.contains("join").then_some(()).ok_or(log)
    });
    let status = agent
        .terminate(PROMPT_EXIT)
        .unwrap_or_else(|| panic!("SIGTERM ignored while joining: {}", agent.log()));
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert_eq!(node.managed_hosts(DEFAULT_IFACE), []);
}

/// --no-etc-hosts: the tunnel works (by overlay address) and no node's /etc/hosts changes.
#[test]
fn no_etc_hosts_leaves_the_hosts_files_alone() {
    let Some(topo) = Topology::new(2) else { return };
    let (n1, n2) = (topo.node(1), topo.node(2));
    let before: Vec<String> = topo.nodes().iter().map(Node::hosts).collect();
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = vec![
        n1.wesher()
            .args(LAN)
            .args(["--no-etc-hosts", "--cluster-key", CLUSTER_KEY, "--init"])
            .spawn(),
        n2.wesher()
            .args(LAN)
            .env("WESHER_NO_ETC_HOSTS", "true")
            .args(["--cluster-key", CLUSTER_KEY, "--join", &n1.ip.to_string()])
            .spawn(),
    ];
    let n2_overlay = wait_for("node2's overlay address", CONVERGE, || {
        n2.overlay_addr(DEFAULT_IFACE)
    });
    let n1_overlay = wait_for("node1's overlay address", CONVERGE, || {
        n1.overlay_addr(DEFAULT_IFACE)
    });
    wait_ping(n1, &n2_overlay, &mut agents);
    wait_ping(n2, &n1_overlay, &mut agents);
    let after: Vec<String> = topo.nodes().iter().map(Node::hosts).collect();
    assert_eq!(after, before);
}

/// Without a WireGuard implementation, or without the privilege to make a link, wesher stops at
/// once and says which one is missing.
#[test]
fn missing_wireguard_or_privilege_is_named() {
    let Some(topo) = Topology::new(1) else { return };
    let node = topo.node(1);
    let wesher = env!("CARGO_BIN_EXE_wesher");
    let base = std::env::temp_dir().join(common::unique("wesher-missing"));
    let args = |state: &str| {
        [
            "--no-etc-hosts",
            "--interface",
            "wgmissing",
            "--cluster-key",
            CLUSTER_KEY,
            "--state-dir",
            state,
        ]
        .map(String::from)
    };

    // No wireguard-go was started for this interface; a kernel with WireGuard would simply work.
    let probe = node.exec("ip", &["link", "add", "wgprobe", "type", "wireguard"]);
    if probe.success() {
        node.exec("ip", &["link", "del", "wgprobe"]);
        eprintln!("this kernel has WireGuard: the missing-module message cannot be shown");
    } else {
        let state = base.join("root");
        let a = args(state.to_str().unwrap());
        let out = node.exec(wesher, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(
            out.stderr
                .contains("the kernel has no WireGuard module; install wireguard-go"),
            "{out}"
        );
    }

    // A state directory the unprivileged user may write, so that the link is what fails.
    let state = base.join("nobody");
    fs::create_dir_all(&state).unwrap();
    fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut unprivileged = vec![
        "--reuid=65534".to_string(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        wesher.into(),
    ];
    unprivileged.extend(args(state.to_str().unwrap()));
    let out = node.exec(
        "setpriv",
        &unprivileged.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("wesher needs root, or the CAP_NET_ADMIN capability"),
        "{out}"
    );
    let _ = fs::remove_dir_all(&base);
}
