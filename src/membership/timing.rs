//! Protocol timings (memberlist's Config durations) and the formulas that scale them with the
//! cluster size.

use std::time::Duration;

/// How often and how patiently the SWIM core probes, gossips and syncs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Time between two failure probes (scaled up by local health awareness).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others (indirect pings, TCP fallback).
    pub probe_timeout: Duration,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Members gossiped to per round.
    pub gossip_nodes: usize,
    /// Time between full state syncs with a random member (scaled above 32 members).
    pub push_pull_interval: Duration,
    pub suspicion_mult: u32,
    pub suspicion_max_timeout_mult: u32,
    pub retransmit_mult: u32,
    /// Deadline of a TCP stream (connect, push-pull exchange).
    pub tcp_timeout: Duration,
    /// Dead members keep receiving gossip this long, which heals partitions.
    pub gossip_to_the_dead_time: Duration,
    /// Members asked to ping on our behalf when a direct probe fails.
    pub indirect_checks: usize,
    /// Upper bound of the Lifeguard health multiplier.
    pub awareness_max_multiplier: u32,
}

impl Default for Timing {
    /// WAN timing, what Go wesher uses.
    fn default() -> Self {
        Timing::wan()
    }
}

impl Timing {
    /// memberlist's DefaultWANConfig, what Go wesher uses.
    pub fn wan() -> Self {
        Timing {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            push_pull_interval: Duration::from_secs(60),
            suspicion_mult: 6,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            tcp_timeout: Duration::from_secs(30),
            gossip_to_the_dead_time: Duration::from_secs(60),
            indirect_checks: 3,
            awareness_max_multiplier: 8,
        }
    }

    /// memberlist's DefaultLANConfig.
    pub fn lan() -> Self {
        Timing {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(30),
            suspicion_mult: 4,
            tcp_timeout: Duration::from_secs(10),
            gossip_to_the_dead_time: Duration::from_secs(30),
            ..Timing::wan()
        }
    }

    /// Minimum suspicion timeout: suspicion_mult x max(1, log10 n) x probe_interval, with the
    /// node scale truncated to milliseconds as memberlist does.
    pub fn suspicion_min(&self, n: usize) -> Duration {
        let scale = log10(n.max(1) as u64).max(1.0);
        let millis = (scale * 1000.0) as u64;
        self.probe_interval * self.suspicion_mult * (millis as u32) / 1000
    }

    /// Starting (maximum) suspicion timeout.
    pub fn suspicion_max(&self, n: usize) -> Duration {
        self.suspicion_min(n) * self.suspicion_max_timeout_mult
    }

    /// Independent confirmations that shrink a suspicion to its minimum (0 in tiny clusters,
    /// where not enough members exist to confirm).
    pub fn suspicion_k(&self, n: usize) -> u32 {
        let k = self.suspicion_mult.saturating_sub(2);
        if (n as i64 - 2) < k as i64 {
            0
        } else {
            k
        }
    }

    /// How many times a broadcast is sent: retransmit_mult x ceil(log10(n + 1)).
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        // ceil(log10 x) of an integer x >= 1: the digits of x - 1.
        let x = n as u64 + 1;
        let scale = if x <= 1 { 0 } else { (x - 1).ilog10() + 1 };
        self.retransmit_mult * scale
    }

    /// Push-pull period: the interval, times ceil(log2 n - log2 32) + 1 above 32 members.
    pub fn push_pull_period(&self, n: usize) -> Duration {
        if n <= 32 {
            return self.push_pull_interval;
        }
        // ceil(log2 n) of an integer n >= 2 is the bits of n - 1; log2 32 = 5.
        let mult = (n as u64 - 1).ilog2() + 1 - 5 + 1;
        self.push_pull_interval * mult
    }
}

/// Suspicion timeout after `confirmations` of `k` expected: shrinks from `max` toward `min` as
/// log(confirmations + 1) / log(k + 1), floored to milliseconds, never below `min`.
pub fn suspicion_timeout(confirmations: u32, k: u32, min: Duration, max: Duration) -> Duration {
    if k == 0 {
        return min;
    }
    let frac = ln(f64::from(confirmations) + 1.0) / ln(f64::from(k) + 1.0);
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    let timeout = Duration::from_millis((1000.0 * raw).floor().max(0.0) as u64);
    timeout.max(min)
}

/// log10 of an integer: its digits exactly, the rest by `ln`, so that powers of ten come out
/// whole as memberlist's (libm's) do.
fn log10(n: u64) -> f64 {
    let digits = n.ilog10();
    let rest = n as f64 / 10f64.powi(digits as i32);
    f64::from(digits) + ln(rest) / std::f64::consts::LN_10
}

