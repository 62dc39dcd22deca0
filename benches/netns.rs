//! Benchmarks of the real wesher binary in network namespaces with wireguard-go (root).
//!
//! Topology: one router namespace and one namespace per node, each node on its own /24
//! (10.97.<i>.2, router 10.97.<i>.1), so that no namespace has more than one neighbour besides
//! the router (a shared bridge overflows the machine-wide neighbour table at 50 nodes). Each
//! node has a holder process owning private mount and UTS namespaces: hostname node<i>, /etc an
//! overlay (wesher's /etc/hosts edits stay in the node), /run a tmpfs (wireguard-go's socket).
//!
//! Figures:
//! - footprint of one idle 3-node mesh: RSS, peak RSS, threads, fds, CPU per idle minute;
//! - per size: join seen by all (from spawning the new node's wesher until every other node's
//!   wireguard-go lists it, read through the UAPI socket as `wg show` does), crash detected by all
//!   (SIGKILL until every other node removed the peer), gossip bytes per second counted by
//!   nftables on the router (cluster port, UDP and TCP, IP bytes);
//! - WireGuard and netlink work on one node while another joins and crashes: strace of its
//!   writes to the UAPI socket and to rtnetlink.
//!
//! `cargo bench --bench netns -- [--sizes 3,10,50] [--trials 3] [--idle SECS] [--profile wan|lan]
//!  [--lan-from N] [--quick]`. Every namespace and process it starts is removed by name / PID
//! on exit, also on failure.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

const WESHER: &str = env!("CARGO_BIN_EXE_wesher");
/// The binary measured: WESHER_BENCH_BIN (a router build, e.g. target/cross/T/wesher), else
/// this build's.
fn wesher_bin() -> String {
    std::env::var("WESHER_BENCH_BIN").unwrap_or_else(|_| WESHER.to_string())
}
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const IFACE: &str = "wgoverlay";
const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(300);

type Res<T> = Result<T, String>;

fn run(cmd: &mut Command) -> Res<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Res<String> {
    run(Command::new("ip").args(args))
}

