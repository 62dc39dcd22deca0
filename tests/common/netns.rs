//! Isolated network-namespace topologies for end-to-end tests with real wireguard-go.
//!
//! A `Topology` is one bridge namespace plus N node namespaces joined to it by veth pairs
//! (10.99.0.i/24 in every topology: these addresses exist only inside its namespaces). Each
//! node has a long-lived holder process (`sleep infinity`) that owns private UTS and mount namespaces:
//! its hostname is `node<i>`, /etc is an overlay (so /etc/hosts writes, including temp file +
//! rename, stay in the node) and /run is a tmpfs (so /run/wireguard/<iface>.sock is per node).
//! Every process of a node runs through `nsenter -t <holder> --mount --uts --net`.
//!
//! Everything is torn down by PID and by name on drop, also when a test panics; on a panic the
//! logs and the kernel state of every node are printed first. WESHER_E2E_KEEP=1 keeps the
//! logs and files (in $TMPDIR/wesher-wnt<pid>x<n>/node<i>/) for a look after a run.
#![allow(dead_code)] // shared by several test binaries, each using a subset

use std::fmt::Display;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The wesher binary under test.
pub const WESHER: &str = env!("CARGO_BIN_EXE_wesher");
/// Go wesher's default interface name.
pub const DEFAULT_IFACE: &str = "wgoverlay";
/// A fixed cluster key (bytes 0..32), as in Go wesher's end-to-end tests.
pub const CLUSTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another valid key (bytes 100..132) for "wrong key" cases.
pub const OTHER_CLUSTER_KEY: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";

/// Generous limits: the machine is shared, so these bound a hang, they do not measure speed.
pub const CONVERGE: Duration = Duration::from_secs(60);
pub const FAILURE_DETECTION: Duration = Duration::from_secs(90);
const EXEC_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(250);

const TOOLS: &[&str] = &[
    "ip",
    "wireguard-go",
    "wg",
    "ping",
    "nsenter",
    "unshare",
    "mount",
    "kill",
    "sleep",
    "sh",
];
/// Polls `check` until it returns Ok or `timeout` passes; then panics with the last reason.
pub fn wait_for<T>(
    what: impl Display,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last check: {last}");
        }
        thread::sleep(POLL);
    }
}

/// Panics (with the log) if one of `procs` has exited: a dead agent fails a wait at once
/// instead of at its deadline.
pub fn assert_running(procs: &mut [Proc]) {
    for proc in procs {
        if let Some(status) = proc.exited() {
            panic!("{} exited ({status}); its log:\n{}", proc.what, proc.log());
        }
    }
}

/// Runs `cmd` to completion (killed after `timeout`), capturing its output.
fn run_captured(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs a setup command on the host side; panics with its stderr on failure.
fn must(program: &str, args: &[&str]) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = run_captured(cmd, EXEC_TIMEOUT);
    if !out.success() {
        panic!("`{program} {}` failed: {out}", args.join(" "));
    }
}

/// The result of a command run to completion.
#[derive(Debug)]
pub struct Output {
    /// None when the command was killed at its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

impl Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status}")?,
            None => write!(f, "killed at its timeout")?,
        }
        write!(f, "; stdout: {:?}; stderr: {:?}", self.stdout, self.stderr)
    }
}

/// A process started in a node, by PID. Dropping it kills it (SIGKILL) if still running,
/// except while a test panics: then the topology first prints every node's state, then kills it.
pub struct Proc<'a> {
    node: &'a Node,
    what: String,
    /// Always Some until dropped.
    child: Option<Child>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc<'_> {
    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("a Proc owns its child until dropped")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status if it has exited (reaps it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child().try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends a signal by PID; false when it had already exited. The PID cannot have been
    /// reused: an exited child stays a zombie until `exited()` reaps it.
    pub fn signal(&mut self, signal: &str) -> bool {
        if self.exited().is_some() {
            return false;
        }
        let pid = self.pid().to_string();
        let mut cmd = Command::new("kill");
        cmd.args(["-s", signal, "--", &pid]);
        run_captured(cmd, EXEC_TIMEOUT).success()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits up to `timeout`; None if it is still running.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    /// SIGKILL (a crash), then reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let _ = self.child().kill();
        let status = match self.child().wait() {
            Ok(status) => status,
            Err(e) => panic!("waiting for {}: {e}", self.what),
        };
        self.status = Some(status);
        status
    }
}

