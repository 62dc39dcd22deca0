//! Join-target name lookups off the event loop: `getaddrinfo` can block for as long as the
//! resolver's timeouts (seconds, or more with a dead uplink), so one helper thread does them
//! and hands the answers back through a `mio::Waker`. IP literals never reach the thread.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};

use mio::{Registry, Token, Waker};

use crate::config::JoinAddr;

/// What one lookup found.
#[derive(Debug, Default)]
pub struct Answer {
    pub addrs: Vec<SocketAddr>,
    /// One message per target that failed, naming it.
    pub errors: Vec<String>,
}

/// Both directions in one lock (a plain queue each way: smaller code than channels).
#[derive(Default)]
struct Queues {
    requests: VecDeque<Vec<(String, u16)>>,
    answers: VecDeque<Answer>,
    /// The agent is gone: the thread ends.
    closed: bool,
}

type Shared = Arc<(Mutex<Queues>, Condvar)>;

pub struct Resolver {
    shared: Shared,
}

/// The helper thread's stack: getaddrinfo needs about 12 KiB of it (musl), our part less.
const STACK_SIZE: usize = 256 * 1024;

/// Runs `f` on a detached thread named "resolver". By pthread_create rather than std::thread,
/// whose naming and stack-guard bookkeeping pull musl's printf and a BTreeMap (15 KiB) into a
/// router binary for this one thread.
fn spawn_detached(f: Box<dyn FnOnce() + Send>) -> io::Result<()> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"resolver".as_ptr()) };
        // SAFETY: `arg` is the box leaked by spawn_detached, taken back here only.
        let f = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
        f();
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(f));
    // SAFETY: the attribute object is initialised before use and destroyed after; on failure
    // the thread never started, so the box is still ours to free.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut rc = libc::pthread_attr_init(&mut attr);
        if rc == 0 {
            libc::pthread_attr_setstacksize(&mut attr, STACK_SIZE);
            libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
            let mut thread: libc::pthread_t = std::mem::zeroed();
            rc = libc::pthread_create(&mut thread, &attr, start, arg.cast());
            libc::pthread_attr_destroy(&mut attr);
        }
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut q) = lock.lock() {
            q.closed = true;
        }
        wake.notify_one();
    }
}

impl Resolver {
    /// Starts the helper thread; its answers wake the loop with `token`.
    pub fn start(registry: &Registry, token: Token) -> io::Result<Resolver> {
        let waker = Waker::new(registry, token)?;
        let shared: Shared = Arc::default();
        let theirs = Arc::clone(&shared);
        spawn_detached(Box::new(move || serve(&theirs, &waker)))?;
        Ok(Resolver { shared })
    }

    /// Literals are answered at once (`Ok`); names go to the thread (`Err` with the literals
    /// found so far, to add to the thread's answer).
    pub fn lookup(&self, targets: &[JoinAddr], default_port: u16) -> Result<Answer, Answer> {
        let mut now = Answer::default();
        let mut names = Vec::new();
        for t in targets {
            let port = t.port_or(default_port);
            match literal(&t.host, port) {
                Some(addr) => now.addrs.push(addr),
                None => names.push((t.host.clone(), port)),
            }
        }
        if names.is_empty() {
            return Ok(now);
        }
        let (lock, wake) = &*self.shared;
        match lock.lock() {
            Ok(mut q) => q.requests.push_back(names),
            Err(_) => {
                now.errors.push("the resolver thread is gone".into());
                return Ok(now);
            }
        }
        wake.notify_one();
        Err(now)
    }

    /// The next answer from the thread, if one came.
    pub fn poll(&self) -> Option<Answer> {
        self.shared.0.lock().ok()?.answers.pop_front()
    }
}

/// The thread: one lookup after another until the agent drops its `Resolver`.
fn serve(shared: &Shared, waker: &Waker) {
    let (lock, wake) = &**shared;
    loop {
        let targets = {
            let Ok(mut q) = lock.lock() else { return };
            loop {
                if q.closed {
                    return;
                }
                if let Some(t) = q.requests.pop_front() {
                    break t;
                }
                q = match wake.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        let mut answer = Answer::default();
        for (host, port) in targets {
            match resolve(&host, port) {
                Ok(found) => answer.addrs.extend(found),
                Err(e) => answer.errors.push(format!("{host}: {e}")),
            }
        }
        match lock.lock() {
            Ok(mut q) => q.answers.push_back(answer),
            Err(_) => return,
        }
        let _ = waker.wake();
    }
}

/// An IP literal, with or without IPv6 brackets.
fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    host.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    fn target(s: &str) -> JoinAddr {
        s.parse().unwrap()
    }

    #[test]
    fn literals_are_answered_at_once_and_names_by_the_thread() {
        let mut poll = Poll::new().unwrap();
        let r = Resolver::start(poll.registry(), Token(7)).unwrap();
        let now = r
            .lookup(&[target("192.0.2.7"), target("[2001:db8::1]:8000")], 7946)
            .unwrap();
        assert_eq!(
            now.addrs,
            vec![
                "192.0.2.7:7946".parse().unwrap(),
                "[2001:db8::1]:8000".parse().unwrap()
            ]
        );
        let sent = r
            .lookup(&[target("192.0.2.8"), target("localhost:7000")], 7946)
            .unwrap_err();
        assert_eq!(sent.addrs, vec!["192.0.2.8:7946".parse().unwrap()]);
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(30)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(7)));
        let answer = r.poll().unwrap();
        assert!(!answer.addrs.is_empty() && answer.addrs.iter().all(|a| a.port() == 7000));
        // The helper is a thread of this process, named for `ps -T`.
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .collect();
        assert!(names.iter().any(|n| n == "resolver\n"), "{names:?}");
    }
}
