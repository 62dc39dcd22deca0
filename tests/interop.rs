//! Interop with a real hashicorp/memberlist node: the Go peer in tests/interop/gopeer (built from
//! Debian's memberlist package by tests/interop/build-gopeer.sh) and our `Membership` +
//! `Transport`, on 127.0.0.1 with random ports. Each side reports what it sees: the Go peer as
//! JSON lines on stdout (metadata decoded by Go's gob), ours as `Event`s (metadata decoded by
//! `NodeMeta`).
//!
//! Without Go or the memberlist package the tests skip with a reason; with CI=true they fail.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use miniserde::json::{self, Number, Object, Value};
use mio::{Events, Poll};
use wesher::base64;
use wesher::membership::io::Input;
use wesher::membership::{Config, Event, Keyring, MemberState, Membership, Timing};
use wesher::nodemeta::NodeMeta;
use wesher::transport::{pump, Transport};

const KEY: [u8; 32] = *b"wesher interop test cluster key!";
const WRONG_KEY: [u8; 32] = *b"not the key of this cluster, no!";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Only keeps a broken test from hanging; no test asserts how fast anything happens.
const GIVE_UP: Duration = Duration::from_secs(90);

#[derive(Clone, Copy)]
enum Profile {
    /// DefaultWANConfig on both sides, as wesher runs.
    Wan,
    /// Short timers (gopeer's `-profile fast`) so failure detection takes seconds.
    Fast,
}

impl Profile {
    fn timing(self) -> Timing {
        match self {
            Profile::Wan => Timing::wan(),
            // Must match gopeer's "fast" profile.
            Profile::Fast => Timing {
                probe_interval: Duration::from_millis(500),
                probe_timeout: Duration::from_millis(300),
                gossip_interval: Duration::from_millis(100),
                push_pull_interval: Duration::from_secs(5),
                gossip_to_the_dead_time: Duration::from_secs(5),
                tcp_timeout: Duration::from_secs(2),
                suspicion_mult: 2,
                ..Timing::wan()
            },
        }
    }

    fn go_flag(self) -> &'static str {
        match self {
            Profile::Wan => "wan",
            Profile::Fast => "fast",
        }
    }
}

fn pubkey(fill: u8) -> String {
    base64::encode(&[fill; 32])
}

fn meta(overlay: [u8; 4], pubkey: &str) -> NodeMeta {
    NodeMeta::new(IpAddr::from(overlay), pubkey.to_string())
}

/// The Go peer built with each Go toolchain (common::gopeer::builds); empty when there is none.
fn gopeers() -> &'static [(String, PathBuf)] {
    common::gopeer::builds()
}

/// Each Go peer build in turn, for a test with one Go peer; says which on stderr, so that a
/// failure names its Go release.
fn each_gopeer() -> impl Iterator<Item = &'static Path> {
    gopeers().iter().map(|(version, bin)| {
        eprintln!("with the Go peer built by {version}");
        bin.as_path()
    })
}

/// The build for the `i`th Go peer of a cluster (gopeers() must not be empty): the builds
/// alternate, so that a cluster with several Go peers mixes Go releases.
fn gopeer_for(i: usize) -> &'static Path {
    let peers = gopeers();
    &peers[i % peers.len()].1
}

enum GoLine {
    Json(Object),
    Log(String),
}

/// A running gopeer process, its JSON events and its log.
struct GoPeer {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<GoLine>,
    seen: Vec<Object>,
    log: Vec<String>,
    addr: SocketAddr,
}

impl GoPeer {
    fn start(
        bin: &Path,
        name: &str,
        key: &[u8; 32],
        profile: Profile,
        meta: Option<&NodeMeta>,
    ) -> GoPeer {
        GoPeer::start_on(bin, name, key, profile, meta, SocketAddr::new(LOCALHOST, 0))
    }

    /// Starts on a given address (port 0: a free one).
    fn start_on(
        bin: &Path,
        name: &str,
        key: &[u8; 32],
        profile: Profile,
        meta: Option<&NodeMeta>,
        addr: SocketAddr,
    ) -> GoPeer {
        let mut cmd = Command::new(bin);
        cmd.args(["-name", name, "-bind", &addr.ip().to_string()])
            .args(["-port", &addr.port().to_string()])
            .args(["-key", &base64::encode(key)])
            .args(["-profile", profile.go_flag()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(meta) = meta {
            cmd.args(["-overlay", &meta.overlay_addr.to_string()])
                .args(["-pubkey", &meta.pub_key]);
        }
        let mut child = cmd.spawn().expect("start gopeer");
        let stdin = child.stdin.take().expect("gopeer stdin");
        let stdout = child.stdout.take().expect("gopeer stdout");
        let stderr = child.stderr.take().expect("gopeer stderr");
        let (tx, lines) = mpsc::channel();
        let err_tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = match json::from_str::<Object>(&line) {
                    Ok(obj) => GoLine::Json(obj),
                    Err(_) => GoLine::Log(format!("non-JSON on stdout: {line}")),
                };
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if err_tx.send(GoLine::Log(line)).is_err() {
                    return;
                }
            }
        });
        let mut peer = GoPeer {
            name: name.to_string(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
            log: Vec::new(),
            addr,
        };
        let ready = peer.wait_for("the ready line", |p| p.event("ready", name).is_some());
        let port = ready
            .event("ready", name)
            .and_then(|o| number(o, "port"))
            .expect("ready line has a port");
        peer.addr
            .set_port(u16::try_from(port).expect("port fits u16"));
        peer
    }

