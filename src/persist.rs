//! When to write the state file: only when its content changed, at most every few seconds, and
//! at exit. A save costs two fsyncs, on a router's flash; membership events come in bursts, and
//! most of them (a suspicion, a refute) change nothing that is stored.

use std::time::{Duration, Instant};

use crate::state::State;

/// The least time between two writes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Persist {
    /// What the file holds now (None: unknown, so the first offer is written).
    written: Option<State>,
    /// A newer content waiting for its turn.
    pending: Option<State>,
    last_write: Option<Instant>,
}

impl Persist {
    /// `written` is what the file holds, when known.
    pub fn new(written: Option<State>) -> Persist {
        Persist {
            written,
            pending: None,
            last_write: None,
        }
    }

    /// The state as it is now; kept for writing only when it differs from the file.
    pub fn offer(&mut self, state: State) {
        if self.written.as_ref() == Some(&state) {
            self.pending = None;
        } else {
            self.pending = Some(state);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.as_ref()?;
        Some(
            self.last_write
                .map_or_else(Instant::now, |t| t + MIN_INTERVAL),
        )
    }

    /// The content to write now, if one is due; report the outcome with `done`.
    pub fn due(&mut self, now: Instant) -> Option<State> {
        if self.last_write.is_some_and(|t| now < t + MIN_INTERVAL) {
            return None;
        }
        self.pending.clone()
    }

    /// At exit: whatever is pending, without waiting.
    pub fn flush(&mut self) -> Option<State> {
        self.pending.clone()
    }

    /// A write of `state` was attempted at `now`; a failed one is tried again later.
    pub fn done(&mut self, now: Instant, state: State, ok: bool) {
        self.last_write = Some(now);
        if ok {
            if self.pending.as_ref() == Some(&state) {
                self.pending = None;
            }
            self.written = Some(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StoredNode;

    fn state(nodes: &[&str]) -> State {
        State {
            devices: Vec::new(),
            wireguard_key: None,
            cluster_key: Some([1; 32].into()),
            extra_keys: Vec::new(),
            nodes: nodes
                .iter()
                .map(|n| StoredNode {
                    name: n.to_string(),
                    addr: "192.0.2.1".parse().unwrap(),
                    meta: Vec::new(),
                })
                .collect(),
        }
    }

    /// Runs offers at the given seconds; returns the seconds at which a write happened.
    fn writes(p: &mut Persist, t0: Instant, offers: &[(u64, State)]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut offers = offers.iter().peekable();
        for sec in 0..120 {
            let now = t0 + Duration::from_secs(sec);
            while let Some((_, s)) = offers.next_if(|(at, _)| *at == sec) {
                p.offer(s.clone());
            }
            if let Some(s) = p.due(now) {
                p.done(now, s, true);
                out.push(sec);
            }
        }
        out
    }

    #[test]
    fn only_changed_content_is_written_and_not_more_often_than_the_interval() {
        let t0 = Instant::now();
        let mut p = Persist::new(Some(state(&[])));
        // Ten events: the same content again and again, then a burst of real changes.
        let mut offers: Vec<(u64, State)> = (0..5).map(|s| (s, state(&[]))).collect();
        offers.extend([
            (10, state(&["a"])),
            (11, state(&["a", "b"])),
            (12, state(&["a", "b"])),
            (13, state(&["a", "b", "c"])),
            (30, state(&["a", "b", "c"])),
        ]);
        assert_eq!(writes(&mut p, t0, &offers), vec![10, 15]);
    }

    #[test]
    fn a_change_undone_before_its_turn_is_not_written() {
        let t0 = Instant::now();
        let mut p = Persist::new(Some(state(&[])));
        let offers = [
            (0, state(&["a"])),
            (1, state(&["a", "b"])),
            (2, state(&["a"])),
        ];
        assert_eq!(writes(&mut p, t0, &offers), vec![0]);
    }

    #[test]
    fn a_failed_write_is_retried_and_exit_flushes() {
        let t0 = Instant::now();
        let mut p = Persist::new(None);
        p.offer(state(&["a"]));
        let s = p.due(t0).unwrap();
        p.done(t0, s, false);
        assert!(p.due(t0 + Duration::from_secs(1)).is_none());
        assert!(p.due(t0 + MIN_INTERVAL).is_some());
        p.offer(state(&["b"]));
        assert_eq!(p.flush(), Some(state(&["b"])));
    }
}