impl Drop for Proc<'_> {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if thread::panicking() {
            // Keep it running so that the failure report shows the live WireGuard state.
            if let Ok(mut orphans) = self.node.orphans.lock() {
                orphans.push(child);
                return;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One peer line of `wg show IFACE dump`.
#[derive(Debug, Clone)]
pub struct WgPeer {
    pub public_key: String,
    pub endpoint: String,
    pub allowed_ips: Vec<String>,
    /// Unix time of the last handshake, 0 if none.
    pub latest_handshake: u64,
    pub persistent_keepalive: String,
}

/// `wg show IFACE dump`, parsed.
#[derive(Debug, Clone)]
pub struct WgDump {
    pub public_key: String,
    pub listen_port: u16,
    pub peers: Vec<WgPeer>,
}

impl WgDump {
    fn parse(text: &str) -> Result<WgDump, String> {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
        let [_private, public_key, port, _fwmark] = head[..] else {
            return Err(format!("unexpected wg dump interface line in {text:?}"));
        };
        let mut peers = Vec::new();
        for line in lines {
            let f: Vec<&str> = line.split('\t').collect();
            let [key, _psk, endpoint, allowed, handshake, _rx, _tx, keepalive] = f[..] else {
                return Err(format!("unexpected wg dump peer line {line:?}"));
            };
            peers.push(WgPeer {
                public_key: key.to_string(),
                endpoint: endpoint.to_string(),
                allowed_ips: match allowed {
                    "(none)" => Vec::new(),
                    list => list.split(',').map(str::to_string).collect(),
                },
                latest_handshake: handshake.parse().unwrap_or(0),
                persistent_keepalive: keepalive.to_string(),
            });
        }
        Ok(WgDump {
            public_key: public_key.to_string(),
            listen_port: port.parse().unwrap_or(0),
            peers,
        })
    }

    pub fn peer(&self, public_key: &str) -> Option<&WgPeer> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }
}

/// The banner that ends every /etc/hosts line wesher manages for `iface`.
pub fn hosts_banner(iface: &str) -> String {
    format!("# ! managed automatically by wesher interface {iface}")
}

/// (address, name) of every /etc/hosts line wesher manages for `iface`.
pub fn managed_hosts(hosts: &str, iface: &str) -> Vec<(String, String)> {
    let banner = hosts_banner(iface);
    hosts
        .lines()
        .filter(|l| l.trim_end().ends_with(&banner))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?.to_string(), fields.next()?.to_string()))
        })
        .collect()
}

/// A node: network namespace + holder of its private UTS and mount namespaces.
pub struct Node {
    /// Hostname, which is also wesher's node name by default: `node<i>`.
    pub name: String,
    pub netns: String,
    /// Underlay address on eth0.
    pub ip: Ipv4Addr,
    dir: PathBuf,
    holder: Child,
    spawned: AtomicU32,
    /// Processes whose Proc was dropped during a panic; killed after the diagnostics.
    orphans: Mutex<Vec<Child>>,
}

impl Node {
    /// The name that resolves to this node's underlay address in every node's /etc/hosts (like
    /// the container names Go wesher's tests join by); the bare hostname is left for wesher.
    pub fn underlay_name(&self) -> String {
        format!("{}-underlay", self.name)
    }

