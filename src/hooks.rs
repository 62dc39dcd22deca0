//! `--on-change PROGRAM`: run a program after each applied change of the mesh.
//!
//! `Schedule` is the sans-IO part: changes queue while a run is going on and coalesce into the
//! next one (never two runs at once), a run past its time is killed, and a finished run is
//! noticed by checking on a short timer. `Hooks` does the I/O: it spawns the program in its own
//! process group with the change in `WESHER_*` variables and the mesh as JSON on stdin (an
//! in-memory file, so the loop never blocks on a pipe), and reaps it with `try_wait`.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::json;
use crate::mesh::{Mesh, Peer};
use crate::spawn::{self, Child};

/// A run that takes longer is killed (with its process group).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often a running program is checked for its exit.
pub const REAP_INTERVAL: Duration = Duration::from_millis(100);

/// What happened to a member of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Join,
    Update,
    Leave,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Join => "join",
            Event::Update => "update",
            Event::Leave => "leave",
        }
    }
}

/// One change of the applied mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub event: Event,
    pub peer: Peer,
}

/// The changes from the mesh `before` to the mesh `after` (both sorted by name, as `Mesh`
/// gives them): new members join, changed ones update, missing ones leave.
pub fn changes<'a>(
    before: impl IntoIterator<Item = &'a Peer>,
    after: impl IntoIterator<Item = &'a Peer>,
) -> Vec<Change> {
    let before: Vec<&Peer> = before.into_iter().collect();
    let after: Vec<&Peer> = after.into_iter().collect();
    let mut out = Vec::new();
    for p in &after {
        match before.iter().find(|b| b.name == p.name) {
            None => out.push((Event::Join, *p)),
            // Only what a script can see: not the session-reset or keepalive settings.
            Some(b)
                if (b.overlay, b.public_key, b.endpoint, &b.routed)
                    != (p.overlay, p.public_key, p.endpoint, &p.routed) =>
            {
                out.push((Event::Update, *p))
            }
            Some(_) => {}
        }
    }
    for b in &before {
        if !after.iter().any(|p| p.name == b.name) {
            out.push((Event::Leave, *b));
        }
    }
    out.into_iter()
        .map(|(event, peer)| Change {
            event,
            peer: peer.clone(),
        })
        .collect()
}

/// Adds `changes` to `pending`, one change per member: a newer change replaces the pending
/// one, and a pending join stays a join when the member then updates.
fn merge(pending: &mut Vec<Change>, changes: Vec<Change>) {
    for mut c in changes {
        if let Some(i) = pending.iter().position(|p| p.peer.name == c.peer.name) {
            let old = pending.remove(i);
            if old.event == Event::Join && c.event == Event::Update {
                c.event = Event::Join;
            }
        }
        pending.push(c);
    }
}

/// What the I/O side must do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Start a run for these changes (oldest first).
    Start(Vec<Change>),
    /// Check whether the running program exited (`exited` if it did).
    Check,
    /// The run took too long: kill it (then keep checking for its exit).
    Kill,
}

#[derive(Debug)]
struct Run {
    deadline: Instant,
    next_check: Instant,
    killed: bool,
}

/// When to run, check and kill; fed with `now`, tested on a virtual clock.
#[derive(Debug)]
pub struct Schedule {
    timeout: Duration,
    pending: Vec<Change>,
    running: Option<Run>,
}

impl Schedule {
    pub fn new(timeout: Duration) -> Schedule {
        Schedule {
            timeout,
            pending: Vec::new(),
            running: None,
        }
    }

    /// Queue changes for the next run.
    pub fn queue(&mut self, changes: Vec<Change>) {
        merge(&mut self.pending, changes);
    }

    pub fn poll(&mut self, now: Instant) -> Option<Step> {
        match &mut self.running {
            None if !self.pending.is_empty() => {
                self.running = Some(Run {
                    deadline: now + self.timeout,
                    next_check: now + REAP_INTERVAL,
                    killed: false,
                });
                Some(Step::Start(std::mem::take(&mut self.pending)))
            }
            None => None,
            Some(run) if !run.killed && now >= run.deadline => {
                run.killed = true;
                Some(Step::Kill)
            }
            Some(run) if now >= run.next_check => {
                run.next_check = now + REAP_INTERVAL;
                Some(Step::Check)
            }
            Some(_) => None,
        }
    }

    /// The program exited (or could not start): the next run may begin.
    pub fn exited(&mut self) {
        self.running = None;
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.running {
            Some(run) if run.killed => Some(run.next_check),
            Some(run) => Some(run.next_check.min(run.deadline)),
            // Pending changes start at the poll after `queue`.
            None => None,
        }
    }
}

fn routed(p: &Peer) -> Vec<String> {
    p.routed.iter().map(ToString::to_string).collect()
}

/// One member as the hook's input shows it.
fn member_json(out: &mut String, p: &Peer) {
    let mut o = json::Object::new(out);
    o.str("name", &p.name)
        .str("overlay", &p.overlay.to_string())
        .str("endpoint", &p.endpoint.to_string())
        .str("public_key", &p.public_key.to_base64())
        .strs("routed_nets", &routed(p));
    o.end();
}

