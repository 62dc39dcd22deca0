//! Deterministic simulations of memberlist nodes on a virtual clock over a simulated network
//! (src/membership/sim.rs). WAN timing (Go wesher's) unless a test says otherwise.
//!
//! The 1000-node smoke test is ignored by default; run it in release mode:
//! `cargo test --release --test simulation -- --ignored --nocapture`

use std::time::Duration;

use wesher::membership::sim::{Sim, SimConfig};
use wesher::membership::{Event, MemberState, Timing};

fn cluster_with(n: usize, cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg);
    for i in 0..n {
        sim.add_node(&format!("node{i}"), format!("meta{i}").into_bytes());
    }
    sim
}

fn cluster(n: usize, seed: u64) -> Sim {
    cluster_with(n, SimConfig::new(Timing::wan(), seed))
}

/// Formation bounds: gossip spreads the joins within a second, and the rare member a gossip
/// round misses is repaired by the first periodic push-pull, which comes (as in Go) one random
/// stagger plus one period after start: at most 120 s WAN, 60 s LAN.
const FORMED_WAN: Duration = Duration::from_secs(130);
const FORMED_LAN: Duration = Duration::from_secs(70);

/// Every node joins through node 0; returns the virtual time until all see all alive.
fn join_all(sim: &mut Sim, limit: Duration) -> Duration {
    for i in 1..sim.len() {
        sim.join(i, &[0]);
    }
    let took = sim.run_until(limit, |s| s.converged());
    took.expect("cluster did not converge")
}

/// Whether node `i` reported a Leave event about `name` whose member state is `state`.
/// Fails when any of the first `n` nodes saw a member die or leave.
fn assert_no_leave_events(sim: &Sim, n: usize) {
    for i in 0..n {
        let leaves: Vec<_> = sim
            .events(i)
            .iter()
            .filter(|(_, e)| matches!(e, Event::Leave(_)))
            .collect();
        assert!(
            leaves.is_empty(),
            "node {i} saw members die or leave: {leaves:?}"
        );
    }
}

fn saw_leave(sim: &Sim, i: usize, name: &str, state: MemberState) -> bool {
    sim.events(i)
        .iter()
        .any(|(_, e)| matches!(e, Event::Leave(m) if m.name == name && m.state == state))
}

fn leave_events_about(sim: &Sim, name: &str) -> usize {
    (0..sim.len())
        .map(|i| {
            sim.events(i)
                .iter()
                .filter(|(_, e)| matches!(e, Event::Leave(m) if m.name == name))
                .count()
        })
        .sum()
}

#[test]
fn fifty_nodes_join_through_one_seed_and_converge() {
    let mut sim = cluster(50, 1);
    let took = join_all(&mut sim, FORMED_WAN);
    println!("50 nodes converged in {took:?}");
    for i in 1..sim.len() {
        let ok = sim
            .events(i)
            .iter()
            .any(|(_, e)| matches!(e, Event::JoinResult { result: Ok(n), .. } if *n >= 1));
        assert!(ok, "node {i} has no successful JoinResult");
        let joins = sim
            .events(i)
            .iter()
            .filter(|(_, e)| matches!(e, Event::Join(_)))
            .count();
        assert_eq!(joins, 49, "node {i} join events");
    }
    // Nobody reports events about itself, and metadata came along with the join.
    for i in 0..sim.len() {
        let me = sim.name(i).to_owned();
        assert!(sim.events(i).iter().all(|(_, e)| match e {
            Event::Join(m) | Event::Update(m) | Event::Leave(m) => m.name != me,
            Event::JoinResult { .. } => true,
        }));
    }
    // Broadcasts were packed several to a packet (then LZW-compressed), never beyond
    // memberlist's 1400-byte buffer.
    let biggest = (0..sim.len()).map(|i| sim.counters(i).max_packet).max();
    println!("largest datagram {biggest:?}");
    assert!(biggest.is_some_and(|b| b > 400 && b <= 1400));
    let m = sim.node(3).member("node7").expect("node3 knows node7");
    assert_eq!(m.meta, b"meta7");
    assert_eq!(sim.view(3, 7), Some(MemberState::Alive));
}

#[test]
fn join_to_nobody_reports_failure() {
    let mut sim = cluster(2, 2);
    sim.crash(0);
    sim.join(1, &[0]);
    sim.run_for(Duration::from_secs(1));
    let failed = sim
        .events(1)
        .iter()
        .any(|(_, e)| matches!(e, Event::JoinResult { result: Err(_), .. }));
    assert!(failed, "{:?}", sim.events(1));
}