/// Signals a process we started, by PID.
fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; always reaped.
fn stop(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_none() {
        signal(child, "TERM");
        let end = Instant::now() + grace;
        while Instant::now() < end && child.try_wait().ok().flatten().is_none() {
            sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

struct Node {
    ns: String,
    addr: String,
    dir: PathBuf,
    holder: Child,
    wg: Option<Child>,
    wesher: Option<Child>,
}

impl Node {
    /// A command run inside the node (its network, mounts and hostname).
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.holder.id().to_string(),
            "--mount",
            "--uts",
            "--net",
            "--",
        ]);
        c.arg(program);
        c
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
    }

    fn socket(&self) -> PathBuf {
        self.root().join(format!("run/wireguard/{IFACE}.sock"))
    }

    /// Public keys of the peers wireguard-go has, as `wg show` reads them (UAPI get).
    fn peers(&self) -> Res<usize> {
        let mut s = UnixStream::connect(self.socket()).map_err(|e| format!("uapi: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"get=1\n\n").map_err(|e| e.to_string())?;
        // The reply ends with errno=N and a blank line; the connection stays open.
        let mut peers = 0;
        for line in BufReader::new(s).lines() {
            let line = line.map_err(|e| format!("uapi: {e}"))?;
            if let Some(errno) = line.strip_prefix("errno=") {
                return match errno {
                    "0" => Ok(peers),
                    e => Err(format!("uapi get: errno {e}")),
                };
            }
            peers += usize::from(line.starts_with("public_key="));
        }
        Err("uapi: reply ended early".into())
    }

    /// Starts wesher as `name` with a fresh state directory.
    fn start_wesher(&mut self, name: &str, profile: &str, join: Option<&str>) -> Res<()> {
        let log = fs::File::create(self.dir.join(format!("wesher-{name}.log")))
            .map_err(|e| e.to_string())?;
        let _ = fs::remove_dir_all(self.dir.join("state"));
        let mut c = self.cmd(&wesher_bin());
        c.args([
            "--cluster-key",
            KEY,
            "--bind-addr",
            &self.addr,
            "--node-name",
            name,
        ]);
        c.args(["--gossip-profile", profile, "--log-level", "info"]);
        c.arg("--state-dir").arg(self.dir.join("state"));
        match join {
            Some(addr) => c.args(["--join", addr]),
            None => c.arg("--init"),
        };
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("wesher: {e}"))?;
        self.wesher = Some(child);
        Ok(())
    }

    fn wesher_pid(&self) -> Option<u32> {
        self.wesher.as_ref().map(Child::id)
    }
}

/// The namespaces and processes of one run; dropping it removes them all.
struct Lab {
    tag: String,
    work: PathBuf,
    router: String,
    nodes: Vec<Node>,
}

impl Lab {
    fn new() -> Res<Lab> {
        let tag = format!("wb{}", std::process::id());
        let work = std::env::temp_dir().join(format!("wesher-bench-{tag}"));
        fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let router = format!("{tag}r");
        let lab = Lab {
            tag,
            work,
            router,
            nodes: Vec::new(),
        };
        ip(&["netns", "add", &lab.router])?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            &lab.router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        // Count the cluster port (gossip) and the WireGuard port on everything routed.
        let rules = "table inet wbench {\n chain counted {\n  type filter hook forward priority 0; policy accept;\n  udp dport 7946 counter comment \"udp\"\n  tcp dport 7946 counter comment \"tcp_to\"\n  tcp sport 7946 counter comment \"tcp_from\"\n  udp dport 51820 counter comment \"wireguard\"\n }\n}\n";
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &lab.router, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        if let Some(mut stdin) = nft.stdin.take() {
            stdin
                .write_all(rules.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let status = nft.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("nft rules failed".into());
        }
        Ok(lab)
    }

    /// Adds node number len+1 with wireguard-go running; wesher is not started.
    fn add_node(&mut self) -> Res<usize> {
        let i = self.nodes.len() + 1;
        let ns = format!("{}n{i}", self.tag);
        let addr = format!("10.97.{i}.2");
        let dir = self.work.join(format!("node{i}"));
        for d in ["etc-upper", "etc-work", "state"] {
            fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
        }
        ip(&["netns", "add", &ns])?;
        let veth = format!("v{i}");
        ip(&[
            "-n",
            &self.router,
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&[
            "-n",
            &self.router,
            "addr",
            "add",
            &format!("10.97.{i}.1/24"),
            "dev",
            &veth,
        ])?;
        ip(&["-n", &self.router, "link", "set", &veth, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.97.{i}.1"),
        ])?;
        let holder = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["--", "unshare", "--mount", "--uts", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "set -e; mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$1,workdir=$2\" /etc; \
                 mount -t tmpfs -o mode=0755 tmpfs /run; echo \"$3\" > /proc/sys/kernel/hostname; \
                 touch /run/ready; exec sleep infinity",
            )
            .arg("holder")
            .arg(dir.join("etc-upper"))
            .arg(dir.join("etc-work"))
            .arg(format!("node{i}"))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("holder: {e}"))?;
        let mut node = Node {
            ns,
            addr,
            dir,
            holder,
            wg: None,
            wesher: None,
        };
        wait_for("holder mounts", Duration::from_secs(10), || {
            node.root().join("run/ready").exists()
        })?;
        let log = fs::File::create(node.dir.join("wireguard-go.log")).map_err(|e| e.to_string())?;
        node.wg = Some(
            node.cmd("wireguard-go")
                .args(["-f", IFACE])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("wireguard-go: {e}"))?,
        );
        wait_for("wireguard-go socket", Duration::from_secs(10), || {
            node.socket().exists()
        })?;
        self.nodes.push(node);
        Ok(i - 1)
    }

    /// nftables counters on the router: name -> (packets, bytes).
    fn counters(&self) -> Res<HashMap<String, (u64, u64)>> {
        let text = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.router,
            "nft",
            "list",
            "table",
            "inet",
            "wbench",
        ]))?;
        let mut out = HashMap::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|p| words.get(p + 1))
                    .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
            };
            let name = words
                .iter()
                .position(|w| *w == "comment")
                .and_then(|p| words.get(p + 1))
                .map(|v| v.trim_matches('"').to_owned());
            if let (Some(name), Some(p), Some(b)) = (name, after("packets"), after("bytes")) {
                out.insert(name, (p, b));
            }
        }
        Ok(out)
    }

    fn gossip_bytes(&self) -> Res<(u64, u64)> {
        let c = self.counters()?;
        let get = |k: &str| c.get(k).copied().unwrap_or((0, 0));
        let udp = get("udp").1;
        let tcp = get("tcp_to").1 + get("tcp_from").1;
        Ok((udp, tcp))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().rev() {
            if let Some(w) = node.wesher.as_mut() {
                stop(w, Duration::from_secs(3));
            }
        }
        for node in self.nodes.iter_mut().rev() {
            if let Some(w) = node.wg.as_mut() {
                stop(w, Duration::from_secs(2));
            }
            stop(&mut node.holder, Duration::from_secs(1));
            let _ = ip(&["netns", "del", &node.ns]);
        }
        let _ = ip(&["netns", "del", &self.router]);
        let _ = fs::remove_dir_all(&self.work);
    }
}

