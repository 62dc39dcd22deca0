//! Rate limits for log lines that strangers can trigger at will (garbage packets, refused
//! streams): a flood must not become a flood of log lines on a router's small log buffer.

use std::time::{Duration, Instant};

/// One line per kind of noise per this interval; the next says how many were left out.
const INTERVAL: Duration = Duration::from_secs(10);

/// The limiter of one kind of noise line.
#[derive(Debug, Default)]
pub(crate) struct Noise {
    next: Option<Instant>,
    suppressed: u64,
}

impl Noise {
    /// `Some(n)` when a line may be logged at `now`, `n` being how many were left out since the
    /// last one; `None` when this one is left out.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + INTERVAL);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The noisy lines of one node, one limiter each.
#[derive(Debug, Default)]
pub(crate) struct NoiseLines {
    /// Datagrams that did not open (wrong key, garbage).
    pub(crate) packets: Noise,
    /// Streams refused at accept (too many from one address).
    pub(crate) streams_refused: Noise,
    /// Streams whose frame did not open.
    pub(crate) streams_rejected: Noise,
    /// Members announced with oversized metadata or an unusable name.
    pub(crate) peer_data: Noise,
}

/// The suffix of a rate-limited line: empty, or how many like it were left out.
pub(crate) fn suppressed(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count() {
        let t0 = Instant::now();
        let mut noise = Noise::default();
        assert_eq!(noise.allow(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(noise.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(noise.allow(t0 + INTERVAL), Some(1000));
        assert_eq!(noise.allow(t0 + INTERVAL), None);
        assert_eq!(noise.allow(t0 + INTERVAL * 2), Some(1));
        assert_eq!(suppressed(0), "");
        assert_eq!(suppressed(3), " (3 similar lines suppressed)");
    }
}