/// The natural logarithm of a finite x >= 1, within a few ulps: the binary exponent times ln 2
/// plus the mantissa's by the atanh series. libm's log, log2 and log10 would add 4.7 KiB to a
/// router binary for these few timers.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        exp += 1;
    }
    // |s| < 0.172, so twelve terms leave less than 1e-19.
    let s = (m - 1.0) / (m + 1.0);
    let (mut term, mut sum) = (s, 0.0);
    for k in 0..12 {
        sum += term / f64::from(2 * k + 1);
        term *= s * s;
    }
    f64::from(exp) * std::f64::consts::LN_2 + 2.0 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_min_follows_memberlist_formula() {
        let t = Timing::wan();
        // n <= 10: log10 n <= 1, so 6 x 1 x 5 s.
        assert_eq!(t.suspicion_min(1), Duration::from_secs(30));
        assert_eq!(t.suspicion_min(3), Duration::from_secs(30));
        assert_eq!(t.suspicion_min(10), Duration::from_secs(30));
        // n = 100: 6 x 2 x 5 s.
        assert_eq!(t.suspicion_min(100), Duration::from_secs(60));
        // n = 50: log10 50 = 1.69897 -> 1698 ms scale -> 6 x 5 s x 1.698 = 50.94 s.
        assert_eq!(t.suspicion_min(50), Duration::from_millis(50_940));
        assert_eq!(t.suspicion_max(10), Duration::from_secs(180));
        let lan = Timing::lan();
        assert_eq!(lan.suspicion_min(5), Duration::from_secs(4));
    }

    #[test]
    fn suspicion_k_is_zero_in_tiny_clusters() {
        let t = Timing::wan();
        assert_eq!(t.suspicion_k(3), 0);
        assert_eq!(t.suspicion_k(5), 0);
        assert_eq!(t.suspicion_k(6), 4);
        assert_eq!(t.suspicion_k(1000), 4);
    }

    #[test]
    fn suspicion_timeout_shrinks_logarithmically() {
        let min = Duration::from_secs(30);
        let max = Duration::from_secs(180);
        assert_eq!(suspicion_timeout(0, 4, min, max), max);
        // 1 of 4: frac = ln 2 / ln 5 = 0.430677 -> 180 - 0.430677 x 150 = 115.398 s.
        assert_eq!(
            suspicion_timeout(1, 4, min, max),
            Duration::from_millis(115_398)
        );
        let two = suspicion_timeout(2, 4, min, max);
        let three = suspicion_timeout(3, 4, min, max);
        assert!(two < Duration::from_millis(115_398) && three < two && three > min);
        assert_eq!(suspicion_timeout(4, 4, min, max), min);
        assert_eq!(suspicion_timeout(9, 4, min, max), min);
        assert_eq!(suspicion_timeout(0, 0, min, max), min);
    }

    #[test]
    fn retransmit_and_push_pull_scale() {
        let t = Timing::wan();
        assert_eq!(t.retransmit_limit(1), 4);
        assert_eq!(t.retransmit_limit(9), 4);
        assert_eq!(t.retransmit_limit(10), 8);
        assert_eq!(t.retransmit_limit(99), 8);
        assert_eq!(t.retransmit_limit(1000), 16);
        assert_eq!(t.push_pull_period(32), Duration::from_secs(60));
        assert_eq!(t.push_pull_period(33), Duration::from_secs(120));
        assert_eq!(t.push_pull_period(64), Duration::from_secs(120));
        assert_eq!(t.push_pull_period(65), Duration::from_secs(180));
        assert_eq!(t.push_pull_period(1000), Duration::from_secs(360));
    }

    #[test]
    fn logarithms_agree_with_libm() {
        for n in (1..5000u64).chain([65_535, 1 << 20, 999_999, 1_000_000, u32::MAX.into()]) {
            let x = n as f64;
            let (ours, libm) = (ln(x), x.ln());
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.max(1.0),
                "ln {n}"
            );
            let (ours, libm) = (log10(n), x.log10());
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.max(1.0),
                "log10 {n}"
            );
        }
        for p in 0..10 {
            assert_eq!(log10(10u64.pow(p)), f64::from(p));
        }
    }

    #[test]
    fn integer_logarithms_match_the_float_formulas() {
        let t = Timing::wan();
        for n in 0..5000usize {
            let scale = ((n + 1) as f64).log10().ceil() as u32;
            assert_eq!(t.retransmit_limit(n), t.retransmit_mult * scale, "n {n}");
            if n > 32 {
                let mult = ((n as f64).log2() - 32f64.log2()).ceil() as u32 + 1;
                assert_eq!(t.push_pull_period(n), t.push_pull_interval * mult, "n {n}");
            }
            let scale = (n.max(1) as f64).log10().max(1.0);
            let millis = (scale * 1000.0) as u32;
            assert_eq!(
                t.suspicion_min(n),
                t.probe_interval * t.suspicion_mult * millis / 1000
            );
        }
    }
}
