//! Membership benchmarks on the deterministic simulator (src/membership/sim.rs): virtual time,
//! so every figure is exact and the same seed gives the same figure on any machine.
//!
//! For each timing profile, cluster size, packet loss and seed, one run:
//! 1. n nodes join through node 0 without loss and converge (everyone sees everyone alive);
//! 2. the loss is switched on and the cluster settles for one push-pull period (scaled with n);
//! 3. steady state: UDP packets, messages, bytes and TCP (push-pull) bytes sent per node per
//!    second over a window;
//! 4. join: a new node joins through node 0; time until every other node has it alive;
//! 5. crash: a random node stops dead; time until every other node has it dead (or forgot it).
//!
//! Bytes are UDP payloads as the core builds them (encrypted, CRC, compound, compressed), without
//! IP/UDP headers (add 28 bytes per packet for IPv4).
//!
//! `cargo bench --bench sim -- [--profiles wan,lan] [--sizes 10,100,500,1000] [--loss 0,0.05,0.2]
//!  [--seeds 3] [--big-seeds 2] [--window SECS] [--quick]` (--big-seeds: seeds at >= 1000 nodes)

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wesher::membership::sim::{Sim, SimConfig};
use wesher::membership::{MemberState, Timing};

struct Options {
    profiles: Vec<&'static str>,
    sizes: Vec<usize>,
    losses: Vec<f64>,
    seeds: u64,
    /// Seeds at 1000 nodes and more (each run takes minutes of wall time there).
    big_seeds: u64,
    /// Steady-state window; None: one push-pull period at that size (memberlist scales it above
    /// 32 nodes), so that every node's push-pull falls in it once.
    window: Option<Duration>,
}

fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|v| v.trim().parse().map_err(|_| format!("bad {what}: {v:?}")))
        .collect()
}

