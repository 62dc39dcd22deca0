//! The transmit-limited broadcast queue (memberlist's TransmitLimitedQueue with named
//! broadcasts): fewest transmissions first, then largest, then newest; a new broadcast about a
//! node replaces the queued one; each is sent at most `limit` times.

use std::cmp::Reverse;

struct Entry {
    /// Order of queueing: newer first among equals.
    id: u64,
    node: String,
    msg: Vec<u8>,
    transmits: u32,
    /// The `take` that last sent it: each goes at most once into one packet.
    round: u64,
    /// Someone waits for this broadcast to finish (the leave).
    notify: bool,
}

/// At most one broadcast per node is queued, so a vector searched in order is enough (a
/// fraction of the code of ordered maps on a router).
#[derive(Default)]
pub struct BroadcastQueue {
    entries: Vec<Entry>,
    next_id: u64,
    round: u64,
    /// A broadcast with `notify` finished (sent `limit` times or replaced).
    notified: bool,
}

impl BroadcastQueue {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Queues an encoded message about `node`, replacing any older one about the same node.
    pub fn push(&mut self, node: &str, msg: Vec<u8>, notify: bool) {
        if let Some(i) = self.entries.iter().position(|e| e.node == node) {
            self.notified |= self.entries.swap_remove(i).notify;
        }
        self.next_id += 1;
        self.entries.push(Entry {
            id: self.next_id,
            node: node.to_owned(),
            msg,
            transmits: 0,
            round: 0,
            notify,
        });
    }

    /// Takes messages fitting in `limit` bytes, counting `overhead` per message, each at most
    /// `transmit_limit` times over its life. Least-sent first, then the largest that still fits,
    /// then the newest.
    pub fn take(&mut self, overhead: usize, limit: usize, transmit_limit: u32) -> Vec<Vec<u8>> {
        self.round += 1;
        let round = self.round;
        let mut out = Vec::new();
        let mut used = 0usize;
        while let Some(free) = limit.checked_sub(used + overhead).filter(|f| *f > 0) {
            let Some(e) = self
                .entries
                .iter_mut()
                .filter(|e| e.round != round && e.msg.len() <= free)
                .min_by_key(|e| (e.transmits, Reverse(e.msg.len()), Reverse(e.id)))
            else {
                break;
            };
            e.round = round;
            e.transmits += 1;
            used += overhead + e.msg.len();
            out.push(e.msg.clone());
        }
        let notified = &mut self.notified;
        self.entries.retain(|e| {
            let done = e.transmits >= transmit_limit;
            *notified |= done && e.notify;
            !done
        });
        out
    }

    /// Whether a `notify` broadcast has finished since the queue was made.
    pub fn notified(&self) -> bool {
        self.notified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_broadcast_about_a_node_replaces_older() {
        let mut q = BroadcastQueue::default();
        q.push("a", b"suspect-a".to_vec(), false);
        q.push("b", b"alive-b".to_vec(), false);
        q.push("a", b"alive-a-2".to_vec(), false);
        assert_eq!(q.len(), 2);
        let got = q.take(2, 1400, 4);
        assert_eq!(got, vec![b"alive-a-2".to_vec(), b"alive-b".to_vec()]);
    }

    #[test]
    fn least_transmitted_then_largest_then_newest_first() {
        let mut q = BroadcastQueue::default();
        q.push("a", vec![1; 10], false);
        q.push("b", vec![2; 30], false);
        q.push("c", vec![3; 10], false);
        // Room for one message only: the largest.
        assert_eq!(q.take(2, 35, 4), vec![vec![2; 30]]);
        // b has been sent once now; the two fresh ones come first, newest (c) before a.
        assert_eq!(q.take(2, 13, 4), vec![vec![3; 10]]);
        assert_eq!(q.take(2, 13, 4), vec![vec![1; 10]]);
        // Everything sent once: all fit in a big packet, largest first.
        assert_eq!(
            q.take(2, 1400, 4),
            vec![vec![2; 30], vec![3; 10], vec![1; 10]]
        );
    }

    #[test]
    fn transmit_limit_retires_broadcasts_and_fires_notify() {
        let mut q = BroadcastQueue::default();
        q.push("me", b"dead-me".to_vec(), true);
        for _ in 0..3 {
            assert_eq!(q.take(2, 1400, 3).len(), 1);
            assert!(q.len() == 1 || q.notified());
        }
        assert!(q.notified());
        assert_eq!(q.len(), 0);
        assert!(q.take(2, 1400, 3).is_empty());
    }

    #[test]
    fn budget_is_respected_and_small_messages_fill_gaps() {
        let mut q = BroadcastQueue::default();
        q.push("big", vec![0; 100], false);
        q.push("mid", vec![0; 60], false);
        q.push("small", vec![0; 20], false);
        // 100 + 2, then 60 + 2 does not fit in 130, 20 + 2 does.
        let got = q.take(2, 130, 4);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![100, 20]);
        assert!(q.take(2, 2, 4).is_empty());
    }
}