    /// Collects what the peer printed so far.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.record(line);
        }
    }

    fn record(&mut self, line: GoLine) {
        match line {
            GoLine::Json(obj) => {
                // Shown with a failing test's output.
                eprintln!("[{}] {}", self.name, json::to_string(&obj));
                self.seen.push(obj);
            }
            GoLine::Log(text) => {
                eprintln!("[{}] {text}", self.name);
                self.log.push(text);
            }
        }
    }

    /// Blocks on the peer's output alone (no Rust node to drive).
    fn wait_for(&mut self, what: &str, done: impl Fn(&GoPeer) -> bool) -> &GoPeer {
        let give_up = Instant::now() + GIVE_UP;
        while !done(self) {
            match self
                .lines
                .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.record(line),
                Err(RecvTimeoutError::Timeout) => panic!("{}: no {what}", self.name),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before {what}", self.name)
                }
            }
        }
        self
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to gopeer");
        self.stdin.flush().expect("flush gopeer stdin");
    }

    /// The first event of `kind` about node `name`.
    fn event(&self, kind: &str, name: &str) -> Option<&Object> {
        self.seen
            .iter()
            .find(|o| text(o, "event") == Some(kind) && text(o, "name") == Some(name))
    }

    fn events<'a>(&'a self, kind: &'a str, name: &'a str) -> impl Iterator<Item = &'a Object> {
        self.seen
            .iter()
            .filter(move |o| text(o, "event") == Some(kind) && text(o, "name") == Some(name))
    }

    /// The last result line of a command (`join_result`, `meta_result`).
    fn result(&self, kind: &str) -> Option<&Object> {
        self.seen
            .iter()
            .rev()
            .find(|o| text(o, "event") == Some(kind))
    }

    /// Runs a command answered by one `kind` result line and checks that it succeeded.
    fn command_ok(&mut self, line: &str, kind: &str) {
        let before = self.results(kind);
        self.command(line);
        let peer = self.wait_for(line, |p| p.results(kind) > before);
        let result = peer.result(kind).expect("result line");
        assert_eq!(text(result, "error"), Some(""), "{line}");
    }

    fn results(&self, kind: &str) -> usize {
        self.seen
            .iter()
            .filter(|o| text(o, "event") == Some(kind))
            .count()
    }

    /// Whether Go reported node `name` with exactly this metadata (decoded by Go's gob).
    fn saw_meta(&self, kind: &str, name: &str, meta: &NodeMeta) -> bool {
        let overlay = meta.overlay_addr.to_string();
        self.events(kind, name).any(|o| {
            text(o, "meta_overlay") == Some(overlay.as_str())
                && text(o, "meta_pubkey") == Some(meta.pub_key.as_str())
        })
    }

    /// Whether memberlist logged that it declared `name` failed (Go's events do not say whether
    /// a node left or failed: memberlist 0.2.2 hands them a stale state).
    fn failed(&self, name: &str) -> bool {
        let marking = format!("Marking {name} as failed");
        self.log.iter().any(|l| l.contains(&marking))
    }

    fn kill(&mut self) {
        // Child::kill signals this process by its PID (SIGKILL): a crash, no leave message.
        self.child.kill().expect("kill gopeer");
        self.child.wait().expect("reap gopeer");
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text<'a>(obj: &'a Object, key: &str) -> Option<&'a str> {
    match obj.get(key) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn number(obj: &Object, key: &str) -> Option<u64> {
    match obj.get(key) {
        Some(Value::Number(Number::U64(n))) => Some(*n),
        Some(Value::Number(Number::I64(n))) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Our side: the membership core, its socket driver and a minimal mio loop.
struct RustNode {
    name: String,
    poll: Poll,
    events: Events,
    transport: Transport,
    membership: Membership,
    inputs: Vec<Input>,
    seen: Vec<Event>,
}

impl RustNode {
    fn start(name: &str, key: [u8; 32], profile: Profile, meta: &NodeMeta) -> RustNode {
        RustNode::start_on(name, key, profile, meta, SocketAddr::new(LOCALHOST, 0))
    }

    /// Starts on a given address (port 0: a free one).
    fn start_on(
        name: &str,
        key: [u8; 32],
        profile: Profile,
        meta: &NodeMeta,
        addr: SocketAddr,
    ) -> RustNode {
        let poll = Poll::new().expect("mio poll");
        let transport = Transport::bind(poll.registry(), addr).expect("bind");
        let config = Config {
            name: name.to_string(),
            advertise: transport.local_addr(),
            keyring: Keyring::new(key.into()),
            timing: profile.timing(),
            meta: meta.encode().expect("encode meta"),
        };
        let seed = getrandom::u64().expect("seed");
        RustNode {
            name: name.to_string(),
            poll,
            events: Events::with_capacity(64),
            transport,
            membership: Membership::new(config, Instant::now(), seed),
            inputs: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// One turn of the event loop, waiting at most `max_wait` for sockets or the next deadline.
    fn step(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let wait = self
            .membership
            .next_deadline()
            .map_or(max_wait, |d| d.saturating_duration_since(now).min(max_wait));
        self.poll
            .poll(&mut self.events, Some(wait))
            .expect("mio poll");
        for event in self.events.iter() {
            self.transport.handle_event(event, &mut self.inputs);
        }
        let now = Instant::now();
        for input in self.inputs.drain(..) {
            self.membership.handle_input(now, input);
        }
        if self.membership.next_deadline().is_some_and(|d| d <= now) {
            self.membership.handle_timeout(now);
        }
        self.flush(now);
    }

    /// Sends what the core queued and collects its events.
    fn flush(&mut self, now: Instant) {
        pump(&mut self.membership, &mut self.transport, now);
        while let Some(event) = self.membership.poll_event() {
            eprintln!("[{}] {}", self.name, describe(&event));
            self.seen.push(event);
        }
    }

    fn join(&mut self, addr: SocketAddr) {
        let now = Instant::now();
        self.membership.join(now, &[addr]);
        self.flush(now);
    }

    fn set_meta(&mut self, meta: &NodeMeta) {
        let now = Instant::now();
        self.membership
            .set_meta(now, meta.encode().expect("encode meta"));
        self.flush(now);
    }

    fn leave(&mut self) {
        let now = Instant::now();
        self.membership.leave(now);
        self.flush(now);
    }

    fn join_result(&self) -> Option<&Result<usize, String>> {
        self.seen.iter().find_map(|e| match e {
            Event::JoinResult { result, .. } => Some(result),
            _ => None,
        })
    }

    fn joined(&self, name: &str) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Join(m) if m.name == name))
    }

    /// Whether a Join or Update about `name` carried exactly this metadata.
    fn saw_meta(&self, name: &str, update: bool, meta: &NodeMeta) -> bool {
        self.seen.iter().any(|e| {
            let member = match (e, update) {
                (Event::Join(m), false) | (Event::Update(m), true) => m,
                _ => return false,
            };
            member.name == name && NodeMeta::decode(&member.meta).is_ok_and(|(got, _)| got == *meta)
        })
    }

    fn left(&self, name: &str, state: MemberState) -> bool {
        self.seen
            .iter()
            .any(|e| matches!(e, Event::Leave(m) if m.name == name && m.state == state))
    }
}

/// One line per event, metadata decoded, for a failing test's output.
fn describe(event: &Event) -> String {
    let (kind, m) = match event {
        Event::Join(m) => ("join", m),
        Event::Update(m) => ("update", m),
        Event::Leave(m) => ("leave", m),
        Event::JoinResult { addr, result } => return format!("join result {addr}: {result:?}"),
    };
    let meta = match NodeMeta::decode(&m.meta) {
        Ok((meta, _)) => format!("{} {}", meta.overlay_addr, meta.pub_key),
        Err(err) => err.to_string(),
    };
    format!(
        "{kind} {} {} {:?} incarnation {} meta {meta}",
        m.name, m.addr, m.state, m.incarnation
    )
}

/// Runs every node until `done` holds, printing how long that took (never asserted).
fn run_until(
    rust: &mut [&mut RustNode],
    go: &mut [&mut GoPeer],
    what: &str,
    done: impl Fn(&[&mut RustNode], &[&mut GoPeer]) -> bool,
) {
    let start = Instant::now();
    loop {
        for peer in go.iter_mut() {
            peer.drain();
        }
        if done(rust, go) {
            eprintln!("{what}: {:?}", start.elapsed());
            return;
        }
        assert!(start.elapsed() < GIVE_UP, "gave up waiting for: {what}");
        if rust.is_empty() {
            thread::sleep(Duration::from_millis(20));
        }
        let slice = Duration::from_millis(20) / rust.len().max(1) as u32;
        for node in rust.iter_mut() {
            node.step(slice);
        }
    }
}

/// Runs every node for `span`, for checks that something does NOT happen.
fn run_for(rust: &mut [&mut RustNode], go: &mut [&mut GoPeer], span: Duration) {
    let end = Instant::now() + span;
    run_until(rust, go, "a quiet period", |_, _| Instant::now() >= end);
}

/// The usual pair: Go peer `go-1` (cluster key KEY) and Rust node `rust-1` (`rust_key`), both
/// with metadata in 10.7.`net`.0/24 and WireGuard keys `pubkey(first_key)` and the next one.
fn go_and_rust(
    bin: &Path,
    rust_key: [u8; 32],
    profile: Profile,
    net: u8,
    first_key: u8,
) -> (GoPeer, RustNode) {
    let go = GoPeer::start(
        bin,
        "go-1",
        &KEY,
        profile,
        Some(&meta([10, 7, net, 1], &pubkey(first_key))),
    );
    let rust = RustNode::start(
        "rust-1",
        rust_key,
        profile,
        &meta([10, 7, net, 2], &pubkey(first_key + 1)),
    );
    (go, rust)
}

#[test]
fn rust_joins_go_and_both_see_each_other_with_metadata() {
    for bin in each_gopeer() {
        let go_meta = meta([10, 7, 0, 1], &pubkey(1));
        let rust_meta = meta([10, 7, 0, 2], &pubkey(2));
        let mut go = GoPeer::start(bin, "go-1", &KEY, Profile::Fast, Some(&go_meta));
        let mut rust = RustNode::start("rust-1", KEY, Profile::Fast, &rust_meta);
        rust.join(go.addr);
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "join both ways",
            |r, g| r[0].joined("go-1") && g[0].event("join", "rust-1").is_some(),
        );
        assert_eq!(rust.join_result(), Some(&Ok(1)), "push-pull with Go");
        assert!(
            rust.saw_meta("go-1", false, &go_meta),
            "our view of Go's gob"
        );
        assert!(
            go.saw_meta("join", "rust-1", &rust_meta),
            "Go's view of our gob"
        );
        let port = go.event("join", "rust-1").and_then(|o| number(o, "port"));
        assert_eq!(port, Some(u64::from(rust.addr().port())));
        let member = rust
            .membership
            .member("go-1")
            .expect("Go in our member list");
        assert_eq!(member.addr, go.addr);
        assert_eq!(member.state, MemberState::Alive);

        go.command("members");
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "Go's member list",
            |_, g| g[0].result("members").is_some(),
        );
        let listed = go.result("members").and_then(|o| match o.get("members") {
            Some(Value::Array(list)) => Some(list),
            _ => None,
        });
        let names: Vec<&str> = listed
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                Value::Object(o) => text(o, "name"),
                _ => None,
            })
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.contains(&"go-1") && names.contains(&"rust-1"),
            "{names:?}"
        );
    }
}