static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Sleeps `d`, or fails at once after SIGINT / SIGTERM so that `Lab` cleans up on the way out.
fn pause(d: Duration) -> Res<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if STOP.get().is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err("interrupted".into());
        }
        sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Res<Duration> {
    let start = Instant::now();
    loop {
        if ok() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        pause(POLL)?;
    }
}

/// Waits until every node in `watch` has `want` peers; the time the last one got there.
fn all_have(lab: &Lab, watch: &[usize], want: usize, start: Instant) -> Res<Duration> {
    let mut pending: Vec<usize> = watch.to_vec();
    let mut last = Duration::ZERO;
    while !pending.is_empty() {
        if start.elapsed() > LIMIT {
            return Err(format!(
                "nodes {pending:?} did not reach {want} peers in {LIMIT:?}"
            ));
        }
        let now = start.elapsed();
        pending.retain(|&i| match lab.nodes[i].peers() {
            Ok(n) if n == want => {
                last = now;
                false
            }
            _ => true,
        });
        pause(POLL)?;
    }
    Ok(last)
}

/// Process figures from /proc.
struct ProcStat {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    fds: usize,
    cpu_ns: u64,
}

fn proc_stat(pid: u32) -> Res<ProcStat> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("no {name} in /proc/{pid}/status"))
    };
    // On-CPU nanoseconds of every thread (schedstat: exact, unlike the 10 ms ticks of stat).
    let mut cpu_ns = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())? {
        let path = task.map_err(|e| e.to_string())?.path().join("schedstat");
        let text = fs::read_to_string(path).unwrap_or_default();
        cpu_ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| e.to_string())?
        .count();
    Ok(ProcStat {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
        fds,
        cpu_ns,
    })
}

fn spread(mut v: Vec<f64>, decimals: usize) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (v[0], v[(v.len() - 1) / 2], v[v.len() - 1]);
    format!("{lo:.decimals$} / {mid:.decimals$} / {hi:.decimals$}")
}

struct Options {
    sizes: Vec<usize>,
    trials: usize,
    idle: Duration,
    /// Sizes from this one on use the LAN profile (WAN detection takes minutes).
    lan_from: usize,
    rate_window: Duration,
}