#[test]
fn crashed_node_is_declared_dead_by_all_within_the_bound() {
    let n = 20;
    let mut sim = cluster(n, 3);
    join_all(&mut sim, FORMED_WAN);
    sim.run_for(Duration::from_secs(10));
    let victim = 7;
    sim.crash(victim);
    let t = Timing::wan();
    // Someone probes the victim within two probe intervals, the probe takes one, then the
    // suspicion runs at most its maximum; allow a little gossip time on top.
    let bound = t.probe_interval * 3 + t.suspicion_max(n) + Duration::from_secs(5);
    let name = sim.name(victim).to_owned();
    let took = sim
        .run_until(bound, |s| {
            (0..n)
                .filter(|&i| i != victim)
                .all(|i| saw_leave(s, i, &name, MemberState::Dead))
        })
        .expect("not every node declared the crashed node dead in time");
    println!(
        "crash detected by all in {took:?} (bound {bound:?}, suspicion min {:?})",
        t.suspicion_min(n)
    );
    assert!(
        took >= t.suspicion_min(n),
        "faster than the suspicion minimum: {took:?}"
    );
    // No collateral damage.
    assert_eq!(
        (0..n)
            .filter(|&i| i != victim)
            .map(|i| leave_events_about(&sim, sim.name(i)))
            .sum::<usize>(),
        0
    );
}

#[test]
fn graceful_leave_spreads_to_all() {
    let n = 20;
    let mut sim = cluster(n, 4);
    join_all(&mut sim, FORMED_WAN);
    sim.run_for(Duration::from_secs(5));
    let leaver = 11;
    let name = sim.name(leaver).to_owned();
    sim.leave(leaver);
    let took = sim
        .run_until(Duration::from_secs(10), |s| {
            s.node(leaver).leave_done()
                && (0..n)
                    .filter(|&i| i != leaver)
                    .all(|i| s.view(i, leaver) == Some(MemberState::Left))
        })
        .expect("leave did not spread");
    println!("leave seen by all in {took:?}");
    for i in (0..n).filter(|&i| i != leaver) {
        assert!(saw_leave(&sim, i, &name, MemberState::Left), "node {i}");
    }
    // After the leave it stays gone: nobody resurrects it.
    sim.crash(leaver);
    sim.run_for(Duration::from_secs(30));
    for i in (0..n).filter(|&i| i != leaver) {
        assert_ne!(sim.view(i, leaver), Some(MemberState::Alive));
    }
}

#[test]
fn leave_alone_is_done_at_once() {
    let mut sim = cluster(1, 5);
    sim.leave(0);
    assert!(sim.node(0).leave_done());
}

#[test]
fn healed_partition_reconverges() {
    let n = 16;
    let mut sim = cluster(n, 6);
    join_all(&mut sim, FORMED_WAN);
    sim.run_for(Duration::from_secs(5));
    let left: Vec<usize> = (0..n / 2).collect();
    let right: Vec<usize> = (n / 2..n).collect();
    sim.partition(&[&left, &right]);
    // Longer than failure detection: each side declares the whole other side dead.
    let split = sim
        .run_until(Duration::from_secs(300), |s| {
            let declared = |a: &[usize], b: &[usize]| {
                a.iter().all(|&i| {
                    b.iter()
                        .all(|&j| saw_leave(s, i, s.name(j), MemberState::Dead))
                })
            };
            declared(&left, &right) && declared(&right, &left)
        })
        .expect("sides did not declare each other dead");
    println!("partition detected on both sides after {split:?}");
    // Let the death broadcasts drain so no stale gossip is in flight when the link returns;
    // healing is then up to push-pull (still within gossip_to_the_dead_time).
    sim.run_for(Duration::from_secs(20));
    sim.heal();
    let took = sim
        .run_until(Duration::from_secs(300), |s| s.converged())
        .expect("healed partition did not reconverge");
    println!("reconverged {took:?} after healing");
}

#[test]
fn five_percent_loss_causes_no_false_deaths() {
    let n = 20;
    let mut cfg = SimConfig::new(Timing::wan(), 7);
    cfg.loss = 0.05;
    let mut sim = cluster_with(n, cfg);
    join_all(&mut sim, FORMED_WAN);
    sim.run_for(Duration::from_secs(300));
    assert_no_leave_events(&sim, n);
    assert!(sim.converged());
    let sent: u64 = (0..n).map(|i| sim.counters(i).packets_out).sum();
    let got: u64 = (0..n).map(|i| sim.counters(i).packets_in).sum();
    println!("5% loss: {sent} packets sent, {got} received");
    assert!(got < sent, "the network lost nothing");
}