#[test]
fn go_joins_rust_and_both_see_each_other_with_metadata() {
    for bin in each_gopeer() {
        let go_meta = meta([10, 7, 1, 1], &pubkey(3));
        let rust_meta = meta([10, 7, 1, 2], &pubkey(4));
        let mut go = GoPeer::start(bin, "go-1", &KEY, Profile::Fast, Some(&go_meta));
        let mut rust = RustNode::start("rust-1", KEY, Profile::Fast, &rust_meta);
        go.command(&format!("join {}", rust.addr()));
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "join both ways",
            |r, g| {
                r[0].joined("go-1")
                    && g[0].event("join", "rust-1").is_some()
                    && g[0].result("join_result").is_some()
            },
        );
        let result = go.result("join_result").expect("join result");
        assert_eq!(text(result, "error"), Some(""));
        assert_eq!(number(result, "joined"), Some(1));
        assert!(rust.saw_meta("go-1", false, &go_meta));
        assert!(go.saw_meta("join", "rust-1", &rust_meta));
    }
}

#[test]
fn metadata_updates_cross_both_ways() {
    for bin in each_gopeer() {
        let go_meta = meta([10, 7, 2, 1], &pubkey(5));
        let rust_meta = meta([10, 7, 2, 2], &pubkey(6));
        let mut go = GoPeer::start(bin, "go-1", &KEY, Profile::Fast, Some(&go_meta));
        let mut rust = RustNode::start("rust-1", KEY, Profile::Fast, &rust_meta);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });

        let rust_new = meta([10, 7, 2, 22], &pubkey(7));
        rust.set_meta(&rust_new);
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "our update at Go",
            |_, g| g[0].saw_meta("update", "rust-1", &rust_new),
        );

        let go_new = meta([10, 7, 2, 11], &pubkey(8));
        go.command(&format!("meta {} {}", go_new.overlay_addr, go_new.pub_key));
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "Go's update at ours",
            |r, _| r[0].saw_meta("go-1", true, &go_new),
        );
        let member = rust
            .membership
            .member("go-1")
            .expect("Go in our member list");
        assert_eq!(NodeMeta::decode(&member.meta).map(|(m, _)| m), Ok(go_new));
    }
}

