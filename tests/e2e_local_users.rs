//! Hostile local users. node1's agent runs as an unprivileged uid with CAP_NET_ADMIN only: all
//! it needs next to a wireguard-go of the same uid (whose UAPI socket is then that uid's), with
//! its state directory and the control socket's directory handed to it, and --no-etc-hosts.
//! node2's agent runs as root.
//! - The unprivileged agent is not dumpable: its /proc files belong to root, not to its uid, so
//!   no other process of that uid may read its memory or ptrace it. A process started the same
//!   way that does not opt out (`sleep`) is owned by its uid: the check tells the two apart.
//! - Both control sockets, opened up to every user by hand, answer only root and the agent's
//!   own uid; a refused client is told why, and the agent logs refusals at a bounded rate.

mod beyond_support;
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use beyond_support::{client, start, wait_ping, LAN};
use common::netns::{wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE, WESHER};

/// nobody: the unprivileged agent's uid (and gid).
const AGENT_UID: u32 = 65534;
/// A local user that is neither root nor an agent's.
const STRANGER_UID: u32 = 4242;
/// How often one refused line may be logged (membership::noise's interval).
const NOISE_INTERVAL: Duration = Duration::from_secs(10);

/// setpriv and its arguments, running a program as `uid` (gid the same, no groups) with the
/// capabilities `caps` (ambient, so that they survive the exec).
fn as_uid(uid: u32, caps: &[&str]) -> Vec<String> {
    let mut args = vec![
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_string(),
    ];
    if !caps.is_empty() {
        let caps: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
        let caps = caps.join(",");
        args.push(format!("--inh-caps={caps}"));
        args.push(format!("--ambient-caps={caps}"));
    }
    args.push("--".to_string());
    args
}

fn exec_ok(node: &Node, program: &str, args: &[&str]) {
    let out = node.exec(program, args);
    assert!(out.success(), "{program} {args:?} in {}: {out}", node.name);
}

/// Who owns /proc/PID/status (root for a non-dumpable process) and the real uid it runs as,
/// once PID runs `comm` (nsenter and setpriv exec it in the same process).
fn proc_owner_and_uid(pid: u32, comm: &str) -> (u32, u32) {
    wait_for(format!("PID {pid} to run {comm}"), CONVERGE, || {
        let now = fs::read_to_string(format!("/proc/{pid}/comm")).map_err(|e| e.to_string())?;
        if now.trim() == comm {
            Ok(())
        } else {
            Err(format!("it runs {now:?}"))
        }
    });
    let path = format!("/proc/{pid}/status");
    let owner = fs::metadata(&path).expect("proc status").uid();
    let status = fs::read_to_string(&path).expect("proc status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Uid in {path}"));
    (owner, uid)
}

/// wireguard-go and the agent as AGENT_UID, the agent with CAP_NET_ADMIN only, the files they
/// need handed to that uid. wireguard-go also gets CAP_DAC_OVERRIDE, to open /dev/net/tun where
/// only root may; it is not under test. (Its socket cannot be chown-ed to the agent instead:
/// wireguard-go exits on any change to its socket file.)
fn start_unprivileged(node: &Node) -> (Proc<'_>, Proc<'_>) {
    let uid = AGENT_UID.to_string();
    exec_ok(
        node,
        "install",
        &["-d", "-m", "0755", "-o", &uid, "-g", &uid, "/run/wireguard"],
    );
    let wg = node.start_wireguard_via(
        DEFAULT_IFACE,
        &as_uid(AGENT_UID, &["net_admin", "dac_override"]),
    );
    exec_ok(
        node,
        "install",
        &["-d", "-m", "0700", "-o", &uid, "-g", &uid, "/run/wesher"],
    );
    let state = node.state_dir();
    fs::create_dir_all(&state).expect("state dir");
    std::os::unix::fs::chown(&state, Some(AGENT_UID), Some(AGENT_UID)).expect("chown state dir");
    let agent = node
        .wesher()
        .via(&as_uid(AGENT_UID, &["net_admin"]))
        .args(LAN)
        .args(["--cluster-key", CLUSTER_KEY, "--init", "--no-etc-hosts"])
        .spawn();
    (wg, agent)
}