fn parse_args() -> Res<Options> {
    use lexopt::prelude::*;
    let mut o = Options {
        sizes: vec![3, 10, 50],
        trials: 5,
        idle: Duration::from_secs(600),
        lan_from: 10,
        rate_window: Duration::from_secs(120),
    };
    let mut p = lexopt::Parser::from_env();
    let num = |p: &mut lexopt::Parser| -> Res<u64> {
        p.value()
            .map_err(|e| e.to_string())?
            .string()
            .map_err(|e| format!("{e:?}"))?
            .parse()
            .map_err(|e| format!("{e}"))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("bench") => {}
            Long("sizes") => {
                let v = p.value().map_err(|e| e.to_string())?;
                o.sizes = v
                    .to_string_lossy()
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("bad size {s:?}")))
                    .collect::<Res<_>>()?;
            }
            Long("trials") => o.trials = num(&mut p)? as usize,
            Long("idle") => o.idle = Duration::from_secs(num(&mut p)?),
            Long("lan-from") => o.lan_from = num(&mut p)? as usize,
            Long("window") => o.rate_window = Duration::from_secs(num(&mut p)?),
            Long("quick") => {
                o.trials = 3;
                o.idle = Duration::from_secs(60);
                o.rate_window = Duration::from_secs(60);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if o.sizes.iter().any(|&n| n < 2) || o.trials == 0 {
        return Err("sizes must be >= 2 and trials >= 1".into());
    }
    Ok(o)
}

/// Starts node 0 with --init and nodes 1..n joining it; waits for the full mesh.
fn form_mesh(lab: &mut Lab, n: usize, profile: &str) -> Res<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        lab.add_node()?;
    }
    let seed = lab.nodes[0].addr.clone();
    lab.nodes[0].start_wesher("node1", profile, None)?;
    for i in 1..n {
        lab.nodes[i].start_wesher(&format!("node{}", i + 1), profile, Some(&seed))?;
    }
    let all: Vec<usize> = (0..n).collect();
    all_have(lab, &all, n - 1, start)
}

fn footprint(lab: &Lab, idle: Duration) -> Res<()> {
    let pids: Vec<u32> = lab.nodes.iter().filter_map(Node::wesher_pid).collect();
    let wg_pids: Vec<u32> = lab
        .nodes
        .iter()
        .filter_map(|n| n.wg.as_ref().map(Child::id))
        .collect();
    let before: Vec<ProcStat> = pids.iter().map(|&p| proc_stat(p)).collect::<Res<_>>()?;
    let wg_before: Vec<ProcStat> = wg_pids.iter().map(|&p| proc_stat(p)).collect::<Res<_>>()?;
    println!("idling {} s ...", idle.as_secs());
    pause(idle)?;
    let after: Vec<ProcStat> = pids.iter().map(|&p| proc_stat(p)).collect::<Res<_>>()?;
    let wg: Vec<ProcStat> = wg_pids.iter().map(|&p| proc_stat(p)).collect::<Res<_>>()?;
    let wg_cpu: Vec<f64> = wg_before
        .iter()
        .zip(&wg)
        .map(|(b, a)| (a.cpu_ns - b.cpu_ns) as f64 / 1e9 / (idle.as_secs_f64() / 60.0))
        .collect();
    let minutes = idle.as_secs_f64() / 60.0;
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.cpu_ns - b.cpu_ns) as f64 / 1e9 / minutes)
        .collect();
    let col = |f: fn(&ProcStat) -> f64, v: &[ProcStat]| spread(v.iter().map(f).collect(), 0);
    println!(
        "\n### Footprint: {} wesher processes, idle {} s in a {}-node mesh (min / median / max)\n",
        pids.len(),
        idle.as_secs(),
        lab.nodes.len()
    );
    println!("| figure | wesher | wireguard-go (for scale) |\n|---|---|---|");
    println!(
        "| RSS KiB after idle | {} | {} |",
        col(|s| s.rss_kib as f64, &after),
        col(|s| s.rss_kib as f64, &wg)
    );
    println!(
        "| peak RSS (VmHWM) KiB | {} | {} |",
        col(|s| s.hwm_kib as f64, &after),
        col(|s| s.hwm_kib as f64, &wg)
    );
    println!(
        "| threads | {} | {} |",
        col(|s| s.threads as f64, &after),
        col(|s| s.threads as f64, &wg)
    );
    println!(
        "| open fds | {} | {} |",
        col(|s| s.fds as f64, &after),
        col(|s| s.fds as f64, &wg)
    );
    println!(
        "| CPU s per idle minute | {} | {} |",
        spread(cpu, 4),
        spread(wg_cpu, 4)
    );
    Ok(())
}