#[test]
fn graceful_leave_of_rust_is_seen_by_go() {
    for bin in each_gopeer() {
        let (mut go, mut rust) = go_and_rust(bin, KEY, Profile::Fast, 3, 9);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });
        rust.leave();
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "our leave at Go",
            |r, g| r[0].membership.leave_done() && g[0].event("leave", "rust-1").is_some(),
        );
        assert!(!go.failed("rust-1"), "a leave is not a failure");
    }
}

#[test]
fn graceful_leave_of_go_is_seen_by_rust() {
    for bin in each_gopeer() {
        let (mut go, mut rust) = go_and_rust(bin, KEY, Profile::Fast, 4, 11);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });
        go.command("leave");
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "Go's leave at ours",
            |r, g| r[0].left("go-1", MemberState::Left) && g[0].result("left").is_some(),
        );
    }
}

#[test]
fn crashed_go_peer_is_declared_dead_and_rejoins_after_restart() {
    for bin in each_gopeer() {
        let (mut go, mut rust) = go_and_rust(bin, KEY, Profile::Fast, 5, 13);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });
        go.kill();
        run_until(&mut [&mut rust], &mut [], "the crash detected", |r, _| {
            r[0].left("go-1", MemberState::Dead)
        });
        assert!(
            !rust.left("go-1", MemberState::Left),
            "a crash is not a leave"
        );

        // Restarted on the same port (wesher after kill -9): it refutes the death we tell it about.
        let addr = go.addr;
        drop(go);
        let mut go = GoPeer::start_on(bin, "go-1", &KEY, Profile::Fast, None, addr);
        go.command(&format!("join {}", rust.addr()));
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "the restarted peer",
            |r, _| {
                r[0].seen
                    .iter()
                    .filter(|e| matches!(e, Event::Join(m) if m.name == "go-1"))
                    .count()
                    == 2
            },
        );
        let member = rust
            .membership
            .member("go-1")
            .expect("Go in our member list");
        assert_eq!(member.state, MemberState::Alive);
        assert!(
            member.incarnation > 1,
            "came back by refuting, not as incarnation 1"
        );
    }
}

