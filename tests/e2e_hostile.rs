//! A hostile network namespace without the cluster key, on the same bridge as a real mesh
//! (wesher + wireguard-go in namespaces): idle TCP connections, stream frames claiming 20 MiB
//! and garbage datagrams must neither lock a new node out nor exhaust memory nor break the
//! mesh; and at trace level no log holds a secret. The attacker runs in this process, on a
//! thread that entered the hostile node's network namespace.
//!
//! Each test prints what it measured (`BENCH ...` lines, collected by bench/hostile); the
//! assertions hold bounds that a broken build misses by far, not timings.

mod beyond_support;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use beyond_support::{client, start, wait_ping};
use common::enter_netns;
use common::netns::{wait_for, Node, Proc, Topology, CLUSTER_KEY, CONVERGE, DEFAULT_IFACE};
use wesher::control::Status;

const GOSSIP_PORT: u16 = 7946;

fn gossip_addr(node: &Node) -> SocketAddr {
    SocketAddr::from((node.ip, GOSSIP_PORT))
}

/// Whether `node`'s agent lists `name` as an alive member.
fn sees_alive(node: &Node, name: &str) -> Result<(), String> {
    let out = client(node, &["status", "--json"]);
    if !out.success() {
        return Err(format!("wesher status in {}: {out}", node.name));
    }
    let status = Status::from_json(&out.stdout)
        .ok_or_else(|| format!("unparsable status: {:?}", out.stdout))?;
    if status
        .members
        .iter()
        .any(|m| m.name == name && m.state == "alive")
    {
        Ok(())
    } else {
        Err(format!(
            "{} does not see {name} alive: {status:?}",
            node.name
        ))
    }
}

/// A line from /proc/PID/status, in kB (VmHWM, VmRSS).
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU time (user + system) of PID, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// The PID of the wesher process itself (nsenter execs it, so the spawned PID).
fn wesher_pid(agent: &Proc) -> u32 {
    let pid = agent.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "wesher", "PID {pid} is not wesher");
    pid
}