/// The mesh as a hook reads it on stdin: this node, the changes (each member as it is now, or
/// as it was for a leave) and the members.
fn mesh_json(changes: &[Change], node: &Node, mesh: &Mesh) -> String {
    let mut out = String::new();
    let mut o = json::Object::new(&mut out);
    o.str("interface", node.interface)
        .str("node", node.name)
        .str("overlay", &node.overlay.to_string());
    json::array(o.key("changes"), changes, |out, c| {
        let mut change = json::Object::new(out);
        change.str("event", c.event.name());
        member_json(change.key("member"), &c.peer);
        change.end();
    });
    json::array(o.key("members"), mesh.peers(), member_json);
    o.end();
    out
}

/// This node, as the hook's input names it.
pub struct Node<'a> {
    pub interface: &'a str,
    pub name: &'a str,
    pub overlay: IpAddr,
}

/// The program, its schedule and its running child.
pub struct Hooks {
    program: PathBuf,
    /// Changes of the desired mesh not yet applied to the system.
    unapplied: Vec<Change>,
    schedule: Schedule,
    child: Option<Child>,
}

impl Hooks {
    pub fn new(program: PathBuf) -> Hooks {
        Hooks {
            program,
            unapplied: Vec::new(),
            schedule: Schedule::new(TIMEOUT),
            child: None,
        }
    }

    /// The desired mesh changed; the hook runs once the system follows (`applied`).
    pub fn changed(&mut self, changes: Vec<Change>) {
        // Bounded by the mesh while the system does not follow.
        merge(&mut self.unapplied, changes);
    }

    /// The system is as the desired mesh wants it.
    pub fn applied(&mut self) {
        self.schedule.queue(std::mem::take(&mut self.unapplied));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.next_deadline()
    }

    pub fn on_timer(&mut self, now: Instant, node: &Node, mesh: &Mesh) {
        while let Some(step) = self.schedule.poll(now) {
            match step {
                Step::Start(changes) => match self.spawn(&changes, node, mesh) {
                    Ok(child) => self.child = Some(child),
                    Err(e) => {
                        warn!("--on-change {}: {e}", self.program.display());
                        self.schedule.exited();
                    }
                },
                Step::Kill => {
                    if let Some(child) = &self.child {
                        warn!(
                            "--on-change {} still running after {TIMEOUT:?}; killing it",
                            self.program.display()
                        );
                        // Its own process group: whatever it started goes too.
                        child.kill_group();
                    }
                }
                Step::Check => self.reap(),
            }
            if self.child.is_some() {
                // The next step of a running program is due later.
                break;
            }
        }
    }