#[test]
fn silent_rust_node_is_declared_dead_by_go_and_rejoins_after_restart() {
    for bin in each_gopeer() {
        let mut go = GoPeer::start(
            bin,
            "go-1",
            &KEY,
            Profile::Fast,
            Some(&meta([10, 7, 6, 1], &pubkey(15))),
        );
        let rust_meta = meta([10, 7, 6, 2], &pubkey(16));
        let mut rust = RustNode::start("rust-1", KEY, Profile::Fast, &rust_meta);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });
        // Gone without a word: the sockets close, nothing is announced.
        let addr = rust.addr();
        drop(rust);
        run_until(&mut [], &mut [&mut go], "our silence detected", |_, g| {
            g[0].event("leave", "rust-1").is_some()
        });
        assert!(go.failed("rust-1"), "declared failed, not left");

        // Restarted on the same port: we refute the death Go tells us about and are back.
        let mut rust = RustNode::start_on("rust-1", KEY, Profile::Fast, &rust_meta, addr);
        rust.join(go.addr);
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "our restart at Go",
            |r, g| r[0].joined("go-1") && g[0].events("join", "rust-1").count() == 2,
        );
        assert!(rust.membership.local().incarnation > 1, "refuted the death");
    }
}

#[test]
fn rust_node_with_wrong_key_is_not_admitted() {
    for bin in each_gopeer() {
        let (mut go, mut rust) = go_and_rust(bin, WRONG_KEY, Profile::Fast, 7, 17);
        rust.join(go.addr);
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "our join result",
            |r, g| {
                r[0].join_result().is_some()
                    && g[0]
                        .log
                        .iter()
                        .any(|l| l.contains("No installed keys could decrypt"))
            },
        );
        assert!(matches!(rust.join_result(), Some(Err(_))));
        // Our probes and gossip, if any, must not get us in either.
        run_for(&mut [&mut rust], &mut [&mut go], Duration::from_secs(2));
        assert!(
            go.event("join", "rust-1").is_none(),
            "Go admitted a node with the wrong key"
        );
        assert!(!rust.joined("go-1"));
    }
}

#[test]
fn go_peer_with_wrong_key_cannot_join_rust() {
    for bin in each_gopeer() {
        let mut go = GoPeer::start(
            bin,
            "go-1",
            &WRONG_KEY,
            Profile::Fast,
            Some(&meta([10, 7, 8, 1], &pubkey(19))),
        );
        let mut rust = RustNode::start(
            "rust-1",
            KEY,
            Profile::Fast,
            &meta([10, 7, 8, 2], &pubkey(20)),
        );
        go.command(&format!("join {}", rust.addr()));
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "Go's join result",
            |_, g| g[0].result("join_result").is_some(),
        );
        let result = go.result("join_result").expect("join result");
        assert_eq!(number(result, "joined"), Some(0));
        assert_ne!(text(result, "error"), Some(""));
        run_for(&mut [&mut rust], &mut [&mut go], Duration::from_secs(2));
        assert!(
            !rust.joined("go-1"),
            "we admitted a node with the wrong key"
        );
        assert!(go.event("join", "rust-1").is_none());
        assert!(
            rust.membership.stats().drops_total() > 0,
            "the bad frame was counted"
        );
    }
}

#[test]
fn rust_nodes_find_each_other_through_go() {
    for bin in each_gopeer() {
        let a_meta = meta([10, 7, 9, 2], &pubkey(22));
        let b_meta = meta([10, 7, 9, 3], &pubkey(23));
        let mut go = GoPeer::start(
            bin,
            "go-1",
            &KEY,
            Profile::Fast,
            Some(&meta([10, 7, 9, 1], &pubkey(21))),
        );
        let mut a = RustNode::start("rust-a", KEY, Profile::Fast, &a_meta);
        let mut b = RustNode::start("rust-b", KEY, Profile::Fast, &b_meta);
        a.join(go.addr);
        run_until(&mut [&mut a, &mut b], &mut [&mut go], "a joined", |r, _| {
            r[0].joined("go-1")
        });
        b.join(go.addr);
        run_until(
            &mut [&mut a, &mut b],
            &mut [&mut go],
            "a and b meet",
            |r, g| {
                r[0].joined("rust-b")
                    && r[1].joined("rust-a")
                    && g[0].event("join", "rust-b").is_some()
            },
        );
        assert!(a.saw_meta("rust-b", false, &b_meta));
        assert!(b.saw_meta("rust-a", false, &a_meta));
    }
}

#[test]
fn go_peers_find_each_other_through_rust() {
    if gopeers().is_empty() {
        return;
    }
    let a_meta = meta([10, 7, 13, 2], &pubkey(34));
    let b_meta = meta([10, 7, 13, 3], &pubkey(35));
    let mut rust = RustNode::start(
        "rust-1",
        KEY,
        Profile::Fast,
        &meta([10, 7, 13, 1], &pubkey(33)),
    );
    let mut a = GoPeer::start(gopeer_for(0), "go-a", &KEY, Profile::Fast, Some(&a_meta));
    let mut b = GoPeer::start(gopeer_for(1), "go-b", &KEY, Profile::Fast, Some(&b_meta));
    a.command(&format!("join {}", rust.addr()));
    run_until(
        &mut [&mut rust],
        &mut [&mut a, &mut b],
        "a joined",
        |r, _| r[0].joined("go-a"),
    );
    b.command(&format!("join {}", rust.addr()));
    // b hears of a in our push-pull answer; a hears of b from our gossip.
    run_until(
        &mut [&mut rust],
        &mut [&mut a, &mut b],
        "a and b meet",
        |_, g| g[0].saw_meta("join", "go-b", &b_meta) && g[1].saw_meta("join", "go-a", &a_meta),
    );
}