#[test]
fn tcp_fallback_ping_keeps_a_udp_blocked_node_alive() {
    let n = 8;
    let mut sim = cluster(n, 13);
    join_all(&mut sim, FORMED_WAN);
    let who = 3;
    sim.block_udp(who, true);
    sim.run_for(Duration::from_secs(300));
    assert_no_leave_events(&sim, n);
    assert!(sim.converged());
    // Its probes really went over TCP: it opened far more streams than push-pull alone needs.
    let streams = sim.counters(who).streams_opened;
    println!("UDP-blocked node opened {streams} streams in 300 s");
    assert!(streams > 20);
}

#[test]
fn probes_keep_their_pace_when_timers_wake_up_late() {
    // Every probe of the UDP-blocked node runs its whole interval (only the TCP fallback
    // answers), so with late wake-ups (SimConfig's timer jitter) it overruns the next tick.
    // Go keeps that tick pending: one probe per interval, whatever the probes' outcome.
    // (4 nodes: with 3, Go's probe loop itself gives up a tick when a reshuffle puts the
    // local node first, and so do we.)
    let mut sim = cluster_with(4, SimConfig::new(Timing::lan(), 21));
    join_all(&mut sim, FORMED_LAN);
    sim.block_udp(3, true);
    let before: Vec<u64> = (0..3).map(|i| sim.node(i).stats().probes).collect();
    sim.run_for(Duration::from_secs(60));
    for (i, b) in before.into_iter().enumerate() {
        let probes = sim.node(i).stats().probes - b;
        assert!(
            probes >= 58,
            "node {i} started {probes} probes in 60 s at 1 s"
        );
    }
    assert!(sim.converged());
}

#[test]
fn metadata_update_reaches_everyone() {
    let n = 20;
    let mut sim = cluster(n, 8);
    join_all(&mut sim, FORMED_WAN);
    sim.run_for(Duration::from_secs(5));
    let who = 5;
    let before = sim.node(who).local().incarnation;
    sim.set_meta(who, b"new-meta".to_vec());
    assert!(sim.node(who).local().incarnation > before);
    let name = sim.name(who).to_owned();
    let took = sim
        .run_until(Duration::from_secs(30), |s| {
            (0..n).all(|i| {
                s.node(i)
                    .member(&name)
                    .is_some_and(|m| m.meta == b"new-meta")
            })
        })
        .expect("meta update did not reach everyone");
    println!("meta update reached all in {took:?}");
    for i in (0..n).filter(|&i| i != who) {
        let updated = sim
            .events(i)
            .iter()
            .any(|(_, e)| matches!(e, Event::Update(m) if m.name == name && m.meta == b"new-meta"));
        assert!(updated, "node {i} got no Update event");
    }
}

#[test]
fn node_restarted_after_death_is_seen_with_new_meta() {
    let n = 10;
    let mut sim = cluster(n, 9);
    join_all(&mut sim, FORMED_WAN);
    let who = 4;
    let name = sim.name(who).to_owned();
    sim.crash(who);
    sim.run_until(Duration::from_secs(300), |s| {
        (0..n)
            .filter(|&i| i != who)
            .all(|i| saw_leave(s, i, &name, MemberState::Dead))
    })
    .expect("crash not detected");
    sim.restart(who, b"reborn".to_vec());
    sim.join(who, &[0]);
    sim.run_until(Duration::from_secs(60), |s| {
        s.converged()
            && (0..n).all(|i| s.node(i).member(&name).is_some_and(|m| m.meta == b"reborn"))
    })
    .expect("restarted node not seen alive with its new meta");
    // It came back through refutation: a higher incarnation than the one declared dead.
    assert!(sim.node(who).local().incarnation > 1);
    let rejoined = sim
        .events(1)
        .iter()
        .any(|(_, e)| matches!(e, Event::Join(m) if m.name == name && m.meta == b"reborn"));
    assert!(rejoined);
}

#[test]
fn node_restarted_quickly_with_fresh_state_refutes_its_old_self() {
    let n = 10;
    let mut sim = cluster(n, 10);
    join_all(&mut sim, FORMED_WAN);
    let who = 6;
    let name = sim.name(who).to_owned();
    // Bump to incarnation 2 so the restart at incarnation 1 is older than what others know.
    sim.set_meta(who, b"old".to_vec());
    sim.run_for(Duration::from_secs(5));
    sim.restart(who, b"fresh".to_vec());
    sim.join(who, &[0]);
    sim.run_until(Duration::from_secs(60), |s| {
        (0..n).all(|i| s.node(i).member(&name).is_some_and(|m| m.meta == b"fresh"))
    })
    .expect("others still see the old meta");
    assert!(sim.node(who).local().incarnation > 2);
    assert_eq!(leave_events_about(&sim, &name), 0);
}

