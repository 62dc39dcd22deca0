//! Helpers for tests that need root: network namespaces, commands run inside them,
//! daemons killed by the PID we started, and `wg show dump` comparisons.
#![allow(dead_code)] // each test binary uses its own subset

/// The Go toolchains Go programs are built with.
pub mod go;

/// The Go memberlist peer for interop tests.
pub mod gopeer;

/// Multi-node topologies (hostname, /etc, /run per node) for end-to-end tests of the agent.
pub mod netns;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wesher::wireguard::{DeviceStatus, Key, PeerConfig, PrivateKey};

/// Whether the test can run; prints why not, and fails instead under CI=true.
pub fn prerequisites(programs: &[&str]) -> bool {
    let missing = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else {
        programs
            .iter()
            .find(|p| !in_path(p))
            .map(|p| format!("{p} is not installed"))
    };
    match missing {
        None => true,
        Some(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("missing test prerequisite under CI: {reason}")
        }
        Some(reason) => {
            eprintln!("SKIPPED: {reason}");
            false
        }
    }
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<tag><pid>x<n>`, short enough for an
/// interface name (15 bytes) when the tag is 3 bytes.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}x{n}", std::process::id())
}

/// Runs a command and returns its stdout; panics with its stderr when it fails.
pub fn run(args: &[&str]) -> String {
    let out = output(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn output(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Runs `f` on a thread that has entered the named network namespace (`ip netns add NAME`):
/// sockets it opens live there, the rest of the process stays where it is.
pub fn enter_netns<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> R {
    let file =
        std::fs::File::open(format!("/var/run/netns/{name}")).expect("opening the namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("wtest-");
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        enter_netns(&self.name, f)
    }

    /// `ip netns exec NAME args...`, returning stdout.
    pub fn run(&self, args: &[&str]) -> String {
        run(&self.command(args))
    }

    pub fn output(&self, args: &[&str]) -> Output {
        output(&self.command(args))
    }

    fn command<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["ip", "netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        all
    }

    /// wireguard-go in the foreground inside the namespace, once its socket answers.
    pub fn wireguard_go(&self, ifname: &str) -> Daemon {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "wireguard-go", "-f", ifname])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting wireguard-go");
        let daemon = Daemon(child);
        let socket = format!("/var/run/wireguard/{ifname}.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Path::new(&socket).exists() {
            assert!(Instant::now() < deadline, "wireguard-go made no {socket}");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = output(&["ip", "netns", "del", &self.name]);
    }
}

/// A process we started; SIGTERM by its PID on drop (wireguard-go then removes its
/// socket and interface).
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.0.wait();
    }
}

/// `wg show IF dump` parsed: (public key, listen port) and per peer
/// (key, endpoint, allowed ips, keepalive).
pub struct WgDump {
    pub public_key: String,
    pub listen_port: u16,
    pub peers: Vec<WgPeer>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct WgPeer {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: BTreeSet<String>,
    pub keepalive: Option<u16>,
}

pub fn parse_wg_dump(dump: &str) -> WgDump {
    let mut lines = dump.lines();
    let first: Vec<&str> = lines.next().expect("empty dump").split('\t').collect();
    let peers = lines
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 8, "peer line {line:?}");
            WgPeer {
                public_key: f[0].to_string(),
                endpoint: (f[2] != "(none)").then(|| f[2].to_string()),
                allowed_ips: f[3]
                    .split(',')
                    .filter(|s| *s != "(none)" && !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                keepalive: (f[7] != "off").then(|| f[7].parse().unwrap()),
            }
        })
        .collect();
    WgDump {
        public_key: first[1].to_string(),
        listen_port: first[2].parse().unwrap(),
        peers,
    }
}

fn view(
    key: &Key,
    endpoint: Option<SocketAddr>,
    ips: &[(IpAddr, u8)],
    keepalive: Option<u16>,
) -> WgPeer {
    WgPeer {
        public_key: key.to_base64(),
        endpoint: endpoint.map(|e| e.to_string()),
        allowed_ips: ips.iter().map(|(ip, len)| format!("{ip}/{len}")).collect(),
        keepalive,
    }
}

fn sorted(mut peers: Vec<WgPeer>) -> Vec<WgPeer> {
    peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    peers
}

/// The device as `wg` shows it equals what we configured, and what our backend reads
/// back equals what `wg` shows.
pub fn assert_device(
    dump: &str,
    private: &PrivateKey,
    port: u16,
    peers: &[PeerConfig],
    ours: &DeviceStatus,
) {
    let dump = parse_wg_dump(dump);
    assert_eq!(dump.public_key, private.public_key().to_base64());
    assert_eq!(dump.listen_port, port);
    let expected = sorted(
        peers
            .iter()
            .map(|p| {
                view(
                    &p.public_key,
                    p.endpoint,
                    &p.allowed_ips,
                    p.persistent_keepalive,
                )
            })
            .collect(),
    );
    let shown = sorted(dump.peers);
    assert_eq!(shown, expected);

    assert_eq!(ours.public_key, Some(private.public_key()));
    assert_eq!(ours.listen_port, port);
    let read = sorted(
        ours.peers
            .iter()
            .map(|p| {
                view(
                    &p.public_key,
                    p.endpoint,
                    &p.allowed_ips,
                    p.persistent_keepalive,
                )
            })
            .collect(),
    );
    assert_eq!(read, shown);
}

/// Bytes from hex digits, as the captured vectors write them.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}