/// Two Go and two Rust nodes, each joining a different member; one Go node crashes and every
/// survivor, Go and Rust, declares it failed.
#[test]
fn mixed_cluster_converges_and_detects_a_crash() {
    if gopeers().is_empty() {
        return;
    }
    let mut g1 = GoPeer::start(
        gopeer_for(0),
        "go-1",
        &KEY,
        Profile::Fast,
        Some(&meta([10, 7, 14, 1], &pubkey(36))),
    );
    let mut g2 = GoPeer::start(
        gopeer_for(1),
        "go-2",
        &KEY,
        Profile::Fast,
        Some(&meta([10, 7, 14, 2], &pubkey(37))),
    );
    let mut r1 = RustNode::start(
        "rust-1",
        KEY,
        Profile::Fast,
        &meta([10, 7, 14, 3], &pubkey(38)),
    );
    let mut r2 = RustNode::start(
        "rust-2",
        KEY,
        Profile::Fast,
        &meta([10, 7, 14, 4], &pubkey(39)),
    );
    r1.join(g1.addr);
    g2.command(&format!("join {}", r1.addr()));
    r2.join(g2.addr);
    let names = ["go-1", "go-2", "rust-1", "rust-2"];
    run_until(
        &mut [&mut r1, &mut r2],
        &mut [&mut g1, &mut g2],
        "everyone sees everyone",
        |r, g| {
            let rust_ok = r
                .iter()
                .all(|n| names.iter().all(|&x| x == n.name || n.joined(x)));
            let go_ok = g.iter().all(|p| {
                names
                    .iter()
                    .all(|&x| x == p.name || p.event("join", x).is_some())
            });
            rust_ok && go_ok
        },
    );
    g2.kill();
    run_until(
        &mut [&mut r1, &mut r2],
        &mut [&mut g1],
        "the crash seen by all",
        |r, g| {
            r.iter().all(|n| n.left("go-2", MemberState::Dead))
                && g[0].event("leave", "go-2").is_some()
        },
    );
}

/// Three Go nodes in a cluster, ten Rust nodes each joining one of them: the members travel in
/// push-pulls and in compound gossip packets both ways, and everyone ends up knowing everyone's
/// metadata.
#[test]
fn larger_mixed_cluster_converges() {
    if gopeers().is_empty() {
        return;
    }
    let node_meta = |i: u8| meta([10, 7, 17, i], &pubkey(100 + i));
    let go_names = ["go-1", "go-2", "go-3"];
    let mut go: Vec<GoPeer> = (0u8..)
        .zip(go_names)
        .map(|(i, name)| {
            GoPeer::start(
                gopeer_for(usize::from(i)),
                name,
                &KEY,
                Profile::Fast,
                Some(&node_meta(i)),
            )
        })
        .collect();
    let rust_names: Vec<String> = (0..10).map(|i| format!("rust-{i}")).collect();
    let mut rust: Vec<RustNode> = (3u8..)
        .zip(&rust_names)
        .map(|(i, name)| RustNode::start(name, KEY, Profile::Fast, &node_meta(i)))
        .collect();
    let go_addrs: Vec<SocketAddr> = go.iter().map(|p| p.addr).collect();
    for peer in &mut go[1..] {
        peer.command_ok(&format!("join {}", go_addrs[0]), "join_result");
    }
    for (i, node) in rust.iter_mut().enumerate() {
        node.join(go_addrs[i % go_addrs.len()]);
    }
    let all: Vec<(String, NodeMeta)> = (0u8..)
        .zip(
            go_names
                .iter()
                .map(|n| n.to_string())
                .chain(rust_names.clone()),
        )
        .map(|(i, name)| (name, node_meta(i)))
        .collect();
    // Whether `me` saw every other node with its metadata.
    let knows_all = |me: &str, saw: &dyn Fn(&str, &NodeMeta) -> bool| {
        all.iter()
            .filter(|(name, _)| name != me)
            .all(|(name, m)| saw(name, m))
    };
    let mut rust_refs: Vec<&mut RustNode> = rust.iter_mut().collect();
    let mut go_refs: Vec<&mut GoPeer> = go.iter_mut().collect();
    run_until(
        &mut rust_refs,
        &mut go_refs,
        "13 nodes converged",
        |r, g| {
            r.iter()
                .all(|n| knows_all(&n.name, &|name, m| n.saw_meta(name, false, m)))
                && g.iter()
                    .all(|p| knows_all(&p.name, &|name, m| p.saw_meta("join", name, m)))
        },
    );
    for node in &rust {
        let alive = node
            .membership
            .members()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        assert_eq!(alive, all.len(), "{} counts its alive members", node.name);
    }
}