    /// PID of the process holding the node's namespaces (for `nsenter -t PID`).
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// Per-node scratch directory on the host (logs, state, overlay layers).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Passed to every wesher started by `wesher()`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn state_file(&self, iface: &str) -> PathBuf {
        self.state_dir().join(format!("{iface}.json"))
    }

    /// A path as this node's processes see it (its own /etc and /run), readable from the host.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(path.trim_start_matches('/'))
    }

    /// A command that runs `program` inside the node's network, UTS and mount namespaces.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["--mount", "--uts", "--net", "--"])
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// A command that runs `program` in the node through `wrapper` (a program that execs its
    /// last argument, as setpriv does), or directly when `wrapper` is empty.
    pub fn command_via(&self, wrapper: &[impl AsRef<str>], program: &str) -> Command {
        match wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = self.command(first.as_ref());
                cmd.args(rest.iter().map(AsRef::as_ref)).arg(program);
                cmd
            }
            None => self.command(program),
        }
    }

    /// Runs a program found on the host (ip, wg, ping, sh, ...) in the node, bounded in time.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_captured(cmd, EXEC_TIMEOUT)
    }

    fn next_log(&self, what: &str) -> PathBuf {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{n:02}-{what}.log"))
    }

    /// Starts a long-running process with stdout and stderr going to a log file.
    pub fn spawn(&self, what: &str, mut cmd: Command) -> Proc<'_> {
        let log = self.next_log(what);
        let file = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        cmd.stdout(file).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} in {}: {e}", self.name));
        Proc {
            node: self,
            what: format!("{what} in {}", self.name),
            child: Some(child),
            log,
            status: None,
        }
    }

    /// Starts `wireguard-go -f IFACE` and waits for its UAPI socket.
    pub fn start_wireguard(&self, iface: &str) -> Proc<'_> {
        self.start_wireguard_via(iface, &[] as &[&str])
    }

    /// The same through `wrapper` (see `command_via`).
    pub fn start_wireguard_via(&self, iface: &str, wrapper: &[impl AsRef<str>]) -> Proc<'_> {
        let mut cmd = self.command_via(wrapper, "wireguard-go");
        // Any value but 1 makes wireguard-go fork forever; -f is all it needs.
        cmd.env_remove("WG_PROCESS_FOREGROUND").arg("-f").arg(iface);
        let mut proc = self.spawn(&format!("wireguard-go-{iface}"), cmd);
        let socket = self.path(&format!("/run/wireguard/{iface}.sock"));
        wait_for(
            format!("wireguard-go {iface} socket in {}", self.name),
            Duration::from_secs(15),
            || {
                if let Some(status) = proc.exited() {
                    panic!("wireguard-go exited early ({status}): {}", proc.log());
                }
                if socket.exists() {
                    Ok(())
                } else {
                    Err(format!("{} does not exist yet", socket.display()))
                }
            },
        );
        proc
    }

    /// A wesher command for this node: `--state-dir` in the node's directory (never the host's
    /// /var/lib/wesher), debug logs via env (a --log-level flag overrides it), and an
    /// environment holding nothing from the test runner but PATH.
    pub fn wesher(&self) -> WesherCmd<'_> {
        WesherCmd {
            node: self,
            wrapper: Vec::new(),
            args: vec!["--state-dir".into(), self.state_dir().display().to_string()],
            env: vec![("WESHER_LOG_LEVEL".into(), "debug".into())],
        }
    }

    /// `ping -c1 -W1 HOST` from this node.
    pub fn ping(&self, host: &str) -> Result<(), String> {
        let out = self.exec("ping", &["-c1", "-W1", host]);
        if out.success() {
            Ok(())
        } else {
            Err(format!("{} ping {host}: {out}", self.name))
        }
    }

    /// Waits until `ping -c1 -W1 HOST` from this node succeeds.
    pub fn wait_ping(&self, host: &str, timeout: Duration) {
        wait_for(format!("{} to ping {host}", self.name), timeout, || {
            self.ping(host)
        });
    }

    /// The node's /etc/hosts.
    pub fn hosts(&self) -> String {
        fs::read_to_string(self.path("/etc/hosts")).unwrap_or_else(|e| {
            panic!("read /etc/hosts of {}: {e}", self.name);
        })
    }

    pub fn managed_hosts(&self, iface: &str) -> Vec<(String, String)> {
        managed_hosts(&self.hosts(), iface)
    }

    /// `wg show IFACE dump`, parsed.
    pub fn wg(&self, iface: &str) -> Result<WgDump, String> {
        let out = self.exec("wg", &["show", iface, "dump"]);
        if !out.success() {
            return Err(format!("wg show {iface} dump in {}: {out}", self.name));
        }
        WgDump::parse(&out.stdout)
    }

    /// Destinations of the routes through `iface` (main table).
    pub fn routes(&self, iface: &str) -> Result<Vec<String>, String> {
        let out = self.exec("ip", &["-o", "route", "show", "dev", iface]);
        if !out.success() {
            return Err(format!("ip route show dev {iface} in {}: {out}", self.name));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Addresses (with prefix length) on `iface`, except the IPv6 link-local one the kernel
    /// adds by itself when the link goes up.
    pub fn addrs(&self, iface: &str) -> Result<Vec<String>, String> {
        let out = self.exec(
            "ip",
            &["-o", "addr", "show", "dev", iface, "scope", "global"],
        );
        if !out.success() {
            return Err(format!("ip addr show dev {iface} in {}: {out}", self.name));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().skip_while(|w| !w.starts_with("inet"));
                f.next()?;
                f.next().map(str::to_string)
            })
            .collect())
    }

    pub fn link_exists(&self, iface: &str) -> bool {
        self.exec("ip", &["link", "show", "dev", iface]).success()
    }

    /// The node's overlay address on `iface`, without prefix length.
    pub fn overlay_addr(&self, iface: &str) -> Result<String, String> {
        let addrs = self.addrs(iface)?;
        let first = addrs
            .first()
            .ok_or_else(|| format!("{} has no address on {iface} yet", self.name))?;
        Ok(first.split('/').next().unwrap_or(first).to_string())
    }

    fn diagnostics(&self) -> String {
        let mut text = format!("===== {} ({}, {}) =====\n", self.name, self.netns, self.ip);
        let mut logs: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for log in logs {
            let content = fs::read(&log).unwrap_or_default();
            let content = String::from_utf8_lossy(&content);
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(150)..];
            text += &format!("--- {} (last {} lines)\n", log.display(), tail.len());
            for line in tail {
                text += line;
                text.push('\n');
            }
        }
        text += &format!(
            "--- /etc/hosts\n{}",
            fs::read_to_string(self.path("/etc/hosts")).unwrap_or_default()
        );
        for (program, args) in [
            ("wg", &["show", "all", "dump"][..]),
            ("ip", &["-o", "addr"][..]),
            ("ip", &["route"][..]),
        ] {
            let out = self.exec(program, args);
            text += &format!(
                "--- {program} {}\n{}{}",
                args.join(" "),
                out.stdout,
                out.stderr
            );
        }
        text
    }
}