/// `wesher status` in `node` as `uid` (without capabilities).
fn status_as(node: &Node, uid: u32) -> common::netns::Output {
    let mut args = as_uid(uid, &[]);
    args.extend([WESHER.to_string(), "status".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    node.exec(args[0], &args[1..])
}

#[test]
fn local_users_can_neither_dump_the_agent_nor_use_its_control_socket() {
    if !common::prerequisites(&["setpriv", "install", "chmod"]) {
        return;
    }
    let Some(topo) = Topology::new(2) else { return };
    let (node1, node2) = (topo.node(1), topo.node(2));
    let (_wg1, agent1) = start_unprivileged(node1);
    let _wg2 = node2.start_wireguard(DEFAULT_IFACE);
    let mut agents = vec![agent1];
    agents.push(start(node2, CLUSTER_KEY, Some(&node1.ip.to_string()), &[]));
    // The unprivileged agent does its job: node2 learns node1's name, and node1 (which writes
    // no hosts file) reaches node2's overlay address.
    wait_ping(node2, "node1", &mut agents);
    let node2_overlay = wait_for("node2's overlay address", CONVERGE, || {
        node2.overlay_addr(DEFAULT_IFACE)
    });
    wait_ping(node1, &node2_overlay, &mut agents);

    let (owner, uid) = proc_owner_and_uid(agents[0].pid(), "wesher");
    assert_eq!(uid, AGENT_UID, "the agent does not run as {AGENT_UID}");
    assert_eq!(
        owner, 0,
        "the agent's /proc files belong to uid {owner}: it is dumpable"
    );
    let wrapper = as_uid(AGENT_UID, &["net_admin"]);
    let mut sleep = node1.command_via(&wrapper, "sleep");
    sleep.arg("600");
    let sleeper = node1.spawn("sleep", sleep);
    assert_eq!(
        proc_owner_and_uid(sleeper.pid(), "sleep"),
        (AGENT_UID, AGENT_UID),
        "a dumpable process started the same way should own its /proc files"
    );
    drop(sleeper);

    for (node, agent, agent_uid, stranger) in [
        (node1, &agents[0], AGENT_UID, STRANGER_UID),
        (node2, &agents[1], 0, AGENT_UID),
    ] {
        // Opened up by hand: only the agent's own check stands in the way.
        exec_ok(node, "chmod", &["0755", "/run/wesher"]);
        exec_ok(
            node,
            "chmod",
            &["0666", &format!("/run/wesher/{DEFAULT_IFACE}.sock")],
        );
        let started = Instant::now();
        let attempts = 5;
        for _ in 0..attempts {
            let out = status_as(node, stranger);
            assert!(
                !out.success(),
                "uid {stranger} got the status of {}: {out}",
                node.name
            );
            let why = format!("refused: only root and uid {agent_uid} (the agent's)");
            assert!(out.stderr.contains(&why), "{}: {out}", node.name);
        }
        let elapsed = started.elapsed();
        let refusal = format!("refusing a client of uid {stranger}");
        let lines = wait_for(
            format!("{}'s refusal log line", node.name),
            CONVERGE,
            || {
                let log = agent.log();
                let lines: Vec<String> = log
                    .lines()
                    .filter(|l| l.contains(&refusal))
                    .map(str::to_string)
                    .collect();
                if lines.is_empty() {
                    Err(format!("no line with {refusal:?} in {log}"))
                } else {
                    Ok(lines)
                }
            },
        );
        let bound = 1 + elapsed.as_secs() / NOISE_INTERVAL.as_secs();
        assert!(
            lines.len() as u64 <= bound.min(attempts),
            "{} lines for {attempts} refusals in {elapsed:?}: {lines:?}",
            lines.len()
        );
        assert!(lines.iter().all(|l| l.starts_with("WARN")), "{lines:?}");
        let out = client(node, &["status"]);
        assert!(out.success(), "root's status in {}: {out}", node.name);
        if agent_uid != 0 {
            let out = status_as(node, agent_uid);
            assert!(
                out.success(),
                "the agent's own uid's status in {}: {out}",
                node.name
            );
        }
    }
}