/// Holds `count` idle TCP connections to `target` until `until`, opening again every one
/// the node closed, four times a second. Returns how many connections it opened in all.
fn hold_idle_connections(target: SocketAddr, count: usize, until: Instant) -> usize {
    let mut conns: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    let mut opened = 0;
    while Instant::now() < until {
        for slot in conns.iter_mut() {
            let closed = match slot {
                None => true,
                Some(conn) => match conn.read(&mut [0u8; 256]) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != ErrorKind::WouldBlock,
                },
            };
            if closed {
                *slot = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                    .and_then(|c| c.set_nonblocking(true).map(|()| c))
                    .ok();
                opened += usize::from(slot.is_some());
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    opened
}

/// Keeps `count` streams open to `target`, each starting a frame that claims 20 MiB and then
/// sending garbage as fast as the node takes it, until `until`. Returns the streams opened.
fn claim_huge_frames(target: SocketAddr, count: usize, until: Instant) -> usize {
    let mut header = vec![0x0a];
    header.extend_from_slice(&(20u32 << 20).to_be_bytes());
    let chunk = vec![0x5a; 64 * 1024];
    let mut conns: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    let mut opened = 0;
    while Instant::now() < until {
        for slot in conns.iter_mut() {
            let alive = match slot {
                None => false,
                Some(conn) => match conn.write(&chunk) {
                    Ok(_) => true,
                    Err(e) => e.kind() == ErrorKind::WouldBlock,
                },
            };
            if !alive {
                *slot = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                    .and_then(|mut c| c.write_all(&header).map(|()| c))
                    .and_then(|c| c.set_nonblocking(true).map(|()| c))
                    .ok();
                opened += usize::from(slot.is_some());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    opened
}

/// Sends `count` datagrams of pseudo-random bytes and lengths (1..=1400) to `target`, as fast
/// as the socket goes.
fn garbage_datagrams(target: SocketAddr, count: usize) {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind attacker UDP");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = [0u8; 1400];
    for _ in 0..count {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let len = 1 + (x as usize % buf.len());
        // ENOBUFS and the like: a dropped packet is part of a flood.
        let _ = socket.send_to(&buf[..len], target);
    }
}

/// A mesh of node1 (init) and node3 (join), with node2 the hostile namespace (no agent).
fn mesh<'a>(topo: &'a Topology, extra: &[&str]) -> Vec<Proc<'a>> {
    let seed = topo.node(1).ip.to_string();
    let mut agents = vec![start(topo.node(1), CLUSTER_KEY, None, extra)];
    agents.push(start(topo.node(3), CLUSTER_KEY, Some(&seed), extra));
    wait_ping(topo.node(1), "node3", &mut agents);
    wait_ping(topo.node(3), "node1", &mut agents);
    agents
}

/// Where node1's agent listens, and the network namespace of node2 (the hostile one).
fn attack(topo: &Topology) -> (SocketAddr, String) {
    (gossip_addr(topo.node(1)), topo.node(2).netns.clone())
}

/// The time from starting node4's agent (joining node1) until node4 lists node1 alive.
fn join_delay<'a>(topo: &'a Topology, agents: &mut Vec<Proc<'a>>) -> Duration {
    let seed = topo.node(1).ip.to_string();
    let started = Instant::now();
    agents.push(start(topo.node(4), CLUSTER_KEY, Some(&seed), &[]));
    wait_for("node4 to join node1 during the attack", CONVERGE, || {
        sees_alive(topo.node(4), "node1")
    });
    started.elapsed()
}

#[test]
fn idle_connections_do_not_lock_a_new_node_out() {
    let Some(topo) = Topology::new(4) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = mesh(&topo, &[]);
    let (target, hostile) = attack(&topo);
    let attack_ends = Instant::now() + Duration::from_secs(60);
    thread::scope(|s| {
        let attacker =
            s.spawn(|| enter_netns(&hostile, || hold_idle_connections(target, 300, attack_ends)));
        // Let the attack fill whatever it can first, and join between two expiries of its
        // connections (the LAN profile's tcp_timeout is 10 s): no lucky gap.
        thread::sleep(Duration::from_secs(15));
        let delay = join_delay(&topo, &mut agents);
        assert!(
            Instant::now() < attack_ends,
            "the join only got through after the attack ({delay:?})"
        );
        // Through at the first attempt: never refused, never retried.
        let log = agents[2].log();
        assert!(log.contains("joined through"), "{log}");
        assert!(
            !log.lines()
                .any(|l| l.contains("join") && l.contains("failed")),
            "a join attempt was refused: {log}"
        );
        let opened = attacker.join().expect("attacker");
        println!("BENCH join delay with 300 idle connections held: {delay:?} ({opened} connections opened in 60 s)");
        assert!(opened >= 300, "the attack never got going: {opened}");
    });
    wait_ping(topo.node(4), "node1", &mut agents);
    sees_alive(topo.node(1), "node3").expect("the mesh is intact");
}

#[test]
fn frames_claiming_20_mib_cost_little_memory() {
    let Some(topo) = Topology::new(4) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = mesh(&topo, &[]);
    let pid = wesher_pid(&agents[0]);
    let (target, hostile) = attack(&topo);
    let before = proc_kb(pid, "VmHWM");
    let attack_ends = Instant::now() + Duration::from_secs(20);
    let (opened, delay) = thread::scope(|s| {
        let attacker =
            s.spawn(|| enter_netns(&hostile, || claim_huge_frames(target, 64, attack_ends)));
        thread::sleep(Duration::from_secs(5));
        let delay = join_delay(&topo, &mut agents);
        (attacker.join().expect("attacker"), delay)
    });
    let after = proc_kb(pid, "VmHWM");
    let growth = after.saturating_sub(before);
    println!(
        "BENCH peak RSS growth under 64 streams claiming 20 MiB: {growth} KiB \
         (VmHWM {before} -> {after} KiB, {opened} streams opened); join delay {delay:?}"
    );
    assert!(opened >= 64, "the attack never got going: {opened}");
    assert!(growth < 16 * 1024, "peak RSS grew by {growth} KiB");
    // Still serving: the new node and the old one are members, pings go through.
    wait_ping(topo.node(4), "node1", &mut agents);
    sees_alive(topo.node(1), "node3").expect("the mesh is intact");
}

#[test]
fn garbage_datagrams_leave_the_mesh_and_the_log_alone() {
    let Some(topo) = Topology::new(3) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = mesh(&topo, &[]);
    let pid = wesher_pid(&agents[0]);
    let (target, hostile) = attack(&topo);
    let lines_before = agents[0].log().lines().count();
    let cpu_before = cpu_ticks(pid);
    let sent = Instant::now();
    enter_netns(&hostile, || garbage_datagrams(target, 20_000));
    let send_time = sent.elapsed();
    // The node has read them all once its packet counter stops moving; a second is plenty.
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_ticks(pid) - cpu_before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    println!(
        "BENCH CPU for 20000 garbage datagrams (sent in {send_time:?}): {} ms, {} ms per 10000",
        cpu * 1000 / hz,
        cpu * 1000 / hz / 2
    );
    let new_lines = agents[0].log().lines().count() - lines_before;
    println!("BENCH log lines during the flood (debug level): {new_lines}");
    assert!(new_lines < 100, "{new_lines} log lines for one flood");
    for (from, to) in [(1, "node3"), (3, "node1")] {
        wait_ping(topo.node(from), to, &mut agents);
    }
    sees_alive(topo.node(1), "node3").expect("the mesh is intact");
    sees_alive(topo.node(3), "node1").expect("the mesh is intact");
}

/// Every spelling of a 32-byte secret that could end up in a log.
fn spellings(key: &[u8]) -> Vec<String> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    vec![wesher::base64::encode(key), hex.clone(), hex.to_uppercase()]
}

#[test]
fn no_secret_reaches_any_log_at_trace_level() {
    let Some(topo) = Topology::new(3) else { return };
    let _wg = topo.start_wireguard_all(DEFAULT_IFACE);
    let mut agents = mesh(&topo, &["--log-level", "trace"]);
    // A key rotation through the control socket, key on standard input.
    let second = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";
    let mut install = topo.node(1).command(common::netns::WESHER);
    install
        .args(["key", "install"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = install.spawn().expect("wesher key install");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{second}\n").as_bytes())
        .expect("write the key");
    assert!(child.wait().expect("wait").success(), "key install failed");
    for node in [topo.node(1), topo.node(3)] {
        assert!(client(node, &["status"]).success());
    }
    let mut secrets = Vec::new();
    for key in [CLUSTER_KEY, second] {
        secrets.extend(spellings(&wesher::base64::decode_key(key).expect("key")));
    }
    for node in [topo.node(1), topo.node(3)] {
        let out = node.exec("wg", &["show", DEFAULT_IFACE, "private-key"]);
        assert!(out.success(), "{out}");
        let private = wesher::base64::decode_key(out.stdout.trim()).expect("private key");
        secrets.extend(spellings(&private));
    }
    for agent in &mut agents {
        agent.terminate(Duration::from_secs(20));
    }
    let mut trace_lines = 0;
    for node in topo.nodes() {
        for entry in std::fs::read_dir(node.dir()).expect("node dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                let log = read_lossy(&path);
                trace_lines += log.lines().filter(|l| l.contains("TRACE")).count();
                for secret in &secrets {
                    assert!(
                        !log.contains(secret.as_str()),
                        "{} holds a secret ({secret})",
                        path.display()
                    );
                }
                assert!(!log.contains("[neli"), "{} has neli lines", path.display());
            }
        }
    }
    println!(
        "searched the logs ({trace_lines} trace lines) for {} spellings of 4 secrets",
        secrets.len()
    );
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).expect("read log")).into_owned()
}
