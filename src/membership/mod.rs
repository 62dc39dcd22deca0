//! memberlist-compatible gossip membership as a sans-IO state machine.
//!
//! [`Membership`] speaks hashicorp memberlist's protocol (SWIM with Lifeguard, push-pull
//! anti-entropy) but never touches a socket or a clock. A driver (the real `transport` or the
//! simulated network in [`sim`]) runs it like this:
//!
//! 1. `Membership::new(config, now, seed)`, then `join(now, &addrs)` to sync with known nodes.
//! 2. Feed everything that happens as [`io::Input`] through `handle_input(now, input)`: UDP
//!    datagrams, accepted / connected / closed TCP streams and stream bytes.
//! 3. Call `handle_timeout(now)` once `now >= next_deadline()`.
//! 4. After every call, drain `poll_transmit()` (datagrams to send, streams to open, write or
//!    close) and `poll_event()` (members joining, updating, leaving; join results).
//!
//! `set_meta` announces new metadata, `leave` announces a graceful leave; keep driving the
//! machine until `leave_done()` so the announcement actually goes out.
//!
//! Files: `swim.rs` (members, probes, suspicion, gossip, the alive / suspect / dead rules),
//! `stream.rs` (join, push-pull, TCP fallback ping), `broadcast.rs` (transmit-limited queue),
//! `timing.rs` (timings and their scaling formulas), `wire.rs` + `msgpack.rs` + `keyring.rs`
//! (the codec), `sim.rs` (deterministic simulated network).
//!
//! Where we deliberately differ from Go memberlist (nothing visible in the bytes on the wire):
//! - a newly learned alive member, new metadata and our leave are gossiped at once instead of
//!   at the next gossip tick;
//! - every other periodic push-pull goes to a member that died within
//!   `gossip_to_the_dead_time`, so a healed partition reconverges;
//! - packets are budgeted to stay within 1400 bytes including CRC and every compound entry;
//! - the local node is never reaped after a leave; tracked members (65536) and relayed pings
//!   (256) are capped;
//! - strangers are bounded (`stream.rs`): a stream frame may declare at most 1 MiB, not 20; an
//!   incoming stream has 5 s for its frame; 8 pending streams per source address, 64 in all
//!   (the oldest evicted for a newcomer) and 2 MiB buffered by all of them together; Go's
//!   push-pull cap counts only streams that decrypted, and so does ours (in the transport);
//! - log lines a stranger can trigger are rate-limited (`noise.rs`).

mod broadcast;
mod codec;
pub mod io;
pub mod keyring;
pub mod message;
mod msgpack;
pub(crate) mod noise;
mod rng;
/// The simulated network: for tests and benchmarks only (`--features sim`).
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod stream;
mod swim;
mod timing;
pub mod wire;

use std::net::SocketAddr;

pub use keyring::Keyring;
pub use message::Vsn;
pub use swim::Membership;
pub use timing::{suspicion_timeout, Timing};

/// What a node needs to take part.
#[derive(Clone, Debug)]
pub struct Config {
    /// Unique node name (Go wesher: the hostname).
    pub name: String,
    /// Address and port other members reach us at (UDP and TCP).
    pub advertise: SocketAddr,
    pub keyring: Keyring,
    pub timing: Timing,
    /// Node metadata (wesher: the gob-encoded overlay address and public key), <= 512 bytes.
    pub meta: Vec<u8>,
}

/// One member as we currently see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    pub state: MemberState,
    pub vsn: Vsn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
    /// Left gracefully (announced its own death).
    Left,
}

impl MemberState {
    pub fn is_dead_or_left(self) -> bool {
        matches!(self, MemberState::Dead | MemberState::Left)
    }
}

/// What the application hears about, never about the local node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member became alive: first seen, or back after being dead or gone.
    Join(Member),
    /// An alive member announced new metadata.
    Update(Member),
    /// A member was declared dead or left.
    Leave(Member),
    /// Outcome of the push-pull with one `join()` address: Ok(number of members it told us
    /// about) or the reason it failed.
    JoinResult {
        addr: SocketAddr,
        result: Result<usize, String>,
    },
}

/// Traffic counters and drop reasons, for status output and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub streams_in: u64,
    pub streams_out: u64,
    /// Messages decoded from packets and streams.
    pub messages_in: u64,
    /// Probes started (one per probe tick when there is someone to probe).
    pub probes: u64,
    /// Dropped input by reason: codec error kinds and protocol rule violations.
    /// Sorted by reason; a vector for the dozen reasons there are.
    pub drops: Vec<(&'static str, u64)>,
}

impl Stats {
    fn drop(&mut self, reason: &'static str) {
        match self.drops.binary_search_by(|(r, _)| (*r).cmp(reason)) {
            Ok(at) => self.drops[at].1 += 1,
            Err(at) => self.drops.insert(at, (reason, 1)),
        }
    }

    /// Total drops for `reason` (0 if never seen).
    pub fn drops_for(&self, reason: &str) -> u64 {
        self.drops
            .binary_search_by(|(r, _)| (*r).cmp(reason))
            .map_or(0, |at| self.drops[at].1)
    }

    /// Total drops for every reason.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }
}