/// Builder for one wesher process in a node.
pub struct WesherCmd<'a> {
    node: &'a Node,
    /// A program (and its arguments) that runs wesher, such as `setpriv ...`.
    wrapper: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl<'a> WesherCmd<'a> {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs wesher through `wrapper` (see `Node::command_via`).
    pub fn via(mut self, wrapper: &[String]) -> Self {
        self.wrapper = wrapper.to_vec();
        self
    }

    fn command(&self) -> Command {
        let mut cmd = self.node.command_via(&self.wrapper, WESHER);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args);
        cmd
    }

    /// Starts the agent; its stdout and stderr go to a log file in the node's directory.
    pub fn spawn(self) -> Proc<'a> {
        self.node.spawn("wesher", self.command())
    }

    /// Runs it to completion (killed after `timeout`), for commands expected to exit.
    pub fn run(self, timeout: Duration) -> Output {
        run_captured(self.command(), timeout)
    }
}

/// A bridge namespace plus N nodes. Dropping it kills the holders and deletes the namespaces.
pub struct Topology {
    tag: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    nodes: Vec<Node>,
}

impl Topology {
    /// Builds `n` connected nodes, or returns None (after `skip`) when this machine cannot.
    pub fn new(n: usize) -> Option<Topology> {
        assert!((1..=250).contains(&n), "1 to 250 nodes");
        // Skips with the reason, or fails when CI=true.
        if !super::prerequisites(TOOLS) {
            return None;
        }
        let tag = super::unique("wnt");
        let dir = std::env::temp_dir().join(format!("wesher-{tag}"));
        // An earlier run that was SIGKILLed can leave this directory; its PID was ours.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut topo = Topology {
            tag,
            dir,
            namespaces: Vec::new(),
            nodes: Vec::new(),
        };
        // From here on, a failing step panics and Drop removes what was already made.
        let bridge = topo.add_netns("b");
        must(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        must("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        let ips: Vec<Ipv4Addr> = (1..=n as u8).map(|i| Ipv4Addr::new(10, 99, 0, i)).collect();
        let underlay_hosts: String = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("{ip}\tnode{}-underlay\n", i + 1))
            .collect();
        for (i, ip) in ips.iter().enumerate() {
            let node = topo.add_node(i + 1, *ip, &bridge, &underlay_hosts);
            topo.nodes.push(node);
        }
        Some(topo)
    }