/// A write to wireguard-go's UAPI socket: the only Unix stream socket wesher writes to (the
/// control socket has no client here).
fn is_uapi(strace_line: &str) -> bool {
    strace_line.contains("UNIX")
}

/// strace of node `watch`'s wesher while the last node starts and joins, then crashes.
fn trace_event(lab: &mut Lab, watch: usize, profile: &str) -> Res<()> {
    let newcomer = lab.nodes.len() - 1;
    let others: Vec<usize> = (0..newcomer).collect();
    let pid = lab.nodes[watch].wesher_pid().ok_or("no wesher")?;
    let out = lab.work.join("strace.txt");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-yy",
            "-s",
            "4096",
            "-e",
            "trace=write,writev,sendto,sendmsg",
            "-o",
        ])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("strace: {e}"))?;
    pause(Duration::from_secs(1))?;
    let seed = lab.nodes[0].addr.clone();
    let start = Instant::now();
    lab.nodes[newcomer].start_wesher("traced", profile, Some(&seed))?;
    all_have(lab, &others, newcomer, start)?;
    pause(Duration::from_secs(1))?;
    let joined = fs::read_to_string(&out).unwrap_or_default().lines().count();
    if let Some(w) = lab.nodes[newcomer].wesher.as_mut() {
        signal(w, "KILL");
        let _ = w.wait();
    }
    all_have(lab, &others, newcomer - 1, Instant::now())?;
    pause(Duration::from_secs(1))?;
    signal(&strace, "INT");
    let _ = strace.wait();
    let text = fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = text.lines().collect();
    println!(
        "\n### WireGuard / netlink work on node{} while node{} joins, then crashes ({} nodes)\n",
        watch + 1,
        newcomer + 1,
        lab.nodes.len()
    );
    println!("| phase | kind | calls | bytes |\n|---|---|---|---|");
    for (phase, part) in [
        ("join", &lines[..joined.min(lines.len())]),
        ("crash", &lines[joined.min(lines.len())..]),
    ] {
        let mut by: HashMap<&str, (usize, u64)> = HashMap::new();
        for l in part.iter() {
            let kind = if is_uapi(l) {
                "UAPI socket"
            } else if l.contains("NETLINK") {
                "netlink"
            } else if l.contains("/etc/") {
                "/etc/hosts"
            } else if l.contains("state") {
                "state file"
            } else if l.contains("UDP") || l.contains("TCP") {
                "gossip"
            } else {
                "other"
            };
            let bytes = l
                .rsplit_once("= ")
                .and_then(|(_, r)| r.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let e = by.entry(kind).or_default();
            e.0 += 1;
            e.1 += bytes;
        }
        let mut kinds: Vec<_> = by.into_iter().collect();
        kinds.sort();
        for (kind, (calls, bytes)) in kinds {
            println!("| {phase} | {kind} | {calls} | {bytes} |");
        }
    }
    println!("\nWrites classified as other (first 120 characters):");
    for l in lines.iter().filter(|l| {
        !is_uapi(l)
            && !["NETLINK", "/etc/", "state", "UDP", "TCP"]
                .iter()
                .any(|k| l.contains(k))
    }) {
        println!("    {}", l.chars().take(120).collect::<String>());
    }
    println!("\nUAPI and netlink writes, as strace shows them (first 400 characters):");
    for l in lines.iter().filter(|l| is_uapi(l) || l.contains("NETLINK")) {
        println!("    {}", l.chars().take(400).collect::<String>());
    }
    Ok(())
}