#[test]
fn suspicion_of_a_live_node_is_refuted() {
    let n = 12;
    let mut sim = cluster(n, 11);
    join_all(&mut sim, FORMED_WAN);
    sim.run_for(Duration::from_secs(5));
    let who = 2;
    let name = sim.name(who).to_owned();
    // Everyone knows its current incarnation, so only a refutation can clear a suspicion.
    let before = sim.node(who).local().incarnation;
    sim.run_until(Duration::from_secs(60), |s| {
        (0..n).all(|i| {
            s.node(i)
                .member(&name)
                .is_some_and(|m| m.incarnation == before)
        })
    })
    .expect("incarnation did not settle");
    let others: Vec<usize> = (0..n).filter(|&i| i != who).collect();
    sim.partition(&[&[who], &others]);
    sim.run_until(Duration::from_secs(60), |s| {
        others
            .iter()
            .any(|&i| s.view(i, who) == Some(MemberState::Suspect))
    })
    .expect("nobody suspected the isolated node");
    // Heal well before the suspicion can time out. The isolated node's own suspicions of the
    // others clear as its probes (ping + suspect) reach them, one per probe interval.
    sim.heal();
    sim.run_until(Duration::from_secs(120), |s| {
        s.node(who).local().incarnation > before && s.converged()
    })
    .expect("suspicion was not refuted");
    sim.run_for(Duration::from_secs(240));
    assert_eq!(
        leave_events_about(&sim, &name),
        0,
        "the suspect was declared dead"
    );
    assert!(sim.converged());
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut cfg = SimConfig::new(Timing::lan(), seed);
        cfg.loss = 0.1;
        let mut sim = cluster_with(8, cfg);
        for i in 1..8 {
            sim.join(i, &[0]);
        }
        sim.run_for(Duration::from_secs(10));
        sim.crash(3);
        sim.crash(4);
        sim.run_for(Duration::from_secs(30));
        let counters: Vec<_> = (0..8).map(|i| sim.counters(i).clone()).collect();
        let events: Vec<_> = (0..8).map(|i| sim.events(i).to_vec()).collect();
        (counters, events)
    };
    let first = run(12);
    assert!(first.1[0].iter().any(|(_, e)| matches!(e, Event::Leave(_))));
    assert_eq!(first, run(12));
    assert_ne!(first.0, run(13).0);
}

#[test]
#[ignore = "1000 nodes: run with --release --ignored"]
fn thousand_nodes_smoke() {
    let n = 1000;
    let mut cfg = SimConfig::new(Timing::wan(), 1000);
    cfg.record_events = false;
    let mut sim = cluster_with(n, cfg);
    // Nodes come up in waves of 50 every half second, each joining through node 0 (a single
    // seed refuses more than 128 simultaneous streams, as Go does).
    for wave in (1..n).collect::<Vec<_>>().chunks(50) {
        for &i in wave {
            sim.join(i, &[0]);
        }
        sim.run_for(Duration::from_millis(500));
    }
    let took = sim.run_until(Duration::from_secs(120), |s| s.converged());
    let refused = sim.node(0).stats().drops_for("too_many_streams");
    let took = took.unwrap_or_else(|| {
        let known: Vec<usize> = (0..n).map(|i| sim.node(i).num_alive()).collect();
        panic!(
            "no convergence; node 0 refused {refused} streams; alive counts min {:?} max {:?}",
            known.iter().min(),
            known.iter().max()
        )
    });
    println!("1000 nodes converged {took:?} after the last join wave ({refused} streams refused)");
    sim.crash(500);
    sim.run_for(Duration::from_secs(180));
    let dead = (0..n)
        .filter(|&i| i != 500)
        .filter(|&i| sim.view(i, 500) != Some(MemberState::Alive))
        .count();
    let bytes: u64 = (0..n).map(|i| sim.counters(i).bytes_out).sum();
    let packets: u64 = (0..n).map(|i| sim.counters(i).packets_out).sum();
    println!(
        "crash seen by {dead}/999 after 180 s; {packets} packets, {bytes} UDP bytes sent in {:?}",
        sim.elapsed()
    );
    assert_eq!(dead, 999);
}