fn parse_args() -> Result<Options, String> {
    use lexopt::prelude::*;
    let mut o = Options {
        profiles: vec!["wan", "lan"],
        sizes: vec![10, 100, 500, 1000],
        losses: vec![0.0, 0.05, 0.2],
        seeds: 3,
        big_seeds: 2,
        window: None,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let value = |p: &mut lexopt::Parser| -> Result<String, String> {
            p.value()
                .map_err(|e| e.to_string())?
                .string()
                .map_err(|e| format!("{e:?}"))
        };
        match arg {
            // cargo bench passes --bench to every bench binary.
            Long("bench") => {}
            Long("profiles") => {
                o.profiles = Vec::new();
                for name in value(&mut p)?.split(',') {
                    match name {
                        "wan" => o.profiles.push("wan"),
                        "lan" => o.profiles.push("lan"),
                        other => return Err(format!("unknown profile {other:?}")),
                    }
                }
            }
            Long("sizes") => o.sizes = parse_list(&value(&mut p)?, "size")?,
            Long("loss") => o.losses = parse_list(&value(&mut p)?, "loss")?,
            Long("seeds") => {
                o.seeds = value(&mut p)?.parse().map_err(|_| "bad --seeds")?;
            }
            Long("big-seeds") => {
                o.big_seeds = value(&mut p)?.parse().map_err(|_| "bad --big-seeds")?;
            }
            Long("window") => {
                let secs: u64 = value(&mut p)?.parse().map_err(|_| "bad --window")?;
                o.window = Some(Duration::from_secs(secs));
            }
            Long("quick") => {
                o.sizes = vec![10, 100];
                o.seeds = 2;
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if o.seeds == 0 || o.sizes.iter().any(|&n| n < 3) {
        return Err("need at least one seed and 3 nodes".into());
    }
    Ok(o)
}

/// Nodes that start their join in the same virtual second.
const JOIN_BATCH: usize = 100;

/// Figures of one run.
struct Run {
    converge: Option<Duration>,
    packets: f64,
    messages: f64,
    bytes: f64,
    tcp_bytes: f64,
    /// Pairs (i, j) of up nodes where i does not see j alive at the end of the window.
    false_views: usize,
    join: Option<Duration>,
    crash: Option<Duration>,
    wall: Duration,
}

/// Every node counts all `n` members alive. The same as `Sim::converged` for a cluster without
/// crashed nodes, but a scan instead of n^2 name lookups (which dominated 1000-node runs).
fn all_alive(sim: &Sim, n: usize) -> bool {
    (0..n).all(|i| {
        sim.node(i)
            .members()
            .filter(|m| m.state == MemberState::Alive)
            .count()
            == n
    })
}

/// Advances in `step`s until `done` holds or `limit` passes.
fn time_until(
    sim: &mut Sim,
    step: Duration,
    limit: Duration,
    mut done: impl FnMut(&Sim) -> bool,
) -> Option<Duration> {
    let start = sim.elapsed();
    while sim.elapsed() - start <= limit {
        if done(sim) {
            return Some(sim.elapsed() - start);
        }
        sim.run_for(step);
    }
    None
}

fn one_run(timing: &Timing, n: usize, loss: f64, seed: u64, window: Duration) -> Run {
    let wall = Instant::now();
    let mut cfg = SimConfig::new(timing.clone(), seed);
    cfg.record_events = false;
    let mut sim = Sim::new(cfg);
    for i in 0..n {
        sim.add_node(&format!("node{i}"), format!("meta{i}").into_bytes());
    }
    // Joins through node 0 (as wesher's --join), JOIN_BATCH at a time: the core accepts a
    // bounded number of concurrent incoming streams, and the simulator does not retry joins as
    // the agent does.
    let mut joined = 1;
    while joined < n {
        let batch = (n - joined).min(JOIN_BATCH);
        for i in joined..joined + batch {
            sim.join(i, &[0]);
        }
        joined += batch;
        sim.run_for(Duration::from_secs(1));
    }
    let converge = sim
        .run_until(Duration::from_secs(600), |s| all_alive(s, n))
        .map(|d| d + Duration::from_secs(((n - 2) / JOIN_BATCH + 1) as u64));

    // Settle for one push-pull period: the alive broadcasts of the formation drain (at 1000
    // nodes they take minutes) and every node has done a push-pull.
    sim.set_loss(loss);
    sim.run_for(timing.push_pull_period(n));

    let snapshot = |sim: &Sim| {
        (0..n).fold([0u64; 4], |mut acc, i| {
            let c = sim.counters(i);
            acc[0] += c.packets_out;
            acc[1] += sim.node(i).stats().messages_in;
            acc[2] += c.bytes_out;
            acc[3] += c.stream_bytes_out;
            acc
        })
    };
    let before = snapshot(&sim);
    sim.run_for(window);
    let after = snapshot(&sim);
    let per_node_sec = |k: usize| (after[k] - before[k]) as f64 / n as f64 / window.as_secs_f64();
    let false_views = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && sim.view(i, j) != Some(MemberState::Alive))
        .count();

    if converge.is_none() {
        // Join and crash times mean nothing in a cluster that never formed.
        return Run {
            converge,
            packets: per_node_sec(0),
            messages: per_node_sec(1),
            bytes: per_node_sec(2),
            tcp_bytes: per_node_sec(3),
            false_views,
            join: None,
            crash: None,
            wall: wall.elapsed(),
        };
    }
    let new = sim.add_node("newcomer", b"meta-new".to_vec());
    sim.join(new, &[0]);
    let join = time_until(
        &mut sim,
        Duration::from_millis(10),
        Duration::from_secs(600),
        |s| (0..n).all(|i| s.view(i, new) == Some(MemberState::Alive)),
    );

    // A node other than 0 (the join seed) and the newcomer, chosen by the seed.
    let victim = 1 + (seed as usize * 7919) % (n - 1);
    sim.crash(victim);
    let crash = time_until(
        &mut sim,
        Duration::from_millis(50),
        Duration::from_secs(1800),
        |s| {
            (0..=n).filter(|&i| i != victim).all(|i| {
                !matches!(
                    s.view(i, victim),
                    Some(MemberState::Alive | MemberState::Suspect)
                )
            })
        },
    );
    Run {
        converge,
        packets: per_node_sec(0),
        messages: per_node_sec(1),
        bytes: per_node_sec(2),
        tcp_bytes: per_node_sec(3),
        false_views,
        join,
        crash,
        wall: wall.elapsed(),
    }
}

/// "min / median / max" of the values (the lower median for an even count).
fn spread(mut v: Vec<f64>, unit: &str, decimals: usize) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (v[0], v[(v.len() - 1) / 2], v[v.len() - 1]);
    format!("{lo:.decimals$} / {mid:.decimals$} / {hi:.decimals$}{unit}")
}

/// Seconds of the runs that finished, plus how many did not.
fn durations(runs: &[Run], f: impl Fn(&Run) -> Option<Duration>) -> String {
    let done: Vec<f64> = runs
        .iter()
        .filter_map(&f)
        .map(|d| d.as_secs_f64())
        .collect();
    let missed = runs.len() - done.len();
    let mut s = spread(done, " s", 2);
    if missed > 0 {
        write!(s, " ({missed} did not finish)").ok();
    }
    s
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sim bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "| profile | nodes | loss | seeds | cluster formed (n-1 join node 0, 100/s) | join seen by all | crash dead at all | UDP pkt/node/s | msgs in/node/s | UDP B/node/s | TCP B/node/s | not-alive views | wall s/run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let total = Instant::now();
    for profile in &o.profiles {
        let timing = if *profile == "wan" {
            Timing::wan()
        } else {
            Timing::lan()
        };
        for &n in &o.sizes {
            let window = o.window.unwrap_or(timing.push_pull_period(n));
            for &loss in &o.losses {
                let seeds = if n >= 1000 {
                    o.seeds.min(o.big_seeds.max(1))
                } else {
                    o.seeds
                };
                let runs: Vec<Run> = (1..=seeds)
                    .map(|seed| one_run(&timing, n, loss, seed, window))
                    .collect();
                let f = |g: fn(&Run) -> f64, unit: &str, d: usize| {
                    spread(runs.iter().map(g).collect(), unit, d)
                };
                println!(
                    "| {profile} | {n} | {:.0}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    loss * 100.0,
                    runs.len(),
                    durations(&runs, |r| r.converge),
                    durations(&runs, |r| r.join),
                    durations(&runs, |r| r.crash),
                    f(|r| r.packets, "", 2),
                    f(|r| r.messages, "", 2),
                    f(|r| r.bytes, "", 0),
                    f(|r| r.tcp_bytes, "", 0),
                    f(|r| r.false_views as f64, "", 0),
                    f(|r| r.wall.as_secs_f64(), "", 1),
                );
            }
        }
    }
    println!(
        "\nsteady-state window: {}; total wall time {:.0} s",
        o.window
            .map(|w| format!("{} s", w.as_secs()))
            .unwrap_or_else(|| "one push-pull period at that size".into()),
        total.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