fn event_trials(
    lab: &mut Lab,
    n: usize,
    profile: &str,
    trials: usize,
) -> Res<(Vec<f64>, Vec<f64>)> {
    let newcomer = n - 1;
    let others: Vec<usize> = (0..newcomer).collect();
    let seed = lab.nodes[0].addr.clone();
    let (mut joins, mut crashes) = (Vec::new(), Vec::new());
    for t in 0..trials {
        let start = Instant::now();
        // A new name per trial: each trial is a first join, not a restart that must refute
        // its own death.
        lab.nodes[newcomer].start_wesher(&format!("new{}", t + 1), profile, Some(&seed))?;
        let join = all_have(lab, &others, newcomer, start)?;
        // Let the newcomer settle (it learns everyone, the others stop gossiping about it).
        pause(Duration::from_secs(3))?;
        let w = lab.nodes[newcomer].wesher.as_mut().ok_or("no wesher")?;
        let start = Instant::now();
        signal(w, "KILL");
        let _ = w.wait();
        let crash = all_have(lab, &others, newcomer - 1, start)?;
        println!(
            "  trial {}: join seen by all {:.3} s, crash detected by all {:.2} s",
            t + 1,
            join.as_secs_f64(),
            crash.as_secs_f64()
        );
        joins.push(join.as_secs_f64());
        crashes.push(crash.as_secs_f64());
    }
    Ok((joins, crashes))
}

fn bench(o: &Options) -> Res<()> {
    for &n in &o.sizes {
        let profile = if n >= o.lan_from { "lan" } else { "wan" };
        let mut lab = Lab::new()?;
        println!("\n## {n} nodes, --gossip-profile {profile}\n");
        let formed = form_mesh(&mut lab, n - 1, profile)?;
        println!(
            "{} nodes started and formed a full mesh in {:.2} s",
            n - 1,
            formed.as_secs_f64()
        );
        lab.add_node()?;
        let (joins, crashes) = event_trials(&mut lab, n, profile, o.trials)?;
        if n == 10 {
            trace_event(&mut lab, 1, profile)?;
        }
        // The last node back as a regular member, then the steady state of all n.
        let seed = lab.nodes[0].addr.clone();
        lab.nodes[n - 1].start_wesher(&format!("node{n}"), profile, Some(&seed))?;
        let all: Vec<usize> = (0..n).collect();
        all_have(&lab, &all, n - 1, Instant::now())?;
        pause(Duration::from_secs(10))?;
        let (u0, t0) = lab.gossip_bytes()?;
        pause(o.rate_window)?;
        let (u1, t1) = lab.gossip_bytes()?;
        let secs = o.rate_window.as_secs_f64();
        println!(
            "\n| nodes | profile | join seen by all s | crash detected by all s | gossip UDP B/s (all nodes) | gossip TCP B/s | per node B/s |\n|---|---|---|---|---|---|---|"
        );
        println!(
            "| {n} | {profile} | {} | {} | {:.0} | {:.0} | {:.1} |",
            spread(joins, 3),
            spread(crashes, 2),
            (u1 - u0) as f64 / secs,
            (t1 - t0) as f64 / secs,
            ((u1 - u0) + (t1 - t0)) as f64 / secs / n as f64,
        );
        println!(
            "(join / crash: {} trials; gossip: {} s with all {n} nodes up, IP bytes of cluster-port packets forwarded by the router)",
            o.trials,
            o.rate_window.as_secs()
        );
        if n == 3 {
            footprint(&lab, o.idle)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netns bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if fs::read_to_string("/proc/self/status")
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(true)
    {
        eprintln!("netns bench: needs root (namespaces, wireguard-go)");
        return ExitCode::FAILURE;
    }
    for tool in ["ip", "nsenter", "unshare", "wireguard-go", "nft", "strace"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            eprintln!("netns bench: `{tool}` not found (apt-get install -y --no-install-recommends wireguard-go iproute2 nftables strace util-linux)");
            return ExitCode::FAILURE;
        }
    }
    println!("binary: {}", wesher_bin());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("netns bench: signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let _ = STOP.set(stop);
    match bench(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netns bench: {e}");
            ExitCode::FAILURE
        }
    }
}