/// A key rotation across both implementations, as an operator does it: install the new key
/// everywhere, make it primary node by node (the two sides meanwhile encrypt with different
/// keys), then remove the old one. The cluster stays whole, and afterwards only the new key gets in.
#[test]
fn key_rotation_across_go_and_rust() {
    for bin in each_gopeer() {
        const NEW_KEY: [u8; 32] = *b"the rotated interop cluster key!";
        let (mut go, mut rust) = go_and_rust(bin, KEY, Profile::Fast, 15, 40);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });

        let new_b64 = base64::encode(&NEW_KEY);
        go.command_ok(&format!("add-key {new_b64}"), "key_result");
        rust.membership.keyring_mut().install(NEW_KEY.into());
        rust.membership
            .keyring_mut()
            .use_key(&NEW_KEY.into())
            .expect("use the new key");
        // We now encrypt with the new key, Go still with the old one: both directions must work.
        let rust_meta = meta([10, 7, 15, 22], &pubkey(42));
        rust.set_meta(&rust_meta);
        let go_meta = meta([10, 7, 15, 11], &pubkey(43));
        go.command(&format!(
            "meta {} {}",
            go_meta.overlay_addr, go_meta.pub_key
        ));
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "updates under mixed primaries",
            |r, g| {
                r[0].saw_meta("go-1", true, &go_meta)
                    && g[0].saw_meta("update", "rust-1", &rust_meta)
            },
        );

        go.command_ok(&format!("use-key {new_b64}"), "key_result");
        go.command_ok(
            &format!("remove-key {}", base64::encode(&KEY)),
            "key_result",
        );
        rust.membership
            .keyring_mut()
            .remove(&KEY.into())
            .expect("remove the old key");
        // Long enough for several probe rounds under the new key alone.
        run_for(&mut [&mut rust], &mut [&mut go], Duration::from_secs(2));
        assert!(!go.failed("rust-1") && go.event("leave", "rust-1").is_none());
        assert!(!rust.seen.iter().any(|e| matches!(e, Event::Leave(_))));

        let mut newcomer = RustNode::start(
            "rust-new",
            NEW_KEY,
            Profile::Fast,
            &meta([10, 7, 15, 3], &pubkey(44)),
        );
        let mut stale = RustNode::start(
            "rust-old",
            KEY,
            Profile::Fast,
            &meta([10, 7, 15, 4], &pubkey(45)),
        );
        newcomer.join(go.addr);
        stale.join(go.addr);
        run_until(
            &mut [&mut rust, &mut newcomer, &mut stale],
            &mut [&mut go],
            "the newcomers",
            |r, g| {
                r[1].joined("rust-1")
                    && r[2].join_result().is_some()
                    && g[0].event("join", "rust-new").is_some()
            },
        );
        assert!(
            matches!(stale.join_result(), Some(Err(_))),
            "the old key still got in"
        );
        assert!(go.event("join", "rust-old").is_none());
    }
}

/// Over IPv6 the alive messages carry 16-byte addresses, in both directions.
#[test]
fn join_and_leave_over_ipv6() {
    for bin in each_gopeer() {
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0);
        if let Err(err) = std::net::UdpSocket::bind(v6) {
            let reason = format!("no IPv6 loopback here ({err})");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            let _ = writeln!(std::io::stderr(), "skipping: {reason}");
            return;
        }
        let go_meta = meta([10, 7, 16, 1], &pubkey(46));
        let rust_meta = meta([10, 7, 16, 2], &pubkey(47));
        let mut go = GoPeer::start_on(bin, "go-1", &KEY, Profile::Fast, Some(&go_meta), v6);
        let mut rust = RustNode::start_on("rust-1", KEY, Profile::Fast, &rust_meta, v6);
        go.command(&format!("join {}", rust.addr()));
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "join over IPv6",
            |r, g| {
                r[0].saw_meta("go-1", false, &go_meta)
                    && g[0].saw_meta("join", "rust-1", &rust_meta)
            },
        );
        let member = rust
            .membership
            .member("go-1")
            .expect("Go in our member list");
        assert_eq!(member.addr, go.addr);
        assert_eq!(
            text(go.event("join", "rust-1").expect("join"), "addr"),
            Some("::1")
        );
        rust.leave();
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "leave over IPv6",
            |r, g| r[0].membership.leave_done() && g[0].event("leave", "rust-1").is_some(),
        );
    }
}

/// wesher's restart (its end-to-end scenario 3): the node leaves, comes back under the same name
/// and port with a new WireGuard key, and rejoins. Its fresh incarnation is lower than the one
/// we hold; it gets back in by refuting the "left" state we push to it.
#[test]
fn go_peer_restarted_on_the_same_port_is_seen_again() {
    for bin in each_gopeer() {
        let mut rust = RustNode::start(
            "rust-1",
            KEY,
            Profile::Fast,
            &meta([10, 7, 11, 2], &pubkey(28)),
        );
        let mut go = GoPeer::start(
            bin,
            "go-1",
            &KEY,
            Profile::Fast,
            Some(&meta([10, 7, 11, 1], &pubkey(27))),
        );
        go.command(&format!("join {}", rust.addr()));
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, _| {
            r[0].joined("go-1")
        });
        go.command("leave");
        run_until(&mut [&mut rust], &mut [&mut go], "leave", |r, g| {
            r[0].left("go-1", MemberState::Left) && g[0].result("left").is_some()
        });
        let addr = go.addr;
        drop(go);

        let new_meta = meta([10, 7, 11, 1], &pubkey(29));
        let mut go = GoPeer::start_on(bin, "go-1", &KEY, Profile::Fast, Some(&new_meta), addr);
        go.command(&format!("join {}", rust.addr()));
        run_until(&mut [&mut rust], &mut [&mut go], "rejoin", |r, g| {
            let joins = r[0]
                .seen
                .iter()
                .filter(|e| matches!(e, Event::Join(m) if m.name == "go-1"));
            joins.count() == 2 && g[0].event("join", "rust-1").is_some()
        });
        let member = rust
            .membership
            .member("go-1")
            .expect("Go in our member list");
        assert_eq!(member.state, MemberState::Alive);
        assert_eq!(NodeMeta::decode(&member.meta).map(|(m, _)| m), Ok(new_meta));
    }
}