    fn add_netns(&mut self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.tag);
        must("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    fn add_node(&mut self, index: usize, ip: Ipv4Addr, bridge: &str, underlay_hosts: &str) -> Node {
        let netns = self.add_netns(&format!("n{index}"));
        let port = format!("p{index}");
        // Both veth ends are created directly in their namespaces: no name in the host's.
        must(
            "ip",
            &[
                "-n", &netns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                "netns", bridge,
            ],
        );
        must(
            "ip",
            &["-n", bridge, "link", "set", &port, "master", "br0", "up"],
        );
        must(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        );
        must("ip", &["-n", &netns, "link", "set", "eth0", "up"]);

        let name = format!("node{index}");
        let dir = self.dir.join(&name);
        let (upper, work) = (dir.join("etc-upper"), dir.join("etc-work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        let holder_log = dir.join("holder.log");
        let log = File::create(&holder_log).unwrap_or_else(|e| panic!("create holder log: {e}"));
        let script = r#"set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc
mount -t tmpfs -o mode=0755 tmpfs /run
echo "$3" > /proc/sys/kernel/hostname
printf '%s' "$4" >> /etc/hosts
echo ready
exec sleep infinity"#;
        let mut holder = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg("unshare")
            .args(["--mount", "--uts", "--propagation", "private", "--"])
            .arg("sh")
            .args(["-c", script, "holder"])
            .arg(&upper)
            .arg(&work)
            .arg(&name)
            .arg(underlay_hosts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the holder of {name}: {e}"));
        let mut line = String::new();
        if let Some(stdout) = holder.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!(
                "the holder of {name} failed: {}",
                fs::read_to_string(&holder_log).unwrap_or_default()
            );
        }
        Node {
            name,
            netns,
            ip,
            dir,
            holder,
            spawned: AtomicU32::new(0),
            orphans: Mutex::new(Vec::new()),
        }
    }

    /// Node `i`, 1-based like the hostnames.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Starts `wireguard-go -f IFACE` in every node.
    pub fn start_wireguard_all(&self, iface: &str) -> Vec<Proc<'_>> {
        self.nodes
            .iter()
            .map(|n| n.start_wireguard(iface))
            .collect()
    }

    /// Names of the namespaces this topology created (and deletes on drop).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Logs and kernel state of every node, as printed when a test fails.
    pub fn diagnostics(&self) -> String {
        self.nodes.iter().map(Node::diagnostics).collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if thread::panicking() {
            // write! rather than eprintln!: a closed stderr must not abort the cleanup below.
            let _ = writeln!(std::io::stderr(), "{}", self.diagnostics());
        }
        for node in &mut self.nodes {
            let orphans = node
                .orphans
                .get_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            for mut child in orphans {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = node.holder.kill();
            let _ = node.holder.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "del", ns]);
            let out = run_captured(cmd, EXEC_TIMEOUT);
            if !out.success() {
                let _ = writeln!(std::io::stderr(), "cleanup: ip netns del {ns}: {out}");
            }
        }
        if std::env::var_os("WESHER_E2E_KEEP").is_some() {
            let _ = writeln!(
                std::io::stderr(),
                "kept {} (WESHER_E2E_KEEP)",
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            let _ = writeln!(
                std::io::stderr(),
                "cleanup: remove {}: {e}",
                self.dir.display()
            );
        }
    }
}