    fn reap(&mut self) {
        let Some(child) = &mut self.child else {
            self.schedule.exited();
            return;
        };
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => {
                if !status.success() {
                    warn!("--on-change {}: {status}", self.program.display());
                }
                self.child = None;
                self.schedule.exited();
            }
            Err(e) => {
                warn!("--on-change {}: waiting: {e}", self.program.display());
                self.child = None;
                self.schedule.exited();
            }
        }
    }

    fn spawn(&self, changes: &[Change], node: &Node, mesh: &Mesh) -> io::Result<Child> {
        let last = changes
            .last()
            .ok_or_else(|| io::Error::other("no change"))?;
        let json = mesh_json(changes, node, mesh);
        let stdin = spawn::memfile(json.as_bytes())?;
        let p = &last.peer;
        let env = [
            ("WESHER_EVENT", last.event.name()),
            ("WESHER_MEMBER", &p.name),
            ("WESHER_MEMBER_OVERLAY", &p.overlay.to_string()),
            ("WESHER_MEMBER_ENDPOINT", &p.endpoint.to_string()),
            ("WESHER_MEMBER_ROUTED_NETS", &routed(p).join(" ")),
            ("WESHER_CHANGES", &changes.len().to_string()),
            ("WESHER_INTERFACE", node.interface),
        ];
        let child = spawn::spawn(self.program.as_os_str(), &[], &env, &stdin, true)?;
        debug!(
            "--on-change {} started ({} changes, pid {})",
            self.program.display(),
            changes.len(),
            child.id()
        );
        Ok(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, overlay: &str) -> Peer {
        crate::mesh::test_peer(name, overlay, name.len() as u8)
    }

    fn change(event: Event, name: &str) -> Change {
        Change {
            event,
            peer: peer(name, "10.0.0.2"),
        }
    }

    #[test]
    fn joins_updates_and_leaves_are_told_apart() {
        let a = peer("a", "10.0.0.2");
        let b = peer("b", "10.0.0.3");
        let mut b2 = b.clone();
        b2.routed = vec!["192.168.9.0/24".parse().unwrap()];
        let mut b3 = b.clone();
        b3.keepalive = Some(25);
        let c = peer("c", "10.0.0.4");
        let got = changes([&a, &b], [&b2, &c]);
        let kinds: Vec<(Event, &str)> = got.iter().map(|c| (c.event, &*c.peer.name)).collect();
        assert_eq!(
            kinds,
            [
                (Event::Update, "b"),
                (Event::Join, "c"),
                (Event::Leave, "a")
            ]
        );
        assert!(changes([&b], [&b3]).is_empty(), "not visible to a hook");
    }

    #[test]
    fn a_burst_during_a_run_coalesces_into_one_run_after_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(30));
        assert_eq!(s.poll(t0), None);
        assert_eq!(s.next_deadline(), None);
        s.queue(vec![change(Event::Join, "a")]);
        assert_eq!(
            s.poll(t0),
            Some(Step::Start(vec![change(Event::Join, "a")]))
        );
        for i in 0..10 {
            s.queue(vec![change(Event::Join, &format!("n{i}"))]);
        }
        // No second run while the first one goes on, only checks for its exit.
        assert_eq!(s.poll(t0), None);
        assert_eq!(s.next_deadline(), Some(t0 + REAP_INTERVAL));
        let t1 = t0 + REAP_INTERVAL;
        assert_eq!(s.poll(t1), Some(Step::Check));
        assert_eq!(s.poll(t1), None);
        s.exited();
        match s.poll(t1) {
            Some(Step::Start(batch)) => assert_eq!(batch.len(), 10),
            other => panic!("{other:?}"),
        }
        s.exited();
        assert_eq!(s.poll(t1), None);
    }

    #[test]
    fn a_member_keeps_one_pending_change() {
        let mut s = Schedule::new(Duration::from_secs(30));
        s.queue(vec![change(Event::Join, "busy")]);
        let t0 = Instant::now();
        assert!(matches!(s.poll(t0), Some(Step::Start(_))));
        s.queue(vec![change(Event::Join, "a"), change(Event::Update, "a")]);
        s.queue(vec![change(Event::Update, "b"), change(Event::Leave, "b")]);
        s.exited();
        let Some(Step::Start(batch)) = s.poll(t0) else {
            panic!()
        };
        let kinds: Vec<(Event, &str)> = batch.iter().map(|c| (c.event, &*c.peer.name)).collect();
        assert_eq!(kinds, [(Event::Join, "a"), (Event::Leave, "b")]);
    }

    #[test]
    fn a_run_past_its_timeout_is_killed_once_then_reaped() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut s = Schedule::new(timeout);
        s.queue(vec![change(Event::Leave, "a")]);
        assert!(matches!(s.poll(t0), Some(Step::Start(_))));
        let late = t0 + timeout;
        assert_eq!(s.poll(late), Some(Step::Kill));
        assert_eq!(s.poll(late), Some(Step::Check));
        assert_eq!(s.poll(late), None);
        assert_eq!(s.next_deadline(), Some(late + REAP_INTERVAL));
        assert_eq!(s.poll(late + REAP_INTERVAL), Some(Step::Check));
        s.exited();
        assert_eq!(s.next_deadline(), None);
    }

    /// The real spawn: variables, stdin, no inherited WESHER_* settings, reaped by polling.
    #[test]
    fn the_program_gets_the_change_and_the_mesh() {
        let dir = std::env::temp_dir().join(format!("wesher-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let script = dir.join("hook");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n{{ env | grep ^WESHER_ | sort; cat; }} > {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut mesh = Mesh::default();
        let local = crate::mesh::Local {
            overlay: "10.0.0.1".parse().unwrap(),
            overlay_net: "10.0.0.0/8".parse().unwrap(),
            routed: Vec::new(),
            connected: Vec::new(),
            accept: Vec::new(),
        };
        let mut a = peer("a", "10.0.0.2");
        a.routed = vec!["192.168.9.0/24".parse().unwrap()];
        mesh.accept(vec![a.clone()], &local);
        let mut hooks = Hooks::new(script);
        hooks.changed(changes([], mesh.peers()));
        assert_eq!(
            hooks.next_deadline(),
            None,
            "not before the change is applied"
        );
        hooks.applied();
        let node = Node {
            interface: "wgtest",
            name: "me",
            overlay: local.overlay,
        };
        let t0 = Instant::now();
        hooks.on_timer(t0, &node, &mesh);
        let mut t = t0;
        while hooks.next_deadline().is_some() {
            std::thread::sleep(REAP_INTERVAL);
            t += REAP_INTERVAL;
            hooks.on_timer(t, &node, &mesh);
            assert!(t < t0 + Duration::from_secs(20), "hook never reaped");
        }
        let got = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(got.starts_with(
            "WESHER_CHANGES=1\nWESHER_EVENT=join\nWESHER_INTERFACE=wgtest\nWESHER_MEMBER=a\n\
             WESHER_MEMBER_ENDPOINT=192.0.2.1:51820\nWESHER_MEMBER_OVERLAY=10.0.0.2\n\
             WESHER_MEMBER_ROUTED_NETS=192.168.9.0/24\n{"
        ));
        assert!(
            got.contains(r#""changes":[{"event":"join","member":{"name":"a","overlay":"10.0.0.2""#),
            "{got}"
        );
        assert!(got.contains(r#""routed_nets":["192.168.9.0/24"]"#), "{got}");
    }
}