#[test]
fn rust_node_restarted_on_the_same_port_is_seen_again() {
    for bin in each_gopeer() {
        let (mut go, mut rust) = go_and_rust(bin, KEY, Profile::Fast, 12, 30);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |_, g| {
            g[0].event("join", "rust-1").is_some()
        });
        rust.leave();
        run_until(&mut [&mut rust], &mut [&mut go], "leave", |r, g| {
            r[0].membership.leave_done() && g[0].event("leave", "rust-1").is_some()
        });
        let addr = rust.addr();
        drop(rust);

        let new_meta = meta([10, 7, 12, 2], &pubkey(32));
        let mut rust = RustNode::start_on("rust-1", KEY, Profile::Fast, &new_meta, addr);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "rejoin", |r, g| {
            r[0].joined("go-1") && g[0].events("join", "rust-1").count() == 2
        });
        // Go saw us come back with the new key, whether through the join or a later update.
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "new metadata at Go",
            |_, g| {
                g[0].saw_meta("join", "rust-1", &new_meta)
                    || g[0].saw_meta("update", "rust-1", &new_meta)
            },
        );
    }
}

/// wesher's real settings on both sides. Like wesher, the Go node starts without metadata and
/// sets it right after joining.
#[test]
fn wan_timings_join_meta_leave() {
    for bin in each_gopeer() {
        let rust_meta = meta([10, 7, 10, 2], &pubkey(25));
        let mut go = GoPeer::start(bin, "go-1", &KEY, Profile::Wan, None);
        let mut rust = RustNode::start("rust-1", KEY, Profile::Wan, &rust_meta);
        go.command(&format!("join {}", rust.addr()));
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].saw_meta("join", "rust-1", &rust_meta)
        });
        let go_meta = meta([10, 7, 10, 1], &pubkey(24));
        go.command(&format!(
            "meta {} {}",
            go_meta.overlay_addr, go_meta.pub_key
        ));
        run_until(&mut [&mut rust], &mut [&mut go], "Go's metadata", |r, _| {
            r[0].saw_meta("go-1", true, &go_meta)
        });
        let rust_new = meta([10, 7, 10, 22], &pubkey(26));
        rust.set_meta(&rust_new);
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "our new metadata",
            |_, g| g[0].saw_meta("update", "rust-1", &rust_new),
        );
        rust.leave();
        run_until(&mut [&mut rust], &mut [&mut go], "our leave", |r, g| {
            r[0].membership.leave_done() && g[0].event("leave", "rust-1").is_some()
        });
        assert!(!go.failed("rust-1"), "a leave is not a failure");
    }
}

/// A Rust node whose underlay address changes moves the way memberlist allows: a leave at the
/// old address, then an alive with a higher incarnation at the new one (Go memberlist takes a
/// new address only for a member that left) and a join; Go then has it at the new address.
#[test]
fn underlay_address_change_reaches_go() {
    for bin in each_gopeer() {
        let go_meta = meta([10, 7, 20, 1], &pubkey(40));
        let mut go = GoPeer::start(bin, "go-1", &KEY, Profile::Fast, Some(&go_meta));
        let old = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0);
        let rust_meta = meta([10, 7, 20, 2], &pubkey(41));
        let mut rust = RustNode::start_on("rust-1", KEY, Profile::Fast, &rust_meta, old);
        rust.join(go.addr);
        run_until(&mut [&mut rust], &mut [&mut go], "join", |r, g| {
            r[0].joined("go-1") && g[0].event("join", "rust-1").is_some()
        });
        let started = Instant::now();
        rust.leave();
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "the leave at Go",
            |r, g| r[0].membership.leave_done() && g[0].event("leave", "rust-1").is_some(),
        );
        let new = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0);
        rust.transport = Transport::bind(rust.poll.registry(), new).expect("bind the new address");
        let now = Instant::now();
        let moved = rust.transport.local_addr();
        rust.membership.readvertise(now, moved);
        rust.join(go.addr);
        let at = moved.ip().to_string();
        run_until(
            &mut [&mut rust],
            &mut [&mut go],
            "Go has the new address",
            |_, g| {
                g[0].events("join", "rust-1")
                    .any(|o| text(o, "addr") == Some(at.as_str()))
            },
        );
        eprintln!("moved to {moved} in {:?}", started.elapsed());
        // It stays: Go probes it at the new address, and our node still has Go alive.
        run_for(&mut [&mut rust], &mut [&mut go], Duration::from_secs(3));
        assert!(!go.failed("rust-1"), "Go must reach the new address");
        assert!(!rust.left("go-1", MemberState::Dead));
        assert_eq!(rust.membership.local().addr, moved);
    }
}
